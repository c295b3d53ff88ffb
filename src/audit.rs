//! The audit trail: one record per `/v1` call, page sign-in, admin command and maintenance run,
//! saying when, who (a token's id, role and tenant, never the token), what and how it ended.
//!
//! A record travels through the write-ahead log as one row of the event schema (event type
//! [`EVENT_TYPE`]), so it is as durable as any event and costs no second log; the flusher
//! ([`crate::flush`]) writes those rows, in the columns below, to
//! `_audit/date=<date>/<name>.parquet` instead of `events/`. The operator reads them as the
//! `audit` table; a tenant's token cannot. A command that runs without a collector writes its
//! record to `_audit/` directly ([`crate::store::Storage::put_audit`]).
//!
//! A record never holds a phone number or a token: the statement of a `/v1/query` is kept with
//! every run of 7 or more digits replaced ([`crate::pii::redact_numbers`]).

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::error::{Error, Result};
use crate::event::Event;

/// The event type audit records travel the log under.
pub const EVENT_TYPE: &str = "audit.record";

/// The source audit records travel the log under.
pub const SOURCE: &str = "audit";

/// One audit record.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Microseconds since the epoch.
    pub at: i64,
    /// The token's id (`-` when none was presented, `cli` for a command).
    pub token_id: String,
    /// The token's role (`-` when unknown).
    pub role: String,
    /// Its tenant, `*` for the operator.
    pub tenant: String,
    /// What was done: a route (`POST /v1/query`) or a command (`convoscope erase`).
    pub action: String,
    /// What it was done to: a report, an experiment, a contact's key.
    pub target: Option<String>,
    /// The detail: a statement's text (numbers redacted), what an erasure removed.
    pub detail: Option<String>,
    /// `ok`, `refused` (4xx) or `failed` (5xx or an error).
    pub outcome: String,
    /// The HTTP status, or 0 for a command.
    pub status: i32,
    /// How many: events accepted, rows removed, messages sent.
    pub count: Option<i64>,
}

/// Column of the audit table, and the event column it travels the log in.
const COLUMNS: [(&str, &str); 10] = [
    ("at", "occurred_at"),
    ("token_id", "actor"),
    ("role", "agent_key"),
    ("tenant", "queue"),
    ("action", "interaction_id"),
    ("target", "interaction_title"),
    ("detail", "attributes"),
    ("outcome", "error_title"),
    ("status", "error_code"),
    ("count", "cost_micros"),
];

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|(name, _)| match *name {
                "at" => Field::new(*name, DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
                "status" => Field::new(*name, DataType::Int32, true),
                "count" => Field::new(*name, DataType::Int64, true),
                "target" | "detail" => Field::new(*name, DataType::Utf8, true),
                _ => Field::new(*name, DataType::Utf8, false),
            })
            .collect::<Vec<_>>(),
    ))
});

/// The schema of `_audit/` files and the `audit` table (without its `date` column).
pub fn schema() -> SchemaRef {
    SCHEMA.clone()
}

impl Record {
    /// The outcome word of an HTTP status.
    pub fn outcome_of(status: u16) -> &'static str {
        match status {
            0..=399 => "ok",
            400..=499 => "refused",
            _ => "failed",
        }
    }

    /// The record as the event row it travels the log as.
    pub fn to_event(&self) -> Event {
        let mut e = Event::new(format!("audit:{:032x}", rand::random::<u128>()), EVENT_TYPE, self.at, self.at, SOURCE);
        e.actor = Some(self.token_id.clone());
        e.agent_key = Some(self.role.clone());
        e.queue = Some(self.tenant.clone());
        e.interaction_id = Some(self.action.clone());
        e.interaction_title = self.target.clone();
        e.attributes = self.detail.clone();
        e.error_title = Some(self.outcome.clone());
        e.error_code = Some(self.status);
        e.cost_micros = self.count;
        e
    }

    /// Records as a batch of the audit table.
    pub fn to_batch(records: &[Record]) -> Result<RecordBatch> {
        let events: Vec<Event> = records.iter().map(Record::to_event).collect();
        let batch = crate::event::to_record_batch(&events)?;
        audit_columns(&batch)
    }
}

/// Which rows of a batch of the event schema are audit records.
pub fn is_audit(batch: &RecordBatch) -> Result<BooleanArray> {
    let types = batch
        .column_by_name("event_type")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| Error::Invalid("events batch without event_type".into()))?;
    Ok(types.iter().map(|t| Some(t == Some(EVENT_TYPE))).collect())
}

/// Batches of the event schema split into the events (batches without an audit row pass
/// through as they are) and the audit table's batches of the audit rows.
pub fn split(batches: Vec<RecordBatch>) -> Result<(Vec<RecordBatch>, Vec<RecordBatch>)> {
    let (mut events, mut audit) = (Vec::with_capacity(batches.len()), Vec::new());
    for b in batches {
        let rows = is_audit(&b)?;
        match rows.true_count() {
            0 => events.push(b),
            n => {
                audit.push(audit_columns(&arrow::compute::filter_record_batch(&b, &rows)?)?);
                if n < b.num_rows() {
                    events.push(arrow::compute::filter_record_batch(&b, &arrow::compute::not(&rows)?)?);
                }
            }
        }
    }
    Ok((events, audit))
}

/// The audit table's columns of a batch of audit rows in the event schema.
pub fn audit_columns(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = COLUMNS
        .iter()
        .map(|(name, from)| {
            let c = batch.column_by_name(from).ok_or_else(|| Error::Invalid(format!("events batch without {from}")))?;
            // Columns the audit table declares non-null are filled by every record; a null
            // there is a row written by something else.
            if !SCHEMA.field_with_name(name).is_ok_and(|f| f.is_nullable()) && c.null_count() > 0 {
                return Err(Error::Invalid(format!("an audit row without {name}")));
            }
            Ok(c.clone())
        })
        .collect::<Result<_>>()?;
    Ok(RecordBatch::try_new(schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_goes_through_the_event_row_and_back() {
        let r = Record {
            at: 1_767_225_600_000_000,
            token_id: "0123456789ab".into(),
            role: "read".into(),
            tenant: "acme".into(),
            action: "POST /v1/query".into(),
            target: None,
            detail: Some("SELECT 1".into()),
            outcome: "ok".into(),
            status: 200,
            count: Some(1),
        };
        let other = Event::new("x".into(), "message.sent", 0, 0, "api");
        let batch = crate::event::to_record_batch(&[r.to_event(), other]).unwrap();
        let audit = is_audit(&batch).unwrap();
        assert_eq!(audit.iter().collect::<Vec<_>>(), [Some(true), Some(false)]);
        let rows = arrow::compute::filter_record_batch(&batch, &audit).unwrap();
        let table = audit_columns(&rows).unwrap();
        assert_eq!(table.schema(), schema());
        assert_eq!(table.column_by_name("tenant").unwrap().as_string::<i32>().value(0), "acme");
        assert_eq!(table.column_by_name("status").unwrap().as_primitive::<arrow::datatypes::Int32Type>().value(0), 200);
        assert_eq!(Record::to_batch(std::slice::from_ref(&r)).unwrap().num_rows(), 1);
        assert!(
            audit_columns(&crate::event::to_record_batch(&[Event::new("y".into(), EVENT_TYPE, 0, 0, "x")]).unwrap())
                .is_err()
        );
        assert_eq!(
            (Record::outcome_of(204), Record::outcome_of(403), Record::outcome_of(503)),
            ("ok", "refused", "failed")
        );
    }
}
