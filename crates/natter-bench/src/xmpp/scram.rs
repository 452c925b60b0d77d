//! The client side of SASL SCRAM (RFC 5802) with SHA-1 and SHA-256
//! (RFC 7677), without channel binding: the generator speaks plaintext
//! on loopback.
//!
//! The salted password is the expensive part (PBKDF2 with the server's
//! iteration count); it is cached per salt and iteration count, as real
//! clients cache it, so that a log-in storm measures the server's hashing
//! and not the generator's.

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hash {
    Sha1,
    Sha256,
}

impl Hash {
    pub fn mechanism(self) -> &'static str {
        match self {
            Hash::Sha1 => "SCRAM-SHA-1",
            Hash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            Hash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        use sha2::Digest;
        match self {
            Hash::Sha1 => Sha1::digest(data).to_vec(),
            Hash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Hash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
            Hash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
                out.to_vec()
            }
        }
    }
}

type Key = (Hash, String, Vec<u8>, u32);

/// Salted passwords already computed, by (hash, password, salt, iterations).
#[derive(Default)]
pub struct SaltCache(Mutex<HashMap<Key, Vec<u8>>>);

impl SaltCache {
    fn get(&self, hash: Hash, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let key = (hash, password.to_owned(), salt.to_vec(), iterations);
        if let Some(v) = self.0.lock().expect("salt cache").get(&key) {
            return v.clone();
        }
        let v = hash.salted_password(password, salt, iterations);
        self.0.lock().expect("salt cache").insert(key, v.clone());
        v
    }
}

/// One SCRAM exchange, step by step.
pub struct Scram {
    hash: Hash,
    password: String,
    client_first_bare: String,
    client_nonce: String,
    /// The server signature we expect in its final message.
    server_signature: Option<Vec<u8>>,
}

/// RFC 5802 `saslname`: `=` and `,` escaped.
fn saslname(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

impl Scram {
    /// Starts with a fresh random nonce; returns the exchange and the
    /// client-first message (to base64 into `<auth>`).
    pub fn start(hash: Hash, user: &str, password: &str) -> (Self, String) {
        use rand::Rng;
        let nonce: [u8; 18] = rand::rng().random();
        Self::with_nonce(hash, user, password, &B64.encode(nonce))
    }

    fn with_nonce(hash: Hash, user: &str, password: &str, nonce: &str) -> (Self, String) {
        let bare = format!("n={},r={nonce}", saslname(user));
        let first = format!("n,,{bare}");
        (
            Self {
                hash,
                password: password.to_owned(),
                client_first_bare: bare,
                client_nonce: nonce.to_owned(),
                server_signature: None,
            },
            first,
        )
    }

    /// Answers the server-first message with the client-final one.
    pub fn respond(&mut self, server_first: &str, cache: &SaltCache) -> anyhow::Result<String> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for part in server_first.split(',') {
            match part.split_once('=') {
                Some(("r", v)) => nonce = Some(v),
                Some(("s", v)) => salt = Some(B64.decode(v).context("salt is not base64")?),
                Some(("i", v)) => iterations = Some(v.parse::<u32>().context("iteration count")?),
                Some(("m", _)) => bail!("the server requires a SCRAM extension"),
                _ => {}
            }
        }
        let nonce = nonce.context("no nonce in server-first")?;
        let salt = salt.context("no salt in server-first")?;
        let iterations = iterations.context("no iteration count in server-first")?;
        ensure!(
            nonce.starts_with(&self.client_nonce) && nonce.len() > self.client_nonce.len(),
            "the server's nonce does not extend ours"
        );
        ensure!(iterations >= 1, "iteration count 0");
        let h = self.hash;
        let salted = cache.get(h, &self.password, &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.digest(&client_key);
        // "biws" is base64("n,,"): no channel binding.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)))
    }

    /// Checks the server-final message (`v=…`): the server knew the
    /// password too.
    pub fn verify(&self, server_final: &str) -> anyhow::Result<()> {
        if let Some(e) = server_final.strip_prefix("e=") {
            bail!("the server refused: {e}");
        }
        let v = server_final
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .context("no verifier in server-final")?;
        let expected = self
            .server_signature
            .as_ref()
            .context("server-final before server-first")?;
        ensure!(
            B64.decode(v).context("verifier is not base64")? == *expected,
            "the server's signature is wrong"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5802_sha1_example() {
        let cache = SaltCache::default();
        let (mut s, first) =
            Scram::with_nonce(Hash::Sha1, "user", "pencil", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(first, "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let fin = s
            .respond(
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
                &cache,
            )
            .expect("respond");
        assert_eq!(
            fin,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        s.verify("v=rmF9pqV8S7suAoZWja4dJRkFsKQ=").expect("verify");
        assert!(s.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err());
    }

    #[test]
    fn rfc7677_sha256_example() {
        let cache = SaltCache::default();
        let (mut s, _) = Scram::with_nonce(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        let fin = s
            .respond(
                "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
                &cache,
            )
            .expect("respond");
        assert_eq!(
            fin,
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        s.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .expect("verify");
    }

    #[test]
    fn a_nonce_that_does_not_extend_ours_is_refused() {
        let (mut s, _) = Scram::with_nonce(Hash::Sha1, "user", "pencil", "abc");
        assert!(
            s.respond("r=xyz123,s=QSXCR+Q6sek8bf92,i=4096", &SaltCache::default())
                .is_err()
        );
    }
}
