//! Serving shopmind's models in ONNX Runtime (through `ort`, loading `libonnxruntime.so`
//! dynamically).
//!
//! - [`library`]: loading ONNX Runtime once per process ([`init_runtime`],
//!   [`library_path`], [`default_library_path`]).
//! - [`session_pool`]: a model's pool of sessions ([`SessionPool`]), where it runs ([`Device`]),
//!   and the tensors in and out of a run.
//! - [`batch`]: micro-batching concurrent requests to a model ([`Batcher`]: bounded queue,
//!   deadlines, padding, drain on shutdown).
//! - The served models, each loaded from the file `shopmind-training` exports (manifest and
//!   graph checked against what the code expects): the recommenders [`CovisitRecommender`] and
//!   [`EmbeddingRecommender`] ([`ItemRecommender`]s: items from the manifest, scored through a
//!   batcher), and [`PurchaseIntentPredictor`] and [`DemandForecaster`] ([`ServedModel`]s: a
//!   spec next to the manifest, rows run on the pool).

pub mod batch;
pub mod covisit;
pub mod demand;
pub mod embedding;
mod error;
pub mod library;
pub mod purchase_intent;
mod recommender;
mod served;
pub mod session_pool;

pub use batch::{BatchOptions, BatchSpec, BatchStats, Batcher, PadValue, Pending};
pub use covisit::{CovisitGraph, CovisitRecommender};
pub use demand::DemandForecaster;
pub use embedding::{BatchScores, EmbeddingGraph, EmbeddingRecommender};
pub use error::{ModelError, Result};
pub use library::{check_library, default_library_path, init_runtime, library_path, runtime_ready};
pub use purchase_intent::PurchaseIntentPredictor;
pub use recommender::ItemRecommender;
pub use served::ServedModel;
pub use session_pool::{
    Device, INLINE_BELOW, InputTensor, OutputTensor, PoolOptions, PooledSession, SessionPool,
};
