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
const ZERO = 0x30;
const NINE = 0x39;

function isSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

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

const enum Key {
  None = 0,
  ClientToken = 1,
  Version = 2,
  Code = 3,
}

/**
 * The top-level fields a reply is routed by, read in one pass over its bytes: nothing is allocated,
 * and keys of the same name inside `state` are not mistaken for them. One instance is reused.
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

  scan(bytes: Uint8Array): void {
    this.tokenStart = this.tokenEnd = this.codeStart = this.codeEnd = this.version = -1;
    this.code = 0;
    this.isObject = false;
    const end = bytes.length;
    let i = 0;
    while (i < end && isSpace(bytes[i])) i++;
    if (i === end || bytes[i] !== OPEN_BRACE) return;
    this.isObject = true;
    let depth = 0;
    // The key whose value comes next (depth 1 only).
    let pending = Key.None;
    while (i < end) {
      const c = bytes[i];
      if (c === QUOTE) {
        const start = ++i;
        while (i < end) {
          const d = bytes[i];
          if (d === BACKSLASH) i += 2;
          else if (d === QUOTE) break;
          else i++;
        }
        const stop = i < end ? i : end;
        i++;
        if (depth !== 1) continue;
        if (pending !== Key.None) {
          // A text value of a key we want.
          if (pending === Key.ClientToken) {
            this.tokenStart = start;
            this.tokenEnd = stop;
          } else if (pending === Key.Code) {
            this.codeStart = start;
            this.codeEnd = stop;
          }
          pending = Key.None;
          continue;
        }
        let j = i;
        while (j < end && isSpace(bytes[j])) j++;
        if (j === end || bytes[j] !== COLON) continue;
        // A key: which one, and where its value starts.
        const key = bytesAre(bytes, start, stop, "clientToken", 11) ? Key.ClientToken : bytesAre(bytes, start, stop, "version", 7) ? Key.Version : bytesAre(bytes, start, stop, "code", 4) ? Key.Code : Key.None;
        i = j + 1;
        while (i < end && isSpace(bytes[i])) i++;
        if (key === Key.None || i === end) continue;
        const first = bytes[i];
        if (first === QUOTE) pending = key;
        else if ((first >= ZERO && first <= NINE) || first === MINUS) {
          let value = 0;
          let k = first === MINUS ? i + 1 : i;
          for (; k < end && bytes[k] >= ZERO && bytes[k] <= NINE; k++) value = value * 10 + (bytes[k] - ZERO);
          if (first === MINUS) value = -value;
          if (key === Key.Version) this.version = value;
          else if (key === Key.Code) this.code = value;
          i = k;
        }
        continue;
      }
      if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) depth--;
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

/**
 * Checks that `text` is one JSON object, walking its characters once without building anything, and
 * that it has no top-level "clientToken" (the layer sets its own). Returns "" when it is fine, else
 * what is wrong. `shape` then tells whether the object had members and where its closing brace is.
 */
export class JsonObjectCheck {
  /** Whether the top-level object has at least one member. */
  hasMembers = false;
  /** Index of the closing brace of the top-level object. */
  closeAt = -1;

  problem(text: string, maxDepth: number): string {
    this.hasMembers = false;
    this.closeAt = -1;
    let i = 0;
    let c = charCodeAt.call(text, i);
    while (isSpace(c)) c = charCodeAt.call(text, ++i);
    if (c !== OPEN_BRACE) return "the document must be a JSON object";
    // Containers, innermost last: a bit per level, 1 for an object (up to 30 levels).
    let kinds = 0;
    let depth = 0;
    // 0: a value, 1: a key, 2: after a value.
    let expect = 0;
    for (;;) {
      c = charCodeAt.call(text, i);
      while (isSpace(c)) c = charCodeAt.call(text, ++i);
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
        i = skipString(text, i);
        if (i < 0) return "bad string in a key";
        if (depth === 1) {
          this.hasMembers = true;
          if (i - 1 - start === 11 && hasAt(text, "clientToken", start)) return "the document has its own clientToken; the client sets one per request";
        }
        c = charCodeAt.call(text, i);
        while (isSpace(c)) c = charCodeAt.call(text, ++i);
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
        while (isSpace(d)) d = charCodeAt.call(text, ++i);
        if (d === (c === OPEN_BRACE ? CLOSE_BRACE : CLOSE_BRACKET)) {
          if (depth === 1) this.closeAt = i;
          kinds >>>= 1;
          depth--;
          i++;
          expect = 2;
        } else expect = c === OPEN_BRACE ? 1 : 0;
        continue;
      }
      if (c === QUOTE) i = skipString(text, i);
      else if (c === MINUS || (c >= ZERO && c <= NINE)) i = skipNumber(text, i);
      else if (hasAt(text, "true", i)) i += 4;
      else if (hasAt(text, "false", i)) i += 5;
      else if (hasAt(text, "null", i)) i += 4;
      else i = -1;
      if (i < 0) return "invalid JSON value";
      expect = 2;
    }
  }
}

/** The index after the string that starts (with its quote) at `at`, or -1. */
function skipString(text: string, at: number): number {
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

function isDigit(code: number): boolean {
  return code >= ZERO && code <= NINE;
}

/** The index after the number at `at` (JSON grammar), or -1. */
function skipNumber(text: string, at: number): number {
  let i = at;
  if (charCodeAt.call(text, i) === MINUS) i++;
  const first = charCodeAt.call(text, i);
  if (first === ZERO) i++;
  else if (isDigit(first)) while (isDigit(charCodeAt.call(text, i))) i++;
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
