// Node implementation of the parts of Moddable's "time" module a device app uses for measuring:
// `ticks` is a monotonic millisecond counter with no relation to the time of day (it starts near
// zero when the process starts, as a device's counter does at boot).
import { performance } from "node:perf_hooks";

export default class Time {
  private constructor() {}

  static get ticks(): number {
    return Math.floor(performance.now());
  }

  static get microseconds(): number {
    return Math.floor(performance.now() * 1000);
  }

  /** Milliseconds from `start` to `end` (default: now). */
  static delta(start: number, end: number = Time.ticks): number {
    return end - start;
  }

  // Stored only: the desktop's Date already follows the host's time zone.
  static timezone = 0;
  static dst = 0;
}
