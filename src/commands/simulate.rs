//! `shopmind simulate`: a synthetic shop's events, written as JSON Lines for `shopmind replay`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use shopmind_simulator::{SimConfig, Simulator};

use crate::common::spinner;

#[derive(Args)]
pub struct SimulateArgs {
    /// Where to write the events (JSON Lines; docs/FILES.md).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value = "sim")]
    tenant: String,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 500)]
    items: usize,
    #[arg(long, default_value_t = 28)]
    days: u32,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        seed: args.seed,
        tenant: args.tenant,
        users: args.users,
        items: args.items,
        days: args.days,
        ..SimConfig::default()
    };
    let mut sim = Simulator::new(config)?;
    let file =
        std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let bar = spinner("simulating");
    for event in sim.by_ref() {
        shopmind_eventfile::write_jsonl(&mut out, &event)?;
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    let s = sim.stats();
    println!("wrote {} events to {}", s.events, args.out.display());
    println!(
        "sessions: {}, views: {}, carts: {}, orders: {}, abandoned carts: {}, stockouts: {}",
        s.sessions, s.views, s.carts, s.orders, s.abandoned_carts, s.stockouts
    );
    Ok(())
}
