//! The feature schema over a [`FeatureStore`]: which keys hold what ([`keys`]), how an event
//! changes them ([`apply_event`]), and how services read them, each in one round trip
//! ([`read_user_context`], [`read_user_features`], [`read_item_features`],
//! [`read_session_features`]; for recommend [`read_recommend_context`], [`read_neighbours`],
//! [`read_catalog_entries`]). The schema is documented in `docs/FEATURES.md`.
//!
//! Every update commutes: lists are sorted sets ordered by event time, registers are
//! last-writer-wins by event time, counters add, decaying scores are order-free, co-visitation
//! counts pairs within a time window. So the feature service can run as several replicas sharing
//! one consumer, applying a user's events in any order, and reach the same state; and an event's
//! effect is written together with a guard named after the event, so it is applied exactly once.

pub mod churn;
pub mod conversations;
pub mod purchase_intent;
mod read;
mod recommend;
pub mod sentiment;
mod write;

use std::time::Duration;

use shopmind_domain::{ConversationId, InteractionKind, ItemId, SessionId, TenantId, UserId};
use shopmind_store::{Key, KeyPattern};

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

/// Store keys. Every key carries the tenant; `{...}` is the Redis Cluster hash tag, so the keys
/// of one user, one session or one item share a slot.
pub mod keys {
    use super::*;

    fn user(t: &TenantId, u: &UserId, what: &str) -> Key {
        Key(format!("sm:{{{t}:u:{u}}}:{what}"))
    }

    fn item(t: &TenantId, i: &str, what: &str) -> Key {
        Key(format!("sm:{{{t}:i:{i}}}:{what}"))
    }

    /// Recent interactions: sorted set of `kind|unix_ms|item`, scored by time.
    pub fn user_recent(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "recent")
    }
    /// Items bought: sorted set scored by the time of the latest purchase.
    pub fn user_bought(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "bought")
    }
    /// Cart changes: sorted set of `add|…`, `remove|…`, `order|…` entries scored by time;
    /// the cart is what folding them in time order leaves.
    pub fn user_cart_log(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "cart")
    }
    /// Orders: hash order id -> `unix_ms|status` (latest by event time).
    pub fn user_orders(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "orders")
    }
    /// Event counts per kind.
    pub fn user_counts(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "counts")
    }
    /// Category affinity: hash category -> decaying score.
    pub fn user_affinity(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "affinity")
    }
    /// RFM: `first_order_ms`, `last_order_ms`, `orders`, `spend:<currency>` (minor units).
    pub fn user_rfm(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "rfm")
    }
    /// The user's items of the co-visitation window.
    pub fn user_visit_window(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "visitwin")
    }
    /// The user's items of the co-purchase window.
    pub fn user_purchase_window(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "buywin")
    }
    /// Item pairs already counted as co-visited by the user (each pair counts once per user).
    pub fn user_visit_pairs(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "visitpairs")
    }
    /// Item pairs already counted as co-purchased by the user.
    pub fn user_purchase_pairs(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "buypairs")
    }
    /// Every per-user key (for TTLs and erasure).
    pub fn user_all(t: &TenantId, u: &UserId) -> Vec<Key> {
        vec![
            user_recent(t, u),
            user_bought(t, u),
            user_cart_log(t, u),
            user_orders(t, u),
            user_counts(t, u),
            user_affinity(t, u),
            user_rfm(t, u),
            user_visit_window(t, u),
            user_purchase_window(t, u),
            user_visit_pairs(t, u),
            user_purchase_pairs(t, u),
        ]
    }

    /// Session counters: views, carts, searches, orders, `first_ms`, `last_ms`, `user`.
    pub fn session(t: &TenantId, s: &SessionId) -> Key {
        Key(format!("sm:{{{t}:s:{s}}}:stats"))
    }

    /// Catalog attributes: title, category, price, currency, stock (each `unix_ms|value`).
    pub fn item_attrs(t: &TenantId, i: &ItemId) -> Key {
        item(t, i.as_str(), "attrs")
    }
    /// Item counters (views, carts, orders, units) and decaying popularity (pop_1h, pop_24h,
    /// pop_7d).
    pub fn item_stats(t: &TenantId, i: &ItemId) -> Key {
        item(t, i.as_str(), "stats")
    }
    /// Daily demand: hash day (days since 1970-01-01) -> units ordered.
    pub fn item_demand(t: &TenantId, i: &ItemId) -> Key {
        item(t, i.as_str(), "demand")
    }
    /// Items viewed by the same users close in time: sorted set item -> count, top N kept.
    pub fn item_covisit(t: &TenantId, i: &ItemId) -> Key {
        item(t, i.as_str(), "covisit")
    }
    /// Items bought by the same users: sorted set item -> count, top N kept.
    pub fn item_copurchase(t: &TenantId, i: &ItemId) -> Key {
        item(t, i.as_str(), "copurchase")
    }
    pub fn covisit_pattern(t: &TenantId) -> KeyPattern {
        KeyPattern { prefix: format!("sm:{{{t}:i:"), suffix: "}:covisit".into() }
    }
    pub fn copurchase_pattern(t: &TenantId) -> KeyPattern {
        KeyPattern { prefix: format!("sm:{{{t}:i:"), suffix: "}:copurchase".into() }
    }

    /// The tenant's all-time popularity: sorted set item -> weighted interactions, top N kept.
    pub fn popular(t: &TenantId) -> Key {
        Key(format!("sm:{{{t}}}:popular"))
    }

    /// A support conversation's statistics (hash; fields in docs/FEATURES.md and
    /// [`crate::conversations`]): first and last customer and agent message times, the first
    /// agent and every agent's first message, the customer, sentiment per day, `escalated_at`.
    pub fn conversation_stats(t: &TenantId, conversation_id: &ConversationId) -> Key {
        Key(format!("sm:{{{t}}}:conv_stats:{conversation_id}"))
    }
    /// A support conversation's messages in time order: sorted set of
    /// `<unix_ms>|c|<event_id>` (customer) and `<unix_ms>|a:<agent>|<event_id>` (agent), scored
    /// by time; the newest `feature.conversation_messages_cap` kept.
    pub fn conversation_messages(t: &TenantId, conversation_id: &ConversationId) -> Key {
        Key(format!("sm:{{{t}}}:conv_msgs:{conversation_id}"))
    }
    /// The conversations with a message on `day` (days since 1970-01-01, UTC): a set of ids.
    pub fn conversations_on(t: &TenantId, day: i64) -> Key {
        Key(format!("sm:{{{t}}}:conv_day:{day}"))
    }
    /// Every support agent that wrote a message: a set of agent ids.
    pub fn support_agents(t: &TenantId) -> Key {
        Key(format!("sm:{{{t}}}:agents"))
    }

    /// The catalog's items of a category (any level of their category path): sorted set item ->
    /// the time of its first `ItemUpserted` (the lowest applied), newest highest.
    pub fn category_items(t: &TenantId, category: &str) -> Key {
        Key(format!("sm:{{{t}}}:cat:{category}:items"))
    }

    /// Popularity within a category (any level of the items' category path): sorted set item ->
    /// weighted interactions, all time, top N kept.
    pub fn category_popular(t: &TenantId, category: &str) -> Key {
        Key(format!("sm:{{{t}}}:cat:{category}:popular"))
    }

    /// The assistant's state of a conversation (JSON: turns, intents, the order talked about,
    /// failures), expiring `assistant.conversation_ttl_s` after the last message.
    pub fn conversation(t: &TenantId, c: &ConversationId) -> Key {
        Key(format!("sm:{{{t}}}:conv:{c}"))
    }

    /// The ids of a customer's conversations with the assistant (a set), so that erasing the
    /// customer finds their conversation keys.
    pub fn user_conversations(t: &TenantId, u: &UserId) -> Key {
        Key(format!("sm:{{{t}}}:user:{u}:convs"))
    }

    /// The guard of an applied event.
    pub fn applied(t: &TenantId, event_id: &str) -> Key {
        Key(format!("sm:{{{t}:e:{event_id}}}:applied"))
    }
}

/// Bounds and time constants of the feature state.
#[derive(Debug, Clone, Copy)]
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

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            recent_cap: 100,
            popular_cap: 10_000,
            user_ttl: Duration::from_secs(90 * 86_400),
            dedup_ttl: Duration::from_secs(48 * 3600),
            session_ttl: Duration::from_secs(86_400),
            bought_cap: 500,
            cart_log_cap: 200,
            covisit_window: Duration::from_secs(30 * 60),
            copurchase_window: Duration::from_secs(30 * 86_400),
            neighbours_keep: 50,
            window_cap: 100,
            pairs_cap: 2000,
            demand_days: 400,
            affinity_half_life: Duration::from_secs(14 * 86_400),
            conversation_messages_cap: 1000,
            conversation_ttl: Duration::from_secs(400 * 86_400),
        }
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
