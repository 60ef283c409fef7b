//! The ingest service: the one door of events into the system.
//!
//! It answers `sm.rpc.<tenant>.ingest.publish` (an `IngestBatch`) with one `EventOutcome` per
//! event: each event is validated ([`shopmind_domain::Event::from_proto`]) and, if valid,
//! published in canonical form to `sm.events.<tenant>.<kind>` with the JetStream message id
//! `<tenant>:<event_id>` ([`shopmind_runtime::intake`]), so a re-published event is stored once.
//! (The gateway validates and publishes the events of gRPC calls itself, with the same code.)
//!
//! It also consumes the intake stream `SM_INTAKE` (durable consumer `ingest`), where backends
//! publish protobuf events directly to `sm.in.<tenant>`: valid events are published the same way,
//! the others go to the dead-letter stream (`sm.dlq.<tenant>.ingest`) with their reason.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, IncomingRequest, Message, Published};
use shopmind_config::Config;
use shopmind_domain::{RejectCode, TenantId, Violations};
use shopmind_metrics::{Source, global as metrics};
use shopmind_proto::v1 as pb;
use shopmind_runtime::admission::Admission;
use shopmind_runtime::consume::{Outcome, consume_loop};
use shopmind_runtime::serve::serve_requests;
use shopmind_runtime::{Shutdown, intake, rpc, telemetry, topology};
use tracing::{Instrument, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

/// Validates events and publishes them. Shared by the request-reply handler and the intake
/// consumer.
pub struct Ingestor {
    bus: Arc<dyn Bus>,
    admission: Admission,
}

/// What became of one event.
pub enum Admitted {
    Published(Published),
    Rejected(Violations),
}

impl Ingestor {
    pub fn new(bus: Arc<dyn Bus>, config: &Config) -> Self {
        Self { bus, admission: Admission::new(config) }
    }

    /// Validates one event of `tenant` and, if valid, publishes it in canonical form.
    pub async fn admit(
        &self,
        tenant: &TenantId,
        wire: &pb::Event,
        headers: &Headers,
    ) -> Result<Admitted, BusError> {
        let event = match self.admission.check(wire, tenant) {
            Ok(e) => e,
            Err(violations) => return Ok(Admitted::Rejected(violations)),
        };
        Ok(Admitted::Published(intake::publish_event(&*self.bus, &event, headers).await?))
    }

    /// Validates and publishes each event; the outcomes are in the events' order. Publishes are
    /// pipelined (up to [`PUBLISH_WINDOW`] awaiting their acks). A bus failure fails the batch:
    /// events published before it are safe to publish again (same message id). Outcomes are
    /// counted as events from the gateway (`source="grpc"`).
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        events: &[pb::Event],
        headers: &Headers,
    ) -> Result<Vec<pb::EventOutcome>, BusError> {
        let pending: Vec<_> = events.iter().map(|wire| self.admit(tenant, wire, headers)).collect();
        let admitted: Vec<Result<Admitted, BusError>> =
            futures::stream::iter(pending).buffered(PUBLISH_WINDOW).collect().await;
        let mut outcomes = Vec::with_capacity(events.len());
        for (index, (wire, admitted)) in events.iter().zip(admitted).enumerate() {
            let outcome = match admitted? {
                Admitted::Published(p) => {
                    metrics().event_stored(Source::Grpc, p.duplicate);
                    pb::EventOutcome {
                        kind: if p.duplicate {
                            pb::EventOutcomeKind::Duplicate
                        } else {
                            pb::EventOutcomeKind::Accepted
                        } as i32,
                        stream_sequence: p.sequence,
                        rejection: None,
                    }
                }
                Admitted::Rejected(violations) => {
                    let first = violations.first();
                    metrics().event_rejected(Source::Grpc, first.code.as_str());
                    pb::EventOutcome {
                        kind: pb::EventOutcomeKind::Rejected as i32,
                        stream_sequence: 0,
                        rejection: Some(pb::EventRejection {
                            index: index as u32,
                            event_id: wire.event_id.clone(),
                            code: first.code.as_str().into(),
                            field: first.field.clone(),
                            description: violations.to_string(),
                        }),
                    }
                }
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// One raw message of the intake stream (`sm.in.<tenant>`): what the consumer loop should do
    /// with it. Counted as an event from NATS (`source="nats"`) once its fate is known.
    pub async fn process_intake(&self, message: &Message) -> Outcome {
        let outcome = self.admit_intake(message).await;
        if let Outcome::Reject { code, .. } = &outcome {
            metrics().event_rejected(Source::Nats, code);
        }
        outcome
    }

    async fn admit_intake(&self, message: &Message) -> Outcome {
        let Some(tenant) = topology::tenant_of_subject(&message.subject) else {
            return Outcome::Reject {
                code: RejectCode::InvalidTenant.as_str(),
                reason: format!("subject {:?} carries no valid tenant", message.subject),
            };
        };
        let wire = match pb::Event::decode(message.payload.as_ref()) {
            Ok(w) => w,
            Err(e) => {
                return Outcome::Reject {
                    code: RejectCode::Malformed.as_str(),
                    reason: format!("not a shopmind.v1.Event: {e}"),
                };
            }
        };
        let mut headers = Headers::new();
        headers.set_trace(&telemetry::outgoing(&tracing::Span::current(), message.headers.trace()));
        match self.admit(&tenant, &wire, &headers).await {
            Ok(Admitted::Published(p)) => {
                metrics().event_stored(Source::Nats, p.duplicate);
                Outcome::Done
            }
            Ok(Admitted::Rejected(v)) => {
                Outcome::Reject { code: v.first().code.as_str(), reason: v.to_string() }
            }
            Err(e) => Outcome::Retry { delay: Duration::from_secs(1), reason: format!("publishing: {e}") },
        }
    }
}

pub use shopmind_runtime::intake::PUBLISH_WINDOW;

/// The durable consumer of the intake stream shared by all ingest replicas.
pub const INTAKE_DURABLE: &str = "ingest";

/// Serves ingest requests until `shutdown`; in-flight batches finish before it returns.
pub async fn run(config: Config, bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<(), IngestError> {
    let ingestor = Arc::new(Ingestor::new(bus.clone(), &config));
    let subject = topology::rpc_pattern("ingest", "publish");
    let requests = serve_requests(&*bus, &subject, "ingest", config.ingest.concurrency, &shutdown, {
        let ingestor = ingestor.clone();
        move |request| {
            let ingestor = ingestor.clone();
            async move { handle(&ingestor, request).await }
        }
    });
    let intake_spec = topology::consumer(
        topology::INTAKE_STREAM,
        INTAKE_DURABLE,
        Vec::new(),
        Duration::from_secs(config.ingest.ack_wait_s),
        config.ingest.max_deliver,
    );
    let intake = consume_loop(bus.clone(), intake_spec, "ingest", shutdown.clone(), move |message| {
        let ingestor = ingestor.clone();
        async move { ingestor.process_intake(&message).await }
    });
    let (served, consumed) = tokio::join!(requests, intake);
    served?;
    consumed?;
    info!("ingest stopped");
    Ok(())
}

async fn handle(ingestor: &Ingestor, request: IncomingRequest) {
    let headers = request.message.headers.clone();
    let incoming = headers.trace();
    let span =
        tracing::info_span!("ingest", subject = %request.message.subject, trace_id = tracing::field::Empty);
    telemetry::set_remote_parent(&span, incoming);
    let trace = telemetry::outgoing(&span, incoming);
    span.record("trace_id", trace.trace_id_hex());
    async move {
        let reply = match decode(&request.message) {
            Err(e) => pb::IngestReply { result: Some(pb::ingest_reply::Result::Error(e)) },
            Ok((tenant, batch)) => {
                let mut out_headers = Headers::new();
                out_headers.set_trace(&trace);
                match ingestor.ingest(&tenant, &batch.events, &out_headers).await {
                    Ok(outcomes) => {
                        let accepted =
                            outcomes.iter().filter(|o| o.kind == pb::EventOutcomeKind::Accepted as i32).count();
                        info!(tenant = %tenant, events = batch.events.len(), accepted, source = %batch.source, "batch ingested");
                        pb::IngestReply { result: Some(pb::ingest_reply::Result::Ok(pb::IngestOutcomes { outcomes })) }
                    }
                    Err(e) => {
                        warn!(error = %e, "publishing failed");
                        pb::IngestReply {
                            result: Some(pb::ingest_reply::Result::Error(rpc::error(
                                pb::ServiceErrorCode::Unavailable,
                                format!("event stream unavailable: {e}"),
                            ))),
                        }
                    }
                }
            }
        };
        if let Err(e) = request.respond(Headers::new(), Bytes::from(reply.encode_to_vec())).await {
            warn!(error = %e, "could not reply");
        }
    }
    .instrument(span)
    .await
}

fn decode(message: &Message) -> Result<(TenantId, pb::IngestBatch), pb::ServiceError> {
    let batch = pb::IngestBatch::decode(message.payload.as_ref())
        .map_err(|e| rpc::invalid(vec![("".into(), format!("not a shopmind.v1.IngestBatch: {e}"))]))?;
    let tenant = topology::tenant_of_subject(&message.subject)
        .ok_or_else(|| rpc::invalid(vec![("tenant".into(), "the subject carries no valid tenant".into())]))?;
    if batch.tenant != tenant.as_str() {
        return Err(rpc::invalid(vec![("tenant".into(), "differs from the tenant of the subject".into())]));
    }
    Ok((tenant, batch))
}
