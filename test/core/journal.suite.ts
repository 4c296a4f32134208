// Portable tests for modules/storage: the CRC, the journal over an in-memory NOR flash
// (test/support/flash-sim.ts): append and recovery, acknowledgements, order across the ring's wrap,
// a full partition and the drop policies, compaction, a power cut at every byte of every write and
// erase of a scripted sequence, torn erases, wear, fixed memory, bad input. Runs on Node and XS; XS
// (no `process`) takes every write byte but fewer erase bytes, to stay within ~20 s.
import { equal, ok, test, throws } from "../harness";
import * as crcExports from "../../modules/storage/crc32";
import { crc32, crc32Word } from "../../modules/storage/crc32";
import * as deviceExports from "../../modules/storage/flash-device";
import * as journalExports from "../../modules/storage/journal";
import { Journal, JOURNAL_ACK_BYTES, JOURNAL_BLOCK_HEADER_BYTES, JOURNAL_FULL, JOURNAL_RETIRE_BYTES, journalRecordBytes, type JournalOptions } from "../../modules/storage/journal";
import { type CutOptions, PowerCut, SimFlash } from "../support/flash-sim";

const ON_XS = typeof (globalThis as { process?: unknown }).process === "undefined";

/** The small geometry of the power-cut tests: 4 blocks of 512 bytes. */
const BLOCK = 512;
const BLOCKS = 4;
const SMALL: JournalOptions = { maxPayloadBytes: 40, maxRecords: 64, ackReserve: 2 };

interface Entry {
  seq: number;
  tag: number;
  length: number;
}

function xorshift(state: number): number {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  return state >>> 0;
}

/** The byte at `i` of the payload tagged `tag` (what every test writes, so what recovery returns can be checked). */
function content(tag: number, i: number, length: number): number {
  return (tag * 29 + i * 7 + length * 3 + 1) & 0xff;
}

const payload = new Uint8Array(256);
const readBuffer = new Uint8Array(256);

function appendTagged(journal: Journal, tag: number, length: number): number {
  for (let i = 0; i < length; i++) payload[i] = content(tag, i, length);
  return journal.append(payload, 0, length);
}

function seqList(journal: Journal): string {
  const seqs: number[] = [];
  for (let i = 0; i < journal.count; i++) seqs.push(journal.seqAt(i));
  return seqs.join(",");
}

/** "" when the journal's live records are exactly `model`, in order, with their bytes; else the first difference. */
function difference(journal: Journal, model: readonly Entry[]): string {
  if (journal.count !== model.length) return "count " + journal.count + " [" + seqList(journal) + "], expected " + model.length + " [" + model.map((entry) => entry.seq).join(",") + "]";
  for (let i = 0; i < model.length; i++) {
    const entry = model[i];
    if (journal.seqAt(i) !== entry.seq) return "record " + i + ": seq " + journal.seqAt(i) + ", expected " + entry.seq;
    if (journal.lengthAt(i) !== entry.length) return "record " + i + " (seq " + entry.seq + "): length " + journal.lengthAt(i) + ", expected " + entry.length;
    journal.readAt(i, readBuffer);
    for (let k = 0; k < entry.length; k++) {
      if (readBuffer[k] !== content(entry.tag, k, entry.length)) return "record " + i + " (seq " + entry.seq + "): byte " + k + " differs";
    }
  }
  return "";
}

function reopen(sim: SimFlash, options: JournalOptions = SMALL): Journal {
  const journal = new Journal(sim, options);
  journal.open();
  return journal;
}

function removeSeq(model: Entry[], seq: number): void {
  for (let i = 0; i < model.length; i++) {
    if (model[i].seq === seq) {
      model.splice(i, 1);
      return;
    }
  }
}

// ---- The CRC and the exports.

test("storage: CRC-32 is the IEEE one (check value of \"123456789\"), chains, and reads the bytes it is given only", () => {
  const text = "123456789";
  const bytes = new Uint8Array(text.length + 4);
  for (let i = 0; i < text.length; i++) bytes[i + 2] = text.charCodeAt(i);
  equal(crc32(bytes, 2, 9), 0xcbf43926);
  equal(crc32(bytes, 6, 5, crc32(bytes, 2, 4)), 0xcbf43926, "chained in two parts");
  equal(crc32(bytes, 0, 0), 0, "no bytes");
  const word = new Uint8Array([0x78, 0x56, 0x34, 0x12]);
  equal(crc32Word(0x12345678, 0xcbf43926), crc32(word, 0, 4, 0xcbf43926), "a word is its 4 little-endian bytes");
  equal(crc32(new Uint8Array(4).fill(0xff), 0, 4), 0xffffffff, "4 erased bytes");
  equal(crc32(new Uint8Array(4), 0, 4), 0x2144df1c);
});

test("storage: every object the storage modules export is frozen (they are preloaded)", () => {
  const unfrozen: string[] = [];
  const modules: Record<string, object> = { crc32: crcExports, flashDevice: deviceExports, journal: journalExports };
  for (const [name, exports] of Object.entries(modules)) {
    for (const key of Object.keys(exports)) {
      const value = (exports as Record<string, unknown>)[key];
      if (typeof value === "object" && value !== null && !Object.isFrozen(value)) unfrozen.push(name + "." + key);
    }
  }
  equal(unfrozen.join(", "), "");
  equal(journalRecordBytes(0), 12);
  equal(journalRecordBytes(1), 16);
  equal(journalRecordBytes(100), 112);
  equal(JOURNAL_ACK_BYTES + JOURNAL_BLOCK_HEADER_BYTES + JOURNAL_RETIRE_BYTES, 44);
});

// ---- Append, acknowledge, recover.

test("journal: appended records come back after a reboot, in order, with their bytes", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim);
  equal(journal.count, 0, "a blank partition opens empty");
  equal(sim.writes + sim.erases, 0, "opening a blank partition writes nothing");
  const model: Entry[] = [];
  for (let tag = 0; tag < 8; tag++) {
    const length = [0, 1, 40, 7, 13, 3, 39, 20][tag];
    const seq = appendTagged(journal, tag, length);
    ok(seq > 0 && (model.length === 0 || seq > model[model.length - 1].seq), "sequence numbers increase");
    model.push({ seq, tag, length });
  }
  equal(difference(journal, model), "", "before the reboot");
  equal(difference(reopen(sim), model), "", "after it");
  equal(journal.indexOf(model[3].seq), 3);
  equal(journal.indexOf(12345), -1);
  const again = reopen(sim);
  const seq = appendTagged(again, 99, 4);
  equal(seq, model[model.length - 1].seq + 1, "sequence numbers carry on after a reboot");
  model.push({ seq, tag: 99, length: 4 });
  equal(difference(reopen(sim), model), "");
  const offset = new Uint8Array([9, 8, 7, 6, 5]);
  const partSeq = again.append(offset, 1, 3);
  again.readAt(again.indexOf(partSeq), readBuffer);
  equal([readBuffer[0], readBuffer[1], readBuffer[2]].join(","), "8,7,6", "append(bytes, offset, length)");
});

test("journal: acknowledged records are not recovered; acknowledging twice or an unknown seq is false", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim);
  const model: Entry[] = [];
  for (let tag = 0; tag < 10; tag++) model.push({ seq: appendTagged(journal, tag, 10 + tag), tag, length: 10 + tag });
  for (const index of [0, 4, 9, 5]) {
    const seq = model[index].seq;
    equal(journal.acknowledge(seq), true, "acknowledge " + seq);
  }
  for (const index of [9, 5, 4, 0]) model.splice(index, 1);
  equal(difference(journal, model), "");
  equal(difference(reopen(sim), model), "", "after a reboot");
  const writes = sim.writes;
  equal(journal.acknowledge(model.length > 0 ? 1 : 0), false, "seq 1 was acknowledged already");
  equal(journal.acknowledge(777), false, "never issued");
  equal(sim.writes, writes, "a refused acknowledgement writes nothing");
  for (const entry of model) equal(journal.acknowledge(entry.seq), true);
  equal(journal.count, 0);
  equal(reopen(sim).count, 0, "all acknowledged: nothing recovered");
});

const REOPEN_STEPS = ON_XS ? 200 : 600;

test("journal: recovery after every one of " + REOPEN_STEPS + " operations across many trips round the ring keeps the order", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  let journal = reopen(sim);
  const model: Entry[] = [];
  let random = 0x1234567;
  let problems = "";
  for (let step = 0; step < REOPEN_STEPS && problems === ""; step++) {
    random = xorshift(random);
    if (model.length < 6 || random % 3 !== 0) {
      const length = random % 41;
      const seq = appendTagged(journal, step, length);
      if (seq !== JOURNAL_FULL) model.push({ seq, tag: step, length });
    }
    while (model.length > 8) {
      // Mostly the oldest, sometimes one in the middle (QoS 1 acknowledgements out of order).
      const index = (random >>> 8) % 4 === 0 ? (random >>> 12) % model.length : 0;
      equal(journal.acknowledge(model[index].seq), true);
      model.splice(index, 1);
    }
    journal = reopen(sim);
    problems = difference(journal, model);
    if (problems !== "") problems = "after step " + step + ": " + problems;
  }
  equal(problems, "");
  ok(sim.erases >= (REOPEN_STEPS / 100) * BLOCKS, "the ring went round at least " + REOPEN_STEPS / 100 + " times (" + sim.erases + " erases)");
});

// ---- Full.

test("journal: a full partition: append returns JOURNAL_FULL and writes nothing; DROP_OLDEST frees the oldest block", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim);
  const model: Entry[] = [];
  let tag = 0;
  for (; tag < 500; tag++) {
    const seq = appendTagged(journal, tag, 24);
    if (seq === JOURNAL_FULL) break;
    model.push({ seq, tag, length: 24 });
  }
  ok(tag < 500, "the partition fills");
  // 3 blocks of data (one is the spare): (512 - 16 header - 16 retired) / 36 = 13 records each, less the acknowledgement room.
  ok(model.length >= 30 && model.length <= 39, "about 3 blocks of 36-byte records: " + model.length);
  const image = sim.snapshot();
  const units = sim.units;
  equal(appendTagged(journal, 1000, 24), JOURNAL_FULL, "still full (DROP_NEWEST: the new one is not kept)");
  equal(appendTagged(journal, 1001, 23), JOURNAL_FULL, "nor one a little smaller");
  equal(sim.units, units, "a refused append writes and erases nothing");
  let same = true;
  for (let i = 0; i < image.length; i++) if (image[i] !== sim.bytes[i]) same = false;
  ok(same, "the flash is unchanged");
  equal(difference(reopen(sim), model), "", "a full journal recovers");
  // DROP_OLDEST: acknowledge the oldest until the append fits. That takes the oldest block's records.
  const erases = sim.erases;
  let dropped = 0;
  let seq: number;
  while ((seq = appendTagged(journal, 2000, 24)) === JOURNAL_FULL) {
    equal(journal.acknowledge(model[0].seq), true);
    model.shift();
    dropped++;
  }
  model.push({ seq, tag: 2000, length: 24 });
  ok(dropped >= 10 && dropped <= 13, "one block's records were dropped: " + dropped);
  equal(sim.erases, erases + 1, "and that block was erased once");
  equal(difference(journal, model), "");
  equal(difference(reopen(sim), model), "");
});

test("journal: full by maxRecords: the index bounds the live records", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim, { maxPayloadBytes: 8, maxRecords: 3 });
  for (let i = 0; i < 3; i++) ok(appendTagged(journal, i, 8) > 0);
  equal(appendTagged(journal, 3, 8), JOURNAL_FULL);
  equal(journal.acknowledge(journal.seqAt(1)), true);
  ok(appendTagged(journal, 4, 8) > 0, "room again");
  equal(journal.count, 3);
  equal(reopen(sim, { maxPayloadBytes: 8, maxRecords: 3 }).count, 3);
  throws(() => reopen(sim, { maxPayloadBytes: 8, maxRecords: 2 }), "journal holds more than maxRecords (2) live records");
});

test("journal: acknowledgements out of order beyond the reserve copy the oldest block forward instead of failing", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim);
  const model: Entry[] = [];
  for (let tag = 0; tag < 200; tag++) {
    const seq = appendTagged(journal, tag, 4);
    if (seq === JOURNAL_FULL) break;
    model.push({ seq, tag, length: 4 });
  }
  // Newest first: none of these is in the oldest block, so each needs an acknowledgement record.
  let problems = "";
  while (model.length > 0 && problems === "") {
    const entry = model.pop() as Entry;
    if (!journal.acknowledge(entry.seq)) problems = "acknowledge " + entry.seq + " refused";
    else problems = difference(reopen(sim), model);
  }
  equal(problems, "");
  ok(journal.compactions >= 1, "compacted " + journal.compactions + " times");
  ok(journal.copiedBytes > 0);
  equal(reopen(sim).count, 0);
});

// ---- Power cuts.

const APPEND = 0;
const ACKNOWLEDGE = 1;
const PROBE_TAG = 4242;

interface Op {
  kind: number;
  length: number;
  tag: number;
  /** append: the seq it returned (or JOURNAL_FULL); acknowledge: the seq acknowledged. */
  seq: number;
}

interface Step {
  op: Op;
  before: Entry[];
  after: Entry[];
  /** The flash before the step. */
  image: Uint8Array;
  /** Units (bytes written and erased) the step took, and where its erases start among them. */
  units: number;
  erases: number[];
  /** The largest seq issued before the step. */
  issuedBefore: number;
}

interface Script {
  steps: Step[];
  units: number;
  eraseUnits: number;
  compactions: number;
  rotations: number;
  fulls: number;
}

/**
 * The scripted sequence, run once without cuts: fill to full, DROP_OLDEST, acknowledgements out of
 * order past the reserve (compaction), a steady queue, a drain. Every step records the flash before it.
 */
function buildScript(): Script {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim);
  const model: Entry[] = [];
  const steps: Step[] = [];
  let erases: number[] = [];
  sim.onErase = (_block, unit) => erases.push(unit);
  let random = 0x2545f491;
  const next = (bound: number): number => {
    random = xorshift(random);
    return random % bound;
  };
  let tag = 1;
  let issued = 0;
  let fulls = 0;
  const run = (kind: number, length: number, seq: number): number => {
    const op: Op = { kind, length, tag: tag++, seq };
    const image = sim.snapshot();
    const before = model.slice();
    const start = sim.units;
    erases = [];
    let result: number;
    if (kind === APPEND) {
      result = appendTagged(journal, op.tag, length);
      op.seq = result;
      if (result !== JOURNAL_FULL) model.push({ seq: result, tag: op.tag, length });
      else fulls++;
    } else {
      result = journal.acknowledge(seq) ? 1 : 0;
      removeSeq(model, seq);
    }
    steps.push({ op, before, after: model.slice(), image, units: sim.units - start, erases: erases.map((unit) => unit - start), issuedBefore: issued });
    if (kind === APPEND && result > issued) issued = result;
    return result;
  };
  for (let i = 0; i < 200 && run(APPEND, next(41), 0) !== JOURNAL_FULL; i++);
  for (let i = 0; i < 16; i++) {
    const length = next(41);
    while (run(APPEND, length, 0) === JOURNAL_FULL) run(ACKNOWLEDGE, 0, model[0].seq);
  }
  for (let i = 0; i < 12 && model.length > 3; i++) run(ACKNOWLEDGE, 0, model[model.length - 1 - next(3)].seq);
  for (let i = 0; i < 70; i++) {
    if (run(APPEND, next(41), 0) === JOURNAL_FULL) run(ACKNOWLEDGE, 0, model[0].seq);
    while (model.length > 5) run(ACKNOWLEDGE, 0, model[next(4) === 0 ? next(model.length) : 0].seq);
  }
  while (model.length > 0) run(ACKNOWLEDGE, 0, model[0].seq);
  run(APPEND, 40, 0);
  let units = 0;
  let eraseUnits = 0;
  for (const step of steps) {
    units += step.units;
    eraseUnits += step.erases.length * BLOCK;
  }
  return { steps, units, eraseUnits, compactions: journal.compactions, rotations: journal.rotations, fulls };
}

let builtScript: Script | undefined;
function script(): Script {
  builtScript ??= buildScript();
  return builtScript;
}

function perform(journal: Journal, op: Op): void {
  if (op.kind === APPEND) appendTagged(journal, op.tag, op.length);
  else journal.acknowledge(op.seq);
}

/** Whether unit `k` of `step` falls in one of its erases. */
function inErase(step: Step, k: number): boolean {
  for (const start of step.erases) if (k >= start && k < start + BLOCK) return true;
  return false;
}

const cutSim = new SimFlash(BLOCK, BLOCKS);
/** What the recoveries after the cuts had to do: revert an unfinished rotation, erase anything. */
const repairs = { reverts: 0, erases: 0, recoveries: 0 };

/**
 * Replays `step` from the flash before it with the power cut at unit `k`, reboots, and checks: the
 * live records are exactly those before the step or those after it; appending then works (dropping
 * the oldest if full) with a sequence number never issued before; and a second reboot keeps it all.
 * Returns "" or what went wrong.
 */
function checkCut(step: Step, k: number, cut: CutOptions): string {
  const sim = cutSim;
  sim.restore(step.image);
  const journal = reopen(sim);
  sim.cutAfter(k, cut);
  try {
    perform(journal, step.op);
    return "the step finished before its cut";
  } catch (error) {
    if (!(error instanceof PowerCut)) return "the step threw " + String(error);
  }
  sim.reboot();
  let recovered: Journal;
  try {
    recovered = reopen(sim);
  } catch (error) {
    return "recovery threw " + String(error);
  }
  repairs.recoveries++;
  repairs.reverts += recovered.reverts;
  if (recovered.erases > 0) repairs.erases++;
  const asBefore = difference(recovered, step.before);
  const asAfter = asBefore === "" ? "" : difference(recovered, step.after);
  if (asBefore !== "" && asAfter !== "") return "recovered neither the records before the step (" + asBefore + ") nor after it (" + asAfter + ")";
  const live = (asBefore === "" ? step.before : step.after).slice();
  let seq: number;
  for (let turn = 0; (seq = appendTagged(recovered, PROBE_TAG, 5)) === JOURNAL_FULL; turn++) {
    if (live.length === 0 || turn > 64) return "full after recovery with " + live.length + " live records";
    if (!recovered.acknowledge(live[0].seq)) return "acknowledge after recovery refused " + live[0].seq;
    live.shift();
  }
  if (seq <= step.issuedBefore || (asBefore !== "" && step.op.kind === APPEND && seq <= step.op.seq)) return "the append after recovery reused sequence number " + seq;
  live.push({ seq, tag: PROBE_TAG, length: 5 });
  const problem = difference(reopen(sim), live);
  return problem === "" ? "" : "after the append that followed recovery, and a reboot: " + problem;
}

test("journal: the scripted sequence fills, drops, compacts and wraps; recovery rebuilds its exact state at every step", () => {
  const { steps, units, eraseUnits, compactions, rotations, fulls } = script();
  ok(fulls >= 2, "appends refused as full: " + fulls);
  ok(compactions >= 1, "compactions: " + compactions);
  ok(rotations >= 3 * BLOCKS, "rotations: " + rotations);
  ok(units - eraseUnits > 3000 && eraseUnits >= 2 * BLOCKS * BLOCK, "cut points: " + (units - eraseUnits) + " written bytes, " + eraseUnits + " erased bytes");
  // A journal recovered from the flash before a step does exactly what the running one did.
  let problems = "";
  for (let s = 0; s < steps.length && problems === ""; s++) {
    const step = steps[s];
    cutSim.restore(step.image);
    const journal = reopen(cutSim);
    problems = difference(journal, step.before);
    const start = cutSim.units;
    perform(journal, step.op);
    if (problems === "" && cutSim.units - start !== step.units) problems = "step " + s + " took " + (cutSim.units - start) + " units, " + step.units + " when it ran";
    if (problems === "" && s + 1 < steps.length) {
      const image = steps[s + 1].image;
      for (let i = 0; i < image.length; i++) {
        if (cutSim.bytes[i] !== image[i]) {
          problems = "step " + s + " left byte " + i + " different";
          break;
        }
      }
    }
  }
  equal(problems, "");
});

/**
 * Cut points of part `part` of `parts`: on Node every written and every erased byte; on XS every 2nd
 * written byte and every 16th erased one (the first at a different place in each step, so the
 * positions within records still vary).
 */
const WRITE_STRIDE = ON_XS ? 2 : 1;
const ERASE_STRIDE = ON_XS ? 16 : 1;

function powerCutPart(part: number, parts: number): void {
  const { steps } = script();
  let index = 0;
  let tried = 0;
  let failures = "";
  for (let s = 0; s < steps.length; s++) {
    const step = steps[s];
    for (let k = 0; k < step.units; k++) {
      const erase = inErase(step, k);
      if ((k + s) % (erase ? ERASE_STRIDE : WRITE_STRIDE) !== 0) continue;
      if (index++ % parts !== part) continue;
      tried++;
      const problem = checkCut(step, k, { erase: "suffix" });
      if (problem !== "" && failures.length < 2000) failures += "step " + s + " (" + (step.op.kind === APPEND ? "append " + step.op.length + " bytes" : "acknowledge " + step.op.seq) + ") cut at unit " + k + (erase ? " (erase)" : "") + ": " + problem + "\n";
    }
  }
  equal(failures, "");
  ok(tried > (ON_XS ? 100 : 400), tried + " cut points");
}

const POWER_CUT_PARTS = 24;
for (let part = 0; part < POWER_CUT_PARTS; part++) {
  test("journal: a power cut at every byte of every write and erase of the script (part " + (part + 1) + " of " + POWER_CUT_PARTS + ")", () => {
    powerCutPart(part, POWER_CUT_PARTS);
  });
}

test("journal: the cuts made recovery revert unfinished rotations and erase torn blocks", () => {
  ok(repairs.reverts >= (ON_XS ? 20 : 100), repairs.reverts + " rotations reverted in " + repairs.recoveries + " recoveries");
  ok(repairs.erases >= (ON_XS ? 100 : 1000), repairs.erases + " recoveries erased a block");
});

test("journal: torn erases: a pseudo-random half of the block erased, or erased from its start", () => {
  const { steps } = script();
  let failures = "";
  let tried = 0;
  const seeds = ON_XS ? 3 : 12;
  for (let s = 0; s < steps.length; s++) {
    const step = steps[s];
    for (const start of step.erases) {
      for (let seed = 1; seed <= seeds; seed++) {
        const k = start + ((seed * 97) % BLOCK);
        for (const mode of ["scatter", "prefix"] as const) {
          tried++;
          const problem = checkCut(step, k, { erase: mode, seed: seed * 7919 });
          if (problem !== "" && failures.length < 2000) failures += "step " + s + " " + mode + " erase cut at unit " + k + ": " + problem + "\n";
        }
      }
    }
  }
  equal(failures, "");
  ok(tried > 50, tried + " cut points");
});

test("journal: a write cut with the byte at the cut half-programmed (some of its bits cleared)", () => {
  const { steps } = script();
  let failures = "";
  let tried = 0;
  const stride = ON_XS ? 53 : 1; // every written byte on Node
  let index = 0;
  for (let s = 0; s < steps.length; s++) {
    const step = steps[s];
    for (let k = 0; k < step.units; k++) {
      if (inErase(step, k) || index++ % stride !== 0) continue;
      tried++;
      const problem = checkCut(step, k, { halfByte: true, seed: k + 1 });
      if (problem !== "" && failures.length < 2000) failures += "step " + s + " half-programmed byte at unit " + k + ": " + problem + "\n";
    }
  }
  equal(failures, "");
  ok(tried > (ON_XS ? 100 : 900), tried + " cut points");
});

test("journal: foreign bytes (random, or another geometry's journal) open empty and are erased before use", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  let random = 99;
  for (let i = 0; i < sim.bytes.length; i++) {
    random = xorshift(random);
    sim.bytes[i] = random & 0xff;
  }
  const journal = reopen(sim);
  equal(journal.count, 0);
  const seq = appendTagged(journal, 1, 30);
  equal(difference(reopen(sim), [{ seq, tag: 1, length: 30 }]), "");
  // The same bytes seen as 8 blocks of 256: the headers' CRC covers the geometry, so nothing is read.
  const other = new SimFlash(256, 8);
  other.bytes.set(sim.bytes);
  equal(reopen(other).count, 0);
});

// ---- Wear and memory.

const wear = { sim: new SimFlash(4096, 16), journal: undefined as Journal | undefined, messages: 0, full: 0 };
const WEAR_OPTIONS: JournalOptions = { maxPayloadBytes: 100, maxRecords: 64 };

/** Queues `count` more 100-byte messages, keeping 10 unacknowledged (XS meters each test: four parts). */
function wearMessages(count: number): void {
  wear.journal ??= reopen(wear.sim, WEAR_OPTIONS);
  const journal = wear.journal;
  for (let i = 0; i < 100; i++) payload[i] = i;
  for (let i = 0; i < count; i++, wear.messages++) {
    if (journal.append(payload, 0, 100) === JOURNAL_FULL) wear.full++;
    while (journal.count > 10) journal.acknowledge(journal.seqAt(0));
  }
}

for (let part = 1; part <= 3; part++) {
  test("journal: wear: 10,000 messages of 100 bytes queued and acknowledged (part " + part + " of 4: 2,500 messages)", () => {
    wearMessages(2500);
    equal(wear.full, 0);
  });
}

test("journal: wear: ... the last 2,500 of the 10,000 erase every block of a 64 KB partition within 1 of each other, and nothing is copied", () => {
  wearMessages(2500);
  const { sim, journal } = wear;
  equal(wear.messages, 10000);
  equal(wear.full, 0);
  let min = sim.eraseCounts[0];
  let max = min;
  for (let block = 0; block < sim.blockCount; block++) {
    min = Math.min(min, sim.eraseCounts[block]);
    max = Math.max(max, sim.eraseCounts[block]);
  }
  ok(min >= 15, "every block erased at least 15 times: " + min);
  ok(max - min <= 1, "spread " + min + " to " + max);
  // 112 bytes per record + 12 per acknowledgement, 32 bytes of header and retired record per 4 KB block.
  ok(sim.erases <= 310 && sim.erases >= 290, sim.erases + " erases for 10,000 messages");
  ok(sim.bytesWritten <= 10000 * 124 + sim.erases * 40, sim.bytesWritten + " bytes written");
  equal(journal?.compactions, 0, "nothing copied in steady state");
  equal(reopen(sim, WEAR_OPTIONS).count, journal?.count);
});

test("journal: fixed memory: the journal reads and writes through its one scratch buffer, and its tables never change", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = reopen(sim);
  const fields = journal as unknown as Record<string, unknown>;
  const names = ["scratch", "seqs", "addresses", "lengths", "blocks", "state", "epoch", "liveCount", "order"];
  const before = names.map((name) => fields[name]);
  for (let i = 0; i < 300; i++) {
    const seq = appendTagged(journal, i, i % 41);
    if (seq === JOURNAL_FULL || i % 3 === 0) journal.acknowledge(journal.seqAt(0));
    if (journal.count > 20) journal.acknowledge(journal.seqAt(journal.count - 1));
  }
  journal.open();
  for (let i = 0; i < journal.count; i++) journal.readAt(i, readBuffer);
  ok(sim.erases > 4, "the ring turned");
  names.forEach((name, i) => ok(fields[name] === before[i], name + " is the same object"));
  equal(journal.scratch.length, 256, "scratch: one record of at most 40 bytes (52), at least 256");
  equal(sim.buffers.length, 2, "the device saw two buffers: the scratch and readAt's");
  ok(sim.buffers[0] === journal.scratch && sim.buffers[1] === readBuffer);
});

// ---- Bad input.

test("journal: every input is checked at the call", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  throws(() => new Journal(undefined as unknown as SimFlash, SMALL), "journal device must be a FlashDevice");
  throws(() => new Journal({ blockSize: 512, blockCount: 4 } as unknown as SimFlash, SMALL), "journal device must be a FlashDevice");
  throws(() => new Journal(new SimFlash(BLOCK, 2), SMALL), "journal device blockCount must be a whole number from 3 to 65535, got 2");
  throws(() => new Journal(new SimFlash(50, 4), SMALL), "journal device blockSize must be a whole number from 64");
  throws(() => new Journal(new SimFlash(66, 4), { maxPayloadBytes: 0, maxRecords: 1 }), "journal device blockSize must be a multiple of 4, got 66");
  throws(() => new Journal(sim, undefined as unknown as JournalOptions), "journal options must be an object");
  throws(() => new Journal(sim, { maxPayloadBytes: 40, maxRecords: 64, ackReserv: 2 } as unknown as JournalOptions), "unknown journal option ackReserv");
  throws(() => new Journal(sim, { maxPayloadBytes: -1, maxRecords: 64 }), "journal maxPayloadBytes must be a whole number from 0 to 65535, got -1");
  throws(() => new Journal(sim, { maxPayloadBytes: 40, maxRecords: 0 }), "journal maxRecords must be a whole number from 1");
  throws(() => new Journal(sim, { maxPayloadBytes: 40, maxRecords: 4, ackReserve: 1.5 }), "journal ackReserve must be a whole number");
  throws(() => new Journal(sim, { maxPayloadBytes: 460, maxRecords: 4 }), "journal maxPayloadBytes 460 does not fit a block of 512 bytes with ackReserve 4 (at most 420)");
  new Journal(sim, { maxPayloadBytes: 420, maxRecords: 4 });
  const journal = new Journal(sim, SMALL);
  throws(() => journal.append(new Uint8Array(1)), "journal is not open: call open() first");
  throws(() => journal.count === 0 && journal.seqAt(0), "journal is not open");
  journal.open();
  throws(() => journal.append([1, 2] as unknown as Uint8Array), "journal payload must be a Uint8Array");
  throws(() => journal.append("ab" as unknown as Uint8Array), "journal payload must be a Uint8Array");
  throws(() => journal.append(new Uint8Array(41)), "journal payload must be at most 40 bytes, got 41");
  throws(() => journal.append(new Uint8Array(50), 5), "journal payload must be at most 40 bytes, got 45");
  throws(() => journal.append(new Uint8Array(10), 11), "journal payload offset must be a whole number from 0 to 10, got 11");
  throws(() => journal.append(new Uint8Array(10), 2, 9), "journal payload length must be a whole number from 0 to 8, got 9");
  throws(() => journal.append(new Uint8Array(10), 0, -1), "journal payload length must be a whole number");
  throws(() => journal.acknowledge(-1), "journal sequence number must be a whole number from 0 to 4294967295, got -1");
  throws(() => journal.acknowledge("1" as unknown as number), "journal sequence number must be a whole number");
  throws(() => journal.acknowledge(2 ** 32), "journal sequence number must be a whole number");
  throws(() => journal.seqAt(0), "journal record index must be a whole number from 0 to -1, got 0");
  const seq = journal.append(new Uint8Array(3));
  throws(() => journal.lengthAt(1), "journal record index must be a whole number from 0 to 0, got 1");
  throws(() => journal.readAt(0, new Uint8Array(2)), "journal readAt needs a Uint8Array of at least 3 bytes");
  equal(journal.indexOf("x" as unknown as number), -1);
  equal(journal.seqAt(0), seq);
  equal(sim.writes, 3, "a block header, its retired record and the one record: nothing for the refusals");
  throws(() => sim.read(2046, new Uint8Array(4)), "flash read offset must be a whole number from 0 to 2044, got 2046");
  throws(() => sim.write(0, new Uint8Array(4), 5), "flash write length must be a whole number from 0 to 4, got 5");
  throws(() => sim.erase(4), "flash erase block must be a whole number from 0 to 3, got 4");
});
