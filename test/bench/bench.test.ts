// `npm run bench`, run small, so that it cannot rot unnoticed: every section runs here on the real
// XS engine, esbuild and Mosquitto, and the checks the bench makes of its own runs hold (the
// scenarios did what was measured, the broker counted every publish). No figure is asserted: the
// bench passes or fails nothing, and its figures are in BENCHMARKS.md.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { promisify } from "node:util";
import type { RecoveryResult } from "../../bench/recovery.ts";
import type { CpuComparison, XsResults } from "../../bench/run.ts";
import { BREAKDOWN_FUNCTIONS, type BytecodeResult, runSize, type SizeRow, sourcesOf, undefinedFunctions } from "../../bench/size.ts";
import type { ThroughputRow } from "../../bench/throughput.ts";

const root = join(import.meta.dirname, "..", "..");
const run = promisify(execFile);

/** The bench's --json output (bench/run.ts writes it), as far as these tests read it. */
interface BenchJson {
  xs: XsResults;
  size: SizeRow[];
  bytecode: BytecodeResult;
  throughput: ThroughputRow[];
  throughputCpuComparison: CpuComparison[];
  recovery: RecoveryResult;
}

interface BenchRun {
  stdout: string;
  json: BenchJson;
}

async function bench(args: string[], env: NodeJS.ProcessEnv): Promise<BenchRun> {
  const directory = mkdtempSync(join(tmpdir(), "iotlink-bench-test-"));
  try {
    const jsonFile = join(directory, "bench.json");
    const { stdout } = await run(process.execPath, ["--import", "tsx", "bench/run.ts", ...args, "--json", jsonFile], { cwd: root, env, maxBuffer: 1 << 24, timeout: 600_000 });
    return { stdout, json: JSON.parse(readFileSync(jsonFile, "utf8")) as BenchJson };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const positive = (value: unknown): boolean => typeof value === "number" && Number.isFinite(value) && value > 0;

describe("npm run bench", () => {
  test("XS cost, memory and size: every operation measured on XS and checked; bytecode says why it was not measured without an SDK", async () => {
    const { MODDABLE: _sdk, ...withoutSdk } = process.env;
    const { stdout, json } = await bench(["--only", "xs,memory,size"], withoutSdk);
    for (const heading of ["### 1. XS cost per message", "### 2. Memory", "### 5. Size", "### 5b"]) assert.ok(stdout.includes(heading), `missing ${heading}`);
    assert.match(stdout, /### 5b\.[^\n]*\n\nNot measured: set MODDABLE[^\n]*\(sections 5b and 5c\)/);
    assert.ok("skipped" in json.bytecode, "no bytecode measured without the SDK");
    assert.match(json.bytecode.skipped, /MODDABLE/);

    const operations = ["publish-qos0", "publish-qos1+puback", "inbound-qos0", "inbound-qos1+puback", "keepalive-tick", "offline-enqueue", "offline-drain+puback"];
    for (const name of operations) {
      const metered = json.xs.scenarios[name];
      assert.ok(metered, `no XS figures for ${name}`);
      assert.ok(positive(metered.ops), `${name}: XS operations ${metered.ops}`);
      const retained = metered.retainedSlots;
      assert.ok(retained !== undefined && Number.isInteger(retained) && retained >= 0, `${name}: retained slots ${retained}`);
      assert.ok(positive(metered.n), `${name}: ${metered.n} messages`);
    }
    for (const [name, metered] of Object.entries(json.xs.scenarios)) {
      // A scenario's check throws inside XS when the client did not do what was measured.
      if (metered.check !== undefined) assert.equal(typeof metered.check, "string", name);
    }
    assert.ok(json.xs.memory.outage.length >= 2, "the outage is sampled along the way");
    for (const sample of json.xs.memory.outage) assert.ok(positive(sample.heap), `outage heap ${sample.heap}`);
    assert.ok(positive(json.xs.memory.footprint["64"]?.slots));

    assert.deepEqual(json.size.map((row) => row.entry), ["modules/client.ts", "modules/awsiot.ts", "main.ts"]);
    for (const row of json.size) {
      assert.ok(positive(row.bytes) && positive(row.gzipBytes), row.entry);
      assert.ok(row.gzipBytes < row.bytes, row.entry);
    }
    const core = json.size[0]!;
    assert.ok("modules/client.ts" in core.inputs);
    assert.ok(!Object.keys(core.inputs).some((input) => input.startsWith("hosts/")), "the core bundle holds no host code");
  });

  test("section 5c names only functions the core has (it needs the SDK to run, so this keeps its lists current)", async () => {
    const core = (await runSize()).find((row) => row.entry === "modules/client.ts");
    assert.ok(core);
    const files = sourcesOf(core);
    assert.deepEqual(undefinedFunctions(files, BREAKDOWN_FUNCTIONS), []);
    // The check can fail: a name the core does not have is reported.
    assert.deepEqual(undefinedFunctions(files, ["client.MqttClient.publish", "client.MqttClient.noSuchMethod", "ring.noSuchFunction"]), ["client.MqttClient.noSuchMethod", "ring.noSuchFunction"]);
  });

  test("throughput and recovery against Mosquitto: every variant runs and the broker counts every publish", async () => {
    const messages = 400;
    const { stdout, json } = await bench(
      ["--only", "throughput,recovery", "--runs", "1", "--messages", String(messages), "--warmup", "50", "--profile-messages", String(messages), "--no-slow-drain"],
      process.env,
    );
    for (const heading of ["### 3. Throughput", "### 4. Recovery"]) assert.ok(stdout.includes(heading), `missing ${heading}`);
    assert.ok(!stdout.includes("not measured"), "Mosquitto must be installed: the bench measured nothing against it");

    const rows = json.throughput;
    assert.equal(rows.length, 12, "6 variants over TLS and over plain TCP");
    for (const transport of ["TLS", "TCP"]) {
      const clients = rows.filter((row) => row.transport === transport).map((row) => `${row.qos} ${row.client}`);
      assert.deepEqual(clients, ["0 IoTLink", "0 MQTT.js", "1 IoTLink (window 10)", "1 MQTT.js (window 10, by the driver)", "1 MQTT.js (no window, its default)", "1 IoTLink (window 50)"]);
    }
    for (const row of rows) {
      const name = `${row.transport} QoS ${row.qos} ${row.client}`;
      assert.equal(row.verified, `all ${messages} x 1 counted by the broker`, name);
      assert.ok(positive(row.median.messagesPerSecond) && positive(row.median.cpuSeconds), name);
      assert.ok(row.profile, `${name}: the profiled run failed`);
      assert.deepEqual(row.profile.problems, [], name);
    }
    assert.equal(json.throughputCpuComparison.length, 8, "four pairs per transport");

    const recovery = json.recovery;
    assert.equal(recovery.restarts.length, 3);
    for (const restart of recovery.restarts) assert.ok(positive(restart.totalMs) && positive(restart.handshakeMs), JSON.stringify(restart));
    assert.deepEqual(recovery.drains.map((drain) => [drain.drainIntervalMs, drain.acknowledged]), [[0, 100]], "--no-slow-drain leaves the drain at 0 ms, every queued message acknowledged");
  });
});
