//! `shopmind bench ingest` (see docs/BENCHMARKS.md):
//!
//! 1. generates N events with the simulator, before any clock runs;
//! 2. **raw baseline**: publishes the same N encoded events with JetStream async publish
//!    (a window of acks in flight) to a scratch stream `SM_BENCH_RAW_<id>`, deleted afterwards;
//! 3. **end to end**: starts every service in-process as `all-in-one` does, on NATS and Redis,
//!    sends the events through the gateway's `PublishEvents` (gRPC -> gateway -> JetStream ->
//!    feature -> Redis) and stops the clock when the feature consumer has caught up;
//! 4. **freshness**: meanwhile, every 100 ms a probe event (a view by a probe user) goes the same
//!    way, and the time until it is visible in the user's features is recorded; a few more probes
//!    after the load give the freshness of an idle pipeline;
//! 5. **CPU**: the CPU seconds this process and the spawned servers used during the raw baseline
//!    and the end-to-end run, per event (from `/proc/<pid>/stat`).
//!
//! Servers: with `--spawn-servers` (the default when neither `nats.url` nor `redis.url` is set)
//! private `nats-server` and `redis-server` processes run on free ports and are removed at the
//! end. Against configured servers every run uses its own tenant and scratch stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream;
use bytes::Bytes;
use prost::Message as _;
use shopmind_config::Config;
use shopmind_domain::{ItemId, TenantId, UnixMillis, UserId};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::{Shutdown, topology};
use shopmind_simulator::{DAY_MS, SimConfig, Simulator};
use shopmind_store::{FeatureStore, Read, Value};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use super::{Servers, percentile, unique_id};
use crate::common::{connect_gateway, counter_bar};

/// The ratio of end-to-end to raw publish rate the pipeline should reach (issue: event pipeline
/// at production grade).
const TARGET_RATIO: f64 = 0.5;
/// Publish acks awaited in flight by the raw baseline.
const RAW_ACK_WINDOW: usize = 4096;
/// How often a freshness probe is sent during the load.
const PROBE_EVERY: Duration = Duration::from_millis(100);
/// Probes sent one after another once the pipeline is idle.
const IDLE_PROBES: usize = 50;
/// A probe not visible after this long is counted as timed out.
const PROBE_TIMEOUT: Duration = Duration::from_secs(900);
/// How often the oldest outstanding probes are looked for in the store, and how many at once.
const PROBE_POLL: Duration = Duration::from_millis(2);
const PROBE_WATCH: usize = 16;
/// Deadline of one `PublishEvents` call (the gateway honours `grpc-timeout`).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Simulated days; the start is set so that the last day ends before now.
const SIM_DAYS: u32 = 28;

pub struct IngestOptions {
    pub events: usize,
    pub concurrency: usize,
    pub batch: usize,
    pub seed: u64,
    pub spawn_servers: bool,
    pub json: bool,
}

pub async fn run(opts: IngestOptions, mut config: Config) -> anyhow::Result<()> {
    if opts.events == 0 {
        bail!("--events must be at least 1");
    }
    if opts.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    if opts.batch == 0 || opts.batch > config.gateway.max_batch {
        bail!("--batch must be in 1..={} (gateway.max_batch), got {}", config.gateway.max_batch, opts.batch);
    }
    let no_urls = config.nats.url.is_empty() && config.redis.url.is_empty();
    let servers = if opts.spawn_servers || no_urls {
        let s = Servers::spawn().await?;
        config.nats.url = s.nats.url();
        config.redis.url = s.redis.url();
        Some(s)
    } else {
        if config.nats.url.is_empty() {
            bail!(
                "`bench ingest` needs NATS: pass --nats-url nats://HOST:PORT (and --redis-url), or \
                 --spawn-servers to start private servers"
            );
        }
        if config.redis.url.is_empty() {
            bail!(
                "`bench ingest` needs Redis: pass --redis-url redis://HOST:PORT/ (and --nats-url), or \
                 --spawn-servers to start private servers"
            );
        }
        None
    };
    let id = unique_id();
    let tenant = format!("bench-{id}");

    // 1. Events, before any clock runs.
    let started = Instant::now();
    let events = generate(&tenant, opts.events, opts.seed)?;
    let generate_s = started.elapsed().as_secs_f64();
    let payloads: Vec<Bytes> = events.iter().map(|e| Bytes::from(e.encode_to_vec())).collect();
    let bytes: usize = payloads.iter().map(Bytes::len).sum();

    let meter = CpuMeter {
        nats: servers.as_ref().map(|s| s.nats.pid()),
        redis: servers.as_ref().map(|s| s.redis.pid()),
    };

    // 2. The raw baseline.
    let before_raw = meter.sample();
    let raw = raw_publish(&config.nats.url, &id, payloads, &config).await?;
    let raw_cpu = meter.sample().since(&before_raw);

    // 3 and 4. End to end, with freshness probes.
    let e2e = end_to_end(&config, &tenant, events, &opts, &meter).await?;
    if let Some(servers) = servers {
        servers.stop().await;
    }

    let report = Report {
        events: opts.events,
        concurrency: opts.concurrency,
        batch: opts.batch,
        seed: opts.seed,
        tenant,
        servers: if opts.spawn_servers || no_urls { "spawned" } else { "external" },
        generate_s,
        avg_event_bytes: bytes as f64 / opts.events as f64,
        raw,
        raw_cpu,
        e2e,
    };
    report.print(opts.json);
    Ok(())
}

/// `n` simulated events of `tenant`: enough users for 28 days to yield them, cut at `n`.
fn generate(tenant: &str, n: usize, seed: u64) -> anyhow::Result<Vec<pb::Event>> {
    let bar = counter_bar(n as u64, "generating events");
    // About 70 events per user in 28 days with the default knobs; the catalog adds 2 per item.
    let mut users = n.div_ceil(50).max(10);
    let items = (n / 200).clamp(20, 500);
    let start_ms = UnixMillis::now().0 - i64::from(SIM_DAYS + 1) * DAY_MS;
    for _ in 0..6 {
        let cfg = SimConfig {
            seed,
            tenant: tenant.to_string(),
            users,
            items,
            days: SIM_DAYS,
            start_ms,
            ..SimConfig::default()
        };
        let sim = Simulator::new(cfg).context("configuring the simulator")?;
        let mut events = Vec::with_capacity(n);
        for e in sim.take(n) {
            events.push(e);
            if events.len() % 10_000 == 0 {
                bar.set_position(events.len() as u64);
            }
        }
        if events.len() == n {
            bar.finish_and_clear();
            return Ok(events);
        }
        users *= 2;
    }
    bar.finish_and_clear();
    bail!("the simulator did not yield {n} events")
}

struct RawResult {
    seconds: f64,
}

/// The processes whose CPU time a run reads: this one (gateway, ingest, feature and the
/// senders), and the spawned nats-server and redis-server (unknown for external servers).
#[derive(Clone)]
struct CpuMeter {
    nats: Option<u32>,
    redis: Option<u32>,
}

/// CPU seconds (user + system) used so far by this process and the servers.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    shopmind: Option<f64>,
    nats: Option<f64>,
    redis: Option<f64>,
}

impl CpuMeter {
    fn sample(&self) -> CpuSample {
        CpuSample {
            shopmind: cpu_seconds("self"),
            nats: self.nats.and_then(|p| cpu_seconds(&p.to_string())),
            redis: self.redis.and_then(|p| cpu_seconds(&p.to_string())),
        }
    }
}

impl CpuSample {
    /// CPU seconds used between `earlier` and this sample, per process.
    fn since(&self, earlier: &CpuSample) -> CpuSample {
        let d = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        CpuSample {
            shopmind: d(self.shopmind, earlier.shopmind),
            nats: d(self.nats, earlier.nats),
            redis: d(self.redis, earlier.redis),
        }
    }

    fn json(&self, per: Option<f64>) -> serde_json::Value {
        let v = |x: Option<f64>| x.map(|x| per.map_or(x, |n| x * 1e6 / n));
        serde_json::json!({
            "shopmind": v(self.shopmind),
            "nats_server": v(self.nats),
            "redis_server": v(self.redis),
        })
    }
}

/// User + system CPU seconds of a process from `/proc/<pid>/stat` (Linux; None elsewhere).
/// The kernel reports them in USER_HZ ticks, 100 per second.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Publishes every payload to a scratch stream with JetStream async publish, keeping
/// [`RAW_ACK_WINDOW`] acks in flight; the stream is deleted afterwards.
async fn raw_publish(
    url: &str,
    id: &str,
    payloads: Vec<Bytes>,
    config: &Config,
) -> anyhow::Result<RawResult> {
    let bus = shopmind_bus::NatsBus::connect(url, "shopmind-bench-raw").await?;
    let js = jetstream::new(bus.client().clone());
    let name = format!("SM_BENCH_RAW_{}", id.to_uppercase());
    let subject = format!("bench.raw.{id}.event");
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("bench.raw.{id}.>")],
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(u64::from(config.streams.duplicate_window_s)),
        max_bytes: -1,
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating the scratch stream {name}"))?;
    let result = raw_publish_all(&js, &subject, payloads).await;
    let deleted =
        js.delete_stream(&name).await.with_context(|| format!("deleting the scratch stream {name}"));
    let _ = bus.client().flush().await;
    let seconds = result?;
    deleted?;
    Ok(RawResult { seconds })
}

async fn raw_publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: Vec<Bytes>,
) -> anyhow::Result<f64> {
    let n = payloads.len() as u64;
    let bar = counter_bar(n, "raw JetStream publish");
    let mut inflight: std::collections::VecDeque<jetstream::context::PublishAckFuture> =
        std::collections::VecDeque::with_capacity(RAW_ACK_WINDOW);
    let started = Instant::now();
    for (i, payload) in payloads.into_iter().enumerate() {
        if inflight.len() >= RAW_ACK_WINDOW
            && let Some(ack) = inflight.pop_front()
        {
            ack.await.context("raw publish ack")?;
        }
        inflight.push_back(js.publish(subject.to_string(), payload).await.context("raw publish")?);
        if i % 4096 == 0 {
            bar.set_position(i as u64);
        }
    }
    for ack in inflight {
        ack.await.context("raw publish ack")?;
    }
    let seconds = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(seconds)
}

#[derive(Default)]
struct Totals {
    accepted: u64,
    duplicates: u64,
    rejected: u64,
}

struct E2eResult {
    /// From the first send until every PublishEvents call returned.
    accept_s: f64,
    /// From the first send until the feature consumer caught up.
    e2e_s: f64,
    totals: Totals,
    caught_up: bool,
    /// Messages added to SM_EVENTS (the events and the probes).
    stored: u64,
    dead_letters: u64,
    load_probes: Probes,
    idle_probes: Probes,
    /// CPU seconds per process from the first send until caught up.
    cpu: CpuSample,
}

async fn end_to_end(
    config: &Config,
    tenant: &str,
    events: Vec<pb::Event>,
    opts: &IngestOptions,
    meter: &CpuMeter,
) -> anyhow::Result<E2eResult> {
    let n = events.len() as u64;
    let shutdown = Shutdown::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = crate::all_in_one::AllInOne::start(config.clone(), listener, shutdown.clone(), false).await?;
    let bus = app.backends.bus.clone();
    let store = app.backends.store.clone();
    let endpoint = format!("http://{}", app.addr);
    let waiter = tokio::spawn(app.wait());
    let result = async {
        let channel = connect_gateway(&endpoint).await?;
        let tenant_id =
            TenantId::parse(tenant.to_string()).map_err(|e| anyhow::anyhow!("tenant {tenant:?}: {e}"))?;
        wait_for_consumer(&*bus).await?;
        let events_before = bus.stream_state(topology::EVENTS_STREAM).await?.last_sequence;
        let dlq_before = bus.stream_state(topology::DLQ_STREAM).await?.last_sequence;

        // Requests are built before the clock runs, so the senders only send.
        let mut requests = Vec::with_capacity(events.len().div_ceil(opts.batch));
        let mut events = events.into_iter().peekable();
        while events.peek().is_some() {
            let chunk: Vec<pb::Event> = events.by_ref().take(opts.batch).collect();
            requests.push(pb::PublishEventsRequest { tenant: tenant.to_string(), events: chunk });
        }
        let queue = Arc::new(Mutex::new(requests.into_iter()));

        let bars = indicatif::MultiProgress::new();
        let sent_bar = bars.add(counter_bar(n, "gRPC accepted  "));
        let applied_bar = bars.add(counter_bar(n, "feature applied"));
        let cpu_before = meter.sample();
        let started = Instant::now();
        let mut senders = JoinSet::new();
        for _ in 0..opts.concurrency {
            let queue = queue.clone();
            let mut client = GatewayClient::new(channel.clone());
            let bar = sent_bar.clone();
            senders.spawn(async move { send_all(&mut client, &queue, &bar).await });
        }
        let stop_probes = Arc::new(AtomicBool::new(false));
        let probes = tokio::spawn(load_probes(
            GatewayClient::new(channel.clone()),
            store.clone(),
            tenant_id.clone(),
            stop_probes.clone(),
        ));

        let mut totals = Totals::default();
        let mut accept_s = None;
        let e2e_s = loop {
            while let Some(joined) = senders.try_join_next() {
                let t = joined.context("a sender task failed")??;
                totals.accepted += t.accepted;
                totals.duplicates += t.duplicates;
                totals.rejected += t.rejected;
            }
            if accept_s.is_none() && senders.is_empty() {
                accept_s = Some(started.elapsed().as_secs_f64());
                sent_bar.finish();
            }
            let lag = bus.consumer_lag(topology::EVENTS_STREAM, shopmind_feature::DURABLE).await?;
            let stored =
                bus.stream_state(topology::EVENTS_STREAM).await?.last_sequence.saturating_sub(events_before);
            applied_bar.set_position(stored.saturating_sub(lag.pending + lag.ack_pending).min(n));
            if accept_s.is_some() && lag.is_caught_up() {
                break started.elapsed().as_secs_f64();
            }
            let pause = if accept_s.is_some() { 5 } else { 100 };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        };
        let cpu = meter.sample().since(&cpu_before);
        applied_bar.finish();
        stop_probes.store(true, Ordering::Relaxed);
        let load_probes = probes.await.context("the probe task failed")??;
        bars.clear().ok();

        let mut client = GatewayClient::new(channel.clone());
        let mut idle = Vec::with_capacity(IDLE_PROBES);
        for k in 0..IDLE_PROBES {
            idle.push(probe(&mut client, &*store, &tenant_id, &format!("idle-{k}")).await?);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let lag = bus.consumer_lag(topology::EVENTS_STREAM, shopmind_feature::DURABLE).await?;
        let stored =
            bus.stream_state(topology::EVENTS_STREAM).await?.last_sequence.saturating_sub(events_before);
        let dead_letters =
            bus.stream_state(topology::DLQ_STREAM).await?.last_sequence.saturating_sub(dlq_before);
        anyhow::Ok(E2eResult {
            accept_s: accept_s.unwrap_or(e2e_s),
            e2e_s,
            totals,
            caught_up: lag.is_caught_up(),
            stored,
            dead_letters,
            load_probes: Probes::from(load_probes),
            idle_probes: Probes::from(idle),
            cpu,
        })
    }
    .await;
    // A service that failed during the run is the cause of whatever went wrong here.
    let failed_early = waiter.is_finished();
    shutdown.trigger();
    let stopped = match tokio::time::timeout(Shutdown::GRACE, waiter).await {
        Ok(Ok(stopped)) => stopped,
        Ok(Err(e)) => Err(anyhow::anyhow!("the all-in-one task failed: {e}")),
        Err(_) => Err(anyhow::anyhow!("the services did not stop within {:?}", Shutdown::GRACE)),
    };
    match (result, stopped) {
        (Ok(r), Ok(())) => Ok(r),
        (Err(e), Err(service)) if failed_early => {
            Err(service.context(format!("a service failed during the run ({e:#})")))
        }
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.context("stopping the services")),
    }
}

/// Waits until the feature service has created its durable consumer.
async fn wait_for_consumer(bus: &dyn shopmind_bus::Bus) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match bus.consumer_lag(topology::EVENTS_STREAM, shopmind_feature::DURABLE).await {
            Ok(lag) => {
                if !lag.is_caught_up() {
                    tracing::warn!(?lag, "the feature consumer has a backlog before the run: it counts in");
                }
                return Ok(());
            }
            Err(e) if Instant::now() > deadline => {
                return Err(e).context("the feature consumer did not start");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn send_all(
    client: &mut GatewayClient<Channel>,
    queue: &Mutex<std::vec::IntoIter<pb::PublishEventsRequest>>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<Totals> {
    let mut totals = Totals::default();
    loop {
        let next = match queue.lock() {
            Ok(mut q) => q.next(),
            Err(_) => bail!("the request queue is poisoned"),
        };
        let Some(request) = next else { return Ok(totals) };
        let len = request.events.len() as u64;
        let mut request = tonic::Request::new(request);
        request.set_timeout(CALL_TIMEOUT);
        let r = client.publish_events(request).await.context("PublishEvents")?.into_inner();
        totals.accepted += u64::from(r.accepted);
        totals.duplicates += u64::from(r.duplicates);
        totals.rejected += r.rejected.len() as u64;
        bar.inc(len);
    }
}

/// Sends a probe every [`PROBE_EVERY`] until `stop`, and returns each probe's latency (None:
/// timed out) once all are visible.
///
/// One poller watches the oldest probes still outstanding (up to [`PROBE_WATCH`] of them, in one
/// store round trip every [`PROBE_POLL`]): the feature consumer applies the stream in order, so
/// probes become visible in the order they were sent, and the polling load on the store stays
/// the same however long the backlog makes them wait.
async fn load_probes(
    client: GatewayClient<Channel>,
    store: Arc<dyn FeatureStore>,
    tenant: TenantId,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<Option<Duration>>> {
    let mut latencies = Vec::new();
    let mut outstanding: VecDeque<(UserId, Instant)> = VecDeque::new();
    let mut publishes = JoinSet::new();
    let mut next_probe = Instant::now();
    let mut k = 0u64;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if !stopping && Instant::now() >= next_probe {
            let (event, user) = probe_event(&tenant, &format!("load-{k}"))?;
            k += 1;
            next_probe += PROBE_EVERY;
            outstanding.push_back((user, Instant::now()));
            let mut client = client.clone();
            let tenant = tenant.to_string();
            publishes.spawn(async move { publish_probe(&mut client, &tenant, event).await });
        }
        while let Some(joined) = publishes.try_join_next() {
            joined.context("a probe task failed")??;
        }
        if !outstanding.is_empty() {
            let watched = outstanding.len().min(PROBE_WATCH);
            let reads = outstanding
                .iter()
                .take(watched)
                .map(|(user, _)| Read::SortedTop {
                    key: shopmind_features::keys::user_recent(&tenant, user),
                    n: 1,
                })
                .collect();
            let values = store.read(reads).await?;
            let now = Instant::now();
            let mut kept = VecDeque::with_capacity(outstanding.len());
            for (i, (user, sent)) in outstanding.drain(..).enumerate() {
                let visible = matches!(values.get(i), Some(Value::Sorted(entries)) if !entries.is_empty());
                if visible {
                    latencies.push(Some(now - sent));
                } else if now - sent > PROBE_TIMEOUT {
                    latencies.push(None);
                } else {
                    kept.push_back((user, sent));
                }
            }
            outstanding = kept;
        }
        if stopping && outstanding.is_empty() && publishes.is_empty() {
            return Ok(latencies);
        }
        tokio::time::sleep(PROBE_POLL).await;
    }
}

/// A view of a fresh item by a fresh user (the probe's only event), and the user.
fn probe_event(tenant: &TenantId, name: &str) -> anyhow::Result<(pb::Event, UserId)> {
    let user =
        UserId::parse(format!("bench-probe-{name}")).map_err(|e| anyhow::anyhow!("probe user: {e}"))?;
    let event = pb::Event {
        event_id: format!("bench-probe-{name}"),
        tenant: tenant.to_string(),
        occurred_at: Some(UnixMillis::now().to_proto()),
        user_id: user.to_string(),
        session_id: String::new(),
        payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: format!("bench-probe-item-{name}"),
            source: "bench".into(),
        })),
    };
    Ok((event, user))
}

async fn publish_probe(
    client: &mut GatewayClient<Channel>,
    tenant: &str,
    event: pb::Event,
) -> anyhow::Result<()> {
    let mut request =
        tonic::Request::new(pb::PublishEventsRequest { tenant: tenant.to_string(), events: vec![event] });
    request.set_timeout(CALL_TIMEOUT);
    client.publish_events(request).await.context("PublishEvents (probe)")?;
    Ok(())
}

/// Publishes a view of a fresh item by a fresh user and polls the user's features until it is
/// there: the event-to-feature latency, or None after [`PROBE_TIMEOUT`]. Polls at about 2% of
/// the time waited so far, so that slow probes do not load the store.
async fn probe(
    client: &mut GatewayClient<Channel>,
    store: &dyn FeatureStore,
    tenant: &TenantId,
    name: &str,
) -> anyhow::Result<Option<Duration>> {
    let (event, user) = probe_event(tenant, name)?;
    let item =
        ItemId::parse(format!("bench-probe-item-{name}")).map_err(|e| anyhow::anyhow!("probe item: {e}"))?;
    let sent = Instant::now();
    publish_probe(client, tenant.as_str(), event).await?;
    loop {
        let ctx = shopmind_features::read_user_context(store, tenant, &user, 1, 0).await?;
        let waited = sent.elapsed();
        if ctx.recent.iter().any(|i| i.item == item) {
            return Ok(Some(waited));
        }
        if waited > PROBE_TIMEOUT {
            return Ok(None);
        }
        tokio::time::sleep((waited / 50).clamp(Duration::from_micros(500), Duration::from_millis(200))).await;
    }
}

/// Latency percentiles of probes, in milliseconds.
struct Probes {
    count: usize,
    timed_out: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl From<Vec<Option<Duration>>> for Probes {
    fn from(all: Vec<Option<Duration>>) -> Self {
        let timed_out = all.iter().filter(|l| l.is_none()).count();
        let mut ms: Vec<f64> = all.iter().flatten().map(|d| d.as_secs_f64() * 1000.0).collect();
        ms.sort_by(f64::total_cmp);
        Self {
            count: all.len(),
            timed_out,
            p50_ms: percentile(&ms, 0.50),
            p99_ms: percentile(&ms, 0.99),
            max_ms: ms.last().copied().unwrap_or(0.0),
        }
    }
}

struct Report {
    events: usize,
    concurrency: usize,
    batch: usize,
    seed: u64,
    tenant: String,
    servers: &'static str,
    generate_s: f64,
    avg_event_bytes: f64,
    raw: RawResult,
    /// CPU seconds per process during the raw baseline.
    raw_cpu: CpuSample,
    e2e: E2eResult,
}

impl Report {
    fn raw_rate(&self) -> f64 {
        self.events as f64 / self.raw.seconds
    }

    fn e2e_rate(&self) -> f64 {
        self.events as f64 / self.e2e.e2e_s
    }

    fn accept_rate(&self) -> f64 {
        self.events as f64 / self.e2e.accept_s
    }

    fn ratio(&self) -> f64 {
        self.e2e_rate() / self.raw_rate()
    }

    fn probes_json(p: &Probes) -> serde_json::Value {
        serde_json::json!({
            "count": p.count,
            "timed_out": p.timed_out,
            "p50_ms": p.p50_ms,
            "p99_ms": p.p99_ms,
            "max_ms": p.max_ms,
        })
    }

    fn json(&self) -> serde_json::Value {
        let e = &self.e2e;
        serde_json::json!({
            "bench": "ingest",
            "events": self.events,
            "concurrency": self.concurrency,
            "batch": self.batch,
            "seed": self.seed,
            "tenant": self.tenant,
            "servers": self.servers,
            "cpus": std::thread::available_parallelism().map_or(0, usize::from),
            "generate_s": self.generate_s,
            "avg_event_bytes": self.avg_event_bytes,
            "raw_publish_s": self.raw.seconds,
            "raw_msgs_per_s": self.raw_rate(),
            "grpc_accept_s": e.accept_s,
            "grpc_events_per_s": self.accept_rate(),
            "e2e_s": e.e2e_s,
            "e2e_events_per_s": self.e2e_rate(),
            "ratio": self.ratio(),
            "target_ratio": TARGET_RATIO,
            "caught_up": e.caught_up,
            "accepted": e.totals.accepted,
            "duplicates": e.totals.duplicates,
            "rejected": e.totals.rejected,
            "stored": e.stored,
            "dead_letters": e.dead_letters,
            "freshness_under_load": Self::probes_json(&e.load_probes),
            "freshness_idle": Self::probes_json(&e.idle_probes),
            "cpu_s": {
                "raw": self.raw_cpu.json(None),
                "e2e": e.cpu.json(None),
            },
            "cpu_us_per_event": {
                "raw": self.raw_cpu.json(Some(self.events as f64)),
                "e2e": e.cpu.json(Some(self.events as f64)),
            },
        })
    }

    fn table(&self) -> String {
        let e = &self.e2e;
        let probes = |p: &Probes| {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes, {} timed out)",
                p.p50_ms, p.p99_ms, p.max_ms, p.count, p.timed_out
            )
        };
        let mut t = String::new();
        let mut line = |k: &str, v: String| t.push_str(&format!("{k:<30} {v}\n"));
        line(
            "events",
            format!(
                "{} (seed {}, {:.0} B avg, generated in {:.1} s, not timed)",
                self.events, self.seed, self.avg_event_bytes, self.generate_s
            ),
        );
        line("servers", format!("{}, tenant {}", self.servers, self.tenant));
        line("senders", format!("{} x PublishEvents of {} events", self.concurrency, self.batch));
        line(
            "raw JetStream async publish",
            format!(
                "{:>10.0} msg/s  ({:.1} s, {RAW_ACK_WINDOW} acks in flight)",
                self.raw_rate(),
                self.raw.seconds
            ),
        );
        line("gRPC accepted", format!("{:>10.0} events/s  ({:.1} s)", self.accept_rate(), e.accept_s));
        line(
            "end to end (feature applied)",
            format!("{:>10.0} events/s  ({:.1} s)", self.e2e_rate(), e.e2e_s),
        );
        line(
            "ratio end to end / raw",
            format!(
                "{:>10.3}  (target >= {TARGET_RATIO}: {})",
                self.ratio(),
                if self.ratio() >= TARGET_RATIO { "met" } else { "NOT met" }
            ),
        );
        let cpu = |c: &CpuSample| {
            let one = |name: &str, x: Option<f64>| match x {
                Some(x) => format!("{name} {x:.1} s ({:.0} us/event)", x * 1e6 / self.events as f64),
                None => format!("{name} ?"),
            };
            format!(
                "{}, {}, {}",
                one("shopmind", c.shopmind),
                one("nats-server", c.nats),
                one("redis-server", c.redis)
            )
        };
        line("CPU, raw baseline", cpu(&self.raw_cpu));
        line("CPU, end to end", cpu(&e.cpu));
        line("freshness under load", probes(&e.load_probes));
        line("freshness idle", probes(&e.idle_probes));
        line(
            "check",
            format!(
                "accepted {}, duplicates {}, rejected {}, stored {}, dead letters {}, caught up {}",
                e.totals.accepted,
                e.totals.duplicates,
                e.totals.rejected,
                e.stored,
                e.dead_letters,
                e.caught_up
            ),
        );
        t
    }

    fn print(&self, json: bool) {
        if json {
            eprint!("{}", self.table());
            println!("{}", self.json());
        } else {
            print!("{}", self.table());
        }
    }
}
