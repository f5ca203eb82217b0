//! The queue across processes: two worker processes (src/bin/queue_probe.rs) never run the same
//! job or two jobs of one concurrency key at once; a worker killed with SIGKILL mid-job has its
//! job run again by another process once the lease expires.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pipebridge::queue::{self, NewJob};
use serde_json::json;
use sqlx::PgPool;

fn worker_binary() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_pipebridge-queue-probe").into()
}

fn spawn_worker(pool: &PgPool, env: &[(&str, &str)]) -> Child {
    let db = pool.connect_options().get_database().unwrap().to_owned();
    let base = std::env::var("DATABASE_URL").unwrap();
    let url = format!("{}/{db}", base.rsplit_once('/').unwrap().0);
    let mut cmd = Command::new(worker_binary());
    cmd.env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap_or_else(|e| panic!("starting {}: {e}", worker_binary().display()))
}

async fn probe_table(pool: &PgPool) {
    sqlx::query("create table queue_probe (job_id bigint, concurrency_key text, owner text, started timestamptz, ended timestamptz)")
        .execute(pool)
        .await
        .unwrap();
}

async fn wait_until(pool: &PgPool, sql: &str, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        let done: bool = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if done {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn two_processes_share_the_queue_safely(pool: PgPool) {
    probe_table(&pool).await;
    for i in 0..45 {
        let key = format!("sync:tenant-{}", i % 3);
        queue::enqueue(
            &pool,
            &NewJob::new("probe.record", json!({"sleep_ms": 20})).concurrency(key),
        )
        .await
        .unwrap();
    }
    let mut a = spawn_worker(&pool, &[]);
    let mut b = spawn_worker(&pool, &[]);
    let finished = wait_until(
        &pool,
        "select count(*) = 0 from jobs where state <> 'succeeded'",
        Duration::from_secs(60),
    )
    .await;
    for w in [&mut a, &mut b] {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    assert!(finished, "all jobs ran");

    let runs: Vec<(i64, i64)> =
        sqlx::query_as("select job_id, count(*) from queue_probe group by job_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(runs.len(), 45);
    assert!(runs.iter().all(|(_, n)| *n == 1), "no job ran twice: {runs:?}");
    let owners: i64 = sqlx::query_scalar("select count(distinct owner) from queue_probe")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(owners, 2, "both processes took work");
    let overlaps: i64 = sqlx::query_scalar(
        "select count(*) from queue_probe x join queue_probe y
           on x.concurrency_key = y.concurrency_key and x.job_id < y.job_id
          and x.started < y.ended and y.started < x.ended",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(overlaps, 0, "two jobs of one tenant never ran at once");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_job_whose_worker_is_killed_runs_again_after_its_lease(pool: PgPool) {
    probe_table(&pool).await;
    let id = queue::enqueue(&pool, &NewJob::new("probe.hang", json!({}))).await.unwrap().unwrap();
    let mut doomed = spawn_worker(&pool, &[("PROBE_LEASE_MS", "1500")]);
    assert!(
        wait_until(
            &pool,
            &format!("select state = 'running' from jobs where id = {id}"),
            Duration::from_secs(30)
        )
        .await
    );
    let first_owner: String = sqlx::query_scalar("select lease_owner from jobs where id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    // SIGKILL: no shutdown, no release, no result.
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let mut rescuer =
        spawn_worker(&pool, &[("PROBE_LEASE_MS", "1500"), ("PROBE_HANG_RETURNS", "1")]);
    let rerun = wait_until(
        &pool,
        &format!("select state = 'succeeded' from jobs where id = {id}"),
        Duration::from_secs(30),
    )
    .await;
    rescuer.kill().unwrap();
    rescuer.wait().unwrap();
    assert!(rerun, "the job ran again after the lease expired");
    let (attempts, owner): (i32, Option<String>) =
        sqlx::query_as("select attempts, lease_owner from jobs where id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(attempts, 2);
    assert_ne!(owner.as_deref(), Some(first_owner.as_str()));
}
