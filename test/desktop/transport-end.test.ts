// The Moddable transport's end(), abort() and open() (issue 13, defects 2 and 10), over the desktop
// socket modules, against plain node:net and node:tls peers in this process: end() delivers every
// byte write() took (its transmit buffer and control reserve included), then the end of the stream,
// and reports once on a later turn; abort() discards and reports nothing; a second open() closes
// the first socket; Nagle is off on the links the transport opens and wherever noDelay asks for it.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createTcpServer, Socket as TcpSocket, type AddressInfo, type Server, type Socket } from "node:net";
import { createServer as createTlsServer } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, mock, test } from "node:test";
import { fileURLToPath, pathToFileURL } from "node:url";
import { bundleForDesktop } from "../../tools/desktop-build.ts";
import { DEV_PKI_FILES, ensureDevPki } from "../../tools/certs.ts";
import type { EndpointSettings, Transport, TransportSink } from "../../modules/types.ts";
import SecureSocket, { MESSAGE_CONNECTED } from "../../hosts/desktop/securesocket.ts";
import { Socket as DesktopSocket } from "../../hosts/desktop/socket.ts";
import Resource, { setResourceDirectory } from "../../hosts/desktop/resource.ts";

const TEST_TIMEOUT = { timeout: 30_000 };
/** A transmit buffer far larger than the socket takes at once (8 KB): most of a packet this size waits in it. */
const LARGE_PACKET_BYTES = 300_000;
/** The MQTT DISCONNECT packet: a control packet, taken from the reserve when the buffer is full. */
const DISCONNECT = Uint8Array.of(0xe0, 0x00);
const PINGREQ = Uint8Array.of(0xc0, 0x00);

type TransportModule = typeof import("./transport-entry.ts");

let root: string;
let pki: string;
let host: TransportModule;

before(async () => {
  root = mkdtempSync(join(tmpdir(), "iotlink-transport-end-"));
  pki = join(root, "pki");
  ensureDevPki({ directory: pki });
  const bundle = await bundleForDesktop(fileURLToPath(new URL("./transport-entry.ts", import.meta.url)), join(root, "transport.mjs"));
  host = (await import(pathToFileURL(bundle).href)) as TransportModule;
  host.setResourceDirectory(pki);
  setResourceDirectory(pki);
});

after(() => {
  host?.setResourceDirectory(undefined);
  setResourceDirectory(undefined);
  rmSync(root, { recursive: true, force: true });
});

/** What one accepted connection saw: its bytes, how its stream ended, and when it closed. */
class PeerConnection {
  readonly chunks: Buffer[] = [];
  ended = false;
  error: Error | undefined;
  readonly closed: Promise<void>;
  readonly socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    socket.on("data", (chunk: Buffer) => {
      this.chunks.push(chunk);
    });
    socket.on("end", () => {
      this.ended = true;
    });
    socket.on("error", (error) => {
      this.error = error;
    });
    this.closed = new Promise((done) => socket.once("close", () => done()));
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** A plain TCP or a mutual-TLS peer on the development PKI, recording each connection. */
class Peer {
  readonly connections: PeerConnection[] = [];
  private readonly waiters: Array<() => void> = [];
  private readonly server: Server;

  /** Accepted connections start paused (reading nothing) while this is set. */
  paused = false;

  constructor(readonly secure: boolean) {
    const accept = (socket: Socket): void => {
      this.connections.push(new PeerConnection(socket));
      if (this.paused) socket.pause();
      for (const wake of this.waiters.splice(0)) wake();
    };
    this.server = secure
      ? createTlsServer(
          {
            key: readFileSync(join(pki, DEV_PKI_FILES.brokerKeyPem)),
            cert: readFileSync(join(pki, DEV_PKI_FILES.brokerChainPem)),
            ca: readFileSync(join(pki, DEV_PKI_FILES.caCertificatePem)),
            requestCert: true,
            rejectUnauthorized: true,
          },
          accept,
        )
      : createTcpServer(accept);
  }

  async listen(): Promise<number> {
    await new Promise<void>((done) => this.server.listen(0, "127.0.0.1", () => done()));
    return (this.server.address() as AddressInfo).port;
  }

  async connection(index: number): Promise<PeerConnection> {
    while (this.connections.length <= index) await new Promise<void>((wake) => this.waiters.push(wake));
    return this.connections[index]!;
  }

  async stop(): Promise<void> {
    for (const connection of this.connections) connection.socket.destroy();
    await new Promise<void>((done) => this.server.close(() => done()));
  }
}

/** A sink that records every call, with the turn it came on. */
class RecordingSink implements TransportSink {
  readonly events: string[] = [];
  readonly closedReasons: string[] = [];
  insideEnd = false;
  closedInsideEnd = false;
  writable = 0;
  private readonly waiters: Array<() => void> = [];

  onTransportConnected(): void {
    this.record("connected");
  }
  onTransportData(_bytes: Uint8Array, _offset: number, length: number): void {
    this.record("data " + length);
  }
  onTransportClosed(reason: string): void {
    if (this.insideEnd) this.closedInsideEnd = true;
    this.closedReasons.push(reason);
    this.record("closed " + reason);
  }
  onTransportWritable(): void {
    this.writable++;
    this.record("writable");
  }

  private record(event: string): void {
    this.events.push(event);
    for (const wake of this.waiters.splice(0)) wake();
  }

  async until(prefix: string): Promise<void> {
    while (!this.events.some((event) => event.startsWith(prefix))) await new Promise<void>((wake) => this.waiters.push(wake));
  }
}

function endpointFor(peer: Peer, port: number): EndpointSettings {
  return peer.secure
    ? { host: "localhost", port, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" }
    : { host: "127.0.0.1", port, plaintext: true };
}

/** Bytes whose every position differs from its neighbours, so a gap or a reordering shows. */
function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 7 + seed + (i >> 8)) & 0xff;
  return bytes;
}

/** A few event-loop turns, for anything late to show up. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((turn) => setImmediate(turn));
  await new Promise((wait) => setTimeout(wait, 50));
}

/** Resolves with `promise`, or rejects once `ms` have passed: a bound on waiting, not a timing check. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(what)), ms);
  });
  return Promise.race([promise, bound]).finally(() => clearTimeout(timer));
}

async function connectedTransport(peer: Peer, port: number, index: number): Promise<{ transport: Transport; sink: RecordingSink; connection: PeerConnection }> {
  const transport = new host.SocketTransport(endpointFor(peer, port), LARGE_PACKET_BYTES) as Transport;
  const sink = new RecordingSink();
  transport.open(sink);
  await sink.until("connected");
  return { transport, sink, connection: await peer.connection(index) };
}

for (const secure of [false, true]) {
  describe(secure ? "SocketTransport over the desktop SecureSocket (mutual TLS)" : "SocketTransport over the desktop Socket (plain TCP)", () => {
    let peer: Peer;
    let port: number;
    before(async () => {
      peer = new Peer(secure);
      port = await peer.listen();
    });
    after(() => peer.stop());

    test("end() with hundreds of KB in the transmit buffer and control packets in the reserve: the peer gets every byte in order, then the end of the stream; one report, on a later turn", TEST_TIMEOUT, async () => {
      const { transport, sink, connection } = await connectedTransport(peer, port, peer.connections.length);
      const packet = pattern(LARGE_PACKET_BYTES, 1);
      assert.equal(transport.write(packet, 0, packet.length), true, "the transmit buffer takes a packet of the largest size");
      // Then data packets until the transmit buffer is full and refuses one.
      const taken: Uint8Array[] = [packet];
      for (let seed = 2; ; seed++) {
        assert.ok(seed < 10_000, "the transmit buffer never filled up");
        const more = pattern(64, seed);
        if (!transport.write(more, 0, more.length)) break;
        taken.push(more);
      }
      assert.ok(taken.length > 1, "the transmit buffer took data behind the large packet");
      assert.equal(transport.write(PINGREQ, 0, PINGREQ.length), true, "the reserve takes a control packet");
      assert.equal(transport.write(DISCONNECT, 0, DISCONNECT.length), true, "and the DISCONNECT behind it");

      sink.insideEnd = true;
      transport.end();
      sink.insideEnd = false;
      assert.equal(sink.closedInsideEnd, false, "no report from inside end()");
      assert.equal(transport.write(PINGREQ, 0, PINGREQ.length), false, "write() refuses after end(), control packets too");

      await within(connection.closed, 20_000, "the peer's connection never closed");
      const expected = Buffer.concat([...taken, PINGREQ, DISCONNECT]);
      const received = connection.received;
      assert.equal(received.length, expected.length, "the peer received every byte");
      assert.ok(received.equals(expected), "in order");
      assert.equal(connection.ended, true, "then the end of the stream");
      assert.equal(connection.error, undefined, "not a reset");
      await within(sink.until("closed"), 20_000, "end() never reported");
      await settle();
      assert.deepEqual(sink.closedReasons, ["ended"], "onTransportClosed exactly once");
      assert.equal(sink.writable, 0, "no onTransportWritable while ending");
      assert.equal(transport.write(PINGREQ, 0, PINGREQ.length), false, "write() still refuses after the report");
    });

    test("end() with nothing pending reports on a later turn; end() again adds nothing", TEST_TIMEOUT, async () => {
      const { transport, sink, connection } = await connectedTransport(peer, port, peer.connections.length);
      assert.equal(transport.write(DISCONNECT, 0, DISCONNECT.length), true);
      sink.insideEnd = true;
      transport.end();
      transport.end();
      sink.insideEnd = false;
      assert.equal(sink.closedInsideEnd, false, "no report from inside end()");
      await within(sink.until("closed"), 10_000, "end() never reported");
      await within(connection.closed, 10_000, "the peer's connection never closed");
      await settle();
      assert.ok(connection.received.equals(Buffer.from(DISCONNECT)));
      assert.equal(connection.ended, true);
      assert.deepEqual(sink.closedReasons, ["ended"]);
    });

    test("abort() discards what waits and no sink call follows, also after an end() whose report is still due", TEST_TIMEOUT, async () => {
      const { transport, sink, connection } = await connectedTransport(peer, port, peer.connections.length);
      const packet = pattern(LARGE_PACKET_BYTES, 3);
      assert.equal(transport.write(packet, 0, packet.length), true);
      assert.equal(transport.write(DISCONNECT, 0, DISCONNECT.length), true);
      const eventsBefore = sink.events.length;
      transport.abort();
      assert.equal(transport.write(DISCONNECT, 0, DISCONNECT.length), false, "write() refuses after abort()");
      await within(connection.closed, 10_000, "the peer's connection never closed");
      await settle();
      assert.ok(connection.received.length < packet.length + DISCONNECT.length, "the transmit buffer's bytes were dropped");
      assert.deepEqual(sink.events.slice(eventsBefore), [], "no sink call after abort()");

      const second = await connectedTransport(peer, port, peer.connections.length);
      second.transport.end(); // nothing pending: the report is due on a later turn
      second.transport.abort();
      await within(second.connection.closed, 10_000, "the peer's connection never closed");
      await settle();
      assert.deepEqual(second.sink.closedReasons, [], "abort() drops the report end() had scheduled");
    });

    test("open() again without end() or abort(): the first socket is closed at the peer, and only the new link reports", TEST_TIMEOUT, async () => {
      const transport = new host.SocketTransport(endpointFor(peer, port), LARGE_PACKET_BYTES) as Transport;
      const first = new RecordingSink();
      transport.open(first);
      await first.until("connected");
      const firstConnection = await peer.connection(peer.connections.length - 1);
      const second = new RecordingSink();
      transport.open(second);
      await second.until("connected");
      await within(firstConnection.closed, 5_000, "the first socket was left open (orphaned)");
      await settle();
      assert.deepEqual(first.closedReasons, [], "the aborted first link reports nothing");
      assert.deepEqual(second.closedReasons, []);
      transport.end();
      await within(second.until("closed"), 10_000, "end() never reported");
      assert.deepEqual(second.closedReasons, ["ended"]);
    });

    test("the transport asks for Nagle off (noDelay) on its TCP socket", TEST_TIMEOUT, async (t) => {
      const calls: Array<{ socket: TcpSocket; enable: unknown }> = [];
      const original = TcpSocket.prototype.setNoDelay;
      t.mock.method(TcpSocket.prototype, "setNoDelay", function (this: TcpSocket, enable?: boolean) {
        calls.push({ socket: this, enable });
        return original.call(this, enable);
      });
      const { transport, connection } = await connectedTransport(peer, port, peer.connections.length);
      const ours = calls.filter((call) => call.socket.localPort === connection.socket.remotePort);
      assert.ok(ours.some((call) => call.enable === true), "setNoDelay(true) on the transport's own TCP socket");
      assert.ok(!ours.some((call) => call.enable === false));
      transport.abort();
    });
  });
}

describe("desktop socket modules honour Moddable's noDelay option", () => {
  let peer: Peer;
  let port: number;
  before(async () => {
    peer = new Peer(true);
    port = await peer.listen();
  });
  after(() => peer.stop());

  function spyOnSetNoDelay(): Array<{ socket: TcpSocket; enable: unknown }> {
    const calls: Array<{ socket: TcpSocket; enable: unknown }> = [];
    const original = TcpSocket.prototype.setNoDelay;
    mock.method(TcpSocket.prototype, "setNoDelay", function (this: TcpSocket, enable?: boolean) {
      calls.push({ socket: this, enable });
      return original.call(this, enable);
    });
    return calls;
  }

  async function openSecure(noDelay: boolean | undefined): Promise<{ socket: SecureSocket; connection: PeerConnection }> {
    const socket = new SecureSocket({
      host: "localhost",
      port,
      ...(noDelay === undefined ? {} : { noDelay }),
      secure: {
        protocolVersion: 0x303,
        certificate: new Resource("ca.der"),
        clientCertificates: [new Resource("device-cert.der")],
        clientKey: new Resource("device-key.der"),
      },
    });
    await new Promise<void>((connected, failed) => {
      socket.callback = (message) => {
        if (message === MESSAGE_CONNECTED) connected();
        else if (message < 0) failed(new Error("message " + message));
      };
    });
    return { socket, connection: await peer.connection(peer.connections.length - 1) };
  }

  test("SecureSocket with noDelay: true turns Nagle off on its TCP socket; without it Nagle stays on, as on the device", TEST_TIMEOUT, async () => {
    const calls = spyOnSetNoDelay();
    try {
      const on = await openSecure(true);
      const onCalls = calls.filter((call) => call.socket.localPort === on.connection.socket.remotePort);
      assert.ok(onCalls.some((call) => call.enable === true), "setNoDelay(true) on the SecureSocket's TCP socket");
      on.socket.close();

      const off = await openSecure(undefined);
      const offCalls = calls.filter((call) => call.socket.localPort === off.connection.socket.remotePort);
      assert.ok(!offCalls.some((call) => call.enable === true), "no setNoDelay(true) without the option");
      off.socket.close();
    } finally {
      mock.restoreAll();
    }
  });

  test("Socket with noDelay: true turns Nagle off; without it Nagle stays on", TEST_TIMEOUT, async () => {
    const plain = new Peer(false);
    const plainPort = await plain.listen();
    const calls = spyOnSetNoDelay();
    try {
      for (const noDelay of [true, undefined]) {
        const socket = new DesktopSocket({ host: "127.0.0.1", port: plainPort, ...(noDelay === undefined ? {} : { noDelay }) });
        await new Promise<void>((connected) => {
          socket.callback = (message) => {
            if (message === 1) connected();
          };
        });
        const connection = await plain.connection(plain.connections.length - 1);
        const ours = calls.filter((call) => call.socket.localPort === connection.socket.remotePort);
        assert.equal(ours.some((call) => call.enable === true), noDelay === true, "setNoDelay(true) exactly when noDelay is true");
        socket.close();
      }
    } finally {
      mock.restoreAll();
      await plain.stop();
    }
  });
});

describe("desktop socket modules: close() keeps what write() took, as Moddable's does", () => {
  for (const secure of [false, true]) {
    test(`${secure ? "SecureSocket" : "Socket"}: bytes still in Node's buffers at close() reach the peer, in order, then the end of the stream; no callback follows`, TEST_TIMEOUT, async () => {
      const peer = new Peer(secure);
      const peerPort = await peer.listen();
      peer.paused = true; // the peer reads nothing until the socket is closed: the buffers fill up
      try {
        const socket = secure
          ? new SecureSocket({
              host: "localhost",
              port: peerPort,
              noDelay: true,
              secure: {
                protocolVersion: 0x303,
                certificate: new Resource("ca.der"),
                clientCertificates: [new Resource("device-cert.der")],
                clientKey: new Resource("device-key.der"),
              },
            })
          : new DesktopSocket({ host: "127.0.0.1", port: peerPort, noDelay: true });
        const events: number[] = [];
        let wake: (() => void) | undefined;
        socket.callback = (message: number) => {
          events.push(message);
          wake?.();
        };
        while (!events.includes(1)) await new Promise<void>((done) => (wake = done));
        const connection = await peer.connection(0);
        // The Node socket under the desktop module: written bytes wait in it once the kernel is full.
        const tcp = (socket as unknown as { socket?: TcpSocket; tcp?: TcpSocket }).tcp ?? (socket as unknown as { socket: TcpSocket }).socket;
        const written: Uint8Array[] = [];
        let seed = 0;
        while (tcp.writableLength === 0) {
          assert.ok(seed < 100_000, "the socket's buffers never filled up");
          const room = socket.write() as number;
          if (room > 0) {
            const chunk = pattern(room, seed++);
            socket.write(chunk);
            written.push(chunk);
          } else await new Promise((turn) => setImmediate(turn));
        }
        const last = pattern(Math.min(100, socket.write() as number), seed++);
        if (last.length > 0) {
          socket.write(last);
          written.push(last);
        }
        const eventsAtClose = events.length;
        socket.close();
        connection.socket.resume();
        await within(connection.closed, 20_000, "the peer's connection never closed");
        await settle();
        const expected = Buffer.concat(written);
        const received = connection.received;
        assert.equal(received.length, expected.length, "the peer received every byte written before close()");
        assert.ok(received.equals(expected), "in order");
        assert.equal(connection.ended, true, "then the end of the stream");
        assert.equal(connection.error, undefined, "not a reset");
        assert.equal(events.length, eventsAtClose, "no callback after close()");
      } finally {
        await peer.stop();
      }
    });
  }
});

test("resumeTlsSessions: false asks the SDK's TLS for no session cache (a claim connection's session is never resumed by the device's own); a non-boolean is refused at construction", () => {
  const endpoint = { host: "localhost", port: 8883, caResource: "ca.der", certificateResource: "device-cert.der", keyResource: "device-key.der" };
  const secureOptionsOf = (transport: unknown): Record<string, unknown> => (transport as { secureOptions(): Record<string, unknown> }).secureOptions();
  assert.equal(secureOptionsOf(new host.SocketTransport({ ...endpoint, resumeTlsSessions: false })).cache, false);
  assert.equal(secureOptionsOf(new host.SocketTransport(endpoint)).cache, undefined, "the SDK's default: resume");
  assert.throws(() => new host.SocketTransport({ ...endpoint, resumeTlsSessions: "no" as never }), /resumeTlsSessions must be true or false/);
});
