"""Corners where clients and the core meet: JID case, availability,
groups (not offered over XMPP yet), size limits and client state
indication (XEP-0352)."""

import pytest

from harness import (
    NS_CHATSTATES, NS_DELAY, Client, barrier, chat_from, child, new_user, payload_from,
)


async def test_jids_are_case_insensitive(server, clients):
    """RFC 7622 3.3: the localpart is case-folded, the domain too."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    shouting = Client(server, f"{alice.username.upper()}@LOCALHOST/phone", alice.password)
    clients.open.append(shouting)
    await shouting.start()
    assert shouting.boundjid.bare == alice.jid
    b = await clients.connect(bob, "laptop")
    shouting.chat(f"{bob.username.upper()}@LocalHost", "loud hello")
    await b.inbox.expect(chat_from(alice, "loud hello"), "the message")


async def test_a_resource_that_is_not_available_gets_messages_once_it_is(server, clients):
    """RFC 6121 8.5.2.1.1: messages to the bare JID go to available
    resources; a session without initial presence gets them when it
    becomes available."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone", presence=False)
    b = await clients.connect(bob, "laptop")
    b.chat(alice, "are you available?")
    await b.round_trip()
    await a.go_available()
    got = await a.inbox.expect(chat_from(bob, "are you available?"), "the message")
    assert child(got, "delay", NS_DELAY) is not None
    assert len(a.inbox.matching(chat_from(bob))) == 1


async def test_group_messages_do_not_leak_into_one_to_one_chats(server, clients):
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    x = await clients.connect(xavier, "phone")
    group = rita.api("POST", "/api/v1/conversations",
                     {"kind": "group", "title": "Team", "members": [xavier.username]})["id"]
    rita.api("POST", f"/api/v1/conversations/{group}/messages",
             {"client_id": "g-1", "body": "to the whole team"})
    # A direct message after it: when it has arrived, the group message
    # would have too.
    direct = rita.direct(xavier)
    rita.api("POST", f"/api/v1/conversations/{direct}/messages",
             {"client_id": "d-1", "body": "just to you"})
    await x.inbox.expect(chat_from(rita, "just to you"), "the direct message")
    assert [m["body"] for m in x.inbox.matching(chat_from(rita))] == ["just to you"]
    # Nor does it show in the archive.
    iq = await x.plugin["xep_0313"].retrieve(rsm={"max": 50})
    assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in iq["mam"]["results"]] == ["just to you"]


async def test_a_body_over_the_limit_is_refused_with_an_error(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    big = "x" * (65536 + 1)
    sent = a.chat(bob, big)
    err = await a.inbox.expect(
        lambda s: s["type"] == "error" and s["id"] == sent["id"], "an error for the big message")
    assert err["error"]["type"] == "modify"
    # The stream survives it.
    await a.round_trip()
    assert alice.history(alice.direct(bob)) == []


async def test_inactive_clients_get_messages_but_not_chat_states(server, clients):
    """XEP-0352: while inactive, the server may hold back unimportant
    stanzas such as chat states; messages still come."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    a.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
    await a.round_trip()
    typing = b.make_message(mto=alice.jid, mtype="chat")
    typing["chat_state"] = "composing"
    typing.send()
    await barrier(b, bob, alice, a)
    assert a.inbox.matching(payload_from(bob, "composing", NS_CHATSTATES)) == []
    a.send_raw("<active xmlns='urn:xmpp:csi:0'/>")
    await a.round_trip()
    mark = a.inbox.mark()
    typing = b.make_message(mto=alice.jid, mtype="chat")
    typing["chat_state"] = "composing"
    typing.send()
    await a.inbox.expect(payload_from(bob, "composing", NS_CHATSTATES), "composing once active",
                         since=mark)


async def test_many_messages_arrive_in_order(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    texts = [f"burst {i:03d}" for i in range(150)]
    for t in texts:
        a.chat(bob, t)
    got = await b.inbox.expect_n(chat_from(alice), len(texts), "the burst", timeout=30)
    assert [m["body"] for m in got] == texts
    assert [m["body"] for m in alice.history(alice.direct(bob), limit=100)] == texts[-100:]


async def test_a_stanza_over_the_advertised_limit_ends_the_stream(server, clients):
    """XEP-0478: the server advertises max-bytes (slixmpp reads it) and a
    larger stanza ends the stream with <policy-violation/>."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    limit = a.limits.max_bytes
    assert limit == 262144
    mark = a.events.mark()
    a.send_raw(f"<message xmlns='jabber:client' to='{bob.jid}' type='chat'>"
               f"<body>{'y' * (limit + 1)}</body></message>")
    _, error = await a.events.expect(lambda e: e[0] == "stream_error", "a stream error", since=mark)
    assert error["condition"] == "policy-violation"
    await a.events.expect(lambda e: e[0] == "disconnected", "the end of the stream", since=mark)


@pytest.mark.xfail(strict=True, reason="interop bug B9: a message to one's own bare JID "
                   "bounces with service-unavailable")
async def test_a_message_to_ones_own_bare_jid_reaches_ones_resources(server, clients):
    """RFC 6121 8.5.2 treats the user's own bare JID like any local
    account: a message to it goes to the user's available resources
    (clients use it for "note to self")."""
    alice = new_user(server, "alice")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    sent = phone.chat(alice, "note to self")
    await desk.inbox.expect(chat_from(alice, "note to self"), "the note on the other device")
    await phone.round_trip()
    assert phone.inbox.matching(lambda s: s["type"] == "error" and s["id"] == sent["id"]) == []
