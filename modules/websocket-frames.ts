// RFC 6455 framing, the client's half: masked frames out (section 5.3), and an incremental reader
// of the server's unmasked frames that takes byte chunks of any split, one byte at a time included.
// Data payloads are handed on as slices of the chunk they arrived in (no copy); only a control
// frame's payload (125 bytes at most) is kept, in a buffer allocated once. Integer arithmetic only.

export const enum Opcode {
  Continuation = 0,
  Text = 1,
  Binary = 2,
  Close = 8,
  Ping = 9,
  Pong = 10,
}

export const enum CloseCode {
  Normal = 1000,
  ProtocolError = 1002,
  UnsupportedData = 1003,
  /** Reported (never sent) for a close frame without a status code. */
  NoStatus = 1005,
  TooBig = 1009,
}

/** A control frame's payload limit (section 5.5). */
export const MAX_CONTROL_PAYLOAD = 125;
/** The largest client frame header: 2 bytes, an 8-byte extended length, the 4-byte masking key. */
export const MAX_FRAME_HEADER_BYTES = 14;
/** A masked frame of at most 125 payload bytes: its header and key. */
export const SMALL_FRAME_HEADER_BYTES = 6;
/**
 * The longest data frame payload read. Data payloads stream through unbuffered, so a frame's size
 * costs no memory; a broker may put several MQTT packets in one frame, and an MQTT packet larger
 * than maxPacketBytes is the MQTT decoder's to skip (the link stays up). Beyond this the reader's
 * whole-number arithmetic would need more than 31 bits.
 */
export const MAX_DATA_FRAME_PAYLOAD = 0x7fffffff;

/**
 * Writes one FIN frame of `opcode` carrying `source[offset, offset + length)` masked with the four
 * bytes at `key[keyAt]`, into `target` at `at`; returns where it ends. The header takes 6, 8 or 14
 * bytes by the payload length (up to 125, up to 65535, beyond).
 */
export function writeMaskedFrame(target: Uint8Array, at: number, opcode: Opcode, source: Uint8Array, offset: number, length: number, key: Uint8Array, keyAt: number): number {
  target[at++] = 0x80 | opcode;
  if (length <= 125) {
    target[at++] = 0x80 | length;
  } else if (length <= 0xffff) {
    target[at++] = 0x80 | 126;
    target[at++] = length >> 8;
    target[at++] = length & 0xff;
  } else {
    // Lengths here stay below 2^31: the upper four bytes of the 64-bit length are zero.
    target[at++] = 0x80 | 127;
    target[at++] = 0;
    target[at++] = 0;
    target[at++] = 0;
    target[at++] = 0;
    target[at++] = (length >>> 24) & 0xff;
    target[at++] = (length >> 16) & 0xff;
    target[at++] = (length >> 8) & 0xff;
    target[at++] = length & 0xff;
  }
  const k0 = key[keyAt];
  const k1 = key[keyAt + 1];
  const k2 = key[keyAt + 2];
  const k3 = key[keyAt + 3];
  target[at++] = k0;
  target[at++] = k1;
  target[at++] = k2;
  target[at++] = k3;
  let i = 0;
  // Four bytes a turn: the key's bytes stay in locals instead of an index computed per byte.
  for (const whole = length & ~3; i < whole; i += 4) {
    const from = offset + i;
    target[at++] = source[from] ^ k0;
    target[at++] = source[from + 1] ^ k1;
    target[at++] = source[from + 2] ^ k2;
    target[at++] = source[from + 3] ^ k3;
  }
  for (; i < length; i++) target[at++] = source[offset + i] ^ key[keyAt + (i & 3)];
  return at;
}

/** What the reader hands on. Each call may reset the reader (a close, an abort): it stops then. */
export interface FrameHandler {
  /** Payload bytes of a binary or continuation frame: valid during the call only. */
  onFrameData(bytes: Uint8Array, offset: number, length: number): void;
  /** A whole ping, pong or close frame; `payload` is the reader's buffer, valid during the call only. */
  onControlFrame(opcode: Opcode, payload: Uint8Array, length: number): void;
  /** The server broke RFC 6455: the reader stops until reset(); `closeCode` is the status to send. */
  onFrameError(closeCode: CloseCode, what: string): void;
}

const enum ReadState {
  FirstByte = 0,
  SecondByte = 1,
  ExtendedLength = 2,
  DataPayload = 3,
  ControlPayload = 4,
  /** After a close frame or an error: everything is ignored until reset(). */
  Stopped = 5,
}

/** Where the reader counts frames whose header it read whole. */
export interface FrameCounter {
  framesIn: number;
}

export class FrameReader {
  private state = ReadState.FirstByte;
  private opcode = Opcode.Continuation;
  private final = false;
  /** A binary frame without FIN was read and its last continuation was not. */
  private fragmented = false;
  private lengthBytesLeft = 0;
  /** An extended length whose upper 32 bits were not zero. */
  private lengthOverflow = false;
  private payloadLeft = 0;
  private readonly control = new Uint8Array(MAX_CONTROL_PAYLOAD);
  private controlLength = 0;
  private controlFilled = 0;
  /** Bumped by reset(): a feed() under way stops when a handler call reset the reader. */
  private generation = 0;

  constructor(private readonly handler: FrameHandler, private readonly counter: FrameCounter) {}

  /** Forgets any partial frame and fragmented message: a new connection. */
  reset(): void {
    this.generation++;
    this.state = ReadState.FirstByte;
    this.fragmented = false;
    this.lengthOverflow = false;
    this.payloadLeft = 0;
    this.controlFilled = 0;
  }

  /** Stops reading: what follows a close frame is not read (section 5.5.1). */
  stop(): void {
    this.generation++;
    this.state = ReadState.Stopped;
  }

  feed(bytes: Uint8Array, offset: number, length: number): void {
    const generation = this.generation;
    const end = offset + length;
    let at = offset;
    while (at < end) {
      switch (this.state) {
        case ReadState.FirstByte: {
          const byte = bytes[at++];
          if ((byte & 0x70) !== 0) return this.fail(CloseCode.ProtocolError, "reserved bits set (no extension was agreed)");
          const opcode = byte & 0x0f;
          const final = (byte & 0x80) !== 0;
          if (opcode === Opcode.Text) return this.fail(CloseCode.UnsupportedData, "text frame (MQTT travels in binary frames)");
          if (opcode >= Opcode.Close) {
            if (opcode > Opcode.Pong) return this.fail(CloseCode.ProtocolError, "unknown opcode " + opcode);
            if (!final) return this.fail(CloseCode.ProtocolError, "fragmented control frame");
          } else if (opcode === Opcode.Continuation) {
            if (!this.fragmented) return this.fail(CloseCode.ProtocolError, "continuation frame without a fragmented message");
          } else if (opcode !== Opcode.Binary) {
            return this.fail(CloseCode.ProtocolError, "unknown opcode " + opcode);
          } else if (this.fragmented) {
            return this.fail(CloseCode.ProtocolError, "new data frame while a fragmented message is open");
          }
          this.opcode = opcode;
          this.final = final;
          this.state = ReadState.SecondByte;
          break;
        }
        case ReadState.SecondByte: {
          const byte = bytes[at++];
          // Section 5.1: a server never masks what it sends.
          if ((byte & 0x80) !== 0) return this.fail(CloseCode.ProtocolError, "masked frame from the server");
          const length7 = byte & 0x7f;
          if (this.opcode >= Opcode.Close && length7 > MAX_CONTROL_PAYLOAD) return this.fail(CloseCode.ProtocolError, "control frame payload over 125 bytes");
          if (length7 >= 126) {
            this.lengthBytesLeft = length7 === 126 ? 2 : 8;
            this.payloadLeft = 0;
            this.lengthOverflow = false;
            this.state = ReadState.ExtendedLength;
          } else {
            this.payloadLeft = length7;
            if (!this.startPayload()) return;
            if (this.generation !== generation) return;
          }
          break;
        }
        case ReadState.ExtendedLength: {
          const byte = bytes[at++];
          const left = --this.lengthBytesLeft;
          if (left >= 4) {
            // The upper half of a 64-bit length (section 5.2: its top bit must be 0).
            if (left === 7 && (byte & 0x80) !== 0) return this.fail(CloseCode.ProtocolError, "64-bit payload length with the top bit set");
            if (byte !== 0) this.lengthOverflow = true;
          } else {
            this.payloadLeft = this.payloadLeft * 256 + byte;
          }
          if (left === 0) {
            // A non-minimal length encoding is accepted: it harms nothing here.
            if (this.lengthOverflow || this.payloadLeft > MAX_DATA_FRAME_PAYLOAD) return this.fail(CloseCode.TooBig, "frame payload longer than " + MAX_DATA_FRAME_PAYLOAD + " bytes");
            if (!this.startPayload()) return;
            if (this.generation !== generation) return;
          }
          break;
        }
        case ReadState.DataPayload: {
          let count = end - at;
          if (count > this.payloadLeft) count = this.payloadLeft;
          const from = at;
          at += count;
          this.payloadLeft -= count;
          if (this.payloadLeft === 0) this.state = ReadState.FirstByte;
          this.handler.onFrameData(bytes, from, count);
          if (this.generation !== generation) return;
          break;
        }
        case ReadState.ControlPayload: {
          const control = this.control;
          const length = this.controlLength;
          let filled = this.controlFilled;
          while (filled < length && at < end) control[filled++] = bytes[at++];
          this.controlFilled = filled;
          if (filled === length) {
            this.finishControl();
            if (this.generation !== generation) return;
          }
          break;
        }
        default:
          return;
      }
    }
  }

  /**
   * The header is whole: counts the frame and sets the state for its payload. An empty control
   * frame is handed on at once; false when that stopped or reset the reader.
   */
  private startPayload(): boolean {
    this.counter.framesIn++;
    const opcode = this.opcode;
    if (opcode >= Opcode.Close) {
      this.controlLength = this.payloadLeft;
      this.controlFilled = 0;
      this.state = ReadState.ControlPayload;
      if (this.payloadLeft === 0) {
        const generation = this.generation;
        this.finishControl();
        return this.generation === generation;
      }
      return true;
    }
    // Binary opens a fragmented message without FIN; a continuation with FIN closes it.
    this.fragmented = !this.final;
    this.state = this.payloadLeft === 0 ? ReadState.FirstByte : ReadState.DataPayload;
    return true;
  }

  private finishControl(): void {
    const opcode = this.opcode;
    this.state = opcode === Opcode.Close ? ReadState.Stopped : ReadState.FirstByte;
    this.handler.onControlFrame(opcode, this.control, this.controlLength);
  }

  private fail(closeCode: CloseCode, what: string): void {
    this.state = ReadState.Stopped;
    this.generation++;
    this.handler.onFrameError(closeCode, what);
  }
}
