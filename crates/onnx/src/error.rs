/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The bytes are not a model file of shopmind (not ONNX, no manifest, another kind, a
    /// metadata entry missing or unreadable).
    #[error("invalid model: {0}")]
    InvalidModel(String),
}

pub type Result<T, E = OnnxError> = std::result::Result<T, E>;
