//! `shopmind bench edge`: what API keys, rate limits and TLS cost a gateway call. Calls answered at
//! the edge (GetCustomerProfile without a user: INVALID_ARGUMENT after the key, tenant and
//! rate-limit checks, no downstream hop) through a real tonic client and server on loopback, in
//! four set-ups: open and plaintext (the raw baseline of the run), with keys and a rate limit,
//! with TLS, and with both.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use shopmind_bus::{Bus, MemoryBus};
use shopmind_config::Config;
use shopmind_local_servers::Certificates;
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use shopmind_runtime::Shutdown;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// One set-up's result.
#[derive(Debug, serde::Serialize)]
pub struct EdgeRun {
    pub setup: &'static str,
    pub calls: usize,
    pub seconds: f64,
    pub calls_per_s: f64,
    /// Calls per second relative to the open plaintext gateway of the same run.
    pub ratio: f64,
}

#[derive(Debug, serde::Serialize)]
pub struct EdgeReport {
    pub calls: usize,
    pub concurrency: usize,
    /// API keys configured (each call's key is compared with every one of them).
    pub keys: usize,
    pub runs: Vec<EdgeRun>,
}

const TENANT: &str = "bench-edge";

fn key_of(i: usize) -> String {
    format!("bench-edge-key-{i:08}")
}

async fn start(config: Config, shutdown: &Shutdown) -> anyhow::Result<u16> {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(shopmind_gateway::run(config, bus, listener, shutdown.clone()));
    Ok(port)
}

async fn channel(port: u16, tls: Option<ClientTlsConfig>) -> anyhow::Result<Channel> {
    let scheme = if tls.is_some() { "https://localhost" } else { "http://127.0.0.1" };
    let mut endpoint = Endpoint::from_shared(format!("{scheme}:{port}"))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    // The gateway starts in the background: retry the first connection for a while.
    let mut last = None;
    for _ in 0..100 {
        match endpoint.connect().await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Err(anyhow::anyhow!("the gateway did not accept connections: {last:?}"))
}

/// `calls` calls by `concurrency` callers; the time they took.
async fn drive(
    channel: Channel,
    key: Option<String>,
    calls: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..concurrency {
        let mut client = GatewayClient::new(channel.clone());
        let key = key.clone();
        let share = calls / concurrency + usize::from(c < calls % concurrency);
        tasks.spawn(async move {
            for _ in 0..share {
                let mut request = tonic::Request::new(pb::GetCustomerProfileRequest {
                    tenant: TENANT.into(),
                    ..Default::default()
                });
                if let Some(k) = &key {
                    request.metadata_mut().insert("authorization", format!("Bearer {k}").parse()?);
                }
                let status =
                    client.get_customer_profile(request).await.err().context("expected a refusal")?;
                anyhow::ensure!(status.code() == tonic::Code::InvalidArgument, "unexpected {status:?}");
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed().as_secs_f64())
}

pub async fn run(calls: usize, concurrency: usize, keys: usize) -> anyhow::Result<EdgeReport> {
    let (calls, concurrency, keys) = (calls.max(1), concurrency.max(1), keys.max(1));
    let certs = Certificates::generate()?;
    let ca = Certificate::from_pem(std::fs::read(certs.ca())?);
    let client_tls = ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost");
    let mut runs: Vec<EdgeRun> = Vec::new();
    for (setup, secured, tls) in [
        ("open, plaintext (baseline)", false, false),
        ("keys + rate limit, plaintext", true, false),
        ("open, TLS", false, true),
        ("keys + rate limit, TLS", true, true),
    ] {
        let mut config = Config::default();
        config.log.level = "warn".into();
        if secured {
            for i in 0..keys {
                let tenant = if i == keys - 1 { TENANT.to_string() } else { format!("t{i}") };
                config.gateway.api_keys.insert(key_of(i), tenant);
            }
            // Enough tokens that none is refused: the cost of the bucket, not of refusals.
            config.gateway.rate_limit.requests_per_second = 1_000_000.0;
            config.gateway.rate_limit.burst = u32::MAX;
        }
        if tls {
            config.gateway.tls.cert_file = certs.server_cert().display().to_string();
            config.gateway.tls.key_file = certs.server_key().display().to_string();
        }
        let shutdown = Shutdown::new();
        let port = start(config, &shutdown).await?;
        let channel = channel(port, tls.then(|| client_tls.clone())).await?;
        let key = secured.then(|| key_of(keys - 1));
        // Warm-up: connections, TLS sessions, allocations.
        drive(channel.clone(), key.clone(), (calls / 20).max(concurrency), concurrency).await?;
        let seconds = drive(channel, key, calls, concurrency).await?;
        shutdown.trigger();
        let calls_per_s = calls as f64 / seconds;
        let base = runs.first().map_or(calls_per_s, |b| b.calls_per_s);
        runs.push(EdgeRun { setup, calls, seconds, calls_per_s, ratio: calls_per_s / base });
    }
    Ok(EdgeReport { calls, concurrency, keys, runs })
}

pub fn print(r: &EdgeReport) {
    println!(
        "bench edge: {} calls answered at the gateway (GetCustomerProfile -> INVALID_ARGUMENT), {} \
         callers on one HTTP/2 connection, {} API keys",
        r.calls, r.concurrency, r.keys
    );
    println!("| set-up | calls/s | vs open plaintext |");
    println!("|---|---|---|");
    for run in &r.runs {
        println!("| {} | {:.0} | {:.2} |", run.setup, run.calls_per_s, run.ratio);
    }
}
