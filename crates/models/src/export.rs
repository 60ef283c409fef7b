//! What the exporters share: wrapping a graph into a model file with its
//! manifest and a model-specific description, reading that description back, and checking a
//! loaded graph against the names the code expects.

use prost::Message;

use crate::error::{ModelError, Result};
use crate::manifest::{MANIFEST_KEY, Manifest};
use crate::onnx::{self, ModelMetadataView};
use crate::runtime::{OutputTensor, SessionPool};

/// The `metadata_props` key holding a model's own description next to the manifest (feature
/// names and schema version for intent, window lengths for demand), as JSON.
pub const SPEC_KEY: &str = "shopmind.spec";

/// A model file: IR 8, opset 17, the manifest and the spec in its metadata.
pub(crate) fn model_bytes(graph: onnx::GraphProto, manifest: &Manifest, spec_json: String) -> Vec<u8> {
    model_file(graph, manifest, vec![(SPEC_KEY, spec_json)])
}

/// The bytes of a model file every exporter writes: IR 8, opset 17, `graph`, the manifest under
/// [`MANIFEST_KEY`] and then each `(key, value)` of `extra` in `metadata_props`.
pub fn model_file(graph: onnx::GraphProto, manifest: &Manifest, extra: Vec<(&str, String)>) -> Vec<u8> {
    // Serialising a struct of strings, numbers and vectors cannot fail.
    let manifest_json = serde_json::to_string(manifest).unwrap_or_default();
    let mut metadata_props =
        vec![onnx::StringStringEntryProto { key: MANIFEST_KEY.into(), value: manifest_json }];
    metadata_props.extend(
        extra.into_iter().map(|(key, value)| onnx::StringStringEntryProto { key: key.into(), value }),
    );
    onnx::ModelProto {
        ir_version: Some(onnx::IR_VERSION),
        producer_name: "shopmind".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        opset_import: vec![onnx::opset("", onnx::OPSET_VERSION)],
        metadata_props,
        ..Default::default()
    }
    .encode_to_vec()
}

/// The spec JSON ([`SPEC_KEY`]) of ONNX model bytes, decoded as `T`.
pub fn read_spec<T: serde::de::DeserializeOwned>(onnx_bytes: &[u8]) -> Result<T> {
    let view = ModelMetadataView::decode(onnx_bytes)
        .map_err(|e| ModelError::InvalidModel(format!("not an ONNX model: {e}")))?;
    let entry = view.metadata_props.iter().find(|p| p.key == SPEC_KEY).ok_or_else(|| {
        ModelError::InvalidModel(format!("no `{SPEC_KEY}` entry in the model's metadata_props"))
    })?;
    serde_json::from_str(&entry.value)
        .map_err(|e| ModelError::InvalidModel(format!("the `{SPEC_KEY}` entry is not valid: {e}")))
}

/// Checks that the manifest and the loaded graph both have these inputs and outputs.
pub(crate) fn check_io(
    manifest: &Manifest,
    pool: &SessionPool,
    inputs: &[&str],
    outputs: &[&str],
) -> Result<()> {
    for name in inputs {
        if manifest.input(name).is_none() {
            return Err(ModelError::InvalidModel(format!("the manifest lists no input `{name}`")));
        }
        if !pool.input_names().iter().any(|n| n == name) {
            return Err(ModelError::InvalidModel(format!("the graph has no input `{name}`")));
        }
    }
    for name in outputs {
        if manifest.output(name).is_none() {
            return Err(ModelError::InvalidModel(format!("the manifest lists no output `{name}`")));
        }
        if !pool.output_names().iter().any(|n| n == name) {
            return Err(ModelError::InvalidModel(format!("the graph has no output `{name}`")));
        }
    }
    Ok(())
}

/// Takes the float output `name` with `len` values out of a run's outputs.
pub(crate) fn take_f32(
    outputs: &mut Vec<(String, OutputTensor)>,
    name: &str,
    len: usize,
) -> Result<Vec<f32>> {
    let Some(pos) = outputs.iter().position(|(n, _)| n == name) else {
        return Err(ModelError::Runtime(format!("the model returned no `{name}`")));
    };
    match outputs.swap_remove(pos).1 {
        OutputTensor::F32 { data, .. } if data.len() == len => Ok(data),
        OutputTensor::F32 { shape, .. } => {
            Err(ModelError::Runtime(format!("`{name}` has shape {shape:?}, expected {len} values")))
        }
        OutputTensor::I64 { .. } => Err(ModelError::Runtime(format!("`{name}` is int64, expected float32"))),
    }
}

/// Loads model bytes from a file.
pub(crate) fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })
}
