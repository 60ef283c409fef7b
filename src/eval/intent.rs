//! `shopmind eval --task intent`: the purchase-intent model on simulated sessions.
//!
//! Protocol: simulate a shop (seeded), feed its events through the production feature code
//! (`shopmind_trainer::purchase_intent::build_samples`: `apply_event` on a memory store, features read
//! back with the serving reads at a random cut point inside each session, before its order),
//! split the sessions by time (train: sessions over before the cut-off day; test: sessions
//! starting on or after it), train the logistic regression, and score the test sessions
//! with the model and with one-feature rules computed in the same run. ROC-AUC is the headline;
//! the exported ONNX graph is run on the test rows when ONNX Runtime is available, and its
//! probabilities are compared with the Rust reference.

use anyhow::Context as _;
use serde::Serialize;
use shopmind_domain::{Event, ValidationPolicy};
use shopmind_evaluation::metrics::{log_loss, roc_auc, roc_curve};
use shopmind_features::purchase_intent::{FEATURE_NAMES, FEATURE_SCHEMA_VERSION, N_FEATURES};
use shopmind_serving::{PoolOptions, PurchaseIntentPredictor};
use shopmind_simulator::{DAY_MS, SimConfig, Simulator};
use shopmind_trainer::purchase_intent::{self, PurchaseIntentSample, SampleOptions};
use shopmind_training::PurchaseIntentConfig;

use super::EvalArgs;
use super::chart::{COLOURS, Chart};
use crate::common::{counter_bar, spinner};

/// The simulated shop of the evaluation.
pub const USERS: usize = 2000;
pub const ITEMS: usize = 500;
pub const DAYS: u32 = 35;
/// Sessions ending before day `TRAIN_DAYS` train; sessions starting on or after it test.
pub const TRAIN_DAYS: u32 = 28;

#[derive(Debug, Serialize)]
pub struct ScoreRow {
    pub name: String,
    pub auc: f64,
    /// Only for the model (rules give no probabilities).
    pub log_loss: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct IntentReport {
    pub seed: u64,
    pub users: usize,
    pub items: usize,
    pub days: u32,
    pub train_days: u32,
    pub events: usize,
    pub sessions: usize,
    pub train_samples: usize,
    pub train_positive_rate: f64,
    pub test_samples: usize,
    pub test_positive_rate: f64,
    pub newton_steps: usize,
    pub train_auc: f64,
    /// Model and baselines on the test sessions.
    pub test: Vec<ScoreRow>,
    /// Features by the magnitude of their (standardised) weight.
    pub weights: Vec<(String, f32)>,
    /// Largest |probability(ONNX) - probability(Rust)| over the test rows; absent without ONNX
    /// Runtime.
    pub onnx_max_abs_diff: Option<f32>,
    #[serde(skip)]
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
}

pub fn simulated_events(cfg: SimConfig, what: &'static str) -> anyhow::Result<Vec<Event>> {
    let sim = Simulator::new(cfg)?;
    let policy = ValidationPolicy::stored();
    let bar = spinner(what);
    let mut events = Vec::new();
    for wire in sim {
        let e =
            Event::from_proto(&wire, None, &policy).map_err(|v| anyhow::anyhow!("simulated event: {v}"))?;
        events.push(e);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(events)
}

fn rule(
    name: &str,
    test: &[PurchaseIntentSample],
    labels: &[bool],
    score: impl Fn(&PurchaseIntentSample) -> f64,
) -> ScoreRow {
    let scores: Vec<f64> = test.iter().map(score).collect();
    ScoreRow { name: name.into(), auc: roc_auc(&scores, labels).unwrap_or(f64::NAN), log_loss: None }
}

pub async fn evaluate(seed: u64) -> anyhow::Result<IntentReport> {
    let cfg = SimConfig { seed, users: USERS, items: ITEMS, days: DAYS, ..SimConfig::default() };
    let cutoff_ms = cfg.start_ms + i64::from(TRAIN_DAYS) * DAY_MS;
    let events = simulated_events(cfg, "simulating")?;

    let bar = counter_bar(events.len() as u64, "features");
    let opts = SampleOptions { seed, ..SampleOptions::default() };
    let samples = purchase_intent::build_samples(&events, &opts, &mut |n| bar.inc(n)).await?;
    bar.finish_and_clear();

    let (train, test): (Vec<&PurchaseIntentSample>, Vec<&PurchaseIntentSample>) = (
        samples.iter().filter(|s| s.ended_ms < cutoff_ms).collect(),
        samples.iter().filter(|s| s.started_ms >= cutoff_ms).collect(),
    );
    let train: Vec<PurchaseIntentSample> = train.into_iter().cloned().collect();
    let test: Vec<PurchaseIntentSample> = test.into_iter().cloned().collect();
    anyhow::ensure!(!train.is_empty() && !test.is_empty(), "no training or no test sessions");
    let model = purchase_intent::train(&train, &PurchaseIntentConfig::default())
        .context("training the intent model")?;

    let rate =
        |s: &[PurchaseIntentSample]| s.iter().filter(|x| x.label).count() as f64 / s.len().max(1) as f64;
    let train_labels: Vec<bool> = train.iter().map(|s| s.label).collect();
    let train_scores: Vec<f64> =
        train.iter().map(|s| f64::from(model.predict_row(&s.features).probability)).collect();
    let labels: Vec<bool> = test.iter().map(|s| s.label).collect();
    let probs: Vec<f64> =
        test.iter().map(|s| f64::from(model.predict_row(&s.features).probability)).collect();

    let col = |name: &str| FEATURE_NAMES.iter().position(|n| *n == name).unwrap_or(0);
    let (adds, open, views) = (col("session_cart_adds"), col("session_open_cart"), col("session_views"));
    let mut rows = vec![ScoreRow {
        name: "logistic regression (15 features)".into(),
        auc: roc_auc(&probs, &labels).unwrap_or(f64::NAN),
        log_loss: log_loss(&probs, &labels),
    }];
    rows.push(rule("rule: session has a cart add", &test, &labels, |s| f64::from(s.features[adds] > 0.0)));
    rows.push(rule("rule: session cart is open (adds > removes)", &test, &labels, |s| {
        f64::from(s.features[open])
    }));
    rows.push(rule("rule: session cart adds, then views", &test, &labels, |s| {
        f64::from(s.features[adds]) * 100.0 + f64::from(s.features[views])
    }));
    let base = rate(&train);
    rows.push(ScoreRow {
        name: "constant (training base rate)".into(),
        auc: 0.5,
        log_loss: log_loss(&vec![base; labels.len()], &labels),
    });

    let curves = vec![
        ("model".to_string(), roc_curve(&probs, &labels)),
        (
            "rule: cart add".to_string(),
            roc_curve(&test.iter().map(|s| f64::from(s.features[adds] > 0.0)).collect::<Vec<_>>(), &labels),
        ),
    ];

    let onnx_max_abs_diff = match shopmind_serving::default_library_path() {
        Some(lib) if shopmind_serving::init_runtime(&lib).is_ok() => {
            let bytes = model.to_onnx(&model.manifest("eval", "sim", 0));
            let predictor = PurchaseIntentPredictor::load(
                &bytes,
                &PoolOptions::default(),
                FEATURE_SCHEMA_VERSION,
                &FEATURE_NAMES,
            )?;
            let rows: Vec<[f32; N_FEATURES]> = test.iter().map(|s| s.features).collect();
            let mut max = 0f32;
            for (chunk, want) in rows.chunks(1024).zip(probs.chunks(1024)) {
                for (got, want) in predictor.predict(chunk).await?.iter().zip(want) {
                    max = max.max((got.probability - *want as f32).abs());
                }
            }
            Some(max)
        }
        _ => None,
    };

    let mut weights: Vec<(String, f32)> =
        model.feature_names.iter().cloned().zip(model.weights.iter().copied()).collect();
    weights.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
    let sessions = samples.len();
    Ok(IntentReport {
        seed,
        users: USERS,
        items: ITEMS,
        days: DAYS,
        train_days: TRAIN_DAYS,
        events: events.len(),
        sessions,
        train_samples: train.len(),
        train_positive_rate: base,
        test_samples: test.len(),
        test_positive_rate: rate(&test),
        newton_steps: model.iterations,
        train_auc: roc_auc(&train_scores, &train_labels).unwrap_or(f64::NAN),
        test: rows,
        weights,
        onnx_max_abs_diff,
        curves,
    })
}

pub async fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let dataset = args.dataset.as_deref().unwrap_or("simulated");
    anyhow::ensure!(
        dataset == "simulated",
        "`--task intent` evaluates on `--dataset simulated` only, not `{dataset}`"
    );
    let report = evaluate(args.seed).await?;
    if let Some(path) = &args.plot {
        std::fs::write(path, roc_svg(&report)).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "purchase intent on a simulated shop (seed {}, {} users, {} items, {} days; {} events, {} sessions)",
        report.seed, report.users, report.items, report.days, report.events, report.sessions
    );
    println!(
        "train: sessions ended before day {} ({}; {:.1}% ordered)   test: sessions from day {} ({}; {:.1}% ordered)",
        report.train_days,
        report.train_samples,
        100.0 * report.train_positive_rate,
        report.train_days,
        report.test_samples,
        100.0 * report.test_positive_rate
    );
    println!();
    println!("{:<46} {:>8} {:>9}", "test sessions", "ROC-AUC", "log-loss");
    for r in &report.test {
        let ll = r.log_loss.map_or("-".to_string(), |v| format!("{v:.4}"));
        println!("{:<46} {:>8.4} {:>9}", r.name, r.auc, ll);
    }
    println!(
        "(training ROC-AUC of the model: {:.4}; {} Newton steps)",
        report.train_auc, report.newton_steps
    );
    println!();
    println!("{:<24} {:>8}", "feature", "weight");
    for (name, w) in &report.weights {
        println!("{name:<24} {w:>+8.3}");
    }
    match report.onnx_max_abs_diff {
        Some(d) => println!("\nONNX Runtime vs Rust reference on the test rows: max |dp| = {d:.2e}"),
        None => println!("\nONNX Runtime not found: the exported graph was not run"),
    }
    if let Some(path) = &args.plot {
        println!("ROC curves written to {}", path.display());
    }
    Ok(())
}

fn roc_svg(report: &IntentReport) -> String {
    let mut chart = Chart::new(560.0, 520.0, (0.0, 1.0), (0.0, 1.0));
    chart.axes(
        "Purchase intent: ROC on held-out simulated sessions",
        "false positive rate",
        "true positive rate",
        5,
    );
    chart.line(&[(0.0, 0.0), (1.0, 1.0)], "#999", 1.0, true);
    let mut legend = Vec::new();
    let labels: Vec<String> = report
        .curves
        .iter()
        .zip(&report.test)
        .map(|((name, _), row)| format!("{name} (AUC {:.3})", row.auc))
        .collect();
    for (k, (_, points)) in report.curves.iter().enumerate() {
        chart.line(points, COLOURS[k % COLOURS.len()], 2.0, false);
    }
    for (k, label) in labels.iter().enumerate() {
        legend.push((label.as_str(), COLOURS[k % COLOURS.len()]));
    }
    let (x, y) = (chart.px(0.35), chart.py(0.2));
    chart.legend(&legend, x, y);
    chart.finish()
}
