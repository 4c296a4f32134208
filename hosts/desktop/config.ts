// Node stand-in for Moddable's "mc/config": the values of the manifest's `config` section, which
// mcconfig compiles into the firmware. Modules import the object once, so filling it (from the
// manifest, then from the environment) mutates that same object in place.

export type ConfigValue = string | number | boolean | null | ConfigValue[] | { [key: string]: ConfigValue };
export type ConfigObject = { [key: string]: ConfigValue };

// What the SDK's own manifests contribute before the app's manifest: `file.root` (typed by
// @moddable/typings) and the TLS stack's cipher switches (modules/crypt/tls_common.json).
function sdkDefaults(): ConfigObject {
  return { file: { root: "/" }, tls: { DHE_RSA: true, ECDHE_RSA: true } };
}

const config: Record<string, any> = sdkDefaults();

function isPlainObject(value: unknown): value is ConfigObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function mergeInto(target: ConfigObject, source: ConfigObject): void {
  for (const [key, value] of Object.entries(source)) {
    const existing = target[key];
    if (isPlainObject(existing) && isPlainObject(value)) mergeInto(existing, value);
    else target[key] = isPlainObject(value) ? structuredClone(value) : value;
  }
}

/** Merges values into the config (objects merge key by key, like mcconfig merges manifests). */
export function mergeConfig(values: ConfigObject): void {
  mergeInto(config as ConfigObject, values);
}

/** Restores the SDK defaults; for tests. */
export function resetConfig(): void {
  for (const key of Object.keys(config)) delete config[key];
  mergeInto(config as ConfigObject, sdkDefaults());
}

/**
 * Reads overrides such as `IOTLINK_CONFIG_port=443` or `IOTLINK_CONFIG_tls_DHE_RSA=false`
 * (`_` descends into nested objects where such a key exists), the desktop counterpart of
 * `mcconfig ... port=443`. Values that look like numbers or booleans become those types.
 */
export function configOverridesFromEnvironment(
  environment: NodeJS.ProcessEnv = process.env,
  prefix = "IOTLINK_CONFIG_",
): ConfigObject {
  const overrides: ConfigObject = {};
  for (const [name, raw] of Object.entries(environment)) {
    if (!name.startsWith(prefix) || raw === undefined) continue;
    const path = splitPath(name.slice(prefix.length));
    let target = overrides;
    for (const key of path.slice(0, -1)) {
      const next = target[key];
      target = isPlainObject(next) ? next : (target[key] = {});
    }
    target[path[path.length - 1]!] = parseScalar(raw);
  }
  return overrides;
}

// "tls_DHE_RSA" descends into `tls` because that object exists; "clientId" stays whole.
function splitPath(name: string): string[] {
  const path: string[] = [];
  let scope: unknown = config;
  let rest = name;
  for (;;) {
    const cut = rest.indexOf("_");
    if (cut < 0 || !isPlainObject(scope)) break;
    const head = rest.slice(0, cut);
    if (!isPlainObject(scope[head])) break;
    path.push(head);
    scope = scope[head];
    rest = rest.slice(cut + 1);
  }
  path.push(rest);
  return path;
}

function parseScalar(raw: string): ConfigValue {
  if (raw === "true") return true;
  if (raw === "false") return false;
  if (raw.trim() !== "" && Number.isFinite(Number(raw))) return Number(raw);
  return raw;
}

export default config;
