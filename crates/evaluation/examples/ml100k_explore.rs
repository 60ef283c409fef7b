//! Hyperparameter exploration on ml-100k's validation split (never the test set), used to pick
//! the grids `shopmind eval` searches. Run from the workspace root:
//! `cargo run --release -p shopmind-evaluation --example ml100k_explore -- <family>`
//! with family one of `knn`, `als`, `covisit`, `embedding`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use shopmind_evaluation::recommender_protocol::{self as protocol, Candidate, TEST_FRACTION, temporal_split};
use shopmind_training::als::AlsConfig;
use shopmind_training::{CovisitConfig, EmbeddingConfig};

fn load() -> (Vec<Vec<u32>>, usize) {
    let text = std::fs::read_to_string(".cache/data/ml-100k/ml-100k.inter").unwrap();
    let mut per_user: BTreeMap<u32, Vec<(i64, u32)>> = BTreeMap::new();
    let mut items = std::collections::BTreeSet::new();
    for line in text.lines().skip(1) {
        let c: Vec<&str> = line.split('\t').collect();
        let (u, i, t): (u32, u32, f64) =
            (c[0].parse().unwrap(), c[1].parse().unwrap(), c[3].parse().unwrap());
        per_user.entry(u).or_default().push((t as i64, i));
        items.insert(i);
    }
    let dense: BTreeMap<u32, u32> = items.iter().enumerate().map(|(k, &i)| (i, k as u32)).collect();
    let seqs = per_user
        .into_values()
        .map(|mut v| {
            v.sort();
            v.into_iter().map(|(_, i)| dense[&i]).collect()
        })
        .collect();
    (seqs, items.len())
}

fn main() {
    let family = std::env::args().nth(1).unwrap_or_else(|| "embedding".into());
    let (seqs, n) = load();
    let split = temporal_split(&seqs, TEST_FRACTION);
    let validation = temporal_split(&split.train, TEST_FRACTION);
    if family == "protocol" {
        // The whole protocol with the grids of `shopmind eval` (without its ONNX Runtime check).
        let grids = protocol::default_grids(n, 42, 2);
        let (report, _) = protocol::run_protocol(&seqs, n, &grids, 2, &mut protocol::Quiet);
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
        return;
    }
    let grid: Vec<Candidate> = match family.as_str() {
        "knn" => {
            [10, 20, 50, 100, 200, 400, 0].into_iter().map(|k| Candidate::ItemKnn { neighbors: k }).collect()
        }
        "pop" => vec![Candidate::Popularity],
        "covisit" => {
            let mut g = Vec::new();
            for window in [5, 10, 20, 50, 100, 1000] {
                for shrinkage in [0, 5, 20] {
                    g.push(Candidate::Covisit(CovisitConfig { max_items: n, window, shrinkage }));
                }
            }
            g
        }
        "als" => {
            let mut g = Vec::new();
            for factors in [32, 64, 128] {
                for reg in [0.1, 10.0, 50.0] {
                    for alpha in [1.0, 5.0, 20.0] {
                        g.push(Candidate::Als(AlsConfig {
                            factors,
                            iterations: 10,
                            regularization: reg,
                            alpha,
                            seed: 1,
                            threads: 2,
                        }));
                    }
                }
            }
            g
        }
        _ => {
            let spec = std::env::args().skip(2).collect::<Vec<_>>();
            let mut g = Vec::new();
            // key=v1,v2 pairs over the default config.
            let mut configs = vec![EmbeddingConfig::default()];
            for kv in &spec {
                let (k, vs) = kv.split_once('=').unwrap();
                let mut next = Vec::new();
                for c in &configs {
                    for v in vs.split(',') {
                        let mut c = c.clone();
                        match k {
                            "dim" => c.dim = v.parse().unwrap(),
                            "epochs" => c.epochs = v.parse().unwrap(),
                            "neg" => c.negatives = v.parse().unwrap(),
                            "lr" => c.learning_rate = v.parse().unwrap(),
                            "reg" => c.regularization = v.parse().unwrap(),
                            "decay" => c.history_decay = v.parse().unwrap(),
                            "len" => c.history_len = v.parse().unwrap(),
                            "seed" => c.seed = v.parse().unwrap(),
                            "window" => c.target_window = v.parse().unwrap(),
                            _ => panic!("unknown key {k}"),
                        }
                        next.push(c);
                    }
                }
                configs = next;
            }
            g.extend(configs.into_iter().map(Candidate::Embedding));
            g
        }
    };
    for c in grid {
        let t = std::time::Instant::now();
        let trained = protocol::train_candidate(&c, &validation.train, n, &mut || {});
        let secs = t.elapsed().as_secs_f64();
        let m = protocol::evaluate(&validation, n, protocol::K, 2, |u, h| trained.score(u, h));
        println!(
            "{:<10} ndcg={:.4} recall={:.4} train={secs:.1}s  {}",
            c.family(),
            m.ndcg,
            m.recall,
            c.params()
        );
    }
}
