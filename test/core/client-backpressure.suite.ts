// A transport with no room is not a lost link: QoS 1 requests wait in the in-flight window and go
// out in order when it drains, QoS 0 publishes wait in the offline queue, control packets use the
// transport's reserve, and a link lost while writes wait recovers as usual.
import { Accepted, AckStatus, ErrorCode } from "../../modules/types";
import { deepEqual, equal, ok, test } from "../harness";
import { connected } from "../support/session";

function label(prefix: string, i: number): string {
  return prefix + (i < 10 ? "0" + i : String(i));
}

function labels(prefix: string, from: number, to: number): string[] {
  const out: string[] = [];
  for (let i = from; i < to; i++) out.push(label(prefix, i));
  return out;
}

test("a QoS 1 window larger than the transport's room delivers everything, in order, with no reconnect and no duplicate", () => {
  const s = connected({ inflightWindow: 40, inflightBytes: 8192, keepAliveSeconds: 0 });
  s.broker.capacity = 50; // five 10-byte PUBLISHes
  s.broker.drainEveryMs = 1;
  const results: number[] = [];
  const acks: number[] = [];
  for (let i = 0; i < 100; i++) results.push(s.client.publish("q", label("m", i), 1, false, (status) => acks.push(status)));
  deepEqual(results.slice(0, 5), [Accepted.Sent, Accepted.Sent, Accepted.Sent, Accepted.Sent, Accepted.Sent]);
  equal(results[5], Accepted.Queued, "no room: kept, not a lost link");
  equal(s.client.stateName, "online");
  s.clock.advance(1000);
  ok(s.broker.refusedWrites > 0, "the transport did refuse writes");
  equal(s.broker.opens, 1, "no reconnect");
  equal(s.count("offline"), 0);
  deepEqual(s.published(), labels("m", 0, 100), "every message once, in order");
  ok(s.broker.sent(3).every((p) => p.dup === false), "no DUP");
  equal(acks.length, 100);
  ok(acks.every((status) => status === AckStatus.Acknowledged));
  equal(s.client.inflightCount, 0);
  equal(s.client.queuedCount, 0);
  equal(s.client.stats.resent, 0);
});

test("the operation timeout of a request that waited for the transport counts from its write", () => {
  const s = connected({ operationTimeoutMs: 1000, keepAliveSeconds: 0 });
  s.broker.capacity = 30; // three 10-byte PUBLISHes; drained only by hand
  s.broker.ackPublishes = false;
  const timedOut: number[] = [];
  for (let i = 0; i < 6; i++) s.client.publish("q", label("t", i), 1, false, (status) => status === AckStatus.TimedOut && timedOut.push(i));
  equal(s.client.inflightCount, 6);
  s.clock.advance(2000);
  deepEqual(timedOut, [0, 1, 2], "only the written ones are late");
  s.broker.drain(); // the broker takes the first three; the client writes the next three now
  equal(s.broker.bufferedBytes, 30);
  s.clock.advance(999);
  deepEqual(timedOut, [0, 1, 2]);
  s.clock.advance(1);
  deepEqual(timedOut, [0, 1, 2, 3, 4, 5]);
  equal(s.broker.opens, 1);
});

test("a QoS 0 burst beyond the transport's room is neither lost nor a reconnect, and keeps its order with later publishes", () => {
  const s = connected({ keepAliveSeconds: 0 });
  s.broker.capacity = 40; // five 8-byte QoS 0 PUBLISHes
  s.broker.drainEveryMs = 1;
  const results: number[] = [];
  for (let i = 0; i < 30; i++) results.push(s.client.publish("q", label("b", i)));
  results.push(s.client.publish("q", "b30", 1));
  for (let i = 31; i < 40; i++) results.push(s.client.publish("q", label("b", i)));
  deepEqual(results.slice(0, 6), [Accepted.Sent, Accepted.Sent, Accepted.Sent, Accepted.Sent, Accepted.Sent, Accepted.Queued]);
  equal(s.client.queuedCount, 35, "the rest wait in the offline queue");
  s.clock.advance(100); // far less than 35 drain intervals: written as the transport drains, not paced
  equal(s.broker.opens, 1, "no reconnect");
  equal(s.count("offline"), 0);
  equal(s.count("drop"), 0);
  deepEqual(s.published(), labels("b", 0, 40), "nothing lost, FIFO order kept across QoS levels");
  equal(s.client.queuedCount, 0);
  equal(s.client.inflightCount, 0);
});

test("a SUBSCRIBE made while the transport is full waits in the window and completes when it drains", () => {
  const s = connected({ keepAliveSeconds: 0 });
  s.broker.capacity = 20;
  s.client.publish("q", label("f", 0), 1);
  s.client.publish("q", label("f", 1), 1);
  const acks: number[] = [];
  equal(s.client.subscribe("cmd/#", 1, undefined, (status) => acks.push(status)), Accepted.Queued);
  equal(s.broker.sent(8).length, 0);
  s.broker.drainEveryMs = 1;
  s.broker.drain();
  s.clock.advance(10);
  deepEqual(acks, [AckStatus.Acknowledged]);
  equal(s.broker.subscriptions.get("cmd/#"), 1);
  equal(s.broker.opens, 1);
});

test("PUBACKs use the transport's control reserve while it is full; when even that is exhausted the link is given up, never a PUBACK lost", () => {
  const s = connected({ keepAliveSeconds: 0, cleanSession: false });
  s.client.subscribe("in/#", 1);
  s.clock.settle();
  s.broker.capacity = 20;
  s.broker.reserve = 8; // two PUBACKs
  s.client.publish("q", label("p", 0), 1);
  s.client.publish("q", label("p", 1), 1);
  s.client.publish("q", label("p", 2), 1); // refused: waits
  s.broker.publish("in/a", "1", 1);
  s.broker.publish("in/b", "2", 1);
  s.clock.settle();
  equal(s.messages.length, 2);
  equal(s.broker.bufferedBytes, 28, "both PUBACKs taken from the reserve");
  equal(s.broker.opens, 1);
  s.broker.drain(); // p00, p01 and both PUBACKs reach the broker; p02 is written now
  s.clock.settle();
  s.broker.drain();
  s.clock.settle();
  equal(s.broker.sent(4).length, 2, "the broker got both PUBACKs");
  equal(s.client.inflightCount, 0);
  // The broker stops reading: data is refused, then the reserve runs out.
  for (let i = 3; i < 6; i++) s.client.publish("q", label("p", i), 1);
  s.broker.publish("in/c", "3", 1);
  s.broker.publish("in/d", "4", 1);
  s.broker.publish("in/e", "5", 1);
  s.clock.settle();
  equal(s.count("offline"), 1, "the third PUBACK finds no room: the link is given up");
  ok(s.events.some((e) => e.name === "offline" && e.detail.indexOf("no room for a control packet") >= 0));
  equal(s.errors.filter((e) => e.code === ErrorCode.Protocol).length, 0);
});

test("a link lost while writes wait recovers: written requests re-sent with DUP, the rest as first sends, then the queue", () => {
  const s = connected({ cleanSession: false, keepAliveSeconds: 0, inflightWindow: 20 });
  s.broker.sessionPresent = true;
  s.broker.capacity = 30; // three 10-byte PUBLISHes; drained by hand until the drop
  for (let i = 0; i < 10; i++) s.client.publish("q", label("r", i), 1);
  equal(s.client.publish("q", "z0"), Accepted.Queued, "QoS 0 waits behind the QoS 1 requests");
  s.broker.drain(); // r00-r02 reach the broker; r03-r05 are written into the transport
  s.broker.drop(); // before any PUBACK comes back: r03-r05 are lost with the transport's buffer
  s.broker.drainEveryMs = 1;
  s.clock.advance(10000);
  equal(s.broker.opens, 2);
  equal(s.count("offline"), 1);
  const sent = s.broker.sent(3).map((p) => new TextDecoder().decode(p.payload as Uint8Array) + (p.dup ? "+dup" : ""));
  deepEqual(sent, [
    "r00", "r01", "r02",
    "r00+dup", "r01+dup", "r02+dup", "r03+dup", "r04+dup", "r05+dup",
    "r06", "r07", "r08", "r09", "z0",
  ]);
  equal(s.client.stats.resent, 6);
  equal(s.client.inflightCount, 0);
  equal(s.client.queuedCount, 0);
  equal(s.client.stateName, "online");
});
