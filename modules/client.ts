// The MQTT session: connect, keep-alive, reconnect with backoff, recovery (resubscribe, re-send,
// paced drain of the offline queue), QoS 1 acknowledgements and events. All memory is sized at
// construction: one transmit buffer, the decoder's receive buffer, the offline queue ring, the
// in-flight ring and the subscription table. One timer serves every deadline.

import { Backoff, type BackoffSettings, MAX_DELAY_MS } from "./backoff";
import {
  type ConnectFields,
  connectRemaining,
  DISCONNECT_BYTES,
  firstTopicOf,
  markDuplicate,
  packetSize,
  PacketDecoder,
  type PacketSink,
  PacketType,
  type Payload,
  payloadLength,
  PINGREQ_BYTES,
  PUBACK_BYTES,
  publishRemaining,
  setPacketId,
  subscribeRemaining,
  writeConnect,
  writeDisconnect,
  writeFilter,
  writePingreq,
  writePuback,
  writePublish,
  writeSubscribeHeader,
} from "./packet";
import { type AckCallback, Ring } from "./ring";
import { MAX_STRING_BYTES, mqttStringProblem, topicFilterProblem, topicMatches, topicNameProblem, utf8Length, writeUtf8 } from "./topic";
import {
  Accepted,
  AckStatus,
  type Clock,
  connackName,
  DROP_NEWEST,
  DROP_OLDEST,
  ErrorCode,
  invalid,
  IoTLinkError,
  REQUEST_KIND_NAMES,
  RequestKind,
  State,
  STATE_NAMES,
  type Transport,
  type TransportSink,
  shown,
  unknownNameProblem,
  wholeNumber,
  wholeNumberProblem,
} from "./types";

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
  /** Time allowed for TCP + TLS + CONNACK. Default 30000. */
  connectTimeoutMs?: number;
  /** Time after which an unacknowledged request is reported late, counted from its write. Default 5000. */
  operationTimeoutMs?: number;
  /** Reconnect delays. Default base 1000, max 32000, stable 20000, no jitter. */
  backoff?: Partial<BackoffSettings>;
  /** Offline queue: entry limit (0 disables queueing), byte size, drop policy. Defaults 64, 8192, DROP_NEWEST. */
  queueEntries?: number;
  queueBytes?: number;
  dropPolicy?: number;
  /** Unacknowledged requests on the wire at once, and the bytes kept for them. Defaults 10, 4096. */
  inflightWindow?: number;
  inflightBytes?: number;
  /** Interval between two drained requests after a reconnect. Default 500 (2 Hz). */
  drainIntervalMs?: number;
  /** Largest packet sent or received, in bytes. Default 2048. */
  maxPacketBytes?: number;
  /** Subscriptions remembered for re-subscription. Default 16. */
  maxSubscriptions?: number;
}

/** An inbound message. The client reuses one object: read it during the callback, copy what you keep. */
export interface InboundMessage {
  topic: string;
  /** A view into the receive buffer, valid only during the callback. */
  payload: Uint8Array;
  qos: number;
  retain: boolean;
  dup: boolean;
  packetId: number;
}

export type MessageHandler = (message: InboundMessage) => void;

export interface ClientEvents {
  /** CONNACK accepted. */
  online: (sessionPresent: boolean) => void;
  /** An established session ended (not a failed attempt: see `error`). */
  offline: (reason: string) => void;
  /** Resubscription and the drain of the offline queue finished: requests go straight out again. */
  restored: () => void;
  /** Every inbound PUBLISH, after the handlers of the matching subscriptions. */
  message: MessageHandler;
  /** A request left the offline queue unsent because of the drop policy. */
  drop: (kind: string, topic: string) => void;
  /** A reconnect attempt is scheduled. */
  reconnecting: (delayMs: number, attempt: number) => void;
  /** The session state changed. */
  state: (state: State, name: string) => void;
  /** A failure the client handled: connection refused or failed, protocol error, throwing callback... */
  error: (error: IoTLinkError) => void;
}

export type EventName = keyof ClientEvents;

/** Counters since construction. */
export interface ClientStats {
  sent: number;
  queued: number;
  dropped: number;
  acknowledged: number;
  timedOut: number;
  lateAcknowledged: number;
  resent: number;
  received: number;
  connects: number;
  protocolErrors: number;
  callbackErrors: number;
  /** Inbound messages that matched no subscription handler while no "message" handler was set. */
  unhandled: number;
}

const FLAG_TIMED_OUT = 1;
const FLAG_ACKED = 2;
/** In the window but not on the wire of this connection yet: the transport had no room (or an older entry waits). */
const FLAG_UNSENT = 4;

const SUB_EMPTY = 0;
const SUB_PENDING = 1;
const SUB_ACTIVE = 2;
const SUB_REMOVING = 3;

/** AWS IoT Core accepts at most 8 filters per SUBSCRIBE. */
const FILTERS_PER_SUBSCRIBE = 8;

/** The names the constructor reads (in ClientOptions, BackoffSettings and WillSettings): any other is refused as a likely typo. */
const OPTION_NAMES = "clientId, transport, clock, cleanSession, keepAliveSeconds, username, password, will, connectTimeoutMs, operationTimeoutMs, backoff, queueEntries, queueBytes, dropPolicy, inflightWindow, inflightBytes, drainIntervalMs, maxPacketBytes, maxSubscriptions";
const BACKOFF_SETTINGS = "baseMs, maxMs, stableMs, jitter, maxAttempts, random, seed";
const WILL_FIELDS = "topic, payload, qos, retain";

/** The smallest request, a QoS 0 PUBLISH to a one-byte topic with no payload: a queue of fewer bytes could hold nothing. */
export const SMALLEST_REQUEST_BYTES = 5;

/** The largest packet either way when maxPacketBytes is not given. */
export const DEFAULT_MAX_PACKET_BYTES = 2048;

export function checkOptionalFunction(name: string, value: unknown): void {
  if (value !== undefined && typeof value !== "function") throw invalid(name + " must be a function");
}

export function checkQos(qos: unknown): void {
  if (qos !== 0 && qos !== 1) throw invalid("qos must be 0 or 1 (QoS 2 is not supported), got " + shown(qos));
}

function checkFilter(filter: string): void {
  const problem = topicFilterProblem(filter);
  if (problem !== "") throw invalid(problem);
}

function payloadProblem(payload: unknown): string {
  if (typeof payload === "string") return payloadLength(payload) < 0 ? "payload text is not valid UTF-8 (lone surrogate)" : "";
  return payload instanceof Uint8Array ? "" : "payload must be a Uint8Array, an ArrayBuffer or a string";
}

function toPayload(payload: unknown): Payload {
  return payload instanceof ArrayBuffer ? new Uint8Array(payload) : (payload as Payload);
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

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

export class MqttClient implements TransportSink, PacketSink {
  readonly clientId: string;
  readonly keepAliveMs: number;
  readonly connectTimeoutMs: number;
  readonly operationTimeoutMs: number;
  readonly drainIntervalMs: number;
  readonly maxPacketBytes: number;
  readonly dropPolicy: number;
  readonly backoff: Backoff;
  readonly stats: ClientStats = {
    sent: 0, queued: 0, dropped: 0, acknowledged: 0, timedOut: 0, lateAcknowledged: 0,
    resent: 0, received: 0, connects: 0, protocolErrors: 0, callbackErrors: 0, unhandled: 0,
  };

  private currentState = State.Idle;
  /** The user wants a connection: reconnect after losses. */
  private wanted = false;
  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly connectFields: ConnectFields;
  private readonly tx: Uint8Array;
  private readonly decoder: PacketDecoder;
  private readonly queue: Ring;
  private readonly inflight: Ring;

  // Subscription table: fixed slots, never compacted, so indices stay valid while acks are pending.
  private readonly subFilter: (string | undefined)[];
  private readonly subQos: Uint8Array;
  private readonly subStatus: Uint8Array;
  private readonly subHandler: (MessageHandler | undefined)[];
  // Re-subscription after a reconnect: packet ids in flight and the table slots each one covers.
  private readonly resubId: Uint16Array;
  private readonly resubFirst: Uint16Array;
  private readonly resubCount: Uint8Array;
  private readonly resubSlots: Uint16Array;
  private resubPackets = 0;
  /** In-flight entries marked FLAG_UNSENT: they go out, oldest first, when the transport has room. */
  private unsent = 0;
  /** The last topic publish() validated, and its UTF-8 length (0: none yet; a valid topic has at least 1 byte). */
  private lastTopic = "";
  private lastTopicBytes = 0;

  private packetIdCounter = 0;
  // Times are kept as raw clock values; elapsed time is always ((now - then) | 0), so wrap is harmless.
  private attemptStartedAt = 0;
  private reconnectDelay = 0;
  private backoffStartedAt = 0;
  private connectedAt = 0;
  private stable = false;
  private lastSentAt = 0;
  private lastReceivedAt = 0;
  private pingOutstanding = false;
  private lastDrainAt = 0;
  private timerArmed = false;
  private timerDueIn = 0;
  private timerArmedAt = 0;

  private readonly message: InboundMessage = { topic: "", payload: new Uint8Array(0), qos: 0, retain: false, dup: false, packetId: 0 };
  // The view handed out as message.payload, kept while inbound payloads sit at the same place in
  // the receive buffer (same topic length, QoS and payload size): no new view per message then.
  private payloadView: Uint8Array = new Uint8Array(0);
  private payloadViewStart = -1;
  private payloadViewEnd = -1;
  private readonly handlers: { [K in EventName]?: ClientEvents[K] } = {};
  private readonly onTimer = (): void => this.service();

  constructor(options: ClientOptions) {
    if (typeof options !== "object" || options === null) throw invalid("options must be an object");
    const unknownOption = unknownNameProblem("option", options, OPTION_NAMES);
    if (unknownOption !== "") throw invalid(unknownOption);
    const { transport, clock } = options;
    if (!transport || typeof transport.open !== "function" || typeof transport.write !== "function" || typeof transport.close !== "function") {
      throw invalid("transport must implement open(sink), write(bytes, offset, length) and close()");
    }
    if (!clock || typeof clock.now !== "function" || typeof clock.setTimer !== "function" || typeof clock.clearTimer !== "function") {
      throw invalid("clock must implement now(), setTimer(delayMs, callback) and clearTimer()");
    }
    const now = clock.now();
    if (typeof now !== "number" || !Number.isFinite(now)) throw invalid("clock.now() must return milliseconds as a finite number, got " + shown(now));
    this.transport = transport;
    this.clock = clock;

    const clientId = options.clientId;
    const idProblem = mqttStringProblem("clientId", clientId);
    if (idProblem !== "") throw invalid(idProblem);
    const cleanSession = options.cleanSession ?? true;
    if (typeof cleanSession !== "boolean") throw invalid("cleanSession must be a boolean");
    if (clientId === "" && !cleanSession) throw invalid("an empty clientId requires cleanSession (MQTT 3.1.1 section 3.1.3.1)");
    this.clientId = clientId;

    const keepAliveSeconds = wholeNumber("keepAliveSeconds", options.keepAliveSeconds ?? 60, 0, 65535);
    this.keepAliveMs = keepAliveSeconds * 1000;
    this.connectTimeoutMs = wholeNumber("connectTimeoutMs", options.connectTimeoutMs ?? 30000, 1, MAX_DELAY_MS);
    this.operationTimeoutMs = wholeNumber("operationTimeoutMs", options.operationTimeoutMs ?? 5000, 1, MAX_DELAY_MS);
    this.drainIntervalMs = wholeNumber("drainIntervalMs", options.drainIntervalMs ?? 500, 0, MAX_DELAY_MS);
    this.maxPacketBytes = wholeNumber("maxPacketBytes", options.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES, 16, 268435460);
    this.dropPolicy = wholeNumber("dropPolicy (DROP_OLDEST = 0, DROP_NEWEST = 1)", options.dropPolicy ?? DROP_NEWEST, DROP_OLDEST, DROP_NEWEST);

    const settings = options.backoff ?? {};
    if (typeof settings !== "object") throw invalid("backoff must be an object");
    const unknownSetting = unknownNameProblem("backoff setting", settings, BACKOFF_SETTINGS);
    if (unknownSetting !== "") throw invalid(unknownSetting);
    this.backoff = new Backoff({
      baseMs: settings.baseMs ?? 1000,
      maxMs: settings.maxMs ?? 32000,
      stableMs: settings.stableMs ?? 20000,
      jitter: settings.jitter,
      maxAttempts: settings.maxAttempts,
      random: settings.random,
      seed: settings.seed,
    });
    // Devices sharing firmware must not retry in step: mix the client id into the default seed.
    if (settings.seed === undefined) this.backoff.seed((fnv1a(clientId) ^ now) >>> 0);

    const fields: ConnectFields = { clientId, cleanSession, keepAliveSeconds };
    if (options.username !== undefined) {
      const problem = mqttStringProblem("username", options.username);
      if (problem !== "") throw invalid(problem);
      fields.username = options.username;
    }
    if (options.password !== undefined) {
      // MQTT 3.1.1 section 3.1.2.9: a password needs a user name.
      if (options.username === undefined) throw invalid("password needs a username (MQTT 3.1.1 section 3.1.2.9)");
      const problem = connectBinaryProblem(options.password);
      if (problem !== "") throw invalid("password: " + problem);
      fields.password = this.bytesOf(toPayload(options.password));
    }
    if (options.will !== undefined) {
      const will = options.will;
      const problem = willProblem(will);
      if (problem !== "") throw invalid(problem);
      fields.willTopic = will.topic;
      fields.willPayload = this.bytesOf(toPayload(will.payload));
      fields.willQos = will.qos ?? 0;
      fields.willRetain = will.retain === true;
    }
    this.connectFields = fields;
    if (packetSize(connectRemaining(fields)) > this.maxPacketBytes) throw invalid("CONNECT (client id, will, credentials) exceeds maxPacketBytes");

    this.tx = new Uint8Array(this.maxPacketBytes);
    this.decoder = new PacketDecoder(this.maxPacketBytes, this);

    const queueEntries = wholeNumber("queueEntries", options.queueEntries ?? 64, 0, 65535);
    const queueBytes = wholeNumber("queueBytes", options.queueBytes ?? (queueEntries === 0 ? 0 : 8192), 0, MAX_DELAY_MS);
    if ((queueEntries === 0) !== (queueBytes === 0)) throw invalid("queueEntries and queueBytes must both be 0 (queueing disabled) or both above 0");
    if (queueBytes > 0 && queueBytes < SMALLEST_REQUEST_BYTES) throw invalid("queueBytes must be at least " + SMALLEST_REQUEST_BYTES + " (the smallest request) when queueing, got " + queueBytes);
    this.queue = new Ring(queueBytes, queueEntries);
    const window = wholeNumber("inflightWindow", options.inflightWindow ?? 10, 1, 65535);
    const inflightBytes = wholeNumber("inflightBytes", options.inflightBytes ?? Math.max(4096, this.maxPacketBytes), this.maxPacketBytes, MAX_DELAY_MS);
    this.inflight = new Ring(inflightBytes, window);

    const maxSubscriptions = wholeNumber("maxSubscriptions", options.maxSubscriptions ?? 16, 1, 65535);
    this.subFilter = new Array(maxSubscriptions).fill(undefined);
    this.subHandler = new Array(maxSubscriptions).fill(undefined);
    this.subQos = new Uint8Array(maxSubscriptions);
    this.subStatus = new Uint8Array(maxSubscriptions);
    this.resubId = new Uint16Array(maxSubscriptions);
    this.resubFirst = new Uint16Array(maxSubscriptions);
    this.resubCount = new Uint8Array(maxSubscriptions);
    this.resubSlots = new Uint16Array(maxSubscriptions);
  }

  /** A private copy of configuration bytes (text as UTF-8), taken once at construction. */
  private bytesOf(payload: Payload): Uint8Array {
    if (typeof payload !== "string") return payload.slice();
    const bytes = new Uint8Array(payloadLength(payload));
    writeUtf8(payload, bytes, 0);
    return bytes;
  }

  // ---------------------------------------------------------------- public API

  get state(): State {
    return this.currentState;
  }

  get stateName(): string {
    return STATE_NAMES[this.currentState];
  }

  /** Requests waiting in the offline queue. */
  get queuedCount(): number {
    return this.queue.count;
  }

  /** Requests in the in-flight window: sent (or waiting for room in the transport) and not yet acknowledged. */
  get inflightCount(): number {
    return this.inflight.count;
  }

  /** The packet id given to the last request that went on the wire with one. */
  get lastPacketId(): number {
    return this.packetIdCounter;
  }

  /** Failed attempts since the last stable connection. */
  get attempt(): number {
    return this.backoff.attempt;
  }

  /** Sets the one handler of an event (replacing any earlier one); undefined removes it. */
  on<K extends EventName>(event: K, handler: ClientEvents[K] | undefined): this {
    if (typeof event !== "string" || !Object.prototype.hasOwnProperty.call(EVENT_NAMES, event)) throw invalid("unknown event " + shown(event) + "; events are " + Object.keys(EVENT_NAMES).join(", "));
    checkOptionalFunction("handler for " + event, handler);
    this.handlers[event] = handler as never;
    return this;
  }

  /** Starts connecting, and keeps the session up until disconnect(). Returns false if already under way. */
  connect(): boolean {
    if (this.currentState !== State.Idle) return false;
    this.wanted = true;
    this.backoff.reset();
    this.startAttempt();
    return true;
  }

  /** Sends DISCONNECT and stops every timer. Subscriptions and queued requests are kept for a later connect(). */
  disconnect(): void {
    this.wanted = false;
    const previous = this.currentState;
    if (previous === State.Idle) return;
    if (previous >= State.AwaitingConnack) {
      writeDisconnect(this.tx, 0);
      this.transport.write(this.tx, 0, DISCONNECT_BYTES);
      this.setState(State.Closing);
    }
    if (previous >= State.Opening) this.transport.close();
    this.decoder.reset();
    this.pingOutstanding = false;
    this.resubPackets = 0;
    this.setState(State.Idle);
    this.clock.clearTimer();
    this.timerArmed = false;
    if (previous >= State.Resubscribing) this.emit("offline", "disconnected by the client");
  }

  /**
   * Publishes a message. Returns Accepted.Sent (on the wire), Accepted.Queued (kept for recovery, for
   * a free in-flight slot or for room in the transport) or Accepted.Dropped (queue full under
   * DROP_NEWEST). Invalid input throws, and so does one that needs the offline queue while queueing is off.
   * `onAck(status)` is called once for QoS 1: acknowledged, timed out (still in flight) or dropped.
   * A QoS 0 message has no acknowledgement: its `onAck` is called only if it is dropped from the queue.
   */
  publish(topic: string, payload: Payload | ArrayBuffer, qos = 0, retain = false, onAck?: AckCallback): Accepted {
    // Devices publish to the same few topics: the last one that passed validation is not checked again.
    let topicBytes = this.lastTopicBytes;
    if (topicBytes === 0 || topic !== this.lastTopic) {
      const problem = topicNameProblem(topic);
      if (problem !== "") throw invalid(problem);
      topicBytes = utf8Length(topic);
      this.lastTopic = topic;
      this.lastTopicBytes = topicBytes;
    }
    const problem = payloadProblem(toPayload(payload));
    if (problem !== "") throw invalid(problem);
    // The checks subscribe() shares are made inline here, and the helper only called to throw:
    // publish is the hot path, and a call costs XS operations.
    if (qos !== 0 && qos !== 1) checkQos(qos);
    if (typeof retain !== "boolean") throw invalid("retain must be a boolean");
    if (onAck !== undefined && typeof onAck !== "function") checkOptionalFunction("onAck", onAck);
    const body = toPayload(payload);
    const bodyBytes = payloadLength(body);
    const size = packetSize(publishRemaining(topicBytes, bodyBytes, qos));
    if (size > this.maxPacketBytes) this.checkedPacketSize("message", size);

    if (this.currentState === State.Online && this.queue.count === 0) {
      if (qos === 0) {
        // Straight out when nothing waits before it; otherwise (the transport has no room, or QoS 1
        // requests wait for it) it joins the offline queue below, which keeps the order.
        if (this.unsent === 0) {
          const end = writePublish(this.tx, 0, topic, topicBytes, body, bodyBytes, 0, retain, 0);
          if (this.send(this.tx, 0, end)) {
            this.stats.sent++;
            return Accepted.Sent;
          }
        }
      } else {
        const slot = this.inflight.push(size);
        if (slot >= 0) {
          const id = this.nextPacketId();
          writePublish(this.inflight.arena, this.inflight.offset[slot], topic, topicBytes, body, bodyBytes, 1, retain, id);
          this.inflight.kind[slot] = RequestKind.Publish;
          this.inflight.packetId[slot] = id;
          this.inflight.callback[slot] = onAck;
          const written = this.transmitInflight(slot);
          this.rescheduleAfterIo(State.Online);
          return written ? Accepted.Sent : Accepted.Queued;
        }
      }
    }
    const slot = this.reserveQueued(size, RequestKind.Publish, topic);
    if (slot < 0) {
      if (onAck) this.callAck(onAck, AckStatus.Dropped, 0, 0);
      return Accepted.Dropped;
    }
    writePublish(this.queue.arena, this.queue.offset[slot], topic, topicBytes, body, bodyBytes, qos, retain, 0);
    this.queue.kind[slot] = RequestKind.Publish;
    this.queue.callback[slot] = onAck;
    this.pumpQueue();
    this.schedule();
    return this.queueHolds(slot) ? Accepted.Queued : Accepted.Sent;
  }

  /**
   * Subscribes to a filter; `onMessage` receives the messages it matches. Recorded at once and
   * re-subscribed after every reconnect. `onAck(status, packetId, grantedQos)` reports the SUBACK.
   */
  subscribe(filter: string, qos = 0, onMessage?: MessageHandler, onAck?: AckCallback): Accepted {
    checkFilter(filter);
    checkQos(qos);
    checkOptionalFunction("onMessage", onMessage);
    checkOptionalFunction("onAck", onAck);
    const filterBytes = utf8Length(filter);
    const size = this.checkedPacketSize("SUBSCRIBE", packetSize(subscribeRemaining(1, filterBytes, true)));
    let index = this.findSubscription(filter);
    if (index < 0) {
      index = this.subFilter.indexOf(undefined);
      if (index < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "subscription table is full (" + this.subFilter.length + " filters; raise maxSubscriptions)");
    }
    return this.request(RequestKind.Subscribe, filter, filterBytes, qos, size, onAck, () => {
      this.subFilter[index] = filter;
      this.subQos[index] = qos;
      // Subscribing again without a handler (to change the QoS, say) keeps the filter's handler.
      if (onMessage !== undefined) this.subHandler[index] = onMessage;
      if (this.subStatus[index] !== SUB_ACTIVE) this.subStatus[index] = SUB_PENDING;
    });
  }

  /** Unsubscribes from a filter; its handler keeps receiving until the UNSUBACK. */
  unsubscribe(filter: string, onAck?: AckCallback): Accepted {
    checkFilter(filter);
    checkOptionalFunction("onAck", onAck);
    const filterBytes = utf8Length(filter);
    const size = this.checkedPacketSize("UNSUBSCRIBE", packetSize(subscribeRemaining(1, filterBytes, false)));
    return this.request(RequestKind.Unsubscribe, filter, filterBytes, -1, size, onAck, () => {
      const index = this.findSubscription(filter);
      if (index >= 0) this.subStatus[index] = SUB_REMOVING;
    });
  }

  // ---------------------------------------------------------------- requests

  /** `size`, if a packet that large may be sent; else throws, naming `what`. */
  private checkedPacketSize(what: string, size: number): number {
    if (size > this.maxPacketBytes) throw invalid(what + " of " + size + " bytes exceeds maxPacketBytes (" + this.maxPacketBytes + ")");
    return size;
  }

  /** SUBSCRIBE / UNSUBSCRIBE: straight out when online with a free slot, else through the queue. */
  private request(kind: RequestKind, filter: string, filterBytes: number, qos: number, size: number, onAck: AckCallback | undefined, record: () => void): Accepted {
    const subscribe = kind === RequestKind.Subscribe;
    if (this.currentState === State.Online && this.queue.count === 0) {
      const slot = this.inflight.push(size);
      if (slot >= 0) {
        record();
        const id = this.nextPacketId();
        const arena = this.inflight.arena;
        const at = writeSubscribeHeader(arena, this.inflight.offset[slot], subscribe, subscribeRemaining(1, filterBytes, subscribe), id);
        writeFilter(arena, at, filter, filterBytes, qos);
        this.inflight.kind[slot] = kind;
        this.inflight.packetId[slot] = id;
        this.inflight.callback[slot] = onAck;
        const written = this.transmitInflight(slot);
        this.schedule();
        return written ? Accepted.Sent : Accepted.Queued;
      }
    }
    const slot = this.reserveQueued(size, kind, filter);
    if (slot < 0) {
      if (onAck) this.callAck(onAck, AckStatus.Dropped, 0, 0);
      return Accepted.Dropped;
    }
    record();
    const arena = this.queue.arena;
    const at = writeSubscribeHeader(arena, this.queue.offset[slot], subscribe, subscribeRemaining(1, filterBytes, subscribe), 0);
    writeFilter(arena, at, filter, filterBytes, qos);
    this.queue.kind[slot] = kind;
    this.queue.callback[slot] = onAck;
    this.pumpQueue();
    this.schedule();
    return this.queueHolds(slot) ? Accepted.Queued : Accepted.Sent;
  }

  /** Whether the queue still holds the entry pushed into `slot` (pumpQueue may have sent it). */
  private queueHolds(slot: number): boolean {
    const queue = this.queue;
    return queue.count > 0 && queue.slot(queue.count - 1) === slot;
  }

  /** Makes room in the offline queue by the drop policy and reserves `size` bytes; -1 if the new request is dropped. */
  private reserveQueued(size: number, kind: RequestKind, topic: string): number {
    const queue = this.queue;
    if (queue.maxEntries === 0) {
      throw new IoTLinkError(ErrorCode.NotAccepted, this.currentState === State.Online
        ? "in-flight window is full (or the transport has no room) and offline queueing is disabled"
        : "not connected and offline queueing is disabled (queue size 0)");
    }
    if (size > queue.capacity) {
      throw new IoTLinkError(ErrorCode.NotAccepted, "request of " + size + " bytes is larger than the whole offline queue (" + queue.capacity + " bytes)");
    }
    let slot = queue.push(size);
    while (slot < 0) {
      if (this.dropPolicy === DROP_NEWEST) {
        this.stats.dropped++;
        this.emit("drop", REQUEST_KIND_NAMES[kind], topic);
        return -1;
      }
      this.dropOldestQueued();
      slot = queue.push(size);
    }
    this.stats.queued++;
    return slot;
  }

  private dropOldestQueued(): void {
    const queue = this.queue;
    const slot = queue.oldest();
    const kind = queue.kind[slot];
    const topic = firstTopicOf(queue.arena, queue.offset[slot]);
    const onAck = queue.callback[slot];
    queue.shift();
    if (kind === RequestKind.Subscribe) this.forgetPendingSubscription(topic);
    else if (kind === RequestKind.Unsubscribe) this.restoreSubscription(topic);
    this.stats.dropped++;
    this.emit("drop", REQUEST_KIND_NAMES[kind], topic);
    if (onAck) this.callAck(onAck, AckStatus.Dropped, 0, 0);
  }

  /** A dropped SUBSCRIBE never reached the broker: forget the filter unless it was active before. */
  private forgetPendingSubscription(filter: string): void {
    const index = this.findSubscription(filter);
    if (index >= 0 && this.subStatus[index] === SUB_PENDING) this.removeSubscription(index);
  }

  /** A dropped UNSUBSCRIBE never reached the broker: the subscription stays. */
  private restoreSubscription(filter: string): void {
    const index = this.findSubscription(filter);
    if (index >= 0 && this.subStatus[index] === SUB_REMOVING) this.subStatus[index] = SUB_ACTIVE;
  }

  /**
   * Sends queued requests while the session is online and the in-flight window has room; during
   * recovery the drain timer sends them one per interval instead.
   */
  private pumpQueue(): void {
    while (this.currentState === State.Online && this.queue.count > 0) {
      if (!this.sendQueuedHead()) break;
    }
  }

  /**
   * Sends the oldest queued request. False if the in-flight window or the transport has no room
   * (a QoS 1 request then waits in the window, marked unsent), or the link failed.
   */
  private sendQueuedHead(): boolean {
    const queue = this.queue;
    const slot = queue.oldest();
    const offset = queue.offset[slot];
    const length = queue.length[slot];
    const kind = queue.kind[slot];
    const qos = kind === RequestKind.Publish ? (queue.arena[offset] >> 1) & 3 : 1;
    if (qos === 0) {
      // Shift only once written: a refused write leaves it queued (for onTransportWritable or the
      // next connection); never ahead of in-flight requests still waiting for the transport.
      if (this.unsent > 0 || !this.send(queue.arena, offset, length)) return false;
      queue.shift();
      this.stats.sent++;
      return true;
    }
    const target = this.inflight.push(length);
    if (target < 0) return false;
    const inflight = this.inflight;
    inflight.arena.set(queue.arena.subarray(offset, offset + length), inflight.offset[target]);
    const id = this.nextPacketId();
    setPacketId(inflight.arena, inflight.offset[target], id);
    inflight.kind[target] = kind;
    inflight.packetId[target] = id;
    inflight.callback[target] = queue.callback[slot];
    queue.shift();
    return this.transmitInflight(target);
  }

  /**
   * Writes an in-flight entry and starts its operation timer, which counts from the write. When the
   * transport has no room, or older entries still wait for it, the entry is marked unsent and
   * flushInflight() writes it later, in order. False if it was not written now.
   */
  private transmitInflight(slot: number): boolean {
    const inflight = this.inflight;
    if (this.unsent === 0 && this.send(inflight.arena, inflight.offset[slot], inflight.length[slot])) {
      inflight.time[slot] = this.clock.now();
      this.stats.sent++;
      return true;
    }
    inflight.state[slot] |= FLAG_UNSENT;
    this.unsent++;
    return false;
  }

  /** Writes the in-flight entries marked unsent, oldest first, while the transport takes them. False if some still wait. */
  private flushInflight(): boolean {
    const inflight = this.inflight;
    for (let i = 0; this.unsent > 0 && i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (!(inflight.state[slot] & FLAG_UNSENT)) continue;
      if (!this.send(inflight.arena, inflight.offset[slot], inflight.length[slot])) return false;
      inflight.state[slot] &= ~FLAG_UNSENT;
      inflight.time[slot] = this.clock.now();
      this.unsent--;
      this.stats.sent++;
    }
    return true;
  }

  /** A packet id not used by any unacknowledged request. */
  private nextPacketId(): number {
    for (;;) {
      this.packetIdCounter = this.packetIdCounter === 65535 ? 1 : this.packetIdCounter + 1;
      const id = this.packetIdCounter;
      let used = false;
      const inflight = this.inflight;
      for (let i = 0; i < inflight.count && !used; i++) used = inflight.packetId[inflight.slot(i)] === id;
      for (let i = 0; i < this.resubPackets && !used; i++) used = this.resubId[i] === id;
      if (!used) return id;
    }
  }

  // ---------------------------------------------------------------- connection life cycle

  private setState(state: State): void {
    if (state === this.currentState) return;
    this.currentState = state;
    this.emit("state", state, STATE_NAMES[state]);
  }

  private startAttempt(): void {
    this.decoder.reset();
    this.pingOutstanding = false;
    this.attemptStartedAt = this.clock.now();
    this.setState(State.Opening);
    this.schedule();
    this.transport.open(this);
  }

  /**
   * Writes bytes to the link. False if the session is not at a stage that writes, or the transport
   * has no room for them now: that is not a lost link (the transport reports closure itself), the
   * caller keeps the bytes and onTransportWritable() tells when to try again.
   */
  private send(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.currentState < State.AwaitingConnack || this.currentState === State.Closing) return false;
    const taken = this.transport.write(bytes, offset, length);
    if (!taken) {
      // Tested only off the hot path: a write that was taken costs one test, as before.
      if (taken === false) return false;
      throw invalid("transport.write() must return true (taken) or false (no room now), got " + shown(taken));
    }
    this.lastSentAt = this.clock.now();
    return true;
  }

  /**
   * Writes a packet built in `tx` that cannot wait (CONNECT, PUBACK, PINGREQ, re-subscription). The
   * transport keeps room for control packets; if it still refuses one, the broker has stopped
   * reading, and the link is given up rather than an acknowledgement lost (the broker re-delivers
   * an unacknowledged message on the next connection).
   */
  private sendControl(length: number): boolean {
    if (this.send(this.tx, 0, length)) return true;
    this.linkLost(ErrorCode.ConnectFailed, "transport has no room for a control packet of " + length + " bytes (the broker is not reading)");
    return false;
  }

  onTransportConnected(): void {
    if (this.currentState !== State.Opening) return;
    this.setState(State.AwaitingConnack);
    const end = writeConnect(this.tx, 0, this.connectFields);
    this.lastReceivedAt = this.clock.now();
    this.sendControl(end);
  }

  /** The transport has room again: write the in-flight entries that wait, then (online) the offline queue. */
  onTransportWritable(): void {
    const state = this.currentState;
    if (state < State.Resubscribing || state > State.Online) return;
    if (this.flushInflight()) this.pumpQueue();
    this.schedule();
  }

  onTransportData(bytes: Uint8Array, offset: number, length: number): void {
    // A transport's bug caught where it is made: out-of-range reads would decode as garbage.
    if (!(bytes instanceof Uint8Array) || !(offset >= 0 && length >= 0 && offset + length <= bytes.length) || (offset | 0) !== offset || (length | 0) !== length) {
      throw invalid("onTransportData(bytes, offset, length) needs a Uint8Array and a range inside it, got offset " + shown(offset) + " and length " + shown(length));
    }
    const state = this.currentState;
    if (state < State.AwaitingConnack || state === State.Closing) return;
    if (!this.decoder.feed(bytes, offset, length)) this.protocolError(this.decoder.error);
    this.rescheduleAfterIo(state);
  }

  onTransportClosed(reason: string): void {
    if (this.currentState < State.Opening || this.currentState === State.Closing) return;
    const before = this.currentState < State.Resubscribing;
    this.linkLost(ErrorCode.ConnectFailed, before ? "connection closed before CONNACK: " + reason : "connection lost: " + reason);
  }

  private protocolError(reason: string): void {
    this.stats.protocolErrors++;
    this.linkLost(ErrorCode.Protocol, "protocol error: " + reason);
  }

  /**
   * The link ended without the user asking: report it, keep every request, and schedule the next
   * attempt. A session that was up reports `offline`; a failed attempt reports `error`.
   */
  private linkLost(code: ErrorCode, reason: string): void {
    const previous = this.currentState;
    if (previous < State.Opening || previous === State.Closing) return;
    this.setState(State.Closing);
    this.transport.close();
    this.decoder.reset();
    this.resubPackets = 0;
    this.pingOutstanding = false;
    if (previous >= State.Resubscribing) this.emit("offline", reason);
    else this.emitError(code, reason);
    if (code === ErrorCode.Protocol && previous >= State.Resubscribing) this.emitError(code, reason);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (!this.wanted) {
      this.setState(State.Idle);
      this.schedule();
      return;
    }
    const delay = this.backoff.nextDelay();
    if (delay < 0) {
      this.wanted = false;
      this.setState(State.Idle);
      this.schedule();
      this.emitError(ErrorCode.GaveUp, "gave up after " + this.backoff.maxAttempts + " failed attempts");
      return;
    }
    this.reconnectDelay = delay;
    this.backoffStartedAt = this.clock.now();
    this.setState(State.Backoff);
    this.emit("reconnecting", delay, this.backoff.attempt);
    this.schedule();
  }

  private onConnack(sessionPresent: boolean): void {
    const now = this.clock.now();
    this.stats.connects++;
    this.connectedAt = now;
    this.stable = false;
    this.setState(State.Resubscribing);
    this.emit("online", sessionPresent);
    if (this.currentState !== State.Resubscribing) return; // a handler disconnected

    // Unacknowledged requests go out again, in their order, as the transport takes them; DUP tells
    // the broker it may have them (only set on those written on an earlier connection). Without a
    // session, the subscriptions go first, while the transport is empty.
    const inflight = this.inflight;
    this.unsent = 0;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.state[slot] & FLAG_ACKED) continue;
      if (!(inflight.state[slot] & FLAG_UNSENT)) {
        if (sessionPresent && inflight.kind[slot] === RequestKind.Publish) markDuplicate(inflight.arena, inflight.offset[slot]);
        this.stats.resent++;
      }
      inflight.state[slot] |= FLAG_UNSENT;
      this.unsent++;
    }
    if (!sessionPresent && !this.resubscribeAll()) return;
    this.flushInflight();
    if (this.currentState === State.Resubscribing && this.resubPackets === 0) this.startDrain();
  }

  /** Re-sends every confirmed subscription, up to 8 filters per SUBSCRIBE. False if the link failed. */
  private resubscribeAll(): boolean {
    const count = this.subFilter.length;
    let slotsUsed = 0;
    let index = 0;
    while (index < count) {
      // Gather the next batch of active subscriptions that fits one packet.
      const first = slotsUsed;
      let filterBytes = 0;
      for (; index < count && slotsUsed - first < FILTERS_PER_SUBSCRIBE; index++) {
        if (this.subStatus[index] !== SUB_ACTIVE) continue;
        const bytes = utf8Length(this.subFilter[index] as string);
        if (packetSize(subscribeRemaining(slotsUsed - first + 1, filterBytes + bytes, true)) > this.maxPacketBytes) break;
        filterBytes += bytes;
        this.resubSlots[slotsUsed++] = index;
      }
      const batch = slotsUsed - first;
      if (batch === 0) break;
      const id = this.nextPacketId();
      let at = writeSubscribeHeader(this.tx, 0, true, subscribeRemaining(batch, filterBytes, true), id);
      for (let k = first; k < slotsUsed; k++) {
        const slot = this.resubSlots[k];
        const filter = this.subFilter[slot] as string;
        at = writeFilter(this.tx, at, filter, utf8Length(filter), this.subQos[slot]);
      }
      this.resubId[this.resubPackets] = id;
      this.resubFirst[this.resubPackets] = first;
      this.resubCount[this.resubPackets] = batch;
      this.resubPackets++;
      if (!this.sendControl(at)) return false;
    }
    return true;
  }

  private startDrain(): void {
    if (this.queue.count === 0) {
      this.setState(State.Online);
      this.emit("restored");
      return;
    }
    this.setState(State.Draining);
    this.lastDrainAt = this.clock.now();
    this.drainTick();
  }

  /** One request out of the queue per drain interval; `restored` once it is empty. */
  private drainTick(): void {
    if (this.currentState !== State.Draining) return;
    this.lastDrainAt = this.clock.now();
    if (this.queue.count > 0 && !this.sendQueuedHead()) return;
    if (this.currentState === State.Draining && this.queue.count === 0) {
      this.setState(State.Online);
      this.emit("restored");
    }
  }

  // ---------------------------------------------------------------- inbound packets

  onPacket(decoder: PacketDecoder): void {
    this.stats.received++;
    // Liveness counts whole packets, not bytes: a peer that trickles bytes of a packet it never
    // finishes is as dead as a silent one.
    this.lastReceivedAt = this.clock.now();
    this.pingOutstanding = false;
    const state = this.currentState;
    if (decoder.type === PacketType.Connack) {
      if (state !== State.AwaitingConnack) return this.protocolError("unexpected second CONNACK");
      if (decoder.returnCode !== 0) {
        const name = connackName(decoder.returnCode);
        this.linkLost(ErrorCode.ConnectionRefused, "connection refused: " + name + " (CONNACK " + decoder.returnCode + ")");
        return;
      }
      this.onConnack(decoder.sessionPresent);
      return;
    }
    if (state === State.AwaitingConnack) return this.protocolError("packet type " + decoder.type + " before CONNACK");
    switch (decoder.type) {
      case PacketType.Publish:
        return this.onPublish(decoder);
      case PacketType.Puback:
        return this.onAck(decoder.packetId, RequestKind.Publish, decoder);
      case PacketType.Suback:
        for (let k = 0; k < this.resubPackets; k++) {
          if (this.resubId[k] === decoder.packetId) return this.onResubscribeAck(k, decoder);
        }
        return this.onAck(decoder.packetId, RequestKind.Subscribe, decoder);
      case PacketType.Unsuback:
        return this.onAck(decoder.packetId, RequestKind.Unsubscribe, decoder);
      default:
        return; // PINGRESP: receiving it already proved the link alive
    }
  }

  private onPublish(decoder: PacketDecoder): void {
    const message = this.message;
    message.topic = decoder.topic();
    if (decoder.payloadStart !== this.payloadViewStart || decoder.payloadEnd !== this.payloadViewEnd) {
      this.payloadView = decoder.body.subarray(decoder.payloadStart, decoder.payloadEnd);
      this.payloadViewStart = decoder.payloadStart;
      this.payloadViewEnd = decoder.payloadEnd;
    }
    message.payload = this.payloadView;
    message.qos = decoder.qos;
    message.retain = decoder.retain;
    message.dup = decoder.dup;
    message.packetId = decoder.packetId;
    const topic = message.topic;
    const packetId = decoder.packetId;
    const qos = decoder.qos;
    let handled = false;
    for (let i = 0; i < this.subFilter.length; i++) {
      const filter = this.subFilter[i];
      const handler = this.subHandler[i];
      if (filter !== undefined && handler !== undefined && topicMatches(filter, topic)) {
        handled = true;
        this.call(handler as Callback, message, undefined, undefined);
      }
    }
    const handler = this.handlers.message;
    if (handler) this.call(handler as Callback, message, undefined, undefined);
    else if (!handled) this.stats.unhandled++;
    if (qos === 1) {
      writePuback(this.tx, 0, packetId);
      this.sendControl(PUBACK_BYTES);
    }
  }

  private onAck(packetId: number, kind: RequestKind, decoder: PacketDecoder): void {
    const inflight = this.inflight;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.packetId[slot] !== packetId || inflight.state[slot] & FLAG_ACKED) continue;
      if (inflight.kind[slot] !== kind) break;
      const timedOut = (inflight.state[slot] & FLAG_TIMED_OUT) !== 0;
      const onAck = inflight.callback[slot];
      let status = AckStatus.Acknowledged;
      let detail = 0;
      if (kind === RequestKind.Subscribe) {
        detail = decoder.body[2];
        const filter = firstTopicOf(inflight.arena, inflight.offset[slot]);
        if (detail === 0x80) status = AckStatus.Refused;
        this.settleSubscription(filter, detail);
      } else if (kind === RequestKind.Unsubscribe) {
        const index = this.findSubscription(firstTopicOf(inflight.arena, inflight.offset[slot]));
        if (index >= 0 && this.subStatus[index] === SUB_REMOVING) this.removeSubscription(index);
      }
      if (inflight.state[slot] & FLAG_UNSENT) {
        inflight.state[slot] &= ~FLAG_UNSENT;
        this.unsent--;
      }
      inflight.state[slot] |= FLAG_ACKED;
      inflight.callback[slot] = undefined;
      while (inflight.count > 0 && inflight.state[inflight.oldest()] & FLAG_ACKED) inflight.shift();
      if (timedOut) this.stats.lateAcknowledged++;
      else {
        this.stats.acknowledged++;
        if (onAck) this.callAck(onAck, status, packetId, detail);
      }
      this.pumpQueue();
      return;
    }
    this.protocolError(REQUEST_KIND_NAMES[kind] + " acknowledgement for unknown packet id " + packetId);
  }

  /** Records a SUBACK result for one filter. */
  private settleSubscription(filter: string, code: number): void {
    const index = this.findSubscription(filter);
    if (index < 0 || this.subStatus[index] === SUB_REMOVING) return;
    if (code === 0x80) {
      this.removeSubscription(index);
      this.emitError(ErrorCode.SubscriptionRefused, "broker refused the subscription to " + filter);
    } else {
      this.subStatus[index] = SUB_ACTIVE;
    }
  }

  private onResubscribeAck(k: number, decoder: PacketDecoder): void {
    const first = this.resubFirst[k];
    const count = this.resubCount[k];
    if (decoder.remaining - 2 !== count) return this.protocolError("SUBACK with " + (decoder.remaining - 2) + " return codes for " + count + " filters");
    for (let i = 0; i < count; i++) {
      const filter = this.subFilter[this.resubSlots[first + i]];
      if (filter !== undefined) this.settleSubscription(filter, decoder.body[2 + i]);
    }
    // Remove entry k, keeping the others in order.
    this.resubPackets--;
    for (let j = k; j < this.resubPackets; j++) {
      this.resubId[j] = this.resubId[j + 1];
      this.resubFirst[j] = this.resubFirst[j + 1];
      this.resubCount[j] = this.resubCount[j + 1];
    }
    if (this.resubPackets === 0 && this.currentState === State.Resubscribing) this.startDrain();
  }

  private findSubscription(filter: string): number {
    const filters = this.subFilter;
    for (let i = 0; i < filters.length; i++) if (filters[i] === filter) return i;
    return -1;
  }

  private removeSubscription(index: number): void {
    this.subFilter[index] = undefined;
    this.subHandler[index] = undefined;
    this.subStatus[index] = SUB_EMPTY;
  }

  /** Filters currently recorded (pending, active or being removed), for status displays. */
  subscriptionCount(): number {
    let count = 0;
    for (let i = 0; i < this.subStatus.length; i++) if (this.subStatus[i] !== SUB_EMPTY) count++;
    return count;
  }

  // ---------------------------------------------------------------- time

  /** Whether `interval` ms have passed since `since`. */
  private elapsed(now: number, since: number, interval: number): boolean {
    return ((now - since) | 0) >= interval;
  }

  /** Milliseconds until `interval` has passed since `since` (0 if it has). */
  private remaining(now: number, since: number, interval: number): number {
    const left = interval - ((now - since) | 0);
    return left > 0 ? left : 0;
  }

  /** The nearest deadline from now, or -1 when nothing is due. */
  private nextDeadline(now: number): number {
    let due = -1;
    const state = this.currentState;
    if (state === State.Backoff) due = this.remaining(now, this.backoffStartedAt, this.reconnectDelay);
    else if (state === State.Opening || state === State.AwaitingConnack) due = this.remaining(now, this.attemptStartedAt, this.connectTimeoutMs);
    else if (state >= State.Resubscribing && state <= State.Online) {
      if (this.keepAliveMs > 0) {
        const keepAlive = this.keepAliveMs;
        due = earliest(due, this.remaining(now, this.lastReceivedAt, keepAlive + (keepAlive >> 1)));
        if (!this.pingOutstanding) {
          due = earliest(due, this.remaining(now, this.lastSentAt, keepAlive));
          due = earliest(due, this.remaining(now, this.lastReceivedAt, keepAlive));
        }
      }
      if (!this.stable) due = earliest(due, this.remaining(now, this.connectedAt, this.backoff.stableMs));
      if (state === State.Draining) due = earliest(due, this.remaining(now, this.lastDrainAt, this.drainIntervalMs));
    }
    const inflight = this.inflight;
    for (let i = 0; state !== State.Idle && i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.state[slot] !== 0) continue;
      // Entries go out in order, so the first one still waiting is the first to time out.
      due = earliest(due, this.remaining(now, inflight.time[slot], this.operationTimeoutMs));
      break;
    }
    return due;
  }

  /** Arms the timer for the nearest deadline, unless it is already armed for an earlier one. */
  private schedule(): void {
    const now = this.clock.now();
    const due = this.nextDeadline(now);
    if (due < 0) {
      if (this.timerArmed) this.clock.clearTimer();
      this.timerArmed = false;
      return;
    }
    if (this.timerArmed && this.remaining(now, this.timerArmedAt, this.timerDueIn) <= due) return;
    this.timerArmed = true;
    this.timerArmedAt = now;
    this.timerDueIn = due;
    this.clock.setTimer(due, this.onTimer);
  }

  /**
   * schedule(), skipped when it cannot change anything: within one state, reading and writing only
   * move deadlines later or add one at now + operationTimeoutMs (a request written), so an armed
   * timer due no later than that still stands (if it wakes early, service() re-arms it). Saves the
   * deadline scan on every publish and acknowledgement in the steady state.
   */
  private rescheduleAfterIo(stateBefore: State): void {
    if (this.currentState === stateBefore && this.timerArmed && this.remaining(this.clock.now(), this.timerArmedAt, this.timerDueIn) <= this.operationTimeoutMs) return;
    this.schedule();
  }

  /** The timer fired: act on every deadline that has passed, then re-arm. */
  private service(): void {
    this.timerArmed = false;
    const now = this.clock.now();
    const state = this.currentState;
    if (state === State.Backoff) {
      if (this.elapsed(now, this.backoffStartedAt, this.reconnectDelay)) this.startAttempt();
    } else if (state === State.Opening || state === State.AwaitingConnack) {
      if (this.elapsed(now, this.attemptStartedAt, this.connectTimeoutMs)) {
        this.linkLost(ErrorCode.ConnectTimeout, "no CONNACK within " + this.connectTimeoutMs + " ms (" + (state === State.Opening ? "TCP/TLS not established" : "CONNECT sent") + ")");
      }
    } else if (state >= State.Resubscribing && state <= State.Online) {
      this.serviceSession(now);
    }
    this.serviceTimeouts(now);
    this.schedule();
  }

  private serviceSession(now: number): void {
    if (!this.stable && this.elapsed(now, this.connectedAt, this.backoff.stableMs)) {
      this.stable = true;
      this.backoff.reset();
    }
    const keepAlive = this.keepAliveMs;
    if (keepAlive > 0) {
      if (this.elapsed(now, this.lastReceivedAt, keepAlive + (keepAlive >> 1))) {
        this.linkLost(ErrorCode.KeepAliveTimeout, "keep-alive timeout: nothing received for " + ((now - this.lastReceivedAt) | 0) + " ms");
        return;
      }
      if (!this.pingOutstanding && (this.elapsed(now, this.lastSentAt, keepAlive) || this.elapsed(now, this.lastReceivedAt, keepAlive))) {
        writePingreq(this.tx, 0);
        if (!this.sendControl(PINGREQ_BYTES)) return;
        this.pingOutstanding = true;
      }
    }
    if (this.currentState === State.Draining && this.elapsed(now, this.lastDrainAt, this.drainIntervalMs)) this.drainTick();
  }

  /** Reports each in-flight request whose acknowledgement is late, once; it stays in flight. */
  private serviceTimeouts(now: number): void {
    const inflight = this.inflight;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.state[slot] !== 0) continue;
      if (!this.elapsed(now, inflight.time[slot], this.operationTimeoutMs)) break;
      inflight.state[slot] |= FLAG_TIMED_OUT;
      this.stats.timedOut++;
      const onAck = inflight.callback[slot];
      inflight.callback[slot] = undefined;
      if (onAck) this.callAck(onAck, AckStatus.TimedOut, inflight.packetId[slot], 0);
    }
  }

  // ---------------------------------------------------------------- events

  private emit(event: EventName, first?: unknown, second?: unknown): void {
    const handler = this.handlers[event];
    if (handler) this.call(handler as Callback, first, second, undefined);
  }

  private emitError(code: ErrorCode, message: string): void {
    const handler = this.handlers.error;
    if (handler) this.call(handler as Callback, new IoTLinkError(code, message), undefined, undefined);
  }

  private callAck(onAck: AckCallback, status: number, packetId: number, detail: number): void {
    this.call(onAck as Callback, status, packetId, detail);
  }

  /**
   * Calls user code; a throw is reported as an `error` event and the client carries on. Fixed
   * arguments rather than a rest parameter: no array is allocated per message.
   */
  private call(handler: Callback, first: unknown, second: unknown, third: unknown): void {
    try {
      handler(first, second, third);
    } catch (thrown) {
      this.stats.callbackErrors++;
      const errorHandler = this.handlers.error;
      if (errorHandler && handler !== errorHandler) {
        const text = thrown instanceof Error ? thrown.message : String(thrown);
        try {
          errorHandler(new IoTLinkError(ErrorCode.Callback, "a callback threw: " + text));
        } catch {
          // An error handler that throws has nowhere left to report to.
        }
      }
    }
  }
}

type Callback = (first: unknown, second: unknown, third: unknown) => void;

function earliest(due: number, ms: number): number {
  return due < 0 || ms < due ? ms : due;
}

const EVENT_NAMES: { [K in EventName]: true } = {
  online: true, offline: true, restored: true, message: true, drop: true, reconnecting: true, state: true, error: true,
};
