//! The tombstones of erased customers (docs/PRIVACY.md, "Erasure"): one message per erased
//! customer on `sm.erased.<tenant>` (`SM_ERASURES`, kept forever) holding
//! [`shopmind_privacy::tombstone_of`] of the tenant and the customer id as stored, never the id.
//! The erasure publishes them first; whatever consumes customer events skips the events a
//! tombstone covers, stragglers published after the erasure included: the feature and
//! notification services follow them live ([`Tombstones::follow`]), a training round reads those
//! there are when it starts ([`Tombstones::load`]).

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use futures::StreamExt;
use shopmind_bus::{Bus, BusError, StartAt};
use shopmind_domain::Event;

use crate::snapshot::StreamReader;
use crate::{Shutdown, topology};

/// The tombstones known so far; clones share them (and what [`Tombstones::follow`] adds).
#[derive(Debug, Clone, Default)]
pub struct Tombstones(Arc<RwLock<HashSet<String>>>);

impl Tombstones {
    /// Whether the event is about an erased customer.
    pub fn covers(&self, event: &Event) -> bool {
        let Some(user) = &event.user else { return false };
        let stones = self.0.read().unwrap_or_else(PoisonError::into_inner);
        !stones.is_empty() && stones.contains(&shopmind_privacy::tombstone_of(&event.tenant, user))
    }

    /// Whether `stone` (a [`shopmind_privacy::tombstone_of`]) is among them.
    pub fn contains(&self, stone: &str) -> bool {
        self.0.read().unwrap_or_else(PoisonError::into_inner).contains(stone)
    }

    fn insert(&self, payload: &[u8]) {
        if let Ok(stone) = std::str::from_utf8(payload) {
            self.0.write().unwrap_or_else(PoisonError::into_inner).insert(stone.to_string());
        }
    }

    /// The tombstones of every tenant that `SM_ERASURES` holds now (none without the stream).
    pub async fn load(bus: &dyn Bus) -> Result<Self, BusError> {
        Ok(Self::load_through(bus).await?.0)
    }

    /// The tombstones there are, and where the stream goes on after them.
    async fn load_through(bus: &dyn Bus) -> Result<(Self, StartAt), BusError> {
        let stones = Self::default();
        let mut reader = StreamReader::open(bus, topology::ERASURES_STREAM).await?;
        let mut next = StartAt::First;
        while let Some(m) = reader.next().await? {
            stones.insert(&m.message.payload);
            next = StartAt::Sequence(m.sequence + 1);
        }
        Ok((stones, next))
    }

    /// Loads the tombstones there are, then follows new ones until `shutdown` (in a task).
    pub async fn follow(bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<Self, BusError> {
        let (stones, start) = Self::load_through(&*bus).await?;
        let mut replay = match bus.replay(topology::ERASURES_STREAM, None, start).await {
            Ok(r) => r,
            Err(BusError::UnknownStream(_)) => {
                tracing::warn!(
                    "no tombstone stream (SM_ERASURES): stragglers of erased customers are not skipped"
                );
                return Ok(stones);
            }
            Err(e) => return Err(e),
        };
        let following = stones.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    () = shutdown.wait() => break,
                    next = replay.next() => next,
                };
                match next {
                    Some(Ok(m)) => following.insert(&m.message.payload),
                    Some(Err(e)) => tracing::warn!(error = %e, "following tombstones failed"),
                    None => break,
                }
            }
        });
        Ok(stones)
    }
}
