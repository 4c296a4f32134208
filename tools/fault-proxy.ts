// A small TCP fault proxy: client <-> proxy <-> broker, with faults switched at run time (this
// kernel has no netem). Every fault is per direction: "up" is client -> broker, "down" is
// broker -> client.
//
//   const proxy = await startFaultProxy({ targetPort: broker.port });
//   ... connect the client to 127.0.0.1:proxy.port ...
//   proxy.cutNow();                                  // both directions, every open link, now
//   proxy.cutAfter("down", 37);                      // the link dies after 37 more bytes broker -> client (mid-packet)
//   proxy.cutAfter("down", 100, { next: true });     // ... on the next link only (mid TLS handshake)
//   proxy.blackhole(true);                           // open links forward nothing, and stay open (half-open)
//   proxy.blackhole(true, "both", { next: true });   // the next link forwards nothing from the start
//   proxy.fragment("both", 1, 2);                    // 1-byte segments, 2 ms apart (0: next event-loop turn)
//   proxy.latency("up", 80);                         // every byte up arrives 80 ms later
//   proxy.refuse(true);                              // new connections are closed at once (broker unreachable)
//   proxy.heal();                                    // no more faults (blackholed links are cut)
//   await proxy.close();
//
// Order is always kept within a direction, whatever the faults. Nothing here touches the bytes:
// TLS passes through untouched, so the client still verifies the broker end to end.
import { once } from "node:events";
import { createServer, connect, type AddressInfo, type Server, type Socket } from "node:net";

export type Direction = "up" | "down";
export type Directions = Direction | "both";

export interface FaultProxyOptions {
  readonly targetPort: number;
  /** Default 127.0.0.1. */
  readonly targetHost?: string;
  /** Default 127.0.0.1. */
  readonly listenHost?: string;
  /** 0 or absent: a free port. */
  readonly port?: number;
  /** Sees every chunk as it arrives at the proxy, before any fault (link number from 1). */
  readonly tap?: (direction: Direction, link: number, bytes: Buffer) => void;
}

export interface CutOptions {
  /** Apply to the next link accepted instead of the links open now. */
  readonly next?: boolean;
  /** "reset" (default) sends TCP RST both ways; "fin" closes both ways in an orderly manner. */
  readonly how?: "reset" | "fin";
}

interface DirectionFaults {
  latencyMs: number;
  segmentBytes: number;
  segmentDelayMs: number;
}

interface PendingCut {
  readonly direction: Direction;
  readonly bytes: number;
  readonly how: "reset" | "fin";
}

const sleep = (ms: number): Promise<void> => new Promise((done) => (ms <= 0 ? setImmediate(done) : setTimeout(done, ms)));

/** Bytes queued in one direction before the source is paused. */
const HIGH_WATER = 1 << 20;

class Pipe {
  private queue: { bytes: Buffer; at: number }[] = [];
  private queuedBytes = 0;
  private pumping = false;
  private sourceEnded = false;
  /** Bytes still allowed through before the link is cut; -1: no cut pending. */
  cutBudget = -1;
  cutHow: "reset" | "fin" = "reset";
  blackholed = false;
  forwarded = 0;
  swallowed = 0;

  constructor(
    readonly link: Link,
    readonly direction: Direction,
    readonly from: Socket,
    readonly to: Socket,
  ) {}

  push(bytes: Buffer): void {
    if (this.blackholed) {
      this.swallowed += bytes.length;
      return;
    }
    this.queue.push({ bytes, at: performance.now() });
    this.queuedBytes += bytes.length;
    if (this.queuedBytes > HIGH_WATER) this.from.pause();
    void this.pump();
  }

  sourceEnd(): void {
    this.sourceEnded = true;
    void this.pump();
  }

  dropQueued(): void {
    this.swallowed += this.queuedBytes;
    this.queue = [];
    this.queuedBytes = 0;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.link.closed && !this.blackholed) {
        const item = this.queue[0]!;
        const faults = this.link.proxy.faultsOf(this.direction);
        const wait = item.at + faults.latencyMs - performance.now();
        if (wait > 0) await sleep(wait);
        if (this.link.closed || this.blackholed) break;
        let offset = 0;
        while (offset < item.bytes.length) {
          const segment = faults.segmentBytes > 0 ? faults.segmentBytes : item.bytes.length;
          const piece = item.bytes.subarray(offset, Math.min(item.bytes.length, offset + segment));
          if (!this.send(piece)) return;
          offset += piece.length;
          if (faults.segmentBytes > 0 && offset < item.bytes.length) {
            await sleep(faults.segmentDelayMs);
            if (this.link.closed || this.blackholed) return;
          }
        }
        this.queue.shift();
        this.queuedBytes -= item.bytes.length;
        if (this.queuedBytes <= HIGH_WATER) this.from.resume();
      }
      if (this.queue.length === 0 && this.sourceEnded && !this.link.closed && !this.blackholed) {
        // The source closed in an orderly way and everything is through: pass the FIN on.
        this.to.end();
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Writes a piece, honouring a pending cut. False once the link is cut. */
  private send(piece: Buffer): boolean {
    if (this.cutBudget >= 0 && piece.length >= this.cutBudget) {
      const allowed = piece.subarray(0, this.cutBudget);
      if (allowed.length > 0) this.write(allowed);
      this.link.cut(this.cutHow);
      return false;
    }
    if (this.cutBudget >= 0) this.cutBudget -= piece.length;
    this.write(piece);
    return true;
  }

  private write(piece: Buffer): void {
    if (this.to.destroyed || this.to.writableEnded) return;
    this.forwarded += piece.length;
    this.link.proxy.countForwarded(this.direction, piece.length);
    this.to.write(piece);
  }
}

class Link {
  closed = false;
  readonly up: Pipe;
  readonly down: Pipe;
  readonly openedAt = performance.now();

  constructor(
    readonly proxy: FaultProxy,
    readonly id: number,
    readonly client: Socket,
    readonly broker: Socket,
  ) {
    this.up = new Pipe(this, "up", client, broker);
    this.down = new Pipe(this, "down", broker, client);
  }

  pipe(direction: Direction): Pipe {
    return direction === "up" ? this.up : this.down;
  }

  get blackholed(): boolean {
    return this.up.blackholed || this.down.blackholed;
  }

  /** Ends both sides now. */
  cut(how: "reset" | "fin" = "reset"): void {
    if (this.closed) return;
    this.closed = true;
    for (const socket of [this.client, this.broker]) {
      if (how === "reset" && typeof socket.resetAndDestroy === "function" && !socket.destroyed && !socket.connecting) socket.resetAndDestroy();
      else if (how === "fin") {
        socket.end();
        setTimeout(() => socket.destroy(), 200).unref();
      } else socket.destroy();
    }
    this.proxy.forget(this);
  }
}

export interface FaultProxyStats {
  /** Links accepted (each one client connection). */
  readonly links: number;
  readonly open: number;
  readonly refused: number;
  readonly cuts: number;
  readonly bytesUp: number;
  readonly bytesDown: number;
}

export class FaultProxy {
  readonly host: string;
  private server: Server | undefined;
  private readonly links = new Set<Link>();
  private readonly faults: Record<Direction, DirectionFaults> = {
    up: { latencyMs: 0, segmentBytes: 0, segmentDelayMs: 0 },
    down: { latencyMs: 0, segmentBytes: 0, segmentDelayMs: 0 },
  };
  private nextCuts: PendingCut[] = [];
  private blackholeNext = false;
  private refusing = false;
  private linkCount = 0;
  private refusedCount = 0;
  private cutCount = 0;
  private bytesUp = 0;
  private bytesDown = 0;
  private listenPort = 0;
  /** Resolved waiters of the next link. */
  private linkWaiters: ((link: number) => void)[] = [];

  constructor(private readonly options: FaultProxyOptions) {
    this.host = options.listenHost ?? "127.0.0.1";
  }

  get port(): number {
    return this.listenPort;
  }

  get stats(): FaultProxyStats {
    return { links: this.linkCount, open: this.links.size, refused: this.refusedCount, cuts: this.cutCount, bytesUp: this.bytesUp, bytesDown: this.bytesDown };
  }

  /** Number of links open now. */
  get openLinks(): number {
    return this.links.size;
  }

  async listen(): Promise<this> {
    const server = createServer({ noDelay: true }, (client) => this.accept(client));
    this.server = server;
    server.listen(this.options.port ?? 0, this.host);
    await once(server, "listening");
    this.listenPort = (server.address() as AddressInfo).port;
    return this;
  }

  faultsOf(direction: Direction): Readonly<DirectionFaults> {
    return this.faults[direction];
  }

  /** @internal */
  countForwarded(direction: Direction, bytes: number): void {
    if (direction === "up") this.bytesUp += bytes;
    else this.bytesDown += bytes;
  }

  /** @internal */
  forget(link: Link): void {
    if (this.links.delete(link)) this.cutCount++;
  }

  private accept(client: Socket): void {
    client.on("error", () => undefined);
    if (this.refusing) {
      this.refusedCount++;
      client.destroy();
      return;
    }
    const id = ++this.linkCount;
    const broker = connect({ host: this.options.targetHost ?? "127.0.0.1", port: this.options.targetPort, noDelay: true });
    broker.on("error", () => undefined);
    const link = new Link(this, id, client, broker);
    this.links.add(link);
    for (const pending of this.nextCuts) {
      const pipe = link.pipe(pending.direction);
      pipe.cutBudget = pending.bytes;
      pipe.cutHow = pending.how;
    }
    this.nextCuts = [];
    if (this.blackholeNext) {
      link.up.blackholed = true;
      link.down.blackholed = true;
      this.blackholeNext = false;
    }
    client.setNoDelay(true);
    const tap = this.options.tap;
    client.on("data", (bytes: Buffer) => {
      tap?.("up", id, bytes);
      link.up.push(bytes);
    });
    broker.on("data", (bytes: Buffer) => {
      tap?.("down", id, bytes);
      link.down.push(bytes);
    });
    // A close from either side is passed on, unless the link is blackholed: then the other side
    // never hears of it (a half-open link).
    const onEnd = (pipe: Pipe) => () => {
      if (!link.blackholed) pipe.sourceEnd();
    };
    client.on("end", onEnd(link.up));
    broker.on("end", onEnd(link.down));
    const onClose = (other: Socket) => () => {
      if (link.closed || link.blackholed) return;
      // Give an orderly end a moment to flush what is queued the other way.
      setTimeout(() => {
        if (link.closed || link.blackholed) return;
        link.closed = true;
        other.destroy();
        this.links.delete(link);
      }, 20);
    };
    client.on("close", onClose(broker));
    broker.on("close", onClose(client));
    for (const wake of this.linkWaiters.splice(0)) wake(id);
  }

  /** Resolves with the number of the next link accepted. */
  nextLink(timeoutMs = 10_000): Promise<number> {
    return new Promise((done, fail) => {
      const timer = setTimeout(() => fail(new Error(`fault proxy: no new link within ${timeoutMs} ms`)), timeoutMs);
      this.linkWaiters.push((id) => {
        clearTimeout(timer);
        done(id);
      });
    });
  }

  private directions(which: Directions): Direction[] {
    return which === "both" ? ["up", "down"] : [which];
  }

  /** Cuts every open link, both directions, now. Returns how many were cut. */
  cutNow(how: "reset" | "fin" = "reset"): number {
    const open = [...this.links];
    for (const link of open) link.cut(how);
    return open.length;
  }

  /** The link dies after `bytes` more bytes in `direction` (0: at its next byte). */
  cutAfter(direction: Direction, bytes: number, options: CutOptions = {}): void {
    const how = options.how ?? "reset";
    if (options.next) {
      this.nextCuts.push({ direction, bytes, how });
      return;
    }
    for (const link of this.links) {
      const pipe = link.pipe(direction);
      pipe.cutBudget = bytes;
      pipe.cutHow = how;
    }
  }

  /**
   * Open links stop forwarding (what is in transit is lost) and stay open; closes are not passed
   * on. With `next`, the next link accepted is blackholed from its first byte instead (a TCP
   * connection that opens, then never answers: the TLS handshake hangs).
   */
  blackhole(on: boolean, direction: Directions = "both", options: { next?: boolean } = {}): void {
    if (options.next) {
      this.blackholeNext = on;
      return;
    }
    for (const link of this.links) {
      for (const d of this.directions(direction)) {
        const pipe = link.pipe(d);
        pipe.blackholed = on;
        if (on) pipe.dropQueued();
      }
    }
  }

  /** Splits every chunk into segments of `segmentBytes` (0: off), `delayMs` apart (0: next turn). */
  fragment(direction: Directions, segmentBytes: number, delayMs = 0): void {
    for (const d of this.directions(direction)) {
      this.faults[d].segmentBytes = segmentBytes;
      this.faults[d].segmentDelayMs = delayMs;
    }
  }

  /** Delays every chunk by `ms` (order kept). */
  latency(direction: Directions, ms: number): void {
    for (const d of this.directions(direction)) this.faults[d].latencyMs = ms;
  }

  /** New connections are accepted and closed at once (the broker looks unreachable). */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /** Clears every fault setting; blackholed links are cut (their sessions are dead anyway). */
  heal(): void {
    this.fragment("both", 0);
    this.latency("both", 0);
    this.nextCuts = [];
    this.blackholeNext = false;
    this.refusing = false;
    for (const link of [...this.links]) {
      if (link.blackholed) link.cut("reset");
      link.up.cutBudget = -1;
      link.down.cutBudget = -1;
    }
  }

  async close(): Promise<void> {
    this.cutNow();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((done) => server.close(() => done()));
  }
}

export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  return new FaultProxy(options).listen();
}
