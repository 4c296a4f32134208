// Node stand-in for Moddable's "socket" module, TCP client only: used when the user explicitly
// asked for plain TCP (a local test broker). Same callback protocol as the desktop SecureSocket.
//
// As on the device (Moddable SDK modules/network/socket/lwip/modSocket.c):
// - `noDelay: true` in the dictionary turns Nagle off (configureSocketTCP: tcp_nagle_disable());
//   without it Nagle stays on, the TCP default.
// - close() keeps the bytes write() already took: lwIP has copied them into its send queue, and its
//   tcp_close() sends them, then the FIN. Here they may still wait in Node's buffer, so close() ends
//   the stream (Node sends them, then the FIN) and releases the socket once that is done. No
//   callback follows close(), and the closing socket keeps no process alive.
// - "writable" (3) follows written bytes once the stack has sent them (lwIP's sent callback), not
//   only after Node's buffer filled up: an owner that still holds bytes (a transmit buffer) is
//   told to write more even when every write so far fitted.
import { connect, type Socket as NodeSocket } from "node:net";

const CONNECTED = 1;
const READABLE = 2;
const WRITABLE = 3;
const DISCONNECTED = -1;
const ERROR = -2;
/** Bytes write() reports as available, like the device's socket send buffer. */
const SEND_BUFFER_BYTES = 8192;
/**
 * How long a closed socket may take to hand over its last bytes before it is destroyed: a device's
 * TCP stack, too, gives a peer that acknowledges nothing up after its retransmissions.
 */
export const CLOSE_LINGER_MS = 30_000;

export class Socket {
  static readonly connected = CONNECTED;
  static readonly readable = READABLE;
  static readonly writable = WRITABLE;
  static readonly disconnected = DISCONNECTED;
  static readonly error = ERROR;

  callback: ((message: number, value?: number) => void) | undefined;
  private readonly socket: NodeSocket;
  private chunks: Buffer[] = [];
  private closed = false;
  /**
   * Why the socket failed (the desktop's addition: Moddable's sockets give only the error callback),
   * read by the Moddable transport when present so the error line names the cause.
   */
  failure: string | undefined;
  /** Bytes written and not yet handed to the operating system. */
  private queued = 0;
  private awaitingWritable = false;

  constructor(dictionary: { host?: string; address?: string; port?: number; noDelay?: boolean }) {
    if (!dictionary || typeof dictionary.port !== "number") throw new Error("socket: port required");
    this.socket = connect({ host: dictionary.host ?? dictionary.address, port: dictionary.port });
    if (dictionary.noDelay) this.socket.setNoDelay(true);
    this.socket.on("connect", () => this.notify(CONNECTED));
    this.socket.on("data", (data: Buffer) => {
      this.chunks.push(data);
      this.notify(READABLE, data.length);
      this.chunks = []; // unread bytes are lost when the callback returns, as on the device
    });
    this.socket.on("error", (error: Error) => {
      this.failure = error.message;
      this.finish(ERROR);
    });
    this.socket.on("close", () => this.finish(DISCONNECTED));
  }

  private notify(message: number, value?: number): void {
    if (!this.closed && this.callback) this.callback.call(this, message, value);
  }

  private finish(message: number): void {
    if (this.closed) return;
    this.notify(message);
    this.closed = true;
  }

  read(type?: unknown): ArrayBuffer | number | undefined {
    const available = this.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    if (type === undefined) return available;
    if (available === 0) return undefined;
    const joined = Buffer.concat(this.chunks);
    this.chunks = [];
    return joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.length) as ArrayBuffer;
  }

  write(...data: (ArrayBuffer | ArrayBufferView | string | number)[]): number {
    if (this.closed) throw new TypeError("cannot coerce undefined to object");
    if (data.length === 0) return Math.max(0, SEND_BUFFER_BYTES - this.queued);
    const parts = data.map((item) =>
      typeof item === "string" ? Buffer.from(item) : typeof item === "number" ? Buffer.from([item & 255]) : ArrayBuffer.isView(item) ? Buffer.from(item.buffer, item.byteOffset, item.byteLength) : Buffer.from(item),
    );
    const bytes = Buffer.concat(parts);
    if (bytes.length > SEND_BUFFER_BYTES - this.queued) throw new Error("can't write all data");
    // Like the device's send buffer, the room written bytes take comes back once they are sent.
    this.queued += bytes.length;
    this.awaitingWritable = true;
    this.socket.write(bytes, () => {
      this.queued -= bytes.length;
      this.maybeWritable();
    });
    return 0;
  }

  /** Once everything written is with the operating system, "writable" on a later turn. */
  private maybeWritable(): void {
    if (!this.awaitingWritable || this.closed || this.queued !== 0) return;
    this.awaitingWritable = false;
    setImmediate(() => {
      if (!this.awaitingWritable) this.notify(WRITABLE, SEND_BUFFER_BYTES);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.chunks = [];
    const socket = this.socket;
    if (socket.connecting || socket.destroyed) {
      socket.destroy();
      return;
    }
    // What write() took goes out, then the FIN; the descriptor is released once Node has sent it.
    socket.unref();
    const limit = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
    limit.unref();
    socket.end(() => {
      clearTimeout(limit);
      socket.destroy();
    });
  }
}
