//! Log-in and sign-up forms.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

use crate::api::{LogIn, SignUp};
use crate::components::{FormResult, PasswordInput};

#[component]
pub fn LoginPage() -> impl IntoView {
    let action = ServerAction::<LogIn>::new();
    view! {
        <Title text="Log in"/>
        <main class="centered">
            <section class="card narrow">
                <h1 class="brand">"pipebridge"</h1>
                <h2>"Log in"</h2>
                <ActionForm action=action attr:class="stack" attr:id="login-form">
                    <label for="email">"Email"</label>
                    <input id="email" name="email" type="email" autocomplete="username" required/>
                    <label for="password">"Password"</label>
                    <PasswordInput name="password" autocomplete="current-password"/>
                    <FormResult value=move || action.value().get()/>
                    <button type="submit" class="primary" disabled=move || action.pending().get()>
                        {move || if action.pending().get() { "Logging in…" } else { "Log in" }}
                    </button>
                </ActionForm>
                <p class="muted">"New here? " <A href="/signup">"Create an account"</A></p>
            </section>
        </main>
    }
}

#[component]
pub fn SignupPage() -> impl IntoView {
    let action = ServerAction::<SignUp>::new();
    view! {
        <Title text="Sign up"/>
        <main class="centered">
            <section class="card narrow">
                <h1 class="brand">"pipebridge"</h1>
                <h2>"Create your account"</h2>
                <p class="muted">"Keep Brevo in step with Pipedrive. You will connect both after signing up."</p>
                <ActionForm action=action attr:class="stack" attr:id="signup-form">
                    <label for="company">"Company name"</label>
                    <input id="company" name="company" type="text" autocomplete="organization" required/>
                    <label for="email">"Work email"</label>
                    <input id="email" name="email" type="email" autocomplete="email" required/>
                    <label for="password">"Password " <span class="hint">"(at least 10 characters)"</span></label>
                    <PasswordInput name="password" autocomplete="new-password"/>
                    <FormResult value=move || action.value().get()/>
                    <button type="submit" class="primary" disabled=move || action.pending().get()>
                        {move || if action.pending().get() { "Creating…" } else { "Create account" }}
                    </button>
                </ActionForm>
                <p class="muted">"Already have an account? " <A href="/login">"Log in"</A></p>
            </section>
        </main>
    }
}
