// The core's Clock over Moddable's Timer and Time.ticks. One Timer is created at first use and
// re-scheduled from then on, so arming the client's deadline never allocates.
import Time from "time";
import Timer from "timer";
import type { Clock } from "../../modules/types";

export class TimerClock implements Clock {
  private timer: ReturnType<typeof Timer.repeat> | undefined;
  private callback: (() => void) | undefined;
  private readonly fire = (): void => {
    // A repeating timer that is re-scheduled on demand: stop it until the client arms it again.
    Timer.schedule(this.timer as never);
    const callback = this.callback;
    if (callback) callback();
  };

  now(): number {
    return Time.ticks;
  }

  setTimer(delayMs: number, onTimer: () => void): void {
    this.callback = onTimer;
    if (this.timer === undefined) this.timer = Timer.repeat(this.fire, 0x7fffffff);
    Timer.schedule(this.timer as never, delayMs, 0x7fffffff);
  }

  clearTimer(): void {
    this.callback = undefined;
    if (this.timer !== undefined) Timer.schedule(this.timer as never);
  }
}
