// A hostile or broken broker: every malformed input closes the connection with a named protocol
// error, the client reconnects, nothing escapes as an exception, and no buffer grows past its size.
import fc from "fast-check";
import { ErrorCode } from "../../modules/types";
import { equal, ok, test } from "../harness";
import { connack, publishPacket, puback, suback } from "../support/broker-codec";
import { connected } from "../support/session";

const MALFORMED: [string, number[], string][] = [
  ["remaining length over four bytes", [0x30, 0x80, 0x80, 0x80, 0x80, 0x01], "remaining length"],
  ["oversized SUBACK", [0x90, 0xff, 0xff, 0x03], "exceeds the maximum"],
  ["unknown packet type 0", [0x00, 0x00], "unexpected packet type 0"],
  ["reserved packet type 15", [0xf0, 0x00], "unexpected packet type 15"],
  ["CONNECT from the broker", [0x10, 0x00], "unexpected packet type 1"],
  ["SUBSCRIBE from the broker", [0x82, 0x02, 0x00, 0x01], "unexpected packet type 8"],
  ["PUBREC (QoS 2)", [0x50, 0x02, 0x00, 0x01], "QoS 2"],
  ["PUBACK with wrong flags", [0x42, 0x02, 0x00, 0x01], "malformed PUBACK"],
  ["PUBACK too long", [0x40, 0x03, 0x00, 0x01, 0x00], "malformed PUBACK"],
  ["PINGRESP with a body", [0xd0, 0x01, 0x00], "malformed PINGRESP"],
  ["PUBLISH QoS 3", [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01], "QoS 3"],
  ["PUBLISH QoS 0 with DUP", [0x38, 0x03, 0x00, 0x01, 0x61], "DUP"],
  ["PUBLISH with a truncated topic", [0x30, 0x03, 0x00, 0x05, 0x61], "truncated PUBLISH"],
  ["PUBLISH with an empty topic", [0x30, 0x02, 0x00, 0x00], "empty topic"],
  ["PUBLISH with invalid UTF-8", [0x30, 0x04, 0x00, 0x02, 0xc3, 0x28], "UTF-8"],
  ["PUBLISH topic with a wildcard", [0x30, 0x04, 0x00, 0x02, 0x61, 0x23], "wildcard"],
  ["PUBLISH QoS 1 with packet id 0", [0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00], "packet id 0"],
  ["SUBACK with an invalid code", [0x90, 0x03, 0x00, 0x01, 0x03], "invalid return code"],
  ["PUBACK for an unknown id", Array.from(puback(777)), "unknown packet id 777"],
  ["UNSUBACK for an unknown id", [0xb0, 0x02, 0x00, 0x09], "unknown packet id 9"],
  ["SUBACK for an unknown id", Array.from(suback(99, [0])), "unknown packet id 99"],
  ["a second CONNACK", Array.from(connack(0)), "unexpected second CONNACK"],
  ["CONNACK with reserved flags", [0x20, 0x02, 0x02, 0x00], "reserved acknowledge flags"],
];

for (const [name, bytes, expected] of MALFORMED) {
  test("hostile broker: " + name + " closes with a named protocol error, then recovery", () => {
    const s = connected({ maxPacketBytes: 1024, backoff: { baseMs: 100, maxMs: 100, stableMs: 1000 } });
    // Also in 1-byte pieces: framing must not depend on chunk boundaries.
    for (const byte of bytes) s.broker.deliver(new Uint8Array([byte]));
    s.clock.settle();
    const protocolErrors = s.errors.filter((e) => e.code === ErrorCode.Protocol);
    equal(protocolErrors.length, 1, name);
    ok(protocolErrors[0].message.indexOf(expected) >= 0, protocolErrors[0].message);
    equal(s.client.stats.protocolErrors, 1);
    equal(s.client.stateName, "backoff");
    s.clock.advance(100);
    equal(s.client.stateName, "online");
  });
}

test("hostile broker: CONNACK errors before the session is up are refused too", () => {
  const s = connected();
  s.client.disconnect();
  s.broker.answerConnect = false;
  s.client.connect();
  s.clock.settle();
  s.broker.deliver(new Uint8Array([0x20, 0x02, 0x00, 0x09])); // return code 9
  s.clock.settle();
  ok(s.errors.some((e) => e.message.indexOf("unknown return code 9") >= 0), JSON.stringify(s.errors.map((e) => e.message)));
  s.broker.deliver(new Uint8Array([0x30, 0x03, 0x00, 0x01, 0x61]));
  s.clock.settle();
  equal(s.count("online"), 1, "no second online from garbage");
});

/**
 * The session fuzz: `numRuns` storms of random and mutated broker traffic, generated from `seed`.
 * Throws fast-check's report (seed, path, shrunk counterexample) on the first failing storm;
 * returns how many storms ran. `npm run fuzz` (tools/fuzz.ts) runs it for many more iterations.
 */
export function runSessionFuzz(numRuns: number, seed: number): number {
  const valid = [
    publishPacket("a/b", "hello", 0),
    publishPacket("a/b", "hello", 1, 7),
    puback(1),
    suback(2, [0, 1]),
    new Uint8Array([0xd0, 0x00]),
    connack(0),
  ];
  const mutated = fc
    .tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }))
    .map(([packet, edits]) => {
      const copy = packet.slice();
      for (const [at, value] of edits) copy[at % copy.length] = value;
      return copy;
    });
  const chunk = fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 64 }), mutated);
  let runs = 0;
  fc.assert(
    fc.property(fc.array(chunk, { minLength: 1, maxLength: 20 }), fc.array(fc.boolean(), { maxLength: 20 }), (chunks, publishes) => {
      runs++;
      const s = connected({ maxPacketBytes: 256, queueEntries: 8, queueBytes: 512, inflightWindow: 4, backoff: { baseMs: 10, maxMs: 10, stableMs: 50 } });
      s.client.subscribe("a/#", 1);
      chunks.forEach((bytes, i) => {
        if (publishes[i]) s.client.publish("t", "x", 1);
        s.broker.deliver(bytes);
        s.clock.advance(5);
      });
      // Backoff, reconnect, then the drain at its default 2 Hz of up to 8 queued requests.
      s.clock.advance(1000 + 8 * 500);
      ok(s.client.queuedCount <= 8 && s.client.inflightCount <= 4);
      ok(s.errors.every((e) => e.code !== ErrorCode.Callback), "no internal failure surfaced as a callback error");
      // After the storm a normal broker gets a normal session.
      equal(s.client.stateName, "online");
    }),
    { seed, numRuns },
  );
  return runs;
}

test("fuzz: random and mutated broker traffic never throws out, never exceeds the configured sizes", () => {
  equal(runSessionFuzz(150, 20261125), 150);
});
