//! `shopmind dlq list|replay`.

use clap::{Args, Subcommand};
use shopmind_config::Config;
use shopmind_runtime::connect::{self, Embedded};
use shopmind_runtime::dlq::{self, Filter};

#[derive(Subcommand)]
pub enum DlqAction {
    /// Lists dead letters, oldest first: sequence, tenant, stage, code, original subject, reason.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publishes dead letters again to their original subjects, for the stage that failed only,
    /// and removes them from the dead-letter stream.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Args)]
pub struct FilterArgs {
    /// Only this tenant's dead letters.
    #[arg(long)]
    tenant: Option<String>,
    /// Only those of this stage (ingest, feature, notification).
    #[arg(long)]
    stage: Option<String>,
    /// Only those with this code (e.g. malformed, retries_exhausted).
    #[arg(long)]
    code: Option<String>,
    /// Only these sequences of the dead-letter stream (repeatable).
    #[arg(long = "seq")]
    sequences: Vec<u64>,
}

impl From<FilterArgs> for Filter {
    fn from(a: FilterArgs) -> Self {
        Filter { tenant: a.tenant, stage: a.stage, code: a.code, sequences: a.sequences }
    }
}

pub async fn run(action: DlqAction, config: Config) -> anyhow::Result<()> {
    let bus = connect::bus(&config, "dlq", Embedded::Forbidden).await?;
    connect::ensure_streams(&*bus, &config).await?;
    match action {
        DlqAction::List { filter, limit } => {
            let letters = dlq::list(&*bus, &filter.into(), limit).await?;
            println!(
                "{:>8}  {:<16} {:<13} {:<24} {:<40} reason",
                "seq", "tenant", "stage", "code", "original subject"
            );
            for d in &letters {
                let reason: String = d.reason.chars().take(120).collect();
                println!(
                    "{:>8}  {:<16} {:<13} {:<24} {:<40} {}",
                    d.sequence, d.tenant, d.stage, d.code, d.original_subject, reason
                );
            }
            println!("{} dead letter(s)", letters.len());
        }
        DlqAction::Replay { filter } => {
            let report = dlq::replay(&*bus, &filter.into()).await?;
            println!("replayed: {}", report.replayed);
            if !report.skipped.is_empty() {
                println!("left in place (no original subject): {:?}", report.skipped);
            }
        }
    }
    bus.flush().await?;
    Ok(())
}
