//! The service-to-service methods: one declaration each, naming the service that answers it, its
//! part of the subject, the request, the response and the reply message that carries either.
//! Callers use them with [`super::call`], services with [`super::Server::serve`].

use shopmind_domain::TenantId;
use shopmind_proto::v1 as pb;

use crate::topology;

/// A request-reply method, answered by [`Method::SERVICE`] on
/// `sm.rpc.<tenant>.<SERVICE>.<NAME>`.
pub trait Method: Send + Sync + 'static {
    /// The service that answers, also its queue group.
    const SERVICE: &'static str;
    /// The method's part of the subject.
    const NAME: &'static str;
    /// The request's message name, e.g. "RecommendRequest".
    const REQUEST: &'static str;
    type Request: prost::Message + Default + Send + 'static;
    type Response: Send + 'static;
    /// The message of the answer: the response or a `ServiceError`.
    type Reply: prost::Message + Default;

    /// The tenant the request names.
    fn tenant(request: &Self::Request) -> &str;
    /// The request's field holding a customer id as the system stores it (the pseudonym, for
    /// tenants that pseudonymise customer ids), if it has one: a caller holding the shop's id
    /// maps it first. `None` also for a request that takes the shop's id (erasure).
    fn stored_customer(request: &mut Self::Request) -> Option<&mut String>;
    fn reply(result: Result<Self::Response, pb::ServiceError>) -> Self::Reply;
    /// What a reply carries; `None` for an empty one.
    fn into_result(reply: Self::Reply) -> Option<Result<Self::Response, pb::ServiceError>>;

    /// Where a tenant's requests go.
    fn subject(tenant: &TenantId) -> String {
        topology::rpc_subject(tenant, Self::SERVICE, Self::NAME)
    }
}

macro_rules! methods {
    (@customer $req:ident $field:ident) => {
        Some(&mut $req.$field)
    };
    (@customer $req:ident) => {{
        let _ = $req;
        None
    }};
    ($(
        $(#[$doc:meta])*
        $name:ident = $service:ident.$method:ident($request:ident) -> $response:ident
            in $reply:ident($module:ident) $(, customer: $field:ident)?;
    )*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl Method for $name {
            const SERVICE: &'static str = stringify!($service);
            const NAME: &'static str = stringify!($method);
            const REQUEST: &'static str = stringify!($request);
            type Request = pb::$request;
            type Response = pb::$response;
            type Reply = pb::$reply;

            fn tenant(request: &pb::$request) -> &str {
                &request.tenant
            }

            fn stored_customer(request: &mut pb::$request) -> Option<&mut String> {
                methods!(@customer request $($field)?)
            }

            fn reply(result: Result<pb::$response, pb::ServiceError>) -> pb::$reply {
                pb::$reply {
                    result: Some(match result {
                        Ok(ok) => pb::$module::Result::Ok(ok),
                        Err(e) => pb::$module::Result::Error(e),
                    }),
                }
            }

            fn into_result(reply: pb::$reply) -> Option<Result<pb::$response, pb::ServiceError>> {
                match reply.result? {
                    pb::$module::Result::Ok(ok) => Some(Ok(ok)),
                    pb::$module::Result::Error(e) => Some(Err(e)),
                }
            }
        }
    )*};
}

methods! {
    /// gateway → inference: recommendations for a scenario (docs/RECOMMEND.md).
    Recommend = inference.recommend(RecommendRequest) -> RecommendResponse
        in RecommendReply(recommend_reply), customer: user_id;
    /// gateway, notification → inference: a user's or session's purchase intent.
    Intent = inference.intent(IntentRequest) -> IntentResponse
        in IntentReply(intent_reply), customer: user_id;
    /// gateway, notification → inference: the demand forecast of items.
    Forecast = inference.forecast(ForecastRequest) -> ForecastResponse
        in ForecastReply(forecast_reply);
    /// gateway → inference: a customer's profile (docs/PROFILES.md).
    Profile = inference.profile(GetCustomerProfileRequest) -> CustomerProfile
        in ProfileReply(profile_reply), customer: user_id;
    /// gateway → inference: a customer-service turn (docs/ASSISTANT.md).
    Assist = inference.assist(AssistRequest) -> AssistResponse
        in AssistReply(assist_reply), customer: user_id;
    /// gateway → inference: the support agents' figures over a period.
    AgentReport = inference.agent_report(GetAgentReportRequest) -> AgentReport
        in AgentReportReply(agent_report_reply);
    /// inference (the assistant) → notification: hand a conversation over to the agents.
    Escalate = notification.escalate(EscalateRequest) -> EscalateResponse
        in EscalateReply(escalate_reply);
    /// gateway → feature: erase a customer (docs/PRIVACY.md). It takes the shop's id: the
    /// feature service also looks for raw intake messages.
    Erase = feature.erase(EraseCustomerRequest) -> EraseCustomerResponse
        in EraseReply(erase_reply);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_names_its_subject_and_carries_either_answer() {
        let tenant = TenantId::parse("acme").expect("valid");
        assert_eq!(Recommend::subject(&tenant), "sm.rpc.acme.inference.recommend");
        assert_eq!(AgentReport::subject(&tenant), "sm.rpc.acme.inference.agent_report");
        assert_eq!(Erase::subject(&tenant), "sm.rpc.acme.feature.erase");
        assert_eq!(Escalate::REQUEST, "EscalateRequest");

        let ok = pb::IntentResponse { probability: 0.5, ..Default::default() };
        let reply = Intent::reply(Ok(ok.clone()));
        assert_eq!(Intent::into_result(reply), Some(Ok(ok)));
        let e = pb::ServiceError { code: 2, message: "no model".into(), violations: Vec::new() };
        assert_eq!(Intent::into_result(Intent::reply(Err(e.clone()))), Some(Err(e)));
        assert_eq!(Intent::into_result(pb::IntentReply { result: None }), None);

        let mut req = pb::RecommendRequest { user_id: "alice".into(), ..Default::default() };
        assert_eq!(Recommend::stored_customer(&mut req).map(|u| u.as_str()), Some("alice"));
        let mut erase = pb::EraseCustomerRequest { user_id: "alice".into(), ..Default::default() };
        assert!(Erase::stored_customer(&mut erase).is_none(), "erasure takes the shop's id");
    }
}
