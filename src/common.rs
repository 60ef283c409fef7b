//! What several commands use: progress bars, the connection to a gateway that is starting, the
//! one-line summary of a trained model's offline metrics, and a dead letter as the listings show
//! it.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use shopmind_runtime::dlq::DeadLetter;
use tonic::transport::{Channel, Endpoint};

/// A progress bar of `len` steps labelled `what`, with the rate and the time left.
pub fn counter_bar(len: u64, what: &'static str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new(len).with_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{what} {{bar:40}} {{pos}}/{{len}} ({{per_sec}}, eta {{eta}})"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    )
}

/// A spinner that counts events, labelled `what`.
pub fn spinner(what: &'static str) -> indicatif::ProgressBar {
    indicatif::ProgressBar::new_spinner().with_style(
        indicatif::ProgressStyle::with_template(&format!("{what} {{spinner}} {{pos}} events ({{per_sec}})"))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    )
}

/// A channel to the gateway at `endpoint`, retried for up to 10 s while it starts.
pub async fn connect_gateway(endpoint: &str) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Endpoint::from_shared(endpoint.to_string())?.connect().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e).context("connecting to the gateway"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The offline metrics a trained model carries, as one line: a recommender's holdout NDCG@10 and
/// Recall@10 next to popularity's; the other models' figures by name.
pub fn holdout_line(metrics: &std::collections::BTreeMap<String, f64>) -> Option<String> {
    let get = |k: &str| metrics.get(k).copied();
    if let (Some(users), Some(ndcg), Some(pop_ndcg), Some(recall), Some(pop_recall)) = (
        get("holdout_users"),
        get("holdout_ndcg_at_10"),
        get("holdout_ndcg_at_10_popularity"),
        get("holdout_recall_at_10"),
        get("holdout_recall_at_10_popularity"),
    ) {
        return Some(format!(
            "holdout (each user's latest interaction, {users} users): NDCG@10 {ndcg:.4} (popularity \
             {pop_ndcg:.4}), Recall@10 {recall:.4} (popularity {pop_recall:.4})"
        ));
    }
    (!metrics.is_empty()).then(|| {
        let parts: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        parts.join(", ")
    })
}

/// A dead letter as `dlq list` and `notifications dead-letters list` show it: a table row, or an
/// object of their `--json` output (with the whole reason).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeadLetterRow<'a> {
    /// Its sequence in `SM_DLQ` (what `--seq` takes).
    pub sequence: u64,
    pub tenant: &'a str,
    pub stage: &'a str,
    pub code: &'a str,
    pub original_subject: &'a str,
    pub original_sequence: Option<u64>,
    pub bytes: usize,
    pub reason: &'a str,
}

impl<'a> From<&'a DeadLetter> for DeadLetterRow<'a> {
    fn from(d: &'a DeadLetter) -> Self {
        Self {
            sequence: d.sequence,
            tenant: &d.tenant,
            stage: &d.stage,
            code: &d.code,
            original_subject: &d.original_subject,
            original_sequence: d.original_sequence,
            bytes: d.bytes,
            reason: &d.reason,
        }
    }
}

impl DeadLetterRow<'_> {
    /// The reason as a table shows it: its first 120 characters.
    pub fn short_reason(&self) -> String {
        self.reason.chars().take(120).collect()
    }
}
