//! The pages, one file per area.

mod auth;
mod connections;
mod dashboard;
mod home;
mod mapping_forms;
mod mappings;
mod settings;
mod sync;
mod team;
mod tenant;

pub use auth::{LoginPage, SignupPage};
pub use connections::ConnectionsPage;
pub use dashboard::DashboardPage;
pub use home::{HomePage, NewCompanyPage};
pub use mappings::MappingsPage;
pub use settings::SettingsPage;
pub use sync::{HistoryPage, RunPage};
pub use team::TeamPage;
pub use tenant::TenantShell;
