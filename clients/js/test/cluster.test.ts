/**
 * The SDK in a real cluster run by `twistd mmo-manager` (its own
 * redis-server; login, two gateways, lobby, chat and two zones each serving
 * one half of the world): log in (over the login server's wss:// where it
 * has one), walk across the zones' border (a handoff between processes),
 * follow the gateway's `session.move` when `mmo-admin drain` drains it, and
 * walk back across the border on the other gateway, never logging in again.
 */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { ConnectionClosed, login, register, Session, type LoginReply } from "../src/index.js";
import { Deployment, missing, PASSWORD, ROOT, until, type Process } from "./server.js";

/** Whether redis-server is on the PATH (the manager runs one of its own). */
const redis = (process.env.PATH ?? "").split(":").some((dir) => dir && existsSync(join(dir, "redis-server")));

function skipReason(): string | false {
  const venv = missing();
  if (venv) return venv;
  if (!redis) {
    if (process.env.MMO_REQUIRE_REDIS === "1") throw new Error("MMO_REQUIRE_REDIS=1 but redis-server is not installed");
    return "redis-server is not installed (apt-get install redis-server)";
  }
  return false;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Run a command of the venv without blocking the event loop (the SDK keeps working meanwhile). */
function run(command: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.PYTHONPATH;
    const child = spawn(join(ROOT, ".venv", "bin", command), args, { cwd, env });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`${command} ${args.join(" ")}: ${code}\n${out}`))));
  });
}

/** Register and log in over the login server's TCP listener (with the Python SDK): a ticket. */
async function ticketOverTcp(deployment: Deployment, port: number, name: string): Promise<LoginReply> {
  const code = `
import json, sys
from twisted.internet import defer, task
from mmo.client import connect
async def main(reactor, ca, port, name, password):
    client = await connect(reactor, "127.0.0.1", int(port), ca=ca, hostname="localhost")
    await client.request("register", name=name, password=password)
    ticket = await client.request("login", name=name, password=password)
    await client.close()
    print(json.dumps(ticket))
task.react(lambda reactor: defer.ensureDeferred(main(reactor, *sys.argv[1:])))
`;
  const out = await run("python", ["-c", code, join(deployment.dir, "certs", "ca.crt"), String(port), name, PASSWORD], deployment.dir);
  return JSON.parse(out.trim().split("\n").pop() as string) as LoginReply;
}

const PROCESSES = [
  ["login", "login"],
  ["gateway-1", "gateway"],
  ["gateway-2", "gateway"],
  ["lobby", "lobby"],
  ["chat", "chat"],
  ["zone-1", "zone"],
  ["zone-2", "zone"],
];

describe("in a cluster", { skip: skipReason() }, () => {
  let deployment: Deployment;
  let manager: Process;
  const websocket: Record<string, number> = {};
  let loginPort = 0;
  let loginUrl: string | null = null;

  before(async () => {
    const tables = [`[processes.manager]\nkind = "manager"\nredis_server = true\nrpc = "tcp:${await freePort()}:interface=127.0.0.1"\nhosts = ["localhost", "127.0.0.1"]\n`];
    for (const [name, kind] of PROCESSES) {
      const listeners = ["login", "gateway"].includes(kind)
        ? `client = "tcp:0:interface=127.0.0.1"\nwebsocket = "tcp:0:interface=127.0.0.1"`
        : `rpc = "tcp:${await freePort()}:interface=127.0.0.1"`;
      tables.push(`[processes.${name}]\nkind = "${kind}"\n${listeners}\nhosts = ["localhost", "127.0.0.1"]\n`);
    }
    // The settings and the two-zone world of the Python cluster tests (tests/world_walk.py).
    const settings = await run(
      "python",
      ["-c", "from tests.test_cluster import SETTINGS; from tests.world_walk import CLUSTER_WORLD; print(SETTINGS + CLUSTER_WORLD)"],
      ROOT,
    );
    deployment = new Deployment(`
[redis]
port = ${await freePort()}
prefix = "test"

[manager]
redis_dir = "redis"
restart_delay = 0.2
stop_timeout = 5.0
drain_timeout = 20.0

${settings}
${tables.join("\n")}`);
    manager = deployment.spawn("mmo-manager", "--process", "manager");
    for (const [name, kind] of PROCESSES) {
      await manager.logged(new RegExp(`\\[${name}\\] .*${name}: ready`), 60_000);
      if (kind === "gateway") {
        const match = await manager.logged(new RegExp(`\\[${name}\\] .*${name}: browsers on secure WebSocket 127\\.0\\.0\\.1:(\\d+)`));
        websocket[name] = Number(match[1]);
      }
    }
    loginPort = Number((await manager.logged(/\[login\] .*login: clients on TLS 127\.0\.0\.1:(\d+)/))[1]);
    const wss = manager.out.match(/\[login\] .*login: .*secure WebSocket 127\.0\.0\.1:(\d+)/);
    if (wss) loginUrl = `wss://localhost:${wss[1]}/`;
  });

  after(async () => {
    await deployment?.stop();
  });

  it("walks across the border, follows a drain to the other gateway, and walks back", async (t) => {
    let ticket: LoginReply;
    if (loginUrl) {
      await register(loginUrl, "Rover", PASSWORD, { ca: deployment.ca });
      ticket = await login(loginUrl, "rover", PASSWORD, { ca: deployment.ca });
    } else {
      t.diagnostic("the login process has no WebSocket listener: logged in over TCP instead");
      ticket = await ticketOverTcp(deployment, loginPort, "Rover");
    }
    assert.ok(ticket.gateway.name in websocket, JSON.stringify(ticket.gateway));
    assert.equal(ticket.gateway.websocket, websocket[ticket.gateway.name]);
    const session = await Session.open(ticket, { ca: deployment.ca });
    const states: string[] = [];
    session.onState((state) => states.push(state));
    const zones: string[] = [];
    session.on("zone.changed", (m) => zones.push(m.zone));
    const character = await session.request("character.create", { name: "Rover", data: { hp: 42 } });
    await session.request("character.choose", { character: character.character.id });
    await session.request("world.enter");
    const entered = await session.request("zone.enter");
    assert.equal(entered.zone, "r0c0");
    let where: [number, number] | null = null;
    const resets: number[] = [];
    session.on("world.update", (m) => {
      if (m.reset) resets.push(m.seq);
      for (const e of [...m.enter, ...m.update]) {
        if (e.id === entered.entity && e.x !== undefined && e.y !== undefined) where = [e.x, e.y];
      }
    });
    let seq = entered.input;
    let x = entered.x;
    const walkTo = async (target: number) => {
      while (Math.abs(target - x) > 1e-9) {
        const next = Math.round((x + Math.max(-0.3, Math.min(0.3, target - x))) * 1e6) / 1e6;
        seq += 1;
        await session.request("zone.move", { seq, x: next, y: entered.y });
        x = next;
        await sleep(50);
      }
      await until(() => where !== null && where[0] === target, `the walker seen at ${target} (seen at ${where})`);
    };

    await walkTo(104);
    await until(() => zones.length === 1, "zone.changed");
    assert.deepEqual(zones, ["r0c1"]);

    const from = ticket.gateway.name;
    const to = from === "gateway-1" ? "gateway-2" : "gateway-1";
    await run("mmo-admin", ["--config", deployment.config, "--json", "drain", from], deployment.dir);
    await until(() => states.includes("resumed"), "the move");
    assert.deepEqual(states, ["resuming", "resumed"]);
    assert.equal(session.url, `wss://localhost:${websocket[to]}/`);

    await walkTo(96);
    await until(() => zones.length === 2, "zone.changed back");
    assert.deepEqual(zones, ["r0c1", "r0c0"]);
    assert.deepEqual(resets, []);
    const who = await session.request("chat.who", { name: "Rover" });
    assert.equal(who.online, true);
    await session.close();
    await assert.rejects(session.request("ping"), ConnectionClosed);
  });
});
