//! The in-memory [`FeatureStore`]: one map behind a mutex, with the semantics Redis has for
//! each command the Redis store sends (see the comments on [`Inner::apply`] and
//! [`Inner::read`]).
//!
//! Expired keys behave as absent: they are removed when touched, and a sweep at most once per
//! [`SWEEP_EVERY`] removes the ones nobody touches, so memory stays bounded.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{FeatureStore, Key, Read, Result, StoreError, Value, Write, WriteBatch, ttl_millis};

/// How often, at most, all keys are scanned for expired ones.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

const LIST: &str = "list";
const SORTED: &str = "sorted set";
const HASH: &str = "hash";
const SET: &str = "set";
const STRING: &str = "string";

/// The embedded feature store, for running without Redis and for tests.
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_sweep_interval(SWEEP_EVERY)
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with_sweep_interval(sweep_every: Duration) -> Self {
        Self { inner: Mutex::new(Inner { entries: HashMap::new(), last_sweep: Instant::now(), sweep_every }) }
    }

    /// Locks the map and sweeps it if it is time. No code path panics while holding the lock,
    /// so a poisoned lock still holds consistent data and is used as is.
    fn lock(&self) -> (MutexGuard<'_, Inner>, Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        inner.sweep_if_due(now);
        (inner, now)
    }
}

#[async_trait::async_trait]
impl FeatureStore for MemoryStore {
    async fn write(&self, batch: WriteBatch) -> Result<()> {
        // The whole batch runs under one lock, so it is isolated whether atomic or not. As in
        // Redis (MULTI/EXEC and plain pipelines alike) a failing write is skipped and the rest
        // of the batch still applies; the first error is returned.
        let (mut inner, now) = self.lock();
        let mut first_error = None;
        for write in &batch.writes {
            if let Err(e) = inner.apply(write, now) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn read(&self, reads: Vec<Read>) -> Result<Vec<Value>> {
        let (mut inner, now) = self.lock();
        reads.iter().map(|read| inner.read(read, now)).collect()
    }

    async fn put_if_absent(&self, key: &Key, value: Bytes, ttl: Duration) -> Result<bool> {
        let (mut inner, now) = self.lock();
        if inner.live(key, now).is_some() {
            return Ok(false);
        }
        // SET NX PX: Redis refuses a PX of 0, so the TTL is at least 1 ms.
        let expires_at = deadline(now, ttl_millis(ttl).max(1));
        inner.entries.insert(key.clone(), Entry { data: Data::Str(value), expires_at });
        Ok(true)
    }

    async fn ttl(&self, key: &Key) -> Result<Option<Duration>> {
        let (mut inner, now) = self.lock();
        Ok(inner
            .live(key, now)
            .and_then(|entry| entry.expires_at)
            .map(|at| at.saturating_duration_since(now)))
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

struct Inner {
    entries: HashMap<Key, Entry>,
    last_sweep: Instant,
    sweep_every: Duration,
}

struct Entry {
    data: Data,
    /// None: no TTL. A deadline too far to represent is stored as None as well.
    expires_at: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

enum Data {
    Str(Bytes),
    /// Head first (LPUSH prepends).
    List(VecDeque<Bytes>),
    Hash(BTreeMap<String, Bytes>),
    Set(BTreeSet<String>),
    Sorted(SortedSet),
}

impl Data {
    /// Redis removes a list, hash, set or sorted set when its last element goes.
    fn is_empty_container(&self) -> bool {
        match self {
            Data::Str(_) => false,
            Data::List(l) => l.is_empty(),
            Data::Hash(h) => h.is_empty(),
            Data::Set(s) => s.is_empty(),
            Data::Sorted(z) => z.scores.is_empty(),
        }
    }
}

fn deadline(now: Instant, millis: u64) -> Option<Instant> {
    now.checked_add(Duration::from_millis(millis))
}

fn wrong_type(key: &Key, expected: &'static str) -> StoreError {
    StoreError::WrongType { key: key.clone(), expected }
}

/// The error Redis replies with (`ERR ...`) for a command it refuses at run time.
fn refused(reason: &'static str) -> StoreError {
    StoreError::Redis(redis::RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
        reason,
    )))
}

/// Typed access to an entry: the `Data` variant a command needs, or WRONGTYPE.
macro_rules! typed {
    ($entry:expr, $variant:ident, $key:expr, $expected:expr) => {
        match &mut $entry.data {
            Data::$variant(inner) => Ok(inner),
            _ => Err(wrong_type($key, $expected)),
        }
    };
}

impl Inner {
    fn sweep_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) >= self.sweep_every {
            self.entries.retain(|_, entry| !entry.expired(now));
            self.last_sweep = now;
        }
    }

    /// The entry of a key that exists and has not expired; an expired one is removed.
    fn live(&mut self, key: &Key, now: Instant) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|entry| entry.expired(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// The live entry of a key, created with `empty` if absent. A write that leaves it empty
    /// must be followed by [`Inner::drop_if_empty`].
    fn live_or_insert(&mut self, key: &Key, now: Instant, empty: fn() -> Data) -> &mut Entry {
        if self.entries.get(key).is_some_and(|entry| entry.expired(now)) {
            self.entries.remove(key);
        }
        self.entries.entry(key.clone()).or_insert_with(|| Entry { data: empty(), expires_at: None })
    }

    fn drop_if_empty(&mut self, key: &Key) {
        if self.entries.get(key).is_some_and(|entry| entry.data.is_empty_container()) {
            self.entries.remove(key);
        }
    }

    fn apply(&mut self, write: &Write, now: Instant) -> Result<()> {
        let (key, result) = match write {
            // LPUSH key value; LTRIM key 0 cap-1 (cap 0 empties the list).
            Write::ListPushCapped { key, value, cap } => {
                let entry = self.live_or_insert(key, now, || Data::List(VecDeque::new()));
                let result = typed!(entry, List, key, LIST).map(|list| {
                    list.push_front(value.clone());
                    list.truncate(*cap);
                });
                (key, result)
            }
            // ZINCRBY key by member: a new member starts at `by`; a NaN increment or result is
            // refused and changes nothing.
            Write::SortedIncr { key, member, by } => {
                if by.is_nan() {
                    return Err(refused("value is not a valid float"));
                }
                let entry = self.live_or_insert(key, now, || Data::Sorted(SortedSet::default()));
                let result = typed!(entry, Sorted, key, SORTED).and_then(|z| z.incr(member, *by));
                (key, result)
            }
            // ZREMRANGEBYRANK key 0 -(keep+1)
            Write::SortedKeepTop { key, keep } => {
                let result = match self.live(key, now) {
                    Some(entry) => typed!(entry, Sorted, key, SORTED).map(|z| z.keep_top(*keep)),
                    None => Ok(()),
                };
                (key, result)
            }
            // HSET key field value
            Write::HashSet { key, field, value } => {
                let entry = self.live_or_insert(key, now, || Data::Hash(BTreeMap::new()));
                let result = typed!(entry, Hash, key, HASH).map(|hash| {
                    hash.insert(field.clone(), value.clone());
                });
                (key, result)
            }
            // HINCRBY key field by
            Write::HashIncr { key, field, by } => {
                let entry = self.live_or_insert(key, now, || Data::Hash(BTreeMap::new()));
                let result = typed!(entry, Hash, key, HASH).and_then(|hash| hash_incr(hash, field, *by));
                (key, result)
            }
            // HDEL key field
            Write::HashDel { key, field } => {
                let result = match self.live(key, now) {
                    Some(entry) => typed!(entry, Hash, key, HASH).map(|hash| {
                        hash.remove(field);
                    }),
                    None => Ok(()),
                };
                (key, result)
            }
            // SADD key member
            Write::SetAdd { key, member } => {
                let entry = self.live_or_insert(key, now, || Data::Set(BTreeSet::new()));
                let result = typed!(entry, Set, key, SET).map(|set| {
                    set.insert(member.clone());
                });
                (key, result)
            }
            // SET key value: replaces a key of any type and clears its TTL.
            Write::Put { key, value } => {
                self.entries.insert(key.clone(), Entry { data: Data::Str(value.clone()), expires_at: None });
                (key, Ok(()))
            }
            // DEL key
            Write::Delete { key } => {
                self.entries.remove(key);
                (key, Ok(()))
            }
            // PEXPIRE key ms: only a live key; 0 ms deletes it.
            Write::Expire { key, ttl } => {
                let millis = ttl_millis(*ttl);
                if millis == 0 {
                    self.entries.remove(key);
                } else if let Some(entry) = self.live(key, now) {
                    entry.expires_at = deadline(now, millis);
                }
                (key, Ok(()))
            }
        };
        self.drop_if_empty(key);
        result
    }

    fn read(&mut self, read: &Read, now: Instant) -> Result<Value> {
        Ok(match read {
            // LRANGE key 0 limit-1 (the Redis store sends nothing for limit 0).
            Read::List { key, limit } => Value::List(match self.live(key, now) {
                Some(entry) if *limit > 0 => {
                    typed!(entry, List, key, LIST)?.iter().take(*limit).cloned().collect()
                }
                _ => Vec::new(),
            }),
            // ZREVRANGE key 0 n-1 WITHSCORES (nothing sent for n 0).
            Read::SortedTop { key, n } => Value::Sorted(match self.live(key, now) {
                Some(entry) if *n > 0 => typed!(entry, Sorted, key, SORTED)?.top(*n),
                _ => Vec::new(),
            }),
            // ZMSCORE key member... (nothing sent without members).
            Read::SortedScores { key, members } => Value::Scores(match self.live(key, now) {
                Some(entry) if !members.is_empty() => {
                    let z = typed!(entry, Sorted, key, SORTED)?;
                    members.iter().map(|m| z.scores.get(m).copied()).collect()
                }
                _ => vec![None; members.len()],
            }),
            // HGETALL key, sorted by field.
            Read::Hash { key } => Value::Hash(match self.live(key, now) {
                Some(entry) => {
                    typed!(entry, Hash, key, HASH)?.iter().map(|(f, v)| (f.clone(), v.clone())).collect()
                }
                None => Vec::new(),
            }),
            // SMEMBERS key, sorted.
            Read::Set { key } => Value::Set(match self.live(key, now) {
                Some(entry) => typed!(entry, Set, key, SET)?.iter().cloned().collect(),
                None => Vec::new(),
            }),
            // GET key
            Read::Get { key } => Value::Get(match self.live(key, now) {
                Some(entry) => Some(typed!(entry, Str, key, STRING)?.clone()),
                None => None,
            }),
            // EXISTS key
            Read::Exists { key } => Value::Exists(self.live(key, now).is_some()),
        })
    }
}

/// HINCRBY on one field: the field must hold a decimal i64 as Redis writes it, and the sum
/// must not overflow; otherwise nothing changes.
fn hash_incr(hash: &mut BTreeMap<String, Bytes>, field: &str, by: i64) -> Result<()> {
    let current = match hash.get(field) {
        None => 0,
        Some(bytes) => parse_redis_int(bytes).ok_or_else(|| refused("hash value is not an integer"))?,
    };
    let sum = current.checked_add(by).ok_or_else(|| refused("increment or decrement would overflow"))?;
    hash.insert(field.to_owned(), Bytes::from(sum.to_string()));
    Ok(())
}

/// An integer as Redis accepts one in a string: optional '-', digits, no '+', no leading zero,
/// no spaces, in range.
fn parse_redis_int(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if canonical { text.parse().ok() } else { None }
}

/// A sorted set score, ordered as Redis orders them (NaN is never stored; -0 equals 0).
#[derive(Debug, Clone, Copy)]
struct Score(f64);

impl Ord for Score {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Score {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Score {}

/// Members by name, and by (score, member) ascending: Redis's rank order.
#[derive(Default)]
struct SortedSet {
    scores: HashMap<String, f64>,
    ranked: BTreeSet<(Score, String)>,
}

impl SortedSet {
    fn incr(&mut self, member: &str, by: f64) -> Result<()> {
        let new = match self.scores.get(member) {
            Some(&old) => {
                let new = old + by;
                if new.is_nan() {
                    return Err(refused("resulting score is not a number (NaN)"));
                }
                self.ranked.remove(&(Score(old), member.to_owned()));
                new
            }
            None => by,
        };
        self.scores.insert(member.to_owned(), new);
        self.ranked.insert((Score(new), member.to_owned()));
        Ok(())
    }

    fn keep_top(&mut self, keep: usize) {
        while self.ranked.len() > keep {
            if let Some((_, member)) = self.ranked.pop_first() {
                self.scores.remove(&member);
            }
        }
    }

    /// Highest first; equal scores by member descending.
    fn top(&self, n: usize) -> Vec<(String, f64)> {
        self.ranked.iter().rev().take(n).map(|(score, member)| (member.clone(), score.0)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(s: &str) -> Key {
        Key(s.to_owned())
    }

    #[tokio::test]
    async fn expired_keys_nobody_touches_are_swept() {
        let store = MemoryStore::with_sweep_interval(Duration::from_millis(20));
        let writes = (0..100)
            .flat_map(|i| {
                let key = key(&format!("k{i}"));
                [
                    Write::Put { key: key.clone(), value: Bytes::from_static(b"v") },
                    Write::Expire { key, ttl: Duration::from_millis(5) },
                ]
            })
            .collect();
        store.write(WriteBatch { writes, atomic: false }).await.unwrap();
        store
            .write(WriteBatch {
                writes: vec![Write::Put { key: key("keep"), value: Bytes::new() }],
                atomic: false,
            })
            .await
            .unwrap();
        assert_eq!(store.inner.lock().unwrap().entries.len(), 101);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // An operation on an unrelated key triggers the sweep.
        store.ttl(&key("other")).await.unwrap();
        let inner = store.inner.lock().unwrap();
        assert_eq!(inner.entries.len(), 1);
        assert!(inner.entries.contains_key(&key("keep")));
    }

    #[test]
    fn redis_integers_are_strict() {
        for ok in ["0", "-1", "42", "9223372036854775807", "-9223372036854775808"] {
            assert!(parse_redis_int(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in ["", "-", "+1", " 1", "1 ", "01", "-0", "1.0", "9223372036854775808", "x"] {
            assert!(parse_redis_int(bad.as_bytes()).is_none(), "{bad}");
        }
    }
}
