//! The validated event model and its conversion from and to the wire contract.

use std::collections::BTreeMap;

use shopmind_proto::v1 as pb;

use crate::UnixMillis;
use crate::ids::{ConversationId, EventId, IdError, ItemId, OrderId, SessionId, TenantId, UserId};
use crate::validate::{RejectCode, ValidationPolicy, Violation, Violations};

/// Largest quantity on one cart change or order line.
pub const MAX_QUANTITY: u32 = 10_000;
/// Most lines in one order.
pub const MAX_ORDER_LINES: usize = 500;
/// Longest support message, in bytes.
pub const MAX_TEXT_LEN: usize = 8 * 1024;
/// Longest search query, title or attribute value, in bytes.
pub const MAX_SHORT_TEXT_LEN: usize = 1024;
/// Most search results, category levels or attributes on one event.
pub const MAX_LIST_LEN: usize = 200;

/// A validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub tenant: TenantId,
    pub occurred_at: UnixMillis,
    /// Present for every customer event; absent for catalog and inventory events.
    pub user: Option<UserId>,
    pub session: Option<SessionId>,
    pub payload: Payload,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    ProductViewed { item: ItemId },
    AddedToCart { item: ItemId, quantity: u32, unit_price: Option<Money> },
    RemovedFromCart { item: ItemId, quantity: u32 },
    OrderPlaced { order: OrderId, lines: Vec<OrderLine> },
    OrderStatusChanged { order: OrderId, status: OrderStatus },
    SearchPerformed { query: String, results: Vec<ItemId> },
    SupportMessage { conversation: ConversationId, author: Author, text: String },
    ItemUpserted(CatalogItem),
    InventoryChanged { item: ItemId, available: i64 },
}

/// The kind of an event; its string form is the last token of the event's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    ProductViewed,
    AddedToCart,
    RemovedFromCart,
    OrderPlaced,
    OrderStatusChanged,
    SearchPerformed,
    SupportMessage,
    ItemUpserted,
    InventoryChanged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ProductViewed => "product_viewed",
            Self::AddedToCart => "added_to_cart",
            Self::RemovedFromCart => "removed_from_cart",
            Self::OrderPlaced => "order_placed",
            Self::OrderStatusChanged => "order_status_changed",
            Self::SearchPerformed => "search_performed",
            Self::SupportMessage => "support_message",
            Self::ItemUpserted => "item_upserted",
            Self::InventoryChanged => "inventory_changed",
        }
    }

    /// Whether events of this kind are about a customer (and so need a user id).
    pub fn is_customer_event(self) -> bool {
        !matches!(self, Self::ItemUpserted | Self::InventoryChanged)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    pub item: ItemId,
    pub quantity: u32,
    pub unit_price: Option<Money>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Placed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Returned,
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Returned => "returned",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Placed,
            Self::Paid,
            Self::Shipped,
            Self::Delivered,
            Self::Cancelled,
            Self::Returned,
            Self::Refunded,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Author {
    Customer,
    Agent(UserId),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogItem {
    pub item: ItemId,
    pub title: String,
    pub category_path: Vec<String>,
    pub price: Option<Money>,
    pub attributes: BTreeMap<String, String>,
}

/// How a customer touched an item; the signal recommendation models learn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionKind {
    View,
    Cart,
    Purchase,
}

impl InteractionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::View => "view",
            Self::Cart => "cart",
            Self::Purchase => "purchase",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "view" => Some(Self::View),
            "cart" => Some(Self::Cart),
            "purchase" => Some(Self::Purchase),
            _ => None,
        }
    }
}

/// One customer-item interaction derived from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub item: ItemId,
    pub kind: InteractionKind,
    pub at: UnixMillis,
}

impl Payload {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::ProductViewed { .. } => EventKind::ProductViewed,
            Self::AddedToCart { .. } => EventKind::AddedToCart,
            Self::RemovedFromCart { .. } => EventKind::RemovedFromCart,
            Self::OrderPlaced { .. } => EventKind::OrderPlaced,
            Self::OrderStatusChanged { .. } => EventKind::OrderStatusChanged,
            Self::SearchPerformed { .. } => EventKind::SearchPerformed,
            Self::SupportMessage { .. } => EventKind::SupportMessage,
            Self::ItemUpserted(_) => EventKind::ItemUpserted,
            Self::InventoryChanged { .. } => EventKind::InventoryChanged,
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        self.payload.kind()
    }

    /// The customer-item interactions this event stands for (views, cart adds, purchases).
    pub fn interactions(&self) -> Vec<Interaction> {
        let at = self.occurred_at;
        let one = |item: &ItemId, kind| vec![Interaction { item: item.clone(), kind, at }];
        match &self.payload {
            Payload::ProductViewed { item } => one(item, InteractionKind::View),
            Payload::AddedToCart { item, .. } => one(item, InteractionKind::Cart),
            Payload::OrderPlaced { lines, .. } => lines
                .iter()
                .map(|l| Interaction { item: l.item.clone(), kind: InteractionKind::Purchase, at })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Validates a wire event. `expected_tenant` is the tenant of the call or subject that
    /// carried it: an empty tenant in the event takes it, a different one is rejected.
    pub fn from_proto(
        ev: &pb::Event,
        expected_tenant: Option<&TenantId>,
        policy: &ValidationPolicy,
    ) -> Result<Event, Violations> {
        if let Some(max) = policy.max_event_bytes {
            let size = prost::Message::encoded_len(ev);
            if size > max {
                return Err(Violations(vec![Violation {
                    code: RejectCode::PayloadTooLarge,
                    field: String::new(),
                    description: format!("the event is {size} bytes encoded; at most {max} are accepted"),
                }]));
            }
        }
        let mut c = Checker::default();

        let id = c.id("event_id", &ev.event_id, EventId::parse);
        let tenant = match (ev.tenant.as_str(), expected_tenant) {
            ("", Some(t)) => Some(t.clone()),
            ("", None) => {
                c.push(RejectCode::MissingField, "tenant", "required");
                None
            }
            (raw, expected) => match TenantId::parse(raw) {
                Ok(t) => match expected {
                    Some(e) if *e != t => {
                        c.push(
                            RejectCode::TenantMismatch,
                            "tenant",
                            format!("event tenant {t:?} differs from the call's tenant {e:?}"),
                        );
                        None
                    }
                    _ => Some(t),
                },
                Err(e) => {
                    c.push(RejectCode::InvalidTenant, "tenant", e.to_string());
                    None
                }
            },
        };

        let occurred_at = match &ev.occurred_at {
            None => {
                c.push(RejectCode::MissingField, "occurred_at", "required");
                None
            }
            Some(ts) => {
                let at = UnixMillis::from_proto(ts);
                if at < policy.earliest {
                    c.push(
                        RejectCode::TimestampOutOfRange,
                        "occurred_at",
                        format!(
                            "{} ms is before the earliest accepted time {} ms (seconds given as milliseconds?)",
                            at.0, policy.earliest.0
                        ),
                    );
                    None
                } else if let Some(skew) = policy.max_future_skew
                    && at > policy.now.saturating_add(skew)
                {
                    c.push(
                        RejectCode::TimestampOutOfRange,
                        "occurred_at",
                        format!("more than {} s in the future", skew.as_secs()),
                    );
                    None
                } else {
                    Some(at)
                }
            }
        };

        let session = if ev.session_id.is_empty() {
            None
        } else {
            c.id("session_id", &ev.session_id, SessionId::parse)
        };

        let payload = match &ev.payload {
            None => {
                c.push(RejectCode::MissingField, "payload", "one of the event payloads is required");
                None
            }
            Some(p) => c.payload(p),
        };

        let needs_user = payload.as_ref().is_some_and(|p: &Payload| p.kind().is_customer_event());
        let user = if ev.user_id.is_empty() {
            if needs_user {
                c.push(RejectCode::MissingField, "user_id", "required for customer events");
            }
            None
        } else {
            c.id("user_id", &ev.user_id, UserId::parse)
        };

        match (id, tenant, occurred_at, payload) {
            (Some(id), Some(tenant), Some(occurred_at), Some(payload)) if c.0.is_empty() => {
                Ok(Event { id, tenant, occurred_at, user, session, payload })
            }
            _ => Err(Violations(c.0)),
        }
    }

    /// The canonical wire form of this event.
    pub fn to_proto(&self) -> pb::Event {
        use pb::event::Payload as P;
        let money = |m: &Option<Money>| {
            m.as_ref().map(|m| pb::Money { amount_minor: m.amount_minor, currency: m.currency.clone() })
        };
        let payload = match &self.payload {
            Payload::ProductViewed { item } => {
                P::ProductViewed(pb::ProductViewed { item_id: item.to_string(), source: String::new() })
            }
            Payload::AddedToCart { item, quantity, unit_price } => P::AddedToCart(pb::AddedToCart {
                item_id: item.to_string(),
                quantity: *quantity,
                unit_price: money(unit_price),
            }),
            Payload::RemovedFromCart { item, quantity } => {
                P::RemovedFromCart(pb::RemovedFromCart { item_id: item.to_string(), quantity: *quantity })
            }
            Payload::OrderPlaced { order, lines } => P::OrderPlaced(pb::OrderPlaced {
                order_id: order.to_string(),
                lines: lines
                    .iter()
                    .map(|l| pb::OrderLine {
                        item_id: l.item.to_string(),
                        quantity: l.quantity,
                        unit_price: money(&l.unit_price),
                    })
                    .collect(),
            }),
            Payload::OrderStatusChanged { order, status } => P::OrderStatusChanged(pb::OrderStatusChanged {
                order_id: order.to_string(),
                status: order_status_to_proto(*status) as i32,
            }),
            Payload::SearchPerformed { query, results } => P::SearchPerformed(pb::SearchPerformed {
                query: query.clone(),
                result_item_ids: results.iter().map(ToString::to_string).collect(),
            }),
            Payload::SupportMessage { conversation, author, text } => {
                let (role, author_id) = match author {
                    Author::Customer => (pb::AuthorRole::Customer, String::new()),
                    Author::Agent(a) => (pb::AuthorRole::Agent, a.to_string()),
                };
                P::SupportMessage(pb::SupportMessage {
                    conversation_id: conversation.to_string(),
                    author_role: role as i32,
                    author_id,
                    text: text.clone(),
                })
            }
            Payload::ItemUpserted(item) => P::ItemUpserted(pb::ItemUpserted {
                item_id: item.item.to_string(),
                title: item.title.clone(),
                category_path: item.category_path.clone(),
                price: money(&item.price),
                attributes: item.attributes.clone().into_iter().collect(),
            }),
            Payload::InventoryChanged { item, available } => P::InventoryChanged(pb::InventoryChanged {
                item_id: item.to_string(),
                quantity_available: *available,
            }),
        };
        pb::Event {
            event_id: self.id.to_string(),
            tenant: self.tenant.to_string(),
            occurred_at: Some(self.occurred_at.to_proto()),
            user_id: self.user.as_ref().map(ToString::to_string).unwrap_or_default(),
            session_id: self.session.as_ref().map(ToString::to_string).unwrap_or_default(),
            payload: Some(payload),
        }
    }
}

fn order_status_to_proto(s: OrderStatus) -> pb::OrderStatus {
    match s {
        OrderStatus::Placed => pb::OrderStatus::Placed,
        OrderStatus::Paid => pb::OrderStatus::Paid,
        OrderStatus::Shipped => pb::OrderStatus::Shipped,
        OrderStatus::Delivered => pb::OrderStatus::Delivered,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
        OrderStatus::Returned => pb::OrderStatus::Returned,
        OrderStatus::Refunded => pb::OrderStatus::Refunded,
    }
}

/// Accumulates violations while converting, so that a client sees every problem at once.
#[derive(Default)]
struct Checker(Vec<Violation>);

impl Checker {
    fn push(&mut self, code: RejectCode, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(Violation { code, field: field.into(), description: description.into() });
    }

    fn id<T>(&mut self, field: &str, raw: &str, parse: fn(String) -> Result<T, IdError>) -> Option<T> {
        match parse(raw.to_owned()) {
            Ok(v) => Some(v),
            Err(IdError::Empty) => {
                self.push(RejectCode::MissingField, field, "required");
                None
            }
            Err(e) => {
                self.push(RejectCode::InvalidId, field, e.to_string());
                None
            }
        }
    }

    fn quantity(&mut self, field: &str, q: u32) -> Option<u32> {
        if q == 0 || q > MAX_QUANTITY {
            self.push(RejectCode::InvalidQuantity, field, format!("must be 1..={MAX_QUANTITY}, got {q}"));
            None
        } else {
            Some(q)
        }
    }

    fn money(&mut self, field: &str, m: &Option<pb::Money>) -> Option<Option<Money>> {
        let Some(m) = m else { return Some(None) };
        let mut ok = true;
        if m.amount_minor < 0 {
            self.push(RejectCode::InvalidPrice, format!("{field}.amount_minor"), "must not be negative");
            ok = false;
        }
        if m.currency.len() != 3 || !m.currency.chars().all(|c| c.is_ascii_uppercase()) {
            self.push(
                RejectCode::InvalidPrice,
                format!("{field}.currency"),
                format!("must be an ISO 4217 code like \"EUR\", got {:?}", m.currency),
            );
            ok = false;
        }
        ok.then(|| Some(Money { amount_minor: m.amount_minor, currency: m.currency.clone() }))
    }

    fn text(&mut self, field: &str, s: &str, max: usize, required: bool) -> Option<String> {
        if required && s.trim().is_empty() {
            self.push(RejectCode::MissingField, field, "required");
            None
        } else if s.len() > max {
            self.push(RejectCode::TooLong, field, format!("at most {max} bytes, got {}", s.len()));
            None
        } else {
            Some(s.to_owned())
        }
    }

    fn list_len(&mut self, field: &str, len: usize, max: usize) -> bool {
        if len > max {
            self.push(RejectCode::TooMany, field, format!("at most {max} entries, got {len}"));
            false
        } else {
            true
        }
    }

    fn payload(&mut self, p: &pb::event::Payload) -> Option<Payload> {
        use pb::event::Payload as P;
        let before = self.0.len();
        let payload = match p {
            P::ProductViewed(v) => {
                let item = self.id("product_viewed.item_id", &v.item_id, ItemId::parse);
                item.map(|item| Payload::ProductViewed { item })
            }
            P::AddedToCart(v) => {
                let item = self.id("added_to_cart.item_id", &v.item_id, ItemId::parse);
                let quantity = self.quantity("added_to_cart.quantity", v.quantity);
                let price = self.money("added_to_cart.unit_price", &v.unit_price);
                match (item, quantity, price) {
                    (Some(item), Some(quantity), Some(unit_price)) => {
                        Some(Payload::AddedToCart { item, quantity, unit_price })
                    }
                    _ => None,
                }
            }
            P::RemovedFromCart(v) => {
                let item = self.id("removed_from_cart.item_id", &v.item_id, ItemId::parse);
                let quantity = self.quantity("removed_from_cart.quantity", v.quantity);
                item.zip(quantity).map(|(item, quantity)| Payload::RemovedFromCart { item, quantity })
            }
            P::OrderPlaced(v) => {
                let order = self.id("order_placed.order_id", &v.order_id, OrderId::parse);
                if v.lines.is_empty() {
                    self.push(
                        RejectCode::MissingField,
                        "order_placed.lines",
                        "an order needs at least one line",
                    );
                }
                self.list_len("order_placed.lines", v.lines.len(), MAX_ORDER_LINES);
                let lines: Vec<OrderLine> = v
                    .lines
                    .iter()
                    .enumerate()
                    .take(MAX_ORDER_LINES)
                    .filter_map(|(i, l)| {
                        let f = format!("order_placed.lines[{i}]");
                        let item = self.id(&format!("{f}.item_id"), &l.item_id, ItemId::parse);
                        let quantity = self.quantity(&format!("{f}.quantity"), l.quantity);
                        let price = self.money(&format!("{f}.unit_price"), &l.unit_price);
                        match (item, quantity, price) {
                            (Some(item), Some(quantity), Some(unit_price)) => {
                                Some(OrderLine { item, quantity, unit_price })
                            }
                            _ => None,
                        }
                    })
                    .collect();
                order.map(|order| Payload::OrderPlaced { order, lines })
            }
            P::OrderStatusChanged(v) => {
                let order = self.id("order_status_changed.order_id", &v.order_id, OrderId::parse);
                let status = match pb::OrderStatus::try_from(v.status) {
                    Ok(pb::OrderStatus::Placed) => Some(OrderStatus::Placed),
                    Ok(pb::OrderStatus::Paid) => Some(OrderStatus::Paid),
                    Ok(pb::OrderStatus::Shipped) => Some(OrderStatus::Shipped),
                    Ok(pb::OrderStatus::Delivered) => Some(OrderStatus::Delivered),
                    Ok(pb::OrderStatus::Cancelled) => Some(OrderStatus::Cancelled),
                    Ok(pb::OrderStatus::Returned) => Some(OrderStatus::Returned),
                    Ok(pb::OrderStatus::Refunded) => Some(OrderStatus::Refunded),
                    Ok(pb::OrderStatus::Unspecified) | Err(_) => {
                        self.push(
                            RejectCode::InvalidEnum,
                            "order_status_changed.status",
                            format!("must be a known, specified OrderStatus, got {}", v.status),
                        );
                        None
                    }
                };
                order.zip(status).map(|(order, status)| Payload::OrderStatusChanged { order, status })
            }
            P::SearchPerformed(v) => {
                let query = self.text("search_performed.query", &v.query, MAX_SHORT_TEXT_LEN, true);
                self.list_len("search_performed.result_item_ids", v.result_item_ids.len(), MAX_LIST_LEN);
                let results: Vec<ItemId> = v
                    .result_item_ids
                    .iter()
                    .enumerate()
                    .take(MAX_LIST_LEN)
                    .filter_map(|(i, r)| {
                        self.id(&format!("search_performed.result_item_ids[{i}]"), r, ItemId::parse)
                    })
                    .collect();
                query.map(|query| Payload::SearchPerformed { query, results })
            }
            P::SupportMessage(v) => {
                let conversation =
                    self.id("support_message.conversation_id", &v.conversation_id, ConversationId::parse);
                let text = self.text("support_message.text", &v.text, MAX_TEXT_LEN, true);
                let author = match pb::AuthorRole::try_from(v.author_role) {
                    Ok(pb::AuthorRole::Customer) => Some(Author::Customer),
                    Ok(pb::AuthorRole::Agent) => {
                        self.id("support_message.author_id", &v.author_id, UserId::parse).map(Author::Agent)
                    }
                    Ok(pb::AuthorRole::Unspecified) | Err(_) => {
                        self.push(
                            RejectCode::InvalidEnum,
                            "support_message.author_role",
                            format!("must be CUSTOMER or AGENT, got {}", v.author_role),
                        );
                        None
                    }
                };
                match (conversation, author, text) {
                    (Some(conversation), Some(author), Some(text)) => {
                        Some(Payload::SupportMessage { conversation, author, text })
                    }
                    _ => None,
                }
            }
            P::ItemUpserted(v) => {
                let item = self.id("item_upserted.item_id", &v.item_id, ItemId::parse);
                let title = self.text("item_upserted.title", &v.title, MAX_SHORT_TEXT_LEN, false);
                let price = self.money("item_upserted.price", &v.price);
                self.list_len("item_upserted.category_path", v.category_path.len(), MAX_LIST_LEN);
                self.list_len("item_upserted.attributes", v.attributes.len(), MAX_LIST_LEN);
                for (i, c) in v.category_path.iter().enumerate() {
                    self.text(&format!("item_upserted.category_path[{i}]"), c, MAX_SHORT_TEXT_LEN, true);
                }
                for (k, val) in &v.attributes {
                    self.text(&format!("item_upserted.attributes[{k:?}]"), val, MAX_SHORT_TEXT_LEN, false);
                }
                match (item, title, price) {
                    (Some(item), Some(title), Some(price)) => Some(Payload::ItemUpserted(CatalogItem {
                        item,
                        title,
                        category_path: v.category_path.clone(),
                        price,
                        attributes: v.attributes.clone().into_iter().collect(),
                    })),
                    _ => None,
                }
            }
            P::InventoryChanged(v) => {
                let item = self.id("inventory_changed.item_id", &v.item_id, ItemId::parse);
                if v.quantity_available < 0 {
                    self.push(
                        RejectCode::InvalidQuantity,
                        "inventory_changed.quantity_available",
                        "must not be negative",
                    );
                }
                item.map(|item| Payload::InventoryChanged { item, available: v.quantity_available })
            }
        };
        if self.0.len() > before { None } else { payload }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::event::Payload as P;

    fn base(payload: P) -> pb::Event {
        pb::Event {
            event_id: "e-1".into(),
            tenant: "acme".into(),
            occurred_at: Some(UnixMillis(1_700_000_000_000).to_proto()),
            user_id: "u-1".into(),
            session_id: String::new(),
            payload: Some(payload),
        }
    }

    fn policy() -> ValidationPolicy {
        ValidationPolicy::ingest(UnixMillis(1_700_000_000_000))
    }

    fn fields(r: Result<Event, Violations>) -> Vec<(RejectCode, String)> {
        r.expect_err("should be rejected").0.into_iter().map(|v| (v.code, v.field)).collect()
    }

    #[test]
    fn valid_event_round_trips_through_proto() {
        let wire = base(P::OrderPlaced(pb::OrderPlaced {
            order_id: "o-1".into(),
            lines: vec![pb::OrderLine {
                item_id: "sku-1".into(),
                quantity: 2,
                unit_price: Some(pb::Money { amount_minor: 1999, currency: "EUR".into() }),
            }],
        }));
        let ev = Event::from_proto(&wire, None, &policy()).expect("valid");
        assert_eq!(ev.kind(), EventKind::OrderPlaced);
        assert_eq!(ev.interactions().len(), 1);
        assert_eq!(ev.to_proto(), wire);
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let mut wire = base(P::OrderPlaced(pb::OrderPlaced {
            order_id: "".into(),
            lines: vec![pb::OrderLine {
                item_id: "bad id".into(),
                quantity: 0,
                unit_price: Some(pb::Money { amount_minor: -1, currency: "eur".into() }),
            }],
        }));
        wire.user_id.clear();
        wire.occurred_at = Some(UnixMillis(1_700_000_000).to_proto()); // seconds given as millis
        let got = fields(Event::from_proto(&wire, None, &policy()));
        let want = vec![
            (RejectCode::TimestampOutOfRange, "occurred_at".to_string()),
            (RejectCode::MissingField, "order_placed.order_id".into()),
            (RejectCode::InvalidId, "order_placed.lines[0].item_id".into()),
            (RejectCode::InvalidQuantity, "order_placed.lines[0].quantity".into()),
            (RejectCode::InvalidPrice, "order_placed.lines[0].unit_price.amount_minor".into()),
            (RejectCode::InvalidPrice, "order_placed.lines[0].unit_price.currency".into()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn customer_events_need_a_user_but_catalog_events_do_not() {
        let mut view =
            base(P::ProductViewed(pb::ProductViewed { item_id: "i".into(), source: String::new() }));
        view.user_id.clear();
        assert_eq!(
            fields(Event::from_proto(&view, None, &policy())),
            vec![(RejectCode::MissingField, "user_id".to_string())]
        );
        let mut item = base(P::ItemUpserted(pb::ItemUpserted { item_id: "i".into(), ..Default::default() }));
        item.user_id.clear();
        assert!(Event::from_proto(&item, None, &policy()).is_ok());
    }

    #[test]
    fn tenant_comes_from_the_call_and_must_match() {
        let acme = TenantId::parse("acme").expect("valid");
        let other = TenantId::parse("other").expect("valid");
        let mut wire =
            base(P::ProductViewed(pb::ProductViewed { item_id: "i".into(), source: String::new() }));
        assert_eq!(
            fields(Event::from_proto(&wire, Some(&other), &policy())),
            vec![(RejectCode::TenantMismatch, "tenant".to_string())]
        );
        wire.tenant.clear();
        assert_eq!(Event::from_proto(&wire, Some(&acme), &policy()).expect("valid").tenant, acme);
        assert_eq!(
            fields(Event::from_proto(&wire, None, &policy())),
            vec![(RejectCode::MissingField, "tenant".to_string())]
        );
    }

    #[test]
    fn future_skew_is_bounded_at_ingest_but_not_for_stored_events() {
        let mut wire =
            base(P::ProductViewed(pb::ProductViewed { item_id: "i".into(), source: String::new() }));
        wire.occurred_at = Some(UnixMillis(1_700_000_000_000 + 301_000).to_proto());
        assert_eq!(
            fields(Event::from_proto(&wire, None, &policy())),
            vec![(RejectCode::TimestampOutOfRange, "occurred_at".to_string())]
        );
        assert!(Event::from_proto(&wire, None, &ValidationPolicy::stored()).is_ok());
    }

    #[test]
    fn oversized_events_are_rejected_before_anything_else() {
        let wire = base(P::SupportMessage(pb::SupportMessage {
            conversation_id: "c".into(),
            author_role: pb::AuthorRole::Customer as i32,
            author_id: String::new(),
            text: "x".repeat(2000),
        }));
        let small = ValidationPolicy { max_event_bytes: Some(1000), ..policy() };
        assert_eq!(
            fields(Event::from_proto(&wire, None, &small)),
            vec![(RejectCode::PayloadTooLarge, String::new())]
        );
        assert!(Event::from_proto(&wire, None, &policy()).is_ok());
    }

    #[test]
    fn unknown_enum_values_and_missing_payload_are_rejected() {
        let wire = base(P::OrderStatusChanged(pb::OrderStatusChanged { order_id: "o".into(), status: 42 }));
        assert_eq!(
            fields(Event::from_proto(&wire, None, &policy())),
            vec![(RejectCode::InvalidEnum, "order_status_changed.status".to_string())]
        );
        let mut none = wire.clone();
        none.payload = None;
        assert_eq!(
            fields(Event::from_proto(&none, None, &policy())),
            vec![(RejectCode::MissingField, "payload".to_string())]
        );
    }
}
