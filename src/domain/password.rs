//! A password chosen at sign-up: at least 10 characters, at most 1024 bytes (argon2 input bound).

use std::fmt;

use super::ParseError;

pub const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_BYTES: usize = 1024;

pub struct Password(String);

impl Password {
    /// Parses a new password (sign-up). Log-in takes the typed string as it is: an old password
    /// that predates a rule must still work.
    pub fn parse_new(input: &str) -> Result<Self, ParseError> {
        if input.chars().count() < MIN_PASSWORD_CHARS {
            return Err(ParseError(format!(
                "Choose a password of at least {MIN_PASSWORD_CHARS} characters."
            )));
        }
        if input.len() > MAX_PASSWORD_BYTES {
            return Err(ParseError("That password is too long (1024 bytes at most).".into()));
        }
        Ok(Self(input.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_rule_counts_characters_not_bytes() {
        assert!(Password::parse_new("123456789").is_err());
        assert!(Password::parse_new("1234567890").is_ok());
        assert!(Password::parse_new("ééééééééé").is_err()); // 9 chars, 18 bytes
    }

    #[test]
    fn debug_is_redacted() {
        let p = Password::parse_new("correct horse battery").unwrap();
        assert!(!format!("{p:?}").contains("horse"));
    }
}
