//! The inference service: answers `sm.rpc.<tenant>.inference.recommend`.
//!
//! For a request it reads the user's context in one store round trip (recent interactions,
//! purchases, cart, the tenant's popular items), weights the recent interactions (purchase > cart >
//! view, newer > older), and lets the tenant's ONNX model score every item in ONNX Runtime. Items
//! the user bought, and those the request excludes, are removed; if fewer than asked remain, popular
//! items fill the page. Because the history is read at request time, an event changes the next
//! answer as soon as the feature service has applied it — no retraining needed.
//!
//! Models come from the model registry ([`shopmind_registry`]): inference watches the active
//! version of every tenant's `recommender`, loads and warms up a new one in the background and
//! swaps it in atomically; a version that fails to load leaves the previous one serving
//! ([`LiveModels`]). Every response names the version that scored it (`model_version`; empty when
//! the tenant has no model yet and popular items answer).
//!
//! Concurrent requests to one model are scored together in micro-batches
//! (`shopmind_models::batch`; `inference.max_batch`, `max_queue_delay_us`, `queue_capacity`). The
//! caller's deadline (header `Shopmind-Deadline-Ms`) travels with the request into the batch
//! queue: a request whose deadline passes before its batch runs is answered DEADLINE_EXCEEDED and
//! not computed; a full queue is answered UNAVAILABLE at once.
//!
//! The same service answers `sm.rpc.<tenant>.inference.intent` and `…forecast` from the tenants'
//! purchase-intent and demand models ([`predict`]), and `…assist`, the customer-service
//! assistant ([`assist`]).

pub mod assist;
mod live;
pub mod predict;
mod served;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, IncomingRequest};
use shopmind_config::Config;
use shopmind_domain::{InteractionKind, ItemId, TenantId, UserId};
use shopmind_features::{UserContext, read_user_context};
use shopmind_metrics::{Success, global as metrics};
use shopmind_models::{BatchOptions, ModelError};
use shopmind_proto::v1 as pb;
use shopmind_registry::ModelStore;
use shopmind_runtime::serve::serve_requests;
use shopmind_runtime::{Shutdown, rpc, telemetry, topology};
use shopmind_store::FeatureStore;
use tracing::{Instrument, info, warn};

pub use live::{LiveModels, Servable};
pub use served::RecommenderModel;

/// The recommenders an inference instance serves.
pub type Recommenders = LiveModels<RecommenderModel>;

/// Largest page of recommendations.
pub const MAX_LIMIT: u32 = 100;
/// Page size when the request says 0.
pub const DEFAULT_LIMIT: u32 = 10;
/// Requests one inference instance works on at the same time.
const MAX_CONCURRENT_REQUESTS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("ONNX Runtime: {0}")]
    Model(#[from] ModelError),
}

/// How much an interaction of this kind says about the user's taste.
fn kind_weight(kind: InteractionKind) -> f32 {
    match kind {
        InteractionKind::View => 1.0,
        InteractionKind::Cart => 2.0,
        InteractionKind::Purchase => 3.0,
    }
}

/// Each step back in the history counts this much less than the one after it.
const RECENCY_DECAY: f32 = 0.85;

/// Answers recommend requests from the store and the model registry.
pub struct Recommender {
    store: Arc<dyn FeatureStore>,
    models: Arc<Recommenders>,
    history_len: usize,
}

impl Recommender {
    pub fn new(store: Arc<dyn FeatureStore>, models: Arc<Recommenders>, history_len: usize) -> Self {
        Self { store, models, history_len }
    }

    pub async fn recommend(
        &self,
        req: &pb::RecommendRequest,
    ) -> Result<pb::RecommendResponse, pb::ServiceError> {
        self.recommend_until(req, None).await
    }

    /// [`Recommender::recommend`] for a caller that waits until `deadline`: the model does not
    /// score the request once it has passed.
    pub async fn recommend_until(
        &self,
        req: &pb::RecommendRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::RecommendResponse, pb::ServiceError> {
        let (tenant, user, limit) = validate(req)?;
        let popular_n = limit + req.exclude_item_ids.len() + 50;
        let ctx = read_user_context(&*self.store, &tenant, &user, self.history_len, popular_n)
            .await
            .map_err(|e| rpc::error(pb::ServiceErrorCode::Unavailable, format!("feature store: {e}")))?;

        let mut excluded: HashSet<&str> = ctx.bought.iter().map(ItemId::as_str).collect();
        excluded.extend(req.exclude_item_ids.iter().map(String::as_str));
        if req.exclude_seen {
            excluded.extend(ctx.recent.iter().map(|i| i.item.as_str()));
            excluded.extend(ctx.cart.iter().map(ItemId::as_str));
        }

        let mut items = Vec::with_capacity(limit);
        let mut model_version = String::new();
        if let Some(model) = self.models.get(&tenant) {
            model_version = model.version().to_string();
            let history = match &*model {
                RecommenderModel::Covisit(m) => weighted_history(&ctx, |item| m.index_of(item)),
                // The recency weighting the model was trained with, oldest first.
                RecommenderModel::Embedding(m) => {
                    let oldest_first: Vec<usize> =
                        ctx.recent.iter().rev().filter_map(|i| m.index_of(i.item.as_str())).collect();
                    m.recent_history(&oldest_first)
                }
            };
            if !history.is_empty() {
                let scores = model.score_until(&history, deadline).await.map_err(model_error)?;
                let mut ranked: Vec<(usize, f32)> =
                    scores.into_iter().enumerate().filter(|(_, s)| model.is_signal(*s)).collect();
                ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                for (idx, score) in ranked {
                    if items.len() == limit {
                        break;
                    }
                    let Some(item) = model.item(idx) else { continue };
                    if excluded.contains(item) {
                        continue;
                    }
                    items.push(pb::ScoredItem {
                        item_id: item.to_string(),
                        score,
                        reason: model.reason().into(),
                        ..Default::default()
                    });
                }
            }
        }
        fill_with_popular(&mut items, &ctx, &excluded, limit);
        Ok(pb::RecommendResponse { items, model_version, ..Default::default() })
    }
}

/// The batching options of `inference.*`.
pub(crate) fn batch_options(config: &Config) -> BatchOptions {
    BatchOptions {
        max_batch: config.inference.max_batch,
        max_queue_delay: Duration::from_micros(config.inference.max_queue_delay_us),
        queue_capacity: config.inference.queue_capacity,
    }
}

/// A model's error as the service's: a full queue or shutdown is UNAVAILABLE (try again, or
/// another replica), a passed deadline DEADLINE_EXCEEDED, anything else INTERNAL.
fn model_error(e: ModelError) -> pb::ServiceError {
    let code = match e {
        ModelError::Overloaded { .. } | ModelError::ShuttingDown { .. } => pb::ServiceErrorCode::Unavailable,
        ModelError::DeadlineExceeded { .. } => pb::ServiceErrorCode::DeadlineExceeded,
        _ => pb::ServiceErrorCode::Internal,
    };
    rpc::error(code, format!("model: {e}"))
}

fn validate(req: &pb::RecommendRequest) -> Result<(TenantId, UserId, usize), pb::ServiceError> {
    let mut violations = Vec::new();
    let tenant = TenantId::parse(req.tenant.clone())
        .map_err(|e| violations.push(("tenant".to_string(), e.to_string())));
    let user = UserId::parse(req.user_id.clone())
        .map_err(|e| violations.push(("user_id".to_string(), e.to_string())));
    if req.limit > MAX_LIMIT {
        violations.push(("limit".into(), format!("must be at most {MAX_LIMIT}, got {}", req.limit)));
    }
    for (i, id) in req.exclude_item_ids.iter().enumerate() {
        if let Err(e) = ItemId::parse(id.clone()) {
            violations.push((format!("exclude_item_ids[{i}]"), e.to_string()));
        }
    }
    match (tenant, user) {
        (Ok(t), Ok(u)) if violations.is_empty() => {
            let limit = if req.limit == 0 { DEFAULT_LIMIT } else { req.limit };
            Ok((t, u, limit as usize))
        }
        _ => Err(rpc::invalid(violations)),
    }
}

/// The user's recent interactions as (model index, weight), newest weighing most.
fn weighted_history(ctx: &UserContext, index_of: impl Fn(&str) -> Option<usize>) -> Vec<(usize, f32)> {
    let mut weight = 1.0f32;
    let mut history = Vec::with_capacity(ctx.recent.len());
    for i in &ctx.recent {
        if let Some(idx) = index_of(i.item.as_str()) {
            history.push((idx, weight * kind_weight(i.kind)));
        }
        weight *= RECENCY_DECAY;
    }
    history
}

fn fill_with_popular(
    items: &mut Vec<pb::ScoredItem>,
    ctx: &UserContext,
    excluded: &HashSet<&str>,
    limit: usize,
) {
    for (item, _) in &ctx.popular {
        if items.len() >= limit {
            break;
        }
        if excluded.contains(item.as_str()) || items.iter().any(|i| i.item_id == item.as_str()) {
            continue;
        }
        items.push(pb::ScoredItem {
            item_id: item.to_string(),
            score: 0.0,
            reason: "popular".into(),
            ..Default::default()
        });
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
    let library = if config.inference.onnxruntime_library.is_empty() {
        shopmind_models::runtime::default_library_path().ok_or_else(|| {
            ModelError::Runtime(
                "libonnxruntime.so not found: run scripts/setup.sh, set ORT_DYLIB_PATH, \
                 or set inference.onnxruntime_library"
                    .into(),
            )
        })?
    } else {
        PathBuf::from(&config.inference.onnxruntime_library)
    };
    shopmind_models::runtime::init_runtime(&library)?;
    let models = Arc::new(Recommenders::new(live::pool_options(&config)?));
    info!(registry = registry.kind(), "following the model registry");
    let predictions = predict::Serving::start(
        &config,
        live::pool_options(&config)?,
        bus.clone(),
        store.clone(),
        registry.clone(),
        &shutdown,
    );
    let assist = assist::Serving::start(
        &config,
        live::pool_options(&config)?,
        bus.clone(),
        store.clone(),
        registry.clone(),
        &shutdown,
    );
    let follower = tokio::spawn(models.clone().follow(registry, shutdown.clone()));

    let recommender = Arc::new(Recommender::new(store, models, config.inference.history_len));
    serve_requests(
        &*bus,
        &topology::rpc_pattern("inference", "recommend"),
        "inference",
        MAX_CONCURRENT_REQUESTS,
        &shutdown,
        move |request| {
            let recommender = recommender.clone();
            async move { handle(&recommender, request).await }
        },
    )
    .await?;
    follower.abort();
    predictions.stopped().await?;
    assist.stopped().await?;
    info!("inference stopped");
    Ok(())
}

async fn handle(recommender: &Recommender, request: IncomingRequest) {
    let started = Instant::now();
    let headers = &request.message.headers;
    let incoming = headers.trace();
    let span = tracing::info_span!("recommend", subject = %request.message.subject, trace_id = tracing::field::Empty);
    telemetry::set_remote_parent(&span, incoming);
    span.record("trace_id", telemetry::outgoing(&span, incoming).trace_id_hex());
    let reply = async {
        if rpc::deadline_passed(headers) {
            return Err(rpc::error(
                pb::ServiceErrorCode::DeadlineExceeded,
                "deadline passed before work started",
            ));
        }
        let req = pb::RecommendRequest::decode(request.message.payload.as_ref()).map_err(|e| {
            rpc::invalid(vec![(String::new(), format!("not a shopmind.v1.RecommendRequest: {e}"))])
        })?;
        if topology::tenant_of_subject(&request.message.subject).is_none_or(|t| t.as_str() != req.tenant) {
            return Err(rpc::invalid(vec![(
                "tenant".into(),
                "differs from the tenant of the subject".into(),
            )]));
        }
        recommender.recommend_until(&req, rpc::deadline(headers)).await
    }
    .instrument(span.clone())
    .await;
    metrics().inference_request(if reply.is_ok() { Success::Ok } else { Success::Error }, started.elapsed());
    let reply = match reply {
        Ok(ok) => pb::RecommendReply { result: Some(pb::recommend_reply::Result::Ok(ok)) },
        Err(e) => pb::RecommendReply { result: Some(pb::recommend_reply::Result::Error(e)) },
    };
    if let Err(e) = request.respond(Headers::new(), Bytes::from(reply.encode_to_vec())).instrument(span).await
    {
        warn!(error = %e, "could not reply");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shopmind_domain::{Interaction, UnixMillis};

    use super::*;

    fn request(tenant: &str, user: &str, limit: u32, exclude: &[&str]) -> pb::RecommendRequest {
        pb::RecommendRequest {
            tenant: tenant.into(),
            user_id: user.into(),
            limit,
            exclude_seen: false,
            exclude_item_ids: exclude.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The fields of the violations of an INVALID_ARGUMENT error.
    fn violated_fields(result: Result<(TenantId, UserId, usize), pb::ServiceError>) -> Vec<String> {
        let e = result.unwrap_err();
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32, "{e:?}");
        e.violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn model_errors_map_to_service_codes() {
        let code = |e| model_error(e).code;
        use pb::ServiceErrorCode as C;
        assert_eq!(code(ModelError::Overloaded { model: "covisit", capacity: 4 }), C::Unavailable as i32);
        assert_eq!(code(ModelError::ShuttingDown { model: "covisit" }), C::Unavailable as i32);
        assert_eq!(code(ModelError::DeadlineExceeded { model: "covisit" }), C::DeadlineExceeded as i32);
        assert_eq!(code(ModelError::Runtime("boom".into())), C::Internal as i32);
        assert!(
            model_error(ModelError::Overloaded { model: "covisit", capacity: 4 }).message.contains("full")
        );
    }

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

    #[test]
    fn validate_accepts_a_request_and_defaults_the_limit() {
        let (tenant, user, limit) = validate(&request("acme", "u1", 0, &[])).unwrap();
        assert_eq!((tenant.as_str(), user.as_str(), limit), ("acme", "u1", DEFAULT_LIMIT as usize));
        assert_eq!(validate(&request("acme", "u1", 7, &["i1"])).unwrap().2, 7);
        assert_eq!(validate(&request("acme", "u1", MAX_LIMIT, &[])).unwrap().2, MAX_LIMIT as usize);
    }

    #[test]
    fn validate_rejects_a_limit_above_the_maximum() {
        let e = validate(&request("acme", "u1", MAX_LIMIT + 1, &[])).unwrap_err();
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32);
        assert_eq!(e.violations.len(), 1, "{e:?}");
        assert_eq!(e.violations[0].field, "limit");
        assert!(e.violations[0].description.contains("101"), "{e:?}");
    }

    #[test]
    fn validate_names_bad_tenant_and_user_fields() {
        assert_eq!(violated_fields(validate(&request("", "u1", 0, &[]))), ["tenant"]);
        assert_eq!(violated_fields(validate(&request("Acme!", "u1", 0, &[]))), ["tenant"]);
        assert_eq!(violated_fields(validate(&request("acme", "", 0, &[]))), ["user_id"]);
        assert_eq!(violated_fields(validate(&request("acme", "u 1", 0, &[]))), ["user_id"]);
        // Every problem is reported at once.
        assert_eq!(violated_fields(validate(&request("", "", 500, &[]))), ["tenant", "user_id", "limit"]);
    }

    #[test]
    fn validate_names_bad_exclude_ids_by_index() {
        let fields = violated_fields(validate(&request("acme", "u1", 0, &["ok", "", "also-ok", "bad id"])));
        assert_eq!(fields, ["exclude_item_ids[1]", "exclude_item_ids[3]"]);
    }

    fn interaction(item: &str, kind: InteractionKind) -> Interaction {
        Interaction { item: ItemId::parse(item).unwrap(), kind, at: UnixMillis(1_700_000_000_000) }
    }

    fn context(recent: Vec<Interaction>, popular: &[&str]) -> UserContext {
        UserContext {
            recent,
            popular: popular.iter().map(|p| (ItemId::parse(*p).unwrap(), 1.0)).collect(),
            ..UserContext::default()
        }
    }

    /// Model indexes: "a" -> 0, "b" -> 1, ...; "unknown" has none.
    fn index_of(item: &str) -> Option<usize> {
        match item {
            "unknown" => None,
            _ => Some(usize::from(item.as_bytes()[0] - b'a')),
        }
    }

    fn assert_weights(actual: &[(usize, f32)], expected: &[(usize, f32)]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert_eq!(a.0, e.0, "{actual:?} vs {expected:?}");
            assert!((a.1 - e.1).abs() < 1e-6, "{actual:?} vs {expected:?}");
        }
    }

    #[test]
    fn weighted_history_weighs_newest_most() {
        let ctx = context(
            vec![
                interaction("a", InteractionKind::View),
                interaction("b", InteractionKind::View),
                interaction("c", InteractionKind::View),
            ],
            &[],
        );
        let history = weighted_history(&ctx, index_of);
        assert_weights(&history, &[(0, 1.0), (1, RECENCY_DECAY), (2, RECENCY_DECAY * RECENCY_DECAY)]);
        assert!(history[0].1 > history[1].1 && history[1].1 > history[2].1);
    }

    #[test]
    fn weighted_history_weighs_purchase_over_cart_over_view() {
        let weight_of = |kind| weighted_history(&context(vec![interaction("a", kind)], &[]), index_of)[0].1;
        let (view, cart, purchase) = (
            weight_of(InteractionKind::View),
            weight_of(InteractionKind::Cart),
            weight_of(InteractionKind::Purchase),
        );
        assert!(purchase > cart && cart > view, "{purchase} {cart} {view}");
        // A purchase one step back still outweighs a newer view.
        let ctx = context(
            vec![interaction("a", InteractionKind::View), interaction("b", InteractionKind::Purchase)],
            &[],
        );
        let history = weighted_history(&ctx, index_of);
        assert!(history[1].1 > history[0].1, "{history:?}");
    }

    #[test]
    fn weighted_history_skips_unknown_items_but_they_still_age_the_rest() {
        let ctx = context(
            vec![
                interaction("unknown", InteractionKind::Purchase),
                interaction("a", InteractionKind::View),
                interaction("unknown", InteractionKind::View),
                interaction("b", InteractionKind::Cart),
            ],
            &[],
        );
        let history = weighted_history(&ctx, index_of);
        let d = RECENCY_DECAY;
        assert_weights(&history, &[(0, d), (1, d * d * d * 2.0)]);
        assert!(weighted_history(&UserContext::default(), index_of).is_empty());
    }

    fn scored(item: &str, reason: &str) -> pb::ScoredItem {
        pb::ScoredItem { item_id: item.into(), score: 0.5, reason: reason.into(), ..Default::default() }
    }

    fn ids(items: &[pb::ScoredItem]) -> Vec<&str> {
        items.iter().map(|i| i.item_id.as_str()).collect()
    }

    #[test]
    fn fill_with_popular_adds_no_duplicates_and_skips_excluded() {
        let ctx = context(Vec::new(), &["a", "b", "c", "d", "e"]);
        let mut items = vec![scored("a", "covisited")];
        let excluded: HashSet<&str> = ["b"].into();
        fill_with_popular(&mut items, &ctx, &excluded, 10);
        assert_eq!(ids(&items), ["a", "c", "d", "e"]);
        assert_eq!(items[0].reason, "covisited", "model items keep their score and reason");
        assert_eq!(items[0].score, 0.5);
        assert!(items[1..].iter().all(|i| i.reason == "popular" && i.score == 0.0));
    }

    #[test]
    fn fill_with_popular_stops_at_the_limit() {
        let ctx = context(Vec::new(), &["a", "b", "c", "d", "e"]);
        let mut items = Vec::new();
        fill_with_popular(&mut items, &ctx, &HashSet::new(), 3);
        assert_eq!(ids(&items), ["a", "b", "c"]);

        let mut full = vec![scored("x", "covisited"), scored("y", "covisited")];
        fill_with_popular(&mut full, &ctx, &HashSet::new(), 2);
        assert_eq!(ids(&full), ["x", "y"], "a full page stays as it is");
    }
}
