//! One conformance suite for both registries: every case runs against the in-process one and
//! against a real nats-server (object store and key-value buckets, started per test).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use shopmind_domain::TenantId;
use shopmind_registry::{
    ActiveChange, ChangeStream, MAX_PREVIOUS, ModelKey, ModelStore, RegistryError, Version, VersionInfo,
    prune,
};

const WAIT: Duration = Duration::from_secs(10);

fn key(tenant: &str, model: &str) -> ModelKey {
    ModelKey::parse(tenant, model).unwrap()
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn info(key: &ModelKey, version: &str, created_at_ms: i64) -> VersionInfo {
    VersionInfo {
        key: key.clone(),
        version: v(version),
        kind: "covisit".into(),
        created_at_ms,
        items: 7,
        users: 3,
        interactions: 21,
        size: 0,
    }
}

/// Bytes that differ per version; `len` large enough to span several object store chunks.
fn artifact(version: &str, len: usize) -> Bytes {
    let seed = version.bytes().fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    Bytes::from((0..len).map(|i| seed.wrapping_add((i % 251) as u8)).collect::<Vec<u8>>())
}

async fn put(store: &dyn ModelStore, key: &ModelKey, version: &str, created_at_ms: i64) -> VersionInfo {
    store.put(info(key, version, created_at_ms), artifact(version, 1000)).await.unwrap()
}

async fn next_change(changes: &mut ChangeStream) -> ActiveChange {
    tokio::time::timeout(WAIT, changes.next()).await.expect("a change in time").unwrap().unwrap()
}

fn versions_of(active: &shopmind_registry::Active) -> (String, Vec<String>) {
    (active.version.to_string(), active.previous.iter().map(ToString::to_string).collect())
}

pub async fn put_get_and_list_versions(store: Arc<dyn ModelStore>) {
    let acme = key("acme", "recommender");
    let other = key("other", "recommender");
    // 300 kB: more than two 128 kB chunks of the object store.
    let big = artifact("v1", 300_000);
    let stored = store.put(info(&acme, "v1", 1_000), big.clone()).await.unwrap();
    assert_eq!(stored.size, 300_000);
    put(&*store, &acme, "v2", 2_000).await;
    put(&*store, &other, "v1", 1_500).await;
    let intent = key("acme", "intent");
    put(&*store, &intent, "i1", 500).await;

    assert_eq!(store.get(&acme, &v("v1")).await.unwrap(), big);
    assert_eq!(store.get(&acme, &v("v2")).await.unwrap(), artifact("v2", 1000));
    assert_eq!(store.get(&other, &v("v1")).await.unwrap(), artifact("v1", 1000), "tenants are apart");
    assert_eq!(store.info(&acme, &v("v1")).await.unwrap(), Some(stored));

    let all = store.versions(None).await.unwrap();
    let names: Vec<String> =
        all.iter().map(|i| format!("{}/{}/{}", i.key.tenant, i.key.model, i.version)).collect();
    assert_eq!(
        names,
        ["acme/intent/i1", "acme/recommender/v1", "acme/recommender/v2", "other/recommender/v1"]
    );
    let acme_only = store.versions(Some(&TenantId::parse("acme").unwrap())).await.unwrap();
    assert_eq!(acme_only.len(), 3);
    assert!(acme_only.iter().all(|i| i.key.tenant.as_str() == "acme"));
    let listed = &all[1];
    assert_eq!(
        (listed.kind.as_str(), listed.created_at_ms, listed.items, listed.users),
        ("covisit", 1_000, 7, 3)
    );
    assert_eq!((listed.interactions, listed.size), (21, 300_000));
    assert!(store.versions(Some(&TenantId::parse("nobody").unwrap())).await.unwrap().is_empty());
}

pub async fn versions_are_immutable_and_unknown_ones_are_errors(store: Arc<dyn ModelStore>) {
    let acme = key("acme", "recommender");
    put(&*store, &acme, "v1", 1).await;
    let again = store.put(info(&acme, "v1", 2), artifact("other", 10)).await.unwrap_err();
    assert!(matches!(again, RegistryError::VersionExists { .. }), "{again:?}");
    assert_eq!(store.get(&acme, &v("v1")).await.unwrap(), artifact("v1", 1000), "the first one stays");

    let missing = store.get(&acme, &v("v9")).await.unwrap_err();
    assert!(matches!(missing, RegistryError::UnknownVersion { .. }), "{missing:?}");
    assert_eq!(store.info(&acme, &v("v9")).await.unwrap(), None);
    let promote = store.promote(&acme, &v("v9")).await.unwrap_err();
    assert!(matches!(promote, RegistryError::UnknownVersion { .. }), "{promote:?}");
    assert!(promote.to_string().contains("v9"), "{promote}");
    // The same version of another tenant is another version.
    let other = store.promote(&key("other", "recommender"), &v("v1")).await.unwrap_err();
    assert!(matches!(other, RegistryError::UnknownVersion { .. }), "{other:?}");
    assert_eq!(store.active(&acme).await.unwrap(), None);
}

pub async fn promote_and_rollback_walk_the_history(store: Arc<dyn ModelStore>) {
    let k = key("acme", "recommender");
    for (i, name) in ["v1", "v2", "v3"].iter().enumerate() {
        put(&*store, &k, name, i as i64).await;
    }
    let nothing = store.rollback(&k).await.unwrap_err();
    assert!(matches!(nothing, RegistryError::NothingActive { .. }), "{nothing:?}");

    let a = store.promote(&k, &v("v1")).await.unwrap();
    assert_eq!(versions_of(&a), ("v1".into(), vec![]));
    let none_before = store.rollback(&k).await.unwrap_err();
    assert!(matches!(none_before, RegistryError::NoPrevious { .. }), "{none_before:?}");

    assert_eq!(versions_of(&store.promote(&k, &v("v2")).await.unwrap()), ("v2".into(), vec!["v1".into()]));
    // Promoting the active version changes nothing.
    assert_eq!(versions_of(&store.promote(&k, &v("v2")).await.unwrap()), ("v2".into(), vec!["v1".into()]));
    assert_eq!(
        versions_of(&store.promote(&k, &v("v3")).await.unwrap()),
        ("v3".into(), vec!["v2".into(), "v1".into()])
    );
    assert_eq!(
        versions_of(&store.active(&k).await.unwrap().unwrap()),
        ("v3".into(), vec!["v2".into(), "v1".into()])
    );

    assert_eq!(versions_of(&store.rollback(&k).await.unwrap()), ("v2".into(), vec!["v1".into()]));
    assert_eq!(versions_of(&store.rollback(&k).await.unwrap()), ("v1".into(), vec![]));
    assert!(matches!(store.rollback(&k).await.unwrap_err(), RegistryError::NoPrevious { .. }));
    assert_eq!(store.active(&k).await.unwrap().unwrap().version, v("v1"));

    // Promoting a version that is in the history moves it to the front, once.
    store.promote(&k, &v("v2")).await.unwrap();
    store.promote(&k, &v("v3")).await.unwrap();
    assert_eq!(
        versions_of(&store.promote(&k, &v("v1")).await.unwrap()),
        ("v1".into(), vec!["v3".into(), "v2".into()])
    );

    // Other models and tenants are independent.
    let other = key("other", "recommender");
    put(&*store, &other, "x1", 1).await;
    store.promote(&other, &v("x1")).await.unwrap();
    let actives = store.actives(None).await.unwrap();
    let listed: Vec<(String, String)> =
        actives.iter().map(|(k, a)| (k.active_key(), a.version.to_string())).collect();
    assert_eq!(listed, [("acme.recommender".into(), "v1".into()), ("other.recommender".into(), "x1".into())]);
    assert_eq!(store.actives(Some(&TenantId::parse("other").unwrap())).await.unwrap().len(), 1);
}

pub async fn the_history_is_bounded(store: Arc<dyn ModelStore>) {
    let k = key("acme", "recommender");
    let n = MAX_PREVIOUS + 4;
    for i in 0..n {
        put(&*store, &k, &format!("v{i}"), i as i64).await;
        store.promote(&k, &v(&format!("v{i}"))).await.unwrap();
    }
    let active = store.active(&k).await.unwrap().unwrap();
    assert_eq!(active.version, v(&format!("v{}", n - 1)));
    assert_eq!(active.previous.len(), MAX_PREVIOUS);
    assert_eq!(active.previous[0], v(&format!("v{}", n - 2)), "newest first");
}

pub async fn compare_and_set_refuses_a_stale_revision(store: Arc<dyn ModelStore>) {
    let k = key("acme", "recommender");
    put(&*store, &k, "v1", 1).await;
    put(&*store, &k, "v2", 2).await;
    store.promote(&k, &v("v1")).await.unwrap();
    let (active, rev) = store.active_entry(&k).await.unwrap().unwrap();
    store.promote(&k, &v("v2")).await.unwrap();
    // Both a stale revision and "does not exist yet" lose against the promote.
    assert!(!store.compare_and_set_active(&k, &active, Some(rev)).await.unwrap());
    assert!(!store.compare_and_set_active(&k, &active, None).await.unwrap());
    assert_eq!(store.active(&k).await.unwrap().unwrap().version, v("v2"));
    let (_, now) = store.active_entry(&k).await.unwrap().unwrap();
    assert!(store.compare_and_set_active(&k, &active, Some(now)).await.unwrap());
    assert_eq!(store.active(&k).await.unwrap().unwrap().version, v("v1"));
}

pub async fn concurrent_promotions_all_land_in_the_history(store: Arc<dyn ModelStore>) {
    let k = key("acme", "recommender");
    let names: Vec<String> = (0..8).map(|i| format!("c{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        put(&*store, &k, name, i as i64).await;
    }
    let tasks: Vec<_> = names
        .iter()
        .map(|name| {
            let (store, k, name) = (store.clone(), k.clone(), name.clone());
            tokio::spawn(async move { store.promote(&k, &v(&name)).await.unwrap() })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let active = store.active(&k).await.unwrap().unwrap();
    let mut seen: Vec<String> = active.previous.iter().map(ToString::to_string).collect();
    seen.push(active.version.to_string());
    seen.sort();
    assert_eq!(seen, names, "each promotion was applied on top of the one before: none is lost");
}

pub async fn watch_sees_the_current_state_then_changes(store: Arc<dyn ModelStore>) {
    let k = key("acme", "recommender");
    let other = key("other", "intent");
    put(&*store, &k, "v1", 1).await;
    put(&*store, &k, "v2", 2).await;
    put(&*store, &other, "i1", 1).await;
    store.promote(&k, &v("v1")).await.unwrap();

    let mut changes = store.watch().await.unwrap();
    let first = next_change(&mut changes).await;
    assert_eq!((first.key.clone(), first.active.map(|a| a.version)), (k.clone(), Some(v("v1"))));

    store.promote(&k, &v("v2")).await.unwrap();
    let c = next_change(&mut changes).await;
    assert_eq!((c.key.clone(), c.active.map(|a| a.version)), (k.clone(), Some(v("v2"))));
    store.promote(&other, &v("i1")).await.unwrap();
    let c = next_change(&mut changes).await;
    assert_eq!((c.key.clone(), c.active.map(|a| a.version)), (other.clone(), Some(v("i1"))));
    store.rollback(&k).await.unwrap();
    let c = next_change(&mut changes).await;
    assert_eq!((c.key, c.active.map(|a| a.version)), (k.clone(), Some(v("v1"))));

    // A watch that starts now sees the latest of each key only.
    let mut late = store.watch().await.unwrap();
    let mut current = vec![next_change(&mut late).await, next_change(&mut late).await];
    current.sort_by(|a, b| a.key.cmp(&b.key));
    let current: Vec<(String, String)> =
        current.into_iter().map(|c| (c.key.active_key(), c.active.unwrap().version.to_string())).collect();
    assert_eq!(current, [("acme.recommender".into(), "v1".into()), ("other.intent".into(), "i1".into())]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), late.next()).await.is_err(),
        "nothing more until something changes"
    );
}

pub async fn prune_keeps_the_newest_and_every_version_a_rollback_needs(store: Arc<dyn ModelStore>) {
    let k = key("acme", "recommender");
    let other = key("acme", "intent");
    for i in 1..=6 {
        put(&*store, &k, &format!("v{i}"), i).await;
    }
    put(&*store, &other, "i1", 1).await;
    store.promote(&k, &v("v1")).await.unwrap();
    store.promote(&k, &v("v2")).await.unwrap();

    let mut deleted: Vec<String> =
        prune(&*store, &k, 2).await.unwrap().iter().map(ToString::to_string).collect();
    deleted.sort();
    assert_eq!(deleted, ["v3", "v4"], "v5, v6 are the newest; v2 is active, v1 its rollback");
    let left: Vec<String> = store
        .versions(None)
        .await
        .unwrap()
        .iter()
        .map(|i| format!("{}/{}", i.key.model, i.version))
        .collect();
    assert_eq!(left, ["intent/i1", "recommender/v1", "recommender/v2", "recommender/v5", "recommender/v6"]);
    assert!(matches!(store.get(&k, &v("v3")).await.unwrap_err(), RegistryError::UnknownVersion { .. }));
    assert!(!store.delete(&k, &v("v3")).await.unwrap(), "already gone");
    assert!(prune(&*store, &k, 2).await.unwrap().is_empty());
    // A deleted version can be put again (e.g. re-uploaded by an operator).
    put(&*store, &k, "v3", 3).await;
    assert_eq!(store.get(&k, &v("v3")).await.unwrap(), artifact("v3", 1000));
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(std::sync::Arc::new(shopmind_registry::MemoryModelStore::new())).await;
                }
            )*
        }
        mod nats {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = shopmind_testkit::NatsServer::start();
                    let client = async_nats::connect(server.url()).await.unwrap();
                    let store = shopmind_registry::NatsModelStore::open(client.clone()).await.unwrap();
                    // Opening again (another process) finds the buckets.
                    shopmind_registry::NatsModelStore::open(client).await.unwrap();
                    super::$case(std::sync::Arc::new(store)).await;
                    drop(server);
                }
            )*
        }
    };
}

conformance!(
    put_get_and_list_versions,
    versions_are_immutable_and_unknown_ones_are_errors,
    promote_and_rollback_walk_the_history,
    the_history_is_bounded,
    compare_and_set_refuses_a_stale_revision,
    concurrent_promotions_all_land_in_the_history,
    watch_sees_the_current_state_then_changes,
    prune_keeps_the_newest_and_every_version_a_rollback_needs,
);
