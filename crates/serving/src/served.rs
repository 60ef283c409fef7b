//! What every served model shares: loading a model file into a session pool after checking its
//! manifest, its spec and its graph against the names the code expects, and taking a run's
//! outputs apart. [`ServedModel`] is that for the models that run one request at a time on their
//! pool (purchase intent, demand); the recommenders batch theirs ([`crate::ItemRecommender`]).

use std::time::Instant;

use serde::de::DeserializeOwned;
use shopmind_onnx::{Manifest, read_manifest_of_kind, read_spec};

use crate::batch::Outputs;
use crate::error::{ModelError, Result};
use crate::session_pool::{InputTensor, OutputTensor, PoolOptions, SessionPool};

/// The graph a loader expects: the manifest's kind, and the inputs and outputs both the
/// manifest and the graph must have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Expected<'a> {
    pub kind: &'a str,
    pub inputs: &'a [&'a str],
    pub outputs: &'a [&'a str],
}

/// A model file loaded for serving: its manifest, its spec (the model's own description stored
/// next to the manifest) and the session pool it runs on. [`crate::PurchaseIntentPredictor`] and
/// [`crate::DemandForecaster`] are this with their specs; each adds its loader and its runs.
#[derive(Debug)]
pub struct ServedModel<S> {
    manifest: Manifest,
    spec: S,
    pool: SessionPool,
    /// The model's name in metrics and errors (a fixed label, never an id).
    name: &'static str,
}

impl<S> ServedModel<S> {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The model's own description, from its file.
    pub fn spec(&self) -> &S {
        &self.spec
    }

    /// Loads a model named `name`: the manifest must be of the expected kind, the spec must
    /// decode and pass `check`, and the manifest and the graph must both have the expected
    /// inputs and outputs. Needs [`crate::init_runtime`].
    pub(crate) fn load_checked(
        bytes: &[u8],
        opts: &PoolOptions,
        name: &'static str,
        expected: Expected<'_>,
        check: impl FnOnce(&S) -> Result<()>,
    ) -> Result<Self>
    where
        S: DeserializeOwned,
    {
        let manifest = read_manifest_of_kind(bytes, expected.kind)?;
        let spec: S = read_spec(bytes)?;
        check(&spec)?;
        let pool = SessionPool::load(bytes, opts)?;
        check_io(&manifest, &pool, expected.inputs, expected.outputs)?;
        Ok(Self { manifest, spec, pool, name })
    }

    /// One run on the pool for a caller that waits until `deadline`
    /// ([`SessionPool::run_until`]).
    pub(crate) async fn run_until(
        &self,
        inputs: Vec<(String, InputTensor)>,
        deadline: Option<Instant>,
    ) -> Result<Outputs> {
        self.pool.run_until(inputs, self.name, deadline).await
    }
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
pub(crate) fn take_f32(outputs: &mut Outputs, name: &str, len: usize) -> Result<Vec<f32>> {
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
