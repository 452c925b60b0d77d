"""SASL (RFC 6120 section 6) with each mechanism Natter offers, over
STARTTLS and direct TLS (XEP-0368), as slixmpp does it."""

import asyncio
import ssl

import pytest

from harness import DOMAIN, NS_SASL, Client, new_user

MECHANISMS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


@pytest.mark.parametrize("tls", ["starttls", "direct"])
@pytest.mark.parametrize("mech", MECHANISMS)
async def test_log_in_with_each_mechanism(server, clients, mech, tls):
    user = new_user(server, "auth")
    c = await clients.connect(user, "desk", mech=mech, tls=tls)
    # The mechanism slixmpp actually used, and (for SCRAM) it checked the
    # server's signature, or it would have refused the success.
    assert c.plugin["feature_mechanisms"].mech.name == mech
    assert str(c.boundjid) == f"{user.jid}/desk"
    assert isinstance(c.socket, (ssl.SSLSocket, ssl.SSLObject)), "the stream must be under TLS"
    await c.round_trip()


async def test_server_offers_scram_and_plain_under_tls(server, clients):
    user = new_user(server, "feat")
    c = clients.client(user, "feat", mech="SCRAM-SHA-256")
    offered = []
    orig = c.plugin["feature_mechanisms"]._handle_sasl_auth

    def spy(features):
        offered.extend(features["mechanisms"])
        return orig(features)

    c.register_feature("mechanisms", spy, restart=True, order=c.plugin["feature_mechanisms"].order)
    await c.start(presence=False)
    assert {"SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"} <= set(offered), offered


@pytest.mark.parametrize("mech", MECHANISMS)
async def test_wrong_password_is_refused(server, clients, mech):
    user = new_user(server, "wrong")
    c = Client(server, f"{user.jid}/x", "not the password", mech=mech)
    clients.open.append(c)
    c.connect(*c.address)
    name, failure = await c.events.expect(
        lambda e: e[0] in ("failed_auth", "session_start"), "authentication outcome")
    assert name == "failed_auth"
    assert failure["condition"] == "not-authorized"
    # No session was bound.
    assert not c.events.matching(lambda e: e[0] == "session_start")


async def test_unknown_account_fails_like_a_wrong_password(server, clients):
    c = Client(server, f"nobody-here@{DOMAIN}/x", "whatever password", mech="SCRAM-SHA-256")
    clients.open.append(c)
    c.connect(*c.address)
    name, failure = await c.events.expect(
        lambda e: e[0] in ("failed_auth", "session_start"), "authentication outcome")
    assert name == "failed_auth"
    assert failure["condition"] == "not-authorized"


async def test_no_authentication_before_tls(server):
    """Without NATTER_XMPP__ALLOW_PLAINTEXT the c2s port requires STARTTLS
    and offers no SASL mechanism before it (RFC 6120 5.3.1)."""
    reader, writer = await asyncio.open_connection(*server.xmpp)
    try:
        writer.write(
            f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".encode())
        await writer.drain()
        data = b""
        while b"</stream:features>" not in data:
            chunk = await asyncio.wait_for(reader.read(4096), 10)
            assert chunk, f"stream closed early: {data!r}"
            data += chunk
        text = data.decode()
        assert "urn:ietf:params:xml:ns:xmpp-tls" in text and "<required" in text, text
        assert NS_SASL not in text, text
    finally:
        writer.close()
