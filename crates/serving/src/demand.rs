//! The demand forecaster served from ONNX Runtime: windows of daily history in (built from the
//! feature store's `(day, units)` pairs with [`HistoryWindow::from_demand`]), the forecast and
//! its interval out.

use std::path::Path;
use std::time::Instant;

use shopmind_training::demand::{
    DemandSpec, Forecast, HistoryWindow, INPUT_HISTORY, INPUT_WEEKDAY, KIND, OUTPUT_FORECAST, OUTPUT_LOWER,
    OUTPUT_UPPER,
};

use crate::error::{ModelError, Result};
use crate::served::{Expected, ServedModel, read_file, take_f32};
use crate::session_pool::{InputTensor, PoolOptions};

/// The model's name in metrics (`model` label) and errors.
pub const METRIC_NAME: &str = "demand";

/// The demand model loaded into ONNX Runtime.
pub type DemandForecaster = ServedModel<DemandSpec>;

impl ServedModel<DemandSpec> {
    /// Loads a model exported by `shopmind_training::DemandModel::to_onnx`; checks its kind,
    /// window lengths, inputs and outputs. Needs [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        let expected = Expected {
            kind: KIND,
            inputs: &[INPUT_HISTORY, INPUT_WEEKDAY],
            outputs: &[OUTPUT_FORECAST, OUTPUT_LOWER, OUTPUT_UPPER],
        };
        Self::load_checked(bytes, opts, METRIC_NAME, expected, |spec: &DemandSpec| {
            if spec.history_days == 0 || spec.horizon == 0 {
                return Err(ModelError::InvalidModel("the model's window lengths are zero".into()));
            }
            Ok(())
        })
    }

    /// [`DemandForecaster::load`] from a file.
    pub fn load_file(path: &Path, opts: &PoolOptions) -> Result<Self> {
        Self::load(&read_file(path)?, opts)
    }

    /// Days of history the model reads.
    pub fn history_days(&self) -> usize {
        self.spec().history_days
    }

    /// Days it forecasts.
    pub fn horizon(&self) -> usize {
        self.spec().horizon
    }

    /// The nominal coverage of its intervals.
    pub fn coverage(&self) -> f64 {
        self.spec().coverage
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
        deadline: Option<Instant>,
    ) -> Result<Vec<Forecast>> {
        let (t, h) = (self.spec().history_days, self.spec().horizon);
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
        let inputs = vec![
            (INPUT_HISTORY.to_owned(), InputTensor::F32 { shape: vec![b, t], data: history }),
            (INPUT_WEEKDAY.to_owned(), InputTensor::I64 { shape: vec![b], data: weekdays }),
        ];
        let mut out = self.run_until(inputs, deadline).await?;
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
        let w = HistoryWindow::from_demand(demand, first_forecast_day, self.spec().history_days);
        let mut out = self.forecast(&[w]).await?;
        out.pop().ok_or_else(|| ModelError::Runtime("the model returned no row".into()))
    }
}
