//! The policies hold on a real nats-server and redis-server: dedup, frequency cap, quiet hours
//! (deferred, then delivered once; in a fixed offset and in an IANA zone across daylight saving
//! time), opt-out per channel; and timers survive a restart.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use super::common::{DAY, HOUR, Harness, noon, read_stream, tenant};
use shopmind_config::WebhookEndpoint;
use shopmind_domain::UserId;
use shopmind_notification::prefs::{self, Channel, Preferences};
use shopmind_proto::v1::NotificationKind as K;
use shopmind_runtime::topology::WEBHOOKS_STREAM;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_rule_user_and_item_notify_once_within_the_dedup_window() {
    let mut h = Harness::start(noon(), |c| c.notification.defaults.policy.dedup_window_s = 3600).await;
    let t0 = h.now() - HOUR;
    h.price("p", 1000, t0).await;
    h.view("u1", "p", t0 + 1).await;
    h.price("p", 800, t0 + 2).await;
    h.price("p", 600, t0 + 3).await; // a second drop within the window: deduped
    h.caught_up().await;
    let found = h.wait_for(K::PriceDrop, 1).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].data["new_price_minor"], "800");
    // After the window, the same rule, user and item notify again.
    h.clock.advance(Duration::from_secs(3601));
    // The claim lives in Redis with the window as TTL: wait for it to expire there too.
    let key = shopmind_notification::keys::dedup(&tenant(), "u1", "price_drop", "p");
    h.store
        .write(shopmind_store::WriteBatch {
            writes: vec![shopmind_store::Write::Expire { key, ttl: Duration::from_millis(1) }],
            atomic: false,
            guard: None,
        })
        .await
        .unwrap();
    h.price("p", 400, t0 + 4).await;
    h.caught_up().await;
    let found = h.wait_for(K::PriceDrop, 2).await;
    assert_eq!(found[1].data["new_price_minor"], "400");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_frequency_cap_limits_marketing_notifications_per_user() {
    let mut h = Harness::start(noon(), |c| {
        c.notification.defaults.policy.frequency_cap = 2;
        c.notification.defaults.policy.frequency_window_s = 86_400;
    })
    .await;
    let t0 = h.now() - HOUR;
    for (i, item) in ["a", "b", "c"].into_iter().enumerate() {
        h.price(item, 1000, t0 + i as i64).await;
        h.view("u1", item, t0 + 10 + i as i64).await;
        h.view("u2", item, t0 + 10 + i as i64).await;
    }
    for (i, item) in ["a", "b", "c"].into_iter().enumerate() {
        h.price(item, 500, t0 + 20 + i as i64).await;
    }
    // Order status is not a capped kind.
    h.status("u1", "o1", shopmind_domain::OrderStatus::Shipped, t0 + 30).await;
    h.caught_up().await;
    h.wait_for(K::OrderStatus, 1).await;
    let drops = h.of_kind(K::PriceDrop).await;
    for user in ["u1", "u2"] {
        let items: Vec<_> =
            drops.iter().filter(|n| n.user_id == user).map(|n| n.data["item_id"].clone()).collect();
        assert_eq!(items, ["a", "b"], "{user}: the third is capped");
    }
    // A day later the window has moved on.
    h.clock.advance(Duration::from_millis(DAY as u64 + 1000));
    h.price("c", 200, h.now()).await;
    h.caught_up().await;
    let drops = h.wait_for(K::PriceDrop, 6).await;
    assert_eq!(drops.iter().filter(|n| n.data["item_id"] == "c").count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiet_hours_defer_in_the_users_time_zone_and_deliver_once_at_their_end() {
    // 23:00 UTC: quiet (22-08) for UTC users, 09:00 for a user at +10:00.
    let start = noon() + 11 * HOUR;
    let mut h = Harness::start(start, |_| {}).await;
    let tokyo = UserId::parse("far").unwrap();
    let p = Preferences { utc_offset_min: Some(600), ..Preferences::default() };
    prefs::write(&*h.store, &tenant(), &tokyo, &p).await.unwrap();
    let t0 = start - HOUR;
    h.price("p", 1000, t0).await;
    h.view("near", "p", t0 + 1).await;
    h.view("far", "p", t0 + 2).await;
    h.price("p", 500, t0 + 3).await;
    h.status("near", "o1", shopmind_domain::OrderStatus::Shipped, t0 + 4).await; // not a quiet kind
    h.caught_up().await;
    h.wait_for(K::OrderStatus, 1).await;
    let now_sent = h.wait_for(K::PriceDrop, 1).await;
    assert_eq!(now_sent.len(), 1);
    assert_eq!(now_sent[0].user_id, "far");
    let pending = h.pending_timers().await;
    let deferred: Vec<_> = pending.iter().filter(|(m, _)| m.starts_with("deliver|")).collect();
    assert_eq!(deferred.len(), 1, "{pending:?}");
    assert_eq!(deferred[0].1, start + 9 * HOUR, "08:00 UTC the next morning");
    // Not before the end.
    h.clock.advance(Duration::from_millis((8 * HOUR) as u64));
    h.timers_settled().await;
    assert_eq!(h.of_kind(K::PriceDrop).await.len(), 1);
    h.clock.advance(Duration::from_millis((HOUR) as u64));
    h.timers_settled().await;
    let all = h.wait_for(K::PriceDrop, 2).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].user_id, "near");
    assert!(h.pending_timers().await.iter().all(|(m, _)| !m.starts_with("deliver|")));
}

fn utc(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

/// Price drops for three users at `start` (UTC): `zoned` sets Europe/Berlin in their preferences,
/// `default` sets nothing (the tenant's `default_time_zone` is Europe/Berlin), `fixed` sets the
/// fixed offset +00:00. Returns the harness, the users notified at once and the deferred timers.
async fn berlin_night(start: i64) -> (Harness, Vec<String>, Vec<(String, i64)>) {
    let mut h = Harness::start(start, |c| {
        c.notification.defaults.policy.default_time_zone = "Europe/Berlin".into();
    })
    .await;
    let zoned = Preferences { time_zone: Some("Europe/Berlin".into()), ..Preferences::default() };
    prefs::write(&*h.store, &tenant(), &UserId::parse("zoned").unwrap(), &zoned).await.unwrap();
    let fixed = Preferences { utc_offset_min: Some(0), ..Preferences::default() };
    prefs::write(&*h.store, &tenant(), &UserId::parse("fixed").unwrap(), &fixed).await.unwrap();
    let t0 = start - HOUR;
    h.price("p", 1000, t0).await;
    for (i, user) in ["zoned", "default", "fixed"].into_iter().enumerate() {
        h.view(user, "p", t0 + 1 + i as i64).await;
    }
    h.price("p", 500, t0 + 10).await;
    h.status("fixed", "o1", shopmind_domain::OrderStatus::Shipped, t0 + 11).await; // not a quiet kind
    h.caught_up().await;
    h.wait_for(K::OrderStatus, 1).await;
    let sent = h.of_kind(K::PriceDrop).await.into_iter().map(|n| n.user_id).collect();
    let deferred = h.pending_timers().await.into_iter().filter(|(m, _)| m.starts_with("deliver|")).collect();
    (h, sent, deferred)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quiet_hours_in_an_iana_time_zone_follow_daylight_saving_time() {
    // 21:30 UTC in summer is 23:30 CEST: quiet (22-08) in Berlin until 08:00 CEST = 06:00 UTC.
    let (h, mut sent, deferred) = berlin_night(utc("2026-07-15T21:30:00Z")).await;
    h.wait_for(K::PriceDrop, 1).await;
    assert_eq!(sent, ["fixed"], "21:30 at +00:00 is not quiet");
    let due: Vec<i64> = deferred.iter().map(|(_, at)| *at).collect();
    assert_eq!(due, [utc("2026-07-16T06:00:00Z"); 2], "{deferred:?}");
    // Delivered once at the end of the quiet hours, local time.
    h.clock.set(shopmind_domain::UnixMillis(utc("2026-07-16T05:59:00Z")));
    h.timers_settled().await;
    assert_eq!(h.of_kind(K::PriceDrop).await.len(), 1, "not before 08:00 CEST");
    h.clock.set(shopmind_domain::UnixMillis(utc("2026-07-16T06:00:00Z")));
    h.timers_settled().await;
    let all = h.wait_for(K::PriceDrop, 3).await;
    sent = all.into_iter().map(|n| n.user_id).collect();
    sent.sort();
    assert_eq!(sent, ["default", "fixed", "zoned"]);
    assert!(h.pending_timers().await.iter().all(|(m, _)| !m.starts_with("deliver|")));

    // The same 21:30 UTC in winter is 22:30 CET: quiet until 08:00 CET = 07:00 UTC.
    let (_h, sent, deferred) = berlin_night(utc("2026-01-15T21:30:00Z")).await;
    assert_eq!(sent, ["fixed"]);
    let due: Vec<i64> = deferred.iter().map(|(_, at)| *at).collect();
    assert_eq!(due, [utc("2026-01-16T07:00:00Z"); 2], "{deferred:?}");

    // 20:30 UTC: 22:30 CEST in summer (deferred), 21:30 CET in winter (sent at once).
    let (_h, sent, deferred) = berlin_night(utc("2026-07-15T20:30:00Z")).await;
    assert_eq!((sent.len(), deferred.len()), (1, 2), "{sent:?} {deferred:?}");
    let (h, _, deferred) = berlin_night(utc("2026-01-15T20:30:00Z")).await;
    let mut sent: Vec<String> = h.wait_for(K::PriceDrop, 3).await.into_iter().map(|n| n.user_id).collect();
    sent.sort();
    assert_eq!(sent, ["default", "fixed", "zoned"]);
    assert!(deferred.is_empty(), "{deferred:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn opt_outs_remove_a_users_channels() {
    let mut h = Harness::start(noon(), |c| {
        c.notification.defaults.webhooks = vec![WebhookEndpoint {
            name: "crm".into(),
            url: "http://127.0.0.1:9/never".into(),
            secret: "s".into(),
            audiences: vec!["merchant".into()],
            kinds: vec![],
        }];
        c.notification.defaults.webhooks[0].audiences = vec!["customer".into()];
        c.notification.webhook.max_attempts = 1000;
    })
    .await;
    let set = |u: &str, out: Vec<Channel>| {
        let (store, u) = (h.store.clone(), UserId::parse(u).unwrap());
        async move {
            prefs::write(&*store, &tenant(), &u, &Preferences { opted_out: out, ..Preferences::default() })
                .await
                .unwrap()
        }
    };
    set("no_stream", vec![Channel::Stream]).await;
    set("nothing", vec![Channel::Stream, Channel::Webhook]).await;
    let t0 = h.now() - HOUR;
    for (i, u) in ["all", "no_stream", "nothing"].into_iter().enumerate() {
        h.status(u, &format!("o{i}"), shopmind_domain::OrderStatus::Shipped, t0 + i as i64).await;
    }
    h.caught_up().await;
    let streamed = h.wait_for(K::OrderStatus, 1).await;
    assert_eq!(streamed.iter().map(|n| n.user_id.as_str()).collect::<Vec<_>>(), ["all"]);
    let hooked = read_stream(&*h.bus, WEBHOOKS_STREAM).await;
    let mut users: Vec<_> = hooked.iter().map(|(s, n)| (s.clone(), n.user_id.clone())).collect();
    users.sort();
    assert_eq!(
        users,
        [
            ("sm.webhook.acme.crm".to_string(), "all".to_string()),
            ("sm.webhook.acme.crm".to_string(), "no_stream".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_during_a_pending_timer_still_fires_it_exactly_once() {
    let start = noon();
    let mut h = Harness::start(start, |c| c.notification.defaults.rules.cart_abandonment.idle_s = 600).await;
    h.view("u1", "a", start - 2).await;
    h.cart("u1", "a", start - 1).await;
    h.cart("u1", "b", start).await;
    h.caught_up().await;
    assert_eq!(h.pending_timers().await.len(), 2);
    // The service goes down with the timers pending, and time passes.
    h.stop_notification().await;
    h.clock.advance(Duration::from_secs(3600));
    // Two replicas come up and race for the due timers.
    h.start_notification();
    let first = h.notifier.clone();
    h.start_notification();
    h.timers_settled().await;
    let found = h.wait_for(K::CartAbandoned, 1).await;
    assert_eq!(found.len(), 1);
    // A timer checked again (as after a crash between publishing and removing it) publishes the
    // same id: still one.
    let again = shopmind_notification::rules::check_cart_idle(&first, &tenant(), "u1", start).await.unwrap();
    assert_eq!(again, shopmind_notification::rules::Checked::Fired);
    assert_eq!(h.of_kind(K::CartAbandoned).await.len(), 1);
    assert!(h.pending_timers().await.is_empty());
}
