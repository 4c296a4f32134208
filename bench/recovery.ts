// Section 4 of `npm run bench`: recovery with real sockets, the desktop host and a real Mosquitto
// over mutual TLS.
// - Restart: the broker is restarted (RunningMosquitto.restart(): SIGTERM, start again on the same
//   port, resolved once Mosquitto logs "running", i.e. listens). Measured from that moment to the
//   client's `restored`, split into the backoff wait (until the successful attempt starts), the
//   handshake (TCP + TLS + CONNECT/CONNACK, until `online`) and the rest (until `restored`).
// - Drain: 100 QoS 1 messages published while the broker is down (queued), then the broker comes
//   back; measured from `online` to `restored` (the queue replayed at the drain interval) and to the
//   last PUBACK, at the default interval (500 ms, 2 Hz) and at 0 ms. Both clients share one restart.
import type { DesktopHost } from "../tools/desktop-build.ts";
import type { RunningMosquitto } from "../tools/mosquitto.ts";

export interface RestartSample {
  downMs: number;
  /** Kill to the client noticing (state backoff). */
  noticedMs: number;
  /** The backoff delay before the attempt that succeeded. */
  delayMs: number;
  failedAttempts: number;
  waitMs: number;
  handshakeMs: number;
  restoreMs: number;
  totalMs: number;
}

export interface DrainSample {
  drainIntervalMs: number;
  messages: number;
  drainMs: number;
  lastAckMs: number;
  acknowledged: number;
}

export interface RecoveryResult {
  backoffBaseMs: number;
  restarts: RestartSample[];
  drains: DrainSample[];
}

type Client = InstanceType<DesktopHost["MqttClient"]>;

const PAYLOAD = new Uint8Array(64).fill(0x42);

function makeClient(host: DesktopHost, broker: RunningMosquitto, clientId: string, drainIntervalMs: number, backoffBaseMs: number): Client {
  const transport = host.moddablePlatform.createTransport({ host: "localhost", port: broker.port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" });
  // Each client gets its own clock (one timer each).
  const clock = host.moddablePlatform.createClock();
  return new host.MqttClient({
    clientId,
    transport,
    clock,
    backoff: { baseMs: backoffBaseMs, maxMs: 32000, stableMs: 20000 },
    drainIntervalMs,
    queueEntries: 128,
    queueBytes: 16384,
    operationTimeoutMs: 60000,
  });
}

function waitFor(client: Client, event: "restored" | "offline", timeoutMs = 120_000): Promise<number> {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no ${event} within ${timeoutMs} ms (state ${client.stateName})`)), timeoutMs);
    const listener = (): void => {
      clearTimeout(timer);
      client.off(event, listener);
      done(performance.now());
    };
    client.on(event, listener);
  });
}

/** State changes with their times. */
function recordStates(client: Client): { name: string; at: number }[] {
  const states: { name: string; at: number }[] = [];
  client.on("state", (_state, name) => states.push({ name, at: performance.now() }));
  return states;
}

export async function runRecovery(host: DesktopHost, broker: RunningMosquitto, options: { repetitions: number; backoffBaseMs: number; drainMessages: number; slowDrain: boolean; log: (line: string) => void }): Promise<RecoveryResult> {
  host.mergeConfig({ tls: { DHE_RSA: false } });
  const restarts: RestartSample[] = [];
  for (let index = 0; index < options.repetitions; index++) {
    const client = makeClient(host, broker, `bench-recovery-${process.pid}-${index}`, 500, options.backoffBaseMs);
    client.on("error", () => undefined);
    const up = waitFor(client, "restored");
    client.connect();
    await up;
    const states = recordStates(client);
    const delays: number[] = [];
    client.on("reconnecting", (delay) => delays.push(delay));
    const restored = waitFor(client, "restored");
    const killedAt = performance.now();
    await broker.restart();
    const listeningAt = performance.now();
    const restoredAt = await restored;
    const attempts = states.filter((state) => state.name === "opening");
    const lastAttempt = attempts.at(-1)?.at ?? listeningAt;
    const onlineAt = states.find((state) => state.name === "resubscribing" && state.at >= lastAttempt)?.at ?? restoredAt;
    const noticedAt = states.find((state) => state.name === "backoff")?.at ?? killedAt;
    const sample: RestartSample = {
      downMs: listeningAt - killedAt,
      noticedMs: noticedAt - killedAt,
      delayMs: delays.at(-1) ?? -1,
      failedAttempts: attempts.length - 1,
      waitMs: lastAttempt - listeningAt,
      handshakeMs: onlineAt - lastAttempt,
      restoreMs: restoredAt - onlineAt,
      totalMs: restoredAt - listeningAt,
    };
    restarts.push(sample);
    options.log(`  restart ${index + 1}: broker down ${sample.downMs.toFixed(0)} ms, offline noticed after ${sample.noticedMs.toFixed(0)} ms, backoff ${sample.delayMs} ms, restored ${sample.totalMs.toFixed(0)} ms after it listened (wait ${sample.waitMs.toFixed(0)}, handshake ${sample.handshakeMs.toFixed(0)})`);
    client.disconnect();
  }

  // Drain: both clients queue while the broker is down, then one restart.
  const intervals = options.slowDrain ? [500, 0] : [0];
  const clients = intervals.map((interval, index) => makeClient(host, broker, `bench-drain-${process.pid}-${index}`, interval, options.backoffBaseMs));
  for (const client of clients) {
    client.on("error", () => undefined);
    const up = waitFor(client, "restored");
    client.connect();
    await up;
  }
  const offline = clients.map((client) => waitFor(client, "offline"));
  await broker.kill();
  await Promise.all(offline);
  const acked = clients.map(() => ({ count: 0, lastAt: 0 }));
  clients.forEach((client, index) => {
    const tally = acked[index]!;
    const onAck = (status: number): void => {
      if (status !== 0) return;
      tally.count++;
      tally.lastAt = performance.now();
    };
    for (let i = 0; i < options.drainMessages; i++) {
      const accepted = client.publish("bench/drain", PAYLOAD, 1, false, onAck);
      if (accepted !== 1) throw new Error(`publish while offline returned ${accepted}, not Queued`);
    }
  });
  const onlineAt = clients.map(() => 0);
  clients.forEach((client, index) => client.on("online", () => (onlineAt[index] = performance.now())));
  const restored = clients.map((client) => waitFor(client, "restored", 200_000));
  await broker.restart();
  const drains: DrainSample[] = [];
  for (let index = 0; index < clients.length; index++) {
    const restoredAt = await restored[index]!;
    const client = clients[index]!;
    while (acked[index]!.count < options.drainMessages && performance.now() - restoredAt < 5000) await new Promise((wait) => setTimeout(wait, 5));
    drains.push({
      drainIntervalMs: intervals[index]!,
      messages: options.drainMessages,
      drainMs: restoredAt - onlineAt[index]!,
      lastAckMs: acked[index]!.lastAt - onlineAt[index]!,
      acknowledged: acked[index]!.count,
    });
    options.log(`  drain at ${intervals[index]} ms: restored ${(restoredAt - onlineAt[index]!).toFixed(0)} ms after online, ${acked[index]!.count} acknowledged`);
    client.disconnect();
  }
  return { backoffBaseMs: options.backoffBaseMs, restarts, drains };
}
