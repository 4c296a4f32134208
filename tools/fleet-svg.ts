// The chart of `npm run fleet`, written as SVG text (no browser, no library): connection attempts per
// 100 ms window against time, one panel per case, one line per backoff schedule. The y axis is
// logarithmic above 1 (0 sits on the axis), so a storm of hundreds and a trickle of a few share a panel.

export interface ChartSeries {
  readonly label: string;
  readonly color: string;
  readonly dashed?: boolean;
  /** Attempts per window, the first window starting at `startSeconds` of the panel. */
  readonly counts: readonly number[];
}

export interface ChartPanel {
  readonly title: string;
  /** Seconds (relative to the fault) of the first window. */
  readonly startSeconds: number;
  readonly windowSeconds: number;
  /** Seconds shown on the x axis, from startSeconds. */
  readonly spanSeconds: number;
  /** Shaded: the broker or the link was down [from, to] seconds. */
  readonly outage?: readonly [number, number];
  /** A horizontal line: an attempt limit per window, if any. */
  readonly limitPerWindow?: number;
  readonly series: readonly ChartSeries[];
}

const WIDTH = 920;
const PANEL_HEIGHT = 250;
const LEFT = 64;
const RIGHT = 196;
const TOP = 34;
const BOTTOM = 40;

function escape(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

const number = (value: number): string => (Math.round(value * 10) / 10).toString();

function niceStep(span: number): number {
  const raw = span / 10;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) if (raw <= factor * power) return factor * power;
  return 10 * power;
}

function panelSvg(panel: ChartPanel, top: number, subtitle: string): string {
  const plotWidth = WIDTH - LEFT - RIGHT;
  const plotHeight = PANEL_HEIGHT - TOP - BOTTOM;
  const y0 = top + TOP + plotHeight;
  const peak = Math.max(1, ...panel.series.flatMap((series) => series.counts), panel.limitPerWindow ?? 0);
  // 0 on the axis, then one band per decade from 1 up: 1, 10, 100, 1000.
  const decades = Math.max(1, Math.ceil(Math.log10(peak)));
  const yOf = (count: number): number => (count < 1 ? y0 : y0 - ((1 + Math.log10(count)) / (decades + 1)) * plotHeight);
  const xOf = (seconds: number): number => LEFT + ((seconds - panel.startSeconds) / panel.spanSeconds) * plotWidth;
  const parts: string[] = [];
  parts.push(`<text x="${LEFT}" y="${top + 20}" font-size="14" font-weight="bold">${escape(panel.title)}</text>`);
  if (subtitle) parts.push(`<text x="${LEFT}" y="${top + 20}" dx="${escape(panel.title).length * 8 + 12}" font-size="11" fill="#555">${escape(subtitle)}</text>`);
  if (panel.outage) {
    const [from, to] = panel.outage;
    const x1 = Math.max(LEFT, xOf(from));
    const x2 = Math.min(LEFT + plotWidth, xOf(to));
    if (x2 > x1) {
      parts.push(`<rect x="${number(x1)}" y="${top + TOP}" width="${number(x2 - x1)}" height="${plotHeight}" fill="#eee"/>`);
      parts.push(`<text x="${number(x1 + 4)}" y="${top + TOP + 12}" font-size="10" fill="#777">down</text>`);
    }
  }
  // Axes and grid.
  for (const value of [0, ...Array.from({ length: decades + 1 }, (_, decade) => 10 ** decade)]) {
    const y = yOf(value);
    parts.push(`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${number(y)}" y2="${number(y)}" stroke="#ddd"/>`);
    parts.push(`<text x="${LEFT - 6}" y="${number(y + 4)}" font-size="10" text-anchor="end">${value}</text>`);
  }
  const step = niceStep(panel.spanSeconds);
  for (let seconds = Math.ceil(panel.startSeconds / step) * step; seconds <= panel.startSeconds + panel.spanSeconds + 1e-9; seconds += step) {
    const x = xOf(seconds);
    parts.push(`<line x1="${number(x)}" x2="${number(x)}" y1="${y0}" y2="${y0 + 4}" stroke="#333"/>`);
    parts.push(`<text x="${number(x)}" y="${y0 + 16}" font-size="10" text-anchor="middle">${number(seconds)}</text>`);
  }
  parts.push(`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y0}" y2="${y0}" stroke="#333"/>`);
  parts.push(`<line x1="${LEFT}" x2="${LEFT}" y1="${top + TOP}" y2="${y0}" stroke="#333"/>`);
  parts.push(`<text x="${LEFT + plotWidth / 2}" y="${y0 + 32}" font-size="11" text-anchor="middle">seconds after the fault</text>`);
  parts.push(`<text transform="translate(${LEFT - 44},${top + TOP + plotHeight / 2}) rotate(-90)" font-size="11" text-anchor="middle">attempts per ${Math.round(panel.windowSeconds * 1000)} ms</text>`);
  if (panel.limitPerWindow !== undefined) {
    const y = yOf(panel.limitPerWindow);
    parts.push(`<line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${number(y)}" y2="${number(y)}" stroke="#000" stroke-dasharray="2,3"/>`);
    parts.push(`<text x="${LEFT + plotWidth - 4}" y="${number(y - 4)}" font-size="10" text-anchor="end">limit (average)</text>`);
  }
  // One line per schedule, a step per window.
  panel.series.forEach((series, index) => {
    const points: string[] = [];
    let last = Number.NaN;
    series.counts.forEach((count, window) => {
      const from = panel.startSeconds + window * panel.windowSeconds;
      if (from > panel.startSeconds + panel.spanSeconds) return;
      const y = number(yOf(count));
      if (String(last) !== y) {
        if (window > 0) points.push(`${number(xOf(from))},${last}`);
        points.push(`${number(xOf(from))},${y}`);
      }
      last = Number(y);
    });
    points.push(`${number(Math.min(LEFT + plotWidth, xOf(panel.startSeconds + series.counts.length * panel.windowSeconds)))},${last}`);
    parts.push(`<polyline fill="none" stroke="${series.color}" stroke-width="1.4"${series.dashed ? ' stroke-dasharray="5,3"' : ""} points="${points.join(" ")}"/>`);
    const legendY = top + TOP + 14 + index * 18;
    const legendX = LEFT + plotWidth + 14;
    parts.push(`<line x1="${legendX}" x2="${legendX + 22}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="${series.color}" stroke-width="2"${series.dashed ? ' stroke-dasharray="5,3"' : ""}/>`);
    parts.push(`<text x="${legendX + 28}" y="${legendY}" font-size="11">${escape(series.label)}</text>`);
  });
  return parts.join("\n");
}

/** The whole chart: panels one above the other. */
export function fleetChartSvg(title: string, panels: readonly ChartPanel[], subtitles: readonly string[] = []): string {
  const height = 30 + panels.length * PANEL_HEIGHT;
  const body = panels.map((panel, index) => panelSvg(panel, 30 + index * PANEL_HEIGHT, subtitles[index] ?? "")).join("\n");
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="${LEFT}" y="20" font-size="15" font-weight="bold">${escape(title)}</text>`,
    body,
    "</svg>",
    "",
  ].join("\n");
}
