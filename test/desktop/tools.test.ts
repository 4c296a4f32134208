// tools/certs.ts and tools/import-aws.ts: the development PKI and the AWS IoT import produce the
// resources the device needs, in the forms Moddable's TLS stack accepts.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";
import { DEV_PKI_FILES, ensureDevPki, generateKey, issueCertificate, runOpenssl } from "../../tools/certs.ts";
import { importAwsCertificates, ImportError } from "../../tools/import-aws.ts";
import { checkCertificateDer, checkClientKeyDer } from "../../hosts/desktop/tls-inputs.ts";

const run = promisify(execFile);
const TOOLS = join(import.meta.dirname, "..", "..", "tools");

let scratch: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-tools-test-"));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

describe("npm run certs", () => {
  test("creates the development PKI once, in the device's formats, and keeps it unless forced", async () => {
    const directory = join(scratch, "certs");
    const { stdout } = await run(process.execPath, ["--import", "tsx", join(TOOLS, "certs.ts"), "--dir", directory]);
    assert.match(stdout, /Development PKI written/);
    assert.doesNotMatch(stdout, /BEGIN/, "no key or certificate is printed");

    const caDer = readFileSync(join(directory, DEV_PKI_FILES.caCertificateDer));
    const deviceDer = readFileSync(join(directory, DEV_PKI_FILES.deviceCertificateDer));
    const keyDer = readFileSync(join(directory, DEV_PKI_FILES.deviceKeyDer));
    assert.ok(checkCertificateDer(caDer, "ca").ok);
    assert.ok(checkCertificateDer(deviceDer, "device").ok);
    assert.ok(checkClientKeyDer(keyDer).ok, "device key is unencrypted RSA PKCS#8 DER");
    assert.equal(statSync(join(directory, DEV_PKI_FILES.deviceKeyDer)).mode & 0o077, 0, "keys are private to the user");

    const ca = new X509Certificate(caDer);
    const device = new X509Certificate(deviceDer);
    assert.ok(device.verify(ca.publicKey) && device.checkIssued(ca));
    const chain = readFileSync(join(directory, DEV_PKI_FILES.brokerChainPem), "utf8").match(/BEGIN CERTIFICATE/g) ?? [];
    assert.equal(chain.length, 2, "the broker serves its leaf and the CA");
    const broker = new X509Certificate(readFileSync(join(directory, DEV_PKI_FILES.brokerCertificatePem)));
    assert.ok(broker.checkHost("localhost", { subject: "never" }) && broker.checkIP("127.0.0.1"));

    const second = await run(process.execPath, ["--import", "tsx", join(TOOLS, "certs.ts"), "--dir", directory]);
    assert.match(second.stdout, /already present/);
    assert.deepEqual(readFileSync(join(directory, DEV_PKI_FILES.caCertificateDer)), caDer, "kept as it was");

    const forced = ensureDevPki({ directory, force: true });
    assert.equal(forced.created, true);
    assert.notDeepEqual(readFileSync(join(directory, DEV_PKI_FILES.caCertificateDer)), caDer, "--force makes a new CA");
  });
});

describe("npm run import-aws", () => {
  let ca: string;
  let rsaCertificate: string;
  let rsaKeyPkcs1: string;
  let ecCertificate: string;
  let ecKey: string;

  before(() => {
    // Stand-ins for the AWS downloads: a root CA, and device certificates with the key forms AWS issues.
    ca = join(scratch, "AmazonRootCA1.pem");
    const caKey = join(scratch, "root-key.pem");
    issueCertificate({ certificatePem: ca, keyPem: caKey, commonName: "Stand-in Root CA 1", profile: "ca" });
    const issuer = { certificatePem: ca, keyPem: caKey };
    const rsaKeyPkcs8 = generateKey(join(scratch, "rsa-key-pkcs8.pem"));
    rsaKeyPkcs1 = join(scratch, "abc-private.pem.key");
    runOpenssl(["rsa", "-in", rsaKeyPkcs8, "-traditional", "-out", rsaKeyPkcs1]);
    rsaCertificate = issueCertificate({ certificatePem: join(scratch, "abc-certificate.pem.crt"), keyPem: rsaKeyPkcs8, commonName: "thing", profile: "client", issuer });
    ecKey = generateKey(join(scratch, "ec-private.pem.key"), "ec");
    ecCertificate = issueCertificate({ certificatePem: join(scratch, "ec-certificate.pem.crt"), keyPem: ecKey, commonName: "ec-thing", profile: "client", issuer });
  });

  test("converts the PEM downloads into DER resources, the key into unencrypted PKCS#8", () => {
    assert.match(readFileSync(rsaKeyPkcs1, "utf8"), /BEGIN RSA PRIVATE KEY/, "the input is PKCS#1, as AWS issues it");
    const out = join(scratch, "imported");
    const result = importAwsCertificates({ caPath: ca, certificatePath: rsaCertificate, keyPath: rsaKeyPkcs1, outputDirectory: out });
    assert.deepEqual(result.files, [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceCertificateDer, DEV_PKI_FILES.deviceKeyDer]);
    assert.deepEqual(readFileSync(join(out, DEV_PKI_FILES.caCertificateDer)), new X509Certificate(readFileSync(ca)).raw);
    assert.deepEqual(readFileSync(join(out, DEV_PKI_FILES.deviceCertificateDer)), new X509Certificate(readFileSync(rsaCertificate)).raw);
    const key = checkClientKeyDer(readFileSync(join(out, DEV_PKI_FILES.deviceKeyDer)));
    assert.ok(key.ok, "RSA PKCS#8 DER");
    assert.ok(new X509Certificate(readFileSync(rsaCertificate)).checkPrivateKey(key.value));

    assert.throws(
      () => importAwsCertificates({ caPath: ca, certificatePath: rsaCertificate, keyPath: rsaKeyPkcs1, outputDirectory: out }),
      /already exist.*--force/,
      "existing resources are not replaced silently",
    );
    importAwsCertificates({ caPath: ca, certificatePath: rsaCertificate, keyPath: rsaKeyPkcs1, outputDirectory: out, force: true });
  });

  test("refuses an EC key with a clear message, from the command line too", async () => {
    assert.throws(
      () => importAwsCertificates({ caPath: ca, certificatePath: ecCertificate, keyPath: ecKey, outputDirectory: join(scratch, "ec") }),
      (error: unknown) => error instanceof ImportError && /EC key.*RSA client keys only.*create-certificate-from-csr/.test(error.message),
    );
    const cli = run(process.execPath, ["--import", "tsx", join(TOOLS, "import-aws.ts"), "--ca", ca, "--cert", ecCertificate, "--key", ecKey, "--out", join(scratch, "ec")]);
    await assert.rejects(cli, (error: { code?: number; stderr?: string }) => error.code === 1 && /import-aws: the private key is an EC key/.test(error.stderr ?? ""));
  });

  test("refuses a key that does not belong to the certificate", () => {
    assert.throws(
      () => importAwsCertificates({ caPath: ca, certificatePath: ecCertificate, keyPath: rsaKeyPkcs1, outputDirectory: join(scratch, "mismatch") }),
      /does not belong to the device certificate/,
    );
  });
});

describe("npm start", () => {
  test("against the embedded broker, the demo commands go to the app's own command topic, topicPrefix and clientId included", { timeout: 60_000 }, async () => {
    const certificates = join(scratch, "start-certs");
    const { stdout } = await run(process.execPath, ["--import", "tsx", join(TOOLS, "start.ts"), "--run-for", "7", "--quiet", "--certs", certificates], {
      env: { ...process.env, IOTLINK_CONFIG_topicPrefix: "acme", IOTLINK_CONFIG_clientId: "meter-9" },
      timeout: 50_000,
    });
    assert.match(stdout, /broker publishes "ping" to acme\/meter-9\/cmd/);
    assert.match(stdout, /iotlink command name=ping/);
    assert.match(stdout, /iotlink command name=status/);
    assert.match(stdout, /iotlink done sent=\d+/);
  });
});
