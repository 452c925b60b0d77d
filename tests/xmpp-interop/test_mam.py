"""XEP-0313 message archive management with XEP-0059 paging, through
slixmpp's MAM plugin, over the shared history."""

from datetime import datetime, timezone

from slixmpp import JID

from harness import NS_MAM, NS_SID, attr, chat_from, child, new_user, stanza_id


async def converse(a, b, alice, bob, n: int, tag: str) -> list[tuple[str, str, str]]:
    """n messages alternating between alice and bob, each waited for;
    returns (sender username, body, stanza id seen by the recipient)."""
    out = []
    for i in range(n):
        sender, recipient, s_user, r_user = (a, b, alice, bob) if i % 2 == 0 else (b, a, bob, alice)
        text = f"{tag} {i}"
        sender.chat(r_user, text)
        got = await recipient.inbox.expect(chat_from(s_user, text), f"message {text!r}")
        sid = child(got, "stanza-id", NS_SID)
        assert sid.get("by") == r_user.jid
        out.append((s_user.username, text, sid.get("id")))
    return out


def results(iq):
    """(archive id, inner message) of each result, in order."""
    return [(m["mam_result"]["id"], m["mam_result"]["forwarded"]["stanza"]) for m in iq["mam"]["results"]]


async def query(client, peer, rsm=None, **fields):
    """A MAM query built with slixmpp's stanza classes; returns the result
    ids (collected from what arrived) and the final iq."""
    iq = client.make_iq_set()
    iq["mam"]["queryid"] = iq["id"]
    iq["mam"]["with"] = JID(peer.jid)
    for k, v in fields.items():
        iq["mam"][k] = v
    for k, v in (rsm or {}).items():
        iq["mam"]["rsm"][k] = v
    mark = client.inbox.mark()
    reply = await iq.send(timeout=10)
    got = [
        s for s in client.inbox.items[mark:]
        if s.xml.find(f"{{{NS_MAM}}}result") is not None
        and s.xml.find(f"{{{NS_MAM}}}result").get("queryid") == iq["id"]
    ]
    return [s.xml.find(f"{{{NS_MAM}}}result").get("id") for s in got], reply


def fin(iq):
    return iq.xml.find(f"{{{NS_MAM}}}fin")


async def test_archive_with_a_contact(server, clients):
    alice, bob, carol = new_user(server, "alice"), new_user(server, "bob"), new_user(server, "carol")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    c = await clients.connect(carol, "desk")
    with_bob = await converse(a, b, alice, bob, 7, "ab")
    with_carol = await converse(a, c, alice, carol, 2, "ac")

    iq = await a.plugin["xep_0313"].retrieve(with_jid=JID(bob.jid), rsm={"max": 50})
    got = results(iq)
    assert [r[0] for r in got] == [m[2] for m in with_bob], "archive ids are the live stanza ids"
    assert [r[1]["body"] for r in got] == [m[1] for m in with_bob]
    for (_, inner), (sender, _, _) in zip(got, with_bob):
        assert inner["from"].bare == f"{sender}@localhost"
        other = bob if sender == alice.username else alice
        assert inner["to"].bare == other.jid
    assert fin(iq).get("complete") == "true"
    # Each result carries its original time.
    for m in iq["mam"]["results"]:
        stamp = m["mam_result"]["forwarded"]["delay"]["stamp"]
        assert isinstance(stamp, datetime) and stamp <= datetime.now(timezone.utc)

    # The whole archive interleaves both conversations by time.
    iq = await a.plugin["xep_0313"].retrieve(rsm={"max": 50})
    assert [r[0] for r in results(iq)] == [m[2] for m in with_bob + with_carol]

    # Bob's archive holds the same messages under the same ids.
    iq = await b.plugin["xep_0313"].retrieve(with_jid=JID(alice.jid), rsm={"max": 50})
    assert [r[0] for r in results(iq)] == [m[2] for m in with_bob]
    # …and nothing of alice and carol's conversation.
    iq = await b.plugin["xep_0313"].retrieve(rsm={"max": 50})
    assert [r[0] for r in results(iq)] == [m[2] for m in with_bob]


async def test_rsm_paging_forward_and_backward(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    ids = [m[2] for m in await converse(a, b, alice, bob, 7, "page")]
    mam = a.plugin["xep_0313"]

    pages, after = [], None
    for _ in range(5):
        rsm = {"max": 3}
        if after:
            rsm["after"] = after
        iq = await mam.retrieve(with_jid=JID(bob.jid), rsm=rsm)
        page = [r[0] for r in results(iq)]
        pages.append(page)
        rsm_set = fin(iq).find("{http://jabber.org/protocol/rsm}set")
        if page:
            assert rsm_set.find("{http://jabber.org/protocol/rsm}first").text == page[0]
            assert rsm_set.find("{http://jabber.org/protocol/rsm}last").text == page[-1]
        if fin(iq).get("complete") == "true":
            break
        after = page[-1]
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]

    # Backward from the end: the last page, in chronological order.
    got, reply = await query(a, bob, rsm={"max": "2", "before": True})
    assert got == ids[5:7]
    assert fin(reply).get("complete") != "true"
    got, reply = await query(a, bob, rsm={"max": "3", "before": ids[5]})
    assert got == ids[2:5]
    got, reply = await query(a, bob, rsm={"max": "3", "before": ids[2]})
    assert got == ids[0:2]
    assert fin(reply).get("complete") == "true"


async def test_after_id_and_before_id(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    ids = [m[2] for m in await converse(a, b, alice, bob, 6, "id")]

    got, _ = await query(a, bob, after_id=ids[3])
    assert got == ids[4:]
    got, _ = await query(a, bob, before_id=ids[2])
    assert got == ids[:2]
    got, _ = await query(a, bob, after_id=ids[0], before_id=ids[4])
    assert got == ids[1:4]


async def test_unknown_after_id_is_item_not_found(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    iq = a.make_iq_set()
    iq["mam"]["queryid"] = "q1"
    iq["mam"]["with"] = JID(bob.jid)
    iq["mam"]["after_id"] = "00000000-0000-7000-8000-000000000000"
    try:
        await iq.send(timeout=10)
    except Exception as e:
        assert e.iq["error"]["condition"] == "item-not-found", e.iq
    else:
        raise AssertionError("a query after an unknown id succeeded")


async def test_live_stanza_id_is_the_archive_id_for_offline_messages(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    a.chat(bob, "while you were out")
    await a.round_trip()
    b = await clients.connect(bob, "laptop")
    got = await b.inbox.expect(chat_from(alice, "while you were out"), "offline message")
    iq = await b.plugin["xep_0313"].retrieve(with_jid=JID(alice.jid))
    assert [r[0] for r in results(iq)] == [stanza_id(got)]
    assert attr(got, "id") == results(iq)[0][1]["id"]
