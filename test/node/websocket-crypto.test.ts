// The desktop stand-ins for Moddable's "crypt" (Digest) and "hmac" (HMAC) against published vectors
// and node:crypto, with the SDK's calling conventions (write/close giving an ArrayBuffer, reset,
// process, blockSize and outputSize, HMAC over a Digest). Then hosts/moddable/websocket-crypto.ts,
// written against the Moddable module names only, bundled with tools/desktop-aliases.ts as a device
// app is, signs the same presigned URL as npm aws4.
import assert from "node:assert/strict";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { after, before, describe, test } from "node:test";
import aws4 from "aws4";
import { Digest } from "../../hosts/desktop/crypt.ts";
import HMAC from "../../hosts/desktop/hmac.ts";
import { bundleForDesktop } from "../../tools/desktop-build.ts";
import type * as WebSocketCrypto from "../../hosts/moddable/websocket-crypto.ts";
import type * as SigV4 from "../../modules/sigv4.ts";

const hex = (buffer: ArrayBuffer | Uint8Array): string => Buffer.from(buffer instanceof ArrayBuffer ? new Uint8Array(buffer) : buffer).toString("hex");
const ascii = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, "latin1"));

describe("hosts/desktop/crypt.ts: Digest", () => {
  test('FIPS 180 "abc": SHA-1 and SHA-256', () => {
    const sha1 = new Digest("SHA1");
    sha1.write(ascii("abc"));
    const out = sha1.close();
    assert.ok(out instanceof ArrayBuffer);
    assert.equal(hex(out), "a9993e364706816aba3e25717850c26c9cd0d89d");
    const sha256 = new Digest("SHA256");
    sha256.write(ascii("abc"));
    assert.equal(hex(sha256.close()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  test('FIPS 180 two-block message "abcdbcde...nopq", written in pieces, views and buffers alike', () => {
    const message = ascii("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq");
    const digest = new Digest("SHA256");
    digest.write(message.subarray(0, 5));
    digest.write(message.slice(5, 20).buffer);
    digest.write(new DataView(message.buffer, 20, 10));
    digest.write(message.subarray(30));
    assert.equal(hex(digest.close()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    digest.reset();
    digest.write(message);
    assert.equal(hex(digest.close()), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    assert.equal(hex(new Digest("SHA1").process(message)), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
  });

  test("equals node:crypto on lengths around the block size", () => {
    for (const length of [0, 1, 55, 56, 63, 64, 65, 119, 128, 1000]) {
      const bytes = new Uint8Array(randomBytes(length));
      for (const [name, node] of [["SHA1", "sha1"], ["SHA256", "sha256"]] as const) {
        const digest = new Digest(name);
        digest.write(bytes);
        assert.equal(hex(digest.close()), createHash(node).update(bytes).digest("hex"), `${name} of ${length} bytes`);
      }
    }
  });

  test("blockSize and outputSize as on the device; an unknown algorithm, a string or a write after close are refused", () => {
    assert.deepEqual([new Digest("SHA1").blockSize, new Digest("SHA1").outputSize], [64, 20]);
    assert.deepEqual([new Digest("SHA256").blockSize, new Digest("SHA256").outputSize], [64, 32]);
    assert.throws(() => new Digest("SHA3" as never), /^Error: crypt: unsupported digest$/);
    assert.throws(() => new Digest("sha256" as never), /unsupported digest/);
    assert.throws(() => new Digest("SHA256").write("abc" as never), TypeError);
    assert.throws(() => new Digest("SHA256").write(new Uint16Array(2) as never), TypeError);
    const digest = new Digest("SHA256");
    digest.close();
    assert.throws(() => digest.write(new Uint8Array(1)), /reset\(\) first/);
    assert.throws(() => digest.close(), /reset\(\) first/);
  });
});

describe("hosts/desktop/hmac.ts: HMAC", () => {
  test('RFC 4231 test case 2: key "Jefe", "what do ya want for nothing?"', () => {
    const mac = new HMAC(new Digest("SHA256"), ascii("Jefe"));
    assert.equal(hex(mac.process(ascii("what do ya want for nothing?"))), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    mac.reset();
    mac.update(ascii("what do ya "), ascii("want for nothing?"));
    assert.equal(hex(mac.close()), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  });

  test("RFC 4231 test case 6: a key longer than the block size is hashed first", () => {
    const key = new Uint8Array(131).fill(0xaa);
    const tag = new HMAC(new Digest("SHA256"), key.buffer).process(ascii("Test Using Larger Than Block-Size Key - Hash Key First"));
    assert.equal(hex(tag), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  });

  test("equals node:crypto for keys and messages of many lengths", () => {
    for (const [keyLength, dataLength] of [[0, 0], [1, 100], [32, 64], [64, 1], [65, 65], [200, 3]]) {
      const key = new Uint8Array(randomBytes(keyLength));
      const data = new Uint8Array(randomBytes(dataLength));
      assert.equal(hex(new HMAC(new Digest("SHA256"), key).process(data)), createHmac("sha256", key).update(data).digest("hex"));
      assert.equal(hex(new HMAC(new Digest("SHA1"), key).process(data)), createHmac("sha1", key).update(data).digest("hex"));
    }
  });

  test("the key is copied; a non-Digest, a truncated tag or a close after close are refused", () => {
    const key = ascii("Jefe");
    const mac = new HMAC(new Digest("SHA256"), key);
    key.fill(0);
    assert.equal(hex(mac.process(ascii("what do ya want for nothing?"))), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    assert.throws(() => mac.close(), /reset\(\) first/);
    assert.throws(() => new HMAC({} as never, key), TypeError);
    assert.throws(() => new HMAC(new Digest("SHA256"), key, 128), /bitlen/);
  });
});

describe("hosts/moddable/websocket-crypto.ts through the desktop aliases", () => {
  let work: string;
  let bundled: typeof WebSocketCrypto & typeof SigV4 & { bundleText: string };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), "iotlink-websocket-crypto-"));
    const root = join(import.meta.dirname, "..", "..");
    const entry = join(work, "entry.ts");
    writeFileSync(
      entry,
      `export { moddableSigV4Crypto, moddableSha1, moddableRandomBytes } from ${JSON.stringify(join(root, "hosts", "moddable", "websocket-crypto.ts"))};\n` +
        `export { presignMqttUrl } from ${JSON.stringify(join(root, "modules", "sigv4.ts"))};\n`,
    );
    const outfile = await bundleForDesktop(entry, join(work, "bundle.mjs"));
    bundled = { ...((await import(pathToFileURL(outfile).href)) as typeof WebSocketCrypto & typeof SigV4), bundleText: readFileSync(outfile, "utf8") };
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  test('"crypt" and "hmac" resolved to hosts/desktop (no Moddable module name left to import)', () => {
    assert.match(bundled.bundleText, /hosts\/desktop\/crypt\.ts/);
    assert.match(bundled.bundleText, /hosts\/desktop\/hmac\.ts/);
    assert.doesNotMatch(bundled.bundleText, /from\s*["'](crypt|hmac)["']/);
  });

  test("sha256Hex, hmacSha256 and moddableSha1 equal node:crypto", () => {
    const { moddableSigV4Crypto, moddableSha1 } = bundled;
    assert.equal(moddableSigV4Crypto.sha256Hex(ascii("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert.equal(moddableSigV4Crypto.sha256Hex(new Uint8Array(0)), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const tag = moddableSigV4Crypto.hmacSha256(ascii("Jefe"), ascii("what do ya want for nothing?"));
    assert.ok(tag instanceof Uint8Array && tag.length === 32);
    assert.equal(hex(tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    const sha1 = moddableSha1(ascii("abc"));
    assert.ok(sha1 instanceof Uint8Array);
    assert.equal(hex(sha1), "a9993e364706816aba3e25717850c26c9cd0d89d");
    // Sec-WebSocket-Accept, RFC 6455 section 1.3: SHA-1 of the key and the GUID, in base64.
    const accept = moddableSha1(ascii("dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11"));
    assert.equal(Buffer.from(accept).toString("base64"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  });

  test("the presigned URL signed with it is aws4's", () => {
    const input = { host: "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", accessKeyId: "AKIDEXAMPLE12345", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", sessionToken: "IQoJb3JpZ2luX2VjE/+abc==", nowMs: 1733314335000 };
    const signed = bundled.presignMqttUrl(input, bundled.moddableSigV4Crypto);
    const amzDate = new Date(input.nowMs).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
    const request = aws4.sign(
      { host: input.host, path: "/mqtt?X-Amz-Date=" + amzDate, method: "GET", service: "iotdevicegateway", region: "eu-west-1", signQuery: true },
      { accessKeyId: input.accessKeyId, secretAccessKey: input.secretAccessKey },
    );
    const theirs = new URL("wss://" + input.host + request.path).searchParams;
    const ours = new URL(signed.url).searchParams;
    assert.match(signed.signature, /^[0-9a-f]{64}$/);
    for (const name of ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"]) assert.equal(ours.get(name), theirs.get(name), name);
    assert.equal(ours.get("X-Amz-Security-Token"), input.sessionToken);
  });

  test("moddableRandomBytes fills every byte, differently each time", () => {
    const a = new Uint8Array(4096);
    const b = new Uint8Array(4096);
    bundled.moddableRandomBytes(a);
    bundled.moddableRandomBytes(b);
    assert.notDeepEqual(a, b);
    const seen = new Set(a);
    assert.ok(seen.size > 200, `only ${seen.size} distinct byte values in 4096`);
    const mean = a.reduce((sum, byte) => sum + byte, 0) / a.length;
    assert.ok(mean > 115 && mean < 140, `mean ${mean}`);
    bundled.moddableRandomBytes(new Uint8Array(0));
  });
});
