// Runs the portable core suites (test/core) inside the real XS engine (npm @agoric/xsnap).
//
//   node test/xs/run.mjs                      every suite listed in test/core/index.ts
//   node test/xs/run.mjs path/a.suite.ts ...  only these suite files, instead of test/core/index.ts
//
// 1. esbuild bundles test/xs/entry.ts (which imports test/harness.ts and test/core/index.ts) into ONE
//    IIFE script: platform neutral, ES2022. Importing a Node built-in, or anything that does not
//    resolve, is a build error (esbuild would otherwise leave some of them for run time, where XS
//    fails or skips them silently). Every esbuild warning is fatal too.
// 2. An xsnap worker evaluates the script; then each step is one command into the XS-side
//    `handleCommand` (load the suites, then run test 0, 1, ...), one xsnap crank each, so every step
//    has its own compute meter reading and its own metering limit (XS_METER_LIMIT, default xsnap's
//    1e8 per crank: an endless loop stops with "too much computation" instead of hanging).
// 3. Node prints one line per test, the error and its stack (mapped back to the .ts sources) for a
//    failure, then `xs: N passed, N failed, N checks passed` and the run's XS compute.
// Exits 1 on any failed test, any exception while loading, a crashed worker, or zero tests.
//
// Its own process on purpose: @agoric/xsnap needs @endo/init, which freezes this process's
// built-ins (so it is imported only after the bundle is built).
import { builtinModules } from "node:module";
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const entry = path.join(here, "entry.ts");
const outfile = path.join(root, "build/xs/tests.js");
const shimDir = path.join(here, "shims");
const USAGE = `usage: npm run test:xs [-- path/a.suite.ts ...]

Runs the portable core suites (test/core) inside the real XS engine: every suite of
test/core/index.ts, or only the suite files given. Exit codes: 0 all passed, 1 a failure, 2 a bad argument.`;
if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(USAGE);
  process.exit(0);
}
for (const argument of process.argv.slice(2)) {
  // One line for a file that is not there (esbuild's own error is a screenful about the bundle).
  const problem = argument.startsWith("-") ? `unknown option ${argument}` : !fs.existsSync(argument) ? `no such suite file ${argument}` : undefined;
  if (problem) {
    console.error(`test:xs: ${problem} (see npm run test:xs -- --help)`);
    process.exit(2);
  }
}
const selectedSuites = process.argv.slice(2).map((file) => path.resolve(file));
const meteringLimit = process.env.XS_METER_LIMIT === undefined ? 1e8 : Number(process.env.XS_METER_LIMIT);

const nodeBuiltins = new Set(builtinModules);
const isNodeBuiltin = (specifier) =>
  specifier.startsWith("node:") || nodeBuiltins.has(specifier) || nodeBuiltins.has(specifier.split("/")[0]);

/** Rejects Node built-ins and anything unresolvable; maps Moddable module names to test/xs/shims. */
const portableOnly = {
  name: "portable-only",
  setup(build) {
    build.onResolve({ filter: /.*/ }, async (args) => {
      if (args.pluginData === "portable-only") return undefined;
      if (args.kind === "entry-point") return undefined;
      const where = path.relative(root, args.importer) || args.importer;
      if (isNodeBuiltin(args.path)) {
        return { errors: [{ text: `Node built-in "${args.path}" imported by ${where}: XS has no Node API` }] };
      }
      if (selectedSuites.length > 0 && args.path === "../core/index" && args.importer === entry) {
        return { path: "selected-suites", namespace: "xs-suites" };
      }
      const bare = !args.path.startsWith(".") && !path.isAbsolute(args.path);
      if (bare) {
        const shim = path.join(shimDir, args.path + ".ts");
        if (fs.existsSync(shim)) return { path: shim };
      }
      const resolved = await build.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: "portable-only",
      });
      if (resolved.errors.length > 0 || resolved.external || !resolved.path) {
        const why = resolved.errors.map((error) => error.text).join("; ") || "marked external";
        return { errors: [{ text: `Cannot resolve "${args.path}" imported by ${where}: ${why} (nothing may be left unbundled)` }] };
      }
      return resolved;
    });
    // fast-check reads setTimeout and clearTimeout when it loads (for its `timeout` and time-limit
    // options), and XS has neither: give that one module local stand-ins that fail if ever called.
    // Nothing else in the bundle sees them, so the core still finds no timers on XS.
    build.onLoad({ filter: /[\\/]node_modules[\\/]fast-check[\\/]lib[\\/](cjs[\\/])?fast-check\.js$/ }, async (args) => {
      const original = await fs.promises.readFile(args.path, "utf8");
      const standIn =
        'const setTimeout = () => { throw new Error("fast-check: timeouts and time limits need setTimeout, which XS does not have"); }; ' +
        "const clearTimeout = () => {}; "; // on the first line: the source map's line numbers stay right
      return { contents: standIn + original, loader: "js" };
    });
    build.onLoad({ filter: /.*/, namespace: "xs-suites" }, () => ({
      contents: selectedSuites.map((file) => `import ${JSON.stringify(file)};`).join("\n"),
      resolveDir: root,
      loader: "ts",
    }));
  },
};

async function bundle() {
  let result;
  try {
    result = await esbuild.build({
      entryPoints: [entry],
      bundle: true,
      format: "iife",
      platform: "neutral",
      target: "es2022",
      mainFields: ["module", "main"],
      nodePaths: [path.join(root, "node_modules")], // for suite files given from outside the repository
      outfile,
      write: false,
      sourcemap: "external",
      sourcesContent: false,
      charset: "utf8",
      logLevel: "silent",
      plugins: [portableOnly],
    });
  } catch (failure) {
    const messages = failure.errors ?? [];
    if (messages.length === 0) throw failure;
    for (const line of await esbuild.formatMessages(messages, { kind: "error", color: false })) process.stdout.write(line);
    return undefined;
  }
  if (result.warnings.length > 0) {
    for (const line of await esbuild.formatMessages(result.warnings, { kind: "warning", color: false })) process.stdout.write(line);
    console.log("xs: esbuild warnings are fatal for the XS bundle");
    return undefined;
  }
  fs.mkdirSync(path.dirname(outfile), { recursive: true });
  let code = "";
  let map;
  for (const file of result.outputFiles) {
    fs.writeFileSync(file.path, file.contents);
    if (file.path.endsWith(".map")) map = JSON.parse(file.text);
    else code = file.text;
  }
  return { code, map };
}

// Source-map lookup for XS stack frames. XS names a frame's place "(#N:LINE)": evaluated code has no
// file name, only a line in the evaluated string (here, the bundle). Map that line to the first
// source position esbuild recorded on it.
function lineMapper(map) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const digit = new Map([...alphabet].map((char, index) => [char, index]));
  const firstOnLine = [];
  let source = 0;
  let sourceLine = 0;
  for (const line of map.mappings.split(";")) {
    let first;
    for (const segment of line.split(",")) {
      if (segment === "") continue;
      const fields = [];
      let value = 0;
      let shift = 0;
      for (const char of segment) {
        const bits = digit.get(char);
        value += (bits & 31) << shift;
        if (bits & 32) shift += 5;
        else {
          fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      if (fields.length >= 4) {
        // [generated column, source index, source line, source column], each relative to the last
        source += fields[1];
        sourceLine += fields[2];
        if (first === undefined) first = [source, sourceLine];
      }
    }
    firstOnLine.push(first);
  }
  const dir = path.dirname(outfile);
  const names = map.sources.map((name) => path.relative(root, path.resolve(dir, name)));
  return (stack) =>
    stack.replace(/\(#\d+:(\d+)\)/g, (whole, line) => {
      const found = firstOnLine[Number(line) - 1];
      return found ? `(${names[found[0]]}:${found[1] + 1})` : whole;
    });
}

// A failure's stack, mapped to the sources, without the frames of the runner and of esbuild's helpers.
function stackLines(mapStack, error, stack) {
  return mapStack(stack.startsWith(error) ? stack.slice(error.length) : stack)
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && line !== "at ()" && !/\(#\d+:\d+\)|\(test\/xs\/|xs-suites:/.test(line))
    .map((line) => "    " + line)
    .join("\n");
}

// XS says "get Buffer: undefined variable" where Node says "Buffer is not defined": name the cause.
function explain(error) {
  const missing = /get (\w+): undefined variable/.exec(error);
  return missing ? `${error} (XS has no global "${missing[1]}": a Node or DOM API?)` : error;
}

function report(label, outcome, mapStack) {
  console.log(`FAIL ${label}: ${explain(outcome.error)}`);
  const lines = outcome.stack ? stackLines(mapStack, outcome.error, outcome.stack) : "";
  if (lines) console.log(lines);
}

async function main() {
  const started = performance.now();
  const built = await bundle();
  if (!built) {
    console.log("FAIL the XS bundle did not build (see the errors above)");
    console.log("xs: 0 passed, 1 failed, 0 checks passed");
    return 1;
  }
  const bundledAt = performance.now();
  const mapStack = lineMapper(built.map);

  const platform = { Linux: "lin", Darwin: "mac" }[os.type()];
  const workerBinary = path.join(root, `node_modules/@agoric/xsnap/xsnap-native/xsnap/build/bin/${platform}/release/xsnap-worker`);
  if (platform && !fs.existsSync(workerBinary)) {
    console.log(`FAIL the XS engine is not built (${path.relative(root, workerBinary)} is missing): its install script`);
    console.log('    did not run. package.json "allowScripts" must approve @agoric/xsnap, and make, gcc and g++ must be installed (Debian: build-essential); then `npm rebuild @agoric/xsnap`.');
    console.log("xs: 0 passed, 1 failed, 0 checks passed");
    return 1;
  }
  await import("@endo/init");
  const { xsnap } = await import("@agoric/xsnap");
  let workerErrors = ""; // the worker's stderr since the last step, also echoed to ours
  const spawnWatched = (...args) => {
    const child = spawn(...args);
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (text) => {
      workerErrors += text;
      process.stderr.write(text);
    });
    return child;
  };
  const worker = await xsnap({
    name: "iotlink-xs-tests",
    os: os.type(),
    spawn: spawnWatched,
    fs: { ...fs, ...fs.promises },
    stdout: "inherit",
    stderr: "pipe", // read below: it is where XS reports an unhandled rejection
    meteringLimit,
  });

  let compute = 0;
  let heap = 0;
  const meter = (usage) => {
    compute += usage.compute ?? 0;
    heap = usage.currentHeapCount ?? heap;
    return usage.compute ?? 0;
  };
  // xsnap reports an unhandled promise rejection only on its stderr ("Unhandled exception <reason>",
  // when there is no console to call), then carries on. Node's test runner fails on one, so this
  // run does too: the worker writes it before its reply, and one turn of Node's loop later it has
  // been read, so it is charged to the step that caused it.
  const command = async (message) => {
    const { reply, meterUsage } = await worker.issueStringCommand(JSON.stringify(message));
    const used = meter(meterUsage);
    await new Promise((resolve) => setImmediate(resolve));
    const unhandled = /^Unhandled exception (.*)$/m.exec(workerErrors);
    workerErrors = "";
    let outcome;
    if (reply === "") outcome = { ok: false, error: "never settled: its promise was still pending when XS had nothing left to run (no timers on XS)", stack: "" };
    else outcome = JSON.parse(reply);
    if (unhandled && outcome.ok) outcome = { ...outcome, ok: false, error: `unhandled promise rejection on XS: ${unhandled[1]}`, stack: "" };
    return { ...outcome, used };
  };

  let passed = 0;
  let failed = 0;
  let checks = 0;
  try {
    // xsnap adds setImmediate, a Node API that Moddable does not have: hide it from the core.
    meter((await worker.evaluate("delete globalThis.setImmediate;")).meterUsage);
    meter((await worker.evaluate(built.code)).meterUsage);
    const loaded = await command({ op: "load" });
    if (!loaded.ok) {
      report("loading the suites on XS", loaded, mapStack);
      failed++;
    } else {
      const names = loaded.names;
      for (let index = 0; index < names.length; index++) {
        let outcome;
        try {
          outcome = await command({ op: "run", index });
        } catch (crash) {
          console.log(`FAIL ${names[index]}: the XS worker died: ${crash.message}`);
          failed += names.length - index;
          if (index + 1 < names.length) console.log(`xs: ${names.length - index - 1} later tests not run`);
          break;
        }
        if (outcome.totalChecks !== undefined) checks = outcome.totalChecks;
        if (outcome.ok) {
          passed++;
          console.log(`ok   ${names[index]} (${outcome.checks} checks, ${outcome.used} XS compute)`);
        } else {
          failed++;
          report(names[index], outcome, mapStack);
        }
      }
      if (names.length === 0) {
        console.log("FAIL no tests registered: the suites loaded on XS but registered nothing");
        failed++;
      }
    }
  } catch (failure) {
    // evaluate() of the bundle itself threw, or the worker died outside a test.
    console.log(`FAIL the XS run stopped: ${explain(String(failure.message))}`);
    failed++;
  } finally {
    await worker.close().catch(() => {});
  }
  const finished = performance.now();

  console.log(`xs: ${passed} passed, ${failed} failed, ${checks} checks passed`);
  console.log(
    `xs compute: ${compute} XS operations for the whole run (xsnap meterUsage.compute, summed over its cranks; ` +
      `${heap} live heap slots at the end); bundle ${(bundledAt - started).toFixed(0)} ms, ` +
      `XS ${(finished - bundledAt).toFixed(0)} ms, ${(built.code.length / 1024).toFixed(1)} KB script`,
  );
  return failed > 0 || passed === 0 ? 1 : 0;
}

process.exitCode = await main();
