// The host bundle of section 3's WebSocket runs (bench/throughput.ts bundles it with the Moddable
// aliases, as loadDesktopHost() bundles tools/desktop-host-entry.ts): the same core and Moddable host,
// plus createWebSocketTransport (hosts/moddable/websocket.ts over the desktop's securesocket, crypt
// and hmac).
export * from "../tools/desktop-host-entry.ts";
export { createWebSocketTransport } from "../hosts/moddable/websocket";
