// What the journal needs from flash: a partition of equal erase blocks with NOR semantics. An erase
// sets every byte of one block to 0xFF; a write can only clear bits (the flash ANDs what it holds
// with what is written), so a byte is written once after each erase. Offsets are bytes from the start
// of the partition. A host implements this over its flash (hosts/moddable/flash-device.ts over
// Moddable's `flash` module); the tests use an in-memory one that can cut the power at any byte
// (test/support/flash-sim.ts). No host API here.

import { invalid, wholeNumberProblem } from "../types";

export interface FlashDevice {
  /** Bytes per erase block (a multiple of 4). */
  readonly blockSize: number;
  /** Erase blocks in the partition; the partition is blockSize * blockCount bytes. */
  readonly blockCount: number;
  /** Copies `length` (default `bytes.length`) bytes from `offset` into `bytes[0 .. length)`. */
  read(offset: number, bytes: Uint8Array, length?: number): void;
  /** Programs `bytes[0 .. length)` (default `bytes.length`) at `offset`: each flash byte becomes its old value AND the new one. */
  write(offset: number, bytes: Uint8Array, length?: number): void;
  /** Sets every byte of block `block` (0 .. blockCount - 1) to 0xFF. */
  erase(block: number): void;
}

/** What an erased byte reads. */
export const ERASED = 0xff;

/**
 * Why `offset`/`length` is not a byte range of `bytes` and of a partition of `partitionBytes`, or "".
 * Hosts use it to check every read and write at the call.
 */
export function flashRangeProblem(what: string, offset: unknown, bytes: unknown, length: unknown, partitionBytes: number): string {
  if (!(bytes instanceof Uint8Array)) return what + " bytes must be a Uint8Array";
  const count = length === undefined ? bytes.length : length;
  // The common case without building a message (this runs at every read and write).
  if (typeof count === "number" && typeof offset === "number" && Number.isInteger(count) && Number.isInteger(offset) && count >= 0 && count <= bytes.length && offset >= 0 && offset <= partitionBytes - count) return "";
  return (
    wholeNumberProblem(what + " length", count, 0, bytes.length) ||
    wholeNumberProblem(what + " offset", offset, 0, partitionBytes - (count as number))
  );
}

/** Throws an invalid-argument error unless `offset`/`length` is a byte range of `bytes` and of the partition; returns the length. */
export function checkFlashRange(what: string, offset: unknown, bytes: unknown, length: unknown, partitionBytes: number): number {
  const problem = flashRangeProblem(what, offset, bytes, length, partitionBytes);
  if (problem !== "") throw invalid(problem);
  return length === undefined ? (bytes as Uint8Array).length : (length as number);
}
