// What each manifest puts in the firmware. The app's manifest and its fragments list modules one by
// one, so these checks stand in for mcconfig on every commit: a module the app imports but no
// manifest lists would build and then fail on the device with "module not found".
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { loadManifestClosure } from "../../tools/manifest.ts";

const root = join(import.meta.dirname, "..", "..");

/** This project's source files (without extension) that `entry` imports, directly or not; Moddable's modules are left out. */
function importGraph(entry: string): Set<string> {
  const reached = new Set<string>();
  const visit = (file: string): void => {
    const withoutExtension = file.replace(/\.ts$/, "");
    if (reached.has(withoutExtension)) return;
    reached.add(withoutExtension);
    const source = readFileSync(file, "utf8");
    for (const match of source.matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"|^import\s+"([^"]+)"/gms)) {
      const specifier = match[1] ?? match[2]!;
      if (!specifier.startsWith(".")) continue;
      visit(resolve(dirname(file), specifier) + ".ts");
    }
  };
  visit(resolve(root, entry));
  return reached;
}

/** Specifier -> file for a manifest and what it includes, checked for listing each source under its own path. */
function listed(manifest: string): Map<string, string> {
  const modules = loadManifestClosure(join(root, manifest)).modules;
  for (const [specifier, source] of modules) assert.equal(relative(root, source), specifier, `${manifest}: module ${specifier} comes from its own path`);
  return modules;
}

function names(files: Iterable<string>): string[] {
  return [...files].map((file) => relative(root, file)).sort();
}

test("the app's manifest lists every module main.ts imports, and not the AWS IoT facade, which main.ts does not use", () => {
  const app = listed("manifest.json");
  const needed = names(importGraph("main.ts"));
  assert.deepEqual(needed.filter((name) => !app.has(name)), [], "imported but in no manifest");
  assert.deepEqual([...app.keys()].sort(), needed, "listed but not imported: firmware carried for nothing");
  assert.ok(!app.has("modules/awsiot") && !app.has("hosts/moddable/awsiot"));
});

test("manifest_awsiot.json adds exactly the facade's modules to the library and WebSocket fragments", () => {
  const library = listed("manifest_iotlink.json");
  const websocket = listed("manifest_websocket.json");
  const facade = listed("manifest_awsiot.json");
  assert.deepEqual(names(importGraph("hosts/moddable/awsiot.ts")).filter((name) => !facade.has(name)), [], "the facade's imports are all listed");
  assert.deepEqual([...facade.keys()].filter((name) => !websocket.has(name)).sort(), ["hosts/moddable/awsiot", "modules/awsiot"]);
  // The WebSocket fragment is the library plus MQTT over WebSocket (useWebsocket=true): what hosts/moddable/websocket.ts imports.
  assert.deepEqual([...websocket.keys()].filter((name) => !library.has(name)).sort(), names(importGraph("hosts/moddable/websocket.ts")).filter((name) => !library.has(name)));
  assert.ok(!library.has("modules/websocket") && !library.has("modules/sigv4"), "the core's fragment carries no WebSocket module");
  // The library fragment is everything an app needs besides its own code: the core and the Moddable host.
  assert.deepEqual([...library.keys()].sort(), names(importGraph("hosts/moddable/platform.ts")).concat(names(importGraph("modules/client.ts"))).filter((name, i, all) => all.indexOf(name) === i).sort());
});

test("every portable module and Moddable host module is in a manifest fragment (nothing written for the device is left out)", () => {
  const everything = new Set([...listed("manifest.json").keys(), ...listed("manifest_awsiot.json").keys(), ...listed("manifest_websocket.json").keys(), ...listed("manifest_storage.json").keys(), ...listed("manifest_provisioning.json").keys()]);
  const sources = ["modules", "hosts/moddable"].flatMap((directory) => readdirSync(join(root, directory)).filter((file) => file.endsWith(".ts")).map((file) => directory + "/" + file.replace(/\.ts$/, "")));
  // The Linux simulator's stand-in for Moddable's flash module is listed for that platform only.
  const storage = JSON.parse(readFileSync(join(root, "manifest_storage.json"), "utf8")) as { platforms: { lin: { modules: Record<string, string>; preload: string[] } } };
  assert.deepEqual(storage.platforms.lin.modules, { flash: "./hosts/moddable/lin-flash" });
  assert.deepEqual(storage.platforms.lin.preload, ["flash"]);
  everything.add("hosts/moddable/lin-flash");
  assert.deepEqual(sources.filter((name) => !everything.has(name)), []);
});

test("the SDK's modules the transport needs come with the library fragment, and the TLS settings with it", () => {
  const library = loadManifestClosure(join(root, "manifest_iotlink.json"));
  assert.deepEqual(library.sdkIncludes, ["$(MODDABLE)/examples/manifest_net.json", "$(MODDABLE)/modules/crypt/tls.json"]);
  assert.deepEqual(library.config.tls, { DHE_RSA: false }, "Moddable's TLS cannot do DHE with a client certificate");
  assert.equal(library.compilerOptions.useDefineForClassFields, false);
  const app = loadManifestClosure(join(root, "manifest.json"));
  assert.deepEqual(app.config.tls, { DHE_RSA: false }, "the app gets it through the include");
  assert.equal(app.files.map((file) => relative(root, file)).join(", "), "manifest_iotlink.json, manifest_shadow.json, manifest_jobs.json, manifest_storage.json, manifest_provisioning.json, manifest_websocket.json, manifest.json");
});

test("every IoTLink module a manifest lists is preloaded (built into flash on the device, its tables frozen)", () => {
  for (const manifest of ["manifest.json", "manifest_awsiot.json", "manifest_websocket.json", "manifest_storage.json", "manifest_provisioning.json"]) {
    const closure = loadManifestClosure(join(root, manifest));
    const app = [...closure.modules.keys()].filter((name) => name !== "main");
    assert.deepEqual(app.filter((name) => !closure.preload.has(name)), [], manifest + ": listed but not preloaded");
    assert.deepEqual([...closure.preload].filter((name) => !closure.modules.has(name)), [], manifest + ": preloaded but not listed");
  }
});
test("manifest_shadow.json adds exactly the Shadow client's modules to the library fragment, all preloaded", () => { const fragment = loadManifestClosure(join(root, "manifest_shadow.json")); assert.deepEqual([...listed("manifest_shadow.json").keys()].filter((name) => !listed("manifest_iotlink.json").has(name)).sort(), names(importGraph("modules/aws/shadow.ts")).filter((name) => !listed("manifest_iotlink.json").has(name))); assert.deepEqual([...fragment.modules.keys()].filter((name) => !fragment.preload.has(name)), []); });
test("manifest_awsiot_shadow.json adds exactly the shadow facade's modules to the facade and Shadow fragments, all preloaded", () => { const fragment = loadManifestClosure(join(root, "manifest_awsiot_shadow.json")); const under = new Set([...listed("manifest_awsiot.json").keys(), ...listed("manifest_shadow.json").keys()]); assert.deepEqual([...listed("manifest_awsiot_shadow.json").keys()].filter((name) => !under.has(name)).sort(), names(importGraph("modules/aws/shadow-moddable.ts")).filter((name) => !under.has(name))); assert.deepEqual([...fragment.modules.keys()].filter((name) => !fragment.preload.has(name)), []); });
test("manifest_provisioning.json adds exactly the fleet provisioning modules to the library fragment, all preloaded", () => { const fragment = loadManifestClosure(join(root, "manifest_provisioning.json")); assert.deepEqual([...listed("manifest_provisioning.json").keys()].filter((name) => !listed("manifest_iotlink.json").has(name)).sort(), names(importGraph("modules/aws/provisioning.ts")).filter((name) => !listed("manifest_iotlink.json").has(name))); assert.deepEqual([...fragment.modules.keys()].filter((name) => !fragment.preload.has(name)), []); });
test("manifest_jobs.json adds exactly the Jobs client's modules to the library fragment, all preloaded", () => { const fragment = loadManifestClosure(join(root, "manifest_jobs.json")); assert.deepEqual([...listed("manifest_jobs.json").keys()].filter((name) => !listed("manifest_iotlink.json").has(name)).sort(), names(importGraph("modules/aws/jobs.ts")).filter((name) => !listed("manifest_iotlink.json").has(name))); assert.deepEqual([...fragment.modules.keys()].filter((name) => !fragment.preload.has(name)), []); });
test("manifest_awsiot_jobs.json adds exactly the jobs facade's modules to the facade and Jobs fragments, all preloaded", () => { const fragment = loadManifestClosure(join(root, "manifest_awsiot_jobs.json")); const under = new Set([...listed("manifest_awsiot.json").keys(), ...listed("manifest_jobs.json").keys()]); assert.deepEqual([...listed("manifest_awsiot_jobs.json").keys()].filter((name) => !under.has(name)).sort(), names(importGraph("modules/aws/jobs-moddable.ts")).filter((name) => !under.has(name))); assert.deepEqual([...fragment.modules.keys()].filter((name) => !fragment.preload.has(name)), []); });

test("no preloaded module keeps a RegExp at its top level (XS 13 can crash in a preloaded RegExp's exec: see isWordOf in modules/types.ts)", () => {
  const closure = loadManifestClosure(join(root, "manifest.json"));
  const files = [...closure.modules.entries()].filter(([name]) => name !== "main" && closure.preload.has(name)).map(([, source]) => source + ".ts");
  for (const manifest of ["manifest_awsiot.json", "manifest_websocket.json", "manifest_awsiot_shadow.json", "manifest_awsiot_jobs.json"]) {
    for (const source of loadManifestClosure(join(root, manifest)).modules.values()) files.push(source + ".ts");
  }
  const kept: string[] = [];
  for (const file of new Set(files)) {
    readFileSync(file, "utf8").split("\n").forEach((line, index) => {
      // A pattern literal at the top level (a const, or frozen), not inside a function body.
      if (/^(export )?const \w+(: [^=]+)? = (Object\.freeze\()?\/[^/*]/.test(line)) kept.push(`${relative(root, file)}:${index + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(kept, []);
});
