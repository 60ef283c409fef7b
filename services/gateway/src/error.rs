//! The gateway's errors and their one mapping to gRPC statuses.

use shopmind_proto::v1 as pb;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed; each entry is (field path, what is wrong).
    #[error("invalid request: {0:?}")]
    InvalidArgument(Vec<(String, String)>),
    #[error("{service} is unavailable: {reason}")]
    Unavailable { service: &'static str, reason: String },
    #[error("deadline exceeded waiting for {service}")]
    DeadlineExceeded { service: &'static str },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![(field.into(), description.into())])
    }

    /// The error a service answered over the bus.
    pub fn from_service(service: &'static str, e: pb::ServiceError) -> Self {
        match pb::ServiceErrorCode::try_from(e.code).unwrap_or(pb::ServiceErrorCode::Unspecified) {
            pb::ServiceErrorCode::InvalidArgument => {
                let mut v: Vec<(String, String)> =
                    e.violations.into_iter().map(|v| (v.field, v.description)).collect();
                if v.is_empty() {
                    v.push((String::new(), e.message));
                }
                Self::InvalidArgument(v)
            }
            pb::ServiceErrorCode::NotFound => Self::NotFound(e.message),
            pb::ServiceErrorCode::Unavailable => Self::Unavailable { service, reason: e.message },
            pb::ServiceErrorCode::DeadlineExceeded => Self::DeadlineExceeded { service },
            pb::ServiceErrorCode::Internal | pb::ServiceErrorCode::Unspecified => {
                Self::Internal(format!("{service}: {}", e.message))
            }
        }
    }

    /// A failed request to another service over the bus.
    pub fn from_bus(service: &'static str, e: shopmind_bus::BusError) -> Self {
        match e {
            shopmind_bus::BusError::Timeout { .. } => Self::DeadlineExceeded { service },
            shopmind_bus::BusError::NoResponders(_) => {
                Self::Unavailable { service, reason: "no instance is running".into() }
            }
            other => Self::Unavailable { service, reason: other.to_string() },
        }
    }
}

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                for (field, description) in &violations {
                    details.add_bad_request_violation(field.clone(), description.clone());
                }
                let summary = violations
                    .iter()
                    .map(|(f, d)| if f.is_empty() { d.clone() } else { format!("{f}: {d}") })
                    .collect::<Vec<_>>()
                    .join("; ");
                Status::with_error_details(Code::InvalidArgument, summary, details)
            }
            GatewayError::Unavailable { .. } => Status::unavailable(e.to_string()),
            GatewayError::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
            GatewayError::NotFound(_) => Status::not_found(e.to_string()),
            GatewayError::Internal(_) => Status::internal(e.to_string()),
        }
    }
}
