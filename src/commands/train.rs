//! `shopmind train`: one training round, on the events stream or on event files.

use std::path::PathBuf;

use anyhow::Context as _;
use shopmind_config::Config;
use shopmind_runtime::connect::{self, Embedded};

use crate::common::holdout_line;

/// `shopmind train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Train only on events that occurred at or after this time: RFC 3339
    /// (2026-10-01T00:00:00Z) or a date (2026-10-01, midnight UTC). Also see trainer.history_days.
    #[arg(long, value_parser = parse_since)]
    since: Option<shopmind_domain::UnixMillis>,
    /// Train from these event files (.jsonl, .ndjson, .csv; docs/FILES.md) instead of the events
    /// stream; the models still go to the registry (needs nats.url). Repeatable.
    #[arg(long = "file")]
    files: Vec<PathBuf>,
    /// Sets the tenant of every event read from the files.
    #[arg(long)]
    tenant: Option<String>,
}

fn parse_since(s: &str) -> Result<shopmind_domain::UnixMillis, String> {
    let s = s.trim();
    let full = if s.len() == 10 { format!("{s}T00:00:00Z") } else { s.to_string() };
    let ts: prost_types::Timestamp =
        full.parse().map_err(|_| format!("{s:?} is not an RFC 3339 time or a YYYY-MM-DD date"))?;
    Ok(shopmind_domain::UnixMillis::from_proto(&ts))
}

pub async fn run(config: Config, args: TrainArgs) -> anyhow::Result<()> {
    let (bus, models) = connect::bus_and_models(&config, "train", Embedded::Forbidden).await?;
    let mut trainer = shopmind_trainer::Trainer::new().since(args.since);
    let trained = if args.files.is_empty() {
        connect::ensure_streams(&*bus, &config).await?;
        let bar = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template("reading events {bar:40} {pos}/{len} ({per_sec})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let progress = |read: u64, total: u64| {
            bar.set_length(total);
            bar.set_position(read);
        };
        let trained = trainer.round(&config, &*bus, &*models, &progress).await?;
        bar.finish_and_clear();
        trained
    } else {
        let history = read_history(&args)?;
        println!("read {} valid events from {} file(s)", history.len(), args.files.len());
        trainer.train(&config, &*models, history).await?
    };
    if trained.is_empty() {
        println!(
            "no interactions to train on (in the events, after --since and trainer.history_days): nothing to train"
        );
    }
    for m in trained {
        let what = match m.model.as_str() {
            shopmind_registry::RECOMMENDER => {
                format!("{} items from {} users, {} interactions", m.items, m.users, m.interactions)
            }
            shopmind_registry::INTENT => format!("{} sessions of {} users", m.interactions, m.users),
            shopmind_registry::INTENT_HEAD => format!("{} labelled support messages", m.interactions),
            _ => format!("{} items, {} training windows", m.items, m.interactions),
        };
        println!(
            "{}: {what} -> {} version {} ({})",
            m.tenant,
            m.model,
            m.version,
            if m.promoted {
                "active"
            } else {
                "not promoted: trainer.auto_promote is off; see `shopmind models promote`"
            }
        );
        if let Some(line) = holdout_line(&m.metrics) {
            println!("    {line}");
        }
        if let Some(report) = &m.report {
            println!();
            for line in report.lines() {
                println!("    {line}");
            }
        }
    }
    Ok(())
}

/// The events of `--file`s as training history, validated as the gateway validates them (bad
/// records are counted and skipped). Positions in the files stand in for stream sequences.
fn read_history(args: &TrainArgs) -> anyhow::Result<shopmind_trainer::History> {
    let tenant = args
        .tenant
        .as_ref()
        .map(|t| shopmind_domain::TenantId::parse(t.clone()).with_context(|| format!("--tenant {t:?}")))
        .transpose()?;
    let policy = shopmind_domain::ValidationPolicy::stored();
    let mut history = shopmind_trainer::History::since(args.since);
    let (mut position, mut rejected) = (0u64, 0u64);
    let bar = indicatif::ProgressBar::new_spinner();
    for path in &args.files {
        for record in shopmind_eventfile::read_events(path)? {
            position += 1;
            if position % 4096 == 0 {
                bar.set_message(format!("reading events: {position}"));
                bar.tick();
            }
            let event = match record {
                Ok((_, mut wire)) => {
                    if let Some(t) = &tenant {
                        wire.tenant = t.to_string();
                    }
                    shopmind_domain::Event::from_proto(&wire, None, &policy).ok()
                }
                Err(e) if e.is_record_error() => None,
                Err(e) => return Err(e.into()),
            };
            match event {
                Some(event) => history.push(position, event),
                None => rejected += 1,
            }
        }
    }
    bar.finish_and_clear();
    if rejected > 0 {
        println!("{rejected} records skipped: not valid events (see `shopmind replay` for the reasons)");
    }
    Ok(history)
}
