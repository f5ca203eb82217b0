//! Accounts and tenants: sign-up, log-in (with throttling), tenant membership and the team.
//!
//! Access to a tenant goes through [`authorize`], which yields a [`Member`]; every function that
//! reads or changes a tenant takes that `Member` (and so its `TenantId`) as an argument.

mod login;
mod passwords;
mod signup;
mod team;
mod tenants;

pub use login::{LogInError, THROTTLE_WINDOW, log_in};
pub use signup::{SignUpError, SignedUp, sign_up};
pub use team::{TeamError, TeamMember, add_member, change_role, members, remove_member};
pub use tenants::{
    AccessError, Member, TenantSummary, authorize, create_tenant, rename_tenant, tenants_of,
    user_email,
};
