// The desktop's flash partitions: hosts/desktop/flash.ts finds partition <name> as <IOTLINK_FLASH>/<name>.bin.
// ensureFlashPartitions() makes the ones the app's manifest sizes (config.flashPartitionBytes: the
// same sizes as the Linux simulator's and, in partitions.csv, the ESP32's), erased, and keeps any
// that are there: what they hold survives from one run of the app to the next, as flash does.
import { existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { loadManifestClosure } from "./manifest.ts";

/** The partitions the app uses and their sizes, from manifest.json's config.flashPartitionBytes. */
export function appFlashPartitions(): Record<string, number> {
  const config = loadManifestClosure(resolve(import.meta.dirname, "..", "manifest.json")).config as { flashPartitionBytes?: Record<string, number> };
  return { ...(config.flashPartitionBytes ?? {}) };
}

/** Makes <directory>/<name>.bin erased (0xFF) for each partition that is missing; returns the directory. */
export function ensureFlashPartitions(directory: string, sizes: Record<string, number> = appFlashPartitions()): string {
  const where = resolve(directory);
  mkdirSync(where, { recursive: true });
  for (const [name, bytes] of Object.entries(sizes)) {
    const file = join(where, name + ".bin");
    if (existsSync(file)) {
      if (statSync(file).size !== bytes) throw new Error(`${file} is ${statSync(file).size} bytes, not the ${bytes} of partition ${name}: remove it to start with an erased one`);
      continue;
    }
    writeFileSync(file, Buffer.alloc(bytes, 0xff));
  }
  return where;
}
