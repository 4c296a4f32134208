// Hand-written MQTT 3.1.1 packets for exercising the desktop SecureSocket against a real broker,
// independent of the project's own codec.

function remainingLength(length: number): number[] {
  const bytes: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return bytes;
}

function utf8String(text: string): number[] {
  const bytes = [...Buffer.from(text, "utf8")];
  return [bytes.length >> 8, bytes.length & 0xff, ...bytes];
}

function packet(firstByte: number, body: number[]): Uint8Array {
  return Uint8Array.from([firstByte, ...remainingLength(body.length), ...body]);
}

/** CONNECT with a clean session and no credentials. */
export function connectPacket(clientId: string, keepAliveSeconds = 60): Uint8Array {
  return packet(0x10, [...utf8String("MQTT"), 0x04, 0x02, keepAliveSeconds >> 8, keepAliveSeconds & 0xff, ...utf8String(clientId)]);
}

export const CONNACK_ACCEPTED = Uint8Array.of(0x20, 0x02, 0x00, 0x00);

export function publishQos1Packet(topic: string, packetId: number, payload: Uint8Array): Uint8Array {
  return packet(0x32, [...utf8String(topic), packetId >> 8, packetId & 0xff, ...payload]);
}

export function pubackPacket(packetId: number): Uint8Array {
  return Uint8Array.of(0x40, 0x02, packetId >> 8, packetId & 0xff);
}

export function subscribePacket(packetId: number, filter: string, qos: 0 | 1): Uint8Array {
  return packet(0x82, [packetId >> 8, packetId & 0xff, ...utf8String(filter), qos]);
}

export function subackPacket(packetId: number, grantedQos: 0 | 1): Uint8Array {
  return Uint8Array.of(0x90, 0x03, packetId >> 8, packetId & 0xff, grantedQos);
}

export function publishQos0Packet(topic: string, payload: Uint8Array): Uint8Array {
  return packet(0x30, [...utf8String(topic), ...payload]);
}

export const DISCONNECT = Uint8Array.of(0xe0, 0x00);
