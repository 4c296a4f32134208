// Long runs say where they are, on stderr, as they go: `npm run bench` names each section (which
// of how many, the time so far), and the reliability suite each scenario as it starts.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { findMosquitto } from "../../tools/mosquitto.ts";
import { ROOT, runScript } from "./command-line.ts";

test("npm run bench: one progress line per section on stderr, the tables alone on stdout", { timeout: 60_000 }, async () => {
  const result = await runScript("bench", ["--only", "size"], { timeoutMs: 50_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.errorLines[0] ?? "", /^bench: section 1\/1, size \(esbuild, and XS bytecode with \$MODDABLE\) \(\d+ s so far\)$/);
  assert.doesNotMatch(result.stdout, /^bench: section/m);
});

test("the reliability suite names each scenario as it starts, before its result", { timeout: 60_000, skip: findMosquitto() ? false : "Mosquitto is not installed" }, async () => {
  // As `npm run test:reliability` runs it; NODE_TEST_CONTEXT would make it a subtest of this file's run.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ["--import", "tsx", "--test", "--test-reporter=spec", "test/reliability/drop-policy.test.ts"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  // Both streams in the order they came.
  const seen: string[] = [];
  child.stdout.on("data", (chunk: Buffer) => seen.push(...chunk.toString().split("\n").filter(Boolean)));
  child.stderr.on("data", (chunk: Buffer) => seen.push(...chunk.toString().split("\n").filter(Boolean)));
  const code = await new Promise((exited) => child.on("close", exited));
  assert.equal(code, 0, seen.join("\n"));
  const started = seen.findIndex((line) => /^\[reliability\] drop-policy: scenario 1: outage overflowing a queue of 10 with DROP_OLDEST.* \(\d+ s\)$/.test(line));
  const passed = seen.findIndex((line) => /✔ outage overflowing a queue of 10 with DROP_OLDEST/.test(line));
  assert.ok(started >= 0, "scenario 1 announced: " + seen.join("\n"));
  assert.ok(started < passed, "announced before its result");
  assert.ok(seen.some((line) => line.startsWith("[reliability] drop-policy: scenario 2: outage overflowing a queue of 10 with DROP_NEWEST")));
});
