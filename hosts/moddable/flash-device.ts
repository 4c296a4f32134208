/// <reference types="@moddable/typings/flash" />
// The journal's FlashDevice (modules/storage/flash-device.ts) over Moddable's `flash` module: one
// ESP32 data partition, found by its label, in its 4,096-byte erase sectors. Why this module and how
// to declare the partition: the comment at the top of hosts/desktop/flash.ts.
//
// Reads copy from the partition's memory map (Flash.map(), made once), so they allocate nothing.
// ESP-IDF invalidates the cache over a mapped range it writes or erases (esp_flash_write and
// esp_flash_erase_region end with spi_flash_check_and_flush_cache), so the map shows every write: read
// from the IDF sources, not yet checked on a device, which this project has not flashed. With
// `mapped: false` each read is a Flash.read(), which allocates an ArrayBuffer per call: the fallback
// for a platform whose map() is missing or not coherent. The map takes MMU data pages (64 KB each
// on the ESP32) for the partition's size. Writes pass the caller's bytes straight to
// Flash.write (it takes a view with an offset), erases are Flash.erase(block).
// (The triple-slash reference types "flash" for tsconfig.json; mcconfig's own build types it from the
// SDK's typings.)

import Flash from "flash";
import { checkFlashRange, type FlashDevice } from "../../modules/storage/flash-device";
import { invalid, wholeNumber } from "../../modules/types";

export interface ModdableFlashOptions {
  /** Read through the memory map (default true): no allocation per read. */
  mapped?: boolean;
}

export class ModdableFlashDevice implements FlashDevice {
  readonly blockSize: number;
  readonly blockCount: number;
  private readonly flash: Flash;
  private readonly map: Uint8Array | undefined;
  private readonly byteLength: number;

  /** Opens the data partition labelled `partition` (an Error "can't find partition" if there is none). */
  constructor(partition: string, options: ModdableFlashOptions = {}) {
    if (typeof partition !== "string" || partition.length === 0 || partition.length > 15) throw invalid("flash partition must be a label of 1 to 15 characters, got " + String(partition));
    if (typeof options !== "object" || options === null) throw invalid("flash options must be an object");
    const flash = new Flash(partition);
    this.flash = flash;
    this.blockSize = wholeNumber("flash blockSize", flash.blockSize, 4, 0x1000000);
    this.blockCount = Math.floor(flash.byteLength / this.blockSize);
    this.byteLength = this.blockSize * this.blockCount;
    // The Linux simulator's stand-in (hosts/moddable/lin-flash.ts) has no map: reads go through read() there.
    this.map = options.mapped === false || typeof flash.map !== "function" ? undefined : new Uint8Array(flash.map() as unknown as ArrayBuffer);
  }

  read(offset: number, bytes: Uint8Array, length?: number): void {
    const count = checkFlashRange("flash read", offset, bytes, length, this.byteLength);
    const map = this.map;
    if (map !== undefined) {
      for (let i = 0; i < count; i++) bytes[i] = map[offset + i];
    } else if (count > 0) {
      const copy = new Uint8Array(this.flash.read(offset, count) as ArrayBuffer);
      for (let i = 0; i < count; i++) bytes[i] = copy[i];
    }
  }

  write(offset: number, bytes: Uint8Array, length?: number): void {
    const count = checkFlashRange("flash write", offset, bytes, length, this.byteLength);
    if (count > 0) this.flash.write(offset, count, bytes); // Flash.write refuses a length of 0
  }

  erase(block: number): void {
    this.flash.erase(wholeNumber("flash erase block", block, 0, this.blockCount - 1));
  }
}
