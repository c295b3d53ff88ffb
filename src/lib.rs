//! convoscope: analytics and observability for WhatsApp business messaging.
//!
//! Webhooks from providers and events from the brand's own systems come in through the
//! collector, become one event schema, go through a local write-ahead log into Parquet on
//! object storage, and are read back by SQL reports. One data path, top to bottom:
//!
//! ```text
//! provider webhook ──> server::webhooks ──> signature (verify) ──> ingest (normalise)
//!          ──> wal (group commit, fsync; then 200) ──> flush ──> store (Parquet events + rollup)
//!          ──> analytics (facts tables, reports/) ──> render (charts, pages) ──> server::pages
//! ```
//!
//! The map, bottom first (each module uses only modules above it in this list):
//!
//! - [`error`]: the library's typed error.
//! - [`ids`]: the two id hashes (the log's 64-bit dedup hash; `id_key`, the reports' key).
//! - [`config`]: settings from defaults, file, environment and flags, and the small settings
//!   structs the reports and the send path take.
//! - [`util`]: the process's allocator, the ingest benchmark's baseline server, and trace
//!   export over OTLP (the default `otlp` feature).
//! - [`signature`]: the providers' webhook signatures, which the collector verifies and the
//!   sandbox signs.
//! - [`event`]: the one event schema everything is normalised into.
//! - [`experiments`]: experiment definitions, how each is judged (goals, guardrails, the
//!   always-valid test's settings), deterministic assignment, and the callback data
//!   the send path writes and ingest reads back.
//! - [`pii`]: phone numbers → `contact_key` and `country`; numbers are never stored.
//! - [`audit`]: the audit trail's record, as it travels the log and as `_audit/` stores it.
//! - [`ingest`]: provider and first-party payloads → events, one file per provider.
//! - [`rollup`]: the per-message, per-conversation, per-exposure and per-conversion/opt-out partial aggregates
//!   written beside every events file.
//! - [`metrics`]: the Prometheus metrics.
//! - [`wal`]: the fsynced, checksummed write-ahead log behind every 200, with deduplication.
//! - [`store`]: object storage by URL, the key layout and the Parquet encoding.
//! - [`flush`]: sealed log segments → Parquet events files and their rollups in the store.
//! - [`maintenance`]: one file per operation: compact, its schedule, rollup healing, retention.
//! - [`generate`]: synthetic, seeded event sets for demos and benchmarks.
//! - [`analytics`]: DataFusion over the store: the tables, the facts, the reports, run here or
//!   on a cluster (`analytics::cluster`), and the experiments' statistics (`analytics::stats`).
//! - [`render`]: charts (plotters, SVG, PNG) and HTML pages of reports.
//! - [`send`]: the send path (consent, assignment, rate limits, retries, circuit breaker) and
//!   provider clients.
//! - `cluster`: the scheduler and executor of an Apache DataFusion Ballista cluster, which run
//!   the reports past one machine (the default `cluster` feature).
//! - [`server`]: the HTTP service (collector endpoints, `/metrics`, the `/v1` API, the pages).
//! - [`sandbox`]: a simulated provider (Meta's Cloud API or Twilio) that calls the collector back.
//! - [`demo`]: the whole loop against the sandbox, in one command.
//! - [`cli`]: the commands of the `convoscope` binary.
//!
//! Rules the map keeps (`scripts/check_imports.py` checks them on every test run):
//!
//! - Data flows down: a module uses only modules listed before it.
//! - Nothing below [`server`] knows HTTP: the server frameworks (axum, hyper, tower) are used
//!   only by [`server`], [`sandbox`], [`demo`], [`cli`] and the benchmark's baseline server.
//! - The sandbox talks to the collector over HTTP only, as a provider does: it uses neither
//!   [`server`] nor [`ingest`]; what both sides must agree on ([`signature`], the callback
//!   data in [`experiments`]) lives below both.
//! - The id hashes come from [`ids`] alone; [`config`] builds nothing of the modules it
//!   configures (the send path builds its provider client, the reports take their settings).

pub mod analytics;
pub mod audit;
pub mod cli;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod demo;
pub mod error;
pub mod event;
pub mod experiments;
pub mod flush;
pub mod generate;
pub mod ids;
pub mod ingest;
pub mod maintenance;
pub mod metrics;
pub mod pii;
pub mod render;
pub mod rollup;
pub mod sandbox;
pub mod send;
pub mod server;
pub mod signature;
pub mod store;
pub mod util;
pub mod wal;

pub use error::{Error, Result};
