//! The policies and the publishing of a notification: opt-out, dedup, quiet hours, frequency
//! cap, then one message per channel, each with a message id derived from the notification id.

use std::time::Duration;

use bytes::Bytes;
use prost::Message as _;
use shopmind_bus::{Headers, Message};
use shopmind_config::{TenantNotifications, parse_utc_offset};
use shopmind_domain::{TenantId, UserId};
use shopmind_metrics::global as metrics;
use shopmind_runtime::topology;
use shopmind_store::{Read, Value, Write, WriteBatch};
use tracing::info;

use crate::prefs::{self, Channel};
use crate::{Draft, NotificationError, Notifier, keys, timers};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// What became of a draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// Published on at least one channel.
    Published,
    /// Published before (the same notification id): nothing new.
    Duplicate,
    /// The same rule, user and subject notified within the dedup window.
    Deduped,
    /// The user reached the frequency cap.
    Capped,
    /// Quiet hours: kept and published when they end.
    Deferred,
    /// The user opted out of every channel it would go to.
    OptedOut,
}

impl Delivered {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivered::Published => "published",
            Delivered::Duplicate => "duplicate",
            Delivered::Deduped => "deduped",
            Delivered::Capped => "capped",
            Delivered::Deferred => "deferred",
            Delivered::OptedOut => "opted_out",
        }
    }
}

/// When the quiet hours `[start, end)` (local hours at `offset_min` east of UTC) that `now_ms` is
/// in end, in unix ms; None when `now_ms` is not in them.
pub fn quiet_until(now_ms: i64, offset_min: i32, start: u32, end: u32) -> Option<i64> {
    if start == end {
        return None;
    }
    let offset = i64::from(offset_min) * 60_000;
    let local = now_ms + offset;
    let hour = u32::try_from(local.rem_euclid(DAY_MS) / HOUR_MS).unwrap_or(0);
    let quiet = if start < end { hour >= start && hour < end } else { hour >= start || hour < end };
    if !quiet {
        return None;
    }
    let end_today = local.div_euclid(DAY_MS) * DAY_MS + i64::from(end) * HOUR_MS;
    let end_local = if end_today > local { end_today } else { end_today + DAY_MS };
    Some(end_local - offset)
}

impl Notifier {
    /// Runs a fresh draft through the policies and publishes it.
    pub async fn deliver(&self, draft: &Draft) -> Result<Delivered, NotificationError> {
        self.deliver_at_stage(draft, false).await
    }

    /// `deferred`: the draft comes back at the end of quiet hours; dedup and quiet hours were
    /// applied when it was deferred.
    pub(crate) async fn deliver_at_stage(
        &self,
        draft: &Draft,
        deferred: bool,
    ) -> Result<Delivered, NotificationError> {
        let outcome = self.apply_policies(draft, deferred).await?;
        let kind = draft.kind.as_str();
        if outcome != Delivered::Published {
            metrics().notification_outcome(kind, "any", outcome.as_str());
        }
        info!(
            id = %draft.notification.notification_id,
            kind,
            outcome = outcome.as_str(),
            "notification"
        );
        Ok(outcome)
    }

    async fn apply_policies(&self, draft: &Draft, deferred: bool) -> Result<Delivered, NotificationError> {
        let n = &draft.notification;
        let Ok(tenant) = TenantId::parse(n.tenant.clone()) else { return Ok(Delivered::OptedOut) };
        let tc = self.config.notification.tenant(tenant.as_str());
        let policy = &tc.policy;
        let kind = draft.kind.as_str();
        let customer = n.audience == "customer" && !n.user_id.is_empty();
        let user = if customer { UserId::parse(n.user_id.clone()).ok() } else { None };
        let now = self.now().0;

        if self.store.read(vec![Read::Exists { key: keys::sent(&tenant, &n.notification_id) }]).await?
            == vec![Value::Exists(true)]
        {
            metrics().notification_outcome(kind, "any", "duplicate");
            return Ok(Delivered::Duplicate);
        }

        // Opt-out.
        let prefs = match &user {
            Some(u) => prefs::read(&*self.store, &tenant, u).await?,
            None => prefs::Preferences::default(),
        };
        let channels: Vec<Channel> =
            Channel::ALL.into_iter().filter(|c| !prefs.opted_out.contains(c)).collect();
        if channels.is_empty() {
            return Ok(Delivered::OptedOut);
        }

        let mut dedup_claim = None;
        if !deferred {
            // Dedup: the first notification of (rule, user, subject) within the window claims
            // it; the same notification again (a retry) passes.
            let key = keys::dedup(&tenant, &n.user_id, kind, &draft.subject);
            let window = Duration::from_secs(policy.dedup_window_s);
            let id = Bytes::from(n.notification_id.clone());
            if !self.store.put_if_absent(&key, id.clone(), window).await? {
                let holder = self.store.read(vec![Read::Get { key: key.clone() }]).await?.pop();
                if holder != Some(Value::Get(Some(id))) {
                    return Ok(Delivered::Deduped);
                }
            }
            dedup_claim = Some(key);

            // Quiet hours: deferred to their end.
            if customer && policy.quiet_kinds.iter().any(|k| k == kind) {
                let offset = prefs
                    .utc_offset_min
                    .or_else(|| parse_utc_offset(&policy.default_utc_offset))
                    .unwrap_or(0);
                if let Some(until) = quiet_until(now, offset, policy.quiet_start_hour, policy.quiet_end_hour)
                {
                    let bytes = Bytes::from(n.encode_to_vec());
                    timers::defer(&*self.store, &tenant, &n.notification_id, bytes, until).await?;
                    return Ok(Delivered::Deferred);
                }
            }
        }

        // Frequency cap.
        if customer && policy.capped_kinds.iter().any(|k| k == kind) {
            let key = keys::cap(&tenant, &n.user_id);
            let window_ms = i64::try_from(policy.frequency_window_s.saturating_mul(1000)).unwrap_or(i64::MAX);
            let limit = policy.frequency_cap as usize;
            let read = Read::SortedRange {
                key: key.clone(),
                min: (now - window_ms) as f64,
                max: f64::INFINITY,
                limit: limit + 64,
            };
            let counted = match self.store.read(vec![read]).await?.pop() {
                Some(Value::Sorted(members)) => members,
                _ => Vec::new(),
            };
            if !counted.iter().any(|(m, _)| *m == n.notification_id) {
                if counted.len() >= limit {
                    // A dropped notification does not hold the dedup claim.
                    if let Some(key) = dedup_claim {
                        self.store
                            .write(WriteBatch {
                                writes: vec![Write::Delete { key }],
                                atomic: false,
                                guard: None,
                            })
                            .await?;
                    }
                    return Ok(Delivered::Capped);
                }
                let writes = vec![
                    Write::SortedAdd {
                        key: key.clone(),
                        member: n.notification_id.clone(),
                        score: now as f64,
                    },
                    Write::SortedKeepTop { key: key.clone(), keep: limit + 64 },
                    Write::Expire { key, ttl: Duration::from_secs(policy.frequency_window_s) },
                ];
                self.store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
            }
        }

        self.publish(&tenant, tc, draft, &channels).await?;
        let marker = keys::sent(&tenant, &n.notification_id);
        let ttl = Duration::from_secs(policy.dedup_window_s.max(86_400));
        self.store.put_if_absent(&marker, Bytes::from_static(b"1"), ttl).await?;
        Ok(Delivered::Published)
    }

    /// Publishes to every channel left: each webhook endpoint that takes the notification's
    /// audience and kind, then the stream.
    async fn publish(
        &self,
        tenant: &TenantId,
        tc: &TenantNotifications,
        draft: &Draft,
        channels: &[Channel],
    ) -> Result<(), NotificationError> {
        let n = &draft.notification;
        let kind = draft.kind.as_str();
        let payload = Bytes::from(n.encode_to_vec());
        let mut headers = Headers::new();
        let incoming = crate::INCOMING_TRACE.try_with(Clone::clone).ok().flatten();
        headers.set_trace(&shopmind_runtime::telemetry::outgoing(&tracing::Span::current(), incoming));
        if channels.contains(&Channel::Webhook) {
            for w in &tc.webhooks {
                let takes = (w.audiences.is_empty() || w.audiences.contains(&n.audience))
                    && (w.kinds.is_empty() || w.kinds.iter().any(|k| k == kind));
                if !takes {
                    continue;
                }
                let message = Message {
                    subject: topology::webhook_subject(tenant, &w.name),
                    headers: headers.clone(),
                    payload: payload.clone(),
                };
                let p = self.bus.publish(message, Some(&format!("{}:{}", n.notification_id, w.name))).await?;
                metrics().notification_outcome(
                    kind,
                    "webhook",
                    if p.duplicate { "duplicate" } else { "published" },
                );
            }
        }
        if channels.contains(&Channel::Stream) {
            let message =
                Message { subject: topology::notification_subject(tenant, &n.audience), headers, payload };
            let p = self.bus.publish(message, Some(&n.notification_id)).await?;
            metrics().notification(if p.duplicate {
                shopmind_metrics::Notified::Duplicate
            } else {
                shopmind_metrics::Notified::Published
            });
            metrics().notification_outcome(
                kind,
                "stream",
                if p.duplicate { "duplicate" } else { "published" },
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_MS;

    #[test]
    fn quiet_hours_span_midnight_in_local_time() {
        let day = 20_000 * DAY_MS;
        // 22:00-08:00 UTC.
        assert_eq!(quiet_until(day + 23 * H, 0, 22, 8), Some(day + DAY_MS + 8 * H));
        assert_eq!(quiet_until(day + 3 * H, 0, 22, 8), Some(day + 8 * H));
        assert_eq!(quiet_until(day + 8 * H, 0, 22, 8), None, "the end is not quiet");
        assert_eq!(quiet_until(day + 12 * H, 0, 22, 8), None);
        // At UTC+02:00, 21:00 UTC is 23:00 local: quiet until 08:00 local = 06:00 UTC.
        assert_eq!(quiet_until(day + 21 * H, 120, 22, 8), Some(day + DAY_MS + 6 * H));
        // At UTC-05:00, 02:00 UTC is 21:00 local: not quiet.
        assert_eq!(quiet_until(day + 2 * H, -300, 22, 8), None);
        // A window within one day, and none.
        assert_eq!(quiet_until(day + 13 * H, 0, 12, 14), Some(day + 14 * H));
        assert_eq!(quiet_until(day + 13 * H, 0, 5, 5), None);
    }
}
