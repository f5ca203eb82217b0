//! Brevo lists made from the mapping forms: one list by name, or the suggested set (one list per
//! role of the mapping), each in the folder the product keeps its lists in. A list of the same
//! name that Brevo already has is taken rather than made twice.

use sqlx::PgPool;

use crate::accounts::{AccessError, Member};
use crate::brevo::BrevoError;
use crate::brevo::api::BrevoApi;
use crate::connections::{self, ConnectError};
use crate::pipedrive::limits::Registry;
use crate::secrets::SecretKey;

/// The folder the product's lists go in (Brevo puts every list in a folder).
pub const FOLDER: &str = "Pipedrive";

/// Brevo states no limit; longer names are unreadable in its own lists anyway.
const MAX_NAME: usize = 120;

/// The four roles of the mapping's lists, in the order the forms show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListRole {
    AllContacts,
    QualifiedLeads,
    Customers,
    Churned,
}

impl ListRole {
    pub const ALL: [ListRole; 4] =
        [ListRole::AllContacts, ListRole::QualifiedLeads, ListRole::Customers, ListRole::Churned];

    /// The key the YAML and the forms use (`connectors.pipedrive.lists.<key>`).
    pub fn key(self) -> &'static str {
        match self {
            ListRole::AllContacts => "all_contacts",
            ListRole::QualifiedLeads => "qualified_leads",
            ListRole::Customers => "customers",
            ListRole::Churned => "churned",
        }
    }

    pub fn parse(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.key() == key)
    }

    pub fn label(self) -> &'static str {
        match self {
            ListRole::AllContacts => "All contacts",
            ListRole::QualifiedLeads => "Qualified leads",
            ListRole::Customers => "Customers",
            ListRole::Churned => "Churned",
        }
    }

    /// The name a new list of this role gets unless the person types another.
    pub fn default_name(self) -> String {
        default_name(self.label())
    }
}

/// "Pipedrive — Customers": the name offered for a new list for `what`.
pub fn default_name(what: &str) -> String {
    format!("{FOLDER} — {what}")
}

/// A list in Brevo that the forms can select.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeList {
    pub id: i64,
    pub name: String,
    /// Brevo had a list of this name already: it is taken, not made again.
    pub existed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The name cannot be a list name: the message says why.
    #[error("{0}")]
    Invalid(String),
    #[error("Connect Brevo first: lists are made in your Brevo account.")]
    NotConnected,
    /// Brevo refused or could not be reached; the message says it in words.
    #[error("{0}")]
    Brevo(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

impl From<BrevoError> for ListError {
    fn from(e: BrevoError) -> Self {
        ListError::Brevo(match e {
            BrevoError::RateLimited { reset_secs } => {
                format!(
                    "Brevo's rate limit for lists was reached: try again in {}.",
                    wait_words(reset_secs)
                )
            }
            BrevoError::BadKey(_) => {
                "Brevo refused the API key: paste a valid one on the Connections page.".into()
            }
            BrevoError::Transient(_) => {
                "Brevo could not be reached just now: try again in a moment.".into()
            }
            BrevoError::Rejected { message, .. } if !message.is_empty() => {
                format!("Brevo refused the list: {message}")
            }
            other => format!("Brevo refused the list ({other})."),
        })
    }
}

fn wait_words(secs: u64) -> String {
    match secs {
        0..=1 => "a second".into(),
        2..=90 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

/// A list name as the person typed it, trimmed; refused when empty or too long.
pub fn parse_name(name: &str) -> Result<String, ListError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(ListError::Invalid("Give the list a name.".into()));
    }
    if name.chars().count() > MAX_NAME {
        return Err(ListError::Invalid(format!("A list name has at most {MAX_NAME} characters.")));
    }
    Ok(name.to_owned())
}

/// Makes lists by name in one Brevo account, reading its lists and folder once.
struct Maker {
    brevo: BrevoApi,
    lists: Vec<(i64, String)>,
    folder: Option<i64>,
}

impl Maker {
    async fn new(
        pool: &PgPool,
        key: &SecretKey,
        limits: &Registry,
        member: &Member,
    ) -> Result<Self, ListError> {
        member.require_manage()?;
        let brevo = connections::brevo_api(pool, key, member, limits)
            .await?
            .ok_or(ListError::NotConnected)?;
        let lists = brevo.lists().await?;
        Ok(Self { brevo, lists, folder: None })
    }

    /// The product's folder: found by name, or made once.
    async fn folder(&mut self) -> Result<i64, ListError> {
        if let Some(id) = self.folder {
            return Ok(id);
        }
        let found = self
            .brevo
            .folders()
            .await?
            .into_iter()
            .find(|(_, n)| n.trim().eq_ignore_ascii_case(FOLDER))
            .map(|(id, _)| id);
        let id = match found {
            Some(id) => id,
            None => self.brevo.create_folder(FOLDER).await?,
        };
        self.folder = Some(id);
        Ok(id)
    }

    async fn make(&mut self, name: &str) -> Result<MadeList, ListError> {
        let name = parse_name(name)?;
        if let Some((id, existing)) =
            self.lists.iter().find(|(_, n)| n.trim().eq_ignore_ascii_case(&name))
        {
            return Ok(MadeList { id: *id, name: existing.clone(), existed: true });
        }
        let folder = self.folder().await?;
        let id = self.brevo.create_list(&name, folder).await?;
        self.lists.push((id, name.clone()));
        tracing::info!(list_id = id, "Brevo list created");
        Ok(MadeList { id, name, existed: false })
    }
}

/// Makes a list named `name` in the tenant's Brevo account (or takes the one of that name).
#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
pub async fn create(
    pool: &PgPool,
    key: &SecretKey,
    limits: &Registry,
    member: &Member,
    name: &str,
) -> Result<MadeList, ListError> {
    parse_name(name)?;
    Maker::new(pool, key, limits, member).await?.make(name).await
}

/// The suggested lists, one per role, and the list each stage row gets from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggested {
    pub all_contacts: MadeList,
    pub qualified_leads: MadeList,
    pub customers: MadeList,
    pub churned: MadeList,
    /// (stage key, list): open stages → qualified leads, won → customers, lost → churned.
    pub stages: Vec<(String, i64)>,
}

/// The list a stage row gets by default: a won deal makes a customer, a lost one a churned
/// contact, an open one a qualified lead.
pub fn default_stage_list(
    stage_key: &str,
    qualified_leads: i64,
    customers: i64,
    churned: i64,
) -> i64 {
    match stage_key {
        "won" => customers,
        "lost" => churned,
        _ => qualified_leads,
    }
}

/// Makes the suggested lists where Brevo has none of the default name, and gives each of
/// `stage_keys` (the forms' stage rows) its default list.
#[tracing::instrument(skip_all, fields(tenant_id = %member.tenant_id))]
pub async fn suggested(
    pool: &PgPool,
    key: &SecretKey,
    limits: &Registry,
    member: &Member,
    stage_keys: &[String],
) -> Result<Suggested, ListError> {
    let mut maker = Maker::new(pool, key, limits, member).await?;
    let all_contacts = maker.make(&ListRole::AllContacts.default_name()).await?;
    let qualified_leads = maker.make(&ListRole::QualifiedLeads.default_name()).await?;
    let customers = maker.make(&ListRole::Customers.default_name()).await?;
    let churned = maker.make(&ListRole::Churned.default_name()).await?;
    let stages = stage_keys
        .iter()
        .map(|k| (k.clone(), default_stage_list(k, qualified_leads.id, customers.id, churned.id)))
        .collect();
    Ok(Suggested { all_contacts, qualified_leads, customers, churned, stages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Pipedrive — Customers ").unwrap(), "Pipedrive — Customers");
        assert!(matches!(parse_name("   "), Err(ListError::Invalid(_))));
        assert!(matches!(parse_name(&"x".repeat(MAX_NAME + 1)), Err(ListError::Invalid(_))));
        assert_eq!(ListRole::Customers.default_name(), "Pipedrive — Customers");
        assert_eq!(ListRole::parse("churned"), Some(ListRole::Churned));
    }

    #[test]
    fn stages_default_to_the_list_of_what_they_make_a_person() {
        assert_eq!(default_stage_list("7", 1, 2, 3), 1, "an open stage: qualified leads");
        assert_eq!(default_stage_list("won", 1, 2, 3), 2);
        assert_eq!(default_stage_list("lost", 1, 2, 3), 3);
    }

    #[test]
    fn brevo_errors_in_words() {
        let e: ListError = BrevoError::RateLimited { reset_secs: 1800 }.into();
        assert_eq!(
            e.to_string(),
            "Brevo's rate limit for lists was reached: try again in 30 minutes."
        );
        let e: ListError =
            BrevoError::Rejected { status: 400, message: "List name already exists".into() }.into();
        assert_eq!(e.to_string(), "Brevo refused the list: List name already exists");
    }
}
