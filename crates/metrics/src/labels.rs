//! The closed sets of label values: an enum per set, whose values the catalogue documents, and
//! the gRPC status names.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// The values a label's type can take, for the catalogue: an enum's closed set, or none listed
/// (a `&'static str` label, whose values its catalogue entry describes).
pub trait LabelValues {
    const VALUES: &'static [&'static str];
}

impl LabelValues for &'static str {
    const VALUES: &'static [&'static str] = &[];
}

/// Defines a label's closed set of values: an enum with `ALL` and `as_str`.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value the label can take.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value),+
                }
            }
        }

        impl LabelValues for $name {
            const VALUES: &'static [&'static str] = &[$($value),+];
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

label_values! {
    /// Where an event came in: through the gateway's gRPC API, or published raw to
    /// `sm.in.<tenant>` on NATS.
    Source { Grpc => "grpc", Nats => "nats" }
}

label_values! {
    /// What became of an event offered to shopmind.
    EventOutcome { Accepted => "accepted", Duplicate => "duplicate", Rejected => "rejected" }
}

label_values! {
    /// What the feature service did with an event.
    Applied { Applied => "applied", Duplicate => "duplicate" }
}

label_values! {
    /// Whether a notification was new or had been published before (a redelivered event).
    Notified { Published => "published", Duplicate => "duplicate" }
}

label_values! {
    /// How a consumer settled a delivery: acked (done, or nothing to do), negatively acked to be
    /// delivered again, or dead-lettered (then acked).
    Settlement { Ack => "ack", Retry => "retry", DeadLetter => "dead_letter" }
}

label_values! {
    /// Whether a request or a round succeeded.
    Success { Ok => "ok", Error => "error" }
}

label_values! {
    /// Why a model's batcher refused a request: its queue was full, the request's deadline passed
    /// before it was computed, or the model was shutting down.
    Rejection { QueueFull => "queue_full", Deadline => "deadline", ShuttingDown => "shutting_down" }
}

label_values! {
    /// The methods of `shopmind.v1.Gateway`.
    GatewayMethod {
        PublishEvents => "PublishEvents",
        StreamEvents => "StreamEvents",
        Recommend => "Recommend",
        PredictPurchaseIntent => "PredictPurchaseIntent",
        ForecastDemand => "ForecastDemand",
        GetCustomerProfile => "GetCustomerProfile",
        Assist => "Assist",
        GetAgentReport => "GetAgentReport",
        StreamNotifications => "StreamNotifications",
        EraseCustomer => "EraseCustomer",
    }
}

/// The gRPC status code names, indexed by code.
const GRPC_STATUS: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of gRPC status `code` (e.g. 3: `INVALID_ARGUMENT`); `UNKNOWN` for codes outside the
/// standard 0..=16.
pub fn grpc_status_name(code: i32) -> &'static str {
    usize::try_from(code).ok().and_then(|i| GRPC_STATUS.get(i)).copied().unwrap_or("UNKNOWN")
}
