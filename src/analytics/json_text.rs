//! `json_text(attributes, key)`: one value of a JSON object as text, for the reports that read
//! what providers send beyond the event schema's columns (a template's status and quality, an
//! account's alerts), which ingest keeps in `attributes`.
//!
//! A string value is its text, any other value its JSON (`{"tier": 2}` gives `2`), and a
//! missing key, a null, text that is not a JSON object or a null argument give null. `pricing`
//! reads a key of every status of every message, so the object is not built: its keys are
//! compared as they are read and the other values skipped, and only the value asked for is
//! made (a duplicated key gives its last value, as a parsed object would).

use std::sync::Arc;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use serde_json::Value;

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

/// The value at `key` of the object `json`, as text.
pub fn value_text(json: &str, key: &str) -> Option<String> {
    let mut de = serde_json::Deserializer::from_str(json);
    let found = serde::Deserializer::deserialize_map(&mut de, Find(key)).ok()?;
    // Text after the object is not a JSON object either.
    de.end().ok()?;
    match found? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Reads an object for the value of one key.
struct Find<'k>(&'k str);

impl<'de> serde::de::Visitor<'de> for Find<'_> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(hit) = map.next_key_seed(IsKey(self.0))? {
            if hit {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A key compared with the one asked for as it is read, without a copy of it.
struct IsKey<'k>(&'k str);

impl<'de> serde::de::DeserializeSeed<'de> for IsKey<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for IsKey<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
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
                (Some(j), Some(k)) => value_text(&j, &k),
                _ => None,
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(out)))
        }
        (ColumnarValue::Array(j), ColumnarValue::Scalar(k)) => {
            let k = scalar_text(k)?;
            let j = views(j)?;
            let out: StringArray = j.iter().map(|j| j.zip(k.as_deref()).and_then(|(j, k)| value_text(j, k))).collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }
        (j, k) => {
            let (j, k) = (j.to_array(1)?, k.to_array(1)?);
            let n = j.len().max(k.len());
            let (j, k) = (ColumnarValue::Array(j).into_array(n)?, ColumnarValue::Array(k).into_array(n)?);
            let (j, k) = (views(&j)?, views(&k)?);
            let out: StringArray =
                j.iter().zip(k.iter()).map(|(j, k)| j.zip(k).and_then(|(j, k)| value_text(j, k))).collect();
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
        assert_eq!(value_text(j, "event").as_deref(), Some("PAUSED"));
        assert_eq!(value_text(j, "tier").as_deref(), Some("2"));
        assert_eq!(value_text(j, "info").as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(value_text(j, "none"), None);
        assert_eq!(value_text(j, "missing"), None);
        assert_eq!(value_text("not json", "event"), None);
        assert_eq!(value_text("[1,2]", "event"), None);
    }

    /// The same answers as parsing the whole object, on objects with nesting, escapes, spaces,
    /// a duplicated key, and on text that is not one object.
    #[test]
    fn the_same_as_the_parsed_object() {
        let whole = |json: &str, key: &str| match serde_json::from_str::<Value>(json).ok()?.get(key)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        let cases = [
            r#"{"pricing_model":"PMP","pricing_type":"regular"}"#,
            r#"{ "a" : { "pricing_type" : "nested" } , "pricing_type" : "top" }"#,
            r#"{"a":{"pricing_type":"nested only"}}"#,
            r#"{"note":"\"pricing_type\":\"fake\"","pricing_type":"free_entry_point"}"#,
            r#"{"pricing_type":"first","pricing_type":"last"}"#,
            r#"{"pric\u0069ng_type":"escaped key","x":[1,{"pricing_type":2}]}"#,
            r#"{"pricing_type":"caf\u00e9 \"quoted\""}"#,
            r#"{"pricing_type":["a",1]}"#,
            r#"{"pricing_type":"regular"} trailing"#,
            r#"{"pricing_type":"regular""#,
            r#""pricing_type""#,
            "",
        ];
        for json in cases {
            for key in ["pricing_type", "a", "x", "note", "missing"] {
                assert_eq!(value_text(json, key), whole(json, key), "{json} {key}");
            }
        }
        assert_eq!(value_text(cases[1], "pricing_type").as_deref(), Some("top"));
        assert_eq!(value_text(cases[3], "pricing_type").as_deref(), Some("free_entry_point"));
        assert_eq!(value_text(cases[4], "pricing_type").as_deref(), Some("last"));
        assert_eq!(value_text(cases[5], "pricing_type").as_deref(), Some("escaped key"));
        assert_eq!(value_text(cases[6], "pricing_type").as_deref(), Some("café \"quoted\""));
        assert_eq!(value_text(cases[2], "pricing_type"), None);
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
