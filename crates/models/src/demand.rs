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
//! [`DemandForecaster`] serves it from ONNX Runtime; [`backtest`] measures it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use shopmind_domain::{Event, Payload};

use crate::covisit::TrainingStats;
use crate::error::{ModelError, Result};
use crate::evaluation::{interval_coverage, mase, quantile, seasonal_naive};
use crate::export::{self, check_io, read_spec, take_f32};
use crate::linalg::solve_spd;
use crate::manifest::{Manifest, TensorSpec, read_manifest_of_kind};
use crate::onnx::{self, DataType, Dim};
use crate::runtime::{InputTensor, PoolOptions, SessionPool};

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

/// What the model file says about its windows; stored under [`export::SPEC_KEY`].
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
        return Err(ModelError::Training("history_days, horizon and stride must be positive".into()));
    }
    let coverage_ok = cfg.coverage > 0.0 && cfg.coverage < 1.0;
    if !coverage_ok || !(0.0..1.0).contains(&cfg.calibration_share) {
        return Err(ModelError::Training(
            "coverage must be in (0, 1) and calibration_share in [0, 1)".into(),
        ));
    }
    let first = data.first_day + cfg.history_days as i64;
    let last = data.end_day - cfg.horizon as i64;
    let origins: Vec<i64> = (first..=last).step_by(cfg.stride).collect();
    let n_cal = ((origins.len() as f64) * cfg.calibration_share).round() as usize;
    if origins.len() < 2 || n_cal >= origins.len() {
        return Err(ModelError::Training(format!(
            "{} days observed: too few for {} days of history, {} of horizon and a calibration period",
            data.end_day - data.first_day,
            cfg.history_days,
            cfg.horizon
        )));
    }
    let (fit_origins, cal_origins) = origins.split_at(origins.len() - n_cal);
    let fit_windows = windows(data, cfg, fit_origins);
    if fit_windows.is_empty() {
        return Err(ModelError::Training("no window with any demand".into()));
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
        let out = |name: &str| TensorSpec {
            name: name.into(),
            dtype: "float32".into(),
            shape: vec![BATCH_DIM.into(), h.clone()],
        };
        Manifest {
            name: NAME.into(),
            kind: KIND.into(),
            version: version.into(),
            tenant: tenant.into(),
            created_at_ms,
            feature_schema_version: 0,
            metrics: Default::default(),
            items: Vec::new(),
            stats: self.stats,
            inputs: vec![
                TensorSpec {
                    name: INPUT_HISTORY.into(),
                    dtype: "float32".into(),
                    shape: vec![BATCH_DIM.into(), t],
                },
                TensorSpec {
                    name: INPUT_WEEKDAY.into(),
                    dtype: "int64".into(),
                    shape: vec![BATCH_DIM.into()],
                },
            ],
            outputs: vec![out(OUTPUT_FORECAST), out(OUTPUT_LOWER), out(OUTPUT_UPPER)],
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
        let spec = serde_json::to_string(&self.spec()).unwrap_or_default();
        export::model_bytes(graph, &manifest, spec)
    }
}

/// The demand model served from ONNX Runtime.
#[derive(Debug)]
pub struct DemandForecaster {
    manifest: Manifest,
    spec: DemandSpec,
    pool: SessionPool,
}

impl DemandForecaster {
    /// Loads a model exported by [`DemandModel::to_onnx`]; checks its kind, window lengths,
    /// inputs and outputs. Needs [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let manifest = read_manifest_of_kind(bytes, KIND)?;
        let spec: DemandSpec = read_spec(bytes)?;
        if spec.history_days == 0 || spec.horizon == 0 {
            return Err(ModelError::InvalidModel("the model's window lengths are zero".into()));
        }
        let pool = SessionPool::load(bytes, opts)?;
        check_io(
            &manifest,
            &pool,
            &[INPUT_HISTORY, INPUT_WEEKDAY],
            &[OUTPUT_FORECAST, OUTPUT_LOWER, OUTPUT_UPPER],
        )?;
        Ok(Self { manifest, spec, pool })
    }

    /// [`DemandForecaster::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        Self::load(&export::read_file(path)?, opts)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Days of history the model reads.
    pub fn history_days(&self) -> usize {
        self.spec.history_days
    }

    /// Days it forecasts.
    pub fn horizon(&self) -> usize {
        self.spec.horizon
    }

    /// The nominal coverage of its intervals.
    pub fn coverage(&self) -> f64 {
        self.spec.coverage
    }

    /// Forecasts a batch of windows in one run. Each history must be `history_days` long,
    /// finite and non-negative, and each weekday in 0..7, else [`ModelError::InvalidInput`]. An
    /// empty batch returns nothing without running.
    pub async fn forecast(&self, batch: &[HistoryWindow]) -> Result<Vec<Forecast>> {
        self.forecast_until(batch, None).await
    }

    /// [`DemandForecaster::forecast`] for a caller that waits until `deadline`
    /// ([`crate::SessionPool::run_until`]).
    pub async fn forecast_until(
        &self,
        batch: &[HistoryWindow],
        deadline: Option<std::time::Instant>,
    ) -> Result<Vec<Forecast>> {
        let (t, h) = (self.spec.history_days, self.spec.horizon);
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut history = Vec::with_capacity(batch.len() * t);
        let mut weekdays = Vec::with_capacity(batch.len());
        for (r, w) in batch.iter().enumerate() {
            if w.history.len() != t {
                return Err(ModelError::InvalidInput(format!(
                    "window {r} has {} days of history, the model reads {t}",
                    w.history.len()
                )));
            }
            if w.history.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(ModelError::InvalidInput(format!(
                    "window {r} has a negative or non-finite value"
                )));
            }
            if !(0..7).contains(&w.first_weekday) {
                return Err(ModelError::InvalidInput(format!("window {r} has weekday {}", w.first_weekday)));
            }
            history.extend_from_slice(&w.history);
            weekdays.push(w.first_weekday);
        }
        let b = batch.len();
        let mut out = self
            .pool
            .run_until(
                vec![
                    (INPUT_HISTORY.to_owned(), InputTensor::F32 { shape: vec![b, t], data: history }),
                    (INPUT_WEEKDAY.to_owned(), InputTensor::I64 { shape: vec![b], data: weekdays }),
                ],
                "demand",
                deadline,
            )
            .await?;
        let forecast = take_f32(&mut out, OUTPUT_FORECAST, b * h)?;
        let lower = take_f32(&mut out, OUTPUT_LOWER, b * h)?;
        let upper = take_f32(&mut out, OUTPUT_UPPER, b * h)?;
        Ok((0..b)
            .map(|r| Forecast {
                forecast: forecast[r * h..(r + 1) * h].to_vec(),
                lower: lower[r * h..(r + 1) * h].to_vec(),
                upper: upper[r * h..(r + 1) * h].to_vec(),
            })
            .collect())
    }

    /// Forecasts one item from what the feature store holds for it (`ItemFeatures::demand`),
    /// for the days from `first_forecast_day` on.
    pub async fn forecast_item(&self, demand: &[(i64, i64)], first_forecast_day: i64) -> Result<Forecast> {
        let w = HistoryWindow::from_demand(demand, first_forecast_day, self.spec.history_days);
        let mut out = self.forecast(&[w]).await?;
        out.pop().ok_or_else(|| ModelError::Runtime("the model returned no row".into()))
    }
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
            let actual = dense(&s.days, o + h as i64, h);
            let insample = dense(&s.days, o, (o - data.first_day).max(0) as usize);
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

    use super::*;

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

    /// A noisy weekly series with a trend: `level * (1 + 0.02 t/7) * season[weekday]`, plus
    /// seeded noise, for `n` items of different levels.
    fn synthetic(n_items: usize, days: i64, seed: u64) -> DemandData {
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

    #[test]
    fn the_forecaster_beats_seasonal_naive_on_a_trending_weekly_series() {
        let data = synthetic(20, 210, 7);
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

    #[test]
    fn empty_history_forecasts_zero() {
        let data = synthetic(3, 120, 1);
        let model =
            train(&data, &DemandConfig { history_days: 28, horizon: 7, ..DemandConfig::default() }).unwrap();
        let f = model.forecast_reference(&[0.0; 28], 3);
        assert_eq!(f.forecast, vec![0.0; 7]);
        assert_eq!(f.lower, vec![0.0; 7]);
        assert_eq!(f.upper, vec![0.0; 7]);
    }

    #[test]
    fn too_little_data_is_a_training_error() {
        let data = synthetic(2, 30, 1);
        assert!(matches!(train(&data, &DemandConfig::default()), Err(ModelError::Training(_))));
    }
}
