/**
 * The real server for the tests: a standalone `twistd -n mmo` (or a
 * manager-run cluster) from the repository's `.venv`, in a temporary
 * directory with certificates from `mmo-certs`; its ports are read from
 * what it logs.
 */

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository (this file is clients/js/dist/test/server.js once built). */
export const ROOT = process.env.MMO_ROOT ?? resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");
const BIN = join(ROOT, ".venv", "bin");
/** How long a process may take to log what the test waits for. */
const START_TIMEOUT = 30_000;

/** Why the server cannot run here, or null. */
export function missing(): string | null {
  for (const tool of ["twistd", "mmo-certs"]) {
    if (!existsSync(join(BIN, tool))) return `${join(BIN, tool)} is missing: run "make venv" first`;
  }
  return null;
}

/** The password of the tests' players. */
export const PASSWORD = "open sesame 42";

/** Settings every test deployment shares: cheap password hashing, every test's accounts, short heartbeats. */
export const SETTINGS = `
[login]
argon2_memory_kib = 1024
argon2_time_cost = 1
register_per_ip = 1000

[gateway]
heartbeat_interval = 0.3
heartbeat_timeout = 1.0
`;

export class Process {
  out = "";
  private readonly waiters: Array<{ pattern: RegExp; resolve(m: RegExpMatchArray): void; reject(e: Error): void }> = [];
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess, readonly label: string) {
    const check = () => {
      for (const waiter of [...this.waiters]) {
        const match = this.out.match(waiter.pattern);
        if (match) {
          this.waiters.splice(this.waiters.indexOf(waiter), 1);
          waiter.resolve(match);
        }
      }
    };
    child.stdout?.on("data", (data: Buffer) => {
      this.out += data.toString();
      check();
    });
    child.stderr?.on("data", (data: Buffer) => {
      this.out += data.toString();
    });
    this.exited = new Promise((resolve) => {
      child.on("exit", (code) => {
        for (const waiter of this.waiters.splice(0)) {
          waiter.reject(new Error(`${label} ended before ${waiter.pattern}:\n${this.out.slice(-3000)}`));
        }
        resolve(code);
      });
    });
  }

  /** The first match of `pattern` in what the process logged. */
  logged(pattern: RegExp, timeout = START_TIMEOUT): Promise<RegExpMatchArray> {
    const found = this.out.match(pattern);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`${this.label} did not log ${pattern} within ${timeout} ms:\n${this.out.slice(-3000)}`));
      }, timeout);
      this.waiters.push({
        pattern,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGKILL");
      await this.exited;
    }
  }
}

/** A deployment's directory and config file, with its certificates made. */
export class Deployment {
  readonly dir: string;
  readonly config: string;
  readonly ca: string;
  private readonly processes: Process[] = [];

  constructor(text: string) {
    this.dir = mkdtempSync(join(tmpdir(), "mmo-client-js-"));
    this.config = join(this.dir, "mmo.toml");
    writeFileSync(this.config, `[deployment]\nname = "jstest"\ntls_dir = "certs"\n${text}`);
    this.run("mmo-certs", "--config", this.config);
    this.ca = readFileSync(join(this.dir, "certs", "ca.crt"), "utf8");
  }

  /** Run one of the venv's commands to its end; throws with its output if it fails. */
  run(tool: string, ...args: string[]): string {
    const result = spawnSync(join(BIN, tool), args, { cwd: this.dir, env: env(), encoding: "utf8", timeout: 60_000 });
    if (result.status !== 0) throw new Error(`${tool} ${args.join(" ")} failed:\n${result.stdout}${result.stderr}`);
    return result.stdout;
  }

  /** Start `twistd -n PLUGIN --config FILE ARGS`. */
  spawn(plugin: string, ...args: string[]): Process {
    const child = spawn(join(BIN, "twistd"), ["-n", "--pidfile=", plugin, "--config", this.config, ...args], {
      cwd: this.dir,
      env: env(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const process = new Process(child, plugin);
    this.processes.push(process);
    return process;
  }

  async stop(): Promise<void> {
    await Promise.all(this.processes.map((p) => p.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The children's environment: the installed package, never a source path. */
function env(): NodeJS.ProcessEnv {
  const copy = { ...process.env };
  delete copy.PYTHONPATH;
  return copy;
}

/** A started standalone server: its `wss://` URL and CA. */
export interface Standalone {
  deployment: Deployment;
  process: Process;
  url: string;
  ca: string;
}

export async function standalone(extra = ""): Promise<Standalone> {
  const deployment = new Deployment(`
[processes.mmo]
kind = "mmo"
client = "tcp:0:interface=127.0.0.1"
websocket = "tcp:0:interface=127.0.0.1"
hosts = ["localhost", "127.0.0.1"]
${SETTINGS}
${extra}`);
  try {
    const process = deployment.spawn("mmo");
    const match = await process.logged(/secure WebSocket 127\.0\.0\.1:(\d+)/);
    await process.logged(/mmo: ready/);
    return { deployment, process, url: `wss://localhost:${match[1]}/`, ca: deployment.ca };
  } catch (error) {
    await deployment.stop();
    throw error;
  }
}

/**
 * A TCP relay to a local port whose server-to-client direction can go
 * silent without closing anything, as when a NAT forgets a connection:
 * what the server sends, its close included, is dropped; what the client
 * sends still arrives. Connections made after `silence()` pass.
 */
export class Relay {
  port = 0;
  private readonly server: Server;
  private readonly links = new Set<{ client: Socket; upstream: Socket; silent: boolean }>();

  constructor(target: number) {
    this.server = createServer((client) => {
      const upstream = connect(target, "127.0.0.1");
      const link = { client, upstream, silent: false };
      this.links.add(link);
      client.on("data", (data) => upstream.write(data));
      upstream.on("data", (data) => {
        if (!link.silent) client.write(data);
      });
      const end = () => {
        if (!link.silent) client.destroy();
        upstream.destroy();
      };
      upstream.on("close", end);
      upstream.on("error", end);
      client.on("error", () => client.destroy());
      client.on("close", () => {
        upstream.destroy();
        this.links.delete(link);
      });
    });
  }

  /** The URL of the relay for a server whose certificate names `localhost`. */
  get url(): string {
    return `wss://localhost:${this.port}/`;
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** From now on, the connections open now hear nothing from the server. */
  silence(): void {
    for (const link of this.links) link.silent = true;
  }

  close(): Promise<void> {
    for (const { client, upstream } of this.links) {
      client.destroy();
      upstream.destroy();
    }
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Resolve once `condition()` holds; reject after `timeout` ms with `what`. */
export async function until(condition: () => boolean, what: string, timeout = 10_000): Promise<void> {
  const deadline = Date.now() + timeout;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
