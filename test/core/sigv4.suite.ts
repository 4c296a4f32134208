// Portable tests for modules/sigv4.ts, with a recording fake in place of SHA-256 and HMAC: the
// canonical request and string to sign exactly as SigV4 defines them, the query order, the token
// after signing, the signing-key chain, the date conversion, the region parsing and the refusals.
// Node's crypto checks the real signatures in test/node/sigv4-oracle.test.ts. Runs on Node and XS.
import { deepEqual, equal, ok, test, throws } from "../harness";
import { amzDateOf, civilFromDays, presignMqttUrl, regionFromEndpoint, sigv4Encode, type SigV4Crypto, type SigV4Input, utf8Bytes } from "../../modules/sigv4";
import { IoTLinkError } from "../../modules/types";

function text(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += String.fromCharCode(bytes[i]);
  return out;
}

/** A fake whose "hash" and "HMAC" are readable strings, recording every call. */
function recorder(): { crypto: SigV4Crypto; calls: string[] } {
  const calls: string[] = [];
  const crypto: SigV4Crypto = {
    sha256Hex(bytes) {
      calls.push("sha256(" + text(bytes) + ")");
      return "HASH";
    },
    hmacSha256(key, data) {
      calls.push("hmac(" + text(key) + "," + text(data) + ")");
      // 32 bytes derived from the call number, so the final hex is predictable.
      const out = new Uint8Array(32);
      out[0] = calls.length;
      return out;
    },
  };
  return { crypto, calls };
}

const HOST = "a1b2c3d4e5f6g7-ats.iot.eu-west-1.amazonaws.com";
const BASE: SigV4Input = { host: HOST, accessKeyId: "AKIDEXAMPLE12345", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", nowMs: 1733314335000 };
const SECRET = BASE.secretAccessKey;

test("sigv4: canonical request, string to sign and key chain, exactly", () => {
  const { crypto, calls } = recorder();
  const signed = presignMqttUrl(BASE, crypto);
  equal(signed.amzDate, "20241204T121215Z");
  equal(signed.region, "eu-west-1");
  const query = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE12345%2F20241204%2Feu-west-1%2Fiotdevicegateway%2Faws4_request&X-Amz-Date=20241204T121215Z&X-Amz-SignedHeaders=host";
  equal(signed.canonicalRequest, "GET\n/mqtt\n" + query + "\nhost:" + HOST + "\n\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  equal(signed.stringToSign, "AWS4-HMAC-SHA256\n20241204T121215Z\n20241204/eu-west-1/iotdevicegateway/aws4_request\nHASH");
  deepEqual(calls, [
    "sha256(" + signed.canonicalRequest + ")",
    "hmac(AWS4" + SECRET + ",20241204)",
    "hmac(\u0002" + "\u0000".repeat(31) + ",eu-west-1)",
    "hmac(\u0003" + "\u0000".repeat(31) + ",iotdevicegateway)",
    "hmac(\u0004" + "\u0000".repeat(31) + ",aws4_request)",
    "hmac(\u0005" + "\u0000".repeat(31) + "," + signed.stringToSign + ")",
  ]);
  equal(signed.signature, "06" + "00".repeat(31));
  equal(signed.path, "/mqtt?" + query + "&X-Amz-Signature=" + signed.signature);
  equal(signed.url, "wss://" + HOST + signed.path);
});

test("sigv4: the session token is appended after the signature, encoded, and never signed", () => {
  const { crypto, calls } = recorder();
  const token = "FQoG/ZXIvYXdz+EJr==";
  const signed = presignMqttUrl({ ...BASE, sessionToken: token }, crypto);
  const unsigned = presignMqttUrl(BASE, recorder().crypto);
  equal(signed.canonicalRequest, unsigned.canonicalRequest);
  equal(signed.stringToSign, unsigned.stringToSign);
  ok(signed.path.endsWith("&X-Amz-Signature=" + signed.signature + "&X-Amz-Security-Token=FQoG%2FZXIvYXdz%2BEJr%3D%3D"));
  equal(signed.path.split("&").map((p) => p.split("=")[0]).join(","), "/mqtt?X-Amz-Algorithm,X-Amz-Credential,X-Amz-Date,X-Amz-SignedHeaders,X-Amz-Signature,X-Amz-Security-Token");
  for (const call of calls) ok(call.indexOf("FQoG") < 0, "the token reaches no hash");
});

test("sigv4: civil date conversion, including leap days and century rules", () => {
  const cases: [number, string][] = [
    [0, "19700101T000000Z"],
    [951782400000, "20000229T000000Z"],
    [951868799999, "20000229T235959Z"],
    [1709164800000, "20240229T000000Z"],
    [1709251199000, "20240229T235959Z"],
    [1709251200000, "20240301T000000Z"],
    [1704067199999, "20231231T235959Z"],
    [1735689599000, "20241231T235959Z"],
    [4107542400000, "21000301T000000Z"],
    [4107456000000, "21000228T000000Z"],
    [253402300799999, "99991231T235959Z"],
  ];
  for (const [ms, expected] of cases) equal(amzDateOf(ms), expected, String(ms));
  deepEqual(civilFromDays(-1), { year: 1969, month: 12, day: 31 });
  deepEqual(civilFromDays(11016), { year: 2000, month: 2, day: 29 });
  throws(() => amzDateOf(1.5), "whole milliseconds");
  throws(() => amzDateOf(-1), "whole milliseconds");
});

test("sigv4: region parsed from the endpoint, or given", () => {
  equal(regionFromEndpoint(HOST), "eu-west-1");
  equal(regionFromEndpoint("abc-ats.iot.us-gov-west-1.amazonaws.com"), "us-gov-west-1");
  equal(regionFromEndpoint("abc-ats.iot.cn-north-1.amazonaws.com.cn"), "cn-north-1");
  equal(regionFromEndpoint("abc.iot.ap-southeast-2.amazonaws.com"), "ap-southeast-2");
  equal(regionFromEndpoint("localhost"), "");
  equal(regionFromEndpoint("abc-ats.iot.amazonaws.com"), "");
  equal(regionFromEndpoint("abc-ats.s3.eu-west-1.amazonaws.com"), "");
  const given = presignMqttUrl({ ...BASE, host: "gateway.local", region: "us-east-2" }, recorder().crypto);
  equal(given.region, "us-east-2");
  ok(given.canonicalRequest.indexOf("\nhost:gateway.local\n") > 0);
  equal(presignMqttUrl({ ...BASE, region: "ap-south-1" }, recorder().crypto).region, "ap-south-1", "given wins over parsed");
});

test("sigv4: URI encoding keeps the unreserved characters only, %XX uppercase", () => {
  equal(sigv4Encode("AZaz09-._~"), "AZaz09-._~");
  equal(sigv4Encode("a/b+c=d e*"), "a%2Fb%2Bc%3Dd%20e%2A");
  equal(sigv4Encode("é€😀"), "%C3%A9%E2%82%AC%F0%9F%98%80");
  deepEqual(Array.from(utf8Bytes("é")), [0xc3, 0xa9]);
});

function refused(input: SigV4Input, fragment: string): void {
  let error: unknown;
  try {
    presignMqttUrl(input, recorder().crypto);
  } catch (e) {
    error = e;
  }
  ok(error instanceof IoTLinkError, "refused: " + fragment);
  const err = error as IoTLinkError;
  equal(err.code, "invalid-argument");
  ok(err.message.indexOf(fragment) >= 0, err.message + " names " + fragment);
  ok(err.message.indexOf(SECRET) < 0 && err.message.indexOf("TOKENSECRET") < 0, "no secret or token in: " + err.message);
}

test("sigv4: every input checked at the call; the secret and token never shown", () => {
  const withToken = { ...BASE, sessionToken: "TOKENSECRET" };
  refused({ ...withToken, nowMs: 1700000000000 }, "before 20240101T000000Z");
  refused({ ...withToken, nowMs: 1.5 }, "whole milliseconds");
  refused({ ...withToken, accessKeyId: "" }, "access key id");
  refused({ ...withToken, accessKeyId: "AKID/EXAMPLE12345" }, "access key id");
  refused({ ...withToken, secretAccessKey: "" }, "secret access key");
  refused({ ...withToken, secretAccessKey: "has space " + SECRET }, "secret access key");
  refused({ ...withToken, sessionToken: "TOKENSECRET with space" }, "session token");
  refused({ ...withToken, sessionToken: "" }, "session token");
  refused({ ...withToken, host: "" }, "host");
  refused({ ...withToken, host: HOST + ":443" }, "host");
  refused({ ...withToken, host: "bad_host.example.com" }, "host");
  refused({ ...withToken, host: "gateway.local" }, "no region given");
  refused({ ...withToken, region: "Europe" }, "region");
  throws(() => presignMqttUrl(BASE, {} as SigV4Crypto), "sha256Hex");
});
