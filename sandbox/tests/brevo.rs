//! The fake Brevo over real HTTP: each test starts the sandbox in-process on port 0 and checks
//! behaviours from shared/reference/brevo-api.md, and 2xx answers against the official OpenAPI spec
//! (sandbox/specs/brevo-v3.yaml) with the lenient checker of tests/common/spec.rs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipebridge_sandbox::brevo::{DEFAULT_API_KEY, Settings};
use pipebridge_sandbox::{Config, Running};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use common::spec;

const BREVO_SPEC: &str = "brevo-v3.yaml";

/// Asserts that `body` fits the spec's response schema of `method path` for `status`.
fn assert_spec(path: &str, method: &str, status: u16, body: &Value) {
    spec::assert_matches(BREVO_SPEC, path, method, &status.to_string(), body);
}

#[test]
fn checker_catches_mismatches() {
    // The checker itself: a contact without `id` and with a string listIds must fail.
    let spec = spec::load(BREVO_SPEC);
    let schema = spec::response_schema(spec, "/contacts/{identifier}", "get", "200");
    let errors = spec::check(
        spec,
        schema,
        &json!({ "emailBlacklisted": false, "listIds": "7", "statistics": {} }),
        true,
    );
    assert!(errors.iter().any(|e| e.contains("required property \"id\" is missing")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("$.listIds: expected array")), "{errors:?}");
    // Brevo's spec marks what may be null: an unmarked null is a mismatch.
    let errors = spec::check(
        spec,
        schema,
        &json!({ "id": 1, "emailBlacklisted": null, "smsBlacklisted": false, "createdAt": "x", "modifiedAt": "x", "listIds": [], "attributes": {}, "statistics": {} }),
        true,
    );
    assert!(errors.iter().any(|e| e.contains("emailBlacklisted")), "{errors:?}");
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

struct Sandbox {
    running: Running,
    http: reqwest::Client,
    key: String,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn start(settings: Settings) -> Sandbox {
    let config = Config { brevo: settings, ..Config::default() };
    let running = pipebridge_sandbox::start(config).await.expect("sandbox starts");
    Sandbox { running, http: reqwest::Client::new(), key: DEFAULT_API_KEY.to_owned() }
}

/// Functional tests run without rate limits so that their own traffic never trips them.
async fn unlimited() -> Sandbox {
    start(Settings { rate_limits: false, process_step_ms: 20, ..Settings::default() }).await
}

impl Sandbox {
    async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.running.brevo_url));
        if let Some(key) = key {
            req = req.header("api-key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request reaches the sandbox");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer { status, headers, body }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(method, path, Some(&self.key), body).await
    }
    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }
    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.send(method, path, None, body).await
    }

    async fn create_contact(&self, body: Value) -> i64 {
        let a = self.post("/v3/contacts", body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["id"].as_i64().expect("id")
    }
}

fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["code"], code, "{}", a.body);
    assert!(a.body["message"].is_string(), "{}", a.body);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_or_missing_key_is_401() {
    let s = unlimited().await;
    for key in [None, Some("xkeysib-wrong")] {
        let a = s.send(Method::GET, "/v3/account", key, None).await;
        assert_error(&a, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(a.body["message"], "Key not found");
    }
}

#[tokio::test]
async fn account_fits_spec() {
    let s = unlimited().await;
    let a = s.get("/v3/account").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_spec("/account", "get", 200, &a.body);
    assert!(a.body["email"].as_str().is_some_and(|e| e.contains('@')));
    assert_eq!(a.body["plan"][0]["type"], "free");
}

#[tokio::test]
async fn contact_create_duplicate_and_upsert() {
    let s = unlimited().await;
    let a = s.post("/v3/contacts", json!({ "email": "Ada@Example.com", "attributes": { "FIRSTNAME": "Ada" }, "listIds": [1] })).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_spec("/contacts", "post", 201, &a.body);
    let id = a.body["id"].as_i64().expect("id");

    let dup = s.post("/v3/contacts", json!({ "email": "ada@example.com" })).await;
    assert_error(&dup, StatusCode::BAD_REQUEST, "duplicate_parameter");
    assert_eq!(dup.body["metadata"]["duplicate_identifiers"], json!(["email"]));

    let up = s.post("/v3/contacts", json!({ "email": "ada@example.com", "updateEnabled": true, "attributes": { "LASTNAME": "Lovelace" } })).await;
    assert_eq!(up.status, StatusCode::NO_CONTENT, "{}", up.body);
    let got = s.get(&format!("/v3/contacts/{id}")).await;
    assert_eq!(got.body["attributes"], json!({ "FIRSTNAME": "Ada", "LASTNAME": "Lovelace" }));
    assert_eq!(got.body["listIds"], json!([1]));

    let none = s.post("/v3/contacts", json!({ "attributes": { "FIRSTNAME": "Nobody" } })).await;
    assert_error(&none, StatusCode::BAD_REQUEST, "missing_parameter");
    let bad = s.post("/v3/contacts", json!({ "email": "not-an-email" })).await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "invalid_parameter");
}

#[tokio::test]
async fn get_update_delete_by_identifiers() {
    let s = unlimited().await;
    let id = s.create_contact(json!({ "email": "grace+navy@example.com", "ext_id": "pd-42", "attributes": { "SMS": "+33612345678" } })).await;

    let by_email = s.get("/v3/contacts/grace%2Bnavy%40example.com").await;
    assert_eq!(by_email.status, StatusCode::OK, "{}", by_email.body);
    assert_spec("/contacts/{identifier}", "get", 200, &by_email.body);
    assert_eq!(by_email.body["id"], id);
    assert_eq!(by_email.body["attributes"]["EXT_ID"], "pd-42");
    // Stored without `+`, as the spec's examples show.
    assert_eq!(by_email.body["attributes"]["SMS"], "33612345678");

    let by_id = s.get(&format!("/v3/contacts/{id}")).await;
    assert_eq!(by_id.body["email"], "grace+navy@example.com");
    let by_ext = s.get("/v3/contacts/pd-42?identifierType=ext_id").await;
    assert_eq!(by_ext.body["id"], id);
    let by_phone = s.get("/v3/contacts/%2B33612345678?identifierType=phone_id").await;
    assert_eq!(by_phone.body["id"], id);

    assert_error(
        &s.get("/v3/contacts/nobody@example.com").await,
        StatusCode::NOT_FOUND,
        "document_not_found",
    );
    assert_error(&s.get("/v3/contacts/pd-42").await, StatusCode::BAD_REQUEST, "invalid_parameter");

    let put = s
        .call(
            Method::PUT,
            "/v3/contacts/pd-42?identifierType=ext_id",
            Some(json!({ "attributes": { "EMAIL": "grace@example.com" } })),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.body);
    assert_eq!(s.get(&format!("/v3/contacts/{id}")).await.body["email"], "grace@example.com");
    let missing = s
        .call(Method::PUT, "/v3/contacts/ghost@example.com", Some(json!({ "attributes": {} })))
        .await;
    assert_error(&missing, StatusCode::NOT_FOUND, "document_not_found");

    let list = s.get("/v3/contacts?limit=10&sort=asc").await;
    assert_spec("/contacts", "get", 200, &list.body);
    assert_eq!(list.body["count"], 1);
    let unencoded = s.get("/v3/contacts?modifiedSince=2026-01-01T00:00:00.000+01:00").await;
    assert_error(&unencoded, StatusCode::BAD_REQUEST, "invalid_parameter");
    let since = s.get("/v3/contacts?modifiedSince=2000-01-01T00%3A00%3A00.000Z").await;
    assert_eq!(since.body["count"], 1, "{}", since.body);

    let del = s.call(Method::DELETE, &format!("/v3/contacts/{id}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(s.get(&format!("/v3/contacts/{id}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_attributes_are_dropped_and_types_checked() {
    let s = unlimited().await;
    let created = s.post("/v3/contacts/attributes/normal/SCORE", json!({ "type": "float" })).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        s.post("/v3/contacts/attributes/normal/BIRTHDAY", json!({ "type": "date" })).await.status,
        StatusCode::CREATED
    );
    let again = s.post("/v3/contacts/attributes/normal/SCORE", json!({ "type": "float" })).await;
    assert_error(&again, StatusCode::BAD_REQUEST, "duplicate_parameter");
    let attrs = s.get("/v3/contacts/attributes").await;
    assert_spec("/contacts/attributes", "get", 200, &attrs.body);
    assert!(
        attrs.body["attributes"]
            .as_array()
            .is_some_and(|a| { a.iter().any(|x| x["name"] == "SCORE" && x["type"] == "float") })
    );

    let id = s
        .create_contact(json!({ "email": "x@example.com", "attributes": {
            "FIRSTNAME": "X", "NOT_AN_ATTRIBUTE": "dropped", "lastname": "lower-case is dropped", "SCORE": "not a number"
        } }))
        .await;
    let got = s.get(&format!("/v3/contacts/{id}")).await;
    assert_eq!(got.body["attributes"], json!({ "FIRSTNAME": "X" }));

    let bad_date = s
        .call(
            Method::PUT,
            &format!("/v3/contacts/{id}"),
            Some(json!({ "attributes": { "BIRTHDAY": "03/01/1990" } })),
        )
        .await;
    assert_error(&bad_date, StatusCode::BAD_REQUEST, "invalid_parameter");
    let ok = s
        .call(
            Method::PUT,
            &format!("/v3/contacts/{id}"),
            Some(json!({ "attributes": { "BIRTHDAY": "1990-01-03", "SCORE": 4.5 } })),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    assert_eq!(s.get(&format!("/v3/contacts/{id}")).await.body["attributes"]["SCORE"], 4.5);
}

#[tokio::test]
async fn sms_must_be_international_and_unique() {
    let s = unlimited().await;
    let national = s
        .post(
            "/v3/contacts",
            json!({ "email": "a@example.com", "attributes": { "SMS": "0612345678" } }),
        )
        .await;
    assert_error(&national, StatusCode::BAD_REQUEST, "invalid_parameter");
    assert_eq!(national.body["message"], "Invalid phone number");
    // The whole request failed: the contact was not created.
    assert_eq!(s.get("/v3/contacts/a@example.com").await.status, StatusCode::NOT_FOUND);

    s.create_contact(json!({ "email": "a@example.com", "attributes": { "SMS": "+33612345678" } }))
        .await;
    let dup = s
        .post(
            "/v3/contacts",
            json!({ "email": "b@example.com", "attributes": { "SMS": "0033612345678" } }),
        )
        .await;
    assert_error(&dup, StatusCode::BAD_REQUEST, "duplicate_parameter");
    assert_eq!(dup.body["metadata"]["duplicate_identifiers"], json!(["SMS"]));
    assert_eq!(
        dup.body["message"],
        "Unable to create contact, SMS is already associated with another Contact"
    );
    let upsert = s.post("/v3/contacts", json!({ "email": "b@example.com", "updateEnabled": true, "attributes": { "SMS": "33612345678" } })).await;
    assert_error(&upsert, StatusCode::BAD_REQUEST, "duplicate_parameter");

    let b = s.create_contact(json!({ "email": "b@example.com" })).await;
    let put = s
        .call(
            Method::PUT,
            &format!("/v3/contacts/{b}"),
            Some(json!({ "attributes": { "SMS": "+33 6 12 34 56 78" } })),
        )
        .await;
    assert_error(&put, StatusCode::BAD_REQUEST, "duplicate_parameter");
    assert!(
        put.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Unable to update contact, SMS"))
    );
}

#[tokio::test]
async fn lists_folders_and_membership() {
    let s = unlimited().await;
    let folder = s.post("/v3/contacts/folders", json!({ "name": "Pipedrive" })).await;
    assert_eq!(folder.status, StatusCode::CREATED);
    assert_spec("/contacts/folders", "post", 201, &folder.body);
    let list =
        s.post("/v3/contacts/lists", json!({ "name": "Won", "folderId": folder.body["id"] })).await;
    assert_eq!(list.status, StatusCode::CREATED, "{}", list.body);
    assert_spec("/contacts/lists", "post", 201, &list.body);
    let list_id = list.body["id"].as_i64().expect("id");
    assert_error(
        &s.post("/v3/contacts/lists", json!({ "name": "No folder" })).await,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
    );

    s.create_contact(json!({ "email": "a@example.com" })).await;
    let b = s.create_contact(json!({ "email": "b@example.com", "ext_id": "pd-2" })).await;

    let add = s
        .post(
            &format!("/v3/contacts/lists/{list_id}/contacts/add"),
            json!({ "emails": ["a@example.com", "ghost@example.com"] }),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.body);
    assert_spec("/contacts/lists/{listId}/contacts/add", "post", 201, &add.body);
    assert_eq!(add.body["contacts"]["success"], json!(["a@example.com"]));
    assert_eq!(add.body["contacts"]["failure"], json!(["ghost@example.com"]));
    let by_ext = s
        .post(&format!("/v3/contacts/lists/{list_id}/contacts/add"), json!({ "extIds": ["pd-2"] }))
        .await;
    assert_eq!(by_ext.status, StatusCode::CREATED, "{}", by_ext.body);
    // Nothing to do at all → the whole call is refused.
    let again =
        s.post(&format!("/v3/contacts/lists/{list_id}/contacts/add"), json!({ "ids": [b] })).await;
    assert_error(&again, StatusCode::BAD_REQUEST, "invalid_parameter");

    let too_many: Vec<String> = (0..151).map(|i| format!("p{i}@example.com")).collect();
    let refused = s
        .post(&format!("/v3/contacts/lists/{list_id}/contacts/add"), json!({ "emails": too_many }))
        .await;
    assert_error(&refused, StatusCode::BAD_REQUEST, "invalid_parameter");
    let unknown_list = s.post("/v3/contacts/lists/999/contacts/add", json!({ "ids": [b] })).await;
    assert_error(&unknown_list, StatusCode::NOT_FOUND, "document_not_found");

    let members = s.get(&format!("/v3/contacts/lists/{list_id}/contacts")).await;
    assert_spec("/contacts/lists/{listId}/contacts", "get", 200, &members.body);
    assert_eq!(members.body["count"], 2);
    let details = s.get(&format!("/v3/contacts/lists/{list_id}")).await;
    assert_spec("/contacts/lists/{listId}", "get", 200, &details.body);
    assert_eq!(details.body["uniqueSubscribers"], 2);

    let remove = s
        .post(&format!("/v3/contacts/lists/{list_id}/contacts/remove"), json!({ "ids": [b] }))
        .await;
    assert_eq!(remove.status, StatusCode::CREATED, "{}", remove.body);
    assert_spec("/contacts/lists/{listId}/contacts/remove", "post", 201, &remove.body);
    assert_eq!(remove.body["contacts"]["success"], json!([b]));
    assert_eq!(s.get(&format!("/v3/contacts/{b}")).await.body["listIds"], json!([]));

    let lists = s.get("/v3/contacts/lists?limit=50").await;
    assert_spec("/contacts/lists", "get", 200, &lists.body);
    assert_eq!(lists.body["count"], 2);
    assert_error(
        &s.get("/v3/contacts/lists?limit=51").await,
        StatusCode::BAD_REQUEST,
        "out_of_range",
    );
    let folders = s.get("/v3/contacts/folders").await;
    assert_spec("/contacts/folders", "get", 200, &folders.body);

    // PUT with unlinkListIds removes, listIds adds.
    let put = s
        .call(
            Method::PUT,
            "/v3/contacts/a@example.com",
            Some(json!({ "unlinkListIds": [list_id], "listIds": [1] })),
        )
        .await;
    assert_eq!(put.status, StatusCode::NO_CONTENT, "{}", put.body);
    assert_eq!(s.get("/v3/contacts/a@example.com").await.body["listIds"], json!([1]));
}

async fn wait_process(s: &Sandbox, id: i64) -> Value {
    for _ in 0..100 {
        let p = s.get(&format!("/v3/processes/{id}")).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_spec("/processes/{processId}", "get", 200, &p.body);
        if p.body["status"] == "completed" || p.body["status"] == "failed" {
            return p.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("process {id} never completed");
}

#[tokio::test]
async fn an_import_carries_up_to_ten_megabytes() {
    let s = unlimited().await;
    // About 4 MB of contacts: over axum's default body limit, well under Brevo's 10 MB.
    let rows: Vec<Value> = (0..20_000)
        .map(|i| json!({ "email": format!("bulk{i}@example.com"), "attributes": { "FIRSTNAME": "x".repeat(150) } }))
        .collect();
    let a = s.post("/v3/contacts/import", json!({ "listIds": [1], "jsonBody": rows })).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let done = wait_process(&s, a.body["processId"].as_i64().expect("processId")).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(s.get("/v3/contacts/bulk19999@example.com").await.status, StatusCode::OK);

    // Over 10 MB: Brevo's own error, not a bare refusal.
    let rows: Vec<Value> = (0..20_000)
        .map(|i| json!({ "email": format!("big{i}@example.com"), "attributes": { "FIRSTNAME": "x".repeat(480) } }))
        .collect();
    assert_error(
        &s.post("/v3/contacts/import", json!({ "listIds": [1], "jsonBody": rows })).await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );
}

#[tokio::test]
async fn import_runs_in_background_with_counters() {
    let s = unlimited().await;
    s.create_contact(json!({ "email": "old@example.com", "attributes": { "FIRSTNAME": "Old" } }))
        .await;
    let a = s
        .post("/v3/contacts/import", json!({
            "listIds": [1],
            "jsonBody": [
                { "email": "new1@example.com", "attributes": { "FIRSTNAME": "New", "UNKNOWN": "ignored" } },
                { "email": "old@example.com", "attributes": { "FIRSTNAME": "Updated" } },
                { "email": "new1@example.com" },
                { "email": "broken@" },
                { "email": "sms@example.com", "attributes": { "SMS": "+4915112345678" } }
            ]
        }))
        .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    assert_spec("/contacts/import", "post", 202, &a.body);
    let first = s.get(&format!("/v3/processes/{}", a.body["processId"])).await;
    assert_eq!(first.body["name"], "IMPORTUSER");
    let done = wait_process(&s, a.body["processId"].as_i64().expect("processId")).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["info"]["import"]["invalid_emails"], 1);
    assert_eq!(done["info"]["import"]["duplicate_email_id"], 1);

    let old = s.get("/v3/contacts/old@example.com").await;
    assert_eq!(old.body["attributes"]["FIRSTNAME"], "Updated");
    assert_eq!(old.body["listIds"], json!([1]));
    let new = s.get("/v3/contacts/new1@example.com").await;
    assert_eq!(new.body["attributes"], json!({ "FIRSTNAME": "New" }));

    let csv = s
        .post(
            "/v3/contacts/import",
            json!({
                "fileBody": "EMAIL;FIRSTNAME;SMS\ncsv@example.com;Csv;+4915112345678\n",
                "newList": { "listName": "Imported", "folderId": 1 }
            }),
        )
        .await;
    assert_eq!(csv.status, StatusCode::ACCEPTED, "{}", csv.body);
    let done = wait_process(&s, csv.body["processId"].as_i64().expect("processId")).await;
    assert_eq!(done["info"]["import"]["duplicate_phone_id"], 1, "{done}");
    assert_eq!(
        s.get("/v3/contacts/csv@example.com").await.body["attributes"],
        json!({ "FIRSTNAME": "Csv" })
    );

    let processes = s.get("/v3/processes").await;
    assert_spec("/processes", "get", 200, &processes.body);
    assert_error(
        &s.post("/v3/contacts/import", json!({ "listIds": [1] })).await,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
    );
    assert_error(&s.get("/v3/processes/999").await, StatusCode::NOT_FOUND, "document_not_found");
}

#[tokio::test]
async fn batch_update_is_all_or_nothing() {
    let s = unlimited().await;
    let a = s.create_contact(json!({ "email": "a@example.com" })).await;
    s.create_contact(json!({ "email": "b@example.com" })).await;
    let partial = s
        .post(
            "/v3/contacts/batch",
            json!({ "contacts": [
            { "id": a, "attributes": { "FIRSTNAME": "A" } },
            { "email": "ghost@example.com", "attributes": { "FIRSTNAME": "G" } }
        ] }),
        )
        .await;
    assert_error(&partial, StatusCode::NOT_FOUND, "document_not_found");
    assert_eq!(partial.body["message"], "No contact found for indexes 1");
    assert_eq!(s.get(&format!("/v3/contacts/{a}")).await.body["attributes"], json!({}));

    let ok = s
        .post(
            "/v3/contacts/batch",
            json!({ "contacts": [
            { "id": a, "attributes": { "FIRSTNAME": "A" }, "listIds": [1] },
            { "email": "b@example.com", "emailBlacklisted": true }
        ] }),
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT, "{}", ok.body);
    assert_eq!(s.get(&format!("/v3/contacts/{a}")).await.body["attributes"]["FIRSTNAME"], "A");
    assert_eq!(s.get("/v3/contacts/b@example.com").await.body["emailBlacklisted"], true);
}

#[tokio::test]
async fn companies_and_links() {
    let s = unlimited().await;
    let c1 = s.create_contact(json!({ "email": "a@example.com" })).await;
    let c2 = s.create_contact(json!({ "email": "b@example.com" })).await;
    let created = s.post("/v3/companies", json!({ "name": "Acme", "attributes": { "domain": "acme.test", "made_up": 1 }, "linkedContactsIds": [c1] })).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_spec("/companies", "post", 200, &created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 24);
    assert_error(
        &s.post("/v3/companies", json!({ "attributes": {} })).await,
        StatusCode::BAD_REQUEST,
        "missing_parameter",
    );

    let link = s
        .call(
            Method::PATCH,
            &format!("/v3/companies/link-unlink/{id}"),
            Some(json!({ "linkContactIds": [c2], "unlinkContactIds": [c1] })),
        )
        .await;
    assert_eq!(link.status, StatusCode::NO_CONTENT, "{}", link.body);
    let got = s.get(&format!("/v3/companies/{id}")).await;
    assert_spec("/companies/{id}", "get", 200, &got.body);
    assert_eq!(got.body["linkedContactsIds"], json!([c2]));
    assert_eq!(got.body["attributes"]["domain"], "acme.test");
    assert!(got.body["attributes"].get("made_up").is_none());

    let patched = s
        .call(
            Method::PATCH,
            &format!("/v3/companies/{id}"),
            Some(json!({ "name": "Acme Inc", "linkedContactsIds": [c1] })),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_spec("/companies/{id}", "patch", 200, &patched.body);
    assert_eq!(patched.body["linkedContactsIds"], json!([c1]));

    let listed = s.get(&format!("/v3/companies?linkedContactsIds={c1}")).await;
    assert_spec("/companies", "get", 200, &listed.body);
    assert_eq!(listed.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        s.call(Method::DELETE, &format!("/v3/companies/{id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.get(&format!("/v3/companies/{id}")).await,
        StatusCode::NOT_FOUND,
        "document_not_found",
    );
}

#[tokio::test]
async fn events_are_stored() {
    let s = unlimited().await;
    let id = s.create_contact(json!({ "email": "ada@example.com" })).await;
    let ev = s
        .post(
            "/v3/events",
            json!({
                "event_name": "deal_won",
                "event_date": "2026-03-01T10:00:00+01:00",
                "identifiers": { "email_id": "ada@example.com" },
                "contact_properties": { "FIRSTNAME": "Ada" },
                "event_properties": { "deal_id": 991, "value": 1200.5, "won": true }
            }),
        )
        .await;
    assert_eq!(ev.status, StatusCode::NO_CONTENT, "{}", ev.body);
    assert_error(
        &s.post(
            "/v3/events",
            json!({ "event_name": "bad name!", "identifiers": { "email_id": "a@b.co" } }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );
    assert_error(
        &s.post("/v3/events", json!({ "event_name": "x", "identifiers": {} })).await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );

    let batch = s
        .post(
            "/v3/events/batch",
            json!({ "events": [
            { "event_name": "call_logged", "identifiers": { "contact_id": id } },
            { "event_name": "meeting_logged", "identifiers": { "ext_id": "unknown" } }
        ] }),
        )
        .await;
    assert_eq!(batch.status, StatusCode::ACCEPTED, "{}", batch.body);
    assert_eq!(batch.body["count"], 2);
    let partial = s.post("/v3/events/batch", json!({ "events": [{ "event_name": "ok", "identifiers": { "contact_id": id } }, { "identifiers": {} }] })).await;
    assert_eq!(partial.status, StatusCode::MULTI_STATUS, "{}", partial.body);
    assert_eq!(partial.body["failed_events"], 1);

    let state = s.running.brevo.state(DEFAULT_API_KEY).expect("state");
    let events = state["events"].as_array().expect("events");
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["event_name"], "deal_won");
    assert_eq!(events[0]["contact_id"], id);
    assert_eq!(events[0]["event_properties"]["value"], 1200.5);
    assert_eq!(events[2]["contact_id"], Value::Null);
    assert_eq!(s.get(&format!("/v3/contacts/{id}")).await.body["attributes"]["FIRSTNAME"], "Ada");
}

/// A webhook receiver on port 0 collecting `(authorization header, body)`.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<(Option<String>, Value)>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let tx = Arc::new(Mutex::new(tx));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let tx = tx.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    if let Ok(tx) = tx.lock() {
                        let _ = tx.send((auth, body));
                    }
                    "ok"
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(Option<String>, Value)>,
) -> (Option<String>, Value) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a delivery within 5 s")
        .expect("channel open")
}

#[tokio::test]
async fn webhooks_are_delivered_on_trigger() {
    let s = unlimited().await;
    let (url, mut rx) = receiver().await;
    let hook = s
        .post(
            "/v3/webhooks",
            json!({
                "url": url, "type": "marketing", "description": "pipebridge",
                "events": ["unsubscribed", "hardBounce", "contactUpdated"],
                "auth": { "type": "bearer", "token": "s3cret" }
            }),
        )
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    assert_spec("/webhooks", "post", 201, &hook.body);
    let hook_id = hook.body["id"].clone();
    assert_error(
        &s.post("/v3/webhooks", json!({ "url": url, "type": "marketing", "events": ["sent"] }))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    );

    // type defaults to transactional when listing.
    assert_eq!(s.get("/v3/webhooks").await.body["webhooks"], json!([]));
    let listed = s.get("/v3/webhooks?type=marketing").await;
    assert_spec("/webhooks", "get", 200, &listed.body);
    assert_eq!(
        listed.body["webhooks"][0]["events"],
        json!(["unsubscribed", "hardBounce", "contactUpdated"])
    );

    s.create_contact(json!({ "email": "ada@example.com", "listIds": [1] })).await;
    let t = s
        .admin(
            Method::POST,
            "/_sandbox/trigger",
            Some(json!({ "event": "unsubscribed", "email": "ada@example.com" })),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.body);
    let (auth, payload) = next(&mut rx).await;
    assert_eq!(auth.as_deref(), Some("Bearer s3cret"));
    assert_eq!(payload["event"], "unsubscribe");
    assert_eq!(payload["email"], "ada@example.com");
    assert_eq!(payload["id"], hook_id);
    assert_eq!(payload["list_id"], json!([1]));
    assert!(payload["ts_event"].is_i64() && payload["date_event"].is_string());
    assert_eq!(s.get("/v3/contacts/ada@example.com").await.body["emailBlacklisted"], true);

    s.admin(
        Method::POST,
        "/_sandbox/trigger",
        Some(json!({ "event": "hardBounce", "email": "ada@example.com" })),
    )
    .await;
    assert_eq!(next(&mut rx).await.1["event"], "hard_bounce");

    // A Brevo-side edit, then an edit through the API: both arrive as contact_updated; api_key_name
    // tells them apart.
    s.admin(Method::POST, "/_sandbox/trigger", Some(json!({ "event": "contactUpdated", "email": "ada@example.com", "attributes": { "FIRSTNAME": "Augusta" } }))).await;
    let (_, edit) = next(&mut rx).await;
    assert_eq!(edit["event"], "contact_updated");
    assert_eq!(edit["attributes"]["FIRSTNAME"], "Augusta");
    assert_eq!(edit["api_key_name"], "");
    assert_eq!(
        s.get("/v3/contacts/ada@example.com").await.body["attributes"]["FIRSTNAME"],
        "Augusta"
    );
    s.call(
        Method::PUT,
        "/v3/contacts/ada@example.com",
        Some(json!({ "attributes": { "LASTNAME": "King" } })),
    )
    .await;
    let (_, via_api) = next(&mut rx).await;
    assert_eq!(via_api["event"], "contact_updated");
    assert_eq!(via_api["api_key_name"], "pipebridge-sandbox");

    // The API-made delivery is recorded once the receiver has answered: poll briefly.
    let mut recorded = 0;
    for _ in 0..50 {
        let state = s.admin(Method::GET, "/_sandbox/state", None).await;
        recorded = state.body["deliveries"].as_array().map_or(0, Vec::len);
        if recorded == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(recorded, 4);
    assert_eq!(
        s.call(Method::DELETE, &format!("/v3/webhooks/{hook_id}"), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.get(&format!("/v3/webhooks/{hook_id}")).await,
        StatusCode::NOT_FOUND,
        "document_not_found",
    );
}

#[tokio::test]
async fn rate_limits_answer_429_with_headers() {
    let s =
        start(Settings { contacts_per_second: 3, others_per_hour: 2, ..Settings::default() }).await;
    let ok = s.get("/v3/contacts").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.headers["x-sib-ratelimit-limit"], "3");
    assert_eq!(ok.headers["x-sib-ratelimit-remaining"], "2");
    assert!(ok.headers.contains_key("x-sib-ratelimit-reset"));

    // A burst well over the per-second limit: some answers must be 429.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let http = s.http.clone();
        let url = format!("{}/v3/contacts", s.running.brevo_url);
        burst.spawn(async move {
            http.get(url)
                .header("api-key", DEFAULT_API_KEY)
                .send()
                .await
                .map(|r| (r.status(), r.headers().clone()))
        });
    }
    let mut limited = 0;
    while let Some(done) = burst.join_next().await {
        let (status, headers) = done.expect("task").expect("request");
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert_eq!(headers["x-sib-ratelimit-remaining"], "0");
            let reset: u64 = headers["x-sib-ratelimit-reset"]
                .to_str()
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("reset");
            assert!((1..=1).contains(&reset), "reset {reset}");
        }
    }
    assert!(limited > 0, "no 429 in a burst of 12 with a limit of 3/s");

    // Other endpoints: per hour.
    assert_eq!(s.get("/v3/account").await.status, StatusCode::OK);
    assert_eq!(s.get("/v3/account").await.status, StatusCode::OK);
    let third = s.get("/v3/account").await;
    assert_error(&third, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    let reset: u64 = third.headers["x-sib-ratelimit-reset"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("reset");
    assert!(reset > 3000 && reset <= 3600, "reset {reset}");

    // Limits are per key: another account is untouched.
    s.admin(Method::POST, "/_sandbox/keys", Some(json!({ "api_key": "xkeysib-other" }))).await;
    assert_eq!(
        s.send(Method::GET, "/v3/account", Some("xkeysib-other"), None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn no_429_when_limits_are_off() {
    let s = start(Settings {
        rate_limits: false,
        contacts_per_second: 1,
        others_per_hour: 1,
        ..Settings::default()
    })
    .await;
    for _ in 0..5 {
        let a = s.get("/v3/contacts").await;
        assert_eq!(a.status, StatusCode::OK);
        assert!(!a.headers.contains_key("x-sib-ratelimit-limit"));
        assert_eq!(s.get("/v3/account").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn accounts_are_isolated_and_admin_works() {
    let s = unlimited().await;
    let added = s
        .admin(Method::POST, "/_sandbox/keys", Some(json!({ "api_key": "xkeysib-tenant-b" })))
        .await;
    assert_eq!(added.status, StatusCode::CREATED);
    s.create_contact(json!({ "email": "a@example.com" })).await;
    let other =
        s.send(Method::GET, "/v3/contacts/a@example.com", Some("xkeysib-tenant-b"), None).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    let b_state = s.admin(Method::GET, "/_sandbox/state?api_key=xkeysib-tenant-b", None).await;
    assert_eq!(b_state.body["contacts"], json!([]));

    let log = s.admin(Method::GET, "/_sandbox/requests", None).await;
    let entries = log.body["requests"].as_array().expect("requests");
    assert!(
        entries
            .iter()
            .any(|r| r["method"] == "POST" && r["path"] == "/v3/contacts" && r["status"] == 201)
    );

    s.admin(Method::POST, "/_sandbox/faults", Some(json!({ "force_429": true }))).await;
    assert_eq!(s.get("/v3/contacts").await.status, StatusCode::TOO_MANY_REQUESTS);
    s.admin(Method::POST, "/_sandbox/faults", Some(json!({ "error_rate": 1.0 }))).await;
    assert_eq!(s.get("/v3/contacts").await.status, StatusCode::INTERNAL_SERVER_ERROR);
    s.admin(Method::POST, "/_sandbox/faults", Some(json!({}))).await;
    assert_eq!(s.get("/v3/contacts").await.status, StatusCode::OK);

    let reset = s.admin(Method::POST, "/_sandbox/reset", None).await;
    assert_eq!(reset.status, StatusCode::OK);
    assert_eq!(s.get("/v3/contacts").await.body["count"], 0);
    // Registered keys survive a reset.
    assert_eq!(
        s.send(Method::GET, "/v3/account", Some("xkeysib-tenant-b"), None).await.status,
        StatusCode::OK
    );
}
