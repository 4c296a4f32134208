// Reads one direction of a TLS 1.2 handshake as it passes. Until a side sends ChangeCipherSpec,
// its TLS 1.2 handshake records are plaintext, so the certificates a peer actually sent, the
// server's choice of cipher suite and its certificate request can be seen (node:tls only exposes a
// chain completed from the local trust store, and decides about client certificates only after the
// handshake). The desktop SecureSocket reads the server's side; the embedded broker the client's.

export const RECORD_CHANGE_CIPHER_SPEC = 20;
export const RECORD_ALERT = 21;
export const RECORD_HANDSHAKE = 22;

export const HANDSHAKE_SERVER_HELLO = 2;
export const HANDSHAKE_CERTIFICATE = 11;
export const HANDSHAKE_CERTIFICATE_REQUEST = 13;
export const HANDSHAKE_SERVER_HELLO_DONE = 14;

export const ALERT_HANDSHAKE_FAILURE = 40;
export const ALERT_BAD_CERTIFICATE = 42;
export const ALERT_CERTIFICATE_EXPIRED = 45;
export const ALERT_UNKNOWN_CA = 48;
export const ALERT_PROTOCOL_VERSION = 70;

export interface HandshakeEvents {
  /** A complete handshake message. Throwing stops the bytes that carried it from being passed on. */
  message(type: number, body: Buffer): void;
  alert(level: number, description: number): void;
}

export class TlsHandshakeReader {
  private records: Buffer = Buffer.alloc(0);
  private messages: Buffer = Buffer.alloc(0);
  private encrypted = false;

  constructor(private readonly events: HandshakeEvents) {}

  /** Feeds bytes in the order they were received; errors thrown by the event handlers propagate. */
  observe(chunk: Buffer): void {
    if (this.encrypted) return;
    this.records = this.records.length === 0 ? chunk : Buffer.concat([this.records, chunk]);
    while (!this.encrypted && this.records.length >= 5) {
      const length = this.records.readUInt16BE(3);
      if (this.records.length < 5 + length) break;
      const type = this.records[0]!;
      const fragment = this.records.subarray(5, 5 + length);
      this.records = this.records.subarray(5 + length);
      if (type === RECORD_HANDSHAKE) this.onHandshakeFragment(fragment);
      else if (type === RECORD_ALERT && fragment.length >= 2) this.events.alert(fragment[0]!, fragment[1]!);
      else if (type === RECORD_CHANGE_CIPHER_SPEC) this.stop();
    }
  }

  // Everything after ChangeCipherSpec is encrypted; reading stops for good, so the data path pays nothing.
  private stop(): void {
    this.encrypted = true;
    this.records = Buffer.alloc(0);
    this.messages = Buffer.alloc(0);
  }

  private onHandshakeFragment(fragment: Buffer): void {
    this.messages = this.messages.length === 0 ? fragment : Buffer.concat([this.messages, fragment]);
    while (this.messages.length >= 4) {
      const length = this.messages.readUIntBE(1, 3);
      if (this.messages.length < 4 + length) break;
      const type = this.messages[0]!;
      const body = this.messages.subarray(4, 4 + length);
      this.messages = this.messages.subarray(4 + length);
      this.events.message(type, body);
    }
  }
}

export function parseServerHello(body: Buffer): { version: number; cipherSuite: number } | undefined {
  const sessionIdLength = body[34] ?? 0;
  const suiteOffset = 35 + sessionIdLength;
  if (body.length < suiteOffset + 2) return undefined;
  return { version: body.readUInt16BE(0), cipherSuite: body.readUInt16BE(suiteOffset) };
}

/** The DER certificates of a Certificate message, in the order sent (leaf first). */
export function parseCertificateList(body: Buffer): Buffer[] {
  const chain: Buffer[] = [];
  let offset = 3;
  while (offset + 3 <= body.length) {
    const length = body.readUIntBE(offset, 3);
    chain.push(Buffer.from(body.subarray(offset + 3, offset + 3 + length)));
    offset += 3 + length;
  }
  return chain;
}

/** A fatal alert as a plaintext TLS 1.2 record, what a peer sends when it rejects the handshake. */
export function fatalAlertRecord(description: number): Buffer {
  return Buffer.of(RECORD_ALERT, 0x03, 0x03, 0x00, 0x02, 0x02, description);
}

const ALERT_NAMES: Readonly<Record<number, string>> = {
  0: "close_notify",
  10: "unexpected_message",
  20: "bad_record_mac",
  40: "handshake_failure",
  42: "bad_certificate",
  43: "unsupported_certificate",
  44: "certificate_revoked",
  45: "certificate_expired",
  46: "certificate_unknown",
  47: "illegal_parameter",
  48: "unknown_ca",
  49: "access_denied",
  50: "decode_error",
  51: "decrypt_error",
  70: "protocol_version",
  71: "insufficient_security",
  80: "internal_error",
  112: "unrecognized_name",
  116: "certificate_required",
  120: "no_application_protocol",
};

export function alertName(description: number): string {
  return ALERT_NAMES[description] ?? `alert ${description}`;
}
