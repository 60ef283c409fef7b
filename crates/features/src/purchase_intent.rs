//! The feature row of the purchase-intent model: what the model reads of a session and its user,
//! computed from the feature reads ([`crate::read_session_features`], [`crate::read_user_features`])
//! and the time of the request.
//!
//! **One feature function for training and serving.** [`purchase_intent_features`] is called on a
//! live read by inference, and on the reads of a replay by the trainer (its training samples:
//! events applied with [`crate::apply_event`] to a memory store, cut inside each session, read
//! back with the same functions). The row's layout is [`FEATURE_NAMES`], versioned by
//! [`FEATURE_SCHEMA_VERSION`]; both are written into the model file when it is trained and
//! checked when it is loaded.

use shopmind_domain::{EventKind, UnixMillis};

use crate::{SessionFeatures, UserFeatures};

/// Version of the feature row; bump it whenever [`purchase_intent_features`] changes meaning.
pub const FEATURE_SCHEMA_VERSION: u32 = 1;

/// The feature row, in order. Counts are `ln(1 + n)`.
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    // The session so far (read_session_features).
    "session_views",
    "session_cart_adds",
    "session_cart_removes",
    "session_searches",
    "session_open_cart",
    "session_minutes",
    // The user (read_user_features), the current session included.
    "user_cart_units",
    "user_views",
    "user_cart_adds",
    "user_orders",
    "user_has_ordered",
    "user_days_since_order",
    "user_cart_conversion",
    "user_cart_rate",
    "user_spend",
];

/// Length of the feature row.
pub const N_FEATURES: usize = 15;

fn ln1p(n: i64) -> f32 {
    (n.max(0) as f64).ln_1p() as f32
}

/// The feature row of a session at `now` (see [`FEATURE_NAMES`]):
///
/// | feature | value |
/// |---|---|
/// | `session_views` | ln(1 + `product_viewed` events in the session) |
/// | `session_cart_adds` | ln(1 + `added_to_cart`) |
/// | `session_cart_removes` | ln(1 + `removed_from_cart`) |
/// | `session_searches` | ln(1 + `search_performed`) |
/// | `session_open_cart` | 1 if the session added more cart lines than it removed, else 0 |
/// | `session_minutes` | ln(1 + minutes between the session's first and last event) |
/// | `user_cart_units` | ln(1 + units in the user's cart now, earlier sessions' leftovers included) |
/// | `user_views` | ln(1 + the user's `product_viewed` events) |
/// | `user_cart_adds` | ln(1 + the user's `added_to_cart` events) |
/// | `user_orders` | ln(1 + the user's orders) |
/// | `user_has_ordered` | 1 if the user ever ordered, else 0 |
/// | `user_days_since_order` | ln(1 + days from the last order to `now`); 0 without orders |
/// | `user_cart_conversion` | (orders + 1) / (cart adds + 2) |
/// | `user_cart_rate` | (cart adds + 1) / (views + 10) |
/// | `user_spend` | ln(1 + total spend in major units, all currencies added) |
///
/// Order events of the session are not features: the model answers for sessions that have not
/// ordered yet (training cuts every session before its order).
pub fn purchase_intent_features(
    session: &SessionFeatures,
    user: &UserFeatures,
    now: UnixMillis,
) -> [f32; N_FEATURES] {
    let s = |k: EventKind| session.counts.get(k.as_str()).copied().unwrap_or(0);
    let u = |k: EventKind| user.counts.get(k.as_str()).copied().unwrap_or(0);
    let adds = s(EventKind::AddedToCart);
    let removes = s(EventKind::RemovedFromCart);
    let minutes = session.duration_ms().unwrap_or(0).max(0) / 60_000;
    let cart_units: i64 = user.cart.values().sum();
    let (user_views, user_adds) = (u(EventKind::ProductViewed), u(EventKind::AddedToCart));
    let orders = user.order_count.max(0);
    let days_since_order = user.last_order_ms.map_or(0.0, |last| {
        let days = ((now.0 - last).max(0) as f64) / 86_400_000.0;
        days.ln_1p() as f32
    });
    let spend_minor: i64 = user.spend.values().sum();
    [
        ln1p(s(EventKind::ProductViewed)),
        ln1p(adds),
        ln1p(removes),
        ln1p(s(EventKind::SearchPerformed)),
        if adds > removes { 1.0 } else { 0.0 },
        ln1p(minutes),
        ln1p(cart_units),
        ln1p(user_views),
        ln1p(user_adds),
        ln1p(orders),
        if orders > 0 { 1.0 } else { 0.0 },
        days_since_order,
        ((orders as f64 + 1.0) / (user_adds.max(0) as f64 + 2.0)) as f32,
        ((user_adds.max(0) as f64 + 1.0) / (user_views.max(0) as f64 + 10.0)) as f32,
        ((spend_minor.max(0) as f64) / 100.0).ln_1p() as f32,
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_match_the_row() {
        assert_eq!(FEATURE_NAMES.len(), N_FEATURES);
        let distinct: BTreeSet<&str> = FEATURE_NAMES.iter().copied().collect();
        assert_eq!(distinct.len(), N_FEATURES);
    }

    #[test]
    fn features_of_a_hand_built_session() {
        let mut session =
            SessionFeatures { first_ms: Some(0), last_ms: Some(5 * 60_000), ..Default::default() };
        session.counts.insert("product_viewed".into(), 3);
        session.counts.insert("added_to_cart".into(), 1);
        let mut user = UserFeatures { order_count: 1, last_order_ms: Some(0), ..Default::default() };
        user.counts.insert("product_viewed".into(), 10);
        user.counts.insert("added_to_cart".into(), 2);
        user.spend.insert("USD".into(), 1_900);
        let x = purchase_intent_features(&session, &user, UnixMillis(86_400_000));
        let ln = |v: f64| v.ln_1p() as f32;
        assert_eq!(x[0], ln(3.0));
        assert_eq!(x[1], ln(1.0));
        assert_eq!(x[2], 0.0);
        assert_eq!(x[4], 1.0, "one add, no removal: the cart is open");
        assert_eq!(x[5], ln(5.0));
        assert_eq!(x[9], ln(1.0));
        assert_eq!(x[10], 1.0);
        assert_eq!(x[11], ln(1.0), "one day since the order");
        assert_eq!(x[12], 0.5, "(1 + 1) / (2 + 2)");
        assert_eq!(x[13], 3.0 / 20.0);
        assert_eq!(x[14], ln(19.0));
        // Nothing known: a row of zeros except the smoothed rates.
        let empty =
            purchase_intent_features(&SessionFeatures::default(), &UserFeatures::default(), UnixMillis(0));
        assert_eq!(empty[12], 0.5);
        assert_eq!(empty[13], 0.1);
        assert!(empty.iter().enumerate().all(|(i, v)| i == 12 || i == 13 || *v == 0.0));
    }
}
