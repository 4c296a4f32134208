// Section 5 of `npm run bench`: minified bundle sizes (esbuild: bundle, minify, ESM, platform
// neutral, ES2022), and their gzip -9 sizes.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, relative } from "node:path";
import { gzipSync } from "node:zlib";
import { build, transform } from "esbuild";
import ts from "typescript";

/** Moddable's own modules: provided by the firmware, never part of the app's bundle. */
const MODDABLE_MODULES = ["timer", "time", "securesocket", "socket", "Resource", "mc/config"];

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

export async function runSize(): Promise<SizeRow[]> {
  return [
    await measure("core: MqttClient with codec, topics, backoff, ring", "modules/client.ts"),
    await measure("core + AWS IoT Python SDK facade", "modules/awsiot.ts"),
    await measure("whole app: main.ts + hosts/moddable (Moddable modules external)", "main.ts"),
  ];
}

// ------------------------------------------------------------------ XS bytecode (needs the Moddable SDK)

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

export type BytecodeResult = { sdk: string; xsc: string; rows: BytecodeRow[] } | { skipped: string };

function findXsc(sdk: string): string | undefined {
  const host = process.platform === "darwin" ? "mac" : process.platform === "win32" ? "win" : "lin";
  return ["release", "debug"].map((kind) => join(sdk, "build", "bin", host, kind, "xsc")).find((path) => existsSync(path));
}

/** The compiler options the app's manifest gives mcconfig's tsc step (emit settings such as useDefineForClassFields). */
function manifestCompilerOptions(): ts.CompilerOptions {
  const manifest = JSON.parse(readFileSync(join(root, "manifest.json"), "utf8"));
  const { options, errors } = ts.convertCompilerOptionsFromJson(manifest.typescript?.tsconfig?.compilerOptions ?? {}, root);
  if (errors.length > 0) throw new Error("manifest.json typescript.tsconfig.compilerOptions: " + ts.flattenDiagnosticMessageText(errors[0]!.messageText, " "));
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
    const directory = join(work, String(index));
    mkdirSync(directory, { recursive: true });
    const name = basename(file).replace(/\.(ts|js)$/, "");
    writeFileSync(join(directory, name + ".js"), code);
    execFileSync(xsc, [join(directory, name + ".js"), "-e", "-o", directory], { stdio: "pipe" });
    const sdk = process.env.MODDABLE ?? "";
    const shown = file.startsWith(root) ? relative(root, file) : sdk && file.startsWith(sdk) ? "$MODDABLE/" + relative(sdk, file) : file;
    modules.push({ file: shown, bytes: statSync(join(directory, name + ".xsb")).size });
  }
  return { what, modules, bytes: modules.reduce((sum, module) => sum + module.bytes, 0), minifiedBytes };
}

/**
 * XS bytecode sizes of the core, the app and Moddable's MQTT stack, compiled by the SDK's own xsc:
 * the size that goes to flash. Needs a built Moddable SDK in $MODDABLE (it is not an npm package).
 */
export async function runBytecode(sizeRows: SizeRow[]): Promise<BytecodeResult> {
  const sdk = process.env.MODDABLE;
  if (!sdk) return { skipped: "set MODDABLE to a Moddable SDK whose tools are built (xsc) to measure XS bytecode" };
  const xsc = findXsc(sdk);
  if (!xsc) return { skipped: `no xsc under ${sdk}/build/bin: build the SDK's tools first` };
  const work = mkdtempSync(join(tmpdir(), "iotlink-xsb-"));
  try {
    // The modules each bundle of section 5 pulls in (Moddable's own modules are external there).
    const sources = (row: SizeRow): string[] => Object.keys(row.inputs).map((input) => join(root, input));
    const bundle = (entry: string): SizeRow => {
      const row = sizeRows.find((candidate) => candidate.entry === entry);
      if (!row) throw new Error(`section 5 measured no bundle from ${entry}`);
      return row;
    };
    const core = bundle("modules/client.ts");
    const app = bundle("main.ts");
    const rows = [
      await compileModules(xsc, core.what, sources(core), join(work, "core")),
      await compileModules(xsc, app.what, sources(app), join(work, "app")),
      await compileModules(xsc, "Moddable: ECMA-419 MQTT client + mqtt/js wrapper", [join(sdk, MODDABLE_MQTT_FILES.client), join(sdk, MODDABLE_MQTT_FILES.wrapper)], join(work, "moddable")),
      await compileModules(xsc, "Moddable: legacy QoS 0 mqtt module", [join(sdk, MODDABLE_MQTT_FILES.legacy)], join(work, "legacy")),
    ];
    return { sdk, xsc, rows };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
