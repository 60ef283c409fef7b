//! Personalised retrieval embeddings from implicit feedback, scored from the user's recent history.
//!
//! Every item has two vectors of `dim` floats, a *history* embedding `Q_i` (what having touched
//! `i` says about a user) and an *item* embedding `P_j` (what `j` offers), and a bias `b_j`. A user
//! is the weighted mean of the history embeddings of their recent interactions, and an item's
//! score is a dot product:
//!
//! ```text
//! u        = Σ_k w_k Q[h_k] / max(Σ_k w_k, 1e-6)
//! score_j  = u · P_j + b_j
//! ```
//!
//! The weights are the caller's: [`EmbeddingModel::recent_history`] gives the ones the model was
//! trained with, `decay^r` for the `r`-th most recent of the last `history_len` interactions.
//! Because the user vector is computed from the history at scoring time (inside the ONNX graph,
//! [`EmbeddingModel::to_onnx`], and by [`Factors::user_vector`] for the ANN query that picks the
//! candidates), an interaction from a second ago changes the next answer without retraining. The
//! graph scores only the candidates it is given (`candidate_items`), not the whole catalog.
//!
//! **Training** ([`train`]) is transition-aware: for each user's interactions in time order and
//! every position `t > 0`, the context is the decayed mean of the history embeddings of the up to
//! `history_len` interactions before `t`, exactly as it will be computed when serving, and the
//! target is the item at `t` (or one drawn from the next `target_window` items). The loss is a
//! sampled softmax over the target and `negatives` items drawn uniformly, minimised by SGD with
//! a learning rate decaying linearly to zero, L2 on the rows touched. Single-threaded and seeded: the same interactions in the same order and the same
//! config give the same model, bit for bit.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use shopmind_onnx::{self as onnx, DataType, Dim, Manifest, TensorSpec, TrainingStats};

use crate::covisit::{TrainingInteraction, weighted_row_sum};
use crate::error::{Result, TrainingError};
use crate::interning::{Ids, InputSpan};
use crate::rng::SplitMix64;

/// Model family name written to [`Manifest::kind`].
pub const KIND: &str = "embedding";
/// Graph input: item indices of the histories, int64 `[batch, history]`.
pub const INPUT_ITEMS: &str = "history_items";
/// Graph input: weight of each history entry, float `[batch, history]`; 0 marks padding.
pub const INPUT_WEIGHTS: &str = "history_weights";
/// Graph input: the items to score, int64 `[batch, candidates]`. Pad a shorter row with any valid
/// index (0) and ignore its scores; every item (`0..n_items`) is the brute-force candidate list.
pub const INPUT_CANDIDATES: &str = "candidate_items";
/// Graph output: one score per candidate, float `[batch, candidates]`.
pub const OUTPUT_CANDIDATE_SCORES: &str = "candidate_scores";
/// The output older exports (which scored every item, `[batch, n_items]`) had instead of
/// [`OUTPUT_CANDIDATE_SCORES`]; such a file is refused at load ("train it again").
pub const LEGACY_OUTPUT_SCORES: &str = "scores";
/// Graph output: the user vectors, float `[batch, dim]`.
pub const OUTPUT_USER_VECTORS: &str = "user_vectors";
/// Symbolic dimensions of the inputs.
pub const BATCH_DIM: &str = "batch";
pub const HISTORY_DIM: &str = "history";
pub const CANDIDATES_DIM: &str = "candidates";
/// Initializer: the item embeddings `P`, float `[n_items, dim]` (what an ANN index is built on).
pub const ITEM_EMBEDDINGS: &str = "item_embeddings";
/// Initializer: the history embeddings `Q`, float `[n_items, dim]`.
pub const HISTORY_EMBEDDINGS: &str = "history_embeddings";
/// Initializer: the item biases `b`, float `[n_items]`.
pub const ITEM_BIAS: &str = "item_bias";
/// The `metadata_props` key of the [`EmbeddingInfo`] JSON (next to the [`Manifest`]).
pub const EMBEDDING_KEY: &str = "shopmind.embedding";
/// The floor of the weight total the user vector is divided by.
pub const WEIGHT_EPSILON: f32 = 1e-6;

/// Training parameters. The defaults are the values chosen on ml-100k's validation split
/// (docs/EVALUATION.md).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EmbeddingConfig {
    /// Floats per embedding.
    pub dim: usize,
    /// Passes over the training positions.
    pub epochs: usize,
    /// Items sampled uniformly per target for the sampled softmax.
    pub negatives: usize,
    /// Initial SGD step; decays linearly to 0 over training.
    pub learning_rate: f32,
    /// L2 penalty applied to each row an update touches.
    pub regularization: f32,
    /// Weight ratio of consecutive history entries: the `r`-th most recent weighs `decay^r`.
    pub history_decay: f32,
    /// Only the `history_len` most recent interactions make the user vector.
    pub history_len: usize,
    /// The target of the context before position `t` is drawn uniformly from the next
    /// `target_window` interactions (`t`, `t+1`, ...): 1 learns the next item only, larger
    /// windows learn what comes soon after.
    #[serde(default = "one")]
    pub target_window: usize,
    pub seed: u64,
}

fn one() -> usize {
    1
}

impl Default for EmbeddingConfig {
    fn default() -> Self {
        Self {
            dim: 64,
            epochs: 30,
            negatives: 64,
            learning_rate: 0.05,
            regularization: 1e-4,
            history_decay: 0.9,
            history_len: 50,
            target_window: 1,
            seed: 1,
        }
    }
}

/// What the ONNX file says about the embedding model besides the [`Manifest`]; JSON under
/// [`EMBEDDING_KEY`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct EmbeddingInfo {
    pub dim: usize,
    /// How callers should weight a history (see [`EmbeddingModel::recent_history`]).
    pub history_decay: f32,
    pub history_len: usize,
    /// The hyperparameters it was trained with.
    pub config: EmbeddingConfig,
    /// Offline metrics, e.g. `"ndcg@10"`, if an evaluation measured them.
    #[serde(default)]
    pub offline_metrics: BTreeMap<String, f64>,
}

/// The learned parameters, items by index, rows of `dim` floats.
#[derive(Clone, Debug, PartialEq)]
pub struct Factors {
    pub dim: usize,
    pub history_embeddings: Vec<f32>,
    pub item_embeddings: Vec<f32>,
    pub item_bias: Vec<f32>,
}

/// A trained embedding model; `items[i]` is row `i` of every matrix.
#[derive(Clone, Debug)]
pub struct EmbeddingModel {
    pub items: Vec<String>,
    pub factors: Factors,
    pub config: EmbeddingConfig,
    pub stats: TrainingStats,
    /// Written into the exported file's [`EmbeddingInfo`].
    pub offline_metrics: BTreeMap<String, f64>,
    index: HashMap<String, usize>,
}

impl PartialEq for EmbeddingModel {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items
            && self.factors == other.factors
            && self.config == other.config
            && self.stats == other.stats
            && self.offline_metrics == other.offline_metrics
    }
}

/// The weights the model is trained with for a history of `len` interactions, oldest first:
/// `decay^(len-1-k)` for the last `history_len`, 0 for older ones.
pub fn recency_weights(len: usize, decay: f32, history_len: usize) -> Vec<f32> {
    let mut w = vec![0f32; len];
    let mut v = 1f32;
    for slot in w.iter_mut().rev().take(history_len) {
        *slot = v;
        v *= decay;
    }
    w
}

/// Trains the model on interactions. Per user, interactions are ordered by `at_ms`, ties in input
/// order. The vocabulary is every item, most interactions first (ties: id ascending); users are
/// visited in id order, so the model does not depend on how users interleave in the input.
pub fn train(
    interactions: impl IntoIterator<Item = TrainingInteraction>,
    cfg: &EmbeddingConfig,
) -> EmbeddingModel {
    train_with_progress(interactions, cfg, &mut |_, _| {})
}

/// [`train`], calling `progress(epochs done, epochs)` after each epoch.
pub fn train_with_progress(
    interactions: impl IntoIterator<Item = TrainingInteraction>,
    cfg: &EmbeddingConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> EmbeddingModel {
    let interned = Interned::from_interactions(interactions);
    let factors = train_sequences_with_progress(&interned.sequences, interned.items.len(), cfg, progress);
    EmbeddingModel::from_parts(interned.items, factors, cfg.clone(), interned.stats)
}

/// Interactions turned into per-user item-index sequences: what training reads.
#[derive(Clone, Debug, Default)]
pub struct Interned {
    /// Item ids, most interactions first (ties: id ascending).
    pub items: Vec<String>,
    /// Per user (users in id order), item indices in time order.
    pub sequences: Vec<Vec<u32>>,
    pub stats: TrainingStats,
}

impl Interned {
    /// Interns ids and orders each user's interactions by `at_ms` (stable: ties keep input order).
    pub fn from_interactions(interactions: impl IntoIterator<Item = TrainingInteraction>) -> Self {
        let mut span = InputSpan::default();
        let (mut item_ids, mut user_ids) = (Ids::default(), Ids::default());
        let mut counts: Vec<u64> = Vec::new();
        let mut per_user: Vec<Vec<(i64, u32)>> = Vec::new();
        for ev in interactions {
            span.observe(ev.at_ms);
            let (item, new_item) = item_ids.intern(ev.item);
            if new_item {
                counts.push(0);
            }
            counts[item] += 1;
            let (user, new_user) = user_ids.intern(ev.user);
            if new_user {
                per_user.push(Vec::new());
            }
            per_user[user].push((ev.at_ms, item as u32));
        }
        let stats = span.stats(per_user.len());
        let mut item_names = item_ids.into_names();
        let mut users: Vec<(String, Vec<(i64, u32)>)> =
            user_ids.into_names().into_iter().zip(per_user).collect();
        let mut ranked: Vec<u32> = (0..item_names.len() as u32).collect();
        ranked.sort_by(|&a, &b| {
            counts[b as usize]
                .cmp(&counts[a as usize])
                .then_with(|| item_names[a as usize].cmp(&item_names[b as usize]))
        });
        let mut new_index = vec![0u32; item_names.len()];
        for (new, &old) in ranked.iter().enumerate() {
            new_index[old as usize] = new as u32;
        }
        users.sort_by(|a, b| a.0.cmp(&b.0));
        let sequences = users
            .into_iter()
            .map(|(_, mut events)| {
                events.sort_by_key(|&(at, _)| at);
                events.into_iter().map(|(_, item)| new_index[item as usize]).collect()
            })
            .collect();
        let items = ranked.iter().map(|&old| std::mem::take(&mut item_names[old as usize])).collect();
        Self { items, sequences, stats }
    }
}

/// Trains the factors on `sequences[u]` = user `u`'s item indices (`< n_items`) in time order;
/// see the module docs. Indices out of range are skipped.
pub fn train_sequences(sequences: &[Vec<u32>], n_items: usize, cfg: &EmbeddingConfig) -> Factors {
    train_sequences_with_progress(sequences, n_items, cfg, &mut |_, _| {})
}

/// [`train_sequences`], calling `progress(epochs done, epochs)` after each epoch.
pub fn train_sequences_with_progress(
    sequences: &[Vec<u32>],
    n_items: usize,
    cfg: &EmbeddingConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> Factors {
    let d = cfg.dim.max(1);
    let mut rng = SplitMix64::new(cfg.seed);
    let scale = 0.5 / d as f32;
    let mut init = |len: usize| -> Vec<f32> { (0..len).map(|_| (rng.unit_f32() - 0.5) * scale).collect() };
    let mut q = init(n_items * d);
    let mut p = init(n_items * d);
    let mut bias = vec![0f32; n_items];
    let clean: Vec<Vec<u32>> =
        sequences.iter().map(|s| s.iter().copied().filter(|&i| (i as usize) < n_items).collect()).collect();
    let mut examples: Vec<(u32, u32)> = Vec::new();
    for (u, seq) in clean.iter().enumerate() {
        for t in 1..seq.len() {
            examples.push((u as u32, t as u32));
        }
    }
    if n_items == 0 || examples.is_empty() || cfg.history_len == 0 {
        progress(cfg.epochs, cfg.epochs);
        return Factors { dim: d, history_embeddings: q, item_embeddings: p, item_bias: bias };
    }

    let k = cfg.negatives;
    let total_steps = (cfg.epochs * examples.len()).max(1) as f32;
    let mut step = 0usize;
    let mut ctx = vec![0f32; d];
    let mut grad_ctx = vec![0f32; d];
    let mut weights = Vec::with_capacity(cfg.history_len);
    let mut cand = vec![0u32; k + 1];
    let mut logits = vec![0f32; k + 1];
    let reg = cfg.regularization;
    for epoch in 0..cfg.epochs {
        rng.shuffle(&mut examples);
        for &(u, t) in &examples {
            let lr = cfg.learning_rate * (1.0 - step as f32 / total_steps).max(1e-4);
            step += 1;
            let seq = &clean[u as usize];
            let t = t as usize;
            let start = t.saturating_sub(cfg.history_len);
            let context = &seq[start..t];
            // Context: the decayed, normalised mean of the history embeddings before t.
            weights.clear();
            let mut w = 1f32;
            let mut total = 0f32;
            for _ in context {
                weights.push(w);
                total += w;
                w *= cfg.history_decay;
            }
            weights.reverse();
            let total = total.max(WEIGHT_EPSILON);
            for w in &mut weights {
                *w /= total;
            }
            ctx.iter_mut().for_each(|v| *v = 0.0);
            for (&item, &w) in context.iter().zip(&weights) {
                let row = &q[item as usize * d..(item as usize + 1) * d];
                for (c, &r) in ctx.iter_mut().zip(row) {
                    *c += w * r;
                }
            }
            // Candidates: the target, then uniform negatives other than the target.
            let ahead = cfg.target_window.max(1).min(seq.len() - t);
            let target = if ahead > 1 { seq[t + rng.below(ahead)] } else { seq[t] };
            cand[0] = target;
            for c in cand.iter_mut().skip(1) {
                let mut j = rng.below(n_items) as u32;
                if j == target && n_items > 1 {
                    j = ((j as usize + 1 + rng.below(n_items - 1)) % n_items) as u32;
                }
                *c = j;
            }
            let mut max = f32::NEG_INFINITY;
            for (l, &j) in logits.iter_mut().zip(&cand) {
                let row = &p[j as usize * d..(j as usize + 1) * d];
                *l = crate::als::dot(&ctx, row) + bias[j as usize];
                max = max.max(*l);
            }
            let mut sum = 0f32;
            for l in logits.iter_mut() {
                *l = (*l - max).exp();
                sum += *l;
            }
            // logits now hold the softmax gradient: p_c - [c is the target].
            for (c, l) in logits.iter_mut().enumerate() {
                *l = *l / sum - if c == 0 { 1.0 } else { 0.0 };
            }
            grad_ctx.iter_mut().for_each(|v| *v = 0.0);
            for (&g, &j) in logits.iter().zip(&cand) {
                let row = &mut p[j as usize * d..(j as usize + 1) * d];
                for ((gc, r), &c) in grad_ctx.iter_mut().zip(row.iter_mut()).zip(&ctx) {
                    *gc += g * *r;
                    *r -= lr * (g * c + reg * *r);
                }
                bias[j as usize] -= lr * g;
            }
            for (&item, &w) in context.iter().zip(&weights) {
                let row = &mut q[item as usize * d..(item as usize + 1) * d];
                for (r, &g) in row.iter_mut().zip(&grad_ctx) {
                    *r -= lr * (w * g + reg * *r);
                }
            }
        }
        progress(epoch + 1, cfg.epochs);
    }
    Factors { dim: d, history_embeddings: q, item_embeddings: p, item_bias: bias }
}

impl Factors {
    /// Number of items.
    pub fn len(&self) -> usize {
        self.item_bias.len()
    }

    pub fn is_empty(&self) -> bool {
        self.item_bias.is_empty()
    }

    /// `u = Σ_k w_k Q[h_k] / max(Σ_k w_k, 1e-6)`; entries out of range are ignored.
    pub fn user_vector(&self, history: &[(usize, f32)]) -> Vec<f32> {
        let d = self.dim;
        let n = self.len();
        let mut u = vec![0f32; d];
        let mut total = 0f32;
        for &(i, w) in history {
            if i >= n {
                continue;
            }
            total += w;
            for (x, &q) in u.iter_mut().zip(&self.history_embeddings[i * d..(i + 1) * d]) {
                *x += w * q;
            }
        }
        let denom = total.max(WEIGHT_EPSILON);
        u.iter_mut().for_each(|x| *x /= denom);
        u
    }

    /// `u · P_j + b_j` of each candidate `j` (what the graph's `candidate_scores` holds); an index
    /// out of range scores `-inf`.
    pub fn candidate_scores(&self, user: &[f32], candidates: &[usize]) -> Vec<f32> {
        let d = self.dim.max(1);
        candidates
            .iter()
            .map(|&j| match (self.item_embeddings.get(j * d..(j + 1) * d), self.item_bias.get(j)) {
                (Some(row), Some(&b)) => crate::als::dot(user, row) + b,
                _ => f32::NEG_INFINITY,
            })
            .collect()
    }

    /// `scores_j = u · P_j + b_j` for a user vector.
    pub fn scores_for(&self, user: &[f32]) -> Vec<f32> {
        self.item_embeddings
            .chunks_exact(self.dim.max(1))
            .zip(&self.item_bias)
            .map(|(row, &b)| crate::als::dot(user, row) + b)
            .collect()
    }

    /// The reference scorer: [`Factors::scores_for`] of [`Factors::user_vector`].
    pub fn score(&self, history: &[(usize, f32)]) -> Vec<f32> {
        self.scores_for(&self.user_vector(history))
    }
}

fn build_index(items: &[String]) -> HashMap<String, usize> {
    items.iter().enumerate().map(|(i, item)| (item.clone(), i)).collect()
}

impl EmbeddingModel {
    /// A model from trained factors over `items` (one row per item).
    pub fn from_parts(
        items: Vec<String>,
        factors: Factors,
        config: EmbeddingConfig,
        stats: TrainingStats,
    ) -> Self {
        let index = build_index(&items);
        Self { items, factors, config, stats, offline_metrics: BTreeMap::new(), index }
    }

    /// Checks shapes and ids; use for factors that did not come from [`train`].
    pub fn new(
        items: Vec<String>,
        factors: Factors,
        config: EmbeddingConfig,
        stats: TrainingStats,
    ) -> Result<Self> {
        let (n, d) = (items.len(), factors.dim);
        if d == 0
            || factors.history_embeddings.len() != n * d
            || factors.item_embeddings.len() != n * d
            || factors.item_bias.len() != n
        {
            return Err(TrainingError::InvalidModel(format!(
                "factors do not fit {n} items of dimension {d}"
            )));
        }
        let model = Self::from_parts(items, factors, config, stats);
        if model.index.len() != n {
            return Err(TrainingError::InvalidModel("item ids are not distinct".into()));
        }
        Ok(model)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn dim(&self) -> usize {
        self.factors.dim
    }

    pub fn index_of(&self, item: &str) -> Option<usize> {
        self.index.get(item).copied().filter(|&i| self.items.get(i).is_some_and(|s| s == item))
    }

    /// The item embedding `P_i` (what an ANN index is built on).
    pub fn item_embedding(&self, i: usize) -> Option<&[f32]> {
        let d = self.factors.dim;
        self.factors.item_embeddings.get(i * d..(i + 1) * d)
    }

    /// The history to pass for a user whose interactions are `items`, oldest first: the last
    /// `history_len` of them, weighted `decay^r` for the `r`-th most recent. This is the weighting
    /// the model was trained with.
    pub fn recent_history(&self, items: &[usize]) -> Vec<(usize, f32)> {
        let start = items.len().saturating_sub(self.config.history_len);
        let w = recency_weights(items.len() - start, self.config.history_decay, self.config.history_len);
        items[start..].iter().copied().zip(w).collect()
    }

    /// The user vector of a weighted history, as the graph computes it.
    pub fn user_vector(&self, history: &[(usize, f32)]) -> Vec<f32> {
        self.factors.user_vector(history)
    }

    /// The reference scorer, in plain Rust; the exported graph computes the same function.
    pub fn score(&self, history: &[(usize, f32)]) -> Vec<f32> {
        self.factors.score(history)
    }

    /// The [`EmbeddingInfo`] written next to the manifest.
    pub fn info(&self) -> EmbeddingInfo {
        EmbeddingInfo {
            dim: self.factors.dim,
            history_decay: self.config.history_decay,
            history_len: self.config.history_len,
            config: self.config.clone(),
            offline_metrics: self.offline_metrics.clone(),
        }
    }

    /// The manifest [`EmbeddingModel::to_onnx`] embeds, given the caller's identity fields.
    pub fn manifest(&self, name: &str, version: &str, tenant: &str, created_at_ms: i64) -> Manifest {
        let (hist, cands) = ([BATCH_DIM, HISTORY_DIM], [BATCH_DIM, CANDIDATES_DIM]);
        let dim = self.factors.dim.to_string();
        Manifest {
            items: self.items.clone(),
            stats: self.stats,
            inputs: vec![
                TensorSpec::new(INPUT_ITEMS, "int64", &hist),
                TensorSpec::new(INPUT_WEIGHTS, "float32", &hist),
                TensorSpec::new(INPUT_CANDIDATES, "int64", &cands),
            ],
            outputs: vec![
                TensorSpec::new(OUTPUT_CANDIDATE_SCORES, "float32", &cands),
                TensorSpec::new(OUTPUT_USER_VECTORS, "float32", &[BATCH_DIM, &dim]),
            ],
            ..Manifest::new(name, KIND, version, tenant, created_at_ms)
        }
    }

    /// Exports the model as ONNX (IR 8, opset 17). The graph, for `B` histories of `H` entries and
    /// `C` candidates each (the second stage of recommend: it scores only the items it is given):
    ///
    /// ```text
    /// history_embeddings [n,d] ─ Gather(history_items [B,H]) ─ [B,H,d] ─┐
    /// history_weights [B,H] ─ Unsqueeze(2) ─ [B,H,1] ────────────────── Mul ─ ReduceSum(1) ─ [B,d] ─┐
    /// history_weights ─ ReduceSum(1, keepdims) ─ Max(1e-6) ─ [B,1] ───────────────────────────── Div
    ///   ─ user_vectors [B,d]
    /// If every row of candidate_items [B,C] is exactly 0..n (C = n, brute force):
    ///   Gemm(user_vectors, item_embeddings [n,d], transB=1, item_bias [n]) ─ candidate_scores [B,n]
    /// else:
    ///   user_vectors ─ Unsqueeze(2) ─ [B,d,1] ─┐
    ///   item_embeddings ─ Gather(candidate_items) ─ [B,C,d] ─ MatMul ─ [B,C,1] ─ Squeeze(2) ─┐
    ///   item_bias ─ Gather(candidate_items) ─ [B,C] ────────────────────────────────────── Add
    ///     ─ candidate_scores [B,C]
    /// ```
    ///
    /// Brute force is the same graph with every item as a candidate; the `If` (its condition is
    /// `C = n` and an `Equal` of the ids with `Range(0, C)`, cheap next to the product) lets it read
    /// the item matrix once per batch instead of gathering it for every row. Both branches compute
    /// `u · P_c + b_c`, so the branch never changes an answer.
    ///
    /// `kind`, `items`, `stats`, `inputs` and `outputs` of the embedded manifest always describe
    /// this model; the rest comes from `manifest`. [`EmbeddingInfo`] goes under [`EMBEDDING_KEY`].
    pub fn to_onnx(&self, manifest: &Manifest) -> Vec<u8> {
        let n = self.items.len() as i64;
        let d = self.factors.dim as i64;
        let manifest = Manifest {
            metrics: manifest.metrics.clone(),
            ..self.manifest(&manifest.name, &manifest.version, &manifest.tenant, manifest.created_at_ms)
        };
        // Serialising a struct of strings, numbers, maps and vectors cannot fail.
        let info_json = serde_json::to_string(&self.info()).unwrap_or_default();
        let bh = [Dim::Symbolic(BATCH_DIM.into()), Dim::Symbolic(HISTORY_DIM.into())];
        let bc = [Dim::Symbolic(BATCH_DIM.into()), Dim::Symbolic(CANDIDATES_DIM.into())];
        let graph = onnx::GraphProto {
            name: "embedding".into(),
            node: [
                weighted_row_sum(
                    HISTORY_EMBEDDINGS,
                    "history_rows",
                    ("axis_2", "weights_3d"),
                    "axis_1",
                    "weighted_sum",
                ),
                vec![
                    onnx::node(
                        "ReduceSum",
                        &[INPUT_WEIGHTS, "axis_1"],
                        &["weight_total"],
                        vec![onnx::attr_int("keepdims", 1)],
                    ),
                    onnx::node("Max", &["weight_total", "epsilon"], &["weight_denominator"], vec![]),
                    onnx::node(
                        "Div",
                        &["weighted_sum", "weight_denominator"],
                        &[OUTPUT_USER_VECTORS],
                        vec![],
                    ),
                    // Brute force (every row's candidates are exactly 0..n): one Gemm with the item
                    // matrix, which reads it once per batch; otherwise a Gather of the candidates.
                    onnx::node("Shape", &[INPUT_CANDIDATES], &["candidate_shape"], vec![]),
                    onnx::node(
                        "Gather",
                        &["candidate_shape", "one"],
                        &["candidate_width"],
                        vec![onnx::attr_int("axis", 0)],
                    ),
                    onnx::node("Equal", &["candidate_width", "n_items"], &["width_is_catalog"], vec![]),
                    onnx::node("Range", &["zero", "candidate_width", "one"], &["positions"], vec![]),
                    onnx::node("Equal", &[INPUT_CANDIDATES, "positions"], &["in_place"], vec![]),
                    onnx::node(
                        "Cast",
                        &["in_place"],
                        &["in_place_int"],
                        vec![onnx::attr_int("to", DataType::Int64 as i64)],
                    ),
                    onnx::node(
                        "ReduceMin",
                        &["in_place_int"],
                        &["all_in_place_int"],
                        vec![onnx::attr_int("keepdims", 0)],
                    ),
                    onnx::node("Equal", &["all_in_place_int", "one"], &["all_in_place"], vec![]),
                    onnx::node("And", &["width_is_catalog", "all_in_place"], &["every_item"], vec![]),
                    onnx::node(
                        "If",
                        &["every_item"],
                        &[OUTPUT_CANDIDATE_SCORES],
                        vec![
                            onnx::attr_graph("then_branch", every_item_branch()),
                            onnx::attr_graph("else_branch", candidates_branch()),
                        ],
                    ),
                ],
            ]
            .concat(),
            initializer: vec![
                onnx::float_tensor(HISTORY_EMBEDDINGS, &[n, d], &self.factors.history_embeddings),
                onnx::float_tensor(ITEM_EMBEDDINGS, &[n, d], &self.factors.item_embeddings),
                onnx::float_tensor(ITEM_BIAS, &[n], &self.factors.item_bias),
                onnx::float_tensor("epsilon", &[], &[WEIGHT_EPSILON]),
                onnx::int64_tensor("axis_1", &[1], &[1]),
                onnx::int64_tensor("axis_2", &[1], &[2]),
                onnx::int64_tensor("zero", &[], &[0]),
                onnx::int64_tensor("one", &[], &[1]),
                onnx::int64_tensor("n_items", &[], &[n]),
            ],
            input: vec![
                onnx::tensor_value_info(INPUT_ITEMS, DataType::Int64, &bh),
                onnx::tensor_value_info(INPUT_WEIGHTS, DataType::Float, &bh),
                onnx::tensor_value_info(INPUT_CANDIDATES, DataType::Int64, &bc),
            ],
            output: vec![
                onnx::tensor_value_info(OUTPUT_CANDIDATE_SCORES, DataType::Float, &bc),
                onnx::tensor_value_info(
                    OUTPUT_USER_VECTORS,
                    DataType::Float,
                    &[Dim::Symbolic(BATCH_DIM.into()), Dim::Fixed(d)],
                ),
            ],
            ..Default::default()
        };
        shopmind_onnx::model_file(graph, &manifest, vec![(EMBEDDING_KEY, info_json)])
    }
}

/// The `If` branch of brute force: `user_vectors · item_embeddingsᵀ + item_bias`, `[B, n]`.
fn every_item_branch() -> onnx::GraphProto {
    onnx::GraphProto {
        name: "every_item".into(),
        node: vec![onnx::node(
            "Gemm",
            &[OUTPUT_USER_VECTORS, ITEM_EMBEDDINGS, ITEM_BIAS],
            &["every_item_scores"],
            vec![onnx::attr_int("transB", 1)],
        )],
        output: vec![onnx::tensor_value_info(
            "every_item_scores",
            DataType::Float,
            &[Dim::Symbolic(BATCH_DIM.into()), Dim::Symbolic(CANDIDATES_DIM.into())],
        )],
        ..Default::default()
    }
}

/// The `If` branch of a candidate list: each row's candidates gathered from the item matrix and
/// bias, `[B, C, d] x [B, d, 1]`, plus their biases, `[B, C]`.
fn candidates_branch() -> onnx::GraphProto {
    onnx::GraphProto {
        name: "candidates".into(),
        node: vec![
            onnx::node("Unsqueeze", &[OUTPUT_USER_VECTORS, "axis_2"], &["user_columns"], vec![]),
            onnx::node(
                "Gather",
                &[ITEM_EMBEDDINGS, INPUT_CANDIDATES],
                &["candidate_rows"],
                vec![onnx::attr_int("axis", 0)],
            ),
            onnx::node("MatMul", &["candidate_rows", "user_columns"], &["candidate_products"], vec![]),
            onnx::node("Squeeze", &["candidate_products", "axis_2"], &["candidate_dots"], vec![]),
            onnx::node(
                "Gather",
                &[ITEM_BIAS, INPUT_CANDIDATES],
                &["candidate_bias"],
                vec![onnx::attr_int("axis", 0)],
            ),
            onnx::node("Add", &["candidate_dots", "candidate_bias"], &["candidate_branch_scores"], vec![]),
        ],
        output: vec![onnx::tensor_value_info(
            "candidate_branch_scores",
            DataType::Float,
            &[Dim::Symbolic(BATCH_DIM.into()), Dim::Symbolic(CANDIDATES_DIM.into())],
        )],
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;

    use super::*;
    use crate::test_support::view as ev;

    fn small_cfg() -> EmbeddingConfig {
        EmbeddingConfig { dim: 8, epochs: 30, negatives: 5, learning_rate: 0.1, ..EmbeddingConfig::default() }
    }

    /// Users walk one of two cycles a->b->c->a and x->y->z->x; the model must predict the
    /// successor of the most recent item, which only a transition-aware, recency-weighted model can.
    fn cycles() -> Vec<TrainingInteraction> {
        let mut data = Vec::new();
        for u in 0..30 {
            let cycle = if u % 2 == 0 { ["a", "b", "c"] } else { ["x", "y", "z"] };
            for t in 0..9 {
                data.push(ev(&format!("u{u:02}"), cycle[(u + t) % 3], t as i64));
            }
        }
        data
    }

    #[test]
    fn learns_transitions_from_the_most_recent_item() {
        let m = train(cycles(), &EmbeddingConfig { history_decay: 0.3, ..small_cfg() });
        assert_eq!(m.len(), 6);
        for (last, next) in [("a", "b"), ("b", "c"), ("c", "a"), ("x", "y"), ("y", "z"), ("z", "x")] {
            // A long history of the other cycle, then `last`: recency must win.
            let other = if "abc".contains(last) { ["x", "y", "z"] } else { ["a", "b", "c"] };
            let mut items: Vec<usize> = other.iter().map(|i| m.index_of(i).unwrap()).collect();
            items.push(m.index_of(last).unwrap());
            let history = m.recent_history(&items);
            let scores = m.score(&history);
            let best = (0..scores.len()).max_by(|&x, &y| scores[x].total_cmp(&scores[y])).unwrap();
            assert_eq!(m.items[best], next, "after {last}: {scores:?}");
        }
    }

    #[test]
    fn training_and_export_are_deterministic_and_seeded() {
        let a = train(cycles(), &small_cfg());
        let mut shuffled = cycles();
        shuffled.reverse();
        shuffled.sort_by_key(|e| e.at_ms); // users interleave differently, per-user order kept
        let b = train(shuffled, &small_cfg());
        assert_eq!(a, b);
        let manifest = a.manifest("recommender", "v1", "acme", 5);
        assert_eq!(a.to_onnx(&manifest), b.to_onnx(&manifest));
        let c = train(cycles(), &EmbeddingConfig { seed: 2, ..small_cfg() });
        assert_ne!(a.factors, c.factors);
    }

    #[test]
    fn recency_weights_decay_and_cut_off() {
        assert_eq!(recency_weights(4, 0.5, 3), vec![0.0, 0.25, 0.5, 1.0]);
        assert_eq!(recency_weights(0, 0.5, 3), Vec::<f32>::new());
        let m = train(cycles(), &EmbeddingConfig { history_len: 2, ..small_cfg() });
        assert_eq!(m.recent_history(&[5, 4, 3]), vec![(4, 0.9), (3, 1.0)]);
    }

    #[test]
    fn user_vector_is_a_weighted_mean_and_padding_is_free() {
        let f = Factors {
            dim: 2,
            history_embeddings: vec![1.0, 0.0, 0.0, 2.0, 4.0, 4.0],
            item_embeddings: vec![1.0, 1.0, 1.0, -1.0, 0.0, 0.0],
            item_bias: vec![0.0, 0.5, -1.0],
        };
        // (1*[1,0] + 3*[0,2]) / 4 = [0.25, 1.5]
        let u = f.user_vector(&[(0, 1.0), (1, 3.0)]);
        assert_eq!(u, vec![0.25, 1.5]);
        assert_eq!(f.user_vector(&[(0, 1.0), (1, 3.0), (2, 0.0), (99, 7.0)]), u);
        assert_eq!(f.score(&[(0, 1.0), (1, 3.0)]), vec![1.75, -1.25 + 0.5, -1.0]);
        // No history: the biases alone.
        assert_eq!(f.score(&[]), vec![0.0, 0.5, -1.0]);
        // Candidate scores: any subset, any order, repeats; out of range scores -inf.
        assert_eq!(f.candidate_scores(&u, &[2, 0, 0]), vec![-1.0, 1.75, 1.75]);
        assert_eq!(f.candidate_scores(&u, &[3]), vec![f32::NEG_INFINITY]);
    }

    #[test]
    fn manifest_and_info_round_trip_and_graph_has_named_initializers() {
        let mut m = train(cycles(), &small_cfg());
        m.offline_metrics.insert("ndcg@10".into(), 0.5);
        let manifest = m.manifest("recommender", "v3", "acme", 9);
        let bytes = m.to_onnx(&manifest);
        assert_eq!(shopmind_onnx::read_manifest(&bytes).unwrap(), manifest);
        let model = onnx::ModelProto::decode(bytes.as_slice()).unwrap();
        let info = model.metadata_props.iter().find(|p| p.key == EMBEDDING_KEY).unwrap();
        let info: EmbeddingInfo = serde_json::from_str(&info.value).unwrap();
        assert_eq!(info, m.info());
        assert_eq!(info.offline_metrics["ndcg@10"], 0.5);
        let graph = model.graph.unwrap();
        let init = |name: &str| graph.initializer.iter().find(|t| t.name == name).unwrap();
        assert_eq!(init(ITEM_EMBEDDINGS).dims, vec![6, 8]);
        assert_eq!(init(ITEM_EMBEDDINGS).f32_values().unwrap(), m.factors.item_embeddings);
        assert_eq!(init(ITEM_BIAS).f32_values().unwrap(), m.factors.item_bias);
        assert_eq!(m.item_embedding(1).unwrap(), &m.factors.item_embeddings[8..16]);
        // An info-less older reader still gets a plain manifest; info parses without metrics.
        let old: EmbeddingInfo =
            serde_json::from_str(r#"{"dim":2,"history_decay":0.9,"history_len":5,"config":{"dim":2,"epochs":1,"negatives":1,"learning_rate":0.1,"regularization":0.0,"history_decay":0.9,"history_len":5,"seed":1}}"#)
                .unwrap();
        assert!(old.offline_metrics.is_empty());
    }

    #[test]
    fn new_checks_shapes_and_empty_input_trains_an_empty_model() {
        let f = Factors {
            dim: 2,
            history_embeddings: vec![0.0; 4],
            item_embeddings: vec![0.0; 4],
            item_bias: vec![0.0; 2],
        };
        let ids = || vec!["a".to_owned(), "b".to_owned()];
        let cfg = EmbeddingConfig::default();
        assert!(EmbeddingModel::new(ids(), f.clone(), cfg.clone(), TrainingStats::default()).is_ok());
        assert!(
            EmbeddingModel::new(vec!["a".into()], f.clone(), cfg.clone(), TrainingStats::default()).is_err()
        );
        assert!(
            EmbeddingModel::new(vec!["a".into(), "a".into()], f, cfg.clone(), TrainingStats::default())
                .is_err()
        );
        let m = train(Vec::new(), &cfg);
        assert!(m.is_empty());
        assert!(m.score(&[(0, 1.0)]).is_empty());
    }
}
