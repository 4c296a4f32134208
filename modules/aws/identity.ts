// The device's own identity after fleet provisioning: its certificate and private key in the forms
// Moddable's SecureSocket takes (DER; the key as unencrypted PKCS#8 RSA), and its thing name. Here:
// - PEM to DER (a portable base64 decoder writing into the caller's buffer), with AWS's PKCS#1 key
//   ("RSA PRIVATE KEY", what CreateKeysAndCertificate returns) wrapped into PKCS#8, which is all
//   Moddable's etc/pkcs8.js parses;
// - the identity as one record of bytes (serializeIdentity / parseIdentity, checked by a CRC-32 and
//   by the structure of the certificate and the key), so that a storage layer can keep it whole;
// - IdentityStore: where the record lives. MemoryIdentityStore for tests and the simulator;
//   JournalIdentityStore over a power-cut-safe record journal (modules/storage/journal's Journal has
//   the shape it needs), where a new identity is one record, so a cut at any byte of its write leaves
//   the previous identity in place.
// No host API; integer arithmetic; every input checked at the call. Error messages name what is
// wrong, never key bytes.

import { crc32 } from "../storage/crc32";
import { ErrorCode, invalid, IoTLinkError, isWordOf, shown, wholeNumber } from "../types";

/** The device identity: what the transport needs to connect as the provisioned thing. */
export interface Identity {
  /** The thing name RegisterThing returned (1 to 128 of A-Z a-z 0-9 : _ -). */
  readonly thingName: string;
  /** The device certificate, DER. */
  readonly certificate: Uint8Array;
  /** Its private key, DER, unencrypted PKCS#8 RSA. */
  readonly privateKey: Uint8Array;
}

/** A serialized identity's largest size: room for RSA-4096 keys and long certificate chains' leaf. */
export const IDENTITY_MAX_BYTES = 8192;

// ------------------------------------------------------------------ base64 and PEM

/** The 6-bit value of a base64 character code; -1 for whitespace (skipped), -2 for anything else. */
function base64Value(code: number): number {
  if (code >= 65 && code <= 90) return code - 65; // A-Z
  if (code >= 97 && code <= 122) return code - 71; // a-z
  if (code >= 48 && code <= 57) return code + 4; // 0-9
  if (code === 43) return 62; // +
  if (code === 47) return 63; // /
  if (code === 32 || code === 9 || code === 10 || code === 13) return -1;
  return -2;
}

/**
 * Decodes the base64 text `text[start, end)` (whitespace allowed between characters, "=" padding only
 * at the end, or none) into `into` from `offset`; returns the bytes written. Throws invalid-argument
 * when the text is not base64 or does not fit.
 */
export function decodeBase64(text: string, start: number, end: number, into: Uint8Array, offset: number): number {
  let at = offset;
  let bits = 0;
  let count = 0; // characters of the current quantum
  let i = start;
  for (; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code === 61) break; // "="
    const value = base64Value(code);
    if (value === -1) continue;
    if (value < 0) throw invalid("base64: unexpected character at " + (i - start));
    bits = (bits << 6) | value;
    if (++count < 4) continue;
    if (at + 3 > into.length) throw invalid("base64: the output needs more than the " + (into.length - offset) + " bytes given");
    into[at] = (bits >> 16) & 0xff;
    into[at + 1] = (bits >> 8) & 0xff;
    into[at + 2] = bits & 0xff;
    at += 3;
    bits = 0;
    count = 0;
  }
  if (i < end) {
    // Padding completes the last quantum of 2 or 3 characters; only whitespace may follow it.
    let padding = 0;
    for (; i < end; i++) {
      const code = text.charCodeAt(i);
      if (code === 61) padding++;
      else if (base64Value(code) !== -1) throw invalid("base64: text after the padding");
    }
    if (count < 2 || padding !== 4 - count) throw invalid("base64: misplaced padding");
  }
  if (count === 0) return at - offset;
  if (count === 1) throw invalid("base64: truncated");
  // 2 characters (12 bits) make 1 byte, 3 (18 bits) make 2.
  const bytes = count - 1;
  if (at + bytes > into.length) throw invalid("base64: the output needs more than the " + (into.length - offset) + " bytes given");
  if (count === 2) into[at] = (bits >> 4) & 0xff;
  else {
    into[at] = (bits >> 10) & 0xff;
    into[at + 1] = (bits >> 2) & 0xff;
  }
  return at + bytes - offset;
}

const BEGIN = "-----BEGIN ";
const END = "-----END ";
const DASHES = "-----";

function isSpace(code: number): boolean {
  return code === 32 || code === 9 || code === 10 || code === 13;
}

// Where the last pemBlock() found the base64 body.
let bodyStart = 0;
let bodyEnd = 0;

/** The label of a single PEM block (e.g. "CERTIFICATE"), with its body's range in bodyStart/bodyEnd; throws when `pem` is not one. */
function pemBlock(pem: unknown): string {
  if (typeof pem !== "string") throw invalid("PEM text must be a string, got " + (pem === null ? "null" : typeof pem));
  let first = 0;
  while (first < pem.length && isSpace(pem.charCodeAt(first))) first++;
  if (pem.indexOf(BEGIN, first) !== first) throw invalid("not PEM text: it does not start with " + BEGIN + "...");
  const labelStart = first + BEGIN.length;
  const labelEnd = pem.indexOf(DASHES, labelStart);
  if (labelEnd < 0 || labelEnd - labelStart > 40) throw invalid("PEM: the BEGIN line has no label");
  const label = pem.slice(labelStart, labelEnd);
  const footer = END + label + DASHES;
  const footerAt = pem.indexOf(footer, labelEnd + DASHES.length);
  if (footerAt < 0) throw invalid("PEM: no " + END + label + DASHES + " line");
  for (let i = footerAt + footer.length; i < pem.length; i++) {
    if (!isSpace(pem.charCodeAt(i))) throw invalid("PEM: text after the " + label + " block (one block expected)");
  }
  bodyStart = labelEnd + DASHES.length;
  bodyEnd = footerAt;
  // RFC 1421 headers (Proc-Type: 4,ENCRYPTED...) mean a key encrypted with a passphrase.
  if (pem.indexOf(":", bodyStart) >= 0 && pem.indexOf(":", bodyStart) < bodyEnd) throw invalid("PEM: the " + label + " block has headers (an encrypted key?); an unencrypted one is needed");
  return label;
}

/** The label of the PEM block in `pem` ("CERTIFICATE", "RSA PRIVATE KEY", "PRIVATE KEY"...), or "" when it is not one PEM block. */
export function pemLabel(pem: unknown): string {
  try {
    return pemBlock(pem);
  } catch {
    return "";
  }
}

/** The most DER bytes the PEM text can hold (to size a buffer): 3 per 4 characters of its length. */
export function pemMaxDerBytes(pem: string): number {
  return typeof pem === "string" ? ((pem.length >> 2) + 1) * 3 : 0;
}

/**
 * Decodes the PEM block of `label` in `pem` into `into` from `offset`; returns the DER's length.
 * Throws invalid-argument when `pem` is not one PEM block of that label, or does not fit `into`.
 */
export function pemToDer(pem: string, label: string, into: Uint8Array, offset = 0): number {
  if (!(into instanceof Uint8Array)) throw invalid("pemToDer needs a Uint8Array to write into");
  wholeNumber("offset", offset, 0, into.length);
  const found = pemBlock(pem);
  if (found !== label) throw invalid("PEM: expected a " + label + " block, got " + (/^[AEIOU]/.test(found) ? "an " : "a ") + found + " block");
  const length = decodeBase64(pem, bodyStart, bodyEnd, into, offset);
  if (length === 0) throw invalid("PEM: the " + label + " block is empty");
  return length;
}

// ------------------------------------------------------------------ DER structure

const SEQUENCE = 0x30;
const INTEGER = 0x02;
const OCTET_STRING = 0x04;

/**
 * The end of the DER element starting at `start` (its tag, length and contents), when it ends at or
 * before `end`; -1 when it is malformed (long tags, indefinite or oversized lengths) or runs past `end`.
 */
export function derElementEnd(bytes: Uint8Array, start: number, end: number): number {
  if (start + 2 > end) return -1;
  if ((bytes[start] & 0x1f) === 0x1f) return -1; // multi-byte tags: none in certificates' or keys' outer structure
  let length = bytes[start + 1];
  let at = start + 2;
  if (length >= 0x80) {
    const count = length & 0x7f;
    if (count === 0 || count > 3 || at + count > end) return -1; // indefinite, or over 16 MB
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[at + i];
    at += count;
  }
  return at + length <= end ? at + length : -1;
}

/** Where the contents of the DER element at `start` begin (after its tag and length). */
function contentsAt(bytes: Uint8Array, start: number): number {
  const length = bytes[start + 1];
  return start + 2 + (length >= 0x80 ? length & 0x7f : 0);
}

/** What is wrong with `bytes[offset, offset + length)` as a DER X.509 certificate, or "". Structure only: one SEQUENCE holding SEQUENCEs. */
export function certificateDerProblem(bytes: Uint8Array, offset: number, length: number): string {
  const end = offset + length;
  if (length < 16 || bytes[offset] !== SEQUENCE || derElementEnd(bytes, offset, end) !== end) return "the certificate is not one DER SEQUENCE";
  const inner = contentsAt(bytes, offset);
  if (bytes[inner] !== SEQUENCE || derElementEnd(bytes, inner, end) < 0) return "the certificate has no tbsCertificate SEQUENCE";
  return "";
}

/** What is wrong with `bytes[offset, offset + length)` as a DER PKCS#1 RSAPrivateKey (version 0, 8 integers), or "". */
export function rsaPrivateKeyDerProblem(bytes: Uint8Array, offset: number, length: number): string {
  const end = offset + length;
  if (length < 16 || bytes[offset] !== SEQUENCE || derElementEnd(bytes, offset, end) !== end) return "the RSA key is not one DER SEQUENCE";
  let at = contentsAt(bytes, offset);
  if (bytes[at] !== INTEGER || bytes[at + 1] !== 1 || bytes[at + 2] !== 0) return "the RSA key's version is not 0 (two-prime)";
  for (let i = 0; i < 9; i++) {
    if (bytes[at] !== INTEGER) return "the RSA key lacks its integers (modulus, exponents, primes)";
    at = derElementEnd(bytes, at, end);
    if (at < 0) return "the RSA key's integers are malformed";
  }
  return at === end ? "" : "the RSA key has bytes after its integers";
}

// PrivateKeyInfo's version (0) and AlgorithmIdentifier { rsaEncryption (1.2.840.113549.1.1.1), NULL }.
const PKCS8_RSA_PREFIX: readonly number[] = Object.freeze([0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00]);

/** What is wrong with `bytes[offset, offset + length)` as an unencrypted PKCS#8 RSA private key (what Moddable's TLS takes), or "". */
export function pkcs8RsaKeyDerProblem(bytes: Uint8Array, offset: number, length: number): string {
  const end = offset + length;
  if (length < 32 || bytes[offset] !== SEQUENCE || derElementEnd(bytes, offset, end) !== end) return "the private key is not one DER SEQUENCE";
  let at = contentsAt(bytes, offset);
  for (let i = 0; i < PKCS8_RSA_PREFIX.length; i++) {
    if (bytes[at + i] !== PKCS8_RSA_PREFIX[i]) return "the private key is not an unencrypted PKCS#8 RSA key (Moddable's TLS takes RSA client keys only)";
  }
  at += PKCS8_RSA_PREFIX.length;
  if (bytes[at] !== OCTET_STRING) return "the PKCS#8 key holds no key OCTET STRING";
  const keyEnd = derElementEnd(bytes, at, end);
  if (keyEnd < 0) return "the PKCS#8 key's OCTET STRING is malformed";
  const inner = contentsAt(bytes, at);
  // Optional attributes ([0]) may follow the key; nothing else.
  if (keyEnd !== end && (bytes[keyEnd] !== 0xa0 || derElementEnd(bytes, keyEnd, end) !== end)) return "the PKCS#8 key has unexpected bytes after the key";
  return rsaPrivateKeyDerProblem(bytes, inner, keyEnd - inner);
}

/** Bytes of a DER length field for `length`. */
function derLengthBytes(length: number): number {
  return length < 0x80 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 4;
}

function writeDerLength(into: Uint8Array, at: number, length: number): number {
  const bytes = derLengthBytes(length);
  if (bytes === 1) {
    into[at] = length;
    return at + 1;
  }
  into[at] = 0x80 | (bytes - 1);
  for (let i = bytes - 1; i >= 1; i--) {
    into[at + i] = length & 0xff;
    length = length >>> 8;
  }
  return at + bytes;
}

/**
 * The private key of `pem` as unencrypted PKCS#8 RSA DER, written into `into` from `offset`; returns
 * its length. Takes a "PRIVATE KEY" block (PKCS#8, checked) or a "RSA PRIVATE KEY" block (PKCS#1, as
 * AWS IoT issues keys), which is wrapped: SEQUENCE { 0, rsaEncryption, OCTET STRING { the key } }.
 */
export function privateKeyToPkcs8Der(pem: string, into: Uint8Array, offset = 0): number {
  if (!(into instanceof Uint8Array)) throw invalid("privateKeyToPkcs8Der needs a Uint8Array to write into");
  wholeNumber("offset", offset, 0, into.length);
  const label = pemBlock(pem);
  if (label === "PRIVATE KEY") {
    const length = decodeBase64(pem, bodyStart, bodyEnd, into, offset);
    const problem = pkcs8RsaKeyDerProblem(into, offset, length);
    if (problem !== "") throw invalid(problem);
    return length;
  }
  if (label !== "RSA PRIVATE KEY") throw invalid("PEM: expected an RSA private key (PKCS#1 or PKCS#8), got " + (/^[AEIOU]/.test(label) ? "an " : "a ") + label + " block");
  // Decoded after the room the wrapper needs; the wrapper's size depends on the key's, so the key is
  // decoded at the largest header's distance (4 + 18 + 4 bytes) and moved down when shorter.
  const largest = 4 + PKCS8_RSA_PREFIX.length + 4;
  if (offset + largest > into.length) throw invalid("privateKeyToPkcs8Der: the buffer is too small");
  const keyLength = decodeBase64(pem, bodyStart, bodyEnd, into, offset + largest);
  if (keyLength > 0xffff) throw invalid("the RSA key is over 65535 bytes");
  const problem = rsaPrivateKeyDerProblem(into, offset + largest, keyLength);
  if (problem !== "") throw invalid(problem);
  const octets = 1 + derLengthBytes(keyLength) + keyLength;
  const contents = PKCS8_RSA_PREFIX.length + octets;
  const header = 1 + derLengthBytes(contents) + PKCS8_RSA_PREFIX.length + 1 + derLengthBytes(keyLength);
  into.copyWithin(offset + header, offset + largest, offset + largest + keyLength);
  into[offset] = SEQUENCE;
  let at = writeDerLength(into, offset + 1, contents);
  for (let i = 0; i < PKCS8_RSA_PREFIX.length; i++) into[at++] = PKCS8_RSA_PREFIX[i];
  into[at++] = OCTET_STRING;
  writeDerLength(into, at, keyLength);
  return header + keyLength;
}

// ------------------------------------------------------------------ the identity record

// Layout (little-endian):
//   0  4   "IDN1"            magic and format version
//   4  u16 thing name bytes  (1..128, ASCII)
//   6  u16 certificate bytes
//   8  u16 key bytes
//  10  u16 0                 reserved
//  12  ...                   thing name, certificate DER, key DER
//  end u32                   CRC-32 (modules/storage/crc32) of everything before it: the record
//                            checks itself in any store, journal or not
const MAGIC: readonly number[] = Object.freeze([0x49, 0x44, 0x4e, 0x31]);
const HEADER_BYTES = 12;
const CRC_BYTES = 4;

function thingNameByte(code: number): boolean {
  return (code >= 48 && code <= 58) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95 || code === 45; // 0-9 : A-Z a-z _ -
}

/** What is wrong with `identity` as an Identity to keep, or "". */
export function identityProblem(identity: unknown): string {
  if (identity === null || typeof identity !== "object") return "an identity must be an object {thingName, certificate, privateKey}, got " + shown(identity);
  const { thingName, certificate, privateKey } = identity as Identity;
  if (typeof thingName !== "string" || !isWordOf(thingName, 1, 128, ":_-")) return "thingName must be 1 to 128 of A-Z a-z 0-9 : _ -, got " + shown(thingName);
  if (!(certificate instanceof Uint8Array) || certificate.length > 0xffff) return "certificate must be a Uint8Array of DER (at most 65535 bytes)";
  if (!(privateKey instanceof Uint8Array) || privateKey.length > 0xffff) return "privateKey must be a Uint8Array of DER (at most 65535 bytes)";
  return certificateDerProblem(certificate, 0, certificate.length) || pkcs8RsaKeyDerProblem(privateKey, 0, privateKey.length);
}

/** Bytes `identity` takes serialized. */
export function identityBytes(identity: Identity): number {
  return HEADER_BYTES + identity.thingName.length + identity.certificate.length + identity.privateKey.length + CRC_BYTES;
}

function put16(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = value >>> 8;
}

function get16(bytes: Uint8Array, at: number): number {
  return bytes[at] | (bytes[at + 1] << 8);
}

/** Writes `identity` into `into` from `offset` (checked first); returns the bytes written. */
export function serializeIdentity(identity: Identity, into: Uint8Array, offset = 0): number {
  const problem = identityProblem(identity);
  if (problem !== "") throw invalid("identity: " + problem);
  if (!(into instanceof Uint8Array)) throw invalid("serializeIdentity needs a Uint8Array to write into");
  wholeNumber("offset", offset, 0, into.length);
  const total = identityBytes(identity);
  if (offset + total > into.length) throw invalid("identity: " + total + " bytes do not fit the " + (into.length - offset) + " bytes given");
  const { thingName, certificate, privateKey } = identity;
  for (let i = 0; i < 4; i++) into[offset + i] = MAGIC[i];
  put16(into, offset + 4, thingName.length);
  put16(into, offset + 6, certificate.length);
  put16(into, offset + 8, privateKey.length);
  put16(into, offset + 10, 0);
  let at = offset + HEADER_BYTES;
  for (let i = 0; i < thingName.length; i++) into[at++] = thingName.charCodeAt(i);
  into.set(certificate, at);
  at += certificate.length;
  into.set(privateKey, at);
  at += privateKey.length;
  const crc = crc32(into, offset, at - offset);
  into[at] = crc & 0xff;
  into[at + 1] = (crc >>> 8) & 0xff;
  into[at + 2] = (crc >>> 16) & 0xff;
  into[at + 3] = crc >>> 24;
  return at + CRC_BYTES - offset;
}

/** What is wrong with `bytes[offset, offset + length)` as a serialized identity, or "". */
export function serializedIdentityProblem(bytes: Uint8Array, offset: number, length: number): string {
  if (length < HEADER_BYTES + CRC_BYTES) return "an identity record has at least " + (HEADER_BYTES + CRC_BYTES) + " bytes, got " + length;
  for (let i = 0; i < 4; i++) if (bytes[offset + i] !== MAGIC[i]) return "not an identity record (no IDN1 header)";
  const nameLength = get16(bytes, offset + 4);
  const certificateLength = get16(bytes, offset + 6);
  const keyLength = get16(bytes, offset + 8);
  if (HEADER_BYTES + nameLength + certificateLength + keyLength + CRC_BYTES !== length) return "the identity record's lengths do not add up to its " + length + " bytes";
  const end = offset + length - CRC_BYTES;
  const stored = (bytes[end] | (bytes[end + 1] << 8) | (bytes[end + 2] << 16) | (bytes[end + 3] << 24)) >>> 0;
  if (crc32(bytes, offset, length - CRC_BYTES) !== stored) return "the identity record's CRC-32 does not match (corrupt or torn)";
  if (nameLength < 1 || nameLength > 128 || get16(bytes, offset + 10) !== 0) return "the identity record's header is invalid";
  const name = offset + HEADER_BYTES;
  for (let i = 0; i < nameLength; i++) if (!thingNameByte(bytes[name + i])) return "the identity record's thing name has a character outside A-Z a-z 0-9 : _ -";
  const certificate = name + nameLength;
  return certificateDerProblem(bytes, certificate, certificateLength) || pkcs8RsaKeyDerProblem(bytes, certificate + certificateLength, keyLength);
}

/**
 * The identity serialized in `bytes[offset, offset + length)` (default: to the end), checked whole.
 * Its certificate and key are views into `bytes`, valid while those bytes are. Throws invalid-argument
 * naming the problem.
 */
export function parseIdentity(bytes: Uint8Array, offset = 0, length?: number): Identity {
  if (!(bytes instanceof Uint8Array)) throw invalid("parseIdentity needs a Uint8Array");
  wholeNumber("offset", offset, 0, bytes.length);
  const size = length === undefined ? bytes.length - offset : wholeNumber("length", length, 0, bytes.length - offset);
  const problem = serializedIdentityProblem(bytes, offset, size);
  if (problem !== "") throw invalid(problem);
  const nameLength = get16(bytes, offset + 4);
  const certificateLength = get16(bytes, offset + 6);
  const keyLength = get16(bytes, offset + 8);
  let thingName = "";
  const name = offset + HEADER_BYTES;
  for (let i = 0; i < nameLength; i++) thingName += String.fromCharCode(bytes[name + i]);
  const certificate = name + nameLength;
  return { thingName, certificate: bytes.subarray(certificate, certificate + certificateLength), privateKey: bytes.subarray(certificate + certificateLength, certificate + certificateLength + keyLength) };
}

// ------------------------------------------------------------------ stores

/** Where the device keeps its identity across reboots. */
export interface IdentityStore {
  /** The identity kept, or undefined when there is none (or none intact). Its byte views are valid until the next load() or save(). */
  load(): Identity | undefined;
  /** Keeps `identity` in place of the previous one; throws when it cannot (the previous one is kept then). */
  save(identity: Identity): void;
}

/** An IdentityStore in RAM (tests, the simulator): the serialized record is kept, so a save and a load go through the format. */
export class MemoryIdentityStore implements IdentityStore {
  private readonly buffer: Uint8Array;
  private length = 0;

  constructor(maxBytes = IDENTITY_MAX_BYTES) {
    this.buffer = new Uint8Array(wholeNumber("maxBytes", maxBytes, HEADER_BYTES + CRC_BYTES, 0x10000));
  }

  load(): Identity | undefined {
    if (this.length === 0) return undefined;
    return serializedIdentityProblem(this.buffer, 0, this.length) === "" ? parseIdentity(this.buffer, 0, this.length) : undefined;
  }

  save(identity: Identity): void {
    const problem = identityProblem(identity);
    if (problem !== "") throw invalid("identity: " + problem);
    if (identityBytes(identity) > this.buffer.length) throw invalid("identity: " + identityBytes(identity) + " bytes are over this store's " + this.buffer.length);
    this.length = serializeIdentity(identity, this.buffer, 0);
  }
}

/**
 * What JournalIdentityStore needs from a record journal: append a record (on flash, whole or not at
 * all, when the call returns), acknowledge (drop) one, and read the live ones, oldest first.
 * modules/storage/journal's Journal has this shape.
 */
export interface IdentityJournal {
  readonly count: number;
  seqAt(index: number): number;
  lengthAt(index: number): number;
  readAt(index: number, into: Uint8Array): number;
  /** The record's sequence number, or a negative number when the journal has no room (nothing written). */
  append(bytes: Uint8Array, offset?: number, length?: number): number;
  acknowledge(seq: number): boolean;
}

/**
 * The identity in a power-cut-safe journal of its own: a small partition of at least four 4 KB
 * blocks for an RSA-2048 identity (about 2.2 KB), maxRecords 2 or more, maxPayloadBytes the largest
 * identity (at most a block's room). Four, not three: a cut during a save can seal the head block
 * while the identity in use sits in the oldest one, and the journal's appends never copy records
 * forward, so the next save needs one more free block. (Two cuts in two successive saves can still
 * fill four blocks: the save then throws not-accepted and the identity in use stays.)
 * A save appends the new identity as one record, then acknowledges the older ones: a power cut during
 * the append leaves a torn record the journal never delivers, and the old identity is loaded; a cut
 * after it leaves both, and the newest intact one is loaded. The journal must be open()ed first.
 */
export class JournalIdentityStore implements IdentityStore {
  readonly journal: IdentityJournal;
  private readonly buffer: Uint8Array;

  constructor(journal: IdentityJournal, maxBytes = IDENTITY_MAX_BYTES) {
    if (journal === null || typeof journal !== "object" || typeof journal.append !== "function" || typeof journal.acknowledge !== "function" || typeof journal.readAt !== "function") {
      throw invalid("JournalIdentityStore needs a journal (count, seqAt, lengthAt, readAt, append, acknowledge)");
    }
    this.journal = journal;
    this.buffer = new Uint8Array(wholeNumber("maxBytes", maxBytes, HEADER_BYTES + CRC_BYTES, 0x10000));
  }

  /** The index of the newest live record that is an intact identity (left in the buffer), or -1. */
  private newest(): number {
    const journal = this.journal;
    for (let index = journal.count - 1; index >= 0; index--) {
      const length = journal.lengthAt(index);
      if (length > this.buffer.length) continue;
      journal.readAt(index, this.buffer);
      if (serializedIdentityProblem(this.buffer, 0, length) === "") return index;
    }
    return -1;
  }

  load(): Identity | undefined {
    const index = this.newest();
    return index < 0 ? undefined : parseIdentity(this.buffer, 0, this.journal.lengthAt(index));
  }

  save(identity: Identity): void {
    const problem = identityProblem(identity);
    if (problem !== "") throw invalid("identity: " + problem);
    const total = identityBytes(identity);
    if (total > this.buffer.length) throw invalid("identity: " + total + " bytes are over this store's " + this.buffer.length);
    const journal = this.journal;
    // Records older than the identity in use are dropped first (a cut after an earlier save left them),
    // so the journal has room for the new one beside the one in use.
    const keep = this.newest();
    const keepSeq = keep < 0 ? -1 : journal.seqAt(keep);
    for (let index = journal.count - 1; index >= 0; index--) {
      const seq = journal.seqAt(index);
      if (seq !== keepSeq) journal.acknowledge(seq);
    }
    const length = serializeIdentity(identity, this.buffer, 0);
    const seq = journal.append(this.buffer, 0, length);
    if (seq < 0) throw new IoTLinkError(ErrorCode.NotAccepted, "the identity journal has no room for a " + length + "-byte record; the previous identity is kept");
    // Only now is the old identity superseded.
    if (keepSeq >= 0) journal.acknowledge(keepSeq);
  }
}
