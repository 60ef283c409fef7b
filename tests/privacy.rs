//! Privacy over the whole path (docs/PRIVACY.md), on real NATS and Redis through the binary
//! (`shopmind all-in-one`, every service, debug logs captured):
//!
//! * messages full of PII go in through the gateway and the intake stream; every stream, every
//!   Redis key and value and the process's log are scanned: none holds the raw PII or the shop's
//!   customer ids (the tenant pseudonymises them), the masked placeholders are there;
//! * a customer is erased through `Admin.EraseCustomer`: no Redis key or value, no stream message
//!   and no retrained model still holds their pseudonym or their own item, and the other
//!   customer is intact.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_domain::{TenantId, UserId};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::admin_client::AdminClient;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore};
use shopmind_runtime::topology;
use shopmind_testkit::{NatsServer, RedisServer, eventually, free_port};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);
const TENANT: &str = "acme";
const SECRET: &str = "a-test-secret-of-some-length";
const ALICE: &str = "cust-7731";
const BOB: &str = "cust-8842";
/// Viewed by Alice only.
const ALICE_ITEM: &str = "sku-only-a";

/// What must never be stored or logged (the shop's customer ids included).
const RAW: [&str; 12] = [
    "a.smith@example.com",
    "b.jones@example.org",
    "+44 20 7946 0958",
    "7946 0958",
    "4111 1111 1111 1111",
    "4111111111111111",
    "GB82 WEST 1234",
    "Downing Street",
    "Baker Street",
    "0176-12345678",
    ALICE,
    BOB,
];

const SUPPORT_TEXT: &str = "Hi, I am a.smith@example.com, call +44 20 7946 0958. Please refund ord-1042 to \
     card 4111 1111 1111 1111 or IBAN GB82 WEST 1234 5698 7654 32; I live at 10 Downing Street. I want a human!";

struct Proc {
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(dir: &Path, env: &[(&str, String)]) -> Self {
        let log = dir.join("all-in-one.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shopmind"))
            .arg("all-in-one")
            .env("SHOPMIND__METRICS__LISTEN", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            // Everything the services log, at the most detailed level they log at.
            .env("RUST_LOG", "debug")
            .current_dir(dir)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of `shopmind all-in-one` ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

fn event(id: &str, user: &str, session: &str, payload: pb::event::Payload) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: TENANT.into(),
        occurred_at: Some(now()),
        user_id: user.into(),
        session_id: session.into(),
        payload: Some(payload),
    }
}

fn view(id: &str, user: &str, item: &str) -> pb::Event {
    let p =
        pb::event::Payload::ProductViewed(pb::ProductViewed { item_id: item.into(), source: String::new() });
    event(id, user, &format!("s-{id}"), p)
}

fn cart(id: &str, user: &str, item: &str) -> pb::Event {
    let p = pb::event::Payload::AddedToCart(pb::AddedToCart {
        item_id: item.into(),
        quantity: 1,
        unit_price: None,
    });
    event(id, user, "", p)
}

fn order(id: &str, user: &str, item: &str) -> pb::Event {
    let p = pb::event::Payload::OrderPlaced(pb::OrderPlaced {
        order_id: format!("ord-{id}"),
        lines: vec![pb::OrderLine { item_id: item.into(), quantity: 1, unit_price: None }],
    });
    event(id, user, "", p)
}

fn support(id: &str, user: &str, text: &str) -> pb::Event {
    let p = pb::event::Payload::SupportMessage(pb::SupportMessage {
        conversation_id: format!("conv-{id}"),
        author_role: pb::AuthorRole::Customer as i32,
        author_id: String::new(),
        text: text.into(),
    });
    event(id, user, "", p)
}

fn search(id: &str, user: &str, query: &str) -> pb::Event {
    let p = pb::event::Payload::SearchPerformed(pb::SearchPerformed {
        query: query.into(),
        result_item_ids: vec![],
    });
    event(id, user, "", p)
}

/// Every key and value in Redis, as text (`key = value`, one per line).
async fn redis_dump(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut conn).await.unwrap();
    let mut out = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await.unwrap();
        let cmd = match kind.as_str() {
            "string" => {
                let v: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut conn).await.unwrap();
                vec![v]
            }
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut conn).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut conn).await.unwrap(),
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await.unwrap(),
            other => panic!("unexpected type {other} of {key}"),
        };
        let values: Vec<String> =
            cmd.iter().map(|v: &Vec<u8>| String::from_utf8_lossy(v).replace(['\n', '\r'], " ")).collect();
        out.push_str(&format!("{key} = {}\n", values.join(" | ")));
    }
    out
}

/// Every message of every stream, as text (`stream subject headers payload`, one per line).
async fn streams_dump(bus: &dyn Bus) -> String {
    let mut out = String::new();
    for stream in [
        topology::INTAKE_STREAM,
        topology::EVENTS_STREAM,
        topology::DLQ_STREAM,
        topology::NOTIFICATIONS_STREAM,
        topology::WEBHOOKS_STREAM,
        topology::ERASURES_STREAM,
    ] {
        for m in shopmind_runtime::snapshot::read_stream(bus, stream).await.unwrap() {
            let headers: Vec<String> = m.message.headers.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!(
                "{stream} {} {} {}\n",
                m.message.subject,
                headers.join(","),
                String::from_utf8_lossy(&m.message.payload).replace(['\n', '\r'], " ")
            ));
        }
    }
    out
}

fn contains(bytes: &Bytes, s: &str) -> bool {
    bytes.windows(s.len()).any(|w| w == s.as_bytes())
}

fn assert_absent(what: &str, text: &str, needles: &[&str]) {
    for needle in needles {
        let hit = text.lines().find(|l| l.contains(needle));
        assert!(hit.is_none(), "{needle:?} found in {what}: {}", hit.unwrap_or_default());
    }
}

async fn caught_up(bus: &dyn Bus) {
    eventually(WAIT, "feature and notification caught up", || async {
        for durable in [shopmind_feature::DURABLE, shopmind_notification::DURABLE] {
            let lag = bus.consumer_lag(topology::EVENTS_STREAM, durable).await.ok()?;
            if !lag.is_caught_up() {
                return None;
            }
        }
        Some(())
    })
    .await;
}

/// The active recommender's (version, users, interactions, bytes).
async fn active_model(models: &dyn ModelStore) -> Option<(String, u64, u64, Bytes)> {
    let key = ModelKey::parse(TENANT, "recommender").unwrap();
    let active = models.active(&key).await.ok()??;
    let info = models.info(&key, &active.version).await.ok()??;
    let bytes = models.get(&key, &active.version).await.ok()?;
    Some((active.version.to_string(), info.users, info.interactions, bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pii_is_masked_everywhere_and_an_erased_customer_leaves_no_trace() {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let port = free_port();
    let env = [
        ("SHOPMIND__NATS__URL", nats.url()),
        ("SHOPMIND__REDIS__URL", redis.url()),
        ("SHOPMIND__GATEWAY__LISTEN", format!("127.0.0.1:{port}")),
        ("SHOPMIND__TRAINER__INTERVAL_S", "1".into()),
        ("SHOPMIND__TRAINER__RECOMMENDER", "covisit".into()),
        ("SHOPMIND__TRAINER__HOLDOUT_EVAL", "false".into()),
        ("SHOPMIND__GATEWAY__REQUEST_TIMEOUT_MS", "20000".into()),
        ("SHOPMIND__PRIVACY__SECRET_FILE", secret.display().to_string()),
        ("SHOPMIND__PRIVACY__TENANTS__ACME__PSEUDONYMIZE", "true".into()),
    ];
    let proc = Proc::start(dir.path(), &env);
    let endpoint = format!("http://127.0.0.1:{port}");
    let channel = eventually(WAIT, "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { Channel::from_shared(endpoint).ok()?.connect().await.ok() }
    })
    .await;
    let mut gateway = GatewayClient::new(channel.clone());
    let mut admin = AdminClient::new(channel);
    let bus = NatsBus::connect(&nats.url(), "privacy-test").await.unwrap();
    let models = NatsModelStore::open(bus.client().clone()).await.unwrap();

    // Two customers: views, carts, an order, support messages and searches full of PII.
    let mut events = Vec::new();
    for (i, item) in ["sku-1", "sku-2", "sku-3", ALICE_ITEM].iter().enumerate() {
        events.push(view(&format!("a-v{i}"), ALICE, item));
    }
    for (i, item) in ["sku-1", "sku-2", "sku-3"].iter().enumerate() {
        events.push(view(&format!("b-v{i}"), BOB, item));
    }
    events.push(cart("a-c1", ALICE, "sku-2"));
    events.push(order("a-o1", ALICE, "sku-1"));
    events.push(order("b-o1", BOB, "sku-3"));
    events.push(support("a-s1", ALICE, SUPPORT_TEXT));
    events.push(support("b-s1", BOB, "I am b.jones@example.org at 221B Baker Street, mobile 0176-12345678"));
    events.push(search("a-q1", ALICE, "order for a.smith@example.com 4111111111111111"));
    let request = pb::PublishEventsRequest { tenant: TENANT.into(), events };
    let response = eventually(WAIT, "the gateway publishes", || {
        let (mut gateway, request) = (gateway.clone(), request.clone());
        async move { gateway.publish_events(request).await.ok() }
    })
    .await
    .into_inner();
    assert_eq!(response.accepted, 13);
    // A backend publishes raw events to the intake stream: a valid one, and one ingest rejects.
    let raw = support("a-s2", ALICE, "my other address is b.jones@example.org, call +44 20 7946 0958");
    let mut rejected = support("x-s3", "", "card 4111 1111 1111 1111 of a.smith@example.com");
    rejected.user_id.clear();
    for e in [raw, rejected] {
        let subject = topology::intake_subject(&TenantId::parse(TENANT).unwrap());
        bus.publish(Message::new(subject, Bytes::from(e.encode_to_vec())), None).await.unwrap();
    }
    eventually(WAIT, "ingest published the intake event and dead-lettered the other", || async {
        let events = bus.stream_state(topology::EVENTS_STREAM).await.ok()?;
        let dlq = bus.stream_state(topology::DLQ_STREAM).await.ok()?;
        (events.messages >= 14 && dlq.messages >= 1).then_some(())
    })
    .await;
    caught_up(&bus).await;
    let before = eventually(WAIT, "a recommender trained on both customers", || async {
        active_model(&models).await.filter(|(_, users, _, bytes)| *users == 2 && contains(bytes, ALICE_ITEM))
    })
    .await;

    let tenant = TenantId::parse(TENANT).unwrap();
    let alice = shopmind_privacy::pseudonymize(SECRET.as_bytes(), &tenant, &UserId::parse(ALICE).unwrap());
    let bob = shopmind_privacy::pseudonymize(SECRET.as_bytes(), &tenant, &UserId::parse(BOB).unwrap());

    // Calls name the shop's own id; the gateway looks the customer up by their pseudonym.
    let profile = eventually(WAIT, "Alice's profile by the shop's id", || {
        let mut gateway = gateway.clone();
        async move {
            let request = pb::GetCustomerProfileRequest {
                tenant: TENANT.into(),
                user_id: ALICE.into(),
                recent_limit: 0,
            };
            gateway.get_customer_profile(request).await.ok()
        }
    })
    .await
    .into_inner();
    assert_eq!(profile.user_id, alice.as_str(), "the profile of the pseudonymised customer");
    assert!(!profile.recent_activity.is_empty(), "{profile:?}");

    // Nothing raw anywhere; the placeholders and the pseudonyms are where the data went.
    let redis_text = redis_dump(&redis.url()).await;
    let streams_text = streams_dump(&bus).await;
    let log = proc.log();
    assert!(log.contains("DEBUG"), "the log is captured at debug level");
    for (what, text) in [("Redis", &redis_text), ("the streams", &streams_text), ("the log", &log)] {
        assert_absent(what, text, &RAW);
    }
    for placeholder in ["[email]", "[phone]", "[card]", "[iban]", "[address]"] {
        assert!(streams_text.contains(placeholder), "{placeholder} in the streams:\n{streams_text}");
    }
    assert!(streams_text.contains("ord-1042"), "order ids stay");
    assert!(redis_text.contains(alice.as_str()) && redis_text.contains(bob.as_str()), "{redis_text}");
    // The escalation to the agents quotes the masked text.
    assert!(
        streams_text.lines().any(|l| l.starts_with("SM_NOTIFICATIONS") && l.contains("[email]")),
        "{streams_text}"
    );

    // Erase Alice through the admin API.
    let request = pb::EraseCustomerRequest { tenant: TENANT.into(), user_id: ALICE.into() };
    let report = admin.erase_customer(request).await.unwrap().into_inner();
    let removed = |what: &str| report.removed.iter().find(|r| r.what == what).map_or(0, |r| r.count);
    assert_eq!(removed("events"), 9, "{report:?}");
    assert!(removed("customer keys") >= 5, "{report:?}");
    assert!(removed("event guards") >= 9, "{report:?}");
    assert!(removed("sessions") >= 4, "{report:?}");
    assert!(removed("notifications") >= 1, "{report:?}");
    let invalid = admin
        .erase_customer(pb::EraseCustomerRequest { tenant: TENANT.into(), user_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);

    // A new event of Bob's starts a new training round (the trainer skips unchanged tenants).
    let request =
        pb::PublishEventsRequest { tenant: TENANT.into(), events: vec![view("b-v9", BOB, "sku-1")] };
    assert_eq!(gateway.publish_events(request).await.unwrap().into_inner().accepted, 1);
    caught_up(&bus).await;
    let after = eventually(WAIT, "a recommender retrained after the erasure", || async {
        active_model(&models).await.filter(|(version, users, _, _)| *version != before.0 && *users == 1)
    })
    .await;

    let redis_text = redis_dump(&redis.url()).await;
    let streams_text = streams_dump(&bus).await;
    assert_absent("Redis", &redis_text, &[alice.as_str(), ALICE]);
    assert_absent("the streams", &streams_text, &[alice.as_str(), ALICE, "a.smith"]);
    assert!(redis_text.contains(bob.as_str()), "Bob's features stay");
    assert!(
        streams_text.lines().filter(|l| l.starts_with("SM_EVENTS") && l.contains(bob.as_str())).count() >= 6,
        "Bob's events stay"
    );
    assert!(streams_text.contains("SM_ERASURES"), "the tombstone is kept");
    // The retrained model knows one customer, fewer interactions, and not Alice's own item.
    assert_eq!((before.1, after.1), (2, 1), "users trained on");
    assert!(after.2 < before.2, "interactions {} -> {}", before.2, after.2);
    assert!(contains(&before.3, ALICE_ITEM), "Alice's item was in the first model");
    assert!(!contains(&after.3, ALICE_ITEM), "and is not in the retrained one");
    assert!(!contains(&after.3, alice.as_str()));

    // Erasing again (with the CLI) finds nothing more, and says so per kind.
    let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args(["privacy", "erase", "--tenant", TENANT, "--user", ALICE])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for line in ["events", "customer keys", "conversations", "notification timers"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(line) && l.ends_with(" 0")),
            "{line}: {stdout}"
        );
    }
    assert!(stdout.lines().any(|l| l.trim_start().starts_with("total") && l.ends_with(" 0")), "{stdout}");
}
