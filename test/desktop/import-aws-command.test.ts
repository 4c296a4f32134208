// `npm run import-aws` as a user runs it: --help, an encrypted key refused with the openssl command
// that decrypts it (and that command works), a device certificate given as --ca refused, and the
// AWS credentials written apart from the development PKI (certs-aws/ by default).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DEV_PKI_FILES, ensureDevPki, generateKey, issueCertificate, runOpenssl } from "../../tools/certs.ts";
import { decryptCommand } from "../../tools/import-aws.ts";
import { runScript, type CommandResult } from "./command-line.ts";

let scratch: string;
let ca: string;
let certificate: string;
let key: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-import-aws-command-"));
  ca = join(scratch, "AmazonRootCA1.pem");
  const caKey = join(scratch, "root-key.pem");
  issueCertificate({ certificatePem: ca, keyPem: caKey, commonName: "Stand-in Root CA 1", profile: "ca" });
  key = generateKey(join(scratch, "abc-private.pem.key"));
  certificate = issueCertificate({ certificatePem: join(scratch, "abc-certificate.pem.crt"), keyPem: key, commonName: "my-thing", profile: "client", issuer: { certificatePem: ca, keyPem: caKey } });
});
after(() => rmSync(scratch, { recursive: true, force: true }));

function assertOneLine(result: CommandResult, code: number, line: string | RegExp): void {
  assert.equal(result.timedOut, false);
  assert.equal(result.errorLines.length, 1, result.stderr);
  if (typeof line === "string") assert.equal(result.errorLines[0], line);
  else assert.match(result.errorLines[0]!, line);
  assert.equal(result.code, code);
}

describe("npm run import-aws", () => {
  test("--help prints the usage on stdout and exits 0; a missing file option is a usage error", async () => {
    const help = await runScript("import-aws", ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^usage: npm run import-aws -- --ca AmazonRootCA1\.pem/);
    assert.match(help.stdout, /--out DIR +where the resources go \(default certs-aws/);
    assertOneLine(await runScript("import-aws", ["--ca", ca]), 2, /^import-aws: --cert, --key are needed: npm run import-aws -- --ca /);
  });

  test("an encrypted key, PKCS#8 or legacy PEM: refused as encrypted with the openssl command, which then works", async () => {
    const pkcs8 = join(scratch, "encrypted-pkcs8.pem");
    runOpenssl(["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-passout", "pass:secret", "-in", key, "-out", pkcs8]);
    const legacy = join(scratch, "encrypted-legacy.pem");
    runOpenssl(["rsa", "-in", key, "-traditional", "-aes256", "-passout", "pass:secret", "-out", legacy]);
    assert.match(readFileSync(legacy, "utf8"), /Proc-Type: 4,ENCRYPTED/);
    for (const encrypted of [pkcs8, legacy]) {
      const result = await runScript("import-aws", ["--ca", ca, "--cert", certificate, "--key", encrypted, "--out", join(scratch, "never")]);
      assertOneLine(
        result,
        1,
        `import-aws: the private key ${encrypted} is encrypted: decrypt it with openssl pkcs8 -topk8 -nocrypt -in ${encrypted} -out private-plain.pem (it asks for the pass phrase), then give --key private-plain.pem`,
      );
      assert.equal(existsSync(join(scratch, "never")), false, "nothing written");
      // The command as given, with the pass phrase from an option instead of the prompt.
      const words = decryptCommand(encrypted).split(" ");
      execFileSync(words[0]!, [...words.slice(1), "-passin", "pass:secret"], { cwd: scratch, stdio: "ignore" });
      const plain = await runScript("import-aws", ["--ca", ca, "--cert", certificate, "--key", join(scratch, "private-plain.pem"), "--out", join(scratch, "decrypted"), "--force"]);
      assert.equal(plain.code, 0, plain.stderr);
    }
  });

  test("a device certificate given as --ca is refused, and so is a CA given as --cert", async () => {
    assertOneLine(
      await runScript("import-aws", ["--ca", certificate, "--cert", certificate, "--key", key, "--out", join(scratch, "never")]),
      1,
      `import-aws: --ca ${certificate} is not a CA certificate (no basicConstraints CA:TRUE; it is "my-thing", a device or server certificate): give Amazon Root CA 1, AmazonRootCA1.pem`,
    );
    assertOneLine(
      await runScript("import-aws", ["--ca", certificate, "--cert", ca, "--key", key, "--out", join(scratch, "never")]),
      1,
      /^import-aws: --ca .* is not a CA certificate .*and --cert is a CA: are the two swapped\?\): give Amazon Root CA 1/,
    );
  });

  test("by default the credentials go to certs-aws, apart from the development PKI, and npm start is told how to use them", async () => {
    const project = mkdtempSync(join(scratch, "project-"));
    ensureDevPki({ directory: join(project, "certs") });
    const developmentCa = readFileSync(join(project, "certs", DEV_PKI_FILES.caCertificateDer));
    const result = await runScript("import-aws", ["--ca", ca, "--cert", certificate, "--key", key], { cwd: project });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
    assert.match(result.stdout, /Imported into .*certs-aws: ca\.der, device-cert\.der, device-key\.der/);
    assert.match(result.stdout, /npm start -- --endpoint xxx-ats\.iot\.REGION\.amazonaws\.com --certs certs-aws --client-id THING/);
    assert.ok(existsSync(join(project, "certs-aws", DEV_PKI_FILES.deviceKeyDer)));
    assert.deepEqual(readFileSync(join(project, "certs", DEV_PKI_FILES.caCertificateDer)), developmentCa, "the development PKI is untouched");
  });

  test("imported over the development PKI on purpose (--out certs --force), the mix is said", async () => {
    const certs = join(scratch, "dev-certs");
    ensureDevPki({ directory: certs });
    const result = await runScript("import-aws", ["--ca", ca, "--cert", certificate, "--key", key, "--out", certs, "--force"]);
    assert.equal(result.code, 0);
    assert.deepEqual(result.errorLines, [
      `import-aws: note: ${certs} also holds the development PKI, which npm start's embedded broker now refuses; npm run certs -- --force --dir ${certs} makes it anew (and replaces these three files)`,
    ]);
  });
});
