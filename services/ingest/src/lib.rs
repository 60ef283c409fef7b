//! The ingest service: the one door of events into the system.
//!
//! It answers `sm.rpc.<tenant>.ingest.publish` (an `IngestBatch`, from the gateway) with one
//! `EventOutcome` per event: each event is validated ([`shopmind_domain::Event::from_proto`]) and,
//! if valid, published in canonical form to `sm.events.<tenant>.<kind>` with the JetStream
//! message id `<tenant>:<event_id>`, so a re-published event is stored once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, IncomingRequest, Message};
use shopmind_config::Config;
use shopmind_domain::{Event, TenantId, UnixMillis, ValidationPolicy};
use shopmind_proto::v1 as pb;
use shopmind_runtime::serve::serve_requests;
use shopmind_runtime::{Shutdown, rpc, topology};
use tracing::{Instrument, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

/// Publishes validated events. Shared by the request-reply handler and other intakes.
pub struct Ingestor {
    bus: Arc<dyn Bus>,
    max_future_skew: Duration,
}

impl Ingestor {
    pub fn new(bus: Arc<dyn Bus>, config: &Config) -> Self {
        Self { bus, max_future_skew: Duration::from_secs(config.ingest.max_future_skew_s) }
    }

    /// Validates and publishes each event; the outcomes are in the events' order. A bus failure
    /// stops the batch: events published before it are safe to publish again (same message id).
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        events: &[pb::Event],
        headers: &Headers,
    ) -> Result<Vec<pb::EventOutcome>, BusError> {
        let policy = ValidationPolicy {
            max_future_skew: Some(self.max_future_skew),
            ..ValidationPolicy::ingest(UnixMillis::now())
        };
        let mut outcomes = Vec::with_capacity(events.len());
        for (index, wire) in events.iter().enumerate() {
            let event = match Event::from_proto(wire, Some(tenant), &policy) {
                Ok(e) => e,
                Err(violations) => {
                    let first = violations.first();
                    outcomes.push(pb::EventOutcome {
                        kind: pb::EventOutcomeKind::Rejected as i32,
                        stream_sequence: 0,
                        rejection: Some(pb::EventRejection {
                            index: index as u32,
                            event_id: wire.event_id.clone(),
                            code: first.code.as_str().into(),
                            field: first.field.clone(),
                            description: violations.to_string(),
                        }),
                    });
                    continue;
                }
            };
            let subject = topology::event_subject(&event.tenant, event.kind());
            let payload = Bytes::from(event.to_proto().encode_to_vec());
            let msg_id = format!("{}:{}", event.tenant, event.id);
            let message = Message { subject, headers: headers.clone(), payload };
            let published = self.bus.publish(message, Some(&msg_id)).await?;
            let kind = if published.duplicate {
                pb::EventOutcomeKind::Duplicate
            } else {
                pb::EventOutcomeKind::Accepted
            };
            outcomes.push(pb::EventOutcome {
                kind: kind as i32,
                stream_sequence: published.sequence,
                rejection: None,
            });
        }
        Ok(outcomes)
    }
}

/// Serves ingest requests until `shutdown`; in-flight batches finish before it returns.
pub async fn run(config: Config, bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<(), IngestError> {
    let ingestor = Arc::new(Ingestor::new(bus.clone(), &config));
    serve_requests(
        &*bus,
        &topology::rpc_pattern("ingest", "publish"),
        "ingest",
        config.ingest.concurrency,
        &shutdown,
        move |request| {
            let ingestor = ingestor.clone();
            async move { handle(&ingestor, request).await }
        },
    )
    .await?;
    info!("ingest stopped");
    Ok(())
}

async fn handle(ingestor: &Ingestor, request: IncomingRequest) {
    let headers = request.message.headers.clone();
    let trace = headers.trace().unwrap_or_else(shopmind_bus::TraceContext::new_root).child();
    let span =
        tracing::info_span!("ingest", subject = %request.message.subject, trace_id = %trace.trace_id_hex());
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
