//! Configuration: one typed struct read from the environment at start-up; errors name the variable.
//! The address to listen on and the site folder come from cargo-leptos's `LEPTOS_*` variables.

use std::env;
use std::str::FromStr;

#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the PostgreSQL database (default: the local server, database `pipebridge`).
    pub database_url: String,
    /// `PIPEBRIDGE_DB_MAX_CONNECTIONS` (default 10).
    pub db_max_connections: u32,
    /// `PIPEBRIDGE_PUBLIC_URL`: where users reach the app (default http://127.0.0.1:3000). An
    /// `https://` URL makes cookies `Secure`; its origin is also accepted by the CSRF check.
    pub public_url: String,
    /// `PIPEBRIDGE_SESSION_IDLE_MINUTES`: a session ends after this long without a request (720).
    pub session_idle_minutes: i64,
    /// `PIPEBRIDGE_TRUST_FORWARDED_FOR`: take the client address from `X-Forwarded-For`
    /// (only behind a reverse proxy that sets it; default false).
    pub trust_forwarded_for: bool,
    /// `PIPEBRIDGE_LOG_FORMAT`: `text` (default) or `json`.
    pub log_json: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("environment variable {name}: {message}")]
pub struct ConfigError {
    pub name: &'static str,
    pub message: String,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let public_url = var("PIPEBRIDGE_PUBLIC_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into());
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError {
                name: "PIPEBRIDGE_PUBLIC_URL",
                message: format!("{public_url:?} must start with http:// or https://"),
            });
        }
        Ok(Self {
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/pipebridge".into()),
            db_max_connections: parse("PIPEBRIDGE_DB_MAX_CONNECTIONS", 10)?,
            public_url: public_url.trim_end_matches('/').to_owned(),
            session_idle_minutes: parse("PIPEBRIDGE_SESSION_IDLE_MINUTES", 720)?,
            trust_forwarded_for: parse("PIPEBRIDGE_TRUST_FORWARDED_FOR", false)?,
            log_json: match var("PIPEBRIDGE_LOG_FORMAT").as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => {
                    return Err(ConfigError {
                        name: "PIPEBRIDGE_LOG_FORMAT",
                        message: format!("{other:?} is not one of text, json"),
                    });
                }
            },
        })
    }

    /// The settings for a test: the given database, everything else at its default.
    pub fn for_tests(database_url: String) -> Self {
        Self {
            database_url,
            db_max_connections: 5,
            public_url: "http://127.0.0.1:3000".into(),
            session_idle_minutes: 720,
            trust_forwarded_for: false,
            log_json: false,
        }
    }

    pub fn secure_cookies(&self) -> bool {
        self.public_url.starts_with("https://")
    }
}

fn var(name: &str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parse<T: FromStr>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            message: format!("{raw:?} is not valid: {e}"),
        }),
    }
}
