// Section 3 of `npm run bench`: IoTLink (desktop host) against MQTT.js 5, same Mosquitto, mutual
// TLS and plain TCP on loopback. Each run is a child process (bench/throughput-child.ts); the broker
// counts what it received ($SYS/broker/publish/messages/received, sys_interval 1), and each run is
// checked against what its client says it sent. After the measured runs of a transport, one more
// run per client with V8's sampling profiler attributes the CPU of its burst (ThroughputRow.profile).
// runWebSocketThroughput does the same (without profiled runs) for MQTT over WebSocket with SigV4,
// both clients through one WSS gateway in front of the plain TCP broker.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import mqtt from "mqtt";
import type { RunningMosquitto } from "../tools/mosquitto.ts";
import type { CpuCategoryTime, RunResult, RunSpec } from "./throughput-child.ts";

const run = promisify(execFile);
const CHILD = join(import.meta.dirname, "throughput-child.ts");

export interface ThroughputOptions {
  tlsBroker: RunningMosquitto;
  plainBroker: RunningMosquitto;
  pki: string;
  hostBundle: string;
  messages: number;
  runs: number;
  window: number;
  /** IoTLink's second, wide window (QoS 1), against MQTT.js's unbounded default. */
  wideWindow: number;
  warmup: number;
  /** Messages of the one profiled run per variant: more than a measured run, for enough samples. */
  profileMessages: number;
  log: (line: string) => void;
}

export interface ThroughputRow {
  /** WSS: MQTT over WebSocket with SigV4 through the gateway (runWebSocketThroughput). */
  transport: "TLS" | "TCP" | "WSS";
  qos: 0 | 1;
  client: string;
  runs: RunResult[];
  median: { messagesPerSecond: number; cpuSeconds: number; cpuPer10k: number; maxRssKb: number };
  verified: string;
  /** The extra profiled run; its own rate and CPU are slowed by the profiler, so never in `median`. */
  profile?: CpuAttribution;
}

export interface CpuAttribution {
  messages: number;
  /** Sampled self time of the measured burst per category, ms (idle excluded). */
  categories: CpuCategoryTime[];
  sampledMs: number;
  samples: number;
  /** Of the profiled run itself: wall time and whole-process CPU of the burst. */
  seconds: number;
  cpuSeconds: number;
  messagesPerSecond: number;
  /** What the broker's count or the client found wrong with the profiled run; empty if nothing. */
  problems: string[];
}

/** The broker's running count of PUBLISH packets received, from $SYS. */
class BrokerCounter {
  value = -1;
  updatedAt = 0;
  private constructor(private readonly client: mqtt.MqttClient) {}

  /** `name` tells apart two counters on one broker (a second client id would take over the first's). */
  static async open(broker: RunningMosquitto, pki: string, name = ""): Promise<BrokerCounter> {
    const client = mqtt.connect(broker.url.replace("127.0.0.1", "localhost"), {
      clientId: "bench-sys-" + broker.port + name,
      reconnectPeriod: 0,
      ...(broker.tls
        ? { ca: readFileSync(join(pki, "ca.pem")), cert: readFileSync(join(pki, "device-cert.pem")), key: readFileSync(join(pki, "device-key.pem")) }
        : {}),
    });
    client.on("error", () => undefined);
    await new Promise<void>((done, fail) => {
      client.once("connect", () => done());
      client.once("error", fail);
    });
    const counter = new BrokerCounter(client);
    client.on("message", (_topic, payload) => {
      counter.value = Number(payload.toString());
      counter.updatedAt = Date.now();
    });
    await client.subscribeAsync("$SYS/broker/publish/messages/received", { qos: 0 });
    const deadline = Date.now() + 5000;
    while (counter.value < 0 && Date.now() < deadline) await new Promise((wait) => setTimeout(wait, 50));
    if (counter.value < 0) throw new Error(`no $SYS/broker/publish/messages/received from the broker on port ${broker.port} within 5 s`);
    return counter;
  }

  /** Waits (up to 4 s) until the count reaches `expected`; returns what it reached. */
  async reach(expected: number): Promise<number> {
    const deadline = Date.now() + 4000;
    while (this.value < expected && Date.now() < deadline) await new Promise((wait) => setTimeout(wait, 25));
    return this.value;
  }

  close(): Promise<void> {
    return Promise.race([
      new Promise<void>((done) => this.client.end(false, {}, () => done())),
      new Promise<void>((done) => setTimeout(() => {
        this.client.end(true);
        done();
      }, 2000).unref()),
    ]);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function attribution(run: RunResult | undefined, messages: number, problems: string[]): CpuAttribution | undefined {
  if (!run?.profile) return undefined;
  return {
    messages,
    categories: run.profile,
    sampledMs: run.profileSampledMs ?? 0,
    samples: run.profileSamples ?? 0,
    seconds: run.seconds,
    cpuSeconds: run.cpuSeconds,
    messagesPerSecond: run.messagesPerSecond,
    problems,
  };
}

async function runChild(spec: RunSpec, env?: Record<string, string>): Promise<RunResult> {
  const { stdout } = await run(process.execPath, ["--import", "tsx", CHILD, JSON.stringify(spec)], { timeout: 120_000, maxBuffer: 1 << 20, ...(env ? { env: { ...process.env, ...env } } : {}) });
  const line = stdout.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line) as RunResult;
}

interface Variant {
  client: "iotlink" | "mqttjs";
  mode: "windowed" | "natural";
  qos: 0 | 1;
  label: string;
  window?: number;
}

/** How the runs of one transport reach their broker. */
interface TransportRuns {
  transport: ThroughputRow["transport"];
  /** The broker the runs reach (through the gateway for WSS): its port for the spec, and its count. */
  port: number;
  tls: boolean;
  counter: BrokerCounter;
  variants: Variant[];
  /** One profiled run per variant after the measured ones (CpuAttribution). */
  profile: boolean;
  /** Overrides of the run spec (the WebSocket runs' gateway and host bundle). */
  spec?: Partial<RunSpec>;
  /** More environment for the child (the WebSocket runs' secret: never in the spec, which --json writes). */
  env?: Record<string, string>;
}

async function runTransport(options: ThroughputOptions, runs: TransportRuns): Promise<ThroughputRow[]> {
  const { transport, counter, variants } = runs;
  const rows: ThroughputRow[] = [];
  const results: RunResult[][] = variants.map(() => []);
  const problems: string[][] = variants.map(() => []);
  const profiled: (RunResult | undefined)[] = [];
  const profileProblems: string[][] = variants.map(() => []);
  // MQTT.js with no window gives every message a packet id at once: at most 65,535 are possible.
  const profiledMessages = (variant: Variant): number =>
    variant.client === "mqttjs" && variant.mode === "natural" && variant.qos === 1 ? Math.min(options.profileMessages, 60000) : options.profileMessages;
  /** One child run of variants[which], checked against the broker's count; `name` labels it in logs and problems. */
  const measure = async (which: number, name: string, profile: boolean, problemsOf: string[], messages: number): Promise<RunResult> => {
    const variant = variants[which]!;
    const before = counter.value;
    const result = await runChild(
      {
        client: variant.client,
        mode: variant.mode,
        tls: runs.tls,
        port: runs.port,
        pki: options.pki,
        qos: variant.qos,
        messages,
        warmup: options.warmup,
        window: variant.window ?? options.window,
        hostBundle: options.hostBundle,
        clientId: `bench-${variant.client}-${process.pid}-${transport}-${which}-${name.replace(/ /g, "")}`,
        profile,
        ...runs.spec,
      },
      runs.env,
    );
    const reached = await counter.reach(before + result.publishPacketsSent);
    const received = reached - before;
    if (received !== result.publishPacketsSent) problemsOf.push(`${name}: broker counted ${received} PUBLISH, client sent ${result.publishPacketsSent}`);
    if (result.connectionsLost > 0) problemsOf.push(`${name}: connection lost ${result.connectionsLost} time(s), messages re-sent`);
    if (result.acknowledged !== messages) problemsOf.push(`${name}: ${result.acknowledged} acknowledged of ${messages}`);
    options.log(
      `  ${transport} QoS ${variant.qos} ${variant.label} ${name}: ${Math.round(result.messagesPerSecond)} msg/s, ` +
        `${result.cpuSeconds.toFixed(3)} s CPU, broker counted ${received}/${result.publishPacketsSent}` +
        (profile ? `, ${result.profileSamples} samples, ${result.profileSampledMs?.toFixed(0)} ms sampled` : ""),
    );
    return result;
  };
  try {
    // Interleaved (run 1 of every variant, then run 2...), so a change in the machine's load
    // during the section falls on every client alike.
    for (let index = 0; index < options.runs; index++) {
      for (const which of variants.keys()) results[which]!.push(await measure(which, `run ${index + 1}`, false, problems[which]!, options.messages));
    }
    if (runs.profile) {
      for (const which of variants.keys()) {
        // The attribution is extra: a failed profiled run must not cost the measured figures.
        profiled[which] = await measure(which, "profiled run", true, profileProblems[which]!, profiledMessages(variants[which]!)).catch((error: Error) => {
          options.log(`  ${transport} ${variants[which]!.label} profiled run failed: ${error.message}`);
          return undefined;
        });
      }
    }
  } finally {
    await counter.close();
  }
  for (const [which, variant] of variants.entries()) {
    const runsOf = results[which]!;
    rows.push({
      transport,
      qos: variant.qos,
      client: variant.label,
      runs: runsOf,
      median: {
        messagesPerSecond: median(runsOf.map((result) => result.messagesPerSecond)),
        cpuSeconds: median(runsOf.map((result) => result.cpuSeconds)),
        cpuPer10k: median(runsOf.map((result) => (result.cpuSeconds / options.messages) * 10000)),
        maxRssKb: median(runsOf.map((result) => result.maxRssKb)),
      },
      verified: problems[which]!.length === 0 ? `all ${options.messages} x ${runsOf.length} counted by the broker` : problems[which]!.join("; "),
      profile: runs.profile ? attribution(profiled[which], profiledMessages(variant), profileProblems[which]!) : undefined,
    });
  }
  return rows;
}

export async function runThroughput(options: ThroughputOptions): Promise<ThroughputRow[]> {
  const variants: Variant[] = [
    { client: "iotlink", mode: "windowed", qos: 0, label: "IoTLink" },
    { client: "mqttjs", mode: "natural", qos: 0, label: "MQTT.js" },
    { client: "iotlink", mode: "windowed", qos: 1, label: `IoTLink (window ${options.window})` },
    { client: "mqttjs", mode: "windowed", qos: 1, label: `MQTT.js (window ${options.window}, by the driver)` },
    { client: "mqttjs", mode: "natural", qos: 1, label: "MQTT.js (no window, its default)" },
    // What a wide window changes (AWS IoT Core allows 100 unacknowledged; see BENCHMARKS.md for 100).
    { client: "iotlink", mode: "windowed", qos: 1, label: `IoTLink (window ${options.wideWindow})`, window: options.wideWindow },
  ];
  // Both counters subscribe before any run: a late subscriber was once left without the retained
  // $SYS value of a broker that had been idle for a minute.
  const counters = await Promise.all([BrokerCounter.open(options.tlsBroker, options.pki), BrokerCounter.open(options.plainBroker, options.pki)]);
  const rows: ThroughputRow[] = [];
  for (const [transport, broker, counter] of [["TLS", options.tlsBroker, counters[0]], ["TCP", options.plainBroker, counters[1]]] as const) {
    options.log(`  ${transport}: broker on port ${broker.port}`);
    rows.push(...(await runTransport(options, { transport, port: broker.port, tls: transport === "TLS", counter, variants, profile: true })));
  }
  return rows;
}

// ------------------------------------------------------------------ MQTT over WebSocket

/** The environment variable that carries the run's secret access key to the child (as in bench/throughput-child.ts). */
const WEBSOCKET_SECRET_VARIABLE = "IOTLINK_BENCH_SECRET_ACCESS_KEY";
/** The credential's region, as AWS IoT's endpoint has one. */
const WEBSOCKET_REGION = "us-east-1";

/**
 * MQTT over WebSocket with SigV4 (issue 14), both clients through one AWS IoT-like WSS gateway
 * (tools/wss-gateway.ts, started here with the run's PKI and an IAM key made for the run) bridged
 * over plain TCP to `plainBroker`: IoTLink with createWebSocketTransport (hosts/moddable/websocket.ts
 * over the desktop host, bundled with the Moddable aliases from bench/throughput-host.ts), MQTT.js 5
 * with a `wss://` URL presigned by npm aws4. The same window for both (QoS 1), checked against the
 * broker's count; no profiled runs. The gateway runs in this process: its work (TLS, WebSocket
 * framing, the bridge) is every run's, whichever client, and not in a client's CPU figure.
 */
export async function runWebSocketThroughput(options: ThroughputOptions): Promise<ThroughputRow[]> {
  const { startWssGateway } = await import("../tools/wss-gateway.ts");
  const { bundleForDesktop } = await import("../tools/desktop-build.ts");
  const hostBundle = await bundleForDesktop(join(import.meta.dirname, "throughput-host.ts"), join(options.pki, "websocket-host.mjs"));
  const keyId = "AKIABENCH" + randomBytes(6).toString("hex").toUpperCase();
  const secret = randomBytes(30).toString("base64");
  const gateway = await startWssGateway({ credentials: { [keyId]: { secret } }, region: WEBSOCKET_REGION, broker: { host: options.plainBroker.host, port: options.plainBroker.port }, certificateDirectory: options.pki });
  try {
    // A counter of its own on the plain broker (the TCP runs' counter has closed by now).
    const counter = await BrokerCounter.open(options.plainBroker, options.pki, "-wss");
    options.log(`  WSS: gateway on port ${gateway.port}, bridged to the broker on port ${options.plainBroker.port}`);
    const variants: Variant[] = [
      { client: "iotlink", mode: "windowed", qos: 0, label: "IoTLink" },
      { client: "mqttjs", mode: "natural", qos: 0, label: "MQTT.js" },
      { client: "iotlink", mode: "windowed", qos: 1, label: `IoTLink (window ${options.window})` },
      { client: "mqttjs", mode: "windowed", qos: 1, label: `MQTT.js (window ${options.window}, by the driver)` },
    ];
    const rows = await runTransport(options, {
      transport: "WSS",
      port: gateway.port,
      tls: true,
      counter,
      variants,
      profile: false,
      spec: { hostBundle, websocket: { accessKeyId: keyId, region: WEBSOCKET_REGION } },
      env: { [WEBSOCKET_SECRET_VARIABLE]: secret },
    });
    const refused = Object.entries(gateway.stats.refused).filter(([, count]) => count > 0);
    if (refused.length > 0) throw new Error(`the gateway refused upgrades: ${refused.map(([reason, count]) => `${reason} ${count}`).join(", ")}`);
    return rows;
  } finally {
    await gateway.close();
  }
}

/** Section 3's WebSocket tables, printed with bench/run.ts's `out` and `table`. */
export function printWebSocketThroughput(rows: ThroughputRow[], window: number, out: (text?: string) => void, table: (headers: string[], rows: (string | number)[][]) => void): void {
  if (rows.length === 0) return;
  const fixed = (value: number, digits = 0): string => value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const ratio = (a: number, b: number): string => (b === 0 ? "-" : (a / b).toFixed(2) + "x");
  out(`### 3c. MQTT over WebSocket with SigV4: ${fixed(rows[0]!.runs[0]?.spec.messages ?? 0)} publishes x 64 B, median of ${fixed(rows[0]!.runs.length)} interleaved runs (wss://, TLS 1.2 with the CA alone, both clients through the same AWS IoT-like gateway, tools/wss-gateway.ts in the bench process, bridged to the plain TCP broker)`);
  out();
  table(
    ["transport", "QoS", "client", "msgs/s", "CPU s (run)", "CPU s / 10k msgs", "peak RSS MB", "verified"],
    rows.map((row) => ["WSS + SigV4", row.qos, row.client, fixed(row.median.messagesPerSecond), fixed(row.median.cpuSeconds, 3), fixed(row.median.cpuPer10k, 3), fixed(row.median.maxRssKb / 1024, 0), row.verified]),
  );
  const find = (qos: number, prefix: string): ThroughputRow | undefined => rows.find((row) => row.qos === qos && row.client.startsWith(prefix));
  const pairs: string[][] = [];
  for (const [qos, ourPrefix, peerPrefix, label] of [
    [0, "IoTLink", "MQTT.js", "MQTT.js"],
    [1, `IoTLink (window ${window})`, "MQTT.js (window", `MQTT.js, same window (${window})`],
  ] as const) {
    const ours = find(qos, ourPrefix);
    const peer = find(qos, peerPrefix);
    if (ours && peer) pairs.push(["WSS + SigV4", String(qos), label, ratio(ours.median.messagesPerSecond, peer.median.messagesPerSecond), ratio(ours.median.cpuPer10k, peer.median.cpuPer10k)]);
  }
  table(["transport", "QoS", "IoTLink against", "msgs/s ratio (IoTLink / peer)", "CPU per message ratio (IoTLink / peer)"], pairs);
  const cipher = rows.find((row) => row.client.startsWith("MQTT.js"))?.runs[0]?.cipher;
  if (cipher) out(`MQTT.js over wss:// negotiated ${cipher} with the gateway; both clients offer the device's suites in the same order.`);
  out();
}
