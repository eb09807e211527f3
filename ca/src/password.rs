//! Enrollment secrets: generated at random, stored only as a slow PBKDF2-HMAC-SHA256 hash.
//!
//! A hash records its own iteration count and salt, so raising `pbkdf2_iterations` in the CA's
//! configuration applies to new registrations without invalidating the old ones. Verification is
//! constant-time (ring's `pbkdf2::verify`), and [`PasswordHasher::verify_unknown`] spends the same
//! work for an id that does not exist, so that timing does not tell which ids are registered.

use std::num::NonZeroU32;

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::CaError;

/// The hash algorithm's name as stored.
pub const ALGORITHM: &str = "pbkdf2-hmac-sha256";
/// The length of a salt and of a hash, bytes.
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
/// The longest secret accepted, bytes: hashing is slow, but not in the length of the input.
pub const MAX_SECRET_LEN: usize = 256;
/// The length of a generated secret, bytes of randomness (written as twice as many hex digits).
const GENERATED_SECRET_BYTES: usize = 16;

/// A stored secret hash.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// The random salt.
    pub salt: Vec<u8>,
    /// The derived key.
    pub hash: Vec<u8>,
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is not the secret, but there is no reason to print it either.
        write!(f, "SecretHash({ALGORITHM}, {} iterations)", self.iterations)
    }
}

/// Hashes and verifies secrets with a fixed iteration count.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    iterations: NonZeroU32,
    /// A hash of a random secret, verified against when an id is unknown.
    decoy: SecretHash,
}

impl PasswordHasher {
    /// A hasher that makes hashes of `iterations` PBKDF2 rounds.
    pub fn new(iterations: u32) -> Result<Self, CaError> {
        let iterations = NonZeroU32::new(iterations)
            .ok_or_else(|| CaError::Config("pbkdf2_iterations must be at least 1".into()))?;
        let decoy_secret = generate_secret()?;
        let decoy = hash_with(iterations, &decoy_secret)?;
        Ok(PasswordHasher { iterations, decoy })
    }

    /// Hashes `secret` with a fresh random salt.
    pub fn hash(&self, secret: &str) -> Result<SecretHash, CaError> {
        hash_with(self.iterations, secret)
    }

    /// Whether `secret` matches `stored`, in constant time.
    pub fn verify(&self, stored: &SecretHash, secret: &str) -> bool {
        let Some(iterations) = NonZeroU32::new(stored.iterations) else {
            return false;
        };
        if secret.len() > MAX_SECRET_LEN {
            return false;
        }
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &stored.salt,
            secret.as_bytes(),
            &stored.hash,
        )
        .is_ok()
    }

    /// Does the work of a verification for an id that is not registered, and fails.
    pub fn verify_unknown(&self, secret: &str) -> bool {
        let _ = self.verify(&self.decoy, secret);
        false
    }
}

fn hash_with(iterations: NonZeroU32, secret: &str) -> Result<SecretHash, CaError> {
    if secret.is_empty() || secret.len() > MAX_SECRET_LEN {
        return Err(CaError::InvalidRequest(format!(
            "a secret must have 1 to {MAX_SECRET_LEN} bytes, not {}",
            secret.len()
        )));
    }
    let mut salt = vec![0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| CaError::Internal("the system random generator failed".into()))?;
    let mut hash = vec![0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        secret.as_bytes(),
        &mut hash,
    );
    Ok(SecretHash {
        iterations: iterations.get(),
        salt,
        hash,
    })
}

/// A new random secret: 32 lowercase hex digits (128 bits).
pub fn generate_secret() -> Result<String, CaError> {
    let mut bytes = [0u8; GENERATED_SECRET_BYTES];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Internal("the system random generator failed".into()))?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_verifies_against_its_hash_only() {
        let hasher = PasswordHasher::new(1000).unwrap();
        let h = hasher.hash("s3cret").unwrap();
        assert_eq!(h.iterations, 1000);
        assert!(hasher.verify(&h, "s3cret"));
        assert!(!hasher.verify(&h, "s3cret "));
        assert!(!hasher.verify(&h, ""));
        assert!(!hasher.verify_unknown("s3cret"));
        // The same secret hashes differently each time (random salt).
        assert_ne!(hasher.hash("s3cret").unwrap().hash, h.hash);
    }

    #[test]
    fn a_hash_keeps_its_own_iteration_count() {
        let old = PasswordHasher::new(1000).unwrap().hash("pw").unwrap();
        let newer = PasswordHasher::new(2000).unwrap();
        assert!(newer.verify(&old, "pw"));
    }

    #[test]
    fn bad_secrets_and_settings_are_refused() {
        assert!(PasswordHasher::new(0).is_err());
        let hasher = PasswordHasher::new(1000).unwrap();
        assert!(hasher.hash("").is_err());
        assert!(hasher.hash(&"x".repeat(MAX_SECRET_LEN + 1)).is_err());
        let corrupt = SecretHash {
            iterations: 0,
            salt: vec![],
            hash: vec![],
        };
        assert!(!hasher.verify(&corrupt, "pw"));
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let a = generate_secret().unwrap();
        assert_eq!(a.len(), 32);
        assert_ne!(a, generate_secret().unwrap());
    }
}
