//! What every shopmind service shares: the stream topology and subject names
//! ([`topology`]), connecting to the bus and the store from the configuration ([`connect`]),
//! the shutdown signal ([`Shutdown`]), logging ([`telemetry`]), the consumer loop with dead-lettering
//! ([`consume`]), publishing admitted events ([`intake`]) and the request-reply envelope
//! conventions ([`rpc`]).

pub mod admission;
pub mod connect;
pub mod consume;
pub mod dlq;
pub mod intake;
pub mod rpc;
pub mod serve;
pub mod telemetry;
pub mod topology;

mod shutdown;

pub use shutdown::Shutdown;
