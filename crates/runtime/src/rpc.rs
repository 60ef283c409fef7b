//! Conventions of service-to-service request-reply over the bus.

use std::time::{Duration, Instant};

use shopmind_bus::Headers;
use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;

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
