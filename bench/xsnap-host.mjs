// The Node side of running this project's code in the real XS engine (@agoric/xsnap), shared by the
// bench (bench/xs-runner.mjs) and the memory budget check (test/bench/footprint-xs.mjs): bundle an
// entry into one IIFE that XS can evaluate, start a worker, and drive it one crank per command.
// @agoric/xsnap needs @endo/init, which freezes this process's built-ins: call from a process of its own.
import { builtinModules } from "node:module";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const nodeBuiltins = new Set(builtinModules);

/** Anything Node-only is a build error: XS would fail on it at run time. */
const portableOnly = {
  name: "portable-only",
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.path.startsWith("node:") || nodeBuiltins.has(args.path.split("/")[0])) {
        return { errors: [{ text: `Node built-in "${args.path}" imported by ${args.importer}: XS has no Node API` }] };
      }
      return undefined;
    });
  },
};

/** `entry` bundled with its imports into one IIFE script; any esbuild warning is an error (an unresolved import would fail silently in XS). */
export async function bundleForXs(entry) {
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    format: "iife",
    platform: "neutral",
    target: "es2022",
    mainFields: ["module", "main"],
    write: false,
    logLevel: "silent",
    plugins: [portableOnly],
  });
  if (result.warnings.length > 0) throw new Error("esbuild warnings: " + JSON.stringify(result.warnings));
  return result.outputFiles[0].text;
}

/**
 * An xsnap worker and its `crank(command)`: the command goes to the script's handleCommand as JSON;
 * the result is its reply value, the XS operations of the crank (compute), the live slots when it
 * ended (heap) and the arena size (allocate).
 */
export async function startXsnap(name) {
  const platform = { Linux: "lin", Darwin: "mac" }[os.type()];
  const workerBinary = path.join(root, `node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/${platform}/release/xsnap-worker`);
  if (!fs.existsSync(workerBinary)) throw new Error(`the XS engine is not built (${workerBinary} missing): npm rebuild @agoric/xsnap`);
  await import("@endo/init");
  const { xsnap } = await import("@agoric/xsnap");
  const worker = await xsnap({ name, os: os.type(), spawn, fs: { ...fs, ...fs.promises }, stdout: "inherit", stderr: "inherit", meteringLimit: 1e9 });
  const crank = async (command) => {
    const { reply, meterUsage } = await worker.issueStringCommand(JSON.stringify(command));
    const parsed = JSON.parse(reply);
    if (!parsed.ok) throw new Error(`XS step ${command.name ?? command.op} failed: ${parsed.error}`);
    return { value: parsed.value, compute: meterUsage.compute, heap: meterUsage.currentHeapCount, allocate: meterUsage.allocate };
  };
  return { worker, crank };
}
