// The broker (Mosquitto, persistence on) is killed and restarted 20 times while two real clients
// publish QoS 1 at a steady rate: one with plain exponential backoff, one with full jitter. An
// MQTT.js observer with a persistent session counts what arrives. No accepted message may be lost;
// duplicates are counted; every reconnect delay matches the configuration, and the time the client
// really waited matches the delay it announced.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { RunningMosquitto } from "../../tools/mosquitto.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { checkBackoff, ClientRig, prepareHost, Observer, reportFigure, sleep, startTlsBroker, summarise, waitFor } from "./kit.ts";
import { announceScenarios, progress } from "./progress.ts";

announceScenarios(import.meta.filename);

const RESTARTS = Number(process.env.IOTLINK_RESTARTS ?? 20);
const BACKOFF = { baseMs: 40, maxMs: 640, stableMs: 500 };
const PUBLISH_INTERVAL_MS = 10;

let fixtures: Fixtures;
let broker: RunningMosquitto;
let observer: Observer;
const rigs: { rig: ClientRig; stream: string; jitter: boolean }[] = [];

before(async () => {
  fixtures = createFixtures();
  broker = await startTlsBroker(fixtures, { persistence: true });
  observer = await Observer.start(broker, fixtures, "restart/#", "restart-observer");
});

after(async () => {
  for (const { rig } of rigs) rig.client.disconnect();
  await observer?.close();
  await broker?.stop();
  if (fixtures) removeFixtures(fixtures);
});

test(`broker killed and restarted ${RESTARTS} times under steady QoS 1 publishing: nothing accepted is lost, backoff as configured`, { timeout: 150_000 }, async () => {
  const started = performance.now();
  for (const [stream, jitter] of [["plain", false], ["jitter", true]] as const) {
    const host = await prepareHost("restart-" + stream, fixtures);
    const rig = new ClientRig(host, {
      port: broker.port,
      clientId: "restart-" + stream,
      keepAliveSeconds: 5,
      connectTimeoutMs: 3000,
      backoff: { ...BACKOFF, jitter },
      queueEntries: 4000,
      queueBytes: 128 * 1024,
      inflightWindow: 20,
      inflightBytes: 8192,
      drainIntervalMs: 1,
      operationTimeoutMs: 10_000,
    });
    rigs.push({ rig, stream, jitter });
    rig.client.connect();
  }
  await waitFor(() => rigs.every(({ rig }) => rig.online), 10_000, "both clients online");

  let seq = 0;
  const publisher = setInterval(() => {
    seq++;
    for (const { rig, stream } of rigs) observer.ledger(stream).publish(rig.client, "restart/" + stream, seq, 1);
  }, PUBLISH_INTERVAL_MS);

  const downtimes: number[] = [];
  try {
    for (let round = 1; round <= RESTARTS; round++) {
      // Up for a while (sometimes long enough to count as stable, sometimes not), then down.
      await waitFor(() => rigs.every(({ rig }) => rig.online), 20_000, () => `round ${round}: both clients online again; ${rigs.map(({ rig }) => rig.tail()).join(" | ")}`);
      await sleep(250 + ((round * 137) % 500));
      const down = performance.now();
      await broker.kill();
      await sleep(150 + ((round * 211) % 700));
      await broker.restart();
      downtimes.push(performance.now() - down);
      progress(`restart ${round}/${RESTARTS} done`);
    }
    await waitFor(() => rigs.every(({ rig }) => rig.online), 20_000, "both clients online after the last restart");
    await sleep(300);
  } finally {
    clearInterval(publisher);
  }

  // Everything accepted must reach the broker, then the observer.
  await waitFor(() => rigs.every(({ rig }) => rig.client.queuedCount === 0 && rig.client.inflightCount === 0), 30_000, () => "queues and in-flight windows empty: " + rigs.map(({ rig }) => `${rig.client.queuedCount}/${rig.client.inflightCount}`).join(", "));
  await waitFor(() => rigs.every(({ stream }) => observer.ledger(stream).lost().length === 0), 30_000, () => "every accepted message at the observer; missing " + rigs.map(({ stream }) => stream + ": " + observer.ledger(stream).lost().slice(0, 20).join(",")).join("; "));

  for (const { rig, stream, jitter } of rigs) {
    const ledger = observer.ledger(stream);
    const backoff = checkBackoff(rig, BACKOFF.baseMs, BACKOFF.maxMs, jitter);
    const lateness = summarise(backoff.lateness);
    const figures = {
      restarts: RESTARTS,
      published: ledger.published,
      accepted: ledger.accepted.size,
      lost: ledger.lost().length,
      duplicates: ledger.duplicates(),
      dropped: rig.client.stats.dropped,
      offline: rig.count("offline"),
      onlines: rig.count("online"),
      reconnectingEvents: backoff.events,
      maxAttempt: Math.max(...rig.named("reconnecting").map((event) => event.b)),
      delays: [...new Set(rig.named("reconnecting").map((event) => event.a))].sort((a, b) => a - b).slice(0, 12),
      delayOutOfRange: backoff.outOfRange.length,
      waitMinusDelayMs: { min: +lateness.min.toFixed(1), median: +lateness.median.toFixed(1), max: +lateness.max.toFixed(1) },
      resent: rig.client.stats.resent,
      timedOut: rig.client.stats.timedOut,
      downtimeMs: summarise(downtimes.map((value) => Math.round(value))),
      seconds: +((performance.now() - started) / 1000).toFixed(1),
    };
    await reportFigure("broker-restart-" + stream, figures);
    assert.equal(ledger.lost().length, 0, stream + ": lost " + ledger.lost().join(","));
    assert.equal(rig.client.stats.dropped, 0, stream + ": the queue was big enough, nothing dropped");
    assert.ok(rig.count("offline") >= RESTARTS, stream + ": every restart was seen as a lost session");
    assert.deepEqual(backoff.outOfRange, [], stream + ": every announced delay matches the configuration");
    assert.ok(backoff.events >= RESTARTS, stream + ": a reconnect was scheduled after every loss");
    assert.ok(lateness.min >= -2, stream + ": never reconnected before the announced delay: " + lateness.min);
    assert.ok(lateness.max < 500, stream + ": the real wait is the announced delay (+ timer and TLS start-up): " + lateness.max);
    if (!jitter) assert.ok(figures.maxAttempt >= 2, stream + ": the delay doubled at least once");
    rig.client.disconnect();
  }
});
