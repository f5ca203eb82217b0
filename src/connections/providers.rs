//! Where Pipedrive and Brevo are: the sandbox by default, the real services by configuration.

use crate::pipedrive::oauth::{OAuthError, OAuthSettings, PipedriveOAuth};
use crate::secrets::Secret;

#[derive(Clone)]
pub struct Providers {
    /// Pipedrive's OAuth server (`https://oauth.pipedrive.com`).
    pub pipedrive_oauth: OAuthSettings,
    /// The API base for API-token connections; `{company_domain}` is replaced by the domain the
    /// user enters (`https://{company_domain}.pipedrive.com`).
    pub pipedrive_api: String,
    /// Brevo's API base (`https://api.brevo.com`).
    pub brevo_api: String,
    /// True while these point at the local sandbox; the UI says so.
    pub sandbox: bool,
}

impl Providers {
    pub fn pipedrive_oauth(&self) -> Result<PipedriveOAuth, OAuthError> {
        PipedriveOAuth::new(&self.pipedrive_oauth)
    }

    /// The API base for a company domain typed by the user ("acme" or "acme.pipedrive.com").
    pub fn pipedrive_company_url(&self, company_domain: &str) -> Result<String, String> {
        if !self.pipedrive_api.contains("{company_domain}") {
            return Ok(self.pipedrive_api.clone());
        }
        let domain = company_domain.trim().trim_end_matches(".pipedrive.com").to_lowercase();
        let domain = domain.trim_start_matches("https://").trim_start_matches("http://");
        if domain.is_empty() || !domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err("Enter your Pipedrive company domain: the part before .pipedrive.com in your Pipedrive address.".into());
        }
        Ok(self.pipedrive_api.replace("{company_domain}", domain))
    }

    /// The sandbox's defaults (`sandbox` binary on 4010 / 4020 with its registered OAuth app).
    pub fn sandbox(public_url: &str) -> Self {
        Self {
            pipedrive_oauth: OAuthSettings {
                server: "http://127.0.0.1:4010".into(),
                client_id: "pipebridge-local".into(),
                client_secret: Secret::new("pipebridge-local-secret"),
                redirect_url: format!("{public_url}/oauth/pipedrive/callback"),
            },
            pipedrive_api: "http://127.0.0.1:4010".into(),
            brevo_api: "http://127.0.0.1:4020".into(),
            sandbox: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_domains_fill_the_template() {
        let mut p = Providers::sandbox("http://127.0.0.1:3000");
        assert_eq!(p.pipedrive_company_url("anything").unwrap(), "http://127.0.0.1:4010");
        p.pipedrive_api = "https://{company_domain}.pipedrive.com".into();
        assert_eq!(
            p.pipedrive_company_url(" Acme.pipedrive.com ").unwrap(),
            "https://acme.pipedrive.com"
        );
        assert_eq!(p.pipedrive_company_url("acme-eu").unwrap(), "https://acme-eu.pipedrive.com");
        assert!(p.pipedrive_company_url("evil.com/x?").is_err());
        assert!(p.pipedrive_company_url("").is_err());
    }
}
