// Portable tests for modules/topic.ts: UTF-8 measuring, writing, checking and reading, topic name
// and filter validation, and filter matching. Runs unchanged on Node and on XS: harness and
// fast-check only (no Node API, no console, no timers).
import * as fc from "fast-check";
import { deepEqual, equal, hex, ok, test } from "../harness";

/** fast-check with a fixed seed and a bounded run count; one harness check per property that holds. */
function holds<T>(property: fc.IProperty<T>, seed: number, numRuns: number): void {
  fc.assert(property, { seed, numRuns });
  ok(true);
}
import { checkUtf8, MAX_STRING_BYTES, readUtf8, topicFilterProblem, topicMatches, topicNameProblem, utf8Length, writeUtf8 } from "../../modules/topic";

/** Encodes with the module under test into a fresh array of exactly utf8Length bytes. */
function encode(text: string): Uint8Array {
  const length = utf8Length(text);
  ok(length >= 0, "utf8Length of " + JSON.stringify(text));
  const bytes = new Uint8Array(length);
  equal(writeUtf8(text, bytes, 0), length, "writeUtf8 end offset for " + JSON.stringify(text));
  return bytes;
}

/**
 * An independent UTF-8 encoder: the language's own encodeURIComponent (ECMA-262), which throws a
 * URIError on a lone surrogate. Returns null for text it refuses.
 */
function oracleBytes(text: string): number[] | null {
  let escaped: string;
  try {
    escaped = encodeURIComponent(text);
  } catch {
    return null;
  }
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    if (escaped.charCodeAt(i) === 0x25) {
      bytes.push(parseInt(escaped.substr(i + 1, 2), 16));
      i += 2;
    } else {
      bytes.push(escaped.charCodeAt(i));
    }
  }
  return bytes;
}

/**
 * An independent UTF-8 decoder written from the table of well-formed byte sequences (The Unicode
 * Standard, table 3-7), by byte ranges rather than by computing code points. Returns null for bytes
 * that are not well formed. (decodeURIComponent is not used: XS accepts overlong forms such as C1 A0.)
 */
function oracleDecode(bytes: Uint8Array, start: number, end: number): string | null {
  // [lead low, lead high, then [low, high] of each continuation byte]
  const table: readonly number[][] = [
    [0x00, 0x7f],
    [0xc2, 0xdf, 0x80, 0xbf],
    [0xe0, 0xe0, 0xa0, 0xbf, 0x80, 0xbf],
    [0xe1, 0xec, 0x80, 0xbf, 0x80, 0xbf],
    [0xed, 0xed, 0x80, 0x9f, 0x80, 0xbf],
    [0xee, 0xef, 0x80, 0xbf, 0x80, 0xbf],
    [0xf0, 0xf0, 0x90, 0xbf, 0x80, 0xbf, 0x80, 0xbf],
    [0xf1, 0xf3, 0x80, 0xbf, 0x80, 0xbf, 0x80, 0xbf],
    [0xf4, 0xf4, 0x80, 0x8f, 0x80, 0xbf, 0x80, 0xbf],
  ];
  let text = "";
  let i = start;
  while (i < end) {
    const row = table.find((candidate) => bytes[i] >= candidate[0] && bytes[i] <= candidate[1]);
    if (row === undefined) return null;
    const size = row.length / 2;
    if (i + size > end) return null;
    let point = size === 1 ? bytes[i] : size === 2 ? bytes[i] - 0xc0 : size === 3 ? bytes[i] - 0xe0 : bytes[i] - 0xf0;
    for (let k = 1; k < size; k++) {
      const value = bytes[i + k];
      if (value < row[2 * k] || value > row[2 * k + 1]) return null;
      point = point * 64 + (value - 0x80);
    }
    text += String.fromCodePoint(point);
    i += size;
  }
  return text;
}

// Character vectors: text, its UTF-8 bytes (hand-encoded), and the boundary each one sits on.
const VECTORS: readonly [string, string, string][] = [
  ["A", "41", "ASCII"],
  ["\u0001", "01", "lowest allowed code point"],
  ["\u007f", "7f", "last one-byte code point"],
  ["\u0080", "c2 80", "first two-byte code point"],
  ["\u00e9", "c3 a9", "e acute"],
  ["\u07ff", "df bf", "last two-byte code point"],
  ["\u0800", "e0 a0 80", "first three-byte code point"],
  ["\u20ac", "e2 82 ac", "euro sign"],
  ["\ud7ff", "ed 9f bf", "last code point below the surrogates"],
  ["\ue000", "ee 80 80", "first code point above the surrogates"],
  ["\ufeff", "ef bb bf", "byte order mark (allowed, kept)"],
  ["\uffff", "ef bf bf", "last three-byte code point"],
  ["\ud800\udc00", "f0 90 80 80", "U+10000, first four-byte code point"],
  ["\ud83d\ude00", "f0 9f 98 80", "U+1F600 as a surrogate pair"],
  ["\udbff\udfff", "f4 8f bf bf", "U+10FFFF, last code point"],
];

test("topic: utf8Length counts 1, 2, 3 and 4-byte characters", () => {
  equal(utf8Length(""), 0, "empty string");
  equal(utf8Length("abc"), 3);
  for (const [text, bytes, what] of VECTORS) equal(utf8Length(text), hex(bytes).length, what);
  equal(utf8Length("a/\u00e9/\u20ac/\ud83d\ude00"), 1 + 1 + 2 + 1 + 3 + 1 + 4, "mixed");
  equal(utf8Length("\ud83d\ude00\ud83d\ude00"), 8, "two adjacent surrogate pairs");
});

test("topic: utf8Length rejects lone surrogates and U+0000", () => {
  const bad = [
    "\ud800", // lone high surrogate at the end
    "a\ud800",
    "\ud800a", // high surrogate followed by a non-surrogate
    "\udc00", // lone low surrogate
    "a\udfffb",
    "\udc00\ud800", // a pair in the wrong order
    "\ud800\ud800", // two high surrogates
    "\ud83d\ude00\ude00", // a valid pair, then a stray low surrogate
    "\u0000",
    "a\u0000",
    "abc/\u0000/def",
  ];
  for (const text of bad) equal(utf8Length(text), -1, JSON.stringify(text));
});

test("topic: writeUtf8 writes hand-encoded bytes at an offset, touching nothing else", () => {
  for (const [text, bytes, what] of VECTORS) {
    const expected = hex(bytes);
    const target = new Uint8Array(expected.length + 6).fill(0xee);
    const end = writeUtf8(text, target, 3);
    equal(end, 3 + expected.length, what + ": end offset");
    deepEqual(target.subarray(3, end), expected, what + ": bytes");
    deepEqual(target.subarray(0, 3), hex("ee ee ee"), what + ": bytes before");
    deepEqual(target.subarray(end), hex("ee ee ee"), what + ": bytes after");
  }
  deepEqual(encode("a/\u00e9/\u20ac/\ud83d\ude00"), hex("61 2f c3 a9 2f e2 82 ac 2f f0 9f 98 80"), "mixed topic");
  equal(writeUtf8("", new Uint8Array(0), 0), 0, "empty string writes nothing");
});

test("topic: checkUtf8 and readUtf8 round-trip every vector, at any offset", () => {
  for (const [text, bytes, what] of VECTORS) {
    const encoded = hex(bytes);
    equal(checkUtf8(encoded, 0, encoded.length), text.length, what + ": UTF-16 length");
    equal(readUtf8(encoded, 0, encoded.length), text, what + ": decoded");
    // Inside a larger buffer: only the range is read.
    const framed = new Uint8Array(encoded.length + 4);
    framed[0] = 0xff;
    framed[1] = 0x00;
    framed.set(encoded, 2);
    framed[encoded.length + 2] = 0xc3;
    framed[encoded.length + 3] = 0x00;
    equal(checkUtf8(framed, 2, 2 + encoded.length), text.length, what + ": framed check");
    equal(readUtf8(framed, 2, 2 + encoded.length), text, what + ": framed read");
  }
  const mixed = "sensors/\u00e9t\u00e9/\u20ac/\ud83d\ude00/\udbff\udfff/end";
  const bytes = encode(mixed);
  equal(checkUtf8(bytes, 0, bytes.length), mixed.length);
  equal(readUtf8(bytes, 0, bytes.length), mixed);
  equal(checkUtf8(bytes, 0, 0), 0, "empty range");
  equal(readUtf8(bytes, 3, 3), "", "empty range reads as empty");
});

test("topic: checkUtf8 rejects NUL, overlong forms, surrogates, out-of-range and truncated sequences", () => {
  const bad: [string, string][] = [
    ["00", "U+0000"],
    ["41 00 41", "U+0000 inside"],
    ["c0 80", "overlong U+0000"],
    ["c0 af", "overlong '/'"],
    ["c1 bf", "overlong U+007F"],
    ["e0 80 80", "overlong three-byte U+0000"],
    ["e0 9f bf", "overlong U+07FF in three bytes"],
    ["f0 80 80 80", "overlong four-byte U+0000"],
    ["f0 8f bf bf", "overlong U+FFFF in four bytes"],
    ["ed a0 80", "encoded surrogate U+D800"],
    ["ed af bf", "encoded surrogate U+DBFF"],
    ["ed b0 80", "encoded surrogate U+DC00"],
    ["ed bf bf", "encoded surrogate U+DFFF"],
    ["ed a0 bd ed b8 80", "CESU-8 surrogate pair"],
    ["f4 90 80 80", "U+110000, beyond Unicode"],
    ["f5 80 80 80", "lead byte 0xF5"],
    ["f7 bf bf bf", "lead byte 0xF7"],
    ["f8 88 80 80 80", "five-byte form"],
    ["fc 84 80 80 80 80", "six-byte form"],
    ["fe", "byte 0xFE"],
    ["ff", "byte 0xFF"],
    ["80", "bare continuation byte"],
    ["bf", "bare continuation byte 0xBF"],
    ["41 80", "continuation byte after ASCII"],
    ["c3", "truncated two-byte"],
    ["e2 82", "truncated three-byte"],
    ["e2", "three-byte lead alone"],
    ["f0 9f 98", "truncated four-byte"],
    ["f0 9f", "truncated four-byte, two bytes"],
    ["41 42 c3", "truncated at the end of a longer string"],
    ["c3 41", "ASCII where a continuation byte belongs"],
    ["c3 c3 a9", "lead byte where a continuation byte belongs"],
    ["e2 28 a1", "bad second byte of three"],
    ["e2 82 28", "bad third byte of three"],
    ["f0 28 8c bc", "bad second byte of four"],
    ["f0 9f 28 80", "bad third byte of four"],
    ["f0 9f 98 28", "bad fourth byte of four"],
  ];
  for (const [bytes, what] of bad) {
    const encoded = hex(bytes);
    equal(checkUtf8(encoded, 0, encoded.length), -1, what + " (" + bytes + ")");
  }
  // A valid sequence cut short by the range end, even though the buffer holds the rest.
  const euro = hex("e2 82 ac");
  equal(checkUtf8(euro, 0, 1), -1, "range ends after the lead byte");
  equal(checkUtf8(euro, 0, 2), -1, "range ends one byte early");
  equal(checkUtf8(euro, 0, 3), 1, "whole range");
  const emoji = hex("41 f0 9f 98 80");
  equal(checkUtf8(emoji, 0, 4), -1, "four-byte sequence cut by the range end");
  equal(checkUtf8(emoji, 1, 5), 2, "four-byte sequence decodes to two UTF-16 units");
  equal(checkUtf8(emoji, 2, 5), -1, "range starting on a continuation byte");
});

/**
 * Well-formed text over the whole code point range, spread evenly over 1, 2, 3 and 4-byte UTF-8
 * (fast-check's own `unit: "binary"` strings are not used: their setup alone exceeds the XS
 * compute meter).
 */
const anyText = fc
  .array(
    fc.oneof(
      fc.integer({ min: 0, max: 0x7f }),
      fc.integer({ min: 0x80, max: 0x7ff }),
      fc.integer({ min: 0x800, max: 0xffff }),
      fc.integer({ min: 0x10000, max: 0x10ffff }),
    ),
    { maxLength: 16 },
  )
  .map((points) => String.fromCodePoint(...points.map((point) => (point >= 0xd800 && point <= 0xdfff ? point + 0x800 : point))));

test("topic: property: utf8Length and writeUtf8 agree with encodeURIComponent; check and read round-trip", () => {
  holds(
    fc.property(anyText, (text) => {
      const expected = oracleBytes(text);
      if (expected === null) return false; // "binary" strings are well formed: never happens
      if (text.indexOf("\u0000") >= 0) return utf8Length(text) === -1;
      if (utf8Length(text) !== expected.length) return false;
      const target = new Uint8Array(expected.length + 2).fill(0xee);
      if (writeUtf8(text, target, 1) !== expected.length + 1) return false;
      if (target[0] !== 0xee || target[expected.length + 1] !== 0xee) return false;
      for (let i = 0; i < expected.length; i++) if (target[i + 1] !== expected[i]) return false;
      return checkUtf8(target, 1, expected.length + 1) === text.length && readUtf8(target, 1, expected.length + 1) === text;
    }),
    42,
    300,
  );
});

test("topic: property: utf8Length returns -1 exactly for lone surrogates and U+0000", () => {
  // Arbitrary UTF-16 code units, biased towards surrogates and NUL.
  const unit = fc.oneof(
    fc.integer({ min: 0xd800, max: 0xdfff }),
    fc.constantFrom(0, 0x41, 0x2f, 0xe9, 0x20ac),
    fc.integer({ min: 0, max: 0xffff }),
  );
  holds(
    fc.property(fc.array(unit, { maxLength: 12 }), (units) => {
      const text = String.fromCharCode(...units);
      const expected = oracleBytes(text);
      const refused = expected === null || units.indexOf(0) >= 0;
      return refused ? utf8Length(text) === -1 : utf8Length(text) === expected.length;
    }),
    43,
    400,
  );
});

test("topic: property: checkUtf8 accepts exactly the well-formed UTF-8 without NUL (table 3-7 as oracle)", () => {
  // Bytes biased towards the interesting lead and continuation values.
  const byte = fc.oneof(
    fc.integer({ min: 0, max: 255 }),
    fc.constantFrom(0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff),
  );
  const pieces = fc.array(
    fc.oneof(
      fc.array(byte, { minLength: 1, maxLength: 4 }),
      fc.constantFrom([0xc3, 0xa9], [0xe2, 0x82, 0xac], [0xf0, 0x9f, 0x98, 0x80], [0xed, 0x9f, 0xbf], [0xf4, 0x8f, 0xbf, 0xbf], [0x61]),
    ),
    { maxLength: 8 },
  );
  holds(
    fc.property(pieces, (parts) => {
      const flat: number[] = [];
      for (const part of parts) for (const value of part) flat.push(value);
      const bytes = new Uint8Array(flat);
      const decoded = oracleDecode(bytes, 0, bytes.length);
      const valid = decoded !== null && flat.indexOf(0) < 0;
      const units = checkUtf8(bytes, 0, bytes.length);
      if (!valid) return units === -1;
      return units === decoded.length && readUtf8(bytes, 0, bytes.length) === decoded;
    }),
    44,
    600,
  );
});

test("topic: topicNameProblem accepts valid names", () => {
  const valid = ["a", "a/b", "/", "//", "a/b/", "/a", "$SYS/broker/load", "$", "sport/tennis/player1", " ", "a b/c d", "\u00e9/\u20ac/\ud83d\ude00", "\ufeffbom"];
  for (const name of valid) equal(topicNameProblem(name), "", JSON.stringify(name));
});

test("topic: topicNameProblem rejects empty, wildcard, invalid UTF-8 and non-string names", () => {
  ok(topicNameProblem("").indexOf("must not be empty") >= 0, "empty");
  for (const name of ["+", "#", "a/+", "a/#", "+/a", "a+b", "sport/tennis#", "a/b/c#", "#/a"]) {
    ok(topicNameProblem(name).indexOf("must not contain wildcards") >= 0, "wildcard in " + JSON.stringify(name) + ": " + topicNameProblem(name));
  }
  for (const name of ["\ud800", "a/\udc00", "a\u0000b"]) {
    ok(topicNameProblem(name).indexOf("not valid UTF-8") >= 0, "bad UTF-16 " + JSON.stringify(name));
  }
  for (const value of [undefined, null, 42, true, {}, ["a"], new Uint8Array([0x61])]) {
    equal(topicNameProblem(value), "topic must be a string", "non-string " + String(value));
  }
});

test("topic: topicNameProblem enforces the byte limit in UTF-8 bytes, not characters", () => {
  equal(MAX_STRING_BYTES, 65535);
  equal(topicNameProblem("a".repeat(65535)), "", "65535 ASCII bytes is the maximum");
  const over = topicNameProblem("a".repeat(65536));
  ok(over.indexOf("65536 bytes") >= 0 && over.indexOf("limit of 65535") >= 0, over);
  equal(topicNameProblem("\u20ac".repeat(21845)), "", "21845 euro signs = 65535 bytes");
  ok(topicNameProblem("\u20ac".repeat(21846)).indexOf("65538 bytes") >= 0, "21846 euro signs = 65538 bytes");
  equal(topicNameProblem("abc", 3), "", "custom limit, at the limit");
  ok(topicNameProblem("abcd", 3).indexOf("limit of 3") >= 0, "custom limit, one over");
  ok(topicNameProblem("\u00e9\u00e9", 3).indexOf("4 bytes") >= 0, "two 2-byte characters over a 3-byte limit");
});

test("topic: topicFilterProblem accepts filters whose wildcards occupy whole levels", () => {
  const valid = [
    "#", "+", "+/+", "a/#", "a/+", "+/a", "a/+/b", "/+", "+/", "/#", "+/#", "+/+/#", "a//b", "/", "a",
    "sport/tennis/player1/#", "sport/+/player1", "sport/tennis/+", "$SYS/#", "$SYS/monitor/+", "+/monitor/Clients", "\u00e9/+/\ud83d\ude00/#",
  ];
  for (const filter of valid) equal(topicFilterProblem(filter), "", JSON.stringify(filter));
});

test("topic: topicFilterProblem rejects misplaced wildcards with a reason", () => {
  const partLevel = ["a+", "+a", "a/b+", "a/+b/c", "++", "+#", "a#", "#a", "##", "sport/tennis#", "a/b#/c", "x/++/y"];
  for (const filter of partLevel) {
    ok(topicFilterProblem(filter).indexOf("must occupy a whole level") >= 0, JSON.stringify(filter) + ": " + topicFilterProblem(filter));
  }
  const notLast = ["a/#/b", "#/", "#/a", "sport/tennis/#/ranking", "+/#/+"];
  for (const filter of notLast) {
    ok(topicFilterProblem(filter).indexOf("'#' must be the last level") >= 0, JSON.stringify(filter) + ": " + topicFilterProblem(filter));
  }
  ok(topicFilterProblem("").indexOf("must not be empty") >= 0, "empty filter");
  for (const value of [undefined, null, 7, {}, ["#"]]) equal(topicFilterProblem(value), "topic filter must be a string", String(value));
  ok(topicFilterProblem("a/\ud800/#").indexOf("not valid UTF-8") >= 0, "lone surrogate");
  ok(topicFilterProblem("a/\u0000").indexOf("not valid UTF-8") >= 0, "U+0000");
  equal(topicFilterProblem("a/" + "b".repeat(65531) + "/#"), "", "65535 bytes");
  ok(topicFilterProblem("a/" + "b".repeat(65532) + "/#").indexOf("65536 bytes") >= 0, "65536 bytes");
  ok(topicFilterProblem("a/b/#", 4).indexOf("limit of 4") >= 0, "custom limit");
});

test("topic: topicMatches: the specification's examples (MQTT 3.1.1 section 4.7)", () => {
  const cases: [string, string, boolean][] = [
    // 4.7.1.2 multi-level wildcard
    ["sport/tennis/player1/#", "sport/tennis/player1", true],
    ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
    ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
    ["sport/tennis/player1/#", "sport/tennis/player2", false],
    ["sport/tennis/player1/#", "sport/tennis/player10", false],
    ["sport/tennis/player1/#", "sport/tennis", false],
    ["sport/#", "sport", true],
    ["#", "sport", true],
    ["#", "sport/tennis/player1", true],
    ["#", "/", true],
    ["#", "/finance", true],
    // 4.7.1.3 single-level wildcard
    ["sport/tennis/+", "sport/tennis/player1", true],
    ["sport/tennis/+", "sport/tennis/player2", true],
    ["sport/tennis/+", "sport/tennis/player1/ranking", false],
    ["sport/+", "sport", false],
    ["sport/+", "sport/", true],
    ["+/+", "/finance", true],
    ["/+", "/finance", true],
    ["+", "/finance", false],
    ["+/tennis/#", "sport/tennis/player1", true],
    ["sport/+/player1", "sport/tennis/player1", true],
    ["sport/+/player1", "sport/tennis/player2", false],
    // 4.7.2 topics beginning with $
    ["#", "$SYS/monitor/Clients", false],
    ["+/monitor/Clients", "$SYS/monitor/Clients", false],
    ["$SYS/#", "$SYS/monitor/Clients", true],
    ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
    ["$SYS/#", "$SYS", true],
    ["+", "$SYS", false],
    ["#", "$", false],
    ["+/#", "$SYS/x", false],
    ["$", "$", true],
    ["a/+", "a/$b", true], // only the first level is special
    ["+/+", "x/$SYS", true],
  ];
  for (const [filter, topic, expected] of cases) equal(topicMatches(filter, topic), expected, filter + " vs " + topic);
});

test("topic: topicMatches: exact levels, empty levels and the parent rule of '#'", () => {
  const cases: [string, string, boolean][] = [
    ["a/b", "a/b", true],
    ["a/b", "a/b/c", false],
    ["a/b", "a", false],
    ["a/b", "a/bc", false],
    ["a/b", "a/", false],
    ["a/b", "A/b", false], // case-sensitive
    ["a/b", "a/b/", false],
    ["a//b", "a//b", true],
    ["a/+/b", "a//b", true],
    ["a/+/b", "a/x/y/b", false],
    ["a/#", "a", true],
    ["a/#", "a/", true],
    ["a/#", "a/b", true],
    ["a/#", "a/b/c", true],
    ["a/#", "ab", false],
    ["a/#", "b", false],
    ["a/#", "b/a", false],
    ["a/b/#", "a", false],
    ["a/b/#", "a/b", true],
    ["a/b/#", "a/bc", false],
    ["+/#", "a", true],
    ["+/#", "a/b/c", true],
    ["+/+/#", "a", false],
    ["+/+/#", "a/b", true],
    ["+/+", "/", true],
    ["+", "/", false],
    ["+", "a", true],
    ["/#", "/", true],
    ["/#", "/a/b", true],
    ["/#", "a", false],
    ["+/", "a/", true],
    ["+/", "a", false],
    ["\u00e9/+", "\u00e9/\ud83d\ude00", true],
    ["\u00e9/+", "e/x", false],
  ];
  for (const [filter, topic, expected] of cases) equal(topicMatches(filter, topic), expected, filter + " vs " + topic);
});

/** A reference matcher working on split levels, written from the specification's wording. */
function referenceMatch(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  if (topic.charAt(0) === "$" && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true; // matches this level's parent and everything below
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

test("topic: property: topicMatches agrees with a level-by-level reference matcher", () => {
  const topicLevel = fc.constantFrom("a", "b", "", "$", "$a", "ab", "\u00e9");
  const filterLevel = fc.constantFrom("a", "b", "", "+", "$", "$a", "ab", "\u00e9");
  const topic = fc.array(topicLevel, { minLength: 1, maxLength: 5 }).map((levels) => levels.join("/")).filter((name) => name.length > 0);
  const filter = fc
    .tuple(fc.array(filterLevel, { minLength: 1, maxLength: 5 }), fc.boolean())
    .map(([levels, hash]) => (hash ? [...levels, "#"] : levels).join("/"))
    .filter((text) => text.length > 0);
  holds(
    fc.property(filter, topic, (f, t) => {
      if (topicFilterProblem(f) !== "" || topicNameProblem(t) !== "") return false; // the generators only make valid ones
      return topicMatches(f, t) === referenceMatch(f, t);
    }),
    45,
    1000,
  );
});

test("topic: property: every valid name matches itself, '#' (unless it starts with '$') and its own '/#'", () => {
  const level = fc.constantFrom("a", "b", "", "x y", "$", "\u20ac");
  holds(
    fc.property(fc.array(level, { minLength: 1, maxLength: 5 }), (levels) => {
      const name = levels.join("/");
      if (name.length === 0) return true;
      const dollar = name.charAt(0) === "$";
      return topicMatches(name, name) && topicMatches("#", name) === !dollar && topicMatches(name + "/#", name) && !topicMatches(name + "/+", name);
    }),
    46,
    300,
  );
});
