// `npm start -- --provision` and `--persist` as a user runs them: the app provisions itself by claim
// through the emulator at the first run (a claim certificate made in --certs) and goes on as its
// thing; the second run uses the identity it kept in the desktop's flash (IOTLINK_FLASH) without
// provisioning again; --persist keeps the queue there too; and the flags npm start cannot honour.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ensureDevPki } from "../../tools/certs.ts";
import { runScript } from "./command-line.ts";

let scratch: string;
let pki: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-start-storage-"));
  pki = ensureDevPki({ directory: join(scratch, "certs") }).directory;
});
after(() => rmSync(scratch, { recursive: true, force: true }));

describe("npm start -- --provision --persist", () => {
  test("the first run provisions and goes on as its thing; the second uses the identity kept in flash", { timeout: 90_000 }, async () => {
    const flash = join(scratch, "flash");
    const env = { IOTLINK_FLASH: flash };
    const first = await runScript("start", ["--provision", "--persist", "--run-for", "4", "--quiet", "--certs", pki], { env, timeoutMs: 40_000 });
    assert.equal(first.code, 0, first.stderr);
    assert.ok(existsSync(join(pki, "claim-cert.der")) && existsSync(join(pki, "claim-key.der")), "the claim certificate is made in --certs");
    assert.ok(existsSync(join(flash, "iotlinkq.bin")) && existsSync(join(flash, "iotlinkid.bin")), "the partitions are files in IOTLINK_FLASH");
    assert.match(first.stdout, /^iotlink provision step=done thing=iotlink-fleet-0001 /m);
    assert.match(first.stdout, /^iotlink start client=iotlink-fleet-0001 /m);
    assert.match(first.stdout, /^iotlink done sent=(\d+) acked=\1 queue=0$/m);
    assert.doesNotMatch(first.stdout, /PRIVATE KEY|certificateOwnershipToken/);

    const second = await runScript("start", ["--provision", "--persist", "--run-for", "3", "--quiet", "--certs", pki], { env, timeoutMs: 40_000 });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /^iotlink identity thing=iotlink-fleet-0001 from=storage$/m);
    assert.doesNotMatch(second.stdout, /^iotlink provision /m);
    assert.match(second.stdout, /^iotlink online /m);
  });

  test("--provision with --endpoint or --websocket: one line, exit 2", async () => {
    const withEndpoint = await runScript("start", ["--provision", "--endpoint", "example.com", "--certs", pki]);
    assert.equal(withEndpoint.code, 2);
    assert.match(withEndpoint.stderr, /^start: --provision runs against the embedded broker/);
    const withWebsocket = await runScript("start", ["--provision", "--websocket", "--certs", pki]);
    assert.equal(withWebsocket.code, 2);
    assert.match(withWebsocket.stderr, /^start: --provision needs mutual TLS/);
  });
});
