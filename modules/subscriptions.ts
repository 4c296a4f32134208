// The subscription table: per filter, what the broker confirmed (SUBACK / UNSUBACK) and how many of
// the user's requests for it are still unsettled, plus its message handler. The broker-facing state
// changes only on a confirmation, so a request that is queued and then dropped leaves the table as
// the broker has it. After a reconnect without a session, the confirmed filters are subscribed again
// in batches; this module writes those batches and settles their SUBACKs. Fixed slots, never compacted.

import { type PacketDecoder, packetSize, subscribeRemaining, writeFilter, writeSubscribeHeader } from "./packet";
import type { Events } from "./events";
import { utf8Length } from "./topic";
import { ErrorCode } from "./types";

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

/** AWS IoT Core accepts at most 8 filters per SUBSCRIBE. */
const FILTERS_PER_SUBSCRIBE = 8;

/** The SUBACK return code of a refused filter. */
export const SUBACK_FAILURE = 0x80;

export class Subscriptions {
  private readonly filter: (string | undefined)[];
  private readonly handler: (MessageHandler | undefined)[];
  /** The QoS the confirmed subscription was requested with: what resubscription asks for again. */
  private readonly qos: Uint8Array;
  private readonly confirmed: Uint8Array;
  /** The user's SUBSCRIBE and UNSUBSCRIBE requests for the filter, queued or in flight. */
  private readonly pending: Uint16Array;
  // Resubscription batches in flight: packet id, and the table slots (resubSlot[first .. first + count)) each covers.
  private readonly batchId: Uint16Array;
  private readonly batchFirst: Uint16Array;
  private readonly batchCount: Uint8Array;
  private readonly batchSlot: Uint16Array;
  /** Resubscription batches written and not yet acknowledged. */
  batches = 0;
  private slotsInBatches = 0;
  /** The next table slot resubscription looks at. */
  private cursor = 0;
  // Which slots matched the last dispatched topic: devices receive on a few topics, and matching a
  // filter costs a walk over both strings. Forgotten whenever a slot's filter changes.
  private readonly matched: Uint8Array;
  private matchedTopic = "";
  private matchedValid = false;

  constructor(readonly capacity: number, private readonly events: Events) {
    this.filter = new Array(capacity).fill(undefined);
    this.handler = new Array(capacity).fill(undefined);
    this.qos = new Uint8Array(capacity);
    this.confirmed = new Uint8Array(capacity);
    this.pending = new Uint16Array(capacity);
    this.batchId = new Uint16Array(capacity);
    this.batchFirst = new Uint16Array(capacity);
    this.batchCount = new Uint8Array(capacity);
    this.batchSlot = new Uint16Array(capacity);
    this.matched = new Uint8Array(capacity);
  }

  find(filter: string): number {
    const filters = this.filter;
    for (let i = 0; i < filters.length; i++) if (filters[i] === filter) return i;
    return -1;
  }

  /** The slot of `filter`, or a free one for it; -1 when the table is full. */
  slotFor(filter: string): number {
    const index = this.find(filter);
    return index >= 0 ? index : this.filter.indexOf(undefined);
  }

  /** A request for `filter` was accepted (queued or in flight). A handler given replaces the filter's. */
  requested(index: number, filter: string, handler: MessageHandler | undefined): void {
    if (this.filter[index] !== filter) this.matchedValid = false;
    this.filter[index] = filter;
    this.pending[index]++;
    if (handler !== undefined) this.handler[index] = handler;
  }

  /** The broker answered a SUBSCRIBE of the user's for `filter` (requested at `qos`) with `code`. */
  subscribeSettled(filter: string, qos: number, code: number): void {
    const index = this.find(filter);
    if (index < 0) return;
    if (this.pending[index] > 0) this.pending[index]--;
    this.settle(index, qos, code);
  }

  /** The broker confirmed an UNSUBSCRIBE for `filter`. */
  unsubscribeSettled(filter: string): void {
    const index = this.find(filter);
    if (index < 0) return;
    if (this.pending[index] > 0) this.pending[index]--;
    this.confirmed[index] = 0;
    this.releaseIfUnused(index);
  }

  /** A request for `filter` was dropped before it reached the broker: the broker's view is unchanged. */
  abandoned(filter: string): void {
    const index = this.find(filter);
    if (index < 0) return;
    if (this.pending[index] > 0) this.pending[index]--;
    this.releaseIfUnused(index);
  }

  /** Filters the broker has confirmed. */
  confirmedCount(): number {
    let count = 0;
    for (let i = 0; i < this.capacity; i++) count += this.confirmed[i];
    return count;
  }

  /**
   * Hands `message` to every handler whose filter matches its topic; false if none did. A handler
   * stays until its filter's UNSUBACK, so messages the broker still sends reach it.
   */
  dispatch(message: InboundMessage, matches: (filter: string, topic: string) => boolean): boolean {
    const topic = message.topic;
    const filters = this.filter;
    const matched = this.matched;
    if (!this.matchedValid || topic !== this.matchedTopic) {
      for (let i = 0; i < filters.length; i++) {
        const filter = filters[i];
        matched[i] = filter !== undefined && (filter === topic || matches(filter, topic)) ? 1 : 0;
      }
      this.matchedTopic = topic;
      this.matchedValid = true;
    }
    let handled = false;
    for (let i = 0; i < filters.length; i++) {
      const handler = this.handler[i];
      if (matched[i] === 1 && handler !== undefined) {
        handled = true;
        // A handler may change the table: what it changes applies from the next message.
        this.events.callNow(handler as (first: unknown, second: unknown, third: unknown) => void, message);
      }
    }
    return handled;
  }

  // ------------------------------------------------------------ resubscription

  /** Starts resubscribing the confirmed filters (a new connection without a session). */
  beginResubscribe(): void {
    this.cancelResubscribe();
  }

  /** Forgets the batches in flight (the link is gone). */
  cancelResubscribe(): void {
    this.batches = 0;
    this.slotsInBatches = 0;
    this.cursor = 0;
  }

  /** Whether resubscription has batches left to write. */
  hasBatchToWrite(): boolean {
    for (let i = this.cursor; i < this.capacity; i++) if (this.confirmed[i]) return true;
    return false;
  }

  /**
   * Writes the next SUBSCRIBE of up to 8 confirmed filters into `target` under `packetId`, and
   * returns its length (call only when hasBatchToWrite()).
   */
  writeBatch(target: Uint8Array, maxPacketBytes: number, packetId: number): number {
    const first = this.slotsInBatches;
    let filterBytes = 0;
    let count = 0;
    let index = this.cursor;
    for (; index < this.capacity && count < FILTERS_PER_SUBSCRIBE; index++) {
      if (!this.confirmed[index]) continue;
      const bytes = utf8Length(this.filter[index] as string);
      if (count > 0 && packetSize(subscribeRemaining(count + 1, filterBytes + bytes, true)) > maxPacketBytes) break;
      filterBytes += bytes;
      this.batchSlot[first + count++] = index;
    }
    this.cursor = index;
    let at = writeSubscribeHeader(target, 0, true, subscribeRemaining(count, filterBytes, true), packetId);
    for (let k = first; k < first + count; k++) {
      const slot = this.batchSlot[k];
      const filter = this.filter[slot] as string;
      at = writeFilter(target, at, filter, utf8Length(filter), this.qos[slot]);
    }
    this.batchId[this.batches] = packetId;
    this.batchFirst[this.batches] = first;
    this.batchCount[this.batches] = count;
    this.batches++;
    this.slotsInBatches += count;
    return at;
  }

  usesPacketId(id: number): boolean {
    for (let k = 0; k < this.batches; k++) if (this.batchId[k] === id) return true;
    return false;
  }

  /**
   * Settles a SUBACK if it answers a resubscription batch: "" when it did, "not mine" when the
   * packet id is not a batch's, else the protocol problem.
   */
  resubscribeAcked(decoder: PacketDecoder): string {
    let k = 0;
    while (k < this.batches && this.batchId[k] !== decoder.packetId) k++;
    if (k === this.batches) return "not mine";
    const first = this.batchFirst[k];
    const count = this.batchCount[k];
    if (decoder.remaining - 2 !== count) return "SUBACK with " + (decoder.remaining - 2) + " return codes for " + count + " filters";
    for (let i = 0; i < count; i++) {
      const index = this.batchSlot[first + i];
      if (this.filter[index] !== undefined) this.settle(index, this.qos[index], decoder.body[2 + i]);
    }
    this.batches--;
    for (let j = k; j < this.batches; j++) {
      this.batchId[j] = this.batchId[j + 1];
      this.batchFirst[j] = this.batchFirst[j + 1];
      this.batchCount[j] = this.batchCount[j + 1];
    }
    return "";
  }

  private settle(index: number, qos: number, code: number): void {
    if (code === SUBACK_FAILURE) {
      const filter = this.filter[index] as string;
      this.confirmed[index] = 0;
      this.releaseIfUnused(index);
      this.events.postError(ErrorCode.SubscriptionRefused, "broker refused the subscription to " + filter);
    } else {
      this.confirmed[index] = 1;
      this.qos[index] = qos;
    }
  }

  private releaseIfUnused(index: number): void {
    if (this.confirmed[index] || this.pending[index] > 0) return;
    this.matchedValid = false;
    this.filter[index] = undefined;
    this.handler[index] = undefined;
  }
}
