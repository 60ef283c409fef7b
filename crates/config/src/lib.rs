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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port`. Empty: the in-process bus (only `all-in-one` can use it).
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db`. Empty: the in-memory store (only `all-in-one` can use it).
    pub url: String,
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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 50051)), request_timeout_ms: 2000, max_batch: 1000 }
    }
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
        }
    }
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
    /// How often the model directory is checked for new versions.
    pub reload_interval_ms: u64,
    /// Recent interactions of a user that the model sees.
    pub history_len: usize,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            onnxruntime_library: String::new(),
            sessions: 2,
            intra_threads: 1,
            device: Device::Cpu,
            cuda_device_id: 0,
            reload_interval_ms: 1000,
            history_len: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    pub ack_wait_s: u64,
    pub max_deliver: i64,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self { ack_wait_s: 30, max_deliver: 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Seconds between training runs of the trainer service; 0: train once and stop.
    pub interval_s: u64,
    /// Items the recommender model covers (the most popular ones).
    pub max_items: usize,
    /// Per user, the most recent items that count as co-visited.
    pub window: usize,
    /// Discount of item pairs seen together by few users: similarity x count / (count + shrinkage).
    pub shrinkage: u32,
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self { interval_s: 300, max_items: 2000, window: 50, shrinkage: 10 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Where trained models are written and served from: `<dir>/<tenant>/recommender.onnx`.
    pub dir: PathBuf,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self { dir: PathBuf::from("models") }
    }
}

impl Config {
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
        if self.inference.reload_interval_ms < 50 {
            return bad("inference.reload_interval_ms", "must be at least 50");
        }
        if !(1..=200).contains(&self.inference.history_len) {
            return bad("inference.history_len", "must be 1..=200");
        }
        if self.notification.ack_wait_s == 0 {
            return bad("notification.ack_wait_s", "must be at least 1");
        }
        if !(2..=100_000).contains(&self.trainer.max_items) {
            return bad("trainer.max_items", "must be 2..=100000 (the model is a dense item-item matrix)");
        }
        if self.trainer.window < 2 {
            return bad("trainer.window", "must be at least 2");
        }
        if self.models.dir.as_os_str().is_empty() {
            return bad("models.dir", "must not be empty");
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
