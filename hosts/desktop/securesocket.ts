// Node implementation of Moddable's "securesocket" module (modules/crypt/securesocket over
// modules/network/socket and the ssl/* TLS stack), for running device code unchanged on the desktop.
//
// Calling conventions, as in the SDK source and as observed on Moddable's Linux simulator
// (/work/notes/moddable.md):
// - new SecureSocket({host | address, port, secure: {...}}); the owner sets `callback(message, value)`,
//   which is called with `this` = the socket.
// - Messages: 1 connected (TLS handshake done), 2 readable (value = plaintext bytes, at most 1024
//   per call), 3 writable (value = bytes that may be written; only after something was written),
//   -1 disconnected, -2 error (no reason is passed). Exactly one of -1/-2 ends a socket; during
//   that callback write() does nothing and close() is harmless, afterwards the socket is closed.
// - read() works only inside a readable callback, on that chunk: read() returns the bytes left,
//   read(ArrayBuffer | String | Number | null[, count | terminator]) takes them (a String ends at
//   the first NUL); bytes left unread when the callback returns are lost.
// - write(...values) takes strings, byte-valued numbers and buffers as one record; write() returns
//   the bytes that may be written; more than that throws "can't write all data" and sends nothing.
//   Writing before message 1 throws "write failed" and breaks the connection (-2). After close() or
//   after the -1/-2 callback, read and write throw TypeError. close() produces no callback.
// - close() keeps what write() already took: on the device write() has encrypted it and written the
//   record to the Socket (modsecuresocket.c, ssl/session_original.js), whose close() sends it, then
//   the FIN (lwip/modSocket.c: tcp_close()); securesocket.js's close() sends no close_notify alert.
//   Here the bytes may still wait in node:tls or Node's TCP buffer, so a closed socket lingers,
//   silent, until they are handed to the operating system, then is destroyed (no close_notify either).
// - `noDelay: true` in the options turns Nagle off: SecureSocket hands its options to new Socket(),
//   whose lwIP implementation calls tcp_nagle_disable() for it. Without it Nagle stays on, the TCP
//   default, and each small record waits for the peer's (delayed) ACK: ~50 ms handshakes on loopback.
// - Every callback runs on a later event-loop turn, never inside the constructor, write or close.
// - An exception thrown by the callback for messages 1-3 ends the socket with message -2.
//
// Moddable's TLS limits are enforced so a set-up that fails on the device fails here with the same
// kind of error (a throw from the constructor where the device throws there, else message -2),
// and the reason is traced, as the device's TLS stack traces some of its own:
// TLS 1.2 only; the device's cipher suites (DHE only when config tls.DHE_RSA is on, and then it
// fails when the server asks for a client certificate); P-256 for ECDHE; DER certificates; an
// unencrypted PKCS#8 RSA client key; the server must send its chain; the name check uses
// subjectAltName only; verification is on unless secure.verify is false.
import { isIP, Socket as TcpSocket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import type { X509Certificate } from "node:crypto";
import config from "./config.ts";
import { trace } from "./trace.ts";
import { InspectedStream } from "./inspected-stream.ts";
import { bytesOf, checkCertificateDer, checkClientCredentials, checkServerChain, isWithinValidity, type Checked, type ClientCredentials } from "./tls-inputs.ts";
import {
  ALERT_PROTOCOL_VERSION,
  alertName,
  HANDSHAKE_CERTIFICATE,
  HANDSHAKE_CERTIFICATE_REQUEST,
  HANDSHAKE_SERVER_HELLO,
  HANDSHAKE_SERVER_HELLO_DONE,
  parseCertificateList,
  parseServerHello,
  TlsHandshakeReader,
} from "./tls-observer.ts";

export const MESSAGE_CONNECTED = 1;
export const MESSAGE_READABLE = 2;
export const MESSAGE_WRITABLE = 3;
export const MESSAGE_DISCONNECTED = -1;
export const MESSAGE_ERROR = -2;

export type SecureSocketCallback = (message: number, value?: number) => void;
type WriteValue = string | number | ArrayBuffer | ArrayBufferView;
type ReadType = typeof ArrayBuffer | typeof String | typeof Number | null;

/**
 * The ESP32 build's lwIP TCP send buffer (CONFIG_LWIP_TCP_SND_BUF_DEFAULT in Moddable's sdkconfig),
 * from which write() reports what is free. (Moddable's Linux simulator always reports 896.)
 */
export const SEND_BUFFER_BYTES = 8192;
/**
 * How long a closed socket may take to hand over its last bytes before it is destroyed: a device's
 * TCP stack, too, gives a peer that acknowledges nothing up after its retransmissions.
 */
export const CLOSE_LINGER_MS = 30_000;
/** securesocket.js and modsecuresocket.c reserve this much of the send buffer for TLS framing. */
const TLS_OVERHEAD_ESTIMATE = 128;
/** securesocket.js hands decrypted data to its owner in pieces of at most this size. */
const MAX_READABLE_CHUNK = 1024;

const TLS_1_2 = 0x0303;
const MIN_PROTOCOL_VERSION = 0x0301;

// The cipher suites of ssl/ssl_ciphersuites.js, in the order the device offers them.
const RSA_SUITES = ["AES128-SHA", "AES256-SHA", "AES128-SHA256", "AES256-SHA256"];
const DHE_RSA_SUITES = ["DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA256", "DHE-RSA-AES128-GCM-SHA256"];
const ECDHE_SUITES = ["ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"];
const DHE_RSA_SUITE_IDS = new Set([0x0067, 0x006b, 0x009e]);

interface SecureOptions {
  protocolVersion?: number;
  certificate?: unknown;
  clientCertificates?: unknown;
  clientKey?: unknown;
  serverName?: string;
  applicationLayerProtocolNegotiation?: unknown;
  verify?: boolean;
}

export interface SecureSocketOptions {
  host?: string;
  address?: string;
  port: number;
  /** Nagle off (TCP_NODELAY), as Moddable's Socket takes it. */
  noDelay?: boolean;
  secure?: SecureOptions;
  [other: string]: unknown;
}

interface ReadableChunk {
  readonly bytes: Buffer;
  position: number;
}

class TlsLimitError extends Error {}

/** What XS says when a method of a closed SecureSocket reaches for its deleted socket. */
const NO_SOCKET = "cannot coerce undefined to object";

function traceReason(reason: string): void {
  trace(`securesocket: ${reason}\n`);
}

function offeredCipherSuites(): string {
  const tls = (config as { tls?: { DHE_RSA?: unknown; ECDHE_RSA?: unknown } }).tls ?? {};
  return [...RSA_SUITES, ...(tls.DHE_RSA ? DHE_RSA_SUITES : []), ...(tls.ECDHE_RSA ? ECDHE_SUITES : [])].join(":");
}

/** The ALPN list (a string, buffer or array of them) in the wire form node:tls also accepts. */
function alpnWireFormat(value: unknown): Checked<Buffer> {
  const items = Array.isArray(value) ? value : [value];
  const parts: Buffer[] = [];
  for (const item of items) {
    const bytes = typeof item === "string" ? Buffer.from(item) : bytesOf(item);
    // ssl_handshake.js throws "invalid protocol" while building the ClientHello.
    if (!bytes || bytes.length < 1 || bytes.length > 255) return { ok: false, problem: "invalid protocol in applicationLayerProtocolNegotiation" };
    parts.push(Buffer.of(bytes.length), bytes);
  }
  return { ok: true, value: Buffer.concat(parts) };
}

export default class SecureSocket {
  callback: SecureSocketCallback | undefined;

  private tcp: TcpSocket | undefined;
  private tls: TLSSocket | undefined;
  private transport: InspectedStream | undefined;
  /**
   * connecting -> connected -> ending (the -1/-2 callback is due or running) -> closed. While ending,
   * the socket still exists as on the device: write() does nothing and close() is harmless.
   */
  private phase: "connecting" | "connected" | "ending" | "closed" = "connecting";
  /** Why it failed: the desktop's addition, read by the Moddable transport when present (Moddable's sockets give only the callback). */
  failure: string | undefined;
  private readable: ReadableChunk | undefined;
  private awaitingWritable = false;
  /** Closed by its owner while written bytes were still on their way: released once they are. */
  private lingering: ReturnType<typeof setTimeout> | undefined;

  private readonly serverName: string;
  private readonly verify: boolean;
  private readonly ca: X509Certificate | undefined;
  private readonly alpn: Buffer | undefined;
  private readonly clientCredentials: Checked<ClientCredentials> | undefined;
  private readonly startupProblem: string | undefined;
  private cipherSuite = 0;
  private certificateRequested = false;

  constructor(options: SecureSocketOptions) {
    if (options === null || typeof options !== "object") throw new TypeError("securesocket: options object required");
    if (options.sock !== undefined) throw new Error("securesocket: wrapping an existing socket (sock) is not supported on the desktop");
    const secure: SecureOptions = options.secure ?? {};
    const destination = options.address ?? options.host;
    if (typeof destination !== "string" || destination === "") throw new Error("securesocket: host or address required");
    const port = Number(options.port);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new RangeError("securesocket: invalid port");

    // Checks the device makes while constructing its TLS session: these throw from the constructor.
    if (secure.protocolVersion !== undefined) {
      if (secure.protocolVersion < MIN_PROTOCOL_VERSION || secure.protocolVersion > TLS_1_2) throw new Error("protocolVersion: not supported");
      if (secure.protocolVersion !== TLS_1_2) throw new Error("protocolVersion: the desktop simulation offers TLS 1.2 (0x303) only");
    }
    this.verify = secure.verify ?? true;
    if (secure.certificate !== undefined && this.verify) {
      const checked = checkCertificateDer(secure.certificate, "secure.certificate");
      if (!checked.ok) throw new Error(`x509: malformed input (${checked.problem})`);
      if (!isWithinValidity(checked.value)) throw new Error("date validation failed (secure.certificate is expired or not yet valid)");
      this.ca = checked.value;
    }
    this.serverName = String(secure.serverName ?? options.host ?? destination);

    // Checks the device makes later, during the handshake: these end in message -2.
    let startupProblem: string | undefined;
    if (secure.applicationLayerProtocolNegotiation !== undefined) {
      const checked = alpnWireFormat(secure.applicationLayerProtocolNegotiation);
      if (checked.ok) this.alpn = checked.value;
      else startupProblem = checked.problem;
    }
    this.clientCredentials = checkClientCredentials(secure.clientCertificates, secure.clientKey);
    this.startupProblem = startupProblem;

    const tcp = new TcpSocket();
    this.tcp = tcp;
    if (options.noDelay) tcp.setNoDelay(true);
    tcp.once("connect", () => this.startTls(tcp));
    tcp.on("error", (error) => this.fail(error.message));
    // The peer closing (FIN) before the handshake is done is a disconnect on the device, not an error.
    tcp.once("end", () => {
      if (this.phase !== "connecting") return;
      traceReason("connection closed by the server during the TLS handshake");
      this.terminate(MESSAGE_DISCONNECTED);
    });
    tcp.connect({ host: destination, port });
  }

  read(type?: ReadType, limit?: number | string): ArrayBuffer | string | number | undefined {
    const chunk = this.readable;
    // On the device the chunk exists only during the readable callback; elsewhere read throws.
    if (!chunk) throw new TypeError(`${NO_SOCKET} (read outside a readable callback)`);
    let count = chunk.bytes.length - chunk.position;
    if (arguments.length === 0) return count;
    if (count === 0) return undefined;
    if (typeof limit === "number") count = Math.min(count, Math.max(0, Math.trunc(limit)));
    else if (typeof limit === "string" && limit.length > 0) {
      const at = chunk.bytes.indexOf(limit.charCodeAt(0) & 0xff, chunk.position);
      if (at >= 0) count = Math.min(count, at - chunk.position + 1); // terminator included
    }
    const start = chunk.position;
    let result: ArrayBuffer | string | number;
    if (type === null) result = count;
    else if (type === String) {
      // XS builds the string from the bytes as a C string: it ends at the first NUL.
      const nul = chunk.bytes.indexOf(0, start);
      result = chunk.bytes.toString("utf8", start, nul >= 0 && nul < start + count ? nul : start + count);
    }
    else if (type === Number) {
      count = 1;
      result = chunk.bytes[start]!;
    } else if (type === ArrayBuffer) {
      result = new Uint8Array(chunk.bytes.subarray(start, start + count)).buffer;
    } else throw new Error("unsupported output type");
    chunk.position += count;
    return result;
  }

  write(...values: WriteValue[]): number | undefined {
    if (this.phase === "closed") throw new TypeError(`${NO_SOCKET} (write on a closed socket)`);
    // Inside the -1/-2 callback the device's socket still exists and drops what is written.
    if (this.phase === "ending") return values.length === 0 ? 0 : undefined;
    if (this.phase === "connecting" || !this.tls) {
      // The device sends the record into the middle of its handshake, which then fails.
      setImmediate(() => this.fail("write before the TLS handshake completed (wait for callback 1)"));
      throw new Error("write failed");
    }
    const available = this.availableToWrite();
    if (values.length === 0) return available;
    const parts: Buffer[] = [];
    for (const value of values) {
      if (typeof value === "string") parts.push(Buffer.from(value, "utf8"));
      else if (typeof value === "number") parts.push(Buffer.of(value & 0xff));
      else if (typeof value === "object" && value !== null) {
        const bytes = bytesOf(value);
        if (!bytes) throw new TypeError("invalid buffer");
        parts.push(bytes);
      } else throw new Error("unsupported type for write");
    }
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (data.length > available) throw new Error("can't write all data");
    this.awaitingWritable = true;
    this.tls.write(data, () => this.maybeWritable());
    return undefined;
  }

  close(): void {
    if (this.phase === "closed") return;
    const connected = this.phase === "connected";
    this.phase = "closed";
    this.readable = undefined;
    if (!connected || this.allHandedOver()) {
      this.tearDown();
      return;
    }
    // Written bytes still wait in node:tls or Node's buffers: they go out before the socket does.
    this.tcp?.unref();
    this.lingering = setTimeout(() => this.tearDown(), CLOSE_LINGER_MS);
    this.lingering.unref();
  }

  /** Every byte written is encrypted and accepted by the operating system. */
  private allHandedOver(): boolean {
    return (this.tls?.writableLength ?? 0) === 0 && (this.transport?.writableLength ?? 0) === 0 && (this.transport?.pendingBytes ?? 0) === 0;
  }

  private tearDown(): void {
    if (this.lingering !== undefined) clearTimeout(this.lingering);
    this.lingering = undefined;
    this.readable = undefined;
    this.tls?.destroy();
    this.tcp?.destroy();
    this.tls = undefined;
    this.tcp = undefined;
    this.transport = undefined;
  }

  /** Bytes written but not yet handed to the operating system: the device's unacknowledged bytes. */
  private outstandingBytes(): number {
    return (this.tls?.writableLength ?? 0) + (this.transport?.pendingBytes ?? 0);
  }

  private availableToWrite(): number {
    return Math.max(0, SEND_BUFFER_BYTES - this.outstandingBytes() - TLS_OVERHEAD_ESTIMATE);
  }

  private maybeWritable(): void {
    if (this.lingering !== undefined) {
      if (this.allHandedOver()) this.tearDown();
      return;
    }
    if (!this.awaitingWritable || this.phase !== "connected" || !this.tls) return;
    if (this.outstandingBytes() !== 0) return;
    this.awaitingWritable = false;
    // The device reports writable when the peer has acknowledged everything sent.
    setImmediate(() => {
      if (this.phase === "connected" && !this.awaitingWritable) this.deliver(MESSAGE_WRITABLE, SEND_BUFFER_BYTES - TLS_OVERHEAD_ESTIMATE);
    });
  }

  private startTls(tcp: TcpSocket): void {
    if (this.phase !== "connecting") return;
    if (this.startupProblem) {
      this.fail(this.startupProblem);
      return;
    }
    const observer = new TlsHandshakeReader({
      message: (type, body) => this.onServerHandshakeMessage(type, body),
      alert: (_level, description) => {
        const hint = description === ALERT_PROTOCOL_VERSION ? " (Moddable's TLS supports TLS 1.2 only)" : "";
        throw new TlsLimitError(`server sent alert ${alertName(description)} during the handshake${hint}`);
      },
    });
    const inspect = (chunk: Buffer): boolean => {
      try {
        observer.observe(chunk);
        return true;
      } catch (error) {
        if (!(error instanceof TlsLimitError)) throw error;
        this.fail(error.message);
        return false;
      }
    };
    const transport = new InspectedStream(tcp, inspect, () => this.maybeWritable());
    // node:tls forwards the transport's errors; this listener only keeps them from being "unhandled".
    transport.on("error", () => undefined);
    this.transport = transport;

    const credentials = this.clientCredentials?.ok ? this.clientCredentials.value : undefined;
    const tlsOptions: ConnectionOptions = {
      socket: transport,
      minVersion: "TLSv1.2",
      maxVersion: "TLSv1.2",
      ciphers: offeredCipherSuites(),
      ecdhCurve: "P-256",
      sigalgs: "ECDSA+SHA256:RSA+SHA256",
      rejectUnauthorized: this.verify,
      // The name is checked with the device's rules when the certificates arrive.
      checkServerIdentity: () => undefined,
      ...(isIP(this.serverName) ? {} : { servername: this.serverName }),
      ...(this.ca ? { ca: [this.ca.toString()] } : {}),
      ...(this.alpn ? { ALPNProtocols: this.alpn } : {}),
      ...(credentials ? { cert: credentials.certificateChainPem, key: credentials.keyPem } : {}),
    };
    const tls = tlsConnect(tlsOptions);
    this.tls = tls;
    tls.once("secureConnect", () => {
      if (this.phase !== "connecting") return;
      if (this.verify && !tls.authorized) {
        this.fail(`server certificate rejected: ${String(tls.authorizationError)}`);
        return;
      }
      this.phase = "connected";
      this.deliver(MESSAGE_CONNECTED);
    });
    tls.on("data", (data: Buffer) => this.onPlaintext(data));
    tls.on("error", (error: Error) => this.fail(error.message));
    tls.on("close", () => this.terminate(MESSAGE_DISCONNECTED));
    tls.on("end", () => this.terminate(MESSAGE_DISCONNECTED));
  }

  /** The device's checks at the points its own handshake code makes them (ssl/ssl_handshake.js). */
  private onServerHandshakeMessage(type: number, body: Buffer): void {
    switch (type) {
      case HANDSHAKE_SERVER_HELLO:
        this.cipherSuite = parseServerHello(body)?.cipherSuite ?? 0;
        break;
      case HANDSHAKE_CERTIFICATE: {
        if (!this.verify) break;
        const problem = checkServerChain(parseCertificateList(body), this.serverName, this.ca);
        if (problem) throw new TlsLimitError(problem);
        break;
      }
      case HANDSHAKE_CERTIFICATE_REQUEST:
        this.certificateRequested = true;
        break;
      case HANDSHAKE_SERVER_HELLO_DONE:
        // Here the device answers a certificate request: it signs with the client key only now.
        if (!this.certificateRequested) break;
        if (DHE_RSA_SUITE_IDS.has(this.cipherSuite)) {
          throw new TlsLimitError("certificateVerify: unimplemented (the server chose a DHE cipher suite and asked for a client certificate; set config tls.DHE_RSA to false)");
        }
        if (this.clientCredentials && !this.clientCredentials.ok) throw new TlsLimitError(this.clientCredentials.problem);
        break;
    }
  }

  private onPlaintext(data: Buffer): void {
    for (let offset = 0; offset < data.length && this.phase === "connected"; offset += MAX_READABLE_CHUNK) {
      const piece = data.subarray(offset, offset + MAX_READABLE_CHUNK);
      this.readable = { bytes: piece, position: 0 };
      try {
        this.deliver(MESSAGE_READABLE, piece.length);
      } finally {
        this.readable = undefined;
      }
    }
  }

  private fail(reason: string): void {
    if (this.lingering !== undefined) this.tearDown(); // the last bytes cannot go out now
    if (this.phase === "ending" || this.phase === "closed") return;
    traceReason(reason);
    this.failure = reason;
    this.terminate(MESSAGE_ERROR);
  }

  private terminate(message: number): void {
    if (this.lingering !== undefined) this.tearDown();
    if (this.phase === "ending" || this.phase === "closed") return;
    this.phase = "ending";
    this.tearDown();
    // Always on a later turn, also for failures found while handling another event.
    setImmediate(() => {
      if (this.phase !== "ending") return; // closed by its owner in the meantime
      try {
        this.deliver(message);
      } finally {
        this.phase = "closed";
      }
    });
  }

  private deliver(message: number, value?: number): void {
    const callback = this.callback;
    if (typeof callback !== "function") return;
    if (message === MESSAGE_ERROR || message === MESSAGE_DISCONNECTED) {
      callback.call(this, message);
      return;
    }
    if (this.phase !== "connected") return;
    try {
      callback.call(this, message, value);
    } catch (error) {
      // securesocket.js runs the owner's callback inside its own try: an exception there becomes
      // message -2 and closes the socket. The trace keeps the cause visible.
      this.fail(`exception in callback(${message}): ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
