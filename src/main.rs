//! `shopmind`: every service, `all-in-one`, and the tools, in one binary.

mod all_in_one;
mod bench;
mod bench_assist;
mod bench_edge;
mod bench_infer;
mod bench_memory;
mod bench_rank;
mod bench_recommend;
mod bench_train;
mod cli;
mod demo;
mod dlq;
mod eval;
mod eval_demand;
mod eval_intent;
mod eval_recommend;
mod eval_support;
mod models;
mod notifications;
mod privacy;
mod replay;
mod simulate;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: per-request allocations on the serving path (gateway, bus, store replies) cost a
/// quarter of the CPU under glibc's allocator (docs/BENCHMARKS.md, `bench recommend`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut log = config.log.clone();
    if matches!(
        cli.command,
        cli::Command::Demo { .. }
            | cli::Command::Train(_)
            | cli::Command::Bench { .. }
            | cli::Command::Eval(_)
    ) && log.level == "info"
    {
        // The tools print their own results; service logs would drown them.
        log.level = "warn".into();
    }
    let telemetry = match shopmind_runtime::telemetry::init(&log, &config.telemetry, cli.command.name()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match cli::run(cli.command, config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "exiting");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shutdown();
    code
}
