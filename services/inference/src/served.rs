//! The recommender a tenant is served with: whichever family its active version is (the
//! manifest's `kind` decides at load), behind one interface for the recommend path.

use std::time::Instant;

use shopmind_onnx::read_manifest;
use shopmind_registry::RECOMMENDER;
use shopmind_serving::{CovisitRecommender, EmbeddingRecommender, ModelError, PoolOptions};
use shopmind_training::embedding::KIND as EMBEDDING;

use crate::live::{Prepare, Servable};
use crate::recommend::ann::{AnnIndex, AnnOptions};

/// A loaded recommender of either family.
#[derive(Debug)]
pub enum RecommenderModel {
    Covisit(CovisitRecommender),
    Embedding(ServedEmbedding),
}

/// An embedding model with, for a large catalog, the ANN index over its item embeddings.
#[derive(Debug)]
pub struct ServedEmbedding {
    pub model: EmbeddingRecommender,
    /// Built by [`build_ann`] when the model has at least `inference.ann_min_items` items.
    pub ann: Option<Box<AnnIndex>>,
}

impl std::ops::Deref for ServedEmbedding {
    type Target = EmbeddingRecommender;

    fn deref(&self) -> &EmbeddingRecommender {
        &self.model
    }
}

/// The preparation step of [`crate::Recommenders`]: builds the ANN index of an embedding model
/// of at least `options.min_items` items (on the load's blocking thread, before it serves).
pub fn build_ann(options: AnnOptions) -> Prepare<RecommenderModel> {
    std::sync::Arc::new(move |model| match model {
        RecommenderModel::Embedding(mut served) if served.model.len() >= options.min_items => {
            let started = Instant::now();
            served.ann = AnnIndex::build(
                served.model.item_embeddings(),
                served.model.item_bias(),
                served.model.dim(),
                &options,
            )
            .map(Box::new);
            tracing::info!(
                items = served.model.len(),
                built = served.ann.is_some(),
                ms = started.elapsed().as_millis() as u64,
                "ANN index over the item embeddings built"
            );
            Ok(RecommenderModel::Embedding(served))
        }
        other => Ok(other),
    })
}

impl RecommenderModel {
    pub fn version(&self) -> &str {
        match self {
            Self::Covisit(m) => &m.manifest().version,
            Self::Embedding(m) => &m.manifest().version,
        }
    }

    pub fn index_of(&self, item: &str) -> Option<usize> {
        match self {
            Self::Covisit(m) => m.index_of(item),
            Self::Embedding(m) => m.index_of(item),
        }
    }

    pub fn item(&self, idx: usize) -> Option<&str> {
        match self {
            Self::Covisit(m) => m.item(idx),
            Self::Embedding(m) => m.item(idx),
        }
    }

    /// The reason code of the items this model ranks.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Covisit(_) => "covisited",
            Self::Embedding(_) => "personalized",
        }
    }

    /// Whether a score says anything: co-visitation scores 0 for items never seen with the
    /// history; embedding scores are any real number.
    pub fn is_signal(&self, score: f32) -> bool {
        score.is_finite()
            && match self {
                Self::Covisit(_) => score > 0.0,
                Self::Embedding(_) => true,
            }
    }

    /// The batcher's counters.
    pub fn batch_stats(&self) -> shopmind_serving::BatchStats {
        match self {
            Self::Covisit(m) => m.batch_stats(),
            Self::Embedding(m) => m.batch_stats(),
        }
    }

    pub async fn score_until(
        &self,
        history: &[(usize, f32)],
        deadline: Option<Instant>,
    ) -> Result<Vec<f32>, ModelError> {
        match self {
            Self::Covisit(m) => m.score_until(history, deadline).await,
            Self::Embedding(m) => m.score_until(history, deadline).await,
        }
    }
}

#[async_trait::async_trait]
impl Servable for RecommenderModel {
    const MODEL: &'static str = RECOMMENDER;

    fn load(bytes: &[u8], options: &PoolOptions) -> Result<Self, ModelError> {
        if read_manifest(bytes)?.kind == EMBEDDING {
            EmbeddingRecommender::load(bytes, options)
                .map(|model| Self::Embedding(ServedEmbedding { model, ann: None }))
        } else {
            CovisitRecommender::load(bytes, options).map(Self::Covisit)
        }
    }

    async fn warm_up(&self) -> Result<(), ModelError> {
        match self {
            Self::Covisit(m) if m.is_empty() => Ok(()),
            // `score` checks the output's type and length.
            Self::Covisit(m) => m.score(&[(0, 1.0)]).await.map(drop),
            // One candidate: checks the outputs' types and shapes without scoring the catalog.
            Self::Embedding(m) => m.score_candidates_until(&[(0, 1.0)], &[0], None).await.map(drop),
        }
    }

    fn version(&self) -> &str {
        RecommenderModel::version(self)
    }

    fn tenant(&self) -> &str {
        match self {
            Self::Covisit(m) => &m.manifest().tenant,
            Self::Embedding(m) => &m.manifest().tenant,
        }
    }
}
