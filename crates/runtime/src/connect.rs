//! The bus, the store and the model registry a process runs on, chosen by the configuration.

use std::sync::Arc;

use shopmind_bus::{Bus, BusError, MemoryBus, NatsBus, NatsSecurity};
use shopmind_config::Config;
use shopmind_registry::{MemoryModelStore, ModelStore, NatsModelStore};
use shopmind_store::{FeatureStore, MemoryStore, RedisSecurity, RedisStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Bus(#[from] shopmind_bus::BusError),
    #[error("{0}")]
    Store(#[from] shopmind_store::StoreError),
    #[error("model registry: {0}")]
    Registry(#[from] shopmind_registry::RegistryError),
    #[error("config key `{key}` is required for `shopmind {command}`: {why}")]
    Required { key: &'static str, command: String, why: &'static str },
    /// A secret file could not be read, or the server refused the credentials; `keys` names the
    /// settings to check.
    #[error("{reason} (check {keys})")]
    Credentials { keys: String, reason: String },
}

/// The NATS credentials and TLS settings of the configuration (secrets read from their files).
pub fn nats_security(config: &Config) -> Result<NatsSecurity, ConnectError> {
    let n = &config.nats;
    let secret = |value: &str, file: &str, key: &'static str| {
        shopmind_config::secret(value, file, key)
            .map_err(|e| ConnectError::Credentials { keys: key.into(), reason: e.to_string() })
    };
    let password = secret(&n.password, &n.password_file, "nats.password_file")?;
    let token = secret(&n.token, &n.token_file, "nats.token_file")?;
    let path = |p: &str| (!p.is_empty()).then(|| std::path::PathBuf::from(p));
    Ok(NatsSecurity {
        user_password: (!n.user.is_empty()).then(|| (n.user.clone(), password)),
        token: (!token.is_empty()).then_some(token),
        tls_required: n.tls_required,
        ca_file: path(&n.tls_ca_file),
        client_cert: path(&n.tls_cert_file).zip(path(&n.tls_key_file)),
    })
}

/// Which NATS settings a refused connection should make the operator check.
fn nats_credential_keys(config: &Config) -> String {
    let n = &config.nats;
    if !n.user.is_empty() {
        "nats.user and nats.password / nats.password_file".into()
    } else if !n.token.is_empty() || !n.token_file.is_empty() {
        "nats.token / nats.token_file".into()
    } else {
        "nats.user / nats.token: the server requires credentials and none are configured".into()
    }
}

async fn connect_nats(config: &Config, command: &str) -> Result<NatsBus, ConnectError> {
    let security = nats_security(config)?;
    NatsBus::connect_secure(&config.nats.url, &format!("shopmind-{command}"), &security).await.map_err(|e| {
        match e {
        BusError::Unauthorized { .. } => {
            ConnectError::Credentials { keys: nats_credential_keys(config), reason: e.to_string() }
        }
        BusError::Connect { ref reason, .. } if reason.starts_with("TLS") => ConnectError::Credentials {
            keys: "nats.url (tls://), nats.tls_required, nats.tls_ca_file, nats.tls_cert_file / tls_key_file"
                .into(),
            reason: e.to_string(),
        },
        other => ConnectError::Bus(other),
    }
    })
}

/// The Redis credentials and TLS roots of the configuration (secrets read from their files).
pub fn redis_security(config: &Config) -> Result<RedisSecurity, ConnectError> {
    let r = &config.redis;
    let password =
        shopmind_config::secret(&r.password, &r.password_file, "redis.password_file").map_err(|e| {
            ConnectError::Credentials { keys: "redis.password_file".into(), reason: e.to_string() }
        })?;
    let ca_pem = if r.tls_ca_file.is_empty() {
        None
    } else {
        Some(std::fs::read(&r.tls_ca_file).map_err(|e| ConnectError::Credentials {
            keys: "redis.tls_ca_file".into(),
            reason: format!("reading {}: {e}", r.tls_ca_file),
        })?)
    };
    Ok(RedisSecurity {
        username: (!r.username.is_empty()).then(|| r.username.clone()),
        password: (!password.is_empty()).then_some(password),
        ca_pem,
    })
}

async fn connect_redis(config: &Config) -> Result<RedisStore, ConnectError> {
    let security = redis_security(config)?;
    RedisStore::connect_secure(&config.redis.url, &security).await.map_err(|e| match e {
        StoreError::Unauthorized { .. } => ConnectError::Credentials {
            keys: "redis.username, redis.password / redis.password_file (or the URL's user info)".into(),
            reason: e.to_string(),
        },
        other => ConnectError::Store(other),
    })
}

/// The bus, store and model registry of one process.
#[derive(Clone)]
pub struct Backends {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn FeatureStore>,
    pub models: Arc<dyn ModelStore>,
}

/// Whether a process may run on the in-process bus and memory store (only `all-in-one`, where
/// all services share the one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedded {
    Allowed,
    Forbidden,
}

pub async fn bus(config: &Config, command: &str, embedded: Embedded) -> Result<Arc<dyn Bus>, ConnectError> {
    if config.nats.url.is_empty() {
        return match embedded {
            Embedded::Allowed => Ok(Arc::new(MemoryBus::new())),
            Embedded::Forbidden => Err(ConnectError::Required {
                key: "nats.url",
                command: command.into(),
                why: "a single service talks to the others over NATS (only all-in-one can run without it)",
            }),
        };
    }
    Ok(Arc::new(connect_nats(config, command).await?))
}

/// The bus and the model registry, on one NATS connection (or both in process, where allowed).
pub async fn bus_and_models(
    config: &Config,
    command: &str,
    embedded: Embedded,
) -> Result<(Arc<dyn Bus>, Arc<dyn ModelStore>), ConnectError> {
    if config.nats.url.is_empty() {
        let bus = bus(config, command, embedded).await?;
        return Ok((bus, Arc::new(MemoryModelStore::new())));
    }
    let nats = connect_nats(config, command).await?;
    let models = NatsModelStore::open(nats.client().clone()).await?;
    Ok((Arc::new(nats), Arc::new(models)))
}

pub async fn store(
    config: &Config,
    command: &str,
    embedded: Embedded,
) -> Result<Arc<dyn FeatureStore>, ConnectError> {
    if config.redis.url.is_empty() {
        return match embedded {
            Embedded::Allowed => Ok(Arc::new(MemoryStore::new())),
            Embedded::Forbidden => Err(ConnectError::Required {
                key: "redis.url",
                command: command.into(),
                why: "services share features through Redis (only all-in-one can run without it)",
            }),
        };
    }
    Ok(Arc::new(connect_redis(config).await?))
}

/// Creates or updates every stream. Idempotent; every service calls it at start.
pub async fn ensure_streams(bus: &dyn Bus, config: &Config) -> Result<(), ConnectError> {
    for spec in crate::topology::streams(&config.streams) {
        bus.ensure_stream(&spec).await?;
    }
    Ok(())
}
