"""XEP-0198 stream management with slixmpp: acknowledgements both ways,
and resumption after the TCP connection is cut, with nothing lost and
nothing twice."""

from harness import NS_SM, attr, chat_from, eventually, new_user, tag


def is_ack(h: int | None = None):
    return lambda s: tag(s) == f"{{{NS_SM}}}a" and (h is None or int(attr(s, "h")) == h)


async def test_acknowledgements_both_ways(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone", stream_management=True)
    b = await clients.connect(bob, "laptop")
    sm = a.plugin["xep_0198"]
    assert sm.sm_id, "the server offered resumption"

    for i in range(12):
        a.chat(bob, f"counted {i}")
    await b.inbox.expect_n(chat_from(alice), 12, "alice's messages")
    # The server has handled every stanza alice sent since enabling.
    sm.request_ack()
    await a.inbox.expect(is_ack(sm.seq), f"<a h='{sm.seq}'/>")
    assert len(sm.unacked_queue) == 0

    # The server asks alice to acknowledge what it sends her (it requests
    # at least every 5 stanzas), and slixmpp's answers keep it in step.
    mark = a.inbox.mark()
    for i in range(7):
        b.chat(alice, f"to be acked {i}")
    await a.inbox.expect_n(chat_from(bob), 7, "bob's messages", since=mark)
    await a.inbox.expect(lambda s: tag(s) == f"{{{NS_SM}}}r", "an ack request from the server",
                         since=mark)


async def resumption(server, clients, server_notices: bool) -> None:
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    proxy = await clients.proxy()
    a = await clients.connect(alice, "phone", stream_management=True, via=proxy)
    b = await clients.connect(bob, "laptop")
    full = str(a.boundjid)

    b.chat(alice, "before the cut")
    await a.inbox.expect(chat_from(bob, "before the cut"), "the first message")
    a.chat(bob, "from alice before the cut")
    await b.inbox.expect(chat_from(alice, "from alice before the cut"), "alice's message")

    emark = a.events.mark()
    proxy.cut(server_notices=server_notices)
    await a.events.expect(lambda e: e[0] == "disconnected", "disconnection", since=emark)
    # While alice is away: bob writes, and alice's client queues a message
    # that cannot leave yet.
    b.chat(alice, "while you were cut off 1")
    b.chat(alice, "while you were cut off 2")
    await b.round_trip()
    queued = a.chat(bob, "typed while offline")

    mark, emark = a.inbox.mark(), a.events.mark()
    a.connect(*a.address)
    name, _ = await a.events.expect(
        lambda e: e[0] in ("session_resumed", "session_start", "sm_failed"), "resumption",
        since=emark)
    assert name == "session_resumed", f"the session was not resumed: {name}"
    assert str(a.boundjid) == full
    missed = await a.inbox.expect_n(chat_from(bob), 2, "messages sent during the cut", since=mark)
    assert sorted(m["body"] for m in missed) == ["while you were cut off 1", "while you were cut off 2"]
    await b.inbox.expect(chat_from(alice, "typed while offline"), "alice's queued message")

    # The counts agree after resumption: the server has handled exactly
    # what slixmpp sent (the resent message included).
    sm = a.plugin["xep_0198"]
    sm.request_ack()
    await a.inbox.expect(is_ack(sm.seq), f"<a h='{sm.seq}'/> after resumption", since=mark)

    # Nothing twice: one more exchange, then count.
    b.chat(alice, "after")
    await a.inbox.expect(chat_from(bob, "after"), "the message after")
    a.chat(bob, "after too")
    await b.inbox.expect(chat_from(alice, "after too"), "alice's message after")
    bodies = [m["body"] for m in a.inbox.matching(chat_from(bob))]
    assert sorted(bodies) == sorted(["before the cut", "while you were cut off 1",
                                     "while you were cut off 2", "after"]), bodies
    bodies = [m["body"] for m in b.inbox.matching(chat_from(alice))]
    assert sorted(bodies) == sorted(["from alice before the cut", "typed while offline",
                                     "after too"]), bodies
    assert queued["id"]
    # The shared history has each message once.
    history = [m["body"] for m in alice.history(alice.direct(bob))]
    assert sorted(history) == sorted(["before the cut", "from alice before the cut",
                                      "while you were cut off 1", "while you were cut off 2",
                                      "typed while offline", "after", "after too"]), history


async def test_resumption_after_the_connection_is_cut(server, clients):
    await resumption(server, clients, server_notices=True)


async def test_resumption_before_the_server_notices_the_cut(server, clients):
    """The old connection is still open on the server's side (no FIN ever
    reached it) when the client comes back: XEP-0198 lets the new stream
    take the session over."""
    await resumption(server, clients, server_notices=False)


async def test_resuming_an_unknown_session_fails_cleanly(server, clients):
    alice = new_user(server, "alice")
    proxy = await clients.proxy()
    a = await clients.connect(alice, "phone", stream_management=True, via=proxy)
    sm = a.plugin["xep_0198"]
    proxy.cut()
    await a.events.expect(lambda e: e[0] == "disconnected", "disconnection")
    sm.sm_id = "no-such-session"
    mark = a.events.mark()
    a.connect(*a.address)
    # The server answers <failed/>; slixmpp then binds a new session.
    await a.events.expect(lambda e: e[0] == "sm_failed", "<failed/>", since=mark)
    await a.events.expect(lambda e: e[0] == "session_start", "a new session", since=mark)


async def test_many_messages_during_a_cut_arrive_once_in_order(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    proxy = await clients.proxy()
    a = await clients.connect(alice, "phone", stream_management=True, via=proxy)
    b = await clients.connect(bob, "laptop")
    emark = a.events.mark()
    proxy.cut(server_notices=False)
    await a.events.expect(lambda e: e[0] == "disconnected", "disconnection", since=emark)
    texts = [f"queued {i:02d}" for i in range(40)]
    for t in texts:
        b.chat(alice, t)
    await b.round_trip()
    mark, emark = a.inbox.mark(), a.events.mark()
    a.connect(*a.address)
    name, _ = await a.events.expect(
        lambda e: e[0] in ("session_resumed", "session_start", "sm_failed"), "resumption",
        since=emark)
    assert name == "session_resumed"
    got = await a.inbox.expect_n(chat_from(bob), len(texts), "queued messages", since=mark)
    assert [m["body"] for m in got] == texts
    b.chat(alice, "done")
    await a.inbox.expect(chat_from(bob, "done"), "the last message", since=mark)
    assert [m["body"] for m in a.inbox.matching(chat_from(bob))] == texts + ["done"]


async def test_resuming_from_another_connection_ends_the_old_stream(server, clients):
    """XEP-0198 section 5: the old stream, still open, ends with <conflict/>."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    old = await clients.connect(alice, "phone", stream_management=True)
    b = await clients.connect(bob, "laptop")
    sm = old.plugin["xep_0198"]
    await old.round_trip()
    new = clients.client(alice, "phone", stream_management=True)
    new_sm = new.plugin["xep_0198"]
    new_sm.sm_id, new_sm.handled = sm.sm_id, sm.handled
    emark = old.events.mark()
    new.connect(*new.address)
    name, _ = await new.events.expect(
        lambda e: e[0] in ("session_resumed", "session_start", "sm_failed"), "resumption")
    assert name == "session_resumed"
    _, error = await old.events.expect(lambda e: e[0] == "stream_error", "a stream error", since=emark)
    assert error["condition"] == "conflict"
    b.chat(alice, "to the new connection")
    await new.inbox.expect(chat_from(bob, "to the new connection"), "the message")


async def test_a_client_that_starts_afresh_after_a_cut_gets_what_it_missed(server, clients):
    """The app was restarted rather than resumed: the parked session's
    messages were never acknowledged, so the new session gets them as
    offline messages."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    proxy = await clients.proxy()
    a = await clients.connect(alice, "phone", stream_management=True, via=proxy)
    b = await clients.connect(bob, "laptop")
    b.chat(alice, "seen")
    await a.inbox.expect(chat_from(bob, "seen"), "the first message")
    # Alice acknowledges what she got (slixmpp would when the server asks);
    # an unacknowledged message would rightly come again below.
    a.plugin["xep_0198"].send_ack()
    conv = alice.direct(bob)

    def delivered() -> bool:
        members = alice.api("GET", f"/api/v1/conversations/{conv}")["members"]
        return {m["username"]: m for m in members}[alice.username]["delivered_seq"] >= 1

    await eventually(delivered, "the acknowledged message counts as delivered")
    emark = a.events.mark()
    proxy.cut()
    await a.events.expect(lambda e: e[0] == "disconnected", "disconnection", since=emark)
    for text in ("missed 1", "missed 2"):
        b.chat(alice, text)
    await b.round_trip()

    fresh = await clients.connect(alice, "phone2", stream_management=True)
    got = await fresh.inbox.expect_n(chat_from(bob), 2, "the missed messages")
    assert [m["body"] for m in got] == ["missed 1", "missed 2"]
    assert all(m.xml.find("{urn:xmpp:delay}delay") is not None for m in got)
    b.chat(alice, "live again")
    await fresh.inbox.expect(chat_from(bob, "live again"), "a live message")
    assert [m["body"] for m in fresh.inbox.matching(chat_from(bob))] == ["missed 1", "missed 2",
                                                                         "live again"]
