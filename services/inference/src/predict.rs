//! Purchase intent and demand forecasts: `sm.rpc.<tenant>.inference.intent` and
//! `sm.rpc.<tenant>.inference.forecast`, served from the tenant's active `intent` and `demand`
//! models ([`LiveModels`] of [`PurchaseIntentPredictor`] and [`DemandForecaster`], hot-swapped like the
//! recommender).
//!
//! * **intent**: the session's and the user's features are read in one store round trip
//!   (`read_session_and_user_features`; a request with only a session id first reads the session
//!   to learn its user, a second round trip), turned into the model's row by
//!   `purchase_intent::purchase_intent_features` (the function training used), and scored; the answer has the
//!   probability, the logit, the largest contributions and the model version.
//! * **forecast**: the items' daily demand is read in one round trip (`read_items_demand`), each
//!   becomes the model's window with `HistoryWindow::from_demand` (the days before the UTC day of
//!   the request's time), and one model run forecasts all of them.
//!
//! A tenant without an active version of the model gets `NOT_FOUND`.

use std::sync::Arc;
use std::time::Instant;

use shopmind_bus::{Bus, BusError};
use shopmind_config::Config;
use shopmind_domain::{ItemId, SessionId, TenantId, UnixMillis, UserId};
use shopmind_features::purchase_intent::{self, FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use shopmind_features::{FeatureSettings, read_items_demand, read_session_and_user_features};
use shopmind_metrics::{Success, global as metrics};
use shopmind_proto::v1 as pb;
use shopmind_registry::{DEMAND, INTENT, ModelStore};
use shopmind_runtime::Shutdown;
use shopmind_runtime::rpc::{self, Method, methods};
use shopmind_serving::{DemandForecaster, ModelError, PoolOptions, PurchaseIntentPredictor};
use shopmind_store::FeatureStore;
use shopmind_training::demand::{self, HistoryWindow};
use tracing::warn;

use crate::InferenceError;
use crate::live::{LiveModels, Servable};

/// The intent models an inference instance serves.
pub type IntentModels = LiveModels<PurchaseIntentPredictor>;
/// The demand models an inference instance serves.
pub type DemandModels = LiveModels<DemandForecaster>;

/// Most items in one forecast request.
pub const MAX_FORECAST_ITEMS: usize = 100;
/// Contributions returned when the request says 0.
pub const DEFAULT_TOP_FEATURES: u32 = 5;
/// Requests per method one instance works on at the same time.
const MAX_CONCURRENT: usize = 256;

#[async_trait::async_trait]
impl Servable for PurchaseIntentPredictor {
    const MODEL: &'static str = INTENT;

    fn load(bytes: &[u8], options: &PoolOptions) -> Result<Self, ModelError> {
        PurchaseIntentPredictor::load(bytes, options, FEATURE_SCHEMA_VERSION, &FEATURE_NAMES)
    }

    async fn warm_up(&self) -> Result<(), ModelError> {
        let row = purchase_intent::purchase_intent_features(
            &Default::default(),
            &Default::default(),
            UnixMillis(0),
        );
        let out = self.predict(&[row]).await?;
        match out.first() {
            Some(p) if p.probability.is_finite() && p.contributions.len() == N_FEATURES => Ok(()),
            _ => Err(ModelError::Runtime("the warm-up run returned no usable row".into())),
        }
    }

    fn version(&self) -> &str {
        &self.manifest().version
    }

    fn tenant(&self) -> &str {
        &self.manifest().tenant
    }
}

#[async_trait::async_trait]
impl Servable for DemandForecaster {
    const MODEL: &'static str = DEMAND;

    fn load(bytes: &[u8], options: &PoolOptions) -> Result<Self, ModelError> {
        DemandForecaster::load(bytes, options)
    }

    async fn warm_up(&self) -> Result<(), ModelError> {
        let window = HistoryWindow { history: vec![1.0; self.history_days()], first_weekday: 0 };
        let out = self.forecast(&[window]).await?;
        match out.first() {
            Some(f) if f.forecast.len() == self.horizon() && f.forecast.iter().all(|v| v.is_finite()) => {
                Ok(())
            }
            _ => Err(ModelError::Runtime("the warm-up run returned no usable forecast".into())),
        }
    }

    fn version(&self) -> &str {
        &self.manifest().version
    }

    fn tenant(&self) -> &str {
        &self.manifest().tenant
    }
}

/// Answers intent and forecast requests from the store and the tenants' live models.
pub struct Predictor {
    store: Arc<dyn FeatureStore>,
    intents: Arc<IntentModels>,
    demands: Arc<DemandModels>,
    settings: FeatureSettings,
}

fn at_of(at_unix_ms: i64) -> UnixMillis {
    if at_unix_ms == 0 { UnixMillis::now() } else { UnixMillis(at_unix_ms) }
}

impl Predictor {
    pub fn new(
        store: Arc<dyn FeatureStore>,
        intents: Arc<IntentModels>,
        demands: Arc<DemandModels>,
        settings: FeatureSettings,
    ) -> Self {
        Self { store, intents, demands, settings }
    }

    /// `deadline`: the caller's; the model does not start after it (DEADLINE_EXCEEDED).
    pub async fn intent(
        &self,
        req: &pb::IntentRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::IntentResponse, InferenceError> {
        let (tenant, user, session, top) = validate_intent(req)?;
        let model = self
            .intents
            .get(&tenant)
            .ok_or(InferenceError::NoModel { tenant: tenant.clone(), model: INTENT })?;
        let now = at_of(req.at_unix_ms);
        // Only a session: its user comes from the session's features.
        let user = match (user, &session) {
            (Some(u), _) => Some(u),
            (None, Some(s)) => {
                let (sf, _) =
                    read_session_and_user_features(&*self.store, &tenant, Some(s), None, &self.settings, now)
                        .await?;
                sf.user.and_then(|u| UserId::parse(u).ok())
            }
            (None, None) => None,
        };
        let (sf, uf) = read_session_and_user_features(
            &*self.store,
            &tenant,
            session.as_ref(),
            user.as_ref(),
            &self.settings,
            now,
        )
        .await?;
        let row = purchase_intent::purchase_intent_features(&sf, &uf, now);
        let p = model
            .predict_until(&[row], deadline)
            .await?
            .pop()
            .ok_or_else(|| InferenceError::Internal("model: no row".into()))?;
        let names = model.feature_names();
        let top_features = p
            .top(names, top)
            .into_iter()
            .map(|(name, contribution)| {
                let value =
                    names.iter().position(|n| n == name).and_then(|i| row.get(i)).copied().unwrap_or(0.0);
                pb::FeatureContribution { name: name.to_string(), value, contribution }
            })
            .collect();
        Ok(pb::IntentResponse {
            probability: p.probability,
            logit: p.logit,
            top_features,
            model_version: model.manifest().version.clone(),
            user_id: user.map(|u| u.to_string()).unwrap_or_default(),
        })
    }

    /// `deadline`: the caller's; the model does not start after it (DEADLINE_EXCEEDED).
    pub async fn forecast(
        &self,
        req: &pb::ForecastRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::ForecastResponse, InferenceError> {
        let (tenant, items) = validate_forecast(req)?;
        let model = self
            .demands
            .get(&tenant)
            .ok_or(InferenceError::NoModel { tenant: tenant.clone(), model: DEMAND })?;
        let model_horizon = model.horizon();
        let horizon = match req.horizon_days as usize {
            0 => model_horizon,
            h if h > model_horizon => {
                return Err(InferenceError::invalid(
                    "horizon_days",
                    format!("must be at most the model's horizon, {model_horizon} days, got {h}"),
                ));
            }
            h => h,
        };
        let first_day = demand::day_of(at_of(req.at_unix_ms).0);
        let demands = read_items_demand(&*self.store, &tenant, &items).await?;
        let windows: Vec<HistoryWindow> =
            demands.iter().map(|d| HistoryWindow::from_demand(d, first_day, model.history_days())).collect();
        let forecasts = model.forecast_until(&windows, deadline).await?;
        let cut = |v: Vec<f32>| v.into_iter().take(horizon).collect::<Vec<f32>>();
        Ok(pb::ForecastResponse {
            items: items
                .iter()
                .zip(forecasts)
                .map(|(item, f)| pb::ItemForecast {
                    item_id: item.to_string(),
                    forecast: cut(f.forecast),
                    lower: cut(f.lower),
                    upper: cut(f.upper),
                })
                .collect(),
            first_day,
            model_version: model.manifest().version.clone(),
            model_horizon_days: u32::try_from(model_horizon).unwrap_or(u32::MAX),
            coverage: model.coverage() as f32,
        })
    }
}

type IntentArgs = (TenantId, Option<UserId>, Option<SessionId>, usize);

fn validate_intent(req: &pb::IntentRequest) -> Result<IntentArgs, InferenceError> {
    let mut violations = Vec::new();
    let tenant = TenantId::parse(req.tenant.clone())
        .map_err(|e| violations.push(("tenant".to_string(), e.to_string())))
        .ok();
    let user = (!req.user_id.is_empty())
        .then(|| {
            UserId::parse(req.user_id.clone()).map_err(|e| violations.push(("user_id".into(), e.to_string())))
        })
        .and_then(Result::ok);
    let session = (!req.session_id.is_empty())
        .then(|| {
            SessionId::parse(req.session_id.clone())
                .map_err(|e| violations.push(("session_id".into(), e.to_string())))
        })
        .and_then(Result::ok);
    if req.user_id.is_empty() && req.session_id.is_empty() {
        violations.push(("user_id".into(), "a user id or a session id is required".into()));
    }
    if req.at_unix_ms < 0 {
        violations.push(("at_unix_ms".into(), format!("must not be negative, got {}", req.at_unix_ms)));
    }
    if req.top_features as usize > N_FEATURES {
        violations
            .push(("top_features".into(), format!("must be at most {N_FEATURES}, got {}", req.top_features)));
    }
    match tenant {
        Some(t) if violations.is_empty() => {
            let top = if req.top_features == 0 { DEFAULT_TOP_FEATURES } else { req.top_features };
            Ok((t, user, session, top as usize))
        }
        _ => Err(InferenceError::InvalidArgument(violations)),
    }
}

fn validate_forecast(req: &pb::ForecastRequest) -> Result<(TenantId, Vec<ItemId>), InferenceError> {
    let mut violations = Vec::new();
    let tenant = TenantId::parse(req.tenant.clone())
        .map_err(|e| violations.push(("tenant".to_string(), e.to_string())))
        .ok();
    if req.item_ids.is_empty() || req.item_ids.len() > MAX_FORECAST_ITEMS {
        violations.push((
            "item_ids".into(),
            format!("must name 1 to {MAX_FORECAST_ITEMS} items, got {}", req.item_ids.len()),
        ));
    }
    let mut items = Vec::with_capacity(req.item_ids.len());
    for (i, id) in req.item_ids.iter().enumerate() {
        match ItemId::parse(id.clone()) {
            Ok(item) => items.push(item),
            Err(e) => violations.push((format!("item_ids[{i}]"), e.to_string())),
        }
    }
    if req.at_unix_ms < 0 {
        violations.push(("at_unix_ms".into(), format!("must not be negative, got {}", req.at_unix_ms)));
    }
    match tenant {
        Some(t) if violations.is_empty() => Ok((t, items)),
        _ => Err(InferenceError::InvalidArgument(violations)),
    }
}

/// The intent and forecast methods of a running inference service.
pub(crate) struct Serving {
    followers: Vec<tokio::task::JoinHandle<()>>,
    servers: Vec<tokio::task::JoinHandle<Result<(), BusError>>>,
}

impl Serving {
    /// Follows the registry's `intent` and `demand` models and serves both methods until
    /// `shutdown`.
    pub(crate) fn start(
        config: &Config,
        options: PoolOptions,
        bus: Arc<dyn Bus>,
        store: Arc<dyn FeatureStore>,
        registry: Arc<dyn ModelStore>,
        shutdown: &Shutdown,
    ) -> Self {
        let intents = Arc::new(IntentModels::new(options.clone()));
        let demands = Arc::new(DemandModels::new(options));
        let followers = vec![
            tokio::spawn(intents.clone().follow(registry.clone(), shutdown.clone())),
            tokio::spawn(demands.clone().follow(registry, shutdown.clone())),
        ];
        let settings = FeatureSettings::from_config(&config.feature);
        let predictor = Arc::new(Predictor::new(store, intents, demands, settings));
        let server = rpc::Server::new(bus, shutdown.clone());
        let servers = vec![
            tokio::spawn(server.serve(
                methods::Intent,
                MAX_CONCURRENT,
                predictor.clone(),
                |predictor, req, incoming| async move { predictor.intent(&req, incoming.deadline).await },
                observe::<methods::Intent>,
            )),
            tokio::spawn(server.serve(
                methods::Forecast,
                MAX_CONCURRENT,
                predictor,
                |predictor, req, incoming| async move { predictor.forecast(&req, incoming.deadline).await },
                observe::<methods::Forecast>,
            )),
        ];
        Self { followers, servers }
    }

    /// Waits for both servers to stop (after `shutdown`), then stops following the registry.
    pub(crate) async fn stopped(self) -> Result<(), BusError> {
        let mut result = Ok(());
        for server in self.servers {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => warn!(error = %e, "an intent or forecast server ended abnormally"),
            }
        }
        for follower in self.followers {
            follower.abort();
        }
        result
    }
}

/// Counts an answer of a prediction method (`shopmind_prediction_request_duration_seconds`).
pub(crate) fn observe<M: Method>(result: &Result<M::Response, pb::ServiceError>, took: std::time::Duration) {
    metrics().prediction_request(M::NAME, if result.is_ok() { Success::Ok } else { Success::Error }, took);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn fields(e: InferenceError) -> Vec<String> {
        let e = shopmind_runtime::rpc::WireError::into_wire(e);
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32, "{e:?}");
        e.violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn intent_requests_need_a_user_or_a_session_and_name_bad_fields() {
        let req = |user: &str, session: &str, top: u32| pb::IntentRequest {
            tenant: "acme".into(),
            user_id: user.into(),
            session_id: session.into(),
            at_unix_ms: 0,
            top_features: top,
        };
        let (t, u, s, top) = validate_intent(&req("u1", "", 0)).unwrap();
        assert_eq!((t.as_str(), u.unwrap().as_str(), s, top), ("acme", "u1", None, 5));
        assert_eq!(validate_intent(&req("", "s1", 3)).unwrap().3, 3);
        assert_eq!(fields(validate_intent(&req("", "", 0)).unwrap_err()), ["user_id"]);
        assert_eq!(
            fields(validate_intent(&req("u 1", "s 1", 16)).unwrap_err()),
            ["user_id", "session_id", "top_features"]
        );
        let bad_tenant = pb::IntentRequest { tenant: "A!".into(), ..req("u1", "", 0) };
        assert_eq!(fields(validate_intent(&bad_tenant).unwrap_err()), ["tenant"]);
    }

    #[test]
    fn forecast_requests_name_bad_items_by_index_and_bound_the_count() {
        let req = |items: Vec<String>| pb::ForecastRequest {
            tenant: "acme".into(),
            item_ids: items,
            horizon_days: 0,
            at_unix_ms: 0,
        };
        assert_eq!(validate_forecast(&req(vec!["a".into(), "b".into()])).unwrap().1.len(), 2);
        assert_eq!(fields(validate_forecast(&req(vec![])).unwrap_err()), ["item_ids"]);
        assert_eq!(
            fields(validate_forecast(&req(vec!["a".into(), "".into()])).unwrap_err()),
            ["item_ids[1]"]
        );
        let many = (0..=MAX_FORECAST_ITEMS).map(|i| format!("i{i}")).collect();
        assert_eq!(fields(validate_forecast(&req(many)).unwrap_err()), ["item_ids"]);
    }
}
