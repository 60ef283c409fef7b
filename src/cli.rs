//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shopmind_config::Config;
use shopmind_runtime::Shutdown;
use shopmind_runtime::connect::{self, Embedded};

#[derive(Parser)]
#[command(name = "shopmind", version, about = "Event-driven AI for e-commerce customer experience")]
pub struct Cli {
    /// Configuration file (TOML); see config/shopmind.example.toml.
    #[arg(long, global = true, env = "SHOPMIND_CONFIG")]
    config: Option<PathBuf>,
    /// NATS server (overrides nats.url), e.g. nats://127.0.0.1:4222.
    #[arg(long, global = true)]
    nats_url: Option<String>,
    /// Redis server (overrides redis.url), e.g. redis://127.0.0.1:6379/.
    #[arg(long, global = true)]
    redis_url: Option<String>,
    /// gRPC listen address of the gateway (overrides gateway.listen).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Address of this process's Prometheus endpoint, GET /metrics and GET /healthz (overrides
    /// metrics.listen); "" for none.
    #[arg(long, global = true)]
    metrics_listen: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Every service in one process; on NATS and Redis when their URLs are set, else on the
    /// in-process bus and in-memory store.
    AllInOne,
    /// The gRPC gateway.
    Gateway,
    /// The ingest service.
    Ingest,
    /// The feature service.
    Feature,
    /// The inference service.
    Inference,
    /// The notification service.
    Notification,
    /// The trainer service: trains every trainer.interval_s seconds.
    Trainer,
    /// One training round: read the events stream, publish a model version per tenant to the
    /// registry (and make it active with trainer.auto_promote).
    Train(TrainArgs),
    /// The model registry: list versions, promote one, roll back (needs nats.url).
    Models {
        #[command(subcommand)]
        action: crate::models::ModelsAction,
    },
    /// Runs all-in-one on a sample data set and prints recommendations for a few users.
    Demo {
        /// Directory with ml-100k.inter and ml-100k.item (default: .cache/data/ml-100k).
        #[arg(long)]
        data: Option<PathBuf>,
        /// How many users to show.
        #[arg(long, default_value_t = 3)]
        users: usize,
    },
    /// Prints the effective configuration (defaults, file, environment, flags) and exits.
    Config,
    /// Replays events from a file (.jsonl, .ndjson, .csv; see docs/FILES.md) or the data set
    /// `ml-100k` through the gateway, and prints a summary.
    Replay {
        /// A file, or `ml-100k` (MovieLens-100k, see scripts/setup.sh).
        source: String,
        /// Events per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        /// Events per PublishEvents call.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// The gateway, e.g. http://127.0.0.1:50051 (default: from gateway.listen).
        #[arg(long)]
        gateway: Option<String>,
        /// Sets the tenant of every event.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Writes a synthetic shop's events (seedable) to a JSON Lines file, for `shopmind replay`.
    Simulate(crate::simulate::SimulateArgs),
    /// Lists or replays the dead-letter stream (needs nats.url).
    Dlq {
        #[command(subcommand)]
        action: crate::dlq::DlqAction,
    },
    /// Privacy tools: erase a customer, sweep what is older than each tenant's retention
    /// (docs/PRIVACY.md; needs nats.url and redis.url).
    Privacy {
        #[command(subcommand)]
        action: crate::privacy::PrivacyAction,
    },
    /// Notification tools: webhook dead letters (list, replay), user preferences, pending timers.
    Notifications {
        #[command(subcommand)]
        action: crate::notifications::NotificationsAction,
    },
    /// Offline evaluation of the models, next to baselines computed in the same run.
    Eval(crate::eval::EvalArgs),
    /// Measures the system; each figure next to a raw baseline from the same run.
    Bench {
        #[command(subcommand)]
        what: crate::bench::BenchTarget,
    },
}

impl Command {
    /// The process's name in traces and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::AllInOne => "all-in-one",
            Command::Gateway => "gateway",
            Command::Ingest => "ingest",
            Command::Feature => "feature",
            Command::Inference => "inference",
            Command::Notification => "notification",
            Command::Trainer => "trainer",
            Command::Train(_) => "train",
            Command::Models { .. } => "models",
            Command::Demo { .. } => "demo",
            Command::Config => "config",
            Command::Dlq { .. } => "dlq",
            Command::Privacy { .. } => "privacy",
            Command::Notifications { .. } => "notifications",
            Command::Replay { .. } => "replay",
            Command::Simulate(_) => "simulate",
            Command::Eval(_) => "eval",
            Command::Bench { .. } => "bench",
        }
    }
}

impl Cli {
    /// Defaults, file, `SHOPMIND__*` environment, then flags; validated.
    pub fn config(&self) -> Result<Config, shopmind_config::ConfigError> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(url) = &self.nats_url {
            config.nats.url.clone_from(url);
        }
        if let Some(url) = &self.redis_url {
            config.redis.url.clone_from(url);
        }
        if let Some(listen) = self.listen {
            config.gateway.listen = listen;
        }
        if let Some(listen) = &self.metrics_listen {
            config.metrics.listen.clone_from(listen);
        }
        config.validate()?;
        Ok(config)
    }
}

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Config => {
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::AllInOne => {
            let shutdown = Shutdown::new();
            shutdown.trigger_on_signals();
            shopmind_runtime::telemetry::serve_metrics(&config.metrics, &shutdown).await?;
            let listener = tokio::net::TcpListener::bind(config.gateway.listen)
                .await
                .with_context(|| format!("binding gateway.listen {}", config.gateway.listen))?;
            let app = crate::all_in_one::AllInOne::start(config, listener, shutdown, true).await?;
            app.wait().await
        }
        Command::Demo { data, users } => crate::demo::run(config, data, users).await,
        Command::Replay { source, rate, batch, gateway, tenant } => {
            crate::replay::run(config, source, rate, batch, gateway, tenant).await
        }
        Command::Dlq { action } => crate::dlq::run(action, config).await,
        Command::Privacy { action } => crate::privacy::run(action, config).await,
        Command::Models { action } => crate::models::run(action, config).await,
        Command::Notifications { action } => crate::notifications::run(action, config).await,
        Command::Bench { what } => crate::bench::run(what, config).await,
        Command::Simulate(args) => crate::simulate::run(args),
        Command::Eval(args) => crate::eval::run(args).await,
        Command::Train(args) => train(config, args).await,
        service => run_service(service, config).await,
    }
}

async fn run_service(command: Command, config: Config) -> anyhow::Result<()> {
    if !matches!(
        command,
        Command::Gateway
            | Command::Ingest
            | Command::Feature
            | Command::Inference
            | Command::Notification
            | Command::Trainer
    ) {
        anyhow::bail!("not a service");
    }
    let name = command.name();
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    shopmind_runtime::telemetry::serve_metrics(&config.metrics, &shutdown).await?;
    let (bus, models) = connect::bus_and_models(&config, name, Embedded::Forbidden).await?;
    connect::ensure_streams(&*bus, &config).await?;
    tracing::info!(service = name, bus = bus.kind(), "starting");
    match command {
        Command::Gateway => {
            let listener = tokio::net::TcpListener::bind(config.gateway.listen)
                .await
                .with_context(|| format!("binding gateway.listen {}", config.gateway.listen))?;
            shopmind_gateway::run(config, bus.clone(), listener, shutdown).await?;
        }
        Command::Ingest => shopmind_ingest::run(config, bus.clone(), shutdown).await?,
        Command::Feature => {
            let store = connect::store(&config, name, Embedded::Forbidden).await?;
            shopmind_feature::run(config, bus.clone(), store, shutdown).await?;
        }
        Command::Inference => {
            let store = connect::store(&config, name, Embedded::Forbidden).await?;
            shopmind_inference::run(config, bus.clone(), store, models, shutdown).await?;
        }
        Command::Notification => {
            let store = connect::store(&config, name, Embedded::Forbidden).await?;
            shopmind_notification::run(config, bus.clone(), store, shutdown).await?;
        }
        Command::Trainer => shopmind_trainer::run(config, bus.clone(), models, shutdown).await?,
        _ => {}
    }
    bus.flush().await?;
    Ok(())
}

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

async fn train(config: Config, args: TrainArgs) -> anyhow::Result<()> {
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

/// The offline metrics a trained model carries, as one line: a recommender's holdout NDCG@10 and
/// Recall@10 next to popularity's; the other models' figures by name.
pub fn holdout_line(metrics: &std::collections::BTreeMap<String, f64>) -> Option<String> {
    let get = |k: &str| metrics.get(k).copied();
    if let (Some(users), Some(ndcg), Some(pop_ndcg), Some(recall), Some(pop_recall)) = (
        get("holdout_users"),
        get("holdout_ndcg_at_10"),
        get("holdout_ndcg_at_10_popularity"),
        get("holdout_recall_at_10"),
        get("holdout_recall_at_10_popularity"),
    ) {
        return Some(format!(
            "holdout (each user's latest interaction, {users} users): NDCG@10 {ndcg:.4} (popularity \
             {pop_ndcg:.4}), Recall@10 {recall:.4} (popularity {pop_recall:.4})"
        ));
    }
    (!metrics.is_empty()).then(|| {
        let parts: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        parts.join(", ")
    })
}
