//! The churn estimate: one definition, used by the notification service's churn-risk rule (when
//! to warn) and by customer profiles (how likely the customer is gone).
//!
//! A customer with a rhythm (at least `min_orders` orders spread over time) is expected to order
//! again within their mean gap between orders; they are *overdue* once the time since the last
//! order exceeds `drift_ratio` mean gaps ([`churn_due_ms`], the rule's trigger). The risk is a
//! smooth function of `r = elapsed / (drift_ratio × gap)`: `1 − 2^(−r²)`, so it is 0 right
//! after an order, exactly 0.5 when the rule fires, and tends to 1 after. A customer without a
//! rhythm (fewer orders, or none) is measured the same way against `default_gap` from their last
//! order, or from their last activity when they never ordered.

use std::time::Duration;

use shopmind_domain::UnixMillis;

use crate::UserFeatures;

/// The parameters of the churn estimate (`notification.*.rules.churn_risk` and the profile's
/// default gap).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChurnParams {
    /// Overdue after this many mean gaps.
    pub drift_ratio: f64,
    /// A mean gap needs at least this many orders (at least 2).
    pub min_orders: i64,
    /// The expected gap of a customer without a rhythm.
    pub default_gap: Duration,
}

/// The customer's mean time between orders in milliseconds: `None` with fewer than `min_orders`
/// orders (or fewer than 2) or when all orders fell at one instant.
pub fn mean_order_gap_ms(f: &UserFeatures, min_orders: i64) -> Option<f64> {
    let (first, last) = (f.first_order_ms?, f.last_order_ms?);
    if f.order_count < min_orders.max(2) {
        return None;
    }
    let gap = (last - first) as f64 / (f.order_count - 1) as f64;
    (gap > 0.0).then_some(gap)
}

/// When a customer with a rhythm becomes overdue: the last order plus `drift_ratio` mean gaps.
pub fn churn_due_ms(f: &UserFeatures, drift_ratio: f64, min_orders: i64) -> Option<i64> {
    let gap = mean_order_gap_ms(f, min_orders)?;
    Some(f.last_order_ms? + (gap * drift_ratio) as i64)
}

/// The probability (0–1) that the customer does not come back, at `now`. `last_seen_ms` is the
/// customer's latest activity, the reference for one who never ordered; without any reference
/// the risk is 1.
pub fn churn_risk(f: &UserFeatures, last_seen_ms: Option<i64>, now: UnixMillis, p: &ChurnParams) -> f64 {
    let expected = mean_order_gap_ms(f, p.min_orders).unwrap_or(p.default_gap.as_millis() as f64);
    let Some(since) = f.last_order_ms.or(last_seen_ms) else { return 1.0 };
    let horizon = expected * p.drift_ratio;
    if horizon <= 0.0 {
        return 1.0;
    }
    let r = (now.0 - since).max(0) as f64 / horizon;
    (1.0 - (-r * r).exp2()).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const DAY: i64 = 86_400_000;

    fn orders(first: i64, last: i64, count: i64) -> UserFeatures {
        UserFeatures {
            first_order_ms: Some(first),
            last_order_ms: Some(last),
            order_count: count,
            ..UserFeatures::default()
        }
    }

    fn params() -> ChurnParams {
        ChurnParams { drift_ratio: 2.0, min_orders: 2, default_gap: Duration::from_secs(30 * 86_400) }
    }

    #[test]
    fn the_mean_gap_needs_enough_orders_spread_over_time() {
        assert_eq!(mean_order_gap_ms(&orders(0, 30 * DAY, 4), 2), Some(10.0 * DAY as f64));
        assert_eq!(mean_order_gap_ms(&orders(0, 30 * DAY, 4), 5), None);
        assert_eq!(mean_order_gap_ms(&orders(0, 0, 3), 2), None, "all at one instant");
        assert_eq!(mean_order_gap_ms(&orders(0, 0, 1), 1), None, "one order has no gap");
        assert_eq!(mean_order_gap_ms(&UserFeatures::default(), 2), None);
        assert_eq!(churn_due_ms(&orders(0, 30 * DAY, 4), 2.0, 2), Some(50 * DAY));
    }

    #[test]
    fn the_risk_is_one_half_exactly_when_the_rule_fires_and_grows_with_time() {
        let f = orders(0, 30 * DAY, 4);
        let due = churn_due_ms(&f, 2.0, 2).unwrap();
        let at = |t: i64| churn_risk(&f, None, UnixMillis(t), &params());
        assert!((at(due) - 0.5).abs() < 1e-9, "{}", at(due));
        assert_eq!(at(30 * DAY), 0.0, "right after the last order");
        assert!(at(35 * DAY) < at(45 * DAY) && at(45 * DAY) < at(due) && at(due) < at(80 * DAY));
        assert!(at(400 * DAY) > 0.99);
    }

    #[test]
    fn without_a_rhythm_the_default_gap_applies_from_the_last_order_or_activity() {
        let p = params();
        let now = UnixMillis(1_000 * DAY);
        // One order 60 days ago = drift_ratio × the default gap: one half.
        let one = orders(940 * DAY, 940 * DAY, 1);
        assert!((churn_risk(&one, None, now, &p) - 0.5).abs() < 1e-9);
        // Never ordered: measured from the last activity.
        let browser = UserFeatures::default();
        assert!(churn_risk(&browser, Some(999 * DAY), now, &p) < 0.01);
        assert!(churn_risk(&browser, Some(800 * DAY), now, &p) > 0.9);
        assert_eq!(churn_risk(&browser, None, now, &p), 1.0);
    }
}
