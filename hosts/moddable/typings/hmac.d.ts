// Types for the Moddable SDK's "hmac" module (modules/crypt/etc/hmac.js: HMAC in JavaScript over a
// Digest), which neither @moddable/typings nor the SDK's own typings declare. A file of its own so
// that hosts/moddable/websocket-crypto.ts can reference it in the SDK's build, where "crypt" is typed
// by the SDK's typings/crypt.d.ts (crypt.d.ts beside this file types it for this repository's tsconfig).

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
