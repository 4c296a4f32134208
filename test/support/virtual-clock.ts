// A discrete-event clock for tests: the client's one timer plus events scheduled by the test
// (bytes arriving from a scripted broker, faults). advance() runs them in time order; nothing
// depends on wall time, so every scenario is exact and repeatable on Node and on XS.
import type { Clock } from "../../modules/types";

interface Task {
  at: number;
  order: number;
  run: () => void;
}

export class VirtualClock implements Clock {
  time = 0;
  /** How many times the client armed its timer (a cost figure, not a behaviour). */
  timerSets = 0;
  private timerAt = -1;
  private timerCallback: (() => void) | undefined;
  private tasks: Task[] = [];
  private order = 0;
  private zeroDelayAt = -1;
  private zeroDelaySets = 0;

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  setTimer(delayMs: number, onTimer: () => void): void {
    if (!Number.isInteger(delayMs) || delayMs < 0) throw new Error("setTimer needs a whole number of ms >= 0, got " + delayMs);
    // A client that re-arms for "now" over and over would spin for ever: fail instead of hanging.
    if (delayMs === 0 && this.time === this.zeroDelayAt) {
      if (++this.zeroDelaySets > 10000) throw new Error("timer re-armed for now 10000 times at " + this.time + " ms: the client is polling");
    } else {
      this.zeroDelayAt = delayMs === 0 ? this.time : -1;
      this.zeroDelaySets = 0;
    }
    this.timerAt = this.time + delayMs;
    this.timerCallback = onTimer;
    this.timerSets++;
  }

  clearTimer(): void {
    this.timerAt = -1;
    this.timerCallback = undefined;
  }

  /** Milliseconds until the client's timer fires, or -1 when none is armed. */
  timerDueIn(): number {
    return this.timerAt < 0 ? -1 : this.timerAt - this.time;
  }

  /** Runs `run` after `delayMs` of virtual time (test events: deliveries, faults). */
  after(delayMs: number, run: () => void): void {
    this.tasks.push({ at: this.time + delayMs, order: this.order++, run });
  }

  /** Advances time by `ms`, running every task and timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.time + ms;
    for (;;) {
      // An index loop, not for-of: an iterator per pass would show up as the client's garbage in bench/.
      let next: Task | undefined;
      const tasks = this.tasks;
      for (let i = 0; i < tasks.length; i++) {
        const task = tasks[i]!;
        if (task.at <= end && (!next || task.at < next.at || (task.at === next.at && task.order < next.order))) next = task;
      }
      const timerDue = this.timerAt >= 0 && this.timerAt <= end;
      if (timerDue && (!next || this.timerAt < next.at)) {
        this.time = this.timerAt;
        const callback = this.timerCallback as () => void;
        this.timerAt = -1;
        this.timerCallback = undefined;
        callback();
        continue;
      }
      if (!next) break;
      this.tasks.splice(this.tasks.indexOf(next), 1);
      this.time = next.at;
      next.run();
    }
    this.time = end;
  }

  /** Runs whatever is due now (zero-latency deliveries). */
  settle(): void {
    this.advance(0);
  }
}
