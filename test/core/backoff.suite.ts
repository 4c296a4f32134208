// Portable tests for modules/backoff.ts: the integer ceiling series, its overflow safety, the
// Backoff state machine (series, reset, attempt limit), full jitter bounds and determinism, the
// xorshift32 source, and the rejection of bad settings. Runs unchanged on Node and on XS.
import * as fc from "fast-check";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { Backoff, backoffCeiling, backoffProblem, type BackoffSettings, MAX_DELAY_MS, xorshift32 } from "../../modules/backoff";
import { IoTLinkError } from "../../modules/types";

function holds<T>(property: fc.IProperty<T>, seed: number, numRuns: number): void {
  fc.assert(property, { seed, numRuns });
  ok(true);
}

function delays(backoff: Backoff, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(backoff.nextDelay());
  return out;
}

test("backoff: backoffCeiling series, base 1000 max 32000: doubling, then capped", () => {
  const series: number[] = [];
  for (let attempt = 0; attempt < 9; attempt++) series.push(backoffCeiling(1000, 32000, attempt));
  deepEqual(series, [1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000, 32000]);
  equal(backoffCeiling(1000, 32000, 100), 32000);
  equal(backoffCeiling(1000, 32000, 1e9), 32000, "a huge attempt count ends at once");
  equal(backoffCeiling(1000, 32000, 0x7fffffff), 32000);
});

test("backoff: backoffCeiling when max is not base times a power of two", () => {
  deepEqual([0, 1, 2, 3].map((n) => backoffCeiling(3000, 10000, n)), [3000, 6000, 10000, 10000]);
  deepEqual([0, 1, 2, 3, 4].map((n) => backoffCeiling(5, 39, n)), [5, 10, 20, 39, 39], "max one below base * 2^3");
  deepEqual([0, 1, 2, 3, 4].map((n) => backoffCeiling(5, 40, n)), [5, 10, 20, 40, 40], "max exactly base * 2^3");
  deepEqual([0, 1, 2, 3, 4].map((n) => backoffCeiling(5, 41, n)), [5, 10, 20, 40, 41], "max one above base * 2^3");
  deepEqual([0, 1, 2].map((n) => backoffCeiling(7, 7, n)), [7, 7, 7], "base equal to max");
  deepEqual([0, 1, 2].map((n) => backoffCeiling(1, 1, n)), [1, 1, 1], "1 ms, 1 ms");
  deepEqual([0, 1, 2, 3].map((n) => backoffCeiling(2000, 8000, n)), [2000, 4000, 8000, 8000], "the Python SDK's (2, 8) s measurement, in ms");
});

test("backoff: backoffCeiling never overflows: base 1 up to max 0x7fffffff", () => {
  equal(MAX_DELAY_MS, 0x7fffffff);
  for (let attempt = 0; attempt <= 40; attempt++) {
    const ceiling = backoffCeiling(1, MAX_DELAY_MS, attempt);
    const expected = attempt <= 30 ? 2 ** attempt : MAX_DELAY_MS;
    equal(ceiling, expected, "attempt " + attempt);
  }
  equal(backoffCeiling(1, MAX_DELAY_MS, 1e9), MAX_DELAY_MS);
  equal(backoffCeiling(MAX_DELAY_MS, MAX_DELAY_MS, 0), MAX_DELAY_MS);
  equal(backoffCeiling(MAX_DELAY_MS, MAX_DELAY_MS, 50), MAX_DELAY_MS);
  equal(backoffCeiling(0x40000000, MAX_DELAY_MS, 1), MAX_DELAY_MS, "2^30 doubled would pass 2^31 - 1");
  equal(backoffCeiling(0x3fffffff, MAX_DELAY_MS, 1), 0x7ffffffe, "the largest doubling that fits");
  equal(backoffCeiling(0x3fffffff, MAX_DELAY_MS, 2), MAX_DELAY_MS);
  equal(backoffCeiling(3, 0x7ffffffe, 40), 0x7ffffffe);
});

test("backoff: property: backoffCeiling = min(max, base * 2^attempt), a positive integer", () => {
  holds(
    fc.property(
      fc.integer({ min: 1, max: MAX_DELAY_MS }),
      fc.integer({ min: 1, max: MAX_DELAY_MS }),
      fc.integer({ min: 0, max: 80 }),
      (a, b, attempt) => {
        const base = Math.min(a, b);
        const max = Math.max(a, b);
        const ceiling = backoffCeiling(base, max, attempt);
        // Exact in doubles: base * 2^attempt is a power-of-two multiple of an integer < 2^31.
        return ceiling === Math.min(max, base * 2 ** attempt) && Number.isInteger(ceiling) && ceiling >= base && ceiling <= max;
      },
    ),
    51,
    500,
  );
});

test("backoff: xorshift32 matches Marsaglia's generator (13, 17, 5)", () => {
  // Computed independently with BigInt arithmetic.
  const series: number[] = [];
  let state = 1;
  for (let i = 0; i < 5; i++) series.push((state = xorshift32(state)));
  deepEqual(series, [270369, 67634689, 2647435461, 307599695, 2398689233]);
  equal(xorshift32(0x9e3779b9), 1359758873);
  equal(xorshift32(0xffffffff), 253983);
  equal(xorshift32(-1), 253983, "a negative int32 input is the same 32 bits");
  equal(xorshift32(0), 0, "0 is the one fixed point (the Backoff never seeds it)");
});

test("backoff: property: xorshift32 yields unsigned 32-bit integers, never 0 from a nonzero state, and no short cycle", () => {
  holds(
    fc.property(fc.integer({ min: 1, max: 0xffffffff }), (seed) => {
      const seen = new Set<number>();
      let state = seed;
      for (let i = 0; i < 64; i++) {
        state = xorshift32(state);
        if (!Number.isInteger(state) || state <= 0 || state > 0xffffffff || seen.has(state)) return false;
        seen.add(state);
      }
      return true;
    }),
    52,
    100,
  );
});

test("backoff: Backoff.nextDelay series, counting attempts; reset() returns to base", () => {
  const backoff = new Backoff({ baseMs: 1000, maxMs: 32000, stableMs: 20000 });
  equal(backoff.jitter, false);
  equal(backoff.maxAttempts, 0);
  equal(backoff.attempt, 0);
  deepEqual(delays(backoff, 8), [1000, 2000, 4000, 8000, 16000, 32000, 32000, 32000]);
  equal(backoff.attempt, 8);
  backoff.reset();
  equal(backoff.attempt, 0);
  deepEqual(delays(backoff, 3), [1000, 2000, 4000], "after reset: base first");
  // Without reset the series continues where it was.
  deepEqual(delays(backoff, 3), [8000, 16000, 32000], "no reset: the grown value is kept");
  for (let i = 0; i < 1000; i++) equal(backoff.nextDelay(), 32000, "stays at max, call " + i);
});

test("backoff: the first delay is base, not the Python SDK's fixed 1 s", () => {
  deepEqual(delays(new Backoff({ baseMs: 2000, maxMs: 8000, stableMs: 4000 }), 4), [2000, 4000, 8000, 8000]);
  deepEqual(delays(new Backoff({ baseMs: 250, maxMs: 1000, stableMs: 1 }), 4), [250, 500, 1000, 1000]);
  deepEqual(delays(new Backoff({ baseMs: 1, maxMs: MAX_DELAY_MS, stableMs: 1 }), 3), [1, 2, 4]);
});

test("backoff: maxAttempts returns -1 after N failed attempts, until reset()", () => {
  const backoff = new Backoff({ baseMs: 1000, maxMs: 32000, stableMs: 20000, maxAttempts: 3 });
  equal(backoff.maxAttempts, 3);
  deepEqual(delays(backoff, 6), [1000, 2000, 4000, -1, -1, -1]);
  equal(backoff.attempt, 3, "refused attempts are not counted");
  backoff.reset();
  deepEqual(delays(backoff, 4), [1000, 2000, 4000, -1]);
  deepEqual(delays(new Backoff({ baseMs: 5, maxMs: 5, stableMs: 5, maxAttempts: 1 }), 3), [5, -1, -1], "one attempt");
  const unlimited = new Backoff({ baseMs: 5, maxMs: 10, stableMs: 5, maxAttempts: 0 });
  for (let i = 0; i < 200; i++) ok(unlimited.nextDelay() > 0, "0 never gives up, call " + i);
  const jittered = new Backoff({ baseMs: 5, maxMs: 10, stableMs: 5, maxAttempts: 2, jitter: true, seed: 3 });
  ok(jittered.nextDelay() >= 0 && jittered.nextDelay() >= 0, "jitter: two attempts");
  equal(jittered.nextDelay(), -1, "jitter: -1 after maxAttempts too");
});

test("backoff: jitter with the default PRNG: every delay in [0, ceiling], spread over the range", () => {
  const backoff = new Backoff({ baseMs: 1000, maxMs: 32000, stableMs: 20000, jitter: true, seed: 12345 });
  equal(backoff.jitter, true);
  let low = 0;
  let high = 0;
  for (let i = 0; i < 3000; i++) {
    if (i % 9 === 0) backoff.reset(); // cover every ceiling, from base to capped at max
    const ceiling = backoffCeiling(1000, 32000, backoff.attempt);
    const delay = backoff.nextDelay();
    ok(Number.isInteger(delay) && delay >= 0 && delay <= ceiling, "draw " + i + ": " + delay + " within [0, " + ceiling + "]");
    if (delay < ceiling / 4) low++;
    if (delay > (ceiling * 3) / 4) high++;
  }
  ok(low > 300 && high > 300, "draws reach both ends of the range (low " + low + ", high " + high + ")");
});

test("backoff: jitter reaches both ends of a tiny range: 0 and the ceiling itself", () => {
  const backoff = new Backoff({ baseMs: 1, maxMs: 1, stableMs: 1, jitter: true, seed: 99 });
  const counts = [0, 0];
  for (let i = 0; i < 400; i++) {
    const delay = backoff.nextDelay();
    ok(delay === 0 || delay === 1, "delay " + delay);
    counts[delay]++;
  }
  ok(counts[0] > 100 && counts[1] > 100, "both 0 and 1 drawn: " + counts.join(", "));
});

test("backoff: jitter at the largest ceiling stays within [0, 0x7fffffff]", () => {
  const backoff = new Backoff({ baseMs: 1, maxMs: MAX_DELAY_MS, stableMs: 1, jitter: true, seed: 7 });
  backoff.attempt = 1000;
  let above = 0;
  for (let i = 0; i < 500; i++) {
    const delay = backoff.nextDelay();
    ok(Number.isInteger(delay) && delay >= 0 && delay <= MAX_DELAY_MS, "delay " + delay);
    if (delay > 0x40000000) above++;
  }
  ok(above > 100, "the upper half of the 31-bit range is reached: " + above);
});

test("backoff: jitter with an injected random source, including hostile values", () => {
  let calls = 0;
  const values = [0, 0xffffffff, 1, 0x80000000, 123456789, -1, 2 ** 40, 0.5, Number.NaN, Infinity];
  const backoff = new Backoff({
    baseMs: 1000,
    maxMs: 32000,
    stableMs: 1000,
    jitter: true,
    random: () => values[calls++ % values.length],
  });
  const first = backoff.nextDelay();
  equal(first, 0, "random 0 gives 0");
  for (let i = 1; i < 40; i++) {
    const ceiling = backoffCeiling(1000, 32000, backoff.attempt);
    const delay = backoff.nextDelay();
    ok(Number.isInteger(delay) && delay >= 0 && delay <= ceiling, "random " + values[i % values.length] + " gave " + delay + ", ceiling " + ceiling);
  }
  equal(calls, 40, "one draw per delay");
  // A source that breaks its contract gives that attempt the full delay, never 0 (Math.random's
  // fractions would otherwise make every reconnect immediate).
  const fractions = new Backoff({ baseMs: 1000, maxMs: 32000, stableMs: 1, jitter: true, random: () => 0.75 });
  deepEqual(delays(fractions, 4), [1000, 2000, 4000, 8000]);
  let draw = 0;
  const hostile = [-1, 2 ** 32, 0.5, Number.NaN, Infinity, "7" as unknown as number, undefined as unknown as number, 5];
  const mixed = new Backoff({ baseMs: 1000, maxMs: 1000, stableMs: 1, jitter: true, random: () => hostile[draw++] });
  deepEqual(delays(mixed, hostile.length), [1000, 1000, 1000, 1000, 1000, 1000, 1000, 5], "every contract breach gives the ceiling; a valid draw is used");
  // A source stuck at one value gives one value per ceiling: the delay follows the source.
  const stuck = new Backoff({ baseMs: 1000, maxMs: 1000, stableMs: 1, jitter: true, random: () => 0 });
  deepEqual(delays(stuck, 3), [0, 0, 0]);
  const varying = new Backoff({ baseMs: 1000, maxMs: 1000, stableMs: 1, jitter: true, random: (() => { let n = 0; return () => n++; })() });
  const spread = delays(varying, 5);
  equal(new Set(spread).size, 5, "distinct random values give distinct delays: " + spread.join(", "));
});

test("backoff: jitter is deterministic for equal seeds, differs for different seeds, seed() re-seeds", () => {
  const settings: BackoffSettings = { baseMs: 100, maxMs: 100000, stableMs: 1000, jitter: true, seed: 2024 };
  const a = delays(new Backoff(settings), 60);
  const b = delays(new Backoff(settings), 60);
  deepEqual(a, b, "same seed, same delays");
  const c = delays(new Backoff({ ...settings, seed: 2025 }), 60);
  ok(a.some((delay, i) => delay !== c[i]), "another seed, other delays");
  equal(new Set(a).size > 50, true, "the delays vary");
  const reseeded = new Backoff({ ...settings, seed: 1 });
  delays(reseeded, 17);
  reseeded.reset();
  reseeded.seed(2024);
  deepEqual(delays(reseeded, 60), a, "seed(2024) and reset() replay the seed-2024 series");
  deepEqual(delays(new Backoff({ ...settings, seed: undefined }), 20), delays(new Backoff({ ...settings, seed: undefined }), 20), "the default seed is fixed");
  // A zero state would stick at 0 in xorshift32: seed 0 is mapped to 1 instead.
  const zero = delays(new Backoff({ ...settings, seed: 0 }), 40);
  deepEqual(zero, delays(new Backoff({ ...settings, seed: 1 }), 40), "seed 0 behaves as seed 1");
  ok(zero.some((delay) => delay !== 0), "seed 0 does not stick at 0");
  const zeroed = new Backoff({ ...settings, seed: 5 });
  zeroed.seed(0);
  ok(delays(zeroed, 10).some((delay) => delay !== 0), "seed(0) does not stick at 0 either");
  // seed() takes what the seed setting takes, at the call: a fraction or NaN would silently become 0 (then 1).
  for (const bad of [-1, 2 ** 32, 1.5, Number.NaN, "7" as unknown as number]) {
    throws(() => zeroed.seed(bad), "backoff seed must be a whole number from 0 to 4294967295");
  }
});

test("backoff: property: jittered delays are always within [0, ceiling], for any settings and seed", () => {
  holds(
    fc.property(
      fc.integer({ min: 1, max: MAX_DELAY_MS }),
      fc.integer({ min: 1, max: MAX_DELAY_MS }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 1, max: 40 }),
      (a, b, seed, count) => {
        const base = Math.min(a, b);
        const max = Math.max(a, b);
        const backoff = new Backoff({ baseMs: base, maxMs: max, stableMs: 1, jitter: true, seed });
        for (let i = 0; i < count; i++) {
          const ceiling = backoffCeiling(base, max, backoff.attempt);
          const delay = backoff.nextDelay();
          if (!Number.isInteger(delay) || delay < 0 || delay > ceiling) return false;
        }
        return backoff.attempt === count;
      },
    ),
    53,
    300,
  );
});

test("backoff: backoffProblem accepts sound settings", () => {
  equal(backoffProblem({ baseMs: 1000, maxMs: 32000, stableMs: 20000 }), "");
  equal(backoffProblem({ baseMs: 1, maxMs: 1, stableMs: 1 }), "", "the smallest");
  equal(backoffProblem({ baseMs: MAX_DELAY_MS, maxMs: MAX_DELAY_MS, stableMs: MAX_DELAY_MS, maxAttempts: MAX_DELAY_MS }), "", "the largest");
  equal(backoffProblem({ baseMs: 30000, maxMs: 60000, stableMs: 1000 }), "", "stable below base is allowed (unlike the Python SDK)");
  equal(backoffProblem({ baseMs: 1, maxMs: 2, stableMs: 3, jitter: true, maxAttempts: 0, random: () => 4 }), "", "every option, with an injected source");
  equal(backoffProblem({ baseMs: 1, maxMs: 2, stableMs: 3, jitter: true, maxAttempts: 0, seed: 0xffffffff }), "", "every option, with a seed");
  equal(backoffProblem({ baseMs: 1, maxMs: 2, stableMs: 3, seed: 0 }), "", "seed 0");
});

const BAD: readonly [string, Record<string, unknown>, string][] = [
  ["base 0", { baseMs: 0 }, "backoff baseMs must be a whole number from 1 to 2147483647, got 0"],
  ["negative base", { baseMs: -1000 }, "backoff baseMs must be a whole number from 1 to 2147483647, got -1000"],
  ["fractional base", { baseMs: 1.5 }, "backoff baseMs must be a whole number from 1 to 2147483647, got 1.5"],
  ["NaN base", { baseMs: Number.NaN }, "backoff baseMs must be a whole number from 1 to 2147483647, got NaN"],
  ["base as a string", { baseMs: "1000" }, "backoff baseMs must be a whole number from 1 to 2147483647, got \"1000\""],
  ["base over 2^31 - 1", { baseMs: 0x80000000, maxMs: 0x80000000 }, "backoff baseMs must be a whole number from 1 to 2147483647, got 2147483648"],
  ["missing base", { baseMs: undefined }, "backoff baseMs must be a whole number from 1 to 2147483647, got undefined"],
  ["max 0", { maxMs: 0 }, "backoff maxMs must be a whole number from 1 to 2147483647, got 0"],
  ["fractional max", { maxMs: 32000.5 }, "backoff maxMs must be a whole number from 1 to 2147483647, got 32000.5"],
  ["infinite max", { maxMs: Infinity }, "backoff maxMs must be a whole number from 1 to 2147483647, got Infinity"],
  ["max below base", { baseMs: 1000, maxMs: 999 }, "backoff maxMs (999) must not be below baseMs (1000)"],
  ["stable 0", { stableMs: 0 }, "backoff stableMs must be a whole number from 1 to 2147483647, got 0"],
  ["negative stable", { stableMs: -1 }, "backoff stableMs must be a whole number from 1 to 2147483647, got -1"],
  ["fractional stable", { stableMs: 0.5 }, "backoff stableMs must be a whole number from 1 to 2147483647, got 0.5"],
  ["jitter not a boolean", { jitter: 1 }, "backoff jitter must be a boolean, got 1"],
  ["negative maxAttempts", { maxAttempts: -1 }, "backoff maxAttempts must be a whole number from 0 to 2147483647, got -1"],
  ["fractional maxAttempts", { maxAttempts: 2.5 }, "backoff maxAttempts must be a whole number from 0 to 2147483647, got 2.5"],
  ["maxAttempts as a string", { maxAttempts: "3" }, "backoff maxAttempts must be a whole number from 0 to 2147483647, got \"3\""],
  ["random not a function", { random: 42, jitter: true }, "backoff random must be a function returning a 32-bit unsigned integer"],
  ["random without jitter (it would never be called)", { random: () => 1 }, "backoff random is only used with jitter: true"],
  ["random with jitter off", { random: () => 1, jitter: false }, "backoff random is only used with jitter: true"],
  ["random and seed (the seed would be ignored)", { random: () => 1, jitter: true, seed: 7 }, "backoff seed is for the default random source: give random or seed, not both"],
  ["negative seed", { seed: -1 }, "backoff seed must be a whole number from 0 to 4294967295, got -1"],
  ["seed over 32 bits", { seed: 0x100000000 }, "backoff seed must be a whole number from 0 to 4294967295, got 4294967296"],
  ["fractional seed", { seed: 1.5 }, "backoff seed must be a whole number from 0 to 4294967295, got 1.5"],
];

test("backoff: backoffProblem and the constructor reject bad settings with clear messages", () => {
  for (const [name, change, message] of BAD) {
    const settings = { baseMs: 1000, maxMs: 32000, stableMs: 20000, ...change } as unknown as BackoffSettings;
    const problem = backoffProblem(settings);
    ok(problem.indexOf(message) >= 0, name + ": " + JSON.stringify(problem) + " should say " + JSON.stringify(message));
    throws(() => new Backoff(settings), message, name + ": the constructor throws the same message");
    let thrown: unknown;
    try {
      new Backoff(settings);
    } catch (error) {
      thrown = error;
    }
    ok(thrown instanceof IoTLinkError, name + ": an IoTLinkError");
    equal((thrown as IoTLinkError).code as string, "invalid-argument", name + ": code");
    equal((thrown as IoTLinkError).message, problem, name + ": the message is backoffProblem's");
  }
});
