//! Streams and subjects. The tenant is a token of every subject.
//!
//! | stream             | subjects                              | carries |
//! |--------------------|---------------------------------------|---------|
//! | `SM_INTAKE`        | `sm.in.<tenant>[.<anything>]`         | raw events that backends publish directly (protobuf `shopmind.v1.Event`) |
//! | `SM_EVENTS`        | `sm.events.<tenant>.<kind>`           | validated events (protobuf `shopmind.v1.Event`) |
//! | `SM_DLQ`           | `sm.dlq.<tenant>.<stage>`             | messages that could not be processed, with the reason in headers |
//! | `SM_NOTIFICATIONS` | `sm.notify.<tenant>.<audience>`       | notifications (protobuf `shopmind.v1.Notification`) |
//! | `SM_WEBHOOKS`      | `sm.webhook.<tenant>.<endpoint>`      | notifications waiting for delivery to a tenant's webhook endpoint |
//! | `SM_ERASURES`      | `sm.erased.<tenant>`                  | tombstones of erased customers (a hash of the id, never the id; kept forever) |
//!
//! Request-reply subjects (core NATS, queue groups): `sm.rpc.<tenant>.<service>.<method>`.

use std::time::Duration;

use shopmind_bus::{ConsumerSpec, StreamSpec};
use shopmind_config::StreamsConfig;
use shopmind_domain::{EventKind, TenantId};

pub const INTAKE_STREAM: &str = "SM_INTAKE";
pub const EVENTS_STREAM: &str = "SM_EVENTS";
pub const DLQ_STREAM: &str = "SM_DLQ";
pub const NOTIFICATIONS_STREAM: &str = "SM_NOTIFICATIONS";
pub const WEBHOOKS_STREAM: &str = "SM_WEBHOOKS";
pub const ERASURES_STREAM: &str = "SM_ERASURES";

/// Header with the reason a message was dead-lettered.
pub const DLQ_REASON_HEADER: &str = "Shopmind-Dlq-Reason";
/// Header with the stable code of the reason (see docs/EVENTS.md).
pub const DLQ_CODE_HEADER: &str = "Shopmind-Dlq-Code";
/// Header with the subject the message was first published to.
pub const DLQ_SUBJECT_HEADER: &str = "Shopmind-Dlq-Subject";
/// Header with the stream sequence of the original message.
pub const DLQ_SEQUENCE_HEADER: &str = "Shopmind-Dlq-Sequence";
/// The tenant token used when a dead letter's tenant cannot be told.
pub const UNKNOWN_TENANT_TOKEN: &str = "_unknown";

const DAY: Duration = Duration::from_secs(86_400);

/// Every stream shopmind uses, as configured.
pub fn streams(cfg: &StreamsConfig) -> Vec<StreamSpec> {
    let stream = |name: &str, subjects: &str, max_age_days: u32| StreamSpec {
        name: name.into(),
        subjects: vec![subjects.into()],
        max_age: DAY * max_age_days,
        duplicate_window: Duration::from_secs(u64::from(cfg.duplicate_window_s)),
        max_bytes: -1,
    };
    vec![
        stream(INTAKE_STREAM, "sm.in.>", cfg.intake_max_age_days),
        stream(EVENTS_STREAM, "sm.events.>", cfg.events_max_age_days),
        stream(DLQ_STREAM, "sm.dlq.>", cfg.dlq_max_age_days),
        stream(NOTIFICATIONS_STREAM, "sm.notify.>", cfg.notifications_max_age_days),
        stream(WEBHOOKS_STREAM, "sm.webhook.>", cfg.notifications_max_age_days),
        // Tombstones never expire: they keep straggler events of erased customers out of training.
        stream(ERASURES_STREAM, "sm.erased.>", 0),
    ]
}

/// Where backends publish raw events of a tenant (to be validated by ingest).
pub fn intake_subject(tenant: &TenantId) -> String {
    format!("sm.in.{tenant}")
}

pub fn event_subject(tenant: &TenantId, kind: EventKind) -> String {
    format!("sm.events.{tenant}.{}", kind.as_str())
}

/// Subject filter for events of one kind across tenants.
pub fn events_of_kind(kind: EventKind) -> String {
    format!("sm.events.*.{}", kind.as_str())
}

pub fn dlq_subject(tenant_token: &str, stage: &str) -> String {
    format!("sm.dlq.{tenant_token}.{stage}")
}

pub fn notification_subject(tenant: &TenantId, audience: &str) -> String {
    format!("sm.notify.{tenant}.{audience}")
}

/// Where a notification waits for delivery to the tenant's webhook endpoint `endpoint`.
pub fn webhook_subject(tenant: &TenantId, endpoint: &str) -> String {
    format!("sm.webhook.{tenant}.{endpoint}")
}

/// Where the tombstones of a tenant's erased customers are kept.
pub fn erased_subject(tenant: &TenantId) -> String {
    format!("sm.erased.{tenant}")
}

pub fn notifications_of_tenant(tenant: &TenantId) -> String {
    format!("sm.notify.{tenant}.>")
}

pub fn rpc_subject(tenant: &TenantId, service: &str, method: &str) -> String {
    format!("sm.rpc.{tenant}.{service}.{method}")
}

/// What a service subscribes to, for all tenants.
pub fn rpc_pattern(service: &str, method: &str) -> String {
    format!("sm.rpc.*.{service}.{method}")
}

/// The tenant token of a subject `sm.<kind>.<tenant>...`, if it is a valid tenant.
pub fn tenant_of_subject(subject: &str) -> Option<TenantId> {
    subject.split('.').nth(2).and_then(|t| TenantId::parse(t).ok())
}

/// A durable consumer of a stream.
pub fn consumer(
    stream: &str,
    durable: &str,
    filter: Vec<String>,
    ack_wait: Duration,
    max_deliver: i64,
) -> ConsumerSpec {
    ConsumerSpec {
        stream: stream.into(),
        durable: durable.into(),
        filter_subjects: filter,
        ack_wait,
        max_deliver,
    }
}

/// A durable consumer of the events stream.
pub fn events_consumer(
    durable: &str,
    filter: Vec<String>,
    ack_wait: Duration,
    max_deliver: i64,
) -> ConsumerSpec {
    consumer(EVENTS_STREAM, durable, filter, ack_wait, max_deliver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_carry_the_tenant() {
        let t = TenantId::parse("acme").expect("valid");
        assert_eq!(event_subject(&t, EventKind::OrderPlaced), "sm.events.acme.order_placed");
        assert_eq!(tenant_of_subject("sm.events.acme.order_placed"), Some(t.clone()));
        assert_eq!(tenant_of_subject("sm.rpc.acme.inference.recommend"), Some(t.clone()));
        assert_eq!(tenant_of_subject(&intake_subject(&t)), Some(t.clone()));
        assert_eq!(tenant_of_subject("sm.in.acme.orders"), Some(t.clone()));
        assert_eq!(tenant_of_subject("sm.events"), None);
        assert_eq!(tenant_of_subject("sm.events.Bad!.x"), None);
        assert!(shopmind_bus::subject_matches(
            &rpc_pattern("inference", "recommend"),
            &rpc_subject(&t, "inference", "recommend")
        ));
        assert!(shopmind_bus::subject_matches(
            &events_of_kind(EventKind::OrderPlaced),
            &event_subject(&t, EventKind::OrderPlaced)
        ));
    }

    #[test]
    fn streams_do_not_overlap() {
        let specs = streams(&StreamsConfig::default());
        for a in &specs {
            for b in &specs {
                if a.name != b.name {
                    for s in &a.subjects {
                        let probe = s.replace('>', "x.y");
                        assert!(!b.subjects.iter().any(|p| shopmind_bus::subject_matches(p, &probe)));
                    }
                }
            }
        }
    }
}
