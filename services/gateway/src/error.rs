//! The gateway's errors and their one mapping to gRPC statuses.

use shopmind_proto::v1 as pb;
use shopmind_runtime::rpc;
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
    /// No or an unknown API key (the key itself is never part of the message).
    #[error("unauthenticated: {0}")]
    Unauthenticated(&'static str),
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The tenant's token bucket is empty; the next token comes after `retry_after`.
    #[error("rate limit of tenant {tenant} exceeded; retry after {retry_after:?}")]
    RateLimited { tenant: String, retry_after: std::time::Duration },
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

    /// A call to another service that gave no response ([`rpc::call`]).
    pub fn from_call(service: &'static str, e: rpc::CallError) -> Self {
        match e {
            rpc::CallError::Bus(e) => Self::from_bus(service, e),
            rpc::CallError::Service(e) => Self::from_service(service, e),
            rpc::CallError::Undecodable(e) => {
                Self::Internal(format!("undecodable reply from {service}: {e}"))
            }
            rpc::CallError::EmptyReply => Self::Internal(format!("empty reply from {service}")),
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
            GatewayError::Unauthenticated(_) => Status::unauthenticated(e.to_string()),
            GatewayError::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            GatewayError::RateLimited { retry_after, .. } => {
                let mut details = ErrorDetails::new();
                details.set_retry_info(Some(retry_after));
                Status::with_error_details(Code::ResourceExhausted, e.to_string(), details)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::time::Duration;

    use shopmind_bus::BusError;

    use super::*;

    fn service_error(code: i32, message: &str, violations: &[(&str, &str)]) -> pb::ServiceError {
        pb::ServiceError {
            code,
            message: message.into(),
            violations: violations
                .iter()
                .map(|(f, d)| pb::FieldViolation { field: f.to_string(), description: d.to_string() })
                .collect(),
        }
    }

    fn bad_request_fields(status: &Status) -> Vec<(String, String)> {
        let bad_request = status.get_details_bad_request().expect("a google.rpc.BadRequest detail");
        bad_request.field_violations.into_iter().map(|v| (v.field, v.description)).collect()
    }

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let e = GatewayError::InvalidArgument(vec![
            ("tenant".into(), "must not be empty".into()),
            ("events[2].user_id".into(), "required".into()),
        ]);
        let status = Status::from(e);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "tenant: must not be empty; events[2].user_id: required");
        assert_eq!(
            bad_request_fields(&status),
            [
                ("tenant".to_string(), "must not be empty".to_string()),
                ("events[2].user_id".to_string(), "required".to_string())
            ]
        );
    }

    #[test]
    fn a_violation_without_a_field_shows_only_its_description() {
        let status = Status::from(GatewayError::invalid("", "not a shopmind.v1.IngestBatch"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "not a shopmind.v1.IngestBatch");
        assert_eq!(
            bad_request_fields(&status),
            [(String::new(), "not a shopmind.v1.IngestBatch".to_string())]
        );
    }

    #[test]
    fn each_error_maps_to_its_status_code() {
        let cases = [
            (GatewayError::Unavailable { service: "ingest", reason: "down".into() }, Code::Unavailable),
            (GatewayError::DeadlineExceeded { service: "inference" }, Code::DeadlineExceeded),
            (GatewayError::NotFound("model".into()), Code::NotFound),
            (GatewayError::Internal("boom".into()), Code::Internal),
            (GatewayError::Unauthenticated("unknown API key"), Code::Unauthenticated),
            (GatewayError::PermissionDenied("not yours".into()), Code::PermissionDenied),
        ];
        for (error, code) in cases {
            let text = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
            assert!(status.get_details_bad_request().is_none(), "only INVALID_ARGUMENT carries violations");
        }
        let status = Status::from(GatewayError::Unavailable { service: "ingest", reason: "down".into() });
        assert!(status.message().contains("ingest") && status.message().contains("down"), "{status:?}");
    }

    #[test]
    fn rate_limited_is_resource_exhausted_with_retry_info() {
        let e = GatewayError::RateLimited { tenant: "acme".into(), retry_after: Duration::from_millis(250) };
        let status = Status::from(e);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("acme"), "{status:?}");
        let retry = status.get_details_retry_info().expect("a google.rpc.RetryInfo detail");
        assert_eq!(retry.retry_delay, Some(Duration::from_millis(250)));
    }

    /// The variant of an error and what it carries, for comparisons.
    fn parts(e: &GatewayError) -> (&'static str, String) {
        match e {
            GatewayError::InvalidArgument(v) => ("invalid_argument", format!("{v:?}")),
            GatewayError::Unavailable { service, reason } => ("unavailable", format!("{service}: {reason}")),
            GatewayError::DeadlineExceeded { service } => ("deadline_exceeded", service.to_string()),
            GatewayError::NotFound(m) => ("not_found", m.clone()),
            GatewayError::Internal(m) => ("internal", m.clone()),
            other => ("edge", other.to_string()),
        }
    }

    fn from_service(service: &'static str, code: pb::ServiceErrorCode, message: &str) -> GatewayError {
        GatewayError::from_service(service, service_error(code as i32, message, &[]))
    }

    #[test]
    fn service_errors_map_by_their_code() {
        use pb::ServiceErrorCode as C;
        let invalid = GatewayError::from_service(
            "ingest",
            service_error(C::InvalidArgument as i32, "invalid request", &[("tenant", "differs")]),
        );
        let expected = vec![("tenant".to_string(), "differs".to_string())];
        assert_eq!(parts(&invalid), ("invalid_argument", format!("{expected:?}")));
        // Without violations, the message becomes one (field-less) violation.
        let bare = from_service("ingest", C::InvalidArgument, "bad bytes");
        let expected = vec![(String::new(), "bad bytes".to_string())];
        assert_eq!(parts(&bare), ("invalid_argument", format!("{expected:?}")));

        let not_found = from_service("inference", C::NotFound, "no model");
        assert_eq!(parts(&not_found), ("not_found", "no model".into()));
        let unavailable = from_service("inference", C::Unavailable, "store down");
        assert_eq!(parts(&unavailable), ("unavailable", "inference: store down".into()));
        let deadline = from_service("ingest", C::DeadlineExceeded, "late");
        assert_eq!(parts(&deadline), ("deadline_exceeded", "ingest".into()));
        for code in [C::Internal as i32, C::Unspecified as i32, 999] {
            let internal = GatewayError::from_service("inference", service_error(code, "model crashed", &[]));
            assert_eq!(parts(&internal), ("internal", "inference: model crashed".into()), "code {code}");
        }
    }

    #[test]
    fn bus_errors_map_to_deadline_or_unavailable() {
        let timeout = BusError::Timeout {
            subject: "sm.rpc.acme.ingest.publish".into(),
            timeout: Duration::from_secs(1),
        };
        let e = GatewayError::from_bus("ingest", timeout);
        assert_eq!(parts(&e), ("deadline_exceeded", "ingest".into()));
        assert_eq!(Status::from(e).code(), Code::DeadlineExceeded);

        let no_responders = BusError::NoResponders("sm.rpc.acme.inference.recommend".into());
        let e = GatewayError::from_bus("inference", no_responders);
        assert_eq!(parts(&e), ("unavailable", "inference: no instance is running".into()));
        assert_eq!(Status::from(e).code(), Code::Unavailable);

        let e = GatewayError::from_bus("ingest", BusError::Closed);
        assert_eq!(parts(&e), ("unavailable", "ingest: the bus is closed".into()));
    }
}
