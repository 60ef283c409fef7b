//! `shopmind bench train`: training time and peak memory of the embedding recommender on
//! MovieLens-100k and on a simulated shop's interactions, each next to raw baselines measured in
//! the same run: interning the interactions into per-user sequences (what any trainer must do
//! first), and one plain pass of `dim`-wide dot products over every training position (the
//! arithmetic floor of one epoch).

use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;
use shopmind_datasets::{MovieLens, default_ml100k_dir};
use shopmind_domain::{Event, InteractionKind, ValidationPolicy};
use shopmind_evaluation::recommender_protocol::{peak_rss_kib, reset_peak_rss, rss_kib};
use shopmind_simulator::{SimConfig, Simulator};
use shopmind_training::embedding::{self, EmbeddingConfig, Interned};
use shopmind_training::{TrainingInteraction, als};

/// One data set's figures.
#[derive(Serialize, Debug)]
pub struct TrainBench {
    pub dataset: String,
    pub users: u64,
    pub items: usize,
    pub interactions: u64,
    /// Raw baseline 1: interning ids and ordering each user's interactions.
    pub intern_s: f64,
    /// Raw baseline 2: one pass of plain dot products (one per training position).
    pub dot_pass_s: f64,
    /// Training, interning included.
    pub train_s: f64,
    pub epochs: usize,
    pub train_per_epoch_s: f64,
    /// `train_s / intern_s`.
    pub ratio_to_intern: f64,
    /// `train_per_epoch_s / dot_pass_s`: what an epoch costs over the bare dot products.
    pub epoch_ratio_to_dot_pass: f64,
    /// Interactions per second of training (all epochs).
    pub interactions_per_s: f64,
    /// `VmHWM` while training (peak reset before it), and the growth over the RSS before.
    pub peak_rss_mib: Option<f64>,
    pub train_peak_delta_mib: Option<f64>,
    /// The model's parameters (3 float matrices/vectors), MiB.
    pub model_mib: f64,
}

#[derive(Serialize, Debug)]
pub struct TrainReport {
    pub config: String,
    pub runs: Vec<TrainBench>,
}

fn ml100k() -> anyhow::Result<Vec<TrainingInteraction>> {
    let dir = default_ml100k_dir().context("ml-100k not found under .cache/data: run scripts/setup.sh")?;
    let ml = MovieLens::load(&dir)?;
    Ok(ml
        .ratings
        .iter()
        .map(|r| TrainingInteraction {
            user: MovieLens::user_id(r.user),
            item: MovieLens::item_id(r.item),
            kind: InteractionKind::View,
            at_ms: r.timestamp * 1000,
        })
        .collect())
}

/// The first `n` interactions (views, cart adds, purchased lines) of a simulated shop sized to
/// produce them in 28 days.
fn simulated(n: usize, seed: u64) -> anyhow::Result<Vec<TrainingInteraction>> {
    let users = (n / 30).max(100);
    let sim = Simulator::new(SimConfig {
        seed,
        tenant: "bench".into(),
        users,
        items: (users / 20).clamp(500, 20_000),
        days: 28,
        ..SimConfig::default()
    })?;
    let policy = ValidationPolicy::stored();
    let mut out = Vec::with_capacity(n);
    let bar = indicatif::ProgressBar::new(n as u64).with_style(
        indicatif::ProgressStyle::with_template("simulating [{bar:30}] {pos}/{len} interactions")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for wire in sim {
        let event =
            Event::from_proto(&wire, None, &policy).map_err(|v| anyhow::anyhow!("simulated event: {v}"))?;
        let Some(user) = &event.user else { continue };
        for i in event.interactions() {
            if out.len() == n {
                break;
            }
            out.push(TrainingInteraction {
                user: user.to_string(),
                item: i.item.to_string(),
                kind: i.kind,
                at_ms: i.at.0,
            });
        }
        bar.set_position(out.len() as u64);
        if out.len() == n {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

fn bench_one(dataset: &str, data: Vec<TrainingInteraction>, cfg: &EmbeddingConfig) -> TrainBench {
    // Baseline 1: interning.
    let copy = data.clone();
    let started = Instant::now();
    let interned = Interned::from_interactions(copy);
    let intern_s = started.elapsed().as_secs_f64();
    // Baseline 2: one dot product of `dim` floats per training position, over random rows.
    let d = cfg.dim;
    let n = interned.items.len();
    let rows: Vec<f32> = (0..n * d).map(|k| ((k * 7919) % 1000) as f32 / 1000.0 - 0.5).collect();
    let started = Instant::now();
    let mut acc = 0f32;
    for seq in &interned.sequences {
        for pair in seq.windows(2) {
            let (a, b) = (pair[0] as usize, pair[1] as usize);
            acc += als::dot_public(&rows[a * d..(a + 1) * d], &rows[b * d..(b + 1) * d]);
        }
    }
    let dot_pass_s = started.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    drop(rows);
    let (users, items) = (interned.stats.users, interned.items.len());
    drop(interned);

    let bar = indicatif::ProgressBar::new(cfg.epochs as u64).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "training on {dataset} [{{bar:30}}] {{pos}}/{{len}} epochs"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let before = rss_kib();
    let reset = reset_peak_rss();
    let interactions = data.len() as u64;
    let started = Instant::now();
    let model = embedding::train_with_progress(data, cfg, &mut |done, _| bar.set_position(done as u64));
    let train_s = started.elapsed().as_secs_f64();
    let peak = if reset { peak_rss_kib() } else { None };
    bar.finish_and_clear();
    let model_mib = (model.factors.history_embeddings.len()
        + model.factors.item_embeddings.len()
        + model.factors.item_bias.len()) as f64
        * 4.0
        / (1024.0 * 1024.0);
    let per_epoch = train_s / cfg.epochs.max(1) as f64;
    TrainBench {
        dataset: dataset.into(),
        users,
        items,
        interactions,
        intern_s,
        dot_pass_s,
        train_s,
        epochs: cfg.epochs,
        train_per_epoch_s: per_epoch,
        ratio_to_intern: train_s / intern_s.max(1e-9),
        epoch_ratio_to_dot_pass: per_epoch / dot_pass_s.max(1e-9),
        interactions_per_s: interactions as f64 * cfg.epochs as f64 / train_s.max(1e-9),
        peak_rss_mib: peak.map(|p| p as f64 / 1024.0),
        train_peak_delta_mib: peak.zip(before).map(|(p, b)| p.saturating_sub(b) as f64 / 1024.0),
        model_mib,
    }
}

pub fn run(interactions: usize, seed: u64, epochs: Option<usize>) -> anyhow::Result<TrainReport> {
    let mut cfg = EmbeddingConfig { seed, ..EmbeddingConfig::default() };
    if let Some(e) = epochs {
        cfg.epochs = e;
    }
    let config = format!(
        "dim={} epochs={} negatives={} lr={} reg={} decay={} history={}",
        cfg.dim,
        cfg.epochs,
        cfg.negatives,
        cfg.learning_rate,
        cfg.regularization,
        cfg.history_decay,
        cfg.history_len
    );
    let mut runs = vec![bench_one("ml-100k", ml100k()?, &cfg)];
    let sim = simulated(interactions, seed)?;
    runs.push(bench_one(&format!("simulated-{}", sim.len()), sim, &cfg));
    Ok(TrainReport { config, runs })
}

pub fn print(r: &TrainReport) {
    println!("embedding model, {}", r.config);
    println!(
        "{:<18} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>10} {:>9} {:>9}",
        "dataset",
        "users",
        "items",
        "inter.",
        "intern s",
        "dot s",
        "train s",
        "x intern",
        "x dot/ep",
        "inter./s",
        "peak MiB",
        "model MiB"
    );
    for b in &r.runs {
        println!(
            "{:<18} {:>7} {:>6} {:>9} {:>9.3} {:>9.4} {:>9.1} {:>8.0} {:>8.0} {:>10.0} {:>9} {:>9.1}",
            b.dataset,
            b.users,
            b.items,
            b.interactions,
            b.intern_s,
            b.dot_pass_s,
            b.train_s,
            b.ratio_to_intern,
            b.epoch_ratio_to_dot_pass,
            b.interactions_per_s,
            b.peak_rss_mib.map_or_else(|| "-".into(), |p| format!("{p:.0}")),
            b.model_mib
        );
    }
}
