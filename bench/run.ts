// `npm run bench` (node --import tsx bench/run.ts): IoTLink's figures, never pass/fail. Prints the
// machine, then one Markdown table per section:
//   xs          XS operations and slots per message in the real XS engine (deterministic)
//   memory      fixed footprint, queue overhead per entry, memory across a long outage (XS)
//   throughput  IoTLink vs MQTT.js 5 against one Mosquitto, mutual TLS and plain TCP, 20,000 x 64 B;
//               then one profiled run per client splits its CPU (client JS, Node, native, GC)
//   recovery    broker restart to `restored`; drain time of 100 queued messages
//   size        minified and gzip sizes of the core and the app; with $MODDABLE set to a built
//               Moddable SDK, also XS bytecode sizes against Moddable's own MQTT modules
//
//   npm run bench -- --only xs,memory     only these sections
//   npm run bench -- --runs 3             throughput runs per figure (default 5, interleaved; medians reported)
//   npm run bench -- --messages 20000     messages per throughput run (default 20000)
//   npm run bench -- --warmup 2000        messages each throughput run sends before it measures (default 2000)
//   npm run bench -- --window 10          IoTLink's in-flight window, also kept by the MQTT.js driver
//   npm run bench -- --wide-window 50     IoTLink's second, wide window (100 matches MQTT.js's unwindowed rate: BENCHMARKS.md)
//   npm run bench -- --profile-messages N messages of the one profiled run per client (default 100000)
//   npm run bench -- --no-slow-drain      skip the 2 Hz drain (it takes ~50 s by design)
//   npm run bench -- --json out.json      also write every figure as JSON
import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, platform, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { ensureDevPki } from "../tools/certs.ts";
import { exitWithProblem, helpIfAsked, readCommandLine, UsageError } from "../tools/cli.ts";
import { loadDesktopHost } from "../tools/desktop-build.ts";
import { ensureMosquitto, findMosquitto, startMosquitto, type RunningMosquitto } from "../tools/mosquitto.ts";
import { runRecovery, type RecoveryResult } from "./recovery.ts";
import { type BytecodeResult, runBytecode, runSize, type SizeRow } from "./size.ts";
import { printWebSocketThroughput, runThroughput, runWebSocketThroughput, type ThroughputRow } from "./throughput.ts";
import type { CpuCategory } from "./throughput-child.ts";

const SECTIONS = ["xs", "memory", "throughput", "recovery", "size"] as const;
type Section = (typeof SECTIONS)[number];

/**
 * Moddable's MQTT stack, minified with the same esbuild settings as section 5 (measured once from
 * Moddable-OpenSource/moddable at 48ee02d, 2026-06; it is not on this machine): the ECMA-419 client
 * examples/io/tcp/mqttclient/mqttclient.js (9,045 B) plus its reconnecting "mqtt/js" wrapper
 * examples/io/tcp/mqtt/mqtt.js (7,752 B) = 16,797 B, the "about 16.9 KB" of issue 4; and the legacy
 * QoS 0 module modules/network/mqtt/mqtt.js (8,968 B).
 */
const MODDABLE_MQTT_MINIFIED_BYTES = 16797;
const MODDABLE_LEGACY_MQTT_MINIFIED_BYTES = 8968;
/** XS slot size on the ESP32 (32-bit pointers); xsnap on x86-64 uses 32-byte slots. */
const DEVICE_SLOT_BYTES = 16;

// A bad flag is one line and exit code 2 (tools/cli.ts), not a stack trace.
const BENCH_USAGE = "usage: npm run bench -- [--only xs,memory,throughput,recovery,size] [--runs 5] [--messages 20000] [--warmup 2000] [--window 10] [--wide-window 50] [--profile-messages 100000] [--no-slow-drain] [--json out.json]";
let flags: ReturnType<typeof readBenchFlags>;
function readBenchFlags() {
  const values = readCommandLine({
    only: { type: "string" },
    runs: { type: "string" },
    messages: { type: "string" },
    warmup: { type: "string" },
    window: { type: "string" },
    "wide-window": { type: "string" },
    "profile-messages": { type: "string" },
    "no-slow-drain": { type: "boolean" },
    json: { type: "string" },
  });
  helpIfAsked(values, BENCH_USAGE);
  return {
    ...values,
    runs: values.runs ?? "5",
    messages: values.messages ?? "20000",
    warmup: values.warmup ?? "2000",
    window: values.window ?? "10",
    "wide-window": values["wide-window"] ?? "50",
    "profile-messages": values["profile-messages"] ?? "100000",
    "no-slow-drain": values["no-slow-drain"] ?? false,
  };
}
try {
  flags = readBenchFlags();
  for (const name of (flags.only ?? SECTIONS.join(",")).split(",").map((name) => name.trim())) {
    if (!SECTIONS.includes(name as Section)) throw new UsageError(`--only: unknown section ${JSON.stringify(name)}; the sections are ${SECTIONS.join(", ")}`);
  }
  for (const name of ["runs", "messages", "warmup", "window", "wide-window", "profile-messages"] as const) {
    if (!/^\d+$/.test(flags[name]) || Number(flags[name]) < 1) throw new UsageError(`--${name} must be a whole number of at least 1, got ${JSON.stringify(flags[name])}`);
  }
} catch (error) {
  exitWithProblem("bench", error);
}
const only = new Set<Section>((flags.only ?? SECTIONS.join(",")).split(",").map((name) => name.trim()) as Section[]);
const runs = Number(flags.runs);
const messages = Number(flags.messages);
const warmup = Number(flags.warmup);
const window = Number(flags.window);
const wideWindow = Number(flags["wide-window"]);
const profileMessages = Number(flags["profile-messages"]);

const out = (text = ""): void => void process.stdout.write(text + "\n");
const log = (text: string): void => void process.stderr.write(text + "\n");
const benchStarted = performance.now();
let sectionsStarted = 0;
/** Progress on stderr: which section of how many, and the time so far. */
const section = (name: string): void => log(`bench: section ${++sectionsStarted}/${only.size}, ${name} (${((performance.now() - benchStarted) / 1000).toFixed(0)} s so far)`);

function table(headers: string[], rows: (string | number)[][]): void {
  const cells = [headers, ...rows.map((row) => row.map(String))];
  const widths = headers.map((_, column) => Math.max(...cells.map((row) => (row[column] ?? "").length)));
  const line = (row: string[]): string => "| " + row.map((cell, column) => cell.padEnd(widths[column]!)).join(" | ") + " |";
  out(line(headers));
  out("|" + widths.map((width) => "-".repeat(width + 2)).join("|") + "|");
  for (const row of cells.slice(1)) out(line(row));
  out();
}

const fixed = (value: number, digits = 0): string => value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const ratio = (a: number, b: number): string => (b === 0 ? "-" : (a / b).toFixed(2) + "x");
const percent = (part: number, whole: number): string => (whole === 0 ? "-" : ((100 * part) / whole).toFixed(1) + " %");
const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(import.meta.dirname, "..", "node_modules", name, "package.json"), "utf8")) as { version: string }).version;
  } catch {
    return "?";
  }
}

/** The commit measured, and whether the core or the host differ from it in the working tree. */
function revision(): string {
  try {
    const git = (...args: string[]): string => execFileSync("git", args, { cwd: join(import.meta.dirname, ".."), encoding: "utf8" });
    const changed = git("status", "--porcelain", "--", "modules", "hosts", "main.ts").split("\n").filter(Boolean).map((line) => line.slice(3));
    return git("rev-parse", "--short", "HEAD").trim() + (changed.length > 0 ? ` + uncommitted changes in ${changed.join(", ")}` : "");
  } catch {
    return "? (not a git checkout)";
  }
}

function machine(): Record<string, string> {
  const mosquitto = findMosquitto();
  let mosquittoVersion = "not installed";
  if (mosquitto) {
    try {
      execFileSync(mosquitto, ["-h"], { encoding: "utf8" });
    } catch (error) {
      mosquittoVersion = /mosquitto version (\S+)/.exec(String((error as { stdout?: string }).stdout))?.[1] ?? "?";
    }
    if (mosquittoVersion === "not installed") mosquittoVersion = /mosquitto version (\S+)/.exec(execFileSync(mosquitto, ["-h"], { encoding: "utf8" }))?.[1] ?? "?";
  }
  return {
    cpu: cpus()[0]?.model ?? "?",
    cores: String(cpus().length),
    memory: `${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    os: `${platform()} ${release()}`,
    node: process.version,
    mosquitto: mosquittoVersion,
    "mqtt (MQTT.js)": packageVersion("mqtt"),
    "@agoric/xsnap": packageVersion("@agoric/xsnap"),
    esbuild: packageVersion("esbuild"),
    "IoTLink revision": revision(),
    "load average at start (1, 5, 15 min)": loadavg().map((load) => load.toFixed(2)).join(", "),
  };
}

// ------------------------------------------------------------------ XS and memory

export interface Metered {
  n: number;
  ops: number;
  createdSlots?: number;
  retainedSlots?: number;
  check?: string;
}
export interface XsResults {
  n: number;
  warmup: number;
  scenarios: Record<string, Metered>;
  peers: Record<string, Metered>;
  memory: {
    footprint: Record<string, { slots: number; createdSlots: number; bytes: Record<string, number> }>;
    ring: Record<string, { slots: number; bytes: Record<string, number> }>;
    fill: Record<string, { entries: number; usedBytes: number; capacity: number; topicBytes: number; payloadBytes: number }>;
    outage: { published: number; heap: number; queued?: number; dropped?: number; opens?: number; state?: string }[];
  };
}

async function xsResults(): Promise<XsResults> {
  const { stdout } = await promisify(execFile)(process.execPath, [join(import.meta.dirname, "xs-runner.mjs"), "--n", "1000"], { maxBuffer: 1 << 22, timeout: 300_000 });
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}") as XsResults;
}

const OPERATION_NAMES: Record<string, string> = {
  "loop": "(the driver's empty loop, included in every row)",
  "publish-qos0": "QoS 0 publish, 64 B, online",
  "publish-qos0-text": "QoS 0 publish, 64-character string payload, online",
  "publish-qos1+puback": "QoS 1 publish + its PUBACK",
  "websocket:publish-qos0": "QoS 0 publish, 64 B, over WebSocket (one masked binary frame)",
  "websocket:publish-qos1+puback": "QoS 1 publish + its PUBACK, over WebSocket (PUBACK in a server binary frame)",
  "inbound-qos0": "inbound QoS 0 PUBLISH decoded + dispatched",
  "inbound-qos1+puback": "inbound QoS 1 PUBLISH decoded + dispatched + PUBACK sent",
  "keepalive-tick": "keep-alive tick (timer, PINGREQ, PINGRESP)",
  "shadow-update+reply": "Device Shadow update (52 B document) + its PUBACK + its /accepted reply matched by token",
  "shadow-delta": "Device Shadow delta received, version-checked, handed to the handler",
  "offline-enqueue": "offline enqueue (QoS 1, 64 B)",
  "offline-drain+puback": "drain of one queued message + its PUBACK",
  "offline-enqueue-persisted": "offline enqueue (QoS 1, 64 B) persisted: journal append (flash in RAM)",
  "offline-enqueue-ram-same-rig": "offline enqueue (QoS 1, 64 B), the same rig without persist",
  "boot-recovery-full-partition": "boot, per boot: journal open of a full 64 KB partition + client load of its records (queue 1000 / 77 KB)",
  "boot-recovery-default-queue": "boot, per boot: journal open of a 64 KB partition, every block written, + load of a full default queue (64)",
  "reconnect (per round, scripted broker included)": "reconnect + CONNECT/CONNACK (per connection, scripted broker included)",
  "peer:naive-publish-qos0": "peer: naive QoS 0 PUBLISH (Array + TextEncoder, new Uint8Array)",
  "peer:minimal-publish-qos0": "peer: minimal QoS 0 PUBLISH (preallocated buffer, no validation)",
  "peer:naive-inbound-qos1+puback": "peer: naive inbound QoS 1 (TextDecoder, payload copy, new PUBACK)",
};

/** Scenarios whose run(n) does its work once (a boot), not n times: their figures are per run, the per-message ones times n. */
const PER_RUN = new Set(["boot-recovery-full-partition", "boot-recovery-default-queue"]);

function printXs(results: XsResults): void {
  out(`### 1. XS cost per message (real XS engine, @agoric/xsnap; ${results.n} messages after ${results.warmup} warm-up; deterministic)`);
  out();
  const rows = [...Object.entries(results.scenarios), ...Object.entries(results.peers)].map(([name, metered]) => [
    OPERATION_NAMES[name] ?? name,
    fixed(PER_RUN.has(name) ? metered.ops * metered.n : metered.ops, PER_RUN.has(name) ? 0 : 1),
    metered.createdSlots === undefined ? "-" : fixed(PER_RUN.has(name) ? metered.createdSlots * metered.n : metered.createdSlots, 1),
    metered.retainedSlots === undefined ? "-" : `${metered.retainedSlots} / ${PER_RUN.has(name) ? "1 boot" : metered.n}`,
  ]);
  table(["operation", "XS ops / msg", "slots created / msg", "slots retained / messages"], rows);
  const ours = results.scenarios["publish-qos0"]!.ops;
  const naive = results.peers["peer:naive-publish-qos0"]!.ops;
  const minimal = results.peers["peer:minimal-publish-qos0"]!.ops;
  const inbound = results.scenarios["inbound-qos1+puback"]!.ops;
  const naiveInbound = results.peers["peer:naive-inbound-qos1+puback"]!.ops;
  table(
    ["comparison (same engine)", "IoTLink", "peer", "IoTLink / peer"],
    [
      ["QoS 0 publish vs naive encoder", fixed(ours, 0), fixed(naive, 0), ratio(ours, naive)],
      ["QoS 0 publish vs minimal encoder (the floor)", fixed(ours, 0), fixed(minimal, 0), ratio(ours, minimal)],
      ["inbound QoS 1 + PUBACK vs naive decoder", fixed(inbound, 0), fixed(naiveInbound, 0), ratio(inbound, naiveInbound)],
    ],
  );
  out("Checks: " + Object.entries(results.scenarios).filter(([, metered]) => metered.check).map(([name, metered]) => `${name}: ${metered.check}`).join("; "));
  out();
}

function printMemory(results: XsResults): void {
  const memory = results.memory;
  out("### 2. Memory (XS heap counts after gc(); ArrayBuffer bytes walked from the client object)");
  out();
  const rows: (string | number)[][] = [];
  for (const [entries, label] of [["64", "defaults (queue 64 entries / 8192 B)"], ["0", "queue disabled (0 / 0)"]] as const) {
    const footprint = memory.footprint[entries]!;
    const bytes = footprint.bytes;
    const buffers = Object.entries(bytes).filter(([key]) => !key.startsWith("(array items)")).reduce((sum, [, value]) => sum + value, 0);
    const items = Object.entries(bytes).filter(([key]) => key.startsWith("(array items)")).reduce((sum, [, value]) => sum + value, 0);
    const queueArena = Number(entries) * 128;
    const withoutArena = buffers - queueArena;
    rows.push([
      label,
      footprint.slots,
      fixed(withoutArena),
      fixed(queueArena),
      items,
      fixed(withoutArena + (footprint.slots + items) * DEVICE_SLOT_BYTES),
    ]);
  }
  table(["client after construction", "slots retained", "ArrayBuffer bytes excl. queue arena", "queue arena bytes", "array items", `≈ device bytes excl. arena (slots and items x ${DEVICE_SLOT_BYTES} B)`], rows);
  const defaults = memory.footprint["64"]!.bytes;
  out("ArrayBuffer bytes by field (defaults): " + Object.entries(defaults).filter(([, value]) => value > 0).map(([key, value]) => `${key} ${value}`).join(", "));
  out();

  const ring0 = memory.ring["0"]!;
  const ring1000 = memory.ring["1000"]!;
  const metaBytes = Object.entries(ring1000.bytes).filter(([key]) => !key.startsWith("(array items)") && key !== "arena").reduce((sum, [, value]) => sum + value, 0)
    - Object.entries(ring0.bytes).filter(([key]) => !key.startsWith("(array items)") && key !== "arena").reduce((sum, [, value]) => sum + value, 0);
  const itemsPerEntry = ((ring1000.bytes["(array items) callback"] ?? 0) - (ring0.bytes["(array items) callback"] ?? 0)) / 1000;
  const slotsPerEntry = (ring1000.slots - ring0.slots) / 1000;
  const fillRows = Object.entries(memory.fill).map(([qos, fill]) => {
    const perEntry = fill.usedBytes / fill.entries;
    const arenaOverhead = perEntry - fill.topicBytes - fill.payloadBytes;
    const total = arenaOverhead + metaBytes / 1000 + itemsPerEntry * DEVICE_SLOT_BYTES;
    return [
      qos.toUpperCase().replace("QOS", "QoS "),
      `${fill.entries} entries in ${fill.capacity} B (${fill.capacity - fill.usedBytes} B unused at the wrap)`,
      fixed(perEntry, 1),
      fixed(arenaOverhead, 1),
      fixed(metaBytes / 1000, 1),
      `${fixed(itemsPerEntry, 1)} (${fixed(itemsPerEntry * DEVICE_SLOT_BYTES)} B)`,
      fixed(total, 1),
    ];
  });
  table(
    ["queue entry", "filled ring", "arena bytes / entry", "arena overhead (beyond topic + payload)", "metadata typed arrays B / entry", "array items / entry (device)", "total overhead B / entry (device)"],
    fillRows,
  );
  out(`Topic "bench/t" (7 B), payload 64 B. Slots per entry: ${fixed(Math.abs(slotsPerEntry) < 0.01 ? 0 : slotsPerEntry, 2)} (a ring's slots do not depend on its size).`);
  out();

  const outage = memory.outage;
  table(
    ["offline publishes (QoS 1, 64-entry ring, DROP_OLDEST)", "queued", "dropped", "reconnect attempts", "live slots after gc"],
    outage.map((point) => [fixed(point.published), point.queued ?? 0, fixed(point.dropped ?? 0), point.opens === undefined ? "-" : point.opens - 1, fixed(point.heap)]),
  );
  const heaps = outage.map((point) => point.heap);
  out(`Live slots across the outage: min ${fixed(Math.min(...heaps))}, max ${fixed(Math.max(...heaps))} (growth ${Math.max(...heaps) - heaps[0]!} slots over ${fixed(outage.at(-1)!.published)} publishes).`);
  out();
}

// ------------------------------------------------------------------ throughput

function printThroughput(rows: ThroughputRow[]): void {
  out(`### 3. Throughput: ${fixed(messages)} publishes x 64 B, median of ${runs} interleaved runs (each run its own process, after a ${fixed(warmup)}-message warm-up)`);
  out();
  const find = (transport: string, qos: number, prefix: string): ThroughputRow | undefined => rows.find((row) => row.transport === transport && row.qos === qos && row.client.startsWith(prefix));
  table(
    ["transport", "QoS", "client", "msgs/s", "CPU s (run)", "CPU s / 10k msgs", "peak RSS MB", "verified"],
    rows.map((row) => [
      row.transport === "TLS" ? "mutual TLS 1.2" : "plain TCP",
      row.qos,
      row.client,
      fixed(row.median.messagesPerSecond),
      fixed(row.median.cpuSeconds, 3),
      fixed(row.median.cpuPer10k, 3),
      fixed(row.median.maxRssKb / 1024, 0),
      row.verified,
    ]),
  );
  const ratioRows: string[][] = [];
  for (const transport of ["TLS", "TCP"]) {
    for (const [qos, ourPrefix, peerPrefix, label] of [
      [0, "IoTLink", "MQTT.js", "MQTT.js"],
      [1, `IoTLink (window ${window})`, "MQTT.js (window", `MQTT.js, same window (${window})`],
      [1, `IoTLink (window ${window})`, "MQTT.js (no window", "MQTT.js, no window"],
      [1, `IoTLink (window ${wideWindow})`, "MQTT.js (no window", `MQTT.js, no window (IoTLink window ${wideWindow})`],
    ] as const) {
      const ours = find(transport, qos, ourPrefix);
      const peer = find(transport, qos, peerPrefix);
      if (!ours || !peer) continue;
      ratioRows.push([
        transport === "TLS" ? "mutual TLS 1.2" : "plain TCP",
        String(qos),
        label,
        ratio(ours.median.messagesPerSecond, peer.median.messagesPerSecond),
        ratio(ours.median.cpuPer10k, peer.median.cpuPer10k),
      ]);
    }
  }
  table(["transport", "QoS", "IoTLink against", "msgs/s ratio (IoTLink / peer)", "CPU per message ratio (IoTLink / peer)"], ratioRows);
  const tlsRun = rows.find((row) => row.transport === "TLS" && row.client.startsWith("MQTT.js"))?.runs[0];
  if (tlsRun) out(`MQTT.js negotiated ${tlsRun.cipher}; it was given the device's TLS version and cipher list, so both clients get the same suite from Mosquitto.`);
  out();
  printCpuAttribution(rows);
}

/** The profiled run's categories `keys` together: ms per 10k messages, and the samples behind them. */
function attributed(row: ThroughputRow, keys: readonly CpuCategory[]): { ms: number; samples: number } {
  const profile = row.profile!;
  const times = profile.categories.filter((time) => keys.includes(time.key));
  return {
    ms: (times.reduce((sum, time) => sum + time.ms, 0) / profile.messages) * 10000,
    samples: times.reduce((sum, time) => sum + time.samples, 0),
  };
}

const IOTLINK_CLIENT: readonly CpuCategory[] = ["core", "moddableHost"];
const IOTLINK_WITH_SHIM: readonly CpuCategory[] = ["core", "moddableHost", "desktopShim"];
const MQTTJS_CLIENT: readonly CpuCategory[] = ["mqttjs"];

export interface CpuComparison {
  transport: "TLS" | "TCP";
  qos: 0 | 1;
  iotlink: string;
  peer: string;
  /** IoTLink core + Moddable host; MQTT.js package JS; IoTLink with the desktop simulation. */
  iotlinkClient: { ms: number; samples: number };
  peerClient: { ms: number; samples: number };
  iotlinkWithShim: { ms: number; samples: number };
}

/** The client library's own JS, IoTLink against MQTT.js, from the profiled runs (the same pairs as the ratio table). */
function cpuComparisons(rows: ThroughputRow[]): CpuComparison[] {
  const comparisons: CpuComparison[] = [];
  const find = (transport: string, qos: number, prefix: string): ThroughputRow | undefined =>
    rows.find((row) => row.transport === transport && row.qos === qos && row.client.startsWith(prefix) && row.profile);
  for (const transport of ["TLS", "TCP"] as const) {
    for (const [qos, ourPrefix, peerPrefix] of [
      [0, "IoTLink", "MQTT.js"],
      [1, `IoTLink (window ${window})`, "MQTT.js (window"],
      [1, `IoTLink (window ${window})`, "MQTT.js (no window"],
      [1, `IoTLink (window ${wideWindow})`, "MQTT.js (no window"],
    ] as const) {
      const ours = find(transport, qos, ourPrefix);
      const peer = find(transport, qos, peerPrefix);
      if (!ours || !peer) continue;
      comparisons.push({
        transport,
        qos,
        iotlink: ours.client,
        peer: peer.client,
        iotlinkClient: attributed(ours, IOTLINK_CLIENT),
        peerClient: attributed(peer, MQTTJS_CLIENT),
        iotlinkWithShim: attributed(ours, IOTLINK_WITH_SHIM),
      });
    }
  }
  return comparisons;
}

function printCpuAttribution(rows: ThroughputRow[]): void {
  const profiled = rows.filter((row) => row.profile);
  if (profiled.length === 0) return;
  out(`*CPU attribution of one profiled run per client (${fixed(profiled[0]!.profile!.messages)} messages, V8 sampling profiler, 100 µs, measured burst only), ms per 10k messages*`);
  out();
  const per10k = (row: ThroughputRow, ms: number): number => (ms / row.profile!.messages) * 10000;
  const short = (label: string): string => label.replace(/, [^)]*\)/, ")");
  const cell = (value: number): string => (value === 0 ? "-" : fixed(value, 1));
  for (const transport of ["TLS", "TCP"] as const) {
    const columns = profiled.filter((row) => row.transport === transport);
    if (columns.length === 0) continue;
    // The variant labels without their explanations, so the columns stay narrow.
    const headers = columns.map((row) => `QoS ${row.qos} ${short(row.client)}`);
    const categories = columns[0]!.profile!.categories;
    const body: string[][] = categories.map(({ key, category }) => [
      category,
      ...columns.map((row) => cell(per10k(row, row.profile!.categories.find((time) => time.key === key)?.ms ?? 0))),
    ]);
    body.push(
      ["**sampled, not idle (sum of the above)**", ...columns.map((row) => fixed(per10k(row, row.profile!.sampledMs), 1))],
      ["process CPU of the profiled burst (all threads)", ...columns.map((row) => fixed(per10k(row, row.profile!.cpuSeconds * 1000), 1))],
      ["wall time of the profiled burst", ...columns.map((row) => fixed(per10k(row, row.profile!.seconds * 1000), 1))],
      ["samples, not idle (mean interval µs)", ...columns.map((row) => `${fixed(row.profile!.samples)} (${row.profile!.samples === 0 ? "-" : fixed((row.profile!.sampledMs * 1000) / row.profile!.samples)})`)],
    );
    table([`${transport === "TLS" ? "mutual TLS 1.2" : "plain TCP"}: self time`, ...headers], body);
  }
  const problems = profiled.filter((row) => row.profile!.problems.length > 0).map((row) => `${row.transport} QoS ${row.qos} ${row.client}: ${row.profile!.problems.join("; ")}`);
  if (problems.length > 0) out("Profiled runs with problems: " + problems.join("; ") + ".");
  out(
    "Self time of the main thread's samples (each stands for the time to the next sample). Native functions are C++ called from JS: " +
      "for TLS, writeBuffer/writev encrypt and write, readBuffer (IoTLink's TLS over a JS stream) decrypts; \"(program)\" is native work " +
      "started by the event loop with no JS on the stack (MQTT.js's TLS decrypts there). Process CPU also counts other threads " +
      "(the profiler's sampling thread, GC helpers); the profiler slows the run, so these runs are not in the table above. " +
      "One run each: a figure backed by a few dozen samples is rough (identical runs differ by ±30 % or so).",
  );
  out();
  const withSamples = (time: { ms: number; samples: number }): string => `${fixed(time.ms, 1)} (${time.samples})`;
  out("*Client library JS, ms per 10k messages (samples behind each figure)*");
  out();
  table(
    ["transport", "QoS", "pair", "IoTLink core + Moddable host", "MQTT.js package JS", "IoTLink / MQTT.js", "IoTLink incl. desktop simulation (hosts/desktop/)", "IoTLink incl. simulation / MQTT.js"],
    cpuComparisons(rows).map((comparison) => [
      comparison.transport === "TLS" ? "mutual TLS 1.2" : "plain TCP",
      String(comparison.qos),
      `${short(comparison.iotlink)} vs ${short(comparison.peer)}`,
      withSamples(comparison.iotlinkClient),
      withSamples(comparison.peerClient),
      ratio(comparison.iotlinkClient.ms, comparison.peerClient.ms),
      withSamples(comparison.iotlinkWithShim),
      ratio(comparison.iotlinkWithShim.ms, comparison.peerClient.ms),
    ]),
  );
}

// ------------------------------------------------------------------ recovery and size

function printRecovery(result: RecoveryResult): void {
  out(`### 4. Recovery (desktop host, real sockets, mutual TLS, backoff base ${result.backoffBaseMs} ms)`);
  out();
  const rows = result.restarts.map((sample, index) => [
    String(index + 1),
    fixed(sample.downMs),
    fixed(sample.noticedMs),
    String(sample.failedAttempts),
    String(sample.delayMs),
    fixed(sample.waitMs),
    fixed(sample.handshakeMs),
    fixed(sample.restoreMs, 1),
    fixed(sample.totalMs),
  ]);
  const pick = (key: keyof (typeof result.restarts)[number]): number => median(result.restarts.map((sample) => sample[key]));
  rows.push(["median", fixed(pick("downMs")), fixed(pick("noticedMs")), fixed(pick("failedAttempts")), fixed(pick("delayMs")), fixed(pick("waitMs")), fixed(pick("handshakeMs")), fixed(pick("restoreMs"), 1), fixed(pick("totalMs"))]);
  table(
    ["restart", "kill -> listening again ms", "kill -> client offline ms", "failed attempts", "backoff delay ms", "listening -> attempt ms", "attempt -> online ms (TCP+TLS+CONNACK)", "online -> restored ms", "listening -> restored ms"],
    rows,
  );
  out("The broker restart is RunningMosquitto.restart(): SIGTERM, wait for exit, start, wait for its \"running\" log line (listening).");
  out();
  table(
    ["drain interval", "queued messages", "online -> restored ms", "online -> last PUBACK ms", "acknowledged"],
    result.drains.map((drain) => [`${drain.drainIntervalMs} ms${drain.drainIntervalMs === 500 ? " (default, 2 Hz)" : ""}`, drain.messages, fixed(drain.drainMs), fixed(drain.lastAckMs), drain.acknowledged]),
  );
}

function printSize(rows: SizeRow[]): void {
  out("### 5. Size (esbuild: bundle, minify, ESM, platform neutral, ES2022; gzip -9)");
  out();
  table(
    ["bundle", "entry", "minified B", "gzip B", "vs Moddable's MQTT stack (ECMA-419 client + mqtt/js, 16,797 B)", "vs Moddable's legacy QoS 0 module (8,968 B)"],
    rows.map((row) => [row.what, row.entry, fixed(row.bytes), fixed(row.gzipBytes), ratio(row.bytes, MODDABLE_MQTT_MINIFIED_BYTES), ratio(row.bytes, MODDABLE_LEGACY_MQTT_MINIFIED_BYTES)]),
  );
  const core = rows[0]!;
  out("Core, minified bytes by source file: " + Object.entries(core.inputs).sort((a, b) => b[1] - a[1]).map(([file, bytes]) => `${file} ${fixed(bytes)}`).join(", ") + ".");
  out("On the device Moddable compiles the TypeScript output to XS bytecode (mcconfig/xsc); minified JS is a proxy for that size, and the next table measures the bytecode itself.");
  out();
}

function printBytecode(result: BytecodeResult): void {
  out("### 5b. XS bytecode size (the SDK's tsc + xsc per module, as mcconfig builds for the device)");
  out();
  if ("skipped" in result) {
    out(`Not measured: ${result.skipped}.`);
    out();
    return;
  }
  const peer = result.rows.find((row) => row.what.startsWith("Moddable: ECMA-419"))!;
  table(
    ["modules", ".xsb bytes", "vs Moddable's ECMA-419 client + mqtt/js", "minified JS, module by module", "bytecode per module"],
    result.rows.map((row) => [row.what, fixed(row.bytes), ratio(row.bytes, peer.bytes), fixed(row.minifiedBytes), row.modules.map((module) => `${module.file} ${fixed(module.bytes)}`).join(", ")]),
  );
  out(`xsc: ${result.xsc}. Moddable's modules are compiled from ${result.sdk}; this project's through TypeScript (const enums inlined), then xsc -e without -d.`);
  out();
  const core = result.rows[0]!;
  out("### 5c. Where the core's bytecode goes (the bytes that go when a part's function bodies are emptied; a lower bound, as calls and function shells stay)");
  out();
  table(
    ["part of the core", "bytecode B", "share of the core", "vs Moddable's ECMA-419 client + mqtt/js", "functions emptied"],
    result.breakdown.map((row) => [
      row.kind === "feature" ? `lacking in Moddable's stack: ${row.what}` : row.kind === "other" ? `for scale: ${row.what}` : `**${row.what}**`,
      fixed(row.bytes),
      percent(row.bytes, core.bytes),
      ratio(row.bytes, peer.bytes),
      row.carriedBy,
    ]),
  );
  out(`Core: ${fixed(core.bytes)} B. The "for scale" rows are not in the sum; the message texts overlap every other row.`);
  out();
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const started = performance.now();
  const needsBroker = only.has("throughput") || only.has("recovery");
  const mosquitto = needsBroker ? ensureMosquitto(out) : findMosquitto();
  const results: Record<string, unknown> = { machine: machine(), flags };
  out("## IoTLink benchmarks");
  out();
  table(["machine", ""], Object.entries(results.machine as Record<string, string>));

  if (only.has("xs") || only.has("memory")) {
    section(only.has("xs") && only.has("memory") ? "xs and memory (XS child process)" : only.has("xs") ? "xs (XS child process)" : "memory (XS child process)");
    if (only.has("xs") && only.has("memory")) sectionsStarted++;
    const xs = await xsResults();
    results.xs = xs;
    if (only.has("xs")) printXs(xs);
    if (only.has("memory")) printMemory(xs);
  }

  let work: string | undefined;
  const brokers: RunningMosquitto[] = [];
  try {
    if (needsBroker && !mosquitto) {
      out("### 3-4. Throughput and recovery: not measured, Mosquitto is not installed and could not be (run `sudo apt-get install mosquitto`)");
      out();
    } else if (needsBroker) {
      work = mkdtempSync(join(tmpdir(), "iotlink-bench-"));
      ensureDevPki({ directory: work });
      const tlsFiles = { caFile: join(work, "ca.pem"), certFile: join(work, "broker-chain.pem"), keyFile: join(work, "broker-key.pem") };
      // "information" is the least the launcher needs (it waits for "... running"); no per-packet logging.
      const tlsBroker = await startMosquitto({ tls: tlsFiles, logTypes: ["error"], extraConfig: ["sys_interval 1"] });
      brokers.push(tlsBroker);
      const hostBundle = join(work, "host.mjs");
      const host = await loadDesktopHost(hostBundle);
      if (only.has("throughput")) {
        section(`throughput (${runs} runs per figure of ${messages} messages)`);
        const plainBroker = await startMosquitto({ logTypes: ["error"], extraConfig: ["sys_interval 1"] });
        brokers.push(plainBroker);
        const rows = await runThroughput({ tlsBroker, plainBroker, pki: work, hostBundle, messages, runs, window, wideWindow, profileMessages, warmup, log });
        results.throughput = rows;
        results.throughputCpuComparison = cpuComparisons(rows);
        printThroughput(rows);
        // 3c: MQTT over WebSocket with SigV4 through a WSS gateway in front of the plain broker.
        const websocketRows = await runWebSocketThroughput({ tlsBroker, plainBroker, pki: work, hostBundle, messages, runs, window, wideWindow, profileMessages, warmup, log });
        results.throughputWebSocket = websocketRows;
        printWebSocketThroughput(websocketRows, window, out, table);
      }
      if (only.has("recovery")) {
        section("recovery (3 broker restarts, then the drains)");
        host.setResourceDirectory(work);
        const recovery = await runRecovery(host, tlsBroker, { repetitions: 3, backoffBaseMs: 100, drainMessages: 100, slowDrain: !flags["no-slow-drain"], log });
        results.recovery = recovery;
        printRecovery(recovery);
      }
    }
  } finally {
    for (const broker of brokers) await broker.stop().catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  }

  if (only.has("size")) {
    section("size (esbuild, and XS bytecode with $MODDABLE)");
    const size = await runSize();
    results.size = size;
    printSize(size);
    const bytecode = await runBytecode(size);
    results.bytecode = bytecode;
    printBytecode(bytecode);
  }

  const seconds = (performance.now() - started) / 1000;
  results.seconds = seconds;
  out(`Bench run took ${seconds.toFixed(1)} s; load average at the end ${loadavg().map((load) => load.toFixed(2)).join(", ")}.`);
  if (flags.json) writeFileSync(flags.json, JSON.stringify(results, null, 2) + "\n");
  // Timers and sockets of the in-process desktop host must not keep the run alive.
  setTimeout(() => process.exit(process.exitCode ?? 0), 100).unref();
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
