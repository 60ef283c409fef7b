//! GetAgentReport through the real gateway (tonic client), on real NATS and Redis with the
//! feature service applying the events: a scripted set of support conversations with known
//! first-response and resolution times, an escalated one (the assistant's `escalated_at`), a
//! reopened one, a handover, and customers writing happy and unhappy messages, gives exactly the
//! expected figures per agent; bad periods are INVALID_ARGUMENT and an unknown agent NOT_FOUND.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::{Bus, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{ConversationId, TenantId, UnixMillis};
use shopmind_features::keys;
use shopmind_features::sentiment::score;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_registry::{ModelStore, NatsModelStore};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore, Write, WriteBatch};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use tonic::transport::Channel;

const TENANT: &str = "support-shop";
const WAIT: Duration = Duration::from_secs(60);
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600_000;
const DAY: i64 = 86_400_000;
const S: i64 = 1000;

/// (conversation, customer, at ms, agent or "" for the customer, text)
type Line = (&'static str, &'static str, i64, &'static str, &'static str);

fn script() -> Vec<Line> {
    let d1 = T0 + DAY;
    vec![
        // c1, ann: first response 120 s, resolved at 360 s; a happy customer.
        ("c1", "u1", T0, "", "hi, where is my order? thanks"),
        ("c1", "u1", T0 + 120 * S, "ann", "It ships today."),
        ("c1", "u1", T0 + 300 * S, "", "great, thank you so much!"),
        ("c1", "u1", T0 + 360 * S, "ann", "You're welcome."),
        // c2, ann, escalated: first response 600 s, resolved at 1000 s after the first message.
        ("c2", "u2", T0 + 1000 * S, "", "this is terrible, my parcel arrived broken"),
        ("c2", "u2", T0 + 1600 * S, "ann", "I'm sorry, we'll send a new one."),
        ("c2", "u2", T0 + 1700 * S, "", "I am very angry about this"),
        ("c2", "u2", T0 + 2000 * S, "ann", "The replacement is on its way."),
        // c3, bob: first response 300 s, resolved at 400 s, reopened two hours later.
        ("c3", "u3", d1, "", "my refund is missing"),
        ("c3", "u3", d1 + 300 * S, "bob", "Let me check."),
        ("c3", "u3", d1 + 400 * S, "bob", "Done, it is on its way."),
        ("c3", "u3", d1 + 7600 * S, "", "still no refund, this is ridiculous"),
        ("c3", "u3", d1 + 7700 * S, "bob", "Sorry, I escalated it to finance."),
        // c4, bob answers first (900 s), ann takes over, resolved at 1200 s.
        ("c4", "u4", d1 + 1000 * S, "", "hello, can I change my address"),
        ("c4", "u4", d1 + 1900 * S, "bob", "Sure, handing you to Ann."),
        ("c4", "u4", d1 + 2000 * S, "ann", "Which address?"),
        ("c4", "u4", d1 + 2100 * S, "", "ok thanks, it's the new one in my account"),
        ("c4", "u4", d1 + 2200 * S, "ann", "Updated."),
        // c5, ann, forty days later: outside the period asked for.
        ("c5", "u5", T0 + 40 * DAY, "", "where is my order"),
        ("c5", "u5", T0 + 40 * DAY + 60 * S, "ann", "On its way."),
    ]
}

fn events(script: &[Line]) -> Vec<pb::Event> {
    script
        .iter()
        .enumerate()
        .map(|(i, (conversation, user, at, agent, text))| pb::Event {
            event_id: format!("m{i}"),
            tenant: TENANT.into(),
            occurred_at: Some(UnixMillis(*at).to_proto()),
            user_id: (*user).into(),
            session_id: String::new(),
            payload: Some(pb::event::Payload::SupportMessage(pb::SupportMessage {
                conversation_id: (*conversation).into(),
                author_role: if agent.is_empty() { pb::AuthorRole::Customer } else { pb::AuthorRole::Agent }
                    as i32,
                author_id: (*agent).into(),
                text: (*text).into(),
            })),
        })
        .collect()
}

/// The mean sentiment the report should give for the customer messages of `conversations` on
/// `day` (scores stored in thousandths, as the feature service stores them).
fn expected_sentiment(script: &[Line], conversations: &[&str], day: i64) -> (f64, u32) {
    let scores: Vec<f64> = script
        .iter()
        .filter(|(c, _, at, agent, _)| {
            conversations.contains(c) && agent.is_empty() && at.div_euclid(DAY) == day
        })
        .map(|(_, _, _, _, text)| (score(text) * 1000.0).round() / 1000.0)
        .collect();
    (scores.iter().sum::<f64>() / scores.len() as f64, scores.len() as u32)
}

struct Setup {
    client: GatewayClient<Channel>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
    _nats: NatsServer,
    _redis: RedisServer,
}

async fn setup() -> Setup {
    let library =
        shopmind_serving::default_library_path().expect("libonnxruntime.so not found; run scripts/setup.sh");
    let (nats, redis) = (NatsServer::start(), RedisServer::start());
    let mut config = Config::default();
    config.nats.url = nats.url();
    config.redis.url = redis.url();
    config.inference.onnxruntime_library = library.display().to_string();
    config.inference.resolution_idle_s = 3600;
    let nats_bus = NatsBus::connect(&nats.url(), "agents-test").await.unwrap();
    let registry: Arc<dyn ModelStore> =
        Arc::new(NatsModelStore::open(nats_bus.client().clone()).await.unwrap());
    let bus: Arc<dyn Bus> = Arc::new(nats_bus);
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    tokio::spawn(shopmind_inference::run(
        config.clone(),
        bus.clone(),
        store.clone(),
        registry,
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(shopmind_gateway::run(config, bus, listener, shutdown.clone()));
    let client = eventually(WAIT, "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { GatewayClient::connect(endpoint).await.ok() }
    })
    .await;
    Setup { client, store, shutdown, _nats: nats, _redis: redis }
}

fn request(agent: &str, from: i64, to: i64) -> pb::GetAgentReportRequest {
    pb::GetAgentReportRequest {
        tenant: TENANT.into(),
        agent_id: agent.into(),
        from: Some(UnixMillis(from).to_proto()),
        to: Some(UnixMillis(to).to_proto()),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_report_gives_each_agents_figures_over_the_period() {
    let mut s = setup().await;
    let script = script();
    let published = s
        .client
        .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events: events(&script) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.accepted as usize, script.len(), "{published:?}");
    // The assistant escalated c2 (it writes `escalated_at` into the conversation's statistics).
    let tenant = TenantId::parse(TENANT).unwrap();
    let c2 = ConversationId::parse("c2").unwrap();
    s.store
        .write(WriteBatch {
            writes: vec![Write::HashMin {
                key: keys::conversation_stats(&tenant, &c2),
                field: "escalated_at".into(),
                value: T0 + 1650 * S,
            }],
            atomic: true,
            guard: None,
        })
        .await
        .unwrap();

    let period = request("", T0, T0 + 2 * DAY);
    let report = eventually(WAIT, "the report counts every scripted message", || {
        let (mut client, period) = (s.client.clone(), period.clone());
        async move {
            let r = client.get_agent_report(period).await.ok()?.into_inner();
            let messages: u32 =
                r.agents.iter().flat_map(|a| a.sentiment_trend.iter().map(|p| p.messages)).sum();
            // ann's 3 days of messages (6) and bob's (4); c4's messages count for both.
            (messages == 10 && r.agents.len() == 2).then_some(r)
        }
    })
    .await;
    assert_eq!(report.from, Some(UnixMillis(T0).to_proto()));
    let ann = &report.agents[0];
    let bob = &report.agents[1];
    assert_eq!((ann.agent_id.as_str(), bob.agent_id.as_str()), ("ann", "bob"));

    assert_eq!(ann.conversations, 3);
    assert!(close(ann.mean_first_response_seconds, 360.0), "{ann:?}");
    assert!(close(ann.median_first_response_seconds, 360.0), "{ann:?}");
    assert!(close(ann.mean_resolution_seconds, (360.0 + 1000.0 + 1200.0) / 3.0), "{ann:?}");
    assert!(close(ann.escalation_rate, 1.0 / 3.0), "{ann:?}");
    assert!(close(ann.reopen_rate, 0.0), "{ann:?}");

    assert_eq!(bob.conversations, 2);
    assert!(close(bob.mean_first_response_seconds, 600.0), "{bob:?}");
    assert!(close(bob.median_first_response_seconds, 600.0), "{bob:?}");
    assert!(close(bob.mean_resolution_seconds, 800.0), "{bob:?}");
    assert!(close(bob.escalation_rate, 0.0), "{bob:?}");
    assert!(close(bob.reopen_rate, 0.5), "{bob:?}");

    let day0 = T0 / DAY;
    let trend = |a: &pb::AgentStats| -> Vec<(i64, f64, u32)> {
        a.sentiment_trend.iter().map(|p| (p.day, p.mean_sentiment, p.messages)).collect()
    };
    let expect = |conversations: &[&str], day: i64| {
        let (mean, n) = expected_sentiment(&script, conversations, day);
        (day, mean, n)
    };
    for (got, want) in trend(ann).into_iter().zip([expect(&["c1", "c2"], day0), expect(&["c4"], day0 + 1)]) {
        assert_eq!((got.0, got.2), (want.0, want.2));
        assert!(close(got.1, want.1), "{got:?} {want:?}");
    }
    assert_eq!(trend(ann).len(), 2);
    assert_eq!(trend(bob).len(), 1);
    let (b_day, b_mean, b_n) = trend(bob)[0];
    assert_eq!((b_day, b_n), (day0 + 1, 4));
    assert!(close(b_mean, expect(&["c3", "c4"], day0 + 1).1));
    // The happy customer of c1 and the unhappy ones of c2 and c3.
    assert!(expected_sentiment(&script, &["c1"], day0).0 > 0.3);
    assert!(expected_sentiment(&script, &["c2"], day0).0 < -0.3);
    assert!(b_mean < 0.0, "c3's complaints outweigh c4's thanks: {b_mean}");

    // One agent; a known agent silent in the period gets zeros.
    let only = s.client.get_agent_report(request("bob", T0, T0 + 2 * DAY)).await.unwrap().into_inner();
    assert_eq!(only.agents, vec![bob.clone()]);
    let later = request("bob", T0 + 30 * DAY, T0 + 50 * DAY);
    let silent = s.client.get_agent_report(later).await.unwrap().into_inner();
    assert_eq!((silent.agents.len(), silent.agents[0].conversations), (1, 0));
    let ann_later = s.client.get_agent_report(request("", T0 + 30 * DAY, T0 + 50 * DAY)).await.unwrap();
    let ann_later = ann_later.into_inner();
    assert_eq!(ann_later.agents.len(), 1);
    assert_eq!((ann_later.agents[0].agent_id.as_str(), ann_later.agents[0].conversations), ("ann", 1));

    // Bad requests.
    let err = s.client.get_agent_report(request("zed", T0, T0 + DAY)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = s.client.get_agent_report(request("", T0 + DAY, T0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(format!("{err:?}").contains("from"), "{err:?}");
    let err = s.client.get_agent_report(request("", T0, T0 + 400 * DAY)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    s.shutdown.trigger();
}
