//! The simulator's knobs and their validation.

use shopmind_domain::{TenantId, ValidationPolicy};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// 2026-01-05T00:00:00Z, a Monday: the default start of a simulation.
pub const DEFAULT_START_MS: i64 = 1_767_571_200_000;

/// Largest accepted number of users or items.
pub const MAX_ENTITIES: usize = 10_000_000;
/// Largest accepted number of categories.
pub const MAX_CATEGORIES: usize = 1_000;
/// Longest accepted simulation, in days (ten years).
pub const MAX_DAYS: u32 = 3_650;
/// Latest accepted start: 9999-01-01T00:00:00Z, so that every timestamp stays representable.
pub const LATEST_START_MS: i64 = 253_370_764_800_000;

/// Why a simulation cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulator config: `{field}` {reason}")]
    InvalidConfig { field: &'static str, reason: String },
}

/// Everything that shapes a simulated store. Two simulators built from equal configs produce
/// identical event streams.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// The tenant every event belongs to (lowercase letters, digits, '-' and '_').
    pub tenant: String,
    pub users: usize,
    pub items: usize,
    /// Number of leaf categories (at most `items`, so that none is empty).
    pub categories: usize,
    /// Length of the simulation; events fall in `[start_ms, start_ms + days * 1 day)`.
    pub days: u32,
    /// Unix milliseconds of the first day's midnight (UTC); weekdays are computed from it.
    pub start_ms: i64,
    /// ISO 4217 code of every price.
    pub currency: String,

    // Demand.
    /// Mean sessions of an average user in an average week (users vary around it).
    pub sessions_per_user_per_week: f64,
    /// How much busier Saturdays and Sundays are than weekdays: 0.3 means 30% more sessions.
    pub weekend_amplitude: f64,
    /// Growth of demand per week, compounding: 0.02 means 2% more sessions each week.
    pub trend_per_week: f64,
    /// Spread of per-category demand drift: each category's share grows or shrinks by a
    /// normally distributed rate with this standard deviation per week.
    pub category_drift_per_week: f64,

    // Tastes and catalog.
    /// Dirichlet concentration of users' tastes over categories: small values (< 1) give
    /// users a few favourite categories, large values spread their interest evenly.
    pub taste_concentration: f64,
    /// Zipf exponent of item popularity within a category (0 = uniform).
    pub popularity_skew: f64,
    /// Chance that a view ignores the user's taste and picks a category uniformly.
    pub explore_prob: f64,

    // Sessions.
    /// Mean product views per session (at least one).
    pub mean_views_per_session: f64,
    /// Chance that a session starts with a search.
    pub search_prob: f64,
    /// Chance that a view leads to adding the item to the cart (before price sensitivity).
    pub cart_prob: f64,
    /// Chance that adding to the cart is followed by removing a cart line.
    pub remove_prob: f64,
    /// Chance that a session with a non-empty cart ends in an order; otherwise it is abandoned.
    pub purchase_prob: f64,

    // Inventory.
    /// Mean initial stock per item (and mean restock quantity); 0 starts every item sold out
    /// and on order.
    pub mean_initial_stock: u32,
    /// Mean days between selling out and restocking.
    pub restock_lead_days: f64,

    // Orders and support.
    /// Chance that an order is cancelled before shipping.
    pub cancel_prob: f64,
    /// Chance that a delivered order is returned (and then refunded).
    pub return_prob: f64,
    /// Chance that an ordinary order leads to a support conversation; cancelled and returned
    /// orders lead to one five times as often (at most always).
    pub support_prob: f64,
    /// Number of support agents answering conversations (ids `sim-agent-<n>`).
    pub agents: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            tenant: "sim".into(),
            users: 1000,
            items: 500,
            categories: 12,
            days: 28,
            start_ms: DEFAULT_START_MS,
            currency: "USD".into(),
            sessions_per_user_per_week: 3.0,
            weekend_amplitude: 0.3,
            trend_per_week: 0.02,
            category_drift_per_week: 0.05,
            taste_concentration: 0.3,
            popularity_skew: 1.0,
            explore_prob: 0.1,
            mean_views_per_session: 4.0,
            search_prob: 0.35,
            cart_prob: 0.12,
            remove_prob: 0.15,
            purchase_prob: 0.55,
            mean_initial_stock: 40,
            restock_lead_days: 4.0,
            cancel_prob: 0.05,
            return_prob: 0.08,
            support_prob: 0.05,
            agents: 8,
        }
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SimError {
    SimError::InvalidConfig { field, reason: reason.into() }
}

fn probability(field: &'static str, p: f64) -> Result<(), SimError> {
    if p.is_finite() && (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a probability in [0, 1], got {p}")))
    }
}

fn in_range(field: &'static str, v: f64, min: f64, max: f64) -> Result<(), SimError> {
    if v.is_finite() && v >= min && v <= max {
        Ok(())
    } else {
        Err(invalid(field, format!("must be in [{min}, {max}], got {v}")))
    }
}

fn count(field: &'static str, n: usize, min: usize, max: usize) -> Result<(), SimError> {
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(invalid(field, format!("must be in [{min}, {max}], got {n}")))
    }
}

impl SimConfig {
    /// Checks every knob; the error names the first offending field.
    pub fn validate(&self) -> Result<(), SimError> {
        TenantId::parse(self.tenant.as_str()).map_err(|e| invalid("tenant", e.to_string()))?;
        count("users", self.users, 1, MAX_ENTITIES)?;
        count("items", self.items, 1, MAX_ENTITIES)?;
        count("categories", self.categories, 1, MAX_CATEGORIES)?;
        if self.categories > self.items {
            return Err(invalid(
                "categories",
                format!("must not exceed items ({}), got {}", self.items, self.categories),
            ));
        }
        count("days", self.days as usize, 1, MAX_DAYS as usize)?;
        if self.start_ms < ValidationPolicy::EARLIEST.0 || self.start_ms > LATEST_START_MS {
            return Err(invalid(
                "start_ms",
                format!(
                    "must be in [{}, {LATEST_START_MS}] (1990..9999), got {}",
                    ValidationPolicy::EARLIEST.0,
                    self.start_ms
                ),
            ));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(invalid(
                "currency",
                format!("must be an ISO 4217 code like \"USD\", got {:?}", self.currency),
            ));
        }
        in_range("sessions_per_user_per_week", self.sessions_per_user_per_week, 0.0, 1_000.0)?;
        in_range("weekend_amplitude", self.weekend_amplitude, -0.99, 10.0)?;
        in_range("trend_per_week", self.trend_per_week, -0.99, 10.0)?;
        in_range("category_drift_per_week", self.category_drift_per_week, 0.0, 2.0)?;
        in_range("taste_concentration", self.taste_concentration, 0.01, 1_000.0)?;
        in_range("popularity_skew", self.popularity_skew, 0.0, 5.0)?;
        probability("explore_prob", self.explore_prob)?;
        in_range("mean_views_per_session", self.mean_views_per_session, 1.0, 100.0)?;
        probability("search_prob", self.search_prob)?;
        probability("cart_prob", self.cart_prob)?;
        probability("remove_prob", self.remove_prob)?;
        probability("purchase_prob", self.purchase_prob)?;
        count("mean_initial_stock", self.mean_initial_stock as usize, 0, 1_000_000)?;
        in_range("restock_lead_days", self.restock_lead_days, 0.0, 365.0)?;
        probability("cancel_prob", self.cancel_prob)?;
        probability("return_prob", self.return_prob)?;
        probability("support_prob", self.support_prob)?;
        count("agents", self.agents, 1, 100_000)?;
        Ok(())
    }

    /// Unix milliseconds just after the last simulated moment.
    pub fn end_ms(&self) -> i64 {
        self.start_ms.saturating_add(i64::from(self.days).saturating_mul(DAY_MS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(cfg: SimConfig) -> &'static str {
        match cfg.validate() {
            Err(SimError::InvalidConfig { field, .. }) => field,
            Ok(()) => "",
        }
    }

    #[test]
    fn the_default_is_valid_and_starts_on_a_monday_at_midnight() {
        let cfg = SimConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.start_ms.rem_euclid(DAY_MS), 0);
        // 1970-01-01 was a Thursday: day 0 + 3 is Monday-based index 0.
        assert_eq!((cfg.start_ms.div_euclid(DAY_MS) + 3).rem_euclid(7), 0);
    }

    #[test]
    fn errors_name_the_field() {
        let d = SimConfig::default;
        assert_eq!(field_of(SimConfig { tenant: "Bad Tenant".into(), ..d() }), "tenant");
        assert_eq!(field_of(SimConfig { users: 0, ..d() }), "users");
        assert_eq!(field_of(SimConfig { items: 5, categories: 6, ..d() }), "categories");
        assert_eq!(field_of(SimConfig { days: 0, ..d() }), "days");
        assert_eq!(field_of(SimConfig { start_ms: 1_700_000_000, ..d() }), "start_ms");
        assert_eq!(field_of(SimConfig { currency: "usd".into(), ..d() }), "currency");
        assert_eq!(
            field_of(SimConfig { sessions_per_user_per_week: f64::NAN, ..d() }),
            "sessions_per_user_per_week"
        );
        assert_eq!(field_of(SimConfig { purchase_prob: 1.5, ..d() }), "purchase_prob");
        assert_eq!(field_of(SimConfig { mean_views_per_session: 0.5, ..d() }), "mean_views_per_session");
        assert_eq!(field_of(SimConfig { agents: 0, ..d() }), "agents");
        let msg = SimConfig { cart_prob: -0.1, ..d() }.validate().map_err(|e| e.to_string());
        assert!(matches!(&msg, Err(m) if m.contains("`cart_prob`") && m.contains("-0.1")), "{msg:?}");
    }
}
