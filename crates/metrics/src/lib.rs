//! shopmind's metrics: the catalogue, the process-wide registry, and the `/metrics` endpoint.
//!
//! **`catalogue.rs` is the catalogue**: every metric shopmind exports is declared there once, in
//! one table entry (name, type, labels and their values, buckets, meaning), from which its
//! registration, its handle and its row in [`CATALOGUE`] and `docs/METRICS.md` derive. Services
//! record through the methods of [`Metrics`] (`record.rs`), one per thing that happened. A
//! metric's name and labels are a contract with dashboards and alerts: rename nothing, add new
//! metrics instead. `docs/METRICS.md` is generated from the catalogue, and a test fails when the
//! two differ (`SHOPMIND_BLESS=1 cargo test -p shopmind-metrics` rewrites it).
//!
//! Label values are bounded: each label takes values from a fixed set (an enum of `labels.rs`,
//! whose values the catalogue lists, a `&'static str` from the code, or the gRPC status names).
//! Tenant ids, user ids, item ids and subjects are never label values: they are unbounded.
//!
//! Services record through [`global()`]; each process serves what it recorded with [`serve`].

mod catalogue;
mod labels;
mod record;
mod server;

use std::sync::LazyLock;

pub use catalogue::{Buckets, CATALOGUE, Kind, Label, Spec, catalogue_markdown};
pub use labels::{
    Applied, EventOutcome, GatewayMethod, LabelValues, Notified, Rejection, Settlement, Source, Success,
    grpc_status_name,
};
pub use record::Metrics;
pub use server::{CONTENT_TYPE, serve};

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics, which `/metrics` serves.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn grpc_status_names_cover_the_standard_codes() {
        assert_eq!(grpc_status_name(0), "OK");
        assert_eq!(grpc_status_name(3), "INVALID_ARGUMENT");
        assert_eq!(grpc_status_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_status_name(17), "UNKNOWN");
        assert_eq!(grpc_status_name(-1), "UNKNOWN");
    }

    #[test]
    fn label_values_are_snake_case_or_method_names() {
        assert_eq!(Settlement::DeadLetter.as_str(), "dead_letter");
        assert_eq!(Source::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["grpc", "nats"]);
        assert_eq!(GatewayMethod::PublishEvents.as_str(), "PublishEvents");
    }
}
