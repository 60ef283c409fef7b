//! The notification service's own state in the store (docs/NOTIFICATIONS.md, "State"). Every
//! key carries the tenant and a Redis Cluster hash tag: a user's keys share the user's tag, an
//! item's the item's, a tenant's timers the tenant's.

use shopmind_domain::{ItemId, TenantId, UserId};
use shopmind_store::Key;

fn user(t: &TenantId, u: &str, what: &str) -> Key {
    Key(format!("sm:{{{t}:u:{u}}}:{what}"))
}

fn item(t: &TenantId, i: &ItemId, what: &str) -> Key {
    Key(format!("sm:{{{t}:i:{i}}}:{what}"))
}

/// Tenants that have timers (a set, polled by the timer loop).
pub fn timer_tenants() -> Key {
    Key("sm:{notify}:tenants".into())
}
/// Due timers of a tenant: sorted set `<timer>|...` scored by due time (unix ms).
pub fn timers(t: &TenantId) -> Key {
    Key(format!("sm:{{{t}}}:ntimers"))
}
/// Lease of one timer while a replica works on it.
pub fn timer_lease(t: &TenantId, member: &str) -> Key {
    Key(format!("sm:{{{t}}}:nlease:{member}"))
}
/// Notifications deferred by quiet hours: hash notification id -> protobuf bytes.
pub fn deferred(t: &TenantId) -> Key {
    Key(format!("sm:{{{t}}}:ndeferred"))
}
/// A user's notification preferences: hash `utc_offset`, `optout:<channel>`.
pub fn prefs(t: &TenantId, u: &UserId) -> Key {
    user(t, u.as_str(), "nprefs")
}
/// Dedup claim of (rule, user, subject): holds the notification id that claimed it.
pub fn dedup(t: &TenantId, u: &str, kind: &str, subject: &str) -> Key {
    if u.is_empty() {
        Key(format!("sm:{{{t}}}:ndedup:{kind}:{subject}"))
    } else {
        user(t, u, &format!("ndedup:{kind}:{subject}"))
    }
}
/// A user's capped notifications: sorted set notification id -> time.
pub fn cap(t: &TenantId, u: &str) -> Key {
    user(t, u, "ncap")
}
/// Marker of a notification published on every channel.
pub fn sent(t: &TenantId, id: &str) -> Key {
    Key(format!("sm:{{{t}:n:{id}}}:sent"))
}
/// The notification service's view of an item: hash `stock`, `price` (`<unix_ms>|<value>`).
pub fn item_state(t: &TenantId, i: &ItemId) -> Key {
    item(t, i, "nstate")
}
/// Users waiting for an out-of-stock item: sorted set user -> time they viewed or carted it.
pub fn item_waiting(t: &TenantId, i: &ItemId) -> Key {
    item(t, i, "nwaiting")
}
/// Users who viewed an item: sorted set user -> time of the latest view.
pub fn item_viewers(t: &TenantId, i: &ItemId) -> Key {
    item(t, i, "nviewers")
}
