//! `shopmind bench rank`: what the second stage of recommend costs, scoring a few candidates
//! instead of the whole catalog, with one embedding model in one run.
//!
//! 1. builds a seeded random embedding model of `--items` items of `--dim` floats, `--requests`
//!    histories of 1 to `--history` entries and, per request, `--candidates` random item indices,
//!    before any clock runs;
//! 2. **gemm** (the baseline, what every request paid before the graph took candidates): the
//!    older graph, `user_vectors` then one Gemm with the whole item matrix (`scores [batch,
//!    n_items]`), rebuilt from the same model, run by `--concurrency` callers through a batcher;
//! 3. **full**: the same callers score every item through today's graph (every item as a
//!    candidate: brute force, `EmbeddingRecommender::score_until`);
//! 4. **candidates**: the same callers compute the user vector in Rust (the ANN query) and score
//!    only their candidates (`EmbeddingRecommender::score_candidates_until`);
//! 5. checks that every candidate's score is the same in the three runs.
//!
//! The ANN search itself is not in here (see `shopmind bench recommend` for the whole path).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use prost::Message as _;
use shopmind_config::Config;
use shopmind_onnx::{self as onnx, DataType, Dim, TrainingStats};
use shopmind_serving::batch::{BatchSpec, Batcher, PadValue};
use shopmind_serving::{
    BatchOptions, EmbeddingRecommender, InputTensor, OutputTensor, PoolOptions, SessionPool, init_runtime,
};
use shopmind_training::embedding::{
    self, INPUT_CANDIDATES, INPUT_ITEMS, INPUT_WEIGHTS, ITEM_BIAS, ITEM_EMBEDDINGS, OUTPUT_CANDIDATE_SCORES,
    OUTPUT_USER_VECTORS,
};
use shopmind_training::{EmbeddingConfig, EmbeddingModel, Factors};

use super::{Batching, Rng, percentile_ms};

/// What `bench rank` is asked to do.
#[derive(Clone, Debug)]
pub struct RankOptions {
    pub items: usize,
    pub dim: usize,
    pub history: usize,
    pub candidates: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub batching: Batching,
    pub seed: u64,
}

/// What `bench rank` measured.
#[derive(Debug, serde::Serialize)]
pub struct RankReport {
    pub items: usize,
    pub dim: usize,
    pub history: usize,
    pub candidates: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub sessions: usize,
    pub intra_threads: usize,
    pub max_batch: usize,
    pub max_queue_delay_us: u64,
    pub gemm_per_s: f64,
    pub gemm_p50_ms: f64,
    pub gemm_p99_ms: f64,
    pub full_per_s: f64,
    pub full_p50_ms: f64,
    pub full_p99_ms: f64,
    pub candidates_per_s: f64,
    pub candidates_p50_ms: f64,
    pub candidates_p99_ms: f64,
    /// Requests per second, candidates over the Gemm baseline.
    pub speedup: f64,
    /// Requests per second, candidates over full (today's graph given every item).
    pub speedup_over_full: f64,
    /// Largest difference between a candidate's score and its score in the full run.
    pub max_abs_diff: f32,
}

/// One request: its weighted history and its candidates.
type Request = (Vec<(usize, f32)>, Vec<usize>);

pub async fn run(opts: RankOptions, config: &Config) -> anyhow::Result<RankReport> {
    if opts.items < 2 || opts.dim == 0 || opts.history == 0 || opts.requests == 0 || opts.concurrency == 0 {
        bail!("--items must be at least 2, --dim, --history, --requests and --concurrency at least 1");
    }
    let library = shopmind_serving::library_path(&config.inference.onnxruntime_library)?;
    init_runtime(&library)?;

    // Data first, before any clock runs.
    let (n, d) = (opts.items, opts.dim);
    let mut rng = Rng(opts.seed);
    let mut values =
        |len: usize, scale: f32| -> Vec<f32> { (0..len).map(|_| (rng.unit() - 0.5) * scale).collect() };
    let factors = Factors {
        dim: d,
        history_embeddings: values(n * d, 1.0),
        item_embeddings: values(n * d, 1.0),
        item_bias: values(n, 0.2),
    };
    let items: Vec<String> = (0..n).map(|i| format!("sku-{i}")).collect();
    let config_e = EmbeddingConfig { dim: d, history_len: opts.history, ..EmbeddingConfig::default() };
    let model = EmbeddingModel::new(items, factors, config_e, TrainingStats::default())?;
    let bytes = model.to_onnx(&model.manifest("bench", "bench", "bench", 0));
    drop(model);
    let requests: Arc<Vec<Request>> = Arc::new(
        (0..opts.requests)
            .map(|_| {
                let len = 1 + rng.below(opts.history);
                let history = (0..len).map(|_| (rng.below(n), 0.05 + rng.unit() * 2.0)).collect();
                let candidates = (0..opts.candidates).map(|_| rng.below(n)).collect();
                (history, candidates)
            })
            .collect(),
    );
    let pool_options = PoolOptions {
        sessions: opts.batching.sessions,
        intra_threads: config.inference.intra_threads,
        device: shopmind_serving::Device::Cpu,
        batch: BatchOptions {
            max_batch: opts.batching.max_batch,
            max_queue_delay: Duration::from_micros(opts.batching.max_queue_delay_us),
            queue_capacity: opts.concurrency.max(1024),
        },
    };
    let rec = Arc::new(EmbeddingRecommender::load(&bytes, &pool_options)?);
    let gemm_pool = SessionPool::load(&gemm_graph(&bytes, n)?, &pool_options)?;
    drop(bytes);
    let spec =
        BatchSpec::new().padded(INPUT_ITEMS, PadValue::I64(0)).padded(INPUT_WEIGHTS, PadValue::F32(0.0));
    let gemm = Arc::new(Batcher::new("bench_gemm", Arc::new(gemm_pool), spec, pool_options.batch)?);

    let (gemm_per_s, gemm_lat, before) = callers(&rec, &gemm, &requests, &opts, Mode::Gemm).await?;
    gemm.shutdown().await;
    let (full_per_s, full_lat, full) = callers(&rec, &gemm, &requests, &opts, Mode::Full).await?;
    let (candidates_per_s, cand_lat, ranked) =
        callers(&rec, &gemm, &requests, &opts, Mode::Candidates).await?;

    let mut max_abs_diff = 0f32;
    for ((a, b), c) in full.iter().zip(&ranked).zip(&before) {
        if a.len() != b.len() || c.len() != b.len() {
            bail!("a request got {} candidate scores, expected {}", b.len(), a.len());
        }
        for ((x, y), z) in a.iter().zip(b).zip(c) {
            max_abs_diff = max_abs_diff.max((x - y).abs()).max((z - y).abs());
        }
    }
    if max_abs_diff.is_nan() || max_abs_diff > 1e-4 {
        bail!("candidate scores and full scores differ by {max_abs_diff}");
    }
    Ok(RankReport {
        items: n,
        dim: d,
        history: opts.history,
        candidates: opts.candidates,
        requests: opts.requests,
        concurrency: opts.concurrency,
        sessions: opts.batching.sessions,
        intra_threads: config.inference.intra_threads,
        max_batch: opts.batching.max_batch,
        max_queue_delay_us: opts.batching.max_queue_delay_us,
        gemm_per_s,
        gemm_p50_ms: percentile_ms(&gemm_lat, 0.5),
        gemm_p99_ms: percentile_ms(&gemm_lat, 0.99),
        full_per_s,
        full_p50_ms: percentile_ms(&full_lat, 0.5),
        full_p99_ms: percentile_ms(&full_lat, 0.99),
        candidates_per_s,
        candidates_p50_ms: percentile_ms(&cand_lat, 0.5),
        candidates_p99_ms: percentile_ms(&cand_lat, 0.99),
        speedup: candidates_per_s / gemm_per_s.max(f64::MIN_POSITIVE),
        speedup_over_full: candidates_per_s / full_per_s.max(f64::MIN_POSITIVE),
        max_abs_diff,
    })
}

/// The older graph of the same model: `user_vectors` then one Gemm with every item (`scores
/// [batch, n_items]`), no `candidate_items`; the baseline.
fn gemm_graph(bytes: &[u8], n: usize) -> anyhow::Result<Vec<u8>> {
    let mut model = onnx::ModelProto::decode(bytes)?;
    let graph = model.graph.as_mut().context("the model has no graph")?;
    let last = graph
        .node
        .iter()
        .position(|node| node.output.iter().any(|o| o == OUTPUT_USER_VECTORS))
        .context("no node computes the user vectors")?;
    graph.node.truncate(last + 1);
    graph.node.push(onnx::node(
        "Gemm",
        &[OUTPUT_USER_VECTORS, ITEM_EMBEDDINGS, ITEM_BIAS],
        &[embedding::LEGACY_OUTPUT_SCORES],
        vec![onnx::attr_int("transB", 1)],
    ));
    graph.input.retain(|i| i.name != INPUT_CANDIDATES);
    graph.output.retain(|o| o.name != OUTPUT_CANDIDATE_SCORES);
    graph.output.push(onnx::tensor_value_info(
        embedding::LEGACY_OUTPUT_SCORES,
        DataType::Float,
        &[Dim::Symbolic(embedding::BATCH_DIM.into()), Dim::Fixed(n as i64)],
    ));
    Ok(model.encode_to_vec())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Gemm,
    Full,
    Candidates,
}

/// One request of the Gemm baseline: the scores of every item.
async fn gemm_scores(gemm: &Batcher, history: &[(usize, f32)]) -> anyhow::Result<Vec<f32>> {
    let h = history.len().max(1);
    let mut items = vec![0i64; h];
    let mut weights = vec![0f32; h];
    for (k, &(i, w)) in history.iter().enumerate() {
        items[k] = i as i64;
        weights[k] = w;
    }
    let outputs = gemm
        .run(
            vec![
                (INPUT_ITEMS.to_owned(), InputTensor::I64 { shape: vec![1, h], data: items }),
                (INPUT_WEIGHTS.to_owned(), InputTensor::F32 { shape: vec![1, h], data: weights }),
            ],
            None,
        )
        .await?;
    match outputs.into_iter().find(|(name, _)| name == embedding::LEGACY_OUTPUT_SCORES) {
        Some((_, OutputTensor::F32 { data, .. })) => Ok(data),
        _ => bail!("the Gemm graph returned no float `scores`"),
    }
}

/// `concurrency` callers scoring every request once, as `mode` says: requests per second, each
/// request's latency (sorted) and every request's candidates' scores.
async fn callers(
    rec: &Arc<EmbeddingRecommender>,
    gemm: &Arc<Batcher>,
    requests: &Arc<Vec<Request>>,
    opts: &RankOptions,
    mode: Mode,
) -> anyhow::Result<(f64, Vec<Duration>, Vec<Vec<f32>>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        let (rec, gemm, requests, next) = (rec.clone(), gemm.clone(), requests.clone(), next.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((h, c)) = requests.get(i) else { return anyhow::Ok(out) };
                let t = Instant::now();
                let all = match mode {
                    Mode::Candidates => {
                        // The ANN query is computed before the candidates are known.
                        std::hint::black_box(rec.user_vector(h)?);
                        let scores = rec.score_candidates_until(h, c, None).await?.0;
                        out.push((i, t.elapsed(), scores));
                        continue;
                    }
                    Mode::Full => rec.score_until(h, None).await?,
                    Mode::Gemm => gemm_scores(&gemm, h).await?,
                };
                // Only the candidates' scores are kept (for the check): not requests x items.
                let scores = c.iter().map(|&j| all.get(j).copied().unwrap_or(f32::NAN)).collect();
                out.push((i, t.elapsed(), scores));
            }
        });
    }
    let mut results = Vec::with_capacity(requests.len());
    while let Some(done) = tasks.join_next().await {
        results.extend(done??);
    }
    let took = started.elapsed();
    results.sort_by_key(|(i, _, _)| *i);
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d, _)| *d).collect();
    latencies.sort();
    let scores = results.into_iter().map(|(_, _, s)| s).collect();
    Ok((requests.len() as f64 / took.as_secs_f64(), latencies, scores))
}

pub fn print(r: &RankReport) {
    println!(
        "bench rank: {} items x {} dims, histories of 1..={}, {} candidates, {} requests, {} callers, \
         {} sessions x {} threads, max_batch {}, max_queue_delay {} us",
        r.items,
        r.dim,
        r.history,
        r.candidates,
        r.requests,
        r.concurrency,
        r.sessions,
        r.intra_threads,
        r.max_batch,
        r.max_queue_delay_us
    );
    println!(
        "  gemm (older graph, every item) {:>8.0} requests/s  p50 {:.2} ms  p99 {:.2} ms",
        r.gemm_per_s, r.gemm_p50_ms, r.gemm_p99_ms
    );
    println!(
        "  full (every item a candidate)  {:>8.0} requests/s  p50 {:.2} ms  p99 {:.2} ms",
        r.full_per_s, r.full_p50_ms, r.full_p99_ms
    );
    println!(
        "  candidates                     {:>8.0} requests/s  p50 {:.2} ms  p99 {:.2} ms",
        r.candidates_per_s, r.candidates_p50_ms, r.candidates_p99_ms
    );
    println!(
        "  candidates / gemm {:.1}x, candidates / full {:.1}x; scores agree within {:.1e}",
        r.speedup, r.speedup_over_full, r.max_abs_diff
    );
}
