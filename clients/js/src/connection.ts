/**
 * One WebSocket to an mmo server: the hello, requests matched to their
 * replies by id, pushes dispatched by type, heartbeats answered, liveness
 * watched both ways, the goodbye. `login`, `register` and `Session` are
 * built on it.
 */

import { decode, encode } from "@msgpack/msgpack";

import { ConnectionClosed, ServerError } from "./errors.js";
import { Liveness, livenessTimes } from "./liveness.js";
import type { Frame, HelloReply, MessageOf, ReplyOf, RequestFields } from "./messages.js";
import { messageBytes, openSocket, type SocketOptions, type WebSocketLike } from "./socket.js";

/** The protocol versions this SDK speaks. */
export const VERSIONS = [1];
/** The SDK's name and version in the hello. */
export const CLIENT = "mmo-client-js/0.1.0";

export interface ConnectionOptions extends SocketOptions {
  /** Sent in the hello as `client`, for the server's log. */
  clientName?: string;
  /** Seconds the WebSocket and the hello may take; default 10. */
  connectTimeout?: number;
}

export type Handler<M> = (message: M) => void;

interface Pending {
  resolve(fields: Record<string, unknown>): void;
  reject(error: Error): void;
}

/** Read-only view of a frame's fields without `t` and `id`. */
function fieldsOf(frame: Frame): Record<string, unknown> {
  const { t: _t, id: _id, ...fields } = frame;
  return fields;
}

export class Connection {
  /** The hello reply. */
  welcome!: HelloReply;
  /** The highest push `seq` seen on this connection. */
  lastSeq = 0;
  /** The server's goodbye frame, if it said goodbye. */
  goodbye: MessageOf<"bye"> | null = null;
  /** Why the connection ended, once it has. */
  closedWith: ConnectionClosed | null = null;

  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly handlers = new Map<string, Set<Handler<never>>>();
  private readonly closeHandlers = new Set<(reason: ConnectionClosed) => void>();
  private readonly frameHandlers = new Set<Handler<Frame>>();
  private closing = false;
  private liveness: Liveness | null = null;

  private constructor(readonly url: string, readonly socket: WebSocketLike) {}

  /**
   * Connect to `url` (`wss://host:port/`) and handshake; resolves once the
   * hello reply is in, or rejects (ConnectionClosed "timeout" after
   * `connectTimeout` seconds).
   */
  static async open(url: string, options: ConnectionOptions = {}): Promise<Connection> {
    const socket = await openSocket(url, options);
    const connection = new Connection(url, socket);
    const seconds = options.connectTimeout ?? 10;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        reject(new ConnectionClosed("timeout", `no handshake with ${url} within ${seconds} s`));
        connection.abort();
      }, seconds * 1000);
    });
    try {
      await Promise.race([connection.handshake(options.clientName ?? CLIENT), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return connection;
  }

  private handshake(clientName: string): Promise<void> {
    const socket = this.socket;
    return new Promise<void>((resolve, reject) => {
      socket.onerror = () => {
        // The close event that follows says why; before open, this is all we get.
      };
      socket.onclose = (event) => {
        this.lost(`WebSocket code ${event.code}${event.reason ? `: ${event.reason}` : ""}`);
        reject(this.closedWith);
      };
      socket.onmessage = (event) => this.received(event.data);
      socket.onopen = () => {
        this.request("hello", { versions: VERSIONS, client: clientName }).then(
          (welcome) => {
            this.welcome = welcome as HelloReply;
            this.watch();
            resolve();
          },
          (error) => {
            // A refused hello (unsupported_version): nothing more to say on this connection.
            this.abort();
            reject(error);
          },
        );
      };
    });
  }

  /** Whether the connection is open (the hello done and not closed). */
  get open(): boolean {
    return this.closedWith === null && !this.closing;
  }

  /**
   * Send request `kind` with `fields`; resolves with the reply's fields, or
   * rejects with ServerError (the server's error frame) or ConnectionClosed.
   */
  request<K extends string>(kind: K, fields?: RequestFields<K>): Promise<ReplyOf<K>> {
    if (this.closedWith || this.closing) {
      return Promise.reject(this.closedWith ?? new ConnectionClosed("closed", "the connection is closed"));
    }
    const id = ++this.nextId;
    return new Promise<ReplyOf<K>>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as Pending["resolve"], reject });
      try {
        this.write({ ...(fields as object), t: kind, id });
      } catch (error) {
        this.pending.delete(id);
        reject(error);
      }
    });
  }

  /** Send `kind` without an id: no reply; an error arrives at `on("error")`. */
  send<K extends string>(kind: K, fields?: RequestFields<K>): void {
    if (this.closedWith || this.closing) throw this.closedWith ?? new ConnectionClosed("closed", "the connection is closed");
    this.write({ ...(fields as object), t: kind });
  }

  /**
   * Call `handler` for every frame of type `kind`: a push ("chat.message"),
   * "error" (errors not tied to a request), "bye", "heartbeat" or
   * "session.move". Returns a function that removes the handler.
   */
  on<K extends string>(kind: K, handler: Handler<MessageOf<K>>): () => void {
    let set = this.handlers.get(kind);
    if (!set) this.handlers.set(kind, (set = new Set()));
    set.add(handler as Handler<never>);
    return () => set.delete(handler as Handler<never>);
  }

  /**
   * Call `handler` for every frame `on()` handlers get (pushes, "error",
   * "bye", "heartbeat", "session.move"), before them; returns a function
   * that removes it.
   */
  onFrame(handler: Handler<Frame>): () => void {
    this.frameHandlers.add(handler);
    return () => this.frameHandlers.delete(handler);
  }

  /** Call `handler` once the connection has ended, with why. */
  onClose(handler: (reason: ConnectionClosed) => void): () => void {
    if (this.closedWith) {
      const reason = this.closedWith;
      queueMicrotask(() => handler(reason));
      return () => {};
    }
    this.closeHandlers.add(handler);
    return () => this.closeHandlers.delete(handler);
  }

  /** Say goodbye and close; resolves once closed. */
  close(): Promise<ConnectionClosed> {
    return new Promise((resolve) => {
      this.onClose(resolve);
      if (this.closedWith || this.closing) return;
      this.closing = true;
      try {
        this.write({ t: "bye" });
      } catch {
        // Already gone: the close event says so.
      }
      this.socket.close(1000);
    });
  }

  /**
   * Drop the socket without a goodbye (the server keeps a gateway session
   * for a resume). The connection ends at once: a browser's close event
   * waits for a closing handshake that a half-dead connection never does.
   */
  abort(): void {
    const socket = this.socket as WebSocketLike & { terminate?: () => void };
    if (typeof socket.terminate === "function") socket.terminate();
    else socket.close(4000, "dropped");
    this.lost("dropped by the client");
  }

  private write(frame: Record<string, unknown>): void {
    this.socket.send(encode(frame));
    this.liveness?.sent();
  }

  /**
   * Keep the connection alive and give it up when the server has gone
   * silent: a `ping` when nothing was sent for half the server's idle
   * timeout (protocol.md section 9), a `ping` request when a heartbeat is
   * overdue, and an abort (ConnectionClosed "timeout") when nothing at all
   * came for `heartbeat_timeout` (or `idle_timeout`) seconds.
   */
  private watch(): void {
    if (this.closedWith) return;
    this.liveness = new Liveness(livenessTimes(this.welcome), {
      keepAlive: () => {
        if (this.open) this.send("ping");
      },
      probe: () => {
        // The reply matters only by arriving; a drop rejects it, and the close says why.
        if (this.open) this.request("ping").catch(() => {});
      },
      expire: (seconds) => {
        this.closedWith ??= new ConnectionClosed("timeout", `nothing came from the server for ${seconds} s`);
        this.abort();
      },
    });
  }

  private received(data: unknown): void {
    this.liveness?.heard();
    const bytes = messageBytes(data);
    let frame: Frame;
    try {
      if (bytes === null) throw new Error("a text message");
      frame = decode(bytes) as Frame;
      if (typeof frame !== "object" || frame === null || typeof frame.t !== "string") {
        throw new Error("not a map with a type");
      }
    } catch (error) {
      // A verified server speaks the protocol: anything else means the stream cannot be trusted.
      this.closedWith ??= new ConnectionClosed("bad_frame", `the server sent ${String(error)}`);
      this.abort();
      return;
    }
    switch (frame.t) {
      case "reply":
      case "error": {
        const waiting = typeof frame.id === "number" ? this.pending.get(frame.id) : undefined;
        if (waiting) {
          this.pending.delete(frame.id as number);
          if (frame.t === "reply") waiting.resolve(fieldsOf(frame));
          else waiting.reject(serverError(frame));
        } else if (frame.t === "error") {
          this.dispatch("error", frame);
        }
        return;
      }
      case "bye":
        this.goodbye = frame as unknown as MessageOf<"bye">;
        this.dispatch("bye", frame);
        return;
      case "heartbeat":
        if (frame.seq === undefined) {
          if (this.open) this.send("pong");
          this.dispatch("heartbeat", frame);
          return;
        }
        break;
    }
    if (typeof frame.seq === "number" && frame.seq > this.lastSeq) this.lastSeq = frame.seq;
    this.dispatch(frame.t, frame);
  }

  private dispatch(kind: string, frame: Frame): void {
    for (const handler of [...this.frameHandlers, ...(this.handlers.get(kind) ?? [])]) {
      try {
        (handler as Handler<Frame>)(frame);
      } catch (error) {
        console.error(`mmo-client: handler for ${kind} failed`, error);
      }
    }
  }

  /** The connection has ended (`why`, when there was no goodbye): reject what waits, tell the close handlers. */
  private lost(why: string): void {
    this.liveness?.stop();
    this.closing = true;
    if (!this.closedWith) {
      this.closedWith = this.goodbye
        ? new ConnectionClosed(String(this.goodbye.code), String(this.goodbye.message))
        : new ConnectionClosed(null, `the connection closed (${why})`);
    }
    const closed = this.closedWith;
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const waiting of pending) waiting.reject(closed);
    const handlers = [...this.closeHandlers];
    this.closeHandlers.clear();
    for (const handler of handlers) handler(closed);
  }
}

function serverError(frame: Frame): ServerError {
  const retry = typeof frame.retry_after === "number" ? frame.retry_after : undefined;
  return new ServerError(String(frame.code), String(frame.message), frame.fatal === true, retry);
}
