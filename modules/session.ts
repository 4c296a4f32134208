// The MQTT session: connection states, CONNACK, keep-alive, backoff, recovery (resubscribe, re-send,
// a paced drain of the offline queue), acknowledgements, and the one timer that serves every
// deadline. It records events (Events.post) and never calls user code itself, except to hand over
// an inbound message, whose payload is valid only then. Each connection has a generation: work
// started for one connection (a PUBACK after a message handler) is not done on another.
// With a persist store, a request that enters the offline queue is appended to the store before the
// call returns, and acknowledged there once the client is done with it; at construction the records
// the store still holds are loaded into the queue.

import type { Backoff } from "./backoff";
import { EventId, Events } from "./events";
import { type Link, Outbox, DROPPED_NEW, HeadOutcome, queuedRequestKind, queuedRequestProblem } from "./outbox";
import {
  type ConnectFields,
  DISCONNECT_BYTES,
  firstTopicOf,
  PacketDecoder,
  type PacketSink,
  PacketType,
  type Payload,
  PINGREQ_BYTES,
  PUBACK_BYTES,
  subscribeRemaining,
  writeConnect,
  writeDisconnect,
  writeFilter,
  writePingreq,
  writePuback,
  writePublish,
  writeSubscribeHeader,
} from "./packet";
import type { Settings } from "./options";
import type { AckCallback } from "./ring";
import { type InboundMessage, type MessageHandler, SUBACK_FAILURE, Subscriptions } from "./subscriptions";
import { topicMatches } from "./topic";
import { Accepted, AckStatus, type Clock, DROP_OLDEST, type TimerUser, connackName, ErrorCode, invalid, IoTLinkError, QUEUE_STORE_FULL, type QueueStore, REQUEST_KIND_NAMES, RequestKind, shown, State, STATE_NAMES, type Transport, type TransportSink } from "./types";

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
  /** Inbound messages that matched no subscription handler while no "message" listener was set. */
  unhandled: number;
  /** Inbound messages larger than maxPacketBytes, skipped (and acknowledged if QoS 1). */
  oversized: number;
  /** Persist: requests appended to the store (each one that entered the offline queue and was kept). */
  persisted: number;
  /** Persist: requests loaded from the store into the offline queue at construction. */
  loadedFromStore: number;
}

export class Session implements PacketSink, Link {
  readonly stats: ClientStats = {
    sent: 0, queued: 0, dropped: 0, acknowledged: 0, timedOut: 0, lateAcknowledged: 0,
    resent: 0, received: 0, connects: 0, protocolErrors: 0, callbackErrors: 0, unhandled: 0, oversized: 0,
    persisted: 0, loadedFromStore: 0,
  };
  readonly outbox: Outbox;
  readonly subscriptions: Subscriptions;
  readonly backoff: Backoff;
  state = State.Idle;
  /** The user wants a connection: reconnect after losses (and after a disconnect that is still closing). */
  private wanted = false;
  /** Bumped whenever a link is opened or given up: work begun for one link is not done on the next. */
  private generation = 0;
  /** The transport refused a write and has not said it has room again. */
  private blocked = false;
  /**
   * Inside onTransportData: requests written now (a reply from a message handler, the next queued
   * request after an acknowledgement) would put the transport's TLS write on top of the whole read
   * path, deep in a small device stack. They wait, in order, until the read returns (`deferred`).
   */
  private reading = false;
  private deferred = false;
  /** A drain tick found its request deferred by a read: it goes out when the read returns. */
  private drainDue = false;
  /** Layers above the client sharing its timer (addTimerUser). */
  private readonly timerUsers: (TimerUser | undefined)[] = [undefined, undefined, undefined, undefined];
  private timerUserCount = 0;

  private readonly transport: Transport;
  private readonly clock: Clock;
  private readonly connectFields: ConnectFields;
  private readonly keepAliveMs: number;
  private readonly connectTimeoutMs: number;
  private readonly operationTimeoutMs: number;
  private readonly drainIntervalMs: number;
  private readonly maxPacketBytes: number;
  private readonly tx: Uint8Array;
  private readonly decoder: PacketDecoder;
  /** Persist: where queued requests are kept across reboots (undefined: RAM only). */
  private readonly store: QueueStore | undefined;

  // Times are raw clock values; elapsed time is always ((now - then) | 0), so wrap is harmless.
  private attemptStartedAt = 0;
  private reconnectDelay = 0;
  private backoffStartedAt = 0;
  private connectedAt = 0;
  private closeStartedAt = 0;
  private resubscribeStartedAt = 0;
  private stable = false;
  /** Link: when the last write was taken. */
  lastSentAt = 0;
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

  /** What happened, for the client to deliver. */
  readonly events: Events = new Events(this.stats);

  constructor(settings: Settings, private readonly sink: TransportSink, private readonly onTimer: () => void) {
    this.transport = settings.transport;
    this.clock = settings.clock;
    this.connectFields = settings.connectFields;
    this.keepAliveMs = settings.keepAliveMs;
    this.connectTimeoutMs = settings.connectTimeoutMs;
    this.operationTimeoutMs = settings.operationTimeoutMs;
    this.drainIntervalMs = settings.drainIntervalMs;
    this.maxPacketBytes = settings.maxPacketBytes;
    this.backoff = settings.backoff;
    this.tx = new Uint8Array(settings.maxPacketBytes);
    this.decoder = new PacketDecoder(settings.maxPacketBytes, this);
    this.subscriptions = new Subscriptions(settings.maxSubscriptions, this.events);
    this.store = settings.persist;
    this.outbox = new Outbox(settings.queueBytes, settings.queueEntries, settings.inflightBytes, settings.inflightWindow, settings.dropPolicy, this.subscriptions, settings.persist !== undefined);
    if (settings.persist !== undefined && settings.persist.count > 0) this.load(settings.persist);
  }

  // ---------------------------------------------------------------- what the client asks

  connect(): boolean {
    if (this.state === State.Closing) {
      // Starts once the closing link is gone (finishClose).
      if (this.wanted) return false;
      this.wanted = true;
      return true;
    }
    if (this.state !== State.Idle) return false;
    this.wanted = true;
    this.backoff.reset();
    this.startAttempt();
    return true;
  }

  /**
   * Ends the session: with a session up, DISCONNECT follows every byte already written, and the link
   * closes when the transport has sent them (connectTimeoutMs at most); `offline` then. Otherwise
   * the attempt or the backoff stops at once.
   */
  disconnect(): void {
    this.wanted = false;
    const previous = this.state;
    if (previous === State.Idle || previous === State.Closing) return;
    if (previous >= State.Resubscribing) {
      writeDisconnect(this.tx, 0);
      if (this.transport.write(this.tx, 0, DISCONNECT_BYTES) === true) {
        this.forgetLink();
        this.closeStartedAt = this.clock.now();
        this.setState(State.Closing);
        this.transport.end();
        this.schedule();
        return;
      }
    }
    if (previous >= State.Opening) {
      this.forgetLink();
      this.transport.abort();
    }
    this.setState(State.Idle);
    this.schedule();
    if (previous >= State.Resubscribing) this.events.post(EventId.Offline, "disconnected by the client (the transport could not take DISCONNECT; the link was aborted)", undefined, 0, 0, 0);
  }

  /** A validated PUBLISH: straight out when restored and nothing waits before it, else through the queue. */
  publish(topic: string, topicBytes: number, body: Payload, bodyBytes: number, qos: number, retain: boolean, onAck: AckCallback | undefined, size: number): Accepted {
    const outbox = this.outbox;
    if (this.state === State.Online && outbox.queue.count === 0) {
      if (qos === 0) {
        // Otherwise (QoS 1 requests wait for the transport, or a read is under way and the queue
        // can keep it) it joins the queue below, which keeps the order.
        if (outbox.unsent === 0 && !(this.reading && outbox.queue.maxEntries > 0)) {
          const end = writePublish(this.tx, 0, topic, topicBytes, body, bodyBytes, 0, retain, 0);
          if (this.write(this.tx, 0, end)) {
            this.stats.sent++;
            return Accepted.Sent;
          }
        }
      } else {
        const inflight = outbox.inflight;
        const slot = inflight.push(size);
        if (slot >= 0) {
          const id = outbox.nextPacketId();
          writePublish(inflight.arena, inflight.offset[slot], topic, topicBytes, body, bodyBytes, 1, retain, id);
          inflight.kind[slot] = RequestKind.Publish;
          inflight.packetId[slot] = id;
          inflight.callback[slot] = onAck;
          const written = outbox.transmit(slot, this);
          if (written) this.stats.sent++;
          this.rescheduleAfterIo(State.Online);
          return written ? Accepted.Sent : Accepted.Queued;
        }
      }
    }
    const slot = this.reserveQueued(size, RequestKind.Publish, topic, onAck);
    if (slot < 0) return Accepted.Dropped;
    const queue = outbox.queue;
    writePublish(queue.arena, queue.offset[slot], topic, topicBytes, body, bodyBytes, qos, retain, 0);
    queue.kind[slot] = RequestKind.Publish;
    queue.callback[slot] = onAck;
    if (this.store !== undefined && !this.stored(slot, RequestKind.Publish, topic, onAck)) return Accepted.Dropped;
    return this.afterQueued(slot);
  }

  /**
   * A validated SUBSCRIBE (qos >= 0) or UNSUBSCRIBE (qos < 0) of one filter. `handler` (subscribe)
   * replaces the filter's handler when given. The table changes when the broker confirms.
   */
  subscription(filter: string, filterBytes: number, qos: number, size: number, handler: MessageHandler | undefined, onAck: AckCallback | undefined): Accepted {
    const subscribe = qos >= 0;
    const kind = subscribe ? RequestKind.Subscribe : RequestKind.Unsubscribe;
    const outbox = this.outbox;
    const remaining = subscribeRemaining(1, filterBytes, subscribe);
    if (this.state === State.Online && outbox.queue.count === 0) {
      const inflight = outbox.inflight;
      const slot = inflight.push(size);
      if (slot >= 0) {
        this.recordRequest(filter, handler, subscribe);
        const id = outbox.nextPacketId();
        const at = writeSubscribeHeader(inflight.arena, inflight.offset[slot], subscribe, remaining, id);
        writeFilter(inflight.arena, at, filter, filterBytes, qos);
        inflight.kind[slot] = kind;
        inflight.packetId[slot] = id;
        inflight.callback[slot] = onAck;
        const written = outbox.transmit(slot, this);
        if (written) this.stats.sent++;
        this.schedule();
        return written ? Accepted.Sent : Accepted.Queued;
      }
    }
    const slot = this.reserveQueued(size, kind, filter, onAck);
    if (slot < 0) return Accepted.Dropped;
    const queue = outbox.queue;
    const at = writeSubscribeHeader(queue.arena, queue.offset[slot], subscribe, remaining, 0);
    writeFilter(queue.arena, at, filter, filterBytes, qos);
    queue.kind[slot] = kind;
    queue.callback[slot] = onAck;
    // Recorded once the request is kept: a store with no room may still drop it.
    if (this.store !== undefined && !this.stored(slot, kind, filter, onAck)) return Accepted.Dropped;
    this.recordRequest(filter, handler, subscribe);
    return this.afterQueued(slot);
  }

  private recordRequest(filter: string, handler: MessageHandler | undefined, subscribe: boolean): void {
    const subscriptions = this.subscriptions;
    const index = subscribe ? subscriptions.slotFor(filter) : subscriptions.find(filter);
    if (index >= 0) subscriptions.requested(index, filter, handler);
  }

  /** Makes room in the offline queue by the drop policy and reserves `size` bytes; -1 if the new request is dropped. */
  private reserveQueued(size: number, kind: RequestKind, topic: string, onAck: AckCallback | undefined): number {
    const outbox = this.outbox;
    const queue = outbox.queue;
    if (queue.maxEntries === 0) {
      throw new IoTLinkError(ErrorCode.NotAccepted, this.state === State.Online
        ? "in-flight window is full (or the transport has no room) and offline queueing is disabled"
        : "not connected and offline queueing is disabled (queue size 0)");
    }
    if (size > queue.capacity) {
      throw new IoTLinkError(ErrorCode.NotAccepted, "request of " + size + " bytes is larger than the whole offline queue (" + queue.capacity + " bytes)");
    }
    for (;;) {
      const slot = outbox.enqueue(size);
      if (slot >= 0) {
        this.stats.queued++;
        return slot;
      }
      this.stats.dropped++;
      if (slot === DROPPED_NEW) {
        this.reportDrop(kind, topic, onAck);
        return -1;
      }
      this.reportDroppedOldest();
    }
  }

  /** The oldest queued request was dropped (its details in the outbox's `dropped*`): forgotten by the store and the table, then reported. */
  private reportDroppedOldest(): void {
    const outbox = this.outbox;
    if (outbox.droppedSeq !== 0) {
      this.forgetStored(outbox.droppedSeq);
      outbox.droppedSeq = 0;
    }
    // A SUBSCRIBE or UNSUBSCRIBE dropped never reached the broker.
    if (outbox.droppedKind !== RequestKind.Publish) this.subscriptions.abandoned(outbox.droppedTopic);
    this.reportDrop(outbox.droppedKind, outbox.droppedTopic, outbox.droppedCallback);
    outbox.droppedTopic = "";
    outbox.droppedCallback = undefined;
  }

  /**
   * Persist: appends the request just queued in `slot` (the newest) to the store, straight from the
   * queue's arena, before the call returns. A full store follows the drop policy: DROP_NEWEST drops
   * this request; DROP_OLDEST drops the oldest queued request and tries again, as long as that one
   * is the store's oldest record (a store frees room from its oldest: when the oldest record is a
   * request in flight, awaiting its acknowledgement, dropping queued ones would free nothing, so this
   * request is dropped instead). False when this request was dropped (released and reported). A
   * store that throws leaves nothing queued, and the call throws.
   */
  private stored(slot: number, kind: RequestKind, topic: string, onAck: AckCallback | undefined): boolean {
    const outbox = this.outbox;
    const queue = outbox.queue;
    const store = this.store as QueueStore;
    for (;;) {
      let seq: number;
      try {
        seq = store.append(queue.arena, queue.offset[slot], queue.length[slot]);
        // A sequence number is a whole number from 1 to 2^32 - 1: `>>> 0` keeps exactly those unchanged.
        if (seq !== QUEUE_STORE_FULL && (seq >>> 0 !== seq || seq === 0)) throw invalid("persist.append() must return a sequence number from 1 to 4294967295, or -1 when full; got " + shown(seq));
      } catch (thrown) {
        outbox.unreserve(slot);
        this.stats.queued--;
        throw thrown;
      }
      if (seq !== QUEUE_STORE_FULL) {
        outbox.queueSeq[slot] = seq;
        this.stats.persisted++;
        return true;
      }
      this.stats.dropped++;
      if (outbox.dropPolicy === DROP_OLDEST && queue.count > 1 && store.count > 0 && store.seqAt(0) === outbox.queueSeq[queue.oldest()]) {
        outbox.dropOldest();
        this.reportDroppedOldest();
        continue;
      }
      outbox.unreserve(slot);
      this.stats.queued--;
      this.reportDrop(kind, topic, onAck);
      return false;
    }
  }

  /**
   * Persist: the client is done with the request stored as `seq` (written, acknowledged, dropped).
   * A store that fails here is reported, and the client carries on: the record stays, so the request
   * is sent again after a reboot (at least once, never lost).
   */
  private forgetStored(seq: number): void {
    let problem: string;
    try {
      if ((this.store as QueueStore).acknowledge(seq) === true) return;
      problem = "the store holds no such record";
    } catch (thrown) {
      problem = thrown instanceof Error ? thrown.message : String(thrown);
    }
    this.events.postError(ErrorCode.Store, "persist: acknowledging record " + seq + " failed (" + problem + "); its request may be sent again after a reboot");
  }

  /**
   * Boot: the store's records, oldest first, into the empty offline queue, each the request as it
   * was queued; they drain after the first connection as any queued request (each gets a new packet
   * id, so a request sent before the reboot and not acknowledged goes out again as a new PUBLISH:
   * at least once). A SUBSCRIBE is recorded as requested, without a handler: its messages reach the
   * "message" event. A store the queue cannot hold is refused here, the store untouched (never a
   * record lost in silence); a record that is not a valid request is dropped from the store and
   * reported (an error event, delivered at the client's first call).
   */
  private load(store: QueueStore): void {
    const count = store.count;
    const queue = this.outbox.queue;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const length = store.lengthAt(i);
      if (typeof length !== "number" || !(length >= 0 && length <= this.maxPacketBytes) || (length | 0) !== length) {
        throw invalid("persist: the store's record " + (i + 1) + " of " + count + " has " + shown(length) + " bytes, over maxPacketBytes (" + this.maxPacketBytes + "): build the client with the settings the store was written with");
      }
      bytes += length;
    }
    if (count > queue.maxEntries || bytes > queue.capacity) {
      throw invalid("persist: the store holds " + count + " requests of " + bytes + " bytes, more than the offline queue takes (queueEntries " + queue.maxEntries + ", queueBytes " + queue.capacity + "): raise them to at least " + count + " and " + bytes);
    }
    const outbox = this.outbox;
    let corrupt: number[] | undefined;
    let problems = "";
    for (let i = 0; i < count; i++) {
      const seq = store.seqAt(i);
      if (typeof seq !== "number" || seq >>> 0 !== seq || seq === 0) throw invalid("persist.seqAt(" + i + ") must be a sequence number from 1 to 4294967295, got " + shown(seq));
      const length = store.lengthAt(i);
      // The queue is empty and holds them all: each goes right after the one before, never wrapped.
      const slot = queue.push(length);
      const offset = queue.offset[slot];
      store.readAt(i, queue.arena.subarray(offset, offset + length));
      const problem = queuedRequestProblem(queue.arena, offset, length);
      if (problem !== "") {
        outbox.unreserve(slot);
        corrupt ??= [];
        corrupt.push(seq);
        problems += (problems === "" ? "" : "; ") + "record " + seq + ": " + problem;
        continue;
      }
      const kind = queuedRequestKind(queue.arena[offset]);
      queue.kind[slot] = kind;
      outbox.queueSeq[slot] = seq;
      if (kind !== RequestKind.Publish) {
        const filter = firstTopicOf(queue.arena, offset);
        const subscriptions = this.subscriptions;
        const index = kind === RequestKind.Subscribe ? subscriptions.slotFor(filter) : subscriptions.find(filter);
        if (kind === RequestKind.Subscribe && index < 0) {
          throw invalid("persist: the store's subscriptions need more than maxSubscriptions (" + subscriptions.capacity + ") filters: raise it");
        }
        if (index >= 0) subscriptions.requested(index, filter, undefined);
      }
      this.stats.loadedFromStore++;
    }
    // Only now, when nothing can refuse the store any more.
    if (corrupt !== undefined) {
      for (let i = 0; i < corrupt.length; i++) this.forgetStored(corrupt[i]);
      this.events.postError(ErrorCode.Store, "persist: " + corrupt.length + " record(s) of the store are not valid requests and were dropped from it (" + problems + ")");
    }
  }

  private reportDrop(kind: number, topic: string, onAck: AckCallback | undefined): void {
    this.events.post(EventId.Drop, REQUEST_KIND_NAMES[kind], topic, 0, 0, 0);
    if (onAck) this.events.ack(onAck, AckStatus.Dropped, 0, 0);
  }

  /** After a request went into the queue: send what may go now; Queued unless the request itself was written. */
  private afterQueued(slot: number): Accepted {
    this.pumpQueue();
    this.schedule();
    return this.outbox.queueHolds(slot) || this.outbox.unsent > 0 ? Accepted.Queued : Accepted.Sent;
  }

  /** Restored: sends queued requests while the window and the transport take them. */
  private pumpQueue(): void {
    const outbox = this.outbox;
    while (this.state === State.Online && outbox.queue.count > 0) {
      const outcome = outbox.sendQueuedHead(this);
      if (outcome !== HeadOutcome.Written) break;
      this.stats.sent++;
      if (outbox.writtenSeq !== 0) this.forgetWritten();
    }
  }

  /** Persist: a queued QoS 0 PUBLISH was written to the transport; it has no acknowledgement to wait for. */
  private forgetWritten(): void {
    const seq = this.outbox.writtenSeq;
    this.outbox.writtenSeq = 0;
    this.forgetStored(seq);
  }

  // ---------------------------------------------------------------- the link

  /** Link: writes a request to the transport, or false: not now (during a read: see `reading`), not at this stage, or no room. */
  send(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.reading) {
      this.deferred = true;
      return false;
    }
    return this.write(bytes, offset, length);
  }

  now(): number {
    return this.clock.now();
  }

  /** Writes to the transport. False if the session is not at a stage that writes, or the transport has no room now. */
  private write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.state < State.AwaitingConnack || this.state === State.Closing) return false;
    const taken = this.transport.write(bytes, offset, length);
    if (!taken) {
      // Tested only off the hot path: a write that was taken costs one test.
      if (taken !== false) throw invalid("transport.write() must return true (taken) or false (no room now), got " + shown(taken));
      this.blocked = true;
      return false;
    }
    this.lastSentAt = this.clock.now();
    return true;
  }

  /**
   * Writes a packet built in `tx` that cannot wait (CONNECT, PUBACK, PINGREQ, resubscription). The
   * transport keeps room for control packets; if it still refuses one, the broker has stopped
   * reading, and the link is given up rather than an acknowledgement lost (the broker re-delivers
   * an unacknowledged message on the next connection).
   */
  private sendControl(length: number): boolean {
    if (this.write(this.tx, 0, length)) return true;
    this.linkLost(ErrorCode.ConnectFailed, "transport has no room for a control packet of " + length + " bytes (the broker is not reading)");
    return false;
  }

  private setState(state: State): void {
    if (state === this.state) return;
    this.state = state;
    this.events.post(EventId.State, STATE_NAMES[state], undefined, state, 0, 0);
  }

  private startAttempt(): void {
    this.forgetLink();
    this.attemptStartedAt = this.clock.now();
    this.setState(State.Opening);
    this.schedule();
    this.transport.open(this.sink);
  }

  /** Whatever belonged to the last link: a partial packet, a ping, resubscription batches, a refusal. */
  private forgetLink(): void {
    this.generation++;
    this.drainDue = false;
    this.decoder.reset();
    this.pingOutstanding = false;
    this.blocked = false;
    this.subscriptions.cancelResubscribe();
  }

  onTransportConnected(): void {
    if (this.state !== State.Opening) return;
    this.setState(State.AwaitingConnack);
    const end = writeConnect(this.tx, 0, this.connectFields);
    this.lastReceivedAt = this.clock.now();
    this.sendControl(end);
  }

  /** The transport has room again: write what waits. */
  onTransportWritable(): void {
    if (this.state < State.Resubscribing || this.state > State.Online) return;
    this.blocked = false;
    this.writeWaiting();
    this.schedule();
  }

  /** The in-flight entries marked unsent, then the queue (restored) or the next drained request. */
  private writeWaiting(): void {
    const state = this.state;
    if (state < State.Resubscribing || state > State.Online) return;
    this.stats.sent += this.outbox.flushUnsent(this);
    if (this.outbox.unsent === 0) {
      if (state === State.Online) this.pumpQueue();
      else if (state === State.Draining && (this.drainDue || this.elapsed(this.clock.now(), this.lastDrainAt, this.drainIntervalMs))) {
        this.drainDue = false;
        this.drainTick();
      }
    }
  }

  onTransportData(bytes: Uint8Array, offset: number, length: number): void {
    const state = this.state;
    if (state < State.AwaitingConnack || state === State.Closing) return;
    this.reading = true;
    const ok = this.decoder.feed(bytes, offset, length);
    this.reading = false;
    if (!ok) this.protocolError(this.decoder.error);
    if (this.deferred) {
      this.deferred = false;
      this.writeWaiting();
    } else if (state === State.Online && this.state === State.Online && this.timerArmed) {
      // Restored, a read that wrote no request only moves deadlines later (received, PUBACK
      // written, requests released): the armed timer stands.
      return;
    }
    this.rescheduleAfterIo(state);
  }

  onTransportClosed(reason: string): void {
    const state = this.state;
    if (state === State.Closing) return this.finishClose();
    if (state < State.Opening) return;
    this.linkLost(ErrorCode.ConnectFailed, state < State.Resubscribing ? "connection closed before CONNACK: " + reason : "connection lost: " + reason);
  }

  /** A disconnect's link is gone: idle, or straight into the connection connect() asked for meanwhile. */
  private finishClose(): void {
    this.setState(State.Idle);
    this.events.post(EventId.Offline, "disconnected by the client", undefined, 0, 0, 0);
    if (this.wanted) {
      this.backoff.reset();
      this.startAttempt();
    } else {
      this.schedule();
    }
  }

  private protocolError(reason: string): void {
    this.stats.protocolErrors++;
    this.linkLost(ErrorCode.Protocol, "protocol error: " + reason);
  }

  /**
   * The link ended without the user asking: report it, keep every request, and schedule the next
   * attempt. A session that was up reports `offline` (and an `error` when the client ended it for a
   * fault of the broker's); a failed attempt reports `error`.
   */
  private linkLost(code: ErrorCode, reason: string): void {
    const previous = this.state;
    if (previous < State.Opening || previous === State.Closing) return;
    this.forgetLink();
    this.transport.abort();
    if (previous >= State.Resubscribing) {
      this.events.post(EventId.Offline, reason, undefined, 0, 0, 0);
      if (code === ErrorCode.Protocol || code === ErrorCode.ResubscribeTimeout) this.events.postError(code, reason);
    } else {
      this.events.postError(code, reason);
    }
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
      this.events.postError(ErrorCode.GaveUp, "gave up after " + this.backoff.maxAttempts + " failed attempts");
      return;
    }
    this.reconnectDelay = delay;
    this.backoffStartedAt = this.clock.now();
    this.setState(State.Backoff);
    this.events.post(EventId.Reconnecting, undefined, undefined, delay, this.backoff.attempt, 0);
    this.schedule();
  }

  private onConnack(sessionPresent: boolean): void {
    // MQTT 3.1.1 section 3.2.2.2: a clean session never has a session present; believing it would skip resubscription.
    if (sessionPresent && this.connectFields.cleanSession) return this.protocolError("CONNACK with session present in answer to a clean-session CONNECT");
    const now = this.clock.now();
    this.stats.connects++;
    this.connectedAt = now;
    this.stable = false;
    this.setState(State.Resubscribing);
    this.events.post(EventId.Online, undefined, undefined, sessionPresent ? 1 : 0, 0, 0);
    // Without a session the subscriptions go first, while the transport is empty; then the
    // unacknowledged requests again, in their order, as the transport takes them.
    this.stats.resent += this.outbox.prepareResend(sessionPresent);
    if (!sessionPresent) {
      const subscriptions = this.subscriptions;
      subscriptions.beginResubscribe();
      this.resubscribeStartedAt = now;
      while (subscriptions.hasBatchToWrite()) {
        const end = subscriptions.writeBatch(this.tx, this.maxPacketBytes, this.outbox.nextPacketId());
        if (!this.sendControl(end)) return;
      }
    }
    this.stats.sent += this.outbox.flushUnsent(this);
    if (this.subscriptions.batches === 0) this.startDrain();
  }

  private startDrain(): void {
    if (this.outbox.queue.count === 0) return this.restored();
    this.setState(State.Draining);
    this.drainTick();
  }

  private restored(): void {
    this.setState(State.Online);
    this.events.post(EventId.Restored, undefined, undefined, 0, 0, 0);
  }

  /**
   * One queued request out, when the window and the transport can take it; `restored` once the
   * queue is empty. When they cannot, nothing is re-armed: the acknowledgement or the transport's
   * onTransportWritable() that makes room calls again.
   */
  private drainTick(): void {
    const outbox = this.outbox;
    if (outbox.queue.count > 0) {
      if (this.blocked || !outbox.headCanGo()) return;
      const outcome = outbox.sendQueuedHead(this);
      if (outcome === HeadOutcome.Waiting) {
        if (this.reading) this.drainDue = true;
        return;
      }
      if (outcome === HeadOutcome.Written) this.stats.sent++;
      if (outbox.writtenSeq !== 0) this.forgetWritten();
      this.lastDrainAt = this.clock.now();
    }
    if (this.state === State.Draining && outbox.queue.count === 0) this.restored();
  }

  // ---------------------------------------------------------------- inbound packets

  onPacket(decoder: PacketDecoder): void {
    this.stats.received++;
    // Liveness counts whole packets, not bytes: a peer that trickles bytes of a packet it never
    // finishes is as dead as a silent one.
    this.lastReceivedAt = this.clock.now();
    this.pingOutstanding = false;
    const state = this.state;
    if (decoder.type === PacketType.Connack) {
      if (state !== State.AwaitingConnack) return this.protocolError("unexpected second CONNACK");
      if (decoder.returnCode !== 0) {
        return this.linkLost(ErrorCode.ConnectionRefused, "connection refused: " + connackName(decoder.returnCode) + " (CONNACK " + decoder.returnCode + ")");
      }
      return this.onConnack(decoder.sessionPresent);
    }
    if (state === State.AwaitingConnack) return this.protocolError("packet type " + decoder.type + " before CONNACK");
    switch (decoder.type) {
      case PacketType.Publish:
        return this.onPublish(decoder);
      case PacketType.Puback:
        return this.onAck(decoder, RequestKind.Publish);
      case PacketType.Suback: {
        const problem = this.subscriptions.resubscribeAcked(decoder);
        if (problem === "") {
          if (this.state === State.Resubscribing && this.subscriptions.batches === 0) this.startDrain();
          return;
        }
        if (problem !== "not mine") return this.protocolError(problem);
        if (decoder.remaining !== 3) return this.protocolError("SUBACK with " + (decoder.remaining - 2) + " return codes for 1 filter");
        return this.onAck(decoder, RequestKind.Subscribe);
      }
      case PacketType.Unsuback:
        return this.onAck(decoder, RequestKind.Unsubscribe);
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
    const packetId = decoder.packetId;
    message.packetId = packetId;
    const qos = decoder.qos;
    const generation = this.generation;
    const handled = this.subscriptions.dispatch(message, topicMatches);
    if (!this.events.emitNow(EventId.Message, message) && !handled) this.stats.unhandled++;
    // A handler that disconnected (and perhaps connected again) ended this message's link: the
    // broker sends it again, so no PUBACK goes out on another link.
    if (qos === 1 && generation === this.generation) this.acknowledgeInbound(packetId);
  }

  /** A PUBLISH larger than maxPacketBytes, whose body the decoder skipped: acknowledged and reported, the link stays. */
  onOversizedPublish(decoder: PacketDecoder): void {
    this.stats.received++;
    this.stats.oversized++;
    this.lastReceivedAt = this.clock.now();
    this.pingOutstanding = false;
    if (this.state === State.AwaitingConnack) return this.protocolError("packet type 3 before CONNACK");
    const topic = decoder.skippedTopic();
    this.events.postError(ErrorCode.MessageTooLarge, "inbound message of " + decoder.skippedBytes + " bytes" + (topic === "" ? "" : " on " + topic)
      + " is larger than maxPacketBytes (" + this.maxPacketBytes + "): skipped" + (decoder.qos === 1 ? " and acknowledged" : ""));
    if (decoder.qos === 1) this.acknowledgeInbound(decoder.packetId);
  }

  private acknowledgeInbound(packetId: number): void {
    writePuback(this.tx, 0, packetId);
    this.sendControl(PUBACK_BYTES);
  }

  private onAck(decoder: PacketDecoder, kind: RequestKind): void {
    const outbox = this.outbox;
    const packetId = decoder.packetId;
    const slot = outbox.find(packetId, kind);
    if (slot < 0) return this.protocolError(REQUEST_KIND_NAMES[kind] + " acknowledgement for unknown packet id " + packetId);
    const inflight = outbox.inflight;
    let status = AckStatus.Acknowledged;
    let detail = 0;
    if (kind !== RequestKind.Publish) {
      const filter = firstTopicOf(inflight.arena, inflight.offset[slot]);
      if (kind === RequestKind.Subscribe) {
        detail = decoder.body[2];
        if (detail === SUBACK_FAILURE) status = AckStatus.Refused;
        // A one-filter SUBSCRIBE ends with the QoS it asked for.
        this.subscriptions.subscribeSettled(filter, inflight.arena[inflight.offset[slot] + inflight.length[slot] - 1], detail);
      } else {
        this.subscriptions.unsubscribeSettled(filter);
      }
    }
    const onAck = inflight.callback[slot];
    if (outbox.persisted && outbox.inflightSeq[slot] !== 0) {
      // Before the callback: it sees the record gone.
      const seq = outbox.inflightSeq[slot];
      outbox.inflightSeq[slot] = 0;
      this.forgetStored(seq);
    }
    if (outbox.release(slot)) this.stats.lateAcknowledged++;
    else {
      this.stats.acknowledged++;
      if (onAck) this.events.ack(onAck, status, packetId, detail);
    }
    if (this.state === State.Online) this.pumpQueue();
    else if (this.state === State.Draining && this.elapsed(this.clock.now(), this.lastDrainAt, this.drainIntervalMs)) this.drainTick();
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
    const state = this.state;
    if (state === State.Backoff) due = this.remaining(now, this.backoffStartedAt, this.reconnectDelay);
    else if (state === State.Opening || state === State.AwaitingConnack) due = this.remaining(now, this.attemptStartedAt, this.connectTimeoutMs);
    else if (state === State.Closing) due = this.remaining(now, this.closeStartedAt, this.connectTimeoutMs);
    else if (state >= State.Resubscribing && state <= State.Online) {
      const keepAlive = this.keepAliveMs;
      if (keepAlive > 0) {
        // Inline arithmetic, not remaining()/earliest(): this runs at every wake-up of a connected device.
        const sinceReceived = (now - this.lastReceivedAt) | 0;
        due = keepAlive + (keepAlive >> 1) - sinceReceived;
        if (!this.pingOutstanding) {
          const sinceSent = (now - this.lastSentAt) | 0;
          const probe = keepAlive - (sinceSent > sinceReceived ? sinceSent : sinceReceived);
          if (probe < due) due = probe;
        }
        if (due < 0) due = 0;
      }
      if (!this.stable) due = earliest(due, this.remaining(now, this.connectedAt, this.backoff.stableMs));
      if (state === State.Resubscribing && this.subscriptions.batches > 0) due = earliest(due, this.remaining(now, this.resubscribeStartedAt, this.operationTimeoutMs));
      // Only while the head can go: a full window or transport wakes the drain by its own event.
      if (state === State.Draining && !this.blocked && this.outbox.headCanGo()) due = earliest(due, this.remaining(now, this.lastDrainAt, this.drainIntervalMs));
    }
    if (state !== State.Idle && this.outbox.inflight.count > 0) due = earliest(due, this.outbox.nextDeadline(now, this.operationTimeoutMs));
    for (let i = 0; this.timerUserCount > 0 && i < this.timerUsers.length; i++) {
      const user = this.timerUsers[i];
      if (user !== undefined) due = earliest(due, user.nextDeadline(now));
    }
    return due;
  }

  /** Arms the timer for the nearest deadline, unless it is already armed for an earlier one. */
  schedule(): void {
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
   * schedule(), skipped when it cannot change anything: restored, reading and writing only move
   * deadlines later or add one at now + operationTimeoutMs (a request written), so an armed timer
   * due no later than that still stands (if it wakes early, service() re-arms it). Saves the
   * deadline scan on every publish and acknowledgement in the steady state.
   */
  private rescheduleAfterIo(stateBefore: State): void {
    if (stateBefore === State.Online && this.state === State.Online && this.timerArmed && this.remaining(this.clock.now(), this.timerArmedAt, this.timerDueIn) <= this.operationTimeoutMs) return;
    this.schedule();
  }

  /** The timer fired: act on every deadline that has passed, then re-arm. */
  service(): void {
    this.timerArmed = false;
    const now = this.clock.now();
    const state = this.state;
    if (state === State.Backoff) {
      if (this.elapsed(now, this.backoffStartedAt, this.reconnectDelay)) this.startAttempt();
    } else if (state === State.Opening || state === State.AwaitingConnack) {
      if (this.elapsed(now, this.attemptStartedAt, this.connectTimeoutMs)) {
        this.linkLost(ErrorCode.ConnectTimeout, "no CONNACK within " + this.connectTimeoutMs + " ms (" + (state === State.Opening ? "TCP/TLS not established" : "CONNECT sent") + ")");
      }
    } else if (state === State.Closing) {
      if (this.elapsed(now, this.closeStartedAt, this.connectTimeoutMs)) {
        this.transport.abort();
        this.events.postError(ErrorCode.DisconnectTimeout, "disconnect: the transport did not send what it held within " + this.connectTimeoutMs + " ms; the link was aborted");
        this.finishClose();
      }
    } else if (state >= State.Resubscribing) {
      this.serviceSession(now);
    }
    if (this.outbox.inflight.count > 0) this.serviceTimeouts(now);
    for (let i = 0; this.timerUserCount > 0 && i < this.timerUsers.length; i++) {
      const user = this.timerUsers[i];
      if (user === undefined) continue;
      const due = user.nextDeadline(now);
      if (due !== 0) continue;
      try {
        user.onDeadline(now);
      } catch (thrown) {
        // Its deadline would stay due: removed, or the timer would spin on it.
        this.removeTimerUser(user);
        this.events.postError(ErrorCode.Callback, "a timer user threw and was removed: " + (thrown instanceof Error ? thrown.message : String(thrown)));
      }
    }
    this.schedule();
  }

  /** Shares the timer with `user` (at most 4). */
  addTimerUser(user: TimerUser): void {
    if (!user || typeof user.nextDeadline !== "function" || typeof user.onDeadline !== "function") throw invalid("a timer user must implement nextDeadline(now) and onDeadline(now)");
    const users = this.timerUsers;
    if (users.indexOf(user) >= 0) return;
    const free = users.indexOf(undefined);
    if (free < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "the client's timer serves " + users.length + " users already");
    users[free] = user;
    this.timerUserCount++;
    this.schedule();
  }

  removeTimerUser(user: TimerUser): void {
    const index = this.timerUsers.indexOf(user);
    if (index < 0) return;
    this.timerUsers[index] = undefined;
    this.timerUserCount--;
  }

  private serviceSession(now: number): void {
    if (!this.stable && ((now - this.connectedAt) | 0) >= this.backoff.stableMs) {
      this.stable = true;
      this.backoff.reset();
    }
    const keepAlive = this.keepAliveMs;
    if (keepAlive > 0) {
      const sinceReceived = (now - this.lastReceivedAt) | 0;
      if (sinceReceived >= keepAlive + (keepAlive >> 1)) {
        return this.linkLost(ErrorCode.KeepAliveTimeout, "keep-alive timeout: nothing received for " + sinceReceived + " ms");
      }
      if (!this.pingOutstanding && (((now - this.lastSentAt) | 0) >= keepAlive || sinceReceived >= keepAlive)) {
        writePingreq(this.tx, 0);
        if (!this.sendControl(PINGREQ_BYTES)) return;
        this.pingOutstanding = true;
      }
    }
    if (this.state === State.Resubscribing && this.subscriptions.batches > 0 && this.elapsed(now, this.resubscribeStartedAt, this.operationTimeoutMs)) {
      return this.linkLost(ErrorCode.ResubscribeTimeout, "no SUBACK for the resubscription within " + this.operationTimeoutMs + " ms");
    }
    if (this.state === State.Draining && this.elapsed(now, this.lastDrainAt, this.drainIntervalMs)) this.drainTick();
  }

  /** Reports each in-flight request whose acknowledgement is late, once; it stays in flight. */
  private serviceTimeouts(now: number): void {
    const outbox = this.outbox;
    const inflight = outbox.inflight;
    if (inflight.count === 0) return;
    for (let slot = outbox.expireNext(now, this.operationTimeoutMs); slot >= 0; slot = outbox.expireNext(now, this.operationTimeoutMs)) {
      this.stats.timedOut++;
      const onAck = inflight.callback[slot];
      inflight.callback[slot] = undefined;
      if (onAck) this.events.ack(onAck, AckStatus.TimedOut, inflight.packetId[slot], 0);
    }
  }
}

function earliest(due: number, ms: number): number {
  return due < 0 || (ms >= 0 && ms < due) ? ms : due;
}
