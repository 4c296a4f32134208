// Section 5 of `npm run bench`: minified bundle sizes (esbuild: bundle, minify, ESM, platform
// neutral, ES2022), and their gzip -9 sizes.
import { gzipSync } from "node:zlib";
import { join } from "node:path";
import { build } from "esbuild";

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
