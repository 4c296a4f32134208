// The Moddable transport under load, in this process over mutual TLS: a QoS 1 window and a QoS 0
// burst far larger than its transmit buffer make it refuse writes, which must not cost the
// connection: everything arrives once and in order, and the looped-back QoS 1 messages are
// acknowledged through the control reserve while data waits.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { loadDesktopHost } from "../../tools/desktop-build.ts";
import type { Transport, TransportSink } from "../../modules/types.ts";
import { useBrokerSetup } from "./fixtures.ts";

const setup = useBrokerSetup();

function payload(prefix: string, i: number): string {
  return (prefix + String(i).padStart(6, "0")).padEnd(64, ".");
}

test("a full Moddable transport is not a lost link: a QoS 1 window of 100 (the most allowed) and a QoS 0 burst arrive once, in order, with no reconnect", { timeout: 60_000 }, async (t) => {
  const host = await loadDesktopHost(join(setup.work, "host.mjs"));
  host.setResourceDirectory(setup.fixtures.pki);
  const inner = host.moddablePlatform.createTransport({ host: "localhost", port: setup.broker.port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" });
  let refused = 0;
  const transport: Transport = {
    open: (sink: TransportSink) => inner.open(sink),
    write: (bytes, offset, length) => {
      const taken = inner.write(bytes, offset, length);
      if (!taken) refused++;
      return taken;
    },
    end: () => inner.end(),
    abort: () => inner.abort(),
  };
  const window = 100;
  const client = new host.MqttClient({
    clientId: "backpressure",
    transport,
    clock: host.moddablePlatform.createClock(),
    inflightWindow: window,
    inflightBytes: window * 100,
    queueEntries: 2000,
    queueBytes: 200_000,
    operationTimeoutMs: 60_000,
  });
  const problems: string[] = [];
  client.on("offline", (reason) => problems.push("offline: " + reason));
  client.on("error", (error) => problems.push("error: " + error.message));
  const looped: string[] = [];
  // The pump below counts on acknowledgements to refill the window: the SUBACK comes first, or the
  // SUBSCRIBE at the window's head would hold its slots until after the last PUBACK of the window.
  const subscribed = new Promise<void>((done) => client.subscribe("bp/#", 1, (message) => looped.push(Buffer.from(message.payload).toString()), () => done()));
  await new Promise<void>((done) => client.on("restored", () => done()).connect());
  await subscribed;

  // QoS 1: keep the window full, as the throughput bench does.
  const total = 3000;
  await new Promise<void>((done, fail) => {
    let published = 0;
    let acknowledged = 0;
    const pump = (): void => {
      while (published < total && client.inflightCount < window) {
        client.publish("bp/q1", payload("a", published++), 1, false, (status) => {
          if (status !== host.AckStatus.Acknowledged) return fail(new Error("ack status " + status));
          if (++acknowledged === total) done();
          else pump();
        });
      }
    };
    pump();
  });
  // QoS 0: one synchronous burst of 1000 x 77 bytes, far more than the transport holds.
  const results = new Set<number>();
  for (let i = 0; i < 1000; i++) results.add(client.publish("bp/q0", payload("b", i), 0));
  assert.ok(results.has(host.Accepted.Queued), "part of the burst waited in the queue");
  assert.ok(!results.has(host.Accepted.Dropped));
  while (looped.length < total + 1000) await new Promise((wait) => setTimeout(wait, 20));

  t.diagnostic(refused + " writes refused for lack of room");
  assert.ok(refused > 0, "the transport did refuse writes");
  assert.deepEqual(problems, []);
  assert.equal(client.stats.connects, 1);
  assert.equal(client.stats.resent, 0);
  const atBroker = setup.broker.messages.filter((message) => message.clientId === "backpressure");
  const wanted = [...Array.from({ length: total }, (_, i) => payload("a", i)), ...Array.from({ length: 1000 }, (_, i) => payload("b", i))];
  assert.deepEqual(atBroker.map((message) => message.payload.toString()), wanted, "the broker got every message once, in order");
  assert.ok(atBroker.every((message) => !message.dup));
  assert.deepEqual(looped, wanted, "the loop-back subscription got every message once, in order (each QoS 1 one acknowledged)");
  const offline = new Promise<void>((done) => client.on("offline", () => done()));
  client.disconnect();
  await offline;
});
