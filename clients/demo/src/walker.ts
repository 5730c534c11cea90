/**
 * The player's movement and view: keys held become `zone.move` inputs
 * (numbered, within the server's speed limit), and `world.update` pushes
 * keep what is in view. The page predicts the player's own position; the
 * server's `world.correct` puts it back where the server has it.
 */

import type { EntityView, MovementInfo, Session, ZoneEnterReply } from "mmo-client";
import type { DemoState } from "./state.js";

/** Inputs a second while a key is held. */
const RATE = 10;
/** The share of the server's max_speed walked (the rest is margin for timers). */
const PACE = 0.85;
const DEFAULT_MOVEMENT: MovementInfo = { max_speed: 8, tolerance: 0.1, burst: 0.5, tick_rate: 20 };

interface WorldUpdate {
  enter: EntityView[];
  update: Array<Partial<EntityView> & { id: string }>;
  leave: string[];
  reset?: boolean;
}

export class Walker {
  private held = new Map<string, [number, number]>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private last = 0;
  private input = 0;
  private movement: MovementInfo = DEFAULT_MOVEMENT;

  constructor(
    private readonly state: DemoState,
    private readonly session: () => Session | null,
  ) {}

  start(reply: ZoneEnterReply): void {
    this.state.entity = reply.entity;
    this.state.x = reply.x;
    this.state.y = reply.y;
    this.input = reply.input;
    this.movement = reply.movement ?? DEFAULT_MOVEMENT;
    this.stop();
    this.last = performance.now();
    this.timer = setInterval(() => this.step(), 1000 / RATE);
  }

  /**
   * A new view, before `zone.enter` is sent: its first `world.update` may
   * come before the reply, and belongs to the new view.
   */
  clearView(): void {
    this.state.entities = {};
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.held.clear();
  }

  press(code: string, direction: [number, number]): void {
    this.held.set(code, direction);
  }

  release(code: string): void {
    this.held.delete(code);
  }

  releaseAll(): void {
    this.held.clear();
  }

  update(message: WorldUpdate): void {
    const entities = this.state.entities;
    if (message.reset) for (const id of Object.keys(entities)) delete entities[id];
    for (const view of message.enter) entities[view.id] = { ...view };
    for (const change of message.update) {
      const known = entities[change.id];
      if (known) Object.assign(known, change);
    }
    for (const id of message.leave) delete entities[id];
  }

  correct(x: number, y: number): void {
    this.state.x = x;
    this.state.y = y;
  }

  private step(): void {
    const now = performance.now();
    const dt = Math.min((now - this.last) / 1000, 0.25);
    this.last = now;
    const session = this.session();
    if (!session || this.held.size === 0) return;
    // No inputs while the session is away: the player stands still, visibly.
    if (this.state.connection !== "open" && this.state.connection !== "resumed") return;
    let dx = 0;
    let dy = 0;
    for (const [x, y] of this.held.values()) {
      dx += x;
      dy += y;
    }
    const length = Math.hypot(dx, dy);
    if (length === 0) return;
    const distance = this.movement.max_speed * PACE * dt;
    const world = this.state.world;
    const clamp = (v: number, max: number | undefined) => Math.min(Math.max(v, 0), max === undefined ? Infinity : max - 0.01);
    const x = clamp(this.state.x + (dx / length) * distance, world?.width);
    const y = clamp(this.state.y + (dy / length) * distance, world?.height);
    if (x === this.state.x && y === this.state.y) return;
    this.state.x = x;
    this.state.y = y;
    this.input += 1;
    session.request("zone.move", { seq: this.input, x, y }).catch(() => {
      // A refused move comes back as world.correct; a dropped connection is resumed.
    });
  }
}
