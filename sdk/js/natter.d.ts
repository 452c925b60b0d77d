// Types of the Natter JavaScript SDK (natter.js). The wire types follow
// the server's OpenAPI document (/api/v1/openapi.json) and docs/protocol.md.

export declare const PROTOCOL: 1;
export declare const SUBPROTOCOL: 'natter.v1';
export declare const CloseCode: Readonly<{
  SHUTTING_DOWN: 1001;
  TOO_BIG: 1009;
  UNAVAILABLE: 1011;
  UNAUTHENTICATED: 4001;
  SESSION_REVOKED: 4003;
  TOO_SLOW: 4008;
  IDLE: 4009;
}>;

export declare function newClientId(): string;

export declare class NatterError extends Error {
  /** The server's stable error code, or `network`, `timeout`, `not_acknowledged`, `protocol`, `unauthenticated`, `aborted`. */
  code: string;
  /** HTTP status (0 when none was received). */
  status: number;
  field?: string;
  retryAfterMs?: number;
  readonly retryable: boolean;
  readonly unauthenticated: boolean;
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
  multiplier: number;
  /** Up to this fraction of each wait is taken off at random (0 to 1). */
  jitter: number;
}

/** Anything shaped like the browser's WebSocket (e.g. the `ws` package in Node). */
export interface WebSocketLike {
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
}
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface ClientOptions {
  /** Base URL such as `http://127.0.0.1:8080`; the page's origin by default in browsers. */
  server?: string;
  /** A token kept from an earlier `logIn`. */
  token?: string | null;
  user?: User | null;
  /** Resume position of the event stream (an event's `cursor`). */
  cursor?: string | null;
  /** `globalThis.WebSocket` by default; in Node 20 pass `(await import('ws')).WebSocket`. */
  WebSocket?: WebSocketConstructor;
  fetch?: typeof fetch;
  /** `auto` (WebSocket, falling back to long-polling), `websocket` or `long-poll`. */
  transport?: 'auto' | 'websocket' | 'long-poll';
  requestTimeoutMs?: number;
  connectTimeoutMs?: number;
  backoff?: Partial<Backoff>;
  /** How long a send is retried before it is `failed`; `null` retries for ever. Default 120 000. */
  sendRetryForMs?: number | null;
  /** Consecutive WebSocket failures (the server answering over HTTP) before falling back. Default 3. */
  websocketFailuresBeforeFallback?: number;
  /** After falling back, how long to long-poll before trying WebSocket again. Default 300 000. */
  retryWebsocketAfterMs?: number;
  /** Seconds one long-poll may wait on the server (0 to 60). Default 25. */
  pollTimeoutS?: number;
  /** App-level pings on the WebSocket find dead connections. Defaults 20 000 and 10 000. */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** A WebSocket that dies sooner than this after `hello` counts as a WebSocket failure. */
  stableAfterMs?: number;
}

export interface User { username: string; display_name: string | null; created_at: string }
export interface UserRef { username: string; display_name: string | null }
export interface LogInResponse { token: string; expires_at: string; session_id: string; user: User }
export interface Session { id: string; created_at: string; expires_at: string; user_agent: string | null; current: boolean }
export interface Contact { username: string; display_name: string | null; name: string | null; groups: string[]; added_at: string }
export interface Block { username: string; display_name: string | null; blocked_at: string }
export type Role = 'owner' | 'admin' | 'member';
export type ConversationKind = 'direct' | 'group';
export interface Member { username: string; display_name: string | null; role: Role; joined_at: string; read_seq: number; delivered_seq: number }
export interface Message {
  id: string;
  conversation_id: string;
  seq: number;
  sender: string;
  client_id: string;
  /** `null` once deleted. Always text: render it as text, never as HTML. */
  body: string | null;
  sent_at: string;
  edited_at: string | null;
  deleted_at: string | null;
}
export interface Conversation {
  id: string;
  kind: ConversationKind;
  title: string | null;
  created_at: string;
  last_seq: number;
  last_activity_at: string;
  members: Member[];
}
export interface ConversationSummary {
  id: string;
  kind: ConversationKind;
  title: string | null;
  peer: UserRef | null;
  role: Role;
  member_count: number;
  last_seq: number;
  last_activity_at: string;
  last_message: Message | null;
  unread: number;
  read_seq: number;
}
export interface ConversationList { conversations: ConversationSummary[]; next_cursor: string | null }
export interface History { messages: Message[]; has_more: boolean }

export type PresenceStatus = 'online' | 'away' | 'offline';

/** Event payloads (`data` of the protocol's event frames). */
export interface EventMap {
  'message.created': { conversation_id: string; message: Message };
  'message.edited': { conversation_id: string; message: Message };
  'message.deleted': { conversation_id: string; message: Message };
  'receipt.delivered': { conversation_id: string; user: string; seq: number };
  'receipt.read': { conversation_id: string; user: string; seq: number };
  'conversation.created': { conversation_id: string; kind: ConversationKind; title: string | null; created_at: string };
  'conversation.renamed': { conversation_id: string; title: string };
  'member.added': { conversation_id: string; user: string; display_name: string | null; role: Role };
  'member.role_changed': { conversation_id: string; user: string; role: Role };
  'member.removed': { conversation_id: string; user: string };
  typing: { conversation_id: string; user: string; active: boolean; expires_in_ms?: number };
  presence: { user: string; status: PresenceStatus; last_seen_at?: string | null };
  'session.revoked': Record<string, never>;
  'block.added': { user: string };
  'block.removed': { user: string };
  'block.cleared': Record<string, never>;
  // the SDK's own
  connected: { transport: 'websocket' | 'long-poll'; cursor: string; resumed: boolean; user?: User };
  disconnected: { transport: 'websocket' | 'long-poll'; reason: string; retryInMs: number };
  state: ConnectionState;
  outgoing: Outgoing;
  markers: { conversation_id: string; user?: string; kind?: 'read' | 'delivered'; seq?: number };
  fatal: NatterError;
}

export interface EventFrame { type: 'event'; event: string; cursor?: string; data: unknown }

export type ConnectionState = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';
export type MessageState = 'pending' | 'sent' | 'delivered' | 'read' | 'failed' | 'received';

export declare class Outgoing {
  readonly client: NatterClient;
  readonly conversationId: string;
  readonly body: string;
  readonly clientId: string;
  state: 'pending' | 'sent' | 'failed';
  message: Message | null;
  error: NatterError | Error | null;
  attempts: number;
  createdAt: Date;
  done: Promise<Message>;
  retry(): Promise<Message>;
  discard(): void;
}

export declare class NatterClient {
  constructor(options?: ClientOptions);
  readonly options: Required<ClientOptions>;
  server: string;
  token: string | null;
  user: User | null;
  /** The last durable event received: save it to resume after a restart. */
  cursor: string | null;
  state: ConnectionState;
  transport: 'websocket' | 'long-poll' | null;

  on<K extends keyof EventMap>(name: K, fn: (data: EventMap[K], frame?: EventFrame) => void): () => void;
  on(name: '*', fn: (name: string, data: unknown, frame?: EventFrame) => void): () => void;
  once<K extends keyof EventMap>(name: K, fn: (data: EventMap[K], frame?: EventFrame) => void): () => void;

  request<T = unknown>(method: string, path: string, body?: unknown, opts?: { timeoutMs?: number; auth?: boolean; signal?: AbortSignal; raw?: boolean; reportFatal?: boolean }): Promise<T>;

  signUp(a: { username: string; password: string; displayName?: string }): Promise<User>;
  logIn(username: string, password: string): Promise<LogInResponse>;
  logOut(): Promise<void>;
  me(): Promise<User>;
  updateMe(a: { displayName: string | null }): Promise<User>;
  sessions(): Promise<Session[]>;
  searchUsers(q: string, opts?: { limit?: number }): Promise<User[]>;
  getUser(username: string): Promise<User>;
  contacts(): Promise<Contact[]>;
  addContact(username: string, opts?: { name?: string; groups?: string[] }): Promise<Contact>;
  removeContact(username: string): Promise<null>;
  blocks(): Promise<Block[]>;
  block(username: string): Promise<Block>;
  unblock(username: string): Promise<null>;
  unblockAll(): Promise<null>;
  conversations(opts?: { cursor?: string; limit?: number }): Promise<ConversationList>;
  allConversations(): Promise<ConversationSummary[]>;
  conversation(id: string): Promise<Conversation>;
  directWith(username: string): Promise<Conversation>;
  createGroup(title: string, members?: string[]): Promise<Conversation>;
  renameConversation(id: string, title: string): Promise<Conversation>;
  putMember(id: string, username: string, role?: Role): Promise<Member>;
  removeMember(id: string, username: string): Promise<null>;
  leave(id: string): Promise<null>;
  history(id: string, opts?: { before?: number; after?: number; limit?: number }): Promise<History>;
  editMessage(id: string, seq: number, body: string): Promise<Message>;
  deleteMessage(id: string, seq: number): Promise<Message>;
  markRead(id: string, seq: number): Promise<number>;
  refreshPresence(): Promise<Array<{ user: string; status: PresenceStatus; last_seen_at?: string | null }>>;
  typing(id: string, active?: boolean): Promise<void>;
  setPresence(status: PresenceStatus): Promise<void>;
  command<T = unknown>(frame: Record<string, unknown>): Promise<T>;

  send(conversationId: string, body: string, opts?: { clientId?: string }): Outgoing;
  outgoing(conversationId?: string): Outgoing[];
  messageState(message: Message): MessageState | null;
  markers(conversationId: string): Map<string, { read: number; delivered: number }>;

  connect(opts?: { cursor?: string | null }): void;
  disconnect(): void;
  reconnectNow(): void;
}
