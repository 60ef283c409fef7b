//! A seedable synthetic e-commerce store that streams `shopmind.v1.Event`s.
//!
//! The [`Simulator`] models a catalog (categories, log-normal prices, Zipf-like popularity),
//! users with latent tastes over categories, sessions with search → view → cart → order funnels
//! and abandonment, weekly seasonality and a trend in demand, inventory that sells out and is
//! restocked, order status flows, and support conversations. The same [`SimConfig`] (seed
//! included) always yields the same events; ground truth (the catalog, tastes, counters) is
//! exposed for tests and evaluation.
//!
//! ```
//! use shopmind_simulator::{SimConfig, Simulator};
//!
//! let cfg = SimConfig { users: 50, items: 40, days: 3, ..SimConfig::default() };
//! let mut sim = Simulator::new(cfg).unwrap();
//! let n = sim.by_ref().count();
//! assert_eq!(sim.stats().events, n as u64);
//! assert!(sim.stats().views > sim.stats().carts);
//! ```

mod catalog;
mod config;
mod rng;
mod sim;
mod text;

pub use catalog::SimItem;
pub use config::{DAY_MS, DEFAULT_START_MS, SimConfig, SimError};
pub use sim::{SimStats, Simulator};
