//! Connecting Pipedrive (OAuth through the sandbox's consent page, or an API token) and Brevo (a
//! key checked against the sandbox's `GET /v3/account`), through HTTP against the whole app.

mod common;

use common::{TestApp, error_message};
use pipebridge::domain::TenantId;
use pipebridge_sandbox::brevo::DEFAULT_API_KEY;
use pipebridge_sandbox::pipedrive::{DEFAULT_API_TOKEN, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use reqwest::StatusCode;
use reqwest::header::LOCATION;
use sqlx::PgPool;

fn location(res: &reqwest::Response) -> String {
    res.headers().get(LOCATION).expect("a redirect").to_str().unwrap().to_owned()
}

fn query_param(url: &str, name: &str) -> String {
    let query = url.split_once('?').unwrap().1;
    let raw = query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).unwrap();
    raw.replace("%3A", ":").replace("%2F", "/")
}

/// The sealed secret and refresh token of a tenant's connection, opened with the app's key.
async fn stored(
    app: &TestApp,
    tenant: &str,
    provider: &str,
) -> Option<(String, Option<String>, Vec<u8>)> {
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> =
        sqlx::query_as("select secret, refresh_secret from connections where tenant_id = $1::uuid and provider = $2")
            .bind(tenant)
            .bind(provider)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
    let (secret, refresh) = row?;
    let t = TenantId(tenant.parse().unwrap());
    let key = &app.config.secret_key;
    let open = |b: &[u8], purpose| key.open(t, purpose, b).unwrap().expose().to_owned();
    Some((
        open(&secret, "connection.secret"),
        refresh.as_deref().map(|r| open(r, "connection.refresh")),
        secret,
    ))
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn oauth_connect_through_the_consent_page_and_disconnect_revokes(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();

    let res = ann.get(&format!("/t/{tenant}/connections/pipedrive/connect")).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let authorize = location(&res);
    assert!(
        authorize.starts_with(&format!("{}/oauth/authorize?", app.sandbox.pipedrive_url)),
        "{authorize}"
    );
    let state = query_param(&authorize, "state");
    assert_eq!(query_param(&authorize, "client_id"), DEFAULT_CLIENT_ID);
    let consent = http.get(&authorize).send().await.unwrap();
    assert_eq!(consent.status(), StatusCode::OK);
    assert!(consent.text().await.unwrap().contains("Allow and install"));

    let redirect_uri = app.url("/oauth/pipedrive/callback");
    let approve = http
        .post(format!("{}/oauth/authorize", app.sandbox.pipedrive_url))
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", &redirect_uri),
            ("state", &state),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    let callback = location(&approve);
    assert!(callback.starts_with(&redirect_uri));
    let res = ann.get_url(&callback).await;
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&res), format!("/t/{tenant}/connections?pipedrive=connected"));

    let (access, refresh, sealed) = stored(&app, &tenant, "pipedrive").await.expect("stored");
    let refresh = refresh.expect("a refresh token");
    assert!(!String::from_utf8_lossy(&sealed).contains(&access), "sealed at rest");
    let res = ann.call("load_connections", &[("tenant_id", &tenant)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let view: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["pipedrive"]["status"], "connected");
    assert_eq!(view["pipedrive"]["auth_kind"], "oauth");
    assert_eq!(view["pipedrive"]["account_label"], "Sandbox Company (sandbox)");
    assert_eq!(view["pipedrive"]["last4"], access[access.len() - 4..]);
    assert_eq!(view["sandbox"], true);
    assert!(!text.contains(&access) && !text.contains(&refresh), "no token reaches the browser");

    // The same callback again (a replayed state) is refused, and changes nothing.
    let res = ann.get_url(&callback).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("not valid"));

    // Disconnecting revokes the grant at Pipedrive and forgets the tokens.
    let res = ann.call("disconnect", &[("tenant_id", &tenant), ("provider", "pipedrive")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(stored(&app, &tenant, "pipedrive").await.is_none());
    let refused: serde_json::Value = http
        .post(format!("{}/oauth/token", app.sandbox.pipedrive_url))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["error"], "invalid_grant");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn denied_consent_and_forged_state(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .unwrap();
    let redirect_uri = app.url("/oauth/pipedrive/callback");

    let authorize = location(&ann.get(&format!("/t/{tenant}/connections/pipedrive/connect")).await);
    let state = query_param(&authorize, "state");
    let deny = http
        .post(format!("{}/oauth/authorize", app.sandbox.pipedrive_url))
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", &redirect_uri),
            ("state", &state),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    let res = ann.get_url(&location(&deny)).await;
    assert_eq!(location(&res), format!("/t/{tenant}/connections?pipedrive=denied"));
    let view: serde_json::Value =
        ann.call("load_connections", &[("tenant_id", &tenant)]).await.json().await.unwrap();
    assert!(view["pipedrive"].is_null());
    let page =
        ann.get(&format!("/t/{tenant}/connections?pipedrive=denied")).await.text().await.unwrap();
    assert!(page.contains("Pipedrive was not connected"), "the page says why");

    // A callback whose state is not the one this session started is refused.
    ann.get(&format!("/t/{tenant}/connections/pipedrive/connect")).await;
    let res = ann.get("/oauth/pipedrive/callback?code=whatever&state=forged").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(res.text().await.unwrap().contains("Nothing was changed"));
    // And a callback in a browser that started nothing.
    let mut stranger = app.browser();
    let res = stranger.get(&format!("/oauth/pipedrive/callback?code=whatever&state={state}")).await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert!(stored(&app, &tenant, "pipedrive").await.is_none());
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn brevo_keys_are_checked_sealed_and_masked(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;

    let res = ann
        .call("save_brevo_key", &[("tenant_id", &tenant), ("api_key", "xkeysib-not-a-real-key")])
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let message = error_message(res).await;
    assert!(message.starts_with("Brevo refused this key"), "{message}");
    assert!(stored(&app, &tenant, "brevo").await.is_none());

    let res = ann
        .call(
            "save_brevo_key",
            &[("tenant_id", &tenant), ("api_key", &format!("  {DEFAULT_API_KEY} "))],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    assert!(!text.contains(DEFAULT_API_KEY), "the key never goes back to the browser");
    let view: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(view["last4"], DEFAULT_API_KEY[DEFAULT_API_KEY.len() - 4..]);
    let (key, _, sealed) = stored(&app, &tenant, "brevo").await.unwrap();
    assert_eq!(key, DEFAULT_API_KEY, "stored trimmed");
    assert!(!String::from_utf8_lossy(&sealed).contains("xkeysib"));

    // A viewer sees it but cannot change it; another tenant's member cannot even see it.
    let (mut bob, _) = app.signed_up("bob@example.com", "Bravo").await;
    ann.call(
        "add_team_member",
        &[("tenant_id", &tenant), ("email", "bob@example.com"), ("role", "viewer")],
    )
    .await;
    let view: serde_json::Value =
        bob.call("load_connections", &[("tenant_id", &tenant)]).await.json().await.unwrap();
    assert_eq!(view["brevo"]["status"], "connected");
    let res =
        bob.call("save_brevo_key", &[("tenant_id", &tenant), ("api_key", DEFAULT_API_KEY)]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = bob.call("disconnect", &[("tenant_id", &tenant), ("provider", "brevo")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let (mut cid, _) = app.signed_up("cid@example.com", "Cid").await;
    assert_eq!(
        cid.call("load_connections", &[("tenant_id", &tenant)]).await.status(),
        StatusCode::NOT_FOUND
    );
    let res = cid.get(&format!("/t/{tenant}/connections/pipedrive/connect")).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn pipedrive_by_api_token(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let res = ann
        .call(
            "connect_pipedrive_token",
            &[("tenant_id", &tenant), ("api_token", "wrong"), ("company_domain", "sandbox")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(error_message(res).await.starts_with("Pipedrive refused these credentials"));
    let res = ann
        .call(
            "connect_pipedrive_token",
            &[
                ("tenant_id", &tenant),
                ("api_token", DEFAULT_API_TOKEN),
                ("company_domain", "sandbox"),
            ],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let view: serde_json::Value = res.json().await.unwrap();
    assert_eq!(view["auth_kind"], "api_token");
    assert_eq!(view["account_label"], "Sandbox Company (sandbox)");
    let (token, refresh, _) = stored(&app, &tenant, "pipedrive").await.unwrap();
    assert_eq!((token.as_str(), refresh), (DEFAULT_API_TOKEN, None));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_mapping_is_checked_against_the_connected_accounts(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let seed = pipebridge::mapping::store::SEED_YAML;
    // Not connected yet: checked on its own, saved.
    let res = ann.call("save_mapping", &[("tenant_id", &tenant), ("yaml", seed)]).await;
    assert_eq!(res.status(), StatusCode::OK);

    ann.call(
        "connect_pipedrive_token",
        &[("tenant_id", &tenant), ("api_token", DEFAULT_API_TOKEN), ("company_domain", "sandbox")],
    )
    .await;
    ann.call("save_brevo_key", &[("tenant_id", &tenant), ("api_key", DEFAULT_API_KEY)]).await;
    // Connected: the seed's list ids do not exist in this Brevo account; its stages and the
    // "lead_source" custom field (label "Lead source") do exist in the sandbox's Pipedrive.
    let res = ann.call("save_mapping", &[("tenant_id", &tenant), ("yaml", seed)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let message = error_message(res).await;
    assert!(
        message.contains("connectors.pipedrive.lists.customers: Brevo has no list 62."),
        "{message}"
    );
    assert!(!message.contains("custom_fields.lead_source"), "the label matched: {message}");
    assert!(!message.contains("no stage"), "{message}");

    let broken = seed.replace("custom_fields.lead_source", "custom_fields.no_such_field");
    let message =
        error_message(ann.call("save_mapping", &[("tenant_id", &tenant), ("yaml", &broken)]).await)
            .await;
    assert!(
        message.contains(
            "Pipedrive has no person custom field with the key or label \"no_such_field\""
        ),
        "{message}"
    );
}
