// The AWSIoTMQTTClient facade: Python SDK names and defaults, and the SDK's defects fixed.
import { AWS_MAX_PACKET_BYTES, AWS_MAX_PAYLOAD_BYTES, AWS_MAX_TOPIC_BYTES, AWSIoTMQTTClientCore, DROP_NEWEST, DROP_OLDEST, SDK_NAME } from "../../modules/awsiot";
import type { AwsCredentials, EndpointSettings, Platform, Transport, TransportSink, WebSocketEndpoint, WebSocketTransportOptions } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { fromUtf8 } from "../support/broker-codec";
import { ScriptedBroker } from "../support/scripted-broker";
import { VirtualClock } from "../support/virtual-clock";

function platform(): { platform: Platform; broker: ScriptedBroker; clock: VirtualClock; endpoints: EndpointSettings[]; largestPackets: (number | undefined)[] } {
  const clock = new VirtualClock();
  const broker = new ScriptedBroker(clock);
  const endpoints: EndpointSettings[] = [];
  const largestPackets: (number | undefined)[] = [];
  return {
    clock,
    broker,
    endpoints,
    largestPackets,
    platform: {
      createClock: () => clock,
      createTransport(endpoint, largestPacketBytes) {
        endpoints.push(endpoint);
        largestPackets.push(largestPacketBytes);
        return broker;
      },
    },
  };
}

function configured(p = platform()): { client: AWSIoTMQTTClientCore } & ReturnType<typeof platform> {
  const client = new AWSIoTMQTTClientCore(p.platform, "sensor-1");
  client.configureEndpoint("example-ats.iot.eu-west-1.amazonaws.com", 8883);
  client.configureCredentials("AmazonRootCA1.der", "device.key.der", "device.crt.der");
  return { client, ...p };
}

test("facade: connect() resolves at CONNACK with the Python defaults and the metrics user name", async () => {
  const { client, broker, clock, endpoints } = configured();
  let online = 0;
  client.onOnline = () => online++;
  const connecting = client.connect();
  clock.settle();
  equal(await connecting, true);
  equal(online, 1);
  const [connect] = broker.sent(1);
  equal(connect.keepAlive, 600);
  equal(connect.cleanSession, true);
  equal(connect.username, "?SDK=" + SDK_NAME + "&Version=0.1.0");
  deepEqual(endpoints[0], { host: "example-ats.iot.eu-west-1.amazonaws.com", port: 8883, alpn: undefined, caResource: "AmazonRootCA1.der", keyResource: "device.key.der", certificateResource: "device.crt.der" });
});

test("facade: port 443 turns on ALPN x-amzn-mqtt-ca; metrics can be turned off", async () => {
  const p = platform();
  const client = new AWSIoTMQTTClientCore(p.platform, "sensor-2");
  client.configureEndpoint("host", 443);
  client.configureCredentials("ca.der", "key.der", "cert.der");
  client.configureUsernamePassword("alice", "pw");
  client.disableMetricsCollection();
  const connecting = client.connect(30);
  p.clock.settle();
  await connecting;
  deepEqual(p.endpoints[0].alpn, ["x-amzn-mqtt-ca"]);
  equal(p.broker.sent(1)[0].username, "alice");
  equal(p.broker.sent(1)[0].keepAlive, 30);
});

test("facade: never plaintext by omission; plaintext only when asked in so many words", () => {
  const p = platform();
  const client = new AWSIoTMQTTClientCore(p.platform, "sensor-3");
  client.configureEndpoint("localhost", 1883);
  throws(() => client.connectAsync(), "no TLS credentials");
  throws(() => client.configureUnencryptedConnection(false), "pass true");
  client.configureUnencryptedConnection(true);
  client.connectAsync();
  equal(p.endpoints[0].plaintext, true);
});

test("facade: first connect that fails rejects with the cause and is retried in the background", async () => {
  const { client, broker, clock } = configured();
  broker.connackCode = 5;
  const codes: number[] = [];
  const connecting = client.connect();
  clock.settle();
  let message = "";
  try {
    await connecting;
  } catch (error) {
    message = (error as Error).message;
  }
  ok(message.indexOf("not authorized") >= 0, message);
  broker.connackCode = 0;
  client.connectAsync(600, (_mid, rc) => codes.push(rc)); // already retrying: only registers the callback
  clock.advance(2000);
  equal(client.getMQTTConnection()?.stateName, "online");
  deepEqual(codes, [0]);
  equal(broker.opens, 2);
});

test("facade: connect() again while the first is pending returns the same Promise: both callers learn the outcome", async () => {
  const { client, broker, clock } = configured();
  const first = client.connect();
  const second = client.connect();
  ok(second === first, "one pending connection, one Promise");
  clock.settle();
  equal(await second, true);
  equal(broker.opens, 1);
  const refused = configured();
  refused.broker.connackCode = 5;
  const outcomes: string[] = [];
  const attempts = [refused.client.connect(), refused.client.connect()].map((promise) => promise.then(() => "resolved", (error: Error) => error.message));
  refused.clock.settle();
  for (const attempt of attempts) outcomes.push(await attempt);
  equal(outcomes.length, 2);
  ok(outcomes.every((outcome) => outcome.indexOf("not authorized") >= 0), outcomes.join(" | "));
});

test("facade: publish resolves true online, false when queued; a queued publishAsync keeps its ack callback", async () => {
  const { client, broker, clock } = configured();
  const connecting = client.connect();
  clock.settle();
  await connecting;
  const acked = client.publish("t", "online", 1);
  clock.settle();
  equal(await acked, true);
  broker.drop();
  equal(await client.publish("t", "offline", 1), false);
  const acks: string[] = [];
  equal(client.publishAsync("t", "async", 1, (mid, status) => acks.push(mid + ":" + status)), "QUEUED");
  clock.advance(5000);
  deepEqual(broker.sent(3).map((p) => fromUtf8(p.payload as Uint8Array)), ["online", "offline", "async"]);
  equal(acks.length, 1);
  ok(acks[0].endsWith(":acknowledged"), acks[0]);
});

test("facade: subscribe callbacks get (client, userdata, message) with a payload copy", async () => {
  const { client, broker, clock } = configured();
  client.connectAsync();
  clock.settle();
  const received: string[] = [];
  let kept: Uint8Array | undefined;
  const subscribed = client.subscribe("cmd/#", 1, (self, userdata, message) => {
    ok(self === client);
    equal(userdata, null);
    kept = message.payload;
    received.push(message.topic + "=" + fromUtf8(message.payload) + "@" + message.qos);
  });
  clock.settle();
  equal(await subscribed, true);
  broker.publish("cmd/led", "on", 1);
  broker.publish("cmd/led", "off", 1);
  clock.settle();
  deepEqual(received, ["cmd/led=on@1", "cmd/led=off@1"]);
  equal(fromUtf8(kept as Uint8Array), "off");
  const granted: number[][] = [];
  client.subscribeAsync("other", 0, (_mid, data) => granted.push(data));
  broker.refusedFilters = ["denied"];
  let refused = "";
  client.subscribe("denied", 1).catch((error: Error) => (refused = error.message));
  clock.settle();
  await Promise.resolve();
  deepEqual(granted, [[0]]);
  ok(refused.indexOf("refused") >= 0, refused);
});

test("facade: configuration is validated at the call and fixed once connected", () => {
  const { client } = configured();
  throws(() => client.configureAutoReconnectBackoffTime(0, 32, 20), "baseReconnectQuietTimeSecond");
  throws(() => client.configureAutoReconnectBackoffTime(8, 4, 20), "must not be below");
  throws(() => client.configureOfflinePublishQueueing(-2), "queueSize");
  throws(() => client.configureOfflinePublishQueueing(10, 5), "dropBehavior");
  throws(() => client.configureOfflinePublishQueueing(1.5), "queueSize (-1: the largest ring, 0: no queue) must be a whole number from -1 to 65535, got 1.5");
  throws(() => client.configureOfflinePublishQueueing(10, DROP_NEWEST, 0), "queueBytes must be a whole number from 5 to 2147483647, got 0");
  throws(() => client.configureOfflinePublishQueueing(10, DROP_NEWEST, 2048.5), "queueBytes must be a whole number from 5");
  throws(() => client.configureOfflinePublishQueueing(10, DROP_NEWEST, 4), "queueBytes must be a whole number from 5 to 2147483647, got 4");
  throws(() => client.configureOfflinePublishQueueing(10, DROP_NEWEST, 2 ** 31), "queueBytes must be a whole number from 5");
  throws(() => client.configureOfflinePublishQueueing(10, DROP_NEWEST, "4096" as unknown as number), "queueBytes must be a whole number from 5");
  throws(() => client.configureOfflinePublishQueueing(0, DROP_NEWEST, 4096), "queueBytes has no use with queueSize 0 (no queue), got 4096");
  client.configureOfflinePublishQueueing(0, DROP_NEWEST, 0);
  // Seconds that round to 0 ms, and frequencies whose interval outlasts the timer, are refused here.
  throws(() => client.configureAutoReconnectBackoffTime(0.0001, 1, 1), "baseReconnectQuietTimeSecond must be a number of seconds from 0.001 to 2147483, got 0.0001");
  throws(() => client.configureAutoReconnectBackoffTime(1, 1, 0.0004), "stableConnectionTimeSecond must be a number of seconds from 0.001");
  throws(() => client.configureConnectDisconnectTimeout(0.0001), "timeoutSecond must be a number of seconds from 0.001");
  throws(() => client.configureMQTTOperationTimeout("5" as unknown as number), "timeoutSecond must be a number of seconds from 0.001 to 2147483, got \"5\"");
  throws(() => client.configureDrainingFrequency(1e-7), "frequencyInHz must be from 0.001 to 1000, got 1e-7");
  client.configureAutoReconnectBackoffTime(0.001, 2147483, 0.5);
  client.configureDrainingFrequency(0.001);
  throws(() => client.configureLastWill("w", "gone", undefined as unknown as number), "qos must be 0 or 1 (QoS 2 is not supported), got undefined");
  throws(() => client.configureUsernamePassword("u".repeat(65536)), "username must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate");
  throws(() => client.configureUsernamePassword("u", "p".repeat(65536)), "password: payload of 65536 bytes is over the 65535 a CONNECT field can carry");
  throws(() => client.configureLastWill("w", new Uint8Array(65536), 0), "will: payload of 65536 bytes is over the 65535 a CONNECT field can carry");
  for (const host of ["mqtts://example.com", "example.com:8883", "exa mple.com", " ", "example.com/mqtt"]) {
    throws(() => client.configureEndpoint(host, 8883), "hostName must be a bare host name or address (no scheme, port, path or spaces), got \"" + host + "\"");
  }
  client.configureEndpoint("2001:db8::1", 8883);
  throws(() => new AWSIoTMQTTClientCore(platform().platform, "x", 4, 0 as unknown as boolean), "useWebsocket must be a boolean, got 0");
  throws(() => new AWSIoTMQTTClientCore(platform().platform, "c".repeat(65536)), "clientID must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate");
  for (const name of ["onOnline", "onOffline", "onMessage"] as const) {
    throws(() => (client[name] = "yes" as never), name + " must be a function");
    client[name] = null as never;
    equal(client[name], undefined, name + " = null removes the handler");
  }
  throws(() => client.configureLastWill("w/#", "gone", 0), "will: topic name must not contain wildcards");
  throws(() => client.configureLastWill("w", "gone", 2), "qos must be 0 or 1 (QoS 2 is not supported), got 2");
  throws(() => client.configureLastWill("w", 5 as unknown as string, 0), "will: payload must be");
  throws(() => client.configureLastWill("w", "gone", 0, "yes" as unknown as boolean), "will: retain must be a boolean");
  throws(() => client.configureAutoReconnectJitter(true, -1), "maxAttempts must be a whole number from 0 to 2147483647, got -1");
  throws(() => client.configureAutoReconnectJitter(true, 2.5), "maxAttempts must be a whole number");
  throws(() => client.configureUsernamePassword("u\ud800"), "username must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate");
  throws(() => client.configureUsernamePassword(5 as unknown as string), "username must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate");
  throws(() => client.configureUsernamePassword("u", "p\udc00"), "password: payload text is not valid UTF-8 (lone surrogate)");
  throws(() => client.configureUsernamePassword("u", 5 as unknown as string), "password must be a string, got 5");
  client.configureLastWill("w", "gone", 1, true);
  client.configureAutoReconnectJitter(true, 3);
  client.configureUsernamePassword("u", "p\u0000w");
  throws(() => client.configureDrainingFrequency(0), "frequencyInHz");
  throws(() => client.configureEndpoint("", 8883), "hostName");
  throws(() => client.configureEndpoint("h", 70000), "portNumber");
  throws(() => client.configureCredentials("ca.der", "key.der"), "both");
  throws(() => new AWSIoTMQTTClientCore(platform().platform, ""), "clientID must not be empty");
  throws(() => new AWSIoTMQTTClientCore(platform().platform, "dev\ud800"), "clientID must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate");
  throws(() => new AWSIoTMQTTClientCore(platform().platform, "dev\u0000"), "clientID must be an MQTT string: text of at most 65535 UTF-8 bytes, without U+0000 or a lone surrogate");
  throws(() => client.publishAsync("t", "x", 0), "call connect()");
  client.configureOfflinePublishQueueing(10, DROP_OLDEST);
  client.configureDrainingFrequency(4);
  client.connectAsync();
  throws(() => client.configureOfflinePublishQueueing(5), "before connect()");
});

test("facade: packet size is configurable up to AWS IoT Core's limit, and payloads over 128 KB are refused at the call", () => {
  const small = configured();
  throws(() => small.client.configureMaxPacketSize(100), "maximum packet size");
  throws(() => small.client.configureMaxPacketSize(AWS_MAX_PACKET_BYTES + 1), "maximum packet size");
  throws(() => small.client.configureMaxPacketSize(4096.5), "maximum packet size");
  small.client.connectAsync();
  small.clock.settle();
  throws(() => small.client.publishAsync("t", new Uint8Array(3000), 1), "maxPacketBytes");
  throws(() => small.client.configureMaxPacketSize(4096), "before connect()");

  const large = configured();
  large.client.configureMaxPacketSize(AWS_MAX_PACKET_BYTES);
  large.client.connectAsync();
  large.clock.settle();
  const before = large.broker.sent(3).length;
  throws(() => large.client.publishAsync("t", new Uint8Array(AWS_MAX_PAYLOAD_BYTES + 1), 1), "over AWS IoT Core's limit of 131072 bytes");
  throws(() => large.client.publishAsync("t", "x".repeat(AWS_MAX_PAYLOAD_BYTES + 1), 0), "over AWS IoT Core's limit");
  equal(large.broker.sent(3).length, before, "nothing sent for a refused payload");
  ok(typeof large.client.publishAsync("t", new Uint8Array(AWS_MAX_PAYLOAD_BYTES), 1) === "number", "a 128 KB payload goes out");
  large.clock.settle();
  equal(large.broker.sent(3).length, before + 1);
});

test("facade: queue size and drain frequency reach the client (10 queued, DROP_OLDEST, 4 Hz)", () => {
  const { client, broker, clock } = configured();
  client.configureOfflinePublishQueueing(10, DROP_OLDEST);
  client.configureDrainingFrequency(4);
  client.connectAsync();
  clock.settle();
  broker.drop();
  for (let i = 0; i < 12; i++) client.publishAsync("t", "m" + i, 0);
  clock.advance(1000); // reconnect
  const firstDrained = broker.sent(3).length;
  clock.advance(250);
  equal(broker.sent(3).length, firstDrained + 1, "one request per 250 ms");
  clock.advance(5000);
  deepEqual(broker.sent(3).map((p) => fromUtf8(p.payload as Uint8Array)), ["m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9", "m10", "m11"]);
});

test("facade: QoS is required, as in Python; a call without it is refused, not sent at QoS 0", () => {
  const { client, broker, clock } = configured();
  client.connectAsync();
  clock.settle();
  for (const call of [
    () => client.publish("t", "x", undefined as unknown as number),
    () => client.publishAsync("t", "x", undefined as unknown as number),
    () => client.subscribe("t", undefined as unknown as number),
    () => client.subscribeAsync("t", "1" as unknown as number),
  ]) {
    throws(call, "qos must be 0 or 1 (QoS 2 is not supported), got");
  }
  equal(broker.sent(3).length + broker.sent(8).length, 0, "nothing was sent");
});

test("facade: connectAsync checks its callback before building the client; the keep-alive is fixed at the first connect", () => {
  const { client, clock, largestPackets } = configured();
  throws(() => client.connectAsync(600, "cb" as never), "ackCallback must be a function");
  client.configureMaxPacketSize(20000);
  client.connectAsync(30);
  clock.settle();
  deepEqual(largestPackets, [20000], "the transport is told the largest packet, so it can always take one");
  equal(client.getMQTTConnection()?.keepAliveMs, 30000);
  client.connectAsync(30);
  throws(() => client.connectAsync(), "keepAliveIntervalSecond is fixed at the first connect() (30 s), got 600");
  throws(() => client.connect(60), "keepAliveIntervalSecond is fixed at the first connect() (30 s), got 60");
});

test("facade: topics over AWS IoT Core's 256 bytes are refused at the call", () => {
  const { client, broker, clock } = configured();
  client.connectAsync();
  clock.settle();
  const long = "t/" + "x".repeat(AWS_MAX_TOPIC_BYTES - 1);
  for (const call of [
    () => client.publish(long, "x", 0),
    () => client.publishAsync(long, "x", 1),
    () => client.subscribe(long, 1),
    () => client.subscribeAsync(long, 0),
    () => client.unsubscribe(long),
    () => client.unsubscribeAsync(long),
  ]) {
    throws(call, "topic of 257 bytes is over AWS IoT Core's limit of 256 bytes");
  }
  throws(() => configured().client.configureLastWill(long, "gone", 0), "topic of 257 bytes is over AWS IoT Core's limit of 256 bytes");
  throws(() => client.publish("\u00e9".repeat(129), "x", 0), "topic of 258 bytes is over AWS IoT Core's limit of 256 bytes", "counted in UTF-8 bytes, not characters");
  equal(broker.sent(3).length + broker.sent(8).length + broker.sent(10).length, 0, "nothing was sent");
  client.publishAsync(long.slice(0, AWS_MAX_TOPIC_BYTES), "x", 0);
  clock.settle();
  equal(broker.sent(3).length, 1, "256 bytes is allowed");
});

/** A configured facade, connected and online. */
function online(setup?: (client: AWSIoTMQTTClientCore) => void): ReturnType<typeof configured> {
  const c = configured();
  if (setup) setup(c.client);
  c.client.connectAsync();
  c.clock.settle();
  equal(c.client.getMQTTConnection()?.stateName, "online");
  return c;
}

test("facade: subscribeAsync reports a refused, timed-out or dropped subscribe as granted [128], never as success", () => {
  const { client, broker, clock } = online((c) => c.configureOfflinePublishQueueing(1, DROP_OLDEST));
  const granted: string[] = [];
  const record = (name: string) => (mid: number, data: number[]) => granted.push(name + ":" + (mid > 0 ? "mid" : mid) + ":" + data.join(","));
  client.subscribeAsync("granted", 1, record("granted"));
  broker.refusedFilters = ["denied"];
  client.subscribeAsync("denied", 1, record("refused"));
  clock.settle();
  broker.ackSubscriptions = false;
  client.subscribeAsync("silent", 1, record("timed out"));
  clock.advance(5000);
  broker.ackSubscriptions = true;
  // Offline, a queue of one under DROP_OLDEST: the second request drops the first.
  broker.drop();
  equal(client.subscribeAsync("first", 1, record("dropped")), "QUEUED");
  equal(client.subscribeAsync("second", 1, record("kept")), "QUEUED");
  clock.advance(2000);
  deepEqual(granted, ["granted:mid:1", "refused:mid:128", "timed out:mid:128", "dropped:0:128", "kept:mid:1"]);
});

test("facade: unsubscribeAsync tells a timed-out or dropped unsubscribe from an acknowledged one (its status, as publishAsync's)", () => {
  const { client, broker, clock } = online((c) => c.configureOfflinePublishQueueing(1, DROP_OLDEST));
  const acks: string[] = [];
  const record = (name: string) => (mid: number, status?: string) => acks.push(name + ":" + (mid > 0 ? "mid" : mid) + ":" + status);
  client.unsubscribeAsync("a", record("acknowledged"));
  clock.settle();
  broker.ackSubscriptions = false;
  client.unsubscribeAsync("b", record("silent"));
  clock.advance(5000);
  broker.ackSubscriptions = true;
  broker.drop();
  client.unsubscribeAsync("c", record("dropped"));
  client.unsubscribeAsync("d", record("kept"));
  clock.advance(2000);
  deepEqual(acks, ["acknowledged:mid:acknowledged", "silent:mid:timed out", "dropped:0:dropped", "kept:mid:acknowledged"]);
});

test("facade: under DROP_NEWEST a full queue's publishAsync/subscribeAsync/unsubscribeAsync reports the drop once: through its ack callback (returning QUEUED), or by throwing when it has none", () => {
  const { client, broker, clock } = online((c) => c.configureOfflinePublishQueueing(1, DROP_NEWEST));
  broker.drop();
  equal(client.publishAsync("t", "kept", 1), "QUEUED");
  const reports: string[] = [];
  const calls: [string, () => unknown][] = [
    ["publish QoS 1", () => client.publishAsync("t", "x", 1, (mid, status) => reports.push("publish QoS 1:" + mid + ":" + status))],
    ["publish QoS 0", () => client.publishAsync("t", "x", 0, (mid, status) => reports.push("publish QoS 0:" + mid + ":" + status))],
    ["subscribe", () => client.subscribeAsync("s", 1, (mid, data) => reports.push("subscribe:" + mid + ":" + data.join(",")))],
    ["unsubscribe", () => client.unsubscribeAsync("u", (mid, status) => reports.push("unsubscribe:" + mid + ":" + status))],
  ];
  for (const [name, call] of calls) {
    let returned: unknown;
    let thrown = "";
    try {
      returned = call();
    } catch (error) {
      thrown = (error as Error).message;
    }
    equal(thrown, "", name + " must not throw when its ack callback reports the drop");
    equal(returned, "QUEUED", name);
  }
  deepEqual(reports, ["publish QoS 1:0:dropped", "publish QoS 0:0:dropped", "subscribe:0:128", "unsubscribe:0:dropped"]);
  // Without an ack callback the throw is the only report, as Python raises its queue-full exception.
  throws(() => client.publishAsync("t", "x", 1), "offline queue full");
  throws(() => client.subscribeAsync("s", 1), "offline queue full");
  throws(() => client.unsubscribeAsync("u"), "offline queue full");
  equal(reports.length, 4, "no callback ran twice");
  equal(client.getMQTTConnection()?.stats.dropped, 7);
  clock.advance(2000);
  deepEqual(broker.sent(3).map((p) => fromUtf8(p.payload as Uint8Array)), ["kept"]);
});

test("facade: a throwing onMessage or subscribe callback reaches onError as callback-error, and messages keep coming", async () => {
  const { client, broker, clock } = online();
  const errors: string[] = [];
  client.onError = (error) => errors.push(error.code + ": " + error.message);
  const seen: string[] = [];
  client.onMessage = (message) => {
    seen.push("onMessage " + fromUtf8(message.payload));
    if (fromUtf8(message.payload) === "bad") throw new Error("onMessage broke");
  };
  const subscribed = client.subscribe("cmd/#", 1, (_client, _userdata, message) => {
    seen.push("callback " + fromUtf8(message.payload));
    if (fromUtf8(message.payload) === "worse") throw new Error("callback broke");
  });
  clock.settle();
  equal(await subscribed, true);
  for (const payload of ["bad", "worse", "good"]) broker.publish("cmd/x", payload, 1);
  clock.settle();
  deepEqual(seen, ["callback bad", "onMessage bad", "callback worse", "onMessage worse", "callback good", "onMessage good"]);
  deepEqual(errors, ["callback-error: a callback threw: onMessage broke", "callback-error: a callback threw: callback broke"]);
  equal(client.getMQTTConnection()?.stats.callbackErrors, 2);
  // A throwing onError is counted, not reported again (that would never end), and the client carries on.
  client.onError = () => {
    throw new Error("onError broke");
  };
  broker.publish("cmd/x", "bad", 1);
  broker.publish("cmd/x", "good", 1);
  clock.settle();
  equal(client.getMQTTConnection()?.stats.callbackErrors, 4);
  equal(seen.length, 10);
  equal(client.getMQTTConnection()?.stateName, "online");
  throws(() => (client.onError = "yes" as never), "onError must be a function");
  client.onError = null as never;
  equal(client.onError, undefined);
});

test("facade: onError sees the errors no Promise or callback carries (a refused resubscription), and connection failures too", async () => {
  const { client, broker, clock } = online();
  const codes: string[] = [];
  client.onError = (error) => codes.push(error.code);
  const subscribed = client.subscribe("cmd", 1);
  clock.settle();
  equal(await subscribed, true);
  broker.refusedFilters = ["cmd"];
  broker.drop();
  clock.advance(2000);
  deepEqual(codes, ["subscription-refused"]);
  broker.connackCode = 5;
  broker.drop();
  clock.advance(2000);
  deepEqual(codes, ["subscription-refused", "connection-refused"]);
});

test("facade: a user's own listeners on getMQTTConnection() (error, online) do not stop connect() from settling, and are called too", async () => {
  const { client, broker, clock } = configured();
  broker.connackCode = 5;
  const connecting = client.connect();
  const connection = client.getMQTTConnection();
  ok(connection !== undefined, "connect() built the client");
  const heard: string[] = [];
  connection?.on("error", (error) => heard.push("error " + error.code));
  connection?.on("online", () => heard.push("online"));
  let facadeOnline = 0;
  client.onOnline = () => facadeOnline++;
  let outcome = "pending";
  connecting.then(
    () => (outcome = "resolved"),
    (error: Error) => (outcome = "rejected: " + error.message),
  );
  clock.settle();
  // Not `await connecting`: a connect() that never settles must fail here, not hang the run.
  for (let turn = 0; turn < 4; turn++) await Promise.resolve();
  ok(outcome.indexOf("rejected: connection refused: not authorized (CONNACK 5)") === 0, "connect() settled with the cause: " + outcome);
  deepEqual(heard, ["error connection-refused"]);
  broker.connackCode = 0;
  outcome = "pending";
  client.connect().then(() => (outcome = "resolved"));
  clock.advance(2000);
  for (let turn = 0; turn < 4; turn++) await Promise.resolve();
  equal(outcome, "resolved", "connect() resolves once the retry is accepted");
  deepEqual(heard, ["error connection-refused", "online"]);
  equal(facadeOnline, 1);
});

test("facade: every connectAsync callback hears the outcome (a later call does not replace an earlier one's); while online it hears at once", () => {
  const { client, broker, clock } = configured();
  broker.connackCode = 5;
  const codes: string[] = [];
  const errors: string[] = [];
  client.onError = (error) => errors.push(error.code + ": " + error.message);
  client.connectAsync(600, (mid, rc) => {
    codes.push("first " + mid + " " + rc);
    throw new Error("first callback broke");
  });
  client.connectAsync(600, (mid, rc) => codes.push("second " + mid + " " + rc));
  client.connectAsync(600); // no callback: removes none
  clock.settle();
  deepEqual(codes, ["first 0 5", "second 0 5"], "a throwing callback keeps none of the others from being called");
  deepEqual(errors, ["connection-refused: connection refused: not authorized (CONNACK 5)"]);
  equal(client.getMQTTConnection()?.stats.callbackErrors, 1, "the throw is counted (an error listener's throw is not reported again)");
  broker.connackCode = 0;
  client.connectAsync(600, (mid, rc) => codes.push("retry " + mid + " " + rc));
  clock.advance(2000);
  equal(client.getMQTTConnection()?.stateName, "online");
  client.connectAsync(600, (mid, rc) => codes.push("online " + mid + " " + rc));
  deepEqual(codes, ["first 0 5", "second 0 5", "retry 0 0", "online 0 0"]);
  broker.drop();
  clock.advance(2000);
  equal(codes.length, 4, "a callback is called once, not again at the next reconnect");
});

test("facade: disconnect() settles once the link has closed (the transport sent what it held, then DISCONNECT), as the client's graceful disconnect does", async () => {
  const { client, broker, clock } = online();
  broker.capacity = 4096; // the transport holds what it took until the clock sends it
  broker.drainEveryMs = 50;
  client.publishAsync("t", "last words", 1);
  let settled = "";
  const done = client.disconnect().then((value) => (settled = "disconnect " + value));
  const acks: string[] = [];
  client.disconnectAsync((mid, data) => acks.push("disconnectAsync " + mid + " " + data));
  await Promise.resolve();
  equal(client.getMQTTConnection()?.stateName, "closing");
  equal(settled, "", "still closing");
  deepEqual(acks, []);
  clock.advance(100);
  await done;
  equal(settled, "disconnect true");
  deepEqual(acks, ["disconnectAsync 0 0"]);
  equal(client.getMQTTConnection()?.stateName, "idle");
  deepEqual(broker.sent(3).map((p) => fromUtf8(p.payload as Uint8Array)), ["last words"]);
  equal(broker.sent(14).length, 1, "DISCONNECT went out after the message");
  // With no session up, it settles at once.
  const idle: string[] = [];
  client.disconnectAsync((mid, data) => idle.push(mid + " " + data));
  deepEqual(idle, ["0 0"]);
  equal(await client.disconnect(), true);
});

test("facade: at most 8 connectAsync callbacks wait at once; the ninth is refused at the call (bounded memory)", () => {
  const { client, broker } = configured();
  broker.openBehaviour = "hang";
  for (let i = 0; i < 8; i++) client.connectAsync(60, () => undefined);
  throws(() => client.connectAsync(60, () => undefined), "8 callbacks already wait");
});

// ---------------------------------------------------------------- useWebsocket=true

const WS_HOST = "abc123-ats.iot.eu-west-1.amazonaws.com";
const KEY_ID = "AKIAIOSFODNN7EXAMPLE";
const SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const TOKEN = "FwoGZXIvYXdzEXAMPLE/token+with=odd~chars";

/** A platform with MQTT over WebSocket: what the facade asked of createWebSocketTransport, each time. */
function webSocketPlatform(): ReturnType<typeof platform> & { made: { endpoint: WebSocketEndpoint; options: WebSocketTransportOptions }[] } {
  const p = platform();
  const made: { endpoint: WebSocketEndpoint; options: WebSocketTransportOptions }[] = [];
  return {
    ...p,
    made,
    platform: {
      ...p.platform,
      createWebSocketTransport(endpoint, options) {
        made.push({ endpoint, options });
        return p.broker;
      },
    },
  };
}

function currentCredentials(options: WebSocketTransportOptions): AwsCredentials {
  return typeof options.credentials === "function" ? options.credentials() : options.credentials;
}

test("facade: useWebsocket=true takes the CA alone and IAM credentials, defaults to port 443 without ALPN, and builds its transport with createWebSocketTransport", async () => {
  const p = webSocketPlatform();
  const client = new AWSIoTMQTTClientCore(p.platform, "ws-device", 4, true);
  client.configureEndpoint(WS_HOST);
  throws(() => client.configureCredentials("ca.der", "key.der", "cert.der"), "with the CA alone");
  client.configureCredentials("AmazonRootCA1.der");
  client.configureIAMCredentials(KEY_ID, SECRET, TOKEN);
  const connecting = client.connect();
  p.clock.settle();
  equal(await connecting, true);
  equal(p.endpoints.length, 0, "no TLS transport was made");
  equal(p.made.length, 1);
  deepEqual(p.made[0].endpoint, { host: WS_HOST, port: 443, caResource: "AmazonRootCA1.der" });
  equal(p.made[0].options.region, undefined, "the region comes from the endpoint");
  equal(p.made[0].options.maxPacketBytes, 2048);
  equal(typeof p.made[0].options.credentials, "function", "a provider: each attempt signs with the credentials of that moment");
  deepEqual(currentCredentials(p.made[0].options), { accessKeyId: KEY_ID, secretAccessKey: SECRET, sessionToken: TOKEN });
  equal(p.broker.sent(1)[0].username, "?SDK=" + SDK_NAME + "&Version=0.1.0");
  // Rotation: configureIAMCredentials may be called once connected; the next attempt signs with the new keys.
  client.configureIAMCredentials("ASIAQWERTYUIOPASDFGH", "anotherSecret", "");
  deepEqual(currentCredentials(p.made[0].options), { accessKeyId: "ASIAQWERTYUIOPASDFGH", secretAccessKey: "anotherSecret", sessionToken: undefined }, "a token \"\" is none");
  throws(() => client.configureRegion("eu-west-1"), "before connect()");
});

test("facade: a WebSocket client on another port and a host that does not name its region (configureRegion)", async () => {
  const p = webSocketPlatform();
  const client = new AWSIoTMQTTClientCore(p.platform, "ws-device", 4, true);
  client.configureEndpoint("localhost", 8443);
  client.configureCredentials("ca.der");
  client.configureIAMCredentials(KEY_ID, SECRET);
  throws(() => client.configureRegion("Ireland"), "the region must look like \"eu-west-1\", got \"Ireland\"");
  throws(() => client.configureRegion(5 as unknown as string), "region must look like \"eu-west-1\", got 5");
  client.configureRegion("eu-west-1");
  const connecting = client.connect(30);
  p.clock.settle();
  await connecting;
  deepEqual(p.made[0].endpoint, { host: "localhost", port: 8443, caResource: "ca.der" });
  equal(p.made[0].options.region, "eu-west-1");
  equal(currentCredentials(p.made[0].options).sessionToken, undefined);
});

test("facade: WebSocket misconfigurations are refused at the call, naming the call to make, never showing a secret or a token", () => {
  const tls = new AWSIoTMQTTClientCore(webSocketPlatform().platform, "tls-device");
  throws(() => tls.configureIAMCredentials(KEY_ID, SECRET, TOKEN), "construct the client with useWebsocket=true");
  throws(() => tls.configureRegion("eu-west-1"), "useWebsocket=true");
  throws(() => tls.configureEndpoint(WS_HOST), "portNumber must be a whole number from 1 to 65535, got undefined");

  const client = new AWSIoTMQTTClientCore(webSocketPlatform().platform, "ws-device", 4, true);
  throws(() => client.configureUnencryptedConnection(true), "MQTT over WebSocket always uses TLS");
  const messages: string[] = [];
  const refused = (body: () => unknown, fragment: string): void => {
    try {
      body();
    } catch (error) {
      messages.push((error as Error).message);
    }
    throws(body, fragment);
  };
  refused(() => client.configureIAMCredentials("AKID", SECRET, TOKEN), "the access key id must be 16 to 128 letters and digits");
  refused(() => client.configureIAMCredentials(KEY_ID, SECRET + " x", TOKEN), "the secret access key must be 1 to 256 printable ASCII characters without spaces");
  refused(() => client.configureIAMCredentials(KEY_ID, "", TOKEN), "the secret access key must be");
  refused(() => client.configureIAMCredentials(KEY_ID, SECRET, TOKEN + "\n"), "the session token, when given, must be 1 to 4096 printable ASCII characters without spaces");
  refused(() => client.configureIAMCredentials(KEY_ID, SECRET, null as unknown as string), "AWSSessionToken must be a string");
  refused(() => client.configureIAMCredentials(KEY_ID, 42 as unknown as string), "AWSAccessKeyID and AWSSecretAccessKey must be strings");
  for (const message of messages) ok(message.indexOf(SECRET) < 0 && message.indexOf(TOKEN) < 0 && message.indexOf("wJalr") < 0 && message.indexOf("FwoG") < 0, "no secret or token in: " + message);

  // connect() names what is missing.
  throws(() => client.connectAsync(), "call configureEndpoint(hostName, portNumber) before connect()");
  client.configureEndpoint(WS_HOST);
  throws(() => client.connectAsync(), "MQTT over WebSocket needs TLS: call configureCredentials(CAFilePath)");
  client.configureCredentials("ca.der");
  throws(() => client.connectAsync(), "a WebSocket client signs in with IAM credentials: call configureIAMCredentials(AWSAccessKeyID, AWSSecretAccessKey, AWSSessionToken) before connect()");
  const bare = new AWSIoTMQTTClientCore(platform().platform, "ws-device", 4, true);
  bare.configureEndpoint(WS_HOST);
  bare.configureCredentials("ca.der");
  bare.configureIAMCredentials(KEY_ID, SECRET);
  throws(() => bare.connectAsync(), "this platform has no MQTT over WebSocket (Platform.createWebSocketTransport)");
});

/** A transport whose every attempt fails the way a refused upgrade does. */
class RefusingUpgrade implements Transport {
  opens = 0;
  constructor(private readonly clock: VirtualClock, private readonly reason: string) {}
  open(sink: TransportSink): void {
    this.opens++;
    this.clock.after(5, () => sink.onTransportClosed(this.reason));
  }
  write(): boolean {
    return false;
  }
  end(): void {}
  abort(): void {}
}

test("facade: a refused upgrade (HTTP 403) rejects connect() with the status and the server's words, reaches onError, and backs off: never online", async () => {
  const p = webSocketPlatform();
  const refusal = "websocket upgrade refused: HTTP 403 Forbidden: The request signature we calculated does not match the signature you provided.";
  const transport = new RefusingUpgrade(p.clock, refusal);
  p.platform.createWebSocketTransport = () => transport;
  const client = new AWSIoTMQTTClientCore(p.platform, "ws-device", 4, true);
  client.configureEndpoint(WS_HOST);
  client.configureCredentials("ca.der");
  client.configureIAMCredentials(KEY_ID, SECRET, TOKEN);
  client.configureAutoReconnectBackoffTime(1, 4, 20);
  let online = 0;
  client.onOnline = () => online++;
  const errors: string[] = [];
  client.onError = (error) => errors.push(error.code + ": " + error.message);
  const connecting = client.connect();
  p.clock.advance(10);
  let message = "";
  try {
    await connecting;
  } catch (error) {
    message = (error as Error).message;
  }
  equal(message, "connection closed before CONNACK: " + refusal);
  p.clock.advance(1000 + 5 + 2000 + 5);
  equal(transport.opens, 3, "retried after 1 s and 2 s");
  equal(online, 0);
  equal(errors.length, 3);
  equal(errors[0], "connect-failed: connection closed before CONNACK: " + refusal);
});
