// Shared parts of the reliability suite and of tools/soak.ts: the real client (the core over the
// Moddable host over the desktop SecureSocket, in this process), a ledger of what was published
// and what arrived, an MQTT.js observer with a persistent session, and small waiting helpers.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mqtt, { type MqttClient as ObserverClient } from "mqtt";
import type { ClientOptions, MqttClient } from "../../modules/client.ts";
import { DEV_PKI_FILES } from "../../tools/certs.ts";
import { loadDesktopHost, type DesktopHost } from "../../tools/desktop-build.ts";
import { startMosquitto, type MosquittoOptions, type MosquittoTls, type RunningMosquitto } from "../../tools/mosquitto.ts";
import type { Fixtures } from "../desktop/fixtures.ts";

export const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** Polls `condition` every 10 ms; rejects with `what` after the timeout. */
export async function waitFor(condition: () => boolean, timeoutMs: number, what: string | (() => string)): Promise<number> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error("timed out after " + timeoutMs + " ms waiting for " + (typeof what === "string" ? what : what()));
    await sleep(10);
  }
  return performance.now() - started;
}

const bundleDirectory = mkdtempSync(join(tmpdir(), "iotlink-reliability-"));
process.once("exit", () => rmSync(bundleDirectory, { recursive: true, force: true }));
const hosts = new Map<string, Promise<DesktopHost>>();

/**
 * The core and the Moddable host, bundled once per `instance`. Each instance has its own module
 * state (its own TimerClock, resource directory, config and trace sink): two clients that must not
 * share the one timer of a clock each get their own instance.
 */
export function loadHost(instance = "main"): Promise<DesktopHost> {
  let loaded = hosts.get(instance);
  if (!loaded) {
    loaded = loadDesktopHost(join(bundleDirectory, "host-" + instance + ".mjs"));
    hosts.set(instance, loaded);
  }
  return loaded;
}

/** Everything a host instance writes with trace(), per instance (see prepareHost). */
export const traced = new Map<DesktopHost, string[]>();

/**
 * Points a host instance at the fixtures' PKI, with the library manifest's TLS config (DHE_RSA off:
 * manifest_iotlink.json), and captures its trace output.
 */
export async function prepareHost(instance: string, fixtures: Fixtures, config: { DHE_RSA?: boolean } = {}): Promise<DesktopHost> {
  const host = await loadHost(instance);
  host.setResourceDirectory(fixtures.pki);
  host.resetConfig();
  host.mergeConfig({ tls: { DHE_RSA: config.DHE_RSA ?? false } });
  const lines: string[] = [];
  traced.set(host, lines);
  host.setTraceSink((text) => {
    lines.push(text);
    if (lines.length > 10_000) lines.splice(0, 5000);
  });
  return host;
}

export function brokerTls(fixtures: Fixtures, extra: Partial<MosquittoTls> = {}): MosquittoTls {
  const pki = (name: string): string => join(fixtures.pki, name);
  return {
    caFile: pki(DEV_PKI_FILES.caCertificatePem),
    certFile: pki(DEV_PKI_FILES.brokerChainPem),
    keyFile: pki(DEV_PKI_FILES.brokerKeyPem),
    ...extra,
  };
}

/** A mutual-TLS Mosquitto with the development PKI; `max_queued_messages` raised for observers. */
export function startTlsBroker(fixtures: Fixtures, options: Partial<MosquittoOptions> = {}): Promise<RunningMosquitto> {
  return startMosquitto({
    tls: brokerTls(fixtures),
    logTypes: ["error", "warning", "notice", "information"],
    extraConfig: ["max_queued_messages 100000", "max_inflight_messages 50"],
    ...options,
  });
}

// ------------------------------------------------------------------------------- the client

export interface Recorded {
  /** ms since the rig was made (performance.now based). */
  readonly at: number;
  readonly name: string;
  readonly detail: string;
  readonly a: number;
  readonly b: number;
}

export interface RigOptions extends Partial<Omit<ClientOptions, "transport" | "clock">> {
  readonly port: number;
  readonly host?: string;
  readonly serverName?: string;
  readonly plaintext?: boolean;
  readonly caResource?: string;
  readonly certificateResource?: string;
  readonly keyResource?: string;
}

/** One real client with every event recorded. */
export class ClientRig {
  readonly client: MqttClient;
  readonly events: Recorded[] = [];
  private readonly started = performance.now();

  constructor(readonly host: DesktopHost, options: RigOptions) {
    const { port, host: hostName, serverName, plaintext, caResource, certificateResource, keyResource, ...clientOptions } = options;
    const endpoint = plaintext
      ? { host: hostName ?? "127.0.0.1", port, plaintext: true }
      : {
          host: hostName ?? "127.0.0.1",
          port,
          serverName: serverName ?? "localhost",
          caResource: caResource ?? "ca.der",
          certificateResource: certificateResource ?? "device-cert.der",
          keyResource: keyResource ?? "device-key.der",
        };
    this.client = new host.MqttClient({
      clientId: "reliability-device",
      ...clientOptions,
      transport: host.moddablePlatform.createTransport(endpoint),
      clock: host.moddablePlatform.createClock(),
    } as ClientOptions) as unknown as MqttClient;
    const record = (name: string, detail = "", a = 0, b = 0): void => {
      this.events.push({ at: this.now(), name, detail, a, b });
    };
    const c = this.client;
    c.on("online", (present) => record("online", String(present)));
    c.on("offline", (reason) => record("offline", reason));
    c.on("restored", () => record("restored"));
    c.on("drop", (kind, topic) => record("drop", kind + " " + topic));
    c.on("reconnecting", (delay, attempt) => record("reconnecting", "", delay, attempt));
    c.on("state", (state, name) => record("state", name, state));
    c.on("error", (error) => record("error", error.code + ": " + error.message));
  }

  now(): number {
    return performance.now() - this.started;
  }

  named(name: string): Recorded[] {
    return this.events.filter((event) => event.name === name);
  }

  count(name: string): number {
    return this.named(name).length;
  }

  /** Resolves when an event named `name` is recorded after index `from` (default: now). */
  async next(name: string, timeoutMs: number, from = this.events.length): Promise<Recorded> {
    let found: Recorded | undefined;
    await waitFor(() => (found = this.events.slice(from).find((event) => event.name === name)) !== undefined, timeoutMs, () => "event " + name + "; last events: " + this.tail());
    return found!;
  }

  tail(count = 8): string {
    return this.events.slice(-count).map((event) => event.name + (event.detail ? "(" + event.detail + ")" : event.name === "reconnecting" ? "(" + event.a + "," + event.b + ")" : "")).join(", ");
  }

  get online(): boolean {
    return this.client.stateName === "online";
  }
}

// ------------------------------------------------------------------------------- accounting

/** Payloads are "<stream>:<seq>" plus optional padding after a space. */
export function payloadOf(stream: string, seq: number, padding = 0): string {
  return stream + ":" + seq + (padding > 0 ? " " + "x".repeat(padding) : "");
}

export function parsePayload(text: string): { stream: string; seq: number } | undefined {
  const match = /^([^:]+):(\d+)/.exec(text);
  return match ? { stream: match[1]!, seq: Number(match[2]) } : undefined;
}

/** What one stream published and what arrived. */
export class Ledger {
  /** Seqs whose publish() was accepted (Sent or Queued). */
  readonly accepted = new Set<number>();
  /** Seqs refused at the call (DROP_NEWEST) or dropped later from the queue (DROP_OLDEST). */
  readonly dropped = new Set<number>();
  readonly acknowledged = new Set<number>();
  readonly timedOut = new Set<number>();
  readonly arrivals = new Map<number, number>();
  readonly order: number[] = [];
  published = 0;

  constructor(readonly stream: string) {}

  /** Publishes seq `seq` and records the outcome. */
  publish(client: MqttClient, topic: string, seq: number, qos = 1, padding = 0): number {
    this.published++;
    const accepted = client.publish(topic, payloadOf(this.stream, seq, padding), qos, false, (status) => {
      if (status === 0) this.acknowledged.add(seq);
      else if (status === 1) this.timedOut.add(seq);
      else if (status === 2) {
        this.dropped.add(seq);
        this.accepted.delete(seq);
      }
    });
    if (accepted === 2) this.dropped.add(seq);
    else if (!this.dropped.has(seq)) this.accepted.add(seq);
    return accepted;
  }

  arrived(seq: number): void {
    this.arrivals.set(seq, (this.arrivals.get(seq) ?? 0) + 1);
    this.order.push(seq);
  }

  /** Accepted, not dropped, never arrived. */
  lost(): number[] {
    return [...this.accepted].filter((seq) => !this.arrivals.has(seq) && !this.dropped.has(seq)).sort((a, b) => a - b);
  }

  /** Arrivals beyond the first of each seq. */
  duplicates(): number {
    let extra = 0;
    for (const count of this.arrivals.values()) extra += count - 1;
    return extra;
  }

  /** Seqs that arrived though they were reported dropped (must be none). */
  droppedButArrived(): number[] {
    return [...this.dropped].filter((seq) => this.arrivals.has(seq));
  }

  /** First arrivals in order of arrival (duplicates removed). */
  firstArrivalOrder(): number[] {
    const seen = new Set<number>();
    return this.order.filter((seq) => (seen.has(seq) ? false : (seen.add(seq), true)));
  }
}

// ------------------------------------------------------------------------------- the observer

/**
 * An MQTT.js client with a persistent session subscribed at QoS 1: every message published to its
 * filter while it is away is kept for it by the broker (across restarts, with persistence on).
 */
export class Observer {
  readonly ledgers = new Map<string, Ledger>();
  readonly errors: string[] = [];
  reconnects = 0;
  private constructor(readonly client: ObserverClient) {}

  static async start(broker: RunningMosquitto, fixtures: Fixtures | undefined, filter: string, clientId = "reliability-observer"): Promise<Observer> {
    const tls = broker.tls && fixtures ? { ca: fixtures.caPem, cert: fixtures.deviceCertificatePem, key: fixtures.deviceKeyPem, servername: "localhost" } : {};
    const client = mqtt.connect(broker.url, { clientId, clean: false, reconnectPeriod: 100, connectTimeout: 5000, keepalive: 30, ...tls });
    const observer = new Observer(client);
    client.on("error", (error) => observer.errors.push(error.message));
    client.on("reconnect", () => observer.reconnects++);
    client.on("message", (_topic, payload) => {
      const parsed = parsePayload(payload.toString());
      if (parsed) observer.ledger(parsed.stream).arrived(parsed.seq);
    });
    await new Promise<void>((done, fail) => {
      const timer = setTimeout(() => fail(new Error("observer did not connect: " + observer.errors.join("; "))), 10_000);
      client.once("connect", () => {
        client.subscribe(filter, { qos: 1 }, (error) => {
          clearTimeout(timer);
          if (error) fail(error);
          else done();
        });
      });
    });
    return observer;
  }

  ledger(stream: string): Ledger {
    let ledger = this.ledgers.get(stream);
    if (!ledger) {
      ledger = new Ledger(stream);
      this.ledgers.set(stream, ledger);
    }
    return ledger;
  }

  get connected(): boolean {
    return this.client.connected;
  }

  async close(): Promise<void> {
    await new Promise<void>((done) => this.client.end(true, {}, () => done()));
  }
}

/** Backoff ceiling for the n-th reconnect (attempt n counts from 1), as the configuration defines it. */
export function expectedCeiling(baseMs: number, maxMs: number, attempt: number): number {
  let ceiling = baseMs;
  for (let n = 1; n < attempt; n++) ceiling = Math.min(maxMs, ceiling * 2);
  return Math.min(ceiling, maxMs);
}

export interface BackoffCheck {
  readonly events: number;
  readonly outOfRange: string[];
  /** |time from `reconnecting` to the next `opening`| - delay, in ms. */
  readonly lateness: number[];
}

/** Checks every `reconnecting` event of a rig against the configured backoff, and its real delay. */
export function checkBackoff(rig: ClientRig, baseMs: number, maxMs: number, jitter: boolean): BackoffCheck {
  const outOfRange: string[] = [];
  const lateness: number[] = [];
  const events = rig.events;
  let count = 0;
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    if (event.name !== "reconnecting") continue;
    count++;
    const ceiling = expectedCeiling(baseMs, maxMs, event.b);
    if (jitter ? event.a < 0 || event.a > ceiling : event.a !== ceiling) outOfRange.push(`attempt ${event.b}: ${event.a} ms (ceiling ${ceiling})`);
    const opening = events.slice(i + 1).find((later) => later.name === "state" && later.detail === "opening");
    if (opening) lateness.push(opening.at - event.at - event.a);
  }
  return { events: count, outOfRange, lateness };
}

export function summarise(values: number[]): { n: number; min: number; median: number; max: number } {
  if (values.length === 0) return { n: 0, min: 0, median: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  return { n: sorted.length, min: sorted[0]!, median: sorted[sorted.length >> 1]!, max: sorted[sorted.length - 1]! };
}

/** Appends one line to the figures file named by IOTLINK_FIGURES (for RELIABILITY.md), if set. */
export async function reportFigure(name: string, figures: Record<string, unknown>): Promise<void> {
  const line = JSON.stringify({ scenario: name, ...figures });
  process.stdout.write("# figures " + line + "\n");
  const file = process.env.IOTLINK_FIGURES;
  if (file) (await import("node:fs")).appendFileSync(file, line + "\n");
}
