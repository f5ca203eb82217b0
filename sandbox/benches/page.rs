//! How fast the fake Pipedrive serves a 500-record page with rate limits off, so that benchmarks of
//! the product measure the product, not the sandbox. Starts the sandbox in-process with 100,000
//! persons and pulls every page of `/api/v2/persons?limit=500` over HTTP on loopback, twice
//! (sorted by id, then by update_time); prints per-page latency percentiles and the seed time.
//!
//! Run: `cargo bench -p pipebridge-sandbox --bench page` (see docs/benchmarks.md).

use std::time::{Duration, Instant};

use pipebridge_sandbox::{Config, start};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PERSONS: usize = 100_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs bench binaries too (without `--bench`): not a test.
    if !std::env::args().any(|a| a == "--bench") {
        println!("a benchmark: run it with `cargo bench -p pipebridge-sandbox --bench page`");
        return Ok(());
    }
    let mut config = Config::default();
    config.pipedrive.seed_persons = PERSONS;
    config.pipedrive.rate_limits = false;
    let seeded = Instant::now();
    let sb = start(config).await?;
    let seed_time = seeded.elapsed();
    let client = reqwest::Client::new();
    let token = pipebridge_sandbox::pipedrive::DEFAULT_API_TOKEN;
    println!("sandbox page benchmark: {PERSONS} persons seeded in {seed_time:.2?}");
    for sort in ["id", "update_time"] {
        let mut times = Vec::new();
        let mut cursor: Option<String> = None;
        let mut records = 0usize;
        let mut size = 0;
        loop {
            let mut url = format!("{}/api/v2/persons?limit=500&sort_by={sort}", sb.pipedrive_url);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let started = Instant::now();
            let bytes = client.get(&url).header("x-api-token", token).send().await?.bytes().await?;
            times.push(started.elapsed());
            size = size.max(bytes.len());
            // Decoding is the client's cost, outside the timed part.
            let body: serde_json::Value = serde_json::from_slice(&bytes)?;
            records += body["data"].as_array().map_or(0, Vec::len);
            match body["additional_data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        times.sort();
        println!(
            "sort_by={sort:<12} pages={:>4} records={records:>6} max_page_bytes={size:>7}  p50={:>8.2?}  p95={:>8.2?}  max={:>8.2?}  (request to last byte, loopback)",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.95),
            times[times.len() - 1],
        );
    }
    Ok(())
}
