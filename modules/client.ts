// The public API of the MQTT client. Each call checks its arguments (nothing changes when one is
// invalid), hands the work to the session, then delivers the events the work recorded, so a
// listener always sees the state they report complete, and may call anything here.
//
// The path of one message: client (checks) → session (state) → outbox (queue or window) → Transport.
// Back: Transport → client → session → packet decoder → session → outbox (release) → events.

import { Events } from "./events";
import { checkOptionalFunction, checkQos, type ClientOptions, payloadProblem, resolveOptions, toPayload } from "./options";
import { packetSize, type Payload, payloadLength, publishRemaining, subscribeRemaining } from "./packet";
import type { AckCallback } from "./ring";
import { type ClientStats, Session } from "./session";
import type { InboundMessage, MessageHandler } from "./subscriptions";
import { topicFilterProblem, topicNameProblem, utf8Length } from "./topic";
import { type Accepted, ErrorCode, invalid, IoTLinkError, shown, type State, STATE_NAMES, type TimerUser, type TransportSink } from "./types";

export { checkOptionalFunction, checkQos, connectBinaryProblem, DEFAULT_MAX_PACKET_BYTES, queueStoreProblem, SMALLEST_REQUEST_BYTES, willProblem } from "./options";
export type { ClientOptions, WillSettings } from "./options";
export type { ClientStats } from "./session";
export type { InboundMessage, MessageHandler } from "./subscriptions";
export type { QueueStore } from "./types";

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

export class MqttClient implements TransportSink {
  readonly clientId: string;
  readonly keepAliveMs: number;
  readonly maxPacketBytes: number;
  readonly stats: ClientStats;
  private readonly events: Events;
  private readonly session: Session;
  /** The last topic publish() validated, and its UTF-8 length (0: none yet; a valid topic has at least 1 byte). */
  private lastTopic = "";
  private lastTopicBytes = 0;

  constructor(options: ClientOptions) {
    const settings = resolveOptions(options);
    this.clientId = settings.connectFields.clientId;
    this.keepAliveMs = settings.keepAliveMs;
    this.maxPacketBytes = settings.maxPacketBytes;
    const session = new Session(settings, this, () => {
      session.service();
      this.events.deliver();
    });
    this.session = session;
    this.events = session.events;
    this.stats = session.stats;
  }

  get state(): State {
    return this.session.state;
  }

  get stateName(): string {
    return STATE_NAMES[this.session.state];
  }

  /** Requests waiting in the offline queue. */
  get queuedCount(): number {
    return this.session.outbox.queue.count;
  }

  /** Requests in the in-flight window: sent (or waiting for room in the transport) and not yet acknowledged. */
  get inflightCount(): number {
    return this.session.outbox.inflight.count;
  }

  /** The packet id given to the last request that went into the in-flight window. */
  get lastPacketId(): number {
    return this.session.outbox.lastPacketId;
  }

  /** Failed attempts since the last stable connection. */
  get attempt(): number {
    return this.session.backoff.attempt;
  }

  /** Subscriptions the broker has confirmed (and not yet confirmed removed). */
  subscriptionCount(): number {
    return this.session.subscriptions.confirmedCount();
  }

  /** The client clock's time in ms (what a TimerUser's deadlines count in). */
  now(): number {
    return this.session.now();
  }

  /**
   * Lets a layer above the client (Shadow, Jobs) put its deadlines on the client's one timer (at
   * most 4 users). Call reschedule() whenever its next deadline moves earlier.
   */
  addTimerUser(user: TimerUser): void {
    this.session.addTimerUser(user);
  }

  removeTimerUser(user: TimerUser): void {
    this.session.removeTimerUser(user);
  }

  /** Re-arms the timer after a TimerUser's deadlines changed. */
  reschedule(): void {
    this.session.schedule();
  }

  /** Adds a listener for an event (up to 4 per event; adding one twice adds it once). */
  on<K extends EventName>(event: K, listener: ClientEvents[K]): this {
    this.events.add(Events.idOf(event), listener);
    return this;
  }

  /** Removes a listener added with on(). */
  off<K extends EventName>(event: K, listener: ClientEvents[K]): this {
    this.events.remove(Events.idOf(event), listener);
    return this;
  }

  /** Starts connecting, and keeps the session up until disconnect(). Returns false if already under way. */
  connect(): boolean {
    const started = this.session.connect();
    this.events.deliver();
    return started;
  }

  /**
   * Ends the session: what the transport already took goes out, then DISCONNECT, then the link
   * closes and `offline` follows. Subscriptions and unsent requests are kept for a later connect().
   */
  disconnect(): void {
    this.session.disconnect();
    this.events.deliver();
  }

  /**
   * Publishes a message. Returns Accepted.Sent (written to the transport), Accepted.Queued (kept for
   * recovery, for a free in-flight slot or for room in the transport) or Accepted.Dropped (queue full
   * under DROP_NEWEST). Invalid input throws, and so does one that needs the offline queue while
   * queueing is off. `onAck(status)` is called once for QoS 1: acknowledged, timed out (still in
   * flight) or dropped. A QoS 0 message has no acknowledgement: its `onAck` is called only if it is dropped.
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
    const body = toPayload(payload);
    // One pass over text: its UTF-8 length, -1 when it is not valid.
    const bodyBytes = typeof body === "string" || body instanceof Uint8Array ? payloadLength(body) : -1;
    if (bodyBytes < 0) throw invalid(payloadProblem(body));
    // The checks subscribe() shares are made inline: publish is the hot path, and a call costs XS operations.
    if (qos !== 0 && qos !== 1) checkQos(qos);
    if (typeof retain !== "boolean") throw invalid("retain must be a boolean");
    if (onAck !== undefined && typeof onAck !== "function") checkOptionalFunction("onAck", onAck);
    const size = packetSize(publishRemaining(topicBytes, bodyBytes, qos));
    if (size > this.maxPacketBytes) this.checkedPacketSize("message", size);
    const accepted = this.session.publish(topic, topicBytes, body, bodyBytes, qos, retain, onAck, size);
    this.events.deliver();
    return accepted;
  }

  /**
   * Subscribes to a filter; `onMessage` receives the messages it matches (a handler given replaces
   * the filter's; without one it keeps it). Re-subscribed after every reconnect once the broker
   * confirmed it. `onAck(status, packetId, grantedQos)` reports the SUBACK.
   */
  subscribe(filter: string, qos = 0, onMessage?: MessageHandler, onAck?: AckCallback): Accepted {
    checkFilter(filter);
    checkQos(qos);
    checkOptionalFunction("onMessage", onMessage);
    checkOptionalFunction("onAck", onAck);
    const filterBytes = utf8Length(filter);
    const size = this.checkedPacketSize("SUBSCRIBE", packetSize(subscribeRemaining(1, filterBytes, true)));
    const subscriptions = this.session.subscriptions;
    if (subscriptions.slotFor(filter) < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "subscription table is full (" + subscriptions.capacity + " filters; raise maxSubscriptions)");
    const accepted = this.session.subscription(filter, filterBytes, qos, size, onMessage, onAck);
    this.events.deliver();
    return accepted;
  }

  /** Unsubscribes from a filter; its handler keeps receiving until the UNSUBACK. */
  unsubscribe(filter: string, onAck?: AckCallback): Accepted {
    checkFilter(filter);
    checkOptionalFunction("onAck", onAck);
    const filterBytes = utf8Length(filter);
    const size = this.checkedPacketSize("UNSUBSCRIBE", packetSize(subscribeRemaining(1, filterBytes, false)));
    const accepted = this.session.subscription(filter, filterBytes, -1, size, undefined, onAck);
    this.events.deliver();
    return accepted;
  }

  /** `size`, if a packet that large may be sent; else throws, naming `what`. */
  private checkedPacketSize(what: string, size: number): number {
    if (size > this.maxPacketBytes) throw invalid(what + " of " + size + " bytes exceeds maxPacketBytes (" + this.maxPacketBytes + ")");
    return size;
  }

  // ---------------------------------------------------------------- TransportSink

  onTransportConnected(): void {
    this.session.onTransportConnected();
    this.events.deliver();
  }

  onTransportData(bytes: Uint8Array, offset: number, length: number): void {
    // A transport's bug caught where it is made: out-of-range reads would decode as garbage.
    if (!(bytes instanceof Uint8Array) || !(offset >= 0 && length >= 0 && offset + length <= bytes.length) || (offset | 0) !== offset || (length | 0) !== length) {
      throw invalid("onTransportData(bytes, offset, length) needs a Uint8Array and a range inside it, got offset " + shown(offset) + " and length " + shown(length));
    }
    this.session.onTransportData(bytes, offset, length);
    this.events.deliver();
  }

  onTransportClosed(reason: string): void {
    this.session.onTransportClosed(reason);
    this.events.deliver();
  }

  onTransportWritable(): void {
    this.session.onTransportWritable();
    this.events.deliver();
  }
}

function checkFilter(filter: string): void {
  const problem = topicFilterProblem(filter);
  if (problem !== "") throw invalid(problem);
}
