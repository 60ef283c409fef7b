//! The predictive models of a training round: per tenant with new events, the purchase-intent
//! model ([`shopmind_models::intent`]) and the demand forecaster ([`shopmind_models::demand`]),
//! each published as a new version of the tenant's `intent` and `demand` models in the registry,
//! promoted with `trainer.auto_promote` and pruned to `models.keep_versions` like the recommender.
//!
//! A model is skipped (logged at info, not an error) when the tenant has too little data for it:
//!
//! | model | needs |
//! |---|---|
//! | `intent` | `trainer.intent_min_sessions` sessions (one training sample each), of which at least `trainer.intent_min_ordered_sessions` ended in an order and as many did not |
//! | `demand` | `trainer.demand_min_days` days from the tenant's first to its last event (at least 71: 56 days of history, 14 of horizon, one to calibrate the interval) and an item ordered in them |
//!
//! A training error of the model itself (e.g. no window with any demand) skips it the same way.
//! `trainer.predictors = false` turns both off.

use std::collections::BTreeMap;

use bytes::Bytes;
use shopmind_config::Config;
use shopmind_domain::{Event, TenantId, UnixMillis};
use shopmind_features::FeatureSettings;
use shopmind_models::demand::{self, DemandConfig};
use shopmind_models::intent::{self, IntentConfig, SampleOptions};
use shopmind_models::{Manifest, ModelError};
use shopmind_registry::{DEMAND, INTENT, ModelStore};
use tracing::info;

use crate::{TrainedModel, TrainerError, version_info};

/// Every event of each tenant read in a round, with the sequence of its last one.
#[derive(Debug, Default)]
pub(crate) struct TenantEvents {
    per_tenant: BTreeMap<TenantId, (Vec<Event>, u64)>,
}

impl TenantEvents {
    pub(crate) fn push(&mut self, sequence: u64, event: Event) {
        let entry = self.per_tenant.entry(event.tenant.clone()).or_default();
        entry.0.push(event);
        entry.1 = entry.1.max(sequence);
    }
}

/// Trains and publishes the intent and demand models of every tenant with events after the
/// sequence it was last trained through (`trained_through`, updated).
pub(crate) async fn train_predictors(
    config: &Config,
    models: &dyn ModelStore,
    events: TenantEvents,
    trained_through: &mut BTreeMap<TenantId, u64>,
) -> Result<Vec<TrainedModel>, TrainerError> {
    let mut published = Vec::new();
    for (tenant, (events, last_seq)) in events.per_tenant {
        if trained_through.get(&tenant).is_some_and(|&s| s >= last_seq) {
            continue;
        }
        let events = std::sync::Arc::new(events);
        if let Some(m) = intent_model(config, models, &tenant, events.clone(), last_seq).await? {
            published.push(m);
        }
        if let Some(m) = demand_model(config, models, &tenant, events, last_seq).await? {
            published.push(m);
        }
        trained_through.insert(tenant, last_seq);
    }
    Ok(published)
}

fn skipped(tenant: &TenantId, model: &str, why: &str) -> Option<TrainedModel> {
    info!(tenant = %tenant, model, reason = why, "not enough data for this model; skipped");
    None
}

async fn intent_model(
    config: &Config,
    models: &dyn ModelStore,
    tenant: &TenantId,
    events: std::sync::Arc<Vec<Event>>,
    last_seq: u64,
) -> Result<Option<TrainedModel>, TrainerError> {
    let opts = SampleOptions {
        seed: 42,
        settings: FeatureSettings {
            recent_cap: config.feature.recent_items_cap,
            ..FeatureSettings::default()
        },
    };
    // Replaying the events through the feature code is CPU work: off the async workers.
    let handle = tokio::runtime::Handle::current();
    let samples = tokio::task::spawn_blocking(move || {
        handle.block_on(intent::build_samples(&events, &opts, &mut |_| {}))
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?
    .map_err(|e| TrainerError::Task(format!("intent samples: {e}")))?;
    let ordered = samples.iter().filter(|s| s.label).count();
    let (min_sessions, min_ordered) =
        (config.trainer.intent_min_sessions, config.trainer.intent_min_ordered_sessions);
    if samples.len() < min_sessions {
        let why = format!("{} sessions, intent needs {min_sessions}", samples.len());
        return Ok(skipped(tenant, INTENT, &why));
    }
    if ordered < min_ordered || samples.len() - ordered < min_ordered {
        let why = format!(
            "{ordered} of {} sessions ended in an order; intent needs {min_ordered} with and without",
            samples.len()
        );
        return Ok(skipped(tenant, INTENT, &why));
    }
    let tenant_s = tenant.to_string();
    let built = tokio::task::spawn_blocking(move || {
        let model = intent::train(&samples, &IntentConfig::default())?;
        let created = UnixMillis::now().0;
        let manifest = model.manifest(&format!("intent-{created}-s{last_seq}"), &tenant_s, created);
        let bytes = model.to_onnx(&manifest);
        Ok::<_, ModelError>((manifest, bytes))
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?;
    match built {
        Ok((manifest, bytes)) => publish(config, models, tenant, &manifest, bytes, 0).await.map(Some),
        Err(ModelError::Training(why)) => Ok(skipped(tenant, INTENT, &why)),
        Err(e) => Err(TrainerError::Task(format!("intent: {e}"))),
    }
}

async fn demand_model(
    config: &Config,
    models: &dyn ModelStore,
    tenant: &TenantId,
    events: std::sync::Arc<Vec<Event>>,
    last_seq: u64,
) -> Result<Option<TrainedModel>, TrainerError> {
    let min_days = i64::from(config.trainer.demand_min_days);
    let tenant_s = tenant.to_string();
    let built = tokio::task::spawn_blocking(move || {
        let data = demand::demand_from_events(events.iter());
        let days = data.end_day - data.first_day;
        if days < min_days {
            return Ok(Err(format!("{days} days of events, demand needs {min_days}")));
        }
        if data.series.is_empty() {
            return Ok(Err("no item was ordered".to_string()));
        }
        let model = match demand::train(&data, &DemandConfig::default()) {
            Ok(m) => m,
            Err(ModelError::Training(why)) => return Ok(Err(why)),
            Err(e) => return Err(e),
        };
        let created = UnixMillis::now().0;
        let manifest = model.manifest(&format!("demand-{created}-s{last_seq}"), &tenant_s, created);
        let bytes = model.to_onnx(&manifest);
        Ok(Ok((manifest, bytes, data.series.len())))
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?
    .map_err(|e| TrainerError::Task(format!("demand: {e}")))?;
    match built {
        Ok((manifest, bytes, items)) => {
            publish(config, models, tenant, &manifest, bytes, items).await.map(Some)
        }
        Err(why) => Ok(skipped(tenant, DEMAND, &why)),
    }
}

/// Puts a version, promotes it with `trainer.auto_promote`, prunes to `models.keep_versions`.
async fn publish(
    config: &Config,
    models: &dyn ModelStore,
    tenant: &TenantId,
    manifest: &Manifest,
    bytes: Vec<u8>,
    items: usize,
) -> Result<TrainedModel, TrainerError> {
    let info = version_info(manifest, bytes.len() as u64)?;
    let info = models.put(info, Bytes::from(bytes)).await?;
    let promoted = config.trainer.auto_promote;
    if promoted {
        models.promote(&info.key, &info.version).await?;
    }
    let pruned = shopmind_registry::prune(models, &info.key, config.models.keep_versions).await?.len();
    info!(
        tenant = %tenant,
        model = %info.key.model,
        version = %info.version,
        users = info.users,
        samples = info.interactions,
        promoted,
        pruned,
        "model published to the registry"
    );
    Ok(TrainedModel {
        model: info.key.model.to_string(),
        tenant: tenant.clone(),
        version: info.version.to_string(),
        items,
        users: info.users,
        interactions: info.interactions,
        promoted,
        pruned,
        metrics: BTreeMap::new(),
    })
}
