//! An approximate-nearest-neighbour index over an embedding model's item embeddings, for the
//! first stage of recommend: the items whose `u · P_j + b_j` is largest for a user vector `u`.
//!
//! The model ranks by an inner product with a bias, which HNSW (a graph over a metric) does not
//! search directly. The index stores each item as `x_j = [P_j, b_j, sqrt(M² - |P_j|² - b_j²)]`
//! (`M` the largest `|[P_j, b_j]|`, so every `x_j` has length `M`) and is queried with
//! `q = [u, 1, 0]`: then `|q - x_j|² = |q|² + M² - 2 (u · P_j + b_j)`, so the nearest items are
//! exactly those of the largest score. The HNSW itself is the `instant-distance` crate.

use instant_distance::{Builder, HnswMap, Point, Search};

/// How the index is built and searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnOptions {
    /// Models with fewer items are searched by brute force (no index).
    pub min_items: usize,
    /// Candidates one search returns.
    pub candidates: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

impl AnnOptions {
    pub fn from_config(c: &shopmind_config::InferenceConfig) -> Self {
        Self {
            min_items: c.ann_min_items,
            candidates: c.ann_candidates,
            ef_construction: c.ann_ef_construction,
            ef_search: c.ann_ef_search,
        }
    }
}

#[derive(Clone, Debug)]
struct Augmented(Vec<f32>);

impl Point for Augmented {
    fn distance(&self, other: &Self) -> f32 {
        squared_distance(&self.0, &other.0)
    }
}

/// `|a - b|²` over the common length. Eight independent partial sums: a single running sum is a
/// chain of dependent float additions the compiler may not reorder (so it cannot use SIMD),
/// and the distance is nearly all of an HNSW search's time.
fn squared_distance(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..LANES {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

/// Items of the largest `|[P_j, b_j]|` every search adds to its candidates: at most this share
/// of `candidates` (and at least one).
const HEAD_SHARE: usize = 10;

/// The HNSW index of one model version's items.
pub struct AnnIndex {
    map: HnswMap<Augmented, u32>,
    dim: usize,
    candidates: usize,
    /// The items of the largest norm, largest first. In the augmented space they lie where the
    /// extra coordinate is near 0, apart from the rest, and the graph's neighbour pruning can
    /// leave them hard to reach; they are also the items that most often score highest (a
    /// popular item's large bias). `bench recommend` found the single most popular item missing
    /// from every served top 10 without them.
    heads: Vec<u32>,
}

impl std::fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnIndex").field("dim", &self.dim).field("candidates", &self.candidates).finish()
    }
}

impl AnnIndex {
    /// Builds the index of `embeddings` (row-major `items x dim`) and `bias` (one per item).
    /// Deterministic (a fixed seed). `None` when the shapes do not fit.
    pub fn build(embeddings: &[f32], bias: &[f32], dim: usize, options: &AnnOptions) -> Option<Self> {
        let n = bias.len();
        if dim == 0 || embeddings.len() != n * dim || n == 0 {
            return None;
        }
        let norms: Vec<f32> = (0..n)
            .map(|j| {
                embeddings[j * dim..(j + 1) * dim].iter().map(|x| x * x).sum::<f32>() + bias[j] * bias[j]
            })
            .collect();
        let max = norms.iter().copied().fold(0.0f32, f32::max);
        let points: Vec<Augmented> = (0..n)
            .map(|j| {
                let mut v = Vec::with_capacity(dim + 2);
                v.extend_from_slice(&embeddings[j * dim..(j + 1) * dim]);
                v.push(bias[j]);
                v.push((max - norms[j]).max(0.0).sqrt());
                Augmented(v)
            })
            .collect();
        let values: Vec<u32> = (0..n).map(|j| u32::try_from(j).unwrap_or(u32::MAX)).collect();
        let mut by_norm: Vec<u32> = values.clone();
        let head_count = (options.candidates / HEAD_SHARE).clamp(1, n);
        by_norm
            .select_nth_unstable_by(head_count - 1, |a, b| norms[*b as usize].total_cmp(&norms[*a as usize]));
        by_norm.truncate(head_count);
        by_norm.sort_by(|a, b| norms[*b as usize].total_cmp(&norms[*a as usize]).then(a.cmp(b)));
        let map = Builder::default()
            .ef_construction(options.ef_construction)
            .ef_search(options.ef_search.max(options.candidates))
            .seed(0x5eed)
            .build(points, values);
        Some(Self { map, dim, candidates: options.candidates, heads: by_norm })
    }

    /// The indexes of (about) the `candidates` items with the largest `u · P_j + b_j`, nearest
    /// first, then those of the head items (largest norm) the search did not find. A vector of
    /// the wrong length finds nothing.
    pub fn search(&self, user: &[f32]) -> Vec<usize> {
        if user.len() != self.dim {
            return Vec::new();
        }
        let mut q = Vec::with_capacity(self.dim + 2);
        q.extend_from_slice(user);
        q.push(1.0);
        q.push(0.0);
        // One search state per thread, reused: its buffers are the allocations of a search.
        thread_local! {
            static SEARCH: std::cell::RefCell<Search> = std::cell::RefCell::new(Search::default());
        }
        let mut found: Vec<usize> = SEARCH.with_borrow_mut(|search| {
            self.map
                .search(&Augmented(q), search)
                .take(self.candidates)
                .map(|item| *item.value as usize)
                .collect()
        });
        for &head in &self.heads {
            if !found.contains(&(head as usize)) {
                found.push(head as usize);
            }
        }
        found
    }
}

/// `u · P_j + b_j`: what the embedding graph's `scores` output holds for item `j`.
pub fn score(user: &[f32], embeddings: &[f32], bias: &[f32], j: usize) -> f32 {
    let dim = user.len();
    let Some(p) = embeddings.get(j * dim..(j + 1) * dim) else { return f32::NEG_INFINITY };
    user.iter().zip(p).map(|(a, b)| a * b).sum::<f32>() + bias.get(j).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic pseudo-random generator (xorshift), for test vectors.
    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut x = seed;
        (0..n * dim)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x % 2000) as f32 / 1000.0) - 1.0
            })
            .collect()
    }

    #[test]
    fn the_squared_distance_is_the_plain_sum_for_any_length() {
        for n in [0, 1, 7, 8, 9, 66, 130] {
            let a = vectors(n, 1, 3);
            let b = vectors(n, 1, 5);
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
            let fast = squared_distance(&a, &b);
            assert!((plain - fast).abs() <= 1e-4 * plain.max(1.0), "n {n}: {plain} vs {fast}");
        }
        assert_eq!(squared_distance(&[1.0, 2.0, 3.0], &[1.0]), 0.0, "over the common length");
    }

    #[test]
    fn the_index_finds_the_items_of_the_largest_inner_product_with_bias() {
        let (n, dim) = (800, 8);
        let emb = vectors(n, dim, 7);
        let bias: Vec<f32> = vectors(n, 1, 11).iter().map(|b| b * 0.5).collect();
        let options = AnnOptions { min_items: 2, candidates: 50, ef_construction: 40, ef_search: 100 };
        let index = AnnIndex::build(&emb, &bias, dim, &options).expect("shapes fit");
        let mut recall = 0usize;
        let users = 20;
        for u in 0..users {
            let user = vectors(1, dim, 100 + u as u64);
            let mut exact: Vec<(usize, f32)> = (0..n).map(|j| (j, score(&user, &emb, &bias, j))).collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let truth: std::collections::HashSet<usize> = exact.iter().take(10).map(|e| e.0).collect();
            let found = index.search(&user);
            assert!((50..=55).contains(&found.len()), "50 found and at most 5 heads: {}", found.len());
            let mut norms: Vec<(usize, f32)> = (0..n)
                .map(|j| {
                    (j, emb[j * dim..(j + 1) * dim].iter().map(|x| x * x).sum::<f32>() + bias[j] * bias[j])
                })
                .collect();
            norms.sort_by(|a, b| b.1.total_cmp(&a.1));
            assert!(norms[..5].iter().all(|(j, _)| found.contains(j)), "the head items are candidates");
            recall += found.iter().filter(|j| truth.contains(j)).count();
        }
        // Recall@10 within 50 candidates, over all users.
        let recall = recall as f64 / (users * 10) as f64;
        eprintln!("ANN recall@10 within 50 candidates, {n} items: {recall}");
        assert!(recall >= 0.9, "recall {recall}");
        assert!(index.search(&[1.0; 3]).is_empty(), "a vector of the wrong length finds nothing");
        assert!(AnnIndex::build(&emb, &bias, dim + 1, &options).is_none());
    }
}
