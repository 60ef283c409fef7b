//! How an event changes features.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shopmind_domain::{Event, Interaction, InteractionKind, ItemId, Payload};
use shopmind_store::{
    FeatureStore, Guard, Key, Read, StoreError, Value, Write, WriteBatch, Written, stamped,
};

use crate::{DAY_MS, FeatureSettings, POPULARITY_WINDOWS, category_levels, keys, popularity_weight};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The event's effect is now stored.
    Applied,
    /// The event was applied before (a redelivery or a re-publish); nothing changed.
    Duplicate,
}

/// The member of `keys::user_recent` that records an interaction.
pub fn recent_member(i: &Interaction) -> String {
    format!("{}|{}|{}", i.kind.as_str(), i.at.0, i.item)
}

/// Applies an event's effect exactly once: its writes and a guard named after the event go to
/// the store in one atomic step, skipped when the guard exists. Reads the categories of the
/// event's items first (for category affinity), in one round trip.
pub async fn apply_event(
    store: &dyn FeatureStore,
    event: &Event,
    s: &FeatureSettings,
) -> Result<Applied, StoreError> {
    let mut results = apply_events(store, std::slice::from_ref(event), s).await?;
    results.pop().unwrap_or(Ok(Applied::Duplicate))
}

/// Applies several events, each exactly once, in two round trips whatever their number: one
/// read of the categories of all their items, then one [`FeatureStore::write_all`] with one
/// guarded batch per event (each applied, or skipped, exactly as [`apply_event`] would). One
/// result per event, in order; the outer error is a failed round trip (then any of the events
/// may or may not be applied, and applying them again is safe).
pub async fn apply_events(
    store: &dyn FeatureStore,
    events: &[Event],
    s: &FeatureSettings,
) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
    let categories = item_categories(store, events).await?;
    let batches = events
        .iter()
        .map(|event| WriteBatch {
            writes: writes_for(event, s, &categories_of(event, &categories)),
            atomic: true,
            guard: Some(Guard { key: keys::applied(&event.tenant, event.id.as_str()), ttl: s.dedup_ttl }),
        })
        .collect();
    let written = store.write_all(batches).await?;
    Ok(written
        .into_iter()
        .map(|w| {
            w.map(|w| match w {
                Written::Applied => Applied::Applied,
                Written::Skipped => Applied::Duplicate,
            })
        })
        .collect())
}

/// The catalog categories of the items the events' users interacted with, by attributes key
/// (absent: no category), read in one round trip.
async fn item_categories(
    store: &dyn FeatureStore,
    events: &[Event],
) -> Result<HashMap<Key, Option<String>>, StoreError> {
    let keys: BTreeSet<Key> = events
        .iter()
        .filter(|e| e.user.is_some())
        .flat_map(|e| e.interactions().into_iter().map(|i| keys::item_attrs(&e.tenant, &i.item)))
        .collect();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let reads = keys.iter().map(|key| Read::Hash { key: key.clone() }).collect();
    let values = store.read(reads).await?;
    Ok(keys
        .into_iter()
        .zip(values)
        .map(|(key, value)| {
            let category = match value {
                Value::Hash(fields) => fields
                    .iter()
                    .find(|(f, _)| f == "category")
                    .and_then(|(_, raw)| stamped(raw))
                    .map(|(_, category)| category)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
                _ => None,
            };
            (key, category)
        })
        .collect())
}

/// The categories of one event's items, from what [`item_categories`] read.
fn categories_of(event: &Event, read: &HashMap<Key, Option<String>>) -> BTreeMap<ItemId, String> {
    if event.user.is_none() {
        return BTreeMap::new();
    }
    event
        .interactions()
        .into_iter()
        .filter_map(|i| {
            let category = read.get(&keys::item_attrs(&event.tenant, &i.item))?.clone()?;
            Some((i.item, category))
        })
        .collect()
}

/// The writes that apply `event` (without the guard). `categories` maps the event's items to
/// their catalog category, where known.
pub fn writes_for(event: &Event, s: &FeatureSettings, categories: &BTreeMap<ItemId, String>) -> Vec<Write> {
    let t = &event.tenant;
    let at = event.occurred_at.0;
    let mut w = Vec::new();

    if let Some(u) = &event.user {
        let interactions = event.interactions();
        for i in &interactions {
            let weight = popularity_weight(i.kind);
            w.push(Write::SortedAdd {
                key: keys::user_recent(t, u),
                member: recent_member(i),
                score: at as f64,
            });
            w.push(Write::SortedIncr { key: keys::popular(t), member: i.item.to_string(), by: weight });
            let stats = keys::item_stats(t, &i.item);
            let counter = match i.kind {
                InteractionKind::View => "views",
                InteractionKind::Cart => "carts",
                InteractionKind::Purchase => "orders",
            };
            w.push(Write::HashIncr { key: stats.clone(), field: counter.into(), by: 1 });
            for (field, half_life) in POPULARITY_WINDOWS {
                w.push(Write::HashDecayAdd {
                    key: stats.clone(),
                    field: field.into(),
                    weight,
                    at_ms: at,
                    half_life,
                });
            }
            if let Some(category) = categories.get(&i.item) {
                w.push(Write::HashDecayAdd {
                    key: keys::user_affinity(t, u),
                    field: category.clone(),
                    weight,
                    at_ms: at,
                    half_life: s.affinity_half_life,
                });
                for level in category_levels(category) {
                    let key = keys::category_popular(t, level);
                    w.push(Write::SortedIncr { key: key.clone(), member: i.item.to_string(), by: weight });
                    w.push(Write::SortedKeepTop { key, keep: s.popular_cap });
                }
            }
            w.push(Write::CoOccur {
                window_set: keys::user_visit_window(t, u),
                member: i.item.to_string(),
                at_ms: at,
                window: s.covisit_window,
                cap: s.window_cap,
                counted: keys::user_visit_pairs(t, u),
                counted_cap: s.pairs_cap,
                neighbours: keys::covisit_pattern(t),
                keep: s.neighbours_keep,
            });
            if i.kind == InteractionKind::Purchase {
                w.push(Write::SortedAdd {
                    key: keys::user_bought(t, u),
                    member: i.item.to_string(),
                    score: at as f64,
                });
                w.push(Write::CoOccur {
                    window_set: keys::user_purchase_window(t, u),
                    member: i.item.to_string(),
                    at_ms: at,
                    window: s.copurchase_window,
                    cap: s.window_cap,
                    counted: keys::user_purchase_pairs(t, u),
                    counted_cap: s.pairs_cap,
                    neighbours: keys::copurchase_pattern(t),
                    keep: s.neighbours_keep,
                });
            }
        }
        if !interactions.is_empty() {
            w.push(Write::SortedKeepTop { key: keys::user_recent(t, u), keep: s.recent_cap });
            w.push(Write::SortedKeepTop { key: keys::popular(t), keep: s.popular_cap });
        }
        w.push(Write::HashIncr { key: keys::user_counts(t, u), field: event.kind().as_str().into(), by: 1 });

        let cart = keys::user_cart_log(t, u);
        match &event.payload {
            Payload::AddedToCart { item, quantity, .. } => {
                let member = format!("add|{at}|{item}|{quantity}|{}", event.id);
                w.push(Write::SortedAdd { key: cart.clone(), member, score: at as f64 });
            }
            Payload::RemovedFromCart { item, quantity } => {
                let member = format!("remove|{at}|{item}|{quantity}|{}", event.id);
                w.push(Write::SortedAdd { key: cart.clone(), member, score: at as f64 });
            }
            Payload::OrderPlaced { order, lines } => {
                let rfm = keys::user_rfm(t, u);
                let mut spend: BTreeMap<&str, i64> = BTreeMap::new();
                for l in lines {
                    let member = format!("order|{at}|{}|0|{}", l.item, event.id);
                    w.push(Write::SortedAdd { key: cart.clone(), member, score: at as f64 });
                    w.push(Write::HashIncr {
                        key: keys::item_stats(t, &l.item),
                        field: "units".into(),
                        by: i64::from(l.quantity),
                    });
                    let demand = keys::item_demand(t, &l.item);
                    let day = at.div_euclid(DAY_MS);
                    w.push(Write::HashIncr {
                        key: demand.clone(),
                        field: day.to_string(),
                        by: i64::from(l.quantity),
                    });
                    w.push(Write::HashDel {
                        key: demand,
                        field: (day - i64::from(s.demand_days)).to_string(),
                    });
                    if let Some(p) = &l.unit_price {
                        *spend.entry(p.currency.as_str()).or_default() +=
                            p.amount_minor * i64::from(l.quantity);
                    }
                }
                w.push(Write::SortedKeepTop { key: keys::user_bought(t, u), keep: s.bought_cap });
                w.push(Write::HashSetLatest {
                    key: keys::user_orders(t, u),
                    field: order.to_string(),
                    value: "placed".into(),
                    at_ms: at,
                });
                w.push(Write::HashMin { key: rfm.clone(), field: "first_order_ms".into(), value: at });
                w.push(Write::HashMax { key: rfm.clone(), field: "last_order_ms".into(), value: at });
                w.push(Write::HashIncr { key: rfm.clone(), field: "orders".into(), by: 1 });
                for (currency, minor) in spend {
                    w.push(Write::HashIncr {
                        key: rfm.clone(),
                        field: format!("spend:{currency}"),
                        by: minor,
                    });
                }
            }
            Payload::OrderStatusChanged { order, status } => {
                w.push(Write::HashSetLatest {
                    key: keys::user_orders(t, u),
                    field: order.to_string(),
                    value: status.as_str().into(),
                    at_ms: at,
                });
            }
            _ => {}
        }
        w.push(Write::SortedKeepTop { key: cart, keep: s.cart_log_cap });
        for key in keys::user_all(t, u) {
            w.push(Write::Expire { key, ttl: s.user_ttl });
        }
    }

    if let Some(session) = &event.session {
        let key = keys::session(t, session);
        w.push(Write::HashIncr { key: key.clone(), field: event.kind().as_str().into(), by: 1 });
        w.push(Write::HashMin { key: key.clone(), field: "first_ms".into(), value: at });
        w.push(Write::HashMax { key: key.clone(), field: "last_ms".into(), value: at });
        for i in event.interactions() {
            if let Some(leaf) = categories.get(&i.item).and_then(|c| category_levels(c).last()) {
                w.push(Write::HashIncr {
                    key: key.clone(),
                    field: format!("cat:{leaf}"),
                    by: popularity_weight(i.kind) as i64,
                });
            }
        }
        if let Some(u) = &event.user {
            w.push(Write::HashSetLatest {
                key: key.clone(),
                field: "user".into(),
                value: u.to_string(),
                at_ms: at,
            });
        }
        w.push(Write::Expire { key, ttl: s.session_ttl });
    }

    match &event.payload {
        Payload::ItemUpserted(item) => {
            let key = keys::item_attrs(t, &item.item);
            let mut set = |field: &str, value: String| {
                w.push(Write::HashSetLatest { key: key.clone(), field: field.into(), value, at_ms: at });
            };
            set("title", item.title.clone());
            let path = item.category_path.join(" > ");
            set("category", path.clone());
            if let Some(p) = &item.price {
                set("price", p.amount_minor.to_string());
                set("currency", p.currency.clone());
            }
            w.push(Write::HashMin { key, field: "created_ms".into(), value: at });
            for level in category_levels(&path) {
                let key = keys::category_items(t, level);
                w.push(Write::SortedAdd {
                    key: key.clone(),
                    member: item.item.to_string(),
                    score: at as f64,
                });
                w.push(Write::SortedKeepTop { key, keep: s.popular_cap });
            }
        }
        Payload::InventoryChanged { item, available } => {
            w.push(Write::HashSetLatest {
                key: keys::item_attrs(t, item),
                field: "stock".into(),
                value: available.to_string(),
                at_ms: at,
            });
        }
        Payload::SupportMessage { conversation, author, text } => {
            w.extend(crate::conversations::writes(event, conversation, author, text, s));
        }
        _ => {}
    }
    w
}
