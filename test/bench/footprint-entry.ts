// The XS side of test/bench/memory-budget.test.ts, bundled by esbuild into one IIFE script and
// evaluated in an xsnap worker (the real XS engine; no Node or DOM API here). Installs the global
// `handleCommand`; each command is one crank, so the Node side reads the live slot count
// (meterUsage.currentHeapCount) after exactly that step:
//   {"op":"gc"}                          collect garbage
//   {"op":"prepare"}                     make the transport and clock (left out of the figures)
//   {"op":"construct","options":{...}}   make one MqttClient and keep it; reply with its buffers
//   {"op":"layers"}                      make the device app's Shadow and Jobs layers over the last client; reply with what they hold
//   {"op":"release"}                     drop everything kept
import { JobRunner, JobsClient } from "../../modules/aws/jobs";
import { ShadowClient } from "../../modules/aws/shadow";
import { MqttClient, type ClientOptions } from "../../modules/client";
import { ScriptedBroker } from "../support/scripted-broker";
import { VirtualClock } from "../support/virtual-clock";

declare function gc(): void;

export interface Footprint {
  /** Bytes of every ArrayBuffer reachable from the client, each counted once. */
  arrayBufferBytes: number;
  /** Items of every plain Array reachable from the client (XS keeps them in chunks, a slot each). */
  arrayItems: number;
  /** Characters of every distinct string held (XS keeps a string in a chunk of its UTF-8 bytes plus one). */
  stringBytes: number;
}

/** Walks what `root` holds, leaving out the objects in `skip` (the transport and the clock). */
function footprint(root: object, skip: readonly object[]): Footprint {
  const buffers = new Set<ArrayBufferLike>();
  const visited = new Set<object>(skip);
  let arrayBufferBytes = 0;
  let arrayItems = 0;
  const strings = new Set<string>();
  let stringBytes = 0;
  const walk = (value: unknown): void => {
    if (typeof value === "string") {
      if (!strings.has(value)) {
        strings.add(value);
        stringBytes += value.length + 1;
      }
      return;
    }
    if (value === null || (typeof value !== "object" && typeof value !== "function")) return;
    if (ArrayBuffer.isView(value)) {
      if (!buffers.has(value.buffer)) {
        buffers.add(value.buffer);
        arrayBufferBytes += value.buffer.byteLength;
      }
      return;
    }
    if (visited.has(value)) return;
    visited.add(value);
    if (typeof value === "function") return; // the app's and the client's code, not its state
    if (Array.isArray(value)) arrayItems += value.length;
    for (const key of Reflect.ownKeys(value)) {
      const descriptor = Object.getOwnPropertyDescriptor(value, key);
      if (descriptor && "value" in descriptor) walk(descriptor.value);
    }
  };
  walk(root);
  return { arrayBufferBytes, arrayItems, stringBytes };
}

const kept: unknown[] = [];
let rig: { clock: VirtualClock; broker: ScriptedBroker } | undefined;

function run(command: { op: string; options?: Partial<ClientOptions> }): unknown {
  switch (command.op) {
    case "gc":
      gc();
      return null;
    case "prepare": {
      const clock = new VirtualClock(0);
      rig = { clock, broker: new ScriptedBroker(clock) };
      return null;
    }
    case "construct": {
      if (!rig) throw new Error("prepare first");
      const { layers: _layers, ...options } = (command.options ?? {}) as Partial<ClientOptions> & { layers?: boolean };
      const client = new MqttClient({ clientId: "budget-device", transport: rig.broker, clock: rig.clock, ...options });
      kept.push(client);
      return footprint(client, [rig.broker, rig.clock]);
    }
    case "layers": {
      // As the device app makes them (app/remote-settings.ts, with main.ts's default operationTimeoutMs;
      // test/bench/memory-budget.test.ts checks the options there): one classic shadow with a delta
      // handler, Jobs with its runner.
      const client = kept[kept.length - 1] as MqttClient;
      const shadows = new ShadowClient(client, { maxShadows: 1, maxPending: 4, timeoutMs: 5000, maxDocumentBytes: 512 });
      const shadow = shadows.shadow("budget-device");
      shadow.onDelta(() => {});
      const jobs = new JobsClient(client, "budget-device", { maxPending: 4, maxListeners: 0, timeoutMs: 5000 });
      const runner = new JobRunner(jobs, () => {}, { onEvent: () => {} });
      kept.push(shadows, jobs, runner);
      return footprint({ shadows, jobs, runner }, [client, rig!.broker, rig!.clock]);
    }
    case "release":
      kept.length = 0;
      rig = undefined;
      return null;
    default:
      throw new Error("unknown op " + command.op);
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function handleCommand(message: ArrayBuffer): { result: ArrayBuffer } {
  let reply: unknown;
  try {
    reply = { ok: true, value: run(JSON.parse(decoder.decode(message)) as { op: string }) };
  } catch (error) {
    reply = { ok: false, error: error instanceof Error ? error.message : String(error) };
  }
  const bytes = encoder.encode(JSON.stringify(reply));
  return { result: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer };
}

(globalThis as unknown as { handleCommand: typeof handleCommand }).handleCommand = handleCommand;
