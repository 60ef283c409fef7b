//! A user's notification preferences: a UTC offset for quiet hours and opt-outs per channel.

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
    /// Minutes east of UTC; None: the tenant's `policy.default_utc_offset`.
    pub utc_offset_min: Option<i32>,
    pub opted_out: Vec<Channel>,
}

pub async fn read(store: &dyn FeatureStore, t: &TenantId, u: &UserId) -> Result<Preferences, StoreError> {
    let mut p = Preferences::default();
    if let Some(Value::Hash(fields)) = store.read(vec![Read::Hash { key: keys::prefs(t, u) }]).await?.pop() {
        for (field, value) in fields {
            let value = String::from_utf8_lossy(&value);
            if field == "utc_offset" {
                p.utc_offset_min = shopmind_config::parse_utc_offset(&value);
            } else if let Some(c) = field.strip_prefix("optout:").and_then(Channel::parse)
                && value == "1"
            {
                p.opted_out.push(c);
            }
        }
    }
    Ok(p)
}

/// Replaces a user's preferences. `utc_offset` is written as `+HH:MM`.
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
