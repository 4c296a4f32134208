// `npm run fleet`: a fleet of simulated devices through broker restarts and link cuts, with the
// reconnect storm measured at the broker's door. Each device is the real core (MqttClient) with the
// Moddable host's transport and clock over the desktop host (mutual TLS 1.2, one device
// certificate, distinct client ids), in a worker process (tools/fleet-worker.ts), publishing QoS 1
// telemetry. They reach a real Mosquitto (mutual TLS, persistence on) through an accept gate
// (tools/fleet-gate.ts) that timestamps every connection attempt and can refuse attempts above a
// rate, as AWS IoT Core throttles connects. An MQTT.js subscriber with a persistent session, straight
// to the broker, counts what arrives.
//
//   npm run fleet                         # 1,000 devices, every case and schedule (a few minutes)
//   npm run fleet -- --devices 50 --quick # CI: one restart, two schedules, under a minute
//   npm run fleet -- --help
//
// Cases: "restart" (broker stopped, an outage, started on the same port), "cut" (every link reset
// at the gate, and new attempts refused for the outage), "limit" (a restart with the gate admitting
// at most --limit attempts per second from the fault on). Schedules: IoTLink's default backoff with
// jitter off and on, the Python SDK v1's schedule, and (limit case) a jittered schedule sized from
// the fleet and the limit. Measured per run: attempts per 100 ms at the gate (peak, p99), per second,
// time until 50/99/100 % of devices are restored after the broker is back, messages accepted vs
// delivered (lost, duplicates), the devices' CPU and memory. Every wait has a deadline; the broker,
// the gate, the workers and the temporary PKI are gone when it returns. 127.0.0.1 only.
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import { DEV_PKI_FILES, ensureDevPki } from "./certs.ts";
import { CommandError, helpIfAsked, readCommandLine, runCommand, UsageError, wholeNumber } from "./cli.ts";
import { bundleForDesktop } from "./desktop-build.ts";
import { epochMs, LOOPBACK, startFleetGate, type FleetGate } from "./fleet-gate.ts";
import { fleetChartSvg, type ChartPanel } from "./fleet-svg.ts";
import type { BackoffSpec, Mark, Progress, WorkerConfig, WorkerReport } from "./fleet-worker.ts";
import { findMosquitto, MOSQUITTO_MISSING, startMosquitto, type RunningMosquitto } from "./mosquitto.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const WORKER = fileURLToPath(new URL("./fleet-worker.ts", import.meta.url));
const HOST_ENTRY = fileURLToPath(new URL("./desktop-host-entry.ts", import.meta.url));

export const CASES = ["restart", "cut", "limit"] as const;
export type CaseName = (typeof CASES)[number];
export const SCHEDULES = ["plain", "jitter", "python", "sized"] as const;
export type ScheduleName = (typeof SCHEDULES)[number];

export interface Schedule {
  readonly name: ScheduleName;
  readonly label: string;
  readonly backoff: BackoffSpec;
  readonly color: string;
  readonly dashed?: boolean;
}

/** IoTLink's default backoff (modules/options.ts): 1 s, doubling, at most 32 s, reset after 20 s up. */
const IOTLINK_DEFAULT = { baseMs: 1000, maxMs: 32000, stableMs: 20000 };

/**
 * The Python SDK v1's schedule, configureAutoReconnectBackoffTime(1, 32, 20) (its defaults): before
 * every reconnect attempt it sleeps `current`, then doubles it up to 32 s; `current` starts at 1 s,
 * and goes back to base (1 s) after 20 s connected. IoTLink's n-th reconnect after a reset waits
 * min(maxMs, baseMs * 2^n) and resets after stableMs connected, so {baseMs: 1000, maxMs: 32000,
 * stableMs: 20000, jitter: false} gives the same delays, 1, 2, 4, 8, 16, 32, 32 s... at the same
 * moments. (Its quirk, a first series that starts at 1 s whatever base is, is invisible at base 1 s.)
 * It is also IoTLink's own default with jitter off: the "plain" and "python" rows are one schedule
 * measured twice, which shows the noise of the measurement.
 */
const PYTHON_SDK = { baseMs: 1000, maxMs: 32000, stableMs: 20000, jitter: false };

/** The jittered base that keeps the fleet's first wave at the limit on average: N / rate seconds. */
export function sizedBaseMs(devices: number, limitPerSecond: number): number {
  return Math.max(1000, Math.ceil((devices / limitPerSecond) * 10) * 100);
}

export function scheduleOf(name: ScheduleName, devices: number, limitPerSecond: number): Schedule {
  switch (name) {
    case "plain":
      return { name, label: "IoTLink, jitter off", backoff: { ...IOTLINK_DEFAULT, jitter: false }, color: "#d62728" };
    case "jitter":
      return { name, label: "IoTLink, full jitter", backoff: { ...IOTLINK_DEFAULT, jitter: true }, color: "#1f77b4" };
    case "python":
      return { name, label: "Python SDK v1 schedule", backoff: PYTHON_SDK, color: "#ff7f0e", dashed: true };
    case "sized": {
      const baseMs = sizedBaseMs(devices, limitPerSecond);
      return { name, label: `IoTLink, jitter, base ${baseMs / 1000} s`, backoff: { baseMs, maxMs: Math.max(32000, 4 * baseMs), stableMs: 20000, jitter: true }, color: "#2ca02c" };
    }
  }
}

export interface FleetOptions {
  readonly devices: number;
  readonly cases: readonly CaseName[];
  readonly schedules: readonly ScheduleName[];
  readonly outageSeconds: number;
  readonly publishIntervalMs: number;
  readonly limitPerSecond: number;
  /** How long after the broker is back a run waits for every device, measured. */
  readonly recoverSeconds: number;
  readonly steadySeconds: number;
  readonly rampPerSecond: number;
  /** Reuse the devices' parsed certificate, key and CA across attempts (tools/fleet-memo.ts). */
  readonly memo: boolean;
  /** Fleet sizes for the cost table (steady state, no fault). */
  readonly scale: readonly number[];
  readonly scaleSteadySeconds: number;
  readonly svg?: string;
  readonly json?: string;
  readonly markdown?: string;
  readonly log?: (line: string) => void;
}

// ------------------------------------------------------------------------------- statistics

const WINDOW_MS = 100;

function percentile(sorted: readonly number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(fraction * sorted.length) - 1))]!;
}

/** Counts per WINDOW_MS window of the timestamps in [from, to). */
export function windows(times: readonly number[], from: number, to: number): number[] {
  const bins = new Array<number>(Math.max(1, Math.ceil((to - from) / WINDOW_MS))).fill(0);
  for (const time of times) {
    if (time < from || time >= to) continue;
    bins[Math.floor((time - from) / WINDOW_MS)]!++;
  }
  return bins;
}

/** The most timestamps within any one second (a sliding window). */
export function peakPerSecond(times: readonly number[], from: number, to: number): number {
  const inside = times.filter((time) => time >= from && time < to).sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < inside.length; end++) {
    while (inside[end]! - inside[start]! >= 1000) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

const seconds = (ms: number): number => Math.round(ms / 100) / 10;
const cpuMs = (from: Mark, to: Mark): number => (to.userUs + to.systemUs - from.userUs - from.systemUs) / 1000;
const markOf = (marks: readonly Mark[], name: string): Mark | undefined => [...marks].reverse().find((mark) => mark.name === name);

// ------------------------------------------------------------------------------- the parts

/** The broker's process CPU (ms) and RSS (bytes), from /proc (Linux). */
function processUsage(pid: number | undefined): { cpuMs: number; rss: number } {
  if (pid === undefined) return { cpuMs: 0, rss: 0 };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0);
    return { cpuMs: ticks * 10, rss: rssKb * 1024 };
  } catch {
    return { cpuMs: 0, rss: 0 };
  }
}

class Worker {
  progress: Progress | undefined;
  private readonly waiters = new Map<string, (message: any) => void>();
  private failure: string | undefined;
  private readonly stderr: string[] = [];
  private exited = false;

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (message: { type: string; message?: string }) => {
      if (message.type === "progress") this.progress = message as unknown as Progress;
      else if (message.type === "failed") this.failure = message.message;
      const waiter = this.waiters.get(message.type);
      if (waiter) {
        this.waiters.delete(message.type);
        waiter(message);
      }
    });
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (text: string) => {
      this.stderr.push(text);
      if (this.stderr.length > 50) this.stderr.shift();
    });
    child.once("exit", (code, signal) => {
      this.exited = true;
      if (!this.failure && code !== 0) this.failure = `worker exited (${signal ?? "code " + code})`;
    });
  }

  static async start(config: WorkerConfig): Promise<Worker> {
    const child = fork(WORKER, [], { cwd: ROOT, execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "pipe", "ipc"] });
    const worker = new Worker(child);
    child.send({ type: "config", config });
    await worker.expect("ready", 30_000);
    return worker;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  send(message: object): void {
    if (!this.exited) this.child.send(message);
  }

  /** The next message of `type`, or a rejection after `timeoutMs` or when the worker fails. */
  expect<T = any>(type: string, timeoutMs: number): Promise<T> {
    return new Promise((done, fail) => {
      const started = performance.now();
      const check = setInterval(() => {
        if (this.failure || performance.now() - started > timeoutMs) {
          clearInterval(check);
          this.waiters.delete(type);
          fail(new Error(this.failure ? `fleet worker failed: ${this.failure}\n${this.stderr.join("").slice(-2000)}` : `fleet worker: no "${type}" within ${timeoutMs} ms`));
        }
      }, 50);
      this.waiters.set(type, (message) => {
        clearInterval(check);
        done(message as T);
      });
    });
  }

  request<T = any>(message: { type: string; [field: string]: unknown }, reply: string, timeoutMs: number): Promise<T> {
    const answer = this.expect<T>(reply, timeoutMs);
    this.send(message);
    return answer;
  }

  /** Waits until `condition` holds for the latest progress report; false at the deadline. */
  async until(condition: (progress: Progress) => boolean, deadline: number): Promise<boolean> {
    while (performance.now() < deadline) {
      if (this.failure) throw new Error(`fleet worker failed: ${this.failure}`);
      if (this.progress && condition(this.progress)) return true;
      await sleep(50);
    }
    return this.progress !== undefined && condition(this.progress);
  }

  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((done) => this.child.once("exit", () => done()));
    this.send({ type: "close" });
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 8000);
    await exited;
    clearTimeout(timer);
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}

/** What arrived at the subscriber, per run and device: counts by seq. */
class Subscriber {
  private readonly runs = new Map<string, { devices: number[][]; distinct: number }>();
  reconnects = 0;
  private constructor(private readonly client: mqtt.MqttClient) {}

  static async start(broker: RunningMosquitto, pki: string): Promise<Subscriber> {
    const client = mqtt.connect(broker.url, {
      clientId: "fleet-subscriber-" + process.pid,
      clean: false,
      reconnectPeriod: 100,
      connectTimeout: 5000,
      keepalive: 30,
      ca: readFileSync(join(pki, DEV_PKI_FILES.caCertificatePem)),
      cert: readFileSync(join(pki, DEV_PKI_FILES.deviceCertificatePem)),
      key: readFileSync(join(pki, DEV_PKI_FILES.deviceKeyPem)),
      servername: "localhost",
    });
    const subscriber = new Subscriber(client);
    const errors: string[] = [];
    client.on("error", (error) => errors.push(error.message));
    client.on("reconnect", () => subscriber.reconnects++);
    client.on("message", (topic, payload) => subscriber.record(topic, payload.toString()));
    await new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error("the subscriber did not connect: " + errors.join("; "))), 10_000);
      client.once("connect", () => {
        client.subscribe("fleet/#", { qos: 1 }, (error) => {
          clearTimeout(timer);
          if (error) fail(error);
          else done();
        });
      });
    });
    return subscriber;
  }

  private record(topic: string, text: string): void {
    const run = topic.slice("fleet/".length);
    const colon = text.indexOf(":");
    const device = Number(text.slice(0, colon));
    const seq = Number(text.slice(colon + 1));
    if (!Number.isInteger(device) || !Number.isInteger(seq)) return;
    let entry = this.runs.get(run);
    if (!entry) this.runs.set(run, (entry = { devices: [], distinct: 0 }));
    const counts = (entry.devices[device] ??= []);
    counts[seq] = (counts[seq] ?? 0) + 1;
    if (counts[seq] === 1) entry.distinct++;
  }

  distinct(run: string): number {
    return this.runs.get(run)?.distinct ?? 0;
  }

  tally(run: string, ledgers: WorkerReport["ledgers"]): { accepted: number; delivered: number; lost: number; duplicates: number; lostSample: string[] } {
    const devices = this.runs.get(run)?.devices ?? [];
    let accepted = 0;
    let delivered = 0;
    let duplicates = 0;
    const lostSample: string[] = [];
    ledgers.forEach((ledger, device) => {
      const counts = devices[device] ?? [];
      const dropped = new Set(ledger.dropped);
      for (let seq = 1; seq <= ledger.published; seq++) {
        if (dropped.has(seq)) continue;
        accepted++;
        const count = counts[seq] ?? 0;
        if (count > 0) {
          delivered++;
          duplicates += count - 1;
        } else if (lostSample.length < 10) lostSample.push(device + ":" + seq);
      }
    });
    return { accepted, delivered, lost: accepted - delivered, duplicates, lostSample };
  }

  async close(): Promise<void> {
    await Promise.race([new Promise<void>((done) => this.client.end(false, {}, () => done())), sleep(2000)]);
    this.client.end(true);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

// ------------------------------------------------------------------------------- the runs

export interface StormResult {
  readonly case: CaseName;
  readonly schedule: ScheduleName;
  readonly label: string;
  readonly backoff: BackoffSpec;
  readonly devices: number;
  readonly limitPerSecond: number;
  /** The fault lasted this long (kill to listening again, or cut to the end of refusing). */
  readonly outageMs: number;
  readonly backAtSeconds: number;
  /** Connection attempts at the gate from the fault until every device was restored (or the deadline). */
  readonly attempts: number;
  readonly limited: number;
  readonly refused: number;
  readonly upstreamFailed: number;
  readonly connectsAtBroker: number;
  readonly peakPer100ms: number;
  readonly p99Per100ms: number;
  readonly peakPerSecond: number;
  /** Seconds after the broker (or the link) was back; null: not within the deadline. */
  readonly restored: { p50: number | null; p99: number | null; p100: number | null; within: number };
  readonly online: { p50: number | null; p99: number | null; p100: number | null };
  readonly wentOffline: number;
  readonly cameBack: number;
  readonly accepted: number;
  readonly delivered: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly lostSample: string[];
  readonly resent: number;
  readonly attemptBeforeFault: number;
  /** The worker (the devices): CPU during the recovery, its wall time, RSS and heap per device. */
  readonly workerCpuRecoveryMs: number;
  readonly recoveryWallMs: number;
  readonly workerCpuSteadyUsPerDeviceSecond: number;
  readonly rssPerDeviceKb: number;
  readonly heapPerDeviceKb: number;
  readonly connectRampSeconds: number;
  readonly errors: Record<string, number>;
  /** Attempts per 100 ms from 1 s before the fault, for the chart. */
  readonly series: number[];
  /** The same from the devices' side (their transport openings). */
  readonly openingSeries: number[];
  /** What makes the figures less clean without being a failure (said on stderr, kept in --json). */
  readonly notes: string[];
  /** Failed attempts per 100 ms as the devices saw them, and their going offline. */
  readonly failureSeries: number[];
  readonly offlineSeries: number[];
  readonly problems: string[];
}

export interface ScaleResult {
  readonly devices: number;
  readonly connectSeconds: number;
  readonly workerCpuPerConnectMs: number;
  readonly workerCpuSteadyUsPerDeviceSecond: number;
  readonly workerRssMb: number;
  readonly rssPerDeviceKb: number;
  readonly heapPerDeviceKb: number;
  readonly brokerCpuPerConnectMs: number;
  readonly brokerCpuSteadyUsPerDeviceSecond: number;
  readonly brokerRssPerDeviceKb: number;
  readonly gateAndSubscriberCpuSteadyUsPerDeviceSecond: number;
  readonly messagesPerSecond: number;
  readonly problems: string[];
}

export interface FleetResult {
  readonly options: Omit<FleetOptions, "log">;
  readonly storms: StormResult[];
  readonly scale: ScaleResult[];
  readonly ok: boolean;
  readonly problems: string[];
  readonly seconds: number;
  readonly markdown: string;
}

const CHART_BEFORE_MS = 1000;

interface Context {
  readonly options: FleetOptions;
  readonly log: (line: string) => void;
  readonly broker: RunningMosquitto;
  readonly gate: FleetGate;
  readonly subscriber: Subscriber;
  readonly bundle: string;
  readonly pki: string;
  readonly connectsAt: number[];
  runs: number;
  workers: Set<Worker>;
}

function workerConfig(context: Context, run: string, devices: number, backoff: BackoffSpec): WorkerConfig {
  const { options } = context;
  return {
    bundle: context.bundle,
    pki: context.pki,
    port: context.gate.port,
    devices,
    run,
    backoff,
    publishIntervalMs: options.publishIntervalMs,
    rampPerSecond: options.rampPerSecond,
    keepAliveSeconds: 60,
    connectTimeoutMs: 20_000,
    connectDeadlineMs: Math.ceil((devices / options.rampPerSecond) * 1000) + 30_000,
    memo: options.memo,
  };
}

async function startWorker(context: Context, config: WorkerConfig): Promise<Worker> {
  const worker = await Worker.start(config);
  context.workers.add(worker);
  return worker;
}

async function stopWorker(context: Context, worker: Worker): Promise<void> {
  await worker.close();
  context.workers.delete(worker);
}

async function connectFleet(worker: Worker, config: WorkerConfig): Promise<{ seconds: number; online: number }> {
  const started = performance.now();
  const connected = await worker.request<Progress>({ type: "connect" }, "connected", config.connectDeadlineMs + 15_000);
  return { seconds: (performance.now() - started) / 1000, online: connected.online };
}

async function stormRun(context: Context, caseName: CaseName, schedule: Schedule): Promise<StormResult> {
  const { options, gate, broker, subscriber, log } = context;
  const devices = options.devices;
  const run = String(++context.runs) + "-" + process.pid;
  const problems: string[] = [];
  const notes: string[] = [];
  gate.limit(0);
  gate.refuse(false);
  const config = workerConfig(context, run, devices, schedule.backoff);
  const worker = await startWorker(context, config);
  try {
    const ramp = await connectFleet(worker, config);
    if (ramp.online < devices) problems.push(`only ${ramp.online} of ${devices} devices online before the fault`);
    log(`  ${devices} devices online in ${ramp.seconds.toFixed(1)} s; telemetry for ${options.steadySeconds} s`);
    worker.send({ type: "telemetry", on: true });
    await worker.request({ type: "mark", name: "steady" }, "marked", 10_000);
    await sleep(options.steadySeconds * 1000);
    gate.clearCounts();
    const connectsBefore = context.connectsAt.length;
    const faultAt = epochMs();
    await worker.request({ type: "mark", name: "fault", at: faultAt }, "marked", 10_000);
    const limitPerSecond = caseName === "limit" ? options.limitPerSecond : 0;
    gate.limit(limitPerSecond);
    if (caseName === "cut") {
      gate.refuse(true);
      gate.cutAll();
      await sleep(options.outageSeconds * 1000);
      gate.refuse(false);
    } else {
      await broker.kill();
      await sleep(options.outageSeconds * 1000);
      await broker.restart();
    }
    const backAt = epochMs();
    log(`  ${caseName}: down ${((backAt - faultAt) / 1000).toFixed(1)} s; waiting up to ${options.recoverSeconds} s for every device to be restored`);
    const deadline = performance.now() + options.recoverSeconds * 1000;
    let lastSaid = performance.now();
    const allBack = await worker.until((progress) => {
      if (performance.now() - lastSaid > 5000) {
        lastSaid = performance.now();
        log(`    ${((epochMs() - backAt) / 1000).toFixed(0)} s after the broker was back: ${progress.restored}/${devices} restored, ${gate.stats.attempts} attempts (${gate.stats.limited} over the limit)`);
      }
      return progress.restored >= devices;
    }, deadline);
    const measuredUntil = epochMs();
    await worker.request({ type: "mark", name: "recovered" }, "marked", 10_000);
    const gateStats = gate.stats;
    const attemptsSeen = [...gate.accepts];
    const connectsSeen = context.connectsAt.slice(connectsBefore);
    if (!allBack) {
      // Not measured any more: lift the limit and give the rest one longest backoff to come back,
      // so that every accepted message can still be accounted for.
      gate.limit(0);
      const extra = schedule.backoff.maxMs + 15_000;
      log(`    not every device within ${options.recoverSeconds} s: limit lifted, waiting up to ${extra / 1000} s more (not measured)`);
      if (!(await worker.until((progress) => progress.restored >= devices, performance.now() + extra))) {
        problems.push(`only ${worker.progress?.restored ?? 0} of ${devices} devices came back, even with the limit lifted`);
      }
    }
    worker.send({ type: "telemetry", on: false });
    const settled = await worker.request<{ ok: boolean }>({ type: "settle", timeoutMs: 30_000 }, "settled", 40_000);
    if (!settled.ok) problems.push("queues or in-flight windows not empty 30 s after the telemetry stopped");
    const report = await worker.request<WorkerReport>({ type: "report" }, "report", 30_000);
    let expected = 0;
    for (const ledger of report.ledgers) expected += ledger.published - ledger.dropped.length;
    const arrivalDeadline = performance.now() + 20_000;
    while (subscriber.distinct(run) < expected && performance.now() < arrivalDeadline) await sleep(100);
    const tally = subscriber.tally(run, report.ledgers);
    if (tally.lost > 0) problems.push(`${tally.lost} accepted messages never reached the subscriber (${tally.lostSample.join(", ")})`);

    const endAt = allBack ? Math.max(...report.restoredAt) + 1 : measuredUntil;
    const bins = windows(attemptsSeen, faultAt, endAt);
    const sortedBins = [...bins].sort((a, b) => a - b);
    const afterBack = (times: number[]): (number | null)[] => {
      const delays = times.filter((time) => time > 0 && time <= measuredUntil).map((time) => (time - backAt) / 1000).sort((a, b) => a - b);
      const within = delays.length;
      const at = (fraction: number): number | null => {
        const needed = Math.ceil(fraction * devices);
        return needed <= within ? Math.round(delays[needed - 1]! * 100) / 100 : null;
      };
      return [at(0.5), at(0.99), at(1), within];
    };
    const [r50, r99, r100, within] = afterBack(report.restoredAt);
    const [o50, o99, o100] = afterBack(report.onlineAt);
    const loaded = markOf(report.marks, "loaded")!;
    const steady = markOf(report.marks, "steady")!;
    const fault = markOf(report.marks, "fault")!;
    const recovered = markOf(report.marks, "recovered")!;
    const result: StormResult = {
      case: caseName,
      schedule: schedule.name,
      label: schedule.label,
      backoff: schedule.backoff,
      devices,
      limitPerSecond,
      outageMs: Math.round(backAt - faultAt),
      backAtSeconds: seconds(backAt - faultAt),
      attempts: attemptsSeen.filter((time) => time < endAt).length,
      limited: gateStats.limited,
      refused: gateStats.refused,
      upstreamFailed: gateStats.upstreamFailed,
      connectsAtBroker: connectsSeen.filter((time) => time >= faultAt && time < endAt).length,
      peakPer100ms: sortedBins.at(-1) ?? 0,
      p99Per100ms: percentile(sortedBins, 0.99),
      peakPerSecond: peakPerSecond(attemptsSeen, faultAt, endAt),
      restored: { p50: r50 as number | null, p99: r99 as number | null, p100: r100 as number | null, within: within as number },
      online: { p50: o50 as number | null, p99: o99 as number | null, p100: o100 as number | null },
      wentOffline: report.offlineAt.filter((time) => time > 0).length,
      cameBack: report.restoredAt.filter((time) => time > 0).length,
      ...tally,
      resent: report.stats.resent,
      attemptBeforeFault: report.attemptBeforeFault,
      workerCpuRecoveryMs: Math.round(cpuMs(fault, recovered)),
      recoveryWallMs: Math.round(recovered.at - fault.at),
      workerCpuSteadyUsPerDeviceSecond: Math.round((cpuMs(steady, fault) * 1000) / devices / ((fault.at - steady.at) / 1000)),
      rssPerDeviceKb: Math.round((fault.rss - loaded.rss) / devices / 1024),
      heapPerDeviceKb: Math.round(((fault.heapUsed - loaded.heapUsed) / devices / 1024) * 10) / 10,
      connectRampSeconds: Math.round(ramp.seconds * 10) / 10,
      errors: report.errors,
      series: windows(attemptsSeen, faultAt - CHART_BEFORE_MS, endAt + 2000),
      openingSeries: windows(report.openings, faultAt - CHART_BEFORE_MS, endAt + 2000),
      notes,
      failureSeries: windows(report.failures, faultAt - CHART_BEFORE_MS, endAt + 2000),
      offlineSeries: windows(report.offlineAt, faultAt - CHART_BEFORE_MS, endAt + 2000),
      problems,
    };
    if (report.attemptBeforeFault > 0) notes.push(`a device's backoff counter was ${report.attemptBeforeFault} at the fault (an initial connection had failed): its first delays were longer`);
    if (result.wentOffline < devices) problems.push(`only ${result.wentOffline} of ${devices} devices saw the fault`);
    return result;
  } finally {
    gate.limit(0);
    gate.refuse(false);
    await stopWorker(context, worker);
  }
}

async function scaleRun(context: Context, devices: number): Promise<ScaleResult> {
  const { options, broker, log } = context;
  const run = "s" + String(++context.runs) + "-" + process.pid;
  const config = workerConfig(context, run, devices, scheduleOf("jitter", devices, 1).backoff);
  const worker = await startWorker(context, config);
  const problems: string[] = [];
  try {
    // A fresh broker process, so its RSS grows from its start-up size (freed memory is not returned).
    await broker.restart();
    await sleep(300);
    const brokerBefore = processUsage(broker.pid);
    const ramp = await connectFleet(worker, config);
    const brokerConnected = processUsage(broker.pid);
    if (ramp.online < devices) problems.push(`only ${ramp.online} of ${devices} devices online`);
    log(`  ${ramp.online}/${devices} devices online in ${ramp.seconds.toFixed(1)} s; telemetry for ${options.scaleSteadySeconds} s`);
    worker.send({ type: "telemetry", on: true });
    await sleep(1000);
    const steady = await worker.request<{ mark: Mark }>({ type: "mark", name: "steady" }, "marked", 10_000);
    const brokerSteady = processUsage(broker.pid);
    const mainSteady = process.cpuUsage();
    await sleep(options.scaleSteadySeconds * 1000);
    const end = await worker.request<{ mark: Mark }>({ type: "mark", name: "end" }, "marked", 10_000);
    const brokerEnd = processUsage(broker.pid);
    const mainEnd = process.cpuUsage(mainSteady);
    worker.send({ type: "telemetry", on: false });
    const report = await worker.request<WorkerReport>({ type: "report" }, "report", 30_000);
    const loaded = markOf(report.marks, "loaded")!;
    const connect = markOf(report.marks, "connect")!;
    const connected = markOf(report.marks, "connected")!;
    const steadySeconds = (end.mark.at - steady.mark.at) / 1000;
    return {
      devices,
      connectSeconds: Math.round(ramp.seconds * 10) / 10,
      workerCpuPerConnectMs: Math.round((cpuMs(connect, connected) / devices) * 100) / 100,
      workerCpuSteadyUsPerDeviceSecond: Math.round((cpuMs(steady.mark, end.mark) * 1000) / devices / steadySeconds),
      workerRssMb: Math.round(end.mark.rss / 1048576),
      rssPerDeviceKb: Math.round((end.mark.rss - loaded.rss) / devices / 1024),
      heapPerDeviceKb: Math.round(((end.mark.heapUsed - loaded.heapUsed) / devices / 1024) * 10) / 10,
      brokerCpuPerConnectMs: Math.round(((brokerConnected.cpuMs - brokerBefore.cpuMs) / devices) * 100) / 100,
      brokerCpuSteadyUsPerDeviceSecond: Math.round(((brokerEnd.cpuMs - brokerSteady.cpuMs) * 1000) / devices / steadySeconds),
      brokerRssPerDeviceKb: Math.round((brokerEnd.rss - brokerBefore.rss) / devices / 1024),
      gateAndSubscriberCpuSteadyUsPerDeviceSecond: Math.round((mainEnd.user + mainEnd.system) / devices / steadySeconds),
      messagesPerSecond: Math.round(devices / (options.publishIntervalMs / 1000)),
      problems,
    };
  } finally {
    await stopWorker(context, worker);
  }
}

// ------------------------------------------------------------------------------- the report

const CASE_TITLES: Record<CaseName, string> = {
  restart: "Broker restart",
  cut: "Every link cut",
  limit: "Broker restart, connection-rate limit",
};

const shown = (value: number | null): string => (value === null ? "not within" : value.toFixed(1));
const thousands = (value: number): string => value.toLocaleString("en-US");

export function markdownOf(result: Pick<FleetResult, "options" | "storms" | "scale">): string {
  const { options, storms, scale } = result;
  const lines: string[] = [];
  if (storms.length > 0) {
    lines.push(
      `${options.devices} devices, QoS 1 telemetry every ${options.publishIntervalMs / 1000} s each; outage ${options.outageSeconds} s; ` +
        `restored times in seconds after the broker (or the link) was back, measured for up to ${options.recoverSeconds} s; attempts counted at the gate from the fault until every device was restored.`,
      "",
      "| Case | Schedule | Attempts (per device) | Peak / 100 ms | p99 / 100 ms | Peak / s | Refused by the limit | Restored 50 % | 99 % | 100 % | Accepted | Delivered | Lost | Duplicates |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const storm of storms) {
      const limit = storm.limitPerSecond > 0 ? ` (${storm.limitPerSecond}/s)` : "";
      const notWithin = storm.restored.p100 === null ? ` (${storm.restored.within}/${storm.devices} within ${options.recoverSeconds} s)` : "";
      lines.push(
        `| ${CASE_TITLES[storm.case]}${limit} | ${storm.label} | ${thousands(storm.attempts)} (${(storm.attempts / storm.devices).toFixed(1)}) | ${storm.peakPer100ms} | ${storm.p99Per100ms} | ${storm.peakPerSecond} | ` +
          `${storm.limitPerSecond > 0 ? thousands(storm.limited) : "-"} | ${shown(storm.restored.p50)} | ${shown(storm.restored.p99)} | ${shown(storm.restored.p100)}${notWithin} | ` +
          `${thousands(storm.accepted)} | ${thousands(storm.delivered)} | ${storm.lost} | ${storm.duplicates} |`,
      );
    }
    lines.push(
      "",
      "The same runs: CONNACKs after the broker was back (restored also waits for the offline queue to drain, one message per 500 ms), and the devices' process (CPU while recovering and its share of one core, steady CPU per device, memory per device):",
      "",
      "| Case | Schedule | Online (CONNACK) 50 / 99 / 100 % s | Recovery: CPU s / wall s (share) | Steady CPU µs per device-second | RSS / device KB | JS heap / device KB | Re-sent after reconnect |",
      "|---|---|---|---|---|---|---|---|",
    );
    for (const storm of storms) {
      lines.push(
        `| ${CASE_TITLES[storm.case]} | ${storm.label} | ${shown(storm.online.p50)} / ${shown(storm.online.p99)} / ${shown(storm.online.p100)} | ${(storm.workerCpuRecoveryMs / 1000).toFixed(1)} / ${(storm.recoveryWallMs / 1000).toFixed(1)} (${Math.round((100 * storm.workerCpuRecoveryMs) / Math.max(1, storm.recoveryWallMs))} %) | ` +
          `${storm.workerCpuSteadyUsPerDeviceSecond} | ${storm.rssPerDeviceKb} | ${storm.heapPerDeviceKb} | ${storm.resent} |`,
      );
    }
  }
  if (scale.length > 0) {
    lines.push(
      "",
      `Cost by fleet size (steady state: QoS 1 every ${options.publishIntervalMs / 1000} s per device, ${options.scaleSteadySeconds} s measured; connections ramped at ${options.rampPerSecond}/s):`,
      "",
      "| Devices | Connect ramp s | Devices' CPU per connect ms | Devices' CPU µs per device-second | Devices' RSS MB | RSS / device KB | JS heap / device KB | Broker CPU per connect ms | Broker CPU µs per device-second | Broker RSS / device KB | Gate + subscriber CPU µs per device-second |",
      "|---|---|---|---|---|---|---|---|---|---|---|",
    );
    for (const row of scale) {
      lines.push(
        `| ${thousands(row.devices)} | ${row.connectSeconds} | ${row.workerCpuPerConnectMs} | ${row.workerCpuSteadyUsPerDeviceSecond} | ${row.workerRssMb} | ${row.rssPerDeviceKb} | ${row.heapPerDeviceKb} | ` +
          `${row.brokerCpuPerConnectMs} | ${row.brokerCpuSteadyUsPerDeviceSecond} | ${row.brokerRssPerDeviceKb} | ${row.gateAndSubscriberCpuSteadyUsPerDeviceSecond} |`,
      );
    }
  }
  return lines.join("\n") + "\n";
}

export function chartOf(options: Pick<FleetOptions, "devices" | "outageSeconds">, storms: readonly StormResult[]): string {
  const panels: ChartPanel[] = [];
  const subtitles: string[] = [];
  for (const caseName of CASES) {
    const runs = storms.filter((storm) => storm.case === caseName);
    if (runs.length === 0) continue;
    const span = Math.min(90, Math.max(...runs.map((storm) => storm.series.length)) * (WINDOW_MS / 1000));
    const limit = runs[0]!.limitPerSecond;
    panels.push({
      title: CASE_TITLES[caseName] + (limit > 0 ? ` (${limit} attempts/s admitted)` : ""),
      startSeconds: -CHART_BEFORE_MS / 1000,
      windowSeconds: WINDOW_MS / 1000,
      spanSeconds: Math.ceil(span),
      outage: [0, Math.max(...runs.map((storm) => storm.outageMs)) / 1000],
      limitPerWindow: limit > 0 ? limit / (1000 / WINDOW_MS) : undefined,
      series: runs.map((storm) => {
        const schedule = scheduleOf(storm.schedule, storm.devices, Math.max(1, storm.limitPerSecond));
        return { label: storm.label, color: schedule.color, dashed: schedule.dashed, counts: storm.series };
      }),
    });
    subtitles.push("");
  }
  return fleetChartSvg(`Connection attempts at the broker per 100 ms, ${options.devices} devices (npm run fleet)`, panels, subtitles);
}

// ------------------------------------------------------------------------------- the whole run

export async function runFleet(options: FleetOptions): Promise<FleetResult> {
  const log = options.log ?? ((line: string) => process.stderr.write(`[fleet] ${line}\n`));
  const started = performance.now();
  const directory = mkdtempSync(join(tmpdir(), "iotlink-fleet-"));
  const problems: string[] = [];
  const storms: StormResult[] = [];
  const scale: ScaleResult[] = [];
  let broker: RunningMosquitto | undefined;
  let gate: FleetGate | undefined;
  let subscriber: Subscriber | undefined;
  let context: Context | undefined;
  const onSignal = (): void => {
    for (const worker of context?.workers ?? []) worker.kill();
    void broker?.stop().finally(() => {
      rmSync(directory, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const pki = join(directory, "pki");
    ensureDevPki({ directory: pki });
    const bundle = await bundleForDesktop(HOST_ENTRY, join(directory, "host.mjs"));
    const connectsAt: number[] = [];
    broker = await startMosquitto({
      tls: {
        caFile: join(pki, DEV_PKI_FILES.caCertificatePem),
        certFile: join(pki, DEV_PKI_FILES.brokerChainPem),
        keyFile: join(pki, DEV_PKI_FILES.brokerKeyPem),
      },
      persistence: true,
      logTypes: ["error", "warning", "notice", "information"],
      extraConfig: ["max_queued_messages 1000000", "max_inflight_messages 100"],
      onLog: (line) => {
        if (line.includes("New client connected")) connectsAt.push(epochMs());
      },
    });
    gate = await startFleetGate({ targetPort: broker.port });
    subscriber = await Subscriber.start(broker, pki);
    context = { options, log, broker, gate, subscriber, bundle, pki, connectsAt, runs: 0, workers: new Set() };
    log(`Mosquitto on ${LOOPBACK}:${broker.port} (mutual TLS, persistence), gate on ${LOOPBACK}:${gate.port}`);

    const plan: { caseName: CaseName; schedule: Schedule }[] = [];
    for (const caseName of options.cases) {
      for (const name of options.schedules) {
        if (name === "sized" && caseName !== "limit") continue;
        plan.push({ caseName, schedule: scheduleOf(name, options.devices, options.limitPerSecond) });
      }
    }
    for (const [index, { caseName, schedule }] of plan.entries()) {
      log(`run ${index + 1}/${plan.length}: ${CASE_TITLES[caseName]}, ${schedule.label} (${((performance.now() - started) / 1000).toFixed(0)} s so far)`);
      const storm = await stormRun(context, caseName, schedule);
      storms.push(storm);
      for (const problem of storm.problems) problems.push(`${caseName} / ${schedule.name}: ${problem}`);
      for (const note of storm.notes) log(`  note: ${note}`);
      log(
        `  attempts ${storm.attempts} (peak ${storm.peakPer100ms}/100 ms, ${storm.peakPerSecond}/s), restored 50/99/100 %: ${shown(storm.restored.p50)} / ${shown(storm.restored.p99)} / ${shown(storm.restored.p100)} s; ` +
          `${storm.accepted} accepted, ${storm.lost} lost, ${storm.duplicates} duplicates`,
      );
    }
    for (const [index, devices] of options.scale.entries()) {
      log(`scale ${index + 1}/${options.scale.length}: ${devices} devices, steady state (${((performance.now() - started) / 1000).toFixed(0)} s so far)`);
      const row = await scaleRun(context, devices);
      scale.push(row);
      for (const problem of row.problems) problems.push(`scale ${devices}: ${problem}`);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    for (const worker of context?.workers ?? []) worker.kill();
    await subscriber?.close();
    await gate?.close();
    await broker?.stop();
    rmSync(directory, { recursive: true, force: true });
  }
  const { log: _log, ...shownOptions } = options;
  const markdown = markdownOf({ options: shownOptions, storms, scale });
  const result: FleetResult = { options: shownOptions, storms, scale, ok: problems.length === 0, problems, seconds: Math.round((performance.now() - started) / 1000), markdown };
  if (options.svg && storms.length > 0) writeFileSync(options.svg, chartOf(options, storms));
  if (options.markdown) writeFileSync(options.markdown, markdown);
  if (options.json) writeFileSync(options.json, JSON.stringify(result, null, 1) + "\n");
  return result;
}

// ------------------------------------------------------------------------------- command line

const USAGE = `npm run fleet -- [options]

A fleet of simulated devices (the real client over the desktop host, mutual TLS) against a real
Mosquitto through broker restarts and link cuts; prints a Markdown table of the reconnect storms.

  --devices N        devices (default 1000; --quick: 50)
  --quick            CI size: one broker restart, schedules plain and jitter, 1 s outage, no scale table
  --cases LIST       restart,cut,limit (default all)
  --schedules LIST   plain,jitter,python,sized (default all; sized runs in the limit case only)
  --outage S         seconds the broker or the link is down (default 5)
  --interval S       seconds between QoS 1 messages of a device (default 5)
  --limit R          the limit case's connection attempts admitted per second (default 100)
  --recover S        seconds after the broker is back to wait for every device, measured (default 60)
  --steady S         seconds of telemetry before the fault (default 5)
  --ramp R           initial connections per second (default 250)
  --scale LIST       fleet sizes for the cost table, e.g. 100,1000,5000 (default 100,N; "none")
  --no-memo          parse the shared certificate, key and CA at every attempt, as the desktop host
                     does for one device (by default the worker reuses them: tools/fleet-memo.ts)
  --svg PATH         write the chart (attempts per 100 ms against time, one line per schedule)
  --markdown PATH    write the tables
  --json PATH        write every figure
`;

function list<T extends string>(value: string | undefined, all: readonly T[], name: string, fallback: readonly T[]): T[] {
  if (value === undefined) return [...fallback];
  const items = value.split(",").map((item) => item.trim()).filter(Boolean);
  for (const item of items) if (!all.includes(item as T)) throw new UsageError(`${name}: unknown ${JSON.stringify(item)} (one of ${all.join(", ")})`);
  if (items.length === 0) throw new UsageError(`${name} needs at least one of ${all.join(", ")}`);
  return items as T[];
}

export function optionsFromCommandLine(argv: readonly string[]): FleetOptions {
  const values = readCommandLine(
    {
      devices: { type: "string" },
      quick: { type: "boolean" },
      "no-memo": { type: "boolean" },
      cases: { type: "string" },
      schedules: { type: "string" },
      outage: { type: "string" },
      interval: { type: "string" },
      limit: { type: "string" },
      recover: { type: "string" },
      steady: { type: "string" },
      ramp: { type: "string" },
      scale: { type: "string" },
      svg: { type: "string" },
      markdown: { type: "string" },
      json: { type: "string" },
    },
    argv,
  );
  helpIfAsked(values, USAGE);
  const quick = values.quick === true;
  const number = (value: string | undefined, name: string, fallback: number, min: number, max: number): number => (value === undefined ? fallback : wholeNumber(value, name, min, max));
  const devices = number(values.devices, "--devices", quick ? 50 : 1000, 1, 10000);
  const scale =
    values.scale === undefined
      ? quick
        ? []
        : [...new Set([100, devices])].filter((size) => size <= devices).sort((a, b) => a - b)
      : values.scale === "none"
        ? []
        : values.scale.split(",").map((item) => wholeNumber(item.trim(), "--scale", 1, 10000));
  return {
    devices,
    cases: list(values.cases, CASES, "--cases", quick ? ["restart"] : CASES),
    schedules: list(values.schedules, SCHEDULES, "--schedules", quick ? ["plain", "jitter"] : SCHEDULES),
    outageSeconds: number(values.outage, "--outage", quick ? 1 : 5, 0, 600),
    publishIntervalMs: number(values.interval, "--interval", quick ? 1 : 5, 1, 3600) * 1000,
    limitPerSecond: number(values.limit, "--limit", 100, 1, 100000),
    recoverSeconds: number(values.recover, "--recover", quick ? 30 : 60, 1, 3600),
    steadySeconds: number(values.steady, "--steady", quick ? 1 : 5, 0, 600),
    rampPerSecond: number(values.ramp, "--ramp", 250, 1, 100000),
    memo: values["no-memo"] !== true,
    scale,
    scaleSteadySeconds: quick ? 3 : 10,
    svg: values.svg === undefined ? undefined : resolve(values.svg),
    markdown: values.markdown === undefined ? undefined : resolve(values.markdown),
    json: values.json === undefined ? undefined : resolve(values.json),
  };
}

async function main(): Promise<void> {
  const options = optionsFromCommandLine(process.argv.slice(2));
  if (!findMosquitto()) throw new CommandError(MOSQUITTO_MISSING);
  const result = await runFleet(options);
  process.stdout.write(result.markdown);
  if (options.svg) process.stdout.write(`\nChart: ${options.svg}\n`);
  if (result.ok) process.stdout.write(`\nfleet: OK in ${result.seconds} s: every device came back, 0 accepted messages lost\n`);
  else process.stdout.write(`\nfleet: PROBLEMS in ${result.seconds} s:\n  ${result.problems.join("\n  ")}\n`);
  process.exit(result.ok ? 0 : 1);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void runCommand("fleet", main);
}
