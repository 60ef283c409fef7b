//! The answering side of a method: what every method does the same way around its own work.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, IncomingRequest, TraceContext};
use shopmind_domain::TenantId;
use shopmind_proto::v1 as pb;
use tracing::{Instrument, warn};

use super::{Method, Refused, WireError};
use crate::serve::serve_requests;
use crate::{Shutdown, telemetry, topology};

/// What a method's work knows of its request besides the request message.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The tenant of the subject, which the request names too.
    pub tenant: TenantId,
    /// The caller's deadline on this process's clock, if it sent one.
    pub deadline: Option<Instant>,
    /// The caller's trace context, if it sent one.
    pub trace: Option<TraceContext>,
}

/// Where a service answers its methods: the bus, and the signal to stop at.
#[derive(Clone)]
pub struct Server {
    bus: Arc<dyn Bus>,
    shutdown: Shutdown,
}

impl Server {
    pub fn new(bus: Arc<dyn Bus>, shutdown: Shutdown) -> Self {
        Self { bus, shutdown }
    }

    /// Answers method `M` for every tenant until shutdown, at most `concurrency` requests at a
    /// time (queue group: the service); then lets those in flight finish. `work` answers a
    /// request with `state`; before it, a request whose deadline has passed, that is not an
    /// `M::Request` or that names another tenant than its subject is answered with that error.
    /// Each request runs in a span named after the method, a child of the caller's trace
    /// context; `observe` sees its answer (the error in wire form) and the time it took before
    /// the reply goes out: the method's metrics. Await it, or spawn it.
    pub fn serve<M, S, W, Fut, E, O>(
        &self,
        _method: M,
        concurrency: usize,
        state: Arc<S>,
        work: W,
        observe: O,
    ) -> impl Future<Output = Result<(), BusError>> + Send + 'static
    where
        M: Method,
        S: Send + Sync + 'static,
        W: Fn(Arc<S>, M::Request, Incoming) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<M::Response, E>> + Send + 'static,
        E: WireError,
        O: Fn(&Result<M::Response, pb::ServiceError>, Duration) + Send + Sync + 'static,
    {
        let Self { bus, shutdown } = self.clone();
        let handler = Arc::new(Handler { state, work, observe });
        async move {
            let pattern = topology::rpc_pattern(M::SERVICE, M::NAME);
            serve_requests(&*bus, &pattern, M::SERVICE, concurrency, &shutdown, move |request| {
                let handler = handler.clone();
                async move { handler.answer::<M, _, _>(request).await }
            })
            .await
        }
    }
}

/// A method's work, the state it works with, and what sees each answer.
struct Handler<S, W, O> {
    state: Arc<S>,
    work: W,
    observe: O,
}

impl<S, W, O> Handler<S, W, O> {
    async fn answer<M, Fut, E>(&self, request: IncomingRequest)
    where
        M: Method,
        W: Fn(Arc<S>, M::Request, Incoming) -> Fut,
        Fut: Future<Output = Result<M::Response, E>>,
        E: WireError,
        O: Fn(&Result<M::Response, pb::ServiceError>, Duration),
    {
        let started = Instant::now();
        let headers = &request.message.headers;
        let trace = headers.trace();
        let span = tracing::info_span!(
            "rpc",
            otel.name = M::NAME,
            method = M::NAME,
            subject = %request.message.subject,
            kind = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        telemetry::set_remote_parent(&span, trace);
        span.record("trace_id", telemetry::outgoing(&span, trace).trace_id_hex());
        let result = async {
            if super::deadline_passed(headers) {
                return Err(Refused::DeadlinePassed.into_wire());
            }
            let req = M::Request::decode(request.message.payload.as_ref())
                .map_err(|error| Refused::Undecodable { message: M::REQUEST, error }.into_wire())?;
            let tenant = topology::tenant_of_subject(&request.message.subject)
                .filter(|t| t.as_str() == M::tenant(&req))
                .ok_or_else(|| Refused::OtherTenant.into_wire())?;
            let incoming = Incoming { tenant, deadline: super::deadline(headers), trace };
            (self.work)(self.state.clone(), req, incoming).await.map_err(WireError::into_wire)
        }
        .instrument(span.clone())
        .await;
        (self.observe)(&result, started.elapsed());
        let reply = Bytes::from(M::reply(result).encode_to_vec());
        if let Err(e) = request.respond(Headers::new(), reply).instrument(span).await {
            warn!(method = M::NAME, error = %e, "could not reply");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shopmind_bus::{MemoryBus, Message};

    use super::super::methods::Forecast;
    use super::super::{CallError, DEADLINE_HEADER, call};
    use super::*;

    fn forecast(tenant: &str) -> pb::ForecastRequest {
        pb::ForecastRequest { tenant: tenant.into(), item_ids: vec!["i1".into()], ..Default::default() }
    }

    #[tokio::test]
    async fn every_method_checks_deadline_payload_and_tenant_before_its_work() {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let shutdown = Shutdown::new();
        let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = answered.clone();
        let server = tokio::spawn(Server::new(bus.clone(), shutdown.clone()).serve(
            Forecast,
            4,
            Arc::new("v1"),
            |version, req, incoming| async move {
                if req.item_ids.is_empty() {
                    return Err(super::super::invalid(vec![("item_ids".into(), "empty".into())]));
                }
                assert!(incoming.deadline.is_some(), "the caller's deadline");
                Ok(pb::ForecastResponse {
                    model_version: format!("{}:{version}", incoming.tenant),
                    ..Default::default()
                })
            },
            move |result, _| seen.lock().unwrap().push(result.is_ok()),
        ));
        let acme = TenantId::parse("acme").unwrap();
        let wait = Duration::from_secs(5);
        let request = forecast("acme");
        let ok = once_served(|| call(Forecast, &*bus, &acme, &request, wait, None)).await;
        assert_eq!(ok.model_version, "acme:v1");

        let code = |e: CallError| e.service_code();
        let empty = pb::ForecastRequest { tenant: "acme".into(), ..Default::default() };
        let e = call(Forecast, &*bus, &acme, &empty, wait, None).await.unwrap_err();
        assert_eq!(code(e), Some(pb::ServiceErrorCode::InvalidArgument));

        let e = call(Forecast, &*bus, &acme, &forecast("globex"), wait, None).await.unwrap_err();
        let CallError::Service(e) = e else { panic!("a service error") };
        assert_eq!(e.violations[0].field, "tenant");
        assert_eq!(e.violations[0].description, "differs from the tenant of the subject");

        let garbage = Message::new(Forecast::subject(&acme), vec![0xff, 0xff]);
        let reply = bus.request(garbage, wait).await.unwrap();
        let e = Forecast::into_result(pb::ForecastReply::decode(reply.payload.as_ref()).unwrap()).unwrap();
        let e = e.unwrap_err();
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32);
        assert!(e.violations[0].description.starts_with("not a shopmind.v1.ForecastRequest: "), "{e:?}");

        let mut late = Message::new(Forecast::subject(&acme), forecast("acme").encode_to_vec());
        late.headers.insert(DEADLINE_HEADER, (shopmind_domain::UnixMillis::now().0 - 1_000).to_string());
        let reply = bus.request(late, wait).await.unwrap();
        let e = Forecast::into_result(pb::ForecastReply::decode(reply.payload.as_ref()).unwrap()).unwrap();
        assert_eq!(e.unwrap_err().code, pb::ServiceErrorCode::DeadlineExceeded as i32);

        assert_eq!(*answered.lock().unwrap(), [true, false, false, false, false], "every answer is observed");
        shutdown.trigger();
        server.await.unwrap().unwrap();
    }

    /// Retries `f` until the server has subscribed.
    async fn once_served<F, Fut, T>(f: F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        for _ in 0..100 {
            match f().await {
                Ok(v) => return v,
                Err(CallError::Bus(BusError::NoResponders(_))) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the server never answered")
    }
}
