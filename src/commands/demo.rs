//! `shopmind demo`: all-in-one on MovieLens-100k, through the real gRPC API.
//!
//! Loads the catalog and 100k ratings as events (`PublishEvents`), waits until the feature
//! service has applied them, trains the recommender (ONNX), then shows for a few users what they
//! watched and what shopmind recommends; then one new event, and how the next answer changes;
//! finally a short conversation with the customer-service assistant about an order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use shopmind_config::Config;
use shopmind_datasets::MovieLens;
use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::Shutdown;
use shopmind_runtime::topology;
use tonic::transport::Channel;

use crate::common::{connect_gateway, counter_bar, holdout_line};

const TENANT: &str = "demo";
const BATCH: usize = 1000;

pub async fn run(config: Config, data: Option<PathBuf>, users: usize) -> anyhow::Result<()> {
    let dir = match data.or_else(shopmind_datasets::default_ml100k_dir) {
        Some(d) => d,
        None => bail!(
            "MovieLens-100k not found in .cache/data/ml-100k: run scripts/setup.sh (or pass --data DIR)"
        ),
    };
    let ml = MovieLens::load(&dir)?;
    let titles: HashMap<String, String> = ml
        .movies
        .values()
        .map(|m| {
            (
                MovieLens::item_id(m.id),
                format!("{} ({})", m.title, m.year.map_or("?".into(), |y| y.to_string())),
            )
        })
        .collect();

    let shutdown = Shutdown::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = crate::all_in_one::AllInOne::start(config.clone(), listener, shutdown.clone(), false).await?;
    let backends = app.backends.clone();
    let endpoint = format!("http://{}", app.addr);
    let waiter = tokio::spawn(app.wait());
    println!(
        "shopmind all-in-one: gRPC on {endpoint}, bus: {}, store: {}",
        backends.bus.kind(),
        backends.store.kind()
    );
    let mut client = GatewayClient::new(connect_gateway(&endpoint).await?);

    // 1. Events in, through the gateway.
    let events = ml.events(TENANT);
    println!(
        "\nLoading MovieLens-100k from {}: {} movies, {} ratings -> {} events",
        dir.display(),
        ml.movies.len(),
        ml.ratings.len(),
        events.len()
    );
    let bar = counter_bar(events.len() as u64, "publishing");
    let started = Instant::now();
    let mut accepted = 0u64;
    for chunk in events.chunks(BATCH) {
        let r = client
            .publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events: chunk.to_vec() })
            .await
            .context("PublishEvents")?
            .into_inner();
        accepted += u64::from(r.accepted + r.duplicates);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let publish_s = started.elapsed().as_secs_f64();

    let bar = counter_bar(events.len() as u64, "applying features");
    loop {
        let lag = backends.bus.consumer_lag(topology::EVENTS_STREAM, shopmind_feature::DURABLE).await?;
        bar.set_position(events.len() as u64 - (lag.pending + lag.ack_pending).min(events.len() as u64));
        if lag.is_caught_up() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bar.finish_and_clear();
    println!(
        "  {accepted} events accepted in {publish_s:.1} s ({:.0} events/s through gRPC), all applied after {:.1} s",
        accepted as f64 / publish_s,
        started.elapsed().as_secs_f64()
    );

    // 2. Train from the event history.
    match config.trainer.recommender {
        shopmind_config::RecommenderFamily::Embedding => println!(
            "\nTraining the embedding recommender ({} epochs) from the event history...",
            config.trainer.embedding_epochs
        ),
        shopmind_config::RecommenderFamily::Covisit => {
            println!("\nTraining the co-visitation recommender from the event history...")
        }
    }
    let bar = counter_bar(0, "training: reading events");
    let progress = |read: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(read);
    };
    let t = Instant::now();
    let trained =
        shopmind_trainer::Trainer::new().round(&config, &*backends.bus, &*backends.models, &progress).await?;
    bar.finish_and_clear();
    println!(
        "\nTrained in {:.1} s (ONNX, in the {} model registry):",
        t.elapsed().as_secs_f64(),
        backends.models.kind()
    );
    for m in &trained {
        let what = match m.model.as_str() {
            shopmind_registry::RECOMMENDER => {
                format!("{} items, {} users, {} interactions", m.items, m.users, m.interactions)
            }
            shopmind_registry::INTENT => format!("{} sessions of {} users", m.interactions, m.users),
            _ => format!("{} items' daily demand", m.items),
        };
        println!("  {} {}: {what}{}", m.model, m.version, if m.promoted { ", active" } else { "" });
        if let Some(line) = holdout_line(&m.metrics) {
            println!("    {line}");
        }
    }
    let version = wait_for_model(&mut client, &MovieLens::user_id(1)).await?;
    println!("Inference now serves model {version}");

    // 3. Recommendations for the most active users.
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for r in &ml.ratings {
        *counts.entry(r.user).or_default() += 1;
    }
    let mut active: Vec<(u32, usize)> = counts.into_iter().collect();
    active.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let name = |id: &str| titles.get(id).cloned().unwrap_or_else(|| id.to_string());
    for &(user, n) in active.iter().take(users) {
        let recent: Vec<&str> = ml
            .ratings
            .iter()
            .rev()
            .filter(|r| r.user == user)
            .take(5)
            .map(|r| r.item)
            .map(|i| titles.get(&MovieLens::item_id(i)).map_or("?", String::as_str))
            .collect();
        println!("\nuser-{user} ({n} ratings); most recently watched:");
        for t in recent {
            println!("    {t}");
        }
        let (recs, ms) = recommend(&mut client, &MovieLens::user_id(user), 5).await?;
        println!("  recommended ({ms:.1} ms):");
        for item in &recs.items {
            println!("    {:<50} score {:>7.3}  {}", name(&item.item_id), item.score, item.reason);
        }
    }

    // 4. One new event changes the next answer.
    // A user with a short history, where one event weighs most.
    let light = active.iter().rev().find(|a| a.1 >= 20).map_or(1, |a| a.0);
    let user = MovieLens::user_id(light);
    let (before, _) = recommend(&mut client, &user, 5).await?;
    let pick = "movie-50"; // Star Wars (1977)
    let view = pb::Event {
        event_id: format!("demo-live-{}", UnixMillis::now().0),
        tenant: TENANT.into(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: user.clone(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::AddedToCart(pb::AddedToCart {
            item_id: pick.into(),
            quantity: 1,
            unit_price: None,
        })),
    };
    let sent = Instant::now();
    client.publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events: vec![view] }).await?;
    let mut after;
    loop {
        after = recommend(&mut client, &user, 5).await?.0;
        if after.items != before.items || sent.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "\nReal time: {user} puts {} in the cart; {:.1} ms later the recommendations are:",
        name(pick),
        sent.elapsed().as_secs_f64() * 1000.0
    );
    for item in &after.items {
        println!("    {:<50} score {:>7.3}  {}", name(&item.item_id), item.score, item.reason);
    }

    assistant(&mut client, &user).await?;

    shutdown.trigger();
    waiter.await.context("all-in-one task")??;
    Ok(())
}

/// 5. The customer-service assistant: the user's order ships, then a short conversation.
async fn assistant(client: &mut GatewayClient<Channel>, user: &str) -> anyhow::Result<()> {
    let now = UnixMillis::now().0;
    let order = format!("D{}", now % 100_000);
    let event = |id: &str, at: i64, payload| pb::Event {
        event_id: format!("demo-{id}-{order}"),
        tenant: TENANT.into(),
        occurred_at: Some(UnixMillis(at).to_proto()),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(payload),
    };
    let placed = pb::event::Payload::OrderPlaced(pb::OrderPlaced {
        order_id: order.clone(),
        lines: vec![pb::OrderLine { item_id: "movie-50".into(), quantity: 1, unit_price: None }],
    });
    let shipped = pb::event::Payload::OrderStatusChanged(pb::OrderStatusChanged {
        order_id: order.clone(),
        status: pb::OrderStatus::Shipped as i32,
    });
    let events =
        vec![event("placed", now - 2 * 86_400_000, placed), event("shipped", now - 86_400_000, shipped)];
    client.publish_events(pb::PublishEventsRequest { tenant: TENANT.into(), events }).await?;
    let ask = |conversation: &str, text: &str| pb::AssistRequest {
        tenant: TENANT.into(),
        conversation_id: conversation.into(),
        user_id: user.into(),
        text: text.into(),
    };
    // The assistant loads in the background; the order needs to reach the features.
    let started = Instant::now();
    loop {
        match client.assist(ask("demo-probe", &format!("where is my order {order}?"))).await {
            Ok(r) if r.get_ref().actions.iter().any(|a| a.kind == "order_status") => break,
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::Unavailable => {}
            Err(s) => {
                println!("\nThe assistant is not available: {}", s.message());
                return Ok(());
            }
        }
        if started.elapsed() > Duration::from_secs(180) {
            println!("\nThe assistant did not get ready (see the inference log); skipping it.");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("\nThe assistant ({user}'s order {order} shipped yesterday):");
    let conversation = format!("demo-{order}");
    let first = format!("where is my order {order}?");
    for text in [
        "hi!",
        first.as_str(),
        "and when will it arrive?",
        "can I still cancel it?",
        "how much does shipping cost?",
        "I'd like to talk to a person please",
    ] {
        let t0 = Instant::now();
        let r = client.assist(ask(&conversation, text)).await?.into_inner();
        let cited: Vec<String> = r.citations.iter().map(|c| format!("{}:{}", c.source, c.id)).collect();
        println!("  customer: {text}");
        println!(
            "  assistant [{} {:.2}, {:.0} ms{}]: {}",
            r.intent,
            r.confidence,
            t0.elapsed().as_secs_f64() * 1000.0,
            if r.escalated { ", escalated" } else { "" },
            r.answer
        );
        if !cited.is_empty() {
            println!("    sources: {}", cited.join(", "));
        }
    }
    Ok(())
}

async fn recommend(
    client: &mut GatewayClient<Channel>,
    user: &str,
    limit: u32,
) -> anyhow::Result<(pb::RecommendResponse, f64)> {
    let t = Instant::now();
    let r = client
        .recommend(pb::RecommendRequest {
            tenant: TENANT.into(),
            user_id: user.into(),
            limit,
            exclude_seen: true,
            ..Default::default()
        })
        .await
        .context("Recommend")?
        .into_inner();
    Ok((r, t.elapsed().as_secs_f64() * 1000.0))
}

async fn wait_for_model(client: &mut GatewayClient<Channel>, user: &str) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (r, _) = recommend(client, user, 1).await?;
        if !r.model_version.is_empty() {
            return Ok(r.model_version);
        }
        if Instant::now() > deadline {
            bail!("inference did not load the trained model within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
