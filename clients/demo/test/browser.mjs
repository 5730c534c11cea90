// The browser demo in a real Chromium (headless, driven by playwright-core)
// against real servers that tests/test_browser.py starts:
//
//   node test/browser.mjs --scenario standalone|cluster --url https://HOST:PORT/
//        --spki BASE64[,BASE64...] [--screenshot FILE]
//
// The deployment's certificates are trusted the way a user may trust them:
// with Chromium's --ignore-certificate-errors-spki-list (the SHA-256 of each
// server's public key), in a fresh profile. Assertions read the page's
// state (window.mmoDemo.state), never pixels. Exits 0 when every step
// passed; otherwise prints the failing step and the pages' events.

import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { launch } from "../../chromium.mjs";

const { values: args } = parseArgs({
  options: {
    scenario: { type: "string", default: "standalone" },
    url: { type: "string" },
    spki: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: process.env.MMO_CHROMIUM ?? "/usr/bin/chromium" },
  },
});

/** Longest wait of one step, ms: generous, so that only something broken reaches it. */
const STEP = 20_000;
const PASSWORD = "open sesame 42";
const suffix = Math.random().toString(36).slice(2, 7);

const chromiumRun = await launch(chromium, {
  executablePath: args.chromium,
  spki: args.spki,
  viewport: { width: 1100, height: 760 },
  prefix: "mmo-demo-chromium-",
});
const browser = chromiumRun.context;

const pages = [];
let step = "start";

/** One player: a page of its own that registers, logs in and enters the world. */
async function player(account, character) {
  const page = await browser.newPage();
  const log = [];
  page.on("console", (m) => log.push(`console ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`page error: ${e.message}`));
  pages.push({ name: account, page, log });
  await page.goto(args.url, { timeout: STEP });
  await page.fill("#login-name", account);
  await page.fill("#login-password", PASSWORD);
  await page.click("#register-button");
  await until(page, (s) => s.phase === "characters", `${account} logged in`);
  await page.fill("#character-name", character);
  await page.click("#character-create");
  await until(page, (s) => s.phase === "world" && s.entity !== null, `${character} in the world`);
  return page;
}

/** Wait until `predicate(state, arg)` holds for the page's state (read from Node: no eval in the page's CSP). */
async function until(page, predicate, what, arg = null) {
  step = what;
  const deadline = Date.now() + STEP;
  for (;;) {
    if (predicate(await state(page), arg)) return;
    if (Date.now() > deadline) throw new Error(`not within ${STEP} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const state = (page) => page.evaluate(() => window.mmoDemo.state);
const sees = (s, name) => Object.values(s.entities).find((e) => e.name === name && e.id !== s.entity) ?? null;

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

/** Drop a page's connections the way a lost network does (DevTools offline emulation). */
const devtools = new Map();
async function offline(page, on) {
  // One DevTools session per page, kept: the emulation ends with the session.
  let cdp = devtools.get(page);
  if (!cdp) {
    cdp = await page.context().newCDPSession(page);
    await cdp.send("Network.enable");
    devtools.set(page, cdp);
  }
  await cdp.send("Network.emulateNetworkConditions", { offline: on, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
}

async function chat(page, text, channel = "world") {
  await page.selectOption("#chat-channel", channel);
  await page.fill("#chat-text", text);
  await page.click("#chat-send");
}

async function walk(page, key, ms) {
  await page.focus("#world");
  await page.keyboard.down(key);
  await page.waitForTimeout(ms);
  await page.keyboard.up(key);
}

async function standalone() {
  const alice = await player(`alice${suffix}`, `Alicia${suffix}`);
  const bob = await player(`bob${suffix}`, `Bobby${suffix}`);
  const [a, b] = [`Alicia${suffix}`, `Bobby${suffix}`];

  await until(alice, (s, n) => Object.values(s.entities).some((e) => e.name === n), "Alicia sees Bobby", b);
  await until(bob, (s, n) => Object.values(s.entities).some((e) => e.name === n), "Bobby sees Alicia", a);

  step = "Bobby walks";
  const before = sees(await state(alice), b);
  await walk(bob, "ArrowRight", 1200);
  await until(alice, (s, [n, x]) => Object.values(s.entities).some((e) => e.name === n && e.x > x + 3), "Alicia sees Bobby move", [b, before.x]);

  await chat(alice, "hello from Alicia");
  await until(bob, (s) => s.chat.some((c) => c.text === "hello from Alicia" && c.from.startsWith("Alicia")), "Bobby reads Alicia");
  await chat(bob, "hello zone", "zone");
  await until(alice, (s) => s.chat.some((c) => c.text === "hello zone" && c.channel.startsWith("zone")), "Alicia reads Bobby on the zone channel");
  await chat(bob, `/w ${a} psst`);
  await until(alice, (s) => s.chat.some((c) => c.channel === "whisper" && c.text === "psst"), "Alicia gets the whisper");

  if (args.screenshot) {
    step = "screenshot";
    await walk(alice, "ArrowUp", 600);
    await alice.waitForTimeout(300);
    await alice.screenshot({ path: args.screenshot });
  }

  // A lost network: Alicia's page drops its connection; what Bobby says
  // meanwhile reaches her once she is back, in order, each line once.
  await offline(alice, true);
  await until(alice, (s) => s.network === "offline", "Alicia's page knows the network is gone");
  const missed = ["while you were away 1", "while you were away 2", "while you were away 3"];
  for (const text of missed) await chat(bob, text);
  await until(bob, (s, m) => m.every((t) => s.chat.some((c) => c.text === t)), "Bobby's lines sent", missed);
  await offline(alice, false);
  await until(alice, (s) => s.connection === "resumed" && s.resumes === 1, "Alicia resumed");
  check((await state(alice)).events.some((e) => e.includes("resuming")), "the page showed the resume");
  await until(alice, (s, m) => m.every((t) => s.chat.some((c) => c.text === t)), "Alicia reads what she missed", missed);
  const after = await state(alice);
  const got = after.chat.filter((c) => missed.includes(c.text)).map((c) => c.text);
  check(JSON.stringify(got) === JSON.stringify(missed), `missed lines once, in order: ${JSON.stringify(got)}`);
  const seqs = after.chat.map((c) => c.seq).filter((q) => q > 0);
  check(seqs.every((q, i) => i === 0 || q > seqs[i - 1]), `pushes in order, none twice: ${seqs}`);

  // Still playing after the resume: the other sees the walk.
  const seen = sees(await state(bob), a);
  await walk(alice, "ArrowLeft", 1000);
  await until(bob, (s, [n, x]) => Object.values(s.entities).some((e) => e.name === n && e.x < x - 2), "Bobby sees Alicia move after her resume", [a, seen.x]);

  await remembered(`carol${suffix}`);
}

/** "Remember me": the next visit logs in with the kept token; a logout forgets it. */
async function remembered(account) {
  const page = await browser.newPage();
  pages.push({ name: account, page, log: [] });
  await page.goto(args.url, { timeout: STEP });
  await page.fill("#login-name", account);
  await page.fill("#login-password", PASSWORD);
  await page.check("#login-remember");
  await page.click("#register-button");
  await until(page, (s) => s.phase === "characters" && s.remembered && s.loggedInWith === "password", `${account} logged in, remembered`);
  await page.reload({ timeout: STEP });
  await until(page, (s, n) => s.phase === "characters" && s.name === n && s.loggedInWith === "token", `${account} back without the password`, account);
  await page.click("#logout-button");
  await until(page, (s) => s.phase === "login" && !s.remembered, `${account} logged out, forgotten`);
  await page.reload({ timeout: STEP });
  await page.waitForTimeout(500);
  const after = await state(page);
  check(after.phase === "login" && !after.remembered && after.loggedInWith === null, "after the logout, the next visit asks for the password");
}

async function cluster() {
  const walker = await player(`walker${suffix}`, `Walker${suffix}`);
  const watcher = await player(`watcher${suffix}`, `Watcher${suffix}`);
  const [w, o] = [`Walker${suffix}`, `Watcher${suffix}`];
  await until(watcher, (s, n) => Object.values(s.entities).some((e) => e.name === n), "the watcher sees the walker", w);
  const start = await state(walker);
  check(start.world !== null && start.world.regions.length >= 2, "the page has the map's regions");
  const border = start.world.regions.find((r) => r.x0 <= start.x && start.x < r.x1).x1;
  const zone = start.zone;
  const url = await walker.evaluate(() => window.mmoDemo.session.url);

  // The watcher's page records, from now on, any moment the walker is out of its view.
  await watcher.evaluate((n) => {
    window.lostSight = 0;
    window.lostSightTimer = setInterval(() => {
      const s = window.mmoDemo.state;
      if (!Object.values(s.entities).some((e) => e.name === n)) window.lostSight += 1;
    }, 20);
  }, w);

  step = "the walker crosses the border";
  await walker.focus("#world");
  await walker.keyboard.down("ArrowRight");
  // The key is let go once the walker is in the next zone: the watcher
  // stands near the border, and a walker held on much longer (a slow,
  // loaded machine) would walk out of its view radius, which is no loss.
  await until(walker, (s, z) => s.zone !== z, "the walker is in the next zone", zone);
  await walker.keyboard.up("ArrowRight");
  await until(watcher, (s, [n, x]) => Object.values(s.entities).some((e) => e.name === n && e.x > x), "the watcher sees the walker beyond the border", [w, border]);
  const lost = await watcher.evaluate(() => {
    clearInterval(window.lostSightTimer);
    return window.lostSight;
  });

  const after = await state(walker);
  check(after.resumes === 0 && after.connection === "open", `no reconnect: ${after.connection}, ${after.resumes} resumes`);
  check((await walker.evaluate(() => window.mmoDemo.session.url)) === url, "the same gateway connection");
  check(lost === 0, `the watcher never lost sight of the walker (${lost} samples without it)`);
  void o;
}

let status = 0;
try {
  if (args.scenario === "standalone") await standalone();
  else if (args.scenario === "cluster") await cluster();
  else throw new Error(`unknown scenario ${args.scenario}`);
  console.log(`browser ${args.scenario}: passed`);
} catch (error) {
  status = 1;
  console.log(`browser ${args.scenario}: FAILED at "${step}": ${error.message.split("\n")[0]}`);
  for (const { name, page, log } of pages) {
    const s = await state(page).catch(() => null);
    console.log(`--- ${name}: ${JSON.stringify(s && { ...s, entities: Object.values(s.entities).map((e) => `${e.name}@${e.x.toFixed(1)},${e.y.toFixed(1)}`) })}`);
    for (const line of log) console.log(line);
  }
} finally {
  await chromiumRun.close();
}
process.exit(status);
