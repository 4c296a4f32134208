// Portable tests for modules/packet.ts: byte-exact vectors for every encoder (computed by hand from
// the MQTT 3.1.1 specification), the remaining-length field at every boundary, the in-place helpers,
// and the incremental decoder: every valid broker packet in any chunking, every kind of malformed
// input, oversize packets refused from the header alone, reset(), and random input.
// Runs unchanged on Node and on XS: harness and fast-check only.
import * as fc from "fast-check";
import { deepEqual, equal, hex, ok, test } from "../harness";
import {
  type ConnectFields,
  connectRemaining,
  DISCONNECT_BYTES,
  firstTopicOf,
  markDuplicate,
  MAX_REMAINING_LENGTH,
  PacketDecoder,
  type PacketSink,
  packetSize,
  payloadLength,
  PINGREQ_BYTES,
  PUBACK_BYTES,
  publishRemaining,
  remainingLengthSize,
  setPacketId,
  subscribeRemaining,
  writeConnect,
  writeDisconnect,
  writeFilter,
  writePingreq,
  writePuback,
  writePublish,
  writeSubscribeHeader,
} from "../../modules/packet";
import { checkUtf8, utf8Length } from "../../modules/topic";

function holds<T>(property: fc.IProperty<T>, seed: number, numRuns: number): void {
  fc.assert(property, { seed, numRuns });
  ok(true);
}

/** Runs an encoder at offset 5 of a buffer filled with 0xEE; checks the end offset and that nothing outside was touched. */
function encodeAt(size: number, write: (target: Uint8Array, offset: number) => number, what: string): Uint8Array {
  const target = new Uint8Array(size + 10).fill(0xee);
  const end = write(target, 5);
  equal(end, 5 + size, what + ": end offset");
  for (let i = 0; i < 5; i++) equal(target[i], 0xee, what + ": byte before the packet");
  for (let i = end; i < target.length; i++) equal(target[i], 0xee, what + ": byte after the packet");
  return target.slice(5, end);
}

function connect(fields: ConnectFields): Uint8Array {
  return encodeAt(packetSize(connectRemaining(fields)), (target, offset) => writeConnect(target, offset, fields), "CONNECT");
}

function publish(topic: string, payload: Uint8Array | string, qos: number, retain: boolean, packetId: number): Uint8Array {
  const topicBytes = utf8Length(topic);
  const payloadBytes = payloadLength(payload);
  const size = packetSize(publishRemaining(topicBytes, payloadBytes, qos));
  return encodeAt(size, (target, offset) => writePublish(target, offset, topic, topicBytes, payload, payloadBytes, qos, retain, packetId), "PUBLISH " + topic);
}

/** A SUBSCRIBE (qos >= 0 for each filter) or UNSUBSCRIBE (no qos list). */
function subscription(packetId: number, filters: string[], qos?: number[]): Uint8Array {
  let filterBytes = 0;
  for (const filter of filters) filterBytes += utf8Length(filter);
  const remaining = subscribeRemaining(filters.length, filterBytes, qos !== undefined);
  return encodeAt(
    packetSize(remaining),
    (target, offset) => {
      offset = writeSubscribeHeader(target, offset, qos !== undefined, remaining, packetId);
      for (let i = 0; i < filters.length; i++) offset = writeFilter(target, offset, filters[i], utf8Length(filters[i]), qos !== undefined ? qos[i] : -1);
      return offset;
    },
    qos !== undefined ? "SUBSCRIBE" : "UNSUBSCRIBE",
  );
}

// ---------------------------------------------------------------------------------------------
// Encoders: byte-exact vectors

test("packet: CONNECT vectors: minimal, clean session off, UTF-8 client id", () => {
  // 10 | remaining 15 | "MQTT" | level 4 | flags 0x02 (clean) | keep-alive 60 | "abc"
  deepEqual(connect({ clientId: "abc", cleanSession: true, keepAliveSeconds: 60 }), hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63"));
  deepEqual(connect({ clientId: "", cleanSession: false, keepAliveSeconds: 0 }), hex("10 0c 00 04 4d 51 54 54 04 00 00 00 00 00"), "empty id, no clean session");
  deepEqual(connect({ clientId: "\u00e9", cleanSession: true, keepAliveSeconds: 65535 }), hex("10 0e 00 04 4d 51 54 54 04 02 ff ff 00 02 c3 a9"), "UTF-8 id, keep-alive 65535");
  deepEqual(connect({ clientId: "k", cleanSession: true, keepAliveSeconds: 0x1234 }), hex("10 0d 00 04 4d 51 54 54 04 02 12 34 00 01 6b"), "keep-alive is big-endian");
});

test("packet: CONNECT vectors: will, username, password and every flag", () => {
  // flags: clean 02 | will 04 | will QoS 1 08 | will retain 20 | password 40 | username 80 = ee
  const full = connect({
    clientId: "c1",
    cleanSession: true,
    keepAliveSeconds: 300,
    willTopic: "w/t",
    willPayload: hex("62 79 65"),
    willQos: 1,
    willRetain: true,
    username: "u",
    password: hex("70 77"),
  });
  deepEqual(full, hex("10 1f 00 04 4d 51 54 54 04 ee 01 2c 00 02 63 31 00 03 77 2f 74 00 03 62 79 65 00 01 75 00 02 70 77"));
  // Will with QoS 0, no retain and no payload: an empty will message is still length-prefixed.
  deepEqual(
    connect({ clientId: "x", cleanSession: false, keepAliveSeconds: 10, willTopic: "t" }),
    hex("10 12 00 04 4d 51 54 54 04 04 00 0a 00 01 78 00 01 74 00 00"),
  );
  deepEqual(
    connect({ clientId: "x", cleanSession: false, keepAliveSeconds: 10, willTopic: "t", willQos: 2, willPayload: hex("00 ff") }),
    hex("10 14 00 04 4d 51 54 54 04 14 00 0a 00 01 78 00 01 74 00 02 00 ff"),
    "will QoS 2 sets bit 4; binary will payload",
  );
  // Will retain without a will topic is ignored (the flag must be 0 when there is no will).
  deepEqual(connect({ clientId: "x", cleanSession: true, keepAliveSeconds: 10, willRetain: true, willQos: 1 }), hex("10 0d 00 04 4d 51 54 54 04 02 00 0a 00 01 78"));
  deepEqual(connect({ clientId: "id", cleanSession: true, keepAliveSeconds: 60, username: "user" }), hex("10 14 00 04 4d 51 54 54 04 82 00 3c 00 02 69 64 00 04 75 73 65 72"), "username only");
  deepEqual(
    connect({ clientId: "a", cleanSession: true, keepAliveSeconds: 60, username: "", password: new Uint8Array(0) }),
    hex("10 11 00 04 4d 51 54 54 04 c2 00 3c 00 01 61 00 00 00 00"),
    "empty username and password are still present",
  );
  deepEqual(
    connect({ clientId: "a", cleanSession: true, keepAliveSeconds: 60, username: "\u20ac", password: hex("00 01 02") }),
    hex("10 17 00 04 4d 51 54 54 04 c2 00 3c 00 01 61 00 03 e2 82 ac 00 03 00 01 02"),
    "UTF-8 username, binary password",
  );
});

test("packet: CONNECT remaining length grows to two bytes with long fields", () => {
  const fields: ConnectFields = { clientId: "c".repeat(100), cleanSession: true, keepAliveSeconds: 60, username: "u".repeat(20) };
  equal(connectRemaining(fields), 10 + 102 + 22);
  const bytes = connect(fields);
  equal(bytes.length, 1 + 2 + 134);
  deepEqual(bytes.subarray(0, 3), hex("10 86 01"), "134 = 0x86 0x01");
  deepEqual(bytes.subarray(3, 13), hex("00 04 4d 51 54 54 04 82 00 3c"));
});

test("packet: PUBLISH vectors: QoS 0 and 1, retain, text and binary payloads", () => {
  deepEqual(publish("a/b", "hi", 0, false, 0), hex("30 07 00 03 61 2f 62 68 69"), "QoS 0, text payload");
  deepEqual(publish("a/b", "", 0, true, 0), hex("31 05 00 03 61 2f 62"), "QoS 0 retain, empty payload");
  deepEqual(publish("a/b", new Uint8Array(0), 0, false, 0), hex("30 05 00 03 61 2f 62"), "QoS 0, empty binary payload");
  deepEqual(publish("t", hex("01 02 03"), 1, false, 0x1234), hex("32 08 00 01 74 12 34 01 02 03"), "QoS 1 with packet id");
  deepEqual(publish("t", "", 1, true, 1), hex("33 05 00 01 74 00 01"), "QoS 1 retain, empty payload");
  deepEqual(publish("t", hex("ff"), 1, false, 65535), hex("32 06 00 01 74 ff ff ff"), "packet id 65535");
  deepEqual(publish("t", "\u00e9\u20ac", 0, false, 0), hex("30 08 00 01 74 c3 a9 e2 82 ac"), "UTF-8 text payload");
  deepEqual(publish("\u00e9/\ud83d\ude00", hex("00"), 0, false, 0), hex("30 0a 00 07 c3 a9 2f f0 9f 98 80 00"), "UTF-8 topic");
  deepEqual(publish("t", hex("00 00"), 0, false, 0x7777), hex("30 05 00 01 74 00 00"), "QoS 0 carries no packet id");
});

test("packet: PUBACK, PINGREQ, DISCONNECT vectors", () => {
  deepEqual(encodeAt(PUBACK_BYTES, (t, o) => writePuback(t, o, 0x0102), "PUBACK"), hex("40 02 01 02"));
  deepEqual(encodeAt(PUBACK_BYTES, (t, o) => writePuback(t, o, 65535), "PUBACK"), hex("40 02 ff ff"));
  deepEqual(encodeAt(PINGREQ_BYTES, (t, o) => writePingreq(t, o), "PINGREQ"), hex("c0 00"));
  deepEqual(encodeAt(DISCONNECT_BYTES, (t, o) => writeDisconnect(t, o), "DISCONNECT"), hex("e0 00"));
});

test("packet: SUBSCRIBE and UNSUBSCRIBE vectors with several filters", () => {
  equal(subscribeRemaining(3, 5, true), 16);
  equal(subscribeRemaining(2, 4, false), 10);
  // 82 (reserved bits 0010) | 16 | id 10 | "a/+" QoS 0 | "#" QoS 1 | "b" QoS 2
  deepEqual(subscription(10, ["a/+", "#", "b"], [0, 1, 2]), hex("82 10 00 0a 00 03 61 2f 2b 00 00 01 23 01 00 01 62 02"));
  deepEqual(subscription(0xfffe, ["\u00e9/#"], [1]), hex("82 09 ff fe 00 04 c3 a9 2f 23 01"), "one UTF-8 filter");
  // a2 (reserved bits 0010) | 10 | id 0x0b0c | "a/+" | "#"
  deepEqual(subscription(0x0b0c, ["a/+", "#"]), hex("a2 0a 0b 0c 00 03 61 2f 2b 00 01 23"));
  deepEqual(subscription(1, ["x"]), hex("a2 05 00 01 00 01 78"), "one filter");
});

// ---------------------------------------------------------------------------------------------
// Remaining length

const BOUNDARIES: readonly [number, string][] = [
  [0, "00"],
  [1, "01"],
  [127, "7f"],
  [128, "80 01"],
  [321, "c1 02"], // the specification's example
  [16383, "ff 7f"],
  [16384, "80 80 01"],
  [2097151, "ff ff 7f"],
  [2097152, "80 80 80 01"],
  [268435455, "ff ff ff 7f"],
];

test("packet: remaining length field at every boundary, via the fixed header", () => {
  equal(MAX_REMAINING_LENGTH, 268435455);
  for (const [remaining, field] of BOUNDARIES) {
    const expected = hex(field);
    equal(remainingLengthSize(remaining), expected.length, "size of the field for " + remaining);
    equal(packetSize(remaining), 1 + expected.length + remaining, "packet size for " + remaining);
    // writeSubscribeHeader writes the fixed header for any remaining length, then the packet id.
    const target = new Uint8Array(9).fill(0xee);
    const end = writeSubscribeHeader(target, 1, true, remaining, 0x0102);
    equal(end, 1 + 1 + expected.length + 2, "end offset for " + remaining);
    equal(target[1], 0x82);
    deepEqual(target.subarray(2, 2 + expected.length), expected, "field for " + remaining);
    deepEqual(target.subarray(2 + expected.length, end), hex("01 02"), "packet id after the field for " + remaining);
    equal(target[0], 0xee);
    if (end < target.length) equal(target[end], 0xee);
  }
});

test("packet: PUBLISH of every remaining-length boundary up to 2097152: header, length and payload placement", () => {
  // Topic "t" at QoS 0: remaining = 3 + payload.
  for (const remaining of [3, 127, 128, 16383, 16384, 2097151, 2097152]) {
    const payload = new Uint8Array(remaining - 3);
    for (let i = 0; i < payload.length; i += 4093) payload[i] = (i >> 3) & 0xff;
    if (payload.length > 0) payload[payload.length - 1] = 0xa5;
    const topicBytes = 1;
    equal(publishRemaining(topicBytes, payload.length, 0), remaining);
    const size = packetSize(remaining);
    const target = new Uint8Array(size + 1).fill(0xee);
    equal(writePublish(target, 0, "t", 1, payload, payload.length, 0, false, 0), size, "end for " + remaining);
    const field = hex(BOUNDARIES.find(([value]) => value === remaining)?.[1] ?? (remaining === 3 ? "03" : "?"));
    equal(target[0], 0x30);
    deepEqual(target.subarray(1, 1 + field.length), field, "length field for " + remaining);
    const start = 1 + field.length;
    deepEqual(target.subarray(start, start + 3), hex("00 01 74"), "topic for " + remaining);
    for (let i = 0; i < payload.length; i += 4093) equal(target[start + 3 + i], payload[i], "payload byte " + i);
    if (payload.length > 0) equal(target[size - 1], 0xa5, "last payload byte for " + remaining);
    equal(target[size], 0xee, "nothing written past the packet for " + remaining);
  }
});

test("packet: size helpers: payloadLength, publishRemaining, connectRemaining", () => {
  equal(payloadLength(""), 0);
  equal(payloadLength("abc"), 3);
  equal(payloadLength("\u00e9\ud83d\ude00"), 6);
  equal(payloadLength("\ud800"), -1, "lone surrogate text");
  equal(payloadLength("a\u0000b"), 3, "U+0000 is allowed in a payload (MQTT forbids it in strings only)");
  equal(payloadLength("\u0000"), 1);
  equal(payloadLength(new Uint8Array(7)), 7);
  equal(publishRemaining(3, 2, 0), 7);
  equal(publishRemaining(3, 2, 1), 9);
  equal(connectRemaining({ clientId: "abc", cleanSession: true, keepAliveSeconds: 60 }), 15);
  equal(connectRemaining({ clientId: "c1", cleanSession: true, keepAliveSeconds: 1, willTopic: "w/t", willPayload: hex("01 02 03"), username: "u", password: hex("01 02") }), 31);
  equal(connectRemaining({ clientId: "c", cleanSession: true, keepAliveSeconds: 1, willTopic: "w" }), 10 + 3 + 3 + 2);
});

// ---------------------------------------------------------------------------------------------
// In-place helpers on encoded packets

test("packet: setPacketId on PUBLISH with 1, 2 and 3-byte length fields, at an offset", () => {
  for (const payloadSize of [0, 2, 200, 20000]) {
    const payload = new Uint8Array(payloadSize);
    for (let i = 0; i < payloadSize; i++) payload[i] = i & 0xff;
    const original = publish("a/\u00e9", payload, 1, true, 1);
    const expected = publish("a/\u00e9", payload, 1, true, 0xbeef);
    const buffer = new Uint8Array(original.length + 11).fill(0x55);
    buffer.set(original, 9);
    setPacketId(buffer, 9, 0xbeef);
    deepEqual(buffer.subarray(9, 9 + original.length), expected, "only the id changed, payload " + payloadSize);
    equal(buffer[8], 0x55);
    equal(buffer[9 + original.length], 0x55);
  }
});

test("packet: setPacketId on SUBSCRIBE and UNSUBSCRIBE", () => {
  const longFilter = "f/".repeat(100) + "#";
  for (const [filters, qos] of [[["a/+", "#"], [0, 1]], [["x"], undefined], [[longFilter, "b"], [1, 0]], [[longFilter], undefined]] as [string[], number[] | undefined][]) {
    const original = subscription(7, filters, qos);
    const expected = subscription(0x8001, filters, qos);
    setPacketId(original, 0, 0x8001);
    deepEqual(original, expected, filters[0].length + " byte first filter");
  }
});

test("packet: markDuplicate sets DUP and nothing else", () => {
  const packet = publish("t", "x", 1, false, 5);
  const buffer = new Uint8Array(packet.length + 4);
  buffer.set(packet, 2);
  markDuplicate(buffer, 2);
  equal(buffer[2], 0x3a, "32 becomes 3a");
  deepEqual(buffer.subarray(3, 2 + packet.length), packet.subarray(1));
  markDuplicate(buffer, 2);
  equal(buffer[2], 0x3a, "idempotent");
  const retained = publish("t", "x", 1, true, 5);
  markDuplicate(retained, 0);
  equal(retained[0], 0x3b, "33 becomes 3b: retain kept");
  equal(buffer[0] | buffer[1] | buffer[buffer.length - 1], 0, "bytes around untouched");
});

test("packet: firstTopicOf reads the PUBLISH topic or the first filter", () => {
  equal(firstTopicOf(publish("a/b", "hi", 0, false, 0), 0), "a/b");
  equal(firstTopicOf(publish("\u00e9/\ud83d\ude00", new Uint8Array(300), 1, false, 9), 0), "\u00e9/\ud83d\ude00", "UTF-8 topic, 2-byte length, QoS 1");
  equal(firstTopicOf(subscription(3, ["a/+", "#"], [0, 1]), 0), "a/+");
  equal(firstTopicOf(subscription(3, ["#", "a/+"]), 0), "#");
  const long = "l/".repeat(80) + "+";
  equal(firstTopicOf(subscription(3, [long, "b"], [1, 1]), 0), long, "2-byte length field");
  const inner = publish("x/y", new Uint8Array(20000), 0, false, 0);
  const buffer = new Uint8Array(inner.length + 13);
  buffer.set(inner, 13);
  equal(firstTopicOf(buffer, 13), "x/y", "3-byte length field, at an offset");
});

// ---------------------------------------------------------------------------------------------
// Decoder

type Seen = Record<string, unknown>;

function snapshot(decoder: PacketDecoder): Seen {
  switch (decoder.type) {
    case 2:
      return { type: "CONNACK", sessionPresent: decoder.sessionPresent, returnCode: decoder.returnCode };
    case 3:
      return {
        type: "PUBLISH",
        topic: decoder.topic(),
        qos: decoder.qos,
        retain: decoder.retain,
        dup: decoder.dup,
        packetId: decoder.packetId,
        payload: decoder.body.slice(decoder.payloadStart, decoder.payloadEnd),
      };
    case 4:
      return { type: "PUBACK", packetId: decoder.packetId };
    case 9:
      return { type: "SUBACK", packetId: decoder.packetId, codes: Array.from(decoder.body.subarray(2, decoder.remaining)) };
    case 11:
      return { type: "UNSUBACK", packetId: decoder.packetId };
    case 13:
      return { type: "PINGRESP" };
    default:
      return { type: "unexpected " + decoder.type };
  }
}

class Collector implements PacketSink {
  readonly seen: Seen[] = [];
  largest = 0;
  onPacket(decoder: PacketDecoder): void {
    if (packetSize(decoder.remaining) > this.largest) this.largest = packetSize(decoder.remaining);
    this.seen.push(snapshot(decoder));
  }
  onOversizedPublish(decoder: PacketDecoder): void {
    this.seen.push({ type: "skipped", bytes: decoder.skippedBytes, qos: decoder.qos, packetId: decoder.packetId, topic: decoder.skippedTopic() });
  }
}

interface Outcome {
  /** Whether every feed() returned true. */
  ok: boolean;
  error: string;
  seen: Seen[];
  /** Bytes handed to feed() up to and including the chunk that returned false (or all of them). */
  consumedAtFailure: number;
  /** Every feed() after the first false also returned false. */
  stayedFailed: boolean;
  threw: string;
  largest: number;
}

/** Feeds `bytes` in chunks whose sizes come from `chunkSize(i)` (cycled); catches anything thrown. */
function decode(bytes: Uint8Array, chunkSize: (index: number) => number, maxPacketBytes = 1024): Outcome {
  const sink = new Collector();
  const decoder = new PacketDecoder(maxPacketBytes, sink);
  const outcome: Outcome = { ok: true, error: "", seen: sink.seen, consumedAtFailure: bytes.length, stayedFailed: true, threw: "", largest: 0 };
  try {
    let offset = 0;
    for (let index = 0; offset < bytes.length; index++) {
      let size = chunkSize(index);
      if (size > bytes.length - offset) size = bytes.length - offset;
      const accepted = decoder.feed(bytes, offset, size);
      offset += size;
      if (!accepted && outcome.ok) {
        outcome.ok = false;
        outcome.error = decoder.error;
        outcome.consumedAtFailure = offset;
      } else if (accepted && !outcome.ok) {
        outcome.stayedFailed = false;
      }
    }
  } catch (error) {
    outcome.threw = String(error);
  }
  outcome.largest = sink.largest;
  return outcome;
}

const whole = (): number => 1 << 30;
const bytewise = (): number => 1;

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const PAYLOAD_200 = new Uint8Array(200).map((_, i) => (i * 7) & 0xff);

/** Every valid broker-to-client packet shape: name, bytes, what the decoder must report. */
const VALID: readonly [string, Uint8Array, Seen][] = [
  ["CONNACK accepted", hex("20 02 00 00"), { type: "CONNACK", sessionPresent: false, returnCode: 0 }],
  ["CONNACK session present", hex("20 02 01 00"), { type: "CONNACK", sessionPresent: true, returnCode: 0 }],
  ["CONNACK 1 unacceptable protocol", hex("20 02 00 01"), { type: "CONNACK", sessionPresent: false, returnCode: 1 }],
  ["CONNACK 2 identifier rejected", hex("20 02 00 02"), { type: "CONNACK", sessionPresent: false, returnCode: 2 }],
  ["CONNACK 3 server unavailable", hex("20 02 00 03"), { type: "CONNACK", sessionPresent: false, returnCode: 3 }],
  ["CONNACK 4 bad credentials", hex("20 02 00 04"), { type: "CONNACK", sessionPresent: false, returnCode: 4 }],
  ["CONNACK 5 not authorized", hex("20 02 00 05"), { type: "CONNACK", sessionPresent: false, returnCode: 5 }],
  ["PUBLISH QoS 0", hex("30 07 00 03 61 2f 62 68 69"), { type: "PUBLISH", topic: "a/b", qos: 0, retain: false, dup: false, packetId: 0, payload: hex("68 69") }],
  ["PUBLISH QoS 0 retain, empty payload", hex("31 05 00 03 61 2f 62"), { type: "PUBLISH", topic: "a/b", qos: 0, retain: true, dup: false, packetId: 0, payload: hex("") }],
  ["PUBLISH QoS 1", hex("32 08 00 01 74 12 34 01 02 03"), { type: "PUBLISH", topic: "t", qos: 1, retain: false, dup: false, packetId: 0x1234, payload: hex("01 02 03") }],
  ["PUBLISH QoS 1 DUP", hex("3a 06 00 01 74 00 01 00"), { type: "PUBLISH", topic: "t", qos: 1, retain: false, dup: true, packetId: 1, payload: hex("00") }],
  ["PUBLISH QoS 1 DUP retain, id 65535", hex("3b 05 00 01 74 ff ff"), { type: "PUBLISH", topic: "t", qos: 1, retain: true, dup: true, packetId: 65535, payload: hex("") }],
  ["PUBLISH UTF-8 topic", hex("30 09 00 07 c3 a9 2f f0 9f 98 80"), { type: "PUBLISH", topic: "\u00e9/\ud83d\ude00", qos: 0, retain: false, dup: false, packetId: 0, payload: hex("") }],
  ["PUBLISH $SYS topic", hex("30 08 00 06 24 53 59 53 2f 78"), { type: "PUBLISH", topic: "$SYS/x", qos: 0, retain: false, dup: false, packetId: 0, payload: hex("") }],
  ["PUBLISH payload holding 00 and wildcards", hex("30 06 00 01 74 00 23 2b"), { type: "PUBLISH", topic: "t", qos: 0, retain: false, dup: false, packetId: 0, payload: hex("00 23 2b") }],
  [
    "PUBLISH 200-byte payload (2-byte length)",
    concat([hex("32 cf 01 00 03 61 2f 62 00 09"), PAYLOAD_200]),
    { type: "PUBLISH", topic: "a/b", qos: 1, retain: false, dup: false, packetId: 9, payload: PAYLOAD_200 },
  ],
  ["PUBACK", hex("40 02 00 01"), { type: "PUBACK", packetId: 1 }],
  ["PUBACK id 65535", hex("40 02 ff ff"), { type: "PUBACK", packetId: 65535 }],
  ["SUBACK 0, 1, 2, 0x80", hex("90 06 00 07 00 01 02 80"), { type: "SUBACK", packetId: 7, codes: [0, 1, 2, 0x80] }],
  ["SUBACK single failure", hex("90 03 12 34 80"), { type: "SUBACK", packetId: 0x1234, codes: [0x80] }],
  ["UNSUBACK", hex("b0 02 ab cd"), { type: "UNSUBACK", packetId: 0xabcd }],
  ["PINGRESP", hex("d0 00"), { type: "PINGRESP" }],
];

test("packet: decoder: every valid broker packet, fed whole and in 1-byte chunks", () => {
  for (const [name, bytes, expected] of VALID) {
    for (const [how, chunks] of [["whole", whole], ["1-byte chunks", bytewise]] as const) {
      const outcome = decode(bytes, chunks);
      equal(outcome.threw, "", name + " " + how + ": nothing thrown");
      equal(outcome.error, "", name + " " + how + ": no error");
      ok(outcome.ok, name + " " + how + ": every feed accepted");
      deepEqual(outcome.seen, [expected], name + " " + how);
    }
  }
});

test("packet: decoder: all valid packets back to back in one stream, whole, byte by byte and in fixed chunk sizes", () => {
  const stream = concat(VALID.map(([, bytes]) => bytes));
  const expected = VALID.map(([, , seen]) => seen);
  for (const size of [1 << 30, 1, 2, 3, 5, 7, 31, 33, 64, 100]) {
    const outcome = decode(stream, () => size);
    ok(outcome.ok && outcome.threw === "", "chunks of " + size + ": " + outcome.error + outcome.threw);
    deepEqual(outcome.seen, expected, "chunks of " + size);
  }
});

test("packet: decoder: property: any chunking of any sequence of valid packets decodes the same", () => {
  holds(
    fc.property(
      fc.array(fc.integer({ min: 0, max: VALID.length - 1 }), { minLength: 1, maxLength: 12 }),
      fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 20 }),
      (picks, sizes) => {
        const stream = concat(picks.map((pick) => VALID[pick][1]));
        const outcome = decode(stream, (index) => sizes[index % sizes.length]);
        deepEqual(outcome.seen, picks.map((pick) => VALID[pick][2]));
        return outcome.ok && outcome.threw === "";
      },
    ),
    47,
    300,
  );
});

test("packet: decoder: reads only feed()'s range of a larger buffer", () => {
  const sink = new Collector();
  const decoder = new PacketDecoder(64, sink);
  // 0xff bytes around the packets: read as a header they would start a type-15 packet, as a length
  // byte they would continue it; neither may happen.
  const buffer = concat([hex("ff ff ff"), hex("40 02 00 05"), hex("d0 00"), hex("ff ff")]);
  ok(decoder.feed(buffer, 3, 4), "PUBACK in the middle");
  ok(decoder.feed(buffer, 7, 2), "PINGRESP after it");
  ok(decoder.feed(buffer, 0, 0), "an empty range");
  ok(decoder.feed(buffer, 9, 0), "an empty range at the end");
  ok(decoder.feed(hex("ff 20 02 01 00 ff"), 1, 4), "CONNACK from another buffer");
  deepEqual(sink.seen, [{ type: "PUBACK", packetId: 5 }, { type: "PINGRESP" }, { type: "CONNACK", sessionPresent: true, returnCode: 0 }]);
  equal(decoder.error, "");
});

/**
 * Malformed or unexpected input: name, bytes, a fragment of the error, and after how many bytes (fed
 * one by one) it is detected: a bad type or flags at the first byte, a length wrong for the type at
 * the length byte, so a bogus header never swallows the packets behind it.
 */
const MALFORMED: readonly [string, string, string, number?][] = [
  ["5-byte remaining length", "30 ff ff ff ff 01", "malformed remaining length (more than four bytes)", 5],
  ["5-byte remaining length of zeros", "d0 80 80 80 80 00", "more than four bytes", 5],
  ["CONNACK too long", "20 03 00 00 00", "malformed CONNACK", 2],
  ["CONNACK too short", "20 01 00", "malformed CONNACK", 2],
  ["CONNACK empty", "20 00", "malformed CONNACK"],
  ["CONNACK header flags", "21 02 00 00", "malformed CONNACK", 1],
  ["CONNACK header flags 0x0f", "2f 02 00 00", "malformed CONNACK", 1],
  ["CONNACK reserved acknowledge flag bit 1", "20 02 02 00", "reserved acknowledge flags set"],
  ["CONNACK reserved acknowledge flag bit 7", "20 02 80 00", "reserved acknowledge flags set"],
  ["CONNACK return code 6", "20 02 00 06", "CONNACK with unknown return code 6"],
  ["CONNACK return code 255", "20 02 00 ff", "CONNACK with unknown return code 255"],
  ["CONNACK refusal with session present", "20 02 01 05", "CONNACK refusal with session present"],
  ["PUBLISH QoS 3", "36 05 00 01 74 00 01", "PUBLISH with QoS 3", 1],
  ["PUBLISH QoS 3 DUP retain", "3f 05 00 01 74 00 01", "PUBLISH with QoS 3", 1],
  ["PUBLISH QoS 2", "34 05 00 01 74 00 01", "PUBLISH with QoS 2", 1],
  ["PUBLISH QoS 0 with DUP", "38 03 00 01 74", "PUBLISH with QoS 0 and DUP set", 1],
  ["PUBLISH empty topic", "30 02 00 00", "PUBLISH with an empty topic"],
  ["PUBLISH empty topic with payload", "30 04 00 00 68 69", "PUBLISH with an empty topic"],
  ["PUBLISH with no body", "30 00", "truncated PUBLISH"],
  ["PUBLISH with one byte", "30 01 00", "truncated PUBLISH", 2],
  ["PUBLISH topic longer than the packet", "30 03 00 05 61", "truncated PUBLISH"],
  ["PUBLISH QoS 1 without packet id", "32 03 00 01 74", "truncated PUBLISH", 2],
  ["PUBLISH QoS 1 with half a packet id", "32 04 00 01 74 00", "truncated PUBLISH"],
  ["PUBLISH topic with a bad continuation byte", "30 04 00 02 c3 28", "PUBLISH topic is not valid UTF-8"],
  ["PUBLISH topic with U+0000", "30 05 00 03 61 00 62", "PUBLISH topic is not valid UTF-8"],
  ["PUBLISH topic with an overlong '/'", "30 04 00 02 c0 af", "PUBLISH topic is not valid UTF-8"],
  ["PUBLISH topic with an encoded surrogate", "30 05 00 03 ed a0 80", "PUBLISH topic is not valid UTF-8"],
  ["PUBLISH topic with byte 0xF5", "30 06 00 04 f5 80 80 80", "PUBLISH topic is not valid UTF-8"],
  ["PUBLISH topic truncated inside a character", "30 05 00 02 e2 82 ac", "PUBLISH topic is not valid UTF-8"],
  ["PUBLISH topic with '+'", "30 05 00 03 61 2f 2b", "PUBLISH topic contains a wildcard"],
  ["PUBLISH topic '#'", "30 03 00 01 23", "PUBLISH topic contains a wildcard"],
  ["PUBLISH QoS 1 packet id 0", "32 05 00 01 74 00 00", "PUBLISH with packet id 0"],
  ["PUBACK packet id 0", "40 02 00 00", "acknowledgement with packet id 0"],
  ["PUBACK too long", "40 03 00 01 00", "malformed PUBACK", 2],
  ["PUBACK too short", "40 01 00", "malformed PUBACK", 2],
  ["PUBACK header flags", "41 02 00 01", "malformed PUBACK", 1],
  ["UNSUBACK too short", "b0 01 00", "malformed UNSUBACK", 2],
  ["UNSUBACK header flags", "b2 02 00 01", "malformed UNSUBACK", 1],
  ["UNSUBACK packet id 0", "b0 02 00 00", "acknowledgement with packet id 0"],
  ["SUBACK return code 3", "90 03 00 01 03", "SUBACK with invalid return code 3"],
  ["SUBACK return code 0x81", "90 03 00 01 81", "SUBACK with invalid return code 129"],
  ["SUBACK return code 0x7f", "90 03 00 01 7f", "SUBACK with invalid return code 127"],
  ["SUBACK bad code after good ones", "90 05 00 01 00 80 ff", "SUBACK with invalid return code 255"],
  ["SUBACK without return codes", "90 02 00 01", "malformed SUBACK", 2],
  ["SUBACK header flags", "92 03 00 01 00", "malformed SUBACK", 1],
  ["SUBACK packet id 0", "90 03 00 00 00", "acknowledgement with packet id 0"],
  ["PINGRESP with a body", "d0 01 00", "malformed PINGRESP", 2],
  ["PINGRESP header flags", "d1 00", "malformed PINGRESP", 1],
  ["CONNECT (client only)", "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 61 62 63", "unexpected packet type 1 from the broker", 1],
  ["SUBSCRIBE (client only)", "82 06 00 0a 00 01 23 00", "unexpected packet type 8 from the broker", 1],
  ["UNSUBSCRIBE (client only)", "a2 05 00 01 00 01 78", "unexpected packet type 10 from the broker", 1],
  ["PINGREQ (client only)", "c0 00", "unexpected packet type 12 from the broker", 1],
  ["DISCONNECT (client only)", "e0 00", "unexpected packet type 14 from the broker", 1],
  ["type 0 (reserved)", "00 00", "unexpected packet type 0 from the broker", 1],
  ["type 15 (reserved)", "f0 00", "unexpected packet type 15 from the broker", 1],
  ["type 15 with a body", "f0 02 00 01", "unexpected packet type 15 from the broker", 1],
  ["PUBREC (QoS 2)", "50 02 00 01", "QoS 2 packet type 5 received", 1],
  ["PUBREL (QoS 2)", "62 02 00 01", "QoS 2 packet type 6 received", 1],
  ["PUBCOMP (QoS 2)", "70 02 00 01", "QoS 2 packet type 7 received", 1],
];

test("packet: decoder: malformed input gives feed() === false with a named error, never a throw or a packet", () => {
  for (const [name, bytes, fragment, detectedAfter] of MALFORMED) {
    const input = hex(bytes);
    for (const [how, chunks] of [["whole", whole], ["1-byte chunks", bytewise]] as const) {
      const outcome = decode(input, chunks);
      equal(outcome.threw, "", name + " " + how + ": nothing thrown");
      ok(!outcome.ok, name + " " + how + ": feed() returned false");
      ok(outcome.error.indexOf(fragment) >= 0, name + " " + how + ": error " + JSON.stringify(outcome.error) + " names " + JSON.stringify(fragment));
      deepEqual(outcome.seen, [], name + " " + how + ": no packet delivered");
    }
    equal(decode(input, bytewise).consumedAtFailure, detectedAfter ?? input.length, name + ": detected after this many bytes");
  }
});

test("packet: decoder: a repeated inbound topic is remembered, and any other topic is decoded and validated anew", () => {
  const long = "L/" + "x".repeat(200); // over the remembered size: never remembered, always right
  const sequence: [string, Uint8Array][] = [
    ["a/b", publish("a/b", "1", 0, false, 0)],
    ["a/b again", publish("a/b", "2", 1, false, 7)],
    ["a/c (same length)", publish("a/c", "3", 0, false, 0)],
    ["a/b after a/c", publish("a/b", "4", 0, false, 0)],
    ["UTF-8 topic", publish("\u00e9t\u00e9/\u{1F600}", "5", 0, false, 0)],
    ["UTF-8 topic again", publish("\u00e9t\u00e9/\u{1F600}", "6", 0, false, 0)],
    ["long topic", publish(long, "7", 0, false, 0)],
    ["UTF-8 topic after the long one", publish("\u00e9t\u00e9/\u{1F600}", "8", 0, false, 0)],
    ["long topic again", publish(long, "9", 0, false, 0)],
  ];
  for (const [how, chunks] of [["whole", whole], ["1-byte chunks", bytewise]] as const) {
    const outcome = decode(concat(sequence.map(([, bytes]) => bytes)), chunks);
    equal(outcome.error, "", how + ": no error");
    deepEqual(outcome.seen.map((seen) => seen.topic), ["a/b", "a/b", "a/c", "a/b", "\u00e9t\u00e9/\u{1F600}", "\u00e9t\u00e9/\u{1F600}", long, "\u00e9t\u00e9/\u{1F600}", long], how + ": topics");
  }
  // Bytes of the same length as the remembered topic but differing in one byte are still checked.
  for (const [name, bad, fragment] of [
    ["wildcard '#'", [0x61, 0x2f, 0x23], "wildcard"],
    ["wildcard '+'", [0x61, 0x2b, 0x62], "wildcard"],
    ["U+0000", [0x61, 0x00, 0x62], "UTF-8"],
    ["a lone continuation byte", [0x61, 0x2f, 0x80], "UTF-8"],
  ] as const) {
    const badPublish = new Uint8Array([0x30, 2 + 3 + 1, 0x00, 0x03, ...bad, 0x21]);
    const outcome = decode(concat([publish("a/b", "1", 0, false, 0), badPublish]), whole);
    ok(!outcome.ok, name + " after a remembered topic of the same length: refused");
    ok(outcome.error.indexOf(fragment) >= 0, name + ": error " + JSON.stringify(outcome.error) + " names " + JSON.stringify(fragment));
    equal(outcome.seen.length, 1, name + ": only the good PUBLISH was delivered");
  }
});

test("packet: decoder: after an error, input is ignored until reset(); reset() recovers", () => {
  for (const [name, bytes, fragment] of MALFORMED) {
    const sink = new Collector();
    const decoder = new PacketDecoder(1024, sink);
    // A valid packet, the malformed one and a valid one after it, in one chunk.
    const stream = concat([hex("40 02 00 09"), hex(bytes), hex("d0 00")]);
    let result: boolean | string;
    try {
      result = decoder.feed(stream, 0, stream.length);
    } catch (error) {
      result = String(error);
    }
    equal(result, false, name + ": feed() of the chunk");
    deepEqual(sink.seen, [{ type: "PUBACK", packetId: 9 }], name + ": the packet before the error is delivered, the one after it is not");
    const error = decoder.error;
    ok(error.indexOf(fragment) >= 0, name + ": " + error);
    equal(decoder.feed(hex("d0 00"), 0, 2), false, name + ": later valid input is refused");
    equal(decoder.feed(hex("20 02 00 00"), 0, 1), false, name + ": even one byte");
    equal(decoder.error, error, name + ": the first error is kept");
    equal(sink.seen.length, 1, name + ": nothing more delivered");
    decoder.reset();
    equal(decoder.error, "", name + ": reset() clears the error");
    ok(decoder.feed(hex("d0 00 20 02 00 00"), 0, 6), name + ": input accepted after reset()");
    deepEqual(sink.seen.slice(1), [{ type: "PINGRESP" }, { type: "CONNACK", sessionPresent: false, returnCode: 0 }], name + ": packets after reset()");
  }
});

test("packet: decoder: an oversize packet is refused from its header, before any of its body arrives", () => {
  // max 64: remaining 65 makes a 67-byte packet.
  let sink = new Collector();
  let decoder = new PacketDecoder(64, sink);
  ok(decoder.feed(hex("90"), 0, 1), "the type byte alone is fine");
  equal(decoder.feed(hex("41"), 0, 1), false, "the length byte announces 67 bytes");
  ok(decoder.error.indexOf("packet of 67 bytes exceeds the maximum of 64") >= 0, decoder.error);
  equal(sink.seen.length, 0);

  // A 268435455-byte announcement is refused after its four length bytes.
  sink = new Collector();
  decoder = new PacketDecoder(2048, sink);
  const header = hex("90 ff ff ff 7f");
  for (let i = 0; i < 4; i++) ok(decoder.feed(header, i, 1), "header byte " + i);
  equal(decoder.feed(header, 4, 1), false, "the last length byte");
  ok(decoder.error.indexOf("packet of 268435460 bytes exceeds the maximum of 2048") >= 0, decoder.error);

  // Length and the start of a body in one chunk: still refused, nothing delivered.
  const outcome = decode(concat([hex("90 c8 01 00 01 00"), new Uint8Array(197)]), whole, 200);
  ok(!outcome.ok && outcome.error.indexOf("203 bytes exceeds the maximum of 200") >= 0, outcome.error);
  equal(outcome.seen.length, 0);
  equal(decode(concat([hex("90 c8 01"), new Uint8Array(200)]), bytewise, 200).consumedAtFailure, 3, "detected at the last length byte");
});

test("packet: decoder: the maximum is inclusive, with 1 and 2-byte length fields", () => {
  // max 64: remaining 62 is exactly 64 bytes; 63 is one over.
  const atLimit = concat([hex("30 3e 00 01 74"), new Uint8Array(59).fill(0x41)]);
  const outcome = decode(atLimit, bytewise, 64);
  ok(outcome.ok, outcome.error);
  equal(outcome.seen.length, 1);
  equal((outcome.seen[0].payload as Uint8Array).length, 59);
  equal(outcome.largest, 64);
  const over = decode(concat([hex("30 3f 00 01 74"), new Uint8Array(60)]), bytewise, 64);
  ok(over.ok, over.error);
  deepEqual(over.seen, [{ type: "skipped", bytes: 65, qos: 0, packetId: 0, topic: "t" }], "one byte over: skipped, not stored");
  // max 200: remaining 197 (c5 01) is exactly 200 bytes; 198 (c6 01) is 201.
  const exact = decode(concat([hex("30 c5 01 00 01 74"), new Uint8Array(194)]), whole, 200);
  ok(exact.ok, exact.error);
  equal(exact.largest, 200);
  const oneOver = decode(concat([hex("30 c6 01 00 01 74"), new Uint8Array(195)]), whole, 200);
  ok(oneOver.ok, oneOver.error);
  equal(oneOver.seen[0].bytes, 201);
  ok(!decode(concat([hex("90 c6 01 00 01"), new Uint8Array(196)]), whole, 200).ok, "a SUBACK one byte over is refused");
  // The smallest possible maximum: a PINGRESP fits, a CONNACK does not.
  ok(decode(hex("d0 00"), whole, 2).ok, "PINGRESP in 2 bytes");
  ok(decode(hex("20 02 00 00"), whole, 2).error.indexOf("exceeds the maximum of 2") >= 0, "CONNACK over 2 bytes");
});

test("packet: decoder: a PUBLISH over the maximum is skipped without being stored, and the packets behind it still decode", () => {
  // max 64; a QoS 1 PUBLISH of 300 bytes on "big/t" with packet id 0x1234, then a PINGRESP, fed in every chunking.
  const big = new Uint8Array(packetSize(297));
  writePublish(big, 0, "big/t", 5, new Uint8Array(288).fill(0x41), 288, 1, false, 0x1234);
  const stream = concat([big, hex("d0 00")]);
  for (const [name, chunks] of [["whole", whole], ["bytewise", bytewise]] as [string, (index: number) => number][]) {
    const outcome = decode(stream, chunks, 64);
    ok(outcome.ok, name + ": " + outcome.error);
    deepEqual(outcome.seen, [{ type: "skipped", bytes: 300, qos: 1, packetId: 0x1234, topic: "big/t" }, { type: "PINGRESP" }], name);
    equal(outcome.largest, 2, name + ": nothing over the maximum was delivered as a packet");
  }
  // A topic longer than the kept bytes: skipped with no topic at QoS 0, refused at QoS 1 (its packet id cannot be read).
  const longTopic = "t/".repeat(40) + "x";
  const q0 = new Uint8Array(packetSize(2 + longTopic.length + 10));
  writePublish(q0, 0, longTopic, longTopic.length, new Uint8Array(10), 10, 0, false, 0);
  deepEqual(decode(q0, whole, 64).seen, [{ type: "skipped", bytes: q0.length, qos: 0, packetId: 0, topic: "" }]);
  const q1 = new Uint8Array(packetSize(2 + longTopic.length + 2 + 10));
  writePublish(q1, 0, longTopic, longTopic.length, new Uint8Array(10), 10, 1, false, 7);
  ok(decode(q1, whole, 64).error.indexOf("too long to read its packet id") >= 0);
});

test("packet: decoder: PUBLISH of every remaining-length boundary up to 2097152 round-trips through the encoder", () => {
  const max = packetSize(2097152);
  const sink = new Collector();
  const decoder = new PacketDecoder(max, sink);
  for (const remaining of [127, 128, 16383, 16384, 2097151, 2097152]) {
    // Topic "b/c" at QoS 1: remaining = 2 + 3 + 2 + payload.
    const payload = new Uint8Array(remaining - 7);
    payload[0] = 0x11;
    payload[payload.length - 1] = 0x99;
    const size = packetSize(remaining);
    const target = new Uint8Array(size);
    equal(writePublish(target, 0, "b/c", 3, payload, payload.length, 1, true, remaining & 0xffff || 1), size);
    // In two pieces that split the length field itself.
    ok(decoder.feed(target, 0, 2), "first two bytes of " + remaining);
    ok(decoder.feed(target, 2, size - 2), "rest of " + remaining);
    const seen = sink.seen.pop() as Seen;
    equal(seen.topic, "b/c");
    equal(seen.qos, 1);
    equal(seen.retain, true);
    equal(seen.packetId, remaining & 0xffff || 1);
    const received = seen.payload as Uint8Array;
    equal(received.length, payload.length, "payload length for remaining " + remaining);
    equal(received[0], 0x11);
    equal(received[received.length - 1], 0x99);
    equal(decoder.remaining, remaining);
  }
  equal(sink.largest, max, "the largest packet is exactly the maximum");
  // A SUBACK one byte more than the maximum is refused from the header.
  ok(!decoder.feed(hex("90 81 80 80 01"), 0, 5) && decoder.error.indexOf("exceeds the maximum of " + max) >= 0, decoder.error);
});

test("packet: decoder: reset() in the middle of a packet forgets it", () => {
  const sink = new Collector();
  const decoder = new PacketDecoder(1024, sink);
  const cuts: [string, string][] = [
    ["after the type byte", "32"],
    ["inside the length", "32 88"],
    ["inside the body", "32 08 00 01 74 12"],
    ["one byte short", "32 08 00 01 74 12 34 01 02"],
  ];
  for (const [where, partial] of cuts) {
    const bytes = hex(partial);
    ok(decoder.feed(bytes, 0, bytes.length), where + ": partial packet accepted");
    decoder.reset();
    ok(decoder.feed(hex("d0 00"), 0, 2), where + ": next packet after reset()");
    deepEqual(sink.seen.pop(), { type: "PINGRESP" }, where);
    equal(sink.seen.length, 0, where + ": the partial packet never surfaces");
  }
});

test("packet: decoder: a sink that calls reset() stops the rest of the chunk being read", () => {
  let resets = 0;
  const seen: string[] = [];
  const decoder: PacketDecoder = new PacketDecoder(64, {
    onPacket(d: PacketDecoder): void {
      seen.push(snapshot(d).type as string);
      if (d.type === 2 && resets++ === 0) d.reset(); // the first CONNACK "closes the connection"
    },
    onOversizedPublish(): void {
      seen.push("skipped");
    },
  });
  const stream = hex("d0 00 20 02 00 00 40 02 00 01 ff ff");
  equal(decoder.feed(stream, 0, stream.length), true, "no error: the rest of the chunk belongs to the old connection");
  deepEqual(seen, ["PINGRESP", "CONNACK"]);
  equal(decoder.error, "");
  ok(decoder.feed(hex("20 02 00 00"), 0, 4), "the new connection starts on a packet boundary");
  deepEqual(seen, ["PINGRESP", "CONNACK", "CONNACK"]);
});

test("packet: decoder: property: PUBLISH encoded by writePublish decodes to the same fields", () => {
  const level = fc.constantFrom("a", "b", "", "sensor", "\u00e9", "\u20ac", "\ud83d\ude00", "$SYS", "x y");
  const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((levels) => levels.join("/")).filter((name) => name.length > 0);
  holds(
    fc.property(
      topic,
      fc.uint8Array({ maxLength: 300 }),
      fc.integer({ min: 0, max: 1 }),
      fc.boolean(),
      fc.boolean(),
      fc.integer({ min: 1, max: 65535 }),
      fc.integer({ min: 1, max: 50 }),
      (name, payload, qos, retain, dup, packetId, chunk) => {
        const topicBytes = utf8Length(name);
        const size = packetSize(publishRemaining(topicBytes, payload.length, qos));
        const target = new Uint8Array(size);
        if (writePublish(target, 0, name, topicBytes, payload, payload.length, qos, retain, packetId) !== size) return false;
        if (dup && qos === 1) markDuplicate(target, 0);
        const outcome = decode(target, () => chunk, 512);
        deepEqual(outcome.seen, [{ type: "PUBLISH", topic: name, qos, retain, dup: dup && qos === 1, packetId: qos === 1 ? packetId : 0, payload }]);
        return outcome.ok;
      },
    ),
    48,
    300,
  );
});

/** Checks the invariants of every packet a decoder delivers. */
class Checker implements PacketSink {
  count = 0;
  problem = "";
  constructor(private readonly max: number) {}
  onPacket(d: PacketDecoder): void {
    this.count++;
    const size = packetSize(d.remaining);
    if (size > this.max) this.problem = "delivered " + size + " bytes over the maximum " + this.max;
    else if ([2, 3, 4, 9, 11, 13].indexOf(d.type) < 0) this.problem = "delivered packet type " + d.type;
    else if (d.type === 3) {
      if (d.qos > 1) this.problem = "delivered QoS " + d.qos;
      else if (!(d.topicStart === 2 && d.topicEnd > 2 && d.topicEnd <= d.payloadStart && d.payloadStart <= d.payloadEnd && d.payloadEnd === d.remaining)) this.problem = "PUBLISH bounds";
      else if (checkUtf8(d.body, d.topicStart, d.topicEnd) < 1) this.problem = "PUBLISH topic not UTF-8";
      else if (d.qos === 1 && d.packetId === 0) this.problem = "PUBLISH packet id 0";
    } else if (d.type === 2 && (d.returnCode > 5 || (d.returnCode !== 0 && d.sessionPresent))) this.problem = "bad CONNACK delivered";
    else if (d.type === 9) {
      for (let i = 2; i < d.remaining; i++) if (d.body[i] > 2 && d.body[i] !== 0x80) this.problem = "bad SUBACK code delivered";
    }
  }
  onOversizedPublish(d: PacketDecoder): void {
    this.count++;
    if (d.skippedBytes <= this.max) this.problem = "skipped a PUBLISH of " + d.skippedBytes + " bytes, within the maximum " + this.max;
    else if (d.qos > 1 || (d.qos === 1 && d.packetId === 0)) this.problem = "skipped PUBLISH with QoS " + d.qos + " and packet id " + d.packetId;
  }
}

function feedRandomly(bytes: Uint8Array, sizes: number[], max: number): string {
  const checker = new Checker(max);
  const decoder = new PacketDecoder(max, checker);
  let failed = false;
  let offset = 0;
  for (let index = 0; offset < bytes.length; index++) {
    const size = Math.min(sizes[index % sizes.length], bytes.length - offset);
    let result: unknown;
    try {
      result = decoder.feed(bytes, offset, size);
    } catch (error) {
      return "feed() threw " + String(error);
    }
    offset += size;
    if (typeof result !== "boolean") return "feed() returned " + String(result);
    if (failed && result) return "feed() accepted input after an error";
    if (!result) {
      failed = true;
      if (decoder.error === "") return "feed() returned false without an error";
    }
    if (checker.problem !== "") return checker.problem;
  }
  return "";
}

test("packet: decoder: property: random bytes never throw, never deliver an invalid or oversize packet", () => {
  holds(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 200 }),
      fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 8 }),
      fc.constantFrom(2, 16, 64, 300),
      (bytes, sizes, max) => {
        equal(feedRandomly(bytes, sizes, max), "");
        return true;
      },
    ),
    49,
    400,
  );
});

test("packet: decoder: property: valid streams with random byte corruptions never throw or deliver an invalid packet", () => {
  holds(
    fc.property(
      fc.array(fc.integer({ min: 0, max: VALID.length - 1 }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 8 }),
      fc.constantFrom(16, 64, 1024),
      (picks, corruptions, sizes, max) => {
        const stream = concat(picks.map((pick) => VALID[pick][1]));
        for (const [at, value] of corruptions) stream[at % stream.length] = value;
        equal(feedRandomly(stream, sizes, max), "");
        return true;
      },
    ),
    50,
    400,
  );
});
