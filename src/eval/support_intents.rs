//! `shopmind eval --task support-intents`: the customer-service intent classifier on the
//! project's own messages (crates/assistant/data/intents.jsonl): a stratified held-out split,
//! accuracy next to nearest-centroid and majority baselines, per-intent precision and recall,
//! the confusion matrix and the confidence-threshold sweep (docs/ASSISTANT.md).

use anyhow::Context as _;

use super::EvalArgs;

pub async fn run(args: &EvalArgs) -> anyhow::Result<()> {
    if args.json || args.plot.is_some() {
        anyhow::bail!("--task support-intents prints a Markdown report; --json and --plot are not available");
    }
    let library = shopmind_serving::default_library_path()
        .context("the ONNX Runtime library is missing; run scripts/setup.sh")?;
    shopmind_serving::init_runtime(&library)?;
    let model_dir =
        args.data.clone().or_else(shopmind_encoder::default_model_dir).context(
            "all-MiniLM-L6-v2 not found in .cache/models; run scripts/setup.sh (or pass --data DIR)",
        )?;
    let encoder_dir = tempfile::tempdir()?;
    shopmind_encoder::import(&model_dir, encoder_dir.path(), "eval", 0)
        .with_context(|| format!("converting the encoder in {}", model_dir.display()))?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_message("encoding the messages, training the head, scoring the held-out part");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = shopmind_assistant::evaluate(encoder_dir.path(), args.seed).await?;
    bar.finish_and_clear();
    print!("{report}");
    Ok(())
}
