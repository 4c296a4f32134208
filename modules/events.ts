// The one place where user code is called. The session records what happened (post) while it changes
// state; the client delivers the records (deliver) when the call that caused them is complete, in
// order, so a handler sees finished state and may call anything on the client. Inbound messages
// are the exception: their payload is a view into the receive buffer, so they are handed over at
// once (after everything recorded before them). Memory is fixed: a ring of records and a listener table.

import { type AckCallback } from "./ring";
import { ErrorCode, invalid, IoTLinkError, shown } from "./types";

export const enum EventId {
  Online = 0,
  Offline = 1,
  Restored = 2,
  Message = 3,
  Drop = 4,
  Reconnecting = 5,
  State = 6,
  Error = 7,
  /** Not a listener event: a request's own acknowledgement callback. */
  Ack = 8,
}

/** The event names `on()` takes, by EventId. */
export const EVENT_NAMES: readonly string[] = Object.freeze(["online", "offline", "restored", "message", "drop", "reconnecting", "state", "error"]);

/** Listeners one event may have. */
export const LISTENERS_PER_EVENT = 4;

/** Records held between two deliveries; loops that record many (drops, timeouts) deliver when it fills. */
const RECORDS = 32;

type Listener = (first: unknown, second: unknown, third: unknown) => void;

/**
 * The `error` listeners of a layer over the client (Shadow, Jobs, provisioning): a fixed list of
 * LISTENERS_PER_EVENT, which on() fills and off() empties, as the client's own events.
 */
export type ErrorListeners = (((error: IoTLinkError) => void) | undefined)[];

export function newErrorListeners(): ErrorListeners {
  return [undefined, undefined, undefined, undefined];
}

/** A layer's on(event, listener): only "error" exists; a listener added twice is added once. */
export function addErrorListener(listeners: ErrorListeners, event: unknown, listener: unknown): void {
  if (event !== "error") throw invalid("unknown event " + shown(event) + "; the event is error");
  if (typeof listener !== "function") throw invalid("a listener for error must be a function, got " + shown(listener));
  if (listeners.indexOf(listener as (error: IoTLinkError) => void) >= 0) return;
  const free = listeners.indexOf(undefined);
  if (free < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "event error has " + LISTENERS_PER_EVENT + " listeners already; remove one with off()");
  listeners[free] = listener as (error: IoTLinkError) => void;
}

/** A layer's off(event, listener). */
export function removeErrorListener(listeners: ErrorListeners, event: unknown, listener: unknown): void {
  const index = event === "error" ? listeners.indexOf(listener as (error: IoTLinkError) => void) : -1;
  if (index >= 0) listeners[index] = undefined;
}

/**
 * Calls a layer's user callback; if it throws, reports "a callback threw: <message>" (the message
 * passed through `clean`, which cuts secrets out) to the error listeners. Returns how many calls threw:
 * the callback's and the listeners'.
 */
export function callUserCode(listeners: ErrorListeners, clean: ((text: string) => string) | undefined, callback: (first: unknown, second: unknown, third: unknown) => void, first: unknown, second: unknown, third: unknown): number {
  try {
    callback(first, second, third);
    return 0;
  } catch (thrown) {
    const text = thrown instanceof Error ? thrown.message : String(thrown);
    const error = new IoTLinkError(ErrorCode.Callback, "a callback threw: " + (clean === undefined ? text : clean(text)));
    let threw = 1;
    for (let i = 0; i < listeners.length; i++) {
      const listener = listeners[i];
      if (listener === undefined) continue;
      try {
        listener(error);
      } catch {
        threw++;
      }
    }
    return threw;
  }
}

export class Events {
  /** `callbackErrors` counts calls to user code that threw (each also reported as an `error` event). */
  constructor(private readonly counters: { callbackErrors: number }) {}

  private readonly listeners: (Listener | undefined)[] = new Array(EVENT_NAMES.length * LISTENERS_PER_EVENT).fill(undefined);
  private readonly id = new Uint8Array(RECORDS);
  private readonly first: unknown[] = new Array(RECORDS).fill(undefined);
  private readonly second: unknown[] = new Array(RECORDS).fill(undefined);
  private readonly number = new Int32Array(RECORDS * 3);
  private head = 0;
  private count = 0;
  private delivering = false;

  /** The EventId of an event name, or an invalid-argument error listing the names. */
  static idOf(event: unknown): EventId {
    const id = typeof event === "string" ? EVENT_NAMES.indexOf(event) : -1;
    if (id < 0) throw invalid("unknown event " + shown(event) + "; events are " + EVENT_NAMES.join(", "));
    return id as EventId;
  }

  add(id: EventId, listener: unknown): void {
    if (typeof listener !== "function") throw invalid("a listener for " + EVENT_NAMES[id] + " must be a function, got " + shown(listener));
    const base = id * LISTENERS_PER_EVENT;
    let free = -1;
    for (let k = base; k < base + LISTENERS_PER_EVENT; k++) {
      if (this.listeners[k] === listener) return;
      if (free < 0 && this.listeners[k] === undefined) free = k;
    }
    if (free < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "event " + EVENT_NAMES[id] + " has " + LISTENERS_PER_EVENT + " listeners already; remove one with off()");
    this.listeners[free] = listener as Listener;
  }

  remove(id: EventId, listener: unknown): void {
    const base = id * LISTENERS_PER_EVENT;
    for (let k = base; k < base + LISTENERS_PER_EVENT; k++) if (this.listeners[k] === listener) this.listeners[k] = undefined;
  }

  /** Records an event for the next delivery. Strings and objects go in `first`/`second`, numbers in a, b, c. */
  post(id: EventId, first: unknown, second: unknown, a: number, b: number, c: number): void {
    // Only loops over many entries (drops, timeouts) can fill the ring, and they record each entry
    // after its state change is complete: delivering here is as safe as at the end of the call.
    if (this.count === RECORDS) this.deliver();
    let at = this.head + this.count;
    if (at >= RECORDS) at -= RECORDS;
    this.id[at] = id;
    this.first[at] = first;
    this.second[at] = second;
    this.number[at * 3] = a;
    this.number[at * 3 + 1] = b;
    this.number[at * 3 + 2] = c;
    this.count++;
  }

  postError(code: ErrorCode, message: string): void {
    this.post(EventId.Error, new IoTLinkError(code, message), undefined, 0, 0, 0);
  }

  /**
   * A request's acknowledgement: called now when nothing recorded waits before it and no delivery
   * is under way (the caller reports it last, once its state is complete), else recorded.
   */
  ack(onAck: AckCallback, status: number, packetId: number, detail: number): void {
    if (this.count === 0 && !this.delivering) this.call(onAck as Listener, status, packetId, detail);
    else this.post(EventId.Ack, onAck, undefined, status, packetId, detail);
  }

  /** Delivers every recorded event, oldest first. A call made from a handler records; the outer loop delivers. */
  deliver(): void {
    if (this.delivering || this.count === 0) return;
    this.delivering = true;
    while (this.count > 0) {
      const at = this.head;
      const id = this.id[at];
      const first = this.first[at];
      const second = this.second[at];
      const a = this.number[at * 3];
      const b = this.number[at * 3 + 1];
      const c = this.number[at * 3 + 2];
      this.first[at] = undefined;
      this.second[at] = undefined;
      this.head = at + 1 === RECORDS ? 0 : at + 1;
      this.count--;
      switch (id) {
        case EventId.Ack:
          this.call(first as Listener, a, b, c);
          break;
        case EventId.Online:
          this.emit(id, a === 1, undefined);
          break;
        case EventId.Reconnecting:
          this.emit(id, a, b);
          break;
        case EventId.State:
          this.emit(id, a, first);
          break;
        default: // offline (reason), drop (kind, topic), error (the error), restored
          this.emit(id, first, second);
      }
    }
    this.delivering = false;
  }

  /** Hands an inbound message to `handler` now (after what was recorded before it). */
  callNow(handler: Listener, message: unknown): void {
    if (this.count > 0) this.deliver();
    this.call(handler, message, undefined, undefined);
  }

  /** Calls the listeners of an event now (after what was recorded before it); false if it has none. */
  emitNow(id: EventId, first: unknown): boolean {
    if (this.count > 0) this.deliver();
    const base = id * LISTENERS_PER_EVENT;
    let called = false;
    for (let k = base; k < base + LISTENERS_PER_EVENT; k++) {
      const listener = this.listeners[k];
      if (listener !== undefined) {
        called = true;
        this.call(listener, first, undefined, undefined);
      }
    }
    return called;
  }

  private emit(id: EventId, first: unknown, second: unknown): void {
    const base = id * LISTENERS_PER_EVENT;
    for (let k = base; k < base + LISTENERS_PER_EVENT; k++) {
      const listener = this.listeners[k];
      if (listener !== undefined) this.call(listener, first, second, undefined);
    }
  }

  /**
   * Calls user code; a throw is counted and reported as an `error` event, and the client carries on.
   * Fixed arguments rather than a rest parameter: no array is allocated per call.
   */
  private call(listener: Listener, first: unknown, second: unknown, third: unknown): void {
    try {
      listener(first, second, third);
    } catch (thrown) {
      this.counters.callbackErrors++;
      // An error listener that throws is not reported again: that would never end.
      const fromErrorListener = this.isListener(EventId.Error, listener);
      if (!fromErrorListener) this.postError(ErrorCode.Callback, "a callback threw: " + (thrown instanceof Error ? thrown.message : String(thrown)));
    }
  }

  private isListener(id: EventId, listener: Listener): boolean {
    const base = id * LISTENERS_PER_EVENT;
    for (let k = base; k < base + LISTENERS_PER_EVENT; k++) if (this.listeners[k] === listener) return true;
    return false;
  }
}
