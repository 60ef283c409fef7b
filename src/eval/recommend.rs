//! `shopmind eval --task recommend --dataset ml-100k`: the recommenders on MovieLens-100k.
//!
//! Every rating is an implicit interaction. Per user, interactions are ordered by timestamp, ties
//! by movie id ascending; the latest 20% (at least one) are the test set. Hyperparameters are
//! tuned on a validation split carved the same way from the training part
//! (`shopmind_evaluation::recommender_protocol::run_protocol`). Baselines and the embedding model are trained and
//! scored in the same run; the embedding model is then exported to ONNX and its test metrics are
//! computed again from ONNX Runtime's scores, batch by batch, next to the largest difference from
//! the Rust scores. See docs/EVALUATION.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde::Serialize;
use shopmind_datasets::{MovieLens, default_ml100k_dir};
use shopmind_evaluation::recommender_protocol::{
    self as protocol, Candidate, Metrics, ModelResult, ProtocolReport, TEST_FRACTION, Trained, temporal_split,
};
use shopmind_onnx::TrainingStats;
use shopmind_serving::{EmbeddingRecommender, PoolOptions, default_library_path, init_runtime};
use shopmind_training::EmbeddingModel;
use shopmind_training::embedding::{EmbeddingConfig, Factors};

use super::EvalArgs;

/// Histories per ONNX Runtime run when checking the exported graph.
const ORT_BATCH: usize = 64;

/// ml-100k as time-ordered dense item sequences, users in id order.
struct Data {
    sequences: Vec<Vec<u32>>,
    items: Vec<String>,
}

fn load(args: &EvalArgs) -> anyhow::Result<Data> {
    match args.dataset.as_deref().unwrap_or("ml-100k") {
        "ml-100k" => {}
        other => bail!("unknown --dataset `{other}` for --task recommend (supported: ml-100k)"),
    }
    let dir = match &args.data {
        Some(dir) => dir.clone(),
        None => default_ml100k_dir().context("ml-100k not found under .cache/data: run scripts/setup.sh")?,
    };
    let ml = MovieLens::load(&dir).with_context(|| format!("loading {}", dir.display()))?;
    let mut movies: Vec<u32> = ml.movies.keys().copied().collect();
    movies.extend(ml.ratings.iter().map(|r| r.item));
    movies.sort_unstable();
    movies.dedup();
    let dense: BTreeMap<u32, u32> = movies.iter().enumerate().map(|(k, &m)| (m, k as u32)).collect();
    let mut per_user: BTreeMap<u32, Vec<(i64, u32)>> = BTreeMap::new();
    for r in &ml.ratings {
        per_user.entry(r.user).or_default().push((r.timestamp, r.item));
    }
    let sequences = per_user
        .into_values()
        .map(|mut v| {
            // Time order; equal timestamps by movie id.
            v.sort_unstable();
            v.into_iter().filter_map(|(_, m)| dense.get(&m).copied()).collect()
        })
        .collect();
    Ok(Data { sequences, items: movies.into_iter().map(MovieLens::item_id).collect() })
}

struct Bar(indicatif::ProgressBar);

impl protocol::Progress for Bar {
    fn begin(&mut self, total: u64) {
        self.0.set_length(total);
    }
    fn step(&mut self, what: &str) {
        if self.0.length().is_some_and(|l| self.0.position() < l) && !self.0.message().is_empty() {
            self.0.inc(1);
        }
        self.0.set_message(what.to_owned());
    }
    fn tick(&mut self) {
        self.0.tick();
    }
}

/// The ONNX Runtime check of the exported embedding model.
#[derive(Serialize, Debug)]
struct OnnxCheck {
    /// Test metrics from ONNX Runtime's scores.
    test: Metrics,
    /// The largest |ONNX Runtime - Rust| over every score of every test user.
    max_abs_diff: f32,
    model_bytes: usize,
    seconds: f64,
}

#[derive(Serialize, Debug)]
struct Report {
    dataset: String,
    protocol: &'static str,
    #[serde(flatten)]
    protocol_report: ProtocolReport,
    chosen: String,
    onnx_runtime: Option<OnnxCheck>,
    onnx_runtime_skipped: Option<String>,
}

pub async fn run(args: &EvalArgs) -> anyhow::Result<()> {
    let data = load(args)?;
    let n_items = data.items.len();
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {spinner} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let grids = protocol::default_grids(n_items, args.seed, threads);
    let sequences = data.sequences.clone();
    let (report, finals, bar) = tokio::task::spawn_blocking(move || {
        let mut progress = Bar(bar);
        let (report, finals) = protocol::run_protocol(&sequences, n_items, &grids, threads, &mut progress);
        (report, finals, progress.0)
    })
    .await?;
    bar.finish_and_clear();

    // The chosen model: the embedding family, tuned on validation (see docs/EVALUATION.md).
    let chosen = finals.iter().find_map(|(c, t)| match (c, t) {
        (Candidate::Embedding(_), Trained::Embedding(f, cfg)) => Some((f.clone(), cfg.clone())),
        _ => None,
    });
    let Some((factors, cfg)) = chosen else { bail!("the embedding model was not trained") };
    let result = report.results.iter().find(|r| r.model == "embedding").cloned();
    let model = export_model(&data, factors, cfg, result.as_ref());
    if let Some(path) = &args.plot {
        std::fs::write(path, svg(&report.results)).with_context(|| format!("writing {}", path.display()))?;
    }
    let bytes = model.to_onnx(&model.manifest("recommender", "eval", "ml-100k", 0));
    if let Some(path) = &args.model_out {
        std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let (onnx_runtime, onnx_runtime_skipped) = match default_library_path() {
        Some(lib) => match init_runtime(&lib) {
            Ok(()) => (Some(check_onnx(&bytes, &model, &data.sequences).await?), None),
            Err(e) => (None, Some(e.to_string())),
        },
        None => (None, Some("ONNX Runtime library not found (run scripts/setup.sh)".to_owned())),
    };
    let report = Report {
        dataset: "ml-100k".into(),
        protocol: "per-user temporal split, latest 20% (at least 1) held out; ties by movie id; \
                   Recall@10/NDCG@10 over the full catalog excluding training items; \
                   hyperparameters tuned on the last 20% of each user's training interactions",
        chosen: format!("embedding ({})", Candidate::Embedding(model.config.clone()).params()),
        protocol_report: report,
        onnx_runtime,
        onnx_runtime_skipped,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

fn export_model(
    data: &Data,
    factors: Factors,
    cfg: EmbeddingConfig,
    result: Option<&ModelResult>,
) -> EmbeddingModel {
    let split = temporal_split(&data.sequences, TEST_FRACTION);
    let stats = TrainingStats {
        users: data.sequences.len() as u64,
        interactions: split.train.iter().map(Vec::len).sum::<usize>() as u64,
        first_at_ms: 0,
        last_at_ms: 0,
    };
    let mut model = EmbeddingModel::from_parts(data.items.clone(), factors, cfg, stats);
    if let Some(r) = result {
        model.offline_metrics.insert("ml-100k.test.ndcg@10".into(), r.test.ndcg);
        model.offline_metrics.insert("ml-100k.test.recall@10".into(), r.test.recall);
        if let Some(v) = r.validation {
            model.offline_metrics.insert("ml-100k.validation.ndcg@10".into(), v.ndcg);
        }
    }
    model
}

/// Scores every test user through ONNX Runtime in batches and evaluates those scores.
async fn check_onnx(
    bytes: &[u8],
    model: &EmbeddingModel,
    sequences: &[Vec<u32>],
) -> anyhow::Result<OnnxCheck> {
    let started = Instant::now();
    let rec = EmbeddingRecommender::load(
        bytes,
        &PoolOptions { sessions: 1, intra_threads: 2, ..Default::default() },
    )?;
    let split = temporal_split(sequences, TEST_FRACTION);
    let n = model.len();
    let mut all_scores: Vec<Vec<f32>> = Vec::with_capacity(split.train.len());
    let mut max_abs_diff = 0f32;
    for chunk in split.train.chunks(ORT_BATCH) {
        let histories: Vec<Vec<(usize, f32)>> = chunk
            .iter()
            .map(|h| rec.recent_history(&h.iter().map(|&i| i as usize).collect::<Vec<_>>()))
            .collect();
        // Every item is a candidate: the evaluation ranks the whole catalog.
        let out = rec.score_batch(&histories, &vec![rec.all_items(); histories.len()]).await?;
        for (b, history) in histories.iter().enumerate() {
            let onnx = out.scores_of(b).to_vec();
            let rust = model.score(history);
            for (x, y) in onnx.iter().zip(&rust) {
                max_abs_diff = max_abs_diff.max((x - y).abs());
            }
            all_scores.push(onnx);
        }
    }
    if all_scores.iter().any(|s| s.len() != n) {
        bail!("ONNX Runtime returned scores of the wrong length");
    }
    let test = protocol::evaluate(&split, n, protocol::K, 1, |u, _| all_scores[u].clone());
    Ok(OnnxCheck { test, max_abs_diff, model_bytes: bytes.len(), seconds: started.elapsed().as_secs_f64() })
}

fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn table(r: &Report) -> String {
    let p = &r.protocol_report;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "ml-100k: {} users, {} items, {} interactions ({} train, {} test; validation trains on {})",
        p.users,
        p.items,
        p.interactions,
        p.train_interactions,
        p.test_interactions,
        p.validation_train_interactions
    );
    let _ = writeln!(s, "{}\n", r.protocol);
    let _ = writeln!(
        s,
        "{:<12} {:>9} {:>10} {:>9} {:>9} {:>9}  chosen hyperparameters",
        "model", "val NDCG", "Recall@10", "NDCG@10", "train s", "peak MiB"
    );
    for m in &p.results {
        let _ = writeln!(
            s,
            "{:<12} {:>9} {:>10.4} {:>9.4} {:>9.2} {:>9}  {}",
            m.model,
            fmt_opt(m.validation.map(|v| v.ndcg), 4),
            m.test.recall,
            m.test.ndcg,
            m.train_s,
            fmt_opt(m.peak_rss_mib, 0),
            m.params
        );
    }
    match (&r.onnx_runtime, &r.onnx_runtime_skipped) {
        (Some(c), _) => {
            let _ = writeln!(
                s,
                "{:<12} {:>9} {:>10.4} {:>9.4} {:>9} {:>9}  the exported graph in ONNX Runtime, batches of {ORT_BATCH}; \
                 max |ORT - Rust| = {:.2e}; {} bytes",
                "embedding/ORT", "-", c.test.recall, c.test.ndcg, "-", "-", c.max_abs_diff, c.model_bytes
            );
        }
        (None, Some(why)) => {
            let _ = writeln!(s, "ONNX Runtime check skipped: {why}");
        }
        (None, None) => {}
    }
    let _ = writeln!(s, "\nchosen: {}", r.chosen);
    let _ = writeln!(s, "\nvalidation NDCG@10 of every tuned candidate (best first):");
    for (family, rows) in protocol::tuning_by_family(p) {
        for row in rows {
            let _ = writeln!(s, "  {family:<10} {:.4}  {}", row.validation.ndcg, row.params);
        }
    }
    s
}

/// A grouped bar chart of NDCG@10 and Recall@10 per model, written by hand.
fn svg(results: &[ModelResult]) -> String {
    let (w, h) = (760.0f64, 360.0f64);
    let (left, right, top, bottom) = (60.0, 20.0, 40.0, 60.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let max = results.iter().flat_map(|r| [r.test.ndcg, r.test.recall]).fold(0.0f64, f64::max);
    let ymax = ((max * 10.0).ceil() / 10.0).max(0.1);
    let y = |v: f64| top + plot_h * (1.0 - v / ymax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">ml-100k, temporal split: NDCG@10 and Recall@10 on the test set</text>"#,
        w / 2.0
    );
    let steps = (ymax / 0.05).round() as usize;
    for k in 0..=steps {
        let v = k as f64 * 0.05;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.2}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0
        );
    }
    let group = plot_w / results.len().max(1) as f64;
    let bar = group * 0.32;
    for (g, r) in results.iter().enumerate() {
        let x0 = left + g as f64 * group + group * 0.16;
        for (k, (v, color)) in [(r.test.ndcg, "#4c72b0"), (r.test.recall, "#dd8452")].into_iter().enumerate()
        {
            let x = x0 + k as f64 * bar;
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{v:.3}</text>"#,
                y(v),
                bar - 2.0,
                y(0.0) - y(v),
                x + bar / 2.0 - 1.0,
                y(v) - 3.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            left + g as f64 * group + group / 2.0,
            y(0.0) + 18.0,
            r.model
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        y(0.0),
        w - right,
        y(0.0)
    );
    let ly = h - 18.0;
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{:.1}" width="12" height="12" fill="#4c72b0"/><text x="{:.1}" y="{ly:.1}">NDCG@10</text><rect x="{:.1}" y="{:.1}" width="12" height="12" fill="#dd8452"/><text x="{:.1}" y="{ly:.1}">Recall@10</text>"##,
        ly - 10.0,
        left + 16.0,
        left + 100.0,
        ly - 10.0,
        left + 116.0
    );
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_two_bars_per_model_and_is_closed() {
        let m = |model: &str, ndcg, recall| ModelResult {
            model: model.into(),
            params: String::new(),
            validation: None,
            test: Metrics { recall, ndcg, users: 1 },
            train_s: 0.0,
            peak_rss_mib: None,
            train_peak_delta_mib: None,
        };
        let s = svg(&[m("popularity", 0.11, 0.08), m("embedding", 0.25, 0.2)]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<rect x=").count(), 4 + 2, "4 bars + 2 legend swatches");
        assert!(s.contains(">embedding</text>") && s.contains(">0.250</text>"));
    }
}
