// The fuzzers, for far more iterations than `npm test` runs:
//
//   npm run fuzz                                   # 100,000 session storms + 100,000 API call sequences
//   npm run fuzz -- --runs 1000000 --seed 7        # more, from another seed
//   npm run fuzz -- --minutes 5                    # as many as fit in 5 minutes
//
// 1. session: the hostile-broker fuzz of test/core/client-hostile.suite.ts (random and mutated
//    broker traffic on the virtual clock: nothing escapes as an exception, no buffer grows past its
//    size, a normal broker gets a normal session afterwards), run in batches of --batch storms, each
//    batch from its own seed, so one failure is reported (with fast-check's shrunk counterexample)
//    and the rest still run.
// 2. api: random arguments to publish / subscribe / unsubscribe, online and offline: each call
//    either is accepted or throws an IoTLinkError (invalid-argument or not-accepted) and then leaves
//    the client exactly as it was.
// Prints iterations, time and failures; exits 1 if anything failed.
import fc from "fast-check";
import { IoTLinkError } from "../modules/types.ts";
import { helpIfAsked, readCommandLine, runCommand, UsageError } from "./cli.ts";
import { runSessionFuzz } from "../test/core/client-hostile.suite.ts";
import { connected, session, type Session } from "../test/support/session.ts";

interface Options {
  runs: number;
  seed: number;
  batch: number;
  minutes: number;
  only: string | undefined;
}

export const FUZZ_USAGE = `usage: npm run fuzz -- [--runs 100000] [--seed 20261129] [--batch 1000] [--minutes M] [--only session|api]

Runs the fuzzers for far more iterations than npm test: session (random and mutated broker traffic
against the client on a virtual clock) and api (random arguments to publish, subscribe and
unsubscribe). Prints progress every 5 s, then a table; a failing batch is reported with its seed.

  --runs N       iterations per fuzzer (default 100000)
  --seed S       the first batch's seed (a whole number; default 20261129)
  --batch B      iterations per batch, each from its own seed (default 1000)
  --minutes M    run each fuzzer this long instead of --runs
  --only NAME    session or api
  --help         this text

Exit codes: 0 when no batch failed, 1 when one did, 2 for a bad option.`;

function parseArguments(argv: string[]): Options {
  const values = readCommandLine(
    { runs: { type: "string" }, seed: { type: "string" }, batch: { type: "string" }, minutes: { type: "string" }, only: { type: "string" } },
    argv,
  );
  helpIfAsked(values, FUZZ_USAGE);
  const whole = (value: string | undefined, name: string, fallback: number, min: number): number => {
    if (value === undefined) return fallback;
    const number = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!(number >= min)) throw new UsageError(`${name} must be a whole number${min > 0 ? " above 0" : ""}, got ${JSON.stringify(value)}`);
    return number;
  };
  const minutes = values.minutes === undefined ? 0 : /^\d+(\.\d+)?$/.test(values.minutes) ? Number(values.minutes) : Number.NaN;
  if (!(minutes >= 0) || (values.minutes !== undefined && minutes === 0)) throw new UsageError(`--minutes must be a number above 0, got ${JSON.stringify(values.minutes)}`);
  if (values.only !== undefined && values.only !== "session" && values.only !== "api") throw new UsageError(`--only takes session or api, got ${JSON.stringify(values.only)}`);
  return {
    runs: whole(values.runs, "--runs", 100_000, 1),
    seed: whole(values.seed, "--seed", 20261129, Number.MIN_SAFE_INTEGER),
    batch: whole(values.batch, "--batch", 1000, 1),
    minutes,
    only: values.only,
  };
}

interface Outcome {
  name: string;
  iterations: number;
  batches: number;
  failures: { seed: number; report: string }[];
  ms: number;
}

/** Runs `batchRun(count, seed)` in batches until `runs` iterations or the time limit. */
function inBatches(name: string, options: Options, batchRun: (count: number, seed: number) => number): Outcome {
  const started = performance.now();
  const deadline = options.minutes > 0 ? started + options.minutes * 60_000 : Infinity;
  const outcome: Outcome = { name, iterations: 0, batches: 0, failures: [], ms: 0 };
  let lastPrint = started;
  while ((options.minutes > 0 || outcome.iterations < options.runs) && performance.now() < deadline) {
    const count = options.minutes > 0 ? options.batch : Math.min(options.batch, options.runs - outcome.iterations);
    const seed = (options.seed + outcome.batches * 7919) | 0;
    outcome.batches++;
    try {
      outcome.iterations += batchRun(count, seed);
    } catch (error) {
      outcome.iterations += count;
      const report = error instanceof Error ? error.message : String(error);
      outcome.failures.push({ seed, report });
      console.log(`${name}: FAILURE in the batch with seed ${seed}:\n${report.split("\n").slice(0, 12).join("\n")}`);
    }
    if (performance.now() - lastPrint > 5000) {
      lastPrint = performance.now();
      console.log(`${name}: ${outcome.iterations} iterations, ${((lastPrint - started) / 1000).toFixed(0)} s, ${outcome.failures.length} failures`);
    }
  }
  outcome.ms = performance.now() - started;
  return outcome;
}

// ------------------------------------------------------------------------------ the API fuzz

function snapshot(s: Session): string {
  const c = s.client;
  return JSON.stringify([c.stateName, c.queuedCount, c.inflightCount, c.subscriptionCount(), c.lastPacketId, c.stats, s.broker.received.length]);
}

const anything = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.constantFrom("a/b", "a/+", "#", "+/x", "a/#/b", "", "\u0000", "\ud800", "t".repeat(70_000), "$SYS/x", "a//b", "/"),
  fc.integer({ min: -3, max: 3 }),
  fc.double(),
  fc.boolean(),
  fc.constantFrom(null, undefined, {}, [], () => undefined, Number.NaN, Infinity),
  fc.uint8Array({ maxLength: 3000 }),
);

function runApiFuzz(count: number, seed: number): number {
  let runs = 0;
  fc.assert(
    fc.property(fc.boolean(), fc.array(fc.tuple(fc.constantFrom("publish", "subscribe", "unsubscribe"), anything, anything, anything, anything), { minLength: 1, maxLength: 12 }), (online, calls) => {
      runs++;
      const s = online ? connected({ queueEntries: 8, queueBytes: 2048 }) : session({ queueEntries: 8, queueBytes: 2048 });
      for (const [method, a, b, c, d] of calls) {
        const before = snapshot(s);
        try {
          if (method === "publish") s.client.publish(a as never, b as never, c as never, d as never);
          else if (method === "subscribe") s.client.subscribe(a as never, b as never, c as never, d as never);
          else s.client.unsubscribe(a as never, b as never);
        } catch (error) {
          if (!(error instanceof IoTLinkError) || (error.code !== "invalid-argument" && error.code !== "not-accepted")) {
            throw new Error(`${method} threw something other than an IoTLinkError: ${String(error)}`);
          }
          if (error.message.length < 8) throw new Error(`${method}: an unhelpful message: ${error.message}`);
          if (snapshot(s) !== before) throw new Error(`${method} threw (${error.message}) but changed the client: ${before} -> ${snapshot(s)}`);
        }
        s.clock.advance(50);
      }
      if (s.errors.some((error) => error.code === "callback-error")) throw new Error("an internal failure surfaced as a callback error");
    }),
    { seed, numRuns: count },
  );
  return runs;
}

// ------------------------------------------------------------------------------ main

function main(): void {
  const options = parseArguments(process.argv.slice(2));
  console.log(`fuzz: ${options.minutes > 0 ? options.minutes + " minutes per fuzzer" : options.runs + " iterations per fuzzer"}, seed ${options.seed}, batches of ${options.batch}`);
  const outcomes: Outcome[] = [];
  if (options.only === undefined || options.only === "session") outcomes.push(inBatches("session", options, runSessionFuzz));
  if (options.only === undefined || options.only === "api") outcomes.push(inBatches("api", options, runApiFuzz));
  console.log("");
  console.log("| fuzzer | iterations | batches | seconds | iterations/s | failures |");
  console.log("|---|---|---|---|---|---|");
  for (const o of outcomes) {
    console.log(`| ${o.name} | ${o.iterations} | ${o.batches} | ${(o.ms / 1000).toFixed(1)} | ${Math.round(o.iterations / (o.ms / 1000))} | ${o.failures.length}${o.failures.length ? " (seeds " + o.failures.map((f) => f.seed).join(", ") + ")" : ""} |`);
  }
  const failed = outcomes.reduce((sum, o) => sum + o.failures.length, 0);
  console.log(failed === 0 ? "fuzz: no failures" : `fuzz: ${failed} failing batches`);
  process.exitCode = failed === 0 ? 0 : 1;
}

void runCommand("fuzz", main);
