// `npm run import-aws -- --ca AmazonRootCA1.pem --cert xxx-certificate.pem.crt --key xxx-private.pem.key [--out certs] [--force]`
// Converts the PEM files AWS IoT Core hands out into the resources the device reads from flash:
// ca.der (the Amazon root the broker's chain ends in), device-cert.der and device-key.der (the
// private key as unencrypted PKCS#8 DER, the only key form Moddable's TLS stack parses). Moddable
// signs with RSA client keys only, so an EC key is refused with a way out. Uses node:crypto
// (OpenSSL underneath) for the conversions; nothing here parses ASN.1 by hand.
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { checkCertificateDer, checkClientKeyDer } from "../hosts/desktop/tls-inputs.ts";
import { DEV_PKI_FILES } from "./certs.ts";

export interface AwsImportOptions {
  readonly caPath: string;
  readonly certificatePath: string;
  readonly keyPath: string;
  /** Default certs/. */
  readonly outputDirectory?: string;
  /** Replace resources already there (for example the development PKI's). */
  readonly force?: boolean;
}

export interface AwsImportResult {
  readonly outputDirectory: string;
  readonly files: readonly string[];
  readonly deviceSubject: string;
  readonly caSubject: string;
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
function certificateFrom(bytes: Buffer, what: string): X509Certificate {
  try {
    return new X509Certificate(bytes);
  } catch {
    throw new ImportError(`the ${what} file is not a PEM or DER X.509 certificate`);
  }
}

function privateKeyFrom(bytes: Buffer): KeyObject {
  try {
    // PKCS#1 ("BEGIN RSA PRIVATE KEY", what AWS issues), PKCS#8 or SEC1 PEM are all accepted here.
    return createPrivateKey({ key: bytes });
  } catch (error) {
    if ((error as { code?: string }).code === "ERR_MISSING_PASSPHRASE") {
      throw new ImportError("the private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain-key.pem)");
    }
    throw new ImportError("the key file is not a PEM private key");
  }
}

export function importAwsCertificates(options: AwsImportOptions): AwsImportResult {
  const ca = certificateFrom(readInput(options.caPath, "CA"), "CA");
  const device = certificateFrom(readInput(options.certificatePath, "certificate"), "certificate");
  const key = privateKeyFrom(readInput(options.keyPath, "private key"));

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

  const outputDirectory = resolve(options.outputDirectory ?? "certs");
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
  };
}

function main(): void {
  const { values } = parseArgs({
    options: {
      ca: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      out: { type: "string", default: "certs" },
      force: { type: "boolean", default: false },
    },
  });
  if (!values.ca || !values.cert || !values.key) {
    throw new ImportError("usage: npm run import-aws -- --ca AmazonRootCA1.pem --cert xxx-certificate.pem.crt --key xxx-private.pem.key [--out certs] [--force]");
  }
  const result = importAwsCertificates({ caPath: values.ca, certificatePath: values.cert, keyPath: values.key, outputDirectory: values.out, force: values.force });
  process.stdout.write(`Imported into ${result.outputDirectory}: ${result.files.join(", ")}\n`);
  process.stdout.write(`  device certificate: ${result.deviceSubject}\n  CA: ${result.caSubject}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (error) {
    process.stderr.write(`import-aws: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
