//! The feature schema over a [`FeatureStore`]: which keys hold what ([`keys`]), how an event
//! changes them ([`apply_event`]), and how services read them in one round trip
//! ([`read_user_context`]).
//!
//! Key schema (every key carries the tenant; `{...}` is the Redis Cluster hash tag, so all keys of
//! one user, or of one item, live in one slot):
//!
//! | key                              | type       | content |
//! |----------------------------------|------------|---------|
//! | `sm:{<t>:u:<user>}:recent`       | list       | newest first, `kind|unix_ms|item`, capped |
//! | `sm:{<t>:u:<user>}:bought`       | set        | items the user ordered |
//! | `sm:{<t>:u:<user>}:cart`         | hash       | item -> quantity |
//! | `sm:{<t>:u:<user>}:orders`       | hash       | order id -> latest status |
//! | `sm:{<t>:u:<user>}:counts`       | hash       | event kind -> count |
//! | `sm:{<t>:i:<item>}:attrs`        | hash       | title, category, price, currency, stock |
//! | `sm:{<t>}:popular`               | sorted set | item -> weighted interaction count, top N kept |
//! | `sm:{<t>:e:<event_id>}:applied`  | string     | marker of an applied event, with a TTL |
//!
//! User keys expire `user_ttl` after the user's last event; markers after `dedup_ttl`.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use shopmind_domain::{Event, Interaction, InteractionKind, ItemId, Payload, TenantId, UnixMillis, UserId};
use shopmind_store::{FeatureStore, Key, Read, StoreError, Value, Write, WriteBatch};

pub mod keys {
    use super::*;

    fn user(t: &TenantId, u: &UserId, what: &str) -> Key {
        Key(format!("sm:{{{t}:u:{u}}}:{what}"))
    }

    pub fn user_recent(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "recent")
    }

    pub fn user_bought(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "bought")
    }

    pub fn user_cart(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "cart")
    }

    pub fn user_orders(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "orders")
    }

    pub fn user_counts(t: &TenantId, u: &UserId) -> Key {
        user(t, u, "counts")
    }

    pub fn item_attrs(t: &TenantId, i: &ItemId) -> Key {
        Key(format!("sm:{{{t}:i:{i}}}:attrs"))
    }

    pub fn popular(t: &TenantId) -> Key {
        Key(format!("sm:{{{t}}}:popular"))
    }

    pub fn applied(t: &TenantId, event_id: &str) -> Key {
        Key(format!("sm:{{{t}:e:{event_id}}}:applied"))
    }
}

/// Bounds of the feature state.
#[derive(Debug, Clone, Copy)]
pub struct FeatureSettings {
    pub recent_cap: usize,
    pub popular_cap: usize,
    pub user_ttl: Duration,
    pub dedup_ttl: Duration,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            recent_cap: 100,
            popular_cap: 10_000,
            user_ttl: Duration::from_secs(90 * 86_400),
            dedup_ttl: Duration::from_secs(48 * 3600),
        }
    }
}

/// Popularity weight of an interaction kind.
pub fn popularity_weight(kind: InteractionKind) -> f64 {
    match kind {
        InteractionKind::View => 1.0,
        InteractionKind::Cart => 2.0,
        InteractionKind::Purchase => 3.0,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event's effect is now stored.
    Applied,
    /// The event was applied before (a redelivery or a re-publish); nothing changed.
    Duplicate,
}

fn encode_interaction(i: &Interaction) -> Bytes {
    Bytes::from(format!("{}|{}|{}", i.kind.as_str(), i.at.0, i.item))
}

fn decode_interaction(b: &[u8]) -> Option<Interaction> {
    let s = std::str::from_utf8(b).ok()?;
    let mut parts = s.splitn(3, '|');
    let kind = InteractionKind::parse(parts.next()?)?;
    let at = UnixMillis(parts.next()?.parse().ok()?);
    let item = ItemId::parse(parts.next()?).ok()?;
    Some(Interaction { item, kind, at })
}

/// The writes that apply `event` (without the idempotency marker).
pub fn writes_for(event: &Event, s: &FeatureSettings) -> Vec<Write> {
    let t = &event.tenant;
    let mut w = Vec::new();
    let mut touched_users = false;
    if let Some(u) = &event.user {
        for i in event.interactions() {
            w.push(Write::ListPushCapped {
                key: keys::user_recent(t, u),
                value: encode_interaction(&i),
                cap: s.recent_cap,
            });
            w.push(Write::SortedIncr {
                key: keys::popular(t),
                member: i.item.to_string(),
                by: popularity_weight(i.kind),
            });
        }
        w.push(Write::HashIncr { key: keys::user_counts(t, u), field: event.kind().as_str().into(), by: 1 });
        match &event.payload {
            Payload::AddedToCart { item, quantity, .. } => {
                w.push(Write::HashIncr {
                    key: keys::user_cart(t, u),
                    field: item.to_string(),
                    by: i64::from(*quantity),
                });
            }
            Payload::RemovedFromCart { item, quantity } => {
                w.push(Write::HashIncr {
                    key: keys::user_cart(t, u),
                    field: item.to_string(),
                    by: -i64::from(*quantity),
                });
            }
            Payload::OrderPlaced { order, lines } => {
                for l in lines {
                    w.push(Write::SetAdd { key: keys::user_bought(t, u), member: l.item.to_string() });
                    w.push(Write::HashDel { key: keys::user_cart(t, u), field: l.item.to_string() });
                }
                w.push(Write::HashSet {
                    key: keys::user_orders(t, u),
                    field: order.to_string(),
                    value: Bytes::from_static(b"placed"),
                });
            }
            Payload::OrderStatusChanged { order, status } => {
                w.push(Write::HashSet {
                    key: keys::user_orders(t, u),
                    field: order.to_string(),
                    value: Bytes::from(status.as_str()),
                });
            }
            _ => {}
        }
        touched_users = true;
    }
    match &event.payload {
        Payload::ItemUpserted(item) => {
            let key = keys::item_attrs(t, &item.item);
            w.push(Write::HashSet {
                key: key.clone(),
                field: "title".into(),
                value: Bytes::from(item.title.clone()),
            });
            w.push(Write::HashSet {
                key: key.clone(),
                field: "category".into(),
                value: Bytes::from(item.category_path.join(" > ")),
            });
            if let Some(p) = &item.price {
                w.push(Write::HashSet {
                    key: key.clone(),
                    field: "price".into(),
                    value: Bytes::from(p.amount_minor.to_string()),
                });
                w.push(Write::HashSet {
                    key,
                    field: "currency".into(),
                    value: Bytes::from(p.currency.clone()),
                });
            }
        }
        Payload::InventoryChanged { item, available } => {
            w.push(Write::HashSet {
                key: keys::item_attrs(t, item),
                field: "stock".into(),
                value: Bytes::from(available.to_string()),
            });
        }
        _ => {}
    }
    if !event.interactions().is_empty() {
        w.push(Write::SortedKeepTop { key: keys::popular(t), keep: s.popular_cap });
    }
    if touched_users && let Some(u) = &event.user {
        for key in [
            keys::user_recent(t, u),
            keys::user_bought(t, u),
            keys::user_cart(t, u),
            keys::user_orders(t, u),
            keys::user_counts(t, u),
        ] {
            w.push(Write::Expire { key, ttl: s.user_ttl });
        }
    }
    w
}

/// Applies an event's effect once: a second call with the same event id (a redelivery) changes
/// nothing and returns [`Applied::Duplicate`]. The effect and the marker are written in one
/// atomic batch, so a crash leaves either both or neither.
pub async fn apply_event(
    store: &dyn FeatureStore,
    event: &Event,
    s: &FeatureSettings,
) -> Result<Applied, StoreError> {
    let marker = keys::applied(&event.tenant, event.id.as_str());
    if let [Value::Exists(true)] = store.read(vec![Read::Exists { key: marker.clone() }]).await?.as_slice() {
        return Ok(Applied::Duplicate);
    }
    let mut writes = writes_for(event, s);
    writes.push(Write::Put { key: marker.clone(), value: Bytes::from_static(b"1") });
    writes.push(Write::Expire { key: marker, ttl: s.dedup_ttl });
    store.write(WriteBatch { writes, atomic: true }).await?;
    Ok(Applied::Applied)
}

/// What inference needs about a user, read in one round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserContext {
    /// Newest first.
    pub recent: Vec<Interaction>,
    pub bought: BTreeSet<ItemId>,
    /// Items with a positive quantity in the cart.
    pub cart: BTreeSet<ItemId>,
    /// The tenant's most popular items, most popular first.
    pub popular: Vec<(ItemId, f64)>,
}

pub async fn read_user_context(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    user: &UserId,
    history_len: usize,
    popular_n: usize,
) -> Result<UserContext, StoreError> {
    let values = store
        .read(vec![
            Read::List { key: keys::user_recent(tenant, user), limit: history_len },
            Read::Set { key: keys::user_bought(tenant, user) },
            Read::Hash { key: keys::user_cart(tenant, user) },
            Read::SortedTop { key: keys::popular(tenant), n: popular_n },
        ])
        .await?;
    let mut ctx = UserContext::default();
    for v in values {
        match v {
            Value::List(entries) => {
                ctx.recent = entries.iter().filter_map(|b| decode_interaction(b)).collect()
            }
            Value::Set(members) => {
                ctx.bought = members.into_iter().filter_map(|m| ItemId::parse(m).ok()).collect()
            }
            Value::Hash(fields) => {
                ctx.cart = fields
                    .into_iter()
                    .filter(|(_, q)| {
                        std::str::from_utf8(q).ok().and_then(|q| q.parse::<i64>().ok()).is_some_and(|q| q > 0)
                    })
                    .filter_map(|(item, _)| ItemId::parse(item).ok())
                    .collect();
            }
            Value::Sorted(top) => {
                ctx.popular =
                    top.into_iter().filter_map(|(m, s)| ItemId::parse(m).ok().map(|i| (i, s))).collect();
            }
            _ => {}
        }
    }
    Ok(ctx)
}

/// The latest status of each of a user's orders.
pub async fn read_orders(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Vec<(String, String)>, StoreError> {
    let values = store.read(vec![Read::Hash { key: keys::user_orders(tenant, user) }]).await?;
    Ok(match values.into_iter().next() {
        Some(Value::Hash(fields)) => {
            fields.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect()
        }
        _ => Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_round_trip_through_their_encoding() {
        let i = Interaction {
            item: ItemId::parse("sku|with|bars").expect("valid"),
            kind: InteractionKind::Cart,
            at: UnixMillis(1_700_000_000_123),
        };
        assert_eq!(decode_interaction(&encode_interaction(&i)), Some(i));
        assert_eq!(decode_interaction(b"bogus"), None);
    }

    #[test]
    fn keys_carry_tenant_and_hash_tag() {
        let t = TenantId::parse("acme").expect("valid");
        let u = UserId::parse("alice").expect("valid");
        assert_eq!(keys::user_recent(&t, &u).as_str(), "sm:{acme:u:alice}:recent");
        assert_eq!(keys::popular(&t).as_str(), "sm:{acme}:popular");
    }
}
