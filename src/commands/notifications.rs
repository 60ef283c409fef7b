//! `shopmind notifications`: webhook dead letters (list, replay), a user's notification
//! preferences, and the pending timers of a tenant.

use anyhow::Context as _;
use clap::Subcommand;
use shopmind_config::{Config, parse_utc_offset};
use shopmind_domain::{TenantId, UserId};
use shopmind_notification::prefs::{self, Channel, Preferences};
use shopmind_runtime::connect::{self, Embedded};
use shopmind_runtime::dlq::{self, DeadLetter, Filter};

use crate::common::DeadLetterRow;

#[derive(Subcommand)]
pub enum NotificationsAction {
    /// Webhook deliveries that failed every attempt (dead letters of stage `webhook`).
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
    },
    /// A user's notification preferences: time zone (quiet hours) and channel opt-outs.
    Prefs {
        #[command(subcommand)]
        action: PrefsAction,
    },
    /// The pending timers of a tenant (idle carts, churn checks, deferred notifications).
    Timers {
        #[arg(long)]
        tenant: String,
        /// Print a JSON array of the pending timers (`timer`, `due_ms`) instead of the list.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum DeadLetterAction {
    /// Lists failed webhook deliveries, oldest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Only those for this endpoint (its `name` in the configuration).
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print a JSON array of the dead letters (the table's fields, the whole reason).
        #[arg(long)]
        json: bool,
    },
    /// Delivers them again (a fresh series of attempts) and removes them from the dead letters.
    Replay {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        endpoint: Option<String>,
        /// Only these dead-letter sequences (repeatable).
        #[arg(long = "seq")]
        sequences: Vec<u64>,
    },
}

#[derive(Subcommand)]
pub enum PrefsAction {
    /// Replaces a user's preferences.
    Set {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
        /// An IANA time zone, e.g. Europe/Berlin (daylight saving time followed); it wins over
        /// --utc-offset. Unset: --utc-offset, else the tenant's policy.default_time_zone, else
        /// policy.default_utc_offset.
        #[arg(long)]
        time_zone: Option<String>,
        /// A fixed offset all year, `+HH:MM` or `-HH:MM`.
        #[arg(long)]
        utc_offset: Option<String>,
        /// A channel the user opts out of: stream, webhook (repeatable).
        #[arg(long = "opt-out")]
        opt_out: Vec<String>,
    },
    Show {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        user: String,
    },
}

/// The endpoint of a webhook delivery subject (`sm.webhook.<tenant>.<endpoint>`).
fn endpoint_of(subject: &str) -> &str {
    subject.split('.').nth(3).unwrap_or_default()
}

/// A failed webhook delivery as `notifications dead-letters list` shows it.
#[derive(Debug, serde::Serialize)]
struct WebhookDeadLetter<'a> {
    /// The endpoint's `name` in the configuration.
    endpoint: &'a str,
    #[serde(flatten)]
    letter: DeadLetterRow<'a>,
}

impl<'a> From<&'a DeadLetter> for WebhookDeadLetter<'a> {
    fn from(d: &'a DeadLetter) -> Self {
        Self { endpoint: endpoint_of(&d.original_subject), letter: DeadLetterRow::from(d) }
    }
}

/// The table of `notifications dead-letters list`, with a count at the end.
fn render_dead_letters(rows: &[WebhookDeadLetter]) -> String {
    let mut out = format!("{:>8}  {:<16} {:<16} {:<18} reason\n", "seq", "tenant", "endpoint", "code");
    for d in rows {
        let l = &d.letter;
        out.push_str(&format!(
            "{:>8}  {:<16} {:<16} {:<18} {}\n",
            l.sequence,
            l.tenant,
            d.endpoint,
            l.code,
            l.short_reason()
        ));
    }
    out.push_str(&format!("{} dead letter(s)\n", rows.len()));
    out
}

/// `notifications timers --json`: an array of the pending timers (soonest first), each with when
/// it is due (ms since the Unix epoch).
fn timers_json(pending: &[(String, i64)]) -> serde_json::Value {
    pending.iter().map(|(timer, due)| serde_json::json!({ "timer": timer, "due_ms": due })).collect()
}

/// `notifications dead-letters list --json`: an array of the dead letters.
fn dead_letters_json(rows: &[WebhookDeadLetter]) -> serde_json::Value {
    serde_json::json!(rows)
}

pub async fn run(action: NotificationsAction, config: Config) -> anyhow::Result<()> {
    match action {
        NotificationsAction::DeadLetters { action } => dead_letters(action, config).await,
        NotificationsAction::Prefs { action } => {
            // Flags are checked before connecting, so a typo is reported as such.
            if let PrefsAction::Set { time_zone: Some(zone), .. } = &action {
                prefs::validate_time_zone(zone).map_err(|e| anyhow::anyhow!("--time-zone: {e}"))?;
            }
            let store = connect::store(&config, "notifications", Embedded::Forbidden).await?;
            match action {
                PrefsAction::Set { tenant, user, time_zone, utc_offset, opt_out } => {
                    let (t, u) = (TenantId::parse(tenant)?, UserId::parse(user)?);
                    let utc_offset_min = match utc_offset {
                        Some(o) => {
                            Some(parse_utc_offset(&o).context("--utc-offset: expected +HH:MM or -HH:MM")?)
                        }
                        None => None,
                    };
                    let opted_out = opt_out
                        .iter()
                        .map(|c| {
                            Channel::parse(c).with_context(|| format!("--opt-out {c:?}: stream or webhook"))
                        })
                        .collect::<anyhow::Result<_>>()?;
                    prefs::write(&*store, &t, &u, &Preferences { time_zone, utc_offset_min, opted_out })
                        .await?;
                    println!("saved");
                }
                PrefsAction::Show { tenant, user } => {
                    let (t, u) = (TenantId::parse(tenant)?, UserId::parse(user)?);
                    let p = prefs::read(&*store, &t, &u).await?;
                    println!("time_zone: {:?}", p.time_zone);
                    println!("utc_offset_min: {:?}", p.utc_offset_min);
                    println!("opted_out: {:?}", p.opted_out.iter().map(|c| c.as_str()).collect::<Vec<_>>());
                }
            }
            Ok(())
        }
        NotificationsAction::Timers { tenant, json } => {
            let store = connect::store(&config, "notifications", Embedded::Forbidden).await?;
            let t = TenantId::parse(tenant)?;
            let pending = shopmind_notification::timers::pending(&*store, &t).await?;
            if json {
                println!("{}", timers_json(&pending));
            } else {
                for (timer, due) in &pending {
                    println!("{due:>15}  {timer}");
                }
                println!("{} pending timer(s)", pending.len());
            }
            Ok(())
        }
    }
}

async fn dead_letters(action: DeadLetterAction, config: Config) -> anyhow::Result<()> {
    let bus = connect::bus(&config, "notifications", Embedded::Forbidden).await?;
    connect::ensure_streams(&*bus, &config).await?;
    let stage = Some(shopmind_notification::WEBHOOK_DURABLE.to_string());
    match action {
        DeadLetterAction::List { tenant, endpoint, limit, json } => {
            let filter = Filter { tenant, stage, ..Filter::default() };
            let letters = dlq::list(&*bus, &filter, usize::MAX).await?;
            let rows: Vec<WebhookDeadLetter> = letters
                .iter()
                .map(WebhookDeadLetter::from)
                .filter(|d| endpoint.as_ref().is_none_or(|e| e == d.endpoint))
                .take(limit)
                .collect();
            if json {
                println!("{}", dead_letters_json(&rows));
            } else {
                print!("{}", render_dead_letters(&rows));
            }
        }
        DeadLetterAction::Replay { tenant, endpoint, sequences } => {
            let filter = Filter { tenant, stage, sequences, ..Filter::default() };
            let chosen: Vec<u64> = dlq::list(&*bus, &filter, usize::MAX)
                .await?
                .into_iter()
                .filter(|d| endpoint.as_ref().is_none_or(|e| e == endpoint_of(&d.original_subject)))
                .map(|d| d.sequence)
                .collect();
            let report = if chosen.is_empty() {
                dlq::ReplayReport::default()
            } else {
                dlq::replay(&*bus, &Filter { sequences: chosen, ..filter }).await?
            };
            println!("replayed: {}", report.replayed);
        }
    }
    bus.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn letter<'a>(sequence: u64, subject: &'a str, reason: &'a str) -> WebhookDeadLetter<'a> {
        WebhookDeadLetter {
            endpoint: endpoint_of(subject),
            letter: DeadLetterRow {
                sequence,
                tenant: "acme",
                stage: "webhook",
                code: "retries_exhausted",
                original_subject: subject,
                original_sequence: None,
                bytes: 40,
                reason,
            },
        }
    }

    #[test]
    fn the_endpoint_is_the_fourth_part_of_the_subject() {
        assert_eq!(endpoint_of("sm.webhook.acme.crm"), "crm");
        assert_eq!(endpoint_of("sm.webhook.acme"), "");
    }

    #[test]
    fn the_list_is_a_table_with_the_endpoint_and_a_count() {
        let text = render_dead_letters(&[letter(9, "sm.webhook.acme.crm", "HTTP 503")]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("endpoint") && lines[0].ends_with("reason"), "{text}");
        assert!(lines[1].contains(" crm ") && lines[1].ends_with("HTTP 503"), "{text}");
        assert_eq!(lines[2], "1 dead letter(s)");
    }

    #[test]
    fn the_json_list_parses_with_the_endpoint_next_to_the_dead_letter_fields() {
        let rows =
            [letter(9, "sm.webhook.acme.crm", "HTTP 503"), letter(11, "sm.webhook.acme.erp", "timeout")];
        let parsed: serde_json::Value = serde_json::from_str(&dead_letters_json(&rows).to_string()).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{parsed}");
        let first = &parsed[0];
        assert_eq!(first["endpoint"], "crm");
        assert_eq!(first["sequence"], 9);
        assert_eq!(first["tenant"], "acme");
        assert_eq!(first["stage"], "webhook");
        assert_eq!(first["code"], "retries_exhausted");
        assert_eq!(first["reason"], "HTTP 503");
        assert!(first["original_sequence"].is_null());
        assert_eq!(parsed[1]["endpoint"], "erp");
    }

    #[test]
    fn the_json_timers_parse_soonest_first() {
        let pending = [("idle_cart:u1".to_string(), 1_000), ("churn:u2".to_string(), 2_000)];
        let parsed: serde_json::Value = serde_json::from_str(&timers_json(&pending).to_string()).unwrap();
        assert_eq!(parsed.as_array().map(Vec::len), Some(2), "{parsed}");
        assert_eq!(parsed[0]["timer"], "idle_cart:u1");
        assert_eq!(parsed[0]["due_ms"], 1_000);
        assert_eq!(parsed[1]["due_ms"], 2_000);
    }
}
