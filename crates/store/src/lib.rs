//! The feature store.
//!
//! [`FeatureStore`] is a small set of data-structure operations (capped lists, sorted sets,
//! hashes, sets, markers with TTLs) sent as one batch per call, so that every call is a single
//! round trip. [`RedisStore`] is the product; [`MemoryStore`] is the embedded default for
//! `shopmind all-in-one` without Redis. Both pass the same conformance suite
//! (`tests/conformance.rs`), which runs every case against both.
//!
//! The store does not know what keys mean: callers (`shopmind-features`) build [`Key`]s with the
//! tenant and a Redis Cluster hash tag in them.
//!
//! # Writes that commute, applied once
//!
//! The feature service runs as several replicas sharing one durable consumer, so the events of
//! one user can be applied concurrently and in any order, and an event can be delivered twice.
//! Two kinds of write make that safe:
//!
//! * **Commutative writes**, whose final state does not depend on the order they arrive in:
//!   [`Write::SortedIncr`], [`Write::HashIncr`], [`Write::SortedAdd`] of distinct members
//!   followed by [`Write::SortedKeepTop`], [`Write::SortedMin`], [`Write::HashSetLatest`] (a last-writer-wins register
//!   by event time), [`Write::HashMax`], [`Write::HashMin`], [`Write::HashDecayAdd`] (an
//!   exponentially decaying sum, equal up to floating-point rounding) and [`Write::CoOccur`]
//!   (pairs within a time window, each counted once per owner: order-independent as long as
//!   its `cap`, `counted_cap` and `keep` trim nothing that matters).
//! * **A guard** ([`WriteBatch::guard`]): the batch carrying one event's whole effect is applied
//!   only if the guard key (named after the event) is absent, and creates it in the same atomic
//!   step; a second delivery, even a concurrent one, returns [`Written::Skipped`].
//!
//! # How each backend applies a batch
//!
//! [`RedisStore`] sends every batch (or every list of batches, [`FeatureStore::write_all`]) as
//! one `EVALSHA` of one Lua script that interprets an encoded list of writes (`KEYS`: the guard
//! key, then the keys each write names: one, or two for `CoOccur`; `ARGV`: a header per batch,
//! then op codes and arguments, numbers as strings that round-trip). Within one call, a key's
//! TTL is set once per TTL value while the key lives ([`Write::Expire`] again with the same TTL
//! would set the same deadline, as Redis runs a script as of one instant), so a call carrying
//! many events of one user refreshes each of its keys once. Redis runs a script atomically, so every
//! batch is isolated, guarded or not. The read-modify-writes (`HashSetLatest`, `HashMax`,
//! `HashMin`, `HashDecayAdd`, `CoOccur`) run inside the script. `CoOccur` computes the neighbour
//! keys of the partners it finds inside the script, which is fine on standalone Redis; on Redis
//! Cluster they would have to be declared in `KEYS` and share the batch's hash slot.
//! [`MemoryStore`] applies a batch under one mutex, with the guard checked and set under the
//! same lock.

//!
//! # Adding a write
//!
//! A new [`Write`] variant needs: its encoding in `redis_store.rs` (`encode`: its keys, an op
//! code and a fixed number of arguments; `write_type` for WRONGTYPE errors); in `write.lua`, a
//! function `ops.<code>(k, a)` reading its keys from `KEYS[k]...` and its arguments from
//! `ARGV[a]...`, its argument count in `ARITY` (and its key count in `KEY_COUNT` if not 1), and,
//! before it writes, `wrote(key)` for each key it may create or `reset(key)` for each key it
//! may delete or whose TTL it may clear (the script sets a key's TTL once per call and relies on
//! these); its mirror in `memory.rs` (`Inner::apply`), same checks, same text written; and a
//! case in `tests/conformance.rs`, which runs on both backends.

mod memory;
mod redis_store;

use std::time::Duration;

use bytes::Bytes;

pub use memory::MemoryStore;
pub use redis_store::{RedisSecurity, RedisStore};

/// A store key. Build keys through the keyspace of `shopmind-features`, never ad hoc.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key(pub String);

impl Key {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One write. A batch of writes is applied in order, in one round trip.
///
/// A write can fail (a key holding another type: [`StoreError::WrongType`], naming the key; a
/// hash field that does not hold what the write needs; a NaN score; an increment that overflows
/// or makes a score NaN; a decaying score that is not finite: [`StoreError::Redis`]). As in
/// Redis, a failed write changes nothing and does not stop the batch: every other write of the
/// batch is still applied, in order, and the call returns the error of the first write that
/// failed. A write that touches several keys ([`Write::CoOccur`]) checks all of them before it
/// changes any, so it too fails as a whole. See [`WriteBatch::atomic`] and [`WriteBatch::guard`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Prepends `value` to the list and keeps only the newest `cap` entries.
    ListPushCapped { key: Key, value: Bytes, cap: usize },
    /// Adds `by` to the score of `member` in a sorted set (creating it at 0).
    SortedIncr { key: Key, member: String, by: f64 },
    /// Keeps only the `keep` highest-scored members of a sorted set.
    SortedKeepTop { key: Key, keep: usize },
    /// Sets a field of a hash.
    HashSet { key: Key, field: String, value: Bytes },
    /// Adds `by` to an integer field of a hash (creating it at 0).
    HashIncr { key: Key, field: String, by: i64 },
    /// Removes a field of a hash.
    HashDel { key: Key, field: String },
    /// Adds a member to a set.
    SetAdd { key: Key, member: String },
    /// Sets a plain value.
    Put { key: Key, value: Bytes },
    /// Removes a member of a sorted set (ZREM); absent members and keys change nothing.
    SortedRemove { key: Key, member: String },
    /// Removes a key of any type.
    Delete { key: Key },
    /// Sets the time to live of a key that exists (no effect otherwise).
    Expire { key: Key, ttl: Duration },
    /// Adds `member` to a sorted set with `score`, or sets its score if it is a member
    /// (ZADD). A NaN score is refused.
    SortedAdd { key: Key, member: String, score: f64 },
    /// Adds `member` with `score`, or lowers its score to `score` if that is lower (ZADD LT): the
    /// member keeps the lowest score ever written, whatever the order. A NaN score is refused.
    SortedMin { key: Key, member: String, score: f64 },
    /// A last-writer-wins register in a hash field, by event time: sets the field to `value`
    /// stamped `at_ms` unless it holds a value stamped later (equal stamps: the larger value
    /// wins), so the outcome does not depend on the order writes arrive in. The field holds
    /// `<at_ms>|<value>`; read it with [`stamped`]. Equal stamps compare values byte by byte;
    /// equal stamp and value change nothing. A field that does not hold `<integer>|...` is
    /// refused.
    HashSetLatest { key: Key, field: String, value: String, at_ms: i64 },
    /// Sets an integer field to the larger of its value and `value` (creating it at `value`).
    /// A field that does not hold an integer (as `HashIncr` writes one) is refused.
    HashMax { key: Key, field: String, value: i64 },
    /// Sets an integer field to the smaller of its value and `value` (creating it at `value`).
    /// A field that does not hold an integer is refused.
    HashMin { key: Key, field: String, value: i64 },
    /// Adds `weight` at time `at_ms` to an exponentially decaying score with half-life
    /// `half_life`. The field holds `<score>|<ref_ms>`: the score as of `ref_ms`, the latest time
    /// added so far. Adding at `t >= ref`: `score * 2^-((t - ref) / h) + weight`, and `ref = t`;
    /// at `t < ref`: `score + weight * 2^-((ref - t) / h)`. The result is the same in any order
    /// (up to floating-point rounding). Read it with [`decayed`].
    ///
    /// `h` is the half-life in whole milliseconds (truncated, as [`decayed`] does); 0 means no
    /// decay (a plain sum). The score is written as C's `%.17g` writes it (exact, and the same
    /// text on both backends). A weight or a result that is not finite is refused, and so is a
    /// field that does not hold `<number>|<integer>`.
    HashDecayAdd { key: Key, field: String, weight: f64, at_ms: i64, half_life: Duration },
    /// Counts co-occurrences within a time window, each pair once per owner, in any order.
    ///
    /// `window_set` (one per owner, e.g. per user) is a sorted set of occurrences: members
    /// `<member>|<at_ms>` scored by `at_ms`. `counted` (one per owner as well) is a sorted set
    /// of the pairs counted so far: members `<a> <b>`, the two members in byte order (member
    /// names must not contain whitespace), scored by the `at_ms` of the write that counted them.
    ///
    /// If the occurrence `<member>|<at_ms>` is already in `window_set`, nothing changes (the
    /// write is idempotent). Otherwise, for every distinct member `m` other than `member` that
    /// has an occurrence scored within `[at_ms - window, at_ms + window]`, in ascending order of
    /// `m`, whose pair with `member` is not in `counted` yet: the pair is added to `counted`
    /// (scored `at_ms`), `m` gains 1 in the sorted set `neighbours.key(member)` and `member` gains
    /// 1 in `neighbours.key(m)`, which is then trimmed to its `keep` highest; after them (if
    /// there were any), `neighbours.key(member)` is trimmed to its `keep` highest. Last, the
    /// occurrence is added to `window_set`, which is trimmed to its newest `cap`, and `counted`
    /// is trimmed to its newest `counted_cap`. Nothing is removed by time.
    ///
    /// So a pair is counted once per owner as soon as some occurrence of one is within `window`
    /// of some occurrence of the other, whatever the order they arrive in, and repeated
    /// occurrences never count again: the neighbour counts are the same in any order (and with repeats) as
    /// long as `cap`, `counted_cap` and `keep` trim nothing that matters (a pair trimmed from
    /// `counted` can be counted again).
    ///
    /// Precisely: `window` is in whole milliseconds, rounded up; the window is inclusive at both
    /// ends. Members of `window_set` without a `|` (not written by this write) are ignored; the
    /// member of an occurrence is the text before its last `|`. Trimming removes the lowest
    /// ranks: the oldest (ties: the smaller occurrence or pair) and the lowest counts (ties: the
    /// smaller member name); `cap`, `counted_cap` or `keep` 0 empties the set. Every key written
    /// is checked for its type before anything changes: `window_set` and `counted` always (even
    /// when the occurrence is already there), then, if a pair is to be counted,
    /// `neighbours.key(member)` and `neighbours.key(m)` for each such `m` in ascending order; a
    /// [`StoreError::WrongType`] names the first bad one and the write changes nothing.
    ///
    /// On Redis the write's declared keys are `window_set` and `counted`; the neighbour keys
    /// are computed inside the script, which standalone Redis allows but Redis Cluster would
    /// not (it would need them declared, in the same hash slot).
    CoOccur {
        window_set: Key,
        member: String,
        at_ms: i64,
        window: Duration,
        cap: usize,
        counted: Key,
        counted_cap: usize,
        neighbours: KeyPattern,
        keep: usize,
    },
}

/// Keys derived from a member: `prefix + member + suffix` (e.g. `sm:{acme:i:` + item + `}:covisit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPattern {
    pub prefix: String,
    pub suffix: String,
}

impl KeyPattern {
    pub fn key(&self, member: &str) -> Key {
        Key(format!("{}{member}{}", self.prefix, self.suffix))
    }
}

/// An idempotency guard: the batch is applied only if `key` does not exist (holding any type),
/// and `key` is created (a string, with `ttl` rounded up to whole milliseconds, at least 1) in
/// the same atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    pub key: Key,
    pub ttl: Duration,
}

/// Whether a batch was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The writes were applied (every batch without a guard is).
    Applied,
    /// Its guard key existed: nothing was written.
    Skipped,
}

/// The value and time of a [`Write::HashSetLatest`] field.
pub fn stamped(raw: &[u8]) -> Option<(i64, &str)> {
    let s = std::str::from_utf8(raw).ok()?;
    let (at, value) = s.split_once('|')?;
    Some((at.parse().ok()?, value))
}

/// The value at `now_ms` of a [`Write::HashDecayAdd`] field with half-life `half_life`.
pub fn decayed(raw: &[u8], now_ms: i64, half_life: Duration) -> Option<f64> {
    let s = std::str::from_utf8(raw).ok()?;
    let (score, at) = s.split_once('|')?;
    let (score, at): (f64, i64) = (score.parse().ok()?, at.parse().ok()?);
    let h = half_life.as_millis() as f64;
    if h <= 0.0 {
        return Some(score);
    }
    // In f64, as the writes compute it (an i64 difference could overflow).
    Some(score * 2f64.powf(-((now_ms as f64 - at as f64) / h)))
}

/// Writes sent together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub writes: Vec<Write>,
    /// Apply as one transaction: no other client sees the batch half applied or interleaves its
    /// own commands with it. This is isolation, not rollback: exactly as in Redis, a write that
    /// fails when it runs (e.g. [`StoreError::WrongType`]) is skipped, the other writes of the
    /// batch are applied all the same, and the call returns the first write's error.
    ///
    /// Both backends currently apply *every* batch atomically (Redis: one Lua script; memory:
    /// one lock), so `false` only says that the caller does not need it. A batch that needs it
    /// must still say so: on Redis Cluster all keys of an atomic batch must share a hash slot.
    pub atomic: bool,
    /// Apply only if the guard key is absent, creating it atomically with the writes (which
    /// makes the batch atomic too): a batch carrying an event's effect and a guard named after
    /// the event is applied once, however often it is sent, even by concurrent writers.
    ///
    /// If the guard key exists, nothing is written and the call returns [`Written::Skipped`].
    /// Otherwise the writes are applied as in any batch and the guard key is set, *also when a
    /// write failed*: the call then returns that write's error, and the effect of the other
    /// writes stays applied exactly once (a retry is skipped rather than counting them twice).
    pub guard: Option<Guard>,
}

/// One read. A batch of reads is answered in order, in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// The first `limit` entries of a list (newest first for lists built by `ListPushCapped`).
    List { key: Key, limit: usize },
    /// The `n` highest-scored members of a sorted set, highest first (ties: member descending).
    SortedTop { key: Key, n: usize },
    /// The scores of the given members (None where absent).
    SortedScores { key: Key, members: Vec<String> },
    /// The members scored within `[min, max]` (infinities allowed), lowest first (ties: member
    /// ascending), at most `limit` (ZRANGE BYSCORE LIMIT 0 limit). Answered as [`Value::Sorted`].
    SortedRange { key: Key, min: f64, max: f64, limit: usize },
    /// All fields of a hash.
    Hash { key: Key },
    /// All members of a set.
    Set { key: Key },
    /// A plain value.
    Get { key: Key },
    /// Whether the key exists.
    Exists { key: Key },
}

/// The answer to one [`Read`], of the matching variant.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    List(Vec<Bytes>),
    Sorted(Vec<(String, f64)>),
    Scores(Vec<Option<f64>>),
    /// Fields sorted by name.
    Hash(Vec<(String, Bytes)>),
    /// Members sorted.
    Set(Vec<String>),
    Get(Option<Bytes>),
    Exists(bool),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("invalid store url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("redis at {url} refused the credentials: {reason}")]
    Unauthorized { url: String, reason: String },
    #[error("key {key} holds another type than {expected}")]
    WrongType { key: Key, expected: &'static str },
    #[error("unexpected reply to {op}: {reply}")]
    UnexpectedReply { op: &'static str, reply: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The longest TTL sent to Redis, in milliseconds (about 73 million years): longer ones would
/// overflow its clock arithmetic and be refused.
const MAX_TTL_MILLIS: u64 = (i64::MAX / 4) as u64;

/// A TTL in whole milliseconds, rounded up (so that a positive TTL never becomes 0, which
/// Redis takes as "expire now") and capped at [`MAX_TTL_MILLIS`]. Both backends use it.
pub(crate) fn ttl_millis(ttl: Duration) -> u64 {
    let rounded_up = ttl.as_millis() + u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000));
    u64::try_from(rounded_up).map_or(MAX_TTL_MILLIS, |ms| ms.min(MAX_TTL_MILLIS))
}

#[async_trait::async_trait]
pub trait FeatureStore: Send + Sync + 'static {
    /// Applies the writes in order, in one round trip: [`Written::Applied`], or
    /// [`Written::Skipped`] when the batch's guard key existed. An error is the first failed
    /// write's (see [`Write`]); the other writes, and the guard, were applied.
    async fn write(&self, batch: WriteBatch) -> Result<Written>;

    /// Applies several batches in one round trip, one after another in the given order, each
    /// exactly as [`FeatureStore::write`] applies it alone (its guard, its writes in order, its
    /// first error): one result per batch. An outer error means the round trip failed, and any
    /// of the batches may or may not have been applied (their guards make a retry safe).
    ///
    /// The default sends one [`FeatureStore::write`] after another (for wrappers, e.g. in
    /// tests); both backends override it.
    async fn write_all(&self, batches: Vec<WriteBatch>) -> Result<Vec<Result<Written>>> {
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            results.push(self.write(batch).await);
        }
        Ok(results)
    }

    /// Answers the reads in order, in one round trip. Absent keys read as empty values.
    async fn read(&self, reads: Vec<Read>) -> Result<Vec<Value>>;

    /// Sets `key` to `value` with a TTL only if it does not exist; true if it was set.
    async fn put_if_absent(&self, key: &Key, value: Bytes, ttl: Duration) -> Result<bool>;

    /// The remaining time to live of a key (None: absent or no TTL).
    async fn ttl(&self, key: &Key) -> Result<Option<Duration>>;

    /// Every live key matching a glob `pattern` (`*` any run of characters, `?` one character,
    /// `\\` before a character: that character literally; build patterns with [`glob_escape`]),
    /// sorted. Walks the whole keyspace (Redis `SCAN ... MATCH`, in steps, never blocking the
    /// server): for administrative work such as erasing a customer, not for serving paths.
    async fn scan(&self, pattern: &str) -> Result<Vec<Key>>;

    /// A short name for logs: "redis" or "memory".
    fn kind(&self) -> &'static str;
}

/// `text` with the glob characters of [`FeatureStore::scan`] patterns (`*`, `?`, `[`, `]`, `\\`)
/// escaped, so that it matches only itself.
pub fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Whether `text` matches the glob `pattern` (as [`FeatureStore::scan`] defines it).
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => {
                pi += 1;
                ti += 1;
                continue;
            }
            Some('\\') if p.get(pi + 1) == Some(&t[ti]) => {
                pi += 2;
                ti += 1;
                continue;
            }
            Some(&c) if c != '\\' && c == t[ti] => {
                pi += 1;
                ti += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn globs_match_as_redis_does() {
        assert!(glob_matches("sm:{a:u:*}:*", "sm:{a:u:bob}:recent"));
        assert!(!glob_matches("sm:{a:u:*}:*", "sm:{a:i:bob}:recent"));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("**x", "abx"));
        let id = "we*rd?[id]\\";
        let pattern = format!("k:{}:*", glob_escape(id));
        assert!(glob_matches(&pattern, &format!("k:{id}:v")));
        assert!(!glob_matches(&pattern, "k:weXrd?[id]\\:v"));
    }

    #[test]
    fn stamped_splits_at_the_first_bar() {
        assert_eq!(stamped(b"5|a|b"), Some((5, "a|b")));
        assert_eq!(stamped(b"-10|"), Some((-10, "")));
        assert_eq!(stamped(b"9223372036854775807|x"), Some((i64::MAX, "x")));
        for bad in [&b"5"[..], b"x|a", b"|a", b"", b"5|\xff"] {
            assert_eq!(stamped(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn decayed_halves_per_half_life() {
        let h = Duration::from_secs(1);
        assert_eq!(decayed(b"2|1000", 1000, h), Some(2.0));
        assert_eq!(decayed(b"2|1000", 3000, h), Some(0.5));
        // Before the reference time the score is larger: the same curve, backwards.
        assert_eq!(decayed(b"2|1000", 0, h), Some(4.0));
        assert_eq!(decayed(b"2.5|1000", 99_000, Duration::ZERO), Some(2.5));
        assert_eq!(decayed(b"1|-9223372036854775808", i64::MAX, h), Some(0.0), "no overflow");
        for bad in [&b"2"[..], b"x|1", b"2|x", b"2|1.5", b""] {
            assert_eq!(decayed(bad, 0, h), None, "{bad:?}");
        }
    }
}
