//! `shopmind bench`: measured figures, each next to a raw baseline from the same run
//! (docs/BENCHMARKS.md). One file a benchmark: `ingest.rs` (events through the pipeline),
//! `memory.rs` (Redis bytes per entity), `train.rs` (training time and memory), `rank.rs`
//! (ranking candidates vs scoring every item), `edge.rs` (what keys, rate limits and TLS cost a
//! call), `infer.rs` (scoring with and without micro-batching), `recommend.rs` (Recommend latency
//! under load), `assist.rs` (Assist latency). This module parses the arguments, runs the chosen
//! one, prints its report (a table, or one JSON object with `--json`), and holds what several of
//! them use: the private servers of `--spawn-servers`, a seeded generator, percentiles.

mod assist;
mod edge;
mod infer;
mod ingest;
mod memory;
mod rank;
mod recommend;
mod train;

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use shopmind_config::Config;
use shopmind_local_servers::{NatsServer, RedisServer};

#[derive(Subcommand, Debug, Clone)]
pub enum BenchTarget {
    /// End-to-end events per second (gRPC -> JetStream -> feature -> Redis) next to the raw
    /// JetStream async-publish rate of the same run, their ratio, and event-to-feature freshness.
    Ingest {
        /// Simulated events to send.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Concurrent PublishEvents callers.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Events per PublishEvents call.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Simulator seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start private nats-server and redis-server processes on free ports (the default when
        /// neither nats.url nor redis.url is configured).
        #[arg(long)]
        spawn_servers: bool,
        /// Print one JSON object on stdout (the table goes to stderr).
        #[arg(long)]
        json: bool,
    },
    /// Redis bytes per user, session, item and applied-event guard after a simulated shop's
    /// events are applied, next to the protobuf bytes of those events.
    Memory {
        /// Simulated users.
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Simulated days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Events per store round trip (default: the feature service's `feature.batch_size`;
        /// 1 applies one event per call).
        #[arg(long)]
        batch: Option<usize>,
        /// Events in flight (default: `feature.concurrency`).
        #[arg(long)]
        in_flight: Option<usize>,
        /// Use a private redis-server on a free port (the default without redis.url).
        #[arg(long)]
        spawn_servers: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Training time and peak memory of the embedding recommender on ml-100k and on N simulated
    /// interactions, next to raw baselines (interning the interactions; one pass of plain dot
    /// products) measured in the same run.
    Train {
        /// Simulated interactions.
        #[arg(long, default_value_t = 1_000_000)]
        interactions: usize,
        /// Simulator and training seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Epochs (default: the model's default).
        #[arg(long)]
        epochs: Option<usize>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Embedding-model ranking of a few candidates per request next to scoring every item (the
    /// baseline), through the micro-batcher, on a seeded random model (CPU; inference.intra_threads).
    Rank {
        /// Items of the model.
        #[arg(long, default_value_t = 100_000)]
        items: usize,
        /// Floats per embedding.
        #[arg(long, default_value_t = 64)]
        dim: usize,
        /// Longest history; each request has 1 to this many entries.
        #[arg(long, default_value_t = 50)]
        history: usize,
        /// Candidates each request ranks.
        #[arg(long, default_value_t = 500)]
        candidates: usize,
        /// Requests per phase.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Concurrent callers.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[command(flatten)]
        batching: BatchingArgs,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// What API keys, rate limits and TLS cost a gateway call: calls answered at the edge, open
    /// and plaintext (the baseline) next to keys + rate limit, TLS, and both (edge.rs).
    Edge {
        /// Calls per set-up.
        #[arg(long, default_value_t = 50_000)]
        calls: usize,
        /// Concurrent callers (on one HTTP/2 connection).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// API keys configured.
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Co-visitation scoring throughput through the micro-batcher and without it, next to the raw
    /// ONNX Runtime run of full batches, on a seeded random model (CPU; inference.intra_threads).
    Infer {
        /// Items of the model (inference scores all of them per request).
        #[arg(long, default_value_t = 2000)]
        items: usize,
        /// Longest history; each request has 1 to this many entries.
        #[arg(long, default_value_t = 20)]
        history: usize,
        /// Requests per phase.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent callers.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[command(flatten)]
        batching: BatchingArgs,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// `Recommend` (FOR_YOU) through the gateway at several concurrencies against a simulated
    /// tenant written to Redis, with an embedding model over every item: QPS and p50/p99/p99.9,
    /// next to the raw Redis round trip and ORT run of one request measured in the same run.
    Recommend {
        /// Simulated users (written to Redis).
        #[arg(long, default_value_t = 1_000_000)]
        users: usize,
        /// Simulated items (the model scores all of them).
        #[arg(long, default_value_t = 100_000)]
        items: usize,
        /// Interactions per user: 1 to twice this.
        #[arg(long, default_value_t = 12)]
        interactions: usize,
        /// Users whose interactions train the model.
        #[arg(long, default_value_t = 200_000)]
        train_users: usize,
        /// Training epochs (production trains 30).
        #[arg(long, default_value_t = 3)]
        epochs: usize,
        /// Measured seconds per concurrency (after a 2 s warm-up).
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Concurrent gRPC callers, one phase each.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// `Assist` latency (p50/p99) through the gateway for typical customer messages, next to the
    /// raw sentence-encoder run time of the same messages (CPU; private NATS and Redis).
    Assist {
        /// Messages sent (conversations of ten typical messages).
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(what: BenchTarget, config: Config) -> anyhow::Result<()> {
    match what {
        BenchTarget::Recommend {
            users,
            items,
            interactions,
            train_users,
            epochs,
            seconds,
            concurrency,
            seed,
            json,
        } => {
            let opts = recommend::RecommendOptions {
                users,
                items,
                interactions,
                train_users,
                epochs,
                seconds,
                concurrency,
                seed,
            };
            emit(&recommend::run(opts, config).await?, json, recommend::print)
        }
        BenchTarget::Assist { requests, json } => {
            emit(&assist::run(requests, config).await?, json, assist::print)
        }
        BenchTarget::Train { interactions, seed, epochs, json } => {
            let report =
                tokio::task::spawn_blocking(move || train::run(interactions, seed, epochs)).await??;
            emit(&report, json, train::print)
        }
        BenchTarget::Edge { calls, concurrency, keys, json } => {
            emit(&edge::run(calls, concurrency, keys).await?, json, edge::print)
        }
        BenchTarget::Ingest { events, concurrency, batch, seed, spawn_servers, json } => {
            let opts = ingest::IngestOptions { events, concurrency, batch, seed, spawn_servers, json };
            ingest::run(opts, config).await
        }
        BenchTarget::Rank {
            items,
            dim,
            history,
            candidates,
            requests,
            concurrency,
            batching,
            seed,
            json,
        } => {
            let batching = batching.resolve(&config);
            let opts =
                rank::RankOptions { items, dim, history, candidates, requests, concurrency, batching, seed };
            emit(&rank::run(opts, &config).await?, json, rank::print)
        }
        BenchTarget::Infer { items, history, requests, concurrency, batching, seed, json } => {
            let batching = batching.resolve(&config);
            let opts = infer::InferOptions { items, history, requests, concurrency, batching, seed };
            emit(&infer::run(opts, &config).await?, json, infer::print)
        }
        BenchTarget::Memory { users, days, seed, batch, in_flight, spawn_servers, json } => {
            let servers = if spawn_servers || config.redis.url.is_empty() {
                Some(Servers::spawn().await?)
            } else {
                None
            };
            let url = servers.as_ref().map_or_else(|| config.redis.url.clone(), |s| s.redis.url());
            let batch = batch.unwrap_or(config.feature.batch_size).max(1);
            let in_flight = in_flight.unwrap_or(config.feature.concurrency).max(batch);
            let report = memory::run(&url, users, days, seed, batch, in_flight).await;
            if let Some(s) = servers {
                s.stop().await;
            }
            emit(&report?, json, memory::print)
        }
    }
}

/// Prints a benchmark's report: one JSON object with `--json`, else its table.
fn emit<R: serde::Serialize>(report: &R, json: bool, table: fn(&R)) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        table(report);
    }
    Ok(())
}

/// The micro-batching flags of `bench rank` and `bench infer`.
#[derive(clap::Args, Debug, Clone)]
pub struct BatchingArgs {
    /// Sessions in the pool (default: inference.sessions).
    #[arg(long)]
    sessions: Option<usize>,
    /// Rows per batch (default: inference.max_batch).
    #[arg(long)]
    max_batch: Option<usize>,
    /// Longest wait for a batch to fill, microseconds (default: inference.max_queue_delay_us).
    #[arg(long)]
    max_queue_delay_us: Option<u64>,
}

/// How a benchmark batches: the flags, else the inference configuration.
#[derive(Clone, Copy, Debug)]
pub struct Batching {
    pub sessions: usize,
    pub max_batch: usize,
    pub max_queue_delay_us: u64,
}

impl BatchingArgs {
    fn resolve(&self, config: &Config) -> Batching {
        Batching {
            sessions: self.sessions.unwrap_or(config.inference.sessions).max(1),
            max_batch: self.max_batch.unwrap_or(config.inference.max_batch).max(1),
            max_queue_delay_us: self.max_queue_delay_us.unwrap_or(config.inference.max_queue_delay_us),
        }
    }
}

/// A run-unique id: lowercase hex of the clock and the process id.
pub fn unique_id() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    format!("{:x}{:x}", nanos & 0xffff_ffff_ffff, std::process::id())
}

/// Nearest-rank percentile of sorted values; 0 when there are none.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Private `nats-server` (JetStream, temporary store) and `redis-server` (nothing on disk) on
/// free ports (`--spawn-servers`), killed when dropped.
pub struct Servers {
    pub nats: NatsServer,
    pub redis: RedisServer,
}

impl Servers {
    pub async fn spawn() -> anyhow::Result<Self> {
        let start = || -> Result<Self, shopmind_local_servers::Error> {
            Ok(Self { nats: NatsServer::start()?, redis: RedisServer::start()? })
        };
        tokio::task::spawn_blocking(start)
            .await
            .context("starting servers")?
            .map_err(|e| anyhow::anyhow!("--spawn-servers: {e}\n(or pass --nats-url and --redis-url)"))
    }

    /// Kills both servers and waits until they are gone.
    pub async fn stop(self) {
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }
}

/// splitmix64: a seeded generator, enough for a benchmark's data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The percentile `p` of sorted latencies, in milliseconds: the value at the rounded linear
/// index (`bench infer`, `bench rank`); 0 when there are none.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// A progress bar of `len` steps labelled `what` (right-aligned, so that the bars of a run line
/// up), with the rate and the time left.
pub fn bar(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let template = format!("{what:>16} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, {{eta}} left)");
    bar.set_style(
        indicatif::ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.50), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
