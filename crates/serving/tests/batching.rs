//! Micro-batching on the real ONNX Runtime: merged requests, per-request results equal to the
//! unbatched ones, padding, the bounded queue, deadlines and shutdown. Batches are observed
//! through the batcher's counters, never through timing: tests that need a batch to fill use a
//! long `max_queue_delay` (the batch runs when full) and tests that need requests to wait hold the
//! pool's only session.
#![allow(clippy::unwrap_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shopmind_onnx::TrainingStats;
use shopmind_serving::{
    BatchOptions, BatchSpec, Batcher, CovisitRecommender, InputTensor, ModelError, OutputTensor, PadValue,
    PoolOptions, SessionPool, init_runtime,
};
use shopmind_training::CovisitModel;

/// Long enough that a batch never runs because of it: batches in these tests run when full.
const NEVER: Duration = Duration::from_secs(120);

fn init() {
    init_runtime(&common::onnxruntime_library()).unwrap();
}

fn random_model(seed: u64, n: usize) -> CovisitModel {
    common::random_covisit(seed, n, TrainingStats::default())
}

fn onnx(model: &CovisitModel) -> Vec<u8> {
    model.to_onnx(&model.manifest("recommender", "test", "acme", 1))
}

/// A history of exactly `len` entries (repeats allowed; item 0 included sometimes, so that padding
/// with item 0 is not confused with a real entry).
fn history(rng: &mut StdRng, n: usize, len: usize) -> Vec<(usize, f32)> {
    (0..len).map(|_| (rng.random_range(0..n), rng.random_range(0.05f32..2.0))).collect()
}

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (j, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "item {j}: got {g}, want {w}");
    }
}

/// The graph inputs for several histories, as one request of `histories.len()` rows, padded by
/// the caller's choice of `width`.
fn request(histories: &[Vec<(usize, f32)>]) -> Vec<(String, InputTensor)> {
    let width = histories.iter().map(Vec::len).max().unwrap();
    let mut items = Vec::new();
    let mut weights = Vec::new();
    for h in histories {
        for k in 0..width {
            let (i, w) = h.get(k).copied().unwrap_or((0, 0.0));
            items.push(i as i64);
            weights.push(w);
        }
    }
    let shape = vec![histories.len(), width];
    vec![
        ("history_items".into(), InputTensor::I64 { shape: shape.clone(), data: items }),
        ("history_weights".into(), InputTensor::F32 { shape, data: weights }),
    ]
}

fn scores(outputs: Vec<(String, OutputTensor)>) -> (Vec<usize>, Vec<f32>) {
    match outputs.into_iter().find(|(n, _)| n == "scores") {
        Some((_, OutputTensor::F32 { shape, data })) => (shape, data),
        other => panic!("no float scores: {other:?}"),
    }
}

fn spec() -> BatchSpec {
    BatchSpec::new().padded("history_items", PadValue::I64(0)).padded("history_weights", PadValue::F32(0.0))
}

fn batcher(model: &CovisitModel, sessions: usize, options: BatchOptions) -> Batcher {
    let pool = SessionPool::load(&onnx(model), &PoolOptions { sessions, ..PoolOptions::default() }).unwrap();
    Batcher::new("covisit", Arc::new(pool), spec(), options).unwrap()
}

/// Polls `fut` once; whether it finished.
async fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> bool {
    let mut fut = Some(fut);
    std::future::poll_fn(|cx| Poll::Ready(fut.take().unwrap().poll(cx).is_ready())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_are_merged_and_each_gets_its_own_scores() {
    init();
    let n = 40;
    let model = Arc::new(random_model(21, n));
    let rec = Arc::new(
        CovisitRecommender::load(
            &onnx(&model),
            &PoolOptions {
                sessions: 2,
                batch: BatchOptions { max_batch: 16, max_queue_delay: NEVER, queue_capacity: 256 },
                ..PoolOptions::default()
            },
        )
        .unwrap(),
    );
    // 64 single-row requests of lengths 1..=20 and batches of 16: exactly four full batches, each
    // mixing histories of different lengths (so padded).
    let mut rng = StdRng::seed_from_u64(3);
    let histories: Vec<Vec<(usize, f32)>> = (0..64).map(|k| history(&mut rng, n, 1 + (k * 7) % 20)).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, h) in histories.iter().cloned().enumerate() {
        let rec = rec.clone();
        tasks.spawn(async move { (k, rec.score(&h).await.unwrap()) });
    }
    let mut batched = vec![Vec::new(); histories.len()];
    while let Some(joined) = tasks.join_next().await {
        let (k, got) = joined.unwrap();
        batched[k] = got;
    }
    let stats = rec.batch_stats();
    assert_eq!(
        (stats.requests, stats.batches, stats.rows, stats.largest_batch),
        (64, 4, 64, 16),
        "{stats:?}"
    );
    assert_eq!(stats.rejected_queue_full + stats.rejected_deadline + stats.failed, 0, "{stats:?}");

    // Each request got its own row: the reference scores, and the unbatched run's.
    for (h, got) in histories.iter().zip(&batched) {
        assert_close(got, &model.score(h));
        assert_close(got, &rec.score_unbatched(h).await.unwrap());
    }
    assert!(batched.iter().any(|s| s.iter().any(|&v| v > 0.5)), "scores should not be trivially 0");
}

#[tokio::test]
async fn padding_and_multi_row_requests_match_the_reference() {
    init();
    let n = 30;
    let model = random_model(8, n);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 6, max_queue_delay: NEVER, ..BatchOptions::default() });
    let mut rng = StdRng::seed_from_u64(11);
    // Three requests with 1, 2 and 3 rows (6 rows: one full batch), histories of 1 to 17 entries;
    // item 0 with a real weight appears in one of them.
    let mut a = history(&mut rng, n, 17);
    a[4] = (0, 1.5);
    let groups = [
        vec![history(&mut rng, n, 1)],
        vec![a, history(&mut rng, n, 3)],
        vec![history(&mut rng, n, 9), history(&mut rng, n, 2), history(&mut rng, n, 5)],
    ];
    let pending: Vec<_> = groups.iter().map(|g| batcher.submit(request(g), None).unwrap()).collect();
    for (group, p) in groups.iter().zip(pending) {
        let (shape, data) = scores(p.wait().await.unwrap());
        assert_eq!(shape, vec![group.len(), n]);
        for (row, h) in group.iter().enumerate() {
            assert_close(&data[row * n..(row + 1) * n], &model.score(h));
        }
    }
    let stats = batcher.stats();
    assert_eq!((stats.batches, stats.rows, stats.largest_batch), (1, 6, 6), "{stats:?}");

    // A request larger than max_batch runs alone.
    let big: Vec<_> = (0..9).map(|k| history(&mut rng, n, 1 + k)).collect();
    let (shape, data) = scores(batcher.run(request(&big), None).await.unwrap());
    assert_eq!(shape, vec![9, n]);
    for (row, h) in big.iter().enumerate() {
        assert_close(&data[row * n..(row + 1) * n], &model.score(h));
    }
    assert_eq!(batcher.stats().largest_batch, 9);
}

#[tokio::test]
async fn inputs_that_do_not_fit_the_spec_are_invalid() {
    init();
    let model = random_model(2, 10);
    let batcher = batcher(&model, 1, BatchOptions::default());
    let invalid = |inputs| match batcher.submit(inputs, None) {
        Err(ModelError::InvalidInput(msg)) => msg,
        other => panic!("expected InvalidInput, got {other:?}"),
    };
    let ok = request(&[vec![(1, 1.0)]]);
    // Missing input.
    assert!(invalid(ok[..1].to_vec()).contains("history_weights"));
    // Rows that differ between inputs.
    let mut rows = ok.clone();
    rows[1].1 = InputTensor::F32 { shape: vec![2, 1], data: vec![1.0, 1.0] };
    assert!(invalid(rows).contains("rows"));
    // Wrong type for a padded input.
    let mut dtype = ok.clone();
    dtype[0].1 = InputTensor::F32 { shape: vec![1, 1], data: vec![1.0] };
    assert!(invalid(dtype).contains("int64"));
    // Shape that does not hold the data; no row dimension; 3-D where [rows, length] is expected.
    let mut shape = ok.clone();
    shape[0].1 = InputTensor::I64 { shape: vec![1, 2], data: vec![1] };
    assert!(invalid(shape).contains("does not hold"));
    let mut scalar = ok.clone();
    scalar[0].1 = InputTensor::I64 { shape: vec![], data: vec![1] };
    assert!(invalid(scalar).contains("row dimension"));
    let mut cube = ok.clone();
    cube[0].1 = InputTensor::I64 { shape: vec![1, 1, 1], data: vec![1] };
    assert!(invalid(cube).contains("[rows, length]"));
    assert_eq!(batcher.stats().requests, 0);

    // A spec that does not name the graph's inputs is refused.
    let pool = Arc::new(SessionPool::load(&onnx(&model), &PoolOptions::default()).unwrap());
    let partial = BatchSpec::new().padded("history_items", PadValue::I64(0));
    assert!(matches!(
        Batcher::new("covisit", pool.clone(), partial, BatchOptions::default()),
        Err(ModelError::InvalidModel(_))
    ));
    let extra = spec().stacked("features");
    assert!(matches!(
        Batcher::new("covisit", pool, extra, BatchOptions::default()),
        Err(ModelError::InvalidModel(_))
    ));
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_the_queued_requests_still_run() {
    init();
    let n = 12;
    let model = random_model(5, n);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 1, max_queue_delay: Duration::ZERO, queue_capacity: 2 });
    // Hold the only session: nothing can run.
    let held = batcher.pool().checkout().await.unwrap();

    // On this single-threaded runtime the dispatcher does not run between these calls: the queue
    // takes two requests, the rest are refused without waiting.
    let mut accepted = Vec::new();
    let mut refused = 0;
    for k in 0..10 {
        let h = vec![(k % n, 1.0)];
        match batcher.submit(request(std::slice::from_ref(&h)), None) {
            Ok(p) => accepted.push((h, p)),
            Err(ModelError::Overloaded { model, capacity }) => {
                assert_eq!((model, capacity), ("covisit", 2));
                refused += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!((accepted.len(), refused), (2, 8));
    assert_eq!(batcher.stats().rejected_queue_full, 8);

    drop(held);
    for (h, p) in accepted {
        let (_, data) = scores(p.wait().await.unwrap());
        assert_close(&data, &model.score(&h));
    }
    let stats = batcher.stats();
    assert_eq!((stats.requests, stats.batches, stats.rows), (2, 2, 2), "{stats:?}");
}

#[tokio::test]
async fn requests_past_their_deadline_are_answered_without_computing() {
    init();
    let n = 12;
    let model = random_model(6, n);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 4, max_queue_delay: Duration::ZERO, queue_capacity: 8 });

    // Already past at submission.
    match batcher.submit(request(&[vec![(1, 1.0)]]), Some(Instant::now())) {
        Err(ModelError::DeadlineExceeded { model }) => assert_eq!(model, "covisit"),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }

    // Passes while queued: the session is held until well after the deadline.
    let held = batcher.pool().checkout().await.unwrap();
    let short = batcher.submit(request(&[vec![(2, 1.0)]]), Some(Instant::now() + Duration::from_millis(300)));
    let short = short.unwrap();
    let patient = batcher.submit(request(&[vec![(3, 1.0)]]), None).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(held);

    let (_, data) = scores(patient.wait().await.unwrap());
    assert_close(&data, &model.score(&[(3, 1.0)]));
    assert!(matches!(short.wait().await, Err(ModelError::DeadlineExceeded { .. })));
    let stats = batcher.stats();
    // One batch with only the patient request's row; two deadline refusals, no other outcome.
    assert_eq!((stats.batches, stats.rows), (1, 1), "{stats:?}");
    assert_eq!((stats.rejected_deadline, stats.cancelled, stats.failed), (2, 0, 0), "{stats:?}");

    // Through the recommender, too.
    let rec = CovisitRecommender::load(&onnx(&model), &PoolOptions::default()).unwrap();
    match rec.score_until(&[(1, 1.0)], Some(Instant::now())).await {
        Err(ModelError::DeadlineExceeded { .. }) => {}
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert_eq!(rec.batch_stats().batches, 0);
}

#[tokio::test]
async fn callers_that_stop_waiting_are_not_computed() {
    init();
    let model = random_model(9, 8);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 4, max_queue_delay: Duration::ZERO, queue_capacity: 8 });
    let held = batcher.pool().checkout().await.unwrap();
    let gone = batcher.submit(request(&[vec![(1, 1.0)]]), None).unwrap();
    let kept = batcher.submit(request(&[vec![(2, 1.0)]]), None).unwrap();
    drop(gone);
    drop(held);
    let (_, data) = scores(kept.wait().await.unwrap());
    assert_close(&data, &model.score(&[(2, 1.0)]));
    let stats = batcher.stats();
    assert_eq!((stats.rows, stats.cancelled), (1, 1), "{stats:?}");
}

#[tokio::test]
async fn shutdown_drains_the_queue_and_refuses_new_requests() {
    init();
    let n = 10;
    let model = random_model(7, n);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 1, max_queue_delay: Duration::ZERO, queue_capacity: 8 });
    let held = batcher.pool().checkout().await.unwrap();
    let queued: Vec<_> =
        (0..3).map(|k| (k, batcher.submit(request(&[vec![(k, 1.0)]]), None).unwrap())).collect();

    let mut shutdown = Box::pin(batcher.shutdown());
    assert!(!poll_once(shutdown.as_mut()).await, "shutdown waits for the queued requests");
    match batcher.submit(request(&[vec![(1, 1.0)]]), None) {
        Err(ModelError::ShuttingDown { model }) => assert_eq!(model, "covisit"),
        other => panic!("expected ShuttingDown, got {other:?}"),
    }

    drop(held);
    shutdown.await;
    let stats = batcher.stats();
    assert_eq!((stats.batches, stats.rows, stats.rejected_shutdown), (3, 3, 1), "{stats:?}");
    for (k, p) in queued {
        let (_, data) = scores(p.wait().await.unwrap());
        assert_close(&data, &model.score(&[(k, 1.0)]));
    }
    // Shutting down again, or a batcher that never ran, returns at once.
    batcher.shutdown().await;
    let idle = self::batcher(&model, 1, BatchOptions::default());
    idle.shutdown().await;
    assert!(matches!(idle.submit(request(&[vec![(1, 1.0)]]), None), Err(ModelError::ShuttingDown { .. })));
}

#[tokio::test]
async fn dropping_the_batcher_still_answers_queued_requests() {
    init();
    let model = random_model(10, 10);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 2, max_queue_delay: Duration::ZERO, queue_capacity: 8 });
    let held = batcher.pool().checkout().await.unwrap();
    let pending = batcher.submit(request(&[vec![(4, 2.0)]]), None).unwrap();
    drop(batcher);
    drop(held);
    let (_, data) = scores(pending.wait().await.unwrap());
    assert_close(&data, &model.score(&[(4, 2.0)]));
}

#[test]
fn submitting_outside_a_runtime_is_an_error_not_a_panic() {
    init();
    let model = random_model(12, 5);
    let batcher = batcher(&model, 1, BatchOptions::default());
    match batcher.submit(request(&[vec![(1, 1.0)]]), None) {
        Err(ModelError::Runtime(msg)) => assert!(msg.contains("tokio runtime"), "{msg}"),
        other => panic!("expected a runtime error, got {other:?}"),
    }
}

#[tokio::test]
async fn with_no_queue_delay_a_lone_request_runs_on_the_callers_task_and_a_busy_pool_still_queues() {
    init();
    let n = 12;
    let model = random_model(9, n);
    let batcher =
        batcher(&model, 1, BatchOptions { max_batch: 4, max_queue_delay: Duration::ZERO, queue_capacity: 8 });

    // The express path: the dispatcher is never involved, so the answer is there after one poll
    // of the caller's future (the run itself happens inside it). It is measured as a batch.
    let run = batcher.run(request(&[vec![(1, 1.0), (4, 0.5)]]), None);
    tokio::pin!(run);
    let mut answer = None;
    std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
        Poll::Ready(r) => {
            answer = Some(r);
            Poll::Ready(())
        }
        // A first run goes to the blocking pool (no run time known yet): wait for it.
        Poll::Pending => Poll::Pending,
    })
    .await;
    let (_, data) = scores(answer.unwrap().unwrap());
    assert_close(&data, &model.score(&[(1, 1.0), (4, 0.5)]));
    // Its runs are short (after the first, which ONNX Runtime spends warming up): soon they
    // happen inline, within the first poll.
    for k in 0..40 {
        batcher.run(request(&[vec![(k % n, 1.0)]]), None).await.unwrap();
    }
    assert!(batcher.pool().try_checkout().is_some_and(|s| s.runs_inline()), "a tiny model runs inline");
    let run = batcher.run(request(&[vec![(2, 1.0)]]), None);
    tokio::pin!(run);
    assert!(poll_once(run.as_mut()).await, "an inline express run answers within one poll");
    assert_eq!(batcher.stats().batches, 42);

    // Past its deadline: refused, not computed.
    match batcher.run(request(&[vec![(3, 1.0)]]), Some(Instant::now())).await {
        Err(ModelError::DeadlineExceeded { .. }) => {}
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }

    // The only session busy: no express run, the request queues until the session is back.
    let held = batcher.pool().checkout().await.unwrap();
    let queued = batcher.run(request(&[vec![(5, 1.0)]]), None);
    tokio::pin!(queued);
    assert!(!poll_once(queued.as_mut()).await, "it waits for the held session");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!poll_once(queued.as_mut()).await, "still waiting");
    drop(held);
    let (_, data) = scores(queued.await.unwrap());
    assert_close(&data, &model.score(&[(5, 1.0)]));
    let stats = batcher.stats();
    assert_eq!((stats.requests, stats.batches, stats.rejected_deadline), (43, 43, 1), "{stats:?}");
}

#[tokio::test]
async fn an_unbatched_run_until_a_deadline_does_not_start_after_it() {
    init();
    let model = random_model(10, 12);
    let pool =
        SessionPool::load(&onnx(&model), &PoolOptions { sessions: 1, ..PoolOptions::default() }).unwrap();
    // The only session is busy past the deadline: the wait ends there.
    let held = pool.checkout().await.unwrap();
    let started = Instant::now();
    match pool
        .run_until(request(&[vec![(1, 1.0)]]), "covisit", Some(started + Duration::from_millis(200)))
        .await
    {
        Err(ModelError::DeadlineExceeded { model }) => assert_eq!(model, "covisit"),
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert!(started.elapsed() >= Duration::from_millis(200), "it waited for the session until the deadline");
    drop(held);
    // A free session, but the deadline has passed: not run.
    match pool.run_until(request(&[vec![(1, 1.0)]]), "covisit", Some(Instant::now())).await {
        Err(ModelError::DeadlineExceeded { .. }) => {}
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    // In time: the model's answer.
    let later = Instant::now() + Duration::from_secs(30);
    let (_, data) = scores(pool.run_until(request(&[vec![(1, 1.0)]]), "covisit", Some(later)).await.unwrap());
    assert_close(&data, &model.score(&[(1, 1.0)]));
}
