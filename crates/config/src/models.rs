//! `[models]`: what the model registry keeps.

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// Versions of each tenant's model the registry keeps (the newest ones); the active version
    /// and those a rollback can return to are kept as well.
    pub keep_versions: usize,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self { keep_versions: 10 }
    }
}

impl ModelsConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.range("models.keep_versions", self.keep_versions, 1..=1000);
    }
}
