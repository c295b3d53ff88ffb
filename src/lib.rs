//! convoscope: analytics and observability for WhatsApp business messaging.
//!
//! Webhooks from providers and events from the brand's own systems come in through the
//! collector, become one event schema, go through a local write-ahead log into Parquet on
//! object storage, and are read back by SQL reports.
//!
//! A map of the crate, in the order data flows:
//!
//! - [`server`]: the HTTP service (collector endpoints, `/metrics`, the `/v1` API).
//! - [`ingest`]: provider and first-party payloads → [`event::Event`]s.
//! - [`pii`]: phone numbers → `contact_key` and `country`; numbers are never stored.
//! - [`wal`]: the fsynced, checksummed write-ahead log behind every 200, with deduplication.
//! - [`idset`]: the compact set of id hashes behind the log's deduplication.
//! - [`store`]: object storage by URL, the Parquet writer, and the flusher from log to store.
//! - [`rollup`]: the per-message and per-conversation rollups written beside every events
//!   file, read by the reports.
//! - [`maintenance`]: `compact` and `retention`.
//! - [`analytics`]: DataFusion over the stored `events` table.
//! - [`experiments`]: experiment definitions and deterministic assignment.
//! - [`generate`]: synthetic, seeded event sets for demos and benchmarks.
//! - [`report`]: charts (plotters, SVG) and HTML pages of reports.
//! - [`send`]: the send path (consent, assignment, rate limits, retries, circuit breaker) and
//!   provider clients.
//! - [`sandbox`]: a simulated Cloud API provider that calls the collector back.
//! - [`metrics`]: the Prometheus metrics.
//! - [`config`]: settings from defaults, file, environment and flags.
//! - [`demo`]: the whole loop against the sandbox, in one command.
//! - [`alloc`]: the memory allocator (mimalloc, huge pages on large allocations).
//! - [`bench`]: the ingest benchmark's baseline server.
//! - [`cli`]: the commands of the `convoscope` binary.

pub mod alloc;
pub mod analytics;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod event;
pub mod experiments;
pub mod generate;
pub mod idset;
pub mod ingest;
pub mod maintenance;
pub mod metrics;
pub mod pii;
pub mod report;
pub mod rollup;
pub mod sandbox;
pub mod send;
pub mod server;
pub mod store;
pub mod wal;

pub use error::{Error, Result};
