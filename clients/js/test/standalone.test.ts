/**
 * The SDK against a real standalone server (`twistd -n mmo` with a
 * WebSocket listener): accounts, the hello, requests and typed errors,
 * pushes, heartbeats, a resume after the socket is dropped or after the
 * server went silent, chat, and the world.
 */

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, describe, it } from "node:test";

import {
  Connection,
  ConnectionClosed,
  gatewayUrl,
  login,
  register,
  ServerError,
  Session,
  type GatewayInfo,
  type LoginReply,
  type SessionState,
} from "../src/index.js";
import WebSocket from "ws";

import { missing, PASSWORD, Relay, standalone, until, type Standalone } from "./server.js";

const skip = missing();

describe("against a standalone server", { skip: skip ?? false }, () => {
  let server: Standalone;
  const open: Session[] = [];

  before(async () => {
    server = await standalone();
  });

  after(async () => {
    for (const session of open) if (session.state !== "closed") await session.close();
    await server?.deployment.stop();
  });

  /** A new account, logged in: its ticket. */
  async function ticketOf(name: string): Promise<LoginReply> {
    await register(server.url, name, PASSWORD, { ca: server.ca });
    return login(server.url, name, PASSWORD, { ca: server.ca });
  }

  /** A new account, logged in, with a session on the ticket's gateway. */
  async function player(name: string, options = {}, ticket?: LoginReply): Promise<Session> {
    const session = await Session.open(ticket ?? (await ticketOf(name)), { ca: server.ca, ...options });
    open.push(session);
    return session;
  }

  /**
   * `listener` and `talker` in party `channel`, the line "before" heard:
   * what the listener hears from there (each party line with its `seq`),
   * its changes of state, and `say(text)` for the talker.
   */
  async function party(listener: Session, talker: Session, channel: string) {
    const seen: Array<{ seq: number; text: string }> = [];
    listener.on("chat.message", (m) => {
      if (m.channel.startsWith("party:")) seen.push({ seq: m.seq, text: m.text });
    });
    await listener.request("chat.join", { channel });
    await talker.request("chat.join", { channel });
    const states: string[] = [];
    listener.onState((state, reason) => states.push(reason ? `${state}:${reason.code}` : state));
    const say = (text: string) => talker.request("chat.send", { channel, text });
    await say("before");
    await until(() => seen.length === 1, "the first message");
    return { seen, states, say };
  }

  /** `seen` is `texts`, each once and in order, with no `seq` missing between them. */
  async function heardAll(seen: Array<{ seq: number; text: string }>, texts: string[]): Promise<void> {
    await until(() => seen.length === texts.length, "every message");
    assert.deepEqual(seen.map((m) => m.text), texts);
    for (let i = 1; i < seen.length; i++) assert.equal(seen[i].seq, seen[i - 1].seq + 1);
  }

  /** A relay in front of the server's WebSocket port. */
  const relay = () => new Relay(Number(new URL(server.url).port)).listen();

  it("registers and logs in, with typed errors", async () => {
    const account = await register(server.url, "Ada", PASSWORD, { ca: server.ca });
    assert.equal(account.name, "Ada");
    await assert.rejects(register(server.url, "ada", PASSWORD, { ca: server.ca }), (e: unknown) => {
      assert.ok(e instanceof ServerError);
      assert.equal(e.code, "name_taken");
      assert.equal(e.fatal, false);
      return true;
    });
    await assert.rejects(login(server.url, "ada", "not the password", { ca: server.ca }), { code: "login_failed" });
    const ticket = await login(server.url, "ada", PASSWORD, { ca: server.ca });
    assert.equal(ticket.account, account.account);
    assert.equal(typeof ticket.ticket, "string");
    assert.equal(ticket.gateway.name, "mmo");
    assert.equal(gatewayUrl(ticket.gateway), server.url);
  });

  it("handshakes, matches replies to requests by id, and types errors", async () => {
    const connection = await Connection.open(server.url, { ca: server.ca, clientName: "sdk-test/1" });
    try {
      assert.equal(connection.welcome.version, 1);
      assert.match(connection.welcome.server, /^mmo\//);
      assert.equal(typeof connection.welcome.max_frame_size, "number");
      assert.equal(typeof connection.welcome.idle_timeout, "number");
      // Replies come back to their own requests, whatever the order.
      const results = await Promise.allSettled([
        connection.request("ping"),
        connection.request("dance"),
        connection.request("register", { name: "9bad", password: PASSWORD }),
        connection.request("ping"),
      ]);
      assert.equal(results[0].status, "fulfilled");
      assert.equal(typeof (results[0] as PromiseFulfilledResult<{ time: number }>).value.time, "number");
      const codes = results.slice(1, 3).map((r) => (r as PromiseRejectedResult).reason);
      assert.ok(codes.every((e) => e instanceof ServerError));
      // Not admitted yet: game messages are refused, and the connection stays.
      assert.deepEqual(codes.map((e: ServerError) => e.code), ["auth_required", "bad_name"]);
      assert.equal(results[3].status, "fulfilled");
      assert.ok(connection.open);
    } finally {
      await connection.close();
    }
    await assert.rejects(connection.request("ping"), ConnectionClosed);
  });

  it("opens a session and delivers pushes, chat among them", async () => {
    const alice = await player("Alice");
    const bob = await player("Bob");
    assert.equal(alice.name, "Alice");
    assert.equal(typeof alice.account, "string");
    assert.equal(alice.welcome.version, 1);
    const heard: string[] = [];
    const off = bob.on("chat.message", (m) => heard.push(`${m.from}: ${m.text} (${m.channel})`));
    const room = await alice.request("room.create", { name: "Tavern" });
    const joined: string[] = [];
    alice.on("room.joined", (m) => joined.push(m.name));
    await bob.request("room.join", { room: room.room.id });
    await until(() => joined.includes("Bob"), "room.joined");
    await alice.request("chat.send", { channel: `room:${room.room.id}`, text: "hello Bob" });
    await until(() => heard.length === 1, "the chat message");
    assert.deepEqual(heard, [`Alice: hello Bob (room:${room.room.id})`]);
    assert.ok(bob.lastSeq > 0);
    off();
    await alice.request("chat.send", { channel: "world", text: "unheard" });
    await assert.rejects(bob.request("chat.send", { channel: "party:", text: "x" }), { code: "bad_request" });
    assert.equal(heard.length, 1);
    await assert.rejects(alice.request("dance"), { code: "unknown_type", fatal: false });
    const who = await alice.request("chat.who", { name: "bob" });
    assert.equal(who.online, true);
  });

  it("answers heartbeats by itself and stays connected when quiet", async () => {
    const quiet = await player("Quiet");
    const beats: number[] = [];
    quiet.on("heartbeat", (m) => beats.push(m.time));
    const states: SessionState[] = [];
    quiet.onState((state) => states.push(state));
    if (quiet.welcome.heartbeat_timeout !== undefined) assert.equal(quiet.welcome.heartbeat_timeout, 1.0);
    // Three times the server's heartbeat_timeout (1 s) without a request.
    await new Promise((r) => setTimeout(r, 3000));
    assert.ok(beats.length >= 3, `heartbeats: ${beats.length}`);
    assert.deepEqual(states, []);
    assert.equal(quiet.currentConnection.open, true);
    assert.equal(typeof (await quiet.request("ping")).time, "number");
  });

  it("resumes after the socket drops, missing nothing, each push once", async () => {
    const walker = await player("Walker", { reconnect: { initialDelay: 1.0 } });
    const talker = await player("Talker");
    const { seen, states, say } = await party(walker, talker, "party:walk");
    const session = walker.id;

    walker.currentConnection.abort();
    await until(() => walker.state === "resuming", "the drop");
    // Sent while the walker is away: they wait for it on the server.
    for (const text of ["away 1", "away 2", "away 3"]) await say(text);
    // A request made while resuming waits for the resume.
    const channels = await walker.request("chat.channels");
    assert.ok(channels.channels.includes("party:walk"));
    assert.deepEqual(states, ["resuming:null", "resumed"]);
    assert.equal(walker.id, session);
    await say("after");
    await heardAll(seen, ["before", "away 1", "away 2", "away 3", "after"]);
  });

  it("opens the ticket's gateway, and options.url only when the ticket names none", async () => {
    const elsewhere = await relay();
    try {
      // The login server chose the gateway: a URL the game knows does not override it.
      const ticket = await ticketOf("Chosen");
      const chosen = await player("Chosen", { url: elsewhere.url }, ticket);
      assert.equal(chosen.url, gatewayUrl(ticket.gateway));
      // An older server names no WebSocket port: then the URL given is the gateway.
      const old = await ticketOf("Unnamed");
      const unnamed: LoginReply = { ...old, gateway: { ...old.gateway, websocket: null }, gateways: undefined };
      const fallback = await player("Unnamed", { url: elsewhere.url }, unnamed);
      assert.equal(fallback.url, elsewhere.url);
      assert.equal(typeof (await fallback.request("ping")).time, "number");
      await fallback.close();
    } finally {
      await elsewhere.close();
    }
  });

  it("gives up a connection that went silent, resumes, and misses nothing", async () => {
    const nat = await relay();
    try {
      const ticket = await ticketOf("Tunneler");
      const via = (gateway: GatewayInfo): GatewayInfo => ({ ...gateway, host: "localhost", websocket: nat.port });
      const walker = await player("Tunneler", {}, { ...ticket, gateway: via(ticket.gateway), gateways: ticket.gateways?.map(via) });
      const { seen, states, say } = await party(walker, await player("Shouter"), "party:nat");

      // The server still sends (and hears the client), but nothing reaches the client, not even a close.
      nat.silence();
      for (const text of ["lost 1", "lost 2", "lost 3"]) await say(text);
      // heartbeat_timeout is 1 s: well within this, the client gives the connection up and resumes.
      await until(() => walker.state === "resumed", "the resume after the silence", 8000);
      assert.deepEqual(states, ["resuming:timeout", "resumed"]);
      await say("after");
      await heardAll(seen, ["before", "lost 1", "lost 2", "lost 3", "after"]);
    } finally {
      await nat.close();
    }
  });

  it("keeps a busy connection that the server never heartbeats", async () => {
    // A client that keeps sending frames without ids is never quiet, so the
    // server sends it no heartbeat and nothing else: the SDK's own probe keeps it.
    const busy = await player("Busy");
    const states: SessionState[] = [];
    busy.onState((state) => states.push(state));
    for (let i = 0; i < 25; i++) {
      busy.send("pong");
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.deepEqual(states, []);
    assert.equal(busy.currentConnection.open, true);
  });

  it("leaves no timer behind once closed, even while waiting to resume", async () => {
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const ticket = await ticketOf("Tidy");
    const before = timers();
    const tidy = await player("Tidy", { reconnect: { initialDelay: 30 } }, ticket);
    tidy.currentConnection.abort();
    await until(() => tidy.state === "resuming", "the drop");
    assert.ok(timers() > before, "the wait before the resume is a timer");
    await tidy.close();
    assert.equal(timers(), before);
  });

  it("enters the world and gets world.update pushes", async () => {
    const hero = await player("Hiker");
    const character = await hero.request("character.create", { name: "Hiker1" });
    await hero.request("character.choose", { character: character.character.id });
    await assert.rejects(hero.request("zone.enter"), { code: "not_allowed" });
    await hero.request("world.enter");
    const updates: Array<{ enter: Array<{ id: string }> }> = [];
    hero.on("world.update", (m) => updates.push(m));
    const entered = await hero.request("zone.enter");
    assert.equal(typeof entered.entity, "string");
    assert.equal(typeof entered.x, "number");
    if (entered.world !== undefined) assert.ok(entered.world.regions.length >= 1);
    await until(() => updates.some((u) => u.enter.some((e) => e.id === entered.entity)), "the player in view");
    await hero.request("zone.move", { seq: entered.input + 1, x: entered.x + 1, y: entered.y });
    await hero.request("zone.leave");
    await hero.request("world.leave");
  });

  it("ends with close(): the session cannot be resumed", async () => {
    const leaver = await player("Leaver");
    const states: string[] = [];
    leaver.onState((state, reason) => states.push(`${state}:${reason?.code}`));
    await leaver.close();
    assert.deepEqual(states, ["closed:closed"]);
    await assert.rejects(leaver.request("ping"), { name: "ConnectionClosed", code: "closed" });
  });

  it("works from the browser bundle, with the WebSocket class given", async (t) => {
    const bundle = new URL("../mmo-client.browser.js", import.meta.url);
    if (!existsSync(bundle)) {
      t.skip("no dist/mmo-client.browser.js: npm run bundle");
      return;
    }
    const sdk = (await import(bundle.href)) as typeof import("../src/index.js");
    const connection = await sdk.Connection.open(server.url, { ca: server.ca, WebSocket: WebSocket as never });
    try {
      assert.equal(connection.welcome.version, 1);
      await assert.rejects(connection.request("login", { name: "nobody", password: PASSWORD }), (e: unknown) => {
        assert.ok(e instanceof sdk.ServerError);
        assert.equal((e as ServerError).code, "login_failed");
        return true;
      });
    } finally {
      await connection.close();
    }
  });
});
