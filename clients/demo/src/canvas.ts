/**
 * Drawing the world around the player: zone borders (the regions of the
 * map), the player, the others and the NPCs, scaled so that the area of
 * interest fills the canvas.
 */

import type { DemoState } from "./state.js";

const COLOURS = { me: "#5fb4ff", player: "#7ee081", npc: "#c6a15b", border: "#4c566a", edge: "#bf616a", grid: "#1b2028", text: "#e5e9f0" };

export function draw(canvas: HTMLCanvasElement, state: DemoState): void {
  const g = canvas.getContext("2d");
  if (!g) return;
  const { width, height } = canvas;
  g.fillStyle = "#0d1014";
  g.fillRect(0, 0, width, height);
  if (state.entity === null) return;
  // World units shown across the canvas: a little more than the area of interest.
  const span = 2.4 * (state.world?.aoi_radius ?? 50);
  const scale = Math.min(width, height) / span;
  const sx = (x: number) => width / 2 + (x - state.x) * scale;
  const sy = (y: number) => height / 2 - (y - state.y) * scale; // y goes up

  // A light grid every 10 units, so that walking shows.
  g.strokeStyle = COLOURS.grid;
  g.lineWidth = 1;
  const step = 10;
  for (let x = Math.ceil((state.x - span) / step) * step; x <= state.x + span; x += step) line(g, sx(x), 0, sx(x), height);
  for (let y = Math.ceil((state.y - span) / step) * step; y <= state.y + span; y += step) line(g, 0, sy(y), width, sy(y));

  // Regions: each one's rectangle, the zone that serves it named inside.
  if (state.world) {
    g.lineWidth = 2;
    g.font = "12px system-ui, sans-serif";
    for (const region of state.world.regions) {
      g.strokeStyle = COLOURS.border;
      g.setLineDash([8, 6]);
      g.strokeRect(sx(region.x0), sy(region.y1), (region.x1 - region.x0) * scale, (region.y1 - region.y0) * scale);
      g.setLineDash([]);
      g.fillStyle = COLOURS.border;
      const cx = Math.min(Math.max(sx(region.x0) + 6, 6), sx(region.x1) - 120);
      const cy = Math.min(Math.max(sy(region.y1) + 16, 16), sy(region.y0) - 6);
      g.fillText(`${region.name} (${region.zone})`, cx, cy);
    }
    g.strokeStyle = COLOURS.edge;
    g.strokeRect(sx(0), sy(state.world.height), state.world.width * scale, state.world.height * scale);
  }

  // The area of interest.
  g.strokeStyle = "#2e3440";
  g.beginPath();
  g.arc(width / 2, height / 2, (state.world?.aoi_radius ?? 50) * scale, 0, 2 * Math.PI);
  g.stroke();

  g.font = "12px system-ui, sans-serif";
  g.textAlign = "center";
  for (const entity of Object.values(state.entities)) {
    const me = entity.id === state.entity;
    const x = me ? state.x : entity.x;
    const y = me ? state.y : entity.y;
    g.fillStyle = me ? COLOURS.me : entity.kind === "npc" ? COLOURS.npc : COLOURS.player;
    g.beginPath();
    g.arc(sx(x), sy(y), me ? 7 : entity.kind === "npc" ? 4 : 6, 0, 2 * Math.PI);
    g.fill();
    if (entity.kind !== "npc" || me) {
      g.fillStyle = COLOURS.text;
      g.fillText(entity.name, sx(x), sy(y) - 10);
    }
  }
  g.textAlign = "start";
}

function line(g: CanvasRenderingContext2D, x0: number, y0: number, x1: number, y1: number): void {
  g.beginPath();
  g.moveTo(x0, y0);
  g.lineTo(x1, y1);
  g.stroke();
}
