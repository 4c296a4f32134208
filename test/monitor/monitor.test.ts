// `npm run monitor` (tools/monitor.ts, tools/monitor-status.ts): the status logic fed real log lines
// made by formatLogLine, the CLI over standard input (alone and behind the simulated app), and the
// CLI on a real serial line: a pseudo-terminal pair from Debian's socat, the monitor on one end, the
// test playing the device on the other, with the monitor's output on a pipe and on a terminal.
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { formatLogLine } from "../../modules/logline.ts";
import {
  CLEAR_LINE, formatStatus, INITIAL_STATUS, LineSplitter, MonitorOutput, parseMonitorArgs, StatusTracker, STATUS_PREFIX,
} from "../../tools/monitor-status.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const MONITOR = join(ROOT, "tools", "monitor.ts");
const encode = (text: string) => new TextEncoder().encode(text);

// ---------------------------------------------------------------------------------------------
// Lines as main.ts writes them (same events, same fields, same order).

interface Counters { queue: number; inflight: number; dropped: number; attempt: number; sent: number; acked: number }
const IDLE: Counters = { queue: 0, inflight: 0, dropped: 0, attempt: 0, sent: 0, acked: 0 };

const app = {
  start: () => formatLogLine("start", ["client", "iotlink-device", "endpoint", "localhost:8883", "tls", true,
    "telemetry", "iotlink/iotlink-device/telemetry", "commands", "iotlink/iotlink-device/cmd"]),
  state: (event: "state" | "status", state: string, c: Partial<Counters> = {}, uptime = 5) => {
    const n = { ...IDLE, ...c };
    return formatLogLine(event, ["state", state, "queue", n.queue, "inflight", n.inflight, "dropped", n.dropped,
      "attempt", n.attempt, "sent", n.sent, "acked", n.acked, "received", 0, "uptime", uptime]);
  },
  online: () => formatLogLine("online", ["endpoint", "localhost:8883", "session", false]),
  offline: (reason: string) => formatLogLine("offline", ["reason", reason]),
  restored: (queue: number) => formatLogLine("restored", ["queue", queue]),
  backoff: (delay: number, attempt: number) => formatLogLine("backoff", ["delay", delay, "attempt", attempt]),
  drop: (dropped: number) => formatLogLine("drop", ["kind", "publish", "topic", "iotlink/iotlink-device/telemetry", "dropped", dropped]),
  error: (code: string, message: string) => formatLogLine("error", ["code", code, "message", message]),
  telemetry: (seq: number, result: string) => formatLogLine("telemetry", ["seq", seq, "result", result]),
  command: (name: string) => formatLogLine("command", ["name", name]),
  ack: (seq: number, status: string) => formatLogLine("ack", ["seq", seq, "status", status]),
  done: (sent: number, acked: number, queue: number) => formatLogLine("done", ["sent", sent, "acked", acked, "queue", queue]),
};

// ---------------------------------------------------------------------------------------------
// Processes: every child is tracked and ended in after().

const children = new Set<ChildProcess>();
let scratch: string;
before(() => {
  scratch = mkdtempSync(join(tmpdir(), "iotlink-monitor-test-"));
});
after(async () => {
  for (const child of children) child.kill("SIGTERM"); // socat passes SIGTERM on to its EXEC child
  const deadline = Date.now() + 3000;
  while (children.size > 0 && Date.now() < deadline) await delay(20);
  for (const child of children) child.kill("SIGKILL");
  rmSync(scratch, { recursive: true, force: true });
});

interface Running {
  child: ChildProcess;
  stdout: { text: string };
  stderr: { text: string };
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function collect(stream: Readable | null): { text: string } {
  const sink = { text: "" };
  stream?.setEncoding("utf8");
  stream?.on("data", (data: string) => (sink.text += data));
  return sink;
}

function run(command: string, args: readonly string[], stdin: "pipe" | "ignore" = "ignore", env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(command, args, { cwd: ROOT, env, stdio: [stdin, "pipe", "pipe"] });
  children.add(child);
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on("close", (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return { child, stdout, stderr, exit };
}

function monitor(args: readonly string[], stdin: "pipe" | "ignore" = "ignore"): Running {
  return run(process.execPath, ["--import", "tsx", MONITOR, ...args], stdin);
}

async function until<T>(what: string, check: () => T | undefined | false | null, ms = 15000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await delay(20);
  }
}

async function withinTime<T>(what: string, promise: Promise<T>, ms = 15000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error("timed out waiting for " + what)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A serial line: socat joins two pseudo-terminals; the monitor opens one end, the "device" writes the other. */
async function serialLine(): Promise<{ monitorEnd: string; deviceEnd: string; socat: Running }> {
  const socat = run("socat", ["-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"]);
  const [monitorEnd, deviceEnd] = await until("socat's pseudo-terminals", () => {
    const paths = [...socat.stderr.text.matchAll(/PTY is (\/dev\/pts\/\d+)/g)].map((match) => match[1]);
    return paths.length === 2 && socat.stderr.text.includes("starting data transfer loop") && paths;
  });
  return { monitorEnd, deviceEnd, socat };
}

/** Plays the device: writes chunks to its end of the line, pausing between them so they arrive apart. */
async function deviceWrites(path: string, chunks: readonly (string | Uint8Array)[]): Promise<void> {
  const fd = openSync(path, constants.O_WRONLY | constants.O_NOCTTY);
  try {
    for (const chunk of chunks) {
      writeSync(fd, typeof chunk === "string" ? encode(chunk) : chunk);
      await delay(40);
    }
  } finally {
    closeSync(fd);
  }
}

const outputLines = (text: string) => text.split("\n").filter((line, index, all) => index < all.length - 1 || line !== "");
const statusLines = (text: string) => outputLines(text).filter((line) => line.startsWith(STATUS_PREFIX));

// ---------------------------------------------------------------------------------------------

describe("LineSplitter", () => {
  test("ends lines at LF, removes the CR of CRLF, and joins a line split across chunks", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(splitter.push(encode("one\r\ntw")), ["one"]);
    assert.deepEqual(splitter.push(encode("o\r")), [], "a line is held until its LF comes");
    assert.deepEqual(splitter.push(encode("\nthree\n\nfour")), ["two", "three", ""]);
    assert.deepEqual(splitter.end(), ["four"], "the last line needs no newline");
    assert.deepEqual(splitter.end(), []);
  });

  test("keeps a UTF-8 character split across chunks, and shows bytes that are not UTF-8 as U+FFFD", () => {
    const splitter = new LineSplitter();
    const degrees = encode("21.5 °C\n"); // ° is two bytes
    const cut = degrees.indexOf(0xc2) + 1;
    assert.deepEqual(splitter.push(degrees.subarray(0, cut)), []);
    assert.deepEqual(splitter.push(degrees.subarray(cut)), ["21.5 °C"]);
    assert.deepEqual(splitter.push(Uint8Array.from([0xff, 0xfe, 0x41, 0x80, 0x0d, 0x0a])), ["\ufffd\ufffdA\ufffd"]);
    assert.deepEqual(splitter.push(Uint8Array.from([0x1b, 0x5b, 0x30, 0x6d, 0x00, 0x0a])), ["\x1b[0m\x00"], "other bytes pass as they are");
    assert.deepEqual(splitter.push(Uint8Array.from([0xe2, 0x82])), []);
    assert.deepEqual(splitter.end(), ["\ufffd"], "a character cut off by the end of input");
  });

  test("passes on noise with no newline in pieces of the maximum length", () => {
    const splitter = new LineSplitter(8);
    assert.deepEqual(splitter.push(encode("abcdefghijklmnopqr")), ["abcdefgh", "ijklmnop"]);
    assert.deepEqual(splitter.push(encode("s\n")), ["qrs"]);
  });
});

describe("StatusTracker over the app's lines", () => {
  test("follows a session: boot, connect, telemetry, link lost, backoff, drops, reconnect, done", () => {
    const tracker = new StatusTracker();
    assert.deepEqual(tracker.status, INITIAL_STATUS);
    const feed = (line: string) => tracker.feed(line);

    assert.deepEqual(feed("ets Jun  8 2016 00:22:57"), { kind: "other", changed: false });
    assert.deepEqual(feed(app.start()), { kind: "iotlink", event: "start", changed: true });
    assert.deepEqual(tracker.status, { state: "starting" });

    assert.equal(feed(app.state("state", "opening", { queue: 1 })).changed, true);
    assert.equal(feed(app.state("state", "awaiting-connack", { queue: 1 })).changed, true);
    assert.equal(feed(app.state("state", "resubscribing", { queue: 1 })).changed, true);
    assert.deepEqual(feed(app.online()), { kind: "iotlink", event: "online", changed: false });
    assert.equal(feed(app.state("state", "online", { inflight: 1, sent: 1 })).changed, true);
    assert.deepEqual(feed(app.restored(0)), { kind: "iotlink", event: "restored", changed: false }, "queue already 0");
    assert.deepEqual(tracker.status, { state: "online", queue: 0, inflight: 1, dropped: 0, sent: 1, acked: 0, attempt: 0 });

    assert.equal(feed(app.telemetry(1, "sent")).changed, false);
    assert.equal(feed(app.command("ping")).changed, false);
    assert.equal(feed(app.state("status", "online", { sent: 3, acked: 3 }, 10000)).changed, true);
    assert.equal(feed(app.state("status", "online", { sent: 3, acked: 3 }, 20000)).changed, false, "only the uptime moved");

    assert.equal(feed(app.error("keepalive-timeout", "no PINGRESP in 90000 ms")).changed, true);
    assert.equal(feed(app.state("state", "backoff", { sent: 3, acked: 3 })).changed, true);
    assert.equal(feed(app.offline("keep-alive timeout")).changed, false);
    assert.equal(feed(app.backoff(1000, 1)).changed, true);
    assert.equal(feed(app.telemetry(4, "queued")).changed, false);
    assert.equal(feed(app.drop(1)).changed, true);
    assert.equal(feed(app.ack(2, "dropped")).changed, false);
    assert.equal(feed(app.state("state", "opening", { queue: 2, dropped: 1, attempt: 1, sent: 3, acked: 3 })).changed, true);
    assert.equal(feed(app.error("connect-failed", 'TLS alert "bad certificate" \\ refused')).changed, true);
    assert.equal(feed(app.backoff(2000, 2)).changed, true);
    assert.deepEqual(tracker.status, {
      state: "opening", queue: 2, inflight: 0, dropped: 1, sent: 3, acked: 3, attempt: 2, backoffMs: 2000,
      error: 'connect-failed: TLS alert "bad certificate" \\ refused',
    });
    assert.equal(formatStatus(tracker.status),
      'state=opening queue=2 inflight=0 dropped=1 sent=3 acked=3 attempt=2 backoff=2000ms error="connect-failed: TLS alert \\"bad certificate\\" \\\\ refused"');

    feed(app.state("state", "draining", { queue: 2, dropped: 1, sent: 3, acked: 3 }));
    assert.equal(feed(app.state("state", "online", { dropped: 1, inflight: 2, sent: 5, acked: 3 })).changed, true);
    assert.equal(feed(app.restored(0)).changed, false);
    assert.equal(feed(app.state("state", "closing", { dropped: 1, sent: 5, acked: 5 })).changed, true);
    assert.equal(feed(app.done(6, 6, 0)).changed, true, "done carries the final counters");
    assert.deepEqual(tracker.status, {
      state: "closing", queue: 0, inflight: 0, dropped: 1, sent: 6, acked: 6, attempt: 0, backoffMs: 2000,
      error: 'connect-failed: TLS alert "bad certificate" \\ refused',
    }, "the last backoff delay and error stay shown after recovery");
    assert.deepEqual(tracker.counts, { lines: 27, iotlink: 26, malformed: 0, other: 1, starts: 1, online: 1, offline: 1, errors: 2, drops: 1 });
  });

  test("a new start line (the device rebooted) forgets everything from before", () => {
    const tracker = new StatusTracker();
    tracker.feed(app.state("status", "online", { sent: 9, acked: 9 }));
    tracker.feed(app.backoff(4000, 3));
    tracker.feed(app.error("gave-up", "attempt limit reached"));
    assert.equal(tracker.feed(app.start()).changed, true);
    assert.deepEqual(tracker.status, { state: "starting" });
    assert.equal(formatStatus(tracker.status), "state=starting queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-");
    assert.equal(tracker.feed(app.start()).changed, false);
    assert.equal(tracker.counts.starts, 2);
  });

  test("other lines, malformed iotlink lines and garbled fields leave the status alone", () => {
    const tracker = new StatusTracker();
    tracker.feed(app.state("state", "online", { queue: 4, sent: 2, acked: 2 }));
    const earlier = tracker.status;
    for (const line of [
      "", "<xsbug><log>iotlink state state=idle</log></xsbug>", "I (312) cpu_start: Starting scheduler on PRO CPU.",
      " iotlink state state=idle", "\ufffd\ufffd\x00iotlink garbage", "iotlinkstate state=idle",
    ]) {
      assert.deepEqual(tracker.feed(line), { kind: "other", changed: false }, JSON.stringify(line));
    }
    for (const line of ['iotlink state state="idle', "iotlink State state=idle", "iotlink state queue"]) {
      assert.deepEqual(tracker.feed(line), { kind: "malformed", changed: false }, JSON.stringify(line));
    }
    assert.equal(tracker.feed(formatLogLine("state", ["state", "idle!", "queue", "x7", "sent", "2.5", "acked", ""])).changed, false,
      "values that are not a state name or a whole number are ignored");
    assert.equal(tracker.feed(formatLogLine("state", ["state", "idle", "queue", "x7"])).changed, true, "the valid fields still count");
    assert.deepEqual(tracker.status, { ...earlier, state: "idle" });
    assert.equal(tracker.feed(formatLogLine("future-event", ["state", "online"])).changed, false, "unknown events are shown, not used");
    assert.deepEqual(tracker.counts, { lines: 13, iotlink: 4, malformed: 3, other: 6, starts: 0, online: 0, offline: 0, errors: 0, drops: 0 });
  });
});

describe("MonitorOutput", () => {
  test("not a terminal: every line as it came, a [status] line after each line that changed the status", () => {
    const output = new MonitorOutput(false);
    assert.equal(output.redraw(), "");
    assert.equal(output.lines(["boot", app.start(), app.telemetry(1, "queued")]),
      `boot\n${app.start()}\n[status] state=starting queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-\n${app.telemetry(1, "queued")}\n`);
    assert.equal(output.lines([]), "");
    assert.equal(output.finish("end of input"),
      "[summary] end of input: lines=3 iotlink=2 other=1 malformed=0 starts=1 online=0 offline=0 errors=0 drops=0 | " +
      "state=starting queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-\n");
  });

  test("a terminal: the status line is erased, the lines pass, and it is drawn again below them, cut to the width", () => {
    let columns: number | undefined = 40;
    const output = new MonitorOutput(true, () => columns);
    const bar = (text: string) => "\x1b[7m" + text + "\x1b[0m";
    assert.equal(output.redraw(), CLEAR_LINE + bar("[status] state=unknown queue=- infligh…"), "39 characters on 40 columns: never wraps");
    columns = undefined;
    const lines = [app.start(), app.state("state", "opening", { queue: 1 })];
    assert.equal(output.lines(lines), CLEAR_LINE + lines.join("\n") + "\n" +
      bar("[status] state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=0 backoff=- error=-"));
    assert.equal(output.lines(["plain"]), CLEAR_LINE + "plain\n" +
      bar("[status] state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=0 backoff=- error=-"), "drawn again under every batch");
    assert.match(output.finish("interrupted"), /^\r\x1b\[2K\[summary\] interrupted: lines=3 iotlink=2 other=1 .*state=opening .*\n$/);
  });
});

describe("parseMonitorArgs", () => {
  test("a port with its baud rate, or standard input", () => {
    assert.deepEqual(parseMonitorArgs(["--port", "/dev/ttyUSB0", "--baud", "115200"]),
      { help: false, source: { kind: "port", path: "/dev/ttyUSB0", baudRate: 115200 } });
    assert.deepEqual(parseMonitorArgs(["-p", "/dev/ttyACM0", "-b", "460800"]),
      { help: false, source: { kind: "port", path: "/dev/ttyACM0", baudRate: 460800 } });
    assert.deepEqual(parseMonitorArgs(["--port=/dev/ttyUSB1", "--baud=9600"]),
      { help: false, source: { kind: "port", path: "/dev/ttyUSB1", baudRate: 9600 } });
    assert.deepEqual(parseMonitorArgs([]), { help: false, source: { kind: "stdin" } });
    assert.deepEqual(parseMonitorArgs(["--stdin"]), { help: false, source: { kind: "stdin" } });
    assert.deepEqual(parseMonitorArgs(["--help"]), { help: true });
  });

  test("every mistake is one line naming it", () => {
    const cases: [string[], string][] = [
      [["--bogus"], "unknown option --bogus"],
      [["-x"], "unknown option -x"],
      [["--port", "/dev/ttyUSB0"], "--port needs --baud, such as --baud 115200"],
      [["--port", "/dev/ttyUSB0", "--baud"], "option --baud needs a value"],
      [["--port"], "option --port needs a value"],
      [["--port", "--baud", "115200"], "option --port needs a value"],
      [["--port", "/dev/ttyUSB0", "--baud", "fast"], '--baud must be a whole number of bits per second from 1 to 12000000, such as 115200; got "fast"'],
      [["--port", "/dev/ttyUSB0", "--baud", "115200.5"], '--baud must be a whole number of bits per second from 1 to 12000000, such as 115200; got "115200.5"'],
      [["--port", "/dev/ttyUSB0", "--baud", "0"], '--baud must be a whole number of bits per second from 1 to 12000000, such as 115200; got "0"'],
      [["--port", "/dev/ttyUSB0", "--baud", "99999999"], '--baud must be a whole number of bits per second from 1 to 12000000, such as 115200; got "99999999"'],
      [["--port", "", "--baud", "115200"], "--port needs a path, such as /dev/ttyUSB0"],
      [["--stdin", "--port", "/dev/ttyUSB0", "--baud", "115200"], "give --port or --stdin, not both"],
      [["--baud", "115200"], "--baud goes with --port; standard input has no baud rate"],
      [["/dev/ttyUSB0"], "unexpected argument /dev/ttyUSB0"],
    ];
    for (const [argv, error] of cases) assert.deepEqual(parseMonitorArgs(argv), { error }, argv.join(" "));
  });
});

// ---------------------------------------------------------------------------------------------

describe("npm run monitor over standard input", () => {
  test("passes every line through, prints [status] on changes, handles CRLF, split lines and garbage, ends with a summary", async () => {
    const monitored = monitor(["--stdin"], "pipe");
    const stdin = monitored.child.stdin!;
    const errorLine = app.error("connect-failed", 'TLS alert "unknown ca"');
    const chunks: (string | Uint8Array)[] = [
      "ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n",
      Uint8Array.from([0xff, 0xfe, 0x80, 0x0d, 0x0a]),
      app.start() + "\r\n" + app.state("state", "opening", { queue: 1 }).slice(0, 30),
      app.state("state", "opening", { queue: 1 }).slice(30) + "\r",
      "\n<xsbug><log>not an iotlink line</log></xsbug>\n",
      errorLine + "\n" + app.backoff(1000, 1) + "\n" + app.state("status", "backoff", { queue: 1, attempt: 1 }, 9000) + "\n",
      app.state("status", "backoff", { queue: 1, attempt: 1 }, 19000) + "\n" + "iotlink state state=\"broken\n",
      app.done(0, 0, 1), // no newline before the end of input
    ];
    for (const chunk of chunks) {
      stdin.write(chunk);
      await delay(30);
    }
    stdin.end();
    const { code } = await withinTime("the monitor to exit", monitored.exit);
    assert.equal(code, 0);
    assert.equal(monitored.stderr.text, "");
    assert.deepEqual(outputLines(monitored.stdout.text), [
      "ets Jun  8 2016 00:22:57",
      "",
      "rst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)",
      "\ufffd\ufffd\ufffd",
      app.start(),
      "[status] state=starting queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-",
      app.state("state", "opening", { queue: 1 }),
      "[status] state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=0 backoff=- error=-",
      "<xsbug><log>not an iotlink line</log></xsbug>",
      errorLine,
      '[status] state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=0 backoff=- error="connect-failed: TLS alert \\"unknown ca\\""',
      app.backoff(1000, 1),
      '[status] state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=1 backoff=1000ms error="connect-failed: TLS alert \\"unknown ca\\""',
      app.state("status", "backoff", { queue: 1, attempt: 1 }, 9000),
      '[status] state=backoff queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=1 backoff=1000ms error="connect-failed: TLS alert \\"unknown ca\\""',
      app.state("status", "backoff", { queue: 1, attempt: 1 }, 19000),
      'iotlink state state="broken',
      app.done(0, 0, 1),
      '[summary] end of input: lines=13 iotlink=7 other=5 malformed=1 starts=1 online=0 offline=0 errors=1 drops=0 | ' +
        'state=backoff queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=1 backoff=1000ms error="connect-failed: TLS alert \\"unknown ca\\""',
    ]);
  });

  test("Ctrl-C (SIGINT) ends it like the end of input: the pending line, the summary, exit code 0", async () => {
    const monitored = monitor(["--stdin"], "pipe");
    monitored.child.stdin!.write(app.start() + "\n" + "no newline yet");
    await until("the start line", () => monitored.stdout.text.includes("[status] state=starting"));
    monitored.child.kill("SIGINT");
    const { code } = await withinTime("the monitor to exit", monitored.exit);
    assert.equal(code, 0);
    assert.deepEqual(outputLines(monitored.stdout.text).slice(-2), ["no newline yet",
      "[summary] interrupted: lines=2 iotlink=1 other=1 malformed=0 starts=1 online=0 offline=0 errors=0 drops=0 | " +
      "state=starting queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-"]);
  });

  test("behind the simulated app (npm start | npm run monitor): the app's lines pass unchanged and the status follows it", async () => {
    const env = { ...process.env, IOTLINK_CONFIG_telemetryIntervalMs: "250", IOTLINK_CONFIG_statusIntervalMs: "700" };
    const simulator = run(process.execPath, ["--import", "tsx", join(ROOT, "tools", "start.ts"), "--run-for", "2", "--quiet",
      "--certs", join(scratch, "certs")], "ignore", env);
    const monitored = monitor([], "pipe");
    let appOutput = "";
    simulator.child.stdout!.removeAllListeners("data");
    simulator.child.stdout!.on("data", (data: string) => {
      appOutput += data;
      monitored.child.stdin!.write(data);
    });
    simulator.child.stdout!.on("end", () => monitored.child.stdin!.end());

    assert.equal((await withinTime("the simulated app to finish", simulator.exit, 60000)).code, 0, simulator.stderr.text);
    const { code } = await withinTime("the monitor to exit", monitored.exit);
    assert.equal(code, 0, monitored.stderr.text);

    const shown = outputLines(monitored.stdout.text);
    assert.deepEqual(shown.filter((line) => !line.startsWith("[status] ") && !line.startsWith("[summary] ")), outputLines(appOutput),
      "every line of the app, unchanged and in order");
    assert.ok(outputLines(appOutput).filter((line) => line.startsWith("iotlink telemetry ")).length >= 3);
    const states = statusLines(monitored.stdout.text).map((line) => /state=([a-z-]+)/.exec(line)![1]);
    assert.deepEqual([...new Set(states)].filter((state) => ["starting", "opening", "online", "closing", "idle"].includes(state)),
      ["starting", "opening", "online", "closing", "idle"], "the states it went through, in order: " + states.join(" "));
    const summary = shown.at(-1)!;
    const match = /^\[summary\] end of input: lines=\d+ iotlink=\d+ other=\d+ malformed=0 starts=1 online=1 offline=1 errors=0 drops=0 \| state=idle queue=0 inflight=0 dropped=0 sent=(\d+) acked=(\d+) attempt=0 backoff=- error=-$/.exec(summary);
    assert.ok(match, summary);
    assert.equal(match[1], match[2], "all sent acknowledged");
    assert.ok(Number(match[1]) >= 3);
  });
});

describe("npm run monitor: bad command lines and ports", () => {
  test("each gives one line on stderr and exit code 2", async () => {
    const cases: [string[], RegExp][] = [
      [["--bogus"], /^monitor: unknown option --bogus /],
      [["--port", "/dev/ttyUSB0"], /^monitor: --port needs --baud, such as --baud 115200 /],
      [["--port", "/dev/ttyUSB0", "--baud"], /^monitor: option --baud needs a value /],
      [["--port", "/dev/ttyUSB0", "--baud", "fast"], /^monitor: --baud must be a whole number .* got "fast" /],
      [["--stdin", "--port", "/dev/ttyUSB0", "--baud", "115200"], /^monitor: give --port or --stdin, not both /],
      [["--port", join(scratch, "no-such-port"), "--baud", "115200"], /^monitor: cannot open \/.*no-such-port at 115200 baud: No such file or directory/],
      [["--port", "/dev/null", "--baud", "115200"], /^monitor: cannot open \/dev\/null at 115200 baud: Inappropriate ioctl for device/],
    ];
    const results = await Promise.all(cases.map(async ([argv]) => {
      const monitored = monitor(argv);
      return { ...(await withinTime("monitor " + argv.join(" "), monitored.exit)), stdout: monitored.stdout.text, stderr: monitored.stderr.text };
    }));
    cases.forEach(([argv, pattern], index) => {
      const { code, stdout, stderr } = results[index];
      assert.equal(code, 2, argv.join(" "));
      assert.equal(stdout, "", argv.join(" "));
      assert.match(stderr, pattern, argv.join(" "));
      assert.equal(outputLines(stderr).length, 1, "one line: " + stderr);
    });
  });

  test("--help prints the usage and exits 0", async () => {
    const monitored = monitor(["--help"]);
    assert.equal((await withinTime("the monitor to exit", monitored.exit)).code, 0);
    assert.match(monitored.stdout.text, /--port <path> --baud <rate>/);
  });
});

describe("npm run monitor on a serial line (socat pseudo-terminals)", () => {
  test("reads the port, passes lines through, follows the status, refuses a second opener, and ends when the line goes", async () => {
    const line = await serialLine();
    const monitored = monitor(["--port", line.monitorEnd, "--baud", "115200"]);
    await until("the monitor to open the port", () => monitored.stderr.text.includes("[monitor] reading"));
    assert.equal(monitored.stderr.text, `[monitor] reading ${line.monitorEnd} at 115200 baud; Ctrl-C to stop\n`);

    const online = app.state("state", "online", { inflight: 1, sent: 1 });
    await deviceWrites(line.deviceEnd, [
      Uint8Array.from([0x00, 0xff, 0x0f, 0xa5, 0x0d, 0x0a]), // noise while the board resets
      "ets Jul 29 2019 12:21:46\r\n",
      app.start() + "\r\n",
      app.state("state", "opening", { queue: 1 }).slice(0, 25),
      app.state("state", "opening", { queue: 1 }).slice(25) + "\r\n" + app.online() + "\r\n" + online.slice(0, 40),
      online.slice(40) + "\r\n",
      app.telemetry(1, "sent") + "\r\n" + app.drop(1) + "\r\n",
    ]);
    await until("the drop to show", () => monitored.stdout.text.includes("dropped=1 sent=1"));
    assert.deepEqual(outputLines(monitored.stdout.text), [
      "\x00\ufffd\x0f\ufffd",
      "ets Jul 29 2019 12:21:46",
      app.start(),
      "[status] state=starting queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-",
      app.state("state", "opening", { queue: 1 }),
      "[status] state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=0 backoff=- error=-",
      app.online(),
      online,
      "[status] state=online queue=0 inflight=1 dropped=0 sent=1 acked=0 attempt=0 backoff=- error=-",
      app.telemetry(1, "sent"),
      app.drop(1),
      "[status] state=online queue=0 inflight=1 dropped=1 sent=1 acked=0 attempt=0 backoff=- error=-",
    ]);

    const second = monitor(["--port", line.monitorEnd, "--baud", "115200"]);
    assert.equal((await withinTime("the second monitor to exit", second.exit)).code, 2);
    assert.match(second.stderr.text, /^monitor: cannot open \/dev\/pts\/\d+ at 115200 baud: .*lock port \(is another program using the port\?\)\n$/);

    await deviceWrites(line.deviceEnd, [app.state("state", "backoff", { dropped: 1, sent: 1 }) + "\r\n" + "half a line"]);
    await until("the backoff state", () => monitored.stdout.text.includes("[status] state=backoff"));
    line.socat.child.kill("SIGTERM"); // the serial line goes away (the board unplugged)
    await withinTime("socat to stop", line.socat.exit);
    const { code } = await withinTime("the monitor to exit", monitored.exit);
    assert.equal(code, 0, monitored.stderr.text);
    const shown = outputLines(monitored.stdout.text);
    assert.equal(shown.at(-2), "half a line", "a last unterminated line is not lost");
    assert.equal(shown.at(-1), "[summary] port closed: lines=10 iotlink=7 other=3 malformed=0 starts=1 online=1 offline=0 errors=0 drops=1 | " +
      "state=backoff queue=0 inflight=0 dropped=1 sent=1 acked=0 attempt=0 backoff=- error=-");
  });

  test("on a terminal, the status line is redrawn in place at the bottom", async () => {
    const line = await serialLine();
    // socat gives the monitor a pseudo-terminal as its standard output and copies what it shows to ours.
    const command = `${process.execPath} --import tsx tools/monitor.ts --port ${line.monitorEnd} --baud 115200`;
    assert.doesNotMatch(command, /[,:!"'\\]/, "nothing socat would read as address syntax");
    const terminal = run("socat", ["-u", `EXEC:${command},pty,raw,echo=0`, "STDOUT"]);
    await until("the monitor to open the port", () => terminal.stderr.text.includes("[monitor] reading"));
    await until("the first status line", () => terminal.stdout.text.includes("state=unknown"));

    const lines = [app.start(), "xsbug says hello", app.state("state", "opening", { queue: 1 }), app.backoff(4000, 3)];
    await deviceWrites(line.deviceEnd, lines.map((text) => text + "\r\n"));
    await until("the backoff to show", () => terminal.stdout.text.includes("backoff=4000ms"));
    line.socat.child.kill("SIGTERM");
    assert.equal((await withinTime("the monitor (and its socat) to exit", terminal.exit)).code, 0, terminal.stderr.text);

    const screen = terminal.stdout.text;
    const bar = (status: string) => "\x1b[7m[status] " + status + "\x1b[0m";
    assert.ok(screen.startsWith(CLEAR_LINE + bar("state=unknown queue=- inflight=- dropped=- sent=- acked=- attempt=- backoff=- error=-")), JSON.stringify(screen.slice(0, 200)));
    for (const text of lines) assert.ok(screen.includes(CLEAR_LINE + text + "\n") || screen.includes("\n" + text + "\n"), "passed through: " + text);
    assert.equal(screen.split("[status] ").length - 1, screen.split("\x1b[7m[status] ").length - 1, "status only ever in the bar, never as a line");
    assert.ok(screen.includes(bar("state=opening queue=1 inflight=0 dropped=0 sent=0 acked=0 attempt=3 backoff=4000ms error=-") + CLEAR_LINE + "[summary] port closed: "),
      "the last bar is erased for the summary: " + JSON.stringify(screen.slice(-400)));
    assert.match(screen, /\[summary\] port closed: lines=4 iotlink=3 other=1 .* \| state=opening .* attempt=3 backoff=4000ms error=-\n$/);
  });
});
