// `npm start -- --websocket` as a user runs it: the app (main.ts, transport=websocket) through the
// AWS IoT-like WSS gateway (SigV4 with credentials made for the run) to the embedded broker, online
// with its telemetry acknowledged; the credentials never printed, not even a user's own that npm
// start replaces; and the app's refusals of missing or bad credentials, in one line that shows no secret.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { ensureDevPki } from "../../tools/certs.ts";
import { runScript } from "./command-line.ts";

const USER_SECRET = "userSecret/NeverPrinted+1234567890abcdef";
const USER_TOKEN = "userToken/NeverPrinted+FwoGZXIvYXdzEXAMPLE";

let scratch: string;
let pki: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-start-websocket-"));
  pki = ensureDevPki({ directory: join(scratch, "certs") }).directory;
});
after(() => rmSync(scratch, { recursive: true, force: true }));

async function closedPort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await new Promise((listening) => server.once("listening", listening));
  const port = (server.address() as AddressInfo).port;
  await new Promise((closed) => server.close(closed));
  return port;
}

describe("npm start -- --websocket", () => {
  test("--help says it", async () => {
    const result = await runScript("start", ["--help"]);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /--websocket\s+MQTT over WebSocket with SigV4/);
    assert.match(result.stdout, /WSS gateway/);
  });

  test("a short run comes online over WebSocket through the WSS gateway and gets its telemetry acknowledged; no credential is printed", { timeout: 60_000 }, async () => {
    const result = await runScript("start", ["--websocket", "--run-for", "4", "--certs", pki], {
      env: { IOTLINK_CONFIG_telemetryIntervalMs: "500", IOTLINK_CONFIG_secretAccessKey: USER_SECRET, IOTLINK_CONFIG_sessionToken: USER_TOKEN },
      timeoutMs: 50_000,
    });
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.equal(result.stderr, "");
    const output = result.stdout;
    const port = /WSS gateway \(AWS IoT-like, SigV4\) listening on wss:\/\/localhost:(\d+)\/mqtt, bridged to the embedded broker/.exec(output)?.[1];
    assert.ok(port, output);
    assert.match(output, new RegExp(`^iotlink start client=iotlink-device endpoint=localhost:${port} transport=websocket tls=true mutual=false `, "m"));
    // The gateway checked the signature and bridged the connection; the app came online through it.
    assert.match(output, /^\[desktop\] wss-gateway: accepted 127\.0\.0\.1:\d+ \(key id ASIA[A-Z0-9]{16}\), bridged to mqtts:\/\/127\.0\.0\.1:\d+$/m);
    assert.doesNotMatch(output, /wss-gateway: refused/);
    assert.match(output, new RegExp(`^iotlink online endpoint=localhost:${port} session=false$`, "m"));
    assert.match(output, /^iotlink restored queue=0$/m);
    const telemetry = output.split("\n").filter((line) => /^iotlink telemetry seq=\d+ result=sent$/.test(line));
    assert.ok(telemetry.length >= 3, `telemetry sent over WebSocket (${telemetry.length} lines)`);
    const done = /^iotlink done sent=(\d+) acked=(\d+) queue=0$/m.exec(output);
    assert.ok(done, output);
    assert.equal(done[1], done[2], "every message acknowledged");
    assert.ok(Number(done[1]) >= telemetry.length);
    // The app's DISCONNECT and close frame, or the broker's close after the DISCONNECT: whichever the gateway sees first.
    assert.match(output, /^\[desktop\] wss-gateway: closed 127\.0\.0\.1:\d+: (the client closed the WebSocket \(1000\)|the broker ended the connection)$/m);
    // The user's own credentials are replaced without a word of their value; none is printed.
    assert.ok(output.includes("[desktop] IOTLINK_CONFIG_secretAccessKey is replaced (credentials made for this run)"), output);
    assert.ok(output.includes("[desktop] IOTLINK_CONFIG_sessionToken is replaced (credentials made for this run)"));
    assert.ok(!output.includes(USER_SECRET) && !output.includes(USER_TOKEN));
    assert.doesNotMatch(output, /X-Amz-Signature|X-Amz-Security-Token|secretAccessKey=|sessionToken=/);
  });

  test("--websocket --endpoint without credentials, or with a bad secret: the app's one line, exit 2, no secret in it", { timeout: 60_000 }, async () => {
    const port = String(await closedPort());
    const missing = await runScript("start", ["--websocket", "--endpoint", "127.0.0.1", "--port", port, "--certs", pki, "--run-for", "1"], { timeoutMs: 30_000 });
    assert.equal(missing.code, 2, missing.stderr);
    assert.deepEqual(missing.stderr.split("\n").filter(Boolean), [
      "IOTLINK_CONFIG_transport=websocket: config transport=websocket needs accessKeyId and secretAccessKey (and sessionToken for temporary credentials)",
    ]);
    const bad = await runScript("start", ["--websocket", "--endpoint", "127.0.0.1", "--port", port, "--certs", pki, "--run-for", "1"], {
      env: { IOTLINK_CONFIG_accessKeyId: "AKIAIOSFODNN7EXAMPLE", IOTLINK_CONFIG_secretAccessKey: "bad secret with spaces", IOTLINK_CONFIG_region: "eu-west-1" },
      timeoutMs: 30_000,
    });
    assert.equal(bad.code, 2, bad.stderr);
    assert.deepEqual(bad.stderr.split("\n").filter(Boolean), [
      "IOTLINK_CONFIG_transport=websocket: config transport=websocket: the secret access key must be 1 to 256 printable ASCII characters without spaces",
    ]);
    assert.ok(!(bad.stdout + bad.stderr).includes("bad secret"));
    const region = await runScript("start", ["--websocket", "--endpoint", "127.0.0.1", "--port", port, "--certs", pki, "--run-for", "1"], {
      env: { IOTLINK_CONFIG_accessKeyId: "AKIAIOSFODNN7EXAMPLE", IOTLINK_CONFIG_secretAccessKey: USER_SECRET },
      timeoutMs: 30_000,
    });
    assert.equal(region.code, 2, region.stderr);
    assert.deepEqual(region.stderr.split("\n").filter(Boolean), [
      'config region must be set: no region given, and the host "127.0.0.1" is not an AWS IoT endpoint <id>-ats.iot.<region>.amazonaws.com',
    ]);
    assert.ok(!(region.stdout + region.stderr).includes(USER_SECRET));
  });
});
