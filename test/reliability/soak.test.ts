// The soak of tools/soak.ts, bounded: random faults (broker restarts, cuts, cuts mid-packet and
// mid-handshake, half-open links, outages, fragmentation, latency) against a real Mosquitto for
// under a minute. `npm run soak -- --minutes N` runs the same code for longer.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runSoak } from "../../tools/soak.ts";
import { reportFigure } from "./kit.ts";
import { announceScenarios } from "./progress.ts";

announceScenarios(import.meta.filename);

const MINUTES = Number(process.env.IOTLINK_SOAK_MINUTES ?? 0.75);

test(`soak: ${MINUTES} min of random faults, no accepted message lost, no crash`, { timeout: (MINUTES * 60 + 120) * 1000 }, async () => {
  const result = await runSoak({ minutes: MINUTES, every: 10, seed: Number(process.env.IOTLINK_SOAK_SEED ?? 20261129) });
  const faults = Object.values(result.faults).reduce((a, b) => a + b, 0);
  await reportFigure("soak", { ...result, problems: result.problems.length, faultsSurvived: faults });
  assert.deepEqual(result.problems, []);
  assert.equal(result.lost, 0);
  assert.ok(faults >= 5, "enough faults were injected: " + faults);
  // Inbound QoS 1 (MQTT.js publishing to the client's persistent session) is reported, not asserted: a loss there may be the publisher's.
});
