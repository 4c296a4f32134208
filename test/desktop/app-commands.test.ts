// The device app's command path, run as the desktop firmware (main.ts bundled with the Moddable
// aliases) against the embedded broker: replies are JSON whatever the command holds, and the
// command subscription is asked for again until the broker has confirmed it.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import type { Aedes } from "aedes";
import { buildDesktopApp } from "../../tools/desktop-build.ts";
import { AppProcess, delay, waitUntil } from "../broker/helpers.ts";
import { useBrokerSetup } from "./fixtures.ts";

const setup = useBrokerSetup();
let bundle: string | undefined;

async function startApp(clientId: string, settings: Record<string, string> = {}): Promise<AppProcess> {
  bundle ??= await buildDesktopApp(join(setup.work, "app-commands.mjs"));
  return new AppProcess(bundle, {
    IOTLINK_RESOURCES: setup.fixtures.pki,
    IOTLINK_CONFIG_endpoint: "localhost",
    IOTLINK_CONFIG_port: String(setup.broker.port),
    IOTLINK_CONFIG_clientId: clientId,
    IOTLINK_CONFIG_telemetryIntervalMs: "60000",
    // The command subscription alone: the refusals below must meet it, not the shadow's or Jobs'.
    IOTLINK_CONFIG_shadow: "false",
    IOTLINK_CONFIG_jobs: "false",
    ...settings,
  });
}

/** Publishes `command` to the app every 200 ms until a reply to it arrives; resolves with the reply's text. */
async function command(clientId: string, text: string, timeoutMs: number): Promise<string> {
  const from = setup.broker.messages.length;
  const isReply = (message: { clientId: string; topic: string }): boolean => message.clientId === clientId && message.topic === "iotlink/" + clientId + "/reply";
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await setup.broker.publish("iotlink/" + clientId + "/cmd", text, 1);
    const reply = await waitUntil(() => setup.broker.messages.slice(from).find(isReply), 200, "a reply").catch(() => undefined);
    if (reply) return reply.payload.toString();
  }
  throw new Error("no reply to " + JSON.stringify(text) + " within " + timeoutMs + " ms");
}

/** Makes the broker refuse (SUBACK 0x80) the first `count` SUBSCRIBEs of `clientId`. */
function refuseSubscriptions(aedes: Aedes, clientId: string, count: number): { refused: () => number; restore: () => void } {
  const original = aedes.authorizeSubscribe;
  let refused = 0;
  aedes.authorizeSubscribe = (client, subscription, callback) => {
    if (client.id === clientId && refused < count) {
      refused++;
      callback(null, null);
      return;
    }
    original.call(aedes, client, subscription, callback);
  };
  return {
    refused: () => refused,
    restore: () => {
      aedes.authorizeSubscribe = original;
    },
  };
}

test("the device app's reply is valid JSON whatever the command holds: quotes, backslashes, control characters", { timeout: 30_000 }, async () => {
  const app = await startApp("app-json");
  try {
    for (const text of ['a"b', "c\\d\u0001e\u001ff", '","error":"injected']) {
      const reply = await command("app-json", text, 10_000);
      let parsed: { command?: unknown; error?: unknown };
      try {
        parsed = JSON.parse(reply) as typeof parsed;
      } catch (error) {
        throw new Error("the reply to " + JSON.stringify(text) + " is not JSON: " + reply + " (" + (error as Error).message + ")");
      }
      assert.equal(parsed.command, text);
      assert.equal(parsed.error, "unknown command", "the command cannot add or replace fields");
    }
    assert.equal((JSON.parse(await command("app-json", "ping", 10_000)) as { command: string }).command, "ping");
  } finally {
    await app.stop();
  }
});

test("the device app asks again for a command subscription the broker refused, at the next status tick, until it is confirmed", { timeout: 30_000 }, async () => {
  const broker = refuseSubscriptions(setup.broker.aedes, "app-retry-tick", 2);
  const app = await startApp("app-retry-tick", { IOTLINK_CONFIG_statusIntervalMs: "200" });
  try {
    assert.equal((JSON.parse(await command("app-retry-tick", "ping", 10_000)) as { command: string }).command, "ping", "the app listens for commands");
    assert.equal(broker.refused(), 2);
    // Each outcome is logged; once confirmed, later ticks ask for nothing more.
    assert.deepEqual(app.events("subscribe").map((line) => line.fields.status + " " + line.fields.granted), ["refused 128", "refused 128", "acknowledged 1"]);
    const subscribes = setup.broker.statistics.subscribes;
    await delay(600);
    assert.equal(setup.broker.statistics.subscribes, subscribes);
    assert.equal(app.events("subscribe").length, 3);
  } finally {
    broker.restore();
    await app.stop();
  }
});

test("the device app asks again for a refused command subscription at the next restored (after a reconnect)", { timeout: 30_000 }, async () => {
  const broker = refuseSubscriptions(setup.broker.aedes, "app-retry-restored", 1);
  // No status tick during the test: only a reconnect's restored can bring the retry.
  const app = await startApp("app-retry-restored", { IOTLINK_CONFIG_statusIntervalMs: "86400000", IOTLINK_CONFIG_backoffBaseMs: "100" });
  try {
    await waitUntil(() => broker.refused() === 1, 10_000, "the broker to refuse the first SUBSCRIBE");
    await app.waitForLine("restored", 10_000);
    setup.broker.dropConnections();
    await app.waitForLine("restored", 10_000, () => app.events("restored").length > 1);
    assert.equal((JSON.parse(await command("app-retry-restored", "ping", 10_000)) as { command: string }).command, "ping", "the app listens for commands");
    assert.deepEqual(app.events("subscribe").map((line) => line.fields.status), ["refused", "acknowledged"]);
  } finally {
    broker.restore();
    await app.stop();
  }
});
