//! `id_key(text)` as a DataFusion function: the key of [`crate::ids::key`], so reports group
//! and join message ids and contacts as numbers instead of strings (the module [`crate::ids`]
//! says why and how it is made).

use std::sync::Arc;

use arrow::array::{AsArray, Decimal128Array};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

use crate::ids::{KEY_PRECISION as PRECISION, key, key_type as data_type};

/// The SQL name of the function.
pub const NAME: &str = "id_key";

/// `id_key` as a DataFusion function: text in (strings are read as views; other string types
/// are coerced), its key out, null for null.
pub fn udf() -> ScalarUDF {
    create_udf(NAME, vec![DataType::Utf8View], data_type(), Volatility::Immutable, Arc::new(invoke))
}

fn invoke(args: &[ColumnarValue]) -> datafusion::common::Result<ColumnarValue> {
    let [arg] = args else {
        return Err(DataFusionError::Plan(format!("{NAME} takes one argument, got {}", args.len())));
    };
    match arg {
        ColumnarValue::Array(array) => {
            let ids = array.as_string_view_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("{NAME} expects Utf8View, got {}", array.data_type()))
            })?;
            let keys: Decimal128Array = ids.iter().map(|id| id.map(key)).collect();
            Ok(ColumnarValue::Array(Arc::new(keys.with_precision_and_scale(PRECISION, 0)?)))
        }
        ColumnarValue::Scalar(scalar) => {
            let id = match scalar {
                ScalarValue::Utf8View(v) | ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) => v.as_deref(),
                ScalarValue::Null => None,
                other => {
                    return Err(DataFusionError::Internal(format!("{NAME} expects text, got {}", other.data_type())));
                }
            };
            Ok(ColumnarValue::Scalar(ScalarValue::Decimal128(id.map(key), PRECISION, 0)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    #[tokio::test]
    async fn sql_keys_match_the_function_and_keep_nulls() {
        use datafusion::prelude::SessionContext;
        let ctx = SessionContext::new();
        ctx.register_udf(udf());
        let batches = ctx
            .sql("SELECT id_key(x) AS k FROM (VALUES ('wamid.A'), (NULL), ('wamid.B')) AS t(x)")
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        let keys = batches[0].column(0).as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(keys.value(0), key("wamid.A"));
        assert!(keys.is_null(1));
        assert_eq!(keys.value(2), key("wamid.B"));
        // A literal goes through the scalar path.
        let batches = ctx.sql("SELECT id_key('wamid.A') AS k").await.expect("plan").collect().await.expect("run");
        let keys = batches[0].column(0).as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(keys.value(0), key("wamid.A"));
    }
}
