// Bundles code written for Moddable for Node with esbuild: Moddable module names resolve to
// hosts/desktop, so main.ts, modules/ and hosts/moddable run unchanged.
import { build } from "esbuild";
import { fileURLToPath, pathToFileURL } from "node:url";
import { desktopAliases, desktopInject } from "./desktop-aliases.ts";
import { loadManifestClosure } from "./manifest.ts";

export const DESKTOP_BUNDLE = fileURLToPath(new URL("../build/desktop/main.mjs", import.meta.url));
const DESKTOP_HOST_BUNDLE = fileURLToPath(new URL("../build/desktop/host.mjs", import.meta.url));

/** Bundles `entryPoint` (a path) with the Moddable aliases into one ESM file for Node; `define` as esbuild's. */
export async function bundleForDesktop(entryPoint: string, outfile: string, define: Record<string, string> = {}): Promise<string> {
  await build({
    define,
    entryPoints: [entryPoint],
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    alias: { ...desktopAliases },
    inject: [...desktopInject],
    outfile,
    logLevel: "error",
    sourcemap: "inline",
  });
  return outfile;
}

/**
 * The device app (tools/desktop-entry.ts, which runs main.ts), ready for `node <bundle>`, with the
 * config of the app's manifests as mcconfig combines them (IOTLINK_MANIFEST_CONFIG).
 */
export function buildDesktopApp(outfile = DESKTOP_BUNDLE): Promise<string> {
  const { config } = loadManifestClosure(fileURLToPath(new URL("../manifest.json", import.meta.url)));
  return bundleForDesktop(fileURLToPath(new URL("./desktop-entry.ts", import.meta.url)), outfile, { IOTLINK_MANIFEST_CONFIG: JSON.stringify(config) });
}

export type DesktopHost = typeof import("./desktop-host-entry.ts");

/**
 * The core with the Moddable host (hosts/moddable over hosts/desktop) loaded in this process, for
 * tests, benchmarks and tools that drive a client directly. Everything comes from one bundle, so
 * `setResourceDirectory` and the config reach the same module instances the transport uses.
 */
export async function loadDesktopHost(outfile = DESKTOP_HOST_BUNDLE): Promise<DesktopHost> {
  await bundleForDesktop(fileURLToPath(new URL("./desktop-host-entry.ts", import.meta.url)), outfile);
  return (await import(pathToFileURL(outfile).href)) as DesktopHost;
}
