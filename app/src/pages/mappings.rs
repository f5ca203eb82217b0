//! Mappings: the configuration as YAML (the format of the connector spec), checked when saved,
//! with one message per mistake; versions; export.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant::use_tenant;
use crate::api::{FormChoices, MappingFormData, PersonRow, SaveMapping, SavedMapping, load_mapping, mapping_forms, save_mapping_forms};
use crate::error::AppError;

#[component]
pub fn MappingsPage() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let save = ServerAction::<SaveMapping>::new();
    let save_forms = Action::new({
        let tenant_id = tenant_id.clone();
        move |d: &MappingFormData| save_mapping_forms(tenant_id.clone(), d.clone())
    });
    let data = Resource::new(move || (save.version().get(), save_forms.version().get()), {
        let tenant_id = tenant_id.clone();
        move |_| load_mapping(tenant_id.clone())
    });
    let can_manage = ctx.can_manage();
    let export = format!("/t/{tenant_id}/mappings/export.yaml");
    view! {
        <Title text="Mappings"/>
        <h1>"Mappings"</h1>
        <p class="muted">
            "How Pipedrive maps onto Brevo, in the YAML format of the connector spec: paste a file to import it, edit it here, "
            <a href=export rel="external" download="pipebridge-mapping.yaml">"download it"</a>
            " to export (without secrets)."
        </p>
        <MappingFormsCard tenant_id=tenant_id.clone() can_manage save_forms yaml_saves=save.version()/>
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
                                                <tr><td>{v.version}</td><td>{v.saved_at}</td><td>{v.author.unwrap_or_default()}</td></tr>
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

/// The same configuration as forms: lists, the person mapping and the stage → list mapping, with
/// the tenant's real fields, attributes, stages and lists in the dropdowns.
#[component]
fn MappingFormsCard(
    tenant_id: String,
    can_manage: bool,
    save_forms: Action<MappingFormData, Result<SavedMapping, AppError>>,
    yaml_saves: RwSignal<usize>,
) -> impl IntoView {
    let forms = Resource::new(move || (yaml_saves.get(), save_forms.version().get()), move |_| mapping_forms(tenant_id.clone()));
    view! {
        <section class="card" id="mapping-forms">
            <h2>"Edit with forms"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading your fields, stages, attributes and lists…"</p> }>
                {move || Suspend::new(async move {
                    forms.await.map(|f| match f.unavailable {
                        Some(why) => view! { <p class="muted" data-testid="forms-unavailable">{why}</p> }.into_any(),
                        None => view! { <Forms data=f.data choices=f.choices can_manage save_forms/> }.into_any(),
                    })
                })}
            </Transition>
            <SaveOutcome value=Signal::derive(move || save_forms.value().get())/>
        </section>
    }
}

fn list_options(lists: &[(i64, String)], current: Option<i64>) -> impl IntoView + use<> {
    let options: Vec<_> = lists.iter().map(|(id, name)| (*id, format!("{name} (#{id})"))).collect();
    view! {
        <option value="" selected=current.is_none()>"— none —"</option>
        {options.into_iter().map(|(id, label)| view! { <option value=id.to_string() selected=current == Some(id)>{label}</option> }).collect_view()}
    }
}

#[component]
fn Forms(data: MappingFormData, choices: FormChoices, can_manage: bool, save_forms: Action<MappingFormData, Result<SavedMapping, AppError>>) -> impl IntoView {
    let data = RwSignal::new(data);
    let choices = StoredValue::new(choices);
    let list_field = move |label: &'static str, name: &'static str, get: fn(&MappingFormData) -> Option<i64>, set: fn(&mut MappingFormData, Option<i64>)| {
        let current = data.with_untracked(get);
        view! {
            <label class="stack-item">{label}
                <select name=name disabled=!can_manage on:change=move |ev| data.update(|d| set(d, event_target_value(&ev).parse().ok()))>
                    {choices.with_value(|c| list_options(&c.lists, current))}
                </select>
            </label>
        }
    };
    let person_rows = move || {
        let rows = data.with(|d| d.person.clone());
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                let paths = choices.with_value(|c| c.paths.clone());
                let known = paths.iter().any(|(p, _)| *p == row.path);
                view! {
                    <tr data-testid="person-row">
                        <td>
                            <select aria-label="Pipedrive field" disabled=!can_manage
                                on:change=move |ev| data.update(|d| if let Some(r) = d.person.get_mut(i) { r.path = event_target_value(&ev) })>
                                {(!known).then(|| view! { <option value=row.path.clone() selected=true>{format!("{} (unknown)", row.path)}</option> })}
                                {paths.into_iter().map(|(p, l)| { let sel = p == row.path; view! { <option value=p selected=sel>{l}</option> } }).collect_view()}
                            </select>
                        </td>
                        <td>
                            <input aria-label="Brevo attribute" list="brevo-attributes" value=row.attribute.clone() disabled=!can_manage
                                on:change=move |ev| data.update(|d| if let Some(r) = d.person.get_mut(i) { r.attribute = event_target_value(&ev).trim().to_uppercase() })/>
                        </td>
                        <td>
                            {can_manage.then(|| view! {
                                <button type="button" class="link" on:click=move |_| data.update(|d| { if i < d.person.len() { d.person.remove(i); } })>"Remove"</button>
                            })}
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };
    let stage_rows = move || {
        let rows = data.with_untracked(|d| d.stages.clone());
        rows.into_iter()
            .enumerate()
            .map(|(i, row)| {
                view! {
                    <tr data-stage=row.key.clone()>
                        <td>{row.label.clone()}</td>
                        <td>
                            <select aria-label=format!("List for {}", row.label) disabled=!can_manage
                                on:change=move |ev| data.update(|d| if let Some(r) = d.stages.get_mut(i) { r.list = event_target_value(&ev).parse().ok() })>
                                {choices.with_value(|c| list_options(&c.lists, row.list))}
                            </select>
                        </td>
                    </tr>
                }
            })
            .collect_view()
    };
    view! {
        <datalist id="brevo-attributes">
            {choices.with_value(|c| c.attributes.iter().map(|(n, k)| view! { <option value=n.clone()>{format!("{n} ({k})")}</option> }).collect_view())}
        </datalist>
        <h3>"Lists"</h3>
        <div class="form-grid">
            {list_field("All contacts", "all_contacts", |d| d.all_contacts, |d, v| d.all_contacts = v)}
            {list_field("Qualified leads (the nurture list for Pipedrive leads)", "qualified_leads", |d| d.qualified_leads, |d, v| d.qualified_leads = v)}
            {list_field("Customers (a won deal)", "customers", |d| d.customers, |d, v| d.customers = v)}
            {list_field("Churned (lost deals, none open or won)", "churned", |d| d.churned, |d, v| d.churned = v)}
        </div>
        <h3>"Person → contact attributes"</h3>
        <div class="table-wrap">
            <table class="table" id="person-mapping">
                <thead><tr><th>"Pipedrive"</th><th>"Brevo attribute (a new name is created)"</th><th></th></tr></thead>
                <tbody>{person_rows}</tbody>
            </table>
        </div>
        {can_manage.then(|| view! {
            <button type="button" on:click=move |_| data.update(|d| d.person.push(PersonRow { path: "name".into(), attribute: String::new() }))>"Add a field"</button>
        })}
        <h3>"Deal stage → list"</h3>
        <div class="table-wrap">
            <table class="table" id="stage-mapping">
                <thead><tr><th>"Stage"</th><th>"Brevo list"</th></tr></thead>
                <tbody>{stage_rows}</tbody>
            </table>
        </div>
        {can_manage.then(|| view! {
            <p>
                <button type="button" class="primary" data-testid="save-forms" disabled=move || save_forms.pending().get()
                    on:click=move |_| { save_forms.dispatch(data.get_untracked()); }>"Check and save the forms"</button>
            </p>
        })}
    }
}
