//! Support conversations: what a `SupportMessage` event writes, and the per-agent report read
//! from it (`GetAgentReport`, served by inference). Definitions in docs/ASSISTANT.md.
//!
//! Every write commutes, like the rest of the feature state, so messages may be applied in any
//! order and the stored state is the same:
//!
//! | key | written | how |
//! |---|---|---|
//! | [`keys::conversation_stats`] | `first_customer_ms`, `first_agent_ms` | HashMin |
//! | | `last_customer_ms`, `last_agent_ms` | HashMax |
//! | | `customer_messages`, `agent_messages` | HashIncr |
//! | | `first_agent` | HashSetLatest stamped with the *negated* message time, so the earliest agent message wins |
//! | | `agent:<agent_id>` (every agent involved) | HashMin of the agent's first message time |
//! | | `user` (the customer, for erasure) | HashSetLatest |
//! | | `sentiment_milli:<day>`, `sentiment_n:<day>` (customer messages) | HashIncr (score x 1000, rounded) |
//! | | `escalated_at` (by the assistant, not here) | HashMin |
//! | [`keys::conversation_messages`] | `<unix_ms>\|c`, `<unix_ms>\|a\|<agent_id>` | SortedAdd scored by time, newest N kept |
//! | [`keys::conversations_on`] (per day) | the conversation id | SetAdd |
//! | [`keys::support_agents`] | the agent id | SetAdd |
//! | [`keys::user_conversations`] (the customer's) | the conversation id | SetAdd |
//!
//! Sentiment is summed per conversation and day rather than per agent: a customer may write
//! before any agent has answered, and which agents a conversation has is only known once all its
//! messages are in; the report adds the conversations of each agent up.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use shopmind_domain::{Author, ConversationId, Event, TenantId, UserId};
use shopmind_store::{FeatureStore, Read, StoreError, Value, Write, stamped};

use crate::{DAY_MS, FeatureSettings, keys, sentiment};

/// The writes of one support message (`event` carries a `SupportMessage`).
pub(crate) fn writes(
    event: &Event,
    conversation: &ConversationId,
    author: &Author,
    text: &str,
    s: &FeatureSettings,
) -> Vec<Write> {
    let t = &event.tenant;
    let at = event.occurred_at.0;
    let day = at.div_euclid(DAY_MS);
    let stats = keys::conversation_stats(t, conversation);
    let messages = keys::conversation_messages(t, conversation);
    let on_day = keys::conversations_on(t, day);
    let mut w = Vec::new();
    let min = |field: &str| Write::HashMin { key: stats.clone(), field: field.into(), value: at };
    let max = |field: &str| Write::HashMax { key: stats.clone(), field: field.into(), value: at };
    let incr = |field: String, by: i64| Write::HashIncr { key: stats.clone(), field, by };
    match author {
        Author::Customer => {
            w.push(min("first_customer_ms"));
            w.push(max("last_customer_ms"));
            w.push(incr("customer_messages".into(), 1));
            let milli = (sentiment::score(text) * 1000.0).round() as i64;
            w.push(incr(format!("sentiment_milli:{day}"), milli));
            w.push(incr(format!("sentiment_n:{day}"), 1));
            w.push(Write::SortedAdd { key: messages.clone(), member: format!("{at}|c"), score: at as f64 });
        }
        Author::Agent(agent) => {
            w.push(min("first_agent_ms"));
            w.push(max("last_agent_ms"));
            w.push(incr("agent_messages".into(), 1));
            w.push(Write::HashSetLatest {
                key: stats.clone(),
                field: "first_agent".into(),
                value: agent.to_string(),
                at_ms: -at,
            });
            w.push(Write::HashMin { key: stats.clone(), field: format!("agent:{agent}"), value: at });
            w.push(Write::SortedAdd {
                key: messages.clone(),
                member: format!("{at}|a|{agent}"),
                score: at as f64,
            });
            w.push(Write::SetAdd { key: keys::support_agents(t), member: agent.to_string() });
        }
    }
    if let Some(user) = &event.user {
        w.push(Write::HashSetLatest {
            key: stats.clone(),
            field: "user".into(),
            value: user.to_string(),
            at_ms: at,
        });
        // The customer's conversations, so that erasing them finds these keys.
        let index = keys::user_conversations(t, user);
        w.push(Write::SetAdd { key: index.clone(), member: conversation.to_string() });
        w.push(Write::Expire { key: index, ttl: s.conversation_ttl });
    }
    w.push(Write::SortedKeepTop { key: messages.clone(), keep: s.conversation_messages_cap });
    w.push(Write::SetAdd { key: on_day.clone(), member: conversation.to_string() });
    for key in [stats, messages, on_day] {
        w.push(Write::Expire { key, ttl: s.conversation_ttl });
    }
    w
}

/// One conversation as the store holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub first_customer_ms: Option<i64>,
    pub first_agent_ms: Option<i64>,
    /// The agent of the first agent message.
    pub first_agent: Option<String>,
    /// When the assistant escalated it, if it did.
    pub escalated_at: Option<i64>,
    pub user: Option<UserId>,
    /// Per day: (sum of customer message sentiment x 1000, customer messages).
    pub sentiment: BTreeMap<i64, (i64, i64)>,
    /// Messages in time order: (unix ms, the agent; `None` for the customer).
    pub messages: Vec<(i64, Option<String>)>,
}

fn parse_conversation(id: &str, hash: &[(String, Bytes)], timeline: &[(String, f64)]) -> Conversation {
    let int = |b: &Bytes| std::str::from_utf8(b).ok().and_then(|s| s.parse::<i64>().ok());
    let mut c = Conversation { id: id.to_owned(), ..Conversation::default() };
    for (field, raw) in hash {
        match field.as_str() {
            "first_customer_ms" => c.first_customer_ms = int(raw),
            "first_agent_ms" => c.first_agent_ms = int(raw),
            "escalated_at" => c.escalated_at = int(raw),
            "first_agent" => c.first_agent = stamped(raw).map(|(_, a)| a.to_owned()),
            "user" => c.user = stamped(raw).and_then(|(_, u)| UserId::parse(u).ok()),
            f => {
                if let Some(day) = f.strip_prefix("sentiment_milli:").and_then(|d| d.parse().ok()) {
                    c.sentiment.entry(day).or_default().0 = int(raw).unwrap_or(0);
                } else if let Some(day) = f.strip_prefix("sentiment_n:").and_then(|d| d.parse().ok()) {
                    c.sentiment.entry(day).or_default().1 = int(raw).unwrap_or(0);
                }
            }
        }
    }
    for (member, _) in timeline {
        let mut parts = member.splitn(3, '|');
        let (Some(at), Some(role)) = (parts.next().and_then(|a| a.parse::<i64>().ok()), parts.next()) else {
            continue;
        };
        match (role, parts.next()) {
            ("c", _) => c.messages.push((at, None)),
            ("a", Some(agent)) => c.messages.push((at, Some(agent.to_owned()))),
            _ => {}
        }
    }
    c.messages.sort();
    c
}

impl Conversation {
    /// The time of the agent message after which nobody wrote for `idle_ms` (until the next
    /// message, or until `now_ms`): the conversation's first resolution.
    pub fn resolved_at(&self, idle_ms: i64, now_ms: i64) -> Option<i64> {
        self.messages.iter().enumerate().find_map(|(i, (at, agent))| {
            agent.as_ref()?;
            let next = self.messages.get(i + 1).map_or(now_ms, |(n, _)| *n);
            (next - at >= idle_ms).then_some(*at)
        })
    }

    /// Whether the customer wrote after the first resolution.
    pub fn reopened(&self, idle_ms: i64, now_ms: i64) -> bool {
        self.resolved_at(idle_ms, now_ms)
            .is_some_and(|r| self.messages.iter().any(|(at, agent)| agent.is_none() && *at > r))
    }
}

/// One agent's figures over a period.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentFigures {
    pub agent: String,
    /// Conversations the agent wrote in during the period.
    pub conversations: u32,
    /// Seconds from the customer's first message to the first agent reply, in the conversations
    /// where this agent gave it (and the customer wrote first).
    pub first_response_s: Vec<f64>,
    /// Seconds from the conversation's first message to its first resolution, per resolved
    /// conversation.
    pub resolution_s: Vec<f64>,
    pub escalated: u32,
    pub resolved: u32,
    pub reopened: u32,
    /// Per day: (sum of sentiment, customer messages) of the agent's conversations.
    pub sentiment: BTreeMap<i64, (f64, u32)>,
}

/// What the report is computed over.
#[derive(Debug, Clone, Copy)]
pub struct ReportPeriod {
    pub from_ms: i64,
    pub to_ms: i64,
    /// No message for this long after an agent message resolves a conversation.
    pub idle_ms: i64,
    /// The current time (a conversation whose last agent message is less than `idle_ms` ago is
    /// not resolved yet).
    pub now_ms: i64,
}

/// Per agent, the figures of [`AgentFigures`] over `conversations`, counting for an agent those
/// it wrote in during the period. `only`: just this agent.
pub fn agent_figures(
    conversations: &[Conversation],
    period: &ReportPeriod,
    only: Option<&str>,
) -> BTreeMap<String, AgentFigures> {
    let mut out: BTreeMap<String, AgentFigures> = BTreeMap::new();
    let (from_day, to_day) = (period.from_ms.div_euclid(DAY_MS), period.to_ms.div_euclid(DAY_MS));
    for c in conversations {
        let agents: BTreeSet<&str> = c
            .messages
            .iter()
            .filter(|(at, _)| (period.from_ms..=period.to_ms).contains(at))
            .filter_map(|(_, a)| a.as_deref())
            .filter(|a| only.is_none_or(|o| o == *a))
            .collect();
        if agents.is_empty() {
            continue;
        }
        let first_message = c.messages.first().map(|(at, _)| *at);
        let resolved = c.resolved_at(period.idle_ms, period.now_ms);
        let reopened = c.reopened(period.idle_ms, period.now_ms);
        for agent in agents {
            let f = out
                .entry(agent.to_owned())
                .or_insert_with(|| AgentFigures { agent: agent.to_owned(), ..AgentFigures::default() });
            f.conversations += 1;
            if c.first_agent.as_deref() == Some(agent)
                && let (Some(customer), Some(reply)) = (c.first_customer_ms, c.first_agent_ms)
                && customer <= reply
            {
                f.first_response_s.push((reply - customer) as f64 / 1000.0);
            }
            if let (Some(r), Some(first)) = (resolved, first_message) {
                f.resolved += 1;
                f.resolution_s.push((r - first) as f64 / 1000.0);
                if reopened {
                    f.reopened += 1;
                }
            }
            if c.escalated_at.is_some() {
                f.escalated += 1;
            }
            for (day, (milli, n)) in c.sentiment.range(from_day..=to_day) {
                let e = f.sentiment.entry(*day).or_default();
                e.0 += *milli as f64 / 1000.0;
                e.1 += (*n).max(0) as u32;
            }
        }
    }
    out
}

/// The conversations with a message in the period (ids from the per-day sets), and whether
/// there were more than `max` (then only `max` are read).
pub async fn read_conversations(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    from_ms: i64,
    to_ms: i64,
    max: usize,
) -> Result<(Vec<Conversation>, bool), StoreError> {
    let days: Vec<i64> = (from_ms.div_euclid(DAY_MS)..=to_ms.div_euclid(DAY_MS)).collect();
    let sets = store
        .read(days.iter().map(|d| Read::Set { key: keys::conversations_on(tenant, *d) }).collect())
        .await?;
    let mut ids = BTreeSet::new();
    for v in sets {
        if let Value::Set(members) = v {
            ids.extend(members);
        }
    }
    let truncated = ids.len() > max;
    let ids: Vec<String> = ids.into_iter().take(max).collect();
    let mut reads = Vec::with_capacity(ids.len() * 2);
    let mut valid = Vec::with_capacity(ids.len());
    for id in &ids {
        let Ok(c) = ConversationId::parse(id.clone()) else { continue };
        reads.push(Read::Hash { key: keys::conversation_stats(tenant, &c) });
        reads.push(Read::SortedRange {
            key: keys::conversation_messages(tenant, &c),
            min: f64::NEG_INFINITY,
            max: f64::INFINITY,
            limit: 100_000,
        });
        valid.push(id);
    }
    if reads.is_empty() {
        return Ok((Vec::new(), truncated));
    }
    let values = store.read(reads).await?;
    let mut out = Vec::with_capacity(valid.len());
    for (id, pair) in valid.into_iter().zip(values.chunks(2)) {
        let hash = match pair.first() {
            Some(Value::Hash(h)) => h.as_slice(),
            _ => &[],
        };
        let timeline = match pair.get(1) {
            Some(Value::Sorted(s)) => s.as_slice(),
            _ => &[],
        };
        out.push(parse_conversation(id, hash, timeline));
    }
    Ok((out, truncated))
}

/// Whether `agent` ever wrote a support message to the tenant.
pub async fn agent_known(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    agent: &str,
) -> Result<bool, StoreError> {
    let v = store.read(vec![Read::Set { key: keys::support_agents(tenant) }]).await?;
    Ok(matches!(v.first(), Some(Value::Set(m)) if m.iter().any(|a| a == agent)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(messages: &[(i64, Option<&str>)]) -> Conversation {
        Conversation {
            id: "c".into(),
            messages: messages.iter().map(|(t, a)| (*t, a.map(str::to_owned))).collect(),
            ..Conversation::default()
        }
    }

    #[test]
    fn resolution_is_the_first_agent_message_followed_by_quiet_and_a_later_customer_message_reopens() {
        let c = conv(&[
            (0, None),
            (10, Some("ann")),
            (20, None),
            (30, Some("ann")),
            (200, None),
            (210, Some("bob")),
        ]);
        assert_eq!(c.resolved_at(100, 1000), Some(30));
        assert!(c.reopened(100, 1000));
        assert_eq!(c.resolved_at(1000, 1000), None);
        assert!(!c.reopened(1000, 1000));
        // The last agent message, quiet until now.
        let d = conv(&[(0, None), (10, Some("ann"))]);
        assert_eq!(d.resolved_at(100, 110), Some(10));
        assert_eq!(d.resolved_at(100, 109), None);
    }
}
