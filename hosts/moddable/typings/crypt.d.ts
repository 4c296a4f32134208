// Types for the Moddable SDK's "crypt" module (the "hmac" module is typed in hmac.d.ts beside this file),
// which @moddable/typings does not declare; the SDK's own build types it from its typings/crypt.d.ts.
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
