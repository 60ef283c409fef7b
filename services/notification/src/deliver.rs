//! The policies and the publishing of a notification: opt-out, dedup, quiet hours, frequency
//! cap, then one message per channel, each with a message id derived from the notification id.

use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use prost::Message as _;
use shopmind_bus::{Headers, Message};
use shopmind_config::TenantNotifications;
use shopmind_domain::{TenantId, UserId};
use shopmind_metrics::global as metrics;
use shopmind_runtime::topology;
use shopmind_store::{Read, Value, Write, WriteBatch};
use tracing::info;

use crate::prefs::{self, Channel};
use crate::{Draft, NotificationError, Notifier, keys, timers};

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

/// When the quiet hours `[start, end)` (local hours in `zone`, daylight saving time followed)
/// that `now_ms` is in end, in unix ms; None when `now_ms` is not in them. The end is the first
/// local `end:00` after `now_ms`; when a clock change skips it, the first instant after the gap.
pub fn quiet_until(now_ms: i64, zone: &TimeZone, start: u32, end: u32) -> Option<i64> {
    if start == end {
        return None;
    }
    let local = zone.to_datetime(Timestamp::from_millisecond(now_ms).ok()?);
    let hour = u32::try_from(local.hour()).unwrap_or(0);
    let quiet = if start < end { hour >= start && hour < end } else { hour >= start || hour < end };
    if !quiet {
        return None;
    }
    let end_today = local.date().at(i8::try_from(end).ok()?, 0, 0, 0);
    let end_local = if end_today > local { end_today } else { end_today.tomorrow().ok()? };
    let until = zone.to_ambiguous_timestamp(end_local).compatible().ok()?.as_millisecond();
    // A repeated (fall-back) hour can map the local end to an instant not after now.
    (until > now_ms).then_some(until)
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
                let zone = prefs.zone(policy);
                if let Some(until) = quiet_until(now, &zone, policy.quiet_start_hour, policy.quiet_end_hour) {
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const DAY_MS: i64 = 86_400_000;

    fn offset(minutes: i32) -> TimeZone {
        shopmind_config::fixed_time_zone(minutes)
    }

    fn ms(utc: &str) -> i64 {
        utc.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn quiet_hours_span_midnight_in_local_time() {
        let day = 20_000 * DAY_MS;
        let utc = offset(0);
        // 22:00-08:00 UTC.
        assert_eq!(quiet_until(day + 23 * H, &utc, 22, 8), Some(day + DAY_MS + 8 * H));
        assert_eq!(quiet_until(day + 3 * H, &utc, 22, 8), Some(day + 8 * H));
        assert_eq!(quiet_until(day + 8 * H, &utc, 22, 8), None, "the end is not quiet");
        assert_eq!(quiet_until(day + 12 * H, &utc, 22, 8), None);
        // At UTC+02:00, 21:00 UTC is 23:00 local: quiet until 08:00 local = 06:00 UTC.
        assert_eq!(quiet_until(day + 21 * H, &offset(120), 22, 8), Some(day + DAY_MS + 6 * H));
        // At UTC-05:00, 02:00 UTC is 21:00 local: not quiet.
        assert_eq!(quiet_until(day + 2 * H, &offset(-300), 22, 8), None);
        // A window within one day, and none.
        assert_eq!(quiet_until(day + 13 * H, &utc, 12, 14), Some(day + 14 * H));
        assert_eq!(quiet_until(day + 13 * H, &utc, 5, 5), None);
    }

    #[test]
    fn quiet_hours_follow_daylight_saving_time() {
        let berlin = shopmind_config::parse_time_zone("Europe/Berlin").unwrap();
        // 21:30 UTC is 23:30 CEST in summer (quiet until 08:00 CEST = 06:00 UTC) but 22:30 CET
        // in winter (quiet until 08:00 CET = 07:00 UTC).
        assert_eq!(quiet_until(ms("2026-07-15T21:30:00Z"), &berlin, 22, 8), Some(ms("2026-07-16T06:00:00Z")));
        assert_eq!(quiet_until(ms("2026-01-15T21:30:00Z"), &berlin, 22, 8), Some(ms("2026-01-16T07:00:00Z")));
        // 20:30 UTC: 22:30 CEST (quiet) in summer, 21:30 CET (not quiet) in winter.
        assert!(quiet_until(ms("2026-07-15T20:30:00Z"), &berlin, 22, 8).is_some());
        assert_eq!(quiet_until(ms("2026-01-15T20:30:00Z"), &berlin, 22, 8), None);
        // A night the clocks go forward (29 March 2026, 02:00 CET -> 03:00 CEST): 23:00 CET
        // on the 28th ends at 08:00 CEST = 06:00 UTC, nine local hours but eight real ones.
        assert_eq!(quiet_until(ms("2026-03-28T22:00:00Z"), &berlin, 22, 8), Some(ms("2026-03-29T06:00:00Z")));
        // A night they go back (25 October 2026): 23:00 CEST ends at 08:00 CET = 07:00 UTC.
        assert_eq!(quiet_until(ms("2026-10-24T21:00:00Z"), &berlin, 22, 8), Some(ms("2026-10-25T07:00:00Z")));
        // An end hour the spring change skips (02:00 on 29 March): the first instant after it.
        assert_eq!(quiet_until(ms("2026-03-29T00:30:00Z"), &berlin, 1, 2), Some(ms("2026-03-29T01:00:00Z")));
        // New York: 03:30 UTC is 23:30 EDT in summer, 22:30 EST in winter; both quiet to 08:00 local.
        let ny = shopmind_config::parse_time_zone("America/New_York").unwrap();
        assert_eq!(quiet_until(ms("2026-07-16T03:30:00Z"), &ny, 22, 8), Some(ms("2026-07-16T12:00:00Z")));
        assert_eq!(quiet_until(ms("2026-01-16T03:30:00Z"), &ny, 22, 8), Some(ms("2026-01-16T13:00:00Z")));
    }
}
