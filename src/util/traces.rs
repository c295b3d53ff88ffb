//! The process's log and trace export: the service log on standard error, and, with the
//! default `otlp` feature, spans over OTLP/HTTP (protobuf) for finding a slow acknowledgement:
//! a webhook's span (`webhook`) with its `verify`, `parse` and `wal.append` children, and the
//! log writer's `wal.group_commit` and `wal.fsync`. Export is on when
//! `CONVOSCOPE_OTLP_ENDPOINT` names a collector's base URL (`http://127.0.0.1:4318`: spans go
//! to its `/v1/traces`).
//!
//! An environment variable rather than a setting of `convoscope.toml`: tracing starts before
//! any command reads its configuration, so the first spans are not lost.

/// Starts the service log on standard error (`CONVOSCOPE_LOG` filters it) and, with the
/// `otlp` feature and `CONVOSCOPE_OTLP_ENDPOINT` set, trace export.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("CONVOSCOPE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,usvg=error,resvg=error"));
    // Colour codes only for a terminal: in a log file or journal they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .with_filter(filter);
    // The log's filter is its own: trace export sees the spans whatever the log level.
    #[cfg(feature = "otlp")]
    {
        let endpoint = std::env::var(otlp::ENDPOINT_VAR).ok().filter(|e| !e.is_empty());
        let (traces, refused) = match endpoint.as_deref().map(otlp::layer) {
            Some(Ok(layer)) => (Some(layer), None),
            Some(Err(why)) => (None, Some(why)),
            None => (None, None),
        };
        let _ = tracing_subscriber::registry().with(log).with(traces).try_init();
        if let Some(why) = refused {
            tracing::warn!("{why}; traces are not exported");
        }
    }
    #[cfg(not(feature = "otlp"))]
    let _ = tracing_subscriber::registry().with(log).try_init();
}

/// Sends the spans still buffered; called once when the process ends.
pub fn flush() {
    #[cfg(feature = "otlp")]
    otlp::flush();
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::sync::OnceLock;

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::Layer;
    use tracing_subscriber::registry::LookupSpan;

    /// The environment variable naming the OTLP/HTTP endpoint.
    pub const ENDPOINT_VAR: &str = "CONVOSCOPE_OTLP_ENDPOINT";

    /// How long one export may take: a collector that is down must not hold spans, or the exit.
    const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

    /// The layer that exports convoscope's spans to `endpoint`, or the reason it cannot.
    pub fn layer<S>(endpoint: &str) -> Result<impl Layer<S>, String>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot export traces to {url}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("convoscope").build())
            .build();
        let tracer = provider.tracer("convoscope");
        let _ = PROVIDER.set(provider);
        // convoscope's own spans only: the libraries' (hyper, h2, DataFusion) would drown them.
        let only_ours = tracing_subscriber::filter::filter_fn(|meta| meta.target().starts_with("convoscope"));
        Ok(tracing_opentelemetry::layer().with_tracer(tracer).with_filter(only_ours))
    }

    /// Sends the spans still buffered; called once when the process ends.
    pub fn flush() {
        if let Some(p) = PROVIDER.get() {
            let _ = p.shutdown();
        }
    }
}
