//! Sync through the whole app over HTTP: "Sync now" queues a job that the app's own workers run
//! against its sandbox; the history shows it; another tenant sees none of it; viewers cannot
//! start one; a sync without a mapping ends failed with a message saying what to do.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, error_message};
use pipebridge_sandbox::brevo::DEFAULT_API_KEY;
use pipebridge_sandbox::pipedrive::DEFAULT_API_TOKEN;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

async fn overview(browser: &mut common::Browser<'_>, tenant: &str) -> Value {
    let res = browser.call("sync_overview", &[("tenant_id", tenant)]).await;
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

async fn wait_for_run(
    browser: &mut common::Browser<'_>,
    tenant: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = overview(browser, tenant).await;
        if let Some(run) = o["runs"].as_array().and_then(|r| r.first()).filter(|r| done(r)) {
            return run.clone();
        }
        assert!(Instant::now() < deadline, "no finished run: {o}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn sync_now_runs_in_the_apps_workers_and_only_its_tenant_sees_it(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (mut ann, tenant) = app.signed_up("ann@example.com", "Acme").await;
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
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let res =
        ann.call("save_brevo_key", &[("tenant_id", &tenant), ("api_key", DEFAULT_API_KEY)]).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());

    // No mapping yet: the run fails and says what to do.
    let res = ann.call("start_sync", &[("tenant_id", &tenant), ("full_resync", "false")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let run = wait_for_run(&mut ann, &tenant, |r| r["status"] == "failed").await;
    assert!(run["message"].as_str().unwrap().contains("save one on the Mappings page"), "{run}");

    // With a mapping (lists the sandbox's Brevo has: list 1), the next run succeeds.
    let yaml = "connectors:\n  pipedrive:\n    lists: { all_contacts: 1 }\nperson_mapping:\n  email: email\n  first_name: FIRSTNAME\n  last_name: LASTNAME\n";
    let res = ann.call("save_mapping", &[("tenant_id", &tenant), ("yaml", yaml)]).await;
    assert_eq!(res.status(), StatusCode::OK, "{}", res.text().await.unwrap());
    let res = ann.call("start_sync", &[("tenant_id", &tenant), ("full_resync", "false")]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let run = wait_for_run(&mut ann, &tenant, |r| r["status"] == "succeeded").await;
    assert_eq!(run["mode"], "backfill");
    assert_eq!(run["percent"], 100);
    let persons =
        run["counts"].as_array().unwrap().iter().find(|c| c["entity"] == "person").unwrap().clone();
    assert!(persons["created"].as_u64().unwrap() > 20, "{persons}");
    let detail: Value = ann
        .call("run_detail", &[("tenant_id", &tenant), ("run_id", &run["id"].to_string())])
        .await
        .json()
        .await
        .unwrap();
    assert!(
        detail["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["reason"].as_str().unwrap().starts_with("No valid email")),
        "{detail}"
    );

    // Another user: not a member, so the tenant and its runs do not exist for them.
    let (mut bob, bobs) = app.signed_up("bob@example.com", "Bobco").await;
    let res =
        bob.call("run_detail", &[("tenant_id", &tenant), ("run_id", &run["id"].to_string())]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let res = bob.call("start_sync", &[("tenant_id", &tenant), ("full_resync", "true")]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    // Nor does Ann's run exist under Bob's own tenant.
    let res =
        bob.call("run_detail", &[("tenant_id", &bobs), ("run_id", &run["id"].to_string())]).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert!(overview(&mut bob, &bobs).await["runs"].as_array().unwrap().is_empty());

    // A viewer of Ann's company sees the history but cannot start a sync.
    let res = ann
        .call(
            "add_team_member",
            &[("tenant_id", &tenant), ("email", "bob@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(!overview(&mut bob, &tenant).await["runs"].as_array().unwrap().is_empty());
    let res = bob.call("start_sync", &[("tenant_id", &tenant), ("full_resync", "false")]).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(error_message(res).await.contains("does not allow"));
}
