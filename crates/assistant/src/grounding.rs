//! Grounding answers in the customer's data: which of their orders a message is about, and what
//! the tenant's policies say about cancelling or returning it. Pure functions over what the
//! feature store holds (`UserFeatures::orders`: order id -> (time of the latest status, status)).

use std::collections::BTreeMap;

use shopmind_config::TenantAssistant;

const DAY_MS: i64 = 86_400_000;

/// One of the customer's orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRef {
    pub id: String,
    pub status: String,
    /// When the order reached its status (unix ms).
    pub since_ms: i64,
}

/// Which order a message is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderMatch {
    /// Exactly one.
    One(OrderRef),
    /// The message names none and the customer has several: newest first.
    Ambiguous(Vec<OrderRef>),
    /// The message names ids that are not the customer's orders.
    Unknown(Vec<String>),
    /// The customer has no orders.
    NoOrders,
}

/// The words of `text` that look like ids: letters, digits, `-` and `_`, at least one digit,
/// `#` and surrounding punctuation removed.
pub fn id_like_tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .map(|t| t.trim_matches(|c| c == '-' || c == '_'))
        .filter(|t| t.len() >= 3 && t.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

/// The customer's orders, newest status change first.
pub fn orders_newest_first(orders: &BTreeMap<String, (i64, String)>) -> Vec<OrderRef> {
    let mut out: Vec<OrderRef> = orders
        .iter()
        .map(|(id, (at, status))| OrderRef { id: id.clone(), status: status.clone(), since_ms: *at })
        .collect();
    out.sort_by(|a, b| b.since_ms.cmp(&a.since_ms).then_with(|| a.id.cmp(&b.id)));
    out
}

/// The order `text` is about: an id of the customer's orders found in it (case-insensitive), else
/// `fallback` (the order the conversation was about), else the only order; several named or
/// several candidates without a name are ambiguous.
pub fn match_order(
    text: &str,
    orders: &BTreeMap<String, (i64, String)>,
    fallback: Option<&str>,
) -> OrderMatch {
    let all = orders_newest_first(orders);
    if all.is_empty() {
        return OrderMatch::NoOrders;
    }
    let tokens = id_like_tokens(text);
    let named: Vec<&OrderRef> =
        all.iter().filter(|o| tokens.iter().any(|t| t.eq_ignore_ascii_case(&o.id))).collect();
    match named.as_slice() {
        [one] => return OrderMatch::One((*one).clone()),
        [] => {}
        several => return OrderMatch::Ambiguous(several.iter().map(|o| (*o).clone()).collect()),
    }
    if let Some(o) = fallback.and_then(|f| all.iter().find(|o| o.id == f)) {
        return OrderMatch::One(o.clone());
    }
    // An id that is not theirs: say so rather than guess.
    let unknown: Vec<String> =
        tokens.into_iter().filter(|t| t.chars().any(|c| c.is_ascii_alphabetic()) || t.len() >= 4).collect();
    if !unknown.is_empty() && fallback.is_none() {
        return OrderMatch::Unknown(unknown);
    }
    match all.as_slice() {
        [one] => OrderMatch::One(one.clone()),
        _ => OrderMatch::Ambiguous(all),
    }
}

/// `YYYY-MM-DD` (UTC) of a unix time in milliseconds.
pub fn date(unix_ms: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix_ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What the customer is told about an order's status, with a delivery estimate where there is
/// one.
pub fn status_sentence(order: &OrderRef, policy: &TenantAssistant) -> String {
    let (id, since) = (&order.id, date(order.since_ms));
    let days = i64::from(policy.delivery_days);
    match order.status.as_str() {
        "placed" => format!(
            "Order {id} was placed on {since} and has not shipped yet; once it ships it should arrive within {days} days."
        ),
        "paid" => format!(
            "Order {id} is paid (since {since}) and being prepared; once it ships it should arrive within {days} days."
        ),
        "shipped" => format!(
            "Order {id} shipped on {since} and should arrive by {}.",
            date(order.since_ms.saturating_add(days * DAY_MS))
        ),
        "delivered" => format!("Order {id} was delivered on {since}."),
        "cancelled" => format!("Order {id} was cancelled on {since}."),
        "returned" => format!("Order {id} was returned on {since}; the refund follows once it is checked."),
        "refunded" => format!("Order {id} was refunded on {since}."),
        other => format!("Order {id} is {other} (since {since})."),
    }
}

/// A policy's verdict on a request about an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Why, in a sentence for the customer.
    pub reason: String,
}

fn list(statuses: &[String]) -> String {
    match statuses {
        [] => "never".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Whether the order can be cancelled now: only in one of `cancellable_statuses`.
pub fn can_cancel(order: &OrderRef, policy: &TenantAssistant) -> Verdict {
    if policy.cancellable_statuses.contains(&order.status) {
        return Verdict {
            allowed: true,
            reason: format!(
                "order {} is {}, and orders can be cancelled until they ship",
                order.id, order.status
            ),
        };
    }
    let reason = match order.status.as_str() {
        "cancelled" => format!("order {} is already cancelled", order.id),
        status => format!(
            "order {} is already {status} (since {}); orders can be cancelled only while {}",
            order.id,
            date(order.since_ms),
            list(&policy.cancellable_statuses)
        ),
    };
    Verdict { allowed: false, reason }
}

/// Whether the order can be returned at `now_ms`: in one of `returnable_statuses`, within
/// `return_window_days` of reaching it.
pub fn can_return(order: &OrderRef, policy: &TenantAssistant, now_ms: i64) -> Verdict {
    let window = i64::from(policy.return_window_days);
    if !policy.returnable_statuses.contains(&order.status) {
        return Verdict {
            allowed: false,
            reason: format!(
                "order {} is {}; returns are possible once it is {}, within {window} days",
                order.id,
                order.status,
                list(&policy.returnable_statuses)
            ),
        };
    }
    let deadline = order.since_ms.saturating_add(window * DAY_MS);
    if now_ms > deadline {
        return Verdict {
            allowed: false,
            reason: format!(
                "order {} was {} on {}, and the {window}-day return window ended on {}",
                order.id,
                order.status,
                date(order.since_ms),
                date(deadline)
            ),
        };
    }
    Verdict {
        allowed: true,
        reason: format!(
            "order {} can be returned until {} ({window} days after it was {})",
            order.id,
            date(deadline),
            order.status
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const T0: i64 = 1_764_288_000_000; // 2025-11-28T00:00:00Z

    fn orders(list: &[(&str, i64, &str)]) -> BTreeMap<String, (i64, String)> {
        list.iter().map(|(id, at, s)| ((*id).to_owned(), (*at, (*s).to_owned()))).collect()
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(T0), "2025-11-28");
        assert_eq!(date(T0 + 3 * DAY_MS + 5), "2025-12-01");
        assert_eq!(date(951_782_400_000), "2000-02-29");
    }

    #[test]
    fn orders_are_found_by_id_else_the_fallback_else_the_only_one() {
        let two = orders(&[("A1001", T0, "shipped"), ("A1002", T0 + 1, "paid")]);
        let id = |m: OrderMatch| match m {
            OrderMatch::One(o) => o.id,
            other => panic!("{other:?}"),
        };
        assert_eq!(id(match_order("where is #a1001?", &two, None)), "A1001");
        assert_eq!(id(match_order("and when will it arrive?", &two, Some("A1002"))), "A1002");
        match match_order("where is my order", &two, None) {
            OrderMatch::Ambiguous(c) => assert_eq!(c[0].id, "A1002", "newest first"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(match_order("status of A9999", &two, None), OrderMatch::Unknown(u) if u == ["A9999"])
        );
        assert_eq!(id(match_order("where is my order", &orders(&[("X77", T0, "paid")]), None)), "X77");
        assert_eq!(match_order("where is it", &BTreeMap::new(), None), OrderMatch::NoOrders);
    }

    #[test]
    fn policies_say_why() {
        let p = TenantAssistant::default();
        let o = |s: &str, at| OrderRef { id: "A1".into(), status: s.into(), since_ms: at };
        assert!(can_cancel(&o("paid", T0), &p).allowed);
        let refused = can_cancel(&o("shipped", T0), &p);
        assert!(!refused.allowed);
        assert!(
            refused.reason.contains("already shipped") && refused.reason.contains("placed or paid"),
            "{}",
            refused.reason
        );
        assert!(can_return(&o("delivered", T0), &p, T0 + 10 * DAY_MS).allowed);
        let late = can_return(&o("delivered", T0), &p, T0 + 31 * DAY_MS);
        assert!(!late.allowed && late.reason.contains("2025-12-28"), "{}", late.reason);
        assert!(!can_return(&o("shipped", T0), &p, T0).allowed);
        assert!(status_sentence(&o("shipped", T0), &p).contains("arrive by 2025-12-01"));
    }
}
