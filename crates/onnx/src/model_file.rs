//! A model file: an ONNX graph with its manifest (what the file is, what it was trained on, and
//! how to call it) and, for some models, a spec of their own, in its metadata.
//!
//! Both travel inside the ONNX file, as JSON in `ModelProto.metadata_props`: the manifest under
//! [`MANIFEST_KEY`], the spec under [`SPEC_KEY`] (or another key of the model's), so a model file
//! is self-describing.

use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{OnnxError, Result};
use crate::proto::{self, ModelMetadataView};

/// The `metadata_props` key holding the manifest JSON.
pub const MANIFEST_KEY: &str = "shopmind.manifest";

/// The `metadata_props` key holding a model's own description next to the manifest (feature
/// names and schema version for purchase intent, window lengths for demand), as JSON.
pub const SPEC_KEY: &str = "shopmind.spec";

/// Describes one model file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The model's role, e.g. `"recommender"`.
    pub name: String,
    /// The model family, e.g. `"covisit"`.
    pub kind: String,
    /// The version of this model file.
    pub version: String,
    /// The tenant whose data trained it.
    pub tenant: String,
    pub created_at_ms: i64,
    /// Item ids; index `i` of every item-shaped tensor is `items[i]`.
    pub items: Vec<String>,
    pub stats: TrainingStats,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The version of the feature schema the model's inputs are computed from; 0 for models that
    /// read nothing but the items of recent interactions.
    #[serde(default)]
    pub feature_schema_version: u32,
    /// Offline metrics measured when the model was trained, by name (e.g. `holdout_ndcg_at_10`,
    /// next to the same metric of a baseline such as `holdout_ndcg_at_10_popularity`).
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// What a model was trained on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainingStats {
    /// Distinct users in the input.
    pub users: u64,
    /// Interactions in the input.
    pub interactions: u64,
    /// Earliest and latest `at_ms` in the input; both 0 when there was none.
    pub first_at_ms: i64,
    pub last_at_ms: i64,
}

/// A graph input or output: name, element type (`"float32"`, `"int64"`) and shape, each dimension
/// a number or a symbolic name chosen at run time.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<String>,
}

impl TensorSpec {
    /// A tensor of element type `dtype` whose dimensions are `shape` (numbers or symbols).
    pub fn new(name: &str, dtype: &str, shape: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            dtype: dtype.to_owned(),
            shape: shape.iter().map(|d| (*d).to_owned()).collect(),
        }
    }
}

impl Manifest {
    /// The manifest of a model file of `kind` with the caller's identity fields (`name`,
    /// `version`, `tenant`, `created_at_ms`) and nothing yet about the model itself: no items,
    /// empty stats, no inputs or outputs, feature schema 0, no metrics. Exporters fill in the
    /// rest.
    pub fn new(name: &str, kind: &str, version: &str, tenant: &str, created_at_ms: i64) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            version: version.to_owned(),
            tenant: tenant.to_owned(),
            created_at_ms,
            items: Vec::new(),
            stats: TrainingStats::default(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            feature_schema_version: 0,
            metrics: Default::default(),
        }
    }

    /// The input named `name`, if the model declares one.
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }

    /// The output named `name`, if the model declares one.
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

/// The bytes of a model file every exporter writes: IR 8, opset 17, `graph`, the manifest under
/// [`MANIFEST_KEY`] and then each `(key, value)` of `extra` in `metadata_props`.
pub fn model_file(graph: proto::GraphProto, manifest: &Manifest, extra: Vec<(&str, String)>) -> Vec<u8> {
    // Serialising a struct of strings, numbers and vectors cannot fail.
    let manifest_json = serde_json::to_string(manifest).unwrap_or_default();
    let mut metadata_props =
        vec![proto::StringStringEntryProto { key: MANIFEST_KEY.into(), value: manifest_json }];
    metadata_props.extend(
        extra.into_iter().map(|(key, value)| proto::StringStringEntryProto { key: key.into(), value }),
    );
    proto::ModelProto {
        ir_version: Some(proto::IR_VERSION),
        producer_name: "shopmind".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        opset_import: vec![proto::opset("", proto::OPSET_VERSION)],
        metadata_props,
        ..Default::default()
    }
    .encode_to_vec()
}

/// [`model_file`] with the model's own description, `spec`, as JSON under [`SPEC_KEY`].
pub fn model_file_with_spec(graph: proto::GraphProto, manifest: &Manifest, spec: &impl Serialize) -> Vec<u8> {
    // Serialising a struct of strings, numbers and vectors cannot fail.
    let spec_json = serde_json::to_string(spec).unwrap_or_default();
    model_file(graph, manifest, vec![(SPEC_KEY, spec_json)])
}

/// The value of the `metadata_props` entry `key`; only the metadata is decoded.
fn metadata_entry(onnx_bytes: &[u8], key: &str) -> Result<String> {
    let view = ModelMetadataView::decode(onnx_bytes)
        .map_err(|e| OnnxError::InvalidModel(format!("not an ONNX model: {e}")))?;
    view.metadata_props
        .into_iter()
        .find(|p| p.key == key)
        .map(|p| p.value)
        .ok_or_else(|| OnnxError::InvalidModel(format!("no `{key}` entry in the model's metadata_props")))
}

/// Reads the manifest out of ONNX model bytes. Only the metadata is decoded; the graph is skipped.
///
/// Bytes that are not an ONNX model, or a model without a manifest, give
/// [`OnnxError::InvalidModel`].
pub fn read_manifest(onnx_bytes: &[u8]) -> Result<Manifest> {
    serde_json::from_str(&metadata_entry(onnx_bytes, MANIFEST_KEY)?).map_err(|e| {
        OnnxError::InvalidModel(format!("the `{MANIFEST_KEY}` entry is not a valid manifest: {e}"))
    })
}

/// [`read_manifest`], refusing a model whose manifest names another `kind` than `kind`
/// ([`OnnxError::InvalidModel`]): what every loader checks first.
pub fn read_manifest_of_kind(onnx_bytes: &[u8], kind: &str) -> Result<Manifest> {
    let manifest = read_manifest(onnx_bytes)?;
    if manifest.kind != kind {
        return Err(OnnxError::InvalidModel(format!("model kind is `{}`, expected `{kind}`", manifest.kind)));
    }
    Ok(manifest)
}

/// The JSON of the `metadata_props` entry `key` of ONNX model bytes, decoded as `T`.
pub fn read_metadata<T: serde::de::DeserializeOwned>(onnx_bytes: &[u8], key: &str) -> Result<T> {
    serde_json::from_str(&metadata_entry(onnx_bytes, key)?)
        .map_err(|e| OnnxError::InvalidModel(format!("the `{key}` entry is not valid: {e}")))
}

/// The spec JSON ([`SPEC_KEY`]) of ONNX model bytes, decoded as `T`.
pub fn read_spec<T: serde::de::DeserializeOwned>(onnx_bytes: &[u8]) -> Result<T> {
    read_metadata(onnx_bytes, SPEC_KEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_invalid_model() {
        for bytes in [&b"definitely not onnx"[..], &[0xff; 64][..], &[][..]] {
            match read_manifest(bytes) {
                Err(OnnxError::InvalidModel(_)) => {}
                other => panic!("expected InvalidModel, got {other:?}"),
            }
        }
    }
}
