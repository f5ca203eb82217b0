//! Configuration: one typed struct read from the environment at start-up; errors name the variable.
//! The address to listen on and the site folder come from cargo-leptos's `LEPTOS_*` variables.

use std::env;
use std::path::Path;
use std::str::FromStr;

use pipebridge::connections::Providers;
use pipebridge::secrets::{Secret, SecretKey};

#[derive(Clone)]
pub struct Config {
    /// `PIPEBRIDGE_ENV`: `development` (default) or `production`. Production refuses to start
    /// without `PIPEBRIDGE_SECRET_KEY`.
    pub production: bool,
    /// `PIPEBRIDGE_SECRET_KEY`: 32 bytes, base64 (`openssl rand -base64 32`): seals tokens and keys
    /// at rest. In development without it, a key is kept in `PIPEBRIDGE_DEV_KEY_FILE`
    /// (default `.data/dev-secret.key`), created on first start.
    pub secret_key: SecretKey,
    /// Where Pipedrive and Brevo are (`PIPEBRIDGE_PROVIDERS=sandbox|real` and the URLs below).
    pub providers: Providers,
    /// `DATABASE_URL`: the PostgreSQL database (default: the local server, database `pipebridge`).
    pub database_url: String,
    /// `PIPEBRIDGE_DB_MAX_CONNECTIONS` (default 10).
    pub db_max_connections: u32,
    /// `PIPEBRIDGE_WORKERS`: job worker tasks in this process (default 4).
    pub workers: usize,
    /// `PIPEBRIDGE_PIPEDRIVE_DAILY_BUDGET`: the Pipedrive company's daily token budget (30,000 ×
    /// plan multiplier × seats; default 30,000, the smallest: one Lite seat).
    pub pipedrive_daily_budget: u64,
    /// `PIPEBRIDGE_SYNC_EVERY_SECONDS`: every tenant's incremental sync is queued this often
    /// (seconds; 0: never).
    pub sync_every_seconds: u64,
    /// `PIPEBRIDGE_RETENTION_DAYS`: finished jobs and sync runs, resolved record errors and
    /// schedule periods are deleted after this many days (default 30; 0: never).
    pub retention_days: u64,
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
        let public_url =
            var("PIPEBRIDGE_PUBLIC_URL").unwrap_or_else(|| "http://127.0.0.1:3000".into());
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError {
                name: "PIPEBRIDGE_PUBLIC_URL",
                message: format!("{public_url:?} must start with http:// or https://"),
            });
        }
        let public_url = public_url.trim_end_matches('/').to_owned();
        let production = match var("PIPEBRIDGE_ENV").as_deref() {
            None | Some("development") => false,
            Some("production") => true,
            Some(other) => {
                return Err(ConfigError {
                    name: "PIPEBRIDGE_ENV",
                    message: format!("{other:?} is not one of development, production"),
                });
            }
        };
        Ok(Self {
            production,
            secret_key: secret_key(production)?,
            providers: providers(&public_url)?,
            database_url: var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/pipebridge".into()),
            db_max_connections: parse("PIPEBRIDGE_DB_MAX_CONNECTIONS", 10)?,
            workers: parse("PIPEBRIDGE_WORKERS", 4)?,
            pipedrive_daily_budget: parse("PIPEBRIDGE_PIPEDRIVE_DAILY_BUDGET", 30_000)?,
            sync_every_seconds: parse("PIPEBRIDGE_SYNC_EVERY_SECONDS", 60)?,
            retention_days: parse("PIPEBRIDGE_RETENTION_DAYS", 30)?,
            public_url,
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

    /// The settings for a test: the given database and public URL, a fresh secret key, the
    /// providers at the sandbox's defaults (tests point them at their own sandbox).
    pub fn for_tests(database_url: String, public_url: &str) -> Self {
        Self {
            production: false,
            secret_key: SecretKey::generate(),
            providers: Providers::sandbox(public_url),
            database_url,
            db_max_connections: 5,
            workers: 1,
            pipedrive_daily_budget: 1_000_000,
            // Tests start their syncs themselves.
            sync_every_seconds: 0,
            retention_days: 0,
            public_url: public_url.to_owned(),
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

fn secret_key(production: bool) -> Result<SecretKey, ConfigError> {
    let name = "PIPEBRIDGE_SECRET_KEY";
    if let Some(text) = var(name) {
        return SecretKey::from_base64(&text)
            .map_err(|e| ConfigError { name, message: e.to_string() });
    }
    if production {
        return Err(ConfigError {
            name,
            message: "is required when PIPEBRIDGE_ENV=production (make one with: openssl rand -base64 32)".into(),
        });
    }
    let file_var = "PIPEBRIDGE_DEV_KEY_FILE";
    let path = var(file_var).unwrap_or_else(|| ".data/dev-secret.key".into());
    let err = |message: String| ConfigError { name: file_var, message };
    if Path::new(&path).exists() {
        let text =
            std::fs::read_to_string(&path).map_err(|e| err(format!("reading {path}: {e}")))?;
        return SecretKey::from_base64(&text).map_err(|e| err(format!("{path}: {e}")));
    }
    let key = SecretKey::generate();
    if let Some(dir) = Path::new(&path).parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("creating {}: {e}", dir.display())))?;
    }
    write_private(&path, &key.to_base64()).map_err(|e| err(format!("writing {path}: {e}")))?;
    Ok(key)
}

#[cfg(unix)]
fn write_private(path: &str, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &str, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// `PIPEBRIDGE_PROVIDERS=sandbox` (default): the local sandbox; `real`: Pipedrive and Brevo, with
/// `PIPEBRIDGE_PIPEDRIVE_CLIENT_ID` / `_CLIENT_SECRET` required. Each URL can be set on its own.
fn providers(public_url: &str) -> Result<Providers, ConfigError> {
    let mut p = Providers::sandbox(public_url);
    match var("PIPEBRIDGE_PROVIDERS").as_deref() {
        None | Some("sandbox") => {}
        Some("real") => {
            p.sandbox = false;
            p.pipedrive_oauth.server = "https://oauth.pipedrive.com".into();
            p.pipedrive_api = "https://{company_domain}.pipedrive.com".into();
            p.brevo_api = "https://api.brevo.com".into();
            for name in ["PIPEBRIDGE_PIPEDRIVE_CLIENT_ID", "PIPEBRIDGE_PIPEDRIVE_CLIENT_SECRET"] {
                if var(name).is_none() {
                    return Err(ConfigError { name, message: "is required with PIPEBRIDGE_PROVIDERS=real (from Pipedrive's Developer Hub)".into() });
                }
            }
        }
        Some(other) => {
            return Err(ConfigError {
                name: "PIPEBRIDGE_PROVIDERS",
                message: format!("{other:?} is not one of sandbox, real"),
            });
        }
    }
    let url = |name: &'static str, current: &mut String| -> Result<(), ConfigError> {
        if let Some(v) = var(name) {
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                return Err(ConfigError {
                    name,
                    message: format!("{v:?} must start with http:// or https://"),
                });
            }
            *current = v.trim_end_matches('/').to_owned();
        }
        Ok(())
    };
    url("PIPEBRIDGE_PIPEDRIVE_OAUTH_URL", &mut p.pipedrive_oauth.server)?;
    url("PIPEBRIDGE_PIPEDRIVE_API_URL", &mut p.pipedrive_api)?;
    url("PIPEBRIDGE_BREVO_API_URL", &mut p.brevo_api)?;
    url("PIPEBRIDGE_PIPEDRIVE_REDIRECT_URL", &mut p.pipedrive_oauth.redirect_url)?;
    if let Some(id) = var("PIPEBRIDGE_PIPEDRIVE_CLIENT_ID") {
        p.pipedrive_oauth.client_id = id;
    }
    if let Some(secret) = var("PIPEBRIDGE_PIPEDRIVE_CLIENT_SECRET") {
        p.pipedrive_oauth.client_secret = Secret::new(secret);
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_refuses_to_start_without_a_secret_key() {
        // The test environment sets no PIPEBRIDGE_SECRET_KEY.
        if var("PIPEBRIDGE_SECRET_KEY").is_some() {
            return;
        }
        let e = secret_key(true).expect_err("refused");
        assert_eq!(e.name, "PIPEBRIDGE_SECRET_KEY");
        assert!(e.to_string().contains("required when PIPEBRIDGE_ENV=production"), "{e}");
    }

    #[test]
    fn providers_default_to_the_sandbox_with_the_public_callback() {
        let p = providers("https://sync.example.com").unwrap();
        assert!(p.sandbox, "the sandbox by default");
        assert_eq!(
            p.pipedrive_oauth.redirect_url,
            "https://sync.example.com/oauth/pipedrive/callback"
        );
    }
}
