//! Wire events as JSON Lines records of the file schema.

use std::io::Write;

use serde_json::Value;
use shopmind_proto::v1 as pb;

use crate::FileError;
use crate::money::{format_major, minor_unit_digits};
use crate::schema::STATUSES;

type Record = Vec<(&'static str, Value)>;

fn put_str(rec: &mut Record, key: &'static str, s: &str) {
    if !s.is_empty() {
        rec.push((key, Value::String(s.to_owned())));
    }
}

fn put_money(rec: &mut Record, price: &'static str, m: &Option<pb::Money>) -> Result<(), FileError> {
    let Some(m) = m else { return Ok(()) };
    if m.currency.is_empty() {
        return Err(FileError::Unwritable("a price without a currency".into()));
    }
    let text = format_major(m.amount_minor, minor_unit_digits(&m.currency));
    rec.push((price, Value::String(text)));
    rec.push(("currency", Value::String(m.currency.clone())));
    Ok(())
}

/// The record of an event: fields in schema order, empty ones left out.
fn record(ev: &pb::Event) -> Result<Record, FileError> {
    use pb::event::Payload as P;
    let Some(payload) = &ev.payload else {
        return Err(FileError::Unwritable(format!("event {:?} has no payload", ev.event_id)));
    };
    let kind = match payload {
        P::ProductViewed(_) => "product_viewed",
        P::AddedToCart(_) => "added_to_cart",
        P::RemovedFromCart(_) => "removed_from_cart",
        P::OrderPlaced(_) => "order_placed",
        P::OrderStatusChanged(_) => "order_status_changed",
        P::SearchPerformed(_) => "search_performed",
        P::SupportMessage(_) => "support_message",
        P::ItemUpserted(_) => "item_upserted",
        P::InventoryChanged(_) => "inventory_changed",
    };
    let mut rec: Record = Vec::with_capacity(12);
    put_str(&mut rec, "event_id", &ev.event_id);
    put_str(&mut rec, "tenant", &ev.tenant);
    if let Some(ts) = &ev.occurred_at {
        let mut ts = *ts;
        ts.normalize();
        rec.push(("occurred_at", Value::String(ts.to_string())));
    }
    put_str(&mut rec, "user_id", &ev.user_id);
    put_str(&mut rec, "session_id", &ev.session_id);
    rec.push(("type", Value::String(kind.into())));
    match payload {
        P::ProductViewed(v) => {
            put_str(&mut rec, "item_id", &v.item_id);
            put_str(&mut rec, "source", &v.source);
        }
        P::AddedToCart(v) => {
            put_str(&mut rec, "item_id", &v.item_id);
            rec.push(("quantity", v.quantity.into()));
            put_money(&mut rec, "price", &v.unit_price)?;
        }
        P::RemovedFromCart(v) => {
            put_str(&mut rec, "item_id", &v.item_id);
            rec.push(("quantity", v.quantity.into()));
        }
        P::OrderPlaced(v) => {
            put_str(&mut rec, "order_id", &v.order_id);
            let mut lines = Vec::with_capacity(v.lines.len());
            for l in &v.lines {
                let mut line: Record = Vec::with_capacity(4);
                put_str(&mut line, "item_id", &l.item_id);
                line.push(("quantity", l.quantity.into()));
                put_money(&mut line, "price", &l.unit_price)?;
                lines.push(Value::Object(line.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()));
            }
            rec.push(("lines", Value::Array(lines)));
        }
        P::OrderStatusChanged(v) => {
            put_str(&mut rec, "order_id", &v.order_id);
            if v.status != pb::OrderStatus::Unspecified as i32 {
                let name = STATUSES.iter().find(|(_, st)| *st as i32 == v.status).map(|(n, _)| *n);
                let Some(name) = name else {
                    return Err(FileError::Unwritable(format!("unknown order status {}", v.status)));
                };
                rec.push(("status", Value::String(name.into())));
            }
        }
        P::SearchPerformed(v) => {
            put_str(&mut rec, "query", &v.query);
            if !v.result_item_ids.is_empty() {
                rec.push(("results", v.result_item_ids.clone().into()));
            }
        }
        P::SupportMessage(v) => {
            put_str(&mut rec, "conversation_id", &v.conversation_id);
            match pb::AuthorRole::try_from(v.author_role) {
                Ok(pb::AuthorRole::Unspecified) => {}
                Ok(pb::AuthorRole::Customer) => rec.push(("author", "customer".into())),
                Ok(pb::AuthorRole::Agent) => rec.push(("author", "agent".into())),
                Err(_) => {
                    return Err(FileError::Unwritable(format!("unknown author role {}", v.author_role)));
                }
            }
            put_str(&mut rec, "author_id", &v.author_id);
            put_str(&mut rec, "text", &v.text);
        }
        P::ItemUpserted(v) => {
            put_str(&mut rec, "item_id", &v.item_id);
            put_str(&mut rec, "title", &v.title);
            if !v.category_path.is_empty() {
                rec.push(("category", v.category_path.clone().into()));
            }
            put_money(&mut rec, "price", &v.price)?;
            if !v.attributes.is_empty() {
                let sorted: std::collections::BTreeMap<&String, &String> = v.attributes.iter().collect();
                let map = sorted.into_iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
                rec.push(("attributes", Value::Object(map)));
            }
        }
        P::InventoryChanged(v) => {
            put_str(&mut rec, "item_id", &v.item_id);
            rec.push(("available", v.quantity_available.into()));
        }
    }
    Ok(rec)
}

/// The JSON Lines record of an event, without the line break.
pub fn to_jsonl(ev: &pb::Event) -> Result<String, FileError> {
    let rec = record(ev)?;
    let mut out = String::with_capacity(160);
    out.push('{');
    for (i, (key, value)) in rec.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        out.push_str(&value.to_string());
    }
    out.push('}');
    Ok(out)
}

/// Writes an event as one JSON Lines record (the schema of docs/FILES.md), with its line break.
/// Fails for events the schema cannot hold: no payload, an unknown enum value, a price without
/// a currency.
pub fn write_jsonl<W: Write>(writer: &mut W, ev: &pb::Event) -> Result<(), FileError> {
    let mut line = to_jsonl(ev)?;
    line.push('\n');
    writer.write_all(line.as_bytes()).map_err(FileError::Write)
}
