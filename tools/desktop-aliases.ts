// The one place that maps Moddable module names to their desktop implementations in hosts/desktop.
// Give `desktopAliases` to esbuild's `alias` option and `desktopInject` to its `inject` option, and
// code written for Moddable bundles for Node unchanged:
//   await esbuild.build({ entryPoints: ["main.ts"], bundle: true, platform: "node", format: "esm",
//                         alias: desktopAliases, inject: desktopInject, outfile: "build/desktop/main.js" });
import { fileURLToPath } from "node:url";

const desktopHost = (file: string): string => fileURLToPath(new URL(`../hosts/desktop/${file}`, import.meta.url));

export const desktopAliases: Readonly<Record<string, string>> = Object.freeze({
  timer: desktopHost("timer.ts"),
  time: desktopHost("time.ts"),
  securesocket: desktopHost("securesocket.ts"),
  socket: desktopHost("socket.ts"),
  Resource: desktopHost("resource.ts"),
  "mc/config": desktopHost("config.ts"),
  crypt: desktopHost("crypt.ts"),
  hmac: desktopHost("hmac.ts"),
  flash: desktopHost("flash.ts"),
});

/** Installs XS's `trace` global (and binds bare `trace` references when used with `inject`). */
export const desktopInject: readonly string[] = Object.freeze([desktopHost("globals.ts")]);
