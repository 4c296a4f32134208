// Certificates and keys for the desktop tests, made with tools/certs.ts in a temporary directory:
// the development PKI plus the wrong inputs the negative tests need. Each test file runs in its own
// process and builds its own set; `removeFixtures` deletes it.
import { mkdtempSync, readFileSync, rmSync, mkdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before } from "node:test";
import { startBroker, type RunningBroker } from "../../tools/broker.ts";
import { DEV_PKI_FILES, ensureDevPki, issueCertificate, pemCertificateToDer, pemKeyToPkcs1Der, pemKeyToPkcs8Der, runOpenssl, type Issuer } from "../../tools/certs.ts";

export interface Fixtures {
  readonly root: string;
  /** The development PKI (what `npm run certs` makes). */
  readonly pki: string;
  readonly caDer: Buffer;
  readonly caPem: Buffer;
  readonly deviceCertificateDer: Buffer;
  readonly deviceKeyDer: Buffer;
  readonly deviceCertificatePem: Buffer;
  readonly deviceKeyPem: Buffer;
  /** A CA that signed nothing the broker uses. */
  readonly otherCaDer: Buffer;
  readonly otherCaPem: Buffer;
  /** A client certificate and key signed by the other CA: unknown to the broker. */
  readonly foreignDeviceCertificateDer: Buffer;
  readonly foreignDeviceKeyDer: Buffer;
  /** An EC P-256 device key (PKCS#8 DER) with a certificate from the development CA. */
  readonly ecDeviceCertificateDer: Buffer;
  readonly ecDeviceKeyDer: Buffer;
  /** The development device key as PKCS#1 DER. */
  readonly pkcs1DeviceKeyDer: Buffer;
  /** The development device key as encrypted PKCS#8 DER. */
  readonly encryptedDeviceKeyDer: Buffer;
  /** A CA certificate whose validity ended in 2020. */
  readonly expiredCaDer: Buffer;
  /** Broker chains (PEM, leaf first) and key. */
  readonly brokerKeyPem: Buffer;
  readonly brokerLeafOnlyPem: Buffer;
  readonly expiredBrokerChainPem: Buffer;
  readonly expiredBrokerKeyPem: Buffer;
}

export function createFixtures(): Fixtures {
  const root = mkdtempSync(join(tmpdir(), "iotlink-desktop-test-"));
  const pki = join(root, "pki");
  ensureDevPki({ directory: pki });
  const work = join(root, "work");
  mkdirSync(work);
  const at = (name: string): string => join(work, name);
  const fromPki = (name: string): Buffer => readFileSync(join(pki, name));
  const devCa: Issuer = { certificatePem: join(pki, DEV_PKI_FILES.caCertificatePem), keyPem: join(pki, DEV_PKI_FILES.caKeyPem) };

  const otherCa: Issuer = { certificatePem: at("other-ca.pem"), keyPem: at("other-ca-key.pem") };
  issueCertificate({ ...otherCa, commonName: "Some Other CA", profile: "ca" });
  issueCertificate({ certificatePem: at("foreign-device.pem"), keyPem: at("foreign-device-key.pem"), commonName: "stranger", profile: "client", issuer: otherCa });

  issueCertificate({ certificatePem: at("ec-device.pem"), keyPem: at("ec-device-key.pem"), keyType: "ec", commonName: "ec-device", profile: "client", issuer: devCa });

  const past = { notBefore: new Date("2020-01-01T00:00:00Z"), notAfter: new Date("2020-02-01T00:00:00Z") };
  issueCertificate({ certificatePem: at("expired-ca.pem"), keyPem: at("expired-ca-key.pem"), commonName: "Expired CA", profile: "ca", validity: past });
  issueCertificate({
    certificatePem: at("expired-broker.pem"),
    keyPem: at("expired-broker-key.pem"),
    commonName: "localhost",
    profile: "server",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    issuer: devCa,
    validity: past,
  });
  writeFileSync(at("expired-broker-chain.pem"), Buffer.concat([readFileSync(at("expired-broker.pem")), fromPki(DEV_PKI_FILES.caCertificatePem)]));

  runOpenssl(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:secret", "-in", join(pki, DEV_PKI_FILES.deviceKeyPem), "-outform", "DER", "-out", at("encrypted-device-key.der")]);

  const der = (pem: string, name: string): Buffer => readFileSync(pemCertificateToDer(at(pem), at(name)));
  return {
    root,
    pki,
    caDer: fromPki(DEV_PKI_FILES.caCertificateDer),
    caPem: fromPki(DEV_PKI_FILES.caCertificatePem),
    deviceCertificateDer: fromPki(DEV_PKI_FILES.deviceCertificateDer),
    deviceKeyDer: fromPki(DEV_PKI_FILES.deviceKeyDer),
    deviceCertificatePem: fromPki(DEV_PKI_FILES.deviceCertificatePem),
    deviceKeyPem: fromPki(DEV_PKI_FILES.deviceKeyPem),
    otherCaDer: der("other-ca.pem", "other-ca.der"),
    otherCaPem: readFileSync(at("other-ca.pem")),
    foreignDeviceCertificateDer: der("foreign-device.pem", "foreign-device.der"),
    foreignDeviceKeyDer: readFileSync(pemKeyToPkcs8Der(at("foreign-device-key.pem"), at("foreign-device-key.der"))),
    ecDeviceCertificateDer: der("ec-device.pem", "ec-device.der"),
    ecDeviceKeyDer: readFileSync(pemKeyToPkcs8Der(at("ec-device-key.pem"), at("ec-device-key.der"))),
    pkcs1DeviceKeyDer: readFileSync(pemKeyToPkcs1Der(join(pki, DEV_PKI_FILES.deviceKeyPem), at("pkcs1-device-key.der"))),
    encryptedDeviceKeyDer: readFileSync(at("encrypted-device-key.der")),
    expiredCaDer: der("expired-ca.pem", "expired-ca.der"),
    brokerKeyPem: fromPki(DEV_PKI_FILES.brokerKeyPem),
    brokerLeafOnlyPem: fromPki(DEV_PKI_FILES.brokerCertificatePem),
    expiredBrokerChainPem: readFileSync(at("expired-broker-chain.pem")),
    expiredBrokerKeyPem: readFileSync(at("expired-broker-key.pem")),
  };
}

export function removeFixtures(fixtures: Fixtures): void {
  rmSync(fixtures.root, { recursive: true, force: true });
}

export interface BrokerSetup {
  readonly fixtures: Fixtures;
  /** The embedded mutual-TLS broker on the development PKI. */
  readonly broker: RunningBroker;
  /** A scratch directory for bundles and files of the test file (inside the fixtures' root). */
  readonly work: string;
}

/**
 * Fixtures, an embedded broker on them and a scratch directory, made before the test file's tests
 * and removed after them. Read the fields inside tests: they are set once `before` has run.
 */
export function useBrokerSetup(): BrokerSetup {
  const setup = {} as { fixtures: Fixtures; broker: RunningBroker; work: string };
  before(async () => {
    setup.fixtures = createFixtures();
    setup.broker = await startBroker({ certificateDirectory: setup.fixtures.pki });
    setup.work = join(setup.fixtures.root, "scratch");
    mkdirSync(setup.work);
  });
  after(async () => {
    await setup.broker?.stop();
    if (setup.fixtures) removeFixtures(setup.fixtures);
  });
  return setup;
}

/** An ArrayBuffer copy, the form device code hands to SecureSocket. */
export function arrayBufferOf(bytes: Buffer): ArrayBuffer {
  return new Uint8Array(bytes).buffer;
}
