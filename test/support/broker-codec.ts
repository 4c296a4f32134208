// The broker's half of MQTT 3.1.1 for tests: decodes what a client sends and encodes what a broker
// sends. Written separately from modules/packet.ts on purpose, so each checks the other.

export interface ClientPacket {
  type: number;
  flags: number;
  /** The whole packet as sent. */
  raw: Uint8Array;
  packetId: number;
  // CONNECT
  clientId?: string;
  cleanSession?: boolean;
  keepAlive?: number;
  username?: string;
  password?: Uint8Array;
  willTopic?: string;
  willPayload?: Uint8Array;
  willQos?: number;
  willRetain?: boolean;
  // PUBLISH
  topic?: string;
  payload?: Uint8Array;
  qos?: number;
  retain?: boolean;
  dup?: boolean;
  // SUBSCRIBE / UNSUBSCRIBE
  filters?: string[];
  requestedQos?: number[];
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function text(bytes: Uint8Array, at: number): [string, number] {
  const length = (bytes[at] << 8) | bytes[at + 1];
  return [decoder.decode(bytes.subarray(at + 2, at + 2 + length)), at + 2 + length];
}

function binary(bytes: Uint8Array, at: number): [Uint8Array, number] {
  const length = (bytes[at] << 8) | bytes[at + 1];
  return [bytes.slice(at + 2, at + 2 + length), at + 2 + length];
}

/** Splits a client byte stream into packets; keeps a partial packet until its rest arrives. */
export class ClientStreamDecoder {
  private pending = new Uint8Array(0);

  push(bytes: Uint8Array): ClientPacket[] {
    const joined = new Uint8Array(this.pending.length + bytes.length);
    joined.set(this.pending);
    joined.set(bytes, this.pending.length);
    const packets: ClientPacket[] = [];
    let at = 0;
    for (;;) {
      if (joined.length - at < 2) break;
      let remaining = 0;
      let shift = 0;
      let cursor = at + 1;
      let complete = false;
      while (cursor < joined.length) {
        const digit = joined[cursor++];
        remaining += (digit & 0x7f) * 2 ** shift;
        shift += 7;
        if ((digit & 0x80) === 0) {
          complete = true;
          break;
        }
        if (shift > 21) throw new Error("client sent a remaining length over four bytes");
      }
      if (!complete || joined.length - cursor < remaining) break;
      packets.push(decodeClientPacket(joined.slice(at, cursor + remaining), cursor - at));
      at = cursor + remaining;
    }
    this.pending = joined.slice(at);
    return packets;
  }
}

export function decodeClientPacket(raw: Uint8Array, bodyAt: number): ClientPacket {
  const type = raw[0] >> 4;
  const flags = raw[0] & 15;
  const packet: ClientPacket = { type, flags, raw, packetId: 0 };
  let at = bodyAt;
  switch (type) {
    case 1: {
      const [protocol, afterName] = text(raw, at);
      if (protocol !== "MQTT" || raw[afterName] !== 4) throw new Error("CONNECT is not MQTT 3.1.1");
      const connectFlags = raw[afterName + 1];
      packet.keepAlive = (raw[afterName + 2] << 8) | raw[afterName + 3];
      packet.cleanSession = (connectFlags & 2) !== 0;
      at = afterName + 4;
      [packet.clientId, at] = text(raw, at);
      if (connectFlags & 4) {
        packet.willQos = (connectFlags >> 3) & 3;
        packet.willRetain = (connectFlags & 0x20) !== 0;
        [packet.willTopic, at] = text(raw, at);
        [packet.willPayload, at] = binary(raw, at);
      }
      if (connectFlags & 0x80) [packet.username, at] = text(raw, at);
      if (connectFlags & 0x40) [packet.password, at] = binary(raw, at);
      break;
    }
    case 3: {
      packet.qos = (flags >> 1) & 3;
      packet.retain = (flags & 1) !== 0;
      packet.dup = (flags & 8) !== 0;
      [packet.topic, at] = text(raw, at);
      if (packet.qos > 0) {
        packet.packetId = (raw[at] << 8) | raw[at + 1];
        at += 2;
      }
      packet.payload = raw.slice(at);
      break;
    }
    case 4:
      packet.packetId = (raw[at] << 8) | raw[at + 1];
      break;
    case 8:
    case 10: {
      if (flags !== 2) throw new Error("SUBSCRIBE/UNSUBSCRIBE with flags " + flags);
      packet.packetId = (raw[at] << 8) | raw[at + 1];
      at += 2;
      packet.filters = [];
      packet.requestedQos = [];
      while (at < raw.length) {
        let filter: string;
        [filter, at] = text(raw, at);
        packet.filters.push(filter);
        if (type === 8) packet.requestedQos.push(raw[at++]);
      }
      break;
    }
    case 12:
    case 14:
      break;
    default:
      throw new Error("a client must not send packet type " + type);
  }
  return packet;
}

function withHeader(first: number, body: number[] | Uint8Array): Uint8Array {
  const length: number[] = [];
  let remaining = body.length;
  do {
    let digit = remaining & 0x7f;
    remaining >>>= 7;
    if (remaining > 0) digit |= 0x80;
    length.push(digit);
  } while (remaining > 0);
  const packet = new Uint8Array(1 + length.length + body.length);
  packet[0] = first;
  packet.set(length, 1);
  packet.set(body, 1 + length.length);
  return packet;
}

export function connack(returnCode: number, sessionPresent = false): Uint8Array {
  return withHeader(0x20, [sessionPresent ? 1 : 0, returnCode]);
}

export function puback(packetId: number): Uint8Array {
  return withHeader(0x40, [packetId >> 8, packetId & 255]);
}

export function suback(packetId: number, codes: number[]): Uint8Array {
  return withHeader(0x90, [packetId >> 8, packetId & 255, ...codes]);
}

export function unsuback(packetId: number): Uint8Array {
  return withHeader(0xb0, [packetId >> 8, packetId & 255]);
}

export function pingresp(): Uint8Array {
  return withHeader(0xd0, []);
}

export function publishPacket(topic: string, payload: Uint8Array | string, qos = 0, packetId = 0, retain = false, dup = false): Uint8Array {
  const topicBytes = encoder.encode(topic);
  const body = typeof payload === "string" ? encoder.encode(payload) : payload;
  const bytes = new Uint8Array(2 + topicBytes.length + (qos > 0 ? 2 : 0) + body.length);
  bytes[0] = topicBytes.length >> 8;
  bytes[1] = topicBytes.length & 255;
  bytes.set(topicBytes, 2);
  let at = 2 + topicBytes.length;
  if (qos > 0) {
    bytes[at++] = packetId >> 8;
    bytes[at++] = packetId & 255;
  }
  bytes.set(body, at);
  return withHeader(0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0), bytes);
}

export function utf8(textValue: string): Uint8Array {
  return encoder.encode(textValue);
}

export function fromUtf8(bytes: Uint8Array): string {
  return decoder.decode(bytes);
}
