//! The feature service: consumes the events stream (durable consumer `feature`) and applies each
//! event to the feature store, exactly once in effect (see [`shopmind_features::apply_event`]).
//! It acks an event only after its effect is stored; an undecodable event goes to the dead-letter
//! stream with its reason; a store outage is retried, then dead-lettered, never dropped.

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;
use shopmind_bus::{Bus, BusError, Message};
use shopmind_config::Config;
use shopmind_domain::{Event, RejectCode, ValidationPolicy};
use shopmind_features::{Applied, FeatureSettings, apply_event};
use shopmind_proto::v1 as pb;
use shopmind_runtime::consume::{Outcome, consume_loop};
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

pub fn settings(config: &Config) -> FeatureSettings {
    let f = &config.feature;
    FeatureSettings {
        recent_cap: f.recent_items_cap,
        popular_cap: f.popular_items_cap,
        user_ttl: Duration::from_secs(u64::from(f.user_ttl_days) * 86_400),
        dedup_ttl: Duration::from_secs(u64::from(f.dedup_ttl_hours) * 3600),
    }
}

/// Decodes a message of the events stream into a validated event, or the reason it is not one.
pub fn decode_event(message: &Message) -> Result<Event, (&'static str, String)> {
    let wire = pb::Event::decode(message.payload.as_ref())
        .map_err(|e| (RejectCode::Malformed.as_str(), format!("not a shopmind.v1.Event: {e}")))?;
    let tenant = topology::tenant_of_subject(&message.subject);
    Event::from_proto(&wire, tenant.as_ref(), &ValidationPolicy::stored())
        .map_err(|v| (v.first().code.as_str(), v.to_string()))
}

/// Applies one message; the outcome tells the consumer loop how to settle it.
pub async fn process(store: &dyn FeatureStore, settings: &FeatureSettings, message: Message) -> Outcome {
    let event = match decode_event(&message) {
        Ok(e) => e,
        Err((code, reason)) => return Outcome::Reject { code, reason },
    };
    match apply_event(store, &event, settings).await {
        Ok(Applied::Applied) => {
            debug!(tenant = %event.tenant, event_id = %event.id, kind = event.kind().as_str(), "applied");
            Outcome::Done
        }
        Ok(Applied::Duplicate) => {
            debug!(tenant = %event.tenant, event_id = %event.id, "already applied");
            Outcome::Done
        }
        Err(e) => Outcome::Retry { delay: Duration::from_secs(1), reason: format!("store: {e}") },
    }
}

/// Runs the feature consumer until `shutdown`.
pub async fn run(
    config: Config,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
) -> Result<(), FeatureError> {
    let settings = settings(&config);
    let spec = topology::events_consumer(
        DURABLE,
        Vec::new(),
        Duration::from_secs(config.feature.ack_wait_s),
        config.feature.max_deliver,
    );
    consume_loop(bus, spec, "feature", shutdown, |message| {
        let store = store.clone();
        async move { process(&*store, &settings, message).await }
    })
    .await?;
    Ok(())
}
