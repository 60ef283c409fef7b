//! `[streams]`: the retention of the JetStream streams.

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamsConfig {
    /// How long raw events stay in the events stream.
    pub events_max_age_days: u32,
    /// Window in which a repeated event_id is dropped on publish.
    pub duplicate_window_s: u32,
    /// How long dead letters are kept.
    pub dlq_max_age_days: u32,
    /// How long notifications stay resumable.
    pub notifications_max_age_days: u32,
    /// How long raw events published to `sm.in.<tenant>` wait for ingest.
    pub intake_max_age_days: u32,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        Self {
            events_max_age_days: 30,
            duplicate_window_s: 120,
            dlq_max_age_days: 14,
            notifications_max_age_days: 7,
            intake_max_age_days: 7,
        }
    }
}

impl StreamsConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.at_least("streams.duplicate_window_s", self.duplicate_window_s, 1);
    }
}
