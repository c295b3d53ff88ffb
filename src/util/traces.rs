//! Trace export over OTLP/HTTP (protobuf), for finding a slow acknowledgement: a webhook's span
//! (`webhook`) with its `verify`, `parse` and `wal.append` children, and the log writer's
//! `wal.group_commit` and `wal.fsync`. On when `CONVOSCOPE_OTLP_ENDPOINT` names a collector's
//! base URL (`http://127.0.0.1:4318`: spans go to its `/v1/traces`).
//!
//! An environment variable rather than a setting of `convoscope.toml`: tracing starts before
//! any command reads its configuration, so the first spans are not lost.

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
