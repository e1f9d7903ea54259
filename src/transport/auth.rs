//! Authentication of a connection's handshake with a shared secret: HMAC-SHA256 over a
//! label naming the role, both sides' fresh nonces and the handshake's identities.
//!
//! Used by the peer links (`runtime::net`, key [`AuthKey`] of the cluster) and by the
//! client protocol (`server`, `client`, a separate client key so that a client cannot
//! pose as a peer). The threat model is in the README ("Security"): an attacker who can
//! reach the ports but does not hold the key cannot complete a handshake, so it cannot
//! deliver a frame, take over a live link or hold a slot past the handshake timeout.
//! Frames after the handshake are not MACed: an attacker on the path (able to inject
//! into an established TCP stream) is out of scope; use a private network or a tunnel.
//!
//! Invariants:
//! - a proof binds the role label, both nonces and the identities, so a proof observed
//!   on one connection is useless on another (the verifier's own nonce is fresh) and a
//!   dialer's proof cannot be replayed as an acceptor's;
//! - proofs are compared in constant time;
//! - a key is at least [`KEY_SIZE_MIN`] bytes of a file holding only hex digits.

use std::fmt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a nonce.
pub const NONCE_SIZE: usize = 16;

/// Bytes of a proof (HMAC-SHA256).
pub const PROOF_SIZE: usize = 32;

/// Fewest bytes of a key (128 bits).
pub const KEY_SIZE_MIN: usize = 16;

/// Most bytes of a key.
pub const KEY_SIZE_MAX: usize = 64;

/// A fresh random nonce.
pub type Nonce = [u8; NONCE_SIZE];

/// A handshake proof.
pub type Proof = [u8; PROOF_SIZE];

/// A shared secret. Its `Debug` shows no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    bytes: Vec<u8>,
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthKey({} bytes)", self.bytes.len())
    }
}

/// A key that could not be read or parsed.
#[derive(Debug)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

impl AuthKey {
    /// A key from raw bytes.
    ///
    /// # Errors
    ///
    /// Fewer than [`KEY_SIZE_MIN`] or more than [`KEY_SIZE_MAX`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<AuthKey, KeyError> {
        if !(KEY_SIZE_MIN..=KEY_SIZE_MAX).contains(&bytes.len()) {
            return Err(KeyError(format!(
                "key of {} bytes: between {KEY_SIZE_MIN} and {KEY_SIZE_MAX} needed",
                bytes.len()
            )));
        }
        Ok(AuthKey {
            bytes: bytes.to_vec(),
        })
    }

    /// A key from hex text (surrounding whitespace ignored), as `synod keygen` writes.
    ///
    /// # Errors
    ///
    /// A character that is not a hex digit, an odd count, or a size out of bounds.
    pub fn from_hex(text: &str) -> Result<AuthKey, KeyError> {
        let text = text.trim();
        if text.len() % 2 != 0 {
            return Err(KeyError(format!(
                "{} hex digits: a key is whole bytes",
                text.len()
            )));
        }
        let mut bytes = Vec::with_capacity(text.len() / 2);
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes.push((hi * 16 + lo) as u8),
                _ => return Err(KeyError(format!("not a hex digit at offset {}", 2 * i))),
            }
        }
        AuthKey::from_bytes(&bytes)
    }

    /// Reads a key file (hex text). A file readable by group or others is accepted
    /// with a warning in the log.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or does not hold a key.
    pub fn from_file(path: &Path) -> Result<AuthKey, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError(format!("key file {}: {e}", path.display())))?;
        if let Ok(meta) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if meta.permissions().mode() & 0o077 != 0 {
                log::warn!(
                    "key file {} is readable by other users (mode {:o}): chmod 600 it",
                    path.display(),
                    meta.permissions().mode() & 0o777
                );
            }
        }
        AuthKey::from_hex(&text).map_err(|e| KeyError(format!("key file {}: {e}", path.display())))
    }

    /// A new random key of 32 bytes.
    ///
    /// # Errors
    ///
    /// The OS random source failed.
    pub fn generate() -> Result<AuthKey, KeyError> {
        let mut bytes = [0_u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| KeyError(format!("random source: {e}")))?;
        AuthKey::from_bytes(&bytes)
    }

    /// The key as hex text (what a key file holds).
    #[must_use]
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The proof of `role` over `nonces` (the dialer's first) and `context` (the
    /// handshake's identities, encoded by the caller in a fixed order).
    #[must_use]
    pub fn prove(&self, role: &str, nonces: [&Nonce; 2], context: &[u8]) -> Proof {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC takes any key size");
        // Lengths first, so that no two different inputs concatenate to the same bytes.
        for part in [role.as_bytes(), nonces[0], nonces[1], context] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Whether `proof` is the proof of `role` over `nonces` and `context`, compared
    /// in constant time.
    #[must_use]
    pub fn verify(&self, role: &str, nonces: [&Nonce; 2], context: &[u8], proof: &[u8]) -> bool {
        let expected = self.prove(role, nonces, context);
        if proof.len() != expected.len() {
            return false;
        }
        expected
            .iter()
            .zip(proof)
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// A fresh random nonce.
///
/// # Errors
///
/// The OS random source failed.
pub fn nonce() -> Result<Nonce, KeyError> {
    let mut nonce = [0_u8; NONCE_SIZE];
    getrandom::getrandom(&mut nonce).map_err(|e| KeyError(format!("random source: {e}")))?;
    Ok(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: a proof verifies only with the same key, role, nonces and context.
    // Method: change each input in turn and check that verification fails.
    #[test]
    fn proof_binds_every_input() {
        let key = AuthKey::generate().expect("random");
        let other = AuthKey::generate().expect("random");
        let (a, b) = (nonce().expect("random"), nonce().expect("random"));
        let proof = key.prove("dial", [&a, &b], b"ctx");
        assert!(key.verify("dial", [&a, &b], b"ctx", &proof));
        assert!(!other.verify("dial", [&a, &b], b"ctx", &proof));
        assert!(!key.verify("accept", [&a, &b], b"ctx", &proof));
        assert!(!key.verify("dial", [&b, &a], b"ctx", &proof));
        assert!(!key.verify("dial", [&a, &b], b"ctx2", &proof));
        assert!(!key.verify("dial", [&a, &b], b"ctx", &proof[..31]));
        assert!(!key.verify("dial", [&a, &b], b"ctx", &[]));
    }

    // Goal: key text round-trips and bad text is refused with a reason.
    // Method: parse generated, short, odd and non-hex keys.
    #[test]
    fn key_text() {
        let key = AuthKey::generate().expect("random");
        assert_eq!(
            AuthKey::from_hex(&format!(" {}\n", key.to_hex())).ok(),
            Some(key)
        );
        assert!(AuthKey::from_hex("abcd").is_err());
        assert!(AuthKey::from_hex("abc").is_err());
        assert!(AuthKey::from_hex(&"zz".repeat(16)).is_err());
        assert!(format!("{:?}", AuthKey::generate().expect("random")).contains("32 bytes"));
    }
}
