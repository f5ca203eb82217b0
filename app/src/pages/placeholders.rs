//! Pages whose content later work fills in; for now they tell where things stand.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::tenant::use_tenant;

#[component]
pub fn DashboardPage() -> impl IntoView {
    let ctx = use_tenant();
    let base = format!("/t/{}", ctx.id());
    view! {
        <Title text="Dashboard"/>
        <h1>"Dashboard"</h1>
        <div class="cards">
            <section class="card">
                <h2>"Pipedrive"</h2>
                <p class="status off">"Not connected yet"</p>
                <A href=format!("{base}/connections")>"Connect Pipedrive"</A>
            </section>
            <section class="card">
                <h2>"Brevo"</h2>
                <p class="status off">"Not connected yet"</p>
                <A href=format!("{base}/connections")>"Add your Brevo API key"</A>
            </section>
            <section class="card">
                <h2>"Last sync"</h2>
                <p class="status">"No sync has run yet"</p>
                <A href=format!("{base}/history")>"Sync history"</A>
            </section>
        </div>
    }
}

#[component]
pub fn HistoryPage() -> impl IntoView {
    view! {
        <Title text="Sync history"/>
        <h1>"Sync history"</h1>
        <p class="muted">"No sync has run yet."</p>
    }
}
