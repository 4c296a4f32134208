// The devices of `npm run fleet`, in their own process (so its CPU time and RSS are theirs alone):
// N real clients, each the core (MqttClient) with the Moddable host's transport and clock over the
// desktop host, from the bundle tools/fleet.ts made with bundleForDesktop (what loadDesktopHost
// loads). Each publishes QoS 1 telemetry every `publishIntervalMs` (phases spread evenly), to
// `fleet/<run>` with payload "<device>:<seq>". Driven over IPC by tools/fleet.ts:
//
//   parent -> worker: config, connect, telemetry (on/off), mark, settle, report, close
//   worker -> parent: ready, connected, marked, progress (every 200 ms), settled, report
//
// Every wait here has a deadline; the parent kills the process if it outlives its run.
import { pathToFileURL } from "node:url";
import type { ClientOptions, MqttClient } from "../modules/client.ts";
import type { DesktopHost } from "./desktop-build.ts";
import { epochMs, LOOPBACK } from "./fleet-gate.ts";
import { memoizeCredentialParsing, memoStats, type MemoStats } from "./fleet-memo.ts";

export interface BackoffSpec {
  readonly baseMs: number;
  readonly maxMs: number;
  readonly stableMs: number;
  readonly jitter: boolean;
}

export interface WorkerConfig {
  /** The bundle of tools/desktop-host-entry.ts. */
  readonly bundle: string;
  /** The development PKI (ca.der, device-cert.der, device-key.der). */
  readonly pki: string;
  /** The gate's port on 127.0.0.1. */
  readonly port: number;
  readonly devices: number;
  readonly run: string;
  readonly backoff: BackoffSpec;
  readonly publishIntervalMs: number;
  /** Initial connections started per second (a gentle ramp, not measured as a storm). */
  readonly rampPerSecond: number;
  readonly keepAliveSeconds: number;
  readonly connectTimeoutMs: number;
  /** Deadline for the initial connection of every device. */
  readonly connectDeadlineMs: number;
  /** Reuse the parsed certificate, key and CA across attempts (tools/fleet-memo.ts). */
  readonly memo: boolean;
}

export interface Mark {
  readonly name: string;
  readonly at: number;
  /** process.cpuUsage(), µs. */
  readonly userUs: number;
  readonly systemUs: number;
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
}

export interface Progress {
  readonly type: "progress";
  readonly at: number;
  /** Devices whose state is online (restored: resubscribed and drained). */
  readonly online: number;
  /** Since the last "fault" mark: devices that went offline, came online (CONNACK), and were restored. */
  readonly wentOffline: number;
  readonly cameOnline: number;
  readonly restored: number;
  /** Devices per state (index = State: 0 idle ... 7 closing). */
  readonly states: number[];
}

export interface DeviceLedger {
  /** Seqs 1..published were accepted (Sent or Queued), except those in dropped. */
  readonly published: number;
  readonly dropped: number[];
}

export interface WorkerReport {
  readonly type: "report";
  readonly devices: number;
  readonly ledgers: DeviceLedger[];
  readonly marks: Mark[];
  /** Epoch ms of every transport opening (state "opening"): attempts as the devices made them. */
  readonly openings: number[];
  /** Epoch ms of every failed attempt (an error event), as the devices saw them. */
  readonly failures: number[];
  /** Per device, since the fault mark: epoch ms of going offline, online and restored (0: never). */
  readonly offlineAt: number[];
  readonly onlineAt: number[];
  readonly restoredAt: number[];
  readonly offlineCount: number;
  /** Largest backoff attempt counter seen before the fault (0: every device starts the storm fresh). */
  readonly attemptBeforeFault: number;
  readonly errors: Record<string, number>;
  readonly stats: { sent: number; acknowledged: number; resent: number; timedOut: number; dropped: number; connects: number; protocolErrors: number; callbackErrors: number };
  readonly traces: number;
  readonly lastTraces: string[];
  readonly memo: MemoStats;
}

type ParentMessage =
  | { type: "config"; config: WorkerConfig }
  | { type: "connect" }
  | { type: "telemetry"; on: boolean }
  | { type: "mark"; name: string; at?: number }
  | { type: "settle"; timeoutMs: number }
  | { type: "report" }
  | { type: "close" };

const STATE_OPENING = 2;
const STATE_ONLINE = 6;
const ACCEPTED_DROPPED = 2;
const ACK_DROPPED = 2;

const send = (message: object): void => {
  process.send?.(message);
};

const marks: Mark[] = [];
function mark(name: string, at = epochMs()): Mark {
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  const entry = { name, at, userUs: cpu.user, systemUs: cpu.system, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external + memory.arrayBuffers };
  marks.push(entry);
  return entry;
}

interface Device {
  readonly index: number;
  readonly client: MqttClient;
  readonly topic: string;
  seq: number;
  readonly dropped: number[];
  nextDue: number;
  offlineAt: number;
  onlineAt: number;
  restoredAt: number;
}

async function main(config: WorkerConfig): Promise<void> {
  if (config.memo) memoizeCredentialParsing();
  const host = (await import(pathToFileURL(config.bundle).href)) as DesktopHost;
  host.setResourceDirectory(config.pki);
  host.resetConfig();
  // The library manifest's TLS config (manifest_iotlink.json): no DHE with a client certificate.
  host.mergeConfig({ tls: { DHE_RSA: false } });
  let traces = 0;
  const lastTraces: string[] = [];
  host.setTraceSink((text) => {
    traces++;
    lastTraces.push(text.trimEnd());
    if (lastTraces.length > 20) lastTraces.shift();
  });
  mark("loaded");

  const openings: number[] = [];
  const failures: number[] = [];
  const errors: Record<string, number> = {};
  let faultMarked = false;
  let offlineCount = 0;
  let attemptBeforeFault = 0;
  let counts = { wentOffline: 0, cameOnline: 0, restored: 0 };

  const devices: Device[] = [];
  for (let index = 0; index < config.devices; index++) {
    const client = new host.MqttClient({
      clientId: "fleet-" + config.run + "-" + index,
      keepAliveSeconds: config.keepAliveSeconds,
      connectTimeoutMs: config.connectTimeoutMs,
      backoff: { ...config.backoff },
      transport: host.moddablePlatform.createTransport({
        host: LOOPBACK,
        port: config.port,
        serverName: "localhost",
        caResource: "ca.der",
        certificateResource: "device-cert.der",
        keyResource: "device-key.der",
      }),
      clock: host.moddablePlatform.createClock(),
    } as ClientOptions) as unknown as MqttClient;
    const device: Device = { index, client, topic: "fleet/" + config.run, seq: 0, dropped: [], nextDue: 0, offlineAt: 0, onlineAt: 0, restoredAt: 0 };
    client.on("state", (state) => {
      if (state === STATE_OPENING) openings.push(epochMs());
    });
    client.on("offline", () => {
      offlineCount++;
      if (faultMarked && device.offlineAt === 0) {
        device.offlineAt = epochMs();
        counts.wentOffline++;
      }
    });
    client.on("online", () => {
      if (device.offlineAt !== 0 && device.onlineAt === 0) {
        device.onlineAt = epochMs();
        counts.cameOnline++;
      }
    });
    client.on("restored", () => {
      if (device.offlineAt !== 0 && device.restoredAt === 0) {
        device.restoredAt = epochMs();
        counts.restored++;
      }
    });
    client.on("error", (error) => {
      failures.push(epochMs());
      const key = error.code + ": " + error.message.replace(/\d+/g, "#").slice(0, 100);
      errors[key] = (errors[key] ?? 0) + 1;
    });
    devices.push(device);
  }
  mark("created");

  const progress = (): Progress => {
    const states = [0, 0, 0, 0, 0, 0, 0, 0];
    let online = 0;
    for (const device of devices) {
      const state = device.client.state as number;
      states[state] = (states[state] ?? 0) + 1;
      if (state === STATE_ONLINE) online++;
    }
    return { type: "progress", at: epochMs(), online, ...counts, states };
  };
  const progressTimer = setInterval(() => send(progress()), 200);

  let telemetry: ReturnType<typeof setInterval> | undefined;
  const publish = (device: Device): void => {
    const seq = ++device.seq;
    const accepted = device.client.publish(device.topic, device.index + ":" + seq, 1, false, (status) => {
      if (status === ACK_DROPPED) device.dropped.push(seq);
    });
    if (accepted === ACCEPTED_DROPPED) device.dropped.push(seq);
  };
  const startTelemetry = (): void => {
    if (telemetry) return;
    const start = performance.now();
    for (const device of devices) device.nextDue = start + ((device.index + 0.5) * config.publishIntervalMs) / devices.length;
    telemetry = setInterval(() => {
      const now = performance.now();
      for (const device of devices) {
        if (device.nextDue > now) continue;
        publish(device);
        device.nextDue += config.publishIntervalMs;
        if (device.nextDue <= now) device.nextDue = now + config.publishIntervalMs;
      }
    }, 20);
  };

  const connectAll = async (): Promise<void> => {
    const perTick = Math.max(1, Math.round(config.rampPerSecond / 100));
    let next = 0;
    await new Promise<void>((done) => {
      const ramp = setInterval(() => {
        for (let i = 0; i < perTick && next < devices.length; i++) devices[next++]!.client.connect();
        if (next >= devices.length) {
          clearInterval(ramp);
          done();
        }
      }, 10);
    });
    const deadline = performance.now() + config.connectDeadlineMs;
    while (performance.now() < deadline && devices.some((device) => (device.client.state as number) !== STATE_ONLINE)) await sleep(50);
  };

  const settle = async (timeoutMs: number): Promise<boolean> => {
    const deadline = performance.now() + timeoutMs;
    const busy = (): boolean => devices.some((device) => device.client.queuedCount > 0 || device.client.inflightCount > 0);
    while (busy() && performance.now() < deadline) await sleep(50);
    return !busy();
  };

  const report = (): WorkerReport => {
    const stats = { sent: 0, acknowledged: 0, resent: 0, timedOut: 0, dropped: 0, connects: 0, protocolErrors: 0, callbackErrors: 0 };
    for (const device of devices) {
      for (const key of Object.keys(stats) as (keyof typeof stats)[]) stats[key] += device.client.stats[key];
    }
    return {
      type: "report",
      devices: devices.length,
      ledgers: devices.map((device) => ({ published: device.seq, dropped: device.dropped })),
      marks,
      openings,
      failures,
      offlineAt: devices.map((device) => device.offlineAt),
      onlineAt: devices.map((device) => device.onlineAt),
      restoredAt: devices.map((device) => device.restoredAt),
      offlineCount,
      attemptBeforeFault,
      errors,
      stats,
      traces,
      lastTraces,
      memo: memoStats,
    };
  };

  process.on("message", (message: ParentMessage) => {
    void (async () => {
      switch (message.type) {
        case "connect": {
          mark("connect");
          await connectAll();
          const online = mark("connected");
          send({ ...progress(), type: "connected", mark: online });
          break;
        }
        case "telemetry":
          if (message.on) startTelemetry();
          else if (telemetry) {
            clearInterval(telemetry);
            telemetry = undefined;
          }
          break;
        case "mark":
          if (message.name === "fault") {
            faultMarked = true;
            counts = { wentOffline: 0, cameOnline: 0, restored: 0 };
            for (const device of devices) {
              device.offlineAt = device.onlineAt = device.restoredAt = 0;
              attemptBeforeFault = Math.max(attemptBeforeFault, device.client.attempt);
            }
          }
          send({ type: "marked", mark: mark(message.name, message.at) });
          break;
        case "settle":
          send({ type: "settled", ok: await settle(message.timeoutMs), mark: mark("settled") });
          break;
        case "report":
          send(report());
          break;
        case "close":
          clearInterval(progressTimer);
          if (telemetry) clearInterval(telemetry);
          for (const device of devices) device.client.disconnect();
          await sleep(Math.min(3000, 200 + devices.length));
          process.exit(0);
      }
    })().catch((error: unknown) => {
      send({ type: "failed", message: error instanceof Error ? error.stack ?? error.message : String(error) });
    });
  });
  send({ type: "ready", mark: marks[marks.length - 1] });
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

// The parent's IPC channel closing (the parent died) ends the worker: no orphaned fleet.
process.on("disconnect", () => process.exit(0));
process.once("message", (message: ParentMessage) => {
  if (message.type !== "config") return;
  main(message.config).catch((error: unknown) => {
    send({ type: "failed", message: error instanceof Error ? error.stack ?? error.message : String(error) });
    process.exit(1);
  });
});
