// The contracts between the portable core and its host, and every named outcome. Nothing here
// touches a host API: the Moddable host and the desktop simulation both implement these.

/** What the transport tells the client. The client owns exactly one sink for its whole life. */
export interface TransportSink {
  /** The secure link is up (TCP and TLS done): the client sends CONNECT. */
  onTransportConnected(): void;
  /** Bytes arrived. `bytes` is only valid during the call: the client copies what it keeps. */
  onTransportData(bytes: Uint8Array, offset: number, length: number): void;
  /** The link is gone, for any reason (peer close, error, TLS failure). Called at most once per open(). */
  onTransportClosed(reason: string): void;
  /** A write() was refused for lack of room, and the transport has room again: the client writes what waits. */
  onTransportWritable(): void;
}

/**
 * Packets of at most this many bytes (PUBACK, PINGREQ, DISCONNECT) are control packets: a transport
 * keeps a small reserve for them, so it takes them even when it refuses larger writes for lack of room.
 */
export const CONTROL_PACKET_BYTES = 4;

/**
 * A byte stream to the broker, opened once per connection attempt. Two verbs and an opener,
 * like coreMQTT's transport interface: the host decides sockets, TLS and buffering.
 */
export interface Transport {
  /** Opens a new link for `sink`; a link still open from an earlier open() is aborted first. */
  open(sink: TransportSink): void;
  /**
   * Takes all the bytes for sending (copying them) and returns true, or takes none and returns false
   * when it has no room for them now; after a refusal it calls `sink.onTransportWritable()` once it
   * has room. A false never means the link is gone: that is only ever reported by `onTransportClosed`.
   * Writes of at most CONTROL_PACKET_BYTES should be taken even then, from a small reserve: the
   * client gives the link up when one is refused (the broker has stopped reading).
   */
  write(bytes: Uint8Array, offset: number, length: number): boolean;
  /**
   * Ends the link gracefully: every byte write() took goes out first, then the link closes, and the
   * transport reports it with `sink.onTransportClosed()`. Later writes are refused. The client bounds
   * how long it waits, and calls abort() if the bytes do not drain in time.
   */
  end(): void;
  /** Closes the link now, discarding bytes not yet sent. No sink call follows. */
  abort(): void;
}

/**
 * Integer milliseconds and a single timer. `now()` may wrap at 2^32: the client only compares
 * differences, so wrap-around is harmless as long as no interval exceeds 2^31 ms (24 days).
 */
export interface Clock {
  now(): number;
  /** Arms the one timer, replacing any armed one. */
  setTimer(delayMs: number, onTimer: () => void): void;
  clearTimer(): void;
}

/**
 * A layer above the client (Shadow, Jobs) whose deadlines share the client's one timer. Times are the
 * client clock's milliseconds; the client calls `onDeadline` when its timer fires at or after the
 * deadline `nextDeadline` gave, after its own work for that wake-up is done.
 */
export interface TimerUser {
  /** Milliseconds from `now` to the user's next deadline (0: due), or -1 when it has none. */
  nextDeadline(now: number): number;
  onDeadline(now: number): void;
}

/** Session states, in the order a healthy connection passes through them. */
export const enum State {
  /** Never connected, or disconnect() was called. */
  Idle = 0,
  /** Waiting out the backoff delay before the next attempt. */
  Backoff = 1,
  /** Transport opening (TCP + TLS). */
  Opening = 2,
  /** CONNECT sent, waiting for CONNACK. */
  AwaitingConnack = 3,
  /** CONNACK accepted; re-sending subscriptions and unacknowledged publishes. */
  Resubscribing = 4,
  /** Replaying the offline queue at the drain rate. */
  Draining = 5,
  /** Fully restored: requests go straight to the wire. */
  Online = 6,
  /** DISCONNECT written, closing. */
  Closing = 7,
}

// Tables are frozen: a preloaded module lives in flash, where only frozen objects stay put.
export const STATE_NAMES: readonly string[] = Object.freeze(["idle", "backoff", "opening", "awaiting-connack", "resubscribing", "draining", "online", "closing"]);

/** What a request call returns when it was accepted. */
export const enum Accepted {
  /** Written to the transport now. */
  Sent = 0,
  /** Kept to be sent later: in the offline queue until recovery (or a free in-flight slot), or waiting
   *  for room in the transport (then it goes out, in order, as soon as the transport can take it). */
  Queued = 1,
  /** Not accepted: the queue was full under DROP_NEWEST. A `drop` event reported it too. */
  Dropped = 2,
}

/** Outcome passed to a request's acknowledgement callback. */
export const enum AckStatus {
  /** PUBACK / SUBACK / UNSUBACK received. */
  Acknowledged = 0,
  /** No acknowledgement within the operation timeout. The request is still in flight and will be
   *  re-sent after a reconnect: do not publish it again. A later acknowledgement is counted in stats. */
  TimedOut = 1,
  /** Removed from the offline queue by the drop policy before it was sent. */
  Dropped = 2,
  /** The broker refused a subscription (SUBACK 0x80). */
  Refused = 3,
}

export const ACK_STATUS_NAMES: readonly string[] = Object.freeze(["acknowledged", "timed out", "dropped", "refused"]);

/** Request kinds, as stored in the queue and reported by `drop` events. */
export const enum RequestKind {
  Publish = 0,
  Subscribe = 1,
  Unsubscribe = 2,
}

export const REQUEST_KIND_NAMES: readonly string[] = Object.freeze(["publish", "subscribe", "unsubscribe"]);

/** Offline queue drop policies, with the AWS IoT Python SDK's constant values. */
export const DROP_OLDEST = 0;
export const DROP_NEWEST = 1;

/** CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3), by code. */
export const CONNACK_NAMES: readonly string[] = Object.freeze([
  "accepted",
  "unacceptable protocol version",
  "identifier rejected",
  "server unavailable",
  "bad user name or password",
  "not authorized",
]);

export function connackName(code: number): string {
  return code < CONNACK_NAMES.length ? CONNACK_NAMES[code] : "unknown return code " + code;
}

/** Error codes carried by IoTLinkError and by `error` events. */
export const enum ErrorCode {
  /** An argument or setting is invalid; thrown at the call. */
  InvalidArgument = "invalid-argument",
  /** The request cannot be accepted now (offline with queueing disabled, table full, too large). */
  NotAccepted = "not-accepted",
  /** The broker broke the protocol, or sent more than the configured maximum. */
  Protocol = "protocol-error",
  /** CONNACK with a non-zero return code. */
  ConnectionRefused = "connection-refused",
  /** The link closed or failed before CONNACK. */
  ConnectFailed = "connect-failed",
  /** No CONNACK within the connect timeout. */
  ConnectTimeout = "connect-timeout",
  /** No PINGRESP in time: the link is dead. */
  KeepAliveTimeout = "keepalive-timeout",
  /** The broker refused a subscription. */
  SubscriptionRefused = "subscription-refused",
  /** A user callback threw; the client carried on. */
  Callback = "callback-error",
  /** The attempt limit was reached; the client stopped reconnecting. */
  GaveUp = "gave-up",
  /** An inbound message larger than maxPacketBytes was skipped (acknowledged if QoS 1); the link stays up. */
  MessageTooLarge = "message-too-large",
  /** The broker did not answer the resubscription after a reconnect within the operation timeout. */
  ResubscribeTimeout = "resubscribe-timeout",
  /** disconnect() could not send what the transport held within the connect timeout: the link was aborted. */
  DisconnectTimeout = "disconnect-timeout",
  /**
   * The persist store (options.persist): a record that is not a valid request was dropped from it at
   * construction, or an acknowledgement could not be written (the request is then sent again after a reboot).
   */
  Store = "store-error",
}

export class IoTLinkError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
    // Not `this.name = ...`: Moddable freezes the built-ins, and assigning over the read-only
    // inherited Error.prototype.name throws there ("set name: not writable").
    Object.defineProperty(this, "name", { value: "IoTLinkError", writable: true, enumerable: true, configurable: true });
  }
}

export function invalid(message: string): IoTLinkError {
  return new IoTLinkError(ErrorCode.InvalidArgument, message);
}

/** A value as an error message shows it: text quoted, so that "8883" does not read as the number 8883. */
export function shown(value: unknown): string {
  if (typeof value === "string") return "\"" + value + "\"";
  if (typeof value === "function") return "a function";
  return typeof value === "object" && value !== null ? "an object" : String(value);
}

/** Why `value` is not a whole number from `min` to `max`, naming it `name`; "" when it is one. */
export function wholeNumberProblem(name: string, value: unknown, min: number, max: number): string {
  return typeof value === "number" && Number.isInteger(value) && value >= min && value <= max ? "" : name + " must be a whole number from " + min + " to " + max + ", got " + shown(value);
}

/**
 * Names the first enumerable key of `object` that is not one of `names` (", "-separated), or "": a
 * misspelt setting would otherwise be ignored without a word.
 */
export function unknownNameProblem(what: string, object: object, names: string): string {
  for (const key in object) {
    if ((", " + names + ", ").indexOf(", " + key + ", ") < 0) return "unknown " + what + " " + key + "; the " + what + "s are " + names;
  }
  return "";
}

/** `value`, checked by wholeNumberProblem(); an invalid-argument error otherwise. */
export function wholeNumber(name: string, value: unknown, min: number, max: number): number {
  const problem = wholeNumberProblem(name, value, min, max);
  if (problem !== "") throw invalid(problem);
  return value as number;
}

/**
 * Whether `text` has `min` to `max` characters, each a letter, a digit or one of `punctuation`.
 * A loop rather than a RegExp kept in a module: XS 13 (Moddable SDK 8.2.3) gives a preloaded
 * RegExp's exec scratch memory from malloc where the collector expects one of its chunks, and a
 * compacting collection during the exec then corrupts the heap (xsre.c, fxAllocateRegExpData). A
 * pattern literal written inside a function is made at run time and is safe.
 */
export function isWordOf(text: string, min: number, max: number, punctuation: string): boolean {
  const length = text.length;
  if (length < min || length > max) return false;
  for (let i = 0; i < length; i++) {
    const code = text.charCodeAt(i);
    if ((code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a)) continue;
    if (punctuation.indexOf(text[i]) < 0) return false;
  }
  return true;
}

/** Where and how to connect: what a host needs to build a Transport. */
export interface EndpointSettings {
  host: string;
  port: number;
  /** TLS server name to verify; defaults to `host`. */
  serverName?: string;
  /** ALPN protocols, e.g. ["x-amzn-mqtt-ca"] for AWS IoT Core on port 443. */
  alpn?: string[];
  /** Resource names (flash) of the CA certificate, the device certificate and its private key (DER). */
  caResource?: string;
  certificateResource?: string;
  keyResource?: string;
  /**
   * The device certificate and its unencrypted PKCS#8 key as DER bytes, instead of resources: an
   * identity obtained at run time (fleet provisioning) and kept in flash storage. Together, and not
   * with certificateResource/keyResource.
   */
  certificate?: Uint8Array;
  key?: Uint8Array;
  /**
   * Whether a reconnect may resume the TLS session (default true). Moddable keeps one session per
   * server name, whatever the client certificate: false for a connection whose certificate the next
   * one to that server will not present (fleet provisioning's claim connection), which it would
   * otherwise resume as the claim.
   */
  resumeTlsSessions?: boolean;
  /** Plain TCP, no TLS: only when the user asked for it in so many words. */
  plaintext?: boolean;
}

/** AWS credentials for SigV4: an IAM user's keys, or temporary (STS) keys with their session token. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  /** Never shown: no error, event or trace carries it. */
  readonly secretAccessKey: string;
  /** Temporary credentials only; absent or "" for none. Never shown either. */
  readonly sessionToken?: string;
}

/** Where MQTT over WebSocket connects: TLS that checks the server only (the CA alone, no client certificate). */
export interface WebSocketEndpoint {
  host: string;
  /** 443 when absent. */
  port?: number;
  /** TLS server name to verify, and the Host the URL is signed for; defaults to `host`. */
  serverName?: string;
  /** Resource name (flash) of the CA certificate (DER): Amazon Root CA 1 for AWS IoT Core. */
  caResource: string;
  /** ALPN protocols, rarely needed (never "x-amzn-mqtt-ca", which is MQTT without WebSocket). */
  alpn?: string[];
}

/** How MQTT over WebSocket signs in: SigV4, signed anew at every connection attempt. */
export interface WebSocketTransportOptions {
  /** The credentials, or a function called at every connection attempt for the current ones (rotated STS keys). */
  credentials: AwsCredentials | (() => AwsCredentials);
  /** The SigV4 region; taken from an AWS IoT endpoint's host (`<id>-ats.iot.<region>.amazonaws.com`) when absent. */
  region?: string;
  /** The client's maxPacketBytes: bounds the frames and the buffers. */
  maxPacketBytes: number;
  /** A clock before this (epoch ms) is refused instead of signed: default 2024-01-01. */
  clockFloorMs?: number;
  /** The time of day in epoch ms, for signing (default Date.now). */
  now?: () => number;
}

/** append(): the store has no room for the record; nothing was written. */
export const QUEUE_STORE_FULL = -1;

/**
 * Where the offline queue is persisted (the client option `persist`): a log of records, each the
 * encoded request as it was queued, under an increasing sequence number. Its names are the
 * storage Journal's (modules/storage/journal.ts), so an opened Journal is one. The client appends a
 * request when it enters the offline queue and acknowledges it when it is done with it (written,
 * acknowledged by the broker, or dropped); at construction it loads the records still there.
 */
export interface QueueStore {
  /** Records appended and not acknowledged. */
  readonly count: number;
  /** The largest record append() takes: the client checks at construction that its largest queued request fits. */
  readonly maxPayloadBytes: number;
  /** The sequence number of the index-th record, oldest first (1 to 4294967295). */
  seqAt(index: number): number;
  lengthAt(index: number): number;
  /** Copies the index-th record into `into[0 .. length)`; returns its length. */
  readAt(index: number, into: Uint8Array): number;
  /** Stores `bytes[offset .. offset + length)` before it returns: its sequence number (larger than any before), or QUEUE_STORE_FULL with nothing written. */
  append(bytes: Uint8Array, offset: number, length: number): number;
  /** Removes the record `seq` (false if it holds none), for good once this returns. */
  acknowledge(seq: number): boolean;
}

/** What a host provides: time, and a way to reach an endpoint. */
export interface Platform {
  /** A new Clock for one client: a Clock serves one client, whose single timer it re-arms. */
  createClock(): Clock;
  /** A transport that can take any packet up to `largestPacketBytes` (the client's maxPacketBytes). */
  createTransport(endpoint: EndpointSettings, largestPacketBytes?: number): Transport;
  /**
   * MQTT over WebSocket with SigV4 (AWS IoT Core on port 443), where the host has it: on Moddable,
   * `moddableWebSocketPlatform` of hosts/moddable/websocket.ts (manifest_websocket.json).
   */
  createWebSocketTransport?(endpoint: WebSocketEndpoint, options: WebSocketTransportOptions): Transport;
}

/** What is wrong with a host name or address, or "": a URL or a host:port given here is a common slip. */
export function hostProblem(name: string, host: unknown): string {
  if (typeof host !== "string" || host.length === 0) return name + " must be a non-empty string";
  // One colon is a port; an IPv6 address has several.
  return /[\s/]/.test(host) || /^[^:]*:[^:]*$/.test(host) ? name + " must be a bare host name or address (no scheme, port, path or spaces), got " + shown(host) : "";
}
