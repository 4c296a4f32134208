// The README's Quick start as a new user meets it on a fresh Debian (root in a container, or a user
// with sudo): exactly two commands, one for the app and one for the tests, each installing what it
// needs (package lists first), no bare sudo; and .ci/run installing what the tests rely on.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { ROOT } from "./command-line.ts";

const readme = readFileSync(join(ROOT, "README.md"), "utf8");
const quickStart = readme.slice(readme.indexOf("## Quick start"), readme.indexOf("\n## ", readme.indexOf("## Quick start") + 1));
const commands = (/```sh\n([\s\S]*?)```/.exec(quickStart)?.[1] ?? "").split("\n").filter((line) => line.trim() !== "").map((line) => line.replace(/\s+#.*$/, ""));

/** The Debian packages an `apt-get install -y ...` in `text` names. */
function aptPackages(text: string): string[] {
  return [...text.matchAll(/apt-get install -y ([^&\n]+)/g)].flatMap((match) => match[1]!.trim().split(/\s+/));
}

test("Quick start: two commands, the app and the tests, each from package lists to the run, root or not", () => {
  assert.equal(commands.length, 2, commands.join("\n"));
  const [app, tests] = commands as [string, string];
  assert.match(app, /&& npm install && npm start$/);
  assert.match(tests, /&& npm install && npm test$/);
  for (const command of commands) {
    assert.match(command, /^S=\$\(command -v sudo\); \$S apt-get update && \$S apt-get install -y /, "sudo only where there is one; package lists first");
    assert.doesNotMatch(command.replace(/command -v sudo/, ""), /(^|[^$\w-])sudo /, "no bare sudo, which fails as root without it");
  }
  for (const needed of ["build-essential", "python3", "openssl"]) assert.ok(aptPackages(app).includes(needed), needed);
  for (const needed of ["build-essential", "python3", "openssl", "mosquitto", "socat"]) assert.ok(aptPackages(tests).includes(needed), needed);
});

test("Quick start: the prerequisites are said right after it (Node, the C toolchain, openssl) and why EBADENGINE is harmless", () => {
  const prerequisites = /\*\*Prerequisites\.\*\*([\s\S]*?)(\n\n|\n?$)/.exec(quickStart)?.[1] ?? "";
  assert.match(prerequisites, /Node\.js 20 or later/);
  for (const tool of ["`make`", "`gcc`", "`g++`", "`python3`", "`openssl`", "Mosquitto", "`socat`"]) assert.ok(prerequisites.includes(tool), tool);
  assert.match(prerequisites, /EBADENGINE/);
  const packageJson = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string } };
  assert.equal(packageJson.engines.node, ">=20", "the README's Node version is package.json's");
});

test(".ci/run installs what the build and the tests rely on: a C toolchain, python3, Mosquitto, socat, openssl", () => {
  const ci = readFileSync(join(ROOT, ".ci", "run"), "utf8");
  for (const needed of ["build-essential", "python3", "mosquitto", "socat", "openssl"]) assert.match(ci, new RegExp(`need_apt\\+=\\(${needed}\\)`), needed);
  assert.match(ci, /apt-get update/);
  assert.match(ci, /Node\.js 20 or later is needed/);
});
