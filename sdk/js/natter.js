// Natter JavaScript SDK: the REST API and the real-time event stream of a
// Natter server, for browsers and Node (18+). No runtime dependencies.
//
// It mirrors the Rust SDK (`natter-client`): one event stream over
// WebSocket that falls back to long-polling by itself, reconnects with
// backoff and resumes from its cursor (nothing missed, nothing twice), and
// sends that carry a `client_id` chosen once and are retried with it until
// the server acknowledges them, so a lost answer never duplicates a
// message. Types are in natter.d.ts; examples in README.md.
//
// Licensed MIT OR Apache-2.0, like the rest of Natter.

/** The real-time protocol version this SDK speaks. */
export const PROTOCOL = 1;
/** The WebSocket subprotocol of that version. */
export const SUBPROTOCOL = 'natter.v1';

/** Close codes of the real-time protocol (docs/protocol.md). */
export const CloseCode = Object.freeze({
  SHUTTING_DOWN: 1001,
  TOO_BIG: 1009,
  UNAVAILABLE: 1011,
  UNAUTHENTICATED: 4001,
  SESSION_REVOKED: 4003,
  TOO_SLOW: 4008,
  IDLE: 4009,
});

/**
 * An error from the server or the network. `code` is the server's stable
 * error code (`not_member`, `invalid_field`, …) or one of the SDK's own:
 * `network`, `timeout`, `protocol`, `unauthenticated`.
 */
export class NatterError extends Error {
  constructor(code, message, { status = 0, field, retryAfterMs } = {}) {
    super(message);
    this.name = 'NatterError';
    this.code = code;
    this.status = status;
    if (field !== undefined) this.field = field;
    if (retryAfterMs !== undefined) this.retryAfterMs = retryAfterMs;
  }

  /** Whether trying again with the same request may succeed. */
  get retryable() {
    return (
      this.code === 'network' ||
      this.code === 'timeout' ||
      this.code === 'not_acknowledged' ||
      this.status === 429 ||
      this.status >= 500
    );
  }

  /** Whether the session is gone and the user must log in again. */
  get unauthenticated() {
    return this.code === 'unauthenticated' || this.code === 'session_revoked';
  }
}

const DEFAULTS = Object.freeze({
  transport: 'auto',
  requestTimeoutMs: 30_000,
  connectTimeoutMs: 10_000,
  backoff: { initialMs: 250, maxMs: 30_000, multiplier: 2, jitter: 0.3 },
  sendRetryForMs: 120_000,
  websocketFailuresBeforeFallback: 3,
  retryWebsocketAfterMs: 300_000,
  pollTimeoutS: 25,
  pingIntervalMs: 20_000,
  pingTimeoutMs: 10_000,
  stableAfterMs: 10_000,
});

/** Exponential backoff with jitter (jitter only shortens a wait). */
class Backoff {
  constructor(policy) {
    this.policy = policy;
    this.attempt = 0;
  }
  next() {
    const p = this.policy;
    const base = Math.min(p.initialMs * Math.pow(Math.max(p.multiplier, 1), Math.min(this.attempt, 64)), p.maxMs);
    this.attempt += 1;
    return Math.max(0, base * (1 - Math.min(Math.max(p.jitter, 0), 1) * Math.random()));
  }
  reset() {
    this.attempt = 0;
  }
}

/** A random UUID (v4), for `client_id`s and command refs. */
export function newClientId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  const b = new Uint8Array(16);
  globalThis.crypto.getRandomValues(b);
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/** Events that carry a cursor and are replayed on resume. */
const DURABLE = /^(message|receipt|conversation|member)\./;

/**
 * A client of one Natter server: REST calls, the event stream, and sends
 * tracked until acknowledged.
 *
 * ```js
 * const natter = new NatterClient({ server: 'http://127.0.0.1:8080' });
 * await natter.logIn('alice', 'correct horse');
 * natter.on('message.created', ({ message }) => console.log(message.sender, message.body));
 * natter.connect();
 * ```
 */
export class NatterClient {
  /**
   * @param {object} [options] see `ClientOptions` in natter.d.ts
   */
  constructor(options = {}) {
    const o = { ...DEFAULTS, ...options, backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) } };
    this.options = o;
    this.server = (o.server ?? (globalThis.location ? globalThis.location.origin : '')).replace(/\/+$/, '');
    this.token = o.token ?? null;
    this.user = o.user ?? null;
    this._fetch = o.fetch ?? globalThis.fetch?.bind(globalThis);
    this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this._listeners = new Map();
    /** Resume position: the last durable event received (or where the stream started). */
    this.cursor = o.cursor ?? null;
    /** `idle`, `connecting`, `connected`, `reconnecting` or `closed`. */
    this.state = 'idle';
    /** `websocket` or `long-poll` while connected. */
    this.transport = null;
    this._run = null;
    this._ws = null;
    this._pending = new Map(); // ref -> {resolve, reject, timer}
    this._refs = 0;
    this._outgoing = new Map(); // client_id -> Outgoing
    this._markers = new Map(); // conversation_id -> Map(username -> {read, delivered})
  }

  // ----- events ---------------------------------------------------------

  /**
   * Subscribes to an event (`message.created`, `receipt.read`, `typing`,
   * `presence`, …, `*` for all of them, or the SDK's own `connected`,
   * `disconnected`, `state`, `outgoing`, `markers`, `fatal`). Returns a
   * function that unsubscribes.
   */
  on(name, fn) {
    if (!this._listeners.has(name)) this._listeners.set(name, new Set());
    this._listeners.get(name).add(fn);
    return () => this._listeners.get(name)?.delete(fn);
  }

  /** Like `on`, for one call only. */
  once(name, fn) {
    const off = this.on(name, (...a) => {
      off();
      fn(...a);
    });
    return off;
  }

  /** Retries waiting sends now (the connection is back). */
  _wakeOutgoing() {
    for (const out of this._outgoing.values()) out._wake?.();
  }

  _emit(name, data, frame) {
    for (const key of [name, '*']) {
      const set = this._listeners.get(key);
      if (!set) continue;
      for (const fn of [...set]) {
        try {
          key === '*' ? fn(name, data, frame) : fn(data, frame);
        } catch (e) {
          // a listener's bug must not stop the stream
          queueMicrotask(() => {
            throw e;
          });
        }
      }
    }
  }

  _setState(state) {
    if (this.state === state) return;
    this.state = state;
    this._emit('state', state);
  }

  // ----- REST -------------------------------------------------------------

  /**
   * One REST call: `path` below `/api/v1`, `body` sent as JSON. Resolves to
   * the parsed answer (`null` for 204); rejects with a `NatterError`.
   */
  async request(method, path, body, { timeoutMs, auth = true, signal, raw = false, reportFatal = true } = {}) {
    if (!this._fetch) throw new NatterError('config', 'no fetch implementation: pass options.fetch');
    const headers = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth && this.token) headers.authorization = `Bearer ${this.token}`;
    const ctl = new AbortController();
    const limit = timeoutMs ?? this.options.requestTimeoutMs;
    const timer = setTimeout(() => ctl.abort(), limit);
    const onAbort = () => ctl.abort();
    signal?.addEventListener('abort', onAbort, { once: true });
    let resp;
    try {
      resp = await this._fetch(`${this.server}/api/v1${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: ctl.signal,
        credentials: 'omit',
      });
    } catch (e) {
      if (signal?.aborted) throw new NatterError('aborted', 'the request was aborted');
      if (ctl.signal.aborted) throw new NatterError('timeout', `no answer within ${limit} ms`);
      throw new NatterError('network', `network error: ${e?.message ?? e}`);
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    }
    let data = null;
    const text = await resp.text().catch(() => '');
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!resp.ok) {
      const err = data?.error;
      const ra = Number(resp.headers.get('retry-after'));
      const e = new NatterError(err?.code ?? `http_${resp.status}`, err?.message ?? `HTTP ${resp.status}`, {
        status: resp.status,
        field: err?.field,
        retryAfterMs: Number.isFinite(ra) && ra > 0 ? ra * 1000 : undefined,
      });
      // the token is no longer valid (a wrong password given to, say,
      // a password change is `invalid_credentials` and ends nothing)
      if (resp.status === 401 && auth && reportFatal && this.token && e.code === 'unauthenticated') this._emit('fatal', e);
      throw e;
    }
    return raw ? { status: resp.status, data } : data;
  }

  /** Creates an account (does not log in). */
  signUp({ username, password, displayName }) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return this.request('POST', '/accounts', body, { auth: false });
  }

  /** Logs in; keeps the token and the user on the client. */
  async logIn(username, password) {
    const r = await this.request('POST', '/sessions', { username, password }, { auth: false });
    this.token = r.token;
    this.user = r.user;
    return r;
  }

  /** Ends this session on the server and closes the stream. */
  async logOut() {
    const token = this.token;
    this.disconnect();
    if (token) {
      try {
        await this.request('DELETE', '/sessions/current');
      } catch (e) {
        if (e.status !== 401) throw e;
      }
    }
    this.token = null;
    this.user = null;
    this.cursor = null;
  }

  me() {
    return this.request('GET', '/me');
  }
  updateMe({ displayName }) {
    return this.request('PATCH', '/me', { display_name: displayName ?? null });
  }
  sessions() {
    return this.request('GET', '/sessions').then((r) => r.sessions);
  }
  searchUsers(q, { limit } = {}) {
    const qs = new URLSearchParams({ q });
    if (limit) qs.set('limit', String(limit));
    return this.request('GET', `/users?${qs}`).then((r) => r.users);
  }
  getUser(username) {
    return this.request('GET', `/users/${encodeURIComponent(username)}`);
  }
  contacts() {
    return this.request('GET', '/contacts').then((r) => r.contacts);
  }
  addContact(username, { name, groups } = {}) {
    return this.request('PUT', `/contacts/${encodeURIComponent(username)}`, { name: name ?? null, groups: groups ?? [] });
  }
  removeContact(username) {
    return this.request('DELETE', `/contacts/${encodeURIComponent(username)}`);
  }
  /** The blocked list, ordered by username. */
  blocks() {
    return this.request('GET', '/blocks').then((r) => r.blocks);
  }
  block(username) {
    return this.request('PUT', `/blocks/${encodeURIComponent(username)}`);
  }
  unblock(username) {
    return this.request('DELETE', `/blocks/${encodeURIComponent(username)}`);
  }
  unblockAll() {
    return this.request('DELETE', '/blocks');
  }
  /** One page of conversations, most recently active first. */
  conversations({ cursor, limit } = {}) {
    const qs = new URLSearchParams();
    if (cursor) qs.set('cursor', cursor);
    if (limit) qs.set('limit', String(limit));
    const q = qs.toString();
    return this.request('GET', `/conversations${q ? `?${q}` : ''}`);
  }
  /** Every conversation, following `next_cursor`. */
  async allConversations() {
    const out = [];
    let cursor;
    do {
      const page = await this.conversations({ cursor, limit: 100 });
      out.push(...page.conversations);
      cursor = page.next_cursor;
    } while (cursor);
    return out;
  }
  /** A conversation with its members (and their read and delivered markers). */
  async conversation(id) {
    const c = await this.request('GET', `/conversations/${id}`);
    this._learnMembers(c);
    return c;
  }
  /** The direct conversation with `username`, started if needed. */
  directWith(username) {
    return this.request('POST', '/conversations', { kind: 'direct', with: username });
  }
  createGroup(title, members = []) {
    return this.request('POST', '/conversations', { kind: 'group', title, members });
  }
  renameConversation(id, title) {
    return this.request('PATCH', `/conversations/${id}`, { title });
  }
  /** Adds a member, or changes a member's role (`member`, `admin`, `owner`). */
  putMember(id, username, role) {
    return this.request('PUT', `/conversations/${id}/members/${encodeURIComponent(username)}`, role ? { role } : {});
  }
  removeMember(id, username) {
    return this.request('DELETE', `/conversations/${id}/members/${encodeURIComponent(username)}`);
  }
  /** Leaves a group. */
  leave(id) {
    return this.removeMember(id, this.user?.username);
  }
  /** History in ascending order; `before`/`after` are sequence numbers. */
  history(id, { before, after, limit } = {}) {
    const qs = new URLSearchParams();
    if (before != null) qs.set('before', String(before));
    if (after != null) qs.set('after', String(after));
    if (limit != null) qs.set('limit', String(limit));
    const q = qs.toString();
    return this.request('GET', `/conversations/${id}/messages${q ? `?${q}` : ''}`);
  }
  editMessage(id, seq, body) {
    return this.request('PATCH', `/conversations/${id}/messages/${seq}`, { body }).then((r) => r.message);
  }
  deleteMessage(id, seq) {
    return this.request('DELETE', `/conversations/${id}/messages/${seq}`).then((r) => r.message);
  }
  /** Moves the read marker forward (over the stream when connected). */
  async markRead(id, seq) {
    const r = await this.command({ type: 'read', conversation_id: id, seq });
    return r.read_seq;
  }
  /**
   * Fetches the presence of everyone whose presence the user sees and
   * delivers it as `presence` events (the stream sends it only when it
   * opens and on changes: call this after starting a direct conversation).
   */
  async refreshPresence() {
    const r = await this.request('GET', '/presence');
    for (const frame of r.events) this._dispatch(frame);
    return r.events.map((f) => f.data);
  }
  /** Tells the members whether the user is typing. */
  async typing(id, active = true) {
    await this.command({ type: 'typing', conversation_id: id, active });
  }
  /** `online` or `away` (`offline` only over long-polling). */
  async setPresence(status) {
    await this.command({ type: 'presence', status });
  }

  /**
   * Sends one command frame: over the WebSocket when it is open, else as
   * `POST /api/v1/events`. Resolves to the reply's `data`.
   */
  async command(frame) {
    if (this._ws && this.transport === 'websocket' && this.state === 'connected') {
      return this._wsCommand(frame);
    }
    const reply = await this.request('POST', '/events', frame);
    if (reply && reply.ok === false) throw replyError(reply.error);
    return reply?.data ?? null;
  }

  _wsCommand(frame, timeoutMs = this.options.requestTimeoutMs) {
    const ws = this._ws;
    return new Promise((resolve, reject) => {
      const ref = `c${++this._refs}`;
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new NatterError('timeout', `no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this._pending.set(ref, { resolve, reject, timer, ws });
      try {
        ws.send(JSON.stringify({ ...frame, ref }));
      } catch (e) {
        clearTimeout(timer);
        this._pending.delete(ref);
        reject(new NatterError('network', `could not send: ${e?.message ?? e}`));
      }
    });
  }

  _failPending(ws, reason) {
    for (const [ref, p] of this._pending) {
      if (p.ws !== ws) continue;
      clearTimeout(p.timer);
      this._pending.delete(ref);
      p.reject(new NatterError('not_acknowledged', reason));
    }
  }

  // ----- sending --------------------------------------------------------

  /**
   * Sends a message. Returns an `Outgoing` at once, in state `pending`;
   * it is retried with the same `client_id` (network failures, server
   * errors, rate limits) until acknowledged (`sent`) or until
   * `sendRetryForMs` passes (`failed`; `retry()` tries again, still without
   * risk of a duplicate). Its `done` promise resolves to the stored message.
   */
  send(conversationId, body, { clientId } = {}) {
    const out = new Outgoing(this, conversationId, body, clientId ?? newClientId());
    this._outgoing.set(out.clientId, out);
    out._start();
    return out;
  }

  /** Messages sent from here that are not yet acknowledged or that failed. */
  outgoing(conversationId) {
    return [...this._outgoing.values()].filter(
      (o) => (conversationId == null || o.conversationId === conversationId) && o.state !== 'sent',
    );
  }

  async _sendOnce(out) {
    const frame = { type: 'send', conversation_id: out.conversationId, client_id: out.clientId, body: out.body };
    if (this._ws && this.transport === 'websocket' && this.state === 'connected') {
      const r = await this._wsCommand(frame);
      return r.message;
    }
    const r = await this.request('POST', `/conversations/${out.conversationId}/messages`, {
      client_id: out.clientId,
      body: out.body,
    });
    return r.message;
  }

  // ----- receipts -------------------------------------------------------

  _learnMembers(c) {
    const m = new Map();
    for (const member of c.members || []) {
      m.set(member.username, { read: member.read_seq, delivered: Math.max(member.delivered_seq, member.read_seq) });
    }
    this._markers.set(c.id, m);
    this._emit('markers', { conversation_id: c.id });
  }

  _moveMarker(conversationId, user, kind, seq) {
    let m = this._markers.get(conversationId);
    if (!m) {
      m = new Map();
      this._markers.set(conversationId, m);
    }
    const cur = m.get(user) ?? { read: 0, delivered: 0 };
    if (kind === 'read') {
      cur.read = Math.max(cur.read, seq);
      cur.delivered = Math.max(cur.delivered, seq);
    } else {
      cur.delivered = Math.max(cur.delivered, seq);
    }
    m.set(user, cur);
    this._emit('markers', { conversation_id: conversationId, user, kind, seq });
  }

  /**
   * The state of a message of the user's own: `sent`, `delivered` (every
   * other member's device has it) or `read` (every other member has read
   * it), from the markers known to the client (`conversation(id)` loads
   * them; receipt events move them). Messages of others are `received`.
   */
  messageState(message) {
    if (!message) return null;
    const pending = this._outgoing.get(message.client_id);
    if (pending && pending.state !== 'sent' && message.seq == null) return pending.state;
    if (this.user && message.sender !== this.user.username) return 'received';
    const m = this._markers.get(message.conversation_id);
    if (!m) return 'sent';
    let others = 0;
    let read = true;
    let delivered = true;
    for (const [user, mk] of m) {
      if (user === message.sender) continue;
      others += 1;
      if (mk.read < message.seq) read = false;
      if (mk.delivered < message.seq) delivered = false;
    }
    if (others === 0) return 'sent';
    return read ? 'read' : delivered ? 'delivered' : 'sent';
  }

  /** Known markers of a conversation: `Map(username -> {read, delivered})`. */
  markers(conversationId) {
    return this._markers.get(conversationId) ?? new Map();
  }

  // ----- the event stream -----------------------------------------------

  /**
   * Opens the event stream and keeps it open: reconnects with backoff,
   * resumes from `cursor` (or from the current position), falls back to
   * long-polling where WebSocket fails and tries WebSocket again later.
   * Ends only on `disconnect()` or an error reconnecting cannot fix (the
   * session is invalid: a `fatal` event).
   */
  connect({ cursor } = {}) {
    if (cursor !== undefined) this.cursor = cursor;
    if (this._run) return;
    const run = { abort: new AbortController(), wsFailures: 0, longPollSince: null, wake: null };
    this._run = run;
    this._setState('connecting');
    this._loop(run);
  }

  /** Closes the event stream. */
  disconnect() {
    const run = this._run;
    this._run = null;
    if (run) run.abort.abort();
    if (this._ws) {
      const ws = this._ws;
      this._ws = null;
      this._failPending(ws, 'disconnected');
      try {
        ws.close(1000);
      } catch {
        // already closed
      }
    }
    this.transport = null;
    this._setState('closed');
  }

  /**
   * Drops the current connection and reconnects at once (without
   * backoff): for when the application knows the network came back
   * (a browser's `online` event).
   */
  reconnectNow() {
    const run = this._run;
    if (!run) return;
    run.backoffReset = true;
    if (run.wake) run.wake();
    if (this._ws) {
      try {
        this._ws.close(4000, 'reconnecting');
      } catch {
        // already closed
      }
    }
    if (run.pollAbort) run.pollAbort.abort();
  }

  async _loop(run) {
    const backoff = new Backoff(this.options.backoff);
    const signal = run.abort.signal;
    while (!signal.aborted) {
      const transport =
        this.options.transport === 'auto'
          ? run.longPollSince != null
            ? 'long-poll'
            : 'websocket'
          : this.options.transport;
      const end = transport === 'long-poll' ? await this._longPoll(run) : await this._websocket(run);
      if (signal.aborted || this._run !== run) return;
      if (end.fatal) {
        this._run = null;
        this.transport = null;
        this._setState('closed');
        this._emit('fatal', end.fatal);
        return;
      }
      if (end.upgrade) continue;
      if (end.connected || run.backoffReset) backoff.reset();
      run.backoffReset = false;
      const fellBack = transport === 'websocket' && this._judge(run, end.verdict);
      let wait = fellBack ? 0 : Math.max(backoff.next(), end.minWait ?? 0);
      const reason = fellBack ? `${end.reason}; falling back to long-polling` : end.reason;
      this.transport = null;
      this._setState('reconnecting');
      this._emit('disconnected', { transport, reason, retryInMs: wait });
      if (wait > 0) {
        await new Promise((resolve) => {
          const t = setTimeout(resolve, wait);
          run.wake = () => {
            clearTimeout(t);
            resolve();
          };
          signal.addEventListener('abort', run.wake, { once: true });
        });
        run.wake = null;
      }
    }
  }

  /** Records a WebSocket attempt's outcome; true when it is time to fall back. */
  _judge(run, verdict) {
    if (this.options.transport !== 'auto') return false;
    let fallBack = false;
    if (verdict === 'healthy') run.wsFailures = 0;
    else if (verdict === 'failed') {
      run.wsFailures += 1;
      fallBack = run.wsFailures >= this.options.websocketFailuresBeforeFallback;
    }
    if (fallBack) run.longPollSince = Date.now();
    return fallBack;
  }

  _streamUrl() {
    const base = this.server || (globalThis.location ? globalThis.location.origin : '');
    return `${base.replace(/^http/, 'ws')}/api/v1/stream`;
  }

  /** Is the server reachable over plain HTTP? Tells a WebSocket-hostile path from a dead network. */
  async _reachable() {
    try {
      const r = await this._fetch(`${this.server}/healthz`, {
        signal: AbortSignal.timeout ? AbortSignal.timeout(5000) : undefined,
        credentials: 'omit',
      });
      return r.ok;
    } catch {
      return false;
    }
  }

  _dispatch(frame) {
    if (frame.type !== 'event') return;
    if (frame.cursor) this.cursor = frame.cursor;
    const d = frame.data || {};
    switch (frame.event) {
      case 'receipt.read':
      case 'receipt.delivered':
        this._moveMarker(d.conversation_id, d.user, frame.event === 'receipt.read' ? 'read' : 'delivered', d.seq);
        break;
      case 'message.created': {
        const out = this._outgoing.get(d.message?.client_id);
        if (out && d.message.sender === this.user?.username) out._acknowledged(d.message);
        // the sender has read its own message
        if (d.message) this._moveMarker(d.conversation_id, d.message.sender, 'read', d.message.seq);
        break;
      }
      case 'member.removed': {
        this._markers.get(d.conversation_id)?.delete(d.user);
        break;
      }
      case 'member.added': {
        const m = this._markers.get(d.conversation_id);
        if (m && !m.has(d.user)) m.set(d.user, { read: 0, delivered: 0 });
        break;
      }
    }
    this._emit(frame.event, d, frame);
  }

  _websocket(run) {
    const signal = run.abort.signal;
    const WS = this._WebSocket;
    if (!WS) return Promise.resolve({ reason: 'no WebSocket implementation', verdict: 'refused' });
    if (!this.token) return Promise.resolve({ fatal: new NatterError('unauthenticated', 'not logged in') });
    return new Promise((resolve) => {
      let ws;
      try {
        ws = new WS(this._streamUrl(), SUBPROTOCOL);
      } catch (e) {
        resolve({ reason: `cannot open a WebSocket: ${e?.message ?? e}`, verdict: 'refused' });
        return;
      }
      this._ws = ws;
      let hello = null;
      let started = 0;
      let done = false;
      let lastFrame = Date.now();
      let pingTimer = null;
      const resumed = this.cursor != null;
      const finish = async (end) => {
        if (done) return;
        done = true;
        clearTimeout(openTimer);
        clearInterval(pingTimer);
        signal.removeEventListener('abort', onAbort);
        if (this._ws === ws) this._ws = null;
        this._failPending(ws, end.reason ?? 'the connection closed');
        try {
          ws.close();
        } catch {
          // already closed
        }
        // a failure before hello: a WebSocket-hostile path, or no network at all?
        if (end.verdict === 'failed' && !hello && !signal.aborted && !(await this._reachable())) {
          end.verdict = 'unreachable';
        }
        resolve(end);
      };
      const onAbort = () => finish({ reason: 'closed' });
      signal.addEventListener('abort', onAbort, { once: true });
      const openTimer = setTimeout(
        () => finish({ reason: 'no hello from the server in time', verdict: 'failed' }),
        this.options.connectTimeoutMs,
      );
      ws.onopen = () => {
        ws.send(JSON.stringify({ type: 'auth', ref: 'auth', token: this.token, ...(this.cursor ? { cursor: this.cursor } : {}) }));
      };
      ws.onmessage = (msg) => {
        lastFrame = Date.now();
        let frame;
        try {
          frame = JSON.parse(typeof msg.data === 'string' ? msg.data : String(msg.data));
        } catch {
          return;
        }
        if (!hello) {
          if (frame.type === 'hello') {
            hello = frame;
            started = Date.now();
            clearTimeout(openTimer);
            if (!this.cursor) this.cursor = frame.cursor;
            this.transport = 'websocket';
            this._setState('connected');
            this._wakeOutgoing();
            this._emit('connected', { transport: 'websocket', cursor: this.cursor, resumed, user: frame.user });
            // app-level pings find a dead connection that TCP has not noticed
            pingTimer = setInterval(() => {
              if (Date.now() - lastFrame > this.options.pingIntervalMs + this.options.pingTimeoutMs) {
                finish({ reason: 'no answer from the server', connected: true, verdict: 'healthy' });
                return;
              }
              this._wsCommand({ type: 'ping' }, this.options.pingTimeoutMs).catch(() => {});
            }, this.options.pingIntervalMs);
          } else if (frame.type === 'reply' && frame.ok === false) {
            const e = replyError(frame.error);
            finish(e.code === 'unauthenticated' || e.code === 'invalid_field' || e.status === 401 ? { fatal: e } : { reason: e.message, verdict: 'healthy' });
          }
          return;
        }
        if (frame.type === 'reply') {
          const p = this._pending.get(frame.ref);
          if (p) {
            this._pending.delete(frame.ref);
            clearTimeout(p.timer);
            frame.ok ? p.resolve(frame.data ?? null) : p.reject(replyError(frame.error));
          }
        } else if (frame.type === 'event') {
          this._dispatch(frame);
        }
      };
      ws.onerror = () => {
        // onclose follows with the details
      };
      ws.onclose = (ev) => {
        const code = ev?.code ?? 1006;
        const reason = ev?.reason || '';
        if (code === CloseCode.UNAUTHENTICATED) {
          finish({ fatal: new NatterError('unauthenticated', reason || 'the token was not accepted; log in again', { status: 401 }) });
        } else if (code === CloseCode.SESSION_REVOKED) {
          finish({ fatal: new NatterError('session_revoked', reason || 'the session was revoked; log in again', { status: 401 }) });
        } else if (code === CloseCode.TOO_BIG) {
          finish({ fatal: new NatterError('protocol', reason || 'a frame was too large') });
        } else {
          // closed before hello (a server that is up answers auth at
          // once), or dropped abnormally soon after: the path is hostile
          // to WebSocket
          const stable = hello && Date.now() - started >= this.options.stableAfterMs;
          const healthy = hello ? stable || code !== 1006 : false;
          finish({
            reason: `the connection closed (${code}${reason ? `: ${reason}` : ''})`,
            connected: !!hello,
            verdict: healthy ? 'healthy' : 'failed',
          });
        }
      };
    });
  }

  async _longPoll(run) {
    const signal = run.abort.signal;
    if (!this.token) return { fatal: new NatterError('unauthenticated', 'not logged in') };
    const o = this.options;
    const resumed = this.cursor != null;
    let announced = false;
    const fail = (e) => {
      if (e.code === 'aborted') return { reason: 'closed', connected: announced };
      if (e.retryable) return { reason: e.message, connected: announced, minWait: e.retryAfterMs ?? 0 };
      return { fatal: e };
    };
    for (;;) {
      if (signal.aborted) return { reason: 'closed' };
      if (run.longPollSince != null && Date.now() - run.longPollSince >= o.retryWebsocketAfterMs) {
        run.longPollSince = null;
        // one more failure falls back again
        run.wsFailures = Math.max(0, o.websocketFailuresBeforeFallback - 1);
        return { upgrade: true };
      }
      let wait = o.pollTimeoutS;
      if (!announced) wait = 0;
      else if (run.longPollSince != null) {
        const left = Math.ceil((o.retryWebsocketAfterMs - (Date.now() - run.longPollSince)) / 1000);
        wait = Math.max(0, Math.min(wait, left));
      }
      const qs = new URLSearchParams({ timeout: String(wait) });
      if (this.cursor) qs.set('cursor', this.cursor);
      run.pollAbort = new AbortController();
      const onAbort = () => run.pollAbort.abort();
      signal.addEventListener('abort', onAbort, { once: true });
      let poll;
      try {
        poll = await this.request('GET', `/events?${qs}`, undefined, {
          timeoutMs: wait * 1000 + o.requestTimeoutMs,
          signal: run.pollAbort.signal,
          // the stream's loop reports it, once
          reportFatal: false,
        });
      } catch (e) {
        return fail(e);
      } finally {
        signal.removeEventListener('abort', onAbort);
      }
      if (signal.aborted) return { reason: 'closed' };
      if (!this.cursor) this.cursor = poll.cursor;
      if (!announced) {
        announced = true;
        this.transport = 'long-poll';
        this._setState('connected');
        this._wakeOutgoing();
        this._emit('connected', { transport: 'long-poll', cursor: this.cursor, resumed });
      }
      for (const frame of poll.events) this._dispatch(frame);
      this.cursor = poll.cursor;
    }
  }
}

function replyError(error) {
  const code = error?.code ?? 'protocol';
  const status = code === 'unauthenticated' || code === 'session_revoked' ? 401 : code === 'rate_limited' ? 429 : 0;
  return new NatterError(code, error?.message ?? 'the command failed', { status, field: error?.field });
}

/**
 * A message being sent: `state` is `pending` until the server
 * acknowledges it (`sent`, with `message` set) or retrying ends (`failed`,
 * with `error` set). Each change is announced as an `outgoing` event of
 * the client. `done` resolves to the stored message.
 */
export class Outgoing {
  constructor(client, conversationId, body, clientId) {
    this.client = client;
    this.conversationId = conversationId;
    this.body = body;
    this.clientId = clientId;
    this.state = 'pending';
    this.message = null;
    this.error = null;
    this.attempts = 0;
    this.createdAt = new Date();
    this._wake = null;
    this._settle = null;
    this.done = new Promise((resolve, reject) => {
      this._settle = { resolve, reject };
    });
    // an unobserved failure is still reported through `state`
    this.done.catch(() => {});
  }

  _set(state) {
    this.state = state;
    this.client._emit('outgoing', this);
  }

  async _start() {
    const c = this.client;
    const backoff = new Backoff(c.options.backoff);
    const deadline = c.options.sendRetryForMs == null ? Infinity : Date.now() + c.options.sendRetryForMs;
    this._set('pending');
    while (this.state === 'pending') {
      this.attempts += 1;
      try {
        const message = await c._sendOnce(this);
        this._acknowledged(message);
        return;
      } catch (e) {
        if (this.state !== 'pending') return;
        if (!(e instanceof NatterError) || !e.retryable) {
          this._fail(e);
          return;
        }
        const wait = Math.max(backoff.next(), e.retryAfterMs ?? 0);
        if (Date.now() + wait > deadline) {
          this._fail(e);
          return;
        }
        // the wait ends early when the stream reconnects: the network is back
        const wake = new AbortController();
        this._wake = () => wake.abort();
        await sleep(wait, wake.signal);
        this._wake = null;
      }
    }
  }

  _acknowledged(message) {
    if (this.state === 'sent') return;
    this.message = message;
    this.error = null;
    this.client._outgoing.delete(this.clientId);
    this._set('sent');
    this._settle.resolve(message);
  }

  _fail(e) {
    this.error = e;
    this._set('failed');
    this._settle.reject(e);
  }

  /** After `failed`: try again with the same `client_id` (never a duplicate). */
  retry() {
    if (this.state !== 'failed') return this.done;
    this.error = null;
    this.done = new Promise((resolve, reject) => {
      this._settle = { resolve, reject };
    });
    this.done.catch(() => {});
    this._start();
    return this.done;
  }

  /** Stops tracking a failed message (the application gave up on it). */
  discard() {
    this.client._outgoing.delete(this.clientId);
  }
}
