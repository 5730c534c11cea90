/**
 * The two ways a request fails: the server answered with an error frame
 * (ServerError), or the connection ended before the answer came
 * (ConnectionClosed).
 */

/** The server answered with an error frame (docs/protocol.md section 7). */
export class ServerError extends Error {
  /** The stable, machine-readable code, e.g. "name_taken"; unknown codes are possible. */
  readonly code: string;
  /** Whether the server closes the connection after this error. */
  readonly fatal: boolean;
  /** Seconds to wait before retrying (with codes "unavailable" and "busy"). */
  readonly retryAfter?: number;

  constructor(code: string, message: string, fatal = false, retryAfter?: number) {
    super(message);
    this.name = "ServerError";
    this.code = code;
    this.fatal = fatal;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

/**
 * The connection (or the session) ended before a reply came. `code` is the
 * server's goodbye code when it said goodbye ("shutdown", "replaced",
 * "logged_out", ...), the SDK's own reason ("closed", "timeout",
 * "resume_refused", "resume_failed") or null when the socket just dropped.
 */
export class ConnectionClosed extends Error {
  readonly code: string | null;

  constructor(code: string | null, message: string) {
    super(code ? `${code}: ${message}` : message);
    this.name = "ConnectionClosed";
    this.code = code;
  }
}
