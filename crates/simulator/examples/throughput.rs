//! Streams the default simulation and reports how fast events are generated.
//!
//! `cargo run --release -p shopmind-simulator --example throughput [users] [days]`

use shopmind_simulator::{SimConfig, Simulator};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut cfg = SimConfig::default();
    if let Some(users) = args.next() {
        cfg.users = users.parse()?;
    }
    if let Some(days) = args.next() {
        cfg.days = days.parse()?;
    }
    let started = std::time::Instant::now();
    let mut sim = Simulator::new(cfg)?;
    let n = sim.by_ref().count();
    let secs = started.elapsed().as_secs_f64();
    println!("{n} events in {secs:.2} s ({:.0} events/s)", n as f64 / secs);
    println!("{:#?}", sim.stats());
    Ok(())
}
