//! The Leptos application: pages, components and thin server functions.
//!
//! Built twice: with `ssr` into the server (where the server functions run and call the core
//! crate), and with `hydrate` into the wasm bundle that makes the server-rendered pages live.
#![recursion_limit = "256"]

pub mod api;
mod components;
pub mod error;
mod pages;
mod shell;

pub use shell::{App, shell};

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
