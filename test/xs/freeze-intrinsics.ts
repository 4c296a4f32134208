// Moddable freezes the built-in objects of a device image (its preload step); xsnap does not. Freeze
// them here, before anything else in the XS test bundle runs, so code that writes to a built-in
// (for example `this.name = ...` on an Error, which shadows the frozen Error.prototype.name)
// fails in `npm run test:xs` as it would on the device.
const namespaces = ["Math", "JSON", "Reflect", "Atomics"];

function freezeDeep(value: unknown): void {
  if ((typeof value !== "object" && typeof value !== "function") || value === null || Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const key of Reflect.ownKeys(value as object)) {
    const descriptor = Object.getOwnPropertyDescriptor(value, key);
    if (descriptor && "value" in descriptor) freezeDeep(descriptor.value);
  }
  freezeDeep(Object.getPrototypeOf(value));
}

for (const name of Object.getOwnPropertyNames(globalThis)) {
  const value = (globalThis as Record<string, unknown>)[name];
  if (typeof value === "function" || namespaces.includes(name)) freezeDeep(value);
}

export const intrinsicsFrozen = Object.isFrozen(Error.prototype) && Object.isFrozen(Array.prototype);
