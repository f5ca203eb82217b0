//! Server functions, one file per area. Each is thin: find the user and tenant, parse the input,
//! call one core service, map its error. The views they return are the browser's shape of the
//! data, separate from database rows and domain types.

mod auth;
mod checklist;
mod connections;
mod mappings;
#[cfg(feature = "ssr")]
pub mod server;
mod sync;
mod team;
mod tenant;

pub use auth::*;
pub use checklist::*;
pub use connections::*;
pub use mappings::*;
pub use sync::*;
pub use team::*;
pub use tenant::*;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub can_manage: bool,
}

/// What every page of a tenant needs: the tenant, the user, and the user's other tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantPage {
    pub tenant: TenantView,
    pub user_email: String,
    pub tenants: Vec<TenantView>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub role: String,
    pub is_you: bool,
}
