// IoTLink against a real Mosquitto (Debian's, started by tools/mosquitto.ts on a free loopback port):
// - mutual TLS (require_certificate, use_identity_as_username): connect, QoS 0 and QoS 1 both ways,
//   subscribe then unsubscribe, keep-alive, seen from the client and in the broker's log;
// - the same round trips against the embedded broker (tools/broker.ts);
// - the device app (main.ts, bundled) publishing QoS 1 telemetry while the broker is stopped and
//   restarted: backoff as configured, resubscription, drain, no accepted telemetry lost;
// - TLS failures (wrong CA, unknown or missing client certificate, host name mismatch, a plaintext
//   listener): an error event, backoff as configured, never online, no MQTT CONNECT sent.
// The in-process clients are the core over hosts/moddable (loadDesktopHost), as on the device.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import mqtt, { type IClientOptions, type MqttClient as PeerClient } from "mqtt";
import { startBroker, type RunningBroker } from "../../tools/broker.ts";
import { DEV_PKI_FILES } from "../../tools/certs.ts";
import { buildDesktopApp, loadDesktopHost, type DesktopHost } from "../../tools/desktop-build.ts";
import { startMosquitto, type MosquittoTls, type RunningMosquitto } from "../../tools/mosquitto.ts";
import type { EndpointSettings } from "../../modules/types.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { AppProcess, closePeer, connectPeer, delay, DeviceProbe, waitUntil } from "./helpers.ts";

/** The CN of the development device certificate: Mosquitto makes it the user name. */
const DEVICE_IDENTITY = "iotlink-device";

let fixtures: Fixtures;
let work: string;
let resources: string;
let host: DesktopHost;
let appBundle: string;
let mosquittoTls: MosquittoTls;
let peerTls: IClientOptions;
/** Everything the in-process Moddable host traced (SecureSocket's reasons go here). */
let traced = "";
const brokers: RunningMosquitto[] = [];
const peers: PeerClient[] = [];
const probes: DeviceProbe[] = [];
const apps: AppProcess[] = [];

before(async () => {
  fixtures = createFixtures();
  work = mkdtempSync(join(tmpdir(), "iotlink-broker-test-"));
  // The device's "flash": the development PKI plus the wrong inputs, all as DER.
  resources = join(work, "resources");
  mkdirSync(resources);
  const files: Record<string, Buffer> = {
    [DEV_PKI_FILES.caCertificateDer]: fixtures.caDer,
    [DEV_PKI_FILES.deviceCertificateDer]: fixtures.deviceCertificateDer,
    [DEV_PKI_FILES.deviceKeyDer]: fixtures.deviceKeyDer,
    "other-ca.der": fixtures.otherCaDer,
    "foreign-cert.der": fixtures.foreignDeviceCertificateDer,
    "foreign-key.der": fixtures.foreignDeviceKeyDer,
  };
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(resources, name), bytes);

  host = await loadDesktopHost(join(work, "host.mjs"));
  host.setResourceDirectory(resources);
  // What manifest_iotlink.json says (a default OpenSSL broker picks DHE, which Moddable's mutual TLS cannot do).
  host.mergeConfig({ tls: { DHE_RSA: false } });
  host.setTraceSink((text) => {
    traced += text;
  });
  appBundle = await buildDesktopApp(join(work, "app.mjs"));

  mosquittoTls = {
    caFile: join(fixtures.pki, DEV_PKI_FILES.caCertificatePem),
    certFile: join(fixtures.pki, DEV_PKI_FILES.brokerChainPem),
    keyFile: join(fixtures.pki, DEV_PKI_FILES.brokerKeyPem),
    requireCertificate: true,
    useIdentityAsUsername: true,
  };
  peerTls = { ca: fixtures.caPem, cert: fixtures.deviceCertificatePem, key: fixtures.deviceKeyPem, rejectUnauthorized: true };
});

after(async () => {
  for (const probe of probes) probe.stop();
  for (const app of apps) await app.stop();
  for (const peer of peers) await closePeer(peer);
  for (const broker of brokers) await broker.stop();
  host?.setTraceSink();
  if (fixtures) removeFixtures(fixtures);
  if (work) rmSync(work, { recursive: true, force: true });
});

async function mosquitto(options: Parameters<typeof startMosquitto>[0]): Promise<RunningMosquitto> {
  const broker = await startMosquitto(options);
  brokers.push(broker);
  return broker;
}

async function peer(url: string, options: IClientOptions): Promise<PeerClient> {
  const client = await connectPeer(url, options);
  peers.push(client);
  return client;
}

function probe(endpoint: Partial<EndpointSettings> & { port: number }, options: ConstructorParameters<typeof DeviceProbe>[2]): DeviceProbe {
  const made = new DeviceProbe(
    host,
    { host: "127.0.0.1", caResource: DEV_PKI_FILES.caCertificateDer, certificateResource: DEV_PKI_FILES.deviceCertificateDer, keyResource: DEV_PKI_FILES.deviceKeyDer, ...endpoint },
    options,
  );
  probes.push(made);
  return made;
}

function count(lines: readonly string[], pattern: RegExp): number {
  return lines.filter((line) => pattern.test(line)).length;
}

/** The delay the backoff must give attempt `attempt` (1-based), without jitter. */
function expectedDelay(baseMs: number, maxMs: number, attempt: number): number {
  return Math.min(maxMs, baseMs * 2 ** (attempt - 1));
}

describe("Mosquitto with mutual TLS (require_certificate, use_identity_as_username)", () => {
  let broker: RunningMosquitto;
  let device: DeviceProbe;
  let observer: PeerClient;
  const observed: { topic: string; payload: string; qos: number }[] = [];

  before(async () => {
    broker = await mosquitto({ tls: mosquittoTls });
    observer = await peer(broker.url, { ...peerTls, clientId: "mt-observer" });
    observer.on("message", (topic, payload, packet) => observed.push({ topic, payload: payload.toString(), qos: packet.qos }));
  });

  after(() => device?.stop());

  test("connects with the device certificate: MQTT 3.1.1, the certificate's CN as user name, online then restored", { timeout: 15_000 }, async () => {
    device = probe({ port: broker.port }, { clientId: "mt-device", keepAliveSeconds: 60 });
    assert.equal(device.client.connect(), true);
    await device.waitForEvent("restored", 10_000);
    assert.deepEqual(device.states(), ["opening", "awaiting-connack", "resubscribing", "online"]);
    assert.deepEqual(device.named("online")[0]?.args, [false], "clean session: no session present");
    assert.equal(device.named("error").length, 0, device.describe());
    const connected = await broker.waitForLog(/New client connected from 127\.0\.0\.1:\d+ as mt-device /);
    assert.match(connected, /\(p2, c1, k60, u'iotlink-device'\)/, "MQTT 3.1.1 (p2), clean session, keep-alive 60, user name from the certificate");
    await broker.waitForLog(/Sending CONNACK to mt-device \(0, 0\)/);
  });

  test("QoS 0 round trip: the device's publish reaches another client and comes back to its own subscription", { timeout: 15_000 }, async () => {
    const topic = "iotlink-test/mt-device/qos0";
    assert.equal(await device.ack((done) => device.client.subscribe(topic, 0, device.recorder(), done)), host.AckStatus.Acknowledged);
    await observer.subscribeAsync(topic, { qos: 0 });
    assert.equal(device.client.publish(topic, "hello qos 0", 0), host.Accepted.Sent);
    await waitUntil(() => device.received.some((message) => message.topic === topic), 5000, "the device's own QoS 0 message");
    await waitUntil(() => observed.some((message) => message.topic === topic), 5000, "the QoS 0 message at MQTT.js");
    assert.deepEqual(device.received.filter((message) => message.topic === topic), [{ topic, payload: "hello qos 0", qos: 0 }]);
    assert.deepEqual(observed.filter((message) => message.topic === topic), [{ topic, payload: "hello qos 0", qos: 0 }]);
    await broker.waitForLog(/Received PUBLISH from mt-device \(d0, q0, r0, m0, 'iotlink-test\/mt-device\/qos0', \.\.\. \(11 bytes\)\)/);
  });

  test("QoS 1 round trip both ways: PUBACK to the device, inbound QoS 1 delivered and acknowledged by the device", { timeout: 15_000 }, async () => {
    const topic = "iotlink-test/mt-device/qos1";
    assert.equal(await device.ack((done) => device.client.subscribe(topic, 1, device.recorder(), done)), host.AckStatus.Acknowledged);
    await observer.subscribeAsync(topic, { qos: 1 });

    const status = await device.ack((done) => assert.equal(device.client.publish(topic, "hello qos 1", 1, false, done), host.Accepted.Sent));
    assert.equal(status, host.AckStatus.Acknowledged, "PUBACK from Mosquitto");
    await waitUntil(() => device.received.some((message) => message.topic === topic) && observed.some((message) => message.topic === topic), 5000, "the QoS 1 message at both clients");
    assert.deepEqual(device.received.filter((message) => message.topic === topic), [{ topic, payload: "hello qos 1", qos: 1 }]);
    assert.deepEqual(observed.filter((message) => message.topic === topic), [{ topic, payload: "hello qos 1", qos: 1 }]);
    await broker.waitForLog(/Received PUBLISH from mt-device \(d0, q1, r0, m\d+, 'iotlink-test\/mt-device\/qos1', \.\.\. \(11 bytes\)\)/);
    await broker.waitForLog(/Sending PUBACK to mt-device/);

    // Inbound: another client publishes at QoS 1; the device receives it at QoS 1 and acknowledges it.
    const mark = broker.mark();
    await observer.publishAsync(topic, "from mqtt.js", { qos: 1 });
    await waitUntil(() => device.received.some((message) => message.payload === "from mqtt.js"), 5000, "the inbound QoS 1 message");
    assert.deepEqual(device.received.filter((message) => message.payload === "from mqtt.js"), [{ topic, payload: "from mqtt.js", qos: 1 }]);
    await broker.waitForLog(/Received PUBACK from mt-device/, 5000, mark);
    assert.equal(device.named("error").length, 0, device.describe());
  });

  test("subscribe then unsubscribe: messages arrive while subscribed and stop after the UNSUBACK", { timeout: 15_000 }, async () => {
    const topic = "iotlink-test/mt-device/sub";
    const marker = "iotlink-test/mt-device/marker";
    assert.equal(await device.ack((done) => device.client.subscribe(topic, 1, device.recorder(), done)), host.AckStatus.Acknowledged);
    assert.equal(await device.ack((done) => device.client.subscribe(marker, 1, device.recorder(), done)), host.AckStatus.Acknowledged);
    await broker.waitForLog(/mt-device 1 iotlink-test\/mt-device\/sub/);

    await observer.publishAsync(topic, "while subscribed", { qos: 1 });
    await waitUntil(() => device.received.some((message) => message.payload === "while subscribed"), 5000, "a message while subscribed");

    const mark = broker.mark();
    assert.equal(await device.ack((done) => device.client.unsubscribe(topic, done)), host.AckStatus.Acknowledged, "UNSUBACK");
    await broker.waitForLog(/Received UNSUBSCRIBE from mt-device/, 5000, mark);
    await broker.waitForLog(/Sending UNSUBACK to mt-device/, 5000, mark);

    // Mosquitto handles one publisher's messages in order: once the marker has arrived, a message
    // on the unsubscribed topic would have arrived before it.
    await observer.publishAsync(topic, "after unsubscribe", { qos: 1 });
    await observer.publishAsync(marker, "marker", { qos: 1 });
    await waitUntil(() => device.received.some((message) => message.payload === "marker"), 5000, "the marker");
    await delay(200);
    assert.deepEqual(
      device.received.filter((message) => message.topic === topic).map((message) => message.payload),
      ["while subscribed"],
      "nothing arrives on the topic after the unsubscribe",
    );
    assert.equal(count(broker.since(mark), /Sending PUBLISH to mt-device .*'iotlink-test\/mt-device\/sub'/), 0, "Mosquitto sends nothing on it");
    assert.equal(device.named("offline").length, 0);
  });
});

describe("keep-alive against Mosquitto", () => {
  test("with keepAliveSeconds 1 the device sends PINGREQ, Mosquitto answers, and the link outlives the keep-alive time", { timeout: 20_000 }, async () => {
    const broker = await mosquitto({ tls: mosquittoTls });
    const device = probe({ port: broker.port }, { clientId: "mt-keepalive", keepAliveSeconds: 1 });
    try {
      device.client.connect();
      await device.waitForEvent("restored", 10_000);
      const connected = await broker.waitForLog(/New client connected .* as mt-keepalive /);
      assert.match(connected, /k1,/, "keep-alive 1 s in the CONNECT");
      const onlineAt = Date.now();
      // Mosquitto drops a client silent for 1.5 x keep-alive; stay idle well past twice that.
      await delay(3500);
      const lines = broker.lines();
      const pings = count(lines, /Received PINGREQ from mt-keepalive$/);
      const pongs = count(lines, /Sending PINGRESP to mt-keepalive$/);
      assert.ok(pings >= 2, `at least 2 PINGREQ in ${Date.now() - onlineAt} ms, saw ${pings}`);
      assert.ok(pongs >= 2, `at least 2 PINGRESP, saw ${pongs}`);
      assert.equal(count(lines, /mt-keepalive.*(disconnected|exceeded timeout)/), 0, "Mosquitto never dropped the client");
      assert.equal(device.named("offline").length, 0, device.describe());
      assert.equal(device.named("error").length, 0, device.describe());
      assert.equal(device.client.stateName, "online");

      // Still usable after 3.5 keep-alive periods.
      const topic = "iotlink-test/mt-keepalive/alive";
      assert.equal(await device.ack((done) => device.client.subscribe(topic, 1, device.recorder(), done)), host.AckStatus.Acknowledged);
      assert.equal(await device.ack((done) => device.client.publish(topic, "still here", 1, false, done)), host.AckStatus.Acknowledged);
      await waitUntil(() => device.received.some((message) => message.payload === "still here"), 5000, "the message after the idle period");
    } finally {
      device.stop();
    }
  });
});

describe("the embedded broker (tools/broker.ts)", () => {
  let embedded: RunningBroker | undefined;
  after(async () => {
    await embedded?.stop();
  });

  test("connects with mutual TLS and round-trips QoS 0 and QoS 1", { timeout: 15_000 }, async () => {
    embedded = await startBroker({ certificateDirectory: fixtures.pki });
    const device = probe({ host: embedded.host, port: embedded.port }, { clientId: "embedded-device" });
    try {
      device.client.connect();
      await device.waitForEvent("restored", 10_000);
      assert.deepEqual(embedded.connectedClientIds(), ["embedded-device"]);
      assert.equal(embedded.connections.at(-1)?.identity, DEVICE_IDENTITY);
      assert.equal(embedded.connections.at(-1)?.protocol, "TLSv1.2");

      const topic = "iotlink-test/embedded/loop";
      assert.equal(await device.ack((done) => device.client.subscribe(topic, 1, device.recorder(), done)), host.AckStatus.Acknowledged);
      assert.equal(device.client.publish(topic, "zero", 0), host.Accepted.Sent);
      assert.equal(await device.ack((done) => device.client.publish(topic, "one", 1, false, done)), host.AckStatus.Acknowledged);
      await waitUntil(() => device.received.length >= 2, 5000, "both messages back");
      assert.deepEqual(device.received, [
        { topic, payload: "zero", qos: 0 },
        { topic, payload: "one", qos: 1 },
      ]);
      assert.deepEqual(
        embedded.messages.filter((message) => message.topic === topic).map((message) => [message.clientId, message.payload.toString(), message.qos]),
        [
          ["embedded-device", "zero", 0],
          ["embedded-device", "one", 1],
        ],
      );
      assert.equal(device.named("error").length, 0, device.describe());
    } finally {
      device.stop();
    }
  });
});

describe("the device app while Mosquitto is stopped and restarted", () => {
  test("reconnects with the configured backoff, resubscribes, drains, and loses no accepted QoS 1 telemetry", { timeout: 60_000 }, async (t) => {
    const BASE = 200;
    const MAX = 1600;
    const COUNT = 60;
    const clientId = "iotlink-restart";
    const telemetryTopic = `iotlink/${clientId}/telemetry`;
    const commandTopic = `iotlink/${clientId}/cmd`;
    const replyTopic = `iotlink/${clientId}/reply`;
    // Persistence keeps the observer's session (subscriptions and undelivered messages) across the restart.
    const broker = await mosquitto({ tls: mosquittoTls, persistence: true });

    const telemetry = new Map<number, number>(); // seq -> times received
    const replies: string[] = [];
    const observerErrors: string[] = [];
    const observer = mqtt.connect(broker.url, { ...peerTls, clientId: "restart-observer", clean: false, reconnectPeriod: 100, connectTimeout: 5000 });
    peers.push(observer);
    const observerSessions: boolean[] = [];
    observer.on("connect", (connack) => observerSessions.push(connack.sessionPresent));
    observer.on("error", (error) => observerErrors.push(error.message));
    observer.on("message", (topic, payload) => {
      if (topic === telemetryTopic) {
        const seq = (JSON.parse(payload.toString()) as { seq: number }).seq;
        telemetry.set(seq, (telemetry.get(seq) ?? 0) + 1);
      } else if (topic === replyTopic) replies.push(payload.toString());
    });
    await waitUntil(() => observer.connected, 5000, "the observer to connect");
    await observer.subscribeAsync([telemetryTopic, replyTopic], { qos: 1 });

    const app = new AppProcess(appBundle, {
      IOTLINK_RESOURCES: resources,
      IOTLINK_CONFIG_endpoint: "127.0.0.1",
      IOTLINK_CONFIG_serverName: "localhost",
      IOTLINK_CONFIG_port: String(broker.port),
      IOTLINK_CONFIG_clientId: clientId,
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
      await app.waitForLine("restored", 10_000);
      // The app subscribes to its commands once restored: a ping before the SUBACK could find no subscriber.
      await app.waitForLine("subscribe", 10_000, (line) => line.fields.status === "acknowledged");
      await observer.publishAsync(commandTopic, "ping", { qos: 1 });
      await waitUntil(() => replies.length >= 1, 5000, "the reply to the first ping");
      await waitUntil(() => telemetry.size >= 10, 10_000, "10 telemetry messages at the observer");

      // Stop the broker (SIGTERM: Mosquitto saves the observer's session) and keep it down for two failed attempts.
      const beforeKill = app.lines.length;
      const killedAt = Date.now();
      await broker.kill();
      const offline = await app.waitForLine("offline", 5000, () => true, beforeKill);
      await app.waitForLine("backoff", 10_000, (line) => line.fields.attempt === "3", beforeKill);
      const restartMark = broker.mark();
      await broker.restart();
      const downMs = Date.now() - killedAt;
      const online = await app.waitForLine("online", 10_000, () => true, beforeKill);
      await app.waitForLine("restored", 10_000, () => true, beforeKill);
      // The command topic is subscribed again, at QoS 1.
      await broker.waitForLog(/Received SUBSCRIBE from iotlink-restart/, 5000, restartMark);
      await broker.waitForLog(/iotlink\/iotlink-restart\/cmd \(QoS 1\)/, 5000, restartMark);

      // The command topic works again.
      await waitUntil(() => observer.connected && observerSessions.length >= 2, 5000, "the observer to reconnect");
      assert.equal(observerSessions[0], false);
      assert.equal(observerSessions.at(-1), true, "the observer's session survived the restart (persistence)");
      const repliesBefore = replies.length;
      await observer.publishAsync(commandTopic, "ping", { qos: 1 });
      await waitUntil(() => replies.length > repliesBefore, 5000, "the reply to the ping after the restart");
      assert.match(replies.at(-1) as string, /^\{"command":"ping","uptime":\d+\}$/);

      // All telemetry published; every seq the app accepted (sent or queued) must reach the observer.
      await app.waitForLine("telemetry", 30_000, (line) => line.fields.seq === String(COUNT));
      const telemetryLines = app.events("telemetry");
      const accepted = telemetryLines.filter((line) => line.fields.result === "sent" || line.fields.result === "queued").map((line) => Number(line.fields.seq));
      const queued = telemetryLines.filter((line) => line.fields.result === "queued").length;
      const dropped = telemetryLines.filter((line) => line.fields.result === "dropped").length;
      await waitUntil(() => accepted.every((seq) => telemetry.has(seq)), 15_000, () => `every accepted seq at the observer; missing ${accepted.filter((seq) => !telemetry.has(seq)).join(",")}`);
      const duplicates = [...telemetry.values()].reduce((sum, times) => sum + times - 1, 0);
      t.diagnostic(`broker down ${downMs} ms; ${accepted.length} accepted (${queued} queued while offline or draining), ${dropped} dropped, ${telemetry.size} distinct at the observer, ${duplicates} duplicates`);

      assert.deepEqual(telemetryLines.map((line) => Number(line.fields.seq)), Array.from({ length: COUNT }, (_, index) => index + 1), "one telemetry line per seq");
      assert.equal(accepted.length + dropped, COUNT);
      assert.ok(queued >= 5, `the outage queued telemetry (${queued} queued)`);
      assert.equal(app.events("drop").length, 0, "the queue was large enough: nothing dropped");

      // The outage as the app logged it: offline, failed attempts naming the refused connection, backoff as configured.
      assert.match(offline.fields.reason ?? "", /^connection lost: (closed by the broker|socket error)$/);
      const outage = app.lines.slice(beforeKill, app.lines.indexOf(online));
      const backoffs = outage.filter((line) => line.event === "backoff");
      assert.ok(backoffs.length >= 3, `at least 3 backoff lines while down, saw ${backoffs.length}`);
      backoffs.forEach((line, index) => {
        const attempt = Number(line.fields.attempt);
        assert.equal(attempt, index + 1, "attempts count up from 1 after the loss");
        assert.equal(Number(line.fields.delay), expectedDelay(BASE, MAX, attempt), `attempt ${attempt} waits min(max, base * 2^(n-1))`);
      });
      // Each next attempt starts no earlier than its delay (uptime is the device clock, in ms).
      // The state line logged on entering backoff (just before the backoff line) carries the uptime.
      for (const line of backoffs) {
        const at = outage.indexOf(line);
        const entered = outage.slice(0, at).reverse().find((previous) => previous.event === "state" && previous.fields.state === "backoff");
        const opening = outage.slice(at).find((next) => next.event === "state" && next.fields.state === "opening");
        assert.ok(entered && opening, "each backoff is entered from a state change and followed by an attempt");
        const waited = Number(opening.fields.uptime) - Number(entered.fields.uptime);
        assert.ok(waited >= Number(line.fields.delay) - 2, `attempt ${line.fields.attempt} began ${waited} ms after a ${line.fields.delay} ms backoff`);
      }
      const errors = outage.filter((line) => line.event === "error");
      assert.ok(errors.length >= backoffs.length - 1, "each failed attempt is an error event");
      for (const error of errors) {
        assert.equal(error.fields.code, "connect-failed");
        assert.match(error.fields.message ?? "", /^connection closed before CONNACK: connection or TLS handshake failed: connect ECONNREFUSED 127\.0\.0\.1:\d+$/, "the error line names the refused connection");
      }
      assert.match(app.output.join("\n"), /securesocket: connect ECONNREFUSED 127\.0\.0\.1:\d+/, "the console names the refused connection");
      assert.equal(online.fields.session, "false");
      assert.equal(app.events("online").length, 2);
      assert.equal(app.events("command").filter((line) => line.fields.name === "ping").length, 2);
      assert.equal(app.lines.filter((line) => line.event === "ack" && line.fields.status === "dropped").length, 0);
      assert.ok(app.running, "the app kept running");
    } finally {
      await app.stop();
      await closePeer(observer);
    }
    t.diagnostic(`the MQTT.js observer reported ${observerErrors.length} errors while the broker was down: ${[...new Set(observerErrors)].join("; ")}`);
  });
});

describe("the device app's transport settings: mutual TLS (default), TLS that checks the broker only, plaintext", () => {
  const appEnvironment = (port: number, clientId: string, settings: Record<string, string>): Record<string, string> => ({
    IOTLINK_RESOURCES: resources,
    IOTLINK_CONFIG_endpoint: "127.0.0.1",
    IOTLINK_CONFIG_serverName: "localhost",
    IOTLINK_CONFIG_port: String(port),
    IOTLINK_CONFIG_clientId: clientId,
    IOTLINK_CONFIG_backoffBaseMs: "200",
    IOTLINK_CONFIG_statusIntervalMs: "600000",
    ...settings,
  });

  test("mutualTls=false with a user name and password: no device certificate is offered; the password is checked, never logged", { timeout: 30_000 }, async () => {
    // Mosquitto's own tool hashes the password file, as a broker's administrator would.
    const passwords = join(work, "passwords");
    writeFileSync(passwords, "");
    await promisify(execFile)("mosquitto_passwd", ["-b", passwords, "meter-7", "s3cret-pass"]);
    const serverOnly = await mosquitto({ tls: { ...mosquittoTls, requireCertificate: false, useIdentityAsUsername: false }, extraConfig: ["password_file " + passwords] });
    const credentials = { IOTLINK_CONFIG_mutualTls: "false", IOTLINK_CONFIG_username: "meter-7" };

    const wrong = new AppProcess(appBundle, appEnvironment(serverOnly.port, "iotlink-wrong-pass", { ...credentials, IOTLINK_CONFIG_password: "guessed" }));
    apps.push(wrong);
    await wrong.waitForLine("error", 10_000, (line) => /not authorized \(CONNACK 5\)/.test(line.fields.message ?? ""));
    await wrong.stop();

    const app = new AppProcess(appBundle, appEnvironment(serverOnly.port, "iotlink-server-only", { ...credentials, IOTLINK_CONFIG_password: "s3cret-pass" }));
    apps.push(app);
    const start = await app.waitForLine("start", 10_000);
    assert.equal(start.fields.tls, "true");
    assert.equal(start.fields.mutual, "false");
    await app.waitForLine("restored", 10_000);
    await serverOnly.waitForLog(/New client connected from .* as iotlink-server-only .*u'meter-7'/, 5000);
    await app.stop();
    assert.ok(!app.output.concat(wrong.output).some((line) => line.includes("s3cret-pass") || line.includes("guessed")), "no password in the log");

    // The same settings against require_certificate: the handshake fails, so the app really sent no certificate.
    const mutual = await mosquitto({ tls: mosquittoTls });
    const refused = new AppProcess(appBundle, appEnvironment(mutual.port, "iotlink-no-cert", { IOTLINK_CONFIG_mutualTls: "false" }));
    apps.push(refused);
    await refused.waitForLine("backoff", 10_000, (line) => line.fields.attempt === "2");
    assert.equal(refused.events("online").length, 0, "never online");
    assert.equal(count(mutual.lines(), /as iotlink-no-cert/), 0, "no MQTT CONNECT reached Mosquitto");
    await refused.stop();
  });

  test("plaintext=true: the manifest's defaults need no clearing; the app speaks plain MQTT to a plain listener", { timeout: 30_000 }, async () => {
    const plain = await mosquitto({});
    const app = new AppProcess(appBundle, appEnvironment(plain.port, "iotlink-plain", { IOTLINK_CONFIG_plaintext: "true" }));
    apps.push(app);
    const start = await app.waitForLine("start", 10_000);
    assert.equal(start.fields.tls, "false");
    assert.equal(start.fields.mutual, "false");
    await app.waitForLine("restored", 10_000);
    await plain.waitForLog(/New client connected from .* as iotlink-plain/, 5000);
    await app.stop();
  });
});

describe("TLS failures: an error event, backoff, never online, no MQTT CONNECT", () => {
  let broker: RunningMosquitto;
  const BASE = 100;
  const MAX = 1000;
  /** What the transport reports for SecureSocket message -2 before the link is up, with the desktop socket's reason (the device's gives none). */
  const HANDSHAKE_FAILED = /^connection closed before CONNACK: connection or TLS handshake failed: .+$/;
  /** ... or, when the broker's close wins the race, message -1. */
  const FAILED_OR_CLOSED = /^connection closed before CONNACK: (connection or TLS handshake failed: .+|closed during connect or TLS handshake)$/;

  before(async () => {
    broker = await mosquitto({ tls: mosquittoTls });
  });

  /**
   * Connects with `endpoint` until the third backoff, then checks what the client, its console
   * (the SecureSocket trace) and the broker's log show.
   */
  async function expectRefused(
    target: RunningMosquitto,
    clientId: string,
    endpoint: Partial<EndpointSettings>,
    causes: { trace: RegExp; log: RegExp; error?: RegExp },
  ): Promise<void> {
    const mark = target.mark();
    const traceMark = traced.length;
    const device = probe({ port: target.port, ...endpoint }, { clientId, backoff: { baseMs: BASE, maxMs: MAX }, connectTimeoutMs: 5000 });
    try {
      device.client.connect();
      await device.waitForEvent("reconnecting", 10_000, (event) => event.args[1] === 3);
    } finally {
      device.stop();
    }
    // The client: an error per attempt, the configured backoff, never further than opening the link.
    const errors = device.named("error");
    assert.equal(errors.length, 3, device.describe());
    for (const { args } of errors) {
      const error = args[0] as { code: string; message: string };
      assert.equal(error.code, "connect-failed");
      assert.match(error.message, causes.error ?? HANDSHAKE_FAILED);
    }
    const reconnects = device.named("reconnecting");
    assert.deepEqual(reconnects.map((event) => event.args), [
      [BASE, 1],
      [BASE * 2, 2],
      [BASE * 4, 3],
    ]);
    // Each attempt started no earlier than its backoff delay.
    const openings = device.events.filter((event) => event.name === "state" && event.args[0] === "opening");
    assert.equal(openings.length, 3);
    for (let index = 0; index < 2; index++) {
      const waited = openings[index + 1]!.at - reconnects[index]!.at;
      assert.ok(waited >= (reconnects[index]!.args[0] as number) - 2, `attempt ${index + 2} began ${waited} ms after a ${String(reconnects[index]!.args[0])} ms backoff`);
    }
    assert.equal(device.named("online").length, 0, "never online");
    assert.deepEqual([...new Set(device.states())].sort(), ["backoff", "idle", "opening"], "never reached awaiting-connack: no CONNECT was written (a failed attempt goes straight to backoff)");
    assert.equal(device.client.stats.sent, 0);

    // The console names the cause, once per attempt.
    const trace = traced.slice(traceMark).split("\n").filter((line) => line.startsWith("securesocket: "));
    assert.equal(trace.length, 3, trace.join("\n"));
    for (const line of trace) assert.match(line, causes.trace);
    // The error line names the same cause as the console's trace line.
    for (const { args } of device.named("error")) {
      const message = (args[0] as { message: string }).message;
      if (message.includes("handshake failed: ")) assert.ok(trace.some((line) => message.endsWith(line.slice("securesocket: ".length))), message + " / " + trace.join(" | "));
    }

    // The broker saw three connections, refused each, and no MQTT client ever connected.
    await waitUntil(() => count(target.since(mark), /New connection from 127\.0\.0\.1/) >= 3 && count(target.since(mark), causes.log) >= 3, 5000, () => `3 refused connections in the broker log:\n${target.since(mark).join("\n")}`);
    const log = target.since(mark);
    assert.equal(count(log, /New connection from 127\.0\.0\.1/), 3, log.join("\n"));
    assert.equal(count(log, causes.log), 3, `each refusal in the broker log matches ${causes.log}:\n${log.join("\n")}`);
    assert.equal(count(log, /New client connected|CONNECT|CONNACK/), 0, `no MQTT session:\n${log.join("\n")}`);
  }

  test("wrong CA: the client trusts another CA and refuses the broker's chain", { timeout: 20_000 }, async () => {
    await expectRefused(broker, "tls-wrong-ca", { caResource: "other-ca.der" }, {
      trace: /^securesocket: server certificate chain is not signed by the CA given in secure\.certificate$/,
      log: /Client <unknown> (disconnected|closed its connection)/,
    });
  });

  test("unknown client certificate (signed by another CA): Mosquitto refuses it in the handshake", { timeout: 20_000 }, async () => {
    await expectRefused(broker, "tls-foreign-cert", { certificateResource: "foreign-cert.der", keyResource: "foreign-key.der" }, {
      // The broker's alert races its connection reset: the device sees one or the other.
      trace: /^securesocket: (server sent alert (unknown_ca|bad_certificate|certificate_unknown|decrypt_error) during the handshake|(read|write) ECONNRESET|connection closed by the server during the TLS handshake)$/,
      log: /OpenSSL Error\[0\]: .*certificate verify failed/,
      error: FAILED_OR_CLOSED,
    });
  });

  test("no client certificate: the transport allows it, Mosquitto (require_certificate) refuses the handshake", { timeout: 20_000 }, async () => {
    // What the API allows: TLS without a CA is refused at construction; a CA alone is accepted.
    assert.throws(
      () => host.moddablePlatform.createTransport({ host: "127.0.0.1", port: broker.port, certificateResource: "device-cert.der", keyResource: "device-key.der" }),
      /TLS needs a CA certificate resource \(caResource\); plain TCP must be asked for with plaintext: true/,
    );
    const facade = new host.AWSIoTMQTTClient("tls-facade");
    facade.configureEndpoint("127.0.0.1", broker.port);
    assert.throws(() => facade.configureCredentials("ca.der", "device-key.der", ""), /KeyPath and CertificatePath must both name resources \(mutual TLS\) or both be empty/);
    await expectRefused(broker, "tls-no-cert", { certificateResource: undefined, keyResource: undefined }, {
      trace: /^securesocket: (server sent alert handshake_failure during the handshake|(read|write) ECONNRESET|connection closed by the server during the TLS handshake)$/,
      log: /OpenSSL Error\[0\]: .*peer did not return a certificate/,
      error: FAILED_OR_CLOSED,
    });
  });

  test("host name mismatch: the broker's certificate does not name the server name asked for", { timeout: 20_000 }, async () => {
    await expectRefused(broker, "tls-wrong-name", { serverName: "broker.example.com" }, {
      trace: /^securesocket: subjectAltName match failed for broker\.example\.com$/,
      log: /Client <unknown> (disconnected|closed its connection)/,
    });
  });

  test("plaintext listener: a TLS client pointed at a plain MQTT port never speaks MQTT to it", { timeout: 20_000 }, async () => {
    const plain = await mosquitto({});
    assert.equal(plain.tls, false);
    await expectRefused(plain, "tls-to-plain", {}, {
      trace: /^securesocket: ((read|write) ECONNRESET|connection closed by the server during the TLS handshake)$/,
      // The ClientHello's first byte (0x16) reads as a CONNECT with reserved flags set.
      log: /Client <unknown> disconnected due to (protocol error|malformed packet)/,
      error: FAILED_OR_CLOSED,
    });
  });
});
