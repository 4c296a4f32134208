// The pure parts of `npm run monitor` (tools/monitor.ts): splitting a byte stream into lines, the
// live status computed from the app's log lines, what the monitor writes for them, and its command
// line. No I/O here: everything is fed in and handed back, so the tests drive it directly.
//
//   const tracker = new StatusTracker();
//   for (const line of splitter.push(chunk)) if (tracker.feed(line).changed) show(formatStatus(tracker.status));
import { parseArgs } from "node:util";
import { LOG_PREFIX, parseLogLine } from "../modules/logline.ts";

// ---------------------------------------------------------------------------------------------
// Lines

/** A line longer than this without a newline (noise at the wrong baud rate) is passed on as it is. */
export const MAX_LINE_CHARS = 16384;

/**
 * Splits chunks of bytes into lines: a line may span chunks, and a UTF-8 character may too. A line
 * ends at LF; CRs before the LF are removed (CRLF endings). Bytes that are not UTF-8 become U+FFFD;
 * nothing else is changed.
 */
export class LineSplitter {
  private readonly decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  private pending = "";

  constructor(private readonly maxLineChars = MAX_LINE_CHARS) {}

  /** The lines this chunk completes (without their line endings). */
  push(chunk: Uint8Array): string[] {
    return this.split(this.decoder.decode(chunk, { stream: true }));
  }

  /** At end of input: the last line if it had no newline. */
  end(): string[] {
    const lines = this.split(this.decoder.decode());
    if (this.pending.length > 0) lines.push(stripCr(this.pending));
    this.pending = "";
    return lines;
  }

  private split(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let newline = text.indexOf("\n"); newline >= 0; newline = text.indexOf("\n", start)) {
      lines.push(stripCr(this.pending + text.slice(start, newline)));
      this.pending = "";
      start = newline + 1;
    }
    this.pending += text.slice(start);
    while (this.pending.length > this.maxLineChars) {
      lines.push(this.pending.slice(0, this.maxLineChars));
      this.pending = this.pending.slice(this.maxLineChars);
    }
    return lines;
  }
}

function stripCr(line: string): string {
  let end = line.length;
  while (end > 0 && line.charCodeAt(end - 1) === 13) end--;
  return end === line.length ? line : line.slice(0, end);
}

// ---------------------------------------------------------------------------------------------
// Status

/** What the monitor knows of the device; undefined until a line has said. */
export interface DeviceStatus {
  /** The client state (idle, backoff, opening, awaiting-connack, resubscribing, draining, online, closing);
   * "unknown" before any line, "starting" after `start` until the first state line. */
  readonly state: string;
  readonly queue?: number;
  readonly inflight?: number;
  readonly dropped?: number;
  readonly sent?: number;
  readonly acked?: number;
  /** The reconnect attempt (0 once connected). */
  readonly attempt?: number;
  /** The delay of the last `backoff` line, in ms. */
  readonly backoffMs?: number;
  /** The last `error` line: "code: message". */
  readonly error?: string;
}

export const INITIAL_STATUS: DeviceStatus = { state: "unknown" };

/** Counts over the whole input, for the final summary. */
export interface LineCounts {
  lines: number;
  /** Lines in the app's format. */
  iotlink: number;
  /** Lines starting "iotlink " that parseLogLine refused. */
  malformed: number;
  /** Every other line (xsbug, boot ROM, ESP-IDF, the simulator's own). */
  other: number;
  starts: number;
  online: number;
  offline: number;
  errors: number;
  drops: number;
}

export type LineKind = "iotlink" | "malformed" | "other";

export interface FeedResult {
  kind: LineKind;
  /** The event of an iotlink line. */
  event?: string;
  /** True when this line changed the status. */
  changed: boolean;
}

const STATUS_KEYS = ["state", "queue", "inflight", "dropped", "sent", "acked", "attempt", "backoffMs", "error"] as const;

export function sameStatus(a: DeviceStatus, b: DeviceStatus): boolean {
  return STATUS_KEYS.every((key) => a[key] === b[key]);
}

function whole(value: string | undefined): number | undefined {
  return value !== undefined && /^-?[0-9]{1,15}$/.test(value) ? Number(value) : undefined;
}

/** Copies into `next` the fields given as whole numbers; a missing or garbled field keeps its value. */
function numbers(next: { -readonly [K in keyof DeviceStatus]: DeviceStatus[K] }, fields: Record<string, string>,
  pairs: readonly (readonly [field: string, key: "queue" | "inflight" | "dropped" | "sent" | "acked" | "attempt" | "backoffMs"])[]): void {
  for (const [field, key] of pairs) {
    const value = whole(fields[field]);
    if (value !== undefined) next[key] = value;
  }
}

/** Feeds app log lines, one at a time, and keeps the device's status (see main.ts for the events). */
export class StatusTracker {
  private current: DeviceStatus = INITIAL_STATUS;
  readonly counts: LineCounts = { lines: 0, iotlink: 0, malformed: 0, other: 0, starts: 0, online: 0, offline: 0, errors: 0, drops: 0 };

  get status(): DeviceStatus {
    return this.current;
  }

  feed(line: string): FeedResult {
    this.counts.lines++;
    const parsed = parseLogLine(line);
    if (parsed === undefined) {
      const kind: LineKind = line.startsWith(LOG_PREFIX) ? "malformed" : "other";
      this.counts[kind]++;
      return { kind, changed: false };
    }
    this.counts.iotlink++;
    const { event, fields } = parsed;
    const next: { -readonly [K in keyof DeviceStatus]: DeviceStatus[K] } = { ...this.current };
    switch (event) {
      case "start": // the device (re)booted: nothing from before holds
        this.counts.starts++;
        for (const key of STATUS_KEYS) delete next[key];
        next.state = "starting";
        break;
      case "state":
      case "status":
        if (fields.state !== undefined && /^[a-z-]+$/.test(fields.state)) next.state = fields.state;
        numbers(next, fields, [["queue", "queue"], ["inflight", "inflight"], ["dropped", "dropped"], ["sent", "sent"], ["acked", "acked"], ["attempt", "attempt"]]);
        break;
      case "backoff":
        numbers(next, fields, [["delay", "backoffMs"], ["attempt", "attempt"]]);
        break;
      case "restored":
        numbers(next, fields, [["queue", "queue"]]);
        break;
      case "drop":
        this.counts.drops++;
        numbers(next, fields, [["dropped", "dropped"]]);
        break;
      case "done":
        numbers(next, fields, [["sent", "sent"], ["acked", "acked"], ["queue", "queue"]]);
        break;
      case "error":
        this.counts.errors++;
        next.error = (fields.code ?? "error") + (fields.message ? ": " + fields.message : "");
        break;
      case "online":
        this.counts.online++;
        break;
      case "offline":
        this.counts.offline++;
        break;
      default: // telemetry, command, ack and anything newer: shown, not part of the status
        break;
    }
    const changed = !sameStatus(this.current, next);
    if (changed) this.current = next;
    return { kind: "iotlink", event, changed };
  }
}

function show(value: number | undefined, unit = ""): string {
  return value === undefined ? "-" : value + unit;
}

function quoted(text: string): string {
  return /^[^\s"\\]+$/.test(text) ? text : '"' + text.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
}

/** The status as one line of key=value pairs ("-" where not known yet). */
export function formatStatus(status: DeviceStatus): string {
  return `state=${status.state} queue=${show(status.queue)} inflight=${show(status.inflight)} dropped=${show(status.dropped)}` +
    ` sent=${show(status.sent)} acked=${show(status.acked)} attempt=${show(status.attempt)} backoff=${show(status.backoffMs, "ms")}` +
    ` error=${status.error === undefined ? "-" : quoted(status.error)}`;
}

export function formatCounts(counts: LineCounts): string {
  return `lines=${counts.lines} iotlink=${counts.iotlink} other=${counts.other} malformed=${counts.malformed}` +
    ` starts=${counts.starts} online=${counts.online} offline=${counts.offline} errors=${counts.errors} drops=${counts.drops}`;
}

// ---------------------------------------------------------------------------------------------
// Output

export const STATUS_PREFIX = "[status] ";
export const SUMMARY_PREFIX = "[summary] ";
/** Carriage return, then erase the whole line: where the status line was. */
export const CLEAR_LINE = "\r\x1b[2K";
const REVERSE = "\x1b[7m";
const NORMAL = "\x1b[0m";

/**
 * What the monitor writes for each batch of lines. On a terminal the status stays on the bottom line,
 * redrawn in place after the lines pass; otherwise every line passes as it came and a `[status]`
 * line follows each line that changed the status.
 */
export class MonitorOutput {
  readonly tracker = new StatusTracker();
  private drawn = false;

  /** `columns`: the terminal's width, when known (the status line is cut to fit, so it never wraps). */
  constructor(private readonly tty: boolean, private readonly columns: () => number | undefined = () => undefined) {}

  /** The text to write for these lines. */
  lines(lines: readonly string[]): string {
    if (lines.length === 0) return "";
    let out = "";
    for (const line of lines) {
      const result = this.tracker.feed(line);
      out += line + "\n";
      if (result.changed && !this.tty) out += STATUS_PREFIX + formatStatus(this.tracker.status) + "\n";
    }
    if (!this.tty) return out;
    // On a terminal: erase the bar, let the lines pass over it, draw it again below them.
    this.drawn = true;
    return CLEAR_LINE + out + this.bar();
  }

  /** On a terminal: the status line drawn (again) in place, before any line or after a resize. */
  redraw(): string {
    if (!this.tty) return "";
    this.drawn = true;
    return CLEAR_LINE + this.bar();
  }

  /** The status line as drawn on a terminal (no newline). */
  bar(): string {
    let text = STATUS_PREFIX + formatStatus(this.tracker.status);
    const width = this.columns();
    if (width !== undefined && width > 1 && text.length > width - 1) text = text.slice(0, width - 2) + "…";
    return REVERSE + text + NORMAL;
  }

  /** The final summary; `how` says why the input ended. */
  finish(how: string): string {
    const clear = this.tty && this.drawn ? CLEAR_LINE : "";
    this.drawn = false;
    return clear + SUMMARY_PREFIX + how + ": " + formatCounts(this.tracker.counts) + " | " + formatStatus(this.tracker.status) + "\n";
  }
}

// ---------------------------------------------------------------------------------------------
// Command line

export type MonitorSource = { kind: "stdin" } | { kind: "port"; path: string; baudRate: number };

export type MonitorArguments = { help: true } | { help: false; source: MonitorSource } | { error: string };

export const USAGE = `usage: npm run monitor -- --port <path> --baud <rate>   read an ESP32's serial port (e.g. --port /dev/ttyUSB0 --baud 115200)
       npm run monitor [-- --stdin]                     read standard input (npm start | npm run monitor)`;

const MAX_BAUD = 12_000_000;

function optionName(message: string): string {
  return /'(-[^' ]+)/.exec(message)?.[1] ?? "";
}

/** Checks the command line; a problem comes back as one line of text. */
export function parseMonitorArgs(argv: readonly string[]): MonitorArguments {
  let values: { port?: string; baud?: string; stdin?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        port: { type: "string", short: "p" },
        baud: { type: "string", short: "b" },
        stdin: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (error) {
    const code = (error as { code?: string }).code;
    const message = error instanceof Error ? error.message : String(error);
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") return { error: `unknown option ${optionName(message)}` };
    if (code === "ERR_PARSE_ARGS_INVALID_OPTION_VALUE") return { error: `option ${/--[a-z][a-z-]*/.exec(message)?.[0] ?? optionName(message)} needs a value` };
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") return { error: `unexpected argument ${/'([^']*)'/.exec(message)?.[1] ?? ""}`.trimEnd() };
    return { error: message.split("\n")[0] };
  }
  if (values.help) return { help: true };
  if (values.port !== undefined) {
    if (values.stdin) return { error: "give --port or --stdin, not both" };
    if (values.port === "") return { error: "--port needs a path, such as /dev/ttyUSB0" };
    if (values.baud === undefined) return { error: `--port needs --baud, such as --baud 115200` };
    if (!/^[0-9]+$/.test(values.baud) || Number(values.baud) < 1 || Number(values.baud) > MAX_BAUD) {
      return { error: `--baud must be a whole number of bits per second from 1 to ${MAX_BAUD}, such as 115200; got "${values.baud}"` };
    }
    return { help: false, source: { kind: "port", path: values.port, baudRate: Number(values.baud) } };
  }
  if (values.baud !== undefined) return { error: "--baud goes with --port; standard input has no baud rate" };
  return { help: false, source: { kind: "stdin" } };
}
