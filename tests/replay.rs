//! `shopmind replay` as a process against a real `shopmind all-in-one` (embedded bus and store):
//! the summary counts accepted events, duplicates and rejections by reason; a second run of the
//! same file finds only duplicates; `--rate` paces; an unreachable gateway fails clearly.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shopmind_testkit::{eventually, free_port};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// `shopmind all-in-one` on a free port, killed on drop.
struct AllInOne {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl AllInOne {
    async fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[]).await
    }

    async fn start_with(dir: &Path, env: &[(&str, String)]) -> Self {
        let port = free_port();
        let log = dir.join("all-in-one.log");
        let child = Command::new(env!("CARGO_BIN_EXE_shopmind"))
            .arg("all-in-one")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("SHOPMIND__GATEWAY__LISTEN", format!("127.0.0.1:{port}"))
            .env("SHOPMIND__METRICS__LISTEN", "")
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut app = Self { child, port, log };
        app.wait_serving().await;
        app
    }

    async fn wait_serving(&mut self) {
        let endpoint = self.url();
        let exited = self.child.try_wait().unwrap();
        assert!(exited.is_none(), "all-in-one exited: {exited:?}\n{}", self.log());
        eventually(Duration::from_secs(60), "the gateway reports SERVING", || {
            let endpoint = endpoint.clone();
            async move {
                let channel = Channel::from_shared(endpoint).ok()?.connect().await.ok()?;
                let status = tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest { service: "shopmind.v1.Gateway".into() })
                    .await
                    .ok()?
                    .into_inner()
                    .status;
                (status == ServingStatus::Serving as i32).then_some(())
            }
        })
        .await;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AllInOne {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopmind")).arg("replay").args(args).output().unwrap()
}

/// The `key: value` lines of the summary.
fn summary(out: &Output) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "replay failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn counts(s: &HashMap<String, String>) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = s
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "source" | "gateway" | "elapsed_s" | "events_per_s"))
        .map(|(k, v)| (k.clone(), v.parse().unwrap()))
        .collect();
    out.sort();
    out
}

fn expect(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    out.sort();
    out
}

fn minutes_ago(m: i64) -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    now.as_millis() as i64 - m * 60_000
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_counts_accepted_duplicates_and_rejections_and_twice_is_all_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let app = AllInOne::start(dir.path()).await;
    let t = minutes_ago(10);
    let file = dir.path().join("events.jsonl");
    let lines = [
        format!(
            r#"{{"event_id":"r1","occurred_at":{t},"user_id":"alice","type":"product_viewed","item_id":"sku-1"}}"#
        ),
        format!(
            r#"{{"event_id":"r2","occurred_at":{t},"user_id":"alice","type":"added_to_cart","item_id":"sku-1","quantity":2,"price":"19.99","currency":"EUR"}}"#
        ),
        "{\"event_id\":\"broken\",".to_string(),
        format!(
            r#"{{"event_id":"r3","occurred_at":{t},"user_id":"alice","type":"order_placed","order_id":"o-1","lines":[{{"item_id":"sku-1","quantity":1,"price":"19.99","currency":"EUR"}}]}}"#
        ),
        format!(
            r#"{{"event_id":"r1","occurred_at":{t},"user_id":"alice","type":"product_viewed","item_id":"sku-1"}}"#
        ),
        format!(r#"{{"event_id":"bad-1","occurred_at":{t},"type":"product_viewed","item_id":"sku-1"}}"#),
        format!(
            r#"{{"event_id":"bad-2","occurred_at":{t},"user_id":"bob","type":"added_to_cart","item_id":"sku-1","quantity":0}}"#
        ),
        format!(
            r#"{{"event_id":"bad-3","occurred_at":{t},"user_id":"bob","type":"product_view","item_id":"sku-1"}}"#
        ),
        r#"{"event_id":"r4","occurred_at":"2026-01-01T00:00:00Z","type":"item_upserted","item_id":"sku-1","title":"Trail Runner","category":"Shoes > Running"}"#
            .to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let file = file.display().to_string();
    let args = ["--gateway", &app.url(), "--tenant", "replay-shop", "--batch", "2"];

    let first = summary(&replay(&[&[file.as_str()][..], &args].concat()));
    assert_eq!(
        counts(&first),
        expect(&[
            ("read", 9),
            ("accepted", 4),
            ("duplicates", 1),
            ("rejected", 4),
            ("rejected[unparseable]", 2),
            ("rejected[missing_field]", 1),
            ("rejected[invalid_quantity]", 1),
        ]),
        "{first:?}\n{}",
        app.log()
    );
    assert_eq!(first["gateway"], app.url());

    let second = summary(&replay(&[&[file.as_str()][..], &args].concat()));
    assert_eq!(
        counts(&second),
        expect(&[
            ("read", 9),
            ("accepted", 0),
            ("duplicates", 5),
            ("rejected", 4),
            ("rejected[unparseable]", 2),
            ("rejected[missing_field]", 1),
            ("rejected[invalid_quantity]", 1),
        ]),
        "{second:?}"
    );

    // `--json`: the same summary as one JSON object on stdout.
    let third = replay(&[&[file.as_str(), "--json"][..], &args].concat());
    assert!(third.status.success(), "{}", String::from_utf8_lossy(&third.stderr));
    let stdout = String::from_utf8(third.stdout).unwrap();
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object on stdout");
    assert_eq!(json["source"], file.as_str(), "{json}");
    assert_eq!(json["gateway"], app.url().as_str(), "{json}");
    for (key, value) in [("read", 9), ("accepted", 0), ("duplicates", 5), ("rejected", 4)] {
        assert_eq!(json[key], value, "{key}: {json}");
    }
    let by_reason = &json["rejected_by_reason"];
    for (reason, n) in [("unparseable", 2), ("missing_field", 1), ("invalid_quantity", 1)] {
        assert_eq!(by_reason[reason], n, "{reason}: {json}");
    }
    assert!(json["elapsed_s"].as_f64().is_some() && json["events_per_s"].as_f64().is_some(), "{json}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_file_is_replayed_at_the_given_rate() {
    let dir = tempfile::tempdir().unwrap();
    let app = AllInOne::start(dir.path()).await;
    let t = minutes_ago(5);
    let file = dir.path().join("events.csv");
    let csv = format!(
        "event_id,tenant,occurred_at,user_id,type,item_id,quantity,price,currency,order_id\n\
         c1,csv-shop,{t},carol,product_viewed,sku-1,,,,\n\
         c2,csv-shop,{t},carol,order_placed,sku-1,1,\"1,000.00\",EUR,o-1\n\
         c3,csv-shop,{t},carol,order_placed,sku-1,1,10.00,EUR,o-1\n\
         c3,csv-shop,{t},carol,order_placed,sku-2,2,5.00,EUR,o-1\n\
         c4,csv-shop,{t},carol,removed_from_cart,sku-2,1,,,\n\
         c5,csv-shop,{t},carol,product_viewed,sku-3,,,,\n"
    );
    std::fs::write(&file, csv).unwrap();
    let out = replay(&[&file.display().to_string(), "--gateway", &app.url(), "--rate", "20"]);
    let s = summary(&out);
    assert_eq!(
        counts(&s),
        expect(&[
            ("read", 5),
            ("accepted", 4),
            ("duplicates", 0),
            ("rejected", 1),
            ("rejected[unparseable]", 1)
        ]),
        "{s:?}"
    );
    // Four events at 20/s: the last is due 150 ms after the first.
    let elapsed: f64 = s["elapsed_s"].parse().unwrap();
    assert!(elapsed >= 0.15, "{elapsed} s");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 3: lines[0]: `price`"), "the problem is shown with its line:\n{stderr}");
}

/// The gateway's configuration is stricter than the checks replay makes: what it refuses is
/// counted by its code, and the rest of each batch still goes in.
#[tokio::test(flavor = "multi_thread")]
async fn rejections_by_the_gateway_are_counted_and_the_rest_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("shopmind.toml");
    std::fs::write(&config, "[ingest]\nmax_future_skew_s = 10\ntenants = [\"acme\"]\n").unwrap();
    let app = AllInOne::start_with(dir.path(), &[("SHOPMIND_CONFIG", config.display().to_string())]).await;
    let (past, soon) = (minutes_ago(1), minutes_ago(-2));
    let file = dir.path().join("events.jsonl");
    let view = |id: &str, t: i64| {
        format!(
            r#"{{"event_id":"{id}","occurred_at":{t},"user_id":"u","type":"product_viewed","item_id":"i"}}"#
        )
    };
    let lines = [view("g1", past), view("g2", soon), view("g3", past), view("g4", soon), view("g5", past)];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let file = file.display().to_string();

    let s = summary(&replay(&[&file, "--gateway", &app.url(), "--tenant", "acme"]));
    assert_eq!(
        counts(&s),
        expect(&[
            ("read", 5),
            ("accepted", 3),
            ("duplicates", 0),
            ("rejected", 2),
            ("rejected[timestamp_out_of_range]", 2)
        ]),
        "{s:?}\n{}",
        app.log()
    );
    let s = summary(&replay(&[&file, "--gateway", &app.url(), "--tenant", "globex", "--batch", "2"]));
    assert_eq!(
        counts(&s),
        expect(&[
            ("read", 5),
            ("accepted", 0),
            ("duplicates", 0),
            ("rejected", 5),
            ("rejected[unknown_tenant]", 5)
        ]),
        "{s:?}"
    );
}

#[test]
fn an_unreachable_gateway_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    std::fs::write(&file, "{\"event_id\":\"x\",\"type\":\"product_viewed\"}\n").unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = replay(&[&file.display().to_string(), "--gateway", &url]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("cannot reach the gateway at {url}")), "{stderr}");

    let out = replay(&[&dir.path().join("missing.jsonl").display().to_string(), "--gateway", &url]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.jsonl"));
}
