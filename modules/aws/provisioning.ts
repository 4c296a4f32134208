// Fleet provisioning by claim: AWS IoT's device provisioning MQTT API over MqttClient's public API.
// A device connected with the claim certificate asks for its own key and certificate
// (CreateKeysAndCertificate), registers itself from a provisioning template with the certificate's
// ownership token (RegisterThing), and from then on connects with what it got. provision() runs
// both and hands over the device's Identity: DER certificate, PKCS#8 DER key (what Moddable's
// SecureSocket takes) and thing name, ready for an IdentityStore (modules/aws/identity).
//
//   const provisioning = new FleetProvisioningClient(client);   // client: maxPacketBytes >= 4096
//   provisioning.provision("my-template", { SerialNumber: "0001" }, (status, device, failure) => {
//     if (status === ProvisioningStatus.Accepted) { store.save(device.identity); reconnectWith(device.identity); }
//     else trace(failure.message + "\n");                        // one line, no secrets
//   });
//
// Each request is one QoS 1 PUBLISH with its reply topics (/accepted and /rejected) subscribed
// before it on the same connection, and a deadline on the client's one timer. AWS's replies carry no
// client token, so one request per operation may wait at a time.
//
// Provisioning runs once in a device's life, so this layer is not held to the steady-state rule of
// the core: a reply is parsed whole with JSON.parse (about 4 KB, once), the register request is
// built with JSON.stringify, and provision() allocates the DER buffers. What it keeps is fixed at
// construction: four reply handlers, two request slots.
//
// Secrets: the private key and the ownership token are never put in a failure, an error event or a
// trace, and AWS's error message is shown with the token cut out. They do reach every `message`
// listener of the client (they are an MQTT message): an app must not log the payloads of
// $aws/certificates/create/json/accepted.

import type { InboundMessage, MqttClient } from "../client";
import { AckStatus, ErrorCode, invalid, IoTLinkError, isWordOf, shown, type TimerUser, unknownNameProblem, wholeNumber } from "../types";
import { certificateDerProblem, type Identity, pemMaxDerBytes, pemToDer, privateKeyToPkcs8Der } from "./identity";
import { addErrorListener, callUserCode, type ErrorListeners, newErrorListeners, removeErrorListener } from "../events";
import { textOf } from "./json";

/**
 * The least maxPacketBytes the client needs: CreateKeysAndCertificate's reply carries an RSA-2048
 * certificate and private key in PEM and an ownership token of about 500 characters, as JSON: about
 * 3.7 KB with its topic.
 */
export const PROVISIONING_MIN_PACKET_BYTES = 4096;

export const CREATE_KEYS_TOPIC = "$aws/certificates/create/json";
const CREATE_ACCEPTED = CREATE_KEYS_TOPIC + "/accepted";
const CREATE_REJECTED = CREATE_KEYS_TOPIC + "/rejected";

/** AWS's rule for a provisioning template name. */
/** The longest ownership token taken (AWS's are about 500 characters). */
const MAX_TOKEN_CHARS = 4096;
/** AWS's limits on a RegisterThing parameter. */
const MAX_PARAMETER_KEY = 2048;
const MAX_PARAMETER_VALUE = 4096;
/** The most characters of AWS's error message shown in a failure. */
const MAX_SHOWN_MESSAGE = 300;

/** The topic RegisterThing requests of `templateName` are published to. */
export function registerThingTopic(templateName: string): string {
  if (typeof templateName !== "string" || !isWordOf(templateName, 1, 36, "_-")) throw invalid("templateName must be 1 to 36 of A-Z a-z 0-9 _ -, got " + shown(templateName));
  return "$aws/provisioning-templates/" + templateName + "/provision/json";
}

/** A request's outcome. */
export const enum ProvisioningStatus {
  /** The /accepted reply came. */
  Accepted = 0,
  /** The /rejected reply came: the failure has AWS's statusCode, errorCode and errorMessage. */
  Rejected = 1,
  /** No reply by the deadline; the request may still reach the service (it is in the client's queue or in flight). */
  TimedOut = 2,
  /** The client's offline queue dropped the request, or could not take it: it was never sent. */
  Dropped = 3,
  /** The reply (or what it carried: a certificate, a key) could not be used. */
  BadReply = 4,
  /** The broker refused a reply topic's subscription (on AWS: the claim policy lacks iot:Subscribe or iot:Receive for it). */
  Refused = 5,
}

export const PROVISIONING_STATUS_NAMES: readonly string[] = Object.freeze(["accepted", "rejected", "timeout", "dropped", "bad-reply", "refused"]);

/** Why a request did not succeed. Never holds the private key or the ownership token. */
export interface ProvisioningFailure {
  /** "CreateKeysAndCertificate" or "RegisterThing". */
  readonly operation: string;
  readonly status: ProvisioningStatus;
  /** AWS's statusCode (400, 403, 404, 500...) for a rejection; 0 otherwise. */
  readonly statusCode: number;
  /** AWS's errorCode for a rejection ("InvalidCertificateOwnershipToken"...); "" otherwise. */
  readonly errorCode: string;
  /** AWS's errorMessage (one line, at most 300 characters, the token cut out); "" when none. */
  readonly errorMessage: string;
  /** The whole failure in one line, e.g. "RegisterThing rejected: 400 InvalidCertificateOwnershipToken: ...". */
  readonly message: string;
}

/** CreateKeysAndCertificate's accepted reply. `privateKey` and `certificateOwnershipToken` are secrets: never log them. */
export interface CreatedCertificate {
  readonly certificateId: string;
  readonly certificatePem: string;
  readonly privateKey: string;
  readonly certificateOwnershipToken: string;
}

/** RegisterThing's accepted reply. */
export interface RegisteredThing {
  readonly thingName: string;
  /** The template's DeviceConfiguration (strings). */
  readonly deviceConfiguration: Readonly<Record<string, string>>;
}

/** What provision() ends with. */
export interface ProvisionedDevice {
  readonly identity: Identity;
  readonly certificateId: string;
  readonly deviceConfiguration: Readonly<Record<string, string>>;
}

export type CreateKeysCallback = (status: ProvisioningStatus, certificate: CreatedCertificate | undefined, failure: ProvisioningFailure | undefined) => void;
export type RegisterThingCallback = (status: ProvisioningStatus, thing: RegisteredThing | undefined, failure: ProvisioningFailure | undefined) => void;
export type ProvisionCallback = (status: ProvisioningStatus, device: ProvisionedDevice | undefined, failure: ProvisioningFailure | undefined) => void;

export interface ProvisioningOptions {
  /** A request's deadline in ms when its call gives none; default 20000 (RegisterThing may run a pre-provisioning hook, a Lambda of up to 5 s). */
  timeoutMs?: number;
}

export interface ProvisioningStats {
  requests: number;
  accepted: number;
  rejected: number;
  timedOut: number;
  dropped: number;
  badReplies: number;
  refused: number;
  /** Replies no request waited for (late, after a timeout, or unasked). */
  unmatched: number;
  /** Callbacks of yours that threw (each reported to the `error` listeners). */
  callbackErrors: number;
}

const CREATE = 0;
const REGISTER = 1;
const OPERATION_NAMES: readonly string[] = Object.freeze(["CreateKeysAndCertificate", "RegisterThing"]);

// Reply filters by slot: create accepted, create rejected, register accepted, register rejected.
const FILTER_NONE = 0;
const FILTER_REQUESTED = 1;
const FILTER_CONFIRMED = 2;
const FILTER_FAILED = 3;

/** `text` on one line, at most MAX_SHOWN_MESSAGE characters, with the secrets (when given) cut out. */
function oneLine(text: string, secret: string, other = ""): string {
  let line = text;
  if (secret.length >= 8) line = line.split(secret).join("<secret>");
  if (other.length >= 8) line = line.split(other).join("<secret>");
  let out = "";
  for (let i = 0; i < line.length && out.length < MAX_SHOWN_MESSAGE; i++) {
    const code = line.charCodeAt(i);
    out += code < 0x20 || code === 0x7f ? " " : line.charAt(i);
  }
  return line.length > MAX_SHOWN_MESSAGE ? out + "..." : out;
}

function failureOf(operation: number, status: ProvisioningStatus, statusCode: number, errorCode: string, errorMessage: string, detail: string): ProvisioningFailure {
  const name = OPERATION_NAMES[operation];
  const message = status === ProvisioningStatus.Rejected ? name + " rejected: " + statusCode + " " + (errorCode || "(no errorCode)") + (errorMessage ? ": " + errorMessage : "") : name + ": " + detail;
  return { operation: name, status, statusCode, errorCode, errorMessage, message };
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** The parameters as a fresh object of strings (checked: AWS takes a map of strings). */
function checkedParameters(parameters: unknown): Record<string, string> {
  if (parameters === undefined) return {};
  if (!isPlainObject(parameters)) throw invalid("parameters must be an object of strings, got " + shown(parameters));
  const copy: Record<string, string> = {};
  const keys = Object.keys(parameters);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i];
    const value = parameters[key];
    if (key.length > MAX_PARAMETER_KEY) throw invalid("a parameter name is over " + MAX_PARAMETER_KEY + " characters");
    if (typeof value !== "string" || value.length > MAX_PARAMETER_VALUE) throw invalid("parameter " + key + " must be a string of at most " + MAX_PARAMETER_VALUE + " characters");
    copy[key] = value;
  }
  return copy;
}

/** Throws unless `token` looks like an ownership token; the message never shows it. */
function checkToken(token: unknown): string {
  if (typeof token !== "string" || token.length === 0 || token.length > MAX_TOKEN_CHARS) throw invalid("certificateOwnershipToken must be a non-empty string of at most " + MAX_TOKEN_CHARS + " characters (from CreateKeysAndCertificate)");
  for (let i = 0; i < token.length; i++) {
    const code = token.charCodeAt(i);
    if (code < 0x20 || code > 0x7e) throw invalid("certificateOwnershipToken must be printable ASCII (as CreateKeysAndCertificate gives it)");
  }
  return token;
}

export class FleetProvisioningClient implements TimerUser {
  readonly client: MqttClient;
  readonly timeoutMs: number;
  readonly stats: ProvisioningStats = { requests: 0, accepted: 0, rejected: 0, timedOut: 0, dropped: 0, badReplies: 0, refused: 0, unmatched: 0, callbackErrors: 0 };

  // The two request slots (CREATE, REGISTER).
  private readonly waiting = new Uint8Array(2);
  private readonly droppedFlag = new Uint8Array(2);
  private readonly refusedFlag = new Uint8Array(2);
  /** A reply read but not yet reported (reported from the timer): its status (-1: none), value and failure, per operation. */
  private readonly laterStatus = new Int8Array(2).fill(-1);
  private readonly laterValue: (CreatedCertificate | RegisteredThing | undefined)[] = [undefined, undefined];
  private readonly laterFailure: (ProvisioningFailure | undefined)[] = [undefined, undefined];
  /** In onReply: complete() keeps the outcome for the timer. */
  private inReply = false;
  private readonly startedAt = new Float64Array(2);
  private readonly deadlineMs = new Float64Array(2);
  private readonly requestNumber = new Float64Array(2);
  private createCallback: CreateKeysCallback | undefined;
  private registerCallback: RegisterThingCallback | undefined;
  private lastRequest = 0;
  /** The ownership token of the waiting RegisterThing, cut out of AWS's error messages. */
  private registerToken = "";
  /** The token and the key of a provision() under way, cut out of callback error messages. */
  private flowToken = "";
  private flowKey = "";
  private flowing = false;

  // The reply filters.
  private readonly filters: string[] = [CREATE_ACCEPTED, CREATE_REJECTED, "", ""];
  private readonly filterState = new Uint8Array(4);
  private readonly handlers: ((message: InboundMessage) => void)[] = [];
  private readonly subscribeAcks: ((status: number) => void)[] = [];
  /** The template whose reply topics are (being) subscribed. */
  private templateName = "";

  private readonly errorListeners: ErrorListeners = newErrorListeners();
  /** Cuts the secrets under way out of a callback's error message. */
  private readonly cleanMessage = (text: string): string => oneLine(text, this.flowToken || this.registerToken, this.flowKey);
  private closed = false;

  constructor(client: MqttClient, options: ProvisioningOptions = {}) {
    if (client === null || typeof client !== "object" || typeof client.publish !== "function" || typeof client.addTimerUser !== "function") {
      throw invalid("the first argument must be an MqttClient, got " + shown(client));
    }
    if (options === null || typeof options !== "object") throw invalid("options must be an object, got " + shown(options));
    const unknown = unknownNameProblem("provisioning option", options, "timeoutMs");
    if (unknown !== "") throw invalid(unknown);
    if (client.maxPacketBytes < PROVISIONING_MIN_PACKET_BYTES) {
      throw invalid(
        "fleet provisioning needs the client's maxPacketBytes to be at least " + PROVISIONING_MIN_PACKET_BYTES +
          " (CreateKeysAndCertificate's reply carries an RSA-2048 certificate, its private key and the ownership token as JSON: about 3.7 KB), got " + client.maxPacketBytes,
      );
    }
    this.client = client;
    this.timeoutMs = wholeNumber("timeoutMs", options.timeoutMs ?? 20000, 1, 0x7fffffff);
    for (let slot = 0; slot < 4; slot++) {
      this.handlers.push((message) => this.onReply(slot, message));
      this.subscribeAcks.push((status) => this.onSubscribeAck(slot, status));
    }
    client.addTimerUser(this);
  }

  /** Requests waiting for their reply (0 to 2). */
  get pendingCount(): number {
    return this.waiting[CREATE] + this.waiting[REGISTER];
  }

  /** Adds a listener for `error` (a callback of yours threw: code callback-error); up to 4. */
  on(event: "error", listener: (error: IoTLinkError) => void): this {
    addErrorListener(this.errorListeners, event, listener);
    return this;
  }

  off(event: "error", listener: (error: IoTLinkError) => void): this {
    removeErrorListener(this.errorListeners, event, listener);
    return this;
  }

  /**
   * Detaches from the client: the timer user removed, the reply topics unsubscribed (when the client
   * can take the UNSUBSCRIBEs), waiting requests forgotten without a callback. Call it once provisioned.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.removeTimerUser(this);
    for (let slot = 0; slot < 4; slot++) this.dropFilter(slot);
    this.waiting[CREATE] = 0;
    this.waiting[REGISTER] = 0;
    this.createCallback = undefined;
    this.registerCallback = undefined;
    this.registerToken = "";
    this.flowToken = "";
    this.flowKey = "";
    this.flowing = false;
  }

  // ---------------------------------------------------------------- requests

  /**
   * CreateKeysAndCertificate: AWS IoT makes an RSA-2048 key pair and a certificate for it
   * (PENDING_ACTIVATION until RegisterThing). `onReply(status, certificate, failure)` is called once.
   */
  createKeysAndCertificate(onReply: CreateKeysCallback, timeoutMs?: number): void {
    if (typeof onReply !== "function") throw invalid("onReply must be a function, got " + shown(onReply));
    const timeout = timeoutMs === undefined ? this.timeoutMs : wholeNumber("timeoutMs", timeoutMs, 1, 0x7fffffff);
    this.checkRoom(CREATE);
    this.wantFilter(0);
    this.wantFilter(1);
    this.createCallback = onReply;
    // AWS documents an empty payload; its SDKs send an empty JSON object, which it takes too.
    this.send(CREATE, CREATE_KEYS_TOPIC, "{}", timeout);
  }

  /**
   * RegisterThing with template `templateName`: the certificate of `certificateOwnershipToken` is
   * activated and attached to the thing the template makes from `parameters` (a map of strings, e.g.
   * {SerialNumber: "..."}). `onReply(status, thing, failure)` is called once.
   */
  registerThing(templateName: string, certificateOwnershipToken: string, parameters: Record<string, string> | undefined, onReply: RegisterThingCallback, timeoutMs?: number): void {
    const topic = registerThingTopic(templateName);
    const token = checkToken(certificateOwnershipToken);
    const checked = checkedParameters(parameters);
    if (typeof onReply !== "function") throw invalid("onReply must be a function, got " + shown(onReply));
    const timeout = timeoutMs === undefined ? this.timeoutMs : wholeNumber("timeoutMs", timeoutMs, 1, 0x7fffffff);
    this.checkRoom(REGISTER);
    this.useTemplate(templateName, topic);
    this.wantFilter(2);
    this.wantFilter(3);
    this.registerCallback = onReply;
    this.registerToken = token;
    this.send(REGISTER, topic, JSON.stringify({ certificateOwnershipToken: token, parameters: checked }), timeout);
  }

  /**
   * Both steps: CreateKeysAndCertificate, then RegisterThing with its token, then the certificate and
   * key converted to DER (the key to PKCS#8). `onDone(status, device, failure)` is called once, with
   * the failure of the step that failed. Keep `device.identity` (IdentityStore.save) before
   * reconnecting with it. Each step has `timeoutMs`.
   */
  provision(templateName: string, parameters: Record<string, string> | undefined, onDone: ProvisionCallback, timeoutMs?: number): void {
    registerThingTopic(templateName);
    const checked = checkedParameters(parameters);
    if (typeof onDone !== "function") throw invalid("onDone must be a function, got " + shown(onDone));
    if (timeoutMs !== undefined) wholeNumber("timeoutMs", timeoutMs, 1, 0x7fffffff);
    if (this.flowing) throw new IoTLinkError(ErrorCode.NotAccepted, "a provision() is under way already");
    this.checkRoom(REGISTER);
    const finish = (status: ProvisioningStatus, device: ProvisionedDevice | undefined, failure: ProvisioningFailure | undefined): void => {
      this.flowing = false;
      this.call(onDone as never, status, device, failure);
      this.flowToken = "";
      this.flowKey = "";
    };
    this.createKeysAndCertificate((status, created, failure) => {
      if (status !== ProvisioningStatus.Accepted || created === undefined) return finish(status, undefined, failure);
      this.flowToken = created.certificateOwnershipToken;
      this.flowKey = created.privateKey;
      try {
        this.registerThing(templateName, created.certificateOwnershipToken, checked, (registered, thing, registerFailure) => {
          if (registered !== ProvisioningStatus.Accepted || thing === undefined) return finish(registered, undefined, registerFailure);
          let identity: Identity;
          try {
            identity = identityOf(thing.thingName, created);
          } catch (error) {
            const problem = error instanceof Error ? error.message : String(error);
            return finish(ProvisioningStatus.BadReply, undefined, failureOf(CREATE, ProvisioningStatus.BadReply, 0, "", "", "the certificate or key it returned cannot be used: " + problem));
          }
          finish(ProvisioningStatus.Accepted, { identity, certificateId: created.certificateId, deviceConfiguration: thing.deviceConfiguration }, undefined);
        }, timeoutMs);
      } catch (error) {
        // The client could not take the request (offline with queueing off, say): never sent.
        const problem = error instanceof Error ? error.message : String(error);
        finish(ProvisioningStatus.Dropped, undefined, failureOf(REGISTER, ProvisioningStatus.Dropped, 0, "", "", "the request could not be sent: " + oneLine(problem, created.certificateOwnershipToken)));
      }
    }, timeoutMs);
    this.flowing = true;
  }

  private checkRoom(operation: number): void {
    if (this.closed) throw new IoTLinkError(ErrorCode.NotAccepted, "this FleetProvisioningClient was closed");
    if (this.waiting[operation] === 1) {
      throw new IoTLinkError(ErrorCode.NotAccepted, OPERATION_NAMES[operation] + " is already waiting for its reply (AWS's replies carry no token: one at a time)");
    }
  }

  private send(operation: number, topic: string, payload: string, timeoutMs: number): void {
    const number = ++this.lastRequest;
    this.requestNumber[operation] = number;
    this.waiting[operation] = 1;
    this.droppedFlag[operation] = 0;
    this.refusedFlag[operation] = 0;
    this.startedAt[operation] = this.client.now();
    this.deadlineMs[operation] = timeoutMs;
    // One closure per request: provisioning is rare, and it keeps a late acknowledgement from being
    // taken for a later request's.
    const onAck = (status: number): void => {
      if (status !== AckStatus.Dropped || this.waiting[operation] === 0 || this.requestNumber[operation] !== number) return;
      // Reported from the timer, never from inside the call that made the request.
      this.droppedFlag[operation] = 1;
      this.client.reschedule();
    };
    try {
      this.client.publish(topic, payload, 1, false, onAck);
    } catch (error) {
      this.waiting[operation] = 0;
      if (operation === CREATE) this.createCallback = undefined;
      else {
        this.registerCallback = undefined;
        this.registerToken = "";
      }
      throw error;
    }
    this.stats.requests++;
    this.client.reschedule();
  }

  // ---------------------------------------------------------------- reply filters

  /** Points the register filters at `templateName`, unsubscribing another template's. */
  private useTemplate(templateName: string, topic: string): void {
    if (this.templateName === templateName) return;
    this.dropFilter(2);
    this.dropFilter(3);
    this.templateName = templateName;
    this.filters[2] = topic + "/accepted";
    this.filters[3] = topic + "/rejected";
  }

  /** Subscribes to filter `slot` unless the broker has it (or is asked for it); the client's refusal passes to the caller. */
  private wantFilter(slot: number): void {
    const state = this.filterState[slot];
    if (state === FILTER_REQUESTED || state === FILTER_CONFIRMED) return;
    this.client.subscribe(this.filters[slot], 1, this.handlers[slot], this.subscribeAcks[slot]);
    this.filterState[slot] = FILTER_REQUESTED;
  }

  private dropFilter(slot: number): void {
    const state = this.filterState[slot];
    this.filterState[slot] = FILTER_NONE;
    if (state !== FILTER_REQUESTED && state !== FILTER_CONFIRMED) return;
    try {
      this.client.unsubscribe(this.filters[slot]);
    } catch {
      // Offline with queueing off: the subscription goes with the session, or stays unused.
    }
  }

  private onSubscribeAck(slot: number, status: number): void {
    if (this.filterState[slot] !== FILTER_REQUESTED) return;
    if (status === AckStatus.Acknowledged || status === AckStatus.TimedOut) {
      // A late SUBACK still comes: the SUBSCRIBE stays in flight.
      this.filterState[slot] = FILTER_CONFIRMED;
      return;
    }
    this.filterState[slot] = FILTER_FAILED;
    // The reply could never arrive: the waiting request fails now (from the timer), not at its deadline.
    const operation = slot >> 1;
    if (this.waiting[operation] === 1) {
      this.refusedFlag[operation] = 1;
      this.client.reschedule();
    }
  }

  // ---------------------------------------------------------------- replies

  private onReply(slot: number, message: InboundMessage): void {
    if (message.topic !== this.filters[slot]) return; // another template's, still subscribed until its UNSUBACK
    const operation = slot >> 1;
    if (this.waiting[operation] === 0 || this.laterStatus[operation] >= 0) {
      this.stats.unmatched++;
      return;
    }
    // The reply is read now (its payload is only valid during this call) and reported from the timer:
    // what the callback does next (the next request, the key converted and stored) would otherwise sit
    // on top of the read that delivered it, and the device's stack overflowed there.
    this.inReply = true;
    try {
      this.readReply(operation, (slot & 1) === 0, message);
    } finally {
      this.inReply = false;
    }
  }

  private readReply(operation: number, accepted: boolean, message: InboundMessage): void {
    let reply: unknown;
    try {
      reply = JSON.parse(textOf(message.payload));
    } catch {
      reply = undefined;
    }
    if (!isPlainObject(reply)) return this.fail(operation, ProvisioningStatus.BadReply, "the " + (accepted ? "accepted" : "rejected") + " reply is not a JSON object");
    if (!accepted) {
      const statusCode = typeof reply.statusCode === "number" && Number.isInteger(reply.statusCode) ? reply.statusCode : 0;
      const secret = operation === REGISTER ? this.registerToken : "";
      const errorCode = typeof reply.errorCode === "string" ? oneLine(reply.errorCode, secret) : "";
      const errorMessage = typeof reply.errorMessage === "string" ? oneLine(reply.errorMessage, secret) : "";
      return this.complete(operation, ProvisioningStatus.Rejected, undefined, failureOf(operation, ProvisioningStatus.Rejected, statusCode, errorCode, errorMessage, ""));
    }
    if (operation === CREATE) {
      const { certificateId, certificatePem, privateKey, certificateOwnershipToken } = reply;
      // Named, never shown: these fields hold the secrets.
      const missing =
        typeof certificateId !== "string" || certificateId === "" ? "certificateId" :
        typeof certificatePem !== "string" || certificatePem === "" ? "certificatePem" :
        typeof privateKey !== "string" || privateKey === "" ? "privateKey" :
        typeof certificateOwnershipToken !== "string" || certificateOwnershipToken === "" ? "certificateOwnershipToken" : "";
      if (missing !== "") return this.fail(operation, ProvisioningStatus.BadReply, "the accepted reply has no " + missing);
      return this.complete(operation, ProvisioningStatus.Accepted, { certificateId, certificatePem, privateKey, certificateOwnershipToken } as CreatedCertificate, undefined);
    }
    const { thingName, deviceConfiguration } = reply;
    if (typeof thingName !== "string" || !isWordOf(thingName, 1, 128, ":_-")) return this.fail(operation, ProvisioningStatus.BadReply, "the accepted reply has no valid thingName");
    const configuration: Record<string, string> = {};
    if (deviceConfiguration !== undefined && deviceConfiguration !== null) {
      if (!isPlainObject(deviceConfiguration)) return this.fail(operation, ProvisioningStatus.BadReply, "the accepted reply's deviceConfiguration is not an object");
      const keys = Object.keys(deviceConfiguration);
      for (let i = 0; i < keys.length; i++) {
        const value = deviceConfiguration[keys[i]];
        if (typeof value !== "string") return this.fail(operation, ProvisioningStatus.BadReply, "the accepted reply's deviceConfiguration." + oneLine(keys[i], "") + " is not a string");
        configuration[keys[i]] = value;
      }
    }
    this.complete(operation, ProvisioningStatus.Accepted, { thingName, deviceConfiguration: configuration }, undefined);
  }

  private fail(operation: number, status: ProvisioningStatus, detail: string): void {
    this.complete(operation, status, undefined, failureOf(operation, status, 0, "", "", detail));
  }

  /** Ends the wait of `operation` and reports it; a request made from the callback may take the slot again. */
  private complete(operation: number, status: ProvisioningStatus, value: CreatedCertificate | RegisteredThing | undefined, failure: ProvisioningFailure | undefined): void {
    if (this.inReply) {
      this.laterStatus[operation] = status;
      this.laterValue[operation] = value;
      this.laterFailure[operation] = failure;
      this.client.reschedule();
      return;
    }
    this.waiting[operation] = 0;
    const stats = this.stats;
    if (status === ProvisioningStatus.Accepted) stats.accepted++;
    else if (status === ProvisioningStatus.Rejected) stats.rejected++;
    else if (status === ProvisioningStatus.TimedOut) stats.timedOut++;
    else if (status === ProvisioningStatus.Dropped) stats.dropped++;
    else if (status === ProvisioningStatus.Refused) stats.refused++;
    else stats.badReplies++;
    let callback: ((...args: never[]) => void) | undefined;
    if (operation === CREATE) {
      callback = this.createCallback;
      this.createCallback = undefined;
    } else {
      callback = this.registerCallback;
      this.registerCallback = undefined;
      this.registerToken = "";
    }
    if (callback !== undefined) this.call(callback, status, value, failure);
  }

  /** Calls a callback of the user's; a throw is counted and reported to the `error` listeners, secrets cut out. */
  private call(callback: (...args: never[]) => void, first: unknown, second: unknown, third: unknown): void {
    // Counted after the call: a callback may itself report (nested calls), and `+=` would read the count first.
    const threw = callUserCode(this.errorListeners, this.cleanMessage, callback as (a: unknown, b: unknown, c: unknown) => void, first, second, third);
    this.stats.callbackErrors += threw;
  }

  // ---------------------------------------------------------------- deadlines (TimerUser)

  nextDeadline(now: number): number {
    let due = -1;
    for (let operation = 0; operation < 2; operation++) {
      if (this.waiting[operation] === 0) continue;
      if (this.laterStatus[operation] >= 0) return 0;
      if (this.droppedFlag[operation] === 1 || this.refusedFlag[operation] === 1) return 0;
      const left = this.deadlineMs[operation] - ((now - this.startedAt[operation]) | 0);
      const ms = left > 0 ? left : 0;
      if (due < 0 || ms < due) due = ms;
    }
    return due;
  }

  onDeadline(now: number): void {
    for (let operation = 0; operation < 2; operation++) {
      if (this.waiting[operation] === 0) continue;
      const status = this.laterStatus[operation];
      if (status >= 0) {
        const value = this.laterValue[operation];
        const failure = this.laterFailure[operation];
        this.laterStatus[operation] = -1;
        this.laterValue[operation] = undefined;
        this.laterFailure[operation] = undefined;
        this.complete(operation, status, value, failure);
      } else if (this.droppedFlag[operation] === 1) this.fail(operation, ProvisioningStatus.Dropped, "the client's offline queue dropped the request (never sent)");
      else if (this.refusedFlag[operation] === 1) {
        const filter = this.filterState[2 * operation] === FILTER_FAILED ? this.filters[2 * operation] : this.filters[2 * operation + 1];
        this.fail(operation, ProvisioningStatus.Refused, "the broker refused the subscription to " + filter + " (the claim policy must allow iot:Subscribe and iot:Receive on it)");
      } else if (((now - this.startedAt[operation]) | 0) >= this.deadlineMs[operation]) {
        this.fail(operation, ProvisioningStatus.TimedOut, "no reply within " + this.deadlineMs[operation] + " ms (the outcome is unknown)");
      }
    }
  }
}

/** The identity of a registered thing from CreateKeysAndCertificate's certificate and key: DER, the key as PKCS#8. */
function identityOf(thingName: string, created: CreatedCertificate): Identity {
  const certificateBuffer = new Uint8Array(pemMaxDerBytes(created.certificatePem));
  const certificateLength = pemToDer(created.certificatePem, "CERTIFICATE", certificateBuffer, 0);
  const problem = certificateDerProblem(certificateBuffer, 0, certificateLength);
  if (problem !== "") throw invalid(problem);
  // PKCS#1 grows by its PKCS#8 wrapper (at most 26 bytes).
  const keyBuffer = new Uint8Array(pemMaxDerBytes(created.privateKey) + 26);
  const keyLength = privateKeyToPkcs8Der(created.privateKey, keyBuffer, 0);
  const identity = { thingName, certificate: certificateBuffer.slice(0, certificateLength), privateKey: keyBuffer.slice(0, keyLength) };
  keyBuffer.fill(0);
  return identity;
}
