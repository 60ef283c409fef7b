//! shopmind's configuration.
//!
//! Layers, each overriding the one before: built-in defaults, a TOML file (`--config`),
//! environment variables `SHOPMIND__<SECTION>__<KEY>` (e.g. `SHOPMIND__NATS__URL`), and
//! command-line flags (applied by the binary). The result is validated once at start; every error
//! names the key and the problem. `config/shopmind.example.toml` documents every key.
//!
//! One module per section (`[nats]` in `nats.rs`, `[inference]` in `inference.rs`, ...) holds its
//! types, their defaults and the section's checks, written with the helper of `check.rs`;
//! [`Config::validate`] runs every section's. Loading is in `load.rs`.

mod assistant;
mod check;
mod feature;
mod gateway;
mod inference;
mod ingest;
mod load;
mod log;
mod metrics;
mod models;
mod nats;
mod notification;
mod privacy;
mod redis;
mod streams;
mod telemetry;
mod time_zone;
mod trainer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use assistant::{AssistantConfig, TenantAssistant};
pub use feature::FeatureConfig;
pub use gateway::{GatewayConfig, GatewayTlsConfig, RateLimitConfig, TenantRateLimit};
pub use inference::{Device, InferenceConfig, ProfileConfig};
pub use ingest::IngestConfig;
pub use log::{LogConfig, LogFormat};
pub use metrics::MetricsConfig;
pub use models::ModelsConfig;
pub use nats::NatsConfig;
pub use notification::{
    AUDIENCES, BackInStockRule, CartAbandonmentRule, ChurnRiskRule, LowStockRule, NOTIFICATION_KINDS,
    NotificationConfig, OrderStatusRule, PolicyConfig, PriceDropRule, RulesConfig, SupportEscalationRule,
    TenantNotifications, WebhookDeliveryConfig, WebhookEndpoint,
};
pub use privacy::{PrivacyConfig, TenantPrivacy};
pub use redis::RedisConfig;
pub use streams::StreamsConfig;
pub use telemetry::TelemetryConfig;
pub use time_zone::{fixed_time_zone, parse_time_zone, parse_utc_offset};
pub use trainer::{RecommenderFamily, TrainerAssistantConfig, TrainerConfig};

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

/// The order statuses (`OrderStatusChanged`).
pub const ORDER_STATUSES: [&str; 7] =
    ["placed", "paid", "shipped", "delivered", "cancelled", "returned", "refunded"];

impl Config {
    /// Checks what types cannot: ranges, URL schemes, combinations. Each section checks its own
    /// keys; the error is the first problem found, in the order of the sections here.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut checks = check::Checks::default();
        self.nats.validate(&mut checks);
        self.redis.validate(&mut checks);
        self.metrics.validate(&mut checks);
        self.telemetry.validate(&mut checks);
        self.gateway.validate(&mut checks);
        self.ingest.validate(&mut checks);
        self.feature.validate(&mut checks);
        self.inference.validate(&mut checks);
        self.notification.validate(&mut checks);
        self.trainer.validate(&mut checks);
        self.models.validate(&mut checks);
        self.privacy.validate(&mut checks);
        self.assistant.validate(&mut checks);
        self.streams.validate(&mut checks);
        checks.into_result()
    }

    /// The configuration as TOML, e.g. to print the effective configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
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
