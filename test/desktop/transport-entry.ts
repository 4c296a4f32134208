// The Moddable transport alone (hosts/moddable over hosts/desktop), for transport-end.test.ts: bundled
// with the Moddable aliases, without the client, so the transport is tested on its own.
export { SocketTransport } from "../../hosts/moddable/transport";
export { setResourceDirectory } from "../../hosts/desktop/resource.ts";
