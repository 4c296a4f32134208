// QoS 1 delivery and inbound messages: the in-flight window, re-sending after a reconnect,
// operation timeouts without duplicates, callbacks isolated and re-entrant, input validation.
import { Accepted, AckStatus, ErrorCode } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { puback } from "../support/broker-codec";
import { connected } from "../support/session";

test("QoS 0 and QoS 1 publishes online; PUBACK fires the ack callback with the packet id", () => {
  const s = connected();
  const acks: number[][] = [];
  equal(s.client.publish("t/0", "zero"), Accepted.Sent);
  equal(s.client.publish("t/1", new Uint8Array([1, 2, 3]), 1, true, (status, id) => acks.push([status, id])), Accepted.Sent);
  s.clock.settle();
  const [zero, one] = s.broker.sent(3);
  equal(zero.qos, 0);
  equal(one.qos, 1);
  equal(one.retain, true);
  deepEqual(Array.from(one.payload as Uint8Array), [1, 2, 3]);
  deepEqual(acks, [[AckStatus.Acknowledged, one.packetId]]);
  equal(s.client.inflightCount, 0);
});

test("a text payload is sent as UTF-8, U+0000 included (MQTT forbids it in topics, not in payloads)", () => {
  const s = connected();
  equal(s.client.publish("t", "a\u0000\u00e9\ud83d\ude00"), Accepted.Sent);
  equal(s.client.publish("t", "\u0000", 1), Accepted.Sent);
  s.clock.settle();
  const [text, nul] = s.broker.sent(3);
  deepEqual(Array.from(text.payload as Uint8Array), [0x61, 0x00, 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]);
  deepEqual(Array.from(nul.payload as Uint8Array), [0x00]);
  throws(() => s.client.publish("t", "a\ud800"), "payload text is not valid UTF-8 (lone surrogate)");
});

test("async flow counts match the Python SDK's test: online 1, suback 1, puback 3, messages 3, unsuback 1, offline 1", () => {
  const s = connected();
  const counts = { suback: 0, puback: 0, unsuback: 0 };
  s.client.subscribe("flow/#", 1, undefined, () => counts.suback++);
  s.clock.settle();
  for (let i = 0; i < 3; i++) s.client.publish("flow/" + i, "m" + i, 1, false, () => counts.puback++);
  s.clock.settle();
  s.client.unsubscribe("flow/#", () => counts.unsuback++);
  s.clock.settle();
  s.client.disconnect();
  s.clock.settle();
  deepEqual(counts, { suback: 1, puback: 3, unsuback: 1 });
  equal(s.count("online"), 1);
  equal(s.count("message"), 3);
  equal(s.count("offline"), 1);
  equal(s.broker.sent(4).length, 3, "each inbound QoS 1 message acknowledged");
});

test("inbound messages reach the matching subscription handlers, then the message event", () => {
  const s = connected();
  const order: string[] = [];
  s.client.subscribe("home/+/temp", 1, (m) => order.push("plus:" + m.topic));
  s.client.subscribe("home/#", 0, (m) => order.push("hash:" + m.topic + ":" + m.qos));
  s.client.on("message", (m) => order.push("event:" + m.topic + ":" + m.retain));
  s.clock.settle();
  s.broker.publish("home/kitchen/temp", "21", 1, true);
  s.broker.publish("office/temp", "19");
  s.clock.settle();
  deepEqual(order, ["plus:home/kitchen/temp", "hash:home/kitchen/temp:1", "event:home/kitchen/temp:true", "event:office/temp:false"]);
});

test("subscribing again without a handler keeps the filter's handler; a message nobody handles is counted", () => {
  const s = connected();
  s.stopRecordingMessages();
  const seen: string[] = [];
  s.client.subscribe("keep/+", 0, (m) => seen.push(m.topic));
  s.client.subscribe("keep/+", 1); // the QoS changes, the handler stays
  s.client.subscribe("nobody/#", 1);
  s.clock.settle();
  const subscribes = s.broker.sent(8);
  equal(subscribes.length, 3);
  s.broker.publish("keep/a", "1", 1);
  s.broker.publish("nobody/here", "2", 1);
  s.clock.settle();
  deepEqual(seen, ["keep/a"]);
  equal(s.client.stats.unhandled, 1, "the message to nobody/# reached no handler");
  equal(s.broker.sent(4).length, 2, "both are acknowledged all the same");
  s.client.on("message", () => undefined);
  s.broker.publish("nobody/there", "3");
  s.clock.settle();
  equal(s.client.stats.unhandled, 1, "a message event handler handles it");
});

test("each inbound payload is its own bytes, whether or not the payload view is reused", () => {
  const s = connected();
  const seen: string[] = [];
  const views: Uint8Array[] = [];
  s.client.subscribe("#", 1, (m) => {
    seen.push(m.topic + "=" + String.fromCharCode(...m.payload) + "@" + m.qos);
    views.push(m.payload);
  });
  s.clock.settle();
  s.broker.publish("a/b", "one", 1);
  s.broker.publish("a/b", "two", 1); // same topic, same size: the same place in the receive buffer
  s.broker.publish("a/b", "three", 1); // longer payload
  s.broker.publish("a/bc", "four", 1); // longer topic: the payload starts later
  s.broker.publish("a/bcde", "fiv", 0); // no packet id: starts where "four" did, one byte shorter
  s.broker.publish("a/bcde", "", 0);
  s.broker.publish("a/b", "six", 1);
  s.clock.settle();
  deepEqual(seen, ["a/b=one@1", "a/b=two@1", "a/b=three@1", "a/bc=four@1", "a/bcde=fiv@0", "a/bcde=@0", "a/b=six@1"]);
  ok(views[1] === views[0], "same place: the view is reused, not allocated again");
  for (let i = 2; i < 7; i++) ok(views[i] !== views[i - 1], "message " + i + " sits elsewhere: a new view");
});

test("the in-flight window bounds unacknowledged publishes; the rest wait and go out as acks arrive", () => {
  const s = connected({ inflightWindow: 3 });
  s.broker.ackPublishes = false;
  const results: number[] = [];
  for (let i = 0; i < 5; i++) results.push(s.client.publish("w", "m" + i, 1));
  deepEqual(results, [Accepted.Sent, Accepted.Sent, Accepted.Sent, Accepted.Queued, Accepted.Queued]);
  equal(s.broker.sent(3).length, 3);
  s.broker.deliver(puback(s.broker.sent(3)[0].packetId));
  s.clock.settle();
  equal(s.broker.sent(3).length, 4);
  deepEqual(s.published(), ["m0", "m1", "m2", "m3"]);
});

test("unacknowledged QoS 1 publishes are re-sent after a reconnect, DUP set when the session is present", () => {
  const s = connected({ cleanSession: false });
  s.broker.sessionPresent = true;
  s.broker.ackPublishes = false;
  s.client.publish("q", "one", 1);
  s.client.publish("q", "two", 1);
  s.clock.settle();
  s.broker.drop();
  s.broker.ackPublishes = true;
  s.clock.advance(1000);
  const sent = s.broker.sent(3);
  deepEqual(sent.map((p) => [new TextDecoder().decode(p.payload), p.dup]), [["one", false], ["two", false], ["one", true], ["two", true]]);
  equal(sent[2].packetId, sent[0].packetId, "same packet id on re-send");
  equal(s.client.inflightCount, 0);
  equal(s.client.stats.resent, 2);
});

test("without a present session, in-flight publishes are re-sent as new (no DUP) and nothing is lost", () => {
  const s = connected();
  s.broker.ackPublishes = false;
  s.client.publish("q", "kept", 1);
  s.clock.settle();
  s.broker.drop();
  s.broker.ackPublishes = true;
  s.clock.advance(1000);
  deepEqual(s.broker.sent(3).map((p) => p.dup), [false, false]);
  equal(s.client.inflightCount, 0);
});

test("an operation timeout reports the late ack once and creates no duplicate; a late PUBACK is counted", () => {
  const s = connected({ operationTimeoutMs: 2000, keepAliveSeconds: 0 });
  s.broker.ackPublishes = false;
  const statuses: number[] = [];
  s.client.publish("slow", "x", 1, false, (status) => statuses.push(status));
  s.clock.advance(1999);
  deepEqual(statuses, []);
  s.clock.advance(1);
  deepEqual(statuses, [AckStatus.TimedOut]);
  s.clock.advance(30000);
  equal(s.broker.sent(3).length, 1, "never re-sent behind the caller's back on the same connection");
  equal(s.client.inflightCount, 1, "still in flight");
  s.broker.deliver(puback(s.broker.sent(3)[0].packetId));
  s.clock.settle();
  deepEqual(statuses, [AckStatus.TimedOut]);
  equal(s.client.stats.lateAcknowledged, 1);
  equal(s.client.inflightCount, 0);
});

test("a PUBACK for an unknown packet id is a protocol error", () => {
  const s = connected();
  s.broker.deliver(puback(4242));
  s.clock.settle();
  ok(s.errors.some((e) => e.code === ErrorCode.Protocol && e.message.indexOf("unknown packet id 4242") >= 0));
});

test("a throwing callback is reported as an error event and the client carries on", () => {
  const s = connected();
  s.client.subscribe("boom", 1, () => {
    throw new Error("handler bug");
  });
  s.clock.settle();
  s.broker.publish("boom", "1", 1);
  s.broker.publish("boom", "2", 1);
  s.clock.settle();
  equal(s.client.stats.callbackErrors, 2);
  ok(s.errors.every((e) => e.code === ErrorCode.Callback && e.message.indexOf("handler bug") >= 0));
  equal(s.broker.sent(4).length, 2, "both messages still acknowledged");
  equal(s.count("message"), 2);
  equal(s.client.stateName, "online");
});

test("calling the client from inside callbacks works: publish in a message handler, disconnect in online", () => {
  const s = connected();
  s.client.subscribe("ping", 1, (m) => {
    s.client.publish("pong", m.payload, 1);
  });
  s.clock.settle();
  s.broker.publish("ping", "hello", 1);
  s.clock.settle();
  deepEqual(s.published(), ["hello"]);
  s.client.on("online", () => s.client.disconnect());
  s.broker.drop();
  s.clock.advance(1000);
  equal(s.client.stateName, "idle");
  equal(s.broker.sent(14).length, 1);
});

test("invalid requests throw at the call and change nothing", () => {
  const s = connected();
  const before = s.broker.received.length;
  throws(() => s.client.publish("a/+/b", "x"), "wildcards");
  throws(() => s.client.publish("", "x"), "empty");
  throws(() => s.client.publish("t", "x", 2), "qos must be 0 or 1");
  throws(() => s.client.publish("t", 42 as never), "payload must be");
  throws(() => s.client.publish("t", "\ud800"), "UTF-8");
  throws(() => s.client.publish("t", "x", 0, "yes" as never), "retain must be a boolean");
  throws(() => s.client.publish("t", "x".repeat(5000)), "exceeds maxPacketBytes");
  throws(() => s.client.subscribe("a/#/b"), "'#' must be the last level");
  throws(() => s.client.subscribe("a+"), "whole level");
  throws(() => s.client.subscribe("ok", 1, "handler" as never), "onMessage must be a function");
  throws(() => s.client.unsubscribe(7 as never), "must be a string");
  equal(s.broker.received.length, before);
  equal(s.client.queuedCount, 0);
  equal(s.client.subscriptionCount(), 0);
  equal(s.client.stateName, "online");
});

test("steady-state publishing does not re-arm the timer per message", () => {
  const s = connected({ keepAliveSeconds: 60 });
  const before = s.clock.timerSets;
  for (let i = 0; i < 100; i++) s.client.publish("t", "x", 0);
  equal(s.clock.timerSets, before);
});
