// Types for the Moddable SDK's "crypt" and "hmac" modules, which @moddable/typings does not declare.
// Written from the SDK's sources: modules/crypt/digest/crypt.js (Digest, native in modCrypt.c) and
// modules/crypt/etc/hmac.js (HMAC in JavaScript over a Digest). tsconfig.json picks this file up
// through its `hosts/moddable/**/*.ts` include; the Node side (tsconfig.node.json) maps the two names
// to hosts/desktop/crypt.ts and hosts/desktop/hmac.ts instead, which implement the part IoTLink uses.
// Device manifest: "$(MODULES)/crypt/digest/manifest.json" gives "crypt"; "hmac" is
// "$(MODULES)/crypt/etc/hmac" and imports "bin" ("$(MODULES)/crypt/bin/manifest.json"); all three
// come with "$(MODDABLE)/modules/crypt/tls.json" (through tls_common.json).

declare module "crypt" {
  /** What the native write() reads: a string (its UTF-8 bytes, up to a NUL), an ArrayBuffer, a byte-sized typed array or a DataView. */
  type DigestData = string | ArrayBuffer | Uint8Array | Int8Array | Uint8ClampedArray | DataView;

  export class Digest {
    /** "MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512" or "GHASH"; another name throws "crypt: unsupported digest". */
    constructor(type: "MD5" | "SHA1" | "SHA224" | "SHA256" | "SHA384" | "SHA512" | "GHASH");
    write(data: DigestData): void;
    /** The digest, outputSize bytes. With `more` true the state is kept, so writing may go on. */
    close(more?: boolean): ArrayBuffer;
    reset(): void;
    /** reset(), write() each argument, close(). */
    process(...data: DigestData[]): ArrayBuffer;
    update(data: DigestData): void;
    readonly blockSize: number;
    readonly outputSize: number;
  }

  const crypt: { readonly Digest: typeof Digest };
  export default crypt;
}

declare module "hmac" {
  import type { Digest } from "crypt";

  /** HMAC (FIPS 198) over the Digest `h`, which it drives: h's state is the HMAC's afterwards. */
  export default class HMAC {
    /** `bitlen`, when not 0, is the length of sign()'s truncated tag. */
    constructor(h: Digest, key: ArrayBuffer | Uint8Array, bitlen?: number);
    update(...data: (ArrayBuffer | Uint8Array | DataView)[]): void;
    /** The tag (h.outputSize bytes). */
    close(): ArrayBuffer;
    /** Ready for a new message under the same key. */
    reset(): void;
    /** reset(), update() with each argument, close(). */
    process(...data: (ArrayBuffer | Uint8Array | DataView)[]): ArrayBuffer;
  }
}
