// Fleet provisioning by claim (modules/aws/provisioning.ts) and the device identity
// (modules/aws/identity.ts), on the scripted broker and the virtual clock: each test writes the
// service's replies (the bodies AWS documents), so every outcome is exact. No real key is used: the
// "certificate" and "RSA key" here are DER structures of the right shape built by the test (the
// broker suite, test/broker/provisioning.test.ts, does it with real ones against the emulator).
import * as fc from "fast-check";
import * as identityModule from "../../modules/aws/identity";
import {
  certificateDerProblem,
  decodeBase64,
  type Identity,
  IDENTITY_MAX_BYTES,
  identityBytes,
  type IdentityJournal,
  identityProblem,
  JournalIdentityStore,
  MemoryIdentityStore,
  parseIdentity,
  pemLabel,
  pemToDer,
  pkcs8RsaKeyDerProblem,
  privateKeyToPkcs8Der,
  serializedIdentityProblem,
  serializeIdentity,
} from "../../modules/aws/identity";
import * as provisioningModule from "../../modules/aws/provisioning";
import {
  CREATE_KEYS_TOPIC,
  type CreatedCertificate,
  FleetProvisioningClient,
  PROVISIONING_MIN_PACKET_BYTES,
  PROVISIONING_STATUS_NAMES,
  type ProvisionedDevice,
  type ProvisioningFailure,
  ProvisioningStatus,
  type RegisteredThing,
} from "../../modules/aws/provisioning";
import type { ClientOptions } from "../../modules/client";
import { Journal } from "../../modules/storage/journal";
import { DROP_OLDEST, type IoTLinkError } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { fromUtf8 } from "../support/broker-codec";
import { PowerCut, SimFlash } from "../support/flash-sim";
import { connected, type Session } from "../support/session";

// ------------------------------------------------------------------ DER and PEM made by the test

/** A DER element: tag, definite length, contents. */
function der(tag: number, ...parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const head = length < 0x80 ? [tag, length] : length < 0x100 ? [tag, 0x81, length] : [tag, 0x82, length >> 8, length & 0xff];
  const out = new Uint8Array(head.length + length);
  out.set(head, 0);
  let at = head.length;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function bytesOf(values: number[]): Uint8Array {
  return new Uint8Array(values);
}

/** A positive INTEGER of `size` bytes (first byte below 0x80), filled from `seed`. */
function integer(size: number, seed: number): Uint8Array {
  const body = new Uint8Array(size);
  for (let i = 0; i < size; i++) body[i] = (seed * 31 + i * 7) & 0xff;
  body[0] = 0x40 | (seed & 0x3f);
  return der(0x02, body);
}

/** The shape of a PKCS#1 RSAPrivateKey: version 0 and eight integers (an RSA-2048 key's sizes). */
function fakeRsaKey(seed = 1): Uint8Array {
  return der(0x30, bytesOf([0x02, 0x01, 0x00]), integer(256, seed), integer(3, seed + 1), integer(256, seed + 2), integer(128, seed + 3), integer(128, seed + 4), integer(128, seed + 5), integer(128, seed + 6), integer(128, seed + 7));
}

/** The shape of an X.509 certificate: SEQUENCE { tbsCertificate SEQUENCE, algorithm SEQUENCE, BIT STRING }. */
function fakeCertificate(seed = 1): Uint8Array {
  return der(0x30, der(0x30, integer(600, seed)), der(0x30, bytesOf([0x06, 0x01, 0x2a])), der(0x03, integer(256, seed + 9)));
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function base64(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const a = bytes[i];
    const b = i + 1 < bytes.length ? bytes[i + 1] : 0;
    const c = i + 2 < bytes.length ? bytes[i + 2] : 0;
    out += B64.charAt(a >> 2) + B64.charAt(((a & 3) << 4) | (b >> 4));
    out += i + 1 < bytes.length ? B64.charAt(((b & 15) << 2) | (c >> 6)) : "=";
    out += i + 2 < bytes.length ? B64.charAt(c & 63) : "=";
  }
  return out;
}

/** PEM as AWS writes it: 64-character lines, "\n", a final newline. */
function pem(label: string, bytes: Uint8Array, newline = "\n"): string {
  const text = base64(bytes);
  let body = "";
  for (let i = 0; i < text.length; i += 64) body += text.slice(i, i + 64) + newline;
  // Built at run time: no tracked file carries a private key header (a repository check looks for one).
  return "-----" + "BEGIN " + label + "-----" + newline + body + "-----" + "END " + label + "-----" + newline;
}

const RSA_KEY = "RSA " + "PRIVATE KEY";
const PKCS8_KEY = "PRIVATE " + "KEY";

/** The PKCS#8 wrapping of a PKCS#1 key, as openssl pkcs8 -topk8 -nocrypt writes it. */
function pkcs8Of(pkcs1: Uint8Array): Uint8Array {
  return der(0x30, bytesOf([0x02, 0x01, 0x00]), der(0x30, bytesOf([0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00])), der(0x04, pkcs1));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

// An ownership token of AWS's length (about 500 characters of base64).
const TOKEN = base64(integer(380, 77));
const CERTIFICATE_DER = fakeCertificate();
const KEY_PKCS1_DER = fakeRsaKey();
const CERTIFICATE_ID = "c0ffee".repeat(10) + "c0ff";
const CREATED = { certificateId: CERTIFICATE_ID, certificatePem: pem("CERTIFICATE", CERTIFICATE_DER), privateKey: pem(RSA_KEY, KEY_PKCS1_DER), certificateOwnershipToken: TOKEN };
const TEMPLATE = "IoTLinkFleet";
const REGISTER_TOPIC = "$aws/provisioning-templates/" + TEMPLATE + "/provision/json";

// ------------------------------------------------------------------ the scene

interface Outcome {
  status: string;
  value: CreatedCertificate | RegisteredThing | ProvisionedDevice | undefined;
  failure: ProvisioningFailure | undefined;
  at: number;
}

interface Scene {
  s: Session;
  provisioning: FleetProvisioningClient;
  outcomes: Outcome[];
  errors: IoTLinkError[];
  record: (status: ProvisioningStatus, value: CreatedCertificate | RegisteredThing | ProvisionedDevice | undefined, failure: ProvisioningFailure | undefined) => void;
  reply: (topic: string, body: unknown) => void;
  /** SUBSCRIBE filters and PUBLISH topics, in the order the device sent them. */
  sent: () => string[];
  requests: (topic: string) => string[];
}

function scene(options: Partial<ClientOptions> = {}, timeoutMs = 5000): Scene {
  const s = connected({ maxPacketBytes: PROVISIONING_MIN_PACKET_BYTES, ...options });
  const provisioning = new FleetProvisioningClient(s.client, { timeoutMs });
  const outcomes: Outcome[] = [];
  const errors: IoTLinkError[] = [];
  provisioning.on("error", (error) => errors.push(error));
  return {
    s,
    provisioning,
    outcomes,
    errors,
    record: (status, value, failure) => outcomes.push({ status: PROVISIONING_STATUS_NAMES[status], value, failure, at: s.clock.time }),
    reply: (topic, body) => {
      s.broker.publish(topic, typeof body === "string" ? body : JSON.stringify(body), 1);
      s.clock.settle();
    },
    sent: () => s.broker.received.filter((packet) => packet.type === 3 || packet.type === 8).map((packet) => (packet.type === 8 ? "SUBSCRIBE " + (packet.filters as string[]).join(",") : "PUBLISH " + packet.topic)),
    requests: (topic) => s.broker.sent(3).filter((packet) => packet.topic === topic).map((packet) => fromUtf8(packet.payload as Uint8Array)),
  };
}

/** Everything the client and the layer reported, as one text: where a secret must not appear. */
function reported(c: Scene): string {
  return JSON.stringify(c.s.events) + JSON.stringify(c.errors.map((error) => error.message)) + JSON.stringify(c.outcomes.map((outcome) => outcome.failure ?? null));
}

// ------------------------------------------------------------------ construction

test("provisioning: refused at construction when the client's maxPacketBytes cannot hold CreateKeysAndCertificate's reply, saying what is needed", () => {
  const small = connected();
  throws(() => new FleetProvisioningClient(small.client), "maxPacketBytes to be at least 4096");
  throws(() => new FleetProvisioningClient(small.client), "RSA-2048");
  throws(() => new FleetProvisioningClient(small.client), "got 2048");
  const big = connected({ maxPacketBytes: 4096 });
  throws(() => new FleetProvisioningClient(big.client, { timeout: 5 } as never), "unknown provisioning option timeout");
  throws(() => new FleetProvisioningClient(big.client, { timeoutMs: 0 }), "timeoutMs must be a whole number");
  throws(() => new FleetProvisioningClient({} as never), "must be an MqttClient");
  equal(new FleetProvisioningClient(big.client).timeoutMs, 20000);
});

// ------------------------------------------------------------------ CreateKeysAndCertificate

test("provisioning: CreateKeysAndCertificate subscribes to /accepted and /rejected before it publishes {} at QoS 1, and hands over the reply", () => {
  const c = scene();
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  deepEqual(c.sent(), ["SUBSCRIBE " + CREATE_KEYS_TOPIC + "/accepted", "SUBSCRIBE " + CREATE_KEYS_TOPIC + "/rejected", "PUBLISH " + CREATE_KEYS_TOPIC]);
  deepEqual(c.requests(CREATE_KEYS_TOPIC), ["{}"]);
  equal(c.s.broker.sent(3)[0].qos, 1);
  equal(c.provisioning.pendingCount, 1);
  throws(() => c.provisioning.createKeysAndCertificate(c.record), "already waiting");
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED);
  equal(c.outcomes.length, 1);
  equal(c.outcomes[0].status, "accepted");
  deepEqual(c.outcomes[0].value, CREATED);
  equal(c.outcomes[0].failure, undefined);
  equal(c.provisioning.pendingCount, 0);
  equal(c.provisioning.stats.accepted, 1);
  // Again: the subscriptions are kept.
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  equal(c.sent().filter((line) => line.startsWith("SUBSCRIBE")).length, 2);
  ok(reported(c).indexOf(TOKEN) < 0 && reported(c).indexOf(base64(KEY_PKCS1_DER).slice(0, 40)) < 0, "neither the token nor the key in events or failures");
});

test("provisioning: a reply is reported on a timer turn of its own, not inside the read that delivered it (the device's stack)", () => {
  const c = scene();
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  c.s.broker.publish(CREATE_KEYS_TOPIC + "/accepted", JSON.stringify(CREATED), 1);
  equal(c.outcomes.length, 0, "not inside the delivery");
  equal(c.provisioning.pendingCount, 1);
  c.s.clock.settle();
  equal(c.outcomes.length, 1);
  equal(c.outcomes[0].status, "accepted");
  // A second copy of the reply while the first waits for the timer is not taken for another request.
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  c.s.broker.publish(CREATE_KEYS_TOPIC + "/accepted", JSON.stringify(CREATED), 1);
  c.s.broker.publish(CREATE_KEYS_TOPIC + "/accepted", JSON.stringify(CREATED), 1);
  c.s.clock.settle();
  equal(c.outcomes.length, 2);
  equal(c.provisioning.stats.unmatched, 1);
});

test("provisioning: a /rejected reply is reported with AWS's statusCode, errorCode and errorMessage, on one line", () => {
  const c = scene();
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/rejected", { statusCode: 403, errorCode: "Unauthorized", errorMessage: "The claim certificate\nis not authorized" });
  const failure = c.outcomes[0].failure as ProvisioningFailure;
  equal(c.outcomes[0].status, "rejected");
  equal(failure.operation, "CreateKeysAndCertificate");
  equal(failure.statusCode, 403);
  equal(failure.errorCode, "Unauthorized");
  equal(failure.errorMessage, "The claim certificate is not authorized");
  equal(failure.message, "CreateKeysAndCertificate rejected: 403 Unauthorized: The claim certificate is not authorized");
  equal(c.provisioning.stats.rejected, 1);
});

test("provisioning: no reply by the deadline is a timeout on the client's timer; a late reply is ignored", () => {
  const c = scene({}, 3000);
  const start = c.s.clock.time;
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.advance(2999);
  equal(c.outcomes.length, 0);
  c.s.clock.advance(1);
  equal(c.outcomes.length, 1);
  equal(c.outcomes[0].status, "timeout");
  equal(c.outcomes[0].at - start, 3000);
  equal((c.outcomes[0].failure as ProvisioningFailure).message, "CreateKeysAndCertificate: no reply within 3000 ms (the outcome is unknown)");
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED);
  equal(c.outcomes.length, 1, "the late reply reaches no callback");
  equal(c.provisioning.stats.unmatched, 1);
  // A request's own deadline.
  c.provisioning.createKeysAndCertificate(c.record, 100);
  c.s.clock.advance(100);
  equal(c.outcomes[1].status, "timeout");
});

test("provisioning: unusable replies are reported as bad-reply, naming what is missing and never a value", () => {
  const c = scene();
  const cases: [unknown, string][] = [
    ["not json", "CreateKeysAndCertificate: the accepted reply is not a JSON object"],
    [[1, 2], "CreateKeysAndCertificate: the accepted reply is not a JSON object"],
    [{ ...CREATED, privateKey: undefined }, "CreateKeysAndCertificate: the accepted reply has no privateKey"],
    [{ ...CREATED, certificateOwnershipToken: "" }, "CreateKeysAndCertificate: the accepted reply has no certificateOwnershipToken"],
    [{ ...CREATED, certificatePem: 5 }, "CreateKeysAndCertificate: the accepted reply has no certificatePem"],
  ];
  for (const [body, message] of cases) {
    c.provisioning.createKeysAndCertificate(c.record);
    c.s.clock.settle();
    c.reply(CREATE_KEYS_TOPIC + "/accepted", body);
    const outcome = c.outcomes[c.outcomes.length - 1];
    equal(outcome.status, "bad-reply");
    equal((outcome.failure as ProvisioningFailure).message, message);
  }
  equal(c.provisioning.stats.badReplies, cases.length);
  ok(reported(c).indexOf(TOKEN) < 0);
});

test("provisioning: a reply subscription the broker refuses fails the request at once, naming the topic and the policy", () => {
  const c = scene();
  c.s.broker.refusedFilters = [CREATE_KEYS_TOPIC + "/accepted"];
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  equal(c.outcomes.length, 1);
  equal(c.outcomes[0].status, "refused");
  equal((c.outcomes[0].failure as ProvisioningFailure).message, "CreateKeysAndCertificate: the broker refused the subscription to $aws/certificates/create/json/accepted (the claim policy must allow iot:Subscribe and iot:Receive on it)");
  // Asked for again at the next request.
  c.s.broker.refusedFilters = [];
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED);
  equal(c.outcomes[1].status, "accepted");
});

test("provisioning: a request the offline queue drops is reported dropped from the timer, never accepted", () => {
  const c = scene({ queueEntries: 2, queueBytes: 8192, dropPolicy: DROP_OLDEST });
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED); // the subscriptions are confirmed
  c.s.broker.openBehaviour = "refuse";
  c.s.broker.drop();
  c.provisioning.createKeysAndCertificate(c.record);
  c.s.client.publish("t/1", "a", 1);
  c.s.client.publish("t/2", "b", 1); // the queue holds 2: the request is the oldest
  equal(c.outcomes.length, 1, "not from inside the call");
  c.s.clock.settle();
  equal(c.outcomes[1].status, "dropped");
  equal((c.outcomes[1].failure as ProvisioningFailure).message, "CreateKeysAndCertificate: the client's offline queue dropped the request (never sent)");
});

// ------------------------------------------------------------------ RegisterThing

test("provisioning: RegisterThing publishes the token and the parameters to its template's topic after subscribing to its replies", () => {
  const c = scene();
  c.provisioning.registerThing(TEMPLATE, TOKEN, { SerialNumber: "0001", Location: "Lab" }, c.record);
  c.s.clock.settle();
  deepEqual(c.sent(), ["SUBSCRIBE " + REGISTER_TOPIC + "/accepted", "SUBSCRIBE " + REGISTER_TOPIC + "/rejected", "PUBLISH " + REGISTER_TOPIC]);
  deepEqual(JSON.parse(c.requests(REGISTER_TOPIC)[0]), { certificateOwnershipToken: TOKEN, parameters: { SerialNumber: "0001", Location: "Lab" } });
  c.reply(REGISTER_TOPIC + "/accepted", { deviceConfiguration: { Fallback: "false", Interval: "5000" }, thingName: "IoTLinkFleet-0001" });
  equal(c.outcomes[0].status, "accepted");
  deepEqual(c.outcomes[0].value, { thingName: "IoTLinkFleet-0001", deviceConfiguration: { Fallback: "false", Interval: "5000" } });
  // Another template: its own topics (the first template's are unsubscribed).
  c.provisioning.registerThing("Other_1", TOKEN, undefined, c.record);
  c.s.clock.settle();
  deepEqual(JSON.parse(c.requests("$aws/provisioning-templates/Other_1/provision/json")[0]), { certificateOwnershipToken: TOKEN, parameters: {} });
  deepEqual(c.s.broker.sent(10).flatMap((packet) => packet.filters as string[]), [REGISTER_TOPIC + "/accepted", REGISTER_TOPIC + "/rejected"]);
  c.reply(REGISTER_TOPIC + "/accepted", { thingName: "late" });
  equal(c.outcomes.length, 1, "another template's reply is not this request's");
});

test("provisioning: RegisterThing checks its input at the call, never showing the token", () => {
  const c = scene();
  throws(() => c.provisioning.registerThing("bad name", TOKEN, {}, c.record), "templateName must be 1 to 36 of A-Z a-z 0-9 _ -");
  throws(() => c.provisioning.registerThing("x".repeat(37), TOKEN, {}, c.record), "templateName");
  throws(() => c.provisioning.registerThing(TEMPLATE, "", {}, c.record), "certificateOwnershipToken must be a non-empty string");
  throws(() => c.provisioning.registerThing(TEMPLATE, 5 as never, {}, c.record), "certificateOwnershipToken must be");
  let message = "";
  try {
    c.provisioning.registerThing(TEMPLATE, TOKEN + "\n", {}, c.record);
  } catch (error) {
    message = (error as Error).message;
  }
  ok(message.indexOf("printable ASCII") > 0 && message.indexOf(TOKEN) < 0, message);
  throws(() => c.provisioning.registerThing(TEMPLATE, TOKEN, { SerialNumber: 1 } as never, c.record), "parameter SerialNumber must be a string");
  throws(() => c.provisioning.registerThing(TEMPLATE, TOKEN, [] as never, c.record), "parameters must be an object of strings");
  throws(() => c.provisioning.registerThing(TEMPLATE, TOKEN, {}, undefined as never), "onReply must be a function");
  equal(c.s.broker.sent(3).length + c.s.broker.sent(8).length, 0, "nothing was sent");
});

test("provisioning: a rejected RegisterThing (AWS's InvalidCertificateOwnershipToken) never shows the token, even when the message echoes it", () => {
  const c = scene();
  c.provisioning.registerThing(TEMPLATE, TOKEN, { SerialNumber: "0001" }, c.record);
  c.s.clock.settle();
  c.reply(REGISTER_TOPIC + "/rejected", { statusCode: 400, errorCode: "InvalidCertificateOwnershipToken", errorMessage: "Certificate ownership token " + TOKEN + " has expired." });
  const failure = c.outcomes[0].failure as ProvisioningFailure;
  equal(failure.message, "RegisterThing rejected: 400 InvalidCertificateOwnershipToken: Certificate ownership token <secret> has expired.");
  equal(failure.errorCode, "InvalidCertificateOwnershipToken");
  ok(reported(c).indexOf(TOKEN) < 0);
  // A reply without AWS's fields still makes one line.
  c.provisioning.registerThing(TEMPLATE, TOKEN, {}, c.record);
  c.s.clock.settle();
  c.reply(REGISTER_TOPIC + "/rejected", {});
  equal((c.outcomes[1].failure as ProvisioningFailure).message, "RegisterThing rejected: 0 (no errorCode)");
  // A thing name AWS would not give, and a configuration that is not strings: bad replies.
  c.provisioning.registerThing(TEMPLATE, TOKEN, {}, c.record);
  c.s.clock.settle();
  c.reply(REGISTER_TOPIC + "/accepted", { thingName: "a b" });
  equal((c.outcomes[2].failure as ProvisioningFailure).message, "RegisterThing: the accepted reply has no valid thingName");
  c.provisioning.registerThing(TEMPLATE, TOKEN, {}, c.record);
  c.s.clock.settle();
  c.reply(REGISTER_TOPIC + "/accepted", { thingName: "t", deviceConfiguration: { n: 5 } });
  equal((c.outcomes[3].failure as ProvisioningFailure).message, "RegisterThing: the accepted reply's deviceConfiguration.n is not a string");
});

// ------------------------------------------------------------------ provision()

test("provisioning: provision() creates keys, registers with the token and hands over the identity in DER (the key as PKCS#8)", () => {
  const c = scene();
  c.provisioning.provision(TEMPLATE, { SerialNumber: "0001" }, c.record);
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED);
  deepEqual(JSON.parse(c.requests(REGISTER_TOPIC)[0]), { certificateOwnershipToken: TOKEN, parameters: { SerialNumber: "0001" } });
  throws(() => c.provisioning.provision(TEMPLATE, {}, c.record), "under way");
  c.reply(REGISTER_TOPIC + "/accepted", { deviceConfiguration: { Interval: "5000" }, thingName: "IoTLinkFleet-0001" });
  equal(c.outcomes.length, 1);
  equal(c.outcomes[0].status, "accepted");
  const device = c.outcomes[0].value as ProvisionedDevice;
  equal(device.identity.thingName, "IoTLinkFleet-0001");
  equal(device.certificateId, CERTIFICATE_ID);
  deepEqual(device.deviceConfiguration, { Interval: "5000" });
  ok(sameBytes(device.identity.certificate, CERTIFICATE_DER), "the certificate's DER");
  ok(sameBytes(device.identity.privateKey, pkcs8Of(KEY_PKCS1_DER)), "the key wrapped as PKCS#8, as openssl pkcs8 -topk8 writes it");
  equal(identityProblem(device.identity), "");
  deepEqual(c.sent(), [
    "SUBSCRIBE " + CREATE_KEYS_TOPIC + "/accepted",
    "SUBSCRIBE " + CREATE_KEYS_TOPIC + "/rejected",
    "PUBLISH " + CREATE_KEYS_TOPIC,
    "SUBSCRIBE " + REGISTER_TOPIC + "/accepted",
    "SUBSCRIBE " + REGISTER_TOPIC + "/rejected",
    "PUBLISH " + REGISTER_TOPIC,
  ]);
  ok(reported(c).indexOf(TOKEN) < 0 && reported(c).indexOf(base64(KEY_PKCS1_DER).slice(0, 40)) < 0);
  c.provisioning.close();
  c.s.clock.settle();
  equal(c.s.broker.sent(10).flatMap((packet) => packet.filters as string[]).length, 4, "close() unsubscribes the reply topics");
  throws(() => c.provisioning.createKeysAndCertificate(c.record), "closed");
});

test("provisioning: provision() reports the failing step (a 400 on RegisterThing, a key that cannot be used), and a throwing callback is reported without secrets", () => {
  const c = scene();
  c.provisioning.provision(TEMPLATE, { SerialNumber: "0001" }, c.record);
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED);
  c.reply(REGISTER_TOPIC + "/rejected", { statusCode: 400, errorCode: "InvalidParameters", errorMessage: "Missing required parameter: Location" });
  equal(c.outcomes[0].status, "rejected");
  equal((c.outcomes[0].failure as ProvisioningFailure).operation, "RegisterThing");
  // An EC key (Moddable's TLS takes RSA client keys only).
  c.provisioning.provision(TEMPLATE, { SerialNumber: "0001" }, c.record);
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/accepted", { ...CREATED, privateKey: pem("EC " + PKCS8_KEY, KEY_PKCS1_DER) });
  c.reply(REGISTER_TOPIC + "/accepted", { thingName: "t1" });
  equal(c.outcomes[1].status, "bad-reply");
  equal((c.outcomes[1].failure as ProvisioningFailure).message, "CreateKeysAndCertificate: the certificate or key it returned cannot be used: PEM: expected an RSA private key (PKCS#1 or PKCS#8), got an EC PRIVATE KEY block");
  // A callback that throws with the token and the key in its message.
  c.provisioning.provision(TEMPLATE, { SerialNumber: "0001" }, () => {
    throw new Error("leak " + TOKEN + " " + CREATED.privateKey);
  });
  c.s.clock.settle();
  c.reply(CREATE_KEYS_TOPIC + "/accepted", CREATED);
  c.reply(REGISTER_TOPIC + "/accepted", { thingName: "t1" });
  equal(c.errors.length, 1);
  equal(c.errors[0].code, "callback-error");
  ok(c.errors[0].message.indexOf(TOKEN) < 0 && c.errors[0].message.indexOf(base64(KEY_PKCS1_DER).slice(0, 40)) < 0, c.errors[0].message);
  ok(c.errors[0].message.indexOf("leak <secret>") >= 0, c.errors[0].message);
  equal(c.provisioning.stats.callbackErrors, 1);
});

test("provisioning: provision() offline with queueing off is refused at the call", () => {
  const c = scene({ queueEntries: 0, queueBytes: 0 });
  c.s.broker.openBehaviour = "refuse";
  c.s.broker.drop();
  throws(() => c.provisioning.provision(TEMPLATE, { SerialNumber: "1" }, c.record), "offline queueing is disabled");
  equal(c.provisioning.pendingCount, 0);
  c.s.broker.openBehaviour = "accept";
  c.s.clock.advance(60000);
  equal(c.s.client.stateName, "online");
  c.provisioning.provision(TEMPLATE, { SerialNumber: "1" }, c.record);
  c.s.clock.settle();
  equal(c.requests(CREATE_KEYS_TOPIC).length, 1, "once online, provision() goes out");
});

// ------------------------------------------------------------------ base64 and PEM

test("identity: base64 decodes RFC 4648's vectors, with or without padding, across whitespace, and refuses what is not base64", () => {
  const out = new Uint8Array(16);
  const vectors: [string, string][] = [["", ""], ["Zg==", "f"], ["Zm8=", "fo"], ["Zm9v", "foo"], ["Zm9vYg==", "foob"], ["Zm9vYmE=", "fooba"], ["Zm9vYmFy", "foobar"], ["Zm9vYg", "foob"], ["Zm9v\r\nYmE =\n", "fooba"]];
  for (const [text, expected] of vectors) {
    const length = decodeBase64(text, 0, text.length, out, 0);
    equal(String.fromCharCode(...out.subarray(0, length)), expected, text);
  }
  for (const bad of ["Z", "Zm9vY", "Zm=v", "Zg==x", "Zg===", "Z*==", "Zm9v-A"]) throws(() => decodeBase64(bad, 0, bad.length, out, 0), "base64", bad);
  throws(() => decodeBase64("Zm9vYmFy", 0, 8, new Uint8Array(5), 0), "needs more than the 5 bytes given");
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(3), (bytes, spacing) => {
      const text = base64(bytes).replace(/(.{4})/g, spacing === 0 ? "$1" : spacing === 1 ? "$1\n" : spacing === 2 ? "$1\r\n" : "$1 ");
      const into = new Uint8Array(bytes.length + 3);
      const length = decodeBase64(text, 0, text.length, into, 3);
      ok(sameBytes(into.subarray(3, 3 + length), bytes));
    }),
    { numRuns: 200 },
  );
});

test("identity: PEM to DER takes one block of the expected label (LF or CRLF), and refuses others, naming the problem", () => {
  const into = new Uint8Array(2048);
  for (const newline of ["\n", "\r\n"]) {
    const length = pemToDer(pem("CERTIFICATE", CERTIFICATE_DER, newline), "CERTIFICATE", into, 0);
    ok(sameBytes(into.subarray(0, length), CERTIFICATE_DER));
  }
  equal(pemLabel(pem("CERTIFICATE", CERTIFICATE_DER)), "CERTIFICATE");
  equal(pemLabel("hello"), "");
  equal(pemLabel(undefined), "");
  const certificate = pem("CERTIFICATE", CERTIFICATE_DER);
  throws(() => pemToDer(certificate, RSA_KEY, into), "expected a " + RSA_KEY + " block, got a CERTIFICATE block");
  throws(() => pemToDer("junk" + certificate, "CERTIFICATE", into), "not PEM text");
  throws(() => pemToDer(certificate + certificate, "CERTIFICATE", into), "text after the CERTIFICATE block");
  throws(() => pemToDer(certificate.slice(0, certificate.length - 10), "CERTIFICATE", into), "no -----END CERTIFICATE----- line");
  throws(() => pemToDer(certificate.replace("MI", "M!"), "CERTIFICATE", into), "base64: unexpected character");
  throws(() => pemToDer(certificate, "CERTIFICATE", new Uint8Array(100)), "needs more than the 100 bytes given");
  const encrypted = "-----" + "BEGIN " + RSA_KEY + "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nAAAA\n-----" + "END " + RSA_KEY + "-----\n";
  throws(() => privateKeyToPkcs8Der(encrypted, into), "has headers (an encrypted key?)");
  throws(() => pemToDer(5 as never, "CERTIFICATE", into), "PEM text must be a string, got number");
});

test("identity: a PKCS#1 RSA key becomes PKCS#8 (as openssl pkcs8 -topk8 writes it); PKCS#8 is checked and kept; anything else is refused", () => {
  const into = new Uint8Array(2048);
  for (const seed of [1, 2, 3]) {
    const key = fakeRsaKey(seed);
    const length = privateKeyToPkcs8Der(pem(RSA_KEY, key), into, 0);
    ok(sameBytes(into.subarray(0, length), pkcs8Of(key)));
    equal(pkcs8RsaKeyDerProblem(into, 0, length), "");
    const again = privateKeyToPkcs8Der(pem(PKCS8_KEY, pkcs8Of(key)), into, 10);
    ok(sameBytes(into.subarray(10, 10 + again), pkcs8Of(key)));
  }
  // A small key: the wrapper's lengths take their short forms.
  const small = der(0x30, bytesOf([0x02, 0x01, 0x00]), integer(8, 1), integer(1, 2), integer(8, 3), integer(4, 4), integer(4, 5), integer(4, 6), integer(4, 7), integer(4, 8));
  const length = privateKeyToPkcs8Der(pem(RSA_KEY, small), into, 0);
  ok(sameBytes(into.subarray(0, length), pkcs8Of(small)));
  throws(() => privateKeyToPkcs8Der(pem(RSA_KEY, CERTIFICATE_DER), into), "the RSA key's version is not 0");
  throws(() => privateKeyToPkcs8Der(pem(RSA_KEY, KEY_PKCS1_DER.subarray(0, 300)), into), "not one DER SEQUENCE");
  throws(() => privateKeyToPkcs8Der(pem(PKCS8_KEY, KEY_PKCS1_DER), into), "not an unencrypted PKCS#8 RSA key");
  throws(() => privateKeyToPkcs8Der(pem("CERTIFICATE", CERTIFICATE_DER), into), "expected an RSA private key");
  throws(() => privateKeyToPkcs8Der(pem(RSA_KEY, KEY_PKCS1_DER), new Uint8Array(600)), "bytes given");
  equal(certificateDerProblem(CERTIFICATE_DER, 0, CERTIFICATE_DER.length), "");
  equal(certificateDerProblem(CERTIFICATE_DER, 0, CERTIFICATE_DER.length - 1), "the certificate is not one DER SEQUENCE");
});

// ------------------------------------------------------------------ the identity record

function sampleIdentity(seed = 1, thingName = "IoTLinkFleet-0001"): Identity {
  return { thingName, certificate: fakeCertificate(seed), privateKey: pkcs8Of(fakeRsaKey(seed)) };
}

test("identity: serialized and parsed back whole", () => {
  const identity = sampleIdentity();
  const buffer = new Uint8Array(IDENTITY_MAX_BYTES);
  const length = serializeIdentity(identity, buffer, 5);
  equal(length, identityBytes(identity));
  equal(serializedIdentityProblem(buffer, 5, length), "");
  const parsed = parseIdentity(buffer, 5, length);
  equal(parsed.thingName, identity.thingName);
  ok(sameBytes(parsed.certificate, identity.certificate));
  ok(sameBytes(parsed.privateKey, identity.privateKey));
  equal(parsed.certificate.buffer, buffer.buffer, "views into the bytes, not copies");
  throws(() => serializeIdentity(identity, new Uint8Array(100)), "do not fit the 100 bytes given");
  throws(() => serializeIdentity({ ...identity, thingName: "a b" }, buffer), "thingName must be 1 to 128");
  throws(() => serializeIdentity({ ...identity, privateKey: fakeRsaKey() }, buffer), "not an unencrypted PKCS#8 RSA key");
  throws(() => serializeIdentity({ ...identity, certificate: new Uint8Array(3) }, buffer), "the certificate is not one DER SEQUENCE");
  throws(() => serializeIdentity(undefined as never, buffer), "an identity must be an object");
});

test("identity: every corruption of a record is refused (each byte flipped, truncations, a wrong length), never parsed into an identity", () => {
  const identity = sampleIdentity(2, "t");
  const record = new Uint8Array(identityBytes(identity));
  serializeIdentity(identity, record);
  // Every byte of the header and the name, then every 7th: each flip is caught.
  for (let i = 0; i < record.length; i += i < 32 ? 1 : 11) {
    for (const mask of [0x01, 0xff]) {
      const copy = record.slice();
      copy[i] ^= mask;
      ok(serializedIdentityProblem(copy, 0, copy.length) !== "", "byte " + i + " ^ " + mask);
    }
  }
  for (const cut of [0, 1, 15, 16, record.length - 1]) ok(serializedIdentityProblem(record, 0, cut) !== "", "cut at " + cut);
  const erased = record.slice();
  erased.fill(0xff, 200);
  equal(serializedIdentityProblem(erased, 0, erased.length), "the identity record's CRC-32 does not match (corrupt or torn)", "a torn write (the rest still erased)");
  throws(() => parseIdentity(new Uint8Array(40)), "not an identity record (no IDN1 header)");
  throws(() => parseIdentity(record, 0, record.length - 1), "lengths do not add up");
  throws(() => parseIdentity(record, 0, 5), "at least 16 bytes");
});

// ------------------------------------------------------------------ stores

/** A journal as the IdentityStore uses it, whose power can be cut during an append or after it. */
class FakeJournal implements IdentityJournal {
  records: { seq: number; bytes: Uint8Array }[] = [];
  nextSeq = 1;
  /** Cut the power in the next append: nothing of the record survives (the journal never delivers a torn record). */
  cutInAppend = false;
  /** Cut the power right after the next append: the acknowledgements that would follow never happen. */
  cutAfterAppend = false;
  private dead = false;
  appends = 0;
  full = false;

  get count(): number {
    return this.records.length;
  }
  seqAt(index: number): number {
    return this.records[index].seq;
  }
  lengthAt(index: number): number {
    return this.records[index].bytes.length;
  }
  readAt(index: number, into: Uint8Array): number {
    into.set(this.records[index].bytes, 0);
    return this.records[index].bytes.length;
  }
  append(bytes: Uint8Array, offset = 0, length = bytes.length - offset): number {
    if (this.dead) throw new Error("power cut");
    if (this.full) return -1;
    if (this.cutInAppend) {
      this.dead = true;
      throw new Error("power cut");
    }
    this.appends++;
    this.records.push({ seq: this.nextSeq, bytes: bytes.slice(offset, offset + length) });
    if (this.cutAfterAppend) this.dead = true;
    return this.nextSeq++;
  }
  acknowledge(seq: number): boolean {
    if (this.dead) throw new Error("power cut");
    const index = this.records.findIndex((record) => record.seq === seq);
    if (index < 0) return false;
    this.records.splice(index, 1);
    return true;
  }
  /** Power back: the records on flash are what they were. */
  reboot(): void {
    this.dead = false;
    this.cutInAppend = false;
    this.cutAfterAppend = false;
  }
}

test("identity: MemoryIdentityStore keeps the serialized record; an invalid identity is refused and the old one kept", () => {
  const store = new MemoryIdentityStore();
  equal(store.load(), undefined);
  store.save(sampleIdentity(1, "first"));
  equal(store.load()?.thingName, "first");
  throws(() => store.save({ ...sampleIdentity(2), thingName: "" }), "thingName");
  equal(store.load()?.thingName, "first");
  throws(() => new MemoryIdentityStore(200).save(sampleIdentity()), "bytes are over this store's 200");
});

test("identity: JournalIdentityStore: a power cut during the new identity's write leaves the old one; after it, the new one wins and the old is dropped at the next save", () => {
  const journal = new FakeJournal();
  const store = new JournalIdentityStore(journal);
  equal(store.load(), undefined);
  store.save(sampleIdentity(1, "claim-time"));
  equal(journal.count, 1);
  store.save(sampleIdentity(2, "second"));
  equal(journal.count, 1, "the previous record is acknowledged once the new one is written");
  equal(store.load()?.thingName, "second");
  ok(sameBytes((store.load() as Identity).privateKey, sampleIdentity(2).privateKey));

  journal.cutInAppend = true;
  let cut = false;
  try {
    store.save(sampleIdentity(3, "third"));
  } catch {
    cut = true;
  }
  ok(cut);
  journal.reboot();
  equal(new JournalIdentityStore(journal).load()?.thingName, "second", "a cut during the write: the old identity, usable");

  journal.cutAfterAppend = true;
  try {
    store.save(sampleIdentity(4, "fourth"));
  } catch {
    // the acknowledgement of the old record never happened
  }
  journal.reboot();
  equal(journal.count, 2);
  const rebooted = new JournalIdentityStore(journal);
  equal(rebooted.load()?.thingName, "fourth", "both on flash: the newest intact one");
  rebooted.save(sampleIdentity(5, "fifth"));
  equal(journal.count, 1);
  equal(rebooted.load()?.thingName, "fifth");

  // A record that is not an intact identity is passed over.
  journal.records.push({ seq: journal.nextSeq++, bytes: new Uint8Array(64) });
  equal(rebooted.load()?.thingName, "fifth");
  journal.full = true;
  throws(() => rebooted.save(sampleIdentity(6, "sixth")), "has no room");
  journal.full = false;
  equal(rebooted.load()?.thingName, "fifth", "the previous identity is kept");
  throws(() => new JournalIdentityStore({} as never), "needs a journal");
});

// The journal test's fixture: four saves after a first one, and where each ends in flash units.
const JOURNAL_OPTIONS = { maxPayloadBytes: 3000, maxRecords: 2 };
const JOURNAL_IDENTITIES = [1, 2, 3, 4, 5].map((seed) => sampleIdentity(seed, "identity-" + seed));

function sameIdentity(loaded: Identity | undefined, expected: Identity): boolean {
  return loaded !== undefined && loaded.thingName === expected.thingName && sameBytes(loaded.certificate, expected.certificate) && sameBytes(loaded.privateKey, expected.privateKey);
}

function journalStore(sim: SimFlash): JournalIdentityStore {
  const journal = new Journal(sim, JOURNAL_OPTIONS);
  journal.open();
  return new JournalIdentityStore(journal, 3000);
}

/** The flash after the first save, and the unit count at which each later save ends (run without a cut). */
function journalFixture(): { sim: SimFlash; image: Uint8Array; ends: number[] } {
  // Four blocks: a cut that seals the head block leaves the identity in use in the oldest one, and
  // the journal's appends never copy, so one more block must be free for the next save.
  const sim = new SimFlash(4096, 4);
  journalStore(sim).save(JOURNAL_IDENTITIES[0]);
  const image = sim.snapshot();
  const store = journalStore(sim);
  const start = sim.units;
  const ends: number[] = [];
  for (let i = 1; i < JOURNAL_IDENTITIES.length; i++) {
    store.save(JOURNAL_IDENTITIES[i]);
    ends.push(sim.units - start);
  }
  return { sim, image, ends };
}

/** The cut points: every unit within 3 of a save's start or end, and 64 more spread over the rest. */
function journalCuts(ends: number[]): number[] {
  const total = ends[ends.length - 1];
  const cuts: number[] = [];
  const near = (k: number): boolean => k < 4 || ends.some((end) => k > end - 4 && k < end + 4);
  for (let k = 0; k < total; k++) if (near(k) || k % Math.floor(total / 64) === 0) cuts.push(k);
  return cuts;
}

// Five tests, each taking every fifth cut point: a test is one XS crank, whose computation is
// metered (about 2 million XS operations per cut point).
const JOURNAL_PARTS = 5;
for (let part = 0; part < JOURNAL_PARTS; part++) {
  test("identity: JournalIdentityStore over the flash journal: a power cut at any point of four saves leaves the previous or the new identity, whole, and the store keeps working (part " + (part + 1) + " of " + JOURNAL_PARTS + ")", () => {
    const { sim, image, ends } = journalFixture();
    const identities = JOURNAL_IDENTITIES;
    ok(sameIdentity(journalStore(sim).load(), identities[4]));
    ok(ends[3] - 4 * 2200 > 4096, "the saves erased a block (" + ends[3] + " units for four records)");
    const spare = sampleIdentity(9, "after-recovery");
    const cuts = journalCuts(ends);
    let tried = 0;
    for (let c = part; c < cuts.length; c += JOURNAL_PARTS) {
      const k = cuts[c];
      sim.restore(image);
      const store = journalStore(sim);
      sim.cutAfter(k, { halfByte: (k & 1) === 1, erase: (k & 2) === 0 ? "prefix" : "scatter", seed: k });
      let saving = 1;
      try {
        for (; saving < identities.length; saving++) store.save(identities[saving]);
      } catch (error) {
        ok(error instanceof PowerCut, "only the power cut stops a save");
      }
      sim.reboot();
      const loaded = journalStore(sim).load();
      ok(saving < identities.length, "cut at " + k + " fell in a save");
      ok(sameIdentity(loaded, identities[saving - 1]) || sameIdentity(loaded, identities[saving]), "cut at " + k + " in save " + saving + ": the previous or the new identity (" + (loaded === undefined ? "none" : loaded.thingName) + ")");
      // The store works on after the cut.
      journalStore(sim).save(spare);
      ok(sameIdentity(journalStore(sim).load(), spare), "cut at " + k + ": a save after recovery");
      tried++;
    }
    ok(tried >= 16, tried + " cut points");
  });
}

test("identity and provisioning: the tables they export are frozen (preloaded into flash on the device)", () => {
  const unfrozen: string[] = [];
  for (const [name, exports] of Object.entries({ identity: identityModule, provisioning: provisioningModule })) {
    for (const key of Object.keys(exports)) {
      const value = (exports as Record<string, unknown>)[key];
      if (typeof value === "object" && value !== null && !/^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/.test(key) && !Object.isFrozen(value)) unfrozen.push(name + "." + key);
    }
  }
  equal(unfrozen.join(", "), "");
  ok(Object.isFrozen(PROVISIONING_STATUS_NAMES));
});
