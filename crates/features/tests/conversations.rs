//! Support conversations in the store (on Redis and in memory): what `SupportMessage` events
//! write, read back by `read_conversations`, is the same in whatever order (and however often)
//! the events are applied.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use shopmind_domain::{Author, ConversationId, Event, EventId, Payload, TenantId, UnixMillis, UserId};
use shopmind_features::conversations::{Conversation, agent_known, read_conversations};
use shopmind_features::{FeatureSettings, apply_events, keys};
use shopmind_store::{FeatureStore, MemoryStore, RedisStore};
use shopmind_testkit::RedisServer;

const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

fn message(
    t: &TenantId,
    n: usize,
    conversation: &str,
    user: &str,
    at: i64,
    agent: &str,
    text: &str,
) -> Event {
    Event {
        id: EventId::parse(format!("m{n}")).unwrap(),
        tenant: t.clone(),
        occurred_at: UnixMillis(at),
        user: Some(UserId::parse(user).unwrap()),
        session: None,
        payload: Payload::SupportMessage {
            conversation: ConversationId::parse(conversation).unwrap(),
            author: if agent.is_empty() {
                Author::Customer
            } else {
                Author::Agent(UserId::parse(agent).unwrap())
            },
            text: text.into(),
        },
    }
}

fn script(t: &TenantId) -> Vec<Event> {
    let lines = [
        ("c1", "u1", T0, "", "where is my order"),
        ("c1", "u1", T0 + 60_000, "bob", "checking"),
        ("c1", "u1", T0 + 30_000, "ann", "hi!"),
        ("c1", "u1", T0 + 90_000, "", "thank you, great help"),
        ("c1", "u1", T0 + DAY, "", "it never arrived, terrible"),
        ("c2", "u2", T0 + 5000, "", "hello"),
        ("c2", "u2", T0 + 6000, "bob", "hello, how can I help"),
    ];
    lines.iter().enumerate().map(|(n, (c, u, at, a, text))| message(t, n, c, u, *at, a, text)).collect()
}

async fn conversations(store: &dyn FeatureStore, t: &TenantId) -> Vec<Conversation> {
    let (cs, truncated) = read_conversations(store, t, T0, T0 + 2 * DAY, 100).await.unwrap();
    assert!(!truncated);
    cs
}

async fn any_order_gives_the_same_conversations(stores: Vec<Arc<dyn FeatureStore>>) {
    let s = FeatureSettings::default();
    let mut results = Vec::new();
    for (n, store) in stores.iter().enumerate() {
        let t = TenantId::parse(format!("shop{n}")).unwrap();
        let mut events = script(&t);
        events.shuffle(&mut rand::rngs::StdRng::seed_from_u64(n as u64));
        let twice: Vec<Event> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        for chunk in twice.chunks(n + 1) {
            apply_events(&**store, chunk, &s).await.unwrap();
        }
        let cs = conversations(&**store, &t).await;
        assert!(agent_known(&**store, &t, "ann").await.unwrap());
        assert!(!agent_known(&**store, &t, "zed").await.unwrap());
        let ttl =
            store.ttl(&keys::conversation_stats(&t, &ConversationId::parse("c1").unwrap())).await.unwrap();
        assert!(ttl.is_some(), "conversation keys expire");
        results.push(cs);
    }
    let first = &results[0];
    assert_eq!(first.len(), 2);
    let c1 = &first[0];
    assert_eq!(c1.id, "c1");
    assert_eq!((c1.first_customer_ms, c1.first_agent_ms), (Some(T0), Some(T0 + 30_000)));
    // The earliest agent message wins, whichever was applied last.
    assert_eq!(c1.first_agent.as_deref(), Some("ann"));
    assert_eq!(c1.user.as_ref().map(UserId::as_str), Some("u1"));
    assert_eq!(c1.messages.len(), 5);
    assert!(c1.messages.windows(2).all(|w| w[0].0 <= w[1].0));
    let day0 = T0 / DAY;
    assert_eq!(c1.sentiment.get(&day0).map(|(_, n)| *n), Some(2));
    assert!(c1.sentiment[&day0].0 > 0, "thanks outweigh a neutral question");
    assert!(c1.sentiment[&(day0 + 1)].0 < 0);
    for r in &results[1..] {
        assert_eq!(r, first);
    }
}

#[tokio::test]
async fn any_order_gives_the_same_conversations_in_memory() {
    let stores: Vec<Arc<dyn FeatureStore>> = (0..4).map(|_| Arc::new(MemoryStore::new()) as _).collect();
    any_order_gives_the_same_conversations(stores).await;
}

#[tokio::test]
async fn any_order_gives_the_same_conversations_on_redis() {
    let server = RedisServer::start();
    let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    any_order_gives_the_same_conversations(vec![store; 4]).await;
}
