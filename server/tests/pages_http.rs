//! Pages render whole while other apps start in the same process (as the integration tests
//! start one per test, in parallel).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::TestApp;
use leptos::prelude::LeptosOptions;
use pipebridge::pipedrive::limits::Registry;
use reqwest::StatusCode;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// Building an app's router renders the app once to list its routes, with resource loading
/// suppressed process-wide while it does (Leptos' `SuppressResourceLoad`): a page whose resource
/// started then never finished its body. Routers are built here one after the other while a
/// signed-in page (its resources read the database) is loaded again and again; every body ends.
#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn pages_end_while_another_app_builds_its_routes(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let (mut browser, tenant) = app.signed_up("ann@example.com", "Acme").await;
    // On a thread of its own, as another test's app starts on its own runtime's thread, with a
    // pool of its own (each router starts a session clean-up that reads the database).
    let config = app.config.clone();
    let options = (*pool.connect_options()).clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let builder = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let pool = PgPoolOptions::new().max_connections(2).connect_with(options).await.unwrap();
            let site =
                LeptosOptions::builder().output_name("pipebridge").site_root("target/site").build();
            let limits = Arc::new(Registry::new(80, 1_000_000, 0.1));
            let mut built = 0;
            while !stopped.load(Ordering::Relaxed) && built < 1_000 {
                let _router = pipebridge_server::build_router(
                    &config,
                    site.clone(),
                    pool.clone(),
                    limits.clone(),
                )
                .await
                .unwrap();
                built += 1;
            }
            built
        })
    });
    for i in 0..60 {
        let page = async {
            let res = browser.get(&format!("/t/{tenant}/connections")).await;
            assert_eq!(res.status(), StatusCode::OK);
            res.text().await.unwrap()
        };
        let body = tokio::time::timeout(Duration::from_secs(10), page)
            .await
            .unwrap_or_else(|_| panic!("page {i}: its body did not end within 10 s"));
        assert!(body.contains("</html>"), "page {i} ended early: {body}");
    }
    stop.store(true, Ordering::Relaxed);
    let built = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::task::spawn_blocking(move || builder.join().unwrap()),
    )
    .await
    .expect("the routers' thread ends")
    .unwrap();
    assert!(built > 0, "routers were built beside the pages");
}
