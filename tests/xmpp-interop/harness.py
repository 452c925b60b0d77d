"""Helpers for the interop tests: a real `natter` process on port 0, REST
and JSON-stream users, and slixmpp clients that record every stanza they
receive so that tests can wait for what they expect.

Nothing here sleeps to assert speed: every wait is "until this arrives,
or fail after TIMEOUT seconds", and TIMEOUT is generous for a loaded
2-core machine.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import slixmpp
from slixmpp.xmlstream import ElementBase

#: Seconds to wait for anything that should arrive.
TIMEOUT = 10.0

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "localhost"
PASSWORD = "correct horse battery"

NS_CLIENT = "jabber:client"
NS_SID = "urn:xmpp:sid:0"
NS_DELAY = "urn:xmpp:delay"
NS_RECEIPTS = "urn:xmpp:receipts"
NS_MARKERS = "urn:xmpp:chat-markers:0"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_ROSTER = "jabber:iq:roster"
NS_CORRECT = "urn:xmpp:message-correct:0"
NS_MAM = "urn:xmpp:mam:2"
NS_SM = "urn:xmpp:sm:3"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def natter_binary() -> Path:
    return Path(os.environ.get("NATTER_BIN", REPO / "target" / "debug" / "natter"))


# --------------------------------------------------------------------------
# The server


@dataclass
class Server:
    """One running `natter serve` with a fresh data directory."""

    proc: subprocess.Popen
    data_dir: Path
    log_path: Path
    http: str
    xmpp: tuple[str, int]
    xmpps: tuple[str, int]

    @property
    def base_url(self) -> str:
        return f"http://{self.http}"

    @property
    def cert(self) -> Path:
        return self.data_dir / "xmpp-cert.pem"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)


_LISTEN_XMPP = re.compile(r"XMPP listening addr=(\S+) direct_tls=(true|false)")
_LISTEN_HTTP = re.compile(r"natter listening http=(\S+)")


def _hostport(s: str) -> tuple[str, int]:
    host, port = s.rsplit(":", 1)
    return host, int(port)


def start_server(extra_env: dict[str, str] | None = None) -> Server:
    binary = natter_binary()
    if not binary.exists():
        raise RuntimeError(f"{binary} does not exist: build it with `cargo build -p natter-server`")
    data_dir = Path(tempfile.mkdtemp(prefix="natter-interop-"))
    log_path = data_dir / "server.log"
    env = dict(os.environ)
    env.update({"NO_COLOR": "1", "RUST_LOG": env.get("NATTER_INTEROP_RUST_LOG", "info")})
    env.update(extra_env or {})
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [
            str(binary), "serve",
            "--data-dir", str(data_dir),
            "--http", "127.0.0.1:0",
            "--xmpp", "127.0.0.1:0",
            "--xmpps", "127.0.0.1:0",
            "--domain", DOMAIN,
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    log.close()
    deadline = time.monotonic() + 30
    http = xmpp = xmpps = None
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        for m in _LISTEN_XMPP.finditer(text):
            if m.group(2) == "true":
                xmpps = _hostport(m.group(1))
            else:
                xmpp = _hostport(m.group(1))
        m = _LISTEN_HTTP.search(text)
        if m:
            http = m.group(1)
        if http and xmpp and xmpps:
            return Server(proc, data_dir, log_path, http, xmpp, xmpps)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    raise RuntimeError(f"natter did not start; its log:\n{log_path.read_text(errors='replace')}")


# --------------------------------------------------------------------------
# REST


class ApiError(AssertionError):
    def __init__(self, status: int, body: Any, what: str):
        super().__init__(f"{what} -> HTTP {status}: {body}")
        self.status = status
        self.body = body


def api(server: Server, method: str, path: str, body: Any = None, token: str | None = None,
        expect: tuple[int, ...] = (200, 201, 204)) -> Any:
    """One REST call; returns the decoded JSON body (None when empty)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(server.base_url + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    decoded = json.loads(raw) if raw else None
    if status not in expect:
        raise ApiError(status, decoded, f"{method} {path}")
    return decoded


_names = itertools.count(1)


@dataclass
class User:
    username: str
    password: str
    server: Server
    _token: str | None = None

    @property
    def jid(self) -> str:
        return f"{self.username}@{DOMAIN}"

    @property
    def token(self) -> str:
        if self._token is None:
            out = api(self.server, "POST", "/api/v1/sessions",
                      {"username": self.username, "password": self.password})
            self._token = out["token"]
        return self._token

    def api(self, method: str, path: str, body: Any = None, **kw) -> Any:
        return api(self.server, method, path, body, token=self.token, **kw)

    def direct(self, other: "User") -> str:
        """The id of the direct conversation with `other` (created if need be)."""
        out = self.api("POST", "/api/v1/conversations", {"kind": "direct", "with": other.username})
        return out["id"]

    def add_contact(self, other: "User") -> None:
        self.api("PUT", f"/api/v1/contacts/{other.username}", {})

    def history(self, conversation: str, **params) -> list[dict]:
        q = "&".join(f"{k}={v}" for k, v in params.items())
        return self.api("GET", f"/api/v1/conversations/{conversation}/messages?{q}")["messages"]


def new_user(server: Server, prefix: str = "u", display_name: str | None = None) -> User:
    """A fresh account made over REST."""
    name = f"{prefix}{next(_names)}-{uuid.uuid4().hex[:6]}"
    body: dict[str, Any] = {"username": name, "password": PASSWORD}
    if display_name:
        body["display_name"] = display_name
    api(server, "POST", "/api/v1/accounts", body)
    return User(name, PASSWORD, server)


def befriend(a: User, b: User) -> None:
    """Each in the other's contact list, so each sees the other's presence."""
    a.add_contact(b)
    b.add_contact(a)


# --------------------------------------------------------------------------
# Waiting for things


class Recorder:
    """Everything that arrived, in order, and a way to wait for one item."""

    def __init__(self, label: str):
        self.label = label
        self.items: list[Any] = []
        self._arrived = asyncio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._arrived.set()

    def mark(self) -> int:
        """A position: `expect(..., since=mark)` looks only after it."""
        return len(self.items)

    def matching(self, pred: Callable[[Any], bool], since: int = 0) -> list[Any]:
        return [i for i in self.items[since:] if pred(i)]

    async def expect(self, pred: Callable[[Any], bool], what: str, since: int = 0,
                     timeout: float = TIMEOUT) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        seen = since
        while True:
            while seen < len(self.items):
                item = self.items[seen]
                seen += 1
                if pred(item):
                    return item
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                recent = "\n  ".join(self.describe(i) for i in self.items[since:][-15:])
                raise AssertionError(
                    f"{self.label}: no {what} within {timeout:.0f} s; received since:\n  {recent}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def expect_n(self, pred: Callable[[Any], bool], n: int, what: str, since: int = 0,
                       timeout: float = TIMEOUT) -> list[Any]:
        found: list[Any] = []
        pos = since
        for _ in range(n):
            item = await self.expect(pred, f"{what} (#{len(found) + 1} of {n})", pos, timeout)
            pos = self.items.index(item, pos) + 1
            found.append(item)
        return found

    def describe(self, item: Any) -> str:
        return str(item)[:400]


# --------------------------------------------------------------------------
# XMPP (slixmpp)


def x(stanza: ElementBase | Any):
    """The ElementTree element of a stanza."""
    return stanza.xml if hasattr(stanza, "xml") else stanza


def tag(stanza) -> str:
    return x(stanza).tag


def is_message(stanza) -> bool:
    return tag(stanza) == f"{{{NS_CLIENT}}}message"


def is_presence(stanza) -> bool:
    return tag(stanza) == f"{{{NS_CLIENT}}}presence"


def is_iq(stanza) -> bool:
    return tag(stanza) == f"{{{NS_CLIENT}}}iq"


def child(stanza, name: str, ns: str):
    return x(stanza).find(f"{{{ns}}}{name}")


def body(stanza) -> str | None:
    b = child(stanza, "body", NS_CLIENT)
    return None if b is None else (b.text or "")


def attr(stanza, name: str) -> str | None:
    return x(stanza).get(name)


def bare(jid: str | None) -> str:
    return (jid or "").split("/", 1)[0]


def stanza_id(stanza) -> str | None:
    s = child(stanza, "stanza-id", NS_SID)
    return None if s is None else s.get("id")


def chat_from(sender: User | str, text: str | None = None) -> Callable[[Any], bool]:
    """A message with a body from `sender` (any resource), optionally this body."""
    jid = sender.jid if isinstance(sender, User) else sender

    def pred(s) -> bool:
        return (is_message(s) and bare(attr(s, "from")) == jid and body(s) is not None
                and (text is None or body(s) == text)
                and child(s, "sent", NS_CARBONS) is None and child(s, "received", NS_CARBONS) is None)
    return pred


def payload_from(sender: User | str, name: str, ns: str, id_: str | None = None) -> Callable[[Any], bool]:
    """A message from `sender` carrying `<name xmlns=ns/>` (with this id)."""
    jid = sender.jid if isinstance(sender, User) else sender

    def pred(s) -> bool:
        if not is_message(s) or bare(attr(s, "from")) != jid:
            return False
        c = child(s, name, ns)
        return c is not None and (id_ is None or c.get("id") == id_)
    return pred


def presence_from(sender: User | str, kind: str | None = "available", show: str | None = None) -> Callable[[Any], bool]:
    """Presence from `sender`: kind 'available' (no type) or a type; show as given ('' = none)."""
    jid = sender.jid if isinstance(sender, User) else sender

    def pred(s) -> bool:
        if not is_presence(s) or bare(attr(s, "from")) != jid:
            return False
        t = attr(s, "type")
        if kind == "available":
            if t is not None:
                return False
        elif t != kind:
            return False
        if show is not None:
            sh = child(s, "show", NS_CLIENT)
            return (sh.text if sh is not None else "") == show
        return True
    return pred


DEFAULT_PLUGINS = [
    "xep_0030",  # disco
    "xep_0059",  # result set management
    "xep_0085",  # chat states
    "xep_0184",  # receipts
    "xep_0199",  # ping
    "xep_0203",  # delay
    "xep_0280",  # carbons
    "xep_0297",  # forwarding
    "xep_0308",  # correction
    "xep_0313",  # MAM
    "xep_0333",  # markers
    "xep_0334",  # hints
    "xep_0359",  # stanza ids
    "xep_0054",  # vcard-temp
]
PLUGIN_CONFIG = {"xep_0184": {"auto_request": True}}


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records what it receives."""

    def __init__(self, server: Server, jid: str, password: str, *, tls: str = "starttls",
                 mech: str | None = None, plugins: list[str] | None = None,
                 stream_management: bool = False):
        super().__init__(jid, password, sasl_mech=mech)
        self.natter = server
        self.tls_mode = tls
        for p in plugins if plugins is not None else DEFAULT_PLUGINS:
            # Ask for receipts on every chat message, as Conversations,
            # Gajim and Dino do; the server sends receipts only to clients
            # that ask (XEP-0184).
            self.register_plugin(p, PLUGIN_CONFIG.get(p))
        if stream_management:
            self.register_plugin("xep_0198")
        # Connect exactly the way asked: STARTTLS on the c2s port, or TLS
        # from the first byte on the direct-TLS port.
        self.enable_direct_tls = tls == "direct"
        self.enable_starttls = tls == "starttls"
        self.enable_plaintext = False
        # Verify the server's certificate against the one it generated.
        ctx = ssl.create_default_context(cafile=str(server.cert))
        self.ssl_context = ctx
        self.inbox = Recorder(f"XMPP client {jid}")
        self.events = Recorder(f"events of {jid}")
        self.add_filter("in", self._record)
        for name in ("session_start", "session_resumed", "failed_auth", "failed_all_auth",
                     "no_auth", "disconnected", "connection_failed", "stream_error",
                     "sm_enabled", "sm_failed", "auth_success"):
            self.add_event_handler(name, self._event_recorder(name))

    def _record(self, stanza):
        self.inbox.add(stanza)
        return stanza

    def _event_recorder(self, name: str):
        def handler(data=None):
            self.events.add((name, data))
        return handler

    #: Connect here instead of the server (a `TcpProxy`'s address).
    via: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self.via is not None:
            return self.via
        return self.natter.xmpps if self.tls_mode == "direct" else self.natter.xmpp

    async def start(self, presence: bool = True) -> None:
        """Connects and waits for the session (and, with `presence`, for the
        server to reflect the initial presence, so that the resource is
        available for messages when this returns)."""
        self.connect(*self.address)
        name, data = await self.events.expect(
            lambda e: e[0] in ("session_start", "failed_auth", "failed_all_auth", "no_auth",
                               "connection_failed", "stream_error"),
            "session start")
        assert name == "session_start", f"{self.requested_jid}: {name} {data}"
        if presence:
            await self.go_available()

    async def go_available(self, show: str | None = None) -> None:
        mark = self.inbox.mark()
        self.send_presence(pshow=show) if show else self.send_presence()
        me = str(self.boundjid.full)
        await self.inbox.expect(
            lambda s: is_presence(s) and attr(s, "from") == me and attr(s, "type") is None,
            "own presence reflected", since=mark)

    async def round_trip(self) -> None:
        """A ping answered by the server: everything the server sent before
        answering it has arrived."""
        await self.plugin["xep_0199"].send_ping(DOMAIN, timeout=TIMEOUT)

    def chat(self, to: User | str, text: str, **extra) -> slixmpp.Message:
        jid = to.jid if isinstance(to, User) else to
        msg = self.make_message(mto=jid, mbody=text, mtype="chat")
        for k, v in extra.items():
            msg[k] = v
        if not msg["id"]:
            msg["id"] = self.new_id()
        msg.send()
        return msg

    def send_raw_message(self, to: User | str, children_xml: str, mtype: str = "chat",
                         id_: str | None = None) -> str:
        jid = to.jid if isinstance(to, User) else to
        id_ = id_ or self.new_id()
        self.send_raw(f"<message xmlns='jabber:client' to='{jid}' type='{mtype}' id='{id_}'>"
                      f"{children_xml}</message>")
        return id_

    async def close(self) -> None:
        if self.transport is None:
            return
        try:
            await asyncio.wait_for(self.disconnect(wait=2.0), TIMEOUT)
        except (asyncio.TimeoutError, Exception):
            if self.transport is not None:
                self.transport.abort()

    def cut(self) -> None:
        """Drops the TCP connection without closing the stream, as a
        network failure would."""
        assert self.transport is not None
        self.transport.abort()


class TcpProxy:
    """A loopback TCP relay in front of the server, so that a test can cut
    a client's connection the way a network does: `cut()` drops both
    sides (the server sees the connection end), `cut(server_notices=False)`
    drops only the client's side and leaves the server's socket open and
    silent, like a connection whose peer vanished without a FIN."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.address: tuple[str, int] | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: list[asyncio.Task] = []
        self.upstream_writers: list[asyncio.StreamWriter] = []

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def _accept(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._pairs.append((writer, up_writer))
        self.upstream_writers.append(up_writer)
        self._tasks.append(asyncio.create_task(self._pump(reader, up_writer, upstream=True)))
        self._tasks.append(asyncio.create_task(self._pump(up_reader, writer, upstream=False)))

    async def _pump(self, reader, writer, upstream: bool) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not (upstream and self._silent):
                try:
                    writer.close()
                except Exception:
                    pass

    _silent = False

    def cut(self, server_notices: bool = True) -> None:
        self._silent = not server_notices
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        for client_side, server_side in self._pairs:
            client_side.transport.abort()
            if server_notices:
                server_side.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.cut()
        self._silent = False
        for w in self.upstream_writers:
            w.transport.abort()
        if self._server is not None:
            self._server.close()


class Clients:
    """Opens XMPP clients and JSON streams for one test and closes them
    all at its end (see `conftest.py`)."""

    def __init__(self, server: Server):
        self.server = server
        self.open: list[Any] = []

    async def connect(self, user: User, resource: str | None = None, *, presence: bool = True,
                      via: TcpProxy | None = None, **kw) -> Client:
        jid = user.jid + (f"/{resource}" if resource else "")
        c = Client(self.server, jid, user.password, **kw)
        c.via = via.address if via else None
        self.open.append(c)
        await c.start(presence=presence)
        return c

    async def proxy(self, direct_tls: bool = False) -> TcpProxy:
        p = await TcpProxy(self.server.xmpps if direct_tls else self.server.xmpp).start()
        self.open.append(p)
        return p

    def client(self, user: User, resource: str | None = None, **kw) -> Client:
        """A client not yet connected."""
        jid = user.jid + (f"/{resource}" if resource else "")
        c = Client(self.server, jid, user.password, **kw)
        self.open.append(c)
        return c

    async def stream(self, user: User) -> "JsonStream":
        s = JsonStream(self.server, user)
        self.open.append(s)
        await s.start()
        return s

    async def aclose(self) -> None:
        for c in reversed(self.open):
            try:
                await c.close()
            except Exception:
                pass
        self.open.clear()


async def barrier(sender: Client, sender_user: User, to: User, *receivers: Client) -> None:
    """`sender` sends `to` a message and waits until every receiver (all
    resources of `to`) has it. Real-time items reach a session in the order
    of the server's event log, so whatever the server would have sent these
    receivers before that message has arrived when this returns; a test can
    then assert that something did *not* come."""
    text = f"barrier {uuid.uuid4().hex[:8]}"
    sender.chat(to, text)
    for r in receivers:
        await r.inbox.expect(chat_from(sender_user, text), "the barrier message")


async def eventually(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Polls `check` until it holds (for state only visible over REST)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not so within {timeout:.0f} s")
        await asyncio.sleep(0.05)


def not_barrier(pred: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda s: pred(s) and not (body(s) or "").startswith("barrier ")


# --------------------------------------------------------------------------
# The JSON real-time stream (docs/protocol.md)


class JsonStream:
    """A REST user's WebSocket stream at /api/v1/stream."""

    def __init__(self, server: Server, user: User):
        self.server = server
        self.user = user
        self.frames = Recorder(f"JSON stream of {user.username}")
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._refs = itertools.count(1)
        self.hello: dict | None = None

    async def start(self) -> None:
        from websockets.asyncio.client import connect
        self._ws = await connect(f"ws://{self.server.http}/api/v1/stream",
                                 subprotocols=["natter.v1"], open_timeout=TIMEOUT)
        self._reader = asyncio.create_task(self._read())
        await self._ws.send(json.dumps({"type": "auth", "ref": "auth", "token": self.user.token}))
        self.hello = await self.frames.expect(lambda f: f.get("type") == "hello", "hello")

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                self.frames.add(json.loads(raw))
        except Exception:
            pass

    async def command(self, type_: str, **fields) -> dict:
        ref = f"r{next(self._refs)}"
        mark = self.frames.mark()
        await self._ws.send(json.dumps({"type": type_, "ref": ref, **fields}))
        reply = await self.frames.expect(
            lambda f: f.get("type") == "reply" and f.get("ref") == ref, f"reply to {type_}", since=mark)
        assert reply["ok"], f"{type_} failed: {reply}"
        return reply.get("data") or {}

    def event(self, name: str, **match) -> Callable[[dict], bool]:
        """A predicate: an event of this name whose data has these values."""
        def pred(f: dict) -> bool:
            if f.get("type") != "event" or f.get("event") != name:
                return False
            data = f.get("data", {})
            return all(data.get(k) == v for k, v in match.items())
        return pred

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
