use std::path::PathBuf;

/// The one error type of this crate.
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
    /// Training could not produce a model (no data, one class only, a singular system).
    #[error("training: {0}")]
    Training(String),
    /// Reading the feature store failed while building training samples.
    #[error("feature store: {0}")]
    Store(#[from] shopmind_store::StoreError),
    /// Reading or writing a model file failed.
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
