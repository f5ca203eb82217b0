//! `TestApp`: the whole server started on port 0 over a fresh database, and a browser-like client
//! that keeps its session cookie and sends the `Origin` header a browser would.

#![allow(dead_code)]

use std::net::SocketAddr;

use leptos::config::LeptosOptions;
use pipebridge_server::{Application, Config};
use reqwest::header::{ACCEPT, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};
use sqlx::PgPool;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub addr: SocketAddr,
    pub pool: PgPool,
    /// The app's own sandbox (fake Pipedrive and Brevo), its OAuth app registered for this app.
    pub sandbox: pipebridge_sandbox::Running,
    pub config: Config,
}

impl TestApp {
    pub async fn spawn(pool: PgPool) -> Self {
        // The app's log, shown for a test that fails (the test writer's output is kept
        // otherwise): a request that hangs or fails leaves its trace. (Pages whose body did not
        // arrive within 30 s, twice in CI, were another test's app generating its routes at that
        // moment: see `route_list` in server/src/routes.rs and tests/pages_http.rs.)
        let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let public_url = format!("http://{addr}");
        let callback = format!("{public_url}/oauth/pipedrive/callback");
        let mut sandbox_config = pipebridge_sandbox::Config::default();
        sandbox_config.pipedrive.oauth_apps[0].redirect_uris = vec![callback];
        let sandbox = pipebridge_sandbox::start(sandbox_config).await.expect("the sandbox starts");

        let mut config = Config::for_tests(String::new(), &public_url);
        config.providers.pipedrive_oauth.server = sandbox.pipedrive_url.clone();
        config.providers.pipedrive_api = sandbox.pipedrive_url.clone();
        config.providers.brevo_api = sandbox.brevo_url.clone();
        let options =
            LeptosOptions::builder().output_name("pipebridge").site_root("target/site").build();
        let app = Application::with_listener(&config, options, listener, pool.clone())
            .await
            .expect("the app starts");
        tokio::spawn(app.run_until_stopped());
        Self { addr, pool, sandbox, config }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn browser(&self) -> Browser<'_> {
        Browser { app: self, cookie: None }
    }

    /// Signs up a new user with their company; returns the browser (signed in) and tenant id.
    pub async fn signed_up(&self, email: &str, company: &str) -> (Browser<'_>, String) {
        let mut browser = self.browser();
        let res = browser
            .call("sign_up", &[("email", email), ("password", PASSWORD), ("company", company)])
            .await;
        assert_eq!(res.status(), StatusCode::OK, "sign-up failed: {}", res.text().await.unwrap());
        let location =
            res.headers().get(LOCATION).expect("sign-up redirects").to_str().unwrap().to_owned();
        let tenant = location.strip_prefix("/t/").expect("to the new tenant").to_owned();
        (browser, tenant)
    }
}

/// Keeps the session cookie the server last set, like a browser would.
pub struct Browser<'a> {
    pub app: &'a TestApp,
    pub cookie: Option<String>,
}

impl Browser<'_> {
    fn client() -> reqwest::Client {
        // A timeout turns a hung request into a failure that names it.
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap()
    }

    fn remember(&mut self, res: &Response) {
        for value in res.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            if let Some(pair) = value.split(';').next()
                && let Some(v) = pair.strip_prefix("pipebridge_session=")
            {
                self.cookie = if v.is_empty() { None } else { Some(v.to_owned()) };
            }
        }
    }

    /// Calls a server function the way the hydrated page does (form-encoded, JSON answer).
    pub async fn call(&mut self, name: &str, form: &[(&str, &str)]) -> Response {
        let body = serde_urlencoded(form);
        let mut req = Self::client()
            .post(self.app.url(&format!("/api/{name}")))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .header("origin", format!("http://{}", self.app.addr))
            .header("sec-fetch-site", "same-origin")
            .body(body);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, format!("pipebridge_session={c}"));
        }
        let res = req.send().await.unwrap();
        self.remember(&res);
        res
    }

    /// GET any URL (ours or the sandbox's) with our session cookie when it is ours.
    pub async fn get_url(&mut self, url: &str) -> Response {
        let mut req = Self::client().get(url).header(ACCEPT, "text/html");
        if url.starts_with(&self.app.url(""))
            && let Some(c) = &self.cookie
        {
            req = req.header(COOKIE, format!("pipebridge_session={c}"));
        }
        let res = req.send().await.unwrap();
        self.remember(&res);
        res
    }

    pub async fn get(&mut self, path: &str) -> Response {
        let mut req = Self::client().get(self.app.url(path)).header(ACCEPT, "text/html");
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, format!("pipebridge_session={c}"));
        }
        let res = req.send().await.unwrap();
        self.remember(&res);
        res
    }
}

fn serde_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The message of an error answer (the `AppError` JSON).
pub async fn error_message(res: Response) -> String {
    let value: serde_json::Value = res.json().await.expect("an error answer is JSON");
    value
        .as_object()
        .and_then(|o| o.values().next())
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned()
}
