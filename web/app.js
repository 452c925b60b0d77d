// The Natter web client: plain ES modules on top of the JavaScript SDK,
// served by `natter serve` itself. No framework and no build step: the
// state lives in a few Maps, and each part of the screen has a render
// function that rebuilds it from that state (reusing message nodes, so
// focus and scroll survive updates).

import { NatterClient, NatterError } from '/sdk/natter.js';
import {
  h, icon, avatar, linkify, fmtTime, fmtFull, fmtDay, dayKey, fmtListTime, fmtLastSeen, reconcile, debounce,
} from '/dom.js';

const STORAGE_KEY = 'natter.session';
const PAGE = 50;
const GROUP_GAP_MS = 5 * 60 * 1000;

const app = document.getElementById('app');
const toasts = document.getElementById('toasts');

/** Everything the client knows; render functions read it. */
const S = {
  client: null,
  me: null,
  convs: new Map(), // id -> ConversationSummary (+ local fields)
  details: new Map(), // id -> Conversation (members)
  histories: new Map(), // id -> {messages: Message[], hasMore, loading, loaded}
  presence: new Map(), // username -> {status, last_seen_at}
  typing: new Map(), // conversation id -> Map(username -> expiry ms)
  names: new Map(), // username -> display name
  active: null,
  editing: null, // {conversation_id, seq}
  loadedList: false,
  filter: '',
};

// ----- toasts --------------------------------------------------------------

function toast(message, kind = 'error') {
  const t = h('div', { class: `toast ${kind}` }, message);
  toasts.append(t);
  setTimeout(() => t.classList.add('leaving'), 4500);
  setTimeout(() => t.remove(), 5000);
}

function errorText(e) {
  if (e instanceof NatterError) {
    if (e.code === 'network' || e.code === 'timeout') return 'Cannot reach the server. Check your connection.';
    return e.message;
  }
  return String(e?.message ?? e);
}

// ----- names ---------------------------------------------------------------

function nameOf(username) {
  if (!username) return '';
  if (S.me && username === S.me.username) return S.me.display_name || username;
  return S.names.get(username) || username;
}

function learnName(u) {
  if (u?.username) S.names.set(u.username, u.display_name || u.username);
}

function convTitle(c) {
  if (!c) return '';
  if (c.kind === 'direct') return c.peer ? c.peer.display_name || c.peer.username : 'Direct chat';
  return c.title || 'Group';
}

function peerOf(c) {
  return c?.kind === 'direct' ? c.peer?.username : null;
}

/** `online`, `away`, `offline`, or null when the server does not share it with us. */
function presenceOf(username) {
  return S.presence.get(username)?.status || null;
}

// ----- session -------------------------------------------------------------

function saveSession() {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({ token: S.client.token, user: S.me }));
}

function clearSession() {
  localStorage.removeItem(STORAGE_KEY);
}

async function boot() {
  let saved = null;
  try {
    saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || 'null');
  } catch {
    saved = null;
  }
  if (saved?.token) {
    const client = new NatterClient({ token: saved.token, user: saved.user });
    try {
      const me = await client.me();
      client.user = me;
      start(client, me);
      return;
    } catch (e) {
      if (!(e instanceof NatterError) || !e.unauthenticated) {
        // the server is unreachable: start anyway, the stream reconnects
        start(client, saved.user);
        return;
      }
      clearSession();
    }
  }
  renderAuth();
}

// ----- sign-in and sign-up ------------------------------------------------

function renderAuth(mode = 'login', notice = '') {
  app.className = 'auth';
  app.removeAttribute('aria-busy');
  const signup = mode === 'signup';
  const error = h('p', { class: 'form-error', role: 'alert', id: 'auth-error' }, notice);
  const username = h('input', {
    id: 'auth-username', name: 'username', autocomplete: 'username', required: true, autocapitalize: 'none',
    spellcheck: 'false', maxlength: 32, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*',
  });
  const display = h('input', { id: 'auth-display', name: 'display_name', autocomplete: 'name', maxlength: 64 });
  const password = h('input', {
    id: 'auth-password', name: 'password', type: 'password', required: true,
    autocomplete: signup ? 'new-password' : 'current-password', minlength: signup ? 8 : null,
  });
  const submit = h('button', { type: 'submit', class: 'primary wide' }, signup ? 'Create account' : 'Sign in');
  const form = h('form', { class: 'auth-form', 'aria-labelledby': 'auth-title', novalidate: false },
    h('label', { for: 'auth-username' }, 'Username'), username,
    signup && h('label', { for: 'auth-display' }, 'Display name ', h('span', { class: 'hint' }, '(optional)')),
    signup && display,
    h('label', { for: 'auth-password' }, 'Password'), password,
    error,
    submit,
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    error.textContent = '';
    submit.disabled = true;
    const client = new NatterClient();
    const name = username.value.trim().toLowerCase();
    try {
      if (signup) await client.signUp({ username: name, password: password.value, displayName: display.value.trim() || undefined });
      const r = await client.logIn(name, password.value);
      start(client, r.user);
    } catch (e) {
      error.textContent = e?.code === 'invalid_credentials' ? 'Wrong username or password.' : errorText(e);
      submit.disabled = false;
      (e?.field === 'password' ? password : username).focus();
    }
  });
  const switcher = h('p', { class: 'auth-switch' },
    signup ? 'Already have an account? ' : 'New to Natter? ',
    h('button', { type: 'button', class: 'link', onclick: () => renderAuth(signup ? 'login' : 'signup') },
      signup ? 'Sign in' : 'Create an account'));
  app.replaceChildren(
    h('main', { class: 'auth-card' },
      h('div', { class: 'brand' }, h('img', { src: '/favicon.svg', alt: '', class: 'brand-logo' }), h('span', {}, 'Natter')),
      h('h1', { id: 'auth-title' }, signup ? 'Create your account' : 'Welcome back'),
      h('p', { class: 'auth-sub' }, signup ? 'Pick a username; friends find you by it.' : 'Sign in to pick up your conversations.'),
      form, switcher),
  );
  username.focus();
}

// ----- the main screen ----------------------------------------------------

const UI = {};

function start(client, me) {
  S.client = client;
  S.me = me;
  client.user = me;
  saveSession();
  buildMain();
  wireClient();
  client.connect();
  wireWindow();
}

function buildMain() {
  app.className = 'main';
  app.removeAttribute('aria-busy');
  UI.status = h('div', { class: 'conn', role: 'status', 'aria-live': 'polite', id: 'connection-status' });
  UI.search = h('input', {
    type: 'search', class: 'search', placeholder: 'Search conversations', 'aria-label': 'Search conversations',
    oninput: () => {
      S.filter = UI.search.value.trim().toLowerCase();
      renderList();
    },
  });
  UI.list = h('ul', { class: 'conv-list', 'aria-label': 'Conversations' });
  UI.listEmpty = h('div', { class: 'list-empty', hidden: true },
    h('p', {}, 'No conversations yet.'),
    h('button', { type: 'button', class: 'primary', onclick: openNewChat }, icon('plus'), 'Start a chat'));
  UI.meBox = h('div', { class: 'me' });
  const sidebar = h('aside', { class: 'sidebar', 'aria-label': 'Conversations' },
    h('header', { class: 'side-head' },
      UI.meBox,
      h('div', { class: 'side-actions' },
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'New chat', title: 'New chat', onclick: openNewChat }, icon('chat')),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'New group', title: 'New group', onclick: openNewGroup }, icon('group')),
        h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Log out', title: 'Log out', onclick: logOut }, icon('logout')))),
    h('div', { class: 'search-box' }, icon('search', 'search-icon'), UI.search),
    UI.list, UI.listEmpty);
  UI.chat = h('section', { class: 'chat', 'aria-label': 'Chat' });
  app.replaceChildren(UI.status, sidebar, UI.chat);
  renderMe();
  renderConnection();
  renderChat();
}

function renderMe() {
  UI.meBox.replaceChildren(
    avatar(S.me.display_name || S.me.username, { key: S.me.username, presence: S.client.state === 'connected' ? 'online' : 'offline' }),
    h('div', { class: 'me-text' },
      h('span', { class: 'me-name' }, S.me.display_name || S.me.username),
      h('span', { class: 'me-user' }, `@${S.me.username}`)),
  );
}

function renderConnection() {
  const c = S.client;
  const state = c.state;
  let text = '';
  if (state === 'connecting') text = 'Connecting…';
  else if (state === 'reconnecting' || (state === 'closed' && S.client.token)) text = 'Reconnecting…';
  document.body.dataset.connection = state;
  document.body.dataset.transport = c.transport || '';
  UI.status.textContent = text;
  UI.status.classList.toggle('visible', !!text);
  UI.status.prepend(...(text ? [h('span', { class: 'spinner', 'aria-hidden': 'true' })] : []));
  renderMe();
}

// ----- the client's events ------------------------------------------------

function wireClient() {
  const c = S.client;
  c.on('state', () => {
    renderConnection();
    if (S.active) renderChatHead();
  });
  c.on('connected', async () => {
    renderConnection();
    // the first connection (or one after the stream had to start over)
    // loads the list; a resumed stream replays what was missed
    if (!S.loadedList) await loadList();
    c.setPresence(document.visibilityState === 'hidden' ? 'away' : 'online').catch(() => {});
    if (S.active) markReadSoon();
  });
  c.on('fatal', (e) => {
    if (e.unauthenticated) {
      clearSession();
      teardown();
      renderAuth('login', 'Your session ended. Please sign in again.');
    }
  });
  c.on('message.created', ({ conversation_id: id, message }) => onMessage(id, message, true));
  c.on('message.edited', ({ conversation_id: id, message }) => onMessage(id, message, false));
  c.on('message.deleted', ({ conversation_id: id, message }) => onMessage(id, message, false));
  c.on('receipt.read', ({ conversation_id: id, user, seq }) => {
    const conv = S.convs.get(id);
    if (conv && user === S.me.username && seq > conv.read_seq) {
      conv.read_seq = seq;
      conv.unread = Math.max(0, conv.last_seq - conv.read_seq);
      renderList();
    }
  });
  c.on('markers', ({ conversation_id: id }) => {
    if (id === S.active) renderMessages();
  });
  c.on('outgoing', (out) => {
    if (out.state === 'sent' && out.message) addToHistory(out.conversationId, out.message);
    if (out.conversationId === S.active) renderMessages();
    touchConv(out.conversationId);
  });
  c.on('typing', ({ conversation_id: id, user, active, expires_in_ms: ms }) => {
    if (user === S.me.username) return;
    let m = S.typing.get(id);
    if (!m) S.typing.set(id, (m = new Map()));
    if (active) m.set(user, Date.now() + (ms || 6000));
    else m.delete(user);
    renderTyping(id);
  });
  c.on('presence', ({ user, status, last_seen_at }) => {
    S.presence.set(user, { status, last_seen_at: last_seen_at || S.presence.get(user)?.last_seen_at });
    renderList();
    if (S.active) renderChatHead();
  });
  c.on('conversation.created', ({ kind }) => {
    loadList();
    // a new direct peer's presence is not announced until it changes
    if (kind === 'direct') c.refreshPresence().catch(() => {});
  });
  c.on('member.added', ({ conversation_id: id, user, display_name }) => {
    S.names.set(user, display_name || user);
    if (user === S.me.username || !S.convs.has(id)) loadList();
    else refreshDetails(id);
  });
  c.on('member.role_changed', ({ conversation_id: id }) => {
    loadList();
    refreshDetails(id);
  });
  c.on('member.removed', ({ conversation_id: id, user }) => {
    if (user === S.me.username) {
      S.convs.delete(id);
      S.details.delete(id);
      S.histories.delete(id);
      if (S.active === id) S.active = null;
      renderList();
      renderChat();
    } else refreshDetails(id);
  });
  c.on('conversation.renamed', ({ conversation_id: id, title }) => {
    const conv = S.convs.get(id);
    if (conv) conv.title = title;
    const d = S.details.get(id);
    if (d) d.title = title;
    renderList();
    if (id === S.active) renderChatHead();
  });
  // typing indicators expire on their own
  setInterval(() => {
    const now = Date.now();
    for (const [id, m] of S.typing) {
      let changed = false;
      for (const [u, exp] of m) {
        if (exp < now) {
          m.delete(u);
          changed = true;
        }
      }
      if (changed) renderTyping(id);
    }
  }, 1000);
}

let windowWired = false;
function wireWindow() {
  if (windowWired) return;
  windowWired = true;
  // the browser knows before any timeout that the network came back
  window.addEventListener('online', () => S.client?.reconnectNow());
  window.addEventListener('offline', () => S.client?.reconnectNow());
  document.addEventListener('visibilitychange', () => {
    if (!S.client || S.client.state !== 'connected') return;
    S.client.setPresence(document.visibilityState === 'hidden' ? 'away' : 'online').catch(() => {});
    if (document.visibilityState === 'visible') markReadSoon();
  });
  window.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && S.editing) cancelEdit();
  });
  // a minute passes: "last seen 3 minutes ago" and list times move on
  setInterval(() => {
    if (S.client) {
      renderList();
      if (S.active) renderChatHead();
    }
  }, 60_000);
}

function teardown() {
  S.client?.disconnect();
  S.client = null;
  S.convs.clear();
  S.details.clear();
  S.histories.clear();
  S.presence.clear();
  S.typing.clear();
  S.active = null;
  S.loadedList = false;
}

async function logOut() {
  const c = S.client;
  teardown();
  clearSession();
  app.setAttribute('aria-busy', 'true');
  try {
    // end the session on the server before showing the sign-in page, so
    // that a reload right after cannot cut the request off
    await c.logOut();
  } catch {
    // the token is forgotten locally either way
  }
  renderAuth('login');
}

// ----- conversations -------------------------------------------------------

async function loadList() {
  try {
    const list = await S.client.allConversations();
    const seen = new Set();
    for (const c of list) {
      seen.add(c.id);
      const old = S.convs.get(c.id);
      // an event may have moved things on while the page was in flight
      if (old && old.last_seq > c.last_seq) {
        c.last_seq = old.last_seq;
        c.last_message = old.last_message;
        c.last_activity_at = old.last_activity_at;
      }
      if (old && old.read_seq > c.read_seq) c.read_seq = old.read_seq;
      c.unread = Math.max(0, c.last_seq - c.read_seq);
      if (c.peer) learnName(c.peer);
      S.convs.set(c.id, c);
    }
    for (const id of [...S.convs.keys()]) if (!seen.has(id)) S.convs.delete(id);
    S.loadedList = true;
    renderList();
    if (S.active) renderChatHead();
  } catch (e) {
    if (!e.unauthenticated) toast(errorText(e));
  }
}

function touchConv(id) {
  if (S.convs.has(id)) renderList();
}

function onMessage(id, message, created) {
  const conv = S.convs.get(id);
  if (!conv) {
    loadList();
    return;
  }
  if (message.seq >= conv.last_seq) {
    conv.last_seq = message.seq;
    conv.last_message = message;
    if (created) conv.last_activity_at = message.sent_at;
  } else if (conv.last_message?.seq === message.seq) conv.last_message = message;
  if (message.sender === S.me.username) conv.read_seq = Math.max(conv.read_seq, message.seq);
  conv.unread = Math.max(0, conv.last_seq - conv.read_seq);
  if (created) S.typing.get(id)?.delete(message.sender);
  addToHistory(id, message);
  renderList();
  if (id === S.active) {
    renderMessages();
    renderTyping(id);
    markReadSoon();
  }
}

function addToHistory(id, message) {
  const hist = S.histories.get(id);
  // kept even while the first page loads: the page is merged with it, so
  // a message acknowledged meanwhile is not lost from the view
  if (!hist) return;
  const msgs = hist.messages;
  const i = msgs.findIndex((m) => m.seq === message.seq);
  if (i >= 0) msgs[i] = message;
  else {
    // usually the newest: append; otherwise insert in order
    if (!msgs.length || msgs[msgs.length - 1].seq < message.seq) msgs.push(message);
    else {
      const j = msgs.findIndex((m) => m.seq > message.seq);
      msgs.splice(j, 0, message);
    }
  }
}

async function refreshDetails(id) {
  try {
    const d = await S.client.conversation(id);
    S.details.set(id, d);
    for (const m of d.members) learnName(m);
    if (id === S.active) {
      renderChatHead();
      renderMessages();
    }
    if (UI.membersDialog?.open && UI.membersDialog.dataset.id === id) renderMembers(id);
  } catch (e) {
    if (e.code !== 'not_member') toast(errorText(e));
  }
}

function sortedConvs() {
  return [...S.convs.values()].sort((a, b) => (a.last_activity_at < b.last_activity_at ? 1 : -1));
}

function previewOf(c) {
  const typers = typingUsers(c.id);
  if (typers.length) return { text: typingText(c, typers), typing: true };
  const m = c.last_message;
  if (!m) return { text: c.kind === 'group' ? `${c.member_count} members` : 'Say hello 👋' };
  const who = m.sender === S.me.username ? 'You: ' : c.kind === 'group' ? `${nameOf(m.sender).split(' ')[0]}: ` : '';
  const body = m.deleted_at ? 'Message deleted' : (m.body || '').replace(/\s+/g, ' ');
  return { text: who + body, deleted: !!m.deleted_at };
}

const listItems = new Map(); // id -> {li, button}

function renderList() {
  if (!UI.list) return;
  const convs = sortedConvs().filter((c) => !S.filter || convTitle(c).toLowerCase().includes(S.filter) || (c.peer?.username || '').includes(S.filter));
  const nodes = [];
  for (const c of convs) {
    let item = listItems.get(c.id);
    if (!item) {
      const button = h('button', { type: 'button', class: 'conv', onclick: () => openConversation(c.id) });
      item = { li: h('li', {}, button), button };
      listItems.set(c.id, item);
    }
    const title = convTitle(c);
    const peer = peerOf(c);
    const presence = peer ? presenceOf(peer) : null;
    const p = previewOf(c);
    const unread = c.id === S.active ? 0 : c.unread;
    const label = [title, peer ? presence : `group, ${c.member_count} members`, unread ? `${unread} unread` : null, p.text]
      .filter(Boolean).join(', ');
    item.button.setAttribute('aria-label', label);
    if (c.id === S.active) item.button.setAttribute('aria-current', 'true');
    else item.button.removeAttribute('aria-current');
    item.button.classList.toggle('unread', unread > 0);
    item.button.dataset.id = c.id;
    item.button.replaceChildren(
      avatar(title, { key: peer || c.id, presence: peer ? presence : null, group: c.kind === 'group' }),
      h('span', { class: 'conv-main' },
        h('span', { class: 'conv-top' },
          h('span', { class: 'conv-title' }, title),
          h('time', { class: 'conv-time', datetime: c.last_activity_at }, fmtListTime(new Date(c.last_activity_at)))),
        h('span', { class: 'conv-bottom' },
          h('span', { class: `conv-preview ${p.typing ? 'typing' : ''} ${p.deleted ? 'deleted' : ''}` }, p.text),
          unread > 0 && h('span', { class: 'badge', 'aria-hidden': 'true' }, unread > 99 ? '99+' : String(unread)))),
    );
    nodes.push(item.li);
  }
  reconcile(UI.list, nodes);
  UI.listEmpty.hidden = !(S.loadedList && S.convs.size === 0);
  const total = [...S.convs.values()].reduce((n, c) => n + (c.id === S.active ? 0 : c.unread), 0);
  document.title = total ? `(${total > 99 ? '99+' : total}) Natter` : 'Natter';
}

// ----- the chat view --------------------------------------------------------

async function openConversation(id) {
  if (S.editing) cancelEdit();
  S.active = id;
  // where "New messages" goes: after what had been read when it was opened
  const conv = S.convs.get(id);
  S.unreadFrom = conv && conv.unread > 0 ? conv.read_seq + 1 : null;
  app.classList.add('chat-open');
  renderList();
  renderChat();
  refreshDetails(id);
  let hist = S.histories.get(id);
  if (!hist) {
    hist = { messages: [], hasMore: true, loading: false, loaded: false };
    S.histories.set(id, hist);
  }
  if (!hist.loaded) {
    hist.loading = true;
    renderMessages();
    try {
      const page = await S.client.history(id, { limit: PAGE });
      hist.messages = mergeMessages(hist.messages, page.messages);
      hist.hasMore = page.has_more;
      hist.loaded = true;
    } catch (e) {
      toast(errorText(e));
    } finally {
      hist.loading = false;
    }
    if (S.active === id) {
      renderMessages({ toBottom: true });
      revealUnread();
    }
  } else {
    renderMessages({ toBottom: true });
    revealUnread();
  }
  markReadSoon();
  UI.input?.focus();
}

/** With more unread than fits, start at the "New messages" line. */
function revealUnread() {
  const divider = UI.messages?.querySelector('.unread-divider');
  if (!divider) return;
  const s = UI.scroller;
  const top = divider.offsetTop - 12;
  if (s.scrollTop > top) s.scrollTop = top;
}

/** How far a message has moved on (edits and deletion), to keep the newest copy. */
const versionOf = (m) => (m.deleted_at ? `2${m.deleted_at}` : m.edited_at ? `1${m.edited_at}` : '0');

function mergeMessages(a, b) {
  const m = new Map();
  for (const x of a) m.set(x.seq, x);
  for (const x of b) {
    const old = m.get(x.seq);
    if (!old || versionOf(x) >= versionOf(old)) m.set(x.seq, x);
  }
  return [...m.values()].sort((x, y) => x.seq - y.seq);
}

function closeConversation() {
  if (S.editing) cancelEdit();
  S.unreadFrom = null;
  const id = S.active;
  S.active = null;
  app.classList.remove('chat-open');
  renderList();
  renderChat();
  const item = id && listItems.get(id);
  item?.button.focus();
}

const markReadSoon = debounce(() => {
  const id = S.active;
  const conv = id && S.convs.get(id);
  if (!conv || document.visibilityState === 'hidden' || S.client?.state !== 'connected') return;
  if (conv.last_seq > conv.read_seq) {
    const seq = conv.last_seq;
    S.client.markRead(id, seq).then((readSeq) => {
      conv.read_seq = Math.max(conv.read_seq, readSeq);
      conv.unread = Math.max(0, conv.last_seq - conv.read_seq);
      renderList();
    }).catch(() => {});
  }
}, 250);

function renderChat() {
  messageNodes.clear();
  if (!S.active || !S.convs.has(S.active)) {
    UI.input = null;
    UI.chat.replaceChildren(
      h('div', { class: 'empty-chat' },
        h('div', { class: 'empty-art', 'aria-hidden': 'true' }, icon('chat')),
        h('h2', {}, 'Your conversations'),
        h('p', {}, 'Pick a conversation on the left, or start a new one.'),
        h('div', { class: 'empty-actions' },
          h('button', { type: 'button', class: 'primary', onclick: openNewChat }, icon('chat'), 'New chat'),
          h('button', { type: 'button', class: 'secondary', onclick: openNewGroup }, icon('group'), 'New group'))),
    );
    return;
  }
  UI.head = h('header', { class: 'chat-head' });
  UI.messages = h('div', { class: 'messages', role: 'log', 'aria-label': 'Messages', 'aria-live': 'polite', tabindex: '0' });
  UI.sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
  UI.scroller = h('div', { class: 'scroller' }, UI.sentinel, UI.messages);
  UI.jump = h('button', { type: 'button', class: 'jump', hidden: true, 'aria-label': 'Jump to the latest message', onclick: () => scrollToBottom(true) }, icon('down'));
  UI.typing = h('div', { class: 'typing-line', 'aria-live': 'polite' });
  UI.editBar = h('div', { class: 'edit-bar', hidden: true });
  UI.input = h('textarea', { class: 'composer-input', rows: 1, placeholder: 'Write a message…', 'aria-label': 'Message', maxlength: 16000 });
  UI.sendBtn = h('button', { type: 'submit', class: 'send', 'aria-label': 'Send' }, icon('send'));
  UI.composer = h('form', { class: 'composer', 'aria-label': 'Write a message' }, UI.input, UI.sendBtn);
  UI.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submitComposer();
  });
  UI.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      submitComposer();
    } else if (ev.key === 'ArrowUp' && !UI.input.value && !S.editing) {
      const mine = (S.histories.get(S.active)?.messages || []).filter((m) => m.sender === S.me.username && !m.deleted_at);
      if (mine.length) {
        ev.preventDefault();
        startEdit(mine[mine.length - 1]);
      }
    }
  });
  UI.input.addEventListener('input', () => {
    autoGrow();
    typingInput();
  });
  UI.input.addEventListener('blur', () => stopTyping());
  UI.scroller.addEventListener('scroll', onScroll, { passive: true });
  UI.chat.replaceChildren(
    UI.head,
    h('div', { class: 'scroll-wrap' }, UI.scroller, UI.jump),
    h('footer', { class: 'chat-foot' }, UI.typing, UI.editBar, UI.composer),
  );
  observeTop();
  renderChatHead();
  renderTyping(S.active);
}

function renderChatHead() {
  const c = S.convs.get(S.active);
  if (!c || !UI.head) return;
  const peer = peerOf(c);
  const title = convTitle(c);
  let sub = '';
  const typers = typingUsers(c.id);
  if (typers.length) sub = typingText(c, typers);
  else if (S.client.state !== 'connected') sub = 'connecting…';
  else if (peer) {
    const p = S.presence.get(peer);
    if (p?.status === 'online') sub = 'online';
    else if (p?.status === 'away') sub = 'away';
    else if (p?.last_seen_at) sub = fmtLastSeen(new Date(p.last_seen_at));
    else sub = `@${peer}`;
  } else {
    const d = S.details.get(c.id);
    const members = d?.members || [];
    const online = members.filter((m) => m.username !== S.me.username && presenceOf(m.username) === 'online').length;
    sub = `${c.member_count} members${online ? `, ${online} online` : ''}`;
  }
  UI.head.replaceChildren(...[
    h('button', { type: 'button', class: 'icon-btn back', 'aria-label': 'Back to conversations', onclick: closeConversation }, icon('back')),
    avatar(title, { key: peer || c.id, presence: peer ? presenceOf(peer) : null, group: c.kind === 'group' }),
    h('div', { class: 'chat-title' },
      h('h2', { id: 'chat-title' }, title),
      h('p', { class: `chat-sub ${typers.length ? 'typing' : ''}`, id: 'chat-sub' }, sub)),
    c.kind === 'group'
      ? h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Group members and settings', title: 'Members', onclick: () => openMembers(c.id) }, icon('info'))
      : null,
  ].filter(Boolean));
}

function typingUsers(id) {
  const m = S.typing.get(id);
  return m ? [...m.keys()] : [];
}

function typingText(c, users) {
  if (c.kind === 'direct') return 'typing…';
  const names = users.map((u) => nameOf(u).split(' ')[0]);
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length === 2) return `${names[0]} and ${names[1]} are typing…`;
  return 'Several people are typing…';
}

function renderTyping(id) {
  renderList();
  if (id !== S.active || !UI.typing) return;
  const c = S.convs.get(id);
  const users = typingUsers(id);
  UI.typing.replaceChildren(...(users.length
    ? [h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', {}, c.kind === 'direct' ? `${nameOf(users[0])} is typing…` : typingText(c, users))]
    : []));
  UI.typing.classList.toggle('visible', users.length > 0);
  renderChatHead();
}

// ----- messages ------------------------------------------------------------

const messageNodes = new Map(); // key -> {sig, el}

function stateLabel(state) {
  return { pending: 'Sending', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Not sent' }[state] || '';
}

function stateIcon(state) {
  const name = { pending: 'clock', sent: 'check', delivered: 'checks', read: 'checks', failed: 'alert' }[state];
  return h('span', { class: `state ${state}`, role: 'img', 'aria-label': stateLabel(state), title: stateLabel(state), dataset: { state } }, icon(name));
}

function messageNode(m, { first, group, state, out }) {
  const own = m.sender === S.me.username;
  const deleted = !!m.deleted_at;
  const sig = JSON.stringify([m.body, m.edited_at, m.deleted_at, first, state, out?.state, S.editing?.seq === m.seq]);
  const key = out ? `out-${out.clientId}` : `m-${m.seq}`;
  const cached = messageNodes.get(key);
  if (cached && cached.sig === sig) return cached.el;
  const sent = new Date(m.sent_at);
  const text = h('div', { class: 'text' }, deleted ? 'This message was deleted' : linkify(m.body || ''));
  const meta = h('div', { class: 'meta' },
    m.edited_at && !deleted ? h('span', { class: 'edited' }, 'edited') : null,
    h('time', { datetime: m.sent_at, title: fmtFull(sent) }, fmtTime(sent)),
    own && !deleted ? stateIcon(state) : null);
  const bubble = h('div', { class: 'bubble' },
    group && !own && first ? h('div', { class: 'sender' }, nameOf(m.sender)) : null,
    text, meta);
  const actions = [];
  if (own && !deleted && !out) {
    actions.push(
      h('button', { type: 'button', class: 'msg-action', 'aria-label': 'Edit message', title: 'Edit', onclick: () => startEdit(m) }, icon('edit')),
      h('button', { type: 'button', class: 'msg-action', 'aria-label': 'Delete message', title: 'Delete', onclick: () => confirmDelete(m) }, icon('trash')),
    );
  }
  if (out?.state === 'failed') {
    actions.push(
      h('button', { type: 'button', class: 'msg-action', 'aria-label': 'Retry sending', title: 'Retry', onclick: () => out.retry() }, icon('retry')),
      h('button', { type: 'button', class: 'msg-action', 'aria-label': 'Discard message', title: 'Discard', onclick: () => { out.discard(); renderMessages(); } }, icon('close')),
    );
  }
  const el = h('div', {
    class: `msg ${own ? 'own' : 'other'} ${first ? 'first' : 'cont'} ${deleted ? 'deleted' : ''} ${S.editing?.seq === m.seq ? 'editing' : ''}`,
    dataset: { seq: m.seq ?? '', sender: m.sender, state: state || '' },
  },
  group && !own ? (first ? avatar(nameOf(m.sender), { key: m.sender, size: 'sm' }) : h('span', { class: 'avatar-gap' })) : null,
  bubble,
  actions.length ? h('div', { class: 'msg-actions' }, actions) : null);
  messageNodes.set(key, { sig, el });
  return el;
}

function renderMessages({ toBottom = false, keepFrom = null } = {}) {
  const id = S.active;
  if (!id || !UI.messages) return;
  const hist = S.histories.get(id);
  const conv = S.convs.get(id);
  const group = conv?.kind === 'group';
  const atBottom = isAtBottom();
  const nodes = [];
  if (hist?.loading && !hist.messages.length) nodes.push(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading messages…'));
  if (hist?.loaded && !hist.hasMore) {
    nodes.push(messageNodes.get('start')?.el || cacheNode('start', h('div', { class: 'conv-start' }, group ? `${convTitle(conv)} was created` : 'This is the beginning of your conversation.')));
  } else if (hist?.loading && hist.messages.length) nodes.push(h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Loading earlier messages…'));
  const items = [...(hist?.messages || [])];
  const outs = S.client.outgoing(id).map((o) => ({
    seq: null, sender: S.me.username, body: o.body, sent_at: o.createdAt.toISOString(), edited_at: null, deleted_at: null,
    client_id: o.clientId, conversation_id: id, _out: o,
  }));
  const known = new Set(items.map((m) => m.client_id + '|' + m.sender));
  for (const o of outs) if (!known.has(o.client_id + '|' + o.sender)) items.push(o);
  let prev = null;
  for (const m of items) {
    const d = new Date(m.sent_at);
    const day = dayKey(d);
    if (!prev || dayKey(new Date(prev.sent_at)) !== day) {
      const key = `day-${day}`;
      nodes.push(messageNodes.get(key)?.el || cacheNode(key, h('div', { class: 'day', role: 'separator' }, h('span', {}, fmtDay(d)))));
      prev = null;
    }
    let divided = false;
    if (S.unreadFrom != null && m.seq === S.unreadFrom && m.sender !== S.me.username) {
      nodes.push(messageNodes.get('unread')?.el || cacheNode('unread', h('div', { class: 'unread-divider', role: 'separator', 'aria-label': 'New messages' }, h('span', {}, 'New messages'))));
      divided = true;
    }
    const first = divided || !prev || prev.sender !== m.sender || d - new Date(prev.sent_at) > GROUP_GAP_MS || !!prev.deleted_at !== !!m.deleted_at;
    const out = m._out;
    const state = m.sender === S.me.username ? (out ? out.state : S.client.messageState(m)) : null;
    nodes.push(messageNode(m, { first, group, state, out }));
    prev = m;
  }
  const before = UI.scroller.scrollHeight;
  const top = UI.scroller.scrollTop;
  reconcile(UI.messages, nodes);
  if (keepFrom != null) UI.scroller.scrollTop = top + (UI.scroller.scrollHeight - before);
  else if (toBottom || atBottom) scrollToBottom();
  UI.jump.hidden = isAtBottom();
}

function cacheNode(key, el) {
  messageNodes.set(key, { sig: '', el });
  return el;
}

function isAtBottom() {
  const s = UI.scroller;
  return !s || s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

function scrollToBottom(smooth = false) {
  const s = UI.scroller;
  if (!s) return;
  s.scrollTo({ top: s.scrollHeight, behavior: smooth ? 'smooth' : 'instant' });
  UI.jump.hidden = true;
}

function onScroll() {
  if (UI.jump) UI.jump.hidden = isAtBottom();
  if (isAtBottom()) markReadSoon();
}

let topObserver = null;
function observeTop() {
  topObserver?.disconnect();
  topObserver = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadOlder();
  }, { root: UI.scroller, rootMargin: '400px 0px 0px 0px' });
  topObserver.observe(UI.sentinel);
}

async function loadOlder() {
  const id = S.active;
  const hist = S.histories.get(id);
  if (!hist || !hist.loaded || hist.loading || !hist.hasMore || !hist.messages.length) return;
  hist.loading = true;
  renderMessages({ keepFrom: true });
  try {
    const page = await S.client.history(id, { before: hist.messages[0].seq, limit: PAGE });
    hist.messages = mergeMessages(hist.messages, page.messages);
    hist.hasMore = page.has_more;
  } catch (e) {
    toast(errorText(e));
  } finally {
    hist.loading = false;
  }
  if (S.active === id) {
    renderMessages({ keepFrom: true });
    // still at the top (a short page): keep going
    requestAnimationFrame(() => {
      if (UI.scroller && UI.scroller.scrollTop < 400) loadOlder();
    });
  }
}

// ----- composing -----------------------------------------------------------

function autoGrow() {
  const t = UI.input;
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 180)}px`;
}

let typingSentAt = 0;
let typingStop = null;
let typingConv = null;
function typingInput() {
  if (S.editing) return;
  const id = S.active;
  clearTimeout(typingStop);
  if (!UI.input.value.trim()) {
    stopTyping();
    return;
  }
  const now = Date.now();
  if (now - typingSentAt > 3000 || typingConv !== id) {
    typingSentAt = now;
    typingConv = id;
    S.client.typing(id, true).catch(() => {});
  }
  typingStop = setTimeout(stopTyping, 5000);
}

function stopTyping() {
  clearTimeout(typingStop);
  if (typingConv && typingSentAt) {
    const id = typingConv;
    typingSentAt = 0;
    typingConv = null;
    S.client?.typing(id, false).catch(() => {});
  }
}

async function submitComposer() {
  const id = S.active;
  const body = UI.input.value;
  if (!body.trim()) return;
  if (S.editing) {
    const { seq } = S.editing;
    try {
      const m = await S.client.editMessage(id, seq, body.trim());
      addToHistory(id, m);
      cancelEdit();
      renderMessages();
    } catch (e) {
      toast(errorText(e));
    }
    return;
  }
  UI.input.value = '';
  S.unreadFrom = null;
  autoGrow();
  clearTimeout(typingStop);
  typingSentAt = 0;
  typingConv = null;
  S.client.send(id, body);
  renderMessages({ toBottom: true });
}

function startEdit(m) {
  S.editing = { conversation_id: m.conversation_id, seq: m.seq, draft: UI.input.value };
  UI.editBar.hidden = false;
  UI.editBar.replaceChildren(
    icon('edit'),
    h('div', { class: 'edit-text' }, h('strong', {}, 'Editing message'), h('span', {}, m.body || '')),
    h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Cancel editing', onclick: cancelEdit }, icon('close')),
  );
  UI.input.value = m.body || '';
  UI.input.setAttribute('aria-label', 'Edit message');
  UI.sendBtn.setAttribute('aria-label', 'Save edit');
  autoGrow();
  UI.input.focus();
  renderMessages();
}

function cancelEdit() {
  const draft = S.editing?.draft || '';
  S.editing = null;
  if (!UI.input) return;
  UI.editBar.hidden = true;
  UI.input.value = draft;
  UI.input.setAttribute('aria-label', 'Message');
  UI.sendBtn.setAttribute('aria-label', 'Send');
  autoGrow();
  renderMessages();
  UI.input.focus();
}

async function confirmDelete(m) {
  const ok = await confirmDialog('Delete this message?', 'It will be removed for everyone in the conversation.', 'Delete');
  if (!ok) return;
  try {
    const t = await S.client.deleteMessage(m.conversation_id, m.seq);
    addToHistory(m.conversation_id, t);
    renderMessages();
  } catch (e) {
    toast(errorText(e));
  }
}

// ----- dialogs -------------------------------------------------------------

let dialogs = 0;
function dialog(title, ...content) {
  const titleId = `dialog-title-${++dialogs}`;
  const d = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
    h('header', { class: 'dialog-head' },
      h('h2', { id: titleId }, title),
      h('button', { type: 'button', class: 'icon-btn', 'aria-label': 'Close', onclick: () => d.close() }, icon('close'))),
    ...content);
  d.addEventListener('close', () => setTimeout(() => d.remove(), 0));
  document.body.append(d);
  d.showModal();
  return d;
}

function confirmDialog(title, text, action) {
  return new Promise((resolve) => {
    let result = false;
    const yes = h('button', { type: 'button', class: 'danger', onclick: () => { result = true; d.close(); } }, action);
    const no = h('button', { type: 'button', class: 'secondary', onclick: () => d.close() }, 'Cancel');
    const d = dialog(title, h('p', { class: 'dialog-text' }, text), h('div', { class: 'dialog-actions' }, no, yes));
    d.addEventListener('close', () => resolve(result));
    no.focus();
  });
}

/** A directory search box with a result list; `pick(user)` on choice. */
function userSearch({ label, pick, exclude = () => false }) {
  const input = h('input', { type: 'search', class: 'field', 'aria-label': label, placeholder: 'Search by name or username', autocomplete: 'off' });
  const results = h('ul', { class: 'user-results', 'aria-label': 'Search results' });
  const status = h('p', { class: 'hint', role: 'status' });
  const run = debounce(async () => {
    const q = input.value.trim();
    if (!q) {
      results.replaceChildren();
      status.textContent = '';
      return;
    }
    try {
      const users = (await S.client.searchUsers(q, { limit: 20 })).filter((u) => u.username !== S.me.username && !exclude(u));
      users.forEach(learnName);
      status.textContent = users.length ? '' : 'No one found.';
      results.replaceChildren(...users.map((u) => h('li', {},
        h('button', { type: 'button', class: 'user-row', onclick: () => pick(u), 'aria-label': `${u.display_name || u.username} (@${u.username})` },
          avatar(u.display_name || u.username, { key: u.username, presence: S.presence.has(u.username) ? presenceOf(u.username) : null }),
          h('span', { class: 'user-text' }, h('span', { class: 'user-name' }, u.display_name || u.username), h('span', { class: 'user-handle' }, `@${u.username}`))))));
    } catch (e) {
      status.textContent = errorText(e);
    }
  }, 200);
  input.addEventListener('input', run);
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowDown') {
      ev.preventDefault();
      results.querySelector('button')?.focus();
    }
  });
  results.addEventListener('keydown', (ev) => {
    const buttons = [...results.querySelectorAll('button')];
    const i = buttons.indexOf(document.activeElement);
    if (ev.key === 'ArrowDown' && i < buttons.length - 1) {
      ev.preventDefault();
      buttons[i + 1].focus();
    } else if (ev.key === 'ArrowUp') {
      ev.preventDefault();
      (i > 0 ? buttons[i - 1] : input).focus();
    }
  });
  return { input, el: h('div', { class: 'user-search' }, input, status, results) };
}

function openNewChat() {
  const search = userSearch({
    label: 'Find people',
    pick: async (u) => {
      try {
        const c = await S.client.directWith(u.username);
        d.close();
        S.client.refreshPresence().catch(() => {});
        await loadList();
        openConversation(c.id);
      } catch (e) {
        toast(errorText(e));
      }
    },
  });
  const d = dialog('New chat', h('p', { class: 'dialog-text' }, 'Find someone in the directory to start a conversation.'), search.el);
  search.input.focus();
}

function openNewGroup() {
  const picked = new Map();
  const chips = h('ul', { class: 'chips', 'aria-label': 'Members to add' });
  const renderChips = () => chips.replaceChildren(...[...picked.values()].map((u) => h('li', { class: 'chip' },
    u.display_name || u.username,
    h('button', { type: 'button', class: 'chip-x', 'aria-label': `Remove ${u.display_name || u.username}`, onclick: () => { picked.delete(u.username); renderChips(); } }, icon('close')))));
  const title = h('input', { id: 'group-title', class: 'field', required: true, maxlength: 100, placeholder: 'e.g. Weekend trip' });
  const search = userSearch({
    label: 'Add people',
    exclude: (u) => picked.has(u.username),
    pick: (u) => {
      picked.set(u.username, u);
      renderChips();
      search.input.value = '';
      search.input.dispatchEvent(new Event('input'));
      search.input.focus();
    },
  });
  const error = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { class: 'dialog-form' },
    h('label', { for: 'group-title' }, 'Group name'), title,
    h('label', {}, 'Members'), chips, search.el, error,
    h('div', { class: 'dialog-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create group')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (!title.value.trim()) {
      error.textContent = 'Give the group a name.';
      title.focus();
      return;
    }
    try {
      const c = await S.client.createGroup(title.value.trim(), [...picked.keys()]);
      d.close();
      await loadList();
      openConversation(c.id);
    } catch (e) {
      error.textContent = errorText(e);
    }
  });
  const d = dialog('New group', form);
  title.focus();
}

function openMembers(id) {
  UI.membersDialog = dialog('Group', h('div', { class: 'members-body' }));
  UI.membersDialog.dataset.id = id;
  renderMembers(id);
  refreshDetails(id);
}

function renderMembers(id) {
  const d = UI.membersDialog;
  const body = d?.querySelector('.members-body');
  const conv = S.details.get(id);
  const summary = S.convs.get(id);
  if (!body || !conv) return;
  const myRole = summary?.role || conv.members.find((m) => m.username === S.me.username)?.role;
  const canManage = myRole === 'owner' || myRole === 'admin';
  const parts = [];
  if (canManage) {
    const titleInput = h('input', { id: 'rename-title', class: 'field', value: conv.title || '', maxlength: 100 });
    const rename = h('form', { class: 'inline-form' },
      h('label', { for: 'rename-title', class: 'visually-hidden' }, 'Group name'), titleInput,
      h('button', { type: 'submit', class: 'secondary' }, 'Rename'));
    rename.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      try {
        await S.client.renameConversation(id, titleInput.value.trim());
        toast('Group renamed', 'info');
      } catch (e) {
        toast(errorText(e));
      }
    });
    parts.push(rename);
  } else parts.push(h('p', { class: 'group-name' }, conv.title || 'Group'));
  parts.push(h('h3', {}, `${conv.members.length} members`));
  const members = [...conv.members].sort((a, b) => roleRank(a.role) - roleRank(b.role) || a.username.localeCompare(b.username));
  parts.push(h('ul', { class: 'member-list', 'aria-label': 'Members' }, members.map((m) => {
    const isMe = m.username === S.me.username;
    const controls = [];
    if (canManage && !isMe && m.role !== 'owner') {
      if (myRole === 'owner') {
        const select = h('select', { 'aria-label': `Role of ${m.display_name || m.username}`, class: 'role-select' },
          h('option', { value: 'member' }, 'Member'), h('option', { value: 'admin' }, 'Admin'));
        select.value = m.role;
        select.addEventListener('change', async () => {
          try {
            await S.client.putMember(id, m.username, select.value);
            refreshDetails(id);
          } catch (e) {
            toast(errorText(e));
          }
        });
        controls.push(select);
      }
      controls.push(h('button', {
        type: 'button', class: 'icon-btn danger-icon', 'aria-label': `Remove ${m.display_name || m.username}`, title: 'Remove from group',
        onclick: async () => {
          try {
            await S.client.removeMember(id, m.username);
            refreshDetails(id);
          } catch (e) {
            toast(errorText(e));
          }
        },
      }, icon('trash')));
    }
    return h('li', { class: 'member' },
      avatar(m.display_name || m.username, { key: m.username, presence: isMe ? null : presenceOf(m.username), size: 'sm' }),
      h('span', { class: 'user-text' },
        h('span', { class: 'user-name' }, (m.display_name || m.username) + (isMe ? ' (you)' : '')),
        h('span', { class: 'user-handle' }, `@${m.username}`)),
      m.role !== 'member' ? h('span', { class: `role ${m.role}` }, m.role) : null,
      ...controls);
  })));
  if (canManage) {
    const search = userSearch({
      label: 'Add a member',
      exclude: (u) => conv.members.some((m) => m.username === u.username),
      pick: async (u) => {
        try {
          await S.client.putMember(id, u.username);
          search.input.value = '';
          refreshDetails(id);
        } catch (e) {
          toast(errorText(e));
        }
      },
    });
    parts.push(h('h3', {}, 'Add people'), search.el);
  }
  parts.push(h('div', { class: 'dialog-actions' }, h('button', {
    type: 'button', class: 'danger',
    onclick: async () => {
      const ok = await confirmDialog('Leave this group?', 'You will stop receiving its messages.', 'Leave');
      if (!ok) return;
      try {
        await S.client.leave(id);
        d.close();
      } catch (e) {
        toast(errorText(e));
      }
    },
  }, 'Leave group')));
  const focused = document.activeElement;
  const focusLabel = focused && body.contains(focused) ? focused.getAttribute('aria-label') : null;
  body.replaceChildren(...parts);
  if (focusLabel) body.querySelector(`[aria-label="${CSS.escape(focusLabel)}"]`)?.focus();
}

function roleRank(r) {
  return { owner: 0, admin: 1, member: 2 }[r] ?? 3;
}

boot();
