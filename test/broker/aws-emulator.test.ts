// The AWS IoT service emulator (tools/aws-emulator.ts), and IoTLink's Device Shadow and Jobs clients
// end to end against it:
// - the service alone, fed AWS's documented examples (kept here as test vectors: the optimistic
//   locking example, the delta examples, the error messages, the job notifications sequence);
// - the Shadow and Jobs clients (modules/aws, over the core and the Moddable host as on the device)
//   against the emulator through Mosquitto with mutual TLS, in both API styles, through a broker
//   restart; and through the embedded broker (tools/broker.ts).
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { IClientOptions } from "mqtt";
import { AwsIotService, type RunningAwsEmulator, type ServicePublish, shadowDelta, startAwsEmulator } from "../../tools/aws-emulator.ts";
import { startBroker, type RunningBroker } from "../../tools/broker.ts";
import { DEV_PKI_FILES } from "../../tools/certs.ts";
import { loadDesktopHost, type DesktopHost } from "../../tools/desktop-build.ts";
import { startMosquitto, type MosquittoTls, type RunningMosquitto } from "../../tools/mosquitto.ts";
import { textOf } from "../../modules/aws/json.ts";
import { REPLY_STATUS_NAMES, ShadowClient, type ShadowReply } from "../../modules/aws/shadow.ts";
import { AWSIoTMQTTShadowClientCore } from "../../modules/aws/shadow-facade.ts";
import { type Job, JobRunner, JobsClient } from "../../modules/aws/jobs.ts";
import { AWSIoTMQTTThingJobsClientCore, jobExecutionStatus, jobExecutionTopicReplyType, jobExecutionTopicType } from "../../modules/aws/jobs-facade.ts";
import type { EndpointSettings } from "../../modules/types.ts";
import { createFixtures, removeFixtures, type Fixtures } from "../desktop/fixtures.ts";
import { waitUntil } from "./helpers.ts";

// ------------------------------------------------------------------ the service alone

/** The service on a fixed clock, with what it publishes collected. */
function service(seconds = 1591057529): { service: AwsIotService; out: ServicePublish[]; setTime: (s: number) => void; json: (topic: string) => Record<string, unknown>[] } {
  let now = seconds * 1000;
  const out: ServicePublish[] = [];
  const emulator = new AwsIotService((message) => out.push(message), { now: () => now });
  return {
    service: emulator,
    out,
    setTime: (s) => {
      now = s * 1000;
    },
    json: (topic) => out.filter((message) => message.topic === topic).map((message) => JSON.parse(message.payload) as Record<string, unknown>),
  };
}

const SHADOW = "$aws/things/myThing/shadow/";

describe("the AWS IoT service emulator, on AWS's documented examples", () => {
  test("update, delta and documents: a desired change against the reported state (the developer guide's example)", () => {
    const s = service();
    assert.equal(s.service.handle(SHADOW + "update", JSON.stringify({ state: { reported: { color: { r: 255, g: 255, b: 0 } } } }), 1), true);
    assert.deepEqual(s.json(SHADOW + "update/accepted")[0], {
      state: { reported: { color: { r: 255, g: 255, b: 0 } } },
      metadata: { reported: { color: { r: { timestamp: 1591057529 }, g: { timestamp: 1591057529 }, b: { timestamp: 1591057529 } } } },
      version: 1,
      timestamp: 1591057529,
    });
    assert.equal(s.json(SHADOW + "update/delta").length, 0, "a reported-only update makes no delta");
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { color: { r: 10 }, engine: "ON" } }, clientToken: "app-1" }), 1);
    const [delta] = s.json(SHADOW + "update/delta");
    assert.deepEqual(delta, { version: 2, timestamp: 1591057529, state: { color: { r: 10 }, engine: "ON" }, metadata: { color: { r: { timestamp: 1591057529 } }, engine: { timestamp: 1591057529 } }, clientToken: "app-1" });
    const documents = s.json(SHADOW + "update/documents");
    assert.equal(documents.length, 2);
    assert.equal(documents[0].previous, undefined, "the first update created the shadow");
    assert.deepEqual((documents[1].previous as { state: unknown }).state, { reported: { color: { r: 255, g: 255, b: 0 } } });
    assert.deepEqual((documents[1].current as { state: unknown; version: number }).state, { desired: { color: { r: 10 }, engine: "ON" }, reported: { color: { r: 255, g: 255, b: 0 } } });
    assert.equal((documents[1].current as { version: number }).version, 2);
    assert.equal(documents[1].clientToken, "app-1");
    // Order: the reply, then the delta, then /documents.
    assert.deepEqual(s.out.slice(2).map((message) => message.topic.slice(SHADOW.length)), ["update/accepted", "update/delta", "update/documents"]);
  });

  test("the delta as AWS computes it: keys desired has and reported lacks or differs on, nested down to the leaf, arrays whole", () => {
    // The "Delta state" examples of the Device Shadow documents page.
    assert.deepEqual(shadowDelta({ color: "RED", state: "STOP" }, { color: "GREEN", engine: "ON" }), { color: "RED", state: "STOP" });
    assert.deepEqual(shadowDelta({ lights: { color: { r: 255, g: 255, b: 255 } } }, { lights: { color: { r: 255, g: 0, b: 255 } } }), { lights: { color: { g: 255 } } });
    assert.deepEqual(shadowDelta({ colors: ["RED", "GREEN"] }, { colors: ["RED"] }), { colors: ["RED", "GREEN"] });
    assert.deepEqual(shadowDelta({ a: 1 }, { a: 1, b: 2 }), {});
    assert.deepEqual(shadowDelta({ a: { b: 1 } }, { a: 5 }), { a: { b: 1 } });
  });

  test("get returns state with its delta, metadata and version; null deletes a key or a section; arrays are replaced whole", () => {
    const s = service();
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { colors: ["RED", "GREEN", "BLUE"], engine: "ON" }, reported: { colors: ["RED"], engine: "ON" } } }));
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { colors: ["RED"], engine: null } } }));
    s.service.handle(SHADOW + "get", JSON.stringify({ clientToken: "g-1" }), 1);
    const [document] = s.json(SHADOW + "get/accepted");
    assert.deepEqual(document.state, { desired: { colors: ["RED"] }, reported: { colors: ["RED"], engine: "ON" } });
    assert.deepEqual((document.metadata as { desired: unknown }).desired, { colors: [{ timestamp: 1591057529 }] });
    assert.equal(document.version, 2);
    assert.equal(document.clientToken, "g-1");
    // The documents page's example: removing the desired section with null.
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { reported: { color: "red" }, desired: null } }));
    assert.deepEqual(s.service.shadowDocument("myThing")?.state, { reported: { colors: ["RED"], engine: "ON", color: "red" } });
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { colors: ["BLUE"] } } }));
    assert.deepEqual(s.service.shadowDocument("myThing")?.state.delta, { colors: ["BLUE"] });
  });

  test("optimistic locking: the developer guide's example (version 9 against 10 is a 409 Version conflict; 10 is accepted as 11)", () => {
    const s = service();
    for (let i = 0; i < 10; i++) s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { colors: ["RED", "GREEN", "BLUE"] } } }));
    assert.equal(s.service.shadowDocument("myThing")?.version, 10);
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { colors: ["BLUE"] } }, version: 9, clientToken: "426bfd96-e720-46d3-95cd-014e3ef12bb6" }), 1);
    assert.deepEqual(s.json(SHADOW + "update/rejected"), [{ code: 409, message: "Version conflict", timestamp: 1591057529, clientToken: "426bfd96-e720-46d3-95cd-014e3ef12bb6" }]);
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { desired: { colors: ["BLUE"] } }, version: 10 }), 1);
    assert.deepEqual(s.service.shadowDocument("myThing")?.state.desired, { colors: ["BLUE"] });
    assert.equal(s.service.shadowDocument("myThing")?.version, 11);
  });

  test("delete answers {version, timestamp} (the developer guide's example), keeps the version, and a get after it is a 404", () => {
    const s = service();
    for (let i = 0; i < 4; i++) s.service.handle(SHADOW + "update", JSON.stringify({ state: { reported: { n: i } } }));
    s.service.handle(SHADOW + "delete", "");
    assert.deepEqual(s.json(SHADOW + "delete/accepted"), [{ version: 4, timestamp: 1591057529 }]);
    s.service.handle(SHADOW + "get", JSON.stringify({ clientToken: "x" }));
    assert.deepEqual(s.json(SHADOW + "get/rejected"), [{ code: 404, message: "No shadow exists with name: 'myThing'", timestamp: 1591057529, clientToken: "x" }]);
    s.service.handle(SHADOW + "delete", "{}");
    assert.equal(s.json(SHADOW + "delete/rejected")[0].code, 404);
    s.service.handle(SHADOW + "update", JSON.stringify({ state: { reported: { n: 9 } } }));
    assert.equal(s.service.shadowDocument("myThing")?.version, 5, "deleting a shadow does not reset its version");
    s.service.handle("$aws/things/myThing/shadow/name/config/get", "");
    assert.deepEqual(s.json("$aws/things/myThing/shadow/name/config/get/rejected")[0].message, "No shadow exists with name: 'config'");
  });

  test("error responses with AWS's codes and messages (the Device Shadow error messages page)", () => {
    const s = service();
    const cases: [string, string, number, string][] = [
      ["update", "{not json", 400, "Invalid JSON"],
      ["update", JSON.stringify({ clientToken: "t" }), 400, "Missing required node: state"],
      ["update", JSON.stringify({ state: 5, clientToken: "t" }), 400, "State node must be an object"],
      ["update", JSON.stringify({ state: { desired: [1] }, clientToken: "t" }), 400, "Desired node must be an object"],
      ["update", JSON.stringify({ state: { reported: "x" }, clientToken: "t" }), 400, "Reported node must be an object"],
      ["update", JSON.stringify({ state: { delta: {} }, clientToken: "t" }), 400, "State contains an invalid node"],
      ["update", JSON.stringify({ state: {}, version: "3", clientToken: "t" }), 400, "Invalid version"],
      ["update", JSON.stringify({ state: { desired: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } }, clientToken: "t" }), 400, "JSON contains too many levels of nesting; maximum is 6"],
      ["update", JSON.stringify({ state: {}, clientToken: "x".repeat(65) }), 400, "Invalid clientToken"],
      ["update", JSON.stringify({ state: { reported: { blob: "x".repeat(8200) } }, clientToken: "t" }), 413, "The payload exceeds the maximum size allowed"],
      ["get", JSON.stringify({ clientToken: "t" }), 404, "No shadow exists with name: 'myThing'"],
    ];
    for (const [operation, payload, code, message] of cases) {
      s.out.length = 0;
      s.service.handle(SHADOW + operation, payload, 1);
      const [reply] = s.json(SHADOW + operation + "/rejected");
      assert.equal(reply?.code, code, message);
      assert.equal(reply.message, message);
      assert.equal(reply.clientToken, code === 413 || message === "Invalid JSON" || message === "Invalid clientToken" ? undefined : "t", "the token is echoed when the request carried a valid one");
    }
    assert.equal(s.service.shadowDocument("myThing"), undefined, "nothing was stored");
  });

  test("jobs: the notifications sequence of the Jobs notifications page (job1, job2, job3), with notify and notify-next exactly as documented", () => {
    const s = service(1517016947);
    const thing = "$aws/things/thing1/jobs/";
    const strip = (message: Record<string, unknown>) => {
      const { timestamp: _timestamp, ...rest } = message;
      return rest;
    };
    const notify = () => s.json(thing + "notify").map(strip);
    const next = () => s.json(thing + "notify-next").map(strip);
    s.service.createJob("job1", { operation: "test" }, ["thing1"]);
    assert.deepEqual(notify(), [{ jobs: { QUEUED: [{ jobId: "job1", queuedAt: 1517016947, lastUpdatedAt: 1517016947, executionNumber: 1, versionNumber: 1 }] } }]);
    assert.deepEqual(next(), [{ execution: { jobId: "job1", status: "QUEUED", queuedAt: 1517016947, lastUpdatedAt: 1517016947, versionNumber: 1, executionNumber: 1, jobDocument: { operation: "test" } } }]);
    s.setTime(1517017191);
    s.service.createJob("job2", { operation: "test" }, ["thing1"]);
    assert.equal(notify().length, 2);
    assert.equal(next().length, 1, "the next job is still job1: no notify-next");
    s.setTime(1517017472);
    s.service.handle(thing + "start-next", JSON.stringify({ clientToken: "c1" }), 1);
    assert.equal(notify().length, 2, "job1 starting changes neither the list nor the next job");
    const started = s.json(thing + "start-next/accepted")[0];
    assert.deepEqual(started.execution, { jobId: "job1", thingName: "thing1", status: "IN_PROGRESS", queuedAt: 1517016947, startedAt: 1517017472, lastUpdatedAt: 1517017472, versionNumber: 2, executionNumber: 1, jobDocument: { operation: "test" } });
    assert.equal(started.clientToken, "c1");
    s.setTime(1517017905);
    s.service.createJob("job3", { operation: "test" }, ["thing1"]);
    assert.deepEqual(notify()[2], {
      jobs: {
        IN_PROGRESS: [{ jobId: "job1", queuedAt: 1517016947, lastUpdatedAt: 1517017472, startedAt: 1517017472, executionNumber: 1, versionNumber: 2 }],
        QUEUED: [
          { jobId: "job2", queuedAt: 1517017191, lastUpdatedAt: 1517017191, executionNumber: 1, versionNumber: 1 },
          { jobId: "job3", queuedAt: 1517017905, lastUpdatedAt: 1517017905, executionNumber: 1, versionNumber: 1 },
        ],
      },
    });
    s.setTime(1517186269);
    s.service.handle(thing + "job1/update", JSON.stringify({ status: "SUCCEEDED", expectedVersion: 2 }));
    assert.deepEqual(notify()[3], { jobs: { QUEUED: [{ jobId: "job2", queuedAt: 1517017191, lastUpdatedAt: 1517017191, executionNumber: 1, versionNumber: 1 }, { jobId: "job3", queuedAt: 1517017905, lastUpdatedAt: 1517017905, executionNumber: 1, versionNumber: 1 }] } });
    assert.deepEqual(next()[1], { execution: { jobId: "job2", status: "QUEUED", queuedAt: 1517017191, lastUpdatedAt: 1517017191, versionNumber: 1, executionNumber: 1, jobDocument: { operation: "test" } } });
    s.setTime(1517186779);
    s.service.handle(thing + "job3/update", JSON.stringify({ status: "IN_PROGRESS" }));
    assert.equal(notify().length, 4, "no job added or removed: no notify");
    assert.deepEqual(next()[2], { execution: { jobId: "job3", status: "IN_PROGRESS", queuedAt: 1517017905, startedAt: 1517186779, lastUpdatedAt: 1517186779, versionNumber: 2, executionNumber: 1, jobDocument: { operation: "test" } } });
    s.setTime(1517189392);
    s.service.handle(thing + "job2/update", JSON.stringify({ status: "REJECTED" }));
    assert.deepEqual(notify()[4], { jobs: { IN_PROGRESS: [{ jobId: "job3", queuedAt: 1517017905, lastUpdatedAt: 1517186779, startedAt: 1517186779, executionNumber: 1, versionNumber: 2 }] } });
    assert.equal(next().length, 3);
    s.setTime(1517189551);
    s.service.cancelJob("job3", "thing1");
    assert.deepEqual(s.json(thing + "notify").at(-1), { timestamp: 1517189551, jobs: {} });
    assert.deepEqual(s.json(thing + "notify-next").at(-1), { timestamp: 1517189551 });
  });

  test("jobs: VersionMismatch and InvalidStateTransition carry executionState; describe, $next and GetPendingJobExecutions", () => {
    const s = service(1000);
    const thing = "$aws/things/t1/jobs/";
    s.service.createJob("j1", { op: "set-interval", intervalMs: 2000 }, ["t1"]);
    s.service.createJob("j2", { op: "report-status" }, ["t1"]);
    s.service.handle(thing + "get", JSON.stringify({ clientToken: "p" }));
    const pending = s.json(thing + "get/accepted")[0];
    assert.deepEqual((pending.queuedJobs as { jobId: string }[]).map((job) => job.jobId), ["j1", "j2"]);
    assert.deepEqual(pending.inProgressJobs, []);
    s.service.handle(thing + "j1/update", JSON.stringify({ status: "IN_PROGRESS", expectedVersion: "1", includeJobExecutionState: true, includeJobDocument: true, clientToken: "u1" }));
    assert.deepEqual(s.json(thing + "j1/update/accepted")[0], { executionState: { status: "IN_PROGRESS", versionNumber: 2 }, jobDocument: { op: "set-interval", intervalMs: 2000 }, timestamp: 1000, clientToken: "u1" });
    s.service.handle(thing + "j1/update", JSON.stringify({ status: "SUCCEEDED", expectedVersion: 1, clientToken: "u2" }));
    const mismatch = s.json(thing + "j1/update/rejected")[0];
    assert.equal(mismatch.code, "VersionMismatch");
    assert.deepEqual(mismatch.executionState, { status: "IN_PROGRESS", versionNumber: 2 });
    assert.equal(mismatch.clientToken, "u2");
    s.service.handle(thing + "$next/get", JSON.stringify({ includeJobDocument: false }));
    assert.deepEqual(s.json(thing + "$next/get/accepted")[0].execution, { jobId: "j1", thingName: "t1", status: "IN_PROGRESS", queuedAt: 1000, startedAt: 1000, lastUpdatedAt: 1000, versionNumber: 2, executionNumber: 1 });
    s.service.handle(thing + "j1/update", JSON.stringify({ status: "SUCCEEDED", statusDetails: { result: "ok" }, expectedVersion: 2 }));
    s.service.handle(thing + "j1/update", JSON.stringify({ status: "FAILED" }));
    const transition = s.json(thing + "j1/update/rejected")[1];
    assert.equal(transition.code, "InvalidStateTransition");
    assert.deepEqual(transition.executionState, { status: "SUCCEEDED", statusDetails: { result: "ok" }, versionNumber: 3 });
    s.service.handle(thing + "j1/get", "{}");
    assert.equal(s.json(thing + "j1/get/rejected")[0].code, "TerminalStateReached");
    s.service.handle(thing + "nope/get", "{}");
    assert.equal(s.json(thing + "nope/get/rejected")[0].code, "ResourceNotFound");
    s.service.handle(thing + "j2/update", JSON.stringify({ status: "CANCELED" }));
    assert.equal(s.json(thing + "j2/update/rejected")[0].code, "InvalidRequest");
    s.service.handle(thing + "start-next", "not json");
    assert.equal(s.json(thing + "start-next/rejected")[0].code, "InvalidJson");
    assert.equal(s.service.jobExecution("t1", "j1")?.status, "SUCCEEDED");
  });
});

// ------------------------------------------------------------------ end to end

let fixtures: Fixtures;
let work: string;
let resources: string;
let host: DesktopHost;
let mosquittoTls: MosquittoTls;
let peerTls: IClientOptions;
const brokers: RunningMosquitto[] = [];
const emulators: RunningAwsEmulator[] = [];
const stops: (() => void | Promise<void>)[] = [];

before(async () => {
  fixtures = createFixtures();
  work = mkdtempSync(join(tmpdir(), "iotlink-aws-emulator-test-"));
  resources = join(work, "resources");
  mkdirSync(resources);
  writeFileSync(join(resources, DEV_PKI_FILES.caCertificateDer), fixtures.caDer);
  writeFileSync(join(resources, DEV_PKI_FILES.deviceCertificateDer), fixtures.deviceCertificateDer);
  writeFileSync(join(resources, DEV_PKI_FILES.deviceKeyDer), fixtures.deviceKeyDer);
  host = await loadDesktopHost(join(work, "host.mjs"));
  host.setResourceDirectory(resources);
  host.mergeConfig({ tls: { DHE_RSA: false } });
  host.setTraceSink(() => {});
  mosquittoTls = {
    caFile: join(fixtures.pki, DEV_PKI_FILES.caCertificatePem),
    certFile: join(fixtures.pki, DEV_PKI_FILES.brokerChainPem),
    keyFile: join(fixtures.pki, DEV_PKI_FILES.brokerKeyPem),
  };
  peerTls = { ca: fixtures.caPem, cert: fixtures.deviceCertificatePem, key: fixtures.deviceKeyPem, rejectUnauthorized: true, servername: "localhost" };
});

after(async () => {
  for (const stop of stops.reverse()) await stop();
  for (const emulator of emulators) await emulator.stop();
  for (const broker of brokers) await broker.stop();
  host?.setTraceSink();
  if (fixtures) removeFixtures(fixtures);
  if (work) rmSync(work, { recursive: true, force: true });
});

function endpoint(port: number, hostName = "127.0.0.1"): EndpointSettings {
  return { host: hostName, port, serverName: "localhost", caResource: DEV_PKI_FILES.caCertificateDer, certificateResource: DEV_PKI_FILES.deviceCertificateDer, keyResource: DEV_PKI_FILES.deviceKeyDer };
}

type Client = InstanceType<DesktopHost["MqttClient"]>;

/** The core over the Moddable host (SecureSocket, Timer), as on the device; stopped after the file. */
function device(port: number, clientId: string, options: Record<string, unknown> = {}): Client {
  const client = new host.MqttClient({ clientId, transport: host.moddablePlatform.createTransport(endpoint(port)), clock: host.moddablePlatform.createClock(), backoff: { baseMs: 200, maxMs: 1000, stableMs: 20000 }, ...options });
  stops.push(() => client.disconnect());
  return client;
}

async function online(client: Client): Promise<void> {
  await waitUntil(() => client.stateName === "online", 10_000, () => "the device to be online (" + client.stateName + ")");
}

interface Reply {
  status: string;
  payload: Record<string, unknown> | undefined;
  version: number;
  code: number;
}

/** Calls a shadow request and resolves with its outcome. */
function ask(request: (onReply: (status: number, reply: ShadowReply) => void) => unknown): Promise<Reply> {
  return new Promise((done) => {
    request((status, reply) => done({ status: REPLY_STATUS_NAMES[status], payload: reply.payload.length > 0 ? (JSON.parse(textOf(reply.payload)) as Record<string, unknown>) : undefined, version: reply.version, code: reply.code }));
  });
}

describe("the Shadow client against the emulator over Mosquitto (mutual TLS)", () => {
  let broker: RunningMosquitto;
  let emulator: RunningAwsEmulator;

  before(async () => {
    broker = await startMosquitto({ tls: mosquittoTls, persistence: true, logTypes: ["error", "warning", "notice"] });
    brokers.push(broker);
    // A persistent session: requests published while the emulator reconnects wait for it in the broker.
    emulator = await startAwsEmulator({ url: broker.url, mqtt: { ...peerTls, clean: false }, clientId: "aws-emulator-mt" });
    emulators.push(emulator);
  });

  test("update, delta from the cloud applied and reported back, get, a version conflict, two named shadows and delete", { timeout: 30_000 }, async () => {
    const client = device(broker.port, "shadow-device");
    const shadows = new ShadowClient(client, { maxShadows: 3, timeoutMs: 5000 });
    const thing = shadows.shadow("shadow-device");
    const deltas: Record<string, unknown>[] = [];
    thing.onDelta((delta) => deltas.push(JSON.parse(textOf(delta.payload)) as Record<string, unknown>));
    client.connect();
    await online(client);

    const first = await ask((done) => thing.update({ state: { reported: { intervalMs: 5000, firmware: "1.0.0" } } }, done));
    assert.equal(first.status, "accepted");
    assert.equal(first.version, 1);
    assert.equal(first.payload?.clientToken, thing.tokenOf(1));

    // The cloud side asks for another interval: the device gets the delta, applies it, reports it.
    emulator.service.updateShadowDocument("shadow-device", "", { state: { desired: { intervalMs: 2000 } } });
    await waitUntil(() => deltas.length === 1, 5000, "the delta");
    assert.deepEqual(deltas[0].state, { intervalMs: 2000 });
    assert.equal(deltas[0].version, 2);
    const applied = await ask((done) => thing.update({ state: { reported: { intervalMs: 2000 } } }, done));
    assert.equal(applied.version, 3);
    const document = await ask((done) => thing.get(done));
    assert.equal(document.status, "accepted");
    assert.deepEqual((document.payload?.state as Record<string, unknown>).delta, undefined, "in sync: no delta");
    assert.deepEqual((document.payload?.state as Record<string, unknown>).reported, { intervalMs: 2000, firmware: "1.0.0" });
    assert.equal(thing.lastVersion, 3);

    const conflict = await ask((done) => thing.update({ state: { reported: { intervalMs: 1 } }, version: 1 }, done));
    assert.deepEqual([conflict.status, conflict.code, conflict.payload?.message], ["rejected", 409, "Version conflict"]);

    // Two named shadows at once.
    const config = shadows.shadow("shadow-device", "config");
    const status = shadows.shadow("shadow-device", "status");
    const [a, b] = await Promise.all([ask((done) => config.update({ state: { reported: { mode: "eco" } } }, done)), ask((done) => status.update({ state: { reported: { uptime: 12 } } }, done))]);
    assert.deepEqual([a.status, a.version, b.status, b.version], ["accepted", 1, "accepted", 1]);
    assert.deepEqual(emulator.service.shadowDocument("shadow-device", "config")?.state.reported, { mode: "eco" });

    assert.equal((await ask((done) => status.delete(done))).status, "accepted");
    const gone = await ask((done) => status.get(done));
    assert.deepEqual([gone.status, gone.code], ["rejected", 404]);
    assert.equal(shadows.stats.timedOut + shadows.stats.dropped, 0);
    shadows.close();
    client.disconnect();
  });

  test("through a broker restart: a request made while the broker is down is queued and answered; a delta missed while offline is caught up by a get", { timeout: 60_000 }, async () => {
    const client = device(broker.port, "restart-device", { queueEntries: 32, queueBytes: 8192, drainIntervalMs: 20 });
    const shadows = new ShadowClient(client, { timeoutMs: 30_000 });
    const thing = shadows.shadow("restart-device");
    const deltas: number[] = [];
    thing.onDelta((delta) => deltas.push(delta.version));
    client.connect();
    await online(client);
    assert.equal((await ask((done) => thing.update({ state: { reported: { intervalMs: 5000 } } }, done))).status, "accepted");

    await broker.kill();
    await waitUntil(() => client.stateName !== "online", 5000, "the device to notice the broker is gone");
    // Offline: the request waits in the device's queue, behind nothing (its subscriptions are kept by the client).
    const queued = ask((done) => thing.update({ state: { reported: { intervalMs: 7000 } } }, done));
    assert.equal(client.queuedCount, 1);
    // The cloud changes desired while the device is away: the delta has no one to go to (clean session).
    emulator.service.updateShadowDocument("restart-device", "", { state: { desired: { intervalMs: 9000 } } });
    await broker.restart();
    await emulator.whenReady();
    const answer = await queued;
    assert.equal(answer.status, "accepted");
    assert.equal(answer.version, 3, "1 the first update, 2 the cloud's, 3 this one");
    await online(client);
    const document = await ask((done) => thing.get(done));
    assert.deepEqual((document.payload?.state as Record<string, unknown>).delta, { intervalMs: 9000 }, "a get after the restore finds the desired change");
    assert.ok(emulator.connections >= 2, "the emulator reconnected");
    assert.deepEqual(deltas, [], "no delta reached the device while it was away");
    shadows.close();
    client.disconnect();
  });

  test("the Python-style facade end to end: AWSIoTMQTTShadowClient, shadowUpdate, a delta callback, shadowGet", { timeout: 30_000 }, async () => {
    const shadowClient = new AWSIoTMQTTShadowClientCore(host.moddablePlatform, "facade-device");
    shadowClient.configureEndpoint("127.0.0.1", broker.port);
    shadowClient.configureCredentials(DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceKeyDer, DEV_PKI_FILES.deviceCertificateDer);
    shadowClient.configureAutoReconnectBackoffTime(0.2, 1, 20);
    stops.push(async () => {
      await shadowClient.disconnect();
    });
    const handler = shadowClient.createShadowHandlerWithName("facade-device", true);
    const deltas: string[] = [];
    handler.shadowRegisterDeltaCallback((payload, status) => deltas.push(status + " " + payload));
    assert.equal(await shadowClient.connect(60), true);
    await waitUntil(() => shadowClient.getMQTTConnection().getMQTTConnection()?.stateName === "online", 10_000, "the facade to be restored");
    const updated = await new Promise<[string, string, string | null]>((done) => handler.shadowUpdate('{"state":{"reported":{"power":"on"}}}', (payload, status, token) => done([payload, status, token]), 5));
    assert.equal(updated[1], "accepted");
    assert.equal(JSON.parse(updated[0]).clientToken, updated[2]);
    emulator.service.updateShadowDocument("facade-device", "", { state: { desired: { power: "off" } } });
    await waitUntil(() => deltas.length === 1, 5000, "the delta callback");
    assert.match(deltas[0], /^delta \{.*"power":"off"/);
    const got = await new Promise<[string, string]>((done) => handler.shadowGet((payload, status) => done([payload, status]), 5));
    assert.equal(got[1], "accepted");
    assert.deepEqual(JSON.parse(got[0]).state.delta, { power: "off" });
    await shadowClient.disconnect();
  });
});

describe("the Jobs client and JobRunner against the emulator over Mosquitto (mutual TLS)", () => {
  let broker: RunningMosquitto;
  let emulator: RunningAwsEmulator;

  before(async () => {
    broker = await startMosquitto({ tls: mosquittoTls, persistence: true, logTypes: ["error", "warning", "notice"] });
    brokers.push(broker);
    emulator = await startAwsEmulator({ url: broker.url, mqtt: { ...peerTls, clean: false }, clientId: "aws-emulator-jobs" });
    emulators.push(emulator);
  });

  test("JobRunner takes the queued jobs one by one, runs each once, reports SUCCEEDED, FAILED and REJECTED; a version conflict is re-read and retried", { timeout: 30_000 }, async () => {
    const client = device(broker.port, "jobs-device");
    const jobs = new JobsClient(client, "jobs-device", { timeoutMs: 5000 });
    const ran: string[] = [];
    const events: string[] = [];
    const runner = new JobRunner(
      jobs,
      (job: Job, finish) => {
        ran.push(job.jobId);
        const document = job.document as { op: string; intervalMs?: number };
        if (document.op === "set-interval") {
          // The cloud side touches the execution while it runs: the runner's expectedVersion goes stale.
          if (job.jobId === "job-conflict") emulator.service.touchJobExecution("jobs-device", job.jobId, { note: "touched" });
          finish(document.intervalMs !== undefined && document.intervalMs >= 1000 ? "SUCCEEDED" : "FAILED", { intervalMs: String(document.intervalMs) });
        } else if (document.op === "report-status") setTimeout(() => finish("SUCCEEDED", { uptime: "42" }), 50);
        else finish("REJECTED", { reason: "unknown op " + document.op });
      },
      { onEvent: (event, jobId, detail) => events.push(event + " " + jobId + " " + detail) },
    );
    client.connect();
    await online(client);
    emulator.service.createJob("job-a", { op: "set-interval", intervalMs: 2000 }, ["jobs-device"]);
    emulator.service.createJob("job-b", { op: "set-interval", intervalMs: 5 }, ["jobs-device"]);
    runner.start();
    emulator.service.createJob("job-c", { op: "report-status" }, ["jobs-device"]);
    emulator.service.createJob("job-d", { op: "reboot" }, ["jobs-device"]);
    emulator.service.createJob("job-conflict", { op: "set-interval", intervalMs: 3000 }, ["jobs-device"]);
    const statusOf = (jobId: string) => emulator.service.jobExecution("jobs-device", jobId)?.status;
    await waitUntil(() => ["job-a", "job-b", "job-c", "job-d", "job-conflict"].every((jobId) => statusOf(jobId) !== "QUEUED" && statusOf(jobId) !== "IN_PROGRESS"), 15_000, () => "every job finished; events: " + events.join(" | "));
    assert.deepEqual(["job-a", "job-b", "job-c", "job-d", "job-conflict"].map(statusOf), ["SUCCEEDED", "FAILED", "SUCCEEDED", "REJECTED", "SUCCEEDED"]);
    assert.deepEqual(ran, ["job-a", "job-b", "job-c", "job-d", "job-conflict"], "each job ran once, in order");
    assert.deepEqual(emulator.service.jobExecution("jobs-device", "job-c")?.statusDetails, { uptime: "42" });
    assert.equal(runner.stats.conflicts, 1);
    assert.ok(events.some((event) => event.startsWith("conflict job-conflict")), events.join(" | "));
    await waitUntil(() => runner.stateName === "idle", 5000, "the runner to be idle");
    runner.stop();
    jobs.close();
    client.disconnect();
  });

  test("through a broker restart: a job queued while the device is away is taken once it is restored", { timeout: 60_000 }, async () => {
    const client = device(broker.port, "jobs-restart", { queueEntries: 16, queueBytes: 4096 });
    const jobs = new JobsClient(client, "jobs-restart");
    const ran: string[] = [];
    const runner = new JobRunner(jobs, (job, finish) => {
      ran.push(job.jobId);
      finish("SUCCEEDED");
    });
    client.connect();
    await online(client);
    runner.start();
    await waitUntil(() => runner.stateName === "idle" && jobs.pendingCount === 0, 5000, "the first start-next answered");
    await broker.kill();
    await waitUntil(() => client.stateName !== "online", 5000, "the device to notice");
    // Created while the broker is down: its notify-next is lost (the device has a clean session).
    emulator.service.createJob("while-away", { op: "report-status" }, ["jobs-restart"]);
    await broker.restart();
    await emulator.whenReady();
    await waitUntil(() => emulator.service.jobExecution("jobs-restart", "while-away")?.status === "SUCCEEDED", 15_000, "the job taken after the restore");
    assert.deepEqual(ran, ["while-away"]);
    runner.stop();
    jobs.close();
    client.disconnect();
  });

  test("the Python-style facade end to end: createJobSubscription, sendJobsStartNext, sendJobsUpdate (the Python SDK's jobs sample)", { timeout: 30_000 }, async () => {
    const jobsClient = new AWSIoTMQTTThingJobsClientCore(host.moddablePlatform, "facade-jobs", "facade-jobs", 1);
    jobsClient.configureEndpoint("127.0.0.1", broker.port);
    jobsClient.configureCredentials(DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceKeyDer, DEV_PKI_FILES.deviceCertificateDer);
    stops.push(async () => {
      await jobsClient.disconnect();
    });
    assert.equal(await jobsClient.connect(60), true);
    await waitUntil(() => jobsClient.getMQTTConnection().getMQTTConnection()?.stateName === "online", 10_000, "the facade to be restored");
    const started: Record<string, unknown>[] = [];
    const updated: Record<string, unknown>[] = [];
    const parse = (message: { payload: Uint8Array }) => JSON.parse(Buffer.from(message.payload).toString()) as Record<string, unknown>;
    await jobsClient.createJobSubscription((_client, _userdata, message) => started.push(parse(message)), jobExecutionTopicType.JOB_START_NEXT_TOPIC, jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE);
    await jobsClient.createJobSubscription((_client, _userdata, message) => updated.push(parse(message)), jobExecutionTopicType.JOB_UPDATE_TOPIC, jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE, "+");
    emulator.service.createJob("py-job", { operation: "test" }, ["facade-jobs"]);
    assert.equal(await jobsClient.sendJobsStartNext({ StartedBy: "ClientToken: facade-jobs" }), true);
    await waitUntil(() => started.length === 1, 5000, "the start-next reply");
    const execution = started[0].execution as { jobId: string; versionNumber: number; executionNumber: number; jobDocument: unknown };
    assert.deepEqual([execution.jobId, execution.jobDocument, started[0].clientToken], ["py-job", { operation: "test" }, "facade-jobs"]);
    assert.equal(await jobsClient.sendJobsUpdate(execution.jobId, jobExecutionStatus.JOB_EXECUTION_SUCCEEDED, { HandledBy: "facade-jobs" }, execution.versionNumber, execution.executionNumber, true), true);
    await waitUntil(() => updated.length === 1, 5000, "the update reply");
    assert.deepEqual(updated[0].executionState, { status: "SUCCEEDED", statusDetails: { HandledBy: "facade-jobs" }, versionNumber: 3 });
    await jobsClient.disconnect();
  });
});

describe("the Shadow client against the emulator over the embedded broker (tools/broker.ts)", () => {
  let embedded: RunningBroker;
  before(async () => {
    embedded = await startBroker({ certificateDirectory: fixtures.pki });
    stops.push(() => embedded.stop());
  });

  test("shadow update and get round trips and a job run; the embedded broker lets the emulator publish on $aws/ topics", { timeout: 30_000 }, async () => {
    const emulator = await startAwsEmulator({ url: embedded.url, mqtt: peerTls, clientId: "aws-emulator-embedded" });
    emulators.push(emulator);
    const client = device(embedded.port, "embedded-shadow", {});
    const shadows = new ShadowClient(client);
    const thing = shadows.shadow("embedded-shadow", "settings");
    client.connect();
    await online(client);
    const update = await ask((done) => thing.update({ state: { reported: { intervalMs: 1000 } } }, done));
    assert.deepEqual([update.status, update.version], ["accepted", 1]);
    const document = await ask((done) => thing.get(done));
    assert.deepEqual((document.payload?.state as Record<string, unknown>).reported, { intervalMs: 1000 });
    // Jobs on the same connection.
    const jobs = new JobsClient(client, "embedded-shadow");
    const runner = new JobRunner(jobs, (_job, finish) => finish("SUCCEEDED", { via: "embedded" }));
    runner.start();
    emulator.service.createJob("embedded-job", { op: "report-status" }, ["embedded-shadow"]);
    await waitUntil(() => emulator.service.jobExecution("embedded-shadow", "embedded-job")?.status === "SUCCEEDED", 10_000, "the job run over the embedded broker");
    assert.equal(runner.stats.succeeded, 1);
    runner.stop();
    jobs.close();
    shadows.close();
    client.disconnect();
  });
});
