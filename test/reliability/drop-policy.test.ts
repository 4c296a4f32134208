// An outage longer than the offline queue, end to end against Mosquitto, with each drop policy:
// exactly the expected messages survive, in order; each dropped one is reported once (the `drop`
// event, its own ack callback, stats.dropped) and never arrives.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startFaultProxy, type FaultProxy } from "../../tools/fault-proxy.ts";
import type { RunningMosquitto } from "../../tools/mosquitto.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { ClientRig, Observer, prepareHost, reportFigure, startTlsBroker, waitFor } from "./kit.ts";
import { announceScenarios } from "./progress.ts";

announceScenarios(import.meta.filename);

let fixtures: Fixtures;
let broker: RunningMosquitto;
let proxy: FaultProxy;
let observer: Observer;
const rigs: ClientRig[] = [];

before(async () => {
  fixtures = createFixtures();
  broker = await startTlsBroker(fixtures);
  proxy = await startFaultProxy({ targetPort: broker.port });
  observer = await Observer.start(broker, fixtures, "drops/#", "drops-observer");
});

after(async () => {
  for (const rig of rigs) rig.client.disconnect();
  await observer?.close();
  await proxy?.close();
  await broker?.stop();
  if (fixtures) removeFixtures(fixtures);
});

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

for (const [policy, name] of [[0, "DROP_OLDEST"], [1, "DROP_NEWEST"]] as const) {
  test(`outage overflowing a queue of 10 with ${name}: exactly the expected 10 survive, in order; 5 drops, each reported once`, { timeout: 30_000 }, async () => {
    proxy.heal();
    const host = await prepareHost("drops", fixtures);
    const rig = new ClientRig(host, {
      port: proxy.port,
      clientId: "drops-" + name,
      keepAliveSeconds: 5,
      backoff: { baseMs: 50, maxMs: 200, stableMs: 1000 },
      queueEntries: 10,
      queueBytes: 4096,
      dropPolicy: policy,
      drainIntervalMs: 20,
    });
    rigs.push(rig);
    const stream = "drops-" + name;
    const topic = "drops/" + name;
    const ledger = observer.ledger(stream);
    const statuses = new Map<number, number[]>();
    const publish = (seq: number): number =>
      rig.client.publish(topic, stream + ":" + seq, 1, false, (status) => {
        statuses.set(seq, [...(statuses.get(seq) ?? []), status]);
        if (status === 2) ledger.dropped.add(seq);
      });
    const track = (seq: number): void => {
      ledger.published++;
      const accepted = publish(seq);
      if (accepted === 2) ledger.dropped.add(seq);
      else ledger.accepted.add(seq);
    };
    rig.client.connect();
    await rig.next("restored", 10_000, 0);
    for (const seq of range(1, 3)) track(seq);
    await waitFor(() => rig.client.inflightCount === 0, 5000, "first three acknowledged");

    // The outage: the link is cut and the broker is unreachable while 15 messages are published.
    proxy.refuse(true);
    proxy.cutNow();
    await waitFor(() => !rig.online, 5000, "offline");
    for (const seq of range(4, 18)) track(seq);
    const dropsDuringOutage = rig.named("drop").length;
    proxy.refuse(false);
    await rig.next("restored", 10_000, rig.events.findIndex((event) => event.name === "offline"));
    for (const seq of range(19, 21)) track(seq);
    await waitFor(() => rig.client.queuedCount === 0 && rig.client.inflightCount === 0, 10_000, "all sent and acknowledged");
    const kept = policy === 0 ? range(9, 18) : range(4, 13);
    const dropped = policy === 0 ? range(4, 8) : range(14, 18);
    const expected = [...range(1, 3), ...kept, ...range(19, 21)];
    await waitFor(() => expected.every((seq) => ledger.arrivals.has(seq)), 10_000, () => "expected messages at the observer: " + ledger.firstArrivalOrder().join(","));
    await new Promise((wait) => setTimeout(wait, 300)); // anything that should not arrive has had time to

    const order = ledger.firstArrivalOrder();
    const dropEvents = rig.named("drop").map((event) => event.detail);
    const droppedStatuses = dropped.map((seq) => (statuses.get(seq) ?? []).join("/"));
    await reportFigure("drop-policy-" + name, {
      queueEntries: 10,
      publishedDuringOutage: 15,
      arrived: order.length,
      order: order.join(","),
      dropEvents: dropEvents.length,
      statsDropped: rig.client.stats.dropped,
      duplicates: ledger.duplicates(),
    });
    assert.deepEqual(order, expected, "exactly the expected messages, in order");
    assert.deepEqual(ledger.droppedButArrived(), [], "no dropped message arrived");
    assert.equal(dropsDuringOutage, 5);
    assert.deepEqual(dropEvents, dropped.map(() => "publish " + topic), "one drop event per dropped message");
    assert.equal(rig.client.stats.dropped, 5);
    assert.deepEqual(droppedStatuses, dropped.map(() => "2"), "each dropped message's own callback got Dropped, once");
    for (const seq of expected) assert.deepEqual(statuses.get(seq), [0], `seq ${seq}: acknowledged once`);
    rig.client.disconnect();
  });
}
