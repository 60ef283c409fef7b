/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// Training could not produce a model (no data, one class only, a singular system).
    #[error("training: {0}")]
    Failed(String),
    /// A model built from its parts does not fit together (shapes, duplicate item ids).
    #[error("invalid model: {0}")]
    InvalidModel(String),
}

pub type Result<T, E = TrainingError> = std::result::Result<T, E>;
