//! The request-reply server loop every service that answers requests runs.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use shopmind_bus::{Bus, BusError, IncomingRequest};
use tokio::sync::Semaphore;

use crate::Shutdown;

/// Answers the requests on `subject` (queue group `queue`) with `handle`, at most `concurrency`
/// at a time, until `shutdown`; then stops taking requests and lets those in flight finish
/// within [`Shutdown::GRACE`].
pub async fn serve_requests<F, Fut>(
    bus: &dyn Bus,
    subject: &str,
    queue: &str,
    concurrency: usize,
    shutdown: &Shutdown,
    handle: F,
) -> Result<(), BusError>
where
    F: Fn(IncomingRequest) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut requests = bus.serve(subject, queue).await?;
    let limit = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut in_flight = tokio::task::JoinSet::new();
    tracing::info!(subject, queue, "serving");
    loop {
        let request = tokio::select! {
            () = shutdown.wait() => break,
            r = requests.next() => r,
        };
        let Some(request) = request else { break };
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let work = handle(request);
        in_flight.spawn(async move {
            work.await;
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    }
    drop(requests);
    let drained =
        tokio::time::timeout(Shutdown::GRACE, async { while in_flight.join_next().await.is_some() {} });
    if drained.await.is_err() {
        tracing::warn!(subject, "requests in flight did not finish within the grace period");
    }
    tracing::info!(subject, "stopped serving");
    Ok(())
}
