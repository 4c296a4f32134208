// The device app's settings kept in its Device Shadow and changed by jobs (docs/device-app.md,
// "Shadow and jobs"). A module of its own, preloaded, so that its code lives in flash rather than in
// the app's chunk heap, as main.ts's would. Its state is in the instance (RAM); the module holds none.
//
// At each restore the settings are reported (with the firmware version and uptime), then the shadow is
// read for a change desired while the device was away. A delta applies what is accepted (a telemetry
// interval in range) and reports it back, and names what is refused, with why, in reported.rejected
// (null once nothing is). Jobs of two kinds are run: {"operation":"set-interval","telemetryIntervalMs":N}
// and {"operation":"report-status"}; any other is REJECTED. Work prompted by a delta, a reply or a
// job runs on a turn of its own (`later`), not on top of the read that delivered it: the stack budget.
import { type Job, type JobFinish, JobRunner, JobsClient } from "../modules/aws/jobs";
import { parsePayload } from "../modules/aws/json";
import { REPLY_STATUS_NAMES, ReplyStatus, type Shadow, type ShadowCallback, ShadowClient, type ShadowMessage, type ShadowReply } from "../modules/aws/shadow";
import type { MqttClient } from "../modules/client";

/** The telemetry intervals a desired state or a set-interval job may ask for. */
export const INTERVAL_MIN_MS = 1000;
export const INTERVAL_MAX_MS = 3600000;

export interface RemoteSettingsOptions {
  readonly thingName: string;
  readonly useShadow: boolean;
  readonly useJobs: boolean;
  /** Each request's deadline (ms). */
  readonly timeoutMs: number;
  readonly firmwareVersion: string;
  /** The interval in force, and how the app changes it. */
  readonly interval: () => number;
  readonly setInterval: (ms: number) => void;
  /** Milliseconds since the app started. */
  readonly uptime: () => number;
  /** Runs `work` on a turn of its own (Timer.set(work, 0) on the device). */
  readonly later: (work: () => void) => void;
  /** One log line: an event and its fields (modules/logline.ts). */
  readonly log: (event: string, fields: readonly (string | number | boolean)[]) => void;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function intervalProblem(value: unknown): string {
  return typeof value === "number" && Number.isInteger(value) && value >= INTERVAL_MIN_MS && value <= INTERVAL_MAX_MS ? "" : "must be a whole number from " + INTERVAL_MIN_MS + " to " + INTERVAL_MAX_MS;
}

export class RemoteSettings {
  private readonly shadow: Shadow | undefined;
  private readonly runner: JobRunner | undefined;
  private stopped = false;
  private readonly onShadowReply: ShadowCallback;
  private readonly onGet: ShadowCallback;

  constructor(
    private readonly client: MqttClient,
    private readonly options: RemoteSettingsOptions,
  ) {
    const { thingName, timeoutMs, log, later } = options;
    if (options.useShadow) {
      // One classic shadow, small documents: the app's reports are well under 512 bytes.
      const shadows = new ShadowClient(client, { maxShadows: 1, maxPending: 4, timeoutMs, maxDocumentBytes: 512 });
      this.shadow = shadows.shadow(thingName);
      this.shadow.onDelta((delta: ShadowMessage) => {
        const document = parsePayload(delta.payload) as { state?: unknown } | undefined;
        if (document !== undefined) later(() => this.applyDesired(document.state, "delta"));
      });
    }
    if (options.useJobs) {
      const jobs = new JobsClient(client, thingName, { maxPending: 4, maxListeners: 0, timeoutMs });
      this.runner = new JobRunner(jobs, (job, finish) => later(() => this.runJob(job, finish)), { onEvent: (event, jobId, detail) => log("job", ["event", event, "id", jobId, "detail", detail]) });
    }
    this.onShadowReply = (status: ReplyStatus, reply: ShadowReply) => {
      if (status !== ReplyStatus.Accepted) log("shadow", ["operation", reply.operation, "status", REPLY_STATUS_NAMES[status], "code", reply.code]);
    };
    this.onGet = (status: ReplyStatus, reply: ShadowReply) => {
      if (status !== ReplyStatus.Accepted) return this.onShadowReply(status, reply);
      const document = parsePayload(reply.payload) as { state?: { delta?: unknown } } | undefined;
      const delta = document !== undefined && document.state !== undefined ? document.state.delta : undefined;
      if (delta !== undefined) later(() => this.applyDesired(delta, "get"));
    };
  }

  /** At each restore (on a turn of its own): the settings reported, the shadow read, the job loop started once. */
  restored(): void {
    if (this.stopped) return;
    if (this.shadow !== undefined) {
      this.report({ telemetryIntervalMs: this.options.interval(), firmwareVersion: this.options.firmwareVersion, uptimeMs: this.options.uptime() });
      try {
        this.shadow.get(this.onGet);
      } catch (error) {
        this.options.log("error", ["code", "shadow", "message", messageOf(error)]);
      }
    }
    // From then on the runner asks for jobs again after each restore by itself.
    if (this.runner !== undefined && this.runner.stateName === "stopped") this.runner.start();
  }

  /** No further job is taken (one running is finished and reported). */
  stop(): void {
    this.stopped = true;
    if (this.runner !== undefined) this.runner.stop();
  }

  private setInterval(value: number, from: string): void {
    if (value !== this.options.interval()) this.options.setInterval(value);
    this.options.log("setting", ["name", "telemetryIntervalMs", "value", value, "from", from]);
  }

  /** Reports `reported` in the shadow; `desired` too when the device itself changed a setting (a job). */
  private report(reported: Record<string, unknown>, desired?: Record<string, unknown>): void {
    if (this.shadow === undefined) return;
    try {
      this.shadow.update({ state: desired === undefined ? { reported } : { desired, reported } }, this.onShadowReply);
    } catch (error) {
      this.options.log("error", ["code", "shadow", "message", messageOf(error)]);
    }
  }

  /** Applies a desired state: what is accepted is reported with its new value, what is not under reported.rejected. */
  private applyDesired(state: unknown, from: string): void {
    if (state === null || typeof state !== "object") return;
    const desired = state as Record<string, unknown>;
    const reported: Record<string, unknown> = {};
    const rejected: Record<string, string> = {};
    let refused = 0;
    for (const key in desired) {
      if (key === "telemetryIntervalMs") {
        const problem = intervalProblem(desired[key]);
        if (problem === "") this.setInterval(desired[key] as number, from);
        else {
          rejected[key] = problem;
          refused++;
        }
        reported[key] = this.options.interval();
      } else if (key !== "rejected") {
        rejected[key] = "not a setting of this device";
        refused++;
      }
    }
    for (const key in rejected) this.options.log("setting", ["name", key, "rejected", rejected[key], "from", from]);
    reported.rejected = refused > 0 ? rejected : null;
    this.report(reported);
  }

  private runJob(job: Job, finish: JobFinish): void {
    const document = job.document as { operation?: unknown; telemetryIntervalMs?: unknown } | null;
    const operation = document !== null && typeof document === "object" ? document.operation : undefined;
    this.options.log("job", ["event", "run", "id", job.jobId, "detail", String(operation)]);
    if (operation === "set-interval") {
      const problem = intervalProblem(document!.telemetryIntervalMs);
      if (problem !== "") return finish("FAILED", { reason: "telemetryIntervalMs " + problem });
      this.setInterval(document!.telemetryIntervalMs as number, "job");
      // Desired as well: the shadow's desired state would otherwise undo the job at the next restore.
      const telemetryIntervalMs = this.options.interval();
      this.report({ telemetryIntervalMs }, { telemetryIntervalMs });
      finish("SUCCEEDED", { telemetryIntervalMs: String(telemetryIntervalMs) });
    } else if (operation === "report-status") {
      const client = this.client;
      finish("SUCCEEDED", { state: client.stateName, uptimeMs: String(this.options.uptime()), queue: String(client.queuedCount), sent: String(client.stats.sent), acked: String(client.stats.acknowledged) });
    } else {
      finish("REJECTED", { reason: "unknown operation (this device runs set-interval and report-status)" });
    }
  }
}
