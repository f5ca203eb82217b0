//! The job queue against a real PostgreSQL (a fresh database per test).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipebridge::queue::{self, Handler, Job, JobError, NewJob, Outcome, Worker, WorkerSettings};
use serde_json::json;
use sqlx::PgPool;

fn settings() -> WorkerSettings {
    WorkerSettings {
        concurrency: 4,
        lease: Duration::from_secs(30),
        poll_interval: Duration::from_millis(20),
        shutdown_grace: Duration::from_secs(5),
    }
}

/// A handler that runs a closure.
struct Func<F>(F);

impl<F> Handler for Func<F>
where
    F: Fn(&Job) -> Result<(), JobError> + Send + Sync + 'static,
{
    fn run<'a>(&'a self, job: &'a Job) -> queue::HandlerFuture<'a> {
        Box::pin(async move { (self.0)(job) })
    }
}

/// One run: job id, concurrency key, start, end.
type Run = (i64, Option<String>, Instant, Instant);

/// Records every run with its start and end, and sleeps a little to make overlaps possible.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Run>>>);

impl Handler for Recorder {
    fn run<'a>(&'a self, job: &'a Job) -> queue::HandlerFuture<'a> {
        Box::pin(async move {
            let start = Instant::now();
            tokio::time::sleep(Duration::from_millis(15)).await;
            self.0.lock().unwrap().push((
                job.id,
                job.concurrency_key.clone(),
                start,
                Instant::now(),
            ));
            Ok(())
        })
    }
}

async fn state(pool: &PgPool, id: i64) -> (String, i32, Option<String>) {
    sqlx::query_as("select state, attempts, last_error from jobs where id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn dedupe_keys_hold_while_queued_or_running(pool: PgPool) {
    let job = NewJob::new("sync", json!({})).dedupe("sync:t1");
    let first = queue::enqueue(&pool, &job).await.unwrap().expect("enqueued");
    assert_eq!(queue::enqueue(&pool, &job).await.unwrap(), None, "same key while queued");
    let worker = Worker::new(pool.clone(), settings()).register("sync", Func(|_: &Job| Ok(())));
    let (ran, outcome) = worker.run_next_job().await.unwrap().unwrap();
    assert_eq!((ran.id, outcome), (first, Outcome::Succeeded));
    assert!(queue::enqueue(&pool, &job).await.unwrap().is_some(), "after it finished, again");

    // Enqueued in the transaction of the change that causes it: rolled back together.
    let mut tx = pool.begin().await.unwrap();
    queue::enqueue(&mut *tx, &NewJob::new("other", json!({}))).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    let others: i64 = sqlx::query_scalar("select count(*) from jobs where kind = 'other'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(others, 0);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn failures_back_off_then_die_and_snoozes_spend_nothing(pool: PgPool) {
    let id =
        queue::enqueue(&pool, &NewJob::new("flaky", json!({})).attempts(2)).await.unwrap().unwrap();
    let worker = Worker::new(pool.clone(), settings())
        .register("flaky", Func(|_: &Job| Err(JobError::Retryable("502 from Pipedrive".into()))));
    let (_, outcome) = worker.run_next_job().await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Retrying);
    let (st, attempts, error) = state(&pool, id).await;
    assert_eq!(
        (st.as_str(), attempts, error.as_deref()),
        ("queued", 1, Some("502 from Pipedrive"))
    );
    let wait: f64 = sqlx::query_scalar(
        "select extract(epoch from run_at - now())::float8 from jobs where id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(wait > 0.5, "backs off before the next attempt ({wait} s)");
    assert!(worker.run_next_job().await.unwrap().is_none(), "not due yet");
    sqlx::query("update jobs set run_at = now() where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let (_, outcome) = worker.run_next_job().await.unwrap().unwrap();
    assert_eq!(outcome, Outcome::Dead);
    assert_eq!(state(&pool, id).await.0, "dead", "kept for inspection");

    let id = queue::enqueue(&pool, &NewJob::new("fatal", json!({}))).await.unwrap().unwrap();
    let worker =
        worker.register("fatal", Func(|_: &Job| Err(JobError::Fatal("no Brevo key".into()))));
    assert_eq!(worker.run_next_job().await.unwrap().unwrap().1, Outcome::Dead);
    assert_eq!(state(&pool, id).await.1, 1, "fatal errors are not retried");

    let id = queue::enqueue(&pool, &NewJob::new("limited", json!({}))).await.unwrap().unwrap();
    let worker =
        worker.register("limited", Func(|_: &Job| Err(JobError::Snooze(Duration::from_secs(60)))));
    assert_eq!(worker.run_next_job().await.unwrap().unwrap().1, Outcome::Snoozed);
    assert_eq!(state(&pool, id).await, ("queued".into(), 0, None), "a snooze spends no attempt");

    let id = queue::enqueue(&pool, &NewJob::new("unknown.kind", json!({}))).await.unwrap().unwrap();
    assert_eq!(worker.run_next_job().await.unwrap().unwrap().1, Outcome::Dead);
    assert!(state(&pool, id).await.2.unwrap().contains("no handler"));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_dead_workers_job_runs_again_after_its_lease(pool: PgPool) {
    let id = queue::enqueue(&pool, &NewJob::new("sync", json!({}))).await.unwrap().unwrap();
    // A worker claims it with a 1 s lease and dies (no heartbeat, no result).
    let claimed =
        queue::claim(&pool, "dead-worker", Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!(claimed.id, id);
    let worker = Worker::new(pool.clone(), settings()).register("sync", Func(|_: &Job| Ok(())));
    assert!(worker.run_next_job().await.unwrap().is_none(), "held while the lease lasts");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (job, outcome) = worker.run_next_job().await.unwrap().unwrap();
    assert_eq!((job.id, job.attempts, outcome), (id, 2, Outcome::Succeeded));
    // The dead worker's late result is refused.
    assert!(!queue::complete(&pool, id, "dead-worker").await.unwrap());
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn heartbeats_keep_a_long_job(pool: PgPool) {
    let id = queue::enqueue(&pool, &NewJob::new("long", json!({}))).await.unwrap().unwrap();
    struct Slow;
    impl Handler for Slow {
        fn run<'a>(&'a self, _: &'a Job) -> queue::HandlerFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(4000)).await;
                Ok(())
            })
        }
    }
    let short = WorkerSettings { lease: Duration::from_millis(1500), ..settings() };
    let worker = Worker::new(pool.clone(), short.clone()).register("long", Slow);
    let other = Worker::new(pool.clone(), short).register("long", Slow);
    let running = tokio::spawn(async move { worker.run_next_job().await });
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        other.run_next_job().await.unwrap().is_none(),
        "renewed: not claimable at twice the lease"
    );
    let (job, outcome) = running.await.unwrap().unwrap().unwrap();
    assert_eq!((job.id, outcome), (id, Outcome::Succeeded));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn two_consumers_never_share_a_job_or_a_concurrency_key(pool: PgPool) {
    // Two consumers with their own connection pools, as two processes would have.
    let options = pool.connect_options().as_ref().clone();
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_with(options)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..60 {
        let tenant = format!("sync:tenant-{}", i % 3);
        ids.push(
            queue::enqueue(&pool, &NewJob::new("sync", json!({"i": i})).concurrency(tenant))
                .await
                .unwrap()
                .unwrap(),
        );
    }
    let recorder = Recorder::default();
    let a = Worker::new(pool.clone(), settings()).register("sync", recorder.clone());
    let b = Worker::new(other_pool, settings()).register("sync", recorder.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let ha = tokio::spawn(a.run(stop_rx.clone()));
    let hb = tokio::spawn(b.run(stop_rx));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from jobs where state <> 'succeeded'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_tx.send(true).unwrap();
    ha.await.unwrap();
    hb.await.unwrap();

    let runs = recorder.0.lock().unwrap().clone();
    let mut per_job: HashMap<i64, usize> = HashMap::new();
    for (id, ..) in &runs {
        *per_job.entry(*id).or_default() += 1;
    }
    assert_eq!(per_job.len(), 60, "every job ran");
    assert!(per_job.values().all(|n| *n == 1), "no job ran twice");
    let mut by_key: HashMap<String, Vec<(Instant, Instant)>> = HashMap::new();
    for (_, key, start, end) in runs {
        by_key.entry(key.unwrap()).or_default().push((start, end));
    }
    for (key, mut spans) in by_key {
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0, "two jobs of {key} overlapped");
        }
    }
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn shutdown_releases_what_is_still_running(pool: PgPool) {
    let id = queue::enqueue(&pool, &NewJob::new("forever", json!({}))).await.unwrap().unwrap();
    struct Forever;
    impl Handler for Forever {
        fn run<'a>(&'a self, _: &'a Job) -> queue::HandlerFuture<'a> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            })
        }
    }
    let s =
        WorkerSettings { shutdown_grace: Duration::from_millis(200), concurrency: 1, ..settings() };
    let worker = Worker::new(pool.clone(), s).register("forever", Forever);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state(&pool, id).await.0, "running");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stops within the grace")
        .unwrap();
    assert_eq!(
        state(&pool, id).await,
        ("queued".into(), 0, None),
        "back in the queue, attempt not spent"
    );
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn held_tenants_jobs_wait_until_released(pool: PgPool) {
    let done = pipebridge::accounts::sign_up(
        &pool,
        &pipebridge::domain::Email::parse("ann@example.com").unwrap(),
        pipebridge::domain::Password::parse_new("correct horse battery").unwrap(),
        &pipebridge::domain::CompanyName::parse("Acme").unwrap(),
    )
    .await
    .unwrap();
    let tenant = done.tenant_id;
    queue::hold(&pool, tenant, "paused").await.unwrap();
    let held = queue::enqueue(&pool, &NewJob::new("sync", json!({})).tenant(tenant))
        .await
        .unwrap()
        .unwrap();
    let free = queue::enqueue(&pool, &NewJob::new("sync", json!({}))).await.unwrap().unwrap();
    let worker = Worker::new(pool.clone(), settings()).register("sync", Func(|_: &Job| Ok(())));
    assert_eq!(worker.run_next_job().await.unwrap().unwrap().0.id, free, "other work goes on");
    assert!(worker.run_next_job().await.unwrap().is_none(), "the held tenant's job waits");
    assert_eq!(state(&pool, held).await.0, "queued");
    queue::release(&pool, tenant, "paused").await.unwrap();
    assert_eq!(worker.run_next_job().await.unwrap().unwrap().0.id, held);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn each_period_is_scheduled_once_across_processes(pool: PgPool) {
    use pipebridge::queue::schedule;
    let every = Duration::from_secs(60);
    let now = time::OffsetDateTime::now_utc();
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        schedule::claim_tick(&pool, "sync", every, now),
        schedule::claim_tick(&other_pool, "sync", every, now)
    );
    assert!(a.unwrap() ^ b.unwrap(), "exactly one process claims the period");
    assert!(!schedule::claim_tick(&pool, "sync", every, now).await.unwrap());
    assert!(
        schedule::claim_tick(&pool, "sync", every, now + time::Duration::seconds(60))
            .await
            .unwrap(),
        "the next period"
    );
    assert!(
        schedule::claim_tick(&pool, "other", every, now).await.unwrap(),
        "schedules are independent"
    );

    // Two schedulers running side by side enqueue a probe job once per period.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let jobs = |_pool: PgPool| async { Ok(vec![NewJob::new("probe", json!({})).dedupe("probe")]) };
    let s1 = tokio::spawn(schedule::run(
        pool.clone(),
        "probe",
        Duration::from_millis(400),
        jobs,
        stop_rx.clone(),
    ));
    let s2 =
        tokio::spawn(schedule::run(other_pool, "probe", Duration::from_millis(400), jobs, stop_rx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_tx.send(true).unwrap();
    s1.await.unwrap();
    s2.await.unwrap();
    let probes: i64 = sqlx::query_scalar("select count(*) from jobs where kind = 'probe'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(probes, 1, "one period, one job");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn the_incremental_sync_is_scheduled_for_connected_mapped_tenants_only(pool: PgPool) {
    use pipebridge::sync::schedule;
    let sign_up = |email: &'static str| {
        let pool = pool.clone();
        async move {
            pipebridge::accounts::sign_up(
                &pool,
                &pipebridge::domain::Email::parse(email).unwrap(),
                pipebridge::domain::Password::parse_new("correct horse battery").unwrap(),
                &pipebridge::domain::CompanyName::parse("Co").unwrap(),
            )
            .await
            .unwrap()
            .tenant_id
        }
    };
    let (both, one, held) = (
        sign_up("a@example.com").await,
        sign_up("b@example.com").await,
        sign_up("c@example.com").await,
    );
    // Connected on both sides, but with no mapping saved yet: nothing to sync.
    let unmapped = sign_up("d@example.com").await;
    for (tenant, providers) in [
        (both, vec!["pipedrive", "brevo"]),
        (one, vec!["pipedrive"]),
        (held, vec!["pipedrive", "brevo"]),
        (unmapped, vec!["pipedrive", "brevo"]),
    ] {
        for p in providers {
            sqlx::query(
                "insert into connections (tenant_id, provider, auth_kind, status, api_base, account_label, secret, secret_last4)
                 values ($1, $2, 'api_key', 'connected', 'x', 'x', '\\x00', 'xxxx')",
            )
            .bind(tenant)
            .bind(p)
            .execute(&pool)
            .await
            .unwrap();
        }
    }
    for tenant in [both, one, held] {
        sqlx::query(
            "insert into mapping_versions (tenant_id, version, yaml) values ($1, 1, 'version: 1')",
        )
        .bind(tenant)
        .execute(&pool)
        .await
        .unwrap();
    }
    queue::hold(&pool, held, pipebridge::connections::HOLD_PIPEDRIVE_REAUTH).await.unwrap();
    let jobs = schedule::incremental_sync_jobs(&pool).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.tenant_id.unwrap()).collect::<Vec<_>>(), vec![both]);
    assert_eq!(jobs[0].kind, "sync.incremental");
    assert_eq!(jobs[0].concurrency_key.as_deref(), Some(format!("sync:{both}").as_str()));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_panic_fails_the_job_with_its_message_and_the_worker_goes_on(pool: PgPool) {
    let boom =
        queue::enqueue(&pool, &NewJob::new("boom", json!({})).attempts(1)).await.unwrap().unwrap();
    let fine = queue::enqueue(&pool, &NewJob::new("fine", json!({}))).await.unwrap().unwrap();
    let worker = Worker::new(pool.clone(), settings())
        .register("boom", Func(|_: &Job| panic!("index out of bounds in the handler")))
        .register("fine", Func(|_: &Job| Ok(())));
    // The running worker tasks, as a server runs them: one panicking job does not stop them.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run(stop_rx));
    for _ in 0..200 {
        let states: Vec<String> =
            sqlx::query_scalar("select state from jobs where id = any($1) order by id")
                .bind(vec![boom, fine])
                .fetch_all(&pool)
                .await
                .unwrap();
        if states == ["dead", "succeeded"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (st, attempts, error) = state(&pool, boom).await;
    assert_eq!((st.as_str(), attempts), ("dead", 1));
    assert_eq!(error.as_deref(), Some("the job panicked: index out of bounds in the handler"));
    assert_eq!(state(&pool, fine).await.0, "succeeded");
    // Still there for the next job.
    let later = queue::enqueue(&pool, &NewJob::new("fine", json!({}))).await.unwrap().unwrap();
    for _ in 0..200 {
        if state(&pool, later).await.0 == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state(&pool, later).await.0, "succeeded");
    stop_tx.send(true).unwrap();
    running.await.unwrap();
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_job_that_kills_its_worker_every_time_ends_dead(pool: PgPool) {
    let id =
        queue::enqueue(&pool, &NewJob::new("crash", json!({})).attempts(3)).await.unwrap().unwrap();
    // Three workers claim it in turn and die without a word (a lease of 50 ms, never renewed).
    for attempt in 1..=3 {
        let claimed = queue::claim(&pool, &format!("doomed-{attempt}"), Duration::from_millis(50))
            .await
            .unwrap()
            .expect("claimable again");
        assert_eq!((claimed.id, claimed.attempts), (id, attempt));
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    assert!(
        queue::claim(&pool, "next", Duration::from_secs(30)).await.unwrap().is_none(),
        "not run a fourth time"
    );
    let (st, attempts, error) = state(&pool, id).await;
    assert_eq!((st.as_str(), attempts), ("dead", 3));
    assert!(error.unwrap().contains("lease expired"));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_busy_key_does_not_stall_other_keys(pool: PgPool) {
    // One tenant's long run holds its key; twenty more of its jobs wait, queued before the others.
    queue::enqueue(&pool, &NewJob::new("long", json!({})).concurrency("sync:busy"))
        .await
        .unwrap()
        .unwrap();
    let running =
        queue::claim(&pool, "long-runner", Duration::from_secs(60)).await.unwrap().unwrap();
    assert_eq!(running.concurrency_key.as_deref(), Some("sync:busy"));
    for i in 0..20 {
        queue::enqueue(&pool, &NewJob::new("waiting", json!({"i": i})).concurrency("sync:busy"))
            .await
            .unwrap()
            .unwrap();
    }
    let other = queue::enqueue(&pool, &NewJob::new("other", json!({})).concurrency("sync:other"))
        .await
        .unwrap()
        .unwrap();
    let claimed = queue::claim(&pool, "worker", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the other tenant's job");
    assert_eq!(claimed.id, other);
    assert!(
        queue::claim(&pool, "worker", Duration::from_secs(60)).await.unwrap().is_none(),
        "the busy key's jobs wait"
    );
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn old_finished_jobs_and_periods_are_pruned(pool: PgPool) {
    let worker = Worker::new(pool.clone(), settings())
        .register("done", Func(|_: &Job| Ok(())))
        .register("bad", Func(|_: &Job| Err(JobError::Fatal("no".into()))));
    let old_done = queue::enqueue(&pool, &NewJob::new("done", json!({}))).await.unwrap().unwrap();
    let old_dead = queue::enqueue(&pool, &NewJob::new("bad", json!({}))).await.unwrap().unwrap();
    while worker.run_next_job().await.unwrap().is_some() {}
    sqlx::query("update jobs set finished_at = now() - interval '40 days'")
        .execute(&pool)
        .await
        .unwrap();
    let recent = queue::enqueue(&pool, &NewJob::new("done", json!({}))).await.unwrap().unwrap();
    worker.run_next_job().await.unwrap().unwrap();
    let waiting = queue::enqueue(
        &pool,
        &NewJob::new("done", json!({}))
            .at(time::OffsetDateTime::now_utc() + time::Duration::days(1)),
    )
    .await
    .unwrap()
    .unwrap();
    sqlx::query("insert into schedule_ticks (name, tick, created_at) values ('s', 1, now() - interval '40 days'), ('s', 2, now())").execute(&pool).await.unwrap();

    let (jobs, ticks) = queue::prune(&pool, Duration::from_secs(30 * 86_400)).await.unwrap();
    assert_eq!((jobs, ticks), (2, 1));
    let left: Vec<i64> =
        sqlx::query_scalar("select id from jobs order by id").fetch_all(&pool).await.unwrap();
    assert_eq!(left, vec![recent, waiting]);
    assert!(!left.contains(&old_done) && !left.contains(&old_dead));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn pruning_keeps_open_record_errors_and_recent_runs(pool: PgPool) {
    let tenant = pipebridge::accounts::sign_up(
        &pool,
        &pipebridge::domain::Email::parse("p@example.com").unwrap(),
        pipebridge::domain::Password::parse_new("correct horse battery").unwrap(),
        &pipebridge::domain::CompanyName::parse("Co").unwrap(),
    )
    .await
    .unwrap()
    .tenant_id;
    let run = |age_days: i32, status: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "insert into sync_runs (tenant_id, mode, trigger, status, started_at, finished_at)
                 values ($1, 'incremental', 'schedule', $3, now() - make_interval(days => $2), case when $3 = 'running' then null else now() - make_interval(days => $2) end)
                 returning id",
            )
            .bind(tenant)
            .bind(age_days)
            .bind(status)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (old, recent, running) =
        (run(40, "succeeded").await, run(1, "failed").await, run(40, "running").await);
    for (status, age) in [("resolved", 40), ("open", 40), ("resolved", 1)] {
        sqlx::query(
            "insert into record_errors (tenant_id, run_id, entity, pipedrive_id, reason, status, created_at)
             values ($1, $2, 'person', '1', 'r', $3, now() - make_interval(days => $4))",
        )
        .bind(tenant)
        .bind(old)
        .bind(status)
        .bind(age)
        .execute(&pool)
        .await
        .unwrap();
    }
    let pruned =
        pipebridge::maintenance::prune(&pool, Duration::from_secs(30 * 86_400)).await.unwrap();
    assert_eq!((pruned.sync_runs, pruned.record_errors), (1, 1));
    let runs: Vec<i64> =
        sqlx::query_scalar("select id from sync_runs order by id").fetch_all(&pool).await.unwrap();
    assert_eq!(runs, vec![recent, running]);
    let errors: Vec<String> = sqlx::query_scalar("select status from record_errors order by id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(errors, vec!["open", "resolved"], "the old open error stays, for its retry");
}
