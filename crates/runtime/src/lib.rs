//! What every shopmind service shares: the stream topology and subject names
//! ([`topology`]), connecting to the bus and the store from the configuration ([`connect`]),
//! the shutdown signal ([`Shutdown`]), logging ([`telemetry`]), the consumer loop with dead-lettering
//! ([`consume`]), the events stream's wire form, publishing and decoding ([`intake`]), reading
//! what a stream holds ([`snapshot`]), the tombstones of erased customers ([`tombstones`]) and
//! the request-reply envelope conventions ([`rpc`]).

pub mod admission;
pub mod connect;
pub mod consume;
pub mod dlq;
pub mod intake;
pub mod rpc;
pub mod serve;
pub mod snapshot;
pub mod telemetry;
pub mod tombstones;
pub mod topology;

mod shutdown;

pub use shutdown::Shutdown;
