//! Held-out evaluation of the intent classifier, next to two baselines computed in the same run.

use std::fmt;
use std::path::Path;

use shopmind_encoder::SentenceEncoder;
use shopmind_serving::PoolOptions;

use crate::classifier::{ClassifierConfig, decide, encode_all};
use crate::data::{
    BUILTIN_DATA, Example, INTENTS, OUT_OF_SCOPE, intent_index, parse_examples, stratified_split,
};
use crate::error::Result;
use crate::head::{HeadConfig, HeadModel, fit};

/// Share of each intent's messages held out.
pub const HELD_OUT_FRACTION: f64 = 0.25;

/// The thresholds [`Report::thresholds`] is measured at.
pub const THRESHOLDS: [f32; 8] = [0.0, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7];

/// Precision and recall of one intent on the held-out messages.
#[derive(Clone, Debug, PartialEq)]
pub struct IntentMetrics {
    pub intent: String,
    /// Held-out messages with this intent.
    pub support: usize,
    /// Of the messages predicted as this intent, the share that have it (0 when none was).
    pub precision: f64,
    /// Of the messages with this intent, the share predicted as it.
    pub recall: f64,
}

/// What the confidence threshold does on the held-out messages.
#[derive(Clone, Debug, PartialEq)]
pub struct ThresholdRow {
    pub threshold: f32,
    /// Accuracy when predictions below the threshold become `out_of_scope`.
    pub accuracy: f64,
    /// Share of in-scope messages (any intent but `out_of_scope`) still answered correctly.
    pub in_scope_correct: f64,
    /// Share of in-scope messages turned into `out_of_scope` by the threshold.
    pub in_scope_rejected: f64,
    /// Share of `out_of_scope` messages answered `out_of_scope`.
    pub out_of_scope_caught: f64,
}

/// The result of [`evaluate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub seed: u64,
    pub train_rows: usize,
    pub held_out_rows: usize,
    /// Gradient steps of the head and its final training cross-entropy.
    pub iterations: usize,
    pub train_loss: f64,
    /// Held-out accuracy of the head, run in ONNX Runtime, taking the most probable intent.
    pub accuracy: f64,
    /// Held-out accuracy of nearest centroid (cosine to each intent's mean training embedding).
    pub nearest_centroid_accuracy: f64,
    /// Held-out accuracy of always answering the most frequent training intent.
    pub majority_accuracy: f64,
    pub per_intent: Vec<IntentMetrics>,
    /// `confusion[true][predicted]`, intents in [`INTENTS`] order.
    pub confusion: Vec<Vec<usize>>,
    pub thresholds: Vec<ThresholdRow>,
    /// Largest difference between ONNX Runtime's and the plain-Rust probabilities.
    pub max_runtime_difference: f32,
}

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b]).then(b.cmp(&a))).unwrap_or(0)
}

fn share(n: usize, d: usize) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// [`evaluate_examples`] on the built-in data, with the encoder imported in `encoder_dir` (by
/// `shopmind_encoder::import` / `shopmind models import-encoder`). Needs
/// [`shopmind_serving::init_runtime`].
pub async fn evaluate(encoder_dir: &Path, seed: u64) -> Result<Report> {
    let opts = PoolOptions::default();
    let encoder = SentenceEncoder::load_dir(encoder_dir, ClassifierConfig::default().max_tokens, &opts)?;
    let examples = parse_examples(BUILTIN_DATA)?;
    evaluate_examples(&encoder, &examples, seed).await
}

/// Splits `examples` ([`stratified_split`], [`HELD_OUT_FRACTION`] per intent, `seed`), trains the
/// head on the training part, exports it to ONNX, loads it in ONNX Runtime and scores the
/// held-out part with it; the baselines see the same split.
pub async fn evaluate_examples(encoder: &SentenceEncoder, examples: &[Example], seed: u64) -> Result<Report> {
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let embeddings = encode_all(encoder, &texts, 64).await?;
    evaluate_embedded(&embeddings, examples, seed).await
}

/// [`evaluate_examples`] with the examples already embedded (`embeddings[i]` of `examples[i]`),
/// for a caller that trains on the same embeddings afterwards (the trainer).
pub async fn evaluate_embedded(embeddings: &[Vec<f32>], examples: &[Example], seed: u64) -> Result<Report> {
    let k = INTENTS.len();
    let labels: Vec<String> = INTENTS.iter().map(|s| (*s).to_owned()).collect();
    let targets: Vec<usize> = examples.iter().map(|e| intent_index(&e.intent).unwrap_or(k - 1)).collect();
    if embeddings.len() != examples.len() {
        return Err(crate::AssistantError::Training(format!(
            "{} embeddings for {} examples",
            embeddings.len(),
            examples.len()
        )));
    }
    let (train, held) = stratified_split(examples, HELD_OUT_FRACTION, seed);

    let train_x: Vec<Vec<f32>> = train.iter().map(|&i| embeddings[i].clone()).collect();
    let train_y: Vec<usize> = train.iter().map(|&i| targets[i]).collect();
    let head = fit(&train_x, &train_y, labels.clone(), &HeadConfig::default())?;
    let model = HeadModel::load(&head.to_onnx("evaluation", 0, &[]), &PoolOptions::default())?;
    let held_x: Vec<Vec<f32>> = held.iter().map(|&i| embeddings[i].clone()).collect();
    let held_y: Vec<usize> = held.iter().map(|&i| targets[i]).collect();
    let probabilities = model.probabilities(&held_x).await?;
    let max_runtime_difference = held_x
        .iter()
        .zip(&probabilities)
        .flat_map(|(x, p)| head.probabilities(x).into_iter().zip(p.clone()).map(|(a, b)| (a - b).abs()))
        .fold(0f32, f32::max);

    let predicted: Vec<usize> = probabilities.iter().map(|p| argmax(p)).collect();
    let mut confusion = vec![vec![0usize; k]; k];
    for (t, p) in held_y.iter().zip(&predicted) {
        confusion[*t][*p] += 1;
    }
    let correct = (0..k).map(|c| confusion[c][c]).sum::<usize>();
    let per_intent = (0..k)
        .map(|c| IntentMetrics {
            intent: labels[c].clone(),
            support: confusion[c].iter().sum(),
            precision: share(confusion[c][c], (0..k).map(|t| confusion[t][c]).sum()),
            recall: share(confusion[c][c], confusion[c].iter().sum()),
        })
        .collect();

    // Nearest centroid: each intent's mean training embedding, normalised; cosine.
    let d = embeddings.first().map_or(0, Vec::len);
    let mut centroids = vec![vec![0f32; d]; k];
    for (x, &y) in train_x.iter().zip(&train_y) {
        for (c, v) in centroids[y].iter_mut().zip(x) {
            *c += v;
        }
    }
    for c in &mut centroids {
        let norm = c.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        c.iter_mut().for_each(|v| *v /= norm);
    }
    let centroid_correct = held_x
        .iter()
        .zip(&held_y)
        .filter(|(x, y)| {
            let sims: Vec<f32> =
                centroids.iter().map(|c| c.iter().zip(x.iter()).map(|(a, b)| a * b).sum()).collect();
            argmax(&sims) == **y
        })
        .count();
    let mut counts = vec![0usize; k];
    train_y.iter().for_each(|&y| counts[y] += 1);
    let majority = (0..k).max_by(|&a, &b| counts[a].cmp(&counts[b]).then(b.cmp(&a))).unwrap_or(0);
    let majority_correct = held_y.iter().filter(|&&y| y == majority).count();

    let oos = k - 1;
    debug_assert_eq!(INTENTS[oos], OUT_OF_SCOPE);
    let thresholds = THRESHOLDS
        .iter()
        .map(|&t| {
            let decided: Vec<usize> = probabilities
                .iter()
                .map(|p| intent_index(&decide(&labels, p.clone(), t).intent).unwrap_or(oos))
                .collect();
            let in_scope: Vec<usize> = (0..held_y.len()).filter(|&i| held_y[i] != oos).collect();
            let out: Vec<usize> = (0..held_y.len()).filter(|&i| held_y[i] == oos).collect();
            ThresholdRow {
                threshold: t,
                accuracy: share((0..held_y.len()).filter(|&i| decided[i] == held_y[i]).count(), held_y.len()),
                in_scope_correct: share(
                    in_scope.iter().filter(|&&i| decided[i] == held_y[i]).count(),
                    in_scope.len(),
                ),
                in_scope_rejected: share(
                    in_scope.iter().filter(|&&i| decided[i] == oos && predicted[i] != oos).count(),
                    in_scope.len(),
                ),
                out_of_scope_caught: share(out.iter().filter(|&&i| decided[i] == oos).count(), out.len()),
            }
        })
        .collect();

    Ok(Report {
        seed,
        train_rows: train.len(),
        held_out_rows: held.len(),
        iterations: head.iterations,
        train_loss: head.train_loss,
        accuracy: share(correct, held_y.len()),
        nearest_centroid_accuracy: share(centroid_correct, held_y.len()),
        majority_accuracy: share(majority_correct, held_y.len()),
        per_intent,
        confusion,
        thresholds,
        max_runtime_difference,
    })
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} training and {} held-out messages; head: {} steps, training cross-entropy {:.4}",
            self.seed, self.train_rows, self.held_out_rows, self.iterations, self.train_loss
        )?;
        writeln!(f)?;
        writeln!(f, "| model | held-out accuracy |")?;
        writeln!(f, "|---|---|")?;
        writeln!(f, "| softmax head (ONNX Runtime) | {:.3} |", self.accuracy)?;
        writeln!(f, "| nearest centroid (cosine) | {:.3} |", self.nearest_centroid_accuracy)?;
        writeln!(f, "| majority class | {:.3} |", self.majority_accuracy)?;
        writeln!(f)?;
        writeln!(f, "| intent | support | precision | recall |")?;
        writeln!(f, "|---|---|---|---|")?;
        for m in &self.per_intent {
            writeln!(f, "| `{}` | {} | {:.3} | {:.3} |", m.intent, m.support, m.precision, m.recall)?;
        }
        writeln!(f)?;
        writeln!(f, "Confusion matrix (rows: true intent, columns: predicted, same order):")?;
        writeln!(f)?;
        write!(f, "| true \\ predicted |")?;
        for i in 0..INTENTS.len() {
            write!(f, " {} |", i + 1)?;
        }
        writeln!(f)?;
        writeln!(f, "|---|{}", "---|".repeat(INTENTS.len()))?;
        for (t, row) in self.confusion.iter().enumerate() {
            write!(f, "| {} `{}` |", t + 1, INTENTS[t])?;
            for v in row {
                if *v == 0 { write!(f, " · |")? } else { write!(f, " {v} |")? }
            }
            writeln!(f)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "| threshold | accuracy | in-scope correct | in-scope sent to out_of_scope | out_of_scope caught |"
        )?;
        writeln!(f, "|---|---|---|---|---|")?;
        for r in &self.thresholds {
            writeln!(
                f,
                "| {:.2} | {:.3} | {:.3} | {:.3} | {:.3} |",
                r.threshold, r.accuracy, r.in_scope_correct, r.in_scope_rejected, r.out_of_scope_caught
            )?;
        }
        writeln!(f)?;
        write!(f, "largest |ONNX Runtime - plain Rust| probability: {:.2e}", self.max_runtime_difference)
    }
}
