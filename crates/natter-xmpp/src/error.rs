//! XMPP's two kinds of errors, and the one place where the core's errors
//! become stanza errors.
//!
//! A **stream error** (RFC 6120 section 4.9) ends the connection; a
//! **stanza error** (section 8.3) answers one stanza and the stream goes on.

use minidom::Element;
use natter_core::CoreError;

use crate::ns;
use crate::xml::{ElementExt, el};

/// A stream-level error: the condition is one of RFC 6120's
/// (`not-well-formed`, `policy-violation`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamError {
    pub condition: &'static str,
    pub text: Option<String>,
}

macro_rules! conditions {
    ($($fn:ident => $cond:literal),* $(,)?) => {
        impl StreamError {
            $(
                pub fn $fn(text: impl Into<String>) -> Self {
                    Self { condition: $cond, text: Some(text.into()) }
                }
            )*
        }
    };
}

conditions! {
    not_well_formed => "not-well-formed",
    restricted_xml => "restricted-xml",
    invalid_namespace => "invalid-namespace",
    policy_violation => "policy-violation",
    host_unknown => "host-unknown",
    not_authorized => "not-authorized",
    unsupported_stanza_type => "unsupported-stanza-type",
    invalid_from => "invalid-from",
    connection_timeout => "connection-timeout",
    conflict => "conflict",
    system_shutdown => "system-shutdown",
    internal_server_error => "internal-server-error",
    unsupported_version => "unsupported-version",
    resource_constraint => "resource-constraint",
    bad_format => "bad-format",
}

impl StreamError {
    /// `<stream:error>` as an element in the streams namespace; framings
    /// write it with their own prefix conventions.
    pub fn to_element(&self) -> Element {
        let mut e = el("error", ns::STREAM).c(el(self.condition, ns::STREAMS_ERR));
        if let Some(text) = &self.text {
            e = e.c(el("text", ns::STREAMS_ERR).t(text.clone()));
        }
        e
    }
}

/// A stanza error (RFC 6120 section 8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// `cancel`, `modify`, `auth`, `wait` or `continue`.
    pub kind: &'static str,
    pub condition: &'static str,
    pub text: Option<String>,
    /// An application-specific condition: `(name, namespace)`.
    pub app: Option<(&'static str, &'static str)>,
}

impl StanzaError {
    pub fn new(kind: &'static str, condition: &'static str, text: impl Into<String>) -> Self {
        Self {
            kind,
            condition,
            text: Some(text.into()).filter(|t: &String| !t.is_empty()),
            app: None,
        }
    }

    /// XEP-0191 3.3: a stanza to a JID the user has blocked.
    pub fn blocked() -> Self {
        Self {
            app: Some(("blocked", ns::BLOCKING_ERRORS)),
            ..Self::new(
                "cancel",
                "not-acceptable",
                "you have blocked this contact; unblock them first",
            )
        }
    }

    pub fn service_unavailable() -> Self {
        Self::new("cancel", "service-unavailable", "")
    }

    pub fn feature_not_implemented(text: impl Into<String>) -> Self {
        Self::new("cancel", "feature-not-implemented", text)
    }

    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new("modify", "bad-request", text)
    }

    pub fn item_not_found(text: impl Into<String>) -> Self {
        Self::new("cancel", "item-not-found", text)
    }

    pub fn not_allowed(text: impl Into<String>) -> Self {
        Self::new("cancel", "not-allowed", text)
    }

    pub fn element(&self) -> Element {
        let mut e = el("error", ns::CLIENT)
            .a("type", self.kind)
            .c(el(self.condition, ns::STANZAS_ERR));
        if let Some(text) = &self.text {
            e = e.c(el("text", ns::STANZAS_ERR).t(text.clone()));
        }
        if let Some((name, namespace)) = self.app {
            e = e.c(el(name, namespace));
        }
        e
    }

    /// The error reply to `stanza`: same name and id, `from` and `to`
    /// swapped, `type='error'` (RFC 6120 section 8.3.1).
    pub fn reply_to(&self, stanza: &Element) -> Element {
        let mut reply = el(stanza.name(), ns::CLIENT).a("type", "error");
        if let Some(id) = stanza.attr("id") {
            reply = reply.a("id", id);
        }
        if let Some(to) = stanza.attr("to") {
            reply = reply.a("from", to);
        }
        if let Some(from) = stanza.attr("from") {
            reply = reply.a("to", from);
        }
        reply.c(self.element())
    }
}

impl From<CoreError> for StanzaError {
    fn from(e: CoreError) -> Self {
        let text = e.to_string();
        match e {
            CoreError::Invalid(_) => Self::new("modify", "not-acceptable", text),
            CoreError::Unauthenticated | CoreError::BadCredentials => {
                Self::new("auth", "not-authorized", text)
            }
            CoreError::Forbidden { .. } => Self::new("auth", "forbidden", text),
            CoreError::NotFound { .. } => Self::new("cancel", "item-not-found", text),
            CoreError::Conflict { .. } => Self::new("cancel", "conflict", text),
            CoreError::Blocked => Self::blocked(),
            // XEP-0191 3.3: what a blocked contact gets, the same as for a
            // user who does not exist, so the block is not revealed.
            CoreError::RecipientUnavailable => Self::service_unavailable(),
            CoreError::RateLimited { .. } => Self::new("wait", "resource-constraint", text),
            CoreError::RegistrationClosed => Self::new("cancel", "not-allowed", text),
            CoreError::Unavailable(_) => Self::new("wait", "internal-server-error", text),
        }
    }
}
