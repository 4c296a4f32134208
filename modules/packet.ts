// MQTT 3.1.1 packets: encoders that write into a caller's buffer at an offset (lengths are computed
// first, so a write never overruns), and an incremental decoder for what a broker sends a client.

import { checkUtf8, readUtf8, utf8Length, writeUtf8 } from "./topic";

export const enum PacketType {
  Connect = 1,
  Connack = 2,
  Publish = 3,
  Puback = 4,
  Pubrec = 5,
  Pubrel = 6,
  Pubcomp = 7,
  Subscribe = 8,
  Suback = 9,
  Unsubscribe = 10,
  Unsuback = 11,
  Pingreq = 12,
  Pingresp = 13,
  Disconnect = 14,
}

/** Largest value of the remaining-length field (four 7-bit groups). */
export const MAX_REMAINING_LENGTH = 268435455;

export const PINGREQ_BYTES = 2;
export const DISCONNECT_BYTES = 2;
export const PUBACK_BYTES = 4;

/** Bytes taken by the remaining-length field for `length`. */
export function remainingLengthSize(length: number): number {
  return length < 128 ? 1 : length < 16384 ? 2 : length < 2097152 ? 3 : 4;
}

/** Whole packet size for a body of `remaining` bytes. */
export function packetSize(remaining: number): number {
  return 1 + remainingLengthSize(remaining) + remaining;
}

function writeFixedHeader(target: Uint8Array, offset: number, first: number, remaining: number): number {
  target[offset++] = first;
  do {
    let digit = remaining & 0x7f;
    remaining >>>= 7;
    if (remaining > 0) digit |= 0x80;
    target[offset++] = digit;
  } while (remaining > 0);
  return offset;
}

function writeUint16(target: Uint8Array, offset: number, value: number): number {
  target[offset] = value >> 8;
  target[offset + 1] = value & 0xff;
  return offset + 2;
}

/** A string already measured with utf8Length, written with its two-byte length prefix. */
function writeString(target: Uint8Array, offset: number, text: string, bytes: number): number {
  return writeUtf8(text, target, writeUint16(target, offset, bytes));
}

function writeBinary(target: Uint8Array, offset: number, data: Uint8Array): number {
  offset = writeUint16(target, offset, data.length);
  target.set(data, offset);
  return offset + data.length;
}

/** A payload: bytes, or text sent as UTF-8. */
export type Payload = Uint8Array | string;

/** Byte length of a payload, or -1 for text that is not valid UTF-8. */
export function payloadLength(payload: Payload): number {
  return typeof payload === "string" ? (payload.length === 0 ? 0 : utf8Length(payload, true)) : payload.length;
}

function writePayload(target: Uint8Array, offset: number, payload: Payload): number {
  if (typeof payload === "string") return writeUtf8(payload, target, offset);
  target.set(payload, offset);
  return offset + payload.length;
}

export interface ConnectFields {
  clientId: string;
  cleanSession: boolean;
  keepAliveSeconds: number;
  username?: string;
  password?: Uint8Array;
  willTopic?: string;
  willPayload?: Uint8Array;
  willQos?: number;
  willRetain?: boolean;
}

/** Remaining length of a CONNECT (strings must be valid: the client validated them at configuration). */
export function connectRemaining(fields: ConnectFields): number {
  let length = 10 + 2 + utf8Length(fields.clientId);
  if (fields.willTopic !== undefined) length += 2 + utf8Length(fields.willTopic) + 2 + (fields.willPayload ? fields.willPayload.length : 0);
  if (fields.username !== undefined) length += 2 + utf8Length(fields.username);
  if (fields.password !== undefined) length += 2 + fields.password.length;
  return length;
}

export function writeConnect(target: Uint8Array, offset: number, fields: ConnectFields): number {
  offset = writeFixedHeader(target, offset, PacketType.Connect << 4, connectRemaining(fields));
  offset = writeString(target, offset, "MQTT", 4);
  target[offset++] = 4; // protocol level 3.1.1
  let flags = fields.cleanSession ? 0x02 : 0;
  if (fields.willTopic !== undefined) {
    flags |= 0x04 | ((fields.willQos ?? 0) << 3);
    if (fields.willRetain) flags |= 0x20;
  }
  if (fields.password !== undefined) flags |= 0x40;
  if (fields.username !== undefined) flags |= 0x80;
  target[offset++] = flags;
  offset = writeUint16(target, offset, fields.keepAliveSeconds);
  offset = writeString(target, offset, fields.clientId, utf8Length(fields.clientId));
  if (fields.willTopic !== undefined) {
    offset = writeString(target, offset, fields.willTopic, utf8Length(fields.willTopic));
    offset = writeBinary(target, offset, fields.willPayload ?? new Uint8Array(0));
  }
  if (fields.username !== undefined) offset = writeString(target, offset, fields.username, utf8Length(fields.username));
  if (fields.password !== undefined) offset = writeBinary(target, offset, fields.password);
  return offset;
}

export function publishRemaining(topicBytes: number, payloadBytes: number, qos: number): number {
  return 2 + topicBytes + (qos > 0 ? 2 : 0) + payloadBytes;
}

/** Writes a PUBLISH. `topicBytes` and `payloadBytes` come from utf8Length / payloadLength. */
export function writePublish(
  target: Uint8Array,
  offset: number,
  topic: string,
  topicBytes: number,
  payload: Payload,
  payloadBytes: number,
  qos: number,
  retain: boolean,
  packetId: number,
): number {
  const first = (PacketType.Publish << 4) | (qos << 1) | (retain ? 1 : 0);
  offset = writeFixedHeader(target, offset, first, publishRemaining(topicBytes, payloadBytes, qos));
  offset = writeString(target, offset, topic, topicBytes);
  if (qos > 0) offset = writeUint16(target, offset, packetId);
  return payloadBytes > 0 ? writePayload(target, offset, payload) : offset;
}

/** Sets DUP on an encoded PUBLISH (a re-send of an unacknowledged message). */
export function markDuplicate(packet: Uint8Array, offset: number): void {
  packet[offset] |= 0x08;
}

/** Rewrites the packet id of an encoded QoS 1 PUBLISH, SUBSCRIBE or UNSUBSCRIBE in place. */
export function setPacketId(packet: Uint8Array, offset: number, packetId: number): void {
  const type = packet[offset] >> 4;
  let at = offset + 1;
  while (packet[at] & 0x80) at++;
  at++;
  if (type === PacketType.Publish) at += 2 + ((packet[at] << 8) | packet[at + 1]);
  writeUint16(packet, at, packetId);
}

/** Reads the topic (PUBLISH) or first filter (SUBSCRIBE, UNSUBSCRIBE) of an encoded packet: used to report drops. */
export function firstTopicOf(packet: Uint8Array, offset: number): string {
  const type = packet[offset] >> 4;
  let at = offset + 1;
  while (packet[at] & 0x80) at++;
  at++;
  if (type !== PacketType.Publish) at += 2;
  const length = (packet[at] << 8) | packet[at + 1];
  return readUtf8(packet, at + 2, at + 2 + length);
}

export function writePuback(target: Uint8Array, offset: number, packetId: number): number {
  target[offset] = PacketType.Puback << 4;
  target[offset + 1] = 2;
  return writeUint16(target, offset + 2, packetId);
}

export function writePingreq(target: Uint8Array, offset: number): number {
  target[offset] = PacketType.Pingreq << 4;
  target[offset + 1] = 0;
  return offset + 2;
}

export function writeDisconnect(target: Uint8Array, offset: number): number {
  target[offset] = PacketType.Disconnect << 4;
  target[offset + 1] = 0;
  return offset + 2;
}

/** Remaining length of a SUBSCRIBE (or UNSUBSCRIBE) carrying filters of `filterBytes` UTF-8 bytes in all. */
export function subscribeRemaining(filterCount: number, filterBytes: number, withQos: boolean): number {
  return 2 + filterCount * (withQos ? 3 : 2) + filterBytes;
}

/** Starts a SUBSCRIBE (`subscribe` true) or UNSUBSCRIBE; follow with writeFilter for each filter. */
export function writeSubscribeHeader(target: Uint8Array, offset: number, subscribe: boolean, remaining: number, packetId: number): number {
  const first = subscribe ? (PacketType.Subscribe << 4) | 0x02 : (PacketType.Unsubscribe << 4) | 0x02;
  return writeUint16(target, writeFixedHeader(target, offset, first, remaining), packetId);
}

/** One filter of a SUBSCRIBE (with its requested QoS) or of an UNSUBSCRIBE (qos < 0). */
export function writeFilter(target: Uint8Array, offset: number, filter: string, filterBytes: number, qos: number): number {
  offset = writeString(target, offset, filter, filterBytes);
  if (qos >= 0) target[offset++] = qos;
  return offset;
}

/** Receives each complete, validated packet from the decoder; fields are read off the decoder. */
export interface PacketSink {
  onPacket(decoder: PacketDecoder): void;
  /**
   * A PUBLISH larger than `maxPacketBytes` was read past without being stored: its `qos`, `packetId`,
   * `skippedBytes` and `skippedTopic()` are set. The stream stays in step, so the link can stay up.
   */
  onOversizedPublish(decoder: PacketDecoder): void;
}

/** Inbound topics up to this many bytes are remembered (see PacketDecoder.topic()). */
const REMEMBERED_TOPIC_BYTES = 128;

const enum Phase {
  Header = 0,
  Length = 1,
  Body = 2,
  Failed = 3,
  /** The body of a PUBLISH too large to store: its start (topic, packet id) is kept, the rest skipped. */
  Skip = 4,
}

/**
 * Incremental decoder for broker-to-client packets. Input may arrive in chunks of any size; the
 * body of one packet is collected in a buffer fixed at construction, so a packet announcing more
 * than `maxPacketBytes` is a protocol error before any of it is stored.
 */
export class PacketDecoder {
  /** Fields of the packet being delivered to the sink. */
  type = 0;
  flags = 0;
  remaining = 0;
  packetId = 0;
  sessionPresent = false;
  returnCode = 0;
  qos = 0;
  retain = false;
  dup = false;
  topicStart = 0;
  topicEnd = 0;
  payloadStart = 0;
  payloadEnd = 0;
  /** The body of the current packet: SUBACK return codes are at body[2 .. remaining). */
  readonly body: Uint8Array;
  /** Why decoding failed, once feed() has returned false. */
  error = "";
  /** The size of the last PUBLISH skipped for being larger than maxPacketBytes. */
  skippedBytes = 0;

  private phase = Phase.Header;
  private received = 0;
  private lengthMultiplierShift = 0;
  private generation = 0;
  private readonly maxPacketBytes: number;
  private readonly sink: PacketSink;
  // The last inbound topic: its bytes (already validated) and its string. Devices mostly receive on
  // a few topics, so a repeat skips validation and decoding and allocates no string.
  private readonly rememberedTopic = new Uint8Array(REMEMBERED_TOPIC_BYTES);
  private rememberedTopicLength = 0;
  private rememberedTopicText = "";
  private topicIsRemembered = false;

  constructor(maxPacketBytes: number, sink: PacketSink) {
    this.maxPacketBytes = maxPacketBytes;
    // The fixed header takes at least two bytes of the limit; only the body is stored.
    this.body = new Uint8Array(maxPacketBytes - 2);
    this.sink = sink;
  }

  /** Forgets any partial packet: called for every new connection. */
  reset(): void {
    this.phase = Phase.Header;
    this.error = "";
    this.generation++;
  }

  /** Consumes bytes; returns false on malformed input (see `error`), after which it ignores input until reset(). */
  feed(bytes: Uint8Array, offset: number, length: number): boolean {
    const end = offset + length;
    const generation = this.generation;
    while (offset < end) {
      switch (this.phase) {
        case Phase.Header:
          this.type = bytes[offset] >> 4;
          this.flags = bytes[offset] & 0x0f;
          offset++;
          this.remaining = 0;
          this.lengthMultiplierShift = 0;
          this.phase = Phase.Length;
          // Refused at its first byte: a bogus header must not swallow the packets behind it.
          if (!this.check(this.headerProblem())) return false;
          break;
        case Phase.Length: {
          const digit = bytes[offset++];
          this.remaining += (digit & 0x7f) * (1 << this.lengthMultiplierShift);
          this.lengthMultiplierShift += 7;
          if (digit & 0x80) {
            if (this.lengthMultiplierShift >= 28) return this.fail("malformed remaining length (more than four bytes)");
            break;
          }
          const tooLarge = packetSize(this.remaining) > this.maxPacketBytes;
          // A message too large is the broker's to send (a retained or queued one would come back
          // at every connection): it is skipped. Any other packet that large is broken.
          if (tooLarge && this.type !== PacketType.Publish) return this.fail("packet of " + packetSize(this.remaining) + " bytes exceeds the maximum of " + this.maxPacketBytes);
          if (!this.check(this.lengthProblem())) return false;
          this.received = 0;
          this.phase = tooLarge ? Phase.Skip : Phase.Body;
          if (this.remaining === 0 && !this.complete()) return false;
          break;
        }
        case Phase.Body: {
          let take = this.remaining - this.received;
          if (take > end - offset) take = end - offset;
          // Small pieces are copied by hand: a view per chunk would be an allocation per packet.
          if (take > 32) {
            this.body.set(bytes.subarray(offset, offset + take), this.received);
            this.received += take;
            offset += take;
          } else {
            const body = this.body;
            for (let i = 0; i < take; i++) body[this.received++] = bytes[offset++];
          }
          if (this.received === this.remaining && !this.complete()) return false;
          break;
        }
        case Phase.Skip: {
          let take = this.remaining - this.received;
          if (take > end - offset) take = end - offset;
          const room = this.body.length - this.received;
          if (room > 0) this.body.set(bytes.subarray(offset, offset + (take < room ? take : room)), this.received);
          this.received += take;
          offset += take;
          if (this.received === this.remaining && !this.completeSkipped()) return false;
          break;
        }
        default:
          return false;
      }
      // The sink may have reset the decoder (connection closed): stop reading this input.
      if (generation !== this.generation) return true;
    }
    return true;
  }

  /** True when `problem` is "", else fails with it. */
  private check(problem: string): boolean {
    return problem === "" || this.fail(problem);
  }

  private fail(reason: string): false {
    this.error = reason;
    this.phase = Phase.Failed;
    return false;
  }

  /** Validates the collected packet and hands it to the sink. */
  private complete(): boolean {
    this.phase = Phase.Header;
    const problem = this.validate();
    if (problem !== "") return this.fail(problem);
    this.sink.onPacket(this);
    return true;
  }

  /** Reads what was kept of a skipped PUBLISH (topic, packet id) and reports it to the sink. */
  private completeSkipped(): boolean {
    this.phase = Phase.Header;
    const body = this.body;
    const kept = this.body.length;
    this.qos = (this.flags >> 1) & 3;
    this.retain = (this.flags & 1) === 1;
    this.dup = (this.flags & 8) === 8;
    this.skippedBytes = packetSize(this.remaining);
    const topicEnd = 2 + ((body[0] << 8) | body[1]);
    this.topicStart = 2;
    // The topic is reported only when it was kept whole and is valid.
    this.topicEnd = topicEnd <= kept && topicEnd > 2 && checkUtf8(body, 2, topicEnd) >= 0 ? topicEnd : 2;
    this.packetId = 0;
    if (this.qos > 0) {
      if (topicEnd + 2 > kept) return this.fail("PUBLISH larger than the maximum, with a topic too long to read its packet id");
      this.packetId = (body[topicEnd] << 8) | body[topicEnd + 1];
      if (this.packetId === 0) return this.fail("PUBLISH with packet id 0");
    }
    this.sink.onOversizedPublish(this);
    return true;
  }

  /** The topic of the last skipped PUBLISH, or "" when it was too long to keep or not valid. */
  skippedTopic(): string {
    return this.topicEnd > 2 ? readUtf8(this.body, 2, this.topicEnd) : "";
  }

  /** What is wrong with the first byte (type and flags), or "". */
  private headerProblem(): string {
    const flags = this.flags;
    switch (this.type) {
      case PacketType.Connack:
        return flags !== 0 ? "malformed CONNACK" : "";
      case PacketType.Publish: {
        const qos = (flags >> 1) & 3;
        if (qos > 1) return qos === 3 ? "PUBLISH with QoS 3" : "PUBLISH with QoS 2, which this client never subscribes to";
        return qos === 0 && (flags & 8) === 8 ? "PUBLISH with QoS 0 and DUP set" : "";
      }
      case PacketType.Puback:
        return flags !== 0 ? "malformed PUBACK" : "";
      case PacketType.Unsuback:
        return flags !== 0 ? "malformed UNSUBACK" : "";
      case PacketType.Suback:
        return flags !== 0 ? "malformed SUBACK" : "";
      case PacketType.Pingresp:
        return flags !== 0 ? "malformed PINGRESP" : "";
      case PacketType.Pubrec:
      case PacketType.Pubrel:
      case PacketType.Pubcomp:
        return "QoS 2 packet type " + this.type + " received, but this client never uses QoS 2";
      default:
        return "unexpected packet type " + this.type + " from the broker";
    }
  }

  /** What is wrong with the remaining length for this type, or "": known as soon as the length is read. */
  private lengthProblem(): string {
    const remaining = this.remaining;
    switch (this.type) {
      case PacketType.Connack:
        return remaining !== 2 ? "malformed CONNACK" : "";
      case PacketType.Publish:
        // The topic length, and the packet id at QoS 1 (an empty topic is named by validate()).
        return remaining < (this.flags & 6 ? 4 : 2) ? "truncated PUBLISH" : "";
      case PacketType.Puback:
        return remaining !== 2 ? "malformed PUBACK" : "";
      case PacketType.Unsuback:
        return remaining !== 2 ? "malformed UNSUBACK" : "";
      case PacketType.Suback:
        return remaining < 3 ? "malformed SUBACK" : "";
      default:
        return remaining !== 0 ? "malformed PINGRESP" : "";
    }
  }

  /** Checks the body of a packet whose header and length passed, and reads its fields. */
  private validate(): string {
    const body = this.body;
    const remaining = this.remaining;
    switch (this.type) {
      case PacketType.Connack:
        if (body[0] & 0xfe) return "malformed CONNACK (reserved acknowledge flags set)";
        this.sessionPresent = (body[0] & 1) === 1;
        this.returnCode = body[1];
        if (this.returnCode > 5) return "CONNACK with unknown return code " + this.returnCode;
        if (this.returnCode !== 0 && this.sessionPresent) return "CONNACK refusal with session present";
        return "";
      case PacketType.Publish: {
        this.qos = (this.flags >> 1) & 3;
        this.retain = (this.flags & 1) === 1;
        this.dup = (this.flags & 8) === 8;
        const topicLength = (body[0] << 8) | body[1];
        this.topicStart = 2;
        this.topicEnd = 2 + topicLength;
        const idBytes = this.qos > 0 ? 2 : 0;
        if (topicLength === 0) return "PUBLISH with an empty topic";
        if (this.topicEnd + idBytes > remaining) return "truncated PUBLISH";
        this.topicIsRemembered = this.isRememberedTopic(body, topicLength);
        if (!this.topicIsRemembered) {
          if (checkUtf8(body, this.topicStart, this.topicEnd) < 0) return "PUBLISH topic is not valid UTF-8";
          for (let i = this.topicStart; i < this.topicEnd; i++) {
            if (body[i] === 0x2b || body[i] === 0x23) return "PUBLISH topic contains a wildcard";
          }
        }
        this.packetId = 0;
        if (idBytes > 0) {
          this.packetId = (body[this.topicEnd] << 8) | body[this.topicEnd + 1];
          if (this.packetId === 0) return "PUBLISH with packet id 0";
        }
        this.payloadStart = this.topicEnd + idBytes;
        this.payloadEnd = remaining;
        return "";
      }
      case PacketType.Puback:
      case PacketType.Unsuback:
        this.packetId = (body[0] << 8) | body[1];
        return this.packetId === 0 ? "acknowledgement with packet id 0" : "";
      case PacketType.Suback:
        this.packetId = (body[0] << 8) | body[1];
        if (this.packetId === 0) return "acknowledgement with packet id 0";
        for (let i = 2; i < remaining; i++) {
          const code = body[i];
          if (code > 2 && code !== 0x80) return "SUBACK with invalid return code " + code;
        }
        return "";
      default: // PINGRESP: no body
        return "";
    }
  }

  /** The current PUBLISH's topic as a string: the remembered one when the bytes repeat, else a new string. */
  topic(): string {
    if (this.topicIsRemembered) return this.rememberedTopicText;
    const text = readUtf8(this.body, this.topicStart, this.topicEnd);
    const length = this.topicEnd - this.topicStart;
    if (length <= REMEMBERED_TOPIC_BYTES) {
      this.rememberedTopic.set(this.body.subarray(this.topicStart, this.topicEnd));
      this.rememberedTopicLength = length;
      this.rememberedTopicText = text;
      this.topicIsRemembered = true; // a second call for this packet returns it too
    }
    return text;
  }

  /** Whether the current topic has the bytes of the remembered topic (which passed validation). */
  private isRememberedTopic(body: Uint8Array, length: number): boolean {
    if (length !== this.rememberedTopicLength) return false;
    const remembered = this.rememberedTopic;
    const start = this.topicStart;
    for (let i = 0; i < length; i++) if (body[start + i] !== remembered[i]) return false;
    return true;
  }
}
