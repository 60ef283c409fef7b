//! The offline metrics a published recommender carries in its manifest: each user's latest
//! interaction (users with at least two) is held out, the model is trained on the rest, and
//! NDCG@10 and Recall@10 of the held-out item (items the user already touched excluded) are
//! measured for the model and for popularity, the baseline, on the same users. The model that is
//! published is then trained on everything, so the newest items stay in its vocabulary
//! (`trainer.holdout_eval = false` skips the extra training).

use std::collections::{BTreeMap, HashMap};

use shopmind_evaluation::metrics::{ndcg_at_k, recall_at_k, top_k};
use shopmind_training::covisit::TrainingInteraction;

/// Cut-off of the metrics.
const K: usize = 10;
/// At most this many users are evaluated (every `n`-th user in id order beyond that).
const MAX_EVAL_USERS: usize = 2000;

/// One held-out case: the user's earlier items, oldest first, and the item that came next.
pub(crate) struct Case {
    pub history: Vec<String>,
    pub next: String,
}

/// Splits `interactions` into what the model trains on and the held-out cases.
pub(crate) fn split(interactions: Vec<TrainingInteraction>) -> (Vec<TrainingInteraction>, Vec<Case>) {
    let mut by_user: BTreeMap<String, Vec<TrainingInteraction>> = BTreeMap::new();
    for i in interactions {
        by_user.entry(i.user.clone()).or_default().push(i);
    }
    let eligible = by_user.values().filter(|v| v.len() >= 2).count();
    let step = eligible.div_ceil(MAX_EVAL_USERS).max(1);
    let mut train = Vec::new();
    let mut cases = Vec::new();
    let mut nth = 0usize;
    for (_, mut list) in by_user {
        // Stable: equal times keep their order in the stream.
        list.sort_by_key(|i| i.at_ms);
        if list.len() >= 2 {
            nth += 1;
            if nth.is_multiple_of(step)
                && let Some(last) = list.pop()
            {
                cases.push(Case { history: list.iter().map(|i| i.item.clone()).collect(), next: last.item });
            }
        }
        train.extend(list);
    }
    (train, cases)
}

/// NDCG@10 and Recall@10 of `score` (scores over `items` for a history of item indices, oldest
/// first) and of popularity in `train`, as manifest metrics.
pub(crate) fn metrics(
    items: &[String],
    train: &[TrainingInteraction],
    cases: &[Case],
    score: impl Fn(&[usize]) -> Vec<f32>,
) -> BTreeMap<String, f64> {
    let index: HashMap<&str, usize> = items.iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
    let mut popularity = vec![0f32; items.len()];
    for i in train {
        if let Some(&idx) = index.get(i.item.as_str()) {
            popularity[idx] += 1.0;
        }
    }
    let (mut model_ndcg, mut model_recall, mut pop_ndcg, mut pop_recall) = (0.0, 0.0, 0.0, 0.0);
    for case in cases {
        let history: Vec<usize> =
            case.history.iter().filter_map(|i| index.get(i.as_str()).copied()).collect();
        let mut seen = vec![false; items.len()];
        for &h in &history {
            seen[h] = true;
        }
        // An item the model does not know counts as a miss for both.
        let relevant: Vec<u32> = index.get(case.next.as_str()).map(|&i| i as u32).into_iter().collect();
        let ranked = top_k(&score(&history), K, &seen);
        model_ndcg += ndcg_at_k(&ranked, &relevant, K);
        model_recall += recall_at_k(&ranked, &relevant, K);
        let ranked = top_k(&popularity, K, &seen);
        pop_ndcg += ndcg_at_k(&ranked, &relevant, K);
        pop_recall += recall_at_k(&ranked, &relevant, K);
    }
    let n = cases.len().max(1) as f64;
    BTreeMap::from([
        ("holdout_users".to_string(), cases.len() as f64),
        ("holdout_ndcg_at_10".to_string(), model_ndcg / n),
        ("holdout_recall_at_10".to_string(), model_recall / n),
        ("holdout_ndcg_at_10_popularity".to_string(), pop_ndcg / n),
        ("holdout_recall_at_10_popularity".to_string(), pop_recall / n),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shopmind_domain::InteractionKind;

    use super::*;

    fn i(user: &str, item: &str, at_ms: i64) -> TrainingInteraction {
        TrainingInteraction { user: user.into(), item: item.into(), kind: InteractionKind::View, at_ms }
    }

    #[test]
    fn holds_out_each_users_latest_interaction() {
        let (train, cases) = split(vec![i("u", "b", 2), i("u", "a", 1), i("v", "x", 5), i("u", "c", 3)]);
        assert_eq!(train.len(), 3, "u keeps a and b, v (one interaction) keeps x");
        assert_eq!(cases.len(), 1);
        assert_eq!(
            (cases[0].history.clone(), cases[0].next.as_str()),
            (vec!["a".to_string(), "b".into()], "c")
        );
    }

    #[test]
    fn a_perfect_scorer_beats_popularity() {
        let items: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        // Popularity says "a"; the held-out item is "d".
        let train = vec![i("w", "a", 1), i("x", "a", 1), i("y", "b", 1)];
        let cases = vec![Case { history: vec!["b".into()], next: "d".into() }];
        let m = metrics(&items, &train, &cases, |_| vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(m["holdout_ndcg_at_10"], 1.0);
        assert_eq!(m["holdout_recall_at_10"], 1.0);
        // Popularity ranks a (2), c (0) and d (0) after excluding b: d is third.
        assert!((m["holdout_ndcg_at_10_popularity"] - 1.0 / 4f64.log2()).abs() < 1e-9);
        assert_eq!(m["holdout_users"], 1.0);
    }
}
