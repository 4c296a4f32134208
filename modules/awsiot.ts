// AWSIoTMQTTClient: the AWS IoT Device SDK for Python v1's names and defaults, mapped onto
// MqttClient. Settings are collected by the configure* calls and fixed when connect() first builds
// the client; where the Python SDK is defective this facade does what its README says instead.

import { MAX_DELAY_MS } from "./backoff";
import { checkOptionalFunction, checkQos, type ClientOptions, connectBinaryProblem, DEFAULT_MAX_PACKET_BYTES, type InboundMessage, MqttClient, queueStoreProblem, SMALLEST_REQUEST_BYTES, type WillSettings, willProblem } from "./client";
// A SUBACK's code for a refused filter: what subscribeAsync reports for any failed subscribe, as in Python.
import { SUBACK_FAILURE } from "./subscriptions";
import { type Payload, payloadLength } from "./packet";
import { DEFAULT_CLOCK_FLOOR_MS, presignMqttUrl, type SigV4Crypto } from "./sigv4";
import { mqttStringProblem, utf8Length } from "./topic";
import {
  Accepted,
  ACK_STATUS_NAMES,
  AckStatus,
  type AwsCredentials,
  DROP_NEWEST,
  DROP_OLDEST,
  type EndpointSettings,
  ErrorCode,
  invalid,
  IoTLinkError,
  hostProblem,
  type Platform,
  type QueueStore,
  shown,
  type Transport,
  wholeNumber,
  wholeNumberProblem,
} from "./types";

export { DROP_NEWEST, DROP_OLDEST };

export const MQTTv3_1_1 = 4;
export const SDK_NAME = "IoTLink";
export const SDK_VERSION = "0.1.0";
/** AWS IoT Core refuses larger message payloads (and closes the connection). */
export const AWS_MAX_PAYLOAD_BYTES = 131072;
/** AWS IoT Core refuses longer topic names and filters (UTF-8 bytes). */
export const AWS_MAX_TOPIC_BYTES = 256;
/** The largest PUBLISH AWS IoT Core can take: fixed header, a 256-byte topic, packet id, 128 KB payload. */
export const AWS_MAX_PACKET_BYTES = 5 + 2 + AWS_MAX_TOPIC_BYTES + 2 + AWS_MAX_PAYLOAD_BYTES;
/** AWS IoT Core's port for MQTT over WebSocket. */
export const WEBSOCKET_PORT = 443;

/** The signer's checks without its work (its crypto stubbed): for checking credentials at the call. */
const CHECK_ONLY: SigV4Crypto = Object.freeze({
  sha256Hex(): string {
    return "";
  },
  hmacSha256(): Uint8Array {
    return new Uint8Array(0);
  },
});
/** A host the signer takes, for checking credentials and a region before the endpoint is known. */
const PLACEHOLDER_HOST = "example-ats.iot.us-east-1.amazonaws.com";

/** What the SigV4 signer says of these inputs (never their secret parts), or "". */
function sigv4Problem(accessKeyId: string, secretAccessKey: string, sessionToken: string | undefined, region: string | undefined): string {
  try {
    presignMqttUrl({ host: PLACEHOLDER_HOST, region, accessKeyId, secretAccessKey, sessionToken, nowMs: DEFAULT_CLOCK_FLOOR_MS }, CHECK_ONLY);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  return "";
}

/** The message object handed to Python-style callbacks (the payload is a copy the callee may keep). */
export interface AWSIoTMessage {
  topic: string;
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  mid: number;
}

export type AWSIoTMessageCallback = (client: AWSIoTMQTTClientCore, userdata: null, message: AWSIoTMessage) => void;


/** Seconds as whole milliseconds, at least 1 ms and within the timer's range. */
function positiveSeconds(name: string, value: unknown): number {
  const ms = typeof value === "number" ? Math.round(value * 1000) : Number.NaN;
  if (!(ms >= 1 && ms <= MAX_DELAY_MS)) throw invalid(name + " must be a number of seconds from 0.001 to 2147483, got " + shown(value));
  return ms;
}

/** A handler, or undefined for none (null too, as Python's None). */
function handlerOrNone<T>(name: string, handler: T | null | undefined): T | undefined {
  if (handler === null) return undefined;
  checkOptionalFunction(name, handler);
  return handler;
}

function copyMessage(message: InboundMessage): AWSIoTMessage {
  return { topic: message.topic, payload: message.payload.slice(), qos: message.qos, retain: message.retain, mid: message.packetId };
}

/** AWS IoT Core's topic limit, checked at the call (the client checks the rest of the topic). */
function checkAwsTopic(topic: string): void {
  // A UTF-16 unit takes at most 3 UTF-8 bytes: short topics need no count on each publish.
  const bytes = typeof topic === "string" && topic.length * 3 > AWS_MAX_TOPIC_BYTES ? utf8Length(topic) : 0;
  if (bytes > AWS_MAX_TOPIC_BYTES) throw invalid("topic of " + bytes + " bytes is over AWS IoT Core's limit of " + AWS_MAX_TOPIC_BYTES + " bytes");
}

/** AWS IoT Core's payload limit, checked at the call (the client's own limit is maxPacketBytes). */
function checkAwsPayload(payload: Payload | ArrayBuffer): void {
  const bytes = payload instanceof ArrayBuffer ? payload.byteLength : typeof payload === "string" || payload instanceof Uint8Array ? payloadLength(payload) : 0;
  if (bytes > AWS_MAX_PAYLOAD_BYTES) throw invalid("payload of " + bytes + " bytes is over AWS IoT Core's limit of " + AWS_MAX_PAYLOAD_BYTES + " bytes (128 KB)");
}

/** A connect() whose outcome is not known yet: a second connect() meanwhile gets the same Promise. */
interface PendingConnect {
  promise: Promise<boolean>;
  resolve: (value: boolean) => void;
  reject: (error: Error) => void;
}

/**
 * The facade over a host Platform; each host exports a subclass that supplies its platform, so
 * user code constructs it exactly as in Python: new AWSIoTMQTTClient("clientId").
 */
export class AWSIoTMQTTClientCore {
  static readonly DROP_OLDEST = DROP_OLDEST;
  static readonly DROP_NEWEST = DROP_NEWEST;

  private onlineHandler: (() => void) | undefined;
  private offlineHandler: (() => void) | undefined;
  private messageHandler: ((message: AWSIoTMessage) => void) | undefined;
  private errorHandler: ((error: IoTLinkError) => void) | undefined;

  private readonly platform: Platform;
  private readonly options: Partial<ClientOptions> & { clientId: string };
  /** useWebsocket: MQTT over WebSocket with SigV4 (the CA alone, IAM credentials, port 443). */
  private readonly websocket: boolean;
  /** configureIAMCredentials's, read at every connection attempt (a later call rotates them). */
  private iam: AwsCredentials | undefined;
  private region: string | undefined;
  private endpoint: EndpointSettings | undefined;
  private plaintextAllowed = false;
  private username: string | undefined;
  private metrics = true;
  private client: MqttClient | undefined;
  private pendingConnect: PendingConnect | undefined;
  /** connectAsync callbacks waiting for the outcome of the attempt under way. */
  private connectAcks: ((mid: number, returnCode: number) => void)[] = [];
  /** disconnectAsync callbacks (and disconnect() Promises) waiting for the link to close. */
  private disconnectAcks: ((mid: number, data: number) => void)[] = [];

  constructor(platform: Platform, clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true) {
    const idProblem = clientID === "" ? "clientID must not be empty" : mqttStringProblem("clientID", clientID);
    if (idProblem !== "") throw invalid(idProblem);
    if (protocolType !== MQTTv3_1_1) throw invalid("only MQTT 3.1.1 (protocolType 4) is supported");
    if (typeof useWebsocket !== "boolean") throw invalid("useWebsocket must be a boolean, got " + shown(useWebsocket));
    if (typeof cleanSession !== "boolean") throw invalid("cleanSession must be a boolean");
    this.platform = platform;
    this.websocket = useWebsocket;
    this.options = { clientId: clientID, cleanSession, keepAliveSeconds: 600, queueEntries: 256, queueBytes: 32768, dropPolicy: DROP_NEWEST };
  }

  /** Called with no arguments when the client comes online / goes offline. */
  get onOnline(): (() => void) | undefined {
    return this.onlineHandler;
  }
  set onOnline(handler: (() => void) | undefined) {
    this.onlineHandler = handlerOrNone("onOnline", handler);
  }
  get onOffline(): (() => void) | undefined {
    return this.offlineHandler;
  }
  set onOffline(handler: (() => void) | undefined) {
    this.offlineHandler = handlerOrNone("onOffline", handler);
  }
  /** Called for every inbound message. If it throws, the client carries on and `onError` hears of it. */
  get onMessage(): ((message: AWSIoTMessage) => void) | undefined {
    return this.messageHandler;
  }
  set onMessage(handler: ((message: AWSIoTMessage) => void) | undefined) {
    this.messageHandler = handlerOrNone("onMessage", handler);
  }
  /**
   * (IoTLink extension) Called with every error the client reports, an IoTLinkError whose `code`
   * says what happened. Above all `callback-error`: a callback of yours threw (onMessage, a subscribe
   * callback, an ack callback, onOnline...), and the client carried on without it. Also what no
   * Promise or ack callback carries: a subscription the broker refused when it was renewed after a
   * reconnect, a protocol error, an oversized inbound message, `gave-up`; and each failed connection
   * attempt, which connect() reports too. Python SDK v1 has no such hook (a throwing callback stops
   * its dispatch); the same errors reach `getMQTTConnection().on("error", ...)`. If onError itself
   * throws, that is counted in `getMQTTConnection().stats.callbackErrors` but not reported again.
   */
  get onError(): ((error: IoTLinkError) => void) | undefined {
    return this.errorHandler;
  }
  set onError(handler: ((error: IoTLinkError) => void) | undefined) {
    this.errorHandler = handlerOrNone("onError", handler);
  }

  // ------------------------------------------------------------ configuration

  private configurable(what: string): void {
    if (this.client) throw invalid(what + " must be called before connect(): the client's memory is fixed when it is built");
  }

  /**
   * Port 443 turns on ALPN "x-amzn-mqtt-ca", as AWS IoT Core requires for MQTT on 443. Over
   * WebSocket there is no ALPN, and the port may be left out: 443.
   */
  configureEndpoint(hostName: string, portNumber?: number): void {
    this.configurable("configureEndpoint");
    const port = portNumber === undefined && this.websocket ? WEBSOCKET_PORT : portNumber;
    const problem = hostProblem("hostName", hostName) || wholeNumberProblem("portNumber", port, 1, 65535);
    if (problem !== "") throw invalid(problem);
    this.endpoint = { ...this.endpoint, host: hostName, port: port as number, alpn: port === 443 && !this.websocket ? ["x-amzn-mqtt-ca"] : undefined };
  }

  /**
   * Resource names (certificates and key in flash, DER). Key and certificate go together. Over
   * WebSocket, the CA alone: the device signs in with its IAM credentials (configureIAMCredentials).
   */
  configureCredentials(CAFilePath: string, KeyPath = "", CertificatePath = ""): void {
    this.configurable("configureCredentials");
    if (typeof CAFilePath !== "string" || CAFilePath.length === 0) throw invalid("CAFilePath must name the CA certificate resource");
    if (this.websocket && (KeyPath !== "" || CertificatePath !== "")) {
      throw invalid("MQTT over WebSocket signs in with IAM credentials, not a certificate: call configureCredentials(CAFilePath) with the CA alone, and configureIAMCredentials()");
    }
    if (typeof KeyPath !== "string" || typeof CertificatePath !== "string" || (KeyPath === "") !== (CertificatePath === "")) {
      throw invalid("KeyPath and CertificatePath must both name resources (mutual TLS) or both be empty");
    }
    if (!this.endpoint) throw invalid("call configureEndpoint(hostName, portNumber) before configureCredentials");
    this.endpoint = { ...this.endpoint, caResource: CAFilePath, keyResource: KeyPath || undefined, certificateResource: CertificatePath || undefined };
  }

  /**
   * Plain TCP without TLS, for a local test broker only. The Python SDK fell back to it silently
   * when credentials were missing; here it takes this call, with these words.
   */
  configureUnencryptedConnection(iUnderstandTrafficIsNotEncrypted: boolean): void {
    this.configurable("configureUnencryptedConnection");
    if (iUnderstandTrafficIsNotEncrypted !== true) throw invalid("pass true to confirm that traffic will not be encrypted");
    if (this.websocket) throw invalid("MQTT over WebSocket always uses TLS: its signed URL must not travel in the clear");
    this.plaintextAllowed = true;
  }

  /**
   * The IAM credentials MQTT over WebSocket signs its URL with (SigV4), as in the Python SDK; a
   * session token "" means none (an IAM user's keys), and temporary (STS) keys need theirs. Unlike
   * the other configure calls it may be called at any time: each connection attempt, reconnects
   * included, signs with the credentials of that moment, so rotated keys take effect at the next
   * one. Checked at the call; the secret and the token are never shown in an error or an event.
   */
  configureIAMCredentials(AWSAccessKeyID: string, AWSSecretAccessKey: string, AWSSessionToken = ""): void {
    if (!this.websocket) throw invalid("IAM credentials are for MQTT over WebSocket: construct the client with useWebsocket=true (X.509 mutual TLS takes configureCredentials(CA, key, certificate))");
    if (typeof AWSAccessKeyID !== "string" || typeof AWSSecretAccessKey !== "string") throw invalid("AWSAccessKeyID and AWSSecretAccessKey must be strings");
    if (typeof AWSSessionToken !== "string") throw invalid("AWSSessionToken must be a string (\"\" for none)");
    const sessionToken = AWSSessionToken === "" ? undefined : AWSSessionToken;
    const problem = sigv4Problem(AWSAccessKeyID, AWSSecretAccessKey, sessionToken, undefined);
    if (problem !== "") throw invalid(problem);
    this.iam = Object.freeze({ accessKeyId: AWSAccessKeyID, secretAccessKey: AWSSecretAccessKey, sessionToken });
  }

  /**
   * (IoTLink extension) The SigV4 region of a WebSocket client, for an endpoint whose host does not
   * name it (a custom domain, a local gateway); by default it comes from the endpoint,
   * `<id>-ats.iot.<region>.amazonaws.com`.
   */
  configureRegion(region: string): void {
    this.configurable("configureRegion");
    if (!this.websocket) throw invalid("the region is for MQTT over WebSocket (SigV4): construct the client with useWebsocket=true");
    if (typeof region !== "string") throw invalid("region must look like \"eu-west-1\", got " + shown(region));
    const problem = sigv4Problem("AKIAIOSFODNN7EXAMPLE", "-", undefined, region);
    if (problem !== "") throw invalid(problem);
    this.region = region;
  }

  configureLastWill(topic: string, payload: Payload, QoS: number, retain = false): void {
    this.configurable("configureLastWill");
    checkQos(QoS);
    checkAwsTopic(topic);
    const will: WillSettings = { topic, payload, qos: QoS, retain };
    const problem = willProblem(will);
    if (problem !== "") throw invalid(problem);
    this.options.will = will;
  }

  clearLastWill(): void {
    this.configurable("clearLastWill");
    this.options.will = undefined;
  }

  configureUsernamePassword(username: string, password?: string): void {
    this.configurable("configureUsernamePassword");
    // The metrics suffix may add to the user name: the client checks the total at connect().
    const userProblem = mqttStringProblem("username", username);
    if (userProblem !== "") throw invalid(userProblem);
    if (password !== undefined && typeof password !== "string") throw invalid("password must be a string, got " + shown(password));
    const passwordProblem = password === undefined ? "" : connectBinaryProblem(password);
    if (passwordProblem !== "") throw invalid("password: " + passwordProblem);
    this.username = username;
    this.options.password = password;
  }

  /** On by default, as in the Python SDK: the user name carries "?SDK=IoTLink&Version=…". */
  enableMetricsCollection(): void {
    this.configurable("enableMetricsCollection");
    this.metrics = true;
  }

  disableMetricsCollection(): void {
    this.configurable("disableMetricsCollection");
    this.metrics = false;
  }

  /** Seconds, as in Python. The first reconnect waits `base` (Python: always 1 s). */
  configureAutoReconnectBackoffTime(baseReconnectQuietTimeSecond: number, maxReconnectQuietTimeSecond: number, stableConnectionTimeSecond: number): void {
    this.configurable("configureAutoReconnectBackoffTime");
    const baseMs = positiveSeconds("baseReconnectQuietTimeSecond", baseReconnectQuietTimeSecond);
    const maxMs = positiveSeconds("maxReconnectQuietTimeSecond", maxReconnectQuietTimeSecond);
    const stableMs = positiveSeconds("stableConnectionTimeSecond", stableConnectionTimeSecond);
    if (maxMs < baseMs) throw invalid("maxReconnectQuietTimeSecond must not be below baseReconnectQuietTimeSecond");
    this.options.backoff = { ...this.options.backoff, baseMs, maxMs, stableMs };
  }

  /** IoTLink extension: full jitter on reconnect delays, and an optional attempt limit (0 = never give up). */
  configureAutoReconnectJitter(enabled: boolean, maxAttempts = 0): void {
    this.configurable("configureAutoReconnectJitter");
    if (typeof enabled !== "boolean") throw invalid("enabled must be a boolean");
    wholeNumber("maxAttempts", maxAttempts, 0, MAX_DELAY_MS);
    this.options.backoff = { ...this.options.backoff, jitter: enabled, maxAttempts };
  }

  /**
   * queueSize: requests kept while offline; 0 disables queueing; -1 ("infinite" in Python) means
   * the largest default ring, 256 requests in 32 KB, since memory is fixed here. `queueBytes`
   * (IoTLink extension) sets the ring's byte size; by default 128 bytes per request.
   */
  configureOfflinePublishQueueing(queueSize: number, dropBehavior = DROP_NEWEST, queueBytes?: number): void {
    this.configurable("configureOfflinePublishQueueing");
    wholeNumber("queueSize (-1: the largest ring, 0: no queue)", queueSize, -1, 65535);
    if (queueSize === 0 && queueBytes !== undefined && queueBytes !== 0) throw invalid("queueBytes has no use with queueSize 0 (no queue), got " + shown(queueBytes));
    if (dropBehavior !== DROP_OLDEST && dropBehavior !== DROP_NEWEST) throw invalid("dropBehavior must be DROP_OLDEST (0) or DROP_NEWEST (1)");
    if (queueSize === 0 && this.options.persist !== undefined) throw invalid("queueSize 0 (no queue) leaves nothing to persist: call configurePersistentQueue(undefined) first");
    const entries = queueSize === -1 ? 256 : queueSize;
    const bytes = wholeNumber("queueBytes", queueBytes ?? (queueSize === -1 ? 32768 : entries * 128), entries > 0 ? SMALLEST_REQUEST_BYTES : 0, 0x7fffffff);
    this.options.queueEntries = entries;
    this.options.queueBytes = entries === 0 ? 0 : bytes;
    this.options.dropPolicy = dropBehavior;
  }

  /**
   * (IoTLink extension) Persists the offline queue in `store`, an opened storage Journal (or any
   * QueueStore): each request that enters the queue is on flash before its call returns, and the
   * requests the store holds from before a reboot are loaded at connect() and sent after it.
   * Requests sent at once are not written. `undefined` turns it off. The store's records must take
   * the largest packet (maxPacketBytes, 2048 by default): checked at connect().
   */
  configurePersistentQueue(store: QueueStore | undefined): void {
    this.configurable("configurePersistentQueue");
    if (store !== undefined) {
      const problem = queueStoreProblem(store);
      if (problem !== "") throw invalid(problem);
      if (this.options.queueEntries === 0) throw invalid("the offline queue is off (queueSize 0): nothing to persist; call configureOfflinePublishQueueing with a size first");
    }
    this.options.persist = store;
  }

  /**
   * (IoTLink extension) The largest packet sent or received, in bytes; default 2048. The client
   * keeps a transmit and a receive buffer of this size, so raise it only as far as your messages need.
   */
  configureMaxPacketSize(bytes: number): void {
    this.configurable("configureMaxPacketSize");
    // The upper bound is AWS IoT Core's 128 KB payload.
    this.options.maxPacketBytes = wholeNumber("maximum packet size in bytes", bytes, 128, AWS_MAX_PACKET_BYTES);
  }

  configureDrainingFrequency(frequencyInHz: number): void {
    this.configurable("configureDrainingFrequency");
    // At most one request per 1000 s: a slower drain would outlast any timer.
    if (typeof frequencyInHz !== "number" || !(frequencyInHz >= 0.001 && frequencyInHz <= 1000)) throw invalid("frequencyInHz must be from 0.001 to 1000, got " + shown(frequencyInHz));
    this.options.drainIntervalMs = Math.floor(1000 / frequencyInHz);
  }

  configureConnectDisconnectTimeout(timeoutSecond: number): void {
    this.configurable("configureConnectDisconnectTimeout");
    this.options.connectTimeoutMs = positiveSeconds("timeoutSecond", timeoutSecond);
  }

  configureMQTTOperationTimeout(timeoutSecond: number): void {
    this.configurable("configureMQTTOperationTimeout");
    this.options.operationTimeoutMs = positiveSeconds("timeoutSecond", timeoutSecond);
  }

  /** The underlying IoTLink client (Python returns its paho client here); undefined before connect(). */
  getMQTTConnection(): MqttClient | undefined {
    return this.client;
  }

  // ------------------------------------------------------------ connection

  private build(keepAliveIntervalSecond: number): MqttClient {
    wholeNumber("keepAliveIntervalSecond", keepAliveIntervalSecond, 0, 65535);
    if (this.client) {
      if (keepAliveIntervalSecond * 1000 !== this.client.keepAliveMs) {
        throw invalid("keepAliveIntervalSecond is fixed at the first connect() (" + this.client.keepAliveMs / 1000 + " s), got " + keepAliveIntervalSecond);
      }
      return this.client;
    }
    const endpoint = this.endpoint;
    if (!endpoint) throw invalid("call configureEndpoint(hostName, portNumber) before connect()");
    const transport = this.websocket ? this.webSocketTransport(endpoint) : this.tlsTransport(endpoint);
    let username = this.username;
    if (this.metrics) username = (username ?? "") + "?SDK=" + SDK_NAME + "&Version=" + SDK_VERSION;
    const client = new MqttClient({
      ...this.options,
      keepAliveSeconds: keepAliveIntervalSecond,
      username,
      transport,
      clock: this.platform.createClock(),
    });
    // A user callback that throws is the client's to report (it isolates its listeners, not the
    // callbacks one listener makes): try/finally keeps it from skipping the facade's own work.
    client.on("online", () => {
      try {
        this.settleConnect(0, undefined);
      } finally {
        this.notify(this.onlineHandler);
      }
    });
    client.on("offline", () => {
      try {
        this.notify(this.offlineHandler);
      } finally {
        // A disconnect's link has closed: every byte the transport held went out, then DISCONNECT.
        if (client.stateName !== "closing") {
          const acks = this.disconnectAcks;
          this.disconnectAcks = [];
          callAll(acks, 0);
        }
      }
    });
    client.on("error", (error) => {
      try {
        if (error.code === ErrorCode.ConnectionRefused || error.code === ErrorCode.ConnectFailed || error.code === ErrorCode.ConnectTimeout || error.code === ErrorCode.GaveUp) {
          const match = /CONNACK (\d+)/.exec(error.message);
          this.settleConnect(match ? Number(match[1]) : -1, error);
        }
      } finally {
        // After the pending connect() is settled, so a throwing onError cannot keep it pending;
        // and even if a connectAsync callback threw.
        const handler = this.errorHandler;
        if (handler) handler(error);
      }
    });
    client.on("message", (message) => {
      const handler = this.messageHandler;
      if (handler) handler(copyMessage(message));
    });
    this.client = client;
    return client;
  }

  private tlsTransport(endpoint: EndpointSettings): Transport {
    if (!endpoint.caResource && !this.plaintextAllowed) {
      throw invalid("no TLS credentials: call configureCredentials(CAFilePath, KeyPath, CertificatePath); IoTLink never falls back to plain TCP silently");
    }
    const settings: EndpointSettings = endpoint.caResource ? endpoint : { ...endpoint, plaintext: true };
    return this.platform.createTransport(settings, this.options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES);
  }

  /** MQTT over WebSocket: TLS with the CA alone, the URL signed at every attempt with the IAM credentials of that moment. */
  private webSocketTransport(endpoint: EndpointSettings): Transport {
    if (!endpoint.caResource) throw invalid("MQTT over WebSocket needs TLS: call configureCredentials(CAFilePath) with the CA certificate resource before connect()");
    if (!this.iam) throw invalid("a WebSocket client signs in with IAM credentials: call configureIAMCredentials(AWSAccessKeyID, AWSSecretAccessKey, AWSSessionToken) before connect()");
    if (typeof this.platform.createWebSocketTransport !== "function") throw invalid("this platform has no MQTT over WebSocket (Platform.createWebSocketTransport)");
    return this.platform.createWebSocketTransport({ host: endpoint.host, port: endpoint.port, caResource: endpoint.caResource }, {
      credentials: () => this.iam as AwsCredentials,
      region: this.region,
      maxPacketBytes: this.options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES,
    });
  }

  private notify(handler: (() => void) | undefined): void {
    if (handler) handler();
  }

  private settleConnect(returnCode: number, error: IoTLinkError | undefined): void {
    // The Promise first: a connectAsync callback that throws cannot leave it pending.
    const pending = this.pendingConnect;
    this.pendingConnect = undefined;
    if (pending) {
      if (error) pending.reject(error);
      else pending.resolve(true);
    }
    const acks = this.connectAcks;
    this.connectAcks = [];
    callAll(acks, returnCode);
  }

  /**
   * Resolves true at CONNACK; rejects with the cause if the first attempt fails, while the client
   * keeps retrying with backoff until disconnect(). Calling it again while connected resolves true;
   * while a connect() is still pending, it returns that same Promise.
   */
  connect(keepAliveIntervalSecond = 600): Promise<boolean> {
    const client = this.build(keepAliveIntervalSecond);
    const state = client.stateName;
    if (state === "online" || state === "draining" || state === "resubscribing") return Promise.resolve(true);
    if (this.pendingConnect) return this.pendingConnect.promise;
    const pending = {} as PendingConnect;
    pending.promise = new Promise<boolean>((resolve, reject) => {
      pending.resolve = resolve;
      pending.reject = reject;
    });
    this.pendingConnect = pending;
    client.connect();
    return pending.promise;
  }

  /**
   * ackCallback(mid, returnCode) once, at the outcome of the attempt under way: 0 accepted, 1-5
   * CONNACK refusals, -1 no CONNACK (network, TLS, timeout). Each call's callback is kept (a later
   * call does not replace an earlier one's); while connected, it is called at once with 0.
   */
  connectAsync(keepAliveIntervalSecond = 600, ackCallback?: (mid: number, returnCode: number) => void): number {
    checkOptionalFunction("ackCallback", ackCallback);
    const client = this.build(keepAliveIntervalSecond);
    const state = client.stateName;
    if (state === "online" || state === "draining" || state === "resubscribing") {
      if (ackCallback) ackCallback(0, 0);
      return 0;
    }
    if (ackCallback) waitingCallback(this.connectAcks, ackCallback, "connectAsync");
    client.connect();
    return 0;
  }

  /**
   * Resolves true once the connection is closed: with a session up, when the transport has sent
   * what it held and DISCONNECT (or, after the connect/disconnect timeout, aborted the link; the
   * client then reports `disconnect-timeout`); otherwise at once. A pending connect() rejects.
   * Queued requests and subscriptions are kept for the next connect(), which may be called at once.
   */
  disconnect(): Promise<boolean> {
    return new Promise((resolve) => {
      this.disconnectAsync(() => resolve(true));
    });
  }

  /** ackCallback(mid, data), with (0, 0), when the connection is closed (see disconnect()). */
  disconnectAsync(ackCallback?: (mid: number, data: number) => void): number {
    checkOptionalFunction("ackCallback", ackCallback);
    const client = this.client;
    if (client) client.disconnect();
    const pending = this.pendingConnect;
    this.pendingConnect = undefined;
    if (pending) pending.reject(new IoTLinkError(ErrorCode.ConnectFailed, "disconnect() called before the connection was established"));
    if (ackCallback) {
      if (client && client.stateName === "closing") waitingCallback(this.disconnectAcks, ackCallback, "disconnectAsync");
      else ackCallback(0, 0);
    }
    return 0;
  }

  private requireClient(): MqttClient {
    if (!this.client) throw invalid("call connect() or connectAsync() first (requests made before the first connect are not accepted, as in Python)");
    return this.client;
  }

  // ------------------------------------------------------------ requests

  /**
   * Resolves true once sent (QoS 0) or acknowledged (QoS 1); false when queued for later (as the
   * Python SDK returns False). Rejects when the request was dropped or its acknowledgement is late
   * (it is then still in flight: do not publish it again).
   */
  publish(topic: string, payload: Payload | ArrayBuffer, QoS: number): Promise<boolean> {
    checkQos(QoS);
    checkAwsTopic(topic);
    checkAwsPayload(payload);
    return new Promise((resolve, reject) => {
      const accepted = this.requireClient().publish(topic, payload, QoS, false, QoS === 1 ? (status) => settleAck(status, resolve, reject) : undefined);
      if (accepted === Accepted.Dropped) reject(droppedError());
      else if (accepted === Accepted.Queued) resolve(false);
      else if (QoS === 0) resolve(true);
    });
  }

  /**
   * Returns the packet id (0 for QoS 0), or "QUEUED" for a request kept for later, as Python does.
   * ackCallback(mid, status) keeps working for queued requests; status is "acknowledged", "timed
   * out" (still in flight: do not publish it again) or "dropped" (by the drop policy; mid 0). A QoS 0
   * message is called back only if it is dropped. A request the full queue refuses under
   * DROP_NEWEST is reported once: with an ackCallback, it gets "dropped" and "QUEUED" is returned
   * (it took Python's offline path); without one, the call throws `not-accepted`, as Python raises
   * its queue-full exception.
   */
  publishAsync(topic: string, payload: Payload | ArrayBuffer, QoS: number, ackCallback?: (mid: number, status: string) => void): number | "QUEUED" {
    checkQos(QoS);
    checkAwsTopic(topic);
    checkOptionalFunction("ackCallback", ackCallback);
    checkAwsPayload(payload);
    const client = this.requireClient();
    const accepted = client.publish(topic, payload, QoS, false, ackCallback ? (status, mid) => ackCallback(mid, ACK_STATUS_NAMES[status]) : undefined);
    return this.midOf(client, accepted, QoS, ackCallback);
  }

  /** Resolves true at SUBACK (false if queued); rejects if the broker refuses it or the SUBACK is late. */
  subscribe(topic: string, QoS: number, callback?: AWSIoTMessageCallback): Promise<boolean> {
    checkQos(QoS);
    checkAwsTopic(topic);
    return new Promise((resolve, reject) => {
      const accepted = this.requireClient().subscribe(topic, QoS, this.adapt(callback), (status) => settleAck(status, resolve, reject));
      if (accepted === Accepted.Dropped) reject(droppedError());
      else if (accepted === Accepted.Queued) resolve(false);
    });
  }

  /**
   * Returns the packet id, or "QUEUED". ackCallback(mid, [grantedQoS]) reports the SUBACK; a
   * subscribe that failed gets [128], Python's failure value: refused by the broker, timed out (no
   * SUBACK within the operation timeout; it stays in flight) or dropped by the drop policy (mid 0).
   * Under DROP_NEWEST a full queue is reported once, as publishAsync's: [128] and "QUEUED", or a
   * throw when there is no ackCallback.
   */
  subscribeAsync(topic: string, QoS: number, ackCallback?: (mid: number, data: number[]) => void, messageCallback?: AWSIoTMessageCallback): number | "QUEUED" {
    checkQos(QoS);
    checkAwsTopic(topic);
    checkOptionalFunction("ackCallback", ackCallback);
    const client = this.requireClient();
    const onAck = ackCallback ? (status: number, mid: number, granted: number) => ackCallback(mid, [status === AckStatus.Acknowledged ? granted : SUBACK_FAILURE]) : undefined;
    const accepted = client.subscribe(topic, QoS, this.adapt(messageCallback), onAck);
    return this.midOf(client, accepted, 1, ackCallback);
  }

  unsubscribe(topic: string): Promise<boolean> {
    checkAwsTopic(topic);
    return new Promise((resolve, reject) => {
      const accepted = this.requireClient().unsubscribe(topic, (status) => settleAck(status, resolve, reject));
      if (accepted === Accepted.Dropped) reject(droppedError());
      else if (accepted === Accepted.Queued) resolve(false);
    });
  }

  /**
   * Returns the packet id, or "QUEUED". Python calls ackCallback(mid) at the UNSUBACK, and an
   * UNSUBACK carries no return code to fail with; so, rather than call a failure back as if it were
   * the UNSUBACK, the callback gets a second argument, the status as publishAsync's: ackCallback(mid,
   * "acknowledged"), or "timed out" (no UNSUBACK within the operation timeout; still in flight) or
   * "dropped" (by the drop policy, before it was sent; mid 0). A Python-style `(mid) => ...` still
   * works, but only a callback that reads the status can tell a failure. Under DROP_NEWEST a full
   * queue is reported once, as publishAsync's.
   */
  unsubscribeAsync(topic: string, ackCallback?: (mid: number, status: string) => void): number | "QUEUED" {
    checkOptionalFunction("ackCallback", ackCallback);
    checkAwsTopic(topic);
    const client = this.requireClient();
    const accepted = client.unsubscribe(topic, ackCallback ? (status, mid) => ackCallback(mid, ACK_STATUS_NAMES[status]) : undefined);
    return this.midOf(client, accepted, 1, ackCallback);
  }

  /**
   * What an *Async request returns. A request dropped at the call (a full queue under DROP_NEWEST)
   * has been reported to its ack callback already, so it returns "QUEUED" like any request that took
   * the offline path; without a callback, the throw is the report.
   */
  private midOf(client: MqttClient, accepted: Accepted, qos: number, ackCallback: unknown): number | "QUEUED" {
    if (accepted === Accepted.Dropped && ackCallback === undefined) throw droppedError();
    if (accepted !== Accepted.Sent) return "QUEUED";
    return qos === 1 ? client.lastPacketId : 0;
  }

  private adapt(callback: AWSIoTMessageCallback | undefined): ((message: InboundMessage) => void) | undefined {
    checkOptionalFunction("callback", callback);
    if (callback === undefined) return undefined;
    return (message) => callback(this, null, copyMessage(message));
  }
}

/**
 * Calls each callback with (0, value). One that throws does not keep the others from being called;
 * the first throw is passed on, for the client to report.
 */
function callAll(callbacks: ((mid: number, value: number) => void)[], value: number): void {
  let thrown: unknown;
  let threw = false;
  for (let i = 0; i < callbacks.length; i++) {
    try {
      callbacks[i](0, value);
    } catch (error) {
      if (!threw) thrown = error;
      threw = true;
    }
  }
  if (threw) throw thrown;
}

function settleAck(status: number, resolve: (value: boolean) => void, reject: (error: Error) => void): void {
  if (status === AckStatus.Acknowledged) resolve(true);
  else if (status === AckStatus.TimedOut) reject(new IoTLinkError(ErrorCode.NotAccepted, "acknowledgement timed out; the request is still in flight and will be re-sent after a reconnect: do not repeat it"));
  else if (status === AckStatus.Refused) reject(new IoTLinkError(ErrorCode.SubscriptionRefused, "the broker refused the subscription"));
  else reject(droppedError());
}

function droppedError(): IoTLinkError {
  return new IoTLinkError(ErrorCode.NotAccepted, "offline queue full: the request was dropped (see the drop policy)");
}

/** Callbacks of one kind that may wait at once (connectAsync or disconnectAsync calls while pending): memory stays bounded. */
const MAX_WAITING_CALLBACKS = 8;

function waitingCallback<T>(list: T[], callback: T, call: string): void {
  if (list.length >= MAX_WAITING_CALLBACKS) throw new IoTLinkError(ErrorCode.NotAccepted, call + ": " + MAX_WAITING_CALLBACKS + " callbacks already wait for the same outcome");
  list.push(callback);
}
