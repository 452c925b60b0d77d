// Shared by the xmpp.js and Strophe.js interop tests: a fresh `natter`
// process on port 0 (NATTER_BIN, or target/debug/natter) and REST helpers.

import { spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { randomUUID } from "node:crypto";

export const TIMEOUT = 10_000;
export const PASSWORD = "correct horse battery";
const repo = resolve(import.meta.dirname, "../../..");
const binary = process.env.NATTER_BIN ?? join(repo, "target/debug/natter");

export async function startServer() {
  const dataDir = mkdtempSync(join(tmpdir(), "natter-interop-js-"));
  const logPath = join(dataDir, "server.log");
  const fd = openSync(logPath, "w");
  const proc = spawn(
    binary,
    ["serve", "--data-dir", dataDir, "--http", "127.0.0.1:0", "--xmpp", "127.0.0.1:0",
      "--xmpps", "127.0.0.1:0", "--domain", "localhost"],
    { stdio: ["ignore", fd, fd], env: { ...process.env, NO_COLOR: "1" } },
  );
  closeSync(fd);
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const log = readFileSync(logPath, "utf8");
    const http = /natter listening http=(\S+)/.exec(log);
    if (http) return { proc, dataDir, logPath, http: http[1] };
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill("SIGKILL");
  throw new Error(`natter did not start:\n${readFileSync(logPath, "utf8")}`);
}

/** Stops the server by its PID and removes its data (kept if a test failed). */
export async function stopServer(server, keep = false) {
  if (!server) return;
  if (server.proc.exitCode === null) {
    server.proc.kill("SIGTERM");
    await new Promise((r) => (server.proc.exitCode !== null ? r() : server.proc.once("exit", r)));
  }
  if (keep) {
    console.log(`natter data dir and log kept at ${server.dataDir}`);
  } else {
    rmSync(server.dataDir, { recursive: true, force: true });
  }
}

export async function api(server, method, path, body, token) {
  const res = await fetch(`http://${server.http}${path}`, {
    method,
    headers: {
      ...(body ? { "content-type": "application/json" } : {}),
      ...(token ? { authorization: `Bearer ${token}` } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path} -> ${res.status}: ${text}`);
  return text ? JSON.parse(text) : null;
}

/** A fresh account made over REST, logged in over REST too. */
export async function newUser(server, prefix) {
  const username = `${prefix}-${randomUUID().slice(0, 8)}`;
  await api(server, "POST", "/api/v1/accounts", { username, password: PASSWORD });
  const { token } = await api(server, "POST", "/api/v1/sessions", { username, password: PASSWORD });
  return { username, jid: `${username}@localhost`, token };
}
