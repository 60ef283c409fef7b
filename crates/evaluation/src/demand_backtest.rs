//! Backtesting the demand forecaster: forecasts from given origins with the model's reference
//! computation, scored by MASE next to the seasonal-naive and moving-average forecasts, with the
//! interval's coverage (what `shopmind eval --task demand` reports and the trainer's holdout
//! metrics).

use serde::Serialize;
use shopmind_training::demand::{DemandData, DemandModel, HistoryWindow, SEASON};

use crate::metrics::{interval_coverage, mase, seasonal_naive};

/// The units of days `end - len .. end` from sparse `(day, units)` pairs, oldest first: the
/// history window's computation, for actual and in-sample days.
fn daily_units(demand: &[(i64, i64)], end: i64, len: usize) -> Vec<f32> {
    HistoryWindow::from_demand(demand, end, len).history
}

/// One item's forecast in a backtest, kept for plots.
#[derive(Clone, Debug, Serialize)]
pub struct BacktestExample {
    pub item: String,
    /// First forecast day.
    pub origin: i64,
    pub history: Vec<f32>,
    pub actual: Vec<f32>,
    pub forecast: Vec<f32>,
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
    pub seasonal_naive: Vec<f32>,
}

/// What [`backtest`] measured. MASE values are means over the (series, origin) pairs whose
/// in-sample seasonal-naive error is not zero; every method is scored on the same pairs.
#[derive(Clone, Debug, Serialize)]
pub struct BacktestReport {
    pub origins: Vec<i64>,
    pub horizon: usize,
    /// (series, origin) pairs forecast, and those with a MASE scale.
    pub windows: usize,
    pub scored: usize,
    pub mase_model: f64,
    pub mase_seasonal_naive: f64,
    /// The mean of the last 28 days, flat.
    pub mase_moving_average: f64,
    /// `mase_model / mase_seasonal_naive`.
    pub ratio_to_seasonal_naive: f64,
    /// MASE of the model per forecast step (1-based step `k` at index `k - 1`).
    pub mase_model_by_step: Vec<f64>,
    /// Share of actual values inside the interval, over every day of every window.
    pub coverage: f64,
    pub nominal_coverage: f64,
    pub mean_interval_width: f64,
    /// Total units over all test days: actual and forecast.
    pub total_actual: f64,
    pub total_forecast: f64,
    pub examples: Vec<BacktestExample>,
}

/// Forecasts every series from each origin with the model's reference computation and scores
/// it, next to the seasonal-naive (last week repeated) and 28-day moving-average forecasts.
/// The MASE scale is the in-sample seasonal-naive error of all days from `data.first_day` to
/// the origin. `examples` keeps the last origin's windows of the `examples` items with the most
/// units before it.
pub fn backtest(model: &DemandModel, data: &DemandData, origins: &[i64], examples: usize) -> BacktestReport {
    let h = model.horizon;
    let mut sums = (0f64, 0f64, 0f64);
    let mut by_step = vec![0f64; h];
    let (mut windows, mut scored) = (0usize, 0usize);
    let (mut actual_all, mut lower_all, mut upper_all) = (Vec::new(), Vec::new(), Vec::new());
    let (mut total_actual, mut total_forecast) = (0f64, 0f64);
    let mut kept = Vec::new();
    for s in &data.series {
        for &o in origins {
            windows += 1;
            let w = HistoryWindow::from_demand(&s.days, o, model.history_days);
            let f = model.forecast_reference(&w.history, w.first_weekday);
            let actual = daily_units(&s.days, o + h as i64, h);
            let insample = daily_units(&s.days, o, (o - data.first_day).max(0) as usize);
            let naive = seasonal_naive(&insample, SEASON, h);
            let last28 = &insample[insample.len().saturating_sub(28)..];
            let ma = vec![last28.iter().sum::<f32>() / last28.len().max(1) as f32; h];
            actual_all.extend_from_slice(&actual);
            lower_all.extend_from_slice(&f.lower);
            upper_all.extend_from_slice(&f.upper);
            total_actual += actual.iter().map(|v| f64::from(*v)).sum::<f64>();
            total_forecast += f.forecast.iter().map(|v| f64::from(*v)).sum::<f64>();
            if let (Some(m), Some(n), Some(a)) = (
                mase(&actual, &f.forecast, &insample, SEASON),
                mase(&actual, &naive, &insample, SEASON),
                mase(&actual, &ma, &insample, SEASON),
            ) {
                scored += 1;
                sums.0 += m;
                sums.1 += n;
                sums.2 += a;
                for (k, step) in by_step.iter_mut().enumerate() {
                    *step += mase(&actual[k..=k], &f.forecast[k..=k], &insample, SEASON).unwrap_or(0.0);
                }
            }
            if Some(&o) == origins.last() {
                let volume: f32 = insample.iter().sum();
                kept.push((
                    volume,
                    BacktestExample {
                        item: s.item.clone(),
                        origin: o,
                        history: w.history,
                        actual,
                        forecast: f.forecast,
                        lower: f.lower,
                        upper: f.upper,
                        seasonal_naive: naive,
                    },
                ));
            }
        }
    }
    kept.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.item.cmp(&b.1.item)));
    let div = |x: f64| if scored > 0 { x / scored as f64 } else { f64::NAN };
    let (mase_model, mase_naive) = (div(sums.0), div(sums.1));
    let width: f64 = upper_all.iter().zip(&lower_all).map(|(u, l)| f64::from(u - l)).sum::<f64>()
        / upper_all.len().max(1) as f64;
    BacktestReport {
        origins: origins.to_vec(),
        horizon: h,
        windows,
        scored,
        mase_model,
        mase_seasonal_naive: mase_naive,
        mase_moving_average: div(sums.2),
        ratio_to_seasonal_naive: mase_model / mase_naive,
        mase_model_by_step: by_step.into_iter().map(div).collect(),
        coverage: interval_coverage(&actual_all, &lower_all, &upper_all).unwrap_or(f64::NAN),
        nominal_coverage: model.coverage,
        mean_interval_width: width,
        total_actual,
        total_forecast,
        examples: kept.into_iter().take(examples).map(|(_, e)| e).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shopmind_training::demand::{DemandConfig, train, weekday};
    use shopmind_training::test_support::synthetic_demand;

    use super::*;

    #[test]
    fn the_forecaster_beats_seasonal_naive_on_a_trending_weekly_series() {
        let data = synthetic_demand(20, 210, 7);
        let test_start = data.end_day - 28;
        let train_data = DemandData { end_day: test_start, ..data.clone() };
        let model = train(&train_data, &DemandConfig::default()).unwrap();
        let report = backtest(&model, &data, &[test_start, test_start + 7, test_start + 14], 3);
        assert_eq!(report.scored, 60);
        assert!(report.mase_model < report.mase_seasonal_naive, "{report:?}");
        assert!(report.ratio_to_seasonal_naive < 0.9, "ratio {}", report.ratio_to_seasonal_naive);
        // The weekend peak is forecast: Saturdays above Wednesdays in the first example.
        let ex = &report.examples[0];
        let day = |k: usize| weekday(ex.origin + k as i64);
        let sat = (0..14).find(|&k| day(k) == 5).unwrap();
        let wed = (0..14).find(|&k| day(k) == 2).unwrap();
        assert!(ex.forecast[sat] > ex.forecast[wed] * 1.3, "{:?}", ex.forecast);
        // The 80% interval covers roughly 80%.
        assert!((0.65..=0.95).contains(&report.coverage), "coverage {}", report.coverage);
        assert!(ex.lower.iter().zip(&ex.forecast).all(|(l, f)| l <= f));
        assert!(ex.upper.iter().zip(&ex.forecast).all(|(u, f)| u >= f));
    }
}
