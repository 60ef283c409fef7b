//! A training round on real NATS (events stream, model registry) with `trainer.assistant.enabled`
//! trains the customer-service assistant's intent head per tenant, on the bundled labelled
//! messages plus the tenant's own file, and publishes it as `intent_head`; the artifact loads in
//! ONNX Runtime (`HeadModel::load`) and classifies the held-out messages at least as well as the
//! reported held-out accuracy. Without an encoder the head is skipped and the round succeeds.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use bytes::Bytes;
use prost::Message as _;
use shopmind_assistant::{
    BUILTIN_DATA, HeadModel, INTENTS, encode_all, evaluation::HELD_OUT_FRACTION, parse_examples,
    stratified_split,
};
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::{Event, EventId, ItemId, Payload, TenantId, UnixMillis, UserId};
use shopmind_encoder::{SentenceEncoder, default_model_dir};
use shopmind_registry::{INTENT_HEAD, ModelKey, ModelStore, NatsModelStore, Version};
use shopmind_runtime::{connect, topology};
use shopmind_serving::PoolOptions;
use shopmind_testkit::NatsServer;

async fn view(bus: &dyn Bus, tenant: &str, id: &str) {
    let event = Event {
        id: EventId::parse(id).unwrap(),
        tenant: TenantId::parse(tenant).unwrap(),
        occurred_at: UnixMillis(1_767_225_600_000),
        user: Some(UserId::parse("u1").unwrap()),
        session: None,
        payload: Payload::ProductViewed { item: ItemId::parse("i1").unwrap() },
    };
    let subject = topology::event_subject(&event.tenant, event.kind());
    bus.publish(Message::new(subject, Bytes::from(event.to_proto().encode_to_vec())), Some(id))
        .await
        .unwrap();
}

/// The tenant `beta`'s own labelled messages (German order-status and return questions).
const BETA_EXAMPLES: &str = r#"{"text": "wo ist meine bestellung", "intent": "order_status"}
{"text": "wann kommt mein paket an", "intent": "order_status"}
{"text": "meine bestellung ist noch nicht da", "intent": "order_status"}
{"text": "ich möchte den artikel zurückschicken", "intent": "return_request"}
{"text": "wie kann ich etwas zurückgeben", "intent": "return_request"}
{"text": "rücksendung für meine jacke bitte", "intent": "return_request"}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_publishes_each_tenants_intent_head_with_its_held_out_accuracy() {
    let library =
        shopmind_serving::default_library_path().expect("libonnxruntime.so not found; run scripts/setup.sh");
    shopmind_serving::init_runtime(&library).unwrap();
    let model_dir =
        default_model_dir().expect("all-MiniLM-L6-v2 not found in .cache/models; run scripts/setup.sh");
    let nats = NatsServer::start();
    let bus = NatsBus::connect(&nats.url(), "trainer-assistant-test").await.unwrap();
    let models = NatsModelStore::open(bus.client().clone()).await.unwrap();
    let examples_dir = tempfile::tempdir().unwrap();
    std::fs::write(examples_dir.path().join("beta.jsonl"), BETA_EXAMPLES).unwrap();

    let mut config = Config::default();
    config.nats.url = nats.url();
    config.trainer.embedding_epochs = 1;
    config.trainer.predictors = false;
    config.trainer.assistant.enabled = true;
    config.trainer.assistant.encoder_dir = model_dir.display().to_string();
    config.trainer.assistant.examples_dir = examples_dir.path().display().to_string();
    connect::ensure_streams(&bus, &config).await.unwrap();
    view(&bus, "alpha", "a1").await;
    view(&bus, "beta", "b1").await;

    let mut trainer = shopmind_trainer::Trainer::new();
    let trained = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    let heads: Vec<_> = trained.iter().filter(|m| m.model == INTENT_HEAD).collect();
    assert_eq!(heads.iter().map(|m| m.tenant.as_str()).collect::<Vec<_>>(), ["alpha", "beta"], "{trained:?}");
    let builtin = parse_examples(BUILTIN_DATA).unwrap();
    let own = parse_examples(BETA_EXAMPLES).unwrap();
    // The beta tenant's head learnt from its own messages as well.
    assert_eq!(heads[0].interactions, builtin.len() as u64);
    assert_eq!(heads[1].interactions, (builtin.len() + own.len()) as u64);

    let encoder_dir = tempfile::tempdir().unwrap();
    shopmind_encoder::import(&model_dir, encoder_dir.path(), "test", 0).unwrap();
    let encoder = SentenceEncoder::load_dir(encoder_dir.path(), 128, &PoolOptions::default()).unwrap();
    let alpha = heads[0];
    assert!(alpha.promoted);
    let accuracy = alpha.metrics["holdout_accuracy"];
    let centroid = alpha.metrics["holdout_accuracy_nearest_centroid"];
    assert!(accuracy > 0.8 && centroid > 0.0 && accuracy <= 1.0, "{:?}", alpha.metrics);
    let report = alpha.report.as_deref().unwrap();
    assert!(report.contains("Confusion matrix") && report.contains("nearest centroid"), "{report}");

    // The active version's artifact is an intent head that loads and classifies.
    let key = ModelKey::parse("alpha", INTENT_HEAD).unwrap();
    let active = models.active(&key).await.unwrap().unwrap();
    assert_eq!(active.version.as_str(), alpha.version);
    let bytes = models.get(&key, &Version::parse(alpha.version.clone()).unwrap()).await.unwrap();
    let head = HeadModel::load(&bytes, &PoolOptions::default()).unwrap();
    assert_eq!(head.labels(), INTENTS.map(String::from));
    assert_eq!(head.manifest().tenant, "alpha");
    assert_eq!(head.manifest().metrics["holdout_accuracy"], accuracy);
    let (_, held) = stratified_split(&builtin, HELD_OUT_FRACTION, config.trainer.assistant.seed);
    assert_eq!(alpha.metrics["holdout_messages"], held.len() as f64);
    let texts: Vec<&str> = held.iter().map(|&i| builtin[i].text.as_str()).collect();
    let embeddings = encode_all(&encoder, &texts, 64).await.unwrap();
    let probabilities = head.probabilities(&embeddings).await.unwrap();
    let correct = held
        .iter()
        .zip(&probabilities)
        .filter(|(i, p)| {
            let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
            INTENTS[best] == builtin[**i].intent
        })
        .count();
    // Published is the head trained on every message, these included: at least as accurate.
    assert!(correct as f64 / held.len() as f64 >= accuracy, "{correct} of {}", held.len());

    // beta's head knows beta's own phrasing.
    let key = ModelKey::parse("beta", INTENT_HEAD).unwrap();
    let beta = models.active(&key).await.unwrap().unwrap();
    let bytes = models.get(&key, &beta.version).await.unwrap();
    let head = HeadModel::load(&bytes, &PoolOptions::default()).unwrap();
    let e = encode_all(&encoder, &["wo ist meine bestellung"], 1).await.unwrap();
    let p = &head.probabilities(&e).await.unwrap()[0];
    let best = (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
    assert_eq!(INTENTS[best], "order_status");

    // Same messages: not trained again. A changed tenant file: only that tenant's head.
    view(&bus, "alpha", "a2").await;
    let again = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    assert!(again.iter().all(|m| m.model != INTENT_HEAD), "{again:?}");
    std::fs::write(
        examples_dir.path().join("alpha.jsonl"),
        r#"{"text": "yo where my stuff at", "intent": "order_status"}"#,
    )
    .unwrap();
    view(&bus, "alpha", "a3").await;
    let third = trainer.round(&config, &bus, &models, &|_, _| {}).await.unwrap();
    let retrained: Vec<&str> =
        third.iter().filter(|m| m.model == INTENT_HEAD).map(|m| m.tenant.as_str()).collect();
    assert_eq!(retrained, ["alpha"]);

    // No encoder: the head is skipped, the round still trains the recommender.
    let mut missing = config.clone();
    missing.trainer.assistant.encoder_dir = PathBuf::from("/nonexistent/encoder").display().to_string();
    view(&bus, "gamma", "g1").await;
    let fourth = shopmind_trainer::Trainer::new().round(&missing, &bus, &models, &|_, _| {}).await.unwrap();
    assert!(fourth.iter().all(|m| m.model != INTENT_HEAD), "{fourth:?}");
    assert!(fourth.iter().any(|m| m.tenant.as_str() == "gamma" && m.model == "recommender"));
}
