// Connection life cycle on the virtual clock: connect, CONNACK outcomes, timeouts, keep-alive,
// backoff and its reset, disconnect and reuse.
import { MqttClient } from "../../modules/client";
import { ErrorCode } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { connack } from "../support/broker-codec";
import { connected, session } from "../support/session";

test("connect sends CONNECT with the configured fields and reports online then restored", () => {
  const s = session({ clientId: "thing-7", keepAliveSeconds: 45, cleanSession: false, username: "user", password: "secret", will: { topic: "status/thing-7", payload: "gone", qos: 1, retain: true } });
  equal(s.client.connect(), true);
  equal(s.client.stateName, "opening");
  s.clock.settle();
  const [packet] = s.broker.sent(1);
  equal(packet.clientId, "thing-7");
  equal(packet.keepAlive, 45);
  equal(packet.cleanSession, false);
  equal(packet.username, "user");
  deepEqual(Array.from(packet.password as Uint8Array), [115, 101, 99, 114, 101, 116]);
  equal(packet.willTopic, "status/thing-7");
  equal(packet.willQos, 1);
  equal(packet.willRetain, true);
  deepEqual(s.names(), ["online", "restored"]);
  equal(s.client.stateName, "online");
});

test("connect() while connecting or connected opens no second connection", () => {
  const s = session();
  s.client.connect();
  equal(s.client.connect(), false);
  s.clock.settle();
  equal(s.client.connect(), false);
  s.clock.advance(10000);
  equal(s.broker.opens, 1);
  equal(s.broker.sent(1).length, 1);
});

test("CONNACK 'not authorized' is an error with its name, never online, and is retried with backoff", () => {
  const s = session({ backoff: { baseMs: 1000, maxMs: 8000, stableMs: 5000 } });
  s.broker.connackCode = 5;
  s.client.connect();
  s.clock.settle();
  equal(s.count("online"), 0);
  equal(s.errors[0].code, ErrorCode.ConnectionRefused);
  ok(s.errors[0].message.indexOf("not authorized") >= 0, s.errors[0].message);
  equal(s.client.stateName, "backoff");
  s.clock.advance(60000);
  equal(s.count("online"), 0);
  // 1 + 2 + 4 + 8 + 8 ... : no hot loop
  const attempts = s.broker.opens;
  ok(attempts >= 7 && attempts <= 10, "attempts in a minute: " + attempts);
  s.broker.connackCode = 0;
  s.clock.advance(8000);
  equal(s.count("online"), 1);
});

test("a broker that closes before CONNACK is reported at once with the cause", () => {
  const s = session({ connectTimeoutMs: 30000 });
  s.broker.closeOnConnect = true;
  s.client.connect();
  s.clock.settle();
  equal(s.errors.length, 1);
  equal(s.errors[0].code, ErrorCode.ConnectFailed);
  ok(s.errors[0].message.indexOf("before CONNACK") >= 0, s.errors[0].message);
  equal(s.events[s.events.length - 2].at, 0, "reported at time 0, not after the connect timeout");
  equal(s.client.stateName, "backoff");
});

test("a refused TCP connection is reported and retried; the first connect is never abandoned", () => {
  const s = session({ backoff: { baseMs: 500, maxMs: 4000, stableMs: 1000 } });
  s.broker.openBehaviour = "refuse";
  s.client.connect();
  s.clock.advance(2000);
  ok(s.broker.opens >= 2, "retried");
  s.broker.openBehaviour = "accept";
  s.clock.advance(5000);
  equal(s.client.stateName, "online");
});

test("connect timeout covers TCP + TLS + CONNACK", () => {
  const s = session({ connectTimeoutMs: 3000 });
  s.broker.openBehaviour = "hang";
  s.client.connect();
  s.clock.advance(2999);
  equal(s.errors.length, 0);
  s.clock.advance(1);
  equal(s.errors[0].code, ErrorCode.ConnectTimeout);
  s.broker.openBehaviour = "accept";
  s.broker.answerConnect = false;
  s.clock.advance(1000); // backoff base
  equal(s.client.stateName, "awaiting-connack");
  s.clock.advance(3000);
  equal(s.errors[1].code, ErrorCode.ConnectTimeout);
  ok(s.errors[1].message.indexOf("CONNECT sent") >= 0, s.errors[1].message);
});

test("backoff series across repeated failures: base, doubling, capped at max", () => {
  const s = session({ backoff: { baseMs: 2000, maxMs: 8000, stableMs: 4000 } });
  s.broker.openBehaviour = "refuse";
  s.client.connect();
  s.clock.advance(40000);
  const delays = s.events.filter((e) => e.name === "reconnecting").map((e) => Number(e.detail.split("/")[0]));
  deepEqual(delays.slice(0, 6), [2000, 4000, 8000, 8000, 8000, 8000]);
});

test("a connection that stays up for 'stable' resets the backoff; a shorter one does not", () => {
  const s = session({ backoff: { baseMs: 1000, maxMs: 16000, stableMs: 5000 }, keepAliveSeconds: 0 });
  s.client.connect();
  s.clock.settle();
  // Three short-lived connections: each drop comes before the stable time.
  const delays: number[] = [];
  s.client.on("reconnecting", (delay) => delays.push(delay));
  for (let i = 0; i < 3; i++) {
    s.clock.advance(1000);
    s.broker.drop();
    s.clock.advance(delays[delays.length - 1]);
    equal(s.client.stateName, "online");
  }
  deepEqual(delays, [1000, 2000, 4000]);
  // Now stay up past the stable time: the next drop starts again at base.
  s.clock.advance(5000);
  s.broker.drop();
  deepEqual(delays, [1000, 2000, 4000, 1000]);
});

test("jittered delays stay within [0, ceiling] and vary", () => {
  const s = session({ backoff: { baseMs: 1000, maxMs: 8000, stableMs: 1000, jitter: true, seed: 7 } });
  s.broker.openBehaviour = "refuse";
  const delays: number[] = [];
  s.client.on("reconnecting", (delay) => delays.push(delay));
  s.client.connect();
  s.clock.advance(200000);
  ok(delays.length > 20);
  const ceilings = [1000, 2000, 4000, 8000];
  delays.forEach((delay, i) => ok(delay >= 0 && delay <= ceilings[Math.min(i, 3)], "delay " + i + " = " + delay));
  ok(new Set(delays.slice(3)).size > 5, "jitter varies the delays");
});

test("maxAttempts stops reconnecting with a gave-up error", () => {
  const s = session({ backoff: { baseMs: 100, maxMs: 100, stableMs: 100, maxAttempts: 3 } });
  s.broker.openBehaviour = "refuse";
  s.client.connect();
  s.clock.advance(10000);
  equal(s.broker.opens, 4, "the first attempt and three retries");
  equal(s.errors[s.errors.length - 1].code, ErrorCode.GaveUp);
  equal(s.client.stateName, "idle");
  equal(s.clock.timerDueIn(), -1, "no timer left armed");
});

test("keep-alive sends PINGREQ when idle and a PINGRESP keeps the session up", () => {
  const s = connected({ keepAliveSeconds: 10 });
  s.clock.advance(9999);
  equal(s.broker.sent(12).length, 0);
  s.clock.advance(1);
  equal(s.broker.sent(12).length, 1);
  s.clock.advance(60000);
  equal(s.broker.sent(12).length, 7);
  equal(s.count("offline"), 0);
});

test("a silent broker is declared dead within 1.5 x keep-alive, then recovery runs", () => {
  const s = connected({ keepAliveSeconds: 20, backoff: { baseMs: 1000, maxMs: 1000, stableMs: 1000 } });
  s.broker.answerPings = false;
  s.broker.ackPublishes = false;
  // The client keeps publishing QoS 0, so its own traffic never goes idle: the silence is inbound.
  for (let t = 0; t < 29; t++) {
    s.client.publish("telemetry", "x");
    s.clock.advance(1000);
  }
  equal(s.count("offline"), 0);
  s.clock.advance(1000);
  equal(s.count("offline"), 1);
  const offline = s.events.find((e) => e.name === "offline");
  ok(offline !== undefined && offline.at <= 30000, "detected within 1.5 x keep-alive");
  ok((offline as { detail: string }).detail.indexOf("keep-alive") >= 0);
  s.broker.answerPings = true;
  s.clock.advance(1000);
  equal(s.client.stateName, "online");
});

test("disconnect sends DISCONNECT, stops every timer and keeps subscriptions and queue", () => {
  const s = connected({ keepAliveSeconds: 30 });
  s.client.subscribe("cmd/#", 1);
  s.clock.settle();
  s.client.disconnect();
  equal(s.client.stateName, "closing", "until the transport has sent what it took");
  equal(s.count("offline"), 0);
  s.clock.settle();
  equal(s.broker.sent(14).length, 1);
  equal(s.broker.endsByClient, 1, "ended gracefully, not aborted");
  equal(s.client.stateName, "idle");
  equal(s.clock.timerDueIn(), -1);
  equal(s.count("offline"), 1);
  s.client.publish("t", "queued while idle", 1);
  equal(s.client.queuedCount, 1);
  s.clock.advance(600000);
  equal(s.broker.opens, 1, "no reconnect after disconnect()");
  s.client.connect();
  s.clock.advance(1000);
  deepEqual(s.broker.sent(8).map((p) => p.filters), [["cmd/#"], ["cmd/#"]], "subscription restored on the new session");
  deepEqual(s.published(), ["queued while idle"]);
});

test("the same client object serves three connect/publish/disconnect rounds", () => {
  const s = session();
  for (let round = 0; round < 3; round++) {
    s.client.connect();
    s.clock.settle();
    for (let i = 0; i < 3; i++) s.client.publish("round", round + "-" + i, 1);
    s.clock.settle();
    s.client.disconnect();
  }
  deepEqual(s.published(), ["0-0", "0-1", "0-2", "1-0", "1-1", "1-2", "2-0", "2-1", "2-2"]);
  equal(s.client.stats.acknowledged, 9);
  equal(s.client.inflightCount, 0);
  equal(s.broker.opens, 3);
});

test("a second CONNACK is a protocol error: the client closes, reports it and reconnects", () => {
  const s = connected();
  s.broker.deliver(connack(0));
  s.clock.settle();
  equal(s.count("offline"), 1);
  ok(s.errors.some((e) => e.code === ErrorCode.Protocol && e.message.indexOf("CONNACK") >= 0));
  s.clock.advance(1000);
  equal(s.client.stateName, "online");
});

test("malformed bytes from the broker close the connection with a named protocol error", () => {
  const s = connected();
  s.broker.deliver(new Uint8Array([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]));
  s.clock.settle();
  equal(s.client.stats.protocolErrors, 1);
  ok(s.errors[0].message.indexOf("remaining length") >= 0, s.errors[0].message);
  equal(s.client.stateName, "backoff");
});

test("an inbound message over maxPacketBytes is skipped, acknowledged, reported with its topic, and the link stays up", () => {
  // A retained or queued message that large would come back at every connection: closing the link would loop for ever.
  const s = connected({ maxPacketBytes: 256 });
  s.client.subscribe("big", 1);
  s.clock.settle();
  const id = s.broker.publish("big", "x".repeat(300), 1, true);
  s.broker.publish("big", "small", 1);
  s.clock.settle();
  equal(s.client.stateName, "online");
  equal(s.broker.opens, 1, "no reconnect");
  equal(s.client.stats.oversized, 1);
  equal(s.errors.length, 1);
  equal(s.errors[0].code, ErrorCode.MessageTooLarge);
  ok(s.errors[0].message.indexOf("310 bytes on big is larger than maxPacketBytes (256): skipped and acknowledged") >= 0, s.errors[0].message);
  deepEqual(s.broker.sent(4).map((p) => p.packetId), [id, id + 1], "both acknowledged, in order");
  deepEqual(s.messages.map((m) => m.payload), ["small"], "the message behind it is delivered");
});

test("bad settings are rejected at construction with a clear error", () => {
  const base = session();
  const make = (extra: object) => () => new MqttClient({ clientId: "x", transport: base.broker, clock: base.clock, ...extra });
  throws(make({ backoff: { baseMs: 0 } }), "backoff baseMs");
  throws(make({ backoff: { baseMs: 2000, maxMs: 1000 } }), "must not be below baseMs");
  throws(make({ backoff: { stableMs: 0 } }), "backoff stableMs");
  throws(make({ keepAliveSeconds: 70000 }), "keepAliveSeconds");
  throws(make({ keepAliveSeconds: 1.5 }), "keepAliveSeconds");
  throws(make({ dropPolicy: 2 }), "dropPolicy");
  throws(make({ queueEntries: 0, queueBytes: 100 }), "both be 0");
  throws(make({ clientId: "", cleanSession: false }), "empty clientId");
  throws(make({ will: { topic: "a/+", payload: "x" } }), "wildcards");
  throws(make({ inflightBytes: 100 }), "inflightBytes");
  throws(() => new MqttClient({ clientId: "x", clock: base.clock } as never), "transport must implement");
  throws(() => base.client.on("nonsense" as never, (() => undefined) as never), "unknown event");
  // Names the handler table inherits, and names that only become one as text, are not events.
  for (const name of ["toString", "constructor", "__proto__", "hasOwnProperty", ["error"]]) {
    throws(() => base.client.on(name as never, (() => undefined) as never), "unknown event", String(name));
  }
  throws(() => base.client.on(["error"] as never, (() => undefined) as never), "unknown event an object; events are online, offline,");
});
