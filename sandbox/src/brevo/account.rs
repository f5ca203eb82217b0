//! `GET /v3/account` (spec `getAccount`; reference §9): a fixed account per API key.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::http::ApiResult;
use super::{ApiKey, Brevo};

pub(crate) async fn get_account(
    State(brevo): State<Brevo>,
    Extension(key): Extension<ApiKey>,
) -> ApiResult<Response> {
    let n = brevo.with_account(&key, |account| account.number)?;
    let email = format!("owner{n}@sandbox-account.example");
    let body = json!({
        "organization_id": format!("{:024x}", n),
        "user_id": 1_000_000 + n,
        "enterprise": false,
        "email": email,
        "firstName": "Sandbox",
        "lastName": format!("Owner {n}"),
        "companyName": format!("Sandbox Account {n}"),
        "address": { "street": "1 Rue du Test", "city": "Paris", "zipCode": "75001", "country": "France" },
        "dateTimePreferences": { "timezone": "Europe/Paris", "timeFormat": "24", "dateFormat": "dd-mm-yyyy" },
        "plan": [{ "type": "free", "creditsType": "sendLimit", "credits": 300.0 }],
        "relay": { "enabled": true, "data": { "userName": email, "relay": "smtp-relay.brevo.com", "port": 587 } },
        "marketingAutomation": { "enabled": true, "key": format!("sandbox-ma-key-{n}") },
    });
    Ok(axum::Json(body).into_response())
}
