//! `id_key(text)`: a 126-bit number standing for an id, so reports group and join message
//! ids and contacts as numbers instead of strings.
//!
//! DataFusion groups strings in a byte map that stores, compares and copies every distinct
//! value; at 10 million events that map was the largest item in `funnel`'s profile, and the
//! aggregations and joins over 2.4 million message ids grew 10-19× for 10× the events
//! (BENCHMARKS.md, fifth round). A 128-bit integer goes through the primitive group table and
//! hash join instead (BENCHMARKS.md, sixth round).
//!
//! The key is xxh3-128 of the id's bytes with the top two bits cleared, as a `Decimal128(38, 0)`:
//! the widest integer DataFusion groups natively, and 126 bits keep every value inside 38
//! digits. Two different ids share a key with probability about n²/2¹²⁷: for a billion ids,
//! under 10⁻²⁰, so counting distinct keys is counting distinct ids.

use std::sync::Arc;

use arrow::array::{AsArray, Decimal128Array};
use arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// The SQL name of the function.
pub const NAME: &str = "id_key";

/// Precision of the key's type: the largest a `Decimal128` has.
const PRECISION: u8 = 38;

/// Keeps 126 of the hash's 128 bits: 2¹²⁶ < 10³⁸, so every key is a valid `Decimal128(38, 0)`.
const MASK: u128 = (1 << 126) - 1;

/// The key of one id.
pub fn key(id: &str) -> i128 {
    // The mask leaves the sign bit clear, so the cast never wraps.
    (xxhash_rust::xxh3::xxh3_128(id.as_bytes()) & MASK) as i128
}

/// The key's SQL type.
pub fn data_type() -> DataType {
    DataType::Decimal128(PRECISION, 0)
}

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

    #[test]
    fn keys_are_stable_distinct_and_fit_the_type() {
        // Fixed by the algorithm (xxh3-128, top two bits cleared; checked against Python's
        // `xxhash`): a key a user saved from one build must mean the same id in the next.
        assert_eq!(key("wamid.A"), 75772337754330038444029943432968319820);
        assert_eq!(key(""), 34113528772569770473377261714909514111);
        assert_ne!(key("wamid.A"), key("wamid.B"));
        let max = 10i128.pow(38) - 1;
        for id in ["", "wamid.HBgLMTU1NTAwMDAwMDAVAgARGBI", "conv-1", "é"] {
            let k = key(id);
            assert!((0..=max).contains(&k), "{id}: {k}");
        }
    }

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
