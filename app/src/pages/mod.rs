//! The pages, one file per area.

mod auth;
mod connections;
mod home;
mod mapping_forms;
mod mappings;
mod dashboard;
mod settings;
mod sync;
mod team;
mod tenant;

pub use auth::{LoginPage, SignupPage};
pub use home::{HomePage, NewCompanyPage};
pub use connections::ConnectionsPage;
pub use mappings::MappingsPage;
pub use dashboard::DashboardPage;
pub use sync::{HistoryPage, RunPage};
pub use settings::SettingsPage;
pub use team::TeamPage;
pub use tenant::TenantShell;
