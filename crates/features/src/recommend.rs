//! The reads of the recommend path, each one round trip: the user's context, the neighbours of
//! seed items and the newest items of categories, and the catalog entries of candidates.

use std::collections::BTreeSet;

use shopmind_domain::{Interaction, ItemId, SessionId, TenantId, UnixMillis, UserId};
use shopmind_store::{FeatureStore, Read, StoreError, Value, decayed, stamped};

use crate::read::{hash, int, items, parse_recent, sorted};
use crate::{POPULARITY_WINDOWS, keys};

/// Most entries read from a capped sorted set (above every cap in use).
const ALL: usize = 10_000;

/// The levels of a stored category path (`"Movies > Comedy"`: `Movies`, `Comedy`), root first.
pub fn category_levels(path: &str) -> impl Iterator<Item = &str> {
    path.split(" > ").map(str::trim).filter(|c| !c.is_empty())
}

/// What the recommend path needs about a user and the tenant, in one round trip.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecommendContext {
    /// Newest first.
    pub recent: Vec<Interaction>,
    pub bought: BTreeSet<ItemId>,
    /// Items in the cart now.
    pub cart: BTreeSet<ItemId>,
    /// Category path -> affinity now, highest first.
    pub affinity: Vec<(String, f64)>,
    /// The tenant's most popular items (all time), most popular first.
    pub popular: Vec<(ItemId, f64)>,
    /// The most popular items of the requested category, most popular first.
    pub category_popular: Vec<(ItemId, f64)>,
    /// The session's leaf categories by weighted interactions, most first.
    pub session_categories: Vec<(String, i64)>,
}

/// What [`read_recommend_context`] reads.
#[derive(Debug, Clone, Copy)]
pub struct ContextQuery<'a> {
    /// Whose history, purchases, cart and affinity; `None`: only the tenant's popular items.
    pub user: Option<&'a UserId>,
    /// The current session, whose categories are the context of a user without history.
    pub session: Option<&'a SessionId>,
    /// Recent interactions read.
    pub history_len: usize,
    /// Popular items read (of the tenant, and of `category`).
    pub popular_n: usize,
    pub category: Option<&'a str>,
    pub affinity_half_life: std::time::Duration,
    pub now: UnixMillis,
}

/// Reads a user's recent interactions, purchases, cart and category affinity (when a user is
/// given), the tenant's most popular items and, with a category, that category's.
pub async fn read_recommend_context(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    q: ContextQuery<'_>,
) -> Result<RecommendContext, StoreError> {
    let ContextQuery { user, session, history_len, popular_n, category, affinity_half_life, now } = q;
    let mut reads = Vec::with_capacity(6);
    if let Some(u) = user {
        reads.push(Read::SortedTop { key: keys::user_recent(tenant, u), n: history_len });
        reads.push(Read::SortedTop { key: keys::user_bought(tenant, u), n: ALL });
        reads.push(Read::SortedTop { key: keys::user_cart_log(tenant, u), n: ALL });
        reads.push(Read::Hash { key: keys::user_affinity(tenant, u) });
    }
    reads.push(Read::SortedTop { key: keys::popular(tenant), n: popular_n });
    if let Some(c) = category {
        reads.push(Read::SortedTop { key: keys::category_popular(tenant, c), n: popular_n });
    }
    if let Some(s) = session {
        reads.push(Read::Hash { key: keys::session(tenant, s) });
    }
    let mut v = store.read(reads).await?.into_iter();
    let mut next = || v.next().unwrap_or(Value::Exists(false));
    let mut ctx = RecommendContext::default();
    if user.is_some() {
        ctx.recent = sorted(next()).iter().filter_map(|(m, _)| parse_recent(m)).collect();
        ctx.bought = items(sorted(next())).into_iter().map(|(i, _)| i).collect();
        ctx.cart = crate::read::fold_cart(sorted(next())).into_keys().collect();
        let mut affinity: Vec<(String, f64)> = hash(next())
            .into_iter()
            .filter_map(|(k, raw)| decayed(&raw, now.0, affinity_half_life).map(|s| (k, s)))
            .collect();
        affinity.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ctx.affinity = affinity;
    }
    ctx.popular = items(sorted(next()));
    if category.is_some() {
        ctx.category_popular = items(sorted(next()));
    }
    if session.is_some() {
        let mut categories: Vec<(String, i64)> =
            crate::read::parse_session_features(Some(next())).categories.into_iter().collect();
        categories.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ctx.session_categories = categories;
    }
    Ok(ctx)
}

/// The `n` most popular items of a category (any level of the items' category paths), most
/// popular first.
pub async fn read_category_popular(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    category: &str,
    n: usize,
) -> Result<Vec<(ItemId, f64)>, StoreError> {
    let mut v =
        store.read(vec![Read::SortedTop { key: keys::category_popular(tenant, category), n }]).await?;
    Ok(items(sorted(v.pop().unwrap_or(Value::Exists(false)))))
}

/// The tenant's `n` most popular items, most popular first.
pub async fn read_popular(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    n: usize,
) -> Result<Vec<(ItemId, f64)>, StoreError> {
    let mut v = store.read(vec![Read::SortedTop { key: keys::popular(tenant), n }]).await?;
    Ok(items(sorted(v.pop().unwrap_or(Value::Exists(false)))))
}

/// Neighbours of seed items and the newest items of categories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Neighbours {
    /// Per seed item (in the order given): co-visited items, most often first.
    pub covisited: Vec<Vec<(ItemId, f64)>>,
    /// Per seed item: co-purchased items, most often first.
    pub copurchased: Vec<Vec<(ItemId, f64)>>,
    /// Per category (in the order given): its catalog items, most recently upserted first.
    pub newest: Vec<Vec<(ItemId, f64)>>,
}

/// Which neighbours of the seed items [`read_neighbours`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedNeighbours {
    /// Co-visited items only (`copurchased` holds an empty list per seed).
    Covisited,
    /// Co-visited and co-purchased items.
    CovisitedAndCopurchased,
}

/// Reads the `n` strongest co-visitation (and, as `kinds` asks, co-purchase) neighbours of each
/// of `seeds` and the `n` newest catalog items of each of `categories`, in one round trip.
pub async fn read_neighbours(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    seeds: &[ItemId],
    kinds: SeedNeighbours,
    categories: &[String],
    n: usize,
) -> Result<Neighbours, StoreError> {
    let copurchased = kinds == SeedNeighbours::CovisitedAndCopurchased;
    let mut reads = Vec::with_capacity(seeds.len() * 2 + categories.len());
    for seed in seeds {
        reads.push(Read::SortedTop { key: keys::item_covisit(tenant, seed), n });
        if copurchased {
            reads.push(Read::SortedTop { key: keys::item_copurchase(tenant, seed), n });
        }
    }
    for c in categories {
        reads.push(Read::SortedTop { key: keys::category_items(tenant, c), n });
    }
    if reads.is_empty() {
        return Ok(Neighbours::default());
    }
    let mut v = store.read(reads).await?.into_iter();
    let mut next = || items(sorted(v.next().unwrap_or(Value::Exists(false))));
    let mut out = Neighbours::default();
    for _ in seeds {
        out.covisited.push(next());
        out.copurchased.push(if copurchased { next() } else { Vec::new() });
    }
    for _ in categories {
        out.newest.push(next());
    }
    Ok(out)
}

/// What the recommend path knows about one item: its catalog attributes and how popular it is now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogEntry {
    /// The tenant has seen the item: in the catalog or in an interaction.
    pub known: bool,
    /// The category path (`A > B`).
    pub category: Option<String>,
    pub price_minor: Option<i64>,
    /// Units available; `None`: never reported.
    pub stock: Option<i64>,
    /// The time of the item's first `ItemUpserted` (the earliest one applied).
    pub created_ms: Option<i64>,
    /// Interactions ever (views, carts, orders).
    pub interactions: i64,
    /// Decayed popularity of the last day (`pop_24h`) now.
    pub trending: f64,
}

impl CatalogEntry {
    /// The last level of the category path.
    pub fn leaf_category(&self) -> Option<&str> {
        self.category.as_deref().and_then(|c| category_levels(c).last())
    }

    /// Whether `category` is any level of the item's category path.
    pub fn in_category(&self, category: &str) -> bool {
        self.category.as_deref().is_some_and(|c| category_levels(c).any(|l| l == category))
    }

    /// In stock, or stock never reported.
    pub fn in_stock(&self) -> bool {
        self.stock.is_none_or(|s| s > 0)
    }
}

/// What [`read_catalog_entries`] reads of each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogParts {
    /// The catalog attributes only (category, price, stock, first upsert): `interactions` and
    /// `trending` stay 0, and `known` means "in the catalog".
    Attributes,
    /// The attributes and the item's interaction statistics.
    AttributesAndStats,
}

/// The catalog entries of `items`, in their order, in one round trip.
pub async fn read_catalog_entries(
    store: &dyn FeatureStore,
    tenant: &TenantId,
    items: &[ItemId],
    parts: CatalogParts,
    now: UnixMillis,
) -> Result<Vec<CatalogEntry>, StoreError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let with_stats = parts == CatalogParts::AttributesAndStats;
    let mut reads = Vec::with_capacity(items.len() * 2);
    for i in items {
        reads.push(Read::Hash { key: keys::item_attrs(tenant, i) });
        if with_stats {
            reads.push(Read::Hash { key: keys::item_stats(tenant, i) });
        }
    }
    let mut v = store.read(reads).await?.into_iter();
    let day = POPULARITY_WINDOWS.iter().find(|(name, _)| *name == "pop_24h").map(|(_, h)| *h);
    let mut out = Vec::with_capacity(items.len());
    for _ in items {
        let attrs = hash(v.next().unwrap_or(Value::Exists(false)));
        let stats =
            if with_stats { hash(v.next().unwrap_or(Value::Exists(false))) } else { Default::default() };
        let mut e = CatalogEntry { known: !attrs.is_empty() || !stats.is_empty(), ..Default::default() };
        for (k, raw) in &attrs {
            if k == "created_ms" {
                e.created_ms = int(raw);
                continue;
            }
            let Some((_, value)) = stamped(raw) else { continue };
            match k.as_str() {
                "category" => e.category = Some(value.to_string()).filter(|c| !c.is_empty()),
                "price" => e.price_minor = value.parse().ok(),
                "stock" => e.stock = value.parse().ok(),
                _ => {}
            }
        }
        for (k, raw) in &stats {
            match k.as_str() {
                "views" | "carts" | "orders" => e.interactions += int(raw).unwrap_or(0),
                "pop_24h" => {
                    if let Some(h) = day {
                        e.trending = decayed(raw, now.0, h).unwrap_or(0.0);
                    }
                }
                _ => {}
            }
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_levels_split_a_stored_path() {
        assert_eq!(category_levels("Movies > Comedy").collect::<Vec<_>>(), ["Movies", "Comedy"]);
        assert_eq!(category_levels("Books").collect::<Vec<_>>(), ["Books"]);
        assert_eq!(category_levels("").count(), 0);
        let e = CatalogEntry { category: Some("Movies > Comedy".into()), ..Default::default() };
        assert_eq!(e.leaf_category(), Some("Comedy"));
        assert!(e.in_category("Movies") && e.in_category("Comedy") && !e.in_category("Come"));
        assert!(e.in_stock(), "stock never reported counts as in stock");
        assert!(!CatalogEntry { stock: Some(0), ..Default::default() }.in_stock());
    }
}
