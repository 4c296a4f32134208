// One throughput run in its own process, so its CPU figure is the client's own: connect, warm up,
// then publish `messages` x 64 bytes as fast as the client allows without losing any, and print one
// JSON line (messages/s, CPU seconds, peak RSS, what was acknowledged). Started by bench/throughput.ts.
//
//   node --import tsx bench/throughput-child.ts '<JSON RunSpec>'
//
// IoTLink (the core over hosts/moddable over hosts/desktop, from the bundle loadDesktopHost made):
// - QoS 1: publish while the in-flight window has room (until publish() says Queued), continue from
//   the ack callback.
// - QoS 0: publish in a loop. When the transport is full, publish() returns Queued (back-pressure):
//   the message waits in the offline queue and leaves as soon as the socket drains. The driver then
//   checks queuedCount on each event-loop turn and goes on once the queue is empty, so the bounded
//   queue never drops. Only the public API is used.
// MQTT.js 5: QoS 1 "windowed" keeps the same number unacknowledged as IoTLink's window; "natural"
// publishes everything at once (MQTT.js's own default, no window). QoS 0 is always published in one
// synchronous loop without callbacks (MQTT.js buffers in its stream).
// Both end a QoS 0 run with one QoS 1 publish and wait for its PUBACK: the broker handles a
// connection's packets in order, so that PUBACK means every QoS 0 message before it was received.
//
// With `websocket`, both go over MQTT over WebSocket with SigV4 (wss://, the CA alone) to the WSS
// gateway at `port`: IoTLink with createWebSocketTransport from the host bundle (bench/
// throughput-host.ts), signed by modules/sigv4.ts over the desktop's crypt and hmac; MQTT.js with a
// URL presigned by npm aws4, the device's TLS version and suites, over the `ws` package. The secret
// access key comes in the environment (WEBSOCKET_SECRET_VARIABLE), never in the spec.
//
// With `profile`, V8's sampling profiler runs in-process over the measured burst only, and the
// result splits its self time into categories (CPU_CATEGORIES); the profiler slows the run, so
// bench/throughput.ts keeps such a run out of its medians.
import { readFileSync } from "node:fs";
import type { Profiler } from "node:inspector";
import type { Session } from "node:inspector/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { WebSocket } from "ws";
import type { DesktopHost } from "../tools/desktop-build.ts";

export interface RunSpec {
  client: "iotlink" | "mqttjs";
  /** QoS 1 only: "windowed" (same window for both) or "natural" (MQTT.js unbounded). */
  mode: "windowed" | "natural";
  tls: boolean;
  port: number;
  pki: string;
  qos: 0 | 1;
  messages: number;
  warmup: number;
  window: number;
  hostBundle: string;
  clientId: string;
  /** Sample the measured burst with V8's profiler and attribute its CPU time (RunResult.profile). */
  profile?: boolean;
  /** MQTT over WebSocket with SigV4 to the gateway at `port` (`tls` is then true), with this key id and region. */
  websocket?: { accessKeyId: string; region: string };
}

/** The environment variable that carries the WebSocket runs' secret access key (bench/throughput.ts sets it). */
export const WEBSOCKET_SECRET_VARIABLE = "IOTLINK_BENCH_SECRET_ACCESS_KEY";

function websocketSecret(): string {
  const secret = process.env[WEBSOCKET_SECRET_VARIABLE];
  if (!secret) throw new Error(`a WebSocket run needs the secret access key in $${WEBSOCKET_SECRET_VARIABLE}`);
  return secret;
}

export interface CpuCategoryTime {
  /** Stable name, for code (bench/run.ts) that picks categories; `category` is the label to print. */
  key: CpuCategory;
  category: string;
  ms: number;
  /** Samples behind `ms`: a few dozen or fewer make it a rough figure. */
  samples: number;
}

export interface RunResult {
  spec: RunSpec;
  seconds: number;
  messagesPerSecond: number;
  cpuSeconds: number;
  cpuUserSeconds: number;
  cpuSystemSeconds: number;
  acknowledged: number;
  /** PUBLISH packets this process sent in total (warm-up and barriers included), for the broker's count. */
  publishPacketsSent: number;
  maxRssKb: number;
  cipher: string;
  /** Connections lost during the warm-up and the run. */
  connectionsLost: number;
  /** Profiled runs only: self time of the measured burst by category, every category of CPU_CATEGORIES in order. */
  profile?: CpuCategoryTime[];
  /** Profiled runs only: the sampled time that was not idle (the sum of `profile`), and the number of such samples. */
  profileSampledMs?: number;
  profileSamples?: number;
}

export const TOPIC = "bench/t";
/** The client's default, given to the WebSocket transport too (its frames are bounded by it). */
const MAX_PACKET_BYTES = 2048;
export const DEVICE_CIPHERS = "AES128-SHA:AES256-SHA:AES128-SHA256:AES256-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256";

interface Driver {
  /** Publishes `count` messages (plus the barrier for QoS 0); resolves with the number acknowledged. */
  burst(count: number): Promise<number>;
  close(): Promise<void>;
  cipher(): string;
  publishPackets(): number;
}

/** Connections lost during the run (IoTLink reconnects and re-sends by itself; MQTT.js is not set to). */
let offlineCount = 0;

/** The host bundle of the WebSocket runs (bench/throughput-host.ts) has createWebSocketTransport too. */
type WebSocketHost = DesktopHost & Partial<Pick<typeof import("./throughput-host.ts"), "createWebSocketTransport">>;

/** IoTLink's transport to the gateway, as the app makes it with transport=websocket: the CA alone, TLS name and signed Host "localhost". */
function websocketTransport(host: WebSocketHost, spec: RunSpec, websocket: NonNullable<RunSpec["websocket"]>): ReturnType<DesktopHost["moddablePlatform"]["createTransport"]> {
  if (!host.createWebSocketTransport) throw new Error(`the host bundle ${spec.hostBundle} has no createWebSocketTransport: bundle bench/throughput-host.ts`);
  return host.createWebSocketTransport(
    { host: "127.0.0.1", serverName: "localhost", port: spec.port, caResource: "ca.der" },
    { credentials: { accessKeyId: websocket.accessKeyId, secretAccessKey: websocketSecret() }, region: websocket.region, maxPacketBytes: MAX_PACKET_BYTES },
  );
}

async function iotlinkDriver(spec: RunSpec): Promise<Driver> {
  const host = (await import(pathToFileURL(spec.hostBundle).href)) as WebSocketHost;
  host.setResourceDirectory(spec.pki);
  host.mergeConfig({ tls: { DHE_RSA: false } }); // as manifest_iotlink.json does: Mosquitto would pick DHE
  const transport = spec.websocket
    ? websocketTransport(host, spec, spec.websocket)
    : host.moddablePlatform.createTransport(
      spec.tls
        ? { host: "localhost", port: spec.port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" }
        : { host: "127.0.0.1", port: spec.port, plaintext: true },
    );
  const client = new host.MqttClient({
    clientId: spec.clientId,
    transport,
    clock: host.moddablePlatform.createClock(),
    inflightWindow: spec.window,
    // Room for `window` packets of 77 bytes, with slack for the space lost where the ring wraps.
    inflightBytes: Math.max(4096, spec.window * 100),
    keepAliveSeconds: 60,
    operationTimeoutMs: 60000,
    maxPacketBytes: MAX_PACKET_BYTES,
  });
  client.on("error", (error) => process.stderr.write(`iotlink error: ${error.message}\n`));
  let lost = "";
  const payload = new Uint8Array(64).fill(0x41);

  await new Promise<void>((done, fail) => {
    const onRestored = (): void => {
      client.off("restored", onRestored);
      client.off("offline", onOffline);
      done();
    };
    const onOffline = (reason: string): void => fail(new Error("offline before the run: " + reason));
    client.on("restored", onRestored);
    client.on("offline", onOffline);
    client.connect();
  });
  let closing = false;
  client.on("offline", (reason) => {
    if (closing) return;
    lost = reason;
    offlineCount++;
    process.stderr.write(`iotlink offline: ${reason}\n`);
  });

  let packets = 0;
  return {
    cipher: () => (spec.tls ? "device suites, TLS 1.2" : "none"),
    publishPackets: () => packets,
    async close() {
      closing = true;
      client.disconnect();
    },
    async burst(count) {
      if (spec.qos === 0) {
        for (let published = 0; published < count; ) {
          const accepted = client.publish(TOPIC, payload, 0);
          if (accepted === host.Accepted.Dropped) throw new Error("QoS 0 publish dropped: " + lost);
          published++;
          // Queued: the transport had no room, so the message waits in the offline queue and leaves, in
          // order, as soon as the socket drains. Publish more once it has left, so nothing is dropped.
          if (accepted === host.Accepted.Queued) while (client.queuedCount > 0) await new Promise((resume) => setImmediate(resume));
        }
        packets += count + 1;
        // The barrier: one QoS 1 message; its PUBACK follows every QoS 0 message before it.
        return new Promise<number>((done, fail) => {
          client.publish(TOPIC, payload, 1, false, (status) => (status === host.AckStatus.Acknowledged ? done(count) : fail(new Error("barrier status " + status))));
        });
      }
      return new Promise<number>((done, fail) => {
        let published = 0;
        let acked = 0;
        const onAck = (status: number): void => {
          if (status !== host.AckStatus.Acknowledged) return fail(new Error("ack status " + status + " " + lost));
          acked++;
          if (acked === count) done(acked);
          else pump();
        };
        const pump = (): void => {
          while (published < count && client.inflightCount < spec.window) {
            const accepted = client.publish(TOPIC, payload, 1, false, onAck);
            if (accepted === host.Accepted.Dropped) return fail(new Error("QoS 1 publish dropped " + lost));
            published++;
            // Queued: the in-flight ring had no room for its bytes; the client sends it on a later ack.
            if (accepted === host.Accepted.Queued) return;
          }
        };
        packets += count;
        pump();
      });
    },
  };
}

/** `/mqtt?<query>` presigned by npm aws4 for the gateway's Host (`localhost:<port>`), as the gateway test does. */
async function presignedPath(port: number, websocket: NonNullable<RunSpec["websocket"]>): Promise<string> {
  // Loaded only for the WebSocket runs, so the other runs stay as they were.
  const aws4 = (await import("aws4")).default;
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const request = aws4.sign(
    { host: `localhost:${port}`, path: `/mqtt?X-Amz-Date=${amzDate}`, method: "GET", service: "iotdevicegateway", region: websocket.region, signQuery: true },
    { accessKeyId: websocket.accessKeyId, secretAccessKey: websocketSecret() },
  );
  return request.path as string;
}

async function mqttjsDriver(spec: RunSpec): Promise<Driver> {
  const mqtt = (await import("mqtt")).default;
  const options = {
    clientId: spec.clientId,
    protocolVersion: 4 as const,
    clean: true,
    keepalive: 60,
    reconnectPeriod: 0,
    ...(spec.tls
      ? {
          ca: readFileSync(join(spec.pki, "ca.pem")),
          cert: readFileSync(join(spec.pki, "device-cert.pem")),
          key: readFileSync(join(spec.pki, "device-key.pem")),
          rejectUnauthorized: true,
          // The same protocol and cipher suites the device offers, so both negotiate the same suite.
          minVersion: "TLSv1.2" as const,
          maxVersion: "TLSv1.2" as const,
          ciphers: DEVICE_CIPHERS,
          ecdhCurve: "P-256",
        }
      : {}),
  };
  let websocket: WebSocket | undefined;
  const WebSocketClass = spec.websocket ? (await import("ws")).WebSocket : undefined;
  const client = spec.websocket
    ? mqtt.connect(`wss://localhost:${spec.port}${await presignedPath(spec.port, spec.websocket)}`, {
      clientId: spec.clientId,
      protocolVersion: 4 as const,
      clean: true,
      keepalive: 60,
      reconnectPeriod: 0,
      // The `ws` socket made here, as MQTT.js would make it (subprotocol "mqtt"), so its TLS can be read.
      createWebsocket: (url: string, protocols: string[]) => {
        websocket = new WebSocketClass!(url, protocols, {
          ca: readFileSync(join(spec.pki, "ca.pem")),
          rejectUnauthorized: true,
          minVersion: "TLSv1.2",
          maxVersion: "TLSv1.2",
          ciphers: DEVICE_CIPHERS,
          ecdhCurve: "P-256",
          perMessageDeflate: false,
        });
        return websocket;
      },
    })
    : mqtt.connect(spec.tls ? `mqtts://localhost:${spec.port}` : `mqtt://127.0.0.1:${spec.port}`, options);
  client.on("error", (error) => process.stderr.write(`mqtt.js error: ${error.message}\n`));
  await new Promise<void>((done, fail) => {
    client.once("connect", () => done());
    client.once("error", fail);
  });
  const payload = Buffer.alloc(64, 0x41);
  let packets = 0;
  return {
    cipher: () => {
      const stream = (websocket ? (websocket as unknown as { _socket: unknown })._socket : client.stream) as { getCipher?: () => { name: string; version: string } };
      const cipher = stream.getCipher?.();
      return cipher ? `${cipher.name}, ${cipher.version}` : "none";
    },
    publishPackets: () => packets,
    close: () => new Promise<void>((done) => client.end(false, {}, () => done())),
    burst(count) {
      if (spec.qos === 0) {
        for (let i = 0; i < count; i++) client.publish(TOPIC, payload, { qos: 0 });
        packets += count + 1;
        return new Promise<number>((done, fail) => client.publish(TOPIC, payload, { qos: 1 }, (error) => (error ? fail(error) : done(count))));
      }
      packets += count;
      return new Promise<number>((done, fail) => {
        let published = 0;
        let acked = 0;
        const window = spec.mode === "natural" ? count : spec.window;
        let inflight = 0;
        const onAck = (error?: Error): void => {
          if (error) return fail(error);
          acked++;
          inflight--;
          if (acked === count) done(acked);
          else pump();
        };
        const pump = (): void => {
          while (published < count && inflight < window) {
            inflight++;
            published++;
            client.publish(TOPIC, payload, { qos: 1 }, onAck);
          }
        };
        pump();
      });
    },
  };
}

const CPU_CATEGORIES = {
  core: "IoTLink core (modules/)",
  moddableHost: "IoTLink Moddable host (hosts/moddable/)",
  desktopShim: "Moddable simulation on Node (hosts/desktop/)",
  mqttjs: "MQTT.js and its dependencies (node_modules/)",
  driver: "benchmark driver (bench/throughput-child.ts)",
  nodeJs: "Node.js built-in JS (node:*)",
  native: "native functions called from JS (TLS encryption, socket writes...)",
  gc: "garbage collector",
  program: "V8 (program): native work with no JS on the stack",
  other: "other",
} as const;
export type CpuCategory = keyof typeof CPU_CATEGORIES;

/**
 * The category of each line of the host bundle (0-based, as the profile's line numbers): esbuild
 * starts each source file's section with a `// path/to/file.ts` comment line.
 */
function bundleLineCategories(bundle: string): CpuCategory[] {
  let current: CpuCategory = "other"; // esbuild's helpers before the first file
  return readFileSync(bundle, "utf8").split("\n").map((line) => {
    const marker = /^\/\/ (\S+\.[cm]?[jt]sx?)$/.exec(line);
    if (marker) {
      const path = marker[1]!;
      current = path.includes("node_modules/") ? "other"
        : /(^|\/)modules\//.test(path) ? "core"
        : /(^|\/)hosts\/moddable\//.test(path) ? "moddableHost"
        : /(^|\/)hosts\/desktop\//.test(path) ? "desktopShim"
        : "other";
    }
    return current;
  });
}

function categorize(profile: Profiler.Profile, hostBundle: string): Pick<RunResult, "profile" | "profileSampledMs" | "profileSamples"> {
  const bundleUrl = pathToFileURL(hostBundle).href;
  const bundleLines = bundleLineCategories(hostBundle);
  const categoryOf = (frame: Profiler.ProfileNode["callFrame"]): CpuCategory | "idle" => {
    const { url, functionName } = frame;
    if (url === "") {
      if (functionName === "(idle)") return "idle";
      if (functionName === "(garbage collector)") return "gc";
      if (functionName === "(program)") return "program";
      if (functionName === "(root)") return "other";
      return "native";
    }
    if (url === bundleUrl) return bundleLines[frame.lineNumber] ?? "other";
    if (url.startsWith("node:")) return "nodeJs";
    if (url.endsWith("/bench/throughput-child.ts")) return "driver";
    // tsx and esbuild are this benchmark's loader, not MQTT.js's dependencies.
    if (url.includes("/node_modules/") && !/\/node_modules\/(tsx|esbuild|@esbuild)\//.test(url)) return "mqttjs";
    return "other";
  };
  const nodeCategory = new Map(profile.nodes.map((node) => [node.id, categoryOf(node.callFrame)]));
  const micros = new Map<CpuCategory, number>();
  const counts = new Map<CpuCategory, number>();
  const ids = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Each sample stands for the time until the next one, as DevTools counts: the gap before the
  // first sample (tens of ms) is the profiler starting, not the burst.
  let sampledAt = profile.startTime + (deltas[0] ?? 0);
  for (let index = 0; index < ids.length; index++) {
    const nextAt = index + 1 < ids.length ? sampledAt + deltas[index + 1]! : profile.endTime;
    const category = nodeCategory.get(ids[index]!) ?? "other";
    if (category !== "idle") {
      micros.set(category, (micros.get(category) ?? 0) + Math.max(0, nextAt - sampledAt));
      counts.set(category, (counts.get(category) ?? 0) + 1);
    }
    sampledAt = nextAt;
  }
  const times = (Object.keys(CPU_CATEGORIES) as CpuCategory[]).map((key) => ({ key, category: CPU_CATEGORIES[key], ms: (micros.get(key) ?? 0) / 1000, samples: counts.get(key) ?? 0 }));
  return {
    profile: times,
    profileSampledMs: times.reduce((sum, time) => sum + time.ms, 0),
    profileSamples: times.reduce((sum, time) => sum + time.samples, 0),
  };
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? "{}") as RunSpec;
  const driver = spec.client === "iotlink" ? await iotlinkDriver(spec) : await mqttjsDriver(spec);
  if (spec.warmup > 0) await driver.burst(spec.warmup);
  let session: Session | undefined;
  if (spec.profile) {
    // Loaded only here, so the measured runs stay as they were.
    const { Session } = await import("node:inspector/promises");
    session = new Session();
    session.connect();
    await session.post("Profiler.enable");
    await session.post("Profiler.setSamplingInterval", { interval: 100 }); // µs
    await session.post("Profiler.start");
  }
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const acknowledged = await driver.burst(spec.messages);
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const profile = session ? (await session.post("Profiler.stop")).profile : undefined;
  session?.disconnect();
  const cipher = driver.cipher();
  await driver.close();
  const result: RunResult = {
    spec,
    seconds,
    messagesPerSecond: spec.messages / seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    cpuUserSeconds: cpu.user / 1e6,
    cpuSystemSeconds: cpu.system / 1e6,
    acknowledged,
    publishPacketsSent: driver.publishPackets(),
    maxRssKb: process.resourceUsage().maxRSS,
    cipher,
    connectionsLost: offlineCount,
    ...(profile ? categorize(profile, spec.hostBundle) : {}),
  };
  process.stdout.write(JSON.stringify(result) + "\n");
  // Sockets and timers of either client must not keep a finished run alive.
  setTimeout(() => process.exit(0), 200).unref();
}

main().catch((error) => {
  process.stderr.write(`throughput run failed: ${(error as Error).stack ?? error}\n`);
  process.exit(1);
});
