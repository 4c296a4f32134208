// `npm run monitor`: the serial log monitor. Reads the device's console from an ESP32's serial port
// (or standard input, to watch the simulator), passes every line through, and keeps a status line of
// the client computed from the app's log lines (modules/logline.ts). The logic is in monitor-status.ts.
//
//   npm run monitor -- --port /dev/ttyUSB0 --baud 115200     an ESP32 on a USB serial adapter
//   npm start | npm run monitor                              the simulated app (same as --stdin)
//
// Exit codes: 0 at the end of input (or Ctrl-C), 1 when the port fails while reading, 2 for a bad
// command line or a port that cannot be opened.
import { SerialPort } from "serialport";
import { LineSplitter, MonitorOutput, parseMonitorArgs, USAGE } from "./monitor-status.ts";

const parsed = parseMonitorArgs(process.argv.slice(2));
if ("error" in parsed) {
  process.stderr.write(`monitor: ${parsed.error} (see npm run monitor -- --help)\n`);
  process.exit(2);
}
if (parsed.help) {
  process.stdout.write(USAGE + "\n");
  process.exit(0);
}
const source = parsed.source;

const stdout = process.stdout;
const output = new MonitorOutput(stdout.isTTY === true, () => stdout.columns || undefined);
const splitter = new LineSplitter();
let finished = false;

/**
 * The terminal went away (closed window, hung-up pseudo-terminal): there is nowhere to show anything,
 * and Node's own exit would abort restoring the vanished terminal's settings. End as SIGHUP does.
 */
function hangUp(): void {
  finished = true;
  process.removeAllListeners("SIGHUP");
  process.kill(process.pid, "SIGHUP");
}

stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (stdout.isTTY) hangUp();
  // Whoever read our output went away (`npm run monitor | head`): nothing left to do.
  else process.exit(error.code === "EPIPE" ? 0 : 1);
});
if (stdout.isTTY) stdout.on("resize", () => write(output.redraw()));

function write(text: string): void {
  if (text.length > 0 && !finished) stdout.write(text);
}

function receive(chunk: Buffer): void {
  write(output.lines(splitter.push(chunk)));
}

function message(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/^Error:? /, "");
}

/** Flushes a last unterminated line, prints the summary, exits. */
function finish(how: string, code = 0): void {
  if (finished) return;
  write(output.lines(splitter.end()));
  finished = true;
  stdout.write(output.finish(how), (error) => {
    if (error && stdout.isTTY) hangUp();
    else process.exit(code);
  });
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => finish("interrupted"));
process.on("SIGHUP", () => (stdout.isTTY ? hangUp() : finish("interrupted")));

if (source.kind === "port") {
  const port = new SerialPort({ path: source.path, baudRate: source.baudRate, autoOpen: false });
  port.open((error) => {
    if (error) {
      const busy = /lock/i.test(error.message) ? " (is another program using the port?)" : "";
      process.stderr.write(`monitor: cannot open ${source.path} at ${source.baudRate} baud: ${message(error)}${busy}\n`);
      process.exit(2);
    }
    process.stderr.write(`[monitor] reading ${source.path} at ${source.baudRate} baud; Ctrl-C to stop\n`);
    write(output.redraw());
  });
  port.on("data", receive);
  // Unplugged, or the other end of a pseudo-terminal closed: the input has ended.
  port.on("close", () => finish("port closed"));
  port.on("error", (error) => {
    process.stderr.write(`monitor: ${source.path}: ${message(error)}\n`);
    finish("port error", 1);
  });
} else {
  if (process.stdin.isTTY) process.stderr.write("[monitor] reading standard input (for a serial port: --port <path> --baud <rate>); Ctrl-C to stop\n");
  write(output.redraw());
  process.stdin.on("data", receive);
  process.stdin.on("end", () => finish("end of input"));
  process.stdin.on("error", (error) => {
    process.stderr.write(`monitor: standard input: ${message(error)}\n`);
    finish("input error", 1);
  });
}
