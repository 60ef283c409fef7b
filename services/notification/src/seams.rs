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
