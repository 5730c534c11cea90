// The console's live map (mmo/console/static/map.js) in a real Chromium
// (headless, driven by playwright-core) against a real cluster that
// tests/test_map_browser.py starts:
//
//   node test/map.mjs --login https://HOST:PORT/login?token=T
//        --url https://HOST:PORT/#map --spki BASE64[,...]
//        --entity ID --from ZONE --to ZONE --border X --ready FILE [--screenshot FILE]
//
// Opens the console's one-time login link, then its Map view, and waits
// until the map shows the entity ID in zone FROM, writes FILE (the
// test then walks it east), and waits until the map shows it past the
// border at x = X and then owned by zone TO. Prints one JSON line per
// event, each with `lag`: seconds from the zone's tick to the update's
// arrival in the page. Assertions read the map's state (window.mmoMap),
// never pixels. Exits 0 when every step passed.

import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";
import { launch } from "../../chromium.mjs";

const { values: args } = parseArgs({
  options: {
    login: { type: "string" },
    url: { type: "string" },
    spki: { type: "string" },
    entity: { type: "string" },
    from: { type: "string" },
    to: { type: "string" },
    border: { type: "string" },
    ready: { type: "string" },
    screenshot: { type: "string" },
    chromium: { type: "string", default: process.env.MMO_CHROMIUM ?? "/usr/bin/chromium" },
  },
});

/** Longest wait of one step, ms: generous, so that only something broken reaches it. */
const STEP = 30_000;

const { context: browser, close } = await launch(chromium, {
  executablePath: args.chromium,
  spki: args.spki,
  viewport: { width: 1000, height: 700 },
  prefix: "mmo-map-chromium-",
});

const log = [];
let step = "start";

/** The map's state: what the test reads (JSON, so that nothing of the page leaks). */
async function state(page) {
  return page.evaluate(() => {
    const s = window.mmoMap;
    return s ? JSON.parse(JSON.stringify(s)) : null;
  });
}

/** Wait until `predicate(state)` holds; its state then. */
async function until(page, predicate, what) {
  step = what;
  const deadline = Date.now() + STEP;
  for (;;) {
    const s = await state(page);
    if (s && predicate(s)) return s;
    if (Date.now() > deadline) throw new Error(`not within ${STEP} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The page's figures of the entity, with the lag of the update that showed it. */
function seen(s, event) {
  const p = s.players[args.entity];
  return { event, x: p.x, zone: p.zone, lag: p.at - p.time, rate: s.rate, updates: s.updates };
}

try {
  const page = await browser.newPage();
  page.on("console", (m) => log.push(`console ${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`page error: ${e.message}`));
  if (args.login) await page.goto(args.login, { timeout: STEP });
  await page.goto(args.url, { timeout: STEP });
  const world = await until(page, (s) => s.connected && s.world && s.updates > 0, "the map streams");
  console.log(JSON.stringify({ event: "world", regions: world.world.regions.map((r) => [r.name, r.process]) }));
  const before = await until(page, (s) => s.players[args.entity]?.zone === args.from, `${args.entity} in ${args.from}`);
  console.log(JSON.stringify(seen(before, "shown")));
  writeFileSync(args.ready, "ready\n");
  const border = Number(args.border);
  const past = await until(page, (s) => s.players[args.entity]?.x > border, `${args.entity} past x = ${border}`);
  console.log(JSON.stringify(seen(past, "crossed")));
  const moved = await until(page, (s) => s.players[args.entity]?.zone === args.to, `${args.entity} in ${args.to}`);
  console.log(JSON.stringify(seen(moved, "handed")));
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  console.log("map: passed");
} catch (error) {
  console.log(`map: failed at "${step}": ${error.message}`);
  for (const line of log) console.log(line);
  process.exitCode = 1;
} finally {
  await close();
}
