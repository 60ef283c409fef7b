//! The customer-service assistant of shopmind. For now: the intent classifier, a softmax head
//! on all-MiniLM-L6-v2 sentence embeddings ([`shopmind_encoder`]), trained on the project's own
//! labelled messages (`data/intents.jsonl`), exported to ONNX and served from ONNX Runtime.
//!
//! - [`data`]: the taxonomy ([`INTENTS`]), the training file format, the stratified split.
//! - [`head`]: training the head in plain Rust ([`fit`]), its ONNX export and [`HeadModel`].
//! - [`classifier`]: [`IntentClassifier`] (encoder + head + confidence threshold) and
//!   [`train_from_file`].
//! - [`evaluation`]: [`evaluate`], held-out accuracy, per-intent precision and recall, the
//!   confusion matrix and two baselines.
//! - [`engine`]: the conversation engine behind `Assist` ([`Assistant::respond`]): grounded
//!   answers from the customer's orders ([`grounding`]) and the tenant's FAQ ([`knowledge`]),
//!   conversation state in the feature store ([`conversation`]), escalation to the agents.
//!
//! See docs/ASSISTANT.md.

pub mod classifier;
pub mod conversation;
pub mod data;
pub mod engine;
mod error;
pub mod evaluation;
pub mod grounding;
pub mod head;
pub mod knowledge;

pub use classifier::{
    Classification, ClassifierConfig, IntentClassifier, decide, encode_all, train_from_file,
};
pub use conversation::{ConversationState, stored_text};
pub use data::{
    BUILTIN_DATA, Example, INTENTS, OUT_OF_SCOPE, load_examples, parse_examples, stratified_split,
};
pub use engine::{Action, Assistant, Citation, EscalationRequest, Escalator, Message, Reply};
pub use error::{AssistantError, Result};
pub use evaluation::{Report, evaluate, evaluate_embedded, evaluate_examples};
pub use head::{HeadConfig, HeadModel, HeadSpec, IntentHead, fit};
pub use knowledge::{FaqEntry, KnowledgeBase};
