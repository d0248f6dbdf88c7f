//! Salted password hashes in RabbitMQ's formats.
//!
//! RabbitMQ stores `salt ++ H(salt ++ password)` with a 4-byte random salt,
//! and exports it base64-encoded with the name of the hashing module. The
//! same bytes are kept here, so definitions move between the brokers with
//! the users' passwords intact. Verification compares in constant time.

use base64::Engine;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The hash functions RabbitMQ names in definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HashingAlgorithm {
    #[default]
    Sha256,
    Sha512,
    Md5,
}

impl HashingAlgorithm {
    /// Parses RabbitMQ's module name (`rabbit_password_hashing_sha256`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "rabbit_password_hashing_sha256" => Some(Self::Sha256),
            "rabbit_password_hashing_sha512" => Some(Self::Sha512),
            "rabbit_password_hashing_md5" => Some(Self::Md5),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "rabbit_password_hashing_sha256",
            Self::Sha512 => "rabbit_password_hashing_sha512",
            Self::Md5 => "rabbit_password_hashing_md5",
        }
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(salt: &[u8], password: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update(salt);
            d.update(password);
            d.finalize().to_vec()
        }
        match self {
            Self::Sha256 => run::<Sha256>(salt, password),
            Self::Sha512 => run::<Sha512>(salt, password),
            Self::Md5 => run::<Md5>(salt, password),
        }
    }
}

/// The length of the salt RabbitMQ generates.
pub const SALT_LEN: usize = 4;

/// A user's stored credential: `salt ++ digest`, or nothing (a user without
/// a password cannot log in with one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PasswordHash {
    pub algorithm: HashingAlgorithm,
    /// `salt ++ H(salt ++ password)`; empty for a user without a password.
    bytes: Vec<u8>,
}

/// Why a stored hash was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("password_hash is not valid base64")]
    Base64,
    #[error("unknown hashing algorithm '{0}'")]
    Algorithm(String),
}

impl PasswordHash {
    /// Hashes `password` with `salt` (which the caller draws from a secure
    /// random source: this crate does no I/O).
    pub fn new(algorithm: HashingAlgorithm, salt: [u8; SALT_LEN], password: &str) -> Self {
        let mut bytes = salt.to_vec();
        bytes.extend(algorithm.digest(&salt, password.as_bytes()));
        PasswordHash { algorithm, bytes }
    }

    /// A user that has no password.
    pub fn none() -> Self {
        PasswordHash::default()
    }

    /// Reads a hash as RabbitMQ exports it: base64, with the algorithm's
    /// module name (absent means RabbitMQ's default, SHA-256).
    pub fn from_base64(encoded: &str, algorithm: Option<&str>) -> Result<Self, HashError> {
        let algorithm = match algorithm {
            None | Some("") => HashingAlgorithm::Sha256,
            Some(name) => {
                HashingAlgorithm::parse(name).ok_or_else(|| HashError::Algorithm(name.into()))?
            }
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| HashError::Base64)?;
        Ok(PasswordHash { algorithm, bytes })
    }

    /// The base64 text RabbitMQ exports.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Whether `password` is this user's password. A user without a
    /// password never matches, and neither does a malformed hash.
    pub fn verify(&self, password: &str) -> bool {
        if self.bytes.len() <= SALT_LEN {
            return false;
        }
        let (salt, expected) = self.bytes.split_at(SALT_LEN);
        let got = self.algorithm.digest(salt, password.as_bytes());
        got.len() == expected.len() && bool::from(got.ct_eq(expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_what_it_hashed_and_nothing_else() {
        for algorithm in [
            HashingAlgorithm::Sha256,
            HashingAlgorithm::Sha512,
            HashingAlgorithm::Md5,
        ] {
            let h = PasswordHash::new(algorithm, [1, 2, 3, 4], "s3cret");
            assert!(h.verify("s3cret"));
            assert!(!h.verify("s3cret "));
            assert!(!h.verify(""));
            let again =
                PasswordHash::from_base64(&h.to_base64(), Some(algorithm.as_str())).unwrap();
            assert_eq!(again, h);
            assert!(again.verify("s3cret"));
        }
    }

    #[test]
    fn reads_a_hash_exported_by_rabbitmq() {
        // `rabbitmqctl hash_password guest` style: salt ++ sha256(salt ++ pw).
        let salt = [0x90u8, 0x8d, 0xc6, 0x0a];
        let mut bytes = salt.to_vec();
        bytes.extend(Sha256::digest([&salt[..], b"guest"].concat()));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let h =
            PasswordHash::from_base64(&encoded, Some("rabbit_password_hashing_sha256")).unwrap();
        assert!(h.verify("guest"));
        assert!(!h.verify("Guest"));
        let default = PasswordHash::from_base64(&encoded, None).unwrap();
        assert!(default.verify("guest"));
    }

    #[test]
    fn a_user_without_a_password_never_logs_in_with_one() {
        assert!(!PasswordHash::none().verify(""));
        assert!(!PasswordHash::from_base64("", None).unwrap().verify(""));
        assert_eq!(
            PasswordHash::from_base64("%%%", None),
            Err(HashError::Base64)
        );
        assert!(matches!(
            PasswordHash::from_base64("AAAA", Some("rabbit_password_hashing_bcrypt")),
            Err(HashError::Algorithm(_))
        ));
    }
}
