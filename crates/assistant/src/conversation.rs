//! Conversation state, kept in the feature store per conversation (`keys::conversation`, JSON)
//! with a TTL renewed by every message, and indexed per customer (`keys::user_conversations`) so
//! that erasing a customer finds their conversations.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use shopmind_domain::{ConversationId, TenantId, UserId};
use shopmind_features::keys;
use shopmind_store::{FeatureStore, Read, StoreError, Value, Write, WriteBatch};

/// The one place customer text passes through before it is stored or sent anywhere (conversation
/// state, the agents' transcript): PII (emails, phone numbers, card numbers, addresses, ...) is
/// masked by `shopmind_privacy::redact`; order ids and prices stay (docs/PRIVACY.md).
pub fn stored_text(text: &str) -> String {
    shopmind_privacy::redact(text).text
}

/// Who wrote a turn.
pub const CUSTOMER: &str = "customer";
pub const ASSISTANT: &str = "assistant";

/// One message of the conversation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TurnRecord {
    /// [`CUSTOMER`] or [`ASSISTANT`].
    pub role: String,
    /// Through [`stored_text`].
    pub text: String,
    /// The intent acted on (customer turns).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub intent: String,
    pub at_ms: i64,
}

/// What the assistant remembers of a conversation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ConversationState {
    /// The customer the conversation belongs to.
    pub user: String,
    /// The newest `assistant.max_turns` messages, oldest first.
    pub turns: Vec<TurnRecord>,
    /// The intent of every customer message, oldest first.
    pub intents: Vec<String>,
    /// The intent of the previous customer message.
    pub last_intent: String,
    /// The order the conversation is about (follow-ups refer to it).
    pub last_order_id: String,
    /// An order request waiting for the customer to say which order (its intent).
    #[serde(default)]
    pub pending_intent: String,
    /// Consecutive messages the assistant could not serve.
    pub failures: u32,
    /// Whether a human has taken over.
    pub escalated: bool,
}

impl ConversationState {
    /// Appends a message, keeping the newest `max_turns`.
    pub fn push(&mut self, role: &str, text: &str, intent: &str, at_ms: i64, max_turns: usize) {
        self.turns.push(TurnRecord {
            role: role.into(),
            text: stored_text(text),
            intent: intent.into(),
            at_ms,
        });
        let excess = self.turns.len().saturating_sub(max_turns.max(1));
        self.turns.drain(..excess);
    }

    /// The transcript for the agents, oldest first: `customer: ...`, `assistant: ...`.
    pub fn transcript(&self) -> Vec<String> {
        self.turns.iter().map(|t| format!("{}: {}", t.role, t.text)).collect()
    }
}

/// Reads a conversation's state; a missing or unreadable one is a new conversation.
pub async fn load(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    conversation: &ConversationId,
) -> Result<ConversationState, StoreError> {
    let values = store.read(vec![Read::Get { key: keys::conversation(tenant, conversation) }]).await?;
    Ok(match values.into_iter().next() {
        Some(Value::Get(Some(raw))) => serde_json::from_slice(&raw).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable conversation state; starting over");
            ConversationState::default()
        }),
        _ => ConversationState::default(),
    })
}

/// Writes a conversation's state with its TTL, and indexes it under its customer, in one round
/// trip; `escalated_at` (unix ms) also records the escalation in the conversation's statistics.
pub async fn save(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    conversation: &ConversationId,
    user: &UserId,
    state: &ConversationState,
    ttl: Duration,
    escalated_at: Option<i64>,
) -> Result<(), StoreError> {
    let key = keys::conversation(tenant, conversation);
    let index = keys::user_conversations(tenant, user);
    // Serialising strings and numbers cannot fail.
    let json = serde_json::to_vec(state).unwrap_or_default();
    let mut writes = vec![
        Write::Put { key: key.clone(), value: Bytes::from(json) },
        Write::Expire { key, ttl },
        Write::SetAdd { key: index.clone(), member: conversation.to_string() },
        Write::Expire { key: index, ttl },
    ];
    if let Some(at) = escalated_at {
        let stats = keys::conversation_stats(tenant, conversation);
        writes.push(Write::HashMin { key: stats, field: "escalated_at".into(), value: at });
    }
    store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn turns_are_capped_oldest_dropped() {
        let mut s = ConversationState::default();
        for i in 0..5 {
            s.push(CUSTOMER, &format!("m{i}"), "greeting", i, 3);
        }
        assert_eq!(s.transcript(), ["customer: m2", "customer: m3", "customer: m4"]);
        let back: ConversationState = serde_json::from_slice(&serde_json::to_vec(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
