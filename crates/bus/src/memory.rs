//! The in-process bus: the semantics of [`Bus`] inside one process, for `all-in-one` without
//! NATS. At-least-once delivery with ack wait and redelivery, message-id de-duplication, durable
//! consumers shared by several readers, replay, and request-reply with queue groups.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use crate::subject::{subject_matches, valid_publish_subject};
use crate::{
    AckHandle, Acker, Bus, BusError, ConsumerLag, ConsumerSpec, Delivery, DeliveryStream, Headers,
    IncomingRequest, Message, Published, ReplayStream, RequestStream, RespondHandle, Result, Settle, StartAt,
    StoredMessage, StreamSpec, StreamState,
};

/// Requests queued for one `serve` call before senders wait.
const REQUEST_QUEUE: usize = 1024;
/// Messages a replay takes per lock of the state.
const REPLAY_BATCH: usize = 256;

/// An in-process [`Bus`]. Cloning shares the same bus.
#[derive(Clone, Default)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    /// Woken on every change that could make a delivery ready.
    changed: Notify,
}

#[derive(Default)]
struct State {
    streams: BTreeMap<String, MemStream>,
    responders: Vec<Responder>,
    round_robin: usize,
}

struct MemStream {
    spec: StreamSpec,
    messages: BTreeMap<u64, StoredEntry>,
    /// Sum of the payload sizes of `messages`.
    bytes: i64,
    last_sequence: u64,
    /// msg id -> (sequence, time of first publish)
    dedup: HashMap<String, (u64, Instant)>,
    /// The same ids in publish order, so expired ones are dropped from the front.
    dedup_order: VecDeque<(Instant, String)>,
    durables: HashMap<String, Durable>,
}

struct StoredEntry {
    message: Message,
    stored_at: Instant,
}

struct Durable {
    spec: ConsumerSpec,
    /// The highest sequence already considered for first delivery.
    cursor: u64,
    /// Delivered, not yet acked: sequence -> state.
    pending: BTreeMap<u64, Pending>,
}

struct Pending {
    /// When the message is delivered again unless settled.
    redeliver_at: Instant,
    delivered: u64,
}

struct Responder {
    pattern: String,
    queue: String,
    tx: mpsc::Sender<IncomingRequest>,
}

enum Next {
    Ready(Delivery),
    /// Nothing to deliver; wake up at this instant at the latest (None: only on change).
    Wait(Option<Instant>),
}

impl MemoryBus {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the maps half-updated in a way that matters
    // more than stopping the whole bus would, so a poisoned lock is used as is.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemStream {
    fn prune(&mut self, now: Instant) {
        if !self.spec.max_age.is_zero() {
            while let Some((&seq, e)) = self.messages.first_key_value() {
                if now.duration_since(e.stored_at) <= self.spec.max_age {
                    break;
                }
                if let Some(e) = self.messages.remove(&seq) {
                    self.bytes -= e.message.payload.len() as i64;
                }
            }
        }
        if self.spec.max_bytes >= 0 {
            while self.bytes > self.spec.max_bytes {
                let Some((_, e)) = self.messages.pop_first() else { break };
                self.bytes -= e.message.payload.len() as i64;
            }
        }
        let window = self.spec.duplicate_window;
        while let Some((at, _)) = self.dedup_order.front() {
            if now.duration_since(*at) <= window {
                break;
            }
            if let Some((_, id)) = self.dedup_order.pop_front() {
                self.dedup.remove(&id);
            }
        }
    }

    fn matches(filters: &[String], subject: &str) -> bool {
        filters.is_empty() || filters.iter().any(|f| subject_matches(f, subject))
    }

    fn next_delivery(&mut self, durable: &str, now: Instant, bus: &Weak<Inner>, stream: &str) -> Next {
        self.prune(now);
        let Self { messages, durables, .. } = self;
        let Some(d) = durables.get_mut(durable) else { return Next::Wait(None) };

        // Redeliveries first, oldest sequence first.
        let mut gave_up = Vec::new();
        let mut ready = None;
        for (&seq, p) in d.pending.iter_mut() {
            if p.redeliver_at > now {
                continue;
            }
            if !messages.contains_key(&seq)
                || (d.spec.max_deliver > 0 && p.delivered >= d.spec.max_deliver as u64)
            {
                gave_up.push(seq);
                continue;
            }
            p.delivered += 1;
            p.redeliver_at = now + d.spec.ack_wait;
            ready = Some((seq, p.delivered));
            break;
        }
        for seq in gave_up {
            d.pending.remove(&seq);
        }
        if ready.is_none() {
            let next = messages
                .range(d.cursor + 1..)
                .find(|(_, e)| Self::matches(&d.spec.filter_subjects, &e.message.subject))
                .map(|(&seq, _)| seq);
            match next {
                Some(seq) => {
                    d.cursor = seq;
                    d.pending.insert(seq, Pending { redeliver_at: now + d.spec.ack_wait, delivered: 1 });
                    ready = Some((seq, 1));
                }
                None => d.cursor = d.cursor.max(messages.last_key_value().map_or(0, |(&s, _)| s)),
            }
        }
        match ready.and_then(|(seq, delivered)| messages.get(&seq).map(|e| (seq, delivered, e))) {
            Some((seq, delivered, e)) => Next::Ready(Delivery {
                message: e.message.clone(),
                stream_sequence: seq,
                delivered,
                acker: Acker::new(MemoryAck {
                    bus: bus.clone(),
                    stream: stream.to_string(),
                    durable: durable.to_string(),
                    sequence: seq,
                }),
            }),
            None => Next::Wait(d.pending.values().map(|p| p.redeliver_at).min()),
        }
    }
}

struct MemoryAck {
    bus: Weak<Inner>,
    stream: String,
    durable: String,
    sequence: u64,
}

#[async_trait::async_trait]
impl AckHandle for MemoryAck {
    async fn settle(self: Box<Self>, how: Settle) -> Result<()> {
        let inner = self.bus.upgrade().ok_or(BusError::Closed)?;
        {
            let mut state = lock(&inner.state);
            let durable = state
                .streams
                .get_mut(&self.stream)
                .ok_or_else(|| BusError::UnknownStream(self.stream.clone()))?
                .durables
                .get_mut(&self.durable);
            if let Some(d) = durable {
                match how {
                    Settle::Ack | Settle::AckUnconfirmed | Settle::Term => {
                        d.pending.remove(&self.sequence);
                    }
                    Settle::Nak(delay) => {
                        if let Some(p) = d.pending.get_mut(&self.sequence) {
                            p.redeliver_at = Instant::now() + delay.unwrap_or(Duration::ZERO);
                        }
                    }
                }
            }
        }
        inner.changed.notify_waiters();
        Ok(())
    }
}

struct MemoryResponder {
    reply: Arc<Mutex<Option<oneshot::Sender<Message>>>>,
    subject: String,
}

#[async_trait::async_trait]
impl RespondHandle for MemoryResponder {
    async fn respond(self: Box<Self>, headers: Headers, payload: Bytes) -> Result<()> {
        let sender = self.reply.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = sender {
            // The requester may have timed out and gone; like NATS, that is not the responder's error.
            let _ = tx.send(Message { subject: self.subject, headers, payload });
        }
        Ok(())
    }
}

/// Waits until `changed` fires or `until` passes. `notified` must have been enabled before the
/// state was inspected, so that no change in between is missed.
async fn wait_for_change(
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    until: Option<Instant>,
) {
    match until {
        Some(t) => {
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(t) => {}
            }
        }
        None => notified.await,
    }
}

#[async_trait::async_trait]
impl Bus for MemoryBus {
    async fn ensure_stream(&self, spec: &StreamSpec) -> Result<()> {
        let mut state = self.state();
        match state.streams.get_mut(&spec.name) {
            Some(s) => s.spec = spec.clone(),
            None => {
                state.streams.insert(
                    spec.name.clone(),
                    MemStream {
                        spec: spec.clone(),
                        messages: BTreeMap::new(),
                        bytes: 0,
                        last_sequence: 0,
                        dedup: HashMap::new(),
                        dedup_order: VecDeque::new(),
                        durables: HashMap::new(),
                    },
                );
            }
        }
        Ok(())
    }

    async fn publish(&self, message: Message, msg_id: Option<&str>) -> Result<Published> {
        if !valid_publish_subject(&message.subject) {
            return Err(BusError::InvalidSubject(message.subject));
        }
        let published = {
            let mut state = self.state();
            let stream = state
                .streams
                .values_mut()
                .find(|s| s.spec.subjects.iter().any(|p| subject_matches(p, &message.subject)))
                .ok_or_else(|| BusError::NoStream(message.subject.clone()))?;
            let now = Instant::now();
            stream.prune(now);
            if let Some(id) = msg_id
                && let Some(&(sequence, _)) = stream.dedup.get(id)
            {
                return Ok(Published { stream: stream.spec.name.clone(), sequence, duplicate: true });
            }
            stream.last_sequence += 1;
            let sequence = stream.last_sequence;
            if let Some(id) = msg_id {
                stream.dedup.insert(id.to_string(), (sequence, now));
                stream.dedup_order.push_back((now, id.to_string()));
            }
            stream.bytes += message.payload.len() as i64;
            stream.messages.insert(sequence, StoredEntry { message, stored_at: now });
            stream.prune(now);
            Published { stream: stream.spec.name.clone(), sequence, duplicate: false }
        };
        self.inner.changed.notify_waiters();
        Ok(published)
    }

    async fn consume(&self, spec: &ConsumerSpec) -> Result<DeliveryStream> {
        {
            let mut state = self.state();
            let stream = state
                .streams
                .get_mut(&spec.stream)
                .ok_or_else(|| BusError::UnknownStream(spec.stream.clone()))?;
            stream
                .durables
                .entry(spec.durable.clone())
                .and_modify(|d| d.spec = spec.clone())
                .or_insert_with(|| Durable { spec: spec.clone(), cursor: 0, pending: BTreeMap::new() });
        }
        let weak = Arc::downgrade(&self.inner);
        let (stream_name, durable) = (spec.stream.clone(), spec.durable.clone());
        let deliveries = futures::stream::unfold((), move |()| {
            let weak = weak.clone();
            let (stream_name, durable) = (stream_name.clone(), durable.clone());
            async move {
                loop {
                    let inner = weak.upgrade()?;
                    let notified = inner.changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    let next = {
                        let mut state = lock(&inner.state);
                        match state.streams.get_mut(&stream_name) {
                            Some(s) => s.next_delivery(&durable, Instant::now(), &weak, &stream_name),
                            None => return Some((Err(BusError::UnknownStream(stream_name)), ())),
                        }
                    };
                    match next {
                        Next::Ready(d) => return Some((Ok(d), ())),
                        Next::Wait(until) => wait_for_change(notified, until).await,
                    }
                }
            }
        });
        Ok(deliveries.boxed())
    }

    async fn replay(&self, stream: &str, filter: Option<&str>, start: StartAt) -> Result<ReplayStream> {
        let cursor = {
            let state = self.state();
            let s = state.streams.get(stream).ok_or_else(|| BusError::UnknownStream(stream.to_string()))?;
            match start {
                StartAt::First => 0,
                StartAt::New => s.last_sequence,
                StartAt::Sequence(n) => n.saturating_sub(1),
            }
        };
        let weak = Arc::downgrade(&self.inner);
        let stream_name = stream.to_string();
        let filter = filter.map(str::to_string);
        let init = (cursor, VecDeque::<StoredMessage>::new());
        let replay = futures::stream::unfold(init, move |(mut cursor, mut buffer)| {
            let weak = weak.clone();
            let (stream_name, filter) = (stream_name.clone(), filter.clone());
            async move {
                loop {
                    if let Some(m) = buffer.pop_front() {
                        return Some((Ok(m), (cursor, buffer)));
                    }
                    let inner = weak.upgrade()?;
                    let notified = inner.changed.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    {
                        let state = lock(&inner.state);
                        let Some(s) = state.streams.get(&stream_name) else {
                            return Some((Err(BusError::UnknownStream(stream_name)), (cursor, buffer)));
                        };
                        for (&seq, e) in s.messages.range(cursor + 1..) {
                            cursor = seq;
                            if filter.as_deref().is_none_or(|f| subject_matches(f, &e.message.subject)) {
                                buffer.push_back(StoredMessage {
                                    message: e.message.clone(),
                                    sequence: seq,
                                    pending: s.last_sequence - seq,
                                });
                                if buffer.len() >= REPLAY_BATCH {
                                    break;
                                }
                            }
                        }
                    }
                    if buffer.is_empty() {
                        wait_for_change(notified, None).await;
                    }
                }
            }
        });
        Ok(replay.boxed())
    }

    async fn stream_state(&self, stream: &str) -> Result<StreamState> {
        let mut state = self.state();
        let s = state.streams.get_mut(stream).ok_or_else(|| BusError::UnknownStream(stream.to_string()))?;
        s.prune(Instant::now());
        Ok(StreamState {
            messages: s.messages.len() as u64,
            first_sequence: s.messages.first_key_value().map_or(s.last_sequence + 1, |(&k, _)| k),
            last_sequence: s.last_sequence,
        })
    }

    async fn delete_message(&self, stream: &str, sequence: u64) -> Result<bool> {
        let mut state = self.state();
        let s = state.streams.get_mut(stream).ok_or_else(|| BusError::UnknownStream(stream.to_string()))?;
        match s.messages.remove(&sequence) {
            Some(e) => {
                s.bytes -= e.message.payload.len() as i64;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn consumer_lag(&self, stream: &str, durable: &str) -> Result<ConsumerLag> {
        let mut state = self.state();
        let s = state.streams.get_mut(stream).ok_or_else(|| BusError::UnknownStream(stream.to_string()))?;
        s.prune(Instant::now());
        let d = s.durables.get(durable).ok_or_else(|| BusError::UnknownConsumer {
            stream: stream.to_string(),
            durable: durable.to_string(),
        })?;
        let pending = s
            .messages
            .range(d.cursor + 1..)
            .filter(|(_, e)| MemStream::matches(&d.spec.filter_subjects, &e.message.subject))
            .count() as u64;
        let ack_pending = d.pending.keys().filter(|seq| s.messages.contains_key(seq)).count() as u64;
        Ok(ConsumerLag { pending, ack_pending })
    }

    async fn request(&self, message: Message, timeout: Duration) -> Result<Message> {
        if !valid_publish_subject(&message.subject) {
            return Err(BusError::InvalidSubject(message.subject));
        }
        let targets: Vec<mpsc::Sender<IncomingRequest>> = {
            let mut state = self.state();
            state.responders.retain(|r| !r.tx.is_closed());
            let mut groups: BTreeMap<&str, Vec<&Responder>> = BTreeMap::new();
            for r in state.responders.iter().filter(|r| subject_matches(&r.pattern, &message.subject)) {
                groups.entry(r.queue.as_str()).or_default().push(r);
            }
            let rr = state.round_robin;
            let picked = groups.values().map(|members| members[rr % members.len()].tx.clone()).collect();
            state.round_robin = state.round_robin.wrapping_add(1);
            picked
        };
        if targets.is_empty() {
            return Err(BusError::NoResponders(message.subject));
        }
        let (tx, rx) = oneshot::channel();
        let reply = Arc::new(Mutex::new(Some(tx)));
        let subject = message.subject.clone();
        let timed_out = || BusError::Timeout { subject: subject.clone(), timeout };
        let work = async {
            for target in targets {
                let req = IncomingRequest::new(
                    message.clone(),
                    MemoryResponder { reply: reply.clone(), subject: format!("_INBOX.{}", message.subject) },
                );
                // A responder that went away between lookup and send is skipped.
                let _ = target.send(req).await;
            }
            drop(reply);
            rx.await.map_err(|_| timed_out())
        };
        tokio::time::timeout(timeout, work).await.map_err(|_| timed_out())?
    }

    async fn serve(&self, subject: &str, queue_group: &str) -> Result<RequestStream> {
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        self.state().responders.push(Responder {
            pattern: subject.to_string(),
            queue: queue_group.to_string(),
            tx,
        });
        Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) }).boxed())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
