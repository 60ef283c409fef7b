//! Checks shopmind's own ONNX conversion of all-MiniLM-L6-v2, run by ONNX Runtime, against an
//! independent implementation of the same model on the same weights: candle-transformers' BERT
//! (tools/encoder-reference), whose outputs for tests/fixtures/sentences.txt are committed in
//! tests/fixtures/minilm_reference.json.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde::Deserialize;
use shopmind_encoder::{DEFAULT_MAX_TOKENS, SentenceEncoder, default_model_dir, import};
use shopmind_serving::PoolOptions;

#[derive(Deserialize)]
struct Reference {
    sentences: Vec<Sentence>,
}

#[derive(Deserialize)]
struct Sentence {
    text: String,
    ids: Vec<u32>,
    embedding: Vec<f32>,
}

fn onnxruntime_library() -> PathBuf {
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/onnxruntime/libonnxruntime.so"),
    };
    assert!(path.is_file(), "ONNX Runtime library not found at {}; run scripts/setup.sh", path.display());
    path
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

fn encoder() -> (tempfile::TempDir, SentenceEncoder) {
    shopmind_serving::init_runtime(&onnxruntime_library()).unwrap();
    let model_dir =
        default_model_dir().expect("all-MiniLM-L6-v2 not found in .cache/models; run scripts/setup.sh");
    let out = tempfile::tempdir().unwrap();
    let imported = import(&model_dir, out.path(), "test", 0).unwrap();
    assert_eq!(imported.manifest.kind, shopmind_encoder::KIND);
    let encoder = SentenceEncoder::load_dir(out.path(), DEFAULT_MAX_TOKENS, &PoolOptions::default()).unwrap();
    assert_eq!(encoder.dimension(), 384);
    (out, encoder)
}

fn reference() -> Reference {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test]
async fn embeddings_match_an_independent_bert_implementation() {
    let (_dir, encoder) = encoder();
    let reference = reference();
    assert!(reference.sentences.len() >= 20, "the fixture must hold at least 20 sentences");
    let texts: Vec<&str> = reference.sentences.iter().map(|s| s.text.as_str()).collect();

    // The same token ids as the reference (truncation and special tokens included).
    for s in &reference.sentences {
        let (ids, mask, len) = encoder.tokenize(&[s.text.as_str()]).unwrap();
        let ids: Vec<u32> = ids.iter().map(|&i| u32::try_from(i).unwrap()).collect();
        assert_eq!(ids, s.ids, "token ids of {:?}", s.text);
        assert_eq!(len, s.ids.len());
        assert!(mask.iter().all(|&m| m == 1));
    }

    // All sentences in one batch: the short ones are padded to the longest, so the attention
    // mask and the masked mean pooling are exercised.
    let batch = encoder.encode(&texts).await.unwrap();
    assert_eq!(batch.len(), texts.len());
    let mut lowest = f32::INFINITY;
    for (s, got) in reference.sentences.iter().zip(&batch) {
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{:?}: norm {norm}", s.text);
        let c = cosine(got, &s.embedding);
        assert!(c >= 0.999, "{:?}: cosine {c} with the reference", s.text);
        lowest = lowest.min(c);
    }
    eprintln!("lowest cosine with the reference over {} sentences: {lowest:.6}", texts.len());

    // One at a time gives the same as in the batch.
    for (text, in_batch) in texts.iter().zip(&batch).take(3) {
        let alone = encoder.encode(&[text]).await.unwrap();
        assert!(cosine(&alone[0], in_batch) > 0.9999, "{text:?}");
    }
}

#[tokio::test]
async fn similar_questions_are_closer_than_unrelated_ones() {
    let (_dir, encoder) = encoder();
    let e = encoder
        .encode(&["where is my parcel?", "my package hasn't arrived yet", "tell me a joke about cats"])
        .await
        .unwrap();
    let related = cosine(&e[0], &e[1]);
    let unrelated = cosine(&e[0], &e[2]);
    assert!(related > unrelated + 0.2, "related {related}, unrelated {unrelated}");
}

#[test]
fn import_reports_a_missing_directory_by_path() {
    let out = tempfile::tempdir().unwrap();
    let err = import(&out.path().join("nope"), out.path(), "v", 0).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}
