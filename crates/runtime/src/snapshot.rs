//! Reading the messages a stream holds now, in order, one at a time: a replay from the first
//! message up to the last sequence the stream had when it was opened, so that a large stream is
//! never held in memory and messages published meanwhile are not waited for. The erasure reads
//! every stream that can hold a customer's messages this way, and [`crate::tombstones`] the
//! tombstones.

use shopmind_bus::{Bus, BusError, ReplayStream, StartAt, StoredMessage};

/// The messages a stream held when it was opened (see the module docs).
pub struct StreamReader {
    replay: Option<ReplayStream>,
    last_sequence: u64,
}

impl StreamReader {
    /// A reader of `stream`; a stream that does not exist reads as empty.
    pub async fn open(bus: &dyn Bus, stream: &str) -> Result<Self, BusError> {
        let state = match bus.stream_state(stream).await {
            Ok(s) => s,
            Err(BusError::UnknownStream(_)) => return Ok(Self { replay: None, last_sequence: 0 }),
            Err(e) => return Err(e),
        };
        if state.messages == 0 {
            return Ok(Self { replay: None, last_sequence: 0 });
        }
        let replay = bus.replay(stream, None, StartAt::First).await?;
        Ok(Self { replay: Some(replay), last_sequence: state.last_sequence })
    }

    /// The next message, or None at the end.
    pub async fn next(&mut self) -> Result<Option<StoredMessage>, BusError> {
        let Some(replay) = self.replay.as_mut() else { return Ok(None) };
        let Some(next) = futures::StreamExt::next(replay).await else {
            self.replay = None;
            return Ok(None);
        };
        let stored = next?;
        if stored.sequence >= self.last_sequence || stored.pending == 0 {
            self.replay = None;
        }
        Ok(Some(stored))
    }
}

/// Every message a stream holds now, in order (for small streams and tests; see [`StreamReader`]).
pub async fn read_stream(bus: &dyn Bus, stream: &str) -> Result<Vec<StoredMessage>, BusError> {
    let mut reader = StreamReader::open(bus, stream).await?;
    let mut out = Vec::new();
    while let Some(m) = reader.next().await? {
        out.push(m);
    }
    Ok(out)
}
