//! `[trainer]`: what the trainer trains, how often, and on what (`[trainer.assistant]`: the
//! assistant's intent head).

use serde::{Deserialize, Serialize};

use crate::check::Checks;

/// Which recommender the trainer trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecommenderFamily {
    Embedding,
    Covisit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerConfig {
    /// Seconds between training runs of the trainer service; 0: train once and stop.
    pub interval_s: u64,
    /// The recommender family trained: `embedding` (the winner of the offline evaluation,
    /// docs/EVALUATION.md) or `covisit` (item-to-item co-visitation).
    pub recommender: RecommenderFamily,
    /// Floats per embedding of the embedding recommender.
    pub embedding_dim: usize,
    /// Training passes of the embedding recommender.
    pub embedding_epochs: usize,
    /// Train on the events of the last `history_days` days before each tenant's newest event
    /// (event time); 0: all of them.
    pub history_days: u32,
    /// Whether each recommender is first trained without every user's latest interaction and
    /// measured on them (NDCG@10, Recall@10, next to popularity), the figures going into the
    /// manifest; costs a second training.
    pub holdout_eval: bool,
    /// Items the recommender model covers (the most popular ones).
    pub max_items: usize,
    /// Per user, the most recent items that count as co-visited.
    pub window: usize,
    /// Discount of item pairs seen together by few users: similarity x count / (count + shrinkage).
    pub shrinkage: u32,
    /// Whether a newly trained model becomes the active version at once (else an operator
    /// promotes it with `shopmind models promote`).
    pub auto_promote: bool,
    /// Whether rounds also train the purchase-intent (`intent`) and demand (`demand`) models.
    pub predictors: bool,
    /// Sessions (training samples) a tenant needs before an intent model is trained.
    pub intent_min_sessions: usize,
    /// Of them, sessions that ended in an order (and as many that did not).
    pub intent_min_ordered_sessions: usize,
    /// Days of events (first to last) a tenant needs before a demand model is trained; at least
    /// the model's history (56 days) plus its horizon (14) plus one.
    pub demand_min_days: u32,
    /// The customer-service assistant's intent classifier head (`intent_head`).
    pub assistant: TrainerAssistantConfig,
}

/// `[trainer.assistant]`: training the assistant's intent head per tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerAssistantConfig {
    /// Whether rounds train and publish each tenant's `intent_head`.
    pub enabled: bool,
    /// The sentence encoder: a directory with `encoder.onnx` and `tokenizer.json` (written by
    /// `shopmind models import-encoder`) or the sentence-transformers model itself
    /// (`model.safetensors`, converted at the start of a round). Missing: the model is skipped
    /// (logged), the round goes on.
    pub encoder_dir: String,
    /// A directory of tenants' own labelled messages, `<tenant>.jsonl` (the format of
    /// `crates/assistant/data/intents.jsonl`), added to the bundled ones; empty: none.
    pub examples_dir: String,
    /// Seed of the stratified held-out split the reported accuracy is measured on.
    pub seed: u64,
}

impl Default for TrainerAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            encoder_dir: ".cache/models/all-MiniLM-L6-v2".into(),
            examples_dir: String::new(),
            seed: 42,
        }
    }
}

impl Default for TrainerConfig {
    fn default() -> Self {
        Self {
            interval_s: 300,
            recommender: RecommenderFamily::Embedding,
            embedding_dim: 64,
            embedding_epochs: 30,
            holdout_eval: true,
            history_days: 0,
            max_items: 2000,
            window: 50,
            shrinkage: 10,
            auto_promote: true,
            predictors: true,
            intent_min_sessions: 200,
            intent_min_ordered_sessions: 20,
            demand_min_days: 84,
            assistant: TrainerAssistantConfig::default(),
        }
    }
}

impl TrainerConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.range_because(
            "trainer.max_items",
            self.max_items,
            2..=100_000,
            "the model is a dense item-item matrix",
        );
        c.range("trainer.embedding_dim", self.embedding_dim, 2..=512);
        c.range("trainer.embedding_epochs", self.embedding_epochs, 1..=1000);
        c.at_least("trainer.window", self.window, 2);
        c.ensure(
            !self.assistant.enabled || !self.assistant.encoder_dir.trim().is_empty(),
            "trainer.assistant.encoder_dir",
            "must name the sentence encoder's directory when trainer.assistant.enabled is true",
        );
        c.at_least("trainer.intent_min_ordered_sessions", self.intent_min_ordered_sessions, 1);
        c.at_least_because(
            "trainer.demand_min_days",
            self.demand_min_days,
            71,
            "56 days of history, 14 of horizon and one more for calibration",
        );
    }
}
