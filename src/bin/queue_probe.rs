//! `pipebridge-queue-probe`: a queue worker process with probe handlers, for the multi-process
//! queue tests (tests/queue_processes.rs) and for checking a deployment's queue by hand:
//! `DATABASE_URL` and `PROBE_LEASE_MS` from the environment; handles `probe.record` (records its
//! run in `queue_probe`, sleeping `payload.sleep_ms`) and `probe.hang` (sleeps for an hour, unless
//! `PROBE_HANG_RETURNS` is set: then returns at once). With `PROBE_SECRET_KEY` (the base64 key
//! the connections were sealed with) it also runs sync jobs, as the server's workers do, for the
//! sync crash tests (tests/sync.rs).

use std::time::Duration;

use pipebridge::queue::{Handler, HandlerFuture, Job, Worker, WorkerSettings};
use sqlx::PgPool;

struct Record(PgPool, String);

impl Handler for Record {
    fn run<'a>(&'a self, job: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            let sleep = job.payload["sleep_ms"].as_u64().unwrap_or(10);
            let started = time::OffsetDateTime::now_utc();
            tokio::time::sleep(Duration::from_millis(sleep)).await;
            sqlx::query("insert into queue_probe (job_id, concurrency_key, owner, started, ended) values ($1, $2, $3, $4, now())")
                .bind(job.id)
                .bind(&job.concurrency_key)
                .bind(&self.1)
                .bind(started)
                .execute(&self.0)
                .await
                .map_err(|e| pipebridge::queue::JobError::Retryable(e.to_string()))?;
            Ok(())
        })
    }
}

struct Hang(bool);

impl Handler for Hang {
    fn run<'a>(&'a self, _: &'a Job) -> HandlerFuture<'a> {
        Box::pin(async move {
            if !self.0 {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Ok(())
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")?;
    let lease = Duration::from_millis(
        std::env::var("PROBE_LEASE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
    );
    let pool = PgPool::connect(&url).await?;
    let settings = WorkerSettings {
        concurrency: 3,
        lease,
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(1),
    };
    let worker = Worker::new(pool.clone(), settings);
    let owner = worker.owner().to_owned();
    println!("worker {owner} ready");
    let mut worker = worker
        .register("probe.record", Record(pool.clone(), owner))
        .register("probe.hang", Hang(std::env::var("PROBE_HANG_RETURNS").is_ok()));
    if let Ok(key) = std::env::var("PROBE_SECRET_KEY") {
        use pipebridge::sync;
        let key = pipebridge::secrets::SecretKey::from_base64(&key)?;
        let limits = std::sync::Arc::new(
            pipebridge::pipedrive::limits::Registry::new(80, 10_000_000, 0.1)
                .with_brevo_rates(1_000, 1_000_000)
                .with_retry_base(Duration::from_millis(10)),
        );
        // Connections keep their own API base: the providers matter for OAuth refreshes only.
        let providers = pipebridge::connections::Providers::sandbox("http://127.0.0.1:3000");
        let services = std::sync::Arc::new(sync::Services::new(pool, key, providers, limits));
        worker = worker
            .register(sync::JOB_SYNC, sync::SyncHandler::new(services.clone()))
            .register(sync::JOB_FULL_RESYNC, sync::SyncHandler::new(services));
    }
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    worker.run(stop_rx).await;
    Ok(())
}
