//! Sign-up: a user, a tenant, and the user as its owner, in one transaction.

use sqlx::PgPool;

use super::passwords;
use crate::domain::{CompanyName, Email, Password, TenantId, UserId};

#[derive(Debug)]
pub struct SignedUp {
    pub user_id: UserId,
    pub tenant_id: TenantId,
}

#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    #[error("An account with this email already exists. Log in instead.")]
    EmailTaken,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[tracing::instrument(skip_all)]
pub async fn sign_up(
    pool: &PgPool,
    email: &Email,
    password: Password,
    company: &CompanyName,
) -> Result<SignedUp, SignUpError> {
    let password_hash = passwords::hash(password.expose().to_owned()).await;
    let mut tx = pool.begin().await?;
    let user_id: UserId =
        sqlx::query_scalar("insert into users (email, password_hash) values ($1, $2) returning id")
            .bind(email.as_str())
            .bind(&password_hash)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => {
                    SignUpError::EmailTaken
                }
                _ => SignUpError::Database(e),
            })?;
    let tenant_id = super::tenants::insert_tenant(&mut tx, user_id, company).await?;
    tx.commit().await?;
    tracing::info!(%user_id, %tenant_id, "signed up");
    Ok(SignedUp { user_id, tenant_id })
}
