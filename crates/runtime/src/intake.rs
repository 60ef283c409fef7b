//! Publishing admitted events to the events stream: the one place where a validated event
//! becomes a message on `sm.events.<tenant>.<kind>` (its canonical protobuf form) with the
//! JetStream message id `<tenant>:<event_id>`, so that a re-published event is stored once.
//! The gateway publishes the events of gRPC calls this way, ingest those of the intake stream;
//! both validate with [`crate::admission::Admission`] first.

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, Message, Published};
use shopmind_domain::Event;

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
