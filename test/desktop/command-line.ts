// Runs a command of package.json as a user does (`npm start -- ...`, `npm run broker -- ...`): the
// script's own command line, spawned with the given arguments and environment, with a deadline so a
// command that hangs fails its test instead of the suite. Used by the *-command.test.ts files.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

export const ROOT = join(import.meta.dirname, "..", "..");

const TSX = createRequire(join(ROOT, "package.json")).resolve("tsx").replace(/loader\.cjs$/, "loader.mjs");
const scripts = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;

export interface CommandResult {
  /** The exit code; null when ended by a signal. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** The stderr lines, without the empty last one. */
  readonly errorLines: string[];
  /** True when the deadline ended it. */
  readonly timedOut: boolean;
}

export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Killed (SIGKILL) after this long; default 15 s. */
  readonly timeoutMs?: number;
  /** Called with each chunk of stdout; return true to send SIGTERM (as Ctrl-C would). */
  readonly onStdout?: (all: string) => boolean;
  readonly cwd?: string;
}

/** The words of a script of package.json ("node --import tsx tools/start.ts"), with `node` as this Node. */
function scriptCommand(script: string): string[] {
  const command = scripts[script];
  if (!command) throw new Error(`package.json has no script ${script}`);
  const words = command.split(" ");
  if (words[0] !== "node") throw new Error(`script ${script} does not start with node: ${command}`);
  // Paths made absolute (tsx too), so that a command can also run in another working directory.
  return [process.execPath, ...words.slice(1).map((word) => (/^(tools|bench|test)\//.test(word) ? join(ROOT, word) : word === "tsx" ? TSX : word))];
}

/** `npm run <script> -- <args>`, as the script's command line with `args` appended. */
export function runScript(script: string, args: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const [node, ...rest] = scriptCommand(script);
  // IOTLINK_* variables of the test's own environment must not leak into the command under test.
  const environment: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("IOTLINK_")) environment[name] = value;
  const child = spawn(node!, [...rest, ...args], { cwd: options.cwd ?? ROOT, env: { ...environment, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let timedOut = false;
  let signalled = false;
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
    if (!signalled && options.onStdout?.(stdout)) {
      signalled = true;
      child.kill("SIGTERM");
    }
  });
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const deadline = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, options.timeoutMs ?? 15_000);
  return new Promise((done) => {
    child.on("close", (code, signal) => {
      clearTimeout(deadline);
      done({ code, signal, stdout, stderr, errorLines: stderr.split("\n").filter((line) => line !== ""), timedOut });
    });
  });
}
