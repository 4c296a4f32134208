// tools/wss-gateway.ts in front of a real Mosquitto (plain TCP listener), driven by clients that
// share no code with it: MQTT.js over wss:// and the `ws` package, with URLs presigned by npm `aws4`
// (and, once, by IoTLink's own modules/sigv4.ts). An accepted connection carries MQTT both ways
// through Mosquitto; each way of getting SigV4 wrong is refused with AWS's status and words and
// counted; closing either side closes the other; no secret or token reaches a log line or a body.
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import aws4 from "aws4";
import mqtt, { type MqttClient } from "mqtt";
import mqttPacket from "mqtt-packet";
import WebSocket from "ws";
import { presignMqttUrl } from "../../modules/sigv4.ts";
import { DEV_PKI_FILES, ensureDevPki } from "../../tools/certs.ts";
import { freePort, startMosquitto, type RunningMosquitto } from "../../tools/mosquitto.ts";
import { REFUSAL_REASONS, startWssGateway, verifyPresignedRequest, type RefusalReason, type RunningWssGateway } from "../../tools/wss-gateway.ts";
import { ROOT, runScript } from "../desktop/command-line.ts";
import { closePeer, connectPeer, waitUntil } from "./helpers.ts";

const REGION = "eu-west-1";
const KEY_ID = "AKIDEXAMPLE12345";
const SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const TEMP_KEY_ID = "ASIAQWERTYUIOPASDFGH";
const TEMP_SECRET = "tempSecret/With+Odd=Chars~";
const TOKEN = "IQoJb3JpZ2luX2VjE/+abc==SessionTokenValue";
/** The gateway's clock: fixed, so the time window can be tested to the second. */
const NOW = Date.UTC(2026, 2, 14, 15, 9, 26);

let pki: string;
let caPem: Buffer;
let mosquitto: RunningMosquitto;
let gateway: RunningWssGateway;
let clock = NOW;
const logs: string[] = [];
const bodies: string[] = [];
const expectedRefusals = new Map<RefusalReason, number>();

before(async () => {
  pki = mkdtempSync(join(tmpdir(), "iotlink-wss-gateway-"));
  ensureDevPki({ directory: pki });
  caPem = readFileSync(join(pki, DEV_PKI_FILES.caCertificatePem));
  mosquitto = await startMosquitto();
  gateway = await startWssGateway({
    credentials: { [KEY_ID]: { secret: SECRET }, [TEMP_KEY_ID]: { secret: TEMP_SECRET, sessionToken: TOKEN } },
    broker: { host: mosquitto.host, port: mosquitto.port },
    certificateDirectory: pki,
    now: () => clock,
    log: (line) => logs.push(line),
  });
});

after(async () => {
  await gateway?.close();
  await mosquitto?.stop();
  rmSync(pki, { recursive: true, force: true });
});

function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

interface Signing {
  host?: string;
  keyId?: string;
  secret?: string;
  /** Appended after signing, as AWS IoT wants it (aws4 would sign it). */
  token?: string;
  nowMs?: number;
  service?: string;
  region?: string;
  path?: string;
  /** More query parameters, signed (e.g. X-Amz-Expires=60). */
  extra?: string;
}

/** A presigned `GET /mqtt?...` from npm aws4, as the AWS SDKs make it for AWS IoT. */
function presign(signing: Signing = {}): string {
  const request = aws4.sign(
    {
      host: signing.host ?? `localhost:${gateway.port}`,
      path: `${signing.path ?? "/mqtt"}?X-Amz-Date=${amzDate(signing.nowMs ?? clock)}${signing.extra ? "&" + signing.extra : ""}`,
      method: "GET",
      service: signing.service ?? "iotdevicegateway",
      region: signing.region ?? REGION,
      signQuery: true,
    },
    { accessKeyId: signing.keyId ?? KEY_ID, secretAccessKey: signing.secret ?? SECRET },
  );
  const path = request.path as string;
  return signing.token === undefined ? path : `${path}&X-Amz-Security-Token=${encodeURIComponent(signing.token)}`;
}

type Outcome = { ws: WebSocket } | { status: number; body: string };

/** Opens wss://localhost:<port><path> with the `ws` package: the open socket, or the refusal's status and body. */
function open(path: string, protocols: string[] = ["mqtt"], headers?: Record<string, string>, port = gateway.port): Promise<Outcome> {
  return new Promise((done, fail) => {
    const ws = new WebSocket(`wss://localhost:${port}${path}`, protocols, { ca: caPem, headers });
    ws.once("open", () => done({ ws }));
    ws.once("unexpected-response", (_request, response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (text: string) => (body += text));
      response.on("end", () => {
        bodies.push(body);
        done({ status: response.statusCode ?? 0, body });
      });
    });
    // Kept for the socket's life: a late error must not crash the test process.
    ws.on("error", fail);
  });
}

/** Expects a refusal with this status, a body matching `body`, and the reason counted once more. */
async function assertRefused(outcome: Promise<Outcome>, status: number, body: RegExp, reason: RefusalReason): Promise<void> {
  const result = await outcome;
  if ("ws" in result) {
    result.ws.terminate();
    assert.fail(`accepted, expected ${status} ${reason}`);
  }
  assert.equal(result.status, status);
  assert.match(result.body, body);
  expectedRefusals.set(reason, (expectedRefusals.get(reason) ?? 0) + 1);
  assert.equal(gateway.stats.refused[reason], expectedRefusals.get(reason), `stats.refused["${reason}"]`);
}

function connectPacket(clientId: string): Buffer {
  return mqttPacket.generate({ cmd: "connect", protocolId: "MQTT", protocolVersion: 4, clientId, clean: true, keepalive: 30 });
}

/** The next binary message on a raw `ws`. */
function nextMessage(ws: WebSocket): Promise<Buffer> {
  return new Promise((done) => ws.once("message", (data) => done(Buffer.from(data as Buffer))));
}

function closed(ws: WebSocket): Promise<number> {
  return new Promise((done) => ws.once("close", (code) => done(code)));
}

describe("an accepted connection is bridged to Mosquitto", () => {
  let device: MqttClient | undefined;
  let peer: MqttClient | undefined;
  after(async () => {
    await closePeer(device);
    await closePeer(peer);
  });

  test("MQTT.js over wss:// with an aws4-presigned URL: CONNECT/CONNACK, a QoS 1 publish comes back through Mosquitto, and a TCP peer's reaches it", { timeout: 20_000 }, async () => {
    device = await connectPeer(`wss://localhost:${gateway.port}${presign()}`, { clientId: "wss-device", protocolVersion: 4, ca: caPem, rejectUnauthorized: true });
    assert.equal(gateway.stats.accepted, 1);
    await mosquitto.waitForLog(/New client connected from .* as wss-device/);
    const received: { topic: string; payload: string; qos: number }[] = [];
    device.on("message", (topic, payload, packet) => received.push({ topic, payload: payload.toString(), qos: packet.qos }));
    await device.subscribeAsync("wss/echo/#", { qos: 1 });
    // Resolves once the PUBACK came back through the gateway.
    await device.publishAsync("wss/echo/one", "over the gateway", { qos: 1 });
    await mosquitto.waitForLog(/Sending PUBACK to wss-device/);
    await waitUntil(() => received.find((message) => message.payload === "over the gateway"), 5000, "the QoS 1 publish back");
    assert.deepEqual(received[0], { topic: "wss/echo/one", payload: "over the gateway", qos: 1 });
    await mosquitto.waitForLog(/Received PUBLISH from wss-device \(d0, q1, r0, m\d+, 'wss\/echo\/one'/);

    peer = await connectPeer(mosquitto.url, { clientId: "tcp-peer" });
    await peer.publishAsync("wss/echo/two", "from a TCP peer", { qos: 1 });
    await waitUntil(() => received.find((message) => message.payload === "from a TCP peer"), 5000, "the TCP peer's publish");
    assert.ok(gateway.stats.bytesToBroker > 0 && gateway.stats.bytesToClient > 0);

    // A clean end: DISCONNECT through the gateway, then the WebSocket closes and the TCP stream ends.
    const mark = mosquitto.mark();
    await device.endAsync();
    device = undefined;
    await mosquitto.waitForLog(/Received DISCONNECT from wss-device/, 5000, mark);
    await waitUntil(() => gateway.stats.open === 0, 5000, "the bridge to close");
  });

  test("IoTLink's own presigner (modules/sigv4.ts, host without a port as on port 443) is accepted when the Host header is the signed host", { timeout: 10_000 }, async () => {
    const crypto = {
      sha256Hex: (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex"),
      hmacSha256: (key: Uint8Array, data: Uint8Array) => new Uint8Array(createHmac("sha256", key).update(data).digest()),
    };
    const signed = presignMqttUrl({ host: "localhost", region: REGION, accessKeyId: TEMP_KEY_ID, secretAccessKey: TEMP_SECRET, sessionToken: TOKEN, nowMs: clock }, crypto);
    const result = await open(signed.path, ["mqtt"], { Host: "localhost" });
    assert.ok("ws" in result, "accepted: " + JSON.stringify(result));
    const connack = nextMessage(result.ws);
    result.ws.send(connectPacket("iotlink-signed"));
    assert.deepEqual([...(await connack)], [0x20, 2, 0, 0]);
    const code = closed(result.ws);
    result.ws.close(1000);
    assert.equal(await code, 1000);
    await waitUntil(() => gateway.stats.open === 0, 5000, "the bridge to close");
  });

  test("the client closing without DISCONNECT ends the TCP stream: Mosquitto sees the connection go", { timeout: 10_000 }, async () => {
    const result = await open(presign());
    assert.ok("ws" in result);
    const connack = nextMessage(result.ws);
    result.ws.send(connectPacket("raw-client"));
    assert.deepEqual([...(await connack)], [0x20, 2, 0, 0]);
    const mark = mosquitto.mark();
    result.ws.close(1000);
    await mosquitto.waitForLog(/Client raw-client closed its connection|Client raw-client disconnected/, 5000, mark);
    await waitUntil(() => gateway.stats.open === 0, 5000, "the bridge to close");
  });

  test("the broker closing the TCP stream closes the WebSocket with 1000", { timeout: 10_000 }, async () => {
    const result = await open(presign());
    assert.ok("ws" in result);
    const connack = nextMessage(result.ws);
    result.ws.send(connectPacket("taken-over"));
    assert.deepEqual([...(await connack)], [0x20, 2, 0, 0]);
    const code = closed(result.ws);
    // Mosquitto drops the older connection of a client id that connects again.
    const usurper = await connectPeer(mosquitto.url, { clientId: "taken-over" });
    assert.equal(await code, 1000);
    await closePeer(usurper);
    await waitUntil(() => gateway.stats.open === 0, 5000, "the bridge to close");
  });

  test("a text frame is not MQTT: the WebSocket is closed with 1003", { timeout: 10_000 }, async () => {
    const result = await open(presign());
    assert.ok("ws" in result);
    const code = closed(result.ws);
    result.ws.send("CONNECT");
    assert.equal(await code, 1003);
  });

  test("X-Amz-Expires, when present, is honoured: valid for its seconds after X-Amz-Date, refused after", { timeout: 10_000 }, async () => {
    const path = presign({ extra: "X-Amz-Expires=600" });
    clock = NOW + 540_000; // 9 minutes later: past the 5-minute skew, within the 10 minutes
    try {
      const result = await open(path);
      assert.ok("ws" in result, "accepted within X-Amz-Expires: " + JSON.stringify(result));
      result.ws.close();
      clock = NOW + 601_000;
      await assertRefused(open(path), 403, /^Request has expired\n$/, "expired");
    } finally {
      clock = NOW;
    }
  });
});

test("a broker that cannot be reached: the WebSocket opens, then closes with 1011, counted", { timeout: 10_000 }, async () => {
  const nowhere = await freePort();
  const lonely = await startWssGateway({ credentials: { [KEY_ID]: { secret: SECRET } }, broker: { host: "127.0.0.1", port: nowhere }, certificateDirectory: pki, now: () => clock, log: (line) => logs.push(line) });
  try {
    const result = await open(presign({ host: `localhost:${lonely.port}` }), ["mqtt"], undefined, lonely.port);
    assert.ok("ws" in result, JSON.stringify(result));
    const code = closed(result.ws);
    result.ws.send(connectPacket("nowhere"));
    assert.equal(await code, 1011);
    assert.equal(lonely.stats.brokerFailures, 1);
    await waitUntil(() => lonely.stats.open === 0, 5000, "the bridge to close");
  } finally {
    await lonely.close();
  }
});

describe("refusals: AWS's status and words, each reason counted", () => {
  test("a wrong secret: 403, the signature does not match", async () => {
    await assertRefused(open(presign({ secret: SECRET + "x" })), 403, /^The request signature we calculated does not match the signature you provided\. Check your AWS Secret Access Key/, "signature-mismatch");
  });

  test("a signature over another Host than the one sent: 403, the signature does not match", async () => {
    await assertRefused(open(presign({ host: "localhost" })), 403, /^The request signature we calculated does not match/, "signature-mismatch");
  });

  test("an unknown key id: 403, the security token is invalid", async () => {
    await assertRefused(open(presign({ keyId: "AKIDUNKNOWN00000" })), 403, /^The security token included in the request is invalid\.\n$/, "unknown-key-id");
  });

  test("X-Amz-Date 6 minutes behind the gateway's clock: 403 Signature expired", async () => {
    await assertRefused(open(presign({ nowMs: NOW - 360_000 })), 403, /^Signature expired: 20260314T150326Z is now earlier than 20260314T150426Z \(20260314T150926Z - 5 min\.\)\n$/, "expired");
  });

  test("X-Amz-Date 6 minutes ahead of the gateway's clock: 403 Signature not yet current", async () => {
    await assertRefused(open(presign({ nowMs: NOW + 360_000 })), 403, /^Signature not yet current: 20260314T151526Z is still later than 20260314T151426Z \(20260314T150926Z \+ 5 min\.\)\n$/, "not-yet-valid");
  });

  test("5 minutes off either way is still accepted", async () => {
    for (const skew of [-300_000, 300_000]) {
      const result = await open(presign({ nowMs: NOW + skew }));
      assert.ok("ws" in result, `skew ${skew}: ${JSON.stringify(result)}`);
      result.ws.close();
    }
  });

  test("temporary credentials: the session token missing or different is refused, present is accepted", async () => {
    await assertRefused(open(presign({ keyId: TEMP_KEY_ID, secret: TEMP_SECRET })), 403, /^The security token included in the request is invalid\.\n$/, "bad-security-token");
    await assertRefused(open(presign({ keyId: TEMP_KEY_ID, secret: TEMP_SECRET, token: TOKEN + "x" })), 403, /^The security token included in the request is invalid\.\n$/, "bad-security-token");
    await assertRefused(open(presign({ token: TOKEN })), 403, /^The security token included in the request is invalid\.\n$/, "bad-security-token");
    const result = await open(presign({ keyId: TEMP_KEY_ID, secret: TEMP_SECRET, token: TOKEN }));
    assert.ok("ws" in result, JSON.stringify(result));
    result.ws.close();
  });

  test("a credential scoped to another service: 403", async () => {
    await assertRefused(open(presign({ service: "iotdata" })), 403, /^Credential should be scoped to correct service: 'iotdevicegateway'\.\n$/, "wrong-service");
  });

  test("another path: 404", async () => {
    await assertRefused(open(presign({ path: "/mqtt2" })), 404, /^Not Found/, "not-found");
    await assertRefused(open("/"), 404, /^Not Found/, "not-found");
  });

  test("no mqtt subprotocol: 400", async () => {
    await assertRefused(open(presign(), []), 400, /^Bad Request: Sec-WebSocket-Protocol must offer mqtt\n$/, "no-mqtt-protocol");
    await assertRefused(open(presign(), ["mqttv3.1"]), 400, /mqtt/, "no-mqtt-protocol");
  });

  test("no signature at all, or another algorithm: 403", async () => {
    await assertRefused(open("/mqtt"), 403, /^Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders parameters\.\n$/, "missing-parameters");
    await assertRefused(open(presign().replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1")), 403, /^X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"\n$/, "bad-algorithm");
  });

  test("a plain HTTPS GET without an upgrade: 426 on /mqtt, 404 elsewhere", async () => {
    for (const [path, status, reason] of [["/mqtt", 426, "not-websocket"], ["/other", 404, "not-found"]] as const) {
      const response = await fetchInsecure(path);
      assert.equal(response.status, status);
      bodies.push(response.body);
      expectedRefusals.set(reason, (expectedRefusals.get(reason) ?? 0) + 1);
      assert.equal(gateway.stats.refused[reason], expectedRefusals.get(reason));
    }
  });

  test("every refusal was counted under its reason, and nothing else", () => {
    for (const reason of REFUSAL_REASONS) assert.equal(gateway.stats.refused[reason], expectedRefusals.get(reason) ?? 0, reason);
  });
});

describe("as a command: npm run wss-gateway", () => {
  test("--help on stdout, exit 0; a bad option or no credentials: one line, exit 2", async () => {
    const help = await runScript("wss-gateway", ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: npm run wss-gateway -- \[--host 127\.0\.0\.1\]/);
    const bad = await runScript("wss-gateway", ["--prot", "1"]);
    assert.deepEqual([bad.code, bad.errorLines], [2, ["wss-gateway: unknown option --prot (see npm run wss-gateway -- --help)"]]);
    const none = await runScript("wss-gateway", [], { env: { AWS_ACCESS_KEY_ID: "", AWS_SECRET_ACCESS_KEY: "" } });
    assert.deepEqual([none.code, none.errorLines], [2, ["wss-gateway: no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or give --credentials file.json"]]);
  });

  test("with --credentials and --broker mqtt://: prints its URL, bridges a presigned connection, exits 0 on SIGTERM", { timeout: 20_000 }, async () => {
    const file = join(pki, "credentials.json");
    writeFileSync(file, JSON.stringify({ [TEMP_KEY_ID]: { secret: TEMP_SECRET, sessionToken: TOKEN } }));
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "tools", "wss-gateway.ts"), "--port", "0", "--certs", pki, "--broker", mosquitto.url, "--credentials", file], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk));
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    try {
      const url = await waitUntil(() => /^wss:\/\/127\.0\.0\.1:(\d+)\/mqtt\n/.exec(stdout) ?? undefined, 10_000, () => `the URL; stderr: ${stderr}`);
      const port = Number(url[1]);
      const result = await open(presign({ host: `localhost:${port}`, keyId: TEMP_KEY_ID, secret: TEMP_SECRET, token: TOKEN, nowMs: Date.now() }), ["mqtt"], undefined, port);
      assert.ok("ws" in result, JSON.stringify(result));
      const connack = nextMessage(result.ws);
      result.ws.send(connectPacket("from-the-command"));
      assert.deepEqual([...(await connack)], [0x20, 2, 0, 0]);
      result.ws.close();
    } finally {
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0);
    assert.match(stderr, /^wss-gateway: accepted 127\.0\.0\.1:\d+ \(key id ASIAQWERTYUIOPASDFGH\), bridged to mqtt:\/\/127\.0\.0\.1:\d+$/m);
    logs.push(...stderr.split("\n"));
  });
});

/** GET over TLS with the development CA, no upgrade. */
async function fetchInsecure(path: string): Promise<{ status: number; body: string }> {
  const { request } = await import("node:https");
  return new Promise((done, fail) => {
    const req = request({ host: "localhost", port: gateway.port, path, ca: caPem, method: "GET" }, (response) => {
      let body = "";
      response.setEncoding("utf8");
      response.on("data", (text: string) => (body += text));
      response.on("end", () => done({ status: response.statusCode ?? 0, body }));
    });
    req.on("error", fail);
    req.end();
  });
}

describe("the verifier alone (verifyPresignedRequest)", () => {
  const credentials = { [KEY_ID]: { secret: SECRET } };
  const host = "abc123-ats.iot.eu-west-1.amazonaws.com";
  const target = (): string =>
    (aws4.sign({ host, path: `/mqtt?X-Amz-Date=${amzDate(NOW)}`, method: "GET", service: "iotdevicegateway", region: REGION, signQuery: true }, { accessKeyId: KEY_ID, secretAccessKey: SECRET }).path as string);

  test("accepts aws4's URL for an AWS IoT endpoint, and refuses it in another region when the gateway has one", () => {
    assert.deepEqual(verifyPresignedRequest({ method: "GET", target: target(), host }, { credentials, nowMs: NOW }), { ok: true, keyId: KEY_ID, region: REGION });
    const verdict = verifyPresignedRequest({ method: "GET", target: target(), host }, { credentials, nowMs: NOW, region: "us-east-1" });
    assert.equal(verdict.ok ? "" : verdict.reason, "wrong-region");
  });

  test("a scope date other than X-Amz-Date's day, another signed header, a repeated parameter, a tampered parameter", () => {
    const cases: [string, RefusalReason][] = [
      [target().replace(/%2F\d{8}%2F/, "%2F20260313%2F"), "date-mismatch"],
      [target().replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-amz-date"), "bad-signed-headers"],
      [target() + "&X-Amz-Date=" + amzDate(NOW), "malformed-query"],
      [target() + "&X-Amz-Expires=abc", "bad-expires"],
      [target() + "&extra=1", "signature-mismatch"],
      [target().replace("X-Amz-Date=", "X-Amz-Date=x"), "bad-date"],
      [target().replace("X-Amz-Credential=", "X-Amz-Credential=a%2F"), "bad-credential"],
    ];
    for (const [tampered, reason] of cases) {
      const verdict = verifyPresignedRequest({ method: "GET", target: tampered, host }, { credentials, nowMs: NOW });
      assert.equal(verdict.ok ? "accepted" : verdict.reason, reason, tampered);
    }
  });
});

test("the secret and the session token never appear in the gateway's log lines or refusal bodies", () => {
  assert.ok(logs.length > 10 && bodies.length > 10);
  const forbidden = [SECRET, TEMP_SECRET, TOKEN, encodeURIComponent(SECRET), encodeURIComponent(TEMP_SECRET), encodeURIComponent(TOKEN), TOKEN + "x"];
  for (const text of [...logs, ...bodies]) for (const secret of forbidden) assert.ok(!text.includes(secret), `leaked in: ${text}`);
  assert.ok(logs.some((line) => /refused .* signature-mismatch \(403\): key id AKIDEXAMPLE12345; the canonical request expected was/.test(line)), "the log helps with a signature mismatch");
});
