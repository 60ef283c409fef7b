//! `[notification]`: the notification service's consumer, timers and webhook delivery, and each
//! tenant's rules, policies and webhooks (`[notification.defaults]`, `[notification.tenants.<t>]`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ORDER_STATUSES;
use crate::check::{Checks, is_tenant_id};
use crate::time_zone::{parse_time_zone, parse_utc_offset};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    /// Redelivery delay of an event whose notifications could not be stored or published.
    pub ack_wait_s: u64,
    /// Deliveries of one event before it is dead-lettered.
    pub max_deliver: i64,
    /// How often due timers (idle carts, churn checks, deferred notifications) are looked for.
    pub timer_poll_ms: u64,
    /// How long one replica holds a due timer it works on before another may take it over.
    pub timer_lease_s: u64,
    /// Whether the rules ask the inference service's `intent` and `forecast` methods for purchase
    /// intent and demand forecasts (falling back to the feature-based estimates when a tenant has
    /// no such model or the call fails); false: always the feature-based estimates.
    pub model_seams: bool,
    /// Time limit (and request deadline) of one such call, in milliseconds.
    pub model_timeout_ms: u64,
    /// Webhook delivery (all tenants).
    pub webhook: WebhookDeliveryConfig,
    /// Rules, policies and webhooks of every tenant without its own table in `tenants`.
    pub defaults: TenantNotifications,
    /// Per tenant: a table that overrides only the keys it names; the rest come from `defaults`.
    pub tenants: BTreeMap<String, TenantNotifications>,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            ack_wait_s: 30,
            max_deliver: 10,
            timer_poll_ms: 1000,
            timer_lease_s: 30,
            model_seams: true,
            model_timeout_ms: 500,
            webhook: WebhookDeliveryConfig::default(),
            defaults: TenantNotifications::default(),
            tenants: BTreeMap::new(),
        }
    }
}

impl NotificationConfig {
    /// The rules, policies and webhooks in force for `tenant`.
    pub fn tenant(&self, tenant: &str) -> &TenantNotifications {
        self.tenants.get(tenant).unwrap_or(&self.defaults)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookDeliveryConfig {
    /// Time limit of one POST (connect, send, response headers).
    pub timeout_ms: u64,
    /// Attempts of one delivery before it is dead-lettered (`shopmind notifications dead-letters`).
    pub max_attempts: i64,
    /// Backoff before attempt n+1: a random value in [d/2, d] with d = min(base * 2^(n-1), max).
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Deliveries in flight at once per process.
    pub concurrency: usize,
    /// A PEM file of extra CA certificates that `https://` endpoints may chain to, besides the
    /// platform's roots (for private CAs); empty: the platform's roots only.
    pub ca_file: String,
}

impl Default for WebhookDeliveryConfig {
    fn default() -> Self {
        Self {
            timeout_ms: 5000,
            max_attempts: 8,
            backoff_base_ms: 1000,
            backoff_max_ms: 300_000,
            concurrency: 16,
            ca_file: String::new(),
        }
    }
}

/// What one tenant's notifications do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantNotifications {
    pub rules: RulesConfig,
    pub policy: PolicyConfig,
    /// HTTP endpoints that get every notification of their audiences (and kinds) as a signed POST.
    pub webhooks: Vec<WebhookEndpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RulesConfig {
    pub cart_abandonment: CartAbandonmentRule,
    pub back_in_stock: BackInStockRule,
    pub price_drop: PriceDropRule,
    pub order_status: OrderStatusRule,
    pub low_stock: LowStockRule,
    pub churn_risk: ChurnRiskRule,
    pub support_escalation: SupportEscalationRule,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CartAbandonmentRule {
    pub enabled: bool,
    /// The cart has not changed for this long.
    pub idle_s: u64,
    /// And the user's purchase intent (0..1) is at least this.
    pub min_intent: f64,
    /// Recommended complements carried by the nudge.
    pub complements: usize,
}

impl Default for CartAbandonmentRule {
    fn default() -> Self {
        Self { enabled: true, idle_s: 1800, min_intent: 0.5, complements: 3 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackInStockRule {
    pub enabled: bool,
    /// A user who viewed or carted the item while it was out of stock is told within this many days.
    pub watch_days: u32,
}

impl Default for BackInStockRule {
    fn default() -> Self {
        Self { enabled: true, watch_days: 30 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceDropRule {
    pub enabled: bool,
    /// The price fell by at least this many percent.
    pub min_drop_pct: f64,
    /// Users who viewed the item within this many days are told.
    pub viewed_within_days: u32,
    /// Most recent viewers remembered per item.
    pub max_viewers: usize,
}

impl Default for PriceDropRule {
    fn default() -> Self {
        Self { enabled: true, min_drop_pct: 10.0, viewed_within_days: 30, max_viewers: 1000 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrderStatusRule {
    pub enabled: bool,
    /// The statuses that notify (placed, paid, shipped, delivered, cancelled, returned, refunded).
    pub statuses: Vec<String>,
}

impl Default for OrderStatusRule {
    fn default() -> Self {
        Self { enabled: true, statuses: ORDER_STATUSES.map(String::from).to_vec() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LowStockRule {
    pub enabled: bool,
    /// Days until a restock arrives: the merchant is alerted when the demand forecast over this
    /// many days exceeds the stock.
    pub lead_time_days: u32,
    /// Days of daily demand the fallback forecaster averages.
    pub history_days: u32,
}

impl Default for LowStockRule {
    fn default() -> Self {
        Self { enabled: true, lead_time_days: 7, history_days: 28 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnRiskRule {
    pub enabled: bool,
    /// A customer is at risk when the time since the last order exceeds this many times their
    /// mean time between orders.
    pub drift_ratio: f64,
    /// Only customers with at least this many orders (a mean gap needs two).
    pub min_orders: i64,
}

impl Default for ChurnRiskRule {
    fn default() -> Self {
        Self { enabled: true, drift_ratio: 2.0, min_orders: 2 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SupportEscalationRule {
    pub enabled: bool,
    /// A customer's support message containing one of these (case-insensitive) escalates to the
    /// agents; the assistant escalates through the API whatever the text.
    pub keywords: Vec<String>,
}

impl Default for SupportEscalationRule {
    fn default() -> Self {
        let keywords = ["human", "agent", "complaint", "lawyer", "manager", "chargeback"];
        Self { enabled: true, keywords: keywords.map(String::from).to_vec() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// The same rule for the same user and item notifies at most once within this window.
    pub dedup_window_s: u64,
    /// At most `frequency_cap` notifications of the capped kinds per user within
    /// `frequency_window_s`; more are dropped.
    pub frequency_cap: u32,
    pub frequency_window_s: u64,
    /// The kinds the frequency cap counts (the marketing ones by default).
    pub capped_kinds: Vec<String>,
    /// Quiet hours in the user's time zone, [start, end) in whole hours (start > end spans
    /// midnight; start == end: none). Notifications of `quiet_kinds` are deferred to the end.
    pub quiet_start_hour: u32,
    pub quiet_end_hour: u32,
    pub quiet_kinds: Vec<String>,
    /// The UTC offset of users who set no time zone, e.g. "+00:00", "-05:00" (used when
    /// `default_time_zone` is empty).
    pub default_utc_offset: String,
    /// The IANA time zone of users who set none, e.g. "Europe/Berlin" (daylight saving time
    /// followed); empty: `default_utc_offset`.
    pub default_time_zone: String,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let marketing = ["cart_abandoned", "back_in_stock", "price_drop"];
        Self {
            dedup_window_s: 86_400,
            frequency_cap: 3,
            frequency_window_s: 86_400,
            capped_kinds: marketing.map(String::from).to_vec(),
            quiet_start_hour: 22,
            quiet_end_hour: 8,
            quiet_kinds: marketing.map(String::from).to_vec(),
            default_utc_offset: "+00:00".into(),
            default_time_zone: String::new(),
        }
    }
}

/// A webhook endpoint of a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookEndpoint {
    /// Names the endpoint in subjects and dead letters: 1-64 of `a-z 0-9 - _`.
    pub name: String,
    /// `http://host[:port]/path` or `https://host[:port]/path` (TLS, verified against the
    /// platform's roots and `notification.webhook.ca_file`).
    pub url: String,
    /// HMAC-SHA256 key of the `Shopmind-Signature` header.
    pub secret: String,
    /// Audiences it receives (customer, merchant, agents); empty: all.
    pub audiences: Vec<String>,
    /// Kinds it receives (order_status, cart_abandoned, ...); empty: all.
    pub kinds: Vec<String>,
}

/// The notification kinds, as configuration names them.
pub const NOTIFICATION_KINDS: [&str; 7] = [
    "order_status",
    "cart_abandoned",
    "back_in_stock",
    "price_drop",
    "low_stock",
    "churn_risk",
    "support_escalation",
];

/// The notification audiences.
pub const AUDIENCES: [&str; 3] = ["customer", "merchant", "agents"];

impl NotificationConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.at_least("notification.ack_wait_s", self.ack_wait_s, 1);
        c.max_deliver("notification.max_deliver", self.max_deliver);
        c.at_least("notification.timer_poll_ms", self.timer_poll_ms, 10);
        c.at_least("notification.timer_lease_s", self.timer_lease_s, 1);
        self.webhook.validate(c);
        c.tenant_tables("notification", self.tenants.keys());
        c.scoped("notification.defaults", |c| self.defaults.validate(c));
        for (tenant, table) in &self.tenants {
            c.scoped(&format!("notification.tenants.{tenant}"), |c| table.validate(c));
        }
        c.at_least("notification.model_timeout_ms", self.model_timeout_ms, 1);
    }
}

impl WebhookDeliveryConfig {
    fn validate(&self, c: &mut Checks) {
        c.at_least("notification.webhook.timeout_ms", self.timeout_ms, 1);
        c.at_least("notification.webhook.max_attempts", self.max_attempts, 1);
        c.ensure(
            self.backoff_base_ms > 0 && self.backoff_max_ms >= self.backoff_base_ms,
            "notification.webhook.backoff_base_ms",
            "must be at least 1 and at most backoff_max_ms",
        );
        c.range("notification.webhook.concurrency", self.concurrency, 1..=1024);
    }
}

impl TenantNotifications {
    /// Checks one table, with keys relative to it (`rules.cart_abandonment.idle_s`).
    fn validate(&self, c: &mut Checks) {
        self.rules.validate(c);
        self.policy.validate(c);
        let mut names = BTreeSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            c.scoped(&format!("webhooks[{i}]"), |c| {
                c.ensure(
                    is_tenant_id(&w.name) && names.insert(w.name.as_str()),
                    "name",
                    "must be unique and 1-64 of a-z 0-9 - _",
                );
                w.validate(c);
            });
        }
    }
}

impl RulesConfig {
    fn validate(&self, c: &mut Checks) {
        let cart = &self.cart_abandonment;
        c.at_least("rules.cart_abandonment.idle_s", cart.idle_s, 1);
        c.ensure(
            (0.0..=1.0).contains(&cart.min_intent),
            "rules.cart_abandonment.min_intent",
            "must be within 0..=1",
        );
        c.at_most("rules.cart_abandonment.complements", cart.complements, 50);
        c.at_least("rules.back_in_stock.watch_days", self.back_in_stock.watch_days, 1);
        let drop = &self.price_drop;
        c.ensure(
            drop.min_drop_pct > 0.0 && drop.min_drop_pct < 100.0,
            "rules.price_drop.min_drop_pct",
            "must be within (0, 100)",
        );
        c.ensure(
            drop.viewed_within_days > 0 && drop.max_viewers > 0,
            "rules.price_drop.viewed_within_days",
            "it and max_viewers must be at least 1",
        );
        c.known("rules.order_status.statuses", &self.order_status.statuses, &ORDER_STATUSES, "status");
        c.ensure(
            self.low_stock.lead_time_days > 0 && self.low_stock.history_days > 0,
            "rules.low_stock.lead_time_days",
            "it and history_days must be at least 1",
        );
        let churn = &self.churn_risk;
        c.ensure(
            churn.drift_ratio.is_finite() && churn.drift_ratio > 0.0,
            "rules.churn_risk.drift_ratio",
            "must be a positive number",
        );
        c.at_least_because("rules.churn_risk.min_orders", churn.min_orders, 2, "a mean gap needs two orders");
    }
}

impl PolicyConfig {
    fn validate(&self, c: &mut Checks) {
        c.ensure(
            self.dedup_window_s > 0 && self.frequency_window_s > 0,
            "policy.dedup_window_s",
            "it and frequency_window_s must be at least 1",
        );
        c.ensure(
            self.quiet_start_hour <= 23 && self.quiet_end_hour <= 23,
            "policy.quiet_start_hour",
            "quiet hours must be 0..=23",
        );
        c.ensure(
            parse_utc_offset(&self.default_utc_offset).is_some(),
            "policy.default_utc_offset",
            "must be +HH:MM or -HH:MM (or UTC)",
        );
        if !self.default_time_zone.is_empty() && parse_time_zone(&self.default_time_zone).is_none() {
            c.fail(
                "policy.default_time_zone",
                format!("unknown time zone {:?}: an IANA name such as Europe/Berlin", self.default_time_zone),
            );
        }
        c.known("policy.capped_kinds", &self.capped_kinds, &NOTIFICATION_KINDS, "kind");
        c.known("policy.quiet_kinds", &self.quiet_kinds, &NOTIFICATION_KINDS, "kind");
    }
}

impl WebhookEndpoint {
    /// Checks all but the name (unique within its table), with keys relative to the endpoint.
    fn validate(&self, c: &mut Checks) {
        c.scheme("url", &self.url, &["http://", "https://"], "must be an http:// or https:// URL");
        c.ensure(!self.secret.is_empty(), "secret", "must not be empty");
        c.known("audiences", &self.audiences, &AUDIENCES, "audience");
        c.known("kinds", &self.kinds, &NOTIFICATION_KINDS, "kind");
    }
}
