/**
 * The browser demo game: log in (or register) on the server that served
 * this page, choose or create a character, walk in the world and chat.
 * The SDK (mmo-client) resumes the session by itself after a drop and
 * follows the gateway's moves; the page shows its state. With "remember
 * me", the browser keeps the device's refresh token in localStorage and the
 * next visit logs in with it, without the password.
 */

import {
  ConnectionClosed,
  login,
  loginWithToken,
  logout,
  register,
  ServerError,
  Session,
  type Character,
  type LoginReply,
  type RefreshToken,
  type ZoneEnterReply,
} from "mmo-client";
import { draw } from "./canvas.js";
import { initialState, keepLast, type ChatEntry, type DemoState } from "./state.js";
import { Walker } from "./walker.js";

const state: DemoState = initialState();
let session: Session | null = null;
const walker = new Walker(state, () => session);

declare global {
  interface Window {
    mmoDemo: { state: DemoState; readonly session: Session | null };
  }
}
window.mmoDemo = {
  state,
  get session() {
    return session;
  },
};

/** The page's own server: the standalone server, or a cluster's login server. */
const serverUrl = `wss://${location.host}/`;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

function show(phase: DemoState["phase"]): void {
  state.phase = phase;
  $("login").hidden = phase !== "login";
  $("logout-button").hidden = phase === "login";
  $("characters").hidden = phase !== "characters";
  $("game").hidden = phase !== "world";
  $("who").textContent = state.name ? `${state.name}${state.character ? ` as ${state.character}` : ""}` : "";
}

function event(text: string, error = false): void {
  keepLast(state.events, text);
  const item = document.createElement("li");
  item.textContent = text;
  if (error) item.className = "error";
  const list = $("events");
  list.append(item);
  while (list.children.length > 8) list.firstElementChild?.remove();
}

function failed(what: string, error: unknown): void {
  if (error instanceof ServerError) event(`${what}: ${error.code}: ${error.message}`, true);
  else if (error instanceof ConnectionClosed) event(`${what}: connection closed (${error.code ?? "dropped"})`, true);
  else event(`${what}: ${String(error)}`, true);
}

function setConnection(value: DemoState["connection"]): void {
  state.connection = value;
  showBadge();
}

function showBadge(): void {
  const badge = $("connection");
  const shown = state.network === "offline" ? "offline" : state.connection;
  badge.textContent = shown === "offline" && state.phase !== "login" ? "network lost" : shown;
  badge.dataset.state = shown === "offline" ? "closed" : shown;
}

// The browser knows first when the network is gone: drop the connection at
// once (its frames could not arrive, and a half-dead socket would hold
// them); the SDK resumes the session, with what was missed, once it can.
window.addEventListener("offline", () => {
  state.network = "offline";
  event("network lost");
  showBadge();
  session?.currentConnection.abort();
});
window.addEventListener("online", () => {
  state.network = "online";
  event("network back");
  showBadge();
});

// -- account -----------------------------------------------------------------

/** localStorage keys: this browser's device label, and its refresh token. */
const DEVICE_KEY = "mmo-demo.device";
const TOKEN_KEY = "mmo-demo.refresh";

/** This browser's device label, made once and kept. */
function device(): string {
  let label = localStorage.getItem(DEVICE_KEY);
  if (!label) {
    label = `browser-${crypto.randomUUID()}`;
    localStorage.setItem(DEVICE_KEY, label);
  }
  return label;
}

/** The SDK's token keeper: each new token replaces the kept one; null forgets it. */
function keepToken(token: RefreshToken | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, JSON.stringify(token));
  else localStorage.removeItem(TOKEN_KEY);
  state.remembered = token !== null;
}

function keptToken(): RefreshToken | null {
  const text = localStorage.getItem(TOKEN_KEY);
  if (!text) return null;
  try {
    return JSON.parse(text) as RefreshToken;
  } catch {
    keepToken(null);
    return null;
  }
}

function credentials(): [string, string] {
  return [$<HTMLInputElement>("login-name").value.trim(), $<HTMLInputElement>("login-password").value];
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const [name, password] = credentials();
  void logIn(name, password);
});

$("register-button").addEventListener("click", async () => {
  const [name, password] = credentials();
  try {
    await register(serverUrl, name, password);
    event(`account ${name} registered`);
    await logIn(name, password);
  } catch (error) {
    failed("register", error);
  }
});

$("logout-button").addEventListener("click", () => void logOut());

/** The ticket of the session: what a logout at the login server presents. */
let ticket: LoginReply | null = null;

async function logIn(name: string, password: string): Promise<void> {
  const remember = $<HTMLInputElement>("login-remember").checked;
  try {
    // Without "remember me", a token kept from before (maybe of another
    // account) is forgotten: this browser is not to log in by itself.
    if (!remember) keepToken(null);
    const options = remember ? { remember, device: device(), onToken: keepToken } : {};
    await play(await login(serverUrl, name, password, options), "password");
  } catch (error) {
    failed("log in", error);
  }
}

/** A returning visitor: log in with the kept token, if any (else the form stays). */
async function comeBack(): Promise<void> {
  const token = keptToken();
  state.remembered = token !== null;
  if (!token) return;
  event("logging in with the remembered token...");
  try {
    await play(await loginWithToken(serverUrl, token, { onToken: keepToken }), "token");
  } catch (error) {
    // refresh_refused: the keeper has forgotten the token; the form is there.
    failed("remembered login", error);
  }
}

async function play(reply: LoginReply, how: "password" | "token"): Promise<void> {
  ticket = reply;
  // The ticket names the gateway (and the others to resume on); `url` is
  // for a server too old to name its WebSocket port: this one then.
  session = await Session.open(reply, {
    url: serverUrl,
    clientName: "mmo-demo/0.1",
    reconnect: { initialDelay: 0.2, maxDelay: 2, maxAttempts: 30 },
  });
  state.account = session.account;
  state.name = session.name;
  state.loggedInWith = how;
  setConnection("open");
  event(`logged in as ${session.name} on ${session.url}${how === "token" ? " (remembered)" : ""}`);
  listen(session);
  await characters();
}

/** Log out for good: the session ends, and this browser's token is revoked and forgotten. */
async function logOut(): Promise<void> {
  const current = session;
  try {
    if (ticket) await logout(serverUrl, ticket.ticket, { device: device(), onToken: keepToken });
  } catch (error) {
    failed("log out", error);
  }
  keepToken(null);
  ticket = null;
  if (current && current.state !== "closed") await current.close();
  walker.stop();
  show("login");
}

function listen(s: Session): void {
  s.onState((value, reason) => {
    setConnection(value);
    if (value === "resuming") event(`connection lost (${reason?.code ?? "dropped"}): resuming...`);
    if (value === "resumed") {
      state.resumes += 1;
      event(`resumed on ${s.url}: nothing missed`);
    }
    if (value === "closed") {
      event(`session closed: ${reason?.code ?? ""} ${reason?.message ?? ""}`, reason?.code !== "logged_out");
      walker.stop();
      show("login");
    }
  });
  const seen = (seq: number) => {
    state.lastSeq = Math.max(state.lastSeq, seq);
  };
  s.on("world.update", (m) => {
    seen(m.seq);
    walker.update(m);
  });
  s.on("world.correct", (m) => {
    seen(m.seq);
    walker.correct(m.x, m.y);
  });
  s.on("zone.changed", (m) => {
    seen(m.seq);
    state.zone = m.zone;
    event(`now in zone ${m.zone}`);
  });
  s.on("chat.message", (m) => {
    seen(m.seq);
    addChat({ channel: m.channel, from: m.from, text: m.text, time: m.time, seq: m.seq });
  });
  s.on("chat.whisper", (m) => {
    seen(m.seq);
    addChat({ channel: "whisper", from: m.from, text: m.text, time: m.time, seq: m.seq });
  });
  s.on("chat.joined", (m) => {
    seen(m.seq);
    event(`in channel ${m.channel}`);
  });
  s.on("server.notice", (m) => {
    seen(m.seq);
    event(`server: ${m.text}`);
  });
  s.on("bye", (m) => event(`server says goodbye: ${m.code}`));
  s.on("error", (m) => event(`server error: ${m.code}: ${m.message}`, true));
}

// -- characters ----------------------------------------------------------------

async function characters(): Promise<void> {
  if (!session) return;
  show("characters");
  let list: Character[];
  try {
    list = (await session.request("character.list")).characters;
  } catch (error) {
    failed("characters", error);
    return;
  }
  const ul = $("character-list");
  ul.replaceChildren();
  for (const character of list) {
    const item = document.createElement("li");
    const name = document.createElement("bdi");
    name.textContent = character.name;
    const play = document.createElement("button");
    play.type = "button";
    play.textContent = "Play";
    play.dataset.character = character.name;
    play.addEventListener("click", () => void enter(character));
    item.append(name, play);
    ul.append(item);
  }
}

$("character-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!session) return;
  const input = $<HTMLInputElement>("character-name");
  try {
    const { character } = await session.request("character.create", { name: input.value.trim() });
    input.value = "";
    event(`character ${character.name} created`);
    await enter(character);
  } catch (error) {
    failed("create", error);
  }
});

async function enter(character: Character): Promise<void> {
  if (!session) return;
  let reply: ZoneEnterReply;
  try {
    await session.request("character.choose", { character: character.id });
    await session.request("world.enter");
    walker.clearView();
    reply = await session.request("zone.enter");
  } catch (error) {
    failed("enter the world", error);
    return;
  }
  state.character = character.name;
  state.zone = reply.zone;
  state.world = reply.world ?? null;
  walker.start(reply);
  show("world");
  event(`${character.name} entered zone ${reply.zone} at (${reply.x.toFixed(1)}, ${reply.y.toFixed(1)})`);
  $("world").focus();
}

// -- chat ------------------------------------------------------------------------

function addChat(entry: ChatEntry): void {
  keepLast(state.chat, entry);
  const item = document.createElement("li");
  const channel = document.createElement("span");
  channel.className = "channel";
  channel.textContent = entry.channel === "whisper" ? "whisper " : entry.channel === "whisper-to" ? "whisper to " : `[${entry.channel}] `;
  const from = document.createElement("bdi");
  from.className = entry.channel.startsWith("whisper") ? "from whisper" : "from";
  from.textContent = entry.from;
  const text = document.createElement("bdi");
  text.textContent = entry.text;
  item.append(channel, from, ": ", text);
  const log = $("chat-log");
  log.append(item);
  while (log.children.length > 200) log.firstElementChild?.remove();
  log.scrollTop = log.scrollHeight;
}

$("chat-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!session) return;
  const input = $<HTMLInputElement>("chat-text");
  const text = input.value;
  const whisper = /^\/w\s+(\S+)\s+(.+)$/s.exec(text);
  try {
    if (whisper) {
      const reply = await session.request("chat.whisper", { to: whisper[1], text: whisper[2] });
      addChat({ channel: "whisper-to", from: reply.to, text: reply.text, time: reply.time, seq: 0 });
    } else {
      await session.request("chat.send", { channel: $<HTMLSelectElement>("chat-channel").value, text });
    }
    input.value = "";
  } catch (error) {
    failed("chat", error);
  }
});

// -- the world ---------------------------------------------------------------------

const KEYS: Record<string, [number, number]> = {
  ArrowUp: [0, 1], KeyW: [0, 1],
  ArrowDown: [0, -1], KeyS: [0, -1],
  ArrowLeft: [-1, 0], KeyA: [-1, 0],
  ArrowRight: [1, 0], KeyD: [1, 0],
};

function typing(target: EventTarget | null): boolean {
  return target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
}

document.addEventListener("keydown", (e) => {
  const direction = KEYS[e.code];
  if (!direction || state.phase !== "world" || typing(e.target)) return;
  e.preventDefault();
  walker.press(e.code, direction);
});
document.addEventListener("keyup", (e) => walker.release(e.code));
window.addEventListener("blur", () => walker.releaseAll());

const canvas = $<HTMLCanvasElement>("world");
function frame(): void {
  if (state.phase === "world") {
    draw(canvas, state);
    $("position").textContent = `(${state.x.toFixed(1)}, ${state.y.toFixed(1)}) in ${state.zone ?? "?"}`;
  }
  requestAnimationFrame(frame);
}
requestAnimationFrame(frame);
show("login");
void comeBack();
