// Found by `npm run fuzz -- --runs 1000000` (session fuzz, e.g. seed 23737570): a fixed header that
// can never be valid, or a length that is a lie, makes the decoder swallow the packets that follow
// as the "body" of the bogus packet. Acknowledgements vanish, the in-flight window stays full, and
// because every swallowed byte (a PINGRESP too) counts as "received", keep-alive never declares the
// link dead: the session hangs until the bogus length is filled, which at 2 bytes per keep-alive
// period can take hours. On the virtual clock, so exact and fast. Marked `todo` until the decoder
// is fixed: they run and show the failure without failing the suite (see RELIABILITY.md, Found).
import assert from "node:assert/strict";
import { test } from "node:test";
import { connected } from "../support/session.ts";

const TODO = { todo: "known defect: the decoder validates a packet's type and flags only once its whole claimed body has arrived; keep-alive counts bytes, not packets" };

test("a reserved packet type (0) is refused at its first byte, not after the body its length claims", TODO, () => {
  const s = connected({ inflightWindow: 4 });
  s.broker.ackPublishes = false;
  s.client.publish("t", "x", 1);
  s.clock.settle();
  s.broker.deliver(new Uint8Array([0x00, 0x40])); // type 0, "64 bytes follow"
  s.clock.settle();
  assert.equal(s.client.stats.protocolErrors, 1, "protocol error at once; events: " + s.names().join(","));
});

test("a PUBACK whose remaining length is not 2 is refused at its length byte, not 64 bytes later", TODO, () => {
  const s = connected({ inflightWindow: 4 });
  s.broker.ackPublishes = false;
  s.client.publish("t", "x", 1);
  s.clock.settle();
  s.broker.deliver(new Uint8Array([0x40, 0x40])); // PUBACK claiming 64 bytes
  s.clock.settle();
  assert.equal(s.client.stats.protocolErrors, 1, "protocol error at once; events: " + s.names().join(","));
});

test("a broker whose bytes never complete a packet is declared dead within 1.5 x keep-alive", TODO, () => {
  const s = connected({ keepAliveSeconds: 10, maxPacketBytes: 4096, inflightWindow: 4 });
  s.client.publish("t", "x", 1);
  s.clock.settle();
  const before = s.client.stats.acknowledged;
  // A PUBLISH header claiming 2,047 bytes; the broker then only answers PINGREQs (2 bytes each).
  s.broker.deliver(new Uint8Array([0x30, 0xff, 0x0f]));
  s.clock.settle();
  s.clock.advance(60_000);
  const offline = s.events.filter((event) => event.name === "offline");
  assert.ok(offline.length >= 1 && offline[0]!.at <= 15_000 + 1, "dead within 15 s; events: " + s.names("offline", "error", "reconnecting").join(","));
  assert.equal(s.client.stats.acknowledged, before);
});
