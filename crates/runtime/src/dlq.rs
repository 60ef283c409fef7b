//! Inspecting and replaying the dead-letter stream (`shopmind dlq list|replay`).
//!
//! A replayed message is published again, unchanged, to the subject it was first published to,
//! with the header [`REPLAY_STAGE_HEADER`] naming the stage that failed: only that stage's
//! consumer processes it (the others ack it untouched), so a replay never repeats the effects of
//! stages that had succeeded. The dead letter is then deleted from `SM_DLQ`.

use futures::StreamExt;
use shopmind_bus::{Bus, BusError, Headers, Message, StartAt};

use crate::topology::{
    DLQ_CODE_HEADER, DLQ_REASON_HEADER, DLQ_SEQUENCE_HEADER, DLQ_STREAM, DLQ_SUBJECT_HEADER,
};

/// Header of a replayed message: the one consumer stage that should process it.
pub const REPLAY_STAGE_HEADER: &str = "Shopmind-Replay-Stage";

/// A message in the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its sequence in `SM_DLQ`.
    pub sequence: u64,
    pub tenant: String,
    /// The consumer that gave up on it: `ingest`, `feature`, `notification`.
    pub stage: String,
    pub code: String,
    pub reason: String,
    /// Where it was first published, and its sequence there.
    pub original_subject: String,
    pub original_sequence: Option<u64>,
    pub bytes: usize,
    message: Message,
}

/// Which dead letters a command is about.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub tenant: Option<String>,
    pub stage: Option<String>,
    pub code: Option<String>,
    /// Only these `SM_DLQ` sequences (empty: all).
    pub sequences: Vec<u64>,
}

impl Filter {
    fn matches(&self, d: &DeadLetter) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == d.tenant)
            && self.stage.as_ref().is_none_or(|s| *s == d.stage)
            && self.code.as_ref().is_none_or(|c| *c == d.code)
            && (self.sequences.is_empty() || self.sequences.contains(&d.sequence))
    }
}

fn parse(sequence: u64, message: Message) -> DeadLetter {
    let mut tokens = message.subject.split('.').skip(2);
    let tenant = tokens.next().unwrap_or_default().to_string();
    let stage = tokens.next().unwrap_or_default().to_string();
    let h = &message.headers;
    DeadLetter {
        sequence,
        tenant,
        stage,
        code: h.get(DLQ_CODE_HEADER).unwrap_or_default().to_string(),
        reason: h.get(DLQ_REASON_HEADER).unwrap_or_default().to_string(),
        original_subject: h.get(DLQ_SUBJECT_HEADER).unwrap_or_default().to_string(),
        original_sequence: h.get(DLQ_SEQUENCE_HEADER).and_then(|s| s.parse().ok()),
        bytes: message.payload.len(),
        message,
    }
}

/// The dead letters matching `filter`, oldest first, at most `limit`.
pub async fn list(bus: &dyn Bus, filter: &Filter, limit: usize) -> Result<Vec<DeadLetter>, BusError> {
    let state = bus.stream_state(DLQ_STREAM).await?;
    let mut out = Vec::new();
    if state.messages == 0 || limit == 0 {
        return Ok(out);
    }
    let mut replay = bus.replay(DLQ_STREAM, None, StartAt::First).await?;
    while let Some(next) = replay.next().await {
        let stored = next?;
        let d = parse(stored.sequence, stored.message);
        if filter.matches(&d) {
            out.push(d);
            if out.len() >= limit {
                break;
            }
        }
        if stored.sequence >= state.last_sequence || stored.pending == 0 {
            break;
        }
    }
    Ok(out)
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Dead letters without an original subject to go back to (left in place).
    pub skipped: Vec<u64>,
}

/// Publishes the matching dead letters again to their original subjects, for their stage only,
/// and removes them from `SM_DLQ`.
pub async fn replay(bus: &dyn Bus, filter: &Filter) -> Result<ReplayReport, BusError> {
    let mut report = ReplayReport::default();
    for d in list(bus, filter, usize::MAX).await? {
        if d.original_subject.is_empty() {
            report.skipped.push(d.sequence);
            continue;
        }
        let mut headers = Headers::new();
        for (k, v) in d.message.headers.iter() {
            if !k.starts_with("Shopmind-Dlq-") && k != REPLAY_STAGE_HEADER {
                headers.insert(k, v);
            }
        }
        headers.insert(REPLAY_STAGE_HEADER, d.stage.clone());
        let message =
            Message { subject: d.original_subject.clone(), headers, payload: d.message.payload.clone() };
        bus.publish(message, None).await?;
        bus.delete_message(DLQ_STREAM, d.sequence).await?;
        report.replayed += 1;
    }
    Ok(report)
}
