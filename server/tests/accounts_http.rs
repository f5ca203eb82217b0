//! Accounts, sessions, CSRF and tenant isolation through HTTP, against the whole app.

mod common;

use common::{PASSWORD, TestApp, error_message};
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};
use sqlx::PgPool;

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn health_and_readiness(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let res = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!((res.status(), res.text().await.unwrap().as_str()), (StatusCode::OK, "ok"));
    let res = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!((res.status(), res.text().await.unwrap().as_str()), (StatusCode::OK, "ready"));
    app.pool.close().await;
    let res = reqwest::get(app.url("/readyz")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn sign_up_opens_the_tenant_with_a_safe_cookie(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let mut browser = app.browser();
    let res = browser
        .call(
            "sign_up",
            &[("email", "ann@example.com"), ("password", PASSWORD), ("company", "Acme & Co")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res.headers().get(SET_COOKIE).unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http in tests: {cookie}");
    let location = res.headers().get(LOCATION).unwrap().to_str().unwrap().to_owned();
    assert!(location.starts_with("/t/"));

    let page = browser.get(&location).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("Acme &amp; Co"), "the shell shows the tenant name");
    assert!(html.contains("Dashboard") && html.contains("Sync history") && html.contains("Team"));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn bad_sign_up_input_gets_a_clear_message(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.signed_up("ann@example.com", "Acme").await;
    let cases = [
        (("ann@", PASSWORD, "X"), "\"ann@\" is not a valid email address."),
        (("bob@example.com", "short", "X"), "Choose a password of at least 10 characters."),
        (("bob@example.com", PASSWORD, "  "), "Enter your company name."),
        (
            ("ANN@example.com", PASSWORD, "X"),
            "An account with this email already exists. Log in instead.",
        ),
    ];
    for ((email, password, company), message) in cases {
        let res = app
            .browser()
            .call("sign_up", &[("email", email), ("password", password), ("company", company)])
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY, "{email} {password}");
        assert_eq!(error_message(res).await, message);
    }
    let users: i64 =
        sqlx::query_scalar("select count(*) from users").fetch_one(&app.pool).await.unwrap();
    assert_eq!(users, 1);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn log_in_cycles_the_session_id_and_log_out_ends_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut first, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let old_cookie = first.cookie.clone().unwrap();

    // Logging in again from the same browser issues a new session id...
    let res = first.call("log_in", &[("email", "ann@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers().get(LOCATION).unwrap(), &format!("/t/{tenant}"));
    let new_cookie = first.cookie.clone().unwrap();
    assert_ne!(old_cookie, new_cookie);
    // ...and the old one no longer opens anything.
    let mut stale = app.browser();
    stale.cookie = Some(old_cookie);
    let res = stale.call("load_tenant", &[("tenant_id", &tenant)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(first.call("load_tenant", &[("tenant_id", &tenant)]).await.status(), StatusCode::OK);
    let res = first.call("log_out", &[]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut after = app.browser();
    after.cookie = Some(new_cookie);
    assert_eq!(
        after.call("load_tenant", &[("tenant_id", &tenant)]).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn wrong_password_and_throttling(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.signed_up("ann@example.com", "Acme").await;
    for _ in 0..5 {
        let res = app
            .browser()
            .call("log_in", &[("email", "ann@example.com"), ("password", "nope nope nope")])
            .await;
        assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(error_message(res).await, "Wrong email or password.");
    }
    let res =
        app.browser().call("log_in", &[("email", "ann@example.com"), ("password", PASSWORD)]).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(error_message(res).await.starts_with("Too many failed log-in attempts. Wait"));
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn cross_site_posts_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let client = reqwest::Client::new();
    let form = [("email", "ann@example.com"), ("password", PASSWORD), ("company", "Acme")];
    let no_origin = client.post(app.url("/api/sign_up")).form(&form).send().await.unwrap();
    assert_eq!(no_origin.status(), StatusCode::FORBIDDEN);
    let evil = client
        .post(app.url("/api/sign_up"))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), StatusCode::FORBIDDEN);
    assert!(evil.text().await.unwrap().contains("did not come from a pipebridge page"));
    let users: i64 =
        sqlx::query_scalar("select count(*) from users").fetch_one(&app.pool).await.unwrap();
    assert_eq!(users, 0, "nothing was written");
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn signed_out_visitors_are_sent_to_log_in(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let mut anonymous = app.browser();
    let res = anonymous.get(&format!("/t/{tenant}/team")).await;
    assert_eq!(res.status(), StatusCode::FOUND);
    assert_eq!(res.headers().get(LOCATION).unwrap(), "/login");
    let res = anonymous.call("team_members", &[("tenant_id", &tenant)]).await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_member_of_one_tenant_gets_nothing_of_another(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, tenant_a) = app.signed_up("ann@example.com", "Secret Alpha").await;
    let (mut bob, tenant_b) = app.signed_up("bob@example.com", "Bravo").await;
    let ann_id: uuid::Uuid =
        sqlx::query_scalar("select id from users where email = 'ann@example.com'")
            .fetch_one(&app.pool)
            .await
            .unwrap();

    for page in ["", "/connections", "/mappings", "/history", "/team", "/settings"] {
        let res = bob.get(&format!("/t/{tenant_a}{page}")).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "page {page:?}");
        let html = res.text().await.unwrap();
        assert!(
            !html.contains("Secret Alpha") && !html.contains("ann@example.com"),
            "page {page:?} leaks"
        );
    }
    // Not a UUID, or no such tenant: the same answer.
    assert_eq!(bob.get("/t/not-a-tenant").await.status(), StatusCode::NOT_FOUND);

    let (a, ann_s) = (tenant_a.as_str(), ann_id.to_string());
    let calls: [(&str, Vec<(&str, &str)>); 6] = [
        ("load_tenant", vec![("tenant_id", a)]),
        ("team_members", vec![("tenant_id", a)]),
        ("rename_tenant", vec![("tenant_id", a), ("name", "Pwned")]),
        (
            "add_team_member",
            vec![("tenant_id", a), ("email", "bob@example.com"), ("role", "owner")],
        ),
        ("change_team_role", vec![("tenant_id", a), ("user_id", &ann_s), ("role", "viewer")]),
        ("remove_team_member", vec![("tenant_id", a), ("user_id", &ann_s)]),
    ];
    for (name, form) in &calls {
        let res = bob.call(name, form).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "server function {name}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("Secret Alpha") && !body.contains("ann@example.com"),
            "{name} leaks: {body}"
        );
    }
    let name: String = sqlx::query_scalar("select name from tenants where id = $1::uuid")
        .bind(&tenant_a)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(name, "Secret Alpha");
    let memberships: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("select user_id, role from memberships where tenant_id = $1::uuid")
            .bind(&tenant_a)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(memberships, vec![(ann_id, "owner".to_owned())]);

    // Bob's own tenant still works, and cannot be used to reach Ann through her user id.
    assert_eq!(bob.call("load_tenant", &[("tenant_id", &tenant_b)]).await.status(), StatusCode::OK);
    let res =
        bob.call("remove_team_member", &[("tenant_id", &tenant_b), ("user_id", &ann_s)]).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_viewer_can_look_but_not_change(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;
    let (mut bob, _) = app.signed_up("bob@example.com", "Bravo").await;
    let res = ann
        .call(
            "add_team_member",
            &[("tenant_id", &tenant), ("email", "bob@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = bob.call("team_members", &[("tenant_id", &tenant)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let members: serde_json::Value = res.json().await.unwrap();
    assert_eq!(members.as_array().unwrap().len(), 2);
    assert_eq!(bob.get(&format!("/t/{tenant}/settings")).await.status(), StatusCode::OK);

    let res = bob.call("rename_tenant", &[("tenant_id", &tenant), ("name", "Bob's now")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_message(res).await, "Your role in this company does not allow that.");
    let res = bob
        .call(
            "add_team_member",
            &[("tenant_id", &tenant), ("email", "bob@example.com"), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // Bob switches between his two tenants: both are listed for him.
    let res = bob.call("load_tenant", &[("tenant_id", &tenant)]).await;
    let page: serde_json::Value = res.json().await.unwrap();
    assert_eq!(page["tenant"]["role"], "viewer");
    assert_eq!(page["tenant"]["can_manage"], false);
    let names: Vec<&str> =
        page["tenants"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Acme", "Bravo"]);
}
