//! Service-to-service request-reply over the bus: the methods ([`methods`], one declaration
//! each: subject, request, reply), the caller's side ([`call`]), the answering side
//! ([`Server`]), the deadline header, and the errors a service answers ([`WireError`]).
//!
//! Every request is `sm.rpc.<tenant>.<service>.<method>` carrying the request message, with the
//! caller's deadline (`Shopmind-Deadline-Ms`) and trace context (`traceparent`) in its headers;
//! every reply is the method's `…Reply` message: `ok` with the response, or `error` with a
//! `ServiceError` (code, message, field violations) that the gateway maps to a gRPC status.

mod client;
pub mod methods;
mod server;

use std::time::{Duration, Instant};

use shopmind_bus::Headers;
use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;

pub use client::{CallError, call};
pub use methods::Method;
pub use server::{Incoming, Server};

/// Header with the caller's deadline, in Unix milliseconds. Services give up on requests whose
/// deadline has passed.
pub const DEADLINE_HEADER: &str = "Shopmind-Deadline-Ms";

pub fn set_deadline(headers: &mut Headers, timeout: Duration) {
    headers.insert(DEADLINE_HEADER, UnixMillis::now().saturating_add(timeout).0.to_string());
}

/// Whether the request's deadline (if any) has passed. Services call it before working on a
/// request; each passed one counts in `shopmind_rpc_expired_total`.
pub fn deadline_passed(headers: &Headers) -> bool {
    let passed = headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.parse::<i64>().ok())
        .is_some_and(|deadline| UnixMillis::now().0 > deadline);
    if passed {
        shopmind_metrics::global().rpc_expired();
    }
    passed
}

/// The request's deadline (if any) on this process's monotonic clock: the time left until the
/// header's Unix milliseconds, from now. A deadline already past is now (so it counts as passed).
pub fn deadline(headers: &Headers) -> Option<Instant> {
    let deadline = headers.get(DEADLINE_HEADER)?.parse::<i64>().ok()?;
    let left = u64::try_from(deadline.saturating_sub(UnixMillis::now().0)).unwrap_or(0);
    let now = Instant::now();
    Some(now.checked_add(Duration::from_millis(left)).unwrap_or(now))
}

/// An error a service answers a request with: what the caller can do about it (its code), what
/// went wrong (its message) and, for a bad request, the fields at fault. Each service's error
/// type implements it, so that a kind of failure has one code on every method: a full model
/// queue or an unreadable store is UNAVAILABLE, a passed deadline DEADLINE_EXCEEDED, a missing
/// model or item NOT_FOUND, a bad field INVALID_ARGUMENT.
pub trait WireError: Sized {
    fn code(&self) -> pb::ServiceErrorCode;
    fn message(&self) -> String;
    /// The request's fields at fault, (field path, what is wrong); none unless INVALID_ARGUMENT.
    fn into_violations(self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The error as it travels.
    fn into_wire(self) -> pb::ServiceError {
        let (code, message) = (self.code(), self.message());
        let violations = self
            .into_violations()
            .into_iter()
            .map(|(field, description)| pb::FieldViolation { field, description })
            .collect();
        pb::ServiceError { code: code as i32, message, violations }
    }
}

/// An error already in its wire form.
impl WireError for pb::ServiceError {
    fn code(&self) -> pb::ServiceErrorCode {
        // The field's getter: UNSPECIFIED for a code this build does not know.
        pb::ServiceError::code(self)
    }

    fn message(&self) -> String {
        self.message.clone()
    }

    fn into_wire(self) -> pb::ServiceError {
        self
    }
}

/// Why a service answered a request without working on it.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("deadline passed before work started")]
    DeadlinePassed,
    /// The payload is not the method's request message.
    #[error("not a shopmind.v1.{message}: {error}")]
    Undecodable { message: &'static str, error: prost::DecodeError },
    /// The request names another tenant than its subject (or the subject names none).
    #[error("differs from the tenant of the subject")]
    OtherTenant,
}

impl WireError for Refused {
    fn code(&self) -> pb::ServiceErrorCode {
        match self {
            Self::DeadlinePassed => pb::ServiceErrorCode::DeadlineExceeded,
            Self::Undecodable { .. } | Self::OtherTenant => pb::ServiceErrorCode::InvalidArgument,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::DeadlinePassed => self.to_string(),
            Self::Undecodable { .. } | Self::OtherTenant => INVALID_REQUEST.into(),
        }
    }

    fn into_violations(self) -> Vec<(String, String)> {
        match self {
            Self::DeadlinePassed => Vec::new(),
            Self::Undecodable { .. } => vec![(String::new(), self.to_string())],
            Self::OtherTenant => vec![("tenant".into(), self.to_string())],
        }
    }
}

/// The message of every INVALID_ARGUMENT error; its field violations say what is wrong.
pub const INVALID_REQUEST: &str = "invalid request";

pub fn error(code: pb::ServiceErrorCode, message: impl Into<String>) -> pb::ServiceError {
    pb::ServiceError { code: code as i32, message: message.into(), violations: Vec::new() }
}

pub fn invalid(violations: Vec<(String, String)>) -> pb::ServiceError {
    pb::ServiceError {
        code: pb::ServiceErrorCode::InvalidArgument as i32,
        message: INVALID_REQUEST.into(),
        violations: violations
            .into_iter()
            .map(|(field, description)| pb::FieldViolation { field, description })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_is_the_time_left_on_the_local_clock() {
        let mut headers = Headers::new();
        assert_eq!(deadline(&headers), None);
        let before = Instant::now();
        set_deadline(&mut headers, Duration::from_secs(60));
        let at = deadline(&headers).expect("a deadline");
        // The header has millisecond resolution: up to 1 ms is lost.
        assert!(at > before + Duration::from_secs(58) && at <= Instant::now() + Duration::from_secs(60));
        assert!(!deadline_passed(&headers));

        let mut past = Headers::new();
        past.insert(DEADLINE_HEADER, (UnixMillis::now().0 - 5_000).to_string());
        assert!(deadline(&past).is_some_and(|at| at <= Instant::now()));
        assert!(deadline_passed(&past));

        let mut garbage = Headers::new();
        garbage.insert(DEADLINE_HEADER, "soon");
        assert_eq!(deadline(&garbage), None);
    }
}
