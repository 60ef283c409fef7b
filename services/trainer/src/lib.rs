//! The trainer: reads the whole events stream (an ordered replay), trains one recommender per
//! tenant — the embedding recommender ([`shopmind_training::embedding`]) or, with
//! `trainer.recommender = "covisit"`, co-visitation ([`shopmind_training::covisit`]) — and publishes it, as ONNX with its
//! manifest inside, as a new version of the tenant's `recommender` in the model registry
//! ([`shopmind_registry`]). With `trainer.auto_promote` (the default) the new version becomes the
//! active one, which inference instances watch and swap in without a restart; without it an
//! operator promotes it (`shopmind models promote`). After publishing, versions beyond
//! `models.keep_versions` are pruned (never the active one or those a rollback returns to).
//!
//! The same round trains each tenant's purchase-intent and demand models ([`predictors`]) and,
//! with `trainer.assistant.enabled`, the customer-service assistant's intent head
//! ([`assistant`], model name `intent_head`).
//!
//! `shopmind train` runs one round; the `trainer` service runs a round every
//! `trainer.interval_s` seconds, skipping tenants with no new events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use shopmind_bus::{Bus, BusError, StartAt};
use shopmind_config::Config;
use shopmind_config::RecommenderFamily;
use shopmind_domain::{Event, TenantId, UnixMillis};
use shopmind_metrics::{Success, global as metrics};
use shopmind_onnx::Manifest;
use shopmind_registry::{ModelKey, ModelStore, RECOMMENDER, RegistryError, Version, VersionInfo};
use shopmind_runtime::intake::decode_event;
use shopmind_runtime::tombstones::Tombstones;
use shopmind_runtime::{Shutdown, topology};
use shopmind_training::EmbeddingConfig;
use shopmind_training::covisit::{CovisitConfig, TrainingInteraction, train};
use tracing::{info, warn};

mod assistant;
mod holdout;
mod predictors;
pub mod purchase_intent;

pub use predictors::intent_sample_options;

#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("model registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("training task failed: {0}")]
    Task(String),
}

/// What the registry keeps of a model version, from the manifest inside its artifact.
pub fn version_info(manifest: &Manifest, size: u64) -> Result<VersionInfo, RegistryError> {
    Ok(VersionInfo {
        key: ModelKey::parse(&manifest.tenant, &manifest.name)?,
        version: Version::parse(manifest.version.clone())?,
        kind: manifest.kind.clone(),
        created_at_ms: manifest.created_at_ms,
        items: manifest.items.len() as u64,
        users: manifest.stats.users,
        interactions: manifest.stats.interactions,
        size,
    })
}

/// [`version_info`] of ONNX bytes with a shopmind manifest inside.
pub fn version_info_of_onnx(bytes: &[u8]) -> Result<VersionInfo, TrainerError> {
    let manifest = shopmind_onnx::read_manifest(bytes).map_err(|e| TrainerError::Task(e.to_string()))?;
    Ok(version_info(&manifest, bytes.len() as u64)?)
}

/// What one training round did for a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedModel {
    /// The registry's model name: `recommender`, `intent` or `demand`.
    pub model: String,
    pub tenant: TenantId,
    pub version: String,
    pub items: usize,
    pub users: u64,
    pub interactions: u64,
    /// Whether it was made the active version (`trainer.auto_promote`).
    pub promoted: bool,
    /// Older versions removed from the registry (`models.keep_versions`).
    pub pruned: usize,
    /// The offline metrics in the model's manifest (for a recommender: NDCG@10 and Recall@10 of
    /// each user's held-out latest interaction, and the same for popularity).
    pub metrics: BTreeMap<String, f64>,
    /// A longer held-out report, in Markdown, where the model has one (the intent head's
    /// per-intent precision and recall and confusion matrix).
    pub report: Option<String>,
}

/// Progress of reading the stream: (messages read, messages to read).
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// Remembers, per tenant, the last event sequence a model was trained on.
#[derive(Debug, Default)]
pub struct Trainer {
    trained_through: BTreeMap<TenantId, u64>,
    /// The same for the intent and demand models.
    predictors_through: BTreeMap<TenantId, u64>,
    /// What each tenant's intent head was last trained on.
    intent_heads: assistant::TrainedOn,
    /// Only events that occurred at or after this time are trained on.
    since: Option<UnixMillis>,
}

impl Trainer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rounds train only on events that occurred at or after `since` (event time).
    pub fn since(mut self, since: Option<UnixMillis>) -> Self {
        self.since = since;
        self
    }

    /// One round: replays the events stream up to its current end and trains a model for every
    /// tenant that has new interactions since the last round.
    pub async fn round(
        &mut self,
        config: &Config,
        bus: &dyn Bus,
        models: &dyn ModelStore,
        progress: Progress<'_>,
    ) -> Result<Vec<TrainedModel>, TrainerError> {
        let state = bus.stream_state(topology::EVENTS_STREAM).await?;
        if state.messages == 0 {
            return Ok(Vec::new());
        }
        let end = state.last_sequence;
        // Customers erased since their events were published: their stragglers are skipped.
        let erased = Tombstones::load(bus).await?;
        let mut history = History::since(self.since);
        let mut replay = bus.replay(topology::EVENTS_STREAM, None, StartAt::First).await?;
        let (mut read, mut skipped, mut excluded) = (0u64, 0u64, 0u64);
        while let Some(next) = replay.next().await {
            let stored = next?;
            read += 1;
            if read % 1024 == 0 {
                progress(read, state.messages);
            }
            match decode_event(&stored.message) {
                Ok(event) if erased.covers(&event) => excluded += 1,
                Ok(event) => history.push(stored.sequence, event),
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
        if excluded > 0 {
            info!(excluded, "events of erased customers were excluded");
        }
        self.train(config, models, history).await
    }

    /// Trains from `history` (e.g. events read from files; their positions stand in for stream
    /// sequences) as [`Trainer::round`] does from the stream.
    pub async fn train(
        &mut self,
        config: &Config,
        models: &dyn ModelStore,
        history: History,
    ) -> Result<Vec<TrainedModel>, TrainerError> {
        let family = RecommenderTraining::from_config(config);
        let mut trained = Vec::new();
        let mut tenant_events = predictors::TenantEvents::default();
        let tenants: Vec<TenantId> = history.per_tenant.keys().cloned().collect();
        for (tenant, events) in history.per_tenant {
            let Some(last_seq) = events.iter().map(|(seq, _)| *seq).max() else { continue };
            let events = within_window(events, config.trainer.history_days, history.since);
            let mut interactions = Vec::new();
            for (_, event) in &events {
                if let Some(user) = &event.user {
                    for i in event.interactions() {
                        interactions.push(TrainingInteraction {
                            user: user.to_string(),
                            item: i.item.to_string(),
                            kind: i.kind,
                            at_ms: i.at.0,
                        });
                    }
                }
            }
            if config.trainer.predictors {
                for (seq, event) in events {
                    tenant_events.push(seq, event);
                }
            }
            if interactions.is_empty() || self.trained_through.get(&tenant).is_some_and(|&s| s >= last_seq) {
                continue;
            }
            let model =
                train_and_publish(config, models, &tenant, interactions, family.clone(), last_seq).await?;
            info!(
                tenant = %tenant,
                version = %model.version,
                items = model.items,
                users = model.users,
                promoted = model.promoted,
                pruned = model.pruned,
                "model published to the registry"
            );
            self.trained_through.insert(tenant, last_seq);
            trained.push(model);
        }
        let predicted =
            predictors::train_predictors(config, models, tenant_events, &mut self.predictors_through).await?;
        trained.extend(predicted);
        let heads = assistant::train_intent_heads(config, models, tenants, &mut self.intent_heads).await?;
        trained.extend(heads);
        Ok(trained)
    }
}

/// Events to train on, per tenant, with their stream sequence (or position in a file).
#[derive(Debug, Default)]
pub struct History {
    per_tenant: BTreeMap<TenantId, Vec<(u64, Event)>>,
    /// Only events that occurred at or after this time count (`shopmind train --since`).
    since: Option<UnixMillis>,
}

impl History {
    /// Only events that occurred at or after `since` will be trained on.
    pub fn since(since: Option<UnixMillis>) -> Self {
        Self { per_tenant: BTreeMap::new(), since }
    }

    pub fn push(&mut self, sequence: u64, event: Event) {
        self.per_tenant.entry(event.tenant.clone()).or_default().push((sequence, event));
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.per_tenant.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The events that occurred at or after `since` and within `days` of the tenant's newest event
/// (0: no such limit). Event time, not arrival: a replay of last year's data trains alike.
fn within_window(events: Vec<(u64, Event)>, days: u32, since: Option<UnixMillis>) -> Vec<(u64, Event)> {
    let newest = events.iter().map(|(_, e)| e.occurred_at.0).max().unwrap_or(0);
    let by_days = (days > 0).then(|| newest - i64::from(days) * 86_400_000);
    let from = by_days.into_iter().chain(since.map(|s| s.0)).max();
    match from {
        Some(from) => events.into_iter().filter(|(_, e)| e.occurred_at.0 >= from).collect(),
        None => events,
    }
}

/// The recommender family `trainer.recommender` names, with its training parameters.
#[derive(Clone, Debug)]
enum RecommenderTraining {
    Covisit(CovisitConfig),
    Embedding(EmbeddingConfig),
}

impl RecommenderTraining {
    fn from_config(config: &Config) -> Self {
        match config.trainer.recommender {
            RecommenderFamily::Covisit => Self::Covisit(CovisitConfig {
                max_items: config.trainer.max_items,
                window: config.trainer.window,
                shrinkage: config.trainer.shrinkage,
            }),
            RecommenderFamily::Embedding => Self::Embedding(EmbeddingConfig {
                dim: config.trainer.embedding_dim,
                epochs: config.trainer.embedding_epochs,
                ..EmbeddingConfig::default()
            }),
        }
    }
}

async fn train_and_publish(
    config: &Config,
    models: &dyn ModelStore,
    tenant: &TenantId,
    interactions: Vec<TrainingInteraction>,
    family: RecommenderTraining,
    last_seq: u64,
) -> Result<TrainedModel, TrainerError> {
    let tenant_s = tenant.to_string();
    let holdout_eval = config.trainer.holdout_eval;
    let (info, bytes, items, metrics) = tokio::task::spawn_blocking(move || {
        let created = UnixMillis::now();
        // The offline metrics come from a model trained without each user's latest interaction;
        // the model published is trained on everything (the newest items stay in its vocabulary).
        let holdout = holdout_eval.then(|| holdout::split(interactions.clone()));
        let (manifest, bytes, items) = match family {
            RecommenderTraining::Covisit(cfg) => {
                // Newest first, each step back weighing 0.85 of the next, as inference weighs a view.
                let weighted = |h: &[usize]| -> Vec<(usize, f32)> {
                    h.iter().rev().enumerate().map(|(r, &i)| (i, 0.85f32.powi(r as i32))).collect()
                };
                let metrics = holdout.map(|(train_on, cases)| {
                    let m = train(train_on.iter().cloned(), &cfg);
                    holdout::metrics(&m.items, &train_on, &cases, |h| m.score(&weighted(h)))
                });
                let model = train(interactions, &cfg);
                let version = format!("covisit-{}-s{last_seq}", created.0);
                let mut manifest = model.manifest(RECOMMENDER, &version, &tenant_s, created.0);
                manifest.metrics = metrics.unwrap_or_default();
                let bytes = model.to_onnx(&manifest);
                (manifest, bytes, model.items.len())
            }
            RecommenderTraining::Embedding(cfg) => {
                let metrics = holdout.map(|(train_on, cases)| {
                    let m = shopmind_training::embedding::train(train_on.iter().cloned(), &cfg);
                    holdout::metrics(&m.items, &train_on, &cases, |h| m.score(&m.recent_history(h)))
                });
                let model = shopmind_training::embedding::train(interactions, &cfg);
                let version = format!("embedding-{}-s{last_seq}", created.0);
                let mut manifest = model.manifest(RECOMMENDER, &version, &tenant_s, created.0);
                manifest.metrics = metrics.unwrap_or_default();
                let bytes = model.to_onnx(&manifest);
                (manifest, bytes, model.items.len())
            }
        };
        let info = version_info(&manifest, bytes.len() as u64)?;
        Ok::<_, TrainerError>((info, Bytes::from(bytes), items, manifest.metrics))
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))??;
    let info = models.put(info, bytes).await?;
    let promoted = config.trainer.auto_promote;
    if promoted {
        models.promote(&info.key, &info.version).await?;
    }
    let pruned = shopmind_registry::prune(models, &info.key, config.models.keep_versions).await?.len();
    Ok(TrainedModel {
        model: RECOMMENDER.to_string(),
        tenant: tenant.clone(),
        version: info.version.to_string(),
        items,
        users: info.users,
        interactions: info.interactions,
        promoted,
        pruned,
        metrics,
        report: None,
    })
}

/// The trainer service: a round now, then every `trainer.interval_s` (0: one round only).
pub async fn run(
    config: Config,
    bus: Arc<dyn Bus>,
    models: Arc<dyn ModelStore>,
    shutdown: Shutdown,
) -> Result<(), TrainerError> {
    let mut trainer = Trainer::new();
    let interval = Duration::from_secs(config.trainer.interval_s);
    loop {
        let started = Instant::now();
        let round = trainer.round(&config, &*bus, &*models, &|_, _| {});
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
