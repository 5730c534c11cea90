/**
 * The login server's requests, each on a connection of its own: `register`
 * an account, `login` for a ticket (with the gateway to present it to).
 */

import { Connection, type ConnectionOptions } from "./connection.js";
import type { LoginReply, RealmInfo, RegisterReply } from "./messages.js";

export interface LoginOptions extends ConnectionOptions {
  /** The realm to log into; default: the server's first realm. */
  realm?: string;
}

async function once<T>(url: string, options: ConnectionOptions, ask: (c: Connection) => Promise<T>): Promise<T> {
  const connection = await Connection.open(url, options);
  try {
    return await ask(connection);
  } finally {
    await connection.close();
  }
}

/** Create an account on the login server (or standalone server) at `url`. */
export function register(url: string, name: string, password: string, options: ConnectionOptions = {}): Promise<RegisterReply> {
  return once(url, options, (c) => c.request("register", { name, password }));
}

/**
 * Log in at `url`; the reply holds the `ticket` and the `gateway` (and, on
 * newer servers, every `gateways` of the realm) for `Session.open`.
 */
export function login(url: string, name: string, password: string, options: LoginOptions = {}): Promise<LoginReply> {
  const fields = options.realm === undefined ? { name, password } : { name, password, realm: options.realm };
  return once(url, options, (c) => c.request("login", fields));
}

/** The realms of the login server at `url`, with their load. */
export async function realms(url: string, options: ConnectionOptions = {}): Promise<RealmInfo[]> {
  return (await once(url, options, (c) => c.request("realms"))).realms;
}
