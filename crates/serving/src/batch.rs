//! Dynamic micro-batching: many concurrent requests to one model become few, larger runs.
//!
//! A [`Batcher`] sits in front of a [`SessionPool`]. Callers submit requests; each request
//! carries the model's named inputs with its own rows along dimension 0 (one row per user, item
//! or series). One dispatcher task per batcher takes requests off a bounded queue and stacks them
//! into a batch, which runs on a pooled session; each request gets back its own rows of every
//! output. Nothing in here knows what a model computes: any model whose inputs are stacked by rows
//! and whose outputs have one row per input row can be batched.
//!
//! ## When a batch runs
//!
//! - **Full**: its rows reach [`BatchOptions::max_batch`]. A request is never split; one that
//!   would overflow the batch starts the next one, and a request with more rows than `max_batch`
//!   runs alone.
//! - **Waited long enough**: its oldest request has waited [`BatchOptions::max_queue_delay`].
//!   With 0 a batch takes what is queued at once.
//! - Then it waits for a free session **while still taking requests** (up to `max_batch`): under
//!   load, when every session is busy, batches grow by themselves.
//! - **Express**: with `max_queue_delay` 0 (the default of `inference.max_queue_delay_us`), a
//!   request that finds the queue empty and a session free would run alone at once; [`Batcher::run`]
//!   runs it on the caller's task instead of handing it to the dispatcher and back (same
//!   measurements, refusals and span).
//!
//! Requests whose inner shapes differ (an [`BatchSpec::stacked`] input of another width) are never
//! mixed: such a request starts the next batch.
//!
//! ## Refusals
//!
//! - **Queue full** ([`BatchOptions::queue_capacity`] requests waiting): [`Batcher::submit`] fails
//!   at once with [`ModelError::Overloaded`]; the queue never grows beyond its capacity.
//! - **Deadline**: a request whose deadline has passed is answered with
//!   [`ModelError::DeadlineExceeded`] and never computed: checked when it is submitted, when it
//!   joins a batch and right before the batch runs. The caller's wait ([`Pending::wait`]) also ends
//!   at the deadline.
//! - **Shutdown**: after [`Batcher::shutdown`] (or once the batcher is dropped) new requests fail
//!   with [`ModelError::ShuttingDown`]; requests already queued are still computed (drained), and
//!   `shutdown` returns once every batch has answered.
//!
//! A caller that stops waiting is not computed if its batch has not started yet.
//!
//! ## Padding
//!
//! An input declared with [`BatchSpec::padded`] is 2-D, `[rows, length]`, and its length may
//! differ between requests (a user's history). The batch pads every row at the end to the longest
//! length in the batch (at least 1) with the input's pad value. Choose pad values that contribute
//! nothing: the co-visitation graph pads `history_items` with item 0 and `history_weights` with
//! weight 0, so a padded entry adds `0 * S[0][j] = 0`. Outputs whose shape depends on the padded
//! length are returned with the batch's padding.
//!
//! ## Using it for a model
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use shopmind_serving::batch::{BatchOptions, BatchSpec, Batcher, PadValue};
//! # use shopmind_serving::{InputTensor, PoolOptions, SessionPool};
//! # async fn example(bytes: &[u8]) -> shopmind_serving::Result<()> {
//! let pool = Arc::new(SessionPool::load(bytes, &PoolOptions::default())?);
//! // Every graph input, and how it is stacked: `features` [batch, k] rows are stacked as they
//! // are; `history` [batch, T] rows of different T are padded with 0.
//! let spec = BatchSpec::new().stacked("features").padded("history", PadValue::F32(0.0));
//! // The model's name is a metric label: a fixed `&'static str` from the code, never an id.
//! let batcher = Batcher::new("demand", pool, spec, BatchOptions::default())?;
//! // One request, one row; its deadline (from the RPC) travels with it.
//! let outputs = batcher
//!     .run(
//!         vec![
//!             ("features".into(), InputTensor::F32 { shape: vec![1, 3], data: vec![0.1, 0.2, 0.3] }),
//!             ("history".into(), InputTensor::F32 { shape: vec![1, 2], data: vec![5.0, 7.0] }),
//!         ],
//!         None,
//!     )
//!     .await?;
//! // `outputs` holds this request's row of every graph output: shape [1, …].
//! # Ok(()) }
//! ```
//!
//! Measured: `shopmind_model_queue_wait_seconds`, `shopmind_model_batch_compute_seconds`,
//! `shopmind_model_batch_rows` and `shopmind_model_rejected_total`, each labelled by the model
//! name; every batch runs in a `model_batch` span.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use shopmind_metrics::{Rejection, global as metrics};
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::error::{ModelError, Result};
use crate::session_pool::{InputTensor, OutputTensor, PooledSession, SessionPool};

/// A model's outputs, by name, in graph order.
pub type Outputs = Vec<(String, OutputTensor)>;

/// How requests are batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Most rows in one batch (a single larger request runs alone). At least 1.
    pub max_batch: usize,
    /// Longest a batch waits for more requests after its first one arrived; 0: no waiting.
    pub max_queue_delay: Duration,
    /// Most requests waiting in the queue; beyond it requests are refused at once. At least 1.
    pub queue_capacity: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self { max_batch: 32, max_queue_delay: Duration::from_micros(500), queue_capacity: 1024 }
    }
}

impl BatchOptions {
    fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            return Err(ModelError::InvalidInput("batch options: max_batch must be at least 1".into()));
        }
        if self.queue_capacity == 0 {
            return Err(ModelError::InvalidInput("batch options: queue_capacity must be at least 1".into()));
        }
        Ok(())
    }
}

/// The value a padded input is padded with; its type is the input's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadValue {
    F32(f32),
    I64(i64),
}

impl PadValue {
    fn dtype(self) -> DType {
        match self {
            Self::F32(_) => DType::F32,
            Self::I64(_) => DType::I64,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stacking {
    Stacked,
    Padded(PadValue),
}

/// How each input of a model is stacked into a batch. Every graph input must be named once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchSpec {
    inputs: Vec<(String, Stacking)>,
}

impl BatchSpec {
    pub fn new() -> Self {
        Self::default()
    }

    /// An input `[rows, …]` whose inner dimensions are the same for the requests of a batch
    /// (requests with other inner dimensions go to another batch).
    pub fn stacked(mut self, name: impl Into<String>) -> Self {
        self.inputs.push((name.into(), Stacking::Stacked));
        self
    }

    /// A 2-D input `[rows, length]` whose length may vary between requests; rows are padded at
    /// the end with `pad` to the batch's longest (at least 1).
    pub fn padded(mut self, name: impl Into<String>, pad: PadValue) -> Self {
        self.inputs.push((name.into(), Stacking::Padded(pad)));
        self
    }

    /// The inputs' names, in the order they were declared.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|(n, _)| n.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DType {
    F32,
    I64,
}

impl DType {
    fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::I64 => "int64",
        }
    }
}

fn describe(t: &InputTensor) -> (&[usize], usize, DType) {
    match t {
        InputTensor::F32 { shape, data } => (shape, data.len(), DType::F32),
        InputTensor::I64 { shape, data } => (shape, data.len(), DType::I64),
    }
}

/// What must agree between the requests of one batch: per input, its type and (for stacked
/// inputs) its inner dimensions.
type Layout = Vec<(DType, Vec<usize>)>;

/// Counters of one batcher since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchStats {
    /// Requests accepted into the queue.
    pub requests: u64,
    /// Batches computed.
    pub batches: u64,
    /// Rows computed, over all batches.
    pub rows: u64,
    /// Rows of the largest batch computed.
    pub largest_batch: u64,
    /// Requests refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Requests answered with a deadline error (not computed).
    pub rejected_deadline: u64,
    /// Requests refused because the batcher was shutting down.
    pub rejected_shutdown: u64,
    /// Requests dropped because their caller stopped waiting before their batch ran.
    pub cancelled: u64,
    /// Requests answered with an error from assembling, running or splitting their batch.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    batches: AtomicU64,
    rows: AtomicU64,
    largest_batch: AtomicU64,
    rejected_queue_full: AtomicU64,
    rejected_deadline: AtomicU64,
    rejected_shutdown: AtomicU64,
    cancelled: AtomicU64,
    failed: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

struct Shared {
    model: &'static str,
    spec: BatchSpec,
    options: BatchOptions,
    /// Set by [`Batcher::shutdown`]: refuse new requests.
    closed: AtomicBool,
    counters: Counters,
}

impl Shared {
    /// A request of `inputs` (checked against the spec) and where its answer arrives; refused
    /// when `deadline` has passed.
    fn request(
        &self,
        inputs: Vec<(String, InputTensor)>,
        deadline: Option<Instant>,
    ) -> Result<(Request, oneshot::Receiver<Result<Outputs>>)> {
        let (inputs, rows, layout) = self.prepare(inputs)?;
        let now = Instant::now();
        if deadline.is_some_and(|d| d <= now) {
            return Err(self.reject(Rejection::Deadline));
        }
        let (reply, rx) = oneshot::channel();
        Ok((Request { inputs, rows, layout, enqueued: now, deadline, reply }, rx))
    }

    fn reject(&self, reason: Rejection) -> ModelError {
        metrics().model_rejected(self.model, reason);
        let model = self.model;
        match reason {
            Rejection::QueueFull => {
                bump(&self.counters.rejected_queue_full, 1);
                ModelError::Overloaded { model, capacity: self.options.queue_capacity }
            }
            Rejection::Deadline => {
                bump(&self.counters.rejected_deadline, 1);
                ModelError::DeadlineExceeded { model }
            }
            Rejection::ShuttingDown => {
                bump(&self.counters.rejected_shutdown, 1);
                ModelError::ShuttingDown { model }
            }
        }
    }

    /// Checks a request's inputs against the spec; returns them in spec order, with the rows and
    /// the layout.
    fn prepare(&self, mut inputs: Vec<(String, InputTensor)>) -> Result<(Vec<InputTensor>, usize, Layout)> {
        let model = self.model;
        if inputs.len() != self.spec.inputs.len() {
            let want: Vec<&str> = self.spec.input_names().collect();
            let got: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
            return Err(ModelError::InvalidInput(format!(
                "model `{model}` takes inputs {want:?}, got {got:?}"
            )));
        }
        let mut ordered = Vec::with_capacity(inputs.len());
        let mut layout = Vec::with_capacity(inputs.len());
        let mut rows = None;
        for (name, stacking) in &self.spec.inputs {
            let Some(at) = inputs.iter().position(|(n, _)| n == name) else {
                return Err(ModelError::InvalidInput(format!("model `{model}` needs input `{name}`")));
            };
            let (_, tensor) = inputs.swap_remove(at);
            let (shape, len, dtype) = describe(&tensor);
            let Some(&r) = shape.first() else {
                return Err(ModelError::InvalidInput(format!(
                    "input `{name}` needs a leading row dimension, got a scalar"
                )));
            };
            let values = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if values != Some(len) {
                return Err(ModelError::InvalidInput(format!(
                    "input `{name}`: shape {shape:?} does not hold {len} values"
                )));
            }
            if r == 0 {
                return Err(ModelError::InvalidInput(format!("input `{name}` has no rows")));
            }
            match rows {
                None => rows = Some(r),
                Some(rows) if rows != r => {
                    return Err(ModelError::InvalidInput(format!(
                        "input `{name}` has {r} rows, other inputs have {rows}"
                    )));
                }
                Some(_) => {}
            }
            match stacking {
                Stacking::Stacked => layout.push((dtype, shape[1..].to_vec())),
                Stacking::Padded(pad) => {
                    if shape.len() != 2 {
                        return Err(ModelError::InvalidInput(format!(
                            "input `{name}` is padded, so it must be [rows, length], got shape {shape:?}"
                        )));
                    }
                    if pad.dtype() != dtype {
                        return Err(ModelError::InvalidInput(format!(
                            "input `{name}` must be {}, got {}",
                            pad.dtype().name(),
                            dtype.name()
                        )));
                    }
                    layout.push((dtype, Vec::new()));
                }
            }
            ordered.push(tensor);
        }
        Ok((ordered, rows.unwrap_or(0), layout))
    }
}

struct Request {
    inputs: Vec<InputTensor>,
    rows: usize,
    layout: Layout,
    enqueued: Instant,
    deadline: Option<Instant>,
    reply: oneshot::Sender<Result<Outputs>>,
}

impl Request {
    fn expired(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| d <= now)
    }
}

/// What the dispatcher needs, kept until the first request starts it.
struct Start {
    pool: Arc<SessionPool>,
    rx: mpsc::Receiver<Request>,
    closing: watch::Receiver<bool>,
    done: watch::Sender<bool>,
}

/// Batches requests to one model; see the module docs.
pub struct Batcher {
    shared: Arc<Shared>,
    pool: Arc<SessionPool>,
    tx: mpsc::Sender<Request>,
    started: AtomicBool,
    start: Mutex<Option<Start>>,
    closing: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("model", &self.shared.model)
            .field("spec", &self.shared.spec)
            .field("options", &self.shared.options)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// A batcher for the model in `pool`. `model` names it in metrics and errors (a fixed name
    /// from the code, such as the model kind: label values are bounded). `spec` must name every
    /// graph input exactly once. The dispatcher task starts with the first request (on the tokio
    /// runtime of that caller).
    pub fn new(
        model: &'static str,
        pool: Arc<SessionPool>,
        spec: BatchSpec,
        options: BatchOptions,
    ) -> Result<Self> {
        options.validate()?;
        for (i, name) in spec.input_names().enumerate() {
            if spec.input_names().skip(i + 1).any(|other| other == name) {
                return Err(ModelError::InvalidModel(format!("input `{name}` is in the batch spec twice")));
            }
            if !pool.input_names().iter().any(|n| n == name) {
                return Err(ModelError::InvalidModel(format!("the graph has no input `{name}`")));
            }
        }
        if let Some(missing) = pool.input_names().iter().find(|n| !spec.input_names().any(|s| s == *n)) {
            return Err(ModelError::InvalidModel(format!(
                "graph input `{missing}` is not in the batch spec of model `{model}`"
            )));
        }
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let (closing, closing_rx) = watch::channel(false);
        let (done_tx, done) = watch::channel(false);
        Ok(Self {
            shared: Arc::new(Shared {
                model,
                spec,
                options,
                closed: AtomicBool::new(false),
                counters: Counters::default(),
            }),
            pool: pool.clone(),
            tx,
            started: AtomicBool::new(false),
            start: Mutex::new(Some(Start { pool, rx, closing: closing_rx, done: done_tx })),
            closing,
            done,
        })
    }

    /// The model's name, as given to [`Batcher::new`].
    pub fn model(&self) -> &'static str {
        self.shared.model
    }

    pub fn options(&self) -> &BatchOptions {
        &self.shared.options
    }

    /// The session pool the batches run on (for unbatched runs next to the batched ones).
    pub fn pool(&self) -> &Arc<SessionPool> {
        &self.pool
    }

    /// The counters so far.
    pub fn stats(&self) -> BatchStats {
        let c = &self.shared.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BatchStats {
            requests: get(&c.requests),
            batches: get(&c.batches),
            rows: get(&c.rows),
            largest_batch: get(&c.largest_batch),
            rejected_queue_full: get(&c.rejected_queue_full),
            rejected_deadline: get(&c.rejected_deadline),
            rejected_shutdown: get(&c.rejected_shutdown),
            cancelled: get(&c.cancelled),
            failed: get(&c.failed),
        }
    }

    /// Queues one request and returns at once; await [`Pending::wait`] for its outputs.
    ///
    /// `inputs` holds every input of the spec, each `[rows, …]` with the same rows (at least 1).
    /// Errors right away: [`ModelError::InvalidInput`] for inputs that do not fit the spec,
    /// [`ModelError::DeadlineExceeded`] if `deadline` has passed, [`ModelError::Overloaded`] if
    /// the queue is full, [`ModelError::ShuttingDown`] after shutdown, [`ModelError::Runtime`]
    /// when called outside a tokio runtime before the batcher started.
    pub fn submit(&self, inputs: Vec<(String, InputTensor)>, deadline: Option<Instant>) -> Result<Pending> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Err(shared.reject(Rejection::ShuttingDown));
        }
        let (request, rx) = shared.request(inputs, deadline)?;
        self.ensure_started()?;
        match self.tx.try_send(request) {
            Ok(()) => {
                bump(&shared.counters.requests, 1);
                Ok(Pending { rx, deadline, shared: shared.clone() })
            }
            Err(TrySendError::Full(_)) => Err(shared.reject(Rejection::QueueFull)),
            Err(TrySendError::Closed(_)) => Err(shared.reject(Rejection::ShuttingDown)),
        }
    }

    /// [`Batcher::submit`], then [`Pending::wait`]; or, where the request would run alone at
    /// once anyway (no wait for company, `max_queue_delay` 0; nothing queued; a session free),
    /// the same run on the caller's task, without the dispatcher's hand-offs (the express path).
    pub async fn run(
        &self,
        inputs: Vec<(String, InputTensor)>,
        deadline: Option<Instant>,
    ) -> Result<Outputs> {
        match self.express_session() {
            Some(session) => self.run_alone(session, inputs, deadline).await,
            None => self.submit(inputs, deadline)?.wait().await,
        }
    }

    fn express_session(&self) -> Option<PooledSession> {
        let shared = &self.shared;
        let idle_queue = self.tx.capacity() == self.tx.max_capacity();
        if !shared.options.max_queue_delay.is_zero() || shared.closed.load(Ordering::Acquire) || !idle_queue {
            return None;
        }
        self.pool.try_checkout()
    }

    /// One request as a batch of its own on `session`, measured and refused like any batch.
    async fn run_alone(
        &self,
        session: PooledSession,
        inputs: Vec<(String, InputTensor)>,
        deadline: Option<Instant>,
    ) -> Result<Outputs> {
        let shared = &self.shared;
        let (request, rx) = shared.request(inputs, deadline)?;
        bump(&shared.counters.requests, 1);
        let run = run_batch(shared.clone(), session, Batch::new(request));
        match deadline {
            None => run.await,
            Some(d) => {
                // Past the deadline the caller stops waiting; a run on the blocking pool
                // finishes there and its session goes back.
                if tokio::time::timeout_at(tokio::time::Instant::from_std(d), run).await.is_err() {
                    return Err(shared.reject(Rejection::Deadline));
                }
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(ModelError::Runtime(format!("model `{}` stopped before answering", shared.model)))
        })
    }

    fn ensure_started(&self) -> Result<()> {
        if self.started.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut start = self.start.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = start.take() {
            let handle = match tokio::runtime::Handle::try_current() {
                Ok(handle) => handle,
                Err(e) => {
                    *start = Some(s);
                    return Err(ModelError::Runtime(format!(
                        "model `{}`: batching needs a tokio runtime: {e}",
                        self.shared.model
                    )));
                }
            };
            let dispatcher = Dispatcher {
                shared: self.shared.clone(),
                pool: s.pool,
                rx: s.rx,
                closing: s.closing,
                closed: false,
                carry: None,
                inflight: JoinSet::new(),
            };
            handle.spawn(dispatcher.run(s.done));
            self.started.store(true, Ordering::Release);
        }
        // `None` and not started: shut down before it ever started; try_send reports it.
        Ok(())
    }

    /// Stops taking requests (new ones fail with [`ModelError::ShuttingDown`]), lets the queued
    /// ones run, and returns when every batch has answered.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.closing.send_replace(true);
        let never_started = self.start.lock().unwrap_or_else(PoisonError::into_inner).take().is_some();
        if never_started {
            return;
        }
        let mut done = self.done.clone();
        // An error means the dispatcher is gone (its runtime stopped): nothing left to wait for.
        let _ = done.wait_for(|finished| *finished).await;
    }
}

/// A queued request ([`Batcher::submit`]).
#[must_use = "a request is computed only for a caller that waits"]
pub struct Pending {
    rx: oneshot::Receiver<Result<Outputs>>,
    deadline: Option<Instant>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("model", &self.shared.model)
            .field("deadline", &self.deadline)
            .finish()
    }
}

impl Pending {
    /// This request's rows of every output, `[rows, …]`, in graph order. Ends with
    /// [`ModelError::DeadlineExceeded`] at the request's deadline.
    pub async fn wait(self) -> Result<Outputs> {
        let answer = match self.deadline {
            None => self.rx.await,
            Some(deadline) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.rx).await {
                    Ok(answer) => answer,
                    Err(_) => return Err(self.shared.reject(Rejection::Deadline)),
                }
            }
        };
        answer.unwrap_or_else(|_| {
            Err(ModelError::Runtime(format!("model `{}` stopped before answering", self.shared.model)))
        })
    }
}

/// Requests stacked for one run.
struct Batch {
    requests: Vec<Request>,
    rows: usize,
    layout: Layout,
    oldest: Instant,
}

impl Batch {
    fn new(first: Request) -> Self {
        Self { rows: first.rows, layout: first.layout.clone(), oldest: first.enqueued, requests: vec![first] }
    }

    fn open(&self, max_batch: usize) -> bool {
        self.rows < max_batch
    }

    fn fits(&self, r: &Request, max_batch: usize) -> bool {
        self.rows + r.rows <= max_batch && r.layout == self.layout
    }

    fn push(&mut self, r: Request) {
        self.rows += r.rows;
        self.oldest = self.oldest.min(r.enqueued);
        self.requests.push(r);
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    pool: Arc<SessionPool>,
    rx: mpsc::Receiver<Request>,
    closing: watch::Receiver<bool>,
    /// The queue is closed (shutdown) or every sender is gone: drain what is left, then stop.
    closed: bool,
    /// A request that did not fit the previous batch; it starts the next.
    carry: Option<Request>,
    inflight: JoinSet<()>,
}

impl Dispatcher {
    async fn run(mut self, done: watch::Sender<bool>) {
        if *self.closing.borrow() {
            self.close();
        }
        while let Some(first) = self.next_request().await {
            while self.inflight.try_join_next().is_some() {}
            let Some(first) = self.admit(first, Instant::now()) else { continue };
            let mut batch = Batch::new(first);
            self.fill(&mut batch).await;
            let session = self.session_for(&mut batch).await;
            let now = Instant::now();
            let requests: Vec<Request> = std::mem::take(&mut batch.requests);
            batch.requests = requests.into_iter().filter_map(|r| self.admit(r, now)).collect();
            batch.rows = batch.requests.iter().map(|r| r.rows).sum();
            if batch.requests.is_empty() {
                continue;
            }
            match session {
                Ok(session) => {
                    self.inflight.spawn(run_batch(self.shared.clone(), session, batch));
                }
                Err(e) => fail(&self.shared, batch.requests, &e),
            }
        }
        while self.inflight.join_next().await.is_some() {}
        done.send_replace(true);
    }

    fn close(&mut self) {
        self.closed = true;
        self.rx.close();
    }

    async fn next_request(&mut self) -> Option<Request> {
        if let Some(r) = self.carry.take() {
            return Some(r);
        }
        loop {
            if self.closed {
                return self.rx.recv().await;
            }
            tokio::select! {
                r = self.rx.recv() => {
                    if r.is_none() {
                        self.closed = true;
                    }
                    return r;
                }
                // Err: the batcher is gone; its queue ends once drained, like after a shutdown.
                _ = self.closing.changed() => self.close(),
            }
        }
    }

    /// `r` if it is still wanted; a request past its deadline is answered, one whose caller is
    /// gone is dropped.
    fn admit(&self, r: Request, now: Instant) -> Option<Request> {
        if r.reply.is_closed() {
            bump(&self.shared.counters.cancelled, 1);
            None
        } else if r.expired(now) {
            let e = self.shared.reject(Rejection::Deadline);
            let _ = r.reply.send(Err(e));
            None
        } else {
            Some(r)
        }
    }

    fn offer(&mut self, batch: &mut Batch, r: Request) {
        let Some(r) = self.admit(r, Instant::now()) else { return };
        if batch.fits(&r, self.shared.options.max_batch) {
            batch.push(r);
        } else {
            self.carry = Some(r);
        }
    }

    /// Adds queued requests until the batch is full or its oldest request waited
    /// `max_queue_delay`.
    async fn fill(&mut self, batch: &mut Batch) {
        let max_batch = self.shared.options.max_batch;
        // A delay too long to add (Duration::MAX) means: only a full batch runs.
        let flush_at = batch
            .oldest
            .checked_add(self.shared.options.max_queue_delay)
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(365 * 86_400));
        while batch.open(max_batch) && self.carry.is_none() {
            match self.rx.try_recv() {
                Ok(r) => {
                    self.offer(batch, r);
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
                }
                Err(TryRecvError::Empty) => {}
            }
            if self.closed || tokio::time::Instant::now() >= flush_at {
                return;
            }
            tokio::select! {
                r = self.rx.recv() => match r {
                    Some(r) => self.offer(batch, r),
                    None => {
                        self.closed = true;
                        return;
                    }
                },
                () = tokio::time::sleep_until(flush_at) => return,
                _ = self.closing.changed() => {
                    self.close();
                    return;
                }
            }
        }
    }

    /// Waits for a free session, adding requests to the batch meanwhile (up to `max_batch`).
    async fn session_for(&mut self, batch: &mut Batch) -> Result<PooledSession> {
        let max_batch = self.shared.options.max_batch;
        let pool = self.pool.clone();
        let checkout = pool.checkout();
        tokio::pin!(checkout);
        loop {
            if !batch.open(max_batch) || self.carry.is_some() || self.closed {
                return checkout.await;
            }
            tokio::select! {
                biased;
                session = &mut checkout => return session,
                r = self.rx.recv() => match r {
                    Some(r) => self.offer(batch, r),
                    None => self.closed = true,
                },
                _ = self.closing.changed() => self.close(),
            }
        }
    }
}

/// A copy of `e` for each of several requests (errors are not `Clone`).
fn duplicate(e: &ModelError) -> ModelError {
    match e {
        ModelError::InvalidInput(m) => ModelError::InvalidInput(m.clone()),
        ModelError::InvalidModel(m) => ModelError::InvalidModel(m.clone()),
        ModelError::Overloaded { model, capacity } => ModelError::Overloaded { model, capacity: *capacity },
        ModelError::DeadlineExceeded { model } => ModelError::DeadlineExceeded { model },
        ModelError::ShuttingDown { model } => ModelError::ShuttingDown { model },
        other => ModelError::Runtime(other.to_string()),
    }
}

fn fail(shared: &Shared, requests: Vec<Request>, e: &ModelError) {
    bump(&shared.counters.failed, requests.len() as u64);
    for r in requests {
        let _ = r.reply.send(Err(duplicate(e)));
    }
}

async fn run_batch(shared: Arc<Shared>, session: PooledSession, batch: Batch) {
    let model = shared.model;
    let started = Instant::now();
    for r in &batch.requests {
        metrics().model_queue_wait(model, started.saturating_duration_since(r.enqueued));
    }
    let span = tracing::info_span!("model_batch", model, rows = batch.rows, requests = batch.requests.len());
    async move {
        let inputs = match assemble(&shared.spec, &batch.requests) {
            Ok(inputs) => inputs,
            Err(e) => return fail(&shared, batch.requests, &e),
        };
        let outputs = session.run(inputs).await;
        let took = started.elapsed();
        metrics().model_batch(model, batch.rows, took);
        let c = &shared.counters;
        bump(&c.batches, 1);
        bump(&c.rows, batch.rows as u64);
        c.largest_batch.fetch_max(batch.rows as u64, Ordering::Relaxed);
        let rows: Vec<usize> = batch.requests.iter().map(|r| r.rows).collect();
        match outputs.and_then(|outputs| split(&outputs, &rows)) {
            Ok(parts) => {
                for (r, part) in batch.requests.into_iter().zip(parts) {
                    let _ = r.reply.send(Ok(part));
                }
            }
            Err(e) => {
                tracing::warn!(model, rows = batch.rows, error = %e, "batch failed");
                fail(&shared, batch.requests, &e);
            }
        }
    }
    .instrument(span)
    .await;
}

/// Stacks the requests' inputs into one batch, in spec order.
fn assemble(spec: &BatchSpec, requests: &[Request]) -> Result<Vec<(String, InputTensor)>> {
    let total: usize = requests.iter().map(|r| r.rows).sum();
    let mut inputs = Vec::with_capacity(spec.inputs.len());
    for (i, (name, stacking)) in spec.inputs.iter().enumerate() {
        let mut f32s = Vec::with_capacity(requests.len());
        let mut i64s = Vec::with_capacity(requests.len());
        for r in requests {
            match r.inputs.get(i) {
                Some(InputTensor::F32 { shape, data }) => f32s.push((shape.as_slice(), data.as_slice())),
                Some(InputTensor::I64 { shape, data }) => i64s.push((shape.as_slice(), data.as_slice())),
                None => return Err(ModelError::Runtime(format!("a request lacks input `{name}`"))),
            }
        }
        if !f32s.is_empty() && !i64s.is_empty() {
            return Err(ModelError::InvalidInput(format!(
                "input `{name}` is float32 in some requests, int64 in others"
            )));
        }
        let tensor = match (stacking, f32s.is_empty()) {
            (Stacking::Stacked, false) => {
                let (shape, data) = stack(&f32s, total);
                InputTensor::F32 { shape, data }
            }
            (Stacking::Stacked, true) => {
                let (shape, data) = stack(&i64s, total);
                InputTensor::I64 { shape, data }
            }
            (Stacking::Padded(PadValue::F32(pad)), false) => {
                let (shape, data) = pad_stack(&f32s, total, *pad);
                InputTensor::F32 { shape, data }
            }
            (Stacking::Padded(PadValue::I64(pad)), true) => {
                let (shape, data) = pad_stack(&i64s, total, *pad);
                InputTensor::I64 { shape, data }
            }
            (Stacking::Padded(pad), _) => {
                return Err(ModelError::InvalidInput(format!(
                    "input `{name}` must be {}",
                    pad.dtype().name()
                )));
            }
        };
        inputs.push((name.clone(), tensor));
    }
    Ok(inputs)
}

/// Concatenates `[rows_k, inner…]` parts along dimension 0: `[total, inner…]`.
fn stack<T: Copy>(parts: &[(&[usize], &[T])], total: usize) -> (Vec<usize>, Vec<T>) {
    let mut shape = vec![total];
    if let Some((first, _)) = parts.first() {
        shape.extend_from_slice(first.get(1..).unwrap_or_default());
    }
    let mut data = Vec::with_capacity(parts.iter().map(|(_, d)| d.len()).sum());
    for (_, d) in parts {
        data.extend_from_slice(d);
    }
    (shape, data)
}

/// Concatenates `[rows_k, len_k]` parts along dimension 0, each row padded at the end with `pad`
/// to the longest `len_k` (at least 1): `[total, width]`.
fn pad_stack<T: Copy>(parts: &[(&[usize], &[T])], total: usize, pad: T) -> (Vec<usize>, Vec<T>) {
    let width = parts.iter().map(|(s, _)| s.get(1).copied().unwrap_or(0)).max().unwrap_or(0).max(1);
    let mut data = Vec::with_capacity(total * width);
    for (shape, d) in parts {
        let rows = shape.first().copied().unwrap_or(0);
        let len = shape.get(1).copied().unwrap_or(0);
        for row in 0..rows {
            let values = d.get(row * len..(row + 1) * len).unwrap_or_default();
            data.extend_from_slice(values);
            data.resize(data.len() + (width - values.len()), pad);
        }
    }
    (vec![total, width], data)
}

/// Splits every output `[total, inner…]` into consecutive parts of `rows[k]` rows each,
/// `[rows[k], inner…]`. An output without one row per input row is an error.
fn split(outputs: &Outputs, rows: &[usize]) -> Result<Vec<Outputs>> {
    let total: usize = rows.iter().sum();
    let mut parts: Vec<Outputs> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for (name, tensor) in outputs {
        let (shape, len) = match tensor {
            OutputTensor::F32 { shape, data } => (shape, data.len()),
            OutputTensor::I64 { shape, data } => (shape, data.len()),
        };
        let stride: usize = shape.get(1..).unwrap_or_default().iter().product();
        if shape.first() != Some(&total) || stride.checked_mul(total) != Some(len) {
            return Err(ModelError::Runtime(format!(
                "output `{name}` has shape {shape:?}; a batched model must return one row per input \
                 row ({total} rows)"
            )));
        }
        let mut start = 0;
        for (part, &r) in parts.iter_mut().zip(rows) {
            let mut part_shape = shape.clone();
            part_shape[0] = r;
            let range = start * stride..(start + r) * stride;
            let piece = match tensor {
                OutputTensor::F32 { data, .. } => OutputTensor::F32 {
                    shape: part_shape,
                    data: data.get(range).unwrap_or_default().to_vec(),
                },
                OutputTensor::I64 { data, .. } => OutputTensor::I64 {
                    shape: part_shape,
                    data: data.get(range).unwrap_or_default().to_vec(),
                },
            };
            part.push((name.clone(), piece));
            start += r;
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stack_concatenates_rows() {
        let a = [1i64, 2, 3, 4];
        let b = [5i64, 6];
        let (shape, data) = stack(&[(&[2, 2][..], &a[..]), (&[1, 2][..], &b[..])], 3);
        assert_eq!(shape, vec![3, 2]);
        assert_eq!(data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn pad_stack_pads_each_row_to_the_longest() {
        let a = [1.0f32, 2.0, 3.0];
        let b = [4.0f32, 5.0, 6.0, 7.0];
        let c: [f32; 0] = [];
        let (shape, data) =
            pad_stack(&[(&[1, 3][..], &a[..]), (&[2, 2][..], &b[..]), (&[1, 0][..], &c[..])], 4, -1.0);
        assert_eq!(shape, vec![4, 3]);
        assert_eq!(data, vec![1.0, 2.0, 3.0, 4.0, 5.0, -1.0, 6.0, 7.0, -1.0, -1.0, -1.0, -1.0]);
        // Every row empty: width 1, all padding.
        let (shape, data) = pad_stack(&[(&[2, 0][..], &c[..])], 2, 0.0);
        assert_eq!((shape, data), (vec![2, 1], vec![0.0, 0.0]));
    }

    #[test]
    fn split_gives_each_request_its_rows() {
        let outputs = vec![
            (
                "scores".to_owned(),
                OutputTensor::F32 { shape: vec![3, 2], data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] },
            ),
            ("ids".to_owned(), OutputTensor::I64 { shape: vec![3], data: vec![7, 8, 9] }),
        ];
        let parts = split(&outputs, &[1, 2]).unwrap();
        assert_eq!(
            parts[0],
            vec![
                ("scores".to_owned(), OutputTensor::F32 { shape: vec![1, 2], data: vec![1.0, 2.0] }),
                ("ids".to_owned(), OutputTensor::I64 { shape: vec![1], data: vec![7] }),
            ]
        );
        assert_eq!(
            parts[1],
            vec![
                (
                    "scores".to_owned(),
                    OutputTensor::F32 { shape: vec![2, 2], data: vec![3.0, 4.0, 5.0, 6.0] }
                ),
                ("ids".to_owned(), OutputTensor::I64 { shape: vec![2], data: vec![8, 9] }),
            ]
        );
    }

    #[test]
    fn split_refuses_outputs_without_a_row_per_input_row() {
        let outputs = vec![("total".to_owned(), OutputTensor::F32 { shape: vec![2], data: vec![1.0, 2.0] })];
        match split(&outputs, &[1, 2]) {
            Err(ModelError::Runtime(msg)) => {
                assert!(msg.contains("`total`") && msg.contains("3 rows"), "{msg}")
            }
            other => panic!("expected a runtime error, got {other:?}"),
        }
    }

    #[test]
    fn options_must_be_positive() {
        assert!(BatchOptions::default().validate().is_ok());
        assert!(BatchOptions { max_batch: 0, ..BatchOptions::default() }.validate().is_err());
        assert!(BatchOptions { queue_capacity: 0, ..BatchOptions::default() }.validate().is_err());
        assert!(
            BatchOptions { max_queue_delay: Duration::ZERO, ..BatchOptions::default() }.validate().is_ok()
        );
    }
}
