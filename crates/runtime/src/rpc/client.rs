//! The caller's side of a method: one request with the caller's deadline and trace context, and
//! the reply read back into the response or the service's error.

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, Message, TraceContext};
use shopmind_domain::TenantId;
use shopmind_proto::v1 as pb;

use super::Method;
use crate::telemetry;

/// Why a call gave no response.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request did not get an answer: no service listens, the deadline passed, the bus
    /// failed.
    #[error("{0}")]
    Bus(#[from] BusError),
    #[error("undecodable reply: {0}")]
    Undecodable(prost::DecodeError),
    #[error("an empty reply")]
    EmptyReply,
    /// The service answered with an error.
    #[error("{}", .0.message)]
    Service(pb::ServiceError),
}

impl CallError {
    /// The code of the error the service answered, if it answered one.
    pub fn service_code(&self) -> Option<pb::ServiceErrorCode> {
        match self {
            Self::Service(e) => Some(super::WireError::code(e)),
            _ => None,
        }
    }
}

/// Calls method `M` for `tenant` and waits at most `timeout` (which travels as the request's
/// deadline). The request carries the current span's trace context, or a child of `trace` (the
/// caller's incoming context) where no tracing is installed.
pub async fn call<M: Method>(
    _method: M,
    bus: &dyn Bus,
    tenant: &TenantId,
    request: &M::Request,
    timeout: Duration,
    trace: Option<TraceContext>,
) -> Result<M::Response, CallError> {
    let mut headers = Headers::new();
    headers.set_trace(&telemetry::outgoing(&tracing::Span::current(), trace));
    super::set_deadline(&mut headers, timeout);
    let message =
        Message { subject: M::subject(tenant), headers, payload: Bytes::from(request.encode_to_vec()) };
    let reply = bus.request(message, timeout).await?;
    let reply = M::Reply::decode(reply.payload.as_ref()).map_err(CallError::Undecodable)?;
    match M::into_result(reply) {
        Some(Ok(response)) => Ok(response),
        Some(Err(e)) => Err(CallError::Service(e)),
        None => Err(CallError::EmptyReply),
    }
}
