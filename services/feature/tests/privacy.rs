//! Erasure and retention on a real nats-server and redis-server (docs/PRIVACY.md): every key
//! family of `keys::CUSTOMER_KEY_FAMILIES`, the notification timers, pseudonymised tenants, the
//! request-reply call; per-tenant retention sweeps with a short limit.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::{Config, TenantPrivacy};
use shopmind_domain::{TenantId, UnixMillis, UserId};
use shopmind_feature::erase::{Customer, erase_customer};
use shopmind_proto::v1 as pb;
use shopmind_runtime::snapshot::read_stream;
use shopmind_runtime::tombstones::Tombstones;
use shopmind_runtime::{Shutdown, connect, topology};
use shopmind_store::{FeatureStore, Key, Read, RedisStore, Value, Write, WriteBatch};
use shopmind_testkit::{NatsServer, RedisServer, eventually};

const WAIT: Duration = Duration::from_secs(30);
const DAY_MS: i64 = 86_400_000;

struct Infra {
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    _nats: NatsServer,
    _redis: RedisServer,
}

async fn infra(config: &Config) -> Infra {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "privacy-test").await.unwrap());
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    connect::ensure_streams(&*bus, config).await.unwrap();
    Infra { bus, store, _nats: nats, _redis: redis }
}

fn event(tenant: &str, id: &str, user: &str, at_ms: i64, payload: pb::event::Payload) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: tenant.into(),
        occurred_at: Some(UnixMillis(at_ms).to_proto()),
        user_id: user.into(),
        session_id: format!("s-{id}"),
        payload: Some(payload),
    }
}

fn view(item: &str) -> pb::event::Payload {
    pb::event::Payload::ProductViewed(pb::ProductViewed { item_id: item.into(), source: String::new() })
}

fn said(text: &str) -> pb::event::Payload {
    pb::event::Payload::SupportMessage(pb::SupportMessage {
        conversation_id: "c1".into(),
        author_role: pb::AuthorRole::Customer as i32,
        author_id: String::new(),
        text: text.into(),
    })
}

async fn publish(bus: &dyn Bus, subject: String, payload: Vec<u8>) {
    bus.publish(Message::new(subject, Bytes::from(payload)), None).await.unwrap();
}

async fn publish_event(bus: &dyn Bus, e: &pb::Event) {
    let kind = match e.payload {
        Some(pb::event::Payload::SupportMessage(_)) => "support_message",
        _ => "product_viewed",
    };
    publish(bus, format!("sm.events.{}.{kind}", e.tenant), e.encode_to_vec()).await;
}

fn k(s: &str) -> Key {
    Key(s.into())
}

async fn write(store: &dyn FeatureStore, writes: Vec<Write>) {
    store.write(WriteBatch { writes, atomic: false, guard: None }).await.unwrap();
}

async fn exists(store: &dyn FeatureStore, key: &str) -> bool {
    matches!(store.read(vec![Read::Exists { key: k(key) }]).await.unwrap()[0], Value::Exists(true))
}

/// Seeds what the services keep of `u` (tenant `acme`): features through `apply_event`, the
/// notification service's keys and timers, conversations in the assistant's layout.
async fn seed(infra: &Infra, u: &str, at: i64) {
    let settings = shopmind_features::FeatureSettings::default();
    for (i, item) in ["sku-1", "sku-2"].iter().enumerate() {
        let wire = event("acme", &format!("{u}-v{i}"), u, at + i as i64, view(item));
        publish_event(&*infra.bus, &wire).await;
        let e = shopmind_domain::Event::from_proto(&wire, None, &shopmind_domain::ValidationPolicy::stored())
            .unwrap();
        shopmind_features::apply_event(&*infra.store, &e, &settings).await.unwrap();
    }
    let n = pb::Notification {
        notification_id: format!("n-{u}"),
        tenant: "acme".into(),
        user_id: u.into(),
        ..Default::default()
    };
    publish(&*infra.bus, "sm.notify.acme.customer".to_string(), n.encode_to_vec()).await;
    publish(&*infra.bus, "sm.webhook.acme.crm".to_string(), n.encode_to_vec()).await;
    // A webhook delivery that gave up, dead-lettered with the notification as it was.
    publish(&*infra.bus, "sm.dlq.acme.webhook".to_string(), n.encode_to_vec()).await;
    write(
        &*infra.store,
        vec![
            Write::HashSet {
                key: k(&format!("sm:{{acme:u:{u}}}:nprefs")),
                field: "optout:email".into(),
                value: Bytes::from("1"),
            },
            Write::Put {
                key: k(&format!("sm:{{acme:u:{u}}}:ndedup:price_drop:sku-1")),
                value: Bytes::from("n1"),
            },
            Write::SortedAdd { key: k("sm:{acme:i:sku-1}:nwaiting"), member: u.into(), score: 1.0 },
            Write::SortedAdd { key: k("sm:{acme:i:sku-2}:nviewers"), member: u.into(), score: 1.0 },
            Write::SortedAdd { key: k("sm:{acme}:ntimers"), member: format!("cart|{at}|{u}"), score: 1.0 },
            Write::HashSet {
                key: k("sm:{acme}:ndeferred"),
                field: format!("n-{u}"),
                value: Bytes::from(n.encode_to_vec()),
            },
            Write::SortedAdd { key: k("sm:{acme}:ntimers"), member: format!("deliver|n-{u}"), score: 2.0 },
            Write::SetAdd { key: k(&format!("sm:{{acme}}:user:{u}:convs")), member: format!("conv-{u}") },
            Write::Put {
                key: k(&format!("sm:{{acme}}:conv:conv-{u}")),
                value: Bytes::from("[email] said hi"),
            },
            Write::Put { key: k(&format!("sm:{{acme}}:conv_stats:conv-{u}")), value: Bytes::from("3") },
        ],
    )
    .await;
}

/// Every key in the store and its values, as text.
async fn everything(store: &dyn FeatureStore) -> String {
    let mut out = String::new();
    for key in store.scan("*").await.unwrap() {
        let reads = vec![
            Read::Get { key: key.clone() },
            Read::Hash { key: key.clone() },
            Read::Set { key: key.clone() },
            Read::SortedRange { key: key.clone(), min: f64::NEG_INFINITY, max: f64::INFINITY, limit: 10_000 },
        ];
        out.push_str(&key.0);
        for read in reads {
            if let Ok(v) = store.read(vec![read]).await {
                out.push_str(&format!(" {v:?}"));
            }
        }
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn erasure_removes_every_family_and_only_the_customers() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123").unwrap();
    let mut config = Config::default();
    config.privacy.secret_file = secret.display().to_string();
    config.privacy.tenants.insert("acme".into(), TenantPrivacy { pseudonymize: true, ..Default::default() });
    let infra = infra(&config).await;
    let acme = TenantId::parse("acme").unwrap();
    let alice = Customer::from_config(&config, "acme", "alice").unwrap();
    let bob = Customer::from_config(&config, "acme", "bob").unwrap();
    assert!(alice.stored.as_str().starts_with("p_") && alice.raw == Some(UserId::parse("alice").unwrap()));
    let now = UnixMillis::now().0;
    seed(&infra, alice.stored.as_str(), now).await;
    seed(&infra, bob.stored.as_str(), now).await;
    // A raw intake message of Alice's, with the shop's own id.
    let raw = event("acme", "raw-1", "alice", now, view("sku-1"));
    publish(&*infra.bus, topology::intake_subject(&acme), raw.encode_to_vec()).await;

    let report = erase_customer(&*infra.bus, &*infra.store, &alice).await.unwrap();
    let removed = |what: &str| report.removed.get(what).copied().unwrap_or(0);
    assert_eq!(removed("events"), 2, "{report:?}");
    assert_eq!(removed("intake messages"), 1, "{report:?}");
    assert_eq!(removed("notifications"), 1, "{report:?}");
    assert_eq!(removed("webhook deliveries"), 1, "{report:?}");
    assert_eq!(removed("dead letters"), 1, "{report:?}");
    assert_eq!(removed("conversations"), 1, "{report:?}");
    assert_eq!(removed("back-in-stock waits"), 1, "{report:?}");
    assert_eq!(removed("price-drop viewers"), 1, "{report:?}");
    assert_eq!(removed("notification timers"), 2, "{report:?}");
    assert_eq!(removed("event guards"), 3, "{report:?}");
    assert_eq!(removed("sessions"), 3, "the events' and the intake message's: {report:?}");
    assert!(removed("customer keys") >= 5, "{report:?}");

    let store_text = everything(&*infra.store).await;
    assert!(!store_text.contains(alice.stored.as_str()), "{store_text}");
    assert!(store_text.contains(bob.stored.as_str()), "Bob stays:\n{store_text}");
    assert!(!exists(&*infra.store, &format!("sm:{{acme}}:conv:conv-{}", alice.stored)).await);
    assert!(exists(&*infra.store, &format!("sm:{{acme}}:conv:conv-{}", bob.stored)).await);
    for stream in [
        topology::EVENTS_STREAM,
        topology::NOTIFICATIONS_STREAM,
        topology::WEBHOOKS_STREAM,
        topology::INTAKE_STREAM,
        topology::DLQ_STREAM,
    ] {
        let left = read_stream(&*infra.bus, stream).await.unwrap();
        let text: Vec<String> =
            left.iter().map(|m| String::from_utf8_lossy(&m.message.payload).to_string()).collect();
        assert!(
            text.iter().all(|t| !t.contains(alice.stored.as_str()) && !t.contains("alice")),
            "{stream}: {text:?}"
        );
    }
    assert_eq!(
        read_stream(&*infra.bus, topology::EVENTS_STREAM).await.unwrap().len(),
        2,
        "Bob's events stay"
    );
    let stones = Tombstones::load(&*infra.bus).await.unwrap();
    assert!(stones.contains(&shopmind_privacy::tombstone_of(&acme, &alice.stored)));
    assert!(!stones.contains(&shopmind_privacy::tombstone_of(&acme, &bob.stored)));

    // Again: nothing more. Through request-reply, as the gateway's Admin call sends it.
    let shutdown = Shutdown::new();
    let task = tokio::spawn(shopmind_feature::run(
        config.clone(),
        infra.bus.clone(),
        infra.store.clone(),
        shutdown.clone(),
    ));
    let request = pb::EraseCustomerRequest { tenant: "acme".into(), user_id: "alice".into() };
    let subject = topology::rpc_subject(&acme, "feature", "erase");
    let reply = eventually(WAIT, "feature answers erase requests", || async {
        let m = Message::new(subject.clone(), Bytes::from(request.encode_to_vec()));
        let reply = infra.bus.request(m, Duration::from_secs(10)).await.ok()?;
        pb::EraseReply::decode(reply.payload.as_ref()).ok()
    })
    .await;
    let Some(pb::erase_reply::Result::Ok(again)) = reply.result else { panic!("{reply:?}") };
    assert!(again.removed.iter().all(|r| r.count == 0), "{again:?}");
    // A request for another tenant than its subject, or with a bad id, is INVALID_ARGUMENT.
    for bad in [
        pb::EraseCustomerRequest { tenant: "globex".into(), user_id: "alice".into() },
        pb::EraseCustomerRequest { tenant: "acme".into(), user_id: String::new() },
    ] {
        let m = Message::new(subject.clone(), Bytes::from(bad.encode_to_vec()));
        let reply =
            pb::EraseReply::decode(infra.bus.request(m, WAIT).await.unwrap().payload.as_ref()).unwrap();
        let Some(pb::erase_reply::Result::Error(e)) = reply.result else { panic!("{reply:?}") };
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32, "{e:?}");
    }

    // A straggler of Alice's published after the erasure is skipped by the feature service;
    // Bob's next event is applied.
    let late = event("acme", "late-a", alice.stored.as_str(), now, view("sku-3"));
    publish_event(&*infra.bus, &late).await;
    let bobs = event("acme", "late-b", bob.stored.as_str(), now, view("sku-3"));
    publish_event(&*infra.bus, &bobs).await;
    let bob_recent = format!("sm:{{acme:u:{}}}:recent", bob.stored);
    eventually(WAIT, "the feature service applied Bob's late event", || async {
        let top = infra.store.read(vec![Read::SortedTop { key: k(&bob_recent), n: 10 }]).await.ok()?;
        matches!(&top[0], Value::Sorted(m) if m.iter().any(|(member, _)| member.contains("sku-3")))
            .then_some(())
    })
    .await;
    eventually(WAIT, "the feature consumer caught up", || async {
        let lag = infra.bus.consumer_lag(topology::EVENTS_STREAM, shopmind_feature::DURABLE).await.ok()?;
        lag.is_caught_up().then_some(())
    })
    .await;
    let store_text = everything(&*infra.store).await;
    assert!(!store_text.contains(alice.stored.as_str()), "the straggler was not applied:\n{store_text}");
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_sweep_removes_what_is_older_than_each_tenants_limits() {
    let mut config = Config::default();
    config.privacy.tenants.insert(
        "acme".into(),
        TenantPrivacy { events_max_age_days: 7, conversations_max_age_days: 2, ..Default::default() },
    );
    let infra = infra(&config).await;
    let now = UnixMillis::now().0;
    let cases = [
        ("acme", "old-view", now - 10 * DAY_MS, view("sku-1"), false),
        ("acme", "new-view", now - DAY_MS, view("sku-1"), true),
        ("acme", "old-chat", now - 3 * DAY_MS, said("hello"), false),
        ("acme", "new-chat", now - DAY_MS, said("hello"), true),
        // No limit of its own: only the stream's.
        ("globex", "old-view", now - 10 * DAY_MS, view("sku-1"), true),
    ];
    for (tenant, id, at, payload, _) in &cases {
        publish_event(&*infra.bus, &event(tenant, id, "u1", *at, payload.clone())).await;
    }
    // A dead letter of an old acme event, too.
    let old = event("acme", "old-dead", "u1", now - 10 * DAY_MS, view("sku-1"));
    publish(&*infra.bus, "sm.dlq.acme.feature".into(), old.encode_to_vec()).await;
    write(
        &*infra.store,
        vec![
            Write::Put { key: k("sm:{acme}:conv:c1"), value: Bytes::from("x") },
            Write::Put { key: k("sm:{acme}:conv_stats:c1"), value: Bytes::from("x") },
            Write::Put { key: k("sm:{globex}:conv:c1"), value: Bytes::from("x") },
        ],
    )
    .await;

    let report = shopmind_feature::retention::sweep(&config, &*infra.bus, &*infra.store, UnixMillis(now))
        .await
        .unwrap();
    assert_eq!(report.tenants.get("acme"), Some(&(3, 2)), "{report:?}");
    assert_eq!(report.tenants.len(), 1);
    let left: Vec<(String, String)> = read_stream(&*infra.bus, topology::EVENTS_STREAM)
        .await
        .unwrap()
        .iter()
        .map(|m| {
            let e = pb::Event::decode(m.message.payload.as_ref()).unwrap();
            (e.tenant, e.event_id)
        })
        .collect();
    let kept: Vec<(String, String)> =
        cases.iter().filter(|c| c.4).map(|c| (c.0.to_string(), c.1.to_string())).collect();
    assert_eq!(left, kept);
    assert!(read_stream(&*infra.bus, topology::DLQ_STREAM).await.unwrap().is_empty());
    let limit = Duration::from_secs(2 * 86_400);
    for key in ["sm:{acme}:conv:c1", "sm:{acme}:conv_stats:c1"] {
        let ttl = infra.store.ttl(&k(key)).await.unwrap().expect("a TTL");
        assert!(ttl <= limit, "{key}: {ttl:?}");
    }
    assert_eq!(infra.store.ttl(&k("sm:{globex}:conv:c1")).await.unwrap(), None);

    // A second sweep finds nothing more.
    let again = shopmind_feature::retention::sweep(&config, &*infra.bus, &*infra.store, UnixMillis(now))
        .await
        .unwrap();
    assert!(again.tenants.get("acme").is_none_or(|&(m, c)| m == 0 && c == 0), "{again:?}");
}
