// `MODDABLE=<sdk> npm run device-memory`: the device app's memory in the Moddable simulator, beside
// the SDK's own examples/network/aws/mqtt-aws, both run the same way.
//
// Builds each app instrumented for the Linux simulator (`mcconfig -i -m -p lin`) in a scratch copy,
// runs it in mcsim under Xvfb against a local mutual-TLS Mosquitto with a PKI of its own, and drives
// the README's scenario: online, a `ping` answered, a desired setting and a job from the AWS IoT
// emulator applied (IoTLink), the broker stopped 12 s (backoff, queueing),
// restarted (reconnect, drain, restored). mcsim prints the SDK's instruments once a second (chunk
// and slot heap used and allocated, stack peak, collections); a small probe added to each scratch
// copy forces a collection every 4 s and prints what is then live. Prints ONE table.
//
// Nothing of the SDK is copied into this repository: the example is copied into a scratch directory
// at run time, with its endpoint, port and resource files filled in. The scratch directory, the
// builds in $MODDABLE/build, mcsim, Xvfb and Mosquitto are removed or stopped at the end.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import mqtt from "mqtt";
import { startAwsEmulator, type RunningAwsEmulator } from "./aws-emulator.ts";
import { DEV_PKI_FILES, ensureDevPki } from "./certs.ts";
import { CommandError, helpIfAsked, readCommandLine, runCommand, UsageError, wholeNumber } from "./cli.ts";
import { findMosquitto, MOSQUITTO_MISSING, startMosquitto, type RunningMosquitto } from "./mosquitto.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export const DEVICE_MEMORY_USAGE = `usage: MODDABLE=<sdk> npm run device-memory -- [--outage 12] [--chunk B] [--heap SLOTS] [--stack SLOTS] [--keep] [--json out.json]

Builds the device app and the SDK's examples/network/aws/mqtt-aws instrumented for the Linux
simulator, runs each in mcsim (under Xvfb) against a local mutual-TLS Mosquitto, and prints their
memory side by side: live chunks and slots, the arenas, the stack peak and the collections.
Scenario: online, a ping answered (IoTLink), the broker stopped for --outage seconds, restarted.

  --outage S      seconds the broker stays down (default 12)
  --chunk B       run the app in a fixed chunk heap of B bytes instead of its manifest's creation
  --heap SLOTS    ... a fixed slot heap of SLOTS slots
  --stack SLOTS   ... a stack of SLOTS slots (the example keeps the SDK's defaults)
  --cloud         build the app with shadow=true jobs=true; after the ping the AWS IoT emulator
                  sets a desired interval and queues a job, and both are awaited
  --keep          keep the scratch directory (builds' sources, logs) and say where
  --json FILE     also write the figures as JSON
  --help          this text

Needs: MODDABLE set to a Moddable SDK whose Linux tools are built (mcconfig, mcsim), Linux,
Xvfb, Mosquitto, openssl, and TypeScript 6 or later (node_modules/.bin/tsc). About 3 minutes.
Exit codes: 0 done, 2 for a bad option or MODDABLE not set, 1 when a build or a run fails.`;

/** The esp32 platform's default stack (mcconfig's creation.stack): the percentage is of this. */
const ESP32_STACK_SLOTS = 384;
/** XS slot on the 64-bit simulator; 16 B on the 32-bit ESP32. Slot counts carry over, bytes do not. */
const SIM_SLOT_BYTES = 32;
const PROBE_FIRST_MS = 4000;
const PROBE_EVERY_MS = 4000;
const BUILD_TIMEOUT_MS = 300_000;

/** The probe each scratch copy gets: a forced collection every few seconds, then what is live. */
const PROBE_SOURCE = `// Added by IoTLink's tools/device-memory.ts to a scratch copy: not part of either app.
import Timer from "timer";
import Instrumentation from "instrumentation";
import Debug from "debug";
export default function start(first, every) {
	const chunk = Instrumentation.map("XS Chunk Heap Used");
	const slot = Instrumentation.map("XS Slot Heap Used");
	let forced = 0;
	Timer.set(() => {
		Debug.gc();
		forced++;
		trace("devmem live chunk=" + Instrumentation.get(chunk) + " slot=" + Instrumentation.get(slot) + " forced=" + forced + "\\n");
	}, first, every);
}
`;
const PROBE_MODULE = "devmem-probe";

type Phase = "start" | "connect" | "online" | "ping" | "outage" | "reconnect" | "restored";

interface Sample {
  values: Record<string, number>;
  phases: Phase[];
  /** When it arrived, in ms after mcsim was started. */
  at: number;
}

export interface AppFigures {
  app: string;
  ok: boolean;
  problems: string[];
  /** After a forced collection: the last probe before the outage, the last after it (if reconnected), the largest. */
  liveChunkBytes: { online: number; end: number | undefined; peak: number } | undefined;
  liveSlots: { online: number; end: number | undefined; peak: number } | undefined;
  chunkArena: { initial: number; final: number };
  slotArena: { initial: number; final: number };
  usedPeak: { chunkBytes: number; slots: number };
  stackPeak: { slots: number; phase: Phase; percentOf384: number; atPing: number | undefined };
  stackAvailableSlots: number;
  collections: { firstSecond: number; handshake: number; reconnect: number | undefined; total: number; forcedByProbe: number };
  keysUsed: number;
  modulesLoaded: number;
  memoryError: string | undefined;
  scenario: string[];
}

export interface DeviceMemoryResult {
  date: string;
  sdk: string;
  mosquitto: string;
  outageSeconds: number;
  apps: AppFigures[];
}

// ------------------------------------------------------------------ processes

/** Every child this tool starts, stopped on exit whatever happens. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`device-memory: stopped by ${signal}\n`);
    process.exit(1);
  });
}

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}

function say(line: string): void {
  process.stderr.write(`device-memory: ${line}\n`);
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

/** Runs a build step; its output goes to `logFile`; fails with the log's last lines. */
async function runLogged(command: string, args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; logFile: string; timeoutMs: number }): Promise<void> {
  const child = track(spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] }));
  let output = "";
  child.stdout?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs);
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  clearTimeout(timer);
  writeFileSync(options.logFile, output);
  if (code !== 0) {
    const tail = output.trim().split("\n").slice(-12).join("\n");
    throw new CommandError(`${command} ${args.join(" ")} failed (${signal ?? `exit ${code}`}) in ${options.cwd}; log ${options.logFile}:\n${tail}`);
  }
}

/** Xvfb on a display it picks itself (-displayfd): no guessing which display is free. */
async function startXvfb(): Promise<{ display: string; child: ChildProcess }> {
  const child = track(spawn("Xvfb", ["-displayfd", "3", "-nolisten", "tcp"], { stdio: ["ignore", "ignore", "pipe", "pipe"] }));
  let errors = "";
  child.stderr?.on("data", (chunk: Buffer) => (errors += chunk.toString()));
  const fd = child.stdio[3] as NodeJS.ReadableStream;
  const display = await new Promise<string>((done, fail) => {
    let text = "";
    const timer = setTimeout(() => fail(new CommandError(`Xvfb did not start in 10 s: ${errors.trim().split("\n").pop() ?? ""}`)), 10_000);
    fd.on("data", (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes("\n")) {
        clearTimeout(timer);
        done(":" + text.trim());
      }
    });
    child.once("error", (error) => fail(new CommandError(`cannot run Xvfb (apt-get install xvfb): ${error.message}`)));
    child.once("exit", (code) => fail(new CommandError(`Xvfb exited (${code}): ${errors.trim().split("\n").pop() ?? ""}`)));
  });
  return { display, child };
}

// ------------------------------------------------------------------ staging and builds

interface Sdk {
  path: string;
  bin: string;
  commit: string;
}

function checkSdk(): Sdk {
  const path = process.env.MODDABLE;
  if (!path) {
    throw new UsageError("MODDABLE is not set: set it to a Moddable SDK whose Linux tools are built, e.g. MODDABLE=$HOME/moddable npm run device-memory (the SDK is not an npm package; see docs/device-app.md, \"The Moddable simulator\")");
  }
  const bin = join(path, "build/bin/lin/release");
  for (const tool of ["mcconfig", "mcsim", "xsc", "xsl"]) {
    if (!existsSync(join(bin, tool))) throw new UsageError(`MODDABLE=${path}: no ${tool} in ${bin}; build the SDK's Linux tools (cd $MODDABLE/build/makefiles/lin && make)`);
  }
  if (!existsSync(join(path, "examples/network/aws/mqtt-aws/main.js"))) throw new UsageError(`MODDABLE=${path}: no examples/network/aws/mqtt-aws in this SDK`);
  const git = spawnSync("git", ["-C", path, "log", "-1", "--format=%h %s (%cs)"], { encoding: "utf8" });
  const commit = git.status === 0 ? git.stdout.trim() : "unknown commit (not a git checkout)";
  return { path, bin, commit };
}

function checkMachine(): void {
  if (process.platform !== "linux") throw new CommandError("the Linux simulator (mcsim for lin) runs on Linux only");
  if (!findMosquitto()) throw new CommandError(MOSQUITTO_MISSING);
  if (spawnSync("Xvfb", ["-help"], { stdio: "ignore" }).error) throw new CommandError("Xvfb is not installed: apt-get install xvfb");
  if (!existsSync(join(root, "node_modules/.bin/tsc"))) throw new CommandError("no node_modules/.bin/tsc: run npm install (mcconfig needs TypeScript 6 or later for main.ts)");
}

function buildEnvironment(sdk: Sdk): NodeJS.ProcessEnv {
  // TypeScript 6 from node_modules first: mcconfig runs `tsc` from PATH.
  return { ...process.env, MODDABLE: sdk.path, PATH: [join(root, "node_modules/.bin"), process.env.PATH ?? "", sdk.bin].join(":") };
}

function addProbe(manifest: Record<string, unknown>): void {
  const modules = (manifest.modules ?? {}) as Record<string, unknown>;
  modules[PROBE_MODULE] = "./" + PROBE_MODULE;
  manifest.modules = modules;
  // Preloaded, as the app's own modules are: the probe costs RAM only for its timer.
  const preload = Array.isArray(manifest.preload) ? manifest.preload : manifest.preload ? [manifest.preload] : [];
  manifest.preload = [...preload, PROBE_MODULE];
  const include = Array.isArray(manifest.include) ? manifest.include : manifest.include ? [manifest.include] : [];
  manifest.include = [...include, "$(MODDABLE)/modules/base/debug/manifest.json", "$(MODDABLE)/modules/base/instrumentation/manifest.json"];
}

interface Staged {
  name: string;
  directory: string;
  mcso: string;
  buildTmp: string;
}

function stagedPaths(sdk: Sdk, directory: string, name: string): Staged {
  return { name, directory, mcso: join(sdk.path, "build/bin/lin/mc/instrument", name, "mc.so"), buildTmp: join(sdk.path, "build/tmp/lin/mc/instrument", name) };
}

/** The app as it is in this working tree, with the scratch PKI as its resources and the probe. */
/** Overrides of the app's creation (--chunk, --heap, --stack): fixed arenas of these sizes. */
export interface CreationOverride {
  chunk?: number;
  heap?: number;
  stack?: number;
}

function stageIotlink(sdk: Sdk, work: string, pki: string, override: CreationOverride): Staged {
  const name = "iotlink-device-memory";
  const directory = join(work, name);
  mkdirSync(directory);
  for (const file of readdirSync(root).filter((file) => file === "main.ts" || /^manifest.*\.json$/.test(file))) copyFileSync(join(root, file), join(directory, file));
  cpSync(join(root, "modules"), join(directory, "modules"), { recursive: true });
  cpSync(join(root, "app"), join(directory, "app"), { recursive: true });
  mkdirSync(join(directory, "hosts"));
  cpSync(join(root, "hosts/moddable"), join(directory, "hosts/moddable"), { recursive: true });
  symlinkSync(join(root, "node_modules"), join(directory, "node_modules"));
  mkdirSync(join(directory, "certs"));
  for (const file of [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceCertificateDer, DEV_PKI_FILES.deviceKeyDer]) copyFileSync(join(pki, file), join(directory, "certs", file));
  const manifest = JSON.parse(readFileSync(join(directory, "manifest.json"), "utf8")) as Record<string, unknown>;
  addProbe(manifest);
  const creation = (manifest.creation ?? {}) as Record<string, unknown>;
  if (override.chunk !== undefined) creation.chunk = { initial: override.chunk, incremental: 0 };
  if (override.heap !== undefined) creation.heap = { initial: override.heap, incremental: 0 };
  if (override.stack !== undefined) creation.stack = override.stack;
  if (Object.keys(creation).length > 0) manifest.creation = { static: 0, ...creation };
  writeFileSync(join(directory, "manifest.json"), JSON.stringify(manifest, null, "\t"));
  writeFileSync(join(directory, PROBE_MODULE + ".js"), PROBE_SOURCE);
  const main = readFileSync(join(directory, "main.ts"), "utf8");
  writeFileSync(join(directory, "main.ts"), `// @ts-ignore: the device-memory probe (plain JavaScript, no types)\nimport startProbe from "${PROBE_MODULE}";\nstartProbe(${PROBE_FIRST_MS}, ${PROBE_EVERY_MS});\n${main}`);
  return stagedPaths(sdk, directory, name);
}

/**
 * The SDK's mqtt-aws example, copied: its endpoint and port are constants in main.js (there is no
 * config for them), its resources are the names the manifest lists, and a default Mosquitto needs
 * tls.DHE_RSA false (Moddable's TLS cannot do mutual TLS with a DHE cipher).
 */
function stageMqttAws(sdk: Sdk, work: string, pki: string, port: number): Staged {
  const name = "mqtt-aws-device-memory";
  const directory = join(work, name);
  const example = join(sdk.path, "examples/network/aws/mqtt-aws");
  mkdirSync(directory);
  const manifest = JSON.parse(readFileSync(join(example, "manifest.json"), "utf8")) as Record<string, unknown>;
  const resources = ((manifest.resources as Record<string, string[]> | undefined)?.["*"] ?? []).map((path) => path.replace(/^\.\//, ""));
  const files: Record<string, string> = { "CA1-key": DEV_PKI_FILES.caCertificateDer, device: DEV_PKI_FILES.deviceCertificateDer, "private-key": DEV_PKI_FILES.deviceKeyDer };
  for (const resource of resources) {
    const source = files[resource];
    if (!source) throw new CommandError(`the SDK's mqtt-aws example lists a resource this tool does not know: ${resource}`);
    copyFileSync(join(pki, source), join(directory, resource + ".der"));
  }
  manifest.config = { ...((manifest.config as object | undefined) ?? {}), tls: { DHE_RSA: false } };
  addProbe(manifest);
  writeFileSync(join(directory, "manifest.json"), JSON.stringify(manifest, null, "\t"));
  writeFileSync(join(directory, PROBE_MODULE + ".js"), PROBE_SOURCE);
  let main = readFileSync(join(example, "main.js"), "utf8");
  const edits: [RegExp, string][] = [
    [/const awsEndpoint = "<replace>";/, 'const awsEndpoint = "localhost";'],
    [/\bport: 443,/, `port: ${port},`],
  ];
  for (const [pattern, replacement] of edits) {
    if (!pattern.test(main)) throw new CommandError(`the SDK's mqtt-aws example changed: no ${pattern} in its main.js to point it at the local broker`);
    main = main.replace(pattern, replacement);
  }
  writeFileSync(join(directory, "main.js"), `import startProbe from "${PROBE_MODULE}";\nstartProbe(${PROBE_FIRST_MS}, ${PROBE_EVERY_MS});\n${main}`);
  return stagedPaths(sdk, directory, name);
}

async function build(sdk: Sdk, staged: Staged, args: string[], logs: string): Promise<void> {
  rmSync(staged.buildTmp, { recursive: true, force: true });
  rmSync(dirname(staged.mcso), { recursive: true, force: true });
  say(`building ${staged.name} (mcconfig -i -m -p lin ${args.join(" ")})`);
  await runLogged("mcconfig", ["-i", "-m", "-p", "lin", ...args], { cwd: staged.directory, env: buildEnvironment(sdk), logFile: join(logs, staged.name + "-build.log"), timeoutMs: BUILD_TIMEOUT_MS });
  if (!existsSync(staged.mcso)) throw new CommandError(`mcconfig built no ${staged.mcso}`);
}

// ------------------------------------------------------------------ running one app

/** mcsim's output, line by line, with waits for a line and the instrument samples. */
class Simulator {
  readonly lines: string[] = [];
  readonly samples: Sample[] = [];
  private keys: string[] = [];
  private waiters = new Set<() => void>();
  private phase: Phase = "start";
  private touched = new Set<Phase>(["start"]);
  private child: ChildProcess | undefined;
  private startedAt = 0;
  exited = false;

  start(sdk: Sdk, mcso: string, display: string, limitSeconds: number, logFile: string, configHome: string): void {
    // timeout(1) stops mcsim even if this process dies; stdbuf keeps its output line-buffered (it is lost otherwise when piped).
    // mcsim copies mc.so to $XDG_CONFIG_HOME/tech.moddable.mcsim/mc.so and loads that copy: a directory of this run's own
    // keeps another mcsim (of this tool or not) from overwriting it while it runs.
    mkdirSync(configHome, { recursive: true });
    this.startedAt = Date.now();
    const child = track(spawn("timeout", ["-k", "5", String(limitSeconds), "stdbuf", "-oL", join(sdk.bin, "mcsim"), mcso], { env: { ...process.env, DISPLAY: display, XDG_CONFIG_HOME: configHome }, stdio: ["ignore", "pipe", "pipe"] }));
    this.child = child;
    let partial = "";
    const onData = (chunk: Buffer): void => {
      const parts = (partial + chunk.toString()).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) this.add(line);
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", () => {
      if (partial) this.add(partial);
      this.exited = true;
      writeFileSync(logFile, this.lines.join("\n") + "\n");
      this.wake();
    });
  }

  setPhase(phase: Phase): void {
    this.phase = phase;
    this.touched.add(phase);
  }

  private add(line: string): void {
    this.lines.push(line);
    if (line.startsWith("instruments key: ")) this.keys = line.slice("instruments key: ".length).split(",");
    else if (line.startsWith("instruments: ")) {
      const numbers = line.slice("instruments: ".length).split(",").map(Number);
      const values: Record<string, number> = {};
      this.keys.forEach((key, index) => (values[key] = numbers[index] ?? 0));
      // A sample covers the second before it: every phase seen during that second.
      this.samples.push({ values, phases: [...this.touched], at: Date.now() - this.startedAt });
      this.touched = new Set([this.phase]);
    }
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  count(pattern: RegExp): number {
    return this.lines.filter((line) => pattern.test(line)).length;
  }

  /** The first line matching `pattern` among lines from index `from` on. */
  waitFor(pattern: Matcher, timeoutMs: number, from = 0, what = String(pattern)): Promise<string> {
    return new Promise((done, fail) => {
      const check = (): void => {
        const found = this.lines.slice(from).find((line) => pattern.test(line));
        if (found !== undefined) {
          finish();
          done(found);
        } else if (this.lines.some((line) => ABORT.test(line))) {
          finish();
          fail(new CommandError(`XS ended before ${what}: ${this.lines.filter((line) => ABORT.test(line) || MEMORY_ERROR.test(line)).join("; ")}`));
        } else if (this.exited) {
          finish();
          fail(new CommandError(`mcsim ended before ${what}; last lines:\n${this.lines.slice(-8).join("\n")}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        fail(new CommandError(`no ${what} within ${timeoutMs / 1000} s; last lines:\n${this.lines.slice(-8).join("\n")}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Waits until `n` more samples have arrived (one a second), the simulator ended, or n + 3 seconds. */
  async nextSamples(n: number): Promise<void> {
    const target = this.samples.length + n;
    const deadline = Date.now() + (n + 3) * 1000;
    while (this.samples.length < target && !this.exited && Date.now() < deadline) await sleep(100);
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
  }
}

/** A RegExp, or any test of a line. */
interface Matcher {
  test(line: string): boolean;
}

/** What XS prints when an arena is full (no growth allowed) or the stack overflows. */
const MEMORY_ERROR = /memory full|not enough memory|stack overflow|failed in fixed size heap/i;
/** Any other end of the machine. */
const ABORT = /XS abort|Segmentation fault/;

interface Driver {
  /** The app's line when it is online the first time. */
  online: RegExp;
  /** Optionally ready to be measured (e.g. its subscription acknowledged). */
  ready?: RegExp;
  ping?: { command: string; reply: string };
  /** The app's line when online again after the outage; none for an app that does not reconnect. */
  restored?: RegExp;
  /** Once restored: the scenario is done when this matches (e.g. a status with sent == acked, queue 0). */
  settled?: (line: string) => boolean;
  /** What the app does when the broker goes away, if it does not reconnect: said under the table. */
  atOutage?: string;
  /** The app's thing: after the ping, the AWS IoT emulator sets a desired interval in its shadow and queues a job, and the app's lines for both are awaited. */
  cloud?: { thing: string; applied: RegExp; jobReported: RegExp };
}

async function pingOnce(broker: RunningMosquitto, pki: string, topics: { command: string; reply: string }): Promise<string> {
  const client = mqtt.connect(`mqtts://127.0.0.1:${broker.port}`, {
    clientId: "device-memory-checker",
    ca: readFileSync(join(pki, DEV_PKI_FILES.caCertificatePem)),
    cert: readFileSync(join(pki, DEV_PKI_FILES.deviceCertificatePem)),
    key: readFileSync(join(pki, DEV_PKI_FILES.deviceKeyPem)),
    servername: "localhost",
    reconnectPeriod: 0,
    connectTimeout: 5000,
  });
  client.on("error", () => undefined);
  try {
    await Promise.race([new Promise((done) => client.once("connect", done)), sleep(6000).then(() => Promise.reject(new CommandError("the checker could not connect to Mosquitto")))]);
    await client.subscribeAsync(topics.reply, { qos: 1 });
    const reply = new Promise<string>((done) => client.on("message", (_topic, payload) => done(payload.toString())));
    await client.publishAsync(topics.command, "ping", { qos: 1 });
    return await Promise.race([reply, sleep(8000).then(() => Promise.reject(new CommandError(`no reply on ${topics.reply} within 8 s of the ping`)))]);
  } finally {
    await client.endAsync(true).catch(() => undefined);
  }
}

async function runScenario(sdk: Sdk, staged: Staged, driver: Driver, broker: RunningMosquitto, emulator: RunningAwsEmulator, pki: string, display: string, outageSeconds: number, logs: string): Promise<{ sim: Simulator; scenario: string[]; problems: string[]; mark: { restart: number; pingSample: number | undefined; outageLine: number } }> {
  const sim = new Simulator();
  const scenario: string[] = [];
  const problems: string[] = [];
  const started = Date.now();
  const at = (): string => ((Date.now() - started) / 1000).toFixed(1) + " s";
  const note = (line: string): void => {
    scenario.push(`${at()} ${line}`);
    say(`${staged.name}: ${at()} ${line}`);
  };
  const limitSeconds = 40 + outageSeconds + 45;
  sim.start(sdk, staged.mcso, display, limitSeconds, join(logs, staged.name + "-mcsim.log"), join(dirname(staged.directory), staged.name + "-mcsim-config"));
  let restartSample = 0;
  let pingSample: number | undefined;
  let outageLine = -1;
  try {
    sim.setPhase("connect");
    await sim.waitFor(driver.online, 20_000, 0, "online line");
    note("online");
    sim.setPhase("online");
    if (driver.ready) await sim.waitFor(driver.ready, 10_000, 0, "ready line");
    await sim.nextSamples(2);
    if (driver.ping) {
      await sleep(Math.max(0, 8000 - (Date.now() - started)));
      sim.setPhase("ping");
      const reply = await pingOnce(broker, pki, driver.ping);
      pingSample = sim.samples.length;
      note(`ping answered: ${reply}`);
      await sim.nextSamples(2);
      sim.setPhase("online");
    }
    if (driver.cloud) {
      const from = sim.lines.length;
      emulator.service.updateShadowDocument(driver.cloud.thing, "", { state: { desired: { telemetryIntervalMs: 4000 } } });
      emulator.service.createJob("device-memory-" + Date.now().toString(36), { operation: "report-status" }, [driver.cloud.thing]);
      note(`desired interval applied: ${await sim.waitFor(driver.cloud.applied, 10_000, from, "the desired interval applied")}`);
      note(`job reported: ${await sim.waitFor(driver.cloud.jobReported, 10_000, from, "the job reported")}`);
    }
    await sleep(Math.max(0, 12_000 - (Date.now() - started)));
    note(`broker stopped for ${outageSeconds} s`);
    outageLine = sim.lines.length;
    await broker.kill();
    sim.setPhase("outage");
    await sleep(outageSeconds * 1000);
    await broker.restart();
    note("broker restarted");
    restartSample = sim.samples.length;
    const restartLine = sim.lines.length;
    sim.setPhase("reconnect");
    if (driver.restored) {
      await sim.waitFor(driver.restored, 30_000, restartLine, "reconnection after the outage");
      note("online again");
      sim.setPhase("restored");
      if (driver.settled) {
        const settled = await sim.waitFor({ test: driver.settled }, 25_000, restartLine, "a status with the queue drained and sent == acked");
        note(`drained: ${settled}`);
      }
      await sim.nextSamples(2);
    } else {
      await sim.nextSamples(3);
      const ended = sim.lines.find((line) => ABORT.test(line));
      note(`not reconnected${ended ? ` (${ended})` : ""}${driver.atOutage ? `: ${driver.atOutage}` : ""}`);
    }
    if (driver.restored) {
      // One more probe after the scenario, online again.
      const probes = sim.count(/^devmem live /);
      await sim.waitFor(/^devmem live /, PROBE_EVERY_MS + 3000, sim.lines.length, "a probe line").catch(() => undefined);
      if (sim.count(/^devmem live /) === probes) problems.push("no probe line after the scenario");
    }
  } catch (error) {
    problems.push(error instanceof Error ? error.message : String(error));
  } finally {
    await sim.stop();
  }
  return { sim, scenario, problems, mark: { restart: restartSample, pingSample, outageLine } };
}

function figures(app: string, run: Awaited<ReturnType<typeof runScenario>>, driver: Driver): AppFigures {
  const { sim, scenario, problems } = run;
  const samples = sim.samples;
  const get = (sample: Sample, key: string): number => sample.values[key] ?? 0;
  const max = (key: string): number => Math.max(0, ...samples.map((sample) => get(sample, key)));
  const sum = (list: Sample[], key: string): number => list.reduce((total, sample) => total + get(sample, key), 0);
  // The first sample is printed when the machine is made, before anything runs: the arenas as created.
  const created = samples[0];
  const probes: { line: number; chunk: number; slots: number; forced: number }[] = [];
  sim.lines.forEach((line, index) => {
    const match = /^devmem live chunk=(\d+) slot=(\d+) forced=(\d+)/.exec(line);
    if (match) probes.push({ line: index, chunk: Number(match[1]), slots: Number(match[2]) / SIM_SLOT_BYTES, forced: Number(match[3]) });
  });
  const beforeOutage = probes.filter((probe) => run.mark.outageLine < 0 || probe.line < run.mark.outageLine);
  const online = beforeOutage[beforeOutage.length - 1];
  const end = driver.restored ? probes[probes.length - 1] : undefined;
  const forced = probes.length;

  // Collections from the start up to the sample that follows the first online line (the probe's first runs later).
  const onlineIndex = sim.lines.findIndex((line) => driver.online.test(line));
  let handshake = 0;
  let seen = 0;
  for (let i = 0; i < sim.lines.length; i++) {
    const line = sim.lines[i]!;
    if (line.startsWith("devmem live ") && (onlineIndex < 0 || i < onlineIndex)) handshake--;
    if (!line.startsWith("instruments: ")) continue;
    const sample = samples[seen++];
    if (sample) handshake += get(sample, "Garbage collections");
    if (onlineIndex >= 0 && i > onlineIndex) break;
  }
  // The sampler runs when the machine is made and then once a second.
  const firstSecond = created ? sum(samples.filter((sample) => sample.at <= created.at + 1500), "Garbage collections") : 0;
  const reconnectSamples = samples.filter((sample) => sample.phases.includes("reconnect"));
  const reconnected = driver.restored !== undefined && sim.lines.filter((line) => driver.online.test(line)).length > 1;
  let stackPeak = 0;
  let stackPhase: Phase = "start";
  for (const sample of samples) {
    const used = get(sample, "Stack used");
    if (used > stackPeak) {
      stackPeak = used;
      stackPhase = sample.phases.find((phase) => phase !== "online") ?? sample.phases[0] ?? "start";
    }
  }
  const pingSamples = samples.filter((sample) => sample.phases.includes("ping"));
  const memoryError = sim.lines.find((line) => MEMORY_ERROR.test(line));
  const allProblems = [...problems];
  if (memoryError) allProblems.unshift(`memory error: ${memoryError}`);
  const abort = sim.lines.find((line) => ABORT.test(line));
  // An app that does not reconnect may end at the outage; anything else is a failure.
  const abortLine = abort ? sim.lines.indexOf(abort) : -1;
  if (abort && !memoryError && (driver.restored || run.mark.outageLine < 0 || abortLine < run.mark.outageLine)) allProblems.push(`ended: ${abort}`);
  const probeFigures = (pick: (probe: (typeof probes)[number]) => number) => (online ? { online: pick(online), end: end ? pick(end) : undefined, peak: Math.max(...probes.map(pick)) } : undefined);
  return {
    app,
    ok: allProblems.length === 0,
    problems: allProblems,
    liveChunkBytes: probeFigures((probe) => probe.chunk),
    liveSlots: probeFigures((probe) => probe.slots),
    chunkArena: { initial: created ? get(created, "Chunk available") : 0, final: max("Chunk available") },
    slotArena: { initial: created ? get(created, "Slot available") / SIM_SLOT_BYTES : 0, final: max("Slot available") / SIM_SLOT_BYTES },
    usedPeak: { chunkBytes: max("Chunk used"), slots: max("Slot used") / SIM_SLOT_BYTES },
    stackPeak: {
      slots: stackPeak / SIM_SLOT_BYTES,
      phase: stackPhase,
      percentOf384: (100 * stackPeak) / SIM_SLOT_BYTES / ESP32_STACK_SLOTS,
      atPing: pingSamples.length ? Math.max(...pingSamples.map((sample) => get(sample, "Stack used"))) / SIM_SLOT_BYTES : undefined,
    },
    stackAvailableSlots: max("Stack available") / SIM_SLOT_BYTES,
    collections: { firstSecond, handshake, reconnect: reconnected ? sum(reconnectSamples, "Garbage collections") : undefined, total: sum(samples, "Garbage collections") - forced, forcedByProbe: forced },
    keysUsed: max("Keys used"),
    modulesLoaded: max("Modules loaded"),
    memoryError,
    scenario,
  };
}

// ------------------------------------------------------------------ the table

const n = (value: number): string => Math.round(value).toLocaleString("en-US");

function arena(initial: number, final: number, unit: string): string {
  return final > initial ? `${n(initial)} → ${n(final)} ${unit} (grew)` : `${n(initial)} ${unit}, no growth`;
}

function live(figure: { online: number; end: number | undefined; peak: number } | undefined): string {
  if (!figure) return "—";
  return `${n(figure.online)} / ${figure.end === undefined ? "—" : n(figure.end)} / ${n(figure.peak)}`;
}

export function formatTable(result: DeviceMemoryResult): string {
  const [iot, aws] = result.apps as [AppFigures, AppFigures];
  const rows: [string, (figures: AppFigures) => string][] = [
    ["live chunks after a collection, online: before the outage / after it / peak (B)", (f) => live(f.liveChunkBytes)],
    ["live slots after a collection, online: before the outage / after it / peak", (f) => live(f.liveSlots)],
    ["chunk heap used at a sample, peak (B)", (f) => n(f.usedPeak.chunkBytes)],
    ["slot heap used at a sample, peak (slots)", (f) => n(f.usedPeak.slots)],
    ["chunk heap size (arena)", (f) => arena(f.chunkArena.initial, f.chunkArena.final, "B")],
    ["slot heap size (arena)", (f) => arena(f.slotArena.initial, f.slotArena.final, "slots")],
    ["stack peak, slots (% of 384)", (f) => `${n(f.stackPeak.slots)} (${f.stackPeak.percentOf384.toFixed(0)} %) at ${f.stackPeak.phase}`],
    ["stack peak at the ping, slots", (f) => (f.stackPeak.atPing === undefined ? "—" : n(f.stackPeak.atPing))],
    ["stack size, slots", (f) => n(f.stackAvailableSlots)],
    ["collections, first second (module load, TLS handshake)", (f) => n(f.collections.firstSecond)],
    ["collections, start to online (to the sample after it)", (f) => n(f.collections.handshake)],
    ["collections, reconnection after the outage", (f) => (f.collections.reconnect === undefined ? "— (does not reconnect)" : n(f.collections.reconnect))],
    ["collections, whole run (the probe's excluded)", (f) => `${n(f.collections.total)} (+${f.collections.forcedByProbe} forced)`],
    ["modules loaded in RAM / keys used", (f) => `${f.modulesLoaded} / ${f.keysUsed}`],
    ["memory errors (arena full, stack overflow)", (f) => (f.memoryError ? f.memoryError : "none")],
  ];
  const lines = [
    `Moddable SDK ${result.sdk}, Linux simulator (64-bit: a slot is ${SIM_SLOT_BYTES} B here, 16 B on an ESP32), mcconfig -i; ${result.mosquitto}; ${result.date}`,
    `Scenario: online, ping (IoTLink), broker stopped ${result.outageSeconds} s, restarted. Live figures: a probe forces a collection every ${PROBE_EVERY_MS / 1000} s.`,
    "",
    `| | ${iot.app} | ${aws.app} |`,
    "|---|---|---|",
    ...rows.map(([label, cell]) => `| ${label} | ${cell(iot)} | ${cell(aws)} |`),
  ];
  for (const figures of result.apps) {
    if (figures.problems.length > 0) lines.push("", `${figures.app}: ${figures.problems.join("; ")}`);
  }
  return lines.join("\n") + "\n";
}

// ------------------------------------------------------------------ main

const IOTLINK_DRIVER: Driver = {
  online: /^iotlink online /,
  ready: /^iotlink subscribe .*status=acknowledged/,
  ping: { command: "iotlink/iotlink-device/cmd", reply: "iotlink/iotlink-device/reply" },
  restored: /^iotlink restored /,
  settled: (line) => {
    const match = /^iotlink status state=online queue=0 inflight=0 .*sent=(\d+) acked=(\d+)/.exec(line);
    return match !== null && match[1] === match[2];
  },
};

/** With --cloud: the app built with shadow=true jobs=true, and a desired change and a job from the emulator after the ping. */
const IOTLINK_CLOUD_DRIVER: Driver = {
  ...IOTLINK_DRIVER,
  cloud: { thing: "iotlink-device", applied: /^iotlink setting name=telemetryIntervalMs value=4000 /, jobReported: /^iotlink job event=reported / },
};

const MQTT_AWS_DRIVER: Driver = {
  // The example traces nothing when it connects: its first message back (it subscribes to what it publishes) is the sign.
  online: /^received "moddable\/with\/aws\//,
  atOutage: "the example does not reconnect; its next publish throws and XS aborts",
};

function overrideLabel(override: CreationOverride): string {
  const parts = [override.chunk !== undefined ? `chunk ${n(override.chunk)} B` : "", override.heap !== undefined ? `heap ${n(override.heap)} slots` : "", override.stack !== undefined ? `stack ${override.stack} slots` : ""].filter(Boolean);
  return parts.length ? `, ${parts.join(", ")} (not its manifest's)` : "";
}

export async function measureDeviceMemory(options: { outageSeconds: number; keep: boolean; creation?: CreationOverride; cloud?: boolean }): Promise<DeviceMemoryResult> {
  const sdk = checkSdk();
  checkMachine();
  const work = mkdtempSync(join(tmpdir(), "iotlink-device-memory-"));
  const logs = join(work, "logs");
  mkdirSync(logs);
  let broker: RunningMosquitto | undefined;
  let emulator: RunningAwsEmulator | undefined;
  let xvfb: ChildProcess | undefined;
  const staged: Staged[] = [];
  let failed = false;
  try {
    const pki = join(work, "pki");
    ensureDevPki({ directory: pki });
    broker = await startMosquitto({
      tls: { caFile: join(pki, DEV_PKI_FILES.caCertificatePem), certFile: join(pki, DEV_PKI_FILES.brokerChainPem), keyFile: join(pki, DEV_PKI_FILES.brokerKeyPem) },
      logTypes: ["error", "warning", "notice"],
    });
    const version = spawnSync(findMosquitto() ?? "mosquitto", ["-h"], { encoding: "utf8" });
    const mosquitto = /mosquitto version (\S+)/.exec(version.stdout + version.stderr)?.[0] ?? "Mosquitto";
    say(`Mosquitto on 127.0.0.1:${broker.port}, scratch ${work}`);
    // The Device Shadow and Jobs the app uses, beside the broker (it reconnects after the outage by itself).
    emulator = await startAwsEmulator({
      url: `mqtts://localhost:${broker.port}`,
      mqtt: { ca: readFileSync(join(pki, DEV_PKI_FILES.caCertificatePem)), cert: readFileSync(join(pki, DEV_PKI_FILES.deviceCertificatePem)), key: readFileSync(join(pki, DEV_PKI_FILES.deviceKeyPem)), rejectUnauthorized: true },
    });
    const iotlink = stageIotlink(sdk, work, pki, options.creation ?? {});
    const example = stageMqttAws(sdk, work, pki, broker.port);
    staged.push(iotlink, example);
    await build(sdk, iotlink, ["endpoint=localhost", `port=${broker.port}`, ...(options.cloud ? ["shadow=true", "jobs=true"] : [])], logs);
    await build(sdk, example, [], logs);
    const started = await startXvfb();
    xvfb = started.child;
    const apps: AppFigures[] = [];
    for (const [stage, driver, label] of [
      [iotlink, options.cloud ? IOTLINK_CLOUD_DRIVER : IOTLINK_DRIVER, "IoTLink app (main.ts)" + (options.cloud ? " with shadow=true jobs=true" : "") + overrideLabel(options.creation ?? {})],
      [example, MQTT_AWS_DRIVER, "SDK examples/network/aws/mqtt-aws"],
    ] as const) {
      const run = await runScenario(sdk, stage, driver, broker, emulator, pki, started.display, options.outageSeconds, logs);
      if (!broker.running) await broker.restart();
      const result = figures(label, run, driver);
      if (!result.ok) failed = true;
      apps.push(result);
    }
    return { date: new Date().toISOString().slice(0, 10), sdk: sdk.commit, mosquitto, outageSeconds: options.outageSeconds, apps };
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    await stopChild(xvfb);
    await emulator?.stop().catch(() => undefined);
    await broker?.stop().catch(() => undefined);
    for (const stage of staged) {
      rmSync(stage.buildTmp, { recursive: true, force: true });
      rmSync(dirname(stage.mcso), { recursive: true, force: true });
    }
    if (options.keep || failed) say(`logs and sources kept in ${work}`);
    else rmSync(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const values = readCommandLine({ outage: { type: "string" }, chunk: { type: "string" }, heap: { type: "string" }, stack: { type: "string" }, cloud: { type: "boolean" }, keep: { type: "boolean" }, json: { type: "string" } });
  helpIfAsked(values, DEVICE_MEMORY_USAGE);
  const outageSeconds = values.outage === undefined ? 12 : wholeNumber(values.outage, "--outage", 1, 120);
  if (values.json === "") throw new UsageError("--json needs a file name");
  const creation: CreationOverride = {
    chunk: values.chunk === undefined ? undefined : wholeNumber(values.chunk, "--chunk", 4096, 16_777_216),
    heap: values.heap === undefined ? undefined : wholeNumber(values.heap, "--heap", 256, 1_048_576),
    stack: values.stack === undefined ? undefined : wholeNumber(values.stack, "--stack", 128, 65_536),
  };
  const result = await measureDeviceMemory({ outageSeconds, keep: values.keep === true, creation, cloud: values.cloud === true });
  process.stdout.write(formatTable(result));
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2) + "\n");
  if (result.apps.some((app) => !app.ok)) throw new CommandError("a run did not complete: see the lines under the table");
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void runCommand("device-memory", main);
}
