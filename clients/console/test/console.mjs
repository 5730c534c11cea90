// The admin console in a real Chromium (headless, driven by playwright-core)
// against a real cluster that tests/test_console_browser.py starts:
//
//   node test/console.mjs --url https://HOST:PORT/login?token=T --spki BASE64
//        --processes a,b,c --drain GATEWAY --to GATEWAY --players A,B,C
//
// It opens the one-time login link, sees every process, drains a gateway
// with a click and a confirmation, and sees the players move to the other
// gateway. The manager's certificate is trusted by its public key
// (--ignore-certificate-errors-spki-list) in a fresh profile. Assertions
// read the page's text, never pixels. Exits 0 when every step passed.

import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { launch } from "../../chromium.mjs";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    spki: { type: "string" },
    processes: { type: "string" },
    drain: { type: "string" },
    to: { type: "string" },
    players: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: process.env.MMO_CHROMIUM ?? "/usr/bin/chromium" },
  },
});

/** Longest wait of one step, ms: generous, so that only something broken reaches it. */
const STEP = 30_000;
const log = [];
let step = "start";

const chromiumRun = await launch(chromium, {
  executablePath: args.chromium,
  spki: args.spki,
  viewport: { width: 1300, height: 800 },
  prefix: "mmo-console-chromium-",
});
const browser = chromiumRun.context;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

/** Wait until `read()` gives something `predicate` accepts; that value. */
async function until(read, predicate, what) {
  step = what;
  const deadline = Date.now() + STEP;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined && predicate(value)) return value;
    if (Date.now() > deadline) throw new Error(`not within ${STEP} ms (last: ${JSON.stringify(value)})`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function scenario() {
  const console_ = new URL(args.url);
  const page = await browser.newPage();
  page.on("console", (m) => log.push(`console ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`page error: ${e.message}`));

  step = "a browser without the link is not let in";
  const refused = await page.goto(`${console_.origin}/`, { timeout: STEP });
  check(refused.status() === 403, `the console without a session answers 403, not ${refused.status()}`);
  check((await page.locator("#login-help").count()) === 1, "the login help is shown");
  check((await page.locator("#processes").count()) === 0, "no processes are shown");

  step = "the login link";
  await page.goto(args.url, { timeout: STEP });
  check(new URL(page.url()).pathname === "/", `the link lands on the console (${page.url()})`);
  const cookies = await browser.cookies(console_.origin);
  const cookie = cookies.find((c) => c.name === "mmo-console");
  check(cookie && cookie.secure && cookie.httpOnly && cookie.sameSite === "Strict", `the session cookie ${JSON.stringify(cookie)}`);

  const rows = () => page.locator("#processes tbody tr").evaluateAll((trs) =>
    Object.fromEntries(trs.map((tr) => [tr.dataset.process, tr.querySelector(".state").textContent])));
  const names = args.processes.split(",");
  await until(rows, (r) => names.every((n) => r[n] === "running"), "every process is shown running");

  step = "the link is spent";
  const second = await browser.newPage();
  const again = await second.goto(args.url, { timeout: STEP });
  check(again.status() === 403, `a second use of the link answers 403, not ${again.status()}`);
  await second.close();

  const players = args.players.split(",");
  const where = () => page.locator("#players tbody tr").evaluateAll((trs) =>
    Object.fromEntries(trs.map((tr) => [tr.cells[0].textContent, tr.querySelector(".gateway").textContent])));
  await page.click('nav a[data-view="players"]');
  await until(where, (w) => players.every((p) => w[p] === args.drain), `the players are on ${args.drain}`);

  step = `drain ${args.drain} with a click`;
  await page.click('nav a[data-view="processes"]');
  await page.click(`#drain-${args.drain}`);
  await until(() => page.locator("#confirm-text").textContent(), (t) => t.includes(`Drain ${args.drain}?`), "the confirmation asks");
  await page.click("#confirm-yes");
  await until(() => page.locator("#notice").textContent(), (t) => t === `drain ${args.drain}: done`, "the drain is done");
  await until(rows, (r) => r[args.drain] === "held", `${args.drain} is held`);

  await page.click('nav a[data-view="players"]');
  await until(where, (w) => players.every((p) => w[p] === args.to), `the players moved to ${args.to}`);
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
}

let status = 0;
try {
  await scenario();
  console.log("browser console: passed");
} catch (error) {
  status = 1;
  console.log(`browser console: FAILED at "${step}": ${error.message.split("\n")[0]}`);
  for (const line of log) console.log(line);
} finally {
  await chromiumRun.close();
}
process.exit(status);
