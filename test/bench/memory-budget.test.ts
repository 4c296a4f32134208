// The device app's memory budget, checked without the Moddable SDK. The app runs in fixed XS arenas
// (manifest.json's creation: 32,768 B of chunks, 2,048 slots); in the simulator, with its default
// settings, it keeps 23.6 KB of chunks and 953 slots, and the TLS handshake needs about 7 KB of chunks
// free on top (BENCHMARKS.md, "Device memory"; measured by `MODDABLE=<sdk> npm run device-memory`,
// which CI cannot run). The client's share is fixed at construction, so it is measured here on the
// real XS engine (xsnap): the live slots a new MqttClient adds, the ArrayBuffer bytes it holds and
// its plain-Array items (a chunk slot each), with the app's default settings and with the client's
// own. A change that makes the client keep more fails here, before it fails a handshake on a device.
// The same holds for the Shadow and Jobs layers the app builds over the client (app/remote-settings.ts):
// what they add on top of it is measured and budgeted the same way, strings included.
// Budgets are the figures measured when the budget was set plus about 10 % headroom; raising one
// means measuring the device again (npm run device-memory) and updating BENCHMARKS.md.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";

const root = join(import.meta.dirname, "..", "..");
const run = promisify(execFile);

interface Footprint {
  slots: number;
  arrayBufferBytes: number;
  arrayItems: number;
  stringBytes: number;
}

interface Measured extends Footprint {
  options: Record<string, number | boolean>;
  /** What the device app's Shadow and Jobs layers added, when the options asked for them ("layers": true). */
  layers?: Footprint;
}

/** The app's default client settings: manifest.json's config, with main.ts's rules for the empty ones. */
function appDefaults(): Record<string, number> {
  const config = (JSON.parse(readFileSync(join(root, "manifest.json"), "utf8")) as { config: Record<string, unknown> }).config;
  const main = readFileSync(join(root, "main.ts"), "utf8");
  const number = (name: string): number => {
    const value = config[name];
    assert.equal(typeof value, "number", `manifest.json config.${name} is a number`);
    return value as number;
  };
  // Empty in the manifest: main.ts fills them in. If these lines change, so does the budget.
  assert.equal(config.queueBytes, "", "manifest.json leaves queueBytes to main.ts");
  assert.equal(config.inflightBytes, "", "manifest.json leaves inflightBytes to main.ts");
  const queueBytes = /whole\("queueBytes", queueEntries === 0 \? 0 : (\d+),/.exec(main);
  assert.ok(queueBytes, "main.ts's default queueBytes (update this test with the budget)");
  assert.match(main, /whole\("inflightBytes", maxPacketBytes,/, "main.ts's default inflightBytes is maxPacketBytes (update this test with the budget)");
  const maxPacketBytes = number("maxPacketBytes");
  return {
    maxPacketBytes,
    inflightBytes: maxPacketBytes,
    inflightWindow: number("inflightWindow"),
    queueEntries: number("queueEntries"),
    queueBytes: Number(queueBytes[1]),
  };
}

async function measure(configurations: Record<string, number | boolean>[]): Promise<Measured[]> {
  const { stdout } = await run(process.execPath, [join(root, "test/bench/footprint-xs.mjs"), JSON.stringify(configurations)], { cwd: root, timeout: 120_000 });
  return JSON.parse(stdout) as Measured[];
}

test("the client's fixed footprint on XS stays within the device app's memory budget", { timeout: 150_000 }, async () => {
  const app = appDefaults();
  // The settings the device budget was measured with (npm run device-memory, BENCHMARKS.md).
  assert.deepEqual(app, { maxPacketBytes: 1024, inflightBytes: 1024, inflightWindow: 10, queueEntries: 32, queueBytes: 2048 }, "the app's defaults changed: measure the device again and set the budget below");
  const [withAppDefaults, withClientDefaults] = await measure([app, {}]);
  assert.ok(withAppDefaults && withClientDefaults);

  // Measured: 410 slots, 6,526 B (tx 1,024, decoder 1,150, queue 2,048 + 32 x 16, in flight 1,024 +
  // 10 x 16, the rest the subscription tables and the event records), 174 array items.
  assert.ok(withAppDefaults.slots <= 460, `app defaults: ${withAppDefaults.slots} live slots, budget 460`);
  assert.ok(withAppDefaults.arrayBufferBytes <= 7168, `app defaults: ${withAppDefaults.arrayBufferBytes} ArrayBuffer bytes, budget 7,168`);
  assert.ok(withAppDefaults.arrayItems <= 192, `app defaults: ${withAppDefaults.arrayItems} array items, budget 192`);
  // Measured: 410 slots, 18,302 B (2,048 B packets, 4,096 B in flight, a queue of 8,192 B and 64 entries), 206 items.
  assert.ok(withClientDefaults.slots <= 460, `client defaults: ${withClientDefaults.slots} live slots, budget 460`);
  assert.ok(withClientDefaults.arrayBufferBytes <= 19_456, `client defaults: ${withClientDefaults.arrayBufferBytes} ArrayBuffer bytes, budget 19,456`);
  assert.ok(withClientDefaults.arrayItems <= 224, `client defaults: ${withClientDefaults.arrayItems} array items, budget 224`);

  // The options reach the buffers: the app's settings keep 11 KB less than the client's own.
  assert.ok(withClientDefaults.arrayBufferBytes - withAppDefaults.arrayBufferBytes >= 11_000);
  assert.ok(withAppDefaults.slots > 0 && withAppDefaults.arrayItems > 0);
});

test("the device app's Shadow and Jobs layers keep a fixed footprint on XS within the memory budget", { timeout: 150_000 }, async () => {
  // The layers as the app makes them (test/bench/footprint-entry.ts's "layers" step builds the same):
  // if these lines change, so must that step and this budget.
  const settings = readFileSync(join(root, "app/remote-settings.ts"), "utf8");
  const main = readFileSync(join(root, "main.ts"), "utf8");
  const sameAsMeasured = (source: string, pattern: RegExp, what: string): void => assert.ok(pattern.test(source), what + " changed (update footprint-entry.ts's layers step and this budget)");
  sameAsMeasured(settings, /new ShadowClient\(client, \{ maxShadows: 1, maxPending: 4, timeoutMs, maxDocumentBytes: 512 \}\)/, "app/remote-settings.ts's ShadowClient options");
  sameAsMeasured(settings, /this\.shadow = shadows\.shadow\(thingName\);\s+this\.shadow\.onDelta\(/, "app/remote-settings.ts's one classic shadow with a delta handler");
  sameAsMeasured(settings, /new JobsClient\(client, thingName, \{ maxPending: 4, maxListeners: 0, timeoutMs \}\)/, "app/remote-settings.ts's JobsClient options");
  sameAsMeasured(settings, /new JobRunner\(jobs, [^\n]*\{ onEvent: /, "app/remote-settings.ts's JobRunner (with an onEvent)");
  sameAsMeasured(main, /\bmaxSubscriptions: 16,/, "main.ts's maxSubscriptions (16: the layers' subscriptions take some)");
  const [measured] = await measure([{ ...appDefaults(), maxSubscriptions: 16, layers: true }]);
  assert.ok(measured && measured.layers, "the layers were measured");
  const layers = measured.layers;

  // Measured: 289 slots (ShadowClient 110, its shadow 6, the delta subscription 9 in the client,
  // JobsClient 96, JobRunner 68 with the app's onEvent closure), 1,125 ArrayBuffer bytes (the
  // shadow's 512-byte document buffer, each layer's tables, Jobs' token buffer), 72 array items,
  // 939 bytes of strings (the topics). Before the tables were merged and the per-slot closures
  // went: 800 slots, and the device's TLS handshake no longer fitted.
  assert.ok(layers.slots <= 320, `layers: ${layers.slots} live slots, budget 320`);
  assert.ok(layers.arrayBufferBytes <= 1240, `layers: ${layers.arrayBufferBytes} ArrayBuffer bytes, budget 1,240`);
  assert.ok(layers.arrayItems <= 80, `layers: ${layers.arrayItems} array items, budget 80`);
  assert.ok(layers.stringBytes <= 1040, `layers: ${layers.stringBytes} string bytes, budget 1,040`);
  assert.ok(layers.slots > 0 && layers.arrayBufferBytes > 512 && layers.stringBytes > 0, "the layers were built");
});
