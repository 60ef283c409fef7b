//! One conformance suite for every [`FeatureStore`]: each case in `cases` is written once and
//! run against the in-memory store and against a real `redis-server` (one per test, so the
//! tests run in parallel without sharing state). Where Redis decides what a write means, the
//! Redis run is the reference and the memory store must agree.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use shopmind_store::{FeatureStore, Key, Read, StoreError, Value, Write, WriteBatch};

fn k(name: &str) -> Key {
    Key(name.to_owned())
}

fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

async fn write(store: &dyn FeatureStore, writes: Vec<Write>) {
    store.write(WriteBatch { writes, atomic: false }).await.unwrap();
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
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
        let err = s
            .write(WriteBatch {
                writes: vec![Write::HashIncr { key: k("h"), field: "big".into(), by: 1 }],
                atomic: true,
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
        let err =
            s.write(WriteBatch { writes: vec![incr("z", "a", f64::NAN)], atomic: false }).await.unwrap_err();
        assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
        assert!(!exists(s, "z").await, "a refused first increment must not create the set");

        write(s, vec![incr("z", "a", f64::INFINITY)]).await;
        let err = s
            .write(WriteBatch { writes: vec![incr("z", "a", f64::NEG_INFINITY)], atomic: false })
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
                        store.write(WriteBatch { writes, atomic: true }).await.unwrap();
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
                exists_for_every_type,
                absent_keys_read_as_empty_values,
                a_batch_of_reads_answers_in_order,
                reads_of_a_key_of_another_type_fail_with_wrong_type,
                atomic_batch_with_a_wrong_type_write_applies_the_others,
                non_atomic_batch_with_failures_applies_the_others,
                expire_sets_a_ttl_and_expired_keys_are_absent,
                put_if_absent_sets_once_with_a_ttl,
                concurrent_writers_lose_no_update,
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
