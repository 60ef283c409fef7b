//! `shopmind notifications`: webhook dead letters (list, replay), a user's notification
//! preferences, and the pending timers of a tenant.

use anyhow::Context as _;
use clap::Subcommand;
use shopmind_config::{Config, parse_utc_offset};
use shopmind_domain::{TenantId, UserId};
use shopmind_notification::prefs::{self, Channel, Preferences};
use shopmind_runtime::connect::{self, Embedded};
use shopmind_runtime::dlq::{self, Filter};

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

fn endpoint_of(subject: &str) -> &str {
    subject.split('.').nth(3).unwrap_or_default()
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
        NotificationsAction::Timers { tenant } => {
            let store = connect::store(&config, "notifications", Embedded::Forbidden).await?;
            let t = TenantId::parse(tenant)?;
            let pending = shopmind_notification::timers::pending(&*store, &t).await?;
            for (timer, due) in &pending {
                println!("{due:>15}  {timer}");
            }
            println!("{} pending timer(s)", pending.len());
            Ok(())
        }
    }
}

async fn dead_letters(action: DeadLetterAction, config: Config) -> anyhow::Result<()> {
    let bus = connect::bus(&config, "notifications", Embedded::Forbidden).await?;
    connect::ensure_streams(&*bus, &config).await?;
    let stage = Some(shopmind_notification::WEBHOOK_DURABLE.to_string());
    match action {
        DeadLetterAction::List { tenant, endpoint, limit } => {
            let filter = Filter { tenant, stage, ..Filter::default() };
            let letters = dlq::list(&*bus, &filter, usize::MAX).await?;
            println!("{:>8}  {:<16} {:<16} {:<18} reason", "seq", "tenant", "endpoint", "code");
            let mut shown = 0;
            for d in letters
                .iter()
                .filter(|d| endpoint.as_ref().is_none_or(|e| e == endpoint_of(&d.original_subject)))
            {
                if shown == limit {
                    break;
                }
                let reason: String = d.reason.chars().take(120).collect();
                println!(
                    "{:>8}  {:<16} {:<16} {:<18} {}",
                    d.sequence,
                    d.tenant,
                    endpoint_of(&d.original_subject),
                    d.code,
                    reason
                );
                shown += 1;
            }
            println!("{shown} dead letter(s)");
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
