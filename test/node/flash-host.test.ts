// hosts/desktop/flash.ts, the Node stand-in for Moddable's "flash" module: the SDK's own flash tests
// (tests/modules/files/flash in the Moddable SDK: constructor, read, write, erase, map, blockSize,
// byteLength, readwriteerase) as far as they apply to a partition, file persistence across a re-open
// and a new process, and the power-cut injector. Then the journal over hosts/moddable/flash-device.ts
// over this module, bundled with the Moddable aliases as the app is: records survive cuts and reboots
// of a file-backed partition.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import Flash, { definePartition, PowerCutError, partition, removePartition } from "../../hosts/desktop/flash.ts";
import type { FlashDevice } from "../../modules/storage/flash-device.ts";
import { bundleForDesktop } from "../../tools/desktop-build.ts";

const work = mkdtempSync(join(tmpdir(), "iotlink-flash-"));
after(() => rmSync(work, { recursive: true, force: true }));

const root = fileURLToPath(new URL("../..", import.meta.url));

function bytes(flash: Flash, offset: number, length: number): number[] {
  return [...new Uint8Array(flash.read(offset, length))];
}

function filled(flash: Flash, offset: number, length: number, value: number): boolean {
  return new Uint8Array(flash.read(offset, length)).every((byte) => byte === value);
}

test("constructor: a partition by name; what the SDK's constructor test expects", () => {
  definePartition("parity", { byteLength: 8 * 4096 });
  // @ts-expect-error: called without its argument, as the SDK's test does
  assert.throws(() => new Flash(), SyntaxError);
  assert.throws(() => new Flash(1n as unknown as string), Error);
  assert.throws(() => new Flash(Symbol() as unknown as string), TypeError);
  assert.throws(() => (Flash as unknown as (name: string) => void)("parity"), TypeError, "called as a function");
  const flash = new Flash("parity");
  const viaPrimitive = new Flash({ [Symbol.toPrimitive]: () => "parity" } as unknown as string);
  assert.equal(viaPrimitive.byteLength, flash.byteLength);
  assert.equal(viaPrimitive.blockSize, flash.blockSize);
  assert.throws(() => new Flash("1245678"), { message: "can't find partition" });
  assert.equal(flash.byteLength, 8 * 4096);
  assert.equal(flash.blockSize, 4096, "the ESP32's SPI flash sector");
  assert.equal(flash.blockSize & (flash.blockSize - 1), 0, "a power of 2");
  assert.throws(() => {
    (flash as { blockSize: number }).blockSize = 1;
  }, TypeError);
  assert.throws(() => {
    (flash as { byteLength: number }).byteLength = 1;
  }, TypeError);
});

test("read: lengths, offsets and bounds as the SDK's read test expects", () => {
  const flash = new Flash("parity");
  const { byteLength } = flash;
  // @ts-expect-error: too few arguments
  assert.throws(() => flash.read(), SyntaxError);
  // @ts-expect-error: too few arguments
  assert.throws(() => flash.read(1), SyntaxError);
  assert.throws(() => flash.read(0, -1), RangeError);
  assert.equal(flash.read(0, 0).byteLength, 0);
  assert.throws(() => flash.read(-1, 1), Error);
  assert.throws(() => flash.read(byteLength, 1), Error);
  assert.throws(() => flash.read(byteLength + 1, 1), Error);
  assert.throws(() => flash.read(byteLength - 1, 2), Error);
  assert.equal(flash.read(byteLength - 64, 64).byteLength, 64);
  assert.equal(flash.read("0" as unknown as number, "4" as unknown as number).byteLength, 4, "coerced to numbers");
  assert.ok(flash.read(0, 10) instanceof ArrayBuffer);
  const copy = flash.read(0, 4);
  new Uint8Array(copy)[0] = 0;
  assert.notEqual(bytes(flash, 0, 1)[0], 0, "read returns a copy");
});

test("write: buffers, lengths and bounds as the SDK's write test expects", () => {
  const flash = new Flash("parity");
  const { byteLength } = flash;
  // @ts-expect-error: too few arguments
  assert.throws(() => flash.write(), SyntaxError);
  // @ts-expect-error: too few arguments
  assert.throws(() => flash.write(0, 64), SyntaxError);
  for (const bad of [128, "123", Symbol(), {}, []]) assert.throws(() => flash.write(0, 64, bad as unknown as ArrayBuffer), TypeError);
  flash.write(0, 64, new Uint8Array(64).fill(0xff));
  flash.write(0, 64, new DataView(new ArrayBuffer(64)));
  flash.write(0, 64, new SharedArrayBuffer(64));
  assert.throws(() => flash.write(0, 65, new ArrayBuffer(64)), Error, "longer than the buffer");
  assert.throws(() => flash.write(0, 25, new Uint8Array(new ArrayBuffer(64), 32, 24)), Error, "longer than the view");
  flash.write(0, 24, new Uint8Array(new ArrayBuffer(64), 32, 24));
  assert.throws(() => flash.write(byteLength, 64, new ArrayBuffer(64)), Error);
  assert.throws(() => flash.write(byteLength - 32, 64, new ArrayBuffer(64)), Error);
  assert.throws(() => flash.write(-1, 64, new ArrayBuffer(64)), Error);
  assert.throws(() => flash.write(0, -1, new ArrayBuffer(64)), Error);
  assert.throws(() => flash.write(0, 0, new ArrayBuffer(64)), { message: "invalid" }, "the device refuses a length of 0");
});

test("erase, and NOR writes, as the SDK's erase and readwriteerase tests expect", () => {
  const flash = new Flash("parity");
  const { byteLength, blockSize } = flash;
  const blocks = byteLength / blockSize;
  // @ts-expect-error: too few arguments
  assert.throws(() => flash.erase(), SyntaxError);
  for (const bad of [-1, blocks, blocks + 1]) assert.throws(() => flash.erase(bad), Error);
  flash.erase(0);
  flash.erase(String(blocks - 1) as unknown as number);
  for (const block of [0, 1, 2]) {
    flash.erase(block);
    assert.ok(filled(flash, block * blockSize, blockSize, 0xff), "erase block " + block);
  }
  const fill = (offset: number, length: number, value: number): void => flash.write(offset, length, new Uint8Array(length).fill(value));
  fill(blockSize >> 1, blockSize, 0xfe);
  assert.ok(filled(flash, blockSize >> 1, blockSize, 0xfe), "clear bit 0 across blocks");
  fill(blockSize >> 1, blockSize, 0x7f);
  assert.ok(filled(flash, blockSize >> 1, blockSize, 0x7e), "clear bit 7: writes AND into the flash");
  flash.erase(1);
  assert.ok(filled(flash, blockSize >> 1, blockSize >> 1, 0x7e), "partial erase: bottom half kept");
  assert.ok(filled(flash, blockSize, blockSize >> 1, 0xff), "partial erase: top half erased");
  fill(blockSize >> 1, blockSize, 0);
  assert.ok(filled(flash, blockSize >> 1, blockSize, 0), "write zero across blocks");
  for (let i = 0, byte = Uint8Array.of(0xa5); i < blockSize; i++) flash.write(blockSize * 2 + i, 1, byte);
  assert.ok(filled(flash, blockSize * 2, blockSize, 0xa5), "a block a byte at a time");
  const buffers: (ArrayBuffer | SharedArrayBuffer | ArrayBufferView)[] = [];
  buffers.push(new Uint8Array(new ArrayBuffer(5), 3, 1));
  (buffers.at(-1) as Uint8Array)[0] = 0x3c;
  buffers.push(new DataView(new SharedArrayBuffer(10), 8, 1));
  (buffers.at(-1) as DataView).setUint8(0, 0x3c);
  buffers.push(new ArrayBuffer(2));
  new Uint8Array(buffers.at(-1) as ArrayBuffer)[0] = 0x3c;
  buffers.push(new SharedArrayBuffer(4));
  new Uint8Array(buffers.at(-1) as SharedArrayBuffer)[0] = 0x3c;
  flash.erase(2);
  for (let i = 0; i < blockSize; i++) flash.write(blockSize * 2 + i, 1, buffers[i % buffers.length]);
  assert.ok(filled(flash, blockSize * 2, blockSize, 0x3c), "a byte at a time from each kind of buffer");
  assert.equal(flash.readString(blockSize * 2, 3), "<<<");
});

test("map: the whole partition, its byteLength, showing later writes", () => {
  const flash = new Flash("parity");
  const { blockSize } = flash;
  for (let i = 0; i < 4; i++) {
    flash.erase(4 + i);
    flash.write((4 + i) * blockSize, blockSize, new Uint8Array(blockSize).fill(i));
  }
  const map = flash.map();
  assert.equal(map.byteLength, flash.byteLength);
  const view = new Uint8Array(map);
  for (let i = 0; i < 4 * blockSize; i += 97) assert.equal(view[i + 4 * blockSize], (i / blockSize) | 0);
  flash.write(4 * blockSize, 1, Uint8Array.of(0x80));
  assert.equal(view[4 * blockSize], 0, "the map shows a write made after it (0x00 AND 0x80)");
  assert.equal(new Uint8Array(flash.map())[5 * blockSize], 1, "map() again: the same bytes");
});

test("a file-backed partition keeps its bytes across a re-definition and in another process; IOTLINK_FLASH finds <name>.bin", () => {
  const file = join(work, "queue.bin");
  const first = definePartition("filed", { byteLength: 4 * 4096, file });
  assert.equal(readFileSync(file).length, 4 * 4096, "created, erased");
  assert.ok(readFileSync(file).every((byte) => byte === 0xff));
  const flash = new Flash("filed");
  flash.write(100, 4, Uint8Array.of(1, 2, 3, 4));
  flash.erase(1);
  flash.write(4096, 2, Uint8Array.of(9, 9));
  assert.deepEqual([...readFileSync(file).subarray(100, 104)], [1, 2, 3, 4], "written through");
  assert.equal(first.writes, 2);
  assert.equal(first.erases, 1);
  assert.equal(first.eraseCounts[1], 1);
  removePartition("filed");
  assert.throws(() => new Flash("filed"), { message: "can't find partition" });
  definePartition("filed", { file });
  const again = new Flash("filed");
  assert.equal(again.byteLength, 4 * 4096, "the size from the file");
  assert.deepEqual(bytes(again, 100, 4), [1, 2, 3, 4]);
  assert.deepEqual(bytes(again, 4096, 3), [9, 9, 0xff]);
  assert.throws(() => definePartition("other", { file, byteLength: 8192 }), /holds 16384 bytes, not 8192/);
  removePartition("filed");
  // Another process, finding the partition through IOTLINK_FLASH.
  const script = join(work, "read.ts");
  writeFileSync(
    script,
    `import Flash from ${JSON.stringify(pathToFileURL(join(root, "hosts/desktop/flash.ts")).href)};\n` +
      `const flash = new Flash("queue");\nflash.write(102, 1, Uint8Array.of(0));\n` +
      `console.log([...new Uint8Array(flash.read(100, 4))].join(","), flash.byteLength);\n`,
  );
  const output = execFileSync(process.execPath, ["--import", "tsx", script], { cwd: root, env: { ...process.env, IOTLINK_FLASH: work }, encoding: "utf8" });
  assert.equal(output.trim(), "1,2,0,4 16384");
  assert.equal(readFileSync(file)[102], 0, "its write is in the file");
  const saved = process.env.IOTLINK_FLASH;
  process.env.IOTLINK_FLASH = work;
  try {
    assert.deepEqual(bytes(new Flash("queue"), 100, 4), [1, 2, 0, 4]);
    assert.equal(partition("../queue"), undefined, "names cannot leave the directory");
    assert.throws(() => new Flash("absent"), { message: "can't find partition" });
  } finally {
    if (saved === undefined) delete process.env.IOTLINK_FLASH;
    else process.env.IOTLINK_FLASH = saved;
    removePartition("queue");
  }
});

test("power cuts: a write stops after k bytes, an erase is left torn, the partition is dead until reboot(), and a file keeps what the cut left", () => {
  const file = join(work, "cut.bin");
  const store = definePartition("cut", { byteLength: 2 * 4096, file });
  let flash = new Flash("cut");
  store.cutAfter(3);
  assert.throws(() => flash.write(10, 8, new Uint8Array(8)), PowerCutError);
  assert.equal(store.cut, true);
  assert.throws(() => flash.read(0, 1), PowerCutError, "dead after the cut");
  assert.throws(() => new Flash("cut").read(0, 1), PowerCutError, "no power: a new object cannot read either");
  store.reboot();
  assert.throws(() => flash.read(0, 1), PowerCutError, "an object from before the reboot belongs to a program that is gone");
  flash = new Flash("cut");
  assert.deepEqual(bytes(flash, 9, 6), [0xff, 0, 0, 0, 0xff, 0xff], "3 bytes written");
  assert.deepEqual([...readFileSync(file).subarray(10, 14)], [0, 0, 0, 0xff], "and in the file");
  // Half-programmed byte at the cut: some of its bits cleared.
  store.cutAfter(1, { halfByte: true, seed: 0x1234 });
  assert.throws(() => flash.write(20, 4, new Uint8Array(4)), PowerCutError);
  store.reboot();
  flash = new Flash("cut");
  const half = bytes(flash, 20, 3);
  assert.equal(half[0], 0);
  assert.ok(half[1] !== 0 && half[1] !== 0xff, "byte 1 half-programmed: " + half[1].toString(16));
  assert.equal(half[2], 0xff);
  // Torn erases.
  const torn = (mode: "prefix" | "suffix" | "scatter", k: number): number[] => {
    flash.write(4096, 4096, new Uint8Array(4096));
    store.cutAfter(k, { erase: mode, seed: 99 });
    assert.throws(() => flash.erase(1), PowerCutError);
    store.reboot();
    flash = new Flash("cut");
    const after = new Uint8Array(flash.read(4096, 4096));
    flash.erase(1);
    return [after.filter((byte) => byte === 0xff).length, after[0], after[4095]];
  };
  assert.deepEqual(torn("prefix", 100), [100, 0xff, 0]);
  assert.deepEqual(torn("suffix", 100), [100, 0, 0xff]);
  const [erased] = torn("scatter", 100);
  assert.ok(erased > 1500 && erased < 2600, "about half erased: " + erased);
  assert.equal(store.eraseCounts[1], 6, "torn erases count as erases (wear)");
  // Reboot re-reads the file: the chip is what the file holds.
  writeFileSync(file, Buffer.alloc(2 * 4096, 0x55));
  store.reboot();
  assert.deepEqual(bytes(new Flash("cut"), 0, 2), [0x55, 0x55]);
  store.disarm();
  removePartition("cut");
});

test("the journal over hosts/moddable/flash-device.ts over this module (bundled with the aliases): records survive cuts and reboots of a file-backed partition", async () => {
  const entry = join(work, "journal-entry.ts");
  writeFileSync(
    entry,
    `export { ModdableFlashDevice } from ${JSON.stringify(join(root, "hosts/moddable/flash-device.ts"))};\n` +
      `export { Journal, JOURNAL_FULL } from ${JSON.stringify(join(root, "modules/storage/journal.ts"))};\n` +
      `export { definePartition, PowerCutError } from ${JSON.stringify(join(root, "hosts/desktop/flash.ts"))};\n`,
  );
  const outfile = join(work, "journal.bundle.mjs");
  await bundleForDesktop(entry, outfile);
  type Bundle = {
    ModdableFlashDevice: new (name: string, options?: { mapped?: boolean }) => FlashDevice;
    Journal: typeof import("../../modules/storage/journal.ts").Journal;
    JOURNAL_FULL: number;
    definePartition: typeof definePartition;
    PowerCutError: typeof PowerCutError;
  };
  const host = (await import(pathToFileURL(outfile).href)) as Bundle;
  const file = join(work, "iotlinkq.bin");
  const store = host.definePartition("iotlinkq", { byteLength: 16 * 4096, file });
  const device = new host.ModdableFlashDevice("iotlinkq");
  assert.equal(device.blockSize, 4096);
  assert.equal(device.blockCount, 16);
  assert.throws(() => new host.ModdableFlashDevice("nothing"), { message: "can't find partition" });
  assert.throws(() => new host.ModdableFlashDevice(""), /flash partition must be a label of 1 to 15 characters/);
  assert.throws(() => device.read(16 * 4096 - 2, new Uint8Array(4)), /flash read offset must be a whole number from 0 to 65532, got 65534/);
  const options = { maxPayloadBytes: 100, maxRecords: 256 };
  const open = (mapped: boolean): InstanceType<Bundle["Journal"]> => {
    const journal = new host.Journal(new host.ModdableFlashDevice("iotlinkq", { mapped }), options);
    journal.open();
    return journal;
  };
  const live = (journal: InstanceType<Bundle["Journal"]>): string[] => {
    const out: string[] = [];
    const buffer = new Uint8Array(100);
    for (let i = 0; i < journal.count; i++) out.push(journal.seqAt(i) + ":" + Buffer.from(buffer.subarray(0, journal.readAt(i, buffer))).toString());
    return out;
  };
  // Messages in, some acknowledged, a cut armed at every 3rd step and every 7th: after each cut, a reboot
  // (re-reading the file) recovers exactly the acknowledged-or-not state before or after the step.
  let journal = open(true);
  const model: string[] = [];
  let cuts = 0;
  for (let step = 0; step < 1200; step++) {
    const acknowledge = model.length > 12 || (model.length > 0 && step % 3 === 0);
    const text = "message " + step + " " + "x".repeat(step % 60);
    const before = model.slice();
    const expected = model.slice();
    if (acknowledge) expected.shift();
    store.cutAfter(step % 3 === 1 || step % 7 === 0 ? (step * 7) % 70 : 1_000_000);
    try {
      if (acknowledge) assert.equal(journal.acknowledge(Number(model[0].split(":")[0])), true);
      else {
        const seq = journal.append(Buffer.from(text));
        assert.notEqual(seq, host.JOURNAL_FULL);
        expected.push(seq + ":" + text);
      }
      store.disarm();
      model.splice(0, model.length, ...expected);
    } catch (error) {
      assert.ok(error instanceof host.PowerCutError, String(error));
      cuts++;
      store.reboot();
      journal = open(step % 2 === 0);
      const recovered = live(journal);
      if (acknowledge) assert.ok(JSON.stringify(recovered) === JSON.stringify(before) || JSON.stringify(recovered) === JSON.stringify(expected), "step " + step);
      else {
        assert.ok(JSON.stringify(recovered) === JSON.stringify(before) || (recovered.length === before.length + 1 && recovered.at(-1)?.endsWith(":" + text)), "step " + step + ": " + recovered.slice(-2).join(" | "));
      }
      model.splice(0, model.length, ...recovered);
    }
  }
  assert.ok(cuts > 100, cuts + " cuts");
  assert.ok(store.erases >= 16, "the ring went round: " + store.erases + " erases");
  store.reboot();
  assert.deepEqual(live(open(true)), model, "the file holds what the last journal wrote");
});
