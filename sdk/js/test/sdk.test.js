// The SDK against a real natter server (started per file, port 0, fresh
// data directory), through a proxy that breaks the network on purpose.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WebSocket } from 'ws';
import { NatterClient, NatterError } from '../natter.js';
import { NatterServer, uniqueName } from './server.js';
import { FaultyProxy } from './proxy.js';

let server;
const PASSWORD = 'correct horse battery';
const FAST = { backoff: { initialMs: 100, maxMs: 1000 }, connectTimeoutMs: 3000, pingIntervalMs: 2000, pingTimeoutMs: 2000 };

before(async () => {
  server = new NatterServer();
  await server.start();
});

after(async () => {
  await server?.close();
});

async function user(prefix, url = server.url, options = {}) {
  const username = uniqueName(prefix);
  const c = new NatterClient({ server: url, WebSocket, ...FAST, ...options });
  await c.signUp({ username, password: PASSWORD, displayName: prefix[0].toUpperCase() + prefix.slice(1) });
  await c.logIn(username, PASSWORD);
  return c;
}

/** Resolves when `pred()` holds, polling; fails after `ms`. */
async function until(pred, ms = 15_000, what = 'condition') {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function collect(client, name) {
  const seen = [];
  client.on(name, (d) => seen.push(d));
  return seen;
}

test('REST helpers: sign-up, log-in, directory, conversations, history, edit, delete', async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const found = await alice.searchUsers(bob.user.username);
  assert.equal(found[0].username, bob.user.username);
  const conv = await alice.directWith(bob.user.username);
  assert.equal(conv.kind, 'direct');
  const m1 = await alice.send(conv.id, 'hello').done;
  await alice.send(conv.id, 'second').done;
  const edited = await alice.editMessage(conv.id, m1.seq, 'hello!');
  assert.equal(edited.body, 'hello!');
  assert.ok(edited.edited_at);
  const tomb = await alice.deleteMessage(conv.id, m1.seq);
  assert.equal(tomb.body, null);
  const h = await bob.history(conv.id);
  assert.deepEqual(h.messages.map((m) => [m.seq, m.body]), [[1, null], [2, 'second']]);
  const list = await bob.allConversations();
  const summary = list.find((c) => c.id === conv.id);
  assert.equal(summary.unread, 2);
  assert.equal(await bob.markRead(conv.id, 2), 2);
  const group = await alice.createGroup('Team', [bob.user.username]);
  assert.equal(group.members.length, 2);
  await alice.putMember(group.id, bob.user.username, 'admin');
  const details = await bob.conversation(group.id);
  assert.equal(details.members.find((m) => m.username === bob.user.username).role, 'admin');
  await bob.leave(group.id);
  await assert.rejects(bob.conversation(group.id), (e) => e instanceof NatterError && e.code === 'not_member' && e.status === 403);
  await assert.rejects(alice.request('GET', '/nope'), (e) => e.status === 404);
  await alice.logOut();
  assert.equal(alice.token, null);
});

test('events over WebSocket; delivered and read states of a sent message', async () => {
  const alice = await user('alice');
  const bob = await user('bob');
  const conv = await alice.directWith(bob.user.username);
  const got = collect(bob, 'message.created');
  const typing = collect(bob, 'typing');
  alice.connect();
  bob.connect();
  await until(() => alice.state === 'connected' && bob.state === 'connected', 10_000, 'both connected');
  assert.equal(bob.transport, 'websocket');
  await alice.conversation(conv.id); // loads the markers
  await alice.typing(conv.id, true);
  await until(() => typing.some((t) => t.user === alice.user.username && t.active), 5000, 'typing');
  const states = [];
  alice.on('outgoing', (o) => states.push(o.state));
  const out = alice.send(conv.id, 'are you there?');
  assert.equal(out.state, 'pending');
  const msg = await out.done;
  assert.deepEqual(states, ['pending', 'sent']);
  await until(() => got.some((e) => e.message.id === msg.id), 5000, 'bob gets it');
  // bob's device got it: the server moves bob's delivered marker
  await until(() => alice.messageState(msg) === 'delivered', 5000, 'delivered');
  await bob.markRead(conv.id, msg.seq);
  await until(() => alice.messageState(msg) === 'read', 5000, 'read');
  assert.equal(bob.messageState(msg), 'received');
  alice.disconnect();
  bob.disconnect();
  assert.equal(bob.state, 'closed');
});

test('reconnects and resumes from its cursor: nothing lost, nothing twice, across a server restart', async () => {
  const alice = await user('alice');
  const bob0 = await user('bob');
  const conv = await alice.directWith(bob0.user.username);
  const proxy = new FaultyProxy(server.url);
  await proxy.start();
  // bob reaches the server only through the proxy
  const bob = new NatterClient({ server: proxy.url, WebSocket, token: bob0.token, user: bob0.user, ...FAST });
  const bodies = [];
  bob.on('message.created', ({ message }) => bodies.push(message.body));
  const states = [];
  bob.on('state', (s) => states.push(s));
  bob.connect();
  await until(() => bob.state === 'connected', 10_000, 'connected');
  await alice.send(conv.id, 'before 1').done;
  await until(() => bodies.length === 1, 5000, 'first message');

  await proxy.cut();
  await until(() => bob.state === 'reconnecting', 10_000, 'bob notices');
  for (let i = 1; i <= 10; i++) await alice.send(conv.id, `while away ${i}`).done;
  // and the server restarts meanwhile (same data, same address)
  await server.stop();
  await server.start();
  for (let i = 11; i <= 20; i++) await alice.send(conv.id, `while away ${i}`).done;
  await proxy.restore();

  await until(() => bodies.length === 21, 20_000, 'all missed messages');
  await new Promise((r) => setTimeout(r, 300));
  const expected = ['before 1', ...Array.from({ length: 20 }, (_, i) => `while away ${i + 1}`)];
  assert.deepEqual(bodies, expected);
  assert.ok(states.includes('reconnecting'));
  assert.equal(bob.state, 'connected');
  bob.disconnect();
  await proxy.close();
});

test('a send whose answer is lost is retried with its client_id and stored once', async () => {
  const alice0 = await user('alice');
  const bob = await user('bob');
  const conv = await alice0.directWith(bob.user.username);
  const proxy = new FaultyProxy(server.url);
  await proxy.start();
  // REST sends (no stream), through a proxy that loses the replies
  const alice = new NatterClient({ server: proxy.url, token: alice0.token, user: alice0.user, ...FAST });
  proxy.dropReplies = true;
  const out = alice.send(conv.id, 'exactly once');
  await until(() => out.attempts >= 3, 10_000, 'retries');
  assert.equal(out.state, 'pending');
  proxy.dropReplies = false;
  const msg = await out.done;
  assert.equal(out.state, 'sent');
  assert.equal(msg.client_id, out.clientId);
  const h = await bob.history(conv.id);
  assert.deepEqual(h.messages.map((m) => m.body), ['exactly once']);
  // the same client_id again, even from another client, is the same message
  const again = await alice0.send(conv.id, 'exactly once', { clientId: out.clientId }).done;
  assert.equal(again.id, msg.id);
  assert.equal((await bob.history(conv.id)).messages.length, 1);
  await proxy.close();
});

test('a send that cannot be acknowledged in time fails, and retry() still does not duplicate', async () => {
  const alice0 = await user('alice');
  const bob = await user('bob');
  const conv = await alice0.directWith(bob.user.username);
  const proxy = new FaultyProxy(server.url);
  await proxy.start();
  const alice = new NatterClient({ server: proxy.url, token: alice0.token, user: alice0.user, ...FAST, sendRetryForMs: 800 });
  proxy.dropReplies = true;
  const out = alice.send(conv.id, 'stubborn');
  await assert.rejects(out.done, (e) => e.retryable);
  assert.equal(out.state, 'failed');
  assert.equal(alice.outgoing(conv.id).length, 1);
  proxy.dropReplies = false;
  const msg = await out.retry();
  assert.equal(out.state, 'sent');
  assert.equal(alice.outgoing(conv.id).length, 0);
  const h = await bob.history(conv.id);
  assert.deepEqual(h.messages.map((m) => m.id), [msg.id]);
  await proxy.close();
});

test('falls back to long-polling where WebSocket is refused, and tries WebSocket again later', async () => {
  const alice = await user('alice');
  const bob0 = await user('bob');
  const conv = await alice.directWith(bob0.user.username);
  const proxy = new FaultyProxy(server.url);
  await proxy.start();
  proxy.blockWebSocket = true;
  const bob = new NatterClient({
    server: proxy.url, WebSocket, token: bob0.token, user: bob0.user, ...FAST,
    websocketFailuresBeforeFallback: 2, retryWebsocketAfterMs: 4000, pollTimeoutS: 1,
  });
  const connected = collect(bob, 'connected');
  const bodies = [];
  bob.on('message.created', ({ message }) => bodies.push(message.body));
  const typing = collect(alice, 'typing');
  alice.connect();
  bob.connect();
  await until(() => bob.state === 'connected', 15_000, 'connected');
  assert.equal(bob.transport, 'long-poll');
  assert.ok(proxy.refusedUpgrades >= 2, `refused ${proxy.refusedUpgrades}`);
  await until(() => alice.state === 'connected', 10_000, 'alice connected');
  await alice.send(conv.id, 'over long-poll').done;
  await until(() => bodies.includes('over long-poll'), 10_000, 'message over long-poll');
  // commands go as POST /api/v1/events
  await bob.typing(conv.id, true);
  await until(() => typing.some((t) => t.user === bob.user.username), 5000, 'typing over long-poll');
  const m = await bob.send(conv.id, 'reply over REST').done;
  assert.equal(m.body, 'reply over REST');

  // WebSocket works again: the SDK goes back to it after retryWebsocketAfterMs
  proxy.blockWebSocket = false;
  await until(() => bob.transport === 'websocket', 20_000, 'back on WebSocket');
  await alice.send(conv.id, 'over WebSocket again').done;
  await until(() => bodies.includes('over WebSocket again'), 10_000, 'message after upgrade');
  assert.deepEqual(bodies, ['over long-poll', 'reply over REST', 'over WebSocket again']);
  assert.deepEqual(connected.map((c) => c.transport), ['long-poll', 'websocket']);
  alice.disconnect();
  bob.disconnect();
  await proxy.close();
});

test('an invalid session ends the stream with a fatal event instead of retrying', async () => {
  const alice = await user('alice');
  const stale = new NatterClient({ server: server.url, WebSocket, token: 'not-a-token', ...FAST });
  const fatal = new Promise((r) => stale.once('fatal', r));
  stale.connect();
  const e = await fatal;
  assert.ok(e.unauthenticated, `${e.code}`);
  assert.equal(stale.state, 'closed');
  // a revoked session too, on a live stream
  alice.connect();
  await until(() => alice.state === 'connected', 10_000, 'connected');
  const ended = new Promise((r) => alice.once('fatal', r));
  const other = new NatterClient({ server: server.url, token: alice.token });
  await other.request('DELETE', '/sessions/current');
  const e2 = await ended;
  assert.ok(e2.unauthenticated, `${e2.code}`);
  assert.equal(alice.state, 'closed');
  // over long-polling too, reported once
  const bob = await user('bob', server.url, { transport: 'long-poll', pollTimeoutS: 1 });
  const fatals = collect(bob, 'fatal');
  bob.connect();
  await until(() => bob.state === 'connected', 10_000, 'bob connected');
  await new NatterClient({ server: server.url, token: bob.token }).request('DELETE', '/sessions/current');
  await until(() => bob.state === 'closed', 10_000, 'bob closed');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(fatals.length, 1);
  assert.equal(fatals[0].code, 'unauthenticated');
  // a wrong password is not a lost session
  const carol = await user('carol');
  const carolFatal = collect(carol, 'fatal');
  await assert.rejects(
    carol.request('PUT', '/me/password', { current_password: 'wrong password', new_password: 'another good one' }),
    (e) => e instanceof NatterError && !e.unauthenticated,
  );
  assert.equal(carolFatal.length, 0);
});
