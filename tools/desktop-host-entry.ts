// What loadDesktopHost() (tools/desktop-build.ts) exposes: the core and the Moddable host, bundled
// with the Moddable aliases, plus the desktop knobs a Node-side driver needs.
export { MqttClient } from "../modules/client";
export * from "../modules/types";
export { moddablePlatform } from "../hosts/moddable/platform";
export { AWSIoTMQTTClient } from "../hosts/moddable/awsiot";
export { setResourceDirectory } from "../hosts/desktop/resource.ts";
export { setTraceSink } from "../hosts/desktop/trace.ts";
export { mergeConfig, resetConfig } from "../hosts/desktop/config.ts";
export { countLiveTimers, countScheduledTimers } from "../hosts/desktop/timer.ts";
