//! The trainers of shopmind's models and their exports to ONNX (built with `shopmind-onnx`).
//! Everything here is plain, deterministic Rust on in-memory data: no store, no ONNX Runtime
//! (serving the exported files is `shopmind-serving`; measuring them offline,
//! `shopmind-evaluation`).
//!
//! - [`covisit`]: item-to-item co-visitation from interactions; the exported graph computes the
//!   scores inside ONNX Runtime.
//! - [`embedding`]: personalised retrieval embeddings (item and history vectors); the exported
//!   graph scores a batch of recent histories against their candidates.
//! - [`als`]: implicit-feedback ALS, the offline baseline of the embedding family.
//! - [`purchase_intent`]: a logistic regression on feature rows (the rows and their schema are
//!   the feature contract's, `shopmind_features::purchase_intent`), exported with its feature
//!   schema.
//! - [`demand`]: daily demand forecasts per item with intervals (a global ridge model), from the
//!   same `(day, units)` pairs the feature store keeps.

pub mod als;
pub mod covisit;
pub mod demand;
pub mod embedding;
mod error;
mod interning;
mod linalg;
pub mod purchase_intent;
pub mod rng;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use covisit::{CovisitConfig, CovisitModel, TrainingInteraction};
pub use demand::{DemandConfig, DemandData, DemandModel, DemandSeries, DemandSpec, Forecast, HistoryWindow};
pub use embedding::{EmbeddingConfig, EmbeddingInfo, EmbeddingModel, Factors};
pub use error::{Result, TrainingError};
pub use purchase_intent::{
    PurchaseIntentConfig, PurchaseIntentModel, PurchaseIntentPrediction, PurchaseIntentSpec,
};
