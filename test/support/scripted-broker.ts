// A scripted broker behind a Transport, on the virtual clock. By default it behaves like a small
// real broker (CONNACK, PUBACK, SUBACK, UNSUBACK, PINGRESP, routing of publishes to matching
// subscriptions); switches make it refuse, stay silent, close early or break the protocol.
import { topicMatches } from "../../modules/topic";
import { CONTROL_PACKET_BYTES, type Transport, type TransportSink } from "../../modules/types";
import { type ClientPacket, ClientStreamDecoder, connack, pingresp, puback, publishPacket, suback, unsuback } from "./broker-codec";
import type { VirtualClock } from "./virtual-clock";

export type OpenBehaviour = "accept" | "refuse" | "hang";

export class ScriptedBroker implements Transport {
  // What the next connection attempts meet.
  openBehaviour: OpenBehaviour = "accept";
  connackCode = 0;
  sessionPresent = false;
  answerConnect = true;
  closeOnConnect = false;
  ackPublishes = true;
  ackSubscriptions = true;
  answerPings = true;
  /** Filters the broker refuses (SUBACK 0x80). */
  refusedFilters: string[] = [];
  /** One-way delay of every delivery in ms. */
  latencyMs = 0;
  /**
   * A transport with a fixed transmit buffer: the bytes it holds before write() refuses (Infinity:
   * never full, and writes reach the broker at once). With a finite capacity, bytes taken wait in
   * the buffer until drain() (or, with drainEveryMs > 0, the clock) sends them; after a refusal,
   * drain() calls onTransportWritable(). Control packets may use `reserve` bytes beyond capacity.
   */
  capacity = Infinity;
  reserve = 64;
  /** Send the transmit buffer this many ms after a write fills it (0: only when the test calls drain()). */
  drainEveryMs = 0;

  // What happened.
  opens = 0;
  /** Links the client aborted, and links it ended gracefully with end(). */
  closesByClient = 0;
  endsByClient = 0;
  /** open() calls made while the previous link was still up (an orphaned socket on a real host). */
  opensWhileOpen = 0;
  /** Every packet the client sent, in order, across connections. */
  received: ClientPacket[] = [];
  /** Bytes written by the client per write() call (to check packing and sizes). */
  writes = 0;
  /** Writes refused for lack of room. */
  refusedWrites = 0;

  /** The broker's view of the session's subscriptions (cleared by a clean-session CONNECT). */
  subscriptions = new Map<string, number>();
  private sink: TransportSink | undefined;
  private connection = 0;
  private linkUp = false;
  private stream = new ClientStreamDecoder();
  private nextId = 1;
  private outbox: Uint8Array[] = [];
  private buffered = 0;
  private refused = false;
  private drainScheduled = false;
  private ending = false;

  constructor(readonly clock: VirtualClock) {}

  // ------------------------------------------------------------ Transport

  open(sink: TransportSink): void {
    // The contract aborts a link still open; the client should never leave one to be aborted so.
    if (this.linkUp || this.ending) this.opensWhileOpen++;
    this.linkUp = false;
    this.ending = false;
    this.sink = sink;
    this.connection++;
    this.opens++;
    this.stream = new ClientStreamDecoder();
    this.discardBuffer();
    const connection = this.connection;
    if (this.openBehaviour === "accept") {
      this.later(connection, () => {
        this.linkUp = true;
        sink.onTransportConnected();
      });
    } else if (this.openBehaviour === "refuse") {
      this.clock.after(this.latencyMs, () => {
        if (connection === this.connection) sink.onTransportClosed("connection refused");
      });
    }
  }

  write(bytes: Uint8Array, offset: number, length: number): boolean {
    if (!this.linkUp || this.ending) return false;
    if (this.capacity !== Infinity) {
      const limit = length <= CONTROL_PACKET_BYTES ? this.capacity + this.reserve : this.capacity;
      if (this.buffered + length > limit) {
        this.refusedWrites++;
        this.refused = true;
        return false;
      }
      this.writes++;
      this.outbox.push(bytes.slice(offset, offset + length));
      this.buffered += length;
      if (this.drainEveryMs > 0 && !this.drainScheduled) {
        this.drainScheduled = true;
        const connection = this.connection;
        this.clock.after(this.drainEveryMs, () => {
          if (connection !== this.connection) return;
          this.drainScheduled = false;
          this.drain();
        });
      }
      return true;
    }
    this.writes++;
    for (const packet of this.stream.push(bytes.slice(offset, offset + length))) this.handle(packet);
    return true;
  }

  /** Graceful: what write() took reaches the broker, then the link closes and the client hears it (after the latency). */
  end(): void {
    if (!this.linkUp) return;
    this.endsByClient++;
    const sink = this.sink as TransportSink;
    this.ending = true;
    this.later(this.connection, () => {
      this.deliverBuffered();
      this.ending = false;
      this.linkUp = false;
      this.connection++;
      sink.onTransportClosed("closed by the client");
    });
  }

  abort(): void {
    this.closesByClient++;
    this.discardBuffer();
    this.ending = false;
    this.linkUp = false;
    this.connection++; // anything still travelling to the old connection is lost
  }

  // ------------------------------------------------------------ test controls

  get isOpen(): boolean {
    return this.linkUp;
  }

  /** Packets of one type sent by the client (1 CONNECT, 3 PUBLISH, 8 SUBSCRIBE, 10 UNSUBSCRIBE, 12 PINGREQ, 14 DISCONNECT). */
  sent(type: number): ClientPacket[] {
    return this.received.filter((packet) => packet.type === type);
  }

  /** Delivers raw bytes to the client after the latency. */
  deliver(bytes: Uint8Array): void {
    this.later(this.connection, () => (this.sink as TransportSink).onTransportData(bytes, 0, bytes.length));
  }

  /** Publishes to the client. */
  publish(topic: string, payload: string | Uint8Array, qos = 0, retain = false): number {
    const id = qos > 0 ? this.allocateId() : 0;
    this.deliver(publishPacket(topic, payload, qos, id, retain));
    return id;
  }

  /** Bytes taken by write() and not yet sent (finite capacity only). */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Sends what the transmit buffer holds to the broker; after a refused write, tells the client there is room. */
  drain(): void {
    this.deliverBuffered();
    if (this.refused && this.linkUp) {
      this.refused = false;
      (this.sink as TransportSink).onTransportWritable();
    }
  }

  /** The broker (or the network) drops the connection now: bytes still in the transmit buffer are lost. */
  drop(reason = "connection reset by peer"): void {
    if (!this.linkUp) return;
    this.discardBuffer();
    this.linkUp = false;
    const sink = this.sink as TransportSink;
    this.connection++;
    sink.onTransportClosed(reason);
  }

  // ------------------------------------------------------------ broker behaviour

  private deliverBuffered(): void {
    const chunks = this.outbox;
    this.outbox = [];
    this.buffered = 0;
    for (const chunk of chunks) for (const packet of this.stream.push(chunk)) this.handle(packet);
  }

  private discardBuffer(): void {
    this.outbox = [];
    this.buffered = 0;
    this.refused = false;
    this.drainScheduled = false;
  }

  private later(connection: number, run: () => void): void {
    this.clock.after(this.latencyMs, () => {
      if (connection === this.connection) run();
    });
  }

  private allocateId(): number {
    const id = this.nextId;
    this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1;
    return id;
  }

  private handle(packet: ClientPacket): void {
    this.received.push(packet);
    switch (packet.type) {
      case 1:
        if (this.closeOnConnect) {
          this.clock.after(this.latencyMs, () => this.drop("closed by broker before CONNACK"));
          return;
        }
        if (packet.cleanSession) this.subscriptions.clear();
        if (this.answerConnect) this.deliver(connack(this.connackCode, this.connackCode === 0 && this.sessionPresent));
        return;
      case 3:
        if (packet.qos === 1 && this.ackPublishes) this.deliver(puback(packet.packetId));
        this.route(packet);
        return;
      case 8: {
        const codes = (packet.filters as string[]).map((filter, i) => {
          if (this.refusedFilters.includes(filter)) return 0x80;
          const qos = (packet.requestedQos as number[])[i];
          this.subscriptions.set(filter, qos);
          return qos;
        });
        if (this.ackSubscriptions) this.deliver(suback(packet.packetId, codes));
        return;
      }
      case 10:
        for (const filter of packet.filters as string[]) this.subscriptions.delete(filter);
        if (this.ackSubscriptions) this.deliver(unsuback(packet.packetId));
        return;
      case 12:
        if (this.answerPings) this.deliver(pingresp());
        return;
      default:
        return;
    }
  }

  /** Sends a client's publish back to it when one of its subscriptions matches, as a broker would. */
  private route(packet: ClientPacket): void {
    let best = -1;
    for (const [filter, qos] of this.subscriptions) {
      if (topicMatches(filter, packet.topic as string) && qos > best) best = qos;
    }
    if (best < 0) return;
    const qos = Math.min(best, packet.qos as number);
    this.deliver(publishPacket(packet.topic as string, packet.payload as Uint8Array, qos, qos > 0 ? this.allocateId() : 0));
  }

  /** Acknowledgement bytes for a client's publish, for tests that answer by hand. */
  static puback(packetId: number): Uint8Array {
    return puback(packetId);
  }
}
