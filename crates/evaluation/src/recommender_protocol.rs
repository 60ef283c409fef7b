//! Offline evaluation of recommenders on a per-user temporal split.
//!
//! **Protocol.** Each user's interactions are in time order (the caller breaks ties; the
//! `shopmind eval` loader orders equal timestamps by item id). The latest
//! [`TEST_FRACTION`] of each user's interactions, at least one ([`holdout_count`]), are the test
//! set; the rest is training data. Hyperparameters are chosen on a validation split carved the
//! same way from the training data, never on the test set. A model scores the full catalog from a
//! user's training interactions; items seen in training are excluded; the top [`K`] are compared
//! with the user's test items by Recall@K and NDCG@K (binary relevance, [`crate::metrics`]),
//! averaged over users.
//! The relevant set is the user's distinct test items not seen in training; users left with none
//! are skipped.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use shopmind_training::als::{AlsConfig, AlsModel};
use shopmind_training::covisit::{CovisitConfig, CovisitModel, TrainingInteraction};
use shopmind_training::embedding::{
    EmbeddingConfig, Factors, recency_weights, train_sequences_with_progress,
};

use crate::metrics::{ndcg_at_k, recall_at_k, top_k};

/// Share of each user's latest interactions held out.
pub const TEST_FRACTION: f64 = 0.2;
/// The cut-off of the metrics.
pub const K: usize = 10;

/// `max(1, floor(n * fraction))`, at most `n`: how many of `n` interactions are held out.
pub fn holdout_count(n: usize, fraction: f64) -> usize {
    (((n as f64) * fraction).floor() as usize).max(1).min(n)
}

/// Training and held-out interactions per user, both in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Split {
    pub train: Vec<Vec<u32>>,
    pub test: Vec<Vec<u32>>,
}

/// Splits each time-ordered sequence: the last [`holdout_count`] entries are the test part.
pub fn temporal_split(sequences: &[Vec<u32>], fraction: f64) -> Split {
    let mut split = Split::default();
    for seq in sequences {
        let cut = seq.len() - holdout_count(seq.len(), fraction);
        split.train.push(seq[..cut].to_vec());
        split.test.push(seq[cut..].to_vec());
    }
    split
}

/// Averages over the evaluated users.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
pub struct Metrics {
    pub recall: f64,
    pub ndcg: f64,
    pub users: usize,
}

/// Scores every user with `score(user, training items)` (on `threads` threads) and averages
/// Recall@`k` and NDCG@`k`; see the module docs. The sum runs in user order, so the result does
/// not depend on the thread count.
pub fn evaluate<F>(split: &Split, n_items: usize, k: usize, threads: usize, score: F) -> Metrics
where
    F: Fn(usize, &[u32]) -> Vec<f32> + Sync,
{
    let users = split.train.len().min(split.test.len());
    let mut per_user: Vec<Option<(f64, f64)>> = vec![None; users];
    let per = users.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (c, chunk) in per_user.chunks_mut(per).enumerate() {
            let score = &score;
            s.spawn(move || {
                let mut seen = vec![false; n_items];
                for (o, slot) in chunk.iter_mut().enumerate() {
                    let u = c * per + o;
                    let train = &split.train[u];
                    let mut relevant: Vec<u32> = Vec::new();
                    for &i in train {
                        if let Some(x) = seen.get_mut(i as usize) {
                            *x = true;
                        }
                    }
                    for &i in &split.test[u] {
                        if !seen.get(i as usize).copied().unwrap_or(false) && !relevant.contains(&i) {
                            relevant.push(i);
                        }
                    }
                    if !relevant.is_empty() {
                        let ranked = top_k(&score(u, train), k, &seen);
                        *slot = Some((recall_at_k(&ranked, &relevant, k), ndcg_at_k(&ranked, &relevant, k)));
                    }
                    for &i in train {
                        if let Some(x) = seen.get_mut(i as usize) {
                            *x = false;
                        }
                    }
                }
            });
        }
    });
    let mut m = Metrics::default();
    for (r, n) in per_user.into_iter().flatten() {
        m.recall += r;
        m.ndcg += n;
        m.users += 1;
    }
    if m.users > 0 {
        m.recall /= m.users as f64;
        m.ndcg /= m.users as f64;
    }
    m
}

/// Interactions per item in `train`: the popularity baseline's scores.
pub fn popularity(train: &[Vec<u32>], n_items: usize) -> Vec<f32> {
    let mut counts = vec![0f32; n_items];
    for &i in train.iter().flatten() {
        if let Some(c) = counts.get_mut(i as usize) {
            *c += 1.0;
        }
    }
    counts
}

/// Item-based k-nearest neighbours with cosine similarity on the binary user-item matrix:
/// `score_j = Σ_{i in history, i among the `neighbors` most similar items to j} cos(i, j)`.
#[derive(Clone, Debug)]
pub struct ItemKnn {
    n: usize,
    /// Row `i`: `cos(i, j)` if `i` is one of `j`'s neighbours, else 0.
    weights: Vec<f32>,
}

impl ItemKnn {
    /// `neighbors == 0` keeps every similar item.
    pub fn train(train: &[Vec<u32>], n: usize, neighbors: usize) -> Self {
        let mut counts = vec![0u32; n * n];
        let mut users = vec![0u32; n];
        let mut distinct: Vec<u32> = Vec::new();
        for seq in train {
            distinct.clear();
            distinct.extend(seq.iter().copied().filter(|&i| (i as usize) < n));
            distinct.sort_unstable();
            distinct.dedup();
            for &a in &distinct {
                users[a as usize] += 1;
                let row = &mut counts[a as usize * n..(a as usize + 1) * n];
                for &b in &distinct {
                    row[b as usize] += 1;
                }
            }
        }
        let mut weights = vec![0f32; n * n];
        let mut column: Vec<(f32, usize)> = Vec::with_capacity(n);
        for j in 0..n {
            column.clear();
            for i in 0..n {
                let c = counts[i * n + j];
                if i != j && c > 0 {
                    let s = c as f32 / ((users[i] as f32) * (users[j] as f32)).sqrt();
                    column.push((s, i));
                }
            }
            if neighbors > 0 && column.len() > neighbors {
                column.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                column.truncate(neighbors);
            }
            for &(s, i) in &column {
                weights[i * n + j] = s;
            }
        }
        Self { n, weights }
    }

    pub fn score(&self, history: &[u32]) -> Vec<f32> {
        let mut s = vec![0f32; self.n];
        for &i in history {
            let Some(row) = self.weights.get(i as usize * self.n..(i as usize + 1) * self.n) else {
                continue;
            };
            for (x, &w) in s.iter_mut().zip(row) {
                *x += w;
            }
        }
        s
    }
}

/// The co-visitation model trained on dense sequences: item `i` is named `"{i}"`, the `k`-th
/// interaction of a user happens at `k` ms (so the order is the sequence order).
pub fn train_covisit(train: &[Vec<u32>], n_items: usize, cfg: &CovisitConfig) -> CovisitScorer {
    let interactions = train.iter().enumerate().flat_map(|(u, seq)| {
        seq.iter().enumerate().map(move |(k, &i)| TrainingInteraction {
            user: u.to_string(),
            item: i.to_string(),
            kind: shopmind_domain::InteractionKind::View,
            at_ms: k as i64,
        })
    });
    let model = shopmind_training::covisit::train(interactions, cfg);
    let to_dense = model.items.iter().map(|s| s.parse::<u32>().unwrap_or(u32::MAX)).collect();
    let mut from_dense = vec![usize::MAX; n_items];
    for (v, item) in model.items.iter().enumerate() {
        if let Some(slot) = item.parse::<usize>().ok().and_then(|i| from_dense.get_mut(i)) {
            *slot = v;
        }
    }
    CovisitScorer { model, to_dense, from_dense, n_items }
}

/// A [`CovisitModel`] scoring dense item indices, history weights 1.
#[derive(Debug)]
pub struct CovisitScorer {
    pub model: CovisitModel,
    to_dense: Vec<u32>,
    from_dense: Vec<usize>,
    n_items: usize,
}

impl CovisitScorer {
    pub fn score(&self, history: &[u32]) -> Vec<f32> {
        let h: Vec<(usize, f32)> = history
            .iter()
            .filter_map(|&i| self.from_dense.get(i as usize).copied().filter(|&v| v != usize::MAX))
            .map(|v| (v, 1.0))
            .collect();
        let mut out = vec![0f32; self.n_items];
        for (v, s) in self.model.score(&h).into_iter().enumerate() {
            if let Some(slot) = self.to_dense.get(v).and_then(|&i| out.get_mut(i as usize)) {
                *slot = s;
            }
        }
        out
    }
}

/// The embedding model's scorer on dense histories: exactly the function of the ONNX graph, fed
/// with [`recency_weights`] of the training history.
pub fn embedding_scores(f: &Factors, cfg: &EmbeddingConfig, history: &[u32]) -> Vec<f32> {
    f.score(&embedding_history(cfg, history))
}

/// The weighted history [`embedding_scores`] passes: the last `history_len` items with decayed
/// weights (what `EmbeddingModel::recent_history` gives).
pub fn embedding_history(cfg: &EmbeddingConfig, history: &[u32]) -> Vec<(usize, f32)> {
    let start = history.len().saturating_sub(cfg.history_len);
    let w = recency_weights(history.len() - start, cfg.history_decay, cfg.history_len);
    history[start..].iter().map(|&i| i as usize).zip(w).collect()
}

/// The resident-set high-water mark of this process (`VmHWM` in `/proc/self/status`), KiB.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM:")
}

/// The current resident set (`VmRSS`), KiB.
pub fn rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS:")
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Resets `VmHWM` to the current RSS (Linux: writing `5` to `/proc/self/clear_refs`), so that
/// the next [`peak_rss_kib`] is the peak of what runs in between. `false` if not possible.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Which recommender, with which hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Candidate {
    Popularity,
    ItemKnn { neighbors: usize },
    Als(AlsConfig),
    Covisit(CovisitConfig),
    Embedding(EmbeddingConfig),
}

impl Candidate {
    /// The model family.
    pub fn family(&self) -> &'static str {
        match self {
            Candidate::Popularity => "popularity",
            Candidate::ItemKnn { .. } => "item-knn",
            Candidate::Als(_) => "als",
            Candidate::Covisit(_) => "covisit",
            Candidate::Embedding(_) => "embedding",
        }
    }

    /// The hyperparameters, short.
    pub fn params(&self) -> String {
        match self {
            Candidate::Popularity => "-".into(),
            Candidate::ItemKnn { neighbors } => format!("neighbors={neighbors}"),
            Candidate::Als(c) => format!(
                "factors={} iterations={} reg={} alpha={}",
                c.factors, c.iterations, c.regularization, c.alpha
            ),
            Candidate::Covisit(c) => format!("window={} shrinkage={}", c.window, c.shrinkage),
            Candidate::Embedding(c) => format!(
                "dim={} epochs={} negatives={} lr={} reg={} decay={} history={} window={}",
                c.dim,
                c.epochs,
                c.negatives,
                c.learning_rate,
                c.regularization,
                c.history_decay,
                c.history_len,
                c.target_window
            ),
        }
    }
}

/// A trained candidate, ready to score.
pub enum Trained {
    Popularity(Vec<f32>),
    ItemKnn(ItemKnn),
    Als(AlsModel),
    Covisit(Box<CovisitScorer>),
    Embedding(Factors, EmbeddingConfig),
}

/// Trains `c` on `train` (`n_items` items), calling `tick` during long training.
pub fn train_candidate(c: &Candidate, train: &[Vec<u32>], n_items: usize, tick: &mut dyn FnMut()) -> Trained {
    match c {
        Candidate::Popularity => Trained::Popularity(popularity(train, n_items)),
        Candidate::ItemKnn { neighbors } => Trained::ItemKnn(ItemKnn::train(train, n_items, *neighbors)),
        Candidate::Als(cfg) => {
            Trained::Als(shopmind_training::als::train_als_with_progress(train, n_items, cfg, &mut |_, _| {
                tick()
            }))
        }
        Candidate::Covisit(cfg) => Trained::Covisit(Box::new(train_covisit(train, n_items, cfg))),
        Candidate::Embedding(cfg) => Trained::Embedding(
            train_sequences_with_progress(train, n_items, cfg, &mut |_, _| tick()),
            cfg.clone(),
        ),
    }
}

impl Trained {
    /// The scores of `user`, whose training interactions are `history`.
    pub fn score(&self, user: usize, history: &[u32]) -> Vec<f32> {
        match self {
            Trained::Popularity(p) => p.clone(),
            Trained::ItemKnn(m) => m.score(history),
            Trained::Als(m) => m.score_user(user),
            Trained::Covisit(m) => m.score(history),
            Trained::Embedding(f, cfg) => embedding_scores(f, cfg, history),
        }
    }
}

/// One row of the tuning log: a candidate's validation metrics.
#[derive(Serialize, Clone, Debug)]
pub struct TuningRow {
    pub model: String,
    pub params: String,
    pub validation: Metrics,
}

/// One row of the results: the tuned candidate, retrained on all training data, on the test set.
#[derive(Serialize, Clone, Debug)]
pub struct ModelResult {
    pub model: String,
    pub params: String,
    pub validation: Option<Metrics>,
    pub test: Metrics,
    pub train_s: f64,
    /// `VmHWM` after training, with the peak reset before it (process-wide, data included).
    pub peak_rss_mib: Option<f64>,
    /// What training added to the resident set at its peak.
    pub train_peak_delta_mib: Option<f64>,
}

/// What [`run_protocol`] found.
#[derive(Serialize, Clone, Debug)]
pub struct ProtocolReport {
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub train_interactions: usize,
    pub test_interactions: usize,
    pub validation_train_interactions: usize,
    pub k: usize,
    pub tuning: Vec<TuningRow>,
    pub results: Vec<ModelResult>,
}

/// Progress of [`run_protocol`]: `begin(total units)`, then `step` before each unit of work and
/// `tick` during long ones.
pub trait Progress {
    fn begin(&mut self, _total: u64) {}
    fn step(&mut self, _what: &str) {}
    fn tick(&mut self) {}
}

/// No progress output.
pub struct Quiet;
impl Progress for Quiet {}

/// Runs the protocol: for each family, every candidate of its grid is trained on the validation
/// split's training part and scored on its held-out part; the best by NDCG@K (ties: the earlier
/// candidate) is retrained on the full training part and scored on the test set. Families are
/// reported in the order given. `threads` parallelises scoring (and ALS).
pub fn run_protocol(
    sequences: &[Vec<u32>],
    n_items: usize,
    grids: &[Vec<Candidate>],
    threads: usize,
    progress: &mut dyn Progress,
) -> (ProtocolReport, Vec<(Candidate, Trained)>) {
    let split = temporal_split(sequences, TEST_FRACTION);
    let validation = temporal_split(&split.train, TEST_FRACTION);
    let count = |s: &[Vec<u32>]| s.iter().map(Vec::len).sum::<usize>();
    let total: usize = grids.iter().map(|g| if g.len() > 1 { g.len() + 1 } else { 1 }).sum();
    progress.begin(total as u64);
    let mut report = ProtocolReport {
        users: sequences.len(),
        items: n_items,
        interactions: count(sequences),
        train_interactions: count(&split.train),
        test_interactions: count(&split.test),
        validation_train_interactions: count(&validation.train),
        k: K,
        tuning: Vec::new(),
        results: Vec::new(),
    };
    let mut finals = Vec::new();
    for grid in grids {
        let Some(first) = grid.first() else { continue };
        let mut best: (Candidate, Option<Metrics>) = (first.clone(), None);
        if grid.len() > 1 {
            for c in grid {
                progress.step(&format!("tuning {} ({})", c.family(), c.params()));
                let trained = train_candidate(c, &validation.train, n_items, &mut || progress.tick());
                let m = evaluate(&validation, n_items, K, threads, |u, h| trained.score(u, h));
                report.tuning.push(TuningRow { model: c.family().into(), params: c.params(), validation: m });
                if best.1.is_none_or(|b| m.ndcg > b.ndcg) {
                    best = (c.clone(), Some(m));
                }
            }
        }
        let (c, validation_metrics) = best;
        progress.step(&format!("training {} ({})", c.family(), c.params()));
        let before = rss_kib();
        let reset = reset_peak_rss();
        let started = Instant::now();
        let trained = train_candidate(&c, &split.train, n_items, &mut || progress.tick());
        let train_s = started.elapsed().as_secs_f64();
        let peak = if reset { peak_rss_kib() } else { None };
        let test = evaluate(&split, n_items, K, threads, |u, h| trained.score(u, h));
        report.results.push(ModelResult {
            model: c.family().into(),
            params: c.params(),
            validation: validation_metrics,
            test,
            train_s,
            peak_rss_mib: peak.map(|p| p as f64 / 1024.0),
            train_peak_delta_mib: peak.zip(before).map(|(p, b)| p.saturating_sub(b) as f64 / 1024.0),
        });
        finals.push((c, trained));
    }
    (report, finals)
}

/// The grids searched on the validation split by `shopmind eval` on ml-100k, in report order
/// (narrowed by the wider exploration in docs/EVALUATION.md, also on validation data only).
pub fn default_grids(n_items: usize, seed: u64, threads: usize) -> Vec<Vec<Candidate>> {
    let knn = [20, 50, 100, 200, 0].into_iter().map(|k| Candidate::ItemKnn { neighbors: k }).collect();
    let mut als = Vec::new();
    for factors in [32, 64] {
        for alpha in [1.0, 5.0] {
            als.push(Candidate::Als(AlsConfig {
                factors,
                iterations: 10,
                regularization: 10.0,
                alpha,
                seed,
                threads,
            }));
        }
    }
    let mut covisit = Vec::new();
    for window in [20, 50, 100, 1000] {
        for shrinkage in [0, 5] {
            covisit.push(Candidate::Covisit(CovisitConfig { max_items: n_items, window, shrinkage }));
        }
    }
    let base = EmbeddingConfig { seed, ..EmbeddingConfig::default() };
    let embedding = [(0.8, 30), (0.9, 30), (0.8, 20)]
        .into_iter()
        .map(|(history_decay, epochs)| {
            Candidate::Embedding(EmbeddingConfig { history_decay, epochs, ..base.clone() })
        })
        .collect();
    vec![vec![Candidate::Popularity], knn, als, covisit, embedding]
}

/// Tuning rows grouped by family, best validation NDCG first (for printing).
pub fn tuning_by_family(report: &ProtocolReport) -> BTreeMap<String, Vec<TuningRow>> {
    let mut out: BTreeMap<String, Vec<TuningRow>> = BTreeMap::new();
    for row in &report.tuning {
        out.entry(row.model.clone()).or_default().push(row.clone());
    }
    for rows in out.values_mut() {
        rows.sort_by(|a, b| b.validation.ndcg.total_cmp(&a.validation.ndcg));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::metrics::tests::close;

    #[test]
    fn split_holds_out_the_latest_fifth_and_at_least_one() {
        assert_eq!(holdout_count(10, 0.2), 2);
        assert_eq!(holdout_count(14, 0.2), 2);
        assert_eq!(holdout_count(4, 0.2), 1);
        assert_eq!(holdout_count(1, 0.2), 1);
        assert_eq!(holdout_count(0, 0.2), 0);
        let seqs = vec![(0..10).collect::<Vec<u32>>(), vec![5, 6], vec![]];
        let s = temporal_split(&seqs, 0.2);
        assert_eq!(s.train, vec![(0..8).collect::<Vec<u32>>(), vec![5], vec![]]);
        assert_eq!(s.test, vec![vec![8, 9], vec![6], vec![]]);
    }

    #[test]
    fn evaluate_excludes_training_items_and_averages_over_users() {
        let split =
            Split { train: vec![vec![0], vec![1], vec![2]], test: vec![vec![1], vec![0, 1], vec![2]] };
        // Everyone gets scores 0 > 1 > 2 > 3: user 0 (saw 0) ranks [1, 2, 3] -> hit at rank 0.
        // User 1 (saw 1, relevant {0}: 1 was seen) ranks [0, 2, 3] -> hit at rank 0.
        // User 2: relevant {} (2 was seen in training) -> skipped.
        let m = evaluate(&split, 4, 2, 2, |_, _| vec![4.0, 3.0, 2.0, 1.0]);
        assert_eq!(m.users, 2);
        assert!(close(m.recall, 1.0) && close(m.ndcg, 1.0));
        let m = evaluate(&split, 4, 1, 1, |_, _| vec![1.0, 2.0, 3.0, 4.0]);
        // User 0 ranks [3], miss; user 1 ranks [3], miss.
        assert!(close(m.ndcg, 0.0));
    }

    #[test]
    fn item_knn_counts_co_occurrence_by_cosine_and_prunes_neighbours() {
        // Items 0 and 1 always together (2 users), 2 with 0 once.
        let train = vec![vec![0, 1], vec![0, 1, 2]];
        let knn = ItemKnn::train(&train, 3, 0);
        let s = knn.score(&[0]);
        assert!((s[1] - 2.0 / (2f32 * 2.0).sqrt()).abs() < 1e-6);
        assert!((s[2] - 1.0 / 2f32.sqrt()).abs() < 1e-6);
        assert_eq!(s[0], 0.0);
        // One neighbour per item: 2's best neighbour is 0 or 1 (equal cosine, smaller index wins).
        let pruned = ItemKnn::train(&train, 3, 1);
        assert!(pruned.score(&[1])[2] == 0.0 && pruned.score(&[0])[2] > 0.0);
    }

    #[test]
    fn popularity_and_covisit_scorers_use_dense_indices() {
        let train = vec![vec![2, 0], vec![2, 1], vec![2]];
        assert_eq!(popularity(&train, 4), vec![1.0, 1.0, 3.0, 0.0]);
        let cv = train_covisit(&train, 4, &CovisitConfig::default());
        let s = cv.score(&[0]);
        assert_eq!(s.len(), 4);
        assert!(s[2] > 0.0 && s[1] == 0.0 && s[3] == 0.0, "{s:?}");
    }
}
