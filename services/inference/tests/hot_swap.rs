//! Model versions change under live traffic: on a real nats-server (request-reply, the registry's
//! object store and key-value buckets) and redis-server, with ONNX Runtime, the inference service
//! answers several concurrent clients while an operator promotes v2, rolls back to v1, and
//! promotes a corrupt artifact. No request fails, every answer is the one of the version it names,
//! and the answers follow the promoted version; the corrupt one never serves.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{EventId, InteractionKind, ItemId, Payload, SessionId, TenantId, UnixMillis, UserId};
use shopmind_features::{FeatureSettings, apply_event};
use shopmind_proto::v1 as pb;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version, VersionInfo};
use shopmind_runtime::{Shutdown, topology};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use shopmind_training::covisit::{CovisitConfig, TrainingInteraction, train};

const TENANT: &str = "swap-shop";
const WAIT: Duration = Duration::from_secs(60);
const CLIENTS: usize = 6;

/// A model in which `x` was seen together with `partners` (and nothing else).
fn model(version: &str, partners: &[&str]) -> (VersionInfo, Bytes) {
    let mut interactions = Vec::new();
    for (u, p) in partners.iter().enumerate() {
        for (k, item) in ["x", p].iter().enumerate() {
            interactions.push(TrainingInteraction {
                user: format!("trainer-user-{u}"),
                item: (*item).to_string(),
                kind: InteractionKind::View,
                at_ms: (u * 10 + k) as i64,
            });
        }
    }
    let m = train(interactions, &CovisitConfig { max_items: 100, window: 10, shrinkage: 0 });
    let manifest = m.manifest("recommender", version, TENANT, 1_000);
    let bytes = Bytes::from(m.to_onnx(&manifest));
    let info = VersionInfo {
        key: key(),
        version: Version::parse(version).unwrap(),
        kind: manifest.kind.clone(),
        created_at_ms: manifest.created_at_ms,
        items: manifest.items.len() as u64,
        users: manifest.stats.users,
        interactions: manifest.stats.interactions,
        size: 0,
    };
    (info, bytes)
}

fn key() -> ModelKey {
    ModelKey::parse(TENANT, "recommender").unwrap()
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// The answer a version gives the shopper, whose history is one view of `x`.
fn expected(version: &str) -> Vec<&'static str> {
    match version {
        "v1" => vec!["a1", "a2", "a3"],
        "v2" => vec!["b1", "b2", "b3"],
        other => panic!("served by an unexpected version {other:?}"),
    }
}

async fn recommend(bus: &dyn Bus) -> Result<pb::RecommendResponse, String> {
    let tenant = TenantId::parse(TENANT).unwrap();
    let request = pb::RecommendRequest {
        tenant: TENANT.into(),
        user_id: "shopper".into(),
        limit: 3,
        ..Default::default()
    };
    let reply = bus
        .request(
            Message::new(topology::rpc_subject(&tenant, "inference", "recommend"), request.encode_to_vec()),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
    match pb::RecommendReply::decode(reply.payload.as_ref()).map_err(|e| e.to_string())?.result {
        Some(pb::recommend_reply::Result::Ok(ok)) => Ok(ok),
        other => Err(format!("{other:?}")),
    }
}

fn sorted_items(r: &pb::RecommendResponse) -> Vec<String> {
    let mut items: Vec<String> = r.items.iter().map(|i| i.item_id.clone()).collect();
    items.sort();
    items
}

/// Waits until the service answers with `version` (and that version's items).
async fn served(bus: &NatsBus, version: &'static str) {
    eventually(WAIT, &format!("inference serves {version}"), || async move {
        let r = recommend(bus).await.ok()?;
        (r.model_version == version && sorted_items(&r) == expected(version)).then_some(())
    })
    .await;
}

/// `shopmind_model_loads_total{model="recommender",result="error"}` of this process.
fn failed_loads() -> u64 {
    let text = shopmind_metrics::global().encode().unwrap();
    text.lines()
        .find(|l| l.starts_with(r#"shopmind_model_loads_total{model="recommender",result="error"}"#))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: Vec<String>,
    versions: std::collections::BTreeSet<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_swap_under_live_traffic_without_a_failed_request() {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus = NatsBus::connect(&nats.url(), "hot-swap-test").await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let registry: Arc<dyn ModelStore> = Arc::new(NatsModelStore::open(bus.client().clone()).await.unwrap());

    // The shopper viewed x.
    let tenant = TenantId::parse(TENANT).unwrap();
    let event = shopmind_domain::Event {
        id: EventId::parse("view-x").unwrap(),
        tenant: tenant.clone(),
        occurred_at: UnixMillis::now(),
        user: Some(UserId::parse("shopper").unwrap()),
        session: Some(SessionId::parse("s1").unwrap()),
        payload: Payload::ProductViewed { item: ItemId::parse("x").unwrap() },
    };
    apply_event(&*store, &event, &FeatureSettings::default()).await.unwrap();

    // Two versions in the registry; v1 is active before inference starts.
    for (version, partners) in [("v1", ["a1", "a2", "a3"]), ("v2", ["b1", "b2", "b3"])] {
        let (info, bytes) = model(version, &partners);
        registry.put(info, bytes).await.unwrap();
    }
    registry.promote(&key(), &v("v1")).await.unwrap();

    let mut config = Config::default();
    config.nats.url = nats.url();
    let shutdown = Shutdown::new();
    let service = tokio::spawn(shopmind_inference::run(
        config,
        Arc::new(bus.clone()),
        store.clone(),
        registry.clone(),
        shutdown.clone(),
    ));
    served(&bus, "v1").await;

    // Clients send requests back to back until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (bus, stop) = (bus.clone(), stop.clone());
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    match recommend(&bus).await {
                        Ok(r) if sorted_items(&r) == expected(&r.model_version) => {
                            tally.ok += 1;
                            tally.versions.insert(r.model_version);
                        }
                        Ok(r) => {
                            tally.failed.push(format!("{} answered {:?}", r.model_version, sorted_items(&r)))
                        }
                        Err(e) => tally.failed.push(e),
                    }
                }
                tally
            })
        })
        .collect();

    // v2 is promoted, then rolled back, while the clients run.
    registry.promote(&key(), &v("v2")).await.unwrap();
    served(&bus, "v2").await;
    let back = registry.rollback(&key()).await.unwrap();
    assert_eq!(back.version, v("v1"));
    served(&bus, "v1").await;

    // A corrupt artifact is promoted: it fails to load, and v1 keeps serving.
    let failed_before = failed_loads();
    let mut corrupt = model("v3", &["c1", "c2", "c3"]).0;
    corrupt.version = v("v3-corrupt");
    registry.put(corrupt, Bytes::from_static(b"\x08\x07 this is not an ONNX model")).await.unwrap();
    registry.promote(&key(), &v("v3-corrupt")).await.unwrap();
    eventually(WAIT, "the corrupt version's load fails", || async {
        (failed_loads() > failed_before).then_some(())
    })
    .await;
    for _ in 0..20 {
        let r = recommend(&bus).await.unwrap();
        assert_eq!(
            (r.model_version.as_str(), sorted_items(&r)),
            ("v1", vec!["a1".into(), "a2".into(), "a3".into()])
        );
    }

    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for c in clients {
        let t = c.await.unwrap();
        total.ok += t.ok;
        total.failed.extend(t.failed);
        total.versions.extend(t.versions);
    }
    assert!(
        total.failed.is_empty(),
        "{} of {} requests failed: {:?}",
        total.failed.len(),
        total.ok,
        &total.failed[..total.failed.len().min(5)]
    );
    assert!(total.ok >= CLIENTS as u64, "the clients ran: {} answers", total.ok);
    assert_eq!(
        total.versions.into_iter().collect::<Vec<_>>(),
        ["v1", "v2"],
        "the clients saw both versions, and never the corrupt one"
    );

    shutdown.trigger();
    tokio::time::timeout(WAIT, service).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn inference_starts_before_any_model_and_serves_the_first_one_promoted() {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus = NatsBus::connect(&nats.url(), "first-model-test").await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    // Inference opens the registry before anything else exists (it creates the buckets).
    let registry: Arc<dyn ModelStore> = Arc::new(NatsModelStore::open(bus.client().clone()).await.unwrap());
    let tenant = TenantId::parse(TENANT).unwrap();
    for (i, item) in ["x", "p1", "p2"].iter().enumerate() {
        let event = shopmind_domain::Event {
            id: EventId::parse(format!("view-{i}")).unwrap(),
            tenant: tenant.clone(),
            occurred_at: UnixMillis(UnixMillis::now().0 - 1000 + i as i64),
            user: Some(UserId::parse(if *item == "x" { "shopper" } else { "other" }).unwrap()),
            session: None,
            payload: Payload::ProductViewed { item: ItemId::parse(*item).unwrap() },
        };
        apply_event(&*store, &event, &FeatureSettings::default()).await.unwrap();
    }
    let mut config = Config::default();
    config.nats.url = nats.url();
    let shutdown = Shutdown::new();
    let service = tokio::spawn(shopmind_inference::run(
        config,
        Arc::new(bus.clone()),
        store,
        registry.clone(),
        shutdown.clone(),
    ));

    // No model: popular items, no version.
    let first = eventually(WAIT, "inference answers", || async { recommend(&bus).await.ok() }).await;
    assert_eq!(first.model_version, "");
    assert!(!first.items.is_empty() && first.items.iter().all(|i| i.reason == "popular"), "{first:?}");

    // A version that is only put does not serve; once promoted, it does.
    let (info, bytes) = model("v1", &["a1", "a2", "a3"]);
    registry.put(info, bytes).await.unwrap();
    assert_eq!(recommend(&bus).await.unwrap().model_version, "");
    registry.promote(&key(), &v("v1")).await.unwrap();
    served(&bus, "v1").await;

    shutdown.trigger();
    tokio::time::timeout(WAIT, service).await.unwrap().unwrap().unwrap();
}
