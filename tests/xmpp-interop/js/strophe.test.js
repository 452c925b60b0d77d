// Natter's XMPP over BOSH (XEP-0124/XEP-0206) and WebSocket with
// Strophe.js, the library behind Converse.js and many web chats: log-in,
// a wrong password, and messages both ways between a BOSH client and a
// WebSocket client, checked against the REST history.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";

import { DOMParser } from "@xmldom/xmldom";
import NodeXMLHttpRequest from "xhr2";
import { $msg, $pres, Strophe } from "strophe.js";

import { PASSWORD, TIMEOUT, api, newUser, startServer, stopServer } from "./natter.js";

// Strophe's BOSH transport needs XMLHttpRequest, which Node lacks, and reads
// `responseXML` as a browser provides it (its fallback for a missing
// responseXML parses the text but then returns nothing, in 5.0.0).
class XMLHttpRequest extends NodeXMLHttpRequest {
  get responseXML() {
    const text = this.responseText;
    return text ? new DOMParser().parseFromString(text, "text/xml") : null;
  }
}
globalThis.XMLHttpRequest ??= XMLHttpRequest;
Strophe.setLogLevel(Strophe.LogLevel.WARN);

let server;
const open = [];

before(async () => {
  server = await startServer();
});

after(async () => {
  // Close every session before the server goes, or BOSH keeps retrying.
  await Promise.all(open.map((c) => new Promise((resolve) => {
    if (!c.connected) return resolve();
    const timer = setTimeout(resolve, TIMEOUT);
    c.onDisconnected = () => {
      clearTimeout(timer);
      resolve();
    };
    c.disconnect();
  })));
  await stopServer(server);
});

const Status = Strophe.Status;

/** Connects with Strophe; resolves with the connection once CONNECTED,
 * rejects with the status name on any failure. */
function connect(url, user, password = PASSWORD, resource = "strophe") {
  const conn = new Strophe.Connection(url);
  open.push(conn);
  conn.received = [];
  conn.waiters = new Set();
  conn.addHandler((stanza) => {
    conn.received.push(stanza);
    for (const w of conn.waiters) w();
    return true;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${url}: no connection within ${TIMEOUT} ms`)),
      TIMEOUT);
    conn.connect(`${user.jid}/${resource}`, password, (status, condition) => {
      if (status === Status.DISCONNECTED) conn.onDisconnected?.();
      if (status === Status.CONNECTED) {
        clearTimeout(timer);
        resolve(conn);
      } else if ([Status.AUTHFAIL, Status.CONNFAIL, Status.ERROR, Status.DISCONNECTED]
        .includes(status)) {
        clearTimeout(timer);
        const name = Object.keys(Status).find((k) => Status[k] === status);
        reject(Object.assign(new Error(`${name} ${condition ?? ""}`), { status, condition }));
      }
    });
  });
}

/** Resolves with the first received stanza (from `since`) that matches. */
function expect(conn, pred, what, since = 0) {
  return new Promise((resolve, reject) => {
    let seen = since;
    const check = () => {
      for (; seen < conn.received.length; seen++) {
        if (pred(conn.received[seen])) {
          conn.waiters.delete(check);
          clearTimeout(timer);
          resolve(conn.received[seen]);
          return;
        }
      }
    };
    const timer = setTimeout(() => {
      conn.waiters.delete(check);
      reject(new Error(`no ${what} within ${TIMEOUT} ms; got:\n` +
        conn.received.slice(since).map((s) => Strophe.serialize(s)).join("\n")));
    }, TIMEOUT);
    conn.waiters.add(check);
    check();
  });
}

/** Sends initial presence and waits for the server to reflect it. */
async function available(conn) {
  const mark = conn.received.length;
  conn.send($pres());
  await expect(conn, (s) => s.nodeName === "presence" && s.getAttribute("from") === conn.jid,
    "own presence", mark);
}

const bodyOf = (s) => s.getElementsByTagName("body")[0]?.textContent;
const chatFrom = (user, body) => (s) =>
  s.nodeName === "message" && Strophe.getBareJidFromJid(s.getAttribute("from") ?? "") === user.jid &&
  bodyOf(s) === body;

const bosh = () => `http://${server.http}/http-bind`;
const websocket = () => `ws://${server.http}/xmpp-websocket`;

for (const [name, url] of [["BOSH", bosh], ["WebSocket", websocket]]) {
  test(`log in over ${name}`, async () => {
    const alice = await newUser(server, "alice");
    const conn = await connect(url(), alice);
    assert.equal(conn.authenticated, true);
    assert.equal(Strophe.getBareJidFromJid(conn.jid), alice.jid);
    await available(conn);
  });

  test(`a wrong password over ${name} is refused`, async () => {
    const alice = await newUser(server, "wrong");
    await assert.rejects(connect(url(), alice, "not the password"),
      (err) => err.status === Status.AUTHFAIL);
  });
}

test("a BOSH client and a WebSocket client talk; REST has the history", async () => {
  const alice = await newUser(server, "alice");
  const bob = await newUser(server, "bob");
  const a = await connect(bosh(), alice, PASSWORD, "bosh");
  const b = await connect(websocket(), bob, PASSWORD, "ws");
  await available(a);
  await available(b);

  const ids = [];
  for (let i = 0; i < 3; i++) {
    const id = randomUUID();
    ids.push(id);
    a.send($msg({ to: bob.jid, type: "chat", id }).c("body").t(`over bosh ${i}`));
    const got = await expect(b, chatFrom(alice, `over bosh ${i}`), `message ${i}`);
    assert.equal(got.getAttribute("id"), id);
  }
  const id = randomUUID();
  b.send($msg({ to: alice.jid, type: "chat", id }).c("body").t("over websocket"));
  await expect(a, chatFrom(bob, "over websocket"), "bob's message");

  const conv = await api(server, "POST", "/api/v1/conversations",
    { kind: "direct", with: bob.username }, alice.token);
  const history = await api(server, "GET", `/api/v1/conversations/${conv.id}/messages`, null,
    alice.token);
  assert.deepEqual(history.messages.map((m) => m.body),
    ["over bosh 0", "over bosh 1", "over bosh 2", "over websocket"]);
  assert.deepEqual(history.messages.map((m) => m.client_id), [...ids, id]);
});

test("a BOSH client's presence comes and goes with its session", async () => {
  const alice = await newUser(server, "alice");
  const bob = await newUser(server, "bob");
  await api(server, "PUT", `/api/v1/contacts/${bob.username}`, {}, alice.token);
  await api(server, "PUT", `/api/v1/contacts/${alice.username}`, {}, bob.token);
  const b = await connect(websocket(), bob, PASSWORD, "ws");
  await available(b);
  const presenceOf = (type) => (s) =>
    s.nodeName === "presence" &&
    Strophe.getBareJidFromJid(s.getAttribute("from") ?? "") === alice.jid &&
    (s.getAttribute("type") ?? "available") === type;

  let mark = b.received.length;
  const a = await connect(bosh(), alice, PASSWORD, "bosh");
  await available(a);
  await expect(b, presenceOf("available"), "alice available", mark);

  mark = b.received.length;
  await new Promise((resolve) => {
    a.onDisconnected = resolve;
    a.disconnect();
  });
  await expect(b, presenceOf("unavailable"), "alice unavailable", mark);
});
