// A TCP proxy between a client and a real server, for tests that need a
// network that fails in controlled ways: cut everything (and refuse new
// connections), answer nothing (requests reach the server, replies are
// lost), or refuse WebSocket upgrades like a proxy that does not do
// WebSocket.

import net from 'node:net';

export class FaultyProxy {
  constructor(target) {
    const u = new URL(target);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.sockets = new Set();
    this.blockWebSocket = false;
    this.dropReplies = false;
    this.upgrades = 0;
    this.refusedUpgrades = 0;
    this.server = null;
    this.listenPort = 0;
  }

  get url() {
    return `http://127.0.0.1:${this.listenPort}`;
  }

  async start() {
    this.server = net.createServer((client) => this._accept(client));
    await new Promise((r) => this.server.listen(this.listenPort, '127.0.0.1', r));
    this.listenPort = this.server.address().port;
    return this.url;
  }

  _accept(client) {
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    client.once('data', (first) => {
      const head = first.toString('latin1');
      if (/^upgrade:\s*websocket/im.test(head)) {
        this.upgrades += 1;
        if (this.blockWebSocket) {
          this.refusedUpgrades += 1;
          client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
          return;
        }
      }
      const upstream = net.connect(this.port, this.host);
      this.sockets.add(upstream);
      upstream.on('close', () => {
        this.sockets.delete(upstream);
        client.destroy();
      });
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.write(first);
      client.on('data', (d) => upstream.write(d));
      upstream.on('data', (d) => {
        if (this.dropReplies) {
          // the server did the work; the client never hears of it
          client.destroy();
          upstream.destroy();
          return;
        }
        client.write(d);
      });
    });
  }

  /** Drops every connection and refuses new ones until `restore()`. */
  async cut() {
    await new Promise((r) => {
      this.server.close(() => r());
      for (const s of this.sockets) s.destroy();
    });
  }

  async restore() {
    await this.start();
  }

  async close() {
    if (this.server?.listening) await this.cut();
  }
}
