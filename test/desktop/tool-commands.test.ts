// The other commands as a user runs them: --help on stdout with exit 0 (soak used to start a soak,
// fuzz printed its usage as an error), a bad option as one line with exit 2, and a missing
// prerequisite (openssl, Mosquitto) as one line with exit 1.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runScript, type CommandResult } from "./command-line.ts";

let scratch: string;
/** A PATH with Node alone on it: no openssl, no mosquitto. */
let nodeOnly: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-tool-commands-"));
  nodeOnly = join(scratch, "bin");
  mkdirSync(nodeOnly);
  symlinkSync(process.execPath, join(nodeOnly, "node"));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

function assertOneLine(result: CommandResult, code: number, line: string): void {
  assert.equal(result.timedOut, false, "it exits by itself");
  assert.deepEqual(result.errorLines, [line]);
  assert.equal(result.code, code);
}

async function assertHelp(script: string, usage: RegExp): Promise<void> {
  const result = await runScript(script, ["--help"]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, usage);
  assert.equal(result.stderr, "");
}

describe("--help on every command: the usage on stdout, exit 0", () => {
  for (const [script, usage] of [
    ["certs", /^usage: npm run certs -- \[--force\]/],
    ["soak", /^usage: npm run soak -- \[--minutes 1\]/],
    ["fuzz", /^usage: npm run fuzz -- \[--runs 100000\]/],
    ["monitor", /^usage: npm run monitor -- --port <path> --baud <rate>/],
    ["bench", /^usage: npm run bench -- \[--only xs,memory,throughput,recovery,size\]/],
    ["test:xs", /^usage: npm run test:xs \[-- path\/a\.suite\.ts \.\.\.\]/],
  ] as const) {
    test(`npm run ${script} -- --help`, () => assertHelp(script, usage));
  }
});

describe("a bad option: one line naming it, exit 2", () => {
  test("npm run certs", async () => {
    assertOneLine(await runScript("certs", ["--foce"]), 2, "certs: unknown option --foce (see npm run certs -- --help)");
    assertOneLine(await runScript("certs", ["--device-id", "a thing"]), 2, 'certs: --device-id takes letters, digits and . _ : -, got "a thing"');
  });

  test("npm run soak: never starts a soak on a bad option", async () => {
    assertOneLine(await runScript("soak", ["--minutes", "-1"]), 2, 'soak: --minutes must be a number above 0, got "-1"');
    assertOneLine(await runScript("soak", ["--minute", "1"]), 2, "soak: unknown option --minute (see npm run soak -- --help)");
    assertOneLine(await runScript("soak", ["--seed", "x"]), 2, 'soak: --seed must be a whole number, got "x"');
  });

  test("npm run bench", async () => {
    assertOneLine(await runScript("bench", ["--only", "speed"]), 2, 'bench: --only: unknown section "speed"; the sections are xs, memory, throughput, recovery, size');
    assertOneLine(await runScript("bench", ["--runs", "0"]), 2, 'bench: --runs must be a whole number of at least 1, got "0"');
    assertOneLine(await runScript("bench", ["--run", "3"]), 2, "bench: unknown option --run (see npm run bench -- --help)");
  });

  test("npm run test:xs: a suite file that is not there, an option it does not take", async () => {
    assertOneLine(await runScript("test:xs", ["test/core/no-such.suite.ts"]), 2, "test:xs: no such suite file test/core/no-such.suite.ts (see npm run test:xs -- --help)");
    assertOneLine(await runScript("test:xs", ["--only", "ring"]), 2, "test:xs: unknown option --only (see npm run test:xs -- --help)");
  });

  test("npm run fuzz", async () => {
    assertOneLine(await runScript("fuzz", ["--runs", "0"]), 2, 'fuzz: --runs must be a whole number above 0, got "0"');
    assertOneLine(await runScript("fuzz", ["--only", "everything"]), 2, 'fuzz: --only takes session or api, got "everything"');
    assertOneLine(await runScript("fuzz", ["--bogus"]), 2, "fuzz: unknown option --bogus (see npm run fuzz -- --help)");
  });
});

describe("a missing prerequisite: one line saying how to install it, exit 1", () => {
  test("npm run certs and npm start without openssl", async () => {
    const env = { PATH: nodeOnly };
    assertOneLine(await runScript("certs", ["--dir", join(scratch, "certs")], { env }), 1, "certs: the openssl command is needed (Debian: apt-get install openssl)");
    assertOneLine(await runScript("start", ["--certs", join(scratch, "start-certs")], { env }), 1, "start: the openssl command is needed (Debian: apt-get install openssl)");
  });

  test("npm run soak without Mosquitto", async () => {
    const result = await runScript("soak", ["--minutes", "0.1"], { env: { PATH: nodeOnly, IOTLINK_MOSQUITTO: join(scratch, "no-mosquitto") } });
    assert.equal(result.code, 1);
    assert.equal(result.errorLines.length, 1, result.stderr);
    assert.match(result.errorLines[0]!, /^soak: Mosquitto is not installed .*apt-get install mosquitto/);
    assert.equal(result.stdout, "", "no soak started");
  });
});

test("npm run fuzz, a small run: its table and exit 0", { timeout: 30_000 }, async () => {
  const result = await runScript("fuzz", ["--runs", "20", "--batch", "10"], { timeoutMs: 25_000 });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /^\| session \| 20 \| 2 \|/m);
  assert.match(result.stdout, /^fuzz: no failures$/m);
});
