// The desktop firmware image: fills "mc/config" the way mcconfig would (the manifest's config,
// then command-line style overrides from IOTLINK_CONFIG_* variables), then starts main.ts, the
// same file the device runs. Bundled by tools/desktop-build.ts with the Moddable aliases.
import library from "../manifest_iotlink.json";
import manifest from "../manifest.json";
import { configOverridesFromEnvironment, mergeConfig } from "../hosts/desktop/config.ts";

// In mcconfig's order: an included manifest's config first, then the app's.
mergeConfig(library.config as Parameters<typeof mergeConfig>[0]);
mergeConfig(manifest.config as Parameters<typeof mergeConfig>[0]);
mergeConfig(configOverridesFromEnvironment());
await import("../main.ts");
