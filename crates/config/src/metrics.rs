//! `[metrics]`: the process's Prometheus endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of the process's Prometheus endpoint (`GET /metrics`, `GET /healthz`), e.g.
    /// `127.0.0.1:9090`; empty: none.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9090".into() }
    }
}

impl MetricsConfig {
    /// The address to serve metrics on; `None` when disabled (or invalid, which
    /// [`crate::Config::validate`] reports).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

impl MetricsConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.ensure(
            self.listen.is_empty() || self.listen_addr().is_some(),
            "metrics.listen",
            "must be an IP address and port such as 127.0.0.1:9090, or empty for no endpoint",
        );
    }
}
