// Natter's XMPP over WebSocket (RFC 7395) with xmpp.js (@xmpp/client), the
// library web XMPP clients build on: log-in, stream management, messages
// both ways, a XEP-0313 archive query, and the REST view of the same
// conversation. Run by scripts/test-xmpp-interop (`node --test`), against
// a fresh `natter` on port 0 (NATTER_BIN, or target/debug/natter).

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { client, xml } from "@xmpp/client";

import {
  PASSWORD, TIMEOUT, api as callApi, newUser as makeUser, startServer, stopServer,
} from "./natter.js";

if (typeof WebSocket !== "function") {
  throw new Error("no global WebSocket: run node with --experimental-websocket (Node 20) or Node 22+");
}

let server;
const api = (...args) => callApi(server, ...args);
const newUser = (prefix) => makeUser(server, prefix);

/** An xmpp.js client over WebSocket that keeps every stanza it receives. */
async function connect(user, resource, { reconnect = false } = {}) {
  const xmpp = client({
    service: `ws://${server.http}/xmpp-websocket`,
    domain: "localhost",
    resource,
    username: user.username,
    password: PASSWORD,
  });
  if (!reconnect) xmpp.reconnect.stop();
  const received = [];
  const waiters = new Set();
  xmpp.on("stanza", (stanza) => {
    received.push(stanza);
    for (const w of waiters) w();
  });
  xmpp.on("error", () => {});
  /** Resolves with the first stanza (from `since`) that matches. */
  xmpp.expect = (pred, what, since = 0) =>
    new Promise((resolve, reject) => {
      let seen = since;
      const check = () => {
        for (; seen < received.length; seen++) {
          if (pred(received[seen])) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(received[seen]);
            return;
          }
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`${user.username}/${resource}: no ${what} within ${TIMEOUT} ms; got:\n` +
          received.slice(since).map(String).join("\n")));
      }, TIMEOUT);
      waiters.add(check);
      check();
    });
  xmpp.mark = () => received.length;
  xmpp.received = received;
  const online = new Promise((resolve) => xmpp.once("online", resolve));
  await xmpp.start();
  const address = await online;
  // Initial presence, and wait for the server to reflect it: the resource
  // is then available for messages.
  const mark = xmpp.mark();
  await xmpp.send(xml("presence"));
  await xmpp.expect((s) => s.is("presence") && s.attrs.from === address.toString(),
    "own presence", mark);
  return xmpp;
}

const chatFrom = (user, body) => (s) =>
  s.is("message") && (s.attrs.from ?? "").split("/")[0] === user.jid && s.getChildText("body") === body;

const open = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  for (const c of open) {
    try {
      await c.stop();
    } catch {}
  }
  await stopServer(server);
});

test("log in over WebSocket with stream management", async () => {
  const alice = await newUser("alice");
  const a = await connect(alice, "web");
  open.push(a);
  assert.equal(a.jid.toString(), `${alice.jid}/web`);
  assert.equal(a.streamManagement.enabled, true, "XEP-0198 enabled over WebSocket");
  // A ping to the server is answered.
  const pong = await a.iqCaller.request(
    xml("iq", { type: "get", to: "localhost" }, xml("ping", "urn:xmpp:ping")), TIMEOUT);
  assert.equal(pong.attrs.type, "result");
});

test("a wrong password is refused", async () => {
  const alice = await newUser("wrong");
  const xmpp = client({
    service: `ws://${server.http}/xmpp-websocket`,
    domain: "localhost",
    username: alice.username,
    password: "not the password",
  });
  xmpp.reconnect.stop();
  xmpp.on("error", () => {});
  await assert.rejects(xmpp.start(), (err) => err.condition === "not-authorized");
  await xmpp.stop().catch(() => {});
});

test("messages both ways, the archive and REST agree", async () => {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  const a = await connect(alice, "web");
  const b = await connect(bob, "web");
  open.push(a, b);

  const id1 = randomUUID();
  await a.send(xml("message", { type: "chat", to: bob.jid, id: id1 },
    xml("body", {}, "hello over websocket")));
  const got = await b.expect(chatFrom(alice, "hello over websocket"), "alice's message");
  assert.equal(got.attrs.id, id1);
  const stanzaId = got.getChild("stanza-id", "urn:xmpp:sid:0");
  assert.equal(stanzaId.attrs.by, bob.jid);

  await b.send(xml("message", { type: "chat", to: alice.jid, id: randomUUID() },
    xml("body", {}, "hello back")));
  const reply = await a.expect(chatFrom(bob, "hello back"), "bob's reply");

  // XEP-0313 archive, collected by query id.
  const queryid = randomUUID();
  const mark = a.mark();
  const fin = await a.iqCaller.request(
    xml("iq", { type: "set" },
      xml("query", { xmlns: "urn:xmpp:mam:2", queryid },
        xml("x", { xmlns: "jabber:x:data", type: "submit" },
          xml("field", { var: "FORM_TYPE", type: "hidden" }, xml("value", {}, "urn:xmpp:mam:2")),
          xml("field", { var: "with" }, xml("value", {}, bob.jid))))),
    TIMEOUT);
  assert.equal(fin.getChild("fin", "urn:xmpp:mam:2").attrs.complete, "true");
  const results = a.received.slice(mark)
    .map((s) => s.getChild("result", "urn:xmpp:mam:2"))
    .filter((r) => r && r.attrs.queryid === queryid);
  const bodies = results.map((r) =>
    r.getChild("forwarded", "urn:xmpp:forward:0").getChild("message").getChildText("body"));
  assert.deepEqual(bodies, ["hello over websocket", "hello back"]);
  assert.equal(results[0].attrs.id, stanzaId.attrs.id);
  assert.equal(results[1].attrs.id,
    reply.getChild("stanza-id", "urn:xmpp:sid:0").attrs.id);

  // The REST history of the same conversation: same ids, same order.
  const conv = await api("POST", "/api/v1/conversations", { kind: "direct", with: bob.username },
    alice.token);
  const history = await api("GET", `/api/v1/conversations/${conv.id}/messages`, null, alice.token);
  assert.deepEqual(history.messages.map((m) => m.id), results.map((r) => r.attrs.id));
  assert.deepEqual(history.messages.map((m) => m.client_id)[0], id1);
});

test("stream resumption over WebSocket after the socket drops", async () => {
  const alice = await newUser("alice");
  const bob = await newUser("bob");
  const a = await connect(alice, "web", { reconnect: true });
  const b = await connect(bob, "web");
  open.push(a, b);
  assert.ok(a.streamManagement.id, "resumption offered");
  const jid = a.jid.toString();

  await b.send(xml("message", { type: "chat", to: alice.jid, id: randomUUID() },
    xml("body", {}, "before the drop")));
  await a.expect(chatFrom(bob, "before the drop"), "the first message");

  const resumed = new Promise((resolve) => a.streamManagement.once("resumed", resolve));
  const mark = a.mark();
  // The WebSocket ends without <close/>, as when the network goes.
  a.socket.socket.close();
  for (const text of ["during the drop 1", "during the drop 2"]) {
    await b.send(xml("message", { type: "chat", to: alice.jid, id: randomUUID() },
      xml("body", {}, text)));
  }
  await b.iqCaller.request(xml("iq", { type: "get", to: "localhost" },
    xml("ping", "urn:xmpp:ping")), TIMEOUT);
  await Promise.race([resumed, new Promise((_, reject) =>
    setTimeout(() => reject(new Error("not resumed")), 3 * TIMEOUT))]);
  assert.equal(a.jid.toString(), jid, "the same session");
  await a.expect(chatFrom(bob, "during the drop 1"), "first missed message", mark);
  await a.expect(chatFrom(bob, "during the drop 2"), "second missed message", mark);
  await b.send(xml("message", { type: "chat", to: alice.jid, id: randomUUID() },
    xml("body", {}, "after")));
  await a.expect(chatFrom(bob, "after"), "the message after", mark);
  const bodies = a.received.filter((s) => s.is("message") && s.getChildText("body"))
    .map((s) => s.getChildText("body"));
  assert.deepEqual(bodies, ["before the drop", "during the drop 1", "during the drop 2", "after"]);
});
