// An embedded MQTT broker with mutual TLS for the desktop simulation and the tests: aedes behind
// node:tls on loopback. Clients must present a certificate signed by the development CA (the
// equivalent of Mosquitto's require_certificate); the certificate's CN is kept as the client's
// identity (use_identity_as_username). It serves the full chain, as Moddable's TLS requires, and
// offers ALPN x-amzn-mqtt-ca and mqtt like AWS IoT on port 443.
//
// As a script: npm run broker -- [--port 8883] [--host 127.0.0.1] [--certs certs]: prints its URL on
// stdout once listening, its log on stderr; a start-up problem is one line and exit code 2 or 1.
import { Aedes, type AedesOptions, type AedesPublishPacket, type Client } from "aedes";
import { EventEmitter, once } from "node:events";
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { join, resolve } from "node:path";
import { createServer as createTlsServer, type TLSSocket, type TlsOptions } from "node:tls";
import { fileURLToPath } from "node:url";
import { DEV_PKI_FILES } from "./certs.ts";
import { CommandError, helpIfAsked, listenProblem, portNumber, readCommandLine, runCommand, UsageError } from "./cli.ts";
import { InspectedStream } from "../hosts/desktop/inspected-stream.ts";
import { isWithinValidity } from "../hosts/desktop/tls-inputs.ts";
import {
  ALERT_BAD_CERTIFICATE,
  ALERT_CERTIFICATE_EXPIRED,
  ALERT_UNKNOWN_CA,
  alertName,
  fatalAlertRecord,
  HANDSHAKE_CERTIFICATE,
  parseCertificateList,
  TlsHandshakeReader,
} from "../hosts/desktop/tls-observer.ts";

export const BROKER_ALPN_PROTOCOLS: readonly string[] = Object.freeze(["x-amzn-mqtt-ca", "mqtt"]);

export interface BrokerOptions {
  /** Loopback by default; the broker is for this machine only. */
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  /** Directory of the development PKI (default certs/). */
  readonly certificateDirectory?: string;
  /** PEM overrides: the chain served (leaf first), its key, and the CA that client certificates must chain to. */
  readonly certificateChainPem?: string | Buffer;
  readonly keyPem?: string | Buffer;
  readonly clientCaPem?: string | Buffer;
  /** Extra node:tls server options, e.g. {minVersion: "TLSv1.3"} to imitate a TLS-1.3-only broker. */
  readonly tls?: TlsOptions;
  readonly aedes?: AedesOptions;
  /** Keep every client publish in `messages` (default true). */
  readonly keepMessages?: boolean;
  /** Receives one line per broker event (connections, TLS failures, publishes). */
  readonly log?: (line: string) => void;
}

export interface ReceivedMessage {
  readonly clientId: string;
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
  readonly dup: boolean;
}

export interface ConnectionInfo {
  readonly alpnProtocol: string | false | null;
  readonly protocol: string | null;
  readonly cipher: string;
  /** The client certificate's CN. */
  readonly identity: string | undefined;
}

export interface BrokerStatistics {
  /** TLS connections that completed the handshake. */
  tlsConnections: number;
  /** Connections refused during the TLS handshake (bad or missing client certificate, ...). */
  tlsFailures: number;
  /** MQTT CONNECTs accepted. */
  clientsConnected: number;
  /** PUBLISH packets received from clients. */
  publishesReceived: number;
  subscribes: number;
  unsubscribes: number;
}

export interface RunningBroker {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly aedes: Aedes;
  readonly statistics: BrokerStatistics;
  readonly messages: ReceivedMessage[];
  readonly connections: ConnectionInfo[];
  /** Emits "publish" (ReceivedMessage), "clientReady" (clientId), "clientDisconnect" (clientId), "tlsError" (Error). */
  readonly events: EventEmitter;
  /** Client ids of the MQTT clients connected now. */
  connectedClientIds(): string[];
  /** Publishes to subscribers as the broker itself. */
  publish(topic: string, payload: string | Buffer, qos?: 0 | 1): Promise<void>;
  /** Drops every open connection (the broker keeps listening); for reconnect tests. */
  dropConnections(): void;
  /** Stops listening, closes every connection and the broker. */
  stop(): Promise<void>;
}

function certificatesInPem(pem: string | Buffer): X509Certificate[] {
  const blocks = String(pem).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((block) => new X509Certificate(block));
}

class ClientCertificateRefused extends Error {
  constructor(
    readonly alert: number,
    reason: string,
  ) {
    super(reason);
  }
}

/**
 * The check an OpenSSL broker (Mosquitto) makes on the client's Certificate message during a
 * TLS 1.2 handshake. node:tls only checks after the handshake and then just closes; a device
 * should see the alert a real broker sends. An empty list is left to OpenSSL, which already
 * answers it with handshake_failure.
 */
function checkClientChain(chain: readonly Buffer[], authorities: readonly X509Certificate[]): void {
  if (chain.length === 0) return;
  let certificates: X509Certificate[];
  try {
    certificates = chain.map((der) => new X509Certificate(der));
  } catch {
    throw new ClientCertificateRefused(ALERT_BAD_CERTIFICATE, "client certificate does not parse");
  }
  if (!certificates.every((certificate) => isWithinValidity(certificate))) {
    throw new ClientCertificateRefused(ALERT_CERTIFICATE_EXPIRED, "client certificate expired or not yet valid");
  }
  for (const [index, certificate] of certificates.entries()) {
    if (authorities.some((authority) => certificate.checkIssued(authority) && certificate.verify(authority.publicKey))) return;
    const issuer = certificates[index + 1];
    if (!issuer || !certificate.checkIssued(issuer) || !certificate.verify(issuer.publicKey)) break;
  }
  throw new ClientCertificateRefused(ALERT_UNKNOWN_CA, "client certificate is not signed by the broker's CA");
}

/** A certificate file the broker needs, or a one-line error naming it and how to make it. */
export class BrokerCertificateError extends Error {}

function readPem(directory: string, name: string): Buffer {
  try {
    return readFileSync(join(directory, name));
  } catch {
    const folder = existsSync(directory) ? `${join(directory, name)} is missing` : `the certificates folder ${directory} does not exist`;
    throw new BrokerCertificateError(`${folder}: make the development PKI with npm run certs -- --dir ${directory}`);
  }
}

/** A listen() that failed (busy port, address not on this machine): `code` is Node's (EADDRINUSE, ...). */
export class BrokerListenError extends Error {
  constructor(
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export async function startBroker(options: BrokerOptions = {}): Promise<RunningBroker> {
  const host = options.host ?? "127.0.0.1";
  const directory = resolve(options.certificateDirectory ?? "certs");
  const log = options.log ?? (() => undefined);
  const keepMessages = options.keepMessages ?? true;

  const statistics: BrokerStatistics = { tlsConnections: 0, tlsFailures: 0, clientsConnected: 0, publishesReceived: 0, subscribes: 0, unsubscribes: 0 };
  const messages: ReceivedMessage[] = [];
  const connections: ConnectionInfo[] = [];
  const events = new EventEmitter();
  const identities = new WeakMap<object, string | undefined>();

  // The certificates first: a missing file must not leave a broker behind that keeps the process alive.
  const clientCaPem = options.clientCaPem ?? readPem(directory, DEV_PKI_FILES.caCertificatePem);
  const serverKeyPem = options.keyPem ?? readPem(directory, DEV_PKI_FILES.brokerKeyPem);
  const serverChainPem = options.certificateChainPem ?? readPem(directory, DEV_PKI_FILES.brokerChainPem);
  const aedes = await Aedes.createBroker(options.aedes);
  aedes.on("clientReady", (client: Client) => {
    statistics.clientsConnected++;
    log(`client ${client.id} connected (identity ${identities.get(client.conn) ?? "none"})`);
    events.emit("clientReady", client.id);
  });
  aedes.on("clientDisconnect", (client: Client) => {
    log(`client ${client.id} disconnected`);
    events.emit("clientDisconnect", client.id);
  });
  aedes.on("clientError", (client: Client, error: Error) => log(`client ${client.id} error: ${error.message}`));
  aedes.on("connectionError", (_client: Client, error: Error) => log(`connection error: ${error.message}`));
  aedes.on("subscribe", (subscriptions, client: Client) => {
    statistics.subscribes++;
    log(`client ${client.id} subscribed to ${subscriptions.map((subscription) => `${subscription.topic} (QoS ${subscription.qos})`).join(", ")}`);
  });
  aedes.on("unsubscribe", (topics: string[], client: Client) => {
    statistics.unsubscribes++;
    log(`client ${client.id} unsubscribed from ${topics.join(", ")}`);
  });
  aedes.on("publish", (packet: AedesPublishPacket, client: Client | null) => {
    if (!client) return; // the broker's own $SYS and forwarded messages
    statistics.publishesReceived++;
    const message: ReceivedMessage = {
      clientId: client.id,
      topic: packet.topic,
      payload: Buffer.from(packet.payload),
      qos: packet.qos,
      retain: packet.retain,
      dup: packet.dup,
    };
    if (keepMessages) messages.push(message);
    log(`client ${client.id} published ${message.payload.length} bytes to ${message.topic} (QoS ${message.qos}${message.dup ? ", dup" : ""})`);
    events.emit("publish", message);
  });

  const tcpSockets = new Set<Socket>();
  const authorities = certificatesInPem(clientCaPem);
  const tlsServer = createTlsServer({
    key: serverKeyPem,
    cert: serverChainPem,
    ca: clientCaPem,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: [...BROKER_ALPN_PROTOCOLS],
    ...options.tls,
  });
  tlsServer.on("secureConnection", (socket: TLSSocket) => {
    statistics.tlsConnections++;
    const identity = socket.getPeerCertificate()?.subject?.CN;
    identities.set(socket, Array.isArray(identity) ? identity.join(",") : identity);
    connections.push({
      alpnProtocol: socket.alpnProtocol,
      protocol: socket.getProtocol(),
      cipher: socket.getCipher().name,
      identity: identities.get(socket),
    });
    aedes.handle(socket);
  });
  tlsServer.on("tlsClientError", (error: Error, socket: TLSSocket) => {
    socket.destroy();
    statistics.tlsFailures++;
    log(`TLS handshake refused: ${error instanceof ClientCertificateRefused ? `${error.message} (alert ${alertName(error.alert)})` : error.message}`);
    events.emit("tlsError", error);
  });
  // TCP comes first so the client's side of the handshake can be read on its way to node:tls.
  const server = createTcpServer((tcp) => {
    tcpSockets.add(tcp);
    tcp.once("close", () => tcpSockets.delete(tcp));
    tcp.on("error", () => undefined); // reported through node:tls
    let refusedAlready = false;
    const reader = new TlsHandshakeReader({
      message: (type, body) => {
        if (type === HANDSHAKE_CERTIFICATE) checkClientChain(parseCertificateList(body), authorities);
      },
      alert: () => undefined,
    });
    const stream: InspectedStream = new InspectedStream(tcp, (chunk) => {
      if (refusedAlready) return false;
      try {
        reader.observe(chunk);
        return true;
      } catch (error) {
        if (!(error instanceof ClientCertificateRefused)) throw error;
        refusedAlready = true;
        tcp.end(fatalAlertRecord(error.alert));
        // node:tls passes this error on to "tlsClientError", where the refusal is counted once.
        stream.destroy(error);
        return false;
      }
    });
    stream.on("error", () => undefined); // reported through node:tls
    tlsServer.emit("connection", stream);
  });
  try {
    server.listen(options.port ?? 0, host);
    await once(server, "listening");
  } catch (error) {
    await new Promise<void>((done) => aedes.close(() => done()));
    const code = (error as { code?: string }).code;
    throw new BrokerListenError(code, listenProblem(error, host, options.port ?? 0));
  }
  const port = (server.address() as AddressInfo).port;

  let stopping: Promise<void> | undefined;
  return {
    host,
    port,
    url: `mqtts://${host}:${port}`,
    aedes,
    statistics,
    messages,
    connections,
    events,
    connectedClientIds: () => Object.keys((aedes as unknown as { clients: Record<string, unknown> }).clients),
    publish: (topic, payload, qos = 0) =>
      new Promise<void>((done, fail) => {
        aedes.publish({ cmd: "publish", topic, payload: Buffer.from(payload), qos, retain: false, dup: false }, (error?: Error) => (error ? fail(error) : done()));
      }),
    dropConnections: () => {
      for (const tcp of tcpSockets) tcp.destroy();
    },
    stop: () => {
      stopping ??= (async () => {
        const closed = new Promise<void>((done) => server.close(() => done()));
        for (const tcp of tcpSockets) tcp.destroy();
        await closed;
        await new Promise<void>((done) => aedes.close(() => done()));
        log("stopped");
      })();
      return stopping;
    },
  };
}

export const BROKER_USAGE = `usage: npm run broker -- [--host 127.0.0.1] [--port 8883] [--certs certs] [--quiet]

The embedded mutual-TLS MQTT broker alone (aedes behind node:tls), for the Moddable simulator or a
device on the LAN. Clients must present a certificate signed by the development CA in --certs.
Prints its URL on stdout once listening, one line per connection, subscription and publish on
stderr (none with --quiet). Stop it with Ctrl-C.

  --host h     the address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --port p     the port (default 8883; 0 picks a free one)
  --certs d    the development PKI (default certs; make it with npm run certs)
  --quiet      no log lines
  --help       this text

Exit codes: 0 after Ctrl-C, 2 for a bad option, 1 when it cannot start (busy port, missing
certificates, an address not on this machine).`;

async function main(): Promise<void> {
  const values = readCommandLine({
    host: { type: "string" },
    port: { type: "string" },
    certs: { type: "string" },
    quiet: { type: "boolean" },
  });
  helpIfAsked(values, BROKER_USAGE);
  const port = portNumber(values.port ?? "8883", "--port", true);
  const host = values.host ?? "127.0.0.1";
  if (host === "") throw new UsageError("--host needs an address");
  const certificateDirectory = resolve(values.certs ?? "certs");
  let broker: RunningBroker;
  try {
    broker = await startBroker({
      host,
      port,
      certificateDirectory,
      keepMessages: false,
      log: values.quiet ? undefined : (line) => process.stderr.write(`broker: ${line}\n`),
    });
  } catch (error) {
    if (error instanceof BrokerListenError || error instanceof BrokerCertificateError) throw new CommandError(error.message);
    throw error;
  }
  const stop = (): void => {
    void broker.stop().then(() => process.exit(0));
  };
  // Before the URL: whoever reads it may stop the broker at once.
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  process.stdout.write(`${broker.url}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  void runCommand("broker", main);
}
