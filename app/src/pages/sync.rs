//! Syncing, as a person sees it: "Sync now" and "Full resync", the live progress of the running
//! sync (polled every two seconds once the page is hydrated), the run history, and a run's counts
//! and record errors with their retry.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use super::tenant::use_tenant;
use crate::api::{RetryErrors, RunView, StartSync, run_detail, sync_overview};
use crate::components::{ActionMessage, Time};

/// True once the page is hydrated. Live data (runs, progress) renders from then on only: the server
/// sends the frame, so hydration never meets a sync that started or moved on in between.
fn mounted() -> RwSignal<bool> {
    let mounted = RwSignal::new(false);
    Effect::new(move |_| mounted.set(true));
    mounted
}

/// A signal that ticks every `ms` milliseconds in the browser (never on the server).
pub(super) fn ticker(ms: u64) -> ReadSignal<u32> {
    let (tick, set_tick) = signal(0u32);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(
            move || set_tick.update(|t| *t = t.wrapping_add(1)),
            std::time::Duration::from_millis(ms),
        ) {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}

fn status_label(status: &str) -> &'static str {
    match status {
        "running" => "Running",
        "waiting" => "Waiting",
        "succeeded" => "Succeeded",
        "failed" => "Failed",
        _ => "Unknown",
    }
}

/// The progress bar of a running (or waiting) run.
#[component]
fn Progress(run: RunView) -> impl IntoView {
    let active = run.status == "running" || run.status == "waiting";
    let read: u64 = run.counts.iter().map(|c| c.read).sum();
    view! {
        <div class="progress-block" data-testid="sync-progress" data-status=run.status.clone()>
            <div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow=run.percent>
                <div class="progress-fill" style=format!("width: {}%", run.percent)></div>
            </div>
            <p class="muted">
                {format!("{} {} · {}%", status_label(&run.status), run.mode, run.percent)}
                {active.then(|| run.phase.clone().map(|p| format!(" · {p}"))).flatten()}
                {format!(" · {read} records read · {} Pipedrive tokens · {} Brevo calls", run.pipedrive_tokens, run.brevo_calls)}
            </p>
            {run.message.clone().map(|m| view! { <p class="notice" data-testid="run-message">{m}</p> })}
        </div>
    }
}

/// Buttons and the latest run; on the dashboard and the history page.
#[component]
pub fn SyncPanel() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let base = format!("/t/{}/history", ctx.id());
    let start = ServerAction::<StartSync>::new();
    let tick = ticker(2000);
    let can_manage = ctx.can_manage();
    let form_tenant = ctx.id();
    let form_tenant2 = ctx.id();
    // Live data, read in the browser only: the server renders the loading state, so what the
    // page hydrates never depends on a run that started in between.
    let overview = LocalResource::new({
        let tenant_id = tenant_id.clone();
        move || {
            tick.track();
            start.version().track();
            sync_overview(tenant_id.clone())
        }
    });
    let mounted = mounted();
    let panel = move || {
        let (form_tenant, form_tenant2, base) =
            (form_tenant.clone(), form_tenant2.clone(), base.clone());
        mounted.get().then(move || view! {
            // Static elements around the dynamic parts keep hydration simple.
            <div class="button-row" hidden=!can_manage>
                <ActionForm action=start attr:class="inline-form">
                    <input type="hidden" name="tenant_id" value=form_tenant/>
                    <input type="hidden" name="full_resync" value="false"/>
                    <button type="submit" class="primary" data-testid="sync-now">"Sync now"</button>
                </ActionForm>
                <ActionForm action=start attr:class="inline-form">
                    <input type="hidden" name="tenant_id" value=form_tenant2/>
                    <input type="hidden" name="full_resync" value="true"/>
                    <button type="submit" data-testid="full-resync" title="Read everything from Pipedrive and write it to Brevo again">"Full resync"</button>
                </ActionForm>
            </div>
            <ActionMessage value=move || start.value().get()/>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new({
                    let base = base.clone();
                    async move {
                        overview.await.map(|o| {
                            let pending = o.pending;
                            match o.runs.into_iter().next() {
                                Some(run) => view! {
                                    <p>
                                        <A href=format!("{base}/{}", run.id)>{format!("Run #{}", run.id)}</A>
                                        " · started " <Time at=run.started_at.clone()/> {format!(" · {}", run.duration)}
                                    </p>
                                    <Progress run=run/>
                                }.into_any(),
                                None if pending => view! { <p class="status" data-testid="sync-queued">"A first sync is queued."</p> }.into_any(),
                                None => view! { <p class="status" data-testid="no-sync">"No sync has run yet."</p> }.into_any(),
                            }
                        })
                    }
                })}
            </Transition>
        })
    };
    view! {
        <section class="card" id="sync">
            <h2>"Sync"</h2>
            {panel}
        </section>
    }
}

#[component]
pub fn HistoryPage() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let base = StoredValue::new(format!("/t/{}/history", ctx.id()));
    let tick = ticker(3000);
    let overview = LocalResource::new(move || {
        tick.track();
        sync_overview(tenant_id.clone())
    });
    let mounted = mounted();
    view! {
        <Title text="Sync history"/>
        <h1>"Sync history"</h1>
        <SyncPanel/>
        <section class="card">
            <h2>"Runs"</h2>
            <Show when=move || mounted.get() fallback=|| view! { <p class="loading">"Loading…"</p> }>
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new({
                    let base = base.get_value();
                    async move {
                        overview.await.map(|o| if o.runs.is_empty() {
                            view! { <p class="muted">"No sync has run yet."</p> }.into_any()
                        } else {
                            view! {
                                <div class="table-wrap">
                                <table class="table" id="runs">
                                    <thead><tr>
                                        <th>"Run"</th><th>"Started"</th><th>"Kind"</th><th>"Trigger"</th><th>"Status"</th>
                                        <th>"Duration"</th><th>"Contacts written"</th><th>"Tokens"</th><th>"Brevo calls"</th><th>"Errors"</th>
                                    </tr></thead>
                                    <tbody>
                                        {o.runs.into_iter().map(|r| {
                                            let written: u64 = r.counts.iter().filter(|c| c.entity == "person").map(|c| c.created + c.updated).sum();
                                            view! {
                                                <tr data-status=r.status.clone()>
                                                    <td><A href=format!("{base}/{}", r.id)>{format!("#{}", r.id)}</A></td>
                                                    <td><Time at=r.started_at.clone()/></td>
                                                    <td>{r.mode.clone()}</td>
                                                    <td>{r.trigger.clone()}</td>
                                                    <td class=format!("run-{}", r.status)>{status_label(&r.status)}</td>
                                                    <td>{r.duration.clone()}</td>
                                                    <td>{written}</td>
                                                    <td>{r.pipedrive_tokens}</td>
                                                    <td>{r.brevo_calls}</td>
                                                    <td>{r.open_errors}</td>
                                                </tr>
                                            }
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                </div>
                            }.into_any()
                        })
                    }
                })}
            </Transition>
            </Show>
        </section>
    }
}

#[component]
pub fn RunPage() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let params = use_params_map();
    let run_id = move || params.read().get("run").and_then(|r| r.parse::<i64>().ok()).unwrap_or(0);
    let retry = ServerAction::<RetryErrors>::new();
    let tick = ticker(3000);
    let detail = LocalResource::new({
        let tenant_id = tenant_id.clone();
        move || {
            tick.track();
            retry.version().track();
            run_detail(tenant_id.clone(), run_id())
        }
    });
    let back = format!("/t/{}/history", ctx.id());
    let mounted = mounted();
    let tenant_id = StoredValue::new(tenant_id);
    view! {
        <Title text="Sync run"/>
        <p><A href=back>"← Sync history"</A></p>
        <Show when=move || mounted.get() fallback=|| view! { <p class="loading">"Loading…"</p> }>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new({
                let tenant_id = tenant_id.get_value();
                async move {
                    detail.await.map(|d| {
                        let run = d.run.clone();
                        view! {
                            <h1>{format!("Run #{} · {} {}", run.id, run.mode, run.trigger)}</h1>
                            <section class="card">
                                <Progress run=run.clone()/>
                                <p class="muted">"Started " <Time at=run.started_at.clone()/> {format!(" · {}", run.duration)}</p>
                                <div class="table-wrap">
                                <table class="table" id="counts">
                                    <thead><tr>
                                        <th>"Entity"</th><th>"Read"</th><th>"Created"</th><th>"Updated"</th><th>"Unchanged"</th>
                                        <th>"Skipped"</th><th>"Failed"</th><th>"Deleted"</th>
                                    </tr></thead>
                                    <tbody>
                                        {run.counts.into_iter().map(|c| view! {
                                            <tr data-entity=c.entity.clone()>
                                                <td>{c.entity.clone()}</td><td>{c.read}</td><td>{c.created}</td><td>{c.updated}</td>
                                                <td>{c.unchanged}</td><td>{c.skipped}</td><td>{c.failed}</td><td>{c.deleted}</td>
                                            </tr>
                                        }).collect_view()}
                                    </tbody>
                                </table>
                                </div>
                            </section>
                            <section class="card" id="record-errors">
                                <h2>{format!("Record errors ({})", d.errors.len())}</h2>
                                <div class="button-row">
                                    {(d.can_manage && !d.errors.is_empty()).then({
                                        let tenant_id = tenant_id.clone();
                                        move || view! {
                                            <ActionForm action=retry attr:class="inline-form">
                                                <input type="hidden" name="tenant_id" value=tenant_id.clone()/>
                                                <button type="submit" data-testid="retry-all">"Retry all"</button>
                                            </ActionForm>
                                        }
                                    })}
                                </div>
                                <ActionMessage value=move || retry.value().get()/>
                                {if d.errors.is_empty() {
                                    view! { <p class="muted">"No record failed in this run."</p> }.into_any()
                                } else {
                                    view! {
                                        <div class="table-wrap">
                                        <table class="table">
                                            <thead><tr><th>"Record"</th><th>"Reason"</th><th>"Status"</th><th></th></tr></thead>
                                            <tbody>
                                                {d.errors.into_iter().map(|e| { let tenant_id = tenant_id.clone(); view! {
                                                    <tr data-testid="record-error" data-record=format!("{}-{}", e.entity, e.pipedrive_id)>
                                                        <td>{format!("{} #{}", e.entity, e.pipedrive_id)}</td>
                                                        <td>
                                                            {e.reason.clone()}
                                                            <details><summary>"Payload"</summary><pre>{e.payload.clone()}</pre></details>
                                                        </td>
                                                        <td>{e.status.clone()}</td>
                                                        <td>
                                                            {(d.can_manage && e.status == "open" && (e.entity == "person" || e.entity == "event")).then(|| view! {
                                                                <ActionForm action=retry attr:class="inline-form">
                                                                    <input type="hidden" name="tenant_id" value=tenant_id.clone()/>
                                                                    <input type="hidden" name="error_id" value=e.id/>
                                                                    <button type="submit" data-testid="retry-one">"Retry"</button>
                                                                </ActionForm>
                                                            })}
                                                        </td>
                                                    </tr>
                                                }}).collect_view()}
                                            </tbody>
                                        </table>
                                        </div>
                                    }.into_any()
                                }}
                            </section>
                        }
                    })
                }
            })}
        </Transition>
        </Show>
    }
}
