// The app's log line format, written by the device and read by the serial monitor: one place for
// both directions. A line is
//   iotlink <event> key=value key="value with spaces" ...
// Values are integers, bare words, or double-quoted text with \" and \\ escaped. Nothing else on
// the serial console starts with "iotlink ".

import { isWordOf } from "./types";

export const LOG_PREFIX = "iotlink ";

/** A value printed bare; anything else is quoted (a loop, not a RegExp: see isWordOf). */
function quote(value: string): string {
  if (isWordOf(value, 1, 0x7fffffff, "_.:/+#-")) return value;
  let quoted = '"';
  for (let i = 0; i < value.length; i++) {
    const character = value[i];
    quoted += character === "\\" ? "\\\\" : character === '"' ? '\\"' : character === "\n" ? " " : character;
  }
  return quoted + '"';
}

/** Formats one line (no newline). `fields` alternate key, value. */
export function formatLogLine(event: string, fields: readonly (string | number | boolean)[]): string {
  let line = LOG_PREFIX + event;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1];
    line += " " + fields[i] + "=" + (typeof value === "string" ? quote(value) : String(value));
  }
  return line;
}

export interface LogLine {
  event: string;
  fields: Record<string, string>;
}

/** Parses a line written by formatLogLine; undefined for any other line. */
export function parseLogLine(line: string): LogLine | undefined {
  if (!line.startsWith(LOG_PREFIX)) return undefined;
  const text = line.slice(LOG_PREFIX.length).trimEnd();
  const space = text.indexOf(" ");
  const event = space < 0 ? text : text.slice(0, space);
  if (!/^[a-z-]+$/.test(event)) return undefined;
  const fields: Record<string, string> = {};
  let at = space < 0 ? text.length : space + 1;
  while (at < text.length) {
    const equals = text.indexOf("=", at);
    if (equals < 0) return undefined;
    const key = text.slice(at, equals);
    at = equals + 1;
    let value = "";
    if (text[at] === '"') {
      at++;
      while (at < text.length && text[at] !== '"') {
        if (text[at] === "\\" && at + 1 < text.length) at++;
        value += text[at++];
      }
      if (text[at] !== '"') return undefined;
      at++;
    } else {
      const end = text.indexOf(" ", at);
      value = text.slice(at, end < 0 ? text.length : end);
      at = end < 0 ? text.length : end;
    }
    fields[key] = value;
    while (text[at] === " ") at++;
  }
  return { event, fields };
}
