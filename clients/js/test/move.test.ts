/**
 * Following a draining gateway's `session.move`, against two scripted
 * gateways (TLS WebSocket servers with a deployment's certificate) that
 * speak the protocol: a standalone server has one gateway, so it never
 * moves anyone. The real drain of a real cluster is in cluster.test.ts.
 */

import assert from "node:assert/strict";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { decode, encode } from "@msgpack/msgpack";
import { WebSocketServer, type WebSocket } from "ws";

import { Session } from "../src/index.js";
import { Deployment, missing, until } from "./server.js";

type Message = Record<string, unknown> & { t: string; id?: number };
type Script = (message: Message, reply: (fields: Record<string, unknown>) => void, socket: WebSocket) => void;

/** A gateway that answers hello itself and everything else by `script`. */
class ScriptedGateway {
  readonly received: Message[] = [];
  private readonly server: Server;
  private readonly sockets = new WebSocketServer({ noServer: true });
  port = 0;

  constructor(certificate: { cert: string; key: string }, private readonly script: Script) {
    this.server = createServer(certificate);
    this.server.on("upgrade", (request, socket, head) => {
      this.sockets.handleUpgrade(request, socket, head, (ws) => this.accept(ws));
    });
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  private accept(ws: WebSocket): void {
    ws.on("message", (data: Buffer) => {
      const message = decode(data) as Message;
      this.received.push(message);
      const reply = (fields: Record<string, unknown>) => ws.send(encode({ ...fields, t: "reply", id: message.id }));
      if (message.t === "hello") {
        reply({ version: 1, server: "mmo/scripted", max_frame_size: 65536, idle_timeout: 120, heartbeat_interval: 15, heartbeat_timeout: 45 });
      } else {
        this.script(message, reply, ws);
      }
    });
  }

  close(): Promise<void> {
    for (const client of this.sockets.clients) client.terminate();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const push = (seq: number, text: string) => encode({ t: "chat.message", seq, channel: "world:main", from: "Ann", text, time: 1 });

describe("following session.move", { skip: missing() ?? false }, () => {
  let deployment: Deployment;
  let certificate: { cert: string; key: string };

  before(() => {
    deployment = new Deployment(`
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
`);
    const certs = join(deployment.dir, "certs");
    certificate = { cert: readFileSync(join(certs, "mmo.crt"), "utf8"), key: readFileSync(join(certs, "mmo.key"), "utf8") };
  });

  after(async () => {
    await deployment?.stop();
  });

  it("resumes on the gateway named, misses nothing, and holds requests meanwhile", async () => {
    const identity = { account: "a1", name: "Ann", realm: "main", session: "s1" };
    let target: ScriptedGateway;
    const draining = await new ScriptedGateway(certificate, (message, reply, ws) => {
      if (message.t === "auth") {
        reply({ ...identity, resume: "token-1" });
        ws.send(push(1, "one"));
        ws.send(push(2, "two"));
      } else if (message.t === "chat.send") {
        // The drain: where to go, then the goodbye; the request is left unanswered.
        const where = { gateway: "gateway-2", host: "localhost", port: 1, websocket: target.port };
        ws.send(encode({ t: "session.move", ...where }));
        ws.send(encode({ t: "bye", code: "moved", message: "the gateway is draining", ...where }));
        ws.close(1000);
      }
    }).listen();
    target = await new ScriptedGateway(certificate, (message, reply, ws) => {
      if (message.t === "resume") {
        reply({ ...identity, resume: "token-2", seq: 3, replayed: 1 });
        ws.send(push(2, "two")); // a repeat is dropped by the SDK
        ws.send(push(3, "three"));
      } else if (message.t === "chat.channels") {
        reply({ channels: ["world:main"] });
      }
    }).listen();
    try {
      const ticket = {
        account: "a1", name: "Ann", realm: "main", ticket: "t", expires: 0,
        gateway: { name: "gateway-1", host: "localhost", port: 1, websocket: draining.port },
      };
      const session = await Session.open(ticket, { ca: deployment.ca, reconnect: { initialDelay: 5 } });
      const heard: string[] = [];
      session.on("chat.message", (m) => heard.push(`${m.seq} ${m.text}`));
      const states: string[] = [];
      session.onState((state) => states.push(state));
      await until(() => heard.length === 2, "the first pushes");

      const cut = session.request("chat.send", { channel: "world", text: "x" });
      await assert.rejects(cut, { name: "ConnectionClosed", code: "moved" });
      // Made while the session moves: waits for the resume instead of failing.
      const channels = await session.request("chat.channels");
      assert.deepEqual(channels.channels, ["world:main"]);

      const resume = target.received.find((m) => m.t === "resume");
      assert.deepEqual({ token: resume?.token, last_seq: resume?.last_seq }, { token: "token-1", last_seq: 2 });
      await until(() => heard.length === 3, "the replayed push");
      assert.deepEqual(heard, ["1 one", "2 two", "3 three"]);
      assert.deepEqual(states, ["resuming", "resumed"]);
      assert.equal(session.url, `wss://localhost:${target.port}/`);
      assert.equal(session.lastSeq, 3);
      // Followed at once, not after the 5 s reconnect delay of a drop.
      await session.close();
      assert.ok(target.received.some((m) => m.t === "bye"));
    } finally {
      await draining.close();
      await target.close();
    }
  });

  it("resumes on another gateway of the ticket when its own is gone", async () => {
    const identity = { account: "a2", name: "Bea", realm: "main", session: "s2" };
    const first = await new ScriptedGateway(certificate, (message, reply, ws) => {
      if (message.t === "auth") {
        reply({ ...identity, resume: "token-1" });
        ws.send(push(1, "one"));
      }
    }).listen();
    const second = await new ScriptedGateway(certificate, (message, reply, ws) => {
      if (message.t === "resume") {
        reply({ ...identity, resume: "token-2", seq: 2, replayed: 1 });
        ws.send(push(2, "two"));
      }
    }).listen();
    try {
      const gateway = (name: string, port: number) => ({ name, host: "localhost", port: 1, websocket: port });
      const ticket = {
        account: "a2", name: "Bea", realm: "main", ticket: "t", expires: 0,
        gateway: gateway("gateway-1", first.port),
        gateways: [gateway("gateway-1", first.port), gateway("gateway-2", second.port)],
      };
      const session = await Session.open(ticket, { ca: deployment.ca, reconnect: { initialDelay: 0.05 } });
      const heard: string[] = [];
      session.on("chat.message", (m) => heard.push(m.text));
      await until(() => heard.length === 1, "the first push");
      // The first gateway dies: its connections drop and it listens no more.
      await first.close();
      await until(() => session.state === "resumed", "the resume");
      assert.equal(session.url, `wss://localhost:${second.port}/`);
      await until(() => heard.length === 2, "the missed push");
      assert.deepEqual(heard, ["one", "two"]);
      const resume = second.received.find((m) => m.t === "resume");
      assert.deepEqual({ token: resume?.token, last_seq: resume?.last_seq }, { token: "token-1", last_seq: 1 });
      await session.close();
    } finally {
      await second.close();
    }
  });
});
