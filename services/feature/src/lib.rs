//! The feature service: consumes the events stream (durable consumer `feature`) and applies each
//! event to the feature store, exactly once in effect (see [`shopmind_features::apply_event`]).
//! It acks an event only after its effect is stored; an undecodable event goes to the dead-letter
//! stream with its reason; a store outage is retried, then dead-lettered, never dropped.

pub mod erase;
pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::{Bus, BusError, Message};
use shopmind_config::Config;
use shopmind_features::{Applied, FeatureSettings, apply_events};
use shopmind_metrics::global as metrics;
use shopmind_runtime::consume::{BatchOptions, Outcome, consume_batches};
use shopmind_runtime::intake::decode_event;
use shopmind_runtime::rpc::{self, methods};
use shopmind_runtime::tombstones::Tombstones;
use shopmind_runtime::{Shutdown, topology};
use shopmind_store::FeatureStore;
use tracing::debug;

/// The durable consumer name shared by all feature replicas.
pub const DURABLE: &str = "feature";

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

/// Requests handled at once by `sm.rpc.*.feature.erase`.
const ERASE_CONCURRENCY: usize = 4;

/// Applies one message; the outcome tells the consumer loop how to settle it.
pub async fn process(store: &dyn FeatureStore, settings: &FeatureSettings, message: Message) -> Outcome {
    process_batch(store, settings, vec![message]).await.pop().unwrap_or(Outcome::Done)
}

/// Applies a batch of messages in two store round trips (the categories of their items, then
/// one guarded write per event, see [`apply_events`]); one outcome per message, in order.
/// Undecodable events are rejected (dead-lettered by the loop); an event whose effect could not
/// be stored is retried.
pub async fn process_batch(
    store: &dyn FeatureStore,
    settings: &FeatureSettings,
    messages: Vec<Message>,
) -> Vec<Outcome> {
    process_batch_excluding(store, settings, &Tombstones::default(), messages).await
}

/// [`process_batch`], skipping (acking without applying) the events of erased customers
/// (stragglers published after the erasure).
pub async fn process_batch_excluding(
    store: &dyn FeatureStore,
    settings: &FeatureSettings,
    erased: &Tombstones,
    messages: Vec<Message>,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(messages.len());
    let mut events = Vec::with_capacity(messages.len());
    for message in &messages {
        match decode_event(message) {
            Ok(e) if erased.covers(&e) => {
                debug!(tenant = %e.tenant, event_id = %e.id, "event of an erased customer skipped");
                outcomes.push(Some(Outcome::Done));
            }
            Ok(e) => {
                events.push(e);
                outcomes.push(None);
            }
            Err((code, reason)) => outcomes.push(Some(Outcome::Reject { code, reason })),
        }
    }
    let mut applied = match apply_events(store, &events, settings).await {
        Ok(results) => results.into_iter(),
        Err(e) => {
            let reason = format!("store: {e}");
            return outcomes
                .into_iter()
                .map(|o| o.unwrap_or_else(|| Outcome::Retry { delay: RETRY_DELAY, reason: reason.clone() }))
                .collect();
        }
    };
    let mut events = events.iter();
    outcomes
        .into_iter()
        .map(|outcome| {
            if let Some(rejected) = outcome {
                return rejected;
            }
            let (Some(event), Some(result)) = (events.next(), applied.next()) else {
                return Outcome::Retry { delay: RETRY_DELAY, reason: "no result from the store".into() };
            };
            match result {
                Ok(Applied::Applied) => {
                    metrics().feature_event(shopmind_metrics::Applied::Applied);
                    debug!(tenant = %event.tenant, event_id = %event.id, kind = event.kind().as_str(), "applied");
                    Outcome::Done
                }
                Ok(Applied::Duplicate) => {
                    metrics().feature_event(shopmind_metrics::Applied::Duplicate);
                    debug!(tenant = %event.tenant, event_id = %event.id, "already applied");
                    Outcome::Done
                }
                Err(e) => Outcome::Retry { delay: RETRY_DELAY, reason: format!("store: {e}") },
            }
        })
        .collect()
}

/// Redelivery delay of an event whose effect could not be stored.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Runs the feature consumer until `shutdown`.
///
/// Deliveries are applied in batches of up to `feature.batch_size` (one store round trip each),
/// with up to `feature.concurrency` events in flight, and acked without waiting for the server's
/// confirmation: each event's effect is guarded by its idempotency key, so an ack that is lost
/// only means a redelivery that changes nothing (see docs/FEATURES.md).
pub async fn run(
    config: Config,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
) -> Result<(), FeatureError> {
    let settings = FeatureSettings::from_config(&config.feature);
    let spec = topology::events_consumer(
        DURABLE,
        Vec::new(),
        Duration::from_secs(config.feature.ack_wait_s),
        config.feature.max_deliver,
    );
    let options = BatchOptions {
        max_batch: config.feature.batch_size,
        max_in_flight: config.feature.concurrency,
        unconfirmed_acks: true,
    };
    let erasures = rpc::Server::new(bus.clone(), shutdown.clone()).serve(
        methods::Erase,
        ERASE_CONCURRENCY,
        Arc::new((config.clone(), bus.clone(), store.clone())),
        |state, req, _| async move {
            let (config, bus, store) = &*state;
            erase::answer(config, &**bus, &**store, &req).await
        },
        |_, _| {},
    );
    let erased = Tombstones::follow(bus.clone(), shutdown.clone()).await?;
    let consumed = consume_batches(bus, spec, "feature", options, shutdown, move |messages| {
        let (store, erased) = (store.clone(), erased.clone());
        async move { process_batch_excluding(&*store, &settings, &erased, messages).await }
    });
    let (served, consumed) = tokio::join!(erasures, consumed);
    served?;
    consumed?;
    Ok(())
}
