"""XEP-0280 message carbons between resources of one account, through
slixmpp's carbons plugin."""

import pytest

from harness import NS_CARBONS, NS_FORWARD, NS_SID, attr, bare, barrier, chat_from, child, new_user


def sent_carbon(text: str, to_jid: str):
    def pred(s) -> bool:
        sent = child(s, "sent", NS_CARBONS)
        if sent is None:
            return False
        inner = sent.find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")
        if inner is None:
            return False
        b = inner.find("{jabber:client}body")
        return b is not None and b.text == text and bare(inner.get("to")) == to_jid
    return pred


async def test_sent_carbons_reach_the_other_resources(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    legacy = await clients.connect(alice, "legacy")  # never enables carbons
    b = await clients.connect(bob, "laptop")
    await phone.plugin["xep_0280"].enable()
    await desk.plugin["xep_0280"].enable()

    carbons = []
    desk.add_event_handler("carbon_sent", carbons.append)
    sent = phone.chat(bob, "sent from my phone")
    await b.inbox.expect(chat_from(alice, "sent from my phone"), "the message")

    copy = await desk.inbox.expect(sent_carbon("sent from my phone", bob.jid), "a sent carbon")
    # RFC/XEP-0280 section 7: the wrapper comes from the account's bare JID.
    assert attr(copy, "from") == alice.jid
    inner = child(copy, "sent", NS_CARBONS).find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")
    assert inner.get("id") == sent["id"]
    assert bare(inner.get("from")) == alice.jid
    assert inner.find(f"{{{NS_SID}}}stanza-id") is not None
    # slixmpp recognised it as a carbon.
    assert [str(c["carbon_sent"]["body"]) for c in carbons] == ["sent from my phone"]

    # The sender gets no copy of its own message, and a resource without
    # carbons gets none either.
    await barrier(b, bob, alice, phone, desk, legacy)
    assert phone.inbox.matching(sent_carbon("sent from my phone", bob.jid)) == []
    assert legacy.inbox.matching(sent_carbon("sent from my phone", bob.jid)) == []


async def test_incoming_messages_reach_every_resource(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    await phone.plugin["xep_0280"].enable()
    await desk.plugin["xep_0280"].enable()
    b = await clients.connect(bob, "laptop")
    b.chat(alice, "to all of you")
    for c in (phone, desk):
        got = await c.inbox.expect(
            lambda s: chat_from(bob, "to all of you")(s)
            or (child(s, "received", NS_CARBONS) is not None and "to all of you" in str(s)),
            "bob's message, directly or as a received carbon")
        assert got is not None


async def test_disabling_carbons_stops_the_copies(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    b = await clients.connect(bob, "laptop")
    await desk.plugin["xep_0280"].enable()
    phone.chat(bob, "one")
    await desk.inbox.expect(sent_carbon("one", bob.jid), "carbon of 'one'")
    await desk.plugin["xep_0280"].disable()
    phone.chat(bob, "two")
    await b.inbox.expect(chat_from(alice, "two"), "the message")
    await barrier(b, bob, alice, phone, desk)
    assert desk.inbox.matching(sent_carbon("two", bob.jid)) == []


async def test_a_displayed_marker_from_one_device_reaches_the_others(server, clients):
    """XEP-0280 copies every chat message one resource sends, markers
    included: that is how the other devices learn a chat was read
    (XEP-0333 section 5.1 relies on it)."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    await phone.plugin["xep_0280"].enable()
    await desk.plugin["xep_0280"].enable()
    b = await clients.connect(bob, "laptop")
    b.chat(alice, "read me on one device")
    got = await phone.inbox.expect(chat_from(bob, "read me on one device"), "the message")
    await desk.inbox.expect(chat_from(bob, "read me on one device"), "the message")
    phone.plugin["xep_0333"].send_marker(bob.jid, attr(got, "id"), "displayed", mtype="chat")
    carbon = await desk.inbox.expect(
        lambda s: child(s, "sent", NS_CARBONS) is not None
        and s.xml.find(f"{{{NS_CARBONS}}}sent/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message/"
                       "{urn:xmpp:chat-markers:0}displayed") is not None,
        "a sent carbon of the displayed marker")
    marker = carbon.xml.find(f"{{{NS_CARBONS}}}sent/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message/"
                             "{urn:xmpp:chat-markers:0}displayed")
    assert marker.get("id") == attr(got, "id")


async def test_private_messages_are_not_copied(server, clients):
    """XEP-0280 section 7: a message with <private/> (and the no-copy
    hint) is not carbon-copied."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    await desk.plugin["xep_0280"].enable()
    b = await clients.connect(bob, "laptop")
    phone.send_raw_message(bob, "<body>just from this phone</body>"
                                "<private xmlns='urn:xmpp:carbons:2'/>"
                                "<no-copy xmlns='urn:xmpp:hints'/>")
    await b.inbox.expect(chat_from(alice, "just from this phone"), "the message")
    await barrier(b, bob, alice, phone, desk)
    assert desk.inbox.matching(sent_carbon("just from this phone", bob.jid)) == []
