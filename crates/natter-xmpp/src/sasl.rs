//! SASL (RFC 6120 section 6) over the core's accounts: SCRAM-SHA-256 and
//! SCRAM-SHA-1 against the stored SCRAM keys, PLAIN only where the stream
//! is protected (or plaintext is explicitly allowed). Failed attempts are
//! throttled per IP by the core, as for the REST log-in.
//!
//! The -PLUS variants bind the exchange to the TLS connection with
//! `tls-exporter` (RFC 9266, advertised per XEP-0440) where the stream
//! runs over TLS 1.3 on our own listener, so a relay that terminates TLS
//! with another certificate cannot pass the log-in on. Where they are
//! offered, a client saying `y` (it could bind but thinks we cannot) is
//! refused as a downgrade, as RFC 5802 section 6 requires.

use base64::Engine;
use minidom::Element;
use natter_core::scram::{ChannelBindings, Mechanism, ScramServer};
use natter_core::{Caller, CoreError, LoginContext};
use natter_types::{Password, Username};

use crate::ns;
use crate::session::Session;
use crate::xml::{ElementExt, el};

/// The SCRAM mechanisms to offer, strongest first (PLAIN is added where
/// allowed): the -PLUS ones only where there is a channel to bind to.
pub(crate) fn offered(bindings: &ChannelBindings) -> impl Iterator<Item = &'static str> + '_ {
    Mechanism::ALL
        .into_iter()
        .filter(|m| !m.plus || !bindings.is_empty())
        .map(Mechanism::name)
}

pub(crate) enum Step {
    /// A reply that changes nothing (an abort, say).
    Reply(Element),
    Challenge(Element, ScramServer),
    Success(Element, Caller),
    Failure(Element),
}

fn failure(condition: &str, text: Option<String>) -> Step {
    let mut f = el("failure", ns::SASL).c(el(condition, ns::SASL));
    if let Some(t) = text {
        f = f.c(el("text", ns::SASL).t(t));
    }
    Step::Failure(f)
}

fn core_failure(e: CoreError) -> Step {
    match e {
        CoreError::BadCredentials => failure("not-authorized", None),
        CoreError::Forbidden { message, .. } => failure("account-disabled", Some(message)),
        CoreError::RateLimited { .. } => failure("temporary-auth-failure", Some(e.to_string())),
        CoreError::Invalid(_) => failure("malformed-request", Some(e.to_string())),
        other => {
            tracing::warn!(error = %other, "XMPP authentication failed on the server side");
            failure("temporary-auth-failure", None)
        }
    }
}

/// Decodes the base64 payload of `<auth/>` or `<response/>`; `=` stands
/// for an empty payload (RFC 6120 6.4.2).
fn payload(e: &Element) -> Option<Vec<u8>> {
    let text = e.text();
    let text = text.trim();
    if text.is_empty() || text == "=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

fn encode(data: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(crate) async fn step(session: &mut Session, e: &Element) -> Step {
    let context = LoginContext {
        ip: session.ip,
        user_agent: Some(session.transport_label().to_owned()),
    };
    let hub = session.x.hub.clone();
    match e.name() {
        "auth" => {
            let Some(data) = payload(e) else {
                return failure("incorrect-encoding", None);
            };
            session.take_scram();
            let bindings = session.channel_bindings();
            let name = e.attr("mechanism").unwrap_or_default();
            match Mechanism::from_name(name) {
                Some(m) if offered(&bindings).any(|o| o == name) => {
                    scram_start(&hub, m, &data, &bindings, &context).await
                }
                _ if name == "PLAIN" && session.plain_allowed() => {
                    plain(&hub, &data, context).await
                }
                _ => failure("invalid-mechanism", None),
            }
        }
        "response" => {
            let Some(server) = session.take_scram() else {
                return failure("malformed-request", Some("no exchange in progress".into()));
            };
            let Some(data) = payload(e) else {
                return failure("incorrect-encoding", None);
            };
            match hub.scram_finish(server, &data, context).await {
                Ok((caller, server_final)) => {
                    Step::Success(el("success", ns::SASL).t(encode(&server_final)), caller)
                }
                Err(e) => core_failure(e),
            }
        }
        "abort" => {
            session.take_scram();
            Step::Reply(el("failure", ns::SASL).c(el("aborted", ns::SASL)))
        }
        _ => failure("malformed-request", None),
    }
}

async fn scram_start(
    hub: &natter_core::Hub,
    mechanism: Mechanism,
    data: &[u8],
    bindings: &ChannelBindings,
    context: &LoginContext,
) -> Step {
    match hub.scram_start(mechanism, data, bindings, context.ip).await {
        Ok((server, first)) => Step::Challenge(el("challenge", ns::SASL).t(encode(&first)), server),
        Err(e) => core_failure(e),
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL authcid NUL password`. An authzid, if
/// given, must name the same account: Natter has no proxy authorization.
async fn plain(hub: &natter_core::Hub, data: &[u8], context: LoginContext) -> Step {
    let mut parts = data.split(|b| *b == 0);
    let (Some(authzid), Some(authcid), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return failure("malformed-request", None);
    };
    let (Ok(authzid), Ok(authcid), Ok(password)) = (
        std::str::from_utf8(authzid),
        std::str::from_utf8(authcid),
        std::str::from_utf8(password),
    ) else {
        return failure("malformed-request", None);
    };
    let Ok(username) = Username::parse(authcid) else {
        return failure("not-authorized", None);
    };
    if !authzid.is_empty() && authzid.split('@').next() != Some(username.as_str()) {
        return failure("invalid-authzid", None);
    }
    let Ok(password) = Password::parse_any("password", password) else {
        return failure("not-authorized", None);
    };
    match hub.log_in(&username, password, context).await {
        Ok(outcome) => Step::Success(
            el("success", ns::SASL),
            Caller {
                user: outcome.user,
                session: outcome.session.id,
            },
        ),
        Err(e) => core_failure(e),
    }
}
