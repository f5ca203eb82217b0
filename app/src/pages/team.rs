//! The team: who belongs to this company, in which role; admins add, change and remove.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant::use_tenant;
use crate::api::{AddTeamMember, ChangeTeamRole, MemberView, RemoveTeamMember, team_members};
use crate::components::FormResult;

const ROLES: [&str; 3] = ["owner", "admin", "viewer"];

#[component]
pub fn TeamPage() -> impl IntoView {
    let ctx = use_tenant();
    let tenant_id = ctx.id();
    let add = ServerAction::<AddTeamMember>::new();
    let change = ServerAction::<ChangeTeamRole>::new();
    let remove = ServerAction::<RemoveTeamMember>::new();
    let members = Resource::new(
        move || (add.version().get(), change.version().get(), remove.version().get()),
        {
            let tenant_id = tenant_id.clone();
            move |_| team_members(tenant_id.clone())
        },
    );
    let can_manage = ctx.can_manage();
    view! {
        <Title text="Team"/>
        <h1>"Team"</h1>
        {(!can_manage).then(|| view! {
            <p class="notice">"You are a viewer here: you can see the team, not change it."</p>
        })}
        <section class="card">
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new({
                    let tenant_id = tenant_id.clone();
                    async move {
                        members.await.map(|list| view! {
                            <table class="table" id="team">
                                <thead><tr><th>"Email"</th><th>"Role"</th><th></th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|m| view! {
                                        <MemberRow member=m tenant_id=tenant_id.clone() can_manage change remove/>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        })
                    }
                })}
            </Transition>
            <FormResult value=move || change.value().get()/>
            <FormResult value=move || remove.value().get()/>
        </section>
        {can_manage.then(|| view! {
            <section class="card">
                <h2>"Add a teammate"</h2>
                <p class="muted">"They need an account first: ask them to sign up, then add their email here."</p>
                <ActionForm action=add attr:class="inline-form">
                    <input type="hidden" name="tenant_id" value=ctx.id()/>
                    <input name="email" type="email" placeholder="teammate@example.com" aria-label="Email" required/>
                    <select name="role" aria-label="Role">
                        <option value="viewer">"viewer"</option>
                        <option value="admin">"admin"</option>
                        <option value="owner">"owner"</option>
                    </select>
                    <button type="submit" class="primary">"Add"</button>
                </ActionForm>
                <FormResult value=move || add.value().get() success="Added."/>
            </section>
        })}
    }
}

#[component]
fn MemberRow(
    member: MemberView,
    tenant_id: String,
    can_manage: bool,
    change: ServerAction<ChangeTeamRole>,
    remove: ServerAction<RemoveTeamMember>,
) -> impl IntoView {
    let user_id = member.user_id.to_string();
    let role = member.role.clone();
    let (tenant_a, user_a) = (tenant_id.clone(), user_id.clone());
    view! {
        <tr>
            <td>{member.email.clone()} {member.is_you.then_some(" (you)")}</td>
            <td>
                {if can_manage {
                    view! {
                        <ActionForm action=change attr:class="inline-form">
                            <input type="hidden" name="tenant_id" value=tenant_a/>
                            <input type="hidden" name="user_id" value=user_a/>
                            <select name="role" aria-label="Role">
                                {ROLES.iter().map(|r| view! {
                                    <option value=*r selected=*r == role>{*r}</option>
                                }).collect_view()}
                            </select>
                            <button type="submit">"Save"</button>
                        </ActionForm>
                    }.into_any()
                } else {
                    view! { <span>{member.role.clone()}</span> }.into_any()
                }}
            </td>
            <td>
                {can_manage.then(|| view! {
                    <ActionForm action=remove>
                        <input type="hidden" name="tenant_id" value=tenant_id.clone()/>
                        <input type="hidden" name="user_id" value=user_id.clone()/>
                        <button type="submit" class="danger">"Remove"</button>
                    </ActionForm>
                })}
            </td>
        </tr>
    }
}
