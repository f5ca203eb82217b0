//! The mapping as forms: the four lists, the person → contact attributes and the stage → list
//! rows, with the tenant's real fields, attributes, stages and lists to choose from, lists made
//! in Brevo from the form, and each mistake of a save shown beside its row.
//!
//! Every input and select is bound to its own signal, and shows exactly that signal: a select's
//! options are built from what it holds (a list Brevo lacks gets an option saying so), so what a
//! person sees is what is saved. A refused save keeps everything that was typed.

use leptos::prelude::*;

use crate::api::{
    FormPlace, FormProblem, FormsSaveOutcome, MappingFormData, MappingFormsView, PersonRow,
    StageRow, create_brevo_list, mapping_forms, save_mapping_forms, suggested_lists,
};
use crate::error::AppError;

/// One option of a select: what it submits, what it says, whether it is the one shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// The options of a list select holding `current`: "— none —", then Brevo's lists; a list the
/// mapping names that Brevo lacks is an option of its own, so that the select always shows what
/// it holds.
pub fn list_options(lists: &[(i64, String)], current: Option<i64>) -> Vec<Opt> {
    let mut options =
        vec![Opt {
            value: String::new(), label: "— none —".into(), selected: current.is_none()
        }];
    if let Some(id) = current.filter(|id| !lists.iter().any(|(l, _)| l == id)) {
        options.push(Opt {
            value: id.to_string(),
            label: format!("List #{id} (not in your Brevo account)"),
            selected: true,
        });
    }
    options.extend(lists.iter().map(|(id, name)| Opt {
        value: id.to_string(),
        label: format!("{name} (#{id})"),
        selected: current == Some(*id),
    }));
    options
}

/// The options of a person row's Pipedrive field select holding `current` (a path the account
/// lacks is shown as unknown).
pub fn path_options(paths: &[(String, String)], current: &str) -> Vec<Opt> {
    let mut options = Vec::new();
    if !paths.iter().any(|(p, _)| p == current) {
        options.push(Opt {
            value: current.to_owned(),
            label: format!("{current} (unknown)"),
            selected: true,
        });
    }
    options.extend(paths.iter().map(|(p, l)| Opt {
        value: p.clone(),
        label: l.clone(),
        selected: p == current,
    }));
    options
}

/// Options that show their selection both when rendered on the server and when changed later in
/// the browser (the `selected` attribute alone stops working once a person has used the select).
fn option_views(options: Vec<Opt>) -> impl IntoView {
    options.into_iter().map(|o| view! { <option value=o.value selected=o.selected prop:selected=o.selected>{o.label}</option> }).collect_view()
}

#[derive(Clone, Copy)]
struct PersonRowState {
    id: usize,
    path: RwSignal<String>,
    attribute: RwSignal<String>,
}

#[derive(Clone)]
struct StageRowState {
    key: String,
    label: String,
    list: RwSignal<Option<i64>>,
}

/// The card: the forms of the mapping in force (or of a first one), reloaded after a save of the
/// YAML and after a save of the forms that succeeded (never after a refused one).
#[component]
pub fn MappingFormsCard(
    tenant_id: String,
    can_manage: bool,
    yaml_saves: RwSignal<usize>,
    forms_saved: RwSignal<u32>,
) -> impl IntoView {
    let save_forms = Action::new({
        let tenant_id = tenant_id.clone();
        move |d: &MappingFormData| save_mapping_forms(tenant_id.clone(), d.clone())
    });
    Effect::new(move |_| {
        if let Some(Ok(FormsSaveOutcome::Saved(_))) = save_forms.value().get() {
            forms_saved.update(|n| *n += 1);
        }
    });
    let forms = Resource::new(move || (yaml_saves.get(), forms_saved.get()), {
        let tenant_id = tenant_id.clone();
        move |_| mapping_forms(tenant_id.clone())
    });
    let tenant_id = StoredValue::new(tenant_id);
    view! {
        <section class="card" id="mapping-forms">
            <h2>"Edit with forms"</h2>
            <Transition fallback=|| view! { <p class="loading">"Loading your fields, stages, attributes and lists…"</p> }>
                {move || Suspend::new(async move {
                    forms.await.map(|f| match f.unavailable.clone() {
                        Some(why) => view! { <p class="muted" data-testid="forms-unavailable">{why}</p> }.into_any(),
                        None => view! { <Forms shown=f tenant_id=tenant_id.get_value() can_manage save_forms/> }.into_any(),
                    })
                })}
            </Transition>
            <FormsOutcome value=Signal::derive(move || save_forms.value().get())/>
        </section>
    }
}

/// What the last save of the forms came to.
#[component]
fn FormsOutcome(value: Signal<Option<Result<FormsSaveOutcome, AppError>>>) -> impl IntoView {
    view! {
        <div class="action-message" data-testid="forms-outcome">
            {move || value.get().map(|r| match r {
                Ok(FormsSaveOutcome::Saved(s)) => view! {
                    <div class="notice ok" role="status">
                        <p>{format!("Saved as version {}.", s.version)}</p>
                        <ul>{s.warnings.into_iter().map(|w| view! { <li>{w}</li> }).collect_view()}</ul>
                    </div>
                }.into_any(),
                Ok(FormsSaveOutcome::Refused(problems)) => {
                    let general: Vec<String> = problems.into_iter().filter(|p| p.place == FormPlace::Mapping).map(|p| p.message).collect();
                    view! {
                        <div class="notice error" role="alert">
                            <p>"Not saved: fix what is marked beside its row, and save again."</p>
                            <ul>{general.into_iter().map(|m| view! { <li>{m}</li> }).collect_view()}</ul>
                        </div>
                    }.into_any()
                }
                Err(e) => view! { <div class="notice error" role="alert"><p>{format!("Not saved: {e}")}</p></div> }.into_any(),
            })}
        </div>
    }
}

fn message_at(problems: RwSignal<Vec<FormProblem>>, place: FormPlace) -> Signal<Option<String>> {
    Signal::derive(move || {
        let text = problems.with(|ps| {
            ps.iter()
                .filter(|p| p.place == place)
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join(" ")
        });
        (!text.is_empty()).then_some(text)
    })
}

#[component]
fn Forms(
    shown: MappingFormsView,
    tenant_id: String,
    can_manage: bool,
    save_forms: Action<MappingFormData, Result<FormsSaveOutcome, AppError>>,
) -> impl IntoView {
    let MappingFormsView { data, choices, version, .. } = shown;
    let lists = RwSignal::new(choices.lists);
    let paths = StoredValue::new(choices.paths);
    let role = |v: Option<i64>| RwSignal::new(v);
    let (all_contacts, qualified_leads, customers, churned) = (
        role(data.all_contacts),
        role(data.qualified_leads),
        role(data.customers),
        role(data.churned),
    );
    let next_id = StoredValue::new(data.person.len());
    let rows = RwSignal::new(
        data.person
            .into_iter()
            .enumerate()
            .map(|(id, r)| PersonRowState {
                id,
                path: RwSignal::new(r.path),
                attribute: RwSignal::new(r.attribute),
            })
            .collect::<Vec<_>>(),
    );
    let stages = StoredValue::new(
        data.stages
            .into_iter()
            .map(|s| StageRowState { key: s.key, label: s.label, list: RwSignal::new(s.list) })
            .collect::<Vec<_>>(),
    );
    // The mistakes of the last refused save, each beside its row.
    let problems = RwSignal::new(Vec::<FormProblem>::new());
    Effect::new(move |_| {
        let outcome = save_forms.value().get();
        problems.set(match outcome {
            Some(Ok(FormsSaveOutcome::Refused(p))) => p,
            _ => Vec::new(),
        });
    });

    let suggest = Action::new({
        let tenant_id = tenant_id.clone();
        move |keys: &Vec<String>| suggested_lists(tenant_id.clone(), keys.clone())
    });
    Effect::new(move |_| {
        if let Some(Ok(s)) = suggest.value().get() {
            lists.update(|l| {
                for m in [&s.all_contacts, &s.qualified_leads, &s.customers, &s.churned] {
                    if !l.iter().any(|(id, _)| *id == m.id) {
                        l.push((m.id, m.name.clone()));
                    }
                }
            });
            all_contacts.set(Some(s.all_contacts.id));
            qualified_leads.set(Some(s.qualified_leads.id));
            customers.set(Some(s.customers.id));
            churned.set(Some(s.churned.id));
            stages.with_value(|rows| {
                for row in rows {
                    if let Some((_, list)) = s.stages.iter().find(|(key, _)| *key == row.key) {
                        row.list.set(Some(*list));
                    }
                }
            });
        }
    });

    let collect = move || MappingFormData {
        all_contacts: all_contacts.get_untracked(),
        qualified_leads: qualified_leads.get_untracked(),
        customers: customers.get_untracked(),
        churned: churned.get_untracked(),
        person: rows.with_untracked(|r| {
            r.iter()
                .map(|x| PersonRow {
                    path: x.path.get_untracked(),
                    attribute: x.attribute.get_untracked(),
                })
                .collect()
        }),
        stages: stages.with_value(|s| {
            s.iter()
                .map(|x| StageRow {
                    key: x.key.clone(),
                    label: x.label.clone(),
                    list: x.list.get_untracked(),
                })
                .collect()
        }),
    };
    let picker = {
        let tenant_id = tenant_id.clone();
        move |label: String,
              name: Option<&'static str>,
              value: RwSignal<Option<i64>>,
              new_name: String,
              place: FormPlace| {
            view! { <ListPicker label name value lists new_name tenant_id=tenant_id.clone() can_manage problem=message_at(problems, place)/> }.into_any()
        }
    };
    let role_picker = {
        let picker = picker.clone();
        move |label: &'static str,
              key: &'static str,
              value: RwSignal<Option<i64>>,
              what: &'static str| {
            view! {
                <div class="stack-item">
                    <span class="label">{label}</span>
                    {picker(label.to_owned(), Some(key), value, format!("Pipedrive — {what}"), FormPlace::List(key.to_owned()))}
                </div>
            }
        }
    };
    let remove = move |id: usize| {
        rows.update(|r| r.retain(|x| x.id != id));
        problems.set(Vec::new());
    };
    let add = move |_| {
        let used: Vec<String> =
            rows.with_untracked(|r| r.iter().map(|x| x.path.get_untracked()).collect());
        let path = paths
            .with_value(|p| p.iter().map(|(p, _)| p.clone()).find(|p| !used.contains(p)))
            .unwrap_or_else(|| "name".into());
        let id = next_id.get_value();
        next_id.set_value(id + 1);
        rows.update(|r| {
            r.push(PersonRowState {
                id,
                path: RwSignal::new(path),
                attribute: RwSignal::new(String::new()),
            })
        });
        problems.set(Vec::new());
    };
    view! {
        <p class="muted" data-testid="forms-version">
            {match version {
                Some(v) => format!("Version {v} is in force. What you change here is saved as a new version."),
                None => "No mapping is saved yet: this is a first one, from your accounts. Choose the lists (or use the suggested ones), check the fields, then save.".to_owned(),
            }}
        </p>
        <datalist id="brevo-attributes">
            {choices.attributes.into_iter().map(|(n, k)| view! { <option value=n.clone()>{format!("{n} ({k})")}</option> }).collect_view()}
        </datalist>
        <h3>"Lists"</h3>
        {can_manage.then(|| view! {
            <div class="button-row">
                <button type="button" data-testid="suggest-lists" disabled=move || suggest.pending().get() on:click=move |_| { suggest.dispatch(stages.with_value(|rows| rows.iter().map(|r| r.key.clone()).collect())); }>
                    "Use suggested lists"
                </button>
                <span class="muted">"Makes (or finds) a list per role in a “Pipedrive” folder in Brevo, and gives every stage one: open stages → qualified leads, won → customers, lost → churned."</span>
            </div>
        })}
        <div class="action-message" data-testid="suggest-outcome">
            {move || suggest.value().get().map(|r| match r {
                Ok(s) => {
                    let made = [&s.all_contacts, &s.qualified_leads, &s.customers, &s.churned].iter().filter(|m| !m.existed).count();
                    view! { <p class="notice ok" role="status">{format!("Lists ready in Brevo ({made} made, {} found). Every stage has a list now: change any you like, then save.", 4 - made)}</p> }.into_any()
                }
                Err(e) => view! { <p class="notice error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </div>
        <div class="form-grid">
            {role_picker("All contacts", "all_contacts", all_contacts, "All contacts")}
            {role_picker("Qualified leads (the nurture list for Pipedrive leads)", "qualified_leads", qualified_leads, "Qualified leads")}
            {role_picker("Customers (a won deal)", "customers", customers, "Customers")}
            {role_picker("Churned (lost deals, none open or won)", "churned", churned, "Churned")}
        </div>
        <h3>"Person → contact attributes"</h3>
        <div class="table-wrap">
            <table class="table" id="person-mapping">
                <thead><tr><th>"Pipedrive"</th><th>"Brevo attribute (a new name is created)"</th><th></th></tr></thead>
                <tbody>
                    <tr class="key-row" data-testid="key-row">
                        <td>"Email (the contact's key)"</td>
                        <td><code>"email"</code></td>
                        <td>"always mapped"</td>
                    </tr>
                    <For each=move || rows.get() key=|r| r.id let:row>
                        {
                            let id = row.id;
                            let index = move || rows.with(|r| r.iter().position(|x| x.id == id));
                            let problem = move || index().and_then(|i| message_at(problems, FormPlace::Person(i)).get());
                            view! {
                                <tr data-testid="person-row">
                                    <td>
                                        <select aria-label="Pipedrive field" disabled=!can_manage on:change=move |ev| row.path.set(event_target_value(&ev))>
                                            {move || option_views(paths.with_value(|p| path_options(p, &row.path.get())))}
                                        </select>
                                    </td>
                                    <td>
                                        <input aria-label="Brevo attribute" list="brevo-attributes" disabled=!can_manage
                                            value=row.attribute.get_untracked() prop:value=move || row.attribute.get()
                                            on:input=move |ev| row.attribute.set(event_target_value(&ev))
                                            on:change=move |ev| row.attribute.set(event_target_value(&ev).trim().to_uppercase())/>
                                        {move || problem().map(|m| view! { <p class="field-error" data-testid="row-error">{m}</p> })}
                                    </td>
                                    <td>
                                        {can_manage.then(|| view! { <button type="button" class="link" on:click=move |_| remove(id)>"Remove"</button> })}
                                    </td>
                                </tr>
                            }.into_any()
                        }
                    </For>
                </tbody>
            </table>
        </div>
        {can_manage.then(|| view! { <button type="button" on:click=add>"Add a field"</button> })}
        <h3>"Deal stage → list"</h3>
        <div class="table-wrap">
            <table class="table" id="stage-mapping">
                <thead><tr><th>"Stage"</th><th>"Brevo list"</th></tr></thead>
                <tbody>
                    {stages.get_value().into_iter().map(|row| {
                        let what = row.label.replace(" (any pipeline)", "");
                        view! {
                            <tr data-stage=row.key.clone()>
                                <td>{row.label.clone()}</td>
                                <td>{picker(format!("List for {}", row.label), None, row.list, format!("Pipedrive — {what}"), FormPlace::Stage(row.key.clone()))}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
        </div>
        {can_manage.then(|| view! {
            <p>
                <button type="button" class="primary" data-testid="save-forms" disabled=move || save_forms.pending().get()
                    on:click=move |_| { save_forms.dispatch(collect()); }>"Check and save the forms"</button>
            </p>
        })}
    }
}

/// A list select with "Create a list in Brevo" beside it: the new list (or the one Brevo already
/// has of that name) is selected at once; Brevo's refusals are shown here, in words.
#[component]
fn ListPicker(
    label: String,
    name: Option<&'static str>,
    value: RwSignal<Option<i64>>,
    lists: RwSignal<Vec<(i64, String)>>,
    new_name: String,
    tenant_id: String,
    can_manage: bool,
    problem: Signal<Option<String>>,
) -> impl IntoView {
    let typed = RwSignal::new(new_name.clone());
    let open = RwSignal::new(false);
    let create =
        Action::new(move |name: &String| create_brevo_list(tenant_id.clone(), name.clone()));
    Effect::new(move |_| {
        if let Some(Ok(m)) = create.value().get() {
            lists.update(|l| {
                if !l.iter().any(|(id, _)| *id == m.id) {
                    l.push((m.id, m.name.clone()));
                }
            });
            value.set(Some(m.id));
            open.set(false);
        }
    });
    let outcome = move || {
        create.value().get().map(|r| match r {
            Ok(m) if m.existed => view! { <p class="field-note" role="status">{format!("Brevo already has a list named “{}”: it is selected.", m.name)}</p> }.into_any(),
            Ok(m) => view! { <p class="field-note" role="status">{format!("“{}” was made in Brevo and is selected.", m.name)}</p> }.into_any(),
            Err(e) => view! { <p class="field-error" role="alert">{e.to_string()}</p> }.into_any(),
        })
    };
    view! {
        <div class="list-picker">
            <select aria-label=label.clone() name=name disabled=!can_manage on:change=move |ev| value.set(event_target_value(&ev).parse().ok())>
                {move || option_views(list_options(&lists.get(), value.get()))}
            </select>
            {move || problem.get().map(|m| view! { <p class="field-error" data-testid="row-error">{m}</p> })}
            {can_manage.then(|| view! {
                <button type="button" class="link" aria-expanded=move || open.get().to_string() on:click=move |_| open.update(|o| *o = !*o)>
                    "Create a list in Brevo"
                </button>
                {move || open.get().then(|| view! {
                    <span class="inline-form create-list">
                        <input aria-label=format!("Name of the new list ({label})") value=typed.get_untracked() prop:value=move || typed.get()
                            on:input=move |ev| typed.set(event_target_value(&ev))/>
                        <button type="button" disabled=move || create.pending().get() on:click=move |_| { create.dispatch(typed.get_untracked()); }>"Create"</button>
                    </span>
                })}
                {outcome}
            })}
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defect of the first release: a select whose list Brevo lacks (the seed's ids) showed
    /// "— none —" while it held the id, and submitted the id. It now shows what it holds.
    #[test]
    fn a_list_select_shows_what_it_holds() {
        let lists = vec![(61, "Qualified leads".to_owned())];
        for current in [None, Some(61), Some(60)] {
            let options = list_options(&lists, current);
            let selected: Vec<&Opt> = options.iter().filter(|o| o.selected).collect();
            assert_eq!(selected.len(), 1, "{options:?}");
            assert_eq!(selected[0].value, current.map(|c| c.to_string()).unwrap_or_default());
        }
        assert_eq!(list_options(&lists, Some(60))[1].label, "List #60 (not in your Brevo account)");
        assert_eq!(list_options(&lists, None).len(), 2);
    }

    #[test]
    fn a_field_select_shows_what_it_holds() {
        let paths = vec![("name".to_owned(), "Name".to_owned())];
        assert_eq!(path_options(&paths, "name").iter().filter(|o| o.selected).count(), 1);
        let unknown = path_options(&paths, "custom_fields.gone");
        assert_eq!(
            (unknown[0].label.as_str(), unknown[0].selected),
            ("custom_fields.gone (unknown)", true)
        );
        assert_eq!(unknown.iter().filter(|o| o.selected).count(), 1);
    }
}
