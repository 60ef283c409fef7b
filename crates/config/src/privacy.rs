//! `[privacy]`: redaction, pseudonymous customer ids and per-tenant retention.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::check::Checks;

/// Privacy at the edge (docs/PRIVACY.md): PII redaction of free text, pseudonymous customer
/// ids, per-tenant retention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Mask emails, phone numbers, card numbers, IBANs, addresses, ... in support messages and
    /// search queries before events are published (and in dead letters).
    pub redact: bool,
    /// A file holding the secret key of pseudonymous ids (HMAC-SHA256; its bytes, trailing
    /// whitespace removed). Required when a tenant sets `pseudonymize`. Never logged.
    pub secret_file: String,
    /// Per-tenant settings: `[privacy.tenants.<tenant>]`.
    pub tenants: BTreeMap<String, TenantPrivacy>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self { redact: true, secret_file: String::new(), tenants: BTreeMap::new() }
    }
}

/// One tenant's privacy settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TenantPrivacy {
    /// Replace the shop's customer ids by keyed hashes at ingest (`privacy.secret_file`).
    pub pseudonymize: bool,
    /// Raw events older than this many days are deleted from the streams by
    /// `shopmind privacy sweep`; 0: only the streams' own limits apply.
    pub events_max_age_days: u32,
    /// Conversations older than this many days are deleted by `shopmind privacy sweep`
    /// (and expire in the store); 0: no limit of their own.
    pub conversations_max_age_days: u32,
}

impl PrivacyConfig {
    /// The settings of `tenant` (the defaults when it has none).
    pub fn tenant(&self, tenant: &str) -> TenantPrivacy {
        self.tenants.get(tenant).cloned().unwrap_or_default()
    }

    /// Reads the pseudonymisation secret from `secret_file`: None when no file is set.
    pub fn read_secret(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        if self.secret_file.is_empty() {
            return Ok(None);
        }
        let bytes = std::fs::read(&self.secret_file).map_err(|e| ConfigError::Invalid {
            key: "privacy.secret_file".into(),
            reason: format!("cannot read {}: {e}", self.secret_file),
        })?;
        let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(0, |i| i + 1);
        if end < 16 {
            return Err(ConfigError::Invalid {
                key: "privacy.secret_file".into(),
                reason: "the secret must be at least 16 bytes".into(),
            });
        }
        Ok(Some(bytes[..end].to_vec()))
    }
}

impl PrivacyConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        for (tenant, settings) in &self.tenants {
            c.tenant_tables("privacy", [tenant]);
            if settings.pseudonymize && self.secret_file.is_empty() {
                c.fail(
                    "privacy.secret_file",
                    format!("must be set: tenant {tenant:?} pseudonymises customer ids"),
                );
            }
        }
        if self.tenants.values().any(|p| p.pseudonymize)
            && let Err(problem) = self.read_secret()
        {
            c.report(problem);
        }
    }
}
