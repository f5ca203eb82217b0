//! `sandbox`: serves a fake Pipedrive and a fake Brevo on loopback ports until Ctrl-C / SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pipebridge_sandbox::pipedrive::{OAuthApp, Plan};
use pipebridge_sandbox::{Config, brevo, pipedrive};

/// Local stand-ins for Pipedrive and Brevo, for tests, benchmarks and the demo.
#[derive(Debug, Parser)]
#[command(name = "sandbox", version)]
struct Args {
    /// Address of the fake Pipedrive (API v1 and v2, OAuth server, admin API under /_sandbox/).
    #[arg(long, env = "SANDBOX_PIPEDRIVE_ADDR", default_value = "127.0.0.1:4010")]
    pipedrive_addr: SocketAddr,
    /// Address of the fake Brevo (/v3/..., admin API under /_sandbox/).
    #[arg(long, env = "SANDBOX_BREVO_ADDR", default_value = "127.0.0.1:4020")]
    brevo_addr: SocketAddr,
    /// Persons in the generated company (organizations, deals, activities and leads scale with it).
    #[arg(long = "seed", env = "SANDBOX_SEED", default_value_t = 50)]
    seed_persons: usize,
    /// Deals in the generated company (default: one per person).
    #[arg(long, env = "SANDBOX_SEED_DEALS")]
    seed_deals: Option<usize>,
    /// Activities in the generated company (default: two per person).
    #[arg(long, env = "SANDBOX_SEED_ACTIVITIES")]
    seed_activities: Option<usize>,
    /// Random seed of the generated company: same seed and size, same data.
    #[arg(long, env = "SANDBOX_RNG_SEED", default_value_t = 42)]
    rng_seed: u64,
    /// The Pipedrive admin user's API token.
    #[arg(long, env = "SANDBOX_PIPEDRIVE_API_TOKEN", default_value = pipedrive::DEFAULT_API_TOKEN)]
    pipedrive_api_token: String,
    /// OAuth client id of the registered app.
    #[arg(long, env = "SANDBOX_OAUTH_CLIENT_ID", default_value = pipedrive::DEFAULT_CLIENT_ID)]
    oauth_client_id: String,
    /// OAuth client secret of the registered app.
    #[arg(long, env = "SANDBOX_OAUTH_CLIENT_SECRET", default_value = pipedrive::DEFAULT_CLIENT_SECRET)]
    oauth_client_secret: String,
    /// Redirect URIs of the registered app (repeat or separate with commas).
    #[arg(
        long,
        env = "SANDBOX_OAUTH_REDIRECT_URIS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:3000/oauth/pipedrive/callback"
    )]
    oauth_redirect_uri: Vec<String>,
    /// Lifetime of OAuth access tokens, in seconds (Pipedrive: 3600).
    #[arg(long, env = "SANDBOX_ACCESS_TOKEN_TTL", default_value_t = 3600)]
    access_token_ttl: i64,
    /// The company's Pipedrive plan (burst limits and daily budget multiplier).
    #[arg(long, env = "SANDBOX_PLAN", value_enum, default_value = "growth")]
    plan: Plan,
    /// Seats (the daily token budget is 30,000 × plan multiplier × seats).
    #[arg(long, env = "SANDBOX_SEATS", default_value_t = 5)]
    seats: u32,
    /// Turn every rate limit off (Pipedrive and Brevo).
    #[arg(long, env = "SANDBOX_NO_RATE_LIMITS")]
    no_rate_limits: bool,
    /// Replace the plan's Pipedrive burst limit (requests per 2 s per token).
    #[arg(long, env = "SANDBOX_BURST_LIMIT")]
    burst_limit: Option<u32>,
    /// Replace the daily Pipedrive token budget.
    #[arg(long, env = "SANDBOX_DAILY_BUDGET")]
    daily_budget: Option<u64>,
    /// 429s within a minute after which a token is blocked with an HTML 403.
    #[arg(long, env = "SANDBOX_BLOCK_AFTER_429S", default_value_t = 20)]
    block_after_429s: u32,
    /// How long such a block lasts, in seconds.
    #[arg(long, env = "SANDBOX_BLOCK_SECONDS", default_value_t = 600)]
    block_seconds: u64,
    /// Speed-up of documented delays (webhook retries 3/30/150 s, 30-minute bans, 3-day deletion).
    #[arg(long, env = "SANDBOX_TIME_SCALE", default_value_t = 1.0)]
    time_scale: f64,
    /// Webhook delivery timeout in seconds (Pipedrive: 10).
    #[arg(long, env = "SANDBOX_WEBHOOK_TIMEOUT", default_value_t = 10)]
    webhook_timeout: u64,
    /// Brevo API keys to accept (each is its own account); the built-in demo key is always accepted.
    #[arg(long, env = "SANDBOX_BREVO_API_KEYS", value_delimiter = ',')]
    brevo_api_key: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let a = Args::parse();
    let mut brevo_settings = brevo::Settings::default();
    brevo_settings.api_keys.extend(a.brevo_api_key);
    brevo_settings.rate_limits = !a.no_rate_limits;
    let config = Config {
        pipedrive_addr: a.pipedrive_addr,
        brevo_addr: a.brevo_addr,
        pipedrive: pipedrive::Settings {
            seed_persons: a.seed_persons,
            seed_deals: a.seed_deals,
            seed_activities: a.seed_activities,
            rng_seed: a.rng_seed,
            api_token: a.pipedrive_api_token,
            oauth_apps: vec![OAuthApp {
                client_id: a.oauth_client_id,
                client_secret: a.oauth_client_secret,
                redirect_uris: a.oauth_redirect_uri,
                name: "pipebridge (local)".into(),
            }],
            access_token_ttl: time::Duration::seconds(a.access_token_ttl),
            plan: a.plan,
            seats: a.seats,
            rate_limits: !a.no_rate_limits,
            burst_limit: a.burst_limit,
            daily_budget: a.daily_budget,
            block_after_429s: a.block_after_429s,
            block_for: Duration::from_secs(a.block_seconds),
            time_scale: a.time_scale,
            webhook_timeout: Duration::from_secs(a.webhook_timeout),
        },
        brevo: brevo_settings,
    };
    let running = pipebridge_sandbox::start(config).await?;
    tracing::info!(pipedrive = %running.pipedrive_url, brevo = %running.brevo_url, "sandbox serving; Ctrl-C stops");
    println!("pipedrive sandbox: {}", running.pipedrive_url);
    println!("brevo sandbox:     {}", running.brevo_url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
