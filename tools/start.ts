// `npm start`: the device app simulated on the desktop. With no endpoint it creates the development
// PKI (first run), starts the embedded mutual-TLS broker on loopback, runs main.ts against it and
// shows its log as the serial console would. With --endpoint it connects to that broker instead,
// with the certificate set in --certs (see `npm run import-aws`).
//
//   npm start
//   npm start -- --endpoint abc123-ats.iot.eu-west-1.amazonaws.com --port 8883 --certs certs-aws --client-id my-thing
//   npm start -- --run-for 20            (stop after 20 s; also IOTLINK_RUN_FOR)
//   npm start -- --websocket             (MQTT over WebSocket with SigV4, through the WSS gateway)
// Any manifest config value can be overridden as IOTLINK_CONFIG_<name>=value (mcconfig's name=value).
//
// A problem is one line on stderr (tools/cli.ts): exit code 2 for a flag or setting the user got
// wrong, 1 for a failure (busy port, a run that never came online). Otherwise the app's exit code.
import { spawn } from "node:child_process";
import { randomBytes, X509Certificate } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { parseLogLine } from "../modules/logline.ts";
import { startAwsEmulator, type RunningAwsEmulator } from "./aws-emulator.ts";
import { BrokerCertificateError, BrokerListenError, startBroker, type RunningBroker } from "./broker.ts";
import { DEV_PKI_FILES, ensureDevPki, issueCertificate, pemCertificateToDer, pemKeyToPkcs8Der } from "./certs.ts";
import { ensureFlashPartitions } from "./flash-partitions.ts";
import { CommandError, EXIT_FAILURE, exitWithProblem, helpIfAsked, portNumber, readCommandLine, UsageError } from "./cli.ts";
import { buildDesktopApp } from "./desktop-build.ts";
import { loadManifestClosure } from "./manifest.ts";
import { GatewayCertificateError, GatewayListenError, startWssGateway, type RunningWssGateway } from "./wss-gateway.ts";

export const START_USAGE = `usage: npm start -- [--run-for SECONDS] [--quiet] [--port P] [--certs DIR] [--client-id ID] [--websocket] [--persist] [--provision]
       npm start -- --endpoint HOST [--port 8883] [--certs DIR] [--client-id ID] [--run-for SECONDS] [--websocket]

Runs the device app (main.ts) on the desktop and prints its log as the serial console would. With no
--endpoint it makes the development PKI in --certs (first run), starts an embedded mutual-TLS broker
on loopback with the AWS IoT emulator beside it (Device Shadow and Jobs, tools/aws-emulator.ts), and
shows the app's remote paths: the commands ping and status after 3 and 6 seconds, a desired telemetry
interval set in the shadow after 4 (and a setting the device refuses), and the jobs report-status and
set-interval queued after 8 and 11. Stop it with Ctrl-C.

With --websocket the app connects with MQTT over WebSocket signed with SigV4 (transport=websocket),
as to AWS IoT Core on port 443: npm start also runs the AWS IoT-like WSS gateway (tools/wss-gateway.ts,
TLS from the development PKI) with credentials made for the run, bridged to the embedded broker.
With --endpoint, the app's credentials come from IOTLINK_CONFIG_accessKeyId, _secretAccessKey and
_sessionToken (and _region when the host does not name it).

  --run-for S      stop after S seconds (the app disconnects and prints done)     IOTLINK_RUN_FOR
  --quiet          no broker log lines
  --port P         the embedded broker's port (default: a free one), or the port  IOTLINK_PORT
                   of --endpoint (default 8883, 443 with --websocket)
  --certs DIR      the certificates (default certs)                               IOTLINK_CERTS
  --client-id ID   the MQTT client id (default: the manifest's, iotlink-device)   IOTLINK_CLIENT_ID
  --endpoint HOST  a broker of your own instead of the embedded one               IOTLINK_ENDPOINT
  --websocket      MQTT over WebSocket with SigV4 (default: MQTT over TLS)        IOTLINK_WEBSOCKET=1
  --persist        keep the offline queue in flash (persist=true); the desktop's
                   flash partitions are files in build/flash                      IOTLINK_FLASH=DIR
  --provision      fleet provisioning by claim (provision=iotlink-fleet): the app
                   starts with a claim certificate made in --certs, gets its own
                   identity from the emulator and keeps it in flash (build/flash);
                   the next run uses it (rm -r build/flash to provision again)
  --help           this text

Every setting of the app (the config of manifest.json, see docs/device-app.md) can be given as
IOTLINK_CONFIG_<name>=value, as mcconfig's name=value: IOTLINK_CONFIG_telemetryIntervalMs=1000 npm start

Exit codes: the app's (0 after --run-for or Ctrl-C); 2 for a bad flag or setting; 1 when the broker
cannot start, or a --run-for run never came online.`;

/** The provisioning template --provision uses (the emulator's; thing names are <template>-<serialNumber>). */
const PROVISIONING_TEMPLATE = "iotlink-fleet";

/** The fleet's claim certificate and key in `directory` (claim-cert.der, claim-key.der), from the development CA, made once. */
function ensureClaimCertificate(directory: string): void {
  if (existsSync(join(directory, "claim-cert.der")) && existsSync(join(directory, "claim-key.der"))) return;
  const issuer = { certificatePem: join(directory, DEV_PKI_FILES.caCertificatePem), keyPem: join(directory, DEV_PKI_FILES.caKeyPem) };
  issueCertificate({ certificatePem: join(directory, "claim-cert.pem"), keyPem: join(directory, "claim-key.pem"), commonName: "iotlink-claim", profile: "client", issuer });
  pemCertificateToDer(join(directory, "claim-cert.pem"), join(directory, "claim-cert.der"));
  pemKeyToPkcs8Der(join(directory, "claim-key.pem"), join(directory, "claim-key.der"));
  chmodSync(join(directory, "claim-key.pem"), 0o600);
  chmodSync(join(directory, "claim-key.der"), 0o600);
  say("made the fleet's claim certificate in " + directory + " (claim-cert.der, claim-key.der)");
}

const DEMO_COMMANDS = [
  [3000, "ping"],
  [6000, "status"],
] as const;

/** When the demo sets the shadow's desired state (a setting the device takes, and one it refuses). */
const DEMO_DESIRED_AT_MS = 4000;
const DEMO_DESIRED = { telemetryIntervalMs: 2000, ledColour: "blue" } as const;
/** The demo's jobs, each queued for the device at its time. */
const DEMO_JOBS = [
  [8000, "demo-report-status", { operation: "report-status" }],
  [11000, "demo-set-interval", { operation: "set-interval", telemetryIntervalMs: 3000 }],
] as const;

/** How long a --run-for stop is given to finish (the app disconnects gracefully) before it is ended. */
const STOP_GRACE_MS = 10_000;

/** Set when whoever read our output went away (`npm start | head`): nothing more is written. */
let outputClosed = false;
const onOutputClosed: Array<() => void> = [];
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
  if (outputClosed) return;
  outputClosed = true;
  for (const then of onOutputClosed) then();
});

function write(line: string): void {
  if (!outputClosed) process.stdout.write(line + "\n");
}

function say(line: string): void {
  write("[desktop] " + line);
}

interface Given {
  /** As the user wrote it: "--port" or "IOTLINK_PORT". */
  readonly name: string;
  readonly value: string;
}

/** A flag, else its environment variable, else nothing; remembers which one the user gave. */
function given(flagValue: string | undefined, flag: string, variable: string): Given | undefined {
  if (flagValue !== undefined) return { name: flag, value: flagValue };
  const fromEnvironment = process.env[variable];
  return fromEnvironment !== undefined && fromEnvironment !== "" ? { name: variable, value: fromEnvironment } : undefined;
}

/** The app's settings: the manifest's config keys that take a value (objects such as tls come from the manifest only). */
function appSettings(config: Record<string, unknown>): string[] {
  return Object.keys(config).filter((key) => config[key] === null || typeof config[key] !== "object");
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** Refuses IOTLINK_CONFIG_<name> for a name that is not a setting, by name, with the nearest one. */
function checkSettingNames(settings: readonly string[]): void {
  for (const variable of Object.keys(process.env)) {
    if (!variable.startsWith("IOTLINK_CONFIG_")) continue;
    const name = variable.slice("IOTLINK_CONFIG_".length);
    if (settings.includes(name)) continue;
    const nearest = settings.find((setting) => setting.toLowerCase() === name.toLowerCase()) ?? settings.find((setting) => editDistance(setting.toLowerCase(), name.toLowerCase()) <= 2);
    const hint = nearest ? `did you mean IOTLINK_CONFIG_${nearest}?` : "the settings are the config keys of manifest.json, listed in docs/device-app.md";
    throw new UsageError(`${variable} is not a setting of the app (${hint})`);
  }
}

/** A bare host name or address, as the transport takes it (no scheme, port or path). */
function checkEndpoint(endpoint: Given): string {
  const host = endpoint.value;
  if (/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host) || /^[0-9A-Fa-f:.]+$/.test(host) && host.includes(":")) return host;
  throw new UsageError(`${endpoint.name} takes a host name or address (no scheme, port or path), got ${JSON.stringify(host)}; the port goes in --port`);
}

/** Seconds above 0, as milliseconds (what runForMs takes). */
function runForMs(runFor: Given): number {
  const seconds = /^\d+(\.\d+)?$/.test(runFor.value) ? Number(runFor.value) : Number.NaN;
  const ms = Math.round(seconds * 1000);
  if (!(ms >= 1 && ms <= 0x7fffffff)) throw new UsageError(`${runFor.name} must be a number of seconds above 0, got ${JSON.stringify(runFor.value)}`);
  return ms;
}

function isFlagOn(value: string | undefined): boolean | undefined {
  if (value === undefined || value === "") return undefined;
  if (value === "true" || value === "1") return true;
  if (value === "false" || value === "0") return false;
  return undefined; // the app names a bad value itself
}

/** Against a broker of the user's own: the folder and the resources the app will read must be there (the CA alone over WebSocket). */
function checkDeviceResources(certs: Given, directory: string, websocket: boolean): void {
  if (!existsSync(directory) || !statSync(directory).isDirectory()) {
    throw new UsageError(`${certs.name} ${certs.value}: no such folder (npm run import-aws makes one from AWS IoT downloads, npm run certs the development PKI)`);
  }
  const setting = (name: string): string | undefined => process.env["IOTLINK_CONFIG_" + name] || undefined;
  const plaintext = !websocket && isFlagOn(setting("plaintext")) === true;
  const mutual = !plaintext && !websocket && isFlagOn(setting("mutualTls")) !== false;
  const needed = [
    ...(plaintext ? [] : [setting("caResource") ?? DEV_PKI_FILES.caCertificateDer]),
    ...(mutual ? [setting("certificateResource") ?? DEV_PKI_FILES.deviceCertificateDer, setting("keyResource") ?? DEV_PKI_FILES.deviceKeyDer] : []),
  ];
  const missing = needed.filter((name) => !existsSync(join(directory, name)));
  if (missing.length > 0) {
    throw new UsageError(`${certs.name} ${certs.value} has no ${missing.join(", ")} (the device's resources: npm run import-aws -- ... --out ${certs.value} makes them)`);
  }
}

function sameCertificate(derPath: string, pemPath: string): boolean {
  try {
    return new X509Certificate(readFileSync(derPath)).raw.equals(new X509Certificate(readFileSync(pemPath)).raw);
  } catch {
    return false;
  }
}

/**
 * For the embedded broker, the folder must hold the development PKI, or nothing yet. Device
 * credentials from elsewhere (AWS IoT's, imported there) are never overwritten, and a folder that
 * mixes them with the development PKI (the broker's CA is not the device's) is refused with the way back.
 */
function checkDevelopmentFolder(certs: Given, directory: string): void {
  const at = (name: string): string => join(directory, name);
  const deviceFiles = [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.deviceCertificateDer, DEV_PKI_FILES.deviceKeyDer].filter((name) => existsSync(at(name)));
  if (deviceFiles.length === 0) return;
  if (!existsSync(at(DEV_PKI_FILES.caKeyPem)) || !existsSync(at(DEV_PKI_FILES.caCertificatePem))) {
    throw new UsageError(
      `${certs.name} ${certs.value} holds device credentials (${deviceFiles.join(", ")}) but not the development PKI: ` +
        `use them against their broker with --endpoint HOST, or give the embedded broker another folder (the default is certs)`,
    );
  }
  const foreign = [
    [DEV_PKI_FILES.caCertificateDer, DEV_PKI_FILES.caCertificatePem],
    [DEV_PKI_FILES.deviceCertificateDer, DEV_PKI_FILES.deviceCertificatePem],
  ].filter(([der, pem]) => existsSync(at(der!)) && existsSync(at(pem!)) && !sameCertificate(at(der!), at(pem!)));
  if (foreign.length > 0) {
    throw new CommandError(
      `${certs.value}/${foreign.map(([der]) => der).join(" and ")} are not the development PKI's (imported from AWS IoT?), so the embedded broker would refuse the app: ` +
        `move ca.der, device-cert.der and device-key.der to another folder (e.g. certs-aws, for --endpoint HOST --certs certs-aws), then npm run certs -- --force --dir ${certs.value}`,
    );
  }
}

async function main(): Promise<void> {
  const values = readCommandLine({
    endpoint: { type: "string" },
    port: { type: "string" },
    certs: { type: "string" },
    "client-id": { type: "string" },
    "run-for": { type: "string" },
    quiet: { type: "boolean" },
    websocket: { type: "boolean" },
    persist: { type: "boolean" },
    provision: { type: "boolean" },
  });
  helpIfAsked(values, START_USAGE);

  const manifest = loadManifestClosure(resolve(import.meta.dirname, "..", "manifest.json"));
  checkSettingNames(appSettings(manifest.config));

  const endpoint = given(values.endpoint, "--endpoint", "IOTLINK_ENDPOINT");
  const port = given(values.port, "--port", "IOTLINK_PORT");
  const certs = given(values.certs, "--certs", "IOTLINK_CERTS") ?? { name: "--certs", value: "certs" };
  const clientId = given(values["client-id"], "--client-id", "IOTLINK_CLIENT_ID");
  const runFor = given(values["run-for"], "--run-for", "IOTLINK_RUN_FOR");
  if (values.endpoint === "") throw new UsageError("--endpoint needs a host name");
  if (values["client-id"] === "") throw new UsageError("--client-id needs a client id");
  const host = endpoint ? checkEndpoint(endpoint) : undefined;
  const portNumberGiven = port ? portNumber(port.value, port.name, !endpoint) : undefined;
  const stopAfterMs = runFor ? runForMs(runFor) : undefined;
  const certificates = resolve(certs.value);
  const websocket = values.websocket === true || isFlagOn(process.env.IOTLINK_WEBSOCKET) === true;
  const provision = values.provision === true;
  if (provision && host) throw new UsageError("--provision runs against the embedded broker and its emulator; against --endpoint HOST give IOTLINK_CONFIG_provision=<template> and the claim certificate's resources");
  if (provision && websocket) throw new UsageError("--provision needs mutual TLS (the claim certificate): not with --websocket");

  // What npm start sets over the user's IOTLINK_CONFIG_*, each said once (a secret's value never).
  const settings: Record<string, string> = {};
  const set = (name: string, value: string, why: string, secret = false): void => {
    const before = process.env["IOTLINK_CONFIG_" + name];
    if (before !== undefined && before !== value) say(secret ? `IOTLINK_CONFIG_${name} is replaced (${why})` : `IOTLINK_CONFIG_${name}=${before} is replaced by ${value} (${why})`);
    settings["IOTLINK_CONFIG_" + name] = value;
  };
  if (websocket) set("transport", "websocket", values.websocket ? "--websocket" : "IOTLINK_WEBSOCKET");

  let broker: RunningBroker | undefined;
  let emulator: RunningAwsEmulator | undefined;
  let gateway: RunningWssGateway | undefined;
  if (host) {
    checkDeviceResources(certs, certificates, websocket);
    set("endpoint", host, `${endpoint!.name} ${host}`);
    const userPort = process.env.IOTLINK_CONFIG_port;
    const defaultPort = websocket ? "443" : "8883";
    if (portNumberGiven !== undefined) set("port", String(portNumberGiven), `${port!.name} ${portNumberGiven}`);
    else if (userPort === undefined || userPort === "") set("port", defaultPort, `the default port of --endpoint${websocket ? " with --websocket" : ""}`);
    say(`connecting to ${host}:${settings.IOTLINK_CONFIG_port ?? userPort} ${websocket ? "with MQTT over WebSocket (SigV4) and the CA" : "with the certificates"} in ${certificates}`);
  } else {
    checkDevelopmentFolder(certs, certificates);
    const pki = ensureDevPki({ directory: certificates });
    if (pki.created) say("created the development PKI in " + pki.directory);
    try {
      broker = await startBroker({
        port: portNumberGiven ?? 0,
        certificateDirectory: certificates,
        keepMessages: false,
        log: values.quiet ? undefined : (line) => say("broker: " + line),
      });
    } catch (error) {
      if (error instanceof BrokerListenError || error instanceof BrokerCertificateError) throw new CommandError(error.message);
      throw error;
    }
    set("endpoint", "localhost", "npm start runs the app against its embedded broker; give --endpoint HOST for another");
    const issuer = { certificatePem: join(certificates, DEV_PKI_FILES.caCertificatePem), keyPem: join(certificates, DEV_PKI_FILES.caKeyPem) };
    try {
      emulator = await startAwsEmulator({
        url: `mqtts://localhost:${broker.port}`,
        mqtt: {
          ca: readFileSync(join(certificates, DEV_PKI_FILES.caCertificatePem)),
          cert: readFileSync(join(certificates, DEV_PKI_FILES.deviceCertificatePem)),
          key: readFileSync(join(certificates, DEV_PKI_FILES.deviceKeyPem)),
          rejectUnauthorized: true,
        },
        // Fleet provisioning: new certificates from the development CA, which the embedded broker trusts.
        provisioning: { templates: { [PROVISIONING_TEMPLATE]: {} }, issuer },
        log: values.quiet ? undefined : (line) => say(line),
      });
    } catch (error) {
      await broker.stop();
      throw new CommandError(`the AWS IoT emulator could not start: ${(error as Error).message}`);
    }
    say(`embedded broker (mutual TLS) listening on localhost:${broker.port}, with the AWS IoT emulator (Device Shadow, Jobs)`);
    if (!websocket) {
      set("port", String(broker.port), "the embedded broker's port");
    } else {
      // Temporary credentials made for this run (a key id, a secret and a session token, as STS gives
      // them); the gateway knows them, the app gets them as its settings, and neither is ever printed.
      const accessKeyId = "ASIA" + randomBytes(12).toString("base64").replace(/[^A-Z0-9]/gi, "").toUpperCase().padEnd(16, "X").slice(0, 16);
      const secretAccessKey = randomBytes(30).toString("base64");
      const sessionToken = randomBytes(96).toString("base64");
      const region = "eu-west-1";
      try {
        gateway = await startWssGateway({
          port: 0,
          credentials: { [accessKeyId]: { secret: secretAccessKey, sessionToken } },
          region,
          broker: {
            host: broker.host,
            port: broker.port,
            tls: {
              ca: readFileSync(join(certificates, DEV_PKI_FILES.caCertificatePem)),
              cert: readFileSync(join(certificates, DEV_PKI_FILES.deviceCertificatePem)),
              key: readFileSync(join(certificates, DEV_PKI_FILES.deviceKeyPem)),
              servername: "localhost",
            },
          },
          certificateDirectory: certificates,
          log: values.quiet ? undefined : (line) => say("wss-gateway: " + line),
        });
      } catch (error) {
        await emulator.stop();
        await broker.stop();
        if (error instanceof GatewayListenError || error instanceof GatewayCertificateError) throw new CommandError(error.message);
        throw error;
      }
      set("port", String(gateway.port), "the WSS gateway's port");
      set("accessKeyId", accessKeyId, "credentials made for this run");
      set("secretAccessKey", secretAccessKey, "credentials made for this run", true);
      set("sessionToken", sessionToken, "credentials made for this run", true);
      set("region", region, "the WSS gateway's region");
      say(`WSS gateway (AWS IoT-like, SigV4) listening on wss://localhost:${gateway.port}/mqtt, bridged to the embedded broker; the app signs in with credentials made for this run`);
    }
  }
  // The desktop's flash (persist, provision): files that outlive the run, as flash outlives a reboot.
  let flashDirectory = process.env.IOTLINK_FLASH || undefined;
  if (values.persist || provision) {
    flashDirectory = ensureFlashPartitions(flashDirectory ?? resolve(import.meta.dirname, "..", "build", "flash"));
    if (values.persist) set("persist", "true", "--persist");
    say(`flash partitions (the offline queue${provision ? ", the identity" : ""}) are kept in ${flashDirectory}`);
  }
  if (provision) {
    ensureClaimCertificate(certificates);
    set("provision", PROVISIONING_TEMPLATE, "--provision");
    if (!process.env.IOTLINK_CONFIG_serialNumber) settings.IOTLINK_CONFIG_serialNumber = "0001";
    if (!clientId && !process.env.IOTLINK_CONFIG_clientId) settings.IOTLINK_CONFIG_clientId = "iotlink-claim";
  }
  // The emulator beside the embedded broker serves the Device Shadow and Jobs: the app uses them, unless told otherwise.
  if (broker) {
    for (const name of ["shadow", "jobs"]) if (!process.env["IOTLINK_CONFIG_" + name]) settings["IOTLINK_CONFIG_" + name] = "true";
  }
  if (clientId) set("clientId", clientId.value, `${clientId.name} ${clientId.value}`);
  if (stopAfterMs !== undefined) set("runForMs", String(stopAfterMs), `${runFor!.name} ${runFor!.value}`);

  const environment: NodeJS.ProcessEnv = { ...process.env, IOTLINK_RESOURCES: certificates, ...(flashDirectory ? { IOTLINK_FLASH: flashDirectory } : {}), ...settings };
  const bundle = await buildDesktopApp();
  const app = spawn(process.execPath, ["--enable-source-maps", bundle], { env: environment, stdio: ["ignore", "pipe", "inherit"] });

  // The app's console passes through unchanged; its log lines say whether it ever came online.
  let cameOnline = false;
  let lastError: string | undefined;
  let done = false;
  const appConsole = createInterface({ input: app.stdout, crlfDelay: Infinity });
  appConsole.on("line", (line) => {
    write(line);
    const parsed = parseLogLine(line);
    if (!parsed) return;
    if (parsed.event === "online") cameOnline = true;
    else if (parsed.event === "error") lastError = `${parsed.fields.code}: ${parsed.fields.message}`;
    else if (parsed.event === "done") done = true;
  });
  const consoleClosed = new Promise<void>((closed) => appConsole.once("close", () => closed()));

  // Against the embedded broker, show the command path too: ask the device for a ping and its
  // status, and show what it answers on its reply topic.
  const demo: NodeJS.Timeout[] = [];
  if (broker) {
    // The app's own topics: an empty override means the manifest's value, as in main.ts.
    const setting = (name: string): string => environment["IOTLINK_CONFIG_" + name] || String(manifest.config[name]);
    // A provisioned device goes on as the thing the template names after its serial number.
    const deviceId = provision ? `${PROVISIONING_TEMPLATE}-${setting("serialNumber")}` : setting("clientId");
    const prefix = setting("topicPrefix") + "/" + deviceId;
    const commands = prefix + "/cmd";
    const replies = prefix + "/reply";
    const thing = environment.IOTLINK_CONFIG_thingName || deviceId;
    const shadowUpdate = `$aws/things/${thing}/shadow/update`;
    const jobUpdate = new RegExp(`^\\$aws/things/${thing.replace(/[^A-Za-z0-9]/g, "\\$&")}/jobs/([^/]+)/update$`);
    broker.events.on("publish", (message: { topic: string; payload: Buffer }) => {
      if (message.topic === replies) say(`device replied on ${replies}: ${message.payload.toString()}`);
      else if (message.topic === shadowUpdate) say(`device reported in its shadow: ${JSON.stringify(JSON.parse(message.payload.toString()).state)}`);
      else {
        const job = jobUpdate.exec(message.topic);
        if (job) {
          const update = JSON.parse(message.payload.toString());
          say(`device reported job ${job[1]} ${update.status}${update.statusDetails ? " " + JSON.stringify(update.statusDetails) : ""}`);
        }
      }
    });
    const service = emulator!.service;
    demo.push(
      setTimeout(() => {
        say(`the shadow's desired state is set to ${JSON.stringify(DEMO_DESIRED)}`);
        service.updateShadowDocument(thing, "", { state: { desired: DEMO_DESIRED } });
      }, DEMO_DESIRED_AT_MS),
    );
    for (const [delay, jobId, document] of DEMO_JOBS) {
      demo.push(
        setTimeout(() => {
          say(`job ${jobId} queued for ${thing}: ${JSON.stringify(document)}`);
          service.createJob(jobId, document, [thing]);
        }, delay),
      );
    }
    for (const [delay, command] of DEMO_COMMANDS) {
      demo.push(
        setTimeout(() => {
          say(`broker publishes "${command}" to ${commands}`);
          void broker?.publish(commands, command, 1);
        }, delay),
      );
    }
  }

  let stopping = false;
  const stop = async (code: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      for (const timer of demo) clearTimeout(timer);
      await consoleClosed;
      await gateway?.close();
      await emulator?.stop();
      await broker?.stop();
    }
    if (done && !cameOnline) {
      const ran = Number(environment.IOTLINK_CONFIG_runForMs) / 1000;
      process.stderr.write(`start: the app never came online in ${ran} s${lastError ? ` (last error ${lastError})` : ""}\n`);
      process.exit(code === 0 ? EXIT_FAILURE : code);
    }
    process.exit(code);
  };
  // The reader went away: stop the app and the broker as Ctrl-C does (exit 0).
  onOutputClosed.push(() => app.kill("SIGTERM"));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      app.kill("SIGTERM");
    });
  }
  // After `done` the app has disconnected; it exits when its last socket has closed. Bounded.
  if (stopAfterMs !== undefined) setTimeout(() => app.kill("SIGTERM"), stopAfterMs + STOP_GRACE_MS).unref();
  app.on("exit", (code, signal) => void stop(code ?? (signal ? 0 : 1)));
}

try {
  await main();
} catch (error) {
  exitWithProblem("start", error);
}
