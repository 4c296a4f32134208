// Node stand-in for Moddable's "hmac" module (Moddable SDK modules/crypt/etc/hmac.js, in JavaScript
// over a crypt Digest), the part IoTLink uses, over node:crypto's HMAC:
//
//   const mac = new HMAC(new Digest("SHA256"), key);   // key: an ArrayBuffer or a Uint8Array
//   const tag = new Uint8Array(mac.process(data));     // reset, write each argument, close: an ArrayBuffer
//
// and update(...data) then close(), and reset(), as on the device. The device's HMAC drives the
// Digest it is given (reset, ipad, data, opad), so that Digest's state is the HMAC's afterwards;
// here the Digest only names the algorithm and is left alone, so code must reset() a Digest it
// shares with an HMAC before using it again, as it must on the device. A key longer than the
// block size is hashed first on both. The device's `bitlen` (a truncated tag for sign()) and
// sign()/verify() are not used by IoTLink and not implemented; update() or close() after close()
// throws here, where the device would hash on from a finished state.
import { createHmac, type Hmac } from "node:crypto";
import { bytesOf, Digest, nodeAlgorithmOf, type BufferSource } from "./crypt.ts";

export default class HMAC {
  private readonly algorithm: string;
  private readonly key: Uint8Array;
  private mac: Hmac | undefined;

  constructor(h: Digest, key: ArrayBuffer | Uint8Array, bitlen = 0) {
    if (!(h instanceof Digest)) throw new TypeError("hmac: the first argument must be a crypt Digest");
    if (!(key instanceof ArrayBuffer) && !(key instanceof Uint8Array)) throw new TypeError("hmac: the key must be an ArrayBuffer or a Uint8Array");
    if (bitlen !== 0) throw new Error("hmac: a truncated tag (bitlen) is not implemented on the desktop");
    this.algorithm = nodeAlgorithmOf(h);
    this.key = bytesOf(key, "hmac: key").slice();
    this.mac = createHmac(this.algorithm, this.key);
  }

  update(...data: BufferSource[]): void {
    if (this.mac === undefined) throw new Error("hmac: update after close(): call reset() first");
    for (const item of data) this.mac.update(bytesOf(item, "hmac: update"));
  }

  close(): ArrayBuffer {
    if (this.mac === undefined) throw new Error("hmac: close after close(): call reset() first");
    const tag = this.mac.digest();
    this.mac = undefined;
    const out = new ArrayBuffer(tag.byteLength);
    new Uint8Array(out).set(tag);
    return out;
  }

  reset(): void {
    this.mac = createHmac(this.algorithm, this.key);
  }

  process(...data: BufferSource[]): ArrayBuffer {
    this.reset();
    this.update(...data);
    return this.close();
  }
}
