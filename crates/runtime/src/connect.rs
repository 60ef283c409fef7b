//! The bus, the store and the model registry a process runs on, chosen by the configuration.

use std::sync::Arc;

use shopmind_bus::{Bus, MemoryBus, NatsBus};
use shopmind_config::Config;
use shopmind_registry::{MemoryModelStore, ModelStore, NatsModelStore};
use shopmind_store::{FeatureStore, MemoryStore, RedisStore};

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
    Ok(Arc::new(NatsBus::connect(&config.nats.url, &format!("shopmind-{command}")).await?))
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
    let nats = NatsBus::connect(&config.nats.url, &format!("shopmind-{command}")).await?;
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
    Ok(Arc::new(RedisStore::connect(&config.redis.url).await?))
}

/// Creates or updates every stream. Idempotent; every service calls it at start.
pub async fn ensure_streams(bus: &dyn Bus, config: &Config) -> Result<(), ConnectError> {
    for spec in crate::topology::streams(&config.streams) {
        bus.ensure_stream(&spec).await?;
    }
    Ok(())
}
