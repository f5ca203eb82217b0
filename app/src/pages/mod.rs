//! The pages, one file per area.

mod auth;
mod connections;
mod home;
mod mappings;
mod placeholders;
mod settings;
mod sync;
mod team;
mod tenant;

pub use auth::{LoginPage, SignupPage};
pub use home::{HomePage, NewCompanyPage};
pub use connections::ConnectionsPage;
pub use mappings::MappingsPage;
pub use placeholders::DashboardPage;
pub use sync::{HistoryPage, RunPage};
pub use settings::SettingsPage;
pub use team::TeamPage;
pub use tenant::TenantShell;
