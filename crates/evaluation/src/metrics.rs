//! Offline metrics: ROC-AUC and the ROC curve for classifiers; MASE and interval coverage for
//! forecasts, and the seasonal-naive forecast they are measured against; top-k, Recall@k and
//! NDCG@k for rankings.

/// Area under the ROC curve: the chance that a random positive scores above a random negative,
/// ties counting one half (the Mann-Whitney U statistic over `positives * negatives`). `None`
/// when there is no positive or no negative, or the lengths differ.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    if scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over runs of tied scores; sum them over the positives.
    let mut rank_sum_pos = 0f64;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// The ROC curve: `(false positive rate, true positive rate)` from `(0, 0)` to `(1, 1)`, one
/// point per distinct score (thresholds from the highest score down). Empty when a class is
/// missing.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 || scores.len() != labels.len() {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0f64, 0f64);
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if labels[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        points.push((fp / neg, tp / pos));
    }
    points
}

/// Mean negative log-likelihood of the labels under predicted probabilities (clamped to
/// `[1e-12, 1 - 1e-12]`); `None` for empty or mismatched input.
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> Option<f64> {
    if probabilities.is_empty() || probabilities.len() != labels.len() {
        return None;
    }
    let sum: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(p, y)| {
            let p = p.clamp(1e-12, 1.0 - 1e-12);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Some(sum / probabilities.len() as f64)
}

/// The seasonal-naive forecast: the last `season` values of `history`, repeated over `horizon`
/// steps (`forecast[h] = history[len - season + h % season]`). A history shorter than `season`
/// gives an empty forecast.
pub fn seasonal_naive(history: &[f32], season: usize, horizon: usize) -> Vec<f32> {
    if season == 0 || history.len() < season {
        return Vec::new();
    }
    let last = &history[history.len() - season..];
    (0..horizon).map(|h| last[h % season]).collect()
}

/// In-sample mean absolute error of the seasonal-naive forecast (`|y[t] - y[t - season]|`,
/// averaged over `t >= season`): the scale of MASE. `None` if the series is too short.
pub fn seasonal_naive_scale(insample: &[f32], season: usize) -> Option<f64> {
    if season == 0 || insample.len() <= season {
        return None;
    }
    let n = insample.len() - season;
    let sum: f64 =
        (season..insample.len()).map(|t| f64::from((insample[t] - insample[t - season]).abs())).sum();
    Some(sum / n as f64)
}

/// Mean absolute scaled error: the forecast's mean absolute error over the horizon divided by
/// the in-sample seasonal-naive error ([`seasonal_naive_scale`]). `None` when the scale is zero
/// (a constant in-sample series), the series is too short, or the lengths differ.
pub fn mase(actual: &[f32], forecast: &[f32], insample: &[f32], season: usize) -> Option<f64> {
    if actual.is_empty() || actual.len() != forecast.len() {
        return None;
    }
    let scale = seasonal_naive_scale(insample, season)?;
    if scale <= 0.0 {
        return None;
    }
    let mae: f64 =
        actual.iter().zip(forecast).map(|(a, f)| f64::from((a - f).abs())).sum::<f64>() / actual.len() as f64;
    Some(mae / scale)
}

/// Share of `actual` values inside `[lower, upper]` (both ends included); `None` when empty or
/// the lengths differ.
pub fn interval_coverage(actual: &[f32], lower: &[f32], upper: &[f32]) -> Option<f64> {
    if actual.is_empty() || actual.len() != lower.len() || actual.len() != upper.len() {
        return None;
    }
    let inside =
        actual.iter().zip(lower.iter().zip(upper)).filter(|(a, (l, u))| *l <= *a && *a <= *u).count();
    Some(inside as f64 / actual.len() as f64)
}

/// The `k` best items by score, best first; ties go to the smaller index; items with
/// `exclude[i]` set, and NaN scores, are skipped.
pub fn top_k(scores: &[f32], k: usize, exclude: &[bool]) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if exclude.get(i).copied().unwrap_or(false) || s.is_nan() || k == 0 {
            continue;
        }
        if best.len() == k && best.last().is_some_and(|&(worst, _)| s <= worst) {
            continue;
        }
        let pos = best.partition_point(|&(b, _)| b >= s);
        best.insert(pos, (s, i as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// Recall@k: the share of the relevant items among the first `k` ranked.
pub fn recall_at_k(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    if relevant.is_empty() {
        return 0.0;
    }
    let hits = ranked.iter().take(k).filter(|i| relevant.contains(i)).count();
    hits as f64 / relevant.len() as f64
}

/// NDCG@k with binary relevance: `Σ_{hits at rank r} 1/log2(r+2)` over the same for a perfect
/// ranking of `min(k, |relevant|)` items (ranks from 0).
pub fn ndcg_at_k(ranked: &[u32], relevant: &[u32], k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .filter(|(_, i)| relevant.contains(i))
        .map(|(r, _)| 1.0 / (r as f64 + 2.0).log2())
        .sum();
    let ideal: f64 = (0..relevant.len().min(k)).map(|r| 1.0 / (r as f64 + 2.0).log2()).sum();
    if ideal > 0.0 { dcg / ideal } else { 0.0 }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Equal up to rounding (the protocol's tests use it too).
    pub(crate) fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_of_hand_computed_cases() {
        // Perfect and reversed rankings.
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[false, false, true, true]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[false, false, true, true]), Some(0.0));
        // Pairs (pos, neg): (0.8 vs 0.1 ok, 0.8 vs 0.9 bad), (0.4 vs 0.1 ok, 0.4 vs 0.9 bad) -> 2/4.
        assert_eq!(roc_auc(&[0.8, 0.1, 0.4, 0.9], &[true, false, true, false]), Some(0.5));
        // Ties count half: one pos and one neg at 0.5, another neg at 0.1 -> (0.5 + 1) / 2.
        assert!(close(roc_auc(&[0.5, 0.5, 0.1], &[true, false, false]).unwrap(), 0.75));
        // All scores equal: 0.5 whatever the labels.
        assert!(close(roc_auc(&[1.0; 5], &[true, false, true, false, false]).unwrap(), 0.5));
        // One class only, or mismatched input.
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
        assert_eq!(roc_auc(&[0.1], &[true, false]), None);
    }

    #[test]
    fn roc_curve_steps_through_distinct_scores() {
        let curve = roc_curve(&[0.9, 0.8, 0.8, 0.1], &[true, true, false, false]);
        assert_eq!(curve, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
        // The trapezoidal area under it equals the AUC.
        let area: f64 = curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
        let auc = roc_auc(&[0.9, 0.8, 0.8, 0.1], &[true, true, false, false]).unwrap();
        assert!(close(area, auc), "{area} vs {auc}");
        assert!(roc_curve(&[0.3], &[true]).is_empty());
    }

    #[test]
    fn log_loss_of_known_probabilities() {
        let ll = log_loss(&[0.5, 0.5], &[true, false]).unwrap();
        assert!(close(ll, 2f64.ln()));
        assert!(log_loss(&[1.0], &[true]).unwrap() < 1e-9);
    }

    #[test]
    fn seasonal_naive_repeats_the_last_season() {
        let h = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(seasonal_naive(&h, 2, 5), vec![4.0, 5.0, 4.0, 5.0, 4.0]);
        assert_eq!(seasonal_naive(&h, 7, 3), Vec::<f32>::new());
    }

    #[test]
    fn mase_of_a_hand_computed_case() {
        // In-sample with season 2: |3-1| + |4-2| + |7-3| + |8-4| = 12 over 4 -> scale 3.
        let insample = [1.0, 2.0, 3.0, 4.0, 7.0, 8.0];
        assert!(close(seasonal_naive_scale(&insample, 2).unwrap(), 3.0));
        // Errors 1, 2, 0 -> MAE 1 -> MASE 1/3.
        let m = mase(&[10.0, 10.0, 10.0], &[9.0, 12.0, 10.0], &insample, 2).unwrap();
        assert!(close(m, 1.0 / 3.0), "{m}");
        // The seasonal-naive forecast of a series that keeps its last season has MASE 0.
        let naive = seasonal_naive(&insample, 2, 2);
        assert_eq!(mase(&[7.0, 8.0], &naive, &insample, 2), Some(0.0));
        // A constant in-sample series has no scale.
        assert_eq!(mase(&[1.0], &[1.0], &[2.0; 10], 7), None);
    }

    #[test]
    fn coverage_of_an_interval() {
        let c =
            interval_coverage(&[1.0, 2.0, 3.0, 4.0], &[0.0, 2.0, 3.5, 0.0], &[1.0, 3.0, 4.0, 3.0]).unwrap();
        assert!(close(c, 0.5));
    }

    #[test]
    fn ndcg_and_recall_match_hand_computation() {
        // Relevant {3, 7}; ranked [3, 1, 7]: hits at ranks 0 and 2.
        let ranked = [3, 1, 7, 9];
        let relevant = [7, 3];
        assert!(close(recall_at_k(&ranked, &relevant, 10), 1.0));
        assert!(close(recall_at_k(&ranked, &relevant, 2), 0.5));
        let dcg = 1.0 + 1.0 / 4f64.log2(); // 1/log2(2) + 1/log2(4)
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!(close(ndcg_at_k(&ranked, &relevant, 10), dcg / idcg));
        assert!(close(ndcg_at_k(&ranked, &relevant, 2), 1.0 / idcg));
        // A perfect ranking is 1; no hit is 0; more relevant items than k caps the ideal at k.
        assert!(close(ndcg_at_k(&[7, 3], &relevant, 10), 1.0));
        assert!(close(ndcg_at_k(&[1, 2], &relevant, 10), 0.0));
        let many: Vec<u32> = (0..20).collect();
        assert!(close(ndcg_at_k(&[0, 1, 2], &many, 3), 1.0));
        assert!(close(recall_at_k(&[0, 1, 2], &many, 3), 3.0 / 20.0));
        assert_eq!(ndcg_at_k(&[1], &[], 10), 0.0);
    }

    #[test]
    fn top_k_orders_by_score_breaks_ties_by_index_and_excludes() {
        let scores = [0.5, 0.9, 0.5, f32::NAN, 0.7, 0.9];
        assert_eq!(top_k(&scores, 3, &[]), vec![1, 5, 4]);
        assert_eq!(top_k(&scores, 10, &[]), vec![1, 5, 4, 0, 2]);
        let mut exclude = vec![false; 6];
        exclude[1] = true;
        exclude[4] = true;
        assert_eq!(top_k(&scores, 3, &exclude), vec![5, 0, 2]);
        assert!(top_k(&scores, 0, &[]).is_empty());
    }
}
