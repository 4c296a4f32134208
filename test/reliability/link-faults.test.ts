// Link faults through the project's fault proxy (client <-> proxy <-> Mosquitto), with the real
// client over the Moddable host: cuts in both directions, cuts mid-packet (inside a TLS record, and
// inside an MQTT packet on a plain link), a cut in the middle of the drain, cuts during the TLS
// handshake, a half-open link (blackhole) found by keep-alive, and slow, 1-byte-fragmented delivery.
// After each, nothing accepted is lost.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { startFaultProxy, type FaultProxy } from "../../tools/fault-proxy.ts";
import { startMosquitto, type RunningMosquitto } from "../../tools/mosquitto.ts";
import type { DesktopHost } from "../../tools/desktop-build.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { ClientRig, Observer, prepareHost, reportFigure, sleep, startTlsBroker, summarise, waitFor, type RigOptions } from "./kit.ts";
import { announceScenarios } from "./progress.ts";

announceScenarios(import.meta.filename);

const KEEP_ALIVE_S = 2;
const BACKOFF = { baseMs: 50, maxMs: 400, stableMs: 1000 };

let fixtures: Fixtures;
let host: DesktopHost;
let tlsBroker: RunningMosquitto;
let plainBroker: RunningMosquitto;
let tlsProxy: FaultProxy;
let plainProxy: FaultProxy;
let tlsObserver: Observer;
let plainObserver: Observer;
const rigs: ClientRig[] = [];

before(async () => {
  fixtures = createFixtures();
  host = await prepareHost("link-faults", fixtures);
  tlsBroker = await startTlsBroker(fixtures);
  plainBroker = await startMosquitto({ logTypes: ["error", "warning", "notice", "information"], extraConfig: ["max_queued_messages 100000"] });
  tlsProxy = await startFaultProxy({ targetPort: tlsBroker.port });
  plainProxy = await startFaultProxy({ targetPort: plainBroker.port });
  tlsObserver = await Observer.start(tlsBroker, fixtures, "faults/#", "faults-observer");
  plainObserver = await Observer.start(plainBroker, undefined, "faults/#", "faults-observer-plain");
});

after(async () => {
  for (const rig of rigs) rig.client.disconnect();
  await tlsObserver?.close();
  await plainObserver?.close();
  await tlsProxy?.close();
  await plainProxy?.close();
  await tlsBroker?.stop();
  await plainBroker?.stop();
  if (fixtures) removeFixtures(fixtures);
});

function rig(name: string, plain = false, extra: Partial<RigOptions> = {}): ClientRig {
  // One client on the proxies at a time: a fault aimed at "the next link" must hit this one.
  for (const old of rigs) old.client.disconnect();
  const made = new ClientRig(host, {
    port: plain ? plainProxy.port : tlsProxy.port,
    plaintext: plain,
    clientId: "faults-" + name,
    keepAliveSeconds: KEEP_ALIVE_S,
    connectTimeoutMs: 4000,
    backoff: BACKOFF,
    queueEntries: 2000,
    queueBytes: 96 * 1024,
    inflightWindow: 10,
    drainIntervalMs: 5,
    operationTimeoutMs: 10_000,
    ...extra,
  });
  rigs.push(made);
  return made;
}

/** Publishes seq 1, 2, ... every `intervalMs` until stopped. */
function publishing(observer: Observer, client: ClientRig, stream: string, intervalMs = 20, padding = 0): () => void {
  let seq = 0;
  const timer = setInterval(() => observer.ledger(stream).publish(client.client, "faults/" + stream, ++seq, 1, padding), intervalMs);
  return () => clearInterval(timer);
}

/** Waits until everything accepted arrived; returns the stream's figures. */
async function settle(observer: Observer, client: ClientRig, stream: string): Promise<{ published: number; lost: number; duplicates: number }> {
  await waitFor(() => client.online && client.client.queuedCount === 0 && client.client.inflightCount === 0, 20_000, () => `${stream}: online, queue and window empty (${client.client.stateName} ${client.client.queuedCount}/${client.client.inflightCount}); ${client.tail()}`);
  const ledger = observer.ledger(stream);
  await waitFor(() => ledger.lost().length === 0, 15_000, () => `${stream}: every accepted message at the observer; missing ${ledger.lost().slice(0, 20).join(",")}`);
  assert.deepEqual(ledger.droppedButArrived(), []);
  return { published: ledger.published, lost: ledger.lost().length, duplicates: ledger.duplicates() };
}

test("link cut in both directions (RST and FIN) while publishing: reconnect, nothing lost", { timeout: 60_000 }, async () => {
  tlsProxy.heal();
  const r = rig("cut");
  r.client.connect();
  await r.next("restored", 10_000, 0);
  const stop = publishing(tlsObserver, r, "cut");
  const recoveries: number[] = [];
  for (let round = 0; round < 6; round++) {
    await waitFor(() => r.online, 10_000, "online");
    await sleep(300);
    const mark = r.events.length;
    const cutAt = r.now();
    assert.equal(tlsProxy.cutNow(round % 3 === 2 ? "fin" : "reset"), 1);
    const restored = await r.next("restored", 10_000, mark);
    recoveries.push(restored.at - cutAt);
  }
  stop();
  const figures = await settle(tlsObserver, r, "cut");
  await reportFigure("link-cut-both", { cuts: 6, ...figures, recoveryMs: summarise(recoveries.map(Math.round)), offline: r.count("offline") });
  assert.equal(r.count("offline"), 6);
});

test("link cut mid-packet (inside TLS records, both directions; inside MQTT packets on plain TCP): nothing lost", { timeout: 60_000 }, async () => {
  const results: Record<string, unknown> = {};
  for (const plain of [false, true]) {
    const proxy = plain ? plainProxy : tlsProxy;
    const observer = plain ? plainObserver : tlsObserver;
    proxy.heal();
    const stream = plain ? "midpacket-plain" : "midpacket-tls";
    const r = rig(stream, plain);
    // Subscribed to its own messages, so packets of some size travel down as well as up.
    let echoes = 0;
    r.client.subscribe("faults/" + stream, 1, () => echoes++);
    r.client.connect();
    await r.next("restored", 10_000, 0);
    const stop = publishing(observer, r, stream, 15, 120);
    const cuts: string[] = [];
    const budgets = [1, 3, 7, 13, 29, 61, 2, 5];
    for (let round = 0; round < budgets.length; round++) {
      await waitFor(() => r.online, 10_000, "online");
      await sleep(200);
      const direction = round % 2 === 0 ? "up" : "down";
      const mark = r.events.length;
      proxy.cutAfter(direction, budgets[round]!);
      await r.next("offline", 5000, mark);
      cuts.push(direction + "+" + budgets[round]);
    }
    stop();
    const figures = await settle(observer, r, stream);
    const protocolErrors = r.client.stats.protocolErrors;
    results[plain ? "plain" : "tls"] = { cuts: cuts.length, ...figures, echoes, protocolErrors };
    assert.equal(r.count("offline"), budgets.length);
    // A packet cut short is never taken for a whole one: no protocol error, the decoder resets.
    assert.equal(protocolErrors, 0, r.named("error").map((event) => event.detail).join("; "));
    r.client.disconnect();
  }
  await reportFigure("link-cut-mid-packet", results);
});

test("link cut in the middle of the drain: draining stops, the rest stays queued, all delivered in order", { timeout: 60_000 }, async () => {
  tlsProxy.heal();
  const r = rig("middrain", false, { drainIntervalMs: 40 });
  r.client.connect();
  await r.next("restored", 10_000, 0);
  tlsProxy.refuse(true);
  tlsProxy.cutNow();
  await waitFor(() => r.client.stateName === "backoff" || r.client.stateName === "opening", 5000, "offline");
  const ledger = tlsObserver.ledger("middrain");
  for (let seq = 1; seq <= 40; seq++) ledger.publish(r.client, "faults/middrain", seq, 1);
  assert.equal(r.client.queuedCount, 40);
  const mark = r.events.length;
  tlsProxy.refuse(false);
  await waitFor(() => r.client.stateName === "draining" && r.client.queuedCount <= 30, 10_000, "draining under way");
  const queuedAtCut = r.client.queuedCount;
  tlsProxy.cutNow();
  const offline = await r.next("offline", 5000, mark);
  // Events come once the state they report is complete: the last state before offline is the one the cut ended.
  const stateBefore = r.events.slice(mark, r.events.indexOf(offline)).filter((event) => event.name === "state").at(-1)?.detail;
  const queuedAfterCut = r.client.queuedCount;
  const restored = await r.next("restored", 15_000, r.events.indexOf(offline));
  const figures = await settle(tlsObserver, r, "middrain");
  const order = ledger.firstArrivalOrder();
  await reportFigure("link-cut-mid-drain", { queued: 40, queuedAtCut, queuedAfterCut, stateBeforeCut: stateBefore, ...figures, restoredAfterMs: Math.round(restored.at - offline.at) });
  assert.equal(stateBefore, "draining");
  assert.ok(queuedAfterCut >= queuedAtCut - 1 && queuedAfterCut > 0, `draining stopped at the cut: ${queuedAtCut} -> ${queuedAfterCut}`);
  assert.deepEqual(order, [...order].sort((a, b) => a - b), "first arrivals in publish order");
  assert.equal(order.length, 40);
});

test("link cut during the TLS handshake, at several points both ways: an error, backoff, then a normal session", { timeout: 60_000 }, async () => {
  tlsProxy.heal();
  const r = rig("handshake");
  r.client.connect();
  await r.next("restored", 10_000, 0);
  const points: [("up" | "down"), number][] = [["down", 0], ["down", 1], ["down", 5], ["down", 80], ["down", 700], ["up", 0], ["up", 3], ["up", 100]];
  const outcomes: string[] = [];
  for (const [direction, bytes] of points) {
    await waitFor(() => r.online, 10_000, "online");
    // The previous test's client disconnected gracefully: its link closes once its bytes are sent.
    await waitFor(() => tlsProxy.openLinks === 1, 5000, () => "only this client on the proxy (" + tlsProxy.openLinks + " links)");
    tlsProxy.cutAfter(direction, bytes, { next: true });
    const mark = r.events.length;
    tlsProxy.cutNow();
    const failed = await r.next("error", 5000, mark);
    const restored = await r.next("restored", 10_000, mark);
    const between = r.events.slice(mark, r.events.indexOf(failed));
    // The cut attempt never reached CONNACK: no online between the cut and its error.
    assert.equal(between.filter((event) => event.name === "online").length, 0, `${direction}+${bytes}: ${r.tail(12)}`);
    assert.match(failed.detail, /connect-failed: connection closed before CONNACK/);
    const reconnects = r.events.slice(r.events.indexOf(failed), r.events.indexOf(restored)).filter((event) => event.name === "reconnecting");
    assert.ok(reconnects.length >= 1, "backoff after the failed handshake");
    outcomes.push(`${direction}+${bytes}: ${failed.detail.replace(/^.*CONNACK: /, "")}`);
  }
  await reportFigure("link-cut-tls-handshake", { points: points.length, outcomes });
  assert.ok(!r.named("online").some((event) => event.detail === "undefined"));
});

test("TCP up but the TLS handshake never answered (blackholed from the first byte): connect timeout, backoff, recovery", { timeout: 30_000 }, async () => {
  tlsProxy.heal();
  const connectTimeoutMs = 1200;
  const r = rig("hung-handshake", false, { connectTimeoutMs });
  r.client.connect();
  await r.next("restored", 10_000, 0);
  const timeouts: number[] = [];
  for (let round = 0; round < 2; round++) {
    await waitFor(() => r.online, 10_000, "online");
    tlsProxy.blackhole(true, "both", { next: true });
    const mark = r.events.length;
    tlsProxy.cutNow();
    const failed = await r.next("error", connectTimeoutMs + 3000, mark);
    const opening = r.events.slice(mark, r.events.indexOf(failed)).filter((event) => event.name === "state" && event.detail === "opening").at(-1)!;
    assert.match(failed.detail, /^connect-timeout: no CONNACK within 1200 ms \(TCP\/TLS not established\)/);
    timeouts.push(failed.at - opening.at);
    await r.next("restored", 10_000, r.events.indexOf(failed));
    tlsProxy.heal();
  }
  const measured = summarise(timeouts.map(Math.round));
  await reportFigure("hung-tls-handshake", { connectTimeoutMs, measuredMs: measured });
  // From the start of the hung attempt ("opening") to its connect-timeout error.
  assert.ok(measured.min >= connectTimeoutMs - 2 && measured.max <= connectTimeoutMs + 200, JSON.stringify(measured));
  assert.equal(r.count("online"), 3);
});

test("half-open link (blackhole, sockets kept open): detected within 1.5 x keep-alive, then normal recovery", { timeout: 60_000 }, async () => {
  tlsProxy.heal();
  const r = rig("blackhole");
  r.client.connect();
  await r.next("restored", 10_000, 0);
  const stop = publishing(tlsObserver, r, "blackhole", 50);
  const detections: number[] = [];
  const recoveries: number[] = [];
  for (let round = 0; round < 3; round++) {
    await waitFor(() => r.online, 10_000, "online");
    await sleep(400 + round * 300);
    const mark = r.events.length;
    const start = r.now();
    tlsProxy.blackhole(true);
    const offline = await r.next("offline", KEEP_ALIVE_S * 1500 + 2000, mark);
    detections.push(offline.at - start);
    assert.match(offline.detail, /keep-alive timeout/);
    const restored = await r.next("restored", 10_000, mark);
    recoveries.push(restored.at - offline.at);
    tlsProxy.heal(); // cut the dead links
  }
  stop();
  const figures = await settle(tlsObserver, r, "blackhole");
  const detection = summarise(detections.map(Math.round));
  await reportFigure("half-open-blackhole", { keepAliveMs: KEEP_ALIVE_S * 1000, limitMs: KEEP_ALIVE_S * 1500, detectionMs: detection, recoveryMs: summarise(recoveries.map(Math.round)), ...figures });
  // Measured from the start of the blackhole, which is after the last byte received: never more than 1.5 x keep-alive (+ timer slack).
  assert.ok(detection.max <= KEEP_ALIVE_S * 1500 + 100, `detection ${detection.max} ms > 1.5 x keep-alive`);
});

test("slow, 1-byte-fragmented delivery both ways (TLS and plain), with latency: every message decoded exactly", { timeout: 90_000 }, async () => {
  const sizes = [0, 1, 2, 100, 127, 128, 500, 1000, 1500, 1900];
  const results: Record<string, unknown> = {};
  for (const plain of [false, true]) {
    const proxy = plain ? plainProxy : tlsProxy;
    proxy.heal();
    const stream = plain ? "fragment-plain" : "fragment-tls";
    // The whole session, handshake included, travels in 1-byte segments with 30 ms latency.
    proxy.fragment("both", 1, 0);
    proxy.latency("both", 30);
    const bytesBefore = proxy.stats.bytesUp + proxy.stats.bytesDown;
    const r = rig(stream, plain, { keepAliveSeconds: 5 });
    const received: string[] = [];
    r.client.subscribe("faults/" + stream + "/echo", 1, (message) => received.push(Buffer.from(message.payload).toString()));
    const started = r.now();
    r.client.connect();
    await r.next("restored", 20_000, 0);
    const connectMs = r.now() - started;
    const expected: string[] = [];
    for (const size of sizes) {
      for (const qos of [0, 1]) {
        const payload = (size + "q" + qos + ":").padEnd(size, String.fromCharCode(97 + (size % 26))).slice(0, Math.max(size, 0));
        expected.push(payload);
        r.client.publish("faults/" + stream + "/echo", payload, qos);
      }
    }
    await waitFor(() => received.length >= expected.length, 30_000, () => `${stream}: ${received.length}/${expected.length} echoes`);
    // Then 1 ms between bytes for a few more.
    proxy.fragment("both", 1, 1);
    const slow = ["slow-1", "slow-2 " + "y".repeat(200)];
    for (const payload of slow) r.client.publish("faults/" + stream + "/echo", payload, 1);
    expected.push(...slow);
    await waitFor(() => received.length >= expected.length, 30_000, () => `${stream}: ${received.length}/${expected.length} echoes (1 ms segments)`);
    proxy.heal();
    assert.deepEqual([...received].sort(), [...expected].sort(), stream + ": every payload byte-exact");
    assert.equal(r.client.stats.protocolErrors, 0);
    assert.equal(r.count("offline"), 0, stream + ": no session lost to slowness: " + r.tail());
    results[plain ? "plain" : "tls"] = { messages: expected.length, maxPayload: Math.max(...sizes), connectMs: Math.round(connectMs), bytes: proxy.stats.bytesUp + proxy.stats.bytesDown - bytesBefore, offline: 0 };
    r.client.disconnect();
  }
  await reportFigure("slow-fragmented", results);
});
