//! The event bus.
//!
//! [`Bus`] is what services need from a message system: durable streams with de-duplication by
//! message id, durable pull consumers with explicit acks and redelivery, ordered replay of a
//! stream, and request-reply with timeouts. [`NatsBus`] runs it on NATS JetStream (the product);
//! [`MemoryBus`] runs it inside one process for `shopmind all-in-one` without NATS. Both pass the
//! conformance suite in `tests/conformance.rs`.
//!
//! Messages carry [`Headers`]; W3C trace context travels in them as `traceparent`
//! ([`TraceContext`]).

mod memory;
mod nats;
mod subject;
mod trace;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

pub use memory::MemoryBus;
pub use nats::{NatsBus, NatsSecurity};
pub use subject::subject_matches;
pub use trace::TraceContext;

/// Message headers. Names are case-sensitive; one value per name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(BTreeMap<String, String>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.0.insert(name.into(), value.into());
        self
    }

    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The W3C trace context carried by these headers, if any (and well-formed).
    pub fn trace(&self) -> Option<TraceContext> {
        self.get(trace::TRACEPARENT).and_then(TraceContext::parse)
    }

    pub fn set_trace(&mut self, ctx: &TraceContext) -> &mut Self {
        self.insert(trace::TRACEPARENT, ctx.to_string())
    }
}

/// A message as published or received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub headers: Headers,
    pub payload: Bytes,
}

impl Message {
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self { subject: subject.into(), headers: Headers::new(), payload: payload.into() }
    }

    pub fn with_headers(mut self, headers: Headers) -> Self {
        self.headers = headers;
        self
    }
}

/// A durable stream of messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    /// Subjects captured by the stream; may use `*` and `>` wildcards.
    pub subjects: Vec<String>,
    /// Messages older than this are removed; zero keeps them until `max_bytes` applies.
    pub max_age: Duration,
    /// Within this window a second publish with the same message id is dropped.
    pub duplicate_window: Duration,
    /// Size limit of the stream in bytes; -1 for none.
    pub max_bytes: i64,
}

/// A durable consumer: several processes consuming with the same `durable` share its messages,
/// each message going to one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    pub stream: String,
    pub durable: String,
    /// Only messages on these subjects (empty: all of the stream).
    pub filter_subjects: Vec<String>,
    /// An unacked delivery is delivered again after this long.
    pub ack_wait: Duration,
    /// Deliveries of one message before the bus gives up on it; -1 for unlimited.
    pub max_deliver: i64,
}

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message still in the stream.
    First,
    /// Only messages published after the replay started.
    New,
    /// The message with this stream sequence, or the next one after it.
    Sequence(u64),
}

/// The stream's answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub stream: String,
    /// Sequence of the stored message (of the original one, for a duplicate).
    pub sequence: u64,
    /// The message id was seen within the duplicate window; nothing new was stored.
    pub duplicate: bool,
}

/// The state of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamState {
    pub messages: u64,
    pub first_sequence: u64,
    pub last_sequence: u64,
}

/// The backlog of a durable consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerLag {
    /// Messages matching the consumer that it has not been given yet.
    pub pending: u64,
    /// Messages given to it and not acked yet.
    pub ack_pending: u64,
}

impl ConsumerLag {
    pub fn is_caught_up(&self) -> bool {
        self.pending == 0 && self.ack_pending == 0
    }
}

/// A message from a durable consumer; it must be acked, nacked or terminated.
pub struct Delivery {
    pub message: Message,
    pub stream_sequence: u64,
    /// 1 on the first delivery, more on redeliveries.
    pub delivered: u64,
    pub acker: Acker,
}

/// A message read by a replay.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub message: Message,
    pub sequence: u64,
    /// Messages left after this one when it was delivered; 0 means the reader has caught up.
    pub pending: u64,
}

/// Settles one delivery.
pub struct Acker(Box<dyn AckHandle>);

impl Acker {
    pub(crate) fn new(handle: impl AckHandle + 'static) -> Self {
        Self(Box::new(handle))
    }

    /// The message was processed and its effect stored: it will not be delivered again.
    /// Returns once the bus has confirmed the ack.
    pub async fn ack(self) -> Result<()> {
        self.0.settle(Settle::Ack).await
    }

    /// Like [`Acker::ack`], but returns once the ack is sent, without waiting for the bus to
    /// confirm it. An ack lost on the way (a dropped connection, a crash before it left) means
    /// the message is delivered again after the ack wait: use it only where processing a message
    /// twice is harmless (e.g. the consumer's effects are guarded by an idempotency key).
    pub async fn ack_unconfirmed(self) -> Result<()> {
        self.0.settle(Settle::AckUnconfirmed).await
    }

    /// Processing failed for now: deliver it again after `delay` (at once when None).
    pub async fn nak(self, delay: Option<Duration>) -> Result<()> {
        self.0.settle(Settle::Nak(delay)).await
    }

    /// The message can never be processed: do not deliver it again.
    pub async fn term(self) -> Result<()> {
        self.0.settle(Settle::Term).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    AckUnconfirmed,
    Nak(Option<Duration>),
    Term,
}

#[async_trait::async_trait]
pub(crate) trait AckHandle: Send {
    async fn settle(self: Box<Self>, how: Settle) -> Result<()>;
}

/// A request received by [`Bus::serve`]; answer it with [`IncomingRequest::respond`].
pub struct IncomingRequest {
    pub message: Message,
    responder: Box<dyn RespondHandle>,
}

impl IncomingRequest {
    pub(crate) fn new(message: Message, responder: impl RespondHandle + 'static) -> Self {
        Self { message, responder: Box::new(responder) }
    }

    pub async fn respond(self, headers: Headers, payload: Bytes) -> Result<()> {
        self.responder.respond(headers, payload).await
    }
}

#[async_trait::async_trait]
pub(crate) trait RespondHandle: Send {
    async fn respond(self: Box<Self>, headers: Headers, payload: Bytes) -> Result<()>;
}

pub type DeliveryStream = BoxStream<'static, Result<Delivery>>;
pub type ReplayStream = BoxStream<'static, Result<StoredMessage>>;
pub type RequestStream = BoxStream<'static, IncomingRequest>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no stream captures subject {0:?}")]
    NoStream(String),
    #[error("consumer {durable:?} of stream {stream:?} does not exist")]
    UnknownConsumer { stream: String, durable: String },
    #[error("stream {0:?} does not exist")]
    UnknownStream(String),
    #[error("no service answers on {0:?}")]
    NoResponders(String),
    #[error("request on {subject:?} timed out after {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("invalid subject {0:?}")]
    InvalidSubject(String),
    #[error("connecting to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the NATS server at {url} refused the credentials: {reason}")]
    Unauthorized { url: String, reason: String },
    #[error("the bus is closed")]
    Closed,
    #[error("nats: {0}")]
    Nats(String),
}

pub type Result<T, E = BusError> = std::result::Result<T, E>;

#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Creates the stream, or updates it to `spec` when it exists. Idempotent.
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()>;

    /// Stores a message in the stream that captures its subject. With a `msg_id`, a second
    /// publish of the same id within the duplicate window stores nothing and reports `duplicate`.
    async fn publish(&self, message: Message, msg_id: Option<&str>) -> Result<Published>;

    /// Attaches to (creating or updating) a durable consumer and yields its deliveries.
    async fn consume(&self, spec: &ConsumerSpec) -> Result<DeliveryStream>;

    /// Reads a stream in order from `start`, then follows new messages; no acks.
    async fn replay(&self, stream: &str, filter: Option<&str>, start: StartAt) -> Result<ReplayStream>;

    async fn stream_state(&self, stream: &str) -> Result<StreamState>;

    /// Removes one message from a stream; false if it was not there.
    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool>;

    /// How far a durable consumer is behind: messages not yet delivered, and delivered but not
    /// yet acked. The signal for autoscaling and for waiting until a consumer caught up.
    async fn consumer_lag(&self, stream: &str, durable: &str) -> Result<ConsumerLag>;

    /// Sends a request and waits for the first reply.
    async fn request(&self, message: Message, timeout: Duration) -> Result<Message>;

    /// Receives the requests sent to `subject` (wildcards allowed); each request goes to one
    /// member of `queue_group`.
    async fn serve(&self, subject: &str, queue_group: &str) -> Result<RequestStream>;

    /// Sends everything buffered (e.g. replies) to the server; call before exiting.
    async fn flush(&self) -> Result<()>;

    /// "nats" or "memory", for logs.
    fn kind(&self) -> &'static str;
}
