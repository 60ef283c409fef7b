//! `[assistant]`: the customer-service assistant, and each tenant's FAQ and order policies
//! (`[assistant.defaults]`, `[assistant.tenants.<t>]`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ORDER_STATUSES;
use crate::check::Checks;

/// The customer-service assistant (`Assist`, docs/ASSISTANT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AssistantConfig {
    /// The sentence encoder's model directory (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), converted to ONNX in memory at start; empty: the directory
    /// scripts/setup.sh fills, `.cache/models/all-MiniLM-L6-v2`.
    pub encoder_dir: String,
    /// Texts longer than this many tokens are truncated by the encoder (8..=256).
    pub max_tokens: usize,
    /// Below this probability of the most probable intent a message is `out_of_scope` (0..1).
    pub confidence_threshold: f64,
    /// A conversation's state lives this long after its last message (seconds).
    pub conversation_ttl_s: u64,
    /// Messages (customer and assistant) kept in a conversation's state and sent to the agents.
    pub max_turns: usize,
    /// Consecutive messages the assistant could not serve (out of scope, unsure, no FAQ entry)
    /// after which the conversation goes to a human (1..=20).
    pub max_failures: u32,
    /// Time limit of the call to the notification service that escalates a conversation (ms).
    pub escalation_timeout_ms: u64,
    /// Policies and knowledge of every tenant without its own table in `tenants`.
    pub defaults: TenantAssistant,
    /// Per tenant: a table that overrides only the keys it names; the rest come from `defaults`.
    pub tenants: BTreeMap<String, TenantAssistant>,
}

impl Default for AssistantConfig {
    fn default() -> Self {
        Self {
            encoder_dir: String::new(),
            max_tokens: 128,
            confidence_threshold: 0.45,
            conversation_ttl_s: 86_400,
            max_turns: 20,
            max_failures: 2,
            escalation_timeout_ms: 1000,
            defaults: TenantAssistant::default(),
            tenants: BTreeMap::new(),
        }
    }
}

impl AssistantConfig {
    /// The policies and knowledge in force for `tenant`.
    pub fn tenant(&self, tenant: &str) -> &TenantAssistant {
        self.tenants.get(tenant).unwrap_or(&self.defaults)
    }
}

/// One tenant's assistant: its FAQ and its order policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantAssistant {
    /// Directory of the tenant's FAQ: Markdown files, one chunk per `##` section (relative paths
    /// are relative to the working directory).
    pub faq_dir: String,
    /// Cosine similarity a FAQ entry needs to answer a question (0..1).
    pub faq_min_score: f64,
    /// Order statuses in which an order can still be cancelled.
    pub cancellable_statuses: Vec<String>,
    /// Order statuses from which an order can be returned (the window counts from the time the
    /// order reached its status).
    pub returnable_statuses: Vec<String>,
    /// Days after delivery within which an order can be returned (1..=365).
    pub return_window_days: u32,
    /// Days from shipping to delivery that the assistant promises (the estimate it gives).
    pub delivery_days: u32,
}

impl Default for TenantAssistant {
    fn default() -> Self {
        Self {
            faq_dir: "data/faq/demo".into(),
            faq_min_score: 0.45,
            cancellable_statuses: vec!["placed".into(), "paid".into()],
            returnable_statuses: vec!["delivered".into()],
            return_window_days: 30,
            delivery_days: 3,
        }
    }
}

impl AssistantConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.range("assistant.max_tokens", self.max_tokens, 8..=256);
        c.ensure(
            (0.0..1.0).contains(&self.confidence_threshold),
            "assistant.confidence_threshold",
            "must be within [0, 1)",
        );
        c.at_least("assistant.conversation_ttl_s", self.conversation_ttl_s, 1);
        c.range("assistant.max_turns", self.max_turns, 2..=200);
        c.range("assistant.max_failures", self.max_failures, 1..=20);
        c.at_least("assistant.escalation_timeout_ms", self.escalation_timeout_ms, 1);
        c.tenant_tables("assistant", self.tenants.keys());
        c.scoped("assistant.defaults", |c| self.defaults.validate(c));
        for (tenant, table) in &self.tenants {
            c.scoped(&format!("assistant.tenants.{tenant}"), |c| table.validate(c));
        }
    }
}

impl TenantAssistant {
    /// Checks one table, with keys relative to it (`faq_dir`).
    fn validate(&self, c: &mut Checks) {
        c.ensure(!self.faq_dir.is_empty(), "faq_dir", "must name a directory");
        c.ensure((0.0..1.0).contains(&self.faq_min_score), "faq_min_score", "must be within [0, 1)");
        c.known("cancellable_statuses", &self.cancellable_statuses, &ORDER_STATUSES, "status");
        c.known("returnable_statuses", &self.returnable_statuses, &ORDER_STATUSES, "status");
        c.range("return_window_days", self.return_window_days, 1..=365);
        c.range("delivery_days", self.delivery_days, 1..=60);
    }
}
