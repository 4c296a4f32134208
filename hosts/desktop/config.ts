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

/** Merges `source` into `target` as mcconfig merges manifests: objects key by key, anything else replaced. */
export function mergeInto(target: ConfigObject, source: ConfigObject): void {
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

/** Restores the SDK defaults; for tests (before freezeConfig). */
export function resetConfig(): void {
  for (const key of Object.keys(config)) delete config[key];
  mergeInto(config as ConfigObject, sdkDefaults());
}

/**
 * Reads overrides such as `IOTLINK_CONFIG_port=443`, the desktop counterpart of
 * `mcconfig ... port=443`. Like mcconfig's name=value arguments, every value stays a string and
 * the name is one top-level key (objects such as `tls` can only come from the manifest), so code
 * that forgets to parse a command-line value fails here as it would on the device.
 */
export function configOverridesFromEnvironment(
  environment: NodeJS.ProcessEnv = process.env,
  prefix = "IOTLINK_CONFIG_",
): Record<string, string> {
  const overrides: Record<string, string> = {};
  for (const [name, value] of Object.entries(environment)) {
    if (name.startsWith(prefix) && name.length > prefix.length && value !== undefined) overrides[name.slice(prefix.length)] = value;
  }
  return overrides;
}

function deepFreeze(value: unknown): void {
  if (typeof value !== "object" || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const member of Object.values(value)) deepFreeze(member);
}

/** Freezes the config deeply, as the firmware's is (mc.config.js); call once the app's values are in. */
export function freezeConfig(): void {
  deepFreeze(config);
}

export default config;
