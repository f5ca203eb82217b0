//! How close the Pipedrive client gets to the burst limit: pages per second pulled through the
//! sandbox under a limit of 80 requests per 2 s (Pipedrive's OAuth Lite limit), against the bound
//! of 40 pages/s; the goal is at least 95% of it with no 429. And the peak memory of this process
//! while it streams every person (the sandbox runs in a child process, so the figure is the
//! client's alone); the goal is under 100 MB for 1,000,000 persons.
//!
//! Run: `cargo bench -p pipebridge --bench pipedrive_pages` (see docs/benchmarks.md).
//! `PIPEBRIDGE_BENCH_PERSONS` sets the company's size (default 1000000).

mod common;

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use pipebridge::pipedrive::client::{ListQuery, PipedriveClient, StaticToken};
use pipebridge::pipedrive::limits::{Budget, TokenLimiter};
use pipebridge::pipedrive::models::Person;
use pipebridge::secrets::Secret;

const BURST: u32 = 80;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if !common::is_bench_run() {
        return Ok(());
    }
    let persons: usize = std::env::var("PIPEBRIDGE_BENCH_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let sb = common::sandbox(&[
        "--seed".into(),
        persons.to_string(),
        "--burst-limit".into(),
        BURST.to_string(),
        "--daily-budget".into(),
        "100000000".into(),
    ])?;
    let token = Secret::new("sandbox-pipedrive-api-token-0000000000");
    let client = PipedriveClient::new(
        &sb.pipedrive_url,
        Arc::new(StaticToken(token)),
        Arc::new(TokenLimiter::new(BURST)),
        Arc::new(Budget::new(100_000_000, 0.1)),
    );
    // The sandbox prepares its tables on the first request (two seconds for 100,000 persons):
    // one warm-up request, outside the timing, as a long-running Pipedrive would be.
    let http = reqwest::Client::new();
    http.get(format!("{}/api/v2/persons?limit=1", sb.pipedrive_url))
        .header("x-api-token", "sandbox-pipedrive-api-token-0000000000")
        .send()
        .await?;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    http.delete(format!("{}/_sandbox/requests", sb.pipedrive_url)).send().await?;
    let rss_before = common::mem_kib("VmRSS:");
    common::reset_peak();
    let started = Instant::now();
    let mut pages = 0u32;
    let mut records = 0usize;
    let mut stream = Box::pin(client.list::<Person>("/api/v2/persons", ListQuery::default()));
    while let Some(page) = stream.next().await {
        let page = page?;
        pages += 1;
        records += page.items.len();
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = common::mem_kib("VmHWM:");
    let log: serde_json::Value =
        reqwest::get(format!("{}/_sandbox/requests", sb.pipedrive_url)).await?.json().await?;
    let limited = log.as_array().map_or(0, |l| l.iter().filter(|r| r["status"] == 429).count());
    let bound = f64::from(BURST) / 2.0;
    let rate = f64::from(pages) / secs;
    let report = format!(
        "pipedrive client pages — {date}\n\
         {pages} pages, {records} persons (of {persons} seeded, deleted ones are not listed) in {secs:.1} s\n\
         {rate:.2} pages/s against a bound of {bound:.0} pages/s = {share:.1}% (goal: >= 95%); 429 answers: {limited}\n\
         memory of this process (sandbox in a child process): {before:.1} MiB before the pull, peak {peak:.1} MiB during it (goal: < 100 MB)\n",
        date = time::OffsetDateTime::now_utc().date(),
        share = rate / bound * 100.0,
        before = rss_before as f64 / 1024.0,
        peak = peak as f64 / 1024.0,
    );
    println!("{report}");
    if persons == 1_000_000 {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks/pipedrive-pages.txt"),
            &report,
        )?;
    }
    Ok(())
}
