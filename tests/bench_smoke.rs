//! `shopmind bench ingest` runs end to end on private servers and reports what it measured.
//! No timing is asserted: speed is measured by the benchmark itself (docs/BENCHMARKS.md).

use std::process::Command;

#[test]
fn bench_ingest_reports_every_figure_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args(["bench", "ingest", "--events", "2000", "--spawn-servers", "--json"])
        .env_remove("SHOPMIND_CONFIG")
        .output()
        .expect("running shopmind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object on stdout");

    for key in [
        "raw_msgs_per_s",
        "grpc_events_per_s",
        "e2e_events_per_s",
        "ratio",
        "target_ratio",
        "freshness_under_load",
        "freshness_idle",
    ] {
        assert!(report.get(key).is_some(), "missing {key}: {report}");
    }
    assert_eq!(report["bench"], "ingest");
    assert_eq!(report["events"], 2000);
    assert_eq!(report["servers"], "spawned");
    for key in ["raw_msgs_per_s", "grpc_events_per_s", "e2e_events_per_s", "ratio"] {
        let v = report[key].as_f64().expect("a number");
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    // Every event went through: accepted once, stored, applied by the feature consumer.
    assert_eq!(report["caught_up"], true);
    assert_eq!(report["accepted"], 2000);
    assert_eq!(report["rejected"], 0);
    assert_eq!(report["dead_letters"], 0);
    assert!(report["stored"].as_u64().expect("stored") >= 2000, "{report}");
    let idle = &report["freshness_idle"];
    assert_eq!(idle["timed_out"], 0, "{report}");
    assert!(idle["count"].as_u64().expect("count") > 0);
    assert!(idle["p50_ms"].as_f64().expect("p50") > 0.0);
}

#[test]
fn bench_infer_reports_batched_unbatched_and_raw_figures() {
    let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args(["bench", "infer", "--items", "200", "--requests", "500", "--concurrency", "16", "--json"])
        .env_remove("SHOPMIND_CONFIG")
        .output()
        .expect("running shopmind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object on stdout");
    assert_eq!(report["requests"], 500);
    assert_eq!(report["items"], 200);
    for key in
        ["raw_rows_per_s", "unbatched_per_s", "batched_per_s", "batched_over_unbatched", "mean_batch_rows"]
    {
        let v = report[key].as_f64().unwrap_or_else(|| panic!("missing {key}: {report}"));
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    // Batched and unbatched scores agree (the bench fails otherwise, and reports the difference).
    assert!(report["max_abs_diff"].as_f64().expect("max_abs_diff") <= 1e-4, "{report}");
}
