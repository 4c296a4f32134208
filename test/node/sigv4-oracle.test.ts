// Node only: modules/sigv4.ts with Node's crypto injected, checked against an independent SigV4
// signer, npm `aws4`, presigning the same `GET /mqtt` (service iotdevicegateway, host signed, the
// token left out of the signature and appended after it, as AWS IoT expects).
import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { test } from "node:test";
import aws4 from "aws4";
import { presignMqttUrl, type SigV4Crypto } from "../../modules/sigv4";

const nodeCrypto: SigV4Crypto = {
  sha256Hex: (bytes) => createHash("sha256").update(bytes).digest("hex"),
  hmacSha256: (key, data) => new Uint8Array(createHmac("sha256", key).update(data).digest()),
};

function oracle(host: string, region: string, accessKeyId: string, secretAccessKey: string, nowMs: number): URLSearchParams {
  const amzDate = new Date(nowMs).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const request = aws4.sign(
    { host, path: "/mqtt?X-Amz-Date=" + amzDate, method: "GET", service: "iotdevicegateway", region, signQuery: true },
    { accessKeyId, secretAccessKey },
  );
  return new URL("wss://" + host + request.path).searchParams;
}

const cases = [
  { host: "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com", accessKeyId: "AKIDEXAMPLE12345", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", nowMs: 1733314335000 },
  { host: "xyz-ats.iot.us-east-1.amazonaws.com", accessKeyId: "ASIAQWERTYUIOPASDFGH", secretAccessKey: "shortSecret", sessionToken: "IQoJb3JpZ2luX2VjE/+abc==", nowMs: 1709164800000 },
  { host: "gateway.local", region: "ap-southeast-2", accessKeyId: "AKIA0000000000000000", secretAccessKey: "s3cr3t~!*'()", nowMs: 1709251199999 },
  { host: "q-ats.iot.cn-north-1.amazonaws.com.cn", accessKeyId: "AKIAZZZZZZZZZZZZZZZZ", secretAccessKey: "K".repeat(40), sessionToken: "T/O+K=E~N", nowMs: 4107542400000 },
];

for (const input of cases) {
  test("sigv4 oracle: aws4 gives the same signed query for " + input.host + " at " + input.nowMs, () => {
    const signed = presignMqttUrl(input, nodeCrypto);
    const ours = new URL(signed.url).searchParams;
    const theirs = oracle(input.host, signed.region, input.accessKeyId, input.secretAccessKey, input.nowMs);
    assert.match(signed.signature, /^[0-9a-f]{64}$/);
    for (const name of ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"]) {
      assert.equal(ours.get(name), theirs.get(name), name);
    }
    assert.equal(theirs.has("X-Amz-Security-Token"), false);
    assert.equal(ours.get("X-Amz-Security-Token"), "sessionToken" in input ? input.sessionToken : null);
    assert.ok(!signed.url.includes(input.secretAccessKey));
  });
}

test("sigv4 oracle: a different secret, date or region changes the signature", () => {
  const base = cases[0];
  const signature = presignMqttUrl(base, nodeCrypto).signature;
  assert.notEqual(presignMqttUrl({ ...base, secretAccessKey: base.secretAccessKey + "x" }, nodeCrypto).signature, signature);
  assert.notEqual(presignMqttUrl({ ...base, nowMs: base.nowMs + 1000 }, nodeCrypto).signature, signature);
  assert.notEqual(presignMqttUrl({ ...base, region: "eu-west-2" }, nodeCrypto).signature, signature);
});
