use std::path::PathBuf;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// Reading a file of the model failed.
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The weights file is not a safetensors file this crate can read, or lacks a tensor.
    #[error("weights: {0}")]
    Weights(String),
    /// `config.json` is missing a field or describes a model this crate cannot convert.
    #[error("model config: {0}")]
    Config(String),
    /// `tokenizer.json` could not be loaded, or a text could not be tokenized.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// ONNX Runtime failed, or the model file is not an encoder.
    #[error(transparent)]
    Model(#[from] shopmind_serving::ModelError),
}

/// A model file that is not an encoder is a model error, as when ONNX Runtime refuses it.
impl From<shopmind_onnx::OnnxError> for EncoderError {
    fn from(e: shopmind_onnx::OnnxError) -> Self {
        EncoderError::Model(e.into())
    }
}

pub type Result<T, E = EncoderError> = std::result::Result<T, E>;
