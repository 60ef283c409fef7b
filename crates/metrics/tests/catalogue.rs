//! The catalogue, the exposition and docs/METRICS.md agree: every metric family the registry
//! exposes is documented with its type and labels, and every documented metric is exposed.
//! `SHOPMIND_BLESS=1 cargo test -p shopmind-metrics --test catalogue` rewrites the table.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shopmind_metrics::{
    Applied, CATALOGUE, GatewayMethod, Kind, Metrics, Notified, Rejection, Settlement, Source, Success,
    catalogue_markdown,
};

const START: &str = "<!-- catalogue:start (generated from crates/metrics/src/catalogue.rs) -->\n";
const END: &str = "<!-- catalogue:end -->";

/// A registry with one sample in every metric.
fn touched() -> Metrics {
    let m = Metrics::new();
    m.event_stored(Source::Grpc, false);
    m.event_stored(Source::Nats, true);
    m.event_rejected(Source::Grpc, "missing_field");
    m.pii_masked("email", 2);
    m.feature_event(Applied::Applied);
    m.notification(Notified::Published);
    m.notification_outcome("price_drop", "stream", "published");
    m.notification_timer("cart_idle", "fired");
    m.webhook_attempt("ok", Duration::from_millis(2));
    m.delivery("feature");
    m.settled("feature", Settlement::DeadLetter);
    m.dead_lettered("feature", "malformed");
    m.consumer_lag("feature", 7);
    m.inference_request(Success::Ok, Duration::from_millis(3));
    m.session_wait(Duration::from_micros(10));
    m.compute(Duration::from_micros(300));
    m.history_length(12);
    m.model_load("recommender", Success::Error);
    m.model_swapped("recommender", 3);
    m.model_queue_wait("covisit", Duration::from_micros(200));
    m.model_batch("covisit", 5, Duration::from_micros(400));
    m.model_rejected("covisit", Rejection::QueueFull);
    m.recommend_answer("for_you", "ann");
    m.prediction_request("intent", Success::Ok, Duration::from_millis(2));
    m.agent_report(Success::Ok, Duration::from_millis(2));
    m.model_fallback("intent", "no_model");
    m.profile_request("ok", Duration::from_millis(1));
    m.profile_served("champion");
    m.assistant_turn("order_status", "answered");
    m.gateway_request(GatewayMethod::Recommend, 0, Duration::from_millis(4));
    m.gateway_refused("rate_limited");
    m.rpc_expired();
    m.trainer_round(Success::Ok, Duration::from_secs(2), 1);
    m
}

/// Families of an exposition: name -> (type, label names of its samples).
fn families(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut out: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.insert(name.to_string(), (kind.to_string(), BTreeSet::new()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, _value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = out
                .keys()
                .find(|f| {
                    name == f.as_str()
                        || ["_bucket", "_sum", "_count"]
                            .iter()
                            .any(|s| name.strip_suffix(s) == Some(f.as_str()))
                })
                .cloned()
                .unwrap_or_else(|| panic!("sample {line:?} of no family"));
            let keys = labels.trim_end_matches('}').split(',').filter(|l| !l.is_empty());
            let keys = keys.map(|kv| kv.split_once('=').unwrap().0.to_string()).filter(|k| k != "le");
            out.get_mut(&family).unwrap().1.extend(keys);
        }
    }
    out
}

#[test]
fn the_exposition_is_the_catalogue() {
    let text = touched().encode().unwrap();
    let exposed = families(&text);
    let catalogued: BTreeMap<String, (String, BTreeSet<String>)> = CATALOGUE
        .iter()
        .map(|s| {
            let labels = s.labels.iter().map(|l| l.name.to_string()).collect();
            (s.name.to_string(), (s.kind.as_str().to_string(), labels))
        })
        .collect();
    assert_eq!(exposed, catalogued, "exposition:\n{text}");
    for spec in CATALOGUE {
        assert!(
            spec.name.starts_with("shopmind_") || spec.name.starts_with("process_"),
            "{} is not namespaced",
            spec.name
        );
        assert_eq!(
            spec.kind == Kind::Counter,
            spec.name.ends_with("_total"),
            "{}: counters end in _total",
            spec.name
        );
        for label in spec.labels {
            assert!(
                !label.documented_values().is_empty(),
                "{}: values of `{}` documented",
                spec.name,
                label.name
            );
        }
        assert_eq!(
            spec.kind == Kind::Histogram,
            spec.buckets.is_some(),
            "{}: buckets iff a histogram",
            spec.name
        );
    }
}

#[test]
fn histograms_expose_the_buckets_of_their_entry() {
    let text = touched().encode().unwrap();
    for spec in CATALOGUE.iter().filter(|s| s.kind == Kind::Histogram) {
        let prefix = format!("{}_bucket{{", spec.name);
        // The bounds of the first series of the family (every series has the same).
        let first = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix}"));
        let series = &first[..first.find("le=").unwrap()];
        let exposed: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(series))
            .map(|l| l[series.len() + 4..].split('"').next().unwrap())
            .collect();
        let (last, bounds) = exposed.split_last().unwrap();
        assert_eq!(*last, "+Inf", "{}", spec.name);
        let bounds: Vec<f64> = bounds.iter().map(|b| b.parse().unwrap()).collect();
        assert_eq!(bounds, spec.buckets.unwrap().bounds(), "{}", spec.name);
    }
}

#[test]
fn enum_labels_list_every_value_of_their_enum() {
    let gateway = CATALOGUE.iter().find(|s| s.name == "shopmind_gateway_request_duration_seconds").unwrap();
    let method = gateway.labels.iter().find(|l| l.name == "method").unwrap();
    let all: Vec<&str> = GatewayMethod::ALL.iter().map(|m| m.as_str()).collect();
    assert_eq!(method.values, all);
    assert!(catalogue_markdown().contains(&format!("`method`: {};", all.join(", "))));
    let settled = CATALOGUE.iter().find(|s| s.name == "shopmind_consumer_settlements_total").unwrap();
    assert_eq!(settled.labels[1].values, Settlement::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>());
}

#[test]
fn an_untouched_registry_lists_the_families_without_labels() {
    // A labelled family appears with its first sample; one without labels is there from the start.
    let text = Metrics::new().encode().unwrap();
    let exposed: BTreeSet<String> = families(&text).into_keys().collect();
    let unlabelled: BTreeSet<String> =
        CATALOGUE.iter().filter(|s| s.labels.is_empty()).map(|s| s.name.to_string()).collect();
    assert!(exposed.is_superset(&unlabelled), "{exposed:?}");
    assert!(exposed.iter().all(|name| CATALOGUE.iter().any(|s| s.name == name)), "{exposed:?}");
    assert!(
        text.contains(&format!("shopmind_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

#[test]
fn samples_carry_the_recorded_values() {
    let text = touched().encode().unwrap();
    for expected in [
        "shopmind_events_received_total{source=\"grpc\",outcome=\"accepted\"} 1",
        "shopmind_events_received_total{source=\"nats\",outcome=\"duplicate\"} 1",
        "shopmind_events_received_total{source=\"grpc\",outcome=\"rejected\"} 1",
        "shopmind_events_rejected_total{source=\"grpc\",code=\"missing_field\"} 1",
        "shopmind_consumer_settlements_total{stage=\"feature\",result=\"dead_letter\"} 1",
        "shopmind_dead_letters_total{stage=\"feature\",code=\"malformed\"} 1",
        "shopmind_consumer_lag_messages{stage=\"feature\"} 7",
        "shopmind_gateway_request_duration_seconds_count{method=\"Recommend\",status=\"OK\"} 1",
        "shopmind_model_history_length_count 1",
        "shopmind_model_queue_wait_seconds_count{model=\"covisit\"} 1",
        "shopmind_model_batch_compute_seconds_count{model=\"covisit\"} 1",
        "shopmind_model_batch_rows_sum{model=\"covisit\"} 5.0",
        "shopmind_model_rejected_total{model=\"covisit\",reason=\"queue_full\"} 1",
        "shopmind_trainer_models_written_total 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn docs_metrics_md_is_generated_from_the_catalogue() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/METRICS.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let (Some(start), Some(end)) = (doc.find(START), doc.find(END)) else {
        panic!("{} lacks the markers {START:?} and {END:?}", path.display())
    };
    let table = catalogue_markdown();
    let current = &doc[start + START.len()..end];
    if current != table {
        if std::env::var_os("SHOPMIND_BLESS").is_some() {
            let updated = format!("{}{START}{table}{}", &doc[..start], &doc[end..]);
            std::fs::write(&path, updated).unwrap();
        } else {
            panic!(
                "docs/METRICS.md is not the catalogue; run `SHOPMIND_BLESS=1 cargo test -p shopmind-metrics \
                 --test catalogue` and review the diff. Expected table:\n{table}"
            );
        }
    }
    // And the other way round: every metric name the document mentions (in prose or queries) is
    // exposed.
    let exposed: BTreeSet<String> = families(&touched().encode().unwrap()).into_keys().collect();
    let words = doc.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    for name in words.filter(|w| w.starts_with("shopmind_") || w.starts_with("process_")) {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(exposed.contains(family), "docs/METRICS.md mentions `{name}`, which is not exposed");
    }
}
