//! What the trainers of interactions share when they read their input: ids interned in the order
//! they are first seen, and the input's count and time span.

use std::collections::HashMap;

use shopmind_onnx::TrainingStats;

/// Ids by index, in the order they were first seen: index `i` is `names[i]`.
#[derive(Debug, Default)]
pub(crate) struct Ids {
    index: HashMap<String, usize>,
    pub(crate) names: Vec<String>,
}

impl Ids {
    /// The index of `id`, and whether it is new (the next index, `names.len()` before the call).
    pub(crate) fn intern(&mut self, id: String) -> (usize, bool) {
        if let Some(&i) = self.index.get(&id) {
            return (i, false);
        }
        let i = self.names.len();
        self.index.insert(id.clone(), i);
        self.names.push(id);
        (i, true)
    }

    /// The ids by index, dropping the lookup table.
    pub(crate) fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// The number of interactions read and the earliest and latest of their times.
#[derive(Debug)]
pub(crate) struct InputSpan {
    interactions: u64,
    first: i64,
    last: i64,
}

impl Default for InputSpan {
    fn default() -> Self {
        Self { interactions: 0, first: i64::MAX, last: i64::MIN }
    }
}

impl InputSpan {
    pub(crate) fn observe(&mut self, at_ms: i64) {
        self.interactions += 1;
        self.first = self.first.min(at_ms);
        self.last = self.last.max(at_ms);
    }

    /// The stats of the input, with `users` distinct users; both times 0 without interactions.
    pub(crate) fn stats(&self, users: usize) -> TrainingStats {
        let (first_at_ms, last_at_ms) = if self.interactions > 0 { (self.first, self.last) } else { (0, 0) };
        TrainingStats { users: users as u64, interactions: self.interactions, first_at_ms, last_at_ms }
    }
}
