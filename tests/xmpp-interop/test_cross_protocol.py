"""An XMPP user (slixmpp) and a REST/JSON-stream user (urllib and
websockets, docs/protocol.md) talk to each other: messages, receipts,
read markers, typing and presence in both directions, and one history
with the same ids on both sides (XEP-0359 stanza id == REST message id)."""

import asyncio
import uuid

from slixmpp import JID

from harness import (
    NS_CARBONS, NS_CHATSTATES, NS_FORWARD, NS_MARKERS, NS_RECEIPTS, NS_SID, attr, barrier,
    befriend, chat_from, child, new_user, payload_from, presence_from, stanza_id,
)


def created(conv: str, sender, body: str | None = None):
    """A message.created event of `sender`'s message (with this body)."""
    def pred(f: dict) -> bool:
        if f.get("type") != "event" or f.get("event") != "message.created":
            return False
        m = f["data"]["message"]
        return (f["data"]["conversation_id"] == conv and m["sender"] == sender.username
                and (body is None or m["body"] == body))
    return pred


async def test_messages_both_ways_and_one_history(server, clients):
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    rs = await clients.stream(rita)
    x = await clients.connect(xavier, "phone")
    conv = rita.direct(xavier)

    # REST/JSON → XMPP
    sent = await rs.command("send", conversation_id=conv, client_id="r-1", body="hi from the web")
    m1 = sent["message"]
    got = await x.inbox.expect(chat_from(rita, "hi from the web"), "rita's message")
    assert stanza_id(got) == m1["id"], "the stanza id is the REST message id"
    assert child(got, "stanza-id", NS_SID).get("by") == xavier.jid
    assert attr(got, "id") == "r-1"
    assert child(got, "origin-id", NS_SID).get("id") == "r-1"

    posted = rita.api("POST", f"/api/v1/conversations/{conv}/messages",
                      {"client_id": "r-2", "body": "and one over plain REST"})["message"]
    got2 = await x.inbox.expect(chat_from(rita, "and one over plain REST"), "rita's REST message")
    assert stanza_id(got2) == posted["id"]

    # XMPP → REST/JSON
    mark = rs.frames.mark()
    reply = x.chat(rita, "hello from xmpp")
    ev = await rs.frames.expect(created(conv, xavier), "message.created", since=mark)
    msg = ev["data"]["message"]
    assert msg["sender"] == xavier.username
    assert msg["body"] == "hello from xmpp"
    assert msg["client_id"] == reply["id"], "the XMPP id is the REST client_id"
    assert msg["seq"] == 3

    # One history, the same ids, in the same order.
    rest = rita.history(conv)
    assert [(m["sender"], m["body"]) for m in rest] == [
        (rita.username, "hi from the web"),
        (rita.username, "and one over plain REST"),
        (xavier.username, "hello from xmpp"),
    ]
    iq = await x.plugin["xep_0313"].retrieve(with_jid=JID(rita.jid), rsm={"max": 50})
    archived = [(m["mam_result"]["id"], m["mam_result"]["forwarded"]["stanza"]) for m in iq["mam"]["results"]]
    assert [a[0] for a in archived] == [m["id"] for m in rest]
    assert [a[1]["body"] for a in archived] == [m["body"] for m in rest]
    assert [a[1]["from"].bare for a in archived] == [f"{m['sender']}@localhost" for m in rest]
    # Xavier's REST view is the same history.
    assert [m["id"] for m in xavier.history(conv)] == [m["id"] for m in rest]


async def test_receipts_and_read_markers_both_ways(server, clients):
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    rs = await clients.stream(rita)
    x = await clients.connect(xavier, "phone")
    conv = rita.direct(xavier)

    # Rita's message reaches xavier's client: rita's stream hears it was
    # delivered.
    await rs.command("send", conversation_id=conv, client_id="r-1", body="one")
    got = await x.inbox.expect(chat_from(rita, "one"), "rita's message")
    await rs.frames.expect(rs.event("receipt.delivered", conversation_id=conv, user=xavier.username,
                                    seq=1), "receipt.delivered from xavier")
    # Xavier displays it (XEP-0333): rita's stream hears it was read.
    x.plugin["xep_0333"].send_marker(rita.jid, attr(got, "id"), "displayed", mtype="chat")
    await rs.frames.expect(rs.event("receipt.read", conversation_id=conv, user=xavier.username,
                                    seq=1), "receipt.read from xavier")

    # Xavier's message reaches rita's stream: xavier gets a receipt …
    sent = x.chat(rita, "two")
    ev = await rs.frames.expect(created(conv, xavier, "two"), "message.created")
    await x.inbox.expect(payload_from(rita, "received", NS_RECEIPTS, sent["id"]),
                         "XEP-0184 receipt from rita")
    # … and when rita reads it, a displayed marker naming his id.
    await rs.command("read", conversation_id=conv, seq=ev["data"]["message"]["seq"])
    await x.inbox.expect(payload_from(rita, "displayed", NS_MARKERS, sent["id"]),
                         "displayed marker from rita")

    members = {m["username"]: m for m in rita.api("GET", f"/api/v1/conversations/{conv}")["members"]}
    assert members[xavier.username]["delivered_seq"] >= 1
    assert members[rita.username]["read_seq"] == 2


async def test_typing_and_chat_states_both_ways(server, clients):
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    rs = await clients.stream(rita)
    x = await clients.connect(xavier, "phone")
    conv = rita.direct(xavier)

    await rs.command("typing", conversation_id=conv, active=True)
    await x.inbox.expect(payload_from(rita, "composing", NS_CHATSTATES), "composing from rita")
    mark = x.inbox.mark()
    await rs.command("typing", conversation_id=conv, active=False)
    await x.inbox.expect(payload_from(rita, "active", NS_CHATSTATES), "active from rita", since=mark)

    msg = x.make_message(mto=rita.jid, mtype="chat")
    msg["chat_state"] = "composing"
    msg.send()
    await rs.frames.expect(rs.event("typing", conversation_id=conv, user=xavier.username, active=True),
                           "typing from xavier")
    mark = rs.frames.mark()
    msg = x.make_message(mto=rita.jid, mtype="chat")
    msg["chat_state"] = "paused"
    msg.send()
    await rs.frames.expect(rs.event("typing", conversation_id=conv, user=xavier.username, active=False),
                           "typing stopped", since=mark)


async def test_presence_both_ways(server, clients):
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    befriend(rita, xavier)
    rs = await clients.stream(rita)
    mark = rs.frames.mark()
    x = await clients.connect(xavier, "phone")
    # Each sees the other online.
    await x.inbox.expect(presence_from(rita, "available", show=""), "rita online")
    await rs.frames.expect(rs.event("presence", user=xavier.username, status="online"),
                           "xavier online", since=mark)

    mark = rs.frames.mark()
    await x.go_available(show="away")
    await rs.frames.expect(rs.event("presence", user=xavier.username, status="away"),
                           "xavier away", since=mark)

    xmark = x.inbox.mark()
    await rs.command("presence", status="away")
    await x.inbox.expect(presence_from(rita, "available", show="away"), "rita away", since=xmark)

    mark = rs.frames.mark()
    x.send_presence(ptype="unavailable")
    await rs.frames.expect(rs.event("presence", user=xavier.username, status="offline"),
                           "xavier offline", since=mark)

    await x.go_available()
    xmark = x.inbox.mark()
    await rs.close()
    await x.inbox.expect(presence_from(rita, "unavailable"), "rita offline", since=xmark)


async def test_edits_and_deletes_reach_the_other_side(server, clients):
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    rs = await clients.stream(rita)
    x = await clients.connect(xavier, "phone")
    conv = rita.direct(xavier)
    client_id = f"r-{uuid.uuid4().hex[:6]}"
    sent = (await rs.command("send", conversation_id=conv, client_id=client_id, body="tpyo"))["message"]
    await x.inbox.expect(chat_from(rita, "tpyo"), "the original")

    mark = x.inbox.mark()
    rita.api("PATCH", f"/api/v1/conversations/{conv}/messages/{sent['seq']}", {"body": "typo"})
    got = await x.inbox.expect(chat_from(rita, "typo"), "the correction", since=mark)
    replace = child(got, "replace", "urn:xmpp:message-correct:0")
    assert replace is not None and replace.get("id") == client_id

    mark = x.inbox.mark()
    rita.api("DELETE", f"/api/v1/conversations/{conv}/messages/{sent['seq']}")
    await x.inbox.expect(payload_from(rita, "retract", "urn:xmpp:message-retract:1", client_id),
                         "the retraction", since=mark)

    # And from XMPP: a correction shows up as message.edited.
    orig = x.chat(rita, "helo")
    await rs.frames.expect(created(conv, xavier, "helo"), "message.created")
    mark = rs.frames.mark()
    x.plugin["xep_0308"].build_correction(orig["id"], JID(rita.jid), mbody="hello").send()
    ev = await rs.frames.expect(rs.event("message.edited", conversation_id=conv), "message.edited",
                                since=mark)
    assert ev["data"]["message"]["body"] == "hello"
    assert ev["data"]["message"]["client_id"] == orig["id"]


async def test_one_account_on_both_protocols(server, clients):
    """A user with a web session and an XMPP client: what the web sends
    reaches the XMPP client as a XEP-0280 sent carbon, what the XMPP
    client sends shows up on the web stream, and presence is the user's
    (online while any of the two is)."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    befriend(alice, bob)
    web = await clients.stream(alice)
    phone = await clients.connect(alice, "phone")
    await phone.plugin["xep_0280"].enable()
    b = await clients.connect(bob, "laptop")
    conv = alice.direct(bob)

    await web.command("send", conversation_id=conv, client_id="w-1", body="from the browser")
    await b.inbox.expect(chat_from(alice, "from the browser"), "the web message")
    carbon = await phone.inbox.expect(
        lambda s: child(s, "sent", NS_CARBONS) is not None and "from the browser" in str(s),
        "a sent carbon of the web message")
    inner = child(carbon, "sent", NS_CARBONS).find(f"{{{NS_FORWARD}}}forwarded/{{jabber:client}}message")
    assert inner.get("id") == "w-1" and inner.get("to").split("/")[0] == bob.jid

    mark = web.frames.mark()
    phone.chat(bob, "from the phone")
    await web.frames.expect(created(conv, alice, "from the phone"), "the phone's message on the web",
                            since=mark)

    # The phone goes away, the browser is still online: alice is online.
    mark = b.inbox.mark()
    await phone.go_available(show="away")
    await barrier(phone, alice, bob, b)
    assert b.inbox.matching(presence_from(alice, "available", show="away"), since=mark) == []
    # The browser leaves too: now alice is away.
    await web.close()
    await b.inbox.expect(presence_from(alice, "available", show="away"), "alice away", since=mark)


async def test_long_polling_user_and_xmpp_user(server, clients):
    """The JSON API's other transport (GET/POST /api/v1/events) against
    XMPP: a message each way, and the delivered receipt a returned poll
    produces."""
    rita, xavier = new_user(server, "rita"), new_user(server, "xavier")
    x = await clients.connect(xavier, "phone")
    conv = rita.direct(xavier)
    cursor = rita.api("GET", "/api/v1/events?timeout=0")["cursor"]

    sent = x.chat(rita, "are you polling?")
    loop = asyncio.get_running_loop()
    events = []
    deadline = loop.time() + 10
    while not any(e.get("event") == "message.created" for e in events):
        assert loop.time() < deadline, f"no message.created by long-poll; got {events}"
        page = await loop.run_in_executor(
            None, lambda: rita.api("GET", f"/api/v1/events?cursor={cursor}&timeout=5"))
        events += page["events"]
        cursor = page["cursor"]
    created = next(e for e in events if e.get("event") == "message.created")
    assert created["data"]["message"]["body"] == "are you polling?"
    assert created["data"]["message"]["client_id"] == sent["id"]
    # The poll handed it to rita's device: xavier gets a receipt.
    await x.inbox.expect(payload_from(rita, "received", NS_RECEIPTS, sent["id"]), "a receipt")

    reply = rita.api("POST", "/api/v1/events",
                     {"type": "send", "ref": "1", "conversation_id": conv, "client_id": "lp-1",
                      "body": "yes, by long-poll"})
    assert reply["ok"], reply
    got = await x.inbox.expect(chat_from(rita, "yes, by long-poll"), "rita's reply")
    assert stanza_id(got) == reply["data"]["message"]["id"]
