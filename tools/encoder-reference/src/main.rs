//! Reads sentences (one per line) and writes, as JSON, each sentence's token ids and its
//! all-MiniLM-L6-v2 embedding computed by candle-transformers' BERT: mean pooling over the tokens,
//! then L2 normalisation, each sentence encoded on its own (no padding).
//!
//! Usage: encoder-reference <model dir> <sentences.txt> <out.json>

use std::error::Error;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, sentences, out] = &args[..] else {
        return Err("usage: encoder-reference <model dir> <sentences.txt> <out.json>".into());
    };
    let dir = std::path::Path::new(dir);
    let config: Config = serde_json::from_slice(&std::fs::read(dir.join("config.json"))?)?;
    let weights = std::fs::read(dir.join("model.safetensors"))?;
    let device = Device::Cpu;
    let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
    let model = BertModel::load(vb, &config)?;
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))?;
    // As sentence-transformers runs the model: no padding for a single text, at most 256 tokens
    // (`max_seq_length` in sentence_bert_config.json), not tokenizer.json's fixed 128.
    tokenizer.with_padding(None);
    tokenizer.with_truncation(Some(tokenizers::TruncationParams { max_length: 256, ..Default::default() }))?;

    let mut rows = Vec::new();
    for sentence in std::fs::read_to_string(sentences)?.lines().filter(|l| !l.trim().is_empty()) {
        let encoding = tokenizer.encode(sentence, true)?;
        let ids: Vec<u32> = encoding.get_ids().to_vec();
        let n = ids.len();
        let input = Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?;
        let types = input.zeros_like()?;
        let mask = input.ones_like()?;
        let hidden = model.forward(&input, &types, Some(&mask))?; // [1, n, 384]
        let mean = (hidden.sum(1)? / n as f64)?; // [1, 384]
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        let unit = mean.broadcast_div(&norm)?.squeeze(0)?;
        let embedding: Vec<f32> = unit.to_vec1()?;
        rows.push(serde_json::json!({ "text": sentence, "ids": ids, "embedding": embedding }));
    }
    std::fs::write(out, serde_json::to_string(&serde_json::json!({
        "model": "all-MiniLM-L6-v2",
        "implementation": "candle-transformers 0.11 BertModel, mean pooling, L2 normalisation",
        "sentences": rows,
    }))?)?;
    println!("wrote {} embeddings to {out}", rows.len());
    Ok(())
}
