//! `shopmind bench memory`: Redis bytes per user, session and item after a simulated shop's
//! events are applied, next to the protobuf bytes of those events (the raw baseline of the run).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use futures::StreamExt;
use prost::Message as _;
use shopmind_domain::{Event, ItemId, SessionId, TenantId, UserId, ValidationPolicy};
use shopmind_features::{FeatureSettings, apply_events, keys};
use shopmind_simulator::{SimConfig, Simulator};
use shopmind_store::{Key, RedisStore};

/// What `bench memory` measured.
#[derive(Debug, serde::Serialize)]
pub struct MemoryReport {
    pub users: usize,
    pub days: u32,
    pub events: u64,
    pub apply_s: f64,
    pub events_per_s: f64,
    /// Events per store round trip, and in flight.
    pub batch: usize,
    pub in_flight: usize,
    /// CPU time of the Redis server (`INFO cpu`) while the events were applied, per event.
    pub redis_cpu_us_per_event: Option<f64>,
    /// Protobuf bytes of all events (the raw baseline).
    pub event_bytes: u64,
    /// Sampled entities and their mean Redis bytes (MEMORY USAGE summed over their keys).
    pub sampled_users: usize,
    pub bytes_per_user: f64,
    pub event_bytes_per_user: f64,
    pub sampled_sessions: usize,
    pub bytes_per_session: f64,
    pub items: usize,
    pub bytes_per_item: f64,
    pub bytes_per_guard: f64,
    /// `used_memory` of the Redis server after the run, per user.
    pub used_memory_per_user: f64,
}

pub async fn run(
    redis_url: &str,
    users: usize,
    days: u32,
    seed: u64,
    batch: usize,
    in_flight: usize,
) -> anyhow::Result<MemoryReport> {
    let store = Arc::new(RedisStore::connect(redis_url).await?);
    let tenant = TenantId::parse(format!("mem-{seed}")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sim = Simulator::new(SimConfig {
        seed,
        tenant: tenant.to_string(),
        users,
        items: (users / 20).clamp(500, 20_000),
        days,
        ..SimConfig::default()
    })?;
    let settings = FeatureSettings::default();
    let policy = ValidationPolicy::stored();
    let bar = indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template("applying {spinner} {pos} events ({per_sec})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let mut event_bytes = 0u64;
    let mut user_bytes: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut sessions: BTreeSet<String> = BTreeSet::new();
    let mut items: BTreeSet<String> = BTreeSet::new();
    let mut guards: Vec<String> = Vec::new();
    let mut parsed = Vec::new();
    for wire in sim {
        let size = wire.encoded_len() as u64;
        event_bytes += size;
        if !wire.user_id.is_empty() {
            *user_bytes.entry(wire.user_id.clone()).or_default() += size;
        }
        let event =
            Event::from_proto(&wire, None, &policy).map_err(|v| anyhow::anyhow!("simulated event: {v}"))?;
        if let Some(s) = &event.session {
            sessions.insert(s.to_string());
        }
        for i in event.interactions() {
            items.insert(i.item.to_string());
        }
        if guards.len() < 1000 {
            guards.push(event.id.to_string());
        }
        parsed.push(event);
    }
    // Applied in concurrent batches, as the feature service applies them (updates commute).
    let cpu_before = store.used_cpu().await?;
    let started = Instant::now();
    let mut applying = futures::stream::iter(parsed.chunks(batch).map(|events| {
        let store = store.clone();
        async move { apply_events(&*store, events, &settings).await }
    }))
    .buffer_unordered((in_flight / batch).max(1));
    while let Some(r) = applying.next().await {
        let results = r.context("applying events")?;
        for result in &results {
            result.as_ref().map_err(|e| anyhow::anyhow!("applying an event: {e}"))?;
        }
        bar.inc(results.len() as u64);
    }
    bar.finish_and_clear();
    let apply_s = started.elapsed().as_secs_f64();
    let events = parsed.len() as u64;
    let redis_cpu_s = match (cpu_before, store.used_cpu().await?) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };

    let usage = |keys: Vec<Key>| {
        let store = store.clone();
        async move {
            let mut total = 0u64;
            for k in keys {
                total += store.memory_usage(&k).await?.unwrap_or(0);
            }
            anyhow::Ok(total)
        }
    };
    let sample: Vec<&String> = user_bytes.keys().take(2000).collect();
    let mut user_total = 0u64;
    let mut user_event_bytes = 0u64;
    for u in &sample {
        let id = UserId::parse(u.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
        user_total += usage(keys::user_all(&tenant, &id)).await?;
        user_event_bytes += user_bytes.get(*u).copied().unwrap_or(0);
    }
    let session_sample: Vec<&String> = sessions.iter().take(2000).collect();
    let mut session_total = 0u64;
    for s in &session_sample {
        let id = SessionId::parse(s.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
        session_total += usage(vec![keys::session(&tenant, &id)]).await?;
    }
    let mut item_total = 0u64;
    for i in &items {
        let id = ItemId::parse(i.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
        item_total += usage(vec![
            keys::item_attrs(&tenant, &id),
            keys::item_stats(&tenant, &id),
            keys::item_demand(&tenant, &id),
            keys::item_covisit(&tenant, &id),
            keys::item_copurchase(&tenant, &id),
        ])
        .await?;
    }
    let mut guard_total = 0u64;
    for g in &guards {
        guard_total += usage(vec![keys::applied(&tenant, g)]).await?;
    }
    let used_memory = store.used_memory().await?.unwrap_or(0);
    let per = |total: u64, n: usize| if n == 0 { 0.0 } else { total as f64 / n as f64 };
    Ok(MemoryReport {
        users: user_bytes.len(),
        days,
        events,
        apply_s,
        events_per_s: events as f64 / apply_s.max(1e-9),
        batch,
        in_flight,
        redis_cpu_us_per_event: redis_cpu_s.map(|s| s * 1e6 / events.max(1) as f64),
        event_bytes,
        sampled_users: sample.len(),
        bytes_per_user: per(user_total, sample.len()),
        event_bytes_per_user: per(user_event_bytes, sample.len()),
        sampled_sessions: session_sample.len(),
        bytes_per_session: per(session_total, session_sample.len()),
        items: items.len(),
        bytes_per_item: per(item_total, items.len()),
        bytes_per_guard: per(guard_total, guards.len()),
        used_memory_per_user: per(used_memory, user_bytes.len()),
    })
}

pub fn print(r: &MemoryReport) {
    println!(
        "bench memory: {} users, {} days, {} events applied in {:.1} s ({:.0} events/s; {} per round \
         trip, {} in flight; Redis CPU {} us/event)",
        r.users,
        r.days,
        r.events,
        r.apply_s,
        r.events_per_s,
        r.batch,
        r.in_flight,
        r.redis_cpu_us_per_event.map_or_else(|| "?".to_owned(), |us| format!("{us:.0}"))
    );
    println!(
        "  per user    {:>9.0} B in Redis  vs {:>9.0} B of its events as protobuf (ratio {:.2}; {} sampled)",
        r.bytes_per_user,
        r.event_bytes_per_user,
        r.bytes_per_user / r.event_bytes_per_user.max(1.0),
        r.sampled_users
    );
    println!("  per session {:>9.0} B ({} sampled)", r.bytes_per_session, r.sampled_sessions);
    println!("  per item    {:>9.0} B ({} items)", r.bytes_per_item, r.items);
    println!(
        "  per guard   {:>9.0} B (one per applied event, expires after feature.dedup_ttl_hours)",
        r.bytes_per_guard
    );
    println!("  used_memory {:>9.0} B per user, everything included", r.used_memory_per_user);
}
