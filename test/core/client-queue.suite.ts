// The offline queue and recovery: queueing while not restored, drop policies with exact
// accounting, paced draining, mid-drain loss, resubscription and offline (un)subscribe.
import { Accepted, AckStatus, DROP_NEWEST, DROP_OLDEST, ErrorCode } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { connected, session } from "../support/session";
import { SMALLEST_REQUEST_BYTES } from "../../modules/client";
import { packetSize, publishRemaining } from "../../modules/packet";

function range(from: number, to: number): string[] {
  const values: string[] = [];
  for (let i = from; i < to; i++) values.push("m" + i);
  return values;
}

for (const policy of [DROP_OLDEST, DROP_NEWEST]) {
  const name = policy === DROP_OLDEST ? "DROP_OLDEST" : "DROP_NEWEST";
  test("queue of 10, 15 offline publishes: 3 + 10 + 3 delivered with " + name, () => {
    const s = connected({ queueEntries: 10, queueBytes: 4096, dropPolicy: policy, drainIntervalMs: 100 });
    for (const payload of range(0, 3)) equal(s.client.publish("data", payload, 1), Accepted.Sent);
    s.clock.settle();
    s.broker.drop();
    const results = range(3, 18).map((payload) => s.client.publish("data", payload, 1));
    // The caller of an accepted request is never told it failed.
    deepEqual(results, policy === DROP_OLDEST ? new Array(15).fill(Accepted.Queued) : [...new Array(10).fill(Accepted.Queued), ...new Array(5).fill(Accepted.Dropped)]);
    equal(s.count("drop"), 5);
    equal(s.client.stats.dropped, 5);
    s.clock.advance(1000); // backoff, reconnect
    s.clock.advance(2000); // drain at 10 Hz
    equal(s.count("restored"), 2);
    for (const payload of range(18, 21)) s.client.publish("data", payload, 1);
    s.clock.settle();
    const kept = policy === DROP_OLDEST ? range(8, 18) : range(3, 13);
    deepEqual(s.published(), [...range(0, 3), ...kept, ...range(18, 21)]);
    const dropped = s.events.filter((e) => e.name === "drop").map((e) => e.detail);
    deepEqual(dropped, (policy === DROP_OLDEST ? range(3, 8) : range(13, 18)).map(() => "publish data"));
    equal(s.client.stats.acknowledged, 16);
  });
}

test("DROP_OLDEST reports the dropped request to its own ack callback", () => {
  const s = session({ queueEntries: 2, queueBytes: 1024, dropPolicy: DROP_OLDEST });
  const statuses: string[] = [];
  s.client.publish("a", "first", 1, false, (status) => statuses.push("first:" + status));
  s.client.publish("a", "second", 1, false, (status) => statuses.push("second:" + status));
  s.client.publish("a", "third", 1, false, (status) => statuses.push("third:" + status));
  deepEqual(statuses, ["first:" + AckStatus.Dropped]);
  s.client.connect();
  s.clock.advance(2000);
  deepEqual(statuses, ["first:" + AckStatus.Dropped, "second:" + AckStatus.Acknowledged, "third:" + AckStatus.Acknowledged]);
});

test("the byte limit of the queue is enforced as well as the entry limit", () => {
  const s = session({ queueEntries: 100, queueBytes: 200, dropPolicy: DROP_NEWEST });
  let accepted = 0;
  for (let i = 0; i < 20; i++) if (s.client.publish("t", "x".repeat(40), 0) === Accepted.Queued) accepted++;
  equal(accepted, 4, "four 45-byte packets fit in 200 bytes");
  equal(s.count("drop"), 16);
});

test("the smallest queue the client takes holds the smallest request, and delivers it", () => {
  equal(packetSize(publishRemaining(1, 0, 0)), SMALLEST_REQUEST_BYTES, "a QoS 0 PUBLISH to a one-byte topic with no payload");
  const s = session({ queueEntries: 1, queueBytes: SMALLEST_REQUEST_BYTES });
  throws(() => s.client.publish("ab", ""), "request of 6 bytes is larger than the whole offline queue (5 bytes)");
  equal(s.client.publish("a", ""), Accepted.Queued);
  s.client.connect();
  s.clock.advance(2000);
  deepEqual(s.broker.sent(3).map((packet) => packet.topic), ["a"]);
});

test("a request larger than the whole queue is refused at the call, nothing queued", () => {
  const s = session({ queueEntries: 4, queueBytes: 100 });
  throws(() => s.client.publish("t", "x".repeat(200)), "larger than the whole offline queue");
  equal(s.client.queuedCount, 0);
  equal(s.count("drop"), 0);
});

test("with queueing disabled, an offline request fails clearly at the call", () => {
  const s = session({ queueEntries: 0 });
  let error: unknown;
  try {
    s.client.publish("t", "x");
  } catch (thrown) {
    error = thrown;
  }
  equal((error as { code: string }).code, ErrorCode.NotAccepted);
  ok((error as Error).message.indexOf("queueing is disabled") >= 0);
});

test("draining replays the queue FIFO at the configured rate, then reports restored once", () => {
  const s = session({ drainIntervalMs: 500 });
  for (const payload of range(0, 5)) s.client.publish("d", payload, 0);
  s.client.connect();
  s.clock.settle();
  deepEqual(s.published(), ["m0"], "the first request goes out with CONNACK");
  equal(s.client.stateName, "draining");
  s.client.publish("d", "late", 0); // made during the drain: goes to the tail
  s.clock.advance(499);
  equal(s.published().length, 1);
  s.clock.advance(1);
  equal(s.published().length, 2);
  s.clock.advance(2000);
  deepEqual(s.published(), [...range(0, 5), "late"]);
  equal(s.count("restored"), 1);
  equal(s.client.stateName, "online");
  s.client.publish("d", "direct", 0);
  equal(s.published().length, 7);
});

test("a link lost mid-drain stops the drain at once; the rest stays queued for the next connection", () => {
  const s = session({ drainIntervalMs: 1000, backoff: { baseMs: 1000, maxMs: 1000, stableMs: 60000 } });
  s.client.subscribe("cmd", 1);
  for (const payload of range(0, 6)) s.client.publish("d", payload, 0);
  s.client.connect();
  s.clock.advance(1500); // SUBSCRIBE first (queued first), then m0
  equal(s.client.stateName, "draining");
  const before = s.published().length;
  s.broker.drop();
  equal(s.client.queuedCount, 7 - 1 - before);
  s.clock.advance(999); // offline: nothing may be popped
  equal(s.client.queuedCount, 7 - 1 - before);
  s.clock.advance(10000);
  deepEqual(s.published(), range(0, 6), "every QoS 0 request delivered exactly once");
  // The second connection re-subscribed the now confirmed filter.
  deepEqual(s.broker.sent(8).map((p) => p.filters), [["cmd"], ["cmd"]]);
  equal(s.count("restored"), 1);
});

test("offline subscribe B and unsubscribe A take effect after recovery", () => {
  const s = connected();
  const seen: string[] = [];
  s.client.subscribe("a/topic", 1, (m) => seen.push("A:" + m.topic));
  s.clock.settle();
  s.broker.drop();
  equal(s.client.subscribe("b/topic", 1, (m) => seen.push("B:" + m.topic)), Accepted.Queued);
  equal(s.client.unsubscribe("a/topic"), Accepted.Queued);
  s.clock.advance(5000);
  equal(s.count("restored"), 2);
  deepEqual(Array.from(s.broker.subscriptions.keys()), ["b/topic"]);
  s.broker.publish("a/topic", "1");
  s.broker.publish("b/topic", "2");
  s.clock.settle();
  deepEqual(seen, ["B:b/topic"]);
  equal(s.client.subscriptionCount(), 1);
});

test("a dropped queued SUBSCRIBE is forgotten, so it is never re-subscribed", () => {
  const s = session({ queueEntries: 1, queueBytes: 512, dropPolicy: DROP_OLDEST });
  s.client.subscribe("lost/filter", 0);
  s.client.publish("t", "x");
  deepEqual(s.events.filter((e) => e.name === "drop").map((e) => e.detail), ["subscribe lost/filter"]);
  equal(s.client.subscriptionCount(), 0);
  s.client.connect();
  s.clock.advance(3000);
  equal(s.broker.sent(8).length, 0);
});

test("a refused subscription reports Refused to its callback and an error event, and is not re-subscribed", () => {
  const s = connected();
  s.broker.refusedFilters = ["forbidden/#"];
  const acks: number[][] = [];
  s.client.subscribe("forbidden/#", 1, undefined, (status, _id, granted) => acks.push([status, granted]));
  s.client.subscribe("allowed", 1, undefined, (status, _id, granted) => acks.push([status, granted]));
  s.clock.settle();
  deepEqual(acks, [[AckStatus.Refused, 0x80], [AckStatus.Acknowledged, 1]]);
  ok(s.errors.some((e) => e.code === ErrorCode.SubscriptionRefused));
  s.broker.drop();
  s.clock.advance(2000);
  deepEqual(s.broker.sent(8).slice(2).map((p) => p.filters), [["allowed"]]);
});

test("many subscriptions are re-sent in SUBSCRIBE packets of at most 8 filters", () => {
  const s = connected({ maxSubscriptions: 20 });
  for (let i = 0; i < 19; i++) s.client.subscribe("f/" + i, i % 2);
  s.clock.settle();
  s.broker.drop();
  s.clock.advance(2000);
  const resubscribes = s.broker.sent(8).slice(19);
  deepEqual(resubscribes.map((p) => (p.filters as string[]).length), [8, 8, 3]);
  deepEqual(resubscribes[2].requestedQos, [0, 1, 0]);
  equal(s.count("restored"), 2);
});

test("the subscription table is bounded and says so at the call", () => {
  const s = connected({ maxSubscriptions: 2 });
  s.client.subscribe("a", 0);
  s.client.subscribe("b", 0);
  s.client.subscribe("a", 1); // an update, not a new entry
  throws(() => s.client.subscribe("c", 0), "subscription table is full");
});
