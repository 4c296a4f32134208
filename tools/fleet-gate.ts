// The accept gate of `npm run fleet`: a small TCP proxy between the simulated devices and Mosquitto
// that sees every connection attempt as it reaches "the broker" (the TCP accept, timestamped), and
// can push back the way a managed broker does:
//
//   const gate = await startFleetGate({ targetPort: broker.port });
//   ... devices connect to 127.0.0.1:gate.port ...
//   gate.limit(100);      // a connection-rate limit like AWS IoT Core's: at most 100 attempts/s
//                         // admitted (token bucket holding 1 s of tokens); the rest are closed at once
//   gate.refuse(true);    // every new attempt is closed at once (the site's link is down)
//   gate.cutAll();        // every open link is reset, both sides, now
//   gate.accepts          // timestamps (epoch ms) of every attempt, admitted or not
//   await gate.close();
//
// While the broker itself is down (a restart), an admitted attempt finds no upstream and is closed:
// it is still an attempt, and is counted. Bytes pass through untouched (TLS is end to end). Listens
// and connects on 127.0.0.1 only.
import { once } from "node:events";
import { connect, createServer, type AddressInfo, type Server, type Socket } from "node:net";

export const LOOPBACK = "127.0.0.1";

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

export interface FleetGateOptions {
  /** Mosquitto's port on 127.0.0.1. */
  readonly targetPort: number;
  /** 0 or absent: a free port. */
  readonly port?: number;
}

export interface FleetGateStats {
  /** Attempts seen (TCP accepts), whatever became of them. */
  readonly attempts: number;
  /** Closed at once by the rate limit. */
  readonly limited: number;
  /** Closed at once while refusing (a cut link). */
  readonly refused: number;
  /** Admitted, but the broker was not there (connection refused upstream). */
  readonly upstreamFailed: number;
  /** Admitted and joined to the broker. */
  readonly joined: number;
  /** Links open now. */
  readonly open: number;
}

interface Link {
  readonly client: Socket;
  readonly broker: Socket;
}

function reset(socket: Socket): void {
  if (socket.destroyed) return;
  if (typeof socket.resetAndDestroy === "function" && !socket.connecting) socket.resetAndDestroy();
  else socket.destroy();
}

export class FleetGate {
  /** Epoch ms of every attempt, in order. */
  readonly accepts: number[] = [];
  /** Epoch ms of every attempt the rate limit closed. */
  readonly limitedAt: number[] = [];
  private server: Server | undefined;
  private readonly links = new Set<Link>();
  private listenPort = 0;
  private refusing = false;
  private ratePerSecond = 0;
  private tokens = 0;
  private refilledAt = 0;
  private counts = { limited: 0, refused: 0, upstreamFailed: 0, joined: 0 };

  constructor(private readonly options: FleetGateOptions) {}

  get port(): number {
    return this.listenPort;
  }

  get stats(): FleetGateStats {
    return { attempts: this.accepts.length, ...this.counts, open: this.links.size };
  }

  async listen(): Promise<this> {
    const server = createServer({ noDelay: true }, (client) => this.accept(client));
    server.on("error", () => undefined);
    this.server = server;
    // A deep backlog: a storm must reach the gate's accept(), where it is counted, not wait in SYN queues.
    server.listen({ port: this.options.port ?? 0, host: LOOPBACK, backlog: 4096 });
    await once(server, "listening");
    this.listenPort = (server.address() as AddressInfo).port;
    return this;
  }

  /** Forgets the counts and timestamps (between runs); faults are left as they are. */
  clearCounts(): void {
    this.accepts.length = 0;
    this.limitedAt.length = 0;
    this.counts = { limited: 0, refused: 0, upstreamFailed: 0, joined: 0 };
  }

  /** At most `perSecond` attempts per second admitted (a bucket of one second's tokens, full now); 0: no limit. */
  limit(perSecond: number): void {
    this.ratePerSecond = perSecond > 0 ? perSecond : 0;
    this.tokens = this.ratePerSecond;
    this.refilledAt = performance.now();
  }

  /** New attempts are closed at once (the link to the broker is down). */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /** Resets every open link, both sides. Returns how many there were. */
  cutAll(): number {
    const open = [...this.links];
    this.links.clear();
    for (const link of open) {
      reset(link.client);
      reset(link.broker);
    }
    return open.length;
  }

  private admit(): boolean {
    if (this.ratePerSecond === 0) return true;
    const now = performance.now();
    this.tokens = Math.min(this.ratePerSecond, this.tokens + ((now - this.refilledAt) * this.ratePerSecond) / 1000);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private accept(client: Socket): void {
    const at = epochMs();
    this.accepts.push(at);
    client.on("error", () => undefined);
    if (this.refusing) {
      this.counts.refused++;
      reset(client);
      return;
    }
    if (!this.admit()) {
      this.counts.limited++;
      this.limitedAt.push(at);
      reset(client);
      return;
    }
    client.setNoDelay(true);
    client.pause();
    const broker = connect({ host: LOOPBACK, port: this.options.targetPort, noDelay: true });
    const link: Link = { client, broker };
    let joined = false;
    let ended = false;
    broker.on("error", () => {
      if (!joined && !ended) this.counts.upstreamFailed++;
    });
    broker.once("connect", () => {
      if (ended) return;
      joined = true;
      this.counts.joined++;
      this.links.add(link);
      client.pipe(broker);
      broker.pipe(client);
      client.resume();
    });
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.links.delete(link);
      // Whichever side went first, the other goes too (a broker that died resets its clients).
      client.destroy();
      broker.destroy();
    };
    broker.once("close", end);
    client.once("close", end);
  }

  async close(): Promise<void> {
    this.cutAll();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((done) => server.close(() => done()));
  }
}

export async function startFleetGate(options: FleetGateOptions): Promise<FleetGate> {
  return new FleetGate(options).listen();
}
