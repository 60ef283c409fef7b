//! `shopmind.v1.Admin`: operator calls, forwarded like every unary call
//! ([`GatewayService::forward`]: tenant check, trace context, deadline, service errors mapped
//! once).
//!
//! `EraseCustomer` goes to `sm.rpc.<tenant>.feature.erase`, served by the feature service, which
//! holds the store (`shopmind_feature::erase`, docs/PRIVACY.md).
//!
//! Access: this service must only be reachable with an admin credential. The gateway's API-key
//! layer guards it (admin keys); until that layer is in place, expose the gateway's port to
//! operators only.

use std::sync::Arc;

use shopmind_bus::Bus;
use shopmind_config::Config;
use shopmind_metrics::GatewayMethod;
use shopmind_proto::v1 as pb;
use shopmind_runtime::Shutdown;
use shopmind_runtime::rpc::methods;
use tonic::{Request, Response, Status};

use crate::{GatewayError, GatewayService};

/// The `Admin` service implementation.
pub struct AdminService {
    gateway: GatewayService,
}

impl AdminService {
    pub fn new(config: &Config, bus: Arc<dyn Bus>, shutdown: Shutdown) -> Self {
        Self { gateway: GatewayService::new(config, bus, shutdown) }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn erase_customer(
        &self,
        request: Request<pb::EraseCustomerRequest>,
    ) -> Result<Response<pb::EraseCustomerResponse>, Status> {
        self.gateway
            .forward(methods::Erase, GatewayMethod::EraseCustomer, request, |req| {
                if req.user_id.is_empty() {
                    return Err(GatewayError::invalid("user_id", "must not be empty"));
                }
                shopmind_domain::UserId::parse(req.user_id.clone())
                    .map(drop)
                    .map_err(|e| GatewayError::invalid("user_id", e.to_string()))
            })
            .await
    }
}
