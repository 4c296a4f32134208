// The device app's command path, run as the desktop firmware (main.ts bundled with the Moddable
// aliases) against the embedded broker: replies are JSON whatever the command holds.
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import { buildDesktopApp } from "../../tools/desktop-build.ts";
import { AppProcess, waitUntil } from "../broker/helpers.ts";
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

