//! A seeded generator with the few distributions the simulator needs, none of which panic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) struct Rand(StdRng);

impl Rand {
    pub(crate) fn new(seed: u64) -> Self {
        Self(StdRng::seed_from_u64(seed))
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        self.0.random::<f64>()
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.0.random_range(0..n) }
    }

    /// Uniform in `lo..=hi`; `lo` when the range is empty.
    pub(crate) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo { lo } else { self.0.random_range(lo..=hi) }
    }

    /// One of `options`, uniformly.
    pub(crate) fn pick<'a, T: ?Sized>(&mut self, options: &[&'a T]) -> Option<&'a T> {
        options.get(self.below(options.len())).copied()
    }

    /// Standard normal (Box-Muller).
    pub(crate) fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit(); // (0, 1]
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Exponential with the given mean.
    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Gamma(shape, 1) by Marsaglia and Tsang; shapes below one are boosted.
    pub(crate) fn gamma(&mut self, shape: f64) -> f64 {
        if !(shape > 0.0 && shape.is_finite()) {
            return 0.0;
        }
        if shape < 1.0 {
            let u = 1.0 - self.unit();
            return self.gamma(shape + 1.0) * u.powf(1.0 / shape);
        }
        let d = shape - 1.0 / 3.0;
        let c = 1.0 / (9.0 * d).sqrt();
        // Accepts with probability above 0.95 per round; the bound only guards the pathological.
        for _ in 0..64 {
            let x = self.normal();
            let v = (1.0 + c * x).powi(3);
            if v <= 0.0 {
                continue;
            }
            let u = 1.0 - self.unit();
            if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
                return d * v;
            }
        }
        d
    }

    /// Poisson with mean `lambda` (Knuth below 30, a rounded normal above).
    pub(crate) fn poisson(&mut self, lambda: f64) -> u32 {
        if !(lambda > 0.0 && lambda.is_finite()) {
            return 0;
        }
        if lambda < 30.0 {
            let limit = (-lambda).exp();
            let mut k = 0u32;
            let mut p = self.unit();
            while p > limit && k < 1_000 {
                k += 1;
                p *= self.unit();
            }
            k
        } else {
            let x = (lambda + lambda.sqrt() * self.normal()).round();
            if x <= 0.0 { 0 } else { x.min(f64::from(u32::MAX)) as u32 }
        }
    }

    /// Count of successes before the first failure, with the given mean (capped).
    pub(crate) fn geometric(&mut self, mean: f64, cap: u32) -> u32 {
        let cont = if mean > 0.0 { mean / (1.0 + mean) } else { 0.0 };
        let mut k = 0;
        while k < cap && self.chance(cont) {
            k += 1;
        }
        k
    }

    /// An index drawn with probability proportional to `weights` (non-negative); the last
    /// index with positive weight absorbs rounding; 0 when all are zero.
    pub(crate) fn weighted(&mut self, weights: impl Iterator<Item = f64> + Clone) -> usize {
        let total: f64 = weights.clone().sum();
        if !(total > 0.0 && total.is_finite()) {
            return 0;
        }
        let mut r = self.unit() * total;
        let mut last = 0;
        for (i, w) in weights.enumerate() {
            if w > 0.0 {
                last = i;
                if r < w {
                    return i;
                }
                r -= w;
            }
        }
        last
    }

    /// An index into a cumulative weight table (non-decreasing, last entry the total).
    pub(crate) fn cumulative(&mut self, cum: &[f64]) -> usize {
        let total = cum.last().copied().unwrap_or(0.0);
        let r = self.unit() * total;
        cum.partition_point(|&c| c <= r).min(cum.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(n: usize, mut f: impl FnMut() -> f64) -> f64 {
        (0..n).map(|_| f()).sum::<f64>() / n as f64
    }

    #[test]
    fn distributions_have_their_means() {
        let mut r = Rand::new(7);
        for lambda in [0.4, 3.0, 50.0] {
            let m = mean(20_000, || f64::from(r.poisson(lambda)));
            assert!((m - lambda).abs() < lambda * 0.05 + 0.02, "poisson({lambda}) mean {m}");
        }
        for shape in [0.3, 1.0, 4.0] {
            let m = mean(20_000, || r.gamma(shape));
            assert!((m - shape).abs() < shape * 0.06, "gamma({shape}) mean {m}");
        }
        let m = mean(20_000, || f64::from(r.geometric(3.0, 1000)));
        assert!((m - 3.0).abs() < 0.15, "geometric mean {m}");
        let m = mean(20_000, || r.exponential(2.0));
        assert!((m - 2.0).abs() < 0.1, "exponential mean {m}");
    }

    #[test]
    fn weighted_choices_follow_weights_and_skip_zeros() {
        let mut r = Rand::new(1);
        let w = [0.0, 1.0, 0.0, 3.0, 0.0];
        let mut hits = [0u32; 5];
        for _ in 0..8_000 {
            hits[r.weighted(w.iter().copied())] += 1;
            hits[r.cumulative(&[0.0, 1.0, 1.0, 4.0, 4.0])] += 1;
        }
        assert_eq!((hits[0], hits[2], hits[4]), (0, 0, 0));
        let ratio = f64::from(hits[3]) / f64::from(hits[1]);
        assert!((ratio - 3.0).abs() < 0.3, "{ratio}");
        assert_eq!(r.weighted([0.0, 0.0].into_iter()), 0);
        assert_eq!(r.cumulative(&[]), 0);
        assert_eq!((r.below(0), r.between(5, 5), r.between(5, 1)), (0, 5, 5));
    }
}
