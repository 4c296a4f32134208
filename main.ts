// The IoTLink device app: connects over mutual TLS, subscribes to its command topic, publishes
// telemetry at QoS 1 on an interval, answers commands, keeps its settings in its Device Shadow,
// runs jobs, and logs every state change as one parseable line (see modules/logline.ts and
// docs/device-app.md, "Log lines").
import config from "mc/config";
import Timer from "timer";
import { bootIdentity } from "./app/identity-boot";
import { RemoteSettings } from "./app/remote-settings";
import { type Identity, JournalIdentityStore } from "./modules/aws/identity";
import { Journal } from "./modules/storage/journal";
import { ModdableFlashDevice } from "./hosts/moddable/flash-device";
import { MqttClient, type InboundMessage } from "./modules/client";
import { formatLogLine } from "./modules/logline";
import { ACK_STATUS_NAMES, AckStatus, DROP_NEWEST, DROP_OLDEST, type EndpointSettings, isWordOf, State, type Transport } from "./modules/types";
import { moddablePlatform } from "./hosts/moddable/platform";
import { createWebSocketTransport } from "./hosts/moddable/websocket";

// Command-line overrides (mcconfig key=value) arrive as strings: parse and check every setting.
const settings = config as Record<string, unknown>;

function text(key: string, fallback: string): string {
  const value = settings[key];
  if (value === undefined || value === "") return fallback;
  if (typeof value !== "string") throw new Error("config " + key + " must be text");
  return value;
}

function whole(key: string, fallback: number, min: number, max: number): number {
  const raw = settings[key];
  // Digits only: Number() would read " " as 0 and "0x1f" or "6e1" as numbers.
  const value = raw === undefined || raw === "" ? fallback : typeof raw === "string" ? (/^\d+$/.test(raw) ? Number(raw) : Number.NaN) : raw;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw new Error("config " + key + " must be a whole number from " + min + " to " + max + ", got " + String(raw));
  }
  return value;
}

function flag(key: string, fallback: boolean): boolean {
  const value = settings[key];
  if (value === undefined || value === "") return fallback;
  if (value === true || value === "true" || value === "1") return true;
  if (value === false || value === "false" || value === "0") return false;
  throw new Error("config " + key + " must be true or false, got " + String(value));
}

function choice(key: string, fallback: string, allowed: readonly string[]): string {
  const value = text(key, fallback);
  if (allowed.indexOf(value) < 0) throw new Error("config " + key + " must be one of " + allowed.join(", ") + ", got " + value);
  return value;
}

function log(event: string, fields: readonly (string | number | boolean)[]): void {
  trace(formatLogLine(event, fields) + "\n");
}

/** When the last `status` line was printed: the stop does not repeat a tick that has just run (its `done` line has the final counts). */
let lastStatusAt = -1;

const clientId = text("clientId", "iotlink-device");
const topicPrefix = text("topicPrefix", "iotlink");
// Set by start(): with fleet provisioning the device's id is the thing name it was given.
let telemetryTopic = "";
let commandTopic = "";
let replyTopic = "";
// transport=websocket: MQTT over WebSocket signed with SigV4 (AWS IoT Core on port 443, the Python
// SDK's useWebsocket=True): TLS with the CA alone, the device signs in with accessKeyId and
// secretAccessKey (and sessionToken for temporary keys), never logged.
const websocket = choice("transport", "tls", ["tls", "websocket"]) === "websocket";
const port = whole("port", websocket ? 443 : 8883, 1, 65535);
const plaintext = flag("plaintext", false);
if (websocket && plaintext) throw new Error("config transport=websocket takes no plaintext: MQTT over WebSocket always uses TLS");
if (websocket && (settings.certificateResource || settings.keyResource)) throw new Error("config transport=websocket takes no certificateResource or keyResource: the device signs in with accessKeyId and secretAccessKey");
if (!websocket && (settings.accessKeyId || settings.secretAccessKey || settings.sessionToken || settings.region)) throw new Error("config transport=tls takes no accessKeyId, secretAccessKey, sessionToken or region: they are for transport=websocket");
// mutualTls=false: the broker authenticates the device another way (a user name and password, say); TLS checks the broker only.
const mutualTls = !plaintext && !websocket && flag("mutualTls", true);
// The manifest leaves the resource names empty: "" takes the default below, and the defaults fall away
// with plaintext or without mutual TLS, so that a resource named there can be refused rather than ignored.
if (!plaintext && !mutualTls && !websocket && (settings.certificateResource || settings.keyResource)) throw new Error("config mutualTls=false takes no certificateResource or keyResource");
const endpoint: EndpointSettings = {
  host: text("endpoint", "localhost"),
  port,
  serverName: text("serverName", "") || undefined,
  // AWS IoT Core speaks MQTT on 443 only with this ALPN protocol.
  alpn: port === 443 && !websocket ? ["x-amzn-mqtt-ca"] : undefined,
  caResource: text("caResource", plaintext ? "" : "ca.der") || undefined,
  certificateResource: text("certificateResource", mutualTls ? "device-cert.der" : "") || undefined,
  keyResource: text("keyResource", mutualTls ? "device-key.der" : "") || undefined,
  plaintext,
};
// The memory budget: the app runs in the esp32 platform's default XS arenas made fixed (manifest.json's
// creation: 32,768 B of chunks, 2,048 slots, 384 stack slots). The client's buffers are allocated
// once and live for ever, and the TLS handshake needs about 7 KB of chunks free on top of them:
// with the client's own defaults (2,048 B packets, 4,096 B in flight, a queue of 8,192 B and 64
// entries) the app keeps 36 KB and fails its first handshake. These keep about 22 KB (measured in
// the simulator by `npm run device-memory`; README, "Memory budget"). Raise them together with the
// creation.
const maxPacketBytes = whole("maxPacketBytes", 1024, 64, 131072);
const queueEntries = whole("queueEntries", 32, 0, 65535);
// Empty in the manifest, so that queueEntries=0 alone turns the queue off: the default follows it.
const queueBytes = whole("queueBytes", queueEntries === 0 ? 0 : 2048, 0, 0x7fffffff);
const inflightWindow = whole("inflightWindow", 10, 1, 100);
let telemetryIntervalMs = whole("telemetryIntervalMs", 5000, 10, 86400000);
const telemetryCount = whole("telemetryCount", 0, 0, 0x7fffffff);
const statusIntervalMs = whole("statusIntervalMs", 10000, 100, 86400000);
const runForMs = whole("runForMs", 0, 0, 0x7fffffff);

const operationTimeoutMs = whole("operationTimeoutMs", 5000, 1, 0x7fffffff);
// The Device Shadow and Jobs (docs/device-app.md, "Shadow and jobs"): off unless asked for, as they
// do not fit the esp32 defaults' memory with the rest (README, "Memory budget"); npm start turns them
// on. A broker without those services answers no request, and each times out with a log line.
const useShadow = flag("shadow", false);
const useJobs = flag("jobs", false);
const FIRMWARE_VERSION = "0.1.0";
// persist=true: the offline queue is kept in flash (partition iotlinkq), so a reboot loses no queued
// request (docs/device-app.md, "Settings"). provision=<template>: fleet provisioning by claim at
// the first boot, with the claim certificate; the identity it gets is kept in flash (iotlinkid).
const persist = flag("persist", false);
const provisionTemplate = text("provision", "");
if (provisionTemplate !== "" && (websocket || plaintext || !mutualTls)) throw new Error("config provision=" + provisionTemplate + " needs mutual TLS (the claim certificate): not with transport=websocket, plaintext or mutualTls=false");
// AWS's rule for a template name, checked now rather than when the claim connection is up.
if (provisionTemplate !== "" && !isWordOf(provisionTemplate, 1, 36, "_-")) throw new Error("config provision must be a template name of 1 to 36 of A-Z a-z 0-9 _ -, got " + provisionTemplate);
const clock = moddablePlatform.createClock();

/**
 * MQTT over WebSocket: made only with transport=websocket (its buffers are maxPacketBytes + 1,700
 * bytes more than the TLS transport's). Errors name the setting, but a secret's or a token's error
 * names transport=websocket instead: the desktop repeats the named setting's value.
 */
function webSocketTransport(): Transport {
  const accessKeyId = text("accessKeyId", "");
  const secretAccessKey = text("secretAccessKey", "");
  if (accessKeyId === "" || secretAccessKey === "") throw new Error("config transport=websocket needs accessKeyId and secretAccessKey (and sessionToken for temporary credentials)");
  try {
    return createWebSocketTransport(
      { host: endpoint.host, port, serverName: endpoint.serverName, caResource: endpoint.caResource as string },
      { credentials: { accessKeyId, secretAccessKey, sessionToken: text("sessionToken", "") }, region: text("region", "") || undefined, maxPacketBytes },
    );
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const named = message.indexOf("access key id") >= 0 ? "accessKeyId is not valid: " : message.indexOf("no region given") === 0 ? "region must be set: " : message.indexOf("region") >= 0 ? "region is not valid: "
      : message.indexOf("secret") >= 0 || message.indexOf("token") >= 0 ? "transport=websocket: " : "";
    throw named === "" ? error : new Error("config " + named + message);
  }
}

/**
 * The client's settings, read and checked at start: with provision=<template> the client is made only
 * once provisioned, and a bad setting must stop the app then, not after.
 */
const clientSettings = {
  // For brokers that authenticate with a user name and password (with mutualTls=false, typically); never logged.
  username: text("username", "") || undefined,
  password: text("password", "") || undefined,
  cleanSession: flag("cleanSession", true),
  keepAliveSeconds: whole("keepAliveSeconds", 60, 0, 65535),
  connectTimeoutMs: whole("connectTimeoutMs", 30000, 1, 0x7fffffff),
  operationTimeoutMs,
  backoff: {
    baseMs: whole("backoffBaseMs", 1000, 1, 0x7fffffff),
    maxMs: whole("backoffMaxMs", 32000, 1, 0x7fffffff),
    stableMs: whole("backoffStableMs", 20000, 1, 0x7fffffff),
    jitter: flag("backoffJitter", false),
  },
  queueEntries,
  queueBytes,
  dropPolicy: choice("dropPolicy", "oldest", ["oldest", "newest"]) === "newest" ? DROP_NEWEST : DROP_OLDEST,
  inflightWindow,
  // Empty in the manifest: as many bytes as the largest packet (the client's own default is 4,096 at least).
  inflightBytes: whole("inflightBytes", maxPacketBytes, maxPacketBytes, 0x7fffffff),
  drainIntervalMs: whole("drainIntervalMs", 500, 0, 0x7fffffff),
  maxPacketBytes,
  // The command topic, five shadow reply filters and six of Jobs, with room to spare.
  maxSubscriptions: 16,
};
const thingNameSetting = text("thingName", "");

/** The offline queue's flash journal (persist=true), opened: it may hold requests from before a reboot. */
function queueJournal(): Journal {
  // Records stay until acknowledged: those in flight count too.
  const journal = new Journal(new ModdableFlashDevice("iotlinkq"), { maxPayloadBytes: Math.min(maxPacketBytes, queueBytes), maxRecords: queueEntries + inflightWindow });
  journal.open();
  return journal;
}

let client: MqttClient;
let remote: RemoteSettings;

/** The app proper, once the device's identity is known: the provisioned one, or the manifest's. */
function start(identity: Identity | undefined): void {
  const deviceId = identity !== undefined ? identity.thingName : clientId;
  const prefix = topicPrefix + "/" + deviceId;
  telemetryTopic = prefix + "/telemetry";
  commandTopic = prefix + "/cmd";
  replyTopic = prefix + "/reply";
  const thingName = thingNameSetting || deviceId;
  const deviceEndpoint: EndpointSettings = identity === undefined ? endpoint : { ...endpoint, certificateResource: undefined, keyResource: undefined, certificate: identity.certificate, key: identity.privateKey };
  client = new MqttClient({
    ...clientSettings,
    clientId: deviceId,
    transport: websocket ? webSocketTransport() : moddablePlatform.createTransport(deviceEndpoint, maxPacketBytes),
    clock,
    persist: persist ? queueJournal() : undefined,
  });

  const startedAt = clock.now();
  let sequence = 0;

  function uptime(): number {
    return (clock.now() - startedAt) | 0;
  }

  function status(event: string, unlessJustSaid = false): void {
    if (event === "status") {
      if (unlessJustSaid && lastStatusAt >= 0 && ((clock.now() - lastStatusAt) | 0) < 1000) return;
      lastStatusAt = clock.now();
    }
    const stats = client.stats;
    const fields = [
      "state", client.stateName, "queue", client.queuedCount, "inflight", client.inflightCount,
      "dropped", stats.dropped, "attempt", client.attempt, "sent", stats.sent, "acked", stats.acknowledged,
      "received", stats.received,
    ];
    log(event, fields.concat(["uptime", uptime()]));
  }

  client.on("state", () => status("state"));
  client.on("online", (sessionPresent) => log("online", ["endpoint", endpoint.host + ":" + port, "session", sessionPresent]));
  client.on("offline", (reason) => log("offline", ["reason", reason]));
  // The command subscription is asked for at restored rather than before connect(): a request made
  // before the session is restored needs the offline queue, which queueEntries=0 turns off. Once the
  // broker has confirmed it, the client re-subscribes by itself after every reconnect. Until then
  // (the subscribe threw, or was dropped, timed out or refused), it is asked for again at the next
  // restored and at each status tick while online; and again if a resubscription is refused.
  let subscribing = false;

  function subscribeCommands(): void {
    // The app's only subscription: a count of 0 means the broker has not confirmed it (or no longer has it).
    if (subscribing || client.subscriptionCount() > 0) return;
    subscribing = true;
    try {
      client.subscribe(commandTopic, 1, onCommand, (ackStatus, _packetId, granted) => {
        subscribing = false;
        log("subscribe", ["topic", commandTopic, "status", ACK_STATUS_NAMES[ackStatus], "granted", granted]);
      });
    } catch (error) {
      subscribing = false;
      log("error", ["code", "subscribe", "message", error instanceof Error ? error.message : String(error)]);
    }
  }

  client.on("restored", () => {
    log("restored", ["queue", client.queuedCount]);
    // On a turn of its own: the stack budget. Called here, the SUBSCRIBE's TLS write sat on top of the
    // CONNACK's read and its events and took the stack to 344 of 384 slots; from a timer, about 250.
    Timer.set(() => {
      subscribeCommands();
      remote.restored();
    }, 0);
  });
  client.on("reconnecting", (delay, attempt) => log("backoff", ["delay", delay, "attempt", attempt]));
  client.on("drop", (kind, topic) => log("drop", ["kind", kind, "topic", topic, "dropped", client.stats.dropped]));
  client.on("error", (error) => log("error", ["code", error.code, "message", error.message]));

  /** `value` as a JSON string: quotes, backslashes and control characters escaped (a command is whatever the broker sent). */
  function jsonString(value: string): string {
    let json = '"';
    for (let i = 0; i < value.length; i++) {
      const code = value.charCodeAt(i);
      if (code === 0x22 || code === 0x5c) json += "\\" + value[i];
      else if (code < 0x20) json += (code < 0x10 ? "\\u000" : "\\u00") + code.toString(16);
      else json += value[i];
    }
    return json + '"';
  }

  function reply(command: string, body: string): void {
    client.publish(replyTopic, '{"command":' + jsonString(command) + "," + body + "}", 1);
  }

  function onCommand(message: InboundMessage): void {
    let command = "";
    for (let i = 0; i < message.payload.length && i < 32; i++) command += String.fromCharCode(message.payload[i]);
    command = command.trim();
    log("command", ["name", command]);
    // The reply goes out on a turn of its own, not on top of the inbound message's TLS read (the stack
    // budget: 322 of 384 slots there, about 250 from a timer).
    Timer.set(() => {
      if (command === "ping") reply(command, '"uptime":' + uptime());
      else if (command === "status") reply(command, '"state":"' + client.stateName + '","queue":' + client.queuedCount + ',"sent":' + client.stats.sent);
      else reply(command, '"error":"unknown command"');
    }, 0);
  }

  function publishTelemetry(): void {
    const seq = ++sequence;
    const payload = '{"seq":' + seq + ',"uptime":' + uptime() + ',"queue":' + client.queuedCount + "}";
    try {
      const accepted = client.publish(telemetryTopic, payload, 1, false, (ackStatus) => {
        if (ackStatus !== AckStatus.Acknowledged) log("ack", ["seq", seq, "status", ACK_STATUS_NAMES[ackStatus]]);
      });
      log("telemetry", ["seq", seq, "result", accepted === 0 ? "sent" : accepted === 1 ? "queued" : "dropped"]);
    } catch (error) {
      log("error", ["code", "publish", "message", error instanceof Error ? error.message : String(error)]);
    }
  }

  // The Device Shadow and Jobs: app/remote-settings.ts (preloaded: its code stays in flash).
  remote = new RemoteSettings(client, {
    thingName,
    useShadow,
    useJobs,
    timeoutMs: operationTimeoutMs,
    firmwareVersion: FIRMWARE_VERSION,
    interval: () => telemetryIntervalMs,
    setInterval: (ms) => {
      telemetryIntervalMs = ms;
      if (telemetryTimer !== undefined) startTelemetry();
    },
    uptime,
    later: (work) => Timer.set(work, 0),
    log,
  });

  // transport=websocket is said; the credentials never are.
  log("start", ["client", deviceId, "endpoint", endpoint.host + ":" + port, ...(websocket ? ["transport", "websocket"] : []), "tls", !plaintext, "mutual", mutualTls, "telemetry", telemetryTopic, "commands", commandTopic]);
  // On a turn of its own: the stack budget. connect() makes the TLS socket, whose constructor parses
  // the CA certificate (the SDK's X509/BER decoding); called here, that sat on top of the module's
  // body and start()'s frame (and bootIdentity()'s) and took the stack to 317 of 384 slots.
  Timer.set(() => client.connect(), 0);

  let telemetryTimer: Timer | undefined;

  function startTelemetry(): void {
    if (telemetryTimer !== undefined) Timer.clear(telemetryTimer);
    telemetryTimer = undefined;
    if (telemetryCount > 0 && sequence >= telemetryCount) return;
    telemetryTimer = Timer.repeat(() => {
      publishTelemetry();
      if (telemetryCount > 0 && sequence >= telemetryCount) stopTelemetry();
    }, telemetryIntervalMs);
  }

  function stopTelemetry(): void {
    if (telemetryTimer !== undefined) Timer.clear(telemetryTimer);
    telemetryTimer = undefined;
  }

  startTelemetry();
  const statusTimer = Timer.repeat(() => {
    status("status");
    if (client.state === State.Online) subscribeCommands();
  }, statusIntervalMs);

  if (runForMs > 0) {
    Timer.set(() => {
      stopTelemetry();
      Timer.clear(statusTimer);
      remote.stop();
      // What was sent gets its acknowledgement first, while online, for one operation timeout at most.
      const giveUpAt = clock.now() + operationTimeoutMs;
      const stop = Timer.repeat(() => {
        if (client.inflightCount > 0 && client.state === State.Online && ((giveUpAt - clock.now()) | 0) > 0) return;
        Timer.clear(stop);
        status("status", true);
        client.disconnect();
        log("done", ["sent", client.stats.sent, "acked", client.stats.acknowledged, "queue", client.queuedCount]);
      }, 50);
    }, runForMs);
  }
}

if (provisionTemplate === "") start(undefined);
else {
  // The identity partition holds one identity record (about 2.2 KB for RSA-2048) and room to replace it.
  const identityJournal = new Journal(new ModdableFlashDevice("iotlinkid"), { maxPayloadBytes: 3072, maxRecords: 2 });
  identityJournal.open();
  bootIdentity(
    {
      store: new JournalIdentityStore(identityJournal, 3072),
      template: provisionTemplate,
      parameters: { SerialNumber: text("serialNumber", clientId) },
      claimEndpoint: { ...endpoint, certificateResource: text("claimCertificateResource", "claim-cert.der"), keyResource: text("claimKeyResource", "claim-key.der") },
      claimClientId: clientId,
      platform: moddablePlatform,
      timeoutMs: 20000,
      retryMs: whole("backoffMaxMs", 32000, 1, 0x7fffffff),
      later: (work, delayMs) => Timer.set(work, delayMs),
      log,
    },
    start,
  );
}
