// The AWS IoT Device Shadow client, over MqttClient's public API: classic and named shadows, get,
// update and delete with a client token and a deadline each, deltas filtered by version, and the
// /update/documents stream. Memory is fixed when it is built: the shadows it can serve, the requests
// that may wait at once, the reply filters, and one buffer for the request documents. (Its reply
// filters are its reply topics: shadow i's are filter slots 8 i to 8 i + 7.)
//
//   const shadows = new ShadowClient(client, { maxShadows: 2 });
//   const device = shadows.shadow("my-thing");                 // classic; shadows.shadow("my-thing", "config") for a named one
//   device.onDelta((delta) => apply(JSON.parse(textOf(delta.payload))));
//   device.update('{"state":{"reported":{"interval":5000}}}', (status, reply) => {});
//
// The reply subscriptions of an operation are asked for at its first request (a delta's when a
// delta handler is set), before that request's PUBLISH, and kept: the client renews them after a
// reconnect without a session. Requests are QoS 1 PUBLISHes, so while offline they follow the
// client's queue (queued, or dropped and reported "dropped", or refused at the call).

import type { InboundMessage, MqttClient } from "../client";
import { utf8Length, writeUtf8 } from "../topic";
import { ErrorCode, invalid, IoTLinkError, isWordOf, shown, wholeNumber } from "../types";
import { JsonObjectCheck, Needs, writeAscii } from "./json";
import { checkTimeout, EMPTY_PAYLOAD, type LayerOptions, ReplyLayer, type ReplyStats, ReplyStatus } from "./requests";

export { REPLY_STATUS_NAMES, ReplyStatus } from "./requests";
export type { ReplyStats } from "./requests";

/** The Device Shadow service's limit on a document (bytes). */
export const SHADOW_MAX_DOCUMENT_BYTES = 8192;

export const enum ShadowOperation {
  Get = 0,
  Update = 1,
  Delete = 2,
}

export const SHADOW_OPERATION_NAMES: readonly string[] = Object.freeze(["get", "update", "delete"]);

/** What a request's callback is given: one object, reused; read it during the call. */
export interface ShadowReply {
  readonly shadow: Shadow;
  /** "get", "update" or "delete". */
  readonly operation: string;
  /** The request's number, as the call returned it (its client token is `shadow.tokenOf(requestId)`). */
  readonly requestId: number;
  /** The reply document, a view valid during the callback only; empty for a timeout or a drop. */
  readonly payload: Uint8Array;
  /** The document's top-level version; -1 when it has none. */
  readonly version: number;
  /** A rejection's error code (400, 404, 409, 413...); 0 otherwise. */
  readonly code: number;
}

export type ShadowCallback = (status: ReplyStatus, reply: ShadowReply) => void;

/** A delta (or an /update/documents message): one object, reused; the payload is valid during the call only. */
export interface ShadowMessage {
  readonly shadow: Shadow;
  /** The top-level version (a delta's); -1 when it has none (/update/documents carries its versions inside). */
  readonly version: number;
  readonly payload: Uint8Array;
}

export type ShadowMessageHandler = (message: ShadowMessage) => void;

export interface ShadowStats extends ReplyStats {
  /** Deltas handed to a handler. */
  deltas: number;
  /** Deltas discarded: their version was not newer than the last one seen (out of order, or a duplicate). */
  staleDeltas: number;
}

export interface ShadowClientOptions extends LayerOptions {
  /** Shadows (classic or named, of any things) this client can serve; default 2. */
  maxShadows?: number;
  /** The largest request document, in bytes: the size of the one buffer they are written in. Default the shadow's 8 KB or the client's maxPacketBytes, whichever is smaller. */
  maxDocumentBytes?: number;
}


/** What is wrong with a thing name and a shadow name ("" for the classic shadow), or "". */
export function shadowNamesProblem(thingName: unknown, shadowName: unknown): string {
  if (typeof thingName !== "string" || !isWordOf(thingName, 1, 128, ":_-")) return "thingName must be 1 to 128 of A-Z a-z 0-9 : _ -, got " + shown(thingName);
  if (typeof shadowName !== "string" || (shadowName !== "" && !isWordOf(shadowName, 1, 64, ":_-"))) return "shadowName must be 1 to 64 of A-Z a-z 0-9 : _ - (or \"\" for the classic shadow), got " + shown(shadowName);
  return "";
}

// Reply topics after a shadow's prefix, in filter order: accepted and rejected of get, update,
// delete (2 * operation + rejected), then delta and documents.
const SUFFIXES: readonly string[] = Object.freeze(["get/accepted", "get/rejected", "update/accepted", "update/rejected", "delete/accepted", "delete/rejected", "update/delta", "update/documents"]);
const DELTA = 6;
const DOCUMENTS = 7;
const FILTERS_PER_SHADOW = 8;
const charCodeAt = String.prototype.charCodeAt;

/** The bytes of a QoS 1 PUBLISH with a topic and a payload of these sizes. */
function publishPacketBytes(topicBytes: number, payloadBytes: number): number {
  const remaining = 2 + topicBytes + 2 + payloadBytes;
  return 1 + (remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4) + remaining;
}

export class ShadowClient extends ReplyLayer {
  declare readonly stats: ShadowStats;
  readonly maxShadows: number;
  readonly maxDocumentBytes: number;
  private readonly shadows: Shadow[] = [];
  /** Per shadow, the get, update and delete topics. */
  private readonly requestTopics: string[] = [];
  /** Per shadow, its topic prefix's length, read at each update (a string's length read on XS makes a wrapper: 2 slots). */
  private readonly prefixLengths: number[] = [];
  /** Per shadow, the last version a delta or a get reply carried (-1: none). Plain numbers: a typed array costs 7 slots. */
  private readonly lastVersions: number[];
  /** Per shadow, its delta handler (at 2 i) and its documents handler (at 2 i + 1). */
  private readonly handlers: (ShadowMessageHandler | undefined)[];
  private readonly buffer: Uint8Array;
  private readonly check = new JsonObjectCheck();
  private readonly reply = { shadow: undefined as unknown as Shadow, operation: "", requestId: 0, payload: EMPTY_PAYLOAD, version: -1, code: 0 };
  private readonly message = { shadow: undefined as unknown as Shadow, version: -1, payload: EMPTY_PAYLOAD };

  constructor(client: MqttClient, options: ShadowClientOptions = {}) {
    if (options === null || typeof options !== "object") throw invalid("options must be an object, got " + shown(options));
    const maxShadows = wholeNumber("maxShadows", options.maxShadows ?? 2, 1, 64);
    super(client, options, maxShadows * FILTERS_PER_SHADOW);
    this.stats.deltas = 0;
    this.stats.staleDeltas = 0;
    this.maxShadows = maxShadows;
    const largest = Math.min(SHADOW_MAX_DOCUMENT_BYTES, client.maxPacketBytes);
    this.maxDocumentBytes = wholeNumber("maxDocumentBytes", options.maxDocumentBytes ?? largest, 128, SHADOW_MAX_DOCUMENT_BYTES);
    this.buffer = new Uint8Array(this.maxDocumentBytes);
    this.lastVersions = new Array(maxShadows).fill(-1);
    this.handlers = new Array(maxShadows * 2).fill(undefined);
  }

  /**
   * The handler of a thing's classic shadow, or of its named shadow `shadowName`; the same object
   * for the same names. Subscribes to nothing yet. Throws not-accepted beyond maxShadows.
   */
  shadow(thingName: string, shadowName = ""): Shadow {
    const problem = shadowNamesProblem(thingName, shadowName);
    if (problem !== "") throw invalid(problem);
    const prefix = "$aws/things/" + thingName + "/shadow/" + (shadowName === "" ? "" : "name/" + shadowName + "/");
    const shadows = this.shadows;
    for (let known = 0; known < shadows.length; known++) if (shadows[known].topicPrefix === prefix) return shadows[known];
    const index = shadows.length;
    if (index === this.maxShadows) throw new IoTLinkError(ErrorCode.NotAccepted, "this ShadowClient serves " + this.maxShadows + " shadows already (maxShadows)");
    // New topics take the next free filter slots, and filters are never removed: 8 * index + k.
    for (let k = 0; k < FILTERS_PER_SHADOW; k++) this.filterSlot(prefix + SUFFIXES[k]);
    const shadow = new Shadow(this, index, thingName, shadowName, prefix);
    shadows.push(shadow);
    this.prefixLengths.push(prefix.length);
    for (let operation = 0; operation < 3; operation++) this.requestTopics.push(prefix + SHADOW_OPERATION_NAMES[operation]);
    return shadow;
  }

  /** @internal The last version a delta or a get reply of shadow `index` carried (-1: none). */
  lastVersionOf(index: number): number {
    return this.lastVersions[index];
  }

  /** @internal */
  resetVersionOf(index: number): void {
    this.lastVersions[index] = -1;
  }

  /** @internal Sets or clears a delta (kind DELTA) or documents (DOCUMENTS) handler. */
  setHandler(index: number, kind: number, handler: ShadowMessageHandler | undefined): void {
    if (handler !== undefined && typeof handler !== "function") throw invalid("a handler must be a function, got " + shown(handler));
    this.handlers[index * 2 + kind - DELTA] = handler;
    const slot = index * FILTERS_PER_SHADOW + kind;
    if (handler !== undefined) this.wantFilter(slot, false);
    else this.unwantFilter(slot);
  }

  /** @internal A get, update or delete of shadow `index`. `document` only for an update. */
  request(index: number, operation: ShadowOperation, document: string | object | undefined, onReply: ShadowCallback | undefined, timeoutMs: number | undefined): number {
    if (onReply !== undefined && typeof onReply !== "function") throw invalid("onReply must be a function, got " + shown(onReply));
    const timeout = timeoutMs === undefined ? this.timeoutMs : checkTimeout("timeoutMs", timeoutMs);
    this.checkRoom();
    const id = this.nextRequestId();
    const length = operation === ShadowOperation.Update ? this.writeUpdate(index, document, id) : this.writeTokenDocument(this.buffer, id);
    // The replies' subscriptions go out before the request.
    const accepted = index * FILTERS_PER_SHADOW + 2 * operation;
    this.wantFilter(accepted, true);
    this.wantFilter(accepted + 1, true);
    this.send(id, index, operation, onReply as never, timeout, this.requestTopics[index * 3 + operation], this.buffer.subarray(0, length));
    return id;
  }

  /** Writes an update's document, with the request's client token, into the buffer; returns its length. */
  private writeUpdate(index: number, document: string | object | undefined, id: number): number {
    let text: string;
    let closeAt: number;
    let hasMembers: boolean;
    if (typeof document === "string") {
      const problem = this.check.problem(document, 30);
      if (problem !== "") throw invalid("update: " + problem);
      text = document;
      closeAt = this.check.closeAt;
      hasMembers = this.check.hasMembers;
    } else if (document !== null && typeof document === "object" && !Array.isArray(document)) {
      if ("clientToken" in document) throw invalid("update: the document has its own clientToken; the client sets one per request");
      try {
        text = JSON.stringify(document);
      } catch (error) {
        throw invalid("update: the document cannot be written as JSON: " + (error instanceof Error ? error.message : String(error)));
      }
      closeAt = text.length - 1;
      hasMembers = closeAt > 1;
    } else {
      throw invalid("update needs a JSON text or an object, got " + shown(document));
    }
    const bytes = utf8Length(text, true);
    if (bytes < 0) throw invalid("update: the document holds a lone surrogate (not encodable as UTF-8)");
    // The closing brace and what follows it are ASCII: the token goes where the brace was.
    const before = bytes - (text.length - closeAt);
    const total = before + (hasMembers ? 1 : 0) + 15 + this.tokenBytes + 2;
    if (total > SHADOW_MAX_DOCUMENT_BYTES) throw invalid("update: a document of " + total + " bytes with its client token is over the Device Shadow limit of " + SHADOW_MAX_DOCUMENT_BYTES + " bytes");
    if (total > this.maxDocumentBytes || bytes > this.maxDocumentBytes) throw invalid("update: a document of " + total + " bytes with its client token is over maxDocumentBytes (" + this.maxDocumentBytes + ")");
    const packet = publishPacketBytes(this.prefixLengths[index] + 6, total);
    if (packet > this.client.maxPacketBytes) throw invalid("update: a document of " + total + " bytes makes a PUBLISH of " + packet + " bytes, over the client's maxPacketBytes (" + this.client.maxPacketBytes + ")");
    const buffer = this.buffer;
    writeUtf8(text, buffer, 0);
    let at = before;
    if (hasMembers) buffer[at++] = 0x2c;
    at = writeAscii("\"clientToken\":\"", buffer, at);
    at = this.writeToken(buffer, at, id);
    buffer[at++] = 0x22;
    buffer[at++] = 0x7d;
    return at;
  }

  // ---------------------------------------------------------------- replies

  protected route(message: InboundMessage): void {
    const topic = message.topic;
    if (charCodeAt.call(topic, 0) !== 0x24) return; // "$"
    // Whole topics compared (natively): shadow i's reply topics are the filters at 8 * i + kind.
    const topics = this.filters;
    for (let t = 0; t < topics.length; t++) {
      if (topics[t] !== topic) continue;
      this.onReply(t >> 3, t & 7, message.payload);
      return;
    }
  }

  private onReply(index: number, kind: number, payload: Uint8Array): void {
    const fields = this.fields;
    // What each message needs read: a delta its version, a reply its token and version or code.
    if (kind === DELTA) fields.scan(payload, Needs.Version);
    else if (kind < DELTA) fields.scan(payload, (kind & 1) === 0 ? Needs.Token | Needs.Version : Needs.Token | Needs.Code);
    if (kind >= DELTA) {
      const handler = this.handlers[index * 2 + kind - DELTA];
      if (kind === DELTA) {
        const version = fields.version;
        if (version >= 0) {
          if (version <= this.lastVersions[index]) {
            this.stats.staleDeltas++;
            return;
          }
          this.lastVersions[index] = version;
        }
        if (handler !== undefined) this.stats.deltas++;
      }
      if (handler === undefined) return;
      const message = this.message;
      message.shadow = this.shadows[index];
      message.version = kind === DELTA ? fields.version : -1;
      message.payload = payload;
      this.call(handler as never, message, undefined, undefined);
      return;
    }
    const operation = kind >> 1;
    const slot = this.matchReply(payload, index, operation);
    if (slot < 0) return;
    const accepted = (kind & 1) === 0;
    if (accepted && operation === ShadowOperation.Get && fields.version > this.lastVersions[index]) this.lastVersions[index] = fields.version;
    // A deleted shadow may come back with its versions counting from 0 again (after 48 hours).
    if (accepted && operation === ShadowOperation.Delete) this.lastVersions[index] = -1;
    this.complete(slot, accepted ? ReplyStatus.Accepted : ReplyStatus.Rejected, payload);
  }

  protected report(slot: number, status: ReplyStatus, payload: Uint8Array, callback: (...args: never[]) => void): void {
    const reply = this.reply;
    const answered = status === ReplyStatus.Accepted || status === ReplyStatus.Rejected;
    reply.shadow = this.shadows[this.ownerOf(slot)];
    reply.operation = SHADOW_OPERATION_NAMES[this.operationOf(slot)];
    reply.requestId = this.requestIdOf(slot);
    reply.payload = payload;
    reply.version = answered ? this.fields.version : -1;
    reply.code = status === ReplyStatus.Rejected ? this.fields.code : 0;
    this.call(callback as never, status, reply, undefined);
  }
}

/** One shadow (classic or named) of one thing, served by a ShadowClient. */
export class Shadow {
  /** @internal */
  constructor(
    readonly client: ShadowClient,
    private readonly index: number,
    readonly thingName: string,
    /** "" for the classic shadow. */
    readonly shadowName: string,
    /** "$aws/things/<thing>/shadow/" or "$aws/things/<thing>/shadow/name/<name>/". */
    readonly topicPrefix: string,
  ) {}

  /**
   * The last version a delta or a get reply carried (-1: none yet, or after a delete). A delta whose
   * version is not above it is discarded as out of order.
   */
  get lastVersion(): number {
    return this.client.lastVersionOf(this.index);
  }

  /** Forgets the last version seen, so that the next delta is taken whatever its version. */
  resetVersion(): void {
    this.client.resetVersionOf(this.index);
  }

  /** The client token of request `requestId`. */
  tokenOf(requestId: number): string {
    return this.client.tokenOf(requestId);
  }

  /**
   * Asks for the shadow document; `onReply(status, reply)` gets it (status Accepted), the service's
   * error (Rejected; 404 when there is no shadow), TimedOut or Dropped. Returns the request's number.
   */
  get(onReply?: ShadowCallback, timeoutMs?: number): number {
    return this.client.request(this.index, ShadowOperation.Get, undefined, onReply, timeoutMs);
  }

  /**
   * Sends an update: a JSON text or an object, such as {"state":{"reported":{...}}} (a top-level
   * "version" makes it conditional: 409 on a mismatch). The client adds its clientToken.
   */
  update(document: string | object, onReply?: ShadowCallback, timeoutMs?: number): number {
    return this.client.request(this.index, ShadowOperation.Update, document, onReply, timeoutMs);
  }

  /** Deletes the shadow. */
  delete(onReply?: ShadowCallback, timeoutMs?: number): number {
    return this.client.request(this.index, ShadowOperation.Delete, undefined, onReply, timeoutMs);
  }

  /**
   * Sets the handler of this shadow's deltas (subscribing to /update/delta), or with none clears it
   * (unsubscribing). Deltas whose version is not newer than the last seen are discarded.
   */
  onDelta(handler: ShadowMessageHandler | undefined): void {
    this.client.setHandler(this.index, DELTA, handler);
  }

  /** Sets (or clears) the handler of /update/documents: the whole document before and after each update. Size maxPacketBytes for it. */
  onDocuments(handler: ShadowMessageHandler | undefined): void {
    this.client.setHandler(this.index, DOCUMENTS, handler);
  }
}
