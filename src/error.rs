//! The library's error type. Binaries wrap it in `anyhow` at the edge; the HTTP layer maps
//! it to a status code in [`crate::server::ApiError`].

use std::io;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed; `context` names the file and the operation.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The write-ahead log is over its byte budget (usually: the object store is down).
    #[error("the write-ahead log is full ({used} of {budget} bytes); retry later")]
    WalFull { used: u64, budget: u64 },
    /// The write-ahead log writer has stopped (shutdown, or an earlier fatal error).
    #[error("the write-ahead log is not accepting writes: {0}")]
    WalClosed(String),
    /// Object storage failed.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// A storage URL could not be understood.
    #[error("storage URL {url:?}: {reason}")]
    StorageUrl { url: String, reason: String },
    /// Writing or reading Parquet failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// Building Arrow data failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A query failed to plan or run.
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    /// A request or file did not have the expected shape.
    #[error("{0}")]
    Invalid(String),
    /// Configuration is wrong; the message names the setting.
    #[error("configuration: {0}")]
    Config(String),
    /// A named thing (report, experiment) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// As many queries as `max_concurrent_queries` allows are running; retry in a moment.
    #[error("{0} queries are running already, as many as max_concurrent_queries allows; retry in a moment")]
    QueryBusy(usize),
    /// A query ran past its time limit and was cancelled; the message names the setting.
    #[error("{0}")]
    QueryTimeout(String),
    /// A query needed more memory than the budget allows, even spilling to disk.
    #[error("{0}")]
    QueryMemory(String),
    /// A query was refused before it ran, or its result was (the message says why and how to
    /// narrow it).
    #[error("{0}")]
    QueryRefused(String),
    /// The caller may not do this (a tenant's token reaching past its tenant); the message says
    /// what it may do instead.
    #[error("{0}")]
    Forbidden(String),
    /// A task of the service stopped unexpectedly (a panic, or its runtime shut down).
    #[error("{0}")]
    Task(String),
    /// The cluster a query was sent to (`engine = "ballista://..."`) could not be reached or
    /// failed it; the message names the scheduler's address.
    #[error("{0}")]
    Cluster(String),
}

impl Error {
    /// An I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
