// The XS part of `npm run bench` (sections "xs" and "memory"), in its own process: @agoric/xsnap
// needs @endo/init, which freezes this process's built-ins. Bundles bench/xs-entry.ts (the core,
// test/support's scripted broker and virtual clock) into one IIFE with esbuild, evaluates it in an
// xsnap worker, and drives it one crank per step, reading xsnap's meterUsage after each:
//   compute           XS operations of that crank, identical run to run whatever the machine load
//   currentHeapCount  live slots at the end of the crank (after a gc() crank: what is retained)
// Prints one JSON object on stdout; progress goes to stderr.
//
//   node bench/xs-runner.mjs [--n 1000]
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bundleForXs, startXsnap } from "./xsnap-host.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const nArgument = process.argv.indexOf("--n");
const N = nArgument > 0 ? Number(process.argv[nArgument + 1]) : 1000;
const WARMUP = 200;

async function main() {
  const code = await bundleForXs(path.join(here, "xs-entry.ts"));
  const { worker, crank } = await startXsnap("iotlink-xs-bench");
  const step = (name, arg = 0) => crank({ op: "call", name, arg });
  const collect = () => crank({ op: "gc" });

  /**
   * Meters `name` with arg n against the same step with arg 0 (the crank's fixed cost), after a gc:
   * ops = compute difference / n; created = live slots grown during the step (no gc ran: checked
   * against the arena size) / n; retained = live slots after a gc, against before, / n.
   */
  const meter = async (name, n) => {
    await collect();
    const empty = await step(name, 0);
    const before = await collect();
    const run = await step(name, n);
    const after = await collect();
    return {
      n,
      ops: (run.compute - empty.compute) / n,
      createdSlots: (run.heap - before.heap - (empty.heap - before.heap)) / n,
      retainedSlots: after.heap - before.heap,
      value: run.value,
    };
  };

  const results = { n: N, warmup: WARMUP, scenarios: {}, peers: {}, memory: {} };
  try {
    await worker.evaluate("delete globalThis.setImmediate;");
    await worker.evaluate(code);
    const names = (await crank({ op: "list" })).value;
    for (const name of names) {
      process.stderr.write(`xs: ${name}\n`);
      await step(`${name}/setup`);
      await step(`${name}/run`, WARMUP);
      const metered = await meter(`${name}/run`, N);
      metered.check = (await step(`${name}/check`)).value;
      (name.startsWith("peer:") ? results.peers : results.scenarios)[name] = metered;
    }

    // Offline enqueue and drain: rounds of 50 (drop, enqueue 50, reconnect, drain the other 49).
    process.stderr.write("xs: offline enqueue + drain\n");
    await step("offline/setup");
    const ROUND = 50;
    const rounds = Math.max(1, Math.round(N / ROUND));
    const totals = { enqueue: { ops: 0, created: 0, retained: 0, n: 0 }, drain: { ops: 0, created: 0, retained: 0, n: 0 }, reconnect: { ops: 0, n: 0 } };
    const emptyEnqueue = await step("offline/enqueue", 0);
    const emptyDrain = await step("offline/drain", 0);
    for (let round = 0; round < rounds + 2; round++) {
      const measured = round >= 2; // two warm-up rounds
      await step("offline/drop");
      let before = await collect();
      const enqueue = await step("offline/enqueue", ROUND);
      let after = await collect();
      if (measured) {
        totals.enqueue.ops += enqueue.compute - emptyEnqueue.compute;
        totals.enqueue.created += enqueue.heap - before.heap - (emptyEnqueue.heap - before.heap);
        totals.enqueue.retained += after.heap - before.heap;
        totals.enqueue.n += ROUND;
      }
      const reconnect = await step("offline/reconnect");
      if (measured) {
        totals.reconnect.ops += reconnect.compute;
        totals.reconnect.n++;
      }
      before = await collect();
      const drain = await step("offline/drain", ROUND - 1);
      after = await collect();
      if (measured) {
        totals.drain.ops += drain.compute - emptyDrain.compute;
        totals.drain.created += drain.heap - before.heap - (emptyDrain.heap - before.heap);
        totals.drain.retained += after.heap - before.heap;
        totals.drain.n += ROUND - 1;
      }
    }
    const offlineCheck = (await step("offline/check")).value;
    results.scenarios["offline-enqueue"] = { n: totals.enqueue.n, ops: totals.enqueue.ops / totals.enqueue.n, createdSlots: totals.enqueue.created / totals.enqueue.n, retainedSlots: totals.enqueue.retained, check: offlineCheck };
    results.scenarios["offline-drain+puback"] = { n: totals.drain.n, ops: totals.drain.ops / totals.drain.n, createdSlots: totals.drain.created / totals.drain.n, retainedSlots: totals.drain.retained, check: offlineCheck };
    results.scenarios["reconnect (per round, scripted broker included)"] = { n: totals.reconnect.n, ops: totals.reconnect.ops / totals.reconnect.n };

    // ---------------------------------------------------------------- memory
    process.stderr.write("xs: memory\n");
    const footprint = {};
    for (const entries of [64, 0]) {
      await step("footprint:prepare");
      const before = await collect();
      const built = await step("footprint:construct", entries);
      const after = await collect();
      footprint[entries] = { slots: after.heap - before.heap, createdSlots: built.heap - before.heap, bytes: built.value };
      await step("footprint:release");
    }
    results.memory.footprint = footprint;

    const ringSlots = {};
    for (const entries of [0, 1000]) {
      await step("footprint:release");
      const before = await collect();
      const built = await step("ring:construct", entries);
      const after = await collect();
      ringSlots[entries] = { slots: after.heap - before.heap, bytes: built.value };
    }
    await step("footprint:release");
    results.memory.ring = ringSlots;
    results.memory.fill = { qos0: (await step("ring:fill", 0)).value, qos1: (await step("ring:fill", 1)).value };

    await step("outage:setup");
    const series = [];
    let at = await collect();
    series.push({ published: 0, heap: at.heap, allocate: at.allocate });
    for (let published = 1000; published <= 10000; published += 1000) {
      const out = await step("outage:publish", 1000);
      at = await collect();
      series.push({ published, heap: at.heap, allocate: at.allocate, ...out.value });
    }
    await step("outage:release");
    results.memory.outage = series;
  } finally {
    await worker.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((error) => {
  process.stderr.write(`xs bench failed: ${error.stack ?? error}\n`);
  process.exitCode = 1;
});
