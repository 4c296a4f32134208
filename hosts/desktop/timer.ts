// Node implementation of Moddable's "timer" module (modules/base/timer), following its documented and
// observed semantics:
// - Timer.set(callback, initial = 0, repeat = 0) and Timer.repeat(callback, interval) return an opaque
//   timer instance, not a number; the callback receives that instance, with `this` = globalThis.
// - If the repeat interval is zero when a callback returns (and the timer is still scheduled), the timer
//   is cleared and can no longer be used; Timer.schedule on a cleared timer throws.
// - Timer.schedule(timer) unschedules; schedule(timer, initial[, repeat]) reschedules.
// - Timer.clear(undefined | null | cleared timer) does nothing.
// - Callbacks always run on a later event-loop turn, never inside set/repeat/schedule.

export type TimerCallback = (timer: TimerInstance) => void;

/** The opaque value Timer.set and Timer.repeat return (a host object on the device). */
export class TimerInstance {
  private constructor() {}
  /** @internal */
  static create(): TimerInstance {
    return Object.freeze(new TimerInstance());
  }
}

interface TimerState {
  readonly callback: TimerCallback;
  repeatInterval: number;
  /** False once unscheduled; stays true while a one-shot's callback runs, as on the device. */
  scheduled: boolean;
  cancelPending: (() => void) | undefined;
}

const liveTimers = new WeakMap<TimerInstance, TimerState>();
let liveTimerCount = 0;
// Timers with a pending Node timeout or immediate.
let scheduledTimerCount = 0;

function toInterval(value: number | undefined): number {
  // XS converts with xsmcToInteger: fractions truncate, NaN and undefined become 0.
  const interval = Math.trunc(Number(value ?? 0));
  return Number.isFinite(interval) && interval > 0 ? interval : 0;
}

function unschedule(state: TimerState): void {
  if (state.cancelPending) {
    state.cancelPending();
    state.cancelPending = undefined;
    scheduledTimerCount--;
  }
  state.scheduled = false;
}

function arm(timer: TimerInstance, state: TimerState, delay: number): void {
  unschedule(state);
  const fire = (): void => {
    state.cancelPending = undefined;
    scheduledTimerCount--;
    // A repeating timer is re-armed before its callback runs, so the interval is measured from
    // this firing, as glib and FreeRTOS timers do, and the callback may still reschedule it.
    if (state.repeatInterval > 0) arm(timer, state, state.repeatInterval);
    try {
      state.callback.call(globalThis, timer);
    } finally {
      // "If the repeat interval is zero when the timer's callback returns, the timer is
      // automatically cleared" -- unless the callback unscheduled it.
      if (liveTimers.get(timer) === state && state.scheduled && state.repeatInterval === 0) release(timer, state);
    }
  };
  // Zero-delay timers run on the next turn, like Moddable's "immediate" timers.
  if (delay === 0) {
    const immediate = setImmediate(fire);
    state.cancelPending = () => clearImmediate(immediate);
  } else {
    const timeout = setTimeout(fire, delay);
    state.cancelPending = () => clearTimeout(timeout);
  }
  scheduledTimerCount++;
  state.scheduled = true;
}

function release(timer: TimerInstance, state: TimerState): void {
  unschedule(state);
  liveTimers.delete(timer);
  liveTimerCount--;
}

function create(callback: TimerCallback, initial: number, repeat: number): TimerInstance {
  if (typeof callback !== "function") throw new TypeError("Timer: callback is not a function");
  const timer = TimerInstance.create();
  const state: TimerState = { callback, repeatInterval: repeat, scheduled: false, cancelPending: undefined };
  liveTimers.set(timer, state);
  liveTimerCount++;
  arm(timer, state, initial);
  return timer;
}

function stateOf(timer: TimerInstance): TimerState {
  const state = timer instanceof TimerInstance ? liveTimers.get(timer) : undefined;
  // XS reports a cleared or foreign host object this way (xsmcGetHostDataValidate).
  if (!state) throw new SyntaxError("C: xsGetHostData: invalid host data");
  return state;
}

export default class Timer {
  private constructor() {}

  static set(callback: TimerCallback, initialInterval?: number, repeatInterval?: number): TimerInstance {
    return create(callback, toInterval(initialInterval), toInterval(repeatInterval));
  }

  static repeat(callback: TimerCallback, interval: number): TimerInstance {
    const every = toInterval(interval);
    return create(callback, every, every);
  }

  static schedule(timer: TimerInstance, initialInterval?: number, repeatInterval?: number): void {
    const state = stateOf(timer);
    if (arguments.length < 2) {
      unschedule(state);
      return;
    }
    state.repeatInterval = toInterval(repeatInterval);
    arm(timer, state, toInterval(initialInterval));
  }

  static clear(timer: TimerInstance | undefined | null): void {
    if (!(timer instanceof TimerInstance)) return;
    const state = liveTimers.get(timer);
    if (state) release(timer, state);
  }

  /** Blocks the whole process, as Timer.delay blocks the device's JavaScript thread. */
  static delay(milliseconds: number): void {
    const waitOn = new Int32Array(new SharedArrayBuffer(4));
    Atomics.wait(waitOn, 0, 0, toInterval(milliseconds));
  }
}

/** Desktop only: how many timers are scheduled to fire; zero once an app has stopped everything. */
export function countScheduledTimers(): number {
  return scheduledTimerCount;
}

/** Desktop only: how many timers are alive (scheduled or unscheduled); tests use it to find leaks. */
export function countLiveTimers(): number {
  return liveTimerCount;
}
