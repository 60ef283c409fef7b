//! The intent classifier end to end: the head exported to ONNX and run by ONNX Runtime against
//! its plain-Rust reference, the held-out evaluation on the project's data, and serving.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use shopmind_assistant::{
    ClassifierConfig, HeadConfig, HeadModel, INTENTS, IntentClassifier, evaluate, fit, head, train_from_file,
};
use shopmind_encoder::{SentenceEncoder, default_model_dir, import};
use shopmind_serving::PoolOptions;

fn init_runtime() {
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/onnxruntime/libonnxruntime.so"),
    };
    assert!(path.is_file(), "ONNX Runtime library not found at {}; run scripts/setup.sh", path.display());
    shopmind_serving::init_runtime(&path).unwrap();
}

fn imported_encoder() -> tempfile::TempDir {
    init_runtime();
    let model_dir =
        default_model_dir().expect("all-MiniLM-L6-v2 not found in .cache/models; run scripts/setup.sh");
    let out = tempfile::tempdir().unwrap();
    import(&model_dir, out.path(), "test", 0).unwrap();
    out
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn unit(&mut self, d: usize) -> Vec<f32> {
        let v: Vec<f32> = (0..d).map(|_| self.next()).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }
}

#[tokio::test]
async fn the_exported_head_matches_the_plain_rust_computation() {
    init_runtime();
    let (d, k) = (384, INTENTS.len());
    let mut rng = Rng(11);
    // Random unit vectors around one random direction per label, like sentence embeddings.
    let centres: Vec<Vec<f32>> = (0..k).map(|_| rng.unit(d)).collect();
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..(k * 10) {
        let noise = rng.unit(d);
        x.push(centres[i % k].iter().zip(&noise).map(|(c, n)| c + 0.8 * n).collect::<Vec<f32>>());
        y.push(i % k);
    }
    let labels: Vec<String> = INTENTS.iter().map(|s| (*s).to_owned()).collect();
    let cfg = HeadConfig { max_iter: 100, ..HeadConfig::default() };
    let trained = fit(&x, &y, labels.clone(), &cfg).unwrap();
    let bytes = trained.to_onnx("t1", 5, &[("holdout_accuracy", 0.5)]);

    let manifest = shopmind_onnx::read_manifest(&bytes).unwrap();
    assert_eq!(manifest.kind, head::KIND);
    assert_eq!(manifest.metrics.get("holdout_accuracy"), Some(&0.5));
    assert_eq!(manifest.input(head::INPUT_EMBEDDINGS).unwrap().shape, ["batch", "384"]);
    assert_eq!(manifest.output(head::OUTPUT_PROBABILITIES).unwrap().shape, ["batch", "12"]);

    let model = HeadModel::load(&bytes, &PoolOptions::default()).unwrap();
    assert_eq!(model.labels(), labels.as_slice());
    assert_eq!(model.dimension(), d);

    // Random inputs, not the training rows: unit vectors and larger unnormalised ones.
    let mut batch: Vec<Vec<f32>> = (0..9).map(|_| rng.unit(d)).collect();
    batch.push((0..d).map(|_| 3.0 * rng.next()).collect());
    let got = model.probabilities(&batch).await.unwrap();
    assert_eq!(got.len(), batch.len());
    let mut largest = 0f32;
    for (row, probs) in batch.iter().zip(&got) {
        let want = trained.probabilities(row);
        assert_eq!(probs.len(), k);
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for (a, b) in probs.iter().zip(&want) {
            largest = largest.max((a - b).abs());
        }
    }
    assert!(largest < 1e-5, "ONNX Runtime and the reference differ by {largest}");
    // The rows are not all the same answer: the comparison is not vacuous.
    let firsts: std::collections::BTreeSet<usize> =
        got.iter().map(|p| (0..k).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap()).collect();
    assert!(firsts.len() > 1, "every random row got the same intent");

    // A wrong width is refused.
    assert!(model.probabilities(&[vec![0.0; d - 1]]).await.is_err());
}

#[tokio::test]
async fn held_out_accuracy_beats_the_baselines() {
    let dir = imported_encoder();
    let report = evaluate(dir.path(), 42).await.unwrap();
    eprintln!("{report}");
    assert_eq!(
        report.train_rows + report.held_out_rows,
        shopmind_assistant::parse_examples(shopmind_assistant::BUILTIN_DATA).unwrap().len()
    );
    assert!(report.held_out_rows >= 12 * 10);
    assert!(report.accuracy >= 0.85, "held-out accuracy {}", report.accuracy);
    assert!(report.accuracy > report.majority_accuracy);
    assert!(
        report.accuracy > report.nearest_centroid_accuracy,
        "head {} vs nearest centroid {}",
        report.accuracy,
        report.nearest_centroid_accuracy
    );
    assert!(report.max_runtime_difference < 1e-5);
    let total: usize = report.confusion.iter().flatten().sum();
    assert_eq!(total, report.held_out_rows);
}

#[tokio::test]
async fn the_classifier_serves_new_messages() {
    let dir = imported_encoder();
    let cfg = ClassifierConfig::default();
    let encoder = SentenceEncoder::load_dir(dir.path(), cfg.max_tokens, &PoolOptions::default()).unwrap();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/intents.jsonl");
    let trained = train_from_file(&encoder, &data).await.unwrap();
    let file = dir.path().join("intents.onnx");
    std::fs::write(&file, trained.to_onnx("v1", 0, &[])).unwrap();

    let classifier = IntentClassifier::load(dir.path(), &file, cfg, &PoolOptions::default()).unwrap();
    // Messages that are not in the training file.
    let cases = [
        ("hello, where is parcel #Q55555? it's a week late", "order_status"),
        ("please get me a real person on the line", "human_agent"),
        ("I got charged two times for the same order", "payment_issue"),
        ("who painted the mona lisa", "out_of_scope"),
        ("what will the weather be like this weekend", "out_of_scope"),
    ];
    let texts: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let got = classifier.classify(&texts).await.unwrap();
    assert_eq!(got.len(), cases.len());
    for ((text, want), c) in cases.iter().zip(&got) {
        assert_eq!(c.intent, *want, "{text:?}: {c:?}");
        assert_eq!(c.probabilities.len(), INTENTS.len());
        assert!(c.confidence >= classifier.config().threshold);
    }

    // A threshold above every confidence sends everything to out_of_scope.
    let encoder = SentenceEncoder::load_dir(dir.path(), 128, &PoolOptions::default()).unwrap();
    let head = HeadModel::load_file(&file, &PoolOptions::default()).unwrap();
    let strict =
        IntentClassifier::new(encoder, head, ClassifierConfig { threshold: 0.999_999, max_tokens: 128 })
            .unwrap();
    let got = strict.classify(&["I'd like to cancel order #A10001 right away"]).await.unwrap();
    assert!(got[0].below_threshold || got[0].intent == "cancel_order", "{:?}", got[0]);
    if got[0].below_threshold {
        assert_eq!(got[0].intent, "out_of_scope");
        assert_eq!(got[0].predicted, "cancel_order");
    }
}
