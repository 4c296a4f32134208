// Helpers for the real-broker suites: an in-process IoTLink client (the core over the Moddable host,
// from loadDesktopHost) that records every event with its time, the bundled device app run as a
// child process with its log lines parsed, and an MQTT.js peer over mutual TLS.
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import mqtt, { type IClientOptions, type MqttClient as PeerClient } from "mqtt";
import { parseLogLine, type LogLine } from "../../modules/logline.ts";
import type { EndpointSettings } from "../../modules/types.ts";
import type { DesktopHost } from "../../tools/desktop-build.ts";

/** Polls `check` until it returns something other than undefined/false; rejects after `timeoutMs`. */
export async function waitUntil<T>(check: () => T | undefined | false, timeoutMs: number, what: string | (() => string)): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}`);
    await delay(10);
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

export interface RecordedEvent {
  /** Date.now() when the event fired. */
  readonly at: number;
  readonly name: string;
  readonly args: readonly unknown[];
}

export interface ReceivedMessage {
  readonly topic: string;
  readonly payload: string;
  readonly qos: number;
}

type ClientOptions = ConstructorParameters<DesktopHost["MqttClient"]>[0];
type Client = InstanceType<DesktopHost["MqttClient"]>;

/**
 * One IoTLink MqttClient over hosts/moddable (SecureSocket transport, Timer clock) in this process.
 * The Moddable platform has one clock with one timer, so only one probe may be connected at a time:
 * always stop() a probe before starting the next.
 */
export class DeviceProbe {
  readonly client: Client;
  readonly events: RecordedEvent[] = [];
  readonly received: ReceivedMessage[] = [];

  constructor(host: DesktopHost, endpoint: EndpointSettings, options: Omit<ClientOptions, "transport" | "clock">) {
    this.client = new host.MqttClient({ ...options, transport: host.moddablePlatform.createTransport(endpoint), clock: host.moddablePlatform.createClock() });
    // The client calls every handler with three arguments: drop the unused trailing ones.
    const record = (name: string) => (...args: unknown[]) => {
      while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
      this.events.push({ at: Date.now(), name, args });
    };
    this.client.on("online", record("online"));
    this.client.on("offline", record("offline"));
    this.client.on("restored", record("restored"));
    this.client.on("reconnecting", record("reconnecting"));
    this.client.on("state", (_state, name) => this.events.push({ at: Date.now(), name: "state", args: [name] }));
    this.client.on("error", record("error"));
    this.client.on("drop", record("drop"));
  }

  /** The recorded events called `name`. */
  named(name: string): RecordedEvent[] {
    return this.events.filter((event) => event.name === name);
  }

  /** States entered, in order. */
  states(): string[] {
    return this.named("state").map((event) => event.args[0] as string);
  }

  /** Resolves with the first event called `name` (counting from index `from`) that `accept` takes. */
  waitForEvent(name: string, timeoutMs: number, accept: (event: RecordedEvent) => boolean = () => true, from = 0): Promise<RecordedEvent> {
    return waitUntil(() => this.events.slice(from).find((event) => event.name === name && accept(event)), timeoutMs, () => `event ${name}; events so far: ${this.describe()}`);
  }

  /** A handler for subscribe() that records messages (the payload view is copied during the callback). */
  recorder(): (message: { topic: string; payload: Uint8Array; qos: number }) => void {
    return (message) => {
      this.received.push({ topic: message.topic, payload: Buffer.from(message.payload).toString(), qos: message.qos });
    };
  }

  /** Calls a request with an ack callback and resolves with the ack status. */
  ack(request: (onAck: (status: number) => void) => unknown, timeoutMs = 5000): Promise<number> {
    return new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`no acknowledgement within ${timeoutMs} ms; events: ${this.describe()}`)), timeoutMs);
      request((status) => {
        clearTimeout(timer);
        done(status);
      });
    });
  }

  describe(): string {
    return this.events.map((event) => `${event.name}(${event.args.map((arg) => (arg instanceof Error ? `${(arg as { code?: string }).code}: ${arg.message}` : String(arg))).join(", ")})`).join(" ");
  }

  stop(): void {
    this.client.disconnect();
  }
}

export interface AppLine extends LogLine {
  /** Date.now() when the line was read. */
  readonly at: number;
}

/** The bundled device app (main.ts) as a child process; its "iotlink ..." lines parsed. */
export class AppProcess {
  readonly child: ChildProcess;
  readonly lines: AppLine[] = [];
  /** Every line of stdout and stderr, for failure messages. */
  readonly output: string[] = [];
  private exited = false;

  constructor(bundle: string, environment: Record<string, string>) {
    this.child = spawn(process.execPath, ["--enable-source-maps", bundle], { env: { ...process.env, ...environment }, stdio: ["ignore", "pipe", "pipe"] });
    this.child.once("exit", () => {
      this.exited = true;
    });
    for (const stream of [this.child.stdout, this.child.stderr]) {
      let partial = "";
      stream?.setEncoding("utf8");
      stream?.on("data", (text: string) => {
        const parts = (partial + text).split("\n");
        partial = parts.pop() ?? "";
        for (const part of parts) {
          this.output.push(part);
          const parsed = parseLogLine(part);
          if (parsed) this.lines.push({ ...parsed, at: Date.now() });
        }
      });
    }
  }

  get running(): boolean {
    return !this.exited;
  }

  events(event: string): AppLine[] {
    return this.lines.filter((line) => line.event === event);
  }

  /** Resolves with the first line (from index `from`) of `event` that `accept` takes. */
  waitForLine(event: string, timeoutMs: number, accept: (line: AppLine) => boolean = () => true, from = 0): Promise<AppLine> {
    return waitUntil(
      () => {
        if (this.exited) throw new Error(`the app exited while waiting for ${event}; output:\n${this.tail()}`);
        return this.lines.slice(from).find((line) => line.event === event && accept(line));
      },
      timeoutMs,
      () => `app line "${event}"; last output:\n${this.tail()}`,
    );
  }

  tail(count = 25): string {
    return this.output.slice(-count).join("\n");
  }

  async stop(): Promise<void> {
    if (this.exited) return;
    const exited = once(this.child, "exit");
    this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  }
}

/** An MQTT.js client over mutual TLS (or plain TCP without `tls`), connected. */
export async function connectPeer(url: string, options: IClientOptions): Promise<PeerClient> {
  const peer = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  const errors: Error[] = [];
  // Late TLS and socket errors (a broker restart) must not crash the test process.
  peer.on("error", (error) => errors.push(error));
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`MQTT.js peer did not connect to ${url} within 5 s: ${errors.map((error) => error.message).join("; ")}`)), 5000);
    peer.once("connect", () => {
      clearTimeout(timer);
      done();
    });
  });
  return peer;
}

export async function closePeer(peer: PeerClient | undefined): Promise<void> {
  if (!peer || peer.disconnected) return;
  await new Promise<void>((done) => peer.end(true, {}, () => done()));
}
