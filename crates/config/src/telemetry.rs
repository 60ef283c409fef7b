//! `[telemetry]`: where traces are exported.

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint that traces are exported to, e.g. `http://otel-collector:4317`.
    /// Empty: no export (trace context still travels between services and into logs).
    pub otlp_endpoint: String,
}

impl TelemetryConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        if !self.otlp_endpoint.is_empty() {
            c.scheme(
                "telemetry.otlp_endpoint",
                &self.otlp_endpoint,
                &["http://", "https://"],
                "must be an http:// or https:// URL, or empty for no export",
            );
        }
    }
}
