//! The trainer: reads the whole events stream (an ordered replay), trains one co-visitation
//! recommender per tenant ([`shopmind_models::covisit`]) and writes it as ONNX to
//! `<models.dir>/<tenant>/recommender.onnx` (atomically: a temporary file, then a rename).
//! Inference instances watch that directory and swap models without a restart.
//!
//! `shopmind train` runs one round; the `trainer` service runs a round every
//! `trainer.interval_s` seconds, skipping tenants with no new events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shopmind_bus::{Bus, BusError, StartAt};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis};
use shopmind_metrics::{Success, global as metrics};
use shopmind_models::covisit::{CovisitConfig, TrainingInteraction, train};
use shopmind_runtime::{Shutdown, topology};
use tracing::{info, warn};

/// The file name of a tenant's recommender in the models directory.
pub const RECOMMENDER_FILE: &str = "recommender.onnx";

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("training task failed: {0}")]
    Task(String),
}

/// Where a tenant's recommender lives.
pub fn recommender_path(models_dir: &Path, tenant: &TenantId) -> PathBuf {
    models_dir.join(tenant.as_str()).join(RECOMMENDER_FILE)
}

/// What one training round did for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    pub tenant: TenantId,
    pub path: PathBuf,
    pub version: String,
    pub items: usize,
    pub users: u64,
    pub interactions: u64,
}

/// Progress of reading the stream: (messages read, messages to read).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Remembers, per tenant, the last event sequence a model was trained on.
#[derive(Debug, Default)]
pub struct Trainer {
    trained_through: BTreeMap<TenantId, u64>,
}

impl Trainer {
    pub fn new() -> Self {
        Self::default()
    }

    /// One round: replays the events stream up to its current end and trains a model for every
    /// tenant that has new interactions since the last round.
    pub async fn round(
        &mut self,
        config: &Config,
        bus: &dyn Bus,
        progress: Progress<'_>,
    ) -> Result<Vec<TrainedModel>, TrainerError> {
        let state = bus.stream_state(topology::EVENTS_STREAM).await?;
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let end = state.last_sequence;
        let mut per_tenant: BTreeMap<TenantId, (Vec<TrainingInteraction>, u64)> = BTreeMap::new();
        let mut replay = bus.replay(topology::EVENTS_STREAM, None, StartAt::First).await?;
        let (mut read, mut skipped) = (0u64, 0u64);
        while let Some(next) = replay.next().await {
            let stored = next?;
            read += 1;
            if read % 1024 == 0 {
                progress(read, state.messages);
            }
            match shopmind_feature::decode_event(&stored.message) {
                Ok(event) => {
                    if let Some(user) = &event.user {
                        let entry = per_tenant.entry(event.tenant.clone()).or_default();
                        entry.1 = stored.sequence;
                        for i in event.interactions() {
                            entry.0.push(TrainingInteraction {
                                user: user.to_string(),
                                item: i.item.to_string(),
                                kind: i.kind,
                                at_ms: i.at.0,
                            });
                        }
                    }
                }
                Err(_) => skipped += 1,
            }
            if stored.sequence >= end || stored.pending == 0 {
                break;
            }
        }
        progress(read, state.messages);
        drop(replay);
        if skipped > 0 {
            warn!(skipped, "events that do not decode were skipped (they are in the dead-letter stream)");
        }

        let covisit = CovisitConfig {
            max_items: config.trainer.max_items,
            window: config.trainer.window,
            shrinkage: config.trainer.shrinkage,
        };
        let mut trained = Vec::new();
        for (tenant, (interactions, last_seq)) in per_tenant {
            if interactions.is_empty() || self.trained_through.get(&tenant).is_some_and(|&s| s >= last_seq) {
                continue;
            }
            let model =
                train_and_write(&config.models.dir, &tenant, interactions, covisit.clone(), last_seq).await?;
            info!(tenant = %tenant, version = %model.version, items = model.items, users = model.users, "model written");
            self.trained_through.insert(tenant, last_seq);
            trained.push(model);
        }
        Ok(trained)
    }
}

async fn train_and_write(
    dir: &Path,
    tenant: &TenantId,
    interactions: Vec<TrainingInteraction>,
    covisit: CovisitConfig,
    last_seq: u64,
) -> Result<TrainedModel, TrainerError> {
    let path = recommender_path(dir, tenant);
    let tenant_s = tenant.to_string();
    let target = path.clone();
    tokio::task::spawn_blocking(move || {
        let model = train(interactions, &covisit);
        let created = UnixMillis::now();
        let version = format!("covisit-{}-s{last_seq}", created.0);
        let manifest = model.manifest("recommender", &version, &tenant_s, created.0);
        let bytes = model.to_onnx(&manifest);
        write_atomically(&target, &bytes)?;
        Ok(TrainedModel {
            tenant: TenantId::parse(tenant_s).map_err(|e| TrainerError::Task(e.to_string()))?,
            path: target,
            version,
            items: model.items.len(),
            users: model.stats.users,
            interactions: model.stats.interactions,
        })
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrainerError> {
    let err = |source| TrainerError::Write { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("onnx.tmp");
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The trainer service: a round now, then every `trainer.interval_s` (0: one round only).
pub async fn run(config: Config, bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<(), TrainerError> {
    let mut trainer = Trainer::new();
    let interval = Duration::from_secs(config.trainer.interval_s);
    loop {
        let started = Instant::now();
        let round = trainer.round(&config, &*bus, &|_, _| {});
        let result = tokio::select! {
            () = shutdown.wait() => break,
            r = round => r,
        };
        match &result {
            Ok(models) => metrics().trainer_round(Success::Ok, started.elapsed(), models.len()),
            Err(_) => metrics().trainer_round(Success::Error, started.elapsed(), 0),
        }
        if let Err(e) = result {
            warn!(error = %e, "training round failed; will try again next round");
        }
        if interval.is_zero() {
            break;
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    Ok(())
}
