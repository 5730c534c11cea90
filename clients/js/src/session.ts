/**
 * A game session on a gateway that survives its connection: admitted with
 * a login ticket, resumed by itself (token and last `seq`, with backoff, on
 * the same or another gateway of the realm) after a drop, and moved by
 * itself when a draining gateway sends `session.move`. Game code sees one
 * stream of pushes, each once and in order.
 */

import { Connection, type ConnectionOptions, type Handler } from "./connection.js";
import { ConnectionClosed, ServerError } from "./errors.js";
import {
  FINAL_GOODBYES,
  type AuthReply,
  type Frame,
  type GatewayInfo,
  type HelloReply,
  type LoginReply,
  type MessageOf,
  type ReplyOf,
  type RequestFields,
} from "./messages.js";
import { gatewayUrl } from "./url.js";

export type SessionState = "open" | "resuming" | "resumed" | "closed";
export type StateHandler = (state: SessionState, reason?: ConnectionClosed) => void;

export interface ReconnectOptions {
  /** Seconds before the first resume attempt after a drop; default 0.2. */
  initialDelay?: number;
  /** Longest wait between attempts, seconds (the delay doubles up to it); default 5. */
  maxDelay?: number;
  /** Attempts before the session is given up ("closed", code "resume_failed"); default 10. */
  maxAttempts?: number;
}

export interface SessionOptions extends ConnectionOptions {
  reconnect?: ReconnectOptions;
  /** Seconds a request made while resuming waits for the resume; default 30. */
  resumeWait?: number;
  /**
   * The gateway's `wss://` URL to use only when the ticket names no gateway
   * with a WebSocket port (a server too old to name it); otherwise unused.
   */
  url?: string;
}

interface Waiting {
  run(connection: Connection): void;
  fail(error: ConnectionClosed): void;
}

export class Session {
  /** The account id, display name and realm (the auth reply's). */
  account = "";
  name = "";
  realm = "";
  /** The session id (the same across resumes). */
  id = "";
  state: SessionState = "open";
  /** Why the session ended, once it has. */
  closedWith: ConnectionClosed | null = null;

  private token = "";
  private seq = 0;
  private userClosed = false;
  private moveTo: string | null = null;
  private readonly handlers = new Map<string, Set<Handler<never>>>();
  private readonly stateHandlers = new Set<StateHandler>();
  private readonly waiting = new Set<Waiting>();
  /** Ends the wait before the next resume attempt at once (close() does: no timer outlives the session). */
  private wake: (() => void) | null = null;

  private constructor(
    private connection: Connection,
    private readonly urls: string[],
    private readonly options: SessionOptions,
  ) {}

  /**
   * Present `ticket` (a login reply) to its gateway over `wss://` and open
   * the session. Tries the ticket's gateways in order until one answers.
   */
  static async open(ticket: LoginReply, options: SessionOptions = {}): Promise<Session> {
    const urls = gatewayUrls(ticket, options.url);
    let failure: unknown = new Error("the login reply names no gateway with a WebSocket port, and options.url is not set");
    for (const url of urls) {
      let connection: Connection;
      try {
        connection = await Connection.open(url, options);
      } catch (error) {
        failure = error;
        continue;
      }
      const session = new Session(connection, [url, ...urls.filter((u) => u !== url)], options);
      session.attach(connection);
      try {
        session.admitted(await connection.request("auth", { ticket: ticket.ticket }));
      } catch (error) {
        await connection.close();
        throw error;
      }
      session.setState("open");
      return session;
    }
    throw failure;
  }

  /** The highest push `seq` of the session seen so far. */
  get lastSeq(): number {
    return this.seq;
  }

  /** The hello reply of the current connection. */
  get welcome(): HelloReply {
    return this.connection.welcome;
  }

  /** The gateway URL the session is on now. */
  get url(): string {
    return this.connection.url;
  }

  /**
   * Send request `kind`; resolves with the reply's fields, rejects with
   * ServerError or ConnectionClosed. While the session is resuming, the
   * request waits (at most `resumeWait` seconds) and is sent once resumed.
   * A request under way when a connection dropped rejects with
   * ConnectionClosed: it may or may not have been handled.
   */
  request<K extends string>(kind: K, fields?: RequestFields<K>): Promise<ReplyOf<K>> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (this.state !== "resuming") return this.connection.request(kind, fields).then((r) => this.noted(kind, r));
    return new Promise<ReplyOf<K>>((resolve, reject) => {
      this.wait({
        run: (connection) => connection.request(kind, fields).then((r) => resolve(this.noted(kind, r)), reject),
        fail: reject,
      });
    });
  }

  /** Send `kind` without an id (no reply); while resuming, sent once resumed. */
  send<K extends string>(kind: K, fields?: RequestFields<K>): void {
    if (this.closedWith) throw this.closedWith;
    if (this.state !== "resuming") {
      this.connection.send(kind, fields);
      return;
    }
    this.wait({ run: (connection) => connection.send(kind, fields), fail: () => {} });
  }

  /**
   * Call `handler` for every push of type `kind` ("world.update",
   * "chat.message", ...), each once and in `seq` order across resumes; also
   * "error", "bye" and "heartbeat" frames of the current connection.
   * Returns a function that removes the handler.
   */
  on<K extends string>(kind: K, handler: Handler<MessageOf<K>>): () => void {
    let set = this.handlers.get(kind);
    if (!set) this.handlers.set(kind, (set = new Set()));
    set.add(handler as Handler<never>);
    return () => set.delete(handler as Handler<never>);
  }

  /** Call `handler(state, reason?)` on each change of state; returns an unsubscribe function. */
  onState(handler: StateHandler): () => void {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }

  /** Say goodbye: the session ends on the server (it cannot be resumed). */
  async close(): Promise<void> {
    if (this.state === "closed") return;
    this.userClosed = true;
    this.wake?.();
    await this.connection.close();
    this.end(new ConnectionClosed("closed", "the session was closed"));
  }

  /** The connection the session uses now (to inspect it, or to drop it in a test). */
  get currentConnection(): Connection {
    return this.connection;
  }

  private noted<K extends string>(kind: K, reply: ReplyOf<K>): ReplyOf<K> {
    if (kind === "auth" || kind === "resume") this.admitted(reply as unknown as AuthReply);
    return reply;
  }

  private admitted(reply: AuthReply): void {
    this.account = reply.account;
    this.name = reply.name;
    this.realm = reply.realm;
    this.id = reply.session;
    this.token = reply.resume;
  }

  private attach(connection: Connection): void {
    connection.onFrame((frame) => this.received(connection, frame));
    connection.onClose((reason) => {
      if (connection === this.connection) void this.dropped(reason);
    });
  }

  private received(connection: Connection, frame: Frame): void {
    if (frame.t === "session.move") {
      this.moveTo = moveUrl(frame);
    } else if (frame.t === "bye" && frame.code === "moved") {
      this.moveTo ??= moveUrl(frame);
    }
    if (typeof frame.seq === "number") {
      // Each push once: a replay never repeats what this session has seen.
      if (frame.seq <= this.seq) return;
      this.seq = frame.seq;
    } else if (connection !== this.connection && frame.t !== "error") {
      return;
    }
    for (const handler of [...(this.handlers.get(frame.t) ?? [])]) {
      try {
        (handler as Handler<Frame>)(frame);
      } catch (error) {
        console.error(`mmo-client: handler for ${frame.t} failed`, error);
      }
    }
  }

  private async dropped(reason: ConnectionClosed): Promise<void> {
    if (this.userClosed || this.state === "closed") return;
    if (reason.code !== null && FINAL_GOODBYES.has(reason.code)) {
      this.end(reason);
      return;
    }
    this.setState("resuming", reason);
    const { initialDelay = 0.2, maxDelay = 5, maxAttempts = 10 } = this.options.reconnect ?? {};
    let delay = initialDelay;
    for (let attempt = 0; attempt < maxAttempts; attempt++) {
      const moving = this.moveTo;
      this.moveTo = null;
      // A move is followed at once; a drop waits (with jitter, so that many clients spread out).
      if (moving === null) await this.pause(delay * (0.75 + Math.random() * 0.5));
      if (this.userClosed) return;
      const url = moving ?? this.urls[attempt % this.urls.length];
      const outcome = await this.resumeOn(url);
      if (outcome === "resumed" || outcome === "ended") return;
      if (moving === null) delay = Math.min(delay * 2, maxDelay);
    }
    this.end(new ConnectionClosed("resume_failed", `could not resume the session in ${maxAttempts} attempts`));
  }

  private async resumeOn(url: string): Promise<"resumed" | "ended" | "failed"> {
    let connection: Connection;
    try {
      connection = await Connection.open(url, this.options);
    } catch {
      return "failed";
    }
    this.attach(connection);
    try {
      const reply = await connection.request("resume", { token: this.token, last_seq: this.seq });
      this.admitted(reply);
    } catch (error) {
      void connection.close();
      if (error instanceof ServerError && error.code === "resume_refused") {
        this.end(new ConnectionClosed("resume_refused", error.message));
        return "ended";
      }
      return "failed";
    }
    if (this.userClosed) {
      this.connection = connection;
      await connection.close();
      return "ended";
    }
    this.connection = connection;
    // The next drop tries this gateway first.
    const known = this.urls.indexOf(url);
    if (known >= 0) this.urls.splice(known, 1);
    this.urls.unshift(url);
    this.setState("resumed");
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const entry of waiting) entry.run(connection);
    if (connection.closedWith) void this.dropped(connection.closedWith);
    return "resumed";
  }

  private pause(seconds: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.wake?.(), seconds * 1000);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  private wait(entry: Waiting): void {
    const seconds = this.options.resumeWait ?? 30;
    const timer = setTimeout(() => {
      this.waiting.delete(bounded);
      entry.fail(new ConnectionClosed("timeout", `the session did not resume within ${seconds} s`));
    }, seconds * 1000);
    const bounded: Waiting = {
      run: (connection) => {
        clearTimeout(timer);
        entry.run(connection);
      },
      fail: (error) => {
        clearTimeout(timer);
        entry.fail(error);
      },
    };
    this.waiting.add(bounded);
  }

  private end(reason: ConnectionClosed): void {
    if (this.state === "closed") return;
    this.closedWith = reason;
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const entry of waiting) entry.fail(reason);
    this.setState("closed", reason);
  }

  private setState(state: SessionState, reason?: ConnectionClosed): void {
    this.state = state;
    for (const handler of [...this.stateHandlers]) {
      try {
        handler(state, reason);
      } catch (error) {
        console.error("mmo-client: state handler failed", error);
      }
    }
  }
}

/**
 * The WebSocket URLs of the ticket's gateways, the chosen one first; only
 * when it names none with a WebSocket port (a server too old to say), the
 * game's `fallback`. The login server chose the gateway: a URL the game
 * knows beforehand never overrides that choice.
 */
function gatewayUrls(ticket: LoginReply, fallback?: string): string[] {
  const urls: string[] = [];
  for (const gateway of [ticket.gateway, ...(ticket.gateways ?? [])]) {
    if (gateway && typeof gateway.websocket === "number") {
      const candidate = gatewayUrl(gateway as GatewayInfo);
      if (!urls.includes(candidate)) urls.push(candidate);
    }
  }
  if (urls.length === 0 && fallback) urls.push(fallback);
  return urls;
}

function moveUrl(frame: Frame): string | null {
  const { host, websocket } = frame;
  if (typeof host !== "string" || typeof websocket !== "number") return null;
  return gatewayUrl({ host, websocket });
}
