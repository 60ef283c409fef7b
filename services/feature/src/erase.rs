//! Erasing a customer (docs/PRIVACY.md, "Erasure"): `shopmind privacy erase`, the gateway's
//! `Admin.EraseCustomer` (forwarded to `sm.rpc.<tenant>.feature.erase`, served here).
//!
//! In this order:
//! 1. a **tombstone** (a hash of the customer id as stored, never the id) is published to
//!    `sm.erased.<tenant>` (`SM_ERASURES`, kept forever): training rounds skip the events of
//!    tombstoned customers, stragglers published after the erasure included;
//! 2. the customer's **messages are deleted** from every stream that holds them (`SM_EVENTS`,
//!    `SM_INTAKE`, `SM_DLQ`, `SM_NOTIFICATIONS`, `SM_WEBHOOKS`): subjects name no customer, so the
//!    stream is read, each message of the tenant decoded and those of the customer deleted by
//!    sequence (`Bus::delete_message`; on NATS a secure erase: the server overwrites the
//!    message's bytes);
//! 3. their **store keys** are deleted, family by family as [`keys::CUSTOMER_KEY_FAMILIES`]
//!    lists them, plus what the deleted events name (their idempotency guards, their sessions)
//!    and the notification service's timers and deferred notifications of the customer.
//!
//! Every step is idempotent: erasing again finds nothing more (or the stragglers since).
//!
//! [`keys::CUSTOMER_KEY_FAMILIES`] (next to the key builders, in `shopmind_features::keys`) is
//! the one list of where a customer's state lives in the store: a component that keeps
//! per-customer keys elsewhere than under the customer's hash tag adds its family there.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Bus, BusError, Message};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UserId};
use shopmind_features::keys::{self, KeyFamily};
use shopmind_privacy::Pseudonymizer;
use shopmind_proto::v1 as pb;
use shopmind_runtime::rpc::{self, WireError};
use shopmind_runtime::snapshot::StreamReader;
use shopmind_runtime::topology;
use shopmind_store::{FeatureStore, Key, Read, StoreError, Value, Write, WriteBatch};
use tracing::{Instrument, info};

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("bus: {0}")]
    Bus(#[from] BusError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Config(#[from] shopmind_config::ConfigError),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A customer to erase: the tenant, the id as the system stores it (the pseudonym for tenants
/// that pseudonymise) and the shop's own id where it differs (raw intake messages carry it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Customer {
    pub tenant: TenantId,
    pub stored: UserId,
    pub raw: Option<UserId>,
}

impl Customer {
    /// The customer `user` (the shop's id) of `tenant`, as the configuration stores it.
    pub fn from_config(config: &Config, tenant: &str, user: &str) -> Result<Self, EraseError> {
        let tenant = TenantId::parse(tenant)
            .map_err(|e| EraseError::Invalid { field: "tenant", reason: e.to_string() })?;
        let user = UserId::parse(user)
            .map_err(|e| EraseError::Invalid { field: "user_id", reason: e.to_string() })?;
        if !config.privacy.tenant(tenant.as_str()).pseudonymize {
            return Ok(Self { tenant, stored: user, raw: None });
        }
        let Some(secret) = config.privacy.read_secret()? else {
            return Err(EraseError::Invalid {
                field: "privacy.secret_file",
                reason: "the tenant pseudonymises customer ids and no secret is configured".into(),
            });
        };
        let stored = Pseudonymizer::new(&secret).pseudonymize(&tenant, &user);
        Ok(Self { tenant, stored, raw: Some(user) })
    }

    fn is(&self, user_id: &str) -> bool {
        user_id == self.stored.as_str() || self.raw.as_ref().is_some_and(|r| r.as_str() == user_id)
    }
}

/// What an erasure removed: a count per kind of thing, e.g. `("events", 12)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureReport {
    pub removed: BTreeMap<String, u64>,
}

impl ErasureReport {
    fn add(&mut self, what: &str, n: u64) {
        *self.removed.entry(what.to_string()).or_insert(0) += n;
    }

    pub fn total(&self) -> u64 {
        self.removed.values().sum()
    }

    pub fn to_proto(&self) -> pb::EraseCustomerResponse {
        pb::EraseCustomerResponse {
            removed: self
                .removed
                .iter()
                .map(|(what, &count)| pb::ErasedCount { what: what.clone(), count })
                .collect(),
        }
    }
}

/// The streams that can hold a customer's messages, the subject prefix of a tenant in each, and
/// what each message is.
#[derive(Debug, Clone, Copy)]
enum Carried {
    Event,
    Notification,
    EventOrNotification,
}

fn streams_of(tenant: &TenantId) -> [(&'static str, String, Carried, &'static str); 5] {
    [
        (topology::EVENTS_STREAM, format!("sm.events.{tenant}."), Carried::Event, "events"),
        (topology::INTAKE_STREAM, topology::intake_subject(tenant), Carried::Event, "intake messages"),
        (topology::DLQ_STREAM, format!("sm.dlq.{tenant}."), Carried::EventOrNotification, "dead letters"),
        (
            topology::NOTIFICATIONS_STREAM,
            format!("sm.notify.{tenant}."),
            Carried::Notification,
            "notifications",
        ),
        (
            topology::WEBHOOKS_STREAM,
            format!("sm.webhook.{tenant}."),
            Carried::Notification,
            "webhook deliveries",
        ),
    ]
}

fn subject_in(subject: &str, prefix: &str) -> bool {
    subject == prefix.trim_end_matches('.') || subject.starts_with(prefix)
}

/// Erases `customer` (see the module docs) and reports what was removed.
pub async fn erase_customer(
    bus: &dyn Bus,
    store: &dyn FeatureStore,
    customer: &Customer,
) -> Result<ErasureReport, EraseError> {
    let span = tracing::info_span!("erase_customer", tenant = %customer.tenant);
    erase(bus, store, customer).instrument(span).await
}

async fn erase(
    bus: &dyn Bus,
    store: &dyn FeatureStore,
    customer: &Customer,
) -> Result<ErasureReport, EraseError> {
    let t = &customer.tenant;
    let mut report = ErasureReport::default();

    // 1. The tombstone first, so that a training round running meanwhile skips them already.
    let tombstone = shopmind_privacy::tombstone_of(t, &customer.stored);
    let message = Message::new(topology::erased_subject(t), Bytes::from(tombstone.clone()));
    bus.publish(message, Some(&format!("erased:{t}:{tombstone}"))).await?;

    // 2. Their messages in the streams, and what their events name.
    let mut event_ids = BTreeSet::new();
    let mut sessions = BTreeSet::new();
    for (stream, prefix, carried, what) in streams_of(t) {
        let mut deleted = 0;
        let mut reader = StreamReader::open(bus, stream).await?;
        while let Some(stored) = reader.next().await? {
            if !subject_in(&stored.message.subject, &prefix) {
                continue;
            }
            let payload = stored.message.payload.as_ref();
            let notification = || pb::Notification::decode(payload).is_ok_and(|n| customer.is(&n.user_id));
            let theirs = match carried {
                Carried::Notification => notification(),
                // Dead letters hold events, or notifications (of the webhook stage).
                Carried::Event | Carried::EventOrNotification => match pb::Event::decode(payload) {
                    Ok(e) if customer.is(&e.user_id) => {
                        event_ids.insert(e.event_id);
                        if !e.session_id.is_empty() {
                            sessions.insert(e.session_id);
                        }
                        true
                    }
                    _ => matches!(carried, Carried::EventOrNotification) && notification(),
                },
            };
            if theirs && bus.delete_message(stream, stored.sequence).await? {
                deleted += 1;
            }
        }
        report.add(what, deleted);
    }

    // 3. Their keys in the store.
    let mut deletes = Vec::new();
    for family in keys::CUSTOMER_KEY_FAMILIES {
        match *family {
            KeyFamily::UserTagged { what } => {
                let found = store.scan(&keys::user_tagged(t, &customer.stored)).await?;
                report.add(what, found.len() as u64);
                deletes.extend(found);
            }
            KeyFamily::ItemMembers { what, sets } => {
                let sets = store.scan(&keys::scan_pattern(&sets(t))).await?;
                let member = customer.stored.to_string();
                let reads = sets
                    .iter()
                    .map(|key| Read::SortedScores { key: key.clone(), members: vec![member.clone()] })
                    .collect();
                let mut removes = Vec::new();
                for (key, value) in sets.iter().zip(store.read(reads).await?) {
                    if matches!(value, Value::Scores(s) if s.first().is_some_and(Option::is_some)) {
                        removes.push(Write::SortedRemove { key: key.clone(), member: member.clone() });
                    }
                }
                report.add(what, removes.len() as u64);
                write(store, removes).await?;
            }
            KeyFamily::Indexed { what, index, records } => {
                let index = index(t, &customer.stored);
                let ids = match store.read(vec![Read::Set { key: index.clone() }]).await?.pop() {
                    Some(Value::Set(ids)) => ids,
                    _ => Vec::new(),
                };
                report.add(what, ids.len() as u64);
                for id in &ids {
                    deletes.extend(records.iter().map(|r| r(t).key(id)));
                }
                deletes.push(index);
            }
        }
    }
    report.add("event guards", event_ids.len() as u64);
    deletes.extend(event_ids.iter().map(|id| keys::applied(t, id)));
    let session_keys: Vec<Key> = sessions
        .iter()
        .filter_map(|s| shopmind_domain::SessionId::parse(s.clone()).ok())
        .map(|s| keys::session(t, &s))
        .collect();
    report.add("sessions", session_keys.len() as u64);
    deletes.extend(session_keys);
    write(store, deletes.into_iter().map(|key| Write::Delete { key }).collect()).await?;
    report.add("notification timers", erase_notification_timers(store, customer).await?);

    info!(tenant = %t, removed = report.total(), "customer erased");
    Ok(report)
}

/// The notification service's timers of the customer (`cart|<at>|<user>`, `churn|<at>|<user>`
/// in `keys::notification::timers`) and the notifications deferred for them
/// (`keys::notification::deferred`, timer `deliver|<id>`); see services/notification/src/timers.rs.
async fn erase_notification_timers(store: &dyn FeatureStore, customer: &Customer) -> Result<u64, EraseError> {
    let t = &customer.tenant;
    let timers = keys::notification::timers(t);
    let deferred = keys::notification::deferred(t);
    let values = store
        .read(vec![
            Read::SortedRange {
                key: timers.clone(),
                min: f64::NEG_INFINITY,
                max: f64::INFINITY,
                limit: 1_000_000,
            },
            Read::Hash { key: deferred.clone() },
        ])
        .await?;
    let mut writes = Vec::new();
    let suffix = format!("|{}", customer.stored);
    if let Some(Value::Sorted(members)) = values.first() {
        for (member, _) in members {
            if (member.starts_with("cart|") || member.starts_with("churn|")) && member.ends_with(&suffix) {
                writes.push(Write::SortedRemove { key: timers.clone(), member: member.clone() });
            }
        }
    }
    if let Some(Value::Hash(fields)) = values.get(1) {
        for (id, bytes) in fields {
            if pb::Notification::decode(bytes.as_ref()).is_ok_and(|n| customer.is(&n.user_id)) {
                writes.push(Write::HashDel { key: deferred.clone(), field: id.clone() });
                writes.push(Write::SortedRemove { key: timers.clone(), member: format!("deliver|{id}") });
            }
        }
    }
    let n = writes.iter().filter(|w| matches!(w, Write::SortedRemove { .. })).count() as u64;
    write(store, writes).await?;
    Ok(n)
}

async fn write(store: &dyn FeatureStore, writes: Vec<Write>) -> Result<(), StoreError> {
    for chunk in writes.chunks(1000) {
        store.write(WriteBatch { writes: chunk.to_vec(), atomic: false, guard: None }).await?;
    }
    Ok(())
}

/// Answers an `EraseCustomerRequest` of `sm.rpc.<tenant>.feature.erase`.
pub async fn answer(
    config: &Config,
    bus: &dyn Bus,
    store: &dyn FeatureStore,
    request: &pb::EraseCustomerRequest,
) -> Result<pb::EraseCustomerResponse, EraseError> {
    let customer = Customer::from_config(config, &request.tenant, &request.user_id)?;
    Ok(erase_customer(bus, store, &customer).await?.to_proto())
}

/// The wire form of an erasure's error: a bad id is INVALID_ARGUMENT, a missing secret a field-less
/// INVALID_ARGUMENT (the request is fine, the configuration is not), an unreadable secret
/// INTERNAL, a failed bus or store UNAVAILABLE (erasing again resumes).
impl WireError for EraseError {
    fn code(&self) -> pb::ServiceErrorCode {
        match self {
            Self::Invalid { .. } => pb::ServiceErrorCode::InvalidArgument,
            Self::Config(_) => pb::ServiceErrorCode::Internal,
            Self::Bus(_) | Self::Store(_) => pb::ServiceErrorCode::Unavailable,
        }
    }

    fn message(&self) -> String {
        match self {
            Self::Invalid { .. } => rpc::INVALID_REQUEST.into(),
            Self::Config(_) => self.to_string(),
            Self::Bus(_) | Self::Store(_) => format!("erasure failed: {self}"),
        }
    }

    fn into_violations(self) -> Vec<(String, String)> {
        match self {
            Self::Invalid { field, reason } => {
                let field = if field == "privacy.secret_file" { "" } else { field };
                vec![(field.into(), reason)]
            }
            _ => Vec::new(),
        }
    }
}
