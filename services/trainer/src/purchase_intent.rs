//! Purchase intent in a training round: the training samples, built by replaying the tenant's
//! events through the production feature code, and the model trained on them.
//!
//! A sample is a session cut at one of its events before its order: the events up to the cut
//! are applied with `shopmind_features::apply_event` to a memory store, the session's and the
//! user's features are read back with the serving reads, and
//! `shopmind_features::purchase_intent::purchase_intent_features` (the function inference calls
//! on a live read) turns them into the model's row. The label is whether the session ordered.
//! [`train`] fits `shopmind_training`'s logistic regression to the rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shopmind_domain::{Event, EventKind};
use shopmind_features::purchase_intent::{
    FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES, purchase_intent_features,
};
use shopmind_features::{FeatureSettings, apply_event, read_session_features, read_user_features};
use shopmind_onnx::TrainingStats;
use shopmind_store::{MemoryStore, StoreError};
use shopmind_training::TrainingError;
use shopmind_training::purchase_intent::{PurchaseIntentConfig, PurchaseIntentModel, fit};
use shopmind_training::rng::hash_str;

/// One training example: a session cut at one of its events.
#[derive(Clone, Debug, PartialEq)]
pub struct PurchaseIntentSample {
    pub tenant: String,
    pub session: String,
    pub user: String,
    /// The session's first event.
    pub started_ms: i64,
    /// The session's last event (its order, if it has one).
    pub ended_ms: i64,
    /// The event the features were read after.
    pub cut_ms: i64,
    pub features: [f32; N_FEATURES],
    /// Whether the session ended in an order.
    pub label: bool,
}

/// How [`build_samples`] cuts sessions.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Seeds the choice of each session's cut point.
    pub seed: u64,
    /// The feature settings of the feature service (windows, caps, half-lives).
    pub settings: FeatureSettings,
}

impl Default for SampleOptions {
    fn default() -> Self {
        Self { seed: 42, settings: FeatureSettings::default() }
    }
}

struct SessionPlan {
    /// Indices (into the time-ordered events) of the session's events before its first order.
    before_order: Vec<usize>,
    ordered: bool,
    user: String,
    started_ms: i64,
    ended_ms: i64,
}

/// Builds one training sample per session from events, through the production feature code.
///
/// Events are applied in time order (ties keep input order) with `apply_event` to a fresh
/// `MemoryStore`. For each session with at least one event before its first `order_placed`
/// (all of its events if it has none), a cut point is drawn uniformly among those events
/// (seeded by `opts.seed` and the session id); right after the cut event is applied, the
/// session's and user's features are read with `read_session_features` and
/// `read_user_features` (at the cut event's time) and turned into a row by
/// [`purchase_intent_features`]. The label is whether the session has an `order_placed` event. Samples
/// come in the order of their cut events. `progress` is called with 1 per applied event.
pub async fn build_samples(
    events: &[Event],
    opts: &SampleOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<PurchaseIntentSample>, StoreError> {
    let mut order: Vec<usize> = (0..events.len()).collect();
    order.sort_by_key(|&i| events[i].occurred_at);

    // Pass 1: each session's events before its order, and whether it ordered.
    let mut plans: HashMap<(String, String), SessionPlan> = HashMap::new();
    for (pos, &i) in order.iter().enumerate() {
        let e = &events[i];
        let (Some(session), Some(user)) = (&e.session, &e.user) else { continue };
        let at = e.occurred_at.0;
        let plan = plans.entry((e.tenant.to_string(), session.to_string())).or_insert_with(|| SessionPlan {
            before_order: Vec::new(),
            ordered: false,
            user: user.to_string(),
            started_ms: at,
            ended_ms: at,
        });
        plan.ended_ms = plan.ended_ms.max(at);
        if e.kind() == EventKind::OrderPlaced {
            plan.ordered = true;
        } else if !plan.ordered {
            plan.before_order.push(pos);
        }
    }
    // The cut: position in the time order -> session key.
    let mut cuts: HashMap<usize, (String, String)> = HashMap::new();
    for (key, plan) in &plans {
        if plan.before_order.is_empty() {
            continue;
        }
        let k = (hash_str(opts.seed, &format!("{}\u{1f}{}", key.0, key.1)) % plan.before_order.len() as u64)
            as usize;
        if let Some(&pos) = plan.before_order.get(k) {
            cuts.insert(pos, key.clone());
        }
    }

    // Pass 2: apply in time order; read the features right after each cut event.
    let store = MemoryStore::new();
    let mut samples = Vec::with_capacity(cuts.len());
    for (pos, &i) in order.iter().enumerate() {
        let e = &events[i];
        apply_event(&store, e, &opts.settings).await?;
        progress(1);
        let Some(key) = cuts.get(&pos) else { continue };
        let (Some(session_id), Some(user_id)) = (&e.session, &e.user) else { continue };
        let Some(plan) = plans.get(key) else { continue };
        let now = e.occurred_at;
        let session = read_session_features(&store, &e.tenant, session_id).await?;
        let user = read_user_features(&store, &e.tenant, user_id, &opts.settings, now).await?;
        samples.push(PurchaseIntentSample {
            tenant: key.0.clone(),
            session: key.1.clone(),
            user: plan.user.clone(),
            started_ms: plan.started_ms,
            ended_ms: plan.ended_ms,
            cut_ms: now.0,
            features: purchase_intent_features(&session, &user, now),
            label: plan.ordered,
        });
    }
    Ok(samples)
}

/// Trains the purchase-intent model on samples (see [`build_samples`]): [`fit`] on their rows,
/// with the feature contract's schema version and the samples' users, count and cut times.
pub fn train(
    samples: &[PurchaseIntentSample],
    cfg: &PurchaseIntentConfig,
) -> Result<PurchaseIntentModel, TrainingError> {
    let rows: Vec<f32> = samples.iter().flat_map(|s| s.features).collect();
    let labels: Vec<bool> = samples.iter().map(|s| s.label).collect();
    let names = FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut model = fit(&rows, N_FEATURES, &labels, names, cfg)?;
    let users: BTreeSet<&str> = samples.iter().map(|s| s.user.as_str()).collect();
    model.feature_schema_version = FEATURE_SCHEMA_VERSION;
    model.stats = TrainingStats {
        users: users.len() as u64,
        interactions: samples.len() as u64,
        first_at_ms: samples.iter().map(|s| s.cut_ms).min().unwrap_or(0),
        last_at_ms: samples.iter().map(|s| s.cut_ms).max().unwrap_or(0),
    };
    Ok(model)
}

/// Counts of samples per label, for reports.
pub fn label_counts(samples: &[PurchaseIntentSample]) -> BTreeMap<bool, usize> {
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts.entry(s.label).or_default() += 1;
    }
    counts
}
