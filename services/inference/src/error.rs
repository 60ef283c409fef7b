//! The inference service's one error type and its wire form ([`WireError`]): every method maps a
//! kind of failure to the same code (docs/RECOMMEND.md, docs/SECURITY.md):
//!
//! | failure | code |
//! |---|---|
//! | a bad field | INVALID_ARGUMENT, a violation per field |
//! | an unknown item, user or agent; a tenant without the model | NOT_FOUND |
//! | the feature store; a model's full queue or its shutdown; the assistant starting | UNAVAILABLE |
//! | the caller's deadline passed before the model ran | DEADLINE_EXCEEDED |
//! | anything else (a model run that failed) | INTERNAL |

use shopmind_assistant::AssistantError;
use shopmind_bus::BusError;
use shopmind_domain::TenantId;
use shopmind_encoder::EncoderError;
use shopmind_proto::v1::ServiceErrorCode as Code;
use shopmind_runtime::rpc::{INVALID_REQUEST, WireError};
use shopmind_serving::ModelError;
use shopmind_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    /// ONNX Runtime could not be set up at start.
    #[error("ONNX Runtime: {0}")]
    Runtime(ModelError),
    /// The request is malformed: (field path, what is wrong) for each problem.
    #[error("{INVALID_REQUEST}: {0:?}")]
    InvalidArgument(Vec<(String, String)>),
    /// What the request names is unknown (an anchor item, a user without events, an agent).
    #[error("{0}")]
    NotFound(String),
    /// The tenant has no active version of the model the method answers from.
    #[error(
        "tenant {tenant} has no active {model} model yet (the trainer publishes one when it has enough data)"
    )]
    NoModel { tenant: TenantId, model: &'static str },
    #[error("feature store: {0}")]
    Store(#[from] StoreError),
    /// A model did not score the request (full queue, deadline, shutdown, a failed run).
    #[error("model: {0}")]
    Model(#[from] ModelError),
    #[error("{}", assistant_message(.0))]
    Assistant(#[from] AssistantError),
    /// The method cannot answer yet.
    #[error("{0}")]
    Unavailable(String),
    /// A result the method cannot use (e.g. a model run without output).
    #[error("{0}")]
    Internal(String),
}

impl InferenceError {
    /// One bad field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![(field.into(), description.into())])
    }
}

/// The code of a model's error, on every method: a full queue or shutdown is UNAVAILABLE (try
/// again, or another replica), a passed deadline DEADLINE_EXCEEDED, anything else INTERNAL.
fn model_code(e: &ModelError) -> Code {
    match e {
        ModelError::Overloaded { .. } | ModelError::ShuttingDown { .. } => Code::Unavailable,
        ModelError::DeadlineExceeded { .. } => Code::DeadlineExceeded,
        _ => Code::Internal,
    }
}

/// The model error an assistant error comes from, if any.
fn assistant_model(e: &AssistantError) -> Option<&ModelError> {
    match e {
        AssistantError::Model(m) | AssistantError::Encoder(EncoderError::Model(m)) => Some(m),
        _ => None,
    }
}

fn assistant_message(e: &AssistantError) -> String {
    match e {
        AssistantError::Store(m) => format!("feature store: {m}"),
        AssistantError::Conversation(_) => INVALID_REQUEST.into(),
        other => format!("assistant: {other}"),
    }
}

impl WireError for InferenceError {
    fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) | Self::NoModel { .. } => Code::NotFound,
            Self::Store(_) | Self::Unavailable(_) | Self::Bus(_) => Code::Unavailable,
            Self::Model(e) | Self::Runtime(e) => model_code(e),
            Self::Internal(_) => Code::Internal,
            Self::Assistant(AssistantError::Store(_)) => Code::Unavailable,
            Self::Assistant(AssistantError::Conversation(_)) => Code::InvalidArgument,
            Self::Assistant(e) => assistant_model(e).map_or(Code::Internal, model_code),
        }
    }

    fn message(&self) -> String {
        match self {
            Self::InvalidArgument(_) => INVALID_REQUEST.into(),
            other => other.to_string(),
        }
    }

    fn into_violations(self) -> Vec<(String, String)> {
        match self {
            Self::InvalidArgument(violations) => violations,
            Self::Assistant(AssistantError::Conversation(m)) => vec![("conversation_id".into(), m)],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shopmind_proto::v1 as pb;

    use super::*;

    fn code(e: InferenceError) -> Code {
        WireError::code(&e)
    }

    /// The same failure of the model behind each model-backed method: recommend and the
    /// predictions (`Model`) and the assistant (its head, or its encoder).
    fn on_every_method(model: fn() -> ModelError) -> Vec<Code> {
        vec![
            code(InferenceError::Model(model())),
            code(InferenceError::Assistant(AssistantError::Model(model()))),
            code(InferenceError::Assistant(AssistantError::Encoder(EncoderError::Model(model())))),
        ]
    }

    #[test]
    fn a_model_failure_has_one_code_on_every_method() {
        let overloaded = || ModelError::Overloaded { model: "covisit", capacity: 4 };
        assert_eq!(on_every_method(overloaded), [Code::Unavailable; 3], "a full queue: try again");
        let shutting_down = || ModelError::ShuttingDown { model: "intent" };
        assert_eq!(on_every_method(shutting_down), [Code::Unavailable; 3]);
        let late = || ModelError::DeadlineExceeded { model: "intent" };
        assert_eq!(on_every_method(late), [Code::DeadlineExceeded; 3]);
        let failed = || ModelError::Runtime("boom".into());
        assert_eq!(on_every_method(failed), [Code::Internal; 3]);

        let tenant = TenantId::parse("acme").unwrap();
        assert_eq!(code(InferenceError::NoModel { tenant, model: "intent" }), Code::NotFound);
        assert_eq!(code(InferenceError::NotFound("item_ids[0]: unknown".into())), Code::NotFound);
        assert_eq!(
            code(InferenceError::Store(StoreError::UnexpectedReply { op: "GET", reply: "nil".into() })),
            Code::Unavailable
        );
        assert_eq!(code(InferenceError::Assistant(AssistantError::Store("down".into()))), Code::Unavailable);
    }

    #[test]
    fn the_wire_error_keeps_the_messages_and_names_the_fields() {
        let wire =
            InferenceError::Model(ModelError::Overloaded { model: "covisit", capacity: 4 }).into_wire();
        assert_eq!(wire.code, pb::ServiceErrorCode::Unavailable as i32);
        assert!(wire.message.starts_with("model: overloaded") && wire.message.contains("full"), "{wire:?}");

        let wire = InferenceError::InvalidArgument(vec![("limit".into(), "too large".into())]).into_wire();
        assert_eq!((wire.code, wire.message.as_str()), (Code::InvalidArgument as i32, "invalid request"));
        assert_eq!(
            wire.violations,
            [pb::FieldViolation { field: "limit".into(), description: "too large".into() }]
        );

        let wire = InferenceError::Assistant(AssistantError::Conversation("not yours".into())).into_wire();
        assert_eq!((wire.code, wire.message.as_str()), (Code::InvalidArgument as i32, "invalid request"));
        assert_eq!(wire.violations[0].field, "conversation_id");
        let wire = InferenceError::Assistant(AssistantError::Store("down".into())).into_wire();
        assert_eq!(wire.message, "feature store: down");
        let wire = InferenceError::Assistant(AssistantError::Training("no data".into())).into_wire();
        assert_eq!(
            (wire.code, wire.message.as_str()),
            (Code::Internal as i32, "assistant: training: no data")
        );

        let tenant = TenantId::parse("acme").unwrap();
        assert_eq!(
            InferenceError::NoModel { tenant, model: "demand" }.into_wire().message,
            "tenant acme has no active demand model yet (the trainer publishes one when it has enough data)"
        );
    }
}
