// `npm run certs [-- --force] [--dir certs] [--device-id iotlink-device]`
// Creates the development PKI with the openssl CLI: a CA, a broker certificate for localhost,
// 127.0.0.1 and ::1 (with the chain file the broker serves, since Moddable's TLS needs the chain),
// and a device RSA key and certificate in the forms the device reads from flash (DER; the key as
// unencrypted PKCS#8), plus the PEM copies brokers and desktop peers use. Idempotent: an existing
// complete set is kept unless --force. The helpers are exported for tests that need other fixtures
// (another CA, EC or PKCS#1 keys, expired certificates).
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkCertificateDer, checkClientKeyDer } from "../hosts/desktop/tls-inputs.ts";
import { helpIfAsked, readCommandLine, runCommand, UsageError } from "./cli.ts";

/** File names of the development PKI; the device reads the .der files as resources. */
export const DEV_PKI_FILES = Object.freeze({
  caCertificatePem: "ca.pem",
  caKeyPem: "ca-key.pem",
  caCertificateDer: "ca.der",
  brokerCertificatePem: "broker-cert.pem",
  brokerKeyPem: "broker-key.pem",
  brokerChainPem: "broker-chain.pem",
  deviceCertificatePem: "device-cert.pem",
  deviceKeyPem: "device-key.pem",
  deviceCertificateDer: "device-cert.der",
  deviceKeyDer: "device-key.der",
});

export const DEFAULT_DEVICE_ID = "iotlink-device";

export function runOpenssl(args: readonly string[], cwd?: string): string {
  try {
    return execFileSync("openssl", args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (error) {
    const failure = error as { code?: string; stderr?: string };
    if (failure.code === "ENOENT") throw new Error("the openssl command is needed (Debian: apt-get install openssl)");
    throw new Error(`openssl ${args[0]} failed: ${(failure.stderr ?? String(error)).trim()}`);
  }
}

export type KeyType = "rsa" | "ec";

/** Writes a new private key as PKCS#8 PEM. */
export function generateKey(path: string, type: KeyType = "rsa"): string {
  const algorithm = type === "rsa" ? ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"] : ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
  runOpenssl(["genpkey", ...algorithm, "-out", path]);
  chmodSync(path, 0o600);
  return path;
}

export interface Issuer {
  readonly certificatePem: string;
  readonly keyPem: string;
}

export type Validity = { days: number } | { notBefore: Date; notAfter: Date };

export interface CertificateRequest {
  /** Where the certificate (PEM) is written. */
  readonly certificatePem: string;
  /** The subject's key (PEM); generated there if missing. */
  readonly keyPem: string;
  readonly keyType?: KeyType;
  readonly commonName: string;
  readonly profile: "ca" | "server" | "client";
  readonly dnsNames?: readonly string[];
  readonly ipAddresses?: readonly string[];
  /** Signs with this CA; without it the certificate is self-signed. */
  readonly issuer?: Issuer;
  readonly validity?: Validity;
}

function extensionLines(request: CertificateRequest): string[] {
  const identifiers = ["subjectKeyIdentifier = hash", "authorityKeyIdentifier = keyid:always"];
  if (request.profile === "ca") {
    return ["basicConstraints = critical, CA:TRUE", "keyUsage = critical, keyCertSign, cRLSign", ...identifiers];
  }
  // keyEncipherment: the device offers RSA key exchange suites first.
  const usage = request.keyType === "ec" ? "digitalSignature, keyAgreement" : "digitalSignature, keyEncipherment";
  const names = [...(request.dnsNames ?? []).map((name) => `DNS:${name}`), ...(request.ipAddresses ?? []).map((address) => `IP:${address}`)];
  return [
    "basicConstraints = critical, CA:FALSE",
    `keyUsage = critical, ${usage}`,
    `extendedKeyUsage = ${request.profile === "server" ? "serverAuth" : "clientAuth"}`,
    ...(names.length > 0 ? [`subjectAltName = ${names.join(", ")}`] : []),
    ...identifiers,
  ];
}

function opensslTime(date: Date): string {
  return date.toISOString().replace(/[-:T]/g, "").slice(0, 14) + "Z";
}

/**
 * Issues a certificate with `openssl ca`, which (unlike `openssl x509` in OpenSSL 3.0) can also
 * set explicit validity dates, as tests of expired certificates need.
 */
export function issueCertificate(request: CertificateRequest): string {
  const work = mkdtempSync(join(tmpdir(), "iotlink-ca-"));
  try {
    if (!existsSync(request.keyPem)) generateKey(request.keyPem, request.keyType ?? "rsa");
    const csr = join(work, "request.csr");
    runOpenssl(["req", "-new", "-key", request.keyPem, "-subj", `/CN=${request.commonName}`, "-out", csr]);
    writeFileSync(join(work, "index.txt"), "");
    // A random positive serial, so certificates from repeated runs never collide.
    const serial = randomBytes(12);
    serial[0]! &= 0x7f;
    writeFileSync(join(work, "serial"), serial.toString("hex") + "\n");
    writeFileSync(
      join(work, "ca.cnf"),
      [
        "[ca]",
        "default_ca = signer",
        "[signer]",
        `database = ${join(work, "index.txt")}`,
        `new_certs_dir = ${work}`,
        `serial = ${join(work, "serial")}`,
        "default_md = sha256",
        "policy = any_subject",
        "unique_subject = no",
        "copy_extensions = none",
        "[any_subject]",
        "commonName = supplied",
        "[extensions]",
        ...extensionLines(request),
        "",
      ].join("\n"),
    );
    const validity = request.validity ?? { days: 3650 };
    const dates = "days" in validity ? ["-days", String(validity.days)] : ["-startdate", opensslTime(validity.notBefore), "-enddate", opensslTime(validity.notAfter)];
    const signer = request.issuer ? ["-cert", request.issuer.certificatePem, "-keyfile", request.issuer.keyPem] : ["-selfsign", "-keyfile", request.keyPem];
    runOpenssl(["ca", "-batch", "-notext", "-config", join(work, "ca.cnf"), "-extensions", "extensions", "-in", csr, "-out", request.certificatePem, ...signer, ...dates]);
    return request.certificatePem;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export function pemCertificateToDer(pemPath: string, derPath: string): string {
  runOpenssl(["x509", "-in", pemPath, "-outform", "DER", "-out", derPath]);
  return derPath;
}

/** The key form the device needs: unencrypted PKCS#8, DER. */
export function pemKeyToPkcs8Der(pemPath: string, derPath: string): string {
  runOpenssl(["pkcs8", "-topk8", "-nocrypt", "-in", pemPath, "-outform", "DER", "-out", derPath]);
  chmodSync(derPath, 0o600);
  return derPath;
}

/** A PKCS#1 ("BEGIN RSA PRIVATE KEY") DER key, which the device cannot use; for negative tests. */
export function pemKeyToPkcs1Der(pemPath: string, derPath: string): string {
  runOpenssl(["rsa", "-in", pemPath, "-traditional", "-outform", "DER", "-out", derPath]);
  return derPath;
}

export interface DevPkiOptions {
  readonly directory?: string;
  readonly force?: boolean;
  readonly deviceId?: string;
}

export interface DevPkiResult {
  readonly directory: string;
  readonly created: boolean;
  readonly files: readonly string[];
}

function completeSetIn(directory: string): boolean {
  return Object.values(DEV_PKI_FILES).every((name) => existsSync(join(directory, name)));
}

/** Creates the development PKI in `directory` (default certs/) unless a complete set is there. */
export function ensureDevPki(options: DevPkiOptions = {}): DevPkiResult {
  const directory = resolve(options.directory ?? "certs");
  const files = Object.values(DEV_PKI_FILES);
  if (!options.force && completeSetIn(directory)) return { directory, created: false, files };

  // Build in a scratch directory and copy at the end, so a failure leaves no half-made set.
  const work = mkdtempSync(join(tmpdir(), "iotlink-pki-"));
  try {
    const at = (name: string): string => join(work, name);
    const ca: Issuer = { certificatePem: at(DEV_PKI_FILES.caCertificatePem), keyPem: at(DEV_PKI_FILES.caKeyPem) };
    issueCertificate({ ...ca, commonName: "IoTLink Development CA", profile: "ca" });
    issueCertificate({
      certificatePem: at(DEV_PKI_FILES.brokerCertificatePem),
      keyPem: at(DEV_PKI_FILES.brokerKeyPem),
      commonName: "localhost",
      profile: "server",
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1", "::1"],
      issuer: ca,
    });
    writeFileSync(at(DEV_PKI_FILES.brokerChainPem), readFileSync(at(DEV_PKI_FILES.brokerCertificatePem), "utf8") + readFileSync(ca.certificatePem, "utf8"));
    issueCertificate({
      certificatePem: at(DEV_PKI_FILES.deviceCertificatePem),
      keyPem: at(DEV_PKI_FILES.deviceKeyPem),
      commonName: options.deviceId ?? DEFAULT_DEVICE_ID,
      profile: "client",
      issuer: ca,
    });
    pemCertificateToDer(ca.certificatePem, at(DEV_PKI_FILES.caCertificateDer));
    pemCertificateToDer(at(DEV_PKI_FILES.deviceCertificatePem), at(DEV_PKI_FILES.deviceCertificateDer));
    pemKeyToPkcs8Der(at(DEV_PKI_FILES.deviceKeyPem), at(DEV_PKI_FILES.deviceKeyDer));

    // Check the results with the same rules the desktop SecureSocket applies.
    for (const name of [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceCertificateDer]) {
      const checked = checkCertificateDer(readFileSync(at(name)), name);
      if (!checked.ok) throw new Error(checked.problem);
    }
    const key = checkClientKeyDer(readFileSync(at(DEV_PKI_FILES.deviceKeyDer)));
    if (!key.ok) throw new Error(key.problem);

    mkdirSync(directory, { recursive: true });
    for (const name of files) {
      copyFileSync(at(name), join(directory, name));
      if (name.includes("key")) chmodSync(join(directory, name), 0o600);
    }
    return { directory, created: true, files };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export const CERTS_USAGE = `usage: npm run certs -- [--force] [--dir certs] [--device-id iotlink-device]

Makes the development PKI with openssl: a CA, a broker certificate for localhost, 127.0.0.1 and
::1, and a device RSA key and certificate, in the forms the device reads (ca.der, device-cert.der,
device-key.der) and the PEM files the brokers use. A complete set already there is kept.

  --dir DIR         where (default certs)
  --device-id ID    the device certificate's CN (default iotlink-device)
  --force           make a new set even if one is there
  --help            this text

Exit codes: 0 done, 2 for a bad option, 1 when openssl fails or is missing.`;

function main(): void {
  const values = readCommandLine({ force: { type: "boolean" }, dir: { type: "string" }, "device-id": { type: "string" } });
  helpIfAsked(values, CERTS_USAGE);
  if (values.dir === "") throw new UsageError("--dir needs a folder");
  if (values["device-id"] !== undefined && !/^[A-Za-z0-9._:-]+$/.test(values["device-id"])) {
    throw new UsageError(`--device-id takes letters, digits and . _ : -, got ${JSON.stringify(values["device-id"])}`);
  }
  const result = ensureDevPki({ directory: values.dir ?? "certs", force: values.force, deviceId: values["device-id"] ?? DEFAULT_DEVICE_ID });
  if (!result.created) {
    process.stdout.write(`Development PKI already present in ${result.directory} (use --force to replace it)\n`);
    return;
  }
  process.stdout.write(`Development PKI written to ${result.directory}:\n`);
  process.stdout.write(`  device resources: ${DEV_PKI_FILES.caCertificateDer}, ${DEV_PKI_FILES.deviceCertificateDer}, ${DEV_PKI_FILES.deviceKeyDer} (RSA, PKCS#8 DER)\n`);
  process.stdout.write(`  broker: ${DEV_PKI_FILES.brokerChainPem} (for localhost, 127.0.0.1, ::1), ${DEV_PKI_FILES.brokerKeyPem}, ${DEV_PKI_FILES.caCertificatePem}\n`);
  process.stdout.write(`  desktop peers: ${DEV_PKI_FILES.deviceCertificatePem}, ${DEV_PKI_FILES.deviceKeyPem}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void runCommand("certs", main);
}
