/**
 * The client protocol's messages as types: every request with its fields and
 * its reply (RequestTypes), every push (PushTypes). Sources: docs/protocol.md,
 * docs/login.md, docs/lobby.md, docs/chat.md and docs/world.md. Servers may
 * add fields within a protocol version: every reply and push may carry more
 * than is typed here.
 */

/** A decoded message body: one msgpack map with a string `t`. */
export interface Frame {
  t: string;
  id?: number | null;
  seq?: number;
  [field: string]: unknown;
}

/** Where a gateway listens (login reply, `session.move`). */
export interface GatewayInfo {
  name: string;
  host: string;
  /** Its TLS (TCP) client port. */
  port: number;
  /** Its secure WebSocket port, or null/absent when it serves no browsers. */
  websocket?: number | null;
}

export interface HelloReply {
  version: number;
  server: string;
  max_frame_size: number;
  idle_timeout: number;
  /** Seconds between heartbeats; null where the listener sends none; absent on older servers. */
  heartbeat_interval?: number | null;
  heartbeat_timeout?: number | null;
}

export interface RegisterReply {
  account: string;
  name: string;
}

export interface LoginReply {
  account: string;
  name: string;
  realm: string;
  ticket: string;
  expires: number;
  gateway: GatewayInfo;
  /** Every gateway of the realm the session may resume on, the chosen one first (newer servers). */
  gateways?: GatewayInfo[];
  /** The device's next refresh token: after a login with `remember` or with `refresh` (shown once). */
  refresh?: string;
  /** When that token expires unless used before, in seconds since the epoch. */
  refresh_expires?: number;
}

export interface RealmInfo {
  realm: string;
  title: string;
  players: number;
  gateways: number;
}

export interface AuthReply {
  account: string;
  name: string;
  realm: string;
  session: string;
  resume: string;
}

export interface ResumeReply extends AuthReply {
  seq: number;
  replayed: number;
}

export interface Character {
  id: string;
  name: string;
  created: number;
  data: Record<string, unknown>;
}

export interface Room {
  id: string;
  name: string;
  members: number;
  capacity: number;
  has_password: boolean;
  owner: string;
}

export interface RoomMember {
  name: string;
  owner: boolean;
}

export interface ChatLine {
  channel: string;
  from: string;
  text: string;
  time: number;
}

/** What others see of an entity. */
export interface EntityView {
  id: string;
  kind: "player" | "npc" | string;
  x: number;
  y: number;
  name: string;
  attrs: Record<string, unknown>;
}

/** An entity in view that changed: only what changed is present. */
export interface EntityUpdate {
  id: string;
  x?: number;
  y?: number;
  name?: string;
  attrs?: Record<string, unknown>;
}

export interface WorldRegion {
  name: string;
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  zone: string;
}

export interface WorldInfo {
  width: number;
  height: number;
  tick_rate: number;
  /** World updates a second: `tick_rate`, or fewer with `[world] update_rate`. */
  update_rate: number;
  aoi_radius: number;
  regions: WorldRegion[];
}

export interface MovementInfo {
  max_speed: number;
  tolerance: number;
  burst: number;
  tick_rate: number;
}

export interface ZoneEnterReply {
  entity: string;
  zone: string;
  x: number;
  y: number;
  input: number;
  tick: number;
  /** The map and its regions (newer servers). */
  world?: WorldInfo;
  /** The movement limits (newer servers). */
  movement?: MovementInfo;
}

type Empty = Record<string, never>;

/** Every documented request: its fields and its reply. */
export interface RequestTypes {
  hello: { fields: { versions: number[]; client?: string }; reply: HelloReply };
  ping: { fields: Empty; reply: { time: number } };
  pong: { fields: Empty; reply: Empty };
  // login server (and the standalone server)
  register: { fields: { name: string; password: string }; reply: RegisterReply };
  login: {
    fields:
      | { name: string; password: string; realm?: string; remember?: boolean; device?: string }
      | { refresh: string; device: string; realm?: string };
    reply: LoginReply;
  };
  realms: { fields: Empty; reply: { realms: RealmInfo[] } };
  // on the login server with a ticket; on a gateway without
  logout: { fields: { ticket?: string; device?: string }; reply: Empty };
  // gateway
  auth: { fields: { ticket: string }; reply: AuthReply };
  resume: { fields: { token: string; last_seq: number }; reply: ResumeReply };
  // lobby
  "character.create": {
    fields: { name: string; data?: Record<string, unknown> };
    reply: { character: Character };
  };
  "character.list": { fields: Empty; reply: { characters: Character[]; chosen: string | null } };
  "character.delete": { fields: { character: string }; reply: { deleted: string } };
  "character.choose": { fields: { character: string }; reply: { character: Character } };
  "world.enter": { fields: Empty; reply: { character: Character; realm: string } };
  "world.leave": { fields: Empty; reply: Empty };
  "room.create": {
    fields: { name: string; capacity?: number; password?: string | null };
    reply: { room: Room; members: RoomMember[] };
  };
  "room.list": { fields: Empty; reply: { rooms: Room[] } };
  "room.join": {
    fields: { room: string; password?: string };
    reply: { room: Room; members: RoomMember[] };
  };
  "room.leave": { fields: Empty; reply: { left: string } };
  "room.kick": { fields: { name: string }; reply: { kicked: string } };
  "room.members": { fields: Empty; reply: { room: Room; members: RoomMember[] } };
  // chat
  "chat.send": { fields: { channel: string; text: string }; reply: { channel: string; time: number } };
  "chat.join": { fields: { channel: string }; reply: { channel: string; history: ChatLine[] } };
  "chat.leave": { fields: { channel: string }; reply: { channel: string } };
  "chat.channels": { fields: Empty; reply: { channels: string[] } };
  "chat.history": {
    fields: { channel: string; limit?: number };
    reply: { channel: string; messages: ChatLine[] };
  };
  "chat.whisper": { fields: { to: string; text: string }; reply: { to: string; text: string; time: number } };
  "chat.who": { fields: { name: string }; reply: { name: string; online: boolean; zone: string | null } };
  "chat.mute": {
    fields: { name: string; seconds?: number; reason?: string };
    reply: { name: string; until: number; seconds: number };
  };
  "chat.unmute": { fields: { name: string }; reply: { name: string; was_muted: boolean } };
  "chat.ignore": { fields: { name: string }; reply: { ignored: string[] } };
  "chat.unignore": { fields: { name: string }; reply: { ignored: string[] } };
  "chat.ignored": { fields: Empty; reply: { ignored: string[] } };
  // zones
  "zone.enter": { fields: Empty; reply: ZoneEnterReply };
  "zone.move": { fields: { seq: number; x: number; y: number; [extra: string]: unknown }; reply: Empty };
  "zone.leave": { fields: Empty; reply: Empty };
}

/** Every documented push (`seq` is the push's number in the session). */
export interface PushTypes {
  "server.notice": { text: string };
  "room.joined": { room: string; name: string };
  "room.left": { room: string; name: string; owner: string; kicked: boolean };
  "room.kicked": { room: string; by: string };
  "room.renamed": { room: string; old: string; name: string };
  "room.closed": { room: string };
  "chat.message": ChatLine;
  "chat.whisper": { from: string; text: string; time: number };
  "chat.joined": { channel: string; history: ChatLine[] };
  "chat.left": { channel: string; reason: "left" | "closed" | string };
  "chat.muted": { reason: string; until: number; seconds: number };
  "chat.unmuted": Empty;
  "world.update": {
    tick: number;
    enter: EntityView[];
    update: EntityUpdate[];
    leave: string[];
    reset?: boolean;
  };
  "world.correct": { x: number; y: number; input: number };
  "zone.changed": { zone: string };
}

/** Frames that are not pushes but reach `on()` handlers too. */
export interface ControlTypes {
  /** An error not tied to a request. */
  error: { id: null; code: string; message: string; fatal: boolean; retry_after?: number };
  /** The server's goodbye. */
  bye: { code: string; message: string; [field: string]: unknown };
  heartbeat: { time: number };
  /** A draining gateway names where to go (the SDK follows it by itself). */
  "session.move": { gateway: string; host: string; port: number; websocket?: number };
}

export type RequestKind = keyof RequestTypes;
export type PushKind = keyof PushTypes;

/** The fields of request K (an open record for kinds the SDK does not know). */
export type RequestFields<K extends string> = K extends RequestKind
  ? RequestTypes[K]["fields"]
  : Record<string, unknown>;
/** The reply of request K. */
export type ReplyOf<K extends string> = K extends RequestKind
  ? RequestTypes[K]["reply"] & Record<string, unknown>
  : Record<string, unknown>;
/** The message a handler of K receives: the push with its `t` and `seq`. */
export type MessageOf<K extends string> = (K extends PushKind
  ? PushTypes[K] & { seq: number }
  : K extends keyof ControlTypes
    ? ControlTypes[K]
    : Record<string, unknown>) & { t: K };

/** The goodbye codes after which a session cannot be resumed. */
export const FINAL_GOODBYES: ReadonlySet<string> = new Set([
  "logged_out",
  "replaced",
  "kicked",
  "resumed_elsewhere",
]);
