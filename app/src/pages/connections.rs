//! Connections: Pipedrive (OAuth, or an API token with the company domain) and Brevo (API key,
//! checked before it is saved). Secrets are never shown: only their last four characters.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::tenant::use_tenant;
use crate::api::{
    ConnectPipedriveToken, ConnectionView, Disconnect, SaveBrevoKey, SetPipedriveBudget,
    load_connections,
};
use crate::components::{ActionMessage, FormResult, Time};

#[component]
pub fn ConnectionsPage() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let save_key = ServerAction::<SaveBrevoKey>::new();
    let token = ServerAction::<ConnectPipedriveToken>::new();
    let disconnect = ServerAction::<Disconnect>::new();
    let data = Resource::new(
        move || (save_key.version().get(), token.version().get(), disconnect.version().get()),
        {
            let tenant_id = tenant_id.clone();
            move |_| load_connections(tenant_id.clone())
        },
    );
    let can_manage = ctx.can_manage();
    let query = use_query_map();
    let outcome = move || {
        let q = query.read();
        oauth_outcome(q.get("pipedrive").as_deref(), q.get("reason").as_deref())
    };
    view! {
        <Title text="Connections"/>
        <h1>"Connections"</h1>
        {move || outcome().map(|(ok, message)| if ok {
            view! { <p class="notice ok" role="status">{message}</p> }.into_any()
        } else {
            view! { <p class="notice error" role="alert">{message}</p> }.into_any()
        })}
        {(!can_manage).then(|| view! { <p class="notice">"You are a viewer here: you can see the connections, not change them."</p> })}
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new({
                let tenant_id = tenant_id.clone();
                async move {
                    data.await.map(|c| view! {
                        {c.sandbox.then(|| view! {
                            <p class="notice sandbox" data-testid="sandbox-notice">
                                "Sandbox mode: these connections go to the local sandbox (fake Pipedrive and Brevo), not the real services."
                            </p>
                        })}
                        <section class="card" id="pipedrive">
                            <h2>"Pipedrive"</h2>
                            {match c.pipedrive.clone() {
                                Some(p) => view! { <Connected conn=p provider="pipedrive" tenant_id=tenant_id.clone() can_manage disconnect/> }.into_any(),
                                None => view! { <p class="status off">"Not connected yet."</p> }.into_any(),
                            }}
                            {can_manage.then(|| view! { <PipedriveConnect tenant_id=tenant_id.clone() token connected=c.pipedrive.is_some()/> })}
                        </section>
                        <section class="card" id="brevo">
                            <h2>"Brevo"</h2>
                            {match c.brevo {
                                Some(b) => view! { <Connected conn=b provider="brevo" tenant_id=tenant_id.clone() can_manage disconnect/> }.into_any(),
                                None => view! { <p class="status off">"Not connected yet."</p> }.into_any(),
                            }}
                            {can_manage.then(|| view! {
                                <ActionForm action=save_key attr:class="stack" attr:id="brevo-form">
                                    <input type="hidden" name="tenant_id" value=tenant_id.clone()/>
                                    <label for="api_key">"Brevo API key " <span class="hint">"(SMTP & API → API keys; starts with xkeysib-)"</span></label>
                                    <input id="api_key" name="api_key" type="password" autocomplete="off" required/>
                                    <button type="submit" class="primary" disabled=move || save_key.pending().get()>
                                        {move || if save_key.pending().get() { "Checking with Brevo…" } else { "Check and save key" }}
                                    </button>
                                </ActionForm>
                            })}
                        </section>
                    })
                }
            })}
        </Transition>
        <FormResult value=move || save_key.value().get() success="The Brevo key works and was saved."/>
        <FormResult value=move || token.value().get() success="Pipedrive connected."/>
        <FormResult value=move || disconnect.value().get()/>
    }
}

/// The message for the outcome of a "Connect Pipedrive" round trip, from the callback's redirect.
fn oauth_outcome(result: Option<&str>, reason: Option<&str>) -> Option<(bool, &'static str)> {
    Some(match (result?, reason) {
        ("connected", _) => (true, "Pipedrive connected."),
        ("denied", _) => {
            (false, "Pipedrive was not connected: access was not allowed on Pipedrive's page.")
        }
        ("failed", Some("refused")) => {
            (false, "Pipedrive did not accept the authorization. Please connect again.")
        }
        ("failed", Some("unavailable")) => {
            (false, "Pipedrive could not be reached. Please try again in a moment.")
        }
        ("failed", _) => (
            false,
            "Something went wrong on our side and it has been logged. Please connect again.",
        ),
        _ => return None,
    })
}

#[component]
fn Connected(
    conn: ConnectionView,
    provider: &'static str,
    tenant_id: String,
    can_manage: bool,
    disconnect: ServerAction<Disconnect>,
) -> impl IntoView {
    let how = match conn.auth_kind.as_str() {
        "oauth" => "OAuth",
        "api_token" => "API token",
        _ => "API key",
    };
    let ok = conn.status == "connected";
    view! {
        <p class=if ok { "status on" } else { "status off" } data-testid=format!("{provider}-status")>
            {if ok { "Connected" } else { "Needs reauthorization: connect again" }}
            {conn.is_sandbox.then_some(" (sandbox)")}
        </p>
        <dl class="facts">
            <dt>"Account"</dt><dd>{conn.account_label.clone()}</dd>
            <dt>"Using"</dt><dd>{how} " ending in " <code data-testid=format!("{provider}-last4")>{"…"}{conn.last4.clone()}</code></dd>
            <dt>"Last check"</dt><dd>{match conn.last_checked.clone() { Some(at) => view! { <Time at/> }.into_any(), None => "never".into_any() }}</dd>
        </dl>
        {conn.last_error.clone().map(|e| view! { <p class="notice error">{e}</p> })}
        {(provider == "pipedrive").then(|| view! { <BudgetForm tenant_id=tenant_id.clone() current=conn.daily_token_budget can_manage/> })}
        {can_manage.then(|| view! {
            <ActionForm action=disconnect attr:class="inline-form">
                <input type="hidden" name="tenant_id" value=tenant_id/>
                <input type="hidden" name="provider" value=provider/>
                <button type="submit" class="danger">"Disconnect"</button>
            </ActionForm>
        })}
    }
}

#[component]
fn PipedriveConnect(
    tenant_id: String,
    token: ServerAction<ConnectPipedriveToken>,
    connected: bool,
) -> impl IntoView {
    let start = format!("/t/{tenant_id}/connections/pipedrive/connect");
    view! {
        <p>
            // A full page load: the server redirects to Pipedrive's consent page.
            <a class="button primary" href=start rel="external" data-testid="connect-pipedrive">
                {if connected { "Reconnect Pipedrive" } else { "Connect Pipedrive" }}
            </a>
        </p>
        <details>
            <summary>"Or use an API token"</summary>
            <ActionForm action=token attr:class="stack">
                <input type="hidden" name="tenant_id" value=tenant_id/>
                <label for="api_token">"API token " <span class="hint">"(Personal preferences → API)"</span></label>
                <input id="api_token" name="api_token" type="password" autocomplete="off" required/>
                <label for="company_domain">"Company domain " <span class="hint">"(the part before .pipedrive.com)"</span></label>
                <input id="company_domain" name="company_domain" type="text" required/>
                <button type="submit">"Connect with the token"</button>
            </ActionForm>
        </details>
    }
}

/// The company's daily Pipedrive token budget: 30,000 × plan multiplier × seats. The sync plans
/// around it instead of finding it through 429s.
#[component]
fn BudgetForm(tenant_id: String, current: Option<i64>, can_manage: bool) -> impl IntoView {
    let set = ServerAction::<SetPipedriveBudget>::new();
    view! {
        <ActionForm action=set attr:class="inline-form" attr:id="budget-form">
            <input type="hidden" name="tenant_id" value=tenant_id/>
            <label for="budget">"Daily token budget " <span class="hint">"(30,000 × plan multiplier × seats; empty: the server's default)"</span></label>
            <input id="budget" name="budget" type="text" inputmode="numeric" value=current.map(|c| c.to_string()).unwrap_or_default() disabled=!can_manage/>
            {can_manage.then(|| view! { <button type="submit">"Save"</button> })}
        </ActionForm>
        <ActionMessage value=move || set.value().get()/>
    }
}
