// One process simulates a whole fleet, so work that each real device does once on its own CPU is
// done here a thousand times in a row on one core. The desktop SecureSocket (hosts/desktop) parses
// the device's certificate, key and CA at every connection attempt (node:crypto's
// createPrivateKey, X509Certificate and KeyObject.export, then node:tls's createSecureContext):
// about 2 ms of the ~3 ms an attempt costs the simulator, and the fleet's devices all share one certificate and key.
// memoizeCredentialParsing() makes those return the result already made for identical
// inputs, in this process only. What stays per attempt is what the broker sees: the TCP
// connection, the TLS handshake with its RSA signature and ECDHE, the checks of the server's chain
// (with the parsed certificates reused), CONNECT and CONNACK. `npm run fleet -- --no-memo` turns it
// off, to measure the difference.
import { createHash } from "node:crypto";
import { createRequire, syncBuiltinESMExports } from "node:module";
import type { KeyObject } from "node:crypto";
import type { SecureContext, SecureContextOptions } from "node:tls";

const require = createRequire(import.meta.url);

/** A short digest of bytes or text, as a cache key. */
function digest(value: unknown): string {
  if (value === undefined || value === null) return "-";
  if (typeof value === "string") return "s" + createHash("sha1").update(value).digest("base64");
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return "b" + createHash("sha1").update(value).digest("base64");
  if (value instanceof ArrayBuffer) return "b" + createHash("sha1").update(new Uint8Array(value)).digest("base64");
  if (ArrayBuffer.isView(value)) return "b" + createHash("sha1").update(new Uint8Array(value.buffer, value.byteOffset, value.byteLength)).digest("base64");
  if (Array.isArray(value)) return "[" + value.map(digest).join(",") + "]";
  if (typeof value === "object") {
    return "{" + Object.keys(value as object).sort().map((key) => key + ":" + digest((value as Record<string, unknown>)[key])).join(",") + "}";
  }
  return typeof value + ":" + String(value);
}

export interface MemoStats {
  secureContexts: { made: number; reused: number };
  privateKeys: { made: number; reused: number };
  certificates: { made: number; reused: number };
}

export const memoStats: MemoStats = {
  secureContexts: { made: 0, reused: 0 },
  privateKeys: { made: 0, reused: 0 },
  certificates: { made: 0, reused: 0 },
};

let installed = false;

/** Call before the device code is loaded (it imports these functions by name). */
export function memoizeCredentialParsing(): void {
  if (installed) return;
  installed = true;
  const tls = require("node:tls") as typeof import("node:tls");
  const crypto = require("node:crypto") as typeof import("node:crypto");

  const contexts = new Map<string, SecureContext>();
  const createSecureContext = tls.createSecureContext;
  tls.createSecureContext = function (options?: SecureContextOptions): SecureContext {
    const key = digest(options ?? {});
    let context = contexts.get(key);
    if (context) memoStats.secureContexts.reused++;
    else {
      context = createSecureContext(options);
      contexts.set(key, context);
      memoStats.secureContexts.made++;
    }
    return context;
  };

  const keys = new Map<string, KeyObject>();
  const createPrivateKey = crypto.createPrivateKey;
  crypto.createPrivateKey = function (input: Parameters<typeof createPrivateKey>[0]): KeyObject {
    const key = digest(input);
    let made = keys.get(key);
    if (made) memoStats.privateKeys.reused++;
    else {
      // Failures (a wrong format tried first) are not cached: they throw every time, as before.
      made = createPrivateKey(input);
      // The key is exported to PEM for node:tls at every attempt: the same PEM each time.
      const exported = new Map<string, string | Buffer>();
      const exportKey = made.export.bind(made) as (options?: unknown) => string | Buffer;
      Object.defineProperty(made, "export", {
        value: (options?: unknown) => {
          const optionsKey = digest(options);
          let result = exported.get(optionsKey);
          if (result === undefined) exported.set(optionsKey, (result = exportKey(options)));
          return result;
        },
      });
      keys.set(key, made);
      memoStats.privateKeys.made++;
    }
    return made;
  } as typeof createPrivateKey;

  const certificates = new Map<string, InstanceType<typeof crypto.X509Certificate>>();
  const X509 = crypto.X509Certificate;
  crypto.X509Certificate = new Proxy(X509, {
    construct(target, args: [unknown]) {
      const key = digest(args[0]);
      let made = certificates.get(key);
      if (made) memoStats.certificates.reused++;
      else {
        made = new target(args[0] as never);
        certificates.set(key, made);
        memoStats.certificates.made++;
      }
      return made;
    },
  });
  // ES module imports of node:tls and node:crypto see the replaced functions from now on.
  syncBuiltinESMExports();
}
