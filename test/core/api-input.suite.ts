// Bad input at the API, beyond what client-delivery / client-session / client-queue already check:
// every invalid argument or setting throws at the call an IoTLinkError "invalid-argument" whose
// message names the problem, nothing is queued or sent, and the client state is unchanged, online
// and offline alike. Portable: runs on Node and XS.
import { MqttClient } from "../../modules/client";
import { ErrorCode, IoTLinkError, type Transport, type TransportSink } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { connected, session, type Session } from "../support/session";

function snapshot(s: Session): string {
  const c = s.client;
  return JSON.stringify({
    state: c.stateName,
    queued: c.queuedCount,
    inflight: c.inflightCount,
    subscriptions: c.subscriptionCount(),
    packetId: c.lastPacketId,
    stats: c.stats,
    wire: s.broker.received.length,
    events: s.events.length,
    timer: s.clock.timerDueIn(),
  });
}

/** `body` throws an invalid-argument IoTLinkError naming `fragment`; the client is unchanged. */
function refused(s: Session, body: () => unknown, fragment: string, label: string): void {
  const before = snapshot(s);
  let thrown: unknown;
  try {
    body();
  } catch (error) {
    thrown = error;
  }
  ok(thrown instanceof IoTLinkError, label + ": throws an IoTLinkError, got " + String(thrown));
  equal((thrown as IoTLinkError).code, ErrorCode.InvalidArgument, label + ": code");
  const message = (thrown as Error).message;
  ok(message.indexOf(fragment) >= 0, label + ': message "' + message + '" names "' + fragment + '"');
  equal(snapshot(s), before, label + ": state unchanged, nothing queued or sent");
}

const BAD_PUBLISHES: [string, (s: Session) => unknown, string][] = [
  ["topic with '#'", (s) => s.client.publish("a/#", "x", 1), "wildcards"],
  ["topic with '+' inside a level", (s) => s.client.publish("a/b+c", "x"), "wildcards"],
  ["topic with U+0000", (s) => s.client.publish("a\u0000b", "x"), "U+0000"],
  ["topic over 65535 bytes", (s) => s.client.publish("t".repeat(65536), "x"), "over the limit of 65535"],
  ["topic not a string", (s) => s.client.publish(42 as never, "x"), "topic must be a string"],
  ["topic undefined", (s) => s.client.publish(undefined as never, "x"), "topic must be a string"],
  ["qos 2", (s) => s.client.publish("t", "x", 2, false, () => undefined), "qos must be 0 or 1"],
  ["qos -1", (s) => s.client.publish("t", "x", -1), "qos must be 0 or 1"],
  ["qos 0.5", (s) => s.client.publish("t", "x", 0.5), "qos must be 0 or 1"],
  ["qos NaN", (s) => s.client.publish("t", "x", Number.NaN), "qos must be 0 or 1"],
  ["qos as text", (s) => s.client.publish("t", "x", "1" as never), "qos must be 0 or 1"],
  ["retain as number", (s) => s.client.publish("t", "x", 0, 1 as never), "retain must be a boolean"],
  ["onAck not a function", (s) => s.client.publish("t", "x", 1, false, "cb" as never), "onAck must be a function"],
  ["payload null", (s) => s.client.publish("t", null as never), "payload must be"],
  ["payload object", (s) => s.client.publish("t", { a: 1 } as never), "payload must be"],
  ["payload DataView", (s) => s.client.publish("t", new DataView(new ArrayBuffer(4)) as never), "payload must be"],
  ["payload Uint16Array", (s) => s.client.publish("t", new Uint16Array(2) as never), "payload must be"],
  ["payload text with a lone low surrogate", (s) => s.client.publish("t", "ab\udc00"), "UTF-8"],
  ["payload one byte over maxPacketBytes", (s) => s.client.publish("t", new Uint8Array(2048 - 5 + 1), 0), "exceeds maxPacketBytes (2048)"],
  ["QoS 1 payload one byte over maxPacketBytes", (s) => s.client.publish("t", new Uint8Array(2048 - 7 + 1), 1), "exceeds maxPacketBytes (2048)"],
  ["payload over AWS IoT's 128 KB limit", (s) => s.client.publish("t", new Uint8Array(128 * 1024 + 1), 1), "exceeds maxPacketBytes"],
];

const BAD_SUBSCRIPTIONS: [string, (s: Session) => unknown, string][] = [
  ["filter empty", (s) => s.client.subscribe("", 1), "must not be empty"],
  ["filter '#' not last", (s) => s.client.subscribe("#/a", 1), "'#' must be the last level"],
  ["filter 'a#'", (s) => s.client.subscribe("a#", 1), "whole level"],
  ["filter '+a/b'", (s) => s.client.subscribe("+a/b", 1), "whole level"],
  ["filter with U+0000", (s) => s.client.subscribe("a/\u0000", 1), "U+0000"],
  ["filter over 65535 bytes", (s) => s.client.subscribe("f".repeat(65536), 1), "over the limit of 65535"],
  ["filter not a string", (s) => s.client.subscribe(null as never, 1), "topic filter must be a string"],
  ["subscribe qos 2", (s) => s.client.subscribe("a/b", 2), "qos must be 0 or 1"],
  ["subscribe qos -1", (s) => s.client.subscribe("a/b", -1), "qos must be 0 or 1"],
  ["subscribe with the handler where qos goes (MQTT.js's order)", (s) => s.client.subscribe("a/b", (() => undefined) as never), "qos must be 0 or 1 (QoS 2 is not supported), got a function"],
  ["subscribe qos as text", (s) => s.client.subscribe("a/b", "1" as never), "qos must be 0 or 1 (QoS 2 is not supported), got \"1\""],
  ["subscribe onAck not a function", (s) => s.client.subscribe("a/b", 1, undefined, 5 as never), "onAck must be a function"],
  ["subscribe filter over maxPacketBytes", (s) => s.client.subscribe("f".repeat(2100), 0), "exceeds maxPacketBytes"],
  ["unsubscribe filter empty", (s) => s.client.unsubscribe(""), "must not be empty"],
  ["unsubscribe filter 'a/#/b'", (s) => s.client.unsubscribe("a/#/b"), "'#' must be the last level"],
  ["unsubscribe onAck not a function", (s) => s.client.unsubscribe("a/b", {} as never), "onAck must be a function"],
  ["unsubscribe filter over maxPacketBytes", (s) => s.client.unsubscribe("f".repeat(2100)), "exceeds maxPacketBytes"],
  ["handler for an event not a function", (s) => s.client.on("online", 7 as never), "must be a function"],
];

for (const online of [true, false]) {
  const where = online ? "online" : "offline (queueing)";
  test("API input: every invalid publish is refused at the call, " + where + ", nothing queued, state unchanged", () => {
    const s = online ? connected() : session();
    for (const [label, body, fragment] of BAD_PUBLISHES) refused(s, () => body(s), fragment, label);
    // A valid request still works afterwards.
    equal(s.client.publish("t", "ok", 1), online ? 0 : 1);
  });

  test("API input: every invalid subscribe / unsubscribe / handler is refused at the call, " + where + ", state unchanged", () => {
    const s = online ? connected() : session();
    for (const [label, body, fragment] of BAD_SUBSCRIPTIONS) refused(s, () => body(s), fragment, label);
    equal(s.client.subscriptionCount(), 0);
  });
}

test("API input: publish() skips validating the last topic it accepted, and only that one", () => {
  const s = connected();
  equal(s.client.publish("a/b", "1", 0), 0);
  // Every bad topic is still refused right after a good one was remembered, and the good one still works.
  for (const [label, body, fragment] of BAD_PUBLISHES.slice(0, 6)) {
    equal(s.client.publish("a/b", "again", 0), 0, label + ": the remembered topic");
    refused(s, () => body(s), fragment, label + ", after a valid topic");
  }
  refused(s, () => s.client.publish(new String("a/b") as never, "x"), "topic must be a string", "a String object equal to the remembered topic");
  // The same text built anew is the same topic; a new valid topic replaces the remembered one.
  equal(s.client.publish(["a", "b"].join("/"), "2", 0), 0);
  equal(s.client.publish("a/c", "3", 0), 0);
  refused(s, () => s.client.publish("a/+", "x"), "wildcards", "a wildcard after the second topic");
  const topics = s.broker.sent(3).map((packet) => packet.topic);
  deepEqual(topics.slice(-3), ["a/b", "a/b", "a/c"]);
});

test("API input: the subscription table is untouched by refused requests (an active filter stays as it was)", () => {
  const s = connected();
  s.client.subscribe("keep/#", 1);
  s.clock.settle();
  refused(s, () => s.client.subscribe("keep/#", 2), "qos must be 0 or 1", "re-subscribe with qos 2");
  refused(s, () => s.client.unsubscribe("keep/#", "x" as never), "onAck must be a function", "unsubscribe with a bad callback");
  s.broker.publish("keep/a", "still", 1);
  s.clock.settle();
  deepEqual(s.messages.map((m) => m.payload), ["still"]);
});

const BAD_SETTINGS: [string, object, string][] = [
  ["options not an object", null as never, "options must be an object"],
  ["clientId not a string", { clientId: 7 }, "clientId must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate"],
  ["clientId over 65535 bytes", { clientId: "c".repeat(65536) }, "clientId must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate"],
  ["clientId with U+0000", { clientId: "a\u0000" }, "clientId must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate"],
  ["cleanSession as text", { cleanSession: "yes" }, "cleanSession must be a boolean"],
  ["keepAliveSeconds -1", { keepAliveSeconds: -1 }, "keepAliveSeconds must be a whole number from 0 to 65535"],
  ["keepAliveSeconds as text", { keepAliveSeconds: "60" }, "keepAliveSeconds must be a whole number from 0 to 65535, got \"60\""],
  ["connectTimeoutMs 0", { connectTimeoutMs: 0 }, "connectTimeoutMs must be a whole number from 1"],
  ["connectTimeoutMs Infinity", { connectTimeoutMs: Infinity }, "connectTimeoutMs"],
  ["operationTimeoutMs NaN", { operationTimeoutMs: Number.NaN }, "operationTimeoutMs"],
  ["drainIntervalMs -1", { drainIntervalMs: -1 }, "drainIntervalMs"],
  ["drainIntervalMs 2.5", { drainIntervalMs: 2.5 }, "drainIntervalMs"],
  ["maxPacketBytes 15", { maxPacketBytes: 15 }, "maxPacketBytes must be a whole number from 16"],
  ["maxPacketBytes over the MQTT limit", { maxPacketBytes: 268435461 }, "maxPacketBytes"],
  ["queueEntries 65536", { queueEntries: 65536 }, "queueEntries must be a whole number from 0 to 65535"],
  ["queueEntries -1", { queueEntries: -1 }, "queueEntries"],
  ["queueBytes -1", { queueBytes: -1 }, "queueBytes"],
  ["queueBytes 0 with entries", { queueEntries: 4, queueBytes: 0 }, "both be 0"],
  ["queueBytes too small for any request", { queueEntries: 4, queueBytes: 4 }, "queueBytes must be at least 5 (the smallest request) when queueing, got 4"],
  ["dropPolicy -1", { dropPolicy: -1 }, "dropPolicy"],
  ["dropPolicy as text", { dropPolicy: "DROP_OLDEST" }, "dropPolicy"],
  ["inflightWindow 0", { inflightWindow: 0 }, "inflightWindow must be a whole number from 1"],
  ["maxSubscriptions 0", { maxSubscriptions: 0 }, "maxSubscriptions must be a whole number from 1"],
  ["backoff not an object", { backoff: 5 }, "backoff must be an object"],
  ["backoff max over the timer's range", { backoff: { maxMs: 2 ** 31 } }, "backoff maxMs must be a whole number from 1 to 2147483647"],
  ["backoff maxAttempts -1", { backoff: { maxAttempts: -1 } }, "maxAttempts"],
  ["backoff seed -1", { backoff: { seed: -1 } }, "seed"],
  ["backoff random not a function", { backoff: { random: 4 } }, "random must be a function"],
  ["username with a lone surrogate", { username: "u\ud800" }, "username must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate"],
  ["username not a string", { username: 5 }, "username must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate"],
  ["password as number", { username: "u", password: 1234 }, "password: payload must be"],
  ["password without a username (MQTT forbids it)", { password: "secret" }, "password needs a username (MQTT 3.1.1 section 3.1.2.9)"],
  ["password over 65535 bytes", { username: "u", password: new Uint8Array(65536), maxPacketBytes: 200000 }, "password: payload of 65536 bytes is over the 65535 a CONNECT field can carry"],
  ["username over 65535 bytes", { username: "u".repeat(65536), maxPacketBytes: 200000 }, "username must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate"],
  ["will payload over 65535 bytes", { will: { topic: "w", payload: new Uint8Array(65536) }, maxPacketBytes: 200000 }, "will: payload of 65536 bytes is over the 65535 a CONNECT field can carry"],
  ["will with an unknown field", { will: { topic: "w", payload: "x", retained: true } }, "will: unknown field retained; the fields are topic, payload, qos, retain"],
  ["will qos null", { will: { topic: "w", payload: "x", qos: null } }, "will: qos must be a whole number from 0 to 1, got null"],
  ["an unknown option (a typo would be ignored)", { keepAlive: 10 }, "unknown option keepAlive; the options are clientId, transport, clock,"],
  ["an unknown backoff setting", { backoff: { base: 10 } }, "unknown backoff setting base; the backoff settings are baseMs, maxMs, stableMs, jitter, maxAttempts, random, seed"],
  ["a clock whose now() is not a number", { clock: { now: () => undefined, setTimer: () => 0, clearTimer: () => undefined } }, "clock.now() must return milliseconds as a finite number, got undefined"],
  ["a clock whose now() is NaN", { clock: { now: () => Number.NaN, setTimer: () => 0, clearTimer: () => undefined } }, "clock.now() must return milliseconds as a finite number, got NaN"],
  ["will without a topic", { will: { payload: "x" } }, "will: topic must be a string"],
  ["will qos 2", { will: { topic: "w", payload: "x", qos: 2 } }, "will: qos must be a whole number from 0 to 1, got 2"],
  ["will null", { will: null }, "will must be an object with topic and payload"],
  ["will as a string", { will: "w" }, "will must be an object with topic and payload"],
  ["will retain not a boolean", { will: { topic: "w", payload: "x", retain: "yes" } }, "will: retain must be a boolean, got \"yes\""],
  ["will topic with a wildcard", { will: { topic: "w/#", payload: "x" } }, "will: topic name must not contain wildcards"],
  ["will payload as number", { will: { topic: "w", payload: 3 } }, "will: payload must be"],
  ["CONNECT larger than maxPacketBytes", { maxPacketBytes: 64, will: { topic: "w", payload: "x".repeat(100) } }, "CONNECT (client id, will, credentials) exceeds maxPacketBytes"],
];

test("API input: every out-of-range or wrongly typed setting is refused at construction, naming it", () => {
  const base = session();
  for (const [label, extra, fragment] of BAD_SETTINGS) {
    let thrown: unknown;
    try {
      new MqttClient(extra === null ? (null as never) : ({ clientId: "x", transport: base.broker, clock: base.clock, ...extra } as never));
    } catch (error) {
      thrown = error;
    }
    ok(thrown instanceof IoTLinkError, label + ": throws an IoTLinkError, got " + String(thrown));
    equal((thrown as IoTLinkError).code, ErrorCode.InvalidArgument, label + ": code");
    ok((thrown as Error).message.indexOf(fragment) >= 0, label + ': message "' + (thrown as Error).message + '" names "' + fragment + '"');
  }
  equal(base.broker.opens, 0, "no refused client ever touched the transport");
});

test("API input: backoff.jitter must be a boolean (a truthy non-boolean must not silently mean 'off')", () => {
  const base = session();
  let thrown: unknown;
  try {
    new MqttClient({ clientId: "x", transport: base.broker, clock: base.clock, backoff: { jitter: "yes" as never } });
  } catch (error) {
    thrown = error;
  }
  ok(thrown instanceof IoTLinkError, "jitter: \"yes\" is refused, got " + String(thrown));
  ok((thrown as Error).message.indexOf("jitter") >= 0, String(thrown));
});

test("API input: a transport whose write() returns neither true nor false is named at its first write", () => {
  const base = session();
  let sink: TransportSink | undefined;
  const transport: Transport = {
    open: (s: TransportSink) => {
      sink = s;
    },
    write: () => undefined as never,
    end: () => undefined,
    abort: () => undefined,
  };
  const client = new MqttClient({ clientId: "x", transport, clock: base.clock });
  client.connect();
  throws(() => (sink as TransportSink).onTransportConnected(), "transport.write() must return true (taken) or false (no room now), got undefined");
});

test("API input: a transport that reports data outside its buffer is named at the call, and the session is unchanged", () => {
  const s = connected();
  const bytes = new Uint8Array(8);
  const bad: [string, () => unknown][] = [
    ["not a Uint8Array", () => s.client.onTransportData([0xd0, 0] as never, 0, 2)],
    ["an ArrayBuffer", () => s.client.onTransportData(bytes.buffer as never, 0, 2)],
    ["length past the end", () => s.client.onTransportData(bytes, 4, 5)],
    ["negative offset", () => s.client.onTransportData(bytes, -1, 2)],
    ["fractional length", () => s.client.onTransportData(bytes, 0, 1.5)],
    ["NaN offset", () => s.client.onTransportData(bytes, Number.NaN, 1)],
    ["length missing", () => (s.client.onTransportData as (b: Uint8Array, o: number) => void)(bytes, 0)],
  ];
  for (const [label, body] of bad) refused(s, body, "onTransportData(bytes, offset, length) needs a Uint8Array and a range inside it", label);
  // The same bytes in range are read: a PINGRESP (0xd0 0x00) is taken without complaint.
  bytes.set([0xd0, 0], 6);
  s.client.onTransportData(bytes, 6, 2);
  equal(s.client.stats.protocolErrors, 0);
  equal(s.client.stateName, "online");
});
