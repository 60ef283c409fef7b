//! The notification service: real-time rules over events and model signals, delivered through
//! NATS, gRPC and webhooks under per-user policies. See docs/NOTIFICATIONS.md.
//!
//! * **Rules** ([`rules`]) turn events into notifications: order status, back in stock, price
//!   drop, low stock, support escalation at once; cart abandonment and churn risk through timers
//!   kept in the store ([`timers`]), which survive restarts and fire once.
//! * **Policies** ([`deliver`]): opt-out per user and channel, dedup of (rule, user, subject)
//!   within a window, quiet hours in the user's time zone (deferred, not dropped), a per-user
//!   frequency cap.
//! * **Escalations** from the assistant ([`escalate`]): `sm.rpc.<tenant>.notification.escalate`
//!   carries a conversation's transcript, intents and the customer's profile to the agents.
//! * **Channels**: the stream `SM_NOTIFICATIONS` (NATS subject `sm.notify.<tenant>.<audience>`,
//!   and the gateway's `StreamNotifications`), and webhooks ([`webhook`]): signed POSTs with
//!   retries, exponential backoff with jitter, and dead letters after the last attempt.
//!
//! Notification ids are derived from their cause and used as message ids, so a redelivered event
//! or a timer fired twice never notifies twice.

pub mod clock;
pub mod deliver;
pub mod escalate;
pub mod prefs;
pub mod rules;
pub mod seams;
pub mod timers;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::{Bus, BusError};
use shopmind_config::Config;
use shopmind_domain::{EventKind, TenantId, UnixMillis};
use shopmind_proto::v1 as pb;
use shopmind_runtime::consume::{Outcome, consume_loop};
use shopmind_runtime::intake::decode_event;
use shopmind_runtime::tombstones::Tombstones;
use shopmind_runtime::{Shutdown, topology};
use shopmind_store::{FeatureStore, StoreError};

pub use clock::{Clock, ManualClock, SystemClock};
pub use deliver::Delivered;
pub use rules::Escalation;
pub use seams::Seams;
/// The notification service's own keys in the store (built with the rest of the key schema).
pub use shopmind_features::keys::notification as keys;

/// The durable consumer of events.
pub const DURABLE: &str = "notification";
/// The durable consumer of webhook deliveries (and its dead-letter stage).
pub const WEBHOOK_DURABLE: &str = "webhook";

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The webhook client could not be set up (e.g. an unreadable `notification.webhook.ca_file`).
    #[error("webhook client: {0}")]
    Webhook(String),
}

/// A notification kind; its name is the one configuration and metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    OrderStatus,
    CartAbandoned,
    BackInStock,
    PriceDrop,
    LowStock,
    ChurnRisk,
    SupportEscalation,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::OrderStatus,
        Kind::CartAbandoned,
        Kind::BackInStock,
        Kind::PriceDrop,
        Kind::LowStock,
        Kind::ChurnRisk,
        Kind::SupportEscalation,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OrderStatus => "order_status",
            Kind::CartAbandoned => "cart_abandoned",
            Kind::BackInStock => "back_in_stock",
            Kind::PriceDrop => "price_drop",
            Kind::LowStock => "low_stock",
            Kind::ChurnRisk => "churn_risk",
            Kind::SupportEscalation => "support_escalation",
        }
    }

    pub fn to_proto(self) -> pb::NotificationKind {
        match self {
            Kind::OrderStatus => pb::NotificationKind::OrderStatus,
            Kind::CartAbandoned => pb::NotificationKind::CartAbandoned,
            Kind::BackInStock => pb::NotificationKind::BackInStock,
            Kind::PriceDrop => pb::NotificationKind::PriceDrop,
            Kind::LowStock => pb::NotificationKind::LowStock,
            Kind::ChurnRisk => pb::NotificationKind::ChurnRisk,
            Kind::SupportEscalation => pb::NotificationKind::SupportEscalation,
        }
    }

    pub fn from_proto(kind: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.to_proto() as i32 == kind)
    }

    /// Who it is for.
    pub fn audience(self) -> &'static str {
        match self {
            Kind::LowStock | Kind::ChurnRisk => "merchant",
            Kind::SupportEscalation => "agents",
            _ => "customer",
        }
    }
}

/// A notification a rule made, before the policies.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub kind: Kind,
    /// What the dedup policy keys on with the rule and the user: an item, an order and status,
    /// a conversation, or "" (the cart, the customer).
    pub subject: String,
    pub notification: pb::Notification,
}

impl Draft {
    /// A draft with `id` = `<kind>:<tenant>:<cause>`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: Kind,
        tenant: &TenantId,
        cause: &str,
        user: &str,
        subject: &str,
        title: String,
        body: String,
        data: Vec<(&str, String)>,
        source_event_id: &str,
        now: UnixMillis,
    ) -> Self {
        Self {
            kind,
            subject: subject.to_string(),
            notification: pb::Notification {
                notification_id: format!("{}:{tenant}:{cause}", kind.as_str()),
                tenant: tenant.to_string(),
                kind: kind.to_proto() as i32,
                audience: kind.audience().into(),
                user_id: user.to_string(),
                title,
                body,
                data: data.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                created_at: Some(now.to_proto()),
                source_event_id: source_event_id.to_string(),
                sequence: 0,
            },
        }
    }
}

/// The notification service's engine: configuration, bus, store, clock and model seams.
pub struct Notifier {
    pub config: Config,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn FeatureStore>,
    pub clock: Arc<dyn Clock>,
    pub seams: Seams,
}

impl Notifier {
    /// With the wall clock, and the model-backed seams (`notification.model_seams`, the
    /// default; they fall back per call) or the feature-based ones.
    pub fn new(config: Config, bus: Arc<dyn Bus>, store: Arc<dyn FeatureStore>) -> Self {
        let history = config.notification.defaults.rules.low_stock.history_days;
        let seams = if config.notification.model_seams {
            let timeout = Duration::from_millis(config.notification.model_timeout_ms);
            Seams::with_models(bus.clone(), store.clone(), history, timeout)
        } else {
            Seams::fallbacks(store.clone(), history)
        };
        Self { config, bus, store, clock: Arc::new(SystemClock), seams }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_seams(mut self, seams: Seams) -> Self {
        self.seams = seams;
        self
    }

    pub fn now(&self) -> UnixMillis {
        self.clock.now()
    }
}

tokio::task_local! {
    /// The trace context of the event being handled: what notifications continue when no
    /// OpenTelemetry tracer is installed.
    pub(crate) static INCOMING_TRACE: Option<shopmind_bus::TraceContext>;
}

/// The event kinds the rules look at.
pub const EVENT_KINDS: [EventKind; 8] = [
    EventKind::ProductViewed,
    EventKind::AddedToCart,
    EventKind::RemovedFromCart,
    EventKind::OrderPlaced,
    EventKind::OrderStatusChanged,
    EventKind::SupportMessage,
    EventKind::ItemUpserted,
    EventKind::InventoryChanged,
];

/// Runs the service with the wall clock and the fallback seams until `shutdown`.
pub async fn run(
    config: Config,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    shutdown: Shutdown,
) -> Result<(), NotificationError> {
    run_notifier(Arc::new(Notifier::new(config, bus, store)), shutdown).await
}

/// Runs the three loops of a notifier: events, timers, webhook deliveries.
pub async fn run_notifier(n: Arc<Notifier>, shutdown: Shutdown) -> Result<(), NotificationError> {
    let c = &n.config.notification;
    let spec = topology::events_consumer(
        DURABLE,
        EVENT_KINDS.iter().map(|k| topology::events_of_kind(*k)).collect(),
        Duration::from_secs(c.ack_wait_s),
        c.max_deliver,
    );
    // Built first: an unreadable `notification.webhook.ca_file` stops the service at start.
    let client = webhook::WebhookClient::new(&c.webhook.ca_file)?;
    let timer_loop = tokio::spawn(timers::run(n.clone(), shutdown.clone()));
    let webhook_loop = tokio::spawn(webhook::run(n.clone(), client, shutdown.clone()));
    let escalations = tokio::spawn(escalate::serve(n.clone(), shutdown.clone()));
    // Events of customers erased after they were published (stragglers) make no notification.
    let erased = Tombstones::follow(n.bus.clone(), shutdown.clone()).await?;
    let engine = n.clone();
    let events = consume_loop(n.bus.clone(), spec, "notification", shutdown, move |message| {
        let (n, erased) = (engine.clone(), erased.clone());
        async move {
            let event = match decode_event(&message) {
                Ok(e) => e,
                Err((code, reason)) => return Outcome::Reject { code, reason },
            };
            if erased.covers(&event) {
                tracing::debug!(tenant = %event.tenant, event_id = %event.id, "event of an erased customer skipped");
                return Outcome::Done;
            }
            let incoming = message.headers.trace();
            match INCOMING_TRACE.scope(incoming, rules::on_event(&n, &event)).await {
                Ok(()) => Outcome::Done,
                Err(e) => Outcome::Retry { delay: Duration::from_secs(1), reason: e.to_string() },
            }
        }
    })
    .await;
    let (timers, webhooks) = (timer_loop.await, webhook_loop.await);
    events?;
    if let Ok(Err(e)) = escalations.await {
        return Err(e.into());
    }
    if let Ok(Err(e)) = webhooks {
        return Err(e.into());
    }
    if let Err(e) = timers {
        tracing::warn!(error = %e, "timer loop ended abnormally");
    }
    Ok(())
}
