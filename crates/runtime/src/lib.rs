//! What every shopmind service shares: the stream topology and subject names
//! ([`topology`]), connecting to the bus and the store from the configuration ([`connect`]),
//! the shutdown signal ([`Shutdown`]), and logging ([`telemetry`]).

pub mod connect;
pub mod telemetry;
pub mod topology;

mod shutdown;

pub use shutdown::Shutdown;
