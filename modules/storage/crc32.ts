// CRC-32 (IEEE 802.3, the zlib/PNG one: reflected polynomial 0xEDB88320, check value 0xCBF43926 for
// "123456789"), a byte at a time from a 256-entry table: int32 arithmetic only, nothing allocated.
// The table is built when the module loads and frozen; Moddable preloads the module at build time,
// so on the device it is a constant array in flash (no RAM).
// Why not Fletcher: its sums are modulo 255 or 65535, so a 0x00 byte and an erased 0xFF byte weigh
// the same, and erased flash is exactly what a torn write leaves behind.

function makeTable(): readonly number[] {
  const table: number[] = [];
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
    table.push(c | 0); // signed: XS keeps 32-bit integers as integers, larger numbers as doubles
  }
  return Object.freeze(table);
}

const TABLE = makeTable();

/**
 * The CRC-32 of `bytes[offset .. offset + length)`, continuing from `previous` (the CRC of the bytes
 * before them, 0 to start), as an unsigned 32-bit number. The caller checks the range.
 */
export function crc32(bytes: Uint8Array, offset: number, length: number, previous = 0): number {
  const table = TABLE;
  let crc = ~previous;
  for (let i = offset, end = offset + length; i < end; i++) crc = (crc >>> 8) ^ table[(crc ^ bytes[i]) & 0xff];
  return ~crc >>> 0;
}

/** The CRC-32 continued over the 4 little-endian bytes of the unsigned 32-bit `value`. */
export function crc32Word(value: number, previous = 0): number {
  const table = TABLE;
  let crc = ~previous;
  crc = (crc >>> 8) ^ table[(crc ^ value) & 0xff];
  crc = (crc >>> 8) ^ table[(crc ^ (value >>> 8)) & 0xff];
  crc = (crc >>> 8) ^ table[(crc ^ (value >>> 16)) & 0xff];
  crc = (crc >>> 8) ^ table[(crc ^ (value >>> 24)) & 0xff];
  return ~crc >>> 0;
}
