// Section 5 of `npm run bench`: minified bundle sizes (esbuild: bundle, minify, ESM, platform
// neutral, ES2022), and their gzip -9 sizes; with a Moddable SDK, the XS bytecode (5b) and where
// the core's bytecode goes (5c).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { build, transform } from "esbuild";
import ts from "typescript";
import { loadManifestClosure } from "../tools/manifest.ts";

/** Moddable's own modules: provided by the firmware, never part of the app's bundle. */
const MODDABLE_MODULES = ["timer", "time", "securesocket", "socket", "Resource", "mc/config", "crypt", "hmac", "flash", "file"];

export interface SizeRow {
  what: string;
  entry: string;
  bytes: number;
  gzipBytes: number;
  /** Minified bytes each source file contributes. */
  inputs: Record<string, number>;
}

const root = join(import.meta.dirname, "..");

async function measure(what: string, entry: string): Promise<SizeRow> {
  const result = await build({
    entryPoints: [join(root, entry)],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    external: MODDABLE_MODULES,
    write: false,
    outfile: join(root, "build", "bench", "size.js"),
    metafile: true,
    logLevel: "silent",
  });
  const output = result.outputFiles[0]!.contents;
  const inputs: Record<string, number> = {};
  for (const meta of Object.values(result.metafile.outputs)) {
    for (const [input, { bytesInOutput }] of Object.entries(meta.inputs)) inputs[input] = (inputs[input] ?? 0) + bytesInOutput;
  }
  return { what, entry, bytes: output.length, gzipBytes: gzipSync(output, { level: 9 }).length, inputs };
}

/** The source files a bundle of section 5 pulls in (Moddable's own modules are external there). */
export function sourcesOf(row: SizeRow): string[] {
  return Object.keys(row.inputs).map((input) => join(root, input));
}

export async function runSize(): Promise<SizeRow[]> {
  return [
    await measure("core: MqttClient with codec, topics, backoff, ring", "modules/client.ts"),
    await measure("core + AWS IoT Python SDK facade", "modules/awsiot.ts"),
    await measure("whole app: main.ts + hosts/moddable (Moddable modules external)", "main.ts"),
  ];
}

// ------------------------------------------------------------------ XS bytecode (needs the Moddable SDK)

/** The optional manifest fragments, each measured by the bytecode it adds to manifest_iotlink.json's (5b). */
const FRAGMENTS = ["manifest_awsiot.json", "manifest_shadow.json", "manifest_jobs.json", "manifest_awsiot_shadow.json", "manifest_awsiot_jobs.json", "manifest_websocket.json", "manifest_provisioning.json", "manifest_storage.json"] as const;

/** Moddable's MQTT stack in its SDK: the ECMA-419 client, its reconnecting wrapper, the legacy QoS 0 module. */
const MODDABLE_MQTT_FILES = {
  client: "examples/io/tcp/mqttclient/mqttclient.js",
  wrapper: "examples/io/tcp/mqtt/mqtt.js",
  legacy: "modules/network/mqtt/mqtt.js",
} as const;

export interface BytecodeRow {
  what: string;
  /** XS bytecode bytes (.xsb) per module, as mcconfig's xsc writes them for a release build. */
  modules: { file: string; bytes: number }[];
  bytes: number;
  /** The same modules' JavaScript minified one by one (not bundled), beside section 5's proxy. */
  minifiedBytes: number;
}

/** One row of section 5c: the bytecode that goes when the bodies of some of the core's functions, or its message texts, are emptied. */
export interface BreakdownRow {
  what: string;
  /** The functions emptied ("module.function", "module.Class.method"), or a description. */
  carriedBy: string;
  bytes: number;
  /** "feature": lacking in Moddable's stack, in the sum; "together": the sum; "rest": the core without it; "other": for scale, outside the sum. */
  kind: "feature" | "together" | "rest" | "other";
}

export type BytecodeResult = { sdk: string; xsc: string; rows: BytecodeRow[]; breakdown: BreakdownRow[] } | { skipped: string };

function findXsc(sdk: string): string | undefined {
  const host = process.platform === "darwin" ? "mac" : process.platform === "win32" ? "win" : "lin";
  return ["release", "debug"].map((kind) => join(sdk, "build", "bin", host, kind, "xsc")).find((path) => existsSync(path));
}

/** The compiler options the app's manifests give mcconfig's tsc step (emit settings such as useDefineForClassFields). */
function manifestCompilerOptions(): ts.CompilerOptions {
  const { options, errors } = ts.convertCompilerOptionsFromJson(loadManifestClosure(join(root, "manifest.json")).compilerOptions, root);
  if (errors.length > 0) throw new Error("manifest typescript.tsconfig.compilerOptions: " + ts.flattenDiagnosticMessageText(errors[0]!.messageText, " "));
  return options;
}

/** JavaScript for each TypeScript file as Moddable's tsc step emits it (one program, so const enums are inlined). */
function emitJavaScript(files: string[], outDir: string): Map<string, string> {
  const program = ts.createProgram(files.filter((file) => file.endsWith(".ts")), {
    ...manifestCompilerOptions(),
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.Preserve,
    rootDir: root,
    outDir,
    noEmitOnError: false,
    skipLibCheck: true,
    types: [],
  });
  const emitted = new Map<string, string>();
  program.emit(undefined, (fileName, text) => emitted.set(fileName, text));
  const byInput = new Map<string, string>();
  for (const file of files) {
    if (!file.endsWith(".ts")) continue;
    const output = join(outDir, relative(root, file)).replace(/\.ts$/, ".js");
    const text = emitted.get(output);
    if (text === undefined) throw new Error(`tsc emitted nothing for ${file}`);
    byInput.set(file, text);
  }
  return byInput;
}

/** The .xsb bytes of one module's JavaScript, compiled as mcconfig does (xsc -e without -d) in `directory`. */
function xsbBytes(xsc: string, file: string, code: string, directory: string): number {
  mkdirSync(directory, { recursive: true });
  const name = basename(file).replace(/\.(ts|js)$/, "");
  writeFileSync(join(directory, name + ".js"), code);
  execFileSync(xsc, [join(directory, name + ".js"), "-e", "-o", directory], { stdio: "pipe" });
  return statSync(join(directory, name + ".xsb")).size;
}

/**
 * Compiles each module alone, as mcconfig does (tsc, then xsc -e without -d), and counts the .xsb
 * bytes. Checked against an mcconfig -m -p lin build of the app: the same bytes per module.
 */
async function compileModules(xsc: string, what: string, files: string[], work: string): Promise<BytecodeRow> {
  const javascript = emitJavaScript(files, join(work, "tsc"));
  const modules: { file: string; bytes: number }[] = [];
  let minifiedBytes = 0;
  for (const [index, file] of files.entries()) {
    const code = javascript.get(file) ?? readFileSync(file, "utf8");
    minifiedBytes += (await transform(code, { loader: "js", format: "esm", target: "es2022", minify: true })).code.length;
    const sdk = process.env.MODDABLE ?? "";
    const shown = file.startsWith(root) ? relative(root, file) : sdk && file.startsWith(sdk) ? "$MODDABLE/" + relative(sdk, file) : file;
    modules.push({ file: shown, bytes: xsbBytes(xsc, file, code, join(work, String(index))) });
  }
  return { what, modules, bytes: modules.reduce((sum, module) => sum + module.bytes, 0), minifiedBytes };
}

/**
 * XS bytecode sizes of the core, the app and Moddable's MQTT stack, compiled by the SDK's own xsc:
 * the size that goes to flash. Needs a built Moddable SDK in $MODDABLE (it is not an npm package).
 */
export async function runBytecode(sizeRows: SizeRow[]): Promise<BytecodeResult> {
  const sdk = process.env.MODDABLE;
  if (!sdk) return { skipped: "set MODDABLE to a Moddable SDK whose tools are built (xsc) to measure XS bytecode (sections 5b and 5c)" };
  const xsc = findXsc(sdk);
  if (!xsc) return { skipped: `no xsc under ${sdk}/build/bin: build the SDK's tools first (sections 5b and 5c)` };
  const work = mkdtempSync(join(tmpdir(), "iotlink-xsb-"));
  try {
    const bundle = (entry: string): SizeRow => {
      const row = sizeRows.find((candidate) => candidate.entry === entry);
      if (!row) throw new Error(`section 5 measured no bundle from ${entry}`);
      return row;
    };
    const core = bundle("modules/client.ts");
    const app = bundle("main.ts");
    const coreFiles = sourcesOf(core);
    const rows = [
      await compileModules(xsc, core.what, coreFiles, join(work, "core")),
      await compileModules(xsc, app.what, sourcesOf(app), join(work, "app")),
      await compileModules(xsc, "Moddable: ECMA-419 MQTT client + mqtt/js wrapper", [join(sdk, MODDABLE_MQTT_FILES.client), join(sdk, MODDABLE_MQTT_FILES.wrapper)], join(work, "moddable")),
      await compileModules(xsc, "Moddable: legacy QoS 0 mqtt module", [join(sdk, MODDABLE_MQTT_FILES.legacy)], join(work, "legacy")),
    ];
    // What each optional fragment adds to the library fragment's firmware: its own modules only.
    const library = new Set(loadManifestClosure(join(root, "manifest_iotlink.json")).modules.keys());
    for (const fragment of FRAGMENTS) {
      if (!existsSync(join(root, fragment))) continue;
      const added = [...loadManifestClosure(join(root, fragment)).modules].filter(([specifier]) => !library.has(specifier)).map(([, source]) => source + ".ts");
      rows.push(await compileModules(xsc, `fragment ${fragment} adds`, added, join(work, fragment)));
    }
    return { sdk, xsc, rows, breakdown: breakdownCore(xsc, coreFiles, join(work, "breakdown")) };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ where the core's bytecode goes (5c)

/**
 * The core's features that Moddable's MQTT stack (ECMA-419 client + mqtt/js) lacks, by the functions
 * that carry them. A name that no longer exists stops the bench and fails `npm run test:bench`.
 */
const FEATURES_MODDABLE_LACKS: readonly { what: string; functions: readonly string[] }[] = [
  {
    what: "integer exponential backoff: checks, jitter, seed, stable reset",
    functions: ["backoff.Backoff.constructor", "backoff.Backoff.nextDelay", "backoff.Backoff.seed", "backoff.Backoff.nextRandom", "backoff.backoffCeiling", "backoff.backoffProblem", "backoff.xorshift32", "options.fnv1a"],
  },
  {
    what: "bounded offline queue with drop policies",
    functions: ["session.Session.reserveQueued", "session.Session.reportDrop", "session.Session.afterQueued", "session.Session.pumpQueue", "outbox.Outbox.enqueue", "outbox.Outbox.queueHolds", "outbox.Outbox.headCanGo", "outbox.Outbox.sendQueuedHead", "subscriptions.Subscriptions.abandoned"],
  },
  { what: "fixed ring buffer (offline queue and in-flight window)", functions: ["ring.Ring.constructor", "ring.Ring.placement", "ring.Ring.push", "ring.Ring.shift", "ring.Ring.slot", "ring.Ring.clear"] },
  { what: "in-flight window: waiting for the transport, late acknowledgements", functions: ["outbox.Outbox.transmit", "outbox.Outbox.flushUnsent", "outbox.Outbox.nextDeadline", "outbox.Outbox.expireNext", "session.Session.serviceTimeouts", "session.Session.onTransportWritable", "session.Session.writeWaiting"] },
  { what: "paced drain after reconnect", functions: ["session.Session.startDrain", "session.Session.drainTick", "session.Session.restored"] },
  { what: "events delivered after the state they report, to up to 4 listeners each", functions: ["events.Events.add", "events.Events.remove", "events.Events.post", "events.Events.postError", "events.Events.ack", "events.Events.deliver", "events.Events.emitNow", "events.Events.emit", "events.Events.isListener", "events.Events.idOf"] },
  { what: "graceful disconnect (flush, DISCONNECT, close, deadline)", functions: ["session.Session.disconnect", "session.Session.finishClose"] },
  { what: "oversized inbound messages skipped and acknowledged", functions: ["packet.PacketDecoder.completeSkipped", "packet.PacketDecoder.skippedTopic", "session.Session.onOversizedPublish"] },
  {
    what: "argument checks at the call",
    functions: ["types.wholeNumberProblem", "types.wholeNumber", "types.shown", "types.unknownNameProblem", "types.hostProblem", "topic.mqttStringProblem", "options.willProblem", "options.connectBinaryProblem", "options.payloadProblem", "options.checkOptionalFunction", "options.checkQos", "client.checkFilter", "client.MqttClient.checkedPacketSize", "topic.topicNameProblem", "topic.topicFilterProblem", "topic.checkUtf8"],
  },
  { what: "inbound header and length checks", functions: ["packet.PacketDecoder.headerProblem", "packet.PacketDecoder.lengthProblem"] },
  {
    what: "UTF-8 in portable JavaScript (Moddable's stack calls XS's native ArrayBuffer.fromString and String.fromArrayBuffer)",
    functions: ["topic.utf8Length", "topic.writeUtf8", "topic.readUtf8"],
  },
  { what: "a handler per topic filter, with wildcard matching (mqtt/js gives every message to its one listener)", functions: ["topic.topicMatches"] },
];

/** Rows outside the sum: shown for scale. */
const OTHER_PARTS: readonly { what: string; functions: readonly string[] }[] = [
  { what: "the checks of the client's 19 options (resolveOptions), and the session's state", functions: ["options.resolveOptions", "session.Session.constructor"] },
  { what: "resubscription in batches of 8 (mqtt/js resubscribes too, every filter in one SUBSCRIBE)", functions: ["subscriptions.Subscriptions.beginResubscribe", "subscriptions.Subscriptions.cancelResubscribe", "subscriptions.Subscriptions.hasBatchToWrite", "subscriptions.Subscriptions.writeBatch", "subscriptions.Subscriptions.usesPacketId", "subscriptions.Subscriptions.resubscribeAcked", "subscriptions.Subscriptions.settle"] },
];

/** Every function section 5c names. */
export const BREAKDOWN_FUNCTIONS: readonly string[] = [...FEATURES_MODDABLE_LACKS, ...OTHER_PARTS].flatMap(({ functions }) => functions);

/** Message texts: string literals of at least this many characters (validation and error messages). */
const MESSAGE_MIN_CHARACTERS = 12;

type Edit = { start: number; end: number; text: string };

/** The edits that empty the bodies of `names` ("module.function" / "module.Class.method") in one module's JavaScript. */
function emptyBodies(module: string, source: ts.SourceFile, names: ReadonlySet<string>, found: Set<string>): Edit[] {
  const edits: Edit[] = [];
  const visit = (node: ts.Node, className: string): void => {
    if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isConstructorDeclaration(node)) && node.body) {
      const name = ts.isConstructorDeclaration(node) ? "constructor" : node.name?.getText(source) ?? "";
      const label = [module, className, name].filter((part) => part !== "").join(".");
      if (names.has(label)) {
        found.add(label);
        edits.push({ start: node.body.getStart(source), end: node.body.getEnd(), text: "{}" });
        return;
      }
    }
    ts.forEachChild(node, (child) => visit(child, ts.isClassDeclaration(node) ? node.name?.getText(source) ?? "" : className));
  };
  visit(source, "");
  return edits;
}

/** The edits that blank every message text in one module's JavaScript. */
function blankMessages(source: ts.SourceFile): Edit[] {
  const edits: Edit[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) && node.text.length >= MESSAGE_MIN_CHARACTERS && !ts.isImportDeclaration(node.parent)) {
      edits.push({ start: node.getStart(source), end: node.getEnd(), text: '""' });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return edits;
}

const moduleName = (file: string): string => basename(file).replace(/\.ts$/, "");
const parsed = (file: string, code: string): ts.SourceFile => ts.createSourceFile(file + ".js", code, ts.ScriptTarget.ES2022, true);

/**
 * Of `names` ("module.function", "module.Class.method"), those that no function of `files` carries,
 * as Moddable's tsc step emits them. Needs no SDK, so the tests keep section 5c's lists current.
 */
export function undefinedFunctions(files: string[], names: readonly string[]): string[] {
  const found = new Set<string>();
  for (const [file, code] of emitJavaScript(files, join(tmpdir(), "iotlink-names"))) emptyBodies(moduleName(file), parsed(file, code), new Set(names), found);
  return names.filter((name) => !found.has(name));
}

function applyEdits(code: string, edits: Edit[]): string {
  let result = code;
  for (const edit of [...edits].sort((a, b) => b.start - a.start)) result = result.slice(0, edit.start) + edit.text + result.slice(edit.end);
  return result;
}

/**
 * Section 5c: how many bytes of the core's bytecode each feature accounts for, as the bytes that go
 * when the bodies of its functions are emptied (a lower bound: the calls and the function shells
 * stay), and how many the message texts account for.
 */
function breakdownCore(xsc: string, files: string[], work: string): BreakdownRow[] {
  const missing = undefinedFunctions(files, BREAKDOWN_FUNCTIONS);
  if (missing.length > 0) throw new Error(`bench/size.ts section 5c: no function ${missing.join(", ")} in the core; update FEATURES_MODDABLE_LACKS`);
  const javascript = emitJavaScript(files, join(work, "tsc"));
  let variant = 0;
  const compile = (file: string, code: string): number => xsbBytes(xsc, file, code, join(work, String(variant++)));
  const modules = files.map((file) => {
    const code = javascript.get(file)!;
    return { file, module: moduleName(file), code, bytes: compile(file, code), source: parsed(file, code) };
  });
  // Only the modules a variant changes are compiled again.
  const total = (edit: (module: (typeof modules)[number]) => Edit[]): number =>
    modules.reduce((sum, module) => {
      const edits = edit(module);
      return sum + (edits.length === 0 ? module.bytes : compile(module.file, applyEdits(module.code, edits)));
    }, 0);
  const whole = total(() => []);
  const withoutBodies = (functions: readonly string[]): number => whole - total((module) => emptyBodies(module.module, module.source, new Set(functions), new Set()));
  const rows: BreakdownRow[] = FEATURES_MODDABLE_LACKS.map(({ what, functions }) => ({ what, carriedBy: functions.join(", "), bytes: withoutBodies(functions), kind: "feature" }));
  const together = withoutBodies(FEATURES_MODDABLE_LACKS.flatMap(({ functions }) => functions));
  rows.push({ what: "all of the above, emptied at once", carriedBy: "", bytes: together, kind: "together" });
  rows.push({ what: "the core without them", carriedBy: "", bytes: whole - together, kind: "rest" });
  for (const { what, functions } of OTHER_PARTS) rows.push({ what, carriedBy: functions.join(", "), bytes: withoutBodies(functions), kind: "other" });
  rows.push({ what: `message texts (string literals of ${MESSAGE_MIN_CHARACTERS} characters or more)`, carriedBy: "every core module", bytes: whole - total((module) => blankMessages(module.source)), kind: "other" });
  return rows;
}
