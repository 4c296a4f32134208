// The desktop firmware image: fills "mc/config" the way mcconfig would (the manifests' config,
// then command-line style overrides from IOTLINK_CONFIG_* variables), then starts main.ts, the
// same file the device runs. Bundled by tools/desktop-build.ts with the Moddable aliases.
//
// When main.ts stops at start (a setting it refuses, a missing resource), the desktop says so in
// ONE line on stderr, naming the setting as the user wrote it (IOTLINK_CONFIG_port=88x3: config
// port must be ...), and exits 2 for a refused setting, 1 otherwise: no stack trace. On a device
// the same exception goes to xsbug. IOTLINK_DEBUG=1 shows the stack.
import { type ConfigObject, configOverridesFromEnvironment, mergeConfig } from "../hosts/desktop/config.ts";

/** The config of the app's manifests, combined as mcconfig does (tools/manifest.ts), put in by tools/desktop-build.ts. */
declare const IOTLINK_MANIFEST_CONFIG: ConfigObject;

mergeConfig(IOTLINK_MANIFEST_CONFIG);
const overrides = configOverridesFromEnvironment();
mergeConfig(overrides);
try {
  await import("../main.ts");
} catch (error) {
  const message = error instanceof Error ? error.message : String(error);
  // main.ts names a refused setting as "config <name> ...".
  const setting = /^config (\w+)[ =]/.exec(message)?.[1];
  const given = setting !== undefined && setting in overrides ? `IOTLINK_CONFIG_${setting}=${overrides[setting]}: ` : "";
  process.stderr.write(setting !== undefined ? `${given}${message}\n` : `the app stopped at start: ${message}\n`);
  if (process.env.IOTLINK_DEBUG && error instanceof Error && error.stack) process.stderr.write(error.stack + "\n");
  process.exit(setting !== undefined ? 2 : 1);
}
