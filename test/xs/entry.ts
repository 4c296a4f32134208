// The XS side of the XS test run (see test/xs/run.mjs). Bundled by esbuild into one IIFE script and
// evaluated inside an xsnap worker (the real XS engine). It installs the global `handleCommand` that
// the Node runner drives, one command per step, each one a separate xsnap "crank" with its own
// compute meter reading:
//   {"op":"load"}          evaluate the portable suites (test/core/index.ts), list the tests
//   {"op":"run","index":i} run test i, awaiting it if it is async
// Each reply is a JSON object. An async reply works because xsnap drains the promise queue before it
// answers: handleCommand returns an object whose `result` (an ArrayBuffer) is set when the work
// settles. If the queue empties and `result` is still unset (a promise that never settles: XS has no
// timers here), the reply is empty and the runner reports the test as never settled.
// No Node or DOM API may be used here: this file runs on XS.
import "./freeze-intrinsics";
import { checksPassed, registeredTests } from "../harness";

type Reply = Record<string, unknown>;
interface Pending {
  result?: ArrayBuffer;
}

function errorReport(error: unknown): Reply {
  if (error instanceof Error) {
    return { error: error.name + ": " + error.message, stack: typeof error.stack === "string" ? error.stack : "" };
  }
  let text: string;
  try {
    text = "non-Error thrown: " + String(error);
  } catch {
    text = "non-Error thrown";
  }
  return { error: text, stack: "" };
}

function settle(pending: Pending, work: () => Reply | Promise<Reply>): Pending {
  const encode = (reply: Reply): void => {
    const bytes = new TextEncoder().encode(JSON.stringify(reply));
    pending.result = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  };
  Promise.resolve()
    .then(work)
    .then(encode, (error: unknown) => encode({ ok: false, ...errorReport(error) }));
  return pending;
}

async function load(): Promise<Reply> {
  // A dynamic import, which esbuild inlines as a lazily run module: an exception while the suites
  // load is caught here with its stack, instead of aborting the whole script evaluation.
  await import("../core/index");
  return { ok: true, names: registeredTests().map((registered) => registered.name) };
}

async function run(index: number): Promise<Reply> {
  const registered = registeredTests()[index];
  if (registered === undefined) return { ok: false, error: "no test at index " + index, stack: "" };
  const before = checksPassed();
  try {
    await registered.body();
    return { ok: true, checks: checksPassed() - before, totalChecks: checksPassed() };
  } catch (error) {
    return { ok: false, checks: checksPassed() - before, totalChecks: checksPassed(), ...errorReport(error) };
  }
}

function handleCommand(message: ArrayBuffer): Pending {
  const command = JSON.parse(new TextDecoder().decode(message)) as { op: string; index?: number };
  const pending: Pending = {};
  if (command.op === "load") return settle(pending, load);
  if (command.op === "run") return settle(pending, () => run(command.index ?? -1));
  return settle(pending, () => ({ ok: false, error: "unknown command " + command.op, stack: "" }));
}

(globalThis as unknown as { handleCommand: typeof handleCommand }).handleCommand = handleCommand;
