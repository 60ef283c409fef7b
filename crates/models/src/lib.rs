//! Recommendation models of shopmind: training, export to ONNX, and inference in ONNX Runtime.
//!
//! - [`covisit`] trains an item-to-item co-visitation model from interactions and exports it as an
//!   ONNX graph whose scores are computed inside ONNX Runtime.
//! - [`onnx`] is our own minimal writer (and reader) of the ONNX protobuf format.
//! - [`manifest`] describes a model file; it travels inside the ONNX file as metadata.
//! - [`runtime`] loads ONNX Runtime once per process and runs models on a pool of sessions.
//! - [`batch`] batches concurrent requests to a model (bounded queue, deadlines, padding).
//! - [`recommender`] serves a trained co-visitation model.

pub mod batch;
pub mod covisit;
mod error;
pub mod manifest;
pub mod onnx;
pub mod recommender;
pub mod runtime;

pub use batch::{BatchOptions, BatchSpec, BatchStats, Batcher, PadValue, Pending};
pub use covisit::{CovisitConfig, CovisitModel, TrainingInteraction, TrainingStats, train};
pub use error::{ModelError, Result};
pub use manifest::{MANIFEST_KEY, Manifest, TensorSpec, read_manifest};
pub use recommender::CovisitRecommender;
pub use runtime::{
    Device, InputTensor, OutputTensor, PoolOptions, PooledSession, SessionPool, default_library_path,
    init_runtime,
};
