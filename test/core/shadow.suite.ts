// The Device Shadow client (modules/aws/shadow.ts) and its Python-style facade, on the scripted
// broker and the virtual clock: the service's replies are written by each test, so every ordering
// (late, out of order, across a reconnect, never) is exact. Messages are AWS's documented examples.
import { AWSIoTMQTTClientCore } from "../../modules/awsiot";
import { textOf } from "../../modules/aws/json";
import * as json from "../../modules/aws/json";
import * as requests from "../../modules/aws/requests";
import * as shadowModule from "../../modules/aws/shadow";
import * as shadowFacade from "../../modules/aws/shadow-facade";
import { AWSIoTMQTTShadowClientCore, REQUEST_TIME_OUT } from "../../modules/aws/shadow-facade";
import { REPLY_STATUS_NAMES, ReplyStatus, SHADOW_MAX_DOCUMENT_BYTES, ShadowClient, type ShadowClientOptions, type ShadowReply } from "../../modules/aws/shadow";
import type { ClientOptions } from "../../modules/client";
import { DROP_NEWEST, DROP_OLDEST, ErrorCode, type IoTLinkError, type Platform } from "../../modules/types";
import * as fc from "fast-check";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { fromUtf8 } from "../support/broker-codec";
import { ScriptedBroker } from "../support/scripted-broker";
import { connected, type Session, session } from "../support/session";
import { VirtualClock } from "../support/virtual-clock";

const THING = "my-thing";
const PREFIX = "$aws/things/my-thing/shadow/";

interface Outcome {
  status: string;
  operation: string;
  requestId: number;
  payload: string;
  version: number;
  code: number;
  at: number;
}

interface Scene {
  s: Session;
  shadows: ShadowClient;
  outcomes: Outcome[];
  errors: IoTLinkError[];
  /** A callback that records each outcome. */
  record: (status: ReplyStatus, reply: ShadowReply) => void;
  /** The service answers on `topic` (QoS 1), and the clock settles. */
  reply: (topic: string, document: unknown) => void;
  /** The PUBLISH packets the device sent on `topic`, as parsed JSON. */
  requests: (topic: string) => Record<string, unknown>[];
  /** The filters of every SUBSCRIBE the device sent, in order. */
  subscribed: () => string[];
}

function scene(options: Partial<ClientOptions> = {}, shadowOptions: ShadowClientOptions = {}, online = true): Scene {
  const s = online ? connected(options) : session(options);
  const shadows = new ShadowClient(s.client, { clientTokenPrefix: "t", ...shadowOptions });
  const outcomes: Outcome[] = [];
  const errors: IoTLinkError[] = [];
  shadows.on("error", (error) => errors.push(error));
  return {
    s,
    shadows,
    outcomes,
    errors,
    record: (status, reply) => {
      outcomes.push({ status: REPLY_STATUS_NAMES[status], operation: reply.operation, requestId: reply.requestId, payload: textOf(reply.payload), version: reply.version, code: reply.code, at: s.clock.time });
    },
    reply: (topic, document) => {
      s.broker.publish(topic, typeof document === "string" ? document : JSON.stringify(document), 1);
      s.clock.settle();
    },
    requests: (topic) => s.broker.sent(3).filter((packet) => packet.topic === topic).map((packet) => JSON.parse(fromUtf8(packet.payload as Uint8Array)) as Record<string, unknown>),
    subscribed: () => s.broker.sent(8).flatMap((packet) => packet.filters as string[]),
  };
}

test("shadow: an update subscribes to its replies before it is published, carries a client token, and its acceptance reaches its callback", () => {
  const c = scene();
  const device = c.shadows.shadow(THING);
  equal(c.subscribed().length, 0, "nothing is subscribed before the first request");
  const id = device.update('{ "state": { "reported": { "color": "red", "power": "on" } } }', c.record);
  equal(id, 1);
  c.s.clock.settle();
  const kinds = c.s.broker.received.filter((packet) => packet.type === 3 || packet.type === 8).map((packet) => (packet.type === 8 ? "SUBSCRIBE " + (packet.filters as string[]).join(",") : "PUBLISH " + packet.topic));
  deepEqual(kinds, ["SUBSCRIBE " + PREFIX + "update/accepted", "SUBSCRIBE " + PREFIX + "update/rejected", "PUBLISH " + PREFIX + "update"]);
  const [sent] = c.requests(PREFIX + "update");
  deepEqual(sent, { state: { reported: { color: "red", power: "on" } }, clientToken: "t-1" });
  equal(c.s.broker.sent(3)[0].qos, 1, "requests are QoS 1");
  equal(c.shadows.pendingCount, 1);
  // The /accepted response state document, as AWS documents it.
  c.reply(PREFIX + "update/accepted", { state: { reported: { color: "red", power: "on" } }, metadata: { reported: { color: { timestamp: 1591057529 }, power: { timestamp: 1591057529 } } }, version: 2, timestamp: 1591057529, clientToken: "t-1" });
  equal(c.outcomes.length, 1);
  equal(c.outcomes[0].status, "accepted");
  equal(c.outcomes[0].operation, "update");
  equal(c.outcomes[0].requestId, 1);
  equal(c.outcomes[0].version, 2);
  equal(c.outcomes[0].code, 0);
  ok(c.outcomes[0].payload.indexOf('"power":"on"') > 0);
  equal(c.shadows.pendingCount, 0);
  equal(c.shadows.stats.accepted, 1);
  // The second request reuses the subscriptions.
  device.update({ state: { reported: { power: "off" } } }, c.record);
  c.s.clock.settle();
  equal(c.subscribed().length, 2);
  deepEqual(c.requests(PREFIX + "update")[1], { state: { reported: { power: "off" } }, clientToken: "t-2" });
});

test("shadow: get and delete send only a client token; get/accepted and 404 rejected are told apart", () => {
  const c = scene();
  const device = c.shadows.shadow(THING);
  device.get(c.record);
  c.s.clock.settle();
  deepEqual(c.requests(PREFIX + "get"), [{ clientToken: "t-1" }]);
  c.reply(PREFIX + "get/accepted", { state: { desired: { color: "RED", state: "STOP" }, reported: { color: "GREEN", engine: "ON" }, delta: { color: "RED", state: "STOP" } }, metadata: {}, version: 17, timestamp: 123456789, clientToken: "t-1" });
  equal(c.outcomes[0].status, "accepted");
  equal(c.outcomes[0].version, 17);
  equal(device.lastVersion, 17, "a get gives the whole document: older deltas are stale from now on");
  device.delete(c.record);
  c.s.clock.settle();
  deepEqual(c.requests(PREFIX + "delete"), [{ clientToken: "t-2" }]);
  c.reply(PREFIX + "delete/accepted", { version: 17, timestamp: 1591057529, clientToken: "t-2" });
  equal(c.outcomes[1].status, "accepted");
  equal(device.lastVersion, -1, "a deleted shadow may count its versions from 0 again");
  device.get(c.record);
  c.s.clock.settle();
  c.reply(PREFIX + "get/rejected", { code: 404, message: "No shadow exists with name: 'my-thing'", clientToken: "t-3" });
  equal(c.outcomes[2].status, "rejected");
  equal(c.outcomes[2].code, 404);
  equal(c.outcomes[2].version, -1);
  deepEqual(c.subscribed(), ["get/accepted", "get/rejected", "delete/accepted", "delete/rejected"].map((suffix) => PREFIX + suffix));
});

test("shadow: a version conflict is rejected with 409 (AWS's optimistic locking example), and the retry with the right version is accepted", () => {
  const c = scene();
  const device = c.shadows.shadow(THING);
  device.update({ state: { desired: { colors: ["BLUE"] } }, version: 9 }, c.record);
  c.s.clock.settle();
  // AWS's example result, with this request's token.
  c.reply(PREFIX + "update/rejected", { code: 409, message: "Version conflict", clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.code]), [["rejected", 409]]);
  ok(c.outcomes[0].payload.indexOf("Version conflict") > 0);
  device.update({ state: { desired: { colors: ["BLUE"] } }, version: 10 }, c.record);
  c.s.clock.settle();
  equal(c.requests(PREFIX + "update")[1].version, 10);
  c.reply(PREFIX + "update/accepted", { state: { desired: { colors: ["BLUE"] } }, metadata: {}, version: 11, timestamp: 1, clientToken: "t-2" });
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.version]), [["rejected", -1], ["accepted", 11]]);
});

test("shadow: a reply that never comes is reported once as a timeout on the client's timer; a late reply is ignored", () => {
  const c = scene({}, { timeoutMs: 3000 });
  const device = c.shadows.shadow(THING);
  const start = c.s.clock.time;
  device.update('{"state":{"reported":{"t":1}}}', c.record);
  device.get(c.record, 5000);
  c.s.clock.advance(2999);
  equal(c.outcomes.length, 0);
  c.s.clock.advance(1);
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.operation, outcome.at - start, outcome.payload]), [["timeout", "update", 3000, ""]]);
  c.s.clock.advance(2000);
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.at - start]), [["timeout", 3000], ["timeout", 5000]]);
  c.reply(PREFIX + "update/accepted", { state: {}, version: 3, clientToken: "t-1" });
  equal(c.outcomes.length, 2, "never reported accepted after its timeout");
  equal(c.shadows.stats.unmatched, 1);
  equal(c.shadows.stats.timedOut, 2);
  equal(c.s.clock.timerDueIn() < 0 || c.s.clock.timerDueIn() > 5000, true, "no deadline of the layer is left armed");
});

test("shadow: deltas arriving out of order are discarded by version; a 'version' inside state does not confuse the router", () => {
  const c = scene();
  const device = c.shadows.shadow(THING);
  const seen: number[] = [];
  device.onDelta((delta) => {
    seen.push(delta.version);
    equal(delta.shadow, device);
  });
  c.s.clock.settle();
  deepEqual(c.subscribed(), [PREFIX + "update/delta"]);
  // AWS's /delta example shape: state, metadata, version, timestamp.
  const delta = (version: number) => ({ state: { color: { r: 255 }, firmware: { version: 99 } }, metadata: { color: { r: { timestamp: 1 } } }, version, timestamp: 1 });
  for (const version of [5, 4, 5, 7, 6, 8]) c.reply(PREFIX + "update/delta", delta(version));
  deepEqual(seen, [5, 7, 8]);
  equal(c.shadows.stats.staleDeltas, 3);
  equal(c.shadows.stats.deltas, 3);
  equal(device.lastVersion, 8);
  device.resetVersion();
  c.reply(PREFIX + "update/delta", delta(2));
  deepEqual(seen, [5, 7, 8, 2], "after resetVersion() the next delta is taken");
  device.onDelta(undefined);
  c.s.clock.settle();
  deepEqual(c.s.broker.sent(10).flatMap((packet) => packet.filters as string[]), [PREFIX + "update/delta"], "clearing the handler unsubscribes");
});

test("shadow: a reconnect during a pending request: the client renews the reply subscriptions and re-sends the request; the layer adds no SUBSCRIBE of its own", () => {
  const c = scene({ backoff: { baseMs: 1000, maxMs: 8000, stableMs: 20000 } });
  const device = c.shadows.shadow(THING);
  // The PUBLISH is not acknowledged before the link goes: it stays in flight. (Acknowledged, with
  // its reply lost with the link, it would end as a timeout: the shadow test above.)
  c.s.broker.ackPublishes = false;
  device.update({ state: { reported: { t: 21 } } }, c.record, 10000);
  c.s.clock.settle();
  equal(c.requests(PREFIX + "update").length, 1);
  c.s.broker.ackPublishes = true;
  c.s.broker.drop();
  c.s.clock.advance(1000); // backoff, reconnect without a session
  equal(c.s.client.stateName, "online");
  // One resubscription batch from the client (both filters) before the request goes out again.
  const after = c.s.broker.received.slice(c.s.broker.received.findIndex((packet) => packet.type === 1 && packet !== c.s.broker.received[0]));
  const kinds = after.filter((packet) => packet.type === 3 || packet.type === 8).map((packet) => (packet.type === 8 ? "SUBSCRIBE " + (packet.filters as string[]).length : "PUBLISH " + packet.topic));
  deepEqual(kinds, ["SUBSCRIBE 2", "PUBLISH " + PREFIX + "update"]);
  deepEqual(c.requests(PREFIX + "update")[1], { state: { reported: { t: 21 } }, clientToken: "t-1" }, "the same request, same token");
  c.reply(PREFIX + "update/accepted", { state: { reported: { t: 21 } }, version: 4, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["accepted"]);
  equal(c.s.broker.sent(8).length, 3, "2 SUBSCRIBEs at the first request, 1 batch of both from the client's resubscription");
});

test("shadow: offline, a request is queued behind its subscriptions and answered after the reconnect", () => {
  const c = scene({ queueEntries: 8, queueBytes: 2048, drainIntervalMs: 10 }, {}, false);
  const device = c.shadows.shadow(THING);
  device.update({ state: { reported: { mode: "eco" } } }, c.record, 20000);
  equal(c.s.client.queuedCount, 3, "SUBSCRIBE, SUBSCRIBE, PUBLISH");
  c.s.client.connect();
  c.s.clock.advance(100);
  equal(c.s.client.stateName, "online");
  const kinds = c.s.broker.received.filter((packet) => packet.type === 3 || packet.type === 8).map((packet) => packet.type);
  deepEqual(kinds, [8, 8, 3]);
  c.reply(PREFIX + "update/accepted", { state: { reported: { mode: "eco" } }, version: 1, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["accepted"]);
});

test("shadow: a request dropped by the offline queue (DROP_OLDEST) is reported dropped, after the call, never accepted", () => {
  const c = scene({ queueEntries: 3, queueBytes: 2048, dropPolicy: DROP_OLDEST, drainIntervalMs: 10 }, {}, false);
  const device = c.shadows.shadow(THING);
  device.update({ state: { reported: { n: 1 } } }, c.record);
  equal(c.s.client.queuedCount, 3);
  // Three more publishes push the oldest requests (its two SUBSCRIBEs, then the update) out of the queue.
  c.s.client.publish("other", "x", 1);
  c.s.client.publish("other", "y", 1);
  c.s.client.publish("other", "z", 1);
  equal(c.outcomes.length, 0, "reported from the timer, not from inside someone's call");
  c.s.clock.settle();
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.payload]), [["dropped", ""]]);
  equal(c.shadows.stats.dropped, 1);
  c.s.client.connect();
  c.s.clock.advance(1000);
  c.reply(PREFIX + "update/accepted", { state: {}, version: 1, clientToken: "t-1" });
  equal(c.outcomes.length, 1, "a dropped request is never reported accepted");
  // The dropped SUBSCRIBEs were asked for again when the client was restored.
  deepEqual(c.subscribed(), [PREFIX + "update/accepted", PREFIX + "update/rejected"]);
  device.update({ state: { reported: { n: 2 } } }, c.record);
  c.s.clock.settle();
  c.reply(PREFIX + "update/accepted", { state: {}, version: 2, clientToken: "t-2" });
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["dropped", "accepted"]);
});

test("shadow: under DROP_NEWEST a full queue drops the request at the call; the callback hears it after the call returned", () => {
  const c = scene({ queueEntries: 2, queueBytes: 2048, dropPolicy: DROP_NEWEST }, {}, false);
  const device = c.shadows.shadow(THING);
  let returned = false;
  device.get((status, reply) => {
    ok(returned, "the call returned first");
    c.record(status, reply);
  });
  returned = true;
  equal(c.outcomes.length, 0);
  c.s.clock.settle();
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["dropped"]);
  equal(c.shadows.pendingCount, 0);
});

test("shadow: acknowledgements find their request by packet id, in any order: a slot is free once its own reply and its own PUBACK came", () => {
  const c = scene({}, { maxPending: 2 });
  const device = c.shadows.shadow(THING);
  c.s.broker.ackPublishes = false;
  device.get(c.record);
  device.update({ state: { reported: { n: 1 } } }, c.record);
  c.s.clock.settle();
  const [getPublish, updatePublish] = c.s.broker.sent(3);
  c.reply(PREFIX + "get/accepted", { state: {}, version: 1, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => outcome.operation + " " + outcome.status), ["get accepted"]);
  const refused = (): boolean => {
    try {
      device.delete(c.record);
      return false;
    } catch (error) {
      return (error as IoTLinkError).code === ErrorCode.NotAccepted;
    }
  };
  ok(refused(), "the get's PUBLISH is not acknowledged yet: its slot stays taken");
  // The update's PUBACK first: it frees nothing (the update still waits for its reply).
  c.s.broker.deliver(ScriptedBroker.puback(updatePublish.packetId as number));
  c.s.clock.settle();
  ok(refused(), "the update's PUBACK is not the get's");
  c.s.broker.deliver(ScriptedBroker.puback(getPublish.packetId as number));
  c.s.clock.settle();
  equal(device.delete(c.record), 3, "the get's PUBACK frees its slot");
  c.reply(PREFIX + "update/accepted", { state: {}, version: 2, clientToken: "t-2" });
  deepEqual(c.outcomes.map((outcome) => outcome.operation + " " + outcome.status), ["get accepted", "update accepted"]);
});

test("shadow: requests queued offline are acknowledged in order after the reconnect, and every slot is free again", () => {
  const c = scene({ queueEntries: 8, queueBytes: 2048, drainIntervalMs: 10 }, { maxPending: 2 }, false);
  const device = c.shadows.shadow(THING);
  device.get(c.record);
  device.update({ state: { reported: { n: 1 } } }, c.record);
  equal(c.s.client.queuedCount, 6, "four SUBSCRIBEs and two PUBLISHes");
  c.s.client.connect();
  c.s.clock.advance(100);
  c.reply(PREFIX + "update/accepted", { state: {}, version: 2, clientToken: "t-2" });
  c.reply(PREFIX + "get/accepted", { state: {}, version: 2, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => outcome.operation + " " + outcome.status), ["update accepted", "get accepted"]);
  equal(device.get(c.record), 3);
  equal(device.update({ state: { reported: { n: 2 } } }, c.record), 4, "both slots free: each PUBACK settled its own PUBLISH");
  equal(c.s.broker.sent(8).length, 4, "no SUBSCRIBE asked again: each SUBACK confirmed its own filter");
});

test("shadow: under DROP_NEWEST the request dropped at the call is the one reported dropped, not an older one still queued", () => {
  const c = scene({ queueEntries: 3, queueBytes: 2048, dropPolicy: DROP_NEWEST }, {}, false);
  const device = c.shadows.shadow(THING);
  device.get(c.record);
  equal(c.s.client.queuedCount, 3, "SUBSCRIBE, SUBSCRIBE, PUBLISH: the queue is full");
  equal(device.get(c.record), 2);
  c.s.clock.settle();
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.requestId]), [["dropped", 2]]);
  c.s.client.connect();
  c.s.clock.advance(1000);
  c.reply(PREFIX + "get/accepted", { state: {}, version: 1, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.requestId]), [["dropped", 2], ["accepted", 1]]);
  equal(c.s.broker.sent(8).length, 2, "the queued SUBSCRIBEs were not taken for dropped");
});

test("shadow: under DROP_NEWEST a SUBSCRIBE dropped at the call is asked for again at the next restore", () => {
  const c = scene({ queueEntries: 1, queueBytes: 2048, dropPolicy: DROP_NEWEST }, {}, false);
  const device = c.shadows.shadow(THING);
  device.onDelta(() => {});
  device.get(c.record);
  c.s.clock.settle();
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["dropped"]);
  c.s.client.connect();
  c.s.clock.advance(1000);
  deepEqual(c.subscribed(), [PREFIX + "update/delta", PREFIX + "get/accepted", PREFIX + "get/rejected"]);
});

test("shadow: under DROP_OLDEST the drops of two queued requests' SUBSCRIBEs and PUBLISH are told apart in queue order", () => {
  const c = scene({ queueEntries: 4, queueBytes: 2048, dropPolicy: DROP_OLDEST, drainIntervalMs: 10 }, {}, false);
  const device = c.shadows.shadow(THING);
  device.get(c.record);
  // The update's SUBSCRIBEs push out the get's; one more publish pushes out the get's PUBLISH.
  device.update({ state: { reported: { n: 1 } } }, c.record);
  c.s.client.publish("other", "x", 1);
  c.s.clock.settle();
  deepEqual(c.outcomes.map((outcome) => [outcome.operation, outcome.status]), [["get", "dropped"]]);
  c.s.client.connect();
  c.s.clock.advance(1000);
  c.reply(PREFIX + "update/accepted", { state: {}, version: 1, clientToken: "t-2" });
  deepEqual(c.outcomes.map((outcome) => [outcome.operation, outcome.status]), [["get", "dropped"], ["update", "accepted"]]);
  // The get's dropped SUBSCRIBEs are asked for again once restored; the update's reached the broker.
  deepEqual(c.subscribed(), [PREFIX + "update/accepted", PREFIX + "update/rejected", PREFIX + "get/accepted", PREFIX + "get/rejected"]);
});

test("shadow: of two reply subscriptions asked for together, only the one the broker refused is asked for again", () => {
  const c = scene({ backoff: { baseMs: 1000, maxMs: 8000, stableMs: 20000 } });
  const device = c.shadows.shadow(THING);
  c.s.broker.refusedFilters = [PREFIX + "update/rejected"];
  device.update({ state: { reported: { n: 1 } } }, c.record);
  c.s.clock.settle();
  c.s.broker.refusedFilters = [];
  c.s.broker.drop();
  c.s.clock.advance(1000);
  c.s.clock.settle();
  const subscribed = c.subscribed();
  deepEqual(subscribed.slice(0, 2), [PREFIX + "update/accepted", PREFIX + "update/rejected"]);
  deepEqual(subscribed.slice(2).filter((filter) => filter === PREFIX + "update/rejected"), [PREFIX + "update/rejected"], "asked again after the restore");
  equal(subscribed.slice(2).filter((filter) => filter === PREFIX + "update/accepted").length, 1, "renewed by the client's resubscription only");
});

test("shadow: with queueing off, an offline request is refused at the call and leaves nothing pending", () => {
  const c = scene({ queueEntries: 0 }, {}, false);
  const device = c.shadows.shadow(THING);
  let error: IoTLinkError | undefined;
  try {
    device.update({ state: { reported: { n: 1 } } }, c.record);
  } catch (thrown) {
    error = thrown as IoTLinkError;
  }
  equal(error?.code, ErrorCode.NotAccepted);
  equal(c.shadows.pendingCount, 0);
  c.s.clock.advance(20000);
  equal(c.outcomes.length, 0);
  // The subscriptions that could not be queued are asked for once the client is restored.
  c.s.client.connect();
  c.s.clock.advance(100);
  device.update({ state: { reported: { n: 2 } } }, c.record);
  c.s.clock.settle();
  c.reply(PREFIX + "update/accepted", { version: 1, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["accepted"]);
});

test("shadow: the table of pending requests is fixed: a request beyond it is refused at the call with not-accepted", () => {
  const c = scene({}, { maxPending: 2 });
  const device = c.shadows.shadow(THING);
  device.get(c.record);
  device.get(c.record);
  let error: IoTLinkError | undefined;
  try {
    device.get(c.record);
  } catch (thrown) {
    error = thrown as IoTLinkError;
  }
  equal(error?.code, ErrorCode.NotAccepted);
  ok((error?.message ?? "").indexOf("2 requests are pending") >= 0, error?.message);
  c.s.clock.settle();
  c.reply(PREFIX + "get/accepted", { state: {}, version: 1, clientToken: "t-2" });
  equal(device.get(c.record), 3, "a slot is free again once a reply came and its PUBLISH was acknowledged");
});

test("shadow: documents over 8 KB, over maxPacketBytes, or not a JSON object are refused at the call", () => {
  const c = scene({ maxPacketBytes: 16384, queueBytes: 32768, inflightBytes: 32768 });
  const device = c.shadows.shadow(THING);
  const big = (bytes: number) => '{"state":{"reported":{"blob":"' + "x".repeat(bytes) + '"}}}';
  throws(() => device.update(big(8200), c.record), "over the Device Shadow limit of 8192 bytes");
  // The largest that fits with its token.
  device.update(big(8192 - 63), c.record);
  equal(c.shadows.pendingCount, 1);
  const small = scene();
  const other = small.shadows.shadow(THING);
  equal(small.shadows.maxDocumentBytes, 2048, "the client's maxPacketBytes by default");
  throws(() => other.update(big(2100), small.record), "over maxDocumentBytes (2048)");
  throws(() => other.update(big(1970), small.record), "over the client's maxPacketBytes (2048)");
  throws(() => other.update('{"state":', small.record), "update: the JSON text ends early");
  throws(() => other.update('["state"]', small.record), "update: the document must be a JSON object");
  throws(() => other.update('{"state":{}} x', small.record), "more text after the JSON object");
  throws(() => other.update('{"state":{},"clientToken":"mine"}', small.record), "has its own clientToken");
  throws(() => other.update({ clientToken: "mine" }, small.record), "has its own clientToken");
  throws(() => other.update(42 as never, small.record), "update needs a JSON text or an object");
  equal(small.shadows.pendingCount, 0);
  equal(small.s.broker.sent(3).length + small.s.broker.sent(8).length, 0, "nothing was sent for a refused request");
  // An empty object and surrounding whitespace are fine.
  other.update(' {  } \n', small.record);
  small.s.clock.settle();
  deepEqual(small.requests(PREFIX + "update"), [{ clientToken: "t-1" }], "refused calls took no request number");
});

test("shadow: two named shadows and the classic one at once: requests, replies and deltas go to the right one", () => {
  const c = scene({}, { maxShadows: 3 });
  const config = c.shadows.shadow(THING, "config");
  const state = c.shadows.shadow(THING, "state");
  const classic = c.shadows.shadow(THING);
  equal(c.shadows.shadow(THING, "config"), config, "the same names give the same handler");
  throws(() => c.shadows.shadow("other-thing"), "serves 3 shadows already");
  throws(() => c.shadows.shadow("bad/thing"), "thingName must be");
  const deltas: string[] = [];
  for (const shadow of [config, state, classic]) shadow.onDelta((delta) => deltas.push((delta.shadow.shadowName || "classic") + "@" + delta.version));
  config.update({ state: { reported: { interval: 5 } } }, c.record);
  state.update({ state: { reported: { uptime: 9 } } }, c.record);
  classic.update({ state: { reported: { model: "x" } } }, c.record);
  c.s.clock.settle();
  equal(c.requests(PREFIX + "name/config/update")[0].clientToken, "t-1");
  equal(c.requests(PREFIX + "name/state/update")[0].clientToken, "t-2");
  equal(c.requests(PREFIX + "update")[0].clientToken, "t-3");
  // Replies in another order; one on the wrong shadow's topic is not taken for its token.
  c.reply(PREFIX + "name/state/update/accepted", { version: 3, clientToken: "t-1" });
  equal(c.outcomes.length, 0, "t-1 was the config shadow's request");
  c.reply(PREFIX + "update/accepted", { version: 7, clientToken: "t-3" });
  c.reply(PREFIX + "name/state/update/accepted", { version: 4, clientToken: "t-2" });
  c.reply(PREFIX + "name/config/update/accepted", { version: 2, clientToken: "t-1" });
  deepEqual(c.outcomes.map((outcome) => outcome.requestId + ":" + outcome.version), ["3:7", "2:4", "1:2"]);
  c.reply(PREFIX + "name/config/update/delta", { state: { interval: 10 }, version: 5 });
  c.reply(PREFIX + "name/state/update/delta", { state: { uptime: 0 }, version: 5 });
  c.reply(PREFIX + "update/delta", { state: { model: "y" }, version: 8 });
  c.reply(PREFIX + "name/config/update/delta", { state: { interval: 11 }, version: 4 });
  deepEqual(deltas, ["config@5", "state@5", "classic@8"], "each shadow keeps its own last version");
});

test("shadow: a reply subscription refused by the broker is asked for again when the client is next restored", () => {
  const c = scene({ backoff: { baseMs: 1000, maxMs: 8000, stableMs: 20000 } });
  const device = c.shadows.shadow(THING);
  c.s.broker.refusedFilters = [PREFIX + "update/delta"];
  const seen: number[] = [];
  device.onDelta((delta) => seen.push(delta.version));
  c.s.clock.settle();
  equal(c.s.errors.filter((error) => error.code === ErrorCode.SubscriptionRefused).length, 1);
  c.s.broker.refusedFilters = [];
  c.s.broker.drop();
  c.s.clock.advance(1000);
  c.s.clock.settle();
  deepEqual(c.subscribed(), [PREFIX + "update/delta", PREFIX + "update/delta"], "asked again after the restore");
  c.reply(PREFIX + "update/delta", { state: { a: 1 }, version: 1 });
  deepEqual(seen, [1]);
});

test("shadow: a callback that throws is reported to the error listeners; the layer and the client's timer carry on", () => {
  const c = scene({}, { timeoutMs: 1000 });
  const device = c.shadows.shadow(THING);
  device.get(() => {
    throw new Error("boom");
  });
  c.s.clock.advance(1000);
  equal(c.errors.length, 1);
  equal(c.errors[0].code, ErrorCode.Callback);
  ok(c.errors[0].message.indexOf("boom") > 0);
  device.get(c.record);
  c.s.clock.advance(1000);
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["timeout"], "the layer still has the timer");
  equal(c.shadows.stats.callbackErrors, 1);
});

test("shadow: invalid arguments are refused at the call", () => {
  const c = scene();
  throws(() => new ShadowClient({} as never), "must be an MqttClient");
  throws(() => new ShadowClient(c.s.client, { maxPending: 0 }), "maxPending must be a whole number from 1");
  throws(() => new ShadowClient(c.s.client, { clientTokenPrefix: "a b" }), "clientTokenPrefix must be");
  const device = c.shadows.shadow(THING);
  throws(() => device.get("x" as never), "onReply must be a function");
  throws(() => device.get(undefined, 0), "timeoutMs must be a whole number from 1");
  throws(() => device.onDelta(5 as never), "a handler must be a function");
  throws(() => c.shadows.shadow(THING, "a/b"), "shadowName must be");
  equal(c.shadows.pendingCount, 0);
});

test("shadow: close() detaches the layer from the client (listeners and timer)", () => {
  const c = scene({}, { timeoutMs: 1000 });
  const device = c.shadows.shadow(THING);
  device.get(c.record);
  c.shadows.close();
  c.s.clock.advance(5000);
  equal(c.outcomes.length, 0);
  throws(() => device.get(c.record), "this client was closed");
  // The listener slots it used are free again: three more layers fit beside the fixture's listener.
  for (let i = 0; i < 3; i++) new ShadowClient(c.s.client, { clientTokenPrefix: "x" + i });
});

test("shadow: a random client token prefix unless one is given; tokens are at most 64 bytes", () => {
  const c = scene();
  const other = new ShadowClient(c.s.client);
  ok(/^[0-9a-z]{6}$/.test(other.tokenPrefix), other.tokenPrefix);
  const long = new ShadowClient(c.s.client, { clientTokenPrefix: "p".repeat(48) });
  ok(long.tokenOf(999999999).length <= requests.MAX_CLIENT_TOKEN_BYTES);
});

test("shadow: every table the AWS modules export is frozen (they are preloaded into flash)", () => {
  const modules: Record<string, object> = { json, requests, shadowModule, shadowFacade };
  const unfrozen: string[] = [];
  for (const [name, exports] of Object.entries(modules)) {
    for (const key of Object.keys(exports)) {
      const value = (exports as Record<string, unknown>)[key];
      if (typeof value !== "object" || value === null || /^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/.test(key)) continue;
      if (!Object.isFrozen(value)) unfrozen.push(name + "." + key);
    }
  }
  equal(unfrozen.join(", "), "");
  equal(SHADOW_MAX_DOCUMENT_BYTES, 8192);
});

test("json: the reply scan reads only top-level fields, and the object check follows the JSON grammar", () => {
  const fields = new json.ReplyFields();
  const bytes = (text: string) => new TextEncoder().encode(text);
  const reply = bytes('{"state":{"clientToken":"no","version":1,"code":2},"code":409,"message":"Version conflict","clientToken":"t-42","version":12}');
  fields.scan(reply);
  equal(fields.version, 12);
  equal(fields.code, 409);
  equal(fields.tokenNumber(reply, "t-", 2), 42);
  equal(fields.tokenNumber(reply, "u-", 2), -1);
  const jobs = bytes(' {"code" : "VersionMismatch", "clientToken":"t-7\\"x"}');
  fields.scan(jobs);
  equal(fields.codeText(jobs), "VersionMismatch");
  equal(fields.tokenNumber(jobs, "t-", 2), -1, "not a number after the prefix");
  fields.scan(bytes("[1,2]"));
  equal(fields.isObject, false);
  const check = new json.JsonObjectCheck();
  for (const good of ['{"a":[1,-2.5e3,true,false,null,"\\u00e9\\n"],"b":{}}', "{}", ' { "a" : { "b" : [ ] } } ']) equal(check.problem(good, 30), "", good);
  for (const bad of ['{"a":01}', '{"a":.5}', '{"a":"\\x"}', '{"a":tru}', '{a:1}', '{"a":1,}', '{"a":[1,]}', '{"a":1}}', ""]) ok(check.problem(bad, 30) !== "", bad);
  equal(check.problem('{"a":"\u0001"}', 30), "", "a raw control character in a string is left for the service to refuse (400)");
  const escaped = bytes('{"clientToken":"a\\\\","state":{"x":"\\"version\\":1"},"version":3}');
  fields.scan(escaped);
  equal(fields.version, 3, "escaped quotes and backslashes inside strings");
  equal(fields.tokenEnd - fields.tokenStart, 3);
  equal(check.problem('{"a":{"b":{"c":1}}}', 2), "nested more than 2 levels");
  equal(check.problem('{"a":{"b":{"c":1}}}', 3), "");
  equal(textOf(bytes("héllo €")), "héllo €");
});

// ------------------------------------------------------------------ the Python-style facade

function facadePlatform(): { platform: Platform; broker: ScriptedBroker; clock: VirtualClock } {
  const clock = new VirtualClock();
  const broker = new ScriptedBroker(clock);
  return { clock, broker, platform: { createClock: () => clock, createTransport: () => broker } };
}

function facade(): { shadowClient: AWSIoTMQTTShadowClientCore; broker: ScriptedBroker; clock: VirtualClock } {
  const p = facadePlatform();
  const shadowClient = new AWSIoTMQTTShadowClientCore(p.platform, "sensor-1");
  shadowClient.configureEndpoint("example-ats.iot.eu-west-1.amazonaws.com", 8883);
  shadowClient.configureCredentials("AmazonRootCA1.der", "device.key.der", "device.crt.der");
  return { shadowClient, ...p };
}

test("shadow facade: createShadowHandlerWithName, shadowUpdate/shadowGet/shadowDelete with (payload, responseStatus, token) callbacks", async () => {
  const { shadowClient, broker, clock } = facade();
  const handler = shadowClient.createShadowHandlerWithName("Bot", true);
  throws(() => handler.shadowGet(null, 5), "call connect() or connectAsync() first");
  const connecting = shadowClient.connect();
  clock.settle();
  equal(await connecting, true);
  const calls: [string, string, string | null][] = [];
  const callback = (payload: string, responseStatus: string, token: string | null) => calls.push([payload, responseStatus, token]);
  const token = handler.shadowUpdate('{"state":{"desired":{"property":"x"}}}', callback, 5);
  const prefix = shadowClient.getShadowClient()?.tokenPrefix as string;
  equal(token, prefix + "-1");
  clock.settle();
  const [sent] = broker.sent(3);
  equal(sent.topic, "$aws/things/Bot/shadow/update");
  deepEqual(JSON.parse(fromUtf8(sent.payload as Uint8Array)), { state: { desired: { property: "x" } }, clientToken: token });
  broker.publish("$aws/things/Bot/shadow/update/accepted", JSON.stringify({ state: { desired: { property: "x" } }, version: 3, clientToken: token }), 1);
  clock.settle();
  deepEqual(calls.map((call) => [call[1], call[2]]), [["accepted", token]]);
  equal(JSON.parse(calls[0][0]).version, 3);
  const getToken = handler.shadowGet(callback, 2);
  clock.advance(2000);
  deepEqual(calls[1], [REQUEST_TIME_OUT, "timeout", getToken]);
  const deleteToken = handler.shadowDelete(callback, 5);
  clock.settle();
  broker.publish("$aws/things/Bot/shadow/delete/rejected", JSON.stringify({ code: 404, message: "No shadow exists with name: 'Bot'", clientToken: deleteToken }), 1);
  clock.settle();
  deepEqual(calls[2].slice(1), ["rejected", deleteToken]);
  throws(() => handler.shadowUpdate("{not json", callback, 5), "update: a key must be a string");
  throws(() => handler.shadowGet(callback, 0), "srcTimeout must be a number of seconds");
});

test("shadow facade: delta callbacks (registered before connect), version filtering, unregistering; each request keeps its own callback", async () => {
  const { shadowClient, broker, clock } = facade();
  const handler = shadowClient.createShadowHandlerWithName("Bot", false);
  const deltas: [string, string, string | null][] = [];
  handler.shadowRegisterDeltaCallback((payload, status, token) => deltas.push([payload, status, token]));
  const connecting = shadowClient.connect();
  clock.settle();
  await connecting;
  deepEqual(broker.sent(8).flatMap((packet) => packet.filters as string[]), ["$aws/things/Bot/shadow/update/delta"]);
  for (const version of [2, 1, 3]) broker.publish("$aws/things/Bot/shadow/update/delta", JSON.stringify({ state: { property: "v" + version }, version }), 1);
  clock.settle();
  deepEqual(deltas.map((delta) => [JSON.parse(delta[0]).version, delta[1], delta[2]]), [[2, "delta", null], [3, "delta", null]]);
  // Two gets with two callbacks: each reply reaches its own (Python keeps only the last one).
  const first: string[] = [];
  const second: string[] = [];
  const a = handler.shadowGet((_payload, status) => first.push(status), 5);
  const b = handler.shadowGet((_payload, status) => second.push(status), 5);
  clock.settle();
  broker.publish("$aws/things/Bot/shadow/get/accepted", JSON.stringify({ state: {}, version: 3, clientToken: a }), 1);
  broker.publish("$aws/things/Bot/shadow/get/rejected", JSON.stringify({ code: 404, message: "x", clientToken: b }), 1);
  clock.settle();
  deepEqual([first, second], [["accepted"], ["rejected"]]);
  equal(broker.sent(8).length, 3, "delta, then get's two, once: non-persistent mode keeps its subscriptions (no round trips per request)");
  equal(broker.sent(10).length, 0);
  handler.shadowUnregisterDeltaCallback();
  clock.settle();
  deepEqual(broker.sent(10).flatMap((packet) => packet.filters as string[]), ["$aws/things/Bot/shadow/update/delta"]);
});

test("shadow facade: its own connection has queueing off (as in Python), so an offline request is refused; a shared AWSIoTMQTTClient is used as it is", async () => {
  const { shadowClient } = facade();
  const connection = shadowClient.getMQTTConnection();
  ok(connection instanceof AWSIoTMQTTClientCore);
  const handler = shadowClient.createShadowHandlerWithName("Bot", true, "config");
  shadowClient.connectAsync(); // builds the client; the broker is never answered in this test
  let error: IoTLinkError | undefined;
  try {
    handler.shadowGet(null, 5);
  } catch (thrown) {
    error = thrown as IoTLinkError;
  }
  equal(error?.code, ErrorCode.NotAccepted);
  const p = facadePlatform();
  const shared = new AWSIoTMQTTClientCore(p.platform, "shared-1");
  shared.configureEndpoint("host", 8883);
  shared.configureCredentials("ca.der", "key.der", "cert.der");
  shared.configureOfflinePublishQueueing(8, DROP_OLDEST);
  const onShared = new AWSIoTMQTTShadowClientCore(undefined, "ignored", 4, false, true, shared);
  equal(onShared.getMQTTConnection(), shared);
  const named = onShared.createShadowHandlerWithName("Bot", true, "config");
  shared.connectAsync();
  equal(typeof named.shadowGet(null, 5), "string", "queued on the shared connection");
  equal(shared.getMQTTConnection()?.queuedCount, 3);
  throws(() => onShared.configureShadowLimits(2, 10), "before connect()");
});

test("shadow: a request made from a reply's callback (in the slot that reply just freed) keeps its own callback", () => {
  const c = scene({}, { maxPending: 1 });
  const device = c.shadows.shadow(THING);
  device.get((status, reply) => {
    c.record(status, reply);
    device.update({ state: { reported: { synced: true } } }, c.record);
  });
  c.s.clock.settle();
  c.reply(PREFIX + "get/accepted", { state: {}, version: 1, clientToken: "t-1" });
  equal(c.shadows.pendingCount, 1);
  c.reply(PREFIX + "update/accepted", { state: {}, version: 2, clientToken: "t-2" });
  deepEqual(c.outcomes.map((outcome) => outcome.operation + " " + outcome.status), ["get accepted", "update accepted"]);
});

/**
 * JSON texts of any shape, made as text (fast-check's own object builders assign keys such as
 * "toString", which a frozen Object.prototype refuses on XS; JSON.parse defines them instead).
 */
const jsonText: fc.Arbitrary<string> = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.integer().map(String),
    fc.double({ noNaN: true, noDefaultInfinity: true }).map((value) => JSON.stringify(value)),
    fc.string({ maxLength: 8 }).map((value) => JSON.stringify(value)),
    fc.constantFrom("true", "false", "null"),
    tie("array"),
    tie("object"),
  ),
  array: fc.array(tie("value"), { maxLength: 3 }).map((values) => "[" + values.join(",") + "]"),
  object: fc.tuple(fc.array(fc.tuple(fc.string({ maxLength: 6 }), tie("value")), { maxLength: 3 }), fc.constantFrom(",", " ,\n  ")).map(([members, separator]) => "{" + members.map(([key, value]) => JSON.stringify(key) + ":" + value).join(separator) + "}"),
})).value;

test("json: property: the reply scan, stopping early or not, finds the top-level clientToken, version and code JSON.parse finds", () => {
  const fields = new json.ReplyFields();
  const nested = jsonText.map((text) => JSON.parse(text) as unknown);
  const member = fc.oneof(
    // Versions and codes are whole numbers (AWS's); any other value of those keys is not one.
    fc.tuple(fc.constant("version"), fc.oneof(fc.nat(), nested.filter((value) => typeof value !== "number"))),
    fc.tuple(fc.constant("code"), fc.oneof(fc.nat(1000), fc.constantFrom("VersionMismatch", "ResourceNotFound"), nested.filter((value) => typeof value !== "number"))),
    fc.tuple(fc.constant("clientToken"), fc.string({ maxLength: 12 })),
    fc.tuple(fc.constantFrom("state", "metadata", "execution"), fc.uniqueArray(fc.tuple(fc.constantFrom("version", "clientToken", "code", "a", "b"), nested), { selector: (entry) => entry[0], maxLength: 4 }).map((entries) => JSON.parse("{" + entries.map(([key, value]) => JSON.stringify(key) + ":" + JSON.stringify(value)).join(",") + "}") as unknown)),
    fc.tuple(fc.constantFrom("timestamp", "message", "x"), nested),
  );
  const document = fc.tuple(fc.uniqueArray(member, { selector: (entry) => entry[0], maxLength: 7 }), fc.constantFrom(0, 1, 2));
  fc.assert(
    fc.property(document, ([members, indent]) => {
      const object: Record<string, unknown> = {};
      for (const [key, value] of members) object[key] = value;
      const text = JSON.stringify(object, null, indent);
      const bytes = new TextEncoder().encode(text);
      for (const needs of [json.Needs.All, json.Needs.Version, json.Needs.Token | json.Needs.Version, json.Needs.Token | json.Needs.Code]) {
        fields.scan(bytes, needs);
        if (needs & json.Needs.Version) equal(fields.version, typeof object.version === "number" ? object.version : -1, text);
        if (needs & json.Needs.Code) {
          equal(fields.code, typeof object.code === "number" ? object.code : 0, text);
          equal(fields.codeText(bytes), typeof object.code === "string" ? JSON.stringify(object.code).slice(1, -1) : "", text);
        }
        if (needs & json.Needs.Token) equal(fields.tokenStart < 0 ? undefined : textOf(bytes.subarray(fields.tokenStart, fields.tokenEnd)), typeof object.clientToken === "string" ? JSON.stringify(object.clientToken).slice(1, -1) : undefined, text);
      }
    }),
    { seed: 15, numRuns: 150 },
  );
  ok(true);
});

test("json: property: the object check accepts what JSON.parse reads as an object without a clientToken, and refuses the rest", () => {
  const check = new json.JsonObjectCheck();
  const oracle = (text: string): boolean => {
    try {
      const value = JSON.parse(text) as unknown;
      return typeof value === "object" && value !== null && !Array.isArray(value) && !Object.prototype.hasOwnProperty.call(value, "clientToken");
    } catch {
      return false;
    }
  };
  const object = jsonText.filter((text) => text.charAt(0) === "{");
  // Valid documents, and documents cut short or with one character removed or doubled.
  const text = fc.tuple(fc.oneof(object, jsonText), fc.nat(), fc.constantFrom("whole", "cut", "drop", "double")).map(([whole, at, how]) => {
    const i = at % (whole.length + 1);
    return how === "whole" ? whole : how === "cut" ? whole.slice(0, i) : how === "drop" ? whole.slice(0, i) + whole.slice(i + 1) : whole.slice(0, i) + whole.charAt(i) + whole.slice(i);
  });
  fc.assert(
    fc.property(text, (candidate) => {
      const problem = check.problem(candidate, 30);
      equal(problem === "", oracle(candidate), candidate + " -> " + problem);
      if (problem === "") equal(candidate.charAt(check.closeAt), "}");
    }),
    { seed: 7, numRuns: 400 },
  );
  ok(true);
});
