/** gatewayUrl: the wss:// URL of a gateway's WebSocket listener. */

import assert from "node:assert/strict";
import { it } from "node:test";

import { gatewayUrl } from "../src/index.js";

it("builds wss:// URLs, IPv6 hosts in brackets", () => {
  assert.equal(gatewayUrl({ host: "play.example.org", websocket: 7443 }), "wss://play.example.org:7443/");
  assert.equal(gatewayUrl({ host: "127.0.0.1", websocket: 1 }), "wss://127.0.0.1:1/");
  assert.equal(gatewayUrl({ host: "::1", websocket: 7443 }), "wss://[::1]:7443/");
});

it("refuses a gateway without a WebSocket port", () => {
  for (const websocket of [null, undefined, 0, 70000, 1.5]) {
    assert.throws(() => gatewayUrl({ host: "localhost", websocket }), /has no WebSocket port/);
  }
});
