//! An email address as typed at sign-up and log-in, normalised to lower case.

use std::fmt;

use super::ParseError;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ParseError("Enter your email address.".into()));
        }
        if trimmed.len() > 254 {
            return Err(ParseError("That email address is too long.".into()));
        }
        // `email_address` follows RFC 5322; we additionally require a dot in the domain, since a
        // bare host name ("me@localhost") is never what someone signing up means.
        let valid = email_address::EmailAddress::is_valid(trimmed)
            && trimmed
                .rsplit_once('@')
                .is_some_and(|(_, domain)| domain.contains('.') && !domain.ends_with('.'));
        if !valid {
            return Err(ParseError(format!("\"{trimmed}\" is not a valid email address.")));
        }
        Ok(Self(trimmed.to_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// Emails are personal data: keep them out of logs that print `Debug`.
impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_lowercases() {
        assert_eq!(Email::parse("  Ann@Example.COM ").unwrap().as_str(), "ann@example.com");
    }

    #[test]
    fn refuses_malformed() {
        for bad in [
            "",
            "   ",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "ann@example.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn debug_hides_the_address() {
        let email = Email::parse("ann@example.com").unwrap();
        assert!(!format!("{email:?}").contains("ann"));
    }
}
