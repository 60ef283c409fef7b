//! PredictPurchaseIntent, ForecastDemand and GetCustomerProfile through the real gateway, with a
//! real inference service on real NATS, Redis and ONNX Runtime: invalid requests are
//! INVALID_ARGUMENT with `google.rpc.BadRequest` field violations, a tenant without a model gets
//! NOT_FOUND, promoted models answer (the same answer inference gives on the bus), and a client
//! deadline shorter than the work is DEADLINE_EXCEEDED at the client, with the deadline carried to
//! inference, which drops the expired request without working on it.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus};
use shopmind_config::Config;
use shopmind_domain::TenantId;
use shopmind_features::purchase_intent::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use shopmind_onnx::TrainingStats;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_registry::{ModelKey, ModelStore, NatsModelStore, Version};
use shopmind_runtime::{Shutdown, connect, topology};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use shopmind_training::demand::DemandModel;
use shopmind_training::purchase_intent::PurchaseIntentModel;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt;

const TENANT: &str = "edge-shop";
const WAIT: Duration = Duration::from_secs(60);

fn intent_model() -> PurchaseIntentModel {
    PurchaseIntentModel {
        feature_names: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        feature_schema_version: FEATURE_SCHEMA_VERSION,
        mean: vec![0.5; N_FEATURES],
        scale: vec![1.0; N_FEATURES],
        weights: (0..N_FEATURES).map(|i| (i as f32 - 7.0) / 5.0).collect(),
        bias: 0.3,
        base_rate: 0.2,
        stats: TrainingStats { users: 1, interactions: 2, first_at_ms: 0, last_at_ms: 1 },
        iterations: 1,
    }
}

/// The mean of the history for each of 14 days, +-1 unit.
fn demand_model() -> DemandModel {
    let (t, h) = (56, 14);
    DemandModel {
        history_days: t,
        horizon: h,
        weights: vec![0.0; t * h],
        weekday_terms: vec![1.0; 7 * h],
        lower_q: vec![-1.0; h],
        upper_q: vec![1.0; h],
        coverage: 0.8,
        stats: TrainingStats { users: 1, interactions: 1, first_at_ms: 0, last_at_ms: 1 },
    }
}

async fn put_and_promote(registry: &dyn ModelStore, model: &str, version: &str, bytes: Vec<u8>) {
    let m = shopmind_onnx::read_manifest(&bytes).unwrap();
    let info = shopmind_registry::VersionInfo {
        key: ModelKey::parse(TENANT, model).unwrap(),
        version: Version::parse(version).unwrap(),
        kind: m.kind,
        created_at_ms: m.created_at_ms,
        items: 0,
        users: m.stats.users,
        interactions: m.stats.interactions,
        size: 0,
    };
    registry.put(info, Bytes::from(bytes)).await.unwrap();
    registry
        .promote(&ModelKey::parse(TENANT, model).unwrap(), &Version::parse(version).unwrap())
        .await
        .unwrap();
}

struct Setup {
    bus: NatsBus,
    registry: Arc<dyn ModelStore>,
    client: GatewayClient<Channel>,
    shutdown: Shutdown,
    nats: NatsServer,
    _redis: RedisServer,
}

async fn setup() -> Setup {
    let nats = NatsServer::start();
    let redis = RedisServer::start();
    let bus = NatsBus::connect(&nats.url(), "edge-test").await.unwrap();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let registry: Arc<dyn ModelStore> = Arc::new(NatsModelStore::open(bus.client().clone()).await.unwrap());
    let mut config = Config::default();
    config.nats.url = nats.url();
    config.redis.url = redis.url();
    connect::ensure_streams(&bus, &config).await.unwrap();
    let shutdown = Shutdown::new();
    tokio::spawn(shopmind_inference::run(
        config.clone(),
        Arc::new(bus.clone()),
        store,
        registry.clone(),
        shutdown.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(shopmind_gateway::run(config, Arc::new(bus.clone()), listener, shutdown.clone()));
    let client = eventually(Duration::from_secs(10), "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { GatewayClient::connect(endpoint).await.ok() }
    })
    .await;
    // Inference is up once it answers (NOT_FOUND: no model yet) through the gateway.
    let probe = client.clone();
    eventually(WAIT, "inference answers through the gateway", || {
        let mut c = probe.clone();
        async move {
            let r = c.predict_purchase_intent(intent_request("shopper", "")).await;
            matches!(r, Err(s) if s.code() == Code::NotFound).then_some(())
        }
    })
    .await;
    Setup { bus, registry, client, shutdown, nats, _redis: redis }
}

fn intent_request(user: &str, session: &str) -> pb::IntentRequest {
    pb::IntentRequest {
        tenant: TENANT.into(),
        user_id: user.into(),
        session_id: session.into(),
        at_unix_ms: 0,
        top_features: 3,
    }
}

fn forecast_request(items: Vec<String>, horizon: u32) -> pb::ForecastRequest {
    pb::ForecastRequest { tenant: TENANT.into(), item_ids: items, horizon_days: horizon, at_unix_ms: 0 }
}

/// The field violations of an INVALID_ARGUMENT status.
fn violations(status: &Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let bad = status.get_details_bad_request().expect("a google.rpc.BadRequest detail");
    bad.field_violations.into_iter().map(|v| v.field).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_unknown_then_answered_by_the_promoted_models() {
    let mut s = setup().await;
    let c = &mut s.client;

    // INVALID_ARGUMENT, each naming its fields.
    let e = c.predict_purchase_intent(intent_request("", "")).await.unwrap_err();
    assert_eq!(violations(&e), ["user_id", "session_id"]);
    let e = c.forecast_demand(forecast_request(vec![], 7)).await.unwrap_err();
    assert_eq!(violations(&e), ["item_ids"]);
    let many: Vec<String> = (0..101).map(|i| format!("i{i}")).collect();
    let e = c.forecast_demand(forecast_request(many, 7)).await.unwrap_err();
    assert_eq!(violations(&e), ["item_ids"]);
    assert!(e.message().contains("101"), "{e:?}");
    let e = c
        .get_customer_profile(pb::GetCustomerProfileRequest { tenant: TENANT.into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(violations(&e), ["user_id"]);
    let e = c
        .predict_purchase_intent(pb::IntentRequest {
            tenant: "Not A Tenant".into(),
            ..intent_request("u", "")
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&e), ["tenant"]);

    // NOT_FOUND while the tenant has no model.
    let e = c.predict_purchase_intent(intent_request("shopper", "")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("intent"), "{e:?}");
    let e = c.forecast_demand(forecast_request(vec!["i1".into()], 7)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    // Models promoted: answers, equal to what inference answers on the bus.
    let m = intent_model();
    put_and_promote(&*s.registry, "intent", "intent-v1", m.to_onnx(&m.manifest("intent-v1", TENANT, 1)))
        .await;
    let d = demand_model();
    put_and_promote(&*s.registry, "demand", "demand-v1", d.to_onnx(&d.manifest("demand-v1", TENANT, 1)))
        .await;
    let got = eventually(WAIT, "intent answered by intent-v1", || {
        let mut c = c.clone();
        async move { c.predict_purchase_intent(intent_request("shopper", "")).await.ok() }
    })
    .await
    .into_inner();
    assert_eq!(got.model_version, "intent-v1");
    assert_eq!(got.top_features.len(), 3);
    let subject = topology::rpc_subject(&TenantId::parse(TENANT).unwrap(), "inference", "intent");
    let direct = s
        .bus
        .request(
            Message::new(subject, intent_request("shopper", "").encode_to_vec()),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    match pb::IntentReply::decode(direct.payload.as_ref()).unwrap().result.unwrap() {
        pb::intent_reply::Result::Ok(ok) => assert_eq!(ok, got),
        other => panic!("{other:?}"),
    }

    let f = eventually(WAIT, "forecast answered by demand-v1", || {
        let mut c = c.clone();
        async move { c.forecast_demand(forecast_request(vec!["i1".into(), "i2".into()], 7)).await.ok() }
    })
    .await
    .into_inner();
    assert_eq!((f.model_version.as_str(), f.model_horizon_days), ("demand-v1", 14));
    assert_eq!(f.items.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["i1", "i2"]);
    assert!(f.items.iter().all(|i| i.forecast.len() == 7 && i.lower.len() == 7 && i.upper.len() == 7));
    // Beyond the model's horizon.
    let e = c.forecast_demand(forecast_request(vec!["i1".into()], 15)).await.unwrap_err();
    assert_eq!(violations(&e), ["horizon_days"]);
    s.shutdown.trigger();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_ends_at_the_client_and_reaches_inference() {
    let mut s = setup().await;
    let expired_before = shopmind_metrics::global().rpc_expired_count();

    // NATS stops reading (SIGSTOP): the gateway's request to inference waits in the socket.
    let pid = s.nats.pid().to_string();
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success(), "kill {sig} {pid}");
    };
    signal("-STOP");
    // kill(2) returns before every thread of nats-server has stopped; a thread still running
    // could relay the request. Wait until each one is in the stopped state.
    let stopped = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
            tasks.flatten().all(|task| {
                std::fs::read_to_string(task.path().join("stat"))
                    .ok()
                    .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with(['T', 't'])))
                    .unwrap_or(false)
            })
        })
    };
    for _ in 0..200 {
        if stopped() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut request = Request::new(intent_request("shopper", ""));
    request.set_timeout(Duration::from_millis(300));
    let result = s.client.predict_purchase_intent(request).await;
    signal("-CONT");
    let e = result.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");

    // Once NATS runs again, inference receives the request with its deadline passed and answers
    // it without working on it.
    eventually(WAIT, "inference counted the expired request", || async {
        (shopmind_metrics::global().rpc_expired_count() > expired_before).then_some(())
    })
    .await;

    // With time enough, the same call is answered (NOT_FOUND: no model).
    let mut request = Request::new(intent_request("shopper", ""));
    request.set_timeout(Duration::from_secs(10));
    let e = s.client.predict_purchase_intent(request).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    s.shutdown.trigger();
}
