// An AWS IoT-like MQTT over WebSocket gateway for the desktop and the tests: `wss://<host>:<port>/mqtt`
// with a SigV4 presigned query, checked as AWS IoT Core checks it, then bridged byte for byte to a
// TCP MQTT broker (binary WebSocket messages to the TCP stream and back).
//
// - TLS from the development PKI (the broker's certificate chain for localhost, 127.0.0.1 and ::1);
//   no client certificate is asked for: the signature is the authentication, as on AWS.
// - `GET /mqtt` only (404 otherwise), `Sec-WebSocket-Protocol: mqtt` required (400 otherwise).
// - The query: X-Amz-Algorithm=AWS4-HMAC-SHA256; X-Amz-Credential=<key id>/<yyyymmdd>/<region>/
//   iotdevicegateway/aws4_request with a configured key id; X-Amz-Date within 5 minutes of the
//   gateway's clock and on the scope's day; X-Amz-Expires, when present, honoured; X-Amz-SignedHeaders
//   =host; X-Amz-Security-Token present and equal when the credential has a session token (and
//   absent when it has none); X-Amz-Signature the HMAC-SHA256 of the string to sign over the
//   canonical request `GET /mqtt <query without the signature and the token, sorted> host:<Host
//   header> host <SHA-256 of "">`. The verifier here is written from the SigV4 specification with
//   node:crypto, independent of modules/sigv4.ts (the device's signer), so each checks the other.
// - A refusal answers the upgrade with 403 and a one-line body in AWS's words, and counts its reason
//   in `stats.refused`. The log says more (the canonical request the gateway expected, for a
//   signature mismatch), but neither the log nor a body ever holds a secret or a session token.
// - Either side closing closes the other: a WebSocket close ends the TCP stream; the broker ending
//   the stream closes the WebSocket with 1000 (1011 when the broker cannot be reached).
//
// As a script: npm run wss-gateway -- --help.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { IncomingMessage } from "node:http";
import { connect as connectTcp, type AddressInfo, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { join, resolve } from "node:path";
import { connect as connectTls, type ConnectionOptions } from "node:tls";
import { fileURLToPath } from "node:url";
import { WebSocketServer, type RawData, type WebSocket } from "ws";
import { DEV_PKI_FILES } from "./certs.ts";
import { CommandError, helpIfAsked, listenProblem, portNumber, readCommandLine, runCommand, UsageError } from "./cli.ts";

export const GATEWAY_PATH = "/mqtt";
export const GATEWAY_SUBPROTOCOL = "mqtt";
export const IOT_SERVICE = "iotdevicegateway";
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;
/** How long the bridge waits for the broker to accept (then closes the WebSocket with 1011). */
export const BROKER_CONNECT_TIMEOUT_MS = 10_000;
/** The longest X-Amz-Expires SigV4 allows: a week. */
export const MAX_EXPIRES_SECONDS = 604_800;

/** Every reason an upgrade is refused, each counted in stats.refused. */
export const REFUSAL_REASONS = [
  "not-found",
  "not-websocket",
  "bad-handshake",
  "no-mqtt-protocol",
  "missing-parameters",
  "malformed-query",
  "bad-algorithm",
  "bad-credential",
  "wrong-service",
  "wrong-region",
  "bad-date",
  "date-mismatch",
  "bad-signed-headers",
  "bad-expires",
  "expired",
  "not-yet-valid",
  "unknown-key-id",
  "bad-security-token",
  "signature-mismatch",
] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

export interface GatewayCredential {
  readonly secret: string;
  /** When set, the URL must carry it as X-Amz-Security-Token (temporary credentials). */
  readonly sessionToken?: string;
}

export type GatewayCredentials = Readonly<Record<string, GatewayCredential>> | ReadonlyMap<string, GatewayCredential>;

export interface BrokerTarget {
  readonly host: string;
  readonly port: number;
  /** TLS to the broker with these options (the embedded broker needs a client certificate); plain TCP without. */
  readonly tls?: ConnectionOptions;
}

export interface WssGatewayOptions {
  /** Loopback by default. */
  readonly host?: string;
  /** 0 (default) picks a free port. */
  readonly port?: number;
  /** Key id → secret (and session token). */
  readonly credentials: GatewayCredentials;
  /** The MQTT broker each accepted connection is bridged to. */
  readonly broker: BrokerTarget;
  /** When set, the credential scope's region must be this one (AWS IoT's endpoint region); any region otherwise. */
  readonly region?: string;
  /** The gateway's clock in epoch ms (default Date.now): for tests of the time window. */
  readonly now?: () => number;
  /** Directory of the development PKI (default certs/): broker-chain.pem and broker-key.pem are served. */
  readonly certificateDirectory?: string;
  /** PEM overrides of the certificate chain served (leaf first) and its key. */
  readonly certificateChainPem?: string | Buffer;
  readonly keyPem?: string | Buffer;
  /** One line per connection, refusal and close. */
  readonly log?: (line: string) => void;
}

export interface WssGatewayStats {
  /** Upgrades accepted and bridged. */
  accepted: number;
  /** Bridged connections open now. */
  open: number;
  /** Refused upgrades, by reason. */
  readonly refused: Record<RefusalReason, number>;
  /** Bridged connections the broker could not be reached for (closed with 1011). */
  brokerFailures: number;
  bytesToBroker: number;
  bytesToClient: number;
}

export interface RunningWssGateway {
  readonly host: string;
  readonly port: number;
  /** wss://<host>:<port>/mqtt, without a query. */
  readonly url: string;
  readonly stats: WssGatewayStats;
  /** Stops listening and closes every connection (both sides). */
  close(): Promise<void>;
}

// ------------------------------------------------------------------ the SigV4 check

export interface PresignedRequest {
  readonly method: string;
  /** The request target: `/mqtt?<query>`. */
  readonly target: string;
  /** The Host header as received. */
  readonly host: string;
}

export interface VerifyOptions {
  readonly credentials: GatewayCredentials;
  readonly nowMs: number;
  readonly region?: string;
}

export type Verdict =
  | { readonly ok: true; readonly keyId: string; readonly region: string }
  | {
      readonly ok: false;
      readonly reason: RefusalReason;
      /** The body the client gets: AWS's words, nothing secret. */
      readonly message: string;
      /** More for the log (never a secret or a token). */
      readonly detail: string;
    };

const MESSAGES = {
  missing: "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders parameters.",
  algorithm: 'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
  credential: 'Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; expecting "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".',
  service: `Credential should be scoped to correct service: '${IOT_SERVICE}'.`,
  date: "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
  signedHeaders: "X-Amz-SignedHeaders must be host: 'Host' must be the only SignedHeader of the presigned URL.",
  token: "The security token included in the request is invalid.",
  signature:
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
} as const;

function refuse(reason: RefusalReason, message: string, detail = message): Verdict {
  return { ok: false, reason, message, detail };
}

/** SigV4's URI encoding: unreserved characters kept, every other UTF-8 byte %XX in uppercase. */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
}

/** `yyyymmddThhmmssZ`. */
function amzDate(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

function parseAmzDate(text: string): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(text);
  if (!match) return undefined;
  const ms = Date.UTC(+match[1]!, +match[2]! - 1, +match[3]!, +match[4]!, +match[5]!, +match[6]!);
  return amzDate(ms) === text ? ms : undefined;
}

function credentialOf(credentials: GatewayCredentials, keyId: string): GatewayCredential | undefined {
  if (credentials instanceof Map) return credentials.get(keyId);
  const record = credentials as Readonly<Record<string, GatewayCredential>>;
  return Object.hasOwn(record, keyId) ? record[keyId] : undefined;
}

/** The query's parameters, decoded ('+' as a space, as AWS's form decoding reads it), or what is wrong with it (bad percent-encoding, a repeated name). */
function parseQuery(query: string): Map<string, string> | string {
  const parameters = new Map<string, string>();
  for (const part of query.split("&")) {
    if (part === "") continue;
    const at = part.indexOf("=");
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent((at < 0 ? part : part.slice(0, at)).replace(/\+/g, " "));
      value = at < 0 ? "" : decodeURIComponent(part.slice(at + 1).replace(/\+/g, " "));
    } catch {
      return "a query parameter is not valid percent-encoding";
    }
    if (parameters.has(name)) return `the query parameter ${name} is repeated`;
    parameters.set(name, value);
  }
  return parameters;
}

/**
 * Checks a presigned `GET /mqtt` as AWS IoT does. Pure: the clock comes in `nowMs`. The order is
 * AWS's as far as it shows: the form of the query, then the time, then the key, then the signature.
 */
export function verifyPresignedRequest(request: PresignedRequest, options: VerifyOptions): Verdict {
  const question = request.target.indexOf("?");
  const path = question < 0 ? request.target : request.target.slice(0, question);
  const parsed = parseQuery(question < 0 ? "" : request.target.slice(question + 1));
  if (typeof parsed === "string") return refuse("malformed-query", "Invalid query string: " + parsed + ".");
  const parameters = parsed;
  const get = (name: string): string | undefined => parameters.get(name);
  const algorithm = get("X-Amz-Algorithm");
  const credential = get("X-Amz-Credential");
  const date = get("X-Amz-Date");
  const signedHeaders = get("X-Amz-SignedHeaders");
  const signature = get("X-Amz-Signature");
  if (algorithm === undefined || credential === undefined || date === undefined || signedHeaders === undefined || signature === undefined) {
    const missing = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature"].filter((name) => !parameters.has(name));
    return refuse("missing-parameters", MESSAGES.missing, "missing " + missing.join(", "));
  }
  if (algorithm !== "AWS4-HMAC-SHA256") return refuse("bad-algorithm", MESSAGES.algorithm, `X-Amz-Algorithm is ${JSON.stringify(algorithm)}`);

  const scope = credential.split("/");
  if (scope.length !== 5 || scope[0] === "" || !/^\d{8}$/.test(scope[1]!) || scope[2] === "" || scope[4] !== "aws4_request") {
    return refuse("bad-credential", MESSAGES.credential, `the credential has ${scope.length} parts, or a bad date or terminator`);
  }
  const [keyId, scopeDate, region, service] = scope as [string, string, string, string, string];
  if (service !== IOT_SERVICE) return refuse("wrong-service", MESSAGES.service, `the credential is scoped to the service ${JSON.stringify(service)}`);
  if (options.region !== undefined && region !== options.region) {
    return refuse("wrong-region", `Credential should be scoped to a valid region, not '${region}'.`, `the credential is scoped to ${region}, this endpoint is in ${options.region}`);
  }
  const signedAt = parseAmzDate(date);
  if (signedAt === undefined) return refuse("bad-date", MESSAGES.date, `X-Amz-Date is ${JSON.stringify(date)}`);
  if (scopeDate !== date.slice(0, 8)) {
    return refuse("date-mismatch", `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${scopeDate}' != '${date.slice(0, 8)}', from '${date}'.`);
  }
  if (signedHeaders !== "host") return refuse("bad-signed-headers", MESSAGES.signedHeaders, `X-Amz-SignedHeaders is ${JSON.stringify(signedHeaders)}`);

  const expiresText = get("X-Amz-Expires");
  let expiresMs: number | undefined;
  if (expiresText !== undefined) {
    if (!/^\d{1,7}$/.test(expiresText)) return refuse("bad-expires", "X-Amz-Expires must be non-negative", `X-Amz-Expires is ${JSON.stringify(expiresText)}`);
    if (Number(expiresText) > MAX_EXPIRES_SECONDS) return refuse("bad-expires", `X-Amz-Expires must be less than a week (in seconds) that's ${MAX_EXPIRES_SECONDS}`);
    expiresMs = Number(expiresText) * 1000;
  }
  const now = options.nowMs;
  const nowText = amzDate(now);
  if (signedAt > now + MAX_CLOCK_SKEW_MS) {
    return refuse("not-yet-valid", `Signature not yet current: ${date} is still later than ${amzDate(now + MAX_CLOCK_SKEW_MS)} (${nowText} + 5 min.)`);
  }
  if (expiresMs !== undefined) {
    if (now > signedAt + expiresMs) return refuse("expired", "Request has expired", `signed at ${date} for ${expiresText} s, now ${nowText}`);
  } else if (signedAt < now - MAX_CLOCK_SKEW_MS) {
    return refuse("expired", `Signature expired: ${date} is now earlier than ${amzDate(now - MAX_CLOCK_SKEW_MS)} (${nowText} - 5 min.)`);
  }

  const secret = credentialOf(options.credentials, keyId);
  if (secret === undefined) return refuse("unknown-key-id", MESSAGES.token, `no credential has the key id ${keyId}`);
  const token = get("X-Amz-Security-Token");
  if (secret.sessionToken !== undefined ? token !== secret.sessionToken : token !== undefined) {
    const what = secret.sessionToken === undefined ? "a session token was sent for a credential without one" : token === undefined ? "the credential needs a session token and none was sent" : "the session token differs from the credential's";
    return refuse("bad-security-token", MESSAGES.token, `key id ${keyId}: ${what}`);
  }

  const canonicalQuery = [...parameters]
    .filter(([name]) => name !== "X-Amz-Signature" && name !== "X-Amz-Security-Token")
    .map(([name, value]) => [uriEncode(name), uriEncode(value)] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([name, value]) => name + "=" + value)
    .join("&");
  const emptyPayload = createHash("sha256").update("").digest("hex");
  const canonicalRequest = [request.method, path, canonicalQuery, "host:" + request.host.trim(), "", "host", emptyPayload].join("\n");
  const credentialScope = [scopeDate, region, service, "aws4_request"].join("/");
  const stringToSign = ["AWS4-HMAC-SHA256", date, credentialScope, createHash("sha256").update(canonicalRequest).digest("hex")].join("\n");
  let key: Buffer = createHmac("sha256", "AWS4" + secret.secret).update(scopeDate).digest();
  for (const part of [region, service, "aws4_request"]) key = createHmac("sha256", key).update(part).digest();
  const expected = Buffer.from(createHmac("sha256", key).update(stringToSign).digest("hex"));
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return refuse("signature-mismatch", MESSAGES.signature, `key id ${keyId}; the canonical request expected was ${JSON.stringify(canonicalRequest)}`);
  }
  return { ok: true, keyId, region };
}

// ------------------------------------------------------------------ the server

const STATUS_TEXT: Record<number, string> = { 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 426: "Upgrade Required" };

/** Answers a refused upgrade on its raw socket and closes it. */
function answer(socket: Duplex, status: number, body: string, extra = ""): void {
  const text = body + "\n";
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status]}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${extra}Connection: close\r\n\r\n${text}`,
  );
}

function offersMqtt(request: IncomingMessage): boolean {
  const header = request.headers["sec-websocket-protocol"];
  return typeof header === "string" && header.split(",").some((protocol) => protocol.trim() === GATEWAY_SUBPROTOCOL);
}

function pathOf(target: string | undefined): string {
  const question = (target ?? "").indexOf("?");
  return question < 0 ? (target ?? "") : (target ?? "").slice(0, question);
}

/** A certificate file the gateway needs, missing: one line naming it and how to make it. */
export class GatewayCertificateError extends Error {}

/** listen() failed (a busy port, an address not on this machine); `code` is Node's. */
export class GatewayListenError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

function readPem(directory: string, name: string): Buffer {
  try {
    return readFileSync(join(directory, name));
  } catch {
    const what = existsSync(directory) ? `${join(directory, name)} is missing` : `the certificates folder ${directory} does not exist`;
    throw new GatewayCertificateError(`${what}: make the development PKI with npm run certs -- --dir ${directory}`);
  }
}

export async function startWssGateway(options: WssGatewayOptions): Promise<RunningWssGateway> {
  const host = options.host ?? "127.0.0.1";
  const log = options.log ?? (() => undefined);
  const now = options.now ?? Date.now;
  const directory = resolve(options.certificateDirectory ?? "certs");
  const keyPem = options.keyPem ?? readPem(directory, DEV_PKI_FILES.brokerKeyPem);
  const chainPem = options.certificateChainPem ?? readPem(directory, DEV_PKI_FILES.brokerChainPem);
  const brokerName = `${options.broker.tls ? "mqtts" : "mqtt"}://${options.broker.host}:${options.broker.port}`;

  const refused = Object.fromEntries(REFUSAL_REASONS.map((reason) => [reason, 0])) as Record<RefusalReason, number>;
  const stats: WssGatewayStats = { accepted: 0, open: 0, refused, brokerFailures: 0, bytesToBroker: 0, bytesToClient: 0 };
  const bridges = new Set<{ ws: WebSocket; tcp: Socket }>();
  const rawSockets = new Set<Duplex>();

  const refusal = (socket: Duplex, request: IncomingMessage, status: number, reason: RefusalReason, body: string, detail = body): void => {
    stats.refused[reason]++;
    log(`refused ${request.socket.remoteAddress}:${request.socket.remotePort} ${reason} (${status}): ${detail}`);
    answer(socket, status, body);
  };

  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: () => GATEWAY_SUBPROTOCOL });
  // ws's own handshake checks (Upgrade, Sec-WebSocket-Key, -Version): answered and counted here.
  wss.on("wsClientError", (error: Error, socket: Duplex, request: IncomingMessage) => refusal(socket, request, 400, "bad-handshake", "Bad Request: " + error.message));

  const server: Server = createServer({ key: keyPem, cert: chainPem });
  server.on("tlsClientError", (error: Error) => log(`TLS handshake failed: ${error.message}`));
  server.on("connection", (socket: Socket) => {
    rawSockets.add(socket);
    socket.once("close", () => rawSockets.delete(socket));
  });
  // A plain HTTPS request, without an upgrade.
  server.on("request", (request, response) => {
    const found = pathOf(request.url) === GATEWAY_PATH;
    const reason: RefusalReason = found ? "not-websocket" : "not-found";
    const body = found ? "Upgrade Required: MQTT over WebSocket only" : "Not Found: the MQTT endpoint is " + GATEWAY_PATH;
    stats.refused[reason]++;
    log(`refused ${request.socket.remoteAddress}:${request.socket.remotePort} ${reason} (${found ? 426 : 404}): ${request.method} ${pathOf(request.url)}`);
    response.writeHead(found ? 426 : 404, { "Content-Type": "text/plain; charset=utf-8", Connection: "close", ...(found ? { Upgrade: "websocket" } : {}) });
    response.end(body + "\n");
  });
  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on("error", () => undefined);
    // The path only: the query holds the token.
    if (request.method !== "GET" || pathOf(request.url) !== GATEWAY_PATH) {
      return refusal(socket, request, 404, "not-found", "Not Found: the MQTT endpoint is GET " + GATEWAY_PATH, `${request.method} ${pathOf(request.url)}`);
    }
    if (!offersMqtt(request)) return refusal(socket, request, 400, "no-mqtt-protocol", "Bad Request: Sec-WebSocket-Protocol must offer mqtt");
    const verdict = verifyPresignedRequest({ method: "GET", target: request.url ?? "", host: request.headers.host ?? "" }, { credentials: options.credentials, nowMs: now(), region: options.region });
    if (!verdict.ok) return refusal(socket, request, 403, verdict.reason, verdict.message, verdict.detail);
    wss.handleUpgrade(request, socket, head, (ws) => bridge(ws, request, verdict.keyId));
  });

  const bridge = (ws: WebSocket, request: IncomingMessage, keyId: string): void => {
    const peer = `${request.socket.remoteAddress}:${request.socket.remotePort}`;
    stats.accepted++;
    stats.open++;
    log(`accepted ${peer} (key id ${keyId}), bridged to ${brokerName}`);
    // Writes before the connection is made wait in the socket, in order: nothing to queue here.
    const tcp: Socket = options.broker.tls
      ? connectTls({ host: options.broker.host, port: options.broker.port, ...options.broker.tls })
      : connectTcp({ host: options.broker.host, port: options.broker.port });
    tcp.setNoDelay(true);
    const pair = { ws, tcp };
    bridges.add(pair);
    let reached = false;
    tcp.setTimeout(BROKER_CONNECT_TIMEOUT_MS, () => tcp.destroy(new Error(`no connection within ${BROKER_CONNECT_TIMEOUT_MS} ms`)));
    tcp.once(options.broker.tls ? "secureConnect" : "connect", () => {
      reached = true;
      tcp.setTimeout(0);
    });
    let closed = false;
    const finish = (why: string): void => {
      if (closed) return;
      closed = true;
      stats.open--;
      bridges.delete(pair);
      log(`closed ${peer}: ${why}`);
    };

    ws.on("message", (data: RawData, isBinary: boolean) => {
      if (!isBinary) return ws.close(1003, "MQTT needs binary frames");
      if (tcp.destroyed || tcp.writableEnded) return; // the broker side is gone: the close follows
      const chunk = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
      stats.bytesToBroker += chunk.length;
      if (!tcp.write(chunk)) ws.pause();
    });
    tcp.on("drain", () => ws.resume());
    tcp.on("data", (chunk: Buffer) => {
      stats.bytesToClient += chunk.length;
      ws.send(chunk, { binary: true }, () => {
        if (ws.bufferedAmount < 65_536) tcp.resume();
      });
      if (ws.bufferedAmount >= 65_536) tcp.pause();
    });
    ws.on("close", (code: number) => {
      tcp.end();
      finish(`the client closed the WebSocket (${code})`);
    });
    ws.on("error", (error: Error) => {
      log(`WebSocket error from ${peer}: ${error.message}`);
      tcp.destroy();
    });
    tcp.on("end", () => {
      if (ws.readyState === ws.OPEN) ws.close(1000);
      finish("the broker ended the connection");
    });
    tcp.on("error", (error: Error) => {
      ws.resume(); // paused for backpressure, it would never read the client's close frame
      if (!reached) stats.brokerFailures++;
      log(`broker ${brokerName} ${reached ? "connection failed" : "cannot be reached"}: ${error.message}`);
      if (ws.readyState === ws.OPEN) ws.close(1011, reached ? "broker connection failed" : "broker unreachable");
      finish("broker error");
    });
    tcp.on("close", () => {
      ws.resume();
      if (ws.readyState === ws.OPEN) ws.close(1000);
    });
  };

  try {
    server.listen(options.port ?? 0, host);
    await once(server, "listening");
  } catch (error) {
    throw new GatewayListenError((error as { code?: string }).code, listenProblem(error, host, options.port ?? 0));
  }
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    host,
    port,
    url: `wss://${host}:${port}${GATEWAY_PATH}`,
    stats,
    close: () => {
      closing ??= (async () => {
        const closed = new Promise<void>((done) => server.close(() => done()));
        for (const { ws, tcp } of bridges) {
          ws.terminate();
          tcp.destroy();
        }
        for (const socket of rawSockets) socket.destroy();
        await closed;
        wss.close();
        log("stopped");
      })();
      return closing;
    },
  };
}

// ------------------------------------------------------------------ as a script

export const WSS_GATEWAY_USAGE = `usage: npm run wss-gateway -- [--host 127.0.0.1] [--port 8443] [--certs certs] [--broker mqtts://127.0.0.1:8883] [--region r] [--credentials file.json] [--quiet]

An AWS IoT-like MQTT over WebSocket endpoint, wss://<host>:<port>/mqtt: it checks the SigV4
presigned query (service iotdevicegateway) as AWS IoT Core does, then bridges the connection byte
for byte to an MQTT broker. Prints its URL on stdout once listening, one line per connection and
refusal on stderr (none with --quiet). Stop it with Ctrl-C.

  --host h             the address to listen on (default 127.0.0.1)
  --port p             the port (default 8443; 0 picks a free one)
  --certs d            the development PKI whose broker certificate is served (default certs;
                       make it with npm run certs)
  --broker url         where to bridge to: mqtt://host:port for plain TCP, or mqtts://host:port for
                       mutual TLS with the development CA and device certificate in --certs, as the
                       embedded broker wants (default mqtts://127.0.0.1:8883, npm run broker's)
  --region r           accept only credentials scoped to this region (default: any)
  --credentials f      a JSON file {"<key id>": {"secret": "...", "sessionToken": "..."}}; without
                       it, one credential from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
                       AWS_SESSION_TOKEN (optional) in the environment
  --quiet              no log lines
  --help               this text

Exit codes: 0 after Ctrl-C, 2 for a bad option or no credentials, 1 when it cannot start (busy
port, missing certificates, an address not on this machine).`;

function brokerTarget(value: string, certificateDirectory: string): BrokerTarget {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--broker must be mqtt://host:port or mqtts://host:port, got ${JSON.stringify(value)}`);
  }
  if ((url.protocol !== "mqtt:" && url.protocol !== "mqtts:") || url.hostname === "" || url.pathname.replace(/^\/$/, "") !== "" || url.search !== "") {
    throw new UsageError(`--broker must be mqtt://host:port or mqtts://host:port, got ${JSON.stringify(value)}`);
  }
  const secure = url.protocol === "mqtts:";
  const host = url.hostname.replace(/^\[(.*)\]$/, "$1");
  const port = url.port === "" ? (secure ? 8883 : 1883) : Number(url.port);
  if (!secure) return { host, port };
  const tls: ConnectionOptions = {
    ca: readPem(certificateDirectory, DEV_PKI_FILES.caCertificatePem),
    cert: readPem(certificateDirectory, DEV_PKI_FILES.deviceCertificatePem),
    key: readPem(certificateDirectory, DEV_PKI_FILES.deviceKeyPem),
    servername: /^[\d.]+$|:/.test(host) ? undefined : host,
  };
  return { host, port, tls };
}

function credentialsFrom(file: string | undefined): Record<string, GatewayCredential> {
  if (file === undefined) {
    const keyId = process.env.AWS_ACCESS_KEY_ID;
    const secret = process.env.AWS_SECRET_ACCESS_KEY;
    if (!keyId || !secret) throw new UsageError("no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or give --credentials file.json");
    const sessionToken = process.env.AWS_SESSION_TOKEN || undefined;
    return { [keyId]: sessionToken === undefined ? { secret } : { secret, sessionToken } };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw new UsageError(code === "ENOENT" ? `--credentials: ${file} does not exist` : code ? `--credentials: cannot read ${file} (${code})` : `--credentials: ${file} is not JSON`);
  }
  const shape = `--credentials: ${file} must hold {"<key id>": {"secret": "...", "sessionToken": "..."}}`;
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed) || Object.keys(parsed).length === 0) throw new UsageError(shape);
  const credentials: Record<string, GatewayCredential> = {};
  for (const [keyId, entry] of Object.entries(parsed)) {
    const { secret, sessionToken } = (entry ?? {}) as { secret?: unknown; sessionToken?: unknown };
    if (keyId === "" || keyId.includes("/") || typeof secret !== "string" || secret === "" || (sessionToken !== undefined && (typeof sessionToken !== "string" || sessionToken === ""))) {
      throw new UsageError(shape);
    }
    credentials[keyId] = sessionToken === undefined ? { secret } : { secret, sessionToken };
  }
  return credentials;
}

async function main(): Promise<void> {
  const values = readCommandLine({
    host: { type: "string" },
    port: { type: "string" },
    certs: { type: "string" },
    broker: { type: "string" },
    region: { type: "string" },
    credentials: { type: "string" },
    quiet: { type: "boolean" },
  });
  helpIfAsked(values, WSS_GATEWAY_USAGE);
  const port = portNumber(values.port ?? "8443", "--port", true);
  const host = values.host ?? "127.0.0.1";
  if (host === "") throw new UsageError("--host needs an address");
  if (values.region !== undefined && !/^[a-z]{2}(-[a-z0-9]+)+-\d+$/.test(values.region)) throw new UsageError(`--region must look like eu-west-1, got ${JSON.stringify(values.region)}`);
  const credentials = credentialsFrom(values.credentials);
  const certificateDirectory = resolve(values.certs ?? "certs");
  let gateway: RunningWssGateway;
  try {
    gateway = await startWssGateway({
      host,
      port,
      credentials,
      broker: brokerTarget(values.broker ?? "mqtts://127.0.0.1:8883", certificateDirectory),
      region: values.region,
      certificateDirectory,
      log: values.quiet ? undefined : (line) => process.stderr.write(`wss-gateway: ${line}\n`),
    });
  } catch (error) {
    if (error instanceof GatewayListenError || error instanceof GatewayCertificateError) throw new CommandError(error.message);
    throw error;
  }
  const stop = (): void => {
    void gateway.close().then(() => process.exit(0));
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  process.stdout.write(`${gateway.url}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void runCommand("wss-gateway", main);
}
