//! Converts a BERT sentence encoder (the `sentence-transformers` layout: a `BertModel`, mean
//! pooling over the attention mask, L2 normalisation) from safetensors weights to one ONNX graph.
//!
//! Graph: inputs `input_ids` and `attention_mask`, int64 `[batch, sequence]`; output
//! `embeddings`, float `[batch, hidden]`, unit length. Inside: word + position + token-type-0
//! embeddings and LayerNorm; per layer, multi-head self-attention with the padding masked out,
//! residual and LayerNorm, a GELU (erf) feed-forward block, residual and LayerNorm; then the
//! masked mean over the sequence and division by the L2 norm. Linear weights are stored
//! transposed (`[in, out]`) so each projection is one `MatMul` and one `Add`.

use std::collections::HashMap;

use serde::Deserialize;
use shopmind_onnx::{self as onnx, DataType, Dim, Manifest, TensorSpec};

use crate::error::{EncoderError, Result};
use crate::safetensors::Tensor;

/// Graph input: token ids, int64 `[batch, sequence]`.
pub const INPUT_IDS: &str = "input_ids";
/// Graph input: 1 for a real token, 0 for padding, int64 `[batch, sequence]`.
pub const INPUT_MASK: &str = "attention_mask";
/// Graph output: the unit-length sentence embeddings, float `[batch, hidden]`.
pub const OUTPUT_EMBEDDINGS: &str = "embeddings";
/// [`Manifest::kind`] of an exported encoder.
pub const KIND: &str = "bert-mean-pooling";

/// The fields of a Hugging Face BERT `config.json` the conversion needs.
#[derive(Deserialize, Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position() -> String {
    "absolute".into()
}

impl BertConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let cfg: BertConfig =
            serde_json::from_slice(bytes).map_err(|e| EncoderError::Config(format!("config.json: {e}")))?;
        if cfg.hidden_act != "gelu" {
            return Err(EncoderError::Config(format!(
                "hidden_act `{}` is not supported (only `gelu`)",
                cfg.hidden_act
            )));
        }
        if cfg.position_embedding_type != "absolute" {
            return Err(EncoderError::Config(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                cfg.position_embedding_type
            )));
        }
        if cfg.num_attention_heads == 0 || !cfg.hidden_size.is_multiple_of(cfg.num_attention_heads) {
            return Err(EncoderError::Config(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                cfg.hidden_size, cfg.num_attention_heads
            )));
        }
        Ok(cfg)
    }

    fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// Accumulates nodes and initializers with unique names.
struct Graph<'w> {
    weights: &'w HashMap<String, Tensor>,
    nodes: Vec<onnx::NodeProto>,
    initializers: Vec<onnx::TensorProto>,
    next: usize,
}

impl<'w> Graph<'w> {
    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    fn op(&mut self, op: &str, inputs: &[&str], hint: &str, attrs: Vec<onnx::AttributeProto>) -> String {
        let out = self.fresh(hint);
        self.nodes.push(onnx::node(op, inputs, &[&out], attrs));
        out
    }

    fn weight(&self, name: &str, shape: &[usize]) -> Result<&'w Tensor> {
        let t = self
            .weights
            .get(name)
            .ok_or_else(|| EncoderError::Weights(format!("no tensor `{name}` in the weights")))?;
        if t.shape != shape {
            return Err(EncoderError::Weights(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                t.shape
            )));
        }
        Ok(t)
    }

    fn init_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> String {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        self.initializers.push(onnx::float_tensor(name, &dims, data));
        name.to_owned()
    }

    fn init_i64(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        self.initializers.push(onnx::int64_tensor(&name, &[data.len() as i64], data));
        name
    }

    fn scalar_f32(&mut self, hint: &str, value: f32) -> String {
        let name = self.fresh(hint);
        self.initializers.push(onnx::float_tensor(&name, &[], &[value]));
        name
    }

    /// A copy of the weight `name` as an initializer of the same name.
    fn param(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        let t = self.weight(name, shape)?;
        Ok(self.init_f32(name, shape, &t.data))
    }

    /// `x @ W^T + b` for a Hugging Face `Linear` with weight `[out, in]`.
    fn linear(&mut self, x: &str, prefix: &str, inputs: usize, outputs: usize) -> Result<String> {
        let w = self.weight(&format!("{prefix}.weight"), &[outputs, inputs])?.transposed()?;
        let w_name = self.init_f32(&format!("{prefix}.weight_t"), &w.shape, &w.data);
        let b_name = self.param(&format!("{prefix}.bias"), &[outputs])?;
        let product = self.op("MatMul", &[x, &w_name], "matmul", vec![]);
        Ok(self.op("Add", &[&product, &b_name], "linear", vec![]))
    }

    fn layer_norm(&mut self, x: &str, prefix: &str, size: usize, eps: f64) -> Result<String> {
        let gamma = self.param(&format!("{prefix}.weight"), &[size])?;
        let beta = self.param(&format!("{prefix}.bias"), &[size])?;
        Ok(self.op(
            "LayerNormalization",
            &[x, &gamma, &beta],
            "layer_norm",
            vec![onnx::attr_int("axis", -1), onnx::attr_float("epsilon", eps as f32)],
        ))
    }
}

/// Builds the ONNX model of a BERT sentence encoder from its weights (as read by
/// [`crate::safetensors::read_f32_tensors`]) and config. `manifest` is stored in the model's
/// metadata; its inputs and outputs are filled in here.
pub fn export_onnx(
    weights: &HashMap<String, Tensor>,
    cfg: &BertConfig,
    manifest: &Manifest,
) -> Result<Vec<u8>> {
    let h = cfg.hidden_size;
    let heads = cfg.num_attention_heads;
    let head = cfg.head_size();
    let eps = cfg.layer_norm_eps;
    let mut g = Graph { weights, nodes: Vec::new(), initializers: Vec::new(), next: 0 };

    // Embeddings: word + position + token type 0, then LayerNorm.
    let word = g.param("embeddings.word_embeddings.weight", &[cfg.vocab_size, h])?;
    let position = g.param("embeddings.position_embeddings.weight", &[cfg.max_position_embeddings, h])?;
    let token_types = g
        .weight("embeddings.token_type_embeddings.weight", &[2, h])
        .or_else(|_| g.weight("embeddings.token_type_embeddings.weight", &[1, h]))?;
    let type0 = g.init_f32("embeddings.token_type_0", &[h], &token_types.data[..h]);
    let words = g.op("Gather", &[&word, INPUT_IDS], "word_embeddings", vec![onnx::attr_int("axis", 0)]);
    let shape = g.op("Shape", &[INPUT_IDS], "ids_shape", vec![]);
    let one = g.init_i64("one", &[1]);
    let seq_len_1d = g.op("Gather", &[&shape, &one], "seq_len_1d", vec![onnx::attr_int("axis", 0)]);
    let zero_axis = g.init_i64("axis0", &[0]);
    let seq_len = g.op("Squeeze", &[&seq_len_1d, &zero_axis], "seq_len", vec![]);
    let start = g.fresh("range_start");
    g.initializers.push(onnx::int64_tensor(&start, &[], &[0]));
    let step = g.fresh("range_step");
    g.initializers.push(onnx::int64_tensor(&step, &[], &[1]));
    let positions = g.op("Range", &[&start, &seq_len, &step], "positions", vec![]);
    let pos_emb =
        g.op("Gather", &[&position, &positions], "position_embeddings", vec![onnx::attr_int("axis", 0)]);
    let sum = g.op("Add", &[&words, &pos_emb], "embedding_sum", vec![]);
    let sum = g.op("Add", &[&sum, &type0], "embedding_sum", vec![]);
    let mut x = g.layer_norm(&sum, "embeddings.LayerNorm", h, eps)?;

    // Attention bias: 0 where attended, a large negative number on padding; [batch, 1, 1, seq].
    let mask_f = g.op("Cast", &[INPUT_MASK], "mask_f", vec![onnx::attr_int("to", DataType::Float as i64)]);
    let one_f = g.scalar_f32("one_f", 1.0);
    let inverted = g.op("Sub", &[&one_f, &mask_f], "mask_inverted", vec![]);
    let neg = g.scalar_f32("mask_neg", -1e9);
    let bias = g.op("Mul", &[&inverted, &neg], "mask_bias", vec![]);
    let axes12 = g.init_i64("axes12", &[1, 2]);
    let bias = g.op("Unsqueeze", &[&bias, &axes12], "attention_bias", vec![]);
    let split_heads = g.init_i64("split_heads", &[0, 0, heads as i64, head as i64]);
    let merge_heads = g.init_i64("merge_heads", &[0, 0, h as i64]);
    let scale = g.scalar_f32("attention_scale", 1.0 / (head as f32).sqrt());

    for layer in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{layer}");
        let q = g.linear(&x, &format!("{p}.attention.self.query"), h, h)?;
        let k = g.linear(&x, &format!("{p}.attention.self.key"), h, h)?;
        let v = g.linear(&x, &format!("{p}.attention.self.value"), h, h)?;
        let q = g.op("Reshape", &[&q, &split_heads], "q_heads", vec![]);
        let q = g.op("Transpose", &[&q], "q_t", vec![onnx::attr_ints("perm", &[0, 2, 1, 3])]);
        let k = g.op("Reshape", &[&k, &split_heads], "k_heads", vec![]);
        let k = g.op("Transpose", &[&k], "k_t", vec![onnx::attr_ints("perm", &[0, 2, 3, 1])]);
        let v = g.op("Reshape", &[&v, &split_heads], "v_heads", vec![]);
        let v = g.op("Transpose", &[&v], "v_t", vec![onnx::attr_ints("perm", &[0, 2, 1, 3])]);
        let scores = g.op("MatMul", &[&q, &k], "scores", vec![]);
        let scores = g.op("Mul", &[&scores, &scale], "scores_scaled", vec![]);
        let scores = g.op("Add", &[&scores, &bias], "scores_masked", vec![]);
        let probs = g.op("Softmax", &[&scores], "attention_probs", vec![onnx::attr_int("axis", -1)]);
        let context = g.op("MatMul", &[&probs, &v], "context", vec![]);
        let context =
            g.op("Transpose", &[&context], "context_t", vec![onnx::attr_ints("perm", &[0, 2, 1, 3])]);
        let context = g.op("Reshape", &[&context, &merge_heads], "context_merged", vec![]);
        let attn = g.linear(&context, &format!("{p}.attention.output.dense"), h, h)?;
        let attn = g.op("Add", &[&attn, &x], "attention_residual", vec![]);
        let attn = g.layer_norm(&attn, &format!("{p}.attention.output.LayerNorm"), h, eps)?;
        let inter = g.linear(&attn, &format!("{p}.intermediate.dense"), h, cfg.intermediate_size)?;
        let inter = gelu(&mut g, &inter);
        let out = g.linear(&inter, &format!("{p}.output.dense"), cfg.intermediate_size, h)?;
        let out = g.op("Add", &[&out, &attn], "output_residual", vec![]);
        x = g.layer_norm(&out, &format!("{p}.output.LayerNorm"), h, eps)?;
    }

    // Mean over the real tokens, then unit length.
    let axis2 = g.init_i64("axis2", &[2]);
    let mask_col = g.op("Unsqueeze", &[&mask_f, &axis2], "mask_column", vec![]);
    let masked = g.op("Mul", &[&x, &mask_col], "masked_tokens", vec![]);
    let axis1 = g.init_i64("axis1", &[1]);
    let summed = g.op("ReduceSum", &[&masked, &axis1], "token_sum", vec![onnx::attr_int("keepdims", 0)]);
    let count = g.op("ReduceSum", &[&mask_col, &axis1], "token_count", vec![onnx::attr_int("keepdims", 0)]);
    let min_count = g.scalar_f32("min_count", 1e-9);
    let count = g.op("Max", &[&count, &min_count], "token_count_safe", vec![]);
    let mean = g.op("Div", &[&summed, &count], "mean_pooled", vec![]);
    let squared = g.op("Mul", &[&mean, &mean], "squared", vec![]);
    let norm2 = g.op("ReduceSum", &[&squared, &axis1], "norm2", vec![onnx::attr_int("keepdims", 1)]);
    let norm = g.op("Sqrt", &[&norm2], "norm", vec![]);
    let min_norm = g.scalar_f32("min_norm", 1e-12);
    let norm = g.op("Max", &[&norm, &min_norm], "norm_safe", vec![]);
    g.nodes.push(onnx::node("Div", &[&mean, &norm], &[OUTPUT_EMBEDDINGS], vec![]));

    let batch = Dim::Symbolic("batch".into());
    let sequence = Dim::Symbolic("sequence".into());
    let inputs = vec![
        onnx::tensor_value_info(INPUT_IDS, DataType::Int64, &[batch.clone(), sequence.clone()]),
        onnx::tensor_value_info(INPUT_MASK, DataType::Int64, &[batch.clone(), sequence.clone()]),
    ];
    let outputs = vec![onnx::tensor_value_info(
        OUTPUT_EMBEDDINGS,
        DataType::Float,
        &[batch.clone(), Dim::Fixed(h as i64)],
    )];
    let spec = |name: &str, dtype: &str, shape: &[Dim]| TensorSpec {
        name: name.into(),
        dtype: dtype.into(),
        shape: shape.iter().map(Dim::to_spec).collect(),
    };
    let mut manifest = manifest.clone();
    manifest.kind = KIND.into();
    manifest.inputs = vec![
        spec(INPUT_IDS, "int64", &[batch.clone(), sequence.clone()]),
        spec(INPUT_MASK, "int64", &[batch.clone(), sequence]),
    ];
    manifest.outputs = vec![spec(OUTPUT_EMBEDDINGS, "float32", &[batch, Dim::Fixed(h as i64)])];
    let graph = onnx::GraphProto {
        name: "sentence_encoder".into(),
        node: g.nodes,
        initializer: g.initializers,
        input: inputs,
        output: outputs,
        ..Default::default()
    };
    Ok(shopmind_onnx::model_file(graph, &manifest, Vec::new()))
}

/// `0.5 * x * (1 + erf(x / sqrt(2)))`: BERT's exact GELU.
fn gelu(g: &mut Graph<'_>, x: &str) -> String {
    let inv_sqrt2 = g.scalar_f32("inv_sqrt2", std::f32::consts::FRAC_1_SQRT_2);
    let half = g.scalar_f32("half", 0.5);
    let one = g.scalar_f32("one_gelu", 1.0);
    let scaled = g.op("Mul", &[x, &inv_sqrt2], "gelu_scaled", vec![]);
    let erf = g.op("Erf", &[&scaled], "gelu_erf", vec![]);
    let shifted = g.op("Add", &[&erf, &one], "gelu_shifted", vec![]);
    let product = g.op("Mul", &[x, &shifted], "gelu_product", vec![]);
    g.op("Mul", &[&product, &half], "gelu", vec![])
}
