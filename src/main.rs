//! `shopmind`: every service, `all-in-one`, and the tools, in one binary.
//!
//! `cli` parses the arguments and runs the command: a service (a library in `services/`),
//! `all-in-one` (`all_in_one`), an operator tool (`commands/`, one file each), `bench` (`bench/`,
//! one file a benchmark) or `eval` (`eval/`, one file a task). `common` holds what several
//! commands use.

mod all_in_one;
mod bench;
mod cli;
mod commands;
mod common;
mod eval;

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
