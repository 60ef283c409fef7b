//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use shopmind_config::Config;
use shopmind_runtime::Shutdown;
use shopmind_runtime::connect::{self, Embedded};

use crate::{bench, commands, eval};

/// What `shopmind --version` prints after the name: the package version and the commit it was
/// built from (`unknown` where the build had no git repository; build.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SHOPMIND_GIT_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "shopmind", version = VERSION, about = "Event-driven AI for e-commerce customer experience")]
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
    Train(commands::train::TrainArgs),
    /// The model registry: list versions, promote one, roll back (needs nats.url).
    Models {
        #[command(subcommand)]
        action: commands::models::ModelsAction,
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
        /// Print the summary as one JSON object (problems still go to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Writes a synthetic shop's events (seedable) to a JSON Lines file, for `shopmind replay`.
    Simulate(commands::simulate::SimulateArgs),
    /// Lists or replays the dead-letter stream (needs nats.url).
    Dlq {
        #[command(subcommand)]
        action: commands::dlq::DlqAction,
    },
    /// Privacy tools: erase a customer, sweep what is older than each tenant's retention
    /// (docs/PRIVACY.md; needs nats.url and redis.url).
    Privacy {
        #[command(subcommand)]
        action: commands::privacy::PrivacyAction,
    },
    /// Notification tools: webhook dead letters (list, replay), user preferences, pending timers.
    Notifications {
        #[command(subcommand)]
        action: commands::notifications::NotificationsAction,
    },
    /// Offline evaluation of the models, next to baselines computed in the same run.
    Eval(eval::EvalArgs),
    /// Measures the system; each figure next to a raw baseline from the same run.
    Bench {
        #[command(subcommand)]
        what: bench::BenchTarget,
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
        Command::Demo { data, users } => commands::demo::run(config, data, users).await,
        Command::Replay { source, rate, batch, gateway, tenant, json } => {
            commands::replay::run(config, source, rate, batch, gateway, tenant, json).await
        }
        Command::Dlq { action } => commands::dlq::run(action, config).await,
        Command::Privacy { action } => commands::privacy::run(action, config).await,
        Command::Models { action } => commands::models::run(action, config).await,
        Command::Notifications { action } => commands::notifications::run(action, config).await,
        Command::Bench { what } => bench::run(what, config).await,
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Eval(args) => eval::run(args).await,
        Command::Train(args) => commands::train::run(config, args).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_package_version_and_the_commit() {
        let printed = match Cli::try_parse_from(["shopmind", "--version"]) {
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayVersion => e.to_string(),
            Err(e) => panic!("--version: {e}"),
            Ok(_) => panic!("--version parsed as a command"),
        };
        let prefix = format!("shopmind {} (commit ", env!("CARGO_PKG_VERSION"));
        let commit = printed.trim_end().strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(')'));
        let Some(commit) = commit else { panic!("{printed:?}") };
        assert!(
            commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
            "{printed:?}"
        );
    }
}
