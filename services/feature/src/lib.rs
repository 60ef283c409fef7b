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
use shopmind_metrics::global as metrics;
use shopmind_proto::v1 as pb;
use shopmind_runtime::consume::{Outcome, consume_concurrently};
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
    let days = |d: u32| Duration::from_secs(u64::from(d) * 86_400);
    let hours = |h: u32| Duration::from_secs(u64::from(h) * 3600);
    FeatureSettings {
        recent_cap: f.recent_items_cap,
        popular_cap: f.popular_items_cap,
        user_ttl: days(f.user_ttl_days),
        dedup_ttl: hours(f.dedup_ttl_hours),
        session_ttl: hours(f.session_ttl_hours),
        bought_cap: f.bought_cap,
        cart_log_cap: f.cart_log_cap,
        covisit_window: Duration::from_secs(f.covisit_window_s),
        copurchase_window: days(f.copurchase_window_days),
        neighbours_keep: f.neighbours_keep,
        window_cap: f.window_cap,
        pairs_cap: f.pairs_cap,
        demand_days: f.demand_days,
        affinity_half_life: days(f.affinity_half_life_days),
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
            metrics().feature_event(shopmind_metrics::Applied::Applied);
            debug!(tenant = %event.tenant, event_id = %event.id, kind = event.kind().as_str(), "applied");
            Outcome::Done
        }
        Ok(Applied::Duplicate) => {
            metrics().feature_event(shopmind_metrics::Applied::Duplicate);
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
    consume_concurrently(bus, spec, "feature", config.feature.concurrency, shutdown, move |message| {
        let store = store.clone();
        async move { process(&*store, &settings, message).await }
    })
    .await?;
    Ok(())
}
