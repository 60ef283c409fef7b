//! The domain model of shopmind.
//!
//! Protocol types (`shopmind_proto`) stop at the edge: [`Event::from_proto`] validates a wire event
//! and yields a domain [`Event`] whose ids and values are known to be well-formed, or every
//! [`Violation`] found, each with a stable [`RejectCode`] and the path of the offending field.

mod event;
mod ids;
mod time;
mod validate;

pub use event::{
    Author, CatalogItem, Event, EventKind, Interaction, InteractionKind, Money, OrderLine, OrderStatus,
    Payload,
};
pub use ids::{ConversationId, EventId, IdError, ItemId, OrderId, SessionId, TenantId, UserId};
pub use time::UnixMillis;
pub use validate::{RejectCode, ValidationPolicy, Violation, Violations};
