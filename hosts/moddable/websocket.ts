// MQTT over WebSocket with SigV4 on the Moddable host, as AWS IoT Core takes it on port 443 (the
// Python SDK's useWebsocket=True): a WebSocketTransport (modules/websocket.ts) over the host's TLS
// SocketTransport with the CA alone (the signature authenticates the device, not a certificate),
// upgrading to `GET /mqtt?<SigV4 query>` signed anew at every open() with the time of day then and
// the credentials then (a provider function is called at each connection attempt, so rotated STS
// keys work; AWS closes a SigV4 connection after 24 h, and the reconnect signs again).
//
// Everything is checked at the call, each problem one invalid-argument line. The secret access key
// and the session token never appear in an error, an event or a trace: the signer's messages never
// show them, and the request target (which carries the signature and the token) is never shown.
//
// Memory, allocated here once: the WebSocket transport's buffers (maxPacketBytes + 1,700 bytes) and
// the socket transport's (two frames of maxPacketBytes + 14, at least 1,420 bytes: the WebSocket
// transport writes its 1,419-byte side buffer, the handshake's pieces and its control reserve, in
// one write). Per connection attempt: the request's strings (the token's length, and about 500 bytes).
import { DEFAULT_CLOCK_FLOOR_MS, presignMqttUrl, type SigV4Crypto } from "../../modules/sigv4";
import { WebSocketTransport } from "../../modules/websocket";
import { MAX_FRAME_HEADER_BYTES } from "../../modules/websocket-frames";
import {
  type AwsCredentials,
  type Clock,
  type EndpointSettings,
  invalid,
  type Platform,
  shown,
  type Transport,
  unknownNameProblem,
  type WebSocketEndpoint,
  type WebSocketTransportOptions,
  wholeNumberProblem,
} from "../../modules/types";
import { moddablePlatform } from "./platform";
import { SocketTransport } from "./transport";
import { moddableRandomBytes, moddableSha1, moddableSigV4Crypto } from "./websocket-crypto";

export type { AwsCredentials, WebSocketEndpoint, WebSocketTransportOptions };

/** AWS IoT Core's MQTT over WebSocket port. */
export const WEBSOCKET_PORT = 443;
/** Half the WebSocket transport's side buffer (1,419 bytes) rounded up: the socket transport keeps two of its largest packets. */
const SMALLEST_INNER_PACKET_BYTES = 710;
const ENDPOINT_NAMES = "host, port, serverName, alpn, caResource, certificateResource, keyResource, plaintext";
const OPTION_NAMES = "credentials, region, maxPacketBytes, clockFloorMs, now";
const CREDENTIAL_NAMES = "accessKeyId, secretAccessKey, sessionToken";
/** A well-formed key id, for checking the host, the region and the floor when the credentials come later. */
const PLACEHOLDER_KEY_ID = "AKIAIOSFODNN7EXAMPLE";

/** The checks of presignMqttUrl() without its work: its crypto, stubbed. */
const CHECK_ONLY: SigV4Crypto = Object.freeze({
  sha256Hex(): string {
    return "";
  },
  hmacSha256(): Uint8Array {
    return new Uint8Array(0);
  },
});

function isFunction(value: unknown): boolean {
  return typeof value === "function";
}

/** What is wrong with credentials as given (their own names, nothing of their values), or "". */
function credentialsShapeProblem(credentials: unknown): string {
  if (typeof credentials !== "object" || credentials === null) return "credentials must be an object { accessKeyId, secretAccessKey, sessionToken? } or a function returning one";
  return unknownNameProblem("credentials field", credentials, CREDENTIAL_NAMES);
}

/** The credentials as the signer takes them: a session token "" means none (as the Python SDK's default). */
function signingInput(host: string, region: string | undefined, credentials: AwsCredentials, nowMs: number, clockFloorMs: number | undefined) {
  const token = credentials.sessionToken;
  return {
    host,
    region,
    accessKeyId: credentials.accessKeyId,
    secretAccessKey: credentials.secretAccessKey,
    sessionToken: token === "" || token === undefined ? undefined : token,
    nowMs,
    clockFloorMs,
  };
}

/** Runs the signer's checks (host, region, key id, secret, token, floor); its message, or "". */
function signingProblem(host: string, region: string | undefined, credentials: AwsCredentials, clockFloorMs: number | undefined): string {
  const floor = typeof clockFloorMs === "number" && Number.isInteger(clockFloorMs) && clockFloorMs >= 0 ? clockFloorMs : DEFAULT_CLOCK_FLOOR_MS;
  try {
    presignMqttUrl(signingInput(host, region, credentials, floor, clockFloorMs), CHECK_ONLY);
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
  return "";
}

/** What is wrong with the endpoint for MQTT over WebSocket, or "" (the socket transport checks the rest). */
function endpointProblem(endpoint: WebSocketEndpoint): string {
  if (typeof endpoint !== "object" || endpoint === null) return "websocket endpoint must be an object { host, port?, caResource }";
  const loose = endpoint as WebSocketEndpoint & EndpointSettings;
  const problem = unknownNameProblem("endpoint setting", endpoint, ENDPOINT_NAMES);
  if (problem !== "") return problem;
  if (loose.certificateResource !== undefined || loose.keyResource !== undefined) {
    return "MQTT over WebSocket signs in with SigV4, not a client certificate: give the CA alone (caResource), without certificateResource or keyResource";
  }
  if (loose.plaintext !== undefined && loose.plaintext !== false) return "MQTT over WebSocket needs TLS (the signed URL would travel in the clear): plaintext must be left out";
  if (typeof loose.caResource !== "string" || loose.caResource === "") return "MQTT over WebSocket needs TLS: caResource must name the CA certificate resource (Amazon Root CA 1 for AWS IoT Core)";
  if (Array.isArray(loose.alpn) && loose.alpn.indexOf("x-amzn-mqtt-ca") >= 0) return "alpn x-amzn-mqtt-ca is MQTT without WebSocket: leave alpn out for MQTT over WebSocket";
  return loose.port === undefined ? "" : wholeNumberProblem("endpoint port", loose.port, 1, 65535);
}

function optionsProblem(options: WebSocketTransportOptions): string {
  if (typeof options !== "object" || options === null) return "websocket options must be an object { credentials, region?, maxPacketBytes, clockFloorMs?, now? }";
  const { credentials, now, maxPacketBytes } = options;
  return unknownNameProblem("websocket option", options, OPTION_NAMES) ||
    wholeNumberProblem("maxPacketBytes", maxPacketBytes, 16, 268435455) ||
    (now === undefined || isFunction(now) ? "" : "now must be a function returning the time in epoch milliseconds, got " + shown(now)) ||
    (isFunction(credentials) ? "" : credentialsShapeProblem(credentials));
}

/**
 * A Transport for MqttClient: MQTT over WebSocket (RFC 6455, subprotocol "mqtt") to `GET /mqtt`
 * with a SigV4 presigned query, over TLS to `endpoint` (port 443 by default) checked with its CA
 * alone. Signed at every open() with `options.now()` and the credentials of that moment. A refused
 * upgrade (403 for a bad signature, a wrong key, a missing token) closes the attempt with
 * "websocket upgrade refused: HTTP 403 Forbidden: <the server's words>"; a clock before the floor
 * or a provider that throws closes it with the reason, before anything is sent; the client backs off.
 */
export function createWebSocketTransport(endpoint: WebSocketEndpoint, options: WebSocketTransportOptions): Transport {
  let problem = endpointProblem(endpoint) || optionsProblem(options);
  if (problem !== "") throw invalid(problem);
  const { credentials, region, maxPacketBytes, clockFloorMs } = options;
  const now = options.now ?? Date.now;
  const host = endpoint.serverName ?? endpoint.host;
  const provider = isFunction(credentials) ? (credentials as () => AwsCredentials) : undefined;
  problem = signingProblem(host, region, provider ? { accessKeyId: PLACEHOLDER_KEY_ID, secretAccessKey: "-" } : (credentials as AwsCredentials), clockFloorMs);
  if (problem !== "") throw invalid(problem);
  // The socket transport checks the host, the port, the server name, the ALPN list and that the CA resource exists.
  const inner = new SocketTransport(
    { host: endpoint.host, port: endpoint.port ?? WEBSOCKET_PORT, serverName: endpoint.serverName, alpn: endpoint.alpn, caResource: endpoint.caResource },
    maxPacketBytes + MAX_FRAME_HEADER_BYTES > SMALLEST_INNER_PACKET_BYTES ? maxPacketBytes + MAX_FRAME_HEADER_BYTES : SMALLEST_INNER_PACKET_BYTES,
  );
  const requestTarget = (): string => {
    const current = provider ? provider() : (credentials as AwsCredentials);
    const shape = credentialsShapeProblem(current);
    if (shape !== "") throw invalid("the credentials provider returned no valid credentials: " + shape);
    return presignMqttUrl(signingInput(host, region, current, now(), clockFloorMs), moddableSigV4Crypto).path;
  };
  return new WebSocketTransport(inner, { host, requestTarget, protocol: "mqtt", maxPacketBytes, randomBytes: moddableRandomBytes, sha1: moddableSha1 });
}

/**
 * The Moddable platform (moddablePlatform's clock and TLS transport) with MQTT over WebSocket: what
 * AWSIoTMQTTClient(clientID, protocolType, useWebsocket=true) builds its transport with.
 */
export const moddableWebSocketPlatform: Platform = Object.freeze({
  createClock(): Clock {
    return moddablePlatform.createClock();
  },
  createTransport(endpoint: EndpointSettings, largestPacketBytes?: number): Transport {
    return moddablePlatform.createTransport(endpoint, largestPacketBytes);
  },
  createWebSocketTransport,
});
