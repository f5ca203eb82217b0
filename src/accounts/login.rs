//! Log-in with throttling of repeated failures, per email and per client address.
//!
//! The policy: within a sliding window of [`THROTTLE_WINDOW`], after [`MAX_FAILURES_PER_EMAIL`]
//! failures for one email, or [`MAX_FAILURES_PER_IP`] from one address, further attempts are refused
//! (without checking the password) until the oldest of those failures leaves the window. The
//! counters live in PostgreSQL, so they hold across every server process.

use std::time::Duration;

use sqlx::PgPool;

use super::passwords;
use crate::domain::{Email, UserId};

pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_FAILURES_PER_EMAIL: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum LogInError {
    /// The same answer for an unknown email and a wrong password.
    #[error("Wrong email or password.")]
    InvalidCredentials,
    #[error("Too many failed log-in attempts. Wait {} and try again.", minutes(*retry_after))]
    Throttled { retry_after: Duration },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn minutes(d: Duration) -> String {
    let m = d.as_secs().div_ceil(60).max(1);
    if m == 1 { "a minute".into() } else { format!("{m} minutes") }
}

#[tracing::instrument(skip_all)]
pub async fn log_in(
    pool: &PgPool,
    email_input: &str,
    password: &str,
    client_ip: Option<&str>,
) -> Result<UserId, LogInError> {
    // A malformed email cannot have an account: same answer as a wrong password, but still counted.
    let email = Email::parse(email_input).ok();
    let email_key = email
        .as_ref()
        .map(|e| e.as_str().to_owned())
        .unwrap_or_else(|| email_input.trim().to_lowercase());

    if let Some(retry_after) = throttled_for(pool, &email_key, client_ip).await? {
        tracing::warn!("log-in throttled");
        return Err(LogInError::Throttled { retry_after });
    }

    let account: Option<(UserId, String)> = match &email {
        Some(email) => {
            sqlx::query_as("select id, password_hash from users where email = $1")
                .bind(email.as_str())
                .fetch_optional(pool)
                .await?
        }
        None => None,
    };
    let (user_id, stored) = match account {
        Some((id, hash)) => (Some(id), Some(hash)),
        None => (None, None),
    };
    let ok = passwords::verify(password.to_owned(), stored).await;
    match (ok, user_id) {
        (true, Some(user_id)) => {
            sqlx::query("delete from login_failures where email = $1")
                .bind(&email_key)
                .execute(pool)
                .await?;
            tracing::info!(%user_id, "logged in");
            Ok(user_id)
        }
        _ => {
            record_failure(pool, &email_key, client_ip).await?;
            tracing::info!("log-in failed");
            Err(LogInError::InvalidCredentials)
        }
    }
}

async fn record_failure(
    pool: &PgPool,
    email: &str,
    client_ip: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into login_failures (email, client_ip) values ($1, $2)")
        .bind(email)
        .bind(client_ip)
        .execute(pool)
        .await?;
    sqlx::query("delete from login_failures where created_at < now() - make_interval(secs => $1)")
        .bind(THROTTLE_WINDOW.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(())
}

/// How long the caller must wait, if the email or the address has used up its failures.
async fn throttled_for(
    pool: &PgPool,
    email: &str,
    client_ip: Option<&str>,
) -> Result<Option<Duration>, sqlx::Error> {
    // For each key: the failure whose leaving the window brings the count under the limit.
    // `offset limit - 1` over the newest-first list picks it; no row means under the limit.
    const QUERY: &str = "
        select extract(epoch from (created_at + make_interval(secs => $3) - now()))::float8
        from login_failures
        where {col} = $1 and created_at > now() - make_interval(secs => $3)
        order by created_at desc
        offset $2 - 1 limit 1";
    let window = THROTTLE_WINDOW.as_secs_f64();
    let by_email: Option<f64> = sqlx::query_scalar(&QUERY.replace("{col}", "email"))
        .bind(email)
        .bind(MAX_FAILURES_PER_EMAIL)
        .bind(window)
        .fetch_optional(pool)
        .await?;
    let by_ip: Option<f64> = match client_ip {
        Some(ip) => {
            sqlx::query_scalar(&QUERY.replace("{col}", "client_ip"))
                .bind(ip)
                .bind(MAX_FAILURES_PER_IP)
                .bind(window)
                .fetch_optional(pool)
                .await?
        }
        None => None,
    };
    Ok(by_email
        .into_iter()
        .chain(by_ip)
        .reduce(f64::max)
        .map(|secs| Duration::from_secs_f64(secs.max(1.0))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_message_names_the_wait() {
        let e = LogInError::Throttled { retry_after: Duration::from_secs(61) };
        assert_eq!(e.to_string(), "Too many failed log-in attempts. Wait 2 minutes and try again.");
        let e = LogInError::Throttled { retry_after: Duration::from_secs(5) };
        assert!(e.to_string().contains("Wait a minute"));
    }
}
