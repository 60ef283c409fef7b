use std::path::PathBuf;

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum AssistantError {
    /// Reading a data or model file failed.
    #[error("i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line of a training file is not `{"text": ..., "intent": ...}` with a known intent.
    #[error("training data, line {line}: {message}")]
    Data { line: usize, message: String },
    /// Training could not produce a model (no data, a missing intent, non-finite values).
    #[error("training: {0}")]
    Training(String),
    /// A configuration value is out of range, or the encoder and the head do not fit together.
    #[error("config: {0}")]
    Config(String),
    /// The sentence encoder failed.
    #[error(transparent)]
    Encoder(#[from] shopmind_encoder::EncoderError),
    /// The feature store failed (conversation state, the customer's orders, the catalog).
    #[error("feature store: {0}")]
    Store(String),
    /// The request does not fit the conversation (e.g. it belongs to another customer).
    #[error("conversation: {0}")]
    Conversation(String),
    /// ONNX Runtime failed, or a model file is not an intent head.
    #[error(transparent)]
    Model(#[from] shopmind_serving::ModelError),
}

/// A model file that is not an intent head is a model error, as when ONNX Runtime refuses it.
impl From<shopmind_onnx::OnnxError> for AssistantError {
    fn from(e: shopmind_onnx::OnnxError) -> Self {
        AssistantError::Model(e.into())
    }
}

pub type Result<T, E = AssistantError> = std::result::Result<T, E>;
