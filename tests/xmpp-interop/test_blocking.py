"""XEP-0191 blocking with slixmpp's own plugin: the blocklist shared with
the REST API, pushes to the other interested resource, and a blocked
contact's message bouncing without being stored."""

from harness import DEFAULT_PLUGINS, attr, chat_from, is_iq, new_user

NS_BLOCKING = "urn:xmpp:blocking"
PLUGINS = DEFAULT_PLUGINS + ["xep_0191"]


def blocked_jids(result) -> set[str]:
    """The JIDs of a blocklist result, from its XML."""
    path = f"{{{NS_BLOCKING}}}blocklist/{{{NS_BLOCKING}}}item"
    return {item.get("jid") for item in result.xml.findall(path)}


def blocking_push(kind: str):
    def pred(s) -> bool:
        return (is_iq(s) and attr(s, "type") == "set"
                and s.xml.find(f"{{{NS_BLOCKING}}}{kind}") is not None)
    return pred


async def test_slixmpp_blocks_and_unblocks(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a1 = await clients.connect(alice, "one", plugins=PLUGINS)
    a2 = await clients.connect(alice, "two", plugins=PLUGINS)
    b = await clients.connect(bob, "x")
    conversation = alice.direct(bob)

    info = await a1.plugin["xep_0030"].get_info(jid="localhost")
    assert NS_BLOCKING in info["disco_info"]["features"]

    # Both resources read the list: both are interested from then on.
    for c in (a1, a2):
        got = await c.plugin["xep_0191"].get_blocked()
        assert blocked_jids(got) == set()

    mark = a2.inbox.mark()
    await a1.plugin["xep_0191"].block([bob.jid])
    await a2.inbox.expect(blocking_push("block"), "a block push", since=mark)
    got = await a2.plugin["xep_0191"].get_blocked()
    assert blocked_jids(got) == {bob.jid}
    # The same list over REST.
    assert [x["username"] for x in alice.api("GET", "/api/v1/blocks")["blocks"]] == [bob.username]

    # bob's message bounces as if alice had no account, and is not stored.
    sent = b.chat(alice, "let me in")
    err = await b.inbox.expect(
        lambda s: attr(s, "type") == "error" and attr(s, "id") == sent["id"], "a bounce")
    assert err["error"]["condition"] == "service-unavailable"
    assert alice.history(conversation) == []

    # Unblocking everyone (an empty unblock) lets him through again.
    mark = a2.inbox.mark()
    # (The plugin's unblock([]) sends an IQ without the <unblock/> element,
    # which any server must refuse; an empty <unblock/> is made by hand.)
    iq = a1.make_iq_set()
    iq.enable("unblock")
    await iq.send()
    await a2.inbox.expect(blocking_push("unblock"), "an unblock push", since=mark)
    assert alice.api("GET", "/api/v1/blocks")["blocks"] == []
    b.chat(alice, "hello again")
    await a1.inbox.expect(chat_from(bob, "hello again"), "bob's message")
