//! The models an inference instance serves, one recommender per tenant, hot-swapped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use shopmind_config::{Config, Device};
use shopmind_domain::TenantId;
use shopmind_models::ModelError;
use shopmind_models::recommender::CovisitRecommender;
use shopmind_models::runtime::{self, PoolOptions};
use tracing::{info, warn};

pub(crate) fn pool_options(config: &Config) -> Result<PoolOptions, ModelError> {
    let device = match config.inference.device {
        Device::Cpu => runtime::Device::Cpu,
        Device::Cuda => runtime::Device::Cuda { device_id: config.inference.cuda_device_id },
    };
    Ok(PoolOptions {
        sessions: config.inference.sessions,
        intra_threads: config.inference.intra_threads,
        device,
        batch: crate::batch_options(config),
    })
}

/// File identity used to notice a new model: modification time and length.
type Stamp = (SystemTime, u64);

struct Slot {
    model: Option<Arc<CovisitRecommender>>,
    stamp: Stamp,
}

/// Tenant -> current model. Readers take an `Arc` and never wait for a load.
pub struct ModelRegistry {
    dir: PathBuf,
    options: PoolOptions,
    slots: RwLock<HashMap<TenantId, Slot>>,
}

impl ModelRegistry {
    pub fn new(dir: PathBuf, options: PoolOptions) -> Self {
        Self { dir, options, slots: RwLock::new(HashMap::new()) }
    }

    pub fn get(&self, tenant: &TenantId) -> Option<Arc<CovisitRecommender>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots.get(tenant).and_then(|s| s.model.clone())
    }

    /// Loads every model file that changed since the last look. A model that fails to load is
    /// reported and the previous version keeps serving.
    pub async fn reload(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for entry in entries.flatten() {
            let Ok(tenant) = TenantId::parse(entry.file_name().to_string_lossy().into_owned()) else {
                continue;
            };
            let path = shopmind_trainer::recommender_path(&self.dir, &tenant);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
            let known = {
                let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
                slots.get(&tenant).map(|s| s.stamp)
            };
            if known == Some(stamp) {
                continue;
            }
            let options = self.options.clone();
            let load_path = path.clone();
            let loaded =
                tokio::task::spawn_blocking(move || CovisitRecommender::load_file(&load_path, &options))
                    .await
                    .map_err(|e| ModelError::Runtime(e.to_string()))
                    .and_then(|r| r);
            let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
            match loaded {
                Ok(model) => {
                    info!(tenant = %tenant, version = %model.manifest().version, items = model.len(), "model loaded");
                    slots.insert(tenant, Slot { model: Some(Arc::new(model)), stamp });
                }
                Err(e) => {
                    warn!(tenant = %tenant, path = %path.display(), error = %e, "model failed to load; keeping the previous one");
                    let previous = slots.get(&tenant).and_then(|s| s.model.clone());
                    slots.insert(tenant, Slot { model: previous, stamp });
                }
            }
        }
    }
}
