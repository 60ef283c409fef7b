//! Purchase intent: the chance that a shopping session ends in an order, from what the feature
//! store knows about the session and its user at a moment inside it.
//!
//! **One feature function for training and serving.** [`intent_features`] maps what
//! `shopmind_features::read_session_features` and `read_user_features` return (and the time of
//! the request) to the model's input row. Serving calls it on a live read; training
//! ([`build_samples`]) replays events through the production feature code
//! (`shopmind_features::apply_event` on a `MemoryStore`), stops at a cut point inside each
//! session, reads the features back with the same read functions, and calls the same function.
//! The row's layout is [`FEATURE_NAMES`], versioned by [`FEATURE_SCHEMA_VERSION`]; both are
//! written into the model file and checked when it is loaded.
//!
//! **The model** is a logistic regression on standardised features, fitted by Newton's method
//! (IRLS) with an L2 penalty ([`train`], [`fit`]). [`IntentModel::to_onnx`] exports it with the
//! standardisation inside the graph; the graph returns the probability, the logit and each
//! feature's contribution to the logit (for "why" answers). [`IntentPredictor`] serves it from
//! ONNX Runtime.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};
use shopmind_domain::{Event, EventKind, UnixMillis};
use shopmind_features::{
    FeatureSettings, SessionFeatures, UserFeatures, apply_event, read_session_features, read_user_features,
};
use shopmind_store::MemoryStore;

use crate::covisit::TrainingStats;
use crate::error::{ModelError, Result};
use crate::export::{self, check_io, read_spec, take_f32};
use crate::linalg::solve_spd;
use crate::manifest::{Manifest, TensorSpec, read_manifest_of_kind};
use crate::onnx::{self, DataType, Dim};
use crate::runtime::{InputTensor, PoolOptions, SessionPool};

/// Model role written to [`Manifest::name`].
pub const NAME: &str = "intent";
/// Model family written to [`Manifest::kind`].
pub const KIND: &str = "intent-logistic";
/// Graph input: one feature row per session, float `[batch, n_features]`.
pub const INPUT_FEATURES: &str = "features";
/// Graph output: the probability of an order, float `[batch]`.
pub const OUTPUT_PROBABILITY: &str = "probability";
/// Graph output: the logit, float `[batch]`.
pub const OUTPUT_LOGIT: &str = "logit";
/// Graph output: each feature's contribution to the logit, float `[batch, n_features]`; a row
/// sums to the logit minus the bias.
pub const OUTPUT_CONTRIBUTIONS: &str = "contributions";
/// The symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";

/// Version of the feature row; bump it whenever [`intent_features`] changes meaning.
pub const FEATURE_SCHEMA_VERSION: u32 = 1;

/// The feature row, in order. Counts are `ln(1 + n)`.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    // The session so far (read_session_features).
    "session_views",
    "session_cart_adds",
    "session_cart_removes",
    "session_searches",
    "session_open_cart",
    "session_minutes",
    // The user (read_user_features), the current session included.
    "user_cart_units",
    "user_views",
    "user_cart_adds",
    "user_orders",
    "user_has_ordered",
    "user_days_since_order",
    "user_cart_conversion",
    "user_cart_rate",
    "user_spend",
];

/// Length of the feature row.
pub const N_FEATURES: usize = 15;

fn ln1p(n: i64) -> f32 {
    (n.max(0) as f64).ln_1p() as f32
}

/// The feature row of a session at `now` (see [`FEATURE_NAMES`]):
///
/// | feature | value |
/// |---|---|
/// | `session_views` | ln(1 + `product_viewed` events in the session) |
/// | `session_cart_adds` | ln(1 + `added_to_cart`) |
/// | `session_cart_removes` | ln(1 + `removed_from_cart`) |
/// | `session_searches` | ln(1 + `search_performed`) |
/// | `session_open_cart` | 1 if the session added more cart lines than it removed, else 0 |
/// | `session_minutes` | ln(1 + minutes between the session's first and last event) |
/// | `user_cart_units` | ln(1 + units in the user's cart now, earlier sessions' leftovers included) |
/// | `user_views` | ln(1 + the user's `product_viewed` events) |
/// | `user_cart_adds` | ln(1 + the user's `added_to_cart` events) |
/// | `user_orders` | ln(1 + the user's orders) |
/// | `user_has_ordered` | 1 if the user ever ordered, else 0 |
/// | `user_days_since_order` | ln(1 + days from the last order to `now`); 0 without orders |
/// | `user_cart_conversion` | (orders + 1) / (cart adds + 2) |
/// | `user_cart_rate` | (cart adds + 1) / (views + 10) |
/// | `user_spend` | ln(1 + total spend in major units, all currencies added) |
///
/// Order events of the session are not features: the model answers for sessions that have not
/// ordered yet (training cuts every session before its order).
pub fn intent_features(session: &SessionFeatures, user: &UserFeatures, now: UnixMillis) -> [f32; N_FEATURES] {
    let s = |k: EventKind| session.counts.get(k.as_str()).copied().unwrap_or(0);
    let u = |k: EventKind| user.counts.get(k.as_str()).copied().unwrap_or(0);
    let adds = s(EventKind::AddedToCart);
    let removes = s(EventKind::RemovedFromCart);
    let minutes = session.duration_ms().unwrap_or(0).max(0) / 60_000;
    let cart_units: i64 = user.cart.values().sum();
    let (user_views, user_adds) = (u(EventKind::ProductViewed), u(EventKind::AddedToCart));
    let orders = user.order_count.max(0);
    let days_since_order = user.last_order_ms.map_or(0.0, |last| {
        let days = ((now.0 - last).max(0) as f64) / 86_400_000.0;
        days.ln_1p() as f32
    });
    let spend_minor: i64 = user.spend.values().sum();
    [
        ln1p(s(EventKind::ProductViewed)),
        ln1p(adds),
        ln1p(removes),
        ln1p(s(EventKind::SearchPerformed)),
        if adds > removes { 1.0 } else { 0.0 },
        ln1p(minutes),
        ln1p(cart_units),
        ln1p(user_views),
        ln1p(user_adds),
        ln1p(orders),
        if orders > 0 { 1.0 } else { 0.0 },
        days_since_order,
        ((orders as f64 + 1.0) / (user_adds.max(0) as f64 + 2.0)) as f32,
        ((user_adds.max(0) as f64 + 1.0) / (user_views.max(0) as f64 + 10.0)) as f32,
        ((spend_minor.max(0) as f64) / 100.0).ln_1p() as f32,
    ]
}

/// One training example: a session cut at one of its events.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentSample {
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

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash_str(seed: u64, s: &str) -> u64 {
    s.bytes().fold(splitmix(seed), |h, b| splitmix(h ^ u64::from(b)))
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
/// [`intent_features`]. The label is whether the session has an `order_placed` event. Samples
/// come in the order of their cut events. `progress` is called with 1 per applied event.
pub async fn build_samples(
    events: &[Event],
    opts: &SampleOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<Vec<IntentSample>> {
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
        samples.push(IntentSample {
            tenant: key.0.clone(),
            session: key.1.clone(),
            user: plan.user.clone(),
            started_ms: plan.started_ms,
            ended_ms: plan.ended_ms,
            cut_ms: now.0,
            features: intent_features(&session, &user, now),
            label: plan.ordered,
        });
    }
    Ok(samples)
}

/// Training parameters of the logistic regression.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentConfig {
    /// L2 penalty on the weights (of standardised features; the bias is not penalised).
    pub l2: f64,
    /// Most Newton steps.
    pub max_iter: usize,
    /// Stop when no parameter moves more than this in a step.
    pub tolerance: f64,
}

impl Default for IntentConfig {
    fn default() -> Self {
        Self { l2: 1.0, max_iter: 50, tolerance: 1e-8 }
    }
}

/// What the model file says about its features; stored under [`export::SPEC_KEY`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IntentSpec {
    pub feature_schema_version: u32,
    pub features: Vec<String>,
    /// Positive share of the training samples.
    pub base_rate: f64,
}

/// A trained logistic regression: `logit = bias + sum_i w_i * (x_i - mean_i) / scale_i`.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentModel {
    pub feature_names: Vec<String>,
    pub feature_schema_version: u32,
    pub mean: Vec<f32>,
    /// Standard deviations (1 for constant features).
    pub scale: Vec<f32>,
    pub weights: Vec<f32>,
    pub bias: f32,
    pub base_rate: f64,
    /// `users`: distinct users; `interactions`: samples; times: first and last cut.
    pub stats: TrainingStats,
    /// Newton steps taken.
    pub iterations: usize,
}

/// A prediction for one row.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentPrediction {
    pub probability: f32,
    pub logit: f32,
    /// Per feature, in the model's feature order.
    pub contributions: Vec<f32>,
}

impl IntentPrediction {
    /// The `k` features with the largest contributions by magnitude, largest first, named by
    /// `names` (the model's feature names).
    pub fn top<'a>(&self, names: &'a [impl AsRef<str>], k: usize) -> Vec<(&'a str, f32)> {
        let mut pairs: Vec<(&str, f32)> =
            names.iter().map(AsRef::as_ref).zip(self.contributions.iter().copied()).collect();
        pairs.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(b.0)));
        pairs.truncate(k);
        pairs
    }
}

/// Trains the intent model on samples (see [`build_samples`]); [`fit`] on their rows.
pub fn train(samples: &[IntentSample], cfg: &IntentConfig) -> Result<IntentModel> {
    let rows: Vec<f32> = samples.iter().flat_map(|s| s.features).collect();
    let labels: Vec<bool> = samples.iter().map(|s| s.label).collect();
    let names = FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut model = fit(&rows, N_FEATURES, &labels, names, cfg)?;
    let users: BTreeSet<&str> = samples.iter().map(|s| s.user.as_str()).collect();
    model.stats = TrainingStats {
        users: users.len() as u64,
        interactions: samples.len() as u64,
        first_at_ms: samples.iter().map(|s| s.cut_ms).min().unwrap_or(0),
        last_at_ms: samples.iter().map(|s| s.cut_ms).max().unwrap_or(0),
    };
    Ok(model)
}

/// Fits a logistic regression to row-major `rows` (`labels.len()` rows of `n` features):
/// features are standardised (mean 0, standard deviation 1; constant features are only
/// centred), then Newton's method minimises the mean log-loss plus `l2 / (2 * rows) * |w|^2`.
/// Deterministic. Errors without rows, without both classes, or on non-finite values.
pub fn fit(
    rows: &[f32],
    n: usize,
    labels: &[bool],
    feature_names: Vec<String>,
    cfg: &IntentConfig,
) -> Result<IntentModel> {
    let m = labels.len();
    if m == 0 || rows.len() != m * n || feature_names.len() != n {
        return Err(ModelError::Training(format!(
            "{} feature values, {m} labels and {} names for {n} features",
            rows.len(),
            feature_names.len()
        )));
    }
    if rows.iter().any(|v| !v.is_finite()) {
        return Err(ModelError::Training("a feature value is not finite".into()));
    }
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 || positives == m {
        return Err(ModelError::Training("the samples have only one class".into()));
    }

    // Standardisation, in f64; stored as f32, and the design matrix is built from the f32
    // values so that training sees exactly what the graph computes.
    let mut mean = vec![0f32; n];
    let mut scale = vec![1f32; n];
    for j in 0..n {
        let mu = (0..m).map(|r| f64::from(rows[r * n + j])).sum::<f64>() / m as f64;
        let var = (0..m).map(|r| (f64::from(rows[r * n + j]) - mu).powi(2)).sum::<f64>() / m as f64;
        mean[j] = mu as f32;
        scale[j] = if var.sqrt() > 1e-9 { var.sqrt() as f32 } else { 1.0 };
    }
    let d = n + 1; // weights, then the bias
    let mut z = vec![0f64; m * d];
    for r in 0..m {
        for j in 0..n {
            z[r * d + j] = f64::from((rows[r * n + j] - mean[j]) / scale[j]);
        }
        z[r * d + n] = 1.0;
    }
    let y: Vec<f64> = labels.iter().map(|l| if *l { 1.0 } else { 0.0 }).collect();

    let mut beta = vec![0f64; d];
    let base = positives as f64 / m as f64;
    beta[n] = (base / (1.0 - base)).ln();
    let mut iterations = 0;
    for _ in 0..cfg.max_iter {
        iterations += 1;
        let mut grad = vec![0f64; d];
        let mut hess = vec![0f64; d * d];
        for r in 0..m {
            let row = &z[r * d..(r + 1) * d];
            let eta: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let p = 1.0 / (1.0 + (-eta).exp());
            let w = (p * (1.0 - p)).max(1e-12);
            for a in 0..d {
                grad[a] += (p - y[r]) * row[a];
                let wa = w * row[a];
                for b in 0..=a {
                    hess[a * d + b] += wa * row[b];
                }
            }
        }
        for a in 0..d {
            for b in 0..a {
                hess[b * d + a] = hess[a * d + b];
            }
        }
        for j in 0..n {
            grad[j] += cfg.l2 * beta[j];
            hess[j * d + j] += cfg.l2;
        }
        hess[n * d + n] += 1e-9;
        let step = solve_spd(&hess, d, &grad, 1)?;
        let mut moved = 0f64;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b -= s;
            moved = moved.max(s.abs());
        }
        if !beta.iter().all(|b| b.is_finite()) {
            return Err(ModelError::Training("Newton's method diverged".into()));
        }
        if moved < cfg.tolerance {
            break;
        }
    }
    Ok(IntentModel {
        feature_names,
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        mean,
        scale,
        weights: beta[..n].iter().map(|b| *b as f32).collect(),
        bias: beta[n] as f32,
        base_rate: base,
        stats: TrainingStats::default(),
        iterations,
    })
}

impl IntentModel {
    pub fn n_features(&self) -> usize {
        self.weights.len()
    }

    /// The reference computation, in plain Rust and f32, the same operations in the same order
    /// as the graph: `c_i = ((x_i - mean_i) / scale_i) * w_i`, `logit = sum_i c_i + bias`,
    /// `p = 1 / (1 + e^-logit)`. Rows shorter than the model are padded with zeros.
    pub fn predict_row(&self, x: &[f32]) -> IntentPrediction {
        let contributions: Vec<f32> = (0..self.n_features())
            .map(|i| ((x.get(i).copied().unwrap_or(0.0) - self.mean[i]) / self.scale[i]) * self.weights[i])
            .collect();
        let logit = contributions.iter().sum::<f32>() + self.bias;
        IntentPrediction { probability: 1.0 / (1.0 + (-logit).exp()), logit, contributions }
    }

    /// The manifest [`IntentModel::to_onnx`] embeds, given the caller's identity fields.
    pub fn manifest(&self, version: &str, tenant: &str, created_at_ms: i64) -> Manifest {
        let n = self.n_features().to_string();
        let spec =
            |name: &str, shape: Vec<String>| TensorSpec { name: name.into(), dtype: "float32".into(), shape };
        Manifest {
            name: NAME.into(),
            kind: KIND.into(),
            version: version.into(),
            tenant: tenant.into(),
            created_at_ms,
            feature_schema_version: FEATURE_SCHEMA_VERSION,
            metrics: Default::default(),
            items: Vec::new(),
            stats: self.stats,
            inputs: vec![spec(INPUT_FEATURES, vec![BATCH_DIM.into(), n.clone()])],
            outputs: vec![
                spec(OUTPUT_PROBABILITY, vec![BATCH_DIM.into()]),
                spec(OUTPUT_LOGIT, vec![BATCH_DIM.into()]),
                spec(OUTPUT_CONTRIBUTIONS, vec![BATCH_DIM.into(), n]),
            ],
        }
    }

    /// The feature description stored next to the manifest.
    pub fn spec(&self) -> IntentSpec {
        IntentSpec {
            feature_schema_version: self.feature_schema_version,
            features: self.feature_names.clone(),
            base_rate: self.base_rate,
        }
    }

    /// Exports the model as ONNX (IR 8, opset 17):
    ///
    /// ```text
    /// features [B,n] ─ Sub(mean) ─ Div(scale) ─ Mul(weights) ─ contributions [B,n]
    ///     ─ ReduceSum(axes=[1], keepdims=0) ─ Add(bias) ─ logit [B] ─ Sigmoid ─ probability [B]
    /// ```
    ///
    /// The manifest takes `version`, `tenant` and `created_at_ms` from `manifest`; the rest
    /// describes this model ([`IntentModel::manifest`]). The feature names and schema version go
    /// under [`export::SPEC_KEY`].
    pub fn to_onnx(&self, manifest: &Manifest) -> Vec<u8> {
        let n = self.n_features() as i64;
        let manifest = Manifest {
            metrics: manifest.metrics.clone(),
            ..self.manifest(&manifest.version, &manifest.tenant, manifest.created_at_ms)
        };
        let batch = || Dim::Symbolic(BATCH_DIM.into());
        let graph = onnx::GraphProto {
            name: "intent".into(),
            node: vec![
                onnx::node("Sub", &[INPUT_FEATURES, "mean"], &["centred"], vec![]),
                onnx::node("Div", &["centred", "scale"], &["standardised"], vec![]),
                onnx::node("Mul", &["standardised", "weights"], &[OUTPUT_CONTRIBUTIONS], vec![]),
                onnx::node(
                    "ReduceSum",
                    &[OUTPUT_CONTRIBUTIONS, "feature_axis"],
                    &["weighted_sum"],
                    vec![onnx::attr_int("keepdims", 0)],
                ),
                onnx::node("Add", &["weighted_sum", "bias"], &[OUTPUT_LOGIT], vec![]),
                onnx::node("Sigmoid", &[OUTPUT_LOGIT], &[OUTPUT_PROBABILITY], vec![]),
            ],
            initializer: vec![
                onnx::float_tensor("mean", &[n], &self.mean),
                onnx::float_tensor("scale", &[n], &self.scale),
                onnx::float_tensor("weights", &[n], &self.weights),
                onnx::float_tensor("bias", &[], &[self.bias]),
                onnx::int64_tensor("feature_axis", &[1], &[1]),
            ],
            input: vec![onnx::tensor_value_info(INPUT_FEATURES, DataType::Float, &[batch(), Dim::Fixed(n)])],
            output: vec![
                onnx::tensor_value_info(OUTPUT_PROBABILITY, DataType::Float, &[batch()]),
                onnx::tensor_value_info(OUTPUT_LOGIT, DataType::Float, &[batch()]),
                onnx::tensor_value_info(OUTPUT_CONTRIBUTIONS, DataType::Float, &[batch(), Dim::Fixed(n)]),
            ],
            ..Default::default()
        };
        let spec = serde_json::to_string(&self.spec()).unwrap_or_default();
        export::model_bytes(graph, &manifest, spec)
    }
}

/// The intent model served from ONNX Runtime.
#[derive(Debug)]
pub struct IntentPredictor {
    manifest: Manifest,
    spec: IntentSpec,
    pool: SessionPool,
}

impl IntentPredictor {
    /// Loads a model exported by [`IntentModel::to_onnx`]. Checks the manifest's kind, that the
    /// model's feature schema is the one [`intent_features`] computes (version and names), and
    /// that the graph has the `features` input and the three outputs. Needs
    /// [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let manifest = read_manifest_of_kind(bytes, KIND)?;
        let spec: IntentSpec = read_spec(bytes)?;
        if spec.feature_schema_version != FEATURE_SCHEMA_VERSION || spec.features != FEATURE_NAMES {
            return Err(ModelError::InvalidModel(format!(
                "the model was trained on feature schema v{} ({} features); this build computes v{} ({} features)",
                spec.feature_schema_version,
                spec.features.len(),
                FEATURE_SCHEMA_VERSION,
                N_FEATURES
            )));
        }
        let pool = SessionPool::load(bytes, opts)?;
        check_io(
            &manifest,
            &pool,
            &[INPUT_FEATURES],
            &[OUTPUT_PROBABILITY, OUTPUT_LOGIT, OUTPUT_CONTRIBUTIONS],
        )?;
        Ok(Self { manifest, spec, pool })
    }

    /// [`IntentPredictor::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        Self::load(&export::read_file(path)?, opts)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn spec(&self) -> &IntentSpec {
        &self.spec
    }

    /// Feature names, in row order.
    pub fn feature_names(&self) -> &[String] {
        &self.spec.features
    }

    /// Predicts a batch of rows in one run. An empty batch returns nothing without running;
    /// a non-finite value is [`ModelError::InvalidInput`].
    pub async fn predict(&self, batch: &[[f32; N_FEATURES]]) -> Result<Vec<IntentPrediction>> {
        self.predict_until(batch, None).await
    }

    /// [`IntentPredictor::predict`] for a caller that waits until `deadline`
    /// ([`SessionPool::run_until`]).
    pub async fn predict_until(
        &self,
        batch: &[[f32; N_FEATURES]],
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<IntentPrediction>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(r) = batch.iter().position(|row| row.iter().any(|v| !v.is_finite())) {
            return Err(ModelError::InvalidInput(format!("row {r} has a non-finite feature")));
        }
        let b = batch.len();
        let data: Vec<f32> = batch.iter().flatten().copied().collect();
        let mut out = self
            .pool
            .run_until(
                vec![(INPUT_FEATURES.to_owned(), InputTensor::F32 { shape: vec![b, N_FEATURES], data })],
                "intent",
                deadline,
            )
            .await?;
        let probability = take_f32(&mut out, OUTPUT_PROBABILITY, b)?;
        let logit = take_f32(&mut out, OUTPUT_LOGIT, b)?;
        let contributions = take_f32(&mut out, OUTPUT_CONTRIBUTIONS, b * N_FEATURES)?;
        Ok((0..b)
            .map(|r| IntentPrediction {
                probability: probability[r],
                logit: logit[r],
                contributions: contributions[r * N_FEATURES..(r + 1) * N_FEATURES].to_vec(),
            })
            .collect())
    }

    /// Predicts one session from what the feature store returned for it and its user.
    pub async fn predict_session(
        &self,
        session: &SessionFeatures,
        user: &UserFeatures,
        now: UnixMillis,
    ) -> Result<IntentPrediction> {
        let mut out = self.predict(&[intent_features(session, user, now)]).await?;
        out.pop().ok_or_else(|| ModelError::Runtime("the model returned no row".into()))
    }
}

/// Counts of samples per label, for reports.
pub fn label_counts(samples: &[IntentSample]) -> BTreeMap<bool, usize> {
    let mut counts = BTreeMap::new();
    for s in samples {
        *counts.entry(s.label).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_match_the_row() {
        assert_eq!(FEATURE_NAMES.len(), N_FEATURES);
        let distinct: BTreeSet<&str> = FEATURE_NAMES.iter().copied().collect();
        assert_eq!(distinct.len(), N_FEATURES);
    }

    #[test]
    fn features_of_a_hand_built_session() {
        let mut session =
            SessionFeatures { first_ms: Some(0), last_ms: Some(5 * 60_000), ..Default::default() };
        session.counts.insert("product_viewed".into(), 3);
        session.counts.insert("added_to_cart".into(), 1);
        let mut user = UserFeatures { order_count: 1, last_order_ms: Some(0), ..Default::default() };
        user.counts.insert("product_viewed".into(), 10);
        user.counts.insert("added_to_cart".into(), 2);
        user.spend.insert("USD".into(), 1_900);
        let x = intent_features(&session, &user, UnixMillis(86_400_000));
        let ln = |v: f64| v.ln_1p() as f32;
        assert_eq!(x[0], ln(3.0));
        assert_eq!(x[1], ln(1.0));
        assert_eq!(x[2], 0.0);
        assert_eq!(x[4], 1.0, "one add, no removal: the cart is open");
        assert_eq!(x[5], ln(5.0));
        assert_eq!(x[9], ln(1.0));
        assert_eq!(x[10], 1.0);
        assert_eq!(x[11], ln(1.0), "one day since the order");
        assert_eq!(x[12], 0.5, "(1 + 1) / (2 + 2)");
        assert_eq!(x[13], 3.0 / 20.0);
        assert_eq!(x[14], ln(19.0));
        // Nothing known: a row of zeros except the smoothed rates.
        let empty = intent_features(&SessionFeatures::default(), &UserFeatures::default(), UnixMillis(0));
        assert_eq!(empty[12], 0.5);
        assert_eq!(empty[13], 0.1);
        assert!(empty.iter().enumerate().all(|(i, v)| i == 12 || i == 13 || *v == 0.0));
    }

    /// Rows from a seeded generator: two informative features and one of noise.
    fn rule_data(m: usize, seed: u64) -> (Vec<f32>, Vec<bool>) {
        let mut state = seed;
        let mut unit = || {
            state = splitmix(state);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..m {
            let (a, b, noise) = (unit() * 4.0 - 2.0, unit() * 10.0, unit());
            rows.extend([a as f32, b as f32, noise as f32]);
            // The rule: 2a - 0.5(b - 5) > 0.
            labels.push(2.0 * a - 0.5 * (b - 5.0) > 0.0);
        }
        (rows, labels)
    }

    #[test]
    fn logistic_regression_recovers_a_separable_rule() {
        let (rows, labels) = rule_data(2000, 1);
        let names = vec!["a".into(), "b".into(), "noise".into()];
        let model =
            fit(&rows, 3, &labels, names, &IntentConfig { l2: 1e-3, ..IntentConfig::default() }).unwrap();
        // Direction of the rule in raw units: w_a / scale_a : w_b / scale_b = 2 : -0.5.
        let raw_a = f64::from(model.weights[0] / model.scale[0]);
        let raw_b = f64::from(model.weights[1] / model.scale[1]);
        let raw_noise = f64::from(model.weights[2] / model.scale[2]);
        assert!(raw_a > 0.0 && raw_b < 0.0, "{raw_a} {raw_b}");
        assert!((raw_b / raw_a + 0.25).abs() < 0.03, "ratio {}", raw_b / raw_a);
        assert!(raw_noise.abs() < 0.05 * raw_a.abs(), "noise weight {raw_noise} vs {raw_a}");
        // It classifies fresh data from the same rule almost perfectly.
        let (test, test_labels) = rule_data(1000, 2);
        let correct = test
            .chunks(3)
            .zip(&test_labels)
            .filter(|(x, y)| (model.predict_row(x).probability > 0.5) == **y)
            .count();
        assert!(correct >= 985, "{correct}/1000");
        // Contributions add up to the logit.
        let p = model.predict_row(&test[..3]);
        assert!((p.contributions.iter().sum::<f32>() + model.bias - p.logit).abs() < 1e-5);
    }

    #[test]
    fn fit_rejects_degenerate_data() {
        let names = || vec!["x".to_string()];
        let cfg = IntentConfig::default();
        assert!(matches!(fit(&[], 1, &[], names(), &cfg), Err(ModelError::Training(_))));
        assert!(matches!(fit(&[1.0, 2.0], 1, &[true, true], names(), &cfg), Err(ModelError::Training(_))));
        assert!(matches!(
            fit(&[1.0, f32::NAN], 1, &[true, false], names(), &cfg),
            Err(ModelError::Training(_))
        ));
        // A constant feature gets no weight and does not break the fit.
        let m = fit(&[3.0, 3.0, 3.0, 3.0], 1, &[true, false, false, true], names(), &cfg).unwrap();
        assert_eq!(m.weights, vec![0.0]);
        assert_eq!(m.scale, vec![1.0]);
        assert!(m.bias.abs() < 1e-6);
    }

    #[test]
    fn top_contributions_sort_by_magnitude() {
        let p = IntentPrediction { probability: 0.5, logit: 0.0, contributions: vec![0.1, -2.0, 0.5] };
        assert_eq!(p.top(&["a", "b", "c"], 2), vec![("b", -2.0), ("c", 0.5)]);
    }
}
