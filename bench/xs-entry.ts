// The XS side of the XS benchmarks (driven by bench/xs-runner.mjs). Bundled by esbuild into one IIFE
// script, evaluated inside an xsnap worker (the real XS engine). Installs the global `handleCommand`:
// each command is one xsnap crank, so the Node side reads the compute meter and the live slot count
// (currentHeapCount) of exactly that step. Commands:
//   {"op":"gc"}                         collect garbage (the next reading is the live slots)
//   {"op":"call","name":N,"arg":A}      run step N (a scenario's setup or run(n), a memory probe)
// The client talks to test/support's ScriptedBroker on test/support's VirtualClock. In the steady
// state the broker is switched to `counting` (its write only counts bytes), and the bytes a broker
// would send are fed straight to the client's TransportSink from buffers made at setup: what is
// metered is the client, not the test broker.
// No Node or DOM API may be used here: this file runs on XS.
import { ShadowClient, type Shadow } from "../modules/aws/shadow";
import { MqttClient, type ClientOptions, type InboundMessage } from "../modules/client";
import { Ring } from "../modules/ring";
import { checkFlashRange, type FlashDevice } from "../modules/storage/flash-device";
import { Journal, type JournalOptions } from "../modules/storage/journal";
import { Accepted, DROP_NEWEST, DROP_OLDEST } from "../modules/types";
import { pingresp, publishPacket } from "../test/support/broker-codec";
import { ScriptedBroker } from "../test/support/scripted-broker";
import { VirtualClock } from "../test/support/virtual-clock";
import { websocketScenarios } from "./xs-websocket";

declare function gc(): void;

const TOPIC = "bench/t";
const PAYLOAD = new Uint8Array(64).map((_, i) => 0x41 + (i % 26));
/** The same 64 bytes as text: the client checks it is valid UTF-8 and encodes it on the way. */
const TEXT_PAYLOAD = String.fromCharCode(...PAYLOAD);
const KEEP_ALIVE_S = 60;

/** A ScriptedBroker whose write() only counts once `counting` is on: the steady-state sink. */
class CountingBroker extends ScriptedBroker {
  counting = false;
  bytesOut = 0;
  writesOut = 0;
  override write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (!this.counting) return super.write(bytes, offset, length);
    this.bytesOut += length;
    this.writesOut++;
    return true;
  }
}

interface Rig {
  clock: VirtualClock;
  broker: CountingBroker;
  client: MqttClient;
}

function rig(options: Partial<ClientOptions> = {}): Rig {
  const clock = new VirtualClock(0);
  const broker = new CountingBroker(clock);
  const client = new MqttClient({ clientId: "bench-device", transport: broker, clock, keepAliveSeconds: KEEP_ALIVE_S, ...options });
  return { clock, broker, client };
}

function online(options: Partial<ClientOptions> = {}): Rig {
  const r = rig(options);
  r.client.connect();
  r.clock.settle();
  if (r.client.stateName !== "online") throw new Error("bench rig did not come online: " + r.client.stateName);
  return r;
}

// Bytes a broker sends, made once.
const PUBACK = new Uint8Array([0x40, 2, 0, 0]);
const PINGRESP = pingresp();
const INBOUND_QOS0 = publishPacket("bench/in", PAYLOAD, 0);
const INBOUND_QOS1 = publishPacket("bench/in", PAYLOAD, 1, 7);

function feedPuback(client: MqttClient, packetId: number): void {
  PUBACK[2] = packetId >> 8;
  PUBACK[3] = packetId & 0xff;
  client.onTransportData(PUBACK, 0, 4);
}

let acked = 0;
const onAck = (status: number): void => {
  if (status === 0) acked++;
};
let delivered = 0;
const onMessage = (message: InboundMessage): void => {
  delivered += message.payload.length;
};

// ------------------------------------------------------------------ scenarios

interface Scenario {
  setup(): void;
  run(n: number): void;
  /** A check after the runs: throws if the client did not do what was measured. */
  check?(): string;
}

let current: Rig;

/** A broker PUBLISH fed to the client n times; `writes` names what the client writes back. */
function inboundScenario(packet: Uint8Array, writes: string): Scenario {
  return {
    setup() {
      current = online();
      current.client.subscribe("bench/in", 1, onMessage);
      current.clock.settle();
      current.broker.counting = true;
      delivered = 0;
    },
    run(n) {
      const client = current.client;
      for (let i = 0; i < n; i++) client.onTransportData(packet, 0, packet.length);
    },
    check() {
      return `${delivered / 64} messages dispatched, ${current.broker.writesOut} ${writes}`;
    },
  };
}

const scenarios: Record<string, Scenario> = {
  /** The driver's own loop, for reference (subtracted from nothing). */
  "loop": {
    setup() {},
    run(n) {
      for (let i = 0; i < n; i++);
    },
  },
  "publish-qos0": {
    setup() {
      current = online();
      current.broker.counting = true;
    },
    run(n) {
      const client = current.client;
      for (let i = 0; i < n; i++) client.publish(TOPIC, PAYLOAD, 0);
    },
    check() {
      return `${current.broker.writesOut} writes, ${current.broker.bytesOut} bytes, stats.sent ${current.client.stats.sent}`;
    },
  },
  "publish-qos0-text": {
    setup() {
      current = online();
      current.broker.counting = true;
    },
    run(n) {
      const client = current.client;
      for (let i = 0; i < n; i++) client.publish(TOPIC, TEXT_PAYLOAD, 0);
    },
    check() {
      return `${current.broker.writesOut} writes, ${current.broker.bytesOut} bytes, stats.sent ${current.client.stats.sent}`;
    },
  },
  "publish-qos1+puback": {
    setup() {
      current = online();
      current.broker.counting = true;
      acked = 0;
    },
    run(n) {
      const client = current.client;
      for (let i = 0; i < n; i++) {
        client.publish(TOPIC, PAYLOAD, 1, false, onAck);
        feedPuback(client, client.lastPacketId);
      }
    },
    check() {
      if (current.client.inflightCount !== 0) throw new Error("in-flight left: " + current.client.inflightCount);
      return `${acked} acknowledged, stats.acknowledged ${current.client.stats.acknowledged}`;
    },
  },
  "inbound-qos0": inboundScenario(INBOUND_QOS0, "writes"),
  "inbound-qos1+puback": inboundScenario(INBOUND_QOS1, "PUBACK writes"),
  "keepalive-tick": {
    setup() {
      current = online();
      current.broker.counting = true;
    },
    run(n) {
      const { client, clock } = current;
      for (let i = 0; i < n; i++) {
        clock.advance(KEEP_ALIVE_S * 1000);
        client.onTransportData(PINGRESP, 0, PINGRESP.length);
      }
    },
    check() {
      return `${current.broker.writesOut} PINGREQ writes, state ${current.client.stateName}`;
    },
  },
};

// Device Shadow: an update and its /accepted reply, and a delta, through the ShadowClient over the
// client. The broker's packets (each reply carries its request's token, each delta a newer version)
// are made at setup for every request a bench run makes, so the run meters the device only.
const SHADOW_THING = "bench-thing";
const SHADOW_PREFIX = "$aws/things/" + SHADOW_THING + "/shadow/";
const SHADOW_DOCUMENT = '{"state":{"reported":{"telemetryIntervalMs":5000}}}';
/** Warm-up, the empty and the metered runs, and the setup's own request. */
const SHADOW_PACKETS = 2600;
let shadowPackets: Uint8Array[] = [];
let shadowNext = 0;
let shadow: Shadow;
let shadowReplies = 0;
const onShadowReply = (status: number): void => {
  if (status === 0) shadowReplies++;
};
let deltas = 0;
const onDelta = (): void => {
  deltas++;
};

function shadowRig(): void {
  current = online();
  const shadows = new ShadowClient(current.client, { maxShadows: 1, maxPending: 4, clientTokenPrefix: "b", maxDocumentBytes: 512 });
  shadow = shadows.shadow(SHADOW_THING);
  shadowNext = 0;
  shadowReplies = 0;
  deltas = 0;
}

scenarios["shadow-update+reply"] = {
  setup() {
    shadowRig();
    shadowPackets = [];
    for (let id = 1; id <= SHADOW_PACKETS; id++) {
      shadowPackets.push(publishPacket(SHADOW_PREFIX + "update/accepted", '{"state":{"reported":{"telemetryIntervalMs":5000}},"metadata":{"reported":{"telemetryIntervalMs":{"timestamp":1700000000}}},"version":' + id + ',"timestamp":1700000000,"clientToken":"b-' + id + '"}', 0));
    }
    // The first request subscribes to the reply topics: done here, not metered.
    shadow.update(SHADOW_DOCUMENT, onShadowReply);
    current.clock.settle();
    const first = shadowPackets[shadowNext++]!;
    current.client.onTransportData(first, 0, first.length);
    current.broker.counting = true;
  },
  run(n) {
    const client = current.client;
    for (let i = 0; i < n; i++) {
      shadow.update(SHADOW_DOCUMENT, onShadowReply);
      feedPuback(client, client.lastPacketId);
      const reply = shadowPackets[shadowNext++]!;
      client.onTransportData(reply, 0, reply.length);
    }
  },
  check() {
    if (shadow.client.pendingCount !== 0) throw new Error("shadow requests left waiting: " + shadow.client.pendingCount);
    return `${shadowReplies} accepted, ${current.broker.writesOut} writes`;
  },
};

scenarios["shadow-delta"] = {
  setup() {
    shadowRig();
    shadowPackets = [];
    for (let version = 1; version <= SHADOW_PACKETS; version++) {
      shadowPackets.push(publishPacket(SHADOW_PREFIX + "update/delta", '{"version":' + version + ',"timestamp":1700000000,"state":{"telemetryIntervalMs":2000},"metadata":{"telemetryIntervalMs":{"timestamp":1700000000}}}', 0));
    }
    shadow.onDelta(onDelta);
    current.clock.settle();
    current.broker.counting = true;
  },
  run(n) {
    const client = current.client;
    for (let i = 0; i < n; i++) {
      const delta = shadowPackets[shadowNext++]!;
      client.onTransportData(delta, 0, delta.length);
    }
  },
  check() {
    return `${deltas} deltas handled`;
  },
};

// MQTT over WebSocket (bench/xs-websocket.ts): the same publishes over a WebSocketTransport.
Object.assign(scenarios, websocketScenarios);

// Offline enqueue and drain: rounds of (link lost, K publishes queued, reconnect, drain). The three
// phases are separate steps so each is metered alone.
const ROUND = 50;
let offlineRig: Rig;
const offline = {
  setup(): void {
    offlineRig = online({ backoff: { baseMs: 100, maxMs: 100 }, drainIntervalMs: 1, queueEntries: 64, queueBytes: 8192 });
    acked = 0;
  },
  /** The broker drops the link (not metered as a message cost). */
  drop(): void {
    offlineRig.broker.counting = false;
    offlineRig.broker.drop();
    if (offlineRig.client.stateName !== "backoff") throw new Error("not offline: " + offlineRig.client.stateName);
  },
  enqueue(n: number): void {
    const client = offlineRig.client;
    for (let i = 0; i < n; i++) client.publish(TOPIC, PAYLOAD, 1, false, onAck);
  },
  /** Backoff, TCP, CONNECT/CONNACK through the scripted broker; the first queued message goes out at once. */
  reconnect(): void {
    offlineRig.clock.advance(100);
    if (offlineRig.client.stateName !== "draining") throw new Error("not draining: " + offlineRig.client.stateName + " queued " + offlineRig.client.queuedCount);
    offlineRig.broker.counting = true;
  },
  /** One queued message per drain tick (1 ms), each PUBACKed. */
  drain(n: number): void {
    const { client, clock } = offlineRig;
    for (let i = 0; i < n; i++) {
      clock.advance(1);
      feedPuback(client, client.lastPacketId);
    }
  },
  check(): string {
    const client = offlineRig.client;
    if (client.stateName !== "online" || client.queuedCount !== 0 || client.inflightCount !== 0) {
      throw new Error(`after drain: ${client.stateName}, queued ${client.queuedCount}, in flight ${client.inflightCount}`);
    }
    return `${acked} acknowledged, ${client.stats.connects} connects`;
  },
};

// Persisted offline queue (ClientOptions.persist over the storage Journal). The flash is RAM here,
// used as hosts/moddable/flash-device.ts uses the device's: the range checked at every call, reads
// copied byte by byte (from the memory map there), a write one native copy (Flash.write there), an
// erase one fill. So the figures are the client's and the journal's XS work, not a flash chip's time.
class BenchFlash implements FlashDevice {
  readonly bytes: Uint8Array;
  /** Views of the source buffer by length (the journal writes from its one scratch buffer): the native copy allocates nothing, as Flash.write does not. */
  private readonly views: (Uint8Array | undefined)[] = [];
  constructor(readonly blockSize: number, readonly blockCount: number) {
    this.bytes = new Uint8Array(blockSize * blockCount).fill(0xff);
  }
  read(offset: number, bytes: Uint8Array, length?: number): void {
    const count = checkFlashRange("flash read", offset, bytes, length, this.bytes.length);
    const map = this.bytes;
    for (let i = 0; i < count; i++) bytes[i] = map[offset + i];
  }
  write(offset: number, bytes: Uint8Array, length?: number): void {
    const count = checkFlashRange("flash write", offset, bytes, length, this.bytes.length);
    let view = this.views[count];
    if (view === undefined || view.buffer !== bytes.buffer || view.byteOffset !== bytes.byteOffset) view = this.views[count] = bytes.subarray(0, count);
    this.bytes.set(view, offset);
  }
  erase(block: number): void {
    this.bytes.fill(0xff, block * this.blockSize, (block + 1) * this.blockSize);
  }
}

/** Offline enqueues a scenario takes before it must be set up again (200 warm-up + --n up to 2000). */
const ENQUEUE_CAPACITY = 2200;
/** A QoS 1 PUBLISH of PAYLOAD to TOPIC: 2 + 2 + 7 + 2 + 64. */
const REQUEST_BYTES = 77;
let enqueueJournal: Journal | undefined;

/** Offline from the start, a queue (and a journal) that takes every enqueue of the bench: each one metered alone, no drop. */
function enqueueScenario(persisted: boolean): Scenario {
  return {
    setup() {
      enqueueJournal = undefined;
      let persist: Journal | undefined;
      if (persisted) {
        // 96 blocks of 4 KB: ~37 records of 92 bytes a block once the acknowledgement reserve is kept.
        persist = new Journal(new BenchFlash(4096, 96), { maxPayloadBytes: 2048, maxRecords: ENQUEUE_CAPACITY });
        persist.open();
        enqueueJournal = persist;
      }
      current = rig({ queueEntries: ENQUEUE_CAPACITY, queueBytes: ENQUEUE_CAPACITY * REQUEST_BYTES, persist });
      acked = 0;
    },
    run(n) {
      const client = current.client;
      if (client.queuedCount + n > ENQUEUE_CAPACITY) throw new Error("the enqueue scenario holds " + ENQUEUE_CAPACITY + " requests: run it with a smaller --n");
      for (let i = 0; i < n; i++) client.publish(TOPIC, PAYLOAD, 1, false, onAck);
    },
    check() {
      const client = current.client;
      if (client.stats.dropped !== 0) throw new Error(client.stats.dropped + " dropped");
      if (persisted && (enqueueJournal as Journal).count !== client.queuedCount) throw new Error("journal " + (enqueueJournal as Journal).count + ", queue " + client.queuedCount);
      return `${client.queuedCount} queued, ${client.stats.persisted} persisted` + (persisted ? `, ${(enqueueJournal as Journal).bytesWritten} flash bytes written, ${(enqueueJournal as Journal).erases} erases` : "");
    },
  };
}

scenarios["offline-enqueue-persisted"] = enqueueScenario(true);
scenarios["offline-enqueue-ram-same-rig"] = enqueueScenario(false);

/** A partition image for the boot scenarios, and what booting it must load. */
interface BootImage {
  flash: BenchFlash;
  journal: JournalOptions;
  client: Partial<ClientOptions>;
  records: number;
  loaded: number;
}
let bootImage: BootImage | undefined;
let booted: MqttClient | undefined;
let bootTransport: { clock: VirtualClock; broker: CountingBroker } | undefined;

/**
 * Fills a 64 KB partition (16 blocks of 4 KB) through a client offline, 64-byte QoS 1 publishes:
 * `full`, until the journal refuses (a queue that takes the whole partition, DROP_NEWEST); else 1,000
 * publishes into the default queue (64 entries, 8 KB) under DROP_OLDEST, so every block is written
 * (records and acknowledgements, the ring turned) and the last 64 are live.
 */
function bootImageOf(full: boolean): BootImage {
  const flash = new BenchFlash(4096, 16);
  const journalOptions: JournalOptions = { maxPayloadBytes: 2048, maxRecords: 1000 };
  const clientOptions: Partial<ClientOptions> = full ? { queueEntries: 1000, queueBytes: 1000 * REQUEST_BYTES, dropPolicy: DROP_NEWEST } : { dropPolicy: DROP_OLDEST };
  const journal = new Journal(flash, journalOptions);
  journal.open();
  const r = rig({ ...clientOptions, persist: journal });
  if (full) while (r.client.publish(TOPIC, PAYLOAD, 1) === Accepted.Queued);
  else for (let i = 0; i < 1000; i++) r.client.publish(TOPIC, PAYLOAD, 1);
  let written = 0;
  for (let block = 0; block < 16; block++) if (flash.bytes[block * 4096] !== 0xff) written++;
  if (written < 15) throw new Error("only " + written + " of 16 blocks written");
  return { flash, journal: journalOptions, client: clientOptions, records: journal.count, loaded: r.client.queuedCount };
}

/** One boot per run (not per message): bench/run.ts multiplies the per-message figure by n. */
function bootScenario(full: boolean): Scenario {
  return {
    setup() {
      bootImage = bootImageOf(full);
      booted = undefined;
      const clock = new VirtualClock(0);
      bootTransport = { clock, broker: new CountingBroker(clock) };
    },
    /** The boot: the journal opened (recovery reads the partition), then a new client over it (the load). */
    run(n) {
      if (n === 0) return;
      const image = bootImage as BootImage;
      const { clock, broker } = bootTransport as { clock: VirtualClock; broker: CountingBroker };
      const journal = new Journal(image.flash, image.journal);
      journal.open();
      booted = new MqttClient({ clientId: "bench-device", transport: broker, clock, ...image.client, persist: journal });
    },
    check() {
      const image = bootImage as BootImage;
      const client = booted as MqttClient;
      if (client.stats.loadedFromStore !== image.records || client.queuedCount !== image.loaded) throw new Error("loaded " + client.stats.loadedFromStore + " of " + image.records);
      return `${image.records} records loaded (${image.records * REQUEST_BYTES} bytes) from a 64 KB partition`;
    },
  };
}

scenarios["boot-recovery-full-partition"] = bootScenario(true);
scenarios["boot-recovery-default-queue"] = bootScenario(false);

// ------------------------------------------------------------------ peers on the same engine

const encoder = new TextEncoder();
const textDecoder = new TextDecoder();
let sinkBytes = 0;
const sink = {
  write(bytes: Uint8Array, offset: number, length: number): boolean {
    sinkBytes += length + offset - offset;
    return bytes.length >= 0;
  },
};

/** A naive hand-written QoS 0 PUBLISH: bytes gathered in an Array, the topic through TextEncoder. */
function naivePublish(topic: string, payload: Uint8Array): void {
  const topicBytes = encoder.encode(topic);
  const packet: number[] = [0x30, 2 + topicBytes.length + payload.length, topicBytes.length >> 8, topicBytes.length & 0xff];
  for (const byte of topicBytes) packet.push(byte);
  for (const byte of payload) packet.push(byte);
  const bytes = new Uint8Array(packet);
  sink.write(bytes, 0, bytes.length);
}

const minimalTx = new Uint8Array(2048);
/** The floor: no validation, ASCII topic < 128 bytes, one preallocated buffer. */
function minimalPublish(topic: string, payload: Uint8Array): void {
  const tx = minimalTx;
  const topicLength = topic.length;
  tx[0] = 0x30;
  tx[1] = 2 + topicLength + payload.length;
  tx[2] = 0;
  tx[3] = topicLength;
  for (let i = 0; i < topicLength; i++) tx[4 + i] = topic.charCodeAt(i);
  tx.set(payload, 4 + topicLength);
  sink.write(tx, 0, 4 + topicLength + payload.length);
}

/** A naive inbound PUBLISH: a new message object, the topic through TextDecoder, the payload copied. */
function naiveInbound(bytes: Uint8Array, handler: (message: { topic: string; payload: Uint8Array; qos: number }) => void): void {
  const qos = (bytes[0] >> 1) & 3;
  let at = 1;
  let remaining = 0;
  let multiplier = 1;
  let digit: number;
  do {
    digit = bytes[at++];
    remaining += (digit & 0x7f) * multiplier;
    multiplier *= 128;
  } while (digit & 0x80);
  const end = at + remaining;
  const topicLength = (bytes[at] << 8) | bytes[at + 1];
  const topic = textDecoder.decode(bytes.subarray(at + 2, at + 2 + topicLength));
  at += 2 + topicLength;
  let packetId = 0;
  if (qos > 0) {
    packetId = (bytes[at] << 8) | bytes[at + 1];
    at += 2;
  }
  handler({ topic, payload: bytes.slice(at, end), qos });
  if (qos > 0) sink.write(new Uint8Array([0x40, 2, packetId >> 8, packetId & 0xff]), 0, 4);
}
let naiveDelivered = 0;
const naiveHandler = (message: { payload: Uint8Array }): void => {
  naiveDelivered += message.payload.length;
};

const peers: Record<string, Scenario> = {
  "peer:naive-publish-qos0": {
    setup() {},
    run(n) {
      for (let i = 0; i < n; i++) naivePublish(TOPIC, PAYLOAD);
    },
  },
  "peer:minimal-publish-qos0": {
    setup() {},
    run(n) {
      for (let i = 0; i < n; i++) minimalPublish(TOPIC, PAYLOAD);
    },
  },
  "peer:naive-inbound-qos1+puback": {
    setup() {},
    run(n) {
      for (let i = 0; i < n; i++) naiveInbound(INBOUND_QOS1, naiveHandler);
    },
  },
};

// ------------------------------------------------------------------ memory probes

/**
 * ArrayBuffer bytes reachable from `root`'s own properties (each buffer once), by top-level field,
 * and the item count of plain Arrays (XS keeps array items in chunk memory, not in the slot count).
 */
function bufferBytes(root: object, skip: readonly string[]): Record<string, number> {
  const seen = new Set<ArrayBufferLike>();
  const visited = new Set<object>();
  const totals: Record<string, number> = {};
  visited.add(root);
  const walk = (value: unknown, field: string): void => {
    if (value === null || typeof value !== "object") return;
    if (Array.isArray(value) && !visited.has(value)) totals["(array items) " + field] = (totals["(array items) " + field] ?? 0) + value.length;
    if (ArrayBuffer.isView(value)) {
      if (!seen.has(value.buffer)) {
        seen.add(value.buffer);
        totals[field] = (totals[field] ?? 0) + value.buffer.byteLength;
      }
      return;
    }
    if (visited.has(value)) return;
    visited.add(value);
    for (const key of Reflect.ownKeys(value)) {
      if (typeof key !== "string") continue;
      const descriptor = Object.getOwnPropertyDescriptor(value, key);
      if (descriptor && "value" in descriptor) walk(descriptor.value, field);
    }
  };
  for (const key of Object.keys(root)) {
    if (skip.includes(key)) continue;
    walk((root as Record<string, unknown>)[key], key);
  }
  return totals;
}

const kept: unknown[] = [];
let transportAndClock: { clock: VirtualClock; broker: CountingBroker } | undefined;
let outage: Rig | undefined;
let outageDrops = 0;

const probes: Record<string, (arg: number) => unknown> = {
  /** Transport and clock first, so the next step's slots are the client's alone. */
  "footprint:prepare"() {
    kept.length = 0;
    const clock = new VirtualClock(0);
    transportAndClock = { clock, broker: new CountingBroker(clock) };
    return {};
  },
  /** arg = queue entries (bytes = 128 per entry, the default 64/8192 ratio; 0 disables the queue). */
  "footprint:construct"(entries: number) {
    const { clock, broker } = transportAndClock as { clock: VirtualClock; broker: CountingBroker };
    const client = new MqttClient({ clientId: "bench-device", transport: broker, clock, queueEntries: entries, queueBytes: entries * 128 });
    kept.push(client);
    // By the session's fields (its outbox, subscriptions, decoder, buffers...): the client itself holds little else.
    return bufferBytes((client as unknown as { session: object }).session, ["transport", "clock", "sink", "onTimer"]);
  },
  "footprint:release"() {
    kept.length = 0;
    transportAndClock = undefined;
    return {};
  },
  /** arg = entries: a Ring with no arena, to weigh its per-entry metadata. */
  "ring:construct"(entries: number) {
    const ring = new Ring(0, entries);
    kept.push(ring);
    return bufferBytes(ring, []);
  },
  /** Fills an offline queue (1000 entries, 8192 bytes, DROP_NEWEST) with QoS arg publishes of 64 B to "bench/t". */
  "ring:fill"(qos: number) {
    const r = rig({ queueEntries: 1000, queueBytes: 8192, dropPolicy: DROP_NEWEST });
    let accepted = 0;
    while (r.client.publish(TOPIC, PAYLOAD, qos) === 1) accepted++;
    const queue = (r.client as unknown as { session: { outbox: { queue: Ring } } }).session.outbox.queue;
    return { entries: queue.count, accepted, usedBytes: queue.usedBytes, capacity: queue.capacity, topicBytes: TOPIC.length, payloadBytes: PAYLOAD.length };
  },
  /** Online, then the broker goes away and refuses every reconnect. 64-entry ring, DROP_OLDEST. */
  "outage:setup"() {
    outage = online({ queueEntries: 64, queueBytes: 8192, dropPolicy: DROP_OLDEST, backoff: { baseMs: 100, maxMs: 2000 } });
    outageDrops = 0;
    outage.client.on("drop", () => outageDrops++);
    outage.broker.openBehaviour = "refuse";
    outage.broker.drop();
    return { state: outage.client.stateName };
  },
  /** arg publishes while offline, one virtual second passing (reconnect attempts, all refused). */
  "outage:publish"(n: number) {
    const r = outage as Rig;
    for (let i = 0; i < n; i++) r.client.publish(TOPIC, PAYLOAD, 1, false, onAck);
    r.clock.advance(1000);
    return { queued: r.client.queuedCount, dropped: outageDrops, opens: r.broker.opens, state: r.client.stateName };
  },
  "outage:release"() {
    outage = undefined;
    return {};
  },
};

// ------------------------------------------------------------------ commands

function call(name: string, arg: number): unknown {
  const [kind, step] = name.split("/");
  if (kind === "offline") return (offline as unknown as Record<string, (n: number) => unknown>)[step](arg);
  const scenario = scenarios[kind] ?? peers[kind];
  if (scenario) {
    if (step === "setup") return scenario.setup();
    if (step === "run") return scenario.run(arg);
    if (step === "check") return scenario.check ? scenario.check() : "";
  }
  const probe = probes[name];
  if (probe) return probe(arg);
  throw new Error("unknown step " + name);
}

function handleCommand(message: ArrayBuffer): { result: ArrayBuffer } {
  const command = JSON.parse(textDecoder.decode(message)) as { op: string; name?: string; arg?: number };
  let reply: unknown;
  try {
    if (command.op === "gc") {
      gc();
      reply = { ok: true };
    } else if (command.op === "list") {
      reply = { ok: true, value: [...Object.keys(scenarios), ...Object.keys(peers)] };
    } else {
      reply = { ok: true, value: call(command.name ?? "", command.arg ?? 0) ?? null };
    }
  } catch (error) {
    reply = { ok: false, error: error instanceof Error ? error.name + ": " + error.message + "\n" + String(error.stack) : String(error) };
  }
  const bytes = encoder.encode(JSON.stringify(reply));
  return { result: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer };
}

(globalThis as unknown as { handleCommand: typeof handleCommand }).handleCommand = handleCommand;
