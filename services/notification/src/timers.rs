//! Timers in the store, so that they survive restarts: a tenant's timers are one sorted set
//! (member: the timer, score: when it is due), and the tenants with timers one set. Every
//! replica polls the due timers; a lease (a key set only if absent, with a TTL) gives each due
//! timer to one replica at a time. A timer is removed only after its check is done, and what it
//! publishes has a message id derived from the timer, so a crash between the two fires it again
//! with the same id: once in the stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_domain::TenantId;
use shopmind_metrics::global as metrics;
use shopmind_proto::v1 as pb;
use shopmind_runtime::Shutdown;
use shopmind_store::{FeatureStore, Read, StoreError, Value, Write, WriteBatch};
use tracing::warn;

use crate::rules::{self, Checked};
use crate::{Draft, Kind, NotificationError, Notifier, keys};

/// Due timers taken per tenant and poll.
const BATCH: usize = 200;

/// A pending timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The cart change of `user` at `at` (unix ms): abandoned if nothing changes for `idle_s`.
    CartIdle { user: String, at: i64 },
    /// The order of `user` at `at`: churn risk if no order follows within the drift.
    ChurnCheck { user: String, at: i64 },
    /// A notification deferred by quiet hours (its bytes in `keys::deferred`).
    Deferred { id: String },
}

impl Timer {
    pub fn member(&self) -> String {
        match self {
            Timer::CartIdle { user, at } => format!("cart|{at}|{user}"),
            Timer::ChurnCheck { user, at } => format!("churn|{at}|{user}"),
            Timer::Deferred { id } => format!("deliver|{id}"),
        }
    }

    pub fn parse(member: &str) -> Option<Self> {
        let (kind, rest) = member.split_once('|')?;
        match kind {
            "deliver" => Some(Timer::Deferred { id: rest.to_string() }),
            "cart" | "churn" => {
                let (at, user) = rest.split_once('|')?;
                let (user, at) = (user.to_string(), at.parse().ok()?);
                Some(if kind == "cart" {
                    Timer::CartIdle { user, at }
                } else {
                    Timer::ChurnCheck { user, at }
                })
            }
            _ => None,
        }
    }

    /// The metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            Timer::CartIdle { .. } => "cart_idle",
            Timer::ChurnCheck { .. } => "churn_check",
            Timer::Deferred { .. } => "deferred",
        }
    }
}

/// Schedules (or moves) a timer of tenant `t` to `due` (unix ms).
pub async fn schedule(
    store: &dyn FeatureStore,
    t: &TenantId,
    timer: &Timer,
    due: i64,
) -> Result<(), StoreError> {
    let writes = vec![
        Write::SortedAdd { key: keys::timers(t), member: timer.member(), score: due as f64 },
        Write::SetAdd { key: keys::timer_tenants(), member: t.to_string() },
    ];
    store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    Ok(())
}

/// Keeps a notification (encoded) until `due`, when the timer loop publishes it.
pub async fn defer(
    store: &dyn FeatureStore,
    t: &TenantId,
    id: &str,
    notification: Bytes,
    due: i64,
) -> Result<(), StoreError> {
    let timer = Timer::Deferred { id: id.to_string() };
    let writes = vec![
        Write::HashSet { key: keys::deferred(t), field: id.to_string(), value: notification },
        Write::SortedAdd { key: keys::timers(t), member: timer.member(), score: due as f64 },
        Write::SetAdd { key: keys::timer_tenants(), member: t.to_string() },
    ];
    store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    Ok(())
}

/// The pending timers of a tenant, soonest first: (timer member, due).
pub async fn pending(store: &dyn FeatureStore, t: &TenantId) -> Result<Vec<(String, i64)>, StoreError> {
    let read = Read::SortedRange {
        key: keys::timers(t),
        min: f64::NEG_INFINITY,
        max: f64::INFINITY,
        limit: 100_000,
    };
    Ok(match store.read(vec![read]).await?.pop() {
        Some(Value::Sorted(v)) => v.into_iter().map(|(m, s)| (m, s as i64)).collect(),
        _ => Vec::new(),
    })
}

/// Polls and handles due timers every `notification.timer_poll_ms` until `shutdown`.
pub async fn run(n: Arc<Notifier>, shutdown: Shutdown) {
    let every = Duration::from_millis(n.config.notification.timer_poll_ms);
    loop {
        if let Err(e) = poll_once(&n).await {
            warn!(error = %e, "timer poll failed; will retry");
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Handles the timers due now once; returns how many were handled.
pub async fn poll_once(n: &Notifier) -> Result<usize, NotificationError> {
    let tenants = match n.store.read(vec![Read::Set { key: keys::timer_tenants() }]).await?.pop() {
        Some(Value::Set(t)) => t,
        _ => Vec::new(),
    };
    let mut handled = 0;
    for tenant in tenants {
        let Ok(t) = TenantId::parse(tenant) else { continue };
        let now = n.now().0;
        let read = Read::SortedRange {
            key: keys::timers(&t),
            min: f64::NEG_INFINITY,
            max: now as f64,
            limit: BATCH,
        };
        let Some(Value::Sorted(due)) = n.store.read(vec![read]).await?.pop() else { continue };
        for (member, _) in due {
            let lease = keys::timer_lease(&t, &member);
            let ttl = Duration::from_secs(n.config.notification.timer_lease_s);
            if !n.store.put_if_absent(&lease, Bytes::from_static(b"1"), ttl).await? {
                continue;
            }
            let result = handle(n, &t, &member).await;
            let mut writes = vec![Write::Delete { key: lease }];
            match result {
                Ok(later) => {
                    writes.push(Write::SortedRemove { key: keys::timers(&t), member: member.clone() });
                    if let Some(due) = later {
                        writes.push(Write::SortedAdd { key: keys::timers(&t), member, score: due as f64 });
                    } else if let Some(Timer::Deferred { id }) = Timer::parse(&member) {
                        writes.push(Write::HashDel { key: keys::deferred(&t), field: id });
                    }
                    handled += 1;
                }
                Err(e) => warn!(error = %e, timer = %member, "timer failed; will retry"),
            }
            n.store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
        }
    }
    Ok(handled)
}

/// Checks one due timer; Some(due) to look again later.
async fn handle(n: &Notifier, t: &TenantId, member: &str) -> Result<Option<i64>, NotificationError> {
    let Some(timer) = Timer::parse(member) else {
        warn!(timer = %member, "unknown timer dropped");
        return Ok(None);
    };
    let checked = match &timer {
        Timer::CartIdle { user, at } => rules::check_cart_idle(n, t, user, *at).await?,
        Timer::ChurnCheck { user, at } => rules::check_churn(n, t, user, *at).await?,
        Timer::Deferred { id } => {
            let read = Read::Hash { key: keys::deferred(t) };
            let bytes = match n.store.read(vec![read]).await?.pop() {
                Some(Value::Hash(fields)) => fields.into_iter().find(|(f, _)| f == id).map(|(_, b)| b),
                _ => None,
            };
            match bytes.and_then(|b| pb::Notification::decode(b.as_ref()).ok()) {
                Some(notification) => match Kind::from_proto(notification.kind) {
                    Some(kind) => {
                        let draft = Draft { kind, subject: String::new(), notification };
                        n.deliver_at_stage(&draft, true).await?;
                        Checked::Fired
                    }
                    None => Checked::Silent,
                },
                None => Checked::Silent,
            }
        }
    };
    let (result, later) = match checked {
        Checked::Fired => ("fired", None),
        Checked::Silent => ("silent", None),
        Checked::Later(due) => ("rescheduled", Some(due)),
    };
    metrics().notification_timer(timer.label(), result);
    Ok(later)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_members_round_trip() {
        for t in [
            Timer::CartIdle { user: "u|1".into(), at: 42 },
            Timer::ChurnCheck { user: "u2".into(), at: -1 },
            Timer::Deferred { id: "price_drop:acme:i:u:e".into() },
        ] {
            assert_eq!(Timer::parse(&t.member()), Some(t.clone()));
        }
        assert_eq!(Timer::parse("bogus"), None);
    }
}
