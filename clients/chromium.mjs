// How the project's real-browser scenarios start Debian's Chromium through
// playwright-core: headless, in a fresh profile, loopback only, trusting
// the deployment's certificates by their public keys (the SHA-256 of each,
// Chromium's --ignore-certificate-errors-spki-list). Shared by the demo's
// scenarios (clients/demo/test/) and the admin console's
// (clients/console/test/); each passes its own playwright-core.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A persistent context in a new profile; `close()` also removes the profile. */
export async function launch(chromium, { executablePath, spki, viewport, prefix }) {
  const profile = mkdtempSync(join(tmpdir(), prefix));
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
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
