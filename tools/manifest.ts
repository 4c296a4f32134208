// Reads a Moddable manifest of this project the way mcconfig combines them: included manifests
// first (only this project's "./" includes are followed; $(MODDABLE) ones are the SDK's), each
// path relative to the manifest that names it. Used by the bench (compiler options), the desktop
// app's bundle and `npm start` (config), and the tests (which modules each manifest puts in the firmware).
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { type ConfigObject, mergeInto } from "../hosts/desktop/config.ts";

export interface ManifestClosure {
  /** Module specifier (as XS resolves imports) to the source file, without extension. */
  readonly modules: Map<string, string>;
  /** Every manifest read, includer last. */
  readonly files: string[];
  readonly config: ConfigObject;
  readonly compilerOptions: ConfigObject;
  /** The SDK's manifests that were named (not read). */
  readonly sdkIncludes: string[];
  /** Module specifiers listed under "preload" (built into flash on the device). */
  readonly preload: Set<string>;
}

interface ManifestJson {
  include?: string | string[];
  modules?: Record<string, string | string[]>;
  preload?: string | string[];
  config?: ConfigObject;
  typescript?: { tsconfig?: { compilerOptions?: ConfigObject } };
}

export function loadManifestClosure(file: string): ManifestClosure {
  const closure: ManifestClosure = { modules: new Map(), files: [], config: {}, compilerOptions: {}, sdkIncludes: [], preload: new Set() };
  const visit = (path: string): void => {
    if (closure.files.includes(path)) return;
    const json = JSON.parse(readFileSync(path, "utf8")) as ManifestJson;
    const includes = json.include === undefined ? [] : Array.isArray(json.include) ? json.include : [json.include];
    for (const include of includes) {
      if (include.startsWith("$(")) closure.sdkIncludes.push(include);
      else visit(resolve(dirname(path), include));
    }
    closure.files.push(path);
    for (const [specifier, sources] of Object.entries(json.modules ?? {})) {
      for (const source of Array.isArray(sources) ? sources : [sources]) {
        if (specifier.includes("*")) {
          if (specifier !== "*") throw new Error(`${path}: wildcard module "${specifier}": list modules one by one so that none is carried unasked`);
          // "*": [files] keeps each file's own name.
          closure.modules.set(source.replace(/^\.\//, ""), resolve(dirname(path), source));
        } else closure.modules.set(specifier, resolve(dirname(path), source));
      }
    }
    for (const name of json.preload === undefined ? [] : Array.isArray(json.preload) ? json.preload : [json.preload]) closure.preload.add(name);
    mergeInto(closure.config, json.config ?? {});
    mergeInto(closure.compilerOptions, json.typescript?.tsconfig?.compilerOptions ?? {});
  };
  visit(resolve(file));
  return closure;
}
