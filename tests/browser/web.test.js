// The web client in a real browser (Debian's Chromium through
// playwright-core) against a real `natter serve`: people sign up, find each
// other, chat, lose the network, lose WebSocket, and receive hostile text.
// Every page is watched for console errors, CSP violations and requests to
// other hosts. Screenshots go to target/screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { NatterServer, uniqueName } from '../../sdk/js/test/server.js';
import { launch, openPage, screenshot, cspViolations } from './browser.js';

const PASSWORD = 'correct horse battery';
const WAIT = { timeout: 15_000 };
let server;
let browser;
const pages = [];

before(async () => {
  server = new NatterServer();
  await server.start();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await server?.close();
});

/** A fresh browser context signed up as a new user. */
async function person(display, opts = {}) {
  const p = await openPage(browser.browser, server.url, opts);
  pages.push(p);
  const username = uniqueName(display.toLowerCase());
  const { page } = p;
  await page.goto('/');
  await page.getByRole('heading', { name: 'Welcome back' }).waitFor(WAIT);
  if (opts.screenshot) await screenshot(page, 'sign-in');
  await page.getByRole('button', { name: 'Create an account' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel(/Display name/).fill(display);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Create account' }).click();
  await connected(page);
  return { ...p, username, display };
}

async function connected(page, transport) {
  await page.waitForFunction(
    (t) => document.body.dataset.connection === 'connected' && (!t || document.body.dataset.transport === t),
    transport, WAIT,
  );
}

/** No console errors, page errors, CSP violations or foreign requests. */
async function clean(p) {
  assert.deepEqual(p.problems, [], 'problems on the page');
  assert.deepEqual(await cspViolations(p.page), [], 'CSP violations');
}

async function startChat(p, other) {
  const { page } = p;
  await page.getByRole('button', { name: 'New chat' }).first().click();
  await page.getByLabel('Find people').fill(other.username);
  await page.getByRole('button', { name: `${other.display} (@${other.username})` }).click();
  await page.locator('#chat-title', { hasText: other.display }).waitFor(WAIT);
}

async function openConv(p, title) {
  await p.page.locator('.conv', { hasText: title }).click();
  await p.page.locator('#chat-title', { hasText: title }).waitFor(WAIT);
}

async function send(p, text) {
  const box = p.page.getByRole('textbox', { name: 'Message' });
  await box.fill(text);
  await box.press('Enter');
}

function msg(p, text, extra = '') {
  return p.page.locator(`.msg${extra}`, { hasText: text });
}

test('two people find each other, chat, and see typing, delivered and read', async () => {
  const alice = await person('Alice', { screenshot: true });
  const bob = await person('Bob');
  await startChat(alice, bob);
  await send(alice, 'Hi Bob! How was the trip?');
  await msg(alice, 'How was the trip', '.own').waitFor(WAIT);

  // bob has not opened it: an unread badge and a preview; alice sees "delivered"
  const item = bob.page.locator('.conv', { hasText: 'Alice' });
  await item.locator('.badge', { hasText: '1' }).waitFor(WAIT);
  await item.locator('.conv-preview', { hasText: 'Hi Bob! How was the trip?' }).waitFor(WAIT);
  await msg(alice, 'How was the trip', '[data-state="delivered"]').waitFor(WAIT);
  assert.equal(await bob.page.title(), '(1) Natter');
  await screenshot(bob.page, 'conversation-list-unread');

  // bob opens it: read, below a "New messages" line
  await openConv(bob, 'Alice');
  await msg(bob, 'How was the trip', '.other').waitFor(WAIT);
  await bob.page.getByRole('separator', { name: 'New messages' }).waitFor(WAIT);
  await msg(alice, 'How was the trip', '[data-state="read"]').waitFor(WAIT);
  await item.locator('.badge').waitFor({ state: 'detached', ...WAIT });
  assert.equal(await bob.page.title(), 'Natter');

  // typing shows on the other side, and stops when the message arrives
  await bob.page.getByRole('textbox', { name: 'Message' }).pressSequentially('Amazing, ', { delay: 20 });
  await alice.page.locator('#chat-sub', { hasText: 'typing…' }).waitFor(WAIT);
  await alice.page.locator('.typing-line.visible', { hasText: 'Bob is typing…' }).waitFor(WAIT);
  await bob.page.getByRole('textbox', { name: 'Message' }).pressSequentially('the mountains were stunning 🏔️');
  await bob.page.getByRole('textbox', { name: 'Message' }).press('Enter');
  await msg(alice, 'mountains were stunning', '.other').waitFor(WAIT);
  await alice.page.locator('.typing-line.visible').waitFor({ state: 'detached', ...WAIT }).catch(() => {});
  await alice.page.waitForFunction(() => !document.querySelector('.typing-line.visible'), null, WAIT);
  await bob.page.locator('#chat-sub', { hasText: 'online' }).waitFor(WAIT);

  await send(alice, 'Send me photos: https://photos.example.org/album/42');
  await send(bob, 'Sure, tonight');
  await send(alice, 'Great 👍');
  const link = msg(bob, 'Send me photos').locator('a');
  await link.waitFor(WAIT);
  assert.equal(await link.getAttribute('href'), 'https://photos.example.org/album/42');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer nofollow ugc');
  await msg(alice, 'Great 👍', '[data-state="read"]').waitFor(WAIT);

  // edit and delete one's own messages
  const own = msg(alice, 'Great 👍', '.own');
  await own.hover();
  await own.getByRole('button', { name: 'Edit message' }).click();
  const box = alice.page.getByRole('textbox', { name: 'Edit message' });
  await box.fill('Great, thanks 👍');
  await box.press('Enter');
  await msg(bob, 'Great, thanks 👍').locator('.edited').waitFor(WAIT);
  const mine = msg(bob, 'Sure, tonight', '.own');
  await mine.hover();
  await mine.getByRole('button', { name: 'Delete message' }).click();
  await bob.page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await msg(alice, 'This message was deleted', '.other').waitFor(WAIT);
  await msg(alice, 'Sure, tonight').waitFor({ state: 'detached', ...WAIT });
  // the day separator
  await alice.page.locator('.day', { hasText: 'Today' }).first().waitFor(WAIT);

  await alice.page.mouse.move(0, 0);
  await screenshot(alice.page, 'chat-desktop-light');
  for (const p of [alice, bob]) await clean(p);

  // dark mode follows the system
  await alice.page.emulateMedia({ colorScheme: 'dark' });
  await alice.page.waitForTimeout(400); // let colour transitions finish
  const bg = await alice.page.evaluate(() => getComputedStyle(document.querySelector('.sidebar')).backgroundColor);
  assert.notEqual(bg, 'rgb(255, 255, 255)');
  await screenshot(alice.page, 'chat-desktop-dark');

  // phone width: the list, then the chat with a back button
  const phone = await openPage(browser.browser, server.url, { viewport: { width: 390, height: 844 }, colorScheme: 'light' });
  pages.push(phone);
  await phone.page.goto('/');
  await phone.page.getByLabel('Username').fill(bob.username);
  await phone.page.getByLabel('Password').fill(PASSWORD);
  await phone.page.getByRole('button', { name: 'Sign in' }).click();
  await connected(phone.page);
  await phone.page.locator('.conv', { hasText: 'Alice' }).waitFor(WAIT);
  await screenshot(phone.page, 'phone-list');
  await openConv(phone, 'Alice');
  assert.equal(await phone.page.locator('.sidebar').isVisible(), false);
  await msg(phone, 'mountains were stunning').waitFor(WAIT);
  await screenshot(phone.page, 'phone-chat');
  await phone.page.getByRole('button', { name: 'Back to conversations' }).click();
  await phone.page.locator('.sidebar').waitFor({ state: 'visible', ...WAIT });
  await clean(phone);

  // bob goes away on both devices: alice sees when he was last there
  await phone.context.close();
  await bob.context.close();
  await alice.page.locator('#chat-sub', { hasText: /last seen/ }).waitFor(WAIT);
  await alice.page.locator('.conv', { hasText: 'Bob' }).locator('.dot.offline').waitFor(WAIT);
});

test('a group of three: create, chat, manage members', async () => {
  const ana = await person('Ana');
  const ben = await person('Ben');
  const cleo = await person('Cleo');
  const { page } = ana;
  await page.getByRole('button', { name: 'New group' }).first().click();
  await page.getByLabel('Group name').fill('Weekend trip');
  for (const who of [ben]) {
    await page.getByLabel('Add people').fill(who.username);
    await page.getByRole('button', { name: `${who.display} (@${who.username})` }).click();
  }
  await page.getByRole('button', { name: 'Create group' }).click();
  await page.locator('#chat-title', { hasText: 'Weekend trip' }).waitFor(WAIT);

  // add cleo from the group's member panel
  await page.getByRole('button', { name: 'Group members and settings' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByLabel('Add a member').fill(cleo.username);
  await dialog.getByRole('button', { name: `${cleo.display} (@${cleo.username})` }).click();
  await dialog.locator('.member', { hasText: 'Cleo' }).waitFor(WAIT);
  await dialog.getByRole('heading', { name: '3 members' }).waitFor(WAIT);
  await screenshot(page, 'group-members');
  await dialog.getByRole('button', { name: 'Close' }).click();

  await openConv(ben, 'Weekend trip');
  await openConv(cleo, 'Weekend trip');
  await send(ana, 'Who is driving on Saturday?');
  await send(ben, 'I can drive 🚗');
  await send(cleo, 'I will bring snacks');
  for (const p of [ana, ben, cleo]) {
    for (const text of ['Who is driving', 'I can drive', 'bring snacks']) await msg(p, text).waitFor(WAIT);
  }
  // names of the senders on others' messages
  await msg(ana, 'I can drive', '.other').locator('.sender', { hasText: 'Ben' }).waitFor(WAIT);
  await msg(ana, 'bring snacks', '.other').locator('.sender', { hasText: 'Cleo' }).waitFor(WAIT);
  // read by everyone once both others have it open
  await msg(ana, 'Who is driving', '[data-state="read"]').waitFor(WAIT);
  await screenshot(cleo.page, 'group-chat');

  // ana removes cleo; the group leaves cleo's list
  await page.getByRole('button', { name: 'Group members and settings' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Remove Cleo' }).click();
  await page.getByRole('dialog').getByRole('heading', { name: '2 members' }).waitFor(WAIT);
  await cleo.page.locator('.conv', { hasText: 'Weekend trip' }).waitFor({ state: 'detached', ...WAIT });
  await page.getByRole('dialog').getByRole('button', { name: 'Close' }).click();
  for (const p of [ana, ben, cleo]) await clean(p);
});

test('a reload keeps the session and the history', async () => {
  const a = await person('Dana');
  const b = await person('Eli');
  await startChat(a, b);
  // two pages of history, straight through the API with the page's own session
  await a.page.evaluate(async () => {
    const { token } = JSON.parse(localStorage.getItem('natter.session'));
    const list = await (await fetch('/api/v1/conversations', { headers: { authorization: `Bearer ${token}` } })).json();
    const id = list.conversations[0].id;
    for (let i = 1; i <= 75; i++) {
      await fetch(`/api/v1/conversations/${id}/messages`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ client_id: `bulk-${i}`, body: `message number ${i}` }),
      });
    }
  });
  await msg(a, 'message number 75').waitFor(WAIT);
  await a.page.reload();
  await connected(a.page);
  await openConv(a, 'Eli');
  await msg(a, 'message number 75').waitFor(WAIT);
  // infinite scroll: older pages load at the top
  assert.equal(await a.page.locator('.msg').count(), 50);
  for (let i = 0; i < 20 && (await a.page.locator('.msg').count()) < 75; i++) {
    await a.page.locator('.scroller').evaluate((s) => s.scrollTo(0, 0));
    await a.page.waitForTimeout(250);
  }
  await a.page.locator('.conv-start').waitFor(WAIT);
  assert.equal(await a.page.locator('.msg').count(), 75);
  await clean(a);

  // logging out ends the session on the server and in the browser
  const token = await a.page.evaluate(() => JSON.parse(localStorage.getItem('natter.session')).token);
  await a.page.getByRole('button', { name: 'Log out' }).click();
  await a.page.getByRole('heading', { name: 'Welcome back' }).waitFor(WAIT);
  await a.page.reload();
  await a.page.getByRole('heading', { name: 'Welcome back' }).waitFor(WAIT);
  const status = await a.page.evaluate(async (t) => (await fetch('/api/v1/me', { headers: { authorization: `Bearer ${t}` } })).status, token);
  assert.equal(status, 401);
});

test('the network drops and comes back: the UI says so, and missed messages arrive', async () => {
  const a = await person('Fay');
  const b = await person('Gus');
  await startChat(a, b);
  await send(a, 'before the tunnel');
  await openConv(b, 'Fay');
  await msg(b, 'before the tunnel').waitFor(WAIT);

  b.offline.on = true;
  await b.context.setOffline(true);
  await b.page.locator('#connection-status', { hasText: 'Reconnecting' }).waitFor(WAIT);
  await b.page.locator('#chat-sub', { hasText: 'connecting…' }).waitFor(WAIT);
  await b.page.waitForTimeout(400); // the banner slides in
  await screenshot(b.page, 'reconnecting');
  for (const text of ['missed one', 'missed two', 'missed three']) await send(a, text);
  await msg(a, 'missed three', '.own').waitFor(WAIT);
  await b.context.setOffline(false);
  await connected(b.page);
  for (const text of ['missed one', 'missed two', 'missed three']) await msg(b, text).waitFor(WAIT);
  b.offline.on = false;
  const texts = await b.page.locator('.msg .text').allTextContents();
  assert.deepEqual(texts, ['before the tunnel', 'missed one', 'missed two', 'missed three']);
  await b.page.locator('#connection-status.visible').waitFor({ state: 'detached', ...WAIT }).catch(() => {});
  assert.equal(await b.page.locator('#connection-status').textContent(), '');
  // a message written offline waits as "sending", and goes when the network is back
  b.offline.on = true;
  await b.context.setOffline(true);
  await b.page.locator('#connection-status', { hasText: 'Reconnecting' }).waitFor(WAIT);
  await send(b, 'written in the tunnel');
  await msg(b, 'written in the tunnel', '.own[data-state="pending"]').waitFor(WAIT);
  assert.equal(await msg(b, 'written in the tunnel').getByRole('img', { name: 'Sending' }).count(), 1);
  await b.page.waitForTimeout(1500);
  await b.context.setOffline(false);
  await msg(a, 'written in the tunnel', '.other').waitFor(WAIT);
  await msg(b, 'written in the tunnel', '.own[data-state="read"]').waitFor(WAIT);
  b.offline.on = false;
  assert.equal(await a.page.locator('.msg', { hasText: 'written in the tunnel' }).count(), 1);
  await clean(a);
});

test('WebSocket blocked: long-polling takes over', async () => {
  const a = await person('Hana');
  const p = await openPage(browser.browser, server.url);
  pages.push(p);
  // a network that kills every WebSocket to the stream
  await p.page.routeWebSocket(/\/api\/v1\/stream/, (ws) => ws.close({ code: 1011, reason: 'blocked' }));
  const username = uniqueName('ivo');
  await p.page.goto('/');
  await p.page.getByRole('button', { name: 'Create an account' }).click();
  await p.page.getByLabel('Username').fill(username);
  await p.page.getByLabel(/Display name/).fill('Ivo');
  await p.page.getByLabel('Password').fill(PASSWORD);
  await p.page.getByRole('button', { name: 'Create account' }).click();
  const b = { ...p, username, display: 'Ivo' };
  await connected(b.page, 'long-poll');
  await startChat(a, b);
  await send(a, 'can you hear me?');
  await b.page.locator('.conv', { hasText: 'Hana' }).locator('.badge', { hasText: '1' }).waitFor(WAIT);
  await openConv(b, 'Hana');
  await msg(a, 'can you hear me?', '[data-state="read"]').waitFor(WAIT);
  await b.page.getByRole('textbox', { name: 'Message' }).pressSequentially('yes, over long-polling', { delay: 15 });
  await a.page.locator('#chat-sub', { hasText: 'typing…' }).waitFor(WAIT);
  await b.page.getByRole('textbox', { name: 'Message' }).press('Enter');
  await msg(a, 'yes, over long-polling', '.other').waitFor(WAIT);
  assert.equal(await b.page.evaluate(() => document.body.dataset.transport), 'long-poll');
  await clean(a);
  await clean(b);
});

const HOSTILE = [
  '<script>window.__pwned = 1</script>',
  '<img src=x onerror="window.__pwned = 2">',
  '<a href="javascript:window.__pwned = 3">click me</a>',
  'javascript:window.__pwned = 4',
  '[totally safe](javascript:window.__pwned = 5)',
  '<svg onload="window.__pwned = 6"></svg>',
  '<iframe src="https://evil.example.com/"></iframe>',
  '" onmouseover="window.__pwned = 7" x="',
  '<style>body { display: none }</style>',
  'see https://example.com/a?q=<b>x</b>&r="y" ok',
  'data:text/html,<script>window.__pwned = 8</script>',
];

test('hostile message bodies render as inert text, with no CSP violation', async () => {
  const a = await person('Mallory');
  const b = await person('Nina');
  await startChat(a, b);
  for (const body of HOSTILE) await send(a, body);
  await openConv(b, 'Mallory');
  for (const p of [a, b]) {
    await msg(p, 'data:text/html').waitFor(WAIT);
    const texts = await p.page.locator('.msg .text').allTextContents();
    assert.deepEqual(texts, HOSTILE, 'each body shows exactly as typed');
    const inside = await p.page.evaluate(() => {
      const texts = [...document.querySelectorAll('.msg .text')];
      return {
        elements: texts.flatMap((t) => [...t.querySelectorAll('*')].map((e) => e.tagName.toLowerCase())),
        hrefs: texts.flatMap((t) => [...t.querySelectorAll('a')].map((a) => a.href)),
        handlers: [...document.querySelectorAll('*')].filter((e) => [...e.attributes].some((x) => x.name.startsWith('on'))).length,
        pwned: window.__pwned ?? null,
        bodyVisible: getComputedStyle(document.body).display !== 'none',
      };
    });
    assert.deepEqual(inside.elements, ['a', 'a'], 'the only elements made are links for the http(s) URLs');
    assert.deepEqual(inside.hrefs, ['https://evil.example.com/', 'https://example.com/a?q=']);
    assert.equal(inside.handlers, 0);
    assert.equal(inside.bodyVisible, true);
    // hover and click everything; nothing runs
    for (const el of await p.page.locator('.msg .text').all()) await el.hover();
    await msg(p, 'javascript:window.__pwned = 4').locator('.text').click();
    assert.equal(await p.page.evaluate(() => window.__pwned ?? null), null);
  }
  // the list preview is text too
  await screenshot(b.page, 'hostile-bodies');
  for (const p of [a, b]) await clean(p);
});

test('every control has a name and a role, and the app works by keyboard alone', async () => {
  const a = await person('Olga');
  const b = await person('Piet');
  const { page } = a;
  // keyboard only: open "New chat", find Piet, open the chat, send
  await page.keyboard.press('Tab'); // New chat (sidebar)
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'New chat', null, WAIT);
  await page.keyboard.press('Enter');
  await page.keyboard.type(b.username);
  await page.getByRole('button', { name: `Piet (@${b.username})` }).waitFor(WAIT);
  await page.keyboard.press('ArrowDown');
  await page.keyboard.press('Enter');
  await page.locator('#chat-title', { hasText: 'Piet' }).waitFor(WAIT);
  await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'Message', null, WAIT);
  await page.keyboard.type('typed without a mouse');
  await page.keyboard.press('Enter');
  await b.page.locator('.conv', { hasText: 'Olga' }).locator('.conv-preview', { hasText: 'typed without a mouse' }).waitFor(WAIT);
  // ArrowUp edits the last message; Escape cancels
  await page.keyboard.press('ArrowUp');
  await page.getByRole('textbox', { name: 'Edit message' }).waitFor(WAIT);
  await page.keyboard.press('Escape');
  await page.getByRole('textbox', { name: 'Message' }).waitFor(WAIT);

  const unnamed = await page.evaluate(() => {
    const name = (el) => {
      const by = el.getAttribute('aria-labelledby');
      return (
        el.getAttribute('aria-label') ||
        (by && document.getElementById(by)?.textContent) ||
        (el.labels && [...el.labels].map((l) => l.textContent).join(' ')) ||
        el.textContent ||
        el.getAttribute('title') ||
        ''
      ).trim();
    };
    return [...document.querySelectorAll('button, input, textarea, select, a, [role="log"], [role="dialog"], dialog')]
      .filter((el) => !name(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
  assert.deepEqual(unnamed, []);
  await clean(a);
});
