// The core's Transport over Moddable's SecureSocket (mutual TLS, certificates and key from flash
// resources) or, only when the user asked for it, a plain Socket. Moddable's socket write throws
// when more is written than the socket can take, so bytes that do not fit yet wait in a transmit
// buffer of fixed size and go out on the next "writable" callback. When that buffer is full too,
// write() refuses (the link stays up) and the sink hears onTransportWritable() once it has drained;
// a small reserve at its end takes control packets (PUBACK, PINGREQ, DISCONNECT) even then.
//
// end() and Moddable's close(), as read in the Moddable SDK 8.2.3 sources:
// - modules/network/socket/lwip/modSocket.c (ESP32): write() copies the bytes into lwIP's send queue
//   (tcp_write with TCP_WRITE_FLAG_COPY) before it returns; close() detaches the callbacks and calls
//   tcp_close(), which in lwIP (src/core/tcp.c, tcp_close_shutdown_fin) queues the FIN behind the
//   unsent bytes and calls tcp_output(): lwIP goes on sending and retransmitting them after close()
//   has returned, with no callback to the socket's owner. One exception: lwIP answers close() with a
//   RST and drops its queue when received bytes were not yet read (tcp_recved() not called), so the
//   transport keeps reading while it ends.
// - modules/network/socket/lin/modSocket.c (simulator): write() hands the bytes to a blocking send()
//   at once; close() closes the descriptor, and the kernel sends what it holds, then the FIN (a RST
//   too if unread bytes remain).
// - modules/crypt/securesocket/securesocket.js: SecureSocket.write() encrypts into a TLS record and
//   writes it to its Socket at once (modsecuresocket.c, ssl/session_original.js write()); close()
//   closes that Socket without a close_notify alert.
// So bytes handed to socket.write() are on their way and close() keeps them: end() first moves its
// own transmit buffer and control reserve into the socket (on "writable" callbacks, as write() does),
// then calls close(), then reports. There is no callback for the bytes reaching the broker.
//
// Nagle: lwip/modSocket.c (configureSocketTCP) calls tcp_nagle_disable() when the constructor's
// dictionary has a truthy `noDelay`, and SecureSocket hands its whole dictionary to new Socket(), so
// `noDelay: true` reaches lwIP for both kinds of link. Without it a small packet (PUBACK, PINGREQ,
// a small PUBLISH) waits while earlier bytes are unacknowledged: up to a delayed ACK, tens of ms.
// The Linux simulator's socket (lin/modSocket.c) ignores the option (Nagle stays on there).
import Resource from "Resource";
import SecureSocket from "securesocket";
import { Socket } from "socket";
import { CONTROL_PACKET_BYTES, type EndpointSettings, hostProblem, invalid, type Transport, type TransportSink, wholeNumberProblem } from "../../modules/types";

const CONNECTED = 1;
const READABLE = 2;
const WRITABLE = 3;
const DISCONNECTED = -1;

/**
 * The control packet reserve: 128 PUBACKs, more than a broker has unacknowledged QoS 1 messages in
 * flight to one client (AWS IoT Core allows 100, Mosquitto 20 by default), so a PUBACK finds room.
 */
const CONTROL_RESERVE_BYTES = 512;

/** The transmit buffer's size at most, unless the largest packet is larger. */
const TRANSMIT_BUFFER_BYTES = 4096;

interface MinimalSocket {
  callback: (message: number, value?: number) => void;
  read(type: typeof ArrayBuffer): ArrayBuffer;
  /** With no argument: how many bytes can be written now. */
  write(...data: (ArrayBuffer | ArrayBufferView)[]): number;
  close(): void;
}

function isName(value: unknown): value is string {
  return typeof value === "string" && value.length > 0;
}

/** What is wrong with an endpoint, or "": checked when the transport is made, not at the first connect. */
function endpointProblem(endpoint: EndpointSettings): string {
  if (typeof endpoint !== "object" || endpoint === null) return "endpoint must be an object";
  const { host, port, plaintext, caResource, certificateResource, keyResource, certificate, key, serverName, alpn } = endpoint;
  const problem = hostProblem("endpoint host", host) || wholeNumberProblem("endpoint port", port, 1, 65535);
  if (problem !== "") return problem;
  if (plaintext !== undefined && typeof plaintext !== "boolean") return "plaintext must be true or false";
  if (endpoint.resumeTlsSessions !== undefined && typeof endpoint.resumeTlsSessions !== "boolean") return "resumeTlsSessions must be true or false";
  if (serverName !== undefined && !isName(serverName)) return "serverName must be a non-empty string when given";
  if (alpn !== undefined && (!Array.isArray(alpn) || alpn.length === 0 || !alpn.every(isName))) return "alpn must be a non-empty list of protocol names";
  for (const [name, value] of [["caResource", caResource], ["certificateResource", certificateResource], ["keyResource", keyResource]] as const) {
    if (value !== undefined && !isName(value)) return name + " must be a resource name";
    // Found now, not at every connect attempt, where it would be retried with backoff for ever.
    if (value !== undefined && !Resource.exists(value)) return name + " " + value + " not found: add it to the manifest's resources (see docs/device-app.md)";
  }
  for (const [name, value] of [["certificate", certificate], ["key", key]] as const) {
    if (value !== undefined && (!(value instanceof Uint8Array) || value.length === 0)) return name + " must be the DER bytes (a non-empty Uint8Array) when given";
  }
  if (!certificate !== !key) return "certificate and key go together (mutual TLS with an identity from storage), or are both left out";
  if (certificate && (certificateResource || keyResource)) return "give the device certificate and key as resources or as bytes, not both";
  if (plaintext) {
    return caResource || certificateResource || keyResource || certificate ? "plaintext connections take no certificates: drop plaintext or the resources" : "";
  }
  if (!caResource) return "TLS needs a CA certificate resource (caResource); plain TCP must be asked for with plaintext: true";
  if (!certificateResource !== !keyResource) return "certificateResource and keyResource go together (mutual TLS), or are both left out";
  return "";
}

/** Copies a flash resource into RAM once: the TLS stack keeps references to its inputs. */
function loadResource(name: string): ArrayBuffer {
  // endpointProblem() has checked that it exists.
  return new Resource(name).slice(0) as ArrayBuffer;
}

function copyBytes(bytes: Uint8Array): ArrayBuffer {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy.buffer as ArrayBuffer;
}

export class SocketTransport implements Transport {
  private readonly endpoint: EndpointSettings;
  private socket: MinimalSocket | undefined;
  private sink: TransportSink | undefined;
  private connected = false;
  private readonly pending: Uint8Array;
  private pendingBytes = 0;
  /**
   * Control packets that found the transmit buffer full. They follow everything in `pending` on the
   * wire, so nothing else is taken until flush() has moved them into `pending`.
   */
  private readonly control = new Uint8Array(CONTROL_RESERVE_BYTES);
  private controlBytes = 0;
  /** A write was refused for lack of room: call onTransportWritable() once there is room again. */
  private refused = false;
  /** end() was called: write() refuses, and the link closes once the buffers above are in the socket. */
  private ending = false;
  /** Counts abort()s: a report deferred to a later turn is dropped when its link was aborted meanwhile. */
  private link = 0;
  private secure: Record<string, unknown> | undefined;
  /**
   * The native socket of the latest connection, kept reachable until the next open(). When a
   * connection fails or the broker closes it, the socket is closed and dropped inside its own
   * callback (SecureSocket drops `sock` itself), but Moddable's Linux socket (modSocket.c) goes on
   * using its native record after the callback returns: a garbage collection during the callback
   * freed that record and crashed the simulator on reconnect.
   */
  private retained: unknown;

  /**
   * The transmit buffer holds what the socket cannot take at once: two of the largest packets up to
   * 4 KB (the device app's 1 KB packets keep 2 KB), or the largest packet if that is larger, which
   * could otherwise never be written. The control packet reserve comes on top.
   */
  constructor(endpoint: EndpointSettings, largestPacketBytes = 0) {
    const problem = endpointProblem(endpoint) || wholeNumberProblem("largestPacketBytes", largestPacketBytes, 0, 268435460);
    if (problem !== "") throw invalid(problem);
    this.endpoint = endpoint;
    const twoPackets = largestPacketBytes === 0 || largestPacketBytes * 2 > TRANSMIT_BUFFER_BYTES ? TRANSMIT_BUFFER_BYTES : largestPacketBytes * 2;
    this.pending = new Uint8Array(largestPacketBytes > twoPackets ? largestPacketBytes : twoPackets);
  }

  private secureOptions(): Record<string, unknown> {
    if (this.secure) return this.secure;
    const endpoint = this.endpoint;
    const secure: Record<string, unknown> = {
      protocolVersion: 0x303, // TLS 1.2: the highest Moddable's TLS stack speaks
      certificate: loadResource(endpoint.caResource as string),
      serverName: endpoint.serverName ?? endpoint.host,
    };
    if (endpoint.certificateResource && endpoint.keyResource) {
      secure.clientCertificates = [loadResource(endpoint.certificateResource)];
      secure.clientKey = loadResource(endpoint.keyResource);
    } else if (endpoint.certificate && endpoint.key) {
      // Copied: the TLS stack keeps references to its inputs, and the caller's buffers may be reused.
      secure.clientCertificates = [copyBytes(endpoint.certificate)];
      secure.clientKey = copyBytes(endpoint.key);
    }
    if (endpoint.alpn) secure.applicationLayerProtocolNegotiation = endpoint.alpn;
    // The SDK's session cache (ssl/cache) is keyed by server name only.
    if (endpoint.resumeTlsSessions === false) secure.cache = false;
    this.secure = secure;
    return secure;
  }

  open(sink: TransportSink): void {
    // A link still open (or ending) from an earlier open() is aborted, never orphaned.
    this.abort();
    const link = this.link;
    this.sink = sink;
    const { host, port } = this.endpoint;
    let socket: MinimalSocket;
    try {
      // noDelay turns Nagle off in lwIP (see the header); SecureSocket passes it on to its Socket.
      socket = (this.endpoint.plaintext
        ? new Socket({ host, port, noDelay: true })
        : new SecureSocket({ host, port, noDelay: true, secure: this.secureOptions() })) as unknown as MinimalSocket;
    } catch (error) {
      // Report on the next turn, like every other transport event (not when aborted meanwhile).
      const reason = "cannot open " + host + ":" + port + ": " + (error instanceof Error ? error.message : String(error));
      Promise.resolve().then(() => {
        if (this.link === link) sink.onTransportClosed(reason);
      });
      return;
    }
    this.socket = socket;
    this.retained = (socket as { sock?: unknown }).sock ?? socket;
    socket.callback = (message: number, value?: number): void => {
      if (this.socket !== socket) return; // a socket we already closed
      if (message === CONNECTED) {
        this.connected = true;
        sink.onTransportConnected();
      } else if (message === READABLE) {
        // Read while ending too: lwIP resets rather than closes a link with unread bytes.
        const bytes = new Uint8Array(socket.read(ArrayBuffer));
        sink.onTransportData(bytes, 0, bytes.length);
      } else if (message === WRITABLE) {
        this.flush();
        if (this.ending) {
          if (this.pendingBytes === 0 && this.controlBytes === 0) this.finishEnd(socket, sink);
        } else if (this.refused && this.socket === socket && this.pendingBytes <= this.pending.length >> 1) {
          // Room again after a refusal: wait until half the buffer is free, so the client writes in batches.
          this.refused = false;
          sink.onTransportWritable();
        }
      } else {
        const wasConnected = this.connected;
        // The desktop host's sockets say why they failed (Moddable's give only the callback).
        const failure = (socket as { failure?: unknown }).failure;
        const cause = typeof failure === "string" && failure !== "" ? ": " + failure : "";
        this.detach();
        try {
          socket.close();
        } catch {
          // Already closed by the socket itself.
        }
        sink.onTransportClosed(message === DISCONNECTED
          ? (wasConnected ? "closed by the broker" : "closed during connect or TLS handshake")
          : (wasConnected ? "socket error" + cause : "connection or TLS handshake failed" + (cause || " (check host, port, CA, certificate and key)")));
      }
    };
  }

  /** False only for lack of room (or before CONNECTED / after end()): closure goes to onTransportClosed. */
  write(bytes: Uint8Array, offset: number, length: number): boolean {
    const socket = this.socket;
    if (!socket || !this.connected || this.ending) return false;
    if (this.pendingBytes === 0 && this.controlBytes === 0 && length <= socket.write()) {
      socket.write(bytes.subarray(offset, offset + length));
      return true;
    }
    if (this.controlBytes > 0 || this.pendingBytes + length > this.pending.length) {
      if (length <= CONTROL_PACKET_BYTES && this.controlBytes + length <= this.control.length) {
        this.control.set(bytes.subarray(offset, offset + length), this.controlBytes);
        this.controlBytes += length;
        return true;
      }
      this.refused = true;
      return false;
    }
    this.pending.set(bytes.subarray(offset, offset + length), this.pendingBytes);
    this.pendingBytes += length;
    this.flush();
    return true;
  }

  private flush(): void {
    const socket = this.socket;
    if (!socket || this.pendingBytes === 0) return;
    let count = socket.write();
    if (count <= 0) return;
    if (count > this.pendingBytes) count = this.pendingBytes;
    socket.write(this.pending.subarray(0, count));
    this.pending.copyWithin(0, count, this.pendingBytes);
    this.pendingBytes -= count;
    // Waiting control packets join the transmit buffer as soon as it has room for them.
    if (this.controlBytes > 0 && this.pendingBytes + this.controlBytes <= this.pending.length) {
      this.pending.set(this.control.subarray(0, this.controlBytes), this.pendingBytes);
      this.pendingBytes += this.controlBytes;
      this.controlBytes = 0;
    }
  }

  /**
   * Ends the link once everything write() took is in the socket (see the header for why close()
   * keeps those bytes), and reports it on a later turn: from the "writable" callback that empties
   * the transmit buffer, or on the next microtask when nothing is waiting.
   */
  end(): void {
    const socket = this.socket;
    const sink = this.sink;
    // Nothing open: a closure is already reported or on its way. Already ending: once is enough.
    if (!socket || !sink || this.ending) return;
    this.ending = true;
    this.refused = false;
    this.flush();
    if (this.pendingBytes > 0 || this.controlBytes > 0) return; // the "writable" callbacks finish it
    const link = this.link;
    this.finishEnd(socket, undefined);
    Promise.resolve().then(() => {
      if (this.link === link) sink.onTransportClosed("ended");
    });
  }

  /** Closes an ending link whose bytes are all in the socket; reports to `sink` if given. */
  private finishEnd(socket: MinimalSocket, sink: TransportSink | undefined): void {
    this.detach();
    socket.close();
    if (sink) sink.onTransportClosed("ended");
  }

  /** Forgets the link's socket and state; the buffers are kept (fixed memory) and emptied. */
  private detach(): void {
    this.socket = undefined;
    this.connected = false;
    this.ending = false;
    this.pendingBytes = 0;
    this.controlBytes = 0;
    this.refused = false;
  }

  /** Closes now: bytes still in the transmit buffer or the reserve are dropped, and no sink call follows. */
  abort(): void {
    const socket = this.socket;
    this.detach();
    this.link++; // a report deferred to a later turn (end(), a failed open()) is dropped
    if (socket) socket.close();
  }
}
