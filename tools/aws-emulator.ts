// An AWS IoT service emulator: the Device Shadow and Jobs services on their reserved topics, run as an
// MQTT client (MQTT.js) beside a broker (Mosquitto in the tests, or the embedded broker of
// tools/broker.ts). It answers the requests devices publish, and publishes deltas, /documents and
// job notifications, with the semantics AWS documents:
//
// - Shadows (classic and named): `state` with `desired` and `reported` merged key by key, `null`
//   deleting a key (or a whole section), arrays replaced whole; `metadata` with a timestamp per
//   leaf; `version` counting every update (kept across a delete, as AWS does within 48 hours), a
//   stale `version` in a request answered 409 "Version conflict"; `clientToken` echoed; /accepted
//   with the request's state and its metadata; /delta when an update sets `desired` and desired
//   differs from reported (computed as AWS does: keys of desired that reported lacks or holds another
//   value for, nested objects down to the differing leaves, arrays whole); /documents with
//   `previous` and `current`; the 8 KB limit (413); 400 and 404 with AWS's error bodies
//   {"code", "message", "timestamp", "clientToken"}.
// - Jobs: executions QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED (and CANCELED by the cloud side),
//   `versionNumber` counting every change, `executionNumber`, GetPendingJobExecutions,
//   StartNextPendingJobExecution, DescribeJobExecution (`$next` too), UpdateJobExecution with
//   `expectedVersion` (VersionMismatch and InvalidStateTransition carry `executionState`), and the
//   notify / notify-next notifications when the pending list or the next job changes.
// - Fleet provisioning by claim (the device provisioning MQTT API, JSON topics), when configured with
//   templates and a CA: CreateKeysAndCertificate issues an RSA-2048 key (PKCS#1 PEM, as AWS) and a
//   certificate signed by that CA (the development CA, which the test brokers trust, so the device
//   can connect with it), with a random single-use ownership token that expires (one hour by default,
//   as AWS documents; the clock is injected); RegisterThing checks the template, the token (empty,
//   unknown, used or expired: 400 InvalidCertificateOwnershipToken) and the template's required
//   parameters, activates the certificate and answers {deviceConfiguration, thingName}. Errors are
//   {statusCode, errorCode, errorMessage}, as AWS documents them.
//
// One difference from AWS: AWS IoT Core sends a reply to the client that made the request even if it
// has no subscription to the reply topic. Here the reply is an ordinary PUBLISH through the broker,
// so a device receives it only if it subscribed to the reply topic (IoTLink's ShadowClient does so;
// its JobsClient does unless told not to). And a broker lets any client publish on $aws/ topics.
//
// As a script: npm run broker in one shell, then
//   node --import tsx tools/aws-emulator.ts [--url mqtts://127.0.0.1:8883] [--certs certs] [--job id=document-json] [--provision-template name]
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { createHash, generateKeyPairSync, randomBytes, X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { DEV_PKI_FILES, issueCertificate, type Issuer } from "./certs.ts";

/** The Device Shadow service's limit on a request document (bytes). */
export const SHADOW_MAX_BYTES = 8192;
/** AWS's limit on a client token (bytes). */
export const CLIENT_TOKEN_MAX_BYTES = 64;
/** Nesting AWS allows in a shadow's desired or reported section. */
export const SHADOW_MAX_DEPTH = 6;

/** The request topics the emulator subscribes to. */
export const EMULATOR_FILTERS: readonly string[] = Object.freeze([
  "$aws/things/+/shadow/get",
  "$aws/things/+/shadow/update",
  "$aws/things/+/shadow/delete",
  "$aws/things/+/shadow/name/+/get",
  "$aws/things/+/shadow/name/+/update",
  "$aws/things/+/shadow/name/+/delete",
  "$aws/things/+/jobs/get",
  "$aws/things/+/jobs/start-next",
  "$aws/things/+/jobs/+/get",
  "$aws/things/+/jobs/+/update",
  "$aws/certificates/create/json",
  "$aws/provisioning-templates/+/provision/json",
]);

/** How long a certificate ownership token is valid: one hour, as AWS documents for CreateKeysAndCertificate. */
export const OWNERSHIP_TOKEN_LIFETIME_MS = 60 * 60 * 1000;
/** AWS's rule for a provisioning template name. */
const TEMPLATE_NAME = /^[0-9A-Za-z_-]{1,36}$/;
const THING_NAME = /^[a-zA-Z0-9:_-]{1,128}$/;

/** A provisioning template, as far as the emulator follows one. */
export interface ProvisioningTemplate {
  /** Parameters RegisterThing must carry (default: the thing name parameter). */
  requiredParameters?: readonly string[];
  /** The parameter the thing name is made from (default "SerialNumber"). */
  thingNameParameter?: string;
  /** What goes before it in the thing name (default the template's name and "-"). */
  thingNamePrefix?: string;
  /** The template's DeviceConfiguration, returned by RegisterThing. */
  deviceConfiguration?: Record<string, string>;
}

/** A key and certificate issued for CreateKeysAndCertificate, PEM. */
export interface IssuedCertificate {
  certificatePem: string;
  privateKeyPem: string;
}

export interface FleetProvisioningOptions {
  /** The templates RegisterThing knows, by name. */
  templates: Record<string, ProvisioningTemplate>;
  /** The CA that signs new certificates (PEM file paths), e.g. the development CA: certs/ca.pem and certs/ca-key.pem. */
  issuer?: Issuer;
  /** Or what issues a key and certificate (instead of openssl and `issuer`). */
  issue?: () => IssuedCertificate;
  /** How long an ownership token is valid, in ms of the service's clock; default OWNERSHIP_TOKEN_LIFETIME_MS. */
  tokenLifetimeMs?: number;
}

/** A certificate CreateKeysAndCertificate issued. */
export interface ProvisionedCertificate {
  certificateId: string;
  certificatePem: string;
  status: "PENDING_ACTIVATION" | "ACTIVE";
  /** The thing RegisterThing attached it to. */
  thingName?: string;
}

/** An ownership token: its certificate, when it stops being valid (ms of the service's clock), whether RegisterThing took it. */
interface OwnershipToken {
  certificateId: string;
  expiresAt: number;
  used: boolean;
}

/** A new RSA-2048 key (returned as PKCS#1 PEM, as AWS does) and a client certificate for it signed by `issuer`, with openssl. */
export function issueWithOpenssl(issuer: Issuer): IssuedCertificate {
  const work = mkdtempSync(join(tmpdir(), "iotlink-provisioning-"));
  try {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const keyPem = join(work, "key.pem");
    writeFileSync(keyPem, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
    const certificatePem = join(work, "certificate.pem");
    issueCertificate({ certificatePem, keyPem, commonName: "AWS IoT Certificate", profile: "client", issuer });
    return { certificatePem: readFileSync(certificatePem, "utf8"), privateKeyPem: privateKey.export({ type: "pkcs1", format: "pem" }) as string };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export interface ShadowDocument {
  state: { desired?: JsonObject; reported?: JsonObject; delta?: JsonObject };
  metadata: { desired?: JsonObject; reported?: JsonObject };
  version: number;
  timestamp: number;
}

export type JobStatus = "QUEUED" | "IN_PROGRESS" | "SUCCEEDED" | "FAILED" | "REJECTED" | "CANCELED" | "TIMED_OUT" | "REMOVED";

export interface JobExecution {
  jobId: string;
  thingName: string;
  status: JobStatus;
  statusDetails?: Record<string, string>;
  queuedAt: number;
  startedAt?: number;
  lastUpdatedAt: number;
  versionNumber: number;
  executionNumber: number;
  jobDocument: Json;
}

/** One message the service publishes. */
export interface ServicePublish {
  topic: string;
  payload: string;
  qos: 0 | 1;
}

export interface ServiceOptions {
  /** The clock, in ms since the epoch (timestamps are whole seconds); default Date.now. */
  now?: () => number;
  /** One line per request and outcome (never a key or a token). */
  log?: (line: string) => void;
  /** Fleet provisioning by claim; without it, its requests are answered 503. */
  provisioning?: FleetProvisioningOptions;
}

interface ShadowRecord {
  exists: boolean;
  state: { desired?: JsonObject; reported?: JsonObject };
  metadata: { desired?: JsonObject; reported?: JsonObject };
  version: number;
}

class RequestError extends Error {
  constructor(readonly code: number | string, message: string, readonly extra: JsonObject = {}) {
    super(message);
  }
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function clone<T extends Json | undefined>(value: T): T {
  return value === undefined ? value : (JSON.parse(JSON.stringify(value)) as T);
}

function sameJson(a: Json | undefined, b: Json | undefined): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function depthOf(value: Json): number {
  if (Array.isArray(value)) return 1 + Math.max(0, ...value.map(depthOf));
  if (isObject(value)) return 1 + Math.max(0, ...Object.values(value).map(depthOf));
  return 0;
}

/** Metadata for a value just written: {timestamp} per leaf, mirroring objects, one per array element. */
function metadataFor(value: Json, timestamp: number): Json {
  if (isObject(value)) {
    const metadata: JsonObject = {};
    for (const [key, child] of Object.entries(value)) metadata[key] = metadataFor(child, timestamp);
    return metadata;
  }
  if (Array.isArray(value)) return value.map(() => ({ timestamp }));
  return { timestamp };
}

/** Merges a request section into a stored one, key by key: null deletes, objects merge, the rest (arrays too) replaces. */
function merge(target: JsonObject, patch: JsonObject, metadata: JsonObject, timestamp: number): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete target[key];
      delete metadata[key];
    } else if (isObject(value)) {
      if (!isObject(target[key])) {
        target[key] = {};
        metadata[key] = {};
      }
      if (!isObject(metadata[key])) metadata[key] = {};
      merge(target[key] as JsonObject, value, metadata[key] as JsonObject, timestamp);
      if (Object.keys(target[key] as JsonObject).length === 0) {
        delete target[key];
        delete metadata[key];
      }
    } else {
      target[key] = clone(value);
      metadata[key] = metadataFor(value, timestamp);
    }
  }
}

/**
 * The delta as AWS computes it: each key of desired whose value reported lacks or differs from;
 * objects on both sides compared key by key (the delta keeps the path to the differing leaves);
 * arrays and other values compared whole.
 */
export function shadowDelta(desired: JsonObject | undefined, reported: JsonObject | undefined): JsonObject {
  const delta: JsonObject = {};
  if (!desired) return delta;
  for (const [key, value] of Object.entries(desired)) {
    const other = reported ? reported[key] : undefined;
    if (isObject(value) && isObject(other)) {
      const inner = shadowDelta(value, other);
      if (Object.keys(inner).length > 0) delta[key] = inner;
    } else if (other === undefined || !sameJson(value, other)) {
      delta[key] = clone(value);
    }
  }
  return delta;
}

/** The desired metadata of the delta's keys. */
function deltaMetadata(delta: JsonObject, metadata: JsonObject | undefined): JsonObject {
  const out: JsonObject = {};
  for (const [key, value] of Object.entries(delta)) {
    const meta = metadata ? metadata[key] : undefined;
    out[key] = isObject(value) && isObject(meta) && !("timestamp" in meta) ? deltaMetadata(value, meta) : clone(meta ?? null);
  }
  return out;
}

function pruneEmpty<T extends object>(object: T): T {
  for (const key of Object.keys(object) as (keyof T)[]) {
    const value = object[key];
    if (value === undefined || (isObject(value as Json) && Object.keys(value as object).length === 0)) delete object[key];
  }
  return object;
}

const TERMINAL: readonly JobStatus[] = ["SUCCEEDED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT", "REMOVED"];
const DEVICE_STATUSES: readonly string[] = ["IN_PROGRESS", "FAILED", "SUCCEEDED", "REJECTED"];
const JOB_ID = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * The two services, without a network: `handle()` takes what a device published and `publish`
 * receives what the service sends back. Deterministic with an injected clock, so the tests can keep
 * AWS's documented examples as vectors.
 */
export class AwsIotService {
  private readonly shadows = new Map<string, ShadowRecord>();
  private readonly executions = new Map<string, JobExecution[]>();
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  private readonly provisioning: FleetProvisioningOptions | undefined;
  /** Certificates CreateKeysAndCertificate issued, by certificateId. */
  readonly certificates = new Map<string, ProvisionedCertificate>();
  private readonly ownershipTokens = new Map<string, OwnershipToken>();
  /** Things RegisterThing made: thing name -> its certificateId and the parameters it was registered with. */
  readonly things = new Map<string, { certificateId: string; templateName: string; parameters: Record<string, string> }>();
  /** Requests handled, by kind ("shadow/update", "jobs/start-next", "provisioning/create-keys"...). */
  readonly counts = new Map<string, number>();

  constructor(private readonly publish: (message: ServicePublish) => void, options: ServiceOptions = {}) {
    this.now = options.now ?? Date.now;
    this.log = options.log ?? (() => {});
    const provisioning = options.provisioning;
    if (provisioning) {
      for (const name of Object.keys(provisioning.templates)) if (!TEMPLATE_NAME.test(name)) throw new Error(`a provisioning template name is 1 to 36 of A-Z a-z 0-9 _ -, got ${JSON.stringify(name)}`);
      if (!provisioning.issue && !provisioning.issuer) throw new Error("fleet provisioning needs an issuer (the CA's PEM files) or an issue function");
    }
    this.provisioning = provisioning;
  }

  private seconds(): number {
    return Math.floor(this.now() / 1000);
  }

  private count(kind: string): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }

  /** A device published `payload` on `topic` at `qos`; true when it was a request of one of the services. */
  handle(topic: string, payload: Uint8Array | string, qos = 0): boolean {
    const text = typeof payload === "string" ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString("utf8");
    const bytes = typeof payload === "string" ? Buffer.byteLength(payload) : payload.byteLength;
    const replyQos: 0 | 1 = qos >= 1 ? 1 : 0;
    const levels = topic.split("/");
    if (topic === "$aws/certificates/create/json") {
      this.count("provisioning/create-keys");
      this.createKeysRequest(topic, text, replyQos);
      return true;
    }
    if (levels[0] === "$aws" && levels[1] === "provisioning-templates" && levels.length === 5 && levels[3] === "provision" && levels[4] === "json") {
      this.count("provisioning/register-thing");
      this.registerThingRequest(topic, levels[2], text, replyQos);
      return true;
    }
    if (levels[0] !== "$aws" || levels[1] !== "things" || levels.length < 5) return false;
    const thing = levels[2];
    if (levels[3] === "shadow") {
      let name = "";
      let operation = levels[4];
      if (levels[4] === "name" && levels.length === 7) {
        name = levels[5];
        operation = levels[6];
      } else if (levels.length !== 5) return false;
      if (operation !== "get" && operation !== "update" && operation !== "delete") return false;
      this.count("shadow/" + operation);
      this.shadowRequest(topic, thing, name, operation, text, bytes, replyQos);
      this.flush();
      return true;
    }
    if (levels[3] === "jobs") {
      const rest = levels.slice(4).join("/");
      if (rest === "get" || rest === "start-next" || (levels.length === 6 && (levels[5] === "get" || levels[5] === "update"))) {
        this.count("jobs/" + (levels.length === 6 ? (levels[5] === "get" ? "describe" : "update") : rest));
        this.jobsRequest(topic, thing, levels.length === 6 ? levels[4] : "", levels.length === 6 ? levels[5] : rest, text, replyQos);
        this.flush();
        return true;
      }
    }
    return false;
  }

  // ------------------------------------------------------------ Device Shadow

  private shadowKey(thing: string, name: string): string {
    return thing + "\u0000" + name;
  }

  private record(thing: string, name: string): ShadowRecord {
    const key = this.shadowKey(thing, name);
    let record = this.shadows.get(key);
    if (!record) {
      record = { exists: false, state: {}, metadata: {}, version: 0 };
      this.shadows.set(key, record);
    }
    return record;
  }

  private shadowRequest(topic: string, thing: string, name: string, operation: string, text: string, bytes: number, qos: 0 | 1): void {
    let clientToken: string | undefined;
    const timestamp = this.seconds();
    try {
      const request = this.parseRequest(text, operation === "update", bytes);
      clientToken = this.tokenOf(request);
      let accepted: JsonObject;
      if (operation === "get") accepted = this.getShadow(thing, name, timestamp);
      else if (operation === "delete") accepted = this.deleteShadow(thing, name, timestamp);
      else accepted = this.updateShadow(thing, name, request as JsonObject, timestamp, clientToken, topic.slice(0, -"/update".length));
      if (clientToken !== undefined) accepted.clientToken = clientToken;
      this.log(`shadow ${operation} ${thing}${name ? "/" + name : ""}: accepted (version ${accepted.version})`);
      this.send(topic + "/accepted", accepted, qos);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      const body: JsonObject = { code: error.code, message: error.message, timestamp };
      if (clientToken !== undefined) body.clientToken = clientToken;
      this.log(`shadow ${operation} ${thing}${name ? "/" + name : ""}: rejected ${error.code} ${error.message}`);
      this.send(topic + "/rejected", body, qos);
    }
  }

  /** The request document (an empty get or delete payload is {}), after the checks every request gets. */
  private parseRequest(text: string, update: boolean, bytes: number): Json {
    if (update && bytes > SHADOW_MAX_BYTES) throw new RequestError(413, "The payload exceeds the maximum size allowed");
    if (!update && text.trim() === "") return {};
    let request: Json;
    try {
      request = JSON.parse(text) as Json;
    } catch {
      throw new RequestError(400, "Invalid JSON");
    }
    if (!isObject(request)) throw new RequestError(400, "Invalid JSON");
    return request;
  }

  /** The request's clientToken (undefined when it has none); an invalid one is a 400 that echoes nothing. */
  private tokenOf(request: Json): string | undefined {
    if (!isObject(request) || !("clientToken" in request)) return undefined;
    const token = request.clientToken;
    if (typeof token !== "string" || token === "" || Buffer.byteLength(token) > CLIENT_TOKEN_MAX_BYTES) throw new RequestError(400, "Invalid clientToken");
    return token;
  }

  private missing(thing: string, name: string): RequestError {
    return new RequestError(404, "No shadow exists with name: '" + (name || thing) + "'");
  }

  private getShadow(thing: string, name: string, timestamp: number): JsonObject {
    const record = this.shadows.get(this.shadowKey(thing, name));
    if (!record || !record.exists) throw this.missing(thing, name);
    return this.documentOf(record, timestamp, true) as unknown as JsonObject;
  }

  private deleteShadow(thing: string, name: string, timestamp: number): JsonObject {
    const record = this.shadows.get(this.shadowKey(thing, name));
    if (!record || !record.exists) throw this.missing(thing, name);
    record.exists = false;
    record.state = {};
    record.metadata = {};
    return { version: record.version, timestamp };
  }

  private documentOf(record: ShadowRecord, timestamp: number, withDelta: boolean): ShadowDocument {
    const state: ShadowDocument["state"] = clone(record.state as Json) as ShadowDocument["state"];
    if (withDelta) {
      const delta = shadowDelta(record.state.desired, record.state.reported);
      if (Object.keys(delta).length > 0) state.delta = delta;
    }
    return { state, metadata: clone(record.metadata as Json) as ShadowDocument["metadata"], version: record.version, timestamp };
  }

  private updateShadow(thing: string, name: string, request: JsonObject, timestamp: number, clientToken: string | undefined, prefix: string): JsonObject {
    if (!("state" in request)) throw new RequestError(400, "Missing required node: state");
    const state = request.state;
    if (!isObject(state)) throw new RequestError(400, "State node must be an object");
    for (const key of Object.keys(state)) if (key !== "desired" && key !== "reported") throw new RequestError(400, "State contains an invalid node");
    for (const section of ["desired", "reported"] as const) {
      if (!(section in state)) continue;
      const value = state[section];
      if (value !== null && !isObject(value)) throw new RequestError(400, (section === "desired" ? "Desired" : "Reported") + " node must be an object");
      if (value !== null && depthOf(value) > SHADOW_MAX_DEPTH) throw new RequestError(400, "JSON contains too many levels of nesting; maximum is " + SHADOW_MAX_DEPTH);
    }
    const record = this.record(thing, name);
    if ("version" in request) {
      const version = request.version;
      if (typeof version !== "number" || !Number.isInteger(version) || version < 0) throw new RequestError(400, "Invalid version");
      if (version !== record.version) throw new RequestError(409, "Version conflict");
    }
    const previous = record.exists ? this.documentOf(record, timestamp, false) : undefined;
    if (!record.exists) {
      record.exists = true;
      record.state = {};
      record.metadata = {};
    }
    for (const section of ["desired", "reported"] as const) {
      if (!(section in state)) continue;
      const value = state[section];
      if (value === null) {
        delete record.state[section];
        delete record.metadata[section];
        continue;
      }
      const target = record.state[section] ?? {};
      const metadata = record.metadata[section] ?? {};
      merge(target, value as JsonObject, metadata, timestamp);
      record.state[section] = target;
      record.metadata[section] = metadata;
      if (Object.keys(target).length === 0) {
        delete record.state[section];
        delete record.metadata[section];
      }
    }
    record.version++;
    const accepted: JsonObject = { state: clone(state), metadata: metadataFor(state, timestamp), version: record.version, timestamp };
    const current = this.documentOf(record, timestamp, false);
    const documents: JsonObject = { previous: previous ? pruneEmpty({ state: previous.state as Json, metadata: previous.metadata as Json, version: previous.version }) : null, current: pruneEmpty({ state: current.state as Json, metadata: current.metadata as Json, version: current.version }), timestamp };
    if (!previous) delete documents.previous;
    if (clientToken !== undefined) documents.clientToken = clientToken;
    // Sent after the reply (flush()).
    if (isObject(state.desired)) {
      const delta = shadowDelta(record.state.desired, record.state.reported);
      if (Object.keys(delta).length > 0) {
        const message: JsonObject = { version: record.version, timestamp, state: delta, metadata: deltaMetadata(delta, record.metadata.desired) };
        if (clientToken !== undefined) message.clientToken = clientToken;
        this.later(prefix + "/update/delta", message);
      }
    }
    this.later(prefix + "/update/documents", documents);
    return accepted;
  }

  /** The shadow as GetThingShadow returns it (with its delta); undefined when there is none. */
  shadowDocument(thing: string, name = ""): ShadowDocument | undefined {
    const record = this.shadows.get(this.shadowKey(thing, name));
    return record && record.exists ? this.documentOf(record, this.seconds(), true) : undefined;
  }

  /**
   * An update from the cloud side (UpdateThingShadow, as an app would call it): the /accepted reply
   * goes nowhere, the /documents and /delta messages go to the broker. Returns the accepted reply, or
   * throws with AWS's code and message.
   */
  updateShadowDocument(thing: string, name: string, request: JsonObject | string): JsonObject {
    const text = typeof request === "string" ? request : JSON.stringify(request);
    const prefix = "$aws/things/" + thing + "/shadow" + (name ? "/name/" + name : "");
    try {
      const parsed = this.parseRequest(text, true, Buffer.byteLength(text));
      const token = this.tokenOf(parsed);
      const accepted = this.updateShadow(thing, name, parsed as JsonObject, this.seconds(), token, prefix);
      if (token !== undefined) accepted.clientToken = token;
      return accepted;
    } catch (error) {
      if (error instanceof RequestError) throw new Error(error.code + " " + error.message);
      throw error;
    } finally {
      this.flush();
    }
  }

  // ------------------------------------------------------------ Fleet provisioning

  private provisioningReject(topic: string, statusCode: number, errorCode: string, errorMessage: string, qos: 0 | 1, what: string): void {
    this.log(`provisioning ${what}: rejected ${statusCode} ${errorCode} ${errorMessage}`);
    this.send(topic + "/rejected", { statusCode, errorCode, errorMessage }, qos);
  }

  /** CreateKeysAndCertificate: a new key and certificate (PENDING_ACTIVATION) and its ownership token. */
  private createKeysRequest(topic: string, text: string, qos: 0 | 1): void {
    const what = "CreateKeysAndCertificate";
    const provisioning = this.provisioning;
    if (!provisioning) return this.provisioningReject(topic, 503, "ServiceUnavailable", "Fleet provisioning is not configured in this emulator", qos, what);
    // AWS documents an empty payload; its SDKs send {}.
    if (text.trim() !== "") {
      let request: unknown;
      try {
        request = JSON.parse(text);
      } catch {
        request = undefined;
      }
      if (!isObject(request as Json)) return this.provisioningReject(topic, 400, "InvalidPayload", "The request payload is not a JSON object", qos, what);
    }
    const issued = provisioning.issue ? provisioning.issue() : issueWithOpenssl(provisioning.issuer as Issuer);
    // AWS's certificate id is the SHA-256 of the certificate's DER, in hex.
    const certificateId = createHash("sha256").update(new X509Certificate(issued.certificatePem).raw).digest("hex");
    // AWS's tokens are base64 of a JSON envelope around a cipher text, about 500 characters: this one is random.
    const certificateOwnershipToken = Buffer.from(JSON.stringify({ version: "20191023", cipher: randomBytes(288).toString("base64") })).toString("base64");
    this.certificates.set(certificateId, { certificateId, certificatePem: issued.certificatePem, status: "PENDING_ACTIVATION" });
    this.ownershipTokens.set(certificateOwnershipToken, { certificateId, expiresAt: this.now() + (provisioning.tokenLifetimeMs ?? OWNERSHIP_TOKEN_LIFETIME_MS), used: false });
    this.log(`provisioning ${what}: certificate ${certificateId.slice(0, 12)}... issued (PENDING_ACTIVATION)`);
    this.send(topic + "/accepted", { certificateId, certificatePem: issued.certificatePem, privateKey: issued.privateKeyPem, certificateOwnershipToken }, qos);
  }

  /** RegisterThing: the template, the token and the parameters checked; the certificate activated and its thing made. */
  private registerThingRequest(topic: string, templateName: string, text: string, qos: 0 | 1): void {
    const what = "RegisterThing " + templateName;
    const provisioning = this.provisioning;
    if (!provisioning) return this.provisioningReject(topic, 503, "ServiceUnavailable", "Fleet provisioning is not configured in this emulator", qos, what);
    const template = Object.hasOwn(provisioning.templates, templateName) ? provisioning.templates[templateName] : undefined;
    if (!template) return this.provisioningReject(topic, 404, "ResourceNotFound", "The provisioning template " + templateName + " does not exist", qos, what);
    let request: Json;
    try {
      request = JSON.parse(text) as Json;
    } catch {
      return this.provisioningReject(topic, 400, "InvalidPayload", "The request payload is not valid JSON", qos, what);
    }
    if (!isObject(request)) return this.provisioningReject(topic, 400, "InvalidPayload", "The request payload is not a JSON object", qos, what);
    const token = request.certificateOwnershipToken;
    if (typeof token !== "string" || token === "") return this.provisioningReject(topic, 400, "InvalidCertificateOwnershipToken", "Certificate ownership token cannot be empty.", qos, what);
    const ownership = this.ownershipTokens.get(token);
    const certificate = ownership === undefined ? undefined : this.certificates.get(ownership.certificateId);
    if (!ownership || !certificate) return this.provisioningReject(topic, 400, "InvalidCertificateOwnershipToken", "Certificate ownership token is invalid.", qos, what);
    if (ownership.used) return this.provisioningReject(topic, 400, "InvalidCertificateOwnershipToken", "Certificate ownership token has already been used.", qos, what);
    if (this.now() >= ownership.expiresAt) return this.provisioningReject(topic, 400, "InvalidCertificateOwnershipToken", "Certificate ownership token has expired.", qos, what);
    const parameters = request.parameters ?? {};
    if (!isObject(parameters) || Object.values(parameters).some((value) => typeof value !== "string")) return this.provisioningReject(topic, 400, "InvalidParameters", "Parameters must be a map of strings", qos, what);
    const nameParameter = template.thingNameParameter ?? "SerialNumber";
    for (const name of template.requiredParameters ?? [nameParameter]) {
      if (typeof parameters[name] !== "string" || parameters[name] === "") return this.provisioningReject(topic, 400, "InvalidParameters", "Missing required parameter: " + name, qos, what);
    }
    const thingName = (template.thingNamePrefix ?? templateName + "-") + String(parameters[nameParameter] ?? "");
    if (!THING_NAME.test(thingName)) return this.provisioningReject(topic, 400, "InvalidParameters", "The thing name " + JSON.stringify(thingName) + " is not valid", qos, what);
    ownership.used = true;
    certificate.status = "ACTIVE";
    certificate.thingName = thingName;
    this.things.set(thingName, { certificateId: certificate.certificateId, templateName, parameters: { ...(parameters as Record<string, string>) } });
    this.log(`provisioning ${what}: accepted, thing ${thingName}, certificate ${certificate.certificateId.slice(0, 12)}... ACTIVE`);
    this.send(topic + "/accepted", { deviceConfiguration: { ...(template.deviceConfiguration ?? {}) }, thingName }, qos);
  }

  // ------------------------------------------------------------ Jobs

  private thingExecutions(thing: string): JobExecution[] {
    let list = this.executions.get(thing);
    if (!list) {
      list = [];
      this.executions.set(thing, list);
    }
    return list;
  }

  /** The pending executions (IN_PROGRESS first, then QUEUED, each in the order they were queued). */
  private pending(thing: string): JobExecution[] {
    const list = this.thingExecutions(thing);
    return [...list.filter((execution) => execution.status === "IN_PROGRESS"), ...list.filter((execution) => execution.status === "QUEUED")];
  }

  private summary(execution: JobExecution): JsonObject {
    const summary: JsonObject = { jobId: execution.jobId, queuedAt: execution.queuedAt };
    if (execution.startedAt !== undefined) summary.startedAt = execution.startedAt;
    summary.lastUpdatedAt = execution.lastUpdatedAt;
    summary.executionNumber = execution.executionNumber;
    summary.versionNumber = execution.versionNumber;
    return summary;
  }

  private full(execution: JobExecution, includeDocument = true, withThingName = true): JsonObject {
    const full: JsonObject = withThingName ? { jobId: execution.jobId, thingName: execution.thingName, status: execution.status } : { jobId: execution.jobId, status: execution.status };
    if (execution.statusDetails) full.statusDetails = { ...execution.statusDetails };
    full.queuedAt = execution.queuedAt;
    if (execution.startedAt !== undefined) full.startedAt = execution.startedAt;
    full.lastUpdatedAt = execution.lastUpdatedAt;
    full.versionNumber = execution.versionNumber;
    full.executionNumber = execution.executionNumber;
    if (includeDocument) full.jobDocument = clone(execution.jobDocument);
    return full;
  }

  private stateOf(execution: JobExecution): JsonObject {
    const state: JsonObject = { status: execution.status };
    if (execution.statusDetails) state.statusDetails = { ...execution.statusDetails };
    state.versionNumber = execution.versionNumber;
    return state;
  }

  /** Runs `change` on a thing's executions and publishes notify / notify-next if the pending list or the next job changed. */
  private changing(thing: string, change: () => void): void {
    const before = this.pending(thing);
    const beforeIds = before.map((execution) => execution.jobId + "#" + execution.executionNumber).sort().join(",");
    const beforeNext = before[0] ? before[0].jobId + "#" + before[0].executionNumber : "";
    change();
    const after = this.pending(thing);
    const afterIds = after.map((execution) => execution.jobId + "#" + execution.executionNumber).sort().join(",");
    const afterNext = after[0] ? after[0].jobId + "#" + after[0].executionNumber : "";
    const timestamp = this.seconds();
    const prefix = "$aws/things/" + thing + "/jobs/";
    if (beforeIds !== afterIds) {
      const jobs: JsonObject = {};
      const inProgress = after.filter((execution) => execution.status === "IN_PROGRESS").map((execution) => this.summary(execution));
      const queued = after.filter((execution) => execution.status === "QUEUED").map((execution) => this.summary(execution));
      if (inProgress.length > 0) jobs.IN_PROGRESS = inProgress;
      if (queued.length > 0) jobs.QUEUED = queued;
      this.later(prefix + "notify", { timestamp, jobs });
    }
    if (beforeNext !== afterNext) this.later(prefix + "notify-next", after[0] ? { timestamp, execution: this.full(after[0], true, false) } : { timestamp });
  }

  /** CreateJob for `things`: a QUEUED execution each (versionNumber 1), and the notifications. */
  createJob(jobId: string, jobDocument: Json, things: readonly string[]): void {
    if (!JOB_ID.test(jobId)) throw new Error("a job id is 1 to 64 of a-z A-Z 0-9 _ -");
    const timestamp = this.seconds();
    for (const thing of things) {
      this.changing(thing, () => {
        const list = this.thingExecutions(thing);
        const executionNumber = list.filter((execution) => execution.jobId === jobId).length + 1;
        list.push({ jobId, thingName: thing, status: "QUEUED", queuedAt: timestamp, lastUpdatedAt: timestamp, versionNumber: 1, executionNumber, jobDocument: clone(jobDocument) });
      });
    }
    this.log(`jobs: created ${jobId} for ${things.join(", ")}`);
    this.flush();
  }

  /** CancelJob: the thing's pending executions of the job become CANCELED. */
  cancelJob(jobId: string, thing: string): void {
    this.changing(thing, () => {
      for (const execution of this.thingExecutions(thing)) {
        if (execution.jobId !== jobId || TERMINAL.includes(execution.status)) continue;
        execution.status = "CANCELED";
        execution.lastUpdatedAt = this.seconds();
        execution.versionNumber++;
      }
    });
    this.flush();
  }

  /** The latest execution of a job on a thing, as stored (a copy). */
  jobExecution(thing: string, jobId: string): JobExecution | undefined {
    const found = this.thingExecutions(thing).filter((execution) => execution.jobId === jobId).at(-1);
    return found ? (clone(found as unknown as Json) as unknown as JobExecution) : undefined;
  }

  /** Changes an execution's status details from the cloud side (its versionNumber moves on): what makes a device's expectedVersion stale. */
  touchJobExecution(thing: string, jobId: string, statusDetails: Record<string, string>): void {
    const found = this.thingExecutions(thing).filter((execution) => execution.jobId === jobId).at(-1);
    if (!found) throw new Error("no execution of " + jobId + " on " + thing);
    found.statusDetails = { ...statusDetails };
    found.versionNumber++;
    found.lastUpdatedAt = this.seconds();
  }

  private jobsRequest(topic: string, thing: string, jobId: string, operation: string, text: string, qos: 0 | 1): void {
    const timestamp = this.seconds();
    let clientToken: string | undefined;
    try {
      let request: Json = {};
      if (text.trim() !== "") {
        try {
          request = JSON.parse(text) as Json;
        } catch {
          throw new RequestError("InvalidJson", "The contents of the request could not be interpreted as valid UTF-8-encoded JSON");
        }
      }
      if (!isObject(request)) throw new RequestError("InvalidJson", "The request is not a JSON object");
      if (typeof request.clientToken === "string") clientToken = request.clientToken;
      let accepted: JsonObject;
      if (jobId === "") accepted = operation === "get" ? this.getPending(thing) : this.startNext(thing, request, timestamp);
      else if (operation === "get") accepted = this.describe(thing, jobId, request);
      else accepted = this.updateExecution(thing, jobId, request, timestamp);
      accepted.timestamp = timestamp;
      if (clientToken !== undefined) accepted.clientToken = clientToken;
      this.log(`jobs ${jobId ? jobId + " " : ""}${operation} ${thing}: accepted`);
      this.send(topic + "/accepted", accepted, qos);
    } catch (error) {
      if (!(error instanceof RequestError)) throw error;
      const body: JsonObject = { code: error.code, message: error.message };
      if (clientToken !== undefined) body.clientToken = clientToken;
      body.timestamp = timestamp;
      Object.assign(body, error.extra);
      this.log(`jobs ${jobId ? jobId + " " : ""}${operation} ${thing}: rejected ${error.code} ${error.message}`);
      this.send(topic + "/rejected", body, qos);
    }
  }

  private getPending(thing: string): JsonObject {
    const pending = this.pending(thing);
    return {
      inProgressJobs: pending.filter((execution) => execution.status === "IN_PROGRESS").map((execution) => this.summary(execution)),
      queuedJobs: pending.filter((execution) => execution.status === "QUEUED").map((execution) => this.summary(execution)),
    };
  }

  private checkDetails(details: Json | undefined): Record<string, string> | undefined {
    if (details === undefined) return undefined;
    if (!isObject(details)) throw new RequestError("InvalidRequest", "statusDetails must be an object");
    for (const [key, value] of Object.entries(details)) {
      if (!/^[a-zA-Z0-9:_-]{1,128}$/.test(key)) throw new RequestError("InvalidRequest", "Invalid statusDetails key: " + key);
      if (typeof value !== "string" || value.length === 0 || value.length > 1024) throw new RequestError("InvalidRequest", "statusDetails values must be strings of 1 to 1024 characters");
    }
    return details as Record<string, string>;
  }

  private startNext(thing: string, request: JsonObject, timestamp: number): JsonObject {
    const details = this.checkDetails(request.statusDetails);
    const next = this.pending(thing)[0];
    if (!next) return {};
    if (next.status === "QUEUED") {
      this.changing(thing, () => {
        next.status = "IN_PROGRESS";
        next.startedAt = timestamp;
        next.lastUpdatedAt = timestamp;
        next.versionNumber++;
        if (details) next.statusDetails = { ...details };
      });
    }
    return { execution: this.full(next) };
  }

  private find(thing: string, jobId: string, executionNumber: Json | undefined): JobExecution {
    const list = this.thingExecutions(thing).filter((execution) => execution.jobId === jobId);
    const number = executionNumber === undefined ? undefined : Number(executionNumber);
    const found = number === undefined ? list.at(-1) : list.find((execution) => execution.executionNumber === number);
    if (!found) throw new RequestError("ResourceNotFound", "Job execution " + jobId + " was not found for " + thing);
    return found;
  }

  private describe(thing: string, jobId: string, request: JsonObject): JsonObject {
    const includeDocument = request.includeJobDocument !== false;
    if (jobId === "$next") {
      const next = this.pending(thing)[0];
      return next ? { execution: this.full(next, includeDocument) } : {};
    }
    if (!JOB_ID.test(jobId)) throw new RequestError("InvalidRequest", "Invalid job id: " + jobId);
    const execution = this.find(thing, jobId, request.executionNumber);
    if (TERMINAL.includes(execution.status)) throw new RequestError("TerminalStateReached", "Job execution " + jobId + " is in a terminal state (" + execution.status + ")", { executionState: this.stateOf(execution) });
    return { execution: this.full(execution, includeDocument) };
  }

  private updateExecution(thing: string, jobId: string, request: JsonObject, timestamp: number): JsonObject {
    if (!JOB_ID.test(jobId)) throw new RequestError("InvalidRequest", "Invalid job id: " + jobId);
    const status = request.status;
    if (typeof status !== "string" || !DEVICE_STATUSES.includes(status)) throw new RequestError("InvalidRequest", "status must be one of IN_PROGRESS, FAILED, SUCCEEDED, REJECTED");
    const details = this.checkDetails(request.statusDetails);
    const execution = this.find(thing, jobId, request.executionNumber);
    if (request.expectedVersion !== undefined) {
      const expected = Number(request.expectedVersion);
      if (!Number.isInteger(expected)) throw new RequestError("InvalidRequest", "expectedVersion must be a number");
      if (expected !== execution.versionNumber) throw new RequestError("VersionMismatch", "The expected version " + expected + " does not match the job execution's version " + execution.versionNumber, { executionState: this.stateOf(execution) });
    }
    if (TERMINAL.includes(execution.status)) throw new RequestError("InvalidStateTransition", "Job execution " + jobId + " is " + execution.status + " and cannot become " + status, { executionState: this.stateOf(execution) });
    this.changing(thing, () => {
      execution.status = status as JobStatus;
      if (details) execution.statusDetails = { ...details };
      if (status === "IN_PROGRESS" && execution.startedAt === undefined) execution.startedAt = timestamp;
      execution.lastUpdatedAt = timestamp;
      execution.versionNumber++;
    });
    const accepted: JsonObject = {};
    if (request.includeJobExecutionState === true) accepted.executionState = this.stateOf(execution);
    if (request.includeJobDocument === true) accepted.jobDocument = clone(execution.jobDocument);
    return accepted;
  }

  private send(topic: string, body: JsonObject, qos: 0 | 1): void {
    this.publish({ topic, payload: JSON.stringify(body), qos });
  }

  /** Messages that follow a reply (deltas, documents, notifications): sent by flush(), after it. */
  private readonly followUps: ServicePublish[] = [];

  private later(topic: string, body: JsonObject): void {
    this.followUps.push({ topic, payload: JSON.stringify(body), qos: 1 });
  }

  private flush(): void {
    const messages = this.followUps.splice(0);
    for (const message of messages) this.publish(message);
  }
}

// ------------------------------------------------------------------ over MQTT

export interface AwsEmulatorOptions extends ServiceOptions {
  /** mqtts://host:port (or mqtt://). */
  url: string;
  /** MQTT.js options: TLS material (ca, cert, key), rejectUnauthorized... */
  mqtt?: IClientOptions;
  /** Default "aws-iot-emulator". */
  clientId?: string;
  /** How long after a lost connection MQTT.js tries again; default 200 ms. */
  reconnectPeriodMs?: number;
}

export interface RunningAwsEmulator {
  readonly service: AwsIotService;
  readonly client: MqttClient;
  /** Connected and subscribed to every request topic. */
  readonly ready: boolean;
  /** Connections made (the first, then one per reconnect). */
  readonly connections: number;
  /** Resolves once connected and subscribed (again, after a reconnect). */
  whenReady(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Connects to the broker, subscribes to the request topics (again after each reconnect) and serves them. */
export async function startAwsEmulator(options: AwsEmulatorOptions): Promise<RunningAwsEmulator> {
  const log = options.log ?? (() => {});
  const client = mqtt.connect(options.url, {
    clientId: options.clientId ?? "aws-iot-emulator",
    reconnectPeriod: options.reconnectPeriodMs ?? 200,
    connectTimeout: 5000,
    clean: true,
    // Subscribed here at each connect: MQTT.js's own resubscription would ask twice.
    resubscribe: false,
    ...options.mqtt,
  });
  // Published to whoever is subscribed now, as AWS does: not kept for later while the broker is away
  // (MQTT.js would queue it and deliver a delta to a device that reconnected without a session).
  const service = new AwsIotService((message) => {
    if (!client.connected) return log(`emulator: not connected, ${message.topic} not sent`);
    client.publish(message.topic, message.payload, { qos: message.qos });
  }, options);
  let ready = false;
  let connections = 0;
  const waiters = new Set<() => void>();
  client.on("error", (error) => log(`emulator: ${error.message}`));
  client.on("close", () => {
    ready = false;
  });
  client.on("connect", () => {
    connections++;
    client.subscribe([...EMULATOR_FILTERS], { qos: 1 }, (error) => {
      if (error) return log(`emulator: subscribe failed: ${error.message}`);
      ready = true;
      log(`emulator: connected and subscribed (connection ${connections})`);
      for (const wake of [...waiters]) wake();
    });
  });
  client.on("message", (topic, payload, packet) => {
    try {
      service.handle(topic, payload, packet.qos);
    } catch (error) {
      log(`emulator: ${topic}: ${(error as Error).message}`);
    }
  });
  const whenReady = (timeoutMs = 10_000): Promise<void> =>
    new Promise((done, fail) => {
      if (ready) return done();
      const timer = setTimeout(() => {
        waiters.delete(wake);
        fail(new Error(`the AWS IoT emulator did not connect to ${options.url} within ${timeoutMs} ms`));
      }, timeoutMs);
      const wake = (): void => {
        waiters.delete(wake);
        clearTimeout(timer);
        done();
      };
      waiters.add(wake);
    });
  const running: RunningAwsEmulator = {
    service,
    client,
    get ready() {
      return ready;
    },
    get connections() {
      return connections;
    },
    whenReady,
    stop: () => new Promise<void>((done) => client.end(true, {}, () => done())),
  };
  try {
    await whenReady();
  } catch (error) {
    await running.stop();
    throw error;
  }
  return running;
}

// ------------------------------------------------------------------ as a script

async function main(argv: readonly string[]): Promise<void> {
  let url = "mqtts://127.0.0.1:8883";
  let certs = "certs";
  const jobs: [string, Json][] = [];
  const templates: string[] = [];
  let thing = "iotlink-device";
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = argv[i + 1];
    if (name === "--help") {
      console.log("usage: node --import tsx tools/aws-emulator.ts [--url mqtts://127.0.0.1:8883] [--certs certs] [--thing iotlink-device] [--job id=<job document JSON>]... [--provision-template <name>]...\n(a template makes <name>-<SerialNumber> things; certificates are signed by the CA in --certs)");
      return;
    }
    if (value === undefined) throw new Error(`${name} needs a value`);
    i++;
    if (name === "--url") url = value;
    else if (name === "--certs") certs = value;
    else if (name === "--thing") thing = value;
    else if (name === "--provision-template") templates.push(value);
    else if (name === "--job") {
      const at = value.indexOf("=");
      jobs.push([value.slice(0, at), JSON.parse(value.slice(at + 1)) as Json]);
    } else throw new Error(`unknown option ${name}`);
  }
  const tls: IClientOptions = url.startsWith("mqtts:")
    ? { ca: readFileSync(join(certs, DEV_PKI_FILES.caCertificatePem)), cert: readFileSync(join(certs, DEV_PKI_FILES.deviceCertificatePem)), key: readFileSync(join(certs, DEV_PKI_FILES.deviceKeyPem)), rejectUnauthorized: true, servername: "localhost" }
    : {};
  const provisioning: FleetProvisioningOptions | undefined =
    templates.length === 0 ? undefined : { templates: Object.fromEntries(templates.map((name) => [name, {}])), issuer: { certificatePem: join(certs, DEV_PKI_FILES.caCertificatePem), keyPem: join(certs, DEV_PKI_FILES.caKeyPem) } };
  const emulator = await startAwsEmulator({ url, mqtt: tls, log: (line) => console.error(line), provisioning });
  for (const [jobId, document] of jobs) emulator.service.createJob(jobId, document, [thing]);
  console.log(`AWS IoT emulator serving Device Shadow, Jobs${provisioning ? " and fleet provisioning (" + templates.join(", ") + ")" : ""} through ${url}`);
  const stop = (): void => {
    void emulator.stop().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error: Error) => {
    console.error(`aws-emulator: ${error.message}`);
    process.exit(1);
  });
}
