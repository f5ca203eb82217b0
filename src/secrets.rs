//! Secrets at rest: Pipedrive tokens and Brevo keys are sealed with ChaCha20-Poly1305 under a key
//! from the environment, bound to their tenant and purpose (associated data), so a ciphertext
//! copied to another tenant's row or another column does not open.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::domain::TenantId;

/// The sealing key. `Debug` shows nothing.
#[derive(Clone)]
pub struct SecretKey(Key);

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret key must be 32 bytes, base64-encoded (make one with: openssl rand -base64 32)"
    )]
    BadKey,
    #[error(
        "a stored secret could not be opened (wrong PIPEBRIDGE_SECRET_KEY, or the row was altered)"
    )]
    Unseal,
}

impl SecretKey {
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SecretError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SecretError::BadKey)?;
        Ok(Self(key.into()))
    }

    pub fn generate() -> Self {
        Self(ChaCha20Poly1305::generate_key(&mut OsRng))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_slice())
    }

    /// nonce (12 bytes) ‖ ciphertext with tag.
    pub fn seal(&self, tenant: TenantId, purpose: &str, plain: &Secret) -> Vec<u8> {
        let cipher = ChaCha20Poly1305::new(&self.0);
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(tenant, purpose);
        let sealed = cipher
            .encrypt(&nonce, Payload { msg: plain.expose().as_bytes(), aad: &aad })
            .expect("ChaCha20-Poly1305 encryption of a short secret does not fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        out
    }

    pub fn open(
        &self,
        tenant: TenantId,
        purpose: &str,
        sealed: &[u8],
    ) -> Result<Secret, SecretError> {
        if sealed.len() < 12 + 16 {
            return Err(SecretError::Unseal);
        }
        let (nonce, body) = sealed.split_at(12);
        let cipher = ChaCha20Poly1305::new(&self.0);
        let aad = associated(tenant, purpose);
        let plain = cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: &aad })
            .map_err(|_| SecretError::Unseal)?;
        String::from_utf8(plain).map(Secret).map_err(|_| SecretError::Unseal)
    }
}

fn associated(tenant: TenantId, purpose: &str) -> Vec<u8> {
    format!("pipebridge/v1/{tenant}/{purpose}").into_bytes()
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(redacted)")
    }
}

/// A token or key in clear, in memory only. Never `Serialize`; `Debug` is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last four characters, which the UI shows to tell keys apart.
    pub fn last4(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId(uuid::Uuid::new_v4())
    }

    #[test]
    fn seals_and_opens_bound_to_tenant_and_purpose() {
        let key = SecretKey::generate();
        let t = tenant();
        let s = Secret::new("xkeysib-abcdef-1234");
        let sealed = key.seal(t, "brevo_api_key", &s);
        assert!(!String::from_utf8_lossy(&sealed).contains("abcdef"));
        assert_eq!(key.open(t, "brevo_api_key", &sealed).unwrap(), s);
        assert!(key.open(tenant(), "brevo_api_key", &sealed).is_err(), "another tenant's row");
        assert!(key.open(t, "pipedrive_refresh", &sealed).is_err(), "another column");
        assert!(SecretKey::generate().open(t, "brevo_api_key", &sealed).is_err(), "another key");
        let mut tampered = sealed.clone();
        tampered[20] ^= 1;
        assert!(key.open(t, "brevo_api_key", &tampered).is_err());
        assert_ne!(key.seal(t, "brevo_api_key", &s), sealed, "a fresh nonce each time");
    }

    #[test]
    fn keys_parse_from_base64_and_nothing_leaks_in_debug() {
        let key = SecretKey::generate();
        let again = SecretKey::from_base64(&key.to_base64()).unwrap();
        let t = tenant();
        let sealed = key.seal(t, "p", &Secret::new("v"));
        assert_eq!(again.open(t, "p", &sealed).unwrap().expose(), "v");
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        assert!(SecretKey::from_base64("not base64!").is_err());
        assert_eq!(format!("{key:?}"), "SecretKey(redacted)");
        assert_eq!(format!("{:?}", Secret::new("token")), "Secret(redacted)");
        assert_eq!(Secret::new("abcdefgh").last4(), "efgh");
        assert_eq!(Secret::new("ab").last4(), "ab");
    }
}
