// Reads the server's side of a TLS 1.2 handshake as it arrives, before node:tls sees it. Until the
// server's ChangeCipherSpec, TLS 1.2 handshake records are plaintext, so the certificates the
// server actually sent, its choice of cipher suite and whether it asks for a client certificate
// can be seen here (node:tls only exposes a chain completed from the local trust store).

export const RECORD_CHANGE_CIPHER_SPEC = 20;
export const RECORD_ALERT = 21;
export const RECORD_HANDSHAKE = 22;

export const HANDSHAKE_SERVER_HELLO = 2;
export const HANDSHAKE_CERTIFICATE = 11;
export const HANDSHAKE_CERTIFICATE_REQUEST = 13;
export const HANDSHAKE_SERVER_HELLO_DONE = 14;

export interface ServerHandshakeEvents {
  serverHello(version: number, cipherSuite: number): void;
  certificates(chain: Buffer[]): void;
  certificateRequest(): void;
  /** Called before the bytes that carry ServerHelloDone are handed on; throwing stops them. */
  serverHelloDone(): void;
  alert(level: number, description: number): void;
}

export class ServerHandshakeObserver {
  private records: Buffer = Buffer.alloc(0);
  private messages: Buffer = Buffer.alloc(0);
  private encrypted = false;

  constructor(private readonly events: ServerHandshakeEvents) {}

  /** Feeds bytes received from the server; errors thrown by the event handlers propagate. */
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
      this.onMessage(type, body);
    }
  }

  private onMessage(type: number, body: Buffer): void {
    switch (type) {
      case HANDSHAKE_SERVER_HELLO: {
        const sessionIdLength = body[34] ?? 0;
        const suiteOffset = 35 + sessionIdLength;
        if (body.length >= suiteOffset + 2) this.events.serverHello(body.readUInt16BE(0), body.readUInt16BE(suiteOffset));
        break;
      }
      case HANDSHAKE_CERTIFICATE: {
        const chain: Buffer[] = [];
        let offset = 3;
        while (offset + 3 <= body.length) {
          const length = body.readUIntBE(offset, 3);
          chain.push(Buffer.from(body.subarray(offset + 3, offset + 3 + length)));
          offset += 3 + length;
        }
        this.events.certificates(chain);
        break;
      }
      case HANDSHAKE_CERTIFICATE_REQUEST:
        this.events.certificateRequest();
        break;
      case HANDSHAKE_SERVER_HELLO_DONE:
        this.events.serverHelloDone();
        break;
    }
  }
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
