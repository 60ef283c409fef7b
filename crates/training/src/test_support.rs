//! Seeded synthetic data for tests, here and in the crates that build on these models (the
//! `test-support` feature).

use shopmind_domain::InteractionKind;

use crate::covisit::TrainingInteraction;
use crate::demand::{DemandData, DemandSeries, weekday};

/// A view of `item` by `user` at `at_ms`.
pub fn view(user: &str, item: &str, at_ms: i64) -> TrainingInteraction {
    TrainingInteraction { user: user.into(), item: item.into(), kind: InteractionKind::View, at_ms }
}

/// Three users and three items: `a` seen by all three, `b` and `c` by two each; `u3` sees `a`
/// twice. Co-visitation: `C(a,b) = C(a,c) = 2`, `C(b,c) = 1`.
pub fn toy_interactions() -> Vec<TrainingInteraction> {
    vec![
        view("u1", "a", 1),
        view("u1", "b", 2),
        view("u2", "a", 3),
        view("u2", "b", 4),
        view("u2", "c", 5),
        view("u3", "a", 6),
        view("u3", "c", 7),
        view("u3", "a", 8),
    ]
}

/// A noisy weekly series with a trend: `level * (1 + 0.02 t/7) * season[weekday]`, plus
/// seeded noise, for `n` items of different levels.
pub fn synthetic_demand(n_items: usize, days: i64, seed: u64) -> DemandData {
    let season = [1.0, 0.9, 0.9, 1.0, 1.1, 1.6, 1.5];
    let mut state = seed;
    let mut unit = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let first_day = 20_458; // a Monday
    let series = (0..n_items)
        .map(|i| {
            let level = 5.0 + 3.0 * i as f64;
            let days = (0..days)
                .map(|t| {
                    let mean =
                        level * (1.0 + 0.02 * t as f64 / 7.0) * season[weekday(first_day + t) as usize];
                    let noise = (unit() - 0.5) * 0.6 * mean;
                    (first_day + t, (mean + noise).round().max(0.0) as i64)
                })
                .collect();
            DemandSeries { item: format!("i{i}"), days }
        })
        .collect();
    DemandData { series, first_day, end_day: first_day + days }
}
