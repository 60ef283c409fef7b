//! Demand forecasting: units ordered per item and day, for the next `horizon` days, with a
//! prediction interval.
//!
//! **Data.** The feature service keeps each item's daily units (`sm:{t:i:<item>}:demand`, read
//! back as `ItemFeatures::demand`: `(day since 1970-01-01, units)` pairs, days in UTC). Offline,
//! [`demand_from_events`] builds the same pairs from `order_placed` events (the same day
//! bucketing, `at.div_euclid(1 day)`, as the feature writes). Both paths turn pairs into the
//! model's input with one function, [`HistoryWindow::from_demand`].
//!
//! **The model** is global across items. A window's history (the last `history_days` days) is
//! divided by its mean `s`; the normalised next `horizon` days are a linear function of the
//! normalised history plus a term per (weekday of the first forecast day, step):
//! `p = x W + V[weekday]`, `forecast = s * max(p, 0)`. `W` and `V` are fitted by weighted ridge
//! regression (each window weighs `s`, so squared errors are measured relative to the level, as
//! for counts). Intervals come from the quantiles, per step, of calibration residuals scaled by
//! `sqrt(s)` (windows later than the fitting windows): `lower = max(forecast + q_lo sqrt(s), 0)`,
//! `upper = forecast + q_hi sqrt(s)`. [`DemandModel::to_onnx`] exports all of it as one graph;
//! `shopmind-serving` serves it from ONNX Runtime; `shopmind-evaluation` backtests it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shopmind_domain::{Event, Payload};
use shopmind_onnx::{self as onnx, DataType, Dim, Manifest, TensorSpec, TrainingStats};

use crate::error::{Result, TrainingError};
use crate::linalg::solve_spd;

/// Model role written to [`Manifest::name`].
pub const NAME: &str = "demand";
/// Model family written to [`Manifest::kind`].
pub const KIND: &str = "demand-ridge";
/// Graph input: daily units of the last `history_days` days, oldest first, float `[batch, T]`.
pub const INPUT_HISTORY: &str = "history";
/// Graph input: weekday of the first forecast day (0 = Monday … 6 = Sunday), int64 `[batch]`.
pub const INPUT_WEEKDAY: &str = "first_weekday";
/// Graph output: the point forecast, float `[batch, H]`.
pub const OUTPUT_FORECAST: &str = "forecast";
/// Graph output: the interval's lower end, float `[batch, H]`.
pub const OUTPUT_LOWER: &str = "lower";
/// Graph output: the interval's upper end, float `[batch, H]`.
pub const OUTPUT_UPPER: &str = "upper";
/// The symbolic batch dimension.
pub const BATCH_DIM: &str = "batch";
/// The seasonal period, in days.
pub const SEASON: usize = 7;

const DAY_MS: i64 = 86_400_000;
/// Below this mean daily demand a history counts as empty (its forecast is 0).
const MIN_LEVEL: f32 = 1e-6;

/// Days since 1970-01-01 (UTC) of a Unix time in milliseconds, as the feature store buckets it.
pub fn day_of(unix_ms: i64) -> i64 {
    unix_ms.div_euclid(DAY_MS)
}

/// Weekday of a day number: 0 = Monday … 6 = Sunday (1970-01-01 was a Thursday).
pub fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// One item's daily demand, as the feature store holds it: `(day, units)`, days ascending,
/// days without orders absent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemandSeries {
    pub item: String,
    pub days: Vec<(i64, i64)>,
}

/// Demand of many items over an observed period `[first_day, end_day)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemandData {
    pub series: Vec<DemandSeries>,
    pub first_day: i64,
    /// The first day not observed.
    pub end_day: i64,
}

/// Daily units per item from `order_placed` events (one tenant's), bucketed by UTC day like the
/// feature store's `demand` hash. The observed period runs from the day of the earliest event
/// to the day after the latest (any event kind counts). Items without orders have no series.
/// Series are sorted by item id.
pub fn demand_from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> DemandData {
    let mut per_item: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    for e in events {
        let day = day_of(e.occurred_at.0);
        first = first.min(day);
        last = last.max(day);
        if let Payload::OrderPlaced { lines, .. } = &e.payload {
            for l in lines {
                *per_item.entry(l.item.to_string()).or_default().entry(day).or_default() +=
                    i64::from(l.quantity);
            }
        }
    }
    if first > last {
        return DemandData { series: Vec::new(), first_day: 0, end_day: 0 };
    }
    let series = per_item
        .into_iter()
        .map(|(item, days)| DemandSeries { item, days: days.into_iter().collect() })
        .collect();
    DemandData { series, first_day: first, end_day: last + 1 }
}

/// The model's input for one item: the dense daily history before a forecast day.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryWindow {
    /// Units of days `first_forecast_day - len .. first_forecast_day`, oldest first.
    pub history: Vec<f32>,
    /// [`weekday`] of the first forecast day.
    pub first_weekday: i64,
}

impl HistoryWindow {
    /// The window of `len` days before `first_forecast_day` from sparse `(day, units)` pairs
    /// (what `ItemFeatures::demand` holds; any order). Days without a pair are 0. Training and
    /// serving both build their inputs with this function.
    pub fn from_demand(demand: &[(i64, i64)], first_forecast_day: i64, len: usize) -> Self {
        Self { history: dense(demand, first_forecast_day, len), first_weekday: weekday(first_forecast_day) }
    }
}

/// Units of days `end - len .. end` from sparse pairs, oldest first.
fn dense(demand: &[(i64, i64)], end: i64, len: usize) -> Vec<f32> {
    let start = end - len as i64;
    let mut out = vec![0f32; len];
    for &(day, units) in demand {
        if day >= start && day < end {
            out[(day - start) as usize] += units as f32;
        }
    }
    out
}

/// Training parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct DemandConfig {
    /// Days of history the model reads (`T`).
    pub history_days: usize,
    /// Days forecast (`H`).
    pub horizon: usize,
    /// Ridge penalty on the history weights (the weekday terms are barely penalised).
    pub ridge: f64,
    /// Nominal coverage of the interval, e.g. 0.8 for the 10% and 90% quantiles.
    pub coverage: f64,
    /// Share of the latest forecast origins kept out of the first fit to calibrate the
    /// interval; the final weights are then fitted on all origins.
    pub calibration_share: f64,
    /// Days between consecutive training origins.
    pub stride: usize,
}

impl Default for DemandConfig {
    fn default() -> Self {
        Self { history_days: 56, horizon: 14, ridge: 10.0, coverage: 0.8, calibration_share: 0.25, stride: 1 }
    }
}

/// What the model file says about its windows; stored under [`shopmind_onnx::SPEC_KEY`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DemandSpec {
    pub history_days: usize,
    pub horizon: usize,
    pub coverage: f64,
}

/// A trained forecaster; see the module docs for the function it computes.
#[derive(Clone, Debug, PartialEq)]
pub struct DemandModel {
    pub history_days: usize,
    pub horizon: usize,
    /// `W`, `history_days x horizon`, row-major.
    pub weights: Vec<f32>,
    /// `V`, `7 x horizon`, row-major; row `d` applies when the first forecast day is weekday `d`.
    pub weekday_terms: Vec<f32>,
    /// Per step, the lower and upper residual quantiles (in units of `sqrt(level)`).
    pub lower_q: Vec<f32>,
    pub upper_q: Vec<f32>,
    pub coverage: f64,
    /// `users`: series; `interactions`: training windows; times: first and last observed day.
    pub stats: TrainingStats,
}

/// A forecast for one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Forecast {
    pub forecast: Vec<f32>,
    pub lower: Vec<f32>,
    pub upper: Vec<f32>,
}

struct Window {
    x: Vec<f32>,
    weekday: usize,
    level: f32,
    target: Vec<f32>,
}

fn level_of(history: &[f32]) -> f32 {
    history.iter().sum::<f32>() * (1.0 / history.len().max(1) as f32)
}

fn windows(data: &DemandData, cfg: &DemandConfig, origins: &[i64]) -> Vec<Window> {
    let mut out = Vec::new();
    for s in &data.series {
        for &o in origins {
            let w = HistoryWindow::from_demand(&s.days, o, cfg.history_days);
            let level = level_of(&w.history);
            if level < MIN_LEVEL {
                continue;
            }
            let target = dense(&s.days, o + cfg.horizon as i64, cfg.horizon);
            out.push(Window { x: w.history, weekday: w.first_weekday as usize, level, target });
        }
    }
    out
}

/// The `q` quantile (`0 <= q <= 1`) of `values` by linear interpolation between order
/// statistics; `None` when empty.
fn quantile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    Some(v[lo] * (1.0 - frac) + v[hi] * frac)
}

/// Weighted ridge: returns (W, V) from windows.
fn fit_ridge(ws: &[Window], cfg: &DemandConfig) -> Result<(Vec<f32>, Vec<f32>)> {
    let (t, h) = (cfg.history_days, cfg.horizon);
    let d = t + SEASON;
    let mut a = vec![0f64; d * d];
    let mut b = vec![0f64; d * h];
    let mut z = vec![0f64; d];
    for w in ws {
        let level = f64::from(w.level);
        let safe = w.level.max(MIN_LEVEL);
        for (zi, x) in z.iter_mut().zip(&w.x) {
            *zi = f64::from(x / safe);
        }
        for k in 0..SEASON {
            z[t + k] = if k == w.weekday { 1.0 } else { 0.0 };
        }
        for i in 0..d {
            if z[i] == 0.0 {
                continue;
            }
            let wz = level * z[i];
            for j in 0..=i {
                a[i * d + j] += wz * z[j];
            }
            for (k, y) in w.target.iter().enumerate() {
                b[i * h + k] += wz * f64::from(*y) / level;
            }
        }
    }
    for i in 0..d {
        for j in 0..i {
            a[j * d + i] = a[i * d + j];
        }
        a[i * d + i] += if i < t { cfg.ridge } else { 1e-6 };
    }
    let sol = solve_spd(&a, d, &b, h)?;
    let weights = sol[..t * h].iter().map(|v| *v as f32).collect();
    let weekday_terms = sol[t * h..].iter().map(|v| *v as f32).collect();
    Ok((weights, weekday_terms))
}

/// Trains the forecaster on every window of the observed period: origins (first forecast days)
/// from `first_day + history_days` to `end_day - horizon`, every `stride` days. Windows whose
/// history is all zeros are skipped (their forecast is 0 by construction). The latest
/// `calibration_share` of origins first serve to calibrate the interval against a fit on the
/// earlier ones; the final weights use all origins.
pub fn train(data: &DemandData, cfg: &DemandConfig) -> Result<DemandModel> {
    if cfg.history_days == 0 || cfg.horizon == 0 || cfg.stride == 0 {
        return Err(TrainingError::Failed("history_days, horizon and stride must be positive".into()));
    }
    let coverage_ok = cfg.coverage > 0.0 && cfg.coverage < 1.0;
    if !coverage_ok || !(0.0..1.0).contains(&cfg.calibration_share) {
        return Err(TrainingError::Failed(
            "coverage must be in (0, 1) and calibration_share in [0, 1)".into(),
        ));
    }
    let first = data.first_day + cfg.history_days as i64;
    let last = data.end_day - cfg.horizon as i64;
    let origins: Vec<i64> = (first..=last).step_by(cfg.stride).collect();
    let n_cal = ((origins.len() as f64) * cfg.calibration_share).round() as usize;
    if origins.len() < 2 || n_cal >= origins.len() {
        return Err(TrainingError::Failed(format!(
            "{} days observed: too few for {} days of history, {} of horizon and a calibration period",
            data.end_day - data.first_day,
            cfg.history_days,
            cfg.horizon
        )));
    }
    let (fit_origins, cal_origins) = origins.split_at(origins.len() - n_cal);
    let fit_windows = windows(data, cfg, fit_origins);
    if fit_windows.is_empty() {
        return Err(TrainingError::Failed("no window with any demand".into()));
    }
    let (weights, weekday_terms) = fit_ridge(&fit_windows, cfg)?;
    let mut model = DemandModel {
        history_days: cfg.history_days,
        horizon: cfg.horizon,
        weights,
        weekday_terms,
        lower_q: vec![0.0; cfg.horizon],
        upper_q: vec![0.0; cfg.horizon],
        coverage: cfg.coverage,
        stats: TrainingStats::default(),
    };

    // Calibration: residuals of the first fit on the later windows (or on the fitting windows
    // themselves without a calibration period), scaled by sqrt(level).
    let cal_windows = if cal_origins.is_empty() { fit_windows } else { windows(data, cfg, cal_origins) };
    let mut residuals = vec![Vec::with_capacity(cal_windows.len()); cfg.horizon];
    for w in &cal_windows {
        let f = model.forecast_reference(&w.x, w.weekday as i64);
        let r = f64::from(w.level.sqrt());
        for (k, res) in residuals.iter_mut().enumerate() {
            res.push(f64::from(w.target[k] - f.forecast[k]) / r);
        }
    }
    let tail = (1.0 - cfg.coverage) / 2.0;
    for (k, res) in residuals.iter().enumerate() {
        model.lower_q[k] = quantile(res, tail).unwrap_or(0.0).min(0.0) as f32;
        model.upper_q[k] = quantile(res, 1.0 - tail).unwrap_or(0.0).max(0.0) as f32;
    }

    let all = windows(data, cfg, &origins);
    let (weights, weekday_terms) = fit_ridge(&all, cfg)?;
    model.weights = weights;
    model.weekday_terms = weekday_terms;
    model.stats = TrainingStats {
        users: data.series.len() as u64,
        interactions: all.len() as u64,
        first_at_ms: data.first_day * DAY_MS,
        last_at_ms: data.end_day * DAY_MS - 1,
    };
    Ok(model)
}

impl DemandModel {
    /// The reference computation in plain Rust and f32, the same operations as the graph. A
    /// history of the wrong length is cut or padded with zeros at the old end; the weekday is
    /// taken modulo 7.
    pub fn forecast_reference(&self, history: &[f32], first_weekday: i64) -> Forecast {
        let (t, h) = (self.history_days, self.horizon);
        let mut x = vec![0f32; t];
        let n = history.len().min(t);
        x[t - n..].copy_from_slice(&history[history.len() - n..]);
        let level = level_of(&x);
        let safe = level.max(MIN_LEVEL);
        let wd = first_weekday.rem_euclid(7) as usize;
        let root = level.sqrt();
        let mut out = Forecast { forecast: vec![0.0; h], lower: vec![0.0; h], upper: vec![0.0; h] };
        for k in 0..h {
            let mut p = 0f32;
            for (i, xi) in x.iter().enumerate() {
                p += (xi / safe) * self.weights[i * h + k];
            }
            p += self.weekday_terms[wd * h + k];
            let f = p.max(0.0) * level;
            out.forecast[k] = f;
            out.lower[k] = (f + root * self.lower_q[k]).max(0.0);
            out.upper[k] = f + root * self.upper_q[k];
        }
        out
    }

    /// The manifest [`DemandModel::to_onnx`] embeds, given the caller's identity fields.
    pub fn manifest(&self, version: &str, tenant: &str, created_at_ms: i64) -> Manifest {
        let (t, h) = (self.history_days.to_string(), self.horizon.to_string());
        let out = |name: &str| TensorSpec::new(name, "float32", &[BATCH_DIM, &h]);
        Manifest {
            stats: self.stats,
            inputs: vec![
                TensorSpec::new(INPUT_HISTORY, "float32", &[BATCH_DIM, &t]),
                TensorSpec::new(INPUT_WEEKDAY, "int64", &[BATCH_DIM]),
            ],
            outputs: vec![out(OUTPUT_FORECAST), out(OUTPUT_LOWER), out(OUTPUT_UPPER)],
            ..Manifest::new(NAME, KIND, version, tenant, created_at_ms)
        }
    }

    pub fn spec(&self) -> DemandSpec {
        DemandSpec { history_days: self.history_days, horizon: self.horizon, coverage: self.coverage }
    }

    /// Exports the model as ONNX (IR 8, opset 17):
    ///
    /// ```text
    /// history [B,T] ─ ReduceSum(axes=[1], keepdims=1) ─ Mul(1/T) ─ level [B,1]
    /// history / Max(level, 1e-6) ─ MatMul(W [T,H]) ─ Add(Gather(V [7,H], first_weekday)) ─ Relu
    ///     ─ Mul(level) ─ forecast [B,H]
    /// forecast + Sqrt(level) * q_lo ─ Relu ─ lower;   forecast + Sqrt(level) * q_hi ─ upper
    /// ```
    pub fn to_onnx(&self, manifest: &Manifest) -> Vec<u8> {
        let (t, h) = (self.history_days as i64, self.horizon as i64);
        let manifest = Manifest {
            metrics: manifest.metrics.clone(),
            ..self.manifest(&manifest.version, &manifest.tenant, manifest.created_at_ms)
        };
        let batch = || Dim::Symbolic(BATCH_DIM.into());
        let n = |op: &str, inputs: &[&str], output: &str| onnx::node(op, inputs, &[output], vec![]);
        let graph = onnx::GraphProto {
            name: "demand".into(),
            node: vec![
                onnx::node(
                    "ReduceSum",
                    &[INPUT_HISTORY, "time_axis"],
                    &["total"],
                    vec![onnx::attr_int("keepdims", 1)],
                ),
                n("Mul", &["total", "inv_days"], "level"),
                n("Max", &["level", "min_level"], "safe_level"),
                n("Div", &[INPUT_HISTORY, "safe_level"], "normalised"),
                n("MatMul", &["normalised", "weights"], "from_history"),
                onnx::node(
                    "Gather",
                    &["weekday_terms", INPUT_WEEKDAY],
                    &["from_weekday"],
                    vec![onnx::attr_int("axis", 0)],
                ),
                n("Add", &["from_history", "from_weekday"], "shape"),
                n("Relu", &["shape"], "shape_positive"),
                n("Mul", &["shape_positive", "level"], OUTPUT_FORECAST),
                n("Sqrt", &["level"], "root_level"),
                n("Mul", &["root_level", "lower_q"], "lower_offset"),
                n("Add", &[OUTPUT_FORECAST, "lower_offset"], "lower_raw"),
                n("Relu", &["lower_raw"], OUTPUT_LOWER),
                n("Mul", &["root_level", "upper_q"], "upper_offset"),
                n("Add", &[OUTPUT_FORECAST, "upper_offset"], OUTPUT_UPPER),
            ],
            initializer: vec![
                onnx::int64_tensor("time_axis", &[1], &[1]),
                onnx::float_tensor("inv_days", &[], &[1.0 / self.history_days.max(1) as f32]),
                onnx::float_tensor("min_level", &[], &[MIN_LEVEL]),
                onnx::float_tensor("weights", &[t, h], &self.weights),
                onnx::float_tensor("weekday_terms", &[SEASON as i64, h], &self.weekday_terms),
                onnx::float_tensor("lower_q", &[h], &self.lower_q),
                onnx::float_tensor("upper_q", &[h], &self.upper_q),
            ],
            input: vec![
                onnx::tensor_value_info(INPUT_HISTORY, DataType::Float, &[batch(), Dim::Fixed(t)]),
                onnx::tensor_value_info(INPUT_WEEKDAY, DataType::Int64, &[batch()]),
            ],
            output: [OUTPUT_FORECAST, OUTPUT_LOWER, OUTPUT_UPPER]
                .iter()
                .map(|name| onnx::tensor_value_info(name, DataType::Float, &[batch(), Dim::Fixed(h)]))
                .collect(),
            ..Default::default()
        };
        shopmind_onnx::model_file_with_spec(graph, &manifest, &self.spec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::test_support::synthetic_demand;

    #[test]
    fn weekdays_and_days() {
        // 2026-01-05 (a Monday) is day 20458.
        assert_eq!(day_of(1_767_571_200_000), 20_458);
        assert_eq!(weekday(20_458), 0);
        assert_eq!(weekday(20_464), 6);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn windows_are_dense_and_aligned() {
        let w = HistoryWindow::from_demand(&[(10, 2), (7, 1), (12, 5), (3, 9)], 12, 5);
        // Days 7..12: 7 -> 1, 10 -> 2; day 12 is the first forecast day, day 3 too old.
        assert_eq!(w.history, vec![1.0, 0.0, 0.0, 2.0, 0.0]);
        assert_eq!(w.first_weekday, weekday(12));
    }

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[0.0, 10.0], 0.25), Some(2.5));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn empty_history_forecasts_zero() {
        let data = synthetic_demand(3, 120, 1);
        let model =
            train(&data, &DemandConfig { history_days: 28, horizon: 7, ..DemandConfig::default() }).unwrap();
        let f = model.forecast_reference(&[0.0; 28], 3);
        assert_eq!(f.forecast, vec![0.0; 7]);
        assert_eq!(f.lower, vec![0.0; 7]);
        assert_eq!(f.upper, vec![0.0; 7]);
    }

    #[test]
    fn too_little_data_is_a_training_error() {
        let data = synthetic_demand(2, 30, 1);
        assert!(matches!(train(&data, &DemandConfig::default()), Err(TrainingError::Failed(_))));
    }
}
