// A small fleet through a broker restart, as CI runs it: `npm run fleet -- --devices 50 --quick`
// (50 real clients over the desktop host, mutual TLS, QoS 1 telemetry every second, Mosquitto
// stopped for 1 s, once with jitter off and once with full jitter). Every device must come back and
// every accepted message must reach the subscriber. No figure is asserted: the storm's shape
// depends on the machine.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { FleetResult } from "../../tools/fleet.ts";
import { announceScenarios, progress } from "./progress.ts";

announceScenarios(import.meta.filename);

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DEVICES = 50;

test(`npm run fleet -- --devices ${DEVICES} --quick: every device comes back after a broker restart, nothing accepted is lost`, { timeout: 150_000 }, async () => {
  const directory = mkdtempSync(join(tmpdir(), "iotlink-fleet-test-"));
  try {
    const json = join(directory, "fleet.json");
    const svg = join(directory, "fleet.svg");
    const child = spawn(process.execPath, ["--import", "tsx", "tools/fleet.ts", "--devices", String(DEVICES), "--quick", "--json", json, "--svg", svg], {
      cwd: ROOT,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (text: string) => (stdout += text));
    child.stderr.setEncoding("utf8").on("data", (text: string) => {
      stderr += text;
      for (const line of text.split("\n")) if (line.startsWith("[fleet] run")) progress(line.slice(8));
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), 140_000);
    const code = await new Promise<number | null>((done) => child.once("exit", (exitCode) => done(exitCode)));
    clearTimeout(timer);
    assert.equal(code, 0, `npm run fleet failed (exit ${code}):\n${stdout}\n${stderr.slice(-3000)}`);

    const result = JSON.parse(readFileSync(json, "utf8")) as FleetResult;
    assert.equal(result.ok, true, result.problems.join("\n"));
    assert.deepEqual(result.storms.map((storm) => storm.schedule), ["plain", "jitter"]);
    for (const storm of result.storms) {
      const name = storm.case + " / " + storm.schedule;
      assert.equal(storm.devices, DEVICES, name);
      assert.equal(storm.wentOffline, DEVICES, name + ": every device saw the restart");
      assert.equal(storm.cameBack, DEVICES, name + ": every device was restored");
      assert.ok(storm.accepted > 0, name + ": telemetry was accepted");
      assert.equal(storm.lost, 0, name + ": lost " + storm.lostSample.join(", "));
      assert.equal(storm.delivered, storm.accepted, name);
      assert.ok(storm.attempts >= DEVICES, name + ": every device's attempts reached the gate");
    }
    assert.match(stdout, /\| Broker restart \| IoTLink, jitter off \|/);
    assert.match(readFileSync(svg, "utf8"), /^<svg [^>]*>[\s\S]*<polyline[\s\S]*<\/svg>\n$/);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
});
