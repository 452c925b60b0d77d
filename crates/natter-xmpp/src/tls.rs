//! The TLS configuration of the XMPP listeners: a certificate from
//! configured PEM files, or else a self-signed one for the domain,
//! generated once into the data directory so that clients that pinned it
//! keep trusting it across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum CertSource {
    /// PEM files: the chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
    /// A self-signed certificate for `domain`, kept in `dir`.
    SelfSigned { domain: String, dir: PathBuf },
}

/// Builds the server configuration. ALPN offers `xmpp-client` (XEP-0368)
/// so direct-TLS clients that ask for it are answered.
pub fn server_config(source: &CertSource) -> anyhow::Result<Arc<ServerConfig>> {
    let (cert, key) = match source {
        CertSource::Files { cert, key } => (cert.clone(), key.clone()),
        CertSource::SelfSigned { domain, dir } => self_signed(domain, dir)?,
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", key.display()))?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"xmpp-client".to_vec()];
    Ok(Arc::new(config))
}

fn self_signed(domain: &str, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let cert = dir.join("xmpp-cert.pem");
    let key = dir.join("xmpp-key.pem");
    // The key is renamed into place before the certificate, so a
    // certificate means both are complete.
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    std::fs::create_dir_all(dir)?;
    // Nodes sharing a data directory may start together: one makes the
    // pair under a lock file, the others wait for it.
    let lock = dir.join("xmpp-cert.lock");
    for _ in 0..400 {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {
                let made = generate(domain, &cert, &key);
                let _ = std::fs::remove_file(&lock);
                made?;
                return Ok((cert, key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if cert.exists() && key.exists() {
                    return Ok((cert, key));
                }
                // A maker that died leaves its lock behind.
                let stale = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > std::time::Duration::from_secs(30));
                if stale {
                    let _ = std::fs::remove_file(&lock);
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("timed out waiting for {} to be made", cert.display())
}

fn generate(domain: &str, cert: &Path, key: &Path) -> anyhow::Result<()> {
    if cert.exists() && key.exists() {
        return Ok(());
    }
    let generated = rcgen::generate_simple_self_signed(vec![domain.to_owned()])?;
    let key_tmp = key.with_extension("pem.tmp");
    let cert_tmp = cert.with_extension("pem.tmp");
    write_private(&key_tmp, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_tmp, generated.cert.pem())?;
    std::fs::rename(&key_tmp, key)?;
    std::fs::rename(&cert_tmp, cert)?;
    tracing::info!(cert = %cert.display(), %domain, "generated a self-signed XMPP certificate");
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let source = CertSource::SelfSigned {
            domain: "chat.example".into(),
            dir: dir.path().into(),
        };
        // several nodes starting at once on one directory agree on one pair
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let source = source.clone();
                std::thread::spawn(move || server_config(&source).unwrap())
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let first = std::fs::read(dir.path().join("xmpp-cert.pem")).unwrap();
        server_config(&source).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("xmpp-cert.pem")).unwrap(),
            first
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("xmpp-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
