//! `shopmind bench assist`: the latency of `Assist` through the gateway for typical customer
//! messages, next to the raw sentence-encoder run time of the same messages measured in the same
//! run.
//!
//! 1. starts private nats-server and redis-server processes and the feature, notification,
//!    inference and gateway services in-process on them (as `all-in-one` does);
//! 2. publishes a few customers' orders through the gateway and waits until they are applied;
//! 3. **raw baseline**: loads the encoder (converted in memory, `inference.sessions` sessions)
//!    and embeds each message alone, one at a time: the encoder's run time per message;
//! 4. **assist**: one caller sends the same messages through the gateway's `Assist`, one at a
//!    time, in conversations of ten messages (order status, a follow-up, cancellation, return,
//!    FAQ questions, a product question, a greeting, one out-of-scope message; no escalation);
//! 5. reports p50/p99 of both and the ratio of the p99s; the target is p99 <= 30 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use shopmind_bus::{Bus, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis, UserId};
use shopmind_features::{FeatureSettings, read_user_features};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_registry::{MemoryModelStore, ModelStore};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore};

use super::{Servers, percentile};

/// The p99 the issue asks for.
const TARGET_P99_MS: f64 = 30.0;
/// Customers with orders.
const CUSTOMERS: usize = 20;
const DAY: i64 = 86_400_000;

/// One conversation of typical messages; `{o}` is the customer's shipped order, `{d}` the
/// delivered one.
const SCRIPT: [&str; 10] = [
    "hi there",
    "where is my order {o}?",
    "and when will it arrive?",
    "can I cancel order {o}?",
    "I'd like to return order {d}",
    "how long does shipping take?",
    "which payment methods do you accept?",
    "is the trail runner shoe in stock?",
    "what's the weather like tomorrow",
    "how do I change my email address?",
];

/// The intent each message of [`SCRIPT`] should be answered with (the follow-up is an order-status
/// question about the conversation's order).
const EXPECTED: [&str; 10] = [
    "greeting",
    "order_status",
    "order_status",
    "cancel_order",
    "return_request",
    "shipping_info",
    "payment_issue",
    "product_question",
    "out_of_scope",
    "account_help",
];

#[derive(Debug, serde::Serialize)]
pub struct AssistReport {
    pub requests: usize,
    pub sessions: usize,
    pub intra_threads: usize,
    pub encoder_p50_ms: f64,
    pub encoder_p99_ms: f64,
    pub assist_p50_ms: f64,
    pub assist_p99_ms: f64,
    pub assist_mean_ms: f64,
    /// p99 of assist over p99 of the encoder alone.
    pub p99_ratio: f64,
    pub target_p99_ms: f64,
    pub meets_target: bool,
    /// Intents answered, by name.
    pub intents: std::collections::BTreeMap<String, usize>,
    /// Share of messages answered with the intent the script expects.
    pub script_accuracy: f64,
    pub startup_s: f64,
}

fn message(text: &str, customer: usize) -> String {
    text.replace("{o}", &format!("S{customer:04}")).replace("{d}", &format!("D{customer:04}"))
}

pub async fn run(requests: usize, mut config: Config) -> anyhow::Result<AssistReport> {
    if requests < SCRIPT.len() {
        bail!("--requests must be at least {}", SCRIPT.len());
    }
    let servers = Servers::spawn().await?;
    config.nats.url = servers.nats.url();
    config.redis.url = servers.redis.url();
    config.metrics.listen = String::new();
    config.notification.model_seams = false;
    let tenant = TenantId::parse("bench-assist").context("tenant")?;

    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&config.nats.url, "bench-assist").await?);
    connect::ensure_streams(&*bus, &config).await?;
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&config.redis.url).await?);
    let registry: Arc<dyn ModelStore> = Arc::new(MemoryModelStore::default());
    let shutdown = Shutdown::new();
    let started = Instant::now();
    tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    tokio::spawn(shopmind_notification::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()));
    tokio::spawn(shopmind_inference::run(
        config.clone(),
        bus.clone(),
        store.clone(),
        registry,
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(shopmind_gateway::run(config.clone(), bus.clone(), listener, shutdown.clone()));
    let mut client = loop {
        if let Ok(c) = GatewayClient::connect(endpoint.clone()).await {
            break c;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the gateway did not accept connections");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // 2. Orders, a catalog entry and a view per customer.
    let now = UnixMillis::now().0;
    let ev = |id: String, user: String, at: i64, payload| pb::Event {
        event_id: id,
        tenant: tenant.to_string(),
        occurred_at: Some(UnixMillis(at).to_proto()),
        user_id: user,
        session_id: String::new(),
        payload: Some(payload),
    };
    let mut events = vec![ev(
        "item".into(),
        String::new(),
        now - 30 * DAY,
        pb::event::Payload::ItemUpserted(pb::ItemUpserted {
            item_id: "sku-trail".into(),
            title: "Trail Runner Shoe".into(),
            category_path: vec!["Shoes".into()],
            price: Some(pb::Money { amount_minor: 8999, currency: "EUR".into() }),
            attributes: Default::default(),
        }),
    )];
    for c in 0..CUSTOMERS {
        let user = format!("customer-{c}");
        for (order, status, age) in [
            (format!("S{c:04}"), pb::OrderStatus::Shipped, 1),
            (format!("D{c:04}"), pb::OrderStatus::Delivered, 5),
        ] {
            let placed = pb::event::Payload::OrderPlaced(pb::OrderPlaced {
                order_id: order.clone(),
                lines: vec![pb::OrderLine { item_id: "sku-trail".into(), quantity: 1, unit_price: None }],
            });
            events.push(ev(format!("p-{order}"), user.clone(), now - (age + 2) * DAY, placed));
            let changed = pb::event::Payload::OrderStatusChanged(pb::OrderStatusChanged {
                order_id: order.clone(),
                status: status as i32,
            });
            events.push(ev(format!("s-{order}"), user.clone(), now - age * DAY, changed));
        }
        let view = pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: "sku-trail".into(),
            source: String::new(),
        });
        events.push(ev(format!("v-{c}"), user, now - 60_000, view));
    }
    client.publish_events(pb::PublishEventsRequest { tenant: tenant.to_string(), events }).await?;
    let last = UserId::parse(format!("customer-{}", CUSTOMERS - 1)).context("user")?;
    let settings = FeatureSettings::from_config(&config.feature);
    loop {
        let f = read_user_features(&*store, &tenant, &last, &settings, UnixMillis::now()).await?;
        if f.orders.values().filter(|(_, s)| s == "shipped" || s == "delivered").count() == 2 {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("the feature service did not apply the orders");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ask = |conversation: String, user: String, text: String| pb::AssistRequest {
        tenant: tenant.to_string(),
        conversation_id: conversation,
        user_id: user,
        text,
    };
    loop {
        match client.assist(ask("warm-up".into(), "nobody".into(), "hello".into())).await {
            Ok(_) => break,
            Err(s)
                if s.code() == tonic::Code::Unavailable && started.elapsed() < Duration::from_secs(600) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(s) => bail!("the assistant did not get ready: {s}"),
        }
    }
    let startup_s = started.elapsed().as_secs_f64();

    let texts: Vec<(usize, String)> = (0..requests)
        .map(|i| {
            let customer = (i / SCRIPT.len()) % CUSTOMERS;
            (i, message(SCRIPT[i % SCRIPT.len()], customer))
        })
        .collect();

    // 3. The raw encoder, one message per run.
    let options = shopmind_serving::PoolOptions {
        sessions: config.inference.sessions,
        intra_threads: config.inference.intra_threads,
        ..shopmind_serving::PoolOptions::default()
    };
    let encoder = {
        let (config, options) = (config.clone(), options.clone());
        tokio::task::spawn_blocking(move || shopmind_inference::assist::load_encoder(&config, &options))
            .await?
            .map_err(anyhow::Error::msg)?
    };
    for (_, t) in texts.iter().take(20) {
        encoder.encode(&[t.as_str()]).await?;
    }
    let mut raw = Vec::with_capacity(requests);
    for (_, t) in &texts {
        let t0 = Instant::now();
        encoder.encode(&[t.as_str()]).await?;
        raw.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    drop(encoder);

    // 4. Assist through the gateway, one conversation per pass of the script.
    let mut took = Vec::with_capacity(requests);
    let mut intents = std::collections::BTreeMap::new();
    let mut as_expected = 0usize;
    for (pass, (i, t)) in texts.iter().enumerate() {
        let customer = (i / SCRIPT.len()) % CUSTOMERS;
        let conversation = format!("bench-{}", pass / SCRIPT.len());
        let request = ask(conversation, format!("customer-{customer}"), t.clone());
        let t0 = Instant::now();
        let r = client.assist(request).await.with_context(|| format!("assist {t:?}"))?.into_inner();
        took.push(t0.elapsed().as_secs_f64() * 1000.0);
        as_expected += usize::from(r.intent == EXPECTED[i % SCRIPT.len()]);
        *intents.entry(r.intent).or_insert(0) += 1;
    }
    shutdown.trigger();
    servers.stop().await;

    raw.sort_by(f64::total_cmp);
    let mean = took.iter().sum::<f64>() / took.len() as f64;
    took.sort_by(f64::total_cmp);
    let (assist_p99, encoder_p99) = (percentile(&took, 0.99), percentile(&raw, 0.99));
    Ok(AssistReport {
        requests,
        sessions: config.inference.sessions,
        intra_threads: config.inference.intra_threads,
        encoder_p50_ms: percentile(&raw, 0.50),
        encoder_p99_ms: encoder_p99,
        assist_p50_ms: percentile(&took, 0.50),
        assist_p99_ms: assist_p99,
        assist_mean_ms: mean,
        p99_ratio: assist_p99 / encoder_p99.max(f64::MIN_POSITIVE),
        target_p99_ms: TARGET_P99_MS,
        meets_target: assist_p99 <= TARGET_P99_MS,
        intents,
        script_accuracy: as_expected as f64 / requests as f64,
        startup_s,
    })
}

pub fn print(r: &AssistReport) {
    println!(
        "bench assist: {} requests, one caller, CPU ({} sessions x {} threads)",
        r.requests, r.sessions, r.intra_threads
    );
    println!("| | p50 ms | p99 ms |");
    println!("|---|---|---|");
    println!("| raw encoder run (one message) | {:.2} | {:.2} |", r.encoder_p50_ms, r.encoder_p99_ms);
    println!("| Assist through the gateway | {:.2} | {:.2} |", r.assist_p50_ms, r.assist_p99_ms);
    println!(
        "p99 ratio assist / encoder: {:.2}; mean {:.2} ms; target p99 <= {} ms: {}",
        r.p99_ratio,
        r.assist_mean_ms,
        r.target_p99_ms,
        if r.meets_target { "met" } else { "NOT met" }
    );
    println!(
        "intents answered: {:?}; start-up (services, encoder, built-in head, FAQ) {:.1} s",
        r.intents, r.startup_s
    );
}
