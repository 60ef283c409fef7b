//! Training data from a simulated shop, built through the production feature code, and what the
//! models learn from it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use shopmind_domain::{Event, ItemId, TenantId, ValidationPolicy};
use shopmind_evaluation::metrics::roc_auc;
use shopmind_features::purchase_intent::{FEATURE_NAMES, purchase_intent_features};
use shopmind_features::{
    FeatureSettings, apply_event, read_item_features, read_session_features, read_user_features,
};
use shopmind_simulator::{DAY_MS, SimConfig, Simulator};
use shopmind_store::MemoryStore;
use shopmind_trainer::purchase_intent::{self, PurchaseIntentSample, SampleOptions};
use shopmind_training::PurchaseIntentConfig;
use shopmind_training::demand;

fn events(cfg: SimConfig) -> Vec<Event> {
    let policy = ValidationPolicy::stored();
    Simulator::new(cfg).unwrap().map(|w| Event::from_proto(&w, None, &policy).unwrap()).collect()
}

fn small_shop(seed: u64, users: usize, days: u32) -> SimConfig {
    SimConfig { seed, users, items: 120, categories: 6, days, ..SimConfig::default() }
}

#[tokio::test]
async fn demand_from_events_is_what_the_feature_store_holds() {
    let evs = events(small_shop(3, 150, 10));
    let data = demand::demand_from_events(&evs);
    assert!(data.series.len() > 20, "{} items sold", data.series.len());
    assert_eq!(data.end_day - data.first_day, 10);

    let store = MemoryStore::new();
    let settings = FeatureSettings::default();
    for e in &evs {
        apply_event(&store, e, &settings).await.unwrap();
    }
    let tenant = TenantId::parse("sim").unwrap();
    for s in &data.series {
        let item = ItemId::parse(s.item.as_str()).unwrap();
        let f = read_item_features(&store, &tenant, &item, 0, evs.last().unwrap().occurred_at).await.unwrap();
        assert_eq!(f.demand, s.days, "{}", s.item);
    }
}

#[tokio::test]
async fn samples_are_cut_before_the_order_and_read_back_at_the_cut() {
    let evs = events(small_shop(5, 150, 7));
    let opts = SampleOptions { seed: 9, ..SampleOptions::default() };
    let mut applied = 0u64;
    let samples = purchase_intent::build_samples(&evs, &opts, &mut |n| applied += n).await.unwrap();
    assert_eq!(applied, evs.len() as u64);

    // One sample per session; labels are the sessions' orders.
    let mut sessions: BTreeMap<String, (bool, i64)> = BTreeMap::new();
    for e in &evs {
        if let Some(s) = &e.session {
            let entry = sessions.entry(s.to_string()).or_insert((false, i64::MAX));
            if e.kind() == shopmind_domain::EventKind::OrderPlaced {
                entry.0 = true;
                entry.1 = entry.1.min(e.occurred_at.0);
            }
        }
    }
    assert_eq!(samples.len(), sessions.len());
    let positives = samples.iter().filter(|s| s.label).count();
    assert_eq!(positives, sessions.values().filter(|(ordered, _)| *ordered).count());
    assert!(positives > 10 && positives < samples.len() / 2, "{positives} of {}", samples.len());
    for s in &samples {
        let (ordered, order_ms) = sessions[&s.session];
        assert_eq!(s.label, ordered);
        assert!(s.cut_ms >= s.started_ms && s.cut_ms <= order_ms.min(s.ended_ms), "{s:?}");
        // Cut before the order: no session has ordered at its cut, and views are counted.
        assert!(s.features[0] > 0.0 || s.features[3] > 0.0, "a cut session has seen a view or a search");
    }
    // The same features are what the serving reads return at the cut time, replaying the
    // events up to it into another store (checked where one event alone has that time).
    let mut by_ms: BTreeMap<i64, usize> = BTreeMap::new();
    for e in &evs {
        *by_ms.entry(e.occurred_at.0).or_default() += 1;
    }
    let mut checks: Vec<&PurchaseIntentSample> =
        samples.iter().filter(|s| by_ms[&s.cut_ms] == 1).step_by(7).take(40).collect();
    checks.sort_by_key(|s| s.cut_ms);
    assert!(checks.len() >= 20);
    let store = MemoryStore::new();
    let settings = FeatureSettings::default();
    let mut next = 0;
    let tenant = TenantId::parse("sim").unwrap();
    for sample in checks {
        while next < evs.len() && evs[next].occurred_at.0 <= sample.cut_ms {
            apply_event(&store, &evs[next], &settings).await.unwrap();
            next += 1;
        }
        let session = shopmind_domain::SessionId::parse(sample.session.as_str()).unwrap();
        let user = shopmind_domain::UserId::parse(sample.user.as_str()).unwrap();
        let now = shopmind_domain::UnixMillis(sample.cut_ms);
        let sf = read_session_features(&store, &tenant, &session).await.unwrap();
        let uf = read_user_features(&store, &tenant, &user, &settings, now).await.unwrap();
        assert_eq!(purchase_intent_features(&sf, &uf, now), sample.features, "{}", sample.session);
    }
}

#[tokio::test]
async fn the_intent_model_ranks_later_sessions_at_least_as_well_as_the_cart_rule() {
    let cfg = small_shop(11, 400, 14);
    let cutoff = cfg.start_ms + 10 * DAY_MS;
    let evs = events(cfg);
    let samples = purchase_intent::build_samples(&evs, &SampleOptions::default(), &mut |_| {}).await.unwrap();
    let train: Vec<_> = samples.iter().filter(|s| s.ended_ms < cutoff).cloned().collect();
    let test: Vec<_> = samples.iter().filter(|s| s.started_ms >= cutoff).collect();
    assert!(train.len() > 1000 && test.len() > 300, "{} / {}", train.len(), test.len());
    let model = purchase_intent::train(&train, &PurchaseIntentConfig::default()).unwrap();
    let labels: Vec<bool> = test.iter().map(|s| s.label).collect();
    let probs: Vec<f64> =
        test.iter().map(|s| f64::from(model.predict_row(&s.features).probability)).collect();
    let rule: Vec<f64> = test.iter().map(|s| f64::from(s.features[1] > 0.0)).collect();
    let (auc, rule_auc) = (roc_auc(&probs, &labels).unwrap(), roc_auc(&rule, &labels).unwrap());
    assert!(auc > 0.65, "model AUC {auc}");
    assert!(auc >= rule_auc - 0.01, "model {auc} vs rule {rule_auc}");
    // An open cart is what matters most in this shop.
    let top = model
        .weights
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .map(|(i, _)| FEATURE_NAMES[i])
        .unwrap();
    assert_eq!(top, "session_open_cart");
}
