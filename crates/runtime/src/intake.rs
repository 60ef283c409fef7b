//! The events stream's wire form, both ways: the one place where a validated event becomes a
//! message on `sm.events.<tenant>.<kind>` (its canonical protobuf form) with the JetStream
//! message id `<tenant>:<event_id>`, so that a re-published event is stored once
//! ([`publish_event`]), and where such a message becomes a validated event again
//! ([`decode_event`]).
//! The gateway publishes the events of gRPC calls this way, ingest those of the intake stream;
//! both validate with [`crate::admission::Admission`] first. The feature and notification
//! services decode what they consume with [`decode_event`], and so does a training round.

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, Message, Published};
use shopmind_domain::{Event, RejectCode, ValidationPolicy};
use shopmind_proto::v1 as pb;

use crate::topology;

/// Publishes of one batch awaiting their acks at the same time.
pub const PUBLISH_WINDOW: usize = 256;

/// The JetStream message id of an event.
pub fn message_id(event: &Event) -> String {
    format!("{}:{}", event.tenant, event.id)
}

/// Publishes one event (with `headers`, e.g. its trace context).
pub async fn publish_event(bus: &dyn Bus, event: &Event, headers: &Headers) -> Result<Published, BusError> {
    let subject = topology::event_subject(&event.tenant, event.kind());
    let payload = Bytes::from(event.to_proto().encode_to_vec());
    let message = Message { subject, headers: headers.clone(), payload };
    bus.publish(message, Some(&message_id(event))).await
}

/// Decodes a message of the events stream into a validated event (the tenant is the subject's),
/// or the reason it is not one: the dead-letter code and a description.
pub fn decode_event(message: &Message) -> Result<Event, (&'static str, String)> {
    let wire = pb::Event::decode(message.payload.as_ref())
        .map_err(|e| (RejectCode::Malformed.as_str(), format!("not a shopmind.v1.Event: {e}")))?;
    let tenant = topology::tenant_of_subject(&message.subject);
    Event::from_proto(&wire, tenant.as_ref(), &ValidationPolicy::stored())
        .map_err(|v| (v.first().code.as_str(), v.to_string()))
}

/// Publishes the events with up to [`PUBLISH_WINDOW`] acks awaited at once; the answers are in
/// the events' order. A failure fails the whole call: the events published before it are safe
/// to publish again (same message id).
pub async fn publish_events(
    bus: &dyn Bus,
    events: &[Event],
    headers: &Headers,
) -> Result<Vec<Published>, BusError> {
    // The futures are made first: a lazily mapping iterator would make the returned future
    // not provably Send for callers inside `async_trait` methods.
    let pending: Vec<_> = events.iter().map(|event| publish_event(bus, event, headers)).collect();
    futures::stream::iter(pending).buffered(PUBLISH_WINDOW).collect::<Vec<_>>().await.into_iter().collect()
}
