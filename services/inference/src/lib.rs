//! The inference service: answers `sm.rpc.<tenant>.inference.recommend`.
//!
//! Recommend ([`recommend`]) serves five scenarios (for you, similar items, bought together,
//! trending, cart complement) in two stages: candidates from the model's ANN index (or every item
//! of a small catalog), co-visitation and co-purchase neighbours, new catalog items and trending;
//! then the ONNX model's ranking, filters, a diversity cap and paging. Because the history is read
//! at request time, an event changes the next answer as soon as the feature service has applied
//! it — no retraining needed.
//!
//! Models come from the model registry ([`shopmind_registry`]): inference watches the active
//! version of every tenant's `recommender`, loads and warms up a new one in the background and
//! swaps it in atomically; a version that fails to load leaves the previous one serving
//! ([`LiveModels`]). Every response names the version that scored it (`model_version`; empty when
//! the tenant has no model yet and popular items answer).
//!
//! Concurrent requests to one model are scored together in micro-batches
//! (`shopmind_serving::batch`; `inference.max_batch`, `max_queue_delay_us`, `queue_capacity`). The
//! caller's deadline (header `Shopmind-Deadline-Ms`) travels with the request into the batch
//! queue: a request whose deadline passes before its batch runs is answered DEADLINE_EXCEEDED and
//! not computed; a full queue is answered UNAVAILABLE at once.
//!
//! The same service answers `sm.rpc.<tenant>.inference.intent` and `…forecast` from the tenants'
//! purchase-intent and demand models ([`predict`]), `…agent_report` from the support
//! conversations in the store ([`agents`]), `…profile` with customer profiles (RFM segment,
//! churn risk, top categories, recent activity: [`profile`]), and `…assist`, the
//! customer-service assistant ([`assist`]).

pub mod agents;
pub mod assist;
mod error;
mod live;
pub mod predict;
pub mod profile;
pub mod recommend;
mod served;

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::Bus;
use shopmind_config::Config;
use shopmind_registry::ModelStore;
use shopmind_runtime::{Shutdown, rpc};
use shopmind_serving::BatchOptions;
use shopmind_store::FeatureStore;
use tracing::info;

pub use error::InferenceError;
pub use live::{LiveModels, Prepare, Servable, pool_options};
pub use recommend::request::{DEFAULT_LIMIT, MAX_LIMIT};
pub use recommend::{RecommendSettings, Recommender};
pub use served::{RecommenderModel, ServedEmbedding, build_ann};

/// The recommenders an inference instance serves.
pub type Recommenders = LiveModels<RecommenderModel>;

/// Requests one inference instance works on at the same time.
const MAX_CONCURRENT_REQUESTS: usize = 256;

/// The batching options of `inference.*`.
pub(crate) fn batch_options(config: &Config) -> BatchOptions {
    BatchOptions {
        max_batch: config.inference.max_batch,
        max_queue_delay: Duration::from_micros(config.inference.max_queue_delay_us),
        queue_capacity: config.inference.queue_capacity,
    }
}

/// Serves recommend requests until `shutdown`.
pub async fn run(
    config: Config,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    registry: Arc<dyn ModelStore>,
    shutdown: Shutdown,
) -> Result<(), InferenceError> {
    let library = shopmind_serving::library_path(&config.inference.onnxruntime_library)
        .map_err(InferenceError::Runtime)?;
    shopmind_serving::init_runtime(&library).map_err(InferenceError::Runtime)?;
    let pool = || live::pool_options(&config).map_err(InferenceError::Runtime);
    let ann = recommend::ann::AnnOptions::from_config(&config.inference);
    let models = Arc::new(Recommenders::with_prepare(pool()?, served::build_ann(ann)));
    info!(registry = registry.kind(), "following the model registry");
    let predictions =
        predict::Serving::start(&config, pool()?, bus.clone(), store.clone(), registry.clone(), &shutdown);
    let profiles = profile::start(&config, bus.clone(), store.clone(), &shutdown);
    let assist =
        assist::Serving::start(&config, pool()?, bus.clone(), store.clone(), registry.clone(), &shutdown);
    let follower = tokio::spawn(models.clone().follow(registry, shutdown.clone()));
    let agent_reports = agents::start(&config, bus.clone(), store.clone(), &shutdown);

    let recommender =
        Arc::new(Recommender::with_settings(store, models, RecommendSettings::from_config(&config)));
    let server = rpc::Server::new(bus, shutdown);
    recommend::serve(recommender, &server, MAX_CONCURRENT_REQUESTS).await?;
    follower.abort();
    predictions.stopped().await?;
    agents::stopped(agent_reports).await?;
    profiles.await.unwrap_or(Ok(()))?;
    assist.stopped().await?;
    info!("inference stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn batch_options_come_from_the_inference_section() {
        let mut config = Config::default();
        config.inference.max_batch = 7;
        config.inference.max_queue_delay_us = 250;
        config.inference.queue_capacity = 9;
        assert_eq!(
            batch_options(&config),
            BatchOptions { max_batch: 7, max_queue_delay: Duration::from_micros(250), queue_capacity: 9 }
        );
        assert_eq!(live::pool_options(&config).unwrap().batch, batch_options(&config));
    }
}
