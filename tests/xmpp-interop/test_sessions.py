"""Several resources of one account, routing between clients, service
discovery, retraction, archive time bounds, and sessions ended from the
REST side."""

import asyncio
from datetime import datetime, timedelta, timezone

from slixmpp import JID

from harness import (
    DOMAIN, NS_MAM, Client, barrier, befriend, chat_from, new_user, presence_from,
)


async def test_presence_stays_while_any_resource_is_available(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    befriend(alice, bob)
    b = await clients.connect(bob, "laptop")
    phone = await clients.connect(alice, "phone")
    desk = await clients.connect(alice, "desk")
    await b.inbox.expect(presence_from(alice, "available"), "alice available")

    phone.send_presence(ptype="unavailable")
    await phone.round_trip()
    # The phone went away but the desk is still there: bob must not see
    # alice go offline. (A message to bob after the presence is a barrier.)
    await barrier(desk, alice, bob, b)
    assert b.inbox.matching(presence_from(alice, "unavailable")) == []

    mark = b.inbox.mark()
    await desk.close()
    await phone.close()
    await b.inbox.expect(presence_from(alice, "unavailable"), "alice offline", since=mark)


async def test_two_clients_asking_for_the_same_resource_both_get_bound(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    one = await clients.connect(alice, "same")
    two = await clients.connect(alice, "same")
    assert str(one.boundjid) != str(two.boundjid)
    assert one.boundjid.bare == two.boundjid.bare == alice.jid
    b = await clients.connect(bob, "laptop")
    b.chat(alice, "to both")
    await one.inbox.expect(chat_from(bob, "to both"), "message on the first")
    await two.inbox.expect(chat_from(bob, "to both"), "message on the second")


async def test_iq_between_clients_is_routed_to_the_full_jid(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    # slixmpp answers XEP-0199 pings and XEP-0030 disco#info itself.
    await a.plugin["xep_0199"].send_ping(str(b.boundjid), timeout=10)
    info = await a.plugin["xep_0030"].get_info(jid=b.boundjid, timeout=10)
    assert "urn:xmpp:ping" in info["disco_info"]["features"]


async def test_server_and_account_discovery(server, clients):
    alice = new_user(server, "alice")
    a = await clients.connect(alice, "phone")
    info = await a.plugin["xep_0030"].get_info(jid=DOMAIN, timeout=10)
    features = set(info["disco_info"]["features"])
    for f in ("urn:xmpp:carbons:2", "urn:xmpp:receipts", "urn:xmpp:chat-markers:0",
              "http://jabber.org/protocol/chatstates", "jabber:iq:roster", "vcard-temp",
              "urn:xmpp:ping"):
        assert f in features, f
    # XEP-0313 section 7: MAM is announced on the account.
    info = await a.plugin["xep_0030"].get_info(jid=alice.jid, timeout=10)
    assert NS_MAM in set(info["disco_info"]["features"])


async def test_retraction_deletes_for_everyone(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    sent = a.chat(bob, "oops, wrong chat")
    await b.inbox.expect(chat_from(alice, "oops, wrong chat"), "the message")
    mark = b.inbox.mark()
    a.send_raw_message(bob, f"<retract xmlns='urn:xmpp:message-retract:1' id='{sent['id']}'/>"
                            "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:message-retract:1'/>"
                            "<body>retracted</body><store xmlns='urn:xmpp:hints'/>")
    got = await b.inbox.expect(
        lambda s: s.xml.find("{urn:xmpp:message-retract:1}retract") is not None, "the retraction",
        since=mark)
    assert got.xml.find("{urn:xmpp:message-retract:1}retract").get("id") == sent["id"]
    history = bob.history(bob.direct(alice))
    assert len(history) == 1 and history[0]["body"] is None and history[0]["deleted_at"]


async def test_archive_time_bounds(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    for text in ("old 1", "old 2"):
        a.chat(bob, text)
        await b.inbox.expect(chat_from(alice, text), text)
    history = alice.history(alice.direct(bob))
    boundary = datetime.fromisoformat(history[-1]["sent_at"].replace("Z", "+00:00")) + timedelta(milliseconds=1)
    # The next messages are stored after the boundary (send times grow).
    while datetime.now(timezone.utc) <= boundary:
        await asyncio.sleep(0.01)
    for text in ("new 1", "new 2"):
        a.chat(bob, text)
        await b.inbox.expect(chat_from(alice, text), text)
    mam = a.plugin["xep_0313"]
    iq = await mam.retrieve(with_jid=JID(bob.jid), start=boundary)
    assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in iq["mam"]["results"]] == ["new 1", "new 2"]
    iq = await mam.retrieve(with_jid=JID(bob.jid), end=boundary)
    assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in iq["mam"]["results"]] == ["old 1", "old 2"]


async def test_revoking_the_session_over_rest_ends_the_stream(server, clients):
    alice = new_user(server, "alice")
    a = await clients.connect(alice, "phone")
    sessions = alice.api("GET", "/api/v1/sessions")["sessions"]
    xmpp_sessions = [s for s in sessions if not s.get("current")]
    assert len(xmpp_sessions) == 1, sessions
    mark = a.events.mark()
    alice.api("DELETE", f"/api/v1/sessions/{xmpp_sessions[0]['id']}")
    name, _ = await a.events.expect(lambda e: e[0] in ("stream_error", "disconnected"),
                                    "the end of the stream", since=mark)
    await a.events.expect(lambda e: e[0] == "disconnected", "disconnection", since=mark)


async def test_messages_to_a_full_jid_go_to_that_resource_and_are_kept(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    phone = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    b.chat(f"{alice.jid}/phone", "just for your phone")
    await phone.inbox.expect(chat_from(bob, "just for your phone"), "the message")
    assert [m["body"] for m in bob.history(bob.direct(alice))] == ["just for your phone"]


async def test_a_password_change_ends_xmpp_sessions_and_takes_effect(server, clients):
    alice = new_user(server, "alice")
    a = await clients.connect(alice, "phone", stream_management=True)
    sm_id, handled = a.plugin["xep_0198"].sm_id, a.plugin["xep_0198"].handled
    mark = a.events.mark()
    alice.api("PUT", "/api/v1/me/password",
              {"current_password": alice.password, "new_password": "a brand new secret"})
    _, error = await a.events.expect(lambda e: e[0] == "stream_error", "a stream error", since=mark)
    assert error["condition"] == "not-authorized"
    await a.events.expect(lambda e: e[0] == "disconnected", "the end of the stream", since=mark)

    # The revoked session cannot be resumed, even with the new password.
    again = Client(server, f"{alice.jid}/phone", "a brand new secret", stream_management=True)
    clients.open.append(again)
    again.plugin["xep_0198"].sm_id, again.plugin["xep_0198"].handled = sm_id, handled
    again.connect(*again.address)
    name, _ = await again.events.expect(
        lambda e: e[0] in ("session_resumed", "session_start", "failed_auth"), "a session")
    assert name == "session_start"
    assert again.events.matching(lambda e: e[0] == "sm_failed")

    # The old password no longer works over XMPP; the new one does.
    old = Client(server, f"{alice.jid}/old", alice.password, mech="SCRAM-SHA-256")
    clients.open.append(old)
    old.connect(*old.address)
    name, _ = await old.events.expect(lambda e: e[0] in ("failed_auth", "session_start"), "outcome")
    assert name == "failed_auth"
    alice.password = "a brand new secret"
    await clients.connect(alice, "new")
