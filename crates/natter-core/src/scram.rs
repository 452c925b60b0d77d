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

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    fn keys(self, c: &Credentials) -> &ScramKeys {
        match self {
            Self::Sha1 => &c.sha1,
            Self::Sha256 => &c.sha256,
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => hmac_sha1(key, data),
            Self::Sha256 => hmac_sha256(key, data),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha1 => Sha1::digest(data).to_vec(),
            Self::Sha256 => Sha256::digest(data).to_vec(),
        }
    }
}

/// Why a SCRAM exchange failed, in the terms of RFC 5802's `e=` values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// The client's message does not follow the grammar.
    #[error("malformed SCRAM message")]
    Malformed,
    /// The client asked for channel binding, which this exchange lacks.
    #[error("channel binding is not supported by this mechanism")]
    ChannelBindingNotSupported,
    /// The proof did not match (wrong password or unknown user).
    #[error("invalid proof")]
    InvalidProof,
}

/// The client-first message of a SCRAM exchange, parsed.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The authentication identity (`n=`), with `=2C` and `=3D` decoded.
    pub username: String,
    gs2_header: String,
    bare: String,
    nonce: String,
}

/// Parses a client-first message (RFC 5802 section 7) for a mechanism
/// without channel binding: a `p=` header is refused, `y` (the client could
/// bind but thinks we cannot) and `n` are accepted.
pub fn parse_client_first(message: &[u8]) -> Result<ClientFirst, ScramError> {
    let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed)?;
    let mut parts = text.splitn(3, ',');
    let cb = parts.next().ok_or(ScramError::Malformed)?;
    let authzid = parts.next().ok_or(ScramError::Malformed)?;
    let bare = parts.next().ok_or(ScramError::Malformed)?;
    match cb {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
        _ => return Err(ScramError::Malformed),
    }
    if !(authzid.is_empty() || authzid.starts_with("a=")) {
        return Err(ScramError::Malformed);
    }
    let mut username = None;
    let mut nonce = None;
    for (i, attr) in bare.split(',').enumerate() {
        match (i, attr.split_once('=')) {
            (0, Some(("n", v))) => username = Some(decode_saslname(v)?),
            (1, Some(("r", v)))
                if !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic() && b != b',') =>
            {
                nonce = Some(v.to_owned())
            }
            // A mandatory extension we do not know must fail (RFC 5802 5.1).
            (0 | 1, _) => return Err(ScramError::Malformed),
            (_, Some(("m", _))) => return Err(ScramError::Malformed),
            _ => {}
        }
    }
    Ok(ClientFirst {
        username: username.ok_or(ScramError::Malformed)?,
        gs2_header: format!("{cb},{authzid},"),
        bare: bare.to_owned(),
        nonce: nonce.ok_or(ScramError::Malformed)?,
    })
}

fn decode_saslname(v: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(ScramError::Malformed);
    }
    Ok(out)
}

/// The server's side of one SCRAM exchange, between its first and final
/// message. It needs only the stored keys, never the password: that is why
/// the exchange lives here beside the key derivation rather than in a SASL
/// crate, which would want the salted password.
#[derive(Debug)]
pub struct ScramServer {
    hash: ScramHash,
    first: ClientFirst,
    server_first: String,
    nonce: String,
    /// `None` for an unknown user: the exchange runs to its end and fails
    /// like a wrong password, so it does not tell who has an account.
    keys: Option<ScramKeys>,
}

impl ScramServer {
    /// Starts an exchange; returns the server-first message to send.
    /// `credentials` is `None` for an unknown user, who gets a made-up but
    /// stable salt.
    pub fn start(
        hash: ScramHash,
        first: ClientFirst,
        credentials: Option<&Credentials>,
        iterations_for_unknown: u32,
    ) -> (Self, String) {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut ours = [0u8; 18];
        rand::rng().fill_bytes(&mut ours);
        let nonce = format!("{}{}", first.nonce, b64.encode(ours));
        let (salt, iterations) = match credentials {
            Some(c) => (c.salt.clone(), c.iterations),
            None => (
                hash.hash(first.username.as_bytes())[..SALT_LEN].to_vec(),
                iterations_for_unknown,
            ),
        };
        let server_first = format!("r={nonce},s={},i={iterations}", b64.encode(salt));
        let keys = credentials.map(|c| hash.keys(c).clone());
        (
            Self {
                hash,
                first,
                server_first: server_first.clone(),
                nonce,
                keys,
            },
            server_first,
        )
    }

    pub fn username(&self) -> &str {
        &self.first.username
    }

    /// Checks the client-final message; on success returns the
    /// server-final message (`v=…`) that proves the server knew the keys.
    pub fn finish(self, message: &[u8]) -> Result<String, ScramError> {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed)?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(ScramError::Malformed)?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or(ScramError::Malformed)?;
        let binding = b64.decode(binding).map_err(|_| ScramError::Malformed)?;
        if binding != self.first.gs2_header.as_bytes() {
            return Err(ScramError::Malformed);
        }
        if nonce != self.nonce {
            return Err(ScramError::InvalidProof);
        }
        let proof = b64.decode(proof).map_err(|_| ScramError::Malformed)?;
        let keys = self.keys.ok_or(ScramError::InvalidProof)?;
        let auth_message = format!("{},{},{without_proof}", self.first.bare, self.server_first);
        let signature = self.hash.hmac(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let matches: bool = self.hash.hash(&client_key).ct_eq(&keys.stored_key).into();
        if !matches {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = self.hash.hmac(&keys.server_key, auth_message.as_bytes());
        Ok(format!("v={}", b64.encode(server_signature)))
    }
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
    /// A whole exchange against the RFC 7677 example: our server, given
    /// the example's nonce and salt, must accept the example's proof and
    /// answer with the example's server signature.
    #[test]
    fn rfc7677_exchange() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = Credentials {
            sha1: sha1_keys(b"pencil", &salt, 4096),
            sha256: sha256_keys(b"pencil", &salt, 4096),
            salt,
            iterations: 4096,
        };
        let first = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username, "user");
        let (mut server, _) = ScramServer::start(ScramHash::Sha256, first, Some(&creds), 4096);
        // Replace our random nonce half with the RFC's, so its proof fits.
        server.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        server.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", server.nonce);
        let fin = server
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(fin, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_proof_unknown_user_and_bad_syntax_fail() {
        let pw = Password::parse_any("password", "pencil").unwrap();
        let creds = derive(&pw, 64);
        let first = parse_client_first(b"n,,n=user,r=abc").unwrap();
        let (server, server_first) = ScramServer::start(ScramHash::Sha1, first, Some(&creds), 64);
        let nonce = server_first.split(',').next().unwrap().to_owned();
        let bad = format!("c=biws,{nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(server.finish(bad.as_bytes()), Err(ScramError::InvalidProof));

        let first = parse_client_first(b"n,,n=nobody,r=abc").unwrap();
        let (server, server_first) = ScramServer::start(ScramHash::Sha1, first.clone(), None, 64);
        // an unknown user still gets a stable salt, so probing tells nothing
        let (_, again) = ScramServer::start(ScramHash::Sha1, first, None, 64);
        assert_eq!(server_first.split(",s=").nth(1), again.split(",s=").nth(1));
        let nonce = server_first.split(',').next().unwrap().to_owned();
        let bad = format!("c=biws,{nonce},p=AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(server.finish(bad.as_bytes()), Err(ScramError::InvalidProof));

        for bad in [
            &b"x,,n=a,r=b"[..],
            b"n,,r=b",
            b"n,,n=a",
            b"n,,n=a=2,r=b",
            b"n,,n=,r=b",
            b"n,,m=x,n=a,r=b",
        ] {
            assert_eq!(
                parse_client_first(bad).err(),
                Some(ScramError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse_client_first(b"p=tls-exporter,,n=a,r=b").err(),
            Some(ScramError::ChannelBindingNotSupported)
        );
        assert_eq!(
            parse_client_first(b"n,,n=a=2Cb=3D,r=x").unwrap().username,
            "a,b="
        );
    }
}
