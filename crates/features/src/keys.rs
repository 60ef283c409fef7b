//! The key schema of the store: every key shopmind keeps there is built by a function of this
//! module and nowhere else (docs/FEATURES.md, docs/NOTIFICATIONS.md "State"), and so is the list
//! of where a customer's state lives ([`CUSTOMER_KEY_FAMILIES`], what an erasure deletes).
//!
//! Every key carries the tenant; `{...}` is the Redis Cluster hash tag, so the keys of one user,
//! one session or one item share a slot. The feature keys are at the top level, those of the
//! notification service's own state in [`notification`].

use shopmind_domain::{ConversationId, ItemId, SessionId, TenantId, UserId};
use shopmind_store::{Key, KeyPattern, glob_escape};

/// A key under the hash tag of user `u`: `sm:{<t>:u:<u>}:<what>`.
fn user_key(t: &TenantId, u: &str, what: &str) -> Key {
    Key(format!("sm:{{{t}:u:{u}}}:{what}"))
}

fn user(t: &TenantId, u: &UserId, what: &str) -> Key {
    user_key(t, u.as_str(), what)
}

/// The keys of one kind under the hash tag of each item: `sm:{<t>:i:<item>}:<what>`.
fn item_keys(t: &TenantId, what: &str) -> KeyPattern {
    KeyPattern { prefix: format!("sm:{{{t}:i:"), suffix: format!("}}:{what}") }
}

fn item(t: &TenantId, i: &str, what: &str) -> Key {
    item_keys(t, what).key(i)
}

/// A key under the tenant's hash tag: `sm:{<t>}:<what>`.
fn tenant_key(t: &TenantId, what: &str) -> Key {
    Key(format!("sm:{{{t}}}:{what}"))
}

/// The keys of one kind per conversation, under the tenant's hash tag: `sm:{<t>}:<what>:<id>`.
fn conversation_keys(t: &TenantId, what: &str) -> KeyPattern {
    KeyPattern { prefix: format!("sm:{{{t}}}:{what}:"), suffix: String::new() }
}

/// Recent interactions: sorted set of `kind|unix_ms|item`, scored by time.
pub fn user_recent(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "recent")
}
/// Items bought: sorted set scored by the time of the latest purchase.
pub fn user_bought(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "bought")
}
/// Cart changes: sorted set of `add|…`, `remove|…`, `order|…` entries scored by time;
/// the cart is what folding them in time order leaves.
pub fn user_cart_log(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "cart")
}
/// Orders: hash order id -> `unix_ms|status` (latest by event time).
pub fn user_orders(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "orders")
}
/// Event counts per kind.
pub fn user_counts(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "counts")
}
/// Category affinity: hash category -> decaying score.
pub fn user_affinity(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "affinity")
}
/// RFM: `first_order_ms`, `last_order_ms`, `orders`, `spend:<currency>` (minor units).
pub fn user_rfm(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "rfm")
}
/// The user's items of the co-visitation window.
pub fn user_visit_window(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "visitwin")
}
/// The user's items of the co-purchase window.
pub fn user_purchase_window(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "buywin")
}
/// Item pairs already counted as co-visited by the user (each pair counts once per user).
pub fn user_visit_pairs(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "visitpairs")
}
/// Item pairs already counted as co-purchased by the user.
pub fn user_purchase_pairs(t: &TenantId, u: &UserId) -> Key {
    user(t, u, "buypairs")
}
/// Every per-user key (for TTLs and erasure).
pub fn user_all(t: &TenantId, u: &UserId) -> Vec<Key> {
    vec![
        user_recent(t, u),
        user_bought(t, u),
        user_cart_log(t, u),
        user_orders(t, u),
        user_counts(t, u),
        user_affinity(t, u),
        user_rfm(t, u),
        user_visit_window(t, u),
        user_purchase_window(t, u),
        user_visit_pairs(t, u),
        user_purchase_pairs(t, u),
    ]
}

/// Session counters: views, carts, searches, orders, `first_ms`, `last_ms`, `user`.
pub fn session(t: &TenantId, s: &SessionId) -> Key {
    Key(format!("sm:{{{t}:s:{s}}}:stats"))
}

/// Catalog attributes: title, category, price, currency, stock (each `unix_ms|value`).
pub fn item_attrs(t: &TenantId, i: &ItemId) -> Key {
    item(t, i.as_str(), "attrs")
}
/// Item counters (views, carts, orders, units) and decaying popularity (pop_1h, pop_24h,
/// pop_7d).
pub fn item_stats(t: &TenantId, i: &ItemId) -> Key {
    item(t, i.as_str(), "stats")
}
/// Daily demand: hash day (days since 1970-01-01) -> units ordered.
pub fn item_demand(t: &TenantId, i: &ItemId) -> Key {
    item(t, i.as_str(), "demand")
}
/// Items viewed by the same users close in time: sorted set item -> count, top N kept.
pub fn item_covisit(t: &TenantId, i: &ItemId) -> Key {
    item(t, i.as_str(), "covisit")
}
/// Items bought by the same users: sorted set item -> count, top N kept.
pub fn item_copurchase(t: &TenantId, i: &ItemId) -> Key {
    item(t, i.as_str(), "copurchase")
}
/// Every item's [`item_covisit`].
pub fn covisit_pattern(t: &TenantId) -> KeyPattern {
    item_keys(t, "covisit")
}
/// Every item's [`item_copurchase`].
pub fn copurchase_pattern(t: &TenantId) -> KeyPattern {
    item_keys(t, "copurchase")
}

/// The tenant's all-time popularity: sorted set item -> weighted interactions, top N kept.
pub fn popular(t: &TenantId) -> Key {
    tenant_key(t, "popular")
}

/// A support conversation's statistics (hash; fields in docs/FEATURES.md and
/// [`crate::conversations`]): first and last customer and agent message times, the first
/// agent and every agent's first message, the customer, sentiment per day, `escalated_at`.
pub fn conversation_stats(t: &TenantId, conversation_id: &ConversationId) -> Key {
    conversation_stats_pattern(t).key(conversation_id.as_str())
}
/// Every conversation's [`conversation_stats`].
pub fn conversation_stats_pattern(t: &TenantId) -> KeyPattern {
    conversation_keys(t, "conv_stats")
}
/// A support conversation's messages in time order: sorted set of
/// `<unix_ms>|c|<event_id>` (customer) and `<unix_ms>|a:<agent>|<event_id>` (agent), scored
/// by time; the newest `feature.conversation_messages_cap` kept.
pub fn conversation_messages(t: &TenantId, conversation_id: &ConversationId) -> Key {
    conversation_messages_pattern(t).key(conversation_id.as_str())
}
/// Every conversation's [`conversation_messages`].
pub fn conversation_messages_pattern(t: &TenantId) -> KeyPattern {
    conversation_keys(t, "conv_msgs")
}
/// The conversations with a message on `day` (days since 1970-01-01, UTC): a set of ids.
pub fn conversations_on(t: &TenantId, day: i64) -> Key {
    tenant_key(t, &format!("conv_day:{day}"))
}
/// Every support agent that wrote a message: a set of agent ids.
pub fn support_agents(t: &TenantId) -> Key {
    tenant_key(t, "agents")
}

/// The catalog's items of a category (any level of their category path): sorted set item ->
/// the time of its first `ItemUpserted` (the lowest applied), newest highest.
pub fn category_items(t: &TenantId, category: &str) -> Key {
    tenant_key(t, &format!("cat:{category}:items"))
}

/// Popularity within a category (any level of the items' category path): sorted set item ->
/// weighted interactions, all time, top N kept.
pub fn category_popular(t: &TenantId, category: &str) -> Key {
    tenant_key(t, &format!("cat:{category}:popular"))
}

/// The assistant's state of a conversation (JSON: turns, intents, the order talked about,
/// failures), expiring `assistant.conversation_ttl_s` after the last message.
pub fn conversation(t: &TenantId, c: &ConversationId) -> Key {
    conversation_pattern(t).key(c.as_str())
}
/// Every conversation's [`conversation`].
pub fn conversation_pattern(t: &TenantId) -> KeyPattern {
    conversation_keys(t, "conv")
}

/// The ids of a customer's conversations with the assistant (a set), so that erasing the
/// customer finds their conversation keys.
pub fn user_conversations(t: &TenantId, u: &UserId) -> Key {
    tenant_key(t, &format!("user:{u}:convs"))
}

/// The guard of an applied event.
pub fn applied(t: &TenantId, event_id: &str) -> Key {
    Key(format!("sm:{{{t}:e:{event_id}}}:applied"))
}

/// The notification service's own state (docs/NOTIFICATIONS.md, "State"): a user's keys share
/// the user's tag, an item's the item's, a tenant's timers the tenant's.
pub mod notification {
    use super::{Key, KeyPattern, item, item_keys, tenant_key, user_key};
    use shopmind_domain::{ItemId, TenantId, UserId};

    /// Tenants that have timers (a set, polled by the timer loop).
    pub fn timer_tenants() -> Key {
        Key("sm:{notify}:tenants".into())
    }
    /// Due timers of a tenant: sorted set `<timer>|...` scored by due time (unix ms).
    pub fn timers(t: &TenantId) -> Key {
        tenant_key(t, "ntimers")
    }
    /// Lease of one timer while a replica works on it.
    pub fn timer_lease(t: &TenantId, member: &str) -> Key {
        tenant_key(t, &format!("nlease:{member}"))
    }
    /// Notifications deferred by quiet hours: hash notification id -> protobuf bytes.
    pub fn deferred(t: &TenantId) -> Key {
        tenant_key(t, "ndeferred")
    }
    /// A user's notification preferences: hash `utc_offset`, `optout:<channel>`.
    pub fn prefs(t: &TenantId, u: &UserId) -> Key {
        user_key(t, u.as_str(), "nprefs")
    }
    /// Dedup claim of (rule, user, subject): holds the notification id that claimed it.
    pub fn dedup(t: &TenantId, u: &str, kind: &str, subject: &str) -> Key {
        if u.is_empty() {
            tenant_key(t, &format!("ndedup:{kind}:{subject}"))
        } else {
            user_key(t, u, &format!("ndedup:{kind}:{subject}"))
        }
    }
    /// A user's capped notifications: sorted set notification id -> time.
    pub fn cap(t: &TenantId, u: &str) -> Key {
        user_key(t, u, "ncap")
    }
    /// Marker of a notification published on every channel.
    pub fn sent(t: &TenantId, id: &str) -> Key {
        Key(format!("sm:{{{t}:n:{id}}}:sent"))
    }
    /// The notification service's view of an item: hash `stock`, `price` (`<unix_ms>|<value>`).
    pub fn item_state(t: &TenantId, i: &ItemId) -> Key {
        item(t, i.as_str(), "nstate")
    }
    /// Users waiting for an out-of-stock item: sorted set user -> time they viewed or carted it.
    pub fn item_waiting(t: &TenantId, i: &ItemId) -> Key {
        waiting_pattern(t).key(i.as_str())
    }
    /// Every item's [`item_waiting`].
    pub fn waiting_pattern(t: &TenantId) -> KeyPattern {
        item_keys(t, "nwaiting")
    }
    /// Users who viewed an item: sorted set user -> time of the latest view.
    pub fn item_viewers(t: &TenantId, i: &ItemId) -> Key {
        viewers_pattern(t).key(i.as_str())
    }
    /// Every item's [`item_viewers`].
    pub fn viewers_pattern(t: &TenantId) -> KeyPattern {
        item_keys(t, "nviewers")
    }
}

/// Where per-customer state lives in the store, beyond what the customer's events name (their
/// idempotency guards and sessions): what an erasure deletes (docs/PRIVACY.md, "Erasure").
#[derive(Debug, Clone, Copy)]
pub enum KeyFamily {
    /// Every key under the customer's hash tag ([`user_tagged`]): features (`user_*`),
    /// notification preferences, dedup claims and caps.
    UserTagged { what: &'static str },
    /// Sorted sets of each item with customer ids as members.
    ItemMembers { what: &'static str, sets: fn(&TenantId) -> KeyPattern },
    /// Records listed in a per-customer index set: the index (a set of ids) and the kinds of
    /// record kept per id.
    Indexed {
        what: &'static str,
        index: fn(&TenantId, &UserId) -> Key,
        records: &'static [fn(&TenantId) -> KeyPattern],
    },
}

/// The one list of per-customer key families (see [`KeyFamily`]): a component that keeps
/// per-customer keys elsewhere than under the customer's hash tag adds its family here.
pub const CUSTOMER_KEY_FAMILIES: &[KeyFamily] = &[
    KeyFamily::UserTagged { what: "customer keys" },
    KeyFamily::ItemMembers { what: "back-in-stock waits", sets: notification::waiting_pattern },
    KeyFamily::ItemMembers { what: "price-drop viewers", sets: notification::viewers_pattern },
    // Conversations of the assistant and their statistics, indexed per customer.
    KeyFamily::Indexed {
        what: "conversations",
        index: user_conversations,
        records: &[conversation_pattern, conversation_stats_pattern, conversation_messages_pattern],
    },
];

/// A scan pattern ([`shopmind_store::FeatureStore::scan`]) of every key under the hash tag of
/// user `u`: `sm:{<t>:u:<u>}:*`.
pub fn user_tagged(t: &TenantId, u: &UserId) -> String {
    user_key(t, &glob_escape(u.as_str()), "*").0
}

/// A scan pattern of every key of `keys` (any member).
pub fn scan_pattern(keys: &KeyPattern) -> String {
    format!("{}*{}", glob_escape(&keys.prefix), glob_escape(&keys.suffix))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The key strings are a stored layout: existing data must stay readable.
    #[test]
    fn keys_keep_their_layout() {
        let t = TenantId::parse("acme").unwrap();
        let u = UserId::parse("bob").unwrap();
        let i = ItemId::parse("sku-1").unwrap();
        let s = SessionId::parse("s1").unwrap();
        let c = ConversationId::parse("c1").unwrap();
        let built: Vec<String> = [
            user_all(&t, &u),
            vec![session(&t, &s), item_attrs(&t, &i), item_stats(&t, &i), item_demand(&t, &i)],
            vec![item_covisit(&t, &i), item_copurchase(&t, &i), covisit_pattern(&t).key("x")],
            vec![copurchase_pattern(&t).key("x"), popular(&t), conversation_stats(&t, &c)],
            vec![conversation_messages(&t, &c), conversations_on(&t, 20_000), support_agents(&t)],
            vec![category_items(&t, "Shoes"), category_popular(&t, "Shoes"), conversation(&t, &c)],
            vec![user_conversations(&t, &u), applied(&t, "e1")],
            vec![notification::timer_tenants(), notification::timers(&t), notification::timer_lease(&t, "m")],
            vec![notification::deferred(&t), notification::prefs(&t, &u), notification::cap(&t, "bob")],
            vec![notification::dedup(&t, "bob", "k", "x"), notification::dedup(&t, "", "k", "x")],
            vec![notification::sent(&t, "n1"), notification::item_state(&t, &i)],
            vec![notification::item_waiting(&t, &i), notification::item_viewers(&t, &i)],
        ]
        .concat()
        .into_iter()
        .map(|k| k.0)
        .collect();
        let expected = [
            "sm:{acme:u:bob}:recent",
            "sm:{acme:u:bob}:bought",
            "sm:{acme:u:bob}:cart",
            "sm:{acme:u:bob}:orders",
            "sm:{acme:u:bob}:counts",
            "sm:{acme:u:bob}:affinity",
            "sm:{acme:u:bob}:rfm",
            "sm:{acme:u:bob}:visitwin",
            "sm:{acme:u:bob}:buywin",
            "sm:{acme:u:bob}:visitpairs",
            "sm:{acme:u:bob}:buypairs",
            "sm:{acme:s:s1}:stats",
            "sm:{acme:i:sku-1}:attrs",
            "sm:{acme:i:sku-1}:stats",
            "sm:{acme:i:sku-1}:demand",
            "sm:{acme:i:sku-1}:covisit",
            "sm:{acme:i:sku-1}:copurchase",
            "sm:{acme:i:x}:covisit",
            "sm:{acme:i:x}:copurchase",
            "sm:{acme}:popular",
            "sm:{acme}:conv_stats:c1",
            "sm:{acme}:conv_msgs:c1",
            "sm:{acme}:conv_day:20000",
            "sm:{acme}:agents",
            "sm:{acme}:cat:Shoes:items",
            "sm:{acme}:cat:Shoes:popular",
            "sm:{acme}:conv:c1",
            "sm:{acme}:user:bob:convs",
            "sm:{acme:e:e1}:applied",
            "sm:{notify}:tenants",
            "sm:{acme}:ntimers",
            "sm:{acme}:nlease:m",
            "sm:{acme}:ndeferred",
            "sm:{acme:u:bob}:nprefs",
            "sm:{acme:u:bob}:ncap",
            "sm:{acme:u:bob}:ndedup:k:x",
            "sm:{acme}:ndedup:k:x",
            "sm:{acme:n:n1}:sent",
            "sm:{acme:i:sku-1}:nstate",
            "sm:{acme:i:sku-1}:nwaiting",
            "sm:{acme:i:sku-1}:nviewers",
        ];
        assert_eq!(built, expected);
    }

    /// What an erasure scans for and deletes, per family.
    #[test]
    fn customer_families_name_the_keys_their_builders_make() {
        let t = TenantId::parse("acme").unwrap();
        let u = UserId::parse("b*b").unwrap();
        assert_eq!(user_tagged(&t, &u), r"sm:{acme:u:b\*b}:*");
        let mut found = Vec::new();
        for family in CUSTOMER_KEY_FAMILIES {
            match *family {
                KeyFamily::UserTagged { .. } => {}
                KeyFamily::ItemMembers { sets, .. } => found.push(scan_pattern(&sets(&t))),
                KeyFamily::Indexed { index, records, .. } => {
                    found.push(index(&t, &u).0);
                    found.extend(records.iter().map(|r| r(&t).key("c1").0));
                }
            }
        }
        assert_eq!(
            found,
            [
                "sm:{acme:i:*}:nwaiting",
                "sm:{acme:i:*}:nviewers",
                "sm:{acme}:user:b*b:convs",
                "sm:{acme}:conv:c1",
                "sm:{acme}:conv_stats:c1",
                "sm:{acme}:conv_msgs:c1",
            ]
        );
        assert_eq!(scan_pattern(&conversation_pattern(&t)), "sm:{acme}:conv:*");
    }
}
