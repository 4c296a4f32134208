// Section 1 of `npm run bench` over MQTT over WebSocket (issue 14): the same QoS 0 publish and QoS 1
// publish + PUBACK as bench/xs-entry.ts's "publish-qos0" and "publish-qos1+puback", with the client
// over a WebSocketTransport (modules/websocket.ts) whose inner transport stands where TLS stands on
// the device. bench/xs-entry.ts merges these scenarios into its own; runs on XS, no Node API.
//
// The inner transport, WebSocketLink, is test/support's ScriptedBroker behind the server side of a
// WebSocket: at setup it answers the Upgrade with a 101, unmasks the client's frames into the broker
// (CONNECT/CONNACK) and frames what the broker sends. Then, as xs-entry.ts's CountingBroker, it is
// switched to `counting` (write() only counts bytes and writes) and the broker's PUBACK is fed to the
// WebSocket transport as a server binary frame made at setup: what is metered is the client and the
// WebSocket transport (masking each frame, reading each frame), not the test server.
//
// The handshake's SHA-1 is a stub returning fixed bytes: the transport compares the base64 of what
// sha1() returns with the answer's Sec-WebSocket-Accept, and the answer carries that base64 (SHA-1
// itself runs once per connection, never per message). Random bytes come from Math.random one byte
// a call, as on the device (hosts/moddable/websocket-crypto.ts's moddableRandomBytes: the transport
// draws 64 bytes of masking keys every 16 frames); their values change no count.
import { MqttClient, type ClientOptions } from "../modules/client";
import type { Transport, TransportSink } from "../modules/types";
import { WebSocketTransport } from "../modules/websocket";
import { ScriptedBroker } from "../test/support/scripted-broker";
import { VirtualClock } from "../test/support/virtual-clock";

const TOPIC = "bench/t";
const PAYLOAD = new Uint8Array(64).map((_, i) => 0x41 + (i % 26));
const KEEP_ALIVE_S = 60;
/** The client's default maxPacketBytes, given to both (the transport's frames are bounded by it). */
const MAX_PACKET_BYTES = 2048;

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
function base64(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((i + 1 < bytes.length ? bytes[i + 1] : 0) << 8) | (i + 2 < bytes.length ? bytes[i + 2] : 0);
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + (i + 1 < bytes.length ? BASE64[(n >> 6) & 63] : "=") + (i + 2 < bytes.length ? BASE64[n & 63] : "=");
  }
  return out;
}

/** What the stub SHA-1 returns, whatever its input; the 101 answer carries its base64. */
const STUB_DIGEST = new Uint8Array(20).map((_, i) => (i * 37 + 11) & 0xff);
const stubSha1 = (): Uint8Array => STUB_DIGEST;
/** As hosts/moddable/websocket-crypto.ts fills them on the device. */
const randomBytes = (bytes: Uint8Array): void => {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
};

function ascii(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

const ANSWER = ascii("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + base64(STUB_DIGEST) + "\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n");

/** One unmasked server binary frame carrying `payload` (up to 65,535 bytes). */
function serverBinaryFrame(payload: Uint8Array): Uint8Array {
  const header = payload.length <= 125 ? 2 : 4;
  const frame = new Uint8Array(header + payload.length);
  frame[0] = 0x82;
  if (header === 2) {
    frame[1] = payload.length;
  } else {
    frame[1] = 126;
    frame[2] = payload.length >> 8;
    frame[3] = payload.length & 0xff;
  }
  frame.set(payload, header);
  return frame;
}

/**
 * The server side of the WebSocket in front of a ScriptedBroker, as the WebSocket transport's inner
 * transport: the 101 answer, the client's frames unmasked into the broker, the broker's packets
 * framed. With `counting` on, write() only counts, as xs-entry.ts's CountingBroker.
 */
class WebSocketLink implements Transport {
  counting = false;
  bytesOut = 0;
  writesOut = 0;
  /** Binary frames the server side unmasked (setup only). */
  framesUnmasked = 0;
  private sink: TransportSink | undefined;
  private upgraded = false;
  private head = "";

  constructor(readonly broker: ScriptedBroker, readonly clock: VirtualClock) {}

  open(sink: TransportSink): void {
    this.sink = sink;
    this.upgraded = false;
    this.head = "";
    this.broker.open({
      onTransportConnected: () => sink.onTransportConnected(),
      onTransportData: (bytes, offset, length) => {
        const frame = serverBinaryFrame(bytes.subarray(offset, offset + length));
        sink.onTransportData(frame, 0, frame.length);
      },
      onTransportClosed: (reason) => sink.onTransportClosed(reason),
      onTransportWritable: () => sink.onTransportWritable(),
    });
  }

  write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.counting) {
      this.bytesOut += length;
      this.writesOut++;
      return true;
    }
    if (!this.broker.isOpen) return false;
    if (!this.upgraded) {
      for (let i = offset; i < offset + length; i++) this.head += String.fromCharCode(bytes[i]);
      if (this.head.endsWith("\r\n\r\n")) {
        this.upgraded = true;
        const sink = this.sink as TransportSink;
        this.clock.after(0, () => sink.onTransportData(ANSWER, 0, ANSWER.length));
      }
      return true;
    }
    // The transport writes whole frames (one per write, or several from its control reserve).
    let at = offset;
    const end = offset + length;
    while (at < end) {
      const opcode = bytes[at] & 0x0f;
      let size = bytes[at + 1] & 0x7f;
      let keyAt = at + 2;
      if (size === 126) {
        size = (bytes[at + 2] << 8) | bytes[at + 3];
        keyAt = at + 4;
      } else if (size === 127) {
        throw new Error("bench: a client frame longer than 65,535 bytes");
      }
      const payload = new Uint8Array(size);
      for (let i = 0; i < size; i++) payload[i] = bytes[keyAt + 4 + i] ^ bytes[keyAt + (i & 3)];
      at = keyAt + 4 + size;
      if (opcode === 2) {
        this.framesUnmasked++;
        if (!this.broker.write(payload, 0, size)) throw new Error("bench: the broker refused a write");
      }
    }
    if (at !== end) throw new Error("bench: a client frame split across writes");
    return true;
  }

  end(): void {
    this.broker.end();
  }

  abort(): void {
    this.broker.abort();
  }

  /** Bytes from the server side, straight to the WebSocket transport (the steady state's feed). */
  feed(bytes: Uint8Array, length: number): void {
    (this.sink as TransportSink).onTransportData(bytes, 0, length);
  }
}

interface WebSocketRig {
  clock: VirtualClock;
  link: WebSocketLink;
  ws: WebSocketTransport;
  client: MqttClient;
}

function onlineOverWebSocket(options: Partial<ClientOptions> = {}): WebSocketRig {
  const clock = new VirtualClock(0);
  const link = new WebSocketLink(new ScriptedBroker(clock), clock);
  const ws = new WebSocketTransport(link, { host: "bench.local", requestTarget: () => "/mqtt", protocol: "mqtt", maxPacketBytes: MAX_PACKET_BYTES, randomBytes, sha1: stubSha1 });
  const client = new MqttClient({ clientId: "bench-device", transport: ws, clock, keepAliveSeconds: KEEP_ALIVE_S, maxPacketBytes: MAX_PACKET_BYTES, ...options });
  client.connect();
  clock.settle();
  if (client.stateName !== "online") throw new Error("bench rig did not come online over WebSocket: " + client.stateName);
  if (link.framesUnmasked !== 1) throw new Error("bench rig: expected the CONNECT alone in one frame, got " + link.framesUnmasked + " frames");
  return { clock, link, ws, client };
}

/** The broker's PUBACK as one server binary frame, its packet id rewritten for each message. */
const PUBACK_FRAME = new Uint8Array([0x82, 4, 0x40, 2, 0, 0]);

let current: WebSocketRig;
let acked = 0;
const onAck = (status: number): void => {
  if (status === 0) acked++;
};

/** The scenarios, by name, in the shape bench/xs-entry.ts's scenarios have (setup, run(n), check). */
export const websocketScenarios: Record<string, { setup(): void; run(n: number): void; check?(): string }> = {
  "websocket:publish-qos0": {
    setup() {
      current = onlineOverWebSocket();
      current.link.counting = true;
    },
    run(n) {
      const client = current.client;
      for (let i = 0; i < n; i++) client.publish(TOPIC, PAYLOAD, 0);
    },
    check() {
      return `${current.link.writesOut} frames written, ${current.link.bytesOut} bytes, stats.sent ${current.client.stats.sent}, framesOut ${current.ws.stats.framesOut}`;
    },
  },
  "websocket:publish-qos1+puback": {
    setup() {
      current = onlineOverWebSocket();
      current.link.counting = true;
      acked = 0;
    },
    run(n) {
      const { client, link } = current;
      for (let i = 0; i < n; i++) {
        client.publish(TOPIC, PAYLOAD, 1, false, onAck);
        const id = client.lastPacketId;
        PUBACK_FRAME[4] = id >> 8;
        PUBACK_FRAME[5] = id & 0xff;
        link.feed(PUBACK_FRAME, 6);
      }
    },
    check() {
      if (current.client.inflightCount !== 0) throw new Error("in-flight left: " + current.client.inflightCount);
      return `${acked} acknowledged, stats.acknowledged ${current.client.stats.acknowledged}, framesIn ${current.ws.stats.framesIn}`;
    },
  },
};
