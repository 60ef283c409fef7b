//! The registry inside one process: artifacts and active records in memory, for `shopmind
//! all-in-one` without NATS (whose events are in memory too: both start empty).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use shopmind_domain::TenantId;
use tokio::sync::mpsc;

use crate::{
    Active, ActiveChange, ChangeStream, ModelKey, ModelStore, RegistryError, Result, Revision, Version,
    VersionInfo, sort_versions,
};

/// An in-process [`ModelStore`]. Cloning shares the same registry.
#[derive(Clone, Default)]
pub struct MemoryModelStore {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    versions: BTreeMap<(ModelKey, Version), (VersionInfo, Bytes)>,
    active: BTreeMap<ModelKey, (Active, Revision)>,
    /// Revisions count up across all keys, like a stream sequence.
    revision: Revision,
    watchers: Vec<mpsc::UnboundedSender<ActiveChange>>,
}

impl MemoryModelStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl ModelStore for MemoryModelStore {
    async fn put(&self, mut info: VersionInfo, bytes: Bytes) -> Result<VersionInfo> {
        info.size = bytes.len() as u64;
        let mut state = self.state();
        let id = (info.key.clone(), info.version.clone());
        if state.versions.contains_key(&id) {
            return Err(RegistryError::VersionExists { key: id.0, version: id.1.to_string() });
        }
        state.versions.insert(id, (info.clone(), bytes));
        Ok(info)
    }

    async fn versions(&self, tenant: Option<&TenantId>) -> Result<Vec<VersionInfo>> {
        let state = self.state();
        let mut out: Vec<VersionInfo> = state
            .versions
            .values()
            .filter(|(info, _)| tenant.is_none_or(|t| &info.key.tenant == t))
            .map(|(info, _)| info.clone())
            .collect();
        sort_versions(&mut out);
        Ok(out)
    }

    async fn info(&self, key: &ModelKey, version: &Version) -> Result<Option<VersionInfo>> {
        Ok(self.state().versions.get(&(key.clone(), version.clone())).map(|(info, _)| info.clone()))
    }

    async fn get(&self, key: &ModelKey, version: &Version) -> Result<Bytes> {
        self.state()
            .versions
            .get(&(key.clone(), version.clone()))
            .map(|(_, b)| b.clone())
            .ok_or_else(|| RegistryError::UnknownVersion { key: key.clone(), version: version.to_string() })
    }

    async fn delete(&self, key: &ModelKey, version: &Version) -> Result<bool> {
        Ok(self.state().versions.remove(&(key.clone(), version.clone())).is_some())
    }

    async fn active_entry(&self, key: &ModelKey) -> Result<Option<(Active, Revision)>> {
        Ok(self.state().active.get(key).cloned())
    }

    async fn actives(&self, tenant: Option<&TenantId>) -> Result<Vec<(ModelKey, Active)>> {
        Ok(self
            .state()
            .active
            .iter()
            .filter(|(k, _)| tenant.is_none_or(|t| &k.tenant == t))
            .map(|(k, (a, _))| (k.clone(), a.clone()))
            .collect())
    }

    async fn compare_and_set_active(
        &self,
        key: &ModelKey,
        active: &Active,
        expected: Option<Revision>,
    ) -> Result<bool> {
        let mut state = self.state();
        if state.active.get(key).map(|(_, rev)| *rev) != expected {
            return Ok(false);
        }
        state.revision += 1;
        let revision = state.revision;
        state.active.insert(key.clone(), (active.clone(), revision));
        let change = ActiveChange { key: key.clone(), active: Some(active.clone()) };
        state.watchers.retain(|w| w.send(change.clone()).is_ok());
        Ok(true)
    }

    async fn watch(&self) -> Result<ChangeStream> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            // The snapshot and the subscription under one lock: no change falls in between.
            let mut state = self.state();
            for (key, (active, _)) in &state.active {
                let _ = tx.send(ActiveChange { key: key.clone(), active: Some(active.clone()) });
            }
            state.watchers.push(tx);
        }
        Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (Ok(c), rx)) }).boxed())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
