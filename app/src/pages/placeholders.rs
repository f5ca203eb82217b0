//! The dashboard: both connections' status, and the sync with its live progress.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::tenant::use_tenant;
use crate::api::{ConnectionView, load_connections};

#[component]
pub fn DashboardPage() -> impl IntoView {
    let ctx = use_tenant();
    let base = format!("/t/{}", ctx.id());
    let tenant_id = ctx.id();
    let connections = Resource::new(|| (), move |_| load_connections(tenant_id.clone()));
    let card = move |title: &'static str, conn: Option<ConnectionView>, href: String, action: &'static str| {
        let (class, text) = match &conn {
            Some(c) if c.status == "connected" => ("status on", format!("Connected: {}", c.account_label)),
            Some(_) => ("status off", "Needs reauthorization".to_owned()),
            None => ("status off", "Not connected yet".to_owned()),
        };
        view! {
            <section class="card">
                <h2>{title}</h2>
                <p class=class data-testid=format!("dashboard-{}", title.to_lowercase())>{text}</p>
                <A href=href>{if conn.is_some() { "Manage" } else { action }}</A>
            </section>
        }
    };
    view! {
        <Title text="Dashboard"/>
        <h1>"Dashboard"</h1>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new({
                let base = base.clone();
                async move {
                    connections.await.map(|c| view! {
                        <div class="cards">
                            {card("Pipedrive", c.pipedrive, format!("{base}/connections"), "Connect Pipedrive")}
                            {card("Brevo", c.brevo, format!("{base}/connections"), "Add your Brevo API key")}
                        </div>
                        <super::sync::SyncPanel/>
                        <p><A href=format!("{base}/history")>"Sync history"</A></p>
                    })
                }
            })}
        </Transition>
    }
}
