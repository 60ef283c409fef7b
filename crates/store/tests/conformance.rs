//! One conformance suite for every [`FeatureStore`]: each case in `cases` is written once and
//! run against the in-memory store and against a real `redis-server` (one per test, so the
//! tests run in parallel without sharing state). Where Redis decides what a write means, the
//! Redis run is the reference and the memory store must agree.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shopmind_store::{
    FeatureStore, Guard, Key, KeyPattern, Read, StoreError, Value, Write, WriteBatch, Written,
};

fn k(name: &str) -> Key {
    Key(name.to_owned())
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn write(store: &dyn FeatureStore, writes: Vec<Write>) {
    let written = store.write(WriteBatch { writes, atomic: false, guard: None }).await.unwrap();
    assert_eq!(written, Written::Applied, "a batch without a guard is always applied");
}

/// Writes a batch expected to fail, and returns its error.
async fn write_err(store: &dyn FeatureStore, writes: Vec<Write>) -> StoreError {
    store.write(WriteBatch { writes, atomic: false, guard: None }).await.unwrap_err()
}

fn guarded(writes: Vec<Write>, guard: &str, ttl: Duration) -> WriteBatch {
    WriteBatch { writes, atomic: true, guard: Some(Guard { key: k(guard), ttl }) }
}

/// The hash at `key`, as (field, text) pairs.
async fn hash(store: &dyn FeatureStore, key: &str) -> Vec<(String, String)> {
    match read1(store, Read::Hash { key: k(key) }).await {
        Value::Hash(fields) => {
            fields.into_iter().map(|(f, v)| (f, String::from_utf8(v.to_vec()).unwrap())).collect()
        }
        other => panic!("HGETALL answered {other:?}"),
    }
}

/// One field of the hash at `key`.
async fn field(store: &dyn FeatureStore, key: &str, name: &str) -> Option<String> {
    hash(store, key).await.into_iter().find(|(f, _)| f == name).map(|(_, v)| v)
}

async fn top(store: &dyn FeatureStore, key: &str) -> Value {
    read1(store, Read::SortedTop { key: k(key), n: 1000 }).await
}

fn strings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    let scale = actual.abs().max(expected.abs()).max(f64::MIN_POSITIVE);
    assert!((actual - expected).abs() / scale <= 1e-9, "{what}: {actual} != {expected}");
}

fn assert_wrong_type(err: StoreError, want_key: &str, want: &'static str) {
    match err {
        StoreError::WrongType { key, expected } => assert_eq!((key.as_str(), expected), (want_key, want)),
        other => panic!("expected WRONGTYPE on {want_key}, got {other:?}"),
    }
}

fn assert_refused(err: StoreError) {
    assert!(matches!(err, StoreError::Redis(_)), "expected a refusal, got {err:?}");
}

fn add(key: &str, member: &str, score: f64) -> Write {
    Write::SortedAdd { key: k(key), member: member.to_owned(), score }
}

fn latest(key: &str, name: &str, value: &str, at_ms: i64) -> Write {
    Write::HashSetLatest { key: k(key), field: name.to_owned(), value: value.to_owned(), at_ms }
}

fn max(key: &str, name: &str, value: i64) -> Write {
    Write::HashMax { key: k(key), field: name.to_owned(), value }
}

fn min(key: &str, name: &str, value: i64) -> Write {
    Write::HashMin { key: k(key), field: name.to_owned(), value }
}

fn decay(key: &str, name: &str, weight: f64, at_ms: i64, half_life: Duration) -> Write {
    Write::HashDecayAdd { key: k(key), field: name.to_owned(), weight, at_ms, half_life }
}

/// A co-occurrence for the owner whose window set is `set`: pairs counted in `<set>:c`,
/// neighbours at `<set>:n:<member>`; cap, counted_cap and keep 100.
fn co(set: &str, member: &str, at_ms: i64, window_ms: u64) -> Write {
    co_capped(set, member, at_ms, window_ms, [100, 100, 100])
}

/// [`co`] with `[cap, counted_cap, keep]`.
fn co_capped(set: &str, member: &str, at_ms: i64, window_ms: u64, caps: [usize; 3]) -> Write {
    co_with(set, member, at_ms, window_ms, &format!("{set}:n:"), caps)
}

/// [`co`] with neighbours at `<neighbours><member>` and `[cap, counted_cap, keep]`.
fn co_with(set: &str, member: &str, at_ms: i64, window_ms: u64, neighbours: &str, caps: [usize; 3]) -> Write {
    let [cap, counted_cap, keep] = caps;
    Write::CoOccur {
        window_set: k(set),
        member: member.to_owned(),
        at_ms,
        window: Duration::from_millis(window_ms),
        cap,
        counted: k(&format!("{set}:c")),
        counted_cap,
        neighbours: KeyPattern { prefix: neighbours.to_owned(), suffix: String::new() },
        keep,
    }
}

async fn read1(store: &dyn FeatureStore, read: Read) -> Value {
    let mut values = store.read(vec![read]).await.unwrap();
    assert_eq!(values.len(), 1);
    values.remove(0)
}

async fn exists(store: &dyn FeatureStore, key: &str) -> bool {
    match read1(store, Read::Exists { key: k(key) }).await {
        Value::Exists(e) => e,
        other => panic!("EXISTS answered {other:?}"),
    }
}

fn incr(key: &str, member: &str, by: f64) -> Write {
    Write::SortedIncr { key: k(key), member: member.to_owned(), by }
}

fn push(key: &str, value: &str, cap: usize) -> Write {
    Write::ListPushCapped { key: k(key), value: b(value), cap }
}

fn put(key: &str, value: &str) -> Write {
    Write::Put { key: k(key), value: b(value) }
}

fn sorted(pairs: &[(&str, f64)]) -> Value {
    Value::Sorted(pairs.iter().map(|(m, s)| ((*m).to_owned(), *s)).collect())
}

fn list(items: &[&str]) -> Value {
    Value::List(items.iter().map(|i| b(i)).collect())
}

mod cases {
    use super::*;

    pub async fn sorted_range_reads_by_score_lowest_first(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![add("z", "c", 3.0), add("z", "a", 1.0), add("z", "b", 2.0), add("z", "b2", 2.0)]).await;
        let range = |min: f64, max: f64, limit: usize| Read::SortedRange { key: k("z"), min, max, limit };
        assert_eq!(
            read1(s, range(f64::NEG_INFINITY, f64::INFINITY, 10)).await,
            sorted(&[("a", 1.0), ("b", 2.0), ("b2", 2.0), ("c", 3.0)]),
            "lowest first, equal scores by member ascending"
        );
        assert_eq!(read1(s, range(2.0, 2.5, 10)).await, sorted(&[("b", 2.0), ("b2", 2.0)]), "inclusive");
        assert_eq!(read1(s, range(f64::NEG_INFINITY, 2.0, 2)).await, sorted(&[("a", 1.0), ("b", 2.0)]));
        assert_eq!(read1(s, range(1.5, f64::INFINITY, 1)).await, sorted(&[("b", 2.0)]));
        assert_eq!(read1(s, range(4.0, 9.0, 10)).await, sorted(&[]));
        assert_eq!(read1(s, range(f64::NEG_INFINITY, f64::INFINITY, 0)).await, sorted(&[]), "limit 0");
        assert_eq!(
            read1(s, Read::SortedRange { key: k("absent"), min: 0.0, max: 1.0, limit: 5 }).await,
            sorted(&[])
        );
        write(s, vec![put("str", "x")]).await;
        let err = s
            .read(vec![Read::SortedRange { key: k("str"), min: 0.0, max: 1.0, limit: 5 }])
            .await
            .unwrap_err();
        assert_wrong_type(err, "str", "sorted set");
    }

    pub async fn sorted_remove_removes_members(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![add("z", "a", 1.0), add("z", "b", 2.0)]).await;
        let remove = |member: &str| Write::SortedRemove { key: k("z"), member: member.to_owned() };
        write(s, vec![remove("a"), remove("absent")]).await;
        assert_eq!(top(s, "z").await, sorted(&[("b", 2.0)]));
        write(s, vec![remove("b")]).await;
        assert!(!exists(s, "z").await, "the last member's removal removes the key");
        write(s, vec![Write::SortedRemove { key: k("nothing"), member: "x".into() }]).await;
        write(s, vec![put("str", "x")]).await;
        let err = write_err(s, vec![Write::SortedRemove { key: k("str"), member: "x".into() }]).await;
        assert_wrong_type(err, "str", "sorted set");
    }

    pub async fn capped_list_keeps_the_newest_first(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, (1..=5).map(|i| push("l", &i.to_string(), 3)).collect()).await;
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 10 }).await, list(&["5", "4", "3"]));
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 2 }).await, list(&["5", "4"]));
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 0 }).await, list(&[]));

        // Separate calls behave as one batch.
        write(s, vec![push("l", "6", 3)]).await;
        write(s, vec![push("l", "7", 3)]).await;
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 10 }).await, list(&["7", "6", "5"]));

        // A smaller cap trims what is there; cap 1 keeps only the newest.
        write(s, vec![push("l", "8", 1)]).await;
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 10 }).await, list(&["8"]));

        // Cap 0 keeps nothing: the key is gone (not "LTRIM 0 -1", which would keep all).
        write(s, vec![push("l", "9", 0)]).await;
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 10 }).await, list(&[]));
        assert!(!exists(s, "l").await);
    }

    pub async fn sorted_incr_and_top_order_ties_by_member_descending(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(
            s,
            vec![
                incr("z", "a", 1.0),
                incr("z", "b", 2.0),
                incr("z", "c", 2.0),
                incr("z", "d", 0.5),
                incr("z", "a", 1.5),
                incr("z", "e", -1.0),
                incr("z", "bb", 2.0),
            ],
        )
        .await;
        assert_eq!(
            read1(s, Read::SortedTop { key: k("z"), n: 4 }).await,
            sorted(&[("a", 2.5), ("c", 2.0), ("bb", 2.0), ("b", 2.0)])
        );
        assert_eq!(
            read1(s, Read::SortedTop { key: k("z"), n: 100 }).await,
            sorted(&[("a", 2.5), ("c", 2.0), ("bb", 2.0), ("b", 2.0), ("d", 0.5), ("e", -1.0)])
        );
        assert_eq!(read1(s, Read::SortedTop { key: k("z"), n: 0 }).await, sorted(&[]));

        // Scores add in f64 exactly as Redis adds them.
        write(s, vec![incr("f", "x", 0.1), incr("f", "x", 0.1), incr("f", "x", 0.1)]).await;
        assert_eq!(read1(s, Read::SortedTop { key: k("f"), n: 1 }).await, sorted(&[("x", 0.1 + 0.1 + 0.1)]));

        // A member whose score goes back to a tie moves behind the greater member names.
        write(s, vec![incr("z", "a", -0.5)]).await;
        assert_eq!(read1(s, Read::SortedTop { key: k("z"), n: 2 }).await, sorted(&[("c", 2.0), ("bb", 2.0)]));
    }

    pub async fn sorted_keep_top_removes_the_lowest(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(
            s,
            vec![
                incr("z", "a", 1.0),
                incr("z", "b", 1.0),
                incr("z", "c", 3.0),
                incr("z", "d", 4.0),
                incr("z", "e", 0.0),
            ],
        )
        .await;
        // Keeping more than there is removes nothing.
        write(s, vec![Write::SortedKeepTop { key: k("z"), keep: 10 }]).await;
        assert_eq!(
            read1(s, Read::SortedTop { key: k("z"), n: 10 }).await,
            sorted(&[("d", 4.0), ("c", 3.0), ("b", 1.0), ("a", 1.0), ("e", 0.0)])
        );
        // Among the tied lowest kept, the greater member name survives (rank order).
        write(s, vec![Write::SortedKeepTop { key: k("z"), keep: 3 }]).await;
        assert_eq!(
            read1(s, Read::SortedTop { key: k("z"), n: 10 }).await,
            sorted(&[("d", 4.0), ("c", 3.0), ("b", 1.0)])
        );
        let scores = Read::SortedScores { key: k("z"), members: vec!["a".into(), "b".into(), "e".into()] };
        assert_eq!(read1(s, scores).await, Value::Scores(vec![None, Some(1.0), None]));

        // Keep 0 empties the set, and an empty set does not exist.
        write(s, vec![Write::SortedKeepTop { key: k("z"), keep: 0 }]).await;
        assert!(!exists(s, "z").await);
        // On an absent key it is a no-op that creates nothing.
        write(s, vec![Write::SortedKeepTop { key: k("none"), keep: 1 }]).await;
        assert!(!exists(s, "none").await);
    }

    pub async fn sorted_scores_of_present_and_missing_members(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![incr("z", "a", 1.25), incr("z", "b", -3.0), incr("z", "inf", f64::INFINITY)]).await;
        let members = vec!["b".to_owned(), "nope".to_owned(), "a".to_owned(), "inf".to_owned()];
        assert_eq!(
            read1(s, Read::SortedScores { key: k("z"), members: members.clone() }).await,
            Value::Scores(vec![Some(-3.0), None, Some(1.25), Some(f64::INFINITY)])
        );
        assert_eq!(
            read1(s, Read::SortedScores { key: k("absent"), members }).await,
            Value::Scores(vec![None, None, None, None])
        );
        assert_eq!(
            read1(s, Read::SortedScores { key: k("z"), members: vec![] }).await,
            Value::Scores(vec![])
        );
    }

    pub async fn hash_set_incr_del_read_sorted(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(
            s,
            vec![
                Write::HashSet { key: k("h"), field: "zeta".into(), value: b("z") },
                Write::HashSet { key: k("h"), field: "alpha".into(), value: b("a") },
                Write::HashIncr { key: k("h"), field: "n".into(), by: 5 },
                Write::HashIncr { key: k("h"), field: "n".into(), by: -7 },
                Write::HashSet { key: k("h"), field: "zeta".into(), value: b("z2") },
                Write::HashSet { key: k("h"), field: "mid".into(), value: b("m") },
                Write::HashDel { key: k("h"), field: "mid".into() },
                Write::HashDel { key: k("h"), field: "never".into() },
            ],
        )
        .await;
        assert_eq!(
            read1(s, Read::Hash { key: k("h") }).await,
            Value::Hash(vec![("alpha".into(), b("a")), ("n".into(), b("-2")), ("zeta".into(), b("z2"))])
        );
        // A field set as a decimal string can be incremented.
        write(
            s,
            vec![
                Write::HashSet { key: k("h"), field: "s".into(), value: b("40") },
                Write::HashIncr { key: k("h"), field: "s".into(), by: 2 },
            ],
        )
        .await;
        let Value::Hash(fields) = read1(s, Read::Hash { key: k("h") }).await else { panic!("not a hash") };
        assert!(fields.contains(&("s".into(), b("42"))), "{fields:?}");

        // Deleting the last field removes the key; HDEL on an absent key creates nothing.
        let fields = ["alpha", "n", "zeta", "s"];
        write(s, fields.iter().map(|f| Write::HashDel { key: k("h"), field: (*f).into() }).collect()).await;
        assert!(!exists(s, "h").await);
        write(s, vec![Write::HashDel { key: k("h2"), field: "x".into() }]).await;
        assert!(!exists(s, "h2").await);
    }

    pub async fn hash_incr_refuses_non_integers_and_overflow(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(
            s,
            vec![
                Write::HashSet { key: k("h"), field: "text".into(), value: b("1.5") },
                Write::HashIncr { key: k("h"), field: "big".into(), by: i64::MAX },
            ],
        )
        .await;
        let err = s
            .write(WriteBatch {
                writes: vec![Write::HashIncr { key: k("h"), field: "text".into(), by: 1 }],
                atomic: false,
                guard: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
        let err = s
            .write(WriteBatch {
                writes: vec![Write::HashIncr { key: k("h"), field: "big".into(), by: 1 }],
                atomic: true,
                guard: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
        assert_eq!(
            read1(s, Read::Hash { key: k("h") }).await,
            Value::Hash(vec![("big".into(), b(&i64::MAX.to_string())), ("text".into(), b("1.5"))])
        );
    }

    pub async fn sorted_incr_refuses_nan(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let err = s
            .write(WriteBatch { writes: vec![incr("z", "a", f64::NAN)], atomic: false, guard: None })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
        assert!(!exists(s, "z").await, "a refused first increment must not create the set");

        write(s, vec![incr("z", "a", f64::INFINITY)]).await;
        let err = s
            .write(WriteBatch { writes: vec![incr("z", "a", f64::NEG_INFINITY)], atomic: false, guard: None })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
        assert_eq!(read1(s, Read::SortedTop { key: k("z"), n: 5 }).await, sorted(&[("a", f64::INFINITY)]));
    }

    pub async fn set_add_and_members_sorted(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(
            s,
            ["pear", "apple", "zucchini", "apple", "Banana"]
                .iter()
                .map(|m| Write::SetAdd { key: k("s"), member: (*m).into() })
                .collect(),
        )
        .await;
        assert_eq!(
            read1(s, Read::Set { key: k("s") }).await,
            Value::Set(vec!["Banana".into(), "apple".into(), "pear".into(), "zucchini".into()])
        );
    }

    pub async fn put_get_delete(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![put("p", "one")]).await;
        assert_eq!(read1(s, Read::Get { key: k("p") }).await, Value::Get(Some(b("one"))));
        write(s, vec![put("p", "two")]).await;
        assert_eq!(read1(s, Read::Get { key: k("p") }).await, Value::Get(Some(b("two"))));
        // Binary values round-trip.
        let binary = Bytes::from_static(&[0, 255, 13, 10, 0]);
        write(s, vec![Write::Put { key: k("bin"), value: binary.clone() }]).await;
        assert_eq!(read1(s, Read::Get { key: k("bin") }).await, Value::Get(Some(binary)));

        write(s, vec![Write::Delete { key: k("p") }, Write::Delete { key: k("never") }]).await;
        assert_eq!(read1(s, Read::Get { key: k("p") }).await, Value::Get(None));

        // Put replaces a key of another type; Delete removes a key of any type.
        write(s, vec![push("l", "x", 5), put("l", "now a string")]).await;
        assert_eq!(read1(s, Read::Get { key: k("l") }).await, Value::Get(Some(b("now a string"))));
        write(s, vec![incr("z", "m", 1.0), Write::Delete { key: k("z") }]).await;
        assert!(!exists(s, "z").await);
    }

    pub async fn scan_finds_live_keys_by_glob(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let weird = "we*rd?[id]";
        let mut writes = Vec::new();
        for u in ["alice", "bob", weird, "weXrdX[id]"] {
            writes.push(put(&format!("sm:{{t:u:{u}}}:a"), "x"));
            writes.push(incr(&format!("sm:{{t:u:{u}}}:b"), "m", 1.0));
        }
        writes.push(put("sm:{t:i:alice}:a", "x"));
        writes.push(put("sm:{t:u:gone}:a", "x"));
        writes.push(Write::Expire { key: k("sm:{t:u:gone}:a"), ttl: Duration::from_millis(1) });
        for i in 0..2500 {
            writes.push(put(&format!("bulk:{i}"), "x"));
        }
        write(s, writes).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let names = |keys: Vec<Key>| keys.into_iter().map(|k| k.0).collect::<Vec<_>>();
        assert_eq!(
            names(s.scan("sm:{t:u:alice}:*").await.unwrap()),
            ["sm:{t:u:alice}:a", "sm:{t:u:alice}:b"]
        );
        let escaped = format!("sm:{{t:u:{}}}:*", shopmind_store::glob_escape(weird));
        assert_eq!(
            names(s.scan(&escaped).await.unwrap()),
            [format!("sm:{{t:u:{weird}}}:a"), format!("sm:{{t:u:{weird}}}:b")]
        );
        assert_eq!(s.scan("sm:{t:u:*}:a").await.unwrap().len(), 4, "expired keys are not found");
        assert_eq!(s.scan("bulk:*").await.unwrap().len(), 2500, "every step of the walk");
        assert!(s.scan("none:*").await.unwrap().is_empty());
    }

    pub async fn exists_for_every_type(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        assert!(!exists(s, "p").await);
        write(
            s,
            vec![
                put("p", ""),
                push("l", "x", 2),
                incr("z", "m", 0.0),
                Write::HashSet { key: k("h"), field: "f".into(), value: b("") },
                Write::SetAdd { key: k("s"), member: "m".into() },
            ],
        )
        .await;
        for key in ["p", "l", "z", "h", "s"] {
            assert!(exists(s, key).await, "{key}");
        }
        assert!(!exists(s, "other").await);
    }

    pub async fn absent_keys_read_as_empty_values(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let values = s
            .read(vec![
                Read::List { key: k("a"), limit: 5 },
                Read::SortedTop { key: k("a"), n: 5 },
                Read::SortedScores { key: k("a"), members: vec!["m".into()] },
                Read::Hash { key: k("a") },
                Read::Set { key: k("a") },
                Read::Get { key: k("a") },
                Read::Exists { key: k("a") },
            ])
            .await
            .unwrap();
        assert_eq!(
            values,
            vec![
                Value::List(vec![]),
                Value::Sorted(vec![]),
                Value::Scores(vec![None]),
                Value::Hash(vec![]),
                Value::Set(vec![]),
                Value::Get(None),
                Value::Exists(false),
            ]
        );
        assert_eq!(s.read(vec![]).await.unwrap(), vec![]);
        s.write(WriteBatch::default()).await.unwrap();
        assert_eq!(s.ttl(&k("a")).await.unwrap(), None);
    }

    pub async fn a_batch_of_reads_answers_in_order(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(
            s,
            vec![
                push("l", "x", 3),
                incr("z", "m", 2.0),
                Write::HashSet { key: k("h"), field: "f".into(), value: b("v") },
                Write::SetAdd { key: k("s"), member: "m".into() },
                put("p", "v"),
            ],
        )
        .await;
        let values = s
            .read(vec![
                Read::Get { key: k("p") },
                Read::Set { key: k("s") },
                Read::List { key: k("l"), limit: 0 },
                Read::Exists { key: k("nothing") },
                Read::Hash { key: k("h") },
                Read::SortedScores { key: k("z"), members: vec![] },
                Read::SortedTop { key: k("z"), n: 1 },
                Read::List { key: k("l"), limit: 1 },
                Read::Get { key: k("p2") },
                Read::Exists { key: k("p") },
            ])
            .await
            .unwrap();
        assert_eq!(
            values,
            vec![
                Value::Get(Some(b("v"))),
                Value::Set(vec!["m".into()]),
                Value::List(vec![]),
                Value::Exists(false),
                Value::Hash(vec![("f".into(), b("v"))]),
                Value::Scores(vec![]),
                sorted(&[("m", 2.0)]),
                list(&["x"]),
                Value::Get(None),
                Value::Exists(true),
            ]
        );
    }

    pub async fn reads_of_a_key_of_another_type_fail_with_wrong_type(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![push("l", "x", 3), put("p", "v")]).await;
        let cases = [
            (Read::Get { key: k("l") }, "l", "string"),
            (Read::Hash { key: k("l") }, "l", "hash"),
            (Read::Set { key: k("p") }, "p", "set"),
            (Read::SortedTop { key: k("p"), n: 3 }, "p", "sorted set"),
            (Read::SortedScores { key: k("l"), members: vec!["m".into()] }, "l", "sorted set"),
            (Read::List { key: k("p"), limit: 3 }, "p", "list"),
        ];
        for (read, bad_key, want) in cases {
            let reads = vec![Read::Exists { key: k("l") }, read.clone(), Read::Get { key: k("p") }];
            match s.read(reads).await {
                Err(StoreError::WrongType { key, expected }) => {
                    assert_eq!((key.as_str(), expected), (bad_key, want), "{read:?}");
                }
                other => panic!("{read:?} answered {other:?}"),
            }
        }
    }

    /// Redis MULTI/EXEC does not roll back: a command that fails at EXEC time (WRONGTYPE) is
    /// skipped and the others are applied. The store documents and implements exactly that.
    pub async fn atomic_batch_with_a_wrong_type_write_applies_the_others(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![put("str", "keep me")]).await;
        let batch = WriteBatch {
            writes: vec![
                Write::HashSet { key: k("h"), field: "f".into(), value: b("v") },
                push("str", "x", 3),
                Write::SetAdd { key: k("s"), member: "m".into() },
                incr("str", "m", 1.0),
                incr("z", "m", 1.0),
            ],
            atomic: true,
            guard: None,
        };
        match s.write(batch).await {
            Err(StoreError::WrongType { key, expected }) => assert_eq!((key, expected), (k("str"), "list")),
            other => panic!("expected WRONGTYPE, got {other:?}"),
        }
        let values = s
            .read(vec![
                Read::Get { key: k("str") },
                Read::Hash { key: k("h") },
                Read::Set { key: k("s") },
                Read::SortedTop { key: k("z"), n: 5 },
            ])
            .await
            .unwrap();
        assert_eq!(
            values,
            vec![
                Value::Get(Some(b("keep me"))),
                Value::Hash(vec![("f".into(), b("v"))]),
                Value::Set(vec!["m".into()]),
                sorted(&[("m", 1.0)]),
            ]
        );
    }

    /// A plain pipeline behaves the same: every write runs, failed ones change nothing, and the
    /// first failure is reported.
    pub async fn non_atomic_batch_with_failures_applies_the_others(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![push("list", "a", 5)]).await;
        let batch = WriteBatch {
            writes: vec![
                put("before", "1"),
                Write::HashIncr { key: k("list"), field: "f".into(), by: 1 },
                push("list", "b", 5),
                Write::SetAdd { key: k("before"), member: "m".into() },
                put("after", "2"),
            ],
            atomic: false,
            guard: None,
        };
        match s.write(batch).await {
            Err(StoreError::WrongType { key, expected }) => assert_eq!((key, expected), (k("list"), "hash")),
            other => panic!("expected WRONGTYPE, got {other:?}"),
        }
        let values = s
            .read(vec![
                Read::Get { key: k("before") },
                Read::List { key: k("list"), limit: 5 },
                Read::Get { key: k("after") },
            ])
            .await
            .unwrap();
        assert_eq!(values, vec![Value::Get(Some(b("1"))), list(&["b", "a"]), Value::Get(Some(b("2")))]);
    }

    pub async fn expire_sets_a_ttl_and_expired_keys_are_absent(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![put("p", "v"), push("l", "x", 3), push("short", "x", 3)]).await;
        assert_eq!(s.ttl(&k("p")).await.unwrap(), None, "no TTL yet");

        write(
            s,
            vec![
                Write::Expire { key: k("p"), ttl: Duration::from_secs(10) },
                Write::Expire { key: k("l"), ttl: Duration::from_secs(60) },
                Write::Expire { key: k("short"), ttl: Duration::from_millis(80) },
                Write::Expire { key: k("absent"), ttl: Duration::from_secs(10) },
            ],
        )
        .await;
        let ttl = s.ttl(&k("p")).await.unwrap().unwrap();
        assert!(ttl > Duration::from_secs(9) && ttl <= Duration::from_secs(10), "{ttl:?}");
        assert!(!exists(s, "absent").await, "EXPIRE must not create a key");
        assert_eq!(s.ttl(&k("absent")).await.unwrap(), None);

        // Writing to a collection keeps its TTL; Put replaces the value and clears it.
        write(s, vec![push("l", "y", 3), put("p", "w")]).await;
        let ttl = s.ttl(&k("l")).await.unwrap().unwrap();
        assert!(ttl > Duration::from_secs(50) && ttl <= Duration::from_secs(60), "{ttl:?}");
        assert_eq!(s.ttl(&k("p")).await.unwrap(), None);

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!exists(s, "short").await);
        assert_eq!(read1(s, Read::List { key: k("short"), limit: 3 }).await, list(&[]));
        assert_eq!(s.ttl(&k("short")).await.unwrap(), None);
        // An expired key of another type is gone, so a write of any type succeeds on it.
        write(s, vec![Write::HashSet { key: k("short"), field: "f".into(), value: b("v") }]).await;
        assert_eq!(s.ttl(&k("short")).await.unwrap(), None, "a recreated key has no TTL");
        assert_eq!(read1(s, Read::Hash { key: k("short") }).await, Value::Hash(vec![("f".into(), b("v"))]));

        // A zero TTL expires the key at once.
        write(s, vec![Write::Expire { key: k("l"), ttl: Duration::ZERO }]).await;
        assert!(!exists(s, "l").await);
    }

    pub async fn put_if_absent_sets_once_with_a_ttl(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        assert!(s.put_if_absent(&k("m"), b("first"), Duration::from_secs(30)).await.unwrap());
        assert!(!s.put_if_absent(&k("m"), b("second"), Duration::from_secs(30)).await.unwrap());
        assert_eq!(read1(s, Read::Get { key: k("m") }).await, Value::Get(Some(b("first"))));
        let ttl = s.ttl(&k("m")).await.unwrap().unwrap();
        assert!(ttl > Duration::from_secs(29) && ttl <= Duration::from_secs(30), "{ttl:?}");

        // A key of another type counts as present (SET NX does not fail on it).
        write(s, vec![push("l", "x", 2)]).await;
        assert!(!s.put_if_absent(&k("l"), b("v"), Duration::from_secs(1)).await.unwrap());
        assert_eq!(read1(s, Read::List { key: k("l"), limit: 2 }).await, list(&["x"]));

        // Once the marker expires it can be set again.
        assert!(s.put_if_absent(&k("short"), b("1"), Duration::from_millis(60)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(s.put_if_absent(&k("short"), b("2"), Duration::from_secs(5)).await.unwrap());
        assert_eq!(read1(s, Read::Get { key: k("short") }).await, Value::Get(Some(b("2"))));

        // A zero TTL is rounded up, not refused.
        assert!(s.put_if_absent(&k("zero"), b("z"), Duration::ZERO).await.unwrap());
    }

    pub async fn concurrent_writers_lose_no_update(store: Arc<dyn FeatureStore>) {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    for _ in 0..25 {
                        let writes = vec![
                            Write::HashIncr { key: k("h"), field: "n".into(), by: 1 },
                            incr("z", "m", 1.0),
                        ];
                        store.write(WriteBatch { writes, atomic: true, guard: None }).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let values = store
            .read(vec![Read::Hash { key: k("h") }, Read::SortedTop { key: k("z"), n: 1 }])
            .await
            .unwrap();
        assert_eq!(values, vec![Value::Hash(vec![("n".into(), b("200"))]), sorted(&[("m", 200.0)])]);
    }

    pub async fn sorted_add_sets_or_replaces_scores(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![add("z", "a", 1.0), add("z", "b", 2.0), add("z", "a", 3.0), add("z", "c", -0.25)])
            .await;
        assert_eq!(top(s, "z").await, sorted(&[("a", 3.0), ("b", 2.0), ("c", -0.25)]));
        // Lower as well as higher; infinities are scores like others.
        write(
            s,
            vec![add("z", "a", 0.5), add("z", "inf", f64::INFINITY), add("z", "-inf", f64::NEG_INFINITY)],
        )
        .await;
        assert_eq!(
            top(s, "z").await,
            sorted(&[
                ("inf", f64::INFINITY),
                ("b", 2.0),
                ("a", 0.5),
                ("c", -0.25),
                ("-inf", f64::NEG_INFINITY)
            ])
        );
        // Combined with a keep-top, the set holds the highest scores added.
        write(s, vec![add("z", "d", 1.0), Write::SortedKeepTop { key: k("z"), keep: 2 }]).await;
        assert_eq!(top(s, "z").await, sorted(&[("inf", f64::INFINITY), ("b", 2.0)]));

        // NaN is refused and changes nothing, without stopping the batch.
        assert_refused(write_err(s, vec![add("z", "b", f64::NAN), add("z", "e", 7.0)]).await);
        assert_eq!(top(s, "z").await, sorted(&[("inf", f64::INFINITY), ("e", 7.0), ("b", 2.0)]));
        assert_refused(write_err(s, vec![add("new", "m", f64::NAN)]).await);
        assert!(!exists(s, "new").await);

        write(s, vec![put("p", "v")]).await;
        assert_wrong_type(write_err(s, vec![add("p", "m", 1.0)]).await, "p", "sorted set");
        assert_eq!(read1(s, Read::Get { key: k("p") }).await, Value::Get(Some(b("v"))));
    }

    pub async fn sorted_min_keeps_the_lowest_score_in_any_order(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let min = |key: &str, member: &str, score: f64| Write::SortedMin {
            key: k(key),
            member: member.to_owned(),
            score,
        };
        write(s, vec![min("z", "a", 5.0), min("z", "a", 3.0), min("z", "a", 4.0), min("z", "b", 1.0)]).await;
        write(s, vec![min("y", "a", 4.0), min("y", "b", 1.0), min("y", "a", 3.0), min("y", "a", 5.0)]).await;
        assert_eq!(top(s, "z").await, sorted(&[("a", 3.0), ("b", 1.0)]));
        assert_eq!(top(s, "y").await, top(s, "z").await);
        assert_refused(write_err(s, vec![min("z", "a", f64::NAN)]).await);
        assert_eq!(top(s, "z").await, sorted(&[("a", 3.0), ("b", 1.0)]));
        write(s, vec![put("p", "v")]).await;
        assert_wrong_type(write_err(s, vec![min("p", "m", 1.0)]).await, "p", "sorted set");
    }

    pub async fn hash_set_latest_keeps_the_value_with_the_latest_stamp(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![latest("h", "f", "b", 5), latest("h", "f", "a", 3)]).await;
        assert_eq!(field(s, "h", "f").await.as_deref(), Some("5|b"));
        // Equal stamps: the larger value wins, compared byte by byte ('B' < 'a'); equal
        // stamp and value change nothing.
        write(s, vec![latest("h", "f", "a", 5), latest("h", "f", "B", 5)]).await;
        assert_eq!(field(s, "h", "f").await.as_deref(), Some("5|b"));
        write(s, vec![latest("h", "f", "c", 5), latest("h", "f", "c", 5)]).await;
        assert_eq!(field(s, "h", "f").await.as_deref(), Some("5|c"));
        // A later stamp wins whatever its value; values may hold '|' and be empty.
        write(s, vec![latest("h", "f", "x|y", 7), latest("h", "g", "", -10), latest("h", "g", "zz", -20)])
            .await;
        let fields = hash(s, "h").await;
        assert_eq!(fields, strings(&[("f", "7|x|y"), ("g", "-10|")]));
        assert_eq!(shopmind_store::stamped(fields[0].1.as_bytes()), Some((7, "x|y")));
        assert_eq!(shopmind_store::stamped(fields[1].1.as_bytes()), Some((-10, "")));

        // Stamps compare exactly, beyond the 2^53 a double holds.
        let big = 1_i64 << 53;
        write(s, vec![latest("h", "e", "a", big + 1), latest("h", "e", "z", big)]).await;
        assert_eq!(field(s, "h", "e").await, Some(format!("{}|a", big + 1)));
        write(
            s,
            vec![
                latest("h", "m", "a", i64::MAX - 1),
                latest("h", "m", "b", i64::MAX),
                latest("h", "m", "c", i64::MIN),
            ],
        )
        .await;
        assert_eq!(field(s, "h", "m").await, Some(format!("{}|b", i64::MAX)));

        // A field that does not hold a stamped value is refused and left as is.
        write(
            s,
            vec![
                Write::HashSet { key: k("h"), field: "plain".into(), value: b("no stamp") },
                Write::HashSet { key: k("h"), field: "bad".into(), value: b("1.5|v") },
            ],
        )
        .await;
        assert_refused(write_err(s, vec![latest("h", "plain", "v", 1), latest("h", "ok", "v", 1)]).await);
        assert_refused(write_err(s, vec![latest("h", "bad", "v", 1)]).await);
        assert_eq!(field(s, "h", "plain").await.as_deref(), Some("no stamp"));
        assert_eq!(field(s, "h", "bad").await.as_deref(), Some("1.5|v"));
        assert_eq!(field(s, "h", "ok").await.as_deref(), Some("1|v"), "the rest of the batch applies");

        write(s, vec![push("l", "x", 3)]).await;
        assert_wrong_type(write_err(s, vec![latest("l", "f", "v", 1)]).await, "l", "hash");
    }

    pub async fn hash_max_and_min_keep_the_extremes(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let values = [5, 3, 9, -2, 9, 0];
        let mut writes: Vec<Write> = values.iter().map(|v| max("h", "hi", *v)).collect();
        writes.extend(values.iter().map(|v| min("h", "lo", *v)));
        write(s, writes).await;
        assert_eq!(hash(s, "h").await, strings(&[("hi", "9"), ("lo", "-2")]));

        // Exact beyond 2^53, and at the ends of i64.
        let big = 1_i64 << 53;
        write(
            s,
            vec![
                max("h", "big", big),
                max("h", "big", big + 1),
                max("h", "big", big),
                min("h", "small", -big),
                min("h", "small", -big - 1),
                min("h", "small", -big),
                max("h", "ends", i64::MIN),
                max("h", "ends", i64::MAX),
                min("h", "ends2", i64::MAX),
                min("h", "ends2", i64::MIN),
            ],
        )
        .await;
        assert_eq!(field(s, "h", "big").await, Some((big + 1).to_string()));
        assert_eq!(field(s, "h", "small").await, Some((-big - 1).to_string()));
        assert_eq!(field(s, "h", "ends").await, Some(i64::MAX.to_string()));
        assert_eq!(field(s, "h", "ends2").await, Some(i64::MIN.to_string()));

        // They work on a counter, and a counter can be incremented after them.
        write(
            s,
            vec![
                Write::HashIncr { key: k("h"), field: "n".into(), by: 4 },
                max("h", "n", 10),
                Write::HashIncr { key: k("h"), field: "n".into(), by: 1 },
                min("h", "n", 7),
            ],
        )
        .await;
        assert_eq!(field(s, "h", "n").await.as_deref(), Some("7"));

        // A field that does not hold an integer is refused and left as is.
        write(s, vec![Write::HashSet { key: k("h"), field: "text".into(), value: b("07") }]).await;
        assert_refused(write_err(s, vec![max("h", "text", 100)]).await);
        assert_refused(write_err(s, vec![min("h", "text", -100)]).await);
        assert_eq!(field(s, "h", "text").await.as_deref(), Some("07"));

        write(s, vec![put("p", "v")]).await;
        assert_wrong_type(write_err(s, vec![max("p", "f", 1)]).await, "p", "hash");
        assert_wrong_type(write_err(s, vec![min("p", "f", 1)]).await, "p", "hash");
    }

    pub async fn hash_decay_add_sums_decayed_weights(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let h = Duration::from_secs(1);
        // Exact steps: each is one half-life apart. The text is C's %.17g on both backends.
        write(s, vec![decay("d", "f", 1.0, 1000, h)]).await;
        assert_eq!(field(s, "d", "f").await.as_deref(), Some("1|1000"));
        write(s, vec![decay("d", "f", 1.0, 2000, h)]).await;
        assert_eq!(field(s, "d", "f").await.as_deref(), Some("1.5|2000"));
        // An older weight decays to the reference time, which stays.
        write(s, vec![decay("d", "f", 2.0, 1000, h)]).await;
        assert_eq!(field(s, "d", "f").await.as_deref(), Some("2.5|2000"));
        write(s, vec![decay("d", "f", 0.1, 2000, h)]).await;
        assert_eq!(field(s, "d", "f").await.as_deref(), Some("2.6000000000000001|2000"));
        write(s, vec![decay("d", "g", -1e-7, 5, h), decay("d", "e", 1e21, 5, h)]).await;
        assert_eq!(field(s, "d", "g").await.as_deref(), Some("-9.9999999999999995e-08|5"));
        assert_eq!(field(s, "d", "e").await.as_deref(), Some("1e+21|5"));
        let raw = field(s, "d", "f").await.unwrap();
        assert_close(shopmind_store::decayed(raw.as_bytes(), 4000, h).unwrap(), 2.6 / 4.0, "decayed");

        // The closed form: sum of w * 2^-((now - t) / h), whatever the order.
        let h = Duration::from_secs(90);
        let events: Vec<(i64, f64)> = (0..25)
            .map(|i| (1_700_000_000_000 + (i * 7_919 % 25) * 13_000, 0.5 + f64::from(i as i32 % 4)))
            .collect();
        write(s, events.iter().map(|(t, w)| decay("c", "f", *w, *t, h)).collect()).await;
        let now = 1_700_000_000_000 + 400_000;
        let expected: f64 =
            events.iter().map(|(t, w)| w * 2f64.powf(-((now - t) as f64) / h.as_millis() as f64)).sum();
        let raw = field(s, "c", "f").await.unwrap();
        assert!(raw.ends_with(&format!("|{}", events.iter().map(|e| e.0).max().unwrap())), "{raw}");
        assert_close(shopmind_store::decayed(raw.as_bytes(), now, h).unwrap(), expected, "closed form");

        // Half-life 0: no decay, a plain sum.
        write(
            s,
            vec![decay("z", "f", 1.5, 10, Duration::ZERO), decay("z", "f", 2.0, 99_999, Duration::ZERO)],
        )
        .await;
        assert_eq!(field(s, "z", "f").await.as_deref(), Some("3.5|99999"));

        // Non-finite weights and results are refused; so is a field of another shape.
        write(
            s,
            vec![
                decay("x", "f", 1e308, 0, h),
                Write::HashSet { key: k("x"), field: "bad".into(), value: b("1|x") },
            ],
        )
        .await;
        assert_refused(write_err(s, vec![decay("x", "f", f64::NAN, 0, h)]).await);
        assert_refused(write_err(s, vec![decay("x", "f", f64::INFINITY, 0, h)]).await);
        assert_refused(write_err(s, vec![decay("x", "f", 1e308, 0, h)]).await);
        assert_refused(write_err(s, vec![decay("x", "bad", 1.0, 0, h)]).await);
        assert_refused(write_err(s, vec![decay("x", "new", f64::NAN, 0, h)]).await);
        assert_eq!(hash(s, "x").await, strings(&[("bad", "1|x"), ("f", "1e+308|0")]));

        write(s, vec![put("p", "v")]).await;
        assert_wrong_type(write_err(s, vec![decay("p", "f", 1.0, 0, h)]).await, "p", "hash");
    }

    pub async fn co_occur_counts_each_pair_once_within_the_window(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let w = 10_000;
        // a, b, c, d arrive in time order; e arrives late, between c and d; then a and b are
        // seen again, and d and b are delivered twice.
        let views = [
            ("a", 0),
            ("b", 5_000),
            ("c", 12_000),
            ("d", 20_000),
            ("e", 11_000),
            ("a", 6_000),
            ("b", 14_000),
            ("d", 20_000),
            ("b", 5_000),
        ];
        for (m, t) in views {
            write(s, vec![co("w", m, t, w)]).await;
        }
        // Each pair once, however often its items were seen together. e pairs with b, c and d
        // although it came last; a@6000 pairs a with c and e (a@0 was too early for them),
        // b@14000 pairs b with d; a and d were never within the window.
        assert_eq!(top(s, "w:n:a").await, sorted(&[("e", 1.0), ("c", 1.0), ("b", 1.0)]));
        assert_eq!(top(s, "w:n:b").await, sorted(&[("e", 1.0), ("d", 1.0), ("c", 1.0), ("a", 1.0)]));
        assert_eq!(top(s, "w:n:c").await, sorted(&[("e", 1.0), ("d", 1.0), ("b", 1.0), ("a", 1.0)]));
        assert_eq!(top(s, "w:n:d").await, sorted(&[("e", 1.0), ("c", 1.0), ("b", 1.0)]));
        assert_eq!(top(s, "w:n:e").await, sorted(&[("d", 1.0), ("c", 1.0), ("b", 1.0), ("a", 1.0)]));
        // Every occurrence once; nothing is removed by time.
        let occurrences = sorted(&[
            ("d|20000", 20_000.0),
            ("b|14000", 14_000.0),
            ("c|12000", 12_000.0),
            ("e|11000", 11_000.0),
            ("a|6000", 6_000.0),
            ("b|5000", 5_000.0),
            ("a|0", 0.0),
        ]);
        assert_eq!(top(s, "w").await, occurrences);
        // The pairs counted, scored by the time of the write that counted them.
        let pairs = sorted(&[
            ("c d", 20_000.0),
            ("b d", 14_000.0),
            ("b c", 12_000.0),
            ("d e", 11_000.0),
            ("c e", 11_000.0),
            ("b e", 11_000.0),
            ("a e", 6_000.0),
            ("a c", 6_000.0),
            ("a b", 5_000.0),
        ]);
        assert_eq!(top(s, "w:c").await, pairs);
        // Sent again, in another order: nothing changes.
        for (m, t) in views.iter().rev() {
            write(s, vec![co("w", m, *t, w)]).await;
        }
        assert_eq!(top(s, "w").await, occurrences);
        assert_eq!(top(s, "w:c").await, pairs);
        assert_eq!(top(s, "w:n:b").await, sorted(&[("e", 1.0), ("d", 1.0), ("c", 1.0), ("a", 1.0)]));

        // Exactly `window` apart counts, before as well as after; one millisecond more does not.
        for (m, t) in [("x", 0), ("y", 10_000), ("z", 20_001), ("u", -10_000)] {
            write(s, vec![co("edge", m, t, w)]).await;
        }
        write(s, vec![co("edge2", "x", 0, w), co("edge2", "v", -10_001, w)]).await;
        assert_eq!(top(s, "edge:n:x").await, sorted(&[("y", 1.0), ("u", 1.0)]));
        assert_eq!(top(s, "edge:n:y").await, sorted(&[("x", 1.0)]));
        assert_eq!(top(s, "edge:n:u").await, sorted(&[("x", 1.0)]));
        assert!(!exists(s, "edge:n:z").await);
        assert!(!exists(s, "edge2:n:v").await);
        assert!(!exists(s, "edge2:c").await);
        assert_eq!(top(s, "edge:c").await, sorted(&[("x y", 10_000.0), ("u x", -10_000.0)]));

        // Pairs are counted once per owner: two owners sharing the neighbour keys count 2.
        let shared = |set: &str, m: &str, t: i64| co_with(set, m, t, w, "shared:n:", [100, 100, 100]);
        write(
            s,
            vec![
                shared("o1", "p", 0),
                shared("o1", "q", 1_000),
                shared("o1", "q", 2_000),
                shared("o1", "p", 3_000),
                shared("o2", "q", 50_000),
                shared("o2", "p", 45_000),
            ],
        )
        .await;
        assert_eq!(top(s, "shared:n:p").await, sorted(&[("q", 2.0)]));
        assert_eq!(top(s, "shared:n:q").await, sorted(&[("p", 2.0)]));
        assert_eq!(top(s, "o1:c").await, sorted(&[("p q", 1_000.0)]));
        assert_eq!(top(s, "o2:c").await, sorted(&[("p q", 45_000.0)]));
    }

    pub async fn co_occur_honours_cap_counted_cap_and_keep(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let w = 60_000;
        // cap 2: the newest two occurrences stay; a newcomer pairs with what is still there.
        let cap2 = |m: &str, t: i64| co_capped("c", m, t, w, [2, 100, 100]);
        write(s, vec![cap2("m1", 0), cap2("m2", 1), cap2("m3", 2)]).await;
        assert_eq!(top(s, "c").await, sorted(&[("m3|2", 2.0), ("m2|1", 1.0)]));
        assert_eq!(top(s, "c:n:m3").await, sorted(&[("m2", 1.0), ("m1", 1.0)]));
        write(s, vec![cap2("m4", 3)]).await;
        assert_eq!(top(s, "c:n:m4").await, sorted(&[("m3", 1.0), ("m2", 1.0)]), "m1 was evicted");
        assert_eq!(top(s, "c").await, sorted(&[("m4|3", 3.0), ("m3|2", 2.0)]));
        // The oldest goes first; equal times: the smaller occurrence.
        write(s, vec![cap2("a", 3)]).await;
        assert_eq!(top(s, "c").await, sorted(&[("m4|3", 3.0), ("a|3", 3.0)]));
        write(s, vec![cap2("z", 3)]).await;
        assert_eq!(top(s, "c").await, sorted(&[("z|3", 3.0), ("m4|3", 3.0)]));
        // cap 0 keeps nothing, so nothing pairs.
        write(s, vec![co_capped("c0", "p", 0, w, [0, 100, 100]), co_capped("c0", "q", 1, w, [0, 100, 100])])
            .await;
        assert!(!exists(s, "c0").await);
        assert!(!exists(s, "c0:c").await);
        assert!(!exists(s, "c0:n:q").await);

        // counted_cap 1: the newest counted pair stays (equal times: the greater pair); a pair
        // trimmed away is counted again when its items meet again.
        let counted1 = |m: &str, t: i64| co_capped("cc", m, t, w, [100, 1, 100]);
        write(s, vec![counted1("a", 0), counted1("b", 1), counted1("c", 2)]).await;
        assert_eq!(top(s, "cc:c").await, sorted(&[("b c", 2.0)]));
        assert_eq!(top(s, "cc:n:a").await, sorted(&[("c", 1.0), ("b", 1.0)]));
        write(s, vec![counted1("a", 3)]).await;
        assert_eq!(top(s, "cc:c").await, sorted(&[("a c", 3.0)]));
        assert_eq!(top(s, "cc:n:a").await, sorted(&[("c", 2.0), ("b", 2.0)]));
        assert_eq!(top(s, "cc:n:b").await, sorted(&[("a", 2.0), ("c", 1.0)]));
        // counted_cap 0 remembers no pair: every new occurrence counts its pairs again.
        let counted0 = |m: &str, t: i64| co_capped("c0c", m, t, w, [100, 0, 100]);
        write(s, vec![counted0("f", 0), counted0("g", 1), counted0("g", 2), counted0("g", 2)]).await;
        assert_eq!(top(s, "c0c:n:f").await, sorted(&[("g", 2.0)]));
        assert!(!exists(s, "c0c:c").await);

        // keep 1: each neighbour set keeps its highest count (ties: the greater name).
        let keep1 = |set: &str, m: &str, t: i64| co_with(set, m, t, w, "k:n:", [100, 100, 1]);
        write(s, vec![keep1("k", "a", 0), keep1("k", "b", 1), keep1("k", "hub", 2)]).await;
        assert_eq!(top(s, "k:n:hub").await, sorted(&[("b", 1.0)]));
        assert_eq!(top(s, "k:n:a").await, sorted(&[("hub", 1.0)]));
        assert_eq!(top(s, "k:n:b").await, sorted(&[("hub", 1.0)]));
        // A higher count is kept over a newcomer: another owner pairs hub with a (2), then zz.
        write(s, vec![keep1("k2", "a", 100), keep1("k2", "hub", 101), keep1("k2", "zz", 102)]).await;
        assert_eq!(top(s, "k:n:a").await, sorted(&[("hub", 2.0)]));
        assert_eq!(top(s, "k:n:hub").await, sorted(&[("zz", 1.0)]));
        assert_eq!(top(s, "k:n:zz").await, sorted(&[("hub", 1.0)]));
        // keep 0 keeps no neighbours at all (the pair is counted all the same).
        write(s, vec![co_capped("k0", "a", 0, w, [100, 100, 0]), co_capped("k0", "b", 1, w, [100, 100, 0])])
            .await;
        assert!(!exists(s, "k0:n:a").await);
        assert!(!exists(s, "k0:n:b").await);
        assert_eq!(top(s, "k0").await, sorted(&[("b|1", 1.0), ("a|0", 0.0)]));
        assert_eq!(top(s, "k0:c").await, sorted(&[("a b", 1.0)]));
    }

    pub async fn co_occur_checks_every_key_before_writing(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let w = 10_000;
        write(s, vec![co("w", "a", 0, w), co("w", "b", 1, w), put("w:n:b", "not a zset")]).await;
        // c would pair with a and b; b's neighbour key holds a string: nothing changes.
        let err = write_err(s, vec![co("w", "c", 2, w), put("after", "1")]).await;
        assert_wrong_type(err, "w:n:b", "sorted set");
        assert_eq!(top(s, "w").await, sorted(&[("b|1", 1.0), ("a|0", 0.0)]));
        assert_eq!(top(s, "w:c").await, sorted(&[("a b", 1.0)]));
        assert_eq!(top(s, "w:n:a").await, sorted(&[("b", 1.0)]));
        assert!(!exists(s, "w:n:c").await);
        assert_eq!(read1(s, Read::Get { key: k("after") }).await, Value::Get(Some(b("1"))));
        // Its own neighbour key is checked too.
        write(s, vec![put("w:n:d", "x")]).await;
        assert_wrong_type(write_err(s, vec![co("w", "d", 3, w)]).await, "w:n:d", "sorted set");
        assert_eq!(top(s, "w:n:a").await, sorted(&[("b", 1.0)]));
        assert_eq!(top(s, "w:c").await, sorted(&[("a b", 1.0)]));
        // Neighbour keys are not touched by an occurrence whose pairs are all counted already,
        // nor by one with no partners.
        write(s, vec![co("w", "a", 2, w), co("w", "d", 1_000_000, w), co("w", "d", 1_000_000, w)]).await;
        let occurrences = sorted(&[("d|1000000", 1_000_000.0), ("a|2", 2.0), ("b|1", 1.0), ("a|0", 0.0)]);
        assert_eq!(top(s, "w").await, occurrences);
        // The counted set, even for an occurrence already there.
        write(s, vec![put("w:c", "x")]).await;
        assert_wrong_type(write_err(s, vec![co("w", "a", 0, w)]).await, "w:c", "sorted set");
        write(s, vec![put("cnt:c", "x")]).await;
        assert_wrong_type(write_err(s, vec![co("cnt", "m", 0, w)]).await, "cnt:c", "sorted set");
        assert!(!exists(s, "cnt").await);
        // The window set itself, first.
        write(s, vec![put("str", "x"), put("str:c", "x")]).await;
        assert_wrong_type(write_err(s, vec![co("str", "m", 0, w)]).await, "str", "sorted set");
    }

    /// The pair counts do not depend on the order the occurrences arrive in, nor on repeats.
    pub async fn co_occur_converges_in_any_order(store: Arc<dyn FeatureStore>) {
        use rand::SeedableRng;
        use rand::rngs::StdRng;
        use rand::seq::SliceRandom;

        const WINDOW: i64 = 10_000;
        const ITEMS: [&str; 6] = ["bag", "belt", "cap", "hat", "shoe", "sock"];
        // (owner, item, time); two are repeats.
        const VIEWS: [(usize, &str, i64); 30] = [
            (0, "bag", 0),
            (0, "belt", 4_000),
            (0, "bag", 9_000),
            (0, "cap", 15_000),
            (0, "hat", 26_000),
            (0, "shoe", 26_000),
            (0, "bag", 35_000),
            (0, "hat", 36_000),
            (0, "sock", 47_000),
            (0, "belt", 47_000),
            (0, "cap", 58_000),
            (0, "shoe", 12_000),
            (0, "sock", 70_000),
            (0, "bag", 9_000),
            (0, "hat", 80_001),
            (1, "sock", 0),
            (1, "shoe", 10_000),
            (1, "sock", 21_000),
            (1, "bag", 30_000),
            (1, "belt", 30_000),
            (1, "cap", 41_000),
            (1, "hat", 52_000),
            (1, "bag", 51_000),
            (1, "shoe", 62_000),
            (1, "belt", 72_500),
            (1, "cap", 62_500),
            (1, "shoe", 10_000),
            (1, "hat", 95_000),
            (1, "sock", 88_000),
            (1, "belt", 84_000),
        ];
        let view = |p: &str, (owner, item, at_ms): (usize, &str, i64)| Write::CoOccur {
            window_set: k(&format!("{p}u{owner}:recent")),
            member: item.to_owned(),
            at_ms,
            window: Duration::from_millis(WINDOW as u64),
            cap: 1_000,
            counted: k(&format!("{p}u{owner}:pairs")),
            counted_cap: 1_000,
            neighbours: KeyPattern { prefix: format!("{p}i:"), suffix: ":covisit".to_owned() },
            keep: 1_000,
        };
        let snapshot = |p: String| {
            let store = Arc::clone(&store);
            async move {
                let mut reads: Vec<Read> = ITEMS
                    .iter()
                    .map(|item| Read::SortedTop { key: k(&format!("{p}i:{item}:covisit")), n: 100 })
                    .collect();
                reads.extend((0..2).map(|o| Read::SortedTop { key: k(&format!("{p}u{o}:recent")), n: 100 }));
                store.read(reads).await.unwrap()
            }
        };

        // By hand: a pair counts once for each owner who saw its items within the window.
        let ranked = |mut pairs: Vec<(String, f64)>| {
            pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
            Value::Sorted(pairs)
        };
        let met = |o: usize, x: &str, y: &str| {
            VIEWS.iter().any(|&(ox, ix, tx)| {
                ox == o
                    && ix == x
                    && VIEWS.iter().any(|&(oy, iy, ty)| oy == o && iy == y && (tx - ty).abs() <= WINDOW)
            })
        };
        let mut expected: Vec<Value> = ITEMS
            .iter()
            .map(|x| {
                ranked(
                    ITEMS
                        .iter()
                        .filter(|y| *y != x)
                        .map(|y| (y.to_string(), (0..2).filter(|&o| met(o, x, y)).count() as f64))
                        .filter(|(_, n)| *n > 0.0)
                        .collect(),
                )
            })
            .collect();
        expected.extend((0..2).map(|o| {
            let occurrences: std::collections::BTreeSet<(String, i64)> =
                VIEWS.iter().filter(|v| v.0 == o).map(|&(_, item, t)| (format!("{item}|{t}"), t)).collect();
            ranked(occurrences.into_iter().map(|(m, t)| (m, t as f64)).collect())
        }));
        // The views make for pairs counted twice, once and never.
        let counts: Vec<f64> = expected[..ITEMS.len()]
            .iter()
            .flat_map(|v| match v {
                Value::Sorted(pairs) => pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
                _ => unreachable!(),
            })
            .collect();
        assert!(counts.contains(&2.0) && counts.contains(&1.0), "{counts:?}");
        assert!(counts.len() < ITEMS.len() * (ITEMS.len() - 1), "some pairs never met");

        for seed in 0..6u64 {
            let p = format!("run{seed}:");
            let mut views = VIEWS.to_vec();
            views.shuffle(&mut StdRng::seed_from_u64(seed));
            for v in views {
                write(&*store, vec![view(&p, v)]).await;
            }
            assert_eq!(snapshot(p).await, expected, "seed {seed}");
        }
    }

    pub async fn guarded_batch_is_applied_once(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let ttl = Duration::from_secs(30);
        let effect = |n: i64| {
            vec![
                Write::HashIncr { key: k("h"), field: "n".into(), by: n },
                incr("z", "m", 1.0),
                co_capped("w", &format!("m{n}"), n, 1_000, [10, 10, 10]),
            ]
        };
        assert_eq!(s.write(guarded(effect(1), "g", ttl)).await.unwrap(), Written::Applied);
        let before = s
            .read(vec![
                Read::Hash { key: k("h") },
                Read::SortedTop { key: k("z"), n: 5 },
                Read::SortedTop { key: k("w"), n: 5 },
            ])
            .await
            .unwrap();
        assert_eq!(before[0], Value::Hash(vec![("n".into(), b("1"))]));
        // Sent again, even with other writes: skipped, nothing changed.
        assert_eq!(s.write(guarded(effect(2), "g", ttl)).await.unwrap(), Written::Skipped);
        assert_eq!(s.write(guarded(effect(1), "g", ttl)).await.unwrap(), Written::Skipped);
        let after = s
            .read(vec![
                Read::Hash { key: k("h") },
                Read::SortedTop { key: k("z"), n: 5 },
                Read::SortedTop { key: k("w"), n: 5 },
            ])
            .await
            .unwrap();
        assert_eq!(after, before);
        // The guard is a string with the TTL.
        assert_eq!(read1(s, Read::Get { key: k("g") }).await, Value::Get(Some(b("1"))));
        let left = s.ttl(&k("g")).await.unwrap().unwrap();
        assert!(left > Duration::from_secs(29) && left <= ttl, "{left:?}");

        // Another guard applies; an empty guarded batch still sets its guard.
        assert_eq!(s.write(guarded(effect(5), "g2", ttl)).await.unwrap(), Written::Applied);
        assert_eq!(field(s, "h", "n").await.as_deref(), Some("6"));
        assert_eq!(s.write(guarded(vec![], "empty", ttl)).await.unwrap(), Written::Applied);
        assert_eq!(s.write(guarded(vec![], "empty", ttl)).await.unwrap(), Written::Skipped);
        // A guard key of any type counts as present.
        write(s, vec![push("l", "x", 3)]).await;
        assert_eq!(s.write(guarded(effect(100), "l", ttl)).await.unwrap(), Written::Skipped);
        assert_eq!(field(s, "h", "n").await.as_deref(), Some("6"));

        // Once the guard expires the batch applies again; a zero TTL is rounded up to 1 ms.
        assert_eq!(
            s.write(guarded(effect(10), "short", Duration::from_millis(60))).await.unwrap(),
            Written::Applied
        );
        assert_eq!(s.write(guarded(vec![], "zero", Duration::ZERO)).await.unwrap(), Written::Applied);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            s.write(guarded(effect(10), "short", Duration::from_millis(60))).await.unwrap(),
            Written::Applied
        );
        assert_eq!(field(s, "h", "n").await.as_deref(), Some("26"));
        assert!(!exists(s, "zero").await);
    }

    /// A failed write does not stop the batch, and the guard is set all the same: the rest of
    /// the event's effect must not be applied twice when it is redelivered.
    pub async fn guarded_batch_with_a_failed_write_still_sets_the_guard(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        write(s, vec![put("str", "v")]).await;
        let writes = vec![
            Write::HashIncr { key: k("h"), field: "n".into(), by: 1 },
            push("str", "x", 3),
            max("h", "m", 4),
        ];
        let err = s.write(guarded(writes.clone(), "g", Duration::from_secs(30))).await.unwrap_err();
        assert_wrong_type(err, "str", "list");
        assert_eq!(hash(s, "h").await, strings(&[("m", "4"), ("n", "1")]));
        assert!(exists(s, "g").await);
        assert_eq!(s.write(guarded(writes, "g", Duration::from_secs(30))).await.unwrap(), Written::Skipped);
        assert_eq!(hash(s, "h").await, strings(&[("m", "4"), ("n", "1")]));
    }

    /// Several batches in one call: each applied, skipped or failed exactly as alone, in order;
    /// a guard set by an earlier batch of the same call skips a later one.
    pub async fn write_all_applies_each_batch_as_if_alone(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let ttl = Duration::from_secs(30);
        write(s, vec![put("str", "v")]).await;
        assert_eq!(
            s.write(guarded(vec![incr("z", "old", 1.0)], "seen", ttl)).await.unwrap(),
            Written::Applied
        );
        let n = |by: i64| Write::HashIncr { key: k("h"), field: "n".into(), by };
        let results = s
            .write_all(vec![
                guarded(vec![n(1), incr("z", "a", 1.0)], "e1", ttl),
                // The same guard again in the same call: skipped, even with other writes.
                guarded(vec![n(100)], "e1", ttl),
                // Guarded before this call: skipped.
                guarded(vec![n(1000), incr("z", "old", 5.0)], "seen", ttl),
                // A failing write: the others of its batch apply, and the guard is set.
                guarded(vec![n(2), push("str", "x", 3), max("h", "m", 7)], "e2", ttl),
                // No guard; an empty batch.
                WriteBatch { writes: vec![n(4)], atomic: false, guard: None },
                WriteBatch::default(),
                guarded(vec![], "e3", ttl),
            ])
            .await
            .unwrap();
        assert_eq!(results.len(), 7);
        assert!(matches!(results[0], Ok(Written::Applied)), "{:?}", results[0]);
        assert!(matches!(results[1], Ok(Written::Skipped)), "{:?}", results[1]);
        assert!(matches!(results[2], Ok(Written::Skipped)), "{:?}", results[2]);
        let mut results = results.into_iter();
        let failed = results.nth(3).unwrap().unwrap_err();
        assert_wrong_type(failed, "str", "list");
        assert!(matches!(results.next(), Some(Ok(Written::Applied))));
        assert!(matches!(results.next(), Some(Ok(Written::Applied))));
        assert!(matches!(results.next(), Some(Ok(Written::Applied))));
        assert_eq!(hash(s, "h").await, strings(&[("m", "7"), ("n", "7")]));
        assert_eq!(top(s, "z").await, sorted(&[("old", 1.0), ("a", 1.0)]));
        for guard in ["e1", "e2", "e3"] {
            assert!(exists(s, guard).await, "{guard}");
        }
        // Sent again: every guarded batch is skipped; the unguarded ones apply again.
        let again = s
            .write_all(vec![
                guarded(vec![n(1)], "e1", ttl),
                guarded(vec![n(2)], "e2", ttl),
                WriteBatch { writes: vec![n(4)], atomic: false, guard: None },
            ])
            .await
            .unwrap();
        let again: Vec<Written> = again.into_iter().map(Result::unwrap).collect();
        assert_eq!(again, vec![Written::Skipped, Written::Skipped, Written::Applied]);
        assert_eq!(field(s, "h", "n").await.as_deref(), Some("11"));
        assert!(s.write_all(Vec::new()).await.unwrap().is_empty());
    }

    /// Within one call, a TTL set again on a key is the same TTL, also after the key was
    /// deleted, emptied or replaced and written again, or created after an earlier expire.
    pub async fn expire_in_one_call_follows_deletes_and_recreations(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let ttl = Duration::from_secs(60);
        let expire = |key: &str| Write::Expire { key: k(key), ttl };
        let batch = |writes: Vec<Write>| WriteBatch { writes, atomic: true, guard: None };
        let results = s
            .write_all(vec![
                // Absent when first expired, created later in the call.
                batch(vec![expire("late")]),
                batch(vec![incr("late", "m", 1.0), expire("late")]),
                // Absent when first expired, created later by a read-modify-write or a co-occurrence.
                batch(vec![expire("late2"), expire("late3")]),
                batch(vec![
                    latest("late2", "f", "v", 1),
                    co("late3", "a", 1, 10),
                    expire("late2"),
                    expire("late3"),
                ]),
                // Deleted and recreated.
                batch(vec![incr("del", "m", 1.0), expire("del")]),
                batch(vec![Write::Delete { key: k("del") }, incr("del", "m", 1.0), expire("del")]),
                // Emptied by a trim and recreated.
                batch(vec![incr("trim", "m", 1.0), expire("trim")]),
                batch(vec![
                    Write::SortedKeepTop { key: k("trim"), keep: 0 },
                    incr("trim", "m", 1.0),
                    expire("trim"),
                ]),
                // Emptied by removing its last field and recreated.
                batch(vec![Write::HashSet { key: k("hd"), field: "f".into(), value: b("v") }, expire("hd")]),
                batch(vec![
                    Write::HashDel { key: k("hd"), field: "f".into() },
                    Write::HashSet { key: k("hd"), field: "g".into(), value: b("v") },
                    expire("hd"),
                ]),
                // Replaced by Put (which clears the TTL).
                batch(vec![put("p", "a"), expire("p")]),
                batch(vec![put("p", "b"), expire("p")]),
                // Capped list emptied by cap 0, then pushed again.
                batch(vec![push("l", "x", 3), expire("l")]),
                batch(vec![push("l", "y", 0), push("l", "z", 3), expire("l")]),
                // Expired at once by a zero TTL, recreated, expired again at once... and kept.
                batch(vec![incr("zero", "m", 1.0), Write::Expire { key: k("zero"), ttl: Duration::ZERO }]),
                batch(vec![incr("zero", "m", 1.0), Write::Expire { key: k("zero"), ttl: Duration::ZERO }]),
                batch(vec![incr("zero", "m", 1.0)]),
                // Occurrence windows trimmed to nothing by a cap of 0, then written again.
                batch(vec![co_capped("w", "a", 1, 10, [5, 5, 5]), expire("w"), expire("w:c")]),
                batch(vec![
                    co_capped("w", "b", 2, 10, [0, 0, 5]),
                    co_capped("w", "c", 3, 10, [5, 5, 5]),
                    expire("w"),
                    expire("w:c"),
                ]),
            ])
            .await
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        for key in ["late", "late2", "late3", "del", "trim", "hd", "p", "l", "w"] {
            assert!(exists(s, key).await, "{key} exists");
            let left = s.ttl(&k(key)).await.unwrap();
            assert!(left.is_some_and(|t| t > Duration::from_secs(50) && t <= ttl), "{key}: {left:?}");
        }
        assert_eq!(s.ttl(&k("zero")).await.unwrap(), None, "recreated after the zero TTL, no TTL");
        assert!(exists(s, "zero").await);
    }

    /// Read-modify-writes of one hash one after another (which the Redis script runs with one
    /// read and one write of the hash) are each applied as alone: each sees what the ones before
    /// it left, a refused one changes nothing and the first refusal is reported, a key of
    /// another type fails each of them.
    pub async fn hash_read_modify_writes_in_a_row_are_each_applied_as_alone(store: Arc<dyn FeatureStore>) {
        let s = &*store;
        let h = Duration::from_secs(1);
        let set = |key: &str, field: &str, value: &str| Write::HashSet {
            key: k(key),
            field: field.into(),
            value: b(value),
        };
        write(s, vec![set("h", "bad", "x"), set("h", "s2", "nostamp"), put("str", "v")]).await;
        let n = |by: i64| Write::HashIncr { key: k("n"), field: "c".into(), by };
        let err = write_err(
            s,
            vec![
                latest("h", "s", "x", 10),
                latest("h", "s", "y", 5),
                max("h", "m", 7),
                max("h", "bad", 3),
                latest("h", "s2", "v", 1),
                min("h", "m", 2),
                decay("h", "d", 1.0, 1000, h),
                decay("h", "d", 1.0, 3000, h),
                latest("h", "s", "z", 10),
                n(1),
                max("h", "m", 4),
            ],
        )
        .await;
        assert!(err.to_string().contains("not an integer"), "the first refusal: {err}");
        assert_eq!(
            hash(s, "h").await,
            strings(&[("bad", "x"), ("d", "1.25|3000"), ("m", "4"), ("s", "10|z"), ("s2", "nostamp")])
        );
        assert_eq!(hash(s, "n").await, strings(&[("c", "1")]));

        // A key of another type fails every write of the run; the first is reported.
        let err =
            write_err(s, vec![max("str", "m", 1), min("str", "m", 0), latest("str", "x", "y", 1), n(1)])
                .await;
        assert_wrong_type(err, "str", "hash");
        assert_eq!(hash(s, "n").await, strings(&[("c", "2")]));

        // Runs end with their batch: the next batch of the same call starts afresh.
        let batch = |writes: Vec<Write>| WriteBatch { writes, atomic: true, guard: None };
        let results = s
            .write_all(vec![
                batch(vec![max("h2", "m", 1)]),
                batch(vec![max("h2", "bad", 0), min("h2", "m", 0)]),
                batch(vec![set("h2", "bad", "x"), max("h2", "bad", 0), max("h2", "m", 5)]),
            ])
            .await
            .unwrap();
        assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
        let mut results = results.into_iter();
        assert_refused(results.nth(2).unwrap().unwrap_err());
        assert_eq!(hash(s, "h2").await, strings(&[("bad", "x"), ("m", "5")]));
    }

    pub async fn concurrent_guarded_writes_apply_exactly_once(store: Arc<dyn FeatureStore>) {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let writes = vec![
                        Write::HashIncr { key: k("h"), field: "n".into(), by: 1 },
                        max("h", "winner", i),
                        incr("z", "m", 1.0),
                    ];
                    store.write(guarded(writes, "event-1", Duration::from_secs(30))).await.unwrap()
                })
            })
            .collect();
        let mut applied = 0;
        for task in tasks {
            if task.await.unwrap() == Written::Applied {
                applied += 1;
            }
        }
        assert_eq!(applied, 1);
        let fields = hash(&*store, "h").await;
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].0, "n");
        assert_eq!(fields[0].1, "1");
        assert_eq!(top(&*store, "z").await, sorted(&[("m", 1.0)]));
    }

    /// THE property: the events of a user, each one guarded batch of commutative writes,
    /// delivered in any order (sequentially or concurrently), some of them twice, leave the
    /// same state.
    pub async fn mixed_commutative_events_converge_in_any_order(store: Arc<dyn FeatureStore>) {
        let mut snapshots = Vec::new();
        for run in 0..5u64 {
            let prefix = format!("run{run}:");
            let events = order::events(&prefix);
            let outcome = order::deliver(&store, events, run).await;
            assert_eq!(outcome, (order::EVENTS, order::REDELIVERED.len()), "run {run}: (applied, skipped)");
            let snapshot = order::snapshot(&*store, &prefix).await;
            order::check_expected(&snapshot);
            snapshots.push(snapshot);
        }
        for (run, snapshot) in snapshots.iter().enumerate().skip(1) {
            order::assert_same(&snapshots[0], snapshot, &format!("run 0 vs run {run}"));
        }
    }
}

/// The events of the order-independence property: one user, 42 events (views and purchases of
/// 7 items within 20 minutes), each one guarded batch of commutative writes.
mod order {
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use shopmind_store::decayed;

    use super::*;

    pub const EVENTS: usize = 42;
    /// Events delivered a second time.
    pub const REDELIVERED: [usize; 6] = [0, 7, 13, 21, 33, 41];
    const HALF_LIFE: Duration = Duration::from_secs(600);
    const WINDOW: Duration = Duration::from_secs(3_600);
    const T0: i64 = 1_700_000_000_000;
    /// When the decaying scores are compared.
    const NOW: i64 = T0 + 3_600_000;
    const ITEMS: [&str; 7] = ["bag", "belt", "glove", "hat", "scarf", "shoe", "sock"];
    const TOP_PURCHASES: usize = 5;

    /// Event `i`: its time, its item, and its price in cents if it is a purchase.
    fn event(i: usize) -> (i64, &'static str, Option<i64>) {
        // Events 40 and 41 are views at the latest time of the others: `last_item` is then
        // decided by value.
        let slot = if i >= 40 { 39 } else { (i * 7_919) % 40 };
        let t = T0 + slot as i64 * 30_000;
        let item = if i >= 40 { ITEMS[i - 39] } else { ITEMS[(i * 5 + i / 3) % ITEMS.len()] };
        let price = (i < 40 && i % 4 == 3).then(|| 1_000 + ((i * 37) % 50) as i64 * 100);
        (t, item, price)
    }

    fn writes(p: &str, i: usize) -> Vec<Write> {
        let (t, item, price) = event(i);
        let user = |name: &str| k(&format!("{p}u:{name}"));
        let mut writes = vec![
            Write::HashSetLatest {
                key: user("profile"),
                field: "last_item".into(),
                value: item.into(),
                at_ms: t,
            },
            Write::HashMax { key: user("profile"), field: "last_seen".into(), value: t },
            Write::HashMin { key: user("profile"), field: "first_seen".into(), value: t },
            Write::HashDecayAdd {
                key: user("affinity"),
                field: item.into(),
                weight: if price.is_some() { 3.0 } else { 1.0 },
                at_ms: t,
                half_life: HALF_LIFE,
            },
        ];
        match price {
            None => writes.extend([
                Write::HashIncr { key: user("counts"), field: "views".into(), by: 1 },
                Write::CoOccur {
                    window_set: user("recent"),
                    member: item.into(),
                    at_ms: t,
                    window: WINDOW,
                    cap: 100,
                    counted: user("pairs"),
                    counted_cap: 100,
                    neighbours: KeyPattern { prefix: format!("{p}i:"), suffix: ":covisit".into() },
                    keep: 100,
                },
            ]),
            Some(cents) => writes.extend([
                Write::HashIncr { key: user("counts"), field: "purchases".into(), by: 1 },
                Write::HashIncr { key: user("counts"), field: "spent".into(), by: cents },
                Write::SortedAdd {
                    key: user("top"),
                    member: format!("{item}#{i}"),
                    score: cents as f64 / 100.0,
                },
                Write::SortedKeepTop { key: user("top"), keep: TOP_PURCHASES },
                Write::SortedIncr { key: user("bought"), member: item.into(), by: 1.0 },
            ]),
        }
        writes
    }

    pub fn events(p: &str) -> Vec<WriteBatch> {
        (0..EVENTS)
            .map(|i| guarded(writes(p, i), &format!("{p}seen:{i}"), Duration::from_secs(3_600)))
            .collect()
    }

    /// Delivers the events and the redeliveries: in order for `run` 0, shuffled with seed `run`
    /// otherwise, all at once (concurrently) for run 4. Returns (applied, skipped).
    pub async fn deliver(store: &Arc<dyn FeatureStore>, events: Vec<WriteBatch>, run: u64) -> (usize, usize) {
        let mut deliveries = events.clone();
        deliveries.extend(REDELIVERED.iter().map(|&i| events[i].clone()));
        if run > 0 {
            deliveries.shuffle(&mut StdRng::seed_from_u64(run));
        }
        let mut outcomes = Vec::new();
        if run == 4 {
            let tasks: Vec<_> = deliveries
                .into_iter()
                .map(|batch| {
                    let store = Arc::clone(store);
                    tokio::spawn(async move { store.write(batch).await.unwrap() })
                })
                .collect();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
        } else {
            for batch in deliveries {
                outcomes.push(store.write(batch).await.unwrap());
            }
        }
        let applied = outcomes.iter().filter(|w| **w == Written::Applied).count();
        (applied, outcomes.len() - applied)
    }

    #[derive(Debug)]
    pub struct Snapshot {
        /// Everything but the decaying scores, compared exactly.
        pub exact: Vec<Value>,
        /// The decaying scores by item, decayed to [`NOW`] (equal up to rounding).
        pub affinity: Vec<(String, f64)>,
        /// Their stored text.
        pub raw_affinity: Value,
    }

    pub async fn snapshot(store: &dyn FeatureStore, p: &str) -> Snapshot {
        let user = |name: &str| k(&format!("{p}u:{name}"));
        let mut reads = vec![
            Read::Hash { key: user("counts") },
            Read::Hash { key: user("profile") },
            Read::SortedTop { key: user("top"), n: 100 },
            Read::SortedTop { key: user("bought"), n: 100 },
            Read::SortedTop { key: user("recent"), n: 100 },
        ];
        reads.extend(
            ITEMS.iter().map(|item| Read::SortedTop { key: k(&format!("{p}i:{item}:covisit")), n: 100 }),
        );
        reads.push(Read::Hash { key: user("affinity") });
        let mut exact = store.read(reads).await.unwrap();
        let raw_affinity = exact.pop().unwrap();
        let Value::Hash(fields) = &raw_affinity else { panic!("{raw_affinity:?}") };
        let affinity =
            fields.iter().map(|(f, raw)| (f.clone(), decayed(raw, NOW, HALF_LIFE).unwrap())).collect();
        Snapshot { exact, affinity, raw_affinity }
    }

    pub fn assert_same(a: &Snapshot, b: &Snapshot, what: &str) {
        assert_eq!(a.exact, b.exact, "{what}");
        let names = |s: &Snapshot| s.affinity.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>();
        assert_eq!(names(a), names(b), "{what}");
        for ((item, x), (_, y)) in a.affinity.iter().zip(&b.affinity) {
            assert_close(*x, *y, &format!("{what}: affinity of {item}"));
        }
    }

    /// Ranked as `SortedTop` ranks: score descending, then member descending.
    fn ranked(mut pairs: Vec<(String, f64)>) -> Value {
        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        Value::Sorted(pairs)
    }

    /// The state computed from the event list by hand.
    pub fn check_expected(s: &Snapshot) {
        let events: Vec<_> = (0..EVENTS).map(event).collect();
        let purchases: Vec<_> =
            (0..EVENTS).filter_map(|i| events[i].2.map(|c| (i, events[i].1, c))).collect();
        let views: Vec<_> = events.iter().filter(|e| e.2.is_none()).collect();
        let spent: i64 = purchases.iter().map(|p| p.2).sum();
        let counts = Value::Hash(vec![
            ("purchases".into(), b(&purchases.len().to_string())),
            ("spent".into(), b(&spent.to_string())),
            ("views".into(), b(&views.len().to_string())),
        ]);
        let first = events.iter().map(|e| e.0).min().unwrap();
        let last = events.iter().map(|e| e.0).max().unwrap();
        let last_item = events.iter().map(|e| (e.0, e.1)).max().unwrap().1;
        let profile = Value::Hash(vec![
            ("first_seen".into(), b(&first.to_string())),
            ("last_item".into(), b(&format!("{last}|{last_item}"))),
            ("last_seen".into(), b(&last.to_string())),
        ]);
        let Value::Sorted(mut top) =
            ranked(purchases.iter().map(|(i, item, c)| (format!("{item}#{i}"), *c as f64 / 100.0)).collect())
        else {
            unreachable!()
        };
        top.truncate(TOP_PURCHASES);
        let bought = ranked(
            ITEMS
                .iter()
                .map(|item| (item.to_string(), purchases.iter().filter(|p| p.1 == *item).count() as f64))
                .filter(|(_, n)| *n > 0.0)
                .collect(),
        );
        let viewed: Vec<&str> =
            ITEMS.iter().copied().filter(|item| views.iter().any(|v| v.1 == *item)).collect();
        assert!(viewed.len() >= 5, "the events must view most items: {viewed:?}");
        // Every view, once: `<item>|<time>` scored by its time.
        let occurrences: std::collections::BTreeSet<(String, i64)> =
            views.iter().map(|v| (format!("{}|{}", v.1, v.0), v.0)).collect();
        let recent = ranked(occurrences.into_iter().map(|(m, t)| (m, t as f64)).collect());
        let mut expected = vec![counts, profile, Value::Sorted(top), bought, recent];
        // All views are within the window of each other: every pair of viewed items once.
        expected.extend(ITEMS.iter().map(|item| {
            let partners = viewed.iter().filter(|v| viewed.contains(item) && *v != item);
            ranked(partners.map(|v| (v.to_string(), 1.0)).collect())
        }));
        assert_eq!(s.exact, expected);

        let h = HALF_LIFE.as_millis() as f64;
        let affinity: Vec<(String, f64)> = ITEMS
            .iter()
            .filter(|item| events.iter().any(|e| e.1 == **item))
            .map(|item| {
                let sum = events
                    .iter()
                    .filter(|e| e.1 == *item)
                    .map(|e| if e.2.is_some() { 3.0 } else { 1.0 } * 2f64.powf(-((NOW - e.0) as f64) / h))
                    .sum();
                (item.to_string(), sum)
            })
            .collect();
        assert_eq!(s.affinity.len(), affinity.len());
        for ((item, actual), (_, want)) in s.affinity.iter().zip(&affinity) {
            assert_close(*actual, *want, &format!("closed form of {item}"));
        }
    }
}

/// Instantiates every case for one backend: `$make` is an async block yielding
/// `(guard, Arc<dyn FeatureStore>)`, the guard living as long as the test.
macro_rules! conformance {
    ($module:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (_guard, store) = $make.await;
                    cases::$case(store).await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($module:ident, $make:expr) => {
        conformance!(
            $module,
            $make,
            [
                capped_list_keeps_the_newest_first,
                sorted_incr_and_top_order_ties_by_member_descending,
                sorted_keep_top_removes_the_lowest,
                sorted_scores_of_present_and_missing_members,
                hash_set_incr_del_read_sorted,
                hash_incr_refuses_non_integers_and_overflow,
                sorted_incr_refuses_nan,
                set_add_and_members_sorted,
                put_get_delete,
                scan_finds_live_keys_by_glob,
                exists_for_every_type,
                absent_keys_read_as_empty_values,
                a_batch_of_reads_answers_in_order,
                reads_of_a_key_of_another_type_fail_with_wrong_type,
                atomic_batch_with_a_wrong_type_write_applies_the_others,
                non_atomic_batch_with_failures_applies_the_others,
                expire_sets_a_ttl_and_expired_keys_are_absent,
                put_if_absent_sets_once_with_a_ttl,
                concurrent_writers_lose_no_update,
                sorted_add_sets_or_replaces_scores,
                sorted_min_keeps_the_lowest_score_in_any_order,
                sorted_range_reads_by_score_lowest_first,
                sorted_remove_removes_members,
                hash_set_latest_keeps_the_value_with_the_latest_stamp,
                hash_max_and_min_keep_the_extremes,
                hash_decay_add_sums_decayed_weights,
                co_occur_counts_each_pair_once_within_the_window,
                co_occur_honours_cap_counted_cap_and_keep,
                co_occur_checks_every_key_before_writing,
                co_occur_converges_in_any_order,
                guarded_batch_is_applied_once,
                guarded_batch_with_a_failed_write_still_sets_the_guard,
                concurrent_guarded_writes_apply_exactly_once,
                write_all_applies_each_batch_as_if_alone,
                hash_read_modify_writes_in_a_row_are_each_applied_as_alone,
                expire_in_one_call_follows_deletes_and_recreations,
                mixed_commutative_events_converge_in_any_order,
            ]
        );
    };
}

async fn memory_store() -> ((), Arc<dyn FeatureStore>) {
    ((), Arc::new(shopmind_store::MemoryStore::new()))
}

async fn redis_store() -> (shopmind_testkit::RedisServer, Arc<dyn FeatureStore>) {
    let server = shopmind_testkit::RedisServer::start();
    let store = shopmind_store::RedisStore::connect(&server.url()).await.unwrap();
    (server, Arc::new(store))
}

all_cases!(memory, memory_store());
all_cases!(redis, redis_store());

/// What only one backend has.
mod backend_specific {
    use shopmind_store::{MemoryStore, RedisStore};
    use shopmind_testkit::{RedisServer, free_port};

    use super::*;

    #[tokio::test]
    async fn kinds() {
        assert_eq!(MemoryStore::new().kind(), "memory");
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url()).await.unwrap();
        assert_eq!(store.kind(), "redis");
    }

    /// Both backends, fed the same events in the same (shuffled) order, hold the same state,
    /// down to the text of the decaying scores.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn backends_agree_on_the_same_events() {
        let server = RedisServer::start();
        let redis: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
        let memory: Arc<dyn FeatureStore> = Arc::new(MemoryStore::new());
        let mut snapshots = Vec::new();
        for store in [&memory, &redis] {
            assert_eq!(order::deliver(store, order::events("p:"), 7).await, (order::EVENTS, 6));
            snapshots.push(order::snapshot(&**store, "p:").await);
        }
        order::assert_same(&snapshots[0], &snapshots[1], "memory vs redis");
        assert_eq!(snapshots[0].raw_affinity, snapshots[1].raw_affinity);
    }

    #[tokio::test]
    async fn redis_ping_and_memory_usage() {
        let server = RedisServer::start();
        let store = RedisStore::connect(&server.url()).await.unwrap();
        store.ping().await.unwrap();
        assert_eq!(store.memory_usage(&k("absent")).await.unwrap(), None);
        write(&store, vec![Write::Put { key: k("big"), value: Bytes::from(vec![7u8; 10_000]) }]).await;
        let used = store.memory_usage(&k("big")).await.unwrap().unwrap();
        assert!(used >= 10_000, "{used}");
    }

    #[tokio::test]
    async fn redis_connect_error_names_the_url_but_not_the_password() {
        let port = free_port();
        let err = RedisStore::connect(&format!("redis://user:hunter2@127.0.0.1:{port}/0")).await.unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&format!("redis://127.0.0.1:{port}/0")), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[tokio::test]
    async fn redis_invalid_url_is_reported_without_the_password() {
        let err = RedisStore::connect("http://:hunter2@example.com/").await.unwrap_err();
        assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("example.com"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
