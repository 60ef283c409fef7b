//! The feature store.
//!
//! [`FeatureStore`] is a small set of data-structure operations (capped lists, sorted sets,
//! hashes, sets, markers with TTLs) sent as one batch per call, so that every call is a single
//! pipelined round trip. [`RedisStore`] is the product; [`MemoryStore`] is the embedded default
//! for `shopmind all-in-one` without Redis. Both pass the same conformance suite
//! (`tests/conformance.rs`).
//!
//! The store does not know what keys mean: callers (`shopmind-features`) build [`Key`]s with the
//! tenant and a Redis Cluster hash tag in them.

mod memory;
mod redis_store;

use std::time::Duration;

use bytes::Bytes;

pub use memory::MemoryStore;
pub use redis_store::RedisStore;

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
/// A write can fail (a key holding another type: [`StoreError::WrongType`]; a hash field that is
/// not an integer; an increment that overflows or makes a score NaN). As in Redis, a failed write
/// changes nothing and does not stop the batch: every other write of the batch is still applied,
/// in order, and the call returns the error of the first write that failed. See
/// [`WriteBatch::atomic`].
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
    /// Removes a key of any type.
    Delete { key: Key },
    /// Sets the time to live of a key that exists (no effect otherwise).
    Expire { key: Key, ttl: Duration },
}

/// Writes sent together.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    pub writes: Vec<Write>,
    /// Apply as one transaction (Redis MULTI/EXEC): no other client sees the batch half applied
    /// or interleaves its own commands with it. This is isolation, not rollback: exactly as in
    /// Redis, a write that fails when it runs (e.g. [`StoreError::WrongType`]) is skipped, the
    /// other writes of the batch are applied all the same, and the call returns the first
    /// write's error. A non-atomic batch fails the same way, without the isolation.
    /// On Redis Cluster all keys of an atomic batch must share a hash slot.
    pub atomic: bool,
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
    /// Applies the writes in order, in one round trip.
    async fn write(&self, batch: WriteBatch) -> Result<()>;

    /// Answers the reads in order, in one round trip. Absent keys read as empty values.
    async fn read(&self, reads: Vec<Read>) -> Result<Vec<Value>>;

    /// Sets `key` to `value` with a TTL only if it does not exist; true if it was set.
    async fn put_if_absent(&self, key: &Key, value: Bytes, ttl: Duration) -> Result<bool>;

    /// The remaining time to live of a key (None: absent or no TTL).
    async fn ttl(&self, key: &Key) -> Result<Option<Duration>>;

    /// A short name for logs: "redis" or "memory".
    fn kind(&self) -> &'static str;
}
