//! Customer profiles: `sm.rpc.<tenant>.inference.profile`.
//!
//! Everything the feature service keeps about the user is read in one store round trip
//! (`read_user_features`: recent interactions, event counts, category affinity, cart, orders,
//! RFM), and the profile is computed from it (docs/PROFILES.md):
//!
//! * **RFM**: recency (whole days since the last order), frequency (orders), monetary (spend in
//!   the currency the customer spent most in), and a segment by fixed thresholds from
//!   `inference.profile` ([`segment`]; first rule that matches).
//! * **Churn risk**: `shopmind_features::churn_risk`, the estimate the notification service's
//!   churn rule fires on, with that rule's tenant settings.
//! * **Top categories** by affinity decayed to now, **recent activity** newest first (at most
//!   `recent_limit`), the cart, and first / last seen.
//!
//! A user with no recorded event is `NOT_FOUND`; a bad id or `recent_limit` above
//! [`MAX_RECENT`] is `INVALID_ARGUMENT` naming the fields.

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::{Bus, BusError};
use shopmind_config::{Config, ProfileConfig};
use shopmind_domain::{TenantId, UnixMillis, UserId};
use shopmind_features::{ChurnParams, FeatureSettings, UserFeatures, churn_risk, read_user_features};
use shopmind_metrics::global as metrics;
use shopmind_proto::v1 as pb;
use shopmind_runtime::Shutdown;
use shopmind_runtime::rpc::{self, methods};
use shopmind_store::FeatureStore;
use tokio::task::JoinHandle;

use crate::InferenceError;

/// Most recent interactions one profile returns.
pub const MAX_RECENT: u32 = 100;
/// Recent interactions returned when the request says 0.
pub const DEFAULT_RECENT: u32 = 10;
/// Categories in a profile, highest affinity first.
pub const TOP_CATEGORIES: usize = 5;
/// Profile requests one instance works on at the same time.
const MAX_CONCURRENT: usize = 256;
const DAY_MS: i64 = 86_400_000;

/// A customer's RFM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// Active, frequent and high spending.
    Champion,
    /// Active and frequent.
    Loyal,
    /// Active, a few orders.
    Promising,
    /// Active, one order.
    New,
    /// Ordered before, not lately.
    AtRisk,
    /// Ordered long ago.
    Hibernating,
    /// Never ordered.
    Browser,
}

impl Segment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Champion => "champion",
            Self::Loyal => "loyal",
            Self::Promising => "promising",
            Self::New => "new",
            Self::AtRisk => "at_risk",
            Self::Hibernating => "hibernating",
            Self::Browser => "browser",
        }
    }
}

/// Recency, frequency, monetary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rfm {
    /// Whole days since the last order; `None` without orders.
    pub recency_days: Option<i64>,
    pub frequency: u32,
    /// Spend in `currency`, minor units.
    pub monetary_minor: i64,
    /// The currency the customer spent most in (the first by name on a tie); empty without spend.
    pub currency: String,
}

pub fn rfm(f: &UserFeatures, now: UnixMillis) -> Rfm {
    let (currency, monetary_minor) = f
        .spend
        .iter()
        .fold(None::<(&String, i64)>, |best, (c, n)| match best {
            Some((_, m)) if m >= *n => best,
            _ => Some((c, *n)),
        })
        .map(|(c, n)| (c.clone(), n))
        .unwrap_or_default();
    Rfm {
        recency_days: f.last_order_ms.map(|last| (now.0 - last).max(0) / DAY_MS),
        frequency: u32::try_from(f.order_count.max(0)).unwrap_or(u32::MAX),
        monetary_minor,
        currency,
    }
}

/// The segment of `r`: the first rule that matches, in this order (`c` is `inference.profile`).
///
/// | segment | rule |
/// |---|---|
/// | browser | no order |
/// | hibernating | last order more than `lapsed_days` ago |
/// | at_risk | last order more than `active_days` ago |
/// | new | one order |
/// | champion | at least `frequent_orders` orders and `high_value_minor` spent |
/// | loyal | at least `frequent_orders` orders |
/// | promising | otherwise (2 to `frequent_orders - 1` orders) |
pub fn segment(r: &Rfm, c: &ProfileConfig) -> Segment {
    let Some(recency) = r.recency_days.filter(|_| r.frequency > 0) else { return Segment::Browser };
    if recency > i64::from(c.lapsed_days) {
        Segment::Hibernating
    } else if recency > i64::from(c.active_days) {
        Segment::AtRisk
    } else if r.frequency <= 1 {
        Segment::New
    } else if r.frequency >= c.frequent_orders && r.monetary_minor >= c.high_value_minor {
        Segment::Champion
    } else if r.frequency >= c.frequent_orders {
        Segment::Loyal
    } else {
        Segment::Promising
    }
}

/// The customer's first and latest activity known: the oldest kept recent interaction or the
/// first order, and the newest interaction, order or order status change.
fn seen(f: &UserFeatures) -> (Option<i64>, Option<i64>) {
    let interactions = f.recent.iter().map(|i| i.at.0);
    let first = interactions.clone().chain(f.first_order_ms).min();
    let last = interactions.chain(f.last_order_ms).chain(f.orders.values().map(|(at, _)| *at)).max();
    (first, last)
}

/// Answers profile requests from the feature store.
pub struct Profiles {
    store: Arc<dyn FeatureStore>,
    settings: FeatureSettings,
    config: Arc<Config>,
}

impl Profiles {
    pub fn new(config: &Config, store: Arc<dyn FeatureStore>) -> Self {
        let settings = FeatureSettings::from_config(&config.feature);
        Self { store, settings, config: Arc::new(config.clone()) }
    }

    /// The profile of the request's user at `now`.
    pub async fn profile(
        &self,
        req: &pb::GetCustomerProfileRequest,
        now: UnixMillis,
    ) -> Result<pb::CustomerProfile, InferenceError> {
        let (tenant, user, limit) = validate(req)?;
        let f = read_user_features(&*self.store, &tenant, &user, &self.settings, now).await?;
        if f.counts.values().all(|n| *n <= 0) {
            return Err(InferenceError::NotFound(format!(
                "no event of user {user} is recorded for tenant {tenant}"
            )));
        }
        let rule = &self.config.notification.tenant(tenant.as_str()).rules.churn_risk;
        let churn = ChurnParams {
            drift_ratio: rule.drift_ratio,
            min_orders: rule.min_orders,
            default_gap: Duration::from_secs(
                u64::from(self.config.inference.profile.default_order_gap_days) * 86_400,
            ),
        };
        let (first_seen, last_seen) = seen(&f);
        let r = rfm(&f, now);
        let segment = segment(&r, &self.config.inference.profile);
        metrics().profile_served(segment.as_str());
        Ok(pb::CustomerProfile {
            user_id: user.to_string(),
            rfm_segment: segment.as_str().into(),
            recency_days: r.recency_days.map_or(-1, |d| i32::try_from(d).unwrap_or(i32::MAX)),
            frequency: r.frequency,
            monetary_minor: r.monetary_minor,
            currency: r.currency,
            churn_risk: churn_risk(&f, last_seen, now, &churn) as f32,
            top_categories: f
                .affinity
                .iter()
                .take(TOP_CATEGORIES)
                .map(|(category, score)| pb::CategoryAffinity {
                    category: category.clone(),
                    score: *score as f32,
                })
                .collect(),
            recent_activity: f
                .recent
                .iter()
                .take(limit)
                .map(|i| pb::Activity {
                    kind: i.kind.as_str().into(),
                    item_id: i.item.to_string(),
                    at: Some(i.at.to_proto()),
                })
                .collect(),
            first_seen: first_seen.map(|ms| UnixMillis(ms).to_proto()),
            last_seen: last_seen.map(|ms| UnixMillis(ms).to_proto()),
            cart_item_ids: f.cart.keys().map(ToString::to_string).collect(),
        })
    }
}

fn validate(req: &pb::GetCustomerProfileRequest) -> Result<(TenantId, UserId, usize), InferenceError> {
    let mut violations = Vec::new();
    let tenant = TenantId::parse(req.tenant.clone())
        .map_err(|e| violations.push(("tenant".to_string(), e.to_string())))
        .ok();
    let user = UserId::parse(req.user_id.clone())
        .map_err(|e| violations.push(("user_id".to_string(), e.to_string())))
        .ok();
    if req.recent_limit > MAX_RECENT {
        violations
            .push(("recent_limit".into(), format!("must be at most {MAX_RECENT}, got {}", req.recent_limit)));
    }
    match (tenant, user) {
        (Some(t), Some(u)) if violations.is_empty() => {
            let limit = if req.recent_limit == 0 { DEFAULT_RECENT } else { req.recent_limit };
            Ok((t, u, limit as usize))
        }
        _ => Err(InferenceError::InvalidArgument(violations)),
    }
}

/// Serves `sm.rpc.*.inference.profile` until `shutdown`.
pub(crate) fn start(
    config: &Config,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    shutdown: &Shutdown,
) -> JoinHandle<Result<(), BusError>> {
    tokio::spawn(rpc::Server::new(bus, shutdown.clone()).serve(
        methods::Profile,
        MAX_CONCURRENT,
        Arc::new(Profiles::new(config, store)),
        |profiles, req, _| async move { profiles.profile(&req, UnixMillis::now()).await },
        |result, took| {
            let outcome = match result {
                Ok(_) => "ok",
                Err(e) if e.code() == pb::ServiceErrorCode::NotFound => "not_found",
                Err(_) => "error",
            };
            metrics().profile_request(outcome, took);
        },
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn r(recency_days: Option<i64>, frequency: u32, monetary_minor: i64) -> Rfm {
        Rfm { recency_days, frequency, monetary_minor, currency: "EUR".into() }
    }

    #[test]
    fn segments_follow_the_documented_rules_in_order() {
        let c = ProfileConfig::default();
        assert_eq!(segment(&r(None, 0, 0), &c), Segment::Browser);
        assert_eq!(segment(&r(Some(91), 20, 1_000_000), &c), Segment::Hibernating);
        assert_eq!(segment(&r(Some(90), 20, 1_000_000), &c), Segment::AtRisk);
        assert_eq!(segment(&r(Some(31), 1, 0), &c), Segment::AtRisk);
        assert_eq!(segment(&r(Some(30), 1, 1_000_000), &c), Segment::New);
        assert_eq!(segment(&r(Some(0), 5, 50_000), &c), Segment::Champion);
        assert_eq!(segment(&r(Some(0), 5, 49_999), &c), Segment::Loyal);
        assert_eq!(segment(&r(Some(3), 4, 1_000_000), &c), Segment::Promising);
        assert_eq!(segment(&r(Some(3), 2, 0), &c), Segment::Promising);
    }

    #[test]
    fn rfm_takes_the_main_currency_and_whole_days() {
        let now = UnixMillis(100 * DAY_MS);
        let f = UserFeatures {
            last_order_ms: Some(now.0 - 3 * DAY_MS - 5),
            order_count: 4,
            spend: [("EUR".to_string(), 900), ("USD".to_string(), 1200), ("GBP".to_string(), 1200)].into(),
            ..UserFeatures::default()
        };
        assert_eq!(
            rfm(&f, now),
            Rfm { recency_days: Some(3), frequency: 4, monetary_minor: 1200, currency: "GBP".into() }
        );
        assert_eq!(
            rfm(&UserFeatures::default(), now),
            Rfm { recency_days: None, frequency: 0, monetary_minor: 0, currency: String::new() }
        );
    }

    #[test]
    fn validate_bounds_the_limit_and_names_every_bad_field() {
        let req = |tenant: &str, user: &str, recent_limit| pb::GetCustomerProfileRequest {
            tenant: tenant.into(),
            user_id: user.into(),
            recent_limit,
        };
        assert_eq!(validate(&req("acme", "u1", 0)).unwrap().2, DEFAULT_RECENT as usize);
        assert_eq!(validate(&req("acme", "u1", MAX_RECENT)).unwrap().2, MAX_RECENT as usize);
        let fields = |e: InferenceError| {
            rpc::WireError::into_wire(e).violations.into_iter().map(|v| v.field).collect::<Vec<_>>()
        };
        assert_eq!(
            fields(validate(&req("Acme!", "u 1", 101)).unwrap_err()),
            ["tenant", "user_id", "recent_limit"]
        );
    }
}
