//! `sm.rpc.<tenant>.inference.agent_report` (`GetAgentReport`): per support agent, over a period,
//! the conversations handled, first-response and resolution times, escalation and reopen rates
//! and the customers' sentiment per day, computed from the support conversations the feature
//! service keeps ([`shopmind_features::conversations`]). Definitions in docs/ASSISTANT.md.

use std::sync::Arc;
use std::time::Duration;

use shopmind_bus::{Bus, BusError};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis};
use shopmind_features::conversations::{
    AgentFigures, ReportPeriod, agent_figures, agent_known, read_conversations,
};
use shopmind_metrics::{Success, global as metrics};
use shopmind_proto::v1 as pb;
use shopmind_runtime::Shutdown;
use shopmind_runtime::rpc::{self, methods};
use shopmind_store::FeatureStore;
use tracing::warn;

use crate::InferenceError;

/// Reports one inference instance computes at the same time.
const MAX_CONCURRENT: usize = 16;
/// The period when the request sets no `from`.
const DEFAULT_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// Answers agent reports from the feature store.
pub struct AgentReports {
    store: Arc<dyn FeatureStore>,
    idle: Duration,
    max_days: u32,
    max_conversations: usize,
}

impl AgentReports {
    pub fn new(store: Arc<dyn FeatureStore>, config: &Config) -> Self {
        Self {
            store,
            idle: Duration::from_secs(config.inference.resolution_idle_s),
            max_days: config.inference.agent_report_max_days,
            max_conversations: config.inference.agent_report_max_conversations,
        }
    }

    /// The report `req` asks for, as of `now`.
    pub async fn report(
        &self,
        req: &pb::GetAgentReportRequest,
        now: UnixMillis,
    ) -> Result<pb::AgentReport, InferenceError> {
        let mut violations = Vec::new();
        let tenant = TenantId::parse(req.tenant.clone())
            .map_err(|e| violations.push(("tenant".to_string(), e.to_string())))
            .ok();
        let to = req.to.as_ref().map_or(now, UnixMillis::from_proto);
        let from = req.from.as_ref().map_or(UnixMillis(to.0 - DEFAULT_DAYS * DAY_MS), UnixMillis::from_proto);
        if from.0 > to.0 {
            violations.push(("from".into(), "is after `to`".into()));
        } else if to.0 - from.0 > i64::from(self.max_days) * DAY_MS {
            violations.push((
                "to".into(),
                format!("the period is longer than {} days (inference.agent_report_max_days)", self.max_days),
            ));
        }
        let agent = (!req.agent_id.is_empty()).then_some(req.agent_id.as_str());
        let (Some(tenant), true) = (tenant, violations.is_empty()) else {
            return Err(InferenceError::InvalidArgument(violations));
        };
        if let Some(agent) = agent
            && !agent_known(&*self.store, &tenant, agent).await?
        {
            return Err(InferenceError::NotFound(format!(
                "agent {agent:?} has written no support message to tenant {tenant}"
            )));
        }
        let (conversations, truncated) =
            read_conversations(&*self.store, &tenant, from.0, to.0, self.max_conversations).await?;
        if truncated {
            return Err(InferenceError::invalid(
                "from",
                format!(
                    "the period has more than {} conversations (inference.agent_report_max_conversations); ask for a shorter one",
                    self.max_conversations
                ),
            ));
        }
        let period = ReportPeriod {
            from_ms: from.0,
            to_ms: to.0,
            idle_ms: i64::try_from(self.idle.as_millis()).unwrap_or(i64::MAX),
            now_ms: now.0,
        };
        let mut figures = agent_figures(&conversations, &period, agent);
        if let Some(agent) = agent {
            // Known but silent in the period: a row of zeros, not an absent row.
            figures
                .entry(agent.to_owned())
                .or_insert_with(|| AgentFigures { agent: agent.to_owned(), ..AgentFigures::default() });
        }
        Ok(pb::AgentReport {
            agents: figures.into_values().map(stats).collect(),
            from: Some(from.to_proto()),
            to: Some(to.to_proto()),
        })
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn share(n: u32, d: u32) -> f64 {
    if d == 0 { 0.0 } else { f64::from(n) / f64::from(d) }
}

fn stats(f: AgentFigures) -> pb::AgentStats {
    pb::AgentStats {
        mean_first_response_seconds: mean(&f.first_response_s),
        median_first_response_seconds: median(&f.first_response_s),
        mean_resolution_seconds: mean(&f.resolution_s),
        escalation_rate: share(f.escalated, f.conversations),
        reopen_rate: share(f.reopened, f.resolved),
        sentiment_trend: f
            .sentiment
            .into_iter()
            .filter(|(_, (_, n))| *n > 0)
            .map(|(day, (sum, n))| pb::SentimentPoint {
                day,
                mean_sentiment: sum / f64::from(n),
                messages: n,
            })
            .collect(),
        conversations: f.conversations,
        agent_id: f.agent,
    }
}

/// Serves agent reports until `shutdown`.
pub(crate) fn start(
    config: &Config,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<Result<(), BusError>> {
    tokio::spawn(rpc::Server::new(bus, shutdown.clone()).serve(
        methods::AgentReport,
        MAX_CONCURRENT,
        Arc::new(AgentReports::new(store, config)),
        |reports, req, _| async move { reports.report(&req, UnixMillis::now()).await },
        |result, took| {
            metrics().agent_report(if result.is_ok() { Success::Ok } else { Success::Error }, took)
        },
    ))
}

/// Waits for the server [`start`] started to stop (after `shutdown`).
pub(crate) async fn stopped(server: tokio::task::JoinHandle<Result<(), BusError>>) -> Result<(), BusError> {
    match server.await {
        Ok(result) => result,
        Err(e) => {
            warn!(error = %e, "the agent report server ended abnormally");
            Ok(())
        }
    }
}
