// Builds the demo's script into the server's package data
// (mmo/web/static/demo.js): one bundle, the SDK from ../js/src included.
// The page and its style are written there by hand (index.html, demo.css).
// `node build.mjs OUTDIR` writes elsewhere (the test that checks the
// committed files are what the sources build).
import { mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? join(here, "../../mmo/web/static"));

await mkdir(out, { recursive: true });
await esbuild.build({
  entryPoints: [join(here, "src/main.ts")],
  outfile: join(out, "demo.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2020",
  // The SDK's Node-only import of `ws` is never reached in a browser.
  external: ["ws"],
  // The SDK's sources import @msgpack/msgpack: take the demo's copy.
  nodePaths: [join(here, "node_modules")],
  tsconfig: join(here, "tsconfig.json"),
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
});
