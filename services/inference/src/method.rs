//! What every request-reply method of the inference service does the same way around its own
//! work: a span under the caller's trace context, the deadline check, decoding the request, the
//! check that it names the tenant of its subject, and the reply (its answer or its error).

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Headers, IncomingRequest};
use shopmind_proto::v1 as pb;
use shopmind_runtime::{rpc, telemetry};
use tracing::{Instrument, warn};

use crate::predict::{check_tenant, decode};

/// A method's request and reply messages.
pub(crate) trait Method {
    type Request: prost::Message + Default;
    type Response;
    /// The request's message name, e.g. "AssistRequest".
    const REQUEST: &'static str;
    fn tenant(req: &Self::Request) -> &str;
    /// The reply message carrying `result`, encoded.
    fn reply(result: Result<Self::Response, pb::ServiceError>) -> Vec<u8>;
}

macro_rules! methods {
    ($($name:ident: $request:ident => $response:ident, $reply:ident($module:ident);)*) => {$(
        pub(crate) struct $name;
        impl Method for $name {
            type Request = pb::$request;
            type Response = pb::$response;
            const REQUEST: &'static str = stringify!($request);
            fn tenant(req: &pb::$request) -> &str {
                &req.tenant
            }
            fn reply(result: Result<pb::$response, pb::ServiceError>) -> Vec<u8> {
                let result = Some(match result {
                    Ok(ok) => pb::$module::Result::Ok(ok),
                    Err(e) => pb::$module::Result::Error(e),
                });
                pb::$reply { result }.encode_to_vec()
            }
        }
    )*};
}

methods! {
    ProfileMethod: GetCustomerProfileRequest => CustomerProfile, ProfileReply(profile_reply);
    AgentReportMethod: GetAgentReportRequest => AgentReport, AgentReportReply(agent_report_reply);
    AssistMethod: AssistRequest => AssistResponse, AssistReply(assist_reply);
}

/// Answers `request` for method `name`: `work` runs on the decoded request unless the caller's
/// deadline has passed, the payload is not an `M::Request` or it names another tenant than its
/// subject (each answered as an error without work). `observe` sees the result and the time
/// taken (the method's metrics) before the reply goes out.
pub(crate) async fn answer<M, Work, Fut>(
    name: &'static str,
    request: IncomingRequest,
    work: Work,
    observe: impl FnOnce(&Result<M::Response, pb::ServiceError>, Duration),
) where
    M: Method,
    Work: FnOnce(M::Request) -> Fut,
    Fut: Future<Output = Result<M::Response, pb::ServiceError>>,
{
    let started = Instant::now();
    let headers = &request.message.headers;
    let incoming = headers.trace();
    let span = tracing::info_span!(
        "inference_rpc",
        method = name,
        subject = %request.message.subject,
        trace_id = tracing::field::Empty
    );
    telemetry::set_remote_parent(&span, incoming);
    span.record("trace_id", telemetry::outgoing(&span, incoming).trace_id_hex());
    let result = async {
        if rpc::deadline_passed(headers) {
            return Err(rpc::error(
                pb::ServiceErrorCode::DeadlineExceeded,
                "deadline passed before work started",
            ));
        }
        let req: M::Request = decode(request.message.payload.as_ref(), M::REQUEST)?;
        check_tenant(&request.message.subject, M::tenant(&req))?;
        work(req).await
    }
    .instrument(span.clone())
    .await;
    observe(&result, started.elapsed());
    let reply = Bytes::from(M::reply(result));
    if let Err(e) = request.respond(Headers::new(), reply).instrument(span).await {
        warn!(method = name, error = %e, "could not reply");
    }
}
