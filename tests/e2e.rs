//! End to end, through the real binary: gRPC -> ingest -> JetStream -> feature -> Redis ->
//! trainer (ONNX) -> inference (ONNX Runtime) -> gRPC, and order status -> notification ->
//! StreamNotifications.
//!
//! `distributed_services_over_nats_and_redis` runs each service as its own OS process against a
//! private nats-server and redis-server; `all_in_one_embedded` runs the same scenario against one
//! `shopmind all-in-one` process with no NATS or Redis at all.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_testkit::{NatsServer, RedisServer, eventually, free_port};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(60);
const TENANT: &str = "e2e-shop";

/// A `shopmind` process, killed on drop; its log is kept in the test's directory.
struct Proc {
    child: Child,
    name: String,
    log: std::path::PathBuf,
}

impl Proc {
    fn start(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Self {
        let name = args.join("-");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shopmind"))
            .args(args)
            // Every process serves metrics; each on a port of its own, which the OS picks.
            .env("SHOPMIND__METRICS__LISTEN", "127.0.0.1:0")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, name, log }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("`shopmind {}` exited with {status}:\n{log}", self.name);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of `shopmind {}` ---", self.name);
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn common_env() -> Vec<(&'static str, String)> {
    vec![
        ("SHOPMIND__TRAINER__INTERVAL_S", "1".into()),
        // The scenario asserts exactly which items answer (the user's own group, `covisited`):
        // co-visitation gives that from a dozen shoppers. The default embedding recommender is
        // tested in services/inference/tests/embedding.rs.
        ("SHOPMIND__TRAINER__RECOMMENDER", "covisit".into()),
        ("SHOPMIND__GATEWAY__REQUEST_TIMEOUT_MS", "5000".into()),
    ]
}

async fn connect(port: u16, procs: &mut [Proc]) -> GatewayClient<Channel> {
    let endpoint = format!("http://127.0.0.1:{port}");
    let channel = eventually(WAIT, "the gateway accepts connections and reports SERVING", || {
        for p in procs.iter_mut() {
            p.assert_running();
        }
        let endpoint = endpoint.clone();
        async move {
            let channel = Channel::from_shared(endpoint).ok()?.connect().await.ok()?;
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let status = health
                .check(tonic_health::pb::HealthCheckRequest { service: "shopmind.v1.Gateway".into() })
                .await
                .ok()?
                .into_inner()
                .status;
            (status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                .then_some(channel)
        }
    })
    .await;
    GatewayClient::new(channel)
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(std::time::SystemTime::now())
}

fn event(id: &str, user: &str, payload: pb::event::Payload) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: String::new(),
        occurred_at: Some(now()),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(payload),
    }
}

fn view(id: &str, user: &str, item: &str) -> pb::Event {
    event(
        id,
        user,
        pb::event::Payload::ProductViewed(pb::ProductViewed { item_id: item.into(), source: String::new() }),
    )
}

fn order(id: &str, user: &str, order: &str, item: &str) -> pb::Event {
    event(
        id,
        user,
        pb::event::Payload::OrderPlaced(pb::OrderPlaced {
            order_id: order.into(),
            lines: vec![pb::OrderLine {
                item_id: item.into(),
                quantity: 1,
                unit_price: Some(pb::Money { amount_minor: 1999, currency: "EUR".into() }),
            }],
        }),
    )
}

fn cluster(prefix: &str) -> Vec<String> {
    (1..=6).map(|i| format!("{prefix}{i}")).collect()
}

async fn publish(client: &mut GatewayClient<Channel>, events: Vec<pb::Event>) -> pb::PublishEventsResponse {
    client
        .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events })
        .await
        .unwrap()
        .into_inner()
}

async fn recommend(
    client: &mut GatewayClient<Channel>,
    user: &str,
) -> Result<pb::RecommendResponse, tonic::Status> {
    client
        .recommend(pb::RecommendRequest {
            tenant: TENANT.into(),
            user_id: user.into(),
            limit: 3,
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

fn bad_request_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The scenario both modes must pass.
/// Returns the model version that answered alice.
async fn scenario(client: &mut GatewayClient<Channel>) -> String {
    let (a, b) = (cluster("a"), cluster("b"));

    // The catalog and a history of other shoppers: two groups that never mix.
    let mut events = Vec::new();
    for (i, item) in a.iter().chain(b.iter()).enumerate() {
        events.push(event(
            &format!("item-{i}"),
            "",
            pb::event::Payload::ItemUpserted(pb::ItemUpserted {
                item_id: item.clone(),
                title: format!("Item {item}"),
                category_path: vec![item[..1].to_uppercase()],
                ..Default::default()
            }),
        ));
    }
    for u in 0..12 {
        let items = if u % 2 == 0 { &a } else { &b };
        for k in 0..4 {
            let item = &items[(u + k) % 6];
            events.push(view(&format!("bg-{u}-{k}"), &format!("shopper-{u}"), item));
        }
    }
    let r = publish(client, events.clone()).await;
    assert_eq!((r.accepted, r.duplicates, r.rejected.len()), (events.len() as u32, 0, 0));

    // Publishing the same events again stores nothing new.
    let again = publish(client, events[..5].to_vec()).await;
    assert_eq!((again.accepted, again.duplicates), (0, 5));

    // Notifications from now on.
    let mut notifications = client
        .stream_notifications(pb::StreamNotificationsRequest {
            tenant: TENANT.into(),
            from_sequence: 0,
            user_id: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();

    // Two users with different histories; alice bought a3.
    let r = publish(
        client,
        vec![
            view("alice-1", "alice", "a1"),
            view("alice-2", "alice", "a2"),
            order("alice-3", "alice", "order-alice-1", "a3"),
            view("bob-1", "bob", "b1"),
            view("bob-2", "bob", "b2"),
        ],
    )
    .await;
    assert_eq!(r.accepted, 5);

    let in_cluster = |resp: &pb::RecommendResponse, cluster: &[String]| {
        !resp.model_version.is_empty()
            && resp.items.len() == 3
            && resp.items.iter().all(|i| cluster.contains(&i.item_id) && i.reason == "covisited")
    };
    let alice = eventually(WAIT, "alice gets model recommendations from her own group", || {
        let mut c = client.clone();
        let a = a.clone();
        async move { recommend(&mut c, "alice").await.ok().filter(|r| in_cluster(r, &a)) }
    })
    .await;
    let bob = eventually(WAIT, "bob gets model recommendations from his own group", || {
        let mut c = client.clone();
        let b = b.clone();
        async move { recommend(&mut c, "bob").await.ok().filter(|r| in_cluster(r, &b)) }
    })
    .await;
    let alice_items: BTreeSet<&str> = alice.items.iter().map(|i| i.item_id.as_str()).collect();
    assert!(!alice_items.contains("a3"), "a bought item is never recommended: {alice_items:?}");
    assert!(alice.items.windows(2).all(|w| w[0].score >= w[1].score), "ranked by score");
    assert_ne!(
        alice.items.iter().map(|i| &i.item_id).collect::<Vec<_>>(),
        bob.items.iter().map(|i| &i.item_id).collect::<Vec<_>>()
    );

    // A user with no history gets trending items (a cold start), not an error.
    let stranger = recommend(client, "stranger").await.unwrap();
    assert_eq!(stranger.items.len(), 3);
    assert!(stranger.cold_start);
    assert!(stranger.items.iter().all(|i| i.reason == "trending"), "{stranger:?}");

    // The order ships: alice is notified.
    let shipped = event(
        "alice-4",
        "alice",
        pb::event::Payload::OrderStatusChanged(pb::OrderStatusChanged {
            order_id: "order-alice-1".into(),
            status: pb::OrderStatus::Shipped as i32,
        }),
    );
    publish(client, vec![shipped]).await;
    let n = tokio::time::timeout(WAIT, notifications.next())
        .await
        .expect("a notification in time")
        .unwrap()
        .unwrap();
    assert_eq!(n.kind, pb::NotificationKind::OrderStatus as i32);
    assert_eq!(n.user_id, "alice");
    assert_eq!(n.tenant, TENANT);
    assert_eq!(n.source_event_id, "alice-4");
    assert_eq!(n.data.get("status").map(String::as_str), Some("shipped"));
    assert!(n.sequence > 0);

    // Malformed requests: INVALID_ARGUMENT naming the fields.
    let mut bad = view("bad-1", "", "a1");
    bad.occurred_at = None;
    let status = client
        .publish_events(pb::PublishEventsRequest {
            tenant: TENANT.into(),
            events: vec![view("ok", "u", "a1"), bad],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&status), vec!["events[1].occurred_at", "events[1].user_id"]);
    let status = client
        .recommend(pb::RecommendRequest {
            tenant: "Not A Tenant".into(),
            user_id: "u".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&status), vec!["tenant"]);
    let status = client
        .recommend(pb::RecommendRequest {
            tenant: TENANT.into(),
            user_id: "u".into(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert_eq!(bad_request_fields(&status), vec!["limit"]);
    // Nothing of the rejected batch was published: "ok" is still new.
    assert_eq!(publish(client, vec![view("ok", "u", "a1")]).await.accepted, 1);
    alice.model_version
}

async fn assert_reflection_lists_the_api(channel: Channel) {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::iter(vec![request])).await.unwrap().into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("{response:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"shopmind.v1.Gateway".to_string()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_string()), "{names:?}");
}

#[tokio::test]
async fn distributed_services_over_nats_and_redis() {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = common_env();
    env.push(("SHOPMIND__NATS__URL", nats.url()));
    env.push(("SHOPMIND__REDIS__URL", redis.url()));
    env.push(("SHOPMIND__GATEWAY__LISTEN", format!("127.0.0.1:{port}")));
    let mut procs: Vec<Proc> = ["ingest", "feature", "inference", "notification", "trainer", "gateway"]
        .iter()
        .map(|s| Proc::start(dir.path(), &[s], &env))
        .collect();
    let mut client = connect(port, &mut procs).await;
    assert_reflection_lists_the_api(
        Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap(),
    )
    .await;
    let alice_version = scenario(&mut client).await;

    // A malformed message on the bus goes to the dead-letter stream, and the feature consumer
    // keeps going: an event published after it is applied.
    use shopmind_bus::Bus;
    let bus = shopmind_bus::NatsBus::connect(&nats.url(), "e2e").await.unwrap();
    let garbage =
        shopmind_bus::Message::new(format!("sm.events.{TENANT}.product_viewed"), "\u{1}not protobuf");
    let garbage_seq = bus.publish(garbage, None).await.unwrap().sequence;
    publish(&mut client, vec![view("carol-1", "carol", "b3")]).await;
    let mut dlq = bus.replay("SM_DLQ", None, shopmind_bus::StartAt::First).await.unwrap();
    let dead = tokio::time::timeout(WAIT, async {
        loop {
            let m = dlq.next().await.unwrap().unwrap();
            // Every consumer of SM_EVENTS (feature, notification) dead-letters it for its stage.
            if m.message.headers.get("Shopmind-Dlq-Sequence") == Some(&garbage_seq.to_string())
                && m.message.subject == format!("sm.dlq.{TENANT}.feature")
            {
                return m;
            }
        }
    })
    .await
    .expect("the malformed message reaches the dead-letter stream");
    assert_eq!(dead.message.subject, format!("sm.dlq.{TENANT}.feature"));
    assert_eq!(dead.message.headers.get("Shopmind-Dlq-Code"), Some("malformed"));
    assert_eq!(dead.message.payload, "\u{1}not protobuf", "the original bytes are kept");
    eventually(WAIT, "carol's event, published after the malformed one, is applied", || {
        let mut c = client.clone();
        async move {
            let r = recommend(&mut c, "carol").await.ok()?;
            r.items.iter().all(|i| i.item_id.starts_with('b') && i.reason == "covisited").then_some(())
        }
    })
    .await;

    // The operator's view: `shopmind dlq list` shows it; `dlq replay` sends it back to the feature
    // stage, which rejects it again (it is still malformed) -- nothing is lost either way.
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
            .args(args)
            .env("SHOPMIND__NATS__URL", nats.url())
            .output()
            .unwrap();
        assert!(out.status.success(), "shopmind {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["dlq", "list", "--tenant", TENANT]);
    assert!(
        listed.contains("malformed") && listed.contains("2 dead letter(s)"),
        "feature and notification: {listed}"
    );
    let listed = cli(&["dlq", "list", "--tenant", TENANT, "--stage", "feature"]);
    assert!(listed.contains("malformed") && listed.contains("1 dead letter(s)"), "{listed}");
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["dlq", "list", "--tenant", TENANT, "--stage", "feature", "--json"]))
            .expect("dlq list --json prints a JSON array");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let letter = &listed[0];
    assert_eq!(letter["sequence"], dead.sequence, "{listed}");
    assert_eq!(letter["tenant"], TENANT, "{listed}");
    assert_eq!(letter["stage"], "feature", "{listed}");
    assert_eq!(letter["code"], "malformed", "{listed}");
    assert_eq!(letter["original_sequence"], garbage_seq, "{listed}");
    let dlq_seq = dead.sequence.to_string();
    let replayed = cli(&["dlq", "replay", "--seq", &dlq_seq]);
    assert!(replayed.contains("replayed: 1"), "{replayed}");
    eventually(WAIT, "the replayed message is dead-lettered again by the feature stage", || async {
        let listed = cli(&["dlq", "list", "--tenant", TENANT, "--stage", "feature", "--code", "malformed"]);
        (listed.contains("1 dead letter(s)") && !listed.contains(&format!(" {dlq_seq}  "))).then_some(())
    })
    .await;

    // The model registry, as an operator sees it: the version that answered alice is listed
    // (a later round, for carol's event, may have promoted a newer one: one version is active),
    // and promoting a version that does not exist is a clear error.
    let listed = cli(&["models", "list", "--tenant", TENANT]);
    assert!(listed.starts_with("TENANT") && listed.contains(&alice_version), "{listed}");
    let active: Vec<&str> = listed.lines().filter(|l| l.contains(" active ")).collect();
    assert_eq!(active.len(), 1, "{listed}");
    assert!(active[0].starts_with(TENANT) && active[0].contains("recommender"), "{listed}");
    let listed: serde_json::Value =
        serde_json::from_str(&cli(&["models", "list", "--tenant", TENANT, "--json"]))
            .expect("models list --json prints a JSON array");
    let versions = listed.as_array().unwrap();
    assert!(versions.iter().any(|v| v["version"] == alice_version.as_str()), "{listed}");
    let active: Vec<&serde_json::Value> = versions.iter().filter(|v| v["status"] == "active").collect();
    assert_eq!(active.len(), 1, "{listed}");
    assert_eq!(active[0]["tenant"], TENANT, "{listed}");
    assert_eq!(active[0]["model"], "recommender", "{listed}");
    let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args(["models", "promote", "--tenant", TENANT, "--model", "recommender", "no-such-version"])
        .env("SHOPMIND__NATS__URL", nats.url())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has no version \"no-such-version\""), "{stderr}");
    for p in &mut procs {
        p.assert_running();
    }
}

#[tokio::test]
async fn all_in_one_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut env = common_env();
    env.push(("SHOPMIND__GATEWAY__LISTEN", format!("127.0.0.1:{port}")));
    // No NATS or Redis URL: the in-process bus and the in-memory store.
    let mut procs = vec![Proc::start(dir.path(), &["all-in-one"], &env)];
    let mut client = connect(port, &mut procs).await;
    assert_reflection_lists_the_api(
        Channel::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await.unwrap(),
    )
    .await;
    scenario(&mut client).await;
    let log = std::fs::read_to_string(&procs[0].log).unwrap();
    assert!(
        log.contains("bus=\"memory\"") || log.contains("bus=memory"),
        "runs on the in-process bus:\n{log}"
    );
    procs[0].assert_running();
}
