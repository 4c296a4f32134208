// SigV4 presigned URL for AWS IoT's MQTT over WebSocket: `GET /mqtt` on port 443, signed for the
// service `iotdevicegateway` with the host as the only signed header and an empty payload. The
// session token, when there is one, is appended as X-Amz-Security-Token after signing (AWS IoT does
// not sign it). SHA-256 and HMAC-SHA256 are injected by the host; no Node or Moddable API here.
// The secret and the token never appear in an error message.
import { utf8Length, writeUtf8 } from "./topic";
import { invalid } from "./types";

/** SHA-256 and HMAC-SHA256, as the host provides them. */
export interface SigV4Crypto {
  /** The SHA-256 of `bytes`, as 64 lowercase hex digits. */
  sha256Hex(bytes: Uint8Array): string;
  /** HMAC-SHA256 of `data` under `key`: 32 bytes. */
  hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array;
}

export interface SigV4Input {
  /** The AWS IoT endpoint's host name, e.g. `abc123-ats.iot.eu-west-1.amazonaws.com`. */
  readonly host: string;
  /** The region; parsed from the host when absent. */
  readonly region?: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
  /** The current time, in whole milliseconds since 1970-01-01T00:00:00Z. */
  readonly nowMs: number;
  /** The earliest acceptable clock, in epoch milliseconds: DEFAULT_CLOCK_FLOOR_MS when absent. */
  readonly clockFloorMs?: number;
}

export interface SigV4Url {
  readonly host: string;
  readonly region: string;
  /** `/mqtt?<query>`, the token (if any) last. */
  readonly path: string;
  /** `wss://<host>/mqtt?<query>` (port 443). */
  readonly url: string;
  readonly amzDate: string;
  readonly canonicalRequest: string;
  readonly stringToSign: string;
  readonly signature: string;
}

export const SIGV4_SERVICE = "iotdevicegateway";
export const SIGV4_ALGORITHM = "AWS4-HMAC-SHA256";
/** SHA-256 of the empty string. */
export const EMPTY_PAYLOAD_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** 2024-01-01T00:00:00Z: a device clock before this is surely unset. */
export const DEFAULT_CLOCK_FLOOR_MS = 1704067200000;
/** 9999-12-31T23:59:59.999Z: the last instant with a four-digit year. */
const MAX_EPOCH_MS = 253402300799999;

const HEX = "0123456789ABCDEF";
const hex = "0123456789abcdef";

/** SigV4's URI encoding: A-Z a-z 0-9 - . _ ~ kept, every other UTF-8 byte as %XX, uppercase. */
export function sigv4Encode(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    let c = text.charCodeAt(i);
    if ((c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e) {
      out += text[i];
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out += pct(c);
    else if (c < 0x800) out += pct(0xc0 | (c >> 6)) + pct(0x80 | (c & 63));
    else if (c < 0x10000) out += pct(0xe0 | (c >> 12)) + pct(0x80 | ((c >> 6) & 63)) + pct(0x80 | (c & 63));
    else out += pct(0xf0 | (c >> 18)) + pct(0x80 | ((c >> 12) & 63)) + pct(0x80 | ((c >> 6) & 63)) + pct(0x80 | (c & 63));
  }
  return out;
}

function pct(byte: number): string {
  return "%" + HEX[byte >> 4] + HEX[byte & 15];
}

/**
 * The UTF-8 bytes of `text`, written straight into a Uint8Array of their length (an Array of the
 * bytes first took one 9 to 11 KB chunk for a canonical request in the simulator, and failed a
 * reconnect in the device app's 32 KB heap). What is signed is checked printable ASCII or percent-
 * encoded, so a lone surrogate can only be a caller's mistake.
 */
export function utf8Bytes(text: string): Uint8Array {
  const length = utf8Length(text, true);
  if (length < 0) throw invalid("text to sign must be well-formed UTF-16 (no lone surrogate)");
  const bytes = new Uint8Array(length);
  writeUtf8(text, bytes, 0);
  return bytes;
}

function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += hex[bytes[i] >> 4] + hex[bytes[i] & 15];
  return out;
}

function pad(value: number, width: number): string {
  let text = String(value);
  while (text.length < width) text = "0" + text;
  return text;
}

/** The civil (proleptic Gregorian, UTC) date of a day count since 1970-01-01, in integer arithmetic. */
export function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  return { year, month, day };
}

/** `yyyymmddThhmmssZ` for a whole, non-negative epoch-ms time up to year 9999. */
export function amzDateOf(epochMs: number): string {
  if (typeof epochMs !== "number" || !Number.isInteger(epochMs) || epochMs < 0 || epochMs > MAX_EPOCH_MS) {
    throw invalid("the time must be whole milliseconds since 1970 up to year 9999, got " + (typeof epochMs === "number" ? String(epochMs) : typeof epochMs));
  }
  const seconds = Math.floor(epochMs / 1000);
  const days = Math.floor(seconds / 86400);
  const rest = seconds - days * 86400;
  const { year, month, day } = civilFromDays(days);
  const hh = Math.floor(rest / 3600);
  const mm = Math.floor((rest - hh * 3600) / 60);
  const ss = rest - hh * 3600 - mm * 60;
  return pad(year, 4) + pad(month, 2) + pad(day, 2) + "T" + pad(hh, 2) + pad(mm, 2) + pad(ss, 2) + "Z";
}

// Frozen for preloading (not global: test() never writes lastIndex).
// Patterns are written in the functions that use them, so they are made at run time: a RegExp
// kept in this preloaded module could crash XS 13's exec (see isWordOf in types.ts).
function isRegion(text: string): boolean {
  return /^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$/.test(text);
}

function isHostLabel(text: string): boolean {
  return /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(text);
}

/** The region of an AWS IoT endpoint `<id>-ats.iot.<region>.amazonaws.com` (or `.amazonaws.com.cn`); "" when it is not one. */
export function regionFromEndpoint(host: string): string {
  const match = /^[A-Za-z0-9-]+\.iot\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$/.exec(typeof host === "string" ? host.toLowerCase() : "");
  return match !== null && isRegion(match[1]) ? match[1] : "";
}

function hostProblem(host: unknown): string {
  if (typeof host !== "string" || host.length === 0 || host.length > 253) return "the host must be a DNS name of 1 to 253 characters";
  const labels = host.split(".");
  for (let i = 0; i < labels.length; i++) if (!isHostLabel(labels[i])) return "the host must be a DNS name (letters, digits, hyphens and dots, no port), got \"" + host + "\"";
  return "";
}

/** Throws an invalid-argument error for the first bad input; the secret and the token are never shown. */
function check(input: SigV4Input, crypto: SigV4Crypto): { region: string; floor: number } {
  if (typeof input !== "object" || input === null) throw invalid("the SigV4 input must be an object");
  if (typeof crypto !== "object" || crypto === null || typeof crypto.sha256Hex !== "function" || typeof crypto.hmacSha256 !== "function") {
    throw invalid("the SigV4 crypto must provide sha256Hex() and hmacSha256()");
  }
  const hostProblemText = hostProblem(input.host);
  if (hostProblemText !== "") throw invalid(hostProblemText);
  const id = input.accessKeyId;
  if (typeof id !== "string" || !/^[A-Za-z0-9]{16,128}$/.test(id)) throw invalid("the access key id must be 16 to 128 letters and digits");
  const secret = input.secretAccessKey;
  if (typeof secret !== "string" || secret.length === 0 || secret.length > 256 || !/^[\x21-\x7e]+$/.test(secret)) {
    throw invalid("the secret access key must be 1 to 256 printable ASCII characters without spaces");
  }
  const token = input.sessionToken;
  if (token !== undefined && (typeof token !== "string" || token.length === 0 || token.length > 4096 || !/^[\x21-\x7e]+$/.test(token))) {
    throw invalid("the session token, when given, must be 1 to 4096 printable ASCII characters without spaces");
  }
  let region: string;
  if (input.region !== undefined) {
    if (typeof input.region !== "string" || !isRegion(input.region)) throw invalid("the region must look like \"eu-west-1\", got " + (typeof input.region === "string" ? "\"" + input.region + "\"" : typeof input.region));
    region = input.region;
  } else {
    region = regionFromEndpoint(input.host);
    if (region === "") throw invalid("no region given, and the host \"" + input.host + "\" is not an AWS IoT endpoint <id>-ats.iot.<region>.amazonaws.com");
  }
  const floor = input.clockFloorMs === undefined ? DEFAULT_CLOCK_FLOOR_MS : input.clockFloorMs;
  if (typeof floor !== "number" || !Number.isInteger(floor) || floor < 0 || floor > MAX_EPOCH_MS) throw invalid("the clock floor must be whole milliseconds since 1970");
  const now = input.nowMs;
  if (typeof now !== "number" || !Number.isInteger(now) || now < 0 || now > MAX_EPOCH_MS) {
    throw invalid("the time must be whole milliseconds since 1970 up to year 9999, got " + (typeof now === "number" ? String(now) : typeof now));
  }
  if (now < floor) throw invalid("the clock reads " + amzDateOf(now) + ", before " + amzDateOf(floor) + ": set the time before signing (SigV4 needs the real date)");
  return { region, floor };
}

/** The presigned `GET /mqtt` for AWS IoT over WebSocket (port 443), signed now. */
export function presignMqttUrl(input: SigV4Input, crypto: SigV4Crypto): SigV4Url {
  const { region } = check(input, crypto);
  const host = input.host;
  const amzDate = amzDateOf(input.nowMs);
  const date = amzDate.slice(0, 8);
  const scope = date + "/" + region + "/" + SIGV4_SERVICE + "/aws4_request";
  // Already in code-point order: Algorithm < Credential < Date < SignedHeaders.
  const query =
    "X-Amz-Algorithm=" + SIGV4_ALGORITHM +
    "&X-Amz-Credential=" + sigv4Encode(input.accessKeyId + "/" + scope) +
    "&X-Amz-Date=" + amzDate +
    "&X-Amz-SignedHeaders=host";
  const canonicalRequest = "GET\n/mqtt\n" + query + "\nhost:" + host + "\n\nhost\n" + EMPTY_PAYLOAD_SHA256;
  const stringToSign = SIGV4_ALGORITHM + "\n" + amzDate + "\n" + scope + "\n" + crypto.sha256Hex(utf8Bytes(canonicalRequest));
  let key = crypto.hmacSha256(utf8Bytes("AWS4" + input.secretAccessKey), utf8Bytes(date));
  key = crypto.hmacSha256(key, utf8Bytes(region));
  key = crypto.hmacSha256(key, utf8Bytes(SIGV4_SERVICE));
  key = crypto.hmacSha256(key, utf8Bytes("aws4_request"));
  const signature = toHex(crypto.hmacSha256(key, utf8Bytes(stringToSign)));
  let path = "/mqtt?" + query + "&X-Amz-Signature=" + signature;
  if (input.sessionToken !== undefined) path += "&X-Amz-Security-Token=" + sigv4Encode(input.sessionToken);
  return { host, region, path, url: "wss://" + host + path, amzDate, canonicalRequest, stringToSign, signature };
}
