// Defects found at the seams between the client's jobs (issue 13), each reproduced on the scripted
// broker and the virtual clock: subscriptions out of step with the broker, a disconnect that threw
// bytes away, calls from callbacks, oversized messages, a polling drain, packet ids, the
// resubscription deadline, and acknowledgements that did not match their request.
import { MqttClient } from "../../modules/client";
import * as packet from "../../modules/packet";
import { Accepted, AckStatus, DROP_OLDEST, ErrorCode } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { suback } from "../support/broker-codec";
import { ScriptedBroker } from "../support/scripted-broker";
import { connected, session } from "../support/session";

const FAST_BACKOFF = { baseMs: 100, maxMs: 100, stableMs: 1000 };

test("seams: an UNSUBSCRIBE dropped from the queue leaves the subscription as the broker has it, resubscribed after a clean reconnect", () => {
  const s = connected({ queueEntries: 2, dropPolicy: DROP_OLDEST, backoff: FAST_BACKOFF, drainIntervalMs: 10000 });
  const seen: string[] = [];
  s.client.subscribe("a", 1, (m) => seen.push(m.topic));
  s.clock.settle();
  s.broker.drop();
  s.client.publish("t", "0");
  s.client.unsubscribe("a");
  s.clock.advance(1000); // reconnected without a session; the drain sent "0", the UNSUBSCRIBE waits its turn
  equal(s.client.stateName, "draining");
  s.client.publish("t", "1");
  s.client.publish("t", "2"); // DROP_OLDEST: the UNSUBSCRIBE goes, never sent
  equal(s.count("drop"), 1);
  s.clock.advance(30000);
  equal(s.client.stateName, "online");
  ok(s.broker.subscriptions.has("a"), "the broker has a again: it was never unsubscribed");
  equal(s.client.subscriptionCount(), 1);
  s.broker.publish("a", "still here", 1);
  s.clock.settle();
  deepEqual(seen, ["a"], "messages on a still reach its handler");
});

test("seams: an offline subscribe and unsubscribe both dropped: the broker never hears of the filter", () => {
  const s = session({ queueEntries: 2, dropPolicy: DROP_OLDEST });
  s.client.subscribe("a", 1);
  s.client.unsubscribe("a");
  s.client.publish("t", "1");
  s.client.publish("t", "2");
  equal(s.count("drop"), 2);
  s.client.connect();
  s.clock.advance(1000);
  deepEqual(s.broker.sent(8).map((p) => p.filters), [], "no SUBSCRIBE for a filter the user removed");
  equal(s.client.subscriptionCount(), 0);
  equal(s.broker.subscriptions.size, 0);
});

test("seams: a subscription counts once the broker confirmed it, and stops counting at its UNSUBACK", () => {
  const s = connected();
  s.broker.ackSubscriptions = false;
  s.client.subscribe("a", 1);
  s.clock.settle();
  equal(s.client.subscriptionCount(), 0, "not confirmed yet");
  const id = s.broker.sent(8)[0].packetId as number;
  s.broker.deliver(suback(id, [1]));
  s.clock.settle();
  equal(s.client.subscriptionCount(), 1);
});

test("seams: disconnect() lets the transport send what it took (a partly sent publish), then DISCONNECT, then closes", () => {
  const s = connected();
  s.broker.capacity = 1000; // bytes wait in the transport until it sends them
  equal(s.client.publish("t", "x".repeat(300), 0), Accepted.Sent);
  s.client.disconnect();
  equal(s.client.stateName, "closing");
  s.clock.settle();
  const types = s.broker.received.map((p) => p.type);
  deepEqual(types.slice(-2), [3, 14], "the PUBLISH whole, then DISCONNECT");
  equal((s.broker.received[types.length - 2].payload as Uint8Array).length, 300);
  equal(s.broker.endsByClient, 1);
  equal(s.broker.closesByClient, 0, "not aborted");
  equal(s.client.stateName, "idle");
  equal(s.count("offline"), 1);
});

test("seams: a disconnect that cannot drain in time is aborted and reported; connect() while closing starts after the close", () => {
  const s = connected({ connectTimeoutMs: 2000 });
  s.broker.latencyMs = 5000; // the end never completes within the limit
  s.client.disconnect();
  equal(s.client.connect(), true, "accepted: starts once the old link is gone");
  s.clock.advance(2000);
  equal(s.errors[s.errors.length - 1].code, ErrorCode.DisconnectTimeout);
  equal(s.broker.closesByClient, 1, "aborted");
  equal(s.count("offline"), 1);
  equal(s.broker.opensWhileOpen, 0);
  s.broker.latencyMs = 0;
  s.clock.advance(6000);
  equal(s.client.stateName, "online");
  equal(s.count("online"), 2);
});

test("seams: disconnect(); connect() from a QoS 1 message handler: the new connection comes up, no PUBACK on it for the old message", () => {
  const s = connected();
  let calls = 0;
  s.client.subscribe("m", 1, () => {
    if (calls++ > 0) return;
    s.client.disconnect();
    s.client.connect();
  });
  s.clock.settle();
  s.broker.publish("m", "x", 1);
  s.clock.advance(1000);
  equal(s.errors.length, 0, s.errors.map((e) => e.message).join("; "));
  equal(s.client.stateName, "online");
  equal(s.count("online"), 2);
  equal(s.broker.opensWhileOpen, 0, "no socket left open");
});

test("seams: disconnect(); connect() from an offline listener: online again, one offline, no orphaned link", () => {
  const s = connected({ backoff: FAST_BACKOFF });
  let calls = 0;
  s.client.on("offline", () => {
    if (calls++ > 0) return;
    s.client.disconnect();
    s.client.connect();
  });
  s.broker.drop();
  s.clock.advance(1000);
  equal(s.client.stateName, "online");
  equal(s.count("offline"), 1, "no second, nested offline");
  equal(s.broker.opensWhileOpen, 0, "no orphaned socket");
  s.clock.advance(10000);
  equal(s.broker.opens, 2, "one reconnect, not one more from a forgotten backoff");
});

test("seams: disconnect(); connect() from an error listener after a refused CONNACK: no offline for a session that never came up", () => {
  const s = session({ backoff: FAST_BACKOFF });
  s.broker.connackCode = 5;
  let calls = 0;
  s.client.on("error", () => {
    if (calls++ > 0) return;
    s.broker.connackCode = 0;
    s.client.disconnect();
    s.client.connect();
  });
  s.client.connect();
  s.clock.advance(1000);
  equal(s.count("offline"), 0);
  equal(s.client.stateName, "online");
  equal(s.broker.opensWhileOpen, 0);
  equal(s.broker.opens, 2);
});

test("seams: events arrive after the state they report is complete: offline sees the reconnect already scheduled", () => {
  const s = connected({ backoff: FAST_BACKOFF });
  const seenAtOffline: string[] = [];
  s.client.on("offline", () => seenAtOffline.push(s.client.stateName));
  s.broker.drop();
  s.clock.settle();
  deepEqual(seenAtOffline, ["backoff"]);
  deepEqual(s.names("offline", "reconnecting"), ["offline", "reconnecting"]);
});

test("seams: the drain does not poll while the window is full: the acknowledgement moves it on", () => {
  const s = session({ inflightWindow: 1, drainIntervalMs: 0, operationTimeoutMs: 60000 });
  for (let i = 0; i < 5; i++) s.client.publish("t", "q" + i, 1);
  s.broker.ackPublishes = false;
  s.client.connect();
  s.clock.settle();
  equal(s.client.stateName, "draining");
  const sets = s.clock.timerSets;
  s.clock.advance(1000);
  ok(s.clock.timerSets - sets < 5, "timer armed " + (s.clock.timerSets - sets) + " times while waiting for one PUBACK");
  s.broker.ackPublishes = true;
  for (let i = 0; i < 5; i++) {
    const pending = s.broker.sent(3);
    s.broker.deliver(ScriptedBroker.puback(pending[pending.length - 1].packetId as number));
    s.clock.settle();
  }
  deepEqual(s.published(), ["q0", "q1", "q2", "q3", "q4"]);
  equal(s.count("restored"), 1);
});

test("seams: the in-flight window is at most 100 and subscriptions at most 1000, so a packet id is always free", () => {
  const base = session();
  const make = (extra: object) => () => new MqttClient({ clientId: "x", transport: base.broker, clock: base.clock, ...extra });
  throws(make({ inflightWindow: 101 }), "inflightWindow must be a whole number from 1 to 100, got 101");
  throws(make({ inflightWindow: 65535 }), "inflightWindow must be a whole number from 1 to 100");
  throws(make({ maxSubscriptions: 1001 }), "maxSubscriptions must be a whole number from 1 to 1000");
  ok(make({ inflightWindow: 100, maxSubscriptions: 1000 })() instanceof MqttClient);
});

test("seams: a resubscription the broker never answers times out, is reported, and the client reconnects with backoff", () => {
  const s = connected({ operationTimeoutMs: 2000, backoff: { baseMs: 500, maxMs: 500, stableMs: 60000 } });
  s.client.subscribe("a", 1);
  s.clock.settle();
  s.broker.ackSubscriptions = false;
  s.broker.drop();
  s.clock.advance(1000);
  equal(s.client.stateName, "resubscribing");
  s.clock.advance(2000);
  ok(s.errors.some((e) => e.code === ErrorCode.ResubscribeTimeout), s.errors.map((e) => e.code).join(", "));
  s.broker.ackSubscriptions = true;
  s.clock.advance(3000);
  equal(s.client.stateName, "online");
  equal(s.count("restored"), 2);
});

test("seams: a SUBACK with more return codes than the SUBSCRIBE had filters is a protocol error", () => {
  const s = connected();
  s.broker.ackSubscriptions = false;
  s.client.subscribe("a", 1);
  s.clock.settle();
  s.broker.deliver(suback(s.broker.sent(8)[0].packetId as number, [1, 1]));
  s.clock.settle();
  equal(s.errors[0].code, ErrorCode.Protocol);
  ok(s.errors[0].message.indexOf("SUBACK with 2 return codes for 1 filter") >= 0, s.errors[0].message);
});

test("seams: session present in answer to a clean-session CONNECT is a protocol error, never online", () => {
  const s = session({ backoff: FAST_BACKOFF });
  s.broker.sessionPresent = true;
  s.client.connect();
  s.clock.settle();
  equal(s.count("online"), 0);
  equal(s.errors[0].code, ErrorCode.Protocol);
  ok(s.errors[0].message.indexOf("session present") >= 0, s.errors[0].message);
});

test("seams: publish() says Sent only for bytes the transport took; one moved into the window unsent is Queued", () => {
  const s = connected();
  s.broker.capacity = 100;
  equal(s.client.publish("t", "x".repeat(60), 0), Accepted.Sent);
  equal(s.client.publish("t", "y".repeat(60), 0), Accepted.Queued, "no room: waits in the queue");
  s.broker.capacity = 140; // room for the queued one, not for one more, and no writable callback yet
  let status = -1;
  equal(s.client.publish("t", "z".repeat(60), 1, false, (st) => (status = st)), Accepted.Queued, "the QoS 1 request is in the window, unsent");
  equal(s.client.inflightCount, 1);
  s.broker.capacity = 1000;
  s.broker.drain();
  s.clock.settle();
  s.broker.drain();
  s.clock.settle();
  equal(status, AckStatus.Acknowledged);
});

test("seams: the packet module carries no reader only tests used (getPacketId)", () => {
  const exported = Object.keys(packet);
  ok(exported.indexOf("setPacketId") >= 0, "the module's exports are listed");
  equal(exported.indexOf("getPacketId"), -1);
});

test("seams: a layer above the client shares its one timer (TimerUser): called at its deadline, a throwing one removed and reported, at most 4", () => {
  const s = connected({ keepAliveSeconds: 0 });
  const fired: number[] = [];
  let due = -1;
  const user = {
    nextDeadline: (now: number) => (due < 0 ? -1 : Math.max(0, due - now)),
    onDeadline: (now: number) => {
      fired.push(now);
      due = -1;
    },
  };
  s.client.addTimerUser(user);
  due = s.client.now() + 1500;
  s.client.reschedule();
  s.clock.advance(1000);
  deepEqual(fired, []);
  s.clock.advance(1000);
  deepEqual(fired, [1500]);
  const thrower = { nextDeadline: () => 0, onDeadline: () => { throw new Error("boom"); } };
  s.client.addTimerUser(thrower);
  s.clock.advance(10);
  ok(s.errors.some((e) => e.code === ErrorCode.Callback && e.message.indexOf("removed: boom") >= 0), "the throw is an error event, and the user removed");
  s.client.addTimerUser({ nextDeadline: () => -1, onDeadline: () => undefined });
  s.client.addTimerUser({ nextDeadline: () => -1, onDeadline: () => undefined });
  s.client.addTimerUser({ nextDeadline: () => -1, onDeadline: () => undefined });
  throws(() => s.client.addTimerUser({ nextDeadline: () => -1, onDeadline: () => undefined }), "serves 4 users already");
  equal(s.client.stateName, "online");
});
