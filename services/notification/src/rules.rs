//! The rules: what each event does, and what each timer checks when it comes due.

use std::collections::BTreeSet;
use std::time::Duration;

use shopmind_domain::{Author, Event, ItemId, Payload, TenantId, UserId};
use shopmind_features::{
    FeatureSettings, churn_due_ms, keys as fkeys, mean_order_gap_ms, read_user_features,
};
use shopmind_store::{Read, Value, Write, WriteBatch, stamped};

use crate::timers::{self, Timer};
use crate::{Draft, Kind, NotificationError, Notifier, keys};

const DAY_MS: i64 = 86_400_000;

fn days(d: u32) -> Duration {
    Duration::from_secs(u64::from(d) * 86_400)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a timer's check concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// A notification was made (and went through the policies).
    Fired,
    /// The condition does not hold; the timer is done.
    Silent,
    /// Not yet: check again at this time (unix ms).
    Later(i64),
}

/// An escalation of a support conversation to the agents, as the assistant (or the keyword rule)
/// raises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Escalation {
    pub tenant: TenantId,
    pub user: UserId,
    pub conversation: String,
    /// Why, for the agents (e.g. "the customer asks for a human").
    pub reason: String,
    /// What caused it: an event id, or the assistant's own id for the turn; with the
    /// conversation it makes the notification id, so the same cause escalates once.
    pub cause: String,
    /// The conversation so far, oldest first (`customer: ...`, `assistant: ...`); empty when the
    /// keyword rule escalates a single message.
    pub transcript: Vec<String>,
    /// The assistant's intent of each customer message, oldest first.
    pub intents: Vec<String>,
    /// A summary of the customer's profile: (field, value).
    pub profile: Vec<(String, String)>,
}

impl Notifier {
    /// Escalates a support conversation to the agents' channel (audience `agents`), through the
    /// policies (dedup per conversation within the window). The API the assistant uses.
    pub async fn escalate(&self, e: &Escalation) -> Result<crate::Delivered, NotificationError> {
        let tc = self.config.notification.tenant(e.tenant.as_str());
        if !tc.rules.support_escalation.enabled {
            return Ok(crate::Delivered::OptedOut);
        }
        let mut data = vec![("conversation_id", e.conversation.clone()), ("reason", e.reason.clone())];
        let mut body = e.reason.clone();
        if !e.transcript.is_empty() {
            data.push(("transcript", e.transcript.join("\n")));
            body = format!("{body}\n\n{}", e.transcript.join("\n"));
        }
        if !e.intents.is_empty() {
            data.push(("intents", e.intents.join(",")));
        }
        let mut draft = Draft::new(
            Kind::SupportEscalation,
            &e.tenant,
            &format!("{}:{}", e.conversation, e.cause),
            e.user.as_str(),
            &e.conversation,
            format!("Conversation {} needs an agent", e.conversation),
            body,
            data,
            &e.cause,
            self.now(),
        );
        for (field, value) in &e.profile {
            draft.notification.data.insert(format!("profile.{field}"), value.clone());
        }
        self.deliver(&draft).await
    }
}

/// Applies the rules to one event: notifications made now, timers scheduled, item state kept.
/// Idempotent: a redelivered event makes the same notification ids and timers.
pub async fn on_event(n: &Notifier, event: &Event) -> Result<(), NotificationError> {
    let t = &event.tenant;
    let tc = n.config.notification.tenant(t.as_str());
    let rules = &tc.rules;
    let at = event.occurred_at.0;
    let now = n.now();
    let user = event.user.as_ref();
    match (&event.payload, user) {
        (Payload::OrderStatusChanged { order, status }, Some(u)) => {
            let s = status.as_str();
            if rules.order_status.enabled && rules.order_status.statuses.iter().any(|x| x == s) {
                let draft = Draft::new(
                    Kind::OrderStatus,
                    t,
                    event.id.as_str(),
                    u.as_str(),
                    &format!("{order}:{s}"),
                    format!("Your order {order} is {s}"),
                    format!("The status of order {order} changed to {s}."),
                    vec![("order_id", order.to_string()), ("status", s.to_string())],
                    event.id.as_str(),
                    now,
                );
                n.deliver(&draft).await?;
            }
        }
        (Payload::ProductViewed { item }, Some(u)) => watch_item(n, event, item, u, true).await?,
        (Payload::AddedToCart { item, .. }, Some(u)) => {
            watch_item(n, event, item, u, false).await?;
            if rules.cart_abandonment.enabled {
                let due = at.saturating_add(ms(Duration::from_secs(rules.cart_abandonment.idle_s)));
                timers::schedule(&*n.store, t, &Timer::CartIdle { user: u.to_string(), at }, due).await?;
            }
        }
        (Payload::RemovedFromCart { .. }, Some(u)) if rules.cart_abandonment.enabled => {
            let due = at.saturating_add(ms(Duration::from_secs(rules.cart_abandonment.idle_s)));
            timers::schedule(&*n.store, t, &Timer::CartIdle { user: u.to_string(), at }, due).await?;
        }
        // Checked at once (the feature service may still be applying the order), then when the
        // customer's gap is exceeded.
        (Payload::OrderPlaced { .. }, Some(u)) if rules.churn_risk.enabled => {
            timers::schedule(&*n.store, t, &Timer::ChurnCheck { user: u.to_string(), at }, at).await?;
        }
        (Payload::SupportMessage { conversation, author: Author::Customer, text }, Some(u)) => {
            let rule = &rules.support_escalation;
            let lower = text.to_lowercase();
            if rule.enabled
                && let Some(word) = rule.keywords.iter().find(|k| lower.contains(&k.to_lowercase()))
            {
                let e = Escalation {
                    tenant: t.clone(),
                    user: u.clone(),
                    conversation: conversation.to_string(),
                    reason: format!("the customer wrote {word:?}: {}", excerpt(text, 200)),
                    cause: event.id.to_string(),
                    transcript: Vec::new(),
                    intents: Vec::new(),
                    profile: Vec::new(),
                };
                n.escalate(&e).await?;
            }
        }
        (Payload::InventoryChanged { item, available }, _) => {
            inventory_changed(n, event, item, *available).await?;
        }
        (Payload::ItemUpserted(catalog), _) => {
            if let Some(price) = &catalog.price {
                price_changed(n, event, &catalog.item, price.amount_minor, &price.currency).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn excerpt(text: &str, chars: usize) -> String {
    let mut out: String = text.chars().take(chars).collect();
    if text.chars().count() > chars {
        out.push('…');
    }
    out
}

/// The notification service's registers of an item: field -> (time, value).
async fn item_register(
    n: &Notifier,
    t: &TenantId,
    item: &ItemId,
) -> Result<Vec<(String, (i64, String))>, NotificationError> {
    let values = n.store.read(vec![Read::Hash { key: keys::item_state(t, item) }]).await?;
    let mut out = Vec::new();
    for v in values {
        if let Value::Hash(fields) = v {
            for (f, raw) in fields {
                if let Some((at, value)) = stamped(&raw) {
                    out.push((f, (at, value.to_string())));
                }
            }
        }
    }
    Ok(out)
}

/// A view or cart add: remembers the viewer (price drops) and, if the item is out of stock, the
/// waiting user (back in stock).
async fn watch_item(
    n: &Notifier,
    event: &Event,
    item: &ItemId,
    user: &UserId,
    viewed: bool,
) -> Result<(), NotificationError> {
    let t = &event.tenant;
    let rules = &n.config.notification.tenant(t.as_str()).rules;
    let at = event.occurred_at.0 as f64;
    let mut writes = Vec::new();
    if viewed && rules.price_drop.enabled {
        let key = keys::item_viewers(t, item);
        writes.push(Write::SortedAdd { key: key.clone(), member: user.to_string(), score: at });
        writes.push(Write::SortedKeepTop { key: key.clone(), keep: rules.price_drop.max_viewers });
        writes.push(Write::Expire { key, ttl: days(rules.price_drop.viewed_within_days) });
    }
    if rules.back_in_stock.enabled {
        let state = item_register(n, t, item).await?;
        let stock = state.iter().find(|(f, _)| f == "stock").and_then(|(_, (_, v))| v.parse::<i64>().ok());
        if stock.is_some_and(|s| s <= 0) {
            let key = keys::item_waiting(t, item);
            writes.push(Write::SortedAdd { key: key.clone(), member: user.to_string(), score: at });
            writes.push(Write::Expire { key, ttl: days(rules.back_in_stock.watch_days) });
        }
    }
    if !writes.is_empty() {
        n.store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    }
    Ok(())
}

/// Stock changed: back-in-stock notifications to the users waiting (when it goes from none to
/// some), and a low-stock alert to the merchant (when forecast demand over the lead time
/// exceeds it). Notifies first and records the new stock after, so a redelivery after a crash
/// notifies again (with the same ids) rather than not at all.
async fn inventory_changed(
    n: &Notifier,
    event: &Event,
    item: &ItemId,
    available: i64,
) -> Result<(), NotificationError> {
    let t = &event.tenant;
    let rules = &n.config.notification.tenant(t.as_str()).rules;
    let at = event.occurred_at.0;
    let now = n.now();
    let previous = item_register(n, t, item).await?.into_iter().find(|(f, _)| f == "stock").map(|(_, v)| v);
    let newest = previous.as_ref().is_none_or(|(prev_at, _)| at >= *prev_at);
    let was_out = previous.as_ref().and_then(|(_, v)| v.parse::<i64>().ok()).is_some_and(|s| s <= 0);
    if rules.back_in_stock.enabled && newest && was_out && available > 0 {
        let since = at - ms(days(rules.back_in_stock.watch_days));
        let read = Read::SortedRange {
            key: keys::item_waiting(t, item),
            min: since as f64,
            max: f64::INFINITY,
            limit: 100_000,
        };
        if let Some(Value::Sorted(waiting)) = n.store.read(vec![read]).await?.pop() {
            for (user, _) in waiting {
                let draft = Draft::new(
                    Kind::BackInStock,
                    t,
                    &format!("{item}:{user}:{}", event.id),
                    &user,
                    item.as_str(),
                    format!("{item} is back in stock"),
                    format!("An item you looked at, {item}, is available again ({available} in stock)."),
                    vec![("item_id", item.to_string()), ("available", available.to_string())],
                    event.id.as_str(),
                    now,
                );
                n.deliver(&draft).await?;
            }
        }
    }
    if rules.low_stock.enabled && newest {
        let lead = rules.low_stock.lead_time_days;
        let forecast = n.seams.demand.forecast(t, item, lead, now).await?;
        if forecast > available as f64 {
            let draft = Draft::new(
                Kind::LowStock,
                t,
                &format!("{item}:{}", event.id),
                "",
                item.as_str(),
                format!("Low stock: {item}"),
                format!(
                    "{available} left of {item}; about {forecast:.1} expected to be ordered in the next {lead} days."
                ),
                vec![
                    ("item_id", item.to_string()),
                    ("available", available.to_string()),
                    ("forecast", format!("{forecast:.2}")),
                    ("lead_time_days", lead.to_string()),
                ],
                event.id.as_str(),
                now,
            );
            n.deliver(&draft).await?;
        }
    }
    let mut writes = vec![Write::HashSetLatest {
        key: keys::item_state(t, item),
        field: "stock".into(),
        value: available.to_string(),
        at_ms: at,
    }];
    if newest && available > 0 {
        writes.push(Write::Delete { key: keys::item_waiting(t, item) });
    }
    n.store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    Ok(())
}

/// A catalog price: price-drop notifications to recent viewers when it fell enough.
async fn price_changed(
    n: &Notifier,
    event: &Event,
    item: &ItemId,
    price: i64,
    currency: &str,
) -> Result<(), NotificationError> {
    let t = &event.tenant;
    let rule = &n.config.notification.tenant(t.as_str()).rules.price_drop;
    let at = event.occurred_at.0;
    let state = item_register(n, t, item).await?;
    let previous = state.iter().find(|(f, _)| f == "price").map(|(_, v)| v.clone());
    let old_currency = state.iter().find(|(f, _)| f == "currency").map(|(_, (_, c))| c.clone());
    let newest = previous.as_ref().is_none_or(|(prev_at, _)| at >= *prev_at);
    let old = previous.as_ref().and_then(|(_, v)| v.parse::<i64>().ok());
    if let Some(old) = old
        && rule.enabled
        && newest
        && old_currency.as_deref() == Some(currency)
        && (price as f64) <= old as f64 * (1.0 - rule.min_drop_pct / 100.0)
    {
        let since = at - ms(days(rule.viewed_within_days));
        let read = Read::SortedRange {
            key: keys::item_viewers(t, item),
            min: since as f64,
            max: f64::INFINITY,
            limit: rule.max_viewers,
        };
        if let Some(Value::Sorted(viewers)) = n.store.read(vec![read]).await?.pop() {
            let pct = (1.0 - price as f64 / old as f64) * 100.0;
            for (user, _) in viewers {
                let draft = Draft::new(
                    Kind::PriceDrop,
                    t,
                    &format!("{item}:{user}:{}", event.id),
                    &user,
                    item.as_str(),
                    format!("{item} is {pct:.0}% cheaper"),
                    format!("An item you viewed, {item}, now costs {price} {currency} (was {old})."),
                    vec![
                        ("item_id", item.to_string()),
                        ("old_price_minor", old.to_string()),
                        ("new_price_minor", price.to_string()),
                        ("currency", currency.to_string()),
                    ],
                    event.id.as_str(),
                    n.now(),
                );
                n.deliver(&draft).await?;
            }
        }
    }
    let key = keys::item_state(t, item);
    let writes = vec![
        Write::HashSetLatest { key: key.clone(), field: "price".into(), value: price.to_string(), at_ms: at },
        Write::HashSetLatest { key, field: "currency".into(), value: currency.to_string(), at_ms: at },
    ];
    n.store.write(WriteBatch { writes, atomic: true, guard: None }).await?;
    Ok(())
}

fn feature_settings(n: &Notifier) -> FeatureSettings {
    FeatureSettings::from_config(&n.config.feature)
}

/// The cart-idle timer of the cart change at `at`: fires when no later change happened, the
/// cart still holds items, and the purchase intent reaches the threshold.
pub async fn check_cart_idle(
    n: &Notifier,
    t: &TenantId,
    user: &str,
    at: i64,
) -> Result<Checked, NotificationError> {
    let rule = &n.config.notification.tenant(t.as_str()).rules.cart_abandonment;
    let Ok(u) = UserId::parse(user.to_string()) else { return Ok(Checked::Silent) };
    if !rule.enabled {
        return Ok(Checked::Silent);
    }
    let now = n.now();
    let latest = n.store.read(vec![Read::SortedTop { key: fkeys::user_cart_log(t, &u), n: 1 }]).await?.pop();
    let last_change = match latest {
        Some(Value::Sorted(top)) => top.first().map(|(_, s)| *s as i64),
        _ => None,
    };
    match last_change {
        // A later change has its own timer.
        Some(last) if last > at => return Ok(Checked::Silent),
        // The feature service has not applied this change yet: look again shortly.
        Some(last) if last < at => return Ok(Checked::Later(now.0 + 2000)),
        None => return Ok(Checked::Later(now.0 + 2000)),
        _ => {}
    }
    let features = read_user_features(&*n.store, t, &u, &feature_settings(n), now).await?;
    if features.cart.is_empty() {
        return Ok(Checked::Silent);
    }
    let intent = n.seams.intent.intent(t, &u, &features, now).await?;
    if intent < rule.min_intent {
        return Ok(Checked::Silent);
    }
    let cart: Vec<ItemId> = features.cart.keys().cloned().collect();
    let mut exclude: BTreeSet<ItemId> = cart.iter().cloned().collect();
    // Recently bought items are no complements either.
    exclude.extend(
        features
            .recent
            .iter()
            .filter(|i| i.kind == shopmind_domain::InteractionKind::Purchase)
            .map(|i| i.item.clone()),
    );
    let complements = n.seams.complements.complements(t, &cart, &exclude, rule.complements, now).await?;
    let list = |items: &[ItemId]| items.iter().map(ItemId::as_str).collect::<Vec<_>>().join(",");
    let draft = Draft::new(
        Kind::CartAbandoned,
        t,
        &format!("{user}:{at}"),
        user,
        "cart",
        "You left something in your cart".into(),
        format!("{} item(s) are waiting in your cart.", cart.len()),
        vec![
            ("cart_items", list(&cart)),
            ("complements", list(&complements)),
            ("intent", format!("{intent:.2}")),
        ],
        "",
        now,
    );
    n.deliver(&draft).await?;
    Ok(Checked::Fired)
}

/// The churn check of the order at `at`: fires when no later order happened and the time since
/// the last order exceeds `drift_ratio` times the customer's mean time between orders.
pub async fn check_churn(
    n: &Notifier,
    t: &TenantId,
    user: &str,
    at: i64,
) -> Result<Checked, NotificationError> {
    let rule = &n.config.notification.tenant(t.as_str()).rules.churn_risk;
    let Ok(u) = UserId::parse(user.to_string()) else { return Ok(Checked::Silent) };
    if !rule.enabled {
        return Ok(Checked::Silent);
    }
    let now = n.now();
    let f = read_user_features(&*n.store, t, &u, &feature_settings(n), now).await?;
    let (Some(_), Some(last)) = (f.first_order_ms, f.last_order_ms) else {
        return Ok(Checked::Later(now.0 + 2000));
    };
    if last > at {
        return Ok(Checked::Silent);
    }
    if last < at {
        return Ok(Checked::Later(now.0 + 2000));
    }
    // Too few orders, or all at one instant: no rhythm to drift from.
    let (Some(gap), Some(due)) =
        (mean_order_gap_ms(&f, rule.min_orders), churn_due_ms(&f, rule.drift_ratio, rule.min_orders))
    else {
        return Ok(Checked::Silent);
    };
    if now.0 < due {
        return Ok(Checked::Later(due));
    }
    let recency_days = (now.0 - last) as f64 / DAY_MS as f64;
    let gap_days = gap / DAY_MS as f64;
    let draft = Draft::new(
        Kind::ChurnRisk,
        t,
        &format!("{user}:{last}"),
        user,
        "",
        format!("Customer {user} may be churning"),
        format!(
            "No order for {recency_days:.1} days; they used to order every {gap_days:.1} days ({} orders).",
            f.order_count
        ),
        vec![
            ("customer_id", user.to_string()),
            ("recency_days", format!("{recency_days:.1}")),
            ("mean_gap_days", format!("{gap_days:.1}")),
            ("orders", f.order_count.to_string()),
            ("last_order_ms", last.to_string()),
        ],
        "",
        now,
    );
    n.deliver(&draft).await?;
    Ok(Checked::Fired)
}
