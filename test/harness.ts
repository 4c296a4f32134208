// A tiny test registry and assertion set that runs unchanged on Node and on XS (xsnap): the
// portable suites in test/core register here, and each engine's runner executes the same list.
// No Node or DOM API may be used in this file or in the suites that import it.

export type TestBody = () => void | Promise<void>;

interface RegisteredTest {
  readonly name: string;
  readonly body: TestBody;
}

const registered: RegisteredTest[] = [];
let checks = 0;

export function test(name: string, body: TestBody): void {
  registered.push({ name, body });
}

export function registeredTests(): readonly RegisteredTest[] {
  return registered;
}

/** How many assertions have passed so far, on this engine. */
export function checksPassed(): number {
  return checks;
}

function describe(value: unknown): string {
  if (value instanceof Uint8Array) return "bytes[" + Array.prototype.join.call(value, ",") + "]";
  if (typeof value === "string") return JSON.stringify(value);
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

function fail(message: string | undefined, detail: string): never {
  throw new Error((message ? message + ": " : "") + detail);
}

export function ok(condition: unknown, message?: string): void {
  if (!condition) fail(message, "expected a truthy value, got " + describe(condition));
  checks++;
}

export function equal<T>(actual: T, expected: T, message?: string): void {
  if (!Object.is(actual, expected)) fail(message, "expected " + describe(expected) + ", got " + describe(actual));
  checks++;
}

function deepEqualValues(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b)) return false;
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a as object);
  const keysB = Object.keys(b as object);
  if (keysA.length !== keysB.length) return false;
  for (const key of keysA) {
    if (!deepEqualValues((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key])) return false;
  }
  return true;
}

export function deepEqual(actual: unknown, expected: unknown, message?: string): void {
  if (!deepEqualValues(actual, expected)) fail(message, "expected " + describe(expected) + ", got " + describe(actual));
  checks++;
}

/** Asserts that `body` throws an error whose message contains `fragment`. */
export function throws(body: () => unknown, fragment: string, message?: string): void {
  let thrown: unknown;
  try {
    body();
  } catch (error) {
    thrown = error;
  }
  if (thrown === undefined) fail(message, "expected an error containing " + describe(fragment) + ", nothing was thrown");
  const text = thrown instanceof Error ? thrown.message : String(thrown);
  if (text.indexOf(fragment) < 0) fail(message, "expected an error containing " + describe(fragment) + ", got " + describe(text));
  checks++;
}

/** Bytes from a compact hex string ("10 0c 00 04"), for byte-exact vectors. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/[^0-9a-fA-F]/g, "");
  const bytes = new Uint8Array(clean.length >> 1);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(clean.substr(i * 2, 2), 16);
  return bytes;
}
