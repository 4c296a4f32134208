// `npm start` as a user runs it: --help, and every flag or IOTLINK_* setting it refuses as ONE line
// naming it as the user wrote it (exit 2), a broker that cannot start (exit 1), settings it replaces
// said, and a --run-for run that never came online said and failed. No stack trace anywhere.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { DEV_PKI_FILES, ensureDevPki } from "../../tools/certs.ts";
import { ROOT, runScript, type CommandResult } from "./command-line.ts";

let scratch: string;
let pki: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-start-command-"));
  pki = ensureDevPki({ directory: join(scratch, "certs") }).directory;
});
after(() => rmSync(scratch, { recursive: true, force: true }));

async function busyPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await new Promise((listening) => server.once("listening", listening));
  return { port: (server.address() as AddressInfo).port, server };
}

function assertOneLine(result: CommandResult, code: number, line: string | RegExp): void {
  assert.equal(result.timedOut, false, "it exits by itself");
  assert.equal(result.errorLines.length, 1, "one line on stderr: " + result.stderr);
  if (typeof line === "string") assert.equal(result.errorLines[0], line);
  else assert.match(result.errorLines[0]!, line);
  assert.doesNotMatch(result.stderr + result.stdout, /^\s+at |node:internal/m, "no stack trace");
  assert.equal(result.code, code, result.stderr);
}

describe("npm start: the command line", () => {
  test("--help prints the usage on stdout and exits 0", async () => {
    const result = await runScript("start", ["--help"]);
    assert.equal(result.code, 0);
    assert.match(result.stdout, /^usage: npm start -- /);
    assert.match(result.stdout, /--run-for S/);
    assert.match(result.stdout, /IOTLINK_CONFIG_<name>=value/);
    assert.equal(result.stderr, "");
  });

  test("an unknown flag, a flag without its value", async () => {
    assertOneLine(await runScript("start", ["--run-fro", "5"]), 2, "start: unknown option --run-fro (see npm start -- --help)");
    assertOneLine(await runScript("start", ["--run-for"]), 2, "start: --run-for needs a value (see npm start -- --help)");
    assertOneLine(await runScript("start", ["extra"]), 2, "start: unexpected argument extra (see npm start -- --help)");
  });

  test("a bad --run-for, --port or --endpoint, and the same from the environment, named as written", async () => {
    assertOneLine(await runScript("start", ["--run-for", "-5"]), 2, 'start: --run-for must be a number of seconds above 0, got "-5"');
    assertOneLine(await runScript("start", ["--run-for", "soon"]), 2, 'start: --run-for must be a number of seconds above 0, got "soon"');
    assertOneLine(await runScript("start", [], { env: { IOTLINK_RUN_FOR: "0" } }), 2, 'start: IOTLINK_RUN_FOR must be a number of seconds above 0, got "0"');
    assertOneLine(await runScript("start", ["--port", "abc"]), 2, 'start: --port must be a whole number from 0 to 65535, got "abc"');
    assertOneLine(await runScript("start", [], { env: { IOTLINK_PORT: "99999" } }), 2, 'start: IOTLINK_PORT must be a whole number from 0 to 65535, got "99999"');
    assertOneLine(await runScript("start", ["--endpoint", "h", "--port", "0"]), 2, 'start: --port must be a whole number from 1 to 65535, got "0"');
    assertOneLine(
      await runScript("start", ["--endpoint", "mqtts://abc.example.com:8883"]),
      2,
      'start: --endpoint takes a host name or address (no scheme, port or path), got "mqtts://abc.example.com:8883"; the port goes in --port',
    );
  });

  test("a misspelt IOTLINK_CONFIG_ setting is refused by name, with the nearest setting", async () => {
    assertOneLine(
      await runScript("start", [], { env: { IOTLINK_CONFIG_nosuchsetting: "1" } }),
      2,
      "start: IOTLINK_CONFIG_nosuchsetting is not a setting of the app (the settings are the config keys of manifest.json, listed in docs/device-app.md)",
    );
    assertOneLine(
      await runScript("start", [], { env: { IOTLINK_CONFIG_telemetryIntervallMs: "1000" } }),
      2,
      "start: IOTLINK_CONFIG_telemetryIntervallMs is not a setting of the app (did you mean IOTLINK_CONFIG_telemetryIntervalMs?)",
    );
    assertOneLine(await runScript("start", [], { env: { IOTLINK_CONFIG_clientid: "x" } }), 2, /did you mean IOTLINK_CONFIG_clientId\?/);
  });

  test("--endpoint with a certificates folder that is missing or incomplete: one line, before the app starts", async () => {
    const missing = join(scratch, "nowhere");
    assertOneLine(
      await runScript("start", ["--endpoint", "localhost", "--certs", missing]),
      2,
      `start: --certs ${missing}: no such folder (npm run import-aws makes one from AWS IoT downloads, npm run certs the development PKI)`,
    );
    const partial = join(scratch, "partial");
    mkdirSync(partial);
    copyFileSync(join(pki, DEV_PKI_FILES.caCertificateDer), join(partial, DEV_PKI_FILES.caCertificateDer));
    assertOneLine(
      await runScript("start", ["--endpoint", "localhost"], { env: { IOTLINK_CERTS: partial } }),
      2,
      `start: IOTLINK_CERTS ${partial} has no device-cert.der, device-key.der (the device's resources: npm run import-aws -- ... --out ${partial} makes them)`,
    );
  });
});

describe("npm start: the embedded broker and the app", () => {
  test("a busy port: one line, exit 1", async () => {
    const { port, server } = await busyPort();
    try {
      assertOneLine(await runScript("start", ["--port", String(port), "--certs", pki]), 1, `start: port ${port} is in use on 127.0.0.1 (another broker? pick another with --port)`);
    } finally {
      server.close();
    }
  });

  test("every kind of invalid IOTLINK_CONFIG_ value: one line naming the setting as written, exit 2", { timeout: 60_000 }, async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ IOTLINK_CONFIG_inflightWindow: "500" }, "IOTLINK_CONFIG_inflightWindow=500: config inflightWindow must be a whole number from 1 to 100, got 500"],
      [{ IOTLINK_CONFIG_keepAliveSeconds: "0x10" }, "IOTLINK_CONFIG_keepAliveSeconds=0x10: config keepAliveSeconds must be a whole number from 0 to 65535, got 0x10"],
      [{ IOTLINK_CONFIG_backoffJitter: "yes" }, "IOTLINK_CONFIG_backoffJitter=yes: config backoffJitter must be true or false, got yes"],
      [{ IOTLINK_CONFIG_dropPolicy: "newst" }, "IOTLINK_CONFIG_dropPolicy=newst: config dropPolicy must be one of oldest, newest, got newst"],
      [{ IOTLINK_CONFIG_mutualTls: "false", IOTLINK_CONFIG_keyResource: "k.der" }, "IOTLINK_CONFIG_mutualTls=false: config mutualTls=false takes no certificateResource or keyResource"],
      [{ IOTLINK_CONFIG_provision: "my fleet" }, "IOTLINK_CONFIG_provision=my fleet: config provision must be a template name of 1 to 36 of A-Z a-z 0-9 _ -, got my fleet"],
    ];
    for (const [env, line] of cases) {
      const result = await runScript("start", ["--certs", pki, "--quiet"], { env, timeoutMs: 30_000 });
      assertOneLine(result, 2, line);
    }
  });

  test("--run-for against a broker that refuses: the run says it never came online, exit 1", { timeout: 30_000 }, async () => {
    const { port, server } = await busyPort();
    server.close(); // a port nothing listens on: connection refused
    await new Promise((closed) => server.once("close", closed));
    const result = await runScript("start", ["--endpoint", "127.0.0.1", "--port", String(port), "--certs", pki, "--run-for", "1.5"], { timeoutMs: 25_000 });
    assertOneLine(result, 1, /^start: the app never came online in 1\.5 s \(last error connect-failed: .+\)$/);
    assert.match(result.stdout, /iotlink done sent=0/);
  });
});

describe("npm start: what the demo shows", () => {
  test("the broker's address once, the replies to ping and status, a desired change and two jobs applied within 15 s, the settings npm start replaces", { timeout: 50_000 }, async () => {
    const result = await runScript("start", ["--run-for", "13", "--certs", pki], { env: { IOTLINK_CONFIG_port: "1884", IOTLINK_CONFIG_endpoint: "broker.example" }, timeoutMs: 45_000 });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stderr, "");
    const lines = result.stdout.split("\n");
    const port = /listening on localhost:(\d+)/.exec(result.stdout)?.[1];
    assert.ok(port, result.stdout);
    assert.equal(lines.filter((line) => line.includes(":" + port) && !line.startsWith("iotlink ")).length, 1, "the broker's address is said once");
    assert.ok(lines.includes(`[desktop] IOTLINK_CONFIG_port=1884 is replaced by ${port} (the embedded broker's port)`), result.stdout);
    assert.ok(lines.includes("[desktop] IOTLINK_CONFIG_endpoint=broker.example is replaced by localhost (npm start runs the app against its embedded broker; give --endpoint HOST for another)"));
    assert.match(result.stdout, /^\[desktop\] device replied on iotlink\/iotlink-device\/reply: \{"command":"ping","uptime":\d+\}$/m);
    assert.match(result.stdout, /^\[desktop\] device replied on iotlink\/iotlink-device\/reply: \{"command":"status","state":"online","queue":0,"sent":\d+\}$/m);
    // The shadow: reported at restore, the desired interval applied and reported, the unknown setting refused.
    assert.match(result.stdout, /^\[desktop\] device reported in its shadow: \{"reported":\{"telemetryIntervalMs":5000,"firmwareVersion":"0\.1\.0","uptimeMs":\d+\}\}$/m);
    assert.match(result.stdout, /^iotlink setting name=telemetryIntervalMs value=2000 from=delta$/m);
    assert.match(result.stdout, /^\[desktop\] device reported in its shadow: \{"reported":\{"telemetryIntervalMs":2000,"rejected":\{"ledColour":"not a setting of this device"\}\}\}$/m);
    // The jobs, each run once and reported.
    assert.match(result.stdout, /^\[desktop\] device reported job demo-report-status SUCCEEDED \{"state":"online",/m);
    assert.match(result.stdout, /^iotlink setting name=telemetryIntervalMs value=3000 from=job$/m);
    assert.match(result.stdout, /^\[desktop\] device reported job demo-set-interval SUCCEEDED \{"telemetryIntervalMs":"3000"\}$/m);
    assert.match(result.stdout, /^iotlink done sent=(\d+) acked=\1 queue=0$/m, "every message acknowledged");
  });
});

describe("npm start | head: the reader goes away", () => {
  test("the app and the broker stop quietly, exit 0, no EPIPE trace", { timeout: 30_000 }, async () => {
    const child = spawn(process.execPath, ["--import", "tsx", join(ROOT, "tools", "start.ts"), "--certs", pki, "--run-for", "20"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    // Read until the app's first line, then close the pipe as head does.
    await new Promise<void>((done) => child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("iotlink start") && done()));
    child.stdout.destroy();
    const deadline = setTimeout(() => child.kill("SIGKILL"), 20_000);
    const [code] = (await once(child, "exit")) as [number | null];
    clearTimeout(deadline);
    assert.equal(code, 0, stderr);
    assert.equal(stderr, "");
  });
});

describe("npm start: the certificates of the embedded broker", () => {
  test("a folder of device credentials only (an AWS import) is never overwritten: one line, exit 2", async () => {
    const aws = join(scratch, "certs-aws");
    mkdirSync(aws);
    for (const name of [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceCertificateDer, DEV_PKI_FILES.deviceKeyDer]) copyFileSync(join(pki, name), join(aws, name));
    assertOneLine(
      await runScript("start", ["--certs", aws]),
      2,
      `start: --certs ${aws} holds device credentials (ca.der, device-cert.der, device-key.der) but not the development PKI: use them against their broker with --endpoint HOST, or give the embedded broker another folder (the default is certs)`,
    );
  });

  test("device credentials imported over the development PKI are found, with the way back: one line, exit 1", async () => {
    const mixed = join(scratch, "mixed");
    const other = join(scratch, "other");
    ensureDevPki({ directory: mixed });
    ensureDevPki({ directory: other });
    for (const name of [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceCertificateDer, DEV_PKI_FILES.deviceKeyDer]) copyFileSync(join(other, name), join(mixed, name));
    assertOneLine(
      await runScript("start", ["--certs", mixed]),
      1,
      `start: ${mixed}/ca.der and device-cert.der are not the development PKI's (imported from AWS IoT?), so the embedded broker would refuse the app: ` +
        `move ca.der, device-cert.der and device-key.der to another folder (e.g. certs-aws, for --endpoint HOST --certs certs-aws), then npm run certs -- --force --dir ${mixed}`,
    );
  });
});
