//! Start-up: connect, migrate, bind, serve until SIGTERM / Ctrl-C. Shared by `main` and the tests.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use leptos::config::LeptosOptions;
use pipebridge::db::{self, Pool};
use std::sync::Arc;

use pipebridge::pipedrive::limits::Registry;
use pipebridge::queue::{Worker, WorkerSettings};
use pipebridge::{maintenance, sync};
use tokio::net::TcpListener;
use tower_sessions_sqlx_store::PostgresStore;

use crate::config::Config;
use crate::routes::{self, AppState};

pub struct Application {
    listener: TcpListener,
    router: Router,
    pool: Pool,
    workers: Worker,
    sync_every: Option<std::time::Duration>,
    /// Finished rows are pruned after this long (`None`: kept).
    retention: Option<std::time::Duration>,
}

impl Application {
    /// Connects to the database, applies migrations, and binds `addr` (port 0 picks a free port).
    pub async fn build(
        config: &Config,
        leptos_options: LeptosOptions,
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let pool = db::connect(&config.database_url, config.db_max_connections)
            .await
            .context("connecting to the database (DATABASE_URL)")?;
        let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        Self::with_listener(config, leptos_options, listener, pool).await
    }

    /// For tests: a listener bound beforehand (so the public URL is known) and a given pool.
    pub async fn with_listener(
        config: &Config,
        leptos_options: LeptosOptions,
        listener: TcpListener,
        pool: Pool,
    ) -> anyhow::Result<Self> {
        db::migrate(&pool).await.context("applying database migrations")?;
        // The rate limiters and budgets of this process, shared by the web handlers and workers.
        let limits = Arc::new(Registry::new(20, config.pipedrive_daily_budget, 0.1));
        let router = build_router(config, leptos_options, pool.clone(), limits.clone()).await?;
        // A job of an unknown kind is marked dead with a message, never lost silently.
        let services = Arc::new(sync::Services::new(
            pool.clone(),
            config.secret_key.clone(),
            config.providers.clone(),
            limits,
        ));
        let retention = (config.retention_days > 0)
            .then(|| std::time::Duration::from_secs(config.retention_days * 86_400));
        let mut workers = Worker::new(
            pool.clone(),
            WorkerSettings { concurrency: config.workers, ..WorkerSettings::default() },
        )
        .register(sync::JOB_SYNC, sync::SyncHandler::new(services.clone()))
        .register(sync::JOB_FULL_RESYNC, sync::SyncHandler::new(services));
        if let Some(retention) = retention {
            workers = workers.register(
                maintenance::JOB_PRUNE,
                maintenance::PruneHandler::new(pool.clone(), retention),
            );
        }
        let sync_every = (config.sync_every_seconds > 0)
            .then(|| std::time::Duration::from_secs(config.sync_every_seconds));
        Ok(Self { listener, router, pool, workers, sync_every, retention })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Serves HTTP and runs the workers until SIGTERM / Ctrl-C; then stops accepting, finishes the
    /// requests in flight, lets running jobs finish (or releases them after the grace period).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let workers = tokio::spawn(self.workers.run(stop_rx.clone()));
        let schedule = self.sync_every.map(|every| {
            tokio::spawn(pipebridge::queue::schedule::run(
                self.pool.clone(),
                sync::schedule::SCHEDULE,
                every,
                |pool| async move { sync::schedule::incremental_sync_jobs(&pool).await },
                stop_rx.clone(),
            ))
        });
        let pruning = self.retention.map(|_| {
            tokio::spawn(pipebridge::queue::schedule::run(
                self.pool.clone(),
                maintenance::SCHEDULE,
                std::time::Duration::from_secs(3600),
                |_| async { Ok(maintenance::prune_jobs()) },
                stop_rx,
            ))
        });
        let service = self.router.into_make_service_with_connect_info::<SocketAddr>();
        let served =
            axum::serve(self.listener, service).with_graceful_shutdown(shutdown_signal()).await;
        tracing::info!("stopped serving: in-flight requests finished");
        let _ = stop_tx.send(true);
        if let Err(e) = workers.await {
            tracing::error!(error = %e, "a worker task panicked");
        }
        if let Some(Err(e)) = match schedule {
            Some(s) => Some(s.await),
            None => None,
        } {
            tracing::error!(error = %e, "the sync schedule panicked");
        }
        if let Some(Err(e)) = match pruning {
            Some(s) => Some(s.await),
            None => None,
        } {
            tracing::error!(error = %e, "the pruning schedule panicked");
        }
        self.pool.close().await;
        served.context("serving HTTP")
    }
}

pub async fn build_router(
    config: &Config,
    leptos_options: LeptosOptions,
    pool: Pool,
    limits: Arc<Registry>,
) -> anyhow::Result<Router> {
    let store = PostgresStore::new(pool.clone());
    store.migrate().await.context("creating the session table")?;
    routes::spawn_session_cleanup(store.clone());
    Ok(routes::router(config, AppState { leptos_options, pool }, store, limits))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
