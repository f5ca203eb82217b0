//! How close the Pipedrive client gets to the burst limit: pages per second pulled through the
//! sandbox under a limit of 80 requests per 2 s (Pipedrive's OAuth Lite limit), against the bound
//! of 40 pages/s; the goal is at least 95% of it with no 429. Also the process's resident memory
//! before and after the pull (streaming pages: it should not grow with the data).
//!
//! Run: `cargo bench -p pipebridge --bench pipedrive_pages` (see docs/benchmarks.md).

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use pipebridge::pipedrive::client::{ListQuery, PipedriveClient, StaticToken};
use pipebridge::pipedrive::limits::{Budget, TokenLimiter};
use pipebridge::pipedrive::models::Person;
use pipebridge::secrets::Secret;

const PERSONS: usize = 100_000;
const BURST: u32 = 80;

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut config = pipebridge_sandbox::Config::default();
    config.pipedrive.seed_persons = PERSONS;
    config.pipedrive.burst_limit = Some(BURST);
    config.pipedrive.daily_budget = Some(10_000_000);
    let sb = pipebridge_sandbox::start(config).await?;
    let token = Secret::new(pipebridge_sandbox::pipedrive::DEFAULT_API_TOKEN);
    let client = PipedriveClient::new(
        &sb.pipedrive_url,
        Arc::new(StaticToken(token)),
        Arc::new(TokenLimiter::new(BURST)),
        Arc::new(Budget::new(10_000_000, 0.1)),
    );
    let rss_before = rss_kib("VmRSS:");
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
    let rss_after = rss_kib("VmRSS:");
    let log: serde_json::Value = reqwest::get(format!("{}/_sandbox/requests", sb.pipedrive_url)).await?.json().await?;
    let limited = log.as_array().map_or(0, |l| l.iter().filter(|r| r["status"] == 429).count());
    let bound = f64::from(BURST) / 2.0;
    let rate = f64::from(pages) / secs;
    println!("pipedrive client pages: {pages} pages, {records} persons in {secs:.1} s");
    println!("  {rate:.2} pages/s against a bound of {bound:.0} pages/s = {:.1}% (goal: >= 95%), 429 answers: {limited}", rate / bound * 100.0);
    println!("  resident memory: {} MiB before the pull, {} MiB after (sandbox with {PERSONS} persons in the same process)", rss_before / 1024, rss_after / 1024);
    Ok(())
}
