// Node stand-in for Moddable's "flash" module (modules/files/flash in the Moddable SDK), with a
// power-cut injector for the tests.
//
// Which Moddable flash API IoTLink's offline journal uses, and why (checked against the SDK sources,
// 8.2.x, modules/files and modules/io):
//   - `flash` (this module): `new Flash(partitionName)` opens an ESP32 data partition by its label
//     (esp_partition_find_first(DATA, ANY subtype, name); also "xs", "running", "nextota"). It has
//     erase(sector) (one 4,096-byte SPI flash sector, esp_partition_erase_range), read(offset,
//     byteLength) (a new ArrayBuffer each call), write(offset, byteLength, buffer), map() (the
//     partition memory-mapped as a read-only HostBuffer: reads without allocating), byteLength and
//     blockSize (4,096). On esp, esp32 and nrf52; typed by @moddable/typings ("flash"). CHOSEN: raw
//     erase blocks let the journal decide exactly what is written when, which is what makes it
//     power-cut safe (a record is one write into erased bytes, its CRC last; a block is erased once
//     per trip round the ring, so wear is even and 1 erase per ~30 messages of 100 bytes), and it
//     costs RAM only for the journal's own scratch record and index (no file system caches).
//   - ECMA-419 `embedded:storage/flash` (modules/io/flash): the same partitions, and read() can fill a
//     caller's buffer; but esp32/mac/zephyr only, no typings in @moddable/typings, and map() does the
//     no-allocation read for `flash` too. A later port to it is a small FlashDevice.
//   - The file system (modules/files/file: SPIFFS, or LittleFS with manifest_littlefs.json): needs
//     its "storage" partition and RAM for its caches (LittleFS: read/program/lookahead buffers per
//     mount, a file handle); SPIFFS is not power-cut safe; every append is a file write plus the
//     file system's own metadata writes (more flash wear than the record itself), and what survives a
//     cut is the file system's business, which the tests here could not inject cuts into.
//   - `preference` (ESP-IDF NVS): key/value, keys of 15 characters, values up to ~4,000 bytes, in the
//     small "nvs" partition Wi-Fi also uses; a queue would be one key per message with no order.
//     Fine for settings, not for a queue.
// The partition: a data partition of its own in the app's partitions.csv, e.g. 64 KB:
//     iotlinkq, data, 0x40, , 0x10000,
// (name at most 15 characters; type data; a custom subtype 0x40-0xFE: Flash finds it by name with any
// subtype; offset left empty: placed after the previous one, 4 KB aligned; size a multiple of 4 KB).
// The SDK's xsProj-esp32/partitions.csv gives factory the rest of a 4 MB flash (0x3F0000), so an app
// that adds this takes 0x10000 from factory (0x3E0000). The manifest points mcconfig at its table with
//     "platforms": { "esp32": { "build": { "PARTITIONS_FILE": "./partitions.csv" } } }
// (mcconfig copies it into the build, adding OTA/mods/storage partitions only when those are asked
// for), and includes "$(MODDABLE)/modules/files/flash/manifest.json" for the module.
//
// Here a partition is bytes in memory, optionally backed by a file (every write and erase goes to
// the file as it happens, so a new process, or reboot(), sees them). Partitions are defined with
// definePartition(), or found as <name>.bin in the directory IOTLINK_FLASH names. Like the device's,
// the calls coerce their arguments to integers and throw Error for a range outside the partition
// ("read failed", "write failed", "erase failed", "invalid"), TypeError for a write from something
// that is not a buffer, RangeError for a negative read length. NOR semantics: a write ANDs into the
// flash, an erase sets a 4,096-byte (blockSize) sector to 0xFF.
//
// The injector: partition.cutAfter(n) cuts the power n bytes (written or erased) from now; the write
// in progress stops after the bytes before the cut (or half-programs the byte at the cut), the erase in
// progress leaves its sector partly erased (some bytes 0xFF, some as they were). Every Flash object
// of that partition then throws PowerCutError, as the program holding it is gone; reboot() powers it
// back on (re-reading the file when there is one) and new Flash objects work.

import { closeSync, existsSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { join, resolve } from "node:path";

export const SECTOR_BYTES = 4096;

export class PowerCutError extends Error {
  constructor(partition: string) {
    super("power cut (flash partition " + partition + ")");
    this.name = "PowerCutError";
  }
}

export type TornErase = "prefix" | "suffix" | "scatter";

export interface PartitionOptions {
  /** Partition size in bytes, a multiple of blockSize (default: the file's size, else 64 KB). */
  byteLength?: number;
  /** Erase sector size (default 4,096, as on the ESP32). */
  blockSize?: number;
  /** A file holding the partition: read at definition (created erased if missing), written through. */
  file?: string;
}

export interface CutOptions {
  /** How a cut erase leaves its sector (default "scatter": a pseudo-random part erased). */
  erase?: TornErase;
  /** The byte being written at the cut keeps some of its old set bits. */
  halfByte?: boolean;
  seed?: number;
}

function xorshift(state: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}

/** One flash partition: the chip's bytes, counters, and the power-cut injector. */
export class FlashPartition {
  readonly name: string;
  readonly byteLength: number;
  readonly blockSize: number;
  readonly file: string | undefined;
  /** What the chip holds (map() gives its ArrayBuffer). */
  readonly bytes: Uint8Array;
  /** Erases per sector since definition. */
  readonly eraseCounts: Int32Array;
  /** Bytes written plus bytes erased: cut points are counted in these units. */
  units = 0;
  writes = 0;
  bytesWritten = 0;
  erases = 0;
  /** Power generation: a Flash object made before the last cut is dead. */
  generation = 0;
  /** True from a cut until reboot(). */
  cut = false;
  private cutAt = -1;
  private cutOptions: CutOptions = {};
  private fd: number | undefined;

  constructor(name: string, options: PartitionOptions = {}) {
    this.name = name;
    this.blockSize = options.blockSize ?? SECTOR_BYTES;
    if (!Number.isInteger(this.blockSize) || this.blockSize < 16 || (this.blockSize & (this.blockSize - 1)) !== 0) throw new RangeError("flash blockSize must be a power of 2 of at least 16, got " + options.blockSize);
    this.file = options.file === undefined ? undefined : resolve(options.file);
    let size = options.byteLength;
    if (this.file !== undefined && existsSync(this.file)) {
      this.fd = openSync(this.file, "r+");
      const fileSize = fstatSync(this.fd).size;
      if (size !== undefined && size !== fileSize) {
        closeSync(this.fd);
        throw new RangeError("flash partition " + name + ": " + this.file + " holds " + fileSize + " bytes, not " + size);
      }
      size = fileSize;
    }
    size ??= 16 * this.blockSize;
    if (!Number.isInteger(size) || size <= 0 || size % this.blockSize !== 0) throw new RangeError("flash partition size must be a positive multiple of " + this.blockSize + ", got " + size);
    this.byteLength = size;
    this.bytes = new Uint8Array(new ArrayBuffer(size)).fill(0xff);
    this.eraseCounts = new Int32Array(size / this.blockSize);
    if (this.file !== undefined) {
      if (this.fd === undefined) {
        this.fd = openSync(this.file, "w+");
        writeSync(this.fd, this.bytes, 0, size, 0);
      } else this.load();
    }
  }

  /** Arms a power cut `units` bytes (written or erased) from now. */
  cutAfter(units: number, options: CutOptions = {}): void {
    if (!Number.isInteger(units) || units < 0) throw new RangeError("cut point must be a whole number, got " + units);
    this.cutAt = this.units + units;
    this.cutOptions = options;
  }

  /** Disarms a cut not reached yet. */
  disarm(): void {
    this.cutAt = -1;
  }

  /** Power back on: re-reads the file (when there is one); Flash objects made from now on work. */
  reboot(): void {
    this.cut = false;
    this.cutAt = -1;
    this.generation++;
    if (this.fd !== undefined) this.load();
  }

  /** Closes the backing file (the partition stays defined in memory). */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  /** Programs `source[0 .. length)` at `offset`: NOR, bytes AND; stops at an armed cut. */
  program(offset: number, source: Uint8Array, length: number): void {
    const target = this.bytes;
    for (let i = 0; i < length; i++) {
      if (this.units === this.cutAt) {
        if (this.cutOptions.halfByte === true) target[offset + i] &= source[i] | (xorshift(this.cutOptions.seed ?? 7) & 0xff);
        this.persist(offset, i + 1);
        this.powerCut();
      }
      target[offset + i] &= source[i];
      this.units++;
    }
    this.writes++;
    this.bytesWritten += length;
    this.persist(offset, length);
  }

  /** Erases sector `sector`; an armed cut within it leaves it torn. */
  eraseSector(sector: number): void {
    const size = this.blockSize;
    const start = sector * size;
    const target = this.bytes;
    this.eraseCounts[sector]++;
    if (this.cutAt >= this.units && this.cutAt < this.units + size) {
      const done = this.cutAt - this.units;
      const mode = this.cutOptions.erase ?? "scatter";
      if (mode === "prefix") target.fill(0xff, start, start + done);
      else if (mode === "suffix") target.fill(0xff, start + size - done, start + size);
      else {
        let state = (this.cutOptions.seed ?? 7) | 1;
        for (let i = 0; i < size; i++) {
          state = xorshift(state);
          if (state & 0x100) target[start + i] = 0xff;
        }
      }
      this.units += done;
      this.persist(start, size);
      this.powerCut();
    }
    target.fill(0xff, start, start + size);
    this.units += size;
    this.erases++;
    this.persist(start, size);
  }

  private powerCut(): never {
    this.cut = true;
    this.cutAt = -1;
    throw new PowerCutError(this.name);
  }

  private persist(offset: number, length: number): void {
    if (this.fd !== undefined && length > 0) writeSync(this.fd, this.bytes, offset, length, offset);
  }

  private load(): void {
    if (this.fd === undefined) return;
    let done = 0;
    while (done < this.byteLength) {
      const count = readSync(this.fd, this.bytes, done, this.byteLength - done, done);
      if (count <= 0) break;
      done += count;
    }
  }
}

const partitions = new Map<string, FlashPartition>();

/** Defines (or redefines) partition `name`; new Flash(name) opens it. */
export function definePartition(name: string, options: PartitionOptions = {}): FlashPartition {
  partitions.get(name)?.close();
  const partition = new FlashPartition(name, options);
  partitions.set(name, partition);
  return partition;
}

/** Forgets partition `name` (closing its file). */
export function removePartition(name: string): void {
  partitions.get(name)?.close();
  partitions.delete(name);
}

/** Partition `name`: defined, or <IOTLINK_FLASH>/<name>.bin when that file exists; else undefined. */
export function partition(name: string): FlashPartition | undefined {
  const known = partitions.get(name);
  if (known !== undefined) return known;
  const directory = process.env.IOTLINK_FLASH;
  if (directory === undefined || directory === "" || !/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith(".")) return undefined;
  const file = join(directory, name + ".bin");
  return existsSync(file) ? definePartition(name, { file }) : undefined;
}

/** ToInteger as XS's xsmcToInteger does it (NaN 0, fractions truncated, Symbol and BigInt throw TypeError). */
function toInteger(value: unknown): number {
  const number = Number(value);
  return Number.isFinite(number) ? Math.trunc(number) : 0;
}

function bufferView(buffer: unknown): Uint8Array {
  if (buffer instanceof ArrayBuffer || (typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer)) return new Uint8Array(buffer);
  if (ArrayBuffer.isView(buffer)) return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  throw new TypeError("flash write: buffer must be an ArrayBuffer, a TypedArray or a DataView");
}

export default class Flash {
  readonly #partition: FlashPartition;
  readonly #generation: number;

  constructor(name: string) {
    if (arguments.length < 1) throw new SyntaxError("Flash: partition name required");
    if (typeof name === "symbol") throw new TypeError("Flash: cannot coerce a Symbol to a partition name");
    if (typeof name === "bigint") throw new TypeError("Flash: cannot coerce a BigInt to a partition name");
    const found = partition(String(name));
    if (found === undefined) throw new Error("can't find partition");
    this.#partition = found;
    this.#generation = found.generation;
  }

  get byteLength(): number {
    return this.#live().byteLength;
  }

  get blockSize(): number {
    return this.#live().blockSize;
  }

  erase(sector: number): void {
    if (arguments.length < 1) throw new SyntaxError("Flash erase: sector required");
    const partition = this.#live();
    const index = toInteger(sector);
    if (index < 0 || index >= partition.byteLength / partition.blockSize) throw new Error("erase failed");
    partition.eraseSector(index);
  }

  read(offset: number, byteLength: number): ArrayBuffer {
    if (arguments.length < 2) throw new SyntaxError("Flash read: offset and byteLength required");
    const partition = this.#live();
    const start = toInteger(offset);
    const length = toInteger(byteLength);
    if (length < 0) throw new RangeError("Flash read: invalid length " + length);
    if (start < 0 || start + length > partition.byteLength || (length > 0 && start >= partition.byteLength)) throw new Error("read failed");
    return partition.bytes.slice(start, start + length).buffer;
  }

  readString(offset: number, byteLength: number): string {
    return new TextDecoder().decode(this.read(offset, byteLength));
  }

  write(offset: number, byteLength: number, buffer: ArrayBufferLike | ArrayBufferView): void {
    if (arguments.length < 3) throw new SyntaxError("Flash write: offset, byteLength and buffer required");
    const partition = this.#live();
    const start = toInteger(offset);
    const length = toInteger(byteLength);
    const source = bufferView(buffer);
    if (length <= 0 || source.length < length) throw new Error("invalid");
    if (start < 0 || start + length > partition.byteLength) throw new Error("write failed");
    partition.program(start, source, length);
  }

  /** The partition's bytes, as they change (the device's map is read-only: do not write through it). */
  map(): ArrayBuffer {
    return this.#live().bytes.buffer as ArrayBuffer;
  }

  #live(): FlashPartition {
    const partition = this.#partition;
    if (partition.cut || partition.generation !== this.#generation) throw new PowerCutError(partition.name);
    return partition;
  }
}
