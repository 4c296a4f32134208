// `npm run timeline` without a broker: the SVG drawn from a small fixed log (well-formed, each state
// band and backoff marker where its time puts it, the outage shaded), the log's problems said, and
// the command's --help, bad flags and --from as a user meets them. The real run (a broker restart)
// made docs/restart-timeline.svg; it takes ~35 s and is not repeated here.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { drawTimeline, readTimeline, summarize, TimelineError, toolLine } from "../../tools/timeline.ts";
import { runScript } from "./command-line.ts";

const counters = (queue: number, inflight: number, attempt: number, uptime: number): string =>
  `queue=${queue} inflight=${inflight} dropped=0 attempt=${attempt} sent=${4 + inflight} acked=4 received=5 uptime=${uptime}`;

/** One boot: online at 0.1 s, the broker down from 4 s to 9 s, backoff 1, 2, 4 s, online again at 11.05 s, restored at 12 s. */
const LOG = [
  toolLine("run", { broker: "Mosquitto 2.0.11", settings: "telemetry at QoS 1 every 1 s", outage: 5000 }),
  "iotlink start client=iotlink-device endpoint=127.0.0.1:8883 tls=true mutual=true telemetry=iotlink/iotlink-device/telemetry commands=iotlink/iotlink-device/cmd",
  `iotlink state state=opening ${counters(0, 0, 0, 20)}`,
  `iotlink state state=awaiting-connack ${counters(0, 0, 0, 60)}`,
  `iotlink state state=online ${counters(0, 0, 0, 100)}`,
  "iotlink online endpoint=127.0.0.1:8883 session=false",
  "iotlink restored queue=0",
  "a line of something else, ignored",
  `iotlink status state=online ${counters(0, 1, 0, 2000)}`,
  toolLine("broker-stopped", { uptime: 4000 }),
  `iotlink status state=online ${counters(0, 0, 0, 4000)}`,
  'iotlink offline reason="connection lost: closed by the broker"',
  `iotlink state state=backoff ${counters(0, 0, 1, 4050)}`,
  "iotlink backoff delay=1000 attempt=1",
  `iotlink state state=opening ${counters(1, 0, 1, 5050)}`,
  'iotlink error code=connect-failed message="connection closed before CONNACK"',
  `iotlink state state=backoff ${counters(1, 0, 2, 5060)}`,
  "iotlink backoff delay=2000 attempt=2",
  `iotlink state state=opening ${counters(3, 0, 2, 7060)}`,
  `iotlink state state=backoff ${counters(3, 0, 3, 7070)}`,
  "iotlink backoff delay=4000 attempt=3",
  toolLine("broker-started", { uptime: 9000 }),
  `iotlink state state=opening ${counters(7, 0, 3, 11070)}`,
  `iotlink state state=awaiting-connack ${counters(7, 0, 3, 11080)}`,
  `iotlink state state=resubscribing ${counters(7, 0, 3, 11090)}`,
  "iotlink online endpoint=127.0.0.1:8883 session=false",
  `iotlink state state=draining ${counters(6, 1, 3, 11100)}`,
  `iotlink status state=draining ${counters(3, 1, 3, 11500)}`,
  `iotlink state state=online ${counters(0, 0, 3, 12000)}`,
  "iotlink restored queue=0",
  `iotlink status state=online ${counters(0, 0, 3, 14000)}`,
  toolLine("end", { uptime: 14500 }),
].join("\n");

interface Element {
  readonly name: string;
  readonly attributes: Record<string, string>;
}

/** Checks that `svg` is well-formed XML (one root, every tag closed in order, attributes quoted) and returns its elements. */
function parseSvg(svg: string): Element[] {
  const elements: Element[] = [];
  const open: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<\?[\s\S]*?\?>/g;
  let at = 0;
  let roots = 0;
  for (let match = tag.exec(svg); match; match = tag.exec(svg)) {
    const between = svg.slice(at, match.index);
    assert.ok(!/[<>]/.test(between), `stray < or > before offset ${match.index}: ${JSON.stringify(between.slice(0, 60))}`);
    assert.ok(!/&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(between), `an unescaped & in ${JSON.stringify(between.slice(0, 60))}`);
    if (open.length === 0) assert.equal(between.trim(), "", "nothing outside the root");
    at = match.index + match[0].length;
    if (match[2] === undefined) continue;
    const [, closing, name, attributeText, selfClosing] = match;
    if (closing) {
      assert.equal(open.pop(), name, `</${name}> closes the element last opened`);
      continue;
    }
    if (open.length === 0) roots++;
    const attributes: Record<string, string> = {};
    for (const [, key, value] of (attributeText ?? "").matchAll(/([\w:-]+)="([^"]*)"/g)) {
      assert.ok(!(key! in attributes), `attribute ${key} given twice on <${name}>`);
      attributes[key!] = value!;
    }
    elements.push({ name: name!, attributes });
    if (!selfClosing) open.push(name!);
  }
  assert.equal(svg.slice(at).trim(), "", "nothing after the root");
  assert.deepEqual(open, [], "every element is closed");
  assert.equal(roots, 1, "one root element");
  return elements;
}

const byClass = (elements: Element[], name: string, className: string): Element[] => elements.filter((element) => element.name === name && element.attributes.class === className);

describe("the timeline drawn from a fixed log", () => {
  const timeline = readTimeline(LOG, "the fixture");
  const svg = drawTimeline(timeline);
  const elements = parseSvg(svg);
  const plot = elements.find((element) => element.name === "g" && element.attributes.class === "plot")!;
  const x0 = Number(plot.attributes["data-x0"]);
  const width = Number(plot.attributes["data-width"]);
  const t1 = Number(plot.attributes["data-t1"]);
  /** Where a time in seconds must be drawn. */
  const xOf = (t: number): number => x0 + (t / t1) * width;
  const near = (actual: string | undefined, expected: number, what: string): void => {
    assert.ok(Math.abs(Number(actual) - expected) <= 0.01, `${what} at x=${actual}, expected ${expected.toFixed(2)}`);
  };

  test("reads the times from the app's uptime, lines without one at the line before (offline at the state change after it)", () => {
    assert.equal(timeline.samples.length, 17);
    assert.deepEqual(timeline.backoffs, [
      { t: 4.05, delay: 1000, attempt: 1 },
      { t: 5.06, delay: 2000, attempt: 2 },
      { t: 7.07, delay: 4000, attempt: 3 },
    ]);
    assert.deepEqual(
      timeline.events.map((event) => [event.event, event.t]),
      [["online", 0.1], ["restored", 0.1], ["offline", 4.05], ["error", 5.05], ["online", 11.09], ["restored", 12]],
    );
    assert.deepEqual(timeline.outage, { from: 4, to: 9 });
    assert.equal(timeline.end, 14.5);
    assert.equal(timeline.lineCount, 27);
  });

  test("is one well-formed SVG document with a title and a white background", () => {
    assert.equal(elements[0]!.name, "svg");
    assert.equal(elements[0]!.attributes.xmlns, "http://www.w3.org/2000/svg");
    assert.equal(elements[0]!.attributes.viewBox, `0 0 ${elements[0]!.attributes.width} ${elements[0]!.attributes.height}`);
    assert.match(svg, /<title id="timeline-title">One broker restart, as the device app logged it<\/title>/);
    assert.match(svg, /Mosquitto 2\.0\.11 \(mutual TLS, 127\.0\.0\.1\), stopped once for 5 s/);
    assert.equal(byClass(elements, "rect", "background").length, 1);
    assert.equal(t1, 16, "the axis runs to the tick after the end (14.5 s; a tick every 2 s)");
    assert.equal(elements.filter((element) => element.name === "g").length, svg.match(/<\/g>/g)!.length);
  });

  test("draws each state as a band from the time it was entered", () => {
    const bands = byClass(elements, "rect", "state");
    const expected: Array<[string, number, number]> = [
      ["opening", 0.02, 0.06],
      ["awaiting-connack", 0.06, 0.1],
      ["online", 0.1, 4.05],
      ["backoff", 4.05, 5.05],
      ["opening", 5.05, 5.06],
      ["backoff", 5.06, 7.06],
      ["opening", 7.06, 7.07],
      ["backoff", 7.07, 11.07],
      ["opening", 11.07, 11.08],
      ["awaiting-connack", 11.08, 11.09],
      ["resubscribing", 11.09, 11.1],
      ["draining", 11.1, 12],
      ["online", 12, 14.5],
    ];
    assert.deepEqual(bands.map((band) => band.attributes["data-state"]), expected.map(([state]) => state));
    bands.forEach((band, index) => {
      const [state, from, to] = expected[index]!;
      near(band.attributes.x, xOf(from), `the ${state} band from ${from} s`);
      assert.ok(Math.abs(Number(band.attributes.width) - Math.max(xOf(to) - xOf(from), 0.75)) <= 0.02, `the ${state} band from ${from} s is ${to - from} s wide`);
    });
    // The wide bands are named in them; the legend says how short the short ones were.
    const labels = [...svg.matchAll(/<text [^>]*class="state-label"[^>]*>([^<]*)<\/text>/g)].map((match) => match[1]);
    assert.deepEqual(labels, ["online", "backoff", "backoff", "online"]);
    assert.match(svg, />opening \(4\u00d7, \u2264 40 ms\)</);
  });

  test("puts a backoff marker where each wait began, with its delay, and a bar as long as the wait", () => {
    const markers = byClass(elements, "circle", "backoff-marker");
    assert.deepEqual(markers.map((marker) => [marker.attributes["data-attempt"], marker.attributes["data-delay"]]), [["1", "1000"], ["2", "2000"], ["3", "4000"]]);
    const bars = byClass(elements, "rect", "backoff-wait");
    for (const [index, backoff] of timeline.backoffs.entries()) {
      near(markers[index]!.attributes.cx, xOf(backoff.t), `backoff marker ${backoff.attempt}`);
      near(bars[index]!.attributes.x, xOf(backoff.t), `backoff bar ${backoff.attempt}`);
      assert.ok(Math.abs(Number(bars[index]!.attributes.width) - (xOf(backoff.t + backoff.delay / 1000) - xOf(backoff.t))) <= 0.02, `bar ${backoff.attempt} is ${backoff.delay} ms long`);
    }
    const labels = [...svg.matchAll(/<text [^>]*class="backoff-label"[^>]*>([^<]*)<\/text>/g)].map((match) => match[1]);
    assert.deepEqual(labels, ["1 s", "2 s", "4 s"]);
  });

  test("shades the outage and marks offline, online and restored", () => {
    const [outage] = byClass(elements, "rect", "outage");
    near(outage!.attributes.x, xOf(4), "the outage");
    assert.ok(Math.abs(Number(outage!.attributes.width) - (xOf(9) - xOf(4))) <= 0.02, "the outage is 5 s wide");
    assert.match(svg, /class="outage-label"[^>]*>broker down 5\.0 s</);
    const lines = elements.filter((element) => element.name === "line" && element.attributes.class === "event");
    assert.deepEqual(lines.map((line) => line.attributes["data-event"]), ["online", "restored", "offline", "online", "restored"]);
    near(lines[2]!.attributes.x1, xOf(4.05), "offline");
    near(lines[3]!.attributes.x1, xOf(11.09), "online again");
  });

  test("draws queue depth and in flight as step lines, and says the peak", () => {
    const [queue] = elements.filter((element) => element.name === "path" && element.attributes.class === "queue-line");
    // Every sample is a step: a horizontal move to its time, then a vertical one to its value.
    assert.equal(queue!.attributes.d!.match(/H/g)!.length, timeline.samples.length);
    assert.match(svg, /class="queue-peak"[^>]*>7 queued</);
    assert.equal(elements.filter((element) => element.name === "path" && element.attributes.class === "inflight-line").length, 1);
  });

  test("summarizes the run in a few lines", () => {
    assert.deepEqual(summarize(timeline), [
      "broker down 5.0 s: stopped at 4.0 s, started again at 9.0 s.",
      "offline at 4.0 s (connection lost: closed by the broker).",
      "backoff 1 s, 2 s, 4 s (attempts 1 to 3).",
      "online again at 11.1 s, 7.0 s after going offline and 2.1 s after the broker was back.",
      "restored at 12.0 s: the queue, 7 at its peak, drained in 0.9 s.",
      "peak queue 7, peak in flight 1, dropped 0; sent 4, acked 4 at 14.0 s.",
    ]);
  });

  test("escapes text from the log", () => {
    const drawn = drawTimeline(readTimeline(LOG.replace("Mosquitto 2.0.11", "A<B> & \\\"C\\\""), "x"));
    parseSvg(drawn);
    assert.match(drawn, /A&lt;B&gt; &amp; &quot;C&quot;/);
  });
});

describe("a log the timeline cannot draw", () => {
  test("two boots, an uptime going back, no state lines: the problem in one line", () => {
    const twice = LOG + "\n" + LOG.split("\n").slice(1, 4).join("\n");
    assert.throws(() => readTimeline(twice, "run.log"), (error: Error) => error instanceof TimelineError && error.message === "run.log holds more than one boot of the app (another start line at line 33): keep the lines of one");
    assert.throws(() => readTimeline(LOG + `\niotlink status state=online ${counters(0, 0, 0, 5)}`, "run.log"), /run\.log: the uptime goes back at line 33 \(0\.005 s after 14 s\)/);
    assert.throws(() => readTimeline("iotlink start client=x\nhello\n", "empty.log"), /empty\.log has no state lines of the app \(iotlink state \.\.\.\)/);
  });
});

describe("npm run timeline as a user runs it", () => {
  let scratch: string;
  before(() => {
    scratch = mkdtempSync(join(tmpdir(), "iotlink-timeline-"));
    writeFileSync(join(scratch, "run.log"), LOG + "\n");
  });
  after(() => rmSync(scratch, { recursive: true, force: true }));

  test("--help: the usage on stdout, exit 0", async () => {
    const result = await runScript("timeline", ["--help"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^usage: npm run timeline -- \[--out docs\/restart-timeline\.svg\] \[--outage 12\]/);
    assert.equal(result.stderr, "");
  });

  test("a bad flag or value: one line naming it, exit 2, and nothing run", async () => {
    const cases: Array<[string[], string]> = [
      [["--outages", "5"], "timeline: unknown option --outages (see npm run timeline -- --help)"],
      [["--outage", "0"], 'timeline: --outage must be a number of seconds from 1 to 60, got "0"'],
      [["--outage", "-5"], 'timeline: --outage must be a number of seconds from 1 to 60, got "-5"'],
      [["--broker", "hivemq"], 'timeline: --broker is mosquitto or embedded, got "hivemq"'],
      [["--from", "run.log", "--outage", "5"], "timeline: --outage is for a run; --from draws a saved log"],
      [["--out"], "timeline: --out needs a value (see npm run timeline -- --help)"],
    ];
    const results = await Promise.all(cases.map(([args]) => runScript("timeline", args, { cwd: scratch })));
    results.forEach((result, index) => {
      assert.equal(result.timedOut, false);
      assert.deepEqual(result.errorLines, [cases[index]![1]]);
      assert.equal(result.code, 2, cases[index]![1]);
      assert.equal(result.stdout, "");
    });
  });

  test("--from a saved log: the SVG and the summary; a file that is not there is one line, exit 1", async () => {
    const out = join(scratch, "pictures", "restart.svg");
    const [drawn, missing] = await Promise.all([
      runScript("timeline", ["--from", "run.log", "--out", out], { cwd: scratch }),
      runScript("timeline", ["--from", "nothing.log"], { cwd: scratch }),
    ]);
    assert.equal(drawn.code, 0, drawn.stderr);
    assert.equal(drawn.stderr, "");
    assert.match(drawn.stdout, /^broker down 5\.0 s: stopped at 4\.0 s, started again at 9\.0 s\.\n/);
    assert.match(drawn.stdout, /\nwrote .*restart\.svg from run\.log \(27 lines of the app, 14\.5 s\)\n$/);
    assert.equal(readFileSync(out, "utf8"), drawTimeline(readTimeline(LOG)));
    assert.deepEqual(missing.errorLines, ["timeline: cannot read nothing.log: no such file"]);
    assert.equal(missing.code, 1);
    assert.equal(existsSync(join(scratch, "docs")), false, "nothing written");
  });
});
