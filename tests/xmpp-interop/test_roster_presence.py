"""Roster management (RFC 6121 section 2) with pushes to every resource,
and presence (section 4) as a contact sees it."""

from harness import NS_ROSTER, attr, barrier, befriend, child, is_iq, new_user, presence_from


def roster_push(jid: str, subscription: str | None = None):
    """A roster push (iq set) about `jid`."""
    def pred(s) -> bool:
        if not is_iq(s) or attr(s, "type") != "set":
            return False
        q = child(s, "query", NS_ROSTER)
        if q is None:
            return False
        item = q.find(f"{{{NS_ROSTER}}}item")
        return (item is not None and item.get("jid") == jid
                and (subscription is None or item.get("subscription") == subscription))
    return pred


def item_of(push):
    return child(push, "query", NS_ROSTER).find(f"{{{NS_ROSTER}}}item")


async def test_roster_get_set_remove_with_pushes(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a1 = await clients.connect(alice, "one")
    a2 = await clients.connect(alice, "two")

    roster = await a1.get_roster()
    assert bob.jid not in roster["roster"]["items"]

    mark1, mark2 = a1.inbox.mark(), a2.inbox.mark()
    await a1.update_roster(bob.jid, name="Bobby", groups=["Friends", "Work"])
    # RFC 6121 2.1.6: the change is pushed to every resource, the one that
    # made it included, from the account itself (no foreign 'from').
    for c, mark in ((a1, mark1), (a2, mark2)):
        push = await c.inbox.expect(roster_push(bob.jid), "roster push", since=mark)
        assert attr(push, "from") in (None, alice.jid), attr(push, "from")
        item = item_of(push)
        assert item.get("name") == "Bobby"
        assert sorted(g.text for g in item.findall(f"{{{NS_ROSTER}}}group")) == ["Friends", "Work"]

    roster = await a2.get_roster()
    items = roster["roster"]["items"]
    assert items[bob.jid]["name"] == "Bobby"
    # Bob now sees alice's presence, not (yet) the other way round.
    assert items[bob.jid]["subscription"] == "from"
    assert sorted(items[bob.jid]["groups"]) == ["Friends", "Work"]
    # The roster is the REST contact list.
    contacts = alice.api("GET", "/api/v1/contacts")["contacts"]
    assert [c["username"] for c in contacts] == [bob.username]

    # Rename: one more push.
    mark2 = a2.inbox.mark()
    await a1.update_roster(bob.jid, name="Robert", groups=[])
    push = await a2.inbox.expect(roster_push(bob.jid), "rename push", since=mark2)
    assert item_of(push).get("name") == "Robert"

    # A bare roster remove (RFC 6121 2.5).
    mark1, mark2 = a1.inbox.mark(), a2.inbox.mark()
    await a1.update_roster(bob.jid, subscription="remove")
    for c, mark in ((a1, mark1), (a2, mark2)):
        await c.inbox.expect(roster_push(bob.jid, "remove"), "removal push", since=mark)
    roster = await a1.get_roster()
    assert bob.jid not in roster["roster"]["items"]
    assert alice.api("GET", "/api/v1/contacts")["contacts"] == []


async def test_slixmpp_remove_contact(server, clients):
    """slixmpp's "remove contact" unsubscribes first, then removes the item."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a1 = await clients.connect(alice, "one")
    a2 = await clients.connect(alice, "two")
    await a1.update_roster(bob.jid, name="Bob")
    await a1.get_roster()
    mark1, mark2 = a1.inbox.mark(), a2.inbox.mark()
    await a1.del_roster_item(bob.jid)
    for c, mark in ((a1, mark1), (a2, mark2)):
        await c.inbox.expect(roster_push(bob.jid, "remove"), "removal push", since=mark)
    roster = await a2.get_roster()
    assert bob.jid not in roster["roster"]["items"]
    assert alice.api("GET", "/api/v1/contacts")["contacts"] == []


async def test_roster_set_of_an_unknown_account_fails(server, clients):
    alice = new_user(server, "alice")
    a = await clients.connect(alice, "one")
    iq = a.make_iq_set()
    iq["roster"]["items"] = {f"ghost-{alice.username}@localhost": {"name": "Ghost", "subscription": "none", "groups": []}}
    try:
        await iq.send(timeout=10)
    except Exception as e:  # slixmpp raises IqError for an error reply
        assert getattr(e, "iq", None) is not None, e
        assert e.iq["error"]["condition"] in ("item-not-found", "not-acceptable"), e.iq
    else:
        raise AssertionError("adding an unknown account to the roster succeeded")


async def test_subscribe_adds_to_roster(server, clients):
    """RFC 6121 3.1: alice asks, bob's client approves (slixmpp does so by
    itself by default), alice gets 'subscribed' and bob's presence."""
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "one")
    b = await clients.connect(bob, "one")
    mark = a.inbox.mark()
    a.send_presence_subscription(bob.jid)
    await a.inbox.expect(roster_push(bob.jid), "roster push", since=mark)
    await b.inbox.expect(presence_from(alice, "subscribe"), "the request reaching bob")
    await a.inbox.expect(presence_from(bob, "subscribed"), "subscribed", since=mark)
    # Bob is online, so alice learns his presence.
    await a.inbox.expect(presence_from(bob), "bob's presence", since=mark)
    roster = await a.get_roster()
    assert roster["roster"]["items"][bob.jid]["subscription"] == "both"
    # …and his changes from then on.
    mark = a.inbox.mark()
    await b.go_available(show="away")
    await a.inbox.expect(presence_from(bob, "available", show="away"), "bob away", since=mark)


async def test_presence_available_away_unavailable(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    befriend(alice, bob)
    b = await clients.connect(bob, "laptop")
    # Alice logs in and learns that bob is online.
    a = await clients.connect(alice, "phone")
    await a.inbox.expect(presence_from(bob, "available", show=""), "bob available")

    mark = a.inbox.mark()
    await b.go_available(show="away")
    await a.inbox.expect(presence_from(bob, "available", show="away"), "bob away", since=mark)

    mark = a.inbox.mark()
    await b.go_available()
    await a.inbox.expect(presence_from(bob, "available", show=""), "bob back", since=mark)

    mark = a.inbox.mark()
    b.send_presence(ptype="unavailable")
    await a.inbox.expect(presence_from(bob, "unavailable"), "bob unavailable", since=mark)

    # Bob available again, then his connection closes: unavailable again.
    mark = a.inbox.mark()
    await b.go_available()
    await a.inbox.expect(presence_from(bob, "available"), "bob available again", since=mark)
    mark = a.inbox.mark()
    await b.close()
    await a.inbox.expect(presence_from(bob, "unavailable"), "bob gone", since=mark)


async def test_presence_is_not_shared_with_strangers(server, clients):
    alice, mallory, carol = new_user(server, "alice"), new_user(server, "mallory"), new_user(server, "carol")
    m = await clients.connect(mallory, "x")
    c = await clients.connect(carol, "x")
    a = await clients.connect(alice, "phone")
    await a.go_available(show="away")
    await barrier(c, carol, mallory, m)
    assert m.inbox.matching(presence_from(alice)) == []


async def test_status_text_reaches_contacts(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    befriend(alice, bob)
    b = await clients.connect(bob, "laptop")
    a = await clients.connect(alice, "phone")
    mark = b.inbox.mark()
    a.send_presence(pshow="away", pstatus="In a meeting")
    got = await b.inbox.expect(presence_from(alice, "available", show="away"), "alice away",
                               since=mark)
    assert got["status"] == "In a meeting"


async def test_a_declined_subscription_shares_nothing(server, clients):
    """Bob declines (RFC 6121 3.2): alice gets 'unsubscribed' and never
    bob's presence."""
    alice, bob, carol = new_user(server, "alice"), new_user(server, "bob"), new_user(server, "carol")
    a = await clients.connect(alice, "one")
    b = await clients.connect(bob, "one")
    c = await clients.connect(carol, "one")
    b.roster[bob.jid].auto_authorize = False
    b.roster[bob.jid].auto_subscribe = False
    mark = a.inbox.mark()
    a.send_presence_subscription(bob.jid)
    await b.inbox.expect(presence_from(alice, "subscribe"), "the request")
    b.send_presence(pto=alice.jid, ptype="unsubscribed")
    await a.inbox.expect(presence_from(bob, "unsubscribed"), "bob's refusal", since=mark)
    await b.go_available(show="away")
    # Carol's message is a barrier for alice's queue.
    await barrier(c, carol, alice, a)
    assert a.inbox.matching(presence_from(bob, "available"), since=mark) == []
    roster = await a.get_roster()
    assert roster["roster"]["items"][bob.jid]["subscription"] in ("none", "from")


async def test_log_in_shows_contacts_as_they_are(server, clients):
    alice, bob, carol = new_user(server, "alice"), new_user(server, "bob"), new_user(server, "carol")
    befriend(alice, bob)
    befriend(alice, carol)
    b = await clients.connect(bob, "laptop")
    await b.go_available(show="away")
    b.send_presence(pshow="away", pstatus="Back at five")
    await b.round_trip()
    a = await clients.connect(alice, "phone")
    got = await a.inbox.expect(presence_from(bob, "available"), "bob's presence")
    assert got["show"] == "away"
    assert got["status"] == "Back at five"
    # Carol is offline: no available presence for her.
    await barrier(b, bob, alice, a)
    assert a.inbox.matching(presence_from(carol, "available")) == []
