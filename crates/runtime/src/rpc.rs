//! Conventions of service-to-service request-reply over the bus.

use std::time::Duration;

use shopmind_bus::Headers;
use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;

/// Header with the caller's deadline, in Unix milliseconds. Services give up on requests whose
/// deadline has passed.
pub const DEADLINE_HEADER: &str = "Shopmind-Deadline-Ms";

pub fn set_deadline(headers: &mut Headers, timeout: Duration) {
    headers.insert(DEADLINE_HEADER, UnixMillis::now().saturating_add(timeout).0.to_string());
}

/// Whether the request's deadline (if any) has passed.
pub fn deadline_passed(headers: &Headers) -> bool {
    headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|deadline| UnixMillis::now().0 > deadline)
}

pub fn error(code: pb::ServiceErrorCode, message: impl Into<String>) -> pb::ServiceError {
    pb::ServiceError { code: code as i32, message: message.into(), violations: Vec::new() }
}

pub fn invalid(violations: Vec<(String, String)>) -> pb::ServiceError {
    pb::ServiceError {
        code: pb::ServiceErrorCode::InvalidArgument as i32,
        message: "invalid request".into(),
        violations: violations
            .into_iter()
            .map(|(field, description)| pb::FieldViolation { field, description })
            .collect(),
    }
}
