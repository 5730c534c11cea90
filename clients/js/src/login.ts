/**
 * The login server's requests, each on a connection of its own: `register`
 * an account, `login` for a ticket (with the gateway to present it to),
 * with the password or with a device's refresh token, and `logout`.
 *
 * A refresh token lets a returning player log in without the password (and
 * costs the server no password hash): a password `login` with `remember`
 * and a `device` label gets one, `loginWithToken` presents it and gets the
 * next one (each works once). The SDK keeps none: every new token, and the
 * moment to forget the old one, goes to the caller's `onToken`, which
 * stores it where the game likes (a file, a keychain, `localStorage`).
 */

import { Connection, type ConnectionOptions } from "./connection.js";
import { ServerError } from "./errors.js";
import type { LoginReply, RealmInfo, RegisterReply } from "./messages.js";

/**
 * A device's refresh token as the SDK hands it to the caller: plain data,
 * so that `JSON.stringify` stores it and `JSON.parse` gives it back.
 */
export interface RefreshToken {
  /** The opaque token (shown once by the server). */
  token: string;
  /** The device label it is bound to: it works only with this label. */
  device: string;
  /** When it expires unless used before, in seconds since the epoch (the server's clock). */
  expires: number;
}

/**
 * Where the caller keeps its device's token: called with each new token
 * (store it, replacing the one before), or with `null` when the stored one
 * must be forgotten (the server refused it, or the device logged out).
 * The login's promise waits for it.
 */
export type TokenKeeper = (token: RefreshToken | null) => void | Promise<void>;

export interface LoginOptions extends ConnectionOptions {
  /** The realm to log into; default: the server's first realm. */
  realm?: string;
  /**
   * With a password: ask for a refresh token for `device` ("remember
   * me"). A new token for a device replaces the one it had.
   */
  remember?: boolean;
  /**
   * The device's label (1 to 64 printable characters), which the client
   * chooses once and keeps (say a random id made at install): needed with
   * `remember`.
   */
  device?: string;
  /** Receives each refresh token the login returns, and `null` when it must be forgotten. */
  onToken?: TokenKeeper;
}

export interface LogoutOptions extends ConnectionOptions {
  /** Revoke this device's refresh token only; without it, every token of the account. */
  device?: string;
  /** Called with `null`: the device's token is of no more use. */
  onToken?: TokenKeeper;
}

async function once<T>(url: string, options: ConnectionOptions, ask: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.open(url, options);
  try {
    return await ask(connection);
  } finally {
    await connection.close();
  }
}

/** The refresh token a login reply carries for `device`, or null if it carries none. */
export function refreshTokenOf(reply: LoginReply, device: string): RefreshToken | null {
  if (typeof reply.refresh !== "string" || typeof reply.refresh_expires !== "number") return null;
  return { token: reply.refresh, device, expires: reply.refresh_expires };
}

/** Create an account on the login server (or standalone server) at `url`. */
export function register(url: string, name: string, password: string, options: ConnectionOptions = {}): Promise<RegisterReply> {
  return once(url, options, (c) => c.request("register", { name, password }));
}

/**
 * Log in at `url` with the password; the reply holds the `ticket` and the
 * `gateway` (and, on newer servers, every `gateways` of the realm) for
 * `Session.open`. With `remember` and `device`, it also holds the device's
 * refresh token (`refresh`, `refresh_expires`), which `onToken` receives
 * before the promise resolves.
 */
export async function login(url: string, name: string, password: string, options: LoginOptions = {}): Promise<LoginReply> {
  const fields: { name: string; password: string; realm?: string; remember?: boolean; device?: string } = { name, password };
  if (options.realm !== undefined) fields.realm = options.realm;
  if (options.remember) {
    if (options.device === undefined) throw new TypeError("remember needs the device's label (options.device)");
    fields.remember = true;
    fields.device = options.device;
  }
  const reply = await once(url, options, (c) => c.request("login", fields));
  if (options.remember && options.onToken) {
    const token = refreshTokenOf(reply, options.device as string);
    if (token) await options.onToken(token);
  }
  return reply;
}

/**
 * Log in at `url` with a device's refresh token instead of the password:
 * the same reply as `login`, with the device's next token, which
 * `onToken` receives before the promise resolves (the one given is spent
 * now: keep the new one). Rejects with `ServerError` `refresh_refused`
 * when the token is spent, revoked, expired or of another device:
 * `onToken` then receives `null`, and the player logs in with the
 * password. A token sent on a connection that dropped before the reply may
 * have been spent: presented again it is refused too, and revokes the
 * device's tokens (the server takes a second use for a stolen copy).
 */
export async function loginWithToken(url: string, token: RefreshToken, options: LoginOptions = {}): Promise<LoginReply> {
  const fields: { refresh: string; device: string; realm?: string } = { refresh: token.token, device: token.device };
  if (options.realm !== undefined) fields.realm = options.realm;
  let reply: LoginReply;
  try {
    reply = await once(url, options, (c) => c.request("login", fields));
  } catch (e) {
    if (e instanceof ServerError && e.code === "refresh_refused" && options.onToken) await options.onToken(null);
    throw e;
  }
  const next = refreshTokenOf(reply, token.device);
  if (next && options.onToken) await options.onToken(next);
  return reply;
}

/**
 * Log out at the login server (or standalone server) at `url` with a
 * session's `ticket` (a login reply's): every ticket of the account issued
 * until now is refused, its sessions end (goodbye `logged_out`), and its
 * refresh tokens are revoked: `device`'s, or every one without it. A
 * `Session.close()` or a `logout` on the gateway does not revoke tokens:
 * a game logging out for good calls this.
 */
export async function logout(url: string, ticket: string, options: LogoutOptions = {}): Promise<void> {
  const fields: { ticket: string; device?: string } = { ticket };
  if (options.device !== undefined) fields.device = options.device;
  await once(url, options, (c) => c.request("logout", fields));
  if (options.onToken) await options.onToken(null);
}

/** The realms of the login server at `url`, with their load. */
export async function realms(url: string, options: ConnectionOptions = {}): Promise<RealmInfo[]> {
  return (await once(url, options, (c) => c.request("realms"))).realms;
}
