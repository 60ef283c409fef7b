//! Exactly-once effects under crashes and replicas, on a real nats-server and redis-server.
//!
//! - A consumer that dies after storing an event's effect but before acking it, or before
//!   storing it, leaves counts exact once another instance takes over.
//! - Three replicas sharing the consumer, applying events concurrently and in any order, reach
//!   exactly the features one replica reaches on the same events.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{Event, ItemId, TenantId, UnixMillis, UserId, ValidationPolicy};
use shopmind_features::{
    FeatureSettings, ItemFeatures, UserFeatures, read_item_features, read_user_features,
};
use shopmind_runtime::topology::{self, EVENTS_STREAM};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, Read, RedisStore, Result as StoreResult, Value, WriteBatch, Written};
use shopmind_testkit::{NatsServer, RedisServer, eventually};

const WAIT: Duration = Duration::from_secs(30);

/// Where a simulated crash happens while applying one event.
#[derive(Clone, Copy, PartialEq)]
enum CrashPoint {
    /// The effect is stored, then the process dies before acking.
    AfterStore,
    /// The process dies before storing the effect (and so before acking).
    BeforeStore,
}

/// A store that "crashes" (never returns) at one point for one event, identified by its guard.
struct CrashingStore {
    inner: Arc<dyn FeatureStore>,
    guard_key: String,
    point: CrashPoint,
    crashed: Mutex<bool>,
}

#[async_trait::async_trait]
impl FeatureStore for CrashingStore {
    async fn write(&self, batch: WriteBatch) -> StoreResult<Written> {
        let hit = batch.guard.as_ref().is_some_and(|g| g.key.0 == self.guard_key);
        if hit && self.point == CrashPoint::BeforeStore {
            *self.crashed.lock().unwrap() = true;
            std::future::pending::<()>().await;
        }
        let written = self.inner.write(batch).await?;
        if hit && self.point == CrashPoint::AfterStore {
            *self.crashed.lock().unwrap() = true;
            std::future::pending::<()>().await;
        }
        Ok(written)
    }
    /// The feature service's path: one round trip for a batch of events, crashing before or
    /// after it when the batch carries the event.
    async fn write_all(&self, batches: Vec<WriteBatch>) -> StoreResult<Vec<StoreResult<Written>>> {
        let hit = batches.iter().any(|b| b.guard.as_ref().is_some_and(|g| g.key.0 == self.guard_key));
        if hit && self.point == CrashPoint::BeforeStore {
            *self.crashed.lock().unwrap() = true;
            std::future::pending::<()>().await;
        }
        let written = self.inner.write_all(batches).await?;
        if hit && self.point == CrashPoint::AfterStore {
            *self.crashed.lock().unwrap() = true;
            std::future::pending::<()>().await;
        }
        Ok(written)
    }
    async fn read(&self, reads: Vec<Read>) -> StoreResult<Vec<Value>> {
        self.inner.read(reads).await
    }
    async fn put_if_absent(
        &self,
        key: &shopmind_store::Key,
        value: Bytes,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.inner.put_if_absent(key, value, ttl).await
    }
    async fn ttl(&self, key: &shopmind_store::Key) -> StoreResult<Option<Duration>> {
        self.inner.ttl(key).await
    }
    async fn scan(&self, pattern: &str) -> shopmind_store::Result<Vec<shopmind_store::Key>> {
        self.inner.scan(pattern).await
    }

    fn kind(&self) -> &'static str {
        "crashing"
    }
}

fn view(id: &str, user: &str, item: &str, at: i64) -> shopmind_proto::v1::Event {
    shopmind_proto::v1::Event {
        event_id: id.into(),
        tenant: "acme".into(),
        occurred_at: Some(UnixMillis(at).to_proto()),
        user_id: user.into(),
        session_id: String::new(),
        payload: Some(shopmind_proto::v1::event::Payload::ProductViewed(shopmind_proto::v1::ProductViewed {
            item_id: item.into(),
            source: String::new(),
        })),
    }
}

async fn publish(bus: &dyn Bus, wire: &shopmind_proto::v1::Event) {
    let event = Event::from_proto(wire, None, &ValidationPolicy::stored()).unwrap();
    let subject = topology::event_subject(&event.tenant, event.kind());
    let msg_id = format!("{}:{}", event.tenant, event.id);
    bus.publish(Message::new(subject, Bytes::from(event.to_proto().encode_to_vec())), Some(&msg_id))
        .await
        .unwrap();
}

fn quick_config() -> Config {
    let mut config = Config::default();
    config.feature.ack_wait_s = 1;
    config
}

async fn caught_up(bus: &Arc<dyn Bus>) {
    eventually(WAIT, "the feature consumer caught up", || async {
        bus.consumer_lag(EVENTS_STREAM, shopmind_feature::DURABLE).await.ok().filter(|l| l.is_caught_up())
    })
    .await;
}

async fn crash_and_recover(point: CrashPoint) {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "crash-test").await.unwrap());
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let config = quick_config();
    connect::ensure_streams(&*bus, &config).await.unwrap();

    let crashing = Arc::new(CrashingStore {
        inner: store.clone(),
        guard_key: shopmind_features::keys::applied(&TenantId::parse("acme").unwrap(), "e2").0,
        point,
        crashed: Mutex::new(false),
    });
    let first =
        tokio::spawn(shopmind_feature::run(config.clone(), bus.clone(), crashing.clone(), Shutdown::new()));
    let t0 = 1_767_225_600_000;
    for (n, id) in ["e1", "e2", "e3"].iter().enumerate() {
        publish(&*bus, &view(id, "alice", "sku-1", t0 + n as i64 * 1000)).await;
    }
    eventually(WAIT, "the first instance reached the crash point", || async {
        (*crashing.crashed.lock().unwrap()).then_some(())
    })
    .await;
    first.abort(); // the process dies: nothing it held is acked
    let _ = first.await;

    let shutdown = Shutdown::new();
    let second = tokio::spawn(shopmind_feature::run(config, bus.clone(), store.clone(), shutdown.clone()));
    caught_up(&bus).await;
    let now = UnixMillis(t0 + 10_000);
    let t = TenantId::parse("acme").unwrap();
    let alice =
        read_user_features(&*store, &t, &UserId::parse("alice").unwrap(), &FeatureSettings::default(), now)
            .await
            .unwrap();
    assert_eq!(alice.counts.get("product_viewed"), Some(&3), "each view counted exactly once");
    let item = read_item_features(&*store, &t, &ItemId::parse("sku-1").unwrap(), 10, now).await.unwrap();
    assert_eq!(item.views, 3);
    shutdown.trigger();
    second.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_crash_after_storing_the_effect_but_before_the_ack_counts_once() {
    crash_and_recover(CrashPoint::AfterStore).await;
}

#[tokio::test]
async fn a_crash_before_storing_the_effect_counts_once() {
    crash_and_recover(CrashPoint::BeforeStore).await;
}

type Snapshot = (Vec<UserFeatures>, Vec<ItemFeatures>);

/// Applies `events` with `replicas` feature instances; returns every user's and item's features.
async fn run_replicas(replicas: usize, events: &[shopmind_proto::v1::Event]) -> Snapshot {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "publisher").await.unwrap());
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let config = quick_config();
    connect::ensure_streams(&*bus, &config).await.unwrap();
    let shutdown = Shutdown::new();
    let mut tasks = Vec::new();
    for r in 0..replicas {
        // Each replica has its own connections, as separate processes would.
        let bus: Arc<dyn Bus> =
            Arc::new(NatsBus::connect(&nats.url(), &format!("replica-{r}")).await.unwrap());
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
        tasks.push(tokio::spawn(shopmind_feature::run(config.clone(), bus, store, shutdown.clone())));
    }
    // The catalog first (category affinity reads an item's category when a view is applied),
    // then everything else, applied concurrently by the replicas.
    let is_catalog = |e: &&shopmind_proto::v1::Event| {
        matches!(e.payload, Some(shopmind_proto::v1::event::Payload::ItemUpserted(_)))
    };
    for e in events.iter().filter(is_catalog) {
        publish(&*bus, e).await;
    }
    caught_up(&bus).await;
    for e in events.iter().filter(|e| !is_catalog(e)) {
        publish(&*bus, e).await;
    }
    caught_up(&bus).await;
    shutdown.trigger();
    for t in tasks {
        t.await.unwrap().unwrap();
    }

    let tenant = TenantId::parse(&events[0].tenant).unwrap();
    let now = UnixMillis(1_800_000_000_000);
    let users: BTreeSet<&str> = events.iter().map(|e| e.user_id.as_str()).filter(|u| !u.is_empty()).collect();
    let items: BTreeSet<String> = events
        .iter()
        .filter_map(|e| Event::from_proto(e, None, &ValidationPolicy::stored()).ok())
        .flat_map(|e| e.interactions().into_iter().map(|i| i.item.to_string()))
        .collect();
    let mut snapshot = (Vec::new(), Vec::new());
    for u in users {
        let u = UserId::parse(u).unwrap();
        snapshot
            .0
            .push(read_user_features(&*store, &tenant, &u, &FeatureSettings::default(), now).await.unwrap());
    }
    for i in items {
        let i = ItemId::parse(i).unwrap();
        snapshot.1.push(read_item_features(&*store, &tenant, &i, 50, now).await.unwrap());
    }
    snapshot
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

#[tokio::test]
async fn three_replicas_reach_the_features_of_one() {
    let sim = shopmind_simulator::Simulator::new(shopmind_simulator::SimConfig {
        seed: 3,
        tenant: "acme".into(),
        users: 120,
        items: 40,
        days: 7,
        ..shopmind_simulator::SimConfig::default()
    })
    .unwrap();
    let events: Vec<_> = sim.collect();
    assert!(events.len() > 1000, "{} events", events.len());
    let one = run_replicas(1, &events).await;
    let three = run_replicas(3, &events).await;
    assert_eq!(one.0.len(), three.0.len());
    for (a, b) in one.0.iter().zip(&three.0) {
        let strip = |u: &UserFeatures| UserFeatures { affinity: Vec::new(), ..u.clone() };
        assert_eq!(strip(a), strip(b));
        for ((ca, sa), (cb, sb)) in a.affinity.iter().zip(&b.affinity) {
            assert!(ca == cb && close(*sa, *sb), "{ca} {sa} vs {cb} {sb}");
        }
    }
    for (a, b) in one.1.iter().zip(&three.1) {
        let strip = |i: &ItemFeatures| ItemFeatures { popularity: Vec::new(), ..i.clone() };
        assert_eq!(strip(a), strip(b));
        for ((na, sa), (nb, sb)) in a.popularity.iter().zip(&b.popularity) {
            assert!(na == nb && close(*sa, *sb), "{na}: {sa} vs {sb}");
        }
    }
    let viewed: i64 = one.1.iter().map(|i| i.views).sum();
    assert!(viewed > 500, "the comparison covers real activity ({viewed} views)");
}
