//! The dashboard: the first-run checklist (until a first sync has succeeded), both connections'
//! status, and the sync with its live progress.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use super::tenant::use_tenant;
use crate::api::{ChecklistView, ConnectionView, StepState, first_run_checklist, load_connections};

#[component]
pub fn DashboardPage() -> impl IntoView {
    let ctx = use_tenant();
    let base = format!("/t/{}", ctx.id());
    let tenant_id = ctx.id();
    let connections = Resource::new(|| (), move |_| load_connections(tenant_id.clone()));
    let card = move |title: &'static str,
                     conn: Option<ConnectionView>,
                     href: String,
                     action: &'static str| {
        let (class, text) = match &conn {
            Some(c) if c.status == "connected" => {
                ("status on", format!("Connected: {}", c.account_label))
            }
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
        <Checklist base=base.clone() tenant_id=ctx.id()/>
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

/// The four steps from a new company to contacts in Brevo, each with its state and a link; shown
/// until the first sync has succeeded, and kept current while the page is open.
#[component]
fn Checklist(base: String, tenant_id: String) -> impl IntoView {
    let tick = super::sync::ticker(3000);
    // Read again every few seconds while the checklist shows, and no more once it is done.
    let done = RwSignal::new(false);
    let checklist = Resource::new(
        move || (!done.get()).then(|| tick.get()),
        move |_| first_run_checklist(tenant_id.clone()),
    );
    Effect::new(move |_| {
        if checklist.get().is_some_and(|c| c.is_ok_and(|c| c.done)) {
            done.set(true);
        }
    });
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new({
                let base = base.clone();
                async move { checklist.await.ok().filter(|c| !c.done).map(|c| view! { <Steps c base/> }) }
            })}
        </Transition>
    }
}

#[component]
fn Steps(c: ChecklistView, base: String) -> impl IntoView {
    let connect_text = |s: StepState, what: &str| match s {
        StepState::Done => format!("{what} is connected."),
        StepState::Attention => format!("{what} needs to be connected again."),
        _ => "Not connected yet.".to_owned(),
    };
    let mapping_text = match c.mapping_version {
        Some(v) => format!("Version {v} is in force."),
        None => "Choose the lists and fields, then save.".to_owned(),
    };
    let sync_text = match c.first_sync {
        StepState::Underway => "The first sync is under way: its progress is below.",
        StepState::Attention => {
            "The last sync failed: Sync history says why. Fix it and sync again."
        }
        StepState::Done => "Done.",
        StepState::Todo => "Press Sync now below: your contacts go to Brevo.",
    };
    let steps = [
        (
            "pipedrive",
            "Connect Pipedrive",
            c.pipedrive,
            connect_text(c.pipedrive, "Pipedrive"),
            format!("{base}/connections"),
        ),
        (
            "brevo",
            "Connect Brevo",
            c.brevo,
            connect_text(c.brevo, "Brevo"),
            format!("{base}/connections"),
        ),
        ("mapping", "Save a mapping", c.mapping, mapping_text, format!("{base}/mappings")),
        ("sync", "Run the first sync", c.first_sync, sync_text.to_owned(), format!("{base}#sync")),
    ];
    view! {
        <section class="card checklist" data-testid="checklist">
            <h2>"Get started"</h2>
            <ol>
                {steps.into_iter().map(|(step, title, state, text, href)| {
                    let (mark, state_name) = match state {
                        StepState::Done => ("✓", "done"),
                        StepState::Underway => ("…", "underway"),
                        StepState::Attention => ("!", "attention"),
                        StepState::Todo => ("", "todo"),
                    };
                    view! {
                        <li data-step=step data-state=state_name>
                            <span class="mark" aria-hidden="true">{mark}</span>
                            <span><a href=href>{title}</a><br/><span class="muted">{text}</span></span>
                        </li>
                    }
                }).collect_view()}
            </ol>
        </section>
    }
}
