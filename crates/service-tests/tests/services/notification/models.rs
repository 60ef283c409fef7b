//! The model-backed seams: with an intent model promoted and the inference service running (real
//! NATS, Redis, ONNX Runtime), a cart-abandonment notification carries the intent the inference
//! service's `intent` method answers; a tenant without a model gets the feature-based intent, and
//! the fallback is counted.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::common::{HOUR, Harness, noon, tenant};
use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_domain::{TenantId, UnixMillis, UserId};
use shopmind_features::UserFeatures;
use shopmind_features::purchase_intent::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use shopmind_notification::Seams;
use shopmind_notification::seams::HeuristicIntent;
use shopmind_onnx::TrainingStats;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::NotificationKind as K;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version, VersionInfo};
use shopmind_runtime::{Shutdown, topology};
use shopmind_testkit::eventually;
use shopmind_training::purchase_intent::PurchaseIntentModel;

const WAIT: Duration = Duration::from_secs(60);

fn intent_model() -> PurchaseIntentModel {
    PurchaseIntentModel {
        feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        mean: vec![0.0; N_FEATURES],
        scale: vec![1.0; N_FEATURES],
        weights: (0..N_FEATURES).map(|i| if i == 6 { 1.5 } else { 0.1 }).collect(),
        bias: -1.0,
        base_rate: 0.2,
        stats: TrainingStats { users: 1, interactions: 2, first_at_ms: 0, last_at_ms: 1 },
        iterations: 1,
    }
}

async fn ask_intent(bus: &dyn Bus, user: &str, at: i64) -> Option<pb::IntentResponse> {
    let req = pb::IntentRequest {
        tenant: "acme".into(),
        user_id: user.into(),
        at_unix_ms: at,
        ..Default::default()
    };
    let subject = topology::rpc_subject(&tenant(), "inference", "intent");
    let reply = bus.request(Message::new(subject, req.encode_to_vec()), Duration::from_secs(5)).await.ok()?;
    match pb::IntentReply::decode(reply.payload.as_ref()).ok()?.result? {
        pb::intent_reply::Result::Ok(ok) => Some(ok),
        pb::intent_reply::Result::Error(_) => None,
    }
}

fn fallbacks(reason: &str) -> u64 {
    let text = shopmind_metrics::global().encode().unwrap();
    let prefix = format!(r#"shopmind_notification_model_fallbacks_total{{seam="intent",reason="{reason}"}}"#);
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cart_abandonment_carries_the_intent_the_model_answers() {
    let mut h = Harness::start(noon(), |c| {
        let r = &mut c.notification.defaults.rules.cart_abandonment;
        r.idle_s = 600;
        r.min_intent = 0.0;
    })
    .await;
    assert!(h.config.notification.model_seams, "the model-backed seams are the default");

    // The inference service, and an intent model for the tenant.
    let bus = NatsBus::connect(&h.nats.url(), "models-test").await.unwrap();
    let registry: Arc<dyn ModelStore> = Arc::new(NatsModelStore::open(bus.client().clone()).await.unwrap());
    let model = intent_model();
    let bytes = model.to_onnx(&model.manifest("intent-v1", "acme", 1));
    let key = ModelKey::parse("acme", "intent").unwrap();
    let info = VersionInfo {
        key: key.clone(),
        version: Version::parse("intent-v1").unwrap(),
        kind: shopmind_training::purchase_intent::KIND.into(),
        created_at_ms: 1,
        items: 0,
        users: 1,
        interactions: 2,
        size: 0,
    };
    registry.put(info, Bytes::from(bytes)).await.unwrap();
    registry.promote(&key, &Version::parse("intent-v1").unwrap()).await.unwrap();
    let mut config = h.config.clone();
    config.nats.url = h.nats.url();
    let shutdown = Shutdown::new();
    let inference = tokio::spawn(shopmind_inference::run(
        config,
        Arc::new(bus.clone()),
        h.store.clone(),
        registry,
        shutdown.clone(),
    ));
    eventually(WAIT, "inference serves the intent model", || async {
        ask_intent(&bus, "nobody", h.now()).await.filter(|r| r.model_version == "intent-v1")
    })
    .await;

    // A tenant without a model: the feature-based intent, and a counted fallback.
    let seams = Seams::with_models(h.bus.clone(), h.store.clone(), 28, Duration::from_secs(5));
    let before = fallbacks("no_model");
    let mut features = UserFeatures::default();
    features.cart.insert(shopmind_domain::ItemId::parse("a").unwrap(), 1);
    let other = TenantId::parse("other").unwrap();
    let u = UserId::parse("u9").unwrap();
    let got = seams.intent.intent(&other, &u, &features, UnixMillis(h.now())).await.unwrap();
    assert_eq!(got, HeuristicIntent::score(&features));
    assert_eq!(fallbacks("no_model"), before + 1);

    // u1 leaves two items in the cart.
    let t0 = h.now() - HOUR;
    h.view("u1", "a", t0).await;
    h.cart("u1", "a", t0 + 1).await;
    h.cart("u1", "b", t0 + 2).await;
    h.caught_up().await;
    h.timers_settled().await;
    let found = h.wait_for(K::CartAbandoned, 1).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let answered = ask_intent(&bus, "u1", h.now()).await.unwrap();
    assert_eq!(found[0].data["intent"], format!("{:.2}", answered.probability), "{:?}", found[0].data);
    // Not the feature-based value (0.3 + 0.2 + 0.05).
    assert_ne!(found[0].data["intent"], "0.55");

    shutdown.trigger();
    tokio::time::timeout(WAIT, inference).await.unwrap().unwrap().unwrap();
}
