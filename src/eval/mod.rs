//! `shopmind eval`: offline evaluation of the models on real or simulated data, each next to
//! baselines computed in the same run.
//!
//! - `--task recommend` (default; `--dataset ml-100k`): the recommenders, see [`recommend`].
//! - `--task intent` (simulated sessions): the purchase-intent model, see [`intent`].
//! - `--task demand` (simulated demand): the demand forecaster, see [`demand`].
//! - `--task support-intents`: the customer-service intent classifier, see [`support_intents`].
//!
//! `chart.rs` draws the SVG plots of `intent` and `demand`.

mod chart;
mod demand;
mod intent;
mod recommend;
mod support_intents;

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// What to evaluate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvalTask {
    /// Recommenders: Recall@10 and NDCG@10 on a per-user temporal split.
    Recommend,
    /// Purchase intent: ROC-AUC on held-out simulated sessions.
    Intent,
    /// Demand forecasts: MASE against the seasonal-naive forecast on simulated demand.
    Demand,
    /// The customer-service intent classifier: held-out accuracy and confusion matrix on the
    /// project's messages.
    SupportIntents,
}

#[derive(Args, Clone, Debug)]
pub struct EvalArgs {
    /// What to evaluate.
    #[arg(long, value_enum, default_value = "recommend")]
    pub task: EvalTask,
    /// The data: `ml-100k` (see scripts/setup.sh) for `recommend`, `simulated` for the others.
    #[arg(long)]
    pub dataset: Option<String>,
    /// Directory of the ml-100k files (default: .cache/data/ml-100k); for `support-intents`, the
    /// encoder's model directory (default: .cache/models/all-MiniLM-L6-v2).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Seed of the simulator and of any randomised training.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Prints the report as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also writes the report's plot (SVG) to this file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// `recommend`: also writes the evaluated embedding model (ONNX, with its manifest and
    /// offline metrics) to this file.
    #[arg(long)]
    pub model_out: Option<PathBuf>,
}

pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    match args.task {
        EvalTask::Recommend => recommend::run(&args).await,
        EvalTask::Intent => intent::run(&args).await,
        EvalTask::Demand => demand::run(&args).await,
        EvalTask::SupportIntents => support_intents::run(&args).await,
    }
}
