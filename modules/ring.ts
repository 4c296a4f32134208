// A FIFO of encoded packets in one byte arena allocated at construction. Each entry is stored
// contiguously (an entry that does not fit before the end of the arena starts again at 0), so it
// can be written to the transport straight from the arena. Entry metadata lives in typed arrays
// of `maxEntries` slots; nothing grows with traffic.

import { wholeNumber } from "./types";

export type AckCallback = (status: number, packetId: number, detail: number) => void;

export class Ring {
  readonly arena: Uint8Array;
  readonly capacity: number;
  readonly maxEntries: number;
  /** Per slot: where the entry's bytes start in the arena, and how many there are. */
  readonly offset: Int32Array;
  readonly length: Int32Array;
  /** Per slot, for the owner: request kind, state flags, packet id, a timestamp, a callback. */
  readonly kind: Uint8Array;
  readonly state: Uint8Array;
  readonly packetId: Uint16Array;
  readonly time: Int32Array;
  readonly callback: (AckCallback | undefined)[];
  /** Entries stored. */
  count = 0;
  /** Bytes held by entries (not counting space lost at the wrap point). */
  usedBytes = 0;
  private head = 0;

  constructor(capacityBytes: number, maxEntries: number) {
    this.capacity = wholeNumber("ring capacity in bytes", capacityBytes, 0, 0x7fffffff);
    this.maxEntries = wholeNumber("ring entry limit", maxEntries, 0, 65535);
    this.arena = new Uint8Array(capacityBytes);
    this.offset = new Int32Array(maxEntries);
    this.length = new Int32Array(maxEntries);
    this.kind = new Uint8Array(maxEntries);
    this.state = new Uint8Array(maxEntries);
    this.packetId = new Uint16Array(maxEntries);
    this.time = new Int32Array(maxEntries);
    this.callback = new Array(maxEntries).fill(undefined);
  }

  /** Slot of the i-th entry from the oldest (0 <= i < count). */
  slot(index: number): number {
    const slot = this.head + index;
    return slot < this.maxEntries ? slot : slot - this.maxEntries;
  }

  /** Arena offset where an entry of `bytes` would be placed now, or -1 if it does not fit. */
  placement(bytes: number): number {
    if (this.count >= this.maxEntries || bytes > this.capacity) return -1;
    if (this.count === 0) return 0;
    const headStart = this.offset[this.head];
    const last = this.slot(this.count - 1);
    const tailEnd = this.offset[last] + this.length[last];
    // Not wrapped: the entries run from headStart to tailEnd. They can only be equal when every
    // entry is empty (usedBytes 0): a wrapped ring always holds the non-empty entry that wrapped.
    if (tailEnd > headStart || this.usedBytes === 0) {
      if (tailEnd + bytes <= this.capacity) return tailEnd;
      return bytes <= headStart ? 0 : -1;
    }
    return tailEnd + bytes <= headStart ? tailEnd : -1;
  }

  /** Reserves an entry of `bytes` at the tail and returns its slot (its bytes start at offset[slot]), or -1. */
  push(bytes: number): number {
    const at = this.placement(bytes);
    if (at < 0) return -1;
    const slot = this.slot(this.count);
    this.offset[slot] = at;
    this.length[slot] = bytes;
    this.kind[slot] = 0;
    this.state[slot] = 0;
    this.packetId[slot] = 0;
    this.time[slot] = 0;
    this.callback[slot] = undefined;
    this.count++;
    this.usedBytes += bytes;
    return slot;
  }

  /** Slot of the oldest entry; only meaningful when count > 0. */
  oldest(): number {
    return this.head;
  }

  /** Removes the oldest entry. */
  shift(): void {
    if (this.count === 0) return;
    this.usedBytes -= this.length[this.head];
    this.callback[this.head] = undefined;
    this.count--;
    this.head = this.head + 1 === this.maxEntries ? 0 : this.head + 1;
  }

  /** Removes everything (the arena is reused from offset 0). */
  clear(): void {
    while (this.count > 0) this.shift();
    this.head = 0;
  }
}
