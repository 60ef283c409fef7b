//! `sm.rpc.<tenant>.inference.recommend`: recommendations for a scenario, in two stages.
//!
//! **Stage 1, candidates.** The user's context is read in one store round trip (recent
//! interactions, purchases, cart, category affinity, the tenant's and a category's popular items),
//! then the co-visitation and co-purchase neighbours of the seed items (recent items, anchors or
//! cart items) and the newest catalog items of the relevant categories in a second. The tenant's
//! model adds its own candidates: an embedding model's user vector (the weighted mean of the
//! history embeddings, computed in Rust exactly as the graph's `user_vectors`) is searched in the
//! version's ANN index ([`ann`], built at load for catalogs of at least `inference.ann_min_items`
//! items), and ONNX Runtime then scores only those candidates and the neighbours the model knows
//! (the graph's `candidate_items` input); below that size every item is a candidate (brute
//! force). Co-visitation models rank every item they score.
//!
//! **Stage 2, ranking.** The candidates' catalog entries (category, price, stock; popularity when
//! a candidate ranks by trend) are read in a third round trip (without filters, only of the
//! candidates the page can show: `trim_to_page`). Model candidates are ranked by the ONNX scores
//! (`u · P_j + b_j` for an embedding model); an item the model does not know yet (a new catalog item) takes the
//! score of the best-ranked model item of its leaf category, so it is recommendable before it has
//! interactions; items only neighbours know follow, then new items without a ranked peer, then
//! trending/popular fill. Filters, the per-category diversity cap and paging come last.
//!
//! **The path in code.** The wire request is checked into a [`Query`] at the edge
//! (`Query::try_from`, [`request`]); [`Recommender::recommendations`] then runs named stages on
//! it: `resolve_context` (the first round trip, the anchors' check, the fill read again where it
//! falls short), `gather_candidates` (the neighbours' round trip and every source's offers into
//! one pool), `rank_candidates` (the catalog round trip, filters, the order),
//! `diversified_page` (the page under the per-category cap) and `explain_page` (reasons, the
//! model's version, the next page's token). It answers [`Recommendations`] ([`response`]), which
//! become a `RecommendResponse`, and errors their wire form, at the edge again
//! ([`Recommender::recommend`]).
//!
//! Scenarios, filters, reason codes and paging are described in docs/RECOMMEND.md.

pub mod ann;
pub mod request;
pub mod response;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use shopmind_bus::BusError;
use shopmind_config::Config;
use shopmind_domain::{Interaction, InteractionKind, ItemId, UnixMillis};
use shopmind_features::{
    CatalogEntry, CatalogParts, ContextQuery, FeatureSettings, Neighbours, RecommendContext, SeedNeighbours,
    category_levels, read_catalog_entries, read_category_popular, read_neighbours, read_popular,
    read_recommend_context,
};
use shopmind_metrics::{Success, global as metrics};
use shopmind_proto::v1 as pb;
use shopmind_runtime::rpc::{self, WireError, methods};
use shopmind_store::FeatureStore;

use self::request::{Query, Scenario};
use self::response::{Reason, Recommendation, Recommendations};
use crate::{InferenceError, RecommenderModel, Recommenders, ServedEmbedding};

/// How much an interaction of this kind says about the user's taste (co-visitation models).
fn kind_weight(kind: InteractionKind) -> f32 {
    match kind {
        InteractionKind::View => 1.0,
        InteractionKind::Cart => 2.0,
        InteractionKind::Purchase => 3.0,
    }
}

/// Each step back in the history counts this much less than the one after it (co-visitation
/// models; embedding models use the weighting they were trained with).
const RECENCY_DECAY: f32 = 0.85;

/// Categories of the user's affinity whose newest items are candidates.
const AFFINITY_CATEGORIES: usize = 3;

/// The candidate tiers, best first: within a tier, the larger key ranks first.
const MODEL: u8 = 0;
const PRIMARY: u8 = 1;
const SECONDARY: u8 = 2;
const NEW: u8 = 3;
const FILL: u8 = 4;

/// The knobs of the recommend path (`inference.*`).
#[derive(Debug, Clone)]
pub struct RecommendSettings {
    pub history_len: usize,
    pub candidate_pool: usize,
    pub neighbour_seeds: usize,
    pub neighbours_per_seed: usize,
    pub trending_pool: usize,
    pub affinity_half_life: std::time::Duration,
}

impl RecommendSettings {
    pub fn from_config(c: &Config) -> Self {
        Self {
            history_len: c.inference.history_len,
            candidate_pool: c.inference.candidate_pool,
            neighbour_seeds: c.inference.neighbour_seeds,
            neighbours_per_seed: c.inference.neighbours_per_seed,
            trending_pool: c.inference.trending_pool,
            affinity_half_life: FeatureSettings::from_config(&c.feature).affinity_half_life,
        }
    }
}

/// Answers recommend requests from the store and the model registry.
pub struct Recommender {
    store: Arc<dyn FeatureStore>,
    models: Arc<Recommenders>,
    settings: RecommendSettings,
}

/// A candidate of one request.
#[derive(Debug, Clone)]
struct Candidate {
    tier: u8,
    key: f64,
    /// Breaks ties of `key` (all-time popularity of trending items).
    key2: f64,
    score: f32,
    reason: &'static str,
    reasons: Vec<Reason>,
    /// Where the key comes from the item's trending score (read with the catalog entries).
    by_trending: bool,
}

/// The candidates of one request, in the order they were first offered.
#[derive(Debug, Default)]
struct Pool {
    order: Vec<ItemId>,
    map: HashMap<ItemId, Candidate>,
}

impl Pool {
    /// Offers `item`: a better (tier, key) than it had replaces its rank and main reason; `why`
    /// is added to its reasons either way.
    fn offer(&mut self, item: &ItemId, c: Candidate, why: Option<Reason>) {
        match self.map.get_mut(item) {
            Some(have) => {
                if c.tier < have.tier || (c.tier == have.tier && c.key > have.key) {
                    let reasons = std::mem::take(&mut have.reasons);
                    *have = Candidate { reasons, ..c };
                }
                if let Some(why) = why
                    && !have.reasons.contains(&why)
                {
                    have.reasons.push(why);
                }
            }
            None => {
                self.order.push(item.clone());
                let mut c = c;
                c.reasons.extend(why);
                self.map.insert(item.clone(), c);
            }
        }
    }
}

fn candidate(tier: u8, key: f64, score: f32, reason: &'static str) -> Candidate {
    Candidate { tier, key, key2: 0.0, score, reason, reasons: Vec::new(), by_trending: false }
}

/// The order of reasons in an explanation: what the user did first, then the catalog's news,
/// then what is popular.
fn importance(code: &str) -> u8 {
    match code {
        "purchased" | "carted" | "viewed" => 0,
        "similar_to" | "bought_with" => 1,
        "trending_in_category" => 2,
        "new_in_category" => 3,
        "trending" => 4,
        "popular" => 5,
        _ => 6,
    }
}

fn interaction_code(kind: InteractionKind) -> &'static str {
    match kind {
        InteractionKind::View => "viewed",
        InteractionKind::Cart => "carted",
        InteractionKind::Purchase => "purchased",
    }
}

/// The user's recent interactions as (model index, weight), newest weighing most
/// (co-visitation models).
pub(crate) fn weighted_history(
    recent: &[Interaction],
    index_of: impl Fn(&str) -> Option<usize>,
) -> Vec<(usize, f32)> {
    let mut weight = 1.0f32;
    let mut history = Vec::with_capacity(recent.len());
    for i in recent {
        if let Some(idx) = index_of(i.item.as_str()) {
            history.push((idx, weight * kind_weight(i.kind)));
        }
        weight *= RECENCY_DECAY;
    }
    history
}

/// The items of page `page` (indexes into `leaves`, which holds each ranked item's leaf category)
/// when pages hold `limit` items and at most `cap` of one leaf category (0: no cap); items a page
/// has no room for move on to the next. Also whether pages follow.
fn page_of(leaves: &[Option<&str>], limit: usize, cap: usize, page: usize) -> (Vec<usize>, bool) {
    let mut remaining: Vec<usize> = (0..leaves.len()).collect();
    let mut p = 0;
    loop {
        let mut taken = Vec::with_capacity(limit);
        let mut rest = Vec::new();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in remaining {
            let fits = taken.len() < limit
                && match leaves[i] {
                    Some(leaf) if cap > 0 => counts.get(leaf).copied().unwrap_or(0) < cap,
                    _ => true,
                };
            if fits {
                if let Some(leaf) = leaves[i] {
                    *counts.entry(leaf).or_default() += 1;
                }
                taken.push(i);
            } else {
                rest.push(i);
            }
        }
        if p == page || rest.is_empty() {
            return if p == page { (taken, !rest.is_empty()) } else { (Vec::new(), false) };
        }
        remaining = rest;
        p += 1;
    }
}

impl Recommender {
    pub fn new(store: Arc<dyn FeatureStore>, models: Arc<Recommenders>, history_len: usize) -> Self {
        let mut settings = RecommendSettings::from_config(&Config::default());
        settings.history_len = history_len;
        Self::with_settings(store, models, settings)
    }

    pub fn with_settings(
        store: Arc<dyn FeatureStore>,
        models: Arc<Recommenders>,
        settings: RecommendSettings,
    ) -> Self {
        Self { store, models, settings }
    }

    /// The recommendations of a wire request: the protocol edge, where the request is checked
    /// into a [`Query`] and the answer and its errors take their wire form.
    pub async fn recommend(
        &self,
        req: &pb::RecommendRequest,
    ) -> Result<pb::RecommendResponse, pb::ServiceError> {
        self.recommend_until(req, None).await
    }

    /// [`Recommender::recommend`] for a caller that waits until `deadline`: the model does not
    /// score the request once it has passed.
    pub async fn recommend_until(
        &self,
        req: &pb::RecommendRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::RecommendResponse, pb::ServiceError> {
        self.answer(req, deadline).await.map_err(WireError::into_wire)
    }

    async fn answer(
        &self,
        req: &pb::RecommendRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::RecommendResponse, InferenceError> {
        let query = Query::try_from(req)?;
        Ok(self.recommendations(&query, deadline).await?.into())
    }

    /// The page of recommendations `q` asks for, in stages: the user's context, the candidates
    /// of every source, their rank (filtered), the page (diversified), its explanation.
    pub async fn recommendations(
        &self,
        q: &Query,
        deadline: Option<Instant>,
    ) -> Result<Recommendations, InferenceError> {
        let now = UnixMillis::now();
        let plan = Plan::of(q, &self.settings);
        let context = self.resolve_context(q, &plan, now).await?;
        let latest = latest_interactions(&context.ctx.recent);
        let candidates = self.gather_candidates(q, &plan, &context, &latest, deadline).await?;
        let ranked = self.rank_candidates(q, candidates.pool, &candidates.excluded, now).await?;
        let (page, more) = diversified_page(&ranked, q);
        let retrieval = candidates.ranking.as_ref().map_or("none", |r| r.retrieval);
        metrics().recommend_answer(q.scenario.as_str(), retrieval);
        Ok(explain_page(q, &context, &latest, candidates.ranking, &ranked, page, more))
    }

    /// The context: what the store knows of the user (history, purchases, cart,
    /// affinity, the popular fill) and of the anchors, and the tenant's model. An anchor neither
    /// knows is NOT_FOUND.
    async fn resolve_context(
        &self,
        q: &Query,
        plan: &Plan,
        now: UnixMillis,
    ) -> Result<Context, InferenceError> {
        let (s, store) = (&self.settings, &*self.store);
        let context = read_recommend_context(
            store,
            &q.tenant,
            ContextQuery {
                user: q.user.as_ref(),
                session: q.session.as_ref(),
                history_len: s.history_len,
                popular_n: plan.popular_n,
                category: q.context_category(),
                affinity_half_life: s.affinity_half_life,
                now,
            },
        );
        let (ctx, anchor_entries) = futures::join!(
            context,
            read_catalog_entries(store, &q.tenant, &q.anchors, CatalogParts::AttributesAndStats, now)
        );
        let mut ctx = ctx?;
        let anchor_entries = anchor_entries?;
        let model = self.models.get(&q.tenant);
        check_anchors_known(q, &anchor_entries, model.as_deref())?;
        let cold_start = match q.scenario {
            Scenario::ForYou => ctx.recent.is_empty(),
            Scenario::CartComplement => ctx.cart.is_empty(),
            _ => false,
        };
        // The fill read first may be short: a cold start, or more excluded items than it held.
        let fill_needed = if cold_start {
            plan.whole_pool
        } else {
            plan.page_end.saturating_add(1 + excluded_items(q, &ctx).len()).min(plan.whole_pool)
        };
        if ctx.popular.len() == plan.popular_n && plan.popular_n < fill_needed {
            ctx.popular = read_popular(store, &q.tenant, fill_needed).await?;
        }
        // The context of a cold start: the request's category, else the session's top category.
        let context_category = match q.context_category() {
            Some(c) => Some(c.to_string()),
            None if cold_start => ctx.session_categories.first().map(|(c, _)| c.clone()),
            None => None,
        };
        if cold_start
            && q.context_category().is_none()
            && let Some(c) = &context_category
        {
            ctx.category_popular = read_category_popular(store, &q.tenant, c, s.trending_pool).await?;
        }
        Ok(Context { ctx, anchor_entries, model, cold_start, context_category })
    }

    /// The candidates of every source: the model's, the seeds' neighbours, new items of
    /// the relevant categories, trending and popular items. Without filters, only what the page
    /// can show is kept (`trim_to_page`).
    async fn gather_candidates<'a>(
        &self,
        q: &'a Query,
        plan: &Plan,
        context: &'a Context,
        latest: &[&Interaction],
        deadline: Option<Instant>,
    ) -> Result<Candidates<'a>, InferenceError> {
        let (s, ctx) = (&self.settings, &context.ctx);
        let context_category = context.context_category.as_deref();
        let seeds = seeds(q, ctx, latest, s.neighbour_seeds);
        let categories =
            seed_categories(q, ctx, &context.anchor_entries, context.cold_start, context_category);
        let seed_items: Vec<ItemId> = seeds.iter().map(|(i, _)| i.clone()).collect();
        // FOR_YOU and SIMILAR_ITEMS offer no co-purchases (offer_neighbours).
        let kinds = match q.scenario {
            Scenario::ForYou | Scenario::SimilarItems => SeedNeighbours::Covisited,
            _ => SeedNeighbours::CovisitedAndCopurchased,
        };
        let neighbours =
            read_neighbours(&*self.store, &q.tenant, &seed_items, kinds, &categories, s.neighbours_per_seed)
                .await?;

        // Without filters the model's best up to this page's end (plus as many as could be
        // excluded) are all the ranking needs; otherwise the whole candidate pool.
        let model_pool = if plan.unfiltered {
            let droppable =
                ctx.bought.len() + q.exclude.len() + ctx.recent.len() + ctx.cart.len() + q.anchors.len();
            s.candidate_pool.min(plan.page_end.saturating_add(droppable + 1))
        } else {
            s.candidate_pool
        };
        let mut pool = Pool::default();
        let ranking = match context.model.as_deref() {
            Some(m) if matches!(q.scenario, Scenario::ForYou | Scenario::SimilarItems) => {
                model_candidates(m, q, ctx, &neighbours, model_pool, &mut pool, deadline).await?
            }
            _ => None,
        };
        let model_scores = ranking.as_ref().map(|r| &r.scores);
        offer_neighbours(&mut pool, q.scenario, &seeds, &neighbours, model_scores);
        offer_new_items(&mut pool, &categories, &neighbours, ranking.as_ref().and(context.model.as_deref()));
        // Without filters or a diversity cap the popular fill is ranked by popularity alone, so
        // the page (and one more, for `next_page_token`) past the excluded items is all it can
        // contribute.
        let excluded = excluded_items(q, ctx);
        let fill_limit =
            plan.unfiltered.then(|| plan.page_end.saturating_add(1).saturating_add(excluded.len()));
        offer_trending(&mut pool, q, ctx, context.cold_start, context_category, fill_limit);
        if plan.unfiltered {
            trim_to_page(&mut pool, &excluded, plan.page_end.saturating_add(1));
        }
        Ok(Candidates { pool, ranking, excluded })
    }

    /// The rank: the candidates' catalog entries, the filters, the order.
    async fn rank_candidates(
        &self,
        q: &Query,
        pool: Pool,
        excluded: &HashSet<&str>,
        now: UnixMillis,
    ) -> Result<Vec<Ranked>, InferenceError> {
        // The items' statistics only serve to rank trending candidates by how they trend now.
        let parts = if pool.map.values().any(|c| c.by_trending) {
            CatalogParts::AttributesAndStats
        } else {
            CatalogParts::Attributes
        };
        let entries = read_catalog_entries(&*self.store, &q.tenant, &pool.order, parts, now).await?;
        Ok(rank(pool, entries, q, excluded))
    }
}

/// How much of each source a request reads, known before any read.
struct Plan {
    /// Without catalog filters or a diversity cap only exclusions can drop a candidate.
    unfiltered: bool,
    /// Where the requested page ends in the ranking.
    page_end: usize,
    /// The most popular items a request reads.
    whole_pool: usize,
    /// The popular items read with the context.
    popular_n: usize,
}

impl Plan {
    fn of(q: &Query, s: &RecommendSettings) -> Self {
        let unfiltered = q.is_unfiltered();
        let page_end = (q.page + 1).saturating_mul(q.limit);
        // The popular items of an unfiltered FOR_YOU or CART_COMPLEMENT page are its fill, ranked
        // by popularity: the page's worth (and the history's, which may be excluded) is read
        // first, the whole pool only where it is needed (a cold start ranks it by trend).
        let whole_pool = s.trending_pool.max(q.limit + q.exclude.len() + 50);
        let fill_only = unfiltered && matches!(q.scenario, Scenario::ForYou | Scenario::CartComplement);
        let popular_n = if fill_only {
            page_end.saturating_add(1 + q.exclude.len() + s.history_len).min(whole_pool)
        } else {
            whole_pool
        };
        Self { unfiltered, page_end, whole_pool, popular_n }
    }
}

/// What [`Recommender::resolve_context`] found out about a request.
struct Context {
    ctx: RecommendContext,
    /// The anchors' catalog entries, in the query's order.
    anchor_entries: Vec<CatalogEntry>,
    /// The tenant's recommender, if it has one.
    model: Option<Arc<RecommenderModel>>,
    /// Whether the user has no history for the scenario.
    cold_start: bool,
    /// The category whose popular items a cold start is filled with.
    context_category: Option<String>,
}

/// What [`Recommender::gather_candidates`] gathered.
struct Candidates<'a> {
    pool: Pool,
    /// What the model contributed, if it ranked the request.
    ranking: Option<ModelRanking>,
    /// The items never recommended to this request ([`excluded_items`]).
    excluded: HashSet<&'a str>,
}

/// An anchor that neither the catalog nor the model knows is NOT_FOUND.
fn check_anchors_known(
    q: &Query,
    entries: &[CatalogEntry],
    model: Option<&RecommenderModel>,
) -> Result<(), InferenceError> {
    for (k, (anchor, entry)) in q.anchors.iter().zip(entries).enumerate() {
        let in_model = model.is_some_and(|m| m.index_of(anchor.as_str()).is_some());
        if !entry.known && !in_model {
            return Err(InferenceError::NotFound(format!(
                "{}: item {anchor:?} is unknown to tenant {}",
                q.anchor_field(k),
                q.tenant
            )));
        }
    }
    Ok(())
}

/// The newest interaction of each recent item, newest first.
fn latest_interactions(recent: &[Interaction]) -> Vec<&Interaction> {
    let mut latest: Vec<&Interaction> = Vec::new();
    for i in recent {
        if !latest.iter().any(|l| l.item == i.item) {
            latest.push(i);
        }
    }
    latest
}

/// The page: the ranked items of the requested page, at most `max_per_category` of
/// one leaf category; also whether pages follow.
fn diversified_page(ranked: &[Ranked], q: &Query) -> (Vec<usize>, bool) {
    let leaves: Vec<Option<&str>> = ranked.iter().map(|r| r.entry.leaf_category()).collect();
    page_of(&leaves, q.limit, q.max_per_category, q.page)
}

/// The answer: each item of the page with its reasons (when asked), the version of
/// the model that ranked it and the next page's token.
fn explain_page(
    q: &Query,
    context: &Context,
    latest: &[&Interaction],
    ranking: Option<ModelRanking>,
    ranked: &[Ranked],
    page: Vec<usize>,
    more: bool,
) -> Recommendations {
    let history: Vec<(&ItemId, &'static str)> = match q.scenario {
        Scenario::ForYou => latest.iter().map(|i| (&i.item, interaction_code(i.kind))).collect(),
        Scenario::SimilarItems => q.anchors.iter().map(|a| (a, "similar_to")).collect(),
        _ => Vec::new(),
    };
    let embedding = match (&ranking, context.model.as_deref()) {
        (Some(_), Some(RecommenderModel::Embedding(e))) => Some(e),
        _ => None,
    };
    let items = page
        .into_iter()
        .map(|k| {
            let Ranked { item, candidate: c, entry } = &ranked[k];
            let reasons = if q.explain { explain(item, c, embedding, &history) } else { Vec::new() };
            Recommendation {
                item: item.clone(),
                score: c.score,
                reason: c.reason.into(),
                reasons,
                category: entry.leaf_category().unwrap_or_default().to_string(),
            }
        })
        .collect();
    Recommendations {
        items,
        model_version: ranking.map(|r| r.version).unwrap_or_default(),
        next_page_token: more.then(|| request::page_token(q.page + 1, q.fingerprint)),
        scenario: q.scenario,
        cold_start: context.cold_start,
    }
}

/// The items whose neighbours are candidates, each with the reason code it lends them.
fn seeds(
    q: &Query,
    ctx: &RecommendContext,
    latest: &[&Interaction],
    max: usize,
) -> Vec<(ItemId, &'static str)> {
    match q.scenario {
        Scenario::ForYou => {
            latest.iter().take(max).map(|i| (i.item.clone(), interaction_code(i.kind))).collect()
        }
        Scenario::SimilarItems => q.anchors.iter().map(|a| (a.clone(), "similar_to")).collect(),
        Scenario::BoughtTogether => q.anchors.iter().map(|a| (a.clone(), "bought_with")).collect(),
        Scenario::CartComplement => ctx.cart.iter().take(max).map(|c| (c.clone(), "bought_with")).collect(),
        _ => Vec::new(),
    }
}

/// The categories whose newest items are candidates: the user's top categories (or the
/// request's context, for a cold start), the anchors' leaf categories.
fn seed_categories<'a>(
    q: &'a Query,
    ctx: &'a RecommendContext,
    anchors: &'a [CatalogEntry],
    cold_start: bool,
    context_category: Option<&'a str>,
) -> Vec<String> {
    let found: Vec<&str> = match q.scenario {
        Scenario::ForYou if cold_start => context_category.into_iter().collect(),
        Scenario::ForYou => ctx
            .affinity
            .iter()
            .filter_map(|(path, _)| category_levels(path).last())
            .take(AFFINITY_CATEGORIES)
            .collect(),
        Scenario::SimilarItems => anchors.iter().filter_map(CatalogEntry::leaf_category).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for c in found {
        if !out.iter().any(|x| x == c) {
            out.push(c.to_string());
        }
    }
    out
}

/// What the model contributed to a request.
struct ModelRanking {
    version: String,
    /// The model's score of every candidate it knows (its own and other sources').
    scores: HashMap<ItemId, f32>,
    /// How its candidates were found: `ann` or `brute_force`.
    retrieval: &'static str,
}

/// Stage 1 of the model: scores the history (recent items, or the anchors) in ONNX Runtime and
/// offers the best `candidate_pool` of the index's candidates (or of every item). `None` when
/// the model knows none of the history.
async fn model_candidates(
    m: &RecommenderModel,
    q: &Query,
    ctx: &RecommendContext,
    neighbours: &Neighbours,
    candidate_pool: usize,
    pool: &mut Pool,
    deadline: Option<Instant>,
) -> Result<Option<ModelRanking>, InferenceError> {
    let for_you = q.scenario == Scenario::ForYou;
    let history = match m {
        RecommenderModel::Covisit(c) if for_you => weighted_history(&ctx.recent, |item| c.index_of(item)),
        RecommenderModel::Covisit(c) => {
            q.anchors.iter().filter_map(|a| c.index_of(a.as_str())).map(|i| (i, 1.0)).collect()
        }
        RecommenderModel::Embedding(e) => {
            let oldest_first: Vec<usize> = if for_you {
                ctx.recent.iter().rev().filter_map(|i| e.index_of(i.item.as_str())).collect()
            } else {
                q.anchors.iter().filter_map(|a| e.index_of(a.as_str())).collect()
            };
            e.recent_history(&oldest_first)
        }
    };
    if history.is_empty() {
        return Ok(None);
    }
    // The items of other sources (neighbours) the model knows: ranked by its score too.
    let neighbour_items: Vec<(&ItemId, usize)> = neighbours
        .covisited
        .iter()
        .chain(&neighbours.copurchased)
        .flatten()
        .filter_map(|(item, _)| Some((item, m.index_of(item.as_str())?)))
        .collect();
    let scored = match m {
        RecommenderModel::Covisit(c) => Scored::every_item(c.score_until(&history, deadline).await?),
        RecommenderModel::Embedding(e) => match &e.ann {
            // Two stages: the ANN index's candidates for the user vector (computed in Rust, as
            // the graph computes it) and the neighbours, then ONNX Runtime scores only those.
            Some(ann) => {
                let found = {
                    let span = tracing::info_span!("ann_search", candidates = tracing::field::Empty);
                    let _entered = span.enter();
                    let user = e.user_vector(&history)?;
                    let found = ann.search(&user);
                    span.record("candidates", found.len());
                    found
                };
                let own = found.len();
                let mut seen: HashSet<usize> = found.iter().copied().collect();
                let mut candidates = found;
                candidates.extend(neighbour_items.iter().map(|&(_, j)| j).filter(|&j| seen.insert(j)));
                let (scores, _) = e.score_candidates_until(&history, &candidates, deadline).await?;
                Scored { candidates: Some(candidates), scores, own }
            }
            None => Scored::every_item(e.score_until(&history, deadline).await?),
        },
    };
    let retrieval = if scored.candidates.is_some() { "ann" } else { "brute_force" };
    // The index's candidates, or every item the model has a signal for.
    let mut ranked = scored.own();
    ranked.retain(|(_, s)| m.is_signal(*s));
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(candidate_pool);
    let reason = if for_you { m.reason() } else { "similar" };
    let mut known = HashMap::with_capacity(ranked.len());
    for (j, score) in ranked {
        let Some(Ok(item)) = m.item(j).map(ItemId::parse) else { continue };
        pool.offer(&item, candidate(MODEL, f64::from(score), score, reason), None);
        known.insert(item, score);
    }
    let score_of = scored.lookup();
    for (item, j) in neighbour_items {
        if let Some(score) = score_of(j)
            && m.is_signal(score)
        {
            known.entry(item.clone()).or_insert(score);
        }
    }
    Ok(Some(ModelRanking { version: m.version().to_string(), scores: known, retrieval }))
}

/// The model's scores of one request: of every item (`candidates` is `None`), or of the listed
/// candidates, whose first `own` are the model's own (the ANN index's).
struct Scored {
    candidates: Option<Vec<usize>>,
    scores: Vec<f32>,
    own: usize,
}

impl Scored {
    fn every_item(scores: Vec<f32>) -> Self {
        let own = scores.len();
        Self { candidates: None, scores, own }
    }

    /// (item index, score) of the model's own candidates.
    fn own(&self) -> Vec<(usize, f32)> {
        match &self.candidates {
            None => self.scores.iter().copied().enumerate().collect(),
            Some(c) => c.iter().copied().zip(self.scores.iter().copied()).take(self.own).collect(),
        }
    }

    /// The score of an item index, if it was scored.
    fn lookup(&self) -> impl Fn(usize) -> Option<f32> + '_ {
        let sparse: HashMap<usize, f32> = match &self.candidates {
            Some(c) => c.iter().copied().zip(self.scores.iter().copied()).collect(),
            None => HashMap::new(),
        };
        move |j| match &self.candidates {
            None => self.scores.get(j).copied(),
            Some(_) => sparse.get(&j).copied(),
        }
    }
}

/// Offers the seeds' co-visitation and co-purchase neighbours, as the scenario uses them.
fn offer_neighbours(
    pool: &mut Pool,
    scenario: Scenario,
    seeds: &[(ItemId, &'static str)],
    neighbours: &Neighbours,
    model_scores: Option<&HashMap<ItemId, f32>>,
) {
    // (tier, main reason, reason code) of co-visited items; tier of co-purchased items.
    let (covisit, copurchase) = match scenario {
        Scenario::ForYou => (Some((PRIMARY, "covisited", None)), None),
        Scenario::SimilarItems => (Some((PRIMARY, "similar", Some("similar_to"))), None),
        Scenario::BoughtTogether => (None, Some((PRIMARY, "bought_together"))),
        Scenario::CartComplement => {
            (Some((SECONDARY, "complement", Some("carted"))), Some((PRIMARY, "complement")))
        }
        _ => (None, None),
    };
    for (k, (seed, seed_code)) in seeds.iter().enumerate() {
        if let Some((tier, reason, code)) = covisit {
            for (item, count) in neighbours.covisited.get(k).into_iter().flatten() {
                let c = match model_scores.and_then(|m| m.get(item)) {
                    Some(&score) => candidate(MODEL, f64::from(score), score, reason),
                    None => candidate(tier, *count, *count as f32, reason),
                };
                pool.offer(item, c, Some(Reason::new(code.unwrap_or(seed_code), Some(seed.as_str()), None)));
            }
        }
        if let Some((tier, reason)) = copurchase {
            for (item, count) in neighbours.copurchased.get(k).into_iter().flatten() {
                let c = candidate(tier, *count, *count as f32, reason);
                pool.offer(item, c, Some(Reason::new("bought_with", Some(seed.as_str()), None)));
            }
        }
    }
}

/// Offers the newest catalog items of the categories that `ranking` (the model that ranked this
/// request, if any) does not know: new items, before they have interactions.
fn offer_new_items(
    pool: &mut Pool,
    categories: &[String],
    neighbours: &Neighbours,
    ranking: Option<&RecommenderModel>,
) {
    for (k, category) in categories.iter().enumerate() {
        for (rank, (item, _)) in neighbours.newest.get(k).into_iter().flatten().enumerate() {
            if ranking.is_some_and(|m| m.index_of(item.as_str()).is_some()) {
                continue;
            }
            pool.offer(
                item,
                candidate(NEW, -(rank as f64), 0.0, "new_item"),
                Some(Reason::new("new_in_category", None, Some(category))),
            );
        }
    }
}

/// Offers trending items (of the category of TRENDING or of a cold start's context, then of the
/// shop) and popular items as the fill of FOR_YOU and CART_COMPLEMENT.
/// `fill_limit`: at most this many popular items fill a page that ranks them by popularity (not
/// by how they trend now).
fn offer_trending(
    pool: &mut Pool,
    q: &Query,
    ctx: &RecommendContext,
    cold_start: bool,
    context_category: Option<&str>,
    fill_limit: Option<usize>,
) {
    let scenario = q.scenario;
    let category = match scenario {
        Scenario::Trending => q.category.as_deref(),
        Scenario::ForYou | Scenario::CartComplement if cold_start => context_category,
        _ => None,
    };
    if let Some(category) = category {
        for (item, all_time) in &ctx.category_popular {
            let c = Candidate { key2: *all_time, by_trending: true, ..candidate(NEW, 0.0, 0.0, "trending") };
            pool.offer(item, c, Some(Reason::new("trending_in_category", None, Some(category))));
        }
    }
    let fill = match scenario {
        Scenario::ForYou | Scenario::CartComplement => true,
        Scenario::Trending => q.category.is_none(),
        _ => false,
    };
    if fill {
        let trending = scenario == Scenario::Trending || cold_start;
        let code = if trending { "trending" } else { "popular" };
        let limit = if trending { usize::MAX } else { fill_limit.unwrap_or(usize::MAX) };
        for (rank, (item, all_time)) in ctx.popular.iter().enumerate().take(limit) {
            let c = Candidate {
                key2: *all_time,
                by_trending: trending,
                ..candidate(FILL, -(rank as f64), 0.0, code)
            };
            pool.offer(item, c, Some(Reason::new(code, None, None)));
        }
    }
}

/// Keeps the excluded items out of `pool` and, where its order is already final (no candidate
/// is keyed by how it trends now, which comes with the catalog entries), only its best `keep`
/// candidates and the new items, which may still take their category's score: all a page
/// without filters or a diversity cap can show, so only their catalog entries are read.
fn trim_to_page(pool: &mut Pool, excluded: &HashSet<&str>, keep: usize) {
    pool.order.retain(|i| !excluded.contains(i.as_str()));
    pool.map.retain(|i, _| !excluded.contains(i.as_str()));
    if pool.order.len() <= keep || pool.map.values().any(|c| c.by_trending) {
        return;
    }
    let is_new = |c: &Candidate| c.tier == NEW && c.reason == "new_item";
    let mut ranked: Vec<(&ItemId, &Candidate)> =
        pool.order.iter().filter_map(|i| Some((i, pool.map.get(i)?))).filter(|(_, c)| !is_new(c)).collect();
    if ranked.len() <= keep {
        return;
    }
    ranked.sort_by(rank_order);
    let cut: HashSet<ItemId> = ranked[keep..].iter().map(|(i, _)| (*i).clone()).collect();
    pool.order.retain(|i| !cut.contains(i));
    pool.map.retain(|i, _| !cut.contains(i));
}

/// The order of ranked candidates: tier, then key, then all-time popularity (larger first),
/// then the item id.
fn rank_order(a: &(&ItemId, &Candidate), b: &(&ItemId, &Candidate)) -> std::cmp::Ordering {
    let (x, y) = (a.1, b.1);
    x.tier.cmp(&y.tier).then(y.key.total_cmp(&x.key)).then(y.key2.total_cmp(&x.key2)).then(a.0.cmp(b.0))
}

/// A candidate that passed the filters, with its catalog entry.
struct Ranked {
    item: ItemId,
    candidate: Candidate,
    entry: CatalogEntry,
}

/// Stage 2: drops excluded and filtered candidates, scores trending ones by their popularity
/// now, gives new items their category's score, and sorts (tier, key, all-time popularity,
/// item id).
fn rank(mut pool: Pool, entries: Vec<CatalogEntry>, q: &Query, excluded: &HashSet<&str>) -> Vec<Ranked> {
    let trending_in = q.category.as_deref().filter(|_| q.scenario == Scenario::Trending);
    let mut ranked: Vec<Ranked> = Vec::new();
    for (item, entry) in pool.order.iter().zip(entries) {
        let Some(mut c) = pool.map.remove(item) else { continue };
        if excluded.contains(item.as_str())
            || !passes_filters(q, &entry)
            || trending_in.is_some_and(|cat| !entry.in_category(cat))
        {
            continue;
        }
        if c.by_trending {
            c.key = entry.trending;
            c.score = entry.trending as f32;
        }
        ranked.push(Ranked { item: item.clone(), candidate: c, entry });
    }
    // A new item takes the score of the best model item of its leaf category.
    let mut best_of_leaf: HashMap<String, f32> = HashMap::new();
    for r in ranked.iter().filter(|r| r.candidate.tier == MODEL) {
        if let Some(leaf) = r.entry.leaf_category() {
            let best = best_of_leaf.entry(leaf.to_string()).or_insert(f32::NEG_INFINITY);
            *best = best.max(r.candidate.score);
        }
    }
    for r in &mut ranked {
        let c = &mut r.candidate;
        if c.tier == NEW
            && c.reason == "new_item"
            && let Some(&best) = r.entry.leaf_category().and_then(|leaf| best_of_leaf.get(leaf))
        {
            // Newest first among the new items of one category, just after its best item.
            let nudge = 1e-4 * (1.0 - c.key as f32);
            c.tier = MODEL;
            c.score = best - nudge;
            c.key = f64::from(c.score);
        }
    }
    ranked.sort_by(|a, b| rank_order(&(&a.item, &a.candidate), &(&b.item, &b.candidate)));
    ranked
}

/// The reasons of one item, most important first: those its sources gave, and for an item the
/// embedding model ranked without one naming an item, the history item it rests on most.
fn explain(
    item: &ItemId,
    c: &Candidate,
    embedding: Option<&ServedEmbedding>,
    history: &[(&ItemId, &'static str)],
) -> Vec<Reason> {
    let mut reasons = c.reasons.clone();
    if c.tier == MODEL
        && !reasons.iter().any(|r| !r.item.is_empty())
        && let Some((h, code)) = embedding.and_then(|e| nearest_history_item(e, item, history))
    {
        reasons.push(Reason::new(code, Some(h.as_str()), None));
    }
    if reasons.is_empty() {
        reasons.push(Reason::new(c.reason, None, None));
    }
    reasons.sort_by_key(|r| importance(&r.code));
    reasons
}

/// The history item (recent item or anchor) whose item embedding is most aligned with `item`'s:
/// what an embedding model's recommendation of `item` most rests on.
fn nearest_history_item<'a>(
    e: &ServedEmbedding,
    item: &ItemId,
    history: &[(&'a ItemId, &'static str)],
) -> Option<(&'a ItemId, &'static str)> {
    let dim = e.dim();
    let emb = e.item_embeddings();
    let row = |j: usize| emb.get(j * dim..(j + 1) * dim);
    let target = row(e.index_of(item.as_str())?)?;
    history
        .iter()
        .filter(|(h, _)| *h != item)
        .filter_map(|(h, code)| {
            let v = row(e.index_of(h.as_str())?)?;
            Some((*h, *code, v.iter().zip(target).map(|(a, b)| a * b).sum::<f32>()))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))
        .map(|(h, code, _)| (h, code))
}

/// Items never recommended to this request: purchased ones (unless asked for), the request's
/// exclusions, seen ones (when asked), anchors, and for cart complements the cart.
fn excluded_items<'a>(q: &'a Query, ctx: &'a RecommendContext) -> HashSet<&'a str> {
    let mut out: HashSet<&str> = q.exclude.iter().map(String::as_str).collect();
    if !q.include_purchased {
        out.extend(ctx.bought.iter().map(ItemId::as_str));
    }
    if q.exclude_seen {
        out.extend(ctx.recent.iter().map(|i| i.item.as_str()));
        out.extend(ctx.cart.iter().map(ItemId::as_str));
    }
    out.extend(q.anchors.iter().map(ItemId::as_str));
    if q.scenario == Scenario::CartComplement {
        out.extend(ctx.cart.iter().map(ItemId::as_str));
    }
    out
}

/// The request's catalog filters.
fn passes_filters(q: &Query, e: &CatalogEntry) -> bool {
    if !q.categories.is_empty() && !q.categories.iter().any(|c| e.in_category(c)) {
        return false;
    }
    if q.min_price.is_some() || q.max_price.is_some() {
        let Some(price) = e.price_minor else { return false };
        if q.min_price.is_some_and(|min| price < min) || q.max_price.is_some_and(|max| price > max) {
            return false;
        }
    }
    !q.in_stock_only || e.in_stock()
}

/// Answers `sm.rpc.<t>.inference.recommend` until `shutdown`, at most `concurrency` requests at
/// a time.
pub(crate) async fn serve(
    recommender: Arc<Recommender>,
    server: &rpc::Server,
    concurrency: usize,
) -> Result<(), BusError> {
    server
        .serve(
            methods::Recommend,
            concurrency,
            recommender,
            |recommender, req, incoming| async move {
                tracing::Span::current().record("kind", req.scenario().as_str_name());
                recommender.answer(&req, incoming.deadline).await
            },
            |result, took| {
                metrics().inference_request(if result.is_ok() { Success::Ok } else { Success::Error }, took)
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn interaction(item: &str, kind: InteractionKind) -> Interaction {
        Interaction { item: ItemId::parse(item).unwrap(), kind, at: UnixMillis(1_700_000_000_000) }
    }

    /// Model indexes: "a" -> 0, "b" -> 1, ...; "unknown" has none.
    fn index_of(item: &str) -> Option<usize> {
        match item {
            "unknown" => None,
            _ => Some(usize::from(item.as_bytes()[0] - b'a')),
        }
    }

    fn assert_weights(actual: &[(usize, f32)], expected: &[(usize, f32)]) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert_eq!(a.0, e.0, "{actual:?} vs {expected:?}");
            assert!((a.1 - e.1).abs() < 1e-6, "{actual:?} vs {expected:?}");
        }
    }

    /// The page (and whether pages follow) of an unfiltered request over `pool`.
    fn page_ids(
        pool: Pool,
        entries: &HashMap<ItemId, CatalogEntry>,
        q: &Query,
        excluded: &HashSet<&str>,
    ) -> (Vec<String>, bool) {
        let e: Vec<CatalogEntry> = pool.order.iter().map(|i| entries[i].clone()).collect();
        let ranked = rank(pool, e, q, excluded);
        let leaves: Vec<Option<&str>> = ranked.iter().map(|r| r.entry.leaf_category()).collect();
        let (page, more) = page_of(&leaves, q.limit, 0, q.page);
        (page.into_iter().map(|k| ranked[k].item.to_string()).collect(), more)
    }

    #[test]
    fn trimming_an_unfiltered_pool_changes_no_page() {
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut trimmed_some = 0;
        for _ in 0..500 {
            let n = 1 + next(60);
            let mut pool = Pool::default();
            let mut entries = HashMap::new();
            for k in 0..n {
                let item = ItemId::parse(format!("i{k}")).unwrap();
                let tier = [MODEL, PRIMARY, SECONDARY, NEW, FILL][next(5) as usize];
                // Few distinct keys: ties are decided by the item id. As the sources offer them:
                // a model score is its key; a new item's key is minus its rank in its category.
                let k = next(8) as f64;
                let c = if tier == NEW && next(2) == 0 {
                    candidate(NEW, -k, 0.0, "new_item")
                } else {
                    candidate(tier, k, k as f32, "popular")
                };
                pool.offer(&item, c, None);
                let category = format!("Shop > C{}", next(4));
                entries.insert(
                    item,
                    CatalogEntry { known: true, category: Some(category), ..Default::default() },
                );
            }
            let excluded_ids: Vec<String> = (0..next(6)).map(|_| format!("i{}", next(n))).collect();
            let excluded: HashSet<&str> = excluded_ids.iter().map(String::as_str).collect();
            let req = pb::RecommendRequest {
                tenant: "acme".into(),
                user_id: "u1".into(),
                limit: 1 + next(10) as u32,
                ..Default::default()
            };
            let mut q = Query::try_from(&req).unwrap();
            q.page = next(3) as usize;
            let whole = Pool { order: pool.order.clone(), map: pool.map.clone() };
            let keep = (q.page + 1) * q.limit + 1;
            trim_to_page(&mut pool, &excluded, keep);
            assert!(
                pool.order.iter().all(|i| pool.map.contains_key(i)) && pool.order.len() == pool.map.len()
            );
            assert!(pool.order.iter().all(|i| !excluded.contains(i.as_str())));
            if pool.order.len()
                < whole.order.len()
                    - excluded.iter().filter(|e| whole.map.keys().any(|i| i.as_str() == **e)).count()
            {
                trimmed_some += 1;
            }
            assert_eq!(page_ids(pool, &entries, &q, &excluded), page_ids(whole, &entries, &q, &excluded));
        }
        assert!(trimmed_some > 100, "the pools were trimmed ({trimmed_some} of 500)");
    }

    #[test]
    fn weighted_history_weighs_newest_most_and_purchase_over_cart_over_view() {
        let recent = [
            interaction("a", InteractionKind::View),
            interaction("b", InteractionKind::View),
            interaction("c", InteractionKind::View),
        ];
        assert_weights(
            &weighted_history(&recent, index_of),
            &[(0, 1.0), (1, RECENCY_DECAY), (2, RECENCY_DECAY * RECENCY_DECAY)],
        );
        let weight_of = |kind| weighted_history(&[interaction("a", kind)], index_of)[0].1;
        assert!(weight_of(InteractionKind::Purchase) > weight_of(InteractionKind::Cart));
        assert!(weight_of(InteractionKind::Cart) > weight_of(InteractionKind::View));
    }

    #[test]
    fn weighted_history_skips_unknown_items_but_they_still_age_the_rest() {
        let recent = [
            interaction("unknown", InteractionKind::Purchase),
            interaction("a", InteractionKind::View),
            interaction("unknown", InteractionKind::View),
            interaction("b", InteractionKind::Cart),
        ];
        let d = RECENCY_DECAY;
        assert_weights(&weighted_history(&recent, index_of), &[(0, d), (1, d * d * d * 2.0)]);
        assert!(weighted_history(&[], index_of).is_empty());
    }

    #[test]
    fn pages_cut_the_ranking_and_the_cap_moves_items_on() {
        let none = vec![None; 5];
        assert_eq!(page_of(&none, 2, 0, 0), (vec![0, 1], true));
        assert_eq!(page_of(&none, 2, 0, 2), (vec![4], false));
        assert_eq!(page_of(&none, 2, 0, 3), (vec![], false));
        // Categories a a a b b, at most one per category per page.
        let leaves = [Some("a"), Some("a"), Some("a"), Some("b"), Some("b")];
        assert_eq!(page_of(&leaves, 3, 1, 0), (vec![0, 3], true));
        assert_eq!(page_of(&leaves, 3, 1, 1), (vec![1, 4], true));
        assert_eq!(page_of(&leaves, 3, 1, 2), (vec![2], false));
        // Every item appears exactly once over all pages.
        let mut all: Vec<usize> = (0..3).flat_map(|p| page_of(&leaves, 3, 1, p).0).collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_better_offer_takes_the_rank_and_keeps_every_reason() {
        let item = ItemId::parse("x").unwrap();
        let mut pool = Pool::default();
        pool.offer(&item, candidate(FILL, 0.0, 0.0, "popular"), Some(Reason::new("popular", None, None)));
        pool.offer(
            &item,
            candidate(PRIMARY, 3.0, 3.0, "covisited"),
            Some(Reason::new("viewed", Some("y"), None)),
        );
        pool.offer(&item, candidate(SECONDARY, 9.0, 9.0, "complement"), None);
        let c = &pool.map[&item];
        assert_eq!((c.tier, c.reason), (PRIMARY, "covisited"));
        let codes: Vec<&str> = c.reasons.iter().map(|r| r.code.as_str()).collect();
        assert_eq!(codes, ["popular", "viewed"]);
        assert_eq!(pool.order.len(), 1);
        assert_eq!(Reason::new("viewed", Some("i-42"), None).text, "viewed i-42");
        assert_eq!(Reason::new("trending_in_category", None, Some("Comedy")).text, "trending in Comedy");
        assert_eq!(Reason::new("bought_with", Some("i1"), None).text, "bought with i1");
    }
}
