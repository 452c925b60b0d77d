// Small DOM helpers for the web client. Everything the client shows is
// built with createElement and text nodes: no string ever becomes HTML (the
// page's Content-Security-Policy enforces Trusted Types, so an `innerHTML`
// assignment would throw).

/**
 * Creates an element. `props`: `class`, `text`, `on*` handlers (functions),
 * `dataset` (object), booleans (`hidden`, `disabled`, …) and any other
 * attribute (set with setAttribute). Children: nodes, strings (as text),
 * arrays, or null/false (skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (k === 'value') el.value = v;
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = 'http://www.w3.org/2000/svg';
const ICONS = {
  send: 'M3.4 20.4 21 12 3.4 3.6 3.4 10.1 15 12 3.4 13.9z',
  plus: 'M12 5v14M5 12h14',
  group: 'M16 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM8 11a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM2 19c0-3 3-5 6-5s6 2 6 5M14.5 14.2c.5-.1 1-.2 1.5-.2 3 0 6 2 6 5',
  chat: 'M4 5h16v11H9l-5 4z',
  logout: 'M15 4h4v16h-4M10 8l-4 4 4 4M6 12h10',
  back: 'M15 5l-7 7 7 7',
  edit: 'M4 20h4L19 9l-4-4L4 16zM13.5 6.5l4 4',
  trash: 'M5 7h14M10 11v6M14 11v6M6 7l1 13h10l1-13M9 7V4h6v3',
  close: 'M6 6l12 12M18 6 6 18',
  info: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 11v6M12 7.5v.5',
  search: 'M11 18a7 7 0 1 0 0-14 7 7 0 0 0 0 14zM20 20l-4-4',
  check: 'M4 12.5l5 5L20 6.5',
  checks: 'M1.5 12.5l5 5L17.5 6.5M11 16l1.5 1.5L23 6.5',
  clock: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v5l3 2',
  alert: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v6M12 16.5v.5',
  retry: 'M20 12a8 8 0 1 1-2.3-5.7M20 4v5h-5',
  down: 'M6 9l6 6 6-6',
};

/** An inline SVG icon (decorative: hidden from assistive technology). */
export function icon(name, cls = '') {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `icon ${cls}`.trim());
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('d', ICONS[name] || '');
  if (name === 'send') path.setAttribute('class', 'fill');
  svg.append(path);
  return svg;
}

const PALETTE = 8;
/** A stable colour index for a name, for avatars. */
export function colorOf(name) {
  let x = 0;
  for (const ch of name || '') x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % PALETTE;
}

export function initials(name) {
  const words = String(name || '?').trim().split(/[\s._-]+/).filter(Boolean);
  const first = [...(words[0] || '?')][0] || '?';
  const second = words.length > 1 ? [...words[words.length - 1]][0] : '';
  return (first + (second || '')).toUpperCase();
}

/** An avatar with initials and, if `presence` is given, a presence dot. */
export function avatar(name, { key, presence, size = '', group = false } = {}) {
  const el = h('span', { class: `avatar c${colorOf(key || name)} ${size} ${group ? 'group' : ''}`, 'aria-hidden': 'true' }, initials(name));
  if (presence) el.append(h('span', { class: `dot ${presence}` }));
  return el;
}

// URLs in message text: http(s) only, made into links; anything else
// (`javascript:`, `data:`) stays text.
const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;
const TRAILING = /[.,;:!?)\]}'"]+$/;

/** Message text as nodes: text, with http(s) URLs as safe links. */
export function linkify(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(URL_RE)) {
    let url = m[0];
    const trail = url.match(TRAILING);
    if (trail) url = url.slice(0, -trail[0].length);
    let parsed = null;
    try {
      parsed = new URL(url);
    } catch {
      parsed = null;
    }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) continue;
    if (m.index > last) out.push(document.createTextNode(text.slice(last, m.index)));
    out.push(h('a', { href: parsed.href, target: '_blank', rel: 'noopener noreferrer nofollow ugc' }, url));
    last = m.index + url.length;
  }
  if (last < text.length) out.push(document.createTextNode(text.slice(last)));
  return out;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
const dayYearFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'long', year: 'numeric' });
const shortDayFmt = new Intl.DateTimeFormat(undefined, { weekday: 'short' });
const shortDateFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' });

export const fmtTime = (d) => timeFmt.format(d);
export const fmtFull = (d) => fullFmt.format(d);

/** `YYYY-MM-DD` of a date in local time. */
export function dayKey(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

function daysAgo(d, now = new Date()) {
  const a = new Date(d.getFullYear(), d.getMonth(), d.getDate());
  const b = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  return Math.round((b - a) / 86_400_000);
}

/** "Today", "Yesterday", "Monday 3 November", or with the year. */
export function fmtDay(d) {
  const n = daysAgo(d);
  if (n === 0) return 'Today';
  if (n === 1) return 'Yesterday';
  if (d.getFullYear() === new Date().getFullYear()) return dayFmt.format(d);
  return dayYearFmt.format(d);
}

/** A compact time for the conversation list. */
export function fmtListTime(d) {
  const n = daysAgo(d);
  if (n === 0) return timeFmt.format(d);
  if (n === 1) return 'Yesterday';
  if (n < 7) return shortDayFmt.format(d);
  return shortDateFmt.format(d);
}

/** "last seen 5 minutes ago", "last seen yesterday at 21:04", … */
export function fmtLastSeen(d) {
  const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
  if (s < 60) return 'last seen just now';
  if (s < 3600) {
    const m = Math.floor(s / 60);
    return `last seen ${m} minute${m === 1 ? '' : 's'} ago`;
  }
  const n = daysAgo(d);
  if (n === 0) return `last seen today at ${timeFmt.format(d)}`;
  if (n === 1) return `last seen yesterday at ${timeFmt.format(d)}`;
  return `last seen ${shortDateFmt.format(d)}`;
}

/**
 * Makes `parent`'s children exactly `nodes`, in order, moving as few as
 * possible: a node that is already in place stays (and keeps focus).
 */
export function reconcile(parent, nodes) {
  let cur = parent.firstChild;
  for (const n of nodes) {
    if (cur === n) {
      cur = cur.nextSibling;
      continue;
    }
    parent.insertBefore(n, cur);
  }
  while (cur) {
    const next = cur.nextSibling;
    cur.remove();
    cur = next;
  }
}

/** Runs `fn` at most once per `ms`, at the end (trailing debounce). */
export function debounce(fn, ms) {
  let t = null;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}
