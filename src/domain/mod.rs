//! Domain types. Each is built only by parsing, so a value of the type is valid by construction.

mod company_name;
mod email;
mod ids;
mod password;
mod role;

pub use company_name::CompanyName;
pub use email::Email;
pub use ids::{TenantId, UserId};
pub use password::Password;
pub use role::Role;

/// Why a piece of user input was refused; the message is written for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);
