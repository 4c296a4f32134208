// The AWS IoT Jobs client for one thing, over MqttClient's public API: GetPendingJobExecutions,
// StartNextPendingJobExecution, DescribeJobExecution and UpdateJobExecution, each with a client
// token, a deadline on the client's timer and a callback with a status (as ShadowClient's); the
// notify and notify-next notifications; and JobRunner, the loop most devices need: take the next
// job, report it IN_PROGRESS, run it through a function of the app's, report SUCCEEDED or FAILED,
// re-read and retry when the update meets a newer version, and never run a job twice.
//
// AWS IoT Core sends a Jobs reply to the client that asked even without a subscription: replies are
// routed from every inbound message, subscribed or not. With another broker (the emulator of
// tools/aws-emulator.ts behind Mosquitto), the client subscribes to the reply topics, which is the
// default (`subscribeReplies`).

import type { InboundMessage, MqttClient } from "../client";
import { topicFilterProblem, topicMatches } from "../topic";
import { ErrorCode, invalid, IoTLinkError, isWordOf, shown, wholeNumber } from "../types";
import { hasAt, indexOfCode, isRest, Needs, parsePayload } from "./json";
import { checkTimeout, EMPTY_PAYLOAD, type LayerOptions, REPLY_STATUS_NAMES, ReplyLayer, ReplyStatus } from "./requests";

export { REPLY_STATUS_NAMES, ReplyStatus } from "./requests";

export const enum JobsOperation {
  GetPending = 0,
  StartNext = 1,
  Describe = 2,
  Update = 3,
}

export const JOBS_OPERATION_NAMES: readonly string[] = Object.freeze(["get", "start-next", "describe", "update"]);

/** The statuses a device may set with an update. */
export const JOB_DEVICE_STATUSES: readonly string[] = Object.freeze(["IN_PROGRESS", "FAILED", "SUCCEEDED", "REJECTED"]);

/** What a request's callback is given: one object, reused; read it during the call. */
export interface JobsReply {
  readonly jobs: JobsClient;
  /** "get", "start-next", "describe" or "update". */
  readonly operation: string;
  readonly requestId: number;
  /** The job id of a describe or an update ("" for get and start-next). */
  readonly jobId: string;
  /** The reply document, a view valid during the callback only; empty for a timeout or a drop. */
  readonly payload: Uint8Array;
  /** A rejection's code (VersionMismatch, InvalidStateTransition, ResourceNotFound...); "" otherwise. */
  readonly errorCode: string;
}

export type JobsCallback = (status: ReplyStatus, reply: JobsReply) => void;

/** A notification (notify or notify-next), or a message for a topic listener: the payload is valid during the call only. */
export type JobsMessageHandler = (message: InboundMessage) => void;

export interface JobsClientOptions extends LayerOptions {
  /** Subscribe to the reply topics (AWS IoT Core sends replies unasked; other brokers do not). Default true. */
  subscribeReplies?: boolean;
  /** Topic listeners (listen()) at once; default 8. */
  maxListeners?: number;
}

export interface StartNextOptions {
  statusDetails?: Record<string, string>;
  stepTimeoutInMinutes?: number;
}

export interface DescribeOptions {
  executionNumber?: number;
  /** Default true. */
  includeJobDocument?: boolean;
}

export interface UpdateOptions {
  statusDetails?: Record<string, string>;
  /** The execution's versionNumber the update is meant for: a newer one is a VersionMismatch rejection. */
  expectedVersion?: number;
  executionNumber?: number;
  includeJobExecutionState?: boolean;
  includeJobDocument?: boolean;
  stepTimeoutInMinutes?: number;
}

// The reply filters, by JobsOperation, then the notifications: the filter slots they take, in this order.
const REPLY_FILTERS: readonly string[] = Object.freeze(["get/+", "start-next/+", "+/get/+", "+/update/+", "notify", "notify-next"]);
const NOTIFY = 4;
const NOTIFY_NEXT = 5;
const charCodeAt = String.prototype.charCodeAt;

function checkJobId(jobId: unknown, nextAllowed: boolean): string {
  if (typeof jobId === "string" && (isWordOf(jobId, 1, 64, "_-") || (nextAllowed && jobId === "$next"))) return jobId;
  throw invalid("jobId must be 1 to 64 of A-Z a-z 0-9 _ -" + (nextAllowed ? " (or $next)" : "") + ", got " + shown(jobId));
}

/** statusDetails as JSON: an object of texts (AWS: keys of A-Z a-z 0-9 : _ -, values 1 to 1024 characters). */
function detailsJson(details: unknown): string {
  if (details === null || typeof details !== "object" || Array.isArray(details)) throw invalid("statusDetails must be an object of texts, got " + shown(details));
  for (const key in details) {
    const value = (details as Record<string, unknown>)[key];
    if (!isWordOf(key, 1, 128, ":_-")) throw invalid("statusDetails key " + shown(key) + " must be 1 to 128 of A-Z a-z 0-9 : _ -");
    if (typeof value !== "string" || value.length === 0 || value.length > 1024) throw invalid("statusDetails." + key + " must be a text of 1 to 1024 characters, got " + shown(value));
  }
  return JSON.stringify(details);
}

function stepTimeout(value: unknown): number {
  return wholeNumber("stepTimeoutInMinutes", value, 1, 10080);
}

export class JobsClient extends ReplyLayer {
  readonly thingName: string;
  /** "$aws/things/<thing>/jobs/". */
  readonly topicPrefix: string;
  private readonly prefixLength: number;
  private readonly subscribeReplies: boolean;
  private readonly tokenBuffer: Uint8Array;
  private readonly requestTopics: string[];
  private notifyHandler: JobsMessageHandler | undefined;
  private notifyNextHandler: JobsMessageHandler | undefined;
  private readonly listenFilter: (string | undefined)[];
  private readonly listenHandler: (JobsMessageHandler | undefined)[];
  /** @internal The runner driven by this client's notify-next and restores. */
  runner: JobRunner | undefined;
  /** The runner asked to look for its next job at the next timer turn (wakeRunner). */
  private runnerDue = false;
  private readonly reply = { jobs: undefined as unknown as JobsClient, operation: "", requestId: 0, jobId: "", payload: EMPTY_PAYLOAD, errorCode: "" };
  private replyJobId = "";

  constructor(client: MqttClient, thingName: string, options: JobsClientOptions = {}) {
    if (options === null || typeof options !== "object") throw invalid("options must be an object, got " + shown(options));
    const maxListeners = wholeNumber("maxListeners", options.maxListeners ?? 8, 0, 64);
    super(client, options, REPLY_FILTERS.length);
    if (typeof thingName !== "string" || !isWordOf(thingName, 1, 128, ":_-")) throw invalid("thingName must be 1 to 128 of A-Z a-z 0-9 : _ -, got " + shown(thingName));
    if (options.subscribeReplies !== undefined && typeof options.subscribeReplies !== "boolean") throw invalid("subscribeReplies must be a boolean");
    this.thingName = thingName;
    this.topicPrefix = "$aws/things/" + thingName + "/jobs/";
    this.prefixLength = this.topicPrefix.length;
    this.subscribeReplies = options.subscribeReplies ?? true;
    // Filter slot k is REPLY_FILTERS[k]: the first ones taken.
    for (let k = 0; k < REPLY_FILTERS.length; k++) this.filterSlot(this.topicPrefix + REPLY_FILTERS[k]);
    this.tokenBuffer = new Uint8Array(16 + this.tokenBytes + 4);
    this.requestTopics = [this.topicPrefix + "get", this.topicPrefix + "start-next"];
    this.listenFilter = new Array(maxListeners).fill(undefined);
    this.listenHandler = new Array(maxListeners).fill(undefined);
  }

  /** GetPendingJobExecutions: the accepted reply lists inProgressJobs and queuedJobs. */
  getPending(onReply?: JobsCallback, timeoutMs?: number): number {
    const timeout = this.begin(onReply, timeoutMs, JobsOperation.GetPending);
    const id = this.nextRequestId();
    const length = this.writeTokenDocument(this.tokenBuffer, id);
    this.send(id, 0, JobsOperation.GetPending, onReply as never, timeout, this.requestTopics[0], this.tokenBuffer.subarray(0, length));
    return id;
  }

  /** StartNextPendingJobExecution: the next pending execution, moved to IN_PROGRESS (the reply has no `execution` when none is pending). */
  startNext(options: StartNextOptions = {}, onReply?: JobsCallback, timeoutMs?: number): number {
    const timeout = this.begin(onReply, timeoutMs, JobsOperation.StartNext);
    let body = "{";
    if (options.statusDetails !== undefined) body += "\"statusDetails\":" + detailsJson(options.statusDetails) + ",";
    if (options.stepTimeoutInMinutes !== undefined) body += "\"stepTimeoutInMinutes\":" + stepTimeout(options.stepTimeoutInMinutes) + ",";
    const id = this.nextRequestId();
    this.send(id, 0, JobsOperation.StartNext, onReply as never, timeout, this.requestTopics[1], body + "\"clientToken\":\"" + this.tokenOf(id) + "\"}");
    return id;
  }

  /** DescribeJobExecution of `jobId` (or "$next"). */
  describe(jobId: string, options: DescribeOptions = {}, onReply?: JobsCallback, timeoutMs?: number): number {
    checkJobId(jobId, true);
    const timeout = this.begin(onReply, timeoutMs, JobsOperation.Describe);
    let body = "{";
    if (options.executionNumber !== undefined) body += "\"executionNumber\":" + wholeNumber("executionNumber", options.executionNumber, 1, Number.MAX_SAFE_INTEGER) + ",";
    if (options.includeJobDocument !== undefined) {
      if (typeof options.includeJobDocument !== "boolean") throw invalid("includeJobDocument must be a boolean");
      body += "\"includeJobDocument\":" + options.includeJobDocument + ",";
    }
    const id = this.nextRequestId();
    this.send(id, 0, JobsOperation.Describe, onReply as never, timeout, this.topicPrefix + jobId + "/get", body + "\"clientToken\":\"" + this.tokenOf(id) + "\"}");
    return id;
  }

  /** UpdateJobExecution: sets `status` (IN_PROGRESS, SUCCEEDED, FAILED or REJECTED). */
  update(jobId: string, status: string, options: UpdateOptions = {}, onReply?: JobsCallback, timeoutMs?: number): number {
    checkJobId(jobId, false);
    if (JOB_DEVICE_STATUSES.indexOf(status) < 0) throw invalid("status must be one of " + JOB_DEVICE_STATUSES.join(", ") + ", got " + shown(status));
    const timeout = this.begin(onReply, timeoutMs, JobsOperation.Update);
    let body = "{\"status\":\"" + status + "\",";
    if (options.statusDetails !== undefined) body += "\"statusDetails\":" + detailsJson(options.statusDetails) + ",";
    if (options.expectedVersion !== undefined) body += "\"expectedVersion\":" + wholeNumber("expectedVersion", options.expectedVersion, 0, Number.MAX_SAFE_INTEGER) + ",";
    if (options.executionNumber !== undefined) body += "\"executionNumber\":" + wholeNumber("executionNumber", options.executionNumber, 1, Number.MAX_SAFE_INTEGER) + ",";
    for (const flag of ["includeJobExecutionState", "includeJobDocument"] as const) {
      const value = options[flag];
      if (value === undefined) continue;
      if (typeof value !== "boolean") throw invalid(flag + " must be a boolean");
      body += "\"" + flag + "\":" + value + ",";
    }
    if (options.stepTimeoutInMinutes !== undefined) body += "\"stepTimeoutInMinutes\":" + stepTimeout(options.stepTimeoutInMinutes) + ",";
    const id = this.nextRequestId();
    this.send(id, 0, JobsOperation.Update, onReply as never, timeout, this.topicPrefix + jobId + "/update", body + "\"clientToken\":\"" + this.tokenOf(id) + "\"}");
    return id;
  }

  /** Sets (or clears) the handler of notify: the list of pending executions changed. */
  onNotify(handler: JobsMessageHandler | undefined): void {
    this.notifyHandler = this.notification(NOTIFY, handler, false);
  }

  /** Sets (or clears) the handler of notify-next: the next pending execution changed. */
  onNotifyNext(handler: JobsMessageHandler | undefined): void {
    this.notifyNextHandler = this.notification(NOTIFY_NEXT, handler, this.runner !== undefined);
  }

  /**
   * Hands every inbound message on a topic of this thing's jobs that `filter` matches to `handler`
   * (for the Python-style createJobSubscription), subscribed or not. Subscribing is the caller's.
   */
  listen(filter: string, handler: JobsMessageHandler): void {
    const problem = topicFilterProblem(filter);
    if (problem !== "") throw invalid(problem);
    if (typeof handler !== "function") throw invalid("a handler must be a function, got " + shown(handler));
    let slot = this.listenFilter.indexOf(filter);
    if (slot < 0) slot = this.listenFilter.indexOf(undefined);
    if (slot < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "this JobsClient has " + this.listenFilter.length + " topic listeners already (maxListeners)");
    this.listenFilter[slot] = filter;
    this.listenHandler[slot] = handler;
  }

  unlisten(filter: string): void {
    const slot = this.listenFilter.indexOf(filter);
    if (slot < 0) return;
    this.listenFilter[slot] = undefined;
    this.listenHandler[slot] = undefined;
  }

  /** @internal The runner's interest in notify-next (kept while the user's handler is cleared). */
  runnerAttached(attached: boolean): void {
    if (attached || this.notifyNextHandler !== undefined) this.wantFilter(NOTIFY_NEXT, false);
    else this.unwantFilter(NOTIFY_NEXT);
  }

  private notification(kind: number, handler: JobsMessageHandler | undefined, keep: boolean): JobsMessageHandler | undefined {
    if (handler !== undefined && typeof handler !== "function") throw invalid("a handler must be a function, got " + shown(handler));
    if (handler !== undefined) this.wantFilter(kind, false);
    else if (!keep) this.unwantFilter(kind);
    return handler;
  }

  /** The checks every request makes, and its deadline. */
  private begin(onReply: JobsCallback | undefined, timeoutMs: number | undefined, operation: JobsOperation): number {
    if (onReply !== undefined && typeof onReply !== "function") throw invalid("onReply must be a function, got " + shown(onReply));
    const timeout = timeoutMs === undefined ? this.timeoutMs : checkTimeout("timeoutMs", timeoutMs);
    this.checkRoom();
    if (this.subscribeReplies) this.wantFilter(operation, true);
    return timeout;
  }

  // ---------------------------------------------------------------- replies

  protected route(message: InboundMessage): void {
    const topic = message.topic;
    if (charCodeAt.call(topic, 0) !== 0x24 || !hasAt(topic, this.topicPrefix, 0)) return;
    const listeners = this.listenFilter;
    for (let i = 0; i < listeners.length; i++) {
      const filter = listeners[i];
      if (filter !== undefined && topicMatches(filter, topic)) this.call(this.listenHandler[i] as never, message, undefined, undefined);
    }
    const at = this.prefixLength;
    const payload = message.payload;
    if (isRest(topic, "notify", at, 6)) {
      if (this.notifyHandler) this.call(this.notifyHandler as never, message, undefined, undefined);
      return;
    }
    if (isRest(topic, "notify-next", at, 11)) {
      if (this.notifyNextHandler) this.call(this.notifyNextHandler as never, message, undefined, undefined);
      if (this.runner) this.runner.notified(payload);
      return;
    }
    let operation: JobsOperation;
    let rest: number;
    this.replyJobId = "";
    if (hasAt(topic, "get/", at)) {
      operation = JobsOperation.GetPending;
      rest = at + 4;
    } else if (hasAt(topic, "start-next/", at)) {
      operation = JobsOperation.StartNext;
      rest = at + 11;
    } else {
      const slash = indexOfCode(topic, 0x2f, at);
      if (slash < 0) return;
      if (hasAt(topic, "/get/", slash)) {
        operation = JobsOperation.Describe;
        rest = slash + 5;
      } else if (hasAt(topic, "/update/", slash)) {
        operation = JobsOperation.Update;
        rest = slash + 8;
      } else return;
      this.replyJobId = topic.substring(at, slash);
    }
    const rejected = isRest(topic, "rejected", rest, 8);
    if (!rejected && !isRest(topic, "accepted", rest, 8)) return;
    this.fields.scan(payload, rejected ? Needs.Token | Needs.Code : Needs.Token);
    const slot = this.matchReply(payload, 0, operation);
    if (slot >= 0) this.complete(slot, rejected ? ReplyStatus.Rejected : ReplyStatus.Accepted, payload);
  }

  protected report(slot: number, status: ReplyStatus, payload: Uint8Array, callback: (...args: never[]) => void): void {
    const reply = this.reply;
    reply.jobs = this;
    reply.operation = JOBS_OPERATION_NAMES[this.operationOf(slot)];
    reply.requestId = this.requestIdOf(slot);
    reply.jobId = status === ReplyStatus.Accepted || status === ReplyStatus.Rejected ? this.replyJobId : "";
    reply.payload = payload;
    reply.errorCode = status === ReplyStatus.Rejected ? this.fields.codeText(payload) : "";
    this.call(callback as never, status, reply, undefined);
  }

  protected override afterRestored(): void {
    if (this.runner) this.wakeRunner();
  }

  /**
   * @internal The runner looks for its next job on a timer turn of its own, not inside the reply,
   * notification or restore that asked for it: a request made there would sit on top of the read's
   * stack (an ESP32's 384 slots overflowed when a job report's reply asked for the next job).
   */
  wakeRunner(): void {
    this.runnerDue = true;
    this.client.reschedule();
  }

  override nextDeadline(now: number): number {
    return this.runnerDue ? 0 : super.nextDeadline(now);
  }

  override onDeadline(now: number): void {
    super.onDeadline(now);
    if (!this.runnerDue) return;
    this.runnerDue = false;
    if (this.runner) this.runner.wake();
  }
}

// ------------------------------------------------------------------ the job loop

/** A job as JobRunner hands it to the app. */
export interface Job {
  readonly jobId: string;
  readonly executionNumber: number;
  readonly versionNumber: number;
  /** The job document, parsed. */
  readonly document: unknown;
  readonly statusDetails: Record<string, string> | undefined;
}

export type JobOutcome = "SUCCEEDED" | "FAILED" | "REJECTED";

/** Called once by the app when the job is done (REJECTED: the device will not run jobs of this kind). */
export type JobFinish = (status: JobOutcome, statusDetails?: Record<string, string>) => void;

/** Runs a job: call `finish` once, now or later. A handler that throws finishes the job FAILED. */
export type JobHandler = (job: Job, finish: JobFinish) => void;

/** What the runner did, for a log: started, succeeded, failed, rejected, interrupted, conflict, reported, gave-up, error. */
export type JobRunnerEvent = (event: string, jobId: string, detail: string) => void;

export interface JobRunnerOptions {
  /** A step timeout for each job started (minutes; AWS times the execution out if it is not finished by then). */
  stepTimeoutInMinutes?: number;
  /** Version conflicts re-read and retried before the runner gives a report up (default 3). */
  maxConflicts?: number;
  /** The deadline of each request (ms); default the JobsClient's. */
  timeoutMs?: number;
  onEvent?: JobRunnerEvent;
}

export interface JobRunnerStats {
  started: number;
  succeeded: number;
  failed: number;
  rejected: number;
  /** Executions found IN_PROGRESS that this runner had not started (a restart while running): reported FAILED, not run again. */
  interrupted: number;
  /** VersionMismatch rejections re-read and retried. */
  conflicts: number;
}

const enum RunnerState {
  Stopped = 0,
  Idle = 1,
  Starting = 2,
  Running = 3,
  Reporting = 4,
  Rereading = 5,
}

/** Outcomes remembered (jobs finished on this boot), so an execution handed back again is reported, not run again. */
const REMEMBERED = 8;
/** statusDetails key that names the start-next request which moved an execution to IN_PROGRESS. */
export const RUN_MARKER_KEY = "iotlinkRun";

/**
 * The job loop: on start(), on every notify-next that names a job, after each reconnect, and after
 * each job, it asks start-next for the next job (which moves it to IN_PROGRESS, marked with the
 * request's own marker in statusDetails), runs it through `handler`, and reports the outcome with the
 * execution's version as expectedVersion. A VersionMismatch is re-read (describe) and retried with
 * the version read; a job found already terminal is left as it is. A job is never run twice: one
 * this runner finished is only reported again, and one found IN_PROGRESS without this runner's
 * marker (it was started before a restart) is reported FAILED rather than run again.
 */
export class JobRunner {
  readonly stats: JobRunnerStats = { started: 0, succeeded: 0, failed: 0, rejected: 0, interrupted: 0, conflicts: 0 };
  private state = RunnerState.Stopped;
  /** stop() was called: no further job is taken; a report still due is sent. */
  private stopping = false;
  /** A trigger came while busy: ask for the next job once idle. */
  private again = false;
  /** The report of the current job could not be delivered yet: sent again at the next trigger. */
  private reportDue = false;
  private jobId = "";
  private executionNumber = 0;
  private versionNumber = 0;
  private outcome: JobOutcome = "FAILED";
  private outcomeDetails: Record<string, string> | undefined;
  private conflicts = 0;
  private runs = 0;
  private marker = "";
  /** Markers of start-next requests that got no reply (their job may have been started for us). */
  private readonly lostMarkers: string[] = new Array(REMEMBERED).fill("");
  private lostAt = 0;
  /** Jobs finished on this boot: "<jobId>#<executionNumber>", with the outcome. */
  private readonly finishedKey: string[] = new Array(REMEMBERED).fill("");
  private readonly finishedOutcome: JobOutcome[] = new Array(REMEMBERED).fill("FAILED");
  private readonly finishedDetails: (Record<string, string> | undefined)[] = new Array(REMEMBERED).fill(undefined);
  private finishedAt = 0;
  private readonly maxConflicts: number;
  private readonly timeoutMs: number | undefined;
  private readonly stepTimeoutInMinutes: number | undefined;
  private readonly onEvent: JobRunnerEvent | undefined;
  /**
   * The callback of every request the runner makes: one closure rather than one per kind of request.
   * The runner has one request out at a time, and its state says which (starting: start-next,
   * reporting: update, rereading: describe) until the reply or the timeout comes.
   */
  private readonly onReply: JobsCallback = (status, reply) => this.replied(status, reply);

  constructor(
    readonly jobs: JobsClient,
    private readonly handler: JobHandler,
    options: JobRunnerOptions = {},
  ) {
    if (!(jobs instanceof JobsClient)) throw invalid("the first argument must be a JobsClient, got " + shown(jobs));
    if (typeof handler !== "function") throw invalid("the handler must be a function, got " + shown(handler));
    if (jobs.runner !== undefined) throw new IoTLinkError(ErrorCode.NotAccepted, "this JobsClient has a JobRunner already");
    this.maxConflicts = wholeNumber("maxConflicts", options.maxConflicts ?? 3, 0, 100);
    this.timeoutMs = options.timeoutMs === undefined ? undefined : checkTimeout("timeoutMs", options.timeoutMs);
    this.stepTimeoutInMinutes = options.stepTimeoutInMinutes === undefined ? undefined : stepTimeout(options.stepTimeoutInMinutes);
    if (options.onEvent !== undefined && typeof options.onEvent !== "function") throw invalid("onEvent must be a function");
    this.onEvent = options.onEvent;
  }

  /** "stopped", "idle", "starting", "running", "reporting" or "rereading". */
  get stateName(): string {
    return RUNNER_STATE_NAMES[this.state];
  }

  /** Subscribes to notify-next and asks for the next job (now, or queued while offline). */
  start(): void {
    if (this.state !== RunnerState.Stopped) return;
    this.jobs.runner = this;
    this.jobs.runnerAttached(true);
    this.state = RunnerState.Idle;
    this.trigger();
  }

  /** Stops taking jobs. A job running finishes and is reported; no further one is taken. */
  stop(): void {
    if (this.state === RunnerState.Stopped) return;
    this.jobs.runnerAttached(false);
    this.again = false;
    this.stopping = true;
    if (this.state === RunnerState.Idle && !this.reportDue) this.halt();
  }

  /** @internal notify-next: a job is next (or none is). */
  notified(payload: Uint8Array): void {
    const message = parsePayload(payload) as { execution?: unknown } | undefined;
    if (message && message.execution !== undefined) this.jobs.wakeRunner();
  }

  /** @internal The timer turn wakeRunner() asked for: the next job (or a report still due) is asked for now. */
  wake(): void {
    this.trigger();
  }

  private event(name: string, jobId: string, detail: string): void {
    if (this.onEvent) this.onEvent(name, jobId, detail);
  }

  private trigger(): void {
    if (this.state !== RunnerState.Idle) {
      if (this.state !== RunnerState.Stopped) this.again = true;
      return;
    }
    if (this.stopping && !this.reportDue) return this.halt();
    try {
      if (this.reportDue) return this.report();
      this.runs++;
      this.marker = this.jobs.tokenPrefix + "-run-" + this.runs;
      this.state = RunnerState.Starting;
      const statusDetails: Record<string, string> = {};
      statusDetails[RUN_MARKER_KEY] = this.marker;
      this.jobs.startNext({ statusDetails, stepTimeoutInMinutes: this.stepTimeoutInMinutes }, this.onReply, this.timeoutMs);
    } catch (error) {
      // The client refused the request (offline with queueing off, the table full): try at the next trigger.
      this.state = RunnerState.Idle;
      this.event("error", this.jobId, error instanceof Error ? error.message : String(error));
    }
  }

  private halt(): void {
    this.state = RunnerState.Stopped;
    this.stopping = false;
    this.jobs.runner = undefined;
  }

  /** Back to idle, and on to the next job if one was announced meanwhile (or `next`). */
  private idle(next: boolean): void {
    this.state = RunnerState.Idle;
    if (this.stopping && !this.reportDue) return this.halt();
    if (next || this.again) {
      this.again = false;
      this.jobs.wakeRunner();
    }
  }

  private replied(status: ReplyStatus, reply: JobsReply): void {
    const state = this.state;
    if (state === RunnerState.Starting) this.started(status, reply);
    else if (state === RunnerState.Reporting) this.reported(status, reply);
    else if (state === RunnerState.Rereading) this.reread(status, reply);
  }

  private started(status: ReplyStatus, reply: JobsReply): void {
    if (status !== ReplyStatus.Accepted) {
      if (status === ReplyStatus.TimedOut || status === ReplyStatus.Dropped) {
        this.lostMarkers[this.lostAt] = this.marker;
        this.lostAt = (this.lostAt + 1) % REMEMBERED;
      }
      this.event("error", "", "start-next " + REPLY_STATUS_NAMES[status] + (reply.errorCode ? " " + reply.errorCode : ""));
      return this.idle(false);
    }
    const message = parsePayload(reply.payload) as { execution?: { jobId?: unknown; executionNumber?: unknown; versionNumber?: unknown; jobDocument?: unknown; statusDetails?: Record<string, string> } } | undefined;
    const execution = message ? message.execution : undefined;
    if (!execution || typeof execution.jobId !== "string" || typeof execution.versionNumber !== "number") return this.idle(false);
    this.jobId = execution.jobId;
    this.executionNumber = typeof execution.executionNumber === "number" ? execution.executionNumber : 0;
    this.versionNumber = execution.versionNumber;
    this.conflicts = 0;
    const key = this.jobId + "#" + this.executionNumber;
    const finished = this.finishedKey.indexOf(key);
    if (finished >= 0) {
      // Run here already: its report was lost. Reported again, never run again.
      this.outcome = this.finishedOutcome[finished];
      this.outcomeDetails = this.finishedDetails[finished];
      this.event("reported", this.jobId, "again: it was run already");
      return this.report();
    }
    const details = execution.statusDetails;
    const marker = details && typeof details === "object" ? details[RUN_MARKER_KEY] : undefined;
    if (marker !== this.marker && (marker === undefined || this.lostMarkers.indexOf(marker) < 0)) {
      this.stats.interrupted++;
      this.event("interrupted", this.jobId, "IN_PROGRESS but not started by this runner (a restart while it ran?): reported FAILED, not run again");
      return this.finish("FAILED", { reason: "interrupted: found in progress after a restart; not run again" });
    }
    this.state = RunnerState.Running;
    this.stats.started++;
    this.event("started", this.jobId, "execution " + this.executionNumber + ", version " + this.versionNumber);
    const job: Job = { jobId: this.jobId, executionNumber: this.executionNumber, versionNumber: this.versionNumber, document: execution.jobDocument, statusDetails: details };
    let done = false;
    const jobId = this.jobId;
    const finish: JobFinish = (outcome, statusDetails) => {
      if (done) return;
      if (outcome !== "SUCCEEDED" && outcome !== "FAILED" && outcome !== "REJECTED") throw invalid("a job finishes SUCCEEDED, FAILED or REJECTED, got " + shown(outcome));
      if (statusDetails !== undefined) detailsJson(statusDetails);
      done = true;
      if (this.jobId === jobId && this.state === RunnerState.Running) this.finish(outcome, statusDetails);
    };
    try {
      this.handler(job, finish);
    } catch (error) {
      if (!done) finish("FAILED", { reason: ("the handler threw: " + (error instanceof Error ? error.message : String(error))).slice(0, 1024) });
    }
  }

  /** Records the outcome (so the job is never run again on this boot) and reports it. */
  private finish(outcome: JobOutcome, statusDetails: Record<string, string> | undefined): void {
    this.outcome = outcome;
    this.outcomeDetails = statusDetails;
    this.finishedKey[this.finishedAt] = this.jobId + "#" + this.executionNumber;
    this.finishedOutcome[this.finishedAt] = outcome;
    this.finishedDetails[this.finishedAt] = statusDetails;
    this.finishedAt = (this.finishedAt + 1) % REMEMBERED;
    if (outcome === "SUCCEEDED") this.stats.succeeded++;
    else if (outcome === "FAILED") this.stats.failed++;
    else this.stats.rejected++;
    this.event(outcome === "SUCCEEDED" ? "succeeded" : outcome === "FAILED" ? "failed" : "rejected", this.jobId, statusDetails ? JSON.stringify(statusDetails) : "");
    this.report();
  }

  private report(): void {
    this.state = RunnerState.Reporting;
    this.reportDue = false;
    try {
      this.jobs.update(this.jobId, this.outcome, { statusDetails: this.outcomeDetails, expectedVersion: this.versionNumber, executionNumber: this.executionNumber || undefined }, this.onReply, this.timeoutMs);
    } catch (error) {
      this.reportDue = true;
      this.event("error", this.jobId, "report: " + (error instanceof Error ? error.message : String(error)));
      this.state = RunnerState.Idle;
    }
  }

  private reported(status: ReplyStatus, reply: JobsReply): void {
    if (status === ReplyStatus.Accepted) {
      this.event("reported", this.jobId, this.outcome);
      return this.idle(true);
    }
    if (status === ReplyStatus.Rejected) {
      const code = reply.errorCode;
      if (code === "VersionMismatch" && this.conflicts < this.maxConflicts) {
        this.conflicts++;
        this.stats.conflicts++;
        this.event("conflict", this.jobId, "expected version " + this.versionNumber + " is stale: re-reading");
        return this.rereadVersion();
      }
      // Already terminal (finished elsewhere, canceled), gone, or refused: nothing more to report.
      this.event(code === "InvalidStateTransition" || code === "TerminalStateReached" || code === "ResourceNotFound" ? "reported" : "gave-up", this.jobId, code);
      return this.idle(code !== "VersionMismatch");
    }
    // Lost with the link, or dropped by the queue: reported again at the next trigger (now if online).
    this.reportDue = true;
    this.state = RunnerState.Idle;
    if (this.jobs.client.stateName === "online") this.jobs.wakeRunner();
  }

  private rereadVersion(): void {
    this.state = RunnerState.Rereading;
    try {
      this.jobs.describe(this.jobId, { executionNumber: this.executionNumber || undefined, includeJobDocument: false }, this.onReply, this.timeoutMs);
    } catch {
      this.reportDue = true;
      this.state = RunnerState.Idle;
    }
  }

  private reread(status: ReplyStatus, reply: JobsReply): void {
    if (status === ReplyStatus.Accepted) {
      const message = parsePayload(reply.payload) as { execution?: { versionNumber?: unknown; status?: unknown } } | undefined;
      const execution = message ? message.execution : undefined;
      if (execution && typeof execution.versionNumber === "number" && (execution.status === "IN_PROGRESS" || execution.status === "QUEUED")) {
        this.versionNumber = execution.versionNumber;
        return this.report();
      }
      this.event("reported", this.jobId, "already " + (execution ? String(execution.status) : "gone"));
      return this.idle(true);
    }
    if (status === ReplyStatus.Rejected) {
      this.event("reported", this.jobId, reply.errorCode);
      return this.idle(true);
    }
    this.reportDue = true;
    this.state = RunnerState.Idle;
  }
}

const RUNNER_STATE_NAMES: readonly string[] = Object.freeze(["stopped", "idle", "starting", "running", "reporting", "rereading"]);
