//! The Redis [`FeatureStore`]: each call is one round trip over a [`ConnectionManager`] (which
//! reconnects by itself). Reads are one pipeline; a write batch, or several
//! ([`FeatureStore::write_all`]), is one call of the Lua script `write.lua` (EVALSHA, loaded on
//! first use), which applies each batch atomically, guard included. The script gets the keys each write names (one per write, two for `CoOccur`: its
//! window set and its counted pairs; the guard key first), so a batch's declared keys are
//! exactly the keys it names; the neighbour keys of `CoOccur` are computed inside the script,
//! which standalone Redis allows and Redis Cluster would not. Needs Redis 6.2 or later
//! (`ZMSCORE`).

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use redis::Value as Reply;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::{FeatureStore, Key, Read, Result, StoreError, Value, Write, WriteBatch, Written, ttl_millis};

/// The script that applies a write batch; see the comment at its top for its interface.
static WRITE_SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("write.lua")));

const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts after a failed connection (at start and on reconnects), with backoff up to
/// [`MAX_RETRY_DELAY`]; a call fails rather than waiting long for Redis to come back.
const CONNECTION_RETRIES: usize = 3;
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// How much of an unexpected reply an error message quotes.
const REPLY_QUOTE_CHARS: usize = 200;

/// The feature store on Redis (standalone). Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").finish_non_exhaustive()
    }
}

/// Credentials and TLS roots for Redis beyond what the URL says.
#[derive(Clone, Default)]
pub struct RedisSecurity {
    /// ACL user name (overrides the URL's).
    pub username: Option<String>,
    /// Password (overrides the URL's).
    pub password: Option<String>,
    /// PEM CA certificates a `rediss://` server's certificate is checked against, instead of the
    /// platform's roots.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSecurity")
            .field("username", &self.username)
            .field("password", &self.password.is_some())
            .field("ca_pem", &self.ca_pem.is_some())
            .finish()
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`). Errors name the URL
    /// without its credentials.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_secure(url, &RedisSecurity::default()).await
    }

    /// [`RedisStore::connect`] with credentials and TLS roots. A refused password is
    /// [`StoreError::Unauthorized`].
    pub async fn connect_secure(url: &str, security: &RedisSecurity) -> Result<Self> {
        let shown = redact_url(url);
        let invalid =
            |e: redis::RedisError| StoreError::InvalidUrl { url: shown.clone(), reason: e.to_string() };
        let mut info = redis::IntoConnectionInfo::into_connection_info(url).map_err(invalid)?;
        let mut settings = info.redis_settings().clone();
        if let Some(user) = &security.username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &security.password {
            settings = settings.set_password(password);
        }
        info = info.set_redis_settings(settings);
        let client = match &security.ca_pem {
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) },
            ),
            None => redis::Client::open(info),
        }
        .map_err(invalid)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECTION_TIMEOUT))
            .set_number_of_retries(CONNECTION_RETRIES)
            .set_max_delay(MAX_RETRY_DELAY);
        let refused = |e: &redis::RedisError| {
            e.kind() == redis::ErrorKind::AuthenticationFailed
                || e.code().is_some_and(|c| ["NOAUTH", "WRONGPASS"].contains(&c))
        };
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(|e| {
            if refused(&e) {
                return StoreError::Unauthorized { url: shown.clone(), reason: e.to_string() };
            }
            StoreError::Redis(redis::RedisError::from((
                e.kind(),
                "cannot connect",
                format!("to {shown}: {e}"),
            )))
        })?;
        let store = Self { conn };
        // One round trip at start: a server that wants (other) credentials says so now, not at
        // the first read.
        match store.ping().await {
            Err(StoreError::Redis(e)) if refused(&e) => {
                return Err(StoreError::Unauthorized { url: shown, reason: e.to_string() });
            }
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        tracing::debug!(url = %shown, "connected to redis");
        Ok(store)
    }

    /// PING.
    pub async fn ping(&self) -> Result<()> {
        let reply: Reply = redis::cmd("PING").query_async(&mut self.conn.clone()).await?;
        match reply {
            Reply::SimpleString(s) if s == "PONG" => Ok(()),
            other => Err(unexpected("PING", &other)),
        }
    }

    /// MEMORY USAGE key: the bytes Redis uses for the key and its value (None: absent).
    pub async fn memory_usage(&self, key: &Key) -> Result<Option<u64>> {
        let reply: Reply =
            redis::cmd("MEMORY").arg("USAGE").arg(key.as_str()).query_async(&mut self.conn.clone()).await?;
        match reply {
            Reply::Nil => Ok(None),
            Reply::Int(n) => u64::try_from(n).map(Some).map_err(|_| unexpected("MEMORY USAGE", &reply)),
            other => Err(unexpected("MEMORY USAGE", &other)),
        }
    }

    /// The server's `used_memory` (INFO memory), in bytes.
    pub async fn used_memory(&self) -> Result<Option<u64>> {
        let info: String = redis::cmd("INFO").arg("memory").query_async(&mut self.conn.clone()).await?;
        Ok(info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()))
    }

    /// CPU seconds the server has used (`INFO cpu`: `used_cpu_user` + `used_cpu_sys`).
    pub async fn used_cpu(&self) -> Result<Option<f64>> {
        let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut self.conn.clone()).await?;
        let field = |name: &str| {
            info.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok())
        };
        Ok(field("used_cpu_user:").zip(field("used_cpu_sys:")).map(|(u, s)| u + s))
    }

    /// Sends a pipeline and returns one reply per command; a command's error stays a
    /// `Reply::ServerError` in its place, so that the caller can tell which command failed.
    async fn exec(&self, pipe: &mut redis::Pipeline, commands: usize) -> Result<Vec<Reply>> {
        let reply: Reply = pipe.ignore_errors().query_async(&mut self.conn.clone()).await?;
        match reply {
            Reply::Array(replies) if replies.len() == commands => Ok(replies),
            other => Err(unexpected("pipeline", &other)),
        }
    }
}

#[async_trait::async_trait]
impl FeatureStore for RedisStore {
    async fn write(&self, batch: WriteBatch) -> Result<Written> {
        if batch.writes.is_empty() && batch.guard.is_none() {
            return Ok(Written::Applied);
        }
        let mut results = self.write_all(vec![batch]).await?;
        results.pop().unwrap_or_else(|| {
            Err(StoreError::UnexpectedReply { op: "write script", reply: "no result".to_owned() })
        })
    }

    async fn write_all(&self, batches: Vec<WriteBatch>) -> Result<Vec<Result<Written>>> {
        if batches.iter().all(|b| b.writes.is_empty() && b.guard.is_none()) {
            return Ok(batches.iter().map(|_| Ok(Written::Applied)).collect());
        }
        let mut invocation = WRITE_SCRIPT.prepare_invoke();
        for batch in &batches {
            match &batch.guard {
                Some(guard) => {
                    // SET PX refuses 0, so the TTL is at least 1 ms.
                    invocation.key(guard.key.as_str()).arg("1").arg(ttl_millis(guard.ttl).max(1));
                }
                None => {
                    invocation.arg("0").arg("0");
                }
            }
            invocation.arg(batch.writes.len());
            for write in &batch.writes {
                encode(&mut invocation, write);
            }
        }
        let reply: Reply = invocation.invoke_async(&mut self.conn.clone()).await?;
        let replies = elements(strip_attributes(reply), "write script")?;
        if replies.len() != batches.len() {
            return Err(StoreError::UnexpectedReply {
                op: "write script",
                reply: format!("{} results for {} batches", replies.len(), batches.len()),
            });
        }
        Ok(batches.iter().zip(replies).map(|(batch, reply)| parse_written(&batch.writes, reply)).collect())
    }

    async fn read(&self, reads: Vec<Read>) -> Result<Vec<Value>> {
        let mut pipe = redis::pipe();
        let mut sent = 0;
        for read in &reads {
            if add_read(&mut pipe, read) {
                sent += 1;
            }
        }
        let mut replies = if sent == 0 { Vec::new() } else { self.exec(&mut pipe, sent).await? }.into_iter();
        reads
            .iter()
            .map(|read| {
                if !sends_command(read) {
                    return Ok(empty_value(read));
                }
                let reply = replies.next().ok_or_else(|| StoreError::UnexpectedReply {
                    op: "pipeline",
                    reply: "fewer replies than commands".to_owned(),
                })?;
                parse_read(read, reply)
            })
            .collect()
    }

    async fn put_if_absent(&self, key: &Key, value: Bytes, ttl: Duration) -> Result<bool> {
        // Redis refuses PX 0, so the TTL is at least 1 ms.
        let reply: Reply = redis::cmd("SET")
            .arg(key.as_str())
            .arg(value.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl).max(1))
            .query_async(&mut self.conn.clone())
            .await?;
        match reply {
            Reply::Okay => Ok(true),
            Reply::SimpleString(s) if s == "OK" => Ok(true),
            Reply::Nil => Ok(false),
            other => Err(unexpected("SET NX", &other)),
        }
    }

    async fn ttl(&self, key: &Key) -> Result<Option<Duration>> {
        let reply: Reply = redis::cmd("PTTL").arg(key.as_str()).query_async(&mut self.conn.clone()).await?;
        match reply {
            // -2: no such key; -1: no TTL.
            Reply::Int(ms) if ms < 0 => Ok(None),
            Reply::Int(ms) => Ok(Some(Duration::from_millis(ms.unsigned_abs()))),
            other => Err(unexpected("PTTL", &other)),
        }
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<Key>> {
        let mut keys = std::collections::BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn.clone())
                .await?;
            keys.extend(batch.into_iter().map(Key));
            if next == 0 {
                return Ok(keys.into_iter().collect());
            }
            cursor = next;
        }
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// `url` without user, password or query (which may carry `pass=`), for messages.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable url>".to_owned();
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    // Everything up to the last '@' is user info, even if a password holds a '/'.
    let host_and_path = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    format!("{scheme}://{host_and_path}")
}

/// A Redis rank or index from a count, saturating (no real collection comes near i64::MAX).
fn rank(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX / 2)
}

/// A float as the script passes it on to Redis or `tonumber`: Rust's shortest text that
/// round-trips (`inf`, `-inf` and `NaN` included, which Redis parses and refuses as it should).
fn float_arg(x: f64) -> String {
    format!("{x:?}")
}

/// A score bound of ZRANGE BYSCORE: `-inf` and `+inf` as Redis spells them.
fn bound_arg(x: f64) -> String {
    if x == f64::INFINITY {
        "+inf".to_owned()
    } else if x == f64::NEG_INFINITY {
        "-inf".to_owned()
    } else {
        float_arg(x)
    }
}

/// The ZREMRANGEBYRANK / LTRIM stop index that keeps the `keep` highest ranks.
fn keep_stop(keep: usize) -> i64 {
    -rank(keep) - 1
}

/// Adds one write to the script's input: its keys (one; two for `CoOccur`, as the script's
/// `KEY_COUNT` says), its op code and its arguments (as many as the script's `ARITY` says).
fn encode(inv: &mut redis::ScriptInvocation<'_>, write: &Write) {
    match write {
        Write::ListPushCapped { key, value, cap } => {
            // LTRIM 0 -1 would keep everything; 1 0 (start past stop) empties the list.
            let (start, stop) = if *cap == 0 { (1, 0) } else { (0, rank(*cap) - 1) };
            inv.key(key.as_str()).arg("lpush").arg(value.as_ref()).arg(start).arg(stop);
        }
        Write::SortedIncr { key, member, by } => {
            inv.key(key.as_str()).arg("zincr").arg(float_arg(*by)).arg(member.as_str());
        }
        Write::SortedKeepTop { key, keep } => {
            inv.key(key.as_str()).arg("zkeep").arg(keep_stop(*keep));
        }
        Write::HashSet { key, field, value } => {
            inv.key(key.as_str()).arg("hset").arg(field.as_str()).arg(value.as_ref());
        }
        Write::HashIncr { key, field, by } => {
            inv.key(key.as_str()).arg("hincr").arg(field.as_str()).arg(*by);
        }
        Write::HashDel { key, field } => {
            inv.key(key.as_str()).arg("hdel").arg(field.as_str());
        }
        Write::SetAdd { key, member } => {
            inv.key(key.as_str()).arg("sadd").arg(member.as_str());
        }
        Write::Put { key, value } => {
            inv.key(key.as_str()).arg("set").arg(value.as_ref());
        }
        Write::Delete { key } => {
            inv.key(key.as_str()).arg("del");
        }
        Write::SortedRemove { key, member } => {
            inv.key(key.as_str()).arg("zrem").arg(member.as_str());
        }
        Write::Expire { key, ttl } => {
            inv.key(key.as_str()).arg("pexpire").arg(ttl_millis(*ttl));
        }
        Write::SortedAdd { key, member, score } => {
            inv.key(key.as_str()).arg("zadd").arg(float_arg(*score)).arg(member.as_str());
        }
        Write::SortedMin { key, member, score } => {
            inv.key(key.as_str()).arg("zaddlt").arg(float_arg(*score)).arg(member.as_str());
        }
        Write::HashSetLatest { key, field, value, at_ms } => {
            inv.key(key.as_str()).arg("hlatest").arg(field.as_str()).arg(value.as_str()).arg(*at_ms);
        }
        Write::HashMax { key, field, value } => {
            inv.key(key.as_str()).arg("hmax").arg(field.as_str()).arg(*value);
        }
        Write::HashMin { key, field, value } => {
            inv.key(key.as_str()).arg("hmin").arg(field.as_str()).arg(*value);
        }
        Write::HashDecayAdd { key, field, weight, at_ms, half_life } => {
            inv.key(key.as_str())
                .arg("hdecay")
                .arg(field.as_str())
                .arg(float_arg(*weight))
                .arg(*at_ms)
                .arg(half_life.as_millis().to_string());
        }
        Write::CoOccur { window_set, member, at_ms, window, cap, counted, counted_cap, neighbours, keep } => {
            inv.key(window_set.as_str())
                .key(counted.as_str())
                .arg("cooccur")
                .arg(member.as_str())
                .arg(*at_ms)
                .arg(ttl_millis(*window))
                .arg(keep_stop(*cap))
                .arg(neighbours.prefix.as_str())
                .arg(neighbours.suffix.as_str())
                .arg(keep_stop(*keep))
                .arg(keep_stop(*counted_cap));
        }
    }
}

/// The script's answer for one batch: `[status]` or `[status, index, key, error]`.
fn parse_written(writes: &[Write], reply: Reply) -> Result<Written> {
    let mut items = elements(strip_attributes(reply), "write script")?.into_iter();
    let status = match items.next() {
        Some(status) => string(status, "write script")?,
        None => return Err(StoreError::UnexpectedReply { op: "write script", reply: "[]".to_owned() }),
    };
    match (status.as_str(), items.next(), items.next(), items.next()) {
        ("skipped", None, None, None) => Ok(Written::Skipped),
        ("applied", None, None, None) => Ok(Written::Applied),
        ("applied", Some(index), Some(key), Some(error)) => {
            let index = string(index, "write script")?;
            let write = index.parse::<usize>().ok().and_then(|i| writes.get(i)).ok_or_else(|| {
                StoreError::UnexpectedReply { op: "write script", reply: format!("write index {index}") }
            })?;
            Err(write_error(write, Key(string(key, "write script")?), string(error, "write script")?))
        }
        _ => Err(StoreError::UnexpectedReply { op: "write script", reply: format!("status {status:?}") }),
    }
}

/// The error of a write that failed inside the script, from Redis's error text.
fn write_error(write: &Write, key: Key, message: String) -> StoreError {
    if message.starts_with("WRONGTYPE") {
        StoreError::WrongType { key, expected: write_type(write) }
    } else {
        StoreError::Redis(redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "write refused",
            format!("{message} (key {key})"),
        )))
    }
}

/// The type a write needs at its keys (for WRONGTYPE).
fn write_type(write: &Write) -> &'static str {
    match write {
        Write::ListPushCapped { .. } => "list",
        Write::SortedIncr { .. }
        | Write::SortedKeepTop { .. }
        | Write::SortedAdd { .. }
        | Write::SortedMin { .. }
        | Write::SortedRemove { .. }
        | Write::CoOccur { .. } => "sorted set",
        Write::HashSet { .. }
        | Write::HashIncr { .. }
        | Write::HashDel { .. }
        | Write::HashSetLatest { .. }
        | Write::HashMax { .. }
        | Write::HashMin { .. }
        | Write::HashDecayAdd { .. } => "hash",
        Write::SetAdd { .. } => "set",
        Write::Put { .. } | Write::Delete { .. } | Write::Expire { .. } => "string",
    }
}

fn read_target(read: &Read) -> (&Key, &'static str) {
    match read {
        Read::List { key, .. } => (key, "list"),
        Read::SortedTop { key, .. } | Read::SortedScores { key, .. } | Read::SortedRange { key, .. } => {
            (key, "sorted set")
        }
        Read::Hash { key } => (key, "hash"),
        Read::Set { key } => (key, "set"),
        Read::Get { key } | Read::Exists { key } => (key, "string"),
    }
}

fn server_error(err: redis::ServerError, key: &Key, expected: &'static str) -> StoreError {
    if err.code() == "WRONGTYPE" {
        StoreError::WrongType { key: key.clone(), expected }
    } else {
        StoreError::Redis(err.into())
    }
}

/// Reads whose answer is empty by definition send nothing: LRANGE 0 -1 and ZREVRANGE 0 -1
/// would return everything, and ZMSCORE needs a member.
fn sends_command(read: &Read) -> bool {
    match read {
        Read::List { limit, .. } => *limit > 0,
        Read::SortedTop { n, .. } => *n > 0,
        Read::SortedScores { members, .. } => !members.is_empty(),
        Read::SortedRange { limit, .. } => *limit > 0,
        Read::Hash { .. } | Read::Set { .. } | Read::Get { .. } | Read::Exists { .. } => true,
    }
}

fn empty_value(read: &Read) -> Value {
    match read {
        Read::List { .. } => Value::List(Vec::new()),
        Read::SortedTop { .. } | Read::SortedRange { .. } => Value::Sorted(Vec::new()),
        Read::SortedScores { members, .. } => Value::Scores(vec![None; members.len()]),
        Read::Hash { .. } => Value::Hash(Vec::new()),
        Read::Set { .. } => Value::Set(Vec::new()),
        Read::Get { .. } => Value::Get(None),
        Read::Exists { .. } => Value::Exists(false),
    }
}

/// Adds the command of one read, if it sends one.
fn add_read(pipe: &mut redis::Pipeline, read: &Read) -> bool {
    if !sends_command(read) {
        return false;
    }
    match read {
        Read::List { key, limit } => {
            pipe.cmd("LRANGE").arg(key.as_str()).arg(0).arg(rank(*limit) - 1);
        }
        Read::SortedTop { key, n } => {
            pipe.cmd("ZREVRANGE").arg(key.as_str()).arg(0).arg(rank(*n) - 1).arg("WITHSCORES");
        }
        Read::SortedScores { key, members } => {
            pipe.cmd("ZMSCORE").arg(key.as_str()).arg(members);
        }
        Read::SortedRange { key, min, max, limit } => {
            pipe.cmd("ZRANGE")
                .arg(key.as_str())
                .arg(bound_arg(*min))
                .arg(bound_arg(*max))
                .arg("BYSCORE")
                .arg("LIMIT")
                .arg(0)
                .arg(rank(*limit))
                .arg("WITHSCORES");
        }
        Read::Hash { key } => {
            pipe.cmd("HGETALL").arg(key.as_str());
        }
        Read::Set { key } => {
            pipe.cmd("SMEMBERS").arg(key.as_str());
        }
        Read::Get { key } => {
            pipe.cmd("GET").arg(key.as_str());
        }
        Read::Exists { key } => {
            pipe.cmd("EXISTS").arg(key.as_str());
        }
    }
    true
}

/// Parses the reply to one read. Accepts RESP2 and RESP3 shapes.
fn parse_read(read: &Read, reply: Reply) -> Result<Value> {
    let reply = strip_attributes(reply);
    if let Reply::ServerError(err) = reply {
        let (key, expected) = read_target(read);
        return Err(server_error(err, key, expected));
    }
    Ok(match read {
        Read::List { .. } => Value::List(
            elements(reply, "LRANGE")?
                .into_iter()
                .map(|r| bytes(r, "LRANGE").map(Bytes::from))
                .collect::<Result<_>>()?,
        ),
        Read::SortedTop { .. } => Value::Sorted(
            pairs(reply, "ZREVRANGE")?
                .into_iter()
                .map(|(m, s)| Ok((string(m, "ZREVRANGE")?, score(s, "ZREVRANGE")?)))
                .collect::<Result<_>>()?,
        ),
        Read::SortedRange { .. } => Value::Sorted(
            pairs(reply, "ZRANGE")?
                .into_iter()
                .map(|(m, s)| Ok((string(m, "ZRANGE")?, score(s, "ZRANGE")?)))
                .collect::<Result<_>>()?,
        ),
        Read::SortedScores { .. } => Value::Scores(
            elements(reply, "ZMSCORE")?
                .into_iter()
                .map(|r| match strip_attributes(r) {
                    Reply::Nil => Ok(None),
                    other => score(other, "ZMSCORE").map(Some),
                })
                .collect::<Result<_>>()?,
        ),
        Read::Hash { .. } => {
            let mut fields = pairs(reply, "HGETALL")?
                .into_iter()
                .map(|(f, v)| Ok((string(f, "HGETALL")?, Bytes::from(bytes(v, "HGETALL")?))))
                .collect::<Result<Vec<_>>>()?;
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Hash(fields)
        }
        Read::Set { .. } => {
            let mut members = elements(reply, "SMEMBERS")?
                .into_iter()
                .map(|r| string(r, "SMEMBERS"))
                .collect::<Result<Vec<_>>>()?;
            members.sort();
            Value::Set(members)
        }
        Read::Get { .. } => Value::Get(match reply {
            Reply::Nil => None,
            other => Some(Bytes::from(bytes(other, "GET")?)),
        }),
        Read::Exists { .. } => match reply {
            Reply::Int(n) => Value::Exists(n > 0),
            Reply::Boolean(b) => Value::Exists(b),
            other => return Err(unexpected("EXISTS", &other)),
        },
    })
}

fn strip_attributes(reply: Reply) -> Reply {
    match reply {
        Reply::Attribute { data, .. } => strip_attributes(*data),
        other => other,
    }
}

fn unexpected(op: &'static str, reply: &Reply) -> StoreError {
    let mut text = format!("{reply:?}");
    if let Some((cut, _)) = text.char_indices().nth(REPLY_QUOTE_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    StoreError::UnexpectedReply { op, reply: text }
}

/// The elements of an array or set reply (Nil: none).
fn elements(reply: Reply, op: &'static str) -> Result<Vec<Reply>> {
    match reply {
        Reply::Array(items) | Reply::Set(items) => Ok(items),
        Reply::Nil => Ok(Vec::new()),
        other => Err(unexpected(op, &other)),
    }
}

/// Pairs from a map (RESP3), an array of 2-arrays (RESP3 WITHSCORES) or a flat array (RESP2).
fn pairs(reply: Reply, op: &'static str) -> Result<Vec<(Reply, Reply)>> {
    if let Reply::Map(pairs) = reply {
        return Ok(pairs);
    }
    let items = elements(reply, op)?;
    let nested = items.iter().all(|item| matches!(item, Reply::Array(pair) if pair.len() == 2));
    if nested && !items.is_empty() {
        return items
            .into_iter()
            .map(|item| match item {
                Reply::Array(pair) => {
                    let mut pair = pair.into_iter();
                    match (pair.next(), pair.next()) {
                        (Some(a), Some(b)) => Ok((a, b)),
                        _ => Err(StoreError::UnexpectedReply { op, reply: "short pair".to_owned() }),
                    }
                }
                other => Err(unexpected(op, &other)),
            })
            .collect();
    }
    if items.len() % 2 != 0 {
        return Err(StoreError::UnexpectedReply {
            op,
            reply: format!("odd number of elements ({})", items.len()),
        });
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(a), Some(b)) = (items.next(), items.next()) {
        out.push((a, b));
    }
    Ok(out)
}

fn bytes(reply: Reply, op: &'static str) -> Result<Vec<u8>> {
    match strip_attributes(reply) {
        Reply::BulkString(b) => Ok(b),
        Reply::SimpleString(s) => Ok(s.into_bytes()),
        Reply::VerbatimString { text, .. } => Ok(text.into_bytes()),
        Reply::Okay => Ok(b"OK".to_vec()),
        Reply::Int(n) => Ok(n.to_string().into_bytes()),
        other => Err(unexpected(op, &other)),
    }
}

fn string(reply: Reply, op: &'static str) -> Result<String> {
    String::from_utf8(bytes(reply, op)?)
        .map_err(|e| StoreError::UnexpectedReply { op, reply: format!("not UTF-8: {e}") })
}

fn score(reply: Reply, op: &'static str) -> Result<f64> {
    match strip_attributes(reply) {
        Reply::Double(d) => Ok(d),
        Reply::Int(n) => Ok(n as f64),
        other => {
            let text = string(other, op)?;
            text.parse().map_err(|_| StoreError::UnexpectedReply { op, reply: format!("score {text:?}") })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_urls_keep_host_and_db_only() {
        assert_eq!(redact_url("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact_url("redis://user:s3cret@host:6379/2"), "redis://host:6379/2");
        assert_eq!(redact_url("redis://:s3cret@host"), "redis://host");
        assert_eq!(redact_url("rediss://h:1/?pass=s3cret"), "rediss://h:1/");
        assert_eq!(redact_url("redis+unix:///tmp/r.sock?pass=s3cret"), "redis+unix:///tmp/r.sock");
        assert_eq!(redact_url("redis://:pa/ss@host:1"), "redis://host:1");
        assert_eq!(redact_url("s3cret"), "<unparsable url>");
    }

    #[test]
    fn ttl_rounds_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::ZERO), 0);
        assert_eq!(ttl_millis(Duration::from_micros(1)), 1);
        assert_eq!(ttl_millis(Duration::from_millis(50)), 50);
        assert_eq!(ttl_millis(Duration::from_micros(50_001)), 51);
        assert_eq!(ttl_millis(Duration::MAX), crate::MAX_TTL_MILLIS);
    }
}
