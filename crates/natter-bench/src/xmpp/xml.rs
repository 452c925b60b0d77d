//! Just enough XML for a c2s client: an incremental reader of an XMPP
//! stream that yields the stream header and then one element tree per
//! top-level child (a stanza or a negotiation element), parsed with
//! `quick-xml`, and escaping for what the generator writes.
//!
//! Names are compared by local name: every server speaks the default
//! `jabber:client` namespace with the `stream:` prefix on the stream
//! elements, and a load generator has no use for full namespace
//! processing.

use anyhow::{Context, bail};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use tokio::io::{AsyncBufRead, AsyncRead, BufReader};

/// One element with its attributes, child elements and text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// Local name (without prefix).
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// The concatenated text directly inside this element.
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// A short rendering for error messages.
    pub fn describe(&self) -> String {
        let mut s = format!("<{}", self.name);
        for (k, v) in &self.attrs {
            s.push_str(&format!(" {k}='{v}'"));
        }
        s.push('>');
        for c in &self.children {
            s.push_str(&c.describe());
        }
        s.push_str(&self.text);
        s.push_str(&format!("</{}>", self.name));
        s.chars().take(400).collect()
    }
}

/// What the stream yields.
#[derive(Debug, PartialEq)]
pub enum Item {
    /// `<stream:stream …>` opened (its attributes).
    StreamStart(Element),
    /// A complete top-level child.
    Element(Element),
    /// `</stream:stream>` or the end of the socket.
    StreamEnd,
}

/// An XMPP stream being read.
pub struct StreamReader<R> {
    reader: Reader<BufReader<R>>,
    buf: Vec<u8>,
}

fn start_element(e: &BytesStart<'_>) -> anyhow::Result<Element> {
    let name = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
    let mut attrs = Vec::new();
    for a in e.attributes() {
        let a = a.context("malformed attribute")?;
        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
        let value = a.unescape_value().context("attribute value")?.into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

impl<R: AsyncRead + Unpin> StreamReader<R> {
    pub fn new(inner: R) -> Self {
        // Small buffers: ten thousand idle connections each hold one.
        Self::from_buffered(BufReader::with_capacity(2048, inner))
    }

    fn from_buffered(inner: BufReader<R>) -> Self {
        let mut reader = Reader::from_reader(inner);
        // A stream restart opens a second <stream:stream> that is never
        // closed before the first; end names are matched by depth here.
        reader.config_mut().check_end_names = false;
        Self {
            reader,
            buf: Vec::with_capacity(512),
        }
    }

    /// Starts parsing afresh after a stream restart (SASL success), keeping
    /// whatever the socket already delivered.
    pub fn restart(self) -> Self {
        Self::from_buffered(self.reader.into_inner())
    }

    /// The next stream header, element or end.
    pub async fn next(&mut self) -> anyhow::Result<Item>
    where
        BufReader<R>: AsyncBufRead + Unpin,
    {
        // Elements being built, outermost first.
        let mut stack: Vec<Element> = Vec::new();
        loop {
            self.buf.clear();
            let event = self
                .reader
                .read_event_into_async(&mut self.buf)
                .await
                .context("reading the XMPP stream")?;
            match event {
                Event::Start(e) => {
                    let el = start_element(&e)?;
                    if stack.is_empty() && el.name == "stream" {
                        return Ok(Item::StreamStart(el));
                    }
                    stack.push(el);
                }
                Event::Empty(e) => {
                    let el = start_element(&e)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(Item::Element(el)),
                    }
                }
                Event::End(_) => match stack.pop() {
                    Some(el) => match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return Ok(Item::Element(el)),
                    },
                    // </stream:stream>
                    None => return Ok(Item::StreamEnd),
                },
                Event::Text(t) => {
                    if let Some(el) = stack.last_mut() {
                        let text = t.decode().context("text")?;
                        el.text
                            .push_str(&quick_xml::escape::unescape(&text).context("text")?);
                    }
                }
                Event::CData(t) => {
                    if let Some(el) = stack.last_mut() {
                        el.text.push_str(&t.decode().context("CDATA")?);
                    }
                }
                Event::GeneralRef(r) => {
                    if let Some(el) = stack.last_mut() {
                        let c = match r.resolve_char_ref().context("character reference")? {
                            Some(c) => c,
                            None => match r.as_ref() {
                                b"amp" => '&',
                                b"lt" => '<',
                                b"gt" => '>',
                                b"quot" => '"',
                                b"apos" => '\'',
                                other => {
                                    bail!("unknown entity &{};", String::from_utf8_lossy(other))
                                }
                            },
                        };
                        el.text.push(c);
                    }
                }
                Event::Eof => {
                    if !stack.is_empty() {
                        bail!("the stream ended inside <{}>", stack[0].name);
                    }
                    return Ok(Item::StreamEnd);
                }
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }
}

/// Escapes text or an attribute value for XML.
pub fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn items(input: &[u8]) -> Vec<Item> {
        let mut r = StreamReader::new(input);
        let mut out = Vec::new();
        loop {
            let item = r.next().await.expect("item");
            let end = item == Item::StreamEnd;
            out.push(item);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn reads_header_stanzas_and_end() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
            xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>\
            <stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>\
            <mechanism>PLAIN</mechanism><mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>\
            <message from='a@localhost/r' type='chat' id='7'><body>x &amp; y&#33; <![CDATA[<z>]]></body></message>\
            </stream:stream>";
        let items = items(input).await;
        assert_eq!(items.len(), 4);
        let Item::StreamStart(h) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(h.attr("id"), Some("s1"));
        let Item::Element(f) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(f.name, "features");
        let mechs: Vec<&str> = f
            .child("mechanisms")
            .expect("mechanisms")
            .children
            .iter()
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(mechs, ["PLAIN", "SCRAM-SHA-1"]);
        let Item::Element(m) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!(m.attr("type"), Some("chat"));
        assert_eq!(m.child("body").expect("body").text, "x & y! <z>");
        assert_eq!(items[3], Item::StreamEnd);
    }

    #[tokio::test]
    async fn a_truncated_stanza_is_an_error() {
        let mut r = StreamReader::new(&b"<stream:stream><message><body>x"[..]);
        assert!(matches!(
            r.next().await.expect("header"),
            Item::StreamStart(_)
        ));
        assert!(r.next().await.is_err());
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("a<b&'\""), "a&lt;b&amp;&apos;&quot;");
    }
}
