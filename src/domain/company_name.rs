//! The display name of a tenant (a company).

use std::fmt;

use super::ParseError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyName(String);

impl CompanyName {
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let name = input.trim();
        if name.is_empty() {
            return Err(ParseError("Enter your company name.".into()));
        }
        if name.chars().count() > 100 {
            return Err(ParseError("A company name can have at most 100 characters.".into()));
        }
        if name.chars().any(char::is_control) {
            return Err(ParseError("A company name cannot contain control characters.".into()));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CompanyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds() {
        assert_eq!(CompanyName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(CompanyName::parse("   ").is_err());
        assert!(CompanyName::parse(&"x".repeat(101)).is_err());
        assert!(CompanyName::parse("a\u{0}b").is_err());
    }
}
