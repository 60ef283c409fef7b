use std::path::PathBuf;

/// The one error type of this crate: what loading or running a model can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// ONNX Runtime could not be loaded, a session could not be built, or a run failed.
    #[error("onnx runtime: {0}")]
    Runtime(String),
    /// The bytes are not a model this crate can serve (not ONNX, no manifest, wrong graph).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The caller passed inputs the model cannot take (unknown item index, bad shape).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The model's request queue is full: load is shed at once instead of queueing without
    /// bound. Retry later or elsewhere.
    #[error("overloaded: the request queue of model `{model}` is full ({capacity} requests)")]
    Overloaded { model: &'static str, capacity: usize },
    /// The request's deadline passed before the model computed it; it was not computed.
    #[error("deadline exceeded before model `{model}` computed the request")]
    DeadlineExceeded { model: &'static str },
    /// The model is shutting down and takes no more requests.
    #[error("model `{model}` is shutting down")]
    ShuttingDown { model: &'static str },
    /// Reading or writing a model file failed.
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A model file that is not what its loader expects is an invalid model, whichever check found
/// it.
impl From<shopmind_onnx::OnnxError> for ModelError {
    fn from(e: shopmind_onnx::OnnxError) -> Self {
        match e {
            shopmind_onnx::OnnxError::InvalidModel(why) => ModelError::InvalidModel(why),
        }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
