// TLS failures of the whole client against Mosquitto: an expired broker certificate, a client
// certificate that does not match the client key, a broker that offers only a DHE cipher suite
// (with the manifest's config, DHE off, and with the SDK default, DHE on), and a TLS-1.3-only
// broker. Each is a clear error, then backoff: never online, never a plaintext byte, and no key
// material in anything the client, the host or its trace emitted.
// (Wrong CA, unknown or missing client certificate, hostname mismatch and a plaintext listener are
// covered by test/broker/mosquitto.test.ts.)
import assert from "node:assert/strict";
import { copyFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { startFaultProxy, type FaultProxy } from "../../tools/fault-proxy.ts";
import type { MosquittoTls, RunningMosquitto } from "../../tools/mosquitto.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { brokerTls, checkBackoff, ClientRig, prepareHost, reportFigure, sleep, startTlsBroker, traced } from "./kit.ts";
import { announceScenarios } from "./progress.ts";

announceScenarios(import.meta.filename);

let fixtures: Fixtures;
const cleanup: (() => Promise<void>)[] = [];
const BACKOFF = { baseMs: 100, maxMs: 400, stableMs: 5000 };

before(() => {
  fixtures = createFixtures();
  // The foreign device's key, as a flash resource next to the real device certificate.
  copyFileSync(join(fixtures.root, "work", "foreign-device-key.der"), join(fixtures.pki, "foreign-device-key.der"));
});

after(async () => {
  for (const step of cleanup.reverse()) await step();
  if (fixtures) removeFixtures(fixtures);
});

/** Every key the client or the broker holds, in the forms a leak could take. */
function keyForms(): { name: string; needles: string[] }[] {
  const keys: [string, Buffer][] = [
    ["device key", fixtures.deviceKeyDer],
    ["foreign device key", fixtures.foreignDeviceKeyDer],
    ["broker key", Buffer.from(fixtures.brokerKeyPem.toString().replace(/-----[^-]+-----|\s/g, ""), "base64")],
    ["expired broker key", Buffer.from(fixtures.expiredBrokerKeyPem.toString().replace(/-----[^-]+-----|\s/g, ""), "base64")],
  ];
  return keys.map(([name, der]) => {
    const needles: string[] = [];
    // 16-byte windows through the key (its ASN.1 header is shared by every RSA key: skip 32 bytes):
    // as hex, as base64 at each of the three alignments, and as raw bytes.
    for (let at = 32; at + 16 <= der.length; at += 16) {
      const window = der.subarray(at, at + 16);
      needles.push(window.toString("hex"), window.toString("latin1"));
      for (let shift = 0; shift < 3; shift++) needles.push(der.subarray(at + shift, at + shift + 15).toString("base64"));
    }
    return { name, needles };
  });
}

function assertNoKeyMaterial(captured: string, where: string): void {
  for (const marker of ["PRIVATE KEY", "-----BEGIN"]) assert.ok(!captured.includes(marker), `${where}: "${marker}" in the output`);
  for (const { name, needles } of keyForms()) {
    const found = needles.find((needle) => captured.includes(needle));
    assert.equal(found, undefined, `${where}: bytes of the ${name} in the output`);
  }
}

interface Case {
  readonly name: string;
  readonly tls: Partial<MosquittoTls>;
  readonly keyResource?: string;
  readonly DHE_RSA?: boolean;
  /** What the trace or the error must say. */
  readonly reason: RegExp;
}

const CASES: Case[] = [
  {
    name: "expired broker certificate",
    tls: { certFile: "work/expired-broker-chain.pem", keyFile: "work/expired-broker-key.pem" },
    reason: /date validation failed on server certificate 0/,
  },
  {
    name: "client certificate that does not match the client key",
    tls: {},
    keyResource: "foreign-device-key.der",
    reason: /clientKey does not belong to clientCertificates\[0\]/,
  },
  {
    name: "broker offering only DHE-RSA-AES128-GCM-SHA256 (manifest config: DHE off)",
    tls: { ciphers: "DHE-RSA-AES128-GCM-SHA256", tlsVersion: "tlsv1.2" },
    DHE_RSA: false,
    reason: /handshake failure|handshake_failure|no shared cipher|sslv3 alert/i,
  },
  {
    name: "broker offering only DHE-RSA-AES128-GCM-SHA256 (SDK default config: DHE on)",
    tls: { ciphers: "DHE-RSA-AES128-GCM-SHA256", tlsVersion: "tlsv1.2" },
    DHE_RSA: true,
    reason: /certificateVerify: unimplemented|handshake failure|handshake_failure/i,
  },
  {
    name: "TLS 1.3-only broker",
    tls: { tlsVersion: "tlsv1.3" },
    reason: /protocol_version|protocol version|TLS 1\.2 only/i,
  },
];

for (const [index, c] of CASES.entries()) {
  test(`TLS: ${c.name}: a clear error, then backoff; never online, never plaintext, no key material in any log`, { timeout: 30_000 }, async () => {
    const tls = Object.fromEntries(Object.entries(c.tls).map(([key, value]) => [key, key.endsWith("File") ? join(fixtures.root, value as string) : value]));
    const broker: RunningMosquitto = await startTlsBroker(fixtures, { tls: brokerTls(fixtures, tls) });
    cleanup.push(() => broker.stop());
    const upstream = new Map<number, Buffer[]>();
    const proxy: FaultProxy = await startFaultProxy({
      targetPort: broker.port,
      tap: (direction, link, bytes) => {
        if (direction === "up") upstream.set(link, [...(upstream.get(link) ?? []), Buffer.from(bytes)]);
      },
    });
    cleanup.push(() => proxy.close());
    const host = await prepareHost("tls-" + index, fixtures, { DHE_RSA: c.DHE_RSA ?? false });
    const rig = new ClientRig(host, {
      port: proxy.port,
      clientId: "tls-failure-" + index,
      keyResource: c.keyResource,
      keepAliveSeconds: 5,
      connectTimeoutMs: 3000,
      backoff: BACKOFF,
    });
    rig.client.connect();
    await sleep(1600);
    rig.client.disconnect();

    const errors = rig.named("error").map((event) => event.detail);
    const trace = (traced.get(host) ?? []).join("");
    const backoff = checkBackoff(rig, BACKOFF.baseMs, BACKOFF.maxMs, false);
    const links = [...upstream.values()].map((chunks) => Buffer.concat(chunks));
    await reportFigure("tls-" + c.name, {
      attempts: proxy.stats.links,
      errors: errors.length,
      firstError: errors[0],
      trace: trace.split("\n").filter(Boolean)[0],
      reconnecting: rig.named("reconnecting").map((event) => event.a).join(","),
      online: rig.count("online"),
      bytesUp: links.reduce((sum, bytes) => sum + bytes.length, 0),
    });
    // Never online.
    assert.equal(rig.count("online"), 0);
    assert.equal(rig.client.stats.connects, 0);
    // A clear error per attempt, then backoff as configured.
    assert.ok(errors.length >= 2, "at least two attempts failed: " + rig.tail());
    for (const error of errors) assert.match(error, /^connect-failed: connection closed before CONNACK: .*(TLS handshake|closed during connect)/);
    assert.match(trace, c.reason, "the trace names the cause: " + trace);
    assert.ok(backoff.events >= 2 && backoff.outOfRange.length === 0, JSON.stringify(backoff));
    // Never plaintext: every link the client opened starts with a TLS handshake record, and no
    // MQTT CONNECT (protocol name "MQTT") ever went up in clear.
    assert.ok(links.length >= 2);
    for (const bytes of links) {
      if (bytes.length === 0) continue;
      assert.equal(bytes[0], 0x16, "TLS handshake record first");
      assert.equal(bytes.indexOf(Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54])), -1, "no CONNECT in clear");
    }
    // No key material anywhere the client or host wrote: trace, events, error messages (and the broker's log).
    const everything = [trace, ...rig.events.map((event) => event.name + " " + event.detail), broker.log()].join("\n");
    assertNoKeyMaterial(everything, c.name);
    assert.ok(readFileSync(join(fixtures.pki, "device-key.der")).length > 0);
  });
}

test("the key-material check itself finds a leaked key (self-test)", () => {
  assert.throws(() => assertNoKeyMaterial("trace: " + fixtures.deviceKeyDer.subarray(100, 140).toString("base64"), "self-test"), /bytes of the device key/);
  assert.throws(() => assertNoKeyMaterial("trace: " + fixtures.deviceKeyDer.subarray(61, 101).toString("hex"), "self-test"), /bytes of the device key/);
  // A PEM key header, built from parts so that no tracked file carries one.
  assert.throws(() => assertNoKeyMaterial(["-----BEGIN", "PRIVATE", "KEY-----"].join(" "), "self-test"), /PRIVATE KEY/);
});
