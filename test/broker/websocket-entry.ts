// What test/broker/websocket.test.ts loads: the core, the Moddable host with MQTT over WebSocket
// (hosts/moddable/websocket.ts) and the facade, bundled with the Moddable aliases (crypt, hmac,
// securesocket... from hosts/desktop), plus the desktop knobs the test needs.
export { MqttClient } from "../../modules/client";
export * from "../../modules/types";
export { moddablePlatform } from "../../hosts/moddable/platform";
export { createWebSocketTransport, moddableWebSocketPlatform } from "../../hosts/moddable/websocket";
export { AWSIoTMQTTClient } from "../../hosts/moddable/awsiot";
export { setResourceDirectory } from "../../hosts/desktop/resource.ts";
export { setTraceSink } from "../../hosts/desktop/trace.ts";
export { mergeConfig } from "../../hosts/desktop/config.ts";
