//! The feature schema over a [`FeatureStore`]: which keys hold what ([`keys`]), how an event
//! changes them ([`apply_event`]), and how services read them, each in one round trip
//! ([`read_user_context`], [`read_user_features`], [`read_item_features`],
//! [`read_session_features`]; for recommend [`read_recommend_context`], [`read_neighbours`],
//! [`read_catalog_entries`]), with the bounds and time constants of `feature.*`
//! ([`FeatureSettings::from_config`]). The schema is documented in `docs/FEATURES.md`.
//!
//! Every update commutes: lists are sorted sets ordered by event time, registers are
//! last-writer-wins by event time, counters add, decaying scores are order-free, co-visitation
//! counts pairs within a time window. So the feature service can run as several replicas sharing
//! one consumer, applying a user's events in any order, and reach the same state; and an event's
//! effect is written together with a guard named after the event, so it is applied exactly once.

pub mod churn;
pub mod conversations;
pub mod keys;
pub mod purchase_intent;
mod read;
mod recommend;
pub mod sentiment;
mod write;

use std::time::Duration;

use shopmind_config::FeatureConfig;
use shopmind_domain::InteractionKind;

pub use churn::{ChurnParams, churn_due_ms, churn_risk, mean_order_gap_ms};
pub use read::{
    ItemFeatures, SessionFeatures, UserContext, UserFeatures, read_item_features, read_items_demand,
    read_session_and_user_features, read_session_features, read_user_context, read_user_features,
};
pub use recommend::{
    CatalogEntry, CatalogParts, ContextQuery, Neighbours, RecommendContext, SeedNeighbours, category_levels,
    read_catalog_entries, read_category_popular, read_neighbours, read_popular, read_recommend_context,
};
pub use write::{Applied, apply_event, apply_events, recent_member, writes_for};

/// Bounds and time constants of the feature state: what the feature service writes with and
/// every reader reads with, both from `feature.*` through [`FeatureSettings::from_config`] (the
/// defaults are those of [`FeatureConfig::default`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSettings {
    pub recent_cap: usize,
    pub popular_cap: usize,
    pub user_ttl: Duration,
    pub dedup_ttl: Duration,
    pub session_ttl: Duration,
    pub bought_cap: usize,
    pub cart_log_cap: usize,
    /// Items visited within this time of each other by one user are co-visited.
    pub covisit_window: Duration,
    /// Items bought within this time of each other by one user are co-purchased.
    pub copurchase_window: Duration,
    /// Neighbours kept per item.
    pub neighbours_keep: usize,
    /// Item occurrences kept in a user's co-visitation and co-purchase windows.
    pub window_cap: usize,
    /// Item pairs remembered per user as counted.
    pub pairs_cap: usize,
    /// Days of demand history kept per item.
    pub demand_days: u32,
    /// Half-life of category affinity.
    pub affinity_half_life: Duration,
    /// Messages kept per support conversation (the newest).
    pub conversation_messages_cap: usize,
    /// Time to live of a support conversation's keys since its last message was applied.
    pub conversation_ttl: Duration,
}

impl FeatureSettings {
    /// The settings of `feature.*`: the one mapping from the configuration, used by the feature
    /// service and by every service that reads features.
    pub fn from_config(f: &FeatureConfig) -> Self {
        let days = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
        let hours = |h: u32| Duration::from_secs(u64::from(h) * 3600);
        Self {
            recent_cap: f.recent_items_cap,
            popular_cap: f.popular_items_cap,
            user_ttl: days(f.user_ttl_days),
            dedup_ttl: hours(f.dedup_ttl_hours),
            session_ttl: hours(f.session_ttl_hours),
            bought_cap: f.bought_cap,
            cart_log_cap: f.cart_log_cap,
            covisit_window: Duration::from_secs(f.covisit_window_s),
            copurchase_window: days(f.copurchase_window_days),
            neighbours_keep: f.neighbours_keep,
            window_cap: f.window_cap,
            pairs_cap: f.pairs_cap,
            demand_days: f.demand_days,
            affinity_half_life: days(f.affinity_half_life_days),
            conversation_messages_cap: f.conversation_messages_cap,
            conversation_ttl: days(f.conversation_ttl_days),
        }
    }
}

/// The settings of the default configuration.
impl Default for FeatureSettings {
    fn default() -> Self {
        Self::from_config(&FeatureConfig::default())
    }
}

/// Half-lives of the item popularity windows: (field, half-life).
pub const POPULARITY_WINDOWS: [(&str, Duration); 3] = [
    ("pop_1h", Duration::from_secs(3600)),
    ("pop_24h", Duration::from_secs(86_400)),
    ("pop_7d", Duration::from_secs(7 * 86_400)),
];

/// Popularity and affinity weight of an interaction kind.
pub fn popularity_weight(kind: InteractionKind) -> f64 {
    match kind {
        InteractionKind::View => 1.0,
        InteractionKind::Cart => 2.0,
        InteractionKind::Purchase => 3.0,
    }
}

const DAY_MS: i64 = 86_400_000;

#[cfg(test)]
mod tests {
    use super::*;

    /// Each setting comes from its own key of `feature.*`.
    #[test]
    fn every_setting_comes_from_its_key() {
        let config = FeatureConfig {
            recent_items_cap: 1,
            popular_items_cap: 2,
            user_ttl_days: 3,
            dedup_ttl_hours: 4,
            session_ttl_hours: 5,
            bought_cap: 6,
            cart_log_cap: 7,
            covisit_window_s: 8,
            copurchase_window_days: 9,
            neighbours_keep: 10,
            window_cap: 11,
            pairs_cap: 12,
            demand_days: 13,
            affinity_half_life_days: 14,
            conversation_messages_cap: 15,
            conversation_ttl_days: 16,
            ..FeatureConfig::default()
        };
        let (day, hour) = (86_400, 3600);
        let s = FeatureSettings::from_config(&config);
        assert_eq!(
            FeatureSettings {
                recent_cap: 1,
                popular_cap: 2,
                user_ttl: Duration::from_secs(3 * day),
                dedup_ttl: Duration::from_secs(4 * hour),
                session_ttl: Duration::from_secs(5 * hour),
                bought_cap: 6,
                cart_log_cap: 7,
                covisit_window: Duration::from_secs(8),
                copurchase_window: Duration::from_secs(9 * day),
                neighbours_keep: 10,
                window_cap: 11,
                pairs_cap: 12,
                demand_days: 13,
                affinity_half_life: Duration::from_secs(14 * day),
                conversation_messages_cap: 15,
                conversation_ttl: Duration::from_secs(16 * day),
            },
            s
        );
        assert_eq!(FeatureSettings::default(), FeatureSettings::from_config(&FeatureConfig::default()));
    }
}
