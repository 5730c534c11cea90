import type { GatewayInfo } from "./messages.js";

/**
 * The `wss://` URL of a gateway's WebSocket listener, from a `{host,
 * websocket}` object (a login reply's `gateway`, an entry of its
 * `gateways`, a `session.move`).
 */
export function gatewayUrl(gateway: Pick<GatewayInfo, "host" | "websocket">): string {
  const port = gateway.websocket;
  if (typeof port !== "number" || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`gateway ${gateway.host} has no WebSocket port`);
  }
  const host = gateway.host.includes(":") && !gateway.host.startsWith("[") ? `[${gateway.host}]` : gateway.host;
  return `wss://${host}:${port}/`;
}
