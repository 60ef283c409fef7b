//! The assistant through the real gateway: a scripted conversation on real NATS, Redis, ONNX
//! Runtime (the all-MiniLM-L6-v2 encoder and an intent head), the feature service applying the
//! customer's order events, and the notification service taking the escalation to the agents'
//! channel.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shopmind_bus::{Bus, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{ConversationId, TenantId, UnixMillis, UserId};
use shopmind_features::{FeatureSettings, keys, read_user_features};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version, VersionInfo};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, Read, RedisStore, Value};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use tonic::transport::Channel;
use tonic_types::StatusExt;

const TENANT: &str = "assist-shop";
const DAY: i64 = 86_400_000;
const WAIT: Duration = Duration::from_secs(300);

fn tenant() -> TenantId {
    TenantId::parse(TENANT).unwrap()
}

fn event(id: &str, user: &str, at: i64, payload: pb::event::Payload) -> pb::Event {
    pb::Event {
        event_id: id.into(),
        tenant: TENANT.into(),
        occurred_at: Some(UnixMillis(at).to_proto()),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(payload),
    }
}

fn placed(order: &str) -> pb::event::Payload {
    pb::event::Payload::OrderPlaced(pb::OrderPlaced {
        order_id: order.into(),
        lines: vec![pb::OrderLine {
            item_id: "sku-trail".into(),
            quantity: 1,
            unit_price: Some(pb::Money { amount_minor: 8999, currency: "EUR".into() }),
        }],
    })
}

fn status(order: &str, s: pb::OrderStatus) -> pb::event::Payload {
    pb::event::Payload::OrderStatusChanged(pb::OrderStatusChanged {
        order_id: order.into(),
        status: s as i32,
    })
}

struct Services {
    client: GatewayClient<Channel>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
    registry: Arc<dyn ModelStore>,
    redis_url: String,
    _nats: NatsServer,
    _redis: RedisServer,
}

async fn start() -> Services {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let mut config = Config::default();
    config.nats.url = nats.url();
    config.redis.url = redis.url();
    config.assistant.defaults.faq_dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/faq/demo").display().to_string();
    config.notification.model_seams = false;
    config.gateway.request_timeout_ms = 20_000;
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "assist-test").await.unwrap());
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let nats_bus = NatsBus::connect(&nats.url(), "assist-registry").await.unwrap();
    let registry: Arc<dyn ModelStore> =
        Arc::new(NatsModelStore::open(nats_bus.client().clone()).await.unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    tokio::spawn(shopmind_notification::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    tokio::spawn(shopmind_inference::run(
        config.clone(),
        bus.clone(),
        store.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(shopmind_gateway::run(config, bus, listener, shutdown.clone()));
    let client = eventually(Duration::from_secs(10), "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { GatewayClient::connect(endpoint).await.ok() }
    })
    .await;
    Services { client, store, shutdown, registry, redis_url: redis.url(), _nats: nats, _redis: redis }
}

fn ask(conversation: &str, user: &str, text: &str) -> pb::AssistRequest {
    pb::AssistRequest {
        tenant: TENANT.into(),
        conversation_id: conversation.into(),
        user_id: user.into(),
        text: text.into(),
    }
}

/// Waits until the assistant has loaded (UNAVAILABLE while it starts).
async fn until_ready(client: &GatewayClient<Channel>) {
    eventually(WAIT, "the assistant is ready", || {
        let mut client = client.clone();
        async move { client.assist(ask("warm-up", "nobody", "hello")).await.ok() }
    })
    .await;
}

fn kinds(r: &pb::AssistResponse) -> Vec<&str> {
    r.actions.iter().map(|a| a.kind.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scripted_conversation_covers_every_path_through_the_gateway() {
    let mut s = start().await;
    let now = UnixMillis::now().0;
    // alice: A1001 shipped yesterday, A1002 paid, A1003 delivered 10 days ago; she looked at the
    // trail runner, which is in stock.
    let events = vec![
        event("p1", "alice", now - 5 * DAY, placed("A1001")),
        event("s1", "alice", now - DAY, status("A1001", pb::OrderStatus::Shipped)),
        event("p2", "alice", now - 3 * DAY, placed("A1002")),
        event("s2", "alice", now - 3 * DAY + 3_600_000, status("A1002", pb::OrderStatus::Paid)),
        event("p3", "alice", now - 20 * DAY, placed("A1003")),
        event("s3", "alice", now - 10 * DAY, status("A1003", pb::OrderStatus::Delivered)),
        event(
            "cat1",
            "",
            now - 30 * DAY,
            pb::event::Payload::ItemUpserted(pb::ItemUpserted {
                item_id: "sku-trail".into(),
                title: "Trail Runner Shoe".into(),
                category_path: vec!["Shoes".into(), "Running".into()],
                price: Some(pb::Money { amount_minor: 8999, currency: "EUR".into() }),
                attributes: Default::default(),
            }),
        ),
        event(
            "inv1",
            "",
            now - 30 * DAY,
            pb::event::Payload::InventoryChanged(pb::InventoryChanged {
                item_id: "sku-trail".into(),
                quantity_available: 12,
            }),
        ),
        event(
            "v1",
            "alice",
            now - 60_000,
            pb::event::Payload::ProductViewed(pb::ProductViewed {
                item_id: "sku-trail".into(),
                source: String::new(),
            }),
        ),
    ];
    let published = s
        .client
        .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.accepted, 9, "{published:?}");
    let user = UserId::parse("alice").unwrap();
    eventually(WAIT, "the feature service applied alice's orders", || {
        let (store, user) = (s.store.clone(), user.clone());
        async move {
            let f =
                read_user_features(&*store, &tenant(), &user, &FeatureSettings::default(), UnixMillis::now())
                    .await
                    .ok()?;
            let status = |o: &str| f.orders.get(o).map(|(_, s)| s.clone());
            (status("A1001").as_deref() == Some("shipped")
                && status("A1002").as_deref() == Some("paid")
                && status("A1003").as_deref() == Some("delivered")
                && !f.recent.is_empty())
            .then_some(())
        }
    })
    .await;
    eventually(WAIT, "the catalog entry is stored", || {
        let store = s.store.clone();
        async move {
            let key = keys::item_attrs(&tenant(), &shopmind_domain::ItemId::parse("sku-trail").unwrap());
            match store.read(vec![Read::Hash { key }]).await.ok()?.pop()? {
                Value::Hash(h)
                    if h.iter().any(|(k, _)| k == "stock") && h.iter().any(|(k, _)| k == "title") =>
                {
                    Some(())
                }
                _ => None,
            }
        }
    })
    .await;
    until_ready(&s.client).await;
    let c = &mut s.client;
    let mut say = async |text: &str| c.assist(ask("conv-1", "alice", text)).await.unwrap().into_inner();

    let r = say("hi there!").await;
    assert_eq!(r.intent, "greeting", "{r:?}");
    assert_eq!(r.conversation_id, "conv-1");
    assert!(!r.escalated);

    // Three orders and none named: which one?
    let r = say("where is my order?").await;
    assert_eq!(r.intent, "order_status", "{r:?}");
    assert!(r.needs_clarification, "{r:?}");
    assert_eq!(kinds(&r), ["asked_which_order"]);
    assert!(
        r.answer.contains("A1001") && r.answer.contains("A1002") && r.answer.contains("A1003"),
        "{}",
        r.answer
    );

    // The answer completes the pending question with the real order data.
    let r = say("the one with number A1001").await;
    assert_eq!(r.intent, "order_status", "{r:?}");
    assert!(!r.needs_clarification);
    assert_eq!(kinds(&r), ["order_status"]);
    assert_eq!(r.actions[0].order_id, "A1001");
    assert!(r.answer.contains("A1001") && r.answer.contains("shipped"), "{}", r.answer);
    let order_citation = r.citations.iter().find(|c| c.source == "order").unwrap();
    assert_eq!(order_citation.id, "A1001");

    // A follow-up is about the same order: its delivery estimate (shipped yesterday + 3 days).
    let r = say("and when will it arrive?").await;
    assert_eq!(r.intent, "order_status", "{r:?}");
    assert_eq!(r.actions[0].order_id, "A1001", "{r:?}");
    let expected = shopmind_assistant::grounding::date(now - DAY + 3 * DAY);
    assert!(r.answer.contains(&format!("arrive by {expected}")), "{}", r.answer);

    // Cancelling a shipped order is refused, with the reason.
    let r = say("please cancel order A1001").await;
    assert_eq!(r.intent, "cancel_order", "{r:?}");
    assert_eq!(kinds(&r), ["cancel_refused"]);
    assert_eq!(r.actions[0].order_id, "A1001");
    assert!(r.actions[0].detail.contains("already shipped"), "{:?}", r.actions[0]);
    assert!(r.answer.contains("can't cancel") && r.answer.contains("shipped"), "{}", r.answer);
    assert!(r.citations.iter().any(|c| c.source == "policy" && c.id == "cancellation"), "{r:?}");

    // The delivered order is within the 30-day return window.
    let r = say("I want to return order A1003").await;
    assert_eq!(r.intent, "return_request", "{r:?}");
    assert_eq!(kinds(&r), ["return_allowed"]);
    assert_eq!(r.actions[0].order_id, "A1003");
    let deadline = shopmind_assistant::grounding::date(now - 10 * DAY + 30 * DAY);
    assert!(r.answer.contains(&deadline), "{}", r.answer);

    // A shipping question is answered from the FAQ, with its citation.
    let r = say("how long does shipping usually take?").await;
    assert_eq!(r.intent, "shipping_info", "{r:?}");
    let faq = r.citations.iter().find(|c| c.source == "faq").unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(faq.id, "shipping.md#how-long-does-delivery-take");
    assert!(r.answer.contains("working days"), "{}", r.answer);

    // A product question uses the catalog attributes of the item she looked at.
    let r = say("is the trail runner shoe in stock?").await;
    assert_eq!(r.intent, "product_question", "{r:?}");
    let item = r.citations.iter().find(|c| c.source == "catalog").unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(item.id, "sku-trail");
    assert!(r.answer.contains("in stock (12 available)") && r.answer.contains("89.99 EUR"), "{}", r.answer);

    // Something no shop assistant serves.
    let r = say("what's the capital of australia").await;
    assert_eq!(r.intent, "out_of_scope", "{r:?}");
    assert!(!r.escalated);

    // An explicit request for a human reaches the agents.
    let r = say("I want to talk to a real person").await;
    assert_eq!(r.intent, "human_agent", "{r:?}");
    assert!(r.escalated, "{r:?}");
    assert!(kinds(&r).contains(&"escalated"));
    assert!(r.answer.contains("human agent"), "{}", r.answer);

    let mut stream = s
        .client
        .stream_notifications(pb::StreamNotificationsRequest {
            tenant: TENANT.into(),
            from_sequence: 1,
            user_id: "alice".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let escalation = tokio::time::timeout(WAIT, async {
        while let Some(n) = stream.next().await {
            let n = n.unwrap();
            if n.kind == pb::NotificationKind::SupportEscalation as i32 {
                return n;
            }
        }
        panic!("the stream ended");
    })
    .await
    .unwrap();
    assert_eq!(escalation.audience, "agents");
    assert_eq!(escalation.data.get("conversation_id").map(String::as_str), Some("conv-1"));
    let transcript = escalation.data.get("transcript").unwrap();
    assert!(transcript.contains("customer: where is my order?"), "{transcript}");
    assert!(transcript.contains("customer: I want to talk to a real person"), "{transcript}");
    assert!(transcript.contains("assistant: I'm sorry, I can't cancel order A1001"), "{transcript}");
    let intents = escalation.data.get("intents").unwrap();
    assert!(
        intents.starts_with("greeting,order_status,order_status") && intents.ends_with("human_agent"),
        "{intents}"
    );
    assert_eq!(escalation.data.get("profile.orders").map(String::as_str), Some("3"));
    assert!(escalation.data.get("profile.recent_orders").unwrap().contains("A1001 shipped"));

    // The state is in Redis with its TTL, indexed under alice, and the escalation is recorded.
    let conv = ConversationId::parse("conv-1").unwrap();
    let values = s
        .store
        .read(vec![
            Read::Set { key: keys::user_conversations(&tenant(), &user) },
            Read::Hash { key: keys::conversation_stats(&tenant(), &conv) },
        ])
        .await
        .unwrap();
    assert_eq!(values[0], Value::Set(vec!["conv-1".into()]));
    match &values[1] {
        Value::Hash(h) => {
            let at: i64 = std::str::from_utf8(&h[0].1).unwrap().parse().unwrap();
            assert_eq!(h[0].0, "escalated_at");
            assert!(at >= now, "{at} < {now}");
        }
        other => panic!("{other:?}"),
    }
    let client = redis::Client::open(s.redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    for key in [keys::conversation(&tenant(), &conv), keys::user_conversations(&tenant(), &user)] {
        let ttl: i64 = redis::cmd("PTTL").arg(&key.0).query_async(&mut redis).await.unwrap();
        assert!(ttl > 86_000_000 && ttl <= 86_400_000, "{key:?}: {ttl}");
    }
    s.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_requests_name_their_fields_and_conversations_stay_with_their_customer() {
    let mut s = start().await;
    until_ready(&s.client).await;
    let fields = |status: tonic::Status| {
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status
            .get_details_bad_request()
            .unwrap()
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect::<Vec<_>>()
    };
    let e = s.client.assist(ask("c1", "u1", "")).await.unwrap_err();
    assert_eq!(fields(e), ["text"]);
    let e = s.client.assist(ask("c1", "u1", &"x".repeat(2001))).await.unwrap_err();
    assert_eq!(fields(e), ["text"]);
    let e = s.client.assist(ask("bad id", "bad user", "hello")).await.unwrap_err();
    assert_eq!(fields(e), ["conversation_id", "user_id"]);

    // A conversation belongs to the customer who started it.
    s.client.assist(ask("mine", "u1", "hello")).await.unwrap();
    let e = s.client.assist(ask("mine", "u2", "where is my order?")).await.unwrap_err();
    assert_eq!(fields(e), ["conversation_id"]);

    // A customer without orders is told so, not guessed at.
    let r = s.client.assist(ask("c9", "u9", "where is my order A5555?")).await.unwrap().into_inner();
    assert_eq!(r.intent, "order_status", "{r:?}");
    assert_eq!(kinds(&r), ["no_orders"]);

    // The other FAQ intents, each with its entry.
    for (text, intent, entry) in [
        (
            "my card keeps getting declined at checkout",
            "payment_issue",
            "payments.md#why-was-my-card-declined",
        ),
        ("I forgot my password and can't log in", "account_help", "account.md#i-forgot-my-password"),
        ("when will I get my refund?", "refund_status", "returns.md#when-do-i-get-my-refund"),
    ] {
        let r = s.client.assist(ask("c9", "u9", text)).await.unwrap().into_inner();
        assert_eq!(r.intent, intent, "{text}: {r:?}");
        let cited: Vec<&str> =
            r.citations.iter().filter(|c| c.source == "faq").map(|c| c.id.as_str()).collect();
        assert_eq!(cited, [entry], "{text}: {r:?}");
    }

    // A complaint goes to the agents at once; repeated failures on the second one.
    let r = s
        .client
        .assist(ask("c10", "u9", "this is the worst service ever, I am really disappointed with you"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.intent.as_str(), r.escalated), ("complaint", true), "{r:?}");
    let r =
        s.client.assist(ask("c11", "u9", "what's the weather in paris tomorrow")).await.unwrap().into_inner();
    assert_eq!((r.intent.as_str(), r.escalated), ("out_of_scope", false), "{r:?}");
    let r = s
        .client
        .assist(ask("c11", "u9", "can you write my history homework essay"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.intent.as_str(), r.escalated), ("out_of_scope", true), "{r:?}");
    assert!(
        r.actions.iter().any(|a| a.kind == "escalated" && a.detail.contains("2 times in a row")),
        "{r:?}"
    );

    // A tenant's own intent head from the registry replaces the built-in one: this one hears a
    // greeting in everything.
    let labels: Vec<String> = shopmind_assistant::INTENTS.iter().map(|s| (*s).to_owned()).collect();
    let mut bias = vec![0.0; labels.len()];
    bias[labels.iter().position(|l| l == "greeting").unwrap()] = 10.0;
    let head = shopmind_assistant::IntentHead {
        weights: vec![0.0; 384 * labels.len()],
        labels,
        dimension: 384,
        bias,
        iterations: 0,
        train_loss: 0.0,
        rows: 1,
    };
    let bytes = head.to_onnx_for(TENANT, "v1", 1, &[]);
    let key = ModelKey::parse(TENANT, "intent_head").unwrap();
    let version = Version::parse("v1").unwrap();
    let info = VersionInfo {
        key: key.clone(),
        version: version.clone(),
        kind: shopmind_assistant::head::KIND.into(),
        created_at_ms: 1,
        items: 0,
        users: 0,
        interactions: 1,
        size: bytes.len() as u64,
    };
    s.registry.put(info, bytes::Bytes::from(bytes)).await.unwrap();
    s.registry.promote(&key, &version).await.unwrap();
    eventually(WAIT, "the tenant's head answers", || {
        let mut client = s.client.clone();
        async move {
            let r = client.assist(ask("c2", "u1", "where is my order?")).await.ok()?.into_inner();
            (r.intent == "greeting").then_some(())
        }
    })
    .await;

    s.shutdown.trigger();
}
