//! The Brevo client against the sandbox over HTTP: contacts, import processes, list membership in
//! chunks of 150, attributes, companies, events, decoded errors, and rate limits waited out.

use std::sync::Arc;

use pipebridge::brevo::BrevoError;
use pipebridge::brevo::api::{BrevoApi, BrevoLimits, ImportContact, Upserted};
use pipebridge::secrets::Secret;
use pipebridge_sandbox::brevo::DEFAULT_API_KEY;
use serde_json::{Map, Value, json};

async fn sandbox(
    tune: impl FnOnce(&mut pipebridge_sandbox::brevo::Settings),
) -> (pipebridge_sandbox::Running, BrevoApi) {
    let mut config = pipebridge_sandbox::Config::default();
    config.brevo.rate_limits = false;
    tune(&mut config.brevo);
    let sb = pipebridge_sandbox::start(config).await.unwrap();
    let api = BrevoApi::new(
        &sb.brevo_url,
        Secret::new(DEFAULT_API_KEY),
        Arc::new(BrevoLimits::new(1000, 100_000)),
    );
    (sb, api)
}

fn attrs(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

async fn state(sb: &pipebridge_sandbox::Running) -> Value {
    reqwest::get(format!("{}/_sandbox/state", sb.brevo_url)).await.unwrap().json().await.unwrap()
}

async fn a_list(sb: &pipebridge_sandbox::Running) -> i64 {
    let res: Value = reqwest::Client::new()
        .post(format!("{}/v3/contacts/lists", sb.brevo_url))
        .header("api-key", DEFAULT_API_KEY)
        .json(&json!({"name": "Customers", "folderId": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    res["id"].as_i64().unwrap_or_else(|| panic!("{res}"))
}

#[tokio::test]
async fn contacts_are_upserted_read_and_deleted() {
    let (_sb, api) = sandbox(|_| {}).await;
    let first = api
        .upsert_contact(
            "ann@example.com",
            &attrs(json!({"FIRSTNAME": "Ann", "NOT_AN_ATTRIBUTE": 1})),
            &[],
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(first, Upserted::Created(_)));
    assert_eq!(
        api.upsert_contact("ann@example.com", &attrs(json!({"LASTNAME": "Lee"})), &[], &[])
            .await
            .unwrap(),
        Upserted::Updated
    );
    let c = api.get_contact("ann@example.com").await.unwrap().expect("exists");
    assert_eq!(c.attributes["FIRSTNAME"], "Ann");
    assert_eq!(c.attributes["LASTNAME"], "Lee");
    assert!(!c.attributes.contains_key("NOT_AN_ATTRIBUTE"), "unknown attributes are dropped");
    assert!(api.delete_contact("ann@example.com").await.unwrap());
    assert!(api.get_contact("ann@example.com").await.unwrap().is_none());
    assert!(!api.delete_contact("ann@example.com").await.unwrap());
}

#[tokio::test]
async fn phone_errors_are_told_apart() {
    let (_sb, api) = sandbox(|_| {}).await;
    let e = api
        .upsert_contact("bob@example.com", &attrs(json!({"SMS": "555-0100"})), &[], &[])
        .await
        .unwrap_err();
    assert!(matches!(e, BrevoError::InvalidPhone), "{e:?}");
    api.upsert_contact("cid@example.com", &attrs(json!({"SMS": "+3725550100"})), &[], &[])
        .await
        .unwrap();
    let e = api
        .upsert_contact("dan@example.com", &attrs(json!({"SMS": "+3725550100"})), &[], &[])
        .await
        .unwrap_err();
    assert!(matches!(e, BrevoError::SmsTaken), "{e:?}");
    let bad = BrevoApi::new(
        &_sb.brevo_url,
        Secret::new("xkeysib-wrong"),
        Arc::new(BrevoLimits::documented()),
    );
    assert!(matches!(bad.get_contact("x@example.com").await.unwrap_err(), BrevoError::BadKey(_)));
}

#[tokio::test]
async fn list_membership_goes_in_chunks_of_150() {
    let (sb, api) = sandbox(|_| {}).await;
    let all_contacts = a_list(&sb).await;
    let list = a_list(&sb).await;
    let emails: Vec<String> = (0..320).map(|i| format!("p{i}@example.com")).collect();
    let contacts: Vec<ImportContact> =
        emails.iter().map(|e| ImportContact { email: e, attributes: ["{}", "{}"] }).collect();
    // Brevo imports need a list (listIds or newList): the "all contacts" list of the mapping.
    let process = api.import_json(&contacts, &[all_contacts]).await.unwrap();
    let done =
        api.wait_process(process, &[std::time::Duration::from_millis(100); 200]).await.unwrap();
    assert_eq!(done.status, "completed");

    reqwest::Client::new()
        .delete(format!("{}/_sandbox/requests", sb.brevo_url))
        .send()
        .await
        .unwrap();
    let added = api.add_to_list(list, &emails).await.unwrap();
    assert_eq!(added.success.len(), 320);
    let log: Value = reqwest::get(format!("{}/_sandbox/requests", sb.brevo_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let calls = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or_default().ends_with("/contacts/add"))
        .count();
    assert_eq!(calls, 3, "150 + 150 + 20");
    // Adding again changes nothing and is not an error.
    let again = api.add_to_list(list, &emails[..10]).await.unwrap();
    assert!(again.success.is_empty() && again.failure.len() == 10, "{again:?}");
    let removed = api.remove_from_list(list, &emails[..200]).await.unwrap();
    assert_eq!(removed.success.len(), 200);
    let c = api.get_contact("p0@example.com").await.unwrap().unwrap();
    assert!(!c.list_ids.contains(&list));
    let c = api.get_contact("p300@example.com").await.unwrap().unwrap();
    assert!(c.list_ids.contains(&list));
}

#[tokio::test]
async fn attributes_companies_and_events() {
    let (sb, api) = sandbox(|_| {}).await;
    let names: Vec<String> = api.attributes().await.unwrap().into_iter().map(|a| a.name).collect();
    assert!(names.iter().any(|n| n == "FIRSTNAME"));
    api.create_attribute("lead_source", "text").await.unwrap();
    assert!(
        api.attributes()
            .await
            .unwrap()
            .iter()
            .any(|a| a.name == "LEAD_SOURCE" && a.category == "normal")
    );
    api.upsert_contact("ann@example.com", &attrs(json!({"LEAD_SOURCE": "Referral"})), &[], &[])
        .await
        .unwrap();
    let ann = api.get_contact("ann@example.com").await.unwrap().unwrap();
    assert_eq!(ann.attributes["LEAD_SOURCE"], "Referral");

    let company = api.create_company("Acme Ltd", &Map::new()).await.unwrap();
    api.link_company(&company, &[ann.id], &[]).await.unwrap();
    api.track_event(
        "deal_stage_changed",
        "ann@example.com",
        &attrs(json!({"newStage": "Won", "value": 1200})),
    )
    .await
    .unwrap();
    api.track_events(&[
        ("activity_logged".into(), "ann@example.com".into(), attrs(json!({"type": "call"}))),
        ("activity_logged".into(), "ann@example.com".into(), attrs(json!({"type": "meeting"}))),
    ])
    .await
    .unwrap();
    let s = state(&sb).await;
    let events = s["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["event_name"] == "deal_stage_changed"), "{s}");
    assert_eq!(
        events.iter().filter(|e| e["event_name"] == "activity_logged").count(),
        2,
        "the batch"
    );
    let companies = s["companies"].as_array().unwrap();
    assert!(
        companies.iter().any(|c| c["name"] == "Acme Ltd" || c["attributes"]["name"] == "Acme Ltd"),
        "{s}"
    );
}

#[tokio::test]
async fn brevo_rate_limits_are_waited_out() {
    // The sandbox allows 3 contact calls a second; the client is told 10 (as documented), so it
    // meets 429s and must wait for the reset instead of failing.
    let (sb, _) = sandbox(|s| {
        s.rate_limits = true;
        s.contacts_per_second = 3;
    })
    .await;
    let api = BrevoApi::new(
        &sb.brevo_url,
        Secret::new(DEFAULT_API_KEY),
        Arc::new(BrevoLimits::documented()),
    );
    for i in 0..8 {
        api.upsert_contact(&format!("r{i}@example.com"), &Map::new(), &[], &[]).await.unwrap();
    }
    let log: Value = reqwest::get(format!("{}/_sandbox/requests", sb.brevo_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<u64> = log["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    assert!(statuses.contains(&429), "the limit was met: {statuses:?}");
    for i in 0..8 {
        assert!(
            api.get_contact(&format!("r{i}@example.com")).await.unwrap().is_some(),
            "nothing lost"
        );
    }
}
