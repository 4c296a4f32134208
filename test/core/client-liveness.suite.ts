// A bogus fixed header, or a length that is a lie, must not make the decoder swallow the packets
// behind it: found by `npm run fuzz -- --runs 1000000` (session fuzz, e.g. seed 23737570), when a
// packet's type and flags were checked only once its whole claimed body had arrived and every byte
// (a swallowed PINGRESP too) counted as a sign of life. Now the first byte and the length are
// checked as they arrive, and keep-alive counts whole packets.
import { connected } from "../support/session";
import { equal, ok, test } from "../harness";

test("a reserved packet type (0) is refused at its first byte, not after the body its length claims", () => {
  const s = connected({ inflightWindow: 4 });
  s.broker.ackPublishes = false;
  s.client.publish("t", "x", 1);
  s.clock.settle();
  s.broker.deliver(new Uint8Array([0x00, 0x40])); // type 0, "64 bytes follow"
  s.clock.settle();
  equal(s.client.stats.protocolErrors, 1, "protocol error at once; events: " + s.names().join(","));
});

test("a PUBACK whose remaining length is not 2 is refused at its length byte, not 64 bytes later", () => {
  const s = connected({ inflightWindow: 4 });
  s.broker.ackPublishes = false;
  s.client.publish("t", "x", 1);
  s.clock.settle();
  s.broker.deliver(new Uint8Array([0x40, 0x40])); // PUBACK claiming 64 bytes
  s.clock.settle();
  equal(s.client.stats.protocolErrors, 1, "protocol error at once; events: " + s.names().join(","));
});

test("a broker whose bytes never complete a packet is declared dead within 1.5 x keep-alive", () => {
  const s = connected({ keepAliveSeconds: 10, maxPacketBytes: 4096, inflightWindow: 4 });
  s.client.publish("t", "x", 1);
  s.clock.settle();
  const before = s.client.stats.acknowledged;
  // A PUBLISH header claiming 2,047 bytes; the broker then only answers PINGREQs (2 bytes each).
  s.broker.deliver(new Uint8Array([0x30, 0xff, 0x0f]));
  s.clock.settle();
  s.clock.advance(60_000);
  const offline = s.events.filter((event) => event.name === "offline");
  ok(offline.length >= 1 && offline[0]!.at <= 15_000 + 1, "dead within 15 s; events: " + s.names("offline", "error", "reconnecting").join(","));
  equal(s.client.stats.acknowledged, before);
});
