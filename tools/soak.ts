// Soak: random faults against a real Mosquitto for N minutes while the real client (the core over
// the Moddable host over the desktop SecureSocket) publishes QoS 1 at a steady rate and receives
// QoS 1 on a persistent session.
//
//   npm run soak -- --minutes 10 [--seed 42] [--rate 50] [--every 5]
//
// Faults, one at a time, picked at random: broker killed and restarted (persistence on), link cut
// both ways (RST or FIN), cut mid-packet (either direction), cut during the TLS handshake, half-open
// link (blackhole until keep-alive finds it), broker unreachable for a while (queueing), slow
// 1-byte-fragmented delivery, high latency. A table is printed every few seconds. At the end the
// faults stop, everything drains, and every accepted message must have reached the observer.
// Exits 1 on any loss of an accepted message, an unexpected protocol error, a callback error or an
// uncaught exception.
import { fileURLToPath } from "node:url";
import { CommandError, helpIfAsked, readCommandLine, runCommand, UsageError } from "./cli.ts";
import { startFaultProxy } from "./fault-proxy.ts";
import { findMosquitto, MOSQUITTO_MISSING } from "./mosquitto.ts";
import { createFixtures, removeFixtures } from "../test/desktop/fixtures.ts";
import { ClientRig, Observer, prepareHost, sleep, startTlsBroker, summarise, waitFor } from "../test/reliability/kit.ts";

export interface SoakOptions {
  readonly minutes: number;
  readonly seed?: number;
  /** Outbound QoS 1 messages per second. Default 50. */
  readonly rate?: number;
  /** Seconds between table rows. Default 5. */
  readonly every?: number;
  readonly print?: (line: string) => void;
}

export interface SoakResult {
  readonly ok: boolean;
  readonly problems: string[];
  readonly seconds: number;
  readonly published: number;
  readonly accepted: number;
  readonly acknowledged: number;
  readonly received: number;
  readonly lost: number;
  readonly duplicates: number;
  readonly inboundSent: number;
  readonly inboundReceived: number;
  readonly inboundDuplicates: number;
  readonly reconnects: number;
  readonly drops: number;
  readonly faults: Record<string, number>;
  readonly blackholeDetectionMs: { n: number; min: number; median: number; max: number };
  readonly heapMB: { start: number; max: number; end: number };
}

const FAULTS = ["restart", "cut", "cut-fin", "cut-mid-packet", "cut-handshake", "blackhole", "outage", "fragment", "latency"] as const;
type Fault = (typeof FAULTS)[number];

function random(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
}

const mb = (bytes: number): number => Math.round(bytes / 1048576);

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const print = options.print ?? ((line: string) => process.stdout.write(line + "\n"));
  const rand = random(options.seed ?? 20261129);
  const between = (low: number, high: number): number => Math.round(low + rand() * (high - low));
  const rate = options.rate ?? 50;
  const every = (options.every ?? 5) * 1000;
  const durationMs = options.minutes * 60_000;
  const keepAliveSeconds = 1;
  const problems: string[] = [];
  const crash = (what: string) => (error: unknown): void => {
    problems.push(`${what}: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
  };
  const onUncaught = crash("uncaught exception");
  const onRejection = crash("unhandled rejection");
  process.on("uncaughtException", onUncaught);
  process.on("unhandledRejection", onRejection);

  const fixtures = createFixtures();
  const broker = await startTlsBroker(fixtures, { persistence: true });
  const proxy = await startFaultProxy({ targetPort: broker.port });
  const observer = await Observer.start(broker, fixtures, "soak/up", "soak-observer");
  const host = await prepareHost("soak", fixtures);
  const rig = new ClientRig(host, {
    port: proxy.port,
    clientId: "soak-device",
    cleanSession: false,
    keepAliveSeconds,
    connectTimeoutMs: 5000,
    operationTimeoutMs: 10_000,
    backoff: { baseMs: 50, maxMs: 1000, stableMs: 2000, jitter: true },
    queueEntries: 10_000,
    queueBytes: 1024 * 1024,
    inflightWindow: 20,
    inflightBytes: 16 * 1024,
    drainIntervalMs: 2,
  });
  const client = rig.client;
  const ledger = observer.ledger("up");
  const inbound = new Map<number, number>();
  client.subscribe("soak/down", 1, (message) => {
    const seq = Number(Buffer.from(message.payload).toString().split(":")[1]);
    inbound.set(seq, (inbound.get(seq) ?? 0) + 1);
  });
  const faults: Record<string, number> = Object.fromEntries(FAULTS.map((name) => [name, 0]));
  const detections: number[] = [];
  const heapStart = process.memoryUsage().heapUsed;
  let heapMax = heapStart;
  const started = performance.now();
  const elapsed = (): number => performance.now() - started;

  client.connect();
  await waitFor(() => client.stateName === "online", 15_000, "the soak client online");

  let seq = 0;
  const publisher = setInterval(() => ledger.publish(client, "soak/up", ++seq, 1, between(0, 300)), Math.max(1, Math.round(1000 / rate)));
  let inboundSeq = 0;
  const inboundPublisher = setInterval(() => {
    if (observer.connected) observer.client.publish("soak/down", "down:" + ++inboundSeq, { qos: 1 });
  }, 200);

  const header = "|      t |  sent | accepted | acked | received | pending | dup | reconnects | drops | faults | inbound | heap MB | queue/inflight | state";
  print(header);
  print("|" + header.slice(1).replace(/[^|]/g, "-"));
  const row = (): void => {
    const heap = process.memoryUsage().heapUsed;
    heapMax = Math.max(heapMax, heap);
    const arrived = ledger.arrivals.size;
    const faultCount = Object.values(faults).reduce((a, b) => a + b, 0);
    print(
      `| ${(elapsed() / 1000).toFixed(0).padStart(5)}s | ${String(ledger.published).padStart(5)} | ${String(ledger.accepted.size).padStart(8)} | ${String(ledger.acknowledged.size).padStart(5)} | ${String(arrived).padStart(8)} | ${String(ledger.accepted.size - arrived).padStart(7)} | ${String(ledger.duplicates()).padStart(3)} | ${String(Math.max(0, client.stats.connects - 1)).padStart(10)} | ${String(client.stats.dropped).padStart(5)} | ${String(faultCount).padStart(6)} | ${String(inbound.size).padStart(7)} | ${String(mb(heap)).padStart(7)} | ${(client.queuedCount + "/" + client.inflightCount).padStart(14)} | ${client.stateName}`,
    );
  };
  const table = setInterval(row, every);

  try {
    while (elapsed() < durationMs) {
      await waitFor(() => client.stateName === "online", 30_000, () => "the client back online; " + rig.tail());
      await sleep(between(800, 2500));
      if (elapsed() >= durationMs) break;
      // The last fault may still be playing out (a cut seen a moment late, a failed handshake, a
      // backoff): inject the next one only into a session that is up on exactly one link.
      if (client.stateName !== "online" || proxy.openLinks !== 1) continue;
      const fault = FAULTS[Math.floor(rand() * FAULTS.length)]!;
      faults[fault]++;
      const mark = rig.events.length;
      switch (fault) {
        case "restart":
          await broker.kill();
          await sleep(between(100, 1000));
          await broker.restart();
          break;
        case "cut":
          proxy.cutNow("reset");
          break;
        case "cut-fin":
          proxy.cutNow("fin");
          break;
        case "cut-mid-packet":
          proxy.cutAfter(rand() < 0.5 ? "up" : "down", between(1, 80));
          break;
        case "cut-handshake":
          proxy.cutAfter(rand() < 0.5 ? "up" : "down", between(0, 600), { next: true });
          proxy.cutNow();
          break;
        case "blackhole": {
          const from = rig.now();
          const before = { state: client.stateName, links: proxy.openLinks, stats: { ...proxy.stats }, lastEvents: rig.tail(6) };
          proxy.blackhole(true);
          const offline = await rig.next("offline", keepAliveSeconds * 1500 + 3000, mark).catch((error: Error) => {
            throw new Error(`${error.message}; at the blackhole: ${JSON.stringify(before)}; now: links ${proxy.openLinks}, ${JSON.stringify(proxy.stats)}, received ${client.stats.received}`);
          });
          detections.push(offline.at - from);
          if (offline.at - from > keepAliveSeconds * 1500 + 200) problems.push(`half-open link found after ${Math.round(offline.at - from)} ms (keep-alive ${keepAliveSeconds} s)`);
          proxy.heal();
          break;
        }
        case "outage":
          proxy.refuse(true);
          proxy.cutNow();
          await sleep(between(500, 3000));
          proxy.refuse(false);
          break;
        case "fragment":
          proxy.fragment("both", 1, 0);
          proxy.latency("both", 20);
          await sleep(between(1000, 3000));
          proxy.heal();
          break;
        case "latency":
          proxy.latency("both", between(100, 400));
          await sleep(between(1000, 3000));
          proxy.heal();
          break;
      }
    }
  } catch (error) {
    problems.push("soak loop: " + (error instanceof Error ? error.message : String(error)));
  }

  // Stop the faults, let everything drain, then count.
  proxy.heal();
  if (!broker.running) await broker.restart().catch(crash("broker restart"));
  clearInterval(publisher);
  clearInterval(inboundPublisher);
  try {
    await waitFor(() => client.stateName === "online" && client.queuedCount === 0 && client.inflightCount === 0, 60_000, () => `queue and in-flight window empty (${client.stateName} ${client.queuedCount}/${client.inflightCount}); ${rig.tail()}`);
    await waitFor(() => ledger.lost().length === 0, 30_000, "every accepted message at the observer");
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  }
  await sleep(500);
  row();
  clearInterval(table);

  const lost = ledger.lost();
  if (lost.length > 0) problems.push(`${lost.length} accepted messages lost: ${lost.slice(0, 30).join(",")}`);
  if (ledger.droppedButArrived().length > 0) problems.push("messages reported dropped arrived: " + ledger.droppedButArrived().slice(0, 20).join(","));
  if (client.stats.protocolErrors > 0) problems.push(`${client.stats.protocolErrors} protocol errors: ` + rig.named("error").filter((e) => e.detail.startsWith("protocol-error")).map((e) => e.detail).slice(0, 5).join("; "));
  if (client.stats.callbackErrors > 0) problems.push(`${client.stats.callbackErrors} callback errors`);
  let inboundDuplicates = 0;
  for (const count of inbound.values()) inboundDuplicates += count - 1;
  const result: SoakResult = {
    ok: problems.length === 0,
    problems,
    seconds: Math.round(elapsed() / 1000),
    published: ledger.published,
    accepted: ledger.accepted.size,
    acknowledged: ledger.acknowledged.size,
    received: ledger.arrivals.size,
    lost: lost.length,
    duplicates: ledger.duplicates(),
    inboundSent: inboundSeq,
    inboundReceived: inbound.size,
    inboundDuplicates,
    reconnects: Math.max(0, client.stats.connects - 1),
    drops: client.stats.dropped,
    faults,
    blackholeDetectionMs: summarise(detections.map(Math.round)),
    heapMB: { start: mb(heapStart), max: mb(heapMax), end: mb(process.memoryUsage().heapUsed) },
  };

  client.disconnect();
  await observer.close();
  await proxy.close();
  await broker.stop();
  removeFixtures(fixtures);
  process.off("uncaughtException", onUncaught);
  process.off("unhandledRejection", onRejection);
  return result;
}

// ------------------------------------------------------------------------------ command line

export const SOAK_USAGE = `usage: npm run soak -- [--minutes 1] [--seed 20261129] [--rate 50] [--every 5]

Random faults (broker restarts, cuts, half-open links, outages, slow and fragmented delivery)
against a real Mosquitto for --minutes, while the client publishes QoS 1 and receives QoS 1 on a
persistent session; a table row every --every seconds, then every accepted message must have arrived.

  --minutes M   how long (default 1; decimals allowed)
  --seed S      the fault sequence (a whole number; default 20261129)
  --rate R      QoS 1 messages per second (default 50)
  --every S     seconds between table rows (default 5)
  --help        this text

Needs Mosquitto (apt-get install mosquitto) and openssl. Exit codes: 0 when nothing was lost, 1 on
any loss or failure, 2 for a bad option.`;

function positive(value: string | undefined, name: string, fallback: number, whole = false): number {
  if (value === undefined) return fallback;
  const number = /^\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN;
  if (!(number > 0) || (whole && !Number.isInteger(number))) throw new UsageError(`${name} must be ${whole ? "a whole number" : "a number"} above 0, got ${JSON.stringify(value)}`);
  return number;
}

async function main(): Promise<void> {
  const values = readCommandLine({ minutes: { type: "string" }, seed: { type: "string" }, rate: { type: "string" }, every: { type: "string" } });
  helpIfAsked(values, SOAK_USAGE);
  const minutes = positive(values.minutes, "--minutes", 1);
  const seed = values.seed === undefined ? undefined : /^-?\d+$/.test(values.seed) ? Number(values.seed) : Number.NaN;
  if (Number.isNaN(seed)) throw new UsageError(`--seed must be a whole number, got ${JSON.stringify(values.seed)}`);
  const rate = positive(values.rate, "--rate", 50, true);
  const every = positive(values.every, "--every", 5);
  if (!findMosquitto()) throw new CommandError(MOSQUITTO_MISSING);
  console.log(`soak: ${minutes} min, seed ${seed ?? 20261129}, faults: ${FAULTS.join(", ")}`);
  const result = await runSoak({ minutes, seed, rate, every });
  console.log(JSON.stringify({ ...result, problems: undefined }, null, 1));
  if (result.ok) console.log(`soak: OK, ${result.seconds} s, ${Object.values(result.faults).reduce((a, b) => a + b, 0)} faults survived, ${result.accepted} accepted, 0 lost, ${result.duplicates} duplicates`);
  else console.log("soak: FAILED\n  " + result.problems.join("\n  "));
  process.exit(result.ok ? 0 : 1);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  void runCommand("soak", main);
}
