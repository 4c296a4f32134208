// The requests the client holds: the offline queue (encoded, waiting for recovery) and the in-flight
// window (written, or waiting for room in the transport, until acknowledged), packet ids, the drop
// policy and each request's deadline. It returns outcomes and emits nothing: the session reports them.
// With a persist store, each queued request also carries its record's sequence number in the store,
// which moves with it into the window; the session writes and acknowledges the records.

import { firstTopicOf, markDuplicate, PacketType, setPacketId } from "./packet";
import { type AckCallback, Ring } from "./ring";
import { checkUtf8, readUtf8, topicFilterProblem } from "./topic";
import { DROP_NEWEST, RequestKind } from "./types";

/** Where the outbox writes: the session, which knows whether the link can take bytes now. */
export interface Link {
  /** Writes bytes to the transport; false when they were not taken (no room, or no link). */
  send(bytes: Uint8Array, offset: number, length: number): boolean;
  /** When the last write was taken (a request's deadline counts from it). */
  readonly lastSentAt: number;
}

/** Packet ids something other than the outbox holds (resubscription batches). */
export interface PacketIdHolder {
  /** How many ids it holds now (0: no need to ask). */
  readonly batches: number;
  usesPacketId(id: number): boolean;
}

const FLAG_TIMED_OUT = 1;
const FLAG_ACKED = 2;
/** In the window but not on the wire of this connection yet: the transport had no room (or an older entry waits). */
const FLAG_UNSENT = 4;

/** enqueue(): the new request is dropped (DROP_NEWEST, queue full). */
export const DROPPED_NEW = -1;
/** enqueue(): the oldest request was dropped to make room (its details are in `dropped*`); call again. */
export const DROPPED_OLDEST = -2;

/** The record numbers of a client without a store: one empty array shared (frozen: the module is preloaded), no slots per client. */
const NO_SEQS = Object.freeze(new Uint32Array(0)) as Uint32Array;

/** sendQueuedHead() outcomes. */
export const enum HeadOutcome {
  /** Written to the transport. */
  Written = 0,
  /** Moved into the in-flight window, waiting there for room in the transport. */
  InWindow = 1,
  /** Still queued: no room in the window or in the transport. */
  Waiting = 2,
}

export class Outbox {
  readonly queue: Ring;
  readonly inflight: Ring;
  /** In-flight entries marked unsent: they go out, oldest first, when the transport has room. */
  unsent = 0;
  /** The packet id given to the last request that went into the window. */
  lastPacketId = 0;
  /** The request enqueue() dropped last (DROPPED_OLDEST): its kind, topic and callback. */
  droppedKind = 0;
  droppedTopic = "";
  droppedCallback: AckCallback | undefined;
  /** Persist: per queue slot and per window slot, the request's record in the store (0: none). Empty without a store. */
  readonly persisted: boolean;
  readonly queueSeq: Uint32Array;
  readonly inflightSeq: Uint32Array;
  /** Persist: the record of the request enqueue() or dropOldest() dropped last, and of the QoS 0 PUBLISH sendQueuedHead() wrote last (0: none). The session acknowledges them. */
  droppedSeq = 0;
  writtenSeq = 0;

  constructor(queueBytes: number, queueEntries: number, inflightBytes: number, window: number, readonly dropPolicy: number, private readonly ids: PacketIdHolder, persisted: boolean) {
    this.queue = new Ring(queueBytes, queueEntries);
    this.inflight = new Ring(inflightBytes, window);
    this.persisted = persisted;
    this.queueSeq = persisted ? new Uint32Array(queueEntries) : NO_SEQS;
    this.inflightSeq = persisted ? new Uint32Array(window) : NO_SEQS;
  }

  /** A packet id not used by any unacknowledged request. The window is at most 100 and the holder's ids fewer than 65435: one is always free. */
  nextPacketId(): number {
    for (;;) {
      const id = this.lastPacketId === 65535 ? 1 : this.lastPacketId + 1;
      this.lastPacketId = id;
      let used = this.ids.batches > 0 && this.ids.usesPacketId(id);
      const inflight = this.inflight;
      for (let i = 0; i < inflight.count && !used; i++) used = inflight.packetId[inflight.slot(i)] === id;
      if (!used) return id;
    }
  }

  // ------------------------------------------------------------ offline queue

  /**
   * Reserves `size` bytes at the queue's tail: the slot, or DROPPED_NEW, or DROPPED_OLDEST after
   * removing the oldest request to make room (read `dropped*`, then call again).
   */
  enqueue(size: number): number {
    const queue = this.queue;
    const slot = queue.push(size);
    if (slot >= 0) return slot;
    if (this.dropPolicy === DROP_NEWEST) return DROPPED_NEW;
    this.dropOldest();
    return DROPPED_OLDEST;
  }

  /** Removes the oldest queued request, its details in `dropped*`. */
  dropOldest(): void {
    const queue = this.queue;
    const oldest = queue.oldest();
    this.droppedKind = queue.kind[oldest];
    this.droppedTopic = firstTopicOf(queue.arena, queue.offset[oldest]);
    this.droppedCallback = queue.callback[oldest];
    if (this.persisted) {
      this.droppedSeq = this.queueSeq[oldest];
      this.queueSeq[oldest] = 0;
    }
    queue.shift();
  }

  /**
   * Takes back the entry just reserved in `slot`, the newest (the store had no room for it, or
   * failed). The ring only removes its oldest entry; the newest is undone by its counts, which is all
   * that placement() reads of it.
   */
  unreserve(slot: number): void {
    const queue = this.queue;
    queue.count--;
    queue.usedBytes -= queue.length[slot];
    queue.callback[slot] = undefined;
    if (this.persisted) this.queueSeq[slot] = 0;
  }

  /** Whether the queue still holds the entry reserved in `slot` (it is the newest). */
  queueHolds(slot: number): boolean {
    const queue = this.queue;
    return queue.count > 0 && queue.slot(queue.count - 1) === slot;
  }

  /** Whether the oldest queued request could be sent now (the transport permitting). */
  headCanGo(): boolean {
    const queue = this.queue;
    if (queue.count === 0 || this.unsent > 0) return false;
    const slot = queue.oldest();
    const qos = queue.kind[slot] === RequestKind.Publish ? (queue.arena[queue.offset[slot]] >> 1) & 3 : 1;
    return qos === 0 || this.inflight.placement(queue.length[slot]) >= 0;
  }

  /** Sends the oldest queued request: a QoS 0 PUBLISH straight to the link, the others into the window. */
  sendQueuedHead(link: Link): HeadOutcome {
    const queue = this.queue;
    const slot = queue.oldest();
    const offset = queue.offset[slot];
    const length = queue.length[slot];
    const kind = queue.kind[slot];
    if (kind === RequestKind.Publish && ((queue.arena[offset] >> 1) & 3) === 0) {
      // Shift only once written: a refused write leaves it queued; never ahead of in-flight requests still waiting for the transport.
      if (this.unsent > 0 || !link.send(queue.arena, offset, length)) return HeadOutcome.Waiting;
      if (this.persisted) {
        this.writtenSeq = this.queueSeq[slot];
        this.queueSeq[slot] = 0;
      }
      queue.shift();
      return HeadOutcome.Written;
    }
    const inflight = this.inflight;
    const target = inflight.push(length);
    if (target < 0) return HeadOutcome.Waiting;
    inflight.arena.set(queue.arena.subarray(offset, offset + length), inflight.offset[target]);
    const id = this.nextPacketId();
    setPacketId(inflight.arena, inflight.offset[target], id);
    inflight.kind[target] = kind;
    inflight.packetId[target] = id;
    inflight.callback[target] = queue.callback[slot];
    if (this.persisted) {
      // The record stays until the acknowledgement: a reboot before it sends the request again.
      this.inflightSeq[target] = this.queueSeq[slot];
      this.queueSeq[slot] = 0;
    }
    queue.shift();
    return this.transmit(target, link) ? HeadOutcome.Written : HeadOutcome.InWindow;
  }

  // ------------------------------------------------------------ in-flight window

  /**
   * Writes an in-flight entry and starts its deadline, which counts from the write. When the
   * transport has no room, or older entries still wait for it, the entry is marked unsent and
   * flushUnsent() writes it later, in order. False if it was not written now.
   */
  transmit(slot: number, link: Link): boolean {
    const inflight = this.inflight;
    if (this.unsent === 0 && link.send(inflight.arena, inflight.offset[slot], inflight.length[slot])) {
      inflight.time[slot] = link.lastSentAt;
      return true;
    }
    inflight.state[slot] |= FLAG_UNSENT;
    this.unsent++;
    return false;
  }

  /** Writes the entries marked unsent, oldest first, while the link takes them; returns how many. */
  flushUnsent(link: Link): number {
    const inflight = this.inflight;
    let written = 0;
    for (let i = 0; this.unsent > 0 && i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (!(inflight.state[slot] & FLAG_UNSENT)) continue;
      if (!link.send(inflight.arena, inflight.offset[slot], inflight.length[slot])) break;
      inflight.state[slot] &= ~FLAG_UNSENT;
      inflight.time[slot] = link.lastSentAt;
      this.unsent--;
      written++;
    }
    return written;
  }

  /**
   * A new connection: every unacknowledged entry goes out again, in order, marked DUP when it was
   * written on an earlier connection and the session is still there. Returns how many were re-sent.
   */
  prepareResend(sessionPresent: boolean): number {
    const inflight = this.inflight;
    let resent = 0;
    this.unsent = 0;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.state[slot] & FLAG_ACKED) continue;
      if (!(inflight.state[slot] & FLAG_UNSENT)) {
        if (sessionPresent && inflight.kind[slot] === RequestKind.Publish) markDuplicate(inflight.arena, inflight.offset[slot]);
        resent++;
      }
      inflight.state[slot] |= FLAG_UNSENT;
      this.unsent++;
    }
    return resent;
  }

  /** The window slot of the unacknowledged request of `kind` with `packetId`, or -1. */
  find(packetId: number, kind: RequestKind): number {
    const inflight = this.inflight;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.packetId[slot] !== packetId || inflight.state[slot] & FLAG_ACKED) continue;
      return inflight.kind[slot] === kind ? slot : -1;
    }
    return -1;
  }

  /** Releases an acknowledged entry (and every acknowledged one before it leaves the window); true if it had been reported late. */
  release(slot: number): boolean {
    const inflight = this.inflight;
    const state = inflight.state[slot];
    if (state & FLAG_UNSENT) this.unsent--;
    inflight.state[slot] = FLAG_ACKED;
    inflight.callback[slot] = undefined;
    while (inflight.count > 0 && inflight.state[inflight.oldest()] & FLAG_ACKED) inflight.shift();
    return (state & FLAG_TIMED_OUT) !== 0;
  }

  /** Milliseconds until the first written, unacknowledged, not yet late entry is late; -1 if none. */
  nextDeadline(now: number, timeoutMs: number): number {
    const inflight = this.inflight;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.state[slot] !== 0) continue;
      // Entries go out in order, so the first one still waiting is the first to be late.
      const left = timeoutMs - ((now - inflight.time[slot]) | 0);
      return left > 0 ? left : 0;
    }
    return -1;
  }

  /** Marks the first written entry whose deadline has passed as late and returns its slot; -1 if none. */
  expireNext(now: number, timeoutMs: number): number {
    const inflight = this.inflight;
    for (let i = 0; i < inflight.count; i++) {
      const slot = inflight.slot(i);
      if (inflight.state[slot] !== 0) continue;
      if (((now - inflight.time[slot]) | 0) < timeoutMs) return -1;
      inflight.state[slot] |= FLAG_TIMED_OUT;
      return slot;
    }
    return -1;
  }
}

/**
 * Why `bytes[offset .. offset + length)` is not a request as the offline queue holds it (a persisted
 * record read back at construction), or "": one PUBLISH (QoS 0 or 1, no DUP) to a valid topic, or a
 * SUBSCRIBE (QoS 0 or 1) or UNSUBSCRIBE of one valid filter, whose remaining length is its size.
 */
export function queuedRequestProblem(bytes: Uint8Array, offset: number, length: number): string {
  if (length < 2) return length + " bytes";
  const first = bytes[offset];
  const type = first >> 4;
  // PUBLISH: DUP clear and QoS 0 or 1 (bits 3 and 2 clear).
  if (!(type === PacketType.Publish && (first & 0x0c) === 0) && first !== 0x82 && first !== 0xa2) return "first byte 0x" + first.toString(16);
  const end = offset + length;
  let remaining = 0;
  let at = offset + 1;
  for (let shift = 0; ; shift += 7) {
    if (at >= end || shift > 21) return "remaining length unterminated";
    const digit = bytes[at++];
    remaining += (digit & 0x7f) << shift;
    if ((digit & 0x80) === 0) break;
  }
  if (at + remaining !== end) return "remaining length " + remaining + " in a record of " + length + " bytes";
  if (type !== PacketType.Publish) at += 2; // the packet id, given anew when it is sent
  if (at + 2 > end) return "no topic";
  const topicEnd = at + 2 + ((bytes[at] << 8) | bytes[at + 1]);
  if (topicEnd > end || checkUtf8(bytes, at + 2, topicEnd) < 0) return "topic not valid UTF-8 or past the end";
  if (type === PacketType.Publish) {
    if (first & 0x02 && topicEnd + 2 > end) return "no packet id";
    // topicNameProblem() on the bytes, without making the string (a boot checks every record).
    if (topicEnd === at + 2) return "empty topic";
    for (let i = at + 2; i < topicEnd; i++) if (bytes[i] === 0x2b || bytes[i] === 0x23) return "wildcards ('+' or '#') in the topic name " + readUtf8(bytes, at + 2, topicEnd);
    return "";
  }
  if (first === 0x82 && (topicEnd + 1 !== end || bytes[topicEnd] > 1)) return "not one filter and its QoS 0 or 1";
  if (first === 0xa2 && topicEnd !== end) return "not one filter";
  return topicFilterProblem(readUtf8(bytes, at + 2, topicEnd));
}

/** The kind of a request queuedRequestProblem() accepted. */
export function queuedRequestKind(first: number): RequestKind {
  return first === 0x82 ? RequestKind.Subscribe : first === 0xa2 ? RequestKind.Unsubscribe : RequestKind.Publish;
}
