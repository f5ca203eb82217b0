//! The HTML document and the routes.

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use crate::components::NotFound;
use crate::pages::{
    ConnectionsPage, DashboardPage, HistoryPage, HomePage, LoginPage, MappingsPage, NewCompanyPage,
    RunPage, SettingsPage, SignupPage, TeamPage, TenantShell,
};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.svg" type="image/svg+xml"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser: this marks the page once the wasm has taken over, which the
    // end-to-end tests wait for before they type (a form submitted earlier would be a plain POST).
    Effect::new(|_| {
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/pipebridge.css"/>
        <Title formatter=|page: String| if page.is_empty() { "pipebridge".to_owned() } else { format!("{page} · pipebridge") }/>
        <Router>
            // Pages behind a tenant render only once the membership check is done, so that a
            // stranger's request gets a real 404 status, not a 200 that later says "not found".
            <Routes fallback=|| view! { <NotFound/> }>
                <Route path=path!("/") view=HomePage ssr=SsrMode::Async/>
                <Route path=path!("/login") view=LoginPage/>
                <Route path=path!("/signup") view=SignupPage/>
                <Route path=path!("/companies/new") view=NewCompanyPage/>
                <ParentRoute path=path!("/t/:tenant") view=TenantShell ssr=SsrMode::Async>
                    <Route path=path!("") view=DashboardPage/>
                    <Route path=path!("connections") view=ConnectionsPage/>
                    <Route path=path!("mappings") view=MappingsPage/>
                    <Route path=path!("history") view=HistoryPage/>
                    <Route path=path!("history/:run") view=RunPage/>
                    <Route path=path!("team") view=TeamPage/>
                    <Route path=path!("settings") view=SettingsPage/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
