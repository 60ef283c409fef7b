//! The model registry: every trained model as an immutable, versioned artifact, and per
//! (tenant, model name) the version that is active — the one inference serves.
//!
//! [`ModelStore`] is what the trainer, inference and the `shopmind models` CLI ask of it:
//! [`put`](ModelStore::put) a new version, [`versions`](ModelStore::versions),
//! [`get`](ModelStore::get) its bytes, [`promote`](ModelStore::promote) one to active,
//! [`rollback`](ModelStore::rollback) to the previous active one, and
//! [`watch`](ModelStore::watch) the active versions change. [`NatsModelStore`] keeps it in NATS
//! JetStream (an object store bucket and a key-value bucket); [`MemoryModelStore`] inside one
//! process, for `shopmind all-in-one` without NATS. Both pass `tests/conformance.rs`.
//!
//! # Layout
//!
//! | what | where (NATS) | name |
//! |---|---|---|
//! | artifacts (ONNX bytes) | object store bucket [`OBJECT_BUCKET`] (`SM_MODELS`) | `<tenant>/<model>/<version>` |
//! | what the registry knows of a version | the object's metadata | `kind`, `created_at_ms`, `items`, `users`, `interactions` |
//! | active version | key-value bucket [`ACTIVE_BUCKET`] (`SM_MODELS_ACTIVE`) | key `<tenant>.<model>`, value [`Active`] as JSON |
//!
//! Tenants and model names are `[a-z0-9_-]{1,64}` (a token of a subject, a valid key-value key
//! part); versions are `[A-Za-z0-9_.-]{1,128}` not starting with `.` (they appear in object names
//! and in `shopmind models` commands). The active record carries the versions that were active
//! before it (newest first, at most [`MAX_PREVIOUS`]), so a rollback is one compare-and-set on
//! one key; the key-value bucket keeps [`ACTIVE_HISTORY`] revisions of each key as an audit trail.
//!
//! An artifact is self-describing: the manifest inside the ONNX file names the tenant, model,
//! kind and version, and whoever puts a version describes it from that manifest (the trainer:
//! `shopmind_trainer::version_info`); the registry keeps that summary next to the bytes, so
//! listing versions reads no artifact. The registry does not parse artifacts: it stores bytes,
//! whatever the model kind.

mod memory;
mod nats;

use std::fmt;

use bytes::Bytes;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use shopmind_domain::TenantId;

pub use memory::MemoryModelStore;
pub use nats::NatsModelStore;

/// The object store bucket of model artifacts.
pub const OBJECT_BUCKET: &str = "SM_MODELS";
/// The key-value bucket of active versions.
pub const ACTIVE_BUCKET: &str = "SM_MODELS_ACTIVE";
/// Revisions of each active-version key the key-value bucket keeps.
pub const ACTIVE_HISTORY: i64 = 16;
/// Previously active versions an [`Active`] record remembers for rollbacks.
pub const MAX_PREVIOUS: usize = 16;
/// The model name of the recommender.
pub const RECOMMENDER: &str = "recommender";
/// The model name of the purchase-intent model (`shopmind_training::purchase_intent`).
pub const INTENT: &str = "intent";
/// The model name of the demand forecaster (`shopmind_training::demand`).
pub const DEMAND: &str = "demand";
/// The model name of the customer-service assistant's intent classifier head
/// (`shopmind_assistant::IntentHead`, run on the sentence encoder's embeddings).
pub const INTENT_HEAD: &str = "intent_head";

/// Longest model name, in bytes.
pub const MAX_MODEL_NAME_LEN: usize = 64;
/// Longest version, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName { what: &'static str, value: String, why: String },
    #[error("{key} has no version {version:?}")]
    UnknownVersion { key: ModelKey, version: String },
    #[error("{key} already has a version {version:?} (versions are immutable)")]
    VersionExists { key: ModelKey, version: String },
    #[error("{key} has no active version")]
    NothingActive { key: ModelKey },
    #[error("{key} has no previous active version to roll back to")]
    NoPrevious { key: ModelKey },
    #[error("the active version of {key} kept changing; try again")]
    Contention { key: ModelKey },
    #[error("corrupt registry entry {name:?}: {why}")]
    Corrupt { name: String, why: String },
    #[error("connecting to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("nats: {0}")]
    Nats(String),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

fn check_name(
    what: &'static str,
    s: &str,
    max: usize,
    ok: impl Fn(char) -> bool,
    allowed: &str,
) -> Result<()> {
    let bad = |why: String| Err(RegistryError::InvalidName { what, value: s.to_string(), why });
    if s.is_empty() {
        return bad("must not be empty".into());
    }
    if s.len() > max {
        return bad(format!("must be at most {max} bytes, got {}", s.len()));
    }
    match s.chars().find(|c| !ok(*c)) {
        Some(c) => bad(format!("contains {c:?}; allowed: {allowed}")),
        None => Ok(()),
    }
}

/// A model's role, e.g. `recommender`: `[a-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName(String);

impl ModelName {
    pub fn parse(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        check_name(
            "model name",
            &s,
            MAX_MODEL_NAME_LEN,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
            "lowercase ASCII letters, digits, '-' and '_'",
        )?;
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A model version: `[A-Za-z0-9_.-]{1,128}`, not starting with `.`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

impl Version {
    pub fn parse(s: impl Into<String>) -> Result<Self> {
        let s = s.into();
        check_name(
            "version",
            &s,
            MAX_VERSION_LEN,
            |c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.',
            "ASCII letters, digits, '-', '_' and '.'",
        )?;
        if s.starts_with('.') {
            return Err(RegistryError::InvalidName {
                what: "version",
                value: s,
                why: "must not start with '.'".into(),
            });
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Version {
    type Error = RegistryError;
    fn try_from(s: String) -> Result<Self> {
        Self::parse(s)
    }
}

impl From<Version> for String {
    fn from(v: Version) -> String {
        v.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One model of one tenant: the unit that has versions and an active one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelKey {
    pub tenant: TenantId,
    pub model: ModelName,
}

impl ModelKey {
    pub fn new(tenant: TenantId, model: ModelName) -> Self {
        Self { tenant, model }
    }

    /// From strings, validating both.
    pub fn parse(tenant: &str, model: &str) -> Result<Self> {
        let tenant = TenantId::parse(tenant).map_err(|e| RegistryError::InvalidName {
            what: "tenant",
            value: tenant.to_string(),
            why: e.to_string(),
        })?;
        Ok(Self { tenant, model: ModelName::parse(model)? })
    }

    /// The key of the active version in [`ACTIVE_BUCKET`]: `<tenant>.<model>`.
    pub fn active_key(&self) -> String {
        format!("{}.{}", self.tenant, self.model)
    }

    /// The inverse of [`ModelKey::active_key`].
    pub fn from_active_key(key: &str) -> Result<Self> {
        let corrupt = |why: &str| RegistryError::Corrupt { name: key.to_string(), why: why.to_string() };
        let (tenant, model) = key.split_once('.').ok_or_else(|| corrupt("not <tenant>.<model>"))?;
        Self::parse(tenant, model).map_err(|e| corrupt(&e.to_string()))
    }

    /// The name of a version's artifact in [`OBJECT_BUCKET`]: `<tenant>/<model>/<version>`.
    pub fn object_name(&self, version: &Version) -> String {
        format!("{}/{}/{version}", self.tenant, self.model)
    }

    /// The inverse of [`ModelKey::object_name`].
    pub fn from_object_name(name: &str) -> Result<(Self, Version)> {
        let corrupt = |why: &str| RegistryError::Corrupt { name: name.to_string(), why: why.to_string() };
        let mut parts = name.splitn(3, '/');
        let (Some(tenant), Some(model), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(corrupt("not <tenant>/<model>/<version>"));
        };
        let key = Self::parse(tenant, model).map_err(|e| corrupt(&e.to_string()))?;
        let version = Version::parse(version).map_err(|e| corrupt(&e.to_string()))?;
        Ok((key, version))
    }
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of tenant {}", self.model, self.tenant)
    }
}

/// What the registry knows of a version without reading its artifact (from its manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub key: ModelKey,
    pub version: Version,
    /// The model family, e.g. `covisit`.
    pub kind: String,
    pub created_at_ms: i64,
    /// Items the model covers.
    pub items: u64,
    /// Users and interactions it was trained on.
    pub users: u64,
    pub interactions: u64,
    /// Size of the artifact in bytes (set by the store).
    pub size: u64,
}

impl VersionInfo {
    /// The object metadata the summary is kept in.
    pub(crate) fn to_metadata(&self) -> std::collections::HashMap<String, String> {
        [
            ("kind", self.kind.clone()),
            ("created_at_ms", self.created_at_ms.to_string()),
            ("items", self.items.to_string()),
            ("users", self.users.to_string()),
            ("interactions", self.interactions.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub(crate) fn from_metadata(
        name: &str,
        size: u64,
        meta: &std::collections::HashMap<String, String>,
    ) -> Result<Self> {
        let (key, version) = ModelKey::from_object_name(name)?;
        let corrupt = |field: &str| RegistryError::Corrupt {
            name: name.to_string(),
            why: format!("metadata `{field}` missing or not a number"),
        };
        let number =
            |field: &str| meta.get(field).and_then(|v| v.parse::<i64>().ok()).ok_or_else(|| corrupt(field));
        let count =
            |field: &str| meta.get(field).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| corrupt(field));
        Ok(Self {
            key,
            version,
            kind: meta.get("kind").cloned().unwrap_or_default(),
            created_at_ms: number("created_at_ms")?,
            items: count("items")?,
            users: count("users")?,
            interactions: count("interactions")?,
            size,
        })
    }
}

/// The active version of a model, and the ones active before it (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub version: Version,
    #[serde(default)]
    pub previous: Vec<Version>,
    /// When it became active (ms since the Unix epoch).
    pub since_ms: i64,
}

impl Active {
    pub(crate) fn to_json(&self) -> Bytes {
        // Serializing strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub(crate) fn from_json(name: &str, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes)
            .map_err(|e| RegistryError::Corrupt { name: name.to_string(), why: e.to_string() })
    }
}

/// A change of a model's active version; `active` is None when the key was removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveChange {
    pub key: ModelKey,
    pub active: Option<Active>,
}

pub type ChangeStream = BoxStream<'static, Result<ActiveChange>>;

/// The revision of an active-version key, for compare-and-set.
pub type Revision = u64;

/// Times promote and rollback retry a compare-and-set that lost a race.
const CAS_ATTEMPTS: usize = 16;

fn now_ms() -> i64 {
    shopmind_domain::UnixMillis::now().0
}

#[async_trait::async_trait]
pub trait ModelStore: Send + Sync + 'static {
    /// Stores a new version. Versions are immutable: a second put of the same version is
    /// [`RegistryError::VersionExists`]. Returns the info as stored (with its size).
    async fn put(&self, info: VersionInfo, bytes: Bytes) -> Result<VersionInfo>;

    /// Every version, of one tenant or all; ordered by tenant, model, creation time, version.
    async fn versions(&self, tenant: Option<&TenantId>) -> Result<Vec<VersionInfo>>;

    /// One version's info, if it exists.
    async fn info(&self, key: &ModelKey, version: &Version) -> Result<Option<VersionInfo>>;

    /// A version's artifact; [`RegistryError::UnknownVersion`] if there is none.
    async fn get(&self, key: &ModelKey, version: &Version) -> Result<Bytes>;

    /// Removes a version's artifact (not checking whether it is or was active; see [`prune`]).
    /// False if it did not exist.
    async fn delete(&self, key: &ModelKey, version: &Version) -> Result<bool>;

    /// The active record of a model and its revision.
    async fn active_entry(&self, key: &ModelKey) -> Result<Option<(Active, Revision)>>;

    /// Every model's active record, of one tenant or all; ordered by key.
    async fn actives(&self, tenant: Option<&TenantId>) -> Result<Vec<(ModelKey, Active)>>;

    /// Sets the active record if the key is still at `expected` (None: the key does not exist).
    /// False if it changed in between (nothing was written).
    async fn compare_and_set_active(
        &self,
        key: &ModelKey,
        active: &Active,
        expected: Option<Revision>,
    ) -> Result<bool>;

    /// The current active record of every model, then every change, as they happen.
    async fn watch(&self) -> Result<ChangeStream>;

    /// "nats" or "memory", for logs.
    fn kind(&self) -> &'static str;

    /// The active version of a model.
    async fn active(&self, key: &ModelKey) -> Result<Option<Active>> {
        Ok(self.active_entry(key).await?.map(|(a, _)| a))
    }

    /// Makes `version` the active one; the one active before is remembered for rollbacks.
    /// Promoting the active version changes nothing.
    async fn promote(&self, key: &ModelKey, version: &Version) -> Result<Active> {
        if self.info(key, version).await?.is_none() {
            return Err(RegistryError::UnknownVersion { key: key.clone(), version: version.to_string() });
        }
        for _ in 0..CAS_ATTEMPTS {
            let current = self.active_entry(key).await?;
            let next = match &current {
                Some((active, _)) if &active.version == version => return Ok(active.clone()),
                Some((active, _)) => {
                    let mut previous = Vec::with_capacity(MAX_PREVIOUS);
                    previous.push(active.version.clone());
                    previous.extend(active.previous.iter().filter(|v| *v != version).cloned());
                    previous.truncate(MAX_PREVIOUS);
                    Active { version: version.clone(), previous, since_ms: now_ms() }
                }
                None => Active { version: version.clone(), previous: Vec::new(), since_ms: now_ms() },
            };
            if self.compare_and_set_active(key, &next, current.map(|(_, rev)| rev)).await? {
                return Ok(next);
            }
        }
        Err(RegistryError::Contention { key: key.clone() })
    }

    /// Makes the previously active version the active one again; the one rolled back from is
    /// dropped from the record (a second rollback goes one further back).
    async fn rollback(&self, key: &ModelKey) -> Result<Active> {
        for _ in 0..CAS_ATTEMPTS {
            let Some((current, rev)) = self.active_entry(key).await? else {
                return Err(RegistryError::NothingActive { key: key.clone() });
            };
            let Some((target, rest)) = current.previous.split_first() else {
                return Err(RegistryError::NoPrevious { key: key.clone() });
            };
            if self.info(key, target).await?.is_none() {
                return Err(RegistryError::UnknownVersion { key: key.clone(), version: target.to_string() });
            }
            let next = Active { version: target.clone(), previous: rest.to_vec(), since_ms: now_ms() };
            if self.compare_and_set_active(key, &next, Some(rev)).await? {
                return Ok(next);
            }
        }
        Err(RegistryError::Contention { key: key.clone() })
    }
}

/// Deletes the versions of `key` beyond the newest `keep`, except the active one and those a
/// rollback can return to. Returns the deleted versions.
pub async fn prune(store: &dyn ModelStore, key: &ModelKey, keep: usize) -> Result<Vec<Version>> {
    let active = store.active(key).await?;
    let referenced = |v: &Version| active.as_ref().is_some_and(|a| &a.version == v || a.previous.contains(v));
    let mut versions: Vec<VersionInfo> =
        store.versions(Some(&key.tenant)).await?.into_iter().filter(|i| &i.key == key).collect();
    // Newest first.
    versions.sort_by(|a, b| b.created_at_ms.cmp(&a.created_at_ms).then(b.version.cmp(&a.version)));
    let mut deleted = Vec::new();
    for info in versions.into_iter().skip(keep) {
        if !referenced(&info.version) && store.delete(key, &info.version).await? {
            deleted.push(info.version);
        }
    }
    Ok(deleted)
}

/// Orders versions by tenant, model, creation time, version.
pub(crate) fn sort_versions(versions: &mut [VersionInfo]) {
    versions.sort_by(|a, b| {
        a.key.cmp(&b.key).then(a.created_at_ms.cmp(&b.created_at_ms)).then(a.version.cmp(&b.version))
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(ModelName::parse("recommender").is_ok());
        assert!(ModelName::parse("purchase_intent-2").is_ok());
        for bad in ["", "Recommender", "a.b", "a b", "a/b", "a*", &"x".repeat(65)] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Version::parse("covisit-1700000000000-s42").is_ok());
        assert!(Version::parse("v1.2_RC").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", "a>b", "a*", &"x".repeat(129)] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ModelKey::parse("Acme", "recommender").is_err());
        assert!(ModelKey::parse("acme", "recommender").is_ok());
    }

    #[test]
    fn keys_and_object_names_round_trip() {
        let key = ModelKey::parse("acme", "recommender").unwrap();
        assert_eq!(key.active_key(), "acme.recommender");
        assert_eq!(ModelKey::from_active_key("acme.recommender").unwrap(), key);
        let v = Version::parse("v1.5").unwrap();
        assert_eq!(key.object_name(&v), "acme/recommender/v1.5");
        assert_eq!(ModelKey::from_object_name("acme/recommender/v1.5").unwrap(), (key, v));
        assert!(ModelKey::from_object_name("acme/recommender").is_err());
        assert!(ModelKey::from_active_key("acme").is_err());
    }

    #[test]
    fn metadata_round_trips() {
        let info = VersionInfo {
            key: ModelKey::parse("acme", "recommender").unwrap(),
            version: Version::parse("v1").unwrap(),
            kind: "covisit".into(),
            created_at_ms: 1_700_000_000_000,
            items: 10,
            users: 3,
            interactions: 42,
            size: 99,
        };
        let back = VersionInfo::from_metadata("acme/recommender/v1", 99, &info.to_metadata()).unwrap();
        assert_eq!(back, info);
        let mut meta = info.to_metadata();
        meta.remove("users");
        assert!(matches!(
            VersionInfo::from_metadata("acme/recommender/v1", 99, &meta),
            Err(RegistryError::Corrupt { .. })
        ));
    }

    #[test]
    fn active_records_read_back() {
        let a = Active {
            version: Version::parse("v2").unwrap(),
            previous: vec![Version::parse("v1").unwrap()],
            since_ms: 5,
        };
        assert_eq!(Active::from_json("k", &a.to_json()).unwrap(), a);
        assert!(Active::from_json("k", br#"{"version":"../x","since_ms":1}"#).is_err());
    }
}
