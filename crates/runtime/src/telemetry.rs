//! Structured logs with tracing: human-readable or JSON, filtered by the configured level or
//! `RUST_LOG`; OpenTelemetry spans (W3C trace context from gRPC metadata and NATS headers, OTLP
//! export); and the process's metrics endpoint ([`serve_metrics`], docs/METRICS.md).

use std::net::SocketAddr;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use shopmind_bus::TraceContext;
use shopmind_config::{LogConfig, LogFormat, MetricsConfig, TelemetryConfig};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::Shutdown;

/// The process's tracing pipeline; call [`Telemetry::shutdown`] before exiting so that the
/// last spans are exported.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports what is buffered and stops the exporter.
    pub fn shutdown(&self) {
        if let Some(p) = &self.provider {
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber: structured logs (pretty or JSON) and OpenTelemetry spans,
/// exported over OTLP/gRPC to `telemetry.otlp_endpoint` when it is set. A second call is a
/// no-op (tests start several services). `service` names the process in traces.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig, service: &str) -> Result<Telemetry, String> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut builder = SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(format!("shopmind-{service}")).build());
    if !telemetry.otlp_endpoint.is_empty() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(telemetry.otlp_endpoint.clone())
            .build()
            .map_err(|e| format!("telemetry.otlp_endpoint {}: {e}", telemetry.otlp_endpoint))?;
        // Exports on the tokio runtime (the gRPC client needs it), in batches.
        let processor =
            opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
                exporter,
                opentelemetry_sdk::runtime::Tokio,
            )
            .build();
        builder = builder.with_span_processor(processor);
    }
    let provider = builder.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("shopmind"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let installed = match log.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(otel)
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Pretty => {
            tracing_subscriber::registry().with(filter).with(otel).with(fmt.compact()).try_init()
        }
    };
    Ok(Telemetry { provider: installed.is_ok().then_some(provider) })
}

/// Makes `span` a child of the remote span that `parent` names (from a `traceparent` header or
/// gRPC metadata). Without a parent the span starts a new trace.
pub fn set_remote_parent(span: &tracing::Span, parent: Option<TraceContext>) {
    let Some(p) = parent else { return };
    let context = SpanContext::new(
        TraceId::from_bytes(p.trace_id.to_be_bytes()),
        SpanId::from_bytes(p.span_id.to_be_bytes()),
        if p.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() },
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(context));
}

/// The trace context to send with a message caused by `span`: the span's own OpenTelemetry
/// context when tracing is installed, else a child of `fallback` (the incoming context), else a
/// new trace.
pub fn outgoing(span: &tracing::Span, fallback: Option<TraceContext>) -> TraceContext {
    let context = span.context();
    let otel_span = context.span();
    let sc = otel_span.span_context();
    if sc.is_valid() {
        return TraceContext {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            sampled: sc.is_sampled(),
        };
    }
    fallback.map_or_else(TraceContext::new_root, |f| f.child())
}

/// Starts the process's metrics endpoint (`GET /metrics`, `GET /healthz`) on `metrics.listen`,
/// serving until `shutdown`; returns the bound address, or `None` when `metrics.listen` is empty.
/// Call it once per process. An address that cannot be bound is an error that names the key.
pub async fn serve_metrics(
    config: &MetricsConfig,
    shutdown: &Shutdown,
) -> std::io::Result<Option<SocketAddr>> {
    let Some(addr) = config.listen_addr() else { return Ok(None) };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "binding metrics.listen {addr}: {e} (each process needs its own address: set \
                 --metrics-listen or SHOPMIND__METRICS__LISTEN, or \"\" for no endpoint)"
            ),
        )
    })?;
    let bound = listener.local_addr()?;
    let shutdown = shutdown.clone();
    tokio::spawn(shopmind_metrics::serve(listener, async move { shutdown.wait().await }));
    Ok(Some(bound))
}
