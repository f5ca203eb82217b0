//! The company's settings: its name (admins), and a way to add another company.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant::use_tenant;
use crate::api::RenameTenant;
use crate::components::FormResult;

#[component]
pub fn SettingsPage() -> impl IntoView {
    let ctx = use_tenant();
    let rename = ServerAction::<RenameTenant>::new();
    let name = ctx.name;
    Effect::new(move |_| {
        if let Some(Ok(new_name)) = rename.value().get() {
            name.set(new_name);
        }
    });
    let can_manage = ctx.can_manage();
    view! {
        <Title text="Settings"/>
        <h1>"Settings"</h1>
        <section class="card">
            <h2>"Company"</h2>
            <ActionForm action=rename attr:class="stack">
                <input type="hidden" name="tenant_id" value=ctx.id()/>
                <label for="name">"Company name"</label>
                <input id="name" name="name" type="text" value=name.get_untracked() required disabled=!can_manage/>
                <FormResult value=move || rename.value().get() success="Saved."/>
                {can_manage.then(|| view! { <button type="submit" class="primary">"Save"</button> })}
            </ActionForm>
            {(!can_manage).then(|| view! { <p class="muted">"Only owners and admins can change this."</p> })}
        </section>
        <section class="card">
            <h2>"Another company"</h2>
            <p class="muted">"Work for several companies? Add one; you switch between them at the top."</p>
            <a class="button" href="/companies/new">"Add a company"</a>
        </section>
    }
}
