// The device app on flash storage, run as the desktop firmware (main.ts bundled with the Moddable
// aliases; its flash partitions are files, as hosts/desktop/flash.ts keeps them) against the embedded
// broker: with persist=true the telemetry it queued while the broker was unreachable survives the
// process being killed and goes out after the next start; with provision=<template> it provisions
// itself by claim through the AWS IoT emulator, connects as its new thing, and at the next start uses
// the identity it kept without provisioning again.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, test } from "node:test";
import { startAwsEmulator, type RunningAwsEmulator } from "../../tools/aws-emulator.ts";
import { DEV_PKI_FILES, issueCertificate, pemCertificateToDer, pemKeyToPkcs8Der } from "../../tools/certs.ts";
import { buildDesktopApp } from "../../tools/desktop-build.ts";
import { ensureFlashPartitions } from "../../tools/flash-partitions.ts";
import { AppProcess, waitUntil } from "../broker/helpers.ts";
import { useBrokerSetup } from "./fixtures.ts";

const setup = useBrokerSetup();
let bundle: string | undefined;
let emulator: RunningAwsEmulator | undefined;

after(async () => {
  await emulator?.stop();
});

async function appBundle(): Promise<string> {
  bundle ??= await buildDesktopApp(join(setup.work, "app-storage.mjs"));
  return bundle;
}

/** A port nothing listens on (a broker that is down). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((listening) => server.listen(0, "127.0.0.1", listening));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((closed) => server.close(() => closed()));
  return port;
}

function telemetrySeqs(clientId: string): number[] {
  return setup.broker.messages
    .filter((message) => message.clientId === clientId && message.topic === "iotlink/" + clientId + "/telemetry")
    .map((message) => (JSON.parse(message.payload.toString()) as { seq: number }).seq);
}

test("persist=true: telemetry queued while the broker is unreachable survives the app being killed, and goes out after the next start", { timeout: 60_000 }, async () => {
  const clientId = "app-persist";
  const flash = ensureFlashPartitions(join(setup.work, "flash-persist"));
  const common = {
    IOTLINK_RESOURCES: setup.fixtures.pki,
    IOTLINK_FLASH: flash,
    IOTLINK_CONFIG_endpoint: "localhost",
    IOTLINK_CONFIG_clientId: clientId,
    IOTLINK_CONFIG_persist: "true",
    IOTLINK_CONFIG_backoffBaseMs: "100",
    IOTLINK_CONFIG_backoffMaxMs: "200",
  };
  const offline = new AppProcess(await appBundle(), { ...common, IOTLINK_CONFIG_port: String(await closedPort()), IOTLINK_CONFIG_telemetryIntervalMs: "100", IOTLINK_CONFIG_telemetryCount: "5" });
  try {
    await waitUntil(() => offline.events("telemetry").filter((line) => line.fields.result === "queued").length === 5, 15_000, () => "five queued telemetry lines; output:\n" + offline.tail());
  } finally {
    // As a power cut: no chance to do anything more.
    offline.child.kill("SIGKILL");
    await new Promise((exited) => offline.child.once("exit", exited));
  }
  assert.deepEqual(telemetrySeqs(clientId), [], "nothing reached the broker in the first run");

  const online = new AppProcess(await appBundle(), { ...common, IOTLINK_CONFIG_port: String(setup.broker.port), IOTLINK_CONFIG_telemetryIntervalMs: "600000", IOTLINK_CONFIG_statusIntervalMs: "200" });
  try {
    await online.waitForLine("restored", 15_000);
    await waitUntil(() => telemetrySeqs(clientId).length >= 5, 15_000, () => "the five queued messages at the broker; got " + JSON.stringify(telemetrySeqs(clientId)));
    assert.deepEqual(telemetrySeqs(clientId), [1, 2, 3, 4, 5], "every queued message, once, in order");
    // Acknowledged (and so removed from flash) before this run ends: a message still in flight then would rightly be sent again.
    await online.waitForLine("status", 10_000, (line) => Number(line.fields.acked) >= 5 && line.fields.inflight === "0" && line.fields.queue === "0");
  } finally {
    await online.stop();
  }
  // Acknowledged: a third start sends nothing again.
  const third = new AppProcess(await appBundle(), { ...common, IOTLINK_CONFIG_port: String(setup.broker.port), IOTLINK_CONFIG_telemetryIntervalMs: "600000" });
  try {
    await third.waitForLine("restored", 15_000);
    await new Promise((wait) => setTimeout(wait, 500));
    assert.deepEqual(telemetrySeqs(clientId), [1, 2, 3, 4, 5]);
  } finally {
    await third.stop();
  }
});

test("provision=<template>: the app provisions itself by claim, connects as its new thing, and next time uses the identity it kept", { timeout: 90_000 }, async () => {
  const template = "iotlink-fleet";
  const pki = setup.fixtures.pki;
  const issuer = { certificatePem: join(pki, DEV_PKI_FILES.caCertificatePem), keyPem: join(pki, DEV_PKI_FILES.caKeyPem) };
  // The fleet's claim certificate, from the development CA, beside the app's other resources.
  const resources = join(setup.work, "claim-resources");
  mkdirSync(resources);
  for (const name of [DEV_PKI_FILES.caCertificateDer]) (await import("node:fs")).copyFileSync(join(pki, name), join(resources, name));
  issueCertificate({ certificatePem: join(setup.work, "claim.pem"), keyPem: join(setup.work, "claim-key.pem"), commonName: "iotlink-claim", profile: "client", issuer });
  pemCertificateToDer(join(setup.work, "claim.pem"), join(resources, "claim-cert.der"));
  pemKeyToPkcs8Der(join(setup.work, "claim-key.pem"), join(resources, "claim-key.der"));
  emulator = await startAwsEmulator({
    url: `mqtts://localhost:${setup.broker.port}`,
    mqtt: { ca: setup.fixtures.caPem, cert: setup.fixtures.deviceCertificatePem, key: setup.fixtures.deviceKeyPem, rejectUnauthorized: true },
    provisioning: { templates: { [template]: {} }, issuer },
  });
  const flash = ensureFlashPartitions(join(setup.work, "flash-provision"));
  const environment = {
    IOTLINK_RESOURCES: resources,
    IOTLINK_FLASH: flash,
    IOTLINK_CONFIG_endpoint: "localhost",
    IOTLINK_CONFIG_port: String(setup.broker.port),
    IOTLINK_CONFIG_clientId: "claim-0042",
    IOTLINK_CONFIG_provision: template,
    IOTLINK_CONFIG_serialNumber: "0042",
    IOTLINK_CONFIG_telemetryIntervalMs: "200",
    IOTLINK_CONFIG_telemetryCount: "2",
  };
  const thing = template + "-0042";
  const first = new AppProcess(await appBundle(), environment);
  try {
    const done = await first.waitForLine("provision", 30_000, (line) => line.fields.step === "done");
    assert.equal(done.fields.thing, thing);
    const start = await first.waitForLine("start", 15_000);
    assert.equal(start.fields.client, thing, "the app goes on as its new thing");
    await first.waitForLine("restored", 15_000);
    await waitUntil(() => telemetrySeqs(thing).length >= 2, 15_000, "its telemetry at the broker");
    assert.ok(!first.output.some((line) => /PRIVATE KEY|certificateOwnershipToken/.test(line)), "no key or token in the log");
  } finally {
    await first.stop();
  }
  const provisioned = emulator.service.counts.get("provisioning/register-thing");
  const second = new AppProcess(await appBundle(), environment);
  try {
    const identity = await second.waitForLine("identity", 15_000);
    assert.deepEqual([identity.fields.thing, identity.fields.from], [thing, "storage"]);
    await second.waitForLine("restored", 15_000);
    assert.equal(emulator.service.counts.get("provisioning/register-thing"), provisioned, "not provisioned again");
    assert.equal(second.events("provision").length, 0);
  } finally {
    await second.stop();
  }
});
