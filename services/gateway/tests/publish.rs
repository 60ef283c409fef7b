//! The gateway publishes the events of `PublishEvents` and `StreamEvents` calls to `SM_EVENTS`
//! itself, on a real nats-server: valid events once each (message id `<tenant>:<event_id>`),
//! duplicates counted as such, invalid ones refused (a call) or reported (a stream) and never
//! published.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, NatsBus, StartAt};
use shopmind_config::Config;
use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::topology::EVENTS_STREAM;
use shopmind_runtime::{Shutdown, connect};
use shopmind_testkit::{NatsServer, eventually};
use tonic::transport::Channel;

fn view(tenant: &str, id: &str) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: tenant.into(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: "alice".into(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: "sku-1".into(),
            source: String::new(),
        })),
    }
}

struct Setup {
    bus: Arc<dyn Bus>,
    client: GatewayClient<Channel>,
    shutdown: Shutdown,
    _nats: NatsServer,
}

async fn setup() -> Setup {
    let nats = NatsServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "gateway-test").await.unwrap());
    let config = Config::default();
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(shopmind_gateway::run(config, bus.clone(), listener, shutdown.clone()));
    let client = eventually(Duration::from_secs(10), "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { GatewayClient::connect(endpoint).await.ok() }
    })
    .await;
    Setup { bus, client, shutdown, _nats: nats }
}

/// Every message of SM_EVENTS: (subject, event id, whether it carries a trace context).
async fn stored(bus: &dyn Bus) -> Vec<(String, String, bool)> {
    let count = bus.stream_state(EVENTS_STREAM).await.unwrap().messages as usize;
    let mut replay = bus.replay(EVENTS_STREAM, None, StartAt::First).await.unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let m = tokio::time::timeout(Duration::from_secs(5), replay.next()).await.unwrap().unwrap().unwrap();
        let event = pb::Event::decode(m.message.payload.as_ref()).unwrap();
        out.push((m.message.subject, event.event_id, m.message.headers.trace().is_some()));
    }
    out
}

#[tokio::test]
async fn publish_events_stores_valid_events_once_and_refuses_invalid_calls() {
    let mut s = setup().await;
    let request = |ids: &[&str]| pb::PublishEventsRequest {
        tenant: "acme".into(),
        events: ids.iter().map(|id| view("acme", id)).collect(),
    };
    let r = s.client.publish_events(request(&["e1", "e2", "e3"])).await.unwrap().into_inner();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (3, 0, 0));
    let r = s.client.publish_events(request(&["e3", "e4", "e1"])).await.unwrap().into_inner();
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (1, 2, 0));

    // One invalid event refuses the whole call: nothing of it is published.
    let mut bad = request(&["e5", "e6"]);
    bad.events[1].user_id = String::new();
    let err = s.client.publish_events(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("events[1]"), "{}", err.message());

    let all = stored(&*s.bus).await;
    let ids: Vec<&str> = all.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3", "e4"]);
    assert!(all.iter().all(|(subject, _, traced)| subject == "sm.events.acme.product_viewed" && *traced));
    s.shutdown.trigger();
}

#[tokio::test]
async fn stream_events_publishes_per_tenant_and_reports_invalid_events() {
    let mut s = setup().await;
    let mut invalid = view("acme", "bad");
    invalid.payload = None;
    let events = vec![
        view("acme", "a1"),
        view("acme", "a2"),
        view("globex", "g1"),
        invalid,
        view("acme", "a1"),
        view("globex", "g2"),
    ];
    let r = s.client.stream_events(futures::stream::iter(events)).await.unwrap().into_inner();
    assert_eq!((r.accepted, r.duplicates), (4, 1));
    assert_eq!(r.rejected.len(), 1);
    assert_eq!((r.rejected[0].index, r.rejected[0].event_id.as_str()), (3, "bad"));

    let all = stored(&*s.bus).await;
    let got: Vec<(&str, &str)> = all.iter().map(|(subject, id, _)| (subject.as_str(), id.as_str())).collect();
    assert_eq!(
        got,
        [
            ("sm.events.acme.product_viewed", "a1"),
            ("sm.events.acme.product_viewed", "a2"),
            ("sm.events.globex.product_viewed", "g1"),
            ("sm.events.globex.product_viewed", "g2"),
        ]
    );
    s.shutdown.trigger();
}
