//! The fake Pipedrive over HTTP: auth, OAuth, pagination, filters, rate limits, budget, webhooks,
//! and answers checked against the official specs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::spec::assert_matches;
use pipebridge_sandbox::pipedrive::{
    self, DEFAULT_API_TOKEN, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET,
};
use pipebridge_sandbox::{Config, Running, start};
use reqwest::StatusCode;
use serde_json::{Value, json};

const V1: &str = "pipedrive-v1.yaml";
const V2: &str = "pipedrive-v2.yaml";

async fn sandbox(persons: usize, tune: impl FnOnce(&mut pipedrive::Settings)) -> Running {
    let mut config = Config::default();
    config.pipedrive.seed_persons = persons;
    tune(&mut config.pipedrive);
    start(config).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn get(sb: &Running, path: &str) -> (StatusCode, Value) {
    let res = client()
        .get(format!("{}{path}", sb.pipedrive_url))
        .header("x-api-token", DEFAULT_API_TOKEN)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn send(
    sb: &Running,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = client()
        .request(method, format!("{}{path}", sb.pipedrive_url))
        .header("x-api-token", DEFAULT_API_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn authentication_by_header_query_and_refusal() {
    let sb = sandbox(10, |_| {}).await;
    let url = format!("{}/v1/users/me", sb.pipedrive_url);
    let res = client().get(&url).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["success"], false);
    assert_eq!(body["error"], "unauthorized access");
    assert_eq!(body["errorCode"], 401);
    let res = client().get(format!("{url}?api_token=wrong")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The connector docs' curl form: api_token in the query, on /v1 and /api/v1.
    for prefix in ["/v1", "/api/v1"] {
        let res = client()
            .get(format!("{}{prefix}/users/me?api_token={DEFAULT_API_TOKEN}", sb.pipedrive_url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["data"]["company_domain"], "sandbox");
        assert_matches(V1, "/users/me", "get", "200", &body);
    }
    let (status, body) = get(&sb, "/api/v2/persons?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_matches(V2, "/persons", "get", "200", &body);
}

#[tokio::test]
async fn oauth_consent_exchange_refresh_and_revoke() {
    let sb =
        sandbox(5, |s| s.oauth_apps[0].redirect_uris = vec!["http://127.0.0.1:9/callback".into()])
            .await;
    let base = &sb.pipedrive_url;
    let redirect = "http://127.0.0.1:9/callback";
    let page = client()
        .get(format!("{base}/oauth/authorize"))
        .query(&[("client_id", DEFAULT_CLIENT_ID), ("redirect_uri", redirect), ("state", "s-123")])
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Allow and install"));

    // A redirect URI that is not registered is refused on the page itself.
    let bad = client()
        .get(format!("{base}/oauth/authorize"))
        .query(&[("client_id", DEFAULT_CLIENT_ID), ("redirect_uri", "http://evil.test/cb")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    let decide = |decision: &'static str| {
        client()
            .post(format!("{base}/oauth/authorize"))
            .form(&[
                ("client_id", DEFAULT_CLIENT_ID),
                ("redirect_uri", redirect),
                ("state", "s-123"),
                ("decision", decision),
            ])
            .send()
    };
    let denied = decide("deny").await.unwrap();
    assert_eq!(denied.status(), StatusCode::SEE_OTHER);
    assert_eq!(denied.headers()["location"], format!("{redirect}?error=user_denied&state=s-123"));

    let approved = decide("approve").await.unwrap();
    let location = approved.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{redirect}?code=")) && location.ends_with("&state=s-123"),
        "{location}"
    );
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap().to_owned();

    let token = |form: Vec<(&'static str, String)>, secret: &'static str| {
        client()
            .post(format!("{base}/oauth/token"))
            .basic_auth(DEFAULT_CLIENT_ID, Some(secret))
            .form(&form)
            .send()
    };
    let wrong_secret = token(
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.clone()),
            ("redirect_uri", redirect.into()),
        ],
        "nope",
    )
    .await
    .unwrap();
    assert_eq!(wrong_secret.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        wrong_secret.json::<Value>().await.unwrap()["error_description"],
        "Invalid client: client is invalid"
    );

    let res = token(
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code.clone()),
            ("redirect_uri", redirect.into()),
        ],
        DEFAULT_CLIENT_SECRET,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let tokens: Value = res.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["api_domain"], sb.pipedrive_url.as_str());
    assert!(tokens["expires_in"].as_i64().unwrap() >= 3599);
    assert_matches(V1, "/oauth/token", "post", "200", &tokens);

    // A code works once.
    let again = token(
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", code),
            ("redirect_uri", redirect.into()),
        ],
        DEFAULT_CLIENT_SECRET,
    )
    .await
    .unwrap();
    assert_eq!(
        again.json::<Value>().await.unwrap()["error_description"],
        "Invalid grant: authorization_code is invalid"
    );

    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let me =
        |t: String| client().get(format!("{base}/api/v2/persons?limit=1")).bearer_auth(t).send();
    assert_eq!(me(access.clone()).await.unwrap().status(), StatusCode::OK);

    let refreshed: Value = token(
        vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh.clone())],
        DEFAULT_CLIENT_SECRET,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(refreshed["refresh_token"], refresh.as_str(), "the same refresh token comes back");
    let access2 = refreshed["access_token"].as_str().unwrap().to_owned();
    assert_ne!(access, access2);

    let revoke = client()
        .post(format!("{base}/oauth/revoke"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[("token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), StatusCode::OK);
    assert_eq!(me(access2).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let after: Value = token(
        vec![("grant_type", "refresh_token".into()), ("refresh_token", refresh)],
        DEFAULT_CLIENT_SECRET,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(after["error_description"], "Invalid grant: refresh_token is invalid");
}

#[tokio::test]
async fn expired_codes_and_access_tokens() {
    let sb =
        sandbox(5, |s| s.oauth_apps[0].redirect_uris = vec!["http://127.0.0.1:9/cb".into()]).await;
    let base = &sb.pipedrive_url;
    let res = client()
        .post(format!("{base}/oauth/authorize"))
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    let code =
        res.headers()["location"].to_str().unwrap().split("code=").nth(1).unwrap().to_owned();
    sb.pipedrive.clock().advance(time::Duration::minutes(6));
    let res: Value = client()
        .post(format!("{base}/oauth/token"))
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/cb"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["error_description"], "Invalid grant: authorization_code has expired");
}

#[tokio::test]
async fn v2_cursor_pages_cover_everything_once() {
    let sb = sandbox(1_200, |s| s.rate_limits = false).await;
    let expected = sb.pipedrive.world().persons.values().filter(|p| !p.is_deleted).count();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v2/persons?limit=500&cursor={c}"),
            None => "/api/v2/persons?limit=500".to_owned(),
        };
        let (status, body) = get(&sb, &path).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        pages += 1;
        let data = body["data"].as_array().unwrap();
        seen.extend(data.iter().map(|p| p["id"].as_u64().unwrap()));
        match body["additional_data"]["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(data.len(), 500, "only the last page is short");
                cursor = Some(c.to_owned());
            }
            None => break,
        }
    }
    assert_eq!(pages, expected.div_ceil(500));
    assert_eq!(seen.len(), expected);
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "ascending ids, no repeats");

    // Exactly one full page: no next cursor. One short of all: a last page of one.
    let (_, body) = get(
        &sb,
        &format!(
            "/api/v2/persons?limit=500&ids={}",
            seen[..100].iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        ),
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 100);
    assert!(body["additional_data"]["next_cursor"].is_null());
    let (_, body) = get(&sb, "/api/v2/pipelines?limit=1").await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let next = body["additional_data"]["next_cursor"].as_str().unwrap().to_owned();
    let (_, body) = get(&sb, &format!("/api/v2/pipelines?limit=1&cursor={next}")).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert!(
        body["additional_data"]["next_cursor"].is_null(),
        "two pipelines: the second page is the last"
    );

    for bad in [
        "/api/v2/persons?limit=501",
        "/api/v2/persons?limit=0",
        "/api/v2/persons?cursor=garbage",
        "/api/v2/persons?sort_by=name",
    ] {
        let (status, body) = get(&sb, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["success"], false);
    }
}

#[tokio::test]
async fn updated_since_and_sorting_by_update_time() {
    let sb = sandbox(100, |s| s.rate_limits = false).await;
    // Move the sandbox clock past everything seeded, then mark the time.
    sb.pipedrive.clock().advance(time::Duration::minutes(1));
    let mark = sb.pipedrive.now().replace_nanosecond(0).unwrap();
    let mark = mark.format(&time::format_description::well_known::Rfc3339).unwrap();
    sb.pipedrive.clock().advance(time::Duration::seconds(1));
    let (status, _) =
        send(&sb, reqwest::Method::PATCH, "/api/v2/persons/7", json!({"name": "Changed Person"}))
            .await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = send(&sb, reqwest::Method::POST, "/api/v2/persons", json!({"name": "New Person", "emails": [{"value": "new@example.com", "primary": true, "label": "work"}]})).await;
    assert_eq!(status, StatusCode::OK);
    assert_matches(V2, "/persons", "post", "200", &created);
    let (_, body) = get(
        &sb,
        &format!("/api/v2/persons?updated_since={mark}&sort_by=update_time&sort_direction=asc"),
    )
    .await;
    let names: Vec<&str> =
        body["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Changed Person", "New Person"], "only what changed, in update order");
    let (_, body) = get(&sb, &format!("/api/v2/persons?updated_until={mark}&limit=500")).await;
    assert!(body["data"].as_array().unwrap().iter().all(|p| p["name"] != "New Person"));
}

#[tokio::test]
async fn v1_offset_pages_and_shapes() {
    let sb = sandbox(30, |s| s.rate_limits = false).await;
    let (_, body) = get(&sb, "/v1/persons?start=0&limit=10").await;
    let p = &body["additional_data"]["pagination"];
    assert_eq!(
        (
            p["start"].as_u64(),
            p["limit"].as_u64(),
            p["more_items_in_collection"].as_bool(),
            p["next_start"].as_u64()
        ),
        (Some(0), Some(10), Some(true), Some(10))
    );
    let person = &body["data"][0];
    assert!(
        person["email"].is_array()
            && person["owner_id"].is_object()
            && person["active_flag"].is_boolean()
    );
    let (_, fields) = get(&sb, "/v1/personFields?limit=500").await;
    assert_matches(V1, "/personFields", "get", "200", &fields);
    let custom: Vec<&Value> =
        fields["data"].as_array().unwrap().iter().filter(|f| f["edit_flag"] == true).collect();
    assert!(custom.iter().all(|f| f["key"].as_str().unwrap().len() == 40));
    for kind in ["enum", "set", "monetary", "date", "address", "phone", "text", "double", "varchar"]
    {
        assert!(
            custom.iter().any(|f| f["field_type"] == kind),
            "a custom person field of type {kind}"
        );
    }
    let (_, v2fields) = get(&sb, "/api/v2/personFields").await;
    assert_matches(V2, "/personFields", "get", "200", &v2fields);
    let (_, leads) = get(&sb, "/v1/leads").await;
    assert_matches(V1, "/leads", "get", "200", &leads);
    let (_, deals) = get(&sb, "/api/v2/deals?limit=100").await;
    assert_matches(V2, "/deals", "get", "200", &deals);
    let statuses: std::collections::HashSet<&str> =
        deals["data"].as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.len(), 3, "open, won and lost deals: {statuses:?}");
    let (_, acts) = get(&sb, "/api/v2/activities?limit=200").await;
    assert_matches(V2, "/activities", "get", "200", &acts);
    let (_, orgs) = get(&sb, "/api/v2/organizations").await;
    assert_matches(V2, "/organizations", "get", "200", &orgs);
    let (_, stages) = get(&sb, "/api/v2/stages").await;
    assert_matches(V2, "/stages", "get", "200", &stages);
    let (_, found) = get(&sb, "/api/v2/itemSearch?term=deal%201&item_types=deal&limit=5").await;
    assert_matches(V2, "/itemSearch", "get", "200", &found);
    assert!(found["data"]["items"].as_array().unwrap().iter().all(|i| i["item"]["type"] == "deal"));
    let (status, _) = get(&sb, "/api/v2/itemSearch?term=a").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a one-letter term needs exact_match");
}

#[tokio::test]
async fn burst_limit_headers_429_and_the_block() {
    let sb = sandbox(5, |s| {
        s.burst_limit = Some(5);
        s.block_after_429s = 3;
    })
    .await;
    for left in (0..5).rev() {
        let res = client()
            .get(format!("{}/api/v2/pipelines", sb.pipedrive_url))
            .header("x-api-token", DEFAULT_API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["x-ratelimit-limit"], "5");
        assert_eq!(res.headers()["x-ratelimit-remaining"], left.to_string().as_str());
        assert!(res.headers().contains_key("x-ratelimit-reset"));
    }
    let res = client()
        .get(format!("{}/api/v2/pipelines", sb.pipedrive_url))
        .header("x-api-token", DEFAULT_API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["x-ratelimit-remaining"], "0");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "Request over limit");
    // Hammering on: the HTML block.
    let mut last = StatusCode::OK;
    for _ in 0..4 {
        last = client()
            .get(format!("{}/api/v2/pipelines", sb.pipedrive_url))
            .header("x-api-token", DEFAULT_API_TOKEN)
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::FORBIDDEN);
    let res = client()
        .get(format!("{}/api/v2/pipelines", sb.pipedrive_url))
        .header("x-api-token", DEFAULT_API_TOKEN)
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
}

#[tokio::test]
async fn the_daily_budget_is_spent_by_token_cost_and_renews_next_day() {
    let sb = sandbox(5, |s| s.daily_budget = Some(25)).await;
    assert_eq!(get(&sb, "/api/v2/persons").await.0, StatusCode::OK); // 10
    assert_eq!(get(&sb, "/api/v2/persons").await.0, StatusCode::OK); // 20
    assert_eq!(get(&sb, "/api/v2/persons").await.0, StatusCode::TOO_MANY_REQUESTS); // 30 > 25
    assert_eq!(get(&sb, "/api/v2/persons/1").await.0, StatusCode::OK); // 21
    let log: Value = client()
        .get(format!("{}/_sandbox/requests", sb.pipedrive_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let costs: Vec<u64> =
        log.as_array().unwrap().iter().map(|r| r["cost"].as_u64().unwrap()).collect();
    assert_eq!(costs, vec![10, 10, 0, 1]);
    sb.pipedrive.clock().advance(time::Duration::days(1));
    assert_eq!(get(&sb, "/api/v2/persons").await.0, StatusCode::OK);
}

/// What a receiver got: the Authorization header and the body of each delivery.
type Received = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A webhook receiver on port 0 that records what it gets and answers with `status`.
async fn receiver(status: StatusCode) -> (String, Received) {
    let got: Received = Arc::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let store = store.clone();
                async move {
                    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
                    store.lock().unwrap().push((auth, body));
                    status
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn wait_for(got: &Received, n: usize) -> Vec<(Option<String>, Value)> {
    for _ in 0..200 {
        if got.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    got.lock().unwrap().clone()
}

#[tokio::test]
async fn webhooks_deliver_v2_and_v1_forms_with_basic_auth_and_merges() {
    let sb = sandbox(20, |s| s.rate_limits = false).await;
    let (url, got) = receiver(StatusCode::OK).await;
    let (status, created) = send(&sb, reqwest::Method::POST, "/v1/webhooks", json!({
        "subscription_url": url, "event_action": "*", "event_object": "person", "name": "all persons",
        "http_auth_user": "hook", "http_auth_password": "s3cret"
    })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_matches(V1, "/webhooks", "post", "201", &created);
    let (url1, got1) = receiver(StatusCode::OK).await;
    let (status, _) = send(&sb, reqwest::Method::POST, "/v1/webhooks", json!({"subscription_url": url1, "event_action": "added", "event_object": "person", "name": "v1", "version": "1.0"})).await;
    assert_eq!(status, StatusCode::CREATED);

    let (_, person) =
        send(&sb, reqwest::Method::POST, "/api/v2/persons", json!({"name": "Hook Person"})).await;
    let id = person["data"]["id"].as_u64().unwrap();
    let v2 = wait_for(&got, 1).await;
    let (auth, body) = &v2[0];
    assert_eq!(
        auth.as_deref(),
        Some("Basic aG9vazpzM2NyZXQ="),
        "HTTP Basic with the given credentials"
    );
    assert_eq!(body["meta"]["action"], "create");
    assert_eq!(body["meta"]["entity"], "person");
    assert_eq!(body["meta"]["entity_id"], id.to_string());
    assert_eq!(body["data"]["name"], "Hook Person");
    let v1 = wait_for(&got1, 1).await;
    assert_eq!(v1[0].1["event"], "added.person");
    assert_eq!(v1[0].1["current"]["name"], "Hook Person");

    // Merge: a delete with merged_to_id for the one merged away, a change with merged_from_id.
    let (status, merged) = send(
        &sb,
        reqwest::Method::PUT,
        &format!("/v1/persons/{id}/merge"),
        json!({"merge_with_id": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{merged}");
    assert_eq!(merged["data"]["merge_what_id"], id);
    let events = wait_for(&got, 3).await;
    let metas: Vec<&Value> = events[1..].iter().map(|(_, b)| &b["meta"]).collect();
    let id_s = id.to_string();
    assert!(metas.iter().any(|m| m["action"] == "delete"
        && m["entity_id"] == id_s.as_str()
        && m["merged_to_id"] == "3"));
    assert!(metas.iter().any(|m| m["action"] == "change"
        && m["entity_id"] == "3"
        && m["merged_from_id"] == id_s.as_str()));
    let (_, gone) = get(&sb, &format!("/api/v2/persons/{id}")).await;
    assert_eq!(gone["data"]["is_deleted"], true);
}

#[tokio::test]
async fn failing_webhooks_are_retried_then_banned_and_events_lost() {
    // Time scale 10,000: retries after 0.3, 3 and 15 ms; the 30-minute ban lasts 0.18 s.
    let sb = sandbox(5, |s| {
        s.rate_limits = false;
        s.time_scale = 10_000.0;
    })
    .await;
    let (url, got) = receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
    send(&sb, reqwest::Method::POST, "/v1/webhooks", json!({"subscription_url": url, "event_action": "change", "event_object": "deal", "name": "d"})).await;
    send(&sb, reqwest::Method::PATCH, "/api/v2/deals/1", json!({"title": "first"})).await;
    let attempts = wait_for(&got, 4).await;
    let numbers: Vec<u64> =
        attempts.iter().map(|(_, b)| b["meta"]["attempt"].as_u64().unwrap()).collect();
    assert_eq!(numbers, vec![1, 2, 3, 4], "one try and three retries");

    for i in 0..9 {
        send(&sb, reqwest::Method::PATCH, "/api/v2/deals/1", json!({"title": format!("t{i}")}))
            .await;
    }
    wait_for(&got, 40).await;
    let hooks: Value = client()
        .get(format!("{}/_sandbox/webhooks", sb.pipedrive_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(hooks[0]["banned"], true, "banned after 10 failed first attempts: {hooks}");
    let before = got.lock().unwrap().len();
    send(&sb, reqwest::Method::PATCH, "/api/v2/deals/1", json!({"title": "during the ban"})).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(got.lock().unwrap().len(), before, "events during a ban are lost");
}

#[tokio::test]
async fn the_seed_is_deterministic_and_varied() {
    let a = sandbox(300, |_| {}).await;
    let b = sandbox(300, |_| {}).await;
    let (_, pa) = get(&a, "/api/v2/persons?limit=500").await;
    let (_, pb) = get(&b, "/api/v2/persons?limit=500").await;
    let strip = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["id"].clone(),
                    p["name"].clone(),
                    p["emails"].clone(),
                    p["custom_fields"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&pa), strip(&pb));
    let w = a.pipedrive.world();
    let persons: Vec<_> = w.persons.values().collect();
    assert!(persons.iter().any(|p| p.emails.is_empty()), "some without email");
    assert!(persons.iter().any(|p| p.emails.len() > 1), "some with several");
    assert!(persons.iter().any(|p| p.is_deleted), "some deleted");
    assert!(
        persons.iter().any(|p| p.phones.iter().any(|ph| !ph.value.starts_with('+'))),
        "some with a non-international phone"
    );
    let mut emails: Vec<&str> =
        persons.iter().filter_map(|p| p.emails.first()).map(|e| e.value.as_str()).collect();
    let total = emails.len();
    emails.sort();
    emails.dedup();
    assert!(emails.len() < total, "some share an email");
    let currencies: std::collections::HashSet<&str> =
        w.deals.values().map(|d| d.currency.as_str()).collect();
    assert_eq!(currencies.len(), 2);
    let kinds: std::collections::HashSet<&str> =
        w.activities.values().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds.len(), 4);
    assert!(!w.leads.is_empty());
}

#[tokio::test]
async fn every_operation_answers_per_spec_and_bad_requests_are_refused() {
    let sb = sandbox(40, |s| s.rate_limits = false).await;
    use reqwest::Method as M;
    // (method, path called, spec file, spec path, spec method, status, body)
    let cases: Vec<(M, &str, &str, &str, &str, &str, Value)> = vec![
        (M::GET, "/api/v2/persons/5", V2, "/persons/{id}", "get", "200", Value::Null),
        (
            M::PATCH,
            "/api/v2/persons/5",
            V2,
            "/persons/{id}",
            "patch",
            "200",
            json!({"name": "Ann Updated", "phones": [{"value": "+3725550001", "primary": true, "label": "mobile"}]}),
        ),
        (M::GET, "/api/v2/organizations/2", V2, "/organizations/{id}", "get", "200", Value::Null),
        (
            M::POST,
            "/api/v2/organizations",
            V2,
            "/organizations",
            "post",
            "200",
            json!({"name": "New Org"}),
        ),
        (
            M::PATCH,
            "/api/v2/organizations/2",
            V2,
            "/organizations/{id}",
            "patch",
            "200",
            json!({"name": "Renamed Org"}),
        ),
        (M::GET, "/api/v2/deals/3", V2, "/deals/{id}", "get", "200", Value::Null),
        (
            M::POST,
            "/api/v2/deals",
            V2,
            "/deals",
            "post",
            "200",
            json!({"title": "Big deal", "value": 1200, "currency": "USD", "person_id": 5, "stage_id": 2}),
        ),
        (M::PATCH, "/api/v2/deals/3", V2, "/deals/{id}", "patch", "200", json!({"status": "won"})),
        (M::GET, "/api/v2/activities/4", V2, "/activities/{id}", "get", "200", Value::Null),
        (
            M::POST,
            "/api/v2/activities",
            V2,
            "/activities",
            "post",
            "200",
            json!({"subject": "Call Ann", "type": "call", "participants": [{"person_id": 5, "primary": true}]}),
        ),
        (M::GET, "/api/v2/pipelines", V2, "/pipelines", "get", "200", Value::Null),
        (M::GET, "/api/v2/pipelines/1", V2, "/pipelines/{id}", "get", "200", Value::Null),
        (M::GET, "/api/v2/stages/1", V2, "/stages/{id}", "get", "200", Value::Null),
        (M::GET, "/api/v2/dealFields", V2, "/dealFields", "get", "200", Value::Null),
        (
            M::GET,
            "/api/v2/organizationFields",
            V2,
            "/organizationFields",
            "get",
            "200",
            Value::Null,
        ),
        (M::DELETE, "/api/v2/deals/6", V2, "/deals/{id}", "delete", "200", Value::Null),
        (M::DELETE, "/api/v2/persons/7", V2, "/persons/{id}", "delete", "200", Value::Null),
        (M::GET, "/v1/persons?limit=5", V1, "/persons", "get", "200", Value::Null),
        (
            M::POST,
            "/v1/persons",
            V1,
            "/persons",
            "post",
            "201",
            json!({"name": "V1 Person", "email": "v1@example.com"}),
        ),
        (M::PUT, "/v1/persons/8", V1, "/persons/{id}", "put", "200", json!({"name": "V1 Renamed"})),
        (M::GET, "/v1/deals?limit=5", V1, "/deals", "get", "200", Value::Null),
        (M::GET, "/v1/organizations?limit=5", V1, "/organizations", "get", "200", Value::Null),
        (M::GET, "/v1/activities?limit=5", V1, "/activities", "get", "200", Value::Null),
        (M::GET, "/v1/pipelines", V1, "/pipelines", "get", "200", Value::Null),
        (M::GET, "/v1/stages", V1, "/stages", "get", "200", Value::Null),
        (M::GET, "/v1/dealFields", V1, "/dealFields", "get", "200", Value::Null),
        (M::GET, "/v1/organizationFields", V1, "/organizationFields", "get", "200", Value::Null),
        (
            M::POST,
            "/v1/deals",
            V1,
            "/deals",
            "post",
            "201",
            json!({"title": "V1 deal", "value": 50, "currency": "EUR"}),
        ),
        (
            M::POST,
            "/v1/organizations",
            V1,
            "/organizations",
            "post",
            "201",
            json!({"name": "V1 Org"}),
        ),
        (
            M::POST,
            "/v1/activities",
            V1,
            "/activities",
            "post",
            "201",
            json!({"subject": "V1 call", "type": "call"}),
        ),
        (
            M::POST,
            "/v1/leads",
            V1,
            "/leads",
            "post",
            "201",
            json!({"title": "Hot lead", "person_id": 5, "value": {"amount": 100, "currency": "EUR"}}),
        ),
        (M::GET, "/v1/webhooks", V1, "/webhooks", "get", "200", Value::Null),
        (
            M::GET,
            "/v1/recents?since_timestamp=2000-01-01%2000:00:00&items=person&limit=5",
            V1,
            "/recents",
            "get",
            "200",
            Value::Null,
        ),
        (
            M::GET,
            "/v1/itemSearch?term=deal&item_types=deal&limit=3",
            V1,
            "/itemSearch",
            "get",
            "200",
            Value::Null,
        ),
    ];
    for (method, path, file, spec_path, spec_method, status, body) in cases {
        let (got, answer) = if body.is_null() {
            get_or(&sb, method.clone(), path).await
        } else {
            send(&sb, method.clone(), path, body).await
        };
        assert_eq!(got.as_str(), status, "{method} {path}: {answer}");
        assert_matches(file, spec_path, spec_method, status, &answer);
    }

    // What the specs reject, the sandbox rejects: missing required fields, wrong types, bad enums.
    let refused: Vec<(M, &str, Value)> = vec![
        (M::POST, "/api/v2/persons", json!({"emails": [{"value": "x@example.com"}]})),
        (M::POST, "/api/v2/persons", json!({"name": 42})),
        (M::POST, "/api/v2/persons", json!({"name": "A", "visible_to": 2})),
        (M::POST, "/api/v2/persons", json!({"name": "A", "org_id": "9"})),
        (M::POST, "/api/v2/deals", json!({"value": 10})),
        (M::PATCH, "/api/v2/deals/3", json!({"status": "archived"})),
        (M::POST, "/api/v2/organizations", json!({})),
        (
            M::POST,
            "/v1/webhooks",
            json!({"subscription_url": "not a url", "event_action": "create", "event_object": "person"}),
        ),
        (M::POST, "/v1/leads", json!({"title": "No owner of any kind"})),
    ];
    for (method, path, body) in refused {
        let (status, answer) = send(&sb, method.clone(), path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path} {body}: {answer}");
        assert_eq!(answer["success"], false);
    }
    let (status, _) = get(&sb, "/api/v2/deals?status=archived").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = get(&sb, "/api/v2/persons/999999").await;
    assert_eq!((status, body["success"].clone()), (StatusCode::NOT_FOUND, json!(false)));
    let (status, _) = get(&sb, "/v1/recents").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "since_timestamp is required");
}

async fn get_or(sb: &Running, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
    let res = client()
        .request(method, format!("{}{path}", sb.pipedrive_url))
        .header("x-api-token", DEFAULT_API_TOKEN)
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn recents_reach_back_one_month_at_most() {
    let sb = sandbox(200, |s| s.rate_limits = false).await;
    let (status, body) =
        get(&sb, "/v1/recents?since_timestamp=2000-01-01%2000:00:00&items=person,deal&limit=500")
            .await;
    assert_eq!(status, StatusCode::OK);
    let since = body["additional_data"]["since_timestamp"].as_str().unwrap().to_owned();
    assert!(since.as_str() > "2000-01-02", "capped to a month back: {since}");
    let items = body["data"].as_array().unwrap();
    assert!(!items.is_empty());
    for i in items {
        assert!(i["item"] == "person" || i["item"] == "deal");
        let updated = i["data"]["update_time"].as_str().unwrap();
        assert!(updated > since.as_str(), "{updated} after {since}");
        if i["item"] == "person" {
            assert!(i["data"]["owner_id"].is_u64(), "v1 shape with plain ids");
        }
    }
}

#[tokio::test]
async fn webhook_limits_and_deletion_after_three_failing_days() {
    let sb = sandbox(5, |s| {
        s.rate_limits = false;
        s.time_scale = 10_000.0;
    })
    .await;
    for i in 0..40 {
        let (status, _) = send(&sb, reqwest::Method::POST, "/v1/webhooks", json!({"subscription_url": format!("http://127.0.0.1:9/h{i}"), "event_action": "create", "event_object": "note", "name": "n"})).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let (status, _) = send(&sb, reqwest::Method::POST, "/v1/webhooks", json!({"subscription_url": "http://127.0.0.1:9/h41", "event_action": "create", "event_object": "note", "name": "n"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "40 webhooks per user");
    sb.pipedrive.world().webhooks.clear();

    let (url, got) = receiver(StatusCode::BAD_GATEWAY).await;
    send(
        &sb,
        reqwest::Method::POST,
        "/v1/webhooks",
        json!({"subscription_url": url, "event_action": "*", "event_object": "deal", "name": "d"}),
    )
    .await;
    send(&sb, reqwest::Method::PATCH, "/api/v2/deals/1", json!({"title": "fails"})).await;
    wait_for(&got, 4).await;
    // Three (sandbox) days without a success: the next event finds the webhook deleted.
    sb.pipedrive.clock().advance(time::Duration::days(4));
    send(&sb, reqwest::Method::PATCH, "/api/v2/deals/1", json!({"title": "again"})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(sb.pipedrive.world().webhooks.is_empty(), "deleted after 3 days of failures");
}
