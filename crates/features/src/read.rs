//! Reads for the other services, each one round trip.

use std::collections::{BTreeMap, BTreeSet};

use shopmind_domain::{Interaction, InteractionKind, ItemId, SessionId, TenantId, UnixMillis, UserId};
use shopmind_store::{FeatureStore, Read, StoreError, Value, decayed, stamped};

use crate::{FeatureSettings, POPULARITY_WINDOWS, keys};

/// Most entries read from a capped sorted set (above every cap in use).
const ALL: usize = 10_000;

/// What inference needs about a user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserContext {
    /// Newest first.
    pub recent: Vec<Interaction>,
    pub bought: BTreeSet<ItemId>,
    /// Items in the cart now.
    pub cart: BTreeSet<ItemId>,
    /// The tenant's most popular items, most popular first.
    pub popular: Vec<(ItemId, f64)>,
}

/// Everything known about a user (a customer profile).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserFeatures {
    pub recent: Vec<Interaction>,
    /// Event counts per kind (`product_viewed`, …).
    pub counts: BTreeMap<String, i64>,
    /// Category -> affinity now (decayed), highest first.
    pub affinity: Vec<(String, f64)>,
    /// Item -> quantity in the cart now.
    pub cart: BTreeMap<ItemId, i64>,
    /// Order id -> (time of the latest status, status).
    pub orders: BTreeMap<String, (i64, String)>,
    pub first_order_ms: Option<i64>,
    pub last_order_ms: Option<i64>,
    pub order_count: i64,
    /// Currency -> total spent, in minor units.
    pub spend: BTreeMap<String, i64>,
}

/// Everything known about an item.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemFeatures {
    pub title: Option<String>,
    pub category: Option<String>,
    pub price_minor: Option<i64>,
    pub currency: Option<String>,
    pub stock: Option<i64>,
    pub views: i64,
    pub carts: i64,
    pub orders: i64,
    pub units: i64,
    /// Orders per view (0 without views).
    pub conversion_rate: f64,
    /// Decayed popularity now: (window, score) for 1h, 24h, 7d.
    pub popularity: Vec<(&'static str, f64)>,
    /// Co-visited items, most often first.
    pub covisited: Vec<(ItemId, f64)>,
    /// Co-purchased items, most often first.
    pub copurchased: Vec<(ItemId, f64)>,
    /// (day since 1970-01-01, units), by day.
    pub demand: Vec<(i64, i64)>,
}

/// A shopping session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionFeatures {
    pub user: Option<String>,
    /// Event counts per kind.
    pub counts: BTreeMap<String, i64>,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    /// Leaf category -> weighted interactions (view 1, cart 2, purchase 3) in the session, for
    /// items whose category was known.
    pub categories: BTreeMap<String, i64>,
}

impl SessionFeatures {
    pub fn duration_ms(&self) -> Option<i64> {
        Some(self.last_ms? - self.first_ms?)
    }
}

pub(crate) fn parse_recent(member: &str) -> Option<Interaction> {
    let mut parts = member.splitn(3, '|');
    let kind = InteractionKind::parse(parts.next()?)?;
    let at = UnixMillis(parts.next()?.parse().ok()?);
    let item = ItemId::parse(parts.next()?).ok()?;
    Some(Interaction { item, kind, at })
}

/// Folds cart changes in time order into item -> quantity.
pub(crate) fn fold_cart(entries: Vec<(String, f64)>) -> BTreeMap<ItemId, i64> {
    let mut parsed: Vec<(i64, String, String, i64, String)> = entries
        .into_iter()
        .filter_map(|(m, _)| {
            let mut p = m.splitn(5, '|');
            let (op, at, item, qty) = (p.next()?, p.next()?, p.next()?, p.next()?);
            Some((at.parse().ok()?, op.to_string(), item.to_string(), qty.parse().ok()?, m.clone()))
        })
        .collect();
    parsed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.4.cmp(&b.4)));
    let mut cart: BTreeMap<String, i64> = BTreeMap::new();
    for (_, op, item, qty, _) in parsed {
        let q = cart.entry(item).or_default();
        match op.as_str() {
            "add" => *q += qty,
            "remove" => *q = (*q - qty).max(0),
            "order" => *q = 0,
            _ => {}
        }
    }
    cart.into_iter()
        .filter(|(_, q)| *q > 0)
        .filter_map(|(i, q)| ItemId::parse(i).ok().map(|i| (i, q)))
        .collect()
}

pub(crate) fn sorted(v: Value) -> Vec<(String, f64)> {
    match v {
        Value::Sorted(s) => s,
        _ => Vec::new(),
    }
}

pub(crate) fn hash(v: Value) -> Vec<(String, bytes::Bytes)> {
    match v {
        Value::Hash(h) => h,
        _ => Vec::new(),
    }
}

pub(crate) fn int(raw: &[u8]) -> Option<i64> {
    std::str::from_utf8(raw).ok()?.parse().ok()
}

pub(crate) fn items(scored: Vec<(String, f64)>) -> Vec<(ItemId, f64)> {
    scored.into_iter().filter_map(|(m, s)| ItemId::parse(m).ok().map(|i| (i, s))).collect()
}

pub async fn read_user_context(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    user: &UserId,
    history_len: usize,
    popular_n: usize,
) -> Result<UserContext, StoreError> {
    let mut v = store
        .read(vec![
            Read::SortedTop { key: keys::user_recent(tenant, user), n: history_len },
            Read::SortedTop { key: keys::user_bought(tenant, user), n: ALL },
            Read::SortedTop { key: keys::user_cart_log(tenant, user), n: ALL },
            Read::SortedTop { key: keys::popular(tenant), n: popular_n },
        ])
        .await?
        .into_iter();
    let mut next = || v.next().unwrap_or(Value::Exists(false));
    let recent = sorted(next()).iter().filter_map(|(m, _)| parse_recent(m)).collect();
    let bought = items(sorted(next())).into_iter().map(|(i, _)| i).collect();
    let cart = fold_cart(sorted(next())).into_keys().collect();
    let popular = items(sorted(next()));
    Ok(UserContext { recent, bought, cart, popular })
}

pub async fn read_user_features(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    user: &UserId,
    settings: &FeatureSettings,
    now: UnixMillis,
) -> Result<UserFeatures, StoreError> {
    let mut v = store.read(user_feature_reads(tenant, user, settings)).await?.into_iter();
    Ok(parse_user_features(&mut v, settings, now))
}

/// The reads of [`read_user_features`], in the order [`parse_user_features`] takes them.
fn user_feature_reads(tenant: &TenantId, user: &UserId, settings: &FeatureSettings) -> Vec<Read> {
    vec![
        Read::SortedTop { key: keys::user_recent(tenant, user), n: settings.recent_cap },
        Read::Hash { key: keys::user_counts(tenant, user) },
        Read::Hash { key: keys::user_affinity(tenant, user) },
        Read::SortedTop { key: keys::user_cart_log(tenant, user), n: ALL },
        Read::Hash { key: keys::user_orders(tenant, user) },
        Read::Hash { key: keys::user_rfm(tenant, user) },
    ]
}

fn parse_user_features(
    v: &mut impl Iterator<Item = Value>,
    settings: &FeatureSettings,
    now: UnixMillis,
) -> UserFeatures {
    let mut next = || v.next().unwrap_or(Value::Exists(false));
    let recent = sorted(next()).iter().filter_map(|(m, _)| parse_recent(m)).collect();
    let counts = hash(next()).into_iter().filter_map(|(k, raw)| int(&raw).map(|n| (k, n))).collect();
    let mut affinity: Vec<(String, f64)> = hash(next())
        .into_iter()
        .filter_map(|(k, raw)| decayed(&raw, now.0, settings.affinity_half_life).map(|s| (k, s)))
        .collect();
    affinity.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let cart = fold_cart(sorted(next()));
    let orders = hash(next())
        .into_iter()
        .filter_map(|(k, raw)| stamped(&raw).map(|(at, s)| (k, (at, s.to_string()))))
        .collect();
    let mut f = UserFeatures { recent, counts, affinity, cart, orders, ..UserFeatures::default() };
    for (k, raw) in hash(next()) {
        match k.as_str() {
            "first_order_ms" => f.first_order_ms = int(&raw),
            "last_order_ms" => f.last_order_ms = int(&raw),
            "orders" => f.order_count = int(&raw).unwrap_or(0),
            other => {
                if let (Some(cur), Some(n)) = (other.strip_prefix("spend:"), int(&raw)) {
                    f.spend.insert(cur.to_string(), n);
                }
            }
        }
    }
    f
}

pub async fn read_item_features(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    item: &ItemId,
    neighbours: usize,
    now: UnixMillis,
) -> Result<ItemFeatures, StoreError> {
    let mut v = store
        .read(vec![
            Read::Hash { key: keys::item_attrs(tenant, item) },
            Read::Hash { key: keys::item_stats(tenant, item) },
            Read::SortedTop { key: keys::item_covisit(tenant, item), n: neighbours },
            Read::SortedTop { key: keys::item_copurchase(tenant, item), n: neighbours },
            Read::Hash { key: keys::item_demand(tenant, item) },
        ])
        .await?
        .into_iter();
    let mut next = || v.next().unwrap_or(Value::Exists(false));
    let mut f = ItemFeatures::default();
    for (k, raw) in hash(next()) {
        let Some((_, value)) = stamped(&raw) else { continue };
        match k.as_str() {
            "title" => f.title = Some(value.to_string()),
            "category" => f.category = Some(value.to_string()),
            "price" => f.price_minor = value.parse().ok(),
            "currency" => f.currency = Some(value.to_string()),
            "stock" => f.stock = value.parse().ok(),
            _ => {}
        }
    }
    let stats = hash(next());
    let field = |name: &str| stats.iter().find(|(k, _)| k == name).map(|(_, raw)| raw.clone());
    f.views = field("views").and_then(|r| int(&r)).unwrap_or(0);
    f.carts = field("carts").and_then(|r| int(&r)).unwrap_or(0);
    f.orders = field("orders").and_then(|r| int(&r)).unwrap_or(0);
    f.units = field("units").and_then(|r| int(&r)).unwrap_or(0);
    f.conversion_rate = if f.views > 0 { f.orders as f64 / f.views as f64 } else { 0.0 };
    f.popularity = POPULARITY_WINDOWS
        .iter()
        .map(|(name, h)| (*name, field(name).and_then(|r| decayed(&r, now.0, *h)).unwrap_or(0.0)))
        .collect();
    f.covisited = items(sorted(next()));
    f.copurchased = items(sorted(next()));
    let mut demand: Vec<(i64, i64)> =
        hash(next()).into_iter().filter_map(|(day, raw)| Some((day.parse().ok()?, int(&raw)?))).collect();
    demand.sort_unstable();
    f.demand = demand;
    Ok(f)
}

pub async fn read_session_features(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    session: &SessionId,
) -> Result<SessionFeatures, StoreError> {
    let values = store.read(vec![Read::Hash { key: keys::session(tenant, session) }]).await?;
    Ok(parse_session_features(values.into_iter().next()))
}

pub(crate) fn parse_session_features(value: Option<Value>) -> SessionFeatures {
    let mut f = SessionFeatures::default();
    for (k, raw) in value.into_iter().flat_map(hash) {
        match k.as_str() {
            "first_ms" => f.first_ms = int(&raw),
            "last_ms" => f.last_ms = int(&raw),
            "user" => f.user = stamped(&raw).map(|(_, u)| u.to_string()),
            category if category.starts_with("cat:") => {
                if let (Some(c), Some(n)) = (category.strip_prefix("cat:"), int(&raw)) {
                    f.categories.insert(c.to_string(), n);
                }
            }
            kind => {
                if let Some(n) = int(&raw) {
                    f.counts.insert(kind.to_string(), n);
                }
            }
        }
    }
    f
}

/// A session's and a user's features together in one round trip: what purchase intent needs
/// ([`read_session_features`] and [`read_user_features`] in one batch). Without a session the
/// session features are empty; without a user they are the defaults of a user nobody knows.
pub async fn read_session_and_user_features(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    session: Option<&SessionId>,
    user: Option<&UserId>,
    settings: &FeatureSettings,
    now: UnixMillis,
) -> Result<(SessionFeatures, UserFeatures), StoreError> {
    let mut reads = Vec::with_capacity(7);
    if let Some(s) = session {
        reads.push(Read::Hash { key: keys::session(tenant, s) });
    }
    if let Some(u) = user {
        reads.extend(user_feature_reads(tenant, u, settings));
    }
    if reads.is_empty() {
        return Ok(Default::default());
    }
    let mut v = store.read(reads).await?.into_iter();
    let session =
        if session.is_some() { parse_session_features(v.next()) } else { SessionFeatures::default() };
    let user =
        if user.is_some() { parse_user_features(&mut v, settings, now) } else { UserFeatures::default() };
    Ok((session, user))
}

/// The daily demand (`ItemFeatures::demand`: (day since 1970-01-01, units), by day) of several
/// items in one round trip, in the order of `items`.
pub async fn read_items_demand(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    items: &[ItemId],
) -> Result<Vec<Vec<(i64, i64)>>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let reads = items.iter().map(|i| Read::Hash { key: keys::item_demand(tenant, i) }).collect();
    let mut v = store.read(reads).await?.into_iter();
    Ok(items
        .iter()
        .map(|_| {
            let mut demand: Vec<(i64, i64)> = hash(v.next().unwrap_or(Value::Exists(false)))
                .into_iter()
                .filter_map(|(day, raw)| Some((day.parse().ok()?, int(&raw)?)))
                .collect();
            demand.sort_unstable();
            demand
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cart_is_the_fold_of_its_changes_in_time_order() {
        let e = |m: &str| (m.to_string(), 0.0);
        // Out of order on purpose: the fold sorts by time.
        let cart = fold_cart(vec![
            e("order|30|y|0|e5"),
            e("add|10|x|2|e1"),
            e("add|11|y|1|e2"),
            e("remove|20|x|1|e3"),
            e("add|40|z|1|e6"),
            e("remove|41|z|5|e7"),
        ]);
        assert_eq!(
            cart.into_iter().map(|(i, q)| (i.to_string(), q)).collect::<Vec<_>>(),
            vec![("x".to_string(), 1)]
        );
    }

    #[test]
    fn recent_members_parse_back() {
        let i = parse_recent("cart|1700000000123|sku|with|bars").expect("parses");
        assert_eq!(
            (i.kind, i.at.0, i.item.as_str()),
            (InteractionKind::Cart, 1_700_000_000_123, "sku|with|bars")
        );
        assert_eq!(parse_recent("bogus"), None);
    }
}
