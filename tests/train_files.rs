//! `shopmind train --file`: models trained from event files go to the registry on NATS, with
//! holdout metrics; `--since` limits training to events from that time on.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use shopmind_testkit::NatsServer;

fn shopmind(nats: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args(args)
        .env("SHOPMIND__NATS__URL", nats)
        // Two passes keep the debug build quick; what is trained is not under test.
        .env("SHOPMIND__TRAINER__EMBEDDING_EPOCHS", "2")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[tokio::test]
async fn train_from_a_file_publishes_to_the_registry_and_since_limits_it() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.jsonl");
    let sim = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args([
            "simulate", "--users", "80", "--items", "40", "--days", "6", "--seed", "3", "--tenant", "filed",
        ])
        .arg("--out")
        .arg(&file)
        .output()
        .unwrap();
    stdout(&sim);
    let file = file.to_str().unwrap();

    // Everything after the events: nothing to train.
    let late = stdout(&shopmind(&nats.url(), &["train", "--file", file, "--since", "2100-01-01"]));
    assert!(late.contains("nothing to train"), "{late}");
    let listed = stdout(&shopmind(&nats.url(), &["models", "list"]));
    assert!(listed.contains("no model versions"), "{listed}");

    // All of it: a recommender for the file's tenant, active, with its holdout figures.
    let out = stdout(&shopmind(&nats.url(), &["train", "--file", file]));
    assert!(out.contains("filed: ") && out.contains("recommender version embedding-"), "{out}");
    assert!(out.contains("holdout (each user's latest interaction"), "{out}");
    let listed = stdout(&shopmind(&nats.url(), &["models", "list", "--tenant", "filed"]));
    let active: Vec<&str> =
        listed.lines().filter(|l| l.contains("recommender") && l.contains(" active ")).collect();
    assert_eq!(active.len(), 1, "{listed}");

    // --tenant relabels the file's events.
    let out = stdout(&shopmind(&nats.url(), &["train", "--file", file, "--tenant", "other"]));
    assert!(out.contains("other: ") && !out.contains("filed: "), "{out}");
}

/// With `trainer.assistant.enabled`, `shopmind train` publishes the tenant's `intent_head` and
/// prints its held-out accuracy and confusion matrix.
#[tokio::test]
async fn train_prints_the_intent_heads_held_out_accuracy_and_confusion_matrix() {
    let model_dir = shopmind_encoder::default_model_dir()
        .expect("all-MiniLM-L6-v2 not found in .cache/models; run scripts/setup.sh");
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("views.jsonl");
    let line = |id: &str| {
        format!(
            r#"{{"event_id":"{id}","tenant":"helpdesk","occurred_at":"2026-01-01T00:00:00Z","user_id":"u1","type":"product_viewed","item_id":"i1"}}"#
        )
    };
    std::fs::write(&file, format!("{}\n{}\n", line("e1"), line("e2"))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
        .args(["train", "--file", file.to_str().unwrap()])
        .env("SHOPMIND__NATS__URL", nats.url())
        .env("SHOPMIND__TRAINER__EMBEDDING_EPOCHS", "1")
        .env("SHOPMIND__TRAINER__ASSISTANT__ENABLED", "true")
        .env("SHOPMIND__TRAINER__ASSISTANT__ENCODER_DIR", model_dir.to_str().unwrap())
        .output()
        .unwrap();
    let out = stdout(&out);
    assert!(
        out.contains("helpdesk: 504 labelled support messages -> intent_head version intent-head-"),
        "{out}"
    );
    assert!(out.contains("holdout_accuracy 0.9"), "{out}");
    assert!(out.contains("Confusion matrix") && out.contains("| 12 `out_of_scope` |"), "{out}");
}
