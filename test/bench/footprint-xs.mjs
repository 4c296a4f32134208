// The Node side of test/bench/memory-budget.test.ts, in a process of its own (@agoric/xsnap needs
// @endo/init, which freezes this process's built-ins). Bundles test/bench/footprint-entry.ts with
// esbuild, evaluates it in an xsnap worker, and for each set of client options given as JSON on the
// command line constructs one MqttClient between two collections; with "layers": true, it then makes
// the device app's Shadow and Jobs layers over that client, between two more. Prints one JSON array:
//   [{ options, slots, arrayBufferBytes, arrayItems, stringBytes, layers?: { slots, arrayBufferBytes, arrayItems, stringBytes } }, ...]
// slots: live slots the client (the layers) added (currentHeapCount after a gc(), against before).
//
//   node test/bench/footprint-xs.mjs '[{}, {"maxPacketBytes": 1024}]'
//   node test/bench/footprint-xs.mjs '[{"maxPacketBytes": 1024, "layers": true}]'
import path from "node:path";
import { fileURLToPath } from "node:url";
import { bundleForXs, startXsnap } from "../../bench/xsnap-host.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));

async function main() {
  const configurations = JSON.parse(process.argv[2] ?? "[{}]");
  const code = await bundleForXs(path.join(here, "footprint-entry.ts"));
  const { worker, crank } = await startXsnap("iotlink-memory-budget");
  const results = [];
  try {
    await worker.evaluate("delete globalThis.setImmediate;");
    await worker.evaluate(code);
    for (const options of configurations) {
      await crank({ op: "release" });
      await crank({ op: "prepare" });
      const before = await crank({ op: "gc" });
      const made = await crank({ op: "construct", options });
      const after = await crank({ op: "gc" });
      const result = { options, slots: after.heap - before.heap, ...made.value };
      if (options.layers) {
        const layers = await crank({ op: "layers" });
        const withLayers = await crank({ op: "gc" });
        result.layers = { slots: withLayers.heap - after.heap, ...layers.value };
      }
      results.push(result);
    }
  } finally {
    await worker.close().catch(() => {});
  }
  process.stdout.write(JSON.stringify(results) + "\n");
}

main().catch((error) => {
  process.stderr.write(`footprint-xs failed: ${error.stack ?? error}\n`);
  process.exitCode = 1;
});
