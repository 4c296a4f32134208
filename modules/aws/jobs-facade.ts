// AWSIoTMQTTThingJobsClient: the AWS IoT Device SDK for Python v1's jobs API over the AWSIoTMQTTClient
// facade, with its topic-type, reply-type and status constants and its request payloads (clientToken
// is the client id, as in Python). Messages reach the callbacks of createJobSubscription through
// JobsClient's routing, so a reply AWS IoT Core sends without a subscription reaches a callback whose
// filter matches it too. For per-request tokens, deadlines and the job loop, use getJobsClient()
// (JobsClient, JobRunner) on the same connection.

import { type AWSIoTMessage, MQTTv3_1_1, type AWSIoTMQTTClientCore } from "../awsiot";
import type { InboundMessage } from "../client";
import { invalid, type Platform, shown } from "../types";
import { AWSIoTMQTTDelegatingClient } from "./delegating";
import { JobsClient } from "./jobs";

/** The Python SDK's jobExecutionTopicType (its members are tuples there; numbers here). */
export const jobExecutionTopicType = Object.freeze({
  JOB_UNRECOGNIZED_TOPIC: 0,
  JOB_GET_PENDING_TOPIC: 1,
  JOB_START_NEXT_TOPIC: 2,
  JOB_DESCRIBE_TOPIC: 3,
  JOB_UPDATE_TOPIC: 4,
  JOB_NOTIFY_TOPIC: 5,
  JOB_NOTIFY_NEXT_TOPIC: 6,
  JOB_WILDCARD_TOPIC: 7,
});

/** The Python SDK's jobExecutionTopicReplyType. */
export const jobExecutionTopicReplyType = Object.freeze({
  JOB_UNRECOGNIZED_TOPIC_TYPE: 0,
  JOB_REQUEST_TYPE: 1,
  JOB_ACCEPTED_REPLY_TYPE: 2,
  JOB_REJECTED_REPLY_TYPE: 3,
  JOB_WILDCARD_REPLY_TYPE: 4,
});

/** The Python SDK's jobExecutionStatus: the status texts themselves here. */
export const jobExecutionStatus = Object.freeze({
  JOB_EXECUTION_STATUS_NOT_SET: "",
  JOB_EXECUTION_QUEUED: "QUEUED",
  JOB_EXECUTION_IN_PROGRESS: "IN_PROGRESS",
  JOB_EXECUTION_FAILED: "FAILED",
  JOB_EXECUTION_SUCCEEDED: "SUCCEEDED",
  JOB_EXECUTION_CANCELED: "CANCELED",
  JOB_EXECUTION_REJECTED: "REJECTED",
  JOB_EXECUTION_UNKNOWN_STATUS: "UNKNOWN",
});

// By topic type: whether it needs a job id, and its operation.
const NEEDS_JOB_ID: readonly boolean[] = Object.freeze([false, false, false, true, true, false, false, false]);
const OPERATIONS: readonly string[] = Object.freeze(["", "get", "start-next", "get", "update", "notify", "notify-next", "+"]);
const REPLY_SUFFIXES: readonly string[] = Object.freeze(["", "", "/accepted", "/rejected", "/#"]);
const STATUSES: readonly string[] = Object.freeze(["QUEUED", "IN_PROGRESS", "FAILED", "SUCCEEDED", "CANCELED", "REJECTED"]);

/**
 * The topic of a thing's jobs of `type` and `replyType`, as the Python SDK's thingJobManager builds
 * it; undefined for a combination it refuses (a job id missing or not allowed, a reply type on a
 * notification).
 */
export function jobTopic(thingName: string, type: number, replyType: number = jobExecutionTopicReplyType.JOB_REQUEST_TYPE, jobId?: string | null): string | undefined {
  const operation = OPERATIONS[type];
  if (operation === undefined || operation === "" || REPLY_SUFFIXES[replyType] === undefined) return undefined;
  const hasJobId = jobId !== undefined && jobId !== null;
  if ((type === jobExecutionTopicType.JOB_NOTIFY_TOPIC || type === jobExecutionTopicType.JOB_NOTIFY_NEXT_TOPIC) && replyType !== jobExecutionTopicReplyType.JOB_REQUEST_TYPE) return undefined;
  const withoutJobId = type === jobExecutionTopicType.JOB_GET_PENDING_TOPIC || type === jobExecutionTopicType.JOB_START_NEXT_TOPIC || type === jobExecutionTopicType.JOB_NOTIFY_TOPIC || type === jobExecutionTopicType.JOB_NOTIFY_NEXT_TOPIC;
  if (hasJobId && withoutJobId) return undefined;
  if (!hasJobId && NEEDS_JOB_ID[type]) return undefined;
  const prefix = "$aws/things/" + thingName + "/jobs/";
  if (NEEDS_JOB_ID[type]) return prefix + jobId + "/" + operation + REPLY_SUFFIXES[replyType];
  if (type === jobExecutionTopicType.JOB_WILDCARD_TOPIC) return prefix + "#";
  return prefix + operation + REPLY_SUFFIXES[replyType];
}

export type JobsMessageCallback = (client: AWSIoTMQTTThingJobsClientCore, userdata: null, message: AWSIoTMessage) => void;

function copy(message: InboundMessage): AWSIoTMessage {
  return { topic: message.topic, payload: message.payload.slice(), qos: message.qos, retain: message.retain, mid: message.packetId };
}

/**
 * The jobs client over an AWSIoTMQTTClientCore; modules/aws/jobs-moddable.ts supplies the Moddable
 * platform, so user code writes `new AWSIoTMQTTThingJobsClient("clientId", "thingName")`.
 */
export class AWSIoTMQTTThingJobsClientCore extends AWSIoTMQTTDelegatingClient {
  readonly thingName: string;
  private readonly clientID: string;
  private readonly qos: number;
  private jobs: JobsClient | undefined;

  constructor(platform: Platform | undefined, clientID: string, thingName: string, QoS = 0, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true, awsIoTMQTTClient?: AWSIoTMQTTClientCore) {
    super(platform, clientID, protocolType, useWebsocket, cleanSession, awsIoTMQTTClient);
    if (typeof thingName !== "string" || !/^[A-Za-z0-9:_-]{1,128}$/.test(thingName)) throw invalid("thingName must be 1 to 128 of A-Z a-z 0-9 : _ -, got " + shown(thingName));
    if (QoS !== 0 && QoS !== 1) throw invalid("QoS must be 0 or 1, got " + shown(QoS));
    this.thingName = thingName;
    this.clientID = clientID;
    this.qos = QoS;
  }

  /** (IoTLink extension) The JobsClient on this connection (per-request tokens and deadlines, JobRunner); undefined before connect(). */
  getJobsClient(): JobsClient | undefined {
    return this.bind();
  }

  protected override connected(): void {
    this.bind();
  }

  private bind(): JobsClient | undefined {
    if (this.jobs) return this.jobs;
    const client = this.connection.getMQTTConnection();
    if (!client) return undefined;
    const jobs = new JobsClient(client, this.thingName, { maxListeners: 16 });
    jobs.on("error", (error) => {
      const handler = this.connection.onError;
      if (handler) handler(error);
    });
    this.jobs = jobs;
    return jobs;
  }

  private topic(type: number, replyType: number, jobId: string | null | undefined): string {
    const topic = jobTopic(this.thingName, type, replyType, jobId);
    if (topic === undefined) throw invalid("no jobs topic for topic type " + shown(type) + ", reply type " + shown(replyType) + " and job id " + shown(jobId));
    return topic;
  }

  /**
   * Subscribes to a jobs topic; `callback(client, userdata, message)` gets its messages (and any
   * reply AWS IoT Core sends on it unasked). Resolves true at the SUBACK (false if queued).
   */
  createJobSubscription(callback: JobsMessageCallback, jobExecutionType: number = jobExecutionTopicType.JOB_WILDCARD_TOPIC, jobReplyType: number = jobExecutionTopicReplyType.JOB_REQUEST_TYPE, jobId?: string | null): Promise<boolean> {
    const topic = this.listenTo(callback, jobExecutionType, jobReplyType, jobId);
    return this.connection.subscribe(topic, this.qos);
  }

  /** As createJobSubscription; ackCallback(mid, [grantedQoS]) reports the SUBACK. Returns the packet id, or "QUEUED". */
  createJobSubscriptionAsync(ackCallback: ((mid: number, data: number[]) => void) | undefined, callback: JobsMessageCallback, jobExecutionType: number = jobExecutionTopicType.JOB_WILDCARD_TOPIC, jobReplyType: number = jobExecutionTopicReplyType.JOB_REQUEST_TYPE, jobId?: string | null): number | "QUEUED" {
    const topic = this.listenTo(callback, jobExecutionType, jobReplyType, jobId);
    return this.connection.subscribeAsync(topic, this.qos, ackCallback);
  }

  private listenTo(callback: JobsMessageCallback, type: number, replyType: number, jobId: string | null | undefined): string {
    if (typeof callback !== "function") throw invalid("callback must be a function, got " + shown(callback));
    const topic = this.topic(type, replyType, jobId);
    const jobs = this.bind();
    // As every request: not before the first connect (the client is built there), as in Python.
    if (!jobs) throw invalid("call connect() or connectAsync() first (requests made before the first connect are not accepted, as in Python)");
    jobs.listen(topic, (message) => callback(this, null, copy(message)));
    return topic;
  }

  /** Publishes a request with only a client token: GetPendingJobExecutions, or DescribeJobExecution of `jobId` ("$next" too). */
  sendJobsQuery(jobExecTopicType: number, jobId?: string | null): Promise<boolean> {
    return this.connection.publish(this.topic(jobExecTopicType, jobExecutionTopicReplyType.JOB_REQUEST_TYPE, jobId), JSON.stringify({ clientToken: this.clientID }), this.qos);
  }

  /** StartNextPendingJobExecution. */
  sendJobsStartNext(statusDetails?: Record<string, string> | null, stepTimeoutInMinutes?: number | null): Promise<boolean> {
    const payload: Record<string, unknown> = { clientToken: this.clientID };
    if (statusDetails !== undefined && statusDetails !== null) payload.statusDetails = statusDetails;
    if (stepTimeoutInMinutes !== undefined && stepTimeoutInMinutes !== null) payload.stepTimeoutInMinutes = stepTimeoutInMinutes;
    return this.connection.publish(this.topic(jobExecutionTopicType.JOB_START_NEXT_TOPIC, jobExecutionTopicReplyType.JOB_REQUEST_TYPE, null), JSON.stringify(payload), this.qos);
  }

  /** UpdateJobExecution, with the Python SDK's payload (expectedVersion and executionNumber as texts, left out when 0). */
  sendJobsUpdate(jobId: string, status: string, statusDetails?: Record<string, string> | null, expectedVersion = 0, executionNumber = 0, includeJobExecutionState = false, includeJobDocument = false, stepTimeoutInMinutes?: number | null): Promise<boolean> {
    if (STATUSES.indexOf(status) < 0) throw invalid("status must be a jobExecutionStatus that names a status, got " + shown(status));
    const payload: Record<string, unknown> = { status };
    if (statusDetails) payload.statusDetails = statusDetails;
    if (expectedVersion > 0) payload.expectedVersion = String(expectedVersion);
    if (executionNumber > 0) payload.executionNumber = String(executionNumber);
    if (includeJobExecutionState) payload.includeJobExecutionState = true;
    if (includeJobDocument) payload.includeJobDocument = true;
    payload.clientToken = this.clientID;
    if (stepTimeoutInMinutes !== undefined && stepTimeoutInMinutes !== null) payload.stepTimeoutInMinutes = stepTimeoutInMinutes;
    return this.connection.publish(this.topic(jobExecutionTopicType.JOB_UPDATE_TOPIC, jobExecutionTopicReplyType.JOB_REQUEST_TYPE, jobId), JSON.stringify(payload), this.qos);
  }

  /** DescribeJobExecution of `jobId` ("$next" too). */
  sendJobsDescribe(jobId: string, executionNumber = 0, includeJobDocument = true): Promise<boolean> {
    const payload: Record<string, unknown> = { includeJobDocument };
    if (executionNumber > 0) payload.executionNumber = executionNumber;
    payload.clientToken = this.clientID;
    return this.connection.publish(this.topic(jobExecutionTopicType.JOB_DESCRIBE_TOPIC, jobExecutionTopicReplyType.JOB_REQUEST_TYPE, jobId), JSON.stringify(payload), this.qos);
  }
}
