// AWSIoTMQTTShadowClient: the AWS IoT Device SDK for Python v1's shadow API, mapped onto ShadowClient
// (modules/aws/shadow.ts) over the AWSIoTMQTTClient facade. Names and arguments are Python's; where
// the Python SDK is defective this does what docs/shadow-jobs.md says instead:
// - subscriptions are made once and kept, in persistent mode or not (no subscribe/unsubscribe round
//   trips per request that race the reply, and no 2-second sleep after each subscribe);
// - each request keeps its own callback (Python keeps one per operation: a second shadowGet with
//   another callback took over the first one's reply);
// - deltas older than the last one seen are discarded in order, and a request dropped by the offline
//   queue is reported "dropped", never left to look like a timeout or an acceptance.

import { type AWSIoTMQTTClientCore, MQTTv3_1_1 } from "../awsiot";
import type { MqttClient } from "../client";
import { ErrorCode, invalid, IoTLinkError, type Platform, shown, wholeNumber } from "../types";
import { AWSIoTMQTTDelegatingClient } from "./delegating";
import { textOf } from "./json";
import { REPLY_STATUS_NAMES, ReplyStatus, type Shadow, ShadowClient, shadowNamesProblem, type ShadowReply } from "./shadow";

/** A Python-style shadow callback: (payload, responseStatus, token). */
export type ShadowCallbackPy = (payload: string, responseStatus: string, token: string | null) => void;

/** What a timed-out or dropped request's callback gets as its payload (Python's text for a timeout). */
export const REQUEST_TIME_OUT = "REQUEST TIME OUT";
export const REQUEST_DROPPED = "REQUEST DROPPED";

function timeoutMs(value: unknown): number {
  const ms = typeof value === "number" ? Math.round(value * 1000) : Number.NaN;
  if (!(ms >= 1 && ms <= 0x7fffffff)) throw invalid("srcTimeout must be a number of seconds from 0.001 to 2147483, got " + shown(value));
  return ms;
}

function callbackOrNone(callback: unknown): ShadowCallbackPy | undefined {
  if (callback === null || callback === undefined) return undefined;
  if (typeof callback !== "function") throw invalid("srcCallback must be a function (or null), got " + shown(callback));
  return callback as ShadowCallbackPy;
}

/**
 * The shadow client over an AWSIoTMQTTClientCore; each host exports a subclass that supplies its
 * platform (modules/aws/moddable-shadow.ts), so user code writes `new AWSIoTMQTTShadowClient("id")`.
 */
export class AWSIoTMQTTShadowClientCore extends AWSIoTMQTTDelegatingClient {
  private shadows: ShadowClient | undefined;
  private readonly handlers: deviceShadow[] = [];
  /** The distinct shadows the handlers name ("thing/name"), at most maxShadows. */
  private readonly names: string[] = [];
  private maxShadows = 4;
  private maxPending = 10;

  /**
   * As in Python: with `awsIoTMQTTClient`, its connection is shared (its settings are left as they
   * are); without one, a new connection is made with offline queueing off and a 10 Hz drain, the
   * Python shadow client's settings (shadow requests are time-sensitive).
   */
  constructor(platform: Platform | undefined, clientID: string, protocolType = MQTTv3_1_1, useWebsocket = false, cleanSession = true, awsIoTMQTTClient?: AWSIoTMQTTClientCore) {
    super(platform, clientID, protocolType, useWebsocket, cleanSession, awsIoTMQTTClient);
    if (!this.shared) {
      this.connection.configureOfflinePublishQueueing(0);
      this.connection.configureDrainingFrequency(10);
    }
  }

  /**
   * (IoTLink extension) The shadows the handlers may name (default 4) and the requests that may wait
   * for a reply at once (default 10, AWS IoT's limit per connection). Before the first connect().
   */
  configureShadowLimits(maxShadows: number, maxPendingRequests: number): void {
    if (this.shadows) throw invalid("configureShadowLimits must be called before connect()");
    this.maxShadows = wholeNumber("maxShadows", maxShadows, Math.max(1, this.names.length), 64);
    this.maxPending = wholeNumber("maxPendingRequests", maxPendingRequests, 1, 1000);
  }

  /** (IoTLink extension) The ShadowClient underneath (TypeScript API); undefined before connect(). */
  getShadowClient(): ShadowClient | undefined {
    return this.bind();
  }

  protected override connected(): void {
    this.bind();
  }

  /**
   * A handler of the thing `shadowName`'s classic shadow, or (IoTLink extension) of its named shadow
   * `namedShadow`. `isPersistentSubscribe` is accepted as in Python; subscriptions are always kept.
   */
  createShadowHandlerWithName(shadowName: string, isPersistentSubscribe: boolean, namedShadow = ""): deviceShadow {
    if (typeof isPersistentSubscribe !== "boolean") throw invalid("isPersistentSubscribe must be a boolean, got " + shown(isPersistentSubscribe));
    const problem = shadowNamesProblem(shadowName, namedShadow);
    if (problem !== "") throw invalid(problem);
    const key = shadowName + "/" + namedShadow;
    if (this.names.indexOf(key) < 0) {
      if (this.names.length === this.maxShadows) throw new IoTLinkError(ErrorCode.NotAccepted, "handlers name " + this.maxShadows + " shadows already (configureShadowLimits raises it before connect())");
      this.names.push(key);
    }
    // Handlers of the same shadow share its ShadowClient entry (and its last version seen).
    if (this.handlers.length === 64) throw new IoTLinkError(ErrorCode.NotAccepted, "64 shadow handlers made already");
    const shadows = this.bind();
    const handler = new deviceShadow(this, shadowName, namedShadow, shadows ? shadows.shadow(shadowName, namedShadow) : undefined);
    this.handlers.push(handler);
    return handler;
  }

  /** The ShadowClient once the connection is built (at the first connect()), with every handler attached. */
  private bind(): ShadowClient | undefined {
    if (this.shadows) return this.shadows;
    const client: MqttClient | undefined = this.connection.getMQTTConnection();
    if (!client) return undefined;
    const shadows = new ShadowClient(client, { maxShadows: this.maxShadows, maxPending: this.maxPending });
    shadows.on("error", (error) => {
      const handler = this.connection.onError;
      if (handler) handler(error);
    });
    this.shadows = shadows;
    for (let i = 0; i < this.handlers.length; i++) this.handlers[i].attach(shadows);
    return shadows;
  }

  /** @internal */
  requireShadows(): ShadowClient {
    const shadows = this.bind();
    if (!shadows) throw invalid("call connect() or connectAsync() first (requests made before the first connect are not accepted, as in Python)");
    return shadows;
  }
}

/** The Python SDK's shadow handler (its class is named deviceShadow too). */
export class deviceShadow {
  private deltaCallback: ShadowCallbackPy | undefined;

  /** @internal */
  constructor(
    private readonly owner: AWSIoTMQTTShadowClientCore,
    readonly thingName: string,
    readonly shadowName: string,
    private shadow: Shadow | undefined,
  ) {}

  /** @internal */
  attach(shadows: ShadowClient): void {
    this.shadow = shadows.shadow(this.thingName, this.shadowName);
    if (this.deltaCallback) this.registerDelta(this.shadow);
  }

  private bound(): Shadow {
    const shadow = this.shadow;
    if (shadow) return shadow;
    this.owner.requireShadows();
    return this.shadow as Shadow;
  }

  /** Asks for the shadow document; returns the request's client token. */
  shadowGet(srcCallback: ShadowCallbackPy | null, srcTimeout: number): string {
    const shadow = this.bound();
    return shadow.tokenOf(shadow.get(adapt(callbackOrNone(srcCallback)), timeoutMs(srcTimeout)));
  }

  /** Sends a JSON document (text) as an update; returns the request's client token. */
  shadowUpdate(srcJSONPayload: string, srcCallback: ShadowCallbackPy | null, srcTimeout: number): string {
    if (typeof srcJSONPayload !== "string") throw invalid("srcJSONPayload must be a JSON text, got " + shown(srcJSONPayload));
    const shadow = this.bound();
    return shadow.tokenOf(shadow.update(srcJSONPayload, adapt(callbackOrNone(srcCallback)), timeoutMs(srcTimeout)));
  }

  /** Deletes the shadow; returns the request's client token. */
  shadowDelete(srcCallback: ShadowCallbackPy | null, srcTimeout: number): string {
    const shadow = this.bound();
    return shadow.tokenOf(shadow.delete(adapt(callbackOrNone(srcCallback)), timeoutMs(srcTimeout)));
  }

  /** srcCallback(payload, "delta", null) for each delta newer than the last one seen. */
  shadowRegisterDeltaCallback(srcCallback: ShadowCallbackPy): void {
    const callback = callbackOrNone(srcCallback);
    if (!callback) throw invalid("srcCallback must be a function, got " + shown(srcCallback));
    this.deltaCallback = callback;
    if (this.shadow) this.registerDelta(this.shadow);
  }

  shadowUnregisterDeltaCallback(): void {
    this.deltaCallback = undefined;
    if (this.shadow) this.shadow.onDelta(undefined);
  }

  private registerDelta(shadow: Shadow): void {
    shadow.onDelta((delta) => {
      const callback = this.deltaCallback;
      if (callback) callback(textOf(delta.payload), "delta", null);
    });
  }
}

function adapt(callback: ShadowCallbackPy | undefined): ((status: ReplyStatus, reply: ShadowReply) => void) | undefined {
  if (!callback) return undefined;
  return (status, reply) => {
    const token = reply.shadow.tokenOf(reply.requestId);
    if (status === ReplyStatus.TimedOut) callback(REQUEST_TIME_OUT, REPLY_STATUS_NAMES[status], token);
    else if (status === ReplyStatus.Dropped) callback(REQUEST_DROPPED, REPLY_STATUS_NAMES[status], token);
    else callback(textOf(reply.payload), REPLY_STATUS_NAMES[status], token);
  };
}
