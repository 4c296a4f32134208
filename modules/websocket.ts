// MQTT over WebSocket (RFC 6455) as a Transport over another Transport (TLS to port 443 for AWS
// IoT): the HTTP/1.1 Upgrade handshake, then each write() as one masked binary frame, and the
// server's binary frames handed on as a byte stream. No Node, DOM or Moddable API: SHA-1 and the
// random source are injected.
//
// Memory, all allocated here, per transport: maxPacketBytes + 14 (transmit frame) + 1419 (side
// buffer) + 125 (control payload) + 64 (masking key pool) + 16 (Sec-WebSocket-Key) + 60 (SHA-1
// input) + 2 (close status) = maxPacketBytes + 1700 bytes of buffers. Strings are made only at the
// handshake, once per open().
//
// The control packet reserve: the core writes a PUBACK, PINGREQ or DISCONNECT (at most
// CONTROL_PACKET_BYTES, 4) even when larger writes are refused, and gives the link up if it is
// refused. Framed, such a packet is 6 + 4 = 10 bytes, and the inner transport keeps its reserve
// only for writes of at most 4 bytes (hosts/moddable/transport.ts: 512 bytes of them), so that
// reserve does not take our frames. This transport therefore keeps its own: frames the inner
// transport refused wait in the side buffer (room for 128 control packet frames, as many as the
// Moddable host's reserve holds packets, plus one pong and one close frame) and go out, in order,
// before anything else when the inner transport says it has room.

import { CloseCode, FrameReader, type FrameHandler, MAX_CONTROL_PAYLOAD, MAX_FRAME_HEADER_BYTES, Opcode, SMALL_FRAME_HEADER_BYTES, writeMaskedFrame } from "./websocket-frames";
import { CONTROL_PACKET_BYTES, hostProblem, invalid, isWordOf, type Transport, type TransportSink, unknownNameProblem, wholeNumberProblem } from "./types";

export interface WebSocketSettings {
  /** Host header value (the endpoint host). */
  readonly host: string;
  /**
   * Called at every open(): the request target, e.g. "/mqtt?X-Amz-Algorithm=..." (signed anew at
   * each connect). If it throws, the open fails: onTransportClosed with the error's message.
   */
  readonly requestTarget: () => string;
  /** Sec-WebSocket-Protocol asked for; "mqtt" when absent, "" for none. The 101 answer must name it. */
  readonly protocol?: string;
  /** The largest MQTT packet the client sends or accepts (the client's maxPacketBytes): bounds frames and buffers. */
  readonly maxPacketBytes: number;
  /** Fills `bytes` with random bytes: the 4-byte masking keys and the 16-byte Sec-WebSocket-Key. */
  readonly randomBytes: (bytes: Uint8Array) => void;
  /** SHA-1 of `bytes` (20 bytes): for the Sec-WebSocket-Accept check. */
  readonly sha1: (bytes: Uint8Array) => Uint8Array;
}

/** Counters since construction. */
export interface WebSocketStats {
  /** Frames received whole (their header read), data and control. */
  framesIn: number;
  /** Frames taken for sending (by the inner transport, or kept in the control reserve). */
  framesOut: number;
  pingsAnswered: number;
  /** The status code of the server's last close frame (1005 for none), 0 before any. */
  closeCodeReceived: number;
}

const SETTING_NAMES = "host, requestTarget, protocol, maxPacketBytes, randomBytes, sha1";
/** RFC 6455 section 1.3: appended to the key before hashing. */
const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** The longest answer head read; a longer one is refused. */
const HEAD_LIMIT_BYTES = 1024;
/** A refusal's body excerpt: at most this many bytes are read, and shown printable. */
const EXCERPT_BYTES = 120;
/** 128 control packet frames, then one pong of 125 bytes and one close frame with a status. */
const CONTROL_FRAMES_LIMIT = 128 * (SMALL_FRAME_HEADER_BYTES + CONTROL_PACKET_BYTES);
const SIDE_BUFFER_BYTES = CONTROL_FRAMES_LIMIT + SMALL_FRAME_HEADER_BYTES + MAX_CONTROL_PAYLOAD + SMALL_FRAME_HEADER_BYTES + 2;
/** Masking keys drawn from randomBytes 16 at a time, instead of one call per frame. */
const MASK_POOL_BYTES = 64;
const KEY_BYTES = 16;
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
// Frozen for preloading (not global: test() never writes lastIndex).
/** An HTTP token's punctuation (RFC 9110), for isWordOf: no RegExp kept in this preloaded module (see isWordOf). */
const TOKEN_PUNCTUATION = "!#$%&'*+.^_`|~-";

/** Whether `target` is "/" followed by visible ASCII. */
function isRequestTarget(target: string): boolean {
  if (target.length === 0 || target.charCodeAt(0) !== 0x2f) return false;
  for (let i = 1; i < target.length; i++) {
    const code = target.charCodeAt(i);
    if (code < 0x21 || code > 0x7e) return false;
  }
  return true;
}

const enum Phase {
  /** Never opened, or aborted. */
  Idle = 0,
  /** The inner transport is opening. */
  Connecting = 1,
  /** Writing the Upgrade request. */
  Requesting = 2,
  AwaitingHead = 3,
  /** A refusal: reading a short excerpt of its body before reporting it. */
  AwaitingBody = 4,
  Open = 5,
  /** A close frame was sent: no more writes; the inner transport ends once the reserve is out. */
  Closing = 6,
  /** Reported (or about to be), or failed: nothing more is heard. */
  Closed = 7,
}

function base64(bytes: Uint8Array, length: number): string {
  let out = "";
  for (let i = 0; i < length; i += 3) {
    const b0 = bytes[i];
    const b1 = i + 1 < length ? bytes[i + 1] : 0;
    const b2 = i + 2 < length ? bytes[i + 2] : 0;
    out += BASE64[b0 >> 2] + BASE64[((b0 & 3) << 4) | (b1 >> 4)];
    out += i + 1 < length ? BASE64[((b1 & 15) << 2) | (b2 >> 6)] : "=";
    out += i + 2 < length ? BASE64[b2 & 63] : "=";
  }
  return out;
}

/** Text from the peer made safe to show: printable ASCII, white space folded, at most `limit` characters and "...". */
export function printable(text: string, limit: number): string {
  let out = "";
  let space = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c <= 0x20) {
      space = out.length > 0;
      continue;
    }
    if (out.length + (space ? 2 : 1) > limit) return out + "...";
    if (space) out += " ";
    space = false;
    out += c < 0x7f ? text[i] : "?";
  }
  return out;
}

/** The Latin-1 text of `bytes[from, to)`: one character a byte, for the handshake's heads. */
function latin1(bytes: Uint8Array, from: number, to: number): string {
  let out = "";
  for (let i = from; i < to; i++) out += String.fromCharCode(bytes[i]);
  return out;
}

function messageOf(error: unknown): string {
  return printable(error instanceof Error ? error.message : String(error), 200);
}

function isFunction(value: unknown): boolean {
  return typeof value === "function";
}

/** What is wrong with the settings, or "". */
function settingsProblem(inner: Transport, settings: WebSocketSettings): string {
  if (typeof inner !== "object" || inner === null || !isFunction(inner.open) || !isFunction(inner.write) || !isFunction(inner.end) || !isFunction(inner.abort)) {
    return "the websocket's inner transport must be a Transport (open, write, end, abort)";
  }
  if (typeof settings !== "object" || settings === null) return "websocket settings must be an object";
  const { host, requestTarget, protocol, maxPacketBytes, randomBytes, sha1 } = settings;
  return unknownNameProblem("websocket setting", settings, SETTING_NAMES) ||
    hostProblem("websocket host", host) ||
    (isFunction(requestTarget) ? "" : "websocket requestTarget must be a function returning the request target") ||
    (protocol === undefined || (typeof protocol === "string" && isWordOf(protocol, 0, 0x7fffffff, TOKEN_PUNCTUATION)) ? "" : "websocket protocol must be a token such as \"mqtt\" (or \"\" for none)") ||
    wholeNumberProblem("websocket maxPacketBytes", maxPacketBytes, 16, 268435460) ||
    (isFunction(randomBytes) ? "" : "websocket randomBytes must be a function filling a Uint8Array") ||
    (isFunction(sha1) ? "" : "websocket sha1 must be a function returning a 20-byte digest");
}

export class WebSocketTransport implements Transport {
  readonly stats: WebSocketStats = { framesIn: 0, framesOut: 0, pingsAnswered: 0, closeCodeReceived: 0 };
  private readonly inner: Transport;
  private readonly host: string;
  private readonly requestTarget: () => string;
  private readonly protocol: string;
  private readonly maxPacketBytes: number;
  private readonly randomBytes: (bytes: Uint8Array) => void;
  private readonly sha1: (bytes: Uint8Array) => Uint8Array;
  /** One outgoing data frame: header, key and masked payload, written with one inner write. */
  private readonly transmit: Uint8Array;
  /**
   * The handshake's request (in pieces) and answer head, then, once open, the control reserve:
   * frames the inner transport refused, waiting in order for room.
   */
  private readonly side = new Uint8Array(SIDE_BUFFER_BYTES);
  private readonly maskPool = new Uint8Array(MASK_POOL_BYTES);
  private maskAt = MASK_POOL_BYTES;
  private readonly keyBytes = new Uint8Array(KEY_BYTES);
  private readonly acceptInput = new Uint8Array(24 + ACCEPT_GUID.length);
  private readonly status = new Uint8Array(2);
  private readonly reader: FrameReader;
  private readonly innerSink: TransportSink;

  private sink: TransportSink | undefined;
  private phase = Phase.Idle;
  /** Bumped by open(), abort() and every report: work begun for one link is not done on another. */
  private link = 0;
  private request = "";
  private requestAt = 0;
  private expectedAccept = "";
  private headBytes = 0;
  /** Bytes on the current head line, not counting CR: an empty line ends the head. */
  private lineBytes = 0;
  private refusal = "";
  private excerptWanted = 0;
  private excerptBytes = 0;
  /** The body is longer than the excerpt kept. */
  private excerptCut = false;
  /** Bytes waiting in the control reserve (the side buffer, once open). */
  private reserved = 0;
  /** An outer write was refused: tell the outer sink when there is room. */
  private refusedOuter = false;
  /** A pong waits in the reserve. */
  private pongReserved = false;
  private innerEnded = false;
  /** The server's close, reported when the inner transport has closed. */
  private serverClose = "";

  constructor(inner: Transport, settings: WebSocketSettings) {
    const problem = settingsProblem(inner, settings);
    if (problem !== "") throw invalid(problem);
    this.inner = inner;
    this.host = settings.host;
    this.requestTarget = settings.requestTarget;
    this.protocol = settings.protocol ?? "mqtt";
    this.maxPacketBytes = settings.maxPacketBytes;
    this.randomBytes = settings.randomBytes;
    this.sha1 = settings.sha1;
    this.transmit = new Uint8Array(settings.maxPacketBytes + MAX_FRAME_HEADER_BYTES);
    const frameHandler: FrameHandler = {
      onFrameData: (bytes, offset, length) => this.frameData(bytes, offset, length),
      onControlFrame: (opcode, payload, length) => this.controlFrame(opcode, payload, length),
      onFrameError: (closeCode, what) => this.protocolError(closeCode, what),
    };
    this.reader = new FrameReader(frameHandler, this.stats);
    this.innerSink = {
      onTransportConnected: () => this.innerConnected(),
      onTransportData: (bytes, offset, length) => this.innerData(bytes, offset, length),
      onTransportClosed: (reason) => this.innerClosed(reason),
      onTransportWritable: () => this.innerWritable(),
    };
  }

  // ---------------------------------------------------------------- Transport

  open(sink: TransportSink): void {
    if (typeof sink !== "object" || sink === null || !isFunction(sink.onTransportConnected) || !isFunction(sink.onTransportData) || !isFunction(sink.onTransportClosed) || !isFunction(sink.onTransportWritable)) {
      throw invalid("open() needs a TransportSink (onTransportConnected, onTransportData, onTransportClosed, onTransportWritable)");
    }
    this.link++;
    this.sink = sink;
    this.reader.reset();
    this.request = "";
    this.requestAt = 0;
    this.headBytes = 0;
    this.lineBytes = 0;
    this.refusal = "";
    this.reserved = 0;
    this.refusedOuter = false;
    this.pongReserved = false;
    this.innerEnded = false;
    this.serverClose = "";
    const problem = this.prepareRequest();
    if (problem !== "") {
      // Nothing to open: a link still open from an earlier open() goes, and the failure is
      // reported on a later turn, as a transport reports a failed connection (not when aborted meanwhile).
      this.phase = Phase.Closed;
      this.inner.abort();
      const link = this.link;
      Promise.resolve().then(() => {
        if (this.link === link) sink.onTransportClosed(problem);
      });
      return;
    }
    this.phase = Phase.Connecting;
    this.inner.open(this.innerSink);
  }

  /** One binary frame, written to the inner transport with one write; false: nothing taken. */
  write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (!(bytes instanceof Uint8Array) || (offset | 0) !== offset || (length | 0) !== length || offset < 0 || length < 0 || length > this.maxPacketBytes || offset + length > bytes.length) {
      throw invalid("websocket write() needs a Uint8Array and a whole offset and length within it, the length at most maxPacketBytes (" + this.maxPacketBytes + ")");
    }
    if (this.phase !== Phase.Open) return false;
    if (length === 0) return true;
    // A control packet goes through the reserve, so that it is taken even when the inner transport is full.
    if (length <= CONTROL_PACKET_BYTES) {
      if (this.sendSmallFrame(Opcode.Binary, bytes, offset, length, CONTROL_FRAMES_LIMIT)) return true;
      this.refusedOuter = true;
      return false;
    }
    // Frames in the reserve go first: nothing overtakes them.
    if (this.reserved === 0) {
      const end = writeMaskedFrame(this.transmit, 0, Opcode.Binary, bytes, offset, length, this.maskPool, this.nextMaskAt());
      if (this.inner.write(this.transmit, 0, end)) {
        this.stats.framesOut++;
        return true;
      }
    }
    this.refusedOuter = true;
    return false;
  }

  /** A close frame (1000), then the inner transport ends once the reserve is out; it reports the closure. */
  end(): void {
    const phase = this.phase;
    if (phase === Phase.Open) {
      this.phase = Phase.Closing;
      this.sendClose(CloseCode.Normal);
      this.endInnerWhenSent();
    } else if (phase >= Phase.Connecting && phase <= Phase.AwaitingBody) {
      // No WebSocket yet: the inner link ends, and its closure is reported as a failed upgrade.
      this.inner.end();
    }
  }

  abort(): void {
    this.link++;
    this.phase = Phase.Idle;
    this.reader.reset();
    this.request = "";
    this.reserved = 0;
    this.inner.abort();
  }

  // ---------------------------------------------------------------- the handshake

  /** The request and the Accept expected for it, made now (signed anew at each open()); or why not. */
  private prepareRequest(): string {
    let target: string;
    try {
      target = this.requestTarget();
    } catch (error) {
      return "websocket request target failed: " + messageOf(error);
    }
    // Not shown: a signed target carries credentials.
    if (typeof target !== "string" || !isRequestTarget(target)) {
      return "websocket requestTarget() must return a path starting with / in printable ASCII without spaces, got " + (typeof target === "string" ? target.length + " characters" : typeof target);
    }
    let key: string;
    try {
      this.randomBytes(this.keyBytes);
      key = base64(this.keyBytes, KEY_BYTES);
      const input = this.acceptInput;
      const text = key + ACCEPT_GUID;
      for (let i = 0; i < text.length; i++) input[i] = text.charCodeAt(i);
      const digest = this.sha1(input);
      if (!(digest instanceof Uint8Array) || digest.length !== 20) return "websocket sha1 must return a 20-byte Uint8Array";
      this.expectedAccept = base64(digest, 20);
    } catch (error) {
      return "websocket key failed: " + messageOf(error);
    }
    this.request = "GET " + target + " HTTP/1.1\r\nHost: " + this.host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n" +
      (this.protocol !== "" ? "Sec-WebSocket-Protocol: " + this.protocol + "\r\n" : "") + "\r\n";
    return "";
  }

  private innerConnected(): void {
    if (this.phase !== Phase.Connecting) return;
    this.phase = Phase.Requesting;
    this.sendRequest();
  }

  /** Writes the request in pieces of the side buffer; a refused piece waits for onTransportWritable. */
  private sendRequest(): void {
    const request = this.request;
    const side = this.side;
    while (this.requestAt < request.length) {
      const from = this.requestAt;
      let count = request.length - from;
      if (count > side.length) count = side.length;
      for (let i = 0; i < count; i++) side[i] = request.charCodeAt(from + i);
      if (!this.inner.write(side, 0, count)) return;
      this.requestAt = from + count;
    }
    this.awaitHead();
  }

  private awaitHead(): void {
    this.request = "";
    this.phase = Phase.AwaitingHead;
    this.headBytes = 0;
    this.lineBytes = 0;
  }

  private innerData(bytes: Uint8Array, offset: number, length: number): void {
    const phase = this.phase;
    if (phase === Phase.Open || phase === Phase.Closing) return this.reader.feed(bytes, offset, length);
    // An answer before the whole request was written: stop writing it, and read the answer.
    if (phase === Phase.Requesting) this.awaitHead();
    if (this.phase === Phase.AwaitingHead) return this.readHead(bytes, offset, length);
    if (phase === Phase.AwaitingBody) {
      this.keepExcerpt(bytes, offset, length);
      if (this.excerptBytes >= this.excerptWanted) this.reportRefusal(true);
    }
  }

  private readHead(bytes: Uint8Array, offset: number, length: number): void {
    const side = this.side;
    const end = offset + length;
    // Locals in the loop: a property access per byte is most of the cost in XS.
    let headBytes = this.headBytes;
    let lineBytes = this.lineBytes;
    for (let at = offset; at < end; at++) {
      if (headBytes === HEAD_LIMIT_BYTES) return this.fail("websocket upgrade failed: the answer's head exceeds " + HEAD_LIMIT_BYTES + " bytes", true);
      const byte = bytes[at];
      side[headBytes++] = byte;
      if (byte === 0x0a) {
        if (lineBytes === 0) {
          this.headBytes = headBytes;
          return this.finishHead(bytes, at + 1, end);
        }
        lineBytes = 0;
      } else if (byte !== 0x0d) {
        lineBytes++;
      }
    }
    this.headBytes = headBytes;
    this.lineBytes = lineBytes;
  }

  /**
   * The head is whole (`bytes[rest, end)` follows it): open, or refused. Read from the side buffer
   * line by line, making strings only of the status line and the values of the headers looked at.
   */
  private finishHead(bytes: Uint8Array, rest: number, end: number): void {
    const side = this.side;
    const headEnd = this.headBytes;
    let lineEnd = indexOfLineFeed(side, 0, headEnd);
    const statusLine = latin1(side, 0, contentEnd(side, 0, lineEnd < 80 ? lineEnd : 80));
    // Written here, so made at run time: see isWordOf.
    const status = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
    if (status === null) return this.fail("websocket upgrade failed: the answer is not HTTP (" + printable(statusLine, 40) + ")", true);
    const values = ["", "", "", "", "", ""];
    let present = 0;
    let tooLong = -1;
    for (let at = lineEnd + 1; at < headEnd; at = lineEnd + 1) {
      lineEnd = indexOfLineFeed(side, at, headEnd);
      const stop = contentEnd(side, at, lineEnd);
      if (stop === at) continue;
      const colon = indexOfColon(side, at, stop);
      if (colon < 0) return this.fail("websocket upgrade failed: a malformed header line (" + printable(latin1(side, at, stop < at + 40 ? stop : at + 40), 40) + ")", true);
      const header = headerIndex(side, at, colon);
      if (header < 0) continue;
      let from = colon + 1;
      let to = stop;
      while (from < to && (side[from] === 0x20 || side[from] === 0x09)) from++;
      while (to > from && (side[to - 1] === 0x20 || side[to - 1] === 0x09)) to--;
      present |= 1 << header;
      if (to - from > HEADER_VALUE_LIMIT) tooLong = header;
      else values[header] = latin1(side, from, to);
    }
    const code = status[2];
    if (code !== "101") {
      const reason = printable(status[3] ?? "", 60);
      this.refusal = "websocket upgrade refused: HTTP " + code + (reason !== "" ? " " + reason : "");
      // An excerpt of the body if it comes with the head or promptly after: as much of what
      // Content-Length announces as the excerpt holds, or what came with the head when none is given.
      const lengthText = values[Header.ContentLength];
      const contentLength = /^\d{1,9}$/.test(lengthText) ? Number(lengthText) : -1;
      this.excerptWanted = contentLength < 0 ? EXCERPT_BYTES : contentLength < EXCERPT_BYTES ? contentLength : EXCERPT_BYTES;
      this.excerptBytes = 0;
      this.excerptCut = contentLength > EXCERPT_BYTES;
      this.keepExcerpt(bytes, rest, end - rest);
      if (contentLength < 0 || this.excerptBytes >= this.excerptWanted) return this.reportRefusal(true);
      this.phase = Phase.AwaitingBody;
      return;
    }
    const upgrade = values[Header.Upgrade];
    const connection = values[Header.Connection];
    const accept = values[Header.Accept];
    const protocol = values[Header.Protocol];
    const protocolGiven = (present & (1 << Header.Protocol)) !== 0;
    const problem = status[1] !== "1.1" ? "the answer is HTTP/" + status[1] + ", not HTTP/1.1"
      : tooLong >= 0 ? "the answer's " + HEADER_NAMES[tooLong] + " is longer than " + HEADER_VALUE_LIMIT + " bytes"
      : upgrade.toLowerCase() !== "websocket" ? "the answer's Upgrade is " + shownValue(upgrade) + ", not websocket"
      : !hasToken(connection, "upgrade") ? "the answer's Connection is " + shownValue(connection) + ", not upgrade"
      : accept === "" ? "no Sec-WebSocket-Accept in the answer"
      : accept !== this.expectedAccept ? "the answer's Sec-WebSocket-Accept does not match the key"
      : values[Header.Extensions] !== "" ? "the server chose the extensions " + shownValue(values[Header.Extensions]) + ", none asked for"
      : this.protocol === "" ? (protocolGiven ? "the server chose the subprotocol " + shownValue(protocol) + ", none asked for" : "")
      : !protocolGiven ? "the server chose no subprotocol (asked for " + this.protocol + ")"
      : protocol !== this.protocol ? "the server chose the subprotocol " + shownValue(protocol) + " (asked for " + this.protocol + ")"
      : "";
    if (problem !== "") return this.fail("websocket upgrade failed: " + problem, true);
    this.phase = Phase.Open;
    this.reserved = 0; // the side buffer is the control reserve from now on
    const link = this.link;
    (this.sink as TransportSink).onTransportConnected();
    // Bytes after the head in the same read are frames (unless the sink closed or reopened meanwhile).
    if (this.link === link && this.phase === Phase.Open && rest < end) this.reader.feed(bytes, rest, end - rest);
  }

  private keepExcerpt(bytes: Uint8Array, offset: number, length: number): void {
    let count = this.excerptWanted - this.excerptBytes;
    if (count < length) this.excerptCut = true;
    else count = length;
    const side = this.side;
    const at = this.headBytes + this.excerptBytes;
    for (let i = 0; i < count; i++) side[at + i] = bytes[offset + i];
    this.excerptBytes += count;
  }

  private reportRefusal(innerOpen: boolean): void {
    let excerpt = printable(latin1(this.side, this.headBytes, this.headBytes + this.excerptBytes), EXCERPT_BYTES);
    if (this.excerptCut && excerpt !== "" && !excerpt.endsWith("...")) excerpt += "...";
    this.fail(this.refusal + (excerpt !== "" ? ": " + excerpt : ""), innerOpen);
  }

  // ---------------------------------------------------------------- frames

  private frameData(bytes: Uint8Array, offset: number, length: number): void {
    if (length > 0) (this.sink as TransportSink).onTransportData(bytes, offset, length);
  }

  private controlFrame(opcode: Opcode, payload: Uint8Array, length: number): void {
    if (opcode === Opcode.Ping) {
      // Nothing is sent after a close frame (section 5.5.1). One pong at most waits in the reserve
      // (section 5.5.3 allows answering only the latest ping): the room for control packets holds.
      if (this.phase !== Phase.Open || this.pongReserved) return;
      if (this.sendSmallFrame(Opcode.Pong, payload, 0, length, SIDE_BUFFER_BYTES)) {
        this.stats.pingsAnswered++;
        this.pongReserved = this.reserved > 0;
      }
      return;
    }
    if (opcode !== Opcode.Close) return; // a pong: nothing to do
    if (length === 1) return this.protocolError(CloseCode.ProtocolError, "close frame with a 1-byte payload");
    const code = length >= 2 ? (payload[0] << 8) | payload[1] : CloseCode.NoStatus;
    if (length >= 2 && !closeCodeValid(code)) return this.protocolError(CloseCode.ProtocolError, "close frame with the invalid status code " + code);
    this.stats.closeCodeReceived = code;
    if (this.phase !== Phase.Open) return; // the answer to our own close: the inner transport is ending
    const reason = printable(latin1(payload, 2, length), MAX_CONTROL_PAYLOAD);
    this.serverClose = "websocket closed by server: " + code + (reason !== "" ? " " + reason : "");
    this.phase = Phase.Closing;
    // Echo the status code (section 5.5.1); a close without one is answered without one.
    if (length >= 2) this.sendClose(code);
    else this.sendSmallFrame(Opcode.Close, this.status, 0, 0, SIDE_BUFFER_BYTES);
    this.endInnerWhenSent();
  }

  /** The server broke the protocol: a close frame with `closeCode` if it can go now, then the link is dropped and reported. */
  private protocolError(closeCode: CloseCode, what: string): void {
    if (this.phase === Phase.Open && this.reserved === 0) {
      const status = this.status;
      status[0] = closeCode >> 8;
      status[1] = closeCode & 0xff;
      const end = writeMaskedFrame(this.side, 0, Opcode.Close, status, 0, 2, this.maskPool, this.nextMaskAt());
      if (this.inner.write(this.side, 0, end)) this.stats.framesOut++;
    }
    this.fail("websocket protocol error: " + what, true);
  }

  private sendClose(code: number): void {
    const status = this.status;
    status[0] = code >> 8;
    status[1] = code & 0xff;
    this.sendSmallFrame(Opcode.Close, status, 0, 2, SIDE_BUFFER_BYTES);
  }

  /**
   * A frame of at most 125 bytes: straight to the inner transport when nothing waits, else (or when
   * refused) into the reserve, up to `limit` bytes of it. False when it does not fit: not sent.
   */
  private sendSmallFrame(opcode: Opcode, source: Uint8Array, offset: number, length: number, limit: number): boolean {
    const at = this.reserved;
    const end = at + SMALL_FRAME_HEADER_BYTES + length;
    if (end > limit) return false;
    writeMaskedFrame(this.side, at, opcode, source, offset, length, this.maskPool, this.nextMaskAt());
    this.stats.framesOut++;
    // With frames waiting, the inner transport owes an onTransportWritable(): this one joins them.
    if (at === 0 && this.inner.write(this.side, 0, end)) return true;
    this.reserved = end;
    return true;
  }

  private endInnerWhenSent(): void {
    if (this.reserved > 0 || this.innerEnded) return; // innerWritable() ends it
    this.innerEnded = true;
    this.inner.end();
  }

  private nextMaskAt(): number {
    if (this.maskAt === MASK_POOL_BYTES) {
      this.randomBytes(this.maskPool);
      this.maskAt = 0;
    }
    const at = this.maskAt;
    this.maskAt = at + 4;
    return at;
  }

  // ---------------------------------------------------------------- the inner transport's reports

  private innerWritable(): void {
    const phase = this.phase;
    if (phase === Phase.Requesting) return this.sendRequest();
    if (phase !== Phase.Open && phase !== Phase.Closing) return;
    if (this.reserved > 0) {
      if (!this.inner.write(this.side, 0, this.reserved)) return;
      this.reserved = 0;
      this.pongReserved = false;
    }
    if (phase === Phase.Closing) return this.endInnerWhenSent();
    if (this.refusedOuter) {
      this.refusedOuter = false;
      (this.sink as TransportSink).onTransportWritable();
    }
  }

  private innerClosed(reason: string): void {
    const phase = this.phase;
    if (phase === Phase.Idle || phase === Phase.Closed) return;
    if (phase === Phase.AwaitingBody) return this.reportRefusal(false);
    if (phase === Phase.Requesting || phase === Phase.AwaitingHead) return this.fail("closed during the websocket upgrade: " + reason, false);
    this.fail(phase === Phase.Closing && this.serverClose !== "" ? this.serverClose : reason, false);
  }

  /** The one report of this open(): the inner link goes (aborted unless it closed itself), the sink hears `reason`. */
  private fail(reason: string, abortInner: boolean): void {
    this.link++;
    this.phase = Phase.Closed;
    this.reader.stop();
    this.request = "";
    this.reserved = 0;
    if (abortInner) this.inner.abort();
    (this.sink as TransportSink).onTransportClosed(reason);
  }
}

const enum Header {
  Upgrade = 0,
  Connection = 1,
  Accept = 2,
  Protocol = 3,
  Extensions = 4,
  ContentLength = 5,
}

/** The answer's headers looked at, lowercase, by Header. */
const HEADER_NAMES: readonly string[] = Object.freeze(["upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol", "sec-websocket-extensions", "content-length"]);
/** Longer values of those headers are refused rather than made into long strings. */
const HEADER_VALUE_LIMIT = 100;

/** The index of the first LF in `bytes[from, to)`, or `to`. */
function indexOfLineFeed(bytes: Uint8Array, from: number, to: number): number {
  while (from < to && bytes[from] !== 0x0a) from++;
  return from;
}

/** Where a line `[from, to)` ends without its CR. */
function contentEnd(bytes: Uint8Array, from: number, to: number): number {
  return to > from && bytes[to - 1] === 0x0d ? to - 1 : to;
}

/** The colon after a header name of at least one byte in `bytes[from, to)`, or -1. */
function indexOfColon(bytes: Uint8Array, from: number, to: number): number {
  for (let at = from + 1; at < to; at++) if (bytes[at] === 0x3a) return at;
  return -1;
}

/** Which of HEADER_NAMES the name `bytes[from, to)` is (any case, white space around it ignored), or -1. */
function headerIndex(bytes: Uint8Array, from: number, to: number): number {
  while (from < to && (bytes[from] === 0x20 || bytes[from] === 0x09)) from++;
  while (to > from && (bytes[to - 1] === 0x20 || bytes[to - 1] === 0x09)) to--;
  for (let index = 0; index < HEADER_NAMES.length; index++) {
    const name = HEADER_NAMES[index];
    if (name.length !== to - from) continue;
    let i = 0;
    for (; i < name.length; i++) {
      const byte = bytes[from + i];
      if ((byte >= 0x41 && byte <= 0x5a ? byte + 32 : byte) !== name.charCodeAt(i)) break;
    }
    if (i === name.length) return index;
  }
  return -1;
}

function shownValue(value: string): string {
  return value === "" ? "missing" : "\"" + printable(value, 40) + "\"";
}

/** Whether the comma-separated `list` holds `token`, ignoring case. */
function hasToken(list: string, token: string): boolean {
  const items = list.split(",");
  for (let i = 0; i < items.length; i++) if (items[i].trim().toLowerCase() === token) return true;
  return false;
}

/** Status codes a close frame may carry (RFC 6455 section 7.4, and the IANA registry). */
function closeCodeValid(code: number): boolean {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}
