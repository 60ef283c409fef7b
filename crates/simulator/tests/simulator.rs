#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};

use shopmind_domain::{Event, UnixMillis, ValidationPolicy};
use shopmind_proto::v1 as pb;
use shopmind_simulator::{DAY_MS, SimConfig, Simulator};

use pb::event::Payload as P;

fn at_ms(e: &pb::Event) -> i64 {
    UnixMillis::from_proto(e.occurred_at.as_ref().unwrap()).0
}

fn run(cfg: SimConfig) -> (Simulator, Vec<pb::Event>) {
    let mut sim = Simulator::new(cfg).unwrap();
    let events: Vec<pb::Event> = sim.by_ref().collect();
    (sim, events)
}

fn small() -> SimConfig {
    SimConfig { users: 150, items: 100, days: 10, ..SimConfig::default() }
}

/// One simulation whose events are checked by several tests.
fn standard() -> &'static (Simulator, Vec<pb::Event>) {
    static RUN: std::sync::OnceLock<(Simulator, Vec<pb::Event>)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| run(SimConfig { users: 400, items: 300, days: 28, ..SimConfig::default() }))
}

/// Sessions (distinct session ids) per day, with every session one view and nothing else.
fn sessions_per_day(cfg: SimConfig) -> Vec<u64> {
    let cfg = SimConfig {
        users: 1_500,
        mean_views_per_session: 1.0,
        search_prob: 0.0,
        cart_prob: 0.0,
        category_drift_per_week: 0.0,
        ..cfg
    };
    let (start, days) = (cfg.start_ms, cfg.days as usize);
    let mut per_day = vec![0u64; days];
    let mut sim = Simulator::new(cfg).unwrap();
    for e in sim.by_ref() {
        if matches!(e.payload, Some(P::ProductViewed(_))) {
            per_day[((at_ms(&e) - start) / DAY_MS) as usize] += 1;
        }
    }
    assert_eq!(per_day.iter().sum::<u64>(), sim.stats().sessions);
    per_day
}

#[test]
fn the_same_seed_gives_the_same_events_and_another_seed_others() {
    let (_, a) = run(small());
    let (_, b) = run(small());
    assert!(a.len() > 1_000, "{}", a.len());
    assert_eq!(a, b);
    let (_, c) = run(SimConfig { seed: 7, ..small() });
    assert_ne!(a, c);
    // Ids differ between seeds, so two runs in one tenant are not deduplicated into one.
    let ids: HashSet<&str> = a.iter().map(|e| e.event_id.as_str()).collect();
    assert!(c.iter().all(|e| !ids.contains(e.event_id.as_str())));
}

#[test]
fn every_event_is_valid_unique_and_in_time_order() {
    let (sim, events) = standard();
    let cfg = sim.config();
    let policy = ValidationPolicy::stored();
    let mut ids = HashSet::new();
    let mut last = i64::MIN;
    let mut kinds = HashSet::new();
    for e in events {
        let ev = Event::from_proto(e, None, &policy).unwrap_or_else(|v| panic!("{v}: {e:?}"));
        assert_eq!(ev.tenant.as_str(), cfg.tenant);
        assert!(ids.insert(e.event_id.clone()), "duplicate id {}", e.event_id);
        let t = at_ms(e);
        assert!(t >= last, "{} goes back in time", e.event_id);
        assert!((cfg.start_ms..cfg.end_ms()).contains(&t));
        last = t;
        let in_session = matches!(
            e.payload,
            Some(P::ProductViewed(_) | P::AddedToCart(_) | P::RemovedFromCart(_) | P::SearchPerformed(_))
                | Some(P::OrderPlaced(_))
        );
        assert_eq!(!e.session_id.is_empty(), in_session, "{e:?}");
        kinds.insert(ev.kind());
    }
    assert_eq!(kinds.len(), 9, "every kind of event occurs: {kinds:?}");
    assert_eq!(sim.stats().events, events.len() as u64);
    // The catalog comes first.
    let items = sim.catalog().len();
    assert!(events[..items].iter().all(|e| matches!(e.payload, Some(P::ItemUpserted(_)))));
    assert!(events[items..2 * items].iter().all(|e| matches!(e.payload, Some(P::InventoryChanged(_)))));
}

#[test]
fn the_funnel_narrows_and_carts_are_abandoned() {
    let (sim, events) = standard();
    let s = sim.stats();
    let count =
        |f: fn(&P) -> bool| events.iter().filter(|e| e.payload.as_ref().is_some_and(f)).count() as u64;
    assert_eq!(count(|p| matches!(p, P::ProductViewed(_))), s.views);
    assert_eq!(count(|p| matches!(p, P::AddedToCart(_))), s.carts);
    assert_eq!(count(|p| matches!(p, P::RemovedFromCart(_))), s.cart_removals);
    assert_eq!(count(|p| matches!(p, P::OrderPlaced(_))), s.orders);
    assert_eq!(count(|p| matches!(p, P::SearchPerformed(_))), s.searches);
    assert_eq!(count(|p| matches!(p, P::SupportMessage(_))), s.support_messages);
    assert!(s.sessions < s.views, "{s:?}");
    assert!(s.views > 3 * s.carts && s.carts > s.orders && s.orders > 0, "{s:?}");
    assert!(s.abandoned_carts > 0 && s.cart_removals > 0 && s.searches > 0, "{s:?}");
    // Every session that ends with items in its cart either orders or abandons them (bar a few
    // cut off at the end of the simulation).
    let mut carts: HashMap<&str, HashSet<&str>> = HashMap::new();
    for e in events {
        match &e.payload {
            Some(P::AddedToCart(c)) => {
                carts.entry(&e.session_id).or_default().insert(&c.item_id);
            }
            Some(P::RemovedFromCart(c)) => {
                assert!(carts.entry(&e.session_id).or_default().remove(c.item_id.as_str()), "{e:?}");
            }
            _ => {}
        }
    }
    let open = carts.values().filter(|c| !c.is_empty()).count() as u64;
    let closed = s.orders + s.abandoned_carts;
    assert!(closed <= open && open <= closed + 10, "{open} carts, {closed} ordered or abandoned");
}

#[test]
fn weekends_are_busier_by_the_configured_amplitude() {
    let cfg = SimConfig { days: 56, weekend_amplitude: 0.5, trend_per_week: 0.0, ..SimConfig::default() };
    let per_day = sessions_per_day(cfg);
    // The default start is a Monday: days 5 and 6 of each week are the weekend.
    let (mut weekend, mut weekday) = (0.0, 0.0);
    for (d, n) in per_day.iter().enumerate() {
        if d % 7 >= 5 {
            weekend += *n as f64 / 16.0;
        } else {
            weekday += *n as f64 / 40.0;
        }
    }
    let ratio = weekend / weekday;
    assert!((1.4..1.6).contains(&ratio), "weekend/weekday = {ratio:.3}");
    // And without seasonality, they are not.
    let flat = sessions_per_day(SimConfig {
        days: 28,
        weekend_amplitude: 0.0,
        trend_per_week: 0.0,
        ..SimConfig::default()
    });
    let we: u64 = flat.iter().enumerate().filter(|(d, _)| d % 7 >= 5).map(|(_, n)| n).sum();
    let wd: u64 = flat.iter().enumerate().filter(|(d, _)| d % 7 < 5).map(|(_, n)| n).sum();
    let ratio = (we as f64 / 8.0) / (wd as f64 / 20.0);
    assert!((0.9..1.1).contains(&ratio), "flat weekend/weekday = {ratio:.3}");
}

#[test]
fn demand_grows_with_the_trend() {
    let cfg = SimConfig { days: 56, weekend_amplitude: 0.0, trend_per_week: 0.1, ..SimConfig::default() };
    let per_day = sessions_per_day(cfg);
    let weeks: Vec<u64> = per_day.chunks(7).map(|w| w.iter().sum()).collect();
    let growth = weeks[7] as f64 / weeks[0] as f64;
    // 1.1^7 = 1.95.
    assert!((1.7..2.2).contains(&growth), "week 8 / week 1 = {growth:.3} ({weeks:?})");
}

#[test]
fn stock_never_goes_negative_and_runs_out_and_is_restocked() {
    let cfg = SimConfig {
        users: 300,
        items: 30,
        categories: 3,
        days: 21,
        mean_initial_stock: 3,
        restock_lead_days: 2.0,
        ..SimConfig::default()
    };
    let (sim, events) = run(cfg);
    let mut stock: HashMap<&str, i64> = HashMap::new();
    let (mut zeroed, mut refilled) = (0u64, 0u64);
    for e in &events {
        match &e.payload {
            Some(P::InventoryChanged(c)) => {
                let before = stock.insert(&c.item_id, c.quantity_available);
                match before {
                    // Sold out: announced right after the order that took the last unit.
                    Some(b) if c.quantity_available == 0 => {
                        assert_eq!(b, 0, "{} announced sold out with {b} left", c.item_id);
                        zeroed += 1;
                    }
                    Some(0) if c.quantity_available > 0 => refilled += 1,
                    _ => {}
                }
            }
            Some(P::OrderPlaced(o)) => {
                for l in &o.lines {
                    let s = stock.get_mut(l.item_id.as_str()).unwrap();
                    *s -= i64::from(l.quantity);
                    assert!(*s >= 0, "{} oversold in {}", l.item_id, o.order_id);
                }
            }
            Some(P::AddedToCart(c)) => {
                assert!(stock[c.item_id.as_str()] > 0, "sold-out {} added to a cart", c.item_id)
            }
            _ => {}
        }
    }
    let s = sim.stats();
    assert!(s.stockouts >= 3 && s.restocks >= 3, "{s:?}");
    assert_eq!(zeroed, s.stockouts);
    assert!(refilled >= 1 && refilled <= s.restocks + s.cancellations, "{refilled} refills, {s:?}");
}

#[test]
fn order_statuses_follow_a_legal_flow() {
    use pb::OrderStatus as S;
    let (sim, events) = standard();
    let mut state: HashMap<&str, (S, &str)> = HashMap::new();
    let mut seen = HashSet::new();
    for e in events {
        match &e.payload {
            Some(P::OrderPlaced(o)) => {
                assert!(state.insert(&o.order_id, (S::Placed, &e.user_id)).is_none(), "{} twice", o.order_id);
            }
            Some(P::OrderStatusChanged(c)) => {
                let to = S::try_from(c.status).unwrap();
                let (from, user) = state.get_mut(c.order_id.as_str()).expect("status of an unknown order");
                let legal = matches!(
                    (*from, to),
                    (S::Placed, S::Paid | S::Cancelled)
                        | (S::Paid, S::Shipped | S::Cancelled)
                        | (S::Shipped, S::Delivered)
                        | (S::Delivered, S::Returned)
                        | (S::Returned, S::Refunded)
                );
                assert!(legal, "{}: {from:?} -> {to:?}", c.order_id);
                assert_eq!(*user, e.user_id);
                *from = to;
                seen.insert(to);
            }
            _ => {}
        }
    }
    for s in [S::Paid, S::Shipped, S::Delivered, S::Cancelled, S::Returned, S::Refunded] {
        assert!(seen.contains(&s), "no order reached {s:?}");
    }
    assert_eq!(state.len() as u64, sim.stats().orders);
}

#[test]
fn support_conversations_alternate_and_mention_the_customers_order() {
    let (sim, events) = standard();
    let mut orders_of: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut conversations: HashMap<&str, Vec<(&pb::Event, &pb::SupportMessage)>> = HashMap::new();
    for e in events {
        match &e.payload {
            Some(P::OrderPlaced(o)) => {
                orders_of.entry(&e.user_id).or_default().insert(&o.order_id);
            }
            Some(P::SupportMessage(m)) => conversations.entry(&m.conversation_id).or_default().push((e, m)),
            _ => {}
        }
    }
    assert!(conversations.len() >= 10, "{}", conversations.len());
    assert_eq!(conversations.len() as u64, sim.stats().support_conversations);
    let mut texts = HashSet::new();
    for msgs in conversations.values() {
        let user = msgs[0].0.user_id.as_str();
        for (k, (e, m)) in msgs.iter().enumerate() {
            assert_eq!(e.user_id, user);
            texts.insert(m.text.as_str());
            if k % 2 == 0 {
                assert_eq!(m.author_role, pb::AuthorRole::Customer as i32);
                assert!(m.author_id.is_empty());
            } else {
                assert_eq!(m.author_role, pb::AuthorRole::Agent as i32);
                assert!(m.author_id.starts_with("sim-agent-"), "{}", m.author_id);
            }
        }
        let opener = &msgs[0].1.text;
        assert!(
            orders_of.get(user).is_some_and(|os| os.iter().any(|o| opener.contains(*o))),
            "{opener:?} names none of {user}'s orders"
        );
    }
    assert!(texts.len() * 2 > sim.stats().support_messages as usize, "texts vary");
}

fn pearson(a: Vec<f64>, b: Vec<f64>) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt().max(f64::MIN_POSITIVE)
}

#[test]
fn users_view_what_they_like() {
    let (sim, events) = standard();
    let categories = sim.categories().len();
    let item_cat: HashMap<&str, usize> = sim.catalog().iter().map(|i| (i.id.as_str(), i.category)).collect();
    let user_index: HashMap<String, usize> =
        (0..sim.config().users).map(|u| (Simulator::user_id(u), u)).collect();
    let mut views = vec![vec![0u32; categories]; sim.config().users];
    for e in events {
        if let Some(P::ProductViewed(v)) = &e.payload {
            views[user_index[&e.user_id]][item_cat[v.item_id.as_str()]] += 1;
        }
    }
    let argmax = |xs: &mut dyn Iterator<Item = f64>| {
        xs.enumerate().fold((0, f64::MIN), |best, (i, x)| if x > best.1 { (i, x) } else { best }).0
    };
    let (mut agree, mut judged, mut corr_sum) = (0u32, 0u32, 0.0);
    let (mut clear, mut clear_agree) = (0u32, 0u32);
    for (u, v) in views.iter().enumerate() {
        if v.iter().sum::<u32>() < 15 {
            continue;
        }
        let taste = sim.user_taste(u);
        assert_eq!(taste.len(), categories);
        assert!((taste.iter().sum::<f32>() - 1.0).abs() < 1e-3);
        judged += 1;
        corr_sum +=
            pearson(taste.iter().map(|&t| f64::from(t)).collect(), v.iter().map(|&n| f64::from(n)).collect());
        let same =
            argmax(&mut taste.iter().map(|&t| f64::from(t))) == argmax(&mut v.iter().map(|&n| f64::from(n)));
        agree += u32::from(same);
        let mut sorted = taste.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if sorted[0] > 2.0 * sorted[1] {
            clear += 1;
            clear_agree += u32::from(same);
        }
    }
    let corr = corr_sum / judged as f64;
    assert!(judged >= 100, "{judged}");
    // Without tastes these would be about 1/12, 1/12 and 0.
    let share = |a: u32, n: u32| f64::from(a) / f64::from(n.max(1));
    assert!(share(agree, judged) > 0.6, "{agree}/{judged} users view their top category most");
    assert!(share(clear_agree, clear) > 0.85, "{clear_agree}/{clear} with a clear favourite view it most");
    assert!(corr > 0.8, "mean correlation of taste and views {corr:.3}");
    assert!(sim.user_taste(sim.config().users).is_empty());
}

#[test]
fn popular_items_are_viewed_more_and_prices_are_spread() {
    let (sim, events) = standard();
    let mut views: HashMap<&str, u32> = HashMap::new();
    for e in events {
        if let Some(P::ProductViewed(v)) = &e.payload {
            *views.entry(&v.item_id).or_default() += 1;
        }
    }
    let (mut top, mut tail) = (0u32, 0u32);
    for item in sim.catalog() {
        let n = views.get(item.id.as_str()).copied().unwrap_or(0);
        if item.popularity == 1.0 {
            top += n;
        } else if item.popularity < 0.1 {
            tail += n;
        }
        assert!(item.price_minor > 0 && item.category_path.len() == 2, "{item:?}");
    }
    let tops = sim.catalog().iter().filter(|i| i.popularity == 1.0).count() as u32;
    let tails = sim.catalog().iter().filter(|i| i.popularity < 0.1).count() as u32;
    assert!(top / tops > 5 * (tail / tails).max(1), "top {top}/{tops} vs tail {tail}/{tails}");
    let mut prices: Vec<i64> = sim.catalog().iter().map(|i| i.price_minor).collect();
    prices.sort();
    assert!(prices[prices.len() * 9 / 10] > 5 * prices[prices.len() / 10], "log-normal spread");
}

#[test]
fn a_long_stream_is_generated_lazily() {
    let cfg = SimConfig { users: 20_000, items: 2_000, days: 14, ..SimConfig::default() };
    let mut sim = Simulator::new(cfg).unwrap();
    let n = sim.by_ref().take(200_000).count();
    assert_eq!(n, 200_000);
    assert_eq!(sim.stats().events, 200_000);
    assert!(sim.next().is_some(), "more to come");
}

#[test]
fn items_that_start_sold_out_are_restocked_before_they_sell() {
    let cfg = SimConfig { users: 100, items: 20, categories: 4, days: 5, mean_initial_stock: 0, ..small() };
    let (sim, events) = run(cfg);
    let mut stock: HashMap<&str, i64> = HashMap::new();
    for e in &events {
        match &e.payload {
            Some(P::InventoryChanged(c)) => {
                stock.insert(&c.item_id, c.quantity_available);
            }
            Some(P::OrderPlaced(o)) => {
                for l in &o.lines {
                    let s = stock.get_mut(l.item_id.as_str()).unwrap();
                    *s -= i64::from(l.quantity);
                    assert!(*s >= 0, "{} oversold", l.item_id);
                }
            }
            _ => {}
        }
    }
    let s = sim.stats();
    assert!(s.restocks >= 15 && s.orders > 0, "{s:?}");
}
