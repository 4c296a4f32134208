// Portable tests for modules/ring.ts: the fixed-arena FIFO. FIFO order, the byte and entry limits,
// contiguous placement with wrap-around, per-slot metadata, clear(), and a model-based property
// test of random push/shift/clear sequences. Runs unchanged on Node and on XS.
import * as fc from "fast-check";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { Ring } from "../../modules/ring";

function holds<T>(property: fc.IProperty<T>, seed: number, numRuns: number): void {
  fc.assert(property, { seed, numRuns });
  ok(true);
}

/** Pushes `bytes` and fills the entry with `fill`; returns the slot. */
function put(ring: Ring, bytes: number, fill: number): number {
  const slot = ring.push(bytes);
  if (slot >= 0) ring.arena.fill(fill, ring.offset[slot], ring.offset[slot] + bytes);
  return slot;
}

/** The oldest entry's bytes, as a copy. */
function oldestBytes(ring: Ring): number[] {
  const slot = ring.oldest();
  return Array.from(ring.arena.subarray(ring.offset[slot], ring.offset[slot] + ring.length[slot]));
}

/** [offset, length] of every entry, oldest first. */
function layout(ring: Ring): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < ring.count; i++) out.push([ring.offset[ring.slot(i)], ring.length[ring.slot(i)]]);
  return out;
}

test("ring: construction sizes everything once and validates its arguments", () => {
  const ring = new Ring(100, 7);
  equal(ring.capacity, 100);
  equal(ring.maxEntries, 7);
  equal(ring.arena.length, 100);
  for (const array of [ring.offset, ring.length, ring.kind, ring.state, ring.packetId, ring.time]) equal(array.length, 7);
  equal(ring.callback.length, 7);
  equal(ring.count, 0);
  equal(ring.usedBytes, 0);
  const empty = new Ring(0, 0);
  equal(empty.arena.length, 0);
  equal(new Ring(10, 65535).offset.length, 65535, "the largest entry limit");
  for (const bad of [-1, 1.5, Number.NaN, Infinity, 0x80000000]) throws(() => new Ring(bad, 4), "ring capacity in bytes must be a whole number from 0 to 2147483647, got " + bad);
  throws(() => new Ring("10" as unknown as number, 4), "ring capacity in bytes must be a whole number");
  for (const bad of [-1, 65536, 2.5, Number.NaN]) throws(() => new Ring(10, bad), "ring entry limit must be a whole number from 0 to 65535, got " + bad);
});

test("ring: FIFO order with contents intact", () => {
  const ring = new Ring(100, 10);
  const sizes = [10, 20, 30, 5, 1];
  sizes.forEach((size, i) => ok(put(ring, size, 0x10 + i) >= 0, "push " + i));
  equal(ring.count, 5);
  equal(ring.usedBytes, 66);
  deepEqual(layout(ring), [[0, 10], [10, 20], [30, 30], [60, 5], [65, 1]], "packed contiguously from 0");
  sizes.forEach((size, i) => {
    deepEqual(oldestBytes(ring), new Array(size).fill(0x10 + i), "entry " + i + " comes out " + i + "th");
    ring.shift();
  });
  equal(ring.count, 0);
  equal(ring.usedBytes, 0);
});

test("ring: the entry limit: push returns -1 when full by entries, with bytes to spare", () => {
  const ring = new Ring(1000, 3);
  for (let i = 0; i < 3; i++) ok(ring.push(10) >= 0);
  equal(ring.placement(1), -1);
  equal(ring.push(1), -1, "a fourth entry");
  equal(ring.push(0), -1, "even an empty one");
  equal(ring.count, 3);
  equal(ring.usedBytes, 30);
  ring.shift();
  ok(ring.push(10) >= 0, "room again after shift()");
  equal(ring.count, 3);
  equal(new Ring(100, 0).push(1), -1, "entry limit 0: nothing fits");
});

test("ring: the byte limit: push returns -1 when full by bytes, with entries to spare", () => {
  const ring = new Ring(10, 10);
  equal(ring.push(4), 0);
  equal(ring.push(4), 1);
  equal(ring.placement(4), -1);
  equal(ring.push(4), -1, "4 more bytes do not fit in the last 2");
  equal(ring.push(3), -1);
  equal(ring.push(2), 2, "2 bytes fill the arena");
  equal(ring.offset[2], 8);
  equal(ring.usedBytes, 10);
  equal(ring.push(1), -1, "full");
  equal(ring.count, 3);
  equal(new Ring(0, 10).push(1), -1, "capacity 0: no bytes fit");
});

test("ring: an entry larger than the capacity never fits; one of exactly the capacity does when empty", () => {
  const ring = new Ring(10, 4);
  equal(ring.placement(11), -1);
  equal(ring.push(11), -1);
  equal(ring.push(1 << 30), -1);
  equal(ring.count, 0);
  equal(ring.push(10), 0);
  equal(ring.offset[0], 0);
  equal(ring.push(1), -1, "and then nothing else");
  ring.shift();
  equal(ring.push(11), -1, "still too large when empty again");
  ok(ring.push(10) >= 0, "the whole arena again");
});

test("ring: wrap-around: an entry that does not fit before the end starts again at 0", () => {
  const ring = new Ring(10, 10);
  put(ring, 4, 0xa1); // [0, 4)
  put(ring, 4, 0xa2); // [4, 8)
  equal(ring.push(4), -1, "8 + 4 > 10 and nothing is free at the start");
  ring.shift(); // frees [0, 4)
  equal(ring.placement(4), 0, "placement() says where");
  equal(ring.count, 1, "placement() changes nothing");
  const c = put(ring, 4, 0xa3);
  equal(ring.offset[c], 0, "wrapped to 0");
  equal(ring.push(1), -1, "wrapped: the free gap [4, 4) is empty; [8, 10) is lost to the wrap");
  equal(ring.usedBytes, 8);
  deepEqual(oldestBytes(ring), [0xa2, 0xa2, 0xa2, 0xa2]);
  ring.shift();
  deepEqual(oldestBytes(ring), [0xa3, 0xa3, 0xa3, 0xa3], "the wrapped entry comes next");
  const d = put(ring, 6, 0xa4);
  equal(ring.offset[d], 4, "after the wrapped entry, up to the end");
  equal(ring.push(1), -1, "[10, 10) and [0, 0) are empty");
  ring.shift();
  const e = put(ring, 4, 0xa5);
  equal(ring.offset[e], 0, "wraps again");
  deepEqual(oldestBytes(ring), [0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4]);
  ring.shift();
  deepEqual(oldestBytes(ring), [0xa5, 0xa5, 0xa5, 0xa5]);
});

test("ring: wrap-around with mixed sizes fills the gap between tail and head exactly", () => {
  const ring = new Ring(16, 8);
  put(ring, 5, 1); // [0, 5)
  put(ring, 7, 2); // [5, 12)
  put(ring, 3, 3); // [12, 15)
  ring.shift(); // head [5, 12)
  equal(ring.offset[put(ring, 2, 4)], 0, "15 + 2 > 16: wraps to 0");
  equal(ring.offset[put(ring, 3, 5)], 2, "then follows the tail: [2, 5)");
  equal(ring.push(1), -1, "the tail has reached the head");
  ring.shift(); // head [12, 15)
  equal(ring.offset[put(ring, 7, 6)], 5, "[5, 12) fits exactly");
  equal(ring.usedBytes, 3 + 2 + 3 + 7);
  equal(ring.push(1), -1);
  deepEqual(layout(ring), [[12, 3], [0, 2], [2, 3], [5, 7]]);
  for (const fill of [3, 4, 5, 6]) {
    ok(oldestBytes(ring).every((value) => value === fill), "entry filled with " + fill);
    ring.shift();
  }
  equal(ring.count, 0);
});

test("ring: slot numbers wrap around the entry limit", () => {
  const ring = new Ring(100, 3);
  for (let round = 0; round < 7; round++) {
    const slot = ring.push(1);
    equal(slot, round % 3, "round " + round);
    equal(ring.oldest(), slot, "round " + round + ": the only entry is the oldest");
    ring.shift();
  }
  ring.push(1); // slot 1
  ring.push(1); // slot 2
  ring.push(1); // slot 0
  deepEqual([ring.slot(0), ring.slot(1), ring.slot(2)], [1, 2, 0]);
});

test("ring: push() resets a reused slot's metadata; shift() drops the callback", () => {
  const ring = new Ring(16, 2);
  const callback = (): void => {};
  const slot = ring.push(3);
  ring.kind[slot] = 2;
  ring.state[slot] = 7;
  ring.packetId[slot] = 4321;
  ring.time[slot] = -5;
  ring.callback[slot] = callback;
  ring.shift();
  equal(ring.callback[slot], undefined, "shift() lets go of the callback");
  ring.push(1); // slot 1
  const reused = ring.push(2);
  equal(reused, slot, "the slot comes round again");
  deepEqual([ring.kind[reused], ring.state[reused], ring.packetId[reused], ring.time[reused], ring.callback[reused]], [0, 0, 0, 0, undefined]);
  equal(ring.length[reused], 2);
});

test("ring: shift() on an empty ring does nothing; clear() empties it and restarts at offset 0, slot 0", () => {
  const ring = new Ring(20, 4);
  ring.shift();
  equal(ring.count, 0);
  equal(ring.usedBytes, 0);
  ring.push(5);
  ring.push(5);
  ring.shift();
  ring.push(5);
  ring.callback[ring.slot(1)] = () => {};
  ring.clear();
  equal(ring.count, 0);
  equal(ring.usedBytes, 0);
  ok(ring.callback.every((entry) => entry === undefined), "no callback kept");
  equal(ring.push(20), 0, "the whole arena, in slot 0");
  equal(ring.offset[0], 0);
  equal(ring.oldest(), 0);
  ring.clear();
  ring.clear();
  equal(ring.count, 0, "clear() twice");
});

test("ring: zero-length entries take a place in the queue but no bytes", () => {
  const ring = new Ring(10, 4);
  const empty = ring.push(0);
  ok(empty >= 0, "an empty entry is accepted");
  equal(ring.usedBytes, 0);
  ok(ring.push(10) >= 0, "the whole arena is still free behind it");
  equal(ring.usedBytes, 10);
  ring.shift();
  ring.shift();
  ring.push(6); // [0, 6)
  ring.push(0); // at 6
  ring.shift(); // only the empty entry is left, at offset 6
  equal(ring.usedBytes, 0);
  equal(ring.placement(4), 6, "fits after it");
  equal(ring.placement(6), 0, "or before it");
  equal(ring.placement(7), -1, "neither way: FIFO placement keeps entries in order");
  ok(ring.push(3) >= 0);
  equal(ring.count, 2);
});

interface ModelEntry {
  id: number;
  offset: number;
  length: number;
}

function fillValue(id: number, k: number): number {
  return (id * 31 + k * 7 + 1) & 0xff;
}

/** Checks the ring against the model; returns a description of the first difference, or "". */
function compare(ring: Ring, model: ModelEntry[]): string {
  if (ring.count !== model.length) return "count " + ring.count + ", model " + model.length;
  if (ring.count > ring.maxEntries) return "more entries than the limit";
  let used = 0;
  for (const entry of model) used += entry.length;
  if (ring.usedBytes !== used) return "usedBytes " + ring.usedBytes + ", model " + used;
  if (ring.usedBytes > ring.capacity) return "more bytes than the capacity";
  for (let i = 0; i < model.length; i++) {
    const slot = ring.slot(i);
    const entry = model[i];
    if (ring.offset[slot] !== entry.offset || ring.length[slot] !== entry.length) return "entry " + i + " moved";
    if (entry.offset < 0 || entry.offset + entry.length > ring.capacity) return "entry " + i + " outside the arena";
    for (let k = 0; k < entry.length; k++) {
      if (ring.arena[entry.offset + k] !== fillValue(entry.id, k)) return "entry " + i + " (id " + entry.id + ") overwritten at byte " + k;
    }
    for (let j = 0; j < i; j++) {
      const other = model[j];
      if (entry.length > 0 && other.length > 0 && entry.offset < other.offset + other.length && other.offset < entry.offset + entry.length) {
        return "entries " + j + " and " + i + " overlap";
      }
    }
  }
  if (model.length > 0 && ring.oldest() !== ring.slot(0)) return "oldest() is not slot(0)";
  return "";
}

/**
 * Where the model says an entry of `bytes` goes, or -1. Entries are stored contiguously, one after
 * another, except for a single jump back to 0 when the next one does not fit before the end of the
 * arena; so the free space is [tail end, capacity) then [0, head start) before that jump, and
 * [tail end, head start) after it.
 */
function modelPlacement(ring: Ring, model: ModelEntry[], bytes: number): number {
  if (model.length >= ring.maxEntries || bytes > ring.capacity) return -1;
  if (model.length === 0) return 0;
  const head = model[0].offset;
  const last = model[model.length - 1];
  const tail = last.offset + last.length;
  let wrapped = false;
  for (let i = 1; i < model.length; i++) if (model[i].offset !== model[i - 1].offset + model[i - 1].length) wrapped = true;
  if (wrapped) return tail + bytes <= head ? tail : -1;
  if (tail + bytes <= ring.capacity) return tail;
  return bytes <= head ? 0 : -1;
}

type Op = { op: "push"; bytes: number } | { op: "shift" } | { op: "clear" };

function runOps(capacity: number, maxEntries: number, ops: Op[]): string {
  const ring = new Ring(capacity, maxEntries);
  const model: ModelEntry[] = [];
  let nextId = 1;
  for (let step = 0; step < ops.length; step++) {
    const op = ops[step];
    const where = "step " + step + " (" + op.op + (op.op === "push" ? " " + op.bytes : "") + "): ";
    if (op.op === "push") {
      const predicted = ring.placement(op.bytes);
      const expected = modelPlacement(ring, model, op.bytes);
      const before = ring.count;
      const slot = ring.push(op.bytes);
      if (slot < 0) {
        if (predicted !== -1) return where + "placement() said " + predicted + " but push() refused";
        if (expected !== -1) return where + "refused, but [" + expected + ", " + (expected + op.bytes) + ") is free in FIFO order";
      } else {
        if (predicted !== ring.offset[slot]) return where + "placement() said " + predicted + ", push() used " + ring.offset[slot];
        if (expected !== ring.offset[slot]) return where + "placed at " + ring.offset[slot] + ", the model says " + expected;
        if (slot !== ring.slot(before)) return where + "the new entry is not at the tail";
        if (ring.kind[slot] !== 0 || ring.state[slot] !== 0 || ring.packetId[slot] !== 0 || ring.time[slot] !== 0 || ring.callback[slot] !== undefined) {
          return where + "the slot kept an earlier entry's metadata";
        }
        const id = nextId++;
        for (let k = 0; k < op.bytes; k++) ring.arena[ring.offset[slot] + k] = fillValue(id, k);
        // The owner's metadata, which the next user of this slot must not inherit.
        ring.kind[slot] = 1;
        ring.state[slot] = 3;
        ring.packetId[slot] = id & 0xffff;
        ring.time[slot] = -id;
        ring.callback[slot] = () => {};
        model.push({ id, offset: ring.offset[slot], length: op.bytes });
      }
    } else if (op.op === "shift") {
      if (model.length > 0) {
        const slot = ring.oldest();
        if (ring.kind[slot] !== 1 || ring.packetId[slot] !== (model[0].id & 0xffff)) return where + "metadata of the oldest entry lost";
      }
      ring.shift();
      model.shift();
    } else {
      ring.clear();
      model.length = 0;
    }
    const problem = compare(ring, model);
    if (problem !== "") return where + problem;
  }
  return "";
}

test("ring: property: random push/shift/clear sequences match a FIFO model, never overlap, never exceed the limits", () => {
  const scenario = fc.tuple(fc.integer({ min: 0, max: 48 }), fc.integer({ min: 0, max: 8 })).chain(([capacity, maxEntries]) =>
    fc.tuple(
      fc.constant(capacity),
      fc.constant(maxEntries),
      fc.array(
        fc.oneof(
          { weight: 6, arbitrary: fc.integer({ min: 0, max: capacity + 2 }).map((bytes): Op => ({ op: "push", bytes })) },
          { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((bytes): Op => ({ op: "push", bytes })) },
          { weight: 4, arbitrary: fc.constant<Op>({ op: "shift" }) },
          { weight: 1, arbitrary: fc.constant<Op>({ op: "clear" }) },
        ),
        { maxLength: 60 },
      ),
    ),
  );
  holds(
    fc.property(scenario, ([capacity, maxEntries, ops]) => {
      equal(runOps(capacity, maxEntries, ops), "");
      return true;
    }),
    54,
    400,
  );
});

test("ring: a long deterministic run with mixed sizes keeps FIFO order and the bounds", () => {
  // A fixed pseudo-random sequence (no fast-check): 2000 operations on a 257-byte, 13-entry ring.
  let state = 0x12345678;
  const random = (bound: number): number => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) % bound;
  };
  const ops: Op[] = [];
  for (let i = 0; i < 2000; i++) ops.push(random(10) < 6 ? { op: "push", bytes: random(70) } : { op: "shift" });
  equal(runOps(257, 13, ops), "");
});
