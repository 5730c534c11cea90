/**
 * A connection's liveness, both ways, from the times of the hello reply
 * (protocol.md sections 9 and 14). The server keeps a connection that
 * sends something at least every half `idle_timeout`; the client keeps one
 * from which something arrives within `heartbeat_timeout` (`idle_timeout`
 * on a server without heartbeats). A half-dead connection (a NAT that
 * forgot it, a peer that froze) closes nothing and says nothing: only such
 * a deadline notices it on the client's side.
 */

import type { HelloReply } from "./messages.js";

/** Seconds; null where the server's hello gives nothing to go by. */
export interface LivenessTimes {
  /** Without sending for this long, the client sends a `ping` (the server's idle timeout). */
  keepAlive: number | null;
  /** Without hearing for this long, the client asks for an answer. */
  probe: number | null;
  /** Without hearing for this long, the connection is given up. */
  deadline: number | null;
}

/** What a watched connection does when its times run out. */
export interface Watched {
  /** Send something the server need not answer. */
  keepAlive(): void;
  /** Send something the server answers. */
  probe(): void;
  /** Nothing came for `seconds`: give the connection up. */
  expire(seconds: number): void;
}

const positive = (value: unknown): number | null => (typeof value === "number" && value > 0 ? value : null);

export function livenessTimes(welcome: HelloReply): LivenessTimes {
  const idle = positive(welcome.idle_timeout);
  const interval = positive(welcome.heartbeat_interval);
  const deadline = positive(welcome.heartbeat_timeout) ?? idle;
  let probe: number | null = null;
  if (deadline !== null) {
    // A quiet client hears a heartbeat every interval, so the probe, halfway
    // between the interval and the deadline, asks only when one is overdue:
    // the server heartbeats only clients that send nothing, and a busy one
    // that gets nothing back must still hear from a live server in time.
    probe = interval !== null && interval < deadline ? (interval + deadline) / 2 : deadline / 2;
  }
  return { keepAlive: idle === null ? null : idle / 2, probe, deadline };
}

const seconds = () => performance.now() / 1000;

/**
 * One timer, armed for the earliest of the three times and re-armed when it
 * fires: noting a frame sent or heard only stores the time, so a busy
 * connection costs no timer per frame. `stop()` clears it.
 */
export class Liveness {
  private lastHeard: number;
  private lastSent: number;
  private probed = false;
  private stopped = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly times: LivenessTimes,
    private readonly watched: Watched,
    private readonly now: () => number = seconds,
  ) {
    this.lastHeard = this.lastSent = now();
    this.arm();
  }

  /** A frame came from the server. */
  heard(): void {
    this.lastHeard = this.now();
    this.probed = false;
  }

  /** A frame went to the server. */
  sent(): void {
    this.lastSent = this.now();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private check(): void {
    this.timer = null;
    const now = this.now();
    const { keepAlive, probe, deadline } = this.times;
    if (deadline !== null && now - this.lastHeard >= deadline) {
      this.stop();
      this.watched.expire(deadline);
      return;
    }
    if (probe !== null && !this.probed && now - this.lastHeard >= probe) {
      this.probed = true;
      this.watched.probe();
    }
    if (keepAlive !== null && now - this.lastSent >= keepAlive) {
      // Even if nothing could be sent: the next try is a period away, not at once.
      this.lastSent = now;
      this.watched.keepAlive();
    }
    this.arm();
  }

  private arm(): void {
    if (this.stopped) return;
    const { keepAlive, probe, deadline } = this.times;
    const due: number[] = [];
    if (keepAlive !== null) due.push(this.lastSent + keepAlive);
    if (probe !== null && !this.probed) due.push(this.lastHeard + probe);
    if (deadline !== null) due.push(this.lastHeard + deadline);
    if (due.length === 0) return;
    const wait = Math.max(0, Math.min(...due) - this.now());
    this.timer = setTimeout(() => this.check(), wait * 1000);
  }
}
