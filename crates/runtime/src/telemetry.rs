//! Structured logs with tracing: human-readable or JSON, filtered by the configured level or
//! `RUST_LOG`; and the process's metrics endpoint ([`serve_metrics`], docs/METRICS.md).

use std::net::SocketAddr;

use shopmind_config::{LogConfig, LogFormat, MetricsConfig};
use tracing_subscriber::EnvFilter;

use crate::Shutdown;

/// Installs the global subscriber; a second call is a no-op (tests start several services).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
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
