//! Serving: texts in, intents out (the sentence encoder, then the head, both in ONNX Runtime).

use std::path::Path;

use shopmind_encoder::SentenceEncoder;
use shopmind_serving::PoolOptions;

use crate::data::{OUT_OF_SCOPE, load_examples};
use crate::error::{AssistantError, Result};
use crate::head::{HeadConfig, HeadModel, IntentHead, fit};

/// How [`IntentClassifier`] decides.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassifierConfig {
    /// When the most probable intent has a probability below this, the message is answered as
    /// `out_of_scope` (the assistant asks again or hands over). In `[0, 1)`. 0.45 is the highest
    /// threshold of the sweep in docs/ASSISTANT.md that turns at most 5% of the in-scope
    /// held-out messages into `out_of_scope`.
    pub threshold: f32,
    /// Texts longer than this many tokens are truncated by the encoder.
    pub max_tokens: usize,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        Self { threshold: 0.45, max_tokens: 128 }
    }
}

/// The answer for one message.
#[derive(Clone, Debug, PartialEq)]
pub struct Classification {
    /// The intent to act on: [`Classification::predicted`], or `out_of_scope` when
    /// [`Classification::confidence`] is below the threshold.
    pub intent: String,
    /// The most probable intent.
    pub predicted: String,
    /// Its probability.
    pub confidence: f32,
    /// Whether the threshold turned the answer into `out_of_scope`.
    pub below_threshold: bool,
    /// Every intent's probability, in the order of [`IntentClassifier::labels`].
    pub probabilities: Vec<f32>,
}

/// Turns head probabilities into a [`Classification`].
pub fn decide(labels: &[String], probabilities: Vec<f32>, threshold: f32) -> Classification {
    let best = (0..probabilities.len()).max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b]));
    let (predicted, confidence) = match best {
        Some(i) => (labels.get(i).cloned().unwrap_or_default(), probabilities[i]),
        None => (OUT_OF_SCOPE.to_owned(), 0.0),
    };
    let below_threshold = confidence < threshold;
    let intent = if below_threshold { OUT_OF_SCOPE.to_owned() } else { predicted.clone() };
    Classification { intent, predicted, confidence, below_threshold, probabilities }
}

/// The sentence encoder and an intent head.
#[derive(Debug)]
pub struct IntentClassifier {
    encoder: SentenceEncoder,
    head: HeadModel,
    config: ClassifierConfig,
}

impl IntentClassifier {
    /// Puts an encoder and a head together; their widths must match, the head must have an
    /// `out_of_scope` label, and the threshold must be in `[0, 1)`.
    pub fn new(encoder: SentenceEncoder, head: HeadModel, config: ClassifierConfig) -> Result<Self> {
        if !(0.0..1.0).contains(&config.threshold) {
            return Err(AssistantError::Config(format!("threshold {} is not in [0, 1)", config.threshold)));
        }
        if encoder.dimension() != head.dimension() {
            return Err(AssistantError::Config(format!(
                "the encoder gives {} values, the head takes {}",
                encoder.dimension(),
                head.dimension()
            )));
        }
        if !head.labels().iter().any(|l| l == OUT_OF_SCOPE) {
            return Err(AssistantError::Config(format!("the head has no `{OUT_OF_SCOPE}` label")));
        }
        Ok(Self { encoder, head, config })
    }

    /// Loads the encoder from a directory written by `shopmind_encoder::import` and the head
    /// from an ONNX file written by [`IntentHead::to_onnx`]. Needs
    /// [`shopmind_serving::init_runtime`].
    pub fn load(
        encoder_dir: &Path,
        head_file: &Path,
        config: ClassifierConfig,
        opts: &PoolOptions,
    ) -> Result<Self> {
        let encoder = SentenceEncoder::load_dir(encoder_dir, config.max_tokens, opts)?;
        let head = HeadModel::load_file(head_file, opts)?;
        Self::new(encoder, head, config)
    }

    pub fn labels(&self) -> &[String] {
        self.head.labels()
    }

    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    pub fn encoder(&self) -> &SentenceEncoder {
        &self.encoder
    }

    /// Classifies a batch of messages (one encoder run and one head run).
    pub async fn classify(&self, texts: &[&str]) -> Result<Vec<Classification>> {
        let span = tracing::debug_span!("classify_intents", batch = texts.len());
        let _guard = span.enter();
        let embeddings = self.encoder.encode(texts).await?;
        let probabilities = self.head.probabilities(&embeddings).await?;
        Ok(probabilities.into_iter().map(|p| decide(self.head.labels(), p, self.config.threshold)).collect())
    }
}

/// Embeds `texts` in batches of `batch` (the encoder pads each batch to its longest text).
pub async fn encode_all(encoder: &SentenceEncoder, texts: &[&str], batch: usize) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(batch.max(1)) {
        out.extend(encoder.encode(chunk).await?);
    }
    Ok(out)
}

/// Reads a JSON-lines training file (see [`crate::data::parse_examples`]), embeds its texts and
/// trains a head on all of them with [`HeadConfig::default`]; the labels are
/// [`crate::data::INTENTS`].
pub async fn train_from_file(encoder: &SentenceEncoder, path: &Path) -> Result<IntentHead> {
    let examples = load_examples(path)?;
    let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
    let embeddings = encode_all(encoder, &texts, 64).await?;
    let targets: Vec<usize> = examples.iter().filter_map(|e| crate::data::intent_index(&e.intent)).collect();
    let labels = crate::data::INTENTS.iter().map(|s| (*s).to_owned()).collect();
    fit(&embeddings, &targets, labels, &HeadConfig::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_confidence_becomes_out_of_scope() {
        let labels: Vec<String> =
            ["greeting", "complaint", "out_of_scope"].iter().map(|s| (*s).into()).collect();
        let sure = decide(&labels, vec![0.1, 0.8, 0.1], 0.45);
        assert_eq!((sure.intent.as_str(), sure.below_threshold), ("complaint", false));
        let unsure = decide(&labels, vec![0.35, 0.4, 0.25], 0.45);
        assert_eq!(unsure.intent, "out_of_scope");
        assert_eq!(unsure.predicted, "complaint");
        assert!(unsure.below_threshold);
    }
}
