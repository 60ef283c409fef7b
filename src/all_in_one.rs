//! Every service in one process.

use std::future::Future;

use anyhow::Context as _;
use shopmind_config::Config;
use shopmind_runtime::Shutdown;
use shopmind_runtime::connect::{self, Backends, Embedded};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub struct AllInOne {
    pub backends: Backends,
    pub addr: std::net::SocketAddr,
    shutdown: Shutdown,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
}

impl AllInOne {
    /// Connects (or creates the embedded bus, store and model registry), creates the streams and
    /// starts the services; `with_trainer` adds the periodic trainer.
    pub async fn start(
        config: Config,
        listener: TcpListener,
        shutdown: Shutdown,
        with_trainer: bool,
    ) -> anyhow::Result<Self> {
        let (bus, models) = connect::bus_and_models(&config, "all-in-one", Embedded::Allowed).await?;
        let store = connect::store(&config, "all-in-one", Embedded::Allowed).await?;
        connect::ensure_streams(&*bus, &config).await.context("creating streams")?;
        let addr = listener.local_addr()?;
        tracing::info!(bus = bus.kind(), store = store.kind(), models = models.kind(), %addr, "all-in-one starting");

        let mut tasks = JoinSet::new();
        fn spawn<F, E>(tasks: &mut JoinSet<(&'static str, anyhow::Result<()>)>, name: &'static str, f: F)
        where
            F: Future<Output = Result<(), E>> + Send + 'static,
            E: Into<anyhow::Error>,
        {
            tasks.spawn(async move { (name, f.await.map_err(Into::into)) });
        }
        spawn(&mut tasks, "ingest", shopmind_ingest::run(config.clone(), bus.clone(), shutdown.clone()));
        spawn(
            &mut tasks,
            "feature",
            shopmind_feature::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()),
        );
        spawn(
            &mut tasks,
            "inference",
            shopmind_inference::run(
                config.clone(),
                bus.clone(),
                store.clone(),
                models.clone(),
                shutdown.clone(),
            ),
        );
        spawn(
            &mut tasks,
            "notification",
            shopmind_notification::run(config.clone(), bus.clone(), store.clone(), shutdown.clone()),
        );
        if with_trainer {
            spawn(
                &mut tasks,
                "trainer",
                shopmind_trainer::run(config.clone(), bus.clone(), models.clone(), shutdown.clone()),
            );
        }
        spawn(
            &mut tasks,
            "gateway",
            shopmind_gateway::run(config.clone(), bus.clone(), listener, shutdown.clone()),
        );
        Ok(Self { backends: Backends { bus, store, models }, addr, shutdown, tasks })
    }

    /// Runs until shutdown; if a service fails, stops the others and returns its error.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (name, result) = joined.unwrap_or(("task", Err(anyhow::anyhow!("a service task panicked"))));
            match result {
                Ok(()) => tracing::info!(service = name, "stopped"),
                Err(e) => {
                    tracing::error!(service = name, error = format!("{e:#}"), "failed");
                    if first_error.is_none() {
                        first_error = Some(e.context(format!("{name} failed")));
                    }
                    self.shutdown.trigger();
                }
            }
        }
        self.backends.bus.flush().await?;
        first_error.map_or(Ok(()), Err)
    }
}
