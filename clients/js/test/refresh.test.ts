/**
 * Refresh tokens against a real standalone server: a password login that
 * remembers its device hands the token to the caller's keeper, a token
 * login gives the next one and spends the one given, a spent token is
 * refused and revokes the device, a token works only with its own device,
 * a logout revokes it, and what the keeper stores survives JSON (as in
 * `localStorage`).
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  login,
  loginWithToken,
  logout,
  refreshTokenOf,
  register,
  ServerError,
  Session,
  type RefreshToken,
} from "../src/index.js";

import { missing, PASSWORD, standalone, type Standalone } from "./server.js";

const skip = missing();

/** A keeper as a browser game writes one: the token as JSON under one key of a storage. */
class Keeper {
  readonly storage = new Map<string, string>();
  readonly seen: Array<RefreshToken | null> = [];

  keep = (token: RefreshToken | null): void => {
    this.seen.push(token);
    if (token) this.storage.set("mmo.refresh", JSON.stringify(token));
    else this.storage.delete("mmo.refresh");
  };

  get stored(): RefreshToken | null {
    const text = this.storage.get("mmo.refresh");
    return text === undefined ? null : (JSON.parse(text) as RefreshToken);
  }
}

const refused = (e: unknown) => e instanceof ServerError && e.code === "refresh_refused";

describe("refresh tokens against a standalone server", { skip: skip ?? false }, () => {
  let server: Standalone;

  before(async () => {
    server = await standalone();
  });

  after(async () => {
    await server?.deployment.stop();
  });

  /** A new account, logged in with "remember me" on `device`; its keeper and the reply. */
  async function remembered(name: string, device: string) {
    await register(server.url, name, PASSWORD, { ca: server.ca });
    const keeper = new Keeper();
    const reply = await login(server.url, name, PASSWORD, { ca: server.ca, remember: true, device, onToken: keeper.keep });
    return { keeper, reply };
  }

  it("gives the caller a token at a remembered login, and none otherwise", async () => {
    const before = Date.now() / 1000;
    const { keeper, reply } = await remembered("Rhea", "laptop");
    assert.equal(keeper.seen.length, 1);
    const token = keeper.stored;
    assert.ok(token);
    assert.equal(token.device, "laptop");
    assert.equal(token.token, reply.refresh);
    assert.equal(token.expires, reply.refresh_expires);
    assert.ok(token.expires > before + 86400, "valid for days");
    assert.deepEqual(refreshTokenOf(reply, "laptop"), token);

    const plain = new Keeper();
    const again = await login(server.url, "Rhea", PASSWORD, { ca: server.ca, onToken: plain.keep });
    assert.equal(again.refresh, undefined);
    assert.equal(refreshTokenOf(again, "laptop"), null);
    assert.deepEqual(plain.seen, []);
    await assert.rejects(
      login(server.url, "Rhea", PASSWORD, { ca: server.ca, remember: true }),
      (e: unknown) => e instanceof TypeError,
    );
  });

  it("logs in with the stored token, rotating it; a ticket that opens a session", async () => {
    const { keeper, reply: first } = await remembered("Theia", "phone");
    const stored = keeper.stored as RefreshToken;
    const reply = await loginWithToken(server.url, stored, { ca: server.ca, onToken: keeper.keep });
    assert.equal(reply.account, first.account);
    assert.equal(reply.name, "Theia");
    assert.equal(typeof reply.ticket, "string");
    const next = keeper.stored as RefreshToken;
    assert.notEqual(next.token, stored.token);
    assert.equal(next.device, "phone");
    assert.equal(reply.refresh, next.token);
    const session = await Session.open(reply, { ca: server.ca });
    try {
      assert.equal(session.account, first.account);
    } finally {
      await session.close();
    }
    // And again with the newest one.
    await loginWithToken(server.url, next, { ca: server.ca, onToken: keeper.keep });
    assert.equal(keeper.seen.length, 3);
  });

  it("refuses a spent token, tells the keeper to forget it, and revokes the device", async () => {
    const { keeper } = await remembered("Phoebe", "tablet");
    const spent = keeper.stored as RefreshToken;
    await loginWithToken(server.url, spent, { ca: server.ca, onToken: keeper.keep });
    const newest = keeper.stored as RefreshToken;
    // A copy of the spent token presented again: refused...
    const thief = new Keeper();
    await assert.rejects(loginWithToken(server.url, spent, { ca: server.ca, onToken: thief.keep }), refused);
    assert.deepEqual(thief.seen, [null]);
    // ...and the device's newest token with it: the player logs in with the password.
    await assert.rejects(loginWithToken(server.url, newest, { ca: server.ca, onToken: keeper.keep }), refused);
    assert.equal(keeper.stored, null);
    assert.equal(keeper.seen.at(-1), null);
  });

  it("takes a token only with its own device, and does not spend it then", async () => {
    const { keeper } = await remembered("Tethys", "desktop");
    const token = keeper.stored as RefreshToken;
    await assert.rejects(loginWithToken(server.url, { ...token, device: "elsewhere" }, { ca: server.ca }), refused);
    await assert.rejects(loginWithToken(server.url, { ...token, token: "not.a-token" }, { ca: server.ca }), refused);
    const reply = await loginWithToken(server.url, token, { ca: server.ca, onToken: keeper.keep });
    assert.equal(reply.name, "Tethys");
  });

  it("revokes the device's token at a logout with the ticket", async () => {
    const { keeper, reply } = await remembered("Dione", "console");
    const token = keeper.stored as RefreshToken;
    await logout(server.url, reply.ticket, { ca: server.ca, device: "console", onToken: keeper.keep });
    assert.equal(keeper.stored, null);
    await assert.rejects(loginWithToken(server.url, token, { ca: server.ca }), refused);
    // The password still logs in.
    const again = await login(server.url, "Dione", PASSWORD, { ca: server.ca });
    assert.equal(again.name, "Dione");
  });
});
