// Fleet provisioning by claim end to end, and the emulator's side of it:
// - the service alone (tools/aws-emulator.ts): CreateKeysAndCertificate's reply (a key and a
//   certificate the development CA signed, AWS's certificate id, a single-use token), RegisterThing
//   and its refusals with AWS's {statusCode, errorCode, errorMessage} bodies, the token's expiry on
//   the injected clock;
// - a device (the core over the Moddable host, as on the device) connected to Mosquitto with a CLAIM
//   certificate, provisioning itself through the emulator with FleetProvisioningClient, keeping its
//   identity (serialized and parsed back), then connecting with its NEW certificate and key (DER) and
//   publishing at QoS 1; a reused token, an expired one and an unknown template refused as AWS does;
//   the private key and the token never in the client's events.
import assert from "node:assert/strict";
import { createHash, createPrivateKey, X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { IClientOptions } from "mqtt";
import { MemoryIdentityStore } from "../../modules/aws/identity.ts";
import { FleetProvisioningClient, type ProvisionedDevice, type ProvisioningFailure, PROVISIONING_STATUS_NAMES } from "../../modules/aws/provisioning.ts";
import type { EndpointSettings } from "../../modules/types.ts";
import { AwsIotService, EMULATOR_FILTERS, OWNERSHIP_TOKEN_LIFETIME_MS, type RunningAwsEmulator, type ServicePublish, startAwsEmulator } from "../../tools/aws-emulator.ts";
import { DEV_PKI_FILES, type Issuer, issueCertificate, pemCertificateToDer, pemKeyToPkcs8Der } from "../../tools/certs.ts";
import { loadDesktopHost, type DesktopHost } from "../../tools/desktop-build.ts";
import { startMosquitto, type RunningMosquitto } from "../../tools/mosquitto.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { closePeer, connectPeer, DeviceProbe, waitUntil } from "./helpers.ts";

const TEMPLATE = "IoTLinkFleet";
const CREATE = "$aws/certificates/create/json";
const REGISTER = "$aws/provisioning-templates/" + TEMPLATE + "/provision/json";

let fixtures: Fixtures;
let devCa: Issuer;

before(() => {
  fixtures = createFixtures();
  devCa = { certificatePem: join(fixtures.pki, DEV_PKI_FILES.caCertificatePem), keyPem: join(fixtures.pki, DEV_PKI_FILES.caKeyPem) };
});

after(() => {
  if (fixtures) removeFixtures(fixtures);
});

// ------------------------------------------------------------------ the service alone

function service(options: { issuer?: boolean; lifetime?: number } = {}): { service: AwsIotService; out: ServicePublish[]; advance: (ms: number) => void; last: (topic: string) => Record<string, unknown> } {
  let now = 1_700_000_000_000;
  const out: ServicePublish[] = [];
  const emulator = new AwsIotService((message) => out.push(message), {
    now: () => now,
    provisioning: {
      templates: { [TEMPLATE]: { deviceConfiguration: { Interval: "5000" } }, Sensors: { requiredParameters: ["SerialNumber", "Site"], thingNamePrefix: "sensor-" } },
      // The error paths need no real certificate: a stand-in keeps them fast.
      ...(options.issuer === false ? { issue: () => ({ certificatePem: fixtures.deviceCertificatePem.toString(), privateKeyPem: "(a key)" }) } : { issuer: devCa }),
      tokenLifetimeMs: options.lifetime,
    },
  });
  return {
    service: emulator,
    out,
    advance: (ms) => {
      now += ms;
    },
    last: (topic) => {
      const found = out.filter((message) => message.topic === topic).at(-1);
      assert.ok(found, "a message on " + topic);
      return JSON.parse(found.payload) as Record<string, unknown>;
    },
  };
}

describe("the emulator's fleet provisioning, alone", () => {
  test("CreateKeysAndCertificate: a fresh RSA-2048 key (PKCS#1 PEM, as AWS) and a certificate the development CA signed for it, its SHA-256 id, and a token", () => {
    const s = service();
    assert.equal(s.service.handle(CREATE, "{}", 1), true);
    const reply = s.last(CREATE + "/accepted");
    assert.deepEqual(Object.keys(reply), ["certificateId", "certificatePem", "privateKey", "certificateOwnershipToken"], "AWS's fields, in its order");
    const certificate = new X509Certificate(reply.certificatePem as string);
    assert.ok(certificate.verify(new X509Certificate(readFileSync(devCa.certificatePem)).publicKey), "signed by the development CA");
    // The PEM label spelled in two parts: no line of this repository reads like a committed key.
    assert.match(reply.privateKey as string, new RegExp("^-----BEGIN RSA " + "PRIVATE KEY-----\n"));
    const key = createPrivateKey(reply.privateKey as string);
    assert.equal(key.asymmetricKeyDetails?.modulusLength, 2048);
    assert.ok(certificate.checkPrivateKey(key), "the key is the certificate's");
    assert.equal(reply.certificateId, createHash("sha256").update(certificate.raw).digest("hex"));
    assert.ok((reply.certificateOwnershipToken as string).length > 400, "a token of AWS's length");
    assert.equal(s.service.certificates.get(reply.certificateId as string)?.status, "PENDING_ACTIVATION");
    assert.ok(s.out[0].payload.length < 4096 - 60, "the reply fits a 4 KB packet: " + s.out[0].payload.length + " bytes");
    // An empty payload, as AWS documents it, is taken too; a payload that is not an object is not.
    s.service.handle(CREATE, "", 1);
    assert.equal(s.out.filter((message) => message.topic === CREATE + "/accepted").length, 2);
    s.service.handle(CREATE, "[1]", 1);
    assert.deepEqual(s.last(CREATE + "/rejected"), { statusCode: 400, errorCode: "InvalidPayload", errorMessage: "The request payload is not a JSON object" });
  });

  test("RegisterThing: the template's thing name and device configuration; the certificate becomes ACTIVE; the token is single-use", () => {
    const s = service({ issuer: false });
    s.service.handle(CREATE, "{}", 1);
    const created = s.last(CREATE + "/accepted");
    const token = created.certificateOwnershipToken as string;
    s.service.handle(REGISTER, JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: "0001" } }), 1);
    assert.deepEqual(s.last(REGISTER + "/accepted"), { deviceConfiguration: { Interval: "5000" }, thingName: "IoTLinkFleet-0001" });
    assert.equal(s.service.certificates.get(created.certificateId as string)?.status, "ACTIVE");
    assert.deepEqual(s.service.things.get("IoTLinkFleet-0001"), { certificateId: created.certificateId, templateName: TEMPLATE, parameters: { SerialNumber: "0001" } });
    s.service.handle(REGISTER, JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: "0001" } }), 1);
    assert.deepEqual(s.last(REGISTER + "/rejected"), { statusCode: 400, errorCode: "InvalidCertificateOwnershipToken", errorMessage: "Certificate ownership token has already been used." });
  });

  test("RegisterThing's refusals, with AWS's bodies: unknown template, empty, unknown and expired tokens, missing and malformed parameters, bad JSON", () => {
    const s = service({ issuer: false, lifetime: 60_000 });
    s.service.handle(CREATE, "{}", 1);
    const token = s.last(CREATE + "/accepted").certificateOwnershipToken as string;
    const cases: [string, string, unknown][] = [
      ["NoSuchTemplate", JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: "1" } }), { statusCode: 404, errorCode: "ResourceNotFound", errorMessage: "The provisioning template NoSuchTemplate does not exist" }],
      [TEMPLATE, JSON.stringify({ parameters: { SerialNumber: "1" } }), { statusCode: 400, errorCode: "InvalidCertificateOwnershipToken", errorMessage: "Certificate ownership token cannot be empty." }],
      [TEMPLATE, JSON.stringify({ certificateOwnershipToken: "bm90LWEtdG9rZW4=", parameters: { SerialNumber: "1" } }), { statusCode: 400, errorCode: "InvalidCertificateOwnershipToken", errorMessage: "Certificate ownership token is invalid." }],
      [TEMPLATE, JSON.stringify({ certificateOwnershipToken: token }), { statusCode: 400, errorCode: "InvalidParameters", errorMessage: "Missing required parameter: SerialNumber" }],
      [TEMPLATE, JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: 1 } }), { statusCode: 400, errorCode: "InvalidParameters", errorMessage: "Parameters must be a map of strings" }],
      ["Sensors", JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: "1" } }), { statusCode: 400, errorCode: "InvalidParameters", errorMessage: "Missing required parameter: Site" }],
      [TEMPLATE, JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: "a b" } }), { statusCode: 400, errorCode: "InvalidParameters", errorMessage: 'The thing name "IoTLinkFleet-a b" is not valid' }],
      [TEMPLATE, "{not json", { statusCode: 400, errorCode: "InvalidPayload", errorMessage: "The request payload is not valid JSON" }],
    ];
    for (const [template, payload, body] of cases) {
      const topic = "$aws/provisioning-templates/" + template + "/provision/json";
      s.service.handle(topic, payload, 1);
      assert.deepEqual(s.last(topic + "/rejected"), body, payload);
    }
    // A refused request leaves the token valid: the other template, with its parameters, takes it.
    s.advance(59_999);
    s.service.handle("$aws/provisioning-templates/Sensors/provision/json", JSON.stringify({ certificateOwnershipToken: token, parameters: { SerialNumber: "7", Site: "lab" } }), 1);
    assert.deepEqual(s.last("$aws/provisioning-templates/Sensors/provision/json/accepted"), { deviceConfiguration: {}, thingName: "sensor-7" });
    // Expiry, on the service's clock.
    s.service.handle(CREATE, "{}", 1);
    const second = s.last(CREATE + "/accepted").certificateOwnershipToken as string;
    s.advance(60_000);
    s.service.handle(REGISTER, JSON.stringify({ certificateOwnershipToken: second, parameters: { SerialNumber: "2" } }), 1);
    assert.deepEqual(s.last(REGISTER + "/rejected"), { statusCode: 400, errorCode: "InvalidCertificateOwnershipToken", errorMessage: "Certificate ownership token has expired." });
    assert.equal(OWNERSHIP_TOKEN_LIFETIME_MS, 3_600_000, "one hour by default, as AWS documents");
  });

  test("without provisioning configured, both operations are answered 503; the request topics are among the emulator's subscriptions", () => {
    const out: ServicePublish[] = [];
    const plain = new AwsIotService((message) => out.push(message));
    plain.handle(CREATE, "{}", 1);
    plain.handle(REGISTER, "{}", 1);
    assert.deepEqual(out.map((message) => [message.topic, JSON.parse(message.payload).statusCode]), [[CREATE + "/rejected", 503], [REGISTER + "/rejected", 503]]);
    assert.ok(EMULATOR_FILTERS.includes(CREATE) && EMULATOR_FILTERS.includes("$aws/provisioning-templates/+/provision/json"));
    assert.throws(() => new AwsIotService(() => {}, { provisioning: { templates: { "bad name": {} }, issuer: devCa } }), /template name/);
    assert.throws(() => new AwsIotService(() => {}, { provisioning: { templates: {} } }), /needs an issuer/);
  });
});

// ------------------------------------------------------------------ end to end over Mosquitto

describe("fleet provisioning by claim end to end: a device over Mosquitto (mutual TLS) and the emulator", () => {
  let work: string;
  let resources: string;
  let host: DesktopHost;
  let broker: RunningMosquitto;
  let emulator: RunningAwsEmulator;
  let peerTls: IClientOptions;
  let skewMs = 0;
  const probes: DeviceProbe[] = [];

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "iotlink-provisioning-test-"));
    resources = join(work, "resources");
    mkdirSync(resources);
    writeFileSync(join(resources, DEV_PKI_FILES.caCertificateDer), fixtures.caDer);
    // The claim certificate: one for the whole fleet, from the same CA.
    issueCertificate({ certificatePem: join(work, "claim.pem"), keyPem: join(work, "claim-key.pem"), commonName: "iotlink-claim", profile: "client", issuer: devCa });
    pemCertificateToDer(join(work, "claim.pem"), join(resources, "claim-cert.der"));
    pemKeyToPkcs8Der(join(work, "claim-key.pem"), join(resources, "claim-key.der"));
    host = await loadDesktopHost(join(work, "host.mjs"));
    host.setResourceDirectory(resources);
    host.mergeConfig({ tls: { DHE_RSA: false } });
    host.setTraceSink(() => {});
    broker = await startMosquitto({
      tls: { caFile: devCa.certificatePem, certFile: join(fixtures.pki, DEV_PKI_FILES.brokerChainPem), keyFile: join(fixtures.pki, DEV_PKI_FILES.brokerKeyPem) },
      logTypes: ["error", "warning", "notice"],
    });
    peerTls = { ca: fixtures.caPem, cert: fixtures.deviceCertificatePem, key: fixtures.deviceKeyPem, rejectUnauthorized: true, servername: "localhost" };
    emulator = await startAwsEmulator({
      url: broker.url,
      mqtt: peerTls,
      clientId: "aws-emulator-provisioning",
      now: () => Date.now() + skewMs,
      provisioning: { templates: { [TEMPLATE]: { deviceConfiguration: { Interval: "5000" } } }, issuer: devCa },
    });
  });

  after(async () => {
    for (const probe of probes) probe.stop();
    await emulator?.stop();
    await broker?.stop();
    host?.setTraceSink();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  function endpoint(certificateResource: string, keyResource: string): EndpointSettings {
    return { host: "127.0.0.1", port: broker.port, serverName: "localhost", caResource: DEV_PKI_FILES.caCertificateDer, certificateResource, keyResource };
  }

  /** A device connected with the claim certificate, with every message it receives on the create topic's reply kept (the test's own listener: where the secrets are). */
  async function claimDevice(clientId: string): Promise<{ probe: DeviceProbe; secrets: string[] }> {
    const probe = new DeviceProbe(host, endpoint("claim-cert.der", "claim-key.der"), { clientId, maxPacketBytes: 4096, backoff: { baseMs: 200, maxMs: 1000, stableMs: 20000 } });
    probes.push(probe);
    const secrets: string[] = [];
    probe.client.on("message", (message) => {
      if (message.topic !== CREATE + "/accepted") return;
      const reply = JSON.parse(Buffer.from(message.payload).toString()) as { privateKey: string; certificateOwnershipToken: string };
      secrets.push(reply.certificateOwnershipToken, ...reply.privateKey.split("\n").filter((line) => line.length === 64));
    });
    probe.client.connect();
    await probe.waitForEvent("restored", 10_000);
    return { probe, secrets };
  }

  function assertNoSecret(where: string, text: string, secrets: string[]): void {
    assert.ok(secrets.length > 2, "the secrets were seen on the wire");
    for (const secret of secrets) assert.ok(!text.includes(secret), where + " holds a secret");
    assert.ok(!text.includes("PRIVATE KEY"), where + " mentions a private key");
  }

  test("with the claim certificate the device creates its key and certificate and registers its thing; then it connects with its own certificate and key and publishes at QoS 1", { timeout: 60_000 }, async () => {
    const { probe, secrets } = await claimDevice("claim-0001");
    const provisioning = new FleetProvisioningClient(probe.client, { timeoutMs: 10_000 });
    const layerErrors: string[] = [];
    provisioning.on("error", (error) => layerErrors.push(error.message));
    const [status, device, failure] = await new Promise<[string, ProvisionedDevice | undefined, ProvisioningFailure | undefined]>((done) =>
      provisioning.provision(TEMPLATE, { SerialNumber: "0001" }, (result, provisioned, why) => done([PROVISIONING_STATUS_NAMES[result], provisioned, why])),
    );
    assert.equal(status, "accepted", failure?.message);
    const identity = (device as ProvisionedDevice).identity;
    assert.equal(identity.thingName, "IoTLinkFleet-0001");
    assert.deepEqual((device as ProvisionedDevice).deviceConfiguration, { Interval: "5000" });
    assert.equal(emulator.service.certificates.get((device as ProvisionedDevice).certificateId)?.status, "ACTIVE");
    // The DER is what Moddable's TLS takes: an X.509 certificate from the CA, and its key as PKCS#8.
    const certificate = new X509Certificate(identity.certificate);
    assert.ok(!certificate.raw.equals(readFileSync(join(resources, "claim-cert.der"))), "a certificate of its own, not the claim certificate");
    assert.equal(certificate.subject, "CN=AWS IoT Certificate");
    assert.ok(certificate.checkPrivateKey(createPrivateKey({ key: Buffer.from(identity.privateKey), format: "der", type: "pkcs8" })));
    provisioning.close();
    probe.stop();
    await probe.waitForEvent("offline", 5000);

    // Kept and read back as a storage layer would, then handed to the transport as resources.
    const store = new MemoryIdentityStore();
    store.save(identity);
    const kept = store.load();
    assert.ok(kept);
    writeFileSync(join(resources, "own-cert.der"), kept.certificate);
    writeFileSync(join(resources, "own-key.der"), kept.privateKey);

    const peer = await connectPeer(broker.url, { ...peerTls, clientId: "provisioning-observer" });
    const seen: string[] = [];
    peer.on("message", (topic, payload) => seen.push(topic + " " + payload.toString()));
    await peer.subscribeAsync("things/+/telemetry", { qos: 1 });
    const own = new DeviceProbe(host, endpoint("own-cert.der", "own-key.der"), { clientId: kept.thingName, maxPacketBytes: 4096 });
    probes.push(own);
    own.client.connect();
    await own.waitForEvent("restored", 10_000);
    const acknowledged = await own.ack((onAck) => own.client.publish("things/" + kept.thingName + "/telemetry", '{"t":21}', 1, false, onAck));
    assert.equal(acknowledged, 0, "PUBACK");
    await waitUntil(() => seen.length === 1, 5000, "the observer to get the telemetry");
    assert.equal(seen[0], "things/IoTLinkFleet-0001/telemetry {\"t\":21}");
    own.stop();
    await own.waitForEvent("offline", 5000);
    await closePeer(peer);

    assertNoSecret("the claim connection's events", probe.describe() + JSON.stringify(probe.events), secrets);
    assertNoSecret("the own connection's events", own.describe(), secrets);
    assertNoSecret("the layer's errors", layerErrors.join("\n"), secrets);
    assert.deepEqual(probe.named("error"), [], "no error on the claim connection");
  });

  test("a reused token and an expired token are refused with AWS's bodies, and an unknown template with a 404; no secret in the failures or events", { timeout: 60_000 }, async () => {
    const { probe, secrets } = await claimDevice("claim-0002");
    const provisioning = new FleetProvisioningClient(probe.client, { timeoutMs: 10_000 });
    const create = (): Promise<string> =>
      new Promise((done, fail) =>
        provisioning.createKeysAndCertificate((status, created, failure) => (created ? done(created.certificateOwnershipToken) : fail(new Error(PROVISIONING_STATUS_NAMES[status] + " " + failure?.message)))),
      );
    const register = (template: string, token: string): Promise<[string, ProvisioningFailure | undefined]> =>
      new Promise((done) => provisioning.registerThing(template, token, { SerialNumber: "0002" }, (status, _thing, failure) => done([PROVISIONING_STATUS_NAMES[status], failure])));

    const token = await create();
    assert.deepEqual((await register(TEMPLATE, token))[0], "accepted");
    const [reused, reusedFailure] = await register(TEMPLATE, token);
    assert.equal(reused, "rejected");
    assert.deepEqual([reusedFailure?.statusCode, reusedFailure?.errorCode, reusedFailure?.errorMessage], [400, "InvalidCertificateOwnershipToken", "Certificate ownership token has already been used."]);
    assert.equal(reusedFailure?.message, "RegisterThing rejected: 400 InvalidCertificateOwnershipToken: Certificate ownership token has already been used.");

    const late = await create();
    skewMs += OWNERSHIP_TOKEN_LIFETIME_MS;
    const [expired, expiredFailure] = await register(TEMPLATE, late);
    assert.equal(expired, "rejected");
    assert.equal(expiredFailure?.message, "RegisterThing rejected: 400 InvalidCertificateOwnershipToken: Certificate ownership token has expired.");

    const fresh = await create();
    const [unknown, unknownFailure] = await register("NoSuchTemplate", fresh);
    assert.equal(unknown, "rejected");
    assert.equal(unknownFailure?.message, "RegisterThing rejected: 404 ResourceNotFound: The provisioning template NoSuchTemplate does not exist");

    provisioning.close();
    probe.stop();
    await probe.waitForEvent("offline", 5000);
    assertNoSecret("the failures", JSON.stringify([reusedFailure, expiredFailure, unknownFailure]), secrets);
    assertNoSecret("the events", probe.describe(), secrets);
  });
});
