// The cryptography MQTT over WebSocket needs on the device, from the Moddable SDK's own modules:
// SHA-256 and HMAC-SHA256 for the SigV4 presigned URL (modules/sigv4.ts), SHA-1 for checking the
// server's Sec-WebSocket-Accept, and random bytes for the Sec-WebSocket-Key and the frame masks.
// Written against the module names "crypt" (Digest) and "hmac" (HMAC) only: on the desktop,
// tools/desktop-aliases.ts maps them to hosts/desktop/crypt.ts and hmac.ts (node:crypto).
//
// A Digest per call, no module state: a preloaded module's variables cannot be changed later, and a
// presign makes six calls per connect. Random bytes come from Math.random, as the SDK's own
// WebSocket client does: on the ESP32 XS's Math.random reads esp_random(), the hardware RNG (true
// random while Wi-Fi or Bluetooth runs), 31 bits a call, one byte used. The SDK's "rng" module is an
// RC4 stream seeded once from the same source: no better, and one module more.
/// <reference path="./typings/hmac.d.ts" />
import { Digest } from "crypt";
import HMAC from "hmac";
import type { SigV4Crypto } from "../../modules/sigv4";

const HEX = "0123456789abcdef";

function hexOf(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i] >> 4] + HEX[bytes[i] & 15];
  return out;
}

function digestOf(algorithm: "SHA1" | "SHA256", bytes: Uint8Array): Uint8Array {
  const digest = new Digest(algorithm);
  // An ArrayBuffer of exactly these bytes: the SDK's typings take no view (a presign makes six calls per connect).
  digest.write(bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : (bytes.slice().buffer as ArrayBuffer));
  return new Uint8Array(digest.close());
}

/** SHA-256 and HMAC-SHA256 for presignMqttUrl(), from the SDK's "crypt" and "hmac". */
export const moddableSigV4Crypto: SigV4Crypto = Object.freeze({
  sha256Hex(bytes: Uint8Array): string {
    return hexOf(digestOf("SHA256", bytes));
  },
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
    return new Uint8Array(new HMAC(new Digest("SHA256"), key).process(data));
  },
});

/** The SHA-1 of `bytes` (20 bytes): for Sec-WebSocket-Accept. */
export function moddableSha1(bytes: Uint8Array): Uint8Array {
  return digestOf("SHA1", bytes);
}

/** Fills `bytes` with random bytes: for the Sec-WebSocket-Key and the masks of client frames. */
export function moddableRandomBytes(bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
}
