//! The predictive models of a training round: per tenant with new events, the purchase-intent
//! model ([`crate::purchase_intent`]) and the demand forecaster ([`shopmind_training::demand`]),
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
use shopmind_evaluation::demand_backtest::backtest;
use shopmind_evaluation::metrics::roc_auc;
use shopmind_features::FeatureSettings;
use shopmind_features::purchase_intent::FEATURE_NAMES;
use shopmind_onnx::Manifest;
use shopmind_registry::{DEMAND, INTENT, ModelStore};
use shopmind_training::demand::{self, DemandConfig};
use shopmind_training::{PurchaseIntentConfig, TrainingError};
use tracing::info;

use crate::purchase_intent::{self, PurchaseIntentSample, SampleOptions};
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

/// How a round cuts the sessions of its events into the intent model's samples: events replayed
/// through the feature code with the feature service's settings (`feature.*`), so that a sample
/// holds what serving reads from the store at the same point.
pub fn intent_sample_options(config: &Config) -> SampleOptions {
    SampleOptions { seed: 42, settings: FeatureSettings::from_config(&config.feature) }
}

async fn intent_model(
    config: &Config,
    models: &dyn ModelStore,
    tenant: &TenantId,
    events: std::sync::Arc<Vec<Event>>,
    last_seq: u64,
) -> Result<Option<TrainedModel>, TrainerError> {
    let opts = intent_sample_options(config);
    // Replaying the events through the feature code is CPU work: off the async workers.
    let handle = tokio::runtime::Handle::current();
    let samples = tokio::task::spawn_blocking(move || {
        handle.block_on(purchase_intent::build_samples(&events, &opts, &mut |_| {}))
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?
    .map_err(|e| TrainerError::Task(format!("intent samples: feature store: {e}")))?;
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
        let metrics = intent_holdout(&samples);
        let model = purchase_intent::train(&samples, &PurchaseIntentConfig::default())?;
        let created = UnixMillis::now().0;
        let mut manifest = model.manifest(&format!("intent-{created}-s{last_seq}"), &tenant_s, created);
        manifest.metrics = metrics;
        let bytes = model.to_onnx(&manifest);
        Ok::<_, TrainingError>((manifest, bytes))
    })
    .await
    .map_err(|e| TrainerError::Task(e.to_string()))?;
    match built {
        Ok((manifest, bytes)) => publish(config, models, tenant, &manifest, bytes, 0).await.map(Some),
        Err(TrainingError::Failed(why)) => Ok(skipped(tenant, INTENT, &why)),
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
            Err(TrainingError::Failed(why)) => return Ok(Err(why)),
            Err(e) => return Err(e),
        };
        let metrics = demand_holdout(&data, model.horizon);
        let created = UnixMillis::now().0;
        let mut manifest = model.manifest(&format!("demand-{created}-s{last_seq}"), &tenant_s, created);
        manifest.metrics = metrics;
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

/// The intent model's offline metrics: trained on the sessions that started first (80%), ROC-AUC
/// on the latest 20%, next to the open-cart rule's; empty when the held-out sessions are of one
/// class or training fails.
fn intent_holdout(samples: &[PurchaseIntentSample]) -> BTreeMap<String, f64> {
    let mut ordered: Vec<&PurchaseIntentSample> = samples.iter().collect();
    ordered.sort_by_key(|s| (s.started_ms, s.session.clone()));
    let cut = ordered.len() - (ordered.len() / 5).max(1);
    let (train, test) = ordered.split_at(cut);
    let train: Vec<PurchaseIntentSample> = train.iter().map(|s| (*s).clone()).collect();
    let Ok(model) = purchase_intent::train(&train, &PurchaseIntentConfig::default()) else {
        return BTreeMap::new();
    };
    let labels: Vec<bool> = test.iter().map(|s| s.label).collect();
    let scores: Vec<f64> =
        test.iter().map(|s| f64::from(model.predict_row(&s.features).probability)).collect();
    let open_cart = FEATURE_NAMES.iter().position(|n| *n == "session_open_cart");
    let rule: Vec<f64> = test.iter().map(|s| open_cart.map_or(0.0, |i| f64::from(s.features[i]))).collect();
    let (Some(auc), Some(rule_auc)) = (roc_auc(&scores, &labels), roc_auc(&rule, &labels)) else {
        return BTreeMap::new();
    };
    BTreeMap::from([
        ("holdout_sessions".to_string(), test.len() as f64),
        ("holdout_roc_auc".to_string(), auc),
        ("holdout_roc_auc_open_cart_rule".to_string(), rule_auc),
    ])
}

/// The demand model's offline metrics: trained on all but the last `horizon` days, forecast
/// from there, MASE next to the seasonal-naive forecast's and the interval coverage; empty when
/// the shortened data cannot train a model.
fn demand_holdout(data: &demand::DemandData, horizon: usize) -> BTreeMap<String, f64> {
    let origin = data.end_day - horizon as i64;
    let mut before = data.clone();
    before.end_day = origin;
    for s in &mut before.series {
        s.days.retain(|(day, _)| *day < origin);
    }
    before.series.retain(|s| !s.days.is_empty());
    let Ok(model) = demand::train(&before, &DemandConfig::default()) else { return BTreeMap::new() };
    let report = backtest(&model, data, &[origin], 0);
    if report.scored == 0 {
        return BTreeMap::new();
    }
    BTreeMap::from([
        ("holdout_windows".to_string(), report.scored as f64),
        ("holdout_mase".to_string(), report.mase_model),
        ("holdout_mase_seasonal_naive".to_string(), report.mase_seasonal_naive),
        ("holdout_interval_coverage".to_string(), report.coverage),
    ])
}

/// Puts a version, promotes it with `trainer.auto_promote`, prunes to `models.keep_versions`.
pub(crate) async fn publish(
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
        metrics: manifest.metrics.clone(),
        report: None,
    })
}
