//! Implicit-feedback matrix factorisation by alternating least squares (Hu, Koren and Volinsky,
//! "Collaborative Filtering for Implicit Feedback Datasets", 2008): the offline baseline of the
//! embedding family.
//!
//! Every (user, item) pair that occurs `c` times has preference 1 and confidence `1 + alpha * c`;
//! every other pair preference 0 and confidence 1. Each half-step solves, per row, the `d x d`
//! system `(YᵀY + λI + Σ_j alpha c_j y_j y_jᵀ) x = Σ_j (1 + alpha c_j) y_j` by Cholesky
//! decomposition (in f64), so a step costs `O(nnz d² + rows d³)`. Rows are split over
//! `threads` scoped threads; each row is solved independently of the others, so the result does
//! not depend on the thread count.

use crate::rng::SplitMix64;

/// ALS parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct AlsConfig {
    pub factors: usize,
    pub iterations: usize,
    /// λ, the L2 penalty of every row.
    pub regularization: f32,
    /// Confidence per occurrence.
    pub alpha: f32,
    pub seed: u64,
    /// Worker threads (at least 1).
    pub threads: usize,
}

impl Default for AlsConfig {
    fn default() -> Self {
        Self { factors: 64, iterations: 12, regularization: 1.0, alpha: 10.0, seed: 1, threads: 2 }
    }
}

/// User and item factors, row-major (`users x factors`, `items x factors`).
#[derive(Clone, Debug, PartialEq)]
pub struct AlsModel {
    pub factors: usize,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
}

impl AlsModel {
    pub fn user(&self, u: usize) -> &[f32] {
        self.user_factors.get(u * self.factors..(u + 1) * self.factors).unwrap_or(&[])
    }

    pub fn item(&self, i: usize) -> &[f32] {
        self.item_factors.get(i * self.factors..(i + 1) * self.factors).unwrap_or(&[])
    }

    /// `scores[j] = x_u · y_j` for every item.
    pub fn score_user(&self, u: usize) -> Vec<f32> {
        let x = self.user(u);
        self.item_factors.chunks_exact(self.factors.max(1)).map(|y| dot(x, y)).collect()
    }
}

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The dot product every model here uses (exposed for benchmarks' raw baselines).
pub fn dot_public(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

/// Sparse rows: `(column, count)` per row, columns ascending, counts of repeated pairs summed.
fn rows_of(per_row: impl Iterator<Item = (usize, usize)>, rows: usize) -> Vec<Vec<(u32, f32)>> {
    let mut out: Vec<Vec<(u32, f32)>> = vec![Vec::new(); rows];
    for (r, c) in per_row {
        if let Some(row) = out.get_mut(r) {
            row.push((c as u32, 1.0));
        }
    }
    for row in &mut out {
        row.sort_by_key(|&(c, _)| c);
        row.dedup_by(|next, kept| {
            if next.0 == kept.0 {
                kept.1 += next.1;
                true
            } else {
                false
            }
        });
    }
    out
}

/// Trains ALS on `per_user[u]` = the items user `u` interacted with (any order, repeats count).
/// Items are `0..n_items`; indices out of range are ignored. Deterministic for a seed.
pub fn train_als(per_user: &[Vec<u32>], n_items: usize, cfg: &AlsConfig) -> AlsModel {
    train_als_with_progress(per_user, n_items, cfg, &mut |_, _| {})
}

/// [`train_als`], calling `progress(iterations done, iterations)` after each iteration.
pub fn train_als_with_progress(
    per_user: &[Vec<u32>],
    n_items: usize,
    cfg: &AlsConfig,
    progress: &mut dyn FnMut(usize, usize),
) -> AlsModel {
    let d = cfg.factors.max(1);
    let n_users = per_user.len();
    let pairs = || {
        per_user
            .iter()
            .enumerate()
            .flat_map(|(u, items)| items.iter().map(move |&i| (u, i as usize)))
            .filter(|&(_, i)| i < n_items)
    };
    let by_user = rows_of(pairs(), n_users);
    let by_item = rows_of(pairs().map(|(u, i)| (i, u)), n_items);

    let mut rng = SplitMix64::new(cfg.seed);
    let scale = 0.1 / (d as f32).sqrt();
    let mut user_factors = vec![0f32; n_users * d];
    let mut item_factors: Vec<f32> = (0..n_items * d).map(|_| (rng.unit_f32() - 0.5) * 2.0 * scale).collect();
    for it in 0..cfg.iterations {
        solve_side(&by_user, &item_factors, &mut user_factors, d, cfg);
        solve_side(&by_item, &user_factors, &mut item_factors, d, cfg);
        progress(it + 1, cfg.iterations);
    }
    if cfg.iterations == 0 {
        solve_side(&by_user, &item_factors, &mut user_factors, d, cfg);
    }
    AlsModel { factors: d, user_factors, item_factors }
}

/// Solves every row of `out` given the fixed factors `other` of the other side.
fn solve_side(rows: &[Vec<(u32, f32)>], other: &[f32], out: &mut [f32], d: usize, cfg: &AlsConfig) {
    let gram = gram(other, d);
    let threads = cfg.threads.max(1);
    let per = rows.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (chunk_rows, chunk_out) in rows.chunks(per).zip(out.chunks_mut(per * d)) {
            let gram = &gram;
            s.spawn(move || {
                let mut a = vec![0f64; d * d];
                let mut b = vec![0f64; d];
                for (row, x) in chunk_rows.iter().zip(chunk_out.chunks_exact_mut(d)) {
                    a.copy_from_slice(gram);
                    for k in 0..d {
                        a[k * d + k] += f64::from(cfg.regularization);
                    }
                    b.iter_mut().for_each(|v| *v = 0.0);
                    for &(j, count) in row {
                        let Some(y) = other.get(j as usize * d..(j as usize + 1) * d) else { continue };
                        let extra = f64::from(cfg.alpha * count);
                        for p in 0..d {
                            let yp = f64::from(y[p]);
                            b[p] += (1.0 + extra) * yp;
                            let ayp = extra * yp;
                            for q in 0..=p {
                                a[p * d + q] += ayp * f64::from(y[q]);
                            }
                        }
                    }
                    if row.is_empty() || !cholesky_solve(&mut a, &mut b, d) {
                        x.iter_mut().for_each(|v| *v = 0.0);
                    } else {
                        for (xv, bv) in x.iter_mut().zip(&b) {
                            *xv = *bv as f32;
                        }
                    }
                }
            });
        }
    });
}

/// `YᵀY` (lower triangle filled; the solver reads only the lower triangle).
fn gram(y: &[f32], d: usize) -> Vec<f64> {
    let mut g = vec![0f64; d * d];
    for row in y.chunks_exact(d) {
        for p in 0..d {
            let rp = f64::from(row[p]);
            for q in 0..=p {
                g[p * d + q] += rp * f64::from(row[q]);
            }
        }
    }
    g
}

/// Solves `A x = b` for a symmetric positive definite `A` given by its lower triangle (row-major
/// `d x d`); `b` becomes `x`, `A` is overwritten by its Cholesky factor. `false` if `A` is not
/// positive definite.
pub(crate) fn cholesky_solve(a: &mut [f64], b: &mut [f64], d: usize) -> bool {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        if diag <= 0.0 || !diag.is_finite() {
            return false;
        }
        let l = diag.sqrt();
        a[j * d + j] = l;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / l;
        }
    }
    // L z = b, then Lᵀ x = z.
    for i in 0..d {
        let mut v = b[i];
        for k in 0..i {
            v -= a[i * d + k] * b[k];
        }
        b[i] = v / a[i * d + i];
    }
    for i in (0..d).rev() {
        let mut v = b[i];
        for k in i + 1..d {
            v -= a[k * d + i] * b[k];
        }
        b[i] = v / a[i * d + i];
    }
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cholesky_solves_a_known_system() {
        // A = [[4, 2], [2, 3]], b = [2, 1] -> x = [0.5, 0].
        let mut a = vec![4.0, 0.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        assert!(cholesky_solve(&mut a, &mut b, 2));
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
        let mut not_pd = vec![1.0, 0.0, 2.0, 1.0];
        assert!(!cholesky_solve(&mut not_pd, &mut [1.0, 1.0], 2));
    }

    /// Two blocks of users and items: ALS must rank a user's own block above the other.
    #[test]
    fn als_separates_two_communities_and_is_thread_count_independent() {
        let mut per_user = Vec::new();
        for u in 0..40u32 {
            let base = if u < 20 { 0 } else { 10 };
            // Each user sees 6 of their block's 10 items.
            per_user.push((0..6).map(|k| base + (u + k * 3) % 10).collect::<Vec<u32>>());
        }
        let cfg =
            AlsConfig { factors: 8, iterations: 8, regularization: 0.1, alpha: 5.0, seed: 3, threads: 1 };
        let m = train_als(&per_user, 20, &cfg);
        for (u, seen) in per_user.iter().enumerate() {
            let s = m.score_user(u);
            let own = if u < 20 { 0..10 } else { 10..20 };
            let best_unseen = (0..20u32)
                .filter(|i| !seen.contains(i))
                .max_by(|&a, &b| s[a as usize].total_cmp(&s[b as usize]));
            assert!(own.contains(&best_unseen.unwrap()), "user {u}: {s:?}");
        }
        let m3 = train_als(&per_user, 20, &AlsConfig { threads: 3, ..cfg });
        assert_eq!(m, m3);
    }
}
