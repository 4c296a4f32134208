// The Node side of test/bench/memory-budget.test.ts, in a process of its own (@agoric/xsnap needs
// @endo/init, which freezes this process's built-ins). Bundles test/bench/footprint-entry.ts with
// esbuild, evaluates it in an xsnap worker, and for each set of client options given as JSON on the
// command line constructs one MqttClient between two collections. Prints one JSON array:
//   [{ options, slots, arrayBufferBytes, arrayItems }, ...]
// slots: live slots the client added (currentHeapCount after a gc(), against before it was made).
//
//   node test/bench/footprint-xs.mjs '[{}, {"maxPacketBytes": 1024}]'
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");

async function main() {
  const configurations = JSON.parse(process.argv[2] ?? "[{}]");
  const built = await esbuild.build({
    entryPoints: [path.join(here, "footprint-entry.ts")],
    bundle: true,
    format: "iife",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    write: false,
    logLevel: "silent",
  });
  const platform = { Linux: "lin", Darwin: "mac" }[os.type()];
  const workerBinary = path.join(root, `node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/${platform}/release/xsnap-worker`);
  if (!fs.existsSync(workerBinary)) throw new Error(`the XS engine is not built (${workerBinary} missing): npm rebuild @agoric/xsnap`);
  await import("@endo/init");
  const { xsnap } = await import("@agoric/xsnap");
  const worker = await xsnap({ name: "iotlink-memory-budget", os: os.type(), spawn, fs: { ...fs, ...fs.promises }, stdout: "inherit", stderr: "inherit", meteringLimit: 1e9 });
  const crank = async (command) => {
    const { reply, meterUsage } = await worker.issueStringCommand(JSON.stringify(command));
    const parsed = JSON.parse(reply);
    if (!parsed.ok) throw new Error(`XS step ${command.op} failed: ${parsed.error}`);
    return { value: parsed.value, heap: meterUsage.currentHeapCount };
  };
  const results = [];
  try {
    await worker.evaluate("delete globalThis.setImmediate;");
    await worker.evaluate(built.outputFiles[0].text);
    for (const options of configurations) {
      await crank({ op: "release" });
      await crank({ op: "prepare" });
      const before = await crank({ op: "gc" });
      const made = await crank({ op: "construct", options });
      const after = await crank({ op: "gc" });
      results.push({ options, slots: after.heap - before.heap, ...made.value });
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
