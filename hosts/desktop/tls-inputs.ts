// Checks the certificate and key inputs of a SecureSocket against what Moddable's TLS stack
// (modules/crypt/ssl, etc/x509, etc/pkcs8) can use: DER certificates, and a client key that is an
// unencrypted PKCS#8 RSA key. The messages name the problem and the usual fix, and never include
// key or certificate contents.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";

/** Copies ArrayBuffer, HostBuffer (Resource) or view contents; anything else is refused. */
export function bytesOf(value: unknown): Buffer | undefined {
  if (value instanceof ArrayBuffer) return Buffer.from(new Uint8Array(value));
  if (ArrayBuffer.isView(value)) return Buffer.from(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
  return undefined;
}

function looksLikePem(bytes: Buffer): boolean {
  return bytes.subarray(0, 64).toString("latin1").trimStart().startsWith("-----BEGIN");
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

/** A certificate given to the device must be one DER-encoded X.509 certificate. */
export function checkCertificateDer(value: unknown, role: string): Checked<X509Certificate> {
  const bytes = bytesOf(value);
  if (!bytes) return { ok: false, problem: `${role} must be DER bytes (ArrayBuffer, typed array or Resource)` };
  if (looksLikePem(bytes)) {
    return { ok: false, problem: `${role} is PEM text; Moddable needs DER (convert with: openssl x509 -outform DER)` };
  }
  try {
    return { ok: true, value: new X509Certificate(bytes) };
  } catch {
    return { ok: false, problem: `${role} is not a DER X.509 certificate` };
  }
}

export function isWithinValidity(certificate: X509Certificate, now = Date.now()): boolean {
  return Date.parse(certificate.validFrom) < now && now < Date.parse(certificate.validTo);
}

const PKCS8_FIX = "convert with: openssl pkcs8 -topk8 -nocrypt -outform DER";

/** The client key must be RSA, unencrypted PKCS#8, DER (etc/pkcs8.js parses nothing else). */
export function checkClientKeyDer(value: unknown): Checked<KeyObject> {
  const bytes = bytesOf(value);
  if (!bytes) return { ok: false, problem: "clientKey must be DER bytes (ArrayBuffer, typed array or Resource)" };
  if (looksLikePem(bytes)) return { ok: false, problem: `clientKey is PEM text; Moddable needs PKCS#8 DER (${PKCS8_FIX})` };
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: bytes, format: "der", type: "pkcs8" });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_MISSING_PASSPHRASE") {
      return { ok: false, problem: `clientKey is an encrypted PKCS#8 key; Moddable needs it unencrypted (${PKCS8_FIX})` };
    }
    if (parses(bytes, "pkcs1")) return { ok: false, problem: `clientKey is a PKCS#1 RSA key; Moddable needs PKCS#8 (${PKCS8_FIX})` };
    if (parses(bytes, "sec1")) return { ok: false, problem: "clientKey is an EC key; Moddable's TLS supports RSA client keys only" };
    return { ok: false, problem: "clientKey is not a DER private key" };
  }
  if (key.asymmetricKeyType !== "rsa") {
    const kind = key.asymmetricKeyType === "ec" ? "an EC" : `a ${String(key.asymmetricKeyType)}`;
    return { ok: false, problem: `clientKey is ${kind} key; Moddable's TLS supports RSA client keys only` };
  }
  return { ok: true, value: key };
}

function parses(bytes: Buffer, type: "pkcs1" | "sec1"): boolean {
  try {
    createPrivateKey({ key: bytes, format: "der", type });
    return true;
  } catch {
    return false;
  }
}

export interface ClientCredentials {
  /** PEM, for node:tls, which takes certificates and keys only in that form. */
  readonly certificateChainPem: string;
  readonly keyPem: string;
}

/** What the device would send when a server asks for a client certificate, or why it would fail. */
export function checkClientCredentials(certificates: unknown, key: unknown): Checked<ClientCredentials> | undefined {
  if (certificates === undefined && key === undefined) return undefined;
  if (!Array.isArray(certificates) || certificates.length === 0) {
    return { ok: false, problem: "clientCertificates must be an array of DER certificates" };
  }
  const chain: X509Certificate[] = [];
  for (const [index, certificate] of certificates.entries()) {
    const checked = checkCertificateDer(certificate, `clientCertificates[${index}]`);
    if (!checked.ok) return checked;
    chain.push(checked.value);
  }
  const checkedKey = checkClientKeyDer(key);
  if (!checkedKey.ok) return checkedKey;
  if (!chain[0]!.checkPrivateKey(checkedKey.value)) {
    return { ok: false, problem: "clientKey does not belong to clientCertificates[0]" };
  }
  return {
    ok: true,
    value: {
      certificateChainPem: chain.map((certificate) => certificate.toString()).join(""),
      keyPem: checkedKey.value.export({ format: "pem", type: "pkcs8" }).toString(),
    },
  };
}

/**
 * The server-certificate rules of Moddable's CertificateManager.verify (ssl/ssl_cert.js):
 * the server must send its chain (a lone leaf never satisfies the name check), each certificate
 * must be within its validity, each must be signed by the next, one of them must be signed by the
 * configured CA, and the leaf must name the server in subjectAltName (DNS, one leading wildcard
 * label, or IPv4 address; the subject CN is never used).
 */
export function checkServerChain(chain: readonly Buffer[], serverName: string, ca: X509Certificate | undefined): string | undefined {
  if (chain.length === 0) return "server sent no certificate";
  if (chain.length === 1) {
    return "server sent only its own certificate; Moddable's TLS needs the chain (leaf and issuer) to verify it";
  }
  let certificates: X509Certificate[];
  try {
    certificates = chain.map((der) => new X509Certificate(der));
  } catch {
    return "server sent a certificate that does not parse";
  }
  for (const [index, certificate] of certificates.entries()) {
    if (!isWithinValidity(certificate)) return `date validation failed on server certificate ${index} (${certificate.subject.replace(/\n/g, ", ")})`;
  }
  for (let index = 0; index + 1 < certificates.length; index++) {
    const issuer = certificates[index + 1]!;
    if (!certificates[index]!.checkIssued(issuer) || !certificates[index]!.verify(issuer.publicKey)) {
      return `server certificate ${index} is not signed by the next certificate of the chain it sent`;
    }
  }
  if (ca) {
    const anchored = certificates.slice(1).some((certificate) => certificate.checkIssued(ca) && certificate.verify(ca.publicKey));
    if (!anchored) return "server certificate chain is not signed by the CA given in secure.certificate";
  }
  if (!namesServer(certificates[0]!, serverName)) return `subjectAltName match failed for ${serverName}`;
  return undefined;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function namesServer(leaf: X509Certificate, serverName: string): boolean {
  const name = serverName.toLowerCase();
  if (IPV4.test(name)) return leaf.checkIP(name) !== undefined;
  if (name.includes(":")) return false; // Moddable matches IPv4 addresses only
  return leaf.checkHost(name, { subject: "never", wildcards: true, partialWildcards: false, multiLabelWildcards: false }) !== undefined;
}
