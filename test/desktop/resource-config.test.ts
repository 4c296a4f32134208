// The desktop "Resource", "mc/config" and trace stand-ins.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, afterEach, before, describe, test } from "node:test";
import Resource, { resourceDirectory, setResourceDirectory } from "../../hosts/desktop/resource.ts";
import config, { configOverridesFromEnvironment, mergeConfig, resetConfig } from "../../hosts/desktop/config.ts";
import { installTrace, setTraceSink } from "../../hosts/desktop/trace.ts";

describe("Resource", () => {
  let flash: string;
  const contents = Uint8Array.of(0x30, 0x82, 0x01, 0x0a, 0xff);

  before(() => {
    flash = mkdtempSync(join(tmpdir(), "iotlink-flash-"));
    writeFileSync(join(flash, "ca.der"), contents);
    writeFileSync(join(tmpdir(), "iotlink-outside.der"), contents);
  });

  after(() => {
    setResourceDirectory(undefined);
    rmSync(flash, { recursive: true, force: true });
    rmSync(join(tmpdir(), "iotlink-outside.der"), { force: true });
  });

  test("reads a file of the resource directory as an ArrayBuffer-like value", () => {
    setResourceDirectory(flash);
    const resource = new Resource("ca.der");
    assert.ok(resource instanceof ArrayBuffer);
    assert.equal(resource.byteLength, contents.length);
    assert.deepEqual(new Uint8Array(resource), contents);
    const copy = resource.slice(1, 3);
    assert.equal(Object.getPrototypeOf(copy), ArrayBuffer.prototype, "slice gives a plain ArrayBuffer");
    assert.deepEqual(new Uint8Array(copy), contents.subarray(1, 3));
    assert.deepEqual(new Uint8Array(resource.slice(0)), contents);
  });

  test("exists answers without throwing; a missing resource throws URIError like the device", () => {
    setResourceDirectory(flash);
    assert.equal(Resource.exists("ca.der"), true);
    assert.equal(Resource.exists("device-key.der"), false);
    assert.throws(() => new Resource("device-key.der"), { name: "URIError", message: "Resource not found: device-key.der" });
  });

  test("names cannot reach outside the resource directory", () => {
    setResourceDirectory(flash);
    assert.equal(Resource.exists("../iotlink-outside.der"), false);
    assert.throws(() => new Resource("../iotlink-outside.der"), URIError);
    assert.throws(() => new Resource(join(tmpdir(), "iotlink-outside.der")), URIError);
  });

  test("IOTLINK_RESOURCES chooses the directory when no directory was set", () => {
    setResourceDirectory(undefined);
    const saved = process.env.IOTLINK_RESOURCES;
    try {
      process.env.IOTLINK_RESOURCES = flash;
      assert.equal(resourceDirectory(), flash);
      assert.equal(Resource.exists("ca.der"), true);
      delete process.env.IOTLINK_RESOURCES;
      assert.equal(resourceDirectory(), join(process.cwd(), "certs"));
    } finally {
      if (saved === undefined) delete process.env.IOTLINK_RESOURCES;
      else process.env.IOTLINK_RESOURCES = saved;
    }
  });
});

describe("mc/config", () => {
  afterEach(() => resetConfig());

  test("starts with the SDK's defaults and merges manifest values into the same object", () => {
    const imported = config;
    assert.deepEqual(config.tls, { DHE_RSA: true, ECDHE_RSA: true });
    mergeConfig({ endpoint: "localhost", port: 8883, tls: { DHE_RSA: false } });
    assert.equal(imported, config, "modules that imported it see the values");
    assert.equal(config.endpoint, "localhost");
    assert.equal(config.port, 8883);
    assert.deepEqual(config.tls, { DHE_RSA: false, ECDHE_RSA: true }, "objects merge key by key");
  });

  test("environment overrides work like mcconfig's name=value: strings, one top-level key each", () => {
    mergeConfig({ clientId: "device", port: 8883, tls: { DHE_RSA: false } });
    const overrides = configOverridesFromEnvironment({
      IOTLINK_CONFIG_port: "443",
      IOTLINK_CONFIG_clientId: "my_thing",
      IOTLINK_CONFIG_tls_DHE_RSA: "true",
      UNRELATED: "x",
    });
    assert.deepEqual(overrides, { port: "443", clientId: "my_thing", tls_DHE_RSA: "true" });
    mergeConfig(overrides);
    assert.equal(config.port, "443", "a string, as mcconfig passes it");
    assert.equal(config.tls.DHE_RSA, false, "objects are set only by the manifest");
  });
});

describe("trace", () => {
  test("is installed as a global that concatenates its arguments without adding a newline", () => {
    let output = "";
    const previous = setTraceSink((text) => {
      output += text;
    });
    try {
      installTrace();
      const globalTrace = (globalThis as unknown as { trace: (...values: Array<string | number | boolean>) => void }).trace;
      globalTrace("state ", 3, " ", true, "\n");
      globalTrace("more");
    } finally {
      setTraceSink(previous);
    }
    assert.equal(output, "state 3 true\nmore");
  });
});
