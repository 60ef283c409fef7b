//! A rolling restart of the feature service under load loses nothing and counts nothing twice:
//! each old instance gets SIGTERM after its successor is up, finishes what it holds, and exits 0.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_domain::{ItemId, TenantId, UnixMillis};
use shopmind_features::read_item_features;
use shopmind_proto::v1 as pb;
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};

const EVENTS: usize = 3000;
const ITEMS: usize = 20;

fn feature(nats: &NatsServer, redis: &RedisServer, log: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .arg("feature")
        .env("SHOPMIND__NATS__URL", nats.url())
        .env("SHOPMIND__REDIS__URL", redis.url())
        // Old and new instances overlap: no metrics endpoint, whose address they would share.
        .env("SHOPMIND__METRICS__LISTEN", "")
        // Messages a stopped instance had pulled but not taken come back after this.
        .env("SHOPMIND__FEATURE__ACK_WAIT_S", "2")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit status (within the service's grace period and some margin).
fn terminate(mut child: Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success(), "kill -TERM failed");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the feature service did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn view(n: usize) -> pb::Event {
    pb::Event {
        event_id: format!("load-{n}"),
        tenant: "acme".into(),
        occurred_at: Some(UnixMillis(1_767_225_600_000 + n as i64).to_proto()),
        user_id: format!("user-{}", n % 97),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: format!("item-{}", n % ITEMS),
            source: String::new(),
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_and_doubles_nothing() {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "load").await.unwrap());
    shopmind_runtime::connect::ensure_streams(&*bus, &shopmind_config::Config::default()).await.unwrap();

    let mut current = feature(&nats, &redis, &dir.path().join("feature-0.log"));
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 0..EVENTS {
                let e = view(n);
                let subject = "sm.events.acme.product_viewed".to_string();
                let msg_id = format!("acme:{}", e.event_id);
                bus.publish(Message::new(subject, Bytes::from(e.encode_to_vec())), Some(&msg_id))
                    .await
                    .unwrap();
                if n % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            }
        })
    };
    // Three restarts while events flow: the successor starts, then the old one is stopped.
    for round in 1..=3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let next = feature(&nats, &redis, &dir.path().join(format!("feature-{round}.log")));
        tokio::time::sleep(Duration::from_millis(150)).await;
        let status = terminate(current);
        assert!(status.success(), "instance {} exited with {status}", round - 1);
        current = next;
    }
    publisher.await.unwrap();

    eventually(Duration::from_secs(60), "the last instance applied everything", || {
        let bus = bus.clone();
        async move { bus.consumer_lag("SM_EVENTS", "feature").await.ok().filter(|l| l.is_caught_up()) }
    })
    .await;
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let mut views = BTreeMap::new();
    for i in 0..ITEMS {
        let item = ItemId::parse(format!("item-{i}")).unwrap();
        let f = read_item_features(&store as &dyn FeatureStore, &tenant, &item, 0, UnixMillis::now())
            .await
            .unwrap();
        views.insert(i, f.views);
    }
    let total: i64 = views.values().sum();
    assert_eq!(total, EVENTS as i64, "every event counted exactly once: {views:?}");
    for (i, v) in views {
        assert_eq!(v, (EVENTS / ITEMS) as i64, "item-{i}");
    }
    assert!(terminate(current).success());
}
