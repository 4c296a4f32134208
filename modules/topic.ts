// Topic names and filters (MQTT 3.1.1 section 4.7) and the UTF-8 they travel in. The encoder works
// straight into a caller's buffer so a topic is never copied into a temporary byte array.

const SLASH = 0x2f;
const PLUS = 0x2b;
const HASH = 0x23;
const DOLLAR = 0x24;

// XS makes a String wrapper object for each method call on a primitive string, and for each read of
// its `.length`; calling the method through `call` does not. So the scans below call charCodeAt that
// way and find the end of the text by the NaN it gives past the end (NaN is the only value not
// equal to itself): they create no garbage, which matters as they run for every message.
const charCodeAt = String.prototype.charCodeAt;

/** Longest string the MQTT length prefix can carry. */
export const MAX_STRING_BYTES = 65535;

/**
 * UTF-8 byte length of `text`, or -1 when it holds a lone surrogate or U+0000. MQTT forbids U+0000
 * in its strings (section 1.5.3), not in payloads: `nulAllowed` says the text is a payload.
 */
export function utf8Length(text: string, nulAllowed?: boolean): number {
  let bytes = 0;
  for (let i = 0; ; i++) {
    const unit = charCodeAt.call(text, i);
    if (unit !== unit) break;
    if (unit < 0x80) {
      if (unit === 0 && !nulAllowed) return -1;
      bytes += 1;
    } else if (unit < 0x800) {
      bytes += 2;
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      if (unit > 0xdbff) return -1;
      const next = charCodeAt.call(text, i + 1);
      if (!(next >= 0xdc00 && next <= 0xdfff)) return -1; // also a high surrogate at the end (NaN)
      i++;
      bytes += 4;
    } else {
      bytes += 3;
    }
  }
  return bytes;
}

/** Writes `text` as UTF-8 at `offset`; the caller has checked utf8Length. Returns the end offset. */
export function writeUtf8(text: string, target: Uint8Array, offset: number): number {
  for (let i = 0; ; i++) {
    let code = charCodeAt.call(text, i);
    if (code !== code) break;
    if (code < 0x80) {
      target[offset++] = code;
    } else if (code < 0x800) {
      target[offset++] = 0xc0 | (code >> 6);
      target[offset++] = 0x80 | (code & 0x3f);
    } else if (code >= 0xd800 && code <= 0xdbff) {
      code = 0x10000 + ((code - 0xd800) << 10) + (charCodeAt.call(text, ++i) - 0xdc00);
      target[offset++] = 0xf0 | (code >> 18);
      target[offset++] = 0x80 | ((code >> 12) & 0x3f);
      target[offset++] = 0x80 | ((code >> 6) & 0x3f);
      target[offset++] = 0x80 | (code & 0x3f);
    } else {
      target[offset++] = 0xe0 | (code >> 12);
      target[offset++] = 0x80 | ((code >> 6) & 0x3f);
      target[offset++] = 0x80 | (code & 0x3f);
    }
  }
  return offset;
}

/**
 * Checks that bytes[start, end) are well-formed UTF-8 without U+0000, overlong forms or surrogates,
 * as MQTT requires of every string. Returns the number of UTF-16 code units it decodes to, or -1.
 */
export function checkUtf8(bytes: Uint8Array, start: number, end: number): number {
  let units = 0;
  let i = start;
  while (i < end) {
    const lead = bytes[i];
    let need: number;
    let code: number;
    let min: number;
    if (lead < 0x80) {
      if (lead === 0) return -1;
      i++;
      units++;
      continue;
    } else if (lead >= 0xc2 && lead <= 0xdf) {
      need = 1; code = lead & 0x1f; min = 0x80;
    } else if (lead >= 0xe0 && lead <= 0xef) {
      need = 2; code = lead & 0x0f; min = 0x800;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
      need = 3; code = lead & 0x07; min = 0x10000;
    } else {
      return -1;
    }
    if (i + need >= end) return -1;
    for (let k = 1; k <= need; k++) {
      const next = bytes[i + k];
      if ((next & 0xc0) !== 0x80) return -1;
      code = (code << 6) | (next & 0x3f);
    }
    if (code < min || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return -1;
    i += need + 1;
    units += code >= 0x10000 ? 2 : 1;
  }
  return units;
}

/** Decodes bytes[start, end), already checked by checkUtf8, into a string. */
export function readUtf8(bytes: Uint8Array, start: number, end: number): string {
  let text = "";
  let i = start;
  while (i < end) {
    const lead = bytes[i];
    let code: number;
    if (lead < 0x80) {
      code = lead;
      i += 1;
    } else if (lead < 0xe0) {
      code = ((lead & 0x1f) << 6) | (bytes[i + 1] & 0x3f);
      i += 2;
    } else if (lead < 0xf0) {
      code = ((lead & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
      i += 3;
    } else {
      code = ((lead & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f);
      i += 4;
    }
    text += code >= 0x10000
      ? String.fromCharCode(0xd800 + ((code - 0x10000) >> 10), 0xdc00 + ((code - 0x10000) & 0x3ff))
      : String.fromCharCode(code);
  }
  return text;
}

/** Why `value` is not an MQTT string (section 1.5.3), naming it `name`; "" when it is one. */
export function mqttStringProblem(name: string, value: unknown): string {
  const bytes = typeof value === "string" ? utf8Length(value) : -1;
  return bytes >= 0 && bytes <= MAX_STRING_BYTES ? "" : name + " must be an MQTT string: text of at most " + MAX_STRING_BYTES + " UTF-8 bytes, without U+0000 or a lone surrogate";
}

/** Why a topic name or filter is invalid, or "" when it is valid. */
export function topicNameProblem(topic: unknown, maxBytes: number = MAX_STRING_BYTES): string {
  if (typeof topic !== "string") return "topic must be a string";
  const length = topic.length;
  if (length === 0) return "topic must not be empty";
  const bytes = utf8Length(topic);
  if (bytes < 0) return "topic is not valid UTF-8 for MQTT (lone surrogate or U+0000)";
  if (bytes > maxBytes) return "topic is " + bytes + " bytes, over the limit of " + maxBytes;
  for (let i = 0; i < length; i++) {
    const unit = charCodeAt.call(topic, i);
    if (unit === PLUS || unit === HASH) return "topic name must not contain wildcards ('+' or '#'): " + topic;
  }
  return "";
}

export function topicFilterProblem(filter: unknown, maxBytes: number = MAX_STRING_BYTES): string {
  if (typeof filter !== "string") return "topic filter must be a string";
  if (filter.length === 0) return "topic filter must not be empty";
  const bytes = utf8Length(filter);
  if (bytes < 0) return "topic filter is not valid UTF-8 for MQTT (lone surrogate or U+0000)";
  if (bytes > maxBytes) return "topic filter is " + bytes + " bytes, over the limit of " + maxBytes;
  const last = filter.length - 1;
  for (let i = 0; i <= last; i++) {
    const unit = charCodeAt.call(filter, i);
    if (unit !== PLUS && unit !== HASH) continue;
    const aloneBefore = i === 0 || charCodeAt.call(filter, i - 1) === SLASH;
    const aloneAfter = i === last || charCodeAt.call(filter, i + 1) === SLASH;
    if (!aloneBefore || !aloneAfter) return "wildcard '" + filter[i] + "' must occupy a whole level: " + filter;
    if (unit === HASH && i !== last) return "'#' must be the last level: " + filter;
  }
  return "";
}

/** Whether `topic` (a valid topic name) matches `filter` (a valid filter). */
export function topicMatches(filter: string, topic: string): boolean {
  // Runs once per subscription for every inbound message: the ends are found by NaN (see the top).
  let unit = charCodeAt.call(filter, 0);
  // Wildcards at the first level do not match topics starting with '$' (section 4.7.2).
  if (charCodeAt.call(topic, 0) === DOLLAR && (unit === PLUS || unit === HASH)) return false;
  let f = 0;
  let t = 0;
  while (unit === unit) {
    if (unit === HASH) return true; // matches the parent level and everything below it
    let next = charCodeAt.call(topic, t);
    if (unit === PLUS) {
      while (next === next && next !== SLASH) next = charCodeAt.call(topic, ++t);
    } else if (next === unit) {
      t++;
    } else {
      // The topic ended (next is NaN) where the filter goes on: "a/#" still matches "a" when the
      // filter ends with exactly "/#" here.
      const after = charCodeAt.call(filter, f + 2);
      return next !== next && unit === SLASH && charCodeAt.call(filter, f + 1) === HASH && after !== after;
    }
    unit = charCodeAt.call(filter, ++f);
  }
  const rest = charCodeAt.call(topic, t);
  return rest !== rest; // the topic ended with the filter
}
