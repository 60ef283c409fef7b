//! The models an inference instance serves: per tenant, the version the registry says is active,
//! loaded, warmed up and swapped in without a request ever waiting for a load.
//!
//! [`LiveModels`] follows the registry's active versions ([`ModelStore::watch`]) for one model
//! name. On a change it fetches the artifact, loads it on a blocking thread, warms it up with one
//! real run, and only then replaces the tenant's model (readers take an `Arc`; the map's lock is
//! held for a pointer swap). A version that fails any of these steps is reported (log and
//! `shopmind_model_loads_total{result="error"}`) and the version served before keeps serving.
//!
//! New model kinds plug in through [`Servable`]: how bytes become a loaded model, and what one
//! warm-up run is.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use shopmind_config::{Config, Device};
use shopmind_domain::TenantId;
use shopmind_metrics::{Success, global as metrics};
use shopmind_registry::{ActiveChange, ModelStore, Version};
use shopmind_runtime::Shutdown;
use shopmind_serving::ModelError;
use shopmind_serving::session_pool::{self, PoolOptions};
use tracing::{info, warn};

/// How long to wait before watching the registry again after the watch failed.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The session pool options of `inference.*` (sessions, threads, device, batching).
pub fn pool_options(config: &Config) -> Result<PoolOptions, ModelError> {
    let device = match config.inference.device {
        Device::Cpu => session_pool::Device::Cpu,
        Device::Cuda => session_pool::Device::Cuda { device_id: config.inference.cuda_device_id },
    };
    Ok(PoolOptions {
        sessions: config.inference.sessions,
        intra_threads: config.inference.intra_threads,
        device,
        batch: crate::batch_options(config),
    })
}

/// A model kind inference can serve from the registry.
#[async_trait::async_trait]
pub trait Servable: Sized + Send + Sync + 'static {
    /// The registry's model name this kind is served under, e.g. `recommender`.
    const MODEL: &'static str;

    /// Turns an artifact into a loaded model; runs on a blocking thread.
    fn load(bytes: &[u8], options: &PoolOptions) -> Result<Self, ModelError>;

    /// One real run, so that the first request does not pay for lazy initialisation and a model
    /// that cannot run is never swapped in.
    async fn warm_up(&self) -> Result<(), ModelError>;

    /// The version and tenant the model's manifest names.
    fn version(&self) -> &str;
    fn tenant(&self) -> &str;
}

/// What is done to a loaded model before it is warmed up and swapped in (on the blocking
/// thread of the load), e.g. building an index over it.
pub type Prepare<M> = Arc<dyn Fn(M) -> Result<M, ModelError> + Send + Sync>;

/// Tenant -> the loaded active version of one model. Readers never wait for a load.
pub struct LiveModels<M> {
    options: PoolOptions,
    prepare: Option<Prepare<M>>,
    slots: RwLock<HashMap<TenantId, Arc<M>>>,
}

impl<M: Servable> LiveModels<M> {
    pub fn new(options: PoolOptions) -> Self {
        Self { options, prepare: None, slots: RwLock::new(HashMap::new()) }
    }

    /// [`LiveModels::new`] with a step run on every loaded version before it serves.
    pub fn with_prepare(options: PoolOptions, prepare: Prepare<M>) -> Self {
        Self { options, prepare: Some(prepare), slots: RwLock::new(HashMap::new()) }
    }

    /// The tenant's model, if one is loaded.
    pub fn get(&self, tenant: &TenantId) -> Option<Arc<M>> {
        self.slots.read().unwrap_or_else(|p| p.into_inner()).get(tenant).cloned()
    }

    fn served_version(&self, tenant: &TenantId) -> Option<String> {
        self.get(tenant).map(|m| m.version().to_string())
    }

    /// Follows the registry until `shutdown`: the active versions at the start, then every change.
    /// When the watch fails (e.g. NATS restarts) it watches again, which replays the current state;
    /// versions already served are not loaded twice.
    pub async fn follow(self: Arc<Self>, store: Arc<dyn ModelStore>, shutdown: Shutdown) {
        loop {
            match store.watch().await {
                Ok(mut changes) => loop {
                    let next = tokio::select! {
                        () = shutdown.wait() => return,
                        next = changes.next() => next,
                    };
                    match next {
                        Some(Ok(change)) => self.apply(&*store, change).await,
                        Some(Err(e)) => {
                            warn!(model = M::MODEL, error = %e, "watching the model registry failed; watching again");
                            break;
                        }
                        None => {
                            warn!(model = M::MODEL, "the model registry's watch ended; watching again");
                            break;
                        }
                    }
                },
                Err(e) => warn!(model = M::MODEL, error = %e, "cannot watch the model registry; retrying"),
            }
            tokio::select! {
                () = shutdown.wait() => return,
                () = tokio::time::sleep(REWATCH_DELAY) => {}
            }
        }
    }

    /// Acts on one change of an active version: loads and swaps in, or removes.
    pub async fn apply(&self, store: &dyn ModelStore, change: ActiveChange) {
        if change.key.model.as_str() != M::MODEL {
            return;
        }
        let tenant = change.key.tenant.clone();
        let Some(active) = change.active else {
            let served = {
                let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
                slots.remove(&tenant).map(|_| slots.len())
            };
            if let Some(served) = served {
                metrics().model_swapped(M::MODEL, served);
                info!(tenant = %tenant, model = M::MODEL, "no active version any more; serving the fallback");
            }
            return;
        };
        let before = self.served_version(&tenant);
        if before.as_deref() == Some(active.version.as_str()) {
            return;
        }
        match self.load(store, &change.key, &active.version).await {
            Ok(model) => {
                let served = {
                    let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
                    slots.insert(tenant.clone(), Arc::new(model));
                    slots.len()
                };
                metrics().model_load(M::MODEL, Success::Ok);
                metrics().model_swapped(M::MODEL, served);
                info!(
                    tenant = %tenant,
                    model = M::MODEL,
                    version = %active.version,
                    previous = before.as_deref().unwrap_or("none"),
                    "model version swapped in"
                );
            }
            Err(e) => {
                metrics().model_load(M::MODEL, Success::Error);
                warn!(
                    tenant = %tenant,
                    model = M::MODEL,
                    version = %active.version,
                    serving = before.as_deref().unwrap_or("none (fallback)"),
                    error = %e,
                    "the active model version failed to load; the version served before keeps serving"
                );
            }
        }
    }

    async fn load(
        &self,
        store: &dyn ModelStore,
        key: &shopmind_registry::ModelKey,
        version: &Version,
    ) -> Result<M, String> {
        let bytes = store.get(key, version).await.map_err(|e| format!("fetching: {e}"))?;
        let options = self.options.clone();
        let prepare = self.prepare.clone();
        let model = tokio::task::spawn_blocking(move || {
            let model = M::load(&bytes, &options)?;
            match prepare {
                Some(prepare) => prepare(model),
                None => Ok(model),
            }
        })
        .await
        .map_err(|e| format!("loading: {e}"))?
        .map_err(|e| format!("loading: {e}"))?;
        if model.version() != version.as_str() || model.tenant() != key.tenant.as_str() {
            return Err(format!(
                "the manifest says version {:?} of tenant {:?}, the registry {:?} of {:?}",
                model.version(),
                model.tenant(),
                version.as_str(),
                key.tenant.as_str()
            ));
        }
        model.warm_up().await.map_err(|e| format!("warming up: {e}"))?;
        Ok(model)
    }
}
