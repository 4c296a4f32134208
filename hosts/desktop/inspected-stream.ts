// A Duplex between node:tls and a TCP socket that lets the owner look at received bytes before TLS
// does (and withhold them), and counts bytes written but not yet accepted by the operating system.
import type { Socket } from "node:net";
import { Duplex } from "node:stream";

/** Passes bytes between node:tls and a TCP socket, showing each received chunk to `inspect` first. */
export class InspectedStream extends Duplex {
  pendingBytes = 0;

  constructor(
    private readonly tcp: Socket,
    /** Returns false to withhold the chunk (the owner then ends the connection). */
    private readonly inspect: (chunk: Buffer) => boolean,
    private readonly onFlushed: () => void = () => undefined,
  ) {
    super();
    tcp.on("data", (chunk: Buffer) => {
      if (this.inspect(chunk) && !this.push(chunk)) tcp.pause();
    });
    tcp.on("end", () => this.push(null));
    tcp.on("error", (error) => this.destroy(error));
    tcp.on("close", () => this.destroy());
  }

  override _read(): void {
    this.tcp.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.pendingBytes += chunk.length;
    this.tcp.write(chunk, (error) => {
      this.pendingBytes -= chunk.length;
      done(error);
      this.onFlushed();
    });
  }

  override _final(done: (error?: Error | null) => void): void {
    this.tcp.end(done);
  }

  override _destroy(error: Error | null, done: (error?: Error | null) => void): void {
    // A connection being ended with last words (a TLS alert) closes once they are sent.
    if (this.tcp.writableEnded && !this.tcp.writableFinished) this.tcp.once("finish", () => this.tcp.destroy());
    else this.tcp.destroy();
    done(error);
  }
}
