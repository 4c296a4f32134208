// A power-cut-safe journal of queued messages in a flash partition: "enqueued <seq, bytes>" and
// "acknowledged <seq>" records appended to erase blocks used as a ring. Recovery (open()) rebuilds the
// live records (enqueued, not acknowledged) in sequence order, whatever byte a power cut stopped a
// write or an erase at. Memory is fixed at construction: one scratch buffer of the largest record, a
// table of maxRecords live records, a few numbers per block. Integer arithmetic only; no host API.
//
// Layout. Every block starts with a 16-byte header: magic "ILK1", the block's epoch (it increases by
// one each time a block is started: the ring's order), the next sequence number at that time, and a
// CRC-32 of those 12 bytes and the geometry (so a partition written with another geometry reads as
// foreign, and is erased). Records follow, each at a 4-byte aligned offset:
//
//   0  u8   0x5A                    magic
//   1  u8   kind                    1 enqueued, 2 acknowledged, 3 retired
//   2  u16  length                  payload bytes (little-endian, as every field)
//   4  u32  seq                     enqueued: its sequence number; acknowledged: the one it removes;
//                                   retired: the epoch of the block it retires
//   8  ...  payload                 enqueued: the message; retired: u32 block index; acknowledged: none
//   8+length  u32  CRC-32 of bytes [0, 8 + length)
//
// A record is written with one device write, CRC last, into erased bytes only: it counts once its CRC
// matches, so a torn write is never taken for a record. Recovery reads a block's records in order
// and stops at the first that does not check out; if anything but 0xFF follows (a torn write), the
// block takes no more records ("sealed"). A torn record can only be the last thing written, so
// nothing valid is lost behind it.
//
// The ring. Blocks are used in index order. The head takes appends; the block after it (the spare)
// is always erased; the one after that is the oldest. When the head has no room, the journal starts
// the spare (header), copies the oldest block's live records into it if it has any, writes a
// "retired <oldest>" record, then erases the oldest block, which becomes the new spare. So a block is
// erased once per trip round the ring, never per record, and every block the same number of times.
// Power cuts during that sequence:
//   - before the retired record is complete: the block after the head still has a valid header and
//     the head names no retirement of it. The head holds only the header and copies; recovery erases
//     it and the oldest block, intact, is read as before.
//   - after it (erase not started, or torn: some bytes 0xFF, some old): recovery ignores the block
//     after the head whatever it holds (an old record that survived a torn erase must not come back)
//     and erases it again.
//   - while writing a block header: the block has no valid header; recovery erases it.
//
// Full. An append that does not fit the head starts the next block only when the oldest block holds no
// live record: appends never copy, so the live records stay in sequence order along the ring and the
// oldest of them are in the oldest block (a compaction, below, moves some older ones to the head; the
// order of recovery is always the sequence numbers'). Otherwise append() returns JOURNAL_FULL and writes
// nothing: the caller applies its drop policy (DROP_NEWEST: keep the old ones; DROP_OLDEST:
// acknowledge the oldest and append again: the oldest block's records are acknowledged one by one,
// and once the last of them is, the next append erases that block and fits). The head keeps room for
// an acknowledgement of every live record of the oldest block, plus `ackReserve` more (acknowledged
// out of order), so acknowledgements need no copying. Should that room run out anyway (many out of
// order, or a power cut sealed the head), acknowledge() copies the oldest block's live records forward
// to make room (compaction): an acknowledgement never fails for lack of room.

import { invalid, unknownNameProblem, wholeNumber } from "../types";
import { crc32, crc32Word } from "./crc32";
import { ERASED, type FlashDevice } from "./flash-device";

/** append(): the journal has no room for the record (or holds maxRecords live records); nothing was written. */
export const JOURNAL_FULL = -1;

/** Bytes of a block's header. */
export const JOURNAL_BLOCK_HEADER_BYTES = 16;
/** Bytes of an "acknowledged" record. */
export const JOURNAL_ACK_BYTES = 12;
/** Bytes of a "retired" record (one per block started). */
export const JOURNAL_RETIRE_BYTES = 16;
/** The largest payload the record format carries (its length field is 16 bits). */
export const JOURNAL_MAX_PAYLOAD_BYTES = 65535;

/** Flash bytes an "enqueued" record of `payloadBytes` takes: 12 bytes of header and CRC, 4-byte aligned. */
export function journalRecordBytes(payloadBytes: number): number {
  return (payloadBytes + RECORD_OVERHEAD + 3) & ~3;
}

export interface JournalOptions {
  /** The largest payload append() takes: sizes the scratch buffer (one record). */
  maxPayloadBytes: number;
  /** The most live records the journal holds: sizes the index (13 bytes each). */
  maxRecords: number;
  /** Acknowledgements of records outside the oldest block that the head keeps room for (default 4). */
  ackReserve?: number;
}

const BLOCK_MAGIC = 0x314b4c49; // "ILK1" in little-endian byte order
const RECORD_MAGIC = 0x5a;
const KIND_ENQUEUED = 1;
const KIND_ACKNOWLEDGED = 2;
const KIND_RETIRED = 3;
const RECORD_HEADER = 8;
const RECORD_OVERHEAD = 12;

const ERASED_WORD = 0xffffffff;
const STATE_EMPTY = 0; // every byte read 0xFF
const STATE_DATA = 1; // a valid header: part of the ring
const STATE_DIRTY = 2; // anything else: erased before use

const MAX_SEQ = 0xffffffff;
/** The scratch buffer's least size: recovery reads the partition through it. */
const SCRATCH_MIN_BYTES = 256;
const OPTION_NAMES = "maxPayloadBytes, maxRecords, ackReserve";

function get32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

function put32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = (value >>> 24) & 0xff;
}

export class Journal {
  readonly device: FlashDevice;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly maxPayloadBytes: number;
  readonly maxRecords: number;
  readonly ackReserve: number;
  /** The one buffer records pass through (a record is built, checked and copied here). */
  readonly scratch: Uint8Array;
  /** The same bytes as 32-bit words, to check erased bytes 4 at a time. */
  private readonly scratchWords: Uint32Array;

  /** Since construction: bytes written to the device, erases, blocks started, blocks whose live records were copied, bytes copied. */
  bytesWritten = 0;
  erases = 0;
  rotations = 0;
  compactions = 0;
  copiedBytes = 0;
  /** Repairs recovery made: blocks of a rotation a power cut interrupted, erased (the oldest block, intact, stands). */
  reverts = 0;

  // Per block.
  private readonly state: Uint8Array;
  private readonly epoch: Uint32Array;
  private readonly liveCount: Int32Array;
  private readonly order: Int32Array;
  // The live records, oldest first, in a circular table of maxRecords slots.
  private readonly seqs: Uint32Array;
  private readonly addresses: Uint32Array;
  private readonly lengths: Int32Array;
  private readonly blocks: Uint16Array;
  private first = 0;
  private size = 0;

  private opened = false;
  private head = 0;
  /** Where the next record goes in the head block (blockSize: the head takes no more). */
  private headPointer = 0;
  private nextSeq = 1;
  private nextEpoch = 1;
  // Results of the last scanBlock().
  private scanRetired = false;
  private scanMaxSeq = 0;

  constructor(device: FlashDevice, options: JournalOptions) {
    if (typeof device !== "object" || device === null || typeof device.read !== "function" || typeof device.write !== "function" || typeof device.erase !== "function") {
      throw invalid("journal device must be a FlashDevice (blockSize, blockCount, read, write, erase)");
    }
    const blockSize = wholeNumber("journal device blockSize", device.blockSize, 64, 0x1000000);
    if ((blockSize & 3) !== 0) throw invalid("journal device blockSize must be a multiple of 4, got " + blockSize);
    const blockCount = wholeNumber("journal device blockCount", device.blockCount, 3, 65535);
    if (blockSize * blockCount > 0x7fffffff) throw invalid("journal partition must be at most 2147483647 bytes, got " + blockSize * blockCount);
    if (typeof options !== "object" || options === null) throw invalid("journal options must be an object");
    const unknown = unknownNameProblem("journal option", options, OPTION_NAMES);
    if (unknown !== "") throw invalid(unknown);
    const maxPayloadBytes = wholeNumber("journal maxPayloadBytes", options.maxPayloadBytes, 0, JOURNAL_MAX_PAYLOAD_BYTES);
    const maxRecords = wholeNumber("journal maxRecords", options.maxRecords, 1, 1048576);
    const ackReserve = options.ackReserve === undefined ? 4 : wholeNumber("journal ackReserve", options.ackReserve, 0, 65535);
    const room = blockSize - JOURNAL_BLOCK_HEADER_BYTES - JOURNAL_RETIRE_BYTES - JOURNAL_ACK_BYTES * ackReserve;
    if (journalRecordBytes(maxPayloadBytes) > room) {
      throw invalid("journal maxPayloadBytes " + maxPayloadBytes + " does not fit a block of " + blockSize + " bytes with ackReserve " + ackReserve + " (at most " + Math.max(0, room - RECORD_OVERHEAD) + ")");
    }
    this.device = device;
    this.blockSize = blockSize;
    this.blockCount = blockCount;
    this.maxPayloadBytes = maxPayloadBytes;
    this.maxRecords = maxRecords;
    this.ackReserve = ackReserve;
    this.scratch = new Uint8Array(Math.max(SCRATCH_MIN_BYTES, journalRecordBytes(maxPayloadBytes)));
    this.scratchWords = new Uint32Array(this.scratch.buffer, 0, this.scratch.length >> 2);
    this.state = new Uint8Array(blockCount);
    this.epoch = new Uint32Array(blockCount);
    this.liveCount = new Int32Array(blockCount);
    this.order = new Int32Array(blockCount);
    this.seqs = new Uint32Array(maxRecords);
    this.addresses = new Uint32Array(maxRecords);
    this.lengths = new Int32Array(maxRecords);
    this.blocks = new Uint16Array(maxRecords);
  }

  // ---- Reading the live records.

  /** Live records: enqueued and not acknowledged. */
  get count(): number {
    return this.size;
  }

  /** The sequence number of the index-th live record, oldest first. */
  seqAt(index: number): number {
    return this.seqs[this.slot(this.checkIndex(index))];
  }

  /** The payload length of the index-th live record. */
  lengthAt(index: number): number {
    return this.lengths[this.slot(this.checkIndex(index))];
  }

  /** Reads the index-th live record's payload into `into[0 .. length)`; returns its length. */
  readAt(index: number, into: Uint8Array): number {
    const slot = this.slot(this.checkIndex(index));
    const length = this.lengths[slot];
    if (!(into instanceof Uint8Array) || into.length < length) throw invalid("journal readAt needs a Uint8Array of at least " + length + " bytes");
    this.device.read(this.addresses[slot] + RECORD_HEADER, into, length);
    return length;
  }

  /** The index of the live record `seq`, or -1. */
  indexOf(seq: number): number {
    this.checkOpen();
    return typeof seq === "number" ? this.find(seq) : -1;
  }

  // ---- Changing them.

  /**
   * Appends "enqueued" with `bytes[offset .. offset + length)` (default: all of `bytes`) and returns its
   * sequence number (each larger than any before), or JOURNAL_FULL with nothing written (also once
   * 2^32 - 1 sequence numbers are used up: 136 years at one a second). It is on flash when this returns.
   */
  append(bytes: Uint8Array, offset?: number, length?: number): number {
    this.checkOpen();
    if (!(bytes instanceof Uint8Array)) throw invalid("journal payload must be a Uint8Array");
    const start = offset === undefined ? 0 : wholeNumber("journal payload offset", offset, 0, bytes.length);
    const count = length === undefined ? bytes.length - start : wholeNumber("journal payload length", length, 0, bytes.length - start);
    if (count > this.maxPayloadBytes) throw invalid("journal payload must be at most " + this.maxPayloadBytes + " bytes, got " + count);
    if (this.size === this.maxRecords || this.nextSeq > MAX_SEQ) return JOURNAL_FULL;
    if (!this.makeRoom(journalRecordBytes(count))) return JOURNAL_FULL;
    const scratch = this.scratch;
    for (let i = 0; i < count; i++) scratch[RECORD_HEADER + i] = bytes[start + i];
    const seq = this.nextSeq;
    const address = this.writeRecord(KIND_ENQUEUED, seq, count);
    this.nextSeq = seq + 1;
    this.insert(seq, address, count, this.head);
    return seq;
  }

  /**
   * Appends "acknowledged <seq>": the record is no longer live, now and after any power cut once this
   * returns. False when `seq` is not live (nothing is written). Never fails for lack of room.
   */
  acknowledge(seq: number): boolean {
    this.checkOpen();
    wholeNumber("journal sequence number", seq, 0, MAX_SEQ);
    const index = this.find(seq);
    if (index < 0) return false;
    const block = this.blocks[this.slot(index)];
    this.removeAt(index);
    for (let turn = 0; turn <= this.blockCount; turn++) {
      if (this.headPointer + JOURNAL_ACK_BYTES <= this.blockSize) {
        this.writeRecord(KIND_ACKNOWLEDGED, seq, 0);
        return true;
      }
      // No room: start the next block, copying the oldest block's live records. If the record was
      // in that block, it is erased with it and needs no acknowledgement.
      const gone = this.next(this.next(this.head)) === block;
      this.rotate();
      if (gone) return true;
    }
    throw new Error("journal: no room for an acknowledgement"); // unreachable: the record's block is reached within blockCount turns
  }

  /**
   * Recovery: reads the whole partition and rebuilds the live records. Call it once before anything
   * else (again to re-read the flash). It may erase: a block a power cut left half-written or half-erased.
   */
  open(): void {
    this.opened = false;
    for (let attempt = 0; !this.scan(); attempt++) {
      if (attempt > this.blockCount) throw new Error("journal: recovery does not converge");
    }
    this.opened = true;
  }

  // ---- Recovery.

  /** One pass over the partition; false when it erased a block a rotation had not finished (scan again). */
  private scan(): boolean {
    const { blockCount, state, epoch } = this;
    this.first = 0;
    this.size = 0;
    this.liveCount.fill(0);
    let maxEpoch = 0;
    let maxBase = 1;
    let head = -1;
    for (let block = 0; block < blockCount; block++) {
      const base = this.readHeader(block);
      if (base >= 0) {
        state[block] = STATE_DATA;
        if (base > maxBase) maxBase = base;
        if (epoch[block] > maxEpoch) {
          maxEpoch = epoch[block];
          head = block;
        }
      } else {
        state[block] = this.erasedFrom(block, 0) ? STATE_EMPTY : STATE_DIRTY;
        epoch[block] = 0;
      }
    }
    this.nextEpoch = maxEpoch + 1;
    if (head < 0) {
      // Nothing written yet: the first append starts block 0.
      this.head = blockCount - 1;
      this.headPointer = this.blockSize;
      this.nextSeq = maxBase;
      return true;
    }
    const after = this.next(head);
    if (state[after] === STATE_DATA) {
      this.scanBlock(head, false);
      if (!this.scanRetired) {
        // A rotation into `head` stopped before its "retired" record: it holds copies only.
        this.eraseBlock(head);
        this.reverts++;
        return false;
      }
      state[after] = STATE_DIRTY; // retired: what is left of it is superseded
    }
    // The ring's blocks, oldest first (insertion sort by epoch).
    const order = this.order;
    let blocks = 0;
    for (let block = 0; block < blockCount; block++) {
      if (state[block] !== STATE_DATA) continue;
      let at = blocks++;
      while (at > 0 && epoch[order[at - 1]] > epoch[block]) {
        order[at] = order[at - 1];
        at--;
      }
      order[at] = block;
    }
    let maxSeq = 0;
    for (let i = 0; i < blocks; i++) {
      const pointer = this.scanBlock(order[i], true);
      if (this.scanMaxSeq > maxSeq) maxSeq = this.scanMaxSeq;
      if (order[i] === head) this.headPointer = pointer;
    }
    this.head = head;
    this.nextSeq = maxSeq + 1 > maxBase ? maxSeq + 1 : maxBase;
    if (state[after] !== STATE_EMPTY) this.eraseBlock(after); // the spare
    return true;
  }

  /** The block's base sequence number if its header is valid (and sets its epoch), else -1. */
  private readHeader(block: number): number {
    const scratch = this.scratch;
    this.device.read(block * this.blockSize, scratch, JOURNAL_BLOCK_HEADER_BYTES);
    if (get32(scratch, 0) !== BLOCK_MAGIC) return -1;
    const check = crc32Word(this.blockCount, crc32Word(this.blockSize, crc32(scratch, 0, 12)));
    const epoch = get32(scratch, 4);
    if (check !== get32(scratch, 12) || epoch === 0) return -1;
    this.epoch[block] = epoch;
    return get32(scratch, 8);
  }

  /** Whether every byte of `block` from `from` (a multiple of 4) to its end reads 0xFF. */
  private erasedFrom(block: number, from: number): boolean {
    const { scratch, scratchWords } = this;
    const base = block * this.blockSize;
    for (let at = from; at < this.blockSize; ) {
      const count = Math.min(scratch.length, this.blockSize - at);
      this.device.read(base + at, scratch, count);
      for (let i = 0, words = count >> 2; i < words; i++) if (scratchWords[i] !== ERASED_WORD) return false;
      at += count;
    }
    return true;
  }

  /**
   * Reads a block's records in order; with `apply`, enters them in the live table. Returns where the
   * next record would go (blockSize when a torn write seals the block); sets scanRetired (a "retired"
   * record names the block after it, with its epoch) and scanMaxSeq.
   */
  private scanBlock(block: number, apply: boolean): number {
    const { scratch, blockSize, device } = this;
    const base = block * blockSize;
    const after = this.next(block);
    this.scanRetired = false;
    this.scanMaxSeq = 0;
    let at = JOURNAL_BLOCK_HEADER_BYTES;
    while (at + RECORD_OVERHEAD <= blockSize) {
      device.read(base + at, scratch, RECORD_HEADER);
      if (scratch[0] === ERASED && this.erasedFrom(block, at)) return at;
      const kind = scratch[1];
      const length = scratch[2] | (scratch[3] << 8);
      const size = journalRecordBytes(length);
      if (scratch[0] !== RECORD_MAGIC || kind < KIND_ENQUEUED || kind > KIND_RETIRED || at + size > blockSize) break;
      if ((kind === KIND_ACKNOWLEDGED && length !== 0) || (kind === KIND_RETIRED && length !== 4)) break;
      const seq = get32(scratch, 4);
      if (RECORD_OVERHEAD + length <= scratch.length) {
        // The whole record at once (any record up to maxPayloadBytes).
        device.read(base + at, scratch, RECORD_OVERHEAD + length);
        if (get32(scratch, RECORD_HEADER + length) !== crc32(scratch, 0, RECORD_HEADER + length)) break;
      } else {
        // A longer one (written with a larger maxPayloadBytes): its payload in pieces.
        let crc = crc32(scratch, 0, RECORD_HEADER);
        for (let done = 0; done < length; ) {
          const count = Math.min(scratch.length, length - done);
          device.read(base + at + RECORD_HEADER + done, scratch, count);
          crc = crc32(scratch, 0, count, crc);
          done += count;
        }
        device.read(base + at + RECORD_HEADER + length, scratch, 4);
        if (get32(scratch, 0) !== crc) break;
      }
      if (kind === KIND_RETIRED) {
        if (get32(scratch, RECORD_HEADER) === after && seq === this.epoch[after]) this.scanRetired = true;
      } else {
        if (seq > this.scanMaxSeq) this.scanMaxSeq = seq;
        if (apply) {
          if (kind === KIND_ENQUEUED) this.insert(seq, base + at, length, block);
          else {
            const index = this.find(seq);
            if (index >= 0) this.removeAt(index);
          }
        }
      }
      at += size;
    }
    // A torn record (or a block full to the last bytes): nothing more goes in this block.
    return at + RECORD_OVERHEAD <= blockSize ? blockSize : at;
  }

  // ---- Writing.

  /** Makes room in the head for `bytes` plus the acknowledgement reserve; false: full. */
  private makeRoom(bytes: number): boolean {
    for (let turn = 0; turn < this.blockCount; turn++) {
      const oldest = this.next(this.next(this.head));
      const live = this.liveCount[oldest];
      if (this.headPointer + bytes + JOURNAL_ACK_BYTES * (live + this.ackReserve) <= this.blockSize) return true;
      if (live > 0) return false;
      this.rotate();
    }
    return false;
  }

  /**
   * Starts the spare block after the head, copies the oldest block's live records into it, retires
   * the oldest block and erases it (the new spare).
   */
  private rotate(): void {
    const { state, scratch, device, blockSize } = this;
    const fresh = this.next(this.head);
    const oldest = this.next(fresh);
    if (state[fresh] !== STATE_EMPTY) this.eraseBlock(fresh);
    const epoch = this.nextEpoch;
    put32(scratch, 0, BLOCK_MAGIC);
    put32(scratch, 4, epoch);
    put32(scratch, 8, this.nextSeq);
    put32(scratch, 12, crc32Word(this.blockCount, crc32Word(blockSize, crc32(scratch, 0, 12))));
    device.write(fresh * blockSize, scratch, JOURNAL_BLOCK_HEADER_BYTES);
    this.bytesWritten += JOURNAL_BLOCK_HEADER_BYTES;
    this.nextEpoch = epoch + 1;
    this.epoch[fresh] = epoch;
    state[fresh] = STATE_DATA;
    this.liveCount[fresh] = 0;
    this.head = fresh;
    this.headPointer = JOURNAL_BLOCK_HEADER_BYTES;
    this.rotations++;
    if (state[oldest] === STATE_DATA && this.liveCount[oldest] > 0) {
      this.compactions++;
      for (let i = 0; i < this.size; i++) {
        const slot = this.slot(i);
        if (this.blocks[slot] !== oldest) continue;
        const from = this.addresses[slot];
        const to = fresh * blockSize + this.headPointer;
        const length = RECORD_OVERHEAD + this.lengths[slot];
        for (let done = 0; done < length; ) {
          const count = Math.min(scratch.length, length - done);
          device.read(from + done, scratch, count);
          device.write(to + done, scratch, count);
          done += count;
        }
        this.bytesWritten += length;
        this.copiedBytes += length;
        this.headPointer += journalRecordBytes(this.lengths[slot]);
        this.addresses[slot] = to;
        this.blocks[slot] = fresh;
        this.liveCount[oldest]--;
        this.liveCount[fresh]++;
      }
    }
    put32(scratch, RECORD_HEADER, oldest);
    this.writeRecord(KIND_RETIRED, state[oldest] === STATE_DATA ? this.epoch[oldest] : 0, 4);
    if (state[oldest] !== STATE_EMPTY) this.eraseBlock(oldest);
  }

  /** Writes a record whose payload is already in scratch[8 ..] at the head; returns its address. */
  private writeRecord(kind: number, seq: number, length: number): number {
    const scratch = this.scratch;
    scratch[0] = RECORD_MAGIC;
    scratch[1] = kind;
    scratch[2] = length & 0xff;
    scratch[3] = length >>> 8;
    put32(scratch, 4, seq);
    put32(scratch, RECORD_HEADER + length, crc32(scratch, 0, RECORD_HEADER + length));
    const address = this.head * this.blockSize + this.headPointer;
    this.device.write(address, scratch, RECORD_OVERHEAD + length);
    this.bytesWritten += RECORD_OVERHEAD + length;
    this.headPointer += journalRecordBytes(length);
    return address;
  }

  private eraseBlock(block: number): void {
    this.device.erase(block);
    this.erases++;
    this.state[block] = STATE_EMPTY;
    this.epoch[block] = 0;
    this.liveCount[block] = 0;
  }

  // ---- The live table.

  private next(block: number): number {
    return block + 1 < this.blockCount ? block + 1 : 0;
  }

  private slot(index: number): number {
    const slot = this.first + index;
    return slot < this.maxRecords ? slot : slot - this.maxRecords;
  }

  private checkOpen(): void {
    if (!this.opened) throw invalid("journal is not open: call open() first");
  }

  private checkIndex(index: number): number {
    this.checkOpen();
    return wholeNumber("journal record index", index, 0, this.size - 1);
  }

  /** Index of `seq` in the live table, or -1 (binary search: the table is in sequence order). */
  private find(seq: number): number {
    let low = 0;
    let high = this.size - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const value = this.seqs[this.slot(middle)];
      if (value === seq) return middle;
      if (value < seq) low = middle + 1;
      else high = middle - 1;
    }
    return -1;
  }

  private insert(seq: number, address: number, length: number, block: number): void {
    const { seqs, addresses, lengths, blocks } = this;
    let index = this.size;
    if (index > 0 && seqs[this.slot(index - 1)] >= seq) {
      // Recovery meets a record out of order (a copy): find its place; a second copy moves it.
      let low = 0;
      let high = index - 1;
      while (low < high) {
        const middle = (low + high) >>> 1;
        if (seqs[this.slot(middle)] < seq) low = middle + 1;
        else high = middle;
      }
      const found = this.slot(low);
      if (seqs[found] === seq) {
        this.liveCount[blocks[found]]--;
        this.liveCount[block]++;
        addresses[found] = address;
        lengths[found] = length;
        blocks[found] = block;
        return;
      }
      index = low;
    }
    if (this.size === this.maxRecords) {
      throw invalid("journal holds more than maxRecords (" + this.maxRecords + ") live records: open it with the maxRecords it was written with");
    }
    for (let i = this.size; i > index; i--) {
      const to = this.slot(i);
      const from = this.slot(i - 1);
      seqs[to] = seqs[from];
      addresses[to] = addresses[from];
      lengths[to] = lengths[from];
      blocks[to] = blocks[from];
    }
    const slot = this.slot(index);
    seqs[slot] = seq;
    addresses[slot] = address;
    lengths[slot] = length;
    blocks[slot] = block;
    this.size++;
    this.liveCount[block]++;
  }

  private removeAt(index: number): void {
    const { seqs, addresses, lengths, blocks } = this;
    this.liveCount[blocks[this.slot(index)]]--;
    if (index < this.size >> 1) {
      // Nearer the front (acknowledgements mostly are): move the older ones up by one.
      for (let i = index; i > 0; i--) {
        const to = this.slot(i);
        const from = this.slot(i - 1);
        seqs[to] = seqs[from];
        addresses[to] = addresses[from];
        lengths[to] = lengths[from];
        blocks[to] = blocks[from];
      }
      this.first = this.slot(1);
    } else {
      for (let i = index; i < this.size - 1; i++) {
        const to = this.slot(i);
        const from = this.slot(i + 1);
        seqs[to] = seqs[from];
        addresses[to] = addresses[from];
        lengths[to] = lengths[from];
        blocks[to] = blocks[from];
      }
    }
    this.size--;
  }
}
