//! The frame of every tenant page: header (tenant, switcher, user menu), navigation, content.

use leptos::prelude::*;
use leptos_router::components::{A, Outlet, Redirect};
use leptos_router::hooks::use_params_map;

use crate::api::{LogOut, TenantPage, load_tenant};
use crate::components::NotFound;
use crate::error::AppError;

/// Given to the pages inside the frame.
#[derive(Clone)]
pub struct TenantCtx {
    pub page: TenantPage,
    /// The tenant's name as shown in the header; Settings updates it after a rename.
    pub name: RwSignal<String>,
}

impl TenantCtx {
    pub fn id(&self) -> String {
        self.page.tenant.id.to_string()
    }
    pub fn can_manage(&self) -> bool {
        self.page.tenant.can_manage
    }
}

pub fn use_tenant() -> TenantCtx {
    expect_context::<TenantCtx>()
}

#[component]
pub fn TenantShell() -> impl IntoView {
    let params = use_params_map();
    let page = Resource::new(move || params.read().get("tenant").unwrap_or_default(), load_tenant);
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) => view! { <Frame page/> }.into_any(),
                    Err(AppError::Unauthenticated) => view! { <Redirect path="/login"/> }.into_any(),
                    Err(AppError::NotFound) => view! { <NotFound/> }.into_any(),
                    Err(e) => view! {
                        <main class="centered"><p class="notice error" role="alert">{e.to_string()}</p></main>
                    }.into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn Frame(page: TenantPage) -> impl IntoView {
    let ctx = TenantCtx { name: RwSignal::new(page.tenant.name.clone()), page };
    provide_context(ctx.clone());
    let base = format!("/t/{}", ctx.id());
    let nav = [
        ("", "Dashboard"),
        ("/connections", "Connections"),
        ("/mappings", "Mappings"),
        ("/history", "Sync history"),
        ("/team", "Team"),
        ("/settings", "Settings"),
    ];
    view! {
        <div class="app">
            <header class="topbar">
                <a class="brand" href="/">"pipebridge"</a>
                <TenantSwitcher/>
                <UserMenu/>
            </header>
            <nav class="sidenav" aria-label="Main">
                {nav
                    .into_iter()
                    .map(|(path, label)| {
                        let href = format!("{base}{path}");
                        view! { <A href=href exact=true>{label}</A> }
                    })
                    .collect_view()}
            </nav>
            <main class="content">
                <Outlet/>
            </main>
        </div>
    }
}

#[component]
fn TenantSwitcher() -> impl IntoView {
    let ctx = use_tenant();
    let current = ctx.page.tenant.id;
    let name = ctx.name;
    let others: Vec<_> = ctx.page.tenants.iter().filter(|t| t.id != current).cloned().collect();
    view! {
        <div class="tenant">
            <span class="tenant-name" data-testid="tenant-name">{move || name.get()}</span>
            <span class="role-badge">{ctx.page.tenant.role.clone()}</span>
            {(!others.is_empty()).then(|| view! {
                <details class="switcher">
                    <summary>"Switch"</summary>
                    <ul>
                        {others.into_iter().map(|t| view! {
                            <li><a href=format!("/t/{}", t.id)>{t.name}</a></li>
                        }).collect_view()}
                    </ul>
                </details>
            })}
        </div>
    }
}

#[component]
fn UserMenu() -> impl IntoView {
    let ctx = use_tenant();
    let open = RwSignal::new(false);
    let log_out = ServerAction::<LogOut>::new();
    view! {
        <div class="user-menu">
            <button
                type="button"
                class="ghost"
                aria-haspopup="menu"
                aria-expanded=move || open.get().to_string()
                on:click=move |_| open.update(|o| *o = !*o)
            >
                {ctx.page.user_email.clone()}
                " ▾"
            </button>
            <div class="menu" role="menu" hidden=move || !open.get()>
                <a role="menuitem" href="/companies/new">"Add a company"</a>
                <ActionForm action=log_out>
                    <button type="submit" role="menuitem" class="ghost">"Log out"</button>
                </ActionForm>
            </div>
        </div>
    }
}
