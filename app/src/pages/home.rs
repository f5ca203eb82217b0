//! The front page (sends a signed-in user to a tenant) and the form for another company.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::{A, Redirect};

use crate::api::{CreateTenant, landing};
use crate::components::FormResult;

#[component]
pub fn HomePage() -> impl IntoView {
    let where_to = Resource::new(|| (), |_| landing());
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match where_to.await {
                    Ok(Some(Some(tenant))) => view! { <Redirect path=format!("/t/{tenant}")/> }.into_any(),
                    Ok(Some(None)) => view! { <Redirect path="/companies/new"/> }.into_any(),
                    _ => view! { <Welcome/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

#[component]
fn Welcome() -> impl IntoView {
    view! {
        <Title text=""/>
        <main class="centered">
            <section class="card narrow">
                <h1 class="brand">"pipebridge"</h1>
                <p>"Keep Brevo in step with Pipedrive: contacts, deal stages, organizations and activities, in real time, on your own server."</p>
                <p class="actions">
                    <A href="/signup" attr:class="button primary">"Sign up"</A>
                    <A href="/login" attr:class="button">"Log in"</A>
                </p>
            </section>
        </main>
    }
}

#[component]
pub fn NewCompanyPage() -> impl IntoView {
    let action = ServerAction::<CreateTenant>::new();
    view! {
        <Title text="New company"/>
        <main class="centered">
            <section class="card narrow">
                <h1>"Add a company"</h1>
                <p class="muted">"You will be its owner. Each company has its own connections, mappings and history."</p>
                <ActionForm action=action attr:class="stack">
                    <label for="name">"Company name"</label>
                    <input id="name" name="name" type="text" required/>
                    <FormResult value=move || action.value().get()/>
                    <button type="submit" class="primary" disabled=move || action.pending().get()>"Create company"</button>
                </ActionForm>
                <p class="muted"><A href="/">"Back"</A></p>
            </section>
        </main>
    }
}
