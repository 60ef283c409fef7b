//! The models of shopmind: training, export to ONNX, and inference in ONNX Runtime.
//!
//! - [`covisit`] trains an item-to-item co-visitation model from interactions and exports it as an
//!   ONNX graph whose scores are computed inside ONNX Runtime.
//! - [`onnx`] is our own minimal writer (and reader) of the ONNX protobuf format.
//! - [`manifest`] describes a model file; it travels inside the ONNX file as metadata.
//! - [`runtime`] loads ONNX Runtime once per process and runs models on a pool of sessions.
//! - [`batch`] batches concurrent requests to a model (bounded queue, deadlines, padding).
//! - [`recommender`] serves a trained co-visitation model.
//! - [`intent`]: purchase intent (logistic regression on session and user features), its
//!   training samples built through the production feature code, export and serving.
//! - [`demand`]: daily demand forecasts per item with intervals (a global ridge model),
//!   export, serving and backtesting.
//! - [`evaluation`]: ROC-AUC, MASE, interval coverage and the seasonal-naive baseline.
//! - [`embedding`] trains personalised retrieval embeddings (item and history vectors) and exports
//!   them as an ONNX graph scoring a batch of recent histories; [`embedding_recommender`] serves it.
//! - [`als`] is implicit-feedback ALS, and [`eval`] the offline evaluation protocol with its
//!   baselines (popularity, item-kNN, ALS, co-visitation).

pub mod als;
pub mod batch;
pub mod covisit;
pub mod demand;
pub mod embedding;
pub mod embedding_recommender;
mod error;
pub mod eval;
pub mod evaluation;
pub mod export;
pub mod intent;
mod linalg;
pub mod manifest;
pub mod onnx;
pub mod recommender;
mod rng;
pub mod runtime;

pub use batch::{BatchOptions, BatchSpec, BatchStats, Batcher, PadValue, Pending};
pub use covisit::{CovisitConfig, CovisitModel, TrainingInteraction, TrainingStats, train};
pub use demand::{
    DemandConfig, DemandData, DemandForecaster, DemandModel, DemandSeries, Forecast, HistoryWindow,
};
pub use embedding::{EmbeddingConfig, EmbeddingInfo, EmbeddingModel, Factors};
pub use embedding_recommender::{BatchScores, EmbeddingRecommender};
pub use error::{ModelError, Result};
pub use intent::{
    IntentConfig, IntentModel, IntentPrediction, IntentPredictor, IntentSample, SampleOptions,
    intent_features,
};
pub use manifest::{MANIFEST_KEY, Manifest, TensorSpec, read_manifest, read_manifest_of_kind};
pub use recommender::CovisitRecommender;
pub use runtime::{
    Device, InputTensor, OutputTensor, PoolOptions, PooledSession, SessionPool, default_library_path,
    init_runtime,
};
