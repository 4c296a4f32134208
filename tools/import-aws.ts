// `npm run import-aws -- --ca AmazonRootCA1.pem --cert xxx-certificate.pem.crt --key xxx-private.pem.key [--out certs-aws] [--force]`
// Converts the PEM files AWS IoT Core hands out into the resources the device reads from flash:
// ca.der (the Amazon root the broker's chain ends in), device-cert.der and device-key.der (the
// private key as unencrypted PKCS#8 DER, the only key form Moddable's TLS stack parses). Moddable
// signs with RSA client keys only, so an EC key is refused with a way out. Uses node:crypto
// (OpenSSL underneath) for the conversions; nothing here parses ASN.1 by hand.
//
// They go to certs-aws/ by default, apart from the development PKI in certs/ that `npm start`'s
// embedded broker uses: `npm start -- --endpoint HOST --certs certs-aws` runs the app against AWS.
// An encrypted key, a --ca that is not a CA, and a --cert that is one are refused with the way out.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { checkCertificateDer, checkClientKeyDer } from "../hosts/desktop/tls-inputs.ts";
import { DEV_PKI_FILES } from "./certs.ts";
import { helpIfAsked, readCommandLine, runCommand, UsageError } from "./cli.ts";

/** Where the AWS credentials go unless --out says otherwise: apart from the development PKI in certs/. */
export const DEFAULT_AWS_DIRECTORY = "certs-aws";

export interface AwsImportOptions {
  readonly caPath: string;
  readonly certificatePath: string;
  readonly keyPath: string;
  /** Default certs-aws/. */
  readonly outputDirectory?: string;
  /** Replace resources already there (for example the development PKI's). */
  readonly force?: boolean;
}

export interface AwsImportResult {
  readonly outputDirectory: string;
  readonly files: readonly string[];
  readonly deviceSubject: string;
  readonly caSubject: string;
  /** Set when the output folder also holds the development PKI (the embedded broker's): a mix `npm start` refuses. */
  readonly mixedWithDevelopmentPki: boolean;
}

export class ImportError extends Error {}

function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch {
    throw new ImportError(`cannot read the ${what} file ${path}`);
  }
}

/** The first certificate of a PEM (or DER) file. */
function certificateFrom(bytes: Buffer, what: string, path: string): X509Certificate {
  try {
    return new X509Certificate(bytes);
  } catch {
    throw new ImportError(`the ${what} file ${path} is not a PEM or DER X.509 certificate`);
  }
}

/** The command that turns an encrypted key into the unencrypted one this tool reads (it asks for the pass phrase). */
export function decryptCommand(keyPath: string): string {
  return `openssl pkcs8 -topk8 -nocrypt -in ${keyPath} -out private-plain.pem`;
}

function encryptedKey(keyPath: string): ImportError {
  return new ImportError(`the private key ${keyPath} is encrypted: decrypt it with ${decryptCommand(keyPath)} (it asks for the pass phrase), then give --key private-plain.pem`);
}

function privateKeyFrom(bytes: Buffer, keyPath: string): KeyObject {
  // PKCS#8 "ENCRYPTED PRIVATE KEY", or the legacy PEM encryption of a PKCS#1 or SEC1 key.
  const text = bytes.toString("latin1");
  if (/-----BEGIN ENCRYPTED PRIVATE[ ]KEY-----/.test(text) || /^Proc-Type: *4, *ENCRYPTED/m.test(text)) throw encryptedKey(keyPath);
  try {
    // PKCS#1 ("BEGIN RSA PRIVATE KEY", what AWS issues), PKCS#8 or SEC1 PEM are all accepted here.
    return createPrivateKey({ key: bytes });
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === "ERR_MISSING_PASSPHRASE" || code === "ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED") throw encryptedKey(keyPath);
    try {
      return createPrivateKey({ key: bytes, format: "der", type: "pkcs8" });
    } catch (derError) {
      if ((derError as { code?: string }).code === "ERR_MISSING_PASSPHRASE") throw encryptedKey(keyPath);
    }
    throw new ImportError(`the key file ${keyPath} is not a PEM private key`);
  }
}

function commonName(certificate: X509Certificate): string {
  return /(?:^|\n)CN=([^\n]*)/.exec(certificate.subject)?.[1] ?? certificate.subject.replace(/\n/g, ", ");
}

export function importAwsCertificates(options: AwsImportOptions): AwsImportResult {
  const ca = certificateFrom(readInput(options.caPath, "CA"), "CA", options.caPath);
  const device = certificateFrom(readInput(options.certificatePath, "certificate"), "certificate", options.certificatePath);
  const key = privateKeyFrom(readInput(options.keyPath, "private key"), options.keyPath);
  // basicConstraints CA:TRUE is what makes a certificate a CA; a device certificate given as --ca
  // would be accepted here and fail at every TLS handshake on the device.
  if (!ca.ca) {
    throw new ImportError(
      `--ca ${options.caPath} is not a CA certificate (no basicConstraints CA:TRUE; it is "${commonName(ca)}"${device.ca ? ", and --cert is a CA: are the two swapped?" : ", a device or server certificate"}): give Amazon Root CA 1, AmazonRootCA1.pem`,
    );
  }
  if (device.ca) throw new ImportError(`--cert ${options.certificatePath} is a CA certificate ("${commonName(device)}"), not the device's: give the xxx-certificate.pem.crt of your thing`);

  if (key.asymmetricKeyType !== "rsa") {
    throw new ImportError(
      `the private key is ${key.asymmetricKeyType === "ec" ? "an EC" : `a ${String(key.asymmetricKeyType)}`} key, and Moddable's TLS stack signs with RSA client keys only. ` +
        "Create an RSA key and a certificate for it from a CSR: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out device-key.pem; " +
        "openssl req -new -key device-key.pem -subj /CN=my-thing -out device.csr; aws iot create-certificate-from-csr --certificate-signing-request file://device.csr --set-as-active",
    );
  }
  if (!device.checkPrivateKey(key)) throw new ImportError("the private key does not belong to the device certificate");
  if (!device.checkIssued(ca)) {
    // AWS device certificates are issued by an AWS intermediate, not by the root the broker chain ends in.
    process.stderr.write("import-aws: note: the device certificate is not issued by the given CA directly (normal for AWS IoT)\n");
  }

  const outputs: Array<[string, Buffer]> = [
    [DEV_PKI_FILES.caCertificateDer, ca.raw],
    [DEV_PKI_FILES.deviceCertificateDer, device.raw],
    [DEV_PKI_FILES.deviceKeyDer, key.export({ format: "der", type: "pkcs8" })],
  ];
  // Check the results with the rules the desktop SecureSocket (and the device) apply.
  for (const [name, bytes] of outputs) {
    const checked = name === DEV_PKI_FILES.deviceKeyDer ? checkClientKeyDer(bytes) : checkCertificateDer(bytes, name);
    if (!checked.ok) throw new ImportError(checked.problem);
  }

  const outputDirectory = resolve(options.outputDirectory ?? DEFAULT_AWS_DIRECTORY);
  const existing = outputs.map(([name]) => name).filter((name) => existsSync(join(outputDirectory, name)));
  if (existing.length > 0 && !options.force) {
    throw new ImportError(`${existing.join(", ")} already exist in ${outputDirectory}; use --force to replace them, or --out to write elsewhere`);
  }
  mkdirSync(outputDirectory, { recursive: true });
  for (const [name, bytes] of outputs) {
    writeFileSync(join(outputDirectory, name), bytes, { mode: name === DEV_PKI_FILES.deviceKeyDer ? 0o600 : 0o644 });
  }
  return {
    outputDirectory,
    files: outputs.map(([name]) => name),
    deviceSubject: device.subject.replace(/\n/g, ", "),
    caSubject: ca.subject.replace(/\n/g, ", "),
    mixedWithDevelopmentPki: existsSync(join(outputDirectory, DEV_PKI_FILES.caKeyPem)),
  };
}

export const IMPORT_AWS_USAGE = `usage: npm run import-aws -- --ca AmazonRootCA1.pem --cert xxx-certificate.pem.crt --key xxx-private.pem.key [--out certs-aws] [--force]

Converts the files AWS IoT Core hands out for a thing into the device's resources: ca.der,
device-cert.der and device-key.der (DER; the key as unencrypted PKCS#8, RSA only, as Moddable's TLS
needs). Then: npm start -- --endpoint xxx-ats.iot.REGION.amazonaws.com --certs certs-aws --client-id THING

  --ca FILE     Amazon Root CA 1 (a CA certificate)
  --cert FILE   the thing's certificate
  --key FILE    its private key (unencrypted; an encrypted one is refused with the openssl command that decrypts it)
  --out DIR     where the resources go (default certs-aws, apart from the development PKI in certs)
  --force       replace resources already there
  --help        this text

Exit codes: 0 done, 2 for a bad option, 1 when a file is refused (with the reason).`;

function main(): void {
  const values = readCommandLine({
    ca: { type: "string" },
    cert: { type: "string" },
    key: { type: "string" },
    out: { type: "string" },
    force: { type: "boolean" },
  });
  helpIfAsked(values, IMPORT_AWS_USAGE);
  const missing = (["ca", "cert", "key"] as const).filter((name) => !values[name]).map((name) => "--" + name);
  if (missing.length > 0) throw new UsageError(`${missing.join(", ")} ${missing.length === 1 ? "is" : "are"} needed: npm run import-aws -- --ca AmazonRootCA1.pem --cert xxx-certificate.pem.crt --key xxx-private.pem.key`);
  const out = values.out ?? DEFAULT_AWS_DIRECTORY;
  const result = importAwsCertificates({ caPath: values.ca!, certificatePath: values.cert!, keyPath: values.key!, outputDirectory: out, force: values.force });
  process.stdout.write(`Imported into ${result.outputDirectory}: ${result.files.join(", ")}\n`);
  process.stdout.write(`  device certificate: ${result.deviceSubject}\n  CA: ${result.caSubject}\n`);
  process.stdout.write(`Run the app against AWS IoT Core: npm start -- --endpoint xxx-ats.iot.REGION.amazonaws.com --certs ${out} --client-id THING\n`);
  if (result.mixedWithDevelopmentPki) {
    process.stderr.write(`import-aws: note: ${out} also holds the development PKI, which npm start's embedded broker now refuses; npm run certs -- --force --dir ${out} makes it anew (and replaces these three files)\n`);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void runCommand("import-aws", main);
}
