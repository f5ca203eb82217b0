//! The Pipedrive client against the sandbox over HTTP: streaming pages, 429 storms and 5xx
//! answers survived with nothing lost, the daily budget waited on instead of spent into 429s,
//! OAuth tokens refreshed mid-pagination, and a revoked grant marking the connection.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures_util::StreamExt;
use pipebridge::accounts;
use pipebridge::connections::{self, OAuthCredentials, Providers};
use pipebridge::domain::{CompanyName, Email, Password};
use pipebridge::pipedrive::PipedriveError;
use pipebridge::pipedrive::client::{
    Credentials, ListQuery, PipedriveClient, RetrySettings, StaticToken,
};
use pipebridge::pipedrive::limits::{Budget, TokenLimiter};
use pipebridge::pipedrive::models::Person;
use pipebridge::pipedrive::oauth::PipedriveOAuth;
use pipebridge::secrets::{Secret, SecretKey};
use pipebridge_sandbox::pipedrive::{DEFAULT_API_TOKEN, DEFAULT_CLIENT_ID};
use serde_json::json;
use sqlx::PgPool;

async fn sandbox(
    persons: usize,
    tune: impl FnOnce(&mut pipebridge_sandbox::pipedrive::Settings),
) -> pipebridge_sandbox::Running {
    let mut config = pipebridge_sandbox::Config::default();
    config.pipedrive.seed_persons = persons;
    tune(&mut config.pipedrive);
    pipebridge_sandbox::start(config).await.unwrap()
}

fn token_client(sb: &pipebridge_sandbox::Running, budget: u64) -> PipedriveClient {
    PipedriveClient::new(
        &sb.pipedrive_url,
        Arc::new(StaticToken(Secret::new(DEFAULT_API_TOKEN))),
        Arc::new(TokenLimiter::new(40)),
        Arc::new(Budget::new(budget, 0.0)),
    )
    .with_retry(RetrySettings {
        attempts: 8,
        base_delay: std::time::Duration::from_millis(20),
        max_rate_limited: 30,
    })
}

async fn all_ids(client: &PipedriveClient, limit: u32) -> Result<BTreeSet<u64>, PipedriveError> {
    let mut ids = BTreeSet::new();
    let mut pages =
        Box::pin(client.list::<Person>(
            "/api/v2/persons",
            ListQuery { limit: Some(limit), ..Default::default() },
        ));
    while let Some(page) = pages.next().await {
        ids.extend(page?.items.iter().map(|p| p.id));
    }
    Ok(ids)
}

async fn admin(sb: &pipebridge_sandbox::Running, path: &str, body: serde_json::Value) {
    let res = reqwest::Client::new()
        .post(format!("{}{path}", sb.pipedrive_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{path}: {}", res.status());
}

#[tokio::test]
async fn pages_stream_everything_once_with_custom_fields_kept() {
    let sb = sandbox(1_234, |_| {}).await;
    let expected: BTreeSet<u64> =
        sb.pipedrive.world().persons.values().filter(|p| !p.is_deleted).map(|p| p.id).collect();
    let client = token_client(&sb, 1_000_000);
    assert_eq!(all_ids(&client, 500).await.unwrap(), expected);
    let mut first = Box::pin(
        client
            .list::<Person>("/api/v2/persons", ListQuery { limit: Some(50), ..Default::default() }),
    );
    let page = first.next().await.unwrap().unwrap();
    assert!(
        page.items.iter().any(|p| !p.custom_fields.is_empty()),
        "custom fields by their hash keys"
    );
    assert!(page.items.iter().all(|p| p.custom_fields.keys().all(|k| k.len() == 40)));
    assert!(page.items[0].other.contains_key("add_time"), "unknown fields are kept");
}

#[tokio::test]
async fn storms_of_429_and_a_fifth_of_5xx_lose_nothing() {
    let sb = sandbox(900, |_| {}).await;
    let client = token_client(&sb, 1_000_000);
    let expected = all_ids(&client, 100).await.unwrap();

    admin(&sb, "/_sandbox/faults", json!({"storm_429_seconds": 3})).await;
    assert_eq!(all_ids(&client, 100).await.unwrap(), expected, "after waiting out the storm");
    admin(&sb, "/_sandbox/faults", json!({"error_rate": 0.2})).await;
    // Small pages: ~35 requests, so a fifth failing is all but certain to show (0.8^35 < 0.04%).
    assert_eq!(all_ids(&client, 25).await.unwrap(), expected, "5xx answers retried");
    let log: serde_json::Value = reqwest::get(format!("{}/_sandbox/requests", sb.pipedrive_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> =
        log.as_array().unwrap().iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert!(statuses.contains(&429) && statuses.iter().any(|s| *s >= 500), "the faults did happen");
    assert!(!statuses.contains(&403), "never blocked for hammering");
}

#[tokio::test]
async fn an_exhausted_budget_waits_instead_of_calling() {
    let sb = sandbox(300, |_| {}).await;
    let client = token_client(&sb, 25);
    let err = all_ids(&client, 100).await.unwrap_err();
    assert!(matches!(err, PipedriveError::BudgetExhausted { .. }), "{err:?}");
    let log: serde_json::Value = reqwest::get(format!("{}/_sandbox/requests", sb.pipedrive_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        log.as_array().unwrap().len(),
        2,
        "two calls of cost 10 fit in 25; the third is not sent"
    );
}

#[tokio::test]
async fn the_burst_limit_is_never_exceeded() {
    let sb = sandbox(2_000, |s| s.burst_limit = Some(12)).await;
    let client = PipedriveClient::new(
        &sb.pipedrive_url,
        Arc::new(StaticToken(Secret::new(DEFAULT_API_TOKEN))),
        Arc::new(TokenLimiter::new(12)),
        Arc::new(Budget::new(1_000_000, 0.0)),
    );
    all_ids(&client, 100).await.unwrap();
    let log: serde_json::Value = reqwest::get(format!("{}/_sandbox/requests", sb.pipedrive_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.as_array().unwrap().iter().all(|r| r["status"] == 200), "no 429: {log}");
}

/// Signs up a tenant and connects it to the sandbox by OAuth, as the callback would.
async fn oauth_tenant(
    pool: &PgPool,
    sb: &pipebridge_sandbox::Running,
    key: &SecretKey,
) -> (accounts::Member, Providers) {
    let done = accounts::sign_up(
        pool,
        &Email::parse("ann@example.com").unwrap(),
        Password::parse_new("correct horse battery").unwrap(),
        &CompanyName::parse("Acme").unwrap(),
    )
    .await
    .unwrap();
    let member = accounts::authorize(pool, done.user_id, done.tenant_id).await.unwrap();
    let mut providers = Providers::sandbox("http://127.0.0.1:3000");
    providers.pipedrive_oauth.server = sb.pipedrive_url.clone();
    providers.pipedrive_api = sb.pipedrive_url.clone();
    oauth_tenant_connect(pool, sb, key, &member, &providers).await;
    (member, providers)
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn expired_access_token_refreshed_mid_pagination(pool: PgPool) {
    let sb = sandbox(1_000, |_| {}).await;
    let key = SecretKey::generate();
    let (member, providers) = oauth_tenant(&pool, &sb, &key).await;
    let (creds, base) =
        OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    let before = creds.current().await.unwrap();
    let client = PipedriveClient::new(
        &base,
        Arc::new(creds),
        Arc::new(TokenLimiter::new(80)),
        Arc::new(Budget::new(1_000_000, 0.0)),
    );
    let expected: BTreeSet<u64> =
        sb.pipedrive.world().persons.values().filter(|p| !p.is_deleted).map(|p| p.id).collect();

    let mut ids = BTreeSet::new();
    let mut pages =
        Box::pin(client.list::<Person>(
            "/api/v2/persons",
            ListQuery { limit: Some(100), ..Default::default() },
        ));
    let mut n = 0;
    while let Some(page) = pages.next().await {
        ids.extend(page.unwrap().items.iter().map(|p| p.id));
        n += 1;
        if n == 3 {
            // Every access token expires now: the next page gets a 401, refreshes, goes on.
            admin(&sb, "/_sandbox/oauth/expire", json!({})).await;
        }
    }
    assert_eq!(ids, expected, "nothing lost across the refresh");
    let (creds, _) =
        OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    assert!(creds.current().await.unwrap() != before, "the new token was stored");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_revoked_grant_marks_the_connection_for_reauthorization(pool: PgPool) {
    let sb = sandbox(200, |_| {}).await;
    let key = SecretKey::generate();
    let (member, providers) = oauth_tenant(&pool, &sb, &key).await;
    // The user uninstalls the app at Pipedrive: the refresh token (and its access tokens) die.
    let sealed: Vec<u8> =
        sqlx::query_scalar("select refresh_secret from connections where tenant_id = $1")
            .bind(member.tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let refresh = key.open(member.tenant_id, "connection.refresh", &sealed).unwrap();
    admin(&sb, "/_sandbox/oauth/revoke", json!({"token": refresh.expose()})).await;

    let (creds, base) =
        OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    let client = PipedriveClient::new(
        &base,
        Arc::new(creds),
        Arc::new(TokenLimiter::new(80)),
        Arc::new(Budget::new(1_000_000, 0.0)),
    );
    let err = all_ids(&client, 100).await.unwrap_err();
    assert!(matches!(err, PipedriveError::Unauthorized), "{err:?}");
    let list = connections::list(&pool, &member).await.unwrap();
    assert_eq!(list[0].status, "needs_reauthorization");
    assert!(list[0].last_error.as_deref().unwrap().contains("Connect Pipedrive again"));

    // The tenant's jobs wait until the user connects again.
    let job = pipebridge::queue::enqueue(
        &pool,
        &pipebridge::queue::NewJob::new("sync.incremental", json!({})).tenant(member.tenant_id),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(
        pipebridge::queue::claim(&pool, "w", std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    oauth_tenant_connect(&pool, &sb, &key, &member, &providers).await;
    let claimed = pipebridge::queue::claim(&pool, "w", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, job, "released by reconnecting");
    assert_eq!(connections::list(&pool, &member).await.unwrap()[0].status, "connected");
}

/// Connects (again) through the sandbox's OAuth server.
async fn oauth_tenant_connect(
    pool: &PgPool,
    sb: &pipebridge_sandbox::Running,
    key: &SecretKey,
    member: &accounts::Member,
    providers: &Providers,
) {
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = http
        .post(format!("{}/oauth/authorize", sb.pipedrive_url))
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", "http://127.0.0.1:3000/oauth/pipedrive/callback"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let code = location.split("code=").nth(1).unwrap();
    let tokens =
        PipedriveOAuth::new(&providers.pipedrive_oauth).unwrap().exchange(code).await.unwrap();
    connections::connect_pipedrive_oauth(pool, key, providers, member, tokens).await.unwrap();
}

#[tokio::test]
async fn v1_webhooks_leads_recents_and_merge() {
    use pipebridge::pipedrive::v1::NewWebhook;
    let sb = sandbox(300, |_| {}).await;
    let client = token_client(&sb, 1_000_000);

    let hook = client
        .create_webhook(&NewWebhook {
            subscription_url: "http://127.0.0.1:9/webhooks/pipedrive/t1",
            event_action: "*",
            event_object: "person",
            name: "pipebridge",
            http_auth_user: "pipebridge",
            http_auth_password: "s3cret",
        })
        .await
        .unwrap();
    assert_eq!((hook.event_action.as_str(), hook.version.as_deref()), ("*", Some("2.0")));
    assert_eq!(client.webhooks().await.unwrap().len(), 1);
    client.delete_webhook(hook.id).await.unwrap();
    assert!(client.webhooks().await.unwrap().is_empty());
    assert!(matches!(
        client.delete_webhook(hook.id).await.unwrap_err(),
        PipedriveError::Rejected { status: 404, .. }
    ));

    let expected = sb.pipedrive.world().leads.len();
    let (mut leads, mut start) = (Vec::new(), Some(0));
    while let Some(s) = start {
        let (page, next) = client.leads(s, 7).await.unwrap();
        leads.extend(page);
        start = next;
    }
    assert_eq!(leads.len(), expected);
    assert!(leads.iter().all(|l| l.id.len() == 36), "lead ids are UUIDs");

    let (recent, _) = client.recents("2000-01-01 00:00:00", "person", 0).await.unwrap();
    assert!(!recent.is_empty() && recent.iter().all(|r| r.item == "person"));

    let merged = client.merge_persons(10, 11).await.unwrap();
    assert_eq!(merged["id"], 11);
    assert_eq!(merged["merge_what_id"], 10);
}

#[tokio::test]
async fn a_failed_post_is_not_sent_twice() {
    use pipebridge::pipedrive::v1::NewWebhook;
    let sb = sandbox(20, |_| {}).await;
    let client = token_client(&sb, 1_000_000);
    admin(&sb, "/_sandbox/faults", json!({"error_rate": 1.0})).await;
    let hook = NewWebhook {
        subscription_url: "http://127.0.0.1:9/h",
        event_action: "*",
        event_object: "deal",
        name: "n",
        http_auth_user: "u",
        http_auth_password: "p",
    };
    assert!(matches!(
        client.create_webhook(&hook).await.unwrap_err(),
        PipedriveError::Transient(_)
    ));
    let log: serde_json::Value = reqwest::get(format!("{}/_sandbox/requests", sb.pipedrive_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        log.as_array().unwrap().len(),
        1,
        "a POST that may have taken effect is left to the caller"
    );
}

/// Two processes (each its own pool and credentials, as a web request and a worker have) find
/// the access token expired at once: one asks Pipedrive, the other takes its tokens.
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn one_refresh_per_connection_across_processes(pool: PgPool) {
    let sb = sandbox(10, |_| {}).await;
    let key = SecretKey::generate();
    let (member, providers) = oauth_tenant(&pool, &sb, &key).await;
    let other_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let (a, _) = OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    let (b, _) =
        OAuthCredentials::load(&other_pool, &key, &providers, &member).await.unwrap().unwrap();
    let old = a.current().await.unwrap();
    assert!(b.current().await.unwrap() == old);
    admin(&sb, "/_sandbox/oauth/expire", json!({})).await;
    // Both were refused with the old token and refresh at once.
    let (ra, rb) = tokio::join!(a.refresh(&old), b.refresh(&old));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(ra != old, "refreshed");
    assert!(ra == rb, "one token call: the second process took the first one's tokens");
    let (stored, _) =
        OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    assert!(stored.current().await.unwrap() == ra, "stored");
    assert_eq!(connections::list(&pool, &member).await.unwrap()[0].status, "connected");
}

/// A client holding an old grant (the user has reconnected since, and the old grant was
/// revoked) takes the new connection's tokens instead of marking it for reauthorization.
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn an_old_grant_never_touches_a_newer_connection(pool: PgPool) {
    let sb = sandbox(10, |_| {}).await;
    let key = SecretKey::generate();
    let (member, providers) = oauth_tenant(&pool, &sb, &key).await;
    let (stale, _) =
        OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    let old = stale.current().await.unwrap();
    let sealed: Vec<u8> =
        sqlx::query_scalar("select refresh_secret from connections where tenant_id = $1")
            .bind(member.tenant_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    let old_refresh = key.open(member.tenant_id, "connection.refresh", &sealed).unwrap();
    oauth_tenant_connect(&pool, &sb, &key, &member, &providers).await;
    admin(&sb, "/_sandbox/oauth/revoke", json!({"token": old_refresh.expose()})).await;

    let got = stale.refresh(&old).await.unwrap();
    let (fresh, _) =
        OAuthCredentials::load(&pool, &key, &providers, &member).await.unwrap().unwrap();
    assert!(got == fresh.current().await.unwrap(), "the newer connection's token");
    let list = connections::list(&pool, &member).await.unwrap();
    assert_eq!((list[0].status.as_str(), list[0].last_error.as_deref()), ("connected", None));
}
