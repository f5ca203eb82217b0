//! The one error type of the server functions: each variant is a message for the person in front
//! of the page, and maps to one HTTP status in one place ([`AppError::status`]).

use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Input that was refused; the text says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error("Please log in to continue.")]
    Unauthenticated,
    /// No such page, or one the user may not see: the same answer either way.
    #[error("Not found.")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    TooManyRequests(String),
    /// Another service (Pipedrive, Brevo) could not be reached or refused to answer for now.
    #[error("{0}")]
    Unavailable(String),
    /// The details are in the server log, not in the browser.
    #[error("Something went wrong on our side and it has been logged. Please try again.")]
    Internal,
    /// The request did not reach the server function (network down, bad arguments, ...).
    #[error("The request failed: {0}")]
    Request(String),
}

impl AppError {
    pub fn status(&self) -> u16 {
        match self {
            AppError::Invalid(_) => 422,
            AppError::Unauthenticated => 401,
            AppError::NotFound => 404,
            AppError::Forbidden(_) => 403,
            AppError::TooManyRequests(_) => 429,
            AppError::Unavailable(_) => 503,
            AppError::Internal => 500,
            AppError::Request(_) => 400,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        AppError::Request(value.to_string())
    }
}
