//! What the recommenders share: a model over the items its manifest lists, scoring through a
//! [`Batcher`] in front of its session pool. [`crate::CovisitRecommender`] and
//! [`crate::EmbeddingRecommender`] are an [`ItemRecommender`] of their family; each family adds
//! its loader and its scoring.

use std::collections::HashMap;
use std::sync::Arc;

use shopmind_onnx::Manifest;

use crate::batch::{BatchSpec, BatchStats, Batcher};
use crate::error::{ModelError, Result};
use crate::session_pool::{PoolOptions, SessionPool};

/// A recommender of one model family `F` (what the family's file adds besides the graph).
#[derive(Debug)]
pub struct ItemRecommender<F> {
    manifest: Manifest,
    index: HashMap<String, usize>,
    batcher: Batcher,
    family: F,
}

impl<F> ItemRecommender<F> {
    /// The recommender of a loaded pool: its requests are batched as `spec` and `opts.batch`
    /// say, under the metric label `name` (which also checks that the graph's inputs are those
    /// of `spec`).
    pub(crate) fn new(
        manifest: Manifest,
        index: HashMap<String, usize>,
        pool: SessionPool,
        (name, spec): (&'static str, BatchSpec),
        opts: &PoolOptions,
        family: F,
    ) -> Result<Self> {
        let batcher = Batcher::new(name, Arc::new(pool), spec, opts.batch)?;
        Ok(Self { manifest, index, batcher, family })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Number of items the model scores.
    pub fn len(&self) -> usize {
        self.manifest.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.items.is_empty()
    }

    pub fn index_of(&self, item: &str) -> Option<usize> {
        self.index.get(item).copied()
    }

    pub fn item(&self, index: usize) -> Option<&str> {
        self.manifest.items.get(index).map(String::as_str)
    }

    /// The session pool the model runs on (for runs that bypass the batcher).
    pub fn pool(&self) -> &Arc<SessionPool> {
        self.batcher.pool()
    }

    /// The batcher's counters.
    pub fn batch_stats(&self) -> BatchStats {
        self.batcher.stats()
    }

    /// Stops taking requests, finishes the queued ones; see [`Batcher::shutdown`].
    pub async fn shutdown(&self) {
        self.batcher.shutdown().await;
    }

    pub(crate) fn batcher(&self) -> &Batcher {
        &self.batcher
    }

    pub(crate) fn family(&self) -> &F {
        &self.family
    }

    /// [`ModelError::InvalidInput`] for the first item index out of range.
    pub(crate) fn check_items(&self, items: impl IntoIterator<Item = usize>) -> Result<()> {
        let n = self.len();
        match items.into_iter().find(|&i| i >= n) {
            Some(i) => Err(ModelError::InvalidInput(format!("item index {i} out of range for {n} items"))),
            None => Ok(()),
        }
    }
}

/// Item id -> index on the model's item axis, from the manifest; refuses repeated ids.
pub(crate) fn item_index(manifest: &Manifest) -> Result<HashMap<String, usize>> {
    let index: HashMap<String, usize> =
        manifest.items.iter().enumerate().map(|(i, item)| (item.clone(), i)).collect();
    if index.len() != manifest.items.len() {
        return Err(ModelError::InvalidModel("the manifest's item ids are not distinct".into()));
    }
    Ok(index)
}
