// `npm run broker` as a user runs it: --help, and every start-up problem (bad or busy port, missing
// certificates, an address not on this machine) as ONE line and a non-zero exit instead of a hang.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ensureDevPki } from "../../tools/certs.ts";
import { runScript } from "./command-line.ts";

let scratch: string;
let pki: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-broker-command-"));
  pki = ensureDevPki({ directory: join(scratch, "certs") }).directory;
});
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A port something already listens on, for as long as the test needs it. */
async function busyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await new Promise((listening) => server.once("listening", listening));
  return { port: (server.address() as AddressInfo).port, server };
}

describe("npm run broker", () => {
  test("--help prints the usage on stdout and exits 0", async () => {
    const result = await runScript("broker", ["--help"]);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^usage: npm run broker -- /);
    assert.match(result.stdout, /--port p/);
    assert.equal(result.stderr, "");
  });

  test("an unknown option: one line naming it, exit 2", async () => {
    const result = await runScript("broker", ["--prot", "8883"]);
    assert.equal(result.code, 2);
    assert.deepEqual(result.errorLines, ["broker: unknown option --prot (see npm run broker -- --help)"]);
  });

  test("a bad port: one line, exit 2", async () => {
    for (const port of ["abc", "70000", "-1"]) {
      const result = await runScript("broker", ["--port", port, "--certs", pki]);
      assert.equal(result.code, 2, port);
      assert.deepEqual(result.errorLines, [`broker: --port must be a whole number from 0 to 65535, got "${port}"`]);
    }
  });

  test("a busy port: one line, exit 1, no hang", async () => {
    const { port, server } = await busyPort();
    try {
      const result = await runScript("broker", ["--port", String(port), "--certs", pki]);
      assert.equal(result.timedOut, false, "it exits by itself");
      assert.equal(result.code, 1);
      assert.deepEqual(result.errorLines, [`broker: port ${port} is in use on 127.0.0.1 (another broker? pick another with --port)`]);
      assert.equal(result.stdout, "");
    } finally {
      server.close();
    }
  });

  test("a missing certificates folder: one line saying how to make it, exit 1", async () => {
    const missing = join(scratch, "no-such-certs");
    const result = await runScript("broker", ["--port", "0", "--certs", missing]);
    assert.equal(result.timedOut, false);
    assert.equal(result.code, 1);
    assert.deepEqual(result.errorLines, [`broker: the certificates folder ${missing} does not exist: make the development PKI with npm run certs -- --dir ${missing}`]);
  });

  test("an address that is not on this machine: one line, exit 1", async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): never a local address. Only a bind is tried; nothing is sent.
    const result = await runScript("broker", ["--host", "192.0.2.1", "--port", "0", "--certs", pki]);
    assert.equal(result.timedOut, false);
    assert.equal(result.code, 1);
    assert.deepEqual(result.errorLines, ["broker: 192.0.2.1 is not an address of this machine (use 127.0.0.1, or one of this machine's LAN addresses)"]);
  });

  test("started, it prints its URL once on stdout, and Ctrl-C (SIGTERM) stops it with exit 0", async () => {
    const result = await runScript("broker", ["--port", "0", "--certs", pki], { onStdout: (all) => all.includes("\n") });
    assert.equal(result.timedOut, false);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^mqtts:\/\/127\.0\.0\.1:\d+\n$/);
    assert.doesNotMatch(result.stderr, /listening/, "the URL is said once, on stdout");
  });
});
