/**
 * mmo-client: the TypeScript client SDK of mmo servers, for browsers and
 * Node (docs/client-js.md).
 */

export { Connection, CLIENT, VERSIONS, type ConnectionOptions, type Handler } from "./connection.js";
export { ConnectionClosed, ServerError } from "./errors.js";
export {
  login,
  loginWithToken,
  logout,
  realms,
  refreshTokenOf,
  register,
  type LoginOptions,
  type LogoutOptions,
  type RefreshToken,
  type TokenKeeper,
} from "./login.js";
export * from "./messages.js";
export {
  Session,
  type ReconnectOptions,
  type SessionOptions,
  type SessionState,
  type StateHandler,
} from "./session.js";
export type { SocketOptions, WebSocketConstructor, WebSocketLike } from "./socket.js";
export { gatewayUrl } from "./url.js";
