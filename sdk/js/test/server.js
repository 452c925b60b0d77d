// Starts a real `natter serve` for tests: port 0 (or a given address, to
// restart on the same one), a fresh data directory, the address read from
// the "natter listening" log line. Stopped by PID.
//
// The binary is $NATTER_BIN, or target/debug/natter of this repository
// (scripts/test-browser builds it).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const NATTER_BIN = process.env.NATTER_BIN || resolve(here, '../../../target/debug/natter');

export class NatterServer {
  constructor({ dataDir, addr = '127.0.0.1:0', env = {} } = {}) {
    this.ownDir = !dataDir;
    this.dataDir = dataDir || mkdtempSync(join(tmpdir(), 'natter-js-test-'));
    this.addr = addr;
    this.env = env;
    this.child = null;
    this.log = [];
  }

  /** Starts the server; resolves to its base URL. */
  start() {
    if (!existsSync(NATTER_BIN)) {
      throw new Error(`no natter binary at ${NATTER_BIN}: build it with \`cargo build -p natter-server\` or set NATTER_BIN`);
    }
    const env = {};
    // only our settings: a NATTER_* of the caller must not leak in
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('NATTER_')) env[k] = v;
    Object.assign(env, {
      NATTER_LOG: 'info',
      NO_COLOR: '1',
      NATTER_ACCOUNTS__SCRAM_ITERATIONS: '4096',
      NATTER_STREAM__COMMANDS_PER_SECOND: '1000',
      ...this.env,
    });
    const child = spawn(NATTER_BIN, ['serve', '--http', this.addr, '--xmpp', '127.0.0.1:0', '--xmpps', '127.0.0.1:0', '--data-dir', this.dataDir], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    return new Promise((resolveStart, reject) => {
      const timer = setTimeout(() => reject(new Error(`natter did not start:\n${this.log.join('\n')}`)), 60_000);
      const onLine = (line) => {
        this.log.push(line);
        if (this.log.length > 500) this.log.shift();
        const m = line.includes('natter listening') && line.match(/http=([0-9.:[\]]+)/);
        if (m) {
          clearTimeout(timer);
          this.addr = m[1];
          this.url = `http://${m[1]}`;
          resolveStart(this.url);
        }
      };
      for (const s of [child.stdout, child.stderr]) {
        let buf = '';
        s.setEncoding('utf8');
        s.on('data', (d) => {
          buf += d;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            onLine(buf.slice(0, i));
            buf = buf.slice(i + 1);
          }
        });
      }
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`natter exited with ${code} before listening:\n${this.log.join('\n')}`));
      });
    });
  }

  /** Stops the server (SIGTERM, graceful) and waits for it to exit. */
  async stop(signal = 'SIGTERM') {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    process.kill(child.pid, signal);
    await exited;
    this.child = null;
  }

  /** Stops the server and removes its data (if the directory was its own). */
  async close() {
    await this.stop();
    if (this.ownDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}

let counter = 0;
/** A username unique to this run. */
export function uniqueName(prefix) {
  counter += 1;
  return `${prefix}${process.pid % 10000}${counter}${Math.floor(Math.random() * 1000)}`.slice(0, 32);
}
