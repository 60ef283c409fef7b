//! The notification service. Today's rule: an `OrderStatusChanged` event becomes an order-status
//! notification to the customer, published to `sm.notify.<tenant>.customer` (stream
//! `SM_NOTIFICATIONS`), where the gateway's `StreamNotifications` delivers it.
//!
//! Notification ids are derived from their cause (`order_status:<tenant>:<event_id>`) and used as
//! the message id, so a redelivered event never notifies twice.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Headers, Message};
use shopmind_config::Config;
use shopmind_domain::{Event, EventKind, Payload, UnixMillis};
use shopmind_metrics::{Notified, global as metrics};
use shopmind_proto::v1 as pb;
use shopmind_runtime::consume::{Outcome, consume_loop};
use shopmind_runtime::{Shutdown, telemetry, topology};
use tracing::info;

pub const DURABLE: &str = "notification";

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

/// The notification an event causes, if any.
pub fn notification_for(event: &Event, now: UnixMillis) -> Option<pb::Notification> {
    let Payload::OrderStatusChanged { order, status } = &event.payload else { return None };
    let user = event.user.as_ref()?;
    let status = status.as_str();
    Some(pb::Notification {
        notification_id: format!("order_status:{}:{}", event.tenant, event.id),
        tenant: event.tenant.to_string(),
        kind: pb::NotificationKind::OrderStatus as i32,
        audience: "customer".into(),
        user_id: user.to_string(),
        title: format!("Your order {order} is {status}"),
        body: format!("The status of order {order} changed to {status}."),
        data: [("order_id".to_string(), order.to_string()), ("status".to_string(), status.to_string())]
            .into(),
        created_at: Some(now.to_proto()),
        source_event_id: event.id.to_string(),
        sequence: 0,
    })
}

async fn process(bus: &dyn Bus, message: Message) -> Outcome {
    let event = match shopmind_feature::decode_event(&message) {
        Ok(e) => e,
        Err((code, reason)) => return Outcome::Reject { code, reason },
    };
    let Some(notification) = notification_for(&event, UnixMillis::now()) else { return Outcome::Done };
    let mut headers = Headers::new();
    headers.set_trace(&telemetry::outgoing(&tracing::Span::current(), message.headers.trace()));
    let out = Message {
        subject: topology::notification_subject(&event.tenant, &notification.audience),
        headers,
        payload: Bytes::from(notification.encode_to_vec()),
    };
    match bus.publish(out, Some(&notification.notification_id)).await {
        Ok(p) => {
            metrics().notification(if p.duplicate { Notified::Duplicate } else { Notified::Published });
            info!(tenant = %event.tenant, id = %notification.notification_id, duplicate = p.duplicate, "notification published");
            Outcome::Done
        }
        Err(e) => {
            Outcome::Retry { delay: Duration::from_secs(1), reason: format!("publishing notification: {e}") }
        }
    }
}

pub async fn run(config: Config, bus: Arc<dyn Bus>, shutdown: Shutdown) -> Result<(), NotificationError> {
    let spec = topology::events_consumer(
        DURABLE,
        vec![topology::events_of_kind(EventKind::OrderStatusChanged)],
        Duration::from_secs(config.notification.ack_wait_s),
        config.notification.max_deliver,
    );
    let publisher = bus.clone();
    consume_loop(bus, spec, "notification", shutdown, move |message| {
        let bus = publisher.clone();
        async move { process(&*bus, message).await }
    })
    .await?;
    Ok(())
}
