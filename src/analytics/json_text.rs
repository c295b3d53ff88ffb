//! `json_text(attributes, key)`: one value of a JSON object as text, for the reports that read
//! what providers send beyond the event schema's columns (a template's status and quality, an
//! account's alerts), which ingest keeps in `attributes`.
//!
//! A string value is its text, any other value its JSON (`{"tier": 2}` gives `2`), and a
//! missing key, a null, text that is not a JSON object or a null argument give null, as
//! [`crate::event::attribute_text`] reads them.

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::event::attribute_text;

/// The SQL name of the function.
pub const NAME: &str = "json_text";

/// `json_text` as a DataFusion function.
pub fn udf() -> ScalarUDF {
    create_udf(
        NAME,
        vec![DataType::Utf8View, DataType::Utf8View],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(invoke),
    )
}

fn invoke(args: &[ColumnarValue]) -> datafusion::common::Result<ColumnarValue> {
    let [json, key] = args else {
        return Err(DataFusionError::Plan(format!("{NAME} takes two arguments, got {}", args.len())));
    };
    let scalar_text = |v: &ScalarValue| match v {
        ScalarValue::Utf8View(s) | ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) => Ok(s.clone()),
        ScalarValue::Null => Ok(None),
        other => Err(DataFusionError::Internal(format!("{NAME} expects text, got {}", other.data_type()))),
    };
    let views = |a: &Arc<dyn Array>| {
        a.as_string_view_opt()
            .ok_or_else(|| DataFusionError::Internal(format!("{NAME} expects Utf8View, got {}", a.data_type())))
            .cloned()
    };
    match (json, key) {
        (ColumnarValue::Scalar(j), ColumnarValue::Scalar(k)) => {
            let out = match (scalar_text(j)?, scalar_text(k)?) {
                (Some(j), Some(k)) => attribute_text(&j, &k),
                _ => None,
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(out)))
        }
        (ColumnarValue::Array(j), ColumnarValue::Scalar(k)) => {
            let k = scalar_text(k)?;
            let j = views(j)?;
            let out: StringArray =
                j.iter().map(|j| j.zip(k.as_deref()).and_then(|(j, k)| attribute_text(j, k))).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
        (j, k) => {
            let (j, k) = (j.to_array(1)?, k.to_array(1)?);
            let n = j.len().max(k.len());
            let (j, k) = (ColumnarValue::Array(j).into_array(n)?, ColumnarValue::Array(k).into_array(n)?);
            let (j, k) = (views(&j)?, views(&k)?);
            let out: StringArray =
                j.iter().zip(k.iter()).map(|(j, k)| j.zip(k).and_then(|(j, k)| attribute_text(j, k))).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    #[test]
    fn values_of_every_kind_and_nothing_for_what_is_not_there() {
        let j = r#"{"event":"PAUSED","tier":2,"info":{"a":1},"none":null}"#;
        assert_eq!(attribute_text(j, "event").as_deref(), Some("PAUSED"));
        assert_eq!(attribute_text(j, "tier").as_deref(), Some("2"));
        assert_eq!(attribute_text(j, "info").as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(attribute_text(j, "none"), None);
        assert_eq!(attribute_text(j, "missing"), None);
        assert_eq!(attribute_text("not json", "event"), None);
        assert_eq!(attribute_text("[1,2]", "event"), None);
    }

    #[tokio::test]
    async fn in_sql_over_a_column() {
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        let df = ctx
            .sql(r#"SELECT json_text(a, 'event') AS e FROM (VALUES ('{"event":"APPROVED"}'), (NULL), ('{}')) AS t (a)"#)
            .await
            .unwrap();
        let batches = df.collect().await.unwrap();
        let col = batches[0].column(0).as_string::<i32>();
        assert_eq!((col.value(0), col.is_null(1), col.is_null(2)), ("APPROVED", true, true));
    }
}
