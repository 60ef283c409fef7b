//! Per-tenant retention (docs/PRIVACY.md, "Retention"): `shopmind privacy sweep`, run as a
//! Kubernetes CronJob.
//!
//! The streams' own `max_age` (`[streams]`) bounds every tenant alike; a tenant can ask for less
//! with `privacy.tenants.<t>.events_max_age_days` (raw events, in `SM_EVENTS` and as dead
//! letters in `SM_DLQ`) and `conversations_max_age_days` (support messages in those streams,
//! and the conversation records in the store). A sweep deletes, per such tenant, the messages
//! whose event time is older than the limit (by sequence, `Bus::delete_message`), and gives the
//! conversation records of the tenant (`keys::conversation`, `keys::conversation_stats`:
//! `sm:{<t>}:conv:*`, `sm:{<t>}:conv_stats:*`) a TTL of at most the limit.

use std::collections::BTreeMap;
use std::time::Duration;

use prost::Message as _;
use shopmind_bus::Bus;
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis};
use shopmind_features::keys;
use shopmind_proto::v1 as pb;
use shopmind_runtime::snapshot::StreamReader;
use shopmind_runtime::topology;
use shopmind_store::{FeatureStore, Write, WriteBatch};
use tracing::info;

use crate::erase::EraseError;

const DAY_MS: i64 = 86_400_000;

/// What a sweep removed, per tenant: (messages deleted, conversation keys given a TTL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub tenants: BTreeMap<String, (u64, u64)>,
}

/// One sweep over every tenant with a limit of its own, as of `now`.
pub async fn sweep(
    config: &Config,
    bus: &dyn Bus,
    store: &dyn FeatureStore,
    now: UnixMillis,
) -> Result<SweepReport, EraseError> {
    let mut limits = BTreeMap::new();
    for (tenant, p) in &config.privacy.tenants {
        if p.events_max_age_days > 0 || p.conversations_max_age_days > 0 {
            let t = TenantId::parse(tenant.clone())
                .map_err(|e| EraseError::Invalid { field: "tenant", reason: e.to_string() })?;
            limits.insert(t, (p.events_max_age_days, p.conversations_max_age_days));
        }
    }
    let mut report = SweepReport::default();
    if limits.is_empty() {
        return Ok(report);
    }
    let cutoff = |days: u32| (days > 0).then(|| now.0.saturating_sub(i64::from(days) * DAY_MS));
    for stream in [topology::EVENTS_STREAM, topology::DLQ_STREAM] {
        let mut reader = StreamReader::open(bus, stream).await?;
        while let Some(stored) = reader.next().await? {
            let Some(tenant) = topology::tenant_of_subject(&stored.message.subject) else { continue };
            let Some(&(events_days, conversation_days)) = limits.get(&tenant) else { continue };
            let Ok(event) = pb::Event::decode(stored.message.payload.as_ref()) else { continue };
            let Some(at) =
                event.occurred_at.as_ref().map(|ts| ts.seconds * 1000 + i64::from(ts.nanos) / 1_000_000)
            else {
                continue;
            };
            let is_support = matches!(event.payload, Some(pb::event::Payload::SupportMessage(_)));
            let expired = cutoff(events_days).is_some_and(|c| at < c)
                || (is_support && cutoff(conversation_days).is_some_and(|c| at < c));
            if expired && bus.delete_message(stream, stored.sequence).await? {
                report.tenants.entry(tenant.to_string()).or_default().0 += 1;
            }
        }
    }
    for (tenant, &(_, conversation_days)) in &limits {
        if conversation_days == 0 {
            continue;
        }
        let limit = Duration::from_secs(u64::from(conversation_days) * 86_400);
        let mut writes = Vec::new();
        for records in [keys::conversation_pattern(tenant), keys::conversation_stats_pattern(tenant)] {
            for key in store.scan(&keys::scan_pattern(&records)).await? {
                if store.ttl(&key).await?.is_none_or(|ttl| ttl > limit) {
                    writes.push(Write::Expire { key, ttl: limit });
                }
            }
        }
        report.tenants.entry(tenant.to_string()).or_default().1 += writes.len() as u64;
        if !writes.is_empty() {
            store.write(WriteBatch { writes, atomic: false, guard: None }).await?;
        }
    }
    for (tenant, (messages, conversations)) in &report.tenants {
        info!(tenant = %tenant, messages, conversations, "retention sweep");
    }
    Ok(report)
}
