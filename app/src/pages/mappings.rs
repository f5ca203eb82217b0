//! Mappings: the configuration as forms (`mapping_forms`) and as YAML (the format of the connector
//! spec), checked when saved, with one message per mistake; versions; export.

use leptos::prelude::*;
use leptos_meta::Title;

use super::mapping_forms::MappingFormsCard;
use super::tenant::use_tenant;
use crate::api::{SaveMapping, SavedMapping, load_mapping};
use crate::components::Time;
use crate::error::AppError;

#[component]
pub fn MappingsPage() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let save = ServerAction::<SaveMapping>::new();
    // Successful saves of the forms: the YAML and the versions reload after each.
    let forms_saved = RwSignal::new(0u32);
    let data = Resource::new(move || (save.version().get(), forms_saved.get()), {
        let tenant_id = tenant_id.clone();
        move |_| load_mapping(tenant_id.clone())
    });
    let can_manage = ctx.can_manage();
    let export = format!("/t/{tenant_id}/mappings/export.yaml");
    view! {
        <Title text="Mappings"/>
        <h1>"Mappings"</h1>
        <p class="muted">
            "How Pipedrive maps onto Brevo: edit it with the forms, or as YAML in the format of the connector spec (paste a file to import it, "
            <a href=export rel="external" download="pipebridge-mapping.yaml">"download it"</a>
            " to export, without secrets). Both are views of one configuration."
        </p>
        <MappingFormsCard tenant_id=tenant_id.clone() can_manage yaml_saves=save.version() forms_saved/>
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new({
                let tenant_id = tenant_id.clone();
                async move {
                    data.await.map(|m| view! {
                        <section class="card">
                            <h2>{match m.version { Some(v) => format!("Version {v} in force"), None => "No mapping saved yet: the connector spec's example to start from".to_owned() }}</h2>
                            <ActionForm action=save attr:class="stack" attr:id="mapping-form">
                                <input type="hidden" name="tenant_id" value=tenant_id.clone()/>
                                <label for="yaml">"Mapping (YAML)"</label>
                                <textarea id="yaml" name="yaml" rows="28" spellcheck="false" class="code" disabled=!can_manage>{m.yaml.clone()}</textarea>
                                {can_manage.then(|| view! { <button type="submit" class="primary">"Check and save"</button> })}
                            </ActionForm>
                        </section>
                        <section class="card">
                            <h2>"Versions"</h2>
                            {if m.versions.is_empty() {
                                view! { <p class="muted">"None yet."</p> }.into_any()
                            } else {
                                view! {
                                    <table class="table" id="versions">
                                        <thead><tr><th>"Version"</th><th>"Saved"</th><th>"By"</th></tr></thead>
                                        <tbody>
                                            {m.versions.into_iter().map(|v| view! {
                                                <tr><td>{v.version}</td><td><Time at=v.saved_at/></td><td>{v.author.unwrap_or_default()}</td></tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any()
                            }}
                        </section>
                    })
                }
            })}
        </Transition>
        <SaveOutcome value=Signal::derive(move || save.value().get())/>
    }
}

/// What a save (from the YAML or the forms) came to: the version and its warnings, or one line
/// per mistake.
#[component]
fn SaveOutcome(value: Signal<Option<Result<SavedMapping, AppError>>>) -> impl IntoView {
    view! {
        {move || value.get().map(|r| match r {
            Ok(s) => view! {
                <div class="notice ok" role="status">
                    <p>{format!("Saved as version {}.", s.version)}</p>
                    <ul>{s.warnings.into_iter().map(|w| view! { <li>{w}</li> }).collect_view()}</ul>
                </div>
            }.into_any(),
            Err(e) => view! {
                <div class="notice error" role="alert">
                    <p>"Not saved: fix these and save again."</p>
                    <ul>{e.to_string().lines().map(|l| view! { <li>{l.to_owned()}</li> }).collect_view()}</ul>
                </div>
            }.into_any(),
        })}
    }
}
