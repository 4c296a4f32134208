// What every command of tools/ shares at its edge: the command line read strictly, `--help` on
// stdout with exit 0, and a problem as ONE line on stderr, `<command>: <what is wrong>`, with exit
// code 2 for a usage error (a flag, a setting or an argument as the user wrote it) and 1 for a
// failure at run time (a busy port, a broker that cannot be reached, a file that cannot be read).
// No stack trace reaches the user; IOTLINK_DEBUG=1 shows it under the line.
import { parseArgs } from "node:util";

/** A flag, setting or argument the user got wrong: exit code 2. */
export class UsageError extends Error {}

/** The command line itself does not parse (an unknown flag, a flag without its value): a usage error that points at --help. */
export class CommandLineError extends UsageError {}

/** Something that failed while the command ran: exit code 1. */
export class CommandError extends Error {}

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly short?: string;
}

export type Values<T extends Record<string, OptionSpec>> = {
  -readonly [K in keyof T]?: T[K]["type"] extends "string" ? string : boolean;
};

/** `--help` is always accepted. */
const HELP: OptionSpec = { type: "boolean", short: "h" };

/**
 * Reads `argv` strictly against `options` (no positional arguments). A string option takes the next
 * argument as its value even when it starts with "-" (`--run-for -5` is then refused by its check,
 * not read as an unknown flag), unless that argument is itself one of the options.
 */
export function readCommandLine<T extends Record<string, OptionSpec>>(options: T, argv: readonly string[] = process.argv.slice(2)): Values<T> & { help?: boolean } {
  const all: Record<string, OptionSpec> = { help: HELP, ...options };
  const known = new Set(Object.keys(all).map((name) => "--" + name));
  for (const [name, spec] of Object.entries(all)) if (spec.short) known.add("-" + spec.short);
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i]!;
    const spec = argument.startsWith("--") ? all[argument.slice(2)] : undefined;
    const next = argv[i + 1];
    if (spec?.type === "string" && next !== undefined && next.startsWith("-") && !known.has(next.split("=")[0]!)) {
      joined.push(`${argument}=${next}`);
      i++;
    } else joined.push(argument);
  }
  try {
    const { values } = parseArgs({ args: joined, options: all as never, strict: true, allowPositionals: false });
    return values as Values<T> & { help?: boolean };
  } catch (error) {
    throw new CommandLineError(parseArgsProblem(error));
  }
}

/** node:util parseArgs's errors, each said in one short line. */
function parseArgsProblem(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: string }).code;
  const option = /'(-[^' ]+)/.exec(message)?.[1];
  const positional = /argument '([^']*)'/.exec(message)?.[1];
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option ${option ?? message}`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument ${positional ?? message}`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE":
      if (/does not take an argument/.test(message)) return `${option} takes no value`;
      return `${option} needs a value`;
    default:
      return message;
  }
}

/** A whole number from `min` to `max`, digits only (so " ", "0x1f", "6e1" and "" are refused). */
export function wholeNumber(value: string, name: string, min: number, max: number): number {
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) {
    throw new UsageError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** A TCP port: 1 to 65535, or 0 too where `zero` says what it means. */
export function portNumber(value: string, name: string, allowZero = false): number {
  return wholeNumber(value, name, allowZero ? 0 : 1, 65535);
}

/** The one line a listen() failure deserves. */
export function listenProblem(error: unknown, host: string, port: number): string {
  const code = (error as { code?: string }).code;
  const where = `${host}:${port}`;
  if (code === "EADDRINUSE") return `port ${port} is in use on ${host} (another broker? pick another with --port)`;
  if (code === "EADDRNOTAVAIL") return `${host} is not an address of this machine (use 127.0.0.1, or one of this machine's LAN addresses)`;
  if (code === "EACCES") return `no permission to listen on ${where} (ports below 1024 need root)`;
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `${host} is not a host name or address this machine knows`;
  return `cannot listen on ${where}: ${error instanceof Error ? error.message : String(error)}`;
}

/**
 * Runs a command's main: `--help` prints `usage` and exits 0; a problem prints one line
 * `<command>: <message>` (with a pointer to --help for usage errors) and exits 2 or 1. Exits with
 * process.exit, since a broker or timer left behind must not keep a failed command alive.
 */
export async function runCommand(command: string, main: () => unknown): Promise<void> {
  try {
    await main();
  } catch (error) {
    exitWithProblem(command, error);
  }
}

export function exitWithProblem(command: string, error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  const usage = error instanceof UsageError;
  let line = `${command}: ${message.split("\n")[0]}`;
  if (error instanceof CommandLineError) line += ` (see ${helpCommand(command)})`;
  process.stderr.write(line + "\n");
  if (process.env.IOTLINK_DEBUG && error instanceof Error && error.stack) process.stderr.write(error.stack + "\n");
  process.exit(usage ? EXIT_USAGE : EXIT_FAILURE);
}

export function helpCommand(command: string): string {
  return command === "start" ? "npm start -- --help" : `npm run ${command} -- --help`;
}

/** Prints the usage on stdout and exits 0 when `--help` was given. */
export function helpIfAsked(values: { help?: boolean }, usage: string): void {
  if (values.help) {
    process.stdout.write(usage.trimEnd() + "\n");
    process.exit(0);
  }
}
