//! A notification service on a real nats-server and redis-server, with the feature service
//! next to it (the rules read features), a clock the test moves, and helpers to publish events
//! and read what came out.

#![allow(clippy::unwrap_used, dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message as _;
use shopmind_bus::{Bus, Message, NatsBus, StartAt};
use shopmind_config::Config;
use shopmind_domain::{
    Author, CatalogItem, ConversationId, Event, EventId, ItemId, Money, OrderId, OrderLine, OrderStatus,
    Payload, TenantId, UnixMillis, UserId,
};
use shopmind_notification::{ManualClock, Notifier, timers};
use shopmind_proto::v1 as pb;
use shopmind_runtime::topology::{self, EVENTS_STREAM, NOTIFICATIONS_STREAM};
use shopmind_runtime::{Shutdown, connect};
use shopmind_store::{FeatureStore, RedisStore};
use shopmind_testkit::{NatsServer, RedisServer, eventually};
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(20);
pub const HOUR: i64 = 3_600_000;
pub const DAY: i64 = 86_400_000;

pub fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

/// Yesterday, 12:00 UTC: in the past, and outside the default quiet hours.
pub fn noon() -> i64 {
    (UnixMillis::now().0 / DAY - 1) * DAY + 12 * HOUR
}

pub struct Harness {
    pub nats: NatsServer,
    pub redis: RedisServer,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn FeatureStore>,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    pub notifier: Arc<Notifier>,
    shutdown: Shutdown,
    notification: Option<(Shutdown, JoinHandle<()>)>,
    feature: Option<JoinHandle<()>>,
    next_id: u64,
}

impl Harness {
    /// Servers, streams, the feature service and the notification service at `start` (unix ms).
    pub async fn start(start: i64, configure: impl FnOnce(&mut Config)) -> Self {
        let nats = NatsServer::start();
        let redis = RedisServer::start();
        let bus: Arc<dyn Bus> = Arc::new(NatsBus::connect(&nats.url(), "notification-test").await.unwrap());
        let store: Arc<dyn FeatureStore> = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
        let mut config = Config::default();
        config.notification.timer_poll_ms = 20;
        config.notification.webhook.backoff_base_ms = 20;
        config.notification.webhook.backoff_max_ms = 100;
        configure(&mut config);
        config.validate().unwrap();
        connect::ensure_streams(&*bus, &config).await.unwrap();
        let clock = Arc::new(ManualClock::new(UnixMillis(start)));
        let shutdown = Shutdown::new();
        let feature = {
            let (c, b, s, sd) = (config.clone(), bus.clone(), store.clone(), shutdown.clone());
            tokio::spawn(async move { shopmind_feature::run(c, b, s, sd).await.unwrap() })
        };
        let notifier =
            Arc::new(Notifier::new(config.clone(), bus.clone(), store.clone()).with_clock(clock.clone()));
        let mut h = Self {
            nats,
            redis,
            bus,
            store,
            clock,
            config,
            notifier,
            shutdown,
            notification: None,
            feature: Some(feature),
            next_id: 0,
        };
        h.start_notification();
        h
    }

    /// Starts (another replica of) the notification service.
    pub fn start_notification(&mut self) {
        let shutdown = Shutdown::new();
        let (n, sd) = (self.notifier.clone(), shutdown.clone());
        let task = tokio::spawn(async move { shopmind_notification::run_notifier(n, sd).await.unwrap() });
        self.notification = Some((shutdown, task));
    }

    /// Stops the notification service (as a restart would), leaving the servers and the feature
    /// service running.
    pub async fn stop_notification(&mut self) {
        if let Some((shutdown, task)) = self.notification.take() {
            shutdown.trigger();
            tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops in time").unwrap();
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn event(&mut self, user: Option<&str>, at: i64, payload: Payload) -> Event {
        self.next_id += 1;
        Event {
            id: EventId::parse(format!("e{}", self.next_id)).unwrap(),
            tenant: tenant(),
            occurred_at: UnixMillis(at),
            user: user.map(|u| UserId::parse(u).unwrap()),
            session: None,
            payload,
        }
    }

    /// Publishes an event of `user` at `at` to SM_EVENTS, as ingest would.
    pub async fn publish(&mut self, user: Option<&str>, at: i64, payload: Payload) -> Event {
        let event = self.event(user, at, payload);
        let subject = topology::event_subject(&event.tenant, event.kind());
        let message = Message::new(subject, Bytes::from(event.to_proto().encode_to_vec()));
        let id = format!("acme:{}", event.id);
        self.bus.publish(message, Some(&id)).await.unwrap();
        event
    }

    pub async fn view(&mut self, user: &str, item: &str, at: i64) {
        self.publish(Some(user), at, Payload::ProductViewed { item: ItemId::parse(item).unwrap() }).await;
    }

    pub async fn cart(&mut self, user: &str, item: &str, at: i64) {
        let payload =
            Payload::AddedToCart { item: ItemId::parse(item).unwrap(), quantity: 1, unit_price: None };
        self.publish(Some(user), at, payload).await;
    }

    pub async fn order(&mut self, user: &str, order: &str, items: &[(&str, u32)], at: i64) {
        let lines = items
            .iter()
            .map(|(i, q)| OrderLine { item: ItemId::parse(*i).unwrap(), quantity: *q, unit_price: None })
            .collect();
        self.publish(Some(user), at, Payload::OrderPlaced { order: OrderId::parse(order).unwrap(), lines })
            .await;
    }

    pub async fn status(&mut self, user: &str, order: &str, status: OrderStatus, at: i64) {
        let payload = Payload::OrderStatusChanged { order: OrderId::parse(order).unwrap(), status };
        self.publish(Some(user), at, payload).await;
    }

    pub async fn stock(&mut self, item: &str, available: i64, at: i64) {
        let payload = Payload::InventoryChanged { item: ItemId::parse(item).unwrap(), available };
        self.publish(None, at, payload).await;
    }

    pub async fn price(&mut self, item: &str, minor: i64, at: i64) {
        let payload = Payload::ItemUpserted(CatalogItem {
            item: ItemId::parse(item).unwrap(),
            title: format!("Item {item}"),
            category_path: vec!["Things".into()],
            price: Some(Money { amount_minor: minor, currency: "USD".into() }),
            attributes: Default::default(),
        });
        self.publish(None, at, payload).await;
    }

    pub async fn support(&mut self, user: &str, conversation: &str, author: Author, text: &str, at: i64) {
        let payload = Payload::SupportMessage {
            conversation: ConversationId::parse(conversation).unwrap(),
            author,
            text: text.into(),
        };
        self.publish(Some(user), at, payload).await;
    }

    /// Waits until the feature and notification consumers have acked everything published.
    pub async fn caught_up(&self) {
        for durable in ["feature", shopmind_notification::DURABLE] {
            eventually(WAIT, &format!("consumer {durable} caught up"), || async {
                let lag = self.bus.consumer_lag(EVENTS_STREAM, durable).await.ok()?;
                lag.is_caught_up().then_some(())
            })
            .await;
        }
    }

    /// Waits until no timer is due at the clock's time (each was handled: fired, silent or moved).
    pub async fn timers_settled(&self) {
        eventually(WAIT, "due timers handled", || async {
            let pending = timers::pending(&*self.store, &tenant()).await.ok()?;
            pending.iter().all(|(_, due)| *due > self.now()).then_some(())
        })
        .await;
    }

    pub async fn pending_timers(&self) -> Vec<(String, i64)> {
        timers::pending(&*self.store, &tenant()).await.unwrap()
    }

    /// Everything in SM_NOTIFICATIONS, oldest first, with its subject.
    pub async fn notifications(&self) -> Vec<(String, pb::Notification)> {
        read_stream(&*self.bus, NOTIFICATIONS_STREAM).await
    }

    /// The notifications of one kind.
    pub async fn of_kind(&self, kind: pb::NotificationKind) -> Vec<pb::Notification> {
        self.notifications().await.into_iter().map(|(_, n)| n).filter(|n| n.kind == kind as i32).collect()
    }

    /// Waits until `count` notifications of `kind` are in the stream, and returns them.
    pub async fn wait_for(&self, kind: pb::NotificationKind, count: usize) -> Vec<pb::Notification> {
        eventually(WAIT, &format!("{count} notification(s) of {kind:?}"), || async {
            let found = self.of_kind(kind).await;
            (found.len() >= count).then_some(found)
        })
        .await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some((s, _)) = &self.notification {
            s.trigger();
        }
        let _ = self.feature.take();
    }
}

/// Every message of a stream, decoded as notifications: (subject, notification).
pub async fn read_stream(bus: &dyn Bus, stream: &str) -> Vec<(String, pb::Notification)> {
    let state = bus.stream_state(stream).await.unwrap();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    let mut replay = bus.replay(stream, None, StartAt::First).await.unwrap();
    while out.len() < state.messages as usize {
        let m = tokio::time::timeout(WAIT, replay.next()).await.unwrap().unwrap().unwrap();
        out.push((m.message.subject.clone(), pb::Notification::decode(m.message.payload.as_ref()).unwrap()));
    }
    out
}
