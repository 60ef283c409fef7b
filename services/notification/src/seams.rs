//! What the rules ask of models: a user's purchase intent, an item's demand forecast, and the
//! complements of a cart. Each is a trait so that model-backed implementations (served by the
//! inference service) can be plugged in; the implementations here are the documented fallbacks,
//! computed from features in one store round trip each.

use std::collections::BTreeSet;
use std::sync::Arc;

use shopmind_domain::{ItemId, TenantId, UnixMillis, UserId};
use shopmind_features::{UserFeatures, read_item_features};
use shopmind_store::{FeatureStore, StoreError};

/// A user's probability-like purchase intent in `[0, 1]`.
#[async_trait::async_trait]
pub trait IntentScorer: Send + Sync + 'static {
    async fn intent(
        &self,
        tenant: &TenantId,
        user: &UserId,
        features: &UserFeatures,
        now: UnixMillis,
    ) -> Result<f64, StoreError>;
}

/// Expected units of an item ordered over the next `days` days.
#[async_trait::async_trait]
pub trait DemandForecaster: Send + Sync + 'static {
    async fn forecast(
        &self,
        tenant: &TenantId,
        item: &ItemId,
        days: u32,
        now: UnixMillis,
    ) -> Result<f64, StoreError>;
}

/// Items to recommend next to `cart`, best first, none of `exclude`.
#[async_trait::async_trait]
pub trait ComplementSource: Send + Sync + 'static {
    async fn complements(
        &self,
        tenant: &TenantId,
        cart: &[ItemId],
        exclude: &BTreeSet<ItemId>,
        n: usize,
        now: UnixMillis,
    ) -> Result<Vec<ItemId>, StoreError>;
}

/// The three seams together.
#[derive(Clone)]
pub struct Seams {
    pub intent: Arc<dyn IntentScorer>,
    pub demand: Arc<dyn DemandForecaster>,
    pub complements: Arc<dyn ComplementSource>,
}

impl Seams {
    /// The feature-based fallbacks: [`HeuristicIntent`], [`MeanDemand`], [`NeighbourComplements`].
    pub fn fallbacks(store: Arc<dyn FeatureStore>, history_days: u32) -> Self {
        Self {
            intent: Arc::new(HeuristicIntent),
            demand: Arc::new(MeanDemand { store: store.clone(), history_days }),
            complements: Arc::new(NeighbourComplements { store }),
        }
    }
}

/// Fallback intent, a transparent sum clamped to 1: 0.3 for a non-empty cart, 0.1 per distinct
/// item in it (up to 3), 0.05 per recent view of an item in it (up to 4), and 0.2 for a customer
/// who has ordered before.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeuristicIntent;

impl HeuristicIntent {
    pub fn score(features: &UserFeatures) -> f64 {
        if features.cart.is_empty() {
            return 0.0;
        }
        let items = features.cart.len().min(3) as f64;
        let views = features
            .recent
            .iter()
            .filter(|i| {
                i.kind == shopmind_domain::InteractionKind::View && features.cart.contains_key(&i.item)
            })
            .count()
            .min(4) as f64;
        let returning = if features.order_count > 0 { 0.2 } else { 0.0 };
        (0.3 + 0.1 * items + 0.05 * views + returning).min(1.0)
    }
}

#[async_trait::async_trait]
impl IntentScorer for HeuristicIntent {
    async fn intent(
        &self,
        _tenant: &TenantId,
        _user: &UserId,
        features: &UserFeatures,
        _now: UnixMillis,
    ) -> Result<f64, StoreError> {
        Ok(Self::score(features))
    }
}

/// Fallback forecast: the mean daily demand of the last `history_days` days (days without
/// orders count as 0; today included), times `days`.
pub struct MeanDemand {
    pub store: Arc<dyn FeatureStore>,
    pub history_days: u32,
}

impl MeanDemand {
    /// The forecast from a demand series of (day since 1970-01-01, units).
    pub fn from_series(series: &[(i64, i64)], today: i64, history_days: u32, days: u32) -> f64 {
        let first = today - i64::from(history_days) + 1;
        let units: i64 = series.iter().filter(|(d, _)| (first..=today).contains(d)).map(|(_, u)| u).sum();
        units as f64 / f64::from(history_days.max(1)) * f64::from(days)
    }
}

#[async_trait::async_trait]
impl DemandForecaster for MeanDemand {
    async fn forecast(
        &self,
        tenant: &TenantId,
        item: &ItemId,
        days: u32,
        now: UnixMillis,
    ) -> Result<f64, StoreError> {
        let f = read_item_features(&*self.store, tenant, item, 0, now).await?;
        Ok(Self::from_series(&f.demand, now.0.div_euclid(86_400_000), self.history_days, days))
    }
}

/// Fallback complements: the cart items' co-purchase neighbours, then their co-visitation
/// neighbours, each ranked by summed counts.
pub struct NeighbourComplements {
    pub store: Arc<dyn FeatureStore>,
}

#[async_trait::async_trait]
impl ComplementSource for NeighbourComplements {
    async fn complements(
        &self,
        tenant: &TenantId,
        cart: &[ItemId],
        exclude: &BTreeSet<ItemId>,
        n: usize,
        now: UnixMillis,
    ) -> Result<Vec<ItemId>, StoreError> {
        let mut bought: std::collections::BTreeMap<ItemId, f64> = Default::default();
        let mut visited: std::collections::BTreeMap<ItemId, f64> = Default::default();
        for item in cart {
            let f = read_item_features(&*self.store, tenant, item, 20, now).await?;
            for (i, c) in f.copurchased {
                *bought.entry(i).or_default() += c;
            }
            for (i, c) in f.covisited {
                *visited.entry(i).or_default() += c;
            }
        }
        let mut out: Vec<ItemId> = Vec::new();
        for ranked in [bought, visited] {
            let mut ranked: Vec<(ItemId, f64)> = ranked.into_iter().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            for (i, _) in ranked {
                if out.len() < n && !exclude.contains(&i) && !out.contains(&i) {
                    out.push(i);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_demand_counts_missing_days_as_zero() {
        let series = [(95, 100), (98, 4), (99, 2), (100, 6)];
        // Days 97..=100: 12 units over 4 days = 3 per day; 7 days: 21.
        assert_eq!(MeanDemand::from_series(&series, 100, 4, 7), 21.0);
        assert_eq!(MeanDemand::from_series(&[], 100, 4, 7), 0.0);
    }
}

/// Model-backed seams: purchase intent and demand forecasts from the inference service's `intent`
/// and `forecast` methods (the tenant's active models), each call with a deadline of `timeout`.
/// When the tenant has no such model (`NOT_FOUND`) or the call fails, the feature-based fallback
/// answers, and `shopmind_notification_model_fallbacks_total{seam, reason}` counts it.
pub mod model {
    use std::sync::Arc;
    use std::time::Duration;

    use shopmind_bus::Bus;
    use shopmind_domain::{ItemId, TenantId, UnixMillis, UserId};
    use shopmind_features::UserFeatures;
    use shopmind_metrics::global as metrics;
    use shopmind_proto::v1 as pb;
    use shopmind_runtime::rpc::{self, CallError, methods};
    use shopmind_store::StoreError;
    use tracing::debug;

    use super::{DemandForecaster, IntentScorer};

    /// Why a call did not give a model answer; the `reason` label.
    fn reason(e: &CallError) -> &'static str {
        if e.service_code() == Some(pb::ServiceErrorCode::NotFound) { "no_model" } else { "error" }
    }

    /// Purchase intent from the tenant's `intent` model, for the user (no session: the notification
    /// rules know the user's cart, not a session); [`super::HeuristicIntent`] otherwise.
    pub struct ModelIntent {
        pub bus: Arc<dyn Bus>,
        pub timeout: Duration,
        pub fallback: Arc<dyn IntentScorer>,
    }

    impl ModelIntent {
        async fn ask(&self, tenant: &TenantId, user: &UserId, now: UnixMillis) -> Result<f64, CallError> {
            let req = pb::IntentRequest {
                tenant: tenant.to_string(),
                user_id: user.to_string(),
                session_id: String::new(),
                at_unix_ms: now.0,
                top_features: 0,
            };
            let ok = rpc::call(methods::Intent, &*self.bus, tenant, &req, self.timeout, None).await?;
            Ok(f64::from(ok.probability))
        }
    }

    #[async_trait::async_trait]
    impl IntentScorer for ModelIntent {
        async fn intent(
            &self,
            tenant: &TenantId,
            user: &UserId,
            features: &UserFeatures,
            now: UnixMillis,
        ) -> Result<f64, StoreError> {
            match self.ask(tenant, user, now).await {
                Ok(p) => Ok(p),
                Err(e) => {
                    metrics().model_fallback("intent", reason(&e));
                    debug!(tenant = %tenant, error = %e, "intent model unavailable; feature-based intent");
                    self.fallback.intent(tenant, user, features, now).await
                }
            }
        }
    }

    /// Demand over the next `days` days (from today) from the tenant's `demand` model: the sum of
    /// its daily forecasts; [`super::MeanDemand`] otherwise (also when `days` exceeds the
    /// model's horizon).
    pub struct ModelDemand {
        pub bus: Arc<dyn Bus>,
        pub timeout: Duration,
        pub fallback: Arc<dyn DemandForecaster>,
    }

    impl ModelDemand {
        async fn ask(
            &self,
            tenant: &TenantId,
            item: &ItemId,
            days: u32,
            now: UnixMillis,
        ) -> Result<f64, CallError> {
            let req = pb::ForecastRequest {
                tenant: tenant.to_string(),
                item_ids: vec![item.to_string()],
                horizon_days: days,
                at_unix_ms: now.0,
            };
            let ok = rpc::call(methods::Forecast, &*self.bus, tenant, &req, self.timeout, None).await?;
            // A forecast without the item answers nothing.
            let forecast = ok.items.first().ok_or(CallError::EmptyReply)?;
            Ok(forecast.forecast.iter().map(|v| f64::from(*v)).sum())
        }
    }

    #[async_trait::async_trait]
    impl DemandForecaster for ModelDemand {
        async fn forecast(
            &self,
            tenant: &TenantId,
            item: &ItemId,
            days: u32,
            now: UnixMillis,
        ) -> Result<f64, StoreError> {
            match self.ask(tenant, item, days, now).await {
                Ok(units) => Ok(units),
                Err(e) => {
                    metrics().model_fallback("demand", reason(&e));
                    debug!(tenant = %tenant, error = %e, "demand model unavailable; mean demand");
                    self.fallback.forecast(tenant, item, days, now).await
                }
            }
        }
    }
}

impl Seams {
    /// The model-backed intent and demand seams over `bus` (falling back to [`HeuristicIntent`]
    /// and [`MeanDemand`]), and [`NeighbourComplements`].
    pub fn with_models(
        bus: Arc<dyn shopmind_bus::Bus>,
        store: Arc<dyn FeatureStore>,
        history_days: u32,
        timeout: std::time::Duration,
    ) -> Self {
        let fallbacks = Self::fallbacks(store, history_days);
        Self {
            intent: Arc::new(model::ModelIntent { bus: bus.clone(), timeout, fallback: fallbacks.intent }),
            demand: Arc::new(model::ModelDemand { bus, timeout, fallback: fallbacks.demand }),
            complements: fallbacks.complements,
        }
    }
}
