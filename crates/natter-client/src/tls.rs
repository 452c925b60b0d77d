//! TLS for `https://` and `wss://` servers (feature `tls`): rustls with the
//! ring provider, chosen so that no C toolchain beyond `cc` (no cmake, no
//! aws-lc, no OpenSSL) is needed to build the SDK.
//!
//! reqwest's `rustls-no-provider` and tungstenite's rustls both use the
//! process-wide default provider; this installs ring as that default once,
//! before the first client is built, unless the application installed one.

/// Installs ring as the process's rustls provider if none is installed.
pub(crate) fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: one is set.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
    });
}
