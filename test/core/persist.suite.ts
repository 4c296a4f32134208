// The persisted offline queue (ClientOptions.persist, issue 16) over the storage Journal on an
// in-memory NOR flash (test/support/flash-sim.ts), with the scripted broker on the virtual clock:
// what is written when, what is acknowledged when, drops by both policies with a small store, the
// load at construction, bad stores and bad records, the facade. Then the proof: a scripted sequence
// (offline publishes, a subscribe, drops, a reconnect with partial PUBACKs, more publishes) cut at
// every byte of every flash write and erase; after each cut a new client over the re-opened journal
// must hold exactly the requests accepted and not yet acknowledged, in order. Runs on Node and XS; XS
// (no `process`) takes a subset of the cut points, to stay within its time.
import { MqttClient, type ClientOptions } from "../../modules/client";
import { AWSIoTMQTTClientCore } from "../../modules/awsiot";
import type { Outbox } from "../../modules/outbox";
import { Journal, type JournalOptions } from "../../modules/storage/journal";
import { Accepted, AckStatus, DROP_NEWEST, DROP_OLDEST, ErrorCode, type Platform, type QueueStore } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { ClientStreamDecoder, fromUtf8 } from "../support/broker-codec";
import { PowerCut, SimFlash } from "../support/flash-sim";
import { ScriptedBroker } from "../support/scripted-broker";
import { type Session, session } from "../support/session";
import { VirtualClock } from "../support/virtual-clock";

const ON_XS = typeof (globalThis as { process?: unknown }).process === "undefined";

/** The small geometry: 4 blocks of 256 bytes, records of at most 100 bytes (the client's maxPacketBytes). */
const BLOCK = 256;
const BLOCKS = 4;
const JOURNAL: JournalOptions = { maxPayloadBytes: 100, maxRecords: 32, ackReserve: 2 };
const CLIENT: Partial<ClientOptions> = { maxPacketBytes: 100, queueEntries: 16, queueBytes: 1024, drainIntervalMs: 100 };

function opened(sim: SimFlash, options: JournalOptions = JOURNAL): Journal {
  const journal = new Journal(sim, options);
  journal.open();
  return journal;
}

/** The journal as a reboot would find it now, read from a copy of the chip (the running one is not disturbed). */
function peek(sim: SimFlash, options: JournalOptions = JOURNAL): Journal {
  const copy = new SimFlash(sim.blockSize, sim.blockCount);
  copy.bytes.set(sim.bytes);
  return opened(copy, options);
}

/** A record (or any encoded request) as text: "P1 topic payload", "S filter qos", "U filter". */
function describe(bytes: Uint8Array): string {
  const packets = new ClientStreamDecoder().push(bytes);
  if (packets.length !== 1) return "not one packet (" + bytes.length + " bytes)";
  const packet = packets[0];
  if (packet.type === 3) return "P" + packet.qos + (packet.dup ? "d" : "") + " " + packet.topic + " " + fromUtf8(packet.payload as Uint8Array);
  if (packet.type === 8) return "S " + (packet.filters as string[]).join(",") + " " + (packet.requestedQos as number[]).join(",");
  if (packet.type === 10) return "U " + (packet.filters as string[]).join(",");
  return "type " + packet.type;
}

function records(store: QueueStore): string[] {
  const list: string[] = [];
  const buffer = new Uint8Array(256);
  for (let i = 0; i < store.count; i++) list.push(describe(buffer.subarray(0, store.readAt(i, buffer))));
  return list;
}

interface Queued {
  seq: number;
  bytes: Uint8Array;
}

function outboxOf(client: MqttClient): Outbox {
  return (client as unknown as { session: { outbox: Outbox } }).session.outbox;
}

/** The client's offline queue, oldest first: each entry's record number and bytes. */
function queueOf(client: MqttClient): Queued[] {
  const outbox = outboxOf(client);
  const queue = outbox.queue;
  const list: Queued[] = [];
  for (let i = 0; i < queue.count; i++) {
    const slot = queue.slot(i);
    list.push({ seq: outbox.queueSeq[slot], bytes: queue.arena.slice(queue.offset[slot], queue.offset[slot] + queue.length[slot]) });
  }
  return list;
}

function queueText(client: MqttClient): string[] {
  return queueOf(client).map((entry) => describe(entry.bytes));
}

/** What the broker received, as describe() shows it, without CONNECT. */
function received(s: Session): string[] {
  return s.broker.received.filter((packet) => packet.type === 3 || packet.type === 8 || packet.type === 10).map((packet) => describe(packet.raw));
}

function persisted(sim: SimFlash, options: Partial<ClientOptions> = {}, journalOptions: JournalOptions = JOURNAL): { s: Session; journal: Journal } {
  const journal = opened(sim, journalOptions);
  return { s: session({ ...CLIENT, persist: journal, ...options }), journal };
}

// ---- What is written, and when it is acknowledged.

test("persist: a queued QoS 0 and QoS 1 publish, a subscribe and an unsubscribe are on flash before each call returns", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const { s } = persisted(sim);
  const seen: string[][] = [];
  equal(s.client.publish("t/a", "zero", 0), Accepted.Queued);
  seen.push(records(peek(sim)));
  equal(s.client.publish("t/b", "one", 1, true), Accepted.Queued);
  seen.push(records(peek(sim)));
  equal(s.client.subscribe("cmd/#", 1), Accepted.Queued);
  seen.push(records(peek(sim)));
  equal(s.client.unsubscribe("old/+"), Accepted.Queued);
  seen.push(records(peek(sim)));
  deepEqual(seen, [
    ["P0 t/a zero"],
    ["P0 t/a zero", "P1 t/b one"],
    ["P0 t/a zero", "P1 t/b one", "S cmd/# 1"],
    ["P0 t/a zero", "P1 t/b one", "S cmd/# 1", "U old/+"],
  ]);
  equal(s.client.stats.persisted, 4);
  equal(s.client.stats.queued, 4);
  // The record is the request as queued: byte for byte what the queue holds.
  const journal = peek(sim);
  const queue = queueOf(s.client);
  const buffer = new Uint8Array(100);
  for (let i = 0; i < 4; i++) {
    equal(journal.seqAt(i), queue[i].seq);
    deepEqual(buffer.slice(0, journal.readAt(i, buffer)), queue[i].bytes);
  }
});

test("persist: each record is acknowledged when its QoS 0 PUBLISH is written, at the PUBACK, at the SUBACK and the UNSUBACK", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const { s, journal } = persisted(sim, { drainIntervalMs: 1000 });
  const acks: string[] = [];
  s.client.publish("t/a", "zero", 0);
  s.client.publish("t/b", "one", 1, false, (status) => acks.push("one:" + status));
  s.client.subscribe("cmd/#", 1, undefined, (status) => acks.push("sub:" + status + ":" + journal.count));
  s.client.unsubscribe("old/+", (status) => acks.push("unsub:" + status + ":" + journal.count));
  s.broker.ackPublishes = false;
  s.client.connect();
  s.clock.settle(); // CONNACK; the first queued request goes out with it
  deepEqual(received(s), ["P0 t/a zero"]);
  deepEqual(records(journal), ["P1 t/b one", "S cmd/# 1", "U old/+"], "the QoS 0 PUBLISH, written, is acknowledged at once");
  s.clock.advance(1000);
  deepEqual(received(s), ["P0 t/a zero", "P1 t/b one"]);
  deepEqual(records(journal), ["P1 t/b one", "S cmd/# 1", "U old/+"], "the QoS 1 PUBLISH stays until its PUBACK");
  equal(s.client.inflightCount, 1);
  s.broker.deliver(ScriptedBroker.puback(s.broker.sent(3)[1].packetId));
  s.clock.settle();
  deepEqual(records(journal), ["S cmd/# 1", "U old/+"], "PUBACK");
  deepEqual(acks, ["one:" + AckStatus.Acknowledged]);
  s.clock.advance(1000);
  deepEqual(records(journal), ["U old/+"], "SUBACK");
  s.clock.advance(1000);
  equal(journal.count, 0, "UNSUBACK");
  // Each callback sees its own record gone.
  deepEqual(acks, ["one:" + AckStatus.Acknowledged, "sub:" + AckStatus.Acknowledged + ":1", "unsub:" + AckStatus.Acknowledged + ":0"]);
  equal(s.count("restored"), 1);
  equal(reopenCount(sim), 0, "and after a reboot");
});

function reopenCount(sim: SimFlash): number {
  return peek(sim).count;
}

test("persist: requests sent at once while online are never written to flash", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const { s } = persisted(sim);
  s.client.connect();
  s.clock.settle();
  equal(s.client.stateName, "online");
  const units = sim.units;
  equal(s.client.publish("t/a", "zero", 0), Accepted.Sent);
  equal(s.client.publish("t/b", "one", 1), Accepted.Sent);
  equal(s.client.subscribe("cmd/#", 1), Accepted.Sent);
  equal(s.client.unsubscribe("cmd/#"), Accepted.Sent);
  s.clock.settle();
  equal(sim.units, units, "no byte written or erased");
  equal(sim.writes, 0);
  equal(s.client.stats.persisted, 0);
  equal(s.client.stats.acknowledged, 3);
});

test("persist: online, a request that finds the in-flight window full joins the queue, and so the store, until a slot frees", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const { s, journal } = persisted(sim, { inflightWindow: 2 });
  s.client.connect();
  s.clock.settle();
  s.broker.ackPublishes = false;
  equal(s.client.publish("t", "a", 1), Accepted.Sent);
  equal(s.client.publish("t", "b", 1), Accepted.Sent);
  equal(s.client.publish("t", "c", 1), Accepted.Queued);
  deepEqual(records(journal), ["P1 t c"]);
  s.broker.deliver(ScriptedBroker.puback(s.broker.sent(3)[0].packetId));
  s.clock.settle();
  deepEqual(received(s), ["P1 t a", "P1 t b", "P1 t c"], "c went out when a's PUBACK freed a slot");
  deepEqual(records(journal), ["P1 t c"], "and stays on flash until its own PUBACK");
  s.broker.deliver(ScriptedBroker.puback(s.broker.sent(3)[2].packetId));
  s.clock.settle();
  equal(journal.count, 0);
});

// ---- A full store follows the drop policy.

for (const policy of [DROP_NEWEST, DROP_OLDEST]) {
  const name = policy === DROP_OLDEST ? "DROP_OLDEST" : "DROP_NEWEST";
  test("persist: a full store under " + name + " drops and reports, and the queue is the store", () => {
    const sim = new SimFlash(BLOCK, BLOCKS);
    const { s, journal } = persisted(sim, { dropPolicy: policy }, { ...JOURNAL, maxRecords: 3 });
    const statuses: string[] = [];
    const results: number[] = [];
    for (let i = 0; i < 5; i++) results.push(s.client.publish("t", "m" + i, 1, false, (status) => statuses.push("m" + i + ":" + status)));
    results.push(s.client.subscribe("cmd", 0, undefined, (status) => statuses.push("sub:" + status)));
    const kept = policy === DROP_NEWEST ? ["P1 t m0", "P1 t m1", "P1 t m2"] : ["P1 t m3", "P1 t m4", "S cmd 0"];
    deepEqual(records(journal), kept);
    deepEqual(queueText(s.client), kept, "the RAM queue holds what the store holds");
    deepEqual(results, policy === DROP_NEWEST ? [0, 0, 0, 2, 2, 2].map((_, i) => (i < 3 ? Accepted.Queued : Accepted.Dropped)) : new Array(6).fill(Accepted.Queued));
    const dropped = policy === DROP_NEWEST ? ["m3", "m4", "sub"] : ["m0", "m1", "m2"];
    deepEqual(statuses, dropped.map((tag) => tag + ":" + AckStatus.Dropped));
    deepEqual(s.events.filter((e) => e.name === "drop").map((e) => e.detail), dropped.map((tag) => (tag === "sub" ? "subscribe cmd" : "publish t")));
    equal(s.client.stats.dropped, 3);
    equal(s.client.stats.queued, policy === DROP_NEWEST ? 3 : 6, "accepted into the queue (under DROP_OLDEST, dropped later)");
    equal(s.client.stats.persisted, policy === DROP_NEWEST ? 3 : 6);
    // A SUBSCRIBE dropped never reaches the table.
    if (policy === DROP_NEWEST) equal((s.client as unknown as { session: { subscriptions: { find(f: string): number } } }).session.subscriptions.find("cmd"), -1);
    s.client.connect();
    s.clock.advance(2000);
    deepEqual(received(s), kept);
    equal(journal.count, 0);
    equal(s.count("restored"), 1);
  });
}

test("persist: a full RAM queue under DROP_OLDEST drops its oldest from the store too; under DROP_NEWEST the new one is never written", () => {
  for (const policy of [DROP_OLDEST, DROP_NEWEST]) {
    const sim = new SimFlash(BLOCK, BLOCKS);
    const { s, journal } = persisted(sim, { dropPolicy: policy, queueEntries: 2, queueBytes: 200 });
    for (const tag of ["a", "b", "c", "d"]) s.client.publish("t", tag, 1);
    const kept = policy === DROP_OLDEST ? ["P1 t c", "P1 t d"] : ["P1 t a", "P1 t b"];
    deepEqual(queueText(s.client), kept);
    deepEqual(records(journal), kept);
    deepEqual(records(peek(sim)), kept);
    equal(s.count("drop"), 2);
    equal(s.client.stats.persisted, policy === DROP_OLDEST ? 4 : 2);
  }
});

test("persist: a full partition (no room, not a record limit) under DROP_OLDEST drops the oldest queued until the append fits", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const { s, journal } = persisted(sim, { dropPolicy: DROP_OLDEST, queueEntries: 64, queueBytes: 4096 });
  const payload = "x".repeat(60);
  let drops = 0;
  s.client.on("drop", () => drops++);
  for (let i = 0; i < 40; i++) equal(s.client.publish("t", payload + i, 1), Accepted.Queued);
  ok(drops > 20, drops + " drops");
  equal(s.client.queuedCount, 40 - drops);
  equal(journal.count, 40 - drops);
  deepEqual(queueText(s.client), records(journal));
  deepEqual(records(peek(sim)), records(journal));
  equal(queueText(s.client)[queueText(s.client).length - 1], "P1 t " + payload + "39", "the newest is kept");
});

test("persist: under DROP_OLDEST, when the store's oldest record is a request in flight, the new request is dropped (dropping queued ones would free nothing)", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const { s, journal } = persisted(sim, { dropPolicy: DROP_OLDEST, drainIntervalMs: 5000 }, { ...JOURNAL, maxRecords: 3 });
  for (const tag of ["a", "b", "c"]) s.client.publish("t", tag, 1);
  s.broker.ackPublishes = false;
  s.client.connect();
  s.clock.settle(); // a goes out with CONNACK, unacknowledged
  s.broker.drop();
  deepEqual(queueText(s.client), ["P1 t b", "P1 t c"]);
  equal(s.client.inflightCount, 1);
  const statuses: number[] = [];
  equal(s.client.publish("t", "d", 1, false, (status) => statuses.push(status)), Accepted.Dropped);
  deepEqual(statuses, [AckStatus.Dropped]);
  deepEqual(records(journal), ["P1 t a", "P1 t b", "P1 t c"]);
  deepEqual(queueText(s.client), ["P1 t b", "P1 t c"]);
  s.broker.ackPublishes = true;
  s.clock.advance(20000);
  deepEqual(received(s).slice(1), ["P1 t a", "P1 t b", "P1 t c"], "a again after the reconnect, then the queue");
  equal(journal.count, 0);
});

// ---- The load at construction.

test("persist: a new client over the re-opened journal loads the queue in order and drains it after connecting", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const first = persisted(sim).s;
  first.client.publish("t/a", "zero", 0);
  first.client.subscribe("cmd/#", 1);
  first.client.publish("t/b", "one", 1, true);
  first.client.unsubscribe("old/+");
  first.client.publish("t/c", "two", 1);
  const expected = ["P0 t/a zero", "S cmd/# 1", "P1 t/b one", "U old/+", "P1 t/c two"];
  // The reboot: the same chip, a new journal and a new client.
  const { s, journal } = persisted(sim);
  deepEqual(queueText(s.client), expected);
  deepEqual(queueOf(s.client).map((entry) => entry.seq), [1, 2, 3, 4, 5]);
  equal(s.client.stats.loadedFromStore, 5);
  equal(s.client.stats.persisted, 0, "loading writes nothing");
  equal(s.client.queuedCount, 5);
  s.client.connect();
  s.clock.advance(3000);
  deepEqual(received(s), expected);
  equal(s.count("restored"), 1);
  equal(journal.count, 0);
  // The loaded SUBSCRIBE was confirmed like any other: its messages reach the "message" event, and
  // it is subscribed again after a reconnect.
  equal(s.client.subscriptionCount(), 1);
  s.broker.publish("cmd/go", "now", 1);
  s.clock.settle();
  deepEqual(s.messages.map((m) => m.topic + " " + m.payload), ["cmd/go now"]);
  s.broker.drop();
  s.clock.advance(3000);
  deepEqual(s.broker.sent(8).map((packet) => (packet.filters as string[]).join(",")), ["cmd/#", "cmd/#"]);
  equal(s.errors.length, 0);
});

test("persist: a request sent but not acknowledged before a reboot is sent again after it, with a new packet id and no DUP", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const first = persisted(sim, { drainIntervalMs: 5000 }).s;
  first.client.publish("t", "a", 1);
  first.client.publish("t", "b", 1);
  first.broker.ackPublishes = false;
  first.client.connect();
  first.clock.settle();
  const sentBefore = first.broker.sent(3);
  equal(sentBefore.length, 1);
  equal(first.client.inflightCount, 1);
  const { s } = persisted(sim);
  deepEqual(queueText(s.client), ["P1 t a", "P1 t b"]);
  s.client.connect();
  s.clock.advance(10000);
  const sent = s.broker.sent(3);
  deepEqual(sent.map((packet) => describe(packet.raw)), ["P1 t a", "P1 t b"]);
  ok(sent.every((packet) => packet.dup === false && packet.packetId > 0));
  equal(peek(sim).count, 0);
});

test("persist: a record that is not a valid request is dropped from the store and reported once the client is used; the others load", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const journal = opened(sim);
  const good = session({ ...CLIENT, persist: journal });
  good.client.publish("t", "a", 1);
  const bad = [
    new Uint8Array([1, 2, 3]),
    new Uint8Array([0x30, 5, 0, 1, 0x23, 0x41, 0x42]), // a wildcard in a topic name
    new Uint8Array([0x34, 3, 0, 1, 0x41]), // QoS 2
    new Uint8Array([0x3a, 3, 0, 1, 0x41]), // DUP
    new Uint8Array([0x82, 6, 0, 0, 0, 1, 0x41, 2]), // a SUBSCRIBE at QoS 2
    new Uint8Array([0x30, 9, 0, 1, 0x41]), // the remaining length says 9
    new Uint8Array([0xa2, 5, 0, 0, 0, 1, 0x41, 0]), // an UNSUBSCRIBE with a byte after its filter
    new Uint8Array([0x32, 3, 0, 1, 0x41]), // QoS 1 without its packet id
    new Uint8Array([0x30, 4, 0, 2, 0xc3, 0x28]), // not UTF-8
    new Uint8Array(0),
  ];
  for (const bytes of bad) journal.append(bytes, 0, bytes.length);
  good.client.publish("t", "b", 0);
  const { s, journal: reopened } = persisted(sim);
  deepEqual(queueText(s.client), ["P1 t a", "P0 t b"]);
  equal(s.client.stats.loadedFromStore, 2);
  deepEqual(records(reopened), ["P1 t a", "P0 t b"], "dropped from the store");
  equal(s.errors.length, 0, "not delivered during the constructor");
  s.client.connect();
  equal(s.errors.length, 1);
  equal(s.errors[0].code, ErrorCode.Store);
  ok(s.errors[0].message.indexOf("10 record(s) of the store are not valid requests") >= 0, s.errors[0].message);
  ok(s.errors[0].message.indexOf("wildcards") >= 0 && s.errors[0].message.indexOf("remaining length 9") >= 0, s.errors[0].message);
  s.clock.advance(3000);
  deepEqual(received(s), ["P1 t a", "P0 t b"]);
  equal(reopened.count, 0);
});

test("persist: a store the queue cannot hold is refused at construction with one line, and left as it was", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const first = persisted(sim).s;
  for (let i = 0; i < 5; i++) first.client.publish("t", "m" + i, 1);
  const clock = new VirtualClock();
  const make = (options: Partial<ClientOptions>, journalOptions: JournalOptions = JOURNAL): MqttClient =>
    new MqttClient({ clientId: "d", transport: new ScriptedBroker(clock), clock, ...CLIENT, persist: opened(sim, journalOptions), ...options });
  throws(() => make({ queueEntries: 4 }), "persist: the store holds 5 requests of 45 bytes, more than the offline queue takes (queueEntries 4, queueBytes 1024): raise them to at least 5 and 45");
  throws(() => make({ queueBytes: 44 }), "(queueEntries 16, queueBytes 44): raise them to at least 5 and 45");
  equal(peek(sim).count, 5, "nothing acknowledged");
  const loaded = make({ queueEntries: 5, queueBytes: 45 });
  equal(loaded.queuedCount, 5, "exactly enough");
  // A record larger than maxPacketBytes: written with larger settings.
  const big = new SimFlash(BLOCK, BLOCKS);
  const wide = persisted(big, { maxPacketBytes: 100 }).s;
  wide.client.publish("t", "x".repeat(60), 0);
  const clock2 = new VirtualClock();
  throws(() => new MqttClient({ clientId: "d", transport: new ScriptedBroker(clock2), clock: clock2, ...CLIENT, maxPacketBytes: 50, persist: opened(big, { ...JOURNAL, maxPayloadBytes: 50 }) }), "persist: the store's record 1 of 1 has 65 bytes, over maxPacketBytes (50)");
  // More distinct filters than the subscription table holds.
  const subs = new SimFlash(BLOCK, BLOCKS);
  const subscriber = persisted(subs).s;
  subscriber.client.subscribe("a", 0);
  subscriber.client.subscribe("b", 0);
  subscriber.client.subscribe("c", 0);
  throws(() => persisted(subs, { maxSubscriptions: 2 }), "persist: the store's subscriptions need more than maxSubscriptions (2) filters: raise it");
  equal(peek(subs).count, 3);
  equal(persisted(subs, { maxSubscriptions: 3 }).s.client.queuedCount, 3);
});

test("persist: every input is checked: the store, its record size, queueing on, what append returns", () => {
  const sim = new SimFlash(BLOCK, BLOCKS);
  const clock = new VirtualClock();
  const make = (options: Partial<ClientOptions>): MqttClient => new MqttClient({ clientId: "d", transport: new ScriptedBroker(clock), clock, ...CLIENT, ...options });
  throws(() => make({ persist: {} as QueueStore }), "persist must be a QueueStore (an opened Journal)");
  throws(() => make({ persist: "flash" as unknown as QueueStore }), "persist must be a QueueStore");
  throws(() => make({ persist: null as unknown as QueueStore }), "persist must be a QueueStore");
  const journal = opened(sim);
  throws(() => make({ persist: journal, queueEntries: 0, queueBytes: 0 }), "persist needs the offline queue: queueEntries above 0");
  throws(() => make({ persist: journal, maxPacketBytes: 101 }), "persist takes records of at most 100 bytes, but a queued request may have 101 (the smaller of maxPacketBytes and queueBytes)");
  make({ persist: journal, maxPacketBytes: 2048, queueBytes: 100 }); // the queue bounds a request too
  throws(() => make({ persist: { ...fakeStore(), count: -1 } }), "persist.count must be a whole number");
  throws(() => make({ persist: { ...fakeStore(), maxPayloadBytes: "100" as unknown as number } }), "persist.maxPayloadBytes must be a whole number");
  throws(() => make({ persist: journal, persist2: 1 } as Partial<ClientOptions>), "unknown option persist2");
  // A journal not opened reads as empty; its first append says so, and nothing is queued.
  const unopened = make({ persist: new Journal(sim, JOURNAL) });
  throws(() => unopened.publish("t", "x", 1), "journal is not open: call open() first");
  equal(unopened.queuedCount, 0);
  // A store whose append returns nonsense: the call throws and nothing is queued.
  for (const value of [0, 1.5, "1", undefined, -2, 2 ** 32]) {
    const store = fakeStore();
    store.append = () => value as number;
    const client = make({ persist: store });
    throws(() => client.publish("t", "x", 1), "persist.append() must return a sequence number from 1 to 4294967295, or -1 when full; got");
    equal(client.queuedCount, 0);
    equal(client.stats.queued, 0);
  }
  // A store that throws: the call throws it, nothing queued; later calls work.
  const failing = fakeStore();
  let fail = true;
  failing.append = () => {
    if (fail) throw new Error("flash write failed");
    return 7;
  };
  const client = make({ persist: failing });
  throws(() => client.subscribe("cmd", 1), "flash write failed");
  equal(client.queuedCount, 0);
  equal((client as unknown as { session: { subscriptions: { find(f: string): number } } }).session.subscriptions.find("cmd"), -1, "the subscription was not recorded");
  fail = false;
  equal(client.publish("t", "x", 1), Accepted.Queued);
  deepEqual(queueOf(client).map((entry) => entry.seq), [7]);
});

/** A QueueStore in RAM that holds nothing: for the checks of what the client does with a store's answers. */
function fakeStore(): QueueStore & { acknowledged: number[] } {
  const acknowledged: number[] = [];
  return {
    count: 0,
    maxPayloadBytes: 100,
    acknowledged,
    seqAt: () => 0,
    lengthAt: () => 0,
    readAt: () => 0,
    append: () => 1,
    acknowledge(seq: number): boolean {
      acknowledged.push(seq);
      return true;
    },
  };
}

test("persist: an acknowledgement the store fails is reported and the client carries on (the record would come back after a reboot: at least once)", () => {
  const store = fakeStore();
  let seq = 0;
  store.append = () => ++seq;
  store.acknowledge = (value: number) => {
    if (value === 1) throw new Error("flash erase failed");
    return value !== 2;
  };
  const s = session({ ...CLIENT, persist: store, drainIntervalMs: 10 });
  const statuses: number[] = [];
  for (const tag of ["a", "b", "c"]) s.client.publish("t", tag, 1, false, (status) => statuses.push(status));
  s.client.connect();
  s.clock.advance(1000);
  deepEqual(statuses, [AckStatus.Acknowledged, AckStatus.Acknowledged, AckStatus.Acknowledged]);
  deepEqual(s.errors.map((error) => error.code), [ErrorCode.Store, ErrorCode.Store]);
  ok(s.errors[0].message.indexOf("flash erase failed") >= 0 && s.errors[1].message.indexOf("acknowledging record 2 failed (the store holds no such record)") >= 0, s.errors.map((e) => e.message).join(" | "));
  equal(s.count("restored"), 1);
});

test("persist: the facade's configurePersistentQueue(store): loads at connect(), drains, checks its input", async () => {
  const sim = new SimFlash(512, BLOCKS);
  const before = persisted(sim).s;
  before.client.publish("things/x/telemetry", "t1", 1);
  before.client.subscribe("things/x/cmd", 1);
  const clock = new VirtualClock();
  const broker = new ScriptedBroker(clock);
  const platform: Platform = { createClock: () => clock, createTransport: () => broker };
  const facade = new AWSIoTMQTTClientCore(platform, "x");
  facade.configureEndpoint("example-ats.iot.eu-west-1.amazonaws.com", 8883);
  facade.configureCredentials("ca.der", "key.der", "cert.der");
  throws(() => facade.configurePersistentQueue({} as QueueStore), "persist must be a QueueStore");
  facade.configureOfflinePublishQueueing(16, DROP_OLDEST);
  const journal = opened(sim, { ...JOURNAL, maxPayloadBytes: 200 });
  facade.configurePersistentQueue(journal);
  throws(() => facade.configureOfflinePublishQueueing(0), "queueSize 0 (no queue) leaves nothing to persist");
  // The journal takes 200 bytes: the facade's default packets of 2048 do not fit; said at connect().
  throws(() => facade.connect(), "persist takes records of at most 200 bytes, but a queued request may have 2048");
  facade.configureMaxPacketSize(200);
  const messages: string[] = [];
  facade.onMessage = (message) => messages.push(message.topic);
  const connecting = facade.connect();
  clock.settle();
  equal(await connecting, true);
  equal(facade.getMQTTConnection()?.stats.loadedFromStore, 2);
  clock.advance(5000);
  deepEqual(broker.received.filter((p) => p.type === 3 || p.type === 8).map((p) => describe(p.raw)), ["P1 things/x/telemetry t1", "S things/x/cmd 1"]);
  equal(journal.count, 0);
  broker.publish("things/x/cmd", "go", 1);
  clock.settle();
  deepEqual(messages, ["things/x/cmd"], "the loaded subscription's messages reach onMessage");
  throws(() => facade.configurePersistentQueue(undefined), "configurePersistentQueue must be called before connect()");
  const off = new AWSIoTMQTTClientCore(platform, "y");
  off.configureOfflinePublishQueueing(0);
  throws(() => off.configurePersistentQueue(journal), "the offline queue is off (queueSize 0): nothing to persist");
  off.configurePersistentQueue(undefined);
});

// ---- The proof: a power cut at every byte of every write and erase of a scripted sequence.

/** What one flash operation of the store did, in the uncut run. */
interface StoreOp {
  /** Units (bytes written or erased) of the chip before and after it. */
  start: number;
  end: number;
  /** The live records after it, oldest first. */
  after: Queued[];
  text: string;
  erases: number[];
}

interface Script {
  /** The records before any store operation ran. */
  initial: Queued[];
  ops: StoreOp[];
  units: number;
  eraseUnits: number;
  drops: number;
  loaded: number;
  scriptSteps: number;
}

const PROOF_JOURNAL: JournalOptions = { maxPayloadBytes: 100, maxRecords: 6, ackReserve: 2 };
const PROOF_CLIENT: Partial<ClientOptions> = { maxPacketBytes: 100, queueEntries: 8, queueBytes: 600, inflightWindow: 3, drainIntervalMs: 100, backoff: { baseMs: 1000, maxMs: 1000, stableMs: 60000 } };

/** The payload of request `tag`: its length varies from 5 to 54 bytes, so records fall at many places in the blocks. */
function payloadOf(tag: number): string {
  const length = 5 + ((tag * 17) % 50);
  let text = "m" + tag + "-";
  while (text.length < length) text += String.fromCharCode(0x61 + ((tag + text.length) % 26));
  return text;
}

/**
 * The app-level model of the script: the requests accepted into the queue and not yet done with,
 * oldest first, as describe() shows them. A request is done with when its callback reports it
 * acknowledged, refused or dropped, or (QoS 0) when the broker has received it.
 */
class Model {
  live: { tag: number; text: string; qos: number }[] = [];
  settle(broker: ScriptedBroker): void {
    const seen = new Set(broker.received.filter((packet) => packet.type === 3 && packet.qos === 0).map((packet) => describe(packet.raw)));
    this.live = this.live.filter((entry) => !(entry.qos === 0 && seen.has(entry.text)));
  }
  done(tag: number): void {
    this.live = this.live.filter((entry) => entry.tag !== tag);
  }
}

/**
 * The script, run on `sim` with the client built over `store`. Every step is a client call or a
 * broker or clock action; `after(step)` runs after each. Stops at the first power cut.
 */
function runScript(sim: SimFlash, store: QueueStore, policy: number, after: (s: Session, model: Model, step: number) => void): { s: Session; model: Model; steps: number } {
  const s = session({ ...PROOF_CLIENT, dropPolicy: policy, persist: store });
  const model = new Model();
  let tag = 0;
  const publish = (qos: number): void => {
    const mine = tag++;
    const text = "P" + qos + " t/" + (mine % 3) + " " + payloadOf(mine);
    const queued = s.client.stats.queued;
    s.client.publish("t/" + (mine % 3), payloadOf(mine), qos, false, (status) => {
      if (status !== AckStatus.TimedOut) model.done(mine);
    });
    // Only a request that entered the offline queue (and stayed: stats.queued) is the store's; one
    // sent at once, or waiting in the in-flight window for the transport, is not.
    if (s.client.stats.queued > queued) model.live.push({ tag: mine, text, qos });
  };
  const request = (kind: "S" | "U", filter: string): void => {
    const mine = tag++;
    const onAck = (status: number): void => {
      if (status !== AckStatus.TimedOut) model.done(mine);
    };
    const queued = s.client.stats.queued;
    if (kind === "S") s.client.subscribe(filter, 1, undefined, onAck);
    else s.client.unsubscribe(filter, onAck);
    if (s.client.stats.queued > queued) model.live.push({ tag: mine, text: kind === "S" ? "S " + filter + " 1" : "U " + filter, qos: 1 });
  };
  const steps: (() => void)[] = [];
  // Offline from the start: a subscribe among QoS 0 and 1 publishes, more than the store's 6 records.
  steps.push(() => publish(1), () => publish(0), () => request("S", "cmd/#"), () => publish(1), () => publish(0), () => publish(1), () => publish(1), () => publish(0), () => request("U", "old/#"), () => publish(1));
  // Connect: the first PUBACKs come, then the broker stops acknowledging and the link drops with requests in flight.
  steps.push(() => s.client.connect(), () => s.clock.settle(), () => s.clock.advance(100), () => s.clock.advance(100));
  steps.push(() => (s.broker.ackPublishes = false), () => s.clock.advance(100), () => s.clock.advance(100), () => s.clock.advance(100), () => s.broker.drop());
  // Offline again: the store is full of requests in flight and queued; more publishes.
  steps.push(() => publish(1), () => publish(0), () => publish(1), () => publish(1), () => publish(0), () => publish(1));
  // Reconnect: the requests in flight again, then the queue, all acknowledged.
  steps.push(() => (s.broker.ackPublishes = true));
  for (let i = 0; i < 14; i++) steps.push(() => s.clock.advance(100 + (i === 0 ? 900 : 0)));
  // Online: sent at once (not stored); a full window queues one (stored) until a drop and a reconnect.
  steps.push(() => publish(1), () => publish(0), () => (s.broker.ackPublishes = false), () => publish(1), () => publish(1), () => publish(1), () => publish(1), () => publish(0));
  steps.push(() => s.broker.drop(), () => publish(1), () => (s.broker.ackPublishes = true), () => s.clock.advance(1000));
  for (let i = 0; i < 6; i++) steps.push(() => s.clock.advance(100));
  // Another outage and recovery, with a subscription change among the publishes.
  steps.push(() => s.broker.drop());
  for (let i = 0; i < 8; i++) steps.push(i === 4 ? () => request("U", "cmd/#") : () => publish(i % 2));
  steps.push(() => s.clock.advance(1000));
  for (let i = 0; i < 8; i++) steps.push(() => s.clock.advance(100));
  // A last outage that leaves records behind, past several trips round the ring.
  steps.push(() => s.broker.drop());
  for (let i = 0; i < 9; i++) steps.push(() => publish(i % 3 === 0 ? 0 : 1));
  steps.push(() => request("S", "cfg/+"), () => publish(1));
  let step = 0;
  for (; step < steps.length; step++) {
    try {
      steps[step]();
    } catch (error) {
      if (error instanceof PowerCut) return { s, model, steps: step };
      throw error;
    }
    if (sim.dead) return { s, model, steps: step };
    model.settle(s.broker);
    after(s, model, step);
  }
  return { s, model, steps: step };
}

/** A QueueStore over `journal` that records each operation's flash units and the live records after it. */
function recorder(sim: SimFlash, journal: Journal, ops: StoreOp[]): QueueStore {
  const erases: number[] = [];
  sim.onErase = (_block, unit) => erases.push(unit);
  const live = (): Queued[] => {
    const list: Queued[] = [];
    const buffer = new Uint8Array(128);
    for (let i = 0; i < journal.count; i++) list.push({ seq: journal.seqAt(i), bytes: buffer.slice(0, journal.readAt(i, buffer)) });
    return list;
  };
  const record = (text: string, start: number, done: () => void): void => {
    erases.length = 0;
    done();
    ops.push({ start, end: sim.units, after: live(), text, erases: erases.slice() });
  };
  return {
    get count() {
      return journal.count;
    },
    maxPayloadBytes: journal.maxPayloadBytes,
    seqAt: (index) => journal.seqAt(index),
    lengthAt: (index) => journal.lengthAt(index),
    readAt: (index, into) => journal.readAt(index, into),
    append(bytes, offset, length) {
      let seq = 0;
      record("append " + describe(bytes.subarray(offset, offset + length)), sim.units, () => (seq = journal.append(bytes, offset, length)));
      // Full: no record written (a rotation before the refusal still counts its units).
      if (seq === -1 && ops[ops.length - 1].end === ops[ops.length - 1].start) ops.pop();
      return seq;
    },
    acknowledge(seq) {
      let done = false;
      record("acknowledge " + seq, sim.units, () => (done = journal.acknowledge(seq)));
      return done;
    },
  };
}

const scripts: (Script | undefined)[] = [undefined, undefined];

/**
 * Runs the script once without a cut, recording every store operation, and checks at every step
 * that the journal, read as a reboot would, holds exactly the app-level model's requests.
 */
function script(policy: number): Script {
  const cached = scripts[policy];
  if (cached) return cached;
  const sim = new SimFlash(BLOCK, BLOCKS);
  const ops: StoreOp[] = [];
  const store = recorder(sim, opened(sim, PROOF_JOURNAL), ops);
  let mismatch = "";
  let drops = 0;
  const { s, steps } = runScript(sim, store, policy, (s, model, step) => {
    const expected = model.live.map((entry) => entry.text);
    const onFlash = records(peek(sim, PROOF_JOURNAL));
    if (mismatch === "" && expected.join(" | ") !== onFlash.join(" | ")) mismatch = "step " + step + ": the flash holds [" + onFlash.join(" | ") + "], the model [" + expected.join(" | ") + "]";
  });
  drops = s.count("drop");
  equal(mismatch, "", "the store follows the app-level model at every step");
  const built: Script = { initial: [], ops, units: sim.units, eraseUnits: 0, drops, loaded: 0, scriptSteps: steps };
  for (const op of ops) built.eraseUnits += op.erases.length * BLOCK;
  built.loaded = ops[ops.length - 1].after.length;
  scripts[policy] = built;
  return built;
}

function sameQueue(actual: Queued[], expected: Queued[]): string {
  if (actual.length !== expected.length) return actual.length + " requests [" + actual.map((entry) => entry.seq).join(",") + "], expected " + expected.length + " [" + expected.map((entry) => entry.seq).join(",") + "]";
  for (let i = 0; i < actual.length; i++) {
    if (actual[i].seq !== expected[i].seq) return "request " + i + " is record " + actual[i].seq + ", expected " + expected[i].seq;
    const a = actual[i].bytes;
    const b = expected[i].bytes;
    if (a.length !== b.length || a.some((byte, k) => byte !== b[k])) return "request " + i + " (record " + actual[i].seq + ") is " + describe(a) + ", expected " + describe(b);
  }
  return "";
}

const cutSim = new SimFlash(BLOCK, BLOCKS);
const proofTally = { cuts: 0, drained: 0, asBefore: 0, asAfter: 0 };

/**
 * Runs the script from a blank chip with the power cut at unit `k`, which falls in store operation
 * `index`; then reboots: a new journal and a NEW client over it, whose queue must be exactly the
 * records live before that operation or after it (an operation cut mid-way counts as done or not
 * done; nothing accepted before it is missing, nothing acknowledged before it is back). With `drain`,
 * the new client then connects, and the broker must receive exactly those requests, in order, after
 * which the store is empty. Returns "" or what went wrong.
 */
function checkCut(policy: number, built: Script, index: number, k: number, drain: boolean): string {
  const sim = cutSim;
  sim.bytes.fill(0xff);
  sim.reboot();
  const journal = opened(sim, PROOF_JOURNAL);
  sim.cutAfter(k);
  runScript(sim, journal, policy, () => {});
  if (!sim.dead) return "the script finished before its cut";
  sim.reboot();
  let client: Session;
  let reopened: Journal;
  try {
    reopened = opened(sim, PROOF_JOURNAL);
    client = session({ ...PROOF_CLIENT, dropPolicy: policy, persist: reopened });
  } catch (error) {
    return "the reboot threw " + String(error);
  }
  const before = index === 0 ? built.initial : built.ops[index - 1].after;
  const after = built.ops[index].after;
  const queue = queueOf(client.client);
  const asBefore = sameQueue(queue, before);
  const asAfter = asBefore === "" ? "" : sameQueue(queue, after);
  if (asBefore !== "" && asAfter !== "") return "the new client's queue is neither the records before the operation (" + asBefore + ") nor after it (" + asAfter + ")";
  if (asBefore === "") proofTally.asBefore++;
  else proofTally.asAfter++;
  if (client.client.stats.loadedFromStore !== queue.length) return "loadedFromStore " + client.client.stats.loadedFromStore;
  proofTally.cuts++;
  if (!drain) return "";
  proofTally.drained++;
  client.client.connect();
  client.clock.advance(2000 + 100 * queue.length);
  if (client.errors.length > 0) return "errors after the reboot: " + client.errors.map((error) => error.message).join("; ");
  const expected = (asBefore === "" ? before : after).map((entry) => describe(entry.bytes));
  const got = received(client);
  if (got.join(" | ") !== expected.join(" | ")) return "after the reboot the broker received [" + got.join(" | ") + "], expected [" + expected.join(" | ") + "]";
  if (reopened.count !== 0 || client.client.stateName !== "online") return "after the drain: " + reopened.count + " records, " + client.client.stateName;
  return "";
}

/**
 * Cut points of part `part` of `parts`: on Node every written and every erased byte; on XS every 4th
 * written byte and every 37th erased one (offset per operation, so positions within records vary).
 * The full drain after the reboot: every 4th cut on Node, every 10th on XS.
 */
const WRITE_STRIDE = ON_XS ? 4 : 1;
const ERASE_STRIDE = ON_XS ? 37 : 1;
const DRAIN_STRIDE = ON_XS ? 10 : 4;

function proofPart(policy: number, part: number, parts: number): void {
  const built = script(policy);
  let tried = 0;
  let counter = 0;
  let failures = "";
  for (let index = 0; index < built.ops.length; index++) {
    const op = built.ops[index];
    for (let unit = op.start; unit < op.end; unit++) {
      const erase = op.erases.some((start) => unit >= start && unit < start + BLOCK);
      if ((unit + index) % (erase ? ERASE_STRIDE : WRITE_STRIDE) !== 0) continue;
      if (counter++ % parts !== part) continue;
      tried++;
      const problem = checkCut(policy, built, index, unit, (tried - 1) % DRAIN_STRIDE === 0);
      if (problem !== "" && failures.length < 2000) failures += "operation " + index + " (" + op.text + ") cut at unit " + unit + (erase ? " (erase)" : "") + ": " + problem + "\n";
    }
  }
  equal(failures, "");
  ok(tried > (ON_XS ? 20 : 150), tried + " cut points");
}

for (const policy of [DROP_OLDEST, DROP_NEWEST]) {
  const name = policy === DROP_OLDEST ? "DROP_OLDEST" : "DROP_NEWEST";
  test("persist proof (" + name + "): the uncut script drops, fills the store, turns the ring, and the flash follows the app's view at every step", () => {
    const built = script(policy);
    ok(built.drops >= 3, built.drops + " drops");
    ok(built.ops.filter((op) => op.erases.length > 0).length >= 4, "erases: " + built.ops.filter((op) => op.erases.length > 0).length);
    ok(built.loaded >= 4, built.loaded + " records left at the end");
    ok(built.units - built.eraseUnits > 1500, "cut points: " + (built.units - built.eraseUnits) + " written bytes, " + built.eraseUnits + " erased bytes, " + built.ops.length + " store operations");
  });
  const parts = ON_XS ? 10 : 8;
  for (let part = 0; part < parts; part++) {
    test("persist proof (" + name + "): a power cut at every byte written or erased, then a new client over the re-opened journal (part " + (part + 1) + " of " + parts + ")", () => {
      proofPart(policy, part, parts);
    });
  }
}

test("persist proof: the cuts left the operation undone and done, and new clients drained what they loaded", () => {
  ok(proofTally.asBefore > (ON_XS ? 10 : 1000), proofTally.asBefore + " cuts recovered the records before their operation");
  // A record counts once its last byte (its CRC's) is written, and an append or an acknowledgement
  // writes its record last: a cut inside one leaves it undone, unless it was an acknowledgement whose
  // record went with the erase of its block (a rotation).
  ok(proofTally.asAfter >= 0, proofTally.asAfter + " after it");
  ok(proofTally.drained > (ON_XS ? 5 : 500), proofTally.drained + " of " + proofTally.cuts + " drained after the reboot");
});
