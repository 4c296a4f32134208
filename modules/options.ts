// Every client option: its check and its default, in one place. resolveOptions() turns what the user
// gave into the settings the other modules are built from, or throws an invalid-argument error
// naming the first problem. Runs once, at construction.

import { Backoff, type BackoffSettings, MAX_DELAY_MS } from "./backoff";
import { type ConnectFields, connectRemaining, packetSize, type Payload, payloadLength } from "./packet";
import { MAX_STRING_BYTES, mqttStringProblem, topicNameProblem, writeUtf8 } from "./topic";
import { type Clock, DROP_NEWEST, DROP_OLDEST, invalid, type QueueStore, shown, type Transport, unknownNameProblem, wholeNumber, wholeNumberProblem } from "./types";

export interface WillSettings {
  topic: string;
  payload: Payload;
  qos?: number;
  retain?: boolean;
}

export interface ClientOptions {
  clientId: string;
  transport: Transport;
  clock: Clock;
  cleanSession?: boolean;
  /** Seconds between keep-alive probes when idle; 0 turns keep-alive off. Default 60. */
  keepAliveSeconds?: number;
  username?: string;
  password?: Payload;
  will?: WillSettings;
  /** Time allowed for TCP + TLS + CONNACK, and for a disconnect to drain. Default 30000. */
  connectTimeoutMs?: number;
  /** Time after which an unacknowledged request is reported late, counted from its write. Default 5000. */
  operationTimeoutMs?: number;
  /** Reconnect delays. Default base 1000, max 32000, stable 20000, no jitter. */
  backoff?: Partial<BackoffSettings>;
  /** Offline queue: entry limit (0 disables queueing), byte size, drop policy. Defaults 64, 8192, DROP_NEWEST. */
  queueEntries?: number;
  queueBytes?: number;
  dropPolicy?: number;
  /** Unacknowledged requests on the wire at once (1 to 100), and the bytes kept for them. Defaults 10, 4096. */
  inflightWindow?: number;
  inflightBytes?: number;
  /** Interval between two drained requests after a reconnect. Default 500 (2 Hz). */
  drainIntervalMs?: number;
  /** Largest packet sent or received, in bytes. Default 2048. */
  maxPacketBytes?: number;
  /** Subscriptions remembered for re-subscription (1 to 1000). Default 16. */
  maxSubscriptions?: number;
  /**
   * Persists the offline queue (an opened storage Journal, or any QueueStore): each request that
   * enters the queue is appended before the call returns, and the records left at construction are
   * loaded into the queue. Requests sent at once are never written. Needs queueing on.
   */
  persist?: QueueStore;
}

/** What the client is built from: every option checked, every default filled in. */
export interface Settings {
  transport: Transport;
  clock: Clock;
  connectFields: ConnectFields;
  keepAliveMs: number;
  connectTimeoutMs: number;
  operationTimeoutMs: number;
  drainIntervalMs: number;
  maxPacketBytes: number;
  dropPolicy: number;
  backoff: Backoff;
  queueEntries: number;
  queueBytes: number;
  inflightWindow: number;
  inflightBytes: number;
  maxSubscriptions: number;
  persist: QueueStore | undefined;
}

/** The smallest request, a QoS 0 PUBLISH to a one-byte topic with no payload: a queue of fewer bytes could hold nothing. */
export const SMALLEST_REQUEST_BYTES = 5;

/** The largest packet either way when maxPacketBytes is not given. */
export const DEFAULT_MAX_PACKET_BYTES = 2048;

/**
 * At most this many requests in flight: AWS IoT Core allows 100 unacknowledged QoS 1 messages, and
 * with the resubscription batches (at most MAX_SUBSCRIPTIONS) well under 65535, a free packet id always exists.
 */
export const MAX_INFLIGHT_WINDOW = 100;
export const MAX_SUBSCRIPTIONS = 1000;

/** The names the constructor reads (in ClientOptions, BackoffSettings and WillSettings): any other is refused as a likely typo. */
const OPTION_NAMES = "clientId, transport, clock, cleanSession, keepAliveSeconds, username, password, will, connectTimeoutMs, operationTimeoutMs, backoff, queueEntries, queueBytes, dropPolicy, inflightWindow, inflightBytes, drainIntervalMs, maxPacketBytes, maxSubscriptions, persist";
const BACKOFF_SETTINGS = "baseMs, maxMs, stableMs, jitter, maxAttempts, random, seed";
const WILL_FIELDS = "topic, payload, qos, retain";

export function checkOptionalFunction(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== "function") throw invalid(name + " must be a function");
}

export function checkQos(qos: unknown): void {
  if (qos !== 0 && qos !== 1) throw invalid("qos must be 0 or 1 (QoS 2 is not supported), got " + shown(qos));
}

/** A payload as the encoder takes it: an ArrayBuffer is viewed as bytes, anything else passes through for checking. */
export function toPayload(payload: unknown): Payload {
  return payload instanceof ArrayBuffer ? new Uint8Array(payload) : (payload as Payload);
}

/** What is wrong with a payload (after toPayload), or "". */
export function payloadProblem(payload: unknown): string {
  if (typeof payload === "string") return payloadLength(payload) < 0 ? "payload text is not valid UTF-8 (lone surrogate)" : "";
  return payload instanceof Uint8Array ? "" : "payload must be a Uint8Array, an ArrayBuffer or a string";
}

/** What is wrong with binary data for a CONNECT field (a password, a will payload), or "": its length prefix holds 65535 bytes. */
export function connectBinaryProblem(value: unknown): string {
  const bytes = toPayload(value);
  return payloadProblem(bytes) || (payloadLength(bytes) > MAX_STRING_BYTES ? "payload of " + payloadLength(bytes) + " bytes is over the " + MAX_STRING_BYTES + " a CONNECT field can carry" : "");
}

/** What is wrong with a last will, or "": the constructor's check, which the facade makes at configureLastWill(). */
export function willProblem(will: unknown): string {
  if (typeof will !== "object" || will === null) return "will must be an object with topic and payload";
  const { topic, payload, qos, retain } = will as WillSettings;
  const problem = unknownNameProblem("field", will, WILL_FIELDS) || topicNameProblem(topic) || connectBinaryProblem(payload)
    || wholeNumberProblem("qos", qos === undefined ? 0 : qos, 0, 1)
    || (retain !== undefined && typeof retain !== "boolean" ? "retain must be a boolean, got " + shown(retain) : "");
  return problem === "" ? "" : "will: " + problem;
}

/** A private copy of configuration bytes (text as UTF-8), taken once at construction. */
function bytesOf(payload: Payload): Uint8Array {
  if (typeof payload !== "string") return payload.slice();
  const bytes = new Uint8Array(payloadLength(payload));
  writeUtf8(payload, bytes, 0);
  return bytes;
}

/** What is wrong with a QueueStore given as `persist`, or "". */
export function queueStoreProblem(store: unknown): string {
  const s = store as QueueStore;
  if (typeof store !== "object" || store === null || typeof s.seqAt !== "function" || typeof s.lengthAt !== "function" || typeof s.readAt !== "function" || typeof s.append !== "function" || typeof s.acknowledge !== "function") {
    return "persist must be a QueueStore (an opened Journal): count, maxPayloadBytes, seqAt(index), lengthAt(index), readAt(index, into), append(bytes, offset, length), acknowledge(seq)";
  }
  return wholeNumberProblem("persist.count", s.count, 0, 0x7fffffff) || wholeNumberProblem("persist.maxPayloadBytes", s.maxPayloadBytes, 0, 0x7fffffff);
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

function throwIf(problem: string): void {
  if (problem !== "") throw invalid(problem);
}

/** The options checked and completed, or an invalid-argument error naming the first problem. */
export function resolveOptions(options: ClientOptions): Settings {
  if (typeof options !== "object" || options === null) throw invalid("options must be an object");
  throwIf(unknownNameProblem("option", options, OPTION_NAMES));
  const { transport, clock } = options;
  if (!transport || typeof transport.open !== "function" || typeof transport.write !== "function" || typeof transport.end !== "function" || typeof transport.abort !== "function") {
    throw invalid("transport must implement open(sink), write(bytes, offset, length), end() and abort()");
  }
  if (!clock || typeof clock.now !== "function" || typeof clock.setTimer !== "function" || typeof clock.clearTimer !== "function") {
    throw invalid("clock must implement now(), setTimer(delayMs, callback) and clearTimer()");
  }
  const now = clock.now();
  if (typeof now !== "number" || !Number.isFinite(now)) throw invalid("clock.now() must return milliseconds as a finite number, got " + shown(now));

  const clientId = options.clientId;
  throwIf(mqttStringProblem("clientId", clientId));
  const cleanSession = options.cleanSession ?? true;
  if (typeof cleanSession !== "boolean") throw invalid("cleanSession must be a boolean");
  if (clientId === "" && !cleanSession) throw invalid("an empty clientId requires cleanSession (MQTT 3.1.1 section 3.1.3.1)");

  const keepAliveSeconds = wholeNumber("keepAliveSeconds", options.keepAliveSeconds ?? 60, 0, 65535);
  const maxPacketBytes = wholeNumber("maxPacketBytes", options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES, 16, 268435460);

  const backoffOptions = options.backoff ?? {};
  if (typeof backoffOptions !== "object") throw invalid("backoff must be an object");
  throwIf(unknownNameProblem("backoff setting", backoffOptions, BACKOFF_SETTINGS));
  const backoff = new Backoff({
    baseMs: backoffOptions.baseMs ?? 1000,
    maxMs: backoffOptions.maxMs ?? 32000,
    stableMs: backoffOptions.stableMs ?? 20000,
    jitter: backoffOptions.jitter,
    maxAttempts: backoffOptions.maxAttempts,
    random: backoffOptions.random,
    seed: backoffOptions.seed,
  });
  // Devices sharing firmware must not retry in step: mix the client id into the default seed.
  if (backoffOptions.seed === undefined) backoff.seed((fnv1a(clientId) ^ now) >>> 0);

  const connectFields: ConnectFields = { clientId, cleanSession, keepAliveSeconds };
  if (options.username !== undefined) {
    throwIf(mqttStringProblem("username", options.username));
    connectFields.username = options.username;
  }
  if (options.password !== undefined) {
    if (options.username === undefined) throw invalid("password needs a username (MQTT 3.1.1 section 3.1.2.9)");
    const problem = connectBinaryProblem(options.password);
    if (problem !== "") throw invalid("password: " + problem);
    connectFields.password = bytesOf(toPayload(options.password));
  }
  if (options.will !== undefined) {
    const will = options.will;
    throwIf(willProblem(will));
    connectFields.willTopic = will.topic;
    connectFields.willPayload = bytesOf(toPayload(will.payload));
    connectFields.willQos = will.qos ?? 0;
    connectFields.willRetain = will.retain === true;
  }
  if (packetSize(connectRemaining(connectFields)) > maxPacketBytes) throw invalid("CONNECT (client id, will, credentials) exceeds maxPacketBytes");

  const queueEntries = wholeNumber("queueEntries", options.queueEntries ?? 64, 0, 65535);
  const queueBytes = wholeNumber("queueBytes", options.queueBytes ?? (queueEntries === 0 ? 0 : 8192), 0, MAX_DELAY_MS);
  if ((queueEntries === 0) !== (queueBytes === 0)) throw invalid("queueEntries and queueBytes must both be 0 (queueing disabled) or both above 0");
  if (queueBytes > 0 && queueBytes < SMALLEST_REQUEST_BYTES) throw invalid("queueBytes must be at least " + SMALLEST_REQUEST_BYTES + " (the smallest request) when queueing, got " + queueBytes);
  const persist = options.persist;
  if (persist !== undefined) {
    throwIf(queueStoreProblem(persist));
    if (queueEntries === 0) throw invalid("persist needs the offline queue: queueEntries above 0");
    // A request that entered the queue must fit one record, or it could not be stored.
    const largest = Math.min(maxPacketBytes, queueBytes);
    if (persist.maxPayloadBytes < largest) throw invalid("persist takes records of at most " + persist.maxPayloadBytes + " bytes, but a queued request may have " + largest + " (the smaller of maxPacketBytes and queueBytes): give the store a larger maxPayloadBytes or lower maxPacketBytes");
  }

  return {
    transport,
    clock,
    connectFields,
    keepAliveMs: keepAliveSeconds * 1000,
    connectTimeoutMs: wholeNumber("connectTimeoutMs", options.connectTimeoutMs ?? 30000, 1, MAX_DELAY_MS),
    operationTimeoutMs: wholeNumber("operationTimeoutMs", options.operationTimeoutMs ?? 5000, 1, MAX_DELAY_MS),
    drainIntervalMs: wholeNumber("drainIntervalMs", options.drainIntervalMs ?? 500, 0, MAX_DELAY_MS),
    maxPacketBytes,
    dropPolicy: wholeNumber("dropPolicy (DROP_OLDEST = 0, DROP_NEWEST = 1)", options.dropPolicy ?? DROP_NEWEST, DROP_OLDEST, DROP_NEWEST),
    backoff,
    queueEntries,
    queueBytes,
    inflightWindow: wholeNumber("inflightWindow", options.inflightWindow ?? 10, 1, MAX_INFLIGHT_WINDOW),
    inflightBytes: wholeNumber("inflightBytes", options.inflightBytes ?? Math.max(4096, maxPacketBytes), maxPacketBytes, MAX_DELAY_MS),
    maxSubscriptions: wholeNumber("maxSubscriptions", options.maxSubscriptions ?? 16, 1, MAX_SUBSCRIPTIONS),
    persist,
  };
}
