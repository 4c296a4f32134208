// Node stand-in for Moddable's "crypt" module (Moddable SDK modules/crypt/digest/crypt.js, whose
// Digest is native, modCrypt.c), the part IoTLink uses: `Digest` for "SHA1" and "SHA256", over
// node:crypto.
//
//   const digest = new Digest("SHA256");
//   digest.write(bytes);                      // an ArrayBuffer, a Uint8Array (any offset) or a DataView
//   const hash = new Uint8Array(digest.close()); // an ArrayBuffer of outputSize bytes
//   digest.reset();                           // before the next write
//
// As on the device: an unknown algorithm throws "crypt: unsupported digest"; `blockSize` and
// `outputSize` are the algorithm's (64 and 20 or 32 bytes); `process(...data)` resets, writes each
// and closes; close() returns an ArrayBuffer. The device takes a string too (its UTF-8 bytes up to
// the first NUL) and other algorithms (MD5, SHA224, SHA384, SHA512, GHASH): IoTLink passes bytes
// and uses these two only, so they are refused here. Where the device would silently hash on from a
// finished state (write or close after close, without reset) this throws, and so does close(true)
// (the device's "keep going" snapshot), which IoTLink does not use.
import { createHash, type Hash } from "node:crypto";

interface Algorithm {
  readonly node: string;
  readonly blockSize: number;
  readonly outputSize: number;
}

const ALGORITHMS: Readonly<Record<string, Algorithm>> = Object.freeze({
  SHA1: Object.freeze({ node: "sha1", blockSize: 64, outputSize: 20 }),
  SHA256: Object.freeze({ node: "sha256", blockSize: 64, outputSize: 32 }),
});

export type BufferSource = ArrayBuffer | Uint8Array | DataView;

/** The bytes of what the device's xsmcGetBufferReadable accepts (an ArrayBuffer, a byte-sized typed array, a DataView). */
export function bytesOf(data: unknown, what: string): Uint8Array {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (data instanceof Uint8Array || data instanceof Int8Array || data instanceof Uint8ClampedArray || data instanceof DataView) {
    return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  }
  throw new TypeError(`${what}: expected an ArrayBuffer, a Uint8Array or a DataView, got ${data === null ? "null" : typeof data === "object" ? (data.constructor?.name ?? "object") : typeof data}`);
}

/** node:crypto's name for a desktop Digest's algorithm (for hosts/desktop/hmac.ts). */
export function nodeAlgorithmOf(digest: Digest): string {
  return digest.algorithm.node;
}

export class Digest {
  /** @internal */
  readonly algorithm: Algorithm;
  private hash: Hash | undefined;

  constructor(type: string) {
    const algorithm = typeof type === "string" && Object.hasOwn(ALGORITHMS, type) ? ALGORITHMS[type] : undefined;
    if (algorithm === undefined) throw new Error("crypt: unsupported digest");
    this.algorithm = algorithm;
    this.hash = createHash(algorithm.node);
  }

  get blockSize(): number {
    return this.algorithm.blockSize;
  }

  get outputSize(): number {
    return this.algorithm.outputSize;
  }

  write(data: BufferSource): void {
    const bytes = bytesOf(data, "crypt: Digest.write");
    if (this.hash === undefined) throw new Error("crypt: Digest.write after close(): call reset() first");
    this.hash.update(bytes);
  }

  close(more?: boolean): ArrayBuffer {
    if (more) throw new Error("crypt: Digest.close(true) is not implemented on the desktop");
    if (this.hash === undefined) throw new Error("crypt: Digest.close after close(): call reset() first");
    const digest = this.hash.digest();
    this.hash = undefined;
    const out = new ArrayBuffer(digest.byteLength);
    new Uint8Array(out).set(digest);
    return out;
  }

  reset(): void {
    this.hash = createHash(this.algorithm.node);
  }

  process(...data: BufferSource[]): ArrayBuffer {
    this.reset();
    for (const item of data) this.write(item);
    return this.close();
  }

  update(data: BufferSource): void {
    this.write(data);
  }
}

export default Object.freeze({ Digest });
