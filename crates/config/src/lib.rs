//! shopmind's configuration.
//!
//! Layers, each overriding the one before: built-in defaults, a TOML file (`--config`),
//! environment variables `SHOPMIND__<SECTION>__<KEY>` (e.g. `SHOPMIND__NATS__URL`), and
//! command-line flags (applied by the binary). The result is validated once at start; every error
//! names the key and the problem. `config/shopmind.example.toml` documents every key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shopmind_domain::TenantId;

/// The prefix of environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "SHOPMIND__";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("environment variable {var}: {reason}")]
    Env { var: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub nats: NatsConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub metrics: MetricsConfig,
    pub streams: StreamsConfig,
    pub gateway: GatewayConfig,
    pub ingest: IngestConfig,
    pub feature: FeatureConfig,
    pub inference: InferenceConfig,
    pub notification: NotificationConfig,
    pub trainer: TrainerConfig,
    pub models: ModelsConfig,
    pub privacy: PrivacyConfig,
    pub assistant: AssistantConfig,
}

/// Privacy at the edge (docs/PRIVACY.md): PII redaction of free text, pseudonymous customer
/// ids, per-tenant retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Mask emails, phone numbers, card numbers, IBANs, addresses, ... in support messages and
    /// search queries before events are published (and in dead letters).
    pub redact: bool,
    /// A file holding the secret key of pseudonymous ids (HMAC-SHA256; its bytes, trailing
    /// whitespace removed). Required when a tenant sets `pseudonymize`. Never logged.
    pub secret_file: String,
    /// Per-tenant settings: `[privacy.tenants.<tenant>]`.
    pub tenants: BTreeMap<String, TenantPrivacy>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { redact: true, secret_file: String::new(), tenants: BTreeMap::new() }
    }
}

/// One tenant's privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPrivacy {
    /// Replace the shop's customer ids by keyed hashes at ingest (`privacy.secret_file`).
    pub pseudonymize: bool,
    /// Raw events older than this many days are deleted from the streams by
    /// `shopmind privacy sweep`; 0: only the streams' own limits apply.
    pub events_max_age_days: u32,
    /// Conversations older than this many days are deleted by `shopmind privacy sweep`
    /// (and expire in the store); 0: no limit of their own.
    pub conversations_max_age_days: u32,
}

impl PrivacyConfig {
    /// The settings of `tenant` (the defaults when it has none).
    pub fn tenant(&self, tenant: &str) -> TenantPrivacy {
        self.tenants.get(tenant).cloned().unwrap_or_default()
    }

    /// Reads the pseudonymisation secret from `secret_file`: None when no file is set.
    pub fn read_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.secret_file.is_empty() {
            return Ok(None);
        }
        let bytes = std::fs::read(&self.secret_file).map_err(|e| ConfigError::Invalid {
            key: "privacy.secret_file".into(),
            reason: format!("cannot read {}: {e}", self.secret_file),
        })?;
        let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        if end < 16 {
            return Err(ConfigError::Invalid {
                key: "privacy.secret_file".into(),
                reason: "the secret must be at least 16 bytes".into(),
            });
        }
        Ok(Some(bytes[..end].to_vec()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port`. Empty: the in-process bus (only `all-in-one` can use it).
    pub url: String,
    /// User name of user/password authentication (with `password` or `password_file`).
    pub user: String,
    /// Password of `user`; prefer `password_file` (a mounted secret).
    pub password: String,
    /// A file holding the password of `user` (trailing whitespace ignored).
    pub password_file: String,
    /// Token authentication; prefer `token_file`.
    pub token: String,
    /// A file holding the token (trailing whitespace ignored).
    pub token_file: String,
    /// Require TLS even for `nats://` URLs (`tls://` URLs always use it).
    pub tls_required: bool,
    /// PEM file of the certificate authorities the server's certificate is checked against
    /// (added to the platform's roots).
    pub tls_ca_file: String,
    /// PEM client certificate and key, for servers that verify clients (mutual TLS).
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS). Empty: the in-memory store (only `all-in-one`
    /// can use it).
    pub url: String,
    /// ACL user name (Redis 6+); empty: the default user.
    pub username: String,
    /// Password (`requirepass` or the ACL user's); prefer `password_file` (a mounted secret).
    pub password: String,
    /// A file holding the password (trailing whitespace ignored).
    pub password_file: String,
    /// PEM file of the certificate authorities a `rediss://` server's certificate is checked
    /// against (instead of the platform's roots).
    pub tls_ca_file: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter such as `info` or `info,shopmind_feature=debug`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Pretty, level: "info".into() }
    }
}

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
    /// [`Config::validate`] reports).
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC endpoint that traces are exported to, e.g. `http://otel-collector:4317`.
    /// Empty: no export (trace context still travels between services and into logs).
    pub otlp_endpoint: String,
}

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Deadline of calls to other services when the client sets none.
    pub request_timeout_ms: u64,
    /// Most events in one PublishEvents call.
    pub max_batch: usize,
    /// API keys and their tenants (`key = "tenant"`). With no keys here nor in
    /// `api_keys_file`, the gateway is open (every caller may name any tenant).
    pub api_keys: BTreeMap<String, String>,
    /// A file of `key = tenant` lines (a mounted secret); `#` starts a comment.
    pub api_keys_file: String,
    /// Keys of the `Admin` service (operators, not tenants).
    pub admin_keys: Vec<String>,
    /// A file of admin keys, one a line (a mounted secret); `#` starts a comment.
    pub admin_keys_file: String,
    pub rate_limit: RateLimitConfig,
    pub tls: GatewayTlsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            request_timeout_ms: 2000,
            max_batch: 1000,
            api_keys: BTreeMap::new(),
            api_keys_file: String::new(),
            admin_keys: Vec::new(),
            admin_keys_file: String::new(),
            rate_limit: RateLimitConfig::default(),
            tls: GatewayTlsConfig::default(),
        }
    }
}

/// Per-tenant token buckets of the gateway: each call takes one token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Tokens added per second to each tenant's bucket; 0: no limit.
    pub requests_per_second: f64,
    /// The bucket's size: calls a tenant may make at once after being idle.
    pub burst: u32,
    /// Per-tenant overrides.
    pub tenants: BTreeMap<String, TenantRateLimit>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { requests_per_second: 0.0, burst: 100, tenants: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRateLimit {
    pub requests_per_second: f64,
    pub burst: u32,
}

/// TLS of the gRPC listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayTlsConfig {
    /// PEM certificate chain and private key; both empty: plaintext gRPC.
    pub cert_file: String,
    pub key_file: String,
    /// PEM CA certificates of clients: when set, clients must present a certificate it signed
    /// (mutual TLS).
    pub client_ca_file: String,
}

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

/// Which recommender the trainer trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecommenderFamily {
    Embedding,
    Covisit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Path of libonnxruntime.so; empty: `ORT_DYLIB_PATH`, else `.cache/onnxruntime/` (scripts/setup.sh).
    pub onnxruntime_library: String,
    /// ONNX Runtime sessions per model (requests run in parallel up to this many).
    pub sessions: usize,
    /// Threads inside one session run.
    pub intra_threads: usize,
    pub device: Device,
    pub cuda_device_id: i32,
    /// Recent interactions of a user that the model sees.
    pub history_len: usize,
    /// Most rows (one per scored user) that one model run batches together.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch, in microseconds; 0: never wait (a
    /// batch takes what is queued, and what arrives while every session is busy).
    pub max_queue_delay_us: u64,
    /// Most requests waiting for one model; beyond it requests are refused at once (UNAVAILABLE).
    pub queue_capacity: usize,
    /// Agent report: a support conversation is resolved by an agent message after which nobody
    /// writes for this many seconds; a customer message after that reopens it.
    pub resolution_idle_s: u64,
    /// Agent report: the longest period one request may ask for, in days.
    pub agent_report_max_days: u32,
    /// Agent report: the most conversations one report reads (beyond: INVALID_ARGUMENT, asking
    /// for a shorter period).
    pub agent_report_max_conversations: usize,
    /// Recommend: an embedding model of at least this many items gets an approximate-nearest-
    /// neighbour (HNSW) index over its item embeddings, built when the version loads; below it,
    /// every item is a candidate (brute force).
    pub ann_min_items: usize,
    /// Candidates the ANN index returns for one user vector (and up to a tenth as many more: the
    /// items of the largest norm, when the search missed them; docs/RECOMMEND.md).
    pub ann_candidates: usize,
    /// HNSW build breadth (`ef_construction`): larger is a better graph, built slower.
    pub ann_ef_construction: usize,
    /// HNSW search breadth (`ef_search`, at least `ann_candidates` is used): larger finds more of
    /// the true nearest items, slower.
    pub ann_ef_search: usize,
    /// Most candidates ranked for one request (what all its pages are cut from).
    pub candidate_pool: usize,
    /// The user's most recent items (or cart items) whose co-visitation and co-purchase
    /// neighbours become candidates.
    pub neighbour_seeds: usize,
    /// Neighbours read per seed item, and newest items read per category.
    pub neighbours_per_seed: usize,
    /// Most popular items (of the shop, or of a category) considered for trending.
    pub trending_pool: usize,
    /// Customer profiles (`GetCustomerProfile`): RFM segment thresholds and the churn estimate.
    pub profile: ProfileConfig,
}

/// The rules of a customer profile's RFM segment (docs/PROFILES.md). Churn risk takes the drift
/// ratio and minimum orders of the tenant's `notification` churn-risk rule, so a profile and the
/// rule agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// A customer whose last order is at most this many days old is active.
    pub active_days: u32,
    /// A customer whose last order is more than this many days old is hibernating; between
    /// `active_days` and this, at risk.
    pub lapsed_days: u32,
    /// An active customer with at least this many orders is loyal (or a champion).
    pub frequent_orders: u32,
    /// A loyal customer who spent at least this much (minor units of their main currency) is a
    /// champion.
    pub high_value_minor: i64,
    /// The expected time between orders of a customer without a rhythm (fewer orders than the
    /// churn rule's `min_orders`), in days.
    pub default_order_gap_days: u32,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            active_days: 30,
            lapsed_days: 90,
            frequent_orders: 5,
            high_value_minor: 50_000,
            default_order_gap_days: 30,
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            onnxruntime_library: String::new(),
            sessions: 2,
            intra_threads: 1,
            device: Device::Cpu,
            cuda_device_id: 0,
            history_len: 20,
            max_batch: 32,
            max_queue_delay_us: 0,
            queue_capacity: 1024,
            resolution_idle_s: 86_400,
            agent_report_max_days: 366,
            agent_report_max_conversations: 20_000,
            ann_min_items: 5000,
            ann_candidates: 100,
            ann_ef_construction: 100,
            ann_ef_search: 100,
            candidate_pool: 500,
            neighbour_seeds: 5,
            neighbours_per_seed: 20,
            trending_pool: 200,
            profile: ProfileConfig::default(),
        }
    }
}

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
        let statuses = ["placed", "paid", "shipped", "delivered", "cancelled", "returned", "refunded"];
        Self { enabled: true, statuses: statuses.map(String::from).to_vec() }
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

/// Parses a UTC offset `+HH:MM`, `-HH:MM` or `Z`/`UTC` into minutes east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 14 && m < 60).then_some(sign * (h * 60 + m))
}

/// Parses a time zone: an IANA name of the bundled tz database (`Europe/Berlin`, daylight saving
/// time followed) or a fixed UTC offset (see [`parse_utc_offset`]). None: neither.
pub fn parse_time_zone(s: &str) -> Option<jiff::tz::TimeZone> {
    if let Some(minutes) = parse_utc_offset(s) {
        return Some(fixed_time_zone(minutes));
    }
    if s.is_empty() || s.starts_with(['+', '-']) {
        return None;
    }
    jiff::tz::db().get(s).ok()
}

/// The time zone `minutes` east of UTC, all year (UTC when out of range).
pub fn fixed_time_zone(minutes: i32) -> jiff::tz::TimeZone {
    jiff::tz::Offset::from_seconds(minutes.saturating_mul(60))
        .map_or(jiff::tz::TimeZone::UTC, jiff::tz::TimeZone::fixed)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Seconds between training runs of the trainer service; 0: train once and stop.
    pub interval_s: u64,
    /// The recommender family trained: `embedding` (the winner of the offline evaluation,
    /// docs/EVALUATION.md) or `covisit` (item-to-item co-visitation).
    pub recommender: RecommenderFamily,
    /// Floats per embedding of the embedding recommender.
    pub embedding_dim: usize,
    /// Training passes of the embedding recommender.
    pub embedding_epochs: usize,
    /// Train on the events of the last `history_days` days before each tenant's newest event
    /// (event time); 0: all of them.
    pub history_days: u32,
    /// Whether each recommender is first trained without every user's latest interaction and
    /// measured on them (NDCG@10, Recall@10, next to popularity), the figures going into the
    /// manifest; costs a second training.
    pub holdout_eval: bool,
    /// Items the recommender model covers (the most popular ones).
    pub max_items: usize,
    /// Per user, the most recent items that count as co-visited.
    pub window: usize,
    /// Discount of item pairs seen together by few users: similarity x count / (count + shrinkage).
    pub shrinkage: u32,
    /// Whether a newly trained model becomes the active version at once (else an operator
    /// promotes it with `shopmind models promote`).
    pub auto_promote: bool,
    /// Whether rounds also train the purchase-intent (`intent`) and demand (`demand`) models.
    pub predictors: bool,
    /// Sessions (training samples) a tenant needs before an intent model is trained.
    pub intent_min_sessions: usize,
    /// Of them, sessions that ended in an order (and as many that did not).
    pub intent_min_ordered_sessions: usize,
    /// Days of events (first to last) a tenant needs before a demand model is trained; at least
    /// the model's history (56 days) plus its horizon (14) plus one.
    pub demand_min_days: u32,
    /// The customer-service assistant's intent classifier head (`intent_head`).
    pub assistant: TrainerAssistantConfig,
}

/// `[trainer.assistant]`: training the assistant's intent head per tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerAssistantConfig {
    /// Whether rounds train and publish each tenant's `intent_head`.
    pub enabled: bool,
    /// The sentence encoder: a directory with `encoder.onnx` and `tokenizer.json` (written by
    /// `shopmind models import-encoder`) or the sentence-transformers model itself
    /// (`model.safetensors`, converted at the start of a round). Missing: the model is skipped
    /// (logged), the round goes on.
    pub encoder_dir: String,
    /// A directory of tenants' own labelled messages, `<tenant>.jsonl` (the format of
    /// `crates/assistant/data/intents.jsonl`), added to the bundled ones; empty: none.
    pub examples_dir: String,
    /// Seed of the stratified held-out split the reported accuracy is measured on.
    pub seed: u64,
}

impl Default for TrainerAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            encoder_dir: ".cache/models/all-MiniLM-L6-v2".into(),
            examples_dir: String::new(),
            seed: 42,
        }
    }
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            interval_s: 300,
            recommender: RecommenderFamily::Embedding,
            embedding_dim: 64,
            embedding_epochs: 30,
            holdout_eval: true,
            history_days: 0,
            max_items: 2000,
            window: 50,
            shrinkage: 10,
            auto_promote: true,
            predictors: true,
            intent_min_sessions: 200,
            intent_min_ordered_sessions: 20,
            demand_min_days: 84,
            assistant: TrainerAssistantConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Versions of each tenant's model the registry keeps (the newest ones); the active version
    /// and those a rollback can return to are kept as well.
    pub keep_versions: usize,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self { keep_versions: 10 }
    }
}

/// The customer-service assistant (`Assist`, docs/ASSISTANT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistantConfig {
    /// The sentence encoder's model directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), converted to ONNX in memory at start; empty: the directory
    /// scripts/setup.sh fills, `.cache/models/all-MiniLM-L6-v2`.
    pub encoder_dir: String,
    /// Texts longer than this many tokens are truncated by the encoder (8..=256).
    pub max_tokens: usize,
    /// Below this probability of the most probable intent a message is `out_of_scope` (0..1).
    pub confidence_threshold: f64,
    /// A conversation's state lives this long after its last message (seconds).
    pub conversation_ttl_s: u64,
    /// Messages (customer and assistant) kept in a conversation's state and sent to the agents.
    pub max_turns: usize,
    /// Consecutive messages the assistant could not serve (out of scope, unsure, no FAQ entry)
    /// after which the conversation goes to a human (1..=20).
    pub max_failures: u32,
    /// Time limit of the call to the notification service that escalates a conversation (ms).
    pub escalation_timeout_ms: u64,
    /// Policies and knowledge of every tenant without its own table in `tenants`.
    pub defaults: TenantAssistant,
    /// Per tenant: a table that overrides only the keys it names; the rest come from `defaults`.
    pub tenants: BTreeMap<String, TenantAssistant>,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            encoder_dir: String::new(),
            max_tokens: 128,
            confidence_threshold: 0.45,
            conversation_ttl_s: 86_400,
            max_turns: 20,
            max_failures: 2,
            escalation_timeout_ms: 1000,
            defaults: TenantAssistant::default(),
            tenants: BTreeMap::new(),
        }
    }
}

impl AssistantConfig {
    /// The policies and knowledge in force for `tenant`.
    pub fn tenant(&self, tenant: &str) -> &TenantAssistant {
        self.tenants.get(tenant).unwrap_or(&self.defaults)
    }
}

/// One tenant's assistant: its FAQ and its order policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantAssistant {
    /// Directory of the tenant's FAQ: Markdown files, one chunk per `##` section (relative paths
    /// are relative to the working directory).
    pub faq_dir: String,
    /// Cosine similarity a FAQ entry needs to answer a question (0..1).
    pub faq_min_score: f64,
    /// Order statuses in which an order can still be cancelled.
    pub cancellable_statuses: Vec<String>,
    /// Order statuses from which an order can be returned (the window counts from the time the
    /// order reached its status).
    pub returnable_statuses: Vec<String>,
    /// Days after delivery within which an order can be returned (1..=365).
    pub return_window_days: u32,
    /// Days from shipping to delivery that the assistant promises (the estimate it gives).
    pub delivery_days: u32,
}

impl Default for TenantAssistant {
    fn default() -> Self {
        Self {
            faq_dir: "data/faq/demo".into(),
            faq_min_score: 0.45,
            cancellable_statuses: vec!["placed".into(), "paid".into()],
            returnable_statuses: vec!["delivered".into()],
            return_window_days: 30,
            delivery_days: 3,
        }
    }
}

/// The order statuses (`OrderStatusChanged`).
pub const ORDER_STATUSES: [&str; 7] =
    ["placed", "paid", "shipped", "delivered", "cancelled", "returned", "refunded"];

impl TenantAssistant {
    fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("{prefix}.{key}"), reason.to_string()));
        if self.faq_dir.is_empty() {
            return bad("faq_dir", "must name a directory");
        }
        if !(0.0..1.0).contains(&self.faq_min_score) {
            return bad("faq_min_score", "must be within [0, 1)");
        }
        for (key, list) in [
            ("cancellable_statuses", &self.cancellable_statuses),
            ("returnable_statuses", &self.returnable_statuses),
        ] {
            if let Some(s) = list.iter().find(|s| !ORDER_STATUSES.contains(&s.as_str())) {
                return bad(key, &format!("unknown status {s:?}"));
            }
        }
        if !(1..=365).contains(&self.return_window_days) {
            return bad("return_window_days", "must be 1..=365");
        }
        if !(1..=60).contains(&self.delivery_days) {
            return bad("delivery_days", "must be 1..=60");
        }
        Ok(())
    }
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

impl TenantNotifications {
    /// Checks one table; errors are (key, reason) with keys under `prefix`.
    fn validate(&self, prefix: &str) -> Result<(), (String, String)> {
        let bad = |key: &str, reason: &str| Err((format!("{prefix}.{key}"), reason.to_string()));
        let r = &self.rules;
        if r.cart_abandonment.idle_s == 0 {
            return bad("rules.cart_abandonment.idle_s", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&r.cart_abandonment.min_intent) {
            return bad("rules.cart_abandonment.min_intent", "must be within 0..=1");
        }
        if r.cart_abandonment.complements > 50 {
            return bad("rules.cart_abandonment.complements", "must be at most 50");
        }
        if r.back_in_stock.watch_days == 0 {
            return bad("rules.back_in_stock.watch_days", "must be at least 1");
        }
        if !(r.price_drop.min_drop_pct > 0.0 && r.price_drop.min_drop_pct < 100.0) {
            return bad("rules.price_drop.min_drop_pct", "must be within (0, 100)");
        }
        if r.price_drop.viewed_within_days == 0 || r.price_drop.max_viewers == 0 {
            return bad("rules.price_drop.viewed_within_days", "it and max_viewers must be at least 1");
        }
        if let Some(s) = r.order_status.statuses.iter().find(|s| {
            !["placed", "paid", "shipped", "delivered", "cancelled", "returned", "refunded"]
                .contains(&s.as_str())
        }) {
            return bad("rules.order_status.statuses", &format!("unknown status {s:?}"));
        }
        if r.low_stock.lead_time_days == 0 || r.low_stock.history_days == 0 {
            return bad("rules.low_stock.lead_time_days", "it and history_days must be at least 1");
        }
        if !(r.churn_risk.drift_ratio.is_finite() && r.churn_risk.drift_ratio > 0.0) {
            return bad("rules.churn_risk.drift_ratio", "must be a positive number");
        }
        if r.churn_risk.min_orders < 2 {
            return bad("rules.churn_risk.min_orders", "must be at least 2 (a mean gap needs two orders)");
        }
        let p = &self.policy;
        if p.dedup_window_s == 0 || p.frequency_window_s == 0 {
            return bad("policy.dedup_window_s", "it and frequency_window_s must be at least 1");
        }
        if p.quiet_start_hour > 23 || p.quiet_end_hour > 23 {
            return bad("policy.quiet_start_hour", "quiet hours must be 0..=23");
        }
        if parse_utc_offset(&p.default_utc_offset).is_none() {
            return bad("policy.default_utc_offset", "must be +HH:MM or -HH:MM (or UTC)");
        }
        if !p.default_time_zone.is_empty() && parse_time_zone(&p.default_time_zone).is_none() {
            return bad(
                "policy.default_time_zone",
                &format!("unknown time zone {:?}: an IANA name such as Europe/Berlin", p.default_time_zone),
            );
        }
        for (key, kinds) in [("policy.capped_kinds", &p.capped_kinds), ("policy.quiet_kinds", &p.quiet_kinds)]
        {
            if let Some(k) = kinds.iter().find(|k| !NOTIFICATION_KINDS.contains(&k.as_str())) {
                return bad(key, &format!("unknown kind {k:?}"));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let key = format!("webhooks[{i}]");
            if TenantId::parse(w.name.clone()).is_err() || !names.insert(w.name.as_str()) {
                return bad(&format!("{key}.name"), "must be unique and 1-64 of a-z 0-9 - _");
            }
            if !w.url.starts_with("http://") && !w.url.starts_with("https://") {
                return bad(&format!("{key}.url"), "must be an http:// or https:// URL");
            }
            if w.secret.is_empty() {
                return bad(&format!("{key}.secret"), "must not be empty");
            }
            if let Some(a) = w.audiences.iter().find(|a| !AUDIENCES.contains(&a.as_str())) {
                return bad(&format!("{key}.audiences"), &format!("unknown audience {a:?}"));
            }
            if let Some(k) = w.kinds.iter().find(|k| !NOTIFICATION_KINDS.contains(&k.as_str())) {
                return bad(&format!("{key}.kinds"), &format!("unknown kind {k:?}"));
            }
        }
        Ok(())
    }
}

/// A secret given either inline (`value`) or as a file (`file`, e.g. a mounted Kubernetes
/// Secret; trailing whitespace is dropped). `file_key` names the setting in errors. Empty when
/// neither is set.
pub fn secret(value: &str, file: &str, file_key: &str) -> Result<String, ConfigError> {
    if file.is_empty() {
        return Ok(value.to_string());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::Invalid { key: file_key.into(), reason: format!("reading {file}: {e}") })?;
    Ok(text.trim_end().to_string())
}

impl Config {
    /// The gateway's keys, limits and TLS, and the NATS and Redis credentials.
    fn validate_edge(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid { key: key.into(), reason: reason.into() })
        }
        let g = &self.gateway;
        for (key, tenant) in &g.api_keys {
            if key.len() < 16 {
                return bad("gateway.api_keys", "every key must be at least 16 characters");
            }
            if TenantId::parse(tenant.clone()).is_err() {
                return bad("gateway.api_keys", format!("{tenant:?} is not a tenant id"));
            }
        }
        if g.admin_keys.iter().any(|k| k.len() < 16) {
            return bad("gateway.admin_keys", "every key must be at least 16 characters");
        }
        let limits = std::iter::once((
            "gateway.rate_limit".to_string(),
            g.rate_limit.requests_per_second,
            g.rate_limit.burst,
        ))
        .chain(
            g.rate_limit
                .tenants
                .iter()
                .map(|(t, l)| (format!("gateway.rate_limit.tenants.{t}"), l.requests_per_second, l.burst)),
        );
        for (key, rps, burst) in limits {
            if !rps.is_finite() || !(0.0..=1_000_000.0).contains(&rps) {
                return bad(&format!("{key}.requests_per_second"), "must be 0..=1000000 (0: no limit)");
            }
            if burst == 0 {
                return bad(&format!("{key}.burst"), "must be at least 1");
            }
        }
        if let Some(t) = g.rate_limit.tenants.keys().find(|t| TenantId::parse((*t).clone()).is_err()) {
            return bad("gateway.rate_limit.tenants", format!("{t:?} is not a tenant id"));
        }
        if g.tls.cert_file.is_empty() != g.tls.key_file.is_empty() {
            return bad("gateway.tls", "cert_file and key_file go together");
        }
        if !g.tls.client_ca_file.is_empty() && g.tls.cert_file.is_empty() {
            return bad("gateway.tls.client_ca_file", "needs cert_file and key_file");
        }
        let n = &self.nats;
        if !n.password.is_empty() && !n.password_file.is_empty() {
            return bad("nats.password_file", "set nats.password or nats.password_file, not both");
        }
        if !n.token.is_empty() && !n.token_file.is_empty() {
            return bad("nats.token_file", "set nats.token or nats.token_file, not both");
        }
        let has_password = !n.password.is_empty() || !n.password_file.is_empty();
        if n.user.is_empty() == has_password {
            return bad("nats.user", "user and password (or password_file) go together");
        }
        if !n.user.is_empty() && (!n.token.is_empty() || !n.token_file.is_empty()) {
            return bad("nats.token", "choose user/password or a token, not both");
        }
        if n.tls_cert_file.is_empty() != n.tls_key_file.is_empty() {
            return bad("nats.tls_cert_file", "tls_cert_file and tls_key_file go together");
        }
        let r = &self.redis;
        if !r.password.is_empty() && !r.password_file.is_empty() {
            return bad("redis.password_file", "set redis.password or redis.password_file, not both");
        }
        if !r.tls_ca_file.is_empty() && !r.url.is_empty() && !r.url.starts_with("rediss://") {
            return bad("redis.tls_ca_file", "applies to rediss:// URLs only");
        }
        Ok(())
    }

    /// Defaults, then the file (if any), then `SHOPMIND__*` variables from `env`; validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid { key: String::new(), reason: e.to_string() })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
            let from_file: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            merge(&mut table, from_file);
        }
        let overrides: BTreeMap<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        for (var, raw) in overrides {
            let path: Vec<String> =
                var[ENV_PREFIX.len()..].split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Env { var, reason: "expected SHOPMIND__<SECTION>__<KEY>".into() });
            }
            set_path(&mut table, &path, env_value(&raw))
                .map_err(|reason| ConfigError::Env { var, reason })?;
        }
        overlay_tenants(&mut table, "notification");
        overlay_tenants(&mut table, "assistant");
        let config = Self::from_table(table)?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let text = table.to_string();
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| ConfigError::Invalid { key: String::new(), reason: e.to_string() })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let reason = e.into_inner().message().to_string();
            ConfigError::Invalid { key, reason }
        })
    }

    /// Checks what types cannot: ranges, URL schemes, combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid { key: key.into(), reason: reason.into() })
        }
        if !self.nats.url.is_empty() && !["nats://", "tls://"].iter().any(|s| self.nats.url.starts_with(s)) {
            return bad("nats.url", "must start with nats:// or tls://, or be empty for the in-process bus");
        }
        if !self.redis.url.is_empty()
            && !["redis://", "rediss://"].iter().any(|s| self.redis.url.starts_with(s))
        {
            return bad(
                "redis.url",
                "must start with redis:// or rediss://, or be empty for the in-memory store",
            );
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen_addr().is_none() {
            return bad(
                "metrics.listen",
                "must be an IP address and port such as 127.0.0.1:9090, or empty for no endpoint",
            );
        }
        if !self.telemetry.otlp_endpoint.is_empty()
            && !["http://", "https://"].iter().any(|p| self.telemetry.otlp_endpoint.starts_with(p))
        {
            return bad(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL, or empty for no export",
            );
        }
        if self.gateway.request_timeout_ms == 0 || self.gateway.request_timeout_ms > 60_000 {
            return bad("gateway.request_timeout_ms", "must be 1..=60000");
        }
        if !(1..=10_000).contains(&self.gateway.max_batch) {
            return bad("gateway.max_batch", "must be 1..=10000");
        }
        self.validate_edge()?;
        if !(1..=1024).contains(&self.ingest.concurrency) {
            return bad("ingest.concurrency", "must be 1..=1024");
        }
        if !(1024..=1_000_000).contains(&self.ingest.max_event_bytes) {
            return bad(
                "ingest.max_event_bytes",
                "must be 1024..=1000000 (NATS' default message limit is 1 MiB)",
            );
        }
        if self.ingest.ack_wait_s == 0 {
            return bad("ingest.ack_wait_s", "must be at least 1");
        }
        if self.ingest.max_deliver == 0 || self.ingest.max_deliver < -1 {
            return bad("ingest.max_deliver", "must be positive, or -1 for unlimited");
        }
        if self.feature.ack_wait_s == 0 {
            return bad("feature.ack_wait_s", "must be at least 1");
        }
        if self.feature.max_deliver == 0 || self.feature.max_deliver < -1 {
            return bad("feature.max_deliver", "must be positive, or -1 for unlimited");
        }
        if !(1..=1024).contains(&self.feature.concurrency) {
            return bad("feature.concurrency", "must be 1..=1024");
        }
        if !(1..=1024).contains(&self.feature.batch_size) {
            return bad("feature.batch_size", "must be 1..=1024");
        }
        for (key, value) in [
            ("feature.session_ttl_hours", u64::from(self.feature.session_ttl_hours)),
            ("feature.bought_cap", self.feature.bought_cap as u64),
            ("feature.cart_log_cap", self.feature.cart_log_cap as u64),
            ("feature.covisit_window_s", self.feature.covisit_window_s),
            ("feature.copurchase_window_days", u64::from(self.feature.copurchase_window_days)),
            ("feature.neighbours_keep", self.feature.neighbours_keep as u64),
            ("feature.window_cap", self.feature.window_cap as u64),
            ("feature.pairs_cap", self.feature.pairs_cap as u64),
            ("feature.demand_days", u64::from(self.feature.demand_days)),
            ("feature.affinity_half_life_days", u64::from(self.feature.affinity_half_life_days)),
            ("feature.conversation_messages_cap", self.feature.conversation_messages_cap as u64),
            ("feature.conversation_ttl_days", u64::from(self.feature.conversation_ttl_days)),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if !(1..=10_000).contains(&self.feature.recent_items_cap) {
            return bad("feature.recent_items_cap", "must be 1..=10000");
        }
        if self.feature.popular_items_cap == 0 {
            return bad("feature.popular_items_cap", "must be at least 1");
        }
        if self.feature.user_ttl_days == 0 {
            return bad("feature.user_ttl_days", "must be at least 1");
        }
        if self.feature.dedup_ttl_hours == 0 {
            return bad(
                "feature.dedup_ttl_hours",
                "must be at least 1 (it is what keeps redeliveries from counting twice)",
            );
        }
        if !(1..=64).contains(&self.inference.sessions) {
            return bad("inference.sessions", "must be 1..=64");
        }
        if !(1..=64).contains(&self.inference.intra_threads) {
            return bad("inference.intra_threads", "must be 1..=64");
        }
        if !(1..=200).contains(&self.inference.history_len) {
            return bad("inference.history_len", "must be 1..=200");
        }
        if !(1..=4096).contains(&self.inference.max_batch) {
            return bad("inference.max_batch", "must be 1..=4096");
        }
        if self.inference.max_queue_delay_us > 1_000_000 {
            return bad("inference.max_queue_delay_us", "must be 0..=1000000 (at most one second)");
        }
        if !(1..=1_000_000).contains(&self.inference.queue_capacity) {
            return bad("inference.queue_capacity", "must be 1..=1000000");
        }
        if self.inference.resolution_idle_s == 0 {
            return bad("inference.resolution_idle_s", "must be at least 1");
        }
        if !(1..=3660).contains(&self.inference.agent_report_max_days) {
            return bad("inference.agent_report_max_days", "must be 1..=3660");
        }
        if !(1..=1_000_000).contains(&self.inference.agent_report_max_conversations) {
            return bad("inference.agent_report_max_conversations", "must be 1..=1000000");
        }
        if self.inference.ann_min_items < 2 {
            return bad("inference.ann_min_items", "must be at least 2");
        }
        if !(1..=10_000).contains(&self.inference.ann_candidates) {
            return bad("inference.ann_candidates", "must be 1..=10000");
        }
        if !(1..=10_000).contains(&self.inference.ann_ef_construction) {
            return bad("inference.ann_ef_construction", "must be 1..=10000");
        }
        if !(1..=10_000).contains(&self.inference.ann_ef_search) {
            return bad("inference.ann_ef_search", "must be 1..=10000");
        }
        if !(100..=10_000).contains(&self.inference.candidate_pool) {
            return bad("inference.candidate_pool", "must be 100..=10000 (at least one full page)");
        }
        if self.inference.neighbour_seeds > 100 {
            return bad("inference.neighbour_seeds", "must be 0..=100");
        }
        if !(1..=1000).contains(&self.inference.neighbours_per_seed) {
            return bad("inference.neighbours_per_seed", "must be 1..=1000");
        }
        if !(1..=10_000).contains(&self.inference.trending_pool) {
            return bad("inference.trending_pool", "must be 1..=10000");
        }
        let p = &self.inference.profile;
        if p.active_days == 0 {
            return bad("inference.profile.active_days", "must be at least 1");
        }
        if p.lapsed_days <= p.active_days {
            return bad("inference.profile.lapsed_days", "must be more than inference.profile.active_days");
        }
        if p.frequent_orders < 2 {
            return bad("inference.profile.frequent_orders", "must be at least 2");
        }
        if p.high_value_minor < 0 {
            return bad("inference.profile.high_value_minor", "must not be negative");
        }
        if p.default_order_gap_days == 0 {
            return bad("inference.profile.default_order_gap_days", "must be at least 1");
        }
        if self.notification.ack_wait_s == 0 {
            return bad("notification.ack_wait_s", "must be at least 1");
        }
        if self.notification.max_deliver == 0 || self.notification.max_deliver < -1 {
            return bad("notification.max_deliver", "must be positive, or -1 for unlimited");
        }
        if self.notification.timer_poll_ms < 10 {
            return bad("notification.timer_poll_ms", "must be at least 10");
        }
        if self.notification.timer_lease_s == 0 {
            return bad("notification.timer_lease_s", "must be at least 1");
        }
        let w = &self.notification.webhook;
        if w.timeout_ms == 0 {
            return bad("notification.webhook.timeout_ms", "must be at least 1");
        }
        if w.max_attempts < 1 {
            return bad("notification.webhook.max_attempts", "must be at least 1");
        }
        if w.backoff_base_ms == 0 || w.backoff_max_ms < w.backoff_base_ms {
            return bad(
                "notification.webhook.backoff_base_ms",
                "must be at least 1 and at most backoff_max_ms",
            );
        }
        if !(1..=1024).contains(&w.concurrency) {
            return bad("notification.webhook.concurrency", "must be 1..=1024");
        }
        let mut tables = vec![("notification.defaults".to_string(), &self.notification.defaults)];
        for (tenant, t) in &self.notification.tenants {
            if TenantId::parse(tenant.clone()).is_err() {
                return bad(&format!("notification.tenants.{tenant}"), "not a valid tenant id");
            }
            tables.push((format!("notification.tenants.{tenant}"), t));
        }
        for (prefix, t) in tables {
            t.validate(&prefix).map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        }
        if !(2..=100_000).contains(&self.trainer.max_items) {
            return bad("trainer.max_items", "must be 2..=100000 (the model is a dense item-item matrix)");
        }
        if !(2..=512).contains(&self.trainer.embedding_dim) {
            return bad("trainer.embedding_dim", "must be 2..=512");
        }
        if !(1..=1000).contains(&self.trainer.embedding_epochs) {
            return bad("trainer.embedding_epochs", "must be 1..=1000");
        }
        if self.trainer.window < 2 {
            return bad("trainer.window", "must be at least 2");
        }
        if self.trainer.assistant.enabled && self.trainer.assistant.encoder_dir.trim().is_empty() {
            return bad(
                "trainer.assistant.encoder_dir",
                "must name the sentence encoder's directory when trainer.assistant.enabled is true",
            );
        }
        if self.trainer.intent_min_ordered_sessions == 0 {
            return bad("trainer.intent_min_ordered_sessions", "must be at least 1");
        }
        if self.trainer.demand_min_days < 71 {
            return bad(
                "trainer.demand_min_days",
                "must be at least 71 (56 days of history, 14 of horizon and one more for calibration)",
            );
        }
        if self.notification.model_timeout_ms == 0 {
            return bad("notification.model_timeout_ms", "must be at least 1");
        }
        if !(1..=1000).contains(&self.models.keep_versions) {
            return bad("models.keep_versions", "must be 1..=1000");
        }
        for (tenant, p) in &self.privacy.tenants {
            if TenantId::parse(tenant.clone()).is_err() {
                return bad(&format!("privacy.tenants.{tenant}"), "not a valid tenant id");
            }
            if p.pseudonymize && self.privacy.secret_file.is_empty() {
                return bad(
                    "privacy.secret_file",
                    format!("must be set: tenant {tenant:?} pseudonymises customer ids"),
                );
            }
        }
        if self.privacy.tenants.values().any(|p| p.pseudonymize) {
            self.privacy.read_secret()?;
        }
        let a = &self.assistant;
        if !(8..=256).contains(&a.max_tokens) {
            return bad("assistant.max_tokens", "must be 8..=256");
        }
        if !(0.0..1.0).contains(&a.confidence_threshold) {
            return bad("assistant.confidence_threshold", "must be within [0, 1)");
        }
        if a.conversation_ttl_s == 0 {
            return bad("assistant.conversation_ttl_s", "must be at least 1");
        }
        if !(2..=200).contains(&a.max_turns) {
            return bad("assistant.max_turns", "must be 2..=200");
        }
        if !(1..=20).contains(&a.max_failures) {
            return bad("assistant.max_failures", "must be 1..=20");
        }
        if a.escalation_timeout_ms == 0 {
            return bad("assistant.escalation_timeout_ms", "must be at least 1");
        }
        let mut tables = vec![("assistant.defaults".to_string(), &a.defaults)];
        for (tenant, t) in &a.tenants {
            if TenantId::parse(tenant.clone()).is_err() {
                return bad(&format!("assistant.tenants.{tenant}"), "not a valid tenant id");
            }
            tables.push((format!("assistant.tenants.{tenant}"), t));
        }
        for (prefix, t) in tables {
            t.validate(&prefix).map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        }
        if self.streams.duplicate_window_s == 0 {
            return bad("streams.duplicate_window_s", "must be at least 1");
        }
        Ok(())
    }

    /// The configuration as TOML, e.g. to print the effective configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

/// Makes each `[<section>.tenants.<t>]` table (`notification`, `assistant`) `[<section>.defaults]`
/// with the tenant's keys over it, so a tenant names only what differs.
fn overlay_tenants(table: &mut toml::Table, section: &str) {
    let Some(toml::Value::Table(n)) = table.get_mut(section) else { return };
    let defaults = match n.get("defaults") {
        Some(toml::Value::Table(d)) => d.clone(),
        _ => toml::Table::new(),
    };
    if let Some(toml::Value::Table(tenants)) = n.get_mut("tenants") {
        for (_, t) in tenants.iter_mut() {
            if let toml::Value::Table(own) = t {
                let mut merged = defaults.clone();
                merge(&mut merged, std::mem::take(own));
                *own = merged;
            }
        }
    }
}

/// An environment value as TOML when it parses as a scalar (number, bool), else as a string.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            match table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}
