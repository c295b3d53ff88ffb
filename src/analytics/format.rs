//! Turning query results into what people read: JSON rows, CSV, aligned tables.

use arrow::array::{Array, RecordBatch};
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::{Number, Value};

use crate::error::Result;

/// Column names of a result.
pub fn columns(schema: &SchemaRef) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// One JSON value per cell, row by row. Numbers stay numbers; a NaN or infinite float becomes
/// `null` (a report never shows NaN); timestamps and the rest are their display strings.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    for_each_row(batches, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// The rows of [`rows`] as one JSON array of arrays, written row by row: the same bytes as
/// serialising `rows`, holding one row's values at a time instead of every row's (a value
/// tree is many times the size of the Arrow data it comes from).
pub fn rows_json(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(batches.iter().map(|b| b.get_array_memory_size()).sum::<usize>() + 2);
    out.push(b'[');
    for_each_row(batches, |r| {
        if out.len() > 1 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, &r).map_err(|e| crate::error::Error::Invalid(e.to_string()))
    })?;
    out.push(b']');
    Ok(out)
}

/// Calls `f` with each row's cells as JSON values, in order.
fn for_each_row(batches: &[RecordBatch], mut f: impl FnMut(Vec<Value>) -> Result<()>) -> Result<()> {
    let opts = FormatOptions::default().with_null("");
    for b in batches {
        let fmts: Vec<ArrayFormatter> =
            b.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &opts)).collect::<Result<_, _>>()?;
        for row in 0..b.num_rows() {
            f(b.columns().iter().zip(&fmts).map(|(col, fmt)| cell(col.as_ref(), fmt, row)).collect())?;
        }
    }
    Ok(())
}

/// A query's answer as JSON, `{"columns": [...], "rows": [[...]]}`: the bytes `json!` would
/// write for it (keys in that order), with the rows written by [`rows_json`].
pub fn answer_json(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let columns = serde_json::to_vec(&columns(schema)).map_err(|e| crate::error::Error::Invalid(e.to_string()))?;
    let rows = rows_json(batches)?;
    let mut body = Vec::with_capacity(columns.len() + rows.len() + 22);
    body.extend_from_slice(b"{\"columns\":");
    body.extend_from_slice(&columns);
    body.extend_from_slice(b",\"rows\":");
    body.extend_from_slice(&rows);
    body.push(b'}');
    Ok(body)
}

fn cell(col: &dyn Array, fmt: &ArrayFormatter, row: usize) -> Value {
    use arrow::array::AsArray;
    use arrow::datatypes::*;
    if col.is_null(row) {
        return Value::Null;
    }
    let float = |f: f64| Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null);
    match col.data_type() {
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Int8 => Value::from(col.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(col.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(col.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(col.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(col.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(col.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => float(col.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => float(col.as_primitive::<Float64Type>().value(row)),
        _ => Value::String(fmt.value(row).to_string()),
    }
}

/// CSV with a header line (RFC 4180 quoting).
pub fn csv(columns: &[String], rows: &[Vec<Value>]) -> String {
    let line = |vals: Vec<String>| vals.iter().map(|v| csv_field(v)).collect::<Vec<_>>().join(",");
    let mut out = line(columns.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(plain).collect()));
        out.push('\n');
    }
    out
}

/// An aligned text table for terminals.
pub fn table(columns: &[String], rows: &[Vec<Value>]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.iter().map(plain).collect()).collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in &cells {
        for (i, v) in r.iter().enumerate() {
            widths[i] = widths[i].max(v.chars().count());
        }
    }
    let fmt_row = |vals: &[String]| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join(" | ")
            .trim_end()
            .to_string()
    };
    let mut out = fmt_row(columns);
    out.push('\n');
    out.push_str(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().join("-+-"));
    out.push('\n');
    for r in &cells {
        out.push_str(&fmt_row(r));
        out.push('\n');
    }
    out.push_str(&format!("({} rows)\n", cells.len()));
    out
}

/// A cell as plain text: strings unquoted, null empty, floats with at most 6 decimals.
pub fn plain(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            let s = format!("{f:.6}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if s.is_empty() || s == "-" { "0".into() } else { s.to_string() }
        }
        other => other.to_string(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_as_json_are_the_bytes_of_the_rows_serialised() {
        use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
        use std::sync::Arc;
        let b = RecordBatch::try_from_iter([
            ("n", Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef),
            ("x", Arc::new(Float64Array::from(vec![f64::NAN, 2.5])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec![Some("a\"b"), Some("é")])) as ArrayRef),
        ])
        .unwrap();
        let batches = [b.clone(), b.slice(1, 1), b.slice(0, 0)];
        let expected = serde_json::to_vec(&rows(&batches).unwrap()).unwrap();
        assert_eq!(rows_json(&batches).unwrap(), expected);
        assert_eq!(rows_json(&[]).unwrap(), b"[]");
        let answer = answer_json(&b.schema(), &batches).unwrap();
        let expected = serde_json::json!({"columns": columns(&b.schema()), "rows": rows(&batches).unwrap()});
        assert_eq!(answer, serde_json::to_vec(&expected).unwrap());
    }
}
