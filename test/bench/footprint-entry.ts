// The XS side of test/bench/memory-budget.test.ts, bundled by esbuild into one IIFE script and
// evaluated in an xsnap worker (the real XS engine; no Node or DOM API here). Installs the global
// `handleCommand`; each command is one crank, so the Node side reads the live slot count
// (meterUsage.currentHeapCount) after exactly that step:
//   {"op":"gc"}                          collect garbage
//   {"op":"prepare"}                     make the transport and clock (left out of the figures)
//   {"op":"construct","options":{...}}   make one MqttClient and keep it; reply with its buffers
//   {"op":"release"}                     drop everything kept
import { MqttClient, type ClientOptions } from "../../modules/client";
import { ScriptedBroker } from "../support/scripted-broker";
import { VirtualClock } from "../support/virtual-clock";

declare function gc(): void;

export interface Footprint {
  /** Bytes of every ArrayBuffer reachable from the client, each counted once. */
  arrayBufferBytes: number;
  /** Items of every plain Array reachable from the client (XS keeps them in chunks, a slot each). */
  arrayItems: number;
}

/** Walks what `root` holds, leaving out the objects in `skip` (the transport and the clock). */
function footprint(root: object, skip: readonly object[]): Footprint {
  const buffers = new Set<ArrayBufferLike>();
  const visited = new Set<object>(skip);
  let arrayBufferBytes = 0;
  let arrayItems = 0;
  const walk = (value: unknown): void => {
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
  return { arrayBufferBytes, arrayItems };
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
      const client = new MqttClient({ clientId: "budget-device", transport: rig.broker, clock: rig.clock, ...command.options });
      kept.push(client);
      return footprint(client, [rig.broker, rig.clock]);
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
