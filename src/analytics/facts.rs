//! The facts tables every report reads: `message_facts`, `conversation_facts`,
//! `exposure_facts` and `contact_event_facts`, one row per (events file or date, key).
//!
//! Each is backed by its rollup's files ([`crate::rollup`]) where every events file has its
//! rollups, else by a view over `events` (`queries/facts/`) that yields the same columns, one
//! row per date and key (`message_facts` and `exposure_facts`: one row per event). Every column
//! is a MIN, MAX, "any" or set of the key's events, so a row per date or per event is as valid a
//! partial aggregate as a row per file: a report that merges the rows per key gives the same
//! answer from either backing, and so is written once.
//!
//! The rollups are much faster to read (a quarter of the rows, ids as numbers); the views keep
//! a store without them (written by an earlier version or another tool) answering, until
//! `serve`'s compaction round or `convoscope compact` writes the missing rollups.

use datafusion::execution::context::SessionContext;

use crate::error::Result;
use crate::rollup::Kind;

/// A facts table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    Messages,
    Conversations,
    Exposures,
    ContactEvents,
}

impl Fact {
    /// Every facts table.
    pub const ALL: [Fact; 4] = [Fact::Messages, Fact::Conversations, Fact::Exposures, Fact::ContactEvents];

    /// Its SQL name.
    pub fn table(self) -> &'static str {
        match self {
            Fact::Messages => "message_facts",
            Fact::Conversations => "conversation_facts",
            Fact::Exposures => "exposure_facts",
            Fact::ContactEvents => "contact_event_facts",
        }
    }

    /// The rollup whose files back it.
    pub fn rollup(self) -> Kind {
        match self {
            Fact::Messages => Kind::Messages,
            Fact::Conversations => Kind::Conversations,
            Fact::Exposures => Kind::Exposures,
            Fact::ContactEvents => Kind::ContactEvents,
        }
    }

    /// The view over `events` that backs it where the rollups do not cover the store.
    pub fn view_sql(self) -> &'static str {
        match self {
            Fact::Messages => include_str!("../../queries/facts/message_facts.sql"),
            Fact::Conversations => include_str!("../../queries/facts/conversation_facts.sql"),
            Fact::Exposures => include_str!("../../queries/facts/exposure_facts.sql"),
            Fact::ContactEvents => include_str!("../../queries/facts/contact_event_facts.sql"),
        }
    }
}

/// Registers every facts table in `ctx`: as its rollup's table (registered already, under
/// [`Kind::table`]) when `rollups` is true, else as its view over `events`.
pub async fn register(ctx: &SessionContext, rollups: bool) -> Result<()> {
    for fact in Fact::ALL {
        let provider = if rollups {
            ctx.table_provider(fact.rollup().table()).await?
        } else {
            ctx.sql(fact.view_sql()).await?.into_view()
        };
        ctx.register_table(fact.table(), provider)?;
    }
    Ok(())
}
