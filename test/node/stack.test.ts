// A reply published from a message handler must not be written to the transport from inside the
// read that delivered the message: on a device that write is a TLS record on top of the whole
// inbound path, and it overflowed the ESP32's default 384-slot XS stack. Node shows the frames.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ScriptedBroker } from "../support/scripted-broker";
import { connected } from "../support/session";

function framesAtWrite(qos: number): string {
  const s = connected();
  let stack = "";
  const write = ScriptedBroker.prototype.write;
  s.broker.write = function (bytes: Uint8Array, offset: number, length: number): boolean {
    if (bytes[offset] >> 4 === 3 && stack === "" && s.broker.sent(3).length === 0) stack = new Error("write").stack ?? "";
    return write.call(this, bytes, offset, length);
  };
  s.client.subscribe("cmd", 1, function replyFromHandler() {
    s.client.publish("reply", "pong", qos);
  });
  s.clock.settle();
  s.broker.publish("cmd", "ping", 1);
  s.clock.settle();
  assert.deepEqual(s.published(), ["pong"], "the reply went out");
  return stack;
}

for (const qos of [0, 1]) {
  test(`a QoS ${qos} reply from a message handler is written after the read's packet handling has returned`, () => {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 100;
    try {
      const stack = framesAtWrite(qos);
      assert.ok(stack.includes("onTransportData"), "written while the transport's read call is still on the stack:\n" + stack);
      for (const frame of ["replyFromHandler", "onPublish", "dispatch", "feed"]) assert.ok(!stack.includes(frame), `${frame} is still on the stack at the write:\n${stack}`);
    } finally {
      Error.stackTraceLimit = limit;
    }
  });
}
