//! **The catalogue**: every metric shopmind exports, declared once in the table of
//! [`catalogue!`] below with its name, type, labels (and the values each takes), buckets and
//! meaning. From that one entry come the metric's registration, its typed handle (the methods
//! of [`Families`] that `record.rs` calls), its line in [`CATALOGUE`] and so its row of
//! `docs/METRICS.md` ([`catalogue_markdown`]).
//!
//! A metric's name and labels are a contract with dashboards and alerts: rename nothing, add new
//! metrics instead.

use std::ops::Deref;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::labels::{
    Applied, EventOutcome, GatewayMethod, LabelValues, Notified, Rejection, Settlement, Source, Success,
};

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

/// One label of a metric and the values it takes.
#[derive(Clone, Copy, Debug)]
pub struct Label {
    pub name: &'static str,
    /// The closed set of values of a label typed by an enum (`Source`, `GatewayMethod`, ...);
    /// empty for a `&'static str` label, whose values `note` describes.
    pub values: &'static [&'static str],
    /// More about the values, for the documentation; after `values` it is in parentheses.
    pub note: &'static str,
}

impl Label {
    /// The values as `docs/METRICS.md` lists them: "grpc, nats", "ok, error (note)", or the note.
    pub fn documented_values(&self) -> String {
        match (self.values.join(", "), self.note) {
            (values, "") => values,
            (values, note) if values.is_empty() => note.to_string(),
            (values, note) => format!("{values} ({note})"),
        }
    }
}

/// The upper bounds of a histogram's buckets (a last `+Inf` bucket is implied).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Buckets {
    /// `count` bounds: `start`, `start * factor`, `start * factor^2`, ...
    Exponential {
        start: f64,
        factor: f64,
        count: u16,
    },
    Explicit(&'static [f64]),
}

impl Buckets {
    /// The bounds, lowest first.
    pub fn bounds(&self) -> Vec<f64> {
        match *self {
            Self::Exponential { start, factor, count } => exponential_buckets(start, factor, count).collect(),
            Self::Explicit(bounds) => bounds.to_vec(),
        }
    }

    /// As `docs/METRICS.md` describes them.
    pub fn describe(&self) -> String {
        match *self {
            Self::Exponential { start, factor, count } => {
                format!("{start} × {factor}^k, k = 0..={}", count.saturating_sub(1))
            }
            Self::Explicit(bounds) => bounds.iter().map(f64::to_string).collect::<Vec<_>>().join(", "),
        }
    }
}

/// Request latencies: 0.5 ms to ~16 s.
const REQUEST_SECONDS: Buckets = Buckets::Exponential { start: 0.0005, factor: 2.0, count: 16 };
/// Model runs: 50 µs to ~1.6 s.
const MODEL_SECONDS: Buckets = Buckets::Exponential { start: 0.00005, factor: 2.0, count: 16 };
/// History lengths (inference.history_len is at most 200).
const HISTORY_LENGTHS: Buckets = Buckets::Explicit(&[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0]);
/// Rows in a batch: 1 to 4096.
const BATCH_ROWS: Buckets = Buckets::Exponential { start: 1.0, factor: 2.0, count: 13 };
/// Training rounds: 0.1 s to ~27 min.
const ROUND_SECONDS: Buckets = Buckets::Exponential { start: 0.1, factor: 2.0, count: 15 };

/// One entry of the catalogue.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The name as scraped (counters end in `_total`; histograms add `_bucket`, `_sum` and
    /// `_count` to it).
    pub name: &'static str,
    pub kind: Kind,
    /// Its labels, each with a fixed set of values.
    pub labels: &'static [Label],
    /// A histogram's buckets; None for counters and gauges.
    pub buckets: Option<Buckets>,
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

    /// The help the registry is given: it ends the text with a full stop itself.
    fn registry_help(&self) -> &'static str {
        self.help.strip_suffix('.').unwrap_or(self.help)
    }
}

/// Declares every metric: `field: Kind "name" { labels: { label: Type [= "note"], ... },
/// [buckets: BUCKETS,] help: "..." }`, in the order of `docs/METRICS.md`. A label typed by an
/// enum of `labels.rs` takes its values from the enum; a `&'static str` label needs a note
/// describing them. Histograms, and only they, have buckets.
macro_rules! catalogue {
    ($(
        $field:ident: $kind:ident $name:literal {
            labels: { $($label:ident: $ty:ty $(= $note:literal)?),* $(,)? },
            $(buckets: $buckets:expr,)?
            help: $help:literal $(,)?
        },
    )+) => {
        /// One module per metric: its catalogue entry and its label set.
        mod entry {
            use super::*;
            $(
                pub(super) mod $field {
                    use super::*;
                    catalogue!(@labels [$($label: $ty),*]);
                    pub(in super::super) const SPEC: Spec = Spec {
                        name: $name,
                        kind: Kind::$kind,
                        labels: &[$(Label {
                            name: stringify!($label),
                            values: <$ty as LabelValues>::VALUES,
                            note: catalogue!(@note $($note)?),
                        }),*],
                        buckets: catalogue!(@buckets $($buckets)?),
                        help: $help,
                    };
                }
            )+
        }

        /// Every metric shopmind exports. The order is the order of `docs/METRICS.md`.
        pub const CATALOGUE: &[Spec] = &[$(entry::$field::SPEC),+];

        /// A handle to every metric of the [`CATALOGUE`], each also a method that takes its label
        /// values and returns the one series they select.
        #[derive(Debug)]
        pub(crate) struct Families {
            $($field: catalogue!(@type $kind [$($label)*] $field),)+
        }

        impl Families {
            /// Every metric, each registered in `registry` under its catalogue entry, in its order.
            pub(crate) fn register(registry: &mut Registry) -> Self {
                let families = Self {
                    $($field: catalogue!(@new $kind [$($label)*] [$($buckets)?]),)+
                };
                $(
                    let spec = &entry::$field::SPEC;
                    registry.register(spec.registry_name(), spec.registry_help(), families.$field.clone());
                )+
                families
            }

            $(
                pub(crate) fn $field(&self $(, $label: $ty)*) -> impl Deref<Target = $kind> + '_ {
                    catalogue!(@series self $field [$($label),*])
                }
            )+
        }
    };

    (@labels []) => {};
    (@labels [$($label:ident: $ty:ty),+]) => {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        pub(in super::super) struct Labels {
            $($label: $ty),+
        }

        impl Labels {
            pub(in super::super) fn new($($label: $ty),+) -> Self {
                Self { $($label),+ }
            }
        }
    };

    (@note) => { "" };
    (@note $note:literal) => { $note };

    (@buckets) => { None };
    (@buckets $buckets:expr) => { Some($buckets) };

    (@type Histogram [] $field:ident) => { Histogram };
    (@type Histogram [$($label:ident)+] $field:ident) => {
        Family<entry::$field::Labels, Histogram, fn() -> Histogram>
    };
    (@type $kind:ident [] $field:ident) => { $kind };
    (@type $kind:ident [$($label:ident)+] $field:ident) => { Family<entry::$field::Labels, $kind> };

    (@new Histogram [] [$buckets:expr]) => { Histogram::new($buckets.bounds()) };
    (@new Histogram [$($label:ident)+] [$buckets:expr]) => {
        Family::new_with_constructor(|| Histogram::new($buckets.bounds()))
    };
    (@new $kind:ident [] []) => { $kind::default() };
    (@new $kind:ident [$($label:ident)+] []) => { Family::default() };

    (@series $self:ident $field:ident []) => { &$self.$field };
    (@series $self:ident $field:ident [$($label:ident),+]) => {
        $self.$field.get_or_create(&entry::$field::Labels::new($($label),+))
    };
}

catalogue! {
    // Events in.
    events_received: Counter "shopmind_events_received_total" {
        labels: {
            source: Source,
            outcome: EventOutcome,
        },
        help: "Events offered to shopmind, by where they came in and what became of them: accepted \
               (published to SM_EVENTS), duplicate (already stored), rejected (invalid). The gateway \
               counts the events of gRPC calls (in a PublishEvents call refused for invalid events, \
               only the invalid ones; it publishes the others itself), ingest those it takes from \
               SM_INTAKE or is sent over request-reply.",
    },
    events_rejected: Counter "shopmind_events_rejected_total" {
        labels: {
            source: Source,
            code: &'static str = "a reject code of docs/EVENTS.md (malformed, missing_field, …)",
        },
        help: "Rejected events by the code of their first violation (the rejected part of \
               shopmind_events_received_total).",
    },
    pii_masked: Counter "shopmind_pii_masked_total" {
        labels: { kind: &'static str = "email, iban, card, national_id, ip, phone, address" },
        help: "Pieces of personal data masked in the free text of admitted events (support messages, \
               search queries) before they were published (docs/PRIVACY.md), by kind.",
    },
    // Events out.
    feature_events: Counter "shopmind_feature_events_total" {
        labels: { result: Applied },
        help: "Events the feature service stored the effect of (applied), or found already applied \
               (duplicate: a redelivery, counted once).",
    },
    notifications: Counter "shopmind_notifications_published_total" {
        labels: { result: Notified },
        help: "Notifications published to SM_NOTIFICATIONS; duplicate: published before (the event \
               was delivered again).",
    },
    notification_outcomes: Counter "shopmind_notifications_total" {
        labels: {
            kind: &'static str = "order_status, cart_abandoned, back_in_stock, price_drop, low_stock, \
                                     churn_risk, support_escalation",
            channel: &'static str = "stream, webhook, any",
            outcome: &'static str = "published, duplicate, deduped, capped, deferred, opted_out",
        },
        help: "What the notification service did with each notification a rule made, by channel: \
               published (to SM_NOTIFICATIONS for stream, to SM_WEBHOOKS for webhook), duplicate \
               (published before), and, for channel any, the policies: deduped (same rule, user and \
               item within the window), capped (frequency cap), deferred (quiet hours), opted_out.",
    },
    notification_timers: Counter "shopmind_notification_timers_total" {
        labels: {
            timer: &'static str = "cart_idle, churn_check, deferred",
            result: &'static str = "fired, silent, rescheduled",
        },
        help: "Due timers the notification service handled: fired (a notification was made), silent \
               (its condition no longer held), rescheduled (not due yet after all).",
    },
    webhook_attempts: Counter "shopmind_webhook_attempts_total" {
        labels: { result: &'static str = "ok, http_error, timeout, error" },
        help: "Webhook POST attempts: ok (2xx), http_error (another status), timeout \
               (notification.webhook.timeout_ms), error (connection or protocol failure).",
    },
    webhook_duration: Histogram "shopmind_webhook_duration_seconds" {
        labels: { result: &'static str = "ok, http_error, timeout, error" },
        buckets: REQUEST_SECONDS,
        help: "Time of one webhook POST attempt, until the response headers (or the failure).",
    },
    // Consumers.
    deliveries: Counter "shopmind_consumer_deliveries_total" {
        labels: { stage: &'static str = "ingest, feature, notification, webhook" },
        help: "Messages delivered to a stage's durable consumer, redeliveries included.",
    },
    settlements: Counter "shopmind_consumer_settlements_total" {
        labels: {
            stage: &'static str = "ingest, feature, notification, webhook",
            result: Settlement,
        },
        help: "How deliveries were settled: ack (done), retry (negatively acked, delivered again \
               later), dead_letter (sent to SM_DLQ, then acked).",
    },
    dead_letters: Counter "shopmind_dead_letters_total" {
        labels: {
            stage: &'static str = "ingest, feature, notification, webhook",
            code: &'static str = "a reject code of docs/EVENTS.md, or retries_exhausted",
        },
        help: "Messages a stage sent to the dead-letter stream SM_DLQ, by reason code.",
    },
    consumer_lag: Gauge "shopmind_consumer_lag_messages" {
        labels: { stage: &'static str = "ingest, feature, notification, webhook" },
        help: "Backlog of a stage's durable consumer: messages not yet delivered plus delivered and \
               not yet acked. Refreshed every 5 s by each process running the stage; replicas of one \
               stage share the consumer and report the same backlog (take the max).",
    },
    // Inference.
    inference_duration: Histogram "shopmind_inference_request_duration_seconds" {
        labels: { result: Success },
        buckets: REQUEST_SECONDS,
        help: "Time the inference service took to answer a recommend request: store read, model \
               scoring, ranking.",
    },
    session_wait: Histogram "shopmind_model_session_wait_seconds" {
        labels: {},
        buckets: MODEL_SECONDS,
        help: "Time a model run waited for a free ONNX Runtime session of its pool (the queue; see \
               inference.sessions).",
    },
    compute: Histogram "shopmind_model_compute_seconds" {
        labels: {},
        buckets: MODEL_SECONDS,
        help: "Time ONNX Runtime spent in one model run, inputs and outputs copied included.",
    },
    history_length: Histogram "shopmind_model_history_length" {
        labels: {},
        buckets: HISTORY_LENGTHS,
        help: "Interactions in the history a recommender scored for one request (at most \
               inference.history_len).",
    },
    recommend_answers: Counter "shopmind_recommend_answers_total" {
        labels: {
            scenario: &'static str = "for_you, similar_items, bought_together, trending, cart_complement",
            retrieval: &'static str = "ann, brute_force, none",
        },
        help: "Recommend answers by scenario and by how the model's candidates were found: ann (the \
               version's HNSW index over item embeddings), brute_force (every item the model scores; \
               catalogs below inference.ann_min_items, co-visitation models), none (no model ranked: \
               trending, bought together, cold start, no model yet).",
    },
    // Model registry, on the inference side.
    model_loads: Counter "shopmind_model_loads_total" {
        labels: {
            model: &'static str = "recommender, intent, demand (the registry's model names)",
            result: Success,
        },
        help: "Model versions inference loaded after the registry's active version changed: ok \
               (loaded and warmed up by one scoring run, then swapped in), error (failed to fetch, \
               load or warm up; the version served before keeps serving).",
    },
    model_swaps: Counter "shopmind_model_swaps_total" {
        labels: { model: &'static str = "recommender, intent, demand" },
        help: "Times a newly loaded version replaced (or became) the model a tenant is served \
               with, or a tenant's model was removed because no version is active any more.",
    },
    models_served: Gauge "shopmind_models_served" {
        labels: { model: &'static str = "recommender, intent, demand" },
        help: "Tenants this process serves a model to (the others get the fallback: popular \
               items). Which version each serves is in the logs and in every response's \
               model_version.",
    },
    queue_wait: Histogram "shopmind_model_queue_wait_seconds" {
        labels: { model: &'static str = "the model's name in the code (covisit, embedding)" },
        buckets: MODEL_SECONDS,
        help: "Time a request waited in a model's batching queue, from submission until its batch \
               started (waiting for more requests and for a free session; see \
               inference.max_queue_delay_us and inference.sessions).",
    },
    batch_compute: Histogram "shopmind_model_batch_compute_seconds" {
        labels: { model: &'static str = "the model's name in the code (covisit, embedding)" },
        buckets: MODEL_SECONDS,
        help: "Time one batch took from its start to its outputs: stacking (and padding) the \
               requests' inputs and the ONNX Runtime run.",
    },
    batch_rows: Histogram "shopmind_model_batch_rows" {
        labels: { model: &'static str = "the model's name in the code (covisit, embedding)" },
        buckets: BATCH_ROWS,
        help: "Rows (requests' rows stacked along the batch dimension) in one batch a model \
               computed; at most inference.max_batch unless one request is larger.",
    },
    model_rejected: Counter "shopmind_model_rejected_total" {
        labels: {
            model: &'static str = "the model's name in the code (covisit, embedding)",
            reason: Rejection,
        },
        help: "Requests a model's batcher answered without computing them: its queue was full \
               (inference.queue_capacity), the request's deadline passed first, or the model was \
               shutting down.",
    },
    // Predictions (inference's intent and forecast methods) and their use by notifications.
    prediction_duration: Histogram "shopmind_prediction_request_duration_seconds" {
        labels: {
            method: &'static str = "intent, forecast, assist",
            result: Success = "a tenant without a model included",
        },
        buckets: REQUEST_SECONDS,
        help: "Time the inference service took to answer an intent, forecast or assist request: \
               store reads, model runs (assist: encoder, intent head, FAQ retrieval, state write).",
    },
    agent_report_duration: Histogram "shopmind_agent_report_duration_seconds" {
        labels: { result: Success = "invalid period, unknown agent, store unavailable" },
        buckets: REQUEST_SECONDS,
        help: "Time the inference service took to answer a GetAgentReport request: reading the \
               period's support conversations from the store and computing each agent's figures.",
    },
    model_fallbacks: Counter "shopmind_notification_model_fallbacks_total" {
        labels: {
            seam: &'static str = "intent, demand",
            reason: &'static str = "no_model (the tenant has no active model), error (the call failed or \
                                       timed out, or the service answered another error)",
        },
        help: "Times a notification rule used the feature-based estimate instead of the model \
               served by inference (notification.model_seams).",
    },
    // Customer profiles (inference's profile method).
    profile_duration: Histogram "shopmind_profile_request_duration_seconds" {
        labels: {
            result: &'static str = "ok, not_found (no event recorded for the user), error (invalid \
                                       request, store unavailable, deadline passed)",
        },
        buckets: REQUEST_SECONDS,
        help: "Time the inference service took to answer a customer profile request: one store \
               read, segment, churn risk.",
    },
    profiles: Counter "shopmind_profiles_total" {
        labels: { segment: &'static str = "champion, loyal, promising, new, at_risk, hibernating, browser" },
        help: "Customer profiles served, by the RFM segment they reported.",
    },
    assistant_turns: Counter "shopmind_assistant_turns_total" {
        labels: {
            intent: &'static str = "the 12 intents of docs/ASSISTANT.md (the one acted on)",
            outcome: &'static str = "answered, clarification (asked which order), not_served (out of \
                                        scope, unsure, no FAQ entry), escalated, escalation_failed",
        },
        help: "Customer messages the assistant (Assist) answered, by intent and outcome.",
    },
    // Gateway.
    gateway_duration: Histogram "shopmind_gateway_request_duration_seconds" {
        labels: {
            method: GatewayMethod,
            status: &'static str = "gRPC status names (OK, INVALID_ARGUMENT, UNAVAILABLE, …)",
        },
        buckets: REQUEST_SECONDS,
        help: "Time the gateway took to answer a call, by method and gRPC status. For \
               StreamEvents, until the client's stream ended; for StreamNotifications, until the \
               stream was opened.",
    },
    gateway_refused: Counter "shopmind_gateway_refused_total" {
        labels: {
            reason: &'static str = "unauthenticated (no or an unknown API key), permission_denied (the \
                                       key's tenant is not the request's, or not an admin key), \
                                       rate_limited (the tenant's token bucket was empty)",
        },
        help: "Calls the gateway refused before doing any work (gateway.api_keys, \
               gateway.rate_limit).",
    },
    rpc_expired: Counter "shopmind_rpc_expired_total" {
        labels: {},
        help: "Requests a service received over NATS after their caller's deadline \
               (Shopmind-Deadline-Ms) had passed, and answered DEADLINE_EXCEEDED without working \
               on them.",
    },
    // Trainer.
    trainer_rounds: Counter "shopmind_trainer_rounds_total" {
        labels: { result: Success },
        help: "Training rounds of the trainer service (replay SM_EVENTS, train, write models).",
    },
    trainer_duration: Histogram "shopmind_trainer_round_duration_seconds" {
        labels: {},
        buckets: ROUND_SECONDS,
        help: "Time one training round took.",
    },
    models_written: Counter "shopmind_trainer_models_written_total" {
        labels: {},
        help: "Models the trainer published to the registry as new versions (per tenant with new \
               events and round: a recommender, and an intent and a demand model when the tenant \
               has enough data).",
    },
    // Process.
    build_info: Gauge "shopmind_build_info" {
        labels: { version: &'static str = "the shopmind version" },
        help: "Always 1; the labels describe the running build.",
    },
    start_time: Gauge "process_start_time_seconds" {
        labels: {},
        help: "Start time of the process, in seconds since the Unix epoch.",
    },
}

/// `docs/METRICS.md`'s table of metrics, rendered from the [`CATALOGUE`].
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| name | type | labels | buckets | meaning |\n|---|---|---|---|---|\n");
    for spec in CATALOGUE {
        let labels: Vec<String> =
            spec.labels.iter().map(|l| format!("`{}`: {}", l.name, l.documented_values())).collect();
        let labels = if labels.is_empty() { "—".to_string() } else { labels.join("; ") };
        let buckets = spec.buckets.map_or_else(|| "—".to_string(), |b| b.describe());
        let help = spec.help.split_whitespace().collect::<Vec<_>>().join(" ");
        out.push_str(&format!(
            "| `{}` | {} | {labels} | {buckets} | {help} |\n",
            spec.name,
            spec.kind.as_str()
        ));
    }
    out
}
