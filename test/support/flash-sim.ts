// An in-memory NOR flash for the portable suites (Node and XS): a FlashDevice whose power can be cut
// at any byte of any write or erase. Writes AND into what the flash holds, erases set a block to
// 0xFF, one byte at a time; every byte written or erased is one "unit", numbered from 0 since
// construction. cutAfter(n) arms a cut n units from now: the write stops after the bytes before it
// (optionally leaving the byte at the cut half-programmed: some of its bits cleared), the erase leaves
// the block partly erased (some bytes 0xFF, the others as they were). Then the device is dead: every
// call throws PowerCut until reboot(). The bytes are the chip: a new journal over the same SimFlash
// after reboot() is the device after a power cycle.

import { checkFlashRange, type FlashDevice } from "../../modules/storage/flash-device";
import { wholeNumber } from "../../modules/types";

export class PowerCut extends Error {
  constructor() {
    super("power cut");
    Object.defineProperty(this, "name", { value: "PowerCut", writable: true, enumerable: true, configurable: true });
  }
}

/**
 * How a cut erase leaves its block. "prefix": the bytes before the cut are erased (from the block's
 * start); "suffix": erased from the block's end backwards, so the block header goes last; "scatter":
 * a pseudo-random half of the block's bytes are erased, the rest keep their old values.
 */
export type TornErase = "prefix" | "suffix" | "scatter";

export interface CutOptions {
  erase?: TornErase;
  /** The byte being written at the cut keeps some of its old set bits (a half-programmed byte). */
  halfByte?: boolean;
  /** Seed of the pseudo-random choices (scatter, half-programmed bits). */
  seed?: number;
}

function xorshift(state: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}

export class SimFlash implements FlashDevice {
  readonly blockSize: number;
  readonly blockCount: number;
  /** What the chip holds. */
  readonly bytes: Uint8Array;
  /** Erases per block since construction. */
  readonly eraseCounts: Int32Array;
  /** Bytes written plus bytes erased since construction: cut points are numbered in these units. */
  units = 0;
  writes = 0;
  bytesWritten = 0;
  erases = 0;
  reads = 0;
  /** The distinct buffers read into or written from (at most 16 kept): the fixed-memory check. */
  readonly buffers: Uint8Array[] = [];
  /** Called at the start of every erase with the unit number it starts at (to find erase cut points). */
  onErase: ((block: number, unit: number) => void) | undefined = undefined;
  /** Set when a cut happened: every call throws PowerCut until reboot(). */
  dead = false;
  private cutAt = -1;
  private tornErase: TornErase = "prefix";
  private halfByte = false;
  private seed = 1;

  constructor(blockSize: number, blockCount: number) {
    this.blockSize = wholeNumber("flash block size", blockSize, 4, 0x1000000);
    this.blockCount = wholeNumber("flash block count", blockCount, 1, 65535);
    this.bytes = new Uint8Array(blockSize * blockCount).fill(0xff);
    this.eraseCounts = new Int32Array(blockCount);
  }

  /** Cuts the power `units` units from now (0: before the next byte written or erased). */
  cutAfter(units: number, options: CutOptions = {}): void {
    this.cutAt = this.units + wholeNumber("cut point", units, 0, 0x7fffffff);
    this.tornErase = options.erase ?? "prefix";
    this.halfByte = options.halfByte === true;
    this.seed = (options.seed ?? 1) | 1;
  }

  /** Power back on: the device works again (nothing armed). The bytes are what the cut left. */
  reboot(): void {
    this.dead = false;
    this.cutAt = -1;
  }

  /** A copy of the chip's bytes. */
  snapshot(): Uint8Array {
    return this.bytes.slice();
  }

  /** Puts `image` (a snapshot) back on the chip; counters are kept. */
  restore(image: Uint8Array): void {
    this.bytes.set(image);
    this.dead = false;
    this.cutAt = -1;
  }

  read(offset: number, bytes: Uint8Array, length?: number): void {
    if (this.dead) throw new PowerCut();
    const count = checkFlashRange("flash read", offset, bytes, length, this.bytes.length);
    this.note(bytes);
    this.reads++;
    bytes.set(this.bytes.subarray(offset, offset + count)); // a view per read: test code, where speed matters more
  }

  write(offset: number, bytes: Uint8Array, length?: number): void {
    if (this.dead) throw new PowerCut();
    const count = checkFlashRange("flash write", offset, bytes, length, this.bytes.length);
    this.note(bytes);
    this.writes++;
    const target = this.bytes;
    for (let i = 0; i < count; i++) {
      if (this.units === this.cutAt) {
        if (this.halfByte) {
          // Some of the bits the write clears are cleared, the others not yet.
          this.seed = xorshift(this.seed);
          target[offset + i] &= bytes[i] | (this.seed & 0xff);
        }
        this.dead = true;
        throw new PowerCut();
      }
      target[offset + i] &= bytes[i];
      this.units++;
      this.bytesWritten++;
    }
  }

  erase(block: number): void {
    if (this.dead) throw new PowerCut();
    wholeNumber("flash erase block", block, 0, this.blockCount - 1);
    if (this.onErase !== undefined) this.onErase(block, this.units);
    const size = this.blockSize;
    const start = block * size;
    const target = this.bytes;
    if (this.cutAt >= this.units && this.cutAt < this.units + size) {
      const done = this.cutAt - this.units;
      if (this.tornErase === "scatter") {
        let state = this.seed;
        for (let i = 0; i < size; i++) {
          state = xorshift(state);
          if (state & 0x100) target[start + i] = 0xff;
        }
      } else if (this.tornErase === "suffix") {
        target.fill(0xff, start + size - done, start + size);
      } else {
        target.fill(0xff, start, start + done);
      }
      this.units += done;
      this.eraseCounts[block]++;
      this.dead = true;
      throw new PowerCut();
    }
    target.fill(0xff, start, start + size);
    this.units += size;
    this.erases++;
    this.eraseCounts[block]++;
  }

  private note(bytes: Uint8Array): void {
    const buffers = this.buffers;
    for (let i = 0; i < buffers.length; i++) if (buffers[i] === bytes) return;
    if (buffers.length < 16) buffers.push(bytes);
  }
}
