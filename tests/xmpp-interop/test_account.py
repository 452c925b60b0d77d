"""The account from XMPP: XEP-0077 in-band registration and the vcard-temp
(XEP-0054) name, each checked against the REST view of the same account."""

import uuid

from slixmpp.exceptions import IqError

from harness import DOMAIN, PASSWORD, Client, User, api, new_user


def registering_client(server, clients, username: str, password: str) -> tuple[Client, list]:
    c = Client(server, f"{username}@{DOMAIN}/reg", password,
               plugins=["xep_0030", "xep_0004", "xep_0066", "xep_0077", "xep_0199"])
    clients.open.append(c)
    c.plugin["xep_0077"].force_registration = True
    outcome: list = []

    async def on_register(form):
        iq = c.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = c.boundjid.user
        iq["register"]["password"] = c.password
        try:
            await iq.send(timeout=10)
            outcome.append("registered")
        except IqError as e:
            outcome.append(e.iq["error"]["condition"])
            c.disconnect()

    c.add_event_handler("register", on_register)
    return c, outcome


async def test_in_band_registration_then_log_in(server, clients):
    username = f"ibr-{uuid.uuid4().hex[:8]}"
    c, outcome = registering_client(server, clients, username, PASSWORD)
    await c.start()
    assert outcome == ["registered"]
    assert str(c.boundjid.bare) == f"{username}@{DOMAIN}"
    # The account is a normal one: REST log-in works with the same password.
    me = User(username, PASSWORD, server).api("GET", "/api/v1/me")
    assert me["username"] == username


async def test_registering_a_taken_name_is_a_conflict(server, clients):
    taken = new_user(server, "taken")
    c, outcome = registering_client(server, clients, taken.username, "another password")
    c.connect(*c.address)
    await c.events.expect(lambda e: e[0] in ("disconnected", "session_start", "failed_auth"),
                          "the end of registration")
    assert outcome == ["conflict"]
    # The existing account is untouched.
    api(server, "POST", "/api/v1/sessions", {"username": taken.username, "password": PASSWORD})


async def test_vcard_name_seen_by_others(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")
    vcard = a.plugin["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Liddell"
    await a.plugin["xep_0054"].publish_vcard(vcard)
    assert alice.api("GET", "/api/v1/me")["display_name"] == "Alice Liddell"
    iq = await b.plugin["xep_0054"].get_vcard(alice.jid, cached=False)
    assert iq["vcard_temp"]["FN"] == "Alice Liddell"
    bob.api("PATCH", "/api/v1/me", {"display_name": "Bob the Builder"})
    iq = await a.plugin["xep_0054"].get_vcard(bob.jid, cached=False)
    assert iq["vcard_temp"]["FN"] == "Bob the Builder"


async def test_vcard_name_both_ways(server, clients):
    alice, bob = new_user(server, "alice"), new_user(server, "bob")
    a = await clients.connect(alice, "phone")
    b = await clients.connect(bob, "laptop")

    vcard = a.plugin["xep_0054"].make_vcard()
    vcard["FN"] = "Alice Liddell"
    await a.plugin["xep_0054"].publish_vcard(vcard)
    assert alice.api("GET", "/api/v1/me")["display_name"] == "Alice Liddell"
    iq = await a.plugin["xep_0054"].get_vcard(alice.jid, local=False)  # own, from the server
    assert iq["vcard_temp"]["FN"] == "Alice Liddell"
    # Others see it.
    iq = await b.plugin["xep_0054"].get_vcard(alice.jid, cached=False)
    assert iq["vcard_temp"]["FN"] == "Alice Liddell"
    assert bob.api("GET", f"/api/v1/users/{alice.username}")["display_name"] == "Alice Liddell"

    # A name set over REST is the vCard's name.
    bob.api("PATCH", "/api/v1/me", {"display_name": "Bob the Builder"})
    iq = await a.plugin["xep_0054"].get_vcard(bob.jid, cached=False)
    assert iq["vcard_temp"]["FN"] == "Bob the Builder"
    iq = await b.plugin["xep_0054"].get_vcard(bob.jid, local=False)  # own, from the server
    assert iq["vcard_temp"]["FN"] == "Bob the Builder"
