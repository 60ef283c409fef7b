//! [`Metrics`]: the registry and the methods services record through, one per thing that
//! happened (an event stored, a call answered), each updating the metrics of the catalogue it
//! concerns.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::registry::Registry;

use crate::catalogue::Families;
use crate::labels::{
    Applied, EventOutcome, GatewayMethod, Notified, Rejection, Settlement, Source, Success, grpc_status_name,
};

/// The registry and a handle to every metric of the [`CATALOGUE`](crate::CATALOGUE).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    families: Families,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of the catalogue registered. Services use
    /// [`global()`](crate::global); a fresh one is for tests.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let families = Families::register(&mut registry);
        families.build_info(env!("CARGO_PKG_VERSION")).set(1);
        let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        families.start_time().set(i64::try_from(started.as_secs()).unwrap_or(i64::MAX));
        Self { registry, families }
    }

    /// Everything recorded, in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// An event was accepted (published) or found to be a duplicate. For rejections use
    /// [`Metrics::event_rejected`].
    pub fn event_stored(&self, source: Source, duplicate: bool) {
        let outcome = if duplicate { EventOutcome::Duplicate } else { EventOutcome::Accepted };
        self.families.events_received(source, outcome).inc();
    }

    /// An event was rejected; `code` is its first violation's reject code.
    pub fn event_rejected(&self, source: Source, code: &'static str) {
        self.families.events_received(source, EventOutcome::Rejected).inc();
        self.families.events_rejected(source, code).inc();
    }

    /// `n` pieces of personal data of `kind` were masked in an admitted event's text.
    pub fn pii_masked(&self, kind: &'static str, n: u64) {
        self.families.pii_masked(kind).inc_by(n);
    }

    /// The feature service applied an event, or found it applied before.
    pub fn feature_event(&self, result: Applied) {
        self.families.feature_events(result).inc();
    }

    /// A notification was published (or was a duplicate of one published before).
    pub fn notification(&self, result: Notified) {
        self.families.notifications(result).inc();
    }

    /// The notification service did `outcome` with a notification of `kind` on `channel` (see
    /// the catalogue for the values).
    pub fn notification_outcome(&self, kind: &'static str, channel: &'static str, outcome: &'static str) {
        self.families.notification_outcomes(kind, channel, outcome).inc();
    }

    /// A due timer of kind `timer` was handled with `result` (fired, silent, rescheduled).
    pub fn notification_timer(&self, timer: &'static str, result: &'static str) {
        self.families.notification_timers(timer, result).inc();
    }

    /// A webhook POST attempt ended with `result` (ok, http_error, timeout, error) after `took`.
    pub fn webhook_attempt(&self, result: &'static str, took: Duration) {
        self.families.webhook_attempts(result).inc();
        self.families.webhook_duration(result).observe(took.as_secs_f64());
    }

    /// A message was delivered to `stage`'s consumer.
    pub fn delivery(&self, stage: &'static str) {
        self.families.deliveries(stage).inc();
    }

    /// `stage` settled a delivery.
    pub fn settled(&self, stage: &'static str, result: Settlement) {
        self.families.settlements(stage, result).inc();
    }

    /// `stage` dead-lettered a message with reason `code`.
    pub fn dead_lettered(&self, stage: &'static str, code: &'static str) {
        self.families.dead_letters(stage, code).inc();
    }

    /// The backlog of `stage`'s consumer: undelivered plus unacked messages.
    pub fn consumer_lag(&self, stage: &'static str, messages: u64) {
        self.families.consumer_lag(stage).set(i64::try_from(messages).unwrap_or(i64::MAX));
    }

    /// The inference service answered a recommend request.
    pub fn inference_request(&self, result: Success, took: Duration) {
        self.families.inference_duration(result).observe(took.as_secs_f64());
    }

    /// A model run waited `took` for a free session.
    pub fn session_wait(&self, took: Duration) {
        self.families.session_wait().observe(took.as_secs_f64());
    }

    /// A model run computed for `took`.
    pub fn compute(&self, took: Duration) {
        self.families.compute().observe(took.as_secs_f64());
    }

    /// A recommender scored a history of `len` interactions.
    pub fn history_length(&self, len: usize) {
        self.families.history_length().observe(len as f64);
    }

    /// Inference answered a recommend request of `scenario` whose model candidates came by
    /// `retrieval` (ann, brute_force, none).
    pub fn recommend_answer(&self, scenario: &'static str, retrieval: &'static str) {
        self.families.recommend_answers(scenario, retrieval).inc();
    }

    /// Inference tried to load a version of `model` (the registry's model name).
    pub fn model_load(&self, model: &'static str, result: Success) {
        self.families.model_loads(model, result).inc();
    }

    /// A tenant's `model` was swapped for another version (or removed); `served` tenants have one now.
    pub fn model_swapped(&self, model: &'static str, served: usize) {
        self.families.model_swaps(model).inc();
        self.families.models_served(model).set(i64::try_from(served).unwrap_or(i64::MAX));
    }

    /// A request to `model` waited `took` in its batching queue before its batch started.
    pub fn model_queue_wait(&self, model: &'static str, took: Duration) {
        self.families.queue_wait(model).observe(took.as_secs_f64());
    }

    /// `model` computed a batch of `rows` rows in `took`.
    pub fn model_batch(&self, model: &'static str, rows: usize, took: Duration) {
        self.families.batch_rows(model).observe(rows as f64);
        self.families.batch_compute(model).observe(took.as_secs_f64());
    }

    /// `model`'s batcher answered a request without computing it, for `reason`.
    pub fn model_rejected(&self, model: &'static str, reason: Rejection) {
        self.families.model_rejected(model, reason).inc();
    }

    /// The inference service answered a `method` (intent, forecast, assist) request.
    pub fn prediction_request(&self, method: &'static str, result: Success, took: Duration) {
        self.families.prediction_duration(method, result).observe(took.as_secs_f64());
    }

    /// The inference service answered a GetAgentReport request.
    pub fn agent_report(&self, result: Success, took: Duration) {
        self.families.agent_report_duration(result).observe(took.as_secs_f64());
    }

    /// A notification rule fell back from the model behind `seam` (intent, demand) for `reason`
    /// (no_model, error).
    pub fn model_fallback(&self, seam: &'static str, reason: &'static str) {
        self.families.model_fallbacks(seam, reason).inc();
    }

    /// A customer profile request was answered with `result` (ok, not_found, error) after `took`.
    pub fn profile_request(&self, result: &'static str, took: Duration) {
        self.families.profile_duration(result).observe(took.as_secs_f64());
    }

    /// A customer profile of RFM `segment` was served.
    pub fn profile_served(&self, segment: &'static str) {
        self.families.profiles(segment).inc();
    }

    /// The assistant answered a message of `intent` with `outcome`.
    pub fn assistant_turn(&self, intent: &'static str, outcome: &'static str) {
        self.families.assistant_turns(intent, outcome).inc();
    }

    /// The gateway answered a call of `method` with gRPC status `code`.
    pub fn gateway_request(&self, method: GatewayMethod, code: i32, took: Duration) {
        self.families.gateway_duration(method, grpc_status_name(code)).observe(took.as_secs_f64());
    }

    /// The gateway refused a call before any work, for `reason` (unauthenticated,
    /// permission_denied, rate_limited).
    pub fn gateway_refused(&self, reason: &'static str) {
        self.families.gateway_refused(reason).inc();
    }

    /// A service received a request whose caller's deadline had already passed.
    pub fn rpc_expired(&self) {
        self.families.rpc_expired().inc();
    }

    /// Requests received after their deadline so far (see [`Metrics::rpc_expired`]).
    pub fn rpc_expired_count(&self) -> u64 {
        self.families.rpc_expired().get()
    }

    /// A training round ended, having written `models` models.
    pub fn trainer_round(&self, result: Success, took: Duration, models: usize) {
        self.families.trainer_rounds(result).inc();
        self.families.trainer_duration().observe(took.as_secs_f64());
        self.families.models_written().inc_by(models as u64);
    }
}
