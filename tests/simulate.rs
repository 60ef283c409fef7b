//! `shopmind simulate` writes a file that `shopmind replay` (and the event-file reader) accepts.

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn simulate_writes_valid_events_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, seed: &str| {
        let path = dir.path().join(name);
        let out = Command::new(env!("CARGO_BIN_EXE_shopmind"))
            .args([
                "simulate", "--users", "60", "--items", "40", "--days", "5", "--seed", seed, "--tenant", "t1",
            ])
            .arg("--out")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).unwrap();
        (path, stdout)
    };
    let (a, said) = run("a.jsonl", "7");
    let (b, _) = run("b.jsonl", "7");
    let (c, _) = run("c.jsonl", "8");
    let events: Vec<_> = shopmind_eventfile::read_events(&a).unwrap().map(|r| r.unwrap().1).collect();
    assert!(said.contains(&format!("wrote {} events", events.len())), "{said}");
    assert!(events.len() > 100, "a few days of 60 users make more than 100 events");
    let policy = shopmind_domain::ValidationPolicy::stored();
    for e in &events {
        assert_eq!(e.tenant, "t1");
        shopmind_domain::Event::from_proto(e, None, &policy).unwrap();
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "same seed, same file");
    assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap(), "another seed, another shop");
}
