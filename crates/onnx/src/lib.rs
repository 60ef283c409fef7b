//! The ONNX model files of shopmind.
//!
//! - The crate root is our own minimal writer (and reader) of the ONNX protobuf format: the
//!   messages of `onnx.proto` we use and small builders ([`node`], [`float_tensor`],
//!   [`tensor_value_info`], ...). Every graph shopmind exports (the models of
//!   `shopmind-training`, the sentence encoder, the assistant's head) is built with it.
//! - What a model file is besides its graph: [`model_file`] wraps a graph into the bytes every
//!   exporter writes (IR 8, opset 17) with its [`Manifest`] (and a model-specific spec under
//!   [`SPEC_KEY`]) in the metadata; [`read_manifest`] and [`read_spec`] read them back without
//!   decoding the graph.
//!
//! Nothing here runs a model: that is `shopmind-serving` (ONNX Runtime).

mod error;
mod model_file;
mod proto;

pub use error::{OnnxError, Result};
pub use model_file::{
    MANIFEST_KEY, Manifest, SPEC_KEY, TensorSpec, TrainingStats, model_file, model_file_with_spec,
    read_manifest, read_manifest_of_kind, read_metadata, read_spec,
};
pub use proto::*;
