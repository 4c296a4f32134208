// The desktop firmware image: fills "mc/config" the way mcconfig would (the manifests' config,
// then command-line style overrides from IOTLINK_CONFIG_* variables), then starts main.ts, the
// same file the device runs. Bundled by tools/desktop-build.ts with the Moddable aliases.
import { type ConfigObject, configOverridesFromEnvironment, mergeConfig } from "../hosts/desktop/config.ts";

/** The config of the app's manifests, combined as mcconfig does (tools/manifest.ts), put in by tools/desktop-build.ts. */
declare const IOTLINK_MANIFEST_CONFIG: ConfigObject;

mergeConfig(IOTLINK_MANIFEST_CONFIG);
mergeConfig(configOverridesFromEnvironment());
await import("../main.ts");
