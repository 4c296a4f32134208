// The demo's stop (`npm start -- --run-for S`, the app's runForMs): what was sent is acknowledged
// before the app disconnects, and the stop does not print the status tick that has just run again.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ensureDevPki } from "../../tools/certs.ts";
import { runScript } from "./command-line.ts";

let scratch = "";
let pki = "";

before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-app-stop-"));
  pki = ensureDevPki({ directory: join(scratch, "certs") }).directory;
});

after(() => rmSync(scratch, { recursive: true, force: true }));

function lines(output: string, event: string): string[] {
  return output.split("\n").filter((line) => line.startsWith("iotlink " + event + " "));
}

test("--run-for 5: the last telemetry is acknowledged before the stop (done says sent = acked)", { timeout: 40_000 }, async () => {
  const result = await runScript("start", ["--run-for", "5", "--quiet", "--port", "0", "--certs", pki], { timeoutMs: 30_000 });
  assert.equal(result.code, 0, result.stderr);
  const [done] = lines(result.stdout, "done");
  const match = /sent=(\d+) acked=(\d+) queue=0/.exec(done ?? "");
  assert.ok(match, "a done line: " + result.stdout);
  assert.ok(Number(match[1]) >= 2, done);
  assert.equal(match[2], match[1], done);
});

test("--run-for 10 with the status every 10 s: one status line at the stop, not two", { timeout: 40_000 }, async () => {
  const result = await runScript("start", ["--run-for", "10", "--quiet", "--port", "0", "--certs", pki], { timeoutMs: 30_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(lines(result.stdout, "status").length, 1, lines(result.stdout, "status").join("\n"));
});
