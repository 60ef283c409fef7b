//! `shopmind bench infer`: co-visitation scoring throughput with and without micro-batching, next
//! to the raw ONNX Runtime run of full batches (the ceiling), all from one model in one run.
//!
//! 1. builds a seeded random co-visitation model of `--items` items and `--requests` histories of
//!    1 to `--history` entries (so batches need padding), before any clock runs;
//! 2. **raw**: the model's session pool runs ready-made padded batches of `--max-batch` rows,
//!    one loop per session, no queue: rows per second ONNX Runtime can do;
//! 3. **unbatched**: `--concurrency` callers score one history per run
//!    (`CovisitRecommender::score_unbatched`), as inference did before batching;
//! 4. **batched**: the same callers through the batcher (`CovisitRecommender::score`);
//! 5. checks that batched and unbatched scores agree for every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use shopmind_config::Config;
use shopmind_onnx::TrainingStats;
use shopmind_serving::{BatchOptions, CovisitRecommender, InputTensor, PoolOptions, init_runtime};
use shopmind_training::CovisitModel;

use super::{Batching, Rng, bar, percentile_ms};

/// What `bench infer` is asked to do.
#[derive(Clone, Debug)]
pub struct InferOptions {
    pub items: usize,
    pub history: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub batching: Batching,
    pub seed: u64,
}

/// What `bench infer` measured.
#[derive(Debug, serde::Serialize)]
pub struct InferReport {
    pub items: usize,
    pub history: usize,
    pub requests: usize,
    pub concurrency: usize,
    pub sessions: usize,
    pub intra_threads: usize,
    pub max_batch: usize,
    pub max_queue_delay_us: u64,
    /// Rows per second of full batches run straight on the pool.
    pub raw_rows_per_s: f64,
    pub unbatched_per_s: f64,
    pub batched_per_s: f64,
    pub batched_over_unbatched: f64,
    pub batched_over_raw: f64,
    /// Mean rows per batch the batcher ran.
    pub mean_batch_rows: f64,
    pub unbatched_p50_ms: f64,
    pub unbatched_p99_ms: f64,
    pub batched_p50_ms: f64,
    pub batched_p99_ms: f64,
    /// Largest difference between a batched and an unbatched score.
    pub max_abs_diff: f32,
}

pub async fn run(opts: InferOptions, config: &Config) -> anyhow::Result<InferReport> {
    if opts.items < 2 || opts.history == 0 || opts.requests == 0 || opts.concurrency == 0 {
        bail!("--items must be at least 2, --history, --requests and --concurrency at least 1");
    }
    let library = shopmind_serving::library_path(&config.inference.onnxruntime_library)?;
    init_runtime(&library)?;

    // Data first, before any clock runs.
    let n = opts.items;
    let mut rng = Rng(opts.seed);
    let items: Vec<String> = (0..n).map(|i| format!("sku-{i}")).collect();
    let mut similarity = vec![0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                similarity[i * n + j] = rng.unit();
            }
        }
    }
    let model = CovisitModel::new(items, similarity, TrainingStats::default())?;
    let histories: Arc<Vec<Vec<(usize, f32)>>> = Arc::new(
        (0..opts.requests)
            .map(|_| {
                let len = 1 + rng.below(opts.history);
                (0..len).map(|_| (rng.below(n), 0.05 + rng.unit() * 2.0)).collect()
            })
            .collect(),
    );
    let bytes = model.to_onnx(&model.manifest("bench", "bench", "bench", 0));
    drop(model);
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
    let rec = Arc::new(CovisitRecommender::load(&bytes, &pool_options)?);

    let raw_rows_per_s = raw(&rec, &histories, &opts).await?;
    let (unbatched_per_s, unbatched_lat, unbatched) = callers(&rec, &histories, &opts, false).await?;
    let before = rec.batch_stats();
    let (batched_per_s, batched_lat, batched) = callers(&rec, &histories, &opts, true).await?;
    let after = rec.batch_stats();
    let batches = after.batches - before.batches;
    let rows = after.rows - before.rows;

    let mut max_abs_diff = 0f32;
    for (a, b) in unbatched.iter().zip(&batched) {
        for (x, y) in a.iter().zip(b) {
            max_abs_diff = max_abs_diff.max((x - y).abs());
        }
    }
    if max_abs_diff > 1e-4 {
        bail!("batched and unbatched scores differ by {max_abs_diff}");
    }
    Ok(InferReport {
        items: n,
        history: opts.history,
        requests: opts.requests,
        concurrency: opts.concurrency,
        sessions: opts.batching.sessions,
        intra_threads: config.inference.intra_threads,
        max_batch: opts.batching.max_batch,
        max_queue_delay_us: opts.batching.max_queue_delay_us,
        raw_rows_per_s,
        unbatched_per_s,
        batched_per_s,
        batched_over_unbatched: batched_per_s / unbatched_per_s.max(f64::MIN_POSITIVE),
        batched_over_raw: batched_per_s / raw_rows_per_s.max(f64::MIN_POSITIVE),
        mean_batch_rows: rows as f64 / batches.max(1) as f64,
        unbatched_p50_ms: percentile_ms(&unbatched_lat, 0.5),
        unbatched_p99_ms: percentile_ms(&unbatched_lat, 0.99),
        batched_p50_ms: percentile_ms(&batched_lat, 0.5),
        batched_p99_ms: percentile_ms(&batched_lat, 0.99),
        max_abs_diff,
    })
}

/// Full batches straight on the pool, one loop per session: rows per second.
async fn raw(
    rec: &Arc<CovisitRecommender>,
    histories: &Arc<Vec<Vec<(usize, f32)>>>,
    opts: &InferOptions,
) -> anyhow::Result<f64> {
    let batches: Vec<Vec<(String, InputTensor)>> = histories
        .chunks(opts.batching.max_batch)
        .map(|chunk| {
            let width = chunk.iter().map(Vec::len).max().unwrap_or(1).max(1);
            let mut items = Vec::with_capacity(chunk.len() * width);
            let mut weights = Vec::with_capacity(chunk.len() * width);
            for h in chunk {
                for k in 0..width {
                    let (i, w) = h.get(k).copied().unwrap_or((0, 0.0));
                    items.push(i as i64);
                    weights.push(w);
                }
            }
            let shape = vec![chunk.len(), width];
            vec![
                ("history_items".to_owned(), InputTensor::I64 { shape: shape.clone(), data: items }),
                ("history_weights".to_owned(), InputTensor::F32 { shape, data: weights }),
            ]
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let progress = bar(histories.len() as u64, "raw");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.batching.sessions {
        let (rec, batches, next, progress) = (rec.clone(), batches.clone(), next.clone(), progress.clone());
        tasks.spawn(async move {
            let pool = rec.pool().clone();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(batch) = batches.get(i) else { return anyhow::Ok(()) };
                let rows = batch.first().map_or(0, |(_, t)| match t {
                    InputTensor::I64 { shape, .. } | InputTensor::F32 { shape, .. } => shape[0],
                });
                pool.run(batch.clone()).await?;
                progress.inc(rows as u64);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let took = started.elapsed();
    progress.finish_and_clear();
    Ok(histories.len() as f64 / took.as_secs_f64())
}

/// `concurrency` callers scoring every history once, batched or not: requests per second, each
/// request's latency (sorted) and every request's scores.
async fn callers(
    rec: &Arc<CovisitRecommender>,
    histories: &Arc<Vec<Vec<(usize, f32)>>>,
    opts: &InferOptions,
    batched: bool,
) -> anyhow::Result<(f64, Vec<Duration>, Vec<Vec<f32>>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let progress = bar(histories.len() as u64, if batched { "batched" } else { "unbatched" });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency {
        let (rec, histories, next, progress) =
            (rec.clone(), histories.clone(), next.clone(), progress.clone());
        tasks.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(h) = histories.get(i) else { return anyhow::Ok(out) };
                let t = Instant::now();
                let scores = if batched { rec.score(h).await? } else { rec.score_unbatched(h).await? };
                out.push((i, t.elapsed(), scores));
                progress.inc(1);
            }
        });
    }
    let mut results = Vec::with_capacity(histories.len());
    while let Some(done) = tasks.join_next().await {
        results.extend(done??);
    }
    let took = started.elapsed();
    progress.finish_and_clear();
    results.sort_by_key(|(i, _, _)| *i);
    let mut latencies: Vec<Duration> = results.iter().map(|(_, d, _)| *d).collect();
    latencies.sort();
    let scores = results.into_iter().map(|(_, _, s)| s).collect();
    Ok((histories.len() as f64 / took.as_secs_f64(), latencies, scores))
}

pub fn print(r: &InferReport) {
    println!(
        "bench infer: {} items, histories of 1..={}, {} requests, {} callers, {} sessions x {} threads, \
         max_batch {}, max_queue_delay {} us",
        r.items,
        r.history,
        r.requests,
        r.concurrency,
        r.sessions,
        r.intra_threads,
        r.max_batch,
        r.max_queue_delay_us
    );
    println!("  raw ORT, full batches {:>10.0} rows/s", r.raw_rows_per_s);
    println!(
        "  unbatched             {:>10.0} requests/s  p50 {:.2} ms  p99 {:.2} ms",
        r.unbatched_per_s, r.unbatched_p50_ms, r.unbatched_p99_ms
    );
    println!(
        "  batched               {:>10.0} requests/s  p50 {:.2} ms  p99 {:.2} ms  ({:.1} rows per batch)",
        r.batched_per_s, r.batched_p50_ms, r.batched_p99_ms, r.mean_batch_rows
    );
    println!(
        "  batched / unbatched {:.2}, batched / raw {:.2}; scores agree within {:.1e}",
        r.batched_over_unbatched, r.batched_over_raw, r.max_abs_diff
    );
}
