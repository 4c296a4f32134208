// Reconnect delays in integer milliseconds: the n-th reconnect after a failure waits
// min(max, base * 2^n), or with full jitter a value drawn from [0, that ceiling]. The random
// source is injected; the default is a seedable 32-bit xorshift.

import { invalid, shown, wholeNumber, wholeNumberProblem } from "./types";

/** Largest delay the single timer and the wrap-safe clock comparisons can express. */
export const MAX_DELAY_MS = 0x7fffffff;

export interface BackoffSettings {
  /** Delay before the first reconnect; doubles per failed attempt. */
  baseMs: number;
  /** Ceiling of the delay. */
  maxMs: number;
  /** A connection that stays up this long resets the delay to `baseMs`. */
  stableMs: number;
  /** Full jitter: draw each delay from [0, ceiling]. */
  jitter?: boolean;
  /** Give up after this many consecutive failed attempts; 0 (default) never gives up. */
  maxAttempts?: number;
  /** With jitter: returns an unsigned 32-bit integer (any other value gives that attempt the full delay). */
  random?: () => number;
  /** With jitter: the seed of the default random source, when `random` is not given. */
  seed?: number;
}

/** min(max, base * 2^attempt) without overflow or floating point. */
export function backoffCeiling(baseMs: number, maxMs: number, attempt: number): number {
  let ceiling = baseMs;
  const half = maxMs >>> 1;
  for (let n = 0; n < attempt; n++) {
    if (ceiling > half) return maxMs;
    ceiling <<= 1;
  }
  return ceiling < maxMs ? ceiling : maxMs;
}

/** One step of xorshift32 (Marsaglia): a tiny full-period generator over nonzero 32-bit states. */
export function xorshift32(state: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}

/** Why the settings are unusable, or "" when they are fine. */
export function backoffProblem(settings: BackoffSettings): string {
  const { baseMs, maxMs, stableMs, maxAttempts, seed } = settings;
  return wholeNumberProblem("backoff baseMs", baseMs, 1, MAX_DELAY_MS)
    || wholeNumberProblem("backoff maxMs", maxMs, 1, MAX_DELAY_MS)
    || (maxMs < baseMs ? "backoff maxMs (" + maxMs + ") must not be below baseMs (" + baseMs + ")" : "")
    || wholeNumberProblem("backoff stableMs", stableMs, 1, MAX_DELAY_MS)
    || (settings.jitter !== undefined && typeof settings.jitter !== "boolean" ? "backoff jitter must be a boolean, got " + shown(settings.jitter) : "")
    || (maxAttempts !== undefined ? wholeNumberProblem("backoff maxAttempts", maxAttempts, 0, MAX_DELAY_MS) : "")
    || (settings.random !== undefined && typeof settings.random !== "function" ? "backoff random must be a function returning a 32-bit unsigned integer" : "")
    || (settings.random !== undefined && settings.jitter !== true ? "backoff random is only used with jitter: true" : "")
    || (settings.random !== undefined && seed !== undefined ? "backoff seed is for the default random source: give random or seed, not both" : "")
    || (seed !== undefined ? wholeNumberProblem("backoff seed", seed, 0, 0xffffffff) : "");
}

export class Backoff {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly stableMs: number;
  readonly jitter: boolean;
  readonly maxAttempts: number;
  /** Failed attempts since the last reset: the exponent of the next delay. */
  attempt = 0;
  private randomState: number;
  private readonly random: (() => number) | undefined;

  constructor(settings: BackoffSettings) {
    const problem = backoffProblem(settings);
    if (problem !== "") throw invalid(problem);
    this.baseMs = settings.baseMs;
    this.maxMs = settings.maxMs;
    this.stableMs = settings.stableMs;
    this.jitter = settings.jitter === true;
    this.maxAttempts = settings.maxAttempts ?? 0;
    this.random = settings.random;
    this.randomState = (settings.seed ?? 0x9e3779b9) >>> 0 || 1;
  }

  /** Re-seeds the default random source (the client mixes in its id so fleets do not retry in step). */
  seed(value: number): void {
    this.randomState = wholeNumber("backoff seed", value, 0, 0xffffffff) || 1;
  }

  /** The next draw, or -1 when the injected source breaks its contract (not a 32-bit unsigned integer). */
  private nextRandom(): number {
    if (this.random === undefined) {
      this.randomState = xorshift32(this.randomState);
      return this.randomState;
    }
    const value = this.random();
    return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? value : -1;
  }

  /** The delay before the next attempt, counting it; -1 once maxAttempts attempts have failed. */
  nextDelay(): number {
    if (this.maxAttempts > 0 && this.attempt >= this.maxAttempts) return -1;
    const ceiling = backoffCeiling(this.baseMs, this.maxMs, this.attempt);
    this.attempt++;
    if (!this.jitter) return ceiling;
    // A source that breaks its contract (Math.random's fractions, say) gets the full delay: taken
    // as 0, it would make every reconnect immediate.
    const draw = this.nextRandom();
    return draw < 0 ? ceiling : draw % (ceiling + 1);
  }

  /** The connection proved stable: the next delay is `baseMs` again. */
  reset(): void {
    this.attempt = 0;
  }
}
