//! The ingest service against a real nats-server: validation outcomes, de-duplication per tenant,
//! request errors, trace propagation onto stored events, and shutdown.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, Message, NatsBus, StartAt, StoredMessage, TraceContext};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis};
use shopmind_proto::v1 as pb;
use shopmind_runtime::topology::{self, EVENTS_STREAM};
use shopmind_runtime::{Shutdown, connect};
use shopmind_testkit::{NatsServer, eventually};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A running ingest service on a private nats-server.
struct Ingest {
    bus: Arc<dyn Bus>,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), shopmind_ingest::IngestError>>,
    nats: NatsServer,
}

impl Ingest {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "ingest-test").await.unwrap());
        let config = Config::default();
        connect::ensure_streams(&*bus, &config).await.unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(shopmind_ingest::run(config, bus.clone(), shutdown.clone()));
        let this = Self { bus, shutdown, task, nats };
        // The service subscribes asynchronously: wait until an (empty) batch is answered.
        let tenant = tenant("warmup");
        eventually(WAIT, "ingest answers requests", || async {
            let batch = pb::IngestBatch { tenant: tenant.to_string(), events: vec![], source: "test".into() };
            this.try_call(&tenant, batch.encode_to_vec(), Headers::new()).await.ok()
        })
        .await;
        this
    }

    async fn try_call(
        &self,
        tenant: &TenantId,
        payload: Vec<u8>,
        headers: Headers,
    ) -> Result<pb::IngestReply, BusError> {
        let subject = topology::rpc_subject(tenant, "ingest", "publish");
        let message = Message::new(subject, Bytes::from(payload)).with_headers(headers);
        let reply = self.bus.request(message, REQUEST_TIMEOUT).await?;
        Ok(pb::IngestReply::decode(reply.payload.as_ref()).unwrap())
    }

    async fn call(&self, tenant: &TenantId, payload: Vec<u8>, headers: Headers) -> pb::ingest_reply::Result {
        self.try_call(tenant, payload, headers).await.unwrap().result.expect("a reply carries a result")
    }

    /// Sends a batch of `events` for `tenant` on the subject of `tenant`; expects outcomes.
    async fn publish(&self, tenant: &TenantId, events: Vec<pb::Event>) -> Vec<pb::EventOutcome> {
        let batch = pb::IngestBatch { tenant: tenant.to_string(), events, source: "test".into() };
        match self.call(tenant, batch.encode_to_vec(), Headers::new()).await {
            pb::ingest_reply::Result::Ok(ok) => ok.outcomes,
            pb::ingest_reply::Result::Error(e) => panic!("unexpected service error {e:?}"),
        }
    }

    /// The first `n` messages of the events stream, in order.
    async fn stored_events(&self, n: usize) -> Vec<StoredMessage> {
        let mut replay = self.bus.replay(EVENTS_STREAM, None, StartAt::First).await.unwrap();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let m = tokio::time::timeout(WAIT, replay.next()).await.expect("a stored event").unwrap();
            out.push(m.unwrap());
        }
        out
    }

    /// Shuts the service down; returns the server, still running.
    async fn stop(self) -> NatsServer {
        self.shutdown.trigger();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("ingest stops within 5 s of shutdown")
            .unwrap();
        assert!(result.is_ok(), "ingest returned {result:?}");
        self.nats
    }
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn viewed(id: &str, tenant: &str, user: &str, item: &str) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: tenant.into(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: item.into(),
            source: "search".into(),
        })),
    }
}

fn added_to_cart(id: &str, tenant: &str, user: &str, item: &str) -> pb::Event {
    pb::Event {
        payload: Some(pb::event::Payload::AddedToCart(pb::AddedToCart {
            item_id: item.into(),
            quantity: 2,
            unit_price: Some(pb::Money { amount_minor: 1999, currency: "EUR".into() }),
        })),
        ..viewed(id, tenant, user, item)
    }
}

fn kind_of(o: &pb::EventOutcome) -> pb::EventOutcomeKind {
    pb::EventOutcomeKind::try_from(o.kind).unwrap()
}

fn invalid_argument(result: pb::ingest_reply::Result) -> pb::ServiceError {
    match result {
        pb::ingest_reply::Result::Error(e) => {
            assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32, "{e:?}");
            e
        }
        pb::ingest_reply::Result::Ok(ok) => panic!("expected INVALID_ARGUMENT, got outcomes {ok:?}"),
    }
}

#[tokio::test]
async fn valid_events_are_accepted_and_stored_on_their_subjects() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    // The second event leaves the tenant empty: it takes the tenant of the call.
    let outcomes = ingest
        .publish(&acme, vec![viewed("e1", "acme", "u1", "i1"), added_to_cart("e2", "", "u1", "i2")])
        .await;
    assert_eq!(outcomes.len(), 2);
    for o in &outcomes {
        assert_eq!(kind_of(o), pb::EventOutcomeKind::Accepted, "{o:?}");
        assert!(o.rejection.is_none());
    }
    assert!(outcomes[0].stream_sequence > 0);
    assert!(outcomes[1].stream_sequence > outcomes[0].stream_sequence, "{outcomes:?}");

    let stored = ingest.stored_events(2).await;
    assert_eq!(stored[0].sequence, outcomes[0].stream_sequence);
    assert_eq!(stored[1].sequence, outcomes[1].stream_sequence);
    assert_eq!(stored[0].message.subject, "sm.events.acme.product_viewed");
    assert_eq!(stored[1].message.subject, "sm.events.acme.added_to_cart");
    let first = pb::Event::decode(stored[0].message.payload.as_ref()).unwrap();
    assert_eq!(first.event_id, "e1");
    assert_eq!(first.user_id, "u1");
    let second = pb::Event::decode(stored[1].message.payload.as_ref()).unwrap();
    assert_eq!(second.event_id, "e2");
    assert_eq!(second.tenant, "acme", "the stored event names its tenant");
    match second.payload {
        Some(pb::event::Payload::AddedToCart(a)) => {
            assert_eq!(a.item_id, "i2");
            assert_eq!(a.quantity, 2);
        }
        other => panic!("unexpected payload {other:?}"),
    }
    ingest.stop().await;
}

#[tokio::test]
async fn a_resent_event_is_a_duplicate_with_the_original_sequence() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let first = ingest.publish(&acme, vec![viewed("e1", "acme", "u1", "i1")]).await;
    assert_eq!(kind_of(&first[0]), pb::EventOutcomeKind::Accepted);

    let again =
        ingest.publish(&acme, vec![viewed("e1", "acme", "u1", "i1"), viewed("e2", "acme", "u1", "i2")]).await;
    assert_eq!(kind_of(&again[0]), pb::EventOutcomeKind::Duplicate, "{again:?}");
    assert_eq!(again[0].stream_sequence, first[0].stream_sequence);
    assert_eq!(kind_of(&again[1]), pb::EventOutcomeKind::Accepted);
    assert!(again[1].stream_sequence > first[0].stream_sequence);

    let state = ingest.bus.stream_state(EVENTS_STREAM).await.unwrap();
    assert_eq!(state.messages, 2, "the duplicate was not stored again");
    ingest.stop().await;
}

#[tokio::test]
async fn an_invalid_event_is_rejected_and_the_rest_of_the_batch_accepted() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let outcomes = ingest
        .publish(
            &acme,
            vec![
                viewed("e1", "acme", "u1", "i1"),
                viewed("e2", "acme", "", "i2"),
                viewed("e3", "acme", "u1", "i3"),
            ],
        )
        .await;
    assert_eq!(outcomes.len(), 3);
    assert_eq!(kind_of(&outcomes[0]), pb::EventOutcomeKind::Accepted);
    assert_eq!(kind_of(&outcomes[2]), pb::EventOutcomeKind::Accepted);
    assert_eq!(kind_of(&outcomes[1]), pb::EventOutcomeKind::Rejected);
    assert_eq!(outcomes[1].stream_sequence, 0);
    let rejection = outcomes[1].rejection.as_ref().expect("a rejection");
    assert_eq!(rejection.index, 1);
    assert_eq!(rejection.event_id, "e2");
    assert_eq!(rejection.code, "missing_field");
    assert_eq!(rejection.field, "user_id");
    assert!(rejection.description.contains("user_id"), "{rejection:?}");

    let state = ingest.bus.stream_state(EVENTS_STREAM).await.unwrap();
    assert_eq!(state.messages, 2, "only the valid events are stored");
    let stored = ingest.stored_events(2).await;
    let ids: Vec<String> =
        stored.iter().map(|m| pb::Event::decode(m.message.payload.as_ref()).unwrap().event_id).collect();
    assert_eq!(ids, ["e1", "e3"]);
    ingest.stop().await;
}

#[tokio::test]
async fn an_event_of_another_tenant_in_the_batch_is_rejected_as_tenant_mismatch() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let outcomes = ingest.publish(&acme, vec![viewed("e1", "globex", "u1", "i1")]).await;
    assert_eq!(kind_of(&outcomes[0]), pb::EventOutcomeKind::Rejected);
    let rejection = outcomes[0].rejection.as_ref().unwrap();
    assert_eq!(rejection.code, "tenant_mismatch");
    assert_eq!(rejection.field, "tenant");
    assert_eq!(ingest.bus.stream_state(EVENTS_STREAM).await.unwrap().messages, 0);
    ingest.stop().await;
}

#[tokio::test]
async fn the_same_event_id_under_two_tenants_is_stored_twice() {
    let ingest = Ingest::start().await;
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    let a = ingest.publish(&acme, vec![viewed("shared-id", "acme", "u1", "i1")]).await;
    let g = ingest.publish(&globex, vec![viewed("shared-id", "globex", "u1", "i1")]).await;
    assert_eq!(kind_of(&a[0]), pb::EventOutcomeKind::Accepted);
    assert_eq!(kind_of(&g[0]), pb::EventOutcomeKind::Accepted, "dedup is per tenant: {g:?}");
    assert_ne!(a[0].stream_sequence, g[0].stream_sequence);

    let stored = ingest.stored_events(2).await;
    let subjects: Vec<&str> = stored.iter().map(|m| m.message.subject.as_str()).collect();
    assert_eq!(subjects, ["sm.events.acme.product_viewed", "sm.events.globex.product_viewed"]);
    // And per tenant it is still de-duplicated.
    let again = ingest.publish(&globex, vec![viewed("shared-id", "globex", "u1", "i1")]).await;
    assert_eq!(kind_of(&again[0]), pb::EventOutcomeKind::Duplicate);
    assert_eq!(again[0].stream_sequence, g[0].stream_sequence);
    ingest.stop().await;
}

#[tokio::test]
async fn a_batch_for_another_tenant_than_the_subject_is_invalid_argument() {
    let ingest = Ingest::start().await;
    let batch = pb::IngestBatch {
        tenant: "globex".into(),
        events: vec![viewed("e1", "", "u1", "i1")],
        source: "t".into(),
    };
    let error = invalid_argument(ingest.call(&tenant("acme"), batch.encode_to_vec(), Headers::new()).await);
    assert_eq!(error.violations.len(), 1, "{error:?}");
    assert_eq!(error.violations[0].field, "tenant");
    assert_eq!(ingest.bus.stream_state(EVENTS_STREAM).await.unwrap().messages, 0, "nothing was stored");
    ingest.stop().await;
}

#[tokio::test]
async fn garbage_bytes_are_invalid_argument_and_the_service_keeps_answering() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let garbage = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(pb::IngestBatch::decode(garbage.as_slice()).is_err(), "the test needs undecodable bytes");
    let error = invalid_argument(ingest.call(&acme, garbage, Headers::new()).await);
    assert_eq!(error.violations.len(), 1, "{error:?}");
    assert!(error.violations[0].description.contains("IngestBatch"), "{error:?}");

    let outcomes = ingest.publish(&acme, vec![viewed("e1", "acme", "u1", "i1")]).await;
    assert_eq!(kind_of(&outcomes[0]), pb::EventOutcomeKind::Accepted);
    ingest.stop().await;
}

#[tokio::test]
async fn the_request_trace_continues_on_the_stored_event() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let root = TraceContext::new_root();
    let mut headers = Headers::new();
    headers.set_trace(&root);
    let batch = pb::IngestBatch {
        tenant: "acme".into(),
        events: vec![viewed("e1", "acme", "u1", "i1")],
        source: "t".into(),
    };
    match ingest.call(&acme, batch.encode_to_vec(), headers).await {
        pb::ingest_reply::Result::Ok(ok) => {
            assert_eq!(kind_of(&ok.outcomes[0]), pb::EventOutcomeKind::Accepted);
        }
        pb::ingest_reply::Result::Error(e) => panic!("{e:?}"),
    }
    let stored = ingest.stored_events(1).await;
    let trace = stored[0].message.headers.trace().expect("the stored event carries a traceparent");
    assert_eq!(trace.trace_id, root.trace_id, "same trace");
    assert_ne!(trace.span_id, root.span_id, "a new span of it");

    // Without a trace in the request, the stored event starts one.
    let untraced = ingest.publish(&acme, vec![viewed("e2", "acme", "u1", "i2")]).await;
    assert_eq!(kind_of(&untraced[0]), pb::EventOutcomeKind::Accepted);
    let stored = ingest.stored_events(2).await;
    let fresh = stored[1].message.headers.trace().expect("a new trace");
    assert_ne!(fresh.trace_id, root.trace_id);
    ingest.stop().await;
}

#[tokio::test]
async fn shutdown_returns_ok_and_stops_answering() {
    let ingest = Ingest::start().await;
    let bus = ingest.bus.clone();
    let _nats = ingest.stop().await;
    let batch = pb::IngestBatch { tenant: "acme".into(), events: vec![], source: "t".into() };
    let message =
        Message::new(topology::rpc_subject(&tenant("acme"), "ingest", "publish"), batch.encode_to_vec());
    let answer = bus.request(message, Duration::from_millis(500)).await;
    assert!(
        matches!(answer, Err(BusError::NoResponders(_) | BusError::Timeout { .. })),
        "a stopped ingest must not answer: {answer:?}"
    );
}

/// Backends may publish protobuf events straight to `sm.in.<tenant>`: valid ones are published
/// to the events stream, the others are dead-lettered with their reason and the original bytes.
#[tokio::test]
async fn raw_events_on_the_intake_subject_are_validated_published_or_dead_lettered() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let intake = topology::intake_subject(&acme);
    let trace = TraceContext::new_root();
    let mut headers = Headers::new();
    headers.set_trace(&trace);

    let good = viewed("raw-1", "", "alice", "sku-1");
    let mut no_user = viewed("raw-2", "", "", "sku-1");
    no_user.user_id.clear();
    let mut huge = viewed("raw-3", "", "alice", "sku-1");
    huge.payload = Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
        item_id: "sku-1".into(),
        source: "x".repeat(70 * 1024),
    }));
    let sends = [
        Bytes::from("\u{2}definitely not protobuf"),
        Bytes::from(no_user.encode_to_vec()),
        Bytes::from(huge.encode_to_vec()),
        Bytes::from(good.encode_to_vec()),
    ];
    for payload in sends {
        let message = Message { subject: intake.clone(), headers: headers.clone(), payload };
        ingest.bus.publish(message, None).await.unwrap();
    }

    let stored = ingest.stored_events(1).await;
    assert_eq!(stored[0].message.subject, "sm.events.acme.product_viewed");
    let event = pb::Event::decode(stored[0].message.payload.as_ref()).unwrap();
    assert_eq!((event.event_id.as_str(), event.tenant.as_str()), ("raw-1", "acme"));
    assert_eq!(stored[0].message.headers.trace().map(|t| t.trace_id), Some(trace.trace_id));

    let mut dlq = ingest.bus.replay(topology::DLQ_STREAM, None, StartAt::First).await.unwrap();
    let mut codes = Vec::new();
    while codes.len() < 3 {
        let m = tokio::time::timeout(WAIT, dlq.next()).await.expect("a dead letter").unwrap().unwrap();
        assert_eq!(m.message.subject, "sm.dlq.acme.ingest");
        assert_eq!(m.message.headers.get(topology::DLQ_SUBJECT_HEADER), Some(intake.as_str()));
        codes.push(m.message.headers.get(topology::DLQ_CODE_HEADER).unwrap_or_default().to_string());
    }
    assert_eq!(codes, vec!["malformed", "missing_field", "payload_too_large"]);
    eventually(WAIT, "every intake message is acked", || async {
        let lag =
            ingest.bus.consumer_lag(topology::INTAKE_STREAM, shopmind_ingest::INTAKE_DURABLE).await.ok()?;
        lag.is_caught_up().then_some(())
    })
    .await;
    ingest.stop().await;
}

fn support(id: &str, user: &str, text: &str) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: String::new(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::SupportMessage(pb::SupportMessage {
            conversation_id: "conv-1".into(),
            author_role: pb::AuthorRole::Customer as i32,
            author_id: String::new(),
            text: text.into(),
        })),
    }
}

/// Raw intake messages hold what backends sent, PII included: the published event and the dead
/// letter carry masked text, and the settled intake messages are erased from `SM_INTAKE`.
#[tokio::test]
async fn intake_pii_is_masked_downstream_and_settled_intake_messages_are_erased() {
    let ingest = Ingest::start().await;
    let acme = tenant("acme");
    let intake = topology::intake_subject(&acme);
    let pii = "I am alice@example.com, card 4111 1111 1111 1111, phone +49 30 1234567";
    let good = support("pii-1", "alice", pii);
    let rejected = support("pii-2", "", pii);
    for e in [&good, &rejected] {
        ingest.bus.publish(Message::new(intake.clone(), Bytes::from(e.encode_to_vec())), None).await.unwrap();
    }

    let stored = ingest.stored_events(1).await;
    let event = pb::Event::decode(stored[0].message.payload.as_ref()).unwrap();
    let Some(pb::event::Payload::SupportMessage(m)) = event.payload else { panic!("a support message") };
    assert_eq!(m.text, "I am [email], card [card], phone [phone]");

    let mut dlq = ingest.bus.replay(topology::DLQ_STREAM, None, StartAt::First).await.unwrap();
    let dead = tokio::time::timeout(WAIT, dlq.next()).await.expect("a dead letter").unwrap().unwrap();
    let body = String::from_utf8_lossy(&dead.message.payload).to_string();
    assert!(body.contains("I am [email], card [card], phone [phone]"), "{body}");
    for raw in ["alice@example.com", "4111 1111", "1234567"] {
        assert!(!body.contains(raw), "{raw} in the dead letter");
    }

    eventually(WAIT, "settled intake messages are erased", || async {
        let state = ingest.bus.stream_state(topology::INTAKE_STREAM).await.ok()?;
        (state.messages == 0 && state.last_sequence == 2).then_some(())
    })
    .await;
    ingest.stop().await;
}
