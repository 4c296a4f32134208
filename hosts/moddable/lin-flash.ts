// Moddable's `flash` module for the Linux simulator, which has none (the SDK's is for esp, esp32 and
// nrf52): a partition is a file of the simulator's file system, <file.root>iotlink-<name>.bin (file.root
// is /tmp/ on lin), made erased on first use. manifest_storage.json maps the module name `flash` to this
// file on lin only, so hosts/moddable/flash-device.ts runs unchanged in mcsim and the persisted queue
// and the provisioned identity survive a restart of mcsim. Not power-cut safe the way NOR flash is:
// the simulator's power is never cut; the journal's power-cut behaviour is tested on the desktop.
// The same API as the SDK's Flash: erase(sector), read(offset, length), write(offset, length, buffer),
// byteLength, blockSize. No map(): hosts/moddable/flash-device.ts then reads with read().
/// <reference types="@moddable/typings/file" />
import config from "mc/config";
import { File } from "file";

const SECTOR_BYTES = 4096;
/** A partition's size when the manifest's config.flashPartitionBytes does not give it. */
const PARTITION_BYTES = 65536;

function partitionBytes(name: string): number {
  const sizes = (config as Record<string, unknown>).flashPartitionBytes as Record<string, unknown> | undefined;
  const size = sizes !== undefined ? sizes[name] : undefined;
  return typeof size === "number" && size > 0 && size % SECTOR_BYTES === 0 ? size : PARTITION_BYTES;
}

export default class Flash {
  readonly byteLength: number;
  readonly blockSize = SECTOR_BYTES;
  private readonly path: string;

  constructor(name: string) {
    if (typeof name !== "string" || !/^[A-Za-z0-9_]{1,15}$/.test(name)) throw new Error("can't find partition");
    const root = ((config as Record<string, unknown>).file as { root?: string } | undefined)?.root ?? "/tmp/";
    this.path = root + "iotlink-" + name + ".bin";
    this.byteLength = partitionBytes(name);
    if (!File.exists(this.path)) {
      const file = new File(this.path, true);
      const erased = new Uint8Array(SECTOR_BYTES).fill(0xff);
      for (let at = 0; at < this.byteLength; at += SECTOR_BYTES) file.write(erased.buffer);
      file.close();
    }
  }

  erase(sector: number): void {
    if (!(sector >= 0 && sector < this.byteLength / SECTOR_BYTES)) throw new Error("erase failed");
    const file = new File(this.path, true);
    file.position = sector * SECTOR_BYTES;
    file.write(new Uint8Array(SECTOR_BYTES).fill(0xff).buffer);
    file.close();
  }

  read(offset: number, byteLength: number): ArrayBuffer {
    if (!(offset >= 0 && byteLength >= 0 && offset + byteLength <= this.byteLength)) throw new Error("read failed");
    const file = new File(this.path);
    file.position = offset;
    const bytes = file.read(ArrayBuffer, byteLength);
    file.close();
    return bytes;
  }

  /** NOR semantics, as the device's: a write can only clear bits. */
  write(offset: number, byteLength: number, buffer: ArrayBuffer | Uint8Array): void {
    if (!(offset >= 0 && byteLength > 0 && offset + byteLength <= this.byteLength)) throw new Error("write failed");
    const source = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
    const merged = new Uint8Array(this.read(offset, byteLength));
    for (let i = 0; i < byteLength; i++) merged[i] &= source[i];
    const file = new File(this.path, true);
    file.position = offset;
    file.write(merged.buffer);
    file.close();
  }
}
