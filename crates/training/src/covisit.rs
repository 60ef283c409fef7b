//! Item-to-item co-visitation: items seen by the same customers are similar.
//!
//! Training counts, for every ordered pair of distinct items, how many users touched both among
//! their most recent items, and normalises the count by the items' popularity:
//! `S[i][j] = C[i][j] / sqrt(users_i * users_j)`, with `S[i][i] = 0`. Scoring a history of
//! weighted items is `scores[j] = sum_k w_k * S[item_k][j]`; [`CovisitModel::to_onnx`] exports that
//! computation as an ONNX graph so it runs inside ONNX Runtime, for a batch of histories at once
//! (padded with item 0 at weight 0, which adds nothing).

use std::collections::HashMap;

use shopmind_domain::InteractionKind;
use shopmind_onnx::{self as onnx, DataType, Dim, Manifest, TensorSpec, TrainingStats};

use crate::error::{Result, TrainingError};
use crate::interning::{Ids, InputSpan};

/// Model family name written to [`Manifest::kind`].
pub const KIND: &str = "covisit";
/// Graph input: item indices of each history, int64 `[batch, history]`; padding is index 0.
pub const INPUT_ITEMS: &str = "history_items";
/// Graph input: weight of each history entry, float `[batch, history]`; padding is weight 0.
pub const INPUT_WEIGHTS: &str = "history_weights";
/// Graph output: one score per item for each history, float `[batch, n]`.
pub const OUTPUT_SCORES: &str = "scores";
/// The symbolic batch dimension of the inputs and the output.
pub const BATCH_DIM: &str = "batch";
/// The symbolic dimension of the history inputs.
pub const HISTORY_DIM: &str = "history";

/// Training parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CovisitConfig {
    /// Keep only this many items: the ones touched by the most distinct users (ties: smaller id).
    pub max_items: usize,
    /// Per user, only the `window` most recent distinct (in-vocabulary) items co-occur.
    pub window: usize,
    /// Shrinks similarities resting on few co-occurrences: each is multiplied by
    /// `c / (c + shrinkage)`, where `c` is the pair's count. 0 disables it.
    pub shrinkage: u32,
}

impl Default for CovisitConfig {
    fn default() -> Self {
        Self { max_items: 5000, window: 50, shrinkage: 0 }
    }
}

/// One interaction to learn from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingInteraction {
    pub user: String,
    pub item: String,
    /// Recorded for the manifest and future weighting; co-visitation counts every kind alike.
    pub kind: InteractionKind,
    pub at_ms: i64,
}

/// A trained co-visitation model: `items[i]` is row and column `i` of the dense, row-major
/// `n x n` similarity matrix.
#[derive(Clone, Debug)]
pub struct CovisitModel {
    pub items: Vec<String>,
    pub similarity: Vec<f32>,
    pub stats: TrainingStats,
    index: HashMap<String, usize>,
}

impl PartialEq for CovisitModel {
    fn eq(&self, other: &Self) -> bool {
        self.items == other.items && self.similarity == other.similarity && self.stats == other.stats
    }
}

/// Trains a co-visitation model. Deterministic: the same interactions in the same order give the
/// same model, bit for bit.
///
/// - Vocabulary: the `max_items` items touched by the most distinct users, ties by item id
///   ascending; `items` is in that order (most popular first).
/// - Per user, interactions are ordered by `at_ms` (ties: later in the input is more recent) and
///   the `window` most recent distinct in-vocabulary items are kept.
/// - `C[i][j]` counts the users whose kept items contain both `i` and `j` (`i != j`).
/// - `S[i][j] = C[i][j] / sqrt(users_i * users_j) * C[i][j] / (C[i][j] + shrinkage)`, where
///   `users_i` is the number of distinct users who touched `i` at all (the popularity used for the
///   vocabulary), so `0 <= S <= 1`; the shrinkage factor discounts pairs seen together rarely.
pub fn train(
    interactions: impl IntoIterator<Item = TrainingInteraction>,
    cfg: &CovisitConfig,
) -> CovisitModel {
    // Intern users and items; per user keep (at_ms, item) in input order.
    let mut span = InputSpan::default();
    let (mut items, mut users) = (Ids::default(), Ids::default());
    let mut per_user: Vec<Vec<(i64, usize)>> = Vec::new();
    for ev in interactions {
        span.observe(ev.at_ms);
        let (item, _) = items.intern(ev.item);
        let (user, new_user) = users.intern(ev.user);
        if new_user {
            per_user.push(Vec::new());
        }
        per_user[user].push((ev.at_ms, item));
    }
    let stats = span.stats(per_user.len());
    let mut item_names = items.into_names();

    // Distinct users per item.
    let mut popularity = vec![0u64; item_names.len()];
    let mut last_user = vec![usize::MAX; item_names.len()];
    for (u, events) in per_user.iter().enumerate() {
        for &(_, item) in events {
            if last_user[item] != u {
                last_user[item] = u;
                popularity[item] += 1;
            }
        }
    }

    // Vocabulary: most distinct users first, ties by id.
    let mut ranked: Vec<usize> = (0..item_names.len()).collect();
    ranked
        .sort_by(|&a, &b| popularity[b].cmp(&popularity[a]).then_with(|| item_names[a].cmp(&item_names[b])));
    ranked.truncate(cfg.max_items);
    let n = ranked.len();
    let mut vocab_of = vec![usize::MAX; item_names.len()];
    for (v, &item) in ranked.iter().enumerate() {
        vocab_of[item] = v;
    }

    // Co-occurrence counts over each user's window.
    let mut counts = vec![0u32; n * n];
    let mut seen_by = vec![usize::MAX; n];
    let mut kept: Vec<usize> = Vec::with_capacity(cfg.window.min(n));
    for (u, events) in per_user.iter_mut().enumerate() {
        // Stable: equal timestamps keep input order, so iterating backwards is most recent first.
        events.sort_by_key(|&(at, _)| at);
        kept.clear();
        for &(_, item) in events.iter().rev() {
            if kept.len() >= cfg.window {
                break;
            }
            let v = vocab_of[item];
            if v != usize::MAX && seen_by[v] != u {
                seen_by[v] = u;
                kept.push(v);
            }
        }
        for &a in &kept {
            for &b in &kept {
                if a != b {
                    counts[a * n + b] = counts[a * n + b].saturating_add(1);
                }
            }
        }
    }

    let users: Vec<f64> = ranked.iter().map(|&item| popularity[item] as f64).collect();
    let mut similarity = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let c = counts[i * n + j];
            if c > 0 {
                let c = f64::from(c);
                let shrink = c / (c + f64::from(cfg.shrinkage));
                similarity[i * n + j] = (c / (users[i] * users[j]).sqrt() * shrink) as f32;
            }
        }
    }

    let items: Vec<String> = ranked.into_iter().map(|item| std::mem::take(&mut item_names[item])).collect();
    let index = build_index(&items);
    CovisitModel { items, similarity, stats, index }
}

fn batch() -> Dim {
    Dim::Symbolic(BATCH_DIM.into())
}

fn history() -> Dim {
    Dim::Symbolic(HISTORY_DIM.into())
}

/// The nodes of `out[b] = sum_k history_weights[b][k] * table[history_items[b][k]]`, what both
/// recommenders' graphs compute from a batch of weighted histories: `Gather(axis=0)` of the
/// table's rows (`rows`, `[B,H,d]`), the weights unsqueezed along the int64 initializer
/// `unsqueeze_axes` (`[2]`) into `weights_column` (`[B,H,1]`), their product (`weighted_rows`)
/// and `ReduceSum` over the int64 initializer `reduce_axes` (`[1]`, keepdims 0) into `out`.
pub(crate) fn weighted_row_sum(
    table: &str,
    rows: &str,
    (unsqueeze_axes, weights_column): (&str, &str),
    reduce_axes: &str,
    out: &str,
) -> Vec<onnx::NodeProto> {
    vec![
        onnx::node("Gather", &[table, INPUT_ITEMS], &[rows], vec![onnx::attr_int("axis", 0)]),
        onnx::node("Unsqueeze", &[INPUT_WEIGHTS, unsqueeze_axes], &[weights_column], vec![]),
        onnx::node("Mul", &[rows, weights_column], &["weighted_rows"], vec![]),
        onnx::node("ReduceSum", &["weighted_rows", reduce_axes], &[out], vec![onnx::attr_int("keepdims", 0)]),
    ]
}

fn build_index(items: &[String]) -> HashMap<String, usize> {
    items.iter().enumerate().map(|(i, item)| (item.clone(), i)).collect()
}

impl CovisitModel {
    /// A model from its parts; `similarity` must be `items.len()^2` long and item ids distinct.
    pub fn new(items: Vec<String>, similarity: Vec<f32>, stats: TrainingStats) -> Result<Self> {
        let n = items.len();
        if similarity.len() != n * n {
            return Err(TrainingError::InvalidModel(format!(
                "similarity has {} values, expected {n} x {n}",
                similarity.len()
            )));
        }
        let index = build_index(&items);
        if index.len() != n {
            return Err(TrainingError::InvalidModel("item ids are not distinct".into()));
        }
        Ok(Self { items, similarity, stats, index })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The index of `item`, if it is in the vocabulary; a hash lookup.
    ///
    /// The lookup table is built by [`train`] and [`CovisitModel::new`]. A hit is checked against
    /// `items`, so editing `items` afterwards never yields a wrong index, but ids added by such an
    /// edit are not found: rebuild the model with [`CovisitModel::new`] instead.
    pub fn index_of(&self, item: &str) -> Option<usize> {
        match self.index.get(item) {
            Some(&i) if self.items.get(i).is_some_and(|s| s == item) => Some(i),
            Some(_) => self.items.iter().position(|s| s == item),
            None => None,
        }
    }

    /// The similarity of `a` to `b` (`S[a][b]`), 0 for indices out of range.
    pub fn similarity_of(&self, a: usize, b: usize) -> f32 {
        let n = self.items.len();
        if a < n && b < n { self.similarity.get(a * n + b).copied().unwrap_or(0.0) } else { 0.0 }
    }

    /// The reference scorer, in plain Rust: `scores[j] = sum_k w_k * S[idx_k][j]`. Entries whose
    /// index is out of range are ignored. The exported ONNX graph computes the same thing.
    pub fn score(&self, history: &[(usize, f32)]) -> Vec<f32> {
        let n = self.items.len();
        let mut scores = vec![0f32; n];
        for &(idx, w) in history {
            if idx >= n {
                continue;
            }
            let Some(row) = self.similarity.get(idx * n..(idx + 1) * n) else { continue };
            for (s, &v) in scores.iter_mut().zip(row) {
                *s += w * v;
            }
        }
        scores
    }

    /// The manifest [`CovisitModel::to_onnx`] embeds, given the caller's identity fields.
    pub fn manifest(&self, name: &str, version: &str, tenant: &str, created_at_ms: i64) -> Manifest {
        let n = self.items.len().to_string();
        Manifest {
            items: self.items.clone(),
            stats: self.stats,
            inputs: vec![
                TensorSpec::new(INPUT_ITEMS, "int64", &[BATCH_DIM, HISTORY_DIM]),
                TensorSpec::new(INPUT_WEIGHTS, "float32", &[BATCH_DIM, HISTORY_DIM]),
            ],
            outputs: vec![TensorSpec::new(OUTPUT_SCORES, "float32", &[BATCH_DIM, &n])],
            ..Manifest::new(name, KIND, version, tenant, created_at_ms)
        }
    }

    /// Exports the model as ONNX (IR 8, opset 17). The graph, for `B` histories of length `H`:
    ///
    /// ```text
    /// history_items   int64 [B,H] ─┐
    /// similarity      float [n,n] ── Gather(axis=0) ──────────── [B,H,n] ─┐
    /// history_weights float [B,H] ── Unsqueeze(axes=[2]) ─────── [B,H,1] ─ Mul ─ [B,H,n]
    ///                                  ─ ReduceSum(axes=[1], keepdims=0) ─ scores float [B,n]
    /// ```
    ///
    /// `scores[b][j] = sum_k history_weights[b][k] * similarity[history_items[b][k]][j]`; shorter
    /// histories are padded with item 0 at weight 0.
    ///
    /// The embedded manifest takes `name`, `version`, `tenant` and `created_at_ms` from `manifest`;
    /// `kind`, `items`, `stats`, `inputs` and `outputs` always describe this model, as
    /// [`CovisitModel::manifest`] builds them.
    pub fn to_onnx(&self, manifest: &Manifest) -> Vec<u8> {
        let n = self.items.len() as i64;
        let manifest = Manifest {
            metrics: manifest.metrics.clone(),
            ..self.manifest(&manifest.name, &manifest.version, &manifest.tenant, manifest.created_at_ms)
        };
        let graph = onnx::GraphProto {
            name: "covisit".into(),
            node: weighted_row_sum(
                "similarity",
                "rows",
                ("unsqueeze_axes", "weights_column"),
                "reduce_axes",
                OUTPUT_SCORES,
            ),
            initializer: vec![
                onnx::float_tensor("similarity", &[n, n], &self.similarity),
                onnx::int64_tensor("unsqueeze_axes", &[1], &[2]),
                onnx::int64_tensor("reduce_axes", &[1], &[1]),
            ],
            input: vec![
                onnx::tensor_value_info(INPUT_ITEMS, DataType::Int64, &[batch(), history()]),
                onnx::tensor_value_info(INPUT_WEIGHTS, DataType::Float, &[batch(), history()]),
            ],
            output: vec![onnx::tensor_value_info(OUTPUT_SCORES, DataType::Float, &[batch(), Dim::Fixed(n)])],
            ..Default::default()
        };
        shopmind_onnx::model_file(graph, &manifest, Vec::new())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use prost::Message;

    use super::*;
    use crate::test_support::{toy_interactions, view as ev};

    fn sim(m: &CovisitModel, a: &str, b: &str) -> f32 {
        m.similarity_of(m.index_of(a).unwrap(), m.index_of(b).unwrap())
    }

    #[test]
    fn shrinkage_discounts_rare_pairs_more_than_frequent_ones() {
        // "a"-"b" co-occur for 3 users, "c"-"d" for 1: equal cosine, different support.
        let mut data = Vec::new();
        for u in 0..3 {
            data.push(ev(&format!("u{u}"), "a", 1));
            data.push(ev(&format!("u{u}"), "b", 2));
        }
        data.push(ev("v", "c", 1));
        data.push(ev("v", "d", 2));
        let plain = train(data.clone(), &CovisitConfig { max_items: 10, window: 10, shrinkage: 0 });
        let shrunk = train(data, &CovisitConfig { max_items: 10, window: 10, shrinkage: 3 });
        assert!((sim(&plain, "a", "b") - 1.0).abs() < 1e-6);
        assert!((sim(&plain, "c", "d") - 1.0).abs() < 1e-6);
        assert!((sim(&shrunk, "a", "b") - 0.5).abs() < 1e-6, "3 / (3 + 3)");
        assert!((sim(&shrunk, "c", "d") - 0.25).abs() < 1e-6, "1 / (1 + 3)");
    }

    #[test]
    fn toy_similarities_match_hand_computation() {
        let m = train(toy_interactions(), &CovisitConfig::default());
        // users: a = {u1,u2,u3} (3), b = {u1,u2} (2), c = {u2,u3} (2) -> order a, b, c.
        assert_eq!(m.items, vec!["a", "b", "c"]);
        assert_eq!(m.stats, TrainingStats { users: 3, interactions: 8, first_at_ms: 1, last_at_ms: 8 });
        // C(a,b) = 2 (u1,u2), C(a,c) = 2 (u2,u3), C(b,c) = 1 (u2).
        let close = |x: f32, y: f64| (f64::from(x) - y).abs() < 1e-6;
        assert!(close(sim(&m, "a", "b"), 2.0 / 6f64.sqrt()));
        assert!(close(sim(&m, "b", "a"), 2.0 / 6f64.sqrt()));
        assert!(close(sim(&m, "a", "c"), 2.0 / 6f64.sqrt()));
        assert!(close(sim(&m, "b", "c"), 1.0 / 4f64.sqrt()));
        for item in ["a", "b", "c"] {
            assert_eq!(sim(&m, item, item), 0.0);
        }
        // A customer who looked at b: a is the best next item (0.816 > 0.5).
        let scores = m.score(&[(m.index_of("b").unwrap(), 1.0)]);
        let best = (0..scores.len()).max_by(|&x, &y| scores[x].total_cmp(&scores[y])).unwrap();
        assert_eq!(m.items[best], "a");
    }

    #[test]
    fn window_keeps_only_recent_distinct_items() {
        // u1's most recent two distinct items are c and b (a is older), even though b repeats.
        let data = vec![ev("u1", "a", 1), ev("u1", "b", 2), ev("u1", "c", 3), ev("u1", "b", 4)];
        let m = train(data.clone(), &CovisitConfig { max_items: 10, window: 2, shrinkage: 0 });
        assert!(sim(&m, "b", "c") > 0.0);
        assert_eq!(sim(&m, "a", "b"), 0.0);
        assert_eq!(sim(&m, "a", "c"), 0.0);
        let wide = train(data, &CovisitConfig { max_items: 10, window: 3, shrinkage: 0 });
        assert!(sim(&wide, "a", "b") > 0.0);
    }

    #[test]
    fn equal_timestamps_use_input_order() {
        let data = vec![ev("u1", "a", 5), ev("u1", "b", 5), ev("u1", "c", 5)];
        let m = train(data, &CovisitConfig { max_items: 10, window: 2, shrinkage: 0 });
        assert!(sim(&m, "b", "c") > 0.0);
        assert_eq!(sim(&m, "a", "b"), 0.0);
    }

    #[test]
    fn max_items_keeps_the_most_popular() {
        let m = train(toy_interactions(), &CovisitConfig { max_items: 2, window: 50, shrinkage: 0 });
        // a (3 users) then b and c tie at 2 users: b wins by id.
        assert_eq!(m.items, vec!["a", "b"]);
        assert_eq!(m.similarity.len(), 4);
        assert_eq!(m.index_of("c"), None);
        // Normalisation still uses the items' own popularity.
        assert!((f64::from(sim(&m, "a", "b")) - 2.0 / 6f64.sqrt()).abs() < 1e-6);
    }

    #[test]
    fn empty_input_gives_an_empty_model() {
        let m = train(Vec::new(), &CovisitConfig::default());
        assert!(m.is_empty());
        assert_eq!(m.stats, TrainingStats::default());
        assert!(m.score(&[(0, 1.0)]).is_empty());
    }

    #[test]
    fn score_ignores_out_of_range_and_sums_repeats() {
        let m = train(toy_interactions(), &CovisitConfig::default());
        let b = m.index_of("b").unwrap();
        let once = m.score(&[(b, 1.0)]);
        let twice = m.score(&[(b, 0.5), (99, 3.0), (b, 0.5)]);
        assert_eq!(once, twice);
    }

    #[test]
    fn index_of_never_returns_a_stale_index() {
        let mut m = train(toy_interactions(), &CovisitConfig::default());
        m.items.swap(0, 1);
        assert_eq!(m.index_of("a"), Some(1));
        assert_eq!(m.index_of("b"), Some(0));
        m.items[2] = "z".into();
        assert_eq!(m.index_of("c"), None);
    }

    #[test]
    fn new_checks_shape_and_ids() {
        assert!(CovisitModel::new(vec!["a".into()], vec![0.0; 2], TrainingStats::default()).is_err());
        assert!(
            CovisitModel::new(vec!["a".into(), "a".into()], vec![0.0; 4], TrainingStats::default()).is_err()
        );
        assert!(CovisitModel::new(vec!["a".into()], vec![0.0], TrainingStats::default()).is_ok());
    }

    #[test]
    fn training_and_export_are_deterministic() {
        let mut data = Vec::new();
        for u in 0..40 {
            for k in 0..12 {
                let item = format!("i{}", (u * 7 + k * 3) % 25);
                data.push(ev(&format!("u{u}"), &item, i64::from((u * 13 + k * 5) % 17)));
            }
        }
        let cfg = CovisitConfig { max_items: 20, window: 6, shrinkage: 0 };
        let a = train(data.clone(), &cfg);
        let b = train(data, &cfg);
        assert_eq!(a, b);
        let manifest = a.manifest("recommender", "v1", "acme", 1_700_000_000_000);
        assert_eq!(a.to_onnx(&manifest), b.to_onnx(&manifest));
    }

    #[test]
    fn manifest_round_trips_through_onnx() {
        let m = train(toy_interactions(), &CovisitConfig::default());
        let manifest = m.manifest("recommender", "v7", "acme", 42);
        let bytes = m.to_onnx(&manifest);
        assert_eq!(shopmind_onnx::read_manifest(&bytes).unwrap(), manifest);

        // Fields describing the model come from the model, whatever the caller passed.
        let mut stale = manifest.clone();
        stale.items = vec!["nope".into()];
        stale.kind = "other".into();
        assert_eq!(shopmind_onnx::read_manifest(&m.to_onnx(&stale)).unwrap(), manifest);
    }

    #[test]
    fn exported_graph_has_the_documented_shape() {
        let m = train(toy_interactions(), &CovisitConfig::default());
        let bytes = m.to_onnx(&m.manifest("recommender", "v1", "t", 0));
        let model = onnx::ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.ir_version, Some(8));
        assert_eq!(model.opset_import, vec![onnx::opset("", 17)]);
        let graph = model.graph.unwrap();
        let ops: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(ops, ["Gather", "Unsqueeze", "Mul", "ReduceSum"]);
        let sim = graph.initializer.iter().find(|t| t.name == "similarity").unwrap();
        assert_eq!(sim.dims, vec![3, 3]);
        assert_eq!(sim.f32_values().unwrap(), m.similarity);
    }
}
