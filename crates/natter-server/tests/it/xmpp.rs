//! XMPP protocol scenarios, each run over TCP, WebSocket (RFC 7395) and
//! BOSH with the same steps: "alice sends … bob receives …", written as
//! the XML that crosses the wire. Third-party client libraries are run
//! against the server by `scripts/test-xmpp-interop`.

use natter_testkit::stream::{Realtime, Transport};
use natter_testkit::xmpp::{ALL, Element, Framing, XmppClient, body};
use natter_testkit::{PASSWORD, TestServer};
use serde_json::json;
use std::time::Duration;

const SID: &str = "urn:xmpp:sid:0";
const RECEIPTS: &str = "urn:xmpp:receipts";
const MARKERS: &str = "urn:xmpp:chat-markers:0";
const MAM: &str = "urn:xmpp:mam:2";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// A server that allows PLAIN over plain TCP, as on loopback.
async fn server() -> TestServer {
    TestServer::start_with(|c| c.xmpp.allow_plaintext = true).await
}

fn is_chat(e: &Element) -> bool {
    e.name() == "message" && body(e).is_some()
}

#[tokio::test]
async fn alice_and_bob_chat_with_receipts_and_markers_over_every_framing() {
    let server = server().await;
    let rest_alice = server.user("alice").await;
    server.user("bob").await;
    for framing in ALL {
        let mut alice = XmppClient::online(&server, framing, "alice", PASSWORD).await;
        let mut bob = XmppClient::online(&server, framing, "bob", PASSWORD).await;
        let origin = format!("o-{framing:?}");

        // alice sends bob a chat message with an origin-id
        alice
            .send(&format!(
                "<message xmlns='jabber:client' type='chat' to='bob@localhost' id='{origin}'><body>hi bob over {framing:?}</body><origin-id xmlns='{SID}' id='{origin}'/><request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/></message>"
            ))
            .await;
        // bob receives it from alice's bare JID, with a stanza id
        let m = bob.recv_where(is_chat).await;
        assert_eq!(
            body(&m).as_deref(),
            Some(format!("hi bob over {framing:?}").as_str())
        );
        assert_eq!(m.attr("from"), Some("alice@localhost"));
        assert_eq!(m.attr("type"), Some("chat"));
        assert_eq!(
            m.attr("id"),
            Some(origin.as_str()),
            "the sender's id is kept"
        );
        let stanza_id = m.get_child("stanza-id", SID).expect("XEP-0359 stanza-id");
        assert_eq!(stanza_id.attr("by"), Some("bob@localhost"));

        // the REST API shows the same message, with the same id
        let conv = rest_alice.direct("bob").await;
        let page = rest_alice
            .get(&format!("/api/v1/conversations/{conv}/messages"))
            .await;
        let last = page.expect(200)["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .clone();
        assert_eq!(
            last["id"].as_str(),
            stanza_id.attr("id"),
            "stanza-id is the message id"
        );
        assert_eq!(last["client_id"], json!(origin));

        // bob acknowledges receipt, then reads: alice gets both
        bob.send(&format!(
            "<message xmlns='jabber:client' to='alice@localhost'><received xmlns='{RECEIPTS}' id='{origin}'/></message>"
        ))
        .await;
        // (a new session may also hear again of earlier receipts: they
        // are idempotent, and no receipt is ever missed)
        let r = receipt_for(&mut alice, &origin).await;
        assert_eq!(r.attr("from"), Some("bob@localhost"));
        bob.send(&format!(
            "<message xmlns='jabber:client' to='alice@localhost' type='chat'><displayed xmlns='{MARKERS}' id='{origin}'/></message>"
        ))
        .await;
        let d = next_displayed(&mut alice).await;
        assert_eq!(displayed_id(&d), Some(origin.as_str()));
        assert_eq!(d.attr("from"), Some("bob@localhost"));

        // bob answers; alice gets it, and a retry with the same origin-id
        // is not stored twice
        for _ in 0..2 {
            bob.send(&format!(
                "<message xmlns='jabber:client' type='chat' to='alice@localhost' id='r-{framing:?}'><body>hello alice</body></message>"
            ))
            .await;
        }
        let m = alice.recv_where(is_chat).await;
        assert_eq!(body(&m).as_deref(), Some("hello alice"));
        // a ping round trip proves the duplicate was processed before it
        alice
            .send("<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
            .await;
        let pong = alice.iq_reply("p1").await;
        assert_eq!(pong.attr("type"), Some("result"));
        let page = rest_alice
            .get(&format!("/api/v1/conversations/{conv}/messages"))
            .await;
        let count = page.expect(200)["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["client_id"] == json!(format!("r-{framing:?}")))
            .count();
        assert_eq!(count, 1, "a retried stanza id is stored once");
    }
}

#[tokio::test]
async fn stream_errors_name_the_rfc_condition_on_every_framing() {
    let server = server().await;
    server.user("alice").await;
    for framing in ALL {
        // a stanza before authentication
        let mut c = XmppClient::connect(&server, framing).await;
        c.features().await;
        c.send("<message xmlns='jabber:client' to='bob@localhost'><body>x</body></message>")
            .await;
        assert_eq!(c.stream_error().await, "not-authorized", "{framing:?}");

        // a header for another domain
        let mut c = XmppClient::connect_to(&server, framing, "elsewhere.example").await;
        assert_eq!(c.stream_error().await, "host-unknown", "{framing:?}");

        // a spoofed from
        let mut c = XmppClient::connect(&server, framing).await;
        c.login_plain("alice", PASSWORD, "r").await;
        c.send("<message xmlns='jabber:client' from='bob@localhost/x' to='alice@localhost'><body>x</body></message>")
            .await;
        assert_eq!(c.stream_error().await, "invalid-from", "{framing:?}");

        // an unknown top-level element
        let mut c = XmppClient::connect(&server, framing).await;
        c.features().await;
        c.send("<foo xmlns='urn:example:nope'/>").await;
        assert_eq!(
            c.stream_error().await,
            "unsupported-stanza-type",
            "{framing:?}"
        );
    }
    for framing in [Framing::Tcp, Framing::WebSocket] {
        // malformed XML
        let mut c = XmppClient::connect(&server, framing).await;
        c.features().await;
        c.send_raw(b"<message xmlns='jabber:client'><body>x</bod></message>")
            .await;
        assert_eq!(c.stream_error().await, "not-well-formed", "{framing:?}");

        // entity expansion and other restricted XML
        for evil in [
            &b"<!DOCTYPE lolz [<!ENTITY lol 'lol'>]><message xmlns='jabber:client'>&lol;</message>"
                [..],
            b"<message xmlns='jabber:client'><body>&xxe;</body></message>",
            b"<?evil instruction?><message xmlns='jabber:client'/>",
            b"<!-- a comment --><message xmlns='jabber:client'/>",
        ] {
            let mut c = XmppClient::connect(&server, framing).await;
            c.features().await;
            c.send_raw(evil).await;
            assert_eq!(
                c.stream_error().await,
                "restricted-xml",
                "{framing:?}: {}",
                String::from_utf8_lossy(evil)
            );
        }

        // an oversized stanza
        let mut c = XmppClient::connect(&server, framing).await;
        c.login_plain("alice", PASSWORD, "big").await;
        let huge = "a".repeat(server.config.xmpp.max_stanza_bytes + 10);
        c.send_raw(
            format!(
                "<message xmlns='jabber:client' to='alice@localhost'><body>{huge}</body></message>"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(c.stream_error().await, "policy-violation", "{framing:?}");
    }
    // a stream header in the wrong namespace (TCP)
    let mut c = XmppClient::connect_raw(&server).await;
    c.send_raw(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='urn:example:wrong' to='localhost' version='1.0'>")
        .await;
    assert_eq!(c.stream_error().await, "invalid-namespace");
    // BOSH refuses a body with a DTD before it reaches any session
    let mut c = XmppClient::connect(&server, Framing::Bosh).await;
    c.features().await;
    c.send_raw(b"<!DOCTYPE body [<!ENTITY x 'y'>]><body xmlns='http://jabber.org/protocol/httpbind' rid='1'>&x;</body>")
        .await;
    assert!(c.closed().await, "BOSH terminates the request");
}

#[tokio::test]
async fn tls_is_required_and_scram_works_over_starttls_and_direct_tls() {
    let server = TestServer::start().await;
    server.user("alice").await;

    // without TLS only STARTTLS is offered, and SASL is refused
    let mut c = XmppClient::connect(&server, Framing::Tcp).await;
    let features = c.features().await;
    let starttls = features
        .get_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .expect("STARTTLS offered");
    assert!(
        starttls
            .get_child("required", "urn:ietf:params:xml:ns:xmpp-tls")
            .is_some()
    );
    assert!(
        features
            .get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .is_none(),
        "no SASL before TLS"
    );
    c.send("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNlAHg=</auth>")
        .await;
    assert_eq!(c.stream_error().await, "policy-violation");

    // STARTTLS, then SCRAM-SHA-256 with the server's signature checked
    let mut c = XmppClient::connect(&server, Framing::Tcp).await;
    c.features().await;
    c.starttls(&server).await;
    c.login_scram("alice", PASSWORD, "tls").await;
    assert_eq!(c.jid.as_deref(), Some("alice@localhost/tls"));

    // plaintext sent right after <starttls/> is discarded, not run
    let mut c = XmppClient::connect(&server, Framing::Tcp).await;
    c.features().await;
    c.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq xmlns='jabber:client' type='get' id='inject'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    c.starttls_after_proceed(&server).await;
    let f = c.features().await;
    assert!(
        f.get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .is_some()
    );

    // direct TLS (XEP-0368)
    let mut c = XmppClient::connect_direct_tls(&server).await;
    c.login_scram("alice", PASSWORD, "direct").await;

    // a wrong password fails with <not-authorized/>
    let mut c = XmppClient::connect_direct_tls(&server).await;
    c.features().await;
    let creds = base64_encode("\0alice\0wrong-password");
    c.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
    ))
    .await;
    let failure = c.recv().await;
    assert_eq!(failure.name(), "failure");
    assert!(
        failure
            .get_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl")
            .is_some()
    );
}

/// SCRAM -PLUS binds the log-in to the TLS connection (RFC 9266
/// `tls-exporter`): data from another connection fails, as does a client
/// told that the server cannot bind (a downgrade), and the mechanisms are
/// offered only where there is TLS to bind to.
#[tokio::test]
async fn scram_plus_binds_the_log_in_to_the_tls_connection() {
    use natter_testkit::xmpp::Binding;
    let server = TestServer::start().await;
    server.user("alice").await;
    let mechanisms = |f: &Element| -> Vec<String> {
        f.get_child("mechanisms", "urn:ietf:params:xml:ns:xmpp-sasl")
            .map(|m| m.children().map(|c| c.text()).collect())
            .unwrap_or_default()
    };

    for starttls in [false, true] {
        let mut c = if starttls {
            let mut c = XmppClient::connect(&server, Framing::Tcp).await;
            c.features().await;
            c.starttls(&server).await;
            c
        } else {
            XmppClient::connect_direct_tls(&server).await
        };
        let f = c.features().await;
        assert_eq!(
            mechanisms(&f)[..3],
            ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256"]
        );
        let cb = f
            .get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
            .expect("XEP-0440 advertised");
        let kinds: Vec<_> = cb.children().filter_map(|c| c.attr("type")).collect();
        assert_eq!(kinds, ["tls-exporter"]);
        let outcome = c.scram_sha256("alice", PASSWORD, Binding::Exporter).await;
        assert_eq!(outcome.name(), "success", "{outcome:?}");
        c.open().await;
        c.bind("plus").await;
        assert_eq!(c.jid.as_deref(), Some("alice@localhost/plus"));
    }

    // A SCRAM-SHA-256 log-in as alice on a fresh direct-TLS connection.
    let attempt = async |binding| {
        let mut c = XmppClient::connect_direct_tls(&server).await;
        c.features().await;
        c.scram_sha256("alice", PASSWORD, binding).await
    };
    // the binding data of another channel: not-authorized
    let outcome = attempt(Binding::Forged).await;
    assert_eq!(outcome.name(), "failure");
    assert!(
        outcome
            .get_child("not-authorized", "urn:ietf:params:xml:ns:xmpp-sasl")
            .is_some(),
        "{outcome:?}"
    );
    // `y` where -PLUS was offered means the offer was tampered with
    let outcome = attempt(Binding::Unsupported).await;
    assert_eq!(outcome.name(), "failure", "{outcome:?}");

    // plain SCRAM still works beside it
    let mut c = XmppClient::connect_direct_tls(&server).await;
    c.login_scram("alice", PASSWORD, "plain-scram").await;

    // no TLS of our own on WebSocket and BOSH: nothing to bind to
    for framing in [Framing::WebSocket, Framing::Bosh] {
        let mut c = XmppClient::connect(&server, framing).await;
        let f = c.features().await;
        assert_eq!(mechanisms(&f)[..2], ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
        assert!(
            f.get_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0")
                .is_none()
        );
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>{}</auth>",
            base64_encode("p=tls-exporter,,n=alice,r=abc")
        ))
        .await;
        let failure = c.recv().await;
        assert!(
            failure
                .get_child("invalid-mechanism", "urn:ietf:params:xml:ns:xmpp-sasl")
                .is_some(),
            "{failure:?}"
        );
    }
}

fn base64_encode(s: &str) -> String {
    natter_testkit::xmpp::base64(s)
}

#[tokio::test]
async fn offline_messages_arrive_at_login_and_the_archive_pages() {
    let server = server().await;
    server.user("alice").await;
    server.user("bob").await;
    for framing in ALL {
        let mut alice = XmppClient::online(&server, framing, "alice", PASSWORD).await;
        let tag = format!("{framing:?}");
        for i in 1..=3 {
            alice
                .send(&format!(
                    "<message xmlns='jabber:client' type='chat' to='bob@localhost' id='{tag}-{i}'><body>{tag} offline {i}</body></message>"
                ))
                .await;
        }
        alice
            .send(
                "<iq xmlns='jabber:client' type='get' id='sync'><ping xmlns='urn:xmpp:ping'/></iq>",
            )
            .await;
        alice.iq_reply("sync").await;

        // bob comes online and gets the three, oldest first, with a delay
        let mut bob = XmppClient::online(&server, framing, "bob", PASSWORD).await;
        for i in 1..=3 {
            let m = bob.recv_where(is_chat).await;
            assert_eq!(body(&m), Some(format!("{tag} offline {i}")));
            assert!(
                m.get_child("delay", "urn:xmpp:delay").is_some(),
                "offline messages carry a delay"
            );
        }

        // the archive with alice, two per page
        bob.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='q1'><query xmlns='{MAM}' queryid='f1'><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field><field var='with'><value>alice@localhost</value></field></x><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set></query></iq>"
        ))
        .await;
        let mut results = Vec::new();
        let fin = loop {
            let e = bob.recv().await;
            if let Some(r) = e.get_child("result", MAM) {
                assert_eq!(r.attr("queryid"), Some("f1"));
                let fwd = r.get_child("forwarded", "urn:xmpp:forward:0").unwrap();
                let inner = fwd.get_child("message", "jabber:client").unwrap();
                results.push((r.attr("id").unwrap().to_owned(), body(inner).unwrap()));
            } else if e.attr("id") == Some("q1") {
                break e;
            }
        };
        assert_eq!(fin.attr("type"), Some("result"), "{fin:?}");
        let fin = fin.get_child("fin", MAM).unwrap();
        assert_eq!(results.len(), 2);
        assert_eq!(
            results[1].1,
            format!("{tag} offline 3"),
            "the last page ends with the newest"
        );
        // the page before it
        let first = &results[0].0;
        bob.send(&format!(
            "<iq xmlns='jabber:client' type='set' id='q2'><query xmlns='{MAM}'><x xmlns='jabber:x:data' type='submit'><field var='with'><value>alice@localhost</value></field></x><set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before>{first}</before></set></query></iq>"
        ))
        .await;
        let mut older = Vec::new();
        let fin2 = loop {
            let e = bob.recv().await;
            if let Some(r) = e.get_child("result", MAM) {
                let inner = r
                    .get_child("forwarded", "urn:xmpp:forward:0")
                    .and_then(|f| f.get_child("message", "jabber:client"))
                    .unwrap();
                older.push(body(inner).unwrap());
            } else if e.attr("id") == Some("q2") {
                break e;
            }
        };
        assert_eq!(older.last().cloned(), Some(format!("{tag} offline 1")));
        let _ = fin;
        assert!(fin2.get_child("fin", MAM).is_some());
    }
}

/// Waits for a XEP-0184 receipt naming the message `id`.
async fn receipt_for(c: &mut XmppClient, id: &str) -> Element {
    c.recv_where(|e| {
        e.get_child("received", RECEIPTS)
            .is_some_and(|r| r.attr("id") == Some(id))
    })
    .await
}

/// The next XEP-0333 displayed marker.
async fn next_displayed(c: &mut XmppClient) -> Element {
    c.recv_where(|e| e.get_child("displayed", MARKERS).is_some())
        .await
}

/// The message a displayed marker names.
fn displayed_id(e: &Element) -> Option<&str> {
    e.get_child("displayed", MARKERS)?.attr("id")
}

#[tokio::test]
async fn receipts_and_markers_name_messages_sent_before_the_session_came_online() {
    // Receipts usually name messages the sessions saw live; these were
    // sent before either XMPP session existed, so both directions must
    // find them in the store.
    let server = server().await;
    let rest_alice = server.user("alice").await;
    server.user("bob").await;
    let conv = rest_alice.direct("bob").await;
    rest_alice
        .say(&conv, "early-1", "before anyone was online")
        .await;
    rest_alice.say(&conv, "early-2", "still before").await;

    let mut alice = XmppClient::online(&server, Framing::Tcp, "alice", PASSWORD).await;
    // alice's client asks for receipts, as clients that support them do,
    // in the first message it sends
    alice
        .send(&format!("<message xmlns='jabber:client' type='chat' to='bob@localhost' id='asks-1'><body>asking</body><request xmlns='{RECEIPTS}'/><markable xmlns='{MARKERS}'/></message>"))
        .await;
    // bob gets all three as offline messages; writing them counts as
    // delivery
    let mut bob = XmppClient::online(&server, Framing::Tcp, "bob", PASSWORD).await;
    bob.recv_where(|e| is_chat(e) && e.attr("id") == Some("asks-1"))
        .await;
    for id in ["early-1", "early-2", "asks-1"] {
        receipt_for(&mut alice, id).await;
    }
    // bob's client marks the first one displayed by the id alice gave it
    bob.send(&format!(
        "<message xmlns='jabber:client' to='alice@localhost' type='chat'><displayed xmlns='{MARKERS}' id='early-1'/></message>"
    ))
    .await;
    assert_eq!(
        displayed_id(&next_displayed(&mut alice).await),
        Some("early-1")
    );

    // a message sent live, then displayed: the marker names it, not an
    // earlier one
    alice
        .send("<message xmlns='jabber:client' type='chat' to='bob@localhost' id='live-1'><body>now live</body></message>")
        .await;
    bob.recv_where(|e| is_chat(e) && e.attr("id") == Some("live-1"))
        .await;
    receipt_for(&mut alice, "live-1").await;
    bob.send(&format!(
        "<message xmlns='jabber:client' to='alice@localhost' type='chat'><displayed xmlns='{MARKERS}' id='live-1'/></message>"
    ))
    .await;
    assert_eq!(
        displayed_id(&next_displayed(&mut alice).await),
        Some("live-1")
    );
    let bob_member = rest_alice.member(&conv, "bob").await;
    assert_eq!(bob_member["read_seq"], 4, "{bob_member}");
}

#[tokio::test]
async fn a_message_one_device_just_got_is_not_offline_for_the_next() {
    // The hub writes delivered markers a moment after delivery (it gathers
    // them); a device that comes online meanwhile must not get the message
    // again as an offline message.
    let server = server().await;
    let rest_bob = server.user("bob").await;
    server.user("alice").await;
    let conv = rest_bob.direct("alice").await;
    let mut phone = XmppClient::online(&server, Framing::Tcp, "alice", PASSWORD).await;
    rest_bob.say(&conv, "m-1", "just now").await;
    phone
        .recv_where(|e| is_chat(e) && e.attr("id") == Some("m-1"))
        .await;

    let mut laptop = XmppClient::online(&server, Framing::Tcp, "alice", PASSWORD).await;
    // Offline messages answer the initial presence, so they come before
    // the reply to a ping sent after it.
    laptop
        .send("<iq xmlns='jabber:client' type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    loop {
        let e = laptop.recv().await;
        assert!(
            !is_chat(&e),
            "an offline copy of a delivered message: {e:?}"
        );
        if e.name() == "iq" && e.attr("id") == Some("p1") {
            break;
        }
    }
}

#[tokio::test]
async fn receipts_go_only_to_clients_that_ask_for_them() {
    // XEP-0184: a receipt answers a request. A client that never asked
    // gets none, even though the core tracks delivery of every message.
    let server = server().await;
    let rest_alice = server.user("alice").await;
    server.user("bob").await;
    let conv = rest_alice.direct("bob").await;
    let mut alice = XmppClient::online(&server, Framing::Tcp, "alice", PASSWORD).await;
    let mut bob = XmppClient::online(&server, Framing::Tcp, "bob", PASSWORD).await;

    alice
        .send("<message xmlns='jabber:client' type='chat' to='bob@localhost' id='quiet-1'><body>no receipt wanted</body></message>")
        .await;
    bob.recv_where(|e| is_chat(e) && e.attr("id") == Some("quiet-1"))
        .await;
    // Wait until bob's delivered watermark passed it, so that the event
    // that would have carried its receipt is behind us.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let bob_member = rest_alice.member(&conv, "bob").await;
        if bob_member["delivered_seq"].as_i64().unwrap() >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bob's delivered watermark never moved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The marker's event reaches alice's session through the event log,
    // in log order: once a later message from bob has come, it is behind
    // us too.
    bob.send("<message xmlns='jabber:client' type='chat' to='alice@localhost' id='later-1'><body>later</body></message>")
        .await;
    loop {
        let e = alice.recv().await;
        assert!(
            e.get_child("received", RECEIPTS).is_none(),
            "a receipt nobody asked for: {e:?}"
        );
        if is_chat(&e) && e.attr("id") == Some("later-1") {
            break;
        }
    }

    // Now alice's client asks: the next receipt it gets names that
    // message, not the one before it.
    alice
        .send(&format!("<message xmlns='jabber:client' type='chat' to='bob@localhost' id='asks-2'><body>receipt please</body><request xmlns='{RECEIPTS}'/></message>"))
        .await;
    bob.recv_where(|e| is_chat(e) && e.attr("id") == Some("asks-2"))
        .await;
    let receipt = alice
        .recv_where(|e| e.get_child("received", RECEIPTS).is_some())
        .await;
    assert_eq!(
        receipt.get_child("received", RECEIPTS).unwrap().attr("id"),
        Some("asks-2"),
        "{receipt:?}"
    );
}

#[tokio::test]
async fn an_xmpp_user_and_a_json_user_share_messages_receipts_typing_and_presence() {
    let server = server().await;
    let carol = server.user("carol").await;
    server.user("dave").await;
    let conv = carol.direct("dave").await;
    // carol follows the JSON stream
    let mut stream = Realtime::connect(&carol, Transport::WebSocket, None).await;

    let mut dave = XmppClient::online(&server, Framing::Tcp, "dave", PASSWORD).await;
    // dave coming online reaches carol as presence
    stream
        .expect("dave online", |e| {
            e["event"] == "presence"
                && e["data"]["user"] == "dave"
                && e["data"]["status"] == "online"
        })
        .await;

    // carol (JSON) → dave (XMPP)
    let sent = stream.send(&conv, "c-1", "hello dave").await;
    let m = dave.recv_where(is_chat).await;
    assert_eq!(body(&m).as_deref(), Some("hello dave"));
    assert_eq!(m.attr("from"), Some("carol@localhost"));
    assert_eq!(
        m.get_child("stanza-id", SID).and_then(|s| s.attr("id")),
        sent["id"].as_str()
    );
    // dave's client reports delivery and display: carol sees the markers
    dave.send(&format!(
        "<message xmlns='jabber:client' to='carol@localhost'><received xmlns='{RECEIPTS}' id='c-1'/></message>"
    ))
    .await;
    stream
        .expect("delivered", |e| {
            e["event"] == "receipt.delivered" && e["data"]["user"] == "dave"
        })
        .await;
    dave.send(&format!(
        "<message xmlns='jabber:client' to='carol@localhost' type='chat'><displayed xmlns='{MARKERS}' id='c-1'/></message>"
    ))
    .await;
    stream
        .expect("read by dave", |e| {
            e["event"] == "receipt.read" && e["data"]["user"] == "dave"
        })
        .await;

    // dave types: carol sees typing; dave sends: carol gets the message
    dave.send(
        "<message xmlns='jabber:client' to='carol@localhost' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    )
    .await;
    stream
        .expect("typing", |e| {
            e["event"] == "typing" && e["data"]["user"] == "dave" && e["data"]["active"] == true
        })
        .await;
    dave.send("<message xmlns='jabber:client' to='carol@localhost' type='chat' id='d-1'><body>hi carol</body></message>")
        .await;
    let got = stream
        .expect("dave's message", |e| {
            e["event"] == "message.created" && e["data"]["message"]["sender"] == "dave"
        })
        .await;
    assert_eq!(got["data"]["message"]["body"], "hi carol");
    assert_eq!(got["data"]["message"]["client_id"], "d-1");

    // carol reads over REST: dave gets a displayed marker for his message
    let seq = got["data"]["message"]["seq"].as_i64().unwrap();
    carol
        .post(
            &format!("/api/v1/conversations/{conv}/read"),
            json!({"seq": seq}),
        )
        .await
        .expect(200);
    let d = next_displayed(&mut dave).await;
    assert_eq!(displayed_id(&d), Some("d-1"));
    assert_eq!(d.attr("from"), Some("carol@localhost"));

    // carol types over JSON: dave sees a chat state
    stream
        .command(json!({"type": "typing", "conversation_id": conv, "active": true}))
        .await;
    dave.recv_where(|e| {
        e.get_child("composing", "http://jabber.org/protocol/chatstates")
            .is_some()
    })
    .await;

    // both see one history
    let page = carol
        .get(&format!("/api/v1/conversations/{conv}/messages"))
        .await;
    let bodies: Vec<String> = page.expect(200)["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["hello dave", "hi carol"]);

    // dave goes away, then offline: carol sees both
    dave.send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    stream
        .expect("dave away", |e| {
            e["event"] == "presence" && e["data"]["user"] == "dave" && e["data"]["status"] == "away"
        })
        .await;
    dave.send("<presence xmlns='jabber:client' type='unavailable'/>")
        .await;
    stream
        .expect("dave offline", |e| {
            e["event"] == "presence"
                && e["data"]["user"] == "dave"
                && e["data"]["status"] == "offline"
        })
        .await;
}

#[tokio::test]
async fn stream_management_resends_what_was_not_acknowledged() {
    let server = server().await;
    server.user("erin").await;
    let frank = server.user("frank").await;
    let conv = frank.direct("erin").await;

    let mut erin = XmppClient::connect(&server, Framing::Tcp).await;
    erin.login_plain("erin", PASSWORD, "phone").await;
    erin.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await;
    let enabled = erin.recv_where(|e| e.name() == "enabled").await;
    let previd = enabled.attr("id").expect("resumable").to_owned();
    erin.send("<presence xmlns='jabber:client'/>").await;
    erin.recv_where(|e| e.name() == "presence").await;

    frank.say(&conv, "f-1", "one").await;
    let m = erin.recv_where(is_chat).await;
    assert_eq!(body(&m).as_deref(), Some("one"));
    // the connection drops before erin acknowledges anything
    drop(erin);
    frank.say(&conv, "f-2", "two").await;

    let mut erin = XmppClient::connect(&server, Framing::Tcp).await;
    erin.features().await;
    let creds = base64_encode(&format!("\0erin\0{PASSWORD}"));
    erin.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
    ))
    .await;
    assert_eq!(erin.recv().await.name(), "success");
    erin.open().await;
    erin.features().await;
    erin.send(&format!(
        "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='0'/>"
    ))
    .await;
    let resumed = erin.recv().await;
    assert_eq!(resumed.name(), "resumed", "{resumed:?}");
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let m = erin.recv_where(is_chat).await;
        bodies.push(body(&m).unwrap());
    }
    assert_eq!(
        bodies,
        ["one", "two"],
        "the unacknowledged message comes again, then the new one"
    );
    erin.send("<r xmlns='urn:xmpp:sm:3'/>").await;
    let a = erin.recv_where(|e| e.name() == "a").await;
    assert!(a.attr("h").is_some());

    // resuming again while this connection still looks alive moves the
    // session to the new connection, and the old one ends with <conflict/>
    let mut again = XmppClient::connect(&server, Framing::Tcp).await;
    again.features().await;
    again
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
        ))
        .await;
    again.recv().await;
    again.open().await;
    again.features().await;
    again
        .send(&format!(
            "<resume xmlns='urn:xmpp:sm:3' previd='{previd}' h='2'/>"
        ))
        .await;
    let resumed = again.recv().await;
    assert_eq!(resumed.name(), "resumed", "{resumed:?}");
    assert_eq!(erin.stream_error().await, "conflict");
    frank.say(&conv, "f-3", "three").await;
    // h=2 acknowledged the own presence and "one": "two" comes again
    let mut bodies = Vec::new();
    while bodies.last().map(String::as_str) != Some("three") {
        bodies.push(body(&again.recv_where(is_chat).await).unwrap());
    }
    assert_eq!(bodies, ["two", "three"]);

    // an unknown session cannot be resumed
    let mut stranger = XmppClient::connect(&server, Framing::Tcp).await;
    stranger.features().await;
    stranger
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
        ))
        .await;
    stranger.recv().await;
    stranger.open().await;
    stranger.features().await;
    stranger
        .send("<resume xmlns='urn:xmpp:sm:3' previd='no-such-session' h='0'/>")
        .await;
    let failed = stranger.recv().await;
    assert_eq!(failed.name(), "failed");
    assert!(failed.get_child("item-not-found", STANZAS).is_some());
}

#[tokio::test]
async fn carbons_copy_messages_sent_from_other_devices() {
    let server = server().await;
    let grace = server.user("grace").await;
    server.user("heidi").await;
    let mut desktop = XmppClient::online(&server, Framing::WebSocket, "grace", PASSWORD).await;
    desktop
        .send("<iq xmlns='jabber:client' type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await;
    assert_eq!(desktop.iq_reply("c1").await.attr("type"), Some("result"));
    let mut phone = XmppClient::online(&server, Framing::Tcp, "grace", PASSWORD).await;
    phone
        .send("<message xmlns='jabber:client' type='chat' to='heidi@localhost' id='g-1'><body>from my phone</body></message>")
        .await;
    let carbon = desktop
        .recv_where(|e| e.get_child("sent", "urn:xmpp:carbons:2").is_some())
        .await;
    let inner = carbon
        .get_child("sent", "urn:xmpp:carbons:2")
        .and_then(|s| s.get_child("forwarded", "urn:xmpp:forward:0"))
        .and_then(|f| f.get_child("message", "jabber:client"))
        .expect("forwarded message");
    assert_eq!(body(inner).as_deref(), Some("from my phone"));
    assert_eq!(inner.attr("to"), Some("heidi@localhost"));
    // and a message sent over REST is a carbon too
    let conv = grace.direct("heidi").await;
    grace.say(&conv, "g-2", "from the web").await;
    let carbon = desktop
        .recv_where(|e| e.get_child("sent", "urn:xmpp:carbons:2").is_some())
        .await;
    assert!(format!("{carbon:?}").contains("from the web"));
}

#[tokio::test]
async fn roster_is_the_contact_list_with_pushes() {
    let server = server().await;
    let ivan = server.user("ivan").await;
    server.user("judy").await;
    let mut a = XmppClient::online(&server, Framing::Bosh, "ivan", PASSWORD).await;
    a.send("<iq xmlns='jabber:client' type='set' id='r1'><query xmlns='jabber:iq:roster'><item jid='judy@localhost' name='Judy'><group>Friends</group></item></query></iq>")
        .await;
    let push = a
        .recv_where(|e| e.name() == "iq" && e.attr("type") == Some("set"))
        .await;
    let item = push
        .get_child("query", "jabber:iq:roster")
        .and_then(|q| q.get_child("item", "jabber:iq:roster"))
        .unwrap();
    assert_eq!(item.attr("jid"), Some("judy@localhost"));
    assert_eq!(item.attr("name"), Some("Judy"));
    // the REST contact list is the roster
    let contacts = ivan.get("/api/v1/contacts").await;
    let list = contacts.expect(200).to_string();
    assert!(list.contains("judy") && list.contains("Friends"), "{list}");
    a.send("<iq xmlns='jabber:client' type='get' id='r2'><query xmlns='jabber:iq:roster'/></iq>")
        .await;
    let roster = a.iq_reply("r2").await;
    assert_eq!(
        roster
            .get_child("query", "jabber:iq:roster")
            .unwrap()
            .children()
            .count(),
        1
    );
    // an unknown user cannot be added
    a.send("<iq xmlns='jabber:client' type='set' id='r3'><query xmlns='jabber:iq:roster'><item jid='nobody@localhost'/></query></iq>")
        .await;
    let err = a.iq_reply("r3").await;
    assert_eq!(err.attr("type"), Some("error"));
    // messages to an unknown user bounce with service-unavailable
    a.send("<message xmlns='jabber:client' type='chat' to='nobody@localhost' id='x1'><body>hello?</body></message>")
        .await;
    let bounce = a
        .recv_where(|e| e.name() == "message" && e.attr("type") == Some("error"))
        .await;
    assert!(
        bounce
            .get_child("error", "jabber:client")
            .and_then(|e| e.get_child("service-unavailable", STANZAS))
            .is_some(),
        "{bounce:?}"
    );
}

// --- XEP-0191 blocking ----------------------------------------------------

const BLOCKING: &str = "urn:xmpp:blocking";
const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

fn stanza_error(e: &Element) -> Option<&str> {
    let error = e.get_child("error", "jabber:client")?;
    error
        .children()
        .find(|c| c.ns() == STANZAS && c.name() != "text")
        .map(|c| c.name())
}

fn blocklist_jids(e: &Element, name: &str) -> Option<Vec<String>> {
    let list = e.get_child(name, BLOCKING)?;
    Some(
        list.children()
            .filter(|c| c.is("item", BLOCKING))
            .map(|c| c.attr("jid").unwrap_or_default().to_owned())
            .collect(),
    )
}

fn is_push(e: &Element, name: &str) -> bool {
    e.name() == "iq" && e.attr("type") == Some("set") && e.get_child(name, BLOCKING).is_some()
}

async fn request(c: &mut XmppClient, id: &str, xml: &str) -> Element {
    c.send(&format!(
        "<iq xmlns='jabber:client' type='{}' id='{id}'>{xml}</iq>",
        if xml.starts_with("<blocklist") {
            "get"
        } else {
            "set"
        }
    ))
    .await;
    c.iq_reply(id).await
}

/// The blocklist as the server returns it to `c` (bare JIDs).
async fn blocklist(c: &mut XmppClient, id: &str) -> Option<Vec<String>> {
    let r = request(c, id, &format!("<blocklist xmlns='{BLOCKING}'/>")).await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    blocklist_jids(&r, "blocklist")
}

#[tokio::test]
async fn blocklist_get_block_unblock_and_pushes_to_interested_resources() {
    let server = server().await;
    server.user("alice").await;
    server.user("bob").await;
    server.user("carol").await;
    let mut phone = XmppClient::online(&server, Framing::Tcp, "alice", PASSWORD).await;
    let mut laptop = XmppClient::online(&server, Framing::WebSocket, "alice", PASSWORD).await;

    // the server announces the feature
    phone
        .send("<iq xmlns='jabber:client' type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await;
    let info = phone.iq_reply("d1").await;
    let q = info
        .get_child("query", "http://jabber.org/protocol/disco#info")
        .unwrap();
    assert!(
        q.children().any(|f| f.attr("var") == Some(BLOCKING)),
        "disco#info lists urn:xmpp:blocking"
    );

    // both resources ask for the (empty) list and so become interested
    for c in [&mut phone, &mut laptop] {
        assert_eq!(blocklist(c, "l1").await, Some(vec![]));
    }

    // block: result to the requester, a push to each interested resource
    let r = request(
        &mut phone,
        "b1",
        &format!("<block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"), "{r:?}");
    for c in [&mut phone, &mut laptop] {
        let push = c.recv_where(|e| is_push(e, "block")).await;
        assert_eq!(
            blocklist_jids(&push, "block"),
            Some(vec!["bob@localhost".to_owned()])
        );
        // pushes are answered by clients; the server ignores the result
        c.send(&format!(
            "<iq xmlns='jabber:client' type='result' id='{}'/>",
            push.attr("id").unwrap()
        ))
        .await;
    }
    assert_eq!(
        blocklist(&mut laptop, "l2").await,
        Some(vec!["bob@localhost".to_owned()])
    );

    // errors: no items, another domain, no JID at all
    let r = request(&mut phone, "e1", &format!("<block xmlns='{BLOCKING}'/>")).await;
    assert_eq!(stanza_error(&r), Some("bad-request"));
    let r = request(
        &mut phone,
        "e2",
        &format!("<block xmlns='{BLOCKING}'><item jid='x@elsewhere.example'/></block>"),
    )
    .await;
    assert_eq!(stanza_error(&r), Some("item-not-found"));
    let r = request(
        &mut phone,
        "e3",
        &format!("<block xmlns='{BLOCKING}'><item jid='carol@localhost'/><item jid='nobody@localhost'/></block>"),
    )
    .await;
    assert_eq!(stanza_error(&r), Some("item-not-found"));
    assert_eq!(
        blocklist(&mut phone, "l3").await,
        Some(vec!["bob@localhost".to_owned()]),
        "a refused block changes nothing, not even its valid items"
    );

    // unblock one: a push with the item
    let r = request(
        &mut phone,
        "u1",
        &format!("<unblock xmlns='{BLOCKING}'><item jid='bob@localhost'/></unblock>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    let push = laptop.recv_where(|e| is_push(e, "unblock")).await;
    assert_eq!(
        blocklist_jids(&push, "unblock"),
        Some(vec!["bob@localhost".to_owned()])
    );

    // unblock all: an empty unblock, pushed empty
    request(
        &mut phone,
        "b2",
        &format!("<block xmlns='{BLOCKING}'><item jid='bob@localhost'/><item jid='carol@localhost'/></block>"),
    )
    .await;
    let r = request(&mut phone, "u2", &format!("<unblock xmlns='{BLOCKING}'/>")).await;
    assert_eq!(r.attr("type"), Some("result"));
    laptop
        .recv_where(|e| is_push(e, "unblock") && blocklist_jids(e, "unblock") == Some(vec![]))
        .await;
    assert_eq!(blocklist(&mut laptop, "l4").await, Some(vec![]));
}

#[tokio::test]
async fn a_blocked_users_messages_bounce_unstored_and_presence_stops() {
    let server = server().await;
    let rest_alice = server.user("alice").await;
    let rest_bob = server.user("bob").await;
    let rest_carol = server.user("carol").await;
    // alice shares presence with bob and carol, and sees theirs
    for (a, b) in [
        (&rest_alice, "bob"),
        (&rest_alice, "carol"),
        (&rest_bob, "alice"),
        (&rest_carol, "alice"),
    ] {
        a.put(&format!("/api/v1/contacts/{b}"), json!({}))
            .await
            .expect(201);
    }
    let conv = rest_alice.direct("bob").await;
    let mut alice = XmppClient::online(&server, Framing::Tcp, "alice", PASSWORD).await;
    let mut bob = XmppClient::online(&server, Framing::Tcp, "bob", PASSWORD).await;
    let mut carol = XmppClient::online(&server, Framing::Tcp, "carol", PASSWORD).await;

    let r = request(
        &mut alice,
        "b1",
        &format!("<block xmlns='{BLOCKING}'><item jid='bob@localhost'/></block>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    // bob sees alice go away (XEP-0191 3.3)
    bob.recv_where(|e| {
        e.name() == "presence"
            && e.attr("from") == Some("alice@localhost")
            && e.attr("type") == Some("unavailable")
    })
    .await;

    // bob's message bounces as if alice did not exist, and is not stored
    bob.send("<message xmlns='jabber:client' type='chat' to='alice@localhost' id='m1'><body>let me in</body></message>")
        .await;
    let bounce = bob
        .recv_where(|e| e.name() == "message" && e.attr("id") == Some("m1"))
        .await;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(stanza_error(&bounce), Some("service-unavailable"));
    let error = bounce.get_child("error", "jabber:client").unwrap();
    assert!(
        error.get_child("blocked", BLOCKING_ERRORS).is_none(),
        "the block is not revealed"
    );
    let history = rest_alice
        .get(&format!("/api/v1/conversations/{conv}/messages"))
        .await;
    assert_eq!(history.expect(200)["messages"], json!([]));

    // alice writing to bob is refused with the blocking error
    alice
        .send("<message xmlns='jabber:client' type='chat' to='bob@localhost' id='m2'><body>hm</body></message>")
        .await;
    let refused = alice
        .recv_where(|e| e.name() == "message" && e.attr("id") == Some("m2"))
        .await;
    assert_eq!(stanza_error(&refused), Some("not-acceptable"));
    let error = refused.get_child("error", "jabber:client").unwrap();
    assert!(error.get_child("blocked", BLOCKING_ERRORS).is_some());

    // an IQ from bob to alice's account is refused too; a subscription
    // request from him is dropped
    bob.send("<iq xmlns='jabber:client' type='get' id='v1' to='alice@localhost'><vCard xmlns='vcard-temp'/></iq>")
        .await;
    let r = bob.iq_reply("v1").await;
    assert_eq!(stanza_error(&r), Some("service-unavailable"));

    // bob's presence no longer reaches alice: his change, processed before
    // carol's (the ping proves it), is not what alice hears next
    bob.send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    bob.send("<presence xmlns='jabber:client' type='subscribe' to='alice@localhost'/>")
        .await;
    bob.send("<iq xmlns='jabber:client' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await;
    bob.iq_reply("p1").await;
    carol
        .send("<presence xmlns='jabber:client'><show>away</show></presence>")
        .await;
    let next = alice
        .recv_where(|e| {
            e.name() == "presence"
                && e.attr("from").is_some_and(|f| !f.starts_with("alice@"))
                && e.get_child("show", "jabber:client").is_some()
        })
        .await;
    assert_eq!(next.attr("from"), Some("carol@localhost"), "{next:?}");
}

#[tokio::test]
async fn blocks_made_over_rest_hold_over_xmpp_and_the_other_way() {
    let server = server().await;
    let rest_alice = server.user("alice").await;
    let rest_bob = server.user("bob").await;
    let conv = rest_bob.direct("alice").await;
    let mut bob = XmppClient::online(&server, Framing::Tcp, "bob", PASSWORD).await;

    // a block made over REST stops bob's XMPP messages
    rest_alice
        .put("/api/v1/blocks/bob", json!({}))
        .await
        .expect(201);
    bob.send("<message xmlns='jabber:client' type='chat' to='alice@localhost' id='x1'><body>hi</body></message>")
        .await;
    let bounce = bob
        .recv_where(|e| e.name() == "message" && e.attr("id") == Some("x1"))
        .await;
    assert_eq!(stanza_error(&bounce), Some("service-unavailable"));
    rest_alice.delete("/api/v1/blocks/bob").await.expect(204);

    // a block made over XMPP stops REST sends, and shows in the REST list
    let r = request(
        &mut bob,
        "b1",
        &format!("<block xmlns='{BLOCKING}'><item jid='alice@localhost'/></block>"),
    )
    .await;
    assert_eq!(r.attr("type"), Some("result"));
    rest_alice
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"client_id": "r1", "body": "hello?"}),
        )
        .await
        .expect_error(403, "recipient_unavailable");
    let list = rest_bob.get("/api/v1/blocks").await;
    assert_eq!(list.expect(200)["blocks"][0]["username"], "alice");
    // and bob's XMPP client, interested now, hears of a REST unblock
    assert_eq!(
        blocklist(&mut bob, "l1").await,
        Some(vec!["alice@localhost".to_owned()])
    );
    rest_bob.delete("/api/v1/blocks/alice").await.expect(204);
    let push = bob.recv_where(|e| is_push(e, "unblock")).await;
    assert_eq!(
        blocklist_jids(&push, "unblock"),
        Some(vec!["alice@localhost".to_owned()])
    );
    rest_alice
        .post(
            &format!("/api/v1/conversations/{conv}/messages"),
            json!({"client_id": "r2", "body": "hello"}),
        )
        .await
        .expect(201);
}
