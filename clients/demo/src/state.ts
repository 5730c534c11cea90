/**
 * What the page knows, in one plain object: the UI is drawn from it, and
 * the browser tests read it (`window.mmoDemo.state`) instead of pixels.
 */

import type { EntityView, WorldInfo } from "mmo-client";

export type Phase = "login" | "characters" | "world";

export interface ChatEntry {
  /** "world:main", "zone", a party..., or "whisper" (from someone) / "whisper-to" (sent). */
  channel: string;
  from: string;
  text: string;
  time: number;
  /** The push's seq (0 for what the page added itself). */
  seq: number;
}

export interface DemoState {
  phase: Phase;
  /** The session's state: "offline" before login, then the SDK's states. */
  connection: "offline" | "open" | "resuming" | "resumed" | "closed";
  /** What the browser says of the network (its online and offline events). */
  network: "online" | "offline";
  /** Times the session was resumed after a drop. */
  resumes: number;
  account: string;
  name: string;
  character: string | null;
  /** The player's entity, its zone, and where the page has it (predicted). */
  entity: string | null;
  zone: string | null;
  x: number;
  y: number;
  /** Everything in view, by id (from world.update), the player's entity included. */
  entities: Record<string, EntityView>;
  world: WorldInfo | null;
  chat: ChatEntry[];
  /** Highest push seq seen. */
  lastSeq: number;
  /** Events shown under the page (errors included), newest last. */
  events: string[];
  /** Whether this browser keeps a refresh token ("remember me"). */
  remembered: boolean;
  /** How the player logged in last: with the password, or the kept token. */
  loggedInWith: "password" | "token" | null;
}

export function initialState(): DemoState {
  return {
    phase: "login",
    connection: "offline",
    network: navigator.onLine ? "online" : "offline",
    resumes: 0,
    account: "",
    name: "",
    character: null,
    entity: null,
    zone: null,
    x: 0,
    y: 0,
    entities: {},
    world: null,
    chat: [],
    lastSeq: 0,
    events: [],
    remembered: false,
    loggedInWith: null,
  };
}

/** The most chat lines and events kept (older ones are dropped). */
export const KEEP = 200;

export function keepLast<T>(list: T[], item: T): void {
  list.push(item);
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
}
