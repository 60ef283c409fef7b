//! The consumer loop every stream-consuming service runs: at-least-once, ack only after the
//! handler's effect is stored, retries with a delay, and a dead letter (with the reason) for what
//! cannot be processed — nothing is dropped silently.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use shopmind_bus::{Bus, BusError, ConsumerSpec, Delivery, Message};
use shopmind_metrics::{Settlement, global as metrics};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{Instrument, warn};

use crate::Shutdown;
use crate::topology::{
    DLQ_CODE_HEADER, DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_SUBJECT_HEADER, UNKNOWN_TENANT_TOKEN,
    dlq_subject, tenant_of_subject,
};

/// What the handler made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The effect is stored (or the message needed none): ack it.
    Done,
    /// A transient failure (e.g. the store is unreachable): deliver again after `delay`. After the
    /// consumer's `max_deliver` attempts the message is dead-lettered with `reason`.
    Retry { delay: Duration, reason: String },
    /// The message can never be processed (e.g. it does not decode): dead-letter it now.
    Reject { code: &'static str, reason: String },
}

/// Dead-letter code used when retries are exhausted.
pub const RETRIES_EXHAUSTED: &str = "retries_exhausted";

/// How often a consumer loop refreshes its consumer's lag (`shopmind_consumer_lag_messages`).
pub const LAG_REFRESH: Duration = Duration::from_secs(5);

/// Publishes `original` to `sm.dlq.<tenant>.<stage>`, with the reason in headers and, for events
/// (`sm.in.…`, `sm.events.…`), its free text masked ([`shopmind_privacy::redact_payload`]: a
/// rejected raw intake message may hold PII that admission never got to mask). Idempotent per
/// (stage, stream sequence).
pub async fn dead_letter(
    bus: &dyn Bus,
    original: &Message,
    sequence: u64,
    stage: &str,
    code: &str,
    reason: &str,
) -> Result<(), BusError> {
    let tenant = tenant_of_subject(&original.subject)
        .map_or_else(|| UNKNOWN_TENANT_TOKEN.to_string(), |t| t.to_string());
    let mut headers = original.headers.clone();
    headers
        .insert(DLQ_REASON_HEADER, reason)
        .insert(DLQ_CODE_HEADER, code)
        .insert(DLQ_SUBJECT_HEADER, original.subject.clone())
        .insert(DLQ_SEQUENCE_HEADER, sequence.to_string());
    let message = Message {
        subject: dlq_subject(&tenant, stage),
        headers,
        payload: if original.subject.starts_with("sm.in.") || original.subject.starts_with("sm.events.") {
            shopmind_privacy::redact_payload(&original.payload).into()
        } else {
            // Notifications (webhook stage) hold only what masked events gave them.
            original.payload.clone()
        },
    };
    bus.publish(message, Some(&format!("dlq:{stage}:{sequence}"))).await?;
    Ok(())
}

/// Runs `handle` on every delivery of the durable consumer `spec`, one at a time, until
/// `shutdown`. The message in flight when shutdown fires is finished and settled first.
pub async fn consume_loop<F, Fut>(
    bus: Arc<dyn Bus>,
    spec: ConsumerSpec,
    stage: &'static str,
    shutdown: Shutdown,
    handle: F,
) -> Result<(), BusError>
where
    F: FnMut(Message) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    consume_concurrently(bus, spec, stage, 1, shutdown, handle).await
}

/// Like [`consume_loop`], with up to `concurrency` messages processed at the same time (for
/// handlers whose effects commute). Each message is settled as soon as its own handler is done;
/// on shutdown, no new message is taken and those in flight are finished within
/// [`Shutdown::GRACE`].
pub async fn consume_concurrently<F, Fut>(
    bus: Arc<dyn Bus>,
    spec: ConsumerSpec,
    stage: &'static str,
    concurrency: usize,
    shutdown: Shutdown,
    mut handle: F,
) -> Result<(), BusError>
where
    F: FnMut(Message) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    consume_with_attempts(bus, spec, stage, concurrency, shutdown, move |message, _| handle(message)).await
}

/// Like [`consume_concurrently`], with the handler told which delivery of the message this is
/// (1 on the first), e.g. to back off exponentially between attempts.
pub async fn consume_with_attempts<F, Fut>(
    bus: Arc<dyn Bus>,
    spec: ConsumerSpec,
    stage: &'static str,
    concurrency: usize,
    shutdown: Shutdown,
    mut handle: F,
) -> Result<(), BusError>
where
    F: FnMut(Message, u64) -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let mut deliveries = bus.consume(&spec).await?;
    let lag = tokio::spawn(refresh_lag(bus.clone(), spec.clone(), stage, shutdown.clone()));
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    tracing::info!(durable = %spec.durable, stream = %spec.stream, concurrency, "consuming");
    loop {
        // A permit first: at most `concurrency` messages are taken and not yet settled.
        let permit = tokio::select! {
            () = shutdown.wait() => break,
            p = limit.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let next = tokio::select! {
            () = shutdown.wait() => break,
            next = deliveries.next() => next,
        };
        let delivery = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                // Transient pull errors (missed heartbeats, reconnects): the bus resumes by itself.
                warn!(error = %e, durable = %spec.durable, "consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => break,
        };
        let Some(delivery) = skip_replayed_elsewhere(delivery, stage).await else { continue };
        metrics().delivery(stage);
        let span = delivery_span(stage, &delivery);
        let work = handle(delivery.message.clone(), delivery.delivered);
        let (bus, spec) = (bus.clone(), spec.clone());
        in_flight.spawn(async move {
            let outcome = work.instrument(span.clone()).await;
            settle(&*bus, &spec, stage, delivery, outcome, false).instrument(span).await;
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    }
    let drained =
        tokio::time::timeout(Shutdown::GRACE, async { while in_flight.join_next().await.is_some() {} });
    if drained.await.is_err() {
        warn!(durable = %spec.durable, "messages in flight did not finish within the grace period");
    }
    lag.abort();
    tracing::info!(durable = %spec.durable, "consumer stopped");
    Ok(())
}

/// How a batch consumer's deliveries are taken and acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most messages handed to the handler at once.
    pub max_batch: usize,
    /// Most messages taken and not yet settled, across the batches in flight.
    pub max_in_flight: usize,
    /// Ack without waiting for the bus to confirm ([`shopmind_bus::Acker::ack_unconfirmed`]):
    /// only for handlers whose effects are idempotent, as a lost ack means a redelivery.
    pub unconfirmed_acks: bool,
}

/// Like [`consume_concurrently`], with the messages handed to `handle` in batches: whatever
/// deliveries are ready, up to `options.max_batch`, and at least one. The handler returns one
/// [`Outcome`] per message, in order (a missing one counts as a retry); each message is then
/// settled as [`consume_loop`] settles it (ack only after the handler returned, so after its
/// effect is stored; dead letter before the ack). Batches run concurrently (for handlers whose
/// effects commute), with at most `options.max_in_flight` messages unsettled. On shutdown, no new
/// message is taken and the batches in flight are finished within [`Shutdown::GRACE`].
pub async fn consume_batches<F, Fut>(
    bus: Arc<dyn Bus>,
    spec: ConsumerSpec,
    stage: &'static str,
    options: BatchOptions,
    shutdown: Shutdown,
    mut handle: F,
) -> Result<(), BusError>
where
    F: FnMut(Vec<Message>) -> Fut,
    Fut: Future<Output = Vec<Outcome>> + Send + 'static,
{
    let mut deliveries = bus.consume(&spec).await?;
    let lag = tokio::spawn(refresh_lag(bus.clone(), spec.clone(), stage, shutdown.clone()));
    let max_batch = options.max_batch.max(1);
    let limit = Arc::new(Semaphore::new(options.max_in_flight.max(max_batch)));
    let mut in_flight = JoinSet::new();
    tracing::info!(
        durable = %spec.durable,
        stream = %spec.stream,
        max_batch,
        max_in_flight = options.max_in_flight,
        "consuming in batches"
    );
    'taking: loop {
        // A permit per message: the first is waited for, the rest only taken while free.
        let first = tokio::select! {
            () = shutdown.wait() => break,
            p = limit.clone().acquire_owned() => p,
        };
        let Ok(mut permits) = first else { break };
        let mut batch: Vec<Delivery> = Vec::with_capacity(max_batch);
        while batch.is_empty() {
            let next = tokio::select! {
                () = shutdown.wait() => break 'taking,
                next = deliveries.next() => next,
            };
            match next {
                Some(Ok(d)) => {
                    if let Some(d) = skip_replayed_elsewhere(d, stage).await {
                        batch.push(d);
                    }
                }
                Some(Err(e)) => {
                    warn!(error = %e, durable = %spec.durable, "consumer error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => break 'taking,
            }
        }
        // Then whatever else is ready now, while permits last.
        while batch.len() < max_batch {
            let Ok(permit) = limit.clone().try_acquire_owned() else { break };
            match deliveries.next().now_or_never() {
                Some(Some(Ok(d))) => {
                    if let Some(d) = skip_replayed_elsewhere(d, stage).await {
                        permits.merge(permit);
                        batch.push(d);
                    }
                }
                Some(Some(Err(e))) => {
                    warn!(error = %e, durable = %spec.durable, "consumer error");
                    break;
                }
                Some(None) | None => break,
            }
        }
        for _ in &batch {
            metrics().delivery(stage);
        }
        let spans: Vec<tracing::Span> = batch.iter().map(|d| delivery_span(stage, d)).collect();
        let work = handle(batch.iter().map(|d| d.message.clone()).collect());
        let (bus, spec) = (bus.clone(), spec.clone());
        let unconfirmed = options.unconfirmed_acks;
        in_flight.spawn(async move {
            let mut outcomes = work.await.into_iter();
            let settling = batch.into_iter().zip(spans).map(|(delivery, span)| {
                let outcome = outcomes.next().unwrap_or_else(|| Outcome::Retry {
                    delay: Duration::from_secs(1),
                    reason: "the handler returned no outcome".into(),
                });
                settle(&*bus, &spec, stage, delivery, outcome, unconfirmed).instrument(span)
            });
            futures::future::join_all(settling).await;
            drop(permits);
        });
        while in_flight.try_join_next().is_some() {}
    }
    let drained =
        tokio::time::timeout(Shutdown::GRACE, async { while in_flight.join_next().await.is_some() {} });
    if drained.await.is_err() {
        warn!(durable = %spec.durable, "messages in flight did not finish within the grace period");
    }
    lag.abort();
    tracing::info!(durable = %spec.durable, "consumer stopped");
    Ok(())
}

/// A dead letter replayed for another stage has been processed by this one before: acks it and
/// returns None; any other delivery is returned.
async fn skip_replayed_elsewhere(delivery: Delivery, stage: &'static str) -> Option<Delivery> {
    if delivery.message.headers.get(crate::dlq::REPLAY_STAGE_HEADER).is_some_and(|s| s != stage) {
        metrics().delivery(stage);
        metrics().settled(stage, Settlement::Ack);
        if let Err(e) = delivery.acker.ack().await {
            warn!(error = %e, "ack failed");
        }
        return None;
    }
    Some(delivery)
}

/// The span of one delivery: a child of the trace context its headers carry.
fn delivery_span(stage: &'static str, delivery: &Delivery) -> tracing::Span {
    let incoming = delivery.message.headers.trace();
    let span = tracing::info_span!(
        "consume",
        stage,
        subject = %delivery.message.subject,
        seq = delivery.stream_sequence,
        delivered = delivery.delivered,
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::set_remote_parent(&span, incoming);
    span.record("trace_id", crate::telemetry::outgoing(&span, incoming).trace_id_hex());
    span
}

/// Every [`LAG_REFRESH`], sets `stage`'s consumer lag gauge from the bus, until `shutdown`.
async fn refresh_lag(bus: Arc<dyn Bus>, spec: ConsumerSpec, stage: &'static str, shutdown: Shutdown) {
    loop {
        match bus.consumer_lag(&spec.stream, &spec.durable).await {
            Ok(lag) => metrics().consumer_lag(stage, lag.pending.saturating_add(lag.ack_pending)),
            Err(e) => tracing::debug!(error = %e, durable = %spec.durable, "consumer lag unavailable"),
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(LAG_REFRESH) => {}
        }
    }
}

/// Settles one delivery after its handler returned: ack, nak (retry) or dead letter then ack. The
/// final ack is confirmed by the bus unless `unconfirmed`.
async fn settle(
    bus: &dyn Bus,
    spec: &ConsumerSpec,
    stage: &'static str,
    d: Delivery,
    outcome: Outcome,
    unconfirmed: bool,
) {
    let Delivery { message, stream_sequence, delivered, acker } = d;
    let exhausted = spec.max_deliver > 0 && delivered >= spec.max_deliver as u64;
    let dead = match outcome {
        Outcome::Done => None,
        Outcome::Retry { delay, reason } if !exhausted => {
            warn!(%reason, retry_in = ?delay, "processing failed; will retry");
            metrics().settled(stage, Settlement::Retry);
            if let Err(e) = acker.nak(Some(delay)).await {
                warn!(error = %e, "nak failed; the message comes back after the ack wait");
            }
            return;
        }
        Outcome::Retry { reason, .. } => {
            Some((RETRIES_EXHAUSTED, format!("after {delivered} attempts: {reason}")))
        }
        Outcome::Reject { code, reason } => Some((code, reason)),
    };
    if let Some((code, reason)) = dead {
        warn!(code, %reason, "dead-lettering message");
        if let Err(e) = dead_letter(bus, &message, stream_sequence, stage, code, &reason).await {
            // Not stored anywhere yet: leave it to be delivered again rather than lose it.
            warn!(error = %e, "dead-lettering failed; will retry");
            metrics().settled(stage, Settlement::Retry);
            let _ = acker.nak(Some(Duration::from_secs(1))).await;
            return;
        }
        metrics().dead_lettered(stage, code);
        metrics().settled(stage, Settlement::DeadLetter);
    } else {
        metrics().settled(stage, Settlement::Ack);
    }
    let acked = if unconfirmed { acker.ack_unconfirmed().await } else { acker.ack().await };
    if let Err(e) = acked {
        warn!(error = %e, "ack failed; the message will be delivered again (its effect is idempotent)");
        return;
    }
    if spec.stream == crate::topology::INTAKE_STREAM {
        // Raw intake messages may hold unmasked PII and the shop's own customer ids: once
        // settled (published masked to SM_EVENTS, or dead-lettered masked) they are erased.
        if let Err(e) = bus.delete_message(&spec.stream, stream_sequence).await {
            warn!(error = %e, "could not delete the settled intake message; the stream's max_age removes it");
        }
    }
}
