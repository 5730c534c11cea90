// The console's live world map: draws the stream of /map/stream on a canvas
// in <div id="world-map">: the regions with their borders and processes,
// the heat layer, a dot per entity (players and NPCs told apart), the
// handoffs in flight; drag to pan, the wheel to zoom.  Loaded as an ES module,
// it starts on the page's #world-map by itself; `startMap(element)` starts
// one on another element.  The stream's format is in docs/map.md.
//
// For tests and the curious, the map's state is `window.mmoMap`: `updates`
// received, `rate` (updates per second over the last second), `count` in
// view, `players` (id -> {x, y, zone, time: the zone's tick, at: the update's
// arrival}), `handoffs`, `lag` (seconds
// from the zones' tick to the update's arrival, the largest of its zones).

const PLAYER = "#ffcc33";
const NPC = "#7fa7c9";
const BORDER = "rgba(255, 255, 255, 0.55)";
const LABEL = "rgba(255, 255, 255, 0.8)";
const HANDOFF = "#ff5fa2";
// How long after the last pan or zoom the view is sent, ms.
const VIEW_DELAY = 50;

function streamURL() {
  const url = new URL("stream", import.meta.url);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

// A world rectangle [x0, y0, x1, y1] on a canvas: world y goes up, the
// canvas's down.
class Camera {
  constructor() {
    this.scale = 1;
    this.x0 = 0;
    this.y0 = 0;
  }

  fit(width, height, canvasWidth, canvasHeight) {
    this.scale = Math.min(canvasWidth / width, canvasHeight / height) * 0.95;
    this.x0 = width / 2 - canvasWidth / 2 / this.scale;
    this.y0 = height / 2 - canvasHeight / 2 / this.scale;
  }

  toScreen(x, y, canvasHeight) {
    return [(x - this.x0) * this.scale, canvasHeight - (y - this.y0) * this.scale];
  }

  toWorld(sx, sy, canvasHeight) {
    return [this.x0 + sx / this.scale, this.y0 + (canvasHeight - sy) / this.scale];
  }

  view(canvasWidth, canvasHeight) {
    return [this.x0, this.y0, this.x0 + canvasWidth / this.scale, this.y0 + canvasHeight / this.scale];
  }

  zoom(factor, sx, sy, canvasHeight) {
    const [wx, wy] = this.toWorld(sx, sy, canvasHeight);
    this.scale *= factor;
    this.x0 = wx - sx / this.scale;
    this.y0 = wy - (canvasHeight - sy) / this.scale;
  }

  pan(dx, dy) {
    this.x0 -= dx / this.scale;
    this.y0 += dy / this.scale;
  }
}

// One update of the stream (a binary message): its header, the dots'
// positions and the heat layer, read in place.
export function decodeUpdate(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  let offset = 4 + length;
  const dots = header.dots ? header.count : 0;
  const xs = new Float32Array(buffer, offset, dots);
  offset += dots * 4;
  const ys = new Float32Array(buffer, offset, dots);
  offset += dots * 4;
  const [columns, rows] = header.heat;
  const heat = new Uint16Array(buffer, offset, columns * rows);
  return { header, xs, ys, heat };
}

export class WorldMap {
  constructor(element) {
    this.element = element;
    this.canvas = document.createElement("canvas");
    this.canvas.style.width = "100%";
    this.canvas.style.height = "100%";
    this.canvas.style.display = "block";
    this.canvas.style.background = "#10161d";
    this.canvas.style.cursor = "grab";
    this.status = document.createElement("div");
    this.status.className = "world-map-status";
    this.status.style.font = "12px monospace";
    this.status.style.padding = "2px 4px";
    if (!element.style.height) element.style.height = "70vh";
    element.style.position = "relative";
    element.replaceChildren(this.canvas, this.status);
    this.camera = new Camera();
    this.world = null;
    this.fitted = false;
    this.last = null;
    this.state = {
      connected: false,
      world: null,
      updates: 0,
      rate: 0,
      count: 0,
      dots: true,
      players: {},
      handoffs: [],
      lag: null,
      error: null,
    };
    this.arrivals = [];
    this.viewTimer = null;
    this.frame = null;
    window.mmoMap = this.state;
    this.listen();
    new ResizeObserver(() => this.resized()).observe(element);
    this.connect();
  }

  connect() {
    const socket = new WebSocket(streamURL());
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      this.state.connected = true;
    };
    socket.onmessage = (event) => this.received(event.data);
    socket.onclose = (event) => {
      this.state.connected = false;
      this.state.error = event.reason || `closed (${event.code})`;
      this.showStatus();
      // Again in a moment: the manager may be restarting.
      setTimeout(() => this.connect(), 2000);
    };
    this.socket = socket;
  }

  received(data) {
    if (typeof data === "string") {
      const message = JSON.parse(data);
      if (message.type === "world") {
        this.world = message;
        this.state.world = message;
        this.resized(true);
      } else if (message.type === "error") {
        this.state.error = message.reason;
      }
      return;
    }
    const update = decodeUpdate(data);
    this.last = update;
    this.remember(update);
    this.schedule();
  }

  remember({ header, xs, ys }) {
    const now = Date.now() / 1000;
    const state = this.state;
    state.updates += 1;
    this.arrivals.push(now);
    while (this.arrivals.length && this.arrivals[0] < now - 1) this.arrivals.shift();
    state.rate = this.arrivals.length;
    state.count = header.count;
    state.dots = header.dots;
    state.handoffs = header.handoffs;
    const players = {};
    let index = 0;
    let lag = null;
    for (const [zone, figures] of Object.entries(header.zones)) {
      for (let i = 0; i < figures.players && header.dots; i++, index++) {
        players[header.players[index]] = { x: xs[index], y: ys[index], zone, time: figures.time, at: now };
      }
      lag = Math.max(lag ?? 0, now - figures.time);
    }
    state.players = players;
    state.lag = lag;
  }

  listen() {
    const canvas = this.canvas;
    let dragging = null;
    canvas.addEventListener("pointerdown", (event) => {
      dragging = [event.clientX, event.clientY];
      canvas.setPointerCapture(event.pointerId);
      canvas.style.cursor = "grabbing";
    });
    canvas.addEventListener("pointermove", (event) => {
      if (!dragging) return;
      this.camera.pan(event.clientX - dragging[0], event.clientY - dragging[1]);
      dragging = [event.clientX, event.clientY];
      this.moved();
    });
    canvas.addEventListener("pointerup", () => {
      dragging = null;
      canvas.style.cursor = "grab";
    });
    canvas.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const rect = canvas.getBoundingClientRect();
        const ratio = window.devicePixelRatio || 1;
        const factor = Math.exp(-event.deltaY * 0.0015);
        this.camera.zoom(
          factor,
          (event.clientX - rect.left) * ratio,
          (event.clientY - rect.top) * ratio,
          canvas.height,
        );
        this.moved();
      },
      { passive: false },
    );
  }

  // The canvas follows its element's size; the whole map is fitted into it
  // when the world comes, or when the element is first shown (a hidden
  // view has no size), and the view is kept through later resizes.
  resized(fit = false) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(this.canvas.clientWidth * ratio);
    const height = Math.round(this.canvas.clientHeight * ratio);
    if (!width || !height) return;
    this.canvas.width = width;
    this.canvas.height = height;
    if (this.world && (fit || !this.fitted)) {
      this.camera.fit(this.world.width, this.world.height, width, height);
      this.fitted = true;
    }
    this.moved();
  }

  // The view changed: draw it now, and tell the server a moment later.
  moved() {
    this.schedule();
    if (this.viewTimer !== null) return;
    this.viewTimer = setTimeout(() => {
      this.viewTimer = null;
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        const view = this.camera.view(this.canvas.width, this.canvas.height);
        this.socket.send(JSON.stringify({ view }));
      }
    }, VIEW_DELAY);
  }

  schedule() {
    if (this.frame === null) {
      this.frame = requestAnimationFrame(() => {
        this.frame = null;
        this.draw();
      });
    }
  }

  draw() {
    const { canvas, camera, world } = this;
    const ctx = canvas.getContext("2d");
    const h = canvas.height;
    ctx.clearRect(0, 0, canvas.width, h);
    if (!world) return;
    const ratio = window.devicePixelRatio || 1;
    if (this.last) this.drawHeat(ctx, this.last, h);
    // The regions: borders, and each one's name and process.
    ctx.lineWidth = ratio;
    ctx.strokeStyle = BORDER;
    ctx.fillStyle = LABEL;
    ctx.font = `${12 * ratio}px sans-serif`;
    for (const r of world.regions) {
      const [ax, ay] = camera.toScreen(r.x0, r.y1, h);
      const [bx, by] = camera.toScreen(r.x1, r.y0, h);
      ctx.strokeRect(ax, ay, bx - ax, by - ay);
      ctx.fillText(`${r.name} · ${r.process}`, ax + 4 * ratio, ay + 14 * ratio);
    }
    if (this.last) {
      this.drawDots(ctx, this.last, h, ratio);
      this.drawHandoffs(ctx, this.last.header.handoffs, h, ratio);
    }
    this.showStatus();
  }

  drawHeat(ctx, { header, heat }, h) {
    const [x0, y0, x1, y1] = header.view;
    const [columns, rows] = header.heat;
    let most = 0;
    for (const count of heat) most = Math.max(most, count);
    if (!most) return;
    const cw = (x1 - x0) / columns;
    const ch = (y1 - y0) / rows;
    for (let j = 0; j < rows; j++) {
      for (let i = 0; i < columns; i++) {
        const count = heat[j * columns + i];
        if (!count) continue;
        const [ax, ay] = this.camera.toScreen(x0 + i * cw, y0 + (j + 1) * ch, h);
        const [bx, by] = this.camera.toScreen(x0 + (i + 1) * cw, y0 + j * ch, h);
        ctx.fillStyle = `rgba(255, 80, 40, ${(0.06 + 0.4 * (count / most)).toFixed(3)})`;
        ctx.fillRect(ax, ay, bx - ax, by - ay);
      }
    }
  }

  drawDots(ctx, { header, xs, ys }, h, ratio) {
    const players = header.players.length;
    const size = 3 * ratio;
    ctx.fillStyle = NPC;
    for (let i = players; i < xs.length; i++) {
      const [sx, sy] = this.camera.toScreen(xs[i], ys[i], h);
      ctx.fillRect(sx - size / 2, sy - size / 2, size, size);
    }
    ctx.fillStyle = PLAYER;
    for (let i = 0; i < players; i++) {
      const [sx, sy] = this.camera.toScreen(xs[i], ys[i], h);
      ctx.beginPath();
      ctx.arc(sx, sy, 2.5 * ratio, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  drawHandoffs(ctx, handoffs, h, ratio) {
    const regions = Object.fromEntries(this.world.regions.map((r) => [r.name, r]));
    ctx.strokeStyle = HANDOFF;
    ctx.lineWidth = 1.5 * ratio;
    for (const [, , to, x, y] of handoffs) {
      const [sx, sy] = this.camera.toScreen(x, y, h);
      ctx.beginPath();
      ctx.arc(sx, sy, 6 * ratio, 0, 2 * Math.PI);
      const target = regions[to];
      if (target) {
        const [tx, ty] = this.camera.toScreen((target.x0 + target.x1) / 2, (target.y0 + target.y1) / 2, h);
        const length = Math.hypot(tx - sx, ty - sy) || 1;
        ctx.moveTo(sx, sy);
        ctx.lineTo(sx + ((tx - sx) / length) * 18 * ratio, sy + ((ty - sy) / length) * 18 * ratio);
      }
      ctx.stroke();
    }
  }

  showStatus() {
    const s = this.state;
    const parts = [s.connected ? `${s.rate} updates/s` : `disconnected: ${s.error ?? "connecting"}`];
    parts.push(`${s.count} in view`);
    if (!s.dots) parts.push("too many to draw: zoom in");
    if (s.handoffs.length) parts.push(`${s.handoffs.length} handoffs`);
    if (s.lag !== null) parts.push(`${Math.round(s.lag * 1000)} ms behind`);
    const legend = (color, mark, what) => {
      const span = document.createElement("span");
      span.style.color = color;
      span.textContent = mark;
      return [span, ` ${what}  `];
    };
    this.status.replaceChildren(
      ...legend(PLAYER, "●", "players"),
      ...legend(NPC, "■", "NPCs"),
      ...legend(HANDOFF, "○", "handoffs"),
      `| ${parts.join(" · ")}`,
    );
  }
}

export function startMap(element) {
  return new WorldMap(element);
}

const element = document.getElementById("world-map");
if (element) startMap(element);
