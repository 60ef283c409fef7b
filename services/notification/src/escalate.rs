//! `sm.rpc.<tenant>.notification.escalate`: the assistant (in inference) hands a conversation
//! over to the agents. The request becomes an [`Escalation`] with the transcript, the intent
//! history and the customer's profile, delivered by [`Notifier::escalate`] to the agents'
//! channel (audience `agents`, kind SUPPORT_ESCALATION) under the usual policies.

use std::sync::Arc;

use shopmind_bus::BusError;
use shopmind_domain::{ConversationId, TenantId, UserId};
use shopmind_proto::v1 as pb;
use shopmind_runtime::Shutdown;
use shopmind_runtime::rpc::{self, Incoming, WireError, methods};

use crate::{Escalation, NotificationError, Notifier};

/// Escalations one instance works on at the same time.
const CONCURRENCY: usize = 64;
/// Most transcript lines and intents taken from one request.
const MAX_LINES: usize = 200;

/// Answers escalation requests until `shutdown`.
pub async fn serve(n: Arc<Notifier>, shutdown: Shutdown) -> Result<(), BusError> {
    let server = rpc::Server::new(n.bus.clone(), shutdown);
    server.serve(methods::Escalate, CONCURRENCY, n, escalate, |_, _| {}).await
}

/// Checks a request; every problem is named.
pub fn validate(req: &pb::EscalateRequest) -> Result<Escalation, pb::ServiceError> {
    let mut violations = Vec::new();
    let tenant = TenantId::parse(req.tenant.clone())
        .map_err(|e| violations.push(("tenant".to_string(), e.to_string())))
        .ok();
    let user = UserId::parse(req.user_id.clone())
        .map_err(|e| violations.push(("user_id".into(), e.to_string())))
        .ok();
    let conversation = ConversationId::parse(req.conversation_id.clone())
        .map_err(|e| violations.push(("conversation_id".into(), e.to_string())))
        .ok();
    if req.reason.trim().is_empty() {
        violations.push(("reason".into(), "must not be empty".into()));
    }
    if req.cause.is_empty() || req.cause.len() > 128 {
        violations.push(("cause".into(), "must be 1-128 bytes".into()));
    }
    if req.transcript.len() > MAX_LINES || req.intents.len() > MAX_LINES {
        violations.push(("transcript".into(), format!("at most {MAX_LINES} lines and intents")));
    }
    match (tenant, user, conversation) {
        (Some(tenant), Some(user), Some(conversation)) if violations.is_empty() => {
            let mut profile: Vec<(String, String)> =
                req.profile.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            profile.sort();
            Ok(Escalation {
                tenant,
                user,
                conversation: conversation.to_string(),
                reason: req.reason.clone(),
                cause: req.cause.clone(),
                transcript: req.transcript.clone(),
                intents: req.intents.clone(),
                profile,
            })
        }
        _ => Err(rpc::invalid(violations)),
    }
}

/// A delivery that failed (the store or the bus): UNAVAILABLE, the caller may try again.
impl WireError for NotificationError {
    fn code(&self) -> pb::ServiceErrorCode {
        pb::ServiceErrorCode::Unavailable
    }

    fn message(&self) -> String {
        self.to_string()
    }
}

/// Delivers one escalation to the agents; the notification continues the caller's trace.
async fn escalate(
    n: Arc<Notifier>,
    req: pb::EscalateRequest,
    incoming: Incoming,
) -> Result<pb::EscalateResponse, pb::ServiceError> {
    let e = validate(&req)?;
    let notification_id =
        format!("{}:{}:{}:{}", crate::Kind::SupportEscalation.as_str(), e.tenant, e.conversation, e.cause);
    let delivered =
        crate::INCOMING_TRACE.scope(incoming.trace, n.escalate(&e)).await.map_err(WireError::into_wire)?;
    Ok(pb::EscalateResponse { notification_id, outcome: delivered.as_str().into() })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = pb::EscalateRequest {
            tenant: "acme".into(),
            user_id: "u1".into(),
            conversation_id: "c1".into(),
            reason: "the customer asks for a human".into(),
            cause: "turn-3".into(),
            transcript: vec!["customer: I want a person".into()],
            intents: vec!["human_agent".into()],
            profile: [("orders".to_string(), "2".to_string())].into(),
        };
        let e = validate(&ok).unwrap();
        assert_eq!((e.conversation.as_str(), e.profile.len()), ("c1", 1));
        let bad = pb::EscalateRequest {
            user_id: String::new(),
            conversation_id: "c 1".into(),
            reason: " ".into(),
            ..ok
        };
        let fields: Vec<String> =
            validate(&bad).unwrap_err().violations.into_iter().map(|v| v.field).collect();
        assert_eq!(fields, ["user_id", "conversation_id", "reason"]);
    }
}
