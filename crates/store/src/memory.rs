//! The in-memory [`FeatureStore`]: one map behind a mutex, with the semantics Redis has for
//! each command the Redis store sends (see the comments on [`Inner::apply`] and
//! [`Inner::read`]), and for the read-modify-writes (`HashSetLatest`, `HashMax`, `HashMin`,
//! `HashDecayAdd`, `CoOccur`) the semantics of the Redis store's script, `write.lua`, step by
//! step: the same checks in the same order, the same f64 arithmetic, the same text written.
//! A batch, its guard included, is applied under one lock.
//!
//! Expired keys behave as absent: they are removed when touched, and a sweep at most once per
//! [`SWEEP_EVERY`] removes the ones nobody touches, so memory stays bounded.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{
    FeatureStore, Key, KeyPattern, Read, Result, StoreError, Value, Write, WriteBatch, Written, ttl_millis,
};

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
    async fn write(&self, batch: WriteBatch) -> Result<Written> {
        // The whole batch runs under one lock, so it is isolated whether atomic or not, and the
        // guard is checked and set in the same step. As in the Redis store's script, a failing
        // write is skipped, the rest of the batch (and the guard) still applies, and the first
        // error is returned.
        let (mut inner, now) = self.lock();
        inner.write(&batch, now)
    }

    async fn write_all(&self, batches: Vec<WriteBatch>) -> Result<Vec<Result<Written>>> {
        // Under one lock, as one script call applies them on Redis.
        let (mut inner, now) = self.lock();
        Ok(batches.iter().map(|batch| inner.write(batch, now)).collect())
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

    async fn scan(&self, pattern: &str) -> Result<Vec<Key>> {
        let (mut inner, now) = self.lock();
        inner.entries.retain(|_, entry| !entry.expired(now));
        let mut keys: Vec<Key> =
            inner.entries.keys().filter(|k| crate::glob_matches(pattern, k.as_str())).cloned().collect();
        keys.sort();
        Ok(keys)
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
    /// One batch, its guard included.
    fn write(&mut self, batch: &WriteBatch, now: Instant) -> Result<Written> {
        if let Some(guard) = &batch.guard
            && self.live(&guard.key, now).is_some()
        {
            return Ok(Written::Skipped);
        }
        let mut first_error = None;
        for write in &batch.writes {
            if let Err(e) = self.apply(write, now) {
                first_error.get_or_insert(e);
            }
        }
        if let Some(guard) = &batch.guard {
            // SET key 1 PX ttl: at least 1 ms, as Redis refuses PX 0.
            let expires_at = deadline(now, ttl_millis(guard.ttl).max(1));
            let marker = Entry { data: Data::Str(Bytes::from_static(b"1")), expires_at };
            self.entries.insert(guard.key.clone(), marker);
        }
        first_error.map_or(Ok(Written::Applied), Err)
    }

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
            // ZREM key member (the key goes when its last member does).
            Write::SortedRemove { key, member } => {
                let result = match self.live(key, now) {
                    Some(entry) => typed!(entry, Sorted, key, SORTED).map(|z| z.remove(member)),
                    None => Ok(()),
                };
                (key, result)
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
            // ZADD key score member (a NaN score is refused before the key is looked at).
            Write::SortedAdd { key, member, score } => {
                if score.is_nan() {
                    return Err(refused("value is not a valid float"));
                }
                let entry = self.live_or_insert(key, now, || Data::Sorted(SortedSet::default()));
                let result = typed!(entry, Sorted, key, SORTED).map(|z| z.set(member, *score));
                (key, result)
            }
            // ZADD key LT score member.
            Write::SortedMin { key, member, score } => {
                if score.is_nan() {
                    return Err(refused("value is not a valid float"));
                }
                let entry = self.live_or_insert(key, now, || Data::Sorted(SortedSet::default()));
                let result = typed!(entry, Sorted, key, SORTED).map(|z| {
                    if z.scores.get(member.as_str()).is_none_or(|old| *score < *old) {
                        z.set(member, *score);
                    }
                });
                (key, result)
            }
            // The script's read-modify-writes on one hash field (`hlatest`, `hmax`, `hmin`,
            // `hdecay` in write.lua).
            Write::HashSetLatest { key, field, value, at_ms } => {
                let entry = self.live_or_insert(key, now, || Data::Hash(BTreeMap::new()));
                let result = typed!(entry, Hash, key, HASH)
                    .and_then(|hash| hash_set_latest(hash, field, value, *at_ms));
                (key, result)
            }
            Write::HashMax { key, field, value } => {
                let entry = self.live_or_insert(key, now, || Data::Hash(BTreeMap::new()));
                let result = typed!(entry, Hash, key, HASH)
                    .and_then(|hash| hash_bound(hash, field, *value, Ordering::Greater));
                (key, result)
            }
            Write::HashMin { key, field, value } => {
                let entry = self.live_or_insert(key, now, || Data::Hash(BTreeMap::new()));
                let result = typed!(entry, Hash, key, HASH)
                    .and_then(|hash| hash_bound(hash, field, *value, Ordering::Less));
                (key, result)
            }
            Write::HashDecayAdd { key, field, weight, at_ms, half_life } => {
                let entry = self.live_or_insert(key, now, || Data::Hash(BTreeMap::new()));
                let result = typed!(entry, Hash, key, HASH)
                    .and_then(|hash| hash_decay_add(hash, field, *weight, *at_ms, *half_life));
                (key, result)
            }
            Write::CoOccur {
                window_set,
                member,
                at_ms,
                window,
                cap,
                counted,
                counted_cap,
                neighbours,
                keep,
            } => {
                let args = CoOccur {
                    window_set,
                    member,
                    at_ms: *at_ms,
                    window: ttl_millis(*window) as f64,
                    cap: *cap,
                    counted,
                    counted_cap: *counted_cap,
                    neighbours,
                    keep: *keep,
                };
                (window_set, self.co_occur(&args, now))
            }
        };
        self.drop_if_empty(key);
        result
    }

    /// Fails with WRONGTYPE if `key` exists and is not a sorted set.
    fn check_sorted(&mut self, key: &Key, now: Instant) -> Result<()> {
        match self.live(key, now) {
            Some(entry) if !matches!(entry.data, Data::Sorted(_)) => Err(wrong_type(key, SORTED)),
            _ => Ok(()),
        }
    }

    /// The sorted set at `key`, created if absent (follow with [`Inner::drop_if_empty`]).
    fn sorted_mut(&mut self, key: &Key, now: Instant) -> Result<&mut SortedSet> {
        let entry = self.live_or_insert(key, now, || Data::Sorted(SortedSet::default()));
        typed!(entry, Sorted, key, SORTED)
    }

    /// `ops.cooccur` of write.lua, step by step: every key is checked before anything changes.
    fn co_occur(&mut self, args: &CoOccur<'_>, now: Instant) -> Result<()> {
        let CoOccur { window_set, member, at_ms, window, cap, counted, counted_cap, neighbours, keep } =
            *args;
        let at = at_ms as f64;
        let occurrence = format!("{member}|{at_ms}");
        self.check_sorted(window_set, now)?;
        self.check_sorted(counted, now)?;
        let others = match self.live(window_set, now) {
            None => Vec::new(),
            Some(entry) => {
                let z = typed!(entry, Sorted, window_set, SORTED)?;
                if z.scores.contains_key(&occurrence) {
                    return Ok(());
                }
                z.range_by_score(at - window, at + window)
            }
        };
        // The distinct members of the occurrences within the window, but this one, ascending.
        let partners: BTreeSet<&str> = others
            .iter()
            .filter_map(|other| other.rsplit_once('|').map(|(partner, _)| partner))
            .filter(|partner| *partner != member)
            .collect();
        // Those paired with `member` for the first time, with their pair.
        let new: Vec<(&str, String)> = {
            let done = match self.live(counted, now) {
                Some(entry) => Some(&*typed!(entry, Sorted, counted, SORTED)?),
                None => None,
            };
            partners
                .into_iter()
                .map(|partner| (partner, pair(member, partner)))
                .filter(|(_, pair)| done.is_none_or(|z| !z.scores.contains_key(pair)))
                .collect()
        };
        if !new.is_empty() {
            let own = neighbours.key(member);
            self.check_sorted(&own, now)?;
            for (partner, _) in &new {
                self.check_sorted(&neighbours.key(partner), now)?;
            }
            for (partner, pair) in &new {
                let theirs = neighbours.key(partner);
                self.sorted_mut(counted, now)?.set(pair, at);
                self.sorted_mut(&own, now)?.incr(partner, 1.0)?;
                let z = self.sorted_mut(&theirs, now)?;
                z.incr(member, 1.0)?;
                z.keep_top(keep);
                self.drop_if_empty(&theirs);
            }
            self.sorted_mut(&own, now)?.keep_top(keep);
            self.drop_if_empty(&own);
        }
        let z = self.sorted_mut(window_set, now)?;
        z.set(&occurrence, at);
        z.keep_top(cap);
        self.drop_if_empty(window_set);
        if let Some(entry) = self.live(counted, now) {
            typed!(entry, Sorted, counted, SORTED)?.keep_top(counted_cap);
        }
        self.drop_if_empty(counted);
        Ok(())
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
            // ZRANGE key min max BYSCORE LIMIT 0 limit WITHSCORES (nothing sent for limit 0).
            Read::SortedRange { key, min, max, limit } => Value::Sorted(match self.live(key, now) {
                Some(entry) if *limit > 0 => {
                    typed!(entry, Sorted, key, SORTED)?.range_with_scores(*min, *max, *limit)
                }
                _ => Vec::new(),
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

/// The arguments of a [`Write::CoOccur`], the window in milliseconds as scores take it.
#[derive(Clone, Copy)]
struct CoOccur<'a> {
    window_set: &'a Key,
    member: &'a str,
    at_ms: i64,
    window: f64,
    cap: usize,
    counted: &'a Key,
    counted_cap: usize,
    neighbours: &'a KeyPattern,
    keep: usize,
}

/// The member of a counted set for the pair of `a` and `b`: the smaller first (byte-wise).
fn pair(a: &str, b: &str) -> String {
    if a < b { format!("{a} {b}") } else { format!("{b} {a}") }
}

/// A field holding `<head>|<tail>`, split at the first `|`.
fn split_bar(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let bar = raw.iter().position(|&b| b == b'|')?;
    Some((&raw[..bar], &raw[bar + 1..]))
}

/// [`Write::HashSetLatest`] on one field: the later stamp wins, then the larger value (bytes).
fn hash_set_latest(hash: &mut BTreeMap<String, Bytes>, field: &str, value: &str, at_ms: i64) -> Result<()> {
    if let Some(current) = hash.get(field) {
        let (at, old) = split_bar(current)
            .and_then(|(at, old)| Some((parse_redis_int(at)?, old)))
            .ok_or_else(|| refused("hash value is not a stamped value"))?;
        if at_ms.cmp(&at).then_with(|| value.as_bytes().cmp(old)) != Ordering::Greater {
            return Ok(());
        }
    }
    hash.insert(field.to_owned(), Bytes::from(format!("{at_ms}|{value}")));
    Ok(())
}

/// [`Write::HashMax`] (`wins` Greater) or [`Write::HashMin`] (`wins` Less) on one field.
fn hash_bound(hash: &mut BTreeMap<String, Bytes>, field: &str, value: i64, wins: Ordering) -> Result<()> {
    if let Some(current) = hash.get(field) {
        let current = parse_redis_int(current).ok_or_else(|| refused("hash value is not an integer"))?;
        if value.cmp(&current) != wins {
            return Ok(());
        }
    }
    hash.insert(field.to_owned(), Bytes::from(value.to_string()));
    Ok(())
}

/// [`Write::HashDecayAdd`] on one field, computed exactly as write.lua computes it.
fn hash_decay_add(
    hash: &mut BTreeMap<String, Bytes>,
    field: &str,
    weight: f64,
    at_ms: i64,
    half_life: Duration,
) -> Result<()> {
    if !weight.is_finite() {
        return Err(refused("weight is not a finite number"));
    }
    let h = half_life.as_millis() as f64;
    let (score, reference) = match hash.get(field) {
        None => (weight, at_ms),
        Some(current) => {
            let (old, reference) = split_bar(current)
                .and_then(|(score, reference)| Some((parse_score(score)?, parse_redis_int(reference)?)))
                .ok_or_else(|| refused("hash value is not a decaying score"))?;
            if at_ms >= reference {
                (old * decay(at_ms as f64 - reference as f64, h) + weight, at_ms)
            } else {
                (old + weight * decay(reference as f64 - at_ms as f64, h), reference)
            }
        }
    };
    if !score.is_finite() {
        return Err(refused("resulting score is not a finite number"));
    }
    hash.insert(field.to_owned(), Bytes::from(format!("{}|{reference}", format_g17(score))));
    Ok(())
}

/// `2^-(dt/h)`, or 1 for `h` 0 (no decay). `pow(2, x)` as Lua's `2 ^ x` calls it: the base is
/// hidden from the optimiser, which would otherwise call `exp2` (which may round differently).
fn decay(dt: f64, h: f64) -> f64 {
    if h > 0.0 { std::hint::black_box(2f64).powf(-(dt / h)) } else { 1.0 }
}

/// A decaying score as write.lua accepts one: `-` or a digit first, then only digits, `.`,
/// `e`, `E`, `+` and `-`; finite.
fn parse_score(raw: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(raw).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let shaped = digits.starts_with(|c: char| c.is_ascii_digit())
        && digits.bytes().all(|b| b.is_ascii_digit() || b".eE+-".contains(&b));
    let score: f64 = if shaped { text.parse().ok()? } else { return None };
    score.is_finite().then_some(score)
}

/// `x` as C's `printf("%.17g", x)` writes it (which is what write.lua stores), so that both
/// stores hold the same text: 17 significant digits without trailing zeros, in exponent form
/// (at least two exponent digits) when the exponent is below -4 or above 16.
fn format_g17(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    // Exactly rounded to 17 significant digits, as printf rounds.
    let scientific = format!("{x:.16e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else { return scientific };
    let Ok(exponent) = exponent.parse::<i32>() else { return scientific };
    fn trim(digits: &str) -> &str {
        if digits.contains('.') { digits.trim_end_matches('0').trim_end_matches('.') } else { digits }
    }
    if !(-4..17).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.unsigned_abs())
    } else {
        let decimals = usize::try_from(16 - exponent).unwrap_or(0);
        trim(&format!("{x:.decimals$}")).to_owned()
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

    /// ZADD: sets the score of a member, adding it if absent.
    fn set(&mut self, member: &str, score: f64) {
        if let Some(old) = self.scores.insert(member.to_owned(), score) {
            self.ranked.remove(&(Score(old), member.to_owned()));
        }
        self.ranked.insert((Score(score), member.to_owned()));
    }

    /// ZRANGEBYSCORE min max: the members scored within `[min, max]`, in rank order.
    fn range_by_score(&self, min: f64, max: f64) -> Vec<String> {
        self.ranked
            .range((Score(min), String::new())..)
            .take_while(|(score, _)| score.0 <= max)
            .map(|(_, member)| member.clone())
            .collect()
    }

    /// ZRANGE BYSCORE WITHSCORES LIMIT 0 limit: lowest first.
    fn range_with_scores(&self, min: f64, max: f64, limit: usize) -> Vec<(String, f64)> {
        if min.is_nan() || max.is_nan() {
            return Vec::new();
        }
        self.ranked
            .range((Score(min), String::new())..)
            .take_while(|(score, _)| score.0 <= max)
            .take(limit)
            .map(|(score, member)| (member.clone(), score.0))
            .collect()
    }

    /// ZREM: removes a member if present.
    fn remove(&mut self, member: &str) {
        if let Some(old) = self.scores.remove(member) {
            self.ranked.remove(&(Score(old), member.to_owned()));
        }
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
        store.write(WriteBatch { writes, atomic: false, guard: None }).await.unwrap();
        store
            .write(WriteBatch {
                writes: vec![Write::Put { key: key("keep"), value: Bytes::new() }],
                atomic: false,
                guard: None,
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

    #[test]
    fn scores_are_written_as_printf_g17_writes_them() {
        // Expected texts from C's printf("%.17g") (as Python's "%.17g" % x).
        let cases = [
            (0.1, "0.10000000000000001"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.33333333333333331"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (-1e-7, "-9.9999999999999995e-08"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (123_456_789_012_345_680.0, "1.2345678901234568e+17"),
            (1e21, "1e+21"),
            (1e308, "1e+308"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "4.9406564584124654e-324"),
            (0.0, "0"),
            (-0.0, "-0"),
        ];
        for (x, want) in cases {
            assert_eq!(format_g17(x), want, "{x:?}");
            assert_eq!(want.parse::<f64>().unwrap().to_bits(), x.to_bits(), "{want} round-trips");
        }
    }

    #[test]
    fn decaying_scores_parse_as_written() {
        for (text, want) in [("1", 1.0), ("-2.5", -2.5), ("1e+21", 1e21), ("1.0000000000000001e-05", 1e-5)] {
            assert_eq!(parse_score(text.as_bytes()), Some(want), "{text}");
        }
        for bad in ["", "-", "x", "+1", ".5", " 1", "1 ", "inf", "nan", "1e999", "0x10", "1,5"] {
            assert_eq!(parse_score(bad.as_bytes()), None, "{bad}");
        }
    }
}
