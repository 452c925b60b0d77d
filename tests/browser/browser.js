// Launches Debian's Chromium through playwright-core (no browser download)
// with a fresh profile, and collects what a page must never do: console
// errors, uncaught exceptions, CSP violations, requests to other hosts.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const SCREENSHOTS = resolve(here, '../../target/screenshots');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

/**
 * A browser with a fresh profile (Playwright gives each launch its own
 * temporary user-data directory and removes it on close).
 */
export async function launch() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
  return { browser, close: () => browser.close() };
}

/**
 * A new context and page on `url`, watched: `problems` lists console
 * errors, page errors, CSP violations and requests to any other origin.
 */
export async function openPage(browser, url, { viewport = { width: 1280, height: 800 }, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport, colorScheme, baseURL: url });
  const page = await context.newPage();
  const origin = new URL(url).origin;
  const problems = [];
  const offline = { on: false };
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // failed requests while the test has cut the network are expected
    if (offline.on && /net::ERR_|Failed to load resource|WebSocket/.test(text)) return;
    if (/ERR_INTERNET_DISCONNECTED|ERR_NETWORK_CHANGED|ERR_CONNECTION_REFUSED/.test(text)) return;
    problems.push(`console: ${text}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol === 'data:' || u.protocol === 'blob:') return;
    const o = u.protocol.startsWith('ws') ? `http${u.protocol.slice(2)}//${u.host}` : u.origin;
    if (o !== origin) problems.push(`request to another host: ${r.url()}`);
  });
  // CSP violations are reported to the page as events; record them
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective}: ${e.blockedURI}`);
    });
  });
  return { context, page, problems, offline };
}

export async function cspViolations(page) {
  return page.evaluate(() => window.__cspViolations || []);
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}
