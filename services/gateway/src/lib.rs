//! The gRPC gateway: serves `shopmind.v1.Gateway`, the gRPC health service and server
//! reflection. It validates requests at the edge (`INVALID_ARGUMENT` with
//! `google.rpc.BadRequest` field violations). Valid events it publishes to the events stream
//! itself, with the admission rules and publishing code ingest uses
//! ([`shopmind_runtime::admission`], [`shopmind_runtime::intake`]): no second hop, no second
//! validation. Recommendations it asks `inference` for over NATS request-reply. Notifications
//! are streamed from the `SM_NOTIFICATIONS` stream.
//!
//! Before any work, a call is authenticated by API key ([`auth::Authenticate`], the one
//! interceptor), authorized for the tenant it names and charged one token of that tenant's rate
//! limit (`GatewayService::admit`). The listener speaks TLS when `gateway.tls` says so
//! ([`tls`]). docs/SECURITY.md has the rules and the configuration.

mod admin;
pub mod auth;
mod error;
mod limits;
pub mod tls;

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use prost::Message as _;
use shopmind_bus::{Bus, Headers, StartAt, TraceContext};
use shopmind_config::Config;
use shopmind_domain::{Event, RejectCode, TenantId, Violation, Violations};
use shopmind_metrics::{GatewayMethod, Source, global as metrics};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_server::{Gateway, GatewayServer};
use shopmind_runtime::admission::Admission;
use shopmind_runtime::rpc::{self, methods};
use shopmind_runtime::{Shutdown, intake, telemetry, topology};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, info, warn};

pub use admin::AdminService;
pub use error::GatewayError;

/// The most the gateway answers before the client's deadline (see `timeout_of`).
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

/// Events of a `StreamEvents` call are published in batches of at most this many.
const STREAM_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    Keys(#[from] auth::KeyError),
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
}

/// The `Gateway` service implementation.
pub struct GatewayService {
    bus: Arc<dyn Bus>,
    request_timeout: Duration,
    max_batch: usize,
    admission: Admission,
    shutdown: Shutdown,
    limits: limits::RateLimits,
}

impl GatewayService {
    pub fn new(config: &Config, bus: Arc<dyn Bus>, shutdown: Shutdown) -> Self {
        Self {
            bus,
            request_timeout: Duration::from_millis(config.gateway.request_timeout_ms),
            max_batch: config.gateway.max_batch,
            admission: Admission::new(config),
            shutdown,
            limits: limits::RateLimits::new(&config.gateway.rate_limit),
        }
    }

    /// Whether `caller` may make a call for `tenant` now: its key is the tenant's
    /// ([`auth::authorize`]) and the tenant's rate limit has a token left.
    fn admit(&self, caller: &auth::Caller, tenant: &TenantId) -> Result<(), GatewayError> {
        auth::authorize(caller, tenant)?;
        self.limits.take(tenant)
    }

    /// Publishes validated events to the events stream (pipelined, within `timeout`) and counts
    /// each as stored or duplicate. Their trace context is the current span's.
    async fn publish(
        &self,
        events: &[Event],
        trace: &TraceContext,
        timeout: Duration,
    ) -> Result<pb::PublishEventsResponse, GatewayError> {
        let mut headers = Headers::new();
        headers.set_trace(trace);
        let published = tokio::time::timeout(timeout, intake::publish_events(&*self.bus, events, &headers))
            .await
            .map_err(|_| GatewayError::DeadlineExceeded { service: "the event stream" })?
            .map_err(|e| GatewayError::from_bus("the event stream", e))?;
        let mut response = pb::PublishEventsResponse::default();
        for p in published {
            metrics().event_stored(Source::Grpc, p.duplicate);
            if p.duplicate {
                response.duplicates += 1;
            } else {
                response.accepted += 1;
            }
        }
        Ok(response)
    }

    /// Validates one event of a stream, where each event names its own tenant.
    fn validate_streamed(&self, ev: &pb::Event) -> Result<Event, (&'static str, String, String)> {
        let tenant = TenantId::parse(ev.tenant.clone())
            .map_err(|e| (RejectCode::InvalidTenant.as_str(), "tenant".to_string(), e.to_string()))?;
        self.admission.check(ev, &tenant).map_err(|vs| {
            let first = vs.first();
            (first.code.as_str(), first.field.clone(), vs.to_string())
        })
    }

    /// How long the gateway works on a call: the client's deadline (`grpc-timeout`) less a small
    /// margin, so that a late call is answered DEADLINE_EXCEEDED by the gateway before tonic's
    /// own deadline timer would answer CANCELLED; the configured timeout without one.
    fn timeout_of<T>(&self, req: &Request<T>) -> Duration {
        grpc_timeout(req.metadata())
            .map(|d| d.saturating_sub(DEADLINE_MARGIN.min(d / 10)))
            .unwrap_or(self.request_timeout)
    }
}

/// The path of a field of the i-th event of a request (the event itself for whole-event problems).
fn event_field(i: usize, field: &str) -> String {
    if field.is_empty() { format!("events[{i}]") } else { format!("events[{i}].{field}") }
}

/// The client's deadline from the `grpc-timeout` header, if any.
fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (num, unit) = v.split_at(v.len().checked_sub(1)?);
    // At most 8 digits (gRPC over HTTP/2), which also keeps `n * 3600` from overflowing.
    if num.is_empty() || num.len() > 8 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The client's trace context (`traceparent` metadata), if it sent one.
fn incoming_trace(metadata: &tonic::metadata::MetadataMap) -> Option<TraceContext> {
    metadata.get("traceparent").and_then(|v| v.to_str().ok()).and_then(TraceContext::parse)
}

/// Records how long a call of `method` took and how it ended.
fn observe<T>(method: GatewayMethod, started: Instant, result: &Result<T, Status>) {
    let code = result.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
    metrics().gateway_request(method, i32::from(code), started.elapsed());
}

/// Counts an event rejected at the edge (by its first violation's code); its violations.
fn rejected(violations: Violations) -> Vec<Violation> {
    metrics().event_rejected(Source::Grpc, violations.first().code.as_str());
    violations.0
}

fn parse_tenant(raw: &str) -> Result<TenantId, GatewayError> {
    TenantId::parse(raw).map_err(|e| GatewayError::invalid("tenant", e.to_string()))
}

type NotificationStream = Pin<Box<dyn Stream<Item = Result<pb::Notification, Status>> + Send>>;

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn publish_events(
        &self,
        request: Request<pb::PublishEventsRequest>,
    ) -> Result<Response<pb::PublishEventsResponse>, Status> {
        let started = Instant::now();
        let incoming = incoming_trace(request.metadata());
        let timeout = self.timeout_of(&request);
        let caller = auth::caller(&request);
        let req = request.into_inner();
        let span = tracing::info_span!("PublishEvents", tenant = %req.tenant, events = req.events.len(), trace_id = tracing::field::Empty);
        telemetry::set_remote_parent(&span, incoming);
        let trace = telemetry::outgoing(&span, incoming);
        span.record("trace_id", trace.trace_id_hex());
        let result = async move {
            let tenant = parse_tenant(&req.tenant)?;
            self.admit(&caller?, &tenant)?;
            if req.events.is_empty() {
                return Err(GatewayError::invalid("events", "must not be empty").into());
            }
            if req.events.len() > self.max_batch {
                return Err(GatewayError::invalid(
                    "events",
                    format!("at most {} events per call, got {}", self.max_batch, req.events.len()),
                )
                .into());
            }
            self.admission
                .check_tenant(&tenant)
                .map_err(|v| GatewayError::invalid("tenant", format!("{}: {}", v.code, v.description)))?;
            let mut violations = Vec::new();
            let mut admitted = Vec::with_capacity(req.events.len());
            for (i, wire) in req.events.iter().enumerate() {
                match self.admission.check(wire, &tenant) {
                    Ok(e) => admitted.push(e),
                    Err(vs) => violations.extend(
                        rejected(vs)
                            .into_iter()
                            .map(|v| (event_field(i, &v.field), format!("{}: {}", v.code, v.description))),
                    ),
                }
            }
            if !violations.is_empty() {
                return Err(GatewayError::InvalidArgument(violations).into());
            }
            Ok(Response::new(self.publish(&admitted, &trace, timeout).await?))
        }
        .instrument(span)
        .await;
        observe(GatewayMethod::PublishEvents, started, &result);
        result
    }

    async fn stream_events(
        &self,
        request: Request<Streaming<pb::Event>>,
    ) -> Result<Response<pb::PublishEventsResponse>, Status> {
        let started = Instant::now();
        let incoming = incoming_trace(request.metadata());
        let timeout = self.timeout_of(&request);
        let caller = auth::caller(&request);
        let mut stream = request.into_inner();
        let span = tracing::info_span!("StreamEvents", trace_id = tracing::field::Empty);
        telemetry::set_remote_parent(&span, incoming);
        let trace = telemetry::outgoing(&span, incoming);
        span.record("trace_id", trace.trace_id_hex());
        let result = async move {
            let caller = caller?;
            // Tenants this call was admitted for (each takes one token of its rate limit).
            let mut admitted: Vec<String> = Vec::new();
            let mut response = pb::PublishEventsResponse::default();
            let mut index: u32 = 0;
            let mut batch: Vec<Event> = Vec::with_capacity(STREAM_BATCH);
            let mut batch_tenant: Option<TenantId> = None;
            loop {
                let next = stream.message().await?;
                let flush = match &next {
                    None => true,
                    Some(ev) => {
                        batch.len() >= STREAM_BATCH
                            || batch_tenant.as_ref().is_some_and(|t| t.as_str() != ev.tenant)
                    }
                };
                if flush && batch_tenant.take().is_some() {
                    let published = self.publish(&batch, &trace, timeout).await?;
                    batch.clear();
                    response.accepted += published.accepted;
                    response.duplicates += published.duplicates;
                }
                let Some(ev) = next else { break };
                // An invalid tenant is reported as the event's rejection below.
                if !admitted.contains(&ev.tenant)
                    && let Ok(tenant) = TenantId::parse(ev.tenant.clone())
                {
                    self.admit(&caller, &tenant)?;
                    admitted.push(ev.tenant.clone());
                }
                match self.validate_streamed(&ev) {
                    Ok(event) => {
                        batch_tenant = Some(event.tenant.clone());
                        batch.push(event);
                    }
                    Err((code, field, description)) => {
                        metrics().event_rejected(Source::Grpc, code);
                        response.rejected.push(pb::EventRejection {
                            index,
                            event_id: ev.event_id.clone(),
                            code: code.into(),
                            field,
                            description,
                        })
                    }
                }
                index = index.saturating_add(1);
            }
            Ok(Response::new(response))
        }
        .instrument(span)
        .await;
        observe(GatewayMethod::StreamEvents, started, &result);
        result
    }

    async fn recommend(
        &self,
        request: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        self.forward(methods::Recommend, GatewayMethod::Recommend, request, |req| {
            let scenario = pb::Scenario::try_from(req.scenario).unwrap_or(pb::Scenario::Unspecified);
            let needs_user = matches!(
                scenario,
                pb::Scenario::Unspecified | pb::Scenario::ForYou | pb::Scenario::CartComplement
            );
            if needs_user && req.user_id.is_empty() {
                return Err(GatewayError::invalid("user_id", "required"));
            }
            Ok(())
        })
        .await
    }

    async fn predict_purchase_intent(
        &self,
        request: Request<pb::IntentRequest>,
    ) -> Result<Response<pb::IntentResponse>, Status> {
        self.forward(methods::Intent, GatewayMethod::PredictPurchaseIntent, request, |req| {
            if req.user_id.is_empty() && req.session_id.is_empty() {
                return Err(GatewayError::InvalidArgument(vec![
                    ("user_id".into(), "user_id or session_id is required".into()),
                    ("session_id".into(), "user_id or session_id is required".into()),
                ]));
            }
            Ok(())
        })
        .await
    }

    async fn forecast_demand(
        &self,
        request: Request<pb::ForecastRequest>,
    ) -> Result<Response<pb::ForecastResponse>, Status> {
        self.forward(methods::Forecast, GatewayMethod::ForecastDemand, request, |_| Ok(())).await
    }

    async fn get_customer_profile(
        &self,
        request: Request<pb::GetCustomerProfileRequest>,
    ) -> Result<Response<pb::CustomerProfile>, Status> {
        self.forward(methods::Profile, GatewayMethod::GetCustomerProfile, request, |req| {
            if req.user_id.is_empty() {
                return Err(GatewayError::invalid("user_id", "required"));
            }
            Ok(())
        })
        .await
    }

    async fn assist(
        &self,
        request: Request<pb::AssistRequest>,
    ) -> Result<Response<pb::AssistResponse>, Status> {
        self.forward(methods::Assist, GatewayMethod::Assist, request, |_| Ok(())).await
    }

    async fn get_agent_report(
        &self,
        request: Request<pb::GetAgentReportRequest>,
    ) -> Result<Response<pb::AgentReport>, Status> {
        self.forward(methods::AgentReport, GatewayMethod::GetAgentReport, request, |_| Ok(())).await
    }

    type StreamNotificationsStream = NotificationStream;

    async fn stream_notifications(
        &self,
        request: Request<pb::StreamNotificationsRequest>,
    ) -> Result<Response<Self::StreamNotificationsStream>, Status> {
        let started = Instant::now();
        let result = match auth::caller(&request) {
            Ok(caller) => self.open_notifications(&caller, request.into_inner()).await,
            Err(e) => Err(e.into()),
        };
        observe(GatewayMethod::StreamNotifications, started, &result);
        result
    }
}

impl GatewayService {
    /// `StreamNotifications`: the tenant's notification stream from the requested point on.
    async fn open_notifications(
        &self,
        caller: &auth::Caller,
        req: pb::StreamNotificationsRequest,
    ) -> Result<Response<NotificationStream>, Status> {
        let tenant = parse_tenant(&req.tenant)?;
        self.admit(caller, &tenant)?;
        if !req.user_id.is_empty() {
            shopmind_domain::UserId::parse(req.user_id.clone())
                .map_err(|e| GatewayError::invalid("user_id", e.to_string()))?;
        }
        let start = if req.from_sequence == 0 { StartAt::New } else { StartAt::Sequence(req.from_sequence) };
        let replay = self
            .bus
            .replay(topology::NOTIFICATIONS_STREAM, Some(&topology::notifications_of_tenant(&tenant)), start)
            .await
            .map_err(|e| GatewayError::from_bus("notifications", e))?;
        // The stored id: the pseudonym for tenants that pseudonymise customer ids.
        let user = self
            .admission
            .stored_user_id(&tenant, &req.user_id)
            .map_err(|v| GatewayError::invalid(v.field, v.description))?;
        let shutdown = self.shutdown.clone();
        let notifications =
            replay.take_until(async move { shutdown.wait().await }).filter_map(move |stored| {
                let user = user.clone();
                async move {
                    match stored {
                        Err(e) => Some(Err(Status::unavailable(format!("notification stream: {e}")))),
                        Ok(stored) => match pb::Notification::decode(stored.message.payload.as_ref()) {
                            Ok(mut n) => {
                                n.sequence = stored.sequence;
                                (user.is_empty() || n.user_id == user).then_some(Ok(n))
                            }
                            Err(e) => {
                                warn!(seq = stored.sequence, error = %e, "undecodable notification skipped");
                                None
                            }
                        },
                    }
                }
            });
        Ok(Response::new(Box::pin(notifications)))
    }
}

impl GatewayService {
    /// A unary call answered by the service of `M` ([`rpc::methods`]): the tenant and the
    /// gateway's own checks (`check`) first, then the request travels with the caller's trace
    /// context and deadline ([`rpc::call`]), and the service's answer or error comes back.
    async fn forward<M: rpc::Method>(
        &self,
        rpc_method: M,
        method: GatewayMethod,
        request: Request<M::Request>,
        check: impl FnOnce(&M::Request) -> Result<(), GatewayError>,
    ) -> Result<Response<M::Response>, Status> {
        let started = Instant::now();
        let incoming = incoming_trace(request.metadata());
        let timeout = self.timeout_of(&request);
        let caller = auth::caller(&request);
        let mut req = request.into_inner();
        let span = tracing::info_span!(
            "rpc",
            otel.name = method.as_str(),
            tenant = %M::tenant(&req),
            trace_id = tracing::field::Empty
        );
        telemetry::set_remote_parent(&span, incoming);
        let trace = telemetry::outgoing(&span, incoming);
        span.record("trace_id", trace.trace_id_hex());
        let result = async move {
            let tenant = parse_tenant(M::tenant(&req))?;
            self.admit(&caller?, &tenant)?;
            check(&req)?;
            if let Some(user) = M::stored_customer(&mut req) {
                *user = self
                    .admission
                    .stored_user_id(&tenant, user)
                    .map_err(|v| GatewayError::invalid(v.field, v.description))?;
            }
            let response = rpc::call(rpc_method, &*self.bus, &tenant, &req, timeout, Some(trace))
                .await
                .map_err(|e| GatewayError::from_call(M::SERVICE, e))?;
            Ok(Response::new(response))
        }
        .instrument(span)
        .await;
        observe(method, started, &result);
        result
    }
}

/// Serves the gateway on `listener` until `shutdown`, then stops accepting and finishes the
/// calls in flight.
pub async fn run(
    config: Config,
    bus: Arc<dyn Bus>,
    listener: TcpListener,
    shutdown: Shutdown,
) -> Result<(), ServeError> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<GatewayServer<GatewayService>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shopmind_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Admin calls (`shopmind.v1.Admin`, admin.rs): admin API keys only (gateway.admin_keys).
    let admin = AdminService::new(&config, bus.clone(), shutdown.clone());
    let keys = Arc::new(auth::Keyring::from_config(&config.gateway)?);
    if keys.is_open() {
        warn!(
            "no API keys configured (gateway.api_keys, gateway.api_keys_file): the gateway is open, \
             every caller may act for any tenant"
        );
    }
    let tls = tls::server_config(&config.gateway.tls)?;
    let service = GatewayService::new(&config, bus, shutdown.clone());
    let addr = listener.local_addr().ok();
    info!(addr = ?addr, tls = tls.is_some(), api_keys = !keys.is_open(), "gateway serving");
    let signal = {
        let shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            health_reporter.set_not_serving::<GatewayServer<GatewayService>>().await;
        }
    };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(health)
        .add_service(reflection)
        .add_service(GatewayServer::with_interceptor(service, auth::Authenticate::tenants(keys.clone())))
        .add_service(pb::admin_server::AdminServer::with_interceptor(
            admin,
            auth::Authenticate::admin(keys.clone()),
        ))
        .serve_with_incoming_shutdown(
            // Without TCP_NODELAY a reply's last frames wait for the client's delayed ACK (~40 ms).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        )
        .await?;
    info!("gateway stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tonic::metadata::MetadataMap;

    use super::*;

    fn timeout_of(value: &str) -> Option<Duration> {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        grpc_timeout(&metadata)
    }

    #[test]
    fn grpc_timeout_reads_every_unit() {
        assert_eq!(timeout_of("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(timeout_of("3M"), Some(Duration::from_secs(180)));
        assert_eq!(timeout_of("5S"), Some(Duration::from_secs(5)));
        assert_eq!(timeout_of("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout_of("1500u"), Some(Duration::from_micros(1500)));
        assert_eq!(timeout_of("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(timeout_of("0m"), Some(Duration::ZERO));
    }

    #[test]
    fn grpc_timeout_ignores_absent_or_malformed_values() {
        assert_eq!(grpc_timeout(&MetadataMap::new()), None);
        for bad in ["", "S", "5", "5s", "5x", "abcS", "1.5S", "-1S", "+5S", "5 S", "123456789m"] {
            assert_eq!(timeout_of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn grpc_timeout_does_not_overflow_on_huge_values() {
        // Longer than the 8 digits gRPC allows: not a valid timeout, and no panic either.
        assert_eq!(timeout_of("9999999999999999H"), None);
        assert_eq!(timeout_of("999999999999999999M"), None);
        assert_eq!(timeout_of("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
    }
}
