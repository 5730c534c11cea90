/**
 * Opening a WebSocket the same way in a browser and in Node: the browser's
 * global WebSocket, or in Node the `ws` package (which can trust a
 * deployment's own CA, `ca`).
 */

/** The part of the WebSocket API the SDK uses (the browser's and `ws` both have it). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/** A WebSocket constructor: the browser's, `ws`'s, or the game's own. */
export type WebSocketConstructor = new (url: string, protocols?: unknown, options?: unknown) => WebSocketLike;

export interface SocketOptions {
  /** PEM certificate(s) of the CA to trust (Node only; e.g. the deployment's ca.crt). */
  ca?: string | Uint8Array;
  /** The WebSocket class to use; default: `ws` in Node, the global WebSocket elsewhere. */
  WebSocket?: WebSocketConstructor;
}

const isNode = typeof process !== "undefined" && typeof process.versions?.node === "string";

/** A WebSocket to `url`, not yet open; never asks for a subprotocol (docs/websocket.md). */
export async function openSocket(url: string, options: SocketOptions = {}): Promise<WebSocketLike> {
  let socket: WebSocketLike;
  if (options.WebSocket) {
    socket = options.ca !== undefined
      ? new options.WebSocket(url, undefined, { ca: options.ca })
      : new options.WebSocket(url);
  } else if (isNode) {
    const name = "ws";
    const ws = (await import(name)) as { default: WebSocketConstructor };
    socket = new ws.default(url, undefined, {
      ...(options.ca !== undefined ? { ca: options.ca } : {}),
      perMessageDeflate: false,
      maxPayload: 16 * 1024 * 1024,
    });
  } else {
    const Global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Global) throw new Error("no WebSocket here: pass options.WebSocket");
    socket = new Global(url);
  }
  socket.binaryType = "arraybuffer";
  return socket;
}

/** The bytes of a binary message, whatever the WebSocket implementation delivers. */
export function messageBytes(data: unknown): Uint8Array | null {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) {
    // ws delivers a fragmented message as a list of Buffers when binaryType is "nodebuffer".
    const parts = data as Uint8Array[];
    const whole = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let offset = 0;
    for (const part of parts) {
      whole.set(part, offset);
      offset += part.byteLength;
    }
    return whole;
  }
  return null;
}
