// Node only: cross-checks IoTLink's codec (modules/packet.ts) against an independent MQTT 3.1.1
// implementation, npm `mqtt-packet`.
//   - Every packet a client sends, as our encoders write it, is parsed by mqtt-packet's parser with
//     the expected fields, and is byte-for-byte what mqtt-packet's own generator writes.
//   - Every packet a broker sends, as mqtt-packet generates it, is decoded by our PacketDecoder
//     with the right fields, fed whole, byte by byte and in random chunks, including payloads at
//     every remaining-length boundary up to 2097152 bytes.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as fc from "fast-check";
import * as mqtt from "mqtt-packet";
import {
  type ConnectFields,
  connectRemaining,
  markDuplicate,
  PacketDecoder,
  packetSize,
  payloadLength,
  publishRemaining,
  subscribeRemaining,
  writeConnect,
  writeDisconnect,
  writeFilter,
  writePingreq,
  writePuback,
  writePublish,
  writeSubscribeHeader,
} from "../../modules/packet";
import { utf8Length } from "../../modules/topic";

// ---------------------------------------------------------------------------------------------
// Helpers

/** Parses `bytes` with mqtt-packet (MQTT 3.1.1), optionally in chunks; every byte must be consumed. */
function parseAll(bytes: Uint8Array, chunk = bytes.length || 1): mqtt.Packet[] {
  const parser = mqtt.parser({ protocolVersion: 4 });
  const packets: mqtt.Packet[] = [];
  const errors: Error[] = [];
  parser.on("packet", (packet: mqtt.Packet) => packets.push(packet));
  parser.on("error", (error: Error) => errors.push(error));
  let left = 0;
  for (let at = 0; at < bytes.length; at += chunk) left = parser.parse(Buffer.from(bytes.subarray(at, Math.min(at + chunk, bytes.length))));
  assert.deepEqual(errors.map((error) => error.message), [], "mqtt-packet reported no error");
  assert.equal(left, 0, "mqtt-packet consumed every byte");
  return packets;
}

function parseOne(bytes: Uint8Array): mqtt.Packet {
  const packets = parseAll(bytes);
  assert.equal(packets.length, 1, "exactly one packet");
  return packets[0];
}

/** mqtt-packet's generator (it needs Buffer payloads: a plain Uint8Array is converted). */
function generate(packet: Record<string, unknown>): Uint8Array {
  const payload = packet.payload;
  const input = payload instanceof Uint8Array && !Buffer.isBuffer(payload) ? { ...packet, payload: Buffer.from(payload) } : packet;
  return new Uint8Array(mqtt.generate(input as unknown as mqtt.Packet, { protocolVersion: 4 }));
}

function encodeConnect(fields: ConnectFields): Uint8Array {
  const size = packetSize(connectRemaining(fields));
  const target = new Uint8Array(size);
  assert.equal(writeConnect(target, 0, fields), size);
  return target;
}

function encodePublish(topic: string, payload: Uint8Array | string, qos: number, retain: boolean, packetId: number, dup = false): Uint8Array {
  const topicBytes = utf8Length(topic);
  const payloadBytes = payloadLength(payload);
  const size = packetSize(publishRemaining(topicBytes, payloadBytes, qos));
  const target = new Uint8Array(size);
  assert.equal(writePublish(target, 0, topic, topicBytes, payload, payloadBytes, qos, retain, packetId), size);
  if (dup) markDuplicate(target, 0);
  return target;
}

function encodeSubscription(packetId: number, filters: string[], qos?: number[]): Uint8Array {
  let filterBytes = 0;
  for (const filter of filters) filterBytes += utf8Length(filter);
  const remaining = subscribeRemaining(filters.length, filterBytes, qos !== undefined);
  const size = packetSize(remaining);
  const target = new Uint8Array(size);
  let offset = writeSubscribeHeader(target, 0, qos !== undefined, remaining, packetId);
  for (let i = 0; i < filters.length; i++) offset = writeFilter(target, offset, filters[i], utf8Length(filters[i]), qos !== undefined ? qos[i] : -1);
  assert.equal(offset, size);
  return target;
}

function fixed(size: number, write: (target: Uint8Array) => number): Uint8Array {
  const target = new Uint8Array(size);
  assert.equal(write(target), size);
  return target;
}

/** A payload of `size` bytes with a recognisable pattern. */
function pattern(size: number, salt = 0): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 13 + salt + (i >> 8)) & 0xff;
  return bytes;
}

/** The remaining length of an encoded packet, read off its fixed header. */
function remainingOf(bytes: Uint8Array): number {
  let value = 0;
  let shift = 0;
  let at = 1;
  for (;;) {
    const digit = bytes[at++];
    value += (digit & 0x7f) * 2 ** shift;
    shift += 7;
    if ((digit & 0x80) === 0) return value;
  }
}

type Decoded = Record<string, unknown>;

/** Decodes with our PacketDecoder, feeding chunks of the sizes `chunks` yields (cycled). */
function ours(bytes: Uint8Array, maxPacketBytes: number, chunks: number[] = [bytes.length || 1]): { packets: Decoded[]; ok: boolean; error: string } {
  const packets: Decoded[] = [];
  const decoder = new PacketDecoder(maxPacketBytes, {
    onOversizedPublish(d: PacketDecoder): void {
      packets.push({ type: "skipped", bytes: d.skippedBytes, topic: d.skippedTopic() });
    },
    onPacket(d: PacketDecoder): void {
      const base: Decoded = { type: d.type, remaining: d.remaining };
      switch (d.type) {
        case 2:
          packets.push({ ...base, sessionPresent: d.sessionPresent, returnCode: d.returnCode });
          break;
        case 3:
          packets.push({ ...base, topic: d.topic(), qos: d.qos, retain: d.retain, dup: d.dup, packetId: d.packetId, payload: d.body.slice(d.payloadStart, d.payloadEnd) });
          break;
        case 9:
          packets.push({ ...base, packetId: d.packetId, codes: Array.from(d.body.subarray(2, d.remaining)) });
          break;
        case 4:
        case 11:
          packets.push({ ...base, packetId: d.packetId });
          break;
        default:
          packets.push(base);
      }
    },
  });
  let ok = true;
  let offset = 0;
  for (let index = 0; offset < bytes.length && ok; index++) {
    const size = Math.min(chunks[index % chunks.length], bytes.length - offset);
    ok = decoder.feed(bytes, offset, size);
    offset += size;
  }
  return { packets, ok, error: decoder.error };
}

/** Fixed pseudo-random chunk sizes in [1, limit], so large packets are split in many ways. */
function chunkSizes(count: number, limit: number, seed: number): number[] {
  const sizes: number[] = [];
  let state = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    sizes.push(((state >>> 0) % limit) + 1);
  }
  return sizes;
}

const BOUNDARIES = [0, 1, 127, 128, 16383, 16384, 2097151, 2097152];
// Large enough for a 2097152-byte payload with its topic and packet id (a 4-byte length field).
const LARGEST = packetSize(2097152 + 16);

// ---------------------------------------------------------------------------------------------
// Client to broker: our encoders, mqtt-packet's parser and generator

interface ConnectCase {
  name: string;
  fields: ConnectFields;
}

const CONNECTS: ConnectCase[] = [
  { name: "clean session, no will, no credentials", fields: { clientId: "abc", cleanSession: true, keepAliveSeconds: 60 } },
  { name: "persistent session, keep-alive 0", fields: { clientId: "dev-1", cleanSession: false, keepAliveSeconds: 0 } },
  { name: "empty client id with clean session", fields: { clientId: "", cleanSession: true, keepAliveSeconds: 30 } },
  { name: "keep-alive 65535", fields: { clientId: "k", cleanSession: true, keepAliveSeconds: 65535 } },
  {
    name: "will QoS 1 retained, username, password",
    fields: { clientId: "c1", cleanSession: true, keepAliveSeconds: 300, willTopic: "w/t", willPayload: new Uint8Array([0x62, 0x79, 0x65]), willQos: 1, willRetain: true, username: "u", password: new Uint8Array([0x70, 0x77]) },
  },
  { name: "will QoS 0, empty will payload", fields: { clientId: "x", cleanSession: false, keepAliveSeconds: 10, willTopic: "t" } },
  { name: "will without retain, binary payload", fields: { clientId: "x", cleanSession: true, keepAliveSeconds: 10, willTopic: "status/x", willPayload: new Uint8Array([0, 255, 1]), willQos: 1 } },
  { name: "username only", fields: { clientId: "id", cleanSession: true, keepAliveSeconds: 60, username: "user" } },
  { name: "empty username and password", fields: { clientId: "a", cleanSession: false, keepAliveSeconds: 60, username: "", password: new Uint8Array(0) } },
  {
    name: "UTF-8 client id, username and will topic",
    fields: { clientId: "\u00e9t\u00e9", cleanSession: true, keepAliveSeconds: 5, username: "\u20ac?SDK=IoTLink&Version=0.1.0", password: pattern(8), willTopic: "\ud83d\ude00/last", willPayload: pattern(3) },
  },
  {
    name: "long fields: 2 and 3-byte remaining length",
    fields: { clientId: "c".repeat(200), cleanSession: true, keepAliveSeconds: 60, username: "u".repeat(300), password: pattern(20000), willTopic: "w", willPayload: pattern(1000) },
  },
];

test("oracle: CONNECT: mqtt-packet parses every variant with the expected fields, and generates the same bytes", () => {
  for (const { name, fields } of CONNECTS) {
    const bytes = encodeConnect(fields);
    const packet = parseOne(bytes) as mqtt.IConnectPacket;
    assert.equal(packet.cmd, "connect", name);
    assert.equal(packet.protocolId, "MQTT", name);
    assert.equal(packet.protocolVersion, 4, name);
    assert.equal(packet.clean, fields.cleanSession, name + ": clean session");
    assert.equal(packet.keepalive, fields.keepAliveSeconds, name + ": keep-alive");
    assert.equal(packet.clientId, fields.clientId, name + ": client id");
    assert.equal(packet.length, connectRemaining(fields), name + ": remaining length");
    assert.equal(packet.username, fields.username, name + ": username");
    if (fields.password === undefined) assert.equal(packet.password, undefined, name);
    else assert.deepEqual(new Uint8Array(packet.password as Buffer), fields.password, name + ": password");
    if (fields.willTopic === undefined) {
      assert.equal(packet.will, undefined, name + ": no will");
    } else {
      assert.ok(packet.will, name + ": will");
      assert.equal(packet.will.topic, fields.willTopic, name + ": will topic");
      assert.deepEqual(new Uint8Array(packet.will.payload as Buffer), fields.willPayload ?? new Uint8Array(0), name + ": will payload");
      assert.equal(packet.will.qos, fields.willQos ?? 0, name + ": will QoS");
      assert.equal(packet.will.retain, fields.willRetain === true, name + ": will retain");
    }
    const theirs = generate({
      cmd: "connect",
      protocolId: "MQTT",
      protocolVersion: 4,
      clean: fields.cleanSession,
      clientId: fields.clientId,
      keepalive: fields.keepAliveSeconds,
      username: fields.username,
      password: fields.password === undefined ? undefined : Buffer.from(fields.password),
      will: fields.willTopic === undefined ? undefined : { topic: fields.willTopic, payload: Buffer.from(fields.willPayload ?? new Uint8Array(0)), qos: fields.willQos ?? 0, retain: fields.willRetain === true },
    });
    assert.deepEqual(bytes, theirs, name + ": byte-for-byte what mqtt-packet generates");
  }
});

interface PublishCase {
  name: string;
  topic: string;
  payload: Uint8Array | string;
  qos: number;
  retain: boolean;
  dup: boolean;
  packetId: number;
}

const PUBLISHES: PublishCase[] = [
  { name: "QoS 0", topic: "a/b", payload: "hi", qos: 0, retain: false, dup: false, packetId: 0 },
  { name: "QoS 0 retained", topic: "a/b", payload: pattern(10), qos: 0, retain: true, dup: false, packetId: 0 },
  { name: "QoS 0 empty payload", topic: "t", payload: "", qos: 0, retain: false, dup: false, packetId: 0 },
  { name: "QoS 1", topic: "sensors/1/temp", payload: "21.5", qos: 1, retain: false, dup: false, packetId: 1 },
  { name: "QoS 1 retained", topic: "t", payload: pattern(5), qos: 1, retain: true, dup: false, packetId: 0x1234 },
  { name: "QoS 1 DUP", topic: "t", payload: pattern(5), qos: 1, retain: false, dup: true, packetId: 65535 },
  { name: "QoS 1 DUP retained", topic: "t/\u00e9", payload: "\u20ac\ud83d\ude00", qos: 1, retain: true, dup: true, packetId: 7 },
  { name: "$ topic", topic: "$aws/things/x/shadow/update", payload: "{}", qos: 1, retain: false, dup: false, packetId: 2 },
];

function checkParsedPublish(bytes: Uint8Array, c: PublishCase, name: string): void {
  const packet = parseOne(bytes) as mqtt.IPublishPacket;
  assert.equal(packet.cmd, "publish", name);
  assert.equal(packet.topic, c.topic, name + ": topic");
  assert.equal(packet.qos, c.qos, name + ": QoS");
  assert.equal(packet.retain, c.retain, name + ": retain");
  assert.equal(packet.dup, c.dup, name + ": DUP");
  assert.equal(packet.length, remainingOf(bytes), name + ": remaining length");
  if (c.qos > 0) assert.equal(packet.messageId, c.packetId, name + ": packet id");
  const expected = typeof c.payload === "string" ? new Uint8Array(Buffer.from(c.payload, "utf8")) : c.payload;
  const got = new Uint8Array(packet.payload as Buffer);
  assert.equal(got.length, expected.length, name + ": payload length");
  assert.ok(Buffer.compare(Buffer.from(got), Buffer.from(expected)) === 0, name + ": payload bytes");
}

test("oracle: PUBLISH QoS 0/1, retain, DUP: parsed by mqtt-packet, identical to its generator", () => {
  for (const c of PUBLISHES) {
    const bytes = encodePublish(c.topic, c.payload, c.qos, c.retain, c.packetId, c.dup);
    checkParsedPublish(bytes, c, c.name);
    const theirs = generate({ cmd: "publish", topic: c.topic, payload: typeof c.payload === "string" ? c.payload : Buffer.from(c.payload), qos: c.qos, retain: c.retain, dup: c.dup, messageId: c.qos > 0 ? c.packetId : undefined });
    assert.deepEqual(bytes, theirs, c.name + ": byte-for-byte what mqtt-packet generates");
  }
});

test("oracle: PUBLISH payload sizes and remaining lengths at every boundary, parsed by mqtt-packet", () => {
  const cases: PublishCase[] = [];
  for (const size of BOUNDARIES) cases.push({ name: "payload " + size, topic: "p/s", payload: pattern(size, 1), qos: 1, retain: false, dup: false, packetId: 42 });
  // Remaining length exactly at the boundary: topic "r" at QoS 0 adds 3 bytes.
  for (const remaining of BOUNDARIES) if (remaining >= 3) cases.push({ name: "remaining " + remaining, topic: "r", payload: pattern(remaining - 3, 2), qos: 0, retain: true, dup: false, packetId: 0 });
  for (const c of cases) {
    const bytes = encodePublish(c.topic, c.payload, c.qos, c.retain, c.packetId);
    if (c.name.startsWith("remaining")) assert.equal(remainingOf(bytes), Number(c.name.split(" ")[1]), c.name);
    checkParsedPublish(bytes, c, c.name);
    const theirs = generate({ cmd: "publish", topic: c.topic, payload: Buffer.from(c.payload as Uint8Array), qos: c.qos, retain: c.retain, dup: false, messageId: c.qos > 0 ? c.packetId : undefined });
    assert.ok(Buffer.compare(Buffer.from(bytes), Buffer.from(theirs)) === 0, c.name + ": byte-for-byte what mqtt-packet generates");
  }
});

test("oracle: PUBACK, SUBSCRIBE, UNSUBSCRIBE, PINGREQ, DISCONNECT: parsed by mqtt-packet, identical to its generator", () => {
  const puback = fixed(4, (t) => writePuback(t, 0, 0x0102));
  const parsedPuback = parseOne(puback);
  assert.deepEqual([parsedPuback.cmd, parsedPuback.messageId, parsedPuback.length], ["puback", 0x0102, 2]);
  assert.deepEqual(puback, generate({ cmd: "puback", messageId: 0x0102 }));

  const filters = ["a/+", "#", "sensors/\u00e9/#", "+/+/temp"];
  const qos = [0, 1, 2, 1];
  const subscribe = encodeSubscription(10, filters, qos);
  const parsedSubscribe = parseOne(subscribe) as mqtt.ISubscribePacket;
  assert.equal(parsedSubscribe.cmd, "subscribe");
  assert.equal(subscribe[0], 0x82, "reserved header bits 0010");
  assert.equal(parsedSubscribe.messageId, 10);
  assert.deepEqual(
    parsedSubscribe.subscriptions.map((s) => ({ topic: s.topic, qos: s.qos })),
    filters.map((topic, i) => ({ topic, qos: qos[i] })),
  );
  assert.deepEqual(subscribe, generate({ cmd: "subscribe", messageId: 10, subscriptions: filters.map((topic, i) => ({ topic, qos: qos[i] })) }));

  const one = encodeSubscription(65535, ["x"], [1]);
  assert.deepEqual((parseOne(one) as mqtt.ISubscribePacket).subscriptions.map((s) => s.topic), ["x"]);
  assert.equal((parseOne(one) as mqtt.ISubscribePacket).messageId, 65535);

  const unsubscribe = encodeSubscription(0x0b0c, ["a/+", "#", "\u20ac"]);
  const parsedUnsubscribe = parseOne(unsubscribe) as mqtt.IUnsubscribePacket;
  assert.equal(parsedUnsubscribe.cmd, "unsubscribe");
  assert.equal(parsedUnsubscribe.messageId, 0x0b0c);
  assert.deepEqual(parsedUnsubscribe.unsubscriptions, ["a/+", "#", "\u20ac"]);
  assert.deepEqual(unsubscribe, generate({ cmd: "unsubscribe", messageId: 0x0b0c, unsubscriptions: ["a/+", "#", "\u20ac"] }));

  // Many filters: a 2-byte remaining length.
  const many = Array.from({ length: 40 }, (_, i) => "devices/" + i + "/+");
  const big = encodeSubscription(300, many, many.map((_, i) => i % 2));
  assert.ok(remainingOf(big) > 127);
  assert.deepEqual((parseOne(big) as mqtt.ISubscribePacket).subscriptions.map((s) => s.topic), many);
  assert.deepEqual(big, generate({ cmd: "subscribe", messageId: 300, subscriptions: many.map((topic, i) => ({ topic, qos: i % 2 })) }));

  const pingreq = fixed(2, (t) => writePingreq(t, 0));
  assert.equal(parseOne(pingreq).cmd, "pingreq");
  assert.deepEqual(pingreq, generate({ cmd: "pingreq" }));
  const disconnect = fixed(2, (t) => writeDisconnect(t, 0));
  assert.equal(parseOne(disconnect).cmd, "disconnect");
  assert.deepEqual(disconnect, generate({ cmd: "disconnect" }));
});

test("oracle: a session's worth of client packets back to back, parsed by mqtt-packet in 1-byte and odd chunks", () => {
  const stream = Buffer.concat([
    encodeConnect(CONNECTS[4].fields),
    encodeSubscription(1, ["a/#", "b/+"], [1, 0]),
    encodePublish("a/1", "x", 0, false, 0),
    encodePublish("a/2", pattern(300), 1, true, 2),
    fixed(4, (t) => writePuback(t, 0, 9)),
    fixed(2, (t) => writePingreq(t, 0)),
    encodeSubscription(3, ["b/+"]),
    fixed(2, (t) => writeDisconnect(t, 0)),
  ]);
  for (const chunk of [1, 3, 7, 64, stream.length]) {
    const cmds = parseAll(new Uint8Array(stream), chunk).map((packet) => packet.cmd);
    assert.deepEqual(cmds, ["connect", "subscribe", "publish", "publish", "puback", "pingreq", "unsubscribe", "disconnect"], "chunks of " + chunk);
  }
});

const topicLevel = fc.constantFrom("a", "b", "", "sensor", "\u00e9", "\u20ac", "\ud83d\ude00", "$x", "x y", "0");
const topicName = fc.array(topicLevel, { minLength: 1, maxLength: 5 }).map((levels) => levels.join("/")).filter((name) => name.length > 0);

test("oracle: property: random PUBLISH encodings parse in mqtt-packet and equal its generator", () => {
  fc.assert(
    fc.property(topicName, fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 0, max: 1 }), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 65535 }), (topic, payload, qos, retain, dupWanted, packetId) => {
      const dup = dupWanted && qos === 1;
      const c: PublishCase = { name: "random", topic, payload, qos, retain, dup, packetId };
      const bytes = encodePublish(topic, payload, qos, retain, packetId, dup);
      checkParsedPublish(bytes, c, "random " + topic);
      const theirs = generate({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain, dup, messageId: qos > 0 ? packetId : undefined });
      return Buffer.compare(Buffer.from(bytes), Buffer.from(theirs)) === 0;
    }),
    { seed: 61, numRuns: 300 },
  );
});

test("oracle: property: random CONNECT encodings parse in mqtt-packet and equal its generator", () => {
  const text = fc.array(fc.constantFrom("a", "Z", "0", "-", "\u00e9", "\u20ac", "\ud83d\ude00", "/", " "), { maxLength: 30 }).map((parts) => parts.join(""));
  fc.assert(
    fc.property(
      text,
      fc.boolean(),
      fc.integer({ min: 0, max: 65535 }),
      fc.option(text, { nil: undefined }),
      fc.option(fc.uint8Array({ maxLength: 64 }), { nil: undefined }),
      fc.option(fc.record({ topic: topicName, payload: fc.uint8Array({ maxLength: 64 }), qos: fc.integer({ min: 0, max: 1 }), retain: fc.boolean() }), { nil: undefined }),
      (clientId, cleanSession, keepAliveSeconds, username, passwordWanted, will) => {
        // MQTT 3.1.1: a password only with a username; an empty client id only with a clean session.
        const password = username === undefined ? undefined : passwordWanted;
        const clean = clientId === "" ? true : cleanSession;
        const fields: ConnectFields = { clientId, cleanSession: clean, keepAliveSeconds, username, password };
        if (will) Object.assign(fields, { willTopic: will.topic, willPayload: will.payload, willQos: will.qos, willRetain: will.retain });
        const bytes = encodeConnect(fields);
        const packet = parseOne(bytes) as mqtt.IConnectPacket;
        assert.equal(packet.clientId, clientId);
        assert.equal(packet.clean, clean);
        assert.equal(packet.keepalive, keepAliveSeconds);
        assert.equal(packet.username, username);
        assert.equal(packet.will?.topic, will?.topic);
        const theirs = generate({
          cmd: "connect",
          protocolId: "MQTT",
          protocolVersion: 4,
          clean,
          clientId,
          keepalive: keepAliveSeconds,
          username,
          password: password === undefined ? undefined : Buffer.from(password),
          will: will === undefined ? undefined : { topic: will.topic, payload: Buffer.from(will.payload), qos: will.qos, retain: will.retain },
        });
        return Buffer.compare(Buffer.from(bytes), Buffer.from(theirs)) === 0;
      },
    ),
    { seed: 62, numRuns: 300 },
  );
});

// ---------------------------------------------------------------------------------------------
// Broker to client: mqtt-packet's generator, our decoder

test("oracle: CONNACK with every return code and session present, generated by mqtt-packet, decoded by ours", () => {
  for (let returnCode = 0; returnCode <= 5; returnCode++) {
    const bytes = generate({ cmd: "connack", returnCode, sessionPresent: false });
    for (const chunks of [[4], [1]]) {
      const result = ours(bytes, 64, chunks);
      assert.ok(result.ok, result.error);
      assert.deepEqual(result.packets, [{ type: 2, remaining: 2, sessionPresent: false, returnCode }], "return code " + returnCode);
    }
  }
  const present = ours(generate({ cmd: "connack", returnCode: 0, sessionPresent: true }), 64, [1]);
  assert.deepEqual(present.packets, [{ type: 2, remaining: 2, sessionPresent: true, returnCode: 0 }]);
  // MQTT-3.2.2-4: a refusal must not claim a session; mqtt-packet writes it anyway, we refuse it.
  const refusal = ours(generate({ cmd: "connack", returnCode: 5, sessionPresent: true }), 64);
  assert.equal(refusal.ok, false);
  assert.match(refusal.error, /refusal with session present/);
});

function expectPublish(result: ReturnType<typeof ours>, topic: string, payload: Uint8Array, qos: number, retain: boolean, dup: boolean, packetId: number, what: string): void {
  assert.ok(result.ok, what + ": " + result.error);
  assert.equal(result.packets.length, 1, what);
  const got = result.packets[0];
  assert.equal(got.type, 3, what);
  assert.equal(got.topic, topic, what + ": topic");
  assert.equal(got.qos, qos, what + ": QoS");
  assert.equal(got.retain, retain, what + ": retain");
  assert.equal(got.dup, dup, what + ": DUP");
  assert.equal(got.packetId, qos > 0 ? packetId : 0, what + ": packet id");
  const received = got.payload as Uint8Array;
  assert.equal(received.length, payload.length, what + ": payload length");
  assert.ok(Buffer.compare(Buffer.from(received), Buffer.from(payload)) === 0, what + ": payload bytes");
}

test("oracle: PUBLISH QoS 0/1 with retain and DUP, generated by mqtt-packet, decoded whole and byte by byte", () => {
  const variants: [number, boolean, boolean][] = [[0, false, false], [0, true, false], [1, false, false], [1, true, false], [1, false, true], [1, true, true]];
  for (const [qos, retain, dup] of variants) {
    for (const topic of ["a/b", "\u00e9/\ud83d\ude00", "$SYS/broker/uptime", "/"]) {
      const payload = pattern(50, qos);
      const bytes = generate({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain, dup, messageId: qos > 0 ? 4660 : undefined });
      const what = "QoS " + qos + (retain ? " retain" : "") + (dup ? " dup" : "") + " " + topic;
      expectPublish(ours(bytes, 256), topic, payload, qos, retain, dup, 4660, what + " whole");
      expectPublish(ours(bytes, 256, [1]), topic, payload, qos, retain, dup, 4660, what + " byte by byte");
    }
  }
});

test("oracle: PUBLISH payloads at every remaining-length boundary, generated by mqtt-packet, decoded in many chunkings", () => {
  const cases: { what: string; topic: string; payload: Uint8Array; qos: number }[] = [];
  for (const size of BOUNDARIES) cases.push({ what: "payload " + size, topic: "p/s", payload: pattern(size, 3), qos: 1 });
  // Remaining length exactly at the boundary: topic "r" at QoS 0 adds 3 bytes.
  for (const remaining of BOUNDARIES) if (remaining >= 3) cases.push({ what: "remaining " + remaining, topic: "r", payload: pattern(remaining - 3, 4), qos: 0 });
  for (const c of cases) {
    const bytes = generate({ cmd: "publish", topic: c.topic, payload: Buffer.from(c.payload), qos: c.qos, retain: false, dup: false, messageId: c.qos > 0 ? 77 : undefined });
    if (c.what.startsWith("remaining")) assert.equal(remainingOf(bytes), Number(c.what.split(" ")[1]), c.what);
    expectPublish(ours(bytes, LARGEST), c.topic, c.payload, c.qos, false, false, 77, c.what + ", whole");
    expectPublish(ours(bytes, LARGEST, [2, 1, 3]), c.topic, c.payload, c.qos, false, false, 77, c.what + ", length field split");
    expectPublish(ours(bytes, LARGEST, chunkSizes(500, bytes.length > 20000 ? 9000 : 40, bytes.length)), c.topic, c.payload, c.qos, false, false, 77, c.what + ", random chunks");
    if (bytes.length <= 20000) expectPublish(ours(bytes, LARGEST, [1]), c.topic, c.payload, c.qos, false, false, 77, c.what + ", byte by byte");
  }
});

test("oracle: acknowledgements over the configured maximum are refused from their header alone", () => {
  // max 16386 holds a remaining length of 16383 exactly (1 + 2 + 16383).
  const max = packetSize(16383);
  assert.equal(max, 16386);
  const fits = generate({ cmd: "publish", topic: "r", payload: Buffer.from(pattern(16380)), qos: 0, retain: false, dup: false });
  expectPublish(ours(fits, max), "r", pattern(16380), 0, false, false, 0, "remaining 16383 at max 16386");
  for (const remaining of [16384, 2097151, 2097152]) {
    // A SUBACK that large is refused (a PUBLISH that large is skipped: packet.suite).
    const bytes = generate({ cmd: "suback", messageId: 1, granted: new Array(remaining - 2).fill(0) });
    const headerBytes = 1 + (remaining < 2097152 ? 3 : 4);
    // Only the fixed header is fed: the decoder already knows.
    const result = ours(bytes.subarray(0, headerBytes), max, [1]);
    assert.equal(result.ok, false, "remaining " + remaining);
    assert.match(result.error, new RegExp("packet of " + packetSize(remaining) + " bytes exceeds the maximum of " + max));
    assert.deepEqual(result.packets, []);
    const header = ours(bytes.subarray(0, headerBytes - 1), max, [1]);
    assert.ok(header.ok, "one byte earlier it is still waiting for the length");
  }
});

test("oracle: PUBACK, SUBACK (0, 1, 2, 0x80), UNSUBACK, PINGRESP generated by mqtt-packet, decoded by ours", () => {
  const cases: [Record<string, unknown>, Decoded][] = [
    [{ cmd: "puback", messageId: 1 }, { type: 4, remaining: 2, packetId: 1 }],
    [{ cmd: "puback", messageId: 65535 }, { type: 4, remaining: 2, packetId: 65535 }],
    [{ cmd: "suback", messageId: 7, granted: [0, 1, 2, 128] }, { type: 9, remaining: 6, packetId: 7, codes: [0, 1, 2, 128] }],
    [{ cmd: "suback", messageId: 300, granted: [128] }, { type: 9, remaining: 3, packetId: 300, codes: [128] }],
    [{ cmd: "suback", messageId: 9, granted: Array.from({ length: 200 }, (_, i) => [0, 1, 2, 128][i % 4]) }, { type: 9, remaining: 202, packetId: 9, codes: Array.from({ length: 200 }, (_, i) => [0, 1, 2, 128][i % 4]) }],
    [{ cmd: "unsuback", messageId: 0xabcd }, { type: 11, remaining: 2, packetId: 0xabcd }],
    [{ cmd: "pingresp" }, { type: 13, remaining: 0 }],
  ];
  for (const [packet, expected] of cases) {
    const bytes = generate(packet);
    for (const chunks of [[bytes.length], [1], [2, 1]]) {
      const result = ours(bytes, 1024, chunks);
      assert.ok(result.ok, String(packet.cmd) + ": " + result.error);
      assert.deepEqual(result.packets, [expected], String(packet.cmd) + " in chunks " + chunks.join(","));
    }
  }
});

test("oracle: property: random broker streams generated by mqtt-packet decode packet for packet in random chunks", () => {
  const brokerPacket = fc.oneof(
    fc.record({ cmd: fc.constant("connack"), returnCode: fc.integer({ min: 0, max: 5 }), sessionPresent: fc.boolean() }).map((p) => ({ ...p, sessionPresent: p.returnCode === 0 && p.sessionPresent })),
    fc
      .record({ cmd: fc.constant("publish"), topic: topicName, payload: fc.uint8Array({ maxLength: 300 }), qos: fc.integer({ min: 0, max: 1 }), retain: fc.boolean(), dup: fc.boolean(), messageId: fc.integer({ min: 1, max: 65535 }) })
      .map((p) => ({ ...p, dup: p.qos === 1 && p.dup, messageId: p.qos === 1 ? p.messageId : undefined })),
    fc.record({ cmd: fc.constant("puback"), messageId: fc.integer({ min: 1, max: 65535 }) }),
    fc.record({ cmd: fc.constant("suback"), messageId: fc.integer({ min: 1, max: 65535 }), granted: fc.array(fc.constantFrom(0, 1, 2, 128), { minLength: 1, maxLength: 10 }) }),
    fc.record({ cmd: fc.constant("unsuback"), messageId: fc.integer({ min: 1, max: 65535 }) }),
    fc.constant({ cmd: "pingresp" }),
  );
  fc.assert(
    fc.property(fc.array(brokerPacket, { minLength: 1, maxLength: 10 }), fc.array(fc.integer({ min: 1, max: 50 }), { minLength: 1, maxLength: 10 }), (packets, chunks) => {
      const stream = Buffer.concat(packets.map((packet) => Buffer.from(generate(packet as Record<string, unknown>))));
      const result = ours(new Uint8Array(stream), 1024, chunks);
      assert.ok(result.ok, result.error);
      assert.equal(result.packets.length, packets.length);
      packets.forEach((packet, i) => {
        const got = result.packets[i];
        const p = packet as Record<string, unknown>;
        switch (p.cmd) {
          case "connack":
            assert.deepEqual([got.type, got.returnCode, got.sessionPresent], [2, p.returnCode, p.sessionPresent]);
            break;
          case "publish":
            assert.deepEqual(
              [got.type, got.topic, got.qos, got.retain, got.dup, got.packetId, Buffer.from(got.payload as Uint8Array).toString("hex")],
              [3, p.topic, p.qos, p.retain, p.dup, p.messageId ?? 0, Buffer.from(p.payload as Uint8Array).toString("hex")],
            );
            break;
          case "suback":
            assert.deepEqual([got.type, got.packetId, got.codes], [9, p.messageId, p.granted]);
            break;
          case "puback":
          case "unsuback":
            assert.deepEqual([got.type, got.packetId], [p.cmd === "puback" ? 4 : 11, p.messageId]);
            break;
          default:
            assert.equal(got.type, 13);
        }
      });
      return true;
    }),
    { seed: 63, numRuns: 200 },
  );
});

test("oracle: our encoder's PUBLISH, decoded by our decoder, agrees with mqtt-packet's reading of the same bytes", () => {
  fc.assert(
    fc.property(topicName, fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 0, max: 1 }), fc.boolean(), fc.integer({ min: 1, max: 65535 }), (topic, payload, qos, retain, packetId) => {
      const bytes = encodePublish(topic, payload, qos, retain, packetId);
      const theirs = parseOne(bytes) as mqtt.IPublishPacket;
      const mine = ours(bytes, 512, [3]);
      assert.ok(mine.ok, mine.error);
      assert.equal(mine.packets[0].topic, theirs.topic);
      assert.equal(mine.packets[0].qos, theirs.qos);
      assert.equal(mine.packets[0].retain, theirs.retain);
      assert.equal(mine.packets[0].packetId, theirs.messageId ?? 0);
      assert.equal(mine.packets[0].remaining, theirs.length);
      return Buffer.compare(Buffer.from(mine.packets[0].payload as Uint8Array), theirs.payload as Buffer) === 0;
    }),
    { seed: 64, numRuns: 200 },
  );
});
