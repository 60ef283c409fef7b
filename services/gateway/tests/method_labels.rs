//! The `method` label of `shopmind_gateway_request_duration_seconds` is the contract's RPCs: the
//! values the metrics catalogue declares (and docs/METRICS.md lists) are the methods of the
//! `Gateway` and `Admin` services of `proto/shopmind/v1/gateway.proto`, in the proto's order, and
//! the running gateway records every one of them under that name.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use prost_types::FileDescriptorSet;
use shopmind_bus::{Bus, MemoryBus};
use shopmind_config::Config;
use shopmind_metrics::{CATALOGUE, GatewayMethod};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::admin_client::AdminClient;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::Shutdown;
use shopmind_testkit::eventually;
use tonic::Code;

/// The RPCs of the gateway's services, from the descriptors generated from the proto.
fn proto_methods() -> Vec<String> {
    let descriptors = FileDescriptorSet::decode(shopmind_proto::FILE_DESCRIPTOR_SET).unwrap();
    let file = descriptors.file.iter().find(|f| f.name() == "shopmind/v1/gateway.proto").unwrap();
    let services: Vec<&str> = file.service.iter().map(|s| s.name()).collect();
    assert_eq!(services, ["Gateway", "Admin"], "the gateway serves these services");
    file.service.iter().flat_map(|s| &s.method).map(|m| m.name().to_string()).collect()
}

#[test]
fn the_method_label_values_are_the_rpcs_of_the_proto() {
    let declared: Vec<String> = GatewayMethod::ALL.iter().map(|m| m.as_str().to_string()).collect();
    assert_eq!(declared, proto_methods());
    let spec = CATALOGUE.iter().find(|s| s.name == "shopmind_gateway_request_duration_seconds").unwrap();
    let method = spec.labels.iter().find(|l| l.name == "method").unwrap();
    assert_eq!(method.values, GatewayMethod::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_records_every_rpc_under_its_proto_name() {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(shopmind_gateway::run(Config::default(), bus, listener, shutdown.clone()));
    let channel = eventually(Duration::from_secs(10), "the gateway accepts connections", || {
        let endpoint = endpoint.clone();
        async move { tonic::transport::Endpoint::new(endpoint).unwrap().connect().await.ok() }
    })
    .await;
    let mut gateway = GatewayClient::new(channel.clone());
    let mut admin = AdminClient::new(channel);

    // One call of each RPC, all naming no tenant: refused as invalid (or, a stream without
    // events, answered), never reaching a service.
    let invalid = |code: Code| assert_eq!(code, Code::InvalidArgument);
    invalid(gateway.publish_events(pb::PublishEventsRequest::default()).await.unwrap_err().code());
    gateway.stream_events(tokio_stream::empty::<pb::Event>()).await.unwrap();
    invalid(gateway.recommend(pb::RecommendRequest::default()).await.unwrap_err().code());
    invalid(gateway.predict_purchase_intent(pb::IntentRequest::default()).await.unwrap_err().code());
    invalid(gateway.forecast_demand(pb::ForecastRequest::default()).await.unwrap_err().code());
    invalid(gateway.get_customer_profile(pb::GetCustomerProfileRequest::default()).await.unwrap_err().code());
    invalid(gateway.assist(pb::AssistRequest::default()).await.unwrap_err().code());
    invalid(gateway.get_agent_report(pb::GetAgentReportRequest::default()).await.unwrap_err().code());
    let notifications = gateway.stream_notifications(pb::StreamNotificationsRequest::default()).await;
    invalid(notifications.err().unwrap().code());
    invalid(admin.erase_customer(pb::EraseCustomerRequest::default()).await.unwrap_err().code());

    let text = shopmind_metrics::global().encode().unwrap();
    let prefix = "shopmind_gateway_request_duration_seconds_count{method=\"";
    let recorded: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|rest| rest.split('"').next().unwrap().to_string())
        .collect();
    assert_eq!(recorded, proto_methods().into_iter().collect::<BTreeSet<_>>(), "{text}");

    drop((gateway, admin));
    shutdown.trigger();
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap().unwrap();
}
