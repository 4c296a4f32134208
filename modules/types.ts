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
}

/**
 * A byte stream to the broker, opened once per connection attempt. Two verbs and an opener,
 * like coreMQTT's transport interface: the host decides sockets, TLS and buffering.
 */
export interface Transport {
  open(sink: TransportSink): void;
  /** Queues bytes for sending; returns false if the link cannot take them (closed or full). */
  write(bytes: Uint8Array, offset: number, length: number): boolean;
  /** Closes the link. No sink call follows a close() the client asked for. */
  close(): void;
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

export const STATE_NAMES: readonly string[] = ["idle", "backoff", "opening", "awaiting-connack", "resubscribing", "draining", "online", "closing"];

/** What a request call returns when it was accepted. */
export const enum Accepted {
  /** Written to the transport now. */
  Sent = 0,
  /** Stored in the offline queue; it will be sent after recovery. */
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

export const ACK_STATUS_NAMES: readonly string[] = ["acknowledged", "timed out", "dropped", "refused"];

/** Request kinds, as stored in the queue and reported by `drop` events. */
export const enum RequestKind {
  Publish = 0,
  Subscribe = 1,
  Unsubscribe = 2,
}

export const REQUEST_KIND_NAMES: readonly string[] = ["publish", "subscribe", "unsubscribe"];

/** Offline queue drop policies, with the AWS IoT Python SDK's constant values. */
export const DROP_OLDEST = 0;
export const DROP_NEWEST = 1;

/** CONNACK return codes of MQTT 3.1.1 (section 3.2.2.3), by code. */
export const CONNACK_NAMES: readonly string[] = [
  "accepted",
  "unacceptable protocol version",
  "identifier rejected",
  "server unavailable",
  "bad user name or password",
  "not authorized",
];

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
  /** Plain TCP, no TLS: only when the user asked for it in so many words. */
  plaintext?: boolean;
}

/** What a host provides: time, and a way to reach an endpoint. */
export interface Platform {
  /** A new Clock for one client: a Clock serves one client, whose single timer it re-arms. */
  createClock(): Clock;
  createTransport(endpoint: EndpointSettings): Transport;
}
