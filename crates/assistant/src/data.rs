//! The labelled messages: the taxonomy, reading `{"text", "intent"}` lines, the stratified split.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{AssistantError, Result};

/// The intents, in the order of the head's outputs.
pub const INTENTS: [&str; 12] = [
    "order_status",
    "cancel_order",
    "return_request",
    "refund_status",
    "shipping_info",
    "payment_issue",
    "product_question",
    "account_help",
    "complaint",
    "human_agent",
    "greeting",
    "out_of_scope",
];

/// The intent given to messages the assistant cannot serve, and to low-confidence predictions.
pub const OUT_OF_SCOPE: &str = "out_of_scope";

/// The project's own training messages (`crates/assistant/data/intents.jsonl`), built in.
pub const BUILTIN_DATA: &str = include_str!("../data/intents.jsonl");

/// One labelled customer message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Example {
    pub text: String,
    pub intent: String,
}

/// Index of `intent` in [`INTENTS`].
pub fn intent_index(intent: &str) -> Option<usize> {
    INTENTS.iter().position(|i| *i == intent)
}

/// Parses JSON lines (blank lines skipped); every intent must be one of [`INTENTS`] and every
/// text non-empty.
pub fn parse_examples(jsonl: &str) -> Result<Vec<Example>> {
    let mut out = Vec::new();
    for (n, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        let ex: Example = serde_json::from_str(line)
            .map_err(|e| AssistantError::Data { line: line_no, message: e.to_string() })?;
        if intent_index(&ex.intent).is_none() {
            return Err(AssistantError::Data {
                line: line_no,
                message: format!("unknown intent `{}`", ex.intent),
            });
        }
        if ex.text.trim().is_empty() {
            return Err(AssistantError::Data { line: line_no, message: "empty text".into() });
        }
        out.push(ex);
    }
    Ok(out)
}

/// [`parse_examples`] of a file.
pub fn load_examples(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| AssistantError::Io { path: path.to_path_buf(), source })?;
    parse_examples(&text)
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash_text(seed: u64, s: &str) -> u64 {
    s.bytes().fold(splitmix(seed), |h, b| splitmix(h ^ u64::from(b)))
}

/// A stratified split: within each intent, examples are ordered by a hash of (`seed`, text,
/// position) and the first `round(fraction * n)` (at least 1 when the intent has 2 or more) go
/// to the held-out set. Returns (train, held-out) indices into `examples`, each ascending.
pub fn stratified_split(examples: &[Example], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut train = Vec::new();
    let mut held_out = Vec::new();
    for intent in INTENTS {
        let mut idx: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].intent == intent).collect();
        idx.sort_by_key(|&i| (hash_text(seed ^ i as u64, &examples[i].text), i));
        let n = idx.len();
        let mut k = (fraction.clamp(0.0, 1.0) * n as f64).round() as usize;
        if n >= 2 {
            k = k.clamp(1, n - 1);
        }
        held_out.extend_from_slice(&idx[..k.min(n)]);
        train.extend_from_slice(&idx[k.min(n)..]);
    }
    train.sort_unstable();
    held_out.sort_unstable();
    (train, held_out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn builtin_data_covers_the_taxonomy() {
        let examples = parse_examples(BUILTIN_DATA).unwrap();
        for intent in INTENTS {
            let n = examples.iter().filter(|e| e.intent == intent).count();
            assert!(n >= 40, "{intent}: {n} examples");
        }
        let mut texts: Vec<String> = examples.iter().map(|e| e.text.to_lowercase()).collect();
        texts.sort();
        texts.dedup();
        assert_eq!(texts.len(), examples.len(), "duplicate texts");
    }

    #[test]
    fn unknown_intents_are_rejected_with_the_line() {
        let err = parse_examples(
            "{\"text\":\"hi\",\"intent\":\"greeting\"}\n\n{\"text\":\"x\",\"intent\":\"nope\"}",
        )
        .unwrap_err();
        assert!(matches!(err, AssistantError::Data { line: 3, .. }), "{err}");
    }

    #[test]
    fn the_split_is_stratified_disjoint_and_seeded() {
        let examples = parse_examples(BUILTIN_DATA).unwrap();
        let (train, held) = stratified_split(&examples, 0.25, 7);
        assert_eq!(train.len() + held.len(), examples.len());
        assert!(train.iter().all(|i| !held.contains(i)));
        for intent in INTENTS {
            let total = examples.iter().filter(|e| e.intent == intent).count();
            let h = held.iter().filter(|&&i| examples[i].intent == intent).count();
            assert_eq!(h, (total as f64 * 0.25).round() as usize, "{intent}");
        }
        assert_eq!(stratified_split(&examples, 0.25, 7), (train.clone(), held.clone()));
        assert_ne!(stratified_split(&examples, 0.25, 8).1, held);
    }
}
