//! The conversation engine: one customer message in, one grounded answer out.
//!
//! For a message the engine embeds the text once (the embedding feeds both the intent head and
//! the FAQ retrieval), reads the conversation's state and the customer's features concurrently,
//! decides what to do from the intent, the state (follow-ups, a pending "which order?") and the
//! tenant's policies, hands the conversation to the agents when it must, and writes the new state
//! back with its TTL (see docs/ASSISTANT.md).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shopmind_config::{AssistantConfig, TenantAssistant};
use shopmind_domain::{ConversationId, ItemId, TenantId, UnixMillis, UserId};
use shopmind_encoder::SentenceEncoder;
use shopmind_features::{FeatureSettings, UserFeatures, keys, read_user_features};
use shopmind_store::{FeatureStore, Read, Value, stamped};

use crate::classifier::{Classification, decide};
use crate::conversation::{self, ASSISTANT, CUSTOMER, ConversationState};
use crate::data::OUT_OF_SCOPE;
use crate::error::{AssistantError, Result};
use crate::grounding::{self, OrderMatch, OrderRef, date, id_like_tokens};
use crate::head::HeadModel;
use crate::knowledge::{KnowledgeBase, excerpt};

/// Intents answered from the customer's orders.
const ORDER_INTENTS: [&str; 4] = ["order_status", "cancel_order", "return_request", "refund_status"];
/// Intents answered from the FAQ.
const FAQ_INTENTS: [&str; 4] = ["shipping_info", "payment_issue", "account_help", "product_question"];
/// Longest FAQ answer, in characters.
const ANSWER_CHARS: usize = 600;
/// Recently seen items a product question is matched against.
const CATALOG_CANDIDATES: usize = 20;

/// Where a fact in an answer comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Citation {
    /// "faq", "order", "policy" or "catalog".
    pub source: String,
    pub id: String,
    pub title: String,
    pub snippet: String,
}

/// What the assistant did or decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Action {
    pub kind: String,
    pub order_id: String,
    pub detail: String,
}

/// The answer to one message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    pub intent: String,
    pub confidence: f32,
    pub answer: String,
    pub citations: Vec<Citation>,
    pub actions: Vec<Action>,
    pub escalated: bool,
    pub needs_clarification: bool,
    /// For metrics: answered, clarification, not_served, escalated, escalation_failed.
    pub outcome: &'static str,
}

/// A hand-over of a conversation to the agents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EscalationRequest {
    pub tenant: TenantId,
    pub user: UserId,
    pub conversation: ConversationId,
    /// Why, for the agents.
    pub reason: String,
    /// Unique per turn of the conversation (the notification id derives from it).
    pub cause: String,
    /// `customer: ...` / `assistant: ...`, oldest first (through `stored_text`).
    pub transcript: Vec<String>,
    /// The intent of each customer message, oldest first.
    pub intents: Vec<String>,
    /// The customer's profile, summarised.
    pub profile: Vec<(String, String)>,
}

/// Delivers escalations to the agents (the notification service, in production).
#[async_trait::async_trait]
pub trait Escalator: Send + Sync + 'static {
    /// Returns what the delivery did (e.g. "published"), or why it failed.
    async fn escalate(&self, request: EscalationRequest) -> std::result::Result<String, String>;
}

/// One customer message.
#[derive(Clone, Debug)]
pub struct Message<'a> {
    pub tenant: &'a TenantId,
    pub conversation: &'a ConversationId,
    pub user: &'a UserId,
    pub text: &'a str,
    pub now: UnixMillis,
}

/// What answering a message decided, before the state is updated.
#[derive(Default)]
struct Plan {
    answer: String,
    citations: Vec<Citation>,
    actions: Vec<Action>,
    clarification: bool,
    /// The assistant could not serve the message.
    failure: bool,
    /// Hand over to a human, and why.
    escalate: Option<String>,
    order_id: Option<String>,
    pending_intent: String,
}

impl Plan {
    fn action(&mut self, kind: &str, order_id: &str, detail: impl Into<String>) {
        self.actions.push(Action { kind: kind.into(), order_id: order_id.into(), detail: detail.into() });
    }
}

/// The assistant: encoder, knowledge bases, store, escalation channel and configuration.
pub struct Assistant {
    encoder: Arc<SentenceEncoder>,
    store: Arc<dyn FeatureStore>,
    escalator: Arc<dyn Escalator>,
    config: AssistantConfig,
    settings: FeatureSettings,
    /// FAQ directory -> its embedded entries.
    knowledge: RwLock<HashMap<String, Arc<KnowledgeBase>>>,
}

impl Assistant {
    pub fn new(
        encoder: Arc<SentenceEncoder>,
        store: Arc<dyn FeatureStore>,
        escalator: Arc<dyn Escalator>,
        config: AssistantConfig,
        settings: FeatureSettings,
    ) -> Self {
        Self { encoder, store, escalator, config, settings, knowledge: RwLock::new(HashMap::new()) }
    }

    pub fn encoder(&self) -> &SentenceEncoder {
        &self.encoder
    }

    pub fn config(&self) -> &AssistantConfig {
        &self.config
    }

    /// Loads and embeds the FAQ of the defaults and of every configured tenant (a broken one
    /// fails the start rather than the first question).
    pub async fn load_knowledge(&self) -> Result<usize> {
        let mut dirs: Vec<String> = vec![self.config.defaults.faq_dir.clone()];
        dirs.extend(self.config.tenants.values().map(|t| t.faq_dir.clone()));
        dirs.sort();
        dirs.dedup();
        let mut entries = 0;
        for dir in dirs {
            entries += self.knowledge_of(&dir).await?.entries().len();
        }
        Ok(entries)
    }

    async fn knowledge_of(&self, dir: &str) -> Result<Arc<KnowledgeBase>> {
        if let Some(kb) = self.knowledge.read().unwrap_or_else(|p| p.into_inner()).get(dir) {
            return Ok(kb.clone());
        }
        let kb = Arc::new(KnowledgeBase::load(&PathBuf::from(dir), &self.encoder).await?);
        tracing::info!(faq_dir = dir, entries = kb.entries().len(), "FAQ embedded");
        self.knowledge.write().unwrap_or_else(|p| p.into_inner()).insert(dir.to_owned(), kb.clone());
        Ok(kb)
    }

    /// Answers one message with the intent head `head`.
    pub async fn respond(&self, head: &HeadModel, m: &Message<'_>) -> Result<Reply> {
        let policy = self.config.tenant(m.tenant.as_str());
        let kb = self.knowledge_of(&policy.faq_dir).await?;
        let texts = [m.text];
        let (embedding, state, features) = futures::join!(
            self.encoder.encode(&texts),
            conversation::load(&*self.store, m.tenant, m.conversation),
            read_user_features(&*self.store, m.tenant, m.user, &self.settings, m.now),
        );
        let embedding = embedding?.pop().ok_or_else(|| AssistantError::Config("no embedding".into()))?;
        let probabilities = head
            .probabilities(std::slice::from_ref(&embedding))
            .await?
            .pop()
            .ok_or_else(|| AssistantError::Config("no probabilities".into()))?;
        let threshold = self.config.confidence_threshold as f32;
        let c = decide(head.labels(), probabilities, threshold);
        let mut state = state.map_err(|e| AssistantError::Store(e.to_string()))?;
        let features = features.map_err(|e| AssistantError::Store(e.to_string()))?;
        if !state.user.is_empty() && state.user != m.user.as_str() {
            return Err(AssistantError::Conversation("the conversation belongs to another customer".into()));
        }
        state.user = m.user.to_string();

        let intent = resolve_intent(&c, &state, m.text, &features);
        let mut plan = Plan::default();
        match intent.as_str() {
            i if ORDER_INTENTS.contains(&i) => {
                if i == "refund_status" && features.orders.is_empty() {
                    self.faq(&kb, policy, &embedding, &mut plan);
                } else {
                    order_answer(i, m, &state, &features, policy, &mut plan);
                }
            }
            "product_question" => {
                if !self.catalog(m, &features, &mut plan).await? {
                    self.faq(&kb, policy, &embedding, &mut plan);
                }
            }
            i if FAQ_INTENTS.contains(&i) => self.faq(&kb, policy, &embedding, &mut plan),
            "greeting" => {
                plan.answer =
                    "Hello! I can help with your orders (status, cancellations, returns), shipping, \
                               payments, products and your account. What can I do for you?"
                        .into();
                plan.action("greeted", "", "");
            }
            "complaint" => plan.escalate = Some("the customer is complaining".into()),
            "human_agent" => plan.escalate = Some("the customer asks for a human".into()),
            _ => {
                plan.failure = true;
                plan.answer = if c.below_threshold {
                    "I'm not sure I understood. Could you rephrase? I can help with orders, returns, \
                     shipping, payments, products and your account."
                        .into()
                } else {
                    "I can only help with this shop: orders, returns, shipping, payments, products and \
                     your account."
                        .into()
                };
                plan.action("not_understood", "", format!("confidence {:.2}", c.confidence));
            }
        }

        state.failures = if plan.failure { state.failures.saturating_add(1) } else { 0 };
        if plan.escalate.is_none() && state.failures >= self.config.max_failures {
            plan.escalate = Some(format!(
                "the assistant could not help {} times in a row (last intent confidence {:.2})",
                state.failures, c.confidence
            ));
        }
        state.intents.push(intent.clone());
        state.last_intent = intent.clone();
        state.pending_intent = std::mem::take(&mut plan.pending_intent);
        if let Some(order) = plan.order_id.take() {
            state.last_order_id = order;
        }
        let max_turns = self.config.max_turns;
        state.push(CUSTOMER, m.text, &intent, m.now.0, max_turns);

        let mut escalated_at = None;
        let mut escalated = false;
        let mut outcome = if plan.clarification {
            "clarification"
        } else if plan.failure {
            "not_served"
        } else {
            "answered"
        };
        if let Some(reason) = plan.escalate.take() {
            let request = EscalationRequest {
                tenant: m.tenant.clone(),
                user: m.user.clone(),
                conversation: m.conversation.clone(),
                reason: reason.clone(),
                cause: format!("turn-{}", state.intents.len()),
                transcript: state.transcript(),
                intents: state.intents.clone(),
                profile: profile_summary(&features),
            };
            match self.escalator.escalate(request).await {
                Ok(delivery) => {
                    escalated = true;
                    escalated_at = Some(m.now.0);
                    state.escalated = true;
                    state.failures = 0;
                    let sorry = if intent == "complaint" { "I'm sorry about that. " } else { "" };
                    plan.answer = format!(
                        "{sorry}I'm handing this conversation over to a member of our team; a human agent \
                         will take over here shortly."
                    );
                    plan.clarification = false;
                    plan.action("escalated", "", format!("{reason} ({delivery})"));
                    outcome = "escalated";
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the escalation to the agents failed");
                    plan.answer =
                        "I'm sorry, I couldn't reach a human agent just now. Please try again in a \
                                   few minutes."
                            .into();
                    plan.action("escalation_failed", "", reason);
                    outcome = "escalation_failed";
                }
            }
        }
        state.push(ASSISTANT, &plan.answer, "", m.now.0, max_turns);
        let ttl = Duration::from_secs(self.config.conversation_ttl_s);
        conversation::save(&*self.store, m.tenant, m.conversation, m.user, &state, ttl, escalated_at)
            .await
            .map_err(|e| AssistantError::Store(e.to_string()))?;
        Ok(Reply {
            intent,
            confidence: c.confidence,
            answer: plan.answer,
            citations: plan.citations,
            actions: plan.actions,
            escalated,
            needs_clarification: plan.clarification,
            outcome,
        })
    }

    /// Answers from the tenant's FAQ, or counts a failure.
    fn faq(&self, kb: &KnowledgeBase, policy: &TenantAssistant, embedding: &[f32], plan: &mut Plan) {
        match kb.best(embedding, policy.faq_min_score as f32) {
            Some((entry, score)) => {
                plan.answer = excerpt(&entry.body, ANSWER_CHARS);
                plan.citations.push(Citation {
                    source: "faq".into(),
                    id: entry.id.clone(),
                    title: entry.title.clone(),
                    snippet: entry.snippet(),
                });
                plan.action("faq_answer", "", format!("{} (score {score:.2})", entry.id));
            }
            None => {
                plan.failure = true;
                plan.answer =
                    "I couldn't find an answer to that in our help pages. Could you put it another \
                               way, or ask for a human agent?"
                        .into();
                plan.action("no_answer", "", "no FAQ entry is similar enough");
            }
        }
    }

    /// Answers a product question from catalog attributes, if the message names an item (its id,
    /// or the title of an item the customer looked at recently). Whether it did.
    async fn catalog(&self, m: &Message<'_>, features: &UserFeatures, plan: &mut Plan) -> Result<bool> {
        let mut candidates: Vec<ItemId> =
            id_like_tokens(m.text).into_iter().filter_map(|t| ItemId::parse(t).ok()).collect();
        for i in &features.recent {
            if candidates.len() >= CATALOG_CANDIDATES {
                break;
            }
            if !candidates.contains(&i.item) {
                candidates.push(i.item.clone());
            }
        }
        if candidates.is_empty() {
            return Ok(false);
        }
        let reads = candidates.iter().map(|i| Read::Hash { key: keys::item_attrs(m.tenant, i) }).collect();
        let values = self.store.read(reads).await.map_err(|e| AssistantError::Store(e.to_string()))?;
        let words: Vec<String> = m
            .text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let mut best: Option<(usize, &ItemId, HashMap<String, String>)> = None;
        for (item, value) in candidates.iter().zip(values) {
            let Value::Hash(fields) = value else { continue };
            let attrs: HashMap<String, String> = fields
                .into_iter()
                .filter_map(|(k, raw)| stamped(&raw).map(|(_, v)| (k, v.to_string())))
                .collect();
            let Some(title) = attrs.get("title") else { continue };
            let named = words.iter().any(|w| w.eq_ignore_ascii_case(item.as_str()));
            let title_words: Vec<String> = title
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() >= 3)
                .map(str::to_lowercase)
                .collect();
            let overlap = title_words.iter().filter(|w| words.contains(w)).count();
            let score = if named { usize::MAX } else { overlap };
            let enough = named || overlap >= 2 || (overlap == 1 && title_words.len() == 1);
            if enough && best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, item, attrs));
            }
        }
        let Some((_, item, attrs)) = best else { return Ok(false) };
        let title = attrs.get("title").cloned().unwrap_or_default();
        let mut facts = Vec::new();
        if let Some(category) = attrs.get("category") {
            facts.push(format!("in {category}"));
        }
        if let (Some(price), Some(currency)) =
            (attrs.get("price").and_then(|p| p.parse::<i64>().ok()), attrs.get("currency"))
        {
            facts.push(format!("costs {}.{:02} {currency}", price / 100, (price % 100).abs()));
        }
        match attrs.get("stock").and_then(|s| s.parse::<i64>().ok()) {
            Some(n) if n > 0 => facts.push(format!("is in stock ({n} available)")),
            Some(_) => facts.push("is out of stock right now".into()),
            None => {}
        }
        let snippet = if facts.is_empty() { "no details on file".to_string() } else { facts.join(", ") };
        plan.answer = format!("{title} {snippet}.");
        plan.citations.push(Citation {
            source: "catalog".into(),
            id: item.to_string(),
            title: title.clone(),
            snippet: snippet.clone(),
        });
        plan.action("catalog_answer", "", item.to_string());
        Ok(true)
    }
}

/// Whether a message without an order id refers back to the conversation's order ("and when will
/// it arrive?").
fn is_follow_up(text: &str) -> bool {
    const WORDS: [&str; 7] = ["it", "its", "it's", "arrive", "arriving", "arrival", "there"];
    text.to_lowercase().split(|c: char| !(c.is_alphanumeric() || c == '\'')).any(|w| WORDS.contains(&w))
}

/// The intent to act on: the classifier's, unless the conversation says otherwise. A message
/// naming one of the customer's orders while the assistant waits for "which order?" completes
/// that request; a follow-up about the conversation's order ("and when will it arrive?") is an
/// order-status question even when the classifier heard a shipping question or was unsure.
fn resolve_intent(
    c: &Classification,
    state: &ConversationState,
    text: &str,
    features: &UserFeatures,
) -> String {
    let names_an_order = {
        let tokens = id_like_tokens(text);
        features.orders.keys().any(|id| tokens.iter().any(|t| t.eq_ignore_ascii_case(id)))
    };
    if !state.pending_intent.is_empty() && names_an_order && !ORDER_INTENTS.contains(&c.intent.as_str()) {
        return state.pending_intent.clone();
    }
    let after_order = ORDER_INTENTS.contains(&state.last_intent.as_str()) && !state.last_order_id.is_empty();
    if after_order
        && !names_an_order
        && matches!(c.intent.as_str(), "shipping_info" | OUT_OF_SCOPE)
        && is_follow_up(text)
    {
        return "order_status".into();
    }
    c.intent.clone()
}

fn order_list(orders: &[OrderRef]) -> String {
    orders.iter().take(5).map(|o| format!("{} ({})", o.id, o.status)).collect::<Vec<_>>().join(", ")
}

/// Answers an order intent from the customer's orders and the tenant's policies.
fn order_answer(
    intent: &str,
    m: &Message<'_>,
    state: &ConversationState,
    features: &UserFeatures,
    policy: &TenantAssistant,
    plan: &mut Plan,
) {
    let fallback = (!state.last_order_id.is_empty()).then_some(state.last_order_id.as_str());
    let order = match grounding::match_order(m.text, &features.orders, fallback) {
        OrderMatch::One(o) => o,
        OrderMatch::NoOrders => {
            plan.answer =
                "I can't find any orders on your account. If you ordered with another account or as \
                           a guest, please sign in with it or ask for a human agent."
                    .into();
            plan.action("no_orders", "", "");
            return;
        }
        OrderMatch::Unknown(ids) => {
            let all = grounding::orders_newest_first(&features.orders);
            plan.answer = format!(
                "I can't find order {} on your account. Your orders are: {}. Which one do you mean?",
                ids.join(", "),
                order_list(&all)
            );
            plan.clarification = true;
            plan.pending_intent = intent.into();
            plan.action("order_not_found", "", ids.join(","));
            return;
        }
        OrderMatch::Ambiguous(candidates) => {
            plan.answer = format!("Which order do you mean? You have {}.", order_list(&candidates));
            plan.clarification = true;
            plan.pending_intent = intent.into();
            let ids: Vec<&str> = candidates.iter().map(|o| o.id.as_str()).collect();
            plan.action("asked_which_order", "", ids.join(","));
            return;
        }
    };
    let status = grounding::status_sentence(&order, policy);
    plan.citations.push(Citation {
        source: "order".into(),
        id: order.id.clone(),
        title: format!("Order {}", order.id),
        snippet: format!("{} since {}", order.status, date(order.since_ms)),
    });
    plan.order_id = Some(order.id.clone());
    match intent {
        "cancel_order" => {
            let v = grounding::can_cancel(&order, policy);
            plan.citations.push(policy_citation("cancellation", "Cancellation policy", &v.reason));
            if v.allowed {
                plan.answer = format!(
                    "Order {} can still be cancelled: {}. I've noted your cancellation request; you'll get a \
                     confirmation once it is processed.",
                    order.id, v.reason
                );
                plan.action("cancel_allowed", &order.id, v.reason);
            } else {
                plan.answer = format!("I'm sorry, I can't cancel order {}: {}.", order.id, v.reason);
                if policy.returnable_statuses.iter().any(|s| s == "delivered") && order.status == "shipped" {
                    plan.answer.push_str(&format!(
                        " Once it is delivered you can return it within {} days.",
                        policy.return_window_days
                    ));
                }
                plan.action("cancel_refused", &order.id, v.reason);
            }
        }
        "return_request" => {
            let v = grounding::can_return(&order, policy, m.now.0);
            plan.citations.push(policy_citation("returns", "Return policy", &v.reason));
            if v.allowed {
                plan.answer = format!(
                    "Yes, {}. Pack the items in their original packaging; you'll get the return label by email.",
                    v.reason
                );
                plan.action("return_allowed", &order.id, v.reason);
            } else {
                plan.answer = format!("I'm sorry, a return isn't possible: {}.", v.reason);
                plan.action("return_refused", &order.id, v.reason);
            }
        }
        _ => {
            plan.answer = status;
            plan.action("order_status", &order.id, order.status.clone());
        }
    }
}

fn policy_citation(id: &str, title: &str, reason: &str) -> Citation {
    Citation { source: "policy".into(), id: id.into(), title: title.into(), snippet: reason.into() }
}

/// What the agents see about the customer.
pub fn profile_summary(f: &UserFeatures) -> Vec<(String, String)> {
    let mut out = vec![("orders".to_string(), f.order_count.to_string())];
    if let Some(first) = f.first_order_ms {
        out.push(("first_order".into(), date(first)));
    }
    if let Some(last) = f.last_order_ms {
        out.push(("last_order".into(), date(last)));
    }
    for (currency, minor) in &f.spend {
        out.push((format!("spend_{currency}"), format!("{}.{:02}", minor / 100, (minor % 100).abs())));
    }
    let top: Vec<&str> = f.affinity.iter().take(3).map(|(c, _)| c.as_str()).collect();
    if !top.is_empty() {
        out.push(("top_categories".into(), top.join(", ")));
    }
    let recent: Vec<String> = grounding::orders_newest_first(&f.orders)
        .iter()
        .take(5)
        .map(|o| format!("{} {} since {}", o.id, o.status, date(o.since_ms)))
        .collect();
    if !recent.is_empty() {
        out.push(("recent_orders".into(), recent.join("; ")));
    }
    if !f.cart.is_empty() {
        out.push(("cart_items".into(), f.cart.len().to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn classified(intent: &str) -> Classification {
        Classification {
            intent: intent.into(),
            predicted: intent.into(),
            confidence: 0.9,
            below_threshold: false,
            probabilities: Vec::new(),
        }
    }

    #[test]
    fn follow_ups_and_pending_questions_resolve_to_the_conversation_order() {
        let features = UserFeatures {
            orders: [("A1".to_string(), (0, "shipped".to_string())), ("B200".into(), (1, "paid".into()))]
                .into(),
            ..UserFeatures::default()
        };
        let after_status = ConversationState {
            last_intent: "order_status".into(),
            last_order_id: "A1".into(),
            ..ConversationState::default()
        };
        let follow_up = "and when will it arrive?";
        assert_eq!(
            resolve_intent(&classified("shipping_info"), &after_status, follow_up, &features),
            "order_status"
        );
        assert_eq!(
            resolve_intent(&classified("out_of_scope"), &after_status, follow_up, &features),
            "order_status"
        );
        assert_eq!(
            resolve_intent(&classified("shipping_info"), &ConversationState::default(), follow_up, &features),
            "shipping_info",
            "no order in the conversation"
        );
        let waiting =
            ConversationState { pending_intent: "cancel_order".into(), ..ConversationState::default() };
        assert_eq!(
            resolve_intent(&classified("out_of_scope"), &waiting, "b200 please", &features),
            "cancel_order"
        );
        assert_eq!(resolve_intent(&classified("greeting"), &waiting, "thanks", &features), "greeting");
    }
}
