// Node stand-in for Moddable's "socket" module, TCP client only: used when the user explicitly
// asked for plain TCP (a local test broker). Same callback protocol as the desktop SecureSocket.
import { connect, type Socket as NodeSocket } from "node:net";

const CONNECTED = 1;
const READABLE = 2;
const WRITABLE = 3;
const DISCONNECTED = -1;
const ERROR = -2;
/** Bytes write() reports as available, like the device's socket send buffer. */
const SEND_BUFFER_BYTES = 8192;

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
  private queued = 0;

  constructor(dictionary: { host?: string; address?: string; port?: number }) {
    if (!dictionary || typeof dictionary.port !== "number") throw new Error("socket: port required");
    this.socket = connect({ host: dictionary.host ?? dictionary.address, port: dictionary.port });
    this.socket.setNoDelay(true);
    this.socket.on("connect", () => this.notify(CONNECTED));
    this.socket.on("data", (data: Buffer) => {
      this.chunks.push(data);
      this.notify(READABLE, data.length);
      this.chunks = []; // unread bytes are lost when the callback returns, as on the device
    });
    this.socket.on("drain", () => {
      this.queued = 0;
      this.notify(WRITABLE, SEND_BUFFER_BYTES);
    });
    this.socket.on("error", () => this.finish(ERROR));
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
    this.queued += bytes.length;
    if (this.socket.write(bytes)) this.queued = 0;
    return 0;
  }

  close(): void {
    this.closed = true;
    this.socket.destroy();
  }
}
