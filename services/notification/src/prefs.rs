//! A user's notification preferences: a time zone for quiet hours (an IANA name, daylight saving
//! time followed, or a fixed UTC offset) and opt-outs per channel.

use jiff::tz::TimeZone;
use shopmind_config::{PolicyConfig, fixed_time_zone, parse_time_zone, parse_utc_offset};
use shopmind_domain::{TenantId, UserId};
use shopmind_store::{FeatureStore, Read, StoreError, Value, Write, WriteBatch};

use crate::keys;

/// The delivery channels a user can opt out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// The NATS subject `sm.notify.<tenant>.<audience>` and the gRPC `StreamNotifications`
    /// (both read stream SM_NOTIFICATIONS).
    Stream,
    /// The tenant's webhook endpoints.
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Stream, Channel::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Stream => "stream",
            Channel::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preferences {
    /// An IANA time zone name (`Europe/Berlin`) or a UTC offset (`+02:00`); it wins over
    /// `utc_offset_min`. None: `utc_offset_min`, else the tenant's default.
    pub time_zone: Option<String>,
    /// Minutes east of UTC, all year; None: the tenant's `policy.default_time_zone`, else
    /// `policy.default_utc_offset`.
    pub utc_offset_min: Option<i32>,
    pub opted_out: Vec<Channel>,
}

impl Preferences {
    /// The time zone quiet hours are computed in: the user's zone, else the user's offset, else
    /// `policy.default_time_zone`, else `policy.default_utc_offset`, else UTC.
    pub fn zone(&self, policy: &PolicyConfig) -> TimeZone {
        self.time_zone
            .as_deref()
            .and_then(parse_time_zone)
            .or_else(|| self.utc_offset_min.map(fixed_time_zone))
            .or_else(|| {
                Some(policy.default_time_zone.as_str()).filter(|z| !z.is_empty()).and_then(parse_time_zone)
            })
            .or_else(|| parse_time_zone(&policy.default_utc_offset))
            .unwrap_or(TimeZone::UTC)
    }
}

/// Checks a time zone given by a user: an IANA name of the bundled tz database or `+HH:MM`.
pub fn validate_time_zone(zone: &str) -> Result<(), String> {
    match parse_time_zone(zone) {
        Some(_) => Ok(()),
        None => Err(format!(
            "unknown time zone {zone:?}: expected an IANA name such as Europe/Berlin or America/New_York, \
             or a UTC offset +HH:MM"
        )),
    }
}

pub async fn read(store: &dyn FeatureStore, t: &TenantId, u: &UserId) -> Result<Preferences, StoreError> {
    let mut p = Preferences::default();
    if let Some(Value::Hash(fields)) = store.read(vec![Read::Hash { key: keys::prefs(t, u) }]).await?.pop() {
        for (field, value) in fields {
            let value = String::from_utf8_lossy(&value);
            if field == "utc_offset" {
                p.utc_offset_min = parse_utc_offset(&value);
            } else if field == "time_zone" {
                p.time_zone = Some(value.into_owned());
            } else if let Some(c) = field.strip_prefix("optout:").and_then(Channel::parse)
                && value == "1"
            {
                p.opted_out.push(c);
            }
        }
    }
    Ok(p)
}

/// Replaces a user's preferences. `utc_offset` is written as `+HH:MM`, `time_zone` as given
/// (check it with [`validate_time_zone`] first).
pub async fn write(
    store: &dyn FeatureStore,
    t: &TenantId,
    u: &UserId,
    p: &Preferences,
) -> Result<(), StoreError> {
    let key = keys::prefs(t, u);
    let mut writes = vec![Write::Delete { key: key.clone() }];
    if let Some(min) = p.utc_offset_min {
        let sign = if min < 0 { '-' } else { '+' };
        let text = format!("{sign}{:02}:{:02}", min.abs() / 60, min.abs() % 60);
        writes.push(Write::HashSet { key: key.clone(), field: "utc_offset".into(), value: text.into() });
    }
    if let Some(zone) = &p.time_zone {
        writes.push(Write::HashSet {
            key: key.clone(),
            field: "time_zone".into(),
            value: zone.clone().into(),
        });
    }
    for c in &p.opted_out {
        writes.push(Write::HashSet {
            key: key.clone(),
            field: format!("optout:{}", c.as_str()),
            value: "1".into(),
        });
    }
    store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    Ok(())
}
