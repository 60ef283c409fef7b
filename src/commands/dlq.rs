//! `shopmind dlq list|replay`.

use clap::{Args, Subcommand};
use shopmind_config::Config;
use shopmind_runtime::connect::{self, Embedded};
use shopmind_runtime::dlq::{self, Filter};

use crate::common::DeadLetterRow;

#[derive(Subcommand)]
pub enum DlqAction {
    /// Lists dead letters, oldest first: sequence, tenant, stage, code, original subject, reason.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print a JSON array of the dead letters (the table's fields, the whole reason).
        #[arg(long)]
        json: bool,
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
        DlqAction::List { filter, limit, json } => {
            let letters = dlq::list(&*bus, &filter.into(), limit).await?;
            let rows: Vec<DeadLetterRow> = letters.iter().map(DeadLetterRow::from).collect();
            if json {
                println!("{}", list_json(&rows));
            } else {
                print!("{}", render_list(&rows));
            }
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

/// The table of `dlq list`, with a count at the end.
fn render_list(rows: &[DeadLetterRow]) -> String {
    let mut out = format!(
        "{:>8}  {:<16} {:<13} {:<24} {:<40} reason\n",
        "seq", "tenant", "stage", "code", "original subject"
    );
    for d in rows {
        out.push_str(&format!(
            "{:>8}  {:<16} {:<13} {:<24} {:<40} {}\n",
            d.sequence,
            d.tenant,
            d.stage,
            d.code,
            d.original_subject,
            d.short_reason()
        ));
    }
    out.push_str(&format!("{} dead letter(s)\n", rows.len()));
    out
}

/// `dlq list --json`: an array of the dead letters.
fn list_json(rows: &[DeadLetterRow]) -> serde_json::Value {
    serde_json::json!(rows)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row<'a>(sequence: u64, stage: &'a str, reason: &'a str) -> DeadLetterRow<'a> {
        DeadLetterRow {
            sequence,
            tenant: "acme",
            stage,
            code: "malformed",
            original_subject: "sm.events.acme",
            original_sequence: Some(sequence * 10),
            bytes: 12,
            reason,
        }
    }

    #[test]
    fn the_list_is_a_table_with_a_count_and_short_reasons() {
        let long = "x".repeat(200);
        let text = render_list(&[row(3, "feature", "not protobuf"), row(4, "ingest", &long)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].trim_start().starts_with("seq") && lines[0].ends_with("reason"), "{text}");
        assert!(lines[1].trim_start().starts_with("3  acme") && lines[1].ends_with("not protobuf"), "{text}");
        assert!(lines[2].ends_with(&"x".repeat(120)) && !lines[2].ends_with(&"x".repeat(121)), "{text}");
        assert_eq!(lines[3], "2 dead letter(s)");
    }

    #[test]
    fn the_json_list_parses_with_every_field_and_the_whole_reason() {
        let long = "y".repeat(200);
        let text = list_json(&[row(3, "feature", "not protobuf"), row(4, "ingest", &long)]).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{text}");
        let first = &parsed[0];
        assert_eq!(first["sequence"], 3);
        assert_eq!(first["tenant"], "acme");
        assert_eq!(first["stage"], "feature");
        assert_eq!(first["code"], "malformed");
        assert_eq!(first["original_subject"], "sm.events.acme");
        assert_eq!(first["original_sequence"], 30);
        assert_eq!(first["bytes"], 12);
        assert_eq!(first["reason"], "not protobuf");
        assert_eq!(parsed[1]["reason"].as_str().map(str::len), Some(200));
        let empty: serde_json::Value = serde_json::from_str(&list_json(&[]).to_string()).unwrap();
        assert_eq!(empty.as_array().map(Vec::len), Some(0));
    }
}
