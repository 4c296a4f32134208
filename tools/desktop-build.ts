// Bundles the device app for Node with esbuild: Moddable module names resolve to hosts/desktop,
// so main.ts, modules/ and hosts/moddable run unchanged.
import { build } from "esbuild";
import { fileURLToPath } from "node:url";
import { desktopAliases, desktopInject } from "./desktop-aliases.ts";

export const DESKTOP_BUNDLE = fileURLToPath(new URL("../build/desktop/main.mjs", import.meta.url));

export async function buildDesktopApp(outfile = DESKTOP_BUNDLE): Promise<string> {
  await build({
    entryPoints: [fileURLToPath(new URL("./desktop-entry.ts", import.meta.url))],
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
