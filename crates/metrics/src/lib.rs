//! shopmind's metrics: the catalogue, the process-wide registry, and the `/metrics` endpoint.
//!
//! **This module is the catalogue**: every metric shopmind exports is declared in [`CATALOGUE`]
//! (name, type, labels, meaning) and recorded through one method of [`Metrics`]. A metric's name
//! and labels are a contract with dashboards and alerts: rename nothing, add new metrics instead.
//! `docs/METRICS.md` is generated from the catalogue, and a test fails when the two differ
//! (`SHOPMIND_BLESS=1 cargo test -p shopmind-metrics` rewrites it).
//!
//! Label values are bounded: each label takes values from a fixed set (an enum here, a
//! `&'static str` from the code, or the gRPC status names). Tenant ids, user ids, item ids and
//! subjects are never label values: they are unbounded.
//!
//! Services record through [`global()`]; each process serves what it recorded with [`serve`].

mod server;

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

pub use server::{CONTENT_TYPE, serve};

/// Defines a label's closed set of values: an enum with `ALL` and `as_str`.
macro_rules! label_values {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $value:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value the label can take.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The label value.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value),+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
                EncodeLabelValue::encode(&self.as_str(), encoder)
            }
        }
    };
}

label_values! {
    /// Where an event came in: through the gateway's gRPC API, or published raw to
    /// `sm.in.<tenant>` on NATS.
    Source { Grpc => "grpc", Nats => "nats" }
}

label_values! {
    /// What became of an event offered to shopmind.
    EventOutcome { Accepted => "accepted", Duplicate => "duplicate", Rejected => "rejected" }
}

label_values! {
    /// What the feature service did with an event.
    Applied { Applied => "applied", Duplicate => "duplicate" }
}

label_values! {
    /// Whether a notification was new or had been published before (a redelivered event).
    Notified { Published => "published", Duplicate => "duplicate" }
}

label_values! {
    /// How a consumer settled a delivery: acked (done, or nothing to do), negatively acked to be
    /// delivered again, or dead-lettered (then acked).
    Settlement { Ack => "ack", Retry => "retry", DeadLetter => "dead_letter" }
}

label_values! {
    /// Whether a request or a round succeeded.
    Success { Ok => "ok", Error => "error" }
}

label_values! {
    /// Why a model's batcher refused a request: its queue was full, the request's deadline passed
    /// before it was computed, or the model was shutting down.
    Rejection { QueueFull => "queue_full", Deadline => "deadline", ShuttingDown => "shutting_down" }
}

label_values! {
    /// The methods of `shopmind.v1.Gateway`.
    GatewayMethod {
        PublishEvents => "PublishEvents",
        StreamEvents => "StreamEvents",
        Recommend => "Recommend",
        PredictPurchaseIntent => "PredictPurchaseIntent",
        ForecastDemand => "ForecastDemand",
        GetCustomerProfile => "GetCustomerProfile",
        Assist => "Assist",
        GetAgentReport => "GetAgentReport",
        StreamNotifications => "StreamNotifications",
        EraseCustomer => "EraseCustomer",
    }
}

/// The gRPC status code names, indexed by code.
const GRPC_STATUS: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The name of gRPC status `code` (e.g. 3: `INVALID_ARGUMENT`); `UNKNOWN` for codes outside the
/// standard 0..=16.
pub fn grpc_status_name(code: i32) -> &'static str {
    usize::try_from(code).ok().and_then(|i| GRPC_STATUS.get(i)).copied().unwrap_or("UNKNOWN")
}

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The name as scraped (counters end in `_total`; histograms add `_bucket`, `_sum` and
    /// `_count` to it).
    pub name: &'static str,
    pub kind: Kind,
    /// Label names, each with a fixed set of values.
    pub labels: &'static [&'static str],
    /// The values each label takes, for the documentation.
    pub values: &'static str,
    /// What it measures; the `# HELP` text.
    pub help: &'static str,
}

impl Spec {
    /// The name the registry is given: counters without `_total`, which the exposition adds.
    fn registry_name(&self) -> &'static str {
        match self.kind {
            Kind::Counter => self.name.strip_suffix("_total").unwrap_or(self.name),
            Kind::Gauge | Kind::Histogram => self.name,
        }
    }
}

/// Every metric shopmind exports. The order is the order of `docs/METRICS.md`.
pub const CATALOGUE: &[Spec] = &[
    // Events in.
    Spec {
        name: "shopmind_events_received_total",
        kind: Kind::Counter,
        labels: &["source", "outcome"],
        values: "`source`: grpc, nats; `outcome`: accepted, duplicate, rejected",
        help: "Events offered to shopmind, by where they came in and what became of them: accepted \
               (published to SM_EVENTS), duplicate (already stored), rejected (invalid). The gateway \
               counts the events of gRPC calls (in a PublishEvents call refused for invalid events, \
               only the invalid ones; it publishes the others itself), ingest those it takes from \
               SM_INTAKE or is sent over request-reply.",
    },
    Spec {
        name: "shopmind_events_rejected_total",
        kind: Kind::Counter,
        labels: &["source", "code"],
        values: "`source`: grpc, nats; `code`: a reject code of docs/EVENTS.md (malformed, missing_field, …)",
        help: "Rejected events by the code of their first violation (the rejected part of \
               shopmind_events_received_total).",
    },
    Spec {
        name: "shopmind_pii_masked_total",
        kind: Kind::Counter,
        labels: &["kind"],
        values: "`kind`: email, iban, card, national_id, ip, phone, address",
        help: "Pieces of personal data masked in the free text of admitted events (support messages, \
               search queries) before they were published (docs/PRIVACY.md), by kind.",
    },
    // Events out.
    Spec {
        name: "shopmind_feature_events_total",
        kind: Kind::Counter,
        labels: &["result"],
        values: "`result`: applied, duplicate",
        help: "Events the feature service stored the effect of (applied), or found already applied \
               (duplicate: a redelivery, counted once).",
    },
    Spec {
        name: "shopmind_notifications_published_total",
        kind: Kind::Counter,
        labels: &["result"],
        values: "`result`: published, duplicate",
        help: "Notifications published to SM_NOTIFICATIONS; duplicate: published before (the event \
               was delivered again).",
    },
    Spec {
        name: "shopmind_notifications_total",
        kind: Kind::Counter,
        labels: &["kind", "channel", "outcome"],
        values: "`kind`: order_status, cart_abandoned, back_in_stock, price_drop, low_stock, churn_risk, \
                 support_escalation; `channel`: stream, webhook, any; `outcome`: published, duplicate, \
                 deduped, capped, deferred, opted_out",
        help: "What the notification service did with each notification a rule made, by channel: \
               published (to SM_NOTIFICATIONS for stream, to SM_WEBHOOKS for webhook), duplicate \
               (published before), and, for channel any, the policies: deduped (same rule, user and \
               item within the window), capped (frequency cap), deferred (quiet hours), opted_out.",
    },
    Spec {
        name: "shopmind_notification_timers_total",
        kind: Kind::Counter,
        labels: &["timer", "result"],
        values: "`timer`: cart_idle, churn_check, deferred; `result`: fired, silent, rescheduled",
        help: "Due timers the notification service handled: fired (a notification was made), silent \
               (its condition no longer held), rescheduled (not due yet after all).",
    },
    Spec {
        name: "shopmind_webhook_attempts_total",
        kind: Kind::Counter,
        labels: &["result"],
        values: "`result`: ok, http_error, timeout, error",
        help: "Webhook POST attempts: ok (2xx), http_error (another status), timeout \
               (notification.webhook.timeout_ms), error (connection or protocol failure).",
    },
    Spec {
        name: "shopmind_webhook_duration_seconds",
        kind: Kind::Histogram,
        labels: &["result"],
        values: "`result`: ok, http_error, timeout, error",
        help: "Time of one webhook POST attempt, until the response headers (or the failure).",
    },
    // Consumers.
    Spec {
        name: "shopmind_consumer_deliveries_total",
        kind: Kind::Counter,
        labels: &["stage"],
        values: "`stage`: ingest, feature, notification, webhook",
        help: "Messages delivered to a stage's durable consumer, redeliveries included.",
    },
    Spec {
        name: "shopmind_consumer_settlements_total",
        kind: Kind::Counter,
        labels: &["stage", "result"],
        values: "`stage`: ingest, feature, notification, webhook; `result`: ack, retry, dead_letter",
        help: "How deliveries were settled: ack (done), retry (negatively acked, delivered again \
               later), dead_letter (sent to SM_DLQ, then acked).",
    },
    Spec {
        name: "shopmind_dead_letters_total",
        kind: Kind::Counter,
        labels: &["stage", "code"],
        values: "`stage`: ingest, feature, notification, webhook; `code`: a reject code of docs/EVENTS.md, or retries_exhausted",
        help: "Messages a stage sent to the dead-letter stream SM_DLQ, by reason code.",
    },
    Spec {
        name: "shopmind_consumer_lag_messages",
        kind: Kind::Gauge,
        labels: &["stage"],
        values: "`stage`: ingest, feature, notification, webhook",
        help: "Backlog of a stage's durable consumer: messages not yet delivered plus delivered and \
               not yet acked. Refreshed every 5 s by each process running the stage; replicas of one \
               stage share the consumer and report the same backlog (take the max).",
    },
    // Inference.
    Spec {
        name: "shopmind_inference_request_duration_seconds",
        kind: Kind::Histogram,
        labels: &["result"],
        values: "`result`: ok, error",
        help: "Time the inference service took to answer a recommend request: store read, model \
               scoring, ranking.",
    },
    Spec {
        name: "shopmind_model_session_wait_seconds",
        kind: Kind::Histogram,
        labels: &[],
        values: "",
        help: "Time a model run waited for a free ONNX Runtime session of its pool (the queue; see \
               inference.sessions).",
    },
    Spec {
        name: "shopmind_model_compute_seconds",
        kind: Kind::Histogram,
        labels: &[],
        values: "",
        help: "Time ONNX Runtime spent in one model run, inputs and outputs copied included.",
    },
    Spec {
        name: "shopmind_model_history_length",
        kind: Kind::Histogram,
        labels: &[],
        values: "",
        help: "Interactions in the history a recommender scored for one request (at most \
               inference.history_len).",
    },
    Spec {
        name: "shopmind_recommend_answers_total",
        kind: Kind::Counter,
        labels: &["scenario", "retrieval"],
        values: "`scenario`: for_you, similar_items, bought_together, trending, cart_complement; \
                 `retrieval`: ann, brute_force, none",
        help: "Recommend answers by scenario and by how the model's candidates were found: ann (the \
               version's HNSW index over item embeddings), brute_force (every item the model scores; \
               catalogs below inference.ann_min_items, co-visitation models), none (no model ranked: \
               trending, bought together, cold start, no model yet).",
    },
    // Model registry, on the inference side.
    Spec {
        name: "shopmind_model_loads_total",
        kind: Kind::Counter,
        labels: &["model", "result"],
        values: "`model`: recommender, intent, demand (the registry's model names); `result`: ok, error",
        help: "Model versions inference loaded after the registry's active version changed: ok \
               (loaded and warmed up by one scoring run, then swapped in), error (failed to fetch, \
               load or warm up; the version served before keeps serving).",
    },
    Spec {
        name: "shopmind_model_swaps_total",
        kind: Kind::Counter,
        labels: &["model"],
        values: "`model`: recommender, intent, demand",
        help: "Times a newly loaded version replaced (or became) the model a tenant is served \
               with, or a tenant's model was removed because no version is active any more.",
    },
    Spec {
        name: "shopmind_models_served",
        kind: Kind::Gauge,
        labels: &["model"],
        values: "`model`: recommender, intent, demand",
        help: "Tenants this process serves a model to (the others get the fallback: popular \
               items). Which version each serves is in the logs and in every response's \
               model_version.",
    },
    Spec {
        name: "shopmind_model_queue_wait_seconds",
        kind: Kind::Histogram,
        labels: &["model"],
        values: "`model`: the model's name in the code (covisit, embedding)",
        help: "Time a request waited in a model's batching queue, from submission until its batch \
               started (waiting for more requests and for a free session; see \
               inference.max_queue_delay_us and inference.sessions).",
    },
    Spec {
        name: "shopmind_model_batch_compute_seconds",
        kind: Kind::Histogram,
        labels: &["model"],
        values: "`model`: the model's name in the code (covisit, embedding)",
        help: "Time one batch took from its start to its outputs: stacking (and padding) the \
               requests' inputs and the ONNX Runtime run.",
    },
    Spec {
        name: "shopmind_model_batch_rows",
        kind: Kind::Histogram,
        labels: &["model"],
        values: "`model`: the model's name in the code (covisit, embedding)",
        help: "Rows (requests' rows stacked along the batch dimension) in one batch a model \
               computed; at most inference.max_batch unless one request is larger.",
    },
    Spec {
        name: "shopmind_model_rejected_total",
        kind: Kind::Counter,
        labels: &["model", "reason"],
        values: "`model`: the model's name in the code (covisit, embedding); `reason`: queue_full, deadline, \
                 shutting_down",
        help: "Requests a model's batcher answered without computing them: its queue was full \
               (inference.queue_capacity), the request's deadline passed first, or the model was \
               shutting down.",
    },
    // Predictions (inference's intent and forecast methods) and their use by notifications.
    Spec {
        name: "shopmind_prediction_request_duration_seconds",
        kind: Kind::Histogram,
        labels: &["method", "result"],
        values: "`method`: intent, forecast, assist; `result`: ok, error (a tenant without a model \
                 included)",
        help: "Time the inference service took to answer an intent, forecast or assist request: \
               store reads, model runs (assist: encoder, intent head, FAQ retrieval, state write).",
    },
    Spec {
        name: "shopmind_agent_report_duration_seconds",
        kind: Kind::Histogram,
        labels: &["result"],
        values: "`result`: ok, error (invalid period, unknown agent, store unavailable)",
        help: "Time the inference service took to answer a GetAgentReport request: reading the \
               period's support conversations from the store and computing each agent's figures.",
    },
    Spec {
        name: "shopmind_notification_model_fallbacks_total",
        kind: Kind::Counter,
        labels: &["seam", "reason"],
        values: "`seam`: intent, demand; `reason`: no_model (the tenant has no active model), error \
                 (the call failed or timed out, or the service answered another error)",
        help: "Times a notification rule used the feature-based estimate instead of the model \
               served by inference (notification.model_seams).",
    },
    // Customer profiles (inference's profile method).
    Spec {
        name: "shopmind_profile_request_duration_seconds",
        kind: Kind::Histogram,
        labels: &["result"],
        values: "`result`: ok, not_found (no event recorded for the user), error (invalid request, \
                 store unavailable, deadline passed)",
        help: "Time the inference service took to answer a customer profile request: one store \
               read, segment, churn risk.",
    },
    Spec {
        name: "shopmind_profiles_total",
        kind: Kind::Counter,
        labels: &["segment"],
        values: "`segment`: champion, loyal, promising, new, at_risk, hibernating, browser",
        help: "Customer profiles served, by the RFM segment they reported.",
    },
    Spec {
        name: "shopmind_assistant_turns_total",
        kind: Kind::Counter,
        labels: &["intent", "outcome"],
        values: "`intent`: the 12 intents of docs/ASSISTANT.md (the one acted on); `outcome`: \
                 answered, clarification (asked which order), not_served (out of scope, unsure, no \
                 FAQ entry), escalated, escalation_failed",
        help: "Customer messages the assistant (Assist) answered, by intent and outcome.",
    },
    // Gateway.
    Spec {
        name: "shopmind_gateway_request_duration_seconds",
        kind: Kind::Histogram,
        labels: &["method", "status"],
        values: "`method`: PublishEvents, StreamEvents, Recommend, StreamNotifications; `status`: \
                 gRPC status names (OK, INVALID_ARGUMENT, UNAVAILABLE, …)",
        help: "Time the gateway took to answer a call, by method and gRPC status. For \
               StreamEvents, until the client's stream ended; for StreamNotifications, until the \
               stream was opened.",
    },
    Spec {
        name: "shopmind_gateway_refused_total",
        kind: Kind::Counter,
        labels: &["reason"],
        values: "`reason`: unauthenticated (no or an unknown API key), permission_denied (the key's \
                 tenant is not the request's, or not an admin key), rate_limited (the tenant's token \
                 bucket was empty)",
        help: "Calls the gateway refused before doing any work (gateway.api_keys, \
               gateway.rate_limit).",
    },
    Spec {
        name: "shopmind_rpc_expired_total",
        kind: Kind::Counter,
        labels: &[],
        values: "",
        help: "Requests a service received over NATS after their caller's deadline \
               (Shopmind-Deadline-Ms) had passed, and answered DEADLINE_EXCEEDED without working \
               on them.",
    },
    // Trainer.
    Spec {
        name: "shopmind_trainer_rounds_total",
        kind: Kind::Counter,
        labels: &["result"],
        values: "`result`: ok, error",
        help: "Training rounds of the trainer service (replay SM_EVENTS, train, write models).",
    },
    Spec {
        name: "shopmind_trainer_round_duration_seconds",
        kind: Kind::Histogram,
        labels: &[],
        values: "",
        help: "Time one training round took.",
    },
    Spec {
        name: "shopmind_trainer_models_written_total",
        kind: Kind::Counter,
        labels: &[],
        values: "",
        help: "Models the trainer published to the registry as new versions (per tenant with new \
               events and round: a recommender, and an intent and a demand model when the tenant \
               has enough data).",
    },
    // Process.
    Spec {
        name: "shopmind_build_info",
        kind: Kind::Gauge,
        labels: &["version"],
        values: "`version`: the shopmind version",
        help: "Always 1; the labels describe the running build.",
    },
    Spec {
        name: "process_start_time_seconds",
        kind: Kind::Gauge,
        labels: &[],
        values: "",
        help: "Start time of the process, in seconds since the Unix epoch.",
    },
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceOutcome {
    source: Source,
    outcome: EventOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceCode {
    source: Source,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppliedLabel {
    result: Applied,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifiedLabel {
    result: Notified,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindChannelOutcome {
    kind: &'static str,
    channel: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimerResult {
    timer: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SuccessLabel {
    result: Success,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageResult {
    stage: &'static str,
    result: Settlement,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageCode {
    stage: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodStatus {
    method: GatewayMethod,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelResult {
    model: &'static str,
    result: Success,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelReason {
    model: &'static str,
    reason: Rejection,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScenarioRetrieval {
    scenario: &'static str,
    retrieval: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodResult {
    method: &'static str,
    result: Success,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntentOutcome {
    intent: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SeamReason {
    seam: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SegmentLabel {
    segment: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

type HistogramFamily<S> = Family<S, Histogram, fn() -> Histogram>;

/// Request latencies: 0.5 ms to ~16 s.
fn request_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Model runs: 50 µs to ~1.6 s.
fn model_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// History lengths (inference.history_len is at most 200).
fn history_lengths() -> Histogram {
    Histogram::new([1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0])
}

/// Rows in a batch: 1 to 4096.
fn batch_rows() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Training rounds: 0.1 s to ~27 min.
fn round_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 15))
}

/// The registry and a handle to every metric of the [`CATALOGUE`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    events_received: Family<SourceOutcome, Counter>,
    events_rejected: Family<SourceCode, Counter>,
    pii_masked: Family<KindLabel, Counter>,
    feature_events: Family<AppliedLabel, Counter>,
    notifications: Family<NotifiedLabel, Counter>,
    notification_outcomes: Family<KindChannelOutcome, Counter>,
    notification_timers: Family<TimerResult, Counter>,
    webhook_attempts: Family<ResultLabel, Counter>,
    webhook_duration: HistogramFamily<ResultLabel>,
    deliveries: Family<StageLabel, Counter>,
    settlements: Family<StageResult, Counter>,
    dead_letters: Family<StageCode, Counter>,
    consumer_lag: Family<StageLabel, Gauge>,
    inference_duration: HistogramFamily<SuccessLabel>,
    session_wait: Histogram,
    compute: Histogram,
    history_length: Histogram,
    recommend_answers: Family<ScenarioRetrieval, Counter>,
    model_loads: Family<ModelResult, Counter>,
    model_swaps: Family<ModelLabel, Counter>,
    models_served: Family<ModelLabel, Gauge>,
    queue_wait: HistogramFamily<ModelLabel>,
    batch_compute: HistogramFamily<ModelLabel>,
    batch_rows: HistogramFamily<ModelLabel>,
    model_rejected: Family<ModelReason, Counter>,
    prediction_duration: HistogramFamily<MethodResult>,
    agent_report_duration: HistogramFamily<SuccessLabel>,
    model_fallbacks: Family<SeamReason, Counter>,
    profile_duration: HistogramFamily<ResultLabel>,
    profiles: Family<SegmentLabel, Counter>,
    assistant_turns: Family<IntentOutcome, Counter>,
    gateway_duration: HistogramFamily<MethodStatus>,
    gateway_refused: Family<ReasonLabel, Counter>,
    rpc_expired: Counter,
    trainer_rounds: Family<SuccessLabel, Counter>,
    trainer_duration: Histogram,
    models_written: Counter,
    build_info: Family<VersionLabel, Gauge>,
    start_time: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric of the catalogue registered. Services use [`global()`]; a
    /// fresh one is for tests.
    pub fn new() -> Self {
        let mut m = Self {
            registry: Registry::default(),
            events_received: Family::default(),
            events_rejected: Family::default(),
            pii_masked: Family::default(),
            feature_events: Family::default(),
            notifications: Family::default(),
            notification_outcomes: Family::default(),
            notification_timers: Family::default(),
            webhook_attempts: Family::default(),
            webhook_duration: Family::new_with_constructor(request_seconds),
            deliveries: Family::default(),
            settlements: Family::default(),
            dead_letters: Family::default(),
            consumer_lag: Family::default(),
            inference_duration: Family::new_with_constructor(request_seconds),
            session_wait: model_seconds(),
            compute: model_seconds(),
            history_length: history_lengths(),
            recommend_answers: Family::default(),
            model_loads: Family::default(),
            model_swaps: Family::default(),
            models_served: Family::default(),
            queue_wait: Family::new_with_constructor(model_seconds),
            batch_compute: Family::new_with_constructor(model_seconds),
            batch_rows: Family::new_with_constructor(batch_rows),
            model_rejected: Family::default(),
            prediction_duration: Family::new_with_constructor(request_seconds),
            agent_report_duration: Family::new_with_constructor(request_seconds),
            model_fallbacks: Family::default(),
            profile_duration: Family::new_with_constructor(request_seconds),
            profiles: Family::default(),
            assistant_turns: Family::default(),
            gateway_duration: Family::new_with_constructor(request_seconds),
            gateway_refused: Family::default(),
            rpc_expired: Counter::default(),
            trainer_rounds: Family::default(),
            trainer_duration: round_seconds(),
            models_written: Counter::default(),
            build_info: Family::default(),
            start_time: Gauge::default(),
        };
        m.build_info.get_or_create(&VersionLabel { version: env!("CARGO_PKG_VERSION") }).set(1);
        let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        m.start_time.set(i64::try_from(started.as_secs()).unwrap_or(i64::MAX));
        // One handle per catalogue entry, in its order (a test checks names, types and labels).
        let mut specs = CATALOGUE.iter();
        let r = &mut m.registry;
        register(r, &mut specs, m.events_received.clone());
        register(r, &mut specs, m.events_rejected.clone());
        register(r, &mut specs, m.pii_masked.clone());
        register(r, &mut specs, m.feature_events.clone());
        register(r, &mut specs, m.notifications.clone());
        register(r, &mut specs, m.notification_outcomes.clone());
        register(r, &mut specs, m.notification_timers.clone());
        register(r, &mut specs, m.webhook_attempts.clone());
        register(r, &mut specs, m.webhook_duration.clone());
        register(r, &mut specs, m.deliveries.clone());
        register(r, &mut specs, m.settlements.clone());
        register(r, &mut specs, m.dead_letters.clone());
        register(r, &mut specs, m.consumer_lag.clone());
        register(r, &mut specs, m.inference_duration.clone());
        register(r, &mut specs, m.session_wait.clone());
        register(r, &mut specs, m.compute.clone());
        register(r, &mut specs, m.history_length.clone());
        register(r, &mut specs, m.recommend_answers.clone());
        register(r, &mut specs, m.model_loads.clone());
        register(r, &mut specs, m.model_swaps.clone());
        register(r, &mut specs, m.models_served.clone());
        register(r, &mut specs, m.queue_wait.clone());
        register(r, &mut specs, m.batch_compute.clone());
        register(r, &mut specs, m.batch_rows.clone());
        register(r, &mut specs, m.model_rejected.clone());
        register(r, &mut specs, m.prediction_duration.clone());
        register(r, &mut specs, m.agent_report_duration.clone());
        register(r, &mut specs, m.model_fallbacks.clone());
        register(r, &mut specs, m.profile_duration.clone());
        register(r, &mut specs, m.profiles.clone());
        register(r, &mut specs, m.assistant_turns.clone());
        register(r, &mut specs, m.gateway_duration.clone());
        register(r, &mut specs, m.gateway_refused.clone());
        register(r, &mut specs, m.rpc_expired.clone());
        register(r, &mut specs, m.trainer_rounds.clone());
        register(r, &mut specs, m.trainer_duration.clone());
        register(r, &mut specs, m.models_written.clone());
        register(r, &mut specs, m.build_info.clone());
        register(r, &mut specs, m.start_time.clone());
        m
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
        self.events_received.get_or_create(&SourceOutcome { source, outcome }).inc();
    }

    /// An event was rejected; `code` is its first violation's reject code.
    pub fn event_rejected(&self, source: Source, code: &'static str) {
        self.events_received.get_or_create(&SourceOutcome { source, outcome: EventOutcome::Rejected }).inc();
        self.events_rejected.get_or_create(&SourceCode { source, code }).inc();
    }

    /// `n` pieces of personal data of `kind` were masked in an admitted event's text.
    pub fn pii_masked(&self, kind: &'static str, n: u64) {
        self.pii_masked.get_or_create(&KindLabel { kind }).inc_by(n);
    }

    /// The feature service applied an event, or found it applied before.
    pub fn feature_event(&self, result: Applied) {
        self.feature_events.get_or_create(&AppliedLabel { result }).inc();
    }

    /// A notification was published (or was a duplicate of one published before).
    pub fn notification(&self, result: Notified) {
        self.notifications.get_or_create(&NotifiedLabel { result }).inc();
    }

    /// The notification service did `outcome` with a notification of `kind` on `channel` (see
    /// the catalogue for the values).
    pub fn notification_outcome(&self, kind: &'static str, channel: &'static str, outcome: &'static str) {
        self.notification_outcomes.get_or_create(&KindChannelOutcome { kind, channel, outcome }).inc();
    }

    /// A due timer of kind `timer` was handled with `result` (fired, silent, rescheduled).
    pub fn notification_timer(&self, timer: &'static str, result: &'static str) {
        self.notification_timers.get_or_create(&TimerResult { timer, result }).inc();
    }

    /// A webhook POST attempt ended with `result` (ok, http_error, timeout, error) after `took`.
    pub fn webhook_attempt(&self, result: &'static str, took: Duration) {
        self.webhook_attempts.get_or_create(&ResultLabel { result }).inc();
        self.webhook_duration.get_or_create(&ResultLabel { result }).observe(took.as_secs_f64());
    }

    /// A message was delivered to `stage`'s consumer.
    pub fn delivery(&self, stage: &'static str) {
        self.deliveries.get_or_create(&StageLabel { stage }).inc();
    }

    /// `stage` settled a delivery.
    pub fn settled(&self, stage: &'static str, result: Settlement) {
        self.settlements.get_or_create(&StageResult { stage, result }).inc();
    }

    /// `stage` dead-lettered a message with reason `code`.
    pub fn dead_lettered(&self, stage: &'static str, code: &'static str) {
        self.dead_letters.get_or_create(&StageCode { stage, code }).inc();
    }

    /// The backlog of `stage`'s consumer: undelivered plus unacked messages.
    pub fn consumer_lag(&self, stage: &'static str, messages: u64) {
        self.consumer_lag
            .get_or_create(&StageLabel { stage })
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
    }

    /// The inference service answered a recommend request.
    pub fn inference_request(&self, result: Success, took: Duration) {
        self.inference_duration.get_or_create(&SuccessLabel { result }).observe(took.as_secs_f64());
    }

    /// A model run waited `took` for a free session.
    pub fn session_wait(&self, took: Duration) {
        self.session_wait.observe(took.as_secs_f64());
    }

    /// A model run computed for `took`.
    pub fn compute(&self, took: Duration) {
        self.compute.observe(took.as_secs_f64());
    }

    /// A recommender scored a history of `len` interactions.
    pub fn history_length(&self, len: usize) {
        self.history_length.observe(len as f64);
    }

    /// Inference answered a recommend request of `scenario` whose model candidates came by
    /// `retrieval` (ann, brute_force, none).
    pub fn recommend_answer(&self, scenario: &'static str, retrieval: &'static str) {
        self.recommend_answers.get_or_create(&ScenarioRetrieval { scenario, retrieval }).inc();
    }

    /// Inference tried to load a version of `model` (the registry's model name).
    pub fn model_load(&self, model: &'static str, result: Success) {
        self.model_loads.get_or_create(&ModelResult { model, result }).inc();
    }

    /// A tenant's `model` was swapped for another version (or removed); `served` tenants have one now.
    pub fn model_swapped(&self, model: &'static str, served: usize) {
        self.model_swaps.get_or_create(&ModelLabel { model }).inc();
        self.models_served
            .get_or_create(&ModelLabel { model })
            .set(i64::try_from(served).unwrap_or(i64::MAX));
    }

    /// A request to `model` waited `took` in its batching queue before its batch started.
    pub fn model_queue_wait(&self, model: &'static str, took: Duration) {
        self.queue_wait.get_or_create(&ModelLabel { model }).observe(took.as_secs_f64());
    }

    /// `model` computed a batch of `rows` rows in `took`.
    pub fn model_batch(&self, model: &'static str, rows: usize, took: Duration) {
        self.batch_rows.get_or_create(&ModelLabel { model }).observe(rows as f64);
        self.batch_compute.get_or_create(&ModelLabel { model }).observe(took.as_secs_f64());
    }

    /// `model`'s batcher answered a request without computing it, for `reason`.
    pub fn model_rejected(&self, model: &'static str, reason: Rejection) {
        self.model_rejected.get_or_create(&ModelReason { model, reason }).inc();
    }

    /// The inference service answered a `method` (intent, forecast, assist) request.
    pub fn prediction_request(&self, method: &'static str, result: Success, took: Duration) {
        self.prediction_duration.get_or_create(&MethodResult { method, result }).observe(took.as_secs_f64());
    }

    /// The inference service answered a GetAgentReport request.
    pub fn agent_report(&self, result: Success, took: Duration) {
        self.agent_report_duration.get_or_create(&SuccessLabel { result }).observe(took.as_secs_f64());
    }

    /// A notification rule fell back from the model behind `seam` (intent, demand) for `reason`
    /// (no_model, error).
    pub fn model_fallback(&self, seam: &'static str, reason: &'static str) {
        self.model_fallbacks.get_or_create(&SeamReason { seam, reason }).inc();
    }

    /// A customer profile request was answered with `result` (ok, not_found, error) after `took`.
    pub fn profile_request(&self, result: &'static str, took: Duration) {
        self.profile_duration.get_or_create(&ResultLabel { result }).observe(took.as_secs_f64());
    }

    /// A customer profile of RFM `segment` was served.
    pub fn profile_served(&self, segment: &'static str) {
        self.profiles.get_or_create(&SegmentLabel { segment }).inc();
    }

    /// The assistant answered a message of `intent` with `outcome`.
    pub fn assistant_turn(&self, intent: &'static str, outcome: &'static str) {
        self.assistant_turns.get_or_create(&IntentOutcome { intent, outcome }).inc();
    }

    /// The gateway answered a call of `method` with gRPC status `code`.
    pub fn gateway_request(&self, method: GatewayMethod, code: i32, took: Duration) {
        self.gateway_duration
            .get_or_create(&MethodStatus { method, status: grpc_status_name(code) })
            .observe(took.as_secs_f64());
    }

    /// The gateway refused a call before any work, for `reason` (unauthenticated,
    /// permission_denied, rate_limited).
    pub fn gateway_refused(&self, reason: &'static str) {
        self.gateway_refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// A service received a request whose caller's deadline had already passed.
    pub fn rpc_expired(&self) {
        self.rpc_expired.inc();
    }

    /// Requests received after their deadline so far (see [`Metrics::rpc_expired`]).
    pub fn rpc_expired_count(&self) -> u64 {
        self.rpc_expired.get()
    }

    /// A training round ended, having written `models` models.
    pub fn trainer_round(&self, result: Success, took: Duration, models: usize) {
        self.trainer_rounds.get_or_create(&SuccessLabel { result }).inc();
        self.trainer_duration.observe(took.as_secs_f64());
        self.models_written.inc_by(models as u64);
    }
}

/// Registers `metric` under the next catalogue entry.
fn register(registry: &mut Registry, specs: &mut std::slice::Iter<'_, Spec>, metric: impl Metric) {
    if let Some(spec) = specs.next() {
        // The registry ends the help text with a full stop itself.
        registry.register(spec.registry_name(), spec.help.strip_suffix('.').unwrap_or(spec.help), metric);
    }
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics, which `/metrics` serves.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

/// `docs/METRICS.md`'s table of metrics, rendered from the [`CATALOGUE`].
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| name | type | labels | meaning |\n|---|---|---|---|\n");
    for spec in CATALOGUE {
        let values = if spec.values.is_empty() { "—" } else { spec.values };
        let help = spec.help.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!("| `{}` | {} | {} | {} |\n", spec.name, spec.kind.as_str(), values, help));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn grpc_status_names_cover_the_standard_codes() {
        assert_eq!(grpc_status_name(0), "OK");
        assert_eq!(grpc_status_name(3), "INVALID_ARGUMENT");
        assert_eq!(grpc_status_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_status_name(17), "UNKNOWN");
        assert_eq!(grpc_status_name(-1), "UNKNOWN");
    }

    #[test]
    fn label_values_are_snake_case_or_method_names() {
        assert_eq!(Settlement::DeadLetter.as_str(), "dead_letter");
        assert_eq!(Source::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(), ["grpc", "nats"]);
        assert_eq!(GatewayMethod::PublishEvents.as_str(), "PublishEvents");
    }
}
