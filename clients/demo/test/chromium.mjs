// Debian's Chromium, headless, driven by playwright-core, for the
// real-browser tests: a fresh profile, loopback only, and the deployment's
// certificates trusted the way a user may trust them, with Chromium's
// --ignore-certificate-errors-spki-list (the SHA-256 of each server's
// public key, base64, comma-separated).

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** `{ browser, close }`: a browser context on a fresh profile, and what closes it and removes the profile. */
export async function launch({ executablePath, spki, viewport, name }) {
  const profile = mkdtempSync(join(tmpdir(), `mmo-${name}-chromium-`));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      // Loopback only, whatever proxy the environment names.
      "--no-proxy-server",
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
    viewport,
  });
  async function close() {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  }
  return { browser: context, close };
}
