//! `max_text(text)` and `min_text(text)`: `MAX` and `MIN` of a text column, for the
//! few-valued attributes (campaign, template, locale, category, country, date) the message
//! reports carry per message.
//!
//! DataFusion's `MAX` over strings keeps each group's current value in its own heap
//! allocation; grouping 2.4 million messages by key with three such columns took the cohort's
//! aggregation from 0.33 to 1.06 s at 10 million events (BENCHMARKS.md, sixth round). These
//! columns hold a handful of distinct values, so this aggregate keeps each distinct value once
//! and a 32-bit index per group. Same answers as `MAX` and `MIN` (the largest or smallest
//! value by bytes, null when every value is null); on a column of many distinct values they
//! cost what `MAX` and `MIN` cost.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringViewBuilder};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result};
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, EmitTo, GroupsAccumulator, Signature, Volatility,
};
use datafusion_functions_aggregate_common::aggregate::groups_accumulator::nulls::apply_filter_as_nulls;

/// The SQL names of the functions.
pub const MAX: &str = "max_text";
/// See [`MAX`].
pub const MIN: &str = "min_text";

/// A group that has seen no non-null value yet.
pub(crate) const NONE: u32 = u32::MAX;

/// `max_text` (`max` true) or `min_text` as a DataFusion aggregate.
pub fn udaf(max: bool) -> AggregateUDF {
    AggregateUDF::from(TextExtreme {
        signature: Signature::uniform(1, vec![DataType::Utf8View], Volatility::Immutable),
        max,
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TextExtreme {
    signature: Signature,
    /// Largest (`max_text`), else smallest.
    max: bool,
}

impl AggregateUDFImpl for TextExtreme {
    fn name(&self) -> &str {
        if self.max { MAX } else { MIN }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8View)
    }

    /// Without grouping (one value for the whole input) DataFusion's own accumulator is as good.
    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(if self.max {
            Box::new(MaxAccumulator::try_new(&DataType::Utf8View)?)
        } else {
            Box::new(MinAccumulator::try_new(&DataType::Utf8View)?)
        })
    }

    /// The state is the running extreme itself, in both accumulators.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(format!("{}[{}]", args.name, self.name()), DataType::Utf8View, true))])
    }

    fn groups_accumulator_supported(&self, _args: AccumulatorArgs) -> bool {
        true
    }

    fn create_groups_accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(TextExtremeGroups { max: self.max, ..Default::default() }))
    }
}

/// Distinct texts, each kept once and named by a 32-bit index ([`NONE`] names none).
#[derive(Default)]
pub(crate) struct Interner {
    values: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
    /// Bytes of text held: each distinct value twice, in `values` and as a key of `index`.
    value_bytes: usize,
}

impl Interner {
    /// The index of `value`, added if new.
    pub(crate) fn intern(&mut self, value: &str) -> Result<u32> {
        if let Some(&i) = self.index.get(value) {
            return Ok(i);
        }
        let i = u32::try_from(self.values.len()).ok().filter(|&i| i != NONE).ok_or_else(|| {
            DataFusionError::ResourcesExhausted("text aggregate: more than 2^32 distinct values".into())
        })?;
        self.values.push(value.into());
        self.index.insert(value.into(), i);
        self.value_bytes += 2 * value.len();
        Ok(i)
    }

    /// The text at `i`; `None` for [`NONE`].
    pub(crate) fn get(&self, i: u32) -> Option<&str> {
        self.values.get(i as usize).map(|v| &**v)
    }

    /// The texts at `indexes` as an array, null for [`NONE`].
    pub(crate) fn array(&self, indexes: Vec<u32>) -> ArrayRef {
        let mut out = StringViewBuilder::with_capacity(indexes.len());
        for i in indexes {
            match self.get(i) {
                Some(v) => out.append_value(v),
                None => out.append_null(),
            }
        }
        Arc::new(out.finish())
    }

    pub(crate) fn size(&self) -> usize {
        self.values.capacity() * size_of::<Box<str>>()
            + self.index.capacity() * (size_of::<Box<str>>() + size_of::<u32>())
            + self.value_bytes
    }
}

/// Each group's extreme as an index into the distinct values seen.
#[derive(Default)]
struct TextExtremeGroups {
    max: bool,
    /// Per group: index into `texts`, or [`NONE`].
    extremes: Vec<u32>,
    /// Every distinct value that has been some group's extreme, once.
    texts: Interner,
}

impl TextExtremeGroups {
    /// Folds `input` into the groups, keeping per group the largest (smallest) value.
    fn fold(&mut self, input: &ArrayRef, groups: &[usize], filter: Option<&BooleanArray>, total: usize) -> Result<()> {
        let input = text(input)?;
        self.extremes.resize(total, NONE);
        for (row, &group) in groups.iter().enumerate() {
            if input.is_null(row) || filtered_out(filter, row) {
                continue;
            }
            let value = input.value(row);
            let current = self.extremes[group];
            let wins = match self.texts.get(current) {
                None => true,
                Some(held) => {
                    if self.max {
                        value > held
                    } else {
                        value < held
                    }
                }
            };
            if wins {
                self.extremes[group] = self.texts.intern(value)?;
            }
        }
        Ok(())
    }

    fn emit(&mut self, emit_to: EmitTo) -> ArrayRef {
        self.texts.array(emit_to.take_needed(&mut self.extremes))
    }
}

/// Whether an aggregate's `FILTER` drops `row` (a null filter value drops it too).
pub(crate) fn filtered_out(filter: Option<&BooleanArray>, row: usize) -> bool {
    filter.is_some_and(|f| !f.is_valid(row) || !f.value(row))
}

/// The argument as text: the signature coerces every string type to `Utf8View`.
pub(crate) fn text(array: &ArrayRef) -> Result<&arrow::array::StringViewArray> {
    array
        .as_string_view_opt()
        .ok_or_else(|| DataFusionError::Internal(format!("text aggregate expects Utf8View, got {}", array.data_type())))
}

impl GroupsAccumulator for TextExtremeGroups {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.fold(&values[0], group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.emit(emit_to))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.emit(emit_to)])
    }

    fn merge_batch(&mut self, values: &[ArrayRef], group_indices: &[usize], total_num_groups: usize) -> Result<()> {
        self.fold(&values[0], group_indices, None, total_num_groups)
    }

    /// A row on its own is its own extreme: the state is the value, null where filtered out.
    fn convert_to_state(&self, values: &[ArrayRef], opt_filter: Option<&BooleanArray>) -> Result<Vec<ArrayRef>> {
        Ok(vec![apply_filter_as_nulls(&values[0], opt_filter)?])
    }

    fn size(&self) -> usize {
        self.extremes.capacity() * size_of::<u32>() + self.texts.size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// `max_text` and `min_text` against `MAX` and `MIN` over the same groups, nulls and a group
    /// of only nulls included.
    #[tokio::test]
    async fn agree_with_max_and_min() {
        let ctx = SessionContext::new();
        ctx.register_udaf(udaf(true));
        ctx.register_udaf(udaf(false));
        let sql = "SELECT g, max_text(v) AS a, MAX(v) AS b, min_text(v) AS c, MIN(v) AS d FROM (VALUES
                     (1, 'en_GB'), (1, NULL), (1, 'pt_BR'), (2, NULL), (3, 'de'), (3, 'de'), (4, ''), (4, 'a'), (5, 'b'), (5, 'ab')
                   ) AS t(g, v) GROUP BY g ORDER BY g";
        let batches = ctx.sql(sql).await.expect("plan").collect().await.expect("run");
        let b = &batches[0];
        let column = |c: usize| -> Vec<Option<String>> {
            // MAX of the literals is Utf8, max_text's is Utf8View.
            let a = arrow::compute::cast(b.column(c), &DataType::Utf8View).expect("cast");
            let a = a.as_string_view();
            (0..b.num_rows()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect()
        };
        let some = |v: &[Option<&str>]| -> Vec<Option<String>> { v.iter().map(|s| s.map(String::from)).collect() };
        assert_eq!(column(1), column(2));
        assert_eq!(column(1), some(&[Some("pt_BR"), None, Some("de"), Some("a"), Some("b")]));
        assert_eq!(column(3), column(4));
        assert_eq!(column(3), some(&[Some("en_GB"), None, Some("de"), Some(""), Some("ab")]));
    }

    #[test]
    fn merging_partial_states_and_emitting_the_first_groups() {
        let mut acc = TextExtremeGroups { max: true, ..Default::default() };
        let col = |v: Vec<Option<&str>>| -> ArrayRef { Arc::new(arrow::array::StringViewArray::from(v)) };
        acc.update_batch(&[col(vec![Some("b"), Some("x"), None])], &[0, 1, 2], None, 3).expect("update");
        // Another partition's states: a larger value for group 0, a smaller one for group 1.
        acc.merge_batch(&[col(vec![Some("c"), Some("a"), None])], &[0, 1, 2], 3).expect("merge");
        let filter = BooleanArray::from(vec![false, true]);
        acc.update_batch(&[col(vec![Some("z"), Some("q")])], &[0, 2], Some(&filter), 3).expect("filtered");
        let first = acc.evaluate(EmitTo::First(2)).expect("first two");
        let first = first.as_string_view();
        assert_eq!((first.value(0), first.value(1)), ("c", "x"));
        let rest = acc.evaluate(EmitTo::All).expect("rest");
        assert_eq!(rest.as_string_view().value(0), "q");
        let state = acc.convert_to_state(&[col(vec![Some("k"), Some("l")])], Some(&filter)).expect("state");
        assert!(state[0].is_null(0));
        assert_eq!(state[0].as_string_view().value(1), "l");
    }
}
