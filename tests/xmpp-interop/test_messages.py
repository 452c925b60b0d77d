"""One-to-one chat between slixmpp clients: messages both ways, offline
delivery (XEP-0160 with XEP-0203 delay), XEP-0184 receipts, XEP-0333
markers, XEP-0085 chat states and XEP-0308 corrections."""

from datetime import datetime, timedelta, timezone

import pytest

from harness import (
    NS_CHATSTATES, NS_CORRECT, NS_DELAY, NS_MARKERS, NS_RECEIPTS, NS_SID, attr, bare, body,
    barrier, chat_from, child, new_user, not_barrier, payload_from, stanza_id,
)


async def test_messages_both_ways(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")

    sent = a.chat(bob, "hello bob")
    got = await b.inbox.expect(chat_from(alice, "hello bob"), "alice's message")
    assert attr(got, "type") == "chat"
    assert bare(attr(got, "from")) == alice.jid
    assert attr(got, "to") == f"{bob.jid}/laptop"
    # The sender's id survives (it is what receipts and corrections quote).
    assert attr(got, "id") == sent["id"]
    # XEP-0359: the archive's id, stamped by the recipient's account.
    sid = child(got, "stanza-id", NS_SID)
    assert sid is not None and sid.get("by") == bob.jid and sid.get("id")

    b.chat(alice, "hi alice, ünïcödé ✓ <&>")
    await a.inbox.expect(chat_from(bob, "hi alice, ünïcödé ✓ <&>"), "bob's reply")


async def test_message_to_an_unknown_account_bounces(server, clients):
    alice = new_user(server, "lonely")
    a = await clients.connect(alice, "x")
    sent = a.chat(f"nobody-{alice.username}@localhost", "anyone?")
    err = await a.inbox.expect(
        lambda s: attr(s, "type") == "error" and attr(s, "id") == sent["id"], "an error bounce")
    # RFC 6121 8.5.2.2.1: service-unavailable for a message to no account.
    assert err["error"]["condition"] == "service-unavailable"


async def test_offline_messages_arrive_with_delay_on_log_in(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    before = datetime.now(timezone.utc) - timedelta(seconds=5)
    first = a.chat(bob, "are you there?")
    second = a.chat(bob, "call me when you are back")
    # The server has both (it answers a ping only after handling them).
    await a.round_trip()

    b = await clients.connect(bob, "laptop")
    got = await b.inbox.expect_n(chat_from(alice), 2, "offline message")
    assert [body(m) for m in got] == ["are you there?", "call me when you are back"]
    assert [attr(m, "id") for m in got] == [first["id"], second["id"]]
    for m in got:
        delay = child(m, "delay", NS_DELAY)
        assert delay is not None, "an offline message carries its original time (XEP-0203)"
        stamp = datetime.fromisoformat(delay.get("stamp").replace("Z", "+00:00"))
        assert before <= stamp <= datetime.now(timezone.utc) + timedelta(seconds=5)
    # Delivered now: alice hears so (XEP-0184), and the next log-in does
    # not get them again.
    for m in (first, second):
        await a.inbox.expect(payload_from(bob, "received", NS_RECEIPTS, m["id"]),
                             f"receipt for {m['id']}")
    await b.close()
    b2 = await clients.connect(bob, "tablet")
    await b2.round_trip()
    assert b2.inbox.matching(chat_from(alice)) == [], "offline messages came twice"


async def test_receipts_both_ways(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")

    m1 = a.chat(bob, "receipt please")
    got = await b.inbox.expect(chat_from(alice, "receipt please"), "message")
    assert child(got, "request", NS_RECEIPTS) is not None, "the server asks for receipts"
    # slixmpp acknowledges by itself; alice gets a receipt naming her id.
    await a.inbox.expect(payload_from(bob, "received", NS_RECEIPTS, m1["id"]), "bob's receipt")

    m2 = b.chat(alice, "and one for me")
    await a.inbox.expect(chat_from(bob, "and one for me"), "message")
    await b.inbox.expect(payload_from(alice, "received", NS_RECEIPTS, m2["id"]), "alice's receipt")
    # One receipt per message, though both the server (on delivery) and
    # slixmpp (on receipt) produce one.
    await barrier(b, bob, alice, a)
    await barrier(a, alice, bob, b)
    assert len(a.inbox.matching(payload_from(bob, "received", NS_RECEIPTS, m1["id"]))) == 1
    assert len(b.inbox.matching(payload_from(alice, "received", NS_RECEIPTS, m2["id"]))) == 1


async def test_displayed_markers_both_ways(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")

    m1 = a.chat(bob, "did you read this?")
    got = await b.inbox.expect(chat_from(alice, "did you read this?"), "message")
    assert child(got, "markable", NS_MARKERS) is not None
    b.plugin["xep_0333"].send_marker(alice.jid, attr(got, "id"), "displayed", mtype="chat")
    await a.inbox.expect(payload_from(bob, "displayed", NS_MARKERS, m1["id"]), "displayed marker")

    m2 = b.chat(alice, "yes, and you?")
    got = await a.inbox.expect(chat_from(bob, "yes, and you?"), "message")
    a.plugin["xep_0333"].send_marker(bob.jid, attr(got, "id"), "displayed", mtype="chat")
    await b.inbox.expect(payload_from(alice, "displayed", NS_MARKERS, m2["id"]), "displayed marker")
    # Reading is what REST reports too.
    conv = alice.direct(bob)
    members = {m["username"]: m for m in alice.api("GET", f"/api/v1/conversations/{conv}")["members"]}
    assert members[alice.username]["read_seq"] == 2
    assert members[bob.username]["read_seq"] == 2


async def test_displayed_marker_quoting_the_stanza_id(server, clients):
    """Some clients quote the XEP-0359 stanza id in markers instead of the
    sender's id; Natter accepts both."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    m = a.chat(bob, "by stanza id")
    got = await b.inbox.expect(chat_from(alice, "by stanza id"), "message")
    b.plugin["xep_0333"].send_marker(alice.jid, stanza_id(got), "displayed", mtype="chat")
    await a.inbox.expect(payload_from(bob, "displayed", NS_MARKERS, m["id"]), "displayed marker")


async def test_chat_states(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")

    msg = a.make_message(mto=bob.jid, mtype="chat")
    msg["chat_state"] = "composing"
    msg.send()
    await b.inbox.expect(payload_from(alice, "composing", NS_CHATSTATES), "composing")

    mark = b.inbox.mark()
    msg = a.make_message(mto=bob.jid, mtype="chat")
    msg["chat_state"] = "paused"
    msg.send()
    # Natter's typing is on or off: paused ends it, and is shown as active.
    await b.inbox.expect(
        lambda s: payload_from(alice, "active", NS_CHATSTATES)(s)
        or payload_from(alice, "paused", NS_CHATSTATES)(s), "end of typing", since=mark)

    msg = b.make_message(mto=alice.jid, mtype="chat")
    msg["chat_state"] = "composing"
    msg.send()
    await a.inbox.expect(payload_from(bob, "composing", NS_CHATSTATES), "composing")
    # A chat state alone is no message: nothing with a body arrived.
    await barrier(b, bob, alice, a)
    assert a.inbox.matching(not_barrier(chat_from(bob))) == []
    assert alice.history(alice.direct(bob))[:-1] == []


async def test_last_message_correction(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")

    original = a.chat(bob, "helo")
    await b.inbox.expect(chat_from(alice, "helo"), "original")
    mark = b.inbox.mark()
    fix = a.plugin["xep_0308"].build_correction(original["id"], bob.jid, mbody="hello")
    fix.send()
    got = await b.inbox.expect(
        lambda s: chat_from(alice, "hello")(s) and child(s, "replace", NS_CORRECT) is not None,
        "the correction", since=mark)
    assert child(got, "replace", NS_CORRECT).get("id") == original["id"]
    # The history holds one message, corrected.
    history = alice.history(alice.direct(bob))
    assert [m["body"] for m in history] == ["hello"]
    assert history[0]["edited_at"] is not None


async def test_a_long_backlog_delivers_the_newest_offline_messages(server, clients):
    """Past the offline cap (100 per conversation) the older messages stay
    in the archive; the newest ones are what a returning user must see."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    texts = [f"backlog {i:03d}" for i in range(120)]
    for t in texts:
        a.chat(bob, t)
    await a.round_trip()
    assert len(alice.history(alice.direct(bob), limit=100)) == 100

    b = await clients.connect(bob, "laptop")
    await b.inbox.expect(chat_from(alice, texts[-1]), "the newest message")
    await barrier(a, alice, bob, b)
    got = [m["body"] for m in b.inbox.matching(not_barrier(chat_from(alice)))]
    assert got == texts[-len(got):], "the newest messages, in order"
    assert len(got) >= 100
