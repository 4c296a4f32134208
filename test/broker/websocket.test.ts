// MQTT over WebSocket with SigV4, end to end (issue 14): IoTLink's WebSocket transport
// (hosts/moddable/websocket.ts over the desktop's SecureSocket, crypt and hmac, bundled with the
// Moddable aliases as on the device) through the AWS IoT-like WSS gateway (tools/wss-gateway.ts,
// which checks the signature with node:crypto) to a real Mosquitto (plain TCP listener):
// - createWebSocketTransport checks every input at the call, and no message shows a secret;
// - the TypeScript MqttClient and the facade (AWSIoTMQTTClient useWebsocket=true) connect and make
//   QoS 1 round trips both ways, with an IAM user's keys and with temporary keys and their token;
// - a wrong secret, a missing session token, a clock 10 minutes behind: a 403 error event with the
//   status and AWS's reason, then backoff, never online; a clock before the floor: a clear error
//   before anything is sent, then backoff;
// - credentials from a provider function called at every connection attempt: after a rotation the
//   reconnect signs with the new key (the gateway no longer knows the old one);
// - the device app (main.ts, transport=websocket) through a Mosquitto restart: the outage's errors
//   name the gateway's close, backoff as configured, queue, drain, restored, no telemetry lost;
// - link faults between the device and the gateway (tools/fault-proxy.ts): a cut in the middle of
//   a WebSocket frame either way, then nothing lost; the whole connection in 1-byte TCP segments;
// - the secrets and the token never appear in an event, an error, a trace or a log line.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test } from "node:test";
import mqtt, { type MqttClient as PeerClient } from "mqtt";
import { DEV_PKI_FILES, ensureDevPki } from "../../tools/certs.ts";
import { buildDesktopApp, bundleForDesktop, type DesktopHost } from "../../tools/desktop-build.ts";
import { startFaultProxy, type FaultProxy } from "../../tools/fault-proxy.ts";
import { startMosquitto, type RunningMosquitto } from "../../tools/mosquitto.ts";
import { startWssGateway, type GatewayCredential, type RunningWssGateway } from "../../tools/wss-gateway.ts";
import { AppProcess, closePeer, connectPeer, delay, DeviceProbe, waitUntil } from "./helpers.ts";

type Host = typeof import("./websocket-entry.ts");
type Probe = DeviceProbe;

const REGION = "eu-west-1";
/** An IAM user's keys. */
const KEY_ID = "AKIAWSTESTKEY0000001";
const SECRET = "wsTestSecret/AAAA+BBBB/CCCC+DDDD/EEEE+FFFF";
/** Temporary (STS) keys: the gateway wants their token. */
const TEMP_KEY_ID = "ASIAWSTESTTEMP000002";
const TEMP_SECRET = "wsTempSecret/GGGG+HHHH/IIII+JJJJ/KKKK+LLLL";
const TOKEN = "wsSessionToken/FwoGZXIvYXdzEXAMPLE+MMMM/NNNN==";
/** The keys a rotation brings. */
const ROTATED_KEY_ID = "AKIAWSTESTROTATED003";
const ROTATED_SECRET = "wsRotatedSecret/OOOO+PPPP/QQQQ+RRRR/SSSS";
const SECRETS = [SECRET, TEMP_SECRET, TOKEN, ROTATED_SECRET, "wrongSecret/ZZZZ+YYYY/XXXX"];

let work: string;
let pki: string;
let resources: string;
let host: Host;
let appBundle: string;
let mosquitto: RunningMosquitto;
let gateway: RunningWssGateway;
/** The gateway's key ids: a Map, so that a test can retire a key. */
const credentials = new Map<string, GatewayCredential>();
/** Everything that could leak a secret: traces, gateway logs, events, errors, app output. */
let traced = "";
const gatewayLog: string[] = [];
const seen: string[] = [];
const probes: Probe[] = [];
const peers: PeerClient[] = [];
const proxies: FaultProxy[] = [];
const apps: AppProcess[] = [];

before(async () => {
  work = mkdtempSync(join(tmpdir(), "iotlink-websocket-test-"));
  pki = ensureDevPki({ directory: join(work, "pki") }).directory;
  // The device's "flash": the CA alone.
  resources = join(work, "resources");
  mkdirSync(resources);
  copyFileSync(join(pki, DEV_PKI_FILES.caCertificateDer), join(resources, DEV_PKI_FILES.caCertificateDer));
  host = (await import(pathToFileURL(await bundleForDesktop(join(import.meta.dirname, "websocket-entry.ts"), join(work, "host.mjs"))).href)) as Host;
  host.setResourceDirectory(resources);
  host.mergeConfig({ tls: { DHE_RSA: false } });
  host.setTraceSink((text) => {
    traced += text;
  });
  appBundle = await buildDesktopApp(join(work, "app.mjs"));
  credentials.set(KEY_ID, { secret: SECRET });
  credentials.set(TEMP_KEY_ID, { secret: TEMP_SECRET, sessionToken: TOKEN });
  mosquitto = await startMosquitto({ persistence: true });
  gateway = await startWssGateway({ credentials, region: REGION, broker: { host: mosquitto.host, port: mosquitto.port }, certificateDirectory: pki, log: (line) => gatewayLog.push(line) });
});

after(async () => {
  for (const probe of probes) probe.stop();
  for (const app of apps) await app.stop();
  for (const peer of peers) await closePeer(peer);
  for (const proxy of proxies) await proxy.close();
  await gateway?.close();
  await mosquitto?.stop();
  host?.setTraceSink();
  if (work) rmSync(work, { recursive: true, force: true });
});

type TransportOptions = Parameters<Host["createWebSocketTransport"]>[1];

/** The gateway (or a proxy in front of it) as the device reaches it: 127.0.0.1, TLS name and signed Host "localhost". */
function endpointAt(port: number): Parameters<Host["createWebSocketTransport"]>[0] {
  return { host: "127.0.0.1", serverName: "localhost", port, caResource: DEV_PKI_FILES.caCertificateDer };
}

/** An MqttClient over createWebSocketTransport, its events recorded (DeviceProbe with the WebSocket transport). */
function probe(port: number, options: Partial<TransportOptions>, client: ConstructorParameters<typeof DeviceProbe>[2]): Probe {
  const transport = host.createWebSocketTransport(endpointAt(port), { credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET }, region: REGION, maxPacketBytes: 4096, ...options });
  const platform = { createTransport: () => transport, createClock: () => host.moddablePlatform.createClock() };
  const made = new DeviceProbe({ ...host, moddablePlatform: platform } as unknown as DesktopHost, endpointAt(port) as never, { maxPacketBytes: 4096, ...client });
  probes.push(made);
  return made;
}

function done(made: Probe): void {
  made.stop();
  seen.push(made.describe());
}

async function observer(clientId: string): Promise<PeerClient> {
  const peer = await connectPeer(mosquitto.url, { clientId });
  peers.push(peer);
  return peer;
}

function messagesOf(made: Probe, event: string): string[] {
  return made.named(event).map((recorded) => (recorded.args[0] instanceof Error ? `${(recorded.args[0] as { code?: string }).code}: ${recorded.args[0].message}` : String(recorded.args[0])));
}

describe("createWebSocketTransport checks every input at the call", () => {
  test("each problem is one invalid-argument line; none shows the secret or the token", () => {
    const base = { credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET, sessionToken: TOKEN }, region: REGION, maxPacketBytes: 1024 };
    const endpoint = endpointAt(443);
    const cases: [() => unknown, string][] = [
      [() => host.createWebSocketTransport(null as never, base), "websocket endpoint must be an object { host, port?, caResource }"],
      [() => host.createWebSocketTransport({ ...endpoint, certificateResource: "device-cert.der" } as never, base), "MQTT over WebSocket signs in with SigV4, not a client certificate: give the CA alone (caResource), without certificateResource or keyResource"],
      [() => host.createWebSocketTransport({ ...endpoint, plaintext: true } as never, base), "MQTT over WebSocket needs TLS (the signed URL would travel in the clear): plaintext must be left out"],
      [() => host.createWebSocketTransport({ host: "localhost" } as never, base), "MQTT over WebSocket needs TLS: caResource must name the CA certificate resource (Amazon Root CA 1 for AWS IoT Core)"],
      [() => host.createWebSocketTransport({ ...endpoint, alpn: ["x-amzn-mqtt-ca"] }, base), "alpn x-amzn-mqtt-ca is MQTT without WebSocket: leave alpn out for MQTT over WebSocket"],
      [() => host.createWebSocketTransport({ ...endpoint, prot: 443 } as never, base), "unknown endpoint setting prot; the endpoint settings are host, port, serverName, alpn, caResource, certificateResource, keyResource, plaintext"],
      [() => host.createWebSocketTransport({ ...endpoint, port: 0 }, base), "endpoint port must be a whole number from 1 to 65535, got 0"],
      [() => host.createWebSocketTransport({ ...endpoint, caResource: "missing.der" }, base), "caResource missing.der not found: add it to the manifest's resources (see docs/device-app.md)"],
      [() => host.createWebSocketTransport({ ...endpoint, host: "wss://localhost" }, base), 'endpoint host must be a bare host name or address (no scheme, port, path or spaces), got "wss://localhost"'],
      [() => host.createWebSocketTransport({ host: "localhost:8443", caResource: DEV_PKI_FILES.caCertificateDer }, base), 'the host must be a DNS name (letters, digits, hyphens and dots, no port), got "localhost:8443"'],
      [() => host.createWebSocketTransport(endpoint, undefined as never), "websocket options must be an object { credentials, region?, maxPacketBytes, clockFloorMs?, now? }"],
      [() => host.createWebSocketTransport(endpoint, { ...base, regoin: REGION } as never), "unknown websocket option regoin; the websocket options are credentials, region, maxPacketBytes, clockFloorMs, now"],
      [() => host.createWebSocketTransport(endpoint, { ...base, maxPacketBytes: 8 }), "maxPacketBytes must be a whole number from 16 to 268435455, got 8"],
      [() => host.createWebSocketTransport(endpoint, { ...base, now: 5 as never }), "now must be a function returning the time in epoch milliseconds, got 5"],
      [() => host.createWebSocketTransport(endpoint, { ...base, credentials: SECRET as never }), "credentials must be an object { accessKeyId, secretAccessKey, sessionToken? } or a function returning one"],
      [() => host.createWebSocketTransport(endpoint, { ...base, credentials: { accessKeyId: KEY_ID, secret: SECRET } as never }), "unknown credentials field secret; the credentials fields are accessKeyId, secretAccessKey, sessionToken"],
      [() => host.createWebSocketTransport(endpoint, { ...base, credentials: { accessKeyId: "AKID", secretAccessKey: SECRET } }), "the access key id must be 16 to 128 letters and digits"],
      [() => host.createWebSocketTransport(endpoint, { ...base, credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET + " " } }), "the secret access key must be 1 to 256 printable ASCII characters without spaces"],
      [() => host.createWebSocketTransport(endpoint, { ...base, credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET, sessionToken: TOKEN + "\n" } }), "the session token, when given, must be 1 to 4096 printable ASCII characters without spaces"],
      [() => host.createWebSocketTransport(endpoint, { ...base, region: "Ireland" }), 'the region must look like "eu-west-1", got "Ireland"'],
      [() => host.createWebSocketTransport(endpoint, { ...base, region: undefined }), 'no region given, and the host "localhost" is not an AWS IoT endpoint <id>-ats.iot.<region>.amazonaws.com'],
      [() => host.createWebSocketTransport(endpoint, { ...base, clockFloorMs: -1 }), "the clock floor must be whole milliseconds since 1970"],
    ];
    for (const [call, message] of cases) {
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      assert.ok(thrown instanceof Error, `refused: ${message}`);
      assert.equal((thrown as { code?: string }).code, "invalid-argument");
      assert.ok(thrown.message.startsWith(message), `${thrown.message}\n  expected ${message}`);
      assert.ok(!thrown.message.includes("\n"), "one line");
      for (const secret of SECRETS) assert.ok(!thrown.message.includes(secret), "no secret in: " + thrown.message);
      seen.push(thrown.message);
    }
    // The region comes from an AWS IoT endpoint's host; the port is 443 by default; a provider is not called at the call.
    let calls = 0;
    const provider = (): { accessKeyId: string; secretAccessKey: string } => {
      calls++;
      return { accessKeyId: KEY_ID, secretAccessKey: SECRET };
    };
    const made = host.createWebSocketTransport({ host: "abc123-ats.iot.eu-west-1.amazonaws.com", caResource: DEV_PKI_FILES.caCertificateDer }, { credentials: provider, maxPacketBytes: 1024 });
    assert.equal(typeof made.open, "function");
    assert.equal(calls, 0);
    assert.equal(host.moddableWebSocketPlatform.createWebSocketTransport, host.createWebSocketTransport);
    assert.ok(Object.isFrozen(host.moddableWebSocketPlatform));
  });
});

describe("the TypeScript MqttClient over WSS with SigV4, through the gateway to Mosquitto", () => {
  test("an IAM user's keys, then temporary keys with their token: online, restored, QoS 1 both ways", { timeout: 30_000 }, async () => {
    const peer = await observer("ws-observer-1");
    const up: string[] = [];
    peer.on("message", (topic, payload) => topic === "ws/up" && up.push(payload.toString()));
    await peer.subscribeAsync("ws/up", { qos: 1 });
    for (const [clientId, keys] of [
      ["ws-user-keys", { accessKeyId: KEY_ID, secretAccessKey: SECRET }],
      ["ws-temp-keys", { accessKeyId: TEMP_KEY_ID, secretAccessKey: TEMP_SECRET, sessionToken: TOKEN }],
    ] as const) {
      const accepted = gateway.stats.accepted;
      const device = probe(gateway.port, { credentials: keys }, { clientId, keepAliveSeconds: 30 });
      device.client.connect();
      await device.waitForEvent("restored", 10_000);
      assert.deepEqual(device.states(), ["opening", "awaiting-connack", "resubscribing", "online"]);
      assert.equal(device.named("error").length, 0, device.describe());
      assert.equal(gateway.stats.accepted, accepted + 1);
      assert.ok(gatewayLog.some((line) => line.includes(`(key id ${keys.accessKeyId}), bridged to mqtt://`)), gatewayLog.join("\n"));
      await mosquitto.waitForLog(new RegExp(`New client connected from 127\\.0\\.0\\.1:\\d+ as ${clientId} `));
      // Down: Mosquitto -> gateway -> WebSocket -> device, at QoS 1.
      assert.equal(await device.ack((onAck) => device.client.subscribe("ws/down/" + clientId, 1, device.recorder(), onAck)), 0);
      await peer.publishAsync("ws/down/" + clientId, "down " + clientId, { qos: 1 });
      await waitUntil(() => device.received.find((message) => message.payload === "down " + clientId), 5000, "the message down");
      assert.equal(device.received.at(-1)?.qos, 1);
      // Up: the device's PUBLISH acknowledged by Mosquitto, and at the observer.
      assert.equal(await device.ack((onAck) => device.client.publish("ws/up", "up " + clientId, 1, false, onAck)), 0);
      await waitUntil(() => up.includes("up " + clientId), 5000, "the message up at the observer");
      done(device);
      await device.waitForEvent("offline", 5000);
      assert.deepEqual(messagesOf(device, "offline"), ["disconnected by the client"]);
    }
  });

  test("the facade, AWSIoTMQTTClient(clientID, 4, useWebsocket=true): a wrong secret rejects connect() with the 403; the right keys connect, subscribe and get their own QoS 1 publish", { timeout: 30_000 }, async () => {
    const wrong = new host.AWSIoTMQTTClient("ws-facade-wrong", 4, true);
    wrong.configureEndpoint("localhost", gateway.port);
    wrong.configureCredentials(DEV_PKI_FILES.caCertificateDer);
    wrong.configureIAMCredentials(TEMP_KEY_ID, "wrongSecret/ZZZZ+YYYY/XXXX", TOKEN);
    wrong.configureRegion(REGION);
    wrong.configureAutoReconnectBackoffTime(0.2, 0.4, 20);
    let wrongOnline = 0;
    wrong.onOnline = () => wrongOnline++;
    const wrongErrors: string[] = [];
    wrong.onError = (error) => wrongErrors.push(error.code + ": " + error.message);
    await assert.rejects(wrong.connect(30), (error: Error & { code?: string }) => {
      assert.equal(error.code, "connect-failed");
      assert.match(error.message, /^connection closed before CONNACK: websocket upgrade refused: HTTP 403 Forbidden: The request signature we calculated does not match the signature you provided\./);
      return true;
    });
    await waitUntil(() => wrongErrors.length >= 2, 5000, "a second refused attempt after the backoff");
    await wrong.disconnect();
    assert.equal(wrongOnline, 0);
    seen.push(...wrongErrors);

    const facade = new host.AWSIoTMQTTClient("ws-facade", 4, true);
    facade.configureEndpoint("localhost", gateway.port);
    facade.configureCredentials(DEV_PKI_FILES.caCertificateDer);
    facade.configureIAMCredentials(TEMP_KEY_ID, TEMP_SECRET, TOKEN);
    facade.configureRegion(REGION);
    const errors: string[] = [];
    facade.onError = (error) => errors.push(error.code + ": " + error.message);
    const received: string[] = [];
    assert.equal(await facade.connect(30), true);
    assert.equal(await facade.subscribe("ws/facade", 1, (_client, _userdata, message) => received.push(Buffer.from(message.payload).toString() + " qos " + message.qos)), true);
    assert.equal(await facade.publish("ws/facade", "hello over websocket", 1), true);
    await waitUntil(() => received.length > 0, 5000, "the facade's own publish back");
    assert.deepEqual(received, ["hello over websocket qos 1"]);
    await mosquitto.waitForLog(/New client connected from 127\.0\.0\.1:\d+ as ws-facade .*u'\?SDK=IoTLink&Version=0\.1\.0'/);
    assert.equal(await facade.disconnect(), true);
    assert.deepEqual(errors, []);
  });
});

describe("refusals: a clear error, then backoff, never online", () => {
  /** Connects a probe that must fail; returns its first two errors, after checking the backoff between them. */
  async function refused(options: Partial<TransportOptions>, clientId: string): Promise<{ device: Probe; errors: string[] }> {
    const device = probe(gateway.port, options, { clientId, backoff: { baseMs: 200, maxMs: 400, stableMs: 20_000 } });
    device.client.connect();
    await device.waitForEvent("reconnecting", 10_000, (event) => event.args[1] === 2);
    done(device);
    assert.equal(device.named("online").length, 0, "never online");
    assert.deepEqual(device.named("reconnecting").slice(0, 2).map((event) => event.args), [[200, 1], [400, 2]], "backoff as configured");
    const errors = messagesOf(device, "error");
    assert.ok(errors.length >= 2, device.describe());
    return { device, errors };
  }

  test("a wrong secret: connect-failed with HTTP 403 and AWS's reason, counted by the gateway", { timeout: 20_000 }, async () => {
    const before = gateway.stats.refused["signature-mismatch"];
    const { errors } = await refused({ credentials: { accessKeyId: KEY_ID, secretAccessKey: "wrongSecret/ZZZZ+YYYY/XXXX" } }, "ws-wrong-secret");
    for (const error of errors.slice(0, 2)) {
      assert.match(error, /^connect-failed: connection closed before CONNACK: websocket upgrade refused: HTTP 403 Forbidden: The request signature we calculated does not match the signature you provided\. Check your AWS Secret Access Key/);
    }
    assert.ok(gateway.stats.refused["signature-mismatch"] >= before + 2);
  });

  test("temporary keys without their session token: 403, the security token is invalid", { timeout: 20_000 }, async () => {
    const before = gateway.stats.refused["bad-security-token"];
    const { errors } = await refused({ credentials: { accessKeyId: TEMP_KEY_ID, secretAccessKey: TEMP_SECRET } }, "ws-no-token");
    assert.match(errors[0]!, /^connect-failed: connection closed before CONNACK: websocket upgrade refused: HTTP 403 Forbidden: The security token included in the request is invalid\.$/);
    assert.ok(gateway.stats.refused["bad-security-token"] >= before + 2);
  });

  test("a clock before the floor: refused before anything is sent, naming the time; a clock 10 minutes behind: 403, signature expired", { timeout: 20_000 }, async () => {
    const accepted = gateway.stats.accepted;
    const refusals = Object.values(gateway.stats.refused).reduce((sum, count) => sum + count, 0);
    const { device, errors } = await refused({ now: () => Date.UTC(2020, 0, 1) }, "ws-old-clock");
    assert.equal(errors[0], "connect-failed: connection closed before CONNACK: websocket request target failed: the clock reads 20200101T000000Z, before 20240101T000000Z: set the time before signing (SigV4 needs the real date)");
    assert.ok(!device.states().includes("awaiting-connack"), "no link was made");
    assert.equal(gateway.stats.accepted, accepted);
    assert.equal(Object.values(gateway.stats.refused).reduce((sum, count) => sum + count, 0), refusals, "the gateway heard nothing");
    // A floor of one's own (the build date, say).
    const floored = await refused({ now: () => Date.UTC(2025, 5, 1), clockFloorMs: Date.UTC(2026, 0, 1) }, "ws-own-floor");
    assert.match(floored.errors[0]!, /the clock reads 20250601T000000Z, before 20260101T000000Z/);

    const expired = gateway.stats.refused.expired;
    const behind = await refused({ now: () => Date.now() - 10 * 60_000 }, "ws-clock-behind");
    assert.match(behind.errors[0]!, /^connect-failed: connection closed before CONNACK: websocket upgrade refused: HTTP 403 Forbidden: Signature expired: \d{8}T\d{6}Z is now earlier than/);
    assert.ok(gateway.stats.refused.expired >= expired + 2);
  });
});

describe("credentials from a provider, called at every connection attempt", () => {
  test("after a rotation the reconnect signs with the new key; the old one is gone from the gateway", { timeout: 30_000 }, async () => {
    const proxy = await startFaultProxy({ targetPort: gateway.port });
    proxies.push(proxy);
    let current = { accessKeyId: KEY_ID, secretAccessKey: SECRET };
    const asked: string[] = [];
    const device = probe(proxy.port, { credentials: () => (asked.push(current.accessKeyId), current) }, { clientId: "ws-rotation", backoff: { baseMs: 200, maxMs: 400, stableMs: 20_000 } });
    device.client.connect();
    await device.waitForEvent("restored", 10_000);
    assert.deepEqual(asked, [KEY_ID]);
    // Rotate: the new key is known to the gateway, the old one retired.
    credentials.set(ROTATED_KEY_ID, { secret: ROTATED_SECRET });
    current = { accessKeyId: ROTATED_KEY_ID, secretAccessKey: ROTATED_SECRET };
    credentials.delete(KEY_ID);
    try {
      const from = device.events.length;
      proxy.cutNow();
      await device.waitForEvent("offline", 5000, () => true, from);
      await device.waitForEvent("restored", 10_000, () => true, from);
      assert.deepEqual(asked, [KEY_ID, ROTATED_KEY_ID], "the provider was asked again at the reconnect");
      assert.ok(gatewayLog.some((line) => line.includes(`(key id ${ROTATED_KEY_ID})`)));
      assert.equal(await device.ack((onAck) => device.client.publish("ws/rotated", "after the rotation", 1, false, onAck)), 0);
      assert.equal(device.named("error").length, 0, device.describe());
    } finally {
      credentials.set(KEY_ID, { secret: SECRET });
      done(device);
    }
  });
});

describe("link faults between the device and the gateway (tools/fault-proxy.ts)", () => {
  test("a cut in the middle of a WebSocket frame, down then up: the link is given up and renewed, and the QoS 1 messages arrive whole", { timeout: 40_000 }, async () => {
    const proxy = await startFaultProxy({ targetPort: gateway.port });
    proxies.push(proxy);
    const peer = await observer("ws-observer-cut");
    const up: string[] = [];
    peer.on("message", (topic, payload) => topic === "ws/cut/up" && up.push(payload.toString()));
    await peer.subscribeAsync("ws/cut/up", { qos: 1 });
    // A session kept across the cuts: Mosquitto re-sends what the cut interrupted.
    const device = probe(proxy.port, {}, { clientId: "ws-cut", cleanSession: false, backoff: { baseMs: 200, maxMs: 400, stableMs: 20_000 } });
    device.client.connect();
    await device.waitForEvent("restored", 10_000);
    assert.equal(await device.ack((onAck) => device.client.subscribe("ws/cut/down", 1, device.recorder(), onAck)), 0);

    // Down: a 3,000-byte message is one WebSocket frame; the link dies 1,000 bytes into it.
    const big = "D".repeat(3000);
    let from = device.events.length;
    proxy.cutAfter("down", 1000);
    await peer.publishAsync("ws/cut/down", big, { qos: 1 });
    await device.waitForEvent("offline", 5000, () => true, from);
    await device.waitForEvent("restored", 10_000, () => true, from);
    await waitUntil(() => device.received.find((message) => message.topic === "ws/cut/down"), 10_000, "the message the cut interrupted, re-sent");
    assert.ok(device.received.filter((message) => message.topic === "ws/cut/down").every((message) => message.payload === big), "whole");

    // Up: the device's 3,000-byte PUBLISH is cut 1,000 bytes into its frame; after the reconnect it goes again, with DUP.
    from = device.events.length;
    proxy.cutAfter("up", 1000);
    const acked = device.ack((onAck) => device.client.publish("ws/cut/up", "U".repeat(3000), 1, false, onAck), 15_000);
    await device.waitForEvent("offline", 5000, () => true, from);
    assert.equal(await acked, 0, "acknowledged after the reconnect");
    await waitUntil(() => up.length > 0, 5000, "the message up at the observer");
    assert.ok(up.every((payload) => payload === "U".repeat(3000)));
    assert.ok(device.client.stats.resent >= 1, "re-sent after the reconnect");
    const errors = messagesOf(device, "error");
    assert.ok(errors.every((error) => !/protocol-error|websocket protocol error/.test(error)), errors.join("\n"));
    assert.ok(messagesOf(device, "offline").every((reason) => /^connection lost: /.test(reason)), messagesOf(device, "offline").join("\n"));
    done(device);
  });

  test("the whole connection in 1-byte TCP segments both ways: TLS, the upgrade and the frames reassembled, QoS 1 round trip", { timeout: 60_000 }, async (t) => {
    const proxy = await startFaultProxy({ targetPort: gateway.port });
    proxies.push(proxy);
    proxy.fragment("both", 1, 0);
    const device = probe(proxy.port, { credentials: { accessKeyId: TEMP_KEY_ID, secretAccessKey: TEMP_SECRET, sessionToken: TOKEN } }, { clientId: "ws-fragments", connectTimeoutMs: 45_000 });
    device.client.connect();
    await device.waitForEvent("restored", 45_000);
    assert.equal(await device.ack((onAck) => device.client.subscribe("ws/fragments", 1, device.recorder(), onAck), 15_000), 0);
    assert.equal(await device.ack((onAck) => device.client.publish("ws/fragments", "F".repeat(500), 1, false, onAck), 15_000), 0);
    await waitUntil(() => device.received.length > 0, 15_000, "its own message back, a byte at a time");
    assert.equal(device.received[0]?.payload, "F".repeat(500));
    assert.equal(device.named("error").length, 0, device.describe());
    assert.ok(proxy.stats.bytesUp > 1000 && proxy.stats.bytesDown > 1000);
    t.diagnostic(`${proxy.stats.bytesUp} bytes up and ${proxy.stats.bytesDown} down, one byte a segment`);
    done(device);
  });
});

describe("the device app over WebSocket while Mosquitto is stopped and restarted", () => {
  test("the outage names the gateway's close; backoff as configured; queue, drain, restored; no accepted QoS 1 telemetry lost", { timeout: 60_000 }, async (t) => {
    const BASE = 200;
    const MAX = 1600;
    const COUNT = 50;
    const clientId = "iotlink-ws-restart";
    const telemetryTopic = `iotlink/${clientId}/telemetry`;
    const telemetry = new Map<number, number>();
    const watcher = mqtt.connect(mosquitto.url, { clientId: "ws-restart-observer", clean: false, reconnectPeriod: 100, connectTimeout: 5000 });
    peers.push(watcher);
    watcher.on("error", () => undefined);
    watcher.on("message", (topic, payload) => {
      if (topic !== telemetryTopic) return;
      const seq = (JSON.parse(payload.toString()) as { seq: number }).seq;
      telemetry.set(seq, (telemetry.get(seq) ?? 0) + 1);
    });
    await waitUntil(() => watcher.connected, 5000, "the observer to connect");
    await watcher.subscribeAsync(telemetryTopic, { qos: 1 });

    const app = new AppProcess(appBundle, {
      IOTLINK_RESOURCES: resources,
      IOTLINK_CONFIG_transport: "websocket",
      IOTLINK_CONFIG_endpoint: "127.0.0.1",
      IOTLINK_CONFIG_serverName: "localhost",
      IOTLINK_CONFIG_port: String(gateway.port),
      IOTLINK_CONFIG_accessKeyId: TEMP_KEY_ID,
      IOTLINK_CONFIG_secretAccessKey: TEMP_SECRET,
      IOTLINK_CONFIG_sessionToken: TOKEN,
      IOTLINK_CONFIG_region: REGION,
      IOTLINK_CONFIG_clientId: clientId,
      IOTLINK_CONFIG_shadow: "false",
      IOTLINK_CONFIG_jobs: "false",
      IOTLINK_CONFIG_telemetryIntervalMs: "100",
      IOTLINK_CONFIG_telemetryCount: String(COUNT),
      IOTLINK_CONFIG_backoffBaseMs: String(BASE),
      IOTLINK_CONFIG_backoffMaxMs: String(MAX),
      IOTLINK_CONFIG_queueEntries: "256",
      IOTLINK_CONFIG_queueBytes: "32768",
      IOTLINK_CONFIG_drainIntervalMs: "20",
      IOTLINK_CONFIG_statusIntervalMs: "600000",
    });
    apps.push(app);
    try {
      const start = await app.waitForLine("start", 10_000);
      assert.equal(start.fields.transport, "websocket");
      assert.equal(start.fields.mutual, "false");
      await app.waitForLine("restored", 10_000);
      await waitUntil(() => telemetry.size >= 8, 10_000, "telemetry at the observer");

      const beforeKill = app.lines.length;
      await mosquitto.kill();
      const offline = await app.waitForLine("offline", 5000, () => true, beforeKill);
      await app.waitForLine("backoff", 10_000, (line) => line.fields.attempt === "3", beforeKill);
      await mosquitto.restart();
      const online = await app.waitForLine("online", 10_000, () => true, beforeKill);
      await app.waitForLine("restored", 10_000, () => true, beforeKill);
      await waitUntil(() => watcher.connected, 5000, "the observer to reconnect");

      await app.waitForLine("telemetry", 30_000, (line) => line.fields.seq === String(COUNT));
      const lines = app.events("telemetry");
      const accepted = lines.filter((line) => line.fields.result !== "dropped").map((line) => Number(line.fields.seq));
      const queued = lines.filter((line) => line.fields.result === "queued").length;
      await waitUntil(() => accepted.every((seq) => telemetry.has(seq)), 15_000, () => `every accepted seq at the observer; missing ${accepted.filter((seq) => !telemetry.has(seq)).join(",")}`);
      t.diagnostic(`${accepted.length} accepted (${queued} queued), ${telemetry.size} distinct at the observer; offline: ${offline.fields.reason}`);
      assert.equal(accepted.length, COUNT, "nothing dropped");
      assert.ok(queued >= 3, `the outage queued telemetry (${queued})`);

      // The outage as the app saw it: the broker behind the gateway went, then each attempt was upgraded and closed by the gateway.
      // The gateway closes the WebSocket when the broker's end goes: 1000 for an orderly end, 1011 for a failure.
      assert.match(offline.fields.reason ?? "", /^connection lost: websocket closed by server: (1000|1011 broker connection failed)$/);
      const outage = app.lines.slice(beforeKill, app.lines.indexOf(online));
      const backoffs = outage.filter((line) => line.event === "backoff");
      assert.ok(backoffs.length >= 3);
      backoffs.forEach((line, index) => assert.equal(Number(line.fields.delay), Math.min(MAX, BASE * 2 ** index), `attempt ${index + 1}`));
      const errors = outage.filter((line) => line.event === "error");
      assert.ok(errors.length >= backoffs.length - 1);
      for (const error of errors) {
        assert.equal(error.fields.code, "connect-failed");
        assert.equal(error.fields.message, "connection closed before CONNACK: websocket closed by server: 1011 broker unreachable");
      }
    } finally {
      await app.stop();
      seen.push(...app.output);
    }
  });
});

describe("secrets", () => {
  test("no secret access key or session token in any event, error, trace, gateway log, Mosquitto log or app output", () => {
    const everything = [traced, ...gatewayLog, ...seen, ...probes.map((made) => made.describe()), mosquitto.log()].join("\n");
    assert.ok(everything.length > 1000, "there was something to look at");
    for (const secret of SECRETS) assert.ok(!everything.includes(secret), "a secret leaked");
    assert.doesNotMatch(everything, /X-Amz-Signature=|X-Amz-Security-Token=/, "no signed URL shown");
  });
});
