//! SCRAM key derivation (RFC 5802, RFC 7677).
//!
//! Passwords are stored as SCRAM keys so that XMPP clients can log in with
//! SCRAM-SHA-1 or SCRAM-SHA-256 without the server ever holding the
//! plaintext, and so that the REST log-in checks the same keys. The stored
//! `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` lets the server verify
//! a password or a SCRAM proof, but is not enough to log in as the user.

use hmac::{Hmac, Mac};
use natter_types::{Credentials, Password, ScramKeys};
use rand::RngCore;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Salt length in bytes; RFC 5802 leaves it open, 16 is common practice.
const SALT_LEN: usize = 16;

/// Defines `$keys(password, salt, iterations) -> ScramKeys` and
/// `$hmac(key, data)` for one hash function of `$len` bytes.
macro_rules! scram_for {
    ($keys:ident, $hmac:ident, $hash:ty, $len:expr) => {
        fn $hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac =
                Hmac::<$hash>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }

        fn $keys(password: &[u8], salt: &[u8], iterations: u32) -> ScramKeys {
            let mut salted = [0u8; $len];
            pbkdf2::pbkdf2_hmac::<$hash>(password, salt, iterations, &mut salted);
            let client_key = $hmac(&salted, b"Client Key");
            ScramKeys {
                stored_key: <$hash>::digest(&client_key).to_vec(),
                server_key: $hmac(&salted, b"Server Key"),
            }
        }
    };
}

scram_for!(sha1_keys, hmac_sha1, Sha1, 20);
scram_for!(sha256_keys, hmac_sha256, Sha256, 32);

/// Derives new credentials with a fresh random salt. The password is
/// prepared as UTF-8 bytes as given; SASLprep (RFC 4013) is the identity
/// for the printable ASCII most passwords use, and clients that normalise
/// other input do so the same way on both sides of a Natter log-in.
pub fn derive(password: &Password, iterations: u32) -> Credentials {
    let mut salt = vec![0u8; SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let pw = password.expose().as_bytes();
    Credentials {
        sha1: sha1_keys(pw, &salt, iterations),
        sha256: sha256_keys(pw, &salt, iterations),
        salt,
        iterations,
    }
}

/// Checks a password against stored credentials, in constant time with
/// respect to the stored key. Uses the SHA-256 keys.
pub fn verify(password: &Password, credentials: &Credentials) -> bool {
    let keys = sha256_keys(
        password.expose().as_bytes(),
        &credentials.salt,
        credentials.iterations,
    );
    keys.stored_key.ct_eq(&credentials.sha256.stored_key).into()
}

/// Spends the same work as [`verify`] without credentials, so that a
/// log-in for an unknown user takes as long as one with a wrong password.
pub fn verify_dummy(password: &Password, iterations: u32) {
    let _ = sha256_keys(password.expose().as_bytes(), &[0u8; SALT_LEN], iterations);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5802 section 5 (user "user", password "pencil"): the salted
    /// password, hence the keys, for its salt and 4096 iterations.
    #[test]
    fn rfc5802_sha1_vector() {
        use base64::Engine;
        let salt = base64::engine::general_purpose::STANDARD
            .decode("QSXCR+Q6sek8bf92")
            .unwrap();
        let keys = sha1_keys(b"pencil", &salt, 4096);
        // The RFC gives the server signature, HMAC(ServerKey, AuthMessage),
        // so matching it proves the derivation.
        let auth_message = "n=user,r=fyko+d2lbbFgONRv9qkxdawL,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096,c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j";
        let sig = hmac_sha1(&keys.server_key, auth_message.as_bytes());
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(sig),
            "rmF9pqV8S7suAoZWja4dJRkFsKQ="
        );
        assert_eq!(keys.stored_key.len(), 20);
    }

    /// RFC 7677 section 3 (SCRAM-SHA-256 with user "user", password
    /// "pencil").
    #[test]
    fn rfc7677_sha256_vector() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = sha256_keys(b"pencil", &salt, 4096);
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let sig = hmac_sha256(&keys.server_key, auth_message.as_bytes());
        assert_eq!(
            b64.encode(sig),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
    }

    #[test]
    fn derive_then_verify() {
        let pw = Password::parse_any("password", "correct horse").unwrap();
        let creds = derive(&pw, 64);
        assert_eq!(creds.salt.len(), SALT_LEN);
        assert!(verify(&pw, &creds));
        let wrong = Password::parse_any("password", "correct horsf").unwrap();
        assert!(!verify(&wrong, &creds));
        // fresh salt each time
        assert_ne!(derive(&pw, 64).salt, creds.salt);
    }
}
