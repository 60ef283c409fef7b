//! Running a model in ONNX Runtime on a pool of sessions.
//!
//! A [`SessionPool`] holds N sessions of one model, built in the process-wide environment of
//! [`crate::init_runtime`]. `Session::run` needs `&mut Session`, so a run checks a session out of
//! the pool (a semaphore counts the free ones; a mutex guards only the checkout and the return),
//! runs it, and puts it back, also when the caller stops waiting.
//!
//! A run goes to tokio's blocking pool unless the pool's runs are short: when the recent mean
//! run time (an exponential moving average) is under [`INLINE_BELOW`], the run happens on the
//! calling task's thread. Handing a 50 µs run to another thread and waking the caller after it
//! costs more than the run (`bench recommend`, docs/BENCHMARKS.md); a model whose runs take
//! longer never blocks an async worker for more than a stray run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use shopmind_metrics::global as metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::batch::BatchOptions;
use crate::error::{ModelError, Result};
use crate::library::environment;

fn runtime_error(e: impl std::fmt::Display) -> ModelError {
    ModelError::Runtime(e.to_string())
}

/// Where a model runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Device {
    #[default]
    Cpu,
    /// An NVIDIA GPU through ONNX Runtime's CUDA execution provider. Needs the `cuda` feature and
    /// a CUDA build of ONNX Runtime; if the provider cannot be registered or cannot take the
    /// whole graph, loading fails: there is no silent fallback to the CPU.
    Cuda { device_id: i32 },
}

/// How to build a [`SessionPool`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// Sessions in the pool: how many runs can proceed at once. At least 1.
    pub sessions: usize,
    /// Intra-op threads of each session. At least 1.
    pub intra_threads: usize,
    pub device: Device,
    /// How requests to the model are batched (models that score through a
    /// [`crate::batch::Batcher`]).
    pub batch: BatchOptions,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self { sessions: 2, intra_threads: 1, device: Device::Cpu, batch: BatchOptions::default() }
    }
}

/// A tensor passed to a model, row-major.
#[derive(Clone, Debug, PartialEq)]
pub enum InputTensor {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

/// A tensor a model returned, row-major, copied out of ONNX Runtime.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputTensor {
    F32 { shape: Vec<usize>, data: Vec<f32> },
    I64 { shape: Vec<usize>, data: Vec<i64> },
}

/// Runs of a pool whose recent mean run time is below this happen on the caller's thread.
pub const INLINE_BELOW: Duration = Duration::from_micros(100);

struct PoolInner {
    idle: Mutex<Vec<Session>>,
    permits: Arc<Semaphore>,
    /// The moving average of run times, in nanoseconds; `u64::MAX` before the first run.
    mean_run_ns: AtomicU64,
}

impl PoolInner {
    fn runs_inline(&self) -> bool {
        self.mean_run_ns.load(Ordering::Relaxed) < INLINE_BELOW.as_nanos() as u64
    }

    /// Folds one run time into the average (weight 1/8; the first run sets it).
    fn observe(&self, took: Duration) {
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX - 1);
        let _ = self.mean_run_ns.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
            Some(if mean == u64::MAX { sample } else { mean - mean / 8 + sample / 8 })
        });
    }
}

/// N sessions of one model; see the module docs.
pub struct SessionPool {
    inner: Arc<PoolInner>,
    size: usize,
    inputs: Vec<String>,
    outputs: Vec<String>,
}

impl std::fmt::Debug for SessionPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionPool")
            .field("size", &self.size)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

/// A session on loan; returned to the pool when dropped, before its permit is released.
struct Checkout {
    session: Option<Session>,
    pool: Arc<PoolInner>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.idle.lock().unwrap_or_else(PoisonError::into_inner).push(session);
        }
    }
}

fn build_session(env: &Environment, bytes: &[u8], opts: &PoolOptions) -> Result<Session> {
    let builder = Session::builder(env)
        .map_err(runtime_error)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(runtime_error)?
        .with_intra_threads(opts.intra_threads.max(1))
        .map_err(runtime_error)?;
    let mut builder = with_device(builder, opts.device)?;
    builder.commit_from_memory(bytes).map_err(|e| ModelError::Runtime(format!("cannot load the model: {e}")))
}

#[cfg(feature = "cuda")]
fn with_device(builder: SessionBuilder, device: Device) -> Result<SessionBuilder> {
    match device {
        Device::Cpu => Ok(builder),
        Device::Cuda { device_id } => builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device_id)
                .build()
                .error_on_failure()])
            .map_err(|e| ModelError::Runtime(format!("cannot use CUDA device {device_id}: {e}")))?
            .with_disable_cpu_fallback()
            .map_err(runtime_error),
    }
}

#[cfg(not(feature = "cuda"))]
fn with_device(builder: SessionBuilder, device: Device) -> Result<SessionBuilder> {
    match device {
        Device::Cpu => Ok(builder),
        Device::Cuda { .. } => Err(cuda_unavailable()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_unavailable() -> ModelError {
    ModelError::Runtime(
        "Device::Cuda requested, but shopmind-serving was built without the `cuda` feature".into(),
    )
}

impl SessionPool {
    /// Builds `opts.sessions` sessions of the ONNX model in `bytes`. Needs [`crate::init_runtime`].
    pub fn load(bytes: &[u8], opts: &PoolOptions) -> Result<Self> {
        #[cfg(not(feature = "cuda"))]
        if matches!(opts.device, Device::Cuda { .. }) {
            return Err(cuda_unavailable());
        }
        let env = environment()?;
        let size = opts.sessions.max(1);
        let mut sessions = Vec::with_capacity(size);
        for _ in 0..size {
            sessions.push(build_session(env, bytes, opts)?);
        }
        let (inputs, outputs) = match sessions.first() {
            Some(s) => (
                s.inputs().iter().map(|o| o.name().to_owned()).collect(),
                s.outputs().iter().map(|o| o.name().to_owned()).collect(),
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Self {
            inner: Arc::new(PoolInner {
                idle: Mutex::new(sessions),
                permits: Arc::new(Semaphore::new(size)),
                mean_run_ns: AtomicU64::new(u64::MAX),
            }),
            size,
            inputs,
            outputs,
        })
    }

    /// Number of sessions.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The model's input names, in graph order.
    pub fn input_names(&self) -> &[String] {
        &self.inputs
    }

    /// The model's output names, in graph order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Runs the model once on a free session (waiting for one if all are busy), on tokio's
    /// blocking thread pool or, for a model of short runs, on this thread. Returns every output, in graph order. The wait and the run are
    /// measured (`shopmind_model_session_wait_seconds`, `shopmind_model_compute_seconds`).
    pub async fn run(&self, inputs: Vec<(String, InputTensor)>) -> Result<Vec<(String, OutputTensor)>> {
        self.checkout().await?.run(inputs).await
    }

    /// [`SessionPool::run`] for a caller that waits until `deadline`: the wait for a session ends
    /// there, and a run that has not started by then does not start
    /// ([`ModelError::DeadlineExceeded`] naming `model`). A run that has started finishes.
    pub async fn run_until(
        &self,
        inputs: Vec<(String, InputTensor)>,
        model: &'static str,
        deadline: Option<Instant>,
    ) -> Result<Vec<(String, OutputTensor)>> {
        let Some(deadline) = deadline else { return self.run(inputs).await };
        let late = || ModelError::DeadlineExceeded { model };
        let session = tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.checkout())
            .await
            .map_err(|_| late())??;
        if Instant::now() >= deadline {
            return Err(late());
        }
        session.run(inputs).await
    }

    /// Checks a session out of the pool, waiting until one is free (the wait is measured as
    /// `shopmind_model_session_wait_seconds`). The session goes back to the pool when the
    /// [`PooledSession`] is dropped or has run. Holding one keeps a session from every other
    /// caller: check out, run, and let go; [`crate::batch::Batcher`] checks a session out before
    /// it closes a batch, so that a batch keeps growing while every session is busy.
    pub async fn checkout(&self) -> Result<PooledSession> {
        let waiting = Instant::now();
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ModelError::Runtime("the session pool is closed".into()))?;
        // `None` cannot happen: a permit is held for every session on loan.
        let session = self
            .lend(permit)
            .ok_or_else(|| ModelError::Runtime("no idle session despite a free permit".into()))?;
        metrics().session_wait(waiting.elapsed());
        Ok(session)
    }

    /// An idle session on loan under `permit`.
    fn lend(&self, permit: OwnedSemaphorePermit) -> Option<PooledSession> {
        let session = self.inner.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
        Some(PooledSession {
            checkout: Checkout { session: Some(session), pool: self.inner.clone(), _permit: permit },
        })
    }
}

impl SessionPool {
    /// A free session now, if one is free (never waits). A session freed while callers of
    /// [`SessionPool::checkout`] wait goes to them first, so this never overtakes them.
    pub fn try_checkout(&self) -> Option<PooledSession> {
        let session = self.lend(self.inner.permits.clone().try_acquire_owned().ok()?)?;
        metrics().session_wait(Duration::ZERO);
        Some(session)
    }
}

/// A session on loan from a [`SessionPool`] ([`SessionPool::checkout`]); back in the pool when
/// dropped.
pub struct PooledSession {
    checkout: Checkout,
}

impl std::fmt::Debug for PooledSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledSession").finish_non_exhaustive()
    }
}

impl PooledSession {
    /// Runs the model once on this session and returns the session to its pool: on tokio's
    /// blocking thread pool, or on this thread while the pool's runs are short
    /// ([`INLINE_BELOW`]). Returns every output, in graph order. The run is measured
    /// (`shopmind_model_compute_seconds`). If the caller stops waiting, the run finishes on its
    /// thread and the session still goes back.
    pub async fn run(self, inputs: Vec<(String, InputTensor)>) -> Result<Vec<(String, OutputTensor)>> {
        let mut checkout = self.checkout;
        if checkout.pool.runs_inline() {
            return checkout.compute(inputs);
        }
        tokio::task::spawn_blocking(move || checkout.compute(inputs))
            .await
            .map_err(|e| ModelError::Runtime(format!("inference task failed: {e}")))?
    }

    /// Whether a run now would happen on the caller's thread.
    pub fn runs_inline(&self) -> bool {
        self.checkout.pool.runs_inline()
    }
}

impl Checkout {
    /// One run, timed into the pool's average and the compute metric.
    fn compute(&mut self, inputs: Vec<(String, InputTensor)>) -> Result<Vec<(String, OutputTensor)>> {
        let Some(session) = self.session.as_mut() else {
            return Err(ModelError::Runtime("session missing from its checkout".into()));
        };
        let computing = Instant::now();
        let outputs = run_session(session, inputs);
        let took = computing.elapsed();
        metrics().compute(took);
        self.pool.observe(took);
        outputs
    }
}

fn run_session(
    session: &mut Session,
    inputs: Vec<(String, InputTensor)>,
) -> Result<Vec<(String, OutputTensor)>> {
    let mut values: Vec<(String, DynValue)> = Vec::with_capacity(inputs.len());
    for (name, tensor) in inputs {
        let value = match tensor {
            InputTensor::F32 { shape, data } => Tensor::from_array((shape, data)).map(|t| t.into_dyn()),
            InputTensor::I64 { shape, data } => Tensor::from_array((shape, data)).map(|t| t.into_dyn()),
        }
        .map_err(|e| ModelError::InvalidInput(format!("input `{name}`: {e}")))?;
        values.push((name, value));
    }
    let outputs = session.run(values).map_err(|e| ModelError::Runtime(format!("inference failed: {e}")))?;
    let mut result = Vec::with_capacity(outputs.len());
    for (name, value) in outputs.iter() {
        let out = match value.dtype() {
            ValueType::Tensor { ty: TensorElementType::Float32, .. } => {
                let (shape, data) = value.try_extract_tensor::<f32>().map_err(runtime_error)?;
                OutputTensor::F32 { shape: dims(shape)?, data: data.to_vec() }
            }
            ValueType::Tensor { ty: TensorElementType::Int64, .. } => {
                let (shape, data) = value.try_extract_tensor::<i64>().map_err(runtime_error)?;
                OutputTensor::I64 { shape: dims(shape)?, data: data.to_vec() }
            }
            other => {
                return Err(ModelError::Runtime(format!("output `{name}` has unsupported type {other:?}")));
            }
        };
        result.push((name.to_owned(), out));
    }
    Ok(result)
}

fn dims(shape: &[i64]) -> Result<Vec<usize>> {
    shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| ModelError::Runtime(format!("output has dimension {d}"))))
        .collect()
}

#[cfg(test)]
mod inline_tests {
    use super::*;

    fn inner() -> PoolInner {
        PoolInner {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(1)),
            mean_run_ns: AtomicU64::new(u64::MAX),
        }
    }

    #[test]
    fn runs_go_inline_only_while_the_recent_mean_is_short() {
        let pool = inner();
        assert!(!pool.runs_inline(), "unknown run time: the blocking pool");
        pool.observe(Duration::from_micros(40));
        assert!(pool.runs_inline(), "the first run sets the mean");
        // One long run moves the mean by an eighth: 40 + (2000 - 40) / 8 = 285 µs.
        pool.observe(Duration::from_micros(2000));
        assert!(!pool.runs_inline());
        for _ in 0..30 {
            pool.observe(Duration::from_micros(40));
        }
        assert!(pool.runs_inline(), "short runs bring it back");
    }
}
