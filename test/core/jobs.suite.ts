// The Jobs client (modules/aws/jobs.ts), its JobRunner loop and the Python-style facade, on the
// scripted broker and the virtual clock: the service's replies are written by each test. Message
// shapes are those of AWS's Jobs MQTT API and notifications pages.
import { AWSIoTMQTTClientCore } from "../../modules/awsiot";
import { textOf } from "../../modules/aws/json";
import * as jobsModule from "../../modules/aws/jobs";
import * as jobsFacade from "../../modules/aws/jobs-facade";
import * as delegating from "../../modules/aws/delegating";
import { AWSIoTMQTTThingJobsClientCore, jobExecutionStatus, jobExecutionTopicReplyType, jobExecutionTopicType, jobTopic } from "../../modules/aws/jobs-facade";
import { type Job, type JobFinish, JobRunner, type JobRunnerOptions, JobsClient, type JobsClientOptions, type JobsReply, REPLY_STATUS_NAMES, type ReplyStatus, RUN_MARKER_KEY } from "../../modules/aws/jobs";
import type { ClientOptions } from "../../modules/client";
import { ErrorCode, type IoTLinkError, type Platform } from "../../modules/types";
import { deepEqual, equal, ok, test, throws } from "../harness";
import { fromUtf8 } from "../support/broker-codec";
import { ScriptedBroker } from "../support/scripted-broker";
import { connected, type Session, session } from "../support/session";
import { VirtualClock } from "../support/virtual-clock";

const PREFIX = "$aws/things/thing1/jobs/";

interface Outcome {
  status: string;
  operation: string;
  jobId: string;
  errorCode: string;
  payload: string;
}

interface Scene {
  s: Session;
  jobs: JobsClient;
  outcomes: Outcome[];
  record: (status: ReplyStatus, reply: JobsReply) => void;
  reply: (topic: string, document: unknown) => void;
  /** Requests the device published on `suffix` (after the thing's jobs prefix), parsed. */
  requests: (suffix: string) => Record<string, unknown>[];
  /** Every request the device published under the jobs prefix: "suffix payload". */
  log: () => string[];
  subscribed: () => string[];
}

function scene(options: Partial<ClientOptions> = {}, jobsOptions: JobsClientOptions = {}, online = true): Scene {
  const s = online ? connected(options) : session(options);
  const jobs = new JobsClient(s.client, "thing1", { clientTokenPrefix: "j", ...jobsOptions });
  const outcomes: Outcome[] = [];
  const published = () => s.broker.sent(3).filter((packet) => (packet.topic as string).startsWith(PREFIX));
  return {
    s,
    jobs,
    outcomes,
    record: (status, reply) => outcomes.push({ status: REPLY_STATUS_NAMES[status], operation: reply.operation, jobId: reply.jobId, errorCode: reply.errorCode, payload: textOf(reply.payload) }),
    reply: (topic, document) => {
      s.broker.publish(PREFIX + topic, JSON.stringify(document), 1);
      s.clock.settle();
    },
    requests: (suffix) => published().filter((packet) => packet.topic === PREFIX + suffix).map((packet) => JSON.parse(fromUtf8(packet.payload as Uint8Array)) as Record<string, unknown>),
    log: () => published().map((packet) => (packet.topic as string).slice(PREFIX.length) + " " + fromUtf8(packet.payload as Uint8Array)),
    subscribed: () => s.broker.sent(8).flatMap((packet) => packet.filters as string[]),
  };
}

test("jobs: the four requests, their payloads and topics; replies matched by token, with the job id and the error code", () => {
  const c = scene();
  c.jobs.getPending(c.record);
  c.jobs.startNext({ statusDetails: { startedBy: "device" }, stepTimeoutInMinutes: 5 }, c.record);
  c.jobs.describe("$next", { includeJobDocument: false }, c.record);
  c.jobs.update("job-7", "SUCCEEDED", { statusDetails: { result: "ok" }, expectedVersion: 2, executionNumber: 1, includeJobExecutionState: true }, c.record);
  c.s.clock.settle();
  deepEqual(c.subscribed(), ["get/+", "start-next/+", "+/get/+", "+/update/+"].map((filter) => PREFIX + filter), "each reply filter before its first request");
  deepEqual(c.log(), [
    'get {"clientToken":"j-1"}',
    'start-next {"statusDetails":{"startedBy":"device"},"stepTimeoutInMinutes":5,"clientToken":"j-2"}',
    '$next/get {"includeJobDocument":false,"clientToken":"j-3"}',
    'job-7/update {"status":"SUCCEEDED","statusDetails":{"result":"ok"},"expectedVersion":2,"executionNumber":1,"includeJobExecutionState":true,"clientToken":"j-4"}',
  ]);
  // Replies in another order, shaped as the Jobs MQTT API page shows them.
  c.reply("job-7/update/rejected", { code: "VersionMismatch", message: "x", clientToken: "j-4", timestamp: 1, executionState: { status: "IN_PROGRESS", versionNumber: 3 } });
  c.reply("$next/get/accepted", { execution: { jobId: "job-7", status: "IN_PROGRESS", versionNumber: 3, executionNumber: 1 }, timestamp: 1, clientToken: "j-3" });
  c.reply("start-next/accepted", { timestamp: 1489088524284, clientToken: "j-2" });
  c.reply("get/accepted", { inProgressJobs: [], queuedJobs: [], timestamp: 1489096425069, clientToken: "j-1" });
  deepEqual(c.outcomes.map((outcome) => [outcome.status, outcome.operation, outcome.jobId, outcome.errorCode]), [
    ["rejected", "update", "job-7", "VersionMismatch"],
    ["accepted", "describe", "$next", ""],
    ["accepted", "start-next", "", ""],
    ["accepted", "get", "", ""],
  ]);
  ok(c.outcomes[0].payload.indexOf('"executionState"') > 0);
  // A reply on another operation's topic with a known token is not taken for it.
  c.jobs.getPending(c.record);
  c.s.clock.settle();
  c.reply("start-next/accepted", { clientToken: "j-5" });
  equal(c.outcomes.length, 4);
});

test("jobs: replies that arrive without a subscription (AWS IoT Core sends them to the requester) are routed all the same", () => {
  const c = scene({}, { subscribeReplies: false });
  c.jobs.startNext({}, c.record);
  c.s.clock.settle();
  deepEqual(c.subscribed(), []);
  c.reply("start-next/accepted", { execution: { jobId: "a", status: "IN_PROGRESS", versionNumber: 2, executionNumber: 1 }, clientToken: "j-1", timestamp: 1 });
  deepEqual(c.outcomes.map((outcome) => outcome.status), ["accepted"]);
});

test("jobs: notify and notify-next reach their handlers; clearing one unsubscribes; other things' topics are ignored", () => {
  const c = scene();
  const seen: string[] = [];
  c.jobs.onNotify((message) => seen.push("notify " + textOf(message.payload)));
  c.jobs.onNotifyNext((message) => seen.push("next " + textOf(message.payload)));
  c.s.clock.settle();
  deepEqual(c.subscribed(), [PREFIX + "notify", PREFIX + "notify-next"]);
  c.reply("notify", { timestamp: 1517016948, jobs: { QUEUED: [{ jobId: "job1", queuedAt: 1517016947, lastUpdatedAt: 1517016947, executionNumber: 1, versionNumber: 1 }] } });
  c.reply("notify-next", { timestamp: 1517016948, execution: { jobId: "job1", status: "QUEUED", queuedAt: 1517016947, lastUpdatedAt: 1517016947, versionNumber: 1, executionNumber: 1, jobDocument: { operation: "test" } } });
  c.s.broker.publish("$aws/things/thing2/jobs/notify-next", "{}", 1);
  c.s.clock.settle();
  equal(seen.length, 2);
  ok(seen[1].indexOf('"jobDocument":{"operation":"test"}') > 0);
  c.jobs.onNotify(undefined);
  c.s.clock.settle();
  deepEqual(c.s.broker.sent(10).flatMap((packet) => packet.filters as string[]), [PREFIX + "notify"]);
});

test("jobs: arguments are checked at the call", () => {
  const c = scene();
  throws(() => c.jobs.update("bad/id", "SUCCEEDED"), "jobId must be");
  throws(() => c.jobs.update("$next", "SUCCEEDED"), "jobId must be");
  throws(() => c.jobs.update("j", "QUEUED"), "status must be one of IN_PROGRESS, FAILED, SUCCEEDED, REJECTED");
  throws(() => c.jobs.update("j", "FAILED", { statusDetails: { reason: 5 } as never }), "statusDetails.reason must be a text");
  throws(() => c.jobs.update("j", "FAILED", { statusDetails: { "bad key": "x" } }), "statusDetails key");
  throws(() => c.jobs.update("j", "FAILED", { expectedVersion: -1 }), "expectedVersion must be a whole number");
  throws(() => c.jobs.startNext({ stepTimeoutInMinutes: 0 }), "stepTimeoutInMinutes must be a whole number from 1 to 10080");
  throws(() => c.jobs.describe("j", { includeJobDocument: "yes" as never }), "includeJobDocument must be a boolean");
  throws(() => new JobsClient(c.s.client, "a/b"), "thingName must be");
  equal(c.jobs.pendingCount, 0);
  equal(c.s.broker.sent(3).length, 0);
});

// ------------------------------------------------------------------ JobRunner

interface Runner {
  c: Scene;
  runner: JobRunner;
  ran: Job[];
  events: string[];
  /** The finish of the job running now. */
  finish: JobFinish | undefined;
}

function runner(handler?: (job: Job, finish: JobFinish) => void, options: JobRunnerOptions = {}, clientOptions: Partial<ClientOptions> = {}): Runner {
  const c = scene(clientOptions);
  const made: Runner = { c, runner: undefined as unknown as JobRunner, ran: [], events: [], finish: undefined };
  made.runner = new JobRunner(
    c.jobs,
    (job, finish) => {
      made.ran.push(job);
      made.finish = finish;
      if (handler) handler(job, finish);
    },
    { onEvent: (event, jobId, detail) => made.events.push(event + " " + jobId + (detail ? " " + detail : "")), ...options },
  );
  return made;
}

/** The execution a start-next reply carries, marked by the request that started it. */
function execution(jobId: string, versionNumber: number, marker: string | undefined, document: unknown = { op: "set-interval", intervalMs: 2000 }): Record<string, unknown> {
  const details: Record<string, string> = {};
  if (marker !== undefined) details[RUN_MARKER_KEY] = marker;
  return { jobId, thingName: "thing1", status: "IN_PROGRESS", statusDetails: details, queuedAt: 1, startedAt: 2, lastUpdatedAt: 2, versionNumber, executionNumber: 1, jobDocument: document };
}

test("job runner: notify-next drives start-next; the job runs once and is reported SUCCEEDED with its version; then the next is asked for", () => {
  const r = runner((job, finish) => finish("SUCCEEDED", { appliedIntervalMs: String((job.document as { intervalMs: number }).intervalMs) }));
  r.runner.start();
  r.c.s.clock.settle();
  deepEqual(r.c.subscribed(), [PREFIX + "notify-next", PREFIX + "start-next/+"]);
  deepEqual(r.c.requests("start-next"), [{ statusDetails: { [RUN_MARKER_KEY]: "j-run-1" }, clientToken: "j-1" }]);
  r.c.reply("start-next/accepted", { timestamp: 1, clientToken: "j-1" });
  equal(r.runner.stateName, "idle", "no job pending");
  // A job is created: notify-next names it.
  r.c.reply("notify-next", { timestamp: 3, execution: { jobId: "job1", status: "QUEUED", queuedAt: 3, lastUpdatedAt: 3, versionNumber: 1, executionNumber: 1, jobDocument: { op: "set-interval", intervalMs: 2000 } } });
  equal(r.c.requests("start-next").length, 2);
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "j-run-2"), timestamp: 4, clientToken: "j-2" });
  equal(r.ran.length, 1);
  deepEqual(r.ran[0].document, { op: "set-interval", intervalMs: 2000 });
  deepEqual(r.c.requests("job1/update"), [{ status: "SUCCEEDED", statusDetails: { appliedIntervalMs: "2000" }, expectedVersion: 2, executionNumber: 1, clientToken: "j-3" }]);
  r.c.reply("job1/update/accepted", { timestamp: 5, clientToken: "j-3" });
  equal(r.c.requests("start-next").length, 3, "on to the next job");
  r.c.reply("start-next/accepted", { timestamp: 6, clientToken: "j-4" });
  deepEqual(r.events, ["started job1 execution 1, version 2", 'succeeded job1 {"appliedIntervalMs":"2000"}', "reported job1 SUCCEEDED"]);
  equal(r.runner.stats.succeeded, 1);
  equal(r.runner.stateName, "idle");
});

test("job runner: the next job is asked for on a timer turn of its own, never inside the reply or notification that prompted it (the device's stack)", () => {
  const r = runner((_job, finish) => finish("SUCCEEDED"));
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { timestamp: 1, clientToken: "j-1" });
  r.c.s.broker.publish(PREFIX + "notify-next", JSON.stringify({ timestamp: 3, execution: { jobId: "job1", status: "QUEUED", queuedAt: 3, lastUpdatedAt: 3, versionNumber: 1, executionNumber: 1, jobDocument: {} } }), 1);
  equal(r.c.requests("start-next").length, 1, "not inside the notification's delivery");
  r.c.s.clock.settle();
  equal(r.c.requests("start-next").length, 2, "on the next timer turn");
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "j-run-2"), timestamp: 4, clientToken: "j-2" });
  r.c.s.broker.publish(PREFIX + "job1/update/accepted", JSON.stringify({ timestamp: 5, clientToken: "j-3" }), 1);
  equal(r.c.requests("start-next").length, 2, "not inside the report's reply");
  r.c.s.clock.settle();
  equal(r.c.requests("start-next").length, 3);
});

test("job runner: a job update conflict (VersionMismatch) is re-read with describe and retried with the version read; the job ran once", () => {
  const r = runner((_job, finish) => finish("SUCCEEDED"));
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "j-run-1"), clientToken: "j-1" });
  equal(r.c.requests("job1/update")[0].expectedVersion, 2);
  // Something moved the execution on (its step timeout was reset, say): version 3 now.
  r.c.reply("job1/update/rejected", { code: "VersionMismatch", message: "The expected version 2 does not match", clientToken: "j-2", timestamp: 3, executionState: { status: "IN_PROGRESS", versionNumber: 3 } });
  deepEqual(r.c.requests("job1/get"), [{ executionNumber: 1, includeJobDocument: false, clientToken: "j-3" }]);
  r.c.reply("job1/get/accepted", { execution: { ...execution("job1", 3, "j-run-1"), jobDocument: undefined }, clientToken: "j-3" });
  deepEqual(r.c.requests("job1/update").map((request) => request.expectedVersion), [2, 3]);
  r.c.reply("job1/update/accepted", { clientToken: "j-4" });
  equal(r.ran.length, 1, "never run twice");
  equal(r.runner.stats.conflicts, 1);
  ok(r.events.indexOf("conflict job1 expected version 2 is stale: re-reading") >= 0, r.events.join(" | "));
  // A describe that finds the job terminal ends it, without another run or report.
  r.c.reply("start-next/accepted", { execution: execution("job2", 2, "j-run-2"), clientToken: "j-5" });
  r.c.reply("job2/update/rejected", { code: "VersionMismatch", message: "x", clientToken: "j-6" });
  r.c.reply("job2/get/rejected", { code: "TerminalStateReached", message: "x", clientToken: "j-7" });
  equal(r.c.requests("job2/update").length, 1);
  equal(r.ran.length, 2);
});

test("job runner: a report whose reply is lost is sent again (never the job run again), and an InvalidStateTransition ends it", () => {
  const r = runner((_job, finish) => finish("FAILED", { reason: "bad interval" }), { timeoutMs: 2000 });
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "j-run-1"), clientToken: "j-1" });
  equal(r.c.requests("job1/update").length, 1);
  r.c.s.clock.advance(2000); // the reply never came: sent again at once (online)
  equal(r.c.requests("job1/update").length, 2);
  r.c.reply("job1/update/rejected", { code: "InvalidStateTransition", message: "already FAILED", clientToken: "j-3", executionState: { status: "FAILED", versionNumber: 3 } });
  equal(r.c.requests("start-next").length, 2, "then on to the next job");
  equal(r.ran.length, 1);
  deepEqual(r.c.requests("job1/update")[1], { status: "FAILED", statusDetails: { reason: "bad interval" }, expectedVersion: 2, executionNumber: 1, clientToken: "j-3" });
});

test("job runner: a job this runner finished that comes back from start-next is reported again, not run again", () => {
  const r = runner((_job, finish) => finish("SUCCEEDED"));
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "j-run-1"), clientToken: "j-1" });
  r.c.reply("job1/update/accepted", { clientToken: "j-2" });
  // The service hands the same execution back (its report got lost on its side).
  r.c.reply("start-next/accepted", { execution: execution("job1", 3, "j-run-1"), clientToken: "j-3" });
  equal(r.ran.length, 1);
  deepEqual(r.c.requests("job1/update").map((request) => [request.status, request.expectedVersion]), [["SUCCEEDED", 2], ["SUCCEEDED", 3]]);
});

test("job runner: a job found IN_PROGRESS that this runner did not start (started before a restart) is reported FAILED, not run", () => {
  const r = runner();
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "old-boot-run-1"), clientToken: "j-1" });
  equal(r.ran.length, 0);
  deepEqual(r.c.requests("job1/update"), [{ status: "FAILED", statusDetails: { reason: "interrupted: found in progress after a restart; not run again" }, expectedVersion: 2, executionNumber: 1, clientToken: "j-2" }]);
  equal(r.runner.stats.interrupted, 1);
});

test("job runner: a start-next whose reply was lost: the job it started (with that request's marker) is run when it comes back", () => {
  const r = runner((_job, finish) => finish("SUCCEEDED"), { timeoutMs: 1000 });
  r.runner.start();
  r.c.s.clock.advance(1000);
  equal(r.runner.stateName, "idle");
  r.c.reply("notify-next", { timestamp: 1, execution: { jobId: "job1", status: "IN_PROGRESS", versionNumber: 2, executionNumber: 1 } });
  r.c.reply("start-next/accepted", { execution: execution("job1", 2, "j-run-1"), clientToken: "j-2" });
  equal(r.ran.length, 1, "started by this runner's first request: it never ran");
  equal(r.runner.stats.interrupted, 0);
});

test("job runner: a notify-next while a job runs is remembered; a finish later (asynchronous) reports; a throwing handler fails the job", () => {
  const r = runner((job, finish) => {
    if (job.jobId === "boom") throw new Error("no such operation");
  });
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { execution: execution("slow", 2, "j-run-1"), clientToken: "j-1" });
  equal(r.runner.stateName, "running");
  r.c.reply("notify-next", { timestamp: 1, execution: { jobId: "slow", status: "IN_PROGRESS", versionNumber: 2, executionNumber: 1 } });
  equal(r.c.requests("start-next").length, 1, "not while a job runs");
  (r.finish as JobFinish)("REJECTED", { reason: "unsupported" });
  (r.finish as JobFinish)("SUCCEEDED");
  deepEqual(r.c.requests("slow/update").map((request) => request.status), ["REJECTED"], "the first finish counts");
  r.c.reply("slow/update/accepted", { clientToken: "j-2" });
  r.c.reply("start-next/accepted", { execution: execution("boom", 2, "j-run-2"), clientToken: "j-3" });
  deepEqual(r.c.requests("boom/update")[0].statusDetails, { reason: "the handler threw: no such operation" });
  equal(r.runner.stats.rejected, 1);
  equal(r.runner.stats.failed, 1);
});

test("job runner: after a reconnect it asks for the next job again; stop() takes no further job", () => {
  const r = runner((_job, finish) => finish("SUCCEEDED"), {}, { backoff: { baseMs: 1000, maxMs: 8000, stableMs: 20000 } });
  r.runner.start();
  r.c.s.clock.settle();
  r.c.reply("start-next/accepted", { clientToken: "j-1" });
  r.c.s.broker.drop();
  r.c.s.clock.advance(1000);
  equal(r.c.requests("start-next").length, 2, "asked again once restored");
  r.c.reply("start-next/accepted", { clientToken: "j-2" });
  r.runner.stop();
  equal(r.runner.stateName, "stopped");
  r.c.reply("notify-next", { timestamp: 1, execution: { jobId: "x", status: "QUEUED", versionNumber: 1, executionNumber: 1 } });
  equal(r.c.requests("start-next").length, 2);
  throws(() => new JobRunner(r.c.jobs, "x" as never), "the handler must be a function");
  const again = new JobRunner(r.c.jobs, () => {});
  again.start();
  throws(() => new JobRunner(r.c.jobs, () => {}), "has a JobRunner already");
});

test("jobs: every table the jobs modules export is frozen (they are preloaded into flash)", () => {
  const unfrozen: string[] = [];
  for (const [name, exports] of Object.entries({ jobsModule, jobsFacade, delegating } as Record<string, object>)) {
    for (const key of Object.keys(exports)) {
      const value = (exports as Record<string, unknown>)[key];
      if (typeof value !== "object" || value === null || /^[A-Z][A-Za-z0-9]*[a-z][A-Za-z0-9]*$/.test(key)) continue;
      if (!Object.isFrozen(value)) unfrozen.push(name + "." + key);
    }
  }
  equal(unfrozen.join(", "), "");
});

// ------------------------------------------------------------------ the Python-style facade

function facade(QoS = 0): { jobsClient: AWSIoTMQTTThingJobsClientCore; broker: ScriptedBroker; clock: VirtualClock } {
  const clock = new VirtualClock();
  const broker = new ScriptedBroker(clock);
  const platform: Platform = { createClock: () => clock, createTransport: () => broker };
  const jobsClient = new AWSIoTMQTTThingJobsClientCore(platform, "client-9", "thing1", QoS);
  jobsClient.configureEndpoint("example-ats.iot.eu-west-1.amazonaws.com", 8883);
  jobsClient.configureCredentials("AmazonRootCA1.der", "device.key.der", "device.crt.der");
  return { jobsClient, broker, clock };
}

test("jobs facade: topics as the Python SDK's thingJobManager builds them, and the combinations it refuses", () => {
  const T = jobExecutionTopicType;
  const R = jobExecutionTopicReplyType;
  equal(jobTopic("thing1", T.JOB_NOTIFY_NEXT_TOPIC), PREFIX + "notify-next");
  equal(jobTopic("thing1", T.JOB_START_NEXT_TOPIC, R.JOB_ACCEPTED_REPLY_TYPE), PREFIX + "start-next/accepted");
  equal(jobTopic("thing1", T.JOB_UPDATE_TOPIC, R.JOB_REJECTED_REPLY_TYPE, "+"), PREFIX + "+/update/rejected");
  equal(jobTopic("thing1", T.JOB_DESCRIBE_TOPIC, R.JOB_WILDCARD_REPLY_TYPE, "$next"), PREFIX + "$next/get/#");
  equal(jobTopic("thing1", T.JOB_GET_PENDING_TOPIC), PREFIX + "get");
  equal(jobTopic("thing1", T.JOB_WILDCARD_TOPIC), PREFIX + "#");
  equal(jobTopic("thing1", T.JOB_NOTIFY_TOPIC, R.JOB_ACCEPTED_REPLY_TYPE), undefined, "a notification has no reply");
  equal(jobTopic("thing1", T.JOB_UPDATE_TOPIC), undefined, "an update needs a job id");
  equal(jobTopic("thing1", T.JOB_START_NEXT_TOPIC, R.JOB_REQUEST_TYPE, "j"), undefined, "start-next takes no job id");
  equal(jobTopic("thing1", T.JOB_UNRECOGNIZED_TOPIC), undefined);
  equal(jobExecutionStatus.JOB_EXECUTION_SUCCEEDED, "SUCCEEDED");
});

test("jobs facade: the Python sample's loop: subscriptions, start-next, update with the Python payloads; replies reach the callbacks", async () => {
  const { jobsClient, broker, clock } = facade(1);
  const messages: string[] = [];
  const record = (_client: unknown, _userdata: unknown, message: { topic: string; payload: Uint8Array }) => messages.push(message.topic.slice(PREFIX.length) + " " + fromUtf8(message.payload));
  throws(() => jobsClient.createJobSubscriptionAsync(undefined, record, jobExecutionTopicType.JOB_NOTIFY_NEXT_TOPIC), "call connect() or connectAsync() first");
  const connecting = jobsClient.connect();
  clock.settle();
  await connecting;
  equal(typeof jobsClient.createJobSubscriptionAsync(undefined, record, jobExecutionTopicType.JOB_NOTIFY_NEXT_TOPIC), "number");
  const subscriptions = [
    jobsClient.createJobSubscription(record, jobExecutionTopicType.JOB_START_NEXT_TOPIC, jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE),
    jobsClient.createJobSubscription(record, jobExecutionTopicType.JOB_UPDATE_TOPIC, jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE, "+"),
  ];
  clock.settle();
  deepEqual(await Promise.all(subscriptions), [true, true]);
  deepEqual(broker.sent(8).flatMap((packet) => packet.filters as string[]), [PREFIX + "notify-next", PREFIX + "start-next/accepted", PREFIX + "+/update/accepted"]);
  const sent = [
    jobsClient.sendJobsStartNext({ StartedBy: "ClientToken: client-9" }),
    jobsClient.sendJobsUpdate("job1", jobExecutionStatus.JOB_EXECUTION_SUCCEEDED, { HandledBy: "x" }, 1, 2, true, false),
    jobsClient.sendJobsDescribe("$next"),
    jobsClient.sendJobsQuery(jobExecutionTopicType.JOB_GET_PENDING_TOPIC),
  ];
  clock.settle();
  deepEqual(await Promise.all(sent), [true, true, true, true], "PUBACKed (QoS 1)");
  // The payloads thingJobManager serializes (expectedVersion and executionNumber as texts in an update).
  deepEqual(broker.sent(3).map((packet) => (packet.topic as string).slice(PREFIX.length) + " " + fromUtf8(packet.payload as Uint8Array)), [
    'start-next {"clientToken":"client-9","statusDetails":{"StartedBy":"ClientToken: client-9"}}',
    'job1/update {"status":"SUCCEEDED","statusDetails":{"HandledBy":"x"},"expectedVersion":"1","executionNumber":"2","includeJobExecutionState":true,"clientToken":"client-9"}',
    '$next/get {"includeJobDocument":true,"clientToken":"client-9"}',
    'get {"clientToken":"client-9"}',
  ]);
  broker.publish(PREFIX + "start-next/accepted", JSON.stringify({ execution: { jobId: "job1" }, clientToken: "client-9" }), 1);
  broker.publish(PREFIX + "job1/update/accepted", JSON.stringify({ clientToken: "client-9" }), 1);
  broker.publish(PREFIX + "notify-next", JSON.stringify({ timestamp: 1 }), 1);
  // A reply on a topic no subscription covers reaches no callback.
  broker.publish(PREFIX + "get/accepted", JSON.stringify({ clientToken: "client-9" }), 1);
  clock.settle();
  deepEqual(messages.map((message) => message.split(" ")[0]), ["start-next/accepted", "job1/update/accepted", "notify-next"]);
  throws(() => jobsClient.sendJobsUpdate("job1", "DONE"), "status must be a jobExecutionStatus");
  throws(() => jobsClient.sendJobsQuery(jobExecutionTopicType.JOB_UPDATE_TOPIC), "no jobs topic");
  ok(jobsClient.getJobsClient() instanceof JobsClient);
});

test("jobs facade: a reply AWS IoT Core sends without a subscription (here: the broker refused it) still reaches the callback whose filter matches", async () => {
  const { jobsClient, broker, clock } = facade();
  const connecting = jobsClient.connect();
  clock.settle();
  await connecting;
  const errors: IoTLinkError[] = [];
  jobsClient.onError = (error) => errors.push(error);
  broker.refusedFilters = [PREFIX + "start-next/accepted"];
  const seen: string[] = [];
  const subscribed = jobsClient.createJobSubscription((_client, _userdata, message) => seen.push(message.topic), jobExecutionTopicType.JOB_START_NEXT_TOPIC, jobExecutionTopicReplyType.JOB_ACCEPTED_REPLY_TYPE);
  clock.settle();
  let refused = "";
  await subscribed.catch((error: IoTLinkError) => {
    refused = error.code;
  });
  equal(refused, ErrorCode.SubscriptionRefused);
  broker.publish(PREFIX + "start-next/accepted", JSON.stringify({ clientToken: "client-9" }), 0);
  clock.settle();
  deepEqual(seen, [PREFIX + "start-next/accepted"]);
  // On a shared connection, JobsClient and JobRunner run beside the Python API.
  const shared = new AWSIoTMQTTThingJobsClientCore(undefined, "other", "thing1", 0, 4, false, true, jobsClient.getMQTTConnection());
  ok(shared.getMQTTConnection() instanceof AWSIoTMQTTClientCore);
});
