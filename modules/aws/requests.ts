// What the Device Shadow and Jobs clients share: requests to an AWS IoT service over reserved
// topics, each with a client token, a deadline on the client's one timer and a callback with a
// status; the reply subscriptions they need, kept in step with the broker; and the routing of
// inbound messages. Built over MqttClient's public API only. Memory is fixed at construction: the
// table of pending requests and the table of reply filters share one ArrayBuffer (a Float64Array
// and a Uint16Array over it), and one closure takes everything the client calls back (its events
// and the acknowledgements of the layer's requests), so a request allocates nothing but what its
// payload makes. (A typed array costs an XS device 7 slots and a closure 11: per-slot closures and
// a typed array per field made these layers too big to leave room for the TLS handshake.)
//
// A request is one QoS 1 PUBLISH: the client's offline queue and drop policy apply to it, and its
// acknowledgement callback says whether the queue dropped it. Its outcome is reported once:
// accepted or rejected when the reply with its token arrives, "dropped" when the queue dropped it,
// "timeout" when neither happened by its deadline. A reply that comes later is ignored (counted as
// unmatched). The slot stays taken until the PUBLISH itself has settled (acknowledged, timed out or
// dropped), so that every acknowledgement still has its request in the table.
//
// Acknowledgements name a packet id, not a slot. A request that went straight into the client's
// in-flight window has its packet id read at the call (client.lastPacketId). One that went into
// the offline queue is given its id later, out of the layer's sight: an acknowledgement with an id
// the layer does not know is that of its oldest such request (the client sends its queue in order,
// and a broker acknowledges in the order it received), and a drop (packet id 0) is that of its
// oldest request still in the queue as far as it can tell (the client drops from the head of its
// queue; a new request it drops at the call, under DROP_NEWEST, is known from the call's result).
// The one case this cannot tell apart: under DROP_OLDEST, a queued request dropped while an older
// one of the same layer, sent from the queue, still waits for its PUBACK.

import type { InboundMessage, MqttClient } from "../client";
import { Accepted, AckStatus, ErrorCode, invalid, IoTLinkError, isWordOf, shown, type TimerUser, wholeNumber } from "../types";
import { addErrorListener, callUserCode, type ErrorListeners, newErrorListeners, removeErrorListener } from "../events";
import { ReplyFields, writeAscii, writeDecimal } from "./json";

/** The outcome a request's callback is given. */
export const enum ReplyStatus {
  /** The service accepted the request: the payload is its /accepted reply. */
  Accepted = 0,
  /** The service rejected it: the payload is its error document ({"code", "message", ...}). */
  Rejected = 1,
  /** No reply by the deadline. The request may still reach the service (it is in the client's queue or in flight): its outcome is unknown. */
  TimedOut = 2,
  /** The client's offline queue dropped the request (drop policy): it was never sent. */
  Dropped = 3,
}

/** The status names, as the Python SDK's callbacks spell them (and "dropped", which it lacks). */
export const REPLY_STATUS_NAMES: readonly string[] = Object.freeze(["accepted", "rejected", "timeout", "dropped"]);

/** The longest client token AWS IoT accepts (bytes). */
export const MAX_CLIENT_TOKEN_BYTES = 64;

/** The payload of a timeout or a drop, and of the reused reply objects before their first use: none. One frozen view for every layer (preloaded into flash on a device). */
export const EMPTY_PAYLOAD: Uint8Array = Object.freeze(new Uint8Array(0)) as Uint8Array;

const enum Phase {
  Free = 0,
  /** Waiting for the reply. */
  Waiting = 1,
  /** Outcome reported; the PUBLISH has not settled yet. */
  Settled = 2,
}

const enum FilterState {
  None = 0,
  Requested = 1,
  Confirmed = 2,
  /** Refused or dropped: asked for again at the next `restored`. */
  Failed = 3,
}

// The tables. `numbers` (Float64Array) holds SlotNumber.Fields numbers per pending slot, then one
// call order per reply filter; `small` (Uint16Array) holds Slot.Fields fields per pending slot, then
// Filter.Fields per filter. The request a slot or a filter made of the client (the PUBLISH, the
// SUBSCRIBE) is "call" r: r = slot, or capacity + filter.

/** A pending slot's numbers. */
const enum SlotNumber {
  RequestId = 0,
  StartedAt = 1,
  DeadlineMs = 2,
  /** When its PUBLISH was made, in the order of the layer's calls to the client. */
  CallOrder = 3,
  Fields = 4,
}

/** A pending slot's small fields. */
const enum Slot {
  Owner = 0,
  Operation = 1,
  Phase = 2,
  /** The queue dropped its PUBLISH: reported from the timer. */
  Dropped = 3,
  /** Its PUBLISH's packet id; 0 while not known (it went into the offline queue). */
  PacketId = 4,
  /** 1 until the client called back for its PUBLISH (acknowledged, timed out or dropped). */
  Open = 5,
  Fields = 6,
}

/** A reply filter's small fields. */
const enum Filter {
  State = 0,
  /** 1 while a request or a handler needs the subscription. */
  Wanted = 1,
  /** Its SUBSCRIBE's packet id and open flag, as a slot's PUBLISH's. */
  PacketId = 2,
  Open = 3,
  Fields = 4,
}

/** A call's fields from where callFieldsAt() finds them (Slot.PacketId or Filter.PacketId: the two are next to each other in both). */
const enum Call {
  PacketId = 0,
  Open = 1,
}

/** Counters since construction. */
export interface ReplyStats {
  requests: number;
  accepted: number;
  rejected: number;
  timedOut: number;
  dropped: number;
  /** Replies with one of this layer's client tokens that no waiting request has (late: after a timeout, or again). */
  unmatched: number;
  /** User callbacks that threw (each reported to the `error` listeners). */
  callbackErrors: number;
}

export interface LayerOptions {
  /** Requests waiting for a reply at once (default 10: AWS IoT answers 429 above 10 in flight per connection). */
  maxPending?: number;
  /** A request's deadline when the call gives none, in ms (default 10000). */
  timeoutMs?: number;
  /** The client tokens' prefix; default random. Tokens are `<prefix>-<number>`. */
  clientTokenPrefix?: string;
}

const BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz";

function randomPrefix(seed: number): string {
  let value = (Math.floor(Math.random() * 0x100000000) ^ seed) >>> 0;
  let prefix = "";
  for (let i = 0; i < 6; i++) {
    prefix += BASE36.charAt(value % 36);
    value = Math.floor(value / 36) + i * 7;
  }
  return prefix;
}

/** A positive whole number of ms for a deadline (at most 24 days: the clock compares differences). */
export function checkTimeout(name: string, value: unknown): number {
  return wholeNumber(name, value, 1, 0x7fffffff);
}

export abstract class ReplyLayer implements TimerUser {
  readonly client: MqttClient;
  readonly stats: ReplyStats = { requests: 0, accepted: 0, rejected: 0, timedOut: 0, dropped: 0, unmatched: 0, callbackErrors: 0 };
  /** The client tokens' prefix (tokens are this, "-", and the request's number). */
  readonly tokenPrefix: string;
  /** Default deadline of a request, in ms. */
  readonly timeoutMs: number;
  /** Pending requests at most (maxPending). */
  readonly capacity: number;
  protected readonly fields = new ReplyFields();
  /** The reply filters, by filter slot (undefined: free). Never removed: a subclass may rely on the order it added them in. */
  protected readonly filters: (string | undefined)[];
  /** `tokenPrefix` + "-": what a token starts with. */
  private readonly tokenHead: string;
  private readonly tokenHeadLength: number;
  private readonly numbers: Float64Array;
  private readonly small: Uint16Array;
  /** Each pending slot's callback. */
  private readonly callbacks: (((...args: never[]) => void) | undefined)[];
  private readonly errorListeners: ErrorListeners = newErrorListeners();
  /** The one function the client is given: the listener of message, restored and error, and the acknowledgement callback of every request (see onClientCall). */
  private readonly clientCallback: (first?: unknown, second?: number) => void;
  private waiting = 0;
  private lastRequestId = 0;
  /** Requests made of the client so far: the call order of the next. */
  private calls = 0;
  /** Calls to the client under way (a listener the client calls at the end of one may make another). */
  private callDepth = 0;
  /** Drops heard while a call was under way: matched once it returned, when its result says whether the new request was the one dropped. */
  private dropsInCall = 0;
  /** Requests the client dropped at the call (a full queue under DROP_NEWEST), settled then, whose drop has not been heard yet. */
  private dropsSettledAtCall = 0;
  private closed = false;

  constructor(client: MqttClient, options: LayerOptions, filterCapacity: number) {
    if (client === null || typeof client !== "object" || typeof client.publish !== "function" || typeof client.addTimerUser !== "function") {
      throw invalid("the first argument must be an MqttClient, got " + shown(client));
    }
    this.client = client;
    const capacity = wholeNumber("maxPending", options.maxPending ?? 10, 1, 1000);
    this.capacity = capacity;
    this.timeoutMs = checkTimeout("timeoutMs", options.timeoutMs ?? 10000);
    const prefix = options.clientTokenPrefix ?? randomPrefix(client.now());
    if (typeof prefix !== "string" || !isWordOf(prefix, 1, 48, "_.:")) throw invalid("clientTokenPrefix must be 1 to 48 of A-Z a-z 0-9 _ . :, got " + shown(prefix));
    this.tokenPrefix = prefix;
    this.tokenHead = prefix + "-";
    this.tokenHeadLength = prefix.length + 1;

    // Both tables in one ArrayBuffer (a typed array of its own costs 3 slots more than a view): the
    // numbers first, where 8-byte alignment holds.
    const numberCount = capacity * SlotNumber.Fields + filterCapacity;
    const smallCount = capacity * Slot.Fields + filterCapacity * Filter.Fields;
    const tables = new ArrayBuffer(numberCount * 8 + smallCount * 2);
    this.numbers = new Float64Array(tables, 0, numberCount);
    this.small = new Uint16Array(tables, numberCount * 8, smallCount);
    this.callbacks = new Array(capacity).fill(undefined);
    this.filters = new Array(filterCapacity).fill(undefined);

    this.clientCallback = (first, second) => this.onClientCall(first, second as number);
    client.on("message", this.clientCallback);
    client.on("restored", this.clientCallback);
    client.on("error", this.clientCallback);
    client.addTimerUser(this);
  }

  /** Requests waiting for their reply. */
  get pendingCount(): number {
    return this.waiting;
  }

  /** The client token of request `id`. */
  tokenOf(id: number): string {
    return this.tokenHead + id;
  }

  /** Adds a listener for `error` (a callback of yours threw: code callback-error); up to 4. */
  on(event: "error", listener: (error: IoTLinkError) => void): this {
    addErrorListener(this.errorListeners, event, listener);
    return this;
  }

  off(event: "error", listener: (error: IoTLinkError) => void): this {
    removeErrorListener(this.errorListeners, event, listener);
    return this;
  }

  /**
   * Detaches from the client: listeners and the timer removed. Pending requests are forgotten
   * without a callback, and the reply subscriptions stay (unsubscribe yourself if you need to).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const client = this.client;
    client.off("message", this.clientCallback);
    client.off("restored", this.clientCallback);
    client.off("error", this.clientCallback);
    client.removeTimerUser(this);
    for (let slot = 0; slot < this.capacity; slot++) this.callbacks[slot] = undefined;
  }

  // ---------------------------------------------------------------- routing (the subclass's)

  /** Every inbound message: the subclass finds its own and answers them. */
  protected abstract route(message: InboundMessage): void;

  /** The client was restored (after the layer asked for its failed subscriptions again). */
  protected afterRestored(): void {}

  /** Calls `callback`, the callback of `slot`, with its outcome (the subclass knows its reply object). */
  protected abstract report(slot: number, status: ReplyStatus, payload: Uint8Array, callback: (...args: never[]) => void): void;

  /**
   * Everything the client calls back, told apart by the first argument: a number is the status of
   * an acknowledgement (then the packet id); undefined, the `restored` event; an IoTLinkError, the
   * `error` event; anything else, an inbound message.
   */
  private onClientCall(first: unknown, packetId: number): void {
    if (typeof first === "number") this.onAcknowledgement(first, packetId);
    else if (first === undefined) {
      this.retryFailedFilters();
      this.afterRestored();
    } else if (first instanceof IoTLinkError) this.onClientError(first);
    else this.route(first as InboundMessage);
  }

  // ---------------------------------------------------------------- pending slots

  /** The request number of `slot`'s request. */
  protected requestIdOf(slot: number): number {
    return this.numbers[slot * SlotNumber.Fields + SlotNumber.RequestId];
  }

  /** The owner the subclass gave `slot`'s request (a shadow's index, say). */
  protected ownerOf(slot: number): number {
    return this.small[slot * Slot.Fields + Slot.Owner];
  }

  /** The operation the subclass gave `slot`'s request. */
  protected operationOf(slot: number): number {
    return this.small[slot * Slot.Fields + Slot.Operation];
  }

  /** A free pending slot, or -1. */
  private freeSlot(): number {
    const small = this.small;
    const capacity = this.capacity;
    for (let slot = 0, at = Slot.Phase; slot < capacity; slot++, at += Slot.Fields) if (small[at] === Phase.Free) return slot;
    return -1;
  }

  // ---------------------------------------------------------------- requests

  /** Throws not-accepted when no slot is free (checked before anything is built). */
  protected checkRoom(): void {
    if (this.closed) throw new IoTLinkError(ErrorCode.NotAccepted, "this client was closed");
    if (this.freeSlot() < 0) {
      throw new IoTLinkError(ErrorCode.NotAccepted, this.capacity + " requests are pending already (maxPending); wait for a reply or a timeout");
    }
  }

  /** The next request's number (its token is tokenOf(number)); taken only once send() succeeds. */
  protected nextRequestId(): number {
    return this.lastRequestId >= 999999999 ? 1 : this.lastRequestId + 1;
  }

  /**
   * Publishes a request whose payload is ready, under a new slot; returns the slot. The reply
   * subscriptions must be asked for first (so that SUBSCRIBE goes out before the PUBLISH). If the
   * client refuses the PUBLISH (offline with queueing off, say), the slot is released and the error
   * passes to the caller.
   */
  protected send(id: number, owner: number, operation: number, callback: ((...args: never[]) => void) | undefined, timeoutMs: number, topic: string, payload: Uint8Array | string): number {
    const slot = this.freeSlot();
    // A listener the client called while the subscriptions were asked for may have taken the last slot.
    if (slot < 0) this.checkRoom();
    const numbers = this.numbers;
    const small = this.small;
    const at = slot * Slot.Fields;
    const numbersAt = slot * SlotNumber.Fields;
    numbers[numbersAt + SlotNumber.RequestId] = id;
    numbers[numbersAt + SlotNumber.StartedAt] = this.client.now();
    numbers[numbersAt + SlotNumber.DeadlineMs] = timeoutMs;
    small[at + Slot.Owner] = owner;
    small[at + Slot.Operation] = operation;
    small[at + Slot.Dropped] = 0;
    small[at + Slot.Phase] = Phase.Waiting;
    this.callbacks[slot] = callback;
    this.waiting++;
    const queuedBefore = this.beginCall(slot);
    let accepted: Accepted;
    try {
      accepted = this.client.publish(topic, payload, 1, false, this.clientCallback);
    } catch (error) {
      this.callDepth--;
      small[at + Slot.Open] = 0;
      small[at + Slot.Phase] = Phase.Free;
      this.callbacks[slot] = undefined;
      this.waiting--;
      this.afterCalls();
      throw error;
    }
    this.endCall(slot, queuedBefore, accepted);
    this.lastRequestId = id;
    this.stats.requests++;
    this.client.reschedule();
    return slot;
  }

  /** The waiting request answered by the reply whose fields were scanned, if it is `owner`'s `operation`; else -1. */
  protected matchReply(payload: Uint8Array, owner: number, operation: number): number {
    const id = this.fields.tokenNumber(payload, this.tokenHead, this.tokenHeadLength);
    if (id < 0) return -1;
    const numbers = this.numbers;
    const small = this.small;
    for (let slot = 0; slot < this.capacity; slot++) {
      const at = slot * Slot.Fields;
      if (small[at + Slot.Phase] === Phase.Waiting && numbers[slot * SlotNumber.Fields + SlotNumber.RequestId] === id) {
        return small[at + Slot.Owner] === owner && small[at + Slot.Operation] === operation ? slot : -1;
      }
    }
    this.stats.unmatched++;
    return -1;
  }

  /**
   * Ends the wait of `slot` and reports its outcome. The slot may be taken again by a request made
   * from the callback: the callback is taken out of it first, and report() reads the slot before it
   * calls user code.
   */
  protected complete(slot: number, status: ReplyStatus, payload: Uint8Array): void {
    const callback = this.callbacks[slot];
    this.callbacks[slot] = undefined;
    const at = slot * Slot.Fields;
    this.small[at + Slot.Phase] = this.small[at + Slot.Open] === 1 ? Phase.Settled : Phase.Free;
    this.waiting--;
    const stats = this.stats;
    if (status === ReplyStatus.Accepted) stats.accepted++;
    else if (status === ReplyStatus.Rejected) stats.rejected++;
    else if (status === ReplyStatus.TimedOut) stats.timedOut++;
    else stats.dropped++;
    if (callback !== undefined) this.report(slot, status, payload, callback);
  }

  private onPublishAck(slot: number, status: number): void {
    const at = slot * Slot.Fields;
    const phase = this.small[at + Slot.Phase];
    if (phase === Phase.Settled) this.small[at + Slot.Phase] = Phase.Free;
    else if (phase === Phase.Waiting && status === AckStatus.Dropped) {
      // Reported from the timer, never from inside the call that made the request.
      this.small[at + Slot.Dropped] = 1;
      this.client.reschedule();
    }
  }

  // ---------------------------------------------------------------- the layer's calls to the client

  // Where a call's packet id and open flag are in `small`, and its order in `numbers`.
  private callFieldsAt(call: number): number {
    const capacity = this.capacity;
    return call < capacity ? call * Slot.Fields + Slot.PacketId : capacity * Slot.Fields + (call - capacity) * Filter.Fields + Filter.PacketId;
  }

  private callOrderAt(call: number): number {
    const capacity = this.capacity;
    return call < capacity ? call * SlotNumber.Fields + SlotNumber.CallOrder : capacity * SlotNumber.Fields + (call - capacity);
  }

  /**
   * Before a PUBLISH or SUBSCRIBE with the acknowledgement callback: call `call` is open, its packet
   * id not known yet. Returns the client's count of queued requests, for endCall().
   */
  private beginCall(call: number): number {
    const at = this.callFieldsAt(call);
    this.small[at + Call.PacketId] = 0;
    this.small[at + Call.Open] = 1;
    this.numbers[this.callOrderAt(call)] = this.calls++;
    this.callDepth++;
    return this.client.stats.queued;
  }

  /**
   * After the client took call `call` (`queuedBefore`: its count of queued requests before). Not
   * queued, the request went into the in-flight window with the last packet id given (the client
   * runs no listener at the end of such a call: it recorded no event). Dropped at the call, it is
   * settled now, and the drop the client reports for it is not another request's.
   */
  private endCall(call: number, queuedBefore: number, accepted: Accepted): void {
    this.callDepth--;
    const client = this.client;
    if (accepted === Accepted.Dropped) {
      this.dropsSettledAtCall++;
      this.settleCall(call, AckStatus.Dropped);
    } else if (client.stats.queued === queuedBefore) {
      this.small[this.callFieldsAt(call) + Call.PacketId] = client.lastPacketId;
    }
    this.afterCalls();
  }

  /** Once no call is under way: the drops heard during the calls are matched. */
  private afterCalls(): void {
    if (this.callDepth > 0) return;
    while (this.dropsInCall > 0) {
      this.dropsInCall--;
      this.onAcknowledgement(AckStatus.Dropped, 0);
    }
  }

  /** The client called back for a request of the layer: which one is worked out from the packet id (see the top of this file). */
  private onAcknowledgement(status: number, packetId: number): void {
    let call = -1;
    if (status === AckStatus.Dropped) {
      if (this.callDepth > 0) {
        this.dropsInCall++;
        return;
      }
      if (this.dropsSettledAtCall > 0) {
        this.dropsSettledAtCall--;
        return;
      }
    } else {
      call = this.openCallWithPacketId(packetId);
    }
    if (call < 0) call = this.oldestOpenCallWithoutPacketId();
    if (call >= 0) this.settleCall(call, status);
  }

  private settleCall(call: number, status: number): void {
    this.small[this.callFieldsAt(call) + Call.Open] = 0;
    if (call < this.capacity) this.onPublishAck(call, status);
    else this.onSubscribeAck(call - this.capacity, status);
  }

  /** The open call whose packet id is `packetId`, or -1. */
  private openCallWithPacketId(packetId: number): number {
    const small = this.small;
    const capacity = this.capacity;
    for (let slot = 0, at = Slot.PacketId; slot < capacity; slot++, at += Slot.Fields) {
      if (small[at + Call.PacketId] === packetId && small[at + Call.Open] === 1) return slot;
    }
    const filters = this.filters.length;
    for (let filter = 0, at = capacity * Slot.Fields + Filter.PacketId; filter < filters; filter++, at += Filter.Fields) {
      if (small[at + Call.PacketId] === packetId && small[at + Call.Open] === 1) return capacity + filter;
    }
    return -1;
  }

  /** The open call made first among those whose packet id is not known, or -1. */
  private oldestOpenCallWithoutPacketId(): number {
    const calls = this.capacity + this.filters.length;
    let oldest = -1;
    let oldestOrder = 0;
    for (let call = 0; call < calls; call++) {
      const at = this.callFieldsAt(call);
      if (this.small[at + Call.Open] !== 1 || this.small[at + Call.PacketId] !== 0) continue;
      const order = this.numbers[this.callOrderAt(call)];
      if (oldest < 0 || order < oldestOrder) {
        oldest = call;
        oldestOrder = order;
      }
    }
    return oldest;
  }

  // ---------------------------------------------------------------- deadlines (TimerUser)

  nextDeadline(now: number): number {
    if (this.waiting === 0) return -1;
    const numbers = this.numbers;
    const small = this.small;
    let due = -1;
    for (let slot = 0; slot < this.capacity; slot++) {
      const at = slot * Slot.Fields;
      if (small[at + Slot.Phase] !== Phase.Waiting) continue;
      if (small[at + Slot.Dropped] === 1) return 0;
      const numbersAt = slot * SlotNumber.Fields;
      const left = numbers[numbersAt + SlotNumber.DeadlineMs] - ((now - numbers[numbersAt + SlotNumber.StartedAt]) | 0);
      const ms = left > 0 ? left : 0;
      if (due < 0 || ms < due) due = ms;
    }
    return due;
  }

  onDeadline(now: number): void {
    const numbers = this.numbers;
    const small = this.small;
    for (let slot = 0; slot < this.capacity && this.waiting > 0; slot++) {
      const at = slot * Slot.Fields;
      if (small[at + Slot.Phase] !== Phase.Waiting) continue;
      const numbersAt = slot * SlotNumber.Fields;
      if (small[at + Slot.Dropped] === 1) this.complete(slot, ReplyStatus.Dropped, EMPTY_PAYLOAD);
      else if (((now - numbers[numbersAt + SlotNumber.StartedAt]) | 0) >= numbers[numbersAt + SlotNumber.DeadlineMs]) this.complete(slot, ReplyStatus.TimedOut, EMPTY_PAYLOAD);
    }
  }

  // ---------------------------------------------------------------- reply filters

  /** The slot of `filter` in the filter table (the next free one if it is new); not-accepted when the table is full. */
  protected filterSlot(filter: string): number {
    let free = -1;
    const filters = this.filters;
    for (let slot = 0; slot < filters.length; slot++) {
      if (filters[slot] === filter) return slot;
      if (free < 0 && filters[slot] === undefined) free = slot;
    }
    if (free < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "the reply filter table is full (" + filters.length + " filters)");
    filters[free] = filter;
    return free;
  }

  private filterAt(slot: number): number {
    return this.capacity * Slot.Fields + slot * Filter.Fields;
  }

  /**
   * Makes sure the broker has (or will have) the subscription of `slot`. When the client cannot take
   * the SUBSCRIBE now, `throwing` passes its error on; otherwise it is asked for again at the next
   * `restored`. A confirmed subscription is left to the client, which renews it after a reconnect
   * without a session.
   */
  protected wantFilter(slot: number, throwing: boolean): void {
    const at = this.filterAt(slot);
    const small = this.small;
    small[at + Filter.Wanted] = 1;
    const state = small[at + Filter.State];
    if (state !== FilterState.None && state !== FilterState.Failed) return;
    // Requested before the call: a drop the call itself reports finds it so.
    small[at + Filter.State] = FilterState.Requested;
    const call = this.capacity + slot;
    const queuedBefore = this.beginCall(call);
    let accepted: Accepted;
    try {
      accepted = this.client.subscribe(this.filters[slot] as string, 1, undefined, this.clientCallback);
    } catch (error) {
      this.callDepth--;
      small[at + Filter.Open] = 0;
      small[at + Filter.State] = FilterState.Failed;
      this.afterCalls();
      if (throwing) throw error;
      return;
    }
    this.endCall(call, queuedBefore, accepted);
  }

  /** The subscription of `slot` is no longer needed: unsubscribed (once a SUBSCRIBE under way has settled). */
  protected unwantFilter(slot: number): void {
    const at = this.filterAt(slot);
    this.small[at + Filter.Wanted] = 0;
    const state = this.small[at + Filter.State];
    if (state === FilterState.Confirmed) this.unsubscribeFilter(slot);
    else if (state === FilterState.Failed) this.small[at + Filter.State] = FilterState.None;
  }

  private unsubscribeFilter(slot: number): void {
    this.small[this.filterAt(slot) + Filter.State] = FilterState.None;
    try {
      this.client.unsubscribe(this.filters[slot] as string);
    } catch {
      // Offline with queueing off: the subscription goes with the session, or stays unused.
    }
  }

  private onSubscribeAck(slot: number, status: number): void {
    const at = this.filterAt(slot);
    const small = this.small;
    if (small[at + Filter.State] !== FilterState.Requested) return;
    // A SUBACK that is late still comes: the request stays in flight. A refusal after it is an `error`.
    const confirmed = status === AckStatus.Acknowledged || status === AckStatus.TimedOut;
    small[at + Filter.State] = confirmed ? FilterState.Confirmed : FilterState.Failed;
    if (confirmed && small[at + Filter.Wanted] === 0) this.unsubscribeFilter(slot);
  }

  private retryFailedFilters(): void {
    for (let slot = 0; slot < this.filters.length; slot++) {
      const at = this.filterAt(slot);
      if (this.small[at + Filter.Wanted] === 1 && this.small[at + Filter.State] === FilterState.Failed) this.wantFilter(slot, false);
    }
  }

  /** The client renewed a subscription after a reconnect and the broker refused it: ask again at the next restore. */
  private onClientError(error: IoTLinkError): void {
    if (error.code !== ErrorCode.SubscriptionRefused) return;
    const message = error.message;
    for (let slot = 0; slot < this.filters.length; slot++) {
      const filter = this.filters[slot];
      const at = this.filterAt(slot) + Filter.State;
      if (filter !== undefined && this.small[at] === FilterState.Confirmed && message.endsWith(" " + filter)) this.small[at] = FilterState.Failed;
    }
  }

  // ---------------------------------------------------------------- user code

  /** Calls a callback of the user's; a throw is counted and reported to the `error` listeners. */
  protected call(callback: (first: unknown, second: unknown, third: unknown) => void, first: unknown, second: unknown, third: unknown): void {
    // Counted after the call: a callback may itself report (nested calls), and `+=` would read the count first.
    const threw = callUserCode(this.errorListeners, undefined, callback, first, second, third);
    this.stats.callbackErrors += threw;
  }

  /** Writes {"clientToken":"<token>"} at 0 in `target`; returns its length. */
  protected writeTokenDocument(target: Uint8Array, id: number): number {
    let at = writeAscii("{\"clientToken\":\"", target, 0);
    at = this.writeToken(target, at, id);
    target[at++] = 0x22;
    target[at++] = 0x7d;
    return at;
  }

  /** Writes the token's characters at `offset`; returns the end. */
  protected writeToken(target: Uint8Array, offset: number, id: number): number {
    return writeDecimal(id, target, writeAscii(this.tokenHead, target, offset));
  }

  /** Bytes a token takes at most: the head and ten digits. */
  protected get tokenBytes(): number {
    return this.tokenHeadLength + 10;
  }
}
