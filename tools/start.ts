// `npm start`: the device app simulated on the desktop. With no endpoint it creates the development
// PKI (first run), starts the embedded mutual-TLS broker on loopback, runs main.ts against it and
// shows its log as the serial console would. With --endpoint it connects to that broker instead,
// with the certificate set in --certs (see `npm run import-aws`).
//
//   npm start
//   npm start -- --endpoint abc123-ats.iot.eu-west-1.amazonaws.com --port 8883 --certs certs/aws --client-id my-thing
//   npm start -- --run-for 20            (stop after 20 s; also IOTLINK_RUN_FOR)
// Any manifest config value can be overridden as IOTLINK_CONFIG_<name>=value (mcconfig's name=value).
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { startBroker, type RunningBroker } from "./broker.ts";
import { ensureDevPki } from "./certs.ts";
import { buildDesktopApp } from "./desktop-build.ts";
import { loadManifestClosure } from "./manifest.ts";

const { values } = parseArgs({
  options: {
    endpoint: { type: "string", default: process.env.IOTLINK_ENDPOINT },
    port: { type: "string", default: process.env.IOTLINK_PORT },
    certs: { type: "string", default: process.env.IOTLINK_CERTS ?? "certs" },
    "client-id": { type: "string", default: process.env.IOTLINK_CLIENT_ID },
    "run-for": { type: "string", default: process.env.IOTLINK_RUN_FOR },
    quiet: { type: "boolean", default: false },
  },
});

const certificates = resolve(values.certs as string);
const environment: NodeJS.ProcessEnv = { ...process.env, IOTLINK_RESOURCES: certificates };
let broker: RunningBroker | undefined;

function say(line: string): void {
  process.stdout.write("[desktop] " + line + "\n");
}

if (values.endpoint) {
  environment.IOTLINK_CONFIG_endpoint = values.endpoint;
  environment.IOTLINK_CONFIG_port = values.port ?? "8883";
  say(`connecting to ${values.endpoint}:${environment.IOTLINK_CONFIG_port} with the certificates in ${certificates}`);
} else {
  const pki = ensureDevPki({ directory: certificates });
  if (pki.created) say("created the development PKI in " + pki.directory);
  broker = await startBroker({
    port: values.port ? Number(values.port) : 0,
    certificateDirectory: certificates,
    log: values.quiet ? undefined : (line) => say("broker: " + line),
  });
  environment.IOTLINK_CONFIG_endpoint = "localhost";
  environment.IOTLINK_CONFIG_port = String(broker.port);
  say(`embedded broker (mutual TLS) listening on localhost:${broker.port}`);
}
if (values["client-id"]) environment.IOTLINK_CONFIG_clientId = values["client-id"];
if (values["run-for"]) environment.IOTLINK_CONFIG_runForMs = String(Math.round(Number(values["run-for"]) * 1000));

const bundle = await buildDesktopApp();
const app = spawn(process.execPath, ["--enable-source-maps", bundle], { env: environment, stdio: ["ignore", "inherit", "inherit"] });

// Against the embedded broker, show the command path too: ask the device for a ping and its status.
const demo: NodeJS.Timeout[] = [];
if (broker) {
  // The app's own topics: an empty override means the manifest's value, as in main.ts.
  const { config } = loadManifestClosure(resolve(import.meta.dirname, "..", "manifest.json"));
  const clientId = environment.IOTLINK_CONFIG_clientId || String(config.clientId);
  const commands = (environment.IOTLINK_CONFIG_topicPrefix || String(config.topicPrefix)) + "/" + clientId + "/cmd";
  for (const [delay, command] of [[3000, "ping"], [6000, "status"]] as const) {
    demo.push(setTimeout(() => {
      say(`broker publishes "${command}" to ${commands}`);
      void broker?.publish(commands, command, 1);
    }, delay));
  }
}

let stopping = false;
async function stop(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    for (const timer of demo) clearTimeout(timer);
    await broker?.stop();
  }
  process.exit(code);
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    app.kill("SIGTERM");
  });
}
app.on("exit", (code, signal) => void stop(code ?? (signal ? 0 : 1)));
