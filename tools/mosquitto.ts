// A real Mosquitto broker for the tests: started on a free loopback port with a generated config
// (mutual TLS with require_certificate and use_identity_as_username, or a plaintext listener),
// logging everything to an in-memory buffer, and stoppable and restartable on the same port.
//
//   const broker = await startMosquitto({ tls: { caFile, certFile, keyFile } });
//   ... broker.port, broker.log(), await broker.waitForLog(/New client connected .* as dev-1/)
//   await broker.kill();      // the broker goes away (SIGTERM: Mosquitto saves its persistence)
//   await broker.restart();   // and comes back on the same port
//   await broker.stop();      // for good: process stopped, its directory removed
//
// Mosquitto is a Debian package (`apt-get install mosquitto`); nothing here downloads anything.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync, mkdirSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join, resolve } from "node:path";

/** What to tell someone whose machine has no Mosquitto. */
export const MOSQUITTO_MISSING =
  "Mosquitto is not installed (no mosquitto on PATH, nor /usr/sbin/mosquitto): install it with `apt-get install mosquitto` (sudo apt-get install -y mosquitto); the broker tests need a real Mosquitto and CI installs it";

const WELL_KNOWN_PATHS = ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/bin/mosquitto"];

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The Mosquitto executable: IOTLINK_MOSQUITTO if set (and only it), else `mosquitto` on PATH (what
 * `which mosquitto` finds), else the places Debian and source installs put it. Undefined if none.
 */
export function findMosquitto(explicit: string | undefined = process.env.IOTLINK_MOSQUITTO): string | undefined {
  if (explicit) return isExecutable(explicit) ? resolve(explicit) : undefined;
  const onPath = (process.env.PATH ?? "").split(delimiter).filter(Boolean).map((directory) => join(directory, "mosquitto"));
  return [...onPath, ...WELL_KNOWN_PATHS].find(isExecutable);
}

/** The Mosquitto executable, or an Error whose message says how to install it. */
export function requireMosquitto(explicit?: string): string {
  const found = findMosquitto(explicit);
  if (!found) throw new Error(MOSQUITTO_MISSING);
  return found;
}

/**
 * The Mosquitto executable, installing Debian's package first when it is missing and this process
 * may (root, with apt-get), as `npm run bench` does on a fresh machine. Undefined if it cannot.
 */
export function ensureMosquitto(say: (line: string) => void = () => {}): string | undefined {
  const found = findMosquitto();
  if (found || typeof process.getuid !== "function" || process.getuid() !== 0 || !isExecutable("/usr/bin/apt-get")) return found;
  say("Mosquitto is missing: installing Debian's mosquitto package with apt-get");
  const environment = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const apt = (...args: string[]): boolean => spawnSync("apt-get", args, { stdio: ["ignore", "ignore", "inherit"], env: environment }).status === 0;
  if (!apt("update", "-qq") || !apt("install", "-y", "-qq", "--no-install-recommends", "mosquitto")) return undefined;
  // The package starts a system broker on the default port; the benchmarks start their own.
  spawnSync("systemctl", ["stop", "mosquitto"], { stdio: "ignore" });
  return findMosquitto();
}

export interface MosquittoTls {
  /** PEM files. `certFile` should hold the chain (leaf first): Moddable's TLS needs it. */
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** Default true: clients must present a certificate signed by `caFile`. */
  readonly requireCertificate?: boolean;
  /** Default true: the certificate's CN becomes the MQTT user name. */
  readonly useIdentityAsUsername?: boolean;
  /** e.g. "tlsv1.2"; default: Mosquitto's (TLS 1.2 and 1.3). */
  readonly tlsVersion?: string;
  /** An OpenSSL cipher list, e.g. "DHE-RSA-AES128-SHA256" to imitate a broker that picks DHE. */
  readonly ciphers?: string;
}

export interface MosquittoOptions {
  /** Mutual TLS listener with these files; without it the listener is plaintext (anonymous allowed). */
  readonly tls?: MosquittoTls;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** 0 or absent: a free port. */
  readonly port?: number;
  /** Keep sessions and queued messages across restarts (saved when the broker is stopped with SIGTERM). */
  readonly persistence?: boolean;
  /** Mosquitto log_type values; default ["all"] (every packet, handy for assertions). "information" is always added: readiness is its "running" line. */
  readonly logTypes?: readonly string[];
  /** More configuration lines, appended after the listener. */
  readonly extraConfig?: readonly string[];
  /** The executable; default findMosquitto(). */
  readonly binary?: string;
  /** How long to wait for the broker to listen. Default 5000 ms. */
  readonly startTimeoutMs?: number;
  /** Receives each log line as it arrives. */
  readonly onLog?: (line: string) => void;
}

export interface RunningMosquitto {
  readonly host: string;
  readonly port: number;
  /** mqtts://host:port or mqtt://host:port. */
  readonly url: string;
  readonly tls: boolean;
  readonly configFile: string;
  /** The broker's process id while it runs. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Every log line since the first start (across restarts), joined with newlines. */
  log(): string;
  lines(): readonly string[];
  /** A position in the log, for `since`. */
  mark(): number;
  /** Log lines after a mark. */
  since(mark: number): readonly string[];
  /** Resolves with the first line (after `fromMark`, default 0) that matches; rejects after the timeout. */
  waitForLog(pattern: RegExp, timeoutMs?: number, fromMark?: number): Promise<string>;
  /** Stops the process (the broker disappears, its port closes); restart() brings it back. */
  kill(signal?: "SIGTERM" | "SIGKILL"): Promise<void>;
  /** Stops the process if it runs, then starts it again on the same port and waits until it listens. */
  restart(): Promise<void>;
  /** Stops for good and removes the broker's directory (config, persistence). */
  stop(): Promise<void>;
}

const MAX_LOG_LINES = 200_000;

/** A port that was free a moment ago on `host`. */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((done) => server.close(() => done()));
  return port;
}

function configText(options: MosquittoOptions, host: string, port: number, directory: string): string {
  const lines = [
    "# Generated by tools/mosquitto.ts for one test broker.",
    "log_dest stderr",
    ...[...new Set([...(options.logTypes ?? ["all"]), "information"])].map((type) => `log_type ${type}`),
    "connection_messages true",
    "per_listener_settings false",
    "set_tcp_nodelay true",
    `allow_anonymous ${options.tls ? "false" : "true"}`,
  ];
  // As root Mosquitto switches to the "mosquitto" user unless told otherwise, and then cannot read
  // a root-owned key or persistence directory.
  if (typeof process.getuid === "function" && process.getuid() === 0) lines.push("user root");
  if (options.persistence) {
    lines.push("persistence true", `persistence_location ${join(directory, "data")}/`, "autosave_interval 1800");
  }
  lines.push(`listener ${port} ${host}`);
  const tls = options.tls;
  if (tls) {
    lines.push(
      `cafile ${resolve(tls.caFile)}`,
      `certfile ${resolve(tls.certFile)}`,
      `keyfile ${resolve(tls.keyFile)}`,
      `require_certificate ${tls.requireCertificate ?? true}`,
      `use_identity_as_username ${tls.useIdentityAsUsername ?? true}`,
    );
    if (tls.tlsVersion) lines.push(`tls_version ${tls.tlsVersion}`);
    if (tls.ciphers) lines.push(`ciphers ${tls.ciphers}`);
  }
  lines.push(...(options.extraConfig ?? []), "");
  return lines.join("\n");
}

// Brokers still running when this process exits are killed with it, so a failed test leaves none behind.
const liveProcesses = new Set<ChildProcess>();
let exitHookInstalled = false;
function trackProcess(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const running of liveProcesses) running.kill("SIGKILL");
    });
  }
  liveProcesses.add(child);
  child.once("exit", () => liveProcesses.delete(child));
}

export async function startMosquitto(options: MosquittoOptions = {}): Promise<RunningMosquitto> {
  const binary = options.binary !== undefined ? requireMosquitto(options.binary) : requireMosquitto();
  const host = options.host ?? "127.0.0.1";
  const startTimeoutMs = options.startTimeoutMs ?? 5000;
  const directory = mkdtempSync(join(tmpdir(), "iotlink-mosquitto-"));
  if (options.persistence) mkdirSync(join(directory, "data"));
  const configFile = join(directory, "mosquitto.conf");
  const logLines: string[] = [];
  let dropped = 0; // lines trimmed from the front of a very long log; marks stay valid
  const waiters = new Set<() => void>();
  let child: ChildProcess | undefined;
  let port = options.port ?? 0;
  let stopped = false;

  const addLine = (line: string): void => {
    logLines.push(line);
    if (logLines.length > MAX_LOG_LINES) {
      logLines.shift();
      dropped++;
    }
    options.onLog?.(line);
    for (const wake of [...waiters]) wake();
  };

  function attachLog(stream: NodeJS.ReadableStream | null): void {
    if (!stream) return;
    let partial = "";
    stream.setEncoding("utf8");
    stream.on("data", (text: string) => {
      const parts = (partial + text).split("\n");
      partial = parts.pop() ?? "";
      for (const part of parts) if (part !== "") addLine(part);
    });
    stream.on("end", () => {
      if (partial !== "") addLine(partial);
      partial = "";
    });
  }

  const mark = (): number => dropped + logLines.length;
  const since = (from: number): string[] => logLines.slice(Math.max(0, from - dropped));

  function waitForLog(pattern: RegExp, timeoutMs = 5000, fromMark = 0): Promise<string> {
    return new Promise((done, fail) => {
      let timer: NodeJS.Timeout | undefined = undefined;
      const check = (): void => {
        const found = since(fromMark).find((line) => pattern.test(line));
        if (found === undefined) return;
        waiters.delete(check);
        clearTimeout(timer);
        done(found);
      };
      timer = setTimeout(() => {
        waiters.delete(check);
        fail(new Error(`Mosquitto log: no line matching ${pattern} within ${timeoutMs} ms; last lines:\n${since(fromMark).slice(-15).join("\n")}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  }

  /** Starts the process and waits for "running" (logged once every listener is bound and listening). */
  async function launch(): Promise<void> {
    writeFileSync(configFile, configText(options, host, port, directory));
    const from = mark();
    const started = spawn(binary, ["-c", configFile], { stdio: ["ignore", "pipe", "pipe"] });
    child = started;
    trackProcess(started);
    attachLog(started.stdout);
    attachLog(started.stderr);
    const spawnFailed = new Promise<never>((_, fail) => started.once("error", (error) => fail(new Error(`cannot run ${binary}: ${error.message}`))));
    const exited = new Promise<never>((_, fail) =>
      started.once("exit", (code, signal) => {
        // Give the last stderr chunk a moment to arrive before quoting it.
        setTimeout(() => fail(new Error(`Mosquitto exited while starting (${signal ?? `code ${code}`}):\n${since(from).slice(-10).join("\n")}`)), 20);
      }),
    );
    spawnFailed.catch(() => undefined);
    exited.catch(() => undefined);
    try {
      await Promise.race([waitForLog(/mosquitto version \S+ running/, startTimeoutMs, from), spawnFailed, exited]);
    } catch (error) {
      if (started.exitCode === null && started.signalCode === null) {
        started.kill("SIGKILL");
        await once(started, "exit");
      }
      child = undefined;
      throw error;
    }
  }

  async function kill(signal: "SIGTERM" | "SIGKILL" = "SIGTERM"): Promise<void> {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = once(running, "exit");
    running.kill(signal);
    const timer = setTimeout(() => running.kill("SIGKILL"), 3000);
    await exited;
    clearTimeout(timer);
  }

  try {
    if (port !== 0) await launch();
    else {
      // A free port can be taken between the check and Mosquitto's bind: try a few.
      for (let attempt = 1; ; attempt++) {
        port = await freePort(host);
        try {
          await launch();
          break;
        } catch (error) {
          if (attempt >= 3 || !/Address already in use/i.test(String((error as Error).message))) throw error;
        }
      }
    }
  } catch (error) {
    rmSync(directory, { recursive: true, force: true });
    throw error;
  }

  return {
    host,
    get port() {
      return port;
    },
    get url() {
      return `${options.tls ? "mqtts" : "mqtt"}://${host}:${port}`;
    },
    tls: options.tls !== undefined,
    configFile,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
    log: () => logLines.join("\n"),
    lines: () => logLines,
    mark,
    since,
    waitForLog,
    kill,
    restart: async () => {
      if (stopped) throw new Error("this Mosquitto was stopped for good; start another");
      await kill("SIGTERM");
      await launch();
    },
    stop: async () => {
      stopped = true;
      await kill("SIGTERM");
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
