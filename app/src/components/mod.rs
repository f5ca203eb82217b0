//! Small shared pieces of the pages.

use leptos::prelude::*;

use crate::error::AppError;

mod time;
pub use time::Time;

/// The "not found" page; sets the 404 status when rendered on the server.
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(options) = use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(axum::http::StatusCode::NOT_FOUND);
    }
    view! {
        <main class="centered">
            <section class="card narrow">
                <h1>"Page not found"</h1>
                <p>"There is nothing here, or it is not yours to see."</p>
                <p><a href="/">"Go to your dashboard"</a></p>
            </section>
        </main>
    }
}

/// The outcome of a form's last submission: the error in an alert, or a success note.
#[component]
pub fn FormResult<T, F>(
    /// Usually `move || action.value().get()`.
    value: F,
    #[prop(optional, into)] success: Option<String>,
) -> impl IntoView
where
    T: Send + Sync + 'static,
    F: Fn() -> Option<Result<T, AppError>> + Send + Sync + 'static,
{
    move || match value() {
        Some(Err(e)) => {
            Some(view! { <p class="notice error" role="alert">{e.to_string()}</p> }.into_any())
        }
        Some(Ok(_)) => {
            success.clone().map(|s| view! { <p class="notice ok" role="status">{s}</p> }.into_any())
        }
        None => None,
    }
}

/// What an action that answers a message came to: the message in a status, or the error in an
/// alert. Inside a static element, so the dynamic part hydrates at a fixed place.
#[component]
pub fn ActionMessage<F>(
    /// Usually `move || action.value().get()`.
    value: F,
) -> impl IntoView
where
    F: Fn() -> Option<Result<String, AppError>> + Send + Sync + 'static,
{
    view! {
        <div class="action-message">
            {move || match value() {
                Some(Ok(m)) => view! { <p class="notice ok" role="status">{m}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="notice error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </div>
    }
}

/// A password input with a show / hide button (the button works only once the page is hydrated).
#[component]
pub fn PasswordInput(
    #[prop(into)] name: String,
    #[prop(into)] autocomplete: String,
    #[prop(optional)] minlength: Option<u32>,
) -> impl IntoView {
    let shown = RwSignal::new(false);
    view! {
        <span class="password">
            <input
                id=name.clone()
                name=name
                type=move || if shown.get() { "text" } else { "password" }
                autocomplete=autocomplete
                minlength=minlength
                required
            />
            <button
                type="button"
                class="ghost"
                aria-pressed=move || shown.get().to_string()
                on:click=move |_| shown.update(|s| *s = !*s)
            >
                {move || if shown.get() { "Hide" } else { "Show" }}
            </button>
        </span>
    }
}
