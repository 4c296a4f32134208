// What the Device Shadow and Jobs clients share: requests to an AWS IoT service over reserved
// topics, each with a client token, a deadline on the client's one timer and a callback with a
// status; the reply subscriptions they need, kept in step with the broker; and the routing of
// inbound messages. Built over MqttClient's public API only. Memory is fixed at construction: a
// table of pending requests, a table of reply filters, and one closure per slot of each (made once),
// so a request allocates nothing but what its payload makes.
//
// A request is one QoS 1 PUBLISH: the client's offline queue and drop policy apply to it, and its
// acknowledgement callback says whether the queue dropped it. Its outcome is reported once:
// accepted or rejected when the reply with its token arrives, "dropped" when the queue dropped it,
// "timeout" when neither happened by its deadline. A reply that comes later is ignored (counted as
// unmatched). The slot stays taken until the PUBLISH itself has settled (acknowledged, timed out or
// dropped), so an acknowledgement can never be mistaken for a later request's.

import type { ClientEvents, InboundMessage, MqttClient } from "../client";
import { AckStatus, ErrorCode, invalid, IoTLinkError, shown, type TimerUser, wholeNumber } from "../types";
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

const ERROR_LISTENERS = 4;
const TOKEN_PREFIX_PATTERN = Object.freeze(/^[A-Za-z0-9_.:]{1,48}$/);
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
  protected readonly fields = new ReplyFields();
  /** The payload of a timeout or a drop (none). */
  protected readonly empty = new Uint8Array(0);
  /** `tokenPrefix` + "-": what a token starts with. */
  private readonly tokenHead: string;
  private readonly tokenHeadLength: number;

  // Pending requests, by slot.
  readonly capacity: number;
  protected readonly requestId: Float64Array;
  protected readonly owner: Uint16Array;
  protected readonly operation: Uint8Array;
  protected readonly callback: (((...args: never[]) => void) | undefined)[];
  private readonly phase: Uint8Array;
  private readonly publishOpen: Uint8Array;
  private readonly droppedFlag: Uint8Array;
  private readonly startedAt: Float64Array;
  private readonly deadlineMs: Float64Array;
  private readonly publishAcks: ((status: number) => void)[];
  private waiting = 0;
  private lastRequestId = 0;

  // Reply filters, by slot.
  private readonly filter: (string | undefined)[];
  private readonly filterState: Uint8Array;
  private readonly filterWanted: Uint8Array;
  private readonly subscribeAcks: ((status: number) => void)[];

  private readonly errorListeners: (((error: IoTLinkError) => void) | undefined)[] = [undefined, undefined, undefined, undefined];
  private readonly listeners: { [K in "message" | "restored" | "error"]: ClientEvents[K] };
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
    if (typeof prefix !== "string" || !TOKEN_PREFIX_PATTERN.test(prefix)) throw invalid("clientTokenPrefix must be 1 to 48 of A-Z a-z 0-9 _ . :, got " + shown(prefix));
    this.tokenPrefix = prefix;
    this.tokenHead = prefix + "-";
    this.tokenHeadLength = prefix.length + 1;

    this.requestId = new Float64Array(capacity);
    this.owner = new Uint16Array(capacity);
    this.operation = new Uint8Array(capacity);
    this.callback = new Array(capacity).fill(undefined);
    this.phase = new Uint8Array(capacity);
    this.publishOpen = new Uint8Array(capacity);
    this.droppedFlag = new Uint8Array(capacity);
    this.startedAt = new Float64Array(capacity);
    this.deadlineMs = new Float64Array(capacity);
    this.publishAcks = [];
    for (let slot = 0; slot < capacity; slot++) this.publishAcks.push((status) => this.onPublishAck(slot, status));

    this.filter = new Array(filterCapacity).fill(undefined);
    this.filterState = new Uint8Array(filterCapacity);
    this.filterWanted = new Uint8Array(filterCapacity);
    this.subscribeAcks = [];
    for (let slot = 0; slot < filterCapacity; slot++) this.subscribeAcks.push((status) => this.onSubscribeAck(slot, status));

    this.listeners = {
      message: (message) => this.route(message),
      restored: () => {
        this.retryFailedFilters();
        this.afterRestored();
      },
      error: (error) => this.onClientError(error),
    };
    client.on("message", this.listeners.message);
    client.on("restored", this.listeners.restored);
    client.on("error", this.listeners.error);
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
    if (event !== "error") throw invalid("unknown event " + shown(event) + "; the event is error");
    if (typeof listener !== "function") throw invalid("a listener for error must be a function, got " + shown(listener));
    const listeners = this.errorListeners;
    if (listeners.indexOf(listener) >= 0) return this;
    const free = listeners.indexOf(undefined);
    if (free < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "event error has " + ERROR_LISTENERS + " listeners already; remove one with off()");
    listeners[free] = listener;
    return this;
  }

  off(event: "error", listener: (error: IoTLinkError) => void): this {
    const index = event === "error" ? this.errorListeners.indexOf(listener) : -1;
    if (index >= 0) this.errorListeners[index] = undefined;
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
    client.off("message", this.listeners.message);
    client.off("restored", this.listeners.restored);
    client.off("error", this.listeners.error);
    client.removeTimerUser(this);
    for (let slot = 0; slot < this.capacity; slot++) this.callback[slot] = undefined;
  }

  // ---------------------------------------------------------------- routing (the subclass's)

  /** Every inbound message: the subclass finds its own and answers them. */
  protected abstract route(message: InboundMessage): void;

  /** The client was restored (after the layer asked for its failed subscriptions again). */
  protected afterRestored(): void {}

  /** Calls `callback`, the callback of `slot`, with its outcome (the subclass knows its reply object). */
  protected abstract report(slot: number, status: ReplyStatus, payload: Uint8Array, callback: (...args: never[]) => void): void;

  // ---------------------------------------------------------------- requests

  /** Throws not-accepted when no slot is free (checked before anything is built). */
  protected checkRoom(): void {
    if (this.closed) throw new IoTLinkError(ErrorCode.NotAccepted, "this client was closed");
    if (this.phase.indexOf(Phase.Free) < 0) {
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
    const slot = this.phase.indexOf(Phase.Free);
    // A listener the client called while the subscriptions were asked for may have taken the last slot.
    if (slot < 0) this.checkRoom();
    this.requestId[slot] = id;
    this.owner[slot] = owner;
    this.operation[slot] = operation;
    this.callback[slot] = callback;
    this.droppedFlag[slot] = 0;
    this.startedAt[slot] = this.client.now();
    this.deadlineMs[slot] = timeoutMs;
    this.phase[slot] = Phase.Waiting;
    this.publishOpen[slot] = 1;
    this.waiting++;
    try {
      this.client.publish(topic, payload, 1, false, this.publishAcks[slot]);
    } catch (error) {
      this.phase[slot] = Phase.Free;
      this.publishOpen[slot] = 0;
      this.callback[slot] = undefined;
      this.waiting--;
      throw error;
    }
    this.lastRequestId = id;
    this.stats.requests++;
    this.client.reschedule();
    return slot;
  }

  /** The waiting request answered by the reply whose fields were scanned, if it is `owner`'s `operation`; else -1. */
  protected matchReply(payload: Uint8Array, owner: number, operation: number): number {
    const id = this.fields.tokenNumber(payload, this.tokenHead, this.tokenHeadLength);
    if (id < 0) return -1;
    for (let slot = 0; slot < this.capacity; slot++) {
      if (this.phase[slot] === Phase.Waiting && this.requestId[slot] === id) {
        return this.owner[slot] === owner && this.operation[slot] === operation ? slot : -1;
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
    const callback = this.callback[slot];
    this.callback[slot] = undefined;
    this.phase[slot] = this.publishOpen[slot] === 1 ? Phase.Settled : Phase.Free;
    this.waiting--;
    const stats = this.stats;
    if (status === ReplyStatus.Accepted) stats.accepted++;
    else if (status === ReplyStatus.Rejected) stats.rejected++;
    else if (status === ReplyStatus.TimedOut) stats.timedOut++;
    else stats.dropped++;
    if (callback !== undefined) this.report(slot, status, payload, callback);
  }

  private onPublishAck(slot: number, status: number): void {
    this.publishOpen[slot] = 0;
    const phase = this.phase[slot];
    if (phase === Phase.Settled) this.phase[slot] = Phase.Free;
    else if (phase === Phase.Waiting && status === AckStatus.Dropped) {
      // Reported from the timer, never from inside the call that made the request.
      this.droppedFlag[slot] = 1;
      this.client.reschedule();
    }
  }

  // ---------------------------------------------------------------- deadlines (TimerUser)

  nextDeadline(now: number): number {
    if (this.waiting === 0) return -1;
    let due = -1;
    for (let slot = 0; slot < this.capacity; slot++) {
      if (this.phase[slot] !== Phase.Waiting) continue;
      if (this.droppedFlag[slot] === 1) return 0;
      const left = this.deadlineMs[slot] - ((now - this.startedAt[slot]) | 0);
      const ms = left > 0 ? left : 0;
      if (due < 0 || ms < due) due = ms;
    }
    return due;
  }

  onDeadline(now: number): void {
    for (let slot = 0; slot < this.capacity && this.waiting > 0; slot++) {
      if (this.phase[slot] !== Phase.Waiting) continue;
      if (this.droppedFlag[slot] === 1) this.complete(slot, ReplyStatus.Dropped, this.empty);
      else if (((now - this.startedAt[slot]) | 0) >= this.deadlineMs[slot]) this.complete(slot, ReplyStatus.TimedOut, this.empty);
    }
  }

  // ---------------------------------------------------------------- reply filters

  /** The slot of `filter` in the filter table (a new one if needed); not-accepted when the table is full. */
  protected filterSlot(filter: string): number {
    let free = -1;
    for (let slot = 0; slot < this.filter.length; slot++) {
      if (this.filter[slot] === filter) return slot;
      if (free < 0 && this.filter[slot] === undefined) free = slot;
    }
    if (free < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "the reply filter table is full (" + this.filter.length + " filters)");
    this.filter[free] = filter;
    return free;
  }

  /**
   * Makes sure the broker has (or will have) the subscription of `slot`. When the client cannot take
   * the SUBSCRIBE now, `throwing` passes its error on; otherwise it is asked for again at the next
   * `restored`. A confirmed subscription is left to the client, which renews it after a reconnect
   * without a session.
   */
  protected wantFilter(slot: number, throwing: boolean): void {
    this.filterWanted[slot] = 1;
    const state = this.filterState[slot];
    if (state !== FilterState.None && state !== FilterState.Failed) return;
    try {
      this.client.subscribe(this.filter[slot] as string, 1, undefined, this.subscribeAcks[slot]);
      this.filterState[slot] = FilterState.Requested;
    } catch (error) {
      this.filterState[slot] = FilterState.Failed;
      if (throwing) throw error;
    }
  }

  /** The subscription of `slot` is no longer needed: unsubscribed (once a SUBSCRIBE under way has settled). */
  protected unwantFilter(slot: number): void {
    this.filterWanted[slot] = 0;
    const state = this.filterState[slot];
    if (state === FilterState.Confirmed) this.unsubscribeFilter(slot);
    else if (state === FilterState.Failed) this.filterState[slot] = FilterState.None;
  }

  /** Whether the subscription of `slot` is confirmed by the broker. */
  protected filterConfirmed(slot: number): boolean {
    return this.filterState[slot] === FilterState.Confirmed;
  }

  private unsubscribeFilter(slot: number): void {
    this.filterState[slot] = FilterState.None;
    try {
      this.client.unsubscribe(this.filter[slot] as string);
    } catch {
      // Offline with queueing off: the subscription goes with the session, or stays unused.
    }
  }

  private onSubscribeAck(slot: number, status: number): void {
    if (this.filterState[slot] !== FilterState.Requested) return;
    // A SUBACK that is late still comes: the request stays in flight. A refusal after it is an `error`.
    this.filterState[slot] = status === AckStatus.Acknowledged || status === AckStatus.TimedOut ? FilterState.Confirmed : FilterState.Failed;
    if (this.filterWanted[slot] === 0 && this.filterState[slot] === FilterState.Confirmed) this.unsubscribeFilter(slot);
  }

  private retryFailedFilters(): void {
    for (let slot = 0; slot < this.filter.length; slot++) {
      if (this.filterWanted[slot] === 1 && this.filterState[slot] === FilterState.Failed) this.wantFilter(slot, false);
    }
  }

  /** The client renewed a subscription after a reconnect and the broker refused it: ask again at the next restore. */
  private onClientError(error: IoTLinkError): void {
    if (error.code !== ErrorCode.SubscriptionRefused) return;
    const message = error.message;
    for (let slot = 0; slot < this.filter.length; slot++) {
      const filter = this.filter[slot];
      if (filter !== undefined && this.filterState[slot] === FilterState.Confirmed && message.endsWith(" " + filter)) this.filterState[slot] = FilterState.Failed;
    }
  }

  // ---------------------------------------------------------------- user code

  /** Calls a callback of the user's; a throw is counted and reported to the `error` listeners. */
  protected call(callback: (first: unknown, second: unknown, third: unknown) => void, first: unknown, second: unknown, third: unknown): void {
    try {
      callback(first, second, third);
    } catch (thrown) {
      this.stats.callbackErrors++;
      const error = new IoTLinkError(ErrorCode.Callback, "a callback threw: " + (thrown instanceof Error ? thrown.message : String(thrown)));
      const listeners = this.errorListeners;
      for (let i = 0; i < listeners.length; i++) {
        const listener = listeners[i];
        if (listener === undefined) continue;
        try {
          listener(error);
        } catch {
          this.stats.callbackErrors++;
        }
      }
    }
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
