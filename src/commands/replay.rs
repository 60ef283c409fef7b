//! `shopmind replay`: events from a file (docs/FILES.md) or a data set, through the gateway's
//! `PublishEvents`, in batches, as fast as possible or at a given rate; a summary at the end.
//!
//! `PublishEvents` rejects a whole batch when one event in it is invalid, so every event is
//! checked here first, with the gateway's own validation, and only valid ones are sent; should
//! the gateway still reject some (its clock or policy differs), those are counted and the rest of
//! the batch is sent again. Publishing is idempotent (`event_id`), so retrying a batch after a
//! transient failure is safe.

use std::collections::{BTreeMap, HashMap};
use std::io::Read as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis, ValidationPolicy};
use shopmind_eventfile::{EventResult, FileError};
use shopmind_proto::v1 as pb;
use shopmind_proto::v1::gateway_client::GatewayClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt as _;

/// The source name that replays MovieLens-100k.
const ML100K: &str = "ml-100k";
const ML100K_TENANT: &str = "movielens";
/// Problems printed as they are found; the rest are only counted.
const SHOW_PROBLEMS: u64 = 20;
/// Attempts of a batch after a transient failure (UNAVAILABLE, DEADLINE_EXCEEDED, ...).
const RETRIES: u32 = 3;
/// The reason counted for records of a file that could not be read.
const UNPARSEABLE: &str = "unparseable";

pub async fn run(
    config: Config,
    source: String,
    rate: Option<f64>,
    batch: usize,
    gateway: Option<String>,
    tenant: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    if let Some(r) = rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be a positive number of events per second, got {r}");
    }
    if let Some(t) = &tenant {
        TenantId::parse(t.clone()).map_err(|e| anyhow::anyhow!("--tenant {t:?}: {e}"))?;
    }
    let endpoint = endpoint(gateway, &config);

    let (events, total, unit) = open(&source, tenant.as_deref())?;
    let channel = Endpoint::from_shared(endpoint.clone())
        .with_context(|| format!("gateway endpoint {endpoint:?}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach the gateway at {endpoint}"))?;

    // With a rate, batches are kept to about a tenth of a second of events, so that they flow.
    let batch = match rate {
        Some(r) => batch.min((r / 10.0).floor().max(1.0) as usize),
        None => batch,
    };
    let bar = indicatif::ProgressBar::new(total).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "replaying {{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{msg}}"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut replay = Replay {
        client: GatewayClient::new(channel),
        endpoint: endpoint.clone(),
        batch,
        buffers: HashMap::new(),
        summary: Summary::default(),
        problems: 0,
        bar: bar.clone(),
    };
    let started = Instant::now();
    let outcome = replay.all(events, tenant.as_deref(), Pacer::new(rate)).await;
    bar.finish_and_clear();
    if replay.problems > SHOW_PROBLEMS {
        eprintln!("... and {} more problems", replay.problems - SHOW_PROBLEMS);
    }
    if json {
        println!("{}", replay.summary.json(&source, &endpoint, started.elapsed()));
    } else {
        println!("source: {source}");
        println!("gateway: {endpoint}");
        replay.summary.print(started.elapsed());
    }
    outcome
}

/// The gateway to send to: `--gateway`, else `gateway.listen` (a wildcard address as loopback).
fn endpoint(gateway: Option<String>, config: &Config) -> String {
    match gateway {
        Some(g) if g.contains("://") => g,
        Some(g) => format!("http://{g}"),
        None => {
            let mut addr = config.gateway.listen;
            if addr.ip().is_unspecified() {
                if addr.is_ipv4() {
                    addr.set_ip(Ipv4Addr::LOCALHOST.into());
                } else {
                    addr.set_ip(Ipv6Addr::LOCALHOST.into());
                }
            }
            format!("http://{addr}")
        }
    }
}

type Events = Box<dyn Iterator<Item = EventResult> + Send>;

/// The events of `source`, about how many records it has, and what the progress bar counts.
fn open(source: &str, tenant: Option<&str>) -> anyhow::Result<(Events, u64, &'static str)> {
    if source == ML100K {
        let Some(dir) = shopmind_datasets::default_ml100k_dir() else {
            bail!("MovieLens-100k not found in .cache/data/ml-100k: run scripts/setup.sh");
        };
        let ml = shopmind_datasets::MovieLens::load(&dir)?;
        let events = ml.events(tenant.unwrap_or(ML100K_TENANT));
        let total = events.len() as u64;
        let iter = events.into_iter().enumerate().map(|(i, e)| Ok((i + 1, e)));
        return Ok((Box::new(iter), total, "events"));
    }
    let path = Path::new(source);
    let events = shopmind_eventfile::read_events(path).map_err(|e| match e {
        FileError::UnknownFormat { .. } => {
            anyhow::anyhow!("{e} (or the data set name {ML100K:?})")
        }
        e => anyhow::Error::new(e),
    })?;
    let lines = count_lines(path).with_context(|| format!("reading {}", path.display()))?;
    Ok((Box::new(events), lines, "lines"))
}

fn count_lines(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// Paces sending to a rate: each event is due `1/rate` seconds after the one before; sleeps
/// only when ahead of schedule, so the average is exact and nothing spins.
struct Pacer {
    rate: Option<f64>,
    start: Instant,
    admitted: u64,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Self {
        Self { rate, start: Instant::now(), admitted: 0 }
    }

    async fn admit(&mut self) {
        let Some(rate) = self.rate else { return };
        let due = self.start + Duration::from_secs_f64(self.admitted as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        self.admitted += 1;
    }
}

#[derive(Default)]
struct Summary {
    read: u64,
    accepted: u64,
    duplicates: u64,
    rejected: BTreeMap<String, u64>,
}

impl Summary {
    fn reject(&mut self, reason: &str) {
        *self.rejected.entry(reason.to_owned()).or_default() += 1;
    }

    /// Events read per second of `secs`.
    fn rate(&self, secs: f64) -> f64 {
        if secs > 0.0 { self.read as f64 / secs } else { 0.0 }
    }

    /// One `key: value` per line, so that scripts can read it.
    fn print(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        println!("read: {}", self.read);
        println!("accepted: {}", self.accepted);
        println!("duplicates: {}", self.duplicates);
        println!("rejected: {}", self.rejected.values().sum::<u64>());
        for (reason, n) in &self.rejected {
            println!("rejected[{reason}]: {n}");
        }
        println!("elapsed_s: {secs:.3}");
        println!("events_per_s: {:.1}", self.rate(secs));
    }

    /// `replay --json`: the same figures, with the rejections by reason as an object.
    fn json(&self, source: &str, gateway: &str, elapsed: Duration) -> serde_json::Value {
        let secs = elapsed.as_secs_f64();
        serde_json::json!({
            "source": source,
            "gateway": gateway,
            "read": self.read,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected.values().sum::<u64>(),
            "rejected_by_reason": self.rejected,
            "elapsed_s": secs,
            "events_per_s": self.rate(secs),
        })
    }
}

struct Replay {
    client: GatewayClient<Channel>,
    endpoint: String,
    batch: usize,
    /// Valid events waiting to be sent, per tenant (a call carries one tenant).
    buffers: HashMap<String, Vec<pb::Event>>,
    summary: Summary,
    problems: u64,
    bar: indicatif::ProgressBar,
}

impl Replay {
    fn problem(&mut self, what: impl FnOnce() -> String) {
        self.problems += 1;
        if self.problems <= SHOW_PROBLEMS {
            let text = what();
            self.bar.suspend(|| eprintln!("{text}"));
        }
    }

    async fn all(&mut self, events: Events, tenant: Option<&str>, mut pacer: Pacer) -> anyhow::Result<()> {
        for item in events {
            let (line, mut event) = match item {
                Ok(x) => x,
                Err(e) if e.is_record_error() => {
                    self.summary.read += 1;
                    self.summary.reject(UNPARSEABLE);
                    if let Some(line) = e.line() {
                        self.bar.set_position(line as u64);
                    }
                    self.problem(|| e.to_string());
                    continue;
                }
                Err(e) => {
                    // The rest cannot be read; what was read is still sent.
                    self.flush().await?;
                    return Err(e.into());
                }
            };
            self.summary.read += 1;
            self.bar.set_position(line as u64);
            if let Some(t) = tenant {
                t.clone_into(&mut event.tenant);
            }
            let policy = ValidationPolicy::ingest(UnixMillis::now());
            let valid = match shopmind_domain::Event::from_proto(&event, None, &policy) {
                Ok(v) => v,
                Err(violations) => {
                    self.summary.reject(violations.first().code.as_str());
                    self.problem(|| format!("line {line}: event {:?}: {violations}", event.event_id));
                    continue;
                }
            };
            pacer.admit().await;
            let key = valid.tenant.to_string();
            let buffer = self.buffers.entry(key.clone()).or_default();
            buffer.push(event);
            if buffer.len() >= self.batch {
                let events = std::mem::take(buffer);
                self.send(key, events).await?;
            }
        }
        self.flush().await
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        let buffers: Vec<(String, Vec<pb::Event>)> = self.buffers.drain().collect();
        for (tenant, events) in buffers {
            if !events.is_empty() {
                self.send(tenant, events).await?;
            }
        }
        Ok(())
    }

    /// One `PublishEvents` call, retried after transient failures.
    async fn send(&mut self, tenant: String, mut events: Vec<pb::Event>) -> anyhow::Result<()> {
        let mut attempt = 0;
        loop {
            let request = pb::PublishEventsRequest { tenant: tenant.clone(), events: events.clone() };
            let status = match self.client.publish_events(request).await {
                Ok(response) => {
                    let r = response.into_inner();
                    self.summary.accepted += u64::from(r.accepted);
                    self.summary.duplicates += u64::from(r.duplicates);
                    for rejection in &r.rejected {
                        self.summary.reject(&rejection.code);
                        self.problem(|| {
                            format!(
                                "event {:?}: {} ({}): {}",
                                rejection.event_id, rejection.field, rejection.code, rejection.description
                            )
                        });
                    }
                    self.bar.set_message(format!("{} accepted", self.summary.accepted));
                    return Ok(());
                }
                Err(status) => status,
            };
            attempt += 1;
            if status.code() == Code::InvalidArgument {
                let rejected = Rejected::of(&status);
                if let Some(code) = rejected.tenant {
                    // The tenant itself is refused (e.g. not in ingest.tenants): so is every event.
                    for _ in &events {
                        self.summary.reject(&code);
                    }
                    self.problem(|| {
                        format!("tenant {tenant:?}: rejected by the gateway: {}", status.message())
                    });
                    return Ok(());
                }
                if rejected.events.is_empty() || attempt > RETRIES {
                    bail!(
                        "the gateway at {} rejected a batch of {} events: {}",
                        self.endpoint,
                        events.len(),
                        status.message()
                    );
                }
                // Rejected by the gateway's checks after passing ours (its clock or
                // configuration differs): count them, and send the rest again.
                for (i, code) in &rejected.events {
                    self.summary.reject(code);
                    let id = events.get(*i).map(|e| e.event_id.clone()).unwrap_or_default();
                    self.problem(|| format!("event {id:?}: rejected by the gateway: {code}"));
                }
                events = events
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !rejected.events.contains_key(i))
                    .map(|(_, e)| e)
                    .collect();
                if events.is_empty() {
                    return Ok(());
                }
                continue;
            }
            let transient = matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted
            );
            if transient && attempt <= RETRIES {
                let pause = Duration::from_millis(200 << attempt);
                self.problem(|| format!("PublishEvents: {}; retrying in {pause:?}", status.message()));
                tokio::time::sleep(pause).await;
                continue;
            }
            bail!(
                "PublishEvents to the gateway at {} failed: {:?}: {}",
                self.endpoint,
                status.code(),
                status.message()
            );
        }
    }
}

/// What the gateway named in an INVALID_ARGUMENT answer to `PublishEvents`: violations of
/// `events[<i>]...` and of `tenant`, each with its code (descriptions start with "<code>: ").
struct Rejected {
    /// Index in the batch -> the code of its first violation.
    events: BTreeMap<usize, String>,
    tenant: Option<String>,
}

impl Rejected {
    fn of(status: &tonic::Status) -> Self {
        let mut out = Self { events: BTreeMap::new(), tenant: None };
        let Some(bad) = status.get_details_bad_request() else { return out };
        for v in bad.field_violations {
            let code = v.description.split_once(": ").map_or("invalid", |(c, _)| c).to_owned();
            if v.field == "tenant" {
                out.tenant.get_or_insert(code);
                continue;
            }
            let index = v
                .field
                .strip_prefix("events[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(i, _)| i.parse::<usize>().ok());
            if let Some(i) = index {
                out.events.entry(i).or_insert(code);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    #[test]
    fn rejections_are_read_from_the_bad_request_details() {
        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("events[3].occurred_at", "timestamp_out_of_range: too late");
        details.add_bad_request_violation("events[3].user_id", "missing_field: required");
        details.add_bad_request_violation("events[12]", "payload_too_large: 70000 bytes");
        let status = tonic::Status::with_error_details(Code::InvalidArgument, "bad", details);
        let r = Rejected::of(&status);
        let got: Vec<(usize, &str)> = r.events.iter().map(|(i, c)| (*i, c.as_str())).collect();
        assert_eq!(got, [(3, "timestamp_out_of_range"), (12, "payload_too_large")]);
        assert_eq!(r.tenant, None);

        let mut details = ErrorDetails::new();
        details.add_bad_request_violation("tenant", "unknown_tenant: not configured");
        let r = Rejected::of(&tonic::Status::with_error_details(Code::InvalidArgument, "bad", details));
        assert_eq!(r.tenant.as_deref(), Some("unknown_tenant"));
        assert!(Rejected::of(&tonic::Status::invalid_argument("no details")).events.is_empty());
    }

    #[test]
    fn the_json_summary_parses_with_the_rejections_by_reason() {
        let mut summary = Summary { read: 10, accepted: 6, duplicates: 1, ..Summary::default() };
        summary.reject("missing_field");
        summary.reject("missing_field");
        summary.reject(UNPARSEABLE);
        let text = summary.json("events.jsonl", "http://127.0.0.1:50051", Duration::from_secs(2)).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(parsed["source"], "events.jsonl", "{text}");
        assert_eq!(parsed["gateway"], "http://127.0.0.1:50051");
        assert_eq!(parsed["read"], 10);
        assert_eq!(parsed["accepted"], 6);
        assert_eq!(parsed["duplicates"], 1);
        assert_eq!(parsed["rejected"], 3);
        assert_eq!(parsed["rejected_by_reason"]["missing_field"], 2);
        assert_eq!(parsed["rejected_by_reason"][UNPARSEABLE], 1);
        assert_eq!(parsed["elapsed_s"], 2.0);
        assert_eq!(parsed["events_per_s"], 5.0);
    }

    #[test]
    fn the_default_gateway_is_the_configured_listen_address() {
        let mut config = Config::default();
        config.gateway.listen = "0.0.0.0:7000".parse().unwrap_or(config.gateway.listen);
        assert_eq!(endpoint(None, &config), "http://127.0.0.1:7000");
        assert_eq!(endpoint(Some("10.0.0.5:50051".into()), &config), "http://10.0.0.5:50051");
        assert_eq!(endpoint(Some("https://gw.example".into()), &config), "https://gw.example");
    }
}
