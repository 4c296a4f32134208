// The device app's Device Shadow and Jobs, run as the desktop firmware against the embedded broker
// with the AWS IoT emulator beside it: settings reported at each restore, a desired change applied
// and reported back (and one refused, named in reported.rejected), a change made while the device was
// away found at its next restore, and the documented jobs run with their outcomes reported.
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, test } from "node:test";
import { startAwsEmulator, type RunningAwsEmulator } from "../../tools/aws-emulator.ts";
import { buildDesktopApp } from "../../tools/desktop-build.ts";
import { AppProcess, waitUntil } from "../broker/helpers.ts";
import { useBrokerSetup } from "./fixtures.ts";

const setup = useBrokerSetup();
let bundle: string | undefined;
let emulator: RunningAwsEmulator;

after(async () => {
  await emulator?.stop();
});

async function startApp(thing: string, settings: Record<string, string> = {}): Promise<AppProcess> {
  // Started with the first app: the broker of useBrokerSetup() is up by then.
  emulator ??= await startAwsEmulator({
    url: `mqtts://localhost:${setup.broker.port}`,
    mqtt: { ca: setup.fixtures.caPem, cert: setup.fixtures.deviceCertificatePem, key: setup.fixtures.deviceKeyPem, rejectUnauthorized: true },
  });
  bundle ??= await buildDesktopApp(join(setup.work, "app-cloud.mjs"));
  return new AppProcess(bundle, {
    IOTLINK_RESOURCES: setup.fixtures.pki,
    IOTLINK_CONFIG_endpoint: "localhost",
    IOTLINK_CONFIG_port: String(setup.broker.port),
    IOTLINK_CONFIG_clientId: thing,
    IOTLINK_CONFIG_telemetryIntervalMs: "60000",
    IOTLINK_CONFIG_operationTimeoutMs: "3000",
    IOTLINK_CONFIG_shadow: "true",
    IOTLINK_CONFIG_jobs: "true",
    ...settings,
  });
}

function reported(thing: string): Record<string, unknown> | undefined {
  return emulator.service.shadowDocument(thing)?.state.reported;
}

test("the app reports its settings at restore, applies a desired interval in range, refuses the rest in reported.rejected", { timeout: 40_000 }, async () => {
  const thing = "app-shadow";
  const app = await startApp(thing);
  try {
    await waitUntil(() => reported(thing)?.firmwareVersion === "0.1.0", 10_000, "the settings reported at restore");
    assert.equal(reported(thing)!.telemetryIntervalMs, 60000);
    assert.equal(typeof reported(thing)!.uptimeMs, "number");

    emulator.service.updateShadowDocument(thing, "", { state: { desired: { telemetryIntervalMs: 1500, ledColour: "blue" } } });
    await app.waitForLine("setting", 10_000, (line) => line.fields.name === "telemetryIntervalMs" && line.fields.value === "1500" && line.fields.from === "delta");
    await app.waitForLine("setting", 10_000, (line) => line.fields.name === "ledColour" && line.fields.rejected === "not a setting of this device");
    await waitUntil(() => reported(thing)?.telemetryIntervalMs === 1500, 10_000, "the new interval reported");
    assert.deepEqual(reported(thing)!.rejected, { ledColour: "not a setting of this device" });
    // The interval is in force: telemetry now comes every 1.5 s.
    const first = await app.waitForLine("telemetry", 10_000);
    const second = await app.waitForLine("telemetry", 10_000, () => true, app.lines.indexOf(first) + 1);
    assert.ok(second.at - first.at >= 1200 && second.at - first.at <= 2500, `telemetry ${second.at - first.at} ms apart, expected about 1500`);

    // Out of range: refused, the interval kept, the reason reported; once the desired value is fixed, rejected is cleared (null).
    emulator.service.updateShadowDocument(thing, "", { state: { desired: { telemetryIntervalMs: 5, ledColour: null } } });
    await waitUntil(() => typeof (reported(thing)?.rejected as Record<string, unknown> | undefined)?.telemetryIntervalMs === "string", 10_000, "the refused interval in reported.rejected");
    assert.equal(reported(thing)!.telemetryIntervalMs, 1500);
    assert.match(String((reported(thing)!.rejected as Record<string, unknown>).telemetryIntervalMs), /whole number from 1000 to 3600000/);
    emulator.service.updateShadowDocument(thing, "", { state: { desired: { telemetryIntervalMs: 2000 } } });
    await waitUntil(() => reported(thing)?.telemetryIntervalMs === 2000 && reported(thing)?.rejected === undefined, 10_000, "rejected cleared");
  } finally {
    await app.stop();
  }
});

test("a desired change made while the device was away is applied at its next restore (the shadow is read)", { timeout: 40_000 }, async () => {
  const thing = "app-shadow-away";
  const first = await startApp(thing);
  await waitUntil(() => reported(thing)?.firmwareVersion === "0.1.0", 10_000, "the first report");
  await first.stop();
  emulator.service.updateShadowDocument(thing, "", { state: { desired: { telemetryIntervalMs: 4000 } } });
  const second = await startApp(thing);
  try {
    await second.waitForLine("setting", 10_000, (line) => line.fields.name === "telemetryIntervalMs" && line.fields.value === "4000" && line.fields.from === "get");
    await waitUntil(() => reported(thing)?.telemetryIntervalMs === 4000 && emulator.service.shadowDocument(thing)?.state.delta === undefined, 10_000, "the shadow in sync");
  } finally {
    await second.stop();
  }
});

test("the app runs set-interval and report-status jobs, rejects unknown ones, fails a bad interval, each reported", { timeout: 40_000 }, async () => {
  const thing = "app-jobs";
  const app = await startApp(thing);
  const status = (jobId: string): string | undefined => emulator.service.jobExecution(thing, jobId)?.status;
  try {
    await app.waitForLine("restored", 10_000);
    emulator.service.createJob("status-1", { operation: "report-status" }, [thing]);
    emulator.service.createJob("interval-1", { operation: "set-interval", telemetryIntervalMs: 2500 }, [thing]);
    emulator.service.createJob("reboot-1", { operation: "reboot" }, [thing]);
    emulator.service.createJob("interval-bad", { operation: "set-interval", telemetryIntervalMs: 10 }, [thing]);
    await waitUntil(() => ["status-1", "interval-1", "reboot-1", "interval-bad"].every((id) => status(id) !== "QUEUED" && status(id) !== "IN_PROGRESS"), 20_000, "every job finished");
    assert.equal(status("status-1"), "SUCCEEDED");
    assert.equal(emulator.service.jobExecution(thing, "status-1")!.statusDetails?.state, "online");
    assert.equal(status("interval-1"), "SUCCEEDED");
    assert.equal(status("reboot-1"), "REJECTED");
    assert.equal(status("interval-bad"), "FAILED");
    assert.match(emulator.service.jobExecution(thing, "interval-bad")!.statusDetails?.reason ?? "", /whole number from 1000/);
    // The job's interval is lasting: desired and reported both hold it, so no restore undoes it.
    await waitUntil(() => reported(thing)?.telemetryIntervalMs === 2500, 10_000, "the job's interval reported");
    assert.equal(emulator.service.shadowDocument(thing)!.state.desired?.telemetryIntervalMs, 2500);
    // Each job ran once.
    assert.equal(app.events("job").filter((line) => line.fields.event === "run").length, 4);
  } finally {
    await app.stop();
  }
});

test("shadow=false and jobs=false: the app asks neither service for anything", { timeout: 30_000 }, async () => {
  const thing = "app-no-cloud";
  const app = await startApp(thing, { IOTLINK_CONFIG_shadow: "false", IOTLINK_CONFIG_jobs: "false", IOTLINK_CONFIG_statusIntervalMs: "500" });
  try {
    await app.waitForLine("restored", 10_000);
    await app.waitForLine("status", 10_000, () => true, app.lines.length);
    const asked = setup.broker.messages.filter((message) => message.clientId === thing && message.topic.startsWith("$aws/"));
    assert.deepEqual(asked, []);
    assert.equal(emulator.service.shadowDocument(thing), undefined);
  } finally {
    await app.stop();
  }
});
