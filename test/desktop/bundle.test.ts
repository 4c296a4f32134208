// Code written for Moddable runs unchanged on Node once esbuild maps the Moddable module names with
// tools/desktop-aliases.ts: a small device-style app is bundled, run in its own Node process
// against the embedded broker, and its serial-console output checked.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { test } from "node:test";
import { desktopAliases } from "../../tools/desktop-aliases.ts";
import { buildDesktopApp, bundleForDesktop, loadDesktopHost } from "../../tools/desktop-build.ts";
import { useBrokerSetup } from "./fixtures.ts";
import { loadManifestClosure } from "../../tools/manifest.ts";

const run = promisify(execFile);

// Device code as it would be flashed: Moddable module names, the trace global, config from the manifest.
const DEVICE_APP = `
import Timer from "timer";
import Time from "time";
import config from "mc/config";
import Resource from "Resource";
import SecureSocket from "securesocket";

const CONNECT = Uint8Array.of(0x10, 18, 0, 4, 77, 81, 84, 84, 4, 2, 0, 60, 0, 6, 98, 117, 110, 100, 108, 101);
const started = Time.ticks;
const socket = new SecureSocket({
  host: config.endpoint,
  port: config.port,
  secure: {
    protocolVersion: 0x303,
    certificate: new Resource("ca.der"),
    clientCertificates: [new Resource("device-cert.der")],
    clientKey: new Resource("device-key.der"),
    applicationLayerProtocolNegotiation: ["x-amzn-mqtt-ca"],
  },
});
trace("opening ", config.endpoint, ":", typeof config.port, " DHE_RSA ", config.tls.DHE_RSA, " frozen ", Object.isFrozen(config.tls), "\\n");
socket.callback = (message, value) => {
  if (message === 1) {
    trace("connected\\n");
    socket.write(CONNECT);
  } else if (message === 2) {
    trace("connack ", new Uint8Array(socket.read(ArrayBuffer)).join(","), "\\n");
    socket.close();
    Timer.set(() => trace("done ", Time.ticks >= started, "\\n"), 5);
  } else if (message < 0) {
    trace("socket error ", message, "\\n");
  }
};
`;

// What the desktop runner does before the app starts: fill mc/config as mcconfig would.
const CONFIG_SETUP = `
import { configOverridesFromEnvironment, freezeConfig, mergeConfig } from "${join(import.meta.dirname, "..", "..", "hosts", "desktop", "config.ts")}";
mergeConfig({ tls: { DHE_RSA: false } });
mergeConfig(configOverridesFromEnvironment());
freezeConfig();
`;

const setup = useBrokerSetup();

test("a Moddable-style app bundled with the desktop aliases connects with mutual TLS and exits by itself", { timeout: 30_000 }, async () => {
  writeFileSync(join(setup.work, "app.js"), DEVICE_APP);
  writeFileSync(join(setup.work, "config-setup.js"), CONFIG_SETUP);
  const outfile = join(setup.work, "app.bundle.mjs");
  writeFileSync(join(setup.work, "entry.js"), 'import "./config-setup.js";\nimport "./app.js";\n');
  await bundleForDesktop(join(setup.work, "entry.js"), outfile);
  const { stdout } = await run(process.execPath, [outfile], {
    env: { ...process.env, IOTLINK_RESOURCES: setup.fixtures.pki, IOTLINK_CONFIG_endpoint: "localhost", IOTLINK_CONFIG_port: String(setup.broker.port) },
    timeout: 20_000,
  });
  assert.equal(stdout, "opening localhost:string DHE_RSA false frozen true\nconnected\nconnack 32,2,0,0\ndone true\n");
  assert.equal(setup.broker.connections.at(-1)?.alpnProtocol, "x-amzn-mqtt-ca");
});

test("tsconfig.node.json type-checks hosts/moddable against exactly the modules esbuild bundles", () => {
  const paths = (JSON.parse(readFileSync(join(import.meta.dirname, "..", "..", "tsconfig.node.json"), "utf8")) as { compilerOptions: { paths: Record<string, string[]> } }).compilerOptions.paths;
  const root = join(import.meta.dirname, "..", "..");
  const typed = Object.fromEntries(Object.entries(paths).map(([name, [target]]) => [name, resolve(root, target!)]));
  assert.deepEqual(typed, { ...desktopAliases });
});

test("the tests compile class fields as the device build does: useDefineForClassFields is the manifest's in both tsconfigs", () => {
  const root = join(import.meta.dirname, "..", "..");
  const option = (file: string, pick: (json: any) => unknown): unknown => pick(JSON.parse(readFileSync(join(root, file), "utf8")));
  const device = loadManifestClosure(join(root, "manifest.json")).compilerOptions.useDefineForClassFields;
  assert.equal(typeof device, "boolean", "the manifests set useDefineForClassFields for mcconfig's tsc");
  assert.equal(option("tsconfig.json", (json) => json.compilerOptions.useDefineForClassFields), device);
  assert.equal(option("tsconfig.node.json", (json) => json.compilerOptions.useDefineForClassFields), device);
});

test("loadDesktopHost gives the core over the Moddable host in this process: a QoS 1 round trip with mutual TLS", { timeout: 30_000 }, async () => {
  const host = await loadDesktopHost(join(setup.work, "host.mjs"));
  host.setResourceDirectory(setup.fixtures.pki);
  const client = new host.MqttClient({
    clientId: "host-in-process",
    transport: host.moddablePlatform.createTransport({ host: "localhost", port: setup.broker.port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" }),
    clock: host.moddablePlatform.createClock(),
  });
  const received: string[] = [];
  const restored = new Promise<void>((done) => client.on("restored", () => done()));
  client.subscribe("loop/back", 1, (message) => received.push(Buffer.from(message.payload).toString()));
  client.connect();
  await restored;
  const acknowledged = new Promise<number>((done) => client.publish("loop/back", "hello", 1, false, (status) => done(status)));
  assert.equal(await acknowledged, host.AckStatus.Acknowledged);
  while (received.length === 0) await new Promise((wait) => setTimeout(wait, 10));
  assert.deepEqual(received, ["hello"]);
  const offline = new Promise<void>((done) => client.on("offline", () => done()));
  client.disconnect();
  await offline;
  assert.equal(host.countScheduledTimers(), 0, "disconnect() leaves no timer scheduled");
  assert.equal(host.countLiveTimers(), 1, "the clock's one Timer is kept for reuse");
});

test("the Moddable transport takes a packet larger than its 4 KB transmit buffer when the client's maxPacketBytes allows it", { timeout: 30_000 }, async () => {
  const host = await loadDesktopHost(join(setup.work, "host-large.mjs"));
  host.setResourceDirectory(setup.fixtures.pki);
  const maxPacketBytes = 20_000;
  const client = new host.MqttClient({
    clientId: "host-large",
    maxPacketBytes,
    inflightBytes: 2 * maxPacketBytes,
    queueBytes: 2 * maxPacketBytes,
    transport: host.moddablePlatform.createTransport({ host: "localhost", port: setup.broker.port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" }, maxPacketBytes),
    clock: host.moddablePlatform.createClock(),
  });
  try {
    const sizes: number[] = [];
    const restored = new Promise<void>((done) => client.on("restored", () => done()));
    client.subscribe("large/back", 1, (message) => sizes.push(message.payload.length));
    client.connect();
    await restored;
    // The largest PUBLISH: a 4-byte fixed header, the topic, the packet id and the payload.
    const payloadBytes = maxPacketBytes - 4 - 2 - "large/back".length - 2;
    const acknowledged = new Promise<number>((done) => client.publish("large/back", new Uint8Array(payloadBytes), 1, false, (status) => done(status)));
    assert.equal(await acknowledged, host.AckStatus.Acknowledged);
    while (sizes.length === 0) await new Promise((wait) => setTimeout(wait, 10));
    assert.deepEqual(sizes, [payloadBytes]);
  } finally {
    client.disconnect();
  }
});

test("the Moddable transport refuses a bad endpoint when it is made, naming the problem", { timeout: 30_000 }, async () => {
  const host = await loadDesktopHost(join(setup.work, "host-endpoints.mjs"));
  // The resources must exist: the transport looks for them when it is made.
  host.setResourceDirectory(setup.fixtures.pki);
  const tls = { host: "localhost", port: 8883, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" };
  const refusals: [Record<string, unknown>, RegExp][] = [
    [{ ...tls, host: "" }, /host must be a non-empty string/],
    [{ ...tls, port: 0 }, /port must be a whole number from 1 to 65535, got 0/],
    [{ ...tls, port: "8883" }, /port must be a whole number/],
    [{ ...tls, port: 8883.5 }, /port must be a whole number/],
    [{ ...tls, caResource: undefined }, /TLS needs a CA certificate resource/],
    [{ ...tls, keyResource: undefined }, /certificateResource and keyResource go together/],
    [{ ...tls, certificateResource: undefined }, /certificateResource and keyResource go together/],
    [{ ...tls, plaintext: true }, /plaintext connections take no certificates/],
    [{ ...tls, plaintext: "yes" }, /plaintext must be true or false/],
    [{ ...tls, alpn: [] }, /alpn must be a non-empty list/],
    [{ ...tls, serverName: "" }, /serverName must be a non-empty string/],
    [{ ...tls, caResource: 7 }, /caResource must be a resource name/],
    [{ ...tls, caResource: "missing-ca.der" }, /caResource missing-ca.der not found: add it to the manifest's resources/],
    [{ ...tls, keyResource: "missing-key.der" }, /keyResource missing-key.der not found/],
    [{ ...tls, host: "mqtts://example.com" }, /endpoint host must be a bare host name or address \(no scheme, port, path or spaces\), got "mqtts:\/\/example.com"/],
    [{ ...tls, host: "example.com:8883" }, /endpoint host must be a bare host name/],
    [{ ...tls, host: " " }, /endpoint host must be a bare host name/],
  ];
  for (const [endpoint, problem] of refusals) {
    assert.throws(
      () => host.moddablePlatform.createTransport(endpoint as never),
      (error: unknown) => error instanceof host.IoTLinkError && error.code === host.ErrorCode.InvalidArgument && problem.test(error.message),
      JSON.stringify(endpoint),
    );
  }
  // What is allowed: mutual TLS, server-authenticated TLS (CA only), and plaintext asked for by name.
  host.moddablePlatform.createTransport(tls);
  host.moddablePlatform.createTransport({ host: "localhost", port: 8883, caResource: "ca.der" });
  host.moddablePlatform.createTransport({ host: "localhost", port: 1883, plaintext: true });
});

test("two clients on one Moddable platform keep their own timers: both stay up through keep-alive", { timeout: 30_000 }, async () => {
  const host = await loadDesktopHost(join(setup.work, "host-two.mjs"));
  host.setResourceDirectory(setup.fixtures.pki);
  const endpoint = { host: "localhost", port: setup.broker.port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" };
  const offline: string[] = [];
  const clients = ["first", "second"].map((clientId) => {
    const client = new host.MqttClient({ clientId, keepAliveSeconds: 1, transport: host.moddablePlatform.createTransport(endpoint), clock: host.moddablePlatform.createClock() });
    client.on("offline", (reason) => offline.push(clientId + ": " + reason));
    return client;
  });
  await Promise.all(clients.map((client) => new Promise<void>((done) => client.on("restored", () => done()).connect())));
  // Three keep-alive periods: a client whose timer was taken over would miss its PINGREQ and be dropped.
  await new Promise((wait) => setTimeout(wait, 3_200));
  assert.deepEqual(offline, []);
  assert.deepEqual(clients.map((client) => client.stateName), ["online", "online"]);
  // disconnect() ends each link gracefully (Transport.end()): `offline` comes once it is closed.
  const gone = Promise.all(clients.map((client) => new Promise<void>((done) => client.on("offline", () => done()))));
  for (const client of clients) client.disconnect();
  await gone;
  assert.deepEqual(offline, ["first: disconnected by the client", "second: disconnected by the client"]);
  assert.equal(host.countScheduledTimers(), 0);
});

test("the device app refuses a mistyped setting at start, naming it, before it connects anywhere", { timeout: 30_000 }, async () => {
  const app = await buildDesktopApp(join(setup.work, "app-settings.mjs"));
  const refusals: [Record<string, string>, RegExp][] = [
    [{ IOTLINK_CONFIG_dropPolicy: "newst" }, /config dropPolicy must be one of oldest, newest, got newst/],
    [{ IOTLINK_CONFIG_port: "88x3" }, /config port must be a whole number from 1 to 65535, got 88x3/],
    [{ IOTLINK_CONFIG_backoffJitter: "yes" }, /config backoffJitter must be true or false, got yes/],
    [{ IOTLINK_CONFIG_keepAliveSeconds: " " }, /config keepAliveSeconds must be a whole number from 0 to 65535, got  /],
    [{ IOTLINK_CONFIG_port: "0x22b3" }, /config port must be a whole number from 1 to 65535, got 0x22b3/],
    [{ IOTLINK_CONFIG_plaintext: "true", IOTLINK_CONFIG_caResource: "ca.der" }, /plaintext connections take no certificates/],
    [{ IOTLINK_CONFIG_mutualTls: "false", IOTLINK_CONFIG_certificateResource: "device-cert.der" }, /config mutualTls=false takes no certificateResource or keyResource/],
    [{ IOTLINK_CONFIG_mutualTls: "no" }, /config mutualTls must be true or false, got no/],
    [{ IOTLINK_CONFIG_queueEntries: "0", IOTLINK_CONFIG_queueBytes: "8192" }, /queueEntries and queueBytes must both be 0/],
  ];
  for (const [settings, problem] of refusals) {
    const failed = await run(process.execPath, [app], {
      env: { ...process.env, IOTLINK_RESOURCES: setup.fixtures.pki, IOTLINK_CONFIG_endpoint: "localhost", IOTLINK_CONFIG_port: String(setup.broker.port), ...settings },
      timeout: 20_000,
    }).then(() => undefined, (error: { code?: number; stderr?: string }) => error);
    assert.ok(failed && failed.code !== 0, JSON.stringify(settings) + ": the app must not start");
    assert.match(failed.stderr ?? "", problem);
  }
  assert.equal(setup.broker.connectedClientIds().length, 0, "nothing connected");
});

test("the device app runs with its offline queue off when only queueEntries=0 is set (queueBytes follows)", { timeout: 30_000 }, async () => {
  const app = await buildDesktopApp(join(setup.work, "app-no-queue.mjs"));
  // Commands too: the app must subscribe without an offline queue.
  const pings = setInterval(() => void setup.broker.publish("iotlink/no-queue/cmd", "ping", 1), 200);
  const { stdout } = await run(process.execPath, [app], {
    env: {
      ...process.env,
      IOTLINK_RESOURCES: setup.fixtures.pki,
      IOTLINK_CONFIG_endpoint: "localhost",
      IOTLINK_CONFIG_port: String(setup.broker.port),
      IOTLINK_CONFIG_clientId: "no-queue",
      IOTLINK_CONFIG_queueEntries: "0",
      IOTLINK_CONFIG_telemetryIntervalMs: "200",
      IOTLINK_CONFIG_runForMs: "1500",
    },
    timeout: 20_000,
  }).finally(() => clearInterval(pings));
  assert.match(stdout, /iotlink online /);
  assert.match(stdout, /iotlink command name=ping/);
  assert.ok(setup.broker.messages.some((message) => message.clientId === "no-queue" && message.topic === "iotlink/no-queue/reply" && String(message.payload).includes('"command":"ping"')), "the app answered a ping");
  assert.match(stdout, /iotlink done sent=\d+ acked=\d+ queue=0/);
  const sent = /iotlink done sent=(\d+) acked=(\d+)/.exec(stdout);
  assert.ok(sent && Number(sent[1]) > 0 && sent[1] === sent[2], "telemetry went out and was acknowledged: " + sent?.[0]);
});
