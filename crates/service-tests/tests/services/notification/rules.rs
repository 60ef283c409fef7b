//! Every rule fires on simulated events and stays silent when its condition does not hold,
//! on a real nats-server and redis-server (with the feature service applying the same events).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::common::{DAY, HOUR, Harness, noon, tenant};
use shopmind_domain::{Author, OrderStatus, UserId};
use shopmind_notification::{Delivered, Escalation};
use shopmind_proto::v1::NotificationKind as K;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn order_status_notifies_the_customer_for_the_configured_statuses() {
    let mut h = Harness::start(noon(), |c| {
        c.notification.defaults.rules.order_status.statuses = vec!["shipped".into(), "delivered".into()];
    })
    .await;
    let t0 = h.now() - HOUR;
    h.order("u1", "o1", &[("i1", 1)], t0).await;
    h.status("u1", "o1", OrderStatus::Paid, t0 + 1).await;
    h.status("u1", "o1", OrderStatus::Shipped, t0 + 2).await;
    h.caught_up().await;
    let found = h.wait_for(K::OrderStatus, 1).await;
    assert_eq!(found.len(), 1, "paid is not a configured status");
    assert_eq!(found[0].data["status"], "shipped");
    assert_eq!(found[0].user_id, "u1");
    assert_eq!(found[0].audience, "customer");
    let (subject, _) = &h.notifications().await[0];
    assert_eq!(subject, "sm.notify.acme.customer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cart_abandonment_nudges_an_idle_cart_with_intent_and_carries_complements() {
    let mut h = Harness::start(noon(), |c| {
        let r = &mut c.notification.defaults.rules.cart_abandonment;
        r.idle_s = 600;
        r.min_intent = 0.5;
    })
    .await;
    let t0 = h.now() - HOUR;
    // Co-purchases: a and c are bought together.
    h.order("x", "ox", &[("a", 1), ("c", 1)], t0 - DAY).await;
    // u1: two items and a view of one: intent 0.3 + 0.2 + 0.05 = 0.55.
    h.view("u1", "a", t0).await;
    h.cart("u1", "a", t0 + 1).await;
    h.cart("u1", "b", t0 + 2).await;
    // u2: one item: intent 0.4, below the threshold.
    h.cart("u2", "a", t0).await;
    // u3: two items, then ordered: the cart is empty when the timer comes due.
    h.cart("u3", "a", t0).await;
    h.cart("u3", "b", t0 + 1).await;
    h.order("u3", "o3", &[("a", 1), ("b", 1)], t0 + 2).await;
    h.caught_up().await;
    // The clock is 1 h after the events, past idle_s: every cart timer is due.
    h.timers_settled().await;
    let found = h.wait_for(K::CartAbandoned, 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let n = &found[0];
    assert_eq!(n.user_id, "u1");
    assert_eq!(n.data["cart_items"], "a,b");
    assert_eq!(n.data["complements"].split(',').next(), Some("c"), "co-purchased with a: {:?}", n.data);
    assert_eq!(n.data["intent"], "0.55");
    assert!(h.pending_timers().await.iter().all(|(m, _)| !m.starts_with("cart|")), "cart timers done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cart_timer_waits_for_the_idle_time() {
    let start = noon();
    let mut h = Harness::start(start, |c| c.notification.defaults.rules.cart_abandonment.idle_s = 600).await;
    h.view("u1", "a", start - 2).await;
    h.cart("u1", "a", start - 1).await;
    h.cart("u1", "b", start).await;
    h.caught_up().await;
    // Not due yet: the timers are pending, nothing was sent.
    let pending = h.pending_timers().await;
    assert_eq!(pending.iter().filter(|(m, _)| m.starts_with("cart|")).count(), 2, "{pending:?}");
    assert!(h.of_kind(K::CartAbandoned).await.is_empty());
    // A later cart change moves the idle time: only its timer fires.
    h.clock.advance(Duration::from_secs(601));
    h.timers_settled().await;
    let found = h.wait_for(K::CartAbandoned, 1).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].notification_id, format!("cart_abandoned:acme:u1:{start}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn back_in_stock_tells_the_users_who_met_the_item_out_of_stock() {
    let mut h = Harness::start(noon(), |_| {}).await;
    let t0 = h.now() - HOUR;
    h.stock("s", 5, t0).await;
    h.view("early", "s", t0 + 1).await; // in stock then: not waiting
    h.stock("s", 0, t0 + 2).await;
    h.view("u1", "s", t0 + 3).await;
    h.cart("u2", "s", t0 + 4).await;
    h.view("u3", "other", t0 + 5).await;
    h.stock("s", 10, t0 + 6).await;
    h.stock("s", 8, t0 + 7).await; // still in stock: nothing new
    h.caught_up().await;
    let found = h.wait_for(K::BackInStock, 2).await;
    let mut users: Vec<_> = found.iter().map(|n| n.user_id.clone()).collect();
    users.sort();
    assert_eq!(users, ["u1", "u2"]);
    assert!(found.iter().all(|n| n.data["item_id"] == "s" && n.data["available"] == "10"));
    // A restock with nobody waiting any more is silent.
    h.stock("s", 0, t0 + 8).await;
    h.stock("s", 4, t0 + 9).await;
    h.caught_up().await;
    assert_eq!(h.of_kind(K::BackInStock).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn price_drop_tells_recent_viewers_when_the_cut_is_large_enough() {
    let mut h =
        Harness::start(noon(), |c| c.notification.defaults.rules.price_drop.min_drop_pct = 10.0).await;
    let t0 = h.now() - HOUR;
    h.price("p", 1000, t0).await;
    h.view("u1", "p", t0 + 1).await;
    h.view("u2", "q", t0 + 2).await;
    h.price("p", 950, t0 + 3).await; // 5 %: silent
    h.price("p", 1100, t0 + 4).await; // up: silent
    h.caught_up().await;
    assert!(h.of_kind(K::PriceDrop).await.is_empty());
    h.price("p", 900, t0 + 5).await; // 18 % below 1100
    h.caught_up().await;
    let found = h.wait_for(K::PriceDrop, 1).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].user_id, "u1");
    assert_eq!(
        (found[0].data["old_price_minor"].as_str(), found[0].data["new_price_minor"].as_str()),
        ("1100", "900")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn low_stock_alerts_the_merchant_when_forecast_demand_exceeds_stock() {
    let mut h = Harness::start(noon(), |c| {
        let r = &mut c.notification.defaults.rules.low_stock;
        r.lead_time_days = 7;
        r.history_days = 28;
    })
    .await;
    let now = h.now();
    // 56 units of l over the last 28 days: 2 a day, 14 over the lead time.
    for d in 0..7 {
        h.order("buyer", &format!("o{d}"), &[("l", 8)], now - (d + 1) * DAY).await;
    }
    h.caught_up().await;
    h.stock("l", 20, now - 10).await; // 14 < 20: silent
    h.stock("quiet", 1, now - 9).await; // no demand: silent
    h.caught_up().await;
    assert!(h.of_kind(K::LowStock).await.is_empty());
    h.stock("l", 10, now - 8).await;
    h.caught_up().await;
    let found = h.wait_for(K::LowStock, 1).await;
    assert_eq!(found.len(), 1);
    let n = &found[0];
    assert_eq!((n.audience.as_str(), n.user_id.as_str()), ("merchant", ""));
    assert_eq!(n.data["item_id"], "l");
    assert_eq!(n.data["forecast"], "14.00");
    let (subject, _) = &h.notifications().await[0];
    assert_eq!(subject, "sm.notify.acme.merchant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_risk_alerts_the_merchant_when_a_customer_drifts_past_the_ratio() {
    let mut h = Harness::start(noon(), |c| {
        c.notification.defaults.rules.churn_risk.drift_ratio = 1.5;
        c.notification.defaults.rules.churn_risk.min_orders = 2;
    })
    .await;
    let now = h.now();
    // drifting: every 10 days, last 20 days ago (> 15).
    for (i, ago) in [40, 30, 20].into_iter().enumerate() {
        h.order("drifting", &format!("d{i}"), &[("x", 1)], now - ago * DAY).await;
    }
    // regular: every 10 days, last 2 days ago.
    for (i, ago) in [22, 12, 2].into_iter().enumerate() {
        h.order("regular", &format!("r{i}"), &[("x", 1)], now - ago * DAY).await;
    }
    // once: a single order long ago.
    h.order("once", "s0", &[("x", 1)], now - 90 * DAY).await;
    h.caught_up().await;
    h.timers_settled().await;
    let found = h.wait_for(K::ChurnRisk, 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].user_id, "drifting");
    assert_eq!(found[0].audience, "merchant");
    assert_eq!(found[0].data["mean_gap_days"], "10.0");
    // The regular customer's check waits for their own threshold: 2 + 15 days from now.
    let pending = h.pending_timers().await;
    let regular: Vec<_> = pending.iter().filter(|(m, _)| m.ends_with("|regular")).collect();
    assert_eq!(regular.len(), 1, "{pending:?}");
    assert_eq!(regular[0].1, now - 2 * DAY + 15 * DAY);
    h.clock.advance(Duration::from_millis((13 * DAY) as u64));
    h.timers_settled().await;
    let found = h.wait_for(K::ChurnRisk, 2).await;
    assert_eq!(found.iter().filter(|n| n.user_id == "regular").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn support_escalation_from_customer_keywords_and_from_the_api() {
    let mut h = Harness::start(noon(), |_| {}).await;
    let t0 = h.now() - HOUR;
    h.support("u1", "c1", Author::Customer, "Please let me talk to a HUMAN", t0).await;
    h.support("u2", "c2", Author::Customer, "Where is my parcel?", t0 + 1).await;
    h.support("u3", "c3", Author::Agent(UserId::parse("agent7").unwrap()), "A human will call you", t0 + 2)
        .await;
    h.caught_up().await;
    let found = h.wait_for(K::SupportEscalation, 1).await;
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].audience.as_str(), found[0].user_id.as_str()), ("agents", "u1"));
    assert_eq!(found[0].data["conversation_id"], "c1");
    let (subject, _) = &h.notifications().await[0];
    assert_eq!(subject, "sm.notify.acme.agents");

    // The assistant's API.
    let e = Escalation {
        tenant: tenant(),
        user: UserId::parse("u2").unwrap(),
        conversation: "c2".into(),
        reason: "the customer is upset".into(),
        cause: "turn-9".into(),
        transcript: Vec::new(),
        intents: Vec::new(),
        profile: Vec::new(),
    };
    assert_eq!(h.notifier.escalate(&e).await.unwrap(), Delivered::Published);
    assert_eq!(h.notifier.escalate(&e).await.unwrap(), Delivered::Duplicate, "the same cause once");
    let again = Escalation { cause: "turn-10".into(), ..e };
    assert_eq!(
        h.notifier.escalate(&again).await.unwrap(),
        Delivered::Deduped,
        "one per conversation and window"
    );
    let found = h.wait_for(K::SupportEscalation, 2).await;
    assert_eq!(found.len(), 2);
    assert_eq!(found[1].notification_id, "support_escalation:acme:c2:turn-9");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_of_erased_customers_make_no_notification() {
    let mut h = Harness::start(noon(), |c| {
        c.notification.defaults.rules.order_status.statuses = vec!["shipped".into()];
    })
    .await;
    // u1 was erased (a tombstone in SM_ERASURES); the service restarts and loads it.
    let stone = shopmind_privacy::tombstone_of(&tenant(), &UserId::parse("u1").unwrap());
    let subject = shopmind_runtime::topology::erased_subject(&tenant());
    h.bus.publish(shopmind_bus::Message::new(subject, bytes::Bytes::from(stone)), None).await.unwrap();
    h.stop_notification().await;
    h.start_notification();
    let t0 = h.now() - HOUR;
    for user in ["u1", "u2"] {
        h.order(user, &format!("o-{user}"), &[("i1", 1)], t0).await;
        h.status(user, &format!("o-{user}"), OrderStatus::Shipped, t0 + 1).await;
    }
    h.caught_up().await;
    let found = h.wait_for(K::OrderStatus, 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].user_id, "u2", "the erased customer's straggler made no notification");
}
