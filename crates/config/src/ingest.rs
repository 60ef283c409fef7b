//! `[ingest]`: admission of raw events into the events stream.

use serde::{Deserialize, Serialize};
use shopmind_domain::TenantId;

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// How far in the future an event's `occurred_at` may be.
    pub max_future_skew_s: u64,
    /// Batches one ingest instance works on at the same time.
    pub concurrency: usize,
    /// The largest accepted event, encoded, in bytes.
    pub max_event_bytes: usize,
    /// The tenants whose events are accepted; empty: any valid tenant.
    pub tenants: Vec<TenantId>,
    /// Redelivery delay of an intake message that could not be published.
    pub ack_wait_s: u64,
    /// Deliveries of one intake message before it is dead-lettered.
    pub max_deliver: i64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_future_skew_s: 300,
            concurrency: 8,
            max_event_bytes: 64 * 1024,
            tenants: Vec::new(),
            ack_wait_s: 30,
            max_deliver: 10,
        }
    }
}

impl IngestConfig {
    /// Whether events of `tenant` are accepted (`ingest.tenants` empty, or listing it).
    pub fn accepts_tenant(&self, tenant: &TenantId) -> bool {
        self.tenants.is_empty() || self.tenants.contains(tenant)
    }
}

impl IngestConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.range("ingest.concurrency", self.concurrency, 1..=1024);
        c.range_because(
            "ingest.max_event_bytes",
            self.max_event_bytes,
            1024..=1_000_000,
            "NATS' default message limit is 1 MiB",
        );
        c.at_least("ingest.ack_wait_s", self.ack_wait_s, 1);
        c.max_deliver("ingest.max_deliver", self.max_deliver);
    }
}
