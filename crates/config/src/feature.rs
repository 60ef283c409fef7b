//! `[feature]`: the feature service's consumer and what the feature store keeps.

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureConfig {
    /// Redelivery delay of an event whose effect could not be stored.
    pub ack_wait_s: u64,
    /// Deliveries of one event before it is dead-lettered.
    pub max_deliver: i64,
    /// Events one feature instance has taken and not yet settled, across the batches it applies
    /// at the same time (updates commute, so order does not matter).
    pub concurrency: usize,
    /// Most events applied in one store round trip (each still guarded on its own).
    pub batch_size: usize,
    /// Recent interactions kept per user.
    pub recent_items_cap: usize,
    /// Items kept in a tenant's popularity ranking.
    pub popular_items_cap: usize,
    /// Time to live of per-user features since the user's last event.
    pub user_ttl_days: u32,
    /// How long an applied event_id is remembered, so a redelivery is not counted twice.
    pub dedup_ttl_hours: u32,
    /// Time to live of a session's features since its last event.
    pub session_ttl_hours: u32,
    /// Purchased items remembered per user.
    pub bought_cap: usize,
    /// Cart changes remembered per user.
    pub cart_log_cap: usize,
    /// Items one user visits within this many seconds of each other are co-visited.
    pub covisit_window_s: u64,
    /// Items one user buys within this many days of each other are co-purchased.
    pub copurchase_window_days: u32,
    /// Co-visited and co-purchased neighbours kept per item.
    pub neighbours_keep: usize,
    /// Item occurrences kept in a user's co-visitation and co-purchase windows.
    pub window_cap: usize,
    /// Item pairs remembered per user as already counted (each pair counts once per user).
    pub pairs_cap: usize,
    /// Days of daily demand kept per item.
    pub demand_days: u32,
    /// Half-life of a user's category affinity, in days.
    pub affinity_half_life_days: u32,
    /// Messages kept per support conversation (the newest), for the agent report.
    pub conversation_messages_cap: usize,
    /// Days a support conversation's statistics are kept after its last message was applied.
    pub conversation_ttl_days: u32,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            ack_wait_s: 30,
            max_deliver: 10,
            concurrency: 512,
            batch_size: 128,
            recent_items_cap: 100,
            popular_items_cap: 10_000,
            user_ttl_days: 90,
            dedup_ttl_hours: 48,
            session_ttl_hours: 24,
            bought_cap: 500,
            cart_log_cap: 200,
            covisit_window_s: 1800,
            copurchase_window_days: 30,
            neighbours_keep: 50,
            window_cap: 100,
            pairs_cap: 2000,
            demand_days: 400,
            affinity_half_life_days: 14,
            conversation_messages_cap: 1000,
            conversation_ttl_days: 400,
        }
    }
}

impl FeatureConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.at_least("feature.ack_wait_s", self.ack_wait_s, 1);
        c.max_deliver("feature.max_deliver", self.max_deliver);
        c.range("feature.concurrency", self.concurrency, 1..=1024);
        c.range("feature.batch_size", self.batch_size, 1..=1024);
        c.at_least("feature.session_ttl_hours", self.session_ttl_hours, 1);
        c.at_least("feature.bought_cap", self.bought_cap, 1);
        c.at_least("feature.cart_log_cap", self.cart_log_cap, 1);
        c.at_least("feature.covisit_window_s", self.covisit_window_s, 1);
        c.at_least("feature.copurchase_window_days", self.copurchase_window_days, 1);
        c.at_least("feature.neighbours_keep", self.neighbours_keep, 1);
        c.at_least("feature.window_cap", self.window_cap, 1);
        c.at_least("feature.pairs_cap", self.pairs_cap, 1);
        c.at_least("feature.demand_days", self.demand_days, 1);
        c.at_least("feature.affinity_half_life_days", self.affinity_half_life_days, 1);
        c.at_least("feature.conversation_messages_cap", self.conversation_messages_cap, 1);
        c.at_least("feature.conversation_ttl_days", self.conversation_ttl_days, 1);
        c.range("feature.recent_items_cap", self.recent_items_cap, 1..=10_000);
        c.at_least("feature.popular_items_cap", self.popular_items_cap, 1);
        c.at_least("feature.user_ttl_days", self.user_ttl_days, 1);
        c.at_least_because(
            "feature.dedup_ttl_hours",
            self.dedup_ttl_hours,
            1,
            "it is what keeps redeliveries from counting twice",
        );
    }
}
