// JSON as the AWS layers need it, without building what nobody asked for: text from a payload view
// (no copy on XS), one pass over a reply's bytes that finds its top-level clientToken, version and
// code (no allocation), a check that a text is one JSON object (no parse tree), and the helpers the
// routers use to compare topics character by character. The user's own parse (JSON.parse of a
// document or delta) is the only tree ever built.

import { checkUtf8, readUtf8 } from "../topic";

// As in modules/topic.ts: called through `call`, charCodeAt makes no String wrapper on XS, and the
// end of a text is the NaN it gives past the end (reading `.length` would make a wrapper too).
const charCodeAt = String.prototype.charCodeAt;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const COMMA = 0x2c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const MINUS = 0x2d;
/** In a JSON text, outside strings, the only bytes up to this one are whitespace. */
const SPACE = 0x20;
const ZERO = 0x30;
const NINE = 0x39;

type FromArrayBuffer = (buffer: ArrayBufferLike, offset: number, length: number) => string;
type Decoder = { decode(bytes: Uint8Array): string };
// XS (Moddable and xsnap) decodes UTF-8 straight from the buffer; Node has TextDecoder.
const fromArrayBuffer = (String as unknown as { fromArrayBuffer?: FromArrayBuffer }).fromArrayBuffer;
const TextDecoderClass = (globalThis as unknown as { TextDecoder?: new () => Decoder }).TextDecoder;
const decoder: Decoder | undefined = fromArrayBuffer === undefined && TextDecoderClass !== undefined ? new TextDecoderClass() : undefined;

/** The UTF-8 text of `bytes` (a payload view, for example). Throws on bytes that are not UTF-8 where the engine checks. */
export function textOf(bytes: Uint8Array): string {
  if (bytes.length === 0) return "";
  if (fromArrayBuffer !== undefined) return fromArrayBuffer(bytes.buffer, bytes.byteOffset, bytes.length);
  if (decoder !== undefined) return decoder.decode(bytes);
  if (checkUtf8(bytes, 0, bytes.length) < 0) throw new TypeError("payload is not UTF-8");
  return readUtf8(bytes, 0, bytes.length);
}

/** JSON.parse of a payload's text; undefined when it is not JSON. */
export function parsePayload(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(textOf(bytes));
  } catch {
    return undefined;
  }
}

/** Whether `text` holds `part` at index `at`. */
export function hasAt(text: string, part: string, at: number): boolean {
  for (let i = 0; ; i++) {
    const expected = charCodeAt.call(part, i);
    if (expected !== expected) return true;
    if (charCodeAt.call(text, at + i) !== expected) return false;
  }
}

/** Whether `text` ends at index `at`. */
export function endsAt(text: string, at: number): boolean {
  const code = charCodeAt.call(text, at);
  return code !== code;
}

/** Whether `text` is exactly `part` from index `at` to its end. */
export function isRest(text: string, part: string, at: number, partLength: number): boolean {
  return hasAt(text, part, at) && endsAt(text, at + partLength);
}

/** The index of the first `code` in `text` from `from`, or -1. */
export function indexOfCode(text: string, code: number, from: number): number {
  for (let i = from; ; i++) {
    const unit = charCodeAt.call(text, i);
    if (unit !== unit) return -1;
    if (unit === code) return i;
  }
}

/** Whether bytes[start, end) are the characters of `key` (ASCII keys). */
function bytesAre(bytes: Uint8Array, start: number, end: number, key: string, keyLength: number): boolean {
  if (end - start !== keyLength) return false;
  for (let i = 0; i < keyLength; i++) if (bytes[start + i] !== charCodeAt.call(key, i)) return false;
  return true;
}

/** What a scan must find (ReplyFields.scan): the clientToken, the version, the error code. */
export const enum Needs {
  Token = 1,
  Version = 2,
  Code = 4,
  All = 7,
}

/** The closing quote of the string whose characters start at `start`: the first quote not escaped. -1 if none. */
function closingQuote(bytes: Uint8Array, start: number): number {
  let stop = bytes.indexOf(QUOTE, start);
  while (stop > 0) {
    let k = stop - 1;
    while (k >= start && bytes[k] === BACKSLASH) k--;
    if (((stop - 1 - k) & 1) === 0) return stop;
    stop = bytes.indexOf(QUOTE, stop + 1);
  }
  return -1;
}

/** The opening quote of the string whose closing quote is at `close` (searching backwards), or -1. */
function openingQuote(bytes: Uint8Array, close: number): number {
  let open = bytes.lastIndexOf(QUOTE, close - 1);
  while (open > 0) {
    let k = open - 1;
    while (k > 0 && bytes[k] === BACKSLASH) k--;
    if (((open - 1 - k) & 1) === 0) return open;
    open = bytes.lastIndexOf(QUOTE, open - 1);
  }
  return -1;
}

/**
 * The top-level fields a reply is routed by (clientToken, version, code), read without allocating,
 * and without mistaking keys of the same names inside `state`. AWS puts them before or after the
 * document's objects ({"version":...,"state":{...}} for a delta, {"state":{...},...,"version":...,
 * "clientToken":...} for a reply), so the members before the first object and after the last one
 * are read first (from both ends); the objects are walked only when what is needed is not found
 * there. One instance is reused.
 */
export class ReplyFields {
  /** The byte range of the clientToken's characters (without quotes); -1 when there is none. */
  tokenStart = -1;
  tokenEnd = -1;
  /** The top-level "version" as a number; -1 when absent. */
  version = -1;
  /** A numeric top-level "code" (Device Shadow errors); 0 when absent. */
  code = 0;
  /** The byte range of a text "code" (Jobs errors, e.g. VersionMismatch); -1 when absent. */
  codeStart = -1;
  codeEnd = -1;
  /** Whether the bytes started as a JSON object. */
  isObject = false;
  private found = 0;

  /** Reads the top-level fields of `bytes`; `needs` says which must be found for the scan to stop early. */
  scan(bytes: Uint8Array, needs: number = Needs.All): void {
    this.tokenStart = this.tokenEnd = this.codeStart = this.codeEnd = this.version = -1;
    this.code = 0;
    this.found = 0;
    this.isObject = false;
    const end = bytes.length;
    let i = 0;
    while (i < end && bytes[i] <= SPACE) i++;
    if (i === end || bytes[i] !== OPEN_BRACE) return;
    this.isObject = true;
    const forward = this.leading(bytes, i + 1);
    if (forward === -1 || (this.found & needs) === needs) return;
    if (this.trailing(bytes) && (this.found & needs) === needs) return;
    this.walk(bytes, i);
  }

  /** Notes a scalar value of a top-level key: bytes[start, stop) is the value (a string's characters when `text`). */
  private take(bytes: Uint8Array, keyStart: number, keyEnd: number, start: number, stop: number, text: boolean): void {
    if (text) {
      if (bytesAre(bytes, keyStart, keyEnd, "clientToken", 11)) {
        this.tokenStart = start;
        this.tokenEnd = stop;
        this.found |= Needs.Token;
      } else if (bytesAre(bytes, keyStart, keyEnd, "code", 4)) {
        this.codeStart = start;
        this.codeEnd = stop;
        this.found |= Needs.Code;
      }
      return;
    }
    const negative = bytes[start] === MINUS;
    // A number: true, false and null are not versions or codes.
    if (!negative && !(bytes[start] >= ZERO && bytes[start] <= NINE)) return;
    const isVersion = bytesAre(bytes, keyStart, keyEnd, "version", 7);
    if (!isVersion && !bytesAre(bytes, keyStart, keyEnd, "code", 4)) return;
    let value = 0;
    for (let k = negative ? start + 1 : start; k < stop && bytes[k] >= ZERO && bytes[k] <= NINE; k++) value = value * 10 + (bytes[k] - ZERO);
    if (negative) value = -value;
    if (isVersion) {
      this.version = value;
      this.found |= Needs.Version;
    } else {
      this.code = value;
      this.found |= Needs.Code;
    }
  }

  /**
   * The members from the top-level object's start up to its first object or array value: -1 when
   * it reached the end of the object (every member seen), else where it stopped.
   */
  private leading(bytes: Uint8Array, from: number): number {
    const end = bytes.length;
    let i = from;
    for (;;) {
      while (i < end && bytes[i] <= SPACE) i++;
      if (i >= end) return i;
      if (bytes[i] === CLOSE_BRACE) return -1;
      if (bytes[i] !== QUOTE) return i;
      const keyStart = i + 1;
      const keyEnd = closingQuote(bytes, keyStart);
      if (keyEnd < 0) return end;
      i = keyEnd + 1;
      while (i < end && bytes[i] <= SPACE) i++;
      if (bytes[i] !== COLON) return i;
      i++;
      while (i < end && bytes[i] <= SPACE) i++;
      const first = bytes[i];
      if (first === QUOTE) {
        const stop = closingQuote(bytes, i + 1);
        if (stop < 0) return end;
        this.take(bytes, keyStart, keyEnd, i + 1, stop, true);
        i = stop + 1;
      } else if (first === OPEN_BRACE || first === OPEN_BRACKET) {
        return i;
      } else {
        const start = i;
        while (i < end && bytes[i] !== COMMA && bytes[i] !== CLOSE_BRACE && bytes[i] > SPACE) i++;
        this.take(bytes, keyStart, keyEnd, start, i, false);
      }
      while (i < end && bytes[i] <= SPACE) i++;
      if (bytes[i] === COMMA) i++;
      else return bytes[i] === CLOSE_BRACE ? -1 : i;
    }
  }

  /** The members after the top-level object's last object or array value, read backwards; false if the bytes are malformed there. */
  private trailing(bytes: Uint8Array): boolean {
    let j = bytes.length - 1;
    while (j > 0 && bytes[j] <= SPACE) j--;
    if (bytes[j] !== CLOSE_BRACE) return false;
    j--;
    for (;;) {
      while (j > 0 && bytes[j] <= SPACE) j--;
      const last = bytes[j];
      let start: number;
      let stop: number;
      let text = false;
      if (last === QUOTE) {
        const open = openingQuote(bytes, j);
        if (open < 0) return false;
        start = open + 1;
        stop = j;
        text = true;
        j = open - 1;
      } else if (last === CLOSE_BRACE || last === CLOSE_BRACKET || last === OPEN_BRACE) {
        return true;
      } else {
        stop = j + 1;
        while (j > 0 && bytes[j] !== COLON && bytes[j] > SPACE) j--;
        start = j + 1;
      }
      while (j > 0 && bytes[j] <= SPACE) j--;
      if (bytes[j] !== COLON) return false;
      j--;
      while (j > 0 && bytes[j] <= SPACE) j--;
      if (bytes[j] !== QUOTE) return false;
      const keyOpen = openingQuote(bytes, j);
      if (keyOpen < 0) return false;
      this.take(bytes, keyOpen + 1, j, start, stop, text);
      j = keyOpen - 1;
      while (j > 0 && bytes[j] <= SPACE) j--;
      if (bytes[j] === COMMA) j--;
      else return bytes[j] === OPEN_BRACE;
    }
  }

  /** Every member, walking into the objects to find where each ends (the slow path). */
  private walk(bytes: Uint8Array, from: number): void {
    const end = bytes.length;
    let i = from;
    let depth = 0;
    while (i < end) {
      const c = bytes[i];
      if (c === QUOTE) {
        const start = i + 1;
        const stop = closingQuote(bytes, start);
        if (stop < 0) return;
        i = stop + 1;
        if (depth !== 1) continue;
        let j = i;
        while (j < end && bytes[j] <= SPACE) j++;
        if (j === end || bytes[j] !== COLON) continue;
        // A key: its value, when a scalar, is taken; an object or array is walked on.
        i = j + 1;
        while (i < end && bytes[i] <= SPACE) i++;
        const first = bytes[i];
        if (first === QUOTE) {
          const valueStop = closingQuote(bytes, i + 1);
          if (valueStop < 0) return;
          this.take(bytes, start, stop, i + 1, valueStop, true);
          i = valueStop + 1;
        } else if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
          const valueStart = i;
          while (i < end && bytes[i] !== COMMA && bytes[i] !== CLOSE_BRACE && bytes[i] > SPACE) i++;
          this.take(bytes, start, stop, valueStart, i, false);
        }
        continue;
      }
      if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
      else if (c >= ZERO && c <= NINE) {
        // A run of digits (timestamps): nothing in it matters.
        do i++;
        while (i < end && bytes[i] >= ZERO && bytes[i] <= NINE);
        continue;
      }
      i++;
    }
  }

  /** Whether the clientToken is `prefix` followed by a decimal number; that number, else -1. */
  tokenNumber(bytes: Uint8Array, prefix: string, prefixLength: number): number {
    const start = this.tokenStart;
    const end = this.tokenEnd;
    if (start < 0 || end - start <= prefixLength || end - start > prefixLength + 10) return -1;
    for (let i = 0; i < prefixLength; i++) if (bytes[start + i] !== charCodeAt.call(prefix, i)) return -1;
    let value = 0;
    for (let k = start + prefixLength; k < end; k++) {
      const digit = bytes[k] - ZERO;
      if (digit < 0 || digit > 9) return -1;
      value = value * 10 + digit;
    }
    return value;
  }

  /** The text code (Jobs errors), or "" (allocates: read only for a rejection). */
  codeText(bytes: Uint8Array): string {
    return this.codeStart < 0 ? "" : textOf(bytes.subarray(this.codeStart, this.codeEnd));
  }
}

const indexOf = String.prototype.indexOf;

/**
 * Checks that `text` is one JSON object, walking its characters once without building anything, and
 * that it has no top-level "clientToken" (the layer sets its own). Returns "" when it is fine, else
 * what is wrong; `hasMembers` and `closeAt` then describe the object.
 */
export class JsonObjectCheck {
  /** Whether the top-level object has at least one member. */
  hasMembers = false;
  /** Index of the closing brace of the top-level object. */
  closeAt = -1;

  /** Where the next backslash is, at or after the string being read (-1: none left). */
  private escapeAt = -1;

  problem(text: string, maxDepth: number): string {
    this.hasMembers = false;
    this.closeAt = -1;
    this.escapeAt = indexOf.call(text, "\\", 0);
    let i = 0;
    let c = charCodeAt.call(text, i);
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = charCodeAt.call(text, ++i);
    if (c !== OPEN_BRACE) return "the document must be a JSON object";
    // Containers, innermost last: a bit per level, 1 for an object (up to 30 levels).
    let kinds = 0;
    let depth = 0;
    // 0: a value, 1: a key, 2: after a value.
    let expect = 0;
    for (;;) {
      c = charCodeAt.call(text, i);
      while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = charCodeAt.call(text, ++i);
      if (c !== c) return depth === 0 && expect === 2 ? "" : "the JSON text ends early";
      if (expect === 2) {
        if (depth === 0) return "more text after the JSON object";
        const inObject = (kinds & 1) === 1;
        if (c === COMMA) {
          expect = inObject ? 1 : 0;
          i++;
        } else if (c === (inObject ? CLOSE_BRACE : CLOSE_BRACKET)) {
          if (depth === 1) this.closeAt = i;
          kinds >>>= 1;
          depth--;
          i++;
        } else return "unexpected character at " + i;
        continue;
      }
      if (expect === 1) {
        if (c !== QUOTE) return "a key must be a string (at " + i + ")";
        const start = i + 1;
        i = this.skipString(text, i);
        if (i < 0) return "bad string in a key";
        if (depth === 1) {
          this.hasMembers = true;
          if (i - 1 - start === 11 && hasAt(text, "clientToken", start)) return "the document has its own clientToken; the client sets one per request";
        }
        c = charCodeAt.call(text, i);
        while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = charCodeAt.call(text, ++i);
        if (c !== COLON) return "a key must be followed by ':' (at " + i + ")";
        i++;
        expect = 0;
        continue;
      }
      // A value.
      if (c === OPEN_BRACE || c === OPEN_BRACKET) {
        if (depth >= maxDepth) return "nested more than " + maxDepth + " levels";
        kinds = (kinds << 1) | (c === OPEN_BRACE ? 1 : 0);
        depth++;
        i++;
        let d = charCodeAt.call(text, i);
        while (d === 0x20 || d === 0x0a || d === 0x0d || d === 0x09) d = charCodeAt.call(text, ++i);
        if (d === (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
          if (depth === 1) this.closeAt = i;
          kinds >>>= 1;
          depth--;
          i++;
          expect = 2;
        } else expect = c === OPEN_BRACE ? 1 : 0;
        continue;
      }
      if (c === QUOTE) i = this.skipString(text, i);
      else if (c === MINUS || (c >= ZERO && c <= NINE)) i = skipNumber(text, i);
      else if (hasAt(text, "true", i)) i += 4;
      else if (hasAt(text, "false", i)) i += 5;
      else if (hasAt(text, "null", i)) i += 4;
      else i = -1;
      if (i < 0) return "invalid JSON value";
      expect = 2;
    }
  }

  /**
   * The index after the string that starts (with its quote) at `at`, or -1. Without a backslash the
   * closing quote is found natively (control characters inside it are then left for the service to
   * refuse, with a 400); escapes are checked one by one.
   */
  private skipString(text: string, at: number): number {
    const close = indexOf.call(text, "\"", at + 1);
    if (close < 0) return -1;
    // The next backslash, looked for again only once the reading has passed it: one pass in all.
    if (this.escapeAt >= 0 && this.escapeAt <= at) this.escapeAt = indexOf.call(text, "\\", at + 1);
    if (this.escapeAt < 0 || this.escapeAt > close) return close + 1;
    let i = at + 1;
    for (;;) {
      const c = charCodeAt.call(text, i);
      if (c !== c || c < 0x20) return -1;
      if (c === QUOTE) return i + 1;
      if (c === BACKSLASH) {
        const e = charCodeAt.call(text, i + 1);
        if (e === 0x75) {
          for (let k = 2; k < 6; k++) {
            const h = charCodeAt.call(text, i + k);
            if (!((h >= ZERO && h <= NINE) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66))) return -1;
          }
          i += 6;
          continue;
        }
        if (e !== QUOTE && e !== BACKSLASH && e !== 0x2f && e !== 0x62 && e !== 0x66 && e !== 0x6e && e !== 0x72 && e !== 0x74) return -1;
        i += 2;
        continue;
      }
      i++;
    }
  }
}

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}

/** The index after the number at `at` (JSON grammar), or -1. */
function skipNumber(text: string, at: number): number {
  let i = at;
  if (charCodeAt.call(text, i) === MINUS) i++;
  const first = charCodeAt.call(text, i);
  if (first === ZERO) i++;
  else if (first >= ZERO && first <= NINE) {
    let c = charCodeAt.call(text, ++i);
    while (c >= ZERO && c <= NINE) c = charCodeAt.call(text, ++i);
  }
  else return -1;
  if (charCodeAt.call(text, i) === 0x2e) {
    i++;
    if (!isDigit(charCodeAt.call(text, i))) return -1;
    while (isDigit(charCodeAt.call(text, i))) i++;
  }
  const e = charCodeAt.call(text, i);
  if (e === 0x65 || e === 0x45) {
    i++;
    const sign = charCodeAt.call(text, i);
    if (sign === 0x2b || sign === MINUS) i++;
    if (!isDigit(charCodeAt.call(text, i))) return -1;
    while (isDigit(charCodeAt.call(text, i))) i++;
  }
  return i;
}

/** Writes the ASCII characters of `text` at `offset`; returns the end. (Tokens, names: ASCII by construction.) */
export function writeAscii(text: string, target: Uint8Array, offset: number): number {
  for (let i = 0; ; i++) {
    const code = charCodeAt.call(text, i);
    if (code !== code) return offset;
    target[offset++] = code;
  }
}

/** Writes the decimal digits of a whole number `value` >= 0 at `offset`; returns the end. */
export function writeDecimal(value: number, target: Uint8Array, offset: number): number {
  let digits = 1;
  for (let rest = value; rest >= 10; rest = Math.floor(rest / 10)) digits++;
  let at = offset + digits;
  for (let rest = value; at > offset; rest = Math.floor(rest / 10)) target[--at] = ZERO + (rest % 10);
  return offset + digits;
}
