//! The flat record schema (docs/FILES.md) and its conversion to `shopmind.v1.Event`.
//!
//! A record is a JSON object; a CSV row becomes one whose values are strings. The conversion
//! turns only what cannot be represented on the wire into an error (an unknown `type`, a
//! misspelt field, "abc" as a quantity); whether the event is valid (ids, ranges, required
//! fields) is for `shopmind_domain::Event::from_proto` to say.

use prost_types::Timestamp;
use serde_json::{Map, Value};
use shopmind_proto::v1 as pb;

use crate::money::{minor_unit_digits, parse_major};

pub(crate) type Fields = Map<String, Value>;

/// Fields of every event.
pub const ENVELOPE_FIELDS: [&str; 6] = ["type", "event_id", "tenant", "occurred_at", "user_id", "session_id"];

/// The event types and the payload fields each takes.
pub const TYPES: [(&str, &[&str]); 9] = [
    ("product_viewed", &["item_id", "source"]),
    ("added_to_cart", &["item_id", "quantity", "price", "currency"]),
    ("removed_from_cart", &["item_id", "quantity"]),
    ("order_placed", &["order_id", "lines", "item_id", "quantity", "price", "currency"]),
    ("order_status_changed", &["order_id", "status"]),
    ("search_performed", &["query", "results"]),
    ("support_message", &["conversation_id", "author", "author_id", "text"]),
    ("item_upserted", &["item_id", "title", "category", "price", "currency", "attributes"]),
    ("inventory_changed", &["item_id", "available"]),
];

/// Fields of an order line (in `lines`, or one CSV row of an order).
pub const LINE_FIELDS: [&str; 4] = ["item_id", "quantity", "price", "currency"];

/// A column or key `attr.<name>` is the attribute `<name>` of an `item_upserted` event.
pub const ATTRIBUTE_PREFIX: &str = "attr.";

/// Order statuses as written in files.
pub const STATUSES: [(&str, pb::OrderStatus); 7] = [
    ("placed", pb::OrderStatus::Placed),
    ("paid", pb::OrderStatus::Paid),
    ("shipped", pb::OrderStatus::Shipped),
    ("delivered", pb::OrderStatus::Delivered),
    ("cancelled", pb::OrderStatus::Cancelled),
    ("returned", pb::OrderStatus::Returned),
    ("refunded", pb::OrderStatus::Refunded),
];

/// Whether `name` is a field of the schema (any type), or an attribute column.
pub fn is_known_field(name: &str) -> bool {
    ENVELOPE_FIELDS.contains(&name)
        || TYPES.iter().any(|(_, fields)| fields.contains(&name))
        || name.strip_prefix(ATTRIBUTE_PREFIX).is_some_and(|a| !a.is_empty())
}

/// One record read from a file.
pub(crate) struct RawRecord {
    /// Line the record starts on.
    pub line: usize,
    pub fields: Fields,
    /// For an order merged from CSV rows: the line of the row each entry of `lines` came from.
    pub line_rows: Vec<usize>,
}

/// A problem, and the line it is on.
pub(crate) type Problem = (usize, String);

/// A value that counts as given: not null and not an empty string.
fn present(v: Option<&Value>) -> Option<&Value> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(v),
    }
}

fn string(key: &str, v: Option<&Value>) -> Result<String, String> {
    match present(v) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn integer(key: &str, v: Option<&Value>) -> Result<Option<i64>, String> {
    let bad = || format!("`{key}` must be an integer");
    match present(v) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// A quantity; 1 when not given.
fn quantity(key: &str, v: Option<&Value>) -> Result<u32, String> {
    match integer(key, v)? {
        None => Ok(1),
        Some(q) => {
            u32::try_from(q).map_err(|_| format!("`{key}` must be a whole number from 0 to 4294967295"))
        }
    }
}

fn timestamp(key: &str, v: Option<&Value>) -> Result<Option<Timestamp>, String> {
    let bad = || {
        format!("`{key}` must be an RFC 3339 time like \"2026-11-28T12:00:00Z\" or integer Unix milliseconds")
    };
    let millis = |ms: i64| Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    };
    match present(v) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(|ms| Some(millis(ms))).ok_or_else(bad),
        Some(Value::String(s)) => {
            let s = s.trim();
            let digits = s.strip_prefix('-').unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse::<i64>().map(|ms| Some(millis(ms))).map_err(|_| bad());
            }
            s.parse::<Timestamp>().map(Some).map_err(|_| bad())
        }
        Some(_) => Err(bad()),
    }
}

/// A price in major units and its currency, as wire money in minor units.
fn money(
    price_key: &str,
    price: Option<&Value>,
    currency_key: &str,
    currency: Option<&Value>,
) -> Result<Option<pb::Money>, String> {
    let Some(price) = present(price) else { return Ok(None) };
    let currency = string(currency_key, currency)?;
    if currency.is_empty() {
        return Err(format!("`{price_key}` needs a `{currency_key}` (an ISO 4217 code like \"EUR\")"));
    }
    let digits = minor_unit_digits(&currency);
    let text = match price {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(format!("`{price_key}` must be a decimal amount like \"19.99\"")),
    };
    let amount_minor = parse_major(&text, digits).map_err(|e| format!("`{price_key}`: {e}"))?;
    Ok(Some(pb::Money { amount_minor, currency }))
}

/// A JSON value, or a string holding one (a CSV cell) when it starts with `open`.
fn json_in_string(key: &str, v: &Value, open: char) -> Result<Option<Value>, String> {
    match v {
        Value::String(s) if s.trim_start().starts_with(open) => serde_json::from_str(s)
            .map(Some)
            .map_err(|e| format!("`{key}` holds invalid JSON: {}", strip_position(&e))),
        _ => Ok(None),
    }
}

/// A list of strings: a JSON array, or a string split by `split`.
fn list(key: &str, v: Option<&Value>, split: fn(&str) -> Vec<String>) -> Result<Vec<String>, String> {
    let Some(v) = present(v) else { return Ok(Vec::new()) };
    let parsed = json_in_string(key, v, '[')?;
    match parsed.as_ref().unwrap_or(v) {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(format!("`{key}` must be a list of strings")),
            })
            .collect(),
        Value::String(s) => Ok(split(s)),
        _ => Err(format!("`{key}` must be a list of strings")),
    }
}

fn split_whitespace(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn split_category(s: &str) -> Vec<String> {
    s.split('>').map(|c| c.trim().to_owned()).collect()
}

/// The `attributes` object merged with the `attr.<name>` fields.
fn attributes(fields: &Fields) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    let scalar = |key: &str, v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("attribute {key:?} must be a string, number or boolean")),
    };
    if let Some(v) = present(fields.get("attributes")) {
        let parsed = json_in_string("attributes", v, '{')?;
        match parsed.as_ref().unwrap_or(v) {
            Value::Object(map) => {
                for (k, val) in map {
                    if !val.is_null() {
                        out.push((k.clone(), scalar(k, val)?));
                    }
                }
            }
            _ => return Err("`attributes` must be an object of strings".into()),
        }
    }
    for (k, v) in fields {
        if let (Some(name), Some(v)) = (k.strip_prefix(ATTRIBUTE_PREFIX), present(Some(v))) {
            if out.iter().any(|(existing, _)| existing == name) {
                return Err(format!("attribute {name:?} is given twice"));
            }
            out.push((name.to_owned(), scalar(name, v)?));
        }
    }
    Ok(out)
}

fn status(v: Option<&Value>) -> Result<i32, String> {
    let s = string("status", v)?;
    if s.is_empty() {
        return Ok(pb::OrderStatus::Unspecified as i32);
    }
    STATUSES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
        .map(|(_, st)| *st as i32)
        .ok_or_else(|| {
            let names: Vec<&str> = STATUSES.iter().map(|(n, _)| *n).collect();
            format!("unknown `status` {s:?}; expected one of {}", names.join(", "))
        })
}

fn author(v: Option<&Value>) -> Result<i32, String> {
    let s = string("author", v)?;
    match s.trim().to_ascii_lowercase().as_str() {
        "" => Ok(pb::AuthorRole::Unspecified as i32),
        "customer" => Ok(pb::AuthorRole::Customer as i32),
        "agent" => Ok(pb::AuthorRole::Agent as i32),
        _ => Err(format!("unknown `author` {s:?}; expected customer or agent")),
    }
}

/// The message of a JSON error without serde_json's "at line 1 column N" (lines are ours).
pub(crate) fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rsplit_once(" at line ") {
        Some((msg, _)) => format!("{msg} (column {})", e.column()),
        None => text,
    }
}

/// The order lines of an `order_placed` record.
fn order_lines(rec: &RawRecord) -> Result<Vec<pb::OrderLine>, Problem> {
    let f = &rec.fields;
    let at = |line: usize| move |reason: String| (line, reason);
    let top_level = ["item_id", "quantity", "price"].iter().any(|k| present(f.get(*k)).is_some());
    let Some(lines) = present(f.get("lines")) else {
        if !top_level {
            return Ok(Vec::new());
        }
        // The whole order as one line.
        let line = pb::OrderLine {
            item_id: string("item_id", f.get("item_id")).map_err(at(rec.line))?,
            quantity: quantity("quantity", f.get("quantity")).map_err(at(rec.line))?,
            unit_price: money("price", f.get("price"), "currency", f.get("currency"))
                .map_err(at(rec.line))?,
        };
        return Ok(vec![line]);
    };
    if top_level {
        return Err((
            rec.line,
            "give an order's lines in `lines` or as item_id/quantity/price, not both".into(),
        ));
    }
    let parsed = json_in_string("lines", lines, '[').map_err(at(rec.line))?;
    let Value::Array(items) = parsed.as_ref().unwrap_or(lines) else {
        return Err((rec.line, "`lines` must be an array of {item_id, quantity, price, currency}".into()));
    };
    let default_currency = f.get("currency");
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let line_no = rec.line_rows.get(i).copied().unwrap_or(rec.line);
            let err = |reason: String| (line_no, format!("lines[{i}]: {reason}"));
            let Value::Object(l) = item else {
                return Err(err("must be an object {item_id, quantity, price, currency}".into()));
            };
            if let Some(k) = l.keys().find(|k| !LINE_FIELDS.contains(&k.as_str())) {
                return Err(err(format!(
                    "unknown field `{k}` (an order line has {})",
                    LINE_FIELDS.join(", ")
                )));
            }
            let currency =
                if present(l.get("currency")).is_some() { l.get("currency") } else { default_currency };
            Ok(pb::OrderLine {
                item_id: string("item_id", l.get("item_id")).map_err(err)?,
                quantity: quantity("quantity", l.get("quantity")).map_err(err)?,
                unit_price: money("price", l.get("price"), "currency", currency).map_err(err)?,
            })
        })
        .collect()
}

/// Converts one record to a wire event.
pub(crate) fn to_event(rec: &RawRecord) -> Result<pb::Event, Problem> {
    use pb::event::Payload as P;
    let f = &rec.fields;
    let at = |reason: String| (rec.line, reason);
    let kind = string("type", f.get("type")).map_err(at)?;
    if kind.is_empty() {
        return Err(at("missing `type` (the event type, e.g. \"product_viewed\")".into()));
    }
    let Some((kind, allowed)) = TYPES.iter().find(|(name, _)| *name == kind) else {
        let names: Vec<&str> = TYPES.iter().map(|(n, _)| *n).collect();
        return Err(at(format!("unknown `type` {kind:?}; expected one of {}", names.join(", "))));
    };
    for (key, value) in f {
        if present(Some(value)).is_none() || ENVELOPE_FIELDS.contains(&key.as_str()) {
            continue;
        }
        let applies = if key.starts_with(ATTRIBUTE_PREFIX) {
            allowed.contains(&"attributes")
        } else {
            allowed.contains(&key.as_str())
        };
        if applies {
            continue;
        }
        return Err(at(if is_known_field(key) {
            format!("`{key}` does not apply to {kind} events (they take {})", allowed.join(", "))
        } else {
            format!("unknown field `{key}`")
        }));
    }
    let s = |key: &str| string(key, f.get(key)).map_err(at);
    let payload = match *kind {
        "product_viewed" => {
            P::ProductViewed(pb::ProductViewed { item_id: s("item_id")?, source: s("source")? })
        }
        "added_to_cart" => P::AddedToCart(pb::AddedToCart {
            item_id: s("item_id")?,
            quantity: quantity("quantity", f.get("quantity")).map_err(at)?,
            unit_price: money("price", f.get("price"), "currency", f.get("currency")).map_err(at)?,
        }),
        "removed_from_cart" => P::RemovedFromCart(pb::RemovedFromCart {
            item_id: s("item_id")?,
            quantity: quantity("quantity", f.get("quantity")).map_err(at)?,
        }),
        "order_placed" => {
            P::OrderPlaced(pb::OrderPlaced { order_id: s("order_id")?, lines: order_lines(rec)? })
        }
        "order_status_changed" => P::OrderStatusChanged(pb::OrderStatusChanged {
            order_id: s("order_id")?,
            status: status(f.get("status")).map_err(at)?,
        }),
        "search_performed" => P::SearchPerformed(pb::SearchPerformed {
            query: s("query")?,
            result_item_ids: list("results", f.get("results"), split_whitespace).map_err(at)?,
        }),
        "support_message" => P::SupportMessage(pb::SupportMessage {
            conversation_id: s("conversation_id")?,
            author_role: author(f.get("author")).map_err(at)?,
            author_id: s("author_id")?,
            text: s("text")?,
        }),
        "item_upserted" => P::ItemUpserted(pb::ItemUpserted {
            item_id: s("item_id")?,
            title: s("title")?,
            category_path: list("category", f.get("category"), split_category).map_err(at)?,
            price: money("price", f.get("price"), "currency", f.get("currency")).map_err(at)?,
            attributes: attributes(f).map_err(at)?.into_iter().collect(),
        }),
        "inventory_changed" => {
            let Some(available) = integer("available", f.get("available")).map_err(at)? else {
                return Err(at(
                    "`available` (the quantity in stock) is required for inventory_changed".into()
                ));
            };
            P::InventoryChanged(pb::InventoryChanged {
                item_id: s("item_id")?,
                quantity_available: available,
            })
        }
        other => return Err(at(format!("unsupported `type` {other:?}"))),
    };
    Ok(pb::Event {
        event_id: s("event_id")?,
        tenant: s("tenant")?,
        occurred_at: timestamp("occurred_at", f.get("occurred_at")).map_err(at)?,
        user_id: s("user_id")?,
        session_id: s("session_id")?,
        payload: Some(payload),
    })
}
