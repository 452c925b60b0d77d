//! Restricted XML in and out: the incremental parser of a TCP stream, the
//! parser of one WebSocket frame or BOSH body, the limits every parser
//! path enforces, and small helpers to build elements.
//!
//! Parsing is `rxml`'s restricted XML (RFC 6120 section 11.1): no DTD, no
//! entity declarations, no processing instructions, no comments. On top of
//! it Natter caps the bytes of one stanza *while reading* (a client cannot
//! make the server buffer more than the limit), the nesting depth and the
//! attributes per element.

use std::collections::BTreeMap;

use minidom::Element;
use minidom::tree_builder::TreeBuilder;
use rxml::error::EndOrError;
use rxml::{Parse, RawEvent, RawParser, WithOptions};

use crate::error::StreamError;
use crate::ns;

/// Limits applied on every parser path.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest stanza, in bytes of XML as received.
    pub max_stanza: usize,
    /// Deepest element nesting inside a stanza.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza: 256 * 1024,
            max_depth: 32,
            max_attrs: 64,
        }
    }
}

/// What the parser of a stream hands the session.
#[derive(Debug)]
pub enum Input {
    /// A stream header (`<stream:stream>`, or RFC 7395's `<open/>`).
    Open {
        to: Option<String>,
        version: Option<String>,
    },
    /// A top-level element: a stanza or a nonza (SASL, stream management…).
    Element(Element),
    /// The peer closed its stream.
    Close,
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Longest single token (a name, an attribute value, a chunk of text)
/// the lexer holds. The lexer reserves this much per stream up front, so
/// it is small: text longer than this simply arrives in several chunks,
/// and the stanza limit is enforced separately, byte by byte. It must
/// still hold the longest JID (3,071 bytes, RFC 7622) in an attribute.
const MAX_TOKEN: usize = 4 * 1024;

fn new_parser(limits: &Limits) -> RawParser {
    let options = rxml::Options {
        max_token_length: limits.max_stanza.min(MAX_TOKEN),
        ..Default::default()
    };
    RawParser::with_options(options)
}

/// Maps a parser error to the stream error RFC 6120 names for it. The
/// parser reports a DTD, a comment or a processing instruction as a
/// syntax error; the bytes tell which it was.
fn xml_error(e: rxml::Error, data: &[u8]) -> StreamError {
    let restricted = ["<!DOCTYPE", "<!ENTITY", "<!--", "<![INCLUDE"]
        .iter()
        .any(|needle| contains(data, needle.as_bytes()))
        || data
            .windows(2)
            .enumerate()
            .any(|(i, w)| w == b"<?" && !data[i..].starts_with(b"<?xml "));
    if restricted {
        return StreamError::restricted_xml(
            "DTDs, comments and processing instructions are not allowed",
        );
    }
    match e {
        rxml::Error::RestrictedXml(what) => {
            StreamError::restricted_xml(format!("restricted XML: {what} is not allowed"))
        }
        rxml::Error::UndeclaredEntity => StreamError::restricted_xml(
            "entity references other than the predefined ones are not allowed",
        ),
        other => StreamError::not_well_formed(other.to_string()),
    }
}

/// The incremental parser of one XMPP stream over TCP. A stream restart
/// (after STARTTLS or SASL) starts a new parser.
///
/// Between stanzas it holds as little as it can, because that is where
/// an idle connection spends its life: the stream header is not kept as
/// an element, only its namespace declarations (which every stanza sees
/// in scope); a stanza's tree exists only while the stanza is being read;
/// and the lexer's token buffers are released at every stanza boundary.
pub struct StreamParser {
    raw: RawParser,
    limits: Limits,
    /// The stream header, while it is being read.
    header: Option<Box<Header>>,
    /// Namespace declarations of the stream header: prefix (`None` for
    /// the default namespace) and namespace name.
    scope: Vec<(Option<String>, String)>,
    /// The stanza being read; `None` between stanzas.
    tree: Option<TreeBuilder>,
    /// Bytes received since the last complete stanza.
    pending: usize,
    attrs: usize,
    opened: bool,
}

/// What the parser keeps of a stream header until it is complete.
#[derive(Default)]
struct Header {
    prefix: Option<String>,
    name: String,
    to: Option<String>,
    version: Option<String>,
}

impl StreamParser {
    pub fn new(limits: Limits) -> Self {
        Self {
            raw: new_parser(&limits),
            limits,
            header: None,
            scope: Vec::new(),
            tree: None,
            pending: 0,
            attrs: 0,
            opened: false,
        }
    }

    /// Feeds bytes as they arrive; returns what they completed.
    pub fn feed(&mut self, mut data: &[u8], out: &mut Vec<Input>) -> Result<(), StreamError> {
        let all = data;
        loop {
            let before = data.len();
            let parsed = self.raw.parse(&mut data, false);
            // Count what the parser took, event by event, so that a stanza
            // over the limit fails even when its end is in this read.
            self.pending += before - data.len();
            if self.pending > self.limits.max_stanza {
                return Err(StreamError::policy_violation(format!(
                    "stanza larger than {} bytes",
                    self.limits.max_stanza
                )));
            }
            let event = match parsed {
                Ok(Some(ev)) => ev,
                Ok(None) | Err(EndOrError::NeedMoreData) => {
                    if self.tree.is_none() {
                        // Between stanzas: the lexer's buffers (one token's
                        // worth) are not worth keeping while the stream idles.
                        self.raw.release_temporaries();
                    }
                    return Ok(());
                }
                Err(EndOrError::Error(e)) => return Err(xml_error(e, all)),
            };
            self.event(event, out)?;
        }
    }

    fn event(&mut self, event: RawEvent, out: &mut Vec<Input>) -> Result<(), StreamError> {
        match &event {
            RawEvent::ElementHeadOpen(..) => self.attrs = 0,
            RawEvent::Attribute(..) => {
                self.attrs += 1;
                if self.attrs > self.limits.max_attrs {
                    return Err(StreamError::policy_violation("too many attributes"));
                }
            }
            _ => {}
        }
        if let Some(tree) = &mut self.tree {
            tree.process_event(event)
                .map_err(|e| StreamError::invalid_namespace(e.to_string()))?;
            if tree.depth() > self.limits.max_depth {
                return Err(StreamError::policy_violation("elements nested too deeply"));
            }
            if tree.depth() == 0
                && let Some(stanza) = tree.root.take()
            {
                self.tree = None;
                self.pending = 0;
                out.push(Input::Element(stanza));
            }
            return Ok(());
        }
        if !self.opened {
            return self.header_event(event, out);
        }
        match event {
            RawEvent::ElementHeadOpen(..) => {
                // A stanza starts: the stream header's declarations are in
                // scope, as if it were still the parent.
                let scope: BTreeMap<Option<String>, String> = self.scope.iter().cloned().collect();
                let mut tree = TreeBuilder::new()
                    .with_prefixes_stack(vec![scope.into(), BTreeMap::new().into()]);
                tree.process_event(event)
                    .map_err(|e| StreamError::invalid_namespace(e.to_string()))?;
                self.tree = Some(tree);
            }
            RawEvent::ElementFoot(..) => out.push(Input::Close),
            // Whitespace between stanzas (keep-alives) is not kept.
            _ => self.pending = 0,
        }
        Ok(())
    }

    /// An event of the stream header (`<stream:stream …>`).
    fn header_event(&mut self, event: RawEvent, out: &mut Vec<Input>) -> Result<(), StreamError> {
        match event {
            RawEvent::ElementHeadOpen(_, (prefix, name)) => {
                self.header = Some(Box::new(Header {
                    prefix: prefix.map(|p| p.as_str().to_owned()),
                    name: name.as_str().to_owned(),
                    ..Header::default()
                }));
            }
            RawEvent::Attribute(_, (prefix, name), value) => {
                let header = self.header.get_or_insert_with(Box::default);
                match (prefix.as_ref().map(|p| p.as_str()), name.as_str()) {
                    (None, "xmlns") => self.scope.push((None, value)),
                    (Some("xmlns"), p) => self.scope.push((Some(p.to_owned()), value)),
                    (None, "to") => header.to = Some(value),
                    (None, "version") => header.version = Some(value),
                    _ => {}
                }
            }
            RawEvent::ElementHeadClose(_) => {
                let header = self.header.take().unwrap_or_default();
                let namespace = self
                    .scope
                    .iter()
                    .rev()
                    .find(|(p, _)| *p == header.prefix)
                    .map(|(_, ns)| ns.as_str());
                if header.name != "stream" || namespace != Some(ns::STREAM) {
                    return Err(StreamError::invalid_namespace(
                        "the stream header must be <stream:stream> in http://etherx.jabber.org/streams",
                    ));
                }
                self.scope.shrink_to_fit();
                self.opened = true;
                self.pending = 0;
                out.push(Input::Open {
                    to: header.to,
                    version: header.version,
                });
            }
            // The XML declaration; nothing else comes before the header.
            _ => {}
        }
        Ok(())
    }
}

/// Parses one complete element: a WebSocket frame (RFC 7395) or a BOSH
/// `<body/>`, with the same restrictions and limits as a TCP stream.
pub fn parse_document(data: &[u8], limits: &Limits) -> Result<Element, StreamError> {
    if data.len() > limits.max_stanza {
        return Err(StreamError::policy_violation(format!(
            "stanza larger than {} bytes",
            limits.max_stanza
        )));
    }
    let mut raw = new_parser(limits);
    let mut tree = TreeBuilder::new();
    let mut buf = data;
    let mut attrs = 0;
    loop {
        let event = match raw.parse(&mut buf, true) {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(EndOrError::NeedMoreData) => {
                return Err(StreamError::not_well_formed("incomplete XML"));
            }
            Err(EndOrError::Error(e)) => return Err(xml_error(e, data)),
        };
        match &event {
            RawEvent::ElementHeadOpen(..) => attrs = 0,
            RawEvent::Attribute(..) => {
                attrs += 1;
                if attrs > limits.max_attrs {
                    return Err(StreamError::policy_violation("too many attributes"));
                }
            }
            _ => {}
        }
        tree.process_event(event)
            .map_err(|e| StreamError::invalid_namespace(e.to_string()))?;
        if tree.depth() > limits.max_depth + 1 {
            return Err(StreamError::policy_violation("elements nested too deeply"));
        }
    }
    tree.root
        .take()
        .ok_or_else(|| StreamError::not_well_formed("no element"))
}

/// Serializes an element (its namespace declared on it).
pub fn to_string(el: &Element) -> String {
    let mut buf = String::with_capacity(256);
    write_into(&mut buf, el);
    buf
}

/// Appends an element, serialized with its namespace declared on it, to
/// `buf`.
///
/// The stanzas the server builds itself (no namespace prefixes, no
/// attributes in a namespace other than `xml:`) are written here directly:
/// minidom's writer encodes every name, attribute and text node into a
/// buffer of its own, which made it the largest single cost of sending a
/// chat message. Anything else goes through minidom, and so does text
/// with characters XML cannot carry (minidom refuses it). Both give the
/// same bytes (see the tests).
pub fn write_into(buf: &mut String, el: &Element) {
    let start = buf.len();
    if plain(el) && write_plain(buf, el, None).is_ok() {
        return;
    }
    buf.truncate(start);
    let mut bytes = Vec::with_capacity(256);
    el.write_to(&mut bytes)
        .expect("serializing an element into memory cannot fail");
    buf.push_str(&String::from_utf8(bytes).expect("the XML writer emits UTF-8"));
}

/// Whether `write_plain` can write `el`: no prefixes, no attributes in a
/// namespace but `xml:`, anywhere in the tree.
fn plain(el: &Element) -> bool {
    el.prefixes.declared_prefixes().is_empty()
        && el
            .attrs()
            .iter()
            .all(|((ns, _), _)| ns.is_none() || *ns == rxml::Namespace::XML)
        && el.children().all(plain)
}

/// A character XML 1.0 cannot carry.
struct InvalidChar;

fn write_plain(buf: &mut String, el: &Element, parent_ns: Option<&str>) -> Result<(), InvalidChar> {
    buf.push('<');
    buf.push_str(el.name());
    // The default namespace is declared where it changes (and on the
    // outermost element), as minidom's writer does.
    let own;
    let ns = match parent_ns {
        Some(p) if el.has_ns(p) => p,
        _ => {
            own = el.ns();
            if parent_ns.is_some() || !own.is_empty() {
                buf.push_str(" xmlns='");
                escape(buf, &own, true)?;
                buf.push('\'');
            }
            own.as_str()
        }
    };
    for ((attr_ns, name), value) in el.attrs().iter() {
        buf.push(' ');
        if !attr_ns.is_none() {
            buf.push_str("xml:");
        }
        buf.push_str(name.as_str());
        buf.push_str("='");
        escape(buf, value, true)?;
        buf.push('\'');
    }
    let mut nodes = el.nodes().peekable();
    if nodes.peek().is_none() {
        buf.push_str("/>");
        return Ok(());
    }
    buf.push('>');
    for node in nodes {
        match node {
            minidom::Node::Element(child) => write_plain(buf, child, Some(ns))?,
            minidom::Node::Text(text) => escape(buf, text, false)?,
        }
    }
    buf.push_str("</");
    buf.push_str(el.name());
    buf.push('>');
    Ok(())
}

/// Appends `text` escaped for character data or (with `attribute`) a
/// single-quoted attribute value, with the same escapes as minidom's
/// writer, so that both write the same bytes.
fn escape(buf: &mut String, text: &str, attribute: bool) -> Result<(), InvalidChar> {
    // Byte by byte: everything escaped or refused is ASCII, except
    // U+FFFE and U+FFFF (EF BF BE, EF BF BF), recognised by their end.
    let bytes = text.as_bytes();
    let mut done = 0;
    for (i, b) in bytes.iter().enumerate() {
        let escaped = match b {
            0..=8 | 0xb | 0xc | 0xe..=0x1f => return Err(InvalidChar),
            0xbe | 0xbf if i >= 2 && bytes[i - 2] == 0xef && bytes[i - 1] == 0xbf => {
                return Err(InvalidChar);
            }
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\r' => "&#xd;",
            b'"' if attribute => "&#34;",
            b'\'' if attribute => "&#39;",
            b'\n' if attribute => "&#xa;",
            b'\t' if attribute => "&#x9;",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        buf.push_str(&text[done..i]);
        buf.push_str(escaped);
        done = i + 1;
    }
    buf.push_str(&text[done..]);
    Ok(())
}

/// Builds elements tersely: `el("message", ns::CLIENT).a("to", jid).c(body)`.
pub fn el(name: &str, namespace: &str) -> Element {
    Element::bare(name, namespace)
}

pub trait ElementExt: Sized {
    /// With an attribute (in no namespace).
    fn a(self, name: &str, value: impl Into<String>) -> Self;
    /// With an attribute if `value` is set.
    fn a_opt(self, name: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.a(name, v),
            None => self,
        }
    }
    /// With a child element.
    fn c(self, child: Element) -> Self;
    /// With text content.
    fn t(self, text: impl Into<String>) -> Self;
    /// The text of the named child in the element's namespace or `ns`.
    fn child_text(&self, name: &str, ns: &str) -> Option<String>;
}

impl ElementExt for Element {
    fn a(mut self, name: &str, value: impl Into<String>) -> Self {
        let name = rxml::NcName::try_from(name).expect("attribute names in the code are valid");
        self.set_attr(rxml::Namespace::NONE, name, value.into());
        self
    }

    fn c(mut self, child: Element) -> Self {
        self.append_child(child);
        self
    }

    fn t(mut self, text: impl Into<String>) -> Self {
        self.append_text(text);
        self
    }

    fn child_text(&self, name: &str, ns: &str) -> Option<String> {
        self.get_child(name, ns).map(|c| c.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&str]) -> Result<Vec<Input>, StreamError> {
        let mut p = StreamParser::new(Limits::default());
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c.as_bytes(), &mut out)?;
        }
        Ok(out)
    }

    const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.org' version='1.0'>";

    #[test]
    fn stanzas_split_across_reads() {
        let out = feed_all(&[
            &HEADER[..30],
            &HEADER[30..],
            " <message to='a@example.org'><bo",
            "dy>hi &amp; bye</body></message>\n<presence/></stream:stream>",
        ])
        .unwrap();
        assert!(
            matches!(&out[0], Input::Open { to: Some(t), version: Some(v) } if t == "example.org" && v == "1.0")
        );
        let Input::Element(m) = &out[1] else {
            panic!("{out:?}")
        };
        assert!(m.is("message", ns::CLIENT));
        assert_eq!(
            m.child_text("body", ns::CLIENT).as_deref(),
            Some("hi & bye")
        );
        assert!(matches!(&out[2], Input::Element(p) if p.name() == "presence"));
        assert!(matches!(out[3], Input::Close));
    }

    #[test]
    fn stanzas_see_the_declarations_of_the_stream_header() {
        let header = "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:x='urn:x' to='example.org' version='1.0'>";
        let out = feed_all(&[header, "<message><x:y/></message>", "<iq/>"]).unwrap();
        let Input::Element(m) = &out[1] else {
            panic!("{out:?}")
        };
        assert!(m.is("message", ns::CLIENT));
        assert!(m.get_child("y", "urn:x").is_some(), "{m:?}");
        // The header's declarations are in scope, not copied onto stanzas.
        let text = to_string(m);
        assert!(!text.contains("etherx"), "{text}");
        assert!(matches!(&out[2], Input::Element(i) if i.is("iq", ns::CLIENT)));
    }

    #[test]
    fn restricted_xml_is_refused() {
        for bad in [
            "<!DOCTYPE foo [<!ENTITY x 'y'>]><message/>",
            "<?php echo 1 ?><message/>",
            "<!-- hi --><message/>",
            "<message>&x;</message>",
        ] {
            let err = feed_all(&[HEADER, bad]).unwrap_err();
            assert!(
                matches!(err.condition, "restricted-xml" | "not-well-formed"),
                "{bad}: {err:?}"
            );
        }
        let err = feed_all(&["<!DOCTYPE stream [<!ENTITY lol 'lol'>]>"]).unwrap_err();
        assert!(matches!(
            err.condition,
            "restricted-xml" | "not-well-formed"
        ));
        let err = feed_all(&[HEADER, "<message><body>a</bod></message>"]).unwrap_err();
        assert_eq!(err.condition, "not-well-formed");
    }

    #[test]
    fn limits_hold_while_reading() {
        let mut p = StreamParser::new(Limits {
            max_stanza: 1000,
            ..Limits::default()
        });
        let mut out = Vec::new();
        p.feed(HEADER.as_bytes(), &mut out).unwrap();
        p.feed(b"<message><body>", &mut out).unwrap();
        let err = p.feed(&[b'a'; 2000], &mut out).unwrap_err();
        assert_eq!(err.condition, "policy-violation");

        // over the limit by a little, with the stanza's end in the same read
        let mut p = StreamParser::new(Limits {
            max_stanza: 1000,
            ..Limits::default()
        });
        p.feed(HEADER.as_bytes(), &mut out).unwrap();
        let stanza = format!("<message><body>{}</body></message>", "b".repeat(990));
        let err = p.feed(stanza.as_bytes(), &mut out).unwrap_err();
        assert_eq!(err.condition, "policy-violation");

        let deep = "<a>".repeat(40);
        let err = feed_all(&[HEADER, &format!("<message>{deep}")]).unwrap_err();
        assert_eq!(err.condition, "policy-violation");
        let many: String = (0..100).map(|i| format!(" a{i}='x'")).collect();
        let err = feed_all(&[HEADER, &format!("<message{many}/>")]).unwrap_err();
        assert_eq!(err.condition, "policy-violation");
    }

    #[test]
    fn text_longer_than_a_token_arrives_whole() {
        let long = "x".repeat(100_000);
        let out = feed_all(&[HEADER, &format!("<message><body>{long}</body></message>")]).unwrap();
        let Input::Element(m) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(
            m.child_text("body", ns::CLIENT).map(|b| b.len()),
            Some(100_000)
        );
    }

    #[test]
    fn wrong_stream_namespace() {
        let err = feed_all(&["<stream:stream xmlns:stream='urn:nope' xmlns='jabber:client'>"])
            .unwrap_err();
        assert_eq!(err.condition, "invalid-namespace");
    }

    #[test]
    fn frames_parse_alone() {
        let e = parse_document(
            b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0'/>",
            &Limits::default(),
        )
        .unwrap();
        assert!(e.is("open", ns::FRAMING));
        assert!(parse_document(b"<a><b></a>", &Limits::default()).is_err());
        assert_eq!(
            parse_document(b"<!DOCTYPE a><a/>", &Limits::default())
                .unwrap_err()
                .condition,
            "restricted-xml"
        );
        let built = el("message", ns::CLIENT)
            .a("to", "b@example.org")
            .c(el("body", ns::CLIENT).t("<hi>"));
        let text = to_string(&built);
        assert_eq!(
            parse_document(text.as_bytes(), &Limits::default()).unwrap(),
            built
        );
        assert!(text.contains("&lt;hi&gt;"), "{text}");
    }

    /// minidom's own writer, which `write_into` must match byte for byte.
    fn minidom_bytes(e: &Element) -> String {
        let mut bytes = Vec::new();
        e.write_to(&mut bytes).unwrap();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn the_direct_writer_writes_what_minidom_writes() {
        let mut lang = el("body", ns::CLIENT).t("bonjour");
        lang.set_attr(
            rxml::Namespace::XML,
            rxml::NcName::try_from("lang").unwrap(),
            "fr".to_owned(),
        );
        let cases = [
            el("message", ns::CLIENT)
                .a("type", "chat")
                .a("id", "a'b\"c<d>&e\tf\ng\rh")
                .a("to", "bob@example.org/phone")
                .c(el("body", ns::CLIENT).t("x < y & z > w \"q\" 'a'\r\n\ttab ünïcödé ✓ 😀"))
                .c(el("stanza-id", ns::SID).a("by", "bob@example.org").a("id", "1"))
                .c(el("request", ns::RECEIPTS))
                .c(el("markable", ns::MARKERS)),
            el("message", ns::CLIENT)
                .c(el("sent", ns::CARBONS).c(el("forwarded", ns::FORWARD)
                    .c(el("message", ns::CLIENT).c(el("body", ns::CLIENT).t(""))))),
            el("presence", ns::CLIENT).c(lang),
            el("a", "").c(el("b", "urn:x").c(el("c", ""))),
            el("r", ns::SM),
            parse_document(
                b"<message xmlns='jabber:client' xmlns:x='urn:x' to='a@b'><x:y x:attr='1'>t</x:y></message>",
                &Limits::default(),
            )
            .unwrap(),
        ];
        for e in &cases {
            assert_eq!(to_string(e), minidom_bytes(e));
        }
        // Text XML cannot carry takes minidom's path, which refuses it.
        for bad in ["a\u{1}b", "a\u{fffe}b", "\u{ffff}"] {
            let bad = el("body", ns::CLIENT).t(bad);
            assert!(std::panic::catch_unwind(|| to_string(&bad)).is_err());
        }
    }
}
