// Portable tests for modules/websocket.ts and modules/websocket-frames.ts: the Upgrade handshake and
// every refusal, masking and length encodings both ways, frame streams split at every byte,
// fragments with control frames between them, close both ways, each protocol error, at most one
// close report per open(), abort silence, reopening, a seeded fuzz, and a real MqttClient over
// WebSocket over a scripted broker. A scripted inner Transport stands in for TLS; SHA-1 is written
// here (checked against RFC 6455's example). Runs on Node and XS.
import { MqttClient } from "../../modules/client";
import { AckStatus, CONTROL_PACKET_BYTES, ErrorCode, type Transport, type TransportSink } from "../../modules/types";
import { MAX_CONTROL_PAYLOAD, Opcode, writeMaskedFrame } from "../../modules/websocket-frames";
import { printable, WebSocketTransport, type WebSocketSettings } from "../../modules/websocket";
import * as websocket from "../../modules/websocket";
import * as websocketFrames from "../../modules/websocket-frames";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { publishPacket, puback, suback } from "../support/broker-codec";
import { ScriptedBroker } from "../support/scripted-broker";
import { VirtualClock } from "../support/virtual-clock";

// ---------------------------------------------------------------- SHA-1, base64, text

function rotate(value: number, bits: number): number {
  return (value << bits) | (value >>> (32 - bits));
}

/** FIPS 180-4 SHA-1, in 32-bit integer arithmetic. */
function sha1(bytes: Uint8Array): Uint8Array {
  const length = bytes.length;
  const blocks = ((length + 8) >> 6) + 1;
  const message = new Int32Array(blocks * 16);
  for (let i = 0; i < length; i++) message[i >> 2] |= bytes[i] << (24 - (i & 3) * 8);
  message[length >> 2] |= 0x80 << (24 - (length & 3) * 8);
  message[blocks * 16 - 1] = length * 8;
  const h = [0x67452301, 0xefcdab89 | 0, 0x98badcfe | 0, 0x10325476, 0xc3d2e1f0 | 0];
  const w = new Int32Array(80);
  for (let block = 0; block < blocks * 16; block += 16) {
    for (let t = 0; t < 16; t++) w[t] = message[block + t];
    for (let t = 16; t < 80; t++) w[t] = rotate(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    let [a, b, c, d, e] = h;
    for (let t = 0; t < 80; t++) {
      const f = t < 20 ? (b & c) | (~b & d) : t < 40 ? b ^ c ^ d : t < 60 ? (b & c) | (b & d) | (c & d) : b ^ c ^ d;
      const k = t < 20 ? 0x5a827999 : t < 40 ? 0x6ed9eba1 : t < 60 ? 0x8f1bbcdc | 0 : 0xca62c1d6 | 0;
      const next = (rotate(a, 5) + f + e + k + w[t]) | 0;
      e = d;
      d = c;
      c = rotate(b, 30);
      b = a;
      a = next;
    }
    h[0] = (h[0] + a) | 0;
    h[1] = (h[1] + b) | 0;
    h[2] = (h[2] + c) | 0;
    h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0;
  }
  const out = new Uint8Array(20);
  for (let i = 0; i < 20; i++) out[i] = (h[i >> 2] >>> (24 - (i & 3) * 8)) & 0xff;
  return out;
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

function base64(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + (i + 1 < bytes.length ? BASE64[(n >> 6) & 63] : "=") + (i + 2 < bytes.length ? BASE64[n & 63] : "=");
  }
  return out;
}

function ascii(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function latin1(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]);
  return out;
}

function acceptFor(key: string): string {
  return base64(sha1(ascii(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")));
}

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

function sequence(length: number, start = 0): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (start + i * 7) & 0xff;
  return bytes;
}

// ---------------------------------------------------------------- frames as the server sends them

interface ServerFrameOptions {
  fin?: boolean;
  /** RSV1-3 bits, as 0x70 & value. */
  rsv?: number;
  /** Mask it with this key (a server must not). */
  mask?: number[];
  /** Force the length form: 0 (7-bit), 2 (16-bit) or 8 (64-bit). */
  lengthBytes?: 0 | 2 | 8;
}

function serverFrame(opcode: number, payload: Uint8Array | number[], options: ServerFrameOptions = {}): Uint8Array {
  const body = payload instanceof Uint8Array ? payload : new Uint8Array(payload);
  const length = body.length;
  const form = options.lengthBytes ?? (length <= 125 ? 0 : length <= 0xffff ? 2 : 8);
  const header: number[] = [((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) & 0x70) | opcode];
  const maskBit = options.mask ? 0x80 : 0;
  if (form === 0) header.push(maskBit | length);
  else if (form === 2) header.push(maskBit | 126, length >> 8, length & 0xff);
  else header.push(maskBit | 127, 0, 0, 0, 0, (length >>> 24) & 0xff, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff);
  const masked = new Uint8Array(body);
  if (options.mask) {
    header.push(...options.mask);
    for (let i = 0; i < length; i++) masked[i] ^= options.mask[i & 3];
  }
  return concat([new Uint8Array(header), masked]);
}

const binary = (payload: Uint8Array | number[], options?: ServerFrameOptions): Uint8Array => serverFrame(Opcode.Binary, payload, options);

function closeFrame(code: number, reason = ""): Uint8Array {
  return serverFrame(Opcode.Close, concat([new Uint8Array([code >> 8, code & 0xff]), ascii(reason)]));
}

interface ClientFrame {
  opcode: number;
  fin: boolean;
  /** The header's length in bytes, without the key. */
  lengthForm: number;
  key: number[];
  payload: Uint8Array;
}

/** Splits bytes the client wrote into frames, checking each is masked, and unmasks them. */
function clientFrames(bytes: Uint8Array): ClientFrame[] {
  const frames: ClientFrame[] = [];
  let at = 0;
  while (at < bytes.length) {
    const b0 = bytes[at];
    const b1 = bytes[at + 1];
    if ((b1 & 0x80) === 0) throw new Error("client frame at " + at + " is not masked");
    if ((b0 & 0x70) !== 0) throw new Error("client frame with reserved bits");
    let length = b1 & 0x7f;
    let header = 2;
    if (length === 126) {
      length = (bytes[at + 2] << 8) | bytes[at + 3];
      header = 4;
    } else if (length === 127) {
      length = 0;
      for (let i = 2; i < 10; i++) length = length * 256 + bytes[at + i];
      header = 10;
    }
    const key = [bytes[at + header], bytes[at + header + 1], bytes[at + header + 2], bytes[at + header + 3]];
    const start = at + header + 4;
    if (start + length > bytes.length) throw new Error("truncated client frame");
    const payload = new Uint8Array(length);
    for (let i = 0; i < length; i++) payload[i] = bytes[start + i] ^ key[i & 3];
    frames.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, lengthForm: header, key, payload });
    at = start + length;
  }
  return frames;
}

// ---------------------------------------------------------------- the scripted inner transport and the outer sink

/** The inner Transport (TLS, say), driven by the test: it records writes, and the test feeds bytes and closes. */
class ScriptedInner implements Transport {
  sink: TransportSink | undefined;
  opens = 0;
  ends = 0;
  aborts = 0;
  /** Every write taken, in order, since the last open(). */
  writes: Uint8Array[] = [];
  /** While true, write() refuses (the transport is full). */
  full = false;
  refused = 0;

  open(sink: TransportSink): void {
    this.sink = sink;
    this.opens++;
    this.writes = [];
    this.full = false;
  }

  write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.full) {
      this.refused++;
      return false;
    }
    this.writes.push(bytes.slice(offset, offset + length));
    return true;
  }

  end(): void {
    this.ends++;
  }

  abort(): void {
    this.aborts++;
  }

  connect(): void {
    (this.sink as TransportSink).onTransportConnected();
  }

  /** Delivers `bytes` in chunks of `chunk` bytes, each inside a larger buffer at an offset (as a host's read buffer would be). */
  feed(bytes: Uint8Array, chunk = bytes.length): void {
    for (let at = 0; at < bytes.length; at += chunk) {
      const count = Math.min(chunk, bytes.length - at);
      const buffer = new Uint8Array(count + 6).fill(0xee);
      buffer.set(bytes.subarray(at, at + count), 3);
      (this.sink as TransportSink).onTransportData(buffer, 3, count);
    }
  }

  close(reason = "closed by the broker"): void {
    (this.sink as TransportSink).onTransportClosed(reason);
  }

  writable(): void {
    (this.sink as TransportSink).onTransportWritable();
  }

  written(): Uint8Array {
    return concat(this.writes);
  }

  /** The frames written since open() or the last call, unmasked; the record is cleared. */
  takeFrames(): ClientFrame[] {
    const frames = clientFrames(this.written());
    this.writes = [];
    return frames;
  }
}

/** The outer sink (the MQTT session's place), recording every call. */
class RecordingSink implements TransportSink {
  connected = 0;
  data: number[] = [];
  closes: string[] = [];
  writables = 0;
  calls = 0;
  onConnected: (() => void) | undefined;
  onData: ((bytes: Uint8Array, offset: number, length: number) => void) | undefined;

  onTransportConnected(): void {
    this.connected++;
    this.calls++;
    if (this.onConnected) this.onConnected();
  }

  onTransportData(bytes: Uint8Array, offset: number, length: number): void {
    this.calls++;
    for (let i = 0; i < length; i++) this.data.push(bytes[offset + i]);
    if (this.onData) this.onData(bytes, offset, length);
  }

  onTransportClosed(reason: string): void {
    this.calls++;
    this.closes.push(reason);
  }

  onTransportWritable(): void {
    this.calls++;
    this.writables++;
  }
}

/** Random bytes 1, 2, 3, ... (mod 256) from `start`, so keys are predictable. */
function counterRandom(start = 1): { randomBytes: (bytes: Uint8Array) => void; draws: number[] } {
  let next = start;
  const draws: number[] = [];
  return {
    draws,
    randomBytes(bytes: Uint8Array): void {
      draws.push(bytes.length);
      for (let i = 0; i < bytes.length; i++) bytes[i] = next++ & 0xff;
    },
  };
}

const HOST = "example-ats.iot.eu-west-1.amazonaws.com";
const TARGET = "/mqtt?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=abc";

function settingsWith(overrides: Partial<WebSocketSettings> = {}, random = counterRandom()): WebSocketSettings {
  return { host: HOST, requestTarget: () => TARGET, maxPacketBytes: 1024, randomBytes: random.randomBytes, sha1, ...overrides };
}

interface Fixture {
  ws: WebSocketTransport;
  inner: ScriptedInner;
  sink: RecordingSink;
  random: ReturnType<typeof counterRandom>;
}

function fixture(overrides: Partial<WebSocketSettings> = {}): Fixture {
  const random = counterRandom();
  const inner = new ScriptedInner();
  const ws = new WebSocketTransport(inner, settingsWith(overrides, random));
  return { ws, inner, sink: new RecordingSink(), random };
}

/** The Sec-WebSocket-Key of the request written so far. */
function keyOf(inner: ScriptedInner): string {
  const match = /Sec-WebSocket-Key: ([^\r]*)\r\n/.exec(latin1(inner.written()));
  if (!match) throw new Error("no Sec-WebSocket-Key in " + JSON.stringify(latin1(inner.written())));
  return match[1];
}

/** A 101 answer for `key`; `protocol` null leaves Sec-WebSocket-Protocol out. */
function answer(key: string, extra = "", accept = acceptFor(key), protocol: string | null = "mqtt"): string {
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n" +
    (protocol !== null ? "Sec-WebSocket-Protocol: " + protocol + "\r\n" : "") + extra + "\r\n";
}

/** Opens, connects the inner transport and answers 101: the WebSocket is up, the handshake's writes cleared. */
function opened(overrides: Partial<WebSocketSettings> = {}): Fixture {
  const f = fixture(overrides);
  f.ws.open(f.sink);
  f.inner.connect();
  f.inner.feed(ascii(answer(keyOf(f.inner))));
  equal(f.sink.connected, 1, "connected");
  f.inner.writes = [];
  return f;
}

/** Opens and answers with `head` (a function of the key); returns the fixture. */
function answered(head: (key: string) => string, chunk?: number, overrides: Partial<WebSocketSettings> = {}): Fixture {
  const f = fixture(overrides);
  f.ws.open(f.sink);
  f.inner.connect();
  f.inner.feed(ascii(head(keyOf(f.inner))), chunk);
  return f;
}

// ---------------------------------------------------------------- the helpers themselves

test("websocket: the suite's SHA-1 and Accept match RFC 6455's example and FIPS vectors", () => {
  equal(acceptFor("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  equal(base64(sha1(ascii("abc"))), base64(new Uint8Array([0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81, 0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50, 0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d])));
  equal(Array.from(sha1(new Uint8Array(0)).subarray(0, 4)).join(","), "218,57,163,238");
});

// ---------------------------------------------------------------- settings and calls

test("websocket: every setting is checked at construction, with a one-line message", () => {
  const inner = new ScriptedInner();
  throws(() => new WebSocketTransport({} as Transport, settingsWith()), "inner transport must be a Transport");
  throws(() => new WebSocketTransport(inner, null as unknown as WebSocketSettings), "settings must be an object");
  throws(() => new WebSocketTransport(inner, settingsWith({ host: "wss://example.com/mqtt" })), "websocket host must be a bare host name");
  throws(() => new WebSocketTransport(inner, settingsWith({ host: "" })), "websocket host must be a non-empty string");
  throws(() => new WebSocketTransport(inner, settingsWith({ requestTarget: "/mqtt" as unknown as () => string })), "requestTarget must be a function");
  throws(() => new WebSocketTransport(inner, settingsWith({ protocol: "mqtt v3" })), "protocol must be a token");
  throws(() => new WebSocketTransport(inner, settingsWith({ maxPacketBytes: 15 })), "websocket maxPacketBytes must be a whole number from 16 to 268435460, got 15");
  throws(() => new WebSocketTransport(inner, settingsWith({ maxPacketBytes: 100.5 })), "maxPacketBytes must be a whole number");
  throws(() => new WebSocketTransport(inner, settingsWith({ randomBytes: undefined as unknown as () => void })), "randomBytes must be a function");
  throws(() => new WebSocketTransport(inner, settingsWith({ sha1: 1 as unknown as () => Uint8Array })), "sha1 must be a function");
  throws(() => new WebSocketTransport(inner, { ...settingsWith(), protocols: "mqtt" } as unknown as WebSocketSettings), "unknown websocket setting protocols");
  const ws = new WebSocketTransport(inner, settingsWith());
  throws(() => ws.open({} as TransportSink), "open() needs a TransportSink");
  throws(() => ws.write(new Uint8Array(4), 0, 5), "websocket write() needs");
  throws(() => ws.write(new Uint8Array(2000), 0, 1025), "at most maxPacketBytes (1024)");
  throws(() => ws.write(new Uint8Array(4), -1, 2), "websocket write() needs");
  throws(() => ws.write(new Uint8Array(4), 0.5, 2), "websocket write() needs");
  throws(() => ws.write([1, 2] as unknown as Uint8Array, 0, 2), "websocket write() needs");
  equal(ws.write(new Uint8Array(4), 0, 4), false, "not open: nothing taken");
});

test("websocket: the request head, exactly, and the key from the injected random bytes", () => {
  const f = fixture();
  f.ws.open(f.sink);
  equal(f.inner.opens, 1);
  equal(f.inner.writes.length, 0, "nothing before the inner link is up");
  f.inner.connect();
  const lines = latin1(f.inner.written()).split("\r\n");
  deepEqual(lines, [
    "GET " + TARGET + " HTTP/1.1",
    "Host: " + HOST,
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: " + base64(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16])),
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Protocol: mqtt",
    "",
    "",
  ]);
  equal(keyOf(f.inner), "AQIDBAUGBwgJCgsMDQ4PEA==");
  deepEqual(f.random.draws, [16], "the key: one draw of 16 bytes");
  equal(f.sink.calls, 0, "the outer sink hears nothing before the answer");
  const g = fixture({ protocol: "" });
  g.ws.open(g.sink);
  g.inner.connect();
  ok(latin1(g.inner.written()).indexOf("Sec-WebSocket-Protocol") < 0, "protocol \"\" asks for none");
});

test("websocket: the request target is asked for at every open(), and a long one goes out in pieces as the inner transport takes them", () => {
  let calls = 0;
  const long = "/mqtt?X-Amz-Security-Token=" + "A".repeat(3000);
  const f = fixture({ requestTarget: () => (++calls === 1 ? TARGET : long) });
  f.ws.open(f.sink);
  f.ws.open(f.sink);
  equal(calls, 2);
  f.inner.full = true;
  f.inner.connect();
  equal(f.inner.writes.length, 0);
  f.inner.full = false;
  f.inner.writable();
  ok(f.inner.writes.length >= 3, "in pieces of the side buffer: " + f.inner.writes.length);
  const text = latin1(f.inner.written());
  ok(text.startsWith("GET " + long + " HTTP/1.1\r\nHost: "), text.slice(0, 40));
  ok(text.endsWith("\r\n\r\n"));
  f.inner.feed(ascii(answer(keyOf(f.inner))));
  equal(f.sink.connected, 1);
});

// ---------------------------------------------------------------- the answer

test("websocket: a 101 answer opens it (any case of names and values, split byte by byte), with frames after the head in the same read", () => {
  for (const chunk of [1, 2, 7, 1000]) {
    const f = fixture();
    f.ws.open(f.sink);
    f.inner.connect();
    const key = keyOf(f.inner);
    const head = "HTTP/1.1 101 Switching Protocols\r\nserver: test\r\nUPGRADE: WebSocket\r\nconnection:keep-alive, upgrade\r\nsec-websocket-accept:   " + acceptFor(key) + "  \r\nSec-Websocket-Protocol: mqtt\r\n\r\n";
    f.inner.feed(concat([ascii(head), binary([0x20, 0x02, 0x00, 0x00]), binary([0xd0, 0x00])]), chunk);
    equal(f.sink.connected, 1, "connected, chunk " + chunk);
    deepEqual(f.sink.data, [0x20, 0x02, 0x00, 0x00, 0xd0, 0x00], "the frames' payloads, chunk " + chunk);
    equal(f.sink.closes.length, 0);
    equal(f.ws.stats.framesIn, 2);
  }
});

test("websocket: a bare LF line end is read too", () => {
  const f = answered((key) => answer(key).replace(/\r\n/g, "\n"));
  equal(f.sink.connected, 1);
});

const REFUSALS: [string, (key: string) => string, string][] = [
  ["wrong Accept", (key) => answer(key, "", acceptFor(key + "x")), "websocket upgrade failed: the answer's Sec-WebSocket-Accept does not match the key"],
  ["missing Accept", (key) => answer(key).replace(/Sec-WebSocket-Accept: [^\r]*\r\n/, ""), "websocket upgrade failed: no Sec-WebSocket-Accept in the answer"],
  ["wrong protocol", (key) => answer(key, "", acceptFor(key), "mqttv5"), "websocket upgrade failed: the server chose the subprotocol \"mqttv5\" (asked for mqtt)"],
  ["missing protocol", (key) => answer(key, "", acceptFor(key), null), "websocket upgrade failed: the server chose no subprotocol (asked for mqtt)"],
  ["missing Upgrade", (key) => answer(key).replace("Upgrade: websocket\r\n", ""), "websocket upgrade failed: the answer's Upgrade is missing, not websocket"],
  ["wrong Upgrade", (key) => answer(key).replace("Upgrade: websocket", "Upgrade: h2c"), "websocket upgrade failed: the answer's Upgrade is \"h2c\", not websocket"],
  ["missing Connection", (key) => answer(key).replace("Connection: Upgrade\r\n", ""), "websocket upgrade failed: the answer's Connection is missing, not upgrade"],
  ["Connection close", (key) => answer(key).replace("Connection: Upgrade", "Connection: close"), "websocket upgrade failed: the answer's Connection is \"close\", not upgrade"],
  ["an extension not asked for", (key) => answer(key, "Sec-WebSocket-Extensions: permessage-deflate\r\n"), "websocket upgrade failed: the server chose the extensions \"permessage-deflate\", none asked for"],
  ["HTTP/1.0 101", (key) => answer(key).replace("HTTP/1.1", "HTTP/1.0"), "websocket upgrade failed: the answer is HTTP/1.0, not HTTP/1.1"],
  ["not HTTP", () => "SSH-2.0-OpenSSH_9.6\r\n\r\n", "websocket upgrade failed: the answer is not HTTP (SSH-2.0-OpenSSH_9.6)"],
  ["an empty first line", () => "\r\n\r\n", "websocket upgrade failed: the answer is not HTTP ()"],
  ["a malformed header line", (key) => answer(key, "no colon here\r\n"), "websocket upgrade failed: a malformed header line (no colon here)"],
  ["an over-long Accept", (key) => answer(key, "", "A".repeat(101)), "websocket upgrade failed: the answer's sec-websocket-accept is longer than 100 bytes"],
  ["an oversized head", (key) => answer(key, "X-Padding: " + "p".repeat(1000) + "\r\n"), "websocket upgrade failed: the answer's head exceeds 1024 bytes"],
];

for (const [name, head, reason] of REFUSALS) {
  test("websocket: refused, never connected: " + name, () => {
    for (const chunk of [1, 4096]) {
      const f = answered(head, chunk);
      equal(f.sink.connected, 0, name);
      deepEqual(f.sink.closes, [reason], name + ", chunk " + chunk);
      equal(f.inner.aborts, 1, "the inner link is aborted");
      f.inner.feed(binary([1, 2, 3]));
      f.inner.close();
      equal(f.sink.calls, 1, "one report, nothing after it");
    }
  });
}

test("websocket: a protocol asked for as \"\" must not be chosen by the server", () => {
  const f = answered((key) => answer(key), undefined, { protocol: "" });
  deepEqual(f.sink.closes, ["websocket upgrade failed: the server chose the subprotocol \"mqtt\", none asked for"]);
  const g = answered((key) => answer(key, "", acceptFor(key), null), undefined, { protocol: "" });
  equal(g.sink.connected, 1);
});

test("websocket: a 403 is reported with its status, reason and a bounded printable excerpt of its body", () => {
  const body = "{\"message\":\"Forbidden\",\n\t\"traceId\":\"a1b2\"}";
  const head = "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: " + body.length + "\r\n\r\n";
  // The body in the same read, split byte by byte, and after the head in a later read.
  for (const chunk of [1, 5, 4096]) {
    const f = answered(() => head + body, chunk);
    deepEqual(f.sink.closes, ["websocket upgrade refused: HTTP 403 Forbidden: {\"message\":\"Forbidden\", \"traceId\":\"a1b2\"}"], "chunk " + chunk);
    equal(f.sink.connected, 0);
    equal(f.inner.aborts, 1);
  }
  const later = answered(() => head);
  equal(later.sink.calls, 0, "waits for the announced body");
  later.inner.feed(ascii(body));
  equal(later.sink.closes[0], "websocket upgrade refused: HTTP 403 Forbidden: {\"message\":\"Forbidden\", \"traceId\":\"a1b2\"}");
  // A long body: 120 bytes of it at most, shown printable.
  const long = "<html>" + "\u0001\u00ffx".repeat(100) + "</html>";
  const big = answered(() => "HTTP/1.1 404 Not Found\r\nContent-Length: " + long.length + "\r\n\r\n" + long);
  const reason = big.sink.closes[0];
  ok(reason.startsWith("websocket upgrade refused: HTTP 404 Not Found: <html>"), reason);
  ok(reason.length <= "websocket upgrade refused: HTTP 404 Not Found: ".length + 123 && reason.endsWith("..."), reason);
  for (let i = 0; i < reason.length; i++) ok(reason.charCodeAt(i) >= 0x20 && reason.charCodeAt(i) < 0x7f, "printable");
});

test("websocket: a refusal without a body, without Content-Length, or closed before its body is whole", () => {
  const none = answered(() => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
  deepEqual(none.sink.closes, ["websocket upgrade refused: HTTP 404 Not Found"]);
  const noLength = answered(() => "HTTP/1.1 500 Internal Server Error\r\n\r\noops");
  deepEqual(noLength.sink.closes, ["websocket upgrade refused: HTTP 500 Internal Server Error: oops"], "what came with the head");
  const noPhrase = answered(() => "HTTP/1.1 426\r\n\r\n");
  deepEqual(noPhrase.sink.closes, ["websocket upgrade refused: HTTP 426"]);
  const cut = answered(() => "HTTP/1.1 403 Forbidden\r\nContent-Length: 50\r\n\r\n{\"mess");
  equal(cut.sink.calls, 0);
  cut.inner.close("closed by the broker");
  deepEqual(cut.sink.closes, ["websocket upgrade refused: HTTP 403 Forbidden: {\"mess"]);
  equal(cut.inner.aborts, 0, "closed by itself: not aborted");
  const phrase = answered(() => "HTTP/1.1 403 " + "F".repeat(100) + "\r\nContent-Length: 0\r\n\r\n");
  equal(phrase.sink.closes[0], "websocket upgrade refused: HTTP 403 " + "F".repeat(60) + "...");
});

test("websocket: requestTarget throwing fails the open on a later turn, with its message, without opening the inner link", async () => {
  const f = fixture({ requestTarget: () => { throw new Error("the clock is not set"); } });
  f.ws.open(f.sink);
  equal(f.inner.opens, 0, "no TLS for a request that cannot be made");
  equal(f.sink.calls, 0, "not inside open()");
  await Promise.resolve();
  deepEqual(f.sink.closes, ["websocket request target failed: the clock is not set"]);
  const bad = fixture({ requestTarget: () => "/mqtt?X-Amz-Signature=secret value" });
  bad.ws.open(bad.sink);
  await Promise.resolve();
  deepEqual(bad.sink.closes, ["websocket requestTarget() must return a path starting with / in printable ASCII without spaces, got 34 characters"]);
  const notString = fixture({ requestTarget: () => 42 as unknown as string });
  notString.ws.open(notString.sink);
  await Promise.resolve();
  equal(notString.sink.closes[0], "websocket requestTarget() must return a path starting with / in printable ASCII without spaces, got number");
  const badHash = fixture({ sha1: () => new Uint8Array(19) });
  badHash.ws.open(badHash.sink);
  await Promise.resolve();
  equal(badHash.sink.closes[0], "websocket sha1 must return a 20-byte Uint8Array");
  // Aborted (or opened again) before the report: it is dropped.
  const aborted = fixture({ requestTarget: () => { throw new Error("no"); } });
  aborted.ws.open(aborted.sink);
  aborted.ws.abort();
  await Promise.resolve();
  equal(aborted.sink.calls, 0);
});

test("websocket: the inner link closing during the upgrade is reported once, with its reason", () => {
  const f = fixture();
  f.ws.open(f.sink);
  f.inner.close("connection or TLS handshake failed");
  deepEqual(f.sink.closes, ["connection or TLS handshake failed"], "before the inner link was up: its own words");
  const g = fixture();
  g.ws.open(g.sink);
  g.inner.connect();
  g.inner.feed(ascii("HTTP/1.1 101 Swi"));
  g.inner.close("closed by the broker");
  g.inner.close("closed by the broker");
  deepEqual(g.sink.closes, ["closed during the websocket upgrade: closed by the broker"]);
  equal(g.sink.connected, 0);
});

// ---------------------------------------------------------------- writing

test("websocket: each write is one masked binary frame in one inner write, keys from the injected random, every length form", () => {
  const f = opened({ maxPacketBytes: 70000 });
  const cases: [number, number][] = [[5, 2], [125, 2], [126, 4], [65535, 4], [65536, 10], [70000, 10]];
  let keyByte = 17; // the handshake's key took 1..16; masking keys come from a 64-byte pool after it
  for (const [length, headerBytes] of cases) {
    const payload = sequence(length, length);
    const source = new Uint8Array(length + 10);
    source.set(payload, 7);
    equal(f.ws.write(source, 7, length), true);
    equal(f.inner.writes.length, 1, "one inner write for " + length);
    equal(f.inner.writes[0].length, headerBytes + 4 + length, "header + key + payload for " + length);
    const [frame] = f.inner.takeFrames();
    equal(frame.opcode, Opcode.Binary);
    equal(frame.fin, true);
    equal(frame.lengthForm, headerBytes, "length form for " + length);
    deepEqual(frame.key, [keyByte, keyByte + 1, keyByte + 2, keyByte + 3], "the key for " + length);
    keyByte += 4;
    deepEqual(frame.payload, payload, "unmasked payload for " + length);
  }
  deepEqual(f.random.draws, [16, 64], "masking keys drawn 16 at a time");
  for (let i = 0; i < 13; i++) f.ws.write(new Uint8Array(8), 0, 8);
  deepEqual(f.random.draws, [16, 64, 64], "the pool refilled after 16 keys");
  equal(f.ws.stats.framesOut, 19);
  equal(f.ws.write(new Uint8Array(0), 0, 0), true, "nothing to send");
  equal(f.inner.writes.length, 13);
});

test("websocket: writeMaskedFrame masks every byte alignment alike", () => {
  const key = new Uint8Array([0, 0xa5, 0x5a, 0xff, 0x01, 0x80]);
  for (let length = 0; length <= 9; length++) {
    for (let keyAt = 0; keyAt <= 2; keyAt++) {
      const source = sequence(length + 3, length);
      const target = new Uint8Array(length + 14);
      const end = writeMaskedFrame(target, 1, Opcode.Pong, source, 3, length, key, keyAt);
      equal(end, 1 + 6 + length);
      const [frame] = clientFrames(target.subarray(1, end));
      equal(frame.opcode, Opcode.Pong);
      deepEqual(frame.payload, source.subarray(3, 3 + length));
      deepEqual(frame.key, Array.from(key.subarray(keyAt, keyAt + 4)));
    }
  }
});

test("websocket: a refused write takes nothing and the writable report passes through", () => {
  const f = opened();
  f.inner.full = true;
  equal(f.ws.write(sequence(100), 0, 100), false);
  equal(f.inner.writes.length, 0);
  f.inner.full = false;
  f.inner.writable();
  equal(f.sink.writables, 1);
  equal(f.ws.write(sequence(100), 0, 100), true);
  deepEqual(f.inner.takeFrames()[0].payload, sequence(100));
});

test("websocket: control packets (4 bytes, a 10-byte frame) are kept when the inner transport is full, and go out first, in order", () => {
  const f = opened();
  f.inner.full = true;
  equal(f.ws.write(sequence(50), 0, 50), false, "a PUBLISH is refused");
  const puback = new Uint8Array([0x40, 0x02, 0x00, 0x07]);
  equal(f.ws.write(puback, 0, CONTROL_PACKET_BYTES), true, "a PUBACK is taken into the reserve");
  equal(f.ws.write(new Uint8Array([0xc0, 0x00]), 0, 2), true, "a PINGREQ too");
  f.inner.full = false;
  equal(f.ws.write(sequence(50), 0, 50), false, "nothing overtakes the reserve");
  f.inner.writable();
  equal(f.sink.writables, 1);
  equal(f.inner.writes.length, 1, "the reserve in one write");
  equal(f.inner.writes[0].length, 10 + 8);
  const frames = f.inner.takeFrames();
  deepEqual(frames.map((frame) => Array.from(frame.payload)), [[0x40, 0x02, 0x00, 0x07], [0xc0, 0x00]]);
  equal(f.ws.write(sequence(50), 0, 50), true);
  // 128 control packets fit, the 129th is refused (the session then gives the link up).
  f.inner.full = true;
  for (let i = 0; i < 128; i++) equal(f.ws.write(puback, 0, 4), true, "PUBACK " + i);
  equal(f.ws.write(puback, 0, 4), false, "the reserve is full");
  f.inner.full = false;
  f.inner.writable();
  equal(f.inner.takeFrames().length, 1 + 128);
});

// ---------------------------------------------------------------- reading

test("websocket: server frames of 125, 126, 65535 and 65536 bytes (and non-minimal length forms) are read", () => {
  const f = opened({ maxPacketBytes: 70000 });
  for (const length of [0, 1, 125, 126, 65535, 65536]) {
    f.sink.data = [];
    const payload = sequence(length, 3);
    f.inner.feed(binary(payload), 4096);
    equal(f.sink.data.length, length);
    deepEqual(new Uint8Array(f.sink.data), payload, "payload of " + length);
  }
  f.sink.data = [];
  f.inner.feed(concat([binary([1, 2], { lengthBytes: 2 }), binary([3], { lengthBytes: 8 })]));
  deepEqual(f.sink.data, [1, 2, 3]);
  equal(f.sink.closes.length, 0);
});

test("websocket: data frames are handed on as slices of the read, without copying", () => {
  const f = opened();
  const seen: { bytes: Uint8Array; offset: number; length: number }[] = [];
  f.sink.onData = (bytes, offset, length) => seen.push({ bytes, offset, length });
  const frame = binary([9, 8, 7]);
  const read = new Uint8Array(frame.length + 2);
  read.set(frame, 2);
  (f.inner.sink as TransportSink).onTransportData(read, 2, frame.length);
  equal(seen.length, 1);
  ok(seen[0].bytes === read, "the inner transport's own bytes");
  equal(seen[0].offset, 4);
  equal(seen[0].length, 3);
});

/** A stream exercising everything at once: packets across frames, several in one frame, fragments with a ping between, empty frames; two pings in all. */
function mixedStream(): { stream: Uint8Array; mqtt: Uint8Array } {
  const p1 = publishPacket("a/b", "hello", 1, 7);
  const p2 = puback(3);
  const p3 = suback(4, [0, 1]);
  const p4 = publishPacket("long/topic", sequence(300), 0, 0);
  const mqtt = concat([p1, p2, p3, p4]);
  const stream = concat([
    binary(p1.subarray(0, 4), { fin: false }),
    serverFrame(Opcode.Ping, ascii("are you there")),
    serverFrame(Opcode.Continuation, p1.subarray(4, 6), { fin: false }),
    serverFrame(Opcode.Continuation, new Uint8Array(0), { fin: false }),
    serverFrame(Opcode.Pong, []),
    serverFrame(Opcode.Continuation, p1.subarray(6)),
    binary(concat([p2, p3])),
    binary([]),
    binary(p4),
    serverFrame(Opcode.Ping, []),
  ]);
  return { stream, mqtt };
}

test("websocket: a frame stream split at every byte position (and in 1-byte chunks) delivers the same MQTT bytes", () => {
  const { stream, mqtt } = mixedStream();
  const whole = opened();
  whole.inner.feed(stream);
  deepEqual(new Uint8Array(whole.sink.data), mqtt);
  const ones = opened();
  ones.inner.feed(stream, 1);
  deepEqual(new Uint8Array(ones.sink.data), mqtt, "1-byte chunks");
  for (let split = 1; split < stream.length; split++) {
    const f = opened();
    f.inner.feed(stream.subarray(0, split));
    f.inner.feed(stream.subarray(split));
    deepEqual(new Uint8Array(f.sink.data), mqtt, "split at " + split);
    equal(f.sink.closes.length, 0);
    equal(f.ws.stats.pingsAnswered, 2);
  }
});

test("websocket: a ping is answered with a pong carrying its payload, between the fragments of a packet", () => {
  const f = opened();
  const packet = publishPacket("t", "xyz", 0, 0);
  f.inner.feed(binary(packet.subarray(0, 3), { fin: false }));
  const payload = sequence(MAX_CONTROL_PAYLOAD, 11);
  f.inner.feed(serverFrame(Opcode.Ping, payload), 1);
  const [pong] = f.inner.takeFrames();
  equal(pong.opcode, Opcode.Pong);
  equal(pong.fin, true);
  deepEqual(pong.payload, payload);
  f.inner.feed(serverFrame(Opcode.Continuation, packet.subarray(3)));
  deepEqual(new Uint8Array(f.sink.data), packet);
  equal(f.ws.stats.pingsAnswered, 1);
  f.inner.feed(serverFrame(Opcode.Pong, [1, 2]));
  equal(f.inner.writes.length, 0, "a pong is not answered");
  // A ping while the inner transport is full: its pong waits in the reserve; a second pong does not pile up.
  f.inner.full = true;
  f.inner.feed(concat([serverFrame(Opcode.Ping, [1]), serverFrame(Opcode.Ping, [2])]));
  equal(f.ws.stats.pingsAnswered, 2);
  f.inner.full = false;
  f.inner.writable();
  deepEqual(f.inner.takeFrames().map((frame) => Array.from(frame.payload)), [[1]]);
});

// ---------------------------------------------------------------- closing

test("websocket: the server's close is echoed, the inner link ended, and reported with its code and reason once it closes", () => {
  const f = opened();
  f.inner.feed(concat([binary([1, 2]), closeFrame(1001, "going away\n(maintenance)"), binary([3])]), 1);
  deepEqual(f.sink.data, [1, 2], "nothing after the close frame is read");
  const [echo] = f.inner.takeFrames();
  equal(echo.opcode, Opcode.Close);
  deepEqual(Array.from(echo.payload), [0x03, 0xe9], "the status code echoed");
  equal(f.inner.ends, 1);
  equal(f.ws.stats.closeCodeReceived, 1001);
  equal(f.sink.closes.length, 0, "reported when the inner link has closed");
  equal(f.ws.write(sequence(10), 0, 10), false, "nothing is written after a close frame");
  f.inner.close("ended");
  deepEqual(f.sink.closes, ["websocket closed by server: 1001 going away (maintenance)"]);
  f.inner.close("ended");
  equal(f.sink.closes.length, 1);
});

test("websocket: a close without a status is answered without one, and reported as 1005", () => {
  const f = opened();
  f.inner.feed(serverFrame(Opcode.Close, []));
  const [echo] = f.inner.takeFrames();
  equal(echo.opcode, Opcode.Close);
  equal(echo.payload.length, 0);
  f.inner.close();
  deepEqual(f.sink.closes, ["websocket closed by server: 1005"]);
  equal(f.ws.stats.closeCodeReceived, 1005);
});

test("websocket: end() sends close 1000, then ends the inner link, whose closure is reported", () => {
  const f = opened();
  f.ws.end();
  const [close] = f.inner.takeFrames();
  equal(close.opcode, Opcode.Close);
  deepEqual(Array.from(close.payload), [0x03, 0xe8]);
  equal(f.inner.ends, 1);
  f.ws.end();
  equal(f.inner.ends, 1, "once");
  equal(f.ws.write(sequence(10), 0, 10), false);
  f.inner.feed(concat([binary([5]), closeFrame(1000)]));
  deepEqual(f.sink.data, [5], "data still read while closing");
  equal(f.inner.writes.length, 0, "the server's answering close is not echoed");
  equal(f.ws.stats.closeCodeReceived, 1000);
  f.inner.close("closed by the client");
  deepEqual(f.sink.closes, ["closed by the client"]);
});

test("websocket: end() with frames in the reserve ends the inner link only once they are out", () => {
  const f = opened();
  f.inner.full = true;
  f.ws.write(new Uint8Array([0xe0, 0x00]), 0, 2); // DISCONNECT, into the reserve
  f.ws.end();
  equal(f.inner.ends, 0);
  f.inner.full = false;
  f.inner.writable();
  equal(f.inner.ends, 1);
  const frames = f.inner.takeFrames();
  deepEqual(frames.map((frame) => frame.opcode), [Opcode.Binary, Opcode.Close]);
  equal(f.sink.writables, 0, "no writable report while closing");
});

test("websocket: end() before the upgrade ends the inner link; its closure is a failed upgrade", () => {
  const f = fixture();
  f.ws.open(f.sink);
  f.inner.connect();
  f.ws.end();
  equal(f.inner.ends, 1);
  f.inner.close("ended");
  deepEqual(f.sink.closes, ["closed during the websocket upgrade: ended"]);
});

test("websocket: a link dropped without a close frame is reported in the inner transport's words", () => {
  const f = opened();
  f.inner.close("closed by the broker");
  deepEqual(f.sink.closes, ["closed by the broker"]);
});

// ---------------------------------------------------------------- protocol errors

const PROTOCOL_ERRORS: [string, Uint8Array, number, string][] = [
  ["a masked frame", binary([1, 2, 3], { mask: [1, 2, 3, 4] }), 1002, "masked frame from the server"],
  ["reserved bits", binary([1], { rsv: 0x40 }), 1002, "reserved bits set (no extension was agreed)"],
  ["RSV3", binary([1], { rsv: 0x10 }), 1002, "reserved bits set (no extension was agreed)"],
  ["unknown data opcode", serverFrame(3, [1]), 1002, "unknown opcode 3"],
  ["unknown control opcode", serverFrame(11, [1]), 1002, "unknown opcode 11"],
  ["a text frame", serverFrame(Opcode.Text, ascii("hi")), 1003, "text frame (MQTT travels in binary frames)"],
  ["a fragmented control frame", serverFrame(Opcode.Ping, [1], { fin: false }), 1002, "fragmented control frame"],
  ["a control payload of 126 bytes", serverFrame(Opcode.Ping, sequence(126)), 1002, "control frame payload over 125 bytes"],
  ["a continuation without a start", serverFrame(Opcode.Continuation, [1]), 1002, "continuation frame without a fragmented message"],
  ["a new data frame inside a fragmented one", concat([binary([1], { fin: false }), binary([2])]), 1002, "new data frame while a fragmented message is open"],
  ["a 64-bit length with the top bit set", new Uint8Array([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1]), 1002, "64-bit payload length with the top bit set"],
  ["a 64-bit length of 2^32", new Uint8Array([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]), 1009, "frame payload longer than 2147483647 bytes"],
  ["a 64-bit length of 2^31", new Uint8Array([0x82, 127, 0, 0, 0, 0, 0x80, 0, 0, 0]), 1009, "frame payload longer than 2147483647 bytes"],
  ["a close with a 1-byte payload", serverFrame(Opcode.Close, [3]), 1002, "close frame with a 1-byte payload"],
  ["a close with an invalid status", closeFrame(1005), 1002, "close frame with the invalid status code 1005"],
  ["a close with status 999", closeFrame(999), 1002, "close frame with the invalid status code 999"],
];

for (const [name, bytes, code, what] of PROTOCOL_ERRORS) {
  test("websocket: protocol error: " + name + " sends close " + code + ", drops the link and reports it once", () => {
    for (const chunk of [1, 4096]) {
      const f = opened();
      f.inner.feed(concat([binary([0x20, 0x02, 0, 0]), bytes, binary([7])]), chunk);
      const before = name.indexOf("inside a fragmented") >= 0 ? [0x20, 0x02, 0, 0, 1] : [0x20, 0x02, 0, 0];
      deepEqual(f.sink.data, before, "what came before is delivered, nothing after");
      deepEqual(f.sink.closes, ["websocket protocol error: " + what], name + ", chunk " + chunk);
      const [close] = f.inner.takeFrames();
      equal(close.opcode, Opcode.Close);
      deepEqual(Array.from(close.payload), [code >> 8, code & 0xff], "status " + code);
      equal(f.inner.aborts, 1);
      f.inner.close();
      f.inner.feed(binary([1]));
      equal(f.sink.closes.length, 1, "at most one close report");
      equal(f.ws.write(sequence(10), 0, 10), false);
    }
  });
}

test("websocket: valid close codes are accepted (1000-1003, 1007-1014, 3000-4999)", () => {
  for (const code of [1000, 1003, 1007, 1011, 1014, 3000, 4999]) {
    const f = opened();
    f.inner.feed(closeFrame(code));
    f.inner.close();
    deepEqual(f.sink.closes, ["websocket closed by server: " + code]);
  }
  for (const code of [0, 1004, 1006, 1015, 2999, 5000, 65535]) {
    const f = opened();
    f.inner.feed(closeFrame(code));
    deepEqual(f.sink.closes, ["websocket protocol error: close frame with the invalid status code " + code]);
  }
});

test("websocket: a protocol error while the reserve holds frames sends no close frame out of order", () => {
  const f = opened();
  f.inner.full = true;
  f.ws.write(new Uint8Array([0xc0, 0]), 0, 2);
  f.inner.full = false;
  f.inner.feed(serverFrame(Opcode.Text, []));
  equal(f.inner.writes.length, 0);
  equal(f.sink.closes.length, 1);
});

// ---------------------------------------------------------------- abort, reopen

test("websocket: after abort() the sink hears nothing, whatever the inner transport still says", () => {
  const during = fixture();
  during.ws.open(during.sink);
  during.inner.connect();
  during.ws.abort();
  equal(during.inner.aborts, 1);
  during.inner.feed(ascii(answer(keyOf(during.inner))));
  during.inner.close();
  equal(during.sink.calls, 0, "during the upgrade");
  const f = opened();
  const calls = f.sink.calls;
  f.ws.abort();
  f.inner.feed(binary([1, 2]));
  f.inner.feed(serverFrame(Opcode.Ping, []));
  f.inner.writable();
  f.inner.close();
  equal(f.sink.calls, calls, "once open");
  equal(f.inner.writes.length, 0, "no pong after abort");
  equal(f.ws.write(sequence(8), 0, 8), false);
});

test("websocket: an abort (or a new open) from inside the sink stops the read at once", () => {
  const f = opened();
  f.sink.onData = () => f.ws.abort();
  f.inner.feed(concat([binary([1]), binary([2]), serverFrame(Opcode.Ping, [])]));
  deepEqual(f.sink.data, [1]);
  equal(f.inner.writes.length, 0);
  const g = fixture();
  g.sink.onConnected = () => g.ws.abort();
  g.ws.open(g.sink);
  g.inner.connect();
  g.inner.feed(concat([ascii(answer(keyOf(g.inner))), binary([1])]));
  equal(g.sink.connected, 1);
  deepEqual(g.sink.data, [], "frames after the head are not read once the sink aborted");
  const h = opened();
  h.sink.onData = () => {
    h.sink.onData = undefined;
    h.ws.open(h.sink);
  };
  h.inner.feed(concat([binary([1]), binary([2])]));
  deepEqual(h.sink.data, [1]);
  equal(h.inner.opens, 2);
});

test("websocket: open() again after a close starts afresh: new key, parser reset, one report per open()", () => {
  const f = opened();
  f.inner.feed(binary([1, 2], { fin: false })); // a fragmented message left open
  f.inner.feed(closeFrame(1000));
  f.inner.close();
  equal(f.sink.closes.length, 1);
  const sink = new RecordingSink();
  f.ws.open(sink);
  equal(f.inner.opens, 2);
  f.inner.connect();
  const key = keyOf(f.inner);
  ok(key !== "AQIDBAUGBwgJCgsMDQ4PEA==", "a new key");
  f.inner.feed(concat([ascii(answer(key)), binary([3, 4])]));
  equal(sink.connected, 1);
  deepEqual(sink.data, [3, 4], "a binary frame: the old fragment is forgotten");
  f.inner.feed(serverFrame(Opcode.Text, []));
  deepEqual(sink.closes, ["websocket protocol error: text frame (MQTT travels in binary frames)"]);
  // And after a protocol error, and after abort().
  for (let round = 0; round < 3; round++) {
    const next = new RecordingSink();
    f.ws.open(next);
    f.inner.connect();
    f.inner.feed(concat([ascii(answer(keyOf(f.inner))), binary([round])]));
    deepEqual(next.data, [round]);
    if (round === 1) f.ws.abort();
    else f.inner.close();
    equal(next.closes.length, round === 1 ? 0 : 1);
  }
});

test("websocket: printable() folds white space, replaces the rest, bounds the length", () => {
  equal(printable("  a\r\n\tb  ", 10), "a b");
  equal(printable("\u0000x\u00e9\u007f", 10), "x??");
  equal(printable("abcdef", 6), "abcdef");
  equal(printable("abcdefg", 6), "abcdef...");
  equal(printable("", 6), "");
});

test("websocket: every object the modules export is frozen (preloading)", () => {
  for (const exports of [websocket, websocketFrames] as Record<string, unknown>[]) {
    for (const key of Object.keys(exports)) {
      const value = exports[key];
      if (typeof value === "object" && value !== null && !/^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/.test(key)) ok(Object.isFrozen(value), key);
    }
  }
  ok(true);
});

// ---------------------------------------------------------------- fuzz

/** mulberry32: a seeded integer PRNG, the same on every engine. */
function prng(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/**
 * `runs` random hostile streams through one transport, reopened for each: random valid frames,
 * fragments, control frames, mutated frames, garbage, a mutated answer head now and then, chunked at
 * random, with writes, end(), abort() and inner closes mixed in. Asserts that nothing throws, at most
 * one close is reported per open(), and nothing at all after abort().
 */
function fuzz(runs: number, seed: number): { opened: number; closed: number } {
  const random = prng(seed);
  const below = (n: number): number => random() % n;
  const inner = new ScriptedInner();
  const randomBytes = counterRandom(seed & 0xff);
  // A constant digest: the handshake is tested above; here it would cost most of the run in XS.
  const digest = new Uint8Array(20);
  const head = ascii(answer("", "", base64(digest)));
  const ws = new WebSocketTransport(inner, settingsWith({ maxPacketBytes: 64, sha1: () => digest }, randomBytes));
  const pieces: (() => Uint8Array)[] = [
    () => binary(sequence(below(80), below(256))),
    () => binary(sequence(below(10)), { fin: false }),
    () => serverFrame(Opcode.Continuation, sequence(below(10)), { fin: below(2) === 0 }),
    () => serverFrame(Opcode.Ping, sequence(below(130))),
    () => serverFrame(Opcode.Pong, sequence(below(5))),
    () => closeFrame(below(2) === 0 ? 1000 : below(5000), "bye"),
    () => sequence(1 + below(6), below(256)),
    () => binary(sequence(below(300)), { lengthBytes: below(2) === 0 ? 2 : 8 }),
  ];
  let openedCount = 0;
  let closedCount = 0;
  for (let run = 0; run < runs; run++) {
    const sink = new RecordingSink();
    let aborted = false;
    let callsAtAbort = 0;
    sink.onData = () => {
      const length = 1 + below(64);
      if (below(8) === 0) ws.write(sequence(length), 0, length);
    };
    try {
      ws.open(sink);
      inner.connect();
      let answerHead = head;
      if (below(6) === 0) {
        answerHead = head.slice();
        answerHead[below(head.length)] = below(256);
      }
      const parts: Uint8Array[] = [answerHead];
      const count = below(12);
      for (let i = 0; i < count; i++) {
        const piece = pieces[below(pieces.length)]();
        if (piece.length > 0 && below(5) === 0) piece[below(piece.length)] ^= 1 << below(8);
        parts.push(piece);
      }
      const stream = concat(parts);
      for (let at = 0; at < stream.length;) {
        let chunk = 1 + below(below(2) === 0 ? 4 : 200);
        if (chunk > stream.length - at) chunk = stream.length - at;
        (inner.sink as TransportSink).onTransportData(stream, at, chunk);
        at += chunk;
        const action = below(40);
        if (action === 0) {
          ws.abort();
          aborted = true;
          callsAtAbort = sink.calls;
        } else if (action === 1) {
          ws.end();
        } else if (action === 2) {
          inner.full = !inner.full;
        } else if (action === 3) {
          inner.writable();
        } else if (action === 4) {
          const length = 1 + below(64);
          ws.write(sequence(length), 0, length);
        }
      }
      if (below(2) === 0) inner.close();
    } catch (error) {
      throw new Error("fuzz run " + run + " (seed " + seed + ") threw: " + (error instanceof Error ? error.message : String(error)));
    }
    if (sink.closes.length > 1) throw new Error("fuzz run " + run + " (seed " + seed + "): " + sink.closes.length + " close reports: " + JSON.stringify(sink.closes));
    if (aborted && sink.calls !== callsAtAbort) throw new Error("fuzz run " + run + " (seed " + seed + "): sink calls after abort()");
    if (sink.connected > 0) openedCount++;
    closedCount += sink.closes.length;
    ws.abort();
  }
  return { opened: openedCount, closed: closedCount };
}

// 2,000 streams in four tests of 500: each test is one XS crank, metered on its own.
const FUZZ_RUNS = 500;
for (const seed of [0x5eed, 0xc0ffee, 0x1d2e3f, 0x77]) {
  test("websocket: fuzz: 500 random hostile streams (seed " + seed + "), nothing escapes, at most one close report per open()", () => {
    const result = fuzz(FUZZ_RUNS, seed);
    ok(result.opened > FUZZ_RUNS / 2, "most handshakes succeed: " + result.opened);
    ok(result.closed > FUZZ_RUNS / 4, "many streams end in a close report: " + result.closed);
  });
}

// ---------------------------------------------------------------- a real client over WebSocket

/**
 * The server side of a WebSocket in front of a ScriptedBroker, as the client's inner transport: it
 * answers the Upgrade (or refuses it), unmasks the client's frames into the broker, and frames what
 * the broker sends (each delivery one binary frame, or split across two frames with a ping between).
 */
class WebSocketBroker implements Transport {
  refuseWith = "";
  splitFrames = false;
  /** The client's frames, by opcode, across connections. */
  readonly frames: ClientFrame[] = [];
  private sink: TransportSink | undefined;
  private head = "";
  private upgraded = false;
  private pending: Uint8Array = new Uint8Array(0);

  constructor(readonly broker: ScriptedBroker, readonly clock: VirtualClock) {}

  open(sink: TransportSink): void {
    this.sink = sink;
    this.head = "";
    this.upgraded = false;
    this.pending = new Uint8Array(0);
    this.broker.open({
      onTransportConnected: () => sink.onTransportConnected(),
      onTransportData: (bytes, offset, length) => {
        const payload = bytes.slice(offset, offset + length);
        const framed = this.splitFrames && length > 1
          ? concat([binary(payload.subarray(0, 1), { fin: false }), serverFrame(Opcode.Ping, [7]), serverFrame(Opcode.Continuation, payload.subarray(1))])
          : binary(payload);
        sink.onTransportData(framed, 0, framed.length);
      },
      onTransportClosed: (reason) => sink.onTransportClosed(reason),
      onTransportWritable: () => sink.onTransportWritable(),
    });
  }

  write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (!this.broker.isOpen) return false;
    const sink = this.sink as TransportSink;
    if (!this.upgraded) {
      this.head += latin1(bytes.subarray(offset, offset + length));
      if (!this.head.endsWith("\r\n\r\n")) return true;
      const key = (/Sec-WebSocket-Key: ([^\r]*)\r\n/.exec(this.head) as RegExpExecArray)[1];
      this.upgraded = true;
      const reply = this.refuseWith !== "" ? this.refuseWith : answer(key);
      this.clock.after(0, () => sink.onTransportData(ascii(reply), 0, reply.length));
      return true;
    }
    this.pending = concat([this.pending, bytes.subarray(offset, offset + length)]);
    const frames = clientFrames(this.pending);
    this.pending = new Uint8Array(0);
    for (const frame of frames) {
      this.frames.push(frame);
      if (frame.opcode === Opcode.Binary && !this.broker.write(frame.payload, 0, frame.payload.length)) throw new Error("the broker refused");
    }
    return true;
  }

  end(): void {
    this.broker.end();
  }

  abort(): void {
    this.broker.abort();
  }

  /** Raw bytes from the server side, on the clock (a close frame, say). */
  send(bytes: Uint8Array): void {
    const sink = this.sink as TransportSink;
    this.clock.after(0, () => sink.onTransportData(bytes, 0, bytes.length));
  }
}

function clientOverWebSocket(): { client: MqttClient; clock: VirtualClock; broker: ScriptedBroker; server: WebSocketBroker; ws: WebSocketTransport; errors: string[] } {
  const clock = new VirtualClock();
  const broker = new ScriptedBroker(clock);
  const server = new WebSocketBroker(broker, clock);
  const ws = new WebSocketTransport(server, settingsWith({ maxPacketBytes: 2048 }));
  const client = new MqttClient({ clientId: "ws-device", transport: ws, clock, maxPacketBytes: 2048, backoff: { baseMs: 1000, maxMs: 1000 } });
  const errors: string[] = [];
  client.on("error", (error) => errors.push(error.code + ": " + error.message));
  return { client, clock, broker, server, ws, errors };
}

test("websocket: an MqttClient over WebSocket reaches CONNACK, publishes at QoS 1 and gets its PUBACK, then disconnects with a close frame", () => {
  for (const split of [false, true]) {
    const { client, clock, broker, server, ws, errors } = clientOverWebSocket();
    server.splitFrames = split;
    client.connect();
    clock.settle();
    equal(client.stateName, "online", "online, split " + split);
    equal(broker.sent(1).length, 1, "one CONNECT");
    equal(broker.sent(1)[0].clientId, "ws-device");
    const statuses: number[] = [];
    client.subscribe("cmd/#", 1);
    client.publish("telemetry", "{\"t\":21}", 1, false, (status) => statuses.push(status));
    clock.settle();
    deepEqual(statuses, [AckStatus.Acknowledged]);
    equal(broker.sent(3).length, 1);
    const topics: string[] = [];
    client.on("message", (message) => topics.push(message.topic));
    broker.publish("cmd/ping", "hello", 1);
    clock.settle();
    deepEqual(topics, ["cmd/ping"]);
    ok(broker.received.some((packet) => packet.type === 4), "the client's PUBACK reached the broker");
    if (split) ok(ws.stats.pingsAnswered > 0, "pings between fragments answered");
    client.disconnect();
    clock.settle();
    equal(client.stateName, "idle");
    const opcodes = server.frames.map((frame) => frame.opcode);
    equal(opcodes[opcodes.length - 1], Opcode.Close, "a close frame after DISCONNECT");
    equal(server.frames[server.frames.length - 2].payload[0], 0xe0, "DISCONNECT in the frame before");
    deepEqual(errors, []);
  }
});

test("websocket: an upgrade refused by the server reaches the client's error event with its reason", () => {
  const { client, clock, server, errors } = clientOverWebSocket();
  server.refuseWith = "HTTP/1.1 403 Forbidden\r\nContent-Length: 24\r\n\r\n{\"message\":\"Forbidden\"}\n";
  client.connect();
  clock.settle();
  deepEqual(errors, [ErrorCode.ConnectFailed + ": connection closed before CONNACK: websocket upgrade refused: HTTP 403 Forbidden: {\"message\":\"Forbidden\"}"]);
  equal(client.stateName, "backoff");
  server.refuseWith = "";
  clock.advance(1000);
  equal(client.stateName, "online", "the next attempt upgrades");
});

test("websocket: a client over WebSocket survives a broker that closes the WebSocket, and reconnects", () => {
  const { client, clock, server, errors } = clientOverWebSocket();
  client.connect();
  clock.settle();
  equal(client.stateName, "online");
  const offline: string[] = [];
  client.on("offline", (reason) => offline.push(reason));
  server.send(closeFrame(1001, "going away"));
  clock.settle();
  equal(server.frames[server.frames.length - 1].opcode, Opcode.Close, "the close echoed");
  deepEqual(offline, ["connection lost: websocket closed by server: 1001 going away"]);
  clock.advance(1000);
  equal(client.stateName, "online");
  deepEqual(errors, []);
});
