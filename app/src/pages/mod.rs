//! The pages, one file per area.

mod auth;
mod home;
mod placeholders;
mod settings;
mod team;
mod tenant;

pub use auth::{LoginPage, SignupPage};
pub use home::{HomePage, NewCompanyPage};
pub use placeholders::{ConnectionsPage, DashboardPage, HistoryPage, MappingsPage};
pub use settings::SettingsPage;
pub use team::TeamPage;
pub use tenant::TenantShell;
