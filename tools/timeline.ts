// `npm run timeline`: one broker restart as the device app lives it, drawn as an SVG from the app's
// own log lines. It runs the device app (main.ts, unchanged, on the desktop host as `npm start`
// does) against a real Mosquitto with mutual TLS on 127.0.0.1 (the embedded broker when Mosquitto
// is not installed), stops the broker for --outage seconds, starts it again on the same port, and
// draws what the app logged: its state, queue depth and in-flight count, and each reconnect
// backoff with its delay, against time, with the outage shaded. `--from FILE` draws a saved log
// instead (`--log FILE` saves a run's; `npm start | tee FILE` works too).
//
//   npm run timeline                                   (writes docs/restart-timeline.svg, ~35 s)
//   npm run timeline -- --outage 20 --log run.log --out /tmp/restart.svg
//   npm run timeline -- --from run.log --out /tmp/restart.svg
//
// Times are the app's own clock: the `uptime` of its state and status lines (ms since it started).
// A line without one (backoff, online, ...) is placed at the uptime of the line before it, except
// offline, which the app logs just before the state change it causes: at the uptime of the next. The
// tool's own lines in a saved log start with "[timeline] " and say when the broker stopped and
// started on the same clock.
//
// The SVG is written by hand: no browser, no chart library. A problem is one line on stderr
// (tools/cli.ts): exit code 2 for a bad flag, 1 for a failure.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseLogLine, type LogLine } from "../modules/logline.ts";
import { BrokerListenError, startBroker } from "./broker.ts";
import { DEV_PKI_FILES, ensureDevPki } from "./certs.ts";
import { CommandError, helpIfAsked, readCommandLine, runCommand, UsageError } from "./cli.ts";
import { buildDesktopApp } from "./desktop-build.ts";
import { findMosquitto, startMosquitto } from "./mosquitto.ts";

export const TIMELINE_USAGE = `usage: npm run timeline -- [--out docs/restart-timeline.svg] [--outage 12] [--broker mosquitto|embedded] [--log FILE]
       npm run timeline -- --from FILE [--out docs/restart-timeline.svg]

Runs the device app (main.ts, on the desktop host as npm start does) through one broker restart and
draws it as an SVG: the app's state, queue depth and in-flight count, and each reconnect backoff
with its delay, against time, with the outage shaded. The app runs against a mutual-TLS broker on
127.0.0.1 with telemetry every 1 s, backoff from 1 s doubling to 8 s and the queue drained at
2 Hz; the broker is stopped once the app is online and started again on the same port --outage
seconds later. The run ends by itself a few seconds after the app has restored (about 35 s with
the default outage). Progress and a short summary go to stderr and stdout.

  --out FILE       where the SVG goes (default docs/restart-timeline.svg)
  --outage S       how long the broker is down, in seconds, 1 to 60 (default 12)
  --broker B       mosquitto (a real Mosquitto, the default when installed) or embedded
                   (the embedded broker of npm start)
  --log FILE       also save the run's log lines there (for --from)
  --from FILE      draw a saved log instead of running: the app's lines (iotlink ...) of
                   one boot, as --log or npm start | tee FILE saves them
  --help           this text

Exit codes: 0 when the SVG is written; 2 for a bad flag; 1 when the run or the log fails (the app
never came online or never restored, a file that cannot be read, a log without state lines).`;

const DEFAULT_OUT = "docs/restart-timeline.svg";

/** The settings of the run: what makes a restart readable in about 35 s. */
const RUN_SETTINGS: Readonly<Record<string, string>> = Object.freeze({
  telemetryIntervalMs: "1000",
  backoffBaseMs: "1000",
  backoffMaxMs: "8000",
  backoffJitter: "false",
  drainIntervalMs: "500",
  // State and status lines are the samples of queue and in-flight: four a second.
  statusIntervalMs: "250",
});
const RUN_DESCRIPTION = "telemetry at QoS 1 every 1 s, backoff 1 s doubling to 8 s, queue drained at 2 Hz, a status line every 250 ms";

/** Online this long before the broker stops, and this long after the app has restored. */
const LEAD_MS = 5000;
const TAIL_MS = 5000;
const ONLINE_TIMEOUT_MS = 20_000;

// ---------------------------------------------------------------------------------------------
// Reading a log

export interface Sample {
  /** Seconds on the app's clock. */
  readonly t: number;
  readonly state: string;
  readonly queue: number;
  readonly inflight: number;
  readonly dropped: number;
  readonly sent: number;
  readonly acked: number;
}

export interface Backoff {
  readonly t: number;
  /** Milliseconds. */
  readonly delay: number;
  readonly attempt: number;
}

export interface Marked {
  readonly t: number;
  readonly event: string;
  readonly fields: Readonly<Record<string, string>>;
}

export interface Timeline {
  /** Every state and status line, in order. */
  readonly samples: readonly Sample[];
  readonly backoffs: readonly Backoff[];
  /** The app's online, offline, restored, error and drop lines. */
  readonly events: readonly Marked[];
  /** When the broker stopped and started again (the tool's own lines), if the log says. */
  readonly outage?: { readonly from: number; readonly to?: number };
  /** The last time the log speaks of. */
  readonly end: number;
  /** What the tool said of the run: broker, settings. */
  readonly run: Readonly<Record<string, string>>;
  /** Lines of the app read. */
  readonly lineCount: number;
}

/** A log that cannot be drawn: a failure (exit 1), not a usage error. */
export class TimelineError extends CommandError {}

const TOOL_PREFIX = "[timeline] ";

/** One of the tool's own lines: `[timeline] <event> key=value ...`, in the app's format. */
export function toolLine(event: string, fields: Record<string, string | number>): string {
  let line = TOOL_PREFIX + event;
  for (const [key, value] of Object.entries(fields)) {
    const text = String(value);
    line += " " + key + "=" + (/^[A-Za-z0-9_.:/+#-]+$/.test(text) ? text : '"' + text.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"');
  }
  return line;
}

function parseToolLine(line: string): LogLine | undefined {
  return line.startsWith(TOOL_PREFIX) ? parseLogLine("iotlink " + line.slice(TOOL_PREFIX.length)) : undefined;
}

function count(fields: Readonly<Record<string, string>>, key: string): number {
  const value = Number(fields[key]);
  return Number.isFinite(value) ? value : 0;
}

/** Reads the app's log lines (and the tool's) of one boot. `source` names the log in problems. */
export function readTimeline(text: string, source = "the log"): Timeline {
  const samples: Sample[] = [];
  const backoffs: Backoff[] = [];
  const events: Marked[] = [];
  const run: Record<string, string> = {};
  let outageFrom: number | undefined;
  let outageTo: number | undefined;
  let now = 0;
  let end = 0;
  let starts = 0;
  let lineCount = 0;
  /** An offline line waiting for the state line it comes before. */
  let pendingOffline: Omit<Marked, "t"> | undefined;
  const lines = text.split("\n");
  for (const [index, raw] of lines.entries()) {
    const line = raw.replace(/\r$/, "");
    const tool = parseToolLine(line);
    if (tool) {
      const at = tool.fields.uptime !== undefined ? count(tool.fields, "uptime") / 1000 : now;
      if (tool.event === "run") Object.assign(run, tool.fields);
      else if (tool.event === "broker-stopped") outageFrom ??= at;
      else if (tool.event === "broker-started" && outageFrom !== undefined) outageTo ??= at;
      end = Math.max(end, at);
      continue;
    }
    const parsed = parseLogLine(line);
    if (!parsed) continue;
    lineCount++;
    if (parsed.event === "start" && ++starts > 1) {
      throw new TimelineError(`${source} holds more than one boot of the app (another start line at line ${index + 1}): keep the lines of one`);
    }
    if (parsed.fields.uptime !== undefined) {
      const uptime = count(parsed.fields, "uptime") / 1000;
      if (uptime + 0.001 < now) throw new TimelineError(`${source}: the uptime goes back at line ${index + 1} (${uptime} s after ${now} s): keep the lines of one boot`);
      now = uptime;
    }
    end = Math.max(end, now);
    if (pendingOffline) {
      events.push({ t: now, ...pendingOffline });
      pendingOffline = undefined;
    }
    if (parsed.event === "offline") pendingOffline = { event: parsed.event, fields: parsed.fields };
    else if (parsed.event === "state" || parsed.event === "status") {
      const f = parsed.fields;
      samples.push({ t: now, state: f.state ?? "unknown", queue: count(f, "queue"), inflight: count(f, "inflight"), dropped: count(f, "dropped"), sent: count(f, "sent"), acked: count(f, "acked") });
    } else if (parsed.event === "backoff") {
      backoffs.push({ t: now, delay: count(parsed.fields, "delay"), attempt: count(parsed.fields, "attempt") });
    } else if (["online", "offline", "restored", "error", "drop", "done"].includes(parsed.event)) {
      events.push({ t: now, event: parsed.event, fields: parsed.fields });
    }
  }
  if (pendingOffline) events.push({ t: now, ...pendingOffline });
  if (samples.length === 0) {
    throw new TimelineError(`${source} has no state lines of the app (iotlink state ...): save a run with npm run timeline -- --log FILE, or npm start | tee FILE`);
  }
  // A backoff's wait can run past the last line; so can the outage.
  for (const backoff of backoffs) end = Math.max(end, backoff.t + backoff.delay / 1000);
  return {
    samples,
    backoffs,
    events,
    outage: outageFrom === undefined ? undefined : { from: outageFrom, to: outageTo },
    end,
    run,
    lineCount,
  };
}

// ---------------------------------------------------------------------------------------------
// Drawing

/** Where things go, in SVG user units. */
export const LAYOUT = Object.freeze({
  width: 960,
  height: 540,
  plotLeft: 128,
  plotRight: 936,
  outageLabelY: 100,
  eventLabelY: [116, 128] as readonly number[],
  lanes: Object.freeze({
    state: { top: 136, height: 30 },
    queue: { top: 186, height: 104 },
    inflight: { top: 314, height: 40 },
    backoff: { top: 372, height: 44 },
  }),
  axisY: 432,
  legendY: 490,
});

export const STATE_COLOURS: Readonly<Record<string, string>> = Object.freeze({
  idle: "#bdbdbd",
  backoff: "#f59e0b",
  opening: "#93c5fd",
  "awaiting-connack": "#3b82f6",
  resubscribing: "#5eead4",
  draining: "#14b8a6",
  online: "#16a34a",
  closing: "#9ca3af",
});
const STATE_ORDER = ["online", "backoff", "opening", "awaiting-connack", "resubscribing", "draining", "closing", "idle"];
const DARK_LABEL = new Set(["idle", "backoff", "opening", "resubscribing", "closing"]);

const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A number for an attribute: at most 2 decimals, no trailing zeros. */
function n(value: number): string {
  return String(Math.round(value * 100) / 100);
}

/** Seconds as people say them: "1 s", "2.5 s", "250 ms". */
export function formatDelay(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  return `${Math.round(ms / 100) / 10} s`;
}

function seconds(t: number): string {
  return `${t.toFixed(1)} s`;
}

/** Roughly how wide a text is at this font size (the SVG is drawn without measuring). */
function textWidth(text: string, size: number): number {
  return text.length * size * 0.56;
}

/** The smallest of 1, 2, 5 x 10^k (at least `minimum`) that is at least `value`. */
function niceCeiling(value: number, minimum: number): number {
  const target = Math.max(value, minimum);
  for (let power = 1; ; power *= 10) {
    for (const step of [1, 2, 5]) if (step * power >= target) return step * power;
  }
}

function tickStep(span: number): number {
  for (const step of [1, 2, 5, 10, 20, 30, 60, 120, 300, 600]) if (span / step <= 14) return step;
  return Math.ceil(span / 14 / 600) * 600;
}

/** A piece of the state lane: one state from `from` to `to` seconds. */
export interface Band {
  readonly state: string;
  readonly from: number;
  readonly to: number;
}

export function stateBands(timeline: Timeline, end = timeline.end): Band[] {
  const bands: Band[] = [];
  for (const sample of timeline.samples) {
    const last = bands.at(-1);
    if (last && last.state === sample.state) continue;
    if (last) bands[bands.length - 1] = { ...last, to: sample.t };
    bands.push({ state: sample.state, from: sample.t, to: end });
  }
  return bands;
}

export interface DrawOptions {
  /** The lines under the title; default: what the log's [timeline] run line says. */
  readonly subtitle?: readonly string[];
}

/** The SVG of a timeline, as text. */
export function drawTimeline(timeline: Timeline, options: DrawOptions = {}): string {
  const L = LAYOUT;
  const t0 = 0;
  const step = tickStep(timeline.end);
  const t1 = Math.max(step, Math.ceil(timeline.end / step - 1e-9) * step);
  const plotWidth = L.plotRight - L.plotLeft;
  const x = (t: number): number => L.plotLeft + ((Math.min(Math.max(t, t0), t1) - t0) / (t1 - t0)) * plotWidth;
  const out: string[] = [];
  const text = (tx: number, ty: number, content: string, attributes = ""): void => {
    out.push(`<text x="${n(tx)}" y="${n(ty)}"${attributes ? " " + attributes : ""}>${escapeXml(content)}</text>`);
  };

  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${L.width}" height="${L.height}" viewBox="0 0 ${L.width} ${L.height}" font-family="${escapeXml(FONT)}" font-size="12" role="img" aria-labelledby="timeline-title timeline-desc">`);
  const title = "One broker restart, as the device app logged it";
  out.push(`<title id="timeline-title">${escapeXml(title)}</title>`);
  out.push(`<desc id="timeline-desc">${escapeXml(summarize(timeline).join(" "))}</desc>`);
  out.push(`<rect class="background" x="0" y="0" width="${L.width}" height="${L.height}" fill="#ffffff"/>`);
  text(16, 28, title, `font-size="17" font-weight="600" fill="#111827"`);
  const run = timeline.run;
  const outageText = run.outage ? ` for ${formatDelay(Number(run.outage))}` : "";
  const subtitle =
    options.subtitle ??
    (run.broker
      ? [`main.ts on the desktop host against ${run.broker} (mutual TLS, 127.0.0.1), stopped once${outageText} and started again on the same port`, run.settings ?? ""]
      : [`Drawn from ${run.source ?? "a saved log"}: ${timeline.lineCount} lines of the app`]);
  subtitle.forEach((line, index) => text(16, 50 + index * 16, line, `font-size="12" fill="#4b5563"`));

  // The plot's frame of reference, for readers and tests: x = data-x0 + (t - data-t0) / (data-t1 - data-t0) * data-width.
  out.push(`<g class="plot" data-x0="${L.plotLeft}" data-width="${plotWidth}" data-t0="${t0}" data-t1="${t1}">`);

  // Grid and time axis.
  const top = L.lanes.state.top;
  const bottom = L.lanes.backoff.top + L.lanes.backoff.height;
  out.push(`<g class="grid" stroke="#e5e7eb" stroke-width="1">`);
  for (let t = t0; t <= t1 + 1e-9; t += step) out.push(`<line x1="${n(x(t))}" y1="${top}" x2="${n(x(t))}" y2="${bottom}"/>`);
  out.push(`</g>`);

  // The outage, behind everything else.
  const outage = timeline.outage;
  if (outage) {
    const to = outage.to ?? timeline.end;
    out.push(`<rect class="outage" x="${n(x(outage.from))}" y="${L.outageLabelY + 6}" width="${n(x(to) - x(outage.from))}" height="${bottom - L.outageLabelY - 6}" fill="#ef4444" fill-opacity="0.10" stroke="#ef4444" stroke-opacity="0.5" stroke-dasharray="4 3"/>`);
    const label = outage.to !== undefined ? `broker down ${seconds(outage.to - outage.from)}` : "broker down";
    text((x(outage.from) + x(to)) / 2, L.outageLabelY, label, `class="outage-label" text-anchor="middle" font-weight="600" fill="#b91c1c"`);
  }

  // Lane names.
  const laneName = (lane: { top: number; height: number }, name: string, detail?: string): void => {
    text(16, lane.top + lane.height / 2 + (detail ? -2 : 4), name, `font-weight="600" fill="#111827"`);
    if (detail) text(16, lane.top + lane.height / 2 + 12, detail, `font-size="10" fill="#6b7280"`);
  };
  laneName(L.lanes.state, "state");
  laneName(L.lanes.queue, "queue depth", "requests waiting");
  laneName(L.lanes.inflight, "in flight", "QoS 1 not yet acked");
  laneName(L.lanes.backoff, "backoff", "wait before attempt n");

  // State: one coloured band per state, named where it is wide enough.
  const bands = stateBands(timeline, t1 > timeline.end ? timeline.end : t1);
  const stateLane = L.lanes.state;
  out.push(`<g class="states">`);
  for (const band of bands) {
    const bx = x(band.from);
    const width = Math.max(x(band.to) - bx, 0.75);
    const colour = STATE_COLOURS[band.state] ?? "#e5e7eb";
    out.push(`<rect class="state" data-state="${escapeXml(band.state)}" data-from="${n(band.from * 1000) }" x="${n(bx)}" y="${stateLane.top}" width="${n(width)}" height="${stateLane.height}" fill="${colour}"><title>${escapeXml(`${band.state}: ${seconds(band.from)} to ${seconds(band.to)}`)}</title></rect>`);
    if (width >= textWidth(band.state, 11) + 8) {
      text(bx + width / 2, stateLane.top + stateLane.height / 2 + 4, band.state, `class="state-label" text-anchor="middle" font-size="11" fill="${DARK_LABEL.has(band.state) ? "#1f2937" : "#ffffff"}"`);
    }
  }
  out.push(`</g>`);

  // Queue depth and in flight: step lines through the samples.
  const stepLane = (name: string, lane: { top: number; height: number }, value: (sample: Sample) => number, colour: string, minimumScale: number, peakLabel?: string): void => {
    const samples = timeline.samples;
    const peak = Math.max(...samples.map(value));
    const scale = niceCeiling(peak, minimumScale);
    const y = (v: number): number => lane.top + lane.height - (v / scale) * lane.height;
    out.push(`<g class="${name}">`);
    for (const v of [0, scale / 2, scale]) {
      if (!Number.isInteger(v)) continue;
      out.push(`<line x1="${L.plotLeft}" y1="${n(y(v))}" x2="${L.plotRight}" y2="${n(y(v))}" stroke="${v === 0 ? "#9ca3af" : "#e5e7eb"}" stroke-width="1"/>`);
      text(L.plotLeft - 6, y(v) + 4, String(v), `text-anchor="end" font-size="10" fill="#6b7280"`);
    }
    let path = `M${n(x(samples[0]!.t))} ${n(y(value(samples[0]!)))}`;
    for (const sample of samples.slice(1)) path += `H${n(x(sample.t))}V${n(y(value(sample)))}`;
    path += `H${n(x(Math.min(timeline.end, t1)))}`;
    const area = `${path}V${n(y(0))}H${n(x(samples[0]!.t))}Z`;
    out.push(`<path class="${name}-area" d="${area}" fill="${colour}" fill-opacity="0.15" stroke="none"/>`);
    out.push(`<path class="${name}-line" d="${path}" fill="none" stroke="${colour}" stroke-width="2" stroke-linejoin="round"/>`);
    if (peakLabel && peak > 0) {
      const top = samples.find((sample) => value(sample) === peak)!;
      text(x(top.t), y(peak) - 6, `${peak} ${peakLabel}`, `class="${name}-peak" text-anchor="middle" font-size="10.5" font-weight="600" fill="${colour}"`);
    }
    out.push(`</g>`);
  };
  stepLane("queue", L.lanes.queue, (sample) => sample.queue, "#7c3aed", 4, "queued");
  stepLane("inflight", L.lanes.inflight, (sample) => sample.inflight, "#0284c7", 2);

  // Backoff: a marker where the app entered backoff, a bar as long as the announced delay, the delay above.
  const lane = L.lanes.backoff;
  const barY = lane.top + 22;
  out.push(`<g class="backoffs">`);
  for (const backoff of timeline.backoffs) {
    const bx = x(backoff.t);
    const ex = x(backoff.t + backoff.delay / 1000);
    out.push(`<rect class="backoff-wait" x="${n(bx)}" y="${barY - 4}" width="${n(Math.max(ex - bx, 0.75))}" height="8" fill="#f59e0b" fill-opacity="0.35"/>`);
    out.push(`<line x1="${n(ex)}" y1="${barY - 7}" x2="${n(ex)}" y2="${barY + 7}" stroke="#b45309" stroke-width="1.5"/>`);
    out.push(`<circle class="backoff-marker" data-attempt="${backoff.attempt}" data-delay="${backoff.delay}" cx="${n(bx)}" cy="${barY}" r="4.5" fill="#b45309"><title>${escapeXml(`attempt ${backoff.attempt}: wait ${formatDelay(backoff.delay)} (at ${seconds(backoff.t)})`)}</title></circle>`);
    const label = formatDelay(backoff.delay);
    const labelX = ex - bx >= textWidth(label, 11) + 4 ? (bx + ex) / 2 : bx + 6;
    text(labelX, barY - 10, label, `class="backoff-label" text-anchor="${labelX === bx + 6 ? "start" : "middle"}" font-size="11" font-weight="600" fill="#92400e"`);
    text(bx, barY + 18, `#${backoff.attempt}`, `text-anchor="middle" font-size="10" fill="#6b7280"`);
  }
  if (timeline.backoffs.length === 0) text(L.plotLeft + 6, barY + 4, "no backoff in this log", `font-size="11" fill="#6b7280"`);
  out.push(`</g>`);

  // The app's connection events: a dashed line through the lanes and its name above, on two rows when crowded.
  const marks = timeline.events.filter((event) => event.event === "online" || event.event === "offline" || event.event === "restored");
  const rowEnds = L.eventLabelY.map(() => -Infinity);
  out.push(`<g class="events">`);
  for (const mark of marks) {
    const mx = x(mark.t);
    const colour = mark.event === "offline" ? "#b91c1c" : mark.event === "online" ? "#15803d" : "#0f766e";
    out.push(`<line class="event" data-event="${mark.event}" x1="${n(mx)}" y1="${L.eventLabelY[0]! + 2}" x2="${n(mx)}" y2="${bottom}" stroke="${colour}" stroke-width="1" stroke-dasharray="2 3" stroke-opacity="0.8"/>`);
    const label = mark.event;
    const width = textWidth(label, 10.5);
    const row = rowEnds.findIndex((endX) => endX < mx + 2);
    if (row < 0) continue;
    rowEnds[row] = mx + 3 + width + 4;
    text(mx + 3, L.eventLabelY[row]!, label, `class="event-label" font-size="10.5" fill="${colour}"`);
  }
  out.push(`</g>`);

  // Time axis.
  out.push(`<g class="axis">`);
  out.push(`<line x1="${L.plotLeft}" y1="${L.axisY}" x2="${L.plotRight}" y2="${L.axisY}" stroke="#6b7280" stroke-width="1"/>`);
  for (let t = t0; t <= t1 + 1e-9; t += step) {
    out.push(`<line x1="${n(x(t))}" y1="${L.axisY}" x2="${n(x(t))}" y2="${L.axisY + 5}" stroke="#6b7280" stroke-width="1"/>`);
    text(x(t), L.axisY + 18, String(t), `text-anchor="middle" font-size="11" fill="#374151"`);
  }
  text((L.plotLeft + L.plotRight) / 2, L.axisY + 36, "seconds since the app started (its uptime)", `text-anchor="middle" font-size="11" fill="#374151"`);
  out.push(`</g>`);
  out.push(`</g>`);

  // Legend: the states seen, in a fixed order, then the other marks.
  out.push(`<g class="legend" font-size="11" fill="#374151">`);
  const seen = new Set(bands.map((band) => band.state));
  const states = [...STATE_ORDER.filter((state) => seen.has(state)), ...[...seen].filter((state) => !STATE_ORDER.includes(state))];
  let lx = 16;
  for (const state of states) {
    // A state too short to see at this scale says how often and how long it was.
    const own = bands.filter((band) => band.state === state);
    const longest = Math.max(...own.map((band) => band.to - band.from));
    const label = x(longest) - x(0) < 3 ? `${state} (${own.length}\u00d7, \u2264 ${Math.max(1, Math.round(longest * 1000))} ms)` : state;
    out.push(`<rect x="${n(lx)}" y="${L.legendY - 9}" width="12" height="12" fill="${STATE_COLOURS[state] ?? "#e5e7eb"}"/>`);
    text(lx + 16, L.legendY + 1, label);
    lx += 16 + textWidth(label, 11) + 14;
  }
  if (outage) {
    out.push(`<rect x="${n(lx)}" y="${L.legendY - 9}" width="12" height="12" fill="#ef4444" fill-opacity="0.10" stroke="#ef4444" stroke-opacity="0.5" stroke-dasharray="3 2"/>`);
    text(lx + 16, L.legendY + 1, "broker stopped");
  }
  out.push(`</g>`);
  text(16, L.height - 16, "Drawn by tools/timeline.ts from the app's own log lines (npm run timeline): times are its uptime; queue and in flight as each state and status line reported them.", `font-size="10" fill="#9ca3af"`);
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

// ---------------------------------------------------------------------------------------------
// The summary

/** A few lines on what the log shows. */
export function summarize(timeline: Timeline): string[] {
  const lines: string[] = [];
  const { outage, backoffs, events, samples } = timeline;
  const last = samples.at(-1)!;
  if (outage) lines.push(`broker down ${outage.to !== undefined ? seconds(outage.to - outage.from) : "until the end"}: stopped at ${seconds(outage.from)}${outage.to !== undefined ? `, started again at ${seconds(outage.to)}` : ""}.`);
  const after = outage?.from ?? 0;
  const offline = events.find((event) => event.event === "offline" && event.t >= after - 0.001);
  const online = events.find((event) => event.event === "online" && offline !== undefined && event.t >= offline.t);
  const restored = events.find((event) => event.event === "restored" && online !== undefined && event.t >= online.t);
  if (offline) lines.push(`offline at ${seconds(offline.t)} (${offline.fields.reason ?? "no reason given"}).`);
  if (backoffs.length > 0) lines.push(`backoff ${backoffs.map((backoff) => formatDelay(backoff.delay)).join(", ")} (attempts ${backoffs[0]!.attempt} to ${backoffs.at(-1)!.attempt}).`);
  if (online && offline) lines.push(`online again at ${seconds(online.t)}, ${seconds(online.t - offline.t)} after going offline${outage?.to !== undefined ? ` and ${seconds(online.t - outage.to)} after the broker was back` : ""}.`);
  if (restored) {
    const peak = Math.max(...samples.filter((sample) => sample.t >= (offline?.t ?? 0) && sample.t <= restored.t).map((sample) => sample.queue));
    lines.push(`restored at ${seconds(restored.t)}: the queue, ${peak} at its peak, drained in ${seconds(restored.t - online!.t)}.`);
  }
  lines.push(`peak queue ${Math.max(...samples.map((sample) => sample.queue))}, peak in flight ${Math.max(...samples.map((sample) => sample.inflight))}, dropped ${last.dropped}; sent ${last.sent}, acked ${last.acked} at ${seconds(last.t)}.`);
  return lines;
}

// ---------------------------------------------------------------------------------------------
// The run

interface Recording {
  readonly lines: string[];
  readonly brokerName: string;
}

function say(line: string): void {
  process.stderr.write(`[timeline] ${line}\n`);
}

/** The environment for the app: this process's, without the user's IOTLINK_* (the run's settings are the tool's). */
function appEnvironment(settings: Record<string, string>): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith("IOTLINK_") || name === "IOTLINK_DEBUG") environment[name] = value;
  return { ...environment, ...settings };
}

interface BrokerHandle {
  readonly port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

async function openBroker(kind: "mosquitto" | "embedded", pki: string): Promise<BrokerHandle> {
  if (kind === "mosquitto") {
    const broker = await startMosquitto({
      host: "127.0.0.1",
      tls: { caFile: join(pki, DEV_PKI_FILES.caCertificatePem), certFile: join(pki, DEV_PKI_FILES.brokerChainPem), keyFile: join(pki, DEV_PKI_FILES.brokerKeyPem) },
      logTypes: ["error", "warning"],
    });
    return { port: broker.port, stop: () => broker.kill(), start: () => broker.restart(), close: () => broker.stop() };
  }
  let broker = await startBroker({ host: "127.0.0.1", port: 0, certificateDirectory: pki, keepMessages: false });
  const port = broker.port;
  let running = true;
  return {
    port,
    stop: async () => {
      running = false;
      await broker.stop();
    },
    start: async () => {
      broker = await startBroker({ host: "127.0.0.1", port, certificateDirectory: pki, keepMessages: false });
      running = true;
    },
    close: async () => {
      if (running) await broker.stop();
      running = false;
    },
  };
}

/** "Mosquitto 2.0.11", as its -h says. */
function mosquittoVersion(): string {
  const binary = findMosquitto();
  if (!binary) return "Mosquitto";
  const result = spawnSync(binary, ["-h"], { encoding: "utf8", timeout: 5000 });
  const version = /mosquitto version (\S+)/.exec(`${result.stdout ?? ""}${result.stderr ?? ""}`)?.[1];
  return version ? `Mosquitto ${version}` : "Mosquitto";
}

/** Runs the app through one broker restart; returns its log lines with the tool's own among them. */
async function record(outageMs: number, kind: "mosquitto" | "embedded", cleanups: Array<() => Promise<void> | void>): Promise<Recording> {
  const scratch = mkdtempSync(join(tmpdir(), "iotlink-timeline-"));
  cleanups.push(() => rmSync(scratch, { recursive: true, force: true }));
  const pki = ensureDevPki({ directory: join(scratch, "certs") }).directory;
  const bundle = await buildDesktopApp(join(scratch, "main.mjs"));

  let broker: BrokerHandle;
  try {
    broker = await openBroker(kind, pki);
  } catch (error) {
    if (error instanceof BrokerListenError) throw new CommandError(error.message);
    throw new CommandError(`the broker did not start: ${(error instanceof Error ? error.message : String(error)).split("\n")[0]}`);
  }
  cleanups.push(() => broker.close());
  const brokerName = kind === "mosquitto" ? mosquittoVersion() : "the embedded broker (aedes)";
  say(`${brokerName} on 127.0.0.1:${broker.port}; starting the app`);

  const settings: Record<string, string> = {
    IOTLINK_RESOURCES: pki,
    IOTLINK_CONFIG_endpoint: "127.0.0.1",
    IOTLINK_CONFIG_serverName: "localhost",
    IOTLINK_CONFIG_port: String(broker.port),
  };
  for (const [name, value] of Object.entries(RUN_SETTINGS)) settings["IOTLINK_CONFIG_" + name] = value;
  const lines: string[] = [toolLine("run", { broker: brokerName, settings: RUN_DESCRIPTION, outage: outageMs })];
  const app: ChildProcess = spawn(process.execPath, ["--enable-source-maps", bundle], { env: appEnvironment(settings), stdio: ["ignore", "pipe", "pipe"] });
  let exited = false;
  const exit = once(app, "exit").then(() => {
    exited = true;
  });
  cleanups.push(async () => {
    if (exited) return;
    app.kill("SIGTERM");
    const timer = setTimeout(() => app.kill("SIGKILL"), 3000);
    await exit;
    clearTimeout(timer);
  });

  // The app's clock: the wall time of its last state or status line, minus its uptime.
  let offset: number | undefined;
  let lastError: string | undefined;
  const stderrTail: string[] = [];
  const parsed: LogLine[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: app.stdout!, crlfDelay: Infinity }).on("line", (line) => {
    lines.push(line);
    const logLine = parseLogLine(line);
    if (!logLine) return;
    parsed.push(logLine);
    if (logLine.fields.uptime !== undefined) offset = Date.now() - Number(logLine.fields.uptime);
    if (logLine.event === "error") lastError = `${logLine.fields.code}: ${logLine.fields.message}`;
    for (const wake of [...waiters]) wake();
  });
  createInterface({ input: app.stderr!, crlfDelay: Infinity }).on("line", (line) => {
    stderrTail.push(line);
    if (stderrTail.length > 5) stderrTail.shift();
  });
  const uptimeNow = (): number => (offset === undefined ? 0 : Date.now() - offset);

  const waitFor = (event: string, from: number, timeoutMs: number, what: string): Promise<void> =>
    new Promise((done, fail) => {
      const check = (): void => {
        if (parsed.slice(from).some((line) => line.event === event)) finish(done);
      };
      const finish = (then: () => void): void => {
        waiters.delete(check);
        clearTimeout(timer);
        clearInterval(watch);
        then();
      };
      const timer = setTimeout(() => finish(() => fail(new CommandError(`the app ${what} within ${timeoutMs / 1000} s${lastError ? ` (last error ${lastError})` : ""}`))), timeoutMs);
      const watch = setInterval(() => {
        if (exited) finish(() => fail(new CommandError(`the app stopped before it ${what.replace(/^did not /, "")}${stderrTail.length ? `: ${stderrTail.at(-1)}` : ""}`)));
      }, 100);
      waiters.add(check);
      check();
    });

  await waitFor("restored", 0, ONLINE_TIMEOUT_MS, "did not come online");
  say(`online and restored at ${seconds(uptimeNow() / 1000)}; the broker stops in ${LEAD_MS / 1000} s for ${outageMs / 1000} s`);
  await delay(LEAD_MS);

  lines.push(toolLine("broker-stopped", { uptime: Math.round(uptimeNow()) }));
  await broker.stop();
  const mark = parsed.length;
  say(`broker stopped at ${seconds(uptimeNow() / 1000)}`);
  await delay(outageMs);
  try {
    await broker.start();
  } catch (error) {
    throw new CommandError(`the broker did not start again on port ${broker.port}: ${(error instanceof Error ? error.message : String(error)).split("\n")[0]}`);
  }
  lines.push(toolLine("broker-started", { uptime: Math.round(uptimeNow()) }));
  say(`broker started again at ${seconds(uptimeNow() / 1000)}; waiting for the app to restore`);
  // The longest wait is one backoff of 8 s, then the queue drains at 2 Hz.
  await waitFor("restored", mark, 8000 + outageMs + 30_000, "did not restore after the restart");
  say(`restored at ${seconds(uptimeNow() / 1000)}; ${TAIL_MS / 1000} s more`);
  await delay(TAIL_MS);
  lines.push(toolLine("end", { uptime: Math.round(uptimeNow()) }));
  return { lines, brokerName };
}

function delay(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

// ---------------------------------------------------------------------------------------------
// The command

function outageSeconds(value: string): number {
  const number = /^\d+(\.\d+)?$/.test(value) ? Number(value) : Number.NaN;
  if (!(number >= 1 && number <= 60)) throw new UsageError(`--outage must be a number of seconds from 1 to 60, got ${JSON.stringify(value)}`);
  return Math.round(number * 1000);
}

function writeSvg(out: string, svg: string): void {
  try {
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, svg);
  } catch (error) {
    throw new CommandError(`cannot write ${out}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

function shown(path: string): string {
  const relativePath = relative(process.cwd(), path);
  return relativePath.startsWith("..") ? path : relativePath;
}

async function main(): Promise<void> {
  const values = readCommandLine({
    out: { type: "string" },
    outage: { type: "string" },
    broker: { type: "string" },
    log: { type: "string" },
    from: { type: "string" },
  });
  helpIfAsked(values, TIMELINE_USAGE);
  for (const name of ["out", "log", "from"] as const) if (values[name] === "") throw new UsageError(`--${name} needs a file name`);
  const out = resolve(values.out ?? DEFAULT_OUT);

  if (values.from !== undefined) {
    for (const name of ["outage", "broker", "log"] as const) {
      if (values[name] !== undefined) throw new UsageError(`--${name} is for a run; --from draws a saved log`);
    }
    let text: string;
    try {
      text = readFileSync(values.from, "utf8");
    } catch (error) {
      throw new CommandError(`cannot read ${values.from}: ${(error as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (error as Error).message}`);
    }
    const timeline = readTimeline(text, values.from);
    const withSource = timeline.run.broker ? timeline : { ...timeline, run: { ...timeline.run, source: values.from } };
    writeSvg(out, drawTimeline(withSource));
    for (const line of summarize(timeline)) process.stdout.write(line + "\n");
    process.stdout.write(`wrote ${shown(out)} from ${values.from} (${timeline.lineCount} lines of the app, ${seconds(timeline.end)})\n`);
    return;
  }

  const outageMs = outageSeconds(values.outage ?? "12");
  if (values.broker !== undefined && values.broker !== "mosquitto" && values.broker !== "embedded") {
    throw new UsageError(`--broker is mosquitto or embedded, got ${JSON.stringify(values.broker)}`);
  }
  let kind = values.broker as "mosquitto" | "embedded" | undefined;
  if (kind === "mosquitto" && !findMosquitto()) throw new CommandError("Mosquitto is not installed (apt-get install mosquitto), or leave out --broker mosquitto to use the embedded broker");
  if (kind === undefined) {
    kind = findMosquitto() ? "mosquitto" : "embedded";
    if (kind === "embedded") say("Mosquitto is not installed: using the embedded broker (apt-get install mosquitto for a real one)");
  }

  const cleanups: Array<() => Promise<void> | void> = [];
  const cleanUp = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch {
        // Best effort: the rest still runs.
      }
    }
  };
  // Ctrl-C or SIGTERM: the app, the broker and the scratch folder go first; a second signal while they do is ignored, not fatal.
  let interrupted = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (interrupted) return;
      interrupted = true;
      void cleanUp().then(() => {
        process.stderr.write("timeline: stopped before the end; nothing written\n");
        process.exit(1);
      });
    });
  }
  let recording: Recording;
  try {
    recording = await record(outageMs, kind, cleanups);
  } finally {
    await cleanUp();
  }
  const text = recording.lines.join("\n") + "\n";
  if (values.log !== undefined) {
    try {
      mkdirSync(dirname(resolve(values.log)), { recursive: true });
      writeFileSync(values.log, text);
    } catch (error) {
      throw new CommandError(`cannot write ${values.log}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  }
  const timeline = readTimeline(text, "the run");
  writeSvg(out, drawTimeline(timeline));
  for (const line of summarize(timeline)) process.stdout.write(line + "\n");
  process.stdout.write(`wrote ${shown(out)}${values.log !== undefined ? ` and the log ${values.log}` : ""} (${timeline.lineCount} lines of the app, ${seconds(timeline.end)})\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // Exits by itself: nothing of the run may keep the process alive.
  void runCommand("timeline", main).then(() => process.exit(0));
}
