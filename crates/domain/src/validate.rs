//! Validation results: every problem found in an event, each with a stable code.

use std::fmt;
use std::time::Duration;

use crate::UnixMillis;

/// Why an event was rejected. The string form is a contract (docs/EVENTS.md): clients and the
/// dead-letter stream see it, so a code is never renamed or reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectCode {
    /// The bytes are not a protobuf `shopmind.v1.Event`.
    Malformed,
    /// A required field is empty or absent.
    MissingField,
    /// An id has the wrong length or characters.
    InvalidId,
    /// The tenant is not a valid tenant id.
    InvalidTenant,
    /// The event's tenant differs from the tenant of the call or subject that carried it.
    TenantMismatch,
    /// `occurred_at` is too far in the future or before the earliest accepted time.
    TimestampOutOfRange,
    /// A quantity is zero or above the maximum.
    InvalidQuantity,
    /// A price is negative or its currency is not an ISO 4217 code.
    InvalidPrice,
    /// An enum field holds an unknown or unspecified value.
    InvalidEnum,
    /// A text field is longer than allowed.
    TooLong,
    /// A list has more entries than allowed.
    TooMany,
    /// The encoded event is larger than the configured limit.
    PayloadTooLarge,
    /// The tenant is not one of the configured tenants.
    UnknownTenant,
}

impl RejectCode {
    pub const ALL: [RejectCode; 13] = [
        Self::Malformed,
        Self::MissingField,
        Self::InvalidId,
        Self::InvalidTenant,
        Self::TenantMismatch,
        Self::TimestampOutOfRange,
        Self::InvalidQuantity,
        Self::InvalidPrice,
        Self::InvalidEnum,
        Self::TooLong,
        Self::TooMany,
        Self::PayloadTooLarge,
        Self::UnknownTenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::MissingField => "missing_field",
            Self::InvalidId => "invalid_id",
            Self::InvalidTenant => "invalid_tenant",
            Self::TenantMismatch => "tenant_mismatch",
            Self::TimestampOutOfRange => "timestamp_out_of_range",
            Self::InvalidQuantity => "invalid_quantity",
            Self::InvalidPrice => "invalid_price",
            Self::InvalidEnum => "invalid_enum",
            Self::TooLong => "too_long",
            Self::TooMany => "too_many",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnknownTenant => "unknown_tenant",
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub code: RejectCode,
    /// Path of the field in the wire event, e.g. `order_placed.lines[2].quantity`.
    pub field: String,
    pub description: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.field, self.code, self.description)
    }
}

/// All problems found in one event; never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<Violation>);

impl Violations {
    pub fn first(&self) -> &Violation {
        // Constructed only with at least one violation.
        &self.0[0]
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// Bounds that depend on where an event is checked.
#[derive(Debug, Clone, Copy)]
pub struct ValidationPolicy {
    /// The current time; `occurred_at` may be at most `max_future_skew` after it.
    pub now: UnixMillis,
    /// How far in the future an event's time may be (clocks of producers drift).
    pub max_future_skew: Option<Duration>,
    /// The earliest accepted `occurred_at`.
    pub earliest: UnixMillis,
    /// The largest accepted encoded event, in bytes.
    pub max_event_bytes: Option<usize>,
}

impl ValidationPolicy {
    /// 1990-01-01T00:00:00Z: older data is almost certainly a unit error (seconds vs milliseconds).
    pub const EARLIEST: UnixMillis = UnixMillis(631_152_000_000);

    /// The default size limit of one encoded event (64 KiB).
    pub const MAX_EVENT_BYTES: usize = 64 * 1024;

    /// The policy applied at ingest: five minutes of future skew, 64 KiB per event.
    pub fn ingest(now: UnixMillis) -> Self {
        Self {
            now,
            max_future_skew: Some(Duration::from_secs(300)),
            earliest: Self::EARLIEST,
            max_event_bytes: Some(Self::MAX_EVENT_BYTES),
        }
    }

    /// The policy for events read back from the stream: they passed ingest already, so only the
    /// structure is checked again, not the clock.
    pub fn stored() -> Self {
        Self {
            now: UnixMillis(i64::MAX),
            max_future_skew: None,
            earliest: Self::EARLIEST,
            max_event_bytes: None,
        }
    }
}
